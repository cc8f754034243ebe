/*
 * small.c: an allocation-heavy small-object workload. Each thread owns a
 * table of slots and, per operation, picks one at random: an empty slot gets
 * malloc(size) (sizes mostly 16-256 B, some up to 4 KiB, a few up to 64 KiB),
 * whose first and last bytes are written; a full one is freed, or one time in
 * eight realloc'ed to a new size. All slots are freed at the end.
 *
 *   ./small [--threads T] [--ops N-per-thread] [--slots S]
 * Output: threads=, ops=, seconds= (wall), cpu_s= (user+system), mops=
 * (million operations per second).
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

static long ops = 5000000, nslots = 8192;
static int nthreads = 1;

static size_t pick_size(uint64_t r) {
  unsigned k = r & 1023;
  if (k < 900) return 16 + (r >> 10) % 241;          /* 16-256 B: 88 % */
  if (k < 1020) return 257 + (r >> 10) % 3840;       /* to 4 KiB: 12 % */
  return 4097 + (r >> 10) % 61440;                   /* to 64 KiB: 0.4 % */
}

static void *worker(void *arg) {
  uint64_t x = 0x9E3779B97F4A7C15ULL ^ (uint64_t)(uintptr_t)arg * 0x100000001B3ULL;
  char **slot = calloc((size_t)nslots, sizeof *slot);
  size_t *len = calloc((size_t)nslots, sizeof *len);
  uint64_t sum = 0;
  for (long i = 0; i < ops; i++) {
    uint64_t r = next(&x);
    long s = (long)(r % (uint64_t)nslots);
    r = next(&x);
    if (!slot[s]) {
      size_t n = pick_size(r);
      char *p = malloc(n);
      if (!p) abort();
      p[0] = (char)i;
      p[n - 1] = (char)s;
      slot[s] = p;
      len[s] = n;
    } else if ((r & 7) == 0) {
      size_t n = pick_size(r >> 3);
      char *p = realloc(slot[s], n);
      if (!p) abort();
      p[n - 1] = (char)i;
      slot[s] = p;
      len[s] = n;
    } else {
      sum += (unsigned char)slot[s][0] + (unsigned char)slot[s][len[s] - 1];
      free(slot[s]);
      slot[s] = NULL;
    }
  }
  for (long s = 0; s < nslots; s++) free(slot[s]);
  free(slot);
  free(len);
  return (void *)(uintptr_t)sum;
}

int main(int argc, char **argv) {
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--threads")) nthreads = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--ops")) ops = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--slots")) nslots = atol(argv[i + 1]);
    else {
      fprintf(stderr, "usage: %s [--threads T] [--ops N] [--slots S]\n", argv[0]);
      return 1;
    }
  }
  if (nthreads < 1 || nthreads > 64 || ops < 1 || nslots < 1) return 1;
  pthread_t t[64];
  double c0 = cpu_s();
  double t0 = now_s();
  for (int i = 0; i < nthreads; i++) pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(i + 1));
  uint64_t sum = 0;
  for (int i = 0; i < nthreads; i++) {
    void *r;
    pthread_join(t[i], &r);
    sum += (uint64_t)(uintptr_t)r;
  }
  double dt = now_s() - t0;
  double dc = cpu_s() - c0;
  printf("threads=%d\nops=%ld\nseconds=%.4f\ncpu_s=%.4f\nmops=%.2f\nsum=%llu\n", nthreads, ops * nthreads, dt,
         dc, ops * nthreads / dt / 1e6, (unsigned long long)sum);
  return 0;
}
