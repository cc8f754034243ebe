/*
 * tcache.c: the per-thread cache of small chunks of the process's own arena.
 *
 * Owns each thread's cache (free lists reached through one initial-exec
 * TLS pointer, tcache.h; the caches carved from anonymous slabs and reused
 * after their thread exits), the thread-exit hook that gives it back, and
 * the depot (batches of cached chunks that full bins hand on and empty
 * ones take, so that chunks freed by one thread reach another without the
 * arena's lock). Promises: a chunk is in at most one cache or one batch of
 * the depot, which its second word says (a mark made of the core's
 * cache_key and the chunk's address: core.h), so a double free is caught
 * whatever thread frees;
 * chunks in a cache or the depot are "in use" for the carving core and live
 * in the statistics until exm_tcache_flush gives them back; the fast paths
 * (exm_tcache_pop, exm_tcache_push with room in the bin) take no lock and
 * make no system call, and the depot's locks are only tried on the
 * allocation paths.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "arena.h"
#include "core.h"
#include "fork.h"
#include "internal.h"
#include "msg.h"
#include "os.h"
#include "tcache.h"

/* ---- per-thread cache of small chunks -------------------------------------
 * With a threshold below a page, every malloc/free of a small object would
 * take the arena lock. Like glibc's tcache, each thread keeps up to
 * TC_LIMIT freed chunks per size class (chunk sizes 32..4112) and hands them
 * out again without the lock. Cached chunks stay "in use" for the carving
 * core. A cached chunk holds a mark in its second word (the core's
 * cache_key xor its address: EXM_CACHED_WORD): a second free of it, from
 * this thread or any other, is caught at once (glibc's tcache only looks in
 * the calling thread's own list), and the core refuses to free a cached
 * chunk. Two frees of one chunk that race each other on two threads are
 * caught too: the mark goes in by compare-and-swap, and a free under the
 * lock reads it after clearing the chunk's live bit (core.h,
 * exm_core_claim_cached); the pop's unmark stays a plain store. A thread
 * gives its cache back when it exits, whether it ever allocated or only
 * freed (a consumer thread). Small blocks held in caches count as live in
 * the statistics. */
#define TC_CLASSES EXM_TC_CLASSES
#define TC_MAX_CHUNK EXM_TC_MAX_CHUNK
#define TC_LIMIT EXM_TC_LIMIT
#define TC_BATCH 8                               /* chunks taken per lock on a miss */
#define TC_SLAB ((size_t)64 * 1024)              /* caches are carved 27 at a time */

typedef exm_tcache_t tcache_t;

__thread tcache_t *exm_tc __attribute__((tls_model("initial-exec")));
static pthread_key_t tc_exit_key;
static int tc_exit_ready;

/* Where an exited thread's pointer goes: every bin empty and full, so that
 * pop finds nothing and push takes the slow path, which sees `gone`. */
static tcache_t gone_cache = {
  .count = { [0 ... TC_CLASSES - 1] = 0xff }, .registered = 1, .gone = 1,
};

/* Caches of exited threads, for the next new thread; under exm_own.lock. */
static tcache_t *free_caches;
static char *slab_next, *slab_end;

/* Under exm_own.lock: a cache for the calling thread, or NULL (no memory:
 * the thread then goes through the lock every time). Not malloc: the cache
 * is part of malloc. */
static tcache_t *cache_new(void) {
  tcache_t *t = free_caches;
  if (t) {
    free_caches = t->next;
  } else {
    if (slab_end - slab_next < (ptrdiff_t)sizeof *t) {
      char *slab = exm_os_anon(TC_SLAB);
      if (!slab) return NULL;
      slab_next = slab, slab_end = slab + TC_SLAB;
    }
    t = (tcache_t *)slab_next;          /* zeroed by the kernel */
    slab_next += (sizeof *t + 63) & ~(size_t)63;
  }
  t->next = NULL;
  exm_tc = t;
  return t;
}

/* Only for chunks of the own arena (refills, the calling thread's bins);
 * a chunk of any arena is unmarked with exm_core_unmark_cached. */
static inline void mark_cached(void *p) { exm_core_mark_cached(&exm_own.core, p); }

