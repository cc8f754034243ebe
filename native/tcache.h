/*
 * tcache.h: the per-thread cache of small chunks of the own arena (tcache.c).
 *
 * The fast paths (a pop that finds a chunk, a push with room in its bin)
 * are inline here, so that the arena's malloc and free reach the cache
 * without a call. A thread's cache is reached through one initial-exec TLS
 * pointer (8 bytes of the static TLS surplus, which a dlopen of the library
 * from bun:ffi can still get; the 2.3 KiB cache itself could not, and the
 * general-dynamic model cost a __tls_get_addr call per access). The cache
 * is made at the thread's first push or refill (tcache.c).
 */
#ifndef EXM_TCACHE_H
#define EXM_TCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "internal.h"
#include "msg.h"

#define EXM_TC_CLASSES 256                          /* chunk sizes 32 .. 4112 */
#define EXM_TC_MAX_CHUNK ((size_t)(EXM_TC_CLASSES + 1) * 16)
#define EXM_TC_LIMIT(cls) ((cls) < 64 ? 16 : 4)      /* at most ~2.5 MiB cached per thread */

typedef struct exm_tcache {
  void *head[EXM_TC_CLASSES];
  uint8_t count[EXM_TC_CLASSES];
  int registered;                    /* thread-exit destructor armed */
  int gone;                          /* the exited threads' sentinel: no caching any more */
  struct exm_tcache *next;           /* on the free list of caches (tcache.c) */
} exm_tcache_t;

/* This thread's cache: NULL until made, the sentinel after the thread's
 * exit flush (its bins look full and empty, so both fast paths miss). */
extern __thread exm_tcache_t *exm_tc __attribute__((tls_model("initial-exec")));

/* A cached chunk for a request of n bytes, or NULL. No lock. */
static inline void *exm_tcache_pop(size_t n) {
  exm_tcache_t *t = exm_tc;
  size_t sz = exm_core_chunk_size_for(n);
  if (!t || sz > EXM_TC_MAX_CHUNK) return NULL;
  unsigned cls = (unsigned)(sz >> 4) - 2;
  void **p = t->head[cls];
  if (!p) return NULL;
  t->head[cls] = p[0];
  t->count[cls]--;
  exm_core_unmark_cached(p);
  return p;
}

/* push's other cases: no cache yet, a full bin, the exit hook not armed, an
 * exited thread. */
int exm_tcache_push_slow(void *p, unsigned cls, const char *who);

/* Mark p, a live small chunk of core c that this thread is about to cache;
 * aborts when it holds the mark already (in a cache or the depot: a double
 * free, from this thread or any other), also when that other free runs at
 * the same moment on another thread (exm_core_claim_cached, core.h). */
static inline void exm_tcache_claim(exm_core_t *c, void *p, const char *who) {
  if (!exm_core_claim_cached(c, p)) exm_bad_pointer(who, p);
}

/* 1 when p (a pointer into the own arena, core c) was taken care of: cached,
 * or given back to the arena with half of a full bin; 0 when it is not a
 * small chunk or this thread caches no more (the caller frees it under the
 * lock). Aborts on a double free. */
static inline int exm_tcache_push(exm_core_t *c, void *p, const char *who) {
  size_t sz = exm_core_small_peek(c, p);
  if (!sz || sz > EXM_TC_MAX_CHUNK) return 0;
  unsigned cls = (unsigned)(sz >> 4) - 2;
  exm_tcache_t *t = exm_tc;
  if (unlikely(!t || t->count[cls] >= EXM_TC_LIMIT(cls) || !t->registered)) return exm_tcache_push_slow(p, cls, who);
  exm_tcache_claim(c, p, who);
  *(void **)p = t->head[cls];
  t->head[cls] = p;
  t->count[cls]++;
  return 1;
}

/* realloc of p (a pointer into the own arena, core c) to n bytes, below
 * EXM_SMALL_MAX, with no lock: p when its chunk fits n with less than a
 * chunk to spare, or a chunk of n's size from this thread's cache that p's
 * contents went into (p cached in its place); NULL when the locked path
 * must do it (not a small chunk, a cache miss). */
void *exm_tcache_realloc(exm_core_t *c, void *p, size_t n, const char *who);
/* After a miss of exm_tcache_pop, before the arena's lock: a chunk for n
 * bytes from a batch of the depot (tcache.c), or NULL. */
void *exm_tcache_pop_depot(size_t n);
/* Under exm_own.lock, after a miss: stock the cache with chunks of this size. */
void exm_tcache_refill(size_t chunk);
/* Arm this thread's exit flush, if not yet. Outside every lock of ours. */
void exm_tcache_arm(void);
/* Give the calling thread's cached chunks and the depot's back to their arenas. */
void exm_tcache_flush(void);
/* exm_check's walk of the depot: 0, or -1 with the reason in msg. */
int exm_tcache_check(char *msg, size_t msglen);
/* fork.c: the depot's locks, taken after the arenas' by a fork that takes
 * them all; the child resets them (all but one this thread's interrupted
 * call holds), and, when the fork did not take them all (took_all 0),
 * empties the depot's other classes. Reads no chunk. */
void exm_tcache_fork_lock(void);
void exm_tcache_fork_unlock(void);
void exm_tcache_fork_child(int took_all);
/* In a forked child: only the calling thread's cache came along. */
void exm_tcache_after_fork(exm_core_t *c);
/* From the constructor: the thread-exit hook. */
void exm_tcache_setup(void);

#endif
