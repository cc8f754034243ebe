/*
 * tcache.c: the per-thread cache of small chunks of the process's own arena.
 *
 * Owns each thread's cache (a __thread array of free lists) and the
 * thread-exit hook that gives it back. Promises: a chunk is in at most one
 * cache, which its head says (EXM_CHUNK_CACHED, set and tested in one atomic
 * operation), so a double free is caught whatever thread frees; chunks in a
 * cache are "in use" for the carving core and live in the statistics; the
 * fast paths (exm_tcache_pop, exm_tcache_push with room in the bin) take no
 * lock and make no system call.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>

#include "arena.h"
#include "core.h"
#include "internal.h"
#include "msg.h"
#include "tcache.h"

/* ---- per-thread cache of small chunks -------------------------------------
 * With a threshold below a page, every malloc/free of a small object would
 * take the arena lock. Like glibc's tcache, each thread keeps up to
 * TC_LIMIT freed chunks per size class (chunk sizes 32..4112) and hands them
 * out again without the lock. Cached chunks stay "in use" for the carving
 * core. A cached chunk carries EXM_CHUNK_CACHED in its head, set and tested
 * in one atomic operation: a second free of it, from this thread or any
 * other, is caught at once (glibc's tcache only looks in the calling
 * thread's own list), and the core refuses to free a cached chunk. A thread
 * gives its cache back when it exits, whether it ever allocated or only
 * freed (a consumer thread). Small blocks held in caches count as live in
 * the statistics. */
#define TC_CLASSES 256                          /* chunk sizes 32 .. 4112 */
#define TC_MAX_CHUNK ((size_t)(TC_CLASSES + 1) * 16)
#define TC_LIMIT(cls) ((cls) < 64 ? 16 : 4)      /* at most ~2.5 MiB cached per thread */
#define TC_BATCH 8                               /* chunks taken per lock on a miss */

typedef struct tcache {
  void *head[TC_CLASSES];
  uint8_t count[TC_CLASSES];
  int registered;                    /* thread-exit destructor armed */
  int gone;                          /* the destructor ran: no caching any more */
} tcache_t;

static __thread tcache_t tc;
static pthread_key_t tc_exit_key;
static int tc_exit_ready;

static inline void mark_cached(void *p) {
  __atomic_fetch_or(exm_core_head_of(p), EXM_CHUNK_CACHED, __ATOMIC_RELAXED);
}
static inline void unmark_cached(void *p) {
  __atomic_fetch_and(exm_core_head_of(p), ~EXM_CHUNK_CACHED, __ATOMIC_RELAXED);
}

static inline void cache_put(unsigned cls, void *p) {
  *(void **)p = tc.head[cls];
  tc.head[cls] = p;
  tc.count[cls]++;
}

void *exm_tcache_pop(size_t n) {
  size_t sz = exm_core_chunk_size_for(n);
  if (sz > TC_MAX_CHUNK) return NULL;
  unsigned cls = (unsigned)(sz >> 4) - 2;
  void **p = tc.head[cls];
  if (!p) return NULL;
  tc.head[cls] = p[0];
  tc.count[cls]--;
  unmark_cached(p);
  return p;
}

/* Arm the thread-exit flush. Outside every lock of ours: pthread_setspecific
 * may allocate (keys past the first 32). */
void exm_tcache_arm(void) {
  if (likely(tc.registered) || !tc_exit_ready) return;
  tc.registered = 1;
  pthread_setspecific(tc_exit_key, &tc);
}

/* Under exm_own.lock, after a miss: stock the cache with more chunks of the
 * size just served, so the next few mallocs of it take no lock. */
void exm_tcache_refill(size_t chunk) {
  if (chunk > TC_MAX_CHUNK || tc.gone) return;
  unsigned cls = (unsigned)(chunk >> 4) - 2;
  for (int i = 1; i < TC_BATCH && tc.count[cls] < TC_LIMIT(cls); i++) {
    int dirty, err;
    /* a request that stays small (a 4112-byte chunk is 4095 bytes, not 4104,
     * which would be a page block: shared-mode children write into those) */
    size_t n = chunk - 8 < EXM_SMALL_MAX ? chunk - 8 : EXM_SMALL_MAX - 1;
    void *q = exm_core_alloc(&exm_own.core, n, 16, 0, &dirty, &err);
    if (!q) break;
    mark_cached(q);
    cache_put(cls, q);
  }
}

/* 1 when p (a chunk of our own arena) went into this thread's cache, or
 * went back to the arena together with half of a full cache bin. */
int exm_tcache_push(void *p, const char *who) {
  size_t sz = exm_core_small_peek(&exm_own.core, p);
  if (!sz || sz > TC_MAX_CHUNK || tc.gone) return 0;
  unsigned cls = (unsigned)(sz >> 4) - 2;
  if (__atomic_fetch_or(exm_core_head_of(p), EXM_CHUNK_CACHED, __ATOMIC_RELAXED) & EXM_CHUNK_CACHED)
    exm_bad_pointer(who, p);          /* already in a cache: a double free */
  if (tc.count[cls] >= TC_LIMIT(cls)) {
    /* Full: p and half of the bin go back, under one lock. */
    int saved = errno;
    pthread_mutex_lock(&exm_own.lock);
    unmark_cached(p);
    int bad = exm_core_free(&exm_own.core, p);
    for (int i = TC_LIMIT(cls) / 2; i > 0 && !bad; i--) {
      void **q = tc.head[cls];
      tc.head[cls] = q[0];
      tc.count[cls]--;
      unmark_cached(q);
      exm_core_free(&exm_own.core, q);
    }
    pthread_mutex_unlock(&exm_own.lock);
    errno = saved;
    if (bad) exm_bad_pointer(who, p);
    return 1;
  }
  if (unlikely(!tc.registered)) {
    int saved = errno;
    exm_tcache_arm();
    errno = saved;
  }
  cache_put(cls, p);
  return 1;
}

static void cache_flush(tcache_t *t) {
  for (unsigned cls = 0; cls < TC_CLASSES; cls++) {
    void **p;
    while ((p = t->head[cls])) {
      t->head[cls] = p[0];
      t->count[cls]--;
      unmark_cached(p);
      exm_arena_t *a = exm_arena_of(p);
      if (a) {
        pthread_mutex_lock(&a->lock);
        exm_core_free(&a->core, p);
        pthread_mutex_unlock(&a->lock);
      }
    }
    t->count[cls] = 0;
  }
}

/* The thread is exiting: give the cache back, and cache nothing more (what
 * it frees from now on, in later destructors or libc's own teardown, goes
 * straight back to the arena). */
static void cache_exit(void *arg) {
  tcache_t *t = arg;
  cache_flush(t);
  t->gone = 1;
}

/* In a forked child: the caches of the parent's other threads did not come
 * along, so their chunks lose the mark (they stay leaked: nothing in the
 * child refers to them); the calling thread's own cache came along. */
void exm_tcache_after_fork(exm_core_t *c) {
  exm_core_clear_cached(c);
  for (unsigned cls = 0; cls < TC_CLASSES; cls++)
    for (void **p = tc.head[cls]; p; p = p[0])
      if (exm_core_owns(c, p)) mark_cached(p);
}

void exm_tcache_flush(void) { cache_flush(&tc); }

void exm_tcache_setup(void) {
  if (!pthread_key_create(&tc_exit_key, cache_exit)) tc_exit_ready = 1;
}