static inline void cache_put(tcache_t *t, unsigned cls, void *p) {
  *(void **)p = t->head[cls];
  t->head[cls] = p;
  t->count[cls]++;
}

/* Arm the thread-exit flush. Outside every lock of ours: pthread_setspecific
 * may allocate (keys past the first 32). */
void exm_tcache_arm(void) {
  tcache_t *t = exm_tc;
  if (!t || likely(t->registered) || !tc_exit_ready) return;
  t->registered = 1;
  pthread_setspecific(tc_exit_key, t);
}

/* Under exm_own.lock, after a miss: stock the cache with more chunks of the
 * size just served, so the next few mallocs of it take no lock. */
void exm_tcache_refill(size_t chunk) {
  tcache_t *t = exm_tc;
  if (chunk > TC_MAX_CHUNK || (!t && !(t = cache_new())) || t->gone) return;
  unsigned cls = (unsigned)(chunk >> 4) - 2;
  for (int i = 1; i < TC_BATCH && t->count[cls] < TC_LIMIT(cls); i++) {
    int dirty, err;
    /* a request that stays small (a 4112-byte chunk is 4095 bytes, not 4104,
     * which would be a page block: shared-mode children write into those) */
    size_t n = chunk - 8 < EXM_SMALL_MAX ? chunk - 8 : EXM_SMALL_MAX - 1;
    void *q = exm_core_alloc(&exm_own.core, n, 16, 0, &dirty, &err);
    if (!q) break;
    mark_cached(q);
    cache_put(t, cls, q);
  }
}

/* ---- the depot: batches of cached chunks between threads ------------------
 * A full bin used to go back to the carving core under exm_own.lock, and an
 * empty one to be restocked from it under the same lock: with threads that
 * free what others allocate (a producer and its consumers, a server's
 * requests), every eighth operation took the one lock of the arena. Like
 * tcmalloc's transfer cache, a full bin now hands half of itself, as one
 * batch, to the depot of its size class, and an empty bin takes a whole
 * batch from there before it tries the arena. The chunks keep their cache
 * mark throughout (a free of one of them, from any thread, is a double free
 * and is caught), and stay "in use" for the core.
 *
 * Each class has a lock (one of DEPOT_LOCKS, shared by classes 256 bytes
 * apart: fork takes them all, and ThreadSanitizer follows at most 64
 * held), held for a few stores, and only ever tried on the allocation
 * paths: a thread that finds it taken goes to the arena as before, so
 * nothing waits for it but fork and the drains below. A thread holds at most one at a time and inside
 * exm_enter, so that a fork from a signal handler never waits for one.
 * A batch is DEPOT_BATCH(cls) chunks linked through their first word; its
 * first chunk's third word links the batches (every chunk has 24 usable
 * bytes; the second holds the mark). A class keeps at most DEPOT_BYTES in
 * batches; past that a full bin goes back to the core as before. */
#define DEPOT_BATCH(cls) (TC_LIMIT(cls) / 2)
#define DEPOT_BYTES ((size_t)64 * 1024)          /* per class: at most 16 MiB over all */

#define DEPOT_LOCKS 16                           /* class c's lock: c % DEPOT_LOCKS (neighbours differ) */

typedef struct depot {
  void **top;                                    /* first chunk of the newest batch */
  size_t batches;
} depot_t;

static depot_t depot[TC_CLASSES];
static struct {
  pthread_mutex_t m;
} __attribute__((aligned(64))) depot_lock[DEPOT_LOCKS] = { [0 ... DEPOT_LOCKS - 1] = { PTHREAD_MUTEX_INITIALIZER } };
/* 1 + the lock this thread holds, 0: none. Initial-exec as exm_tc (tcache.h):
 * no __tls_get_addr call on the depot's paths, and 4 bytes of static TLS. */
static __thread int depot_held __attribute__((tls_model("initial-exec")));

static inline size_t depot_cap(unsigned cls) {
  size_t per = (size_t)DEPOT_BATCH(cls) * ((size_t)(cls + 2) << 4);
  return DEPOT_BYTES / per;
}

