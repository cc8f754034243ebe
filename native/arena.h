/*
 * arena.h: this process's arenas (arena.c), as the rest of the library sees
 * them: finding the arena of a pointer, and the locked allocation, free and
 * resize paths behind malloc & co and the exm_* API.
 */
#ifndef EXM_ARENA_H
#define EXM_ARENA_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "exm.h"
#include "internal.h"

typedef struct exm_arena {
  pthread_mutex_t lock;
  exm_core_t core;
  int fd;                      /* backing file, -1 once closed */
  uint64_t dev, ino;           /* its identity: the program may close fd and reuse the number */
  int kind;                    /* ARENA_* */
} exm_arena_t;

enum { ARENA_OWN = 0, ARENA_COW = 1, ARENA_SHARED = 2 };

/* An arena's lock as new (adaptive, as exm_own's): a forked child's reset. */
void exm_arena_lock_init(pthread_mutex_t *m);

/* Every arena's range (the process's own, inherited ones) lies in
 * [exm_span_lo, exm_span_hi), which only ever widens (exm_span_add, before
 * the arena hands out a block): the fast paths of free and realloc are these
 * two compares; a pointer outside is glibc's. Read relaxed: a lo and a hi
 * seen from different moments still make a sub-range of the newest span, and
 * a block of an arena added since can only have reached this thread with an
 * ordering of its own. Inside the span, exm_arena_of tells (a glibc mapping
 * may lie between two arenas). */
extern uintptr_t exm_span_lo EXM_HIDDEN, exm_span_hi EXM_HIDDEN;
static inline int exm_in_span(const void *p) {
  return (uintptr_t)p >= __atomic_load_n(&exm_span_lo, __ATOMIC_RELAXED) &&
         (uintptr_t)p < __atomic_load_n(&exm_span_hi, __ATOMIC_RELAXED);
}
void exm_span_add(const void *base, size_t cap);

/* The arena whose range holds p, or NULL. */
extern exm_arena_t exm_own;
extern int exm_n_inherited;
exm_arena_t *exm_arena_of_inherited(const void *p);
static inline exm_arena_t *exm_arena_of(const void *p) {
  /* the arena may be being created by another thread: cap is stored last
   * (exm_core_init), so a cap seen here comes with its base */
  size_t cap = __atomic_load_n(&exm_own.core.cap, __ATOMIC_ACQUIRE);
  if ((uintptr_t)p - (uintptr_t)__atomic_load_n(&exm_own.core.base, __ATOMIC_RELAXED) < cap) return &exm_own;
  return likely(!exm_n_inherited) ? NULL : exm_arena_of_inherited(p);
}
/* Is any arena mapped (own or inherited)? Lock-free. */
static inline int exm_arena_mapped(void) {
  return __atomic_load_n(&exm_span_hi, __ATOMIC_RELAXED) > __atomic_load_n(&exm_span_lo, __ATOMIC_RELAXED);
}
/* The program set its address-space limit (RLIMIT_AS) to `limit` bytes:
 * the arenas give back the address space they have not carved, all but
 * half the limit for the own arena (each arena reserves terabytes: left
 * mapped, every later mmap and brk of the process would fail). */
void exm_arena_fit_as(size_t limit);
/* Under an address-space limit, when neither the arena nor glibc could
 * serve n bytes: the arenas give up address space they have not carved
 * (the own one n and EXM_ARENA_MIN more, or all it has not carved; an
 * inherited one all) so that glibc can map the request. 1 when any went. */
int exm_arena_yield_as(size_t n);
/* madvise(MADV_DONTNEED) on [addr, addr+len) inside an arena: anonymous
 * memory then reads back zeros, a shared file mapping its old data (the
 * pages leave the process, not the file). The range reads zeros after this,
 * with its disk kept (FALLOC_FL_ZERO_RANGE; a memset where the filesystem,
 * the descriptor or a cow child's private view does not allow it); a
 * shared child's view of its parent's blocks is left to the kernel. 0, or
 * -1 for a range that is not wholly one arena's (the caller passes it on). */
int exm_arena_dontneed(void *addr, size_t len);
/* For mlockall: the i-th range exm keeps unlocked (the arenas and their
 * tables of segments) in [*lo, *hi), or 0 past the last. Lock-free. */
int exm_arena_unlocked(int i, uintptr_t *lo, uintptr_t *hi);
/* The own arena's capacity and the bytes it has reserved on disk now (read
 * without its lock: a figure for a message, not for a decision). */
static inline size_t exm_arena_cap(void) { return __atomic_load_n(&exm_own.core.cap, __ATOMIC_ACQUIRE); }
static inline uint64_t exm_arena_committed(void) { return __atomic_load_n(&exm_own.core.st.committed, __ATOMIC_RELAXED); }
/* Allocate from this process's own arena; NULL+*err on failure. *served is 0
 * when the arena is unusable (caller passes the request through). */
void *exm_arena_alloc(size_t n, size_t align, int zero, int *served, int *err);
void exm_arena_free(exm_arena_t *a, void *p, const char *who);
/* 0 resized in place, ENOMEM not possible in place. */
int exm_arena_resize(exm_arena_t *a, void *p, size_t n, const char *who);
/* realloc's arena part for p, a block of a, to n bytes: p when resized in
 * place; else, for the own arena and n of a page block or more, a new block
 * carved under the same lock, *old holding p's usable size (the caller
 * copies, then frees p); NULL when the caller must move it by itself (an
 * inherited arena, a small n, no room). Aborts when p is not a live block. */
void *exm_arena_realloc(exm_arena_t *a, void *p, size_t n, size_t *old, const char *who);
size_t exm_arena_usable(exm_arena_t *a, const void *p, const char *who);
void exm_arena_stats(exm_stats_t *out, int in_signal);
int exm_arena_check(void);
int exm_arena_lookup(const void *p, exm_block_info_t *info);
int exm_arena_advise(void *p, int advice);
/* 1 when the block holding p is advised random (the arena's fixed advice, the user's or the advisor's). */
int exm_arena_random_at(const void *p);
int exm_arena_set_advice(int advice);
int exm_arena_set_dir(const char *dir);
int exm_arena_get_dir(char *buf, size_t len);
int exm_arena_set_max_disk(size_t bytes);
/* For heapinfo.c: every arena's blocks, small (in segments) and large. */
typedef struct exm_heap {
  size_t small_space, small_live, small_blocks;   /* segments' bytes; small blocks in use */
  size_t large_blocks, large_bytes;               /* blocks of a page or more */
  size_t arena_bytes;                             /* the arenas' ranges */
} exm_heap_t;
void exm_arena_heap(exm_heap_t *h);
/* malloc_trim: the caller's cached chunks back, and the disk kept for reuse; 1 if any. */
int exm_arena_trim(void);

/* Requests that glibc could not serve and the arena did (override.c counts them). */
extern uint64_t exm_fallbacks;

#endif
