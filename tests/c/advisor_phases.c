/*
 * advisor_phases.c: EXM_ADVICE=auto, seen from the kernel's side. One large
 * block goes through the phases of an out-of-core job, and after each phase
 * the program prints the advice flags of the block's mapping as the kernel
 * has them (VmFlags in /proc/self/smaps: "sr" = sequential, "rr" = random):
 *   fill      written front to back          -> expect sr (fill_s: its seconds)
 *   random    random 4 KiB reads for a while -> expect rr
 *   scan      read front to back             -> expect sr
 * Run it under a memory limit smaller than the block, so reads fault.
 *
 * With "hugepage", the block gets MADV_HUGEPAGE first, as numpy gives every
 * large array: the random phase also prints whether the mapping still has
 * the hint ("hg"), and the KiB read from disk per major fault.
 *
 * usage: advisor_phases SIZE_MIB RANDOM_SECONDS [hugepage]
 */
#include "common.h"

#include <sys/mman.h>
#include <sys/resource.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  CHECK(argc == 3 || (argc == 4 && !strcmp(argv[3], "hugepage")), "usage: advisor_phases SIZE_MIB RANDOM_SECONDS [hugepage]");
  size_t size = (size_t)atol(argv[1]) * MiB;
  double rand_s = atof(argv[2]);
  api_init();
  unsigned char *p = malloc(size);
  CHECK(p, "malloc(%zu) failed", size);
  CHECK(api_fb(p), "the block is not file-backed");
  int huge = argc == 4;
  if (huge) CHECK(madvise((void *)((uintptr_t)p & ~(uintptr_t)4095), size, MADV_HUGEPAGE) == 0, "madvise(MADV_HUGEPAGE): %s", strerror(errno));

  double fill0 = now();
  for (size_t i = 0; i < size; i += 4096) p[i] = (unsigned char)(i >> 12);
  printf("fill_s=%.3f\nafter_fill=%s\n", now() - fill0, advice_of(p));
  fflush(stdout);

  uint64_t x = 88172645463325252ull, reads = 0;
  volatile uint64_t sum = 0;   /* keeps the reads */
  struct rusage r0, r1;
  getrusage(RUSAGE_SELF, &r0);
  double t0 = now();
  while (now() - t0 < rand_s) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    size_t page = (size_t)(x % (size / 4096));
    for (size_t k = 0; k < 4096; k += 512) sum += p[page * 4096 + k];
    reads++;
  }
  getrusage(RUSAGE_SELF, &r1);
  long faults = r1.ru_majflt - r0.ru_majflt;
  printf("random_reads=%" PRIu64 "\nafter_random=%s\n", reads, advice_of(p));
  if (huge)
    printf("hugepage_after_random=%d\nrandom_kib_per_fault=%ld\n", has_vmflag(p, "hg"),
           faults > 0 ? (r1.ru_inblock - r0.ru_inblock) / 2 / faults : -1);
  fflush(stdout);

  uint64_t check = 0;
  double t1 = now();
  for (size_t i = 0; i < size; i += 4096) check += p[i];
  printf("scan_s=%.2f\nafter_scan=%s\n", now() - t1, advice_of(p));
  uint64_t want = 0;
  for (size_t i = 0; i < size; i += 4096) want += (unsigned char)(i >> 12);
  CHECK(check == want, "scan read %" PRIu64 ", wrote %" PRIu64, check, want);
  (void)sum;
  free(p);
  printf("advisor_phases ok\n");
  return 0;
}
