/*
 * fork.h: what fork does to the arenas (fork.c).
 */
#ifndef EXM_FORK_H
#define EXM_FORK_H

#include <stdint.h>

/* Non-zero while this thread is inside the arena's calls (override.c sets
 * it): a fork from a signal handler must then not wait for exm's locks.
 * Initial-exec, as the thread cache's pointer (tcache.h): touched on every
 * slow path, and 4 bytes of static TLS are there for a dlopen too. */
extern __thread int exm_in_arena __attribute__((tls_model("initial-exec")));
static inline void exm_enter(void) { exm_in_arena++; __atomic_signal_fence(__ATOMIC_SEQ_CST); }
static inline void exm_leave(void) { __atomic_signal_fence(__ATOMIC_SEQ_CST); exm_in_arena--; }

/* From the constructor: the fork handlers. */
void exm_fork_setup(void);
/* Forks this process made (statistics). */
uint64_t exm_fork_count(void);

#endif
