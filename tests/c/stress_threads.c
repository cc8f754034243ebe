/*
 * stress_threads.c: N threads (argv[1], default 1) hammer the allocator,
 * argv[2] operations each (default 20000; "Ns": for N seconds instead, for
 * soaks), with random sizes from a few bytes to several
 * MiB through malloc, calloc, realloc, aligned_alloc, posix_memalign and free.
 * Every block carries a fill pattern derived from its own seed, verified in
 * full before it is freed or resized; blocks also migrate between threads
 * through a shared exchange, so frees happen on other threads than the
 * allocation. exm_check runs at the end.
 */
#include "common.h"

#include <malloc.h>
#include <pthread.h>

#define SLOTS 192
#define XCHG 64

static blk_t xchg[XCHG];
static pthread_mutex_t xchg_lock = PTHREAD_MUTEX_INITIALIZER;
static volatile int stop;
static size_t threshold;

typedef struct tstate {
  int id;
  uint64_t rng;
  long ops, bytes_checked, file_backed;
  blk_t slot[SLOTS];
} tstate_t;

static uint64_t rnd(tstate_t *t) { return xorshift64(&t->rng); }

/* Mostly small, a few of several MiB. */
static const size_band_t SIZES[] = {
    {600, 1, 512}, {850, 1, 16384}, {960, 1, 512 * KiB}, {990, 512 * KiB, 2 * MiB}, {1000, 2 * MiB, 6 * MiB},
};

static size_t rand_size(tstate_t *t) { return band_size(SIZES, &t->rng); }

static void verify(tstate_t *t, blk_t *b, const char *what) {
  long long m = find_pattern_mismatch(b->p, b->n, b->seed);
  CHECK(m < 0, "thread %d: %s: block %p of %zu B (fb %d) corrupted at byte %lld", t->id, what,
        (void *)b->p, b->n, api_fb(b->p), m);
  t->bytes_checked += (long)b->n;
}

static void new_block(tstate_t *t, blk_t *b) {
  size_t n = rand_size(t);
  unsigned char *p = NULL;
  int how = (int)(rnd(t) % 6);
  size_t al = (size_t)16 << (rnd(t) % 9); /* 16 .. 4096 */
  switch (how) {
  case 0:
  case 1: p = malloc(n); break;
  case 2:
    p = calloc(1, n);
    if (p) {
      long long nz = find_nonzero(p, n);
      CHECK(nz < 0, "thread %d: calloc(%zu) byte %lld not zero (fb %d)", t->id, n, nz, api_fb(p));
    }
    break;
  case 3: p = realloc(NULL, n); break;
  case 4: p = aligned_alloc(al, n); break;
  case 5: {
    void *q = NULL;
    int rc = posix_memalign(&q, al, n);
    CHECK(rc == 0, "posix_memalign(%zu, %zu) = %d", al, n, rc);
    p = q;
    break;
  }
  }
  CHECK(p != NULL, "thread %d: allocation %d of %zu B failed, errno %d", t->id, how, n, errno);
  if (how >= 4) CHECK((uintptr_t)p % al == 0, "aligned %zu block %p", al, (void *)p);
  if (threshold != SIZE_MAX && n >= threshold && n > 0) {
    CHECK(api_fb(p), "thread %d: %zu B block at threshold %zu not file-backed", t->id, n,
          threshold);
    t->file_backed++;
  }
  b->p = p;
  b->n = n;
  b->seed = rnd(t);
  fill_pattern(p, n, b->seed);
}

static long ops_per_thread = -1;    /* -1: until the time is up */

