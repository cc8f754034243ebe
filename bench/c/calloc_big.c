/*
 * calloc_big.c: calloc one huge block (default 64 GiB), time the call, read a
 * byte at the start, middle and end (must be zero), report resident memory,
 * then time the free.
 *
 *   ./calloc_big [--size N-GiB]
 * Output: calloc_ms=, free_ms=, rss_kib= (resident after the calloc and the
 * reads), ok=1; or failed=1 errno= when calloc returns NULL (exit 3).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static long rss_kib(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long size = 0, res = 0;
  if (f) {
    if (fscanf(f, "%ld %ld", &size, &res) != 2) res = 0;
    fclose(f);
  }
  return res * (sysconf(_SC_PAGESIZE) / 1024);
}

int main(int argc, char **argv) {
  double gib = 64;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--size")) gib = atof(argv[i + 1]);
    else {
      fprintf(stderr, "usage: %s [--size GiB]\n", argv[0]);
      return 1;
    }
  }
  size_t n = (size_t)(gib * 1024 * 1024 * 1024);
  long rss0 = rss_kib();
  double t0 = now_ms();
  volatile char *p = calloc(1, n);
  double t1 = now_ms();
  if (!p) {
    printf("size_bytes=%zu\ncalloc_ms=%.3f\nfailed=1\nerrno=%d\n", n, t1 - t0, errno);
    return 3;
  }
  int zero = p[0] == 0 && p[n / 2] == 0 && p[n - 1] == 0;
  long rss1 = rss_kib();
  double t2 = now_ms();
  free((void *)p);
  double t3 = now_ms();
  printf("size_bytes=%zu\ncalloc_ms=%.3f\nfree_ms=%.3f\nrss_kib_before=%ld\nrss_kib=%ld\nok=%d\n", n,
         t1 - t0, t3 - t2, rss0, rss1, zero);
  return zero ? 0 : 2;
}
