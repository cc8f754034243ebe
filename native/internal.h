/*
 * internal.h: the three macros every file of the library may use, and
 * nothing else. Each module's own state and functions are declared in its
 * own header (msg.h, options.h, os.h, init.h, arena.h, block.h, tcache.h,
 * fork.h, advisor.h, trace.h, stats.h; core.h for the carving core), so a
 * file sees only what it includes. Built with -fvisibility=hidden: only
 * exm_* API functions and the malloc family are exported (build.ts checks
 * that).
 */
#ifndef EXM_INTERNAL_H
#define EXM_INTERNAL_H

#define EXM_API __attribute__((visibility("default")))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#endif