static void *worker(void *arg) {
  tstate_t *t = arg;
  while (ops_per_thread < 0 ? !stop : t->ops < ops_per_thread) {
    blk_t *b = &t->slot[rnd(t) % SLOTS];
    uint64_t op = rnd(t) % 10;
    t->ops++;
    if (!b->p) {
      new_block(t, b);
    } else if (op < 5) {
      verify(t, b, "free");
      errno = 1234;
      free(b->p);
      CHECK(errno == 1234, "free changed errno to %d", errno);
      b->p = NULL;
    } else if (op < 8) {
      verify(t, b, "realloc");
      size_t n = rand_size(t);
      unsigned char *q = realloc(b->p, n);
      CHECK(q != NULL, "realloc(%zu -> %zu) failed", b->n, n);
      size_t keep = b->n < n ? b->n : n;
      long long m = find_pattern_mismatch(q, keep, b->seed);
      CHECK(m < 0, "thread %d: realloc %zu -> %zu lost byte %lld", t->id, b->n, n, m);
      b->p = q;
      b->n = n;
      b->seed = rnd(t);
      fill_pattern(q, n, b->seed);
    } else {
      /* hand the block to whichever thread picks this exchange slot next */
      verify(t, b, "exchange");
      pthread_mutex_lock(&xchg_lock);
      blk_t *x = &xchg[rnd(t) % XCHG];
      blk_t tmp = *x;
      *x = *b;
      *b = tmp;
      pthread_mutex_unlock(&xchg_lock);
      if (b->p) verify(t, b, "received");
    }
  }
  for (int i = 0; i < SLOTS; i++)
    if (t->slot[i].p) {
      verify(t, &t->slot[i], "final free");
      free(t->slot[i].p);
    }
  return NULL;
}

int main(int argc, char **argv) {
  api_init();
  int n = argc > 1 ? atoi(argv[1]) : 1;
  const char *budget = argc > 2 ? argv[2] : "20000";
  double secs;
  parse_budget(budget, "OPS", &ops_per_thread, &secs);
  threshold = api_threshold();
  printf("threads=%d budget=%s threshold=%zu\n", n, budget, threshold);
  CHECK(n >= 1 && n <= 64, "bad thread count %d", n);
  tstate_t *ts = calloc((size_t)n, sizeof *ts);
  pthread_t *th = calloc((size_t)n, sizeof *th);
  CHECK(ts && th, "calloc");
  exm_stats_t st0 = {0};
  if (X.get_stats) CHECK(X.get_stats(&st0) == 0, "exm_get_stats");
  for (int i = 0; i < n; i++) {
    ts[i].id = i;
    ts[i].rng = 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1) + (uint64_t)time(NULL);
    CHECK(pthread_create(&th[i], NULL, worker, &ts[i]) == 0, "pthread_create");
  }
  if (ops_per_thread < 0) run_for(secs, &stop);
  long ops = 0, checked = 0, fb = 0;
  for (int i = 0; i < n; i++) {
    pthread_join(th[i], NULL);
    ops += ts[i].ops;
    checked += ts[i].bytes_checked;
    fb += ts[i].file_backed;
  }
  tstate_t dummy = {.id = -1};
  for (int i = 0; i < XCHG; i++)
    if (xchg[i].p) {
      verify(&dummy, &xchg[i], "exchange leftover");
      free(xchg[i].p);
    }
  API_CHECK("stress");
  if (X.get_stats) {
    exm_stats_t st;
    CHECK(X.get_stats(&st) == 0, "exm_get_stats");
    printf("live_blocks=%" PRIu64 " live_bytes=%" PRIu64 " total_allocs=%" PRIu64 "\n",
           st.live_blocks, st.live_bytes, st.total_allocs);
    /* libc's own allocations (thread bookkeeping) may stay; ours must not */
    CHECK(st.live_blocks <= st0.live_blocks + 16,
          "%" PRIu64 " arena blocks live after freeing all, %" PRIu64 " before the threads",
          st.live_blocks, st0.live_blocks);
  }
  printf("ops=%ld checked_mb=%ld file_backed_allocs=%ld\n", ops, checked >> 20, fb);
  free(ts);
  free(th);
  printf("stress_threads ok\n");
  return 0;
}
