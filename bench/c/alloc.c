/*
 * alloc.c: allocator workloads modelled on the standard allocator benchmarks
 * (larson, xmalloc-test, Hoard's cache-scratch and cache-thrash, mimalloc's
 * stress test), plus a realloc growth loop. The total work is fixed and split
 * among the threads, so a run at 8 threads on 2 cores does the same work as
 * one at 1 thread (oversubscribed pools are the case to see).
 *
 *   ./alloc MODE [--threads T] [--ops N]
 *
 * MODE (default --ops in brackets):
 *   larson        T chains, each a table of 4000 blocks of 8-1000 B: replace a
 *                 random block (free, malloc) 20 000 times, then hand the
 *                 table to a new thread and exit; the new thread frees what
 *                 the old one allocated. [10M replacements]
 *   xmalloc       (T+1)/2 producers malloc batches of 1024 blocks of 16-512 B
 *                 and queue them; T/2 consumers free them (one thread: it
 *                 does both in turn). [8M blocks]
 *   cache-scratch main mallocs T 8-byte objects in a row and gives one to each
 *                 thread, which frees it, then mallocs 8 B, writes it, frees,
 *                 2000 times: an allocator that hands a thread the block it
 *                 was passed makes them false-share. [ops: 800M byte writes]
 *   cache-thrash  the same without the hand-off: do the 8-byte blocks that
 *                 threads malloc at the same time share a cache line?
 *                 [800M byte writes]
 *   mstress       a large live set (200 000 blocks of 16 B-64 KiB, ~100 MiB,
 *                 split among threads) churned: replace a random block with one
 *                 of a new size; one time in sixteen swap it with a slot of a
 *                 shared transfer table instead (freed later by whoever takes
 *                 it). [1M operations]
 *   realloc       each thread grows 32 vectors by realloc from 8 B to 64 KiB,
 *                 half by 1.5x, half by appends of 16-128 B, then frees and
 *                 starts again. [3M reallocs]
 *
 * Output (key=value): mode=, threads=, ops=, seconds= (wall, threads started
 * to joined), cpu_s= (user+system), mops=, live_req= (mstress: bytes
 * requested by the live set once filled), sum= (keeps the writes alive).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "clock.h"   /* cpu_s, now_s, next */

static int nthreads = 1;
static long ops = -1;

static uint64_t seed(long i) { return 0x9E3779B97F4A7C15ULL ^ (uint64_t)(i + 1) * 0x100000001B3ULL; }

static void *xmalloc(size_t n) {
  void *p = malloc(n);
  if (!p) {
    fprintf(stderr, "alloc: malloc(%zu) failed\n", n);
    exit(1);
  }
  return p;
}

static long share(long i) { return ops / nthreads + (i < ops % nthreads); }

static void start_all(void *(*fn)(void *), pthread_t *t) {
  for (long i = 0; i < nthreads; i++)
    if (pthread_create(&t[i], NULL, fn, (void *)i)) {
      fprintf(stderr, "alloc: pthread_create failed\n");
      exit(1);
    }
}

static uint64_t join_all(pthread_t *t) {
  uint64_t sum = 0;
  for (int i = 0; i < nthreads; i++) {
    void *r;
    pthread_join(t[i], &r);
    sum += (uint64_t)(uintptr_t)r;
  }
  return sum;
}

/* ---- larson ------------------------------------------------------------------ */

#define LARSON_SLOTS 4000
#define LARSON_EPOCH 20000

typedef struct chain {
  char **slot;
  long left;          /* replacements still to do */
  uint64_t rng, sum;
} chain_t;

static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;
static int chains_done;

