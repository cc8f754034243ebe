/*
 * fit.c: access patterns of programs whose data fit in RAM, for bench/fit.ts
 * (each run plain and under exm; the ratio is what exm costs).
 *
 *   fit realloc MiB     a vector grown by realloc (x1.5) to MiB, each new part written
 *   fit strided MiB     malloc MiB, write one byte every 4 KiB, then every 64 B
 *   fit fillscan MiB    malloc MiB, fill, then three summing scans
 *   fit fillfree MiB N  N times: malloc MiB, fill, free
 *   fit doubling MiB    malloc MiB, write 4 KiB, then memcpy(p + k, p, k) doubling k
 *   fit free MiB        malloc MiB, fill, free: prints free_ms=, the time free() took
 *                       (glibc: an munmap; exm: giving the block's disk back)
 * Prints "fit ok sum=<checksum>" so that a run that computed garbage shows.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void fill(unsigned char *p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = (i >> 3) * 0x9E3779B97F4A7C15ull + seed;
    memcpy(p + i, &v, n - i < 8 ? n - i : 8);
  }
}

static uint64_t sum(const unsigned char *p, size_t n) {
  uint64_t s = 0;
  for (size_t i = 0; i + 8 <= n; i += 8) {
    uint64_t v;
    memcpy(&v, p + i, 8);
    s += v;
  }
  return s;
}

int main(int argc, char **argv) {
  if (argc < 3) return fprintf(stderr, "usage: fit MODE MiB [N]\n"), 2;
  const char *mode = argv[1];
  size_t n = (size_t)atol(argv[2]) << 20;
  uint64_t s = 0;
  if (!strcmp(mode, "realloc")) {
    size_t have = 0, cap = 64 << 10;
    unsigned char *p = NULL;
    while (have < n) {
      cap = cap + cap / 2 > n ? n : cap + cap / 2;
      unsigned char *q = realloc(p, cap);
      if (!q) return perror("realloc"), 1;
      p = q;
      fill(p + have, cap - have, 1);
      have = cap;
    }
    s = sum(p, n);
    free(p);
  } else if (!strcmp(mode, "strided")) {
    unsigned char *p = malloc(n);
    if (!p) return perror("malloc"), 1;
    for (size_t i = 0; i < n; i += 4096) p[i] = (unsigned char)i;
    for (size_t i = 0; i < n; i += 64) p[i] += 1;
    for (size_t i = 0; i < n; i += 4096) s += p[i];
    free(p);
  } else if (!strcmp(mode, "fillscan")) {
    unsigned char *p = malloc(n);
    if (!p) return perror("malloc"), 1;
    fill(p, n, 2);
    for (int r = 0; r < 3; r++) s += sum(p, n);
    free(p);
  } else if (!strcmp(mode, "fillfree")) {
    int rounds = argc > 3 ? atoi(argv[3]) : 8;
    for (int r = 0; r < rounds; r++) {
      unsigned char *p = malloc(n);
      if (!p) return perror("malloc"), 1;
      fill(p, n, (unsigned)r);
      s += sum(p, n);
      free(p);
    }
  } else if (!strcmp(mode, "doubling")) {
    unsigned char *p = malloc(n);
    if (!p) return perror("malloc"), 1;
    fill(p, 4096, 3);
    for (size_t k = 4096; k < n; k *= 2) memcpy(p + k, p, k * 2 > n ? n - k : k);
    s = sum(p, n);
    free(p);
  } else if (!strcmp(mode, "free")) {
    unsigned char *p = malloc(n);
    if (!p) return perror("malloc"), 1;
    fill(p, n, 4);
    s = sum(p, n);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    free(p);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("free_ms=%.3f\n", (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
  } else {
    return fprintf(stderr, "fit: unknown mode %s\n", mode), 2;
  }
  printf("fit ok sum=%llu\n", (unsigned long long)s);
  return 0;
}