static inline int depot_trylock(unsigned cls) {
  if (pthread_mutex_trylock(&depot_lock[cls % DEPOT_LOCKS].m)) return 0;
  depot_held = 1 + (int)(cls % DEPOT_LOCKS);
  return 1;
}
static inline void depot_lock_wait(unsigned cls) {
  pthread_mutex_lock(&depot_lock[cls % DEPOT_LOCKS].m);
  depot_held = 1 + (int)(cls % DEPOT_LOCKS);
}
static inline void depot_unlock(unsigned cls) {
  depot_held = 0;
  pthread_mutex_unlock(&depot_lock[cls % DEPOT_LOCKS].m);
}

/* The bin of cls is full: hand its newest DEPOT_BATCH(cls) chunks to the
 * depot. 0 when the depot is full or busy (the caller goes to the core). */
static int depot_put(tcache_t *t, unsigned cls) {
  depot_t *d = &depot[cls];
  int ok = 0;
  exm_enter();
  if (depot_trylock(cls)) {
    if (d->batches < depot_cap(cls)) {
      void **first = t->head[cls], **last = first;
      for (int i = 1; i < DEPOT_BATCH(cls); i++) last = last[0];
      t->head[cls] = last[0];
      t->count[cls] -= DEPOT_BATCH(cls);
      last[0] = NULL;
      first[2] = d->top;
      d->top = first;
      d->batches++;
      ok = 1;
    }
    depot_unlock(cls);
  }
  exm_leave();
  return ok;
}

/* The bin of cls is empty: a batch from the depot into it, and one of its
 * chunks (unmarked) for the caller; NULL when the depot has none or is busy. */
static void *depot_take(tcache_t *t, unsigned cls) {
  depot_t *d = &depot[cls];
  void **first = NULL;
  exm_enter();
  if (depot_trylock(cls)) {
    first = d->top;
    if (first) {
      d->top = first[2];
      d->batches--;
    }
    depot_unlock(cls);
  }
  exm_leave();
  if (!first) return NULL;
  t->head[cls] = first[0];
  t->count[cls] = (uint8_t)(DEPOT_BATCH(cls) - 1);
  exm_core_unmark_cached(first);
  return first;
}

/* From exm_arena_alloc before the lock, after a miss of exm_tcache_pop: a
 * chunk of n's size through the depot, or NULL. */
void *exm_tcache_pop_depot(size_t n) {
  tcache_t *t = exm_tc;
  size_t sz = exm_core_chunk_size_for(n);
  if (!t || t->gone || sz > TC_MAX_CHUNK) return NULL;
  return depot_take(t, (unsigned)(sz >> 4) - 2);
}

/* A thread's bins, or the depot's batches, back to their arenas: one lock
 * per run of chunks of the same arena (it used to be one per chunk: a
 * thread's exit took the lock a few hundred times). */
static void chain_free(void **p) {
  exm_arena_t *held = NULL;
  while (p) {
    void **q = p[0];                  /* before the free, which may reuse p's words */
    exm_core_unmark_cached(p);
    exm_arena_t *a = exm_arena_of(p);
    if (a != held) {
      if (held) pthread_mutex_unlock(&held->lock);
      if ((held = a)) pthread_mutex_lock(&a->lock);
    }
    if (a && exm_core_free(&a->core, p)) {
      /* a free of p on another thread, racing this one (core.h) */
      pthread_mutex_unlock(&held->lock);
      exm_bad_pointer("free", p);
    }
    p = q;
  }
  if (held) pthread_mutex_unlock(&held->lock);
}

/* Every batch of the depot back to its arena (the statistics, malloc_trim):
 * the chunks are free, not live. Each class's batches are taken off under
 * its lock, then freed under the arena's. */
static void depot_drain(void) {
  exm_enter();
  for (unsigned cls = 0; cls < TC_CLASSES; cls++) {
    depot_t *d = &depot[cls];
    depot_lock_wait(cls);
    void **b = d->top;
    d->top = NULL;
    d->batches = 0;
    depot_unlock(cls);
    while (b) {
      void **next = b[2];
      chain_free(b);
      b = next;
    }
  }
  exm_leave();
}

/* exm_check: every chunk in the depot is a live small chunk of an arena,
 * marked cached, in a batch of its class's length, and each class's count
 * and bound hold. 0, or -1 with the reason in msg. */
