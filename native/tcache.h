/*
 * tcache.h: the per-thread cache of small chunks of the own arena (tcache.c).
 */
#ifndef EXM_TCACHE_H
#define EXM_TCACHE_H

#include <stddef.h>

#include "core.h"

/* A cached chunk for a request of n bytes, or NULL. No lock. */
void *exm_tcache_pop(size_t n);
/* Under exm_own.lock, after a miss: stock the cache with chunks of this size. */
void exm_tcache_refill(size_t chunk);
/* 1 when p (a chunk of the own arena) was taken care of: cached, or given
 * back to the arena with half of a full bin. Aborts on a double free. */
int exm_tcache_push(void *p, const char *who);
/* Arm this thread's exit flush, if not yet. Outside every lock of ours. */
void exm_tcache_arm(void);
/* Give the calling thread's cached chunks back to their arenas. */
void exm_tcache_flush(void);
/* In a forked child: only the calling thread's cache came along. */
void exm_tcache_after_fork(exm_core_t *c);
/* From the constructor: the thread-exit hook. */
void exm_tcache_setup(void);

#endif