static void *larson_epoch(void *arg) {
  chain_t *c = arg;
  long n = c->left < LARSON_EPOCH ? c->left : LARSON_EPOCH;
  for (long i = 0; i < n; i++) {
    uint64_t r = next(&c->rng);
    long v = (long)(r % LARSON_SLOTS);
    c->sum += (unsigned char)c->slot[v][0];
    free(c->slot[v]);
    size_t len = 8 + (r >> 20) % 993;
    c->slot[v] = xmalloc(len);
    c->slot[v][0] = (char)r;
  }
  c->left -= n;
  /* The successor frees what this thread allocated (and this thread's
   * heap, if it has one, is orphaned). */
  pthread_t t;
  pthread_attr_t at;
  pthread_attr_init(&at);
  pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
  if (c->left > 0 && pthread_create(&t, &at, larson_epoch, c) == 0) return NULL;
  if (c->left > 0) {
    fprintf(stderr, "alloc: pthread_create failed\n");
    exit(1);
  }
  pthread_mutex_lock(&done_lock);
  chains_done++;
  pthread_cond_signal(&done_cond);
  pthread_mutex_unlock(&done_lock);
  return NULL;
}

static uint64_t larson(void) {
  chain_t *c = xmalloc(sizeof *c * (size_t)nthreads);
  for (long i = 0; i < nthreads; i++) {
    c[i] = (chain_t){ .slot = xmalloc(sizeof(char *) * LARSON_SLOTS), .left = share(i), .rng = seed(i) };
    for (long s = 0; s < LARSON_SLOTS; s++) {
      size_t len = 8 + next(&c[i].rng) % 993;
      c[i].slot[s] = xmalloc(len);
      c[i].slot[s][0] = (char)s;
    }
  }
  pthread_attr_t at;
  pthread_attr_init(&at);
  pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
  for (long i = 0; i < nthreads; i++) {
    pthread_t t;
    if (pthread_create(&t, &at, larson_epoch, &c[i])) {
      fprintf(stderr, "alloc: pthread_create failed\n");
      exit(1);
    }
  }
  pthread_mutex_lock(&done_lock);
  while (chains_done < nthreads) pthread_cond_wait(&done_cond, &done_lock);
  pthread_mutex_unlock(&done_lock);
  uint64_t sum = 0;
  for (long i = 0; i < nthreads; i++) {
    for (long s = 0; s < LARSON_SLOTS; s++) free(c[i].slot[s]);
    free(c[i].slot);
    sum += c[i].sum;
  }
  free(c);
  return sum;
}

/* ---- xmalloc: producers and consumers ------------------------------------------ */

#define XM_BATCH 1024
#define XM_QUEUE_MAX 32

typedef struct batch {
  struct batch *next;
  char *p[XM_BATCH];
} batch_t;

static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_nonempty = PTHREAD_COND_INITIALIZER, q_nonfull = PTHREAD_COND_INITIALIZER;
static batch_t *q_head;
static int q_len, producers_left;

static batch_t *produce(uint64_t *x) {
  batch_t *b = xmalloc(sizeof *b);
  for (int k = 0; k < XM_BATCH; k++) {
    uint64_t r = next(x);
    size_t len = 16 + r % 497;
    b->p[k] = xmalloc(len);
    b->p[k][0] = (char)r;
  }
  return b;
}

static uint64_t consume(batch_t *b) {
  uint64_t sum = 0;
  for (int k = 0; k < XM_BATCH; k++) {
    sum += (unsigned char)b->p[k][0];
    free(b->p[k]);
  }
  free(b);
  return sum;
}

static long xm_batches(long i, long nprod) { return (ops / XM_BATCH) / nprod + (i < (ops / XM_BATCH) % nprod); }

static void *xm_producer(void *arg) {
  long i = (long)arg, nprod = (nthreads + 1) / 2;
  uint64_t x = seed(i);
  for (long n = xm_batches(i, nprod); n > 0; n--) {
    batch_t *b = produce(&x);
    pthread_mutex_lock(&q_lock);
    while (q_len >= XM_QUEUE_MAX) pthread_cond_wait(&q_nonfull, &q_lock);
    b->next = q_head;
    q_head = b;
    q_len++;
    pthread_cond_signal(&q_nonempty);
    pthread_mutex_unlock(&q_lock);
  }
  pthread_mutex_lock(&q_lock);
  if (--producers_left == 0) pthread_cond_broadcast(&q_nonempty);
  pthread_mutex_unlock(&q_lock);
  return NULL;
}