int exm_tcache_check(char *msg, size_t msglen) {
  int bad = 0;
  const char *why = NULL;
  exm_enter();
  for (unsigned cls = 0; cls < TC_CLASSES && !bad; cls++) {
    depot_t *d = &depot[cls];
    depot_lock_wait(cls);
    size_t batches = 0, want = (size_t)(cls + 2) << 4;
    for (void **b = d->top; b && !bad; b = b[2], batches++) {
      int len = 0;
      for (void **p = b; p && !bad; p = p[0], len++) {
        exm_arena_t *a = exm_arena_of(p);
        /* a refill's chunk may be up to one minimum chunk larger than asked
         * (the core does not split off less); a page-aligned one (a refill
         * can hand out those too) is not peeked at, only its head read */
        size_t head = a ? __atomic_load_n(exm_core_head_of(p), __ATOMIC_RELAXED) : 0;
        size_t got = !a ? 0 : ((uintptr_t)p & (EXM_PAGE - 1)) ? exm_core_small_peek(&a->core, p) : (head & 2) ? head & ~(size_t)7 : 0;
        if (got < want || got >= want + 32) bad = 1, why = "a chunk in the depot is not a live small chunk of its class";
        else if (!exm_core_is_cached(&a->core, p)) bad = 1, why = "a chunk in the depot is not marked cached";
      }
      if (!bad && len != DEPOT_BATCH(cls)) bad = 1, why = "a batch in the depot has the wrong length";
    }
    if (!bad && (batches != d->batches || batches > depot_cap(cls))) bad = 1, why = "the depot's batch count is wrong";
    depot_unlock(cls);
  }
  exm_leave();
  if (bad && msglen) {
    size_t n = strlen(why);
    if (n >= msglen) n = msglen - 1;
    memcpy(msg, why, n);
    msg[n] = 0;
  }
  return bad ? -1 : 0;
}

/* fork: the parent's handler takes every class's lock (after the arenas'),
 * and unlocks them in the parent. The child resets them: all of them, but
 * for a child of a fork from a signal handler (which takes none), the one
 * this thread's interrupted call holds and gives back itself.
 *
 * The child reads no chunk here: until its own handler has put the
 * parent's copy of the small-chunk segments in place (fork.c), the
 * chunks it sees are the parent's live memory, which the parent's threads
 * rewrite as soon as its handler lets go of the locks (a batch taken off
 * the depot, its first chunk handed out and written over: a child that
 * walked the batches from here read the program's data as links, CI's
 * stress_fork at 8 threads, 1 run in 3). A fork that took every lock left
 * the depot consistent: its counts stand. After an interrupted fork,
 * another thread may have been in the middle of a batch, and nothing will
 * copy the segments: each class but the held one is emptied, its chunks
 * left to the parent (leaked here; such a child should only exec or exit). */
void exm_tcache_fork_lock(void) {
  for (int i = 0; i < DEPOT_LOCKS; i++) pthread_mutex_lock(&depot_lock[i].m);
}
void exm_tcache_fork_unlock(void) {
  for (int i = DEPOT_LOCKS; i-- > 0;) pthread_mutex_unlock(&depot_lock[i].m);
}
void exm_tcache_fork_child(int took_all) {
  for (int i = 0; i < DEPOT_LOCKS; i++)
    if (1 + i != depot_held) pthread_mutex_init(&depot_lock[i].m, NULL);
  if (took_all) return;
  for (unsigned cls = 0; cls < TC_CLASSES; cls++) {
    if (1 + (int)(cls % DEPOT_LOCKS) == depot_held) continue;
    depot[cls].top = NULL;
    depot[cls].batches = 0;
  }
}

/* free may call this outside exm_enter (override.c): it enters by itself
 * around the lock, so that a fork from a signal handler that interrupts it
 * does not wait for a lock this thread holds. */
