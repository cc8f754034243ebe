/*
 * clock.h: what the allocator benchmark programs (small.c, alloc.c, bigcycle.c)
 * share: wall and CPU time in seconds, and the xorshift64 sequence that picks
 * sizes and slots (the same numbers in every program and every run).
 */
#ifndef EXM_BENCH_CLOCK_H
#define EXM_BENCH_CLOCK_H

#include <stdint.h>
#include <sys/resource.h>
#include <time.h>

/* CPU time of the whole process (every thread), user and system. */
static inline double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

static inline double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline uint64_t next(uint64_t *x) {
  *x ^= *x << 13;
  *x ^= *x >> 7;
  *x ^= *x << 17;
  return *x;
}

#endif