static void *xm_consumer(void *arg) {
  (void)arg;
  uint64_t sum = 0;
  for (;;) {
    pthread_mutex_lock(&q_lock);
    while (!q_head && producers_left) pthread_cond_wait(&q_nonempty, &q_lock);
    batch_t *b = q_head;
    if (b) {
      q_head = b->next;
      q_len--;
      pthread_cond_signal(&q_nonfull);
    }
    pthread_mutex_unlock(&q_lock);
    if (!b) break;
    sum += consume(b);
  }
  return (void *)(uintptr_t)sum;
}

static void *xm_thread(void *arg) {
  long i = (long)arg;
  if (nthreads == 1) {   /* both roles in turn: no cross-thread frees */
    uint64_t x = seed(0), sum = 0;
    for (long n = ops / XM_BATCH; n > 0; n--) sum += consume(produce(&x));
    return (void *)(uintptr_t)sum;
  }
  return i < (nthreads + 1) / 2 ? xm_producer((void *)i) : xm_consumer(NULL);
}

/* ---- cache-scratch and cache-thrash ------------------------------------------------ */

#define CACHE_ITERS 2000
#define CACHE_OBJ 8

static char **handed;   /* cache-scratch: one object per thread, malloc'd by main */

static void *cache_thread(void *arg) {
  long i = (long)arg;
  if (handed) free(handed[i]);
  long reps = share(i) / CACHE_ITERS / CACHE_OBJ;
  uint64_t sum = 0;
  for (int it = 0; it < CACHE_ITERS; it++) {
    volatile char *p = xmalloc(CACHE_OBJ);
    for (long r = 0; r < reps; r++)
      for (int k = 0; k < CACHE_OBJ; k++) p[k] = (char)(p[k] + 1);
    sum += (unsigned char)p[0];
    free((void *)p);
  }
  return (void *)(uintptr_t)sum;
}

/* ---- mstress ------------------------------------------------------------------------ */

#define MS_SLOTS 200000
#define MS_TRANSFER 1024

static char *transfer[MS_TRANSFER];
static uint64_t live_req;   /* bytes requested by the filled live set */

static size_t ms_size(uint64_t r) {
  unsigned k = r & 1023;
  if (k < 900) return 16 + (r >> 10) % 241;          /* 16-256 B: 88 % */
  if (k < 1015) return 257 + (r >> 10) % 3840;       /* to 4 KiB: 11 % */
  return 4097 + (r >> 10) % 61440;                   /* to 64 KiB: 0.5 % */
}

/* A block holds its size in its first word (the one that takes it from the
 * transfer table does not know it otherwise). */
static char *ms_alloc(uint64_t r) {
  size_t n = ms_size(r);
  char *p = xmalloc(n);
  memcpy(p, &n, sizeof n);
  p[n - 1] = (char)r;
  return p;
}

static uint64_t ms_free(char *p) {
  if (!p) return 0;
  size_t n;
  memcpy(&n, p, sizeof n);
  uint64_t v = (unsigned char)p[n - 1];
  free(p);
  return v;
}

static void *ms_thread(void *arg) {
  long i = (long)arg;
  long nslots = MS_SLOTS / nthreads;
  uint64_t x = seed(i), sum = 0, req = 0;
  char **slot = xmalloc(sizeof *slot * (size_t)nslots);
  for (long s = 0; s < nslots; s++) {
    slot[s] = ms_alloc(next(&x));
    size_t n;
    memcpy(&n, slot[s], sizeof n);
    req += n;
  }
  __atomic_fetch_add(&live_req, req, __ATOMIC_RELAXED);
  for (long n = share(i); n > 0; n--) {
    uint64_t r = next(&x);
    long s = (long)(r % (uint64_t)nslots);
    if (((r >> 40) & 15) == 0) {
      slot[s] = __atomic_exchange_n(&transfer[(r >> 44) % MS_TRANSFER], slot[s], __ATOMIC_ACQ_REL);
      continue;
    }
    sum += ms_free(slot[s]);
    slot[s] = ms_alloc(next(&x));
  }
  for (long s = 0; s < nslots; s++) sum += ms_free(slot[s]);
  free(slot);
  return (void *)(uintptr_t)sum;
}

