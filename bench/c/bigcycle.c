/*
 * bigcycle.c: the large block cycle: malloc a block (default 256 MiB), touch
 * every page (one byte written per 4 KiB), free it; repeated.
 *
 *   ./bigcycle [--size N-MiB] [--cycles K]
 * Output: cycles=, seconds= (wall), cpu_s= (user+system), ms_per_cycle=
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "clock.h"   /* cpu_s, now_s, next */

int main(int argc, char **argv) {
  size_t mib = 256;
  long cycles = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--size")) mib = strtoul(argv[i + 1], NULL, 10);
    else if (!strcmp(argv[i], "--cycles")) cycles = atol(argv[i + 1]);
    else {
      fprintf(stderr, "usage: %s [--size MiB] [--cycles K]\n", argv[0]);
      return 1;
    }
  }
  size_t n = mib << 20;
  volatile unsigned long sink = 0;
  double c0 = cpu_s();
  double t0 = now_s();
  for (long c = 0; c < cycles; c++) {
    char *p = malloc(n);
    if (!p) {
      fprintf(stderr, "malloc(%zu) failed\n", n);
      return 1;
    }
    for (size_t off = 0; off < n; off += 4096) p[off] = (char)(off >> 12);
    sink += (unsigned char)p[n / 2];
    free(p);
  }
  double dt = now_s() - t0;
  double dc = cpu_s() - c0;
  printf("cycles=%ld\nsize_mib=%zu\nseconds=%.4f\ncpu_s=%.4f\nms_per_cycle=%.3f\n", cycles, mib, dt, dc,
         dt * 1e3 / cycles);
  return 0;
}