int exm_tcache_push_slow(void *p, unsigned cls, const char *who) {
  tcache_t *t = exm_tc;
  if (t && t->gone) return 0;
  int saved = errno;
  if (!t) {                           /* a thread that frees before it allocates */
    exm_enter();
    pthread_mutex_lock(&exm_own.lock);
    t = cache_new();
    pthread_mutex_unlock(&exm_own.lock);
    exm_leave();
    if (!t) return errno = saved, 0;
  }
  exm_tcache_claim(&exm_own.core, p, who);
  if (t->count[cls] >= TC_LIMIT(cls) && depot_put(t, cls)) {
    exm_tcache_arm();
    errno = saved;
    cache_put(t, cls, p);
    return 1;
  }
  if (t->count[cls] >= TC_LIMIT(cls)) {
    /* Full, and the depot too: p and half of the bin go back, under one lock. */
    exm_enter();
    pthread_mutex_lock(&exm_own.lock);
    exm_core_unmark_cached(p);
    void *bad = exm_core_free(&exm_own.core, p) ? p : NULL;
    for (int i = TC_LIMIT(cls) / 2; i > 0 && !bad; i--) {
      void **q = t->head[cls];
      t->head[cls] = q[0];
      t->count[cls]--;
      exm_core_unmark_cached(q);
      if (exm_core_free(&exm_own.core, q)) bad = q;   /* a free of q racing this (core.h) */
    }
    pthread_mutex_unlock(&exm_own.lock);
    exm_leave();
    errno = saved;
    if (bad) exm_bad_pointer(who, bad);
    return 1;
  }
  exm_tcache_arm();
  errno = saved;
  cache_put(t, cls, p);
  return 1;
}

/* realloc without the lock where the cache can serve it (tcache.h). The
 * pointer passes the checks free's cache applies (a live small chunk of the
 * own arena, in no cache); anything else takes the locked path, which
 * checks it in full. */
void *exm_tcache_realloc(exm_core_t *c, void *p, size_t n, const char *who) {
  size_t sz = exm_core_small_peek(c, p);
  if (!sz || exm_core_is_cached(c, p)) return NULL;
  size_t want = exm_core_chunk_size_for(n);
  if (want <= sz && sz - want < 32) return p;    /* fits, nothing to split off */
  void *q = exm_tcache_pop(n);
  if (!q) return NULL;
  memcpy(q, p, sz - 8 < n ? sz - 8 : n);
  if (!exm_tcache_push(c, p, who)) {            /* the thread is exiting: no cache */
    exm_enter();
    exm_arena_free(&exm_own, p, who);
    exm_leave();
  }
  return q;
}

/* to_depot: a thread that exits hands whole batches to the depot first
 * (for the threads that go on), the rest goes back to the arenas. */
static void cache_flush(tcache_t *t, int to_depot) {
  for (unsigned cls = 0; cls < TC_CLASSES; cls++) {
    while (to_depot && t->count[cls] >= DEPOT_BATCH(cls) && depot_put(t, cls)) {}
    void **p = t->head[cls];
    t->head[cls] = NULL;
    t->count[cls] = 0;
    chain_free(p);
  }
}

/* The thread is exiting: give the cache back, and cache nothing more (what
 * it frees from now on, in later destructors or libc's own teardown, goes
 * straight back to the arena). */
static void cache_exit(void *arg) {
  tcache_t *t = arg;
  cache_flush(t, 1);
  exm_tc = &gone_cache;
  t->registered = 0;
  pthread_mutex_lock(&exm_own.lock);
  t->next = free_caches;
  free_caches = t;
  pthread_mutex_unlock(&exm_own.lock);
}

/* In a forked child: the caches of the parent's other threads did not come
 * along, so their chunks lose the mark (they stay leaked: nothing in the
 * child refers to them); the calling thread's own cache and the depot came
 * along. */
void exm_tcache_after_fork(exm_core_t *c) {
  exm_core_clear_cached(c);
  for (unsigned cls = 0; cls < TC_CLASSES; cls++)
    for (void **b = depot[cls].top; b; b = b[2])
      for (void **p = b; p; p = p[0])
        if (exm_core_owns(c, p)) mark_cached(p);
  tcache_t *t = exm_tc;
  if (!t || t->gone) return;
  for (unsigned cls = 0; cls < TC_CLASSES; cls++)
    for (void **p = t->head[cls]; p; p = p[0])
      if (exm_core_owns(c, p)) mark_cached(p);
}

void exm_tcache_flush(void) {
  tcache_t *t = exm_tc;
  if (t && !t->gone) cache_flush(t, 0);
  depot_drain();
}

void exm_tcache_setup(void) {
  if (!pthread_key_create(&tc_exit_key, cache_exit)) tc_exit_ready = 1;
}