/* ---- realloc growth --------------------------------------------------------------------- */

#define RG_VECTORS 32
#define RG_MAX 65536

static void *rg_thread(void *arg) {
  long i = (long)arg;
  uint64_t x = seed(i), sum = 0;
  char *v[RG_VECTORS] = { 0 };
  size_t len[RG_VECTORS] = { 0 };
  for (long n = share(i); n > 0; n--) {
    uint64_t r = next(&x);
    int k = (int)(r % RG_VECTORS);
    size_t want = !len[k] ? 8 : k & 1 ? len[k] + len[k] / 2 : len[k] + 16 + (r >> 8) % 113;
    if (want > RG_MAX) {
      sum += (unsigned char)v[k][len[k] - 1];
      free(v[k]);
      v[k] = NULL;
      want = 8;
    }
    char *p = realloc(v[k], want);
    if (!p) {
      fprintf(stderr, "alloc: realloc(%zu) failed\n", want);
      exit(1);
    }
    p[want - 1] = (char)r;
    v[k] = p;
    len[k] = want;
  }
  for (int k = 0; k < RG_VECTORS; k++) free(v[k]);
  return (void *)(uintptr_t)sum;
}

/* ---- main ------------------------------------------------------------------------------ */

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "";
  for (int i = 2; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--threads")) nthreads = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--ops")) ops = atol(argv[i + 1]);
    else mode = "";
  }
  static const struct { const char *name; long ops; } modes[] = {
    { "larson", 10000000 }, { "xmalloc", 8000000 }, { "cache-scratch", 800000000 },
    { "cache-thrash", 800000000 }, { "mstress", 1000000 }, { "realloc", 3000000 },
  };
  int m = -1;
  for (int k = 0; k < (int)(sizeof modes / sizeof modes[0]); k++)
    if (!strcmp(mode, modes[k].name)) m = k;
  if (m < 0 || nthreads < 1 || nthreads > 64 || (argc % 2)) {
    fprintf(stderr, "usage: %s larson|xmalloc|cache-scratch|cache-thrash|mstress|realloc [--threads T] [--ops N]\n",
            argv[0]);
    return 2;
  }
  if (ops < 0) ops = modes[m].ops;
  if (ops < 1) {
    fprintf(stderr, "alloc: --ops must be at least 1\n");
    return 2;
  }
  pthread_t t[64];
  uint64_t sum = 0;
  double c0 = cpu_s(), t0 = now_s();
  switch (m) {
  case 0:
    sum = larson();
    break;
  case 1:
    producers_left = (nthreads + 1) / 2;
    start_all(xm_thread, t);
    sum = join_all(t);
    break;
  case 2:
  case 3:
    if (m == 2) {
      handed = xmalloc(sizeof *handed * (size_t)nthreads);
      for (int i = 0; i < nthreads; i++) handed[i] = xmalloc(CACHE_OBJ);
    }
    start_all(cache_thread, t);
    sum = join_all(t);
    free(handed);
    break;
  case 4:
    start_all(ms_thread, t);
    sum = join_all(t);
    for (int k = 0; k < MS_TRANSFER; k++) sum += ms_free(transfer[k]);
    break;
  case 5:
    start_all(rg_thread, t);
    sum = join_all(t);
    break;
  }
  double dt = now_s() - t0, dc = cpu_s() - c0;
  printf("mode=%s\nthreads=%d\nops=%ld\nseconds=%.4f\ncpu_s=%.4f\nmops=%.2f\n", mode, nthreads, ops, dt, dc,
         ops / dt / 1e6);
  if (m == 4) printf("live_req=%llu\n", (unsigned long long)live_req);
  printf("sum=%llu\n", (unsigned long long)sum);
  return 0;
}
