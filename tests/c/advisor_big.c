/*
 * advisor_big.c: EXM_ADVICE=auto on a large block that is mostly untouched
 * (its pages are unwritten extents of exm's file: reading one is a major
 * fault that costs no disk I/O). The advisor's look at a block is bounded
 * whatever the block's size, so its reaction is too:
 *   random   random 4 KiB reads over the whole block until the block's
 *            mapping has MADV_RANDOM ("rr" in VmFlags), at most MAX_READS;
 *   scan     then a scan from the start until it has MADV_SEQUENTIAL ("sr"),
 *            at most SCAN_MIB.
 * Prints how many reads and how many MiB of scan each switch took (checked
 * every 16 reads and every MiB), and the advice after each phase (and the
 * seconds each took: for the record, not for a test to assert).
 * Run it under a memory limit smaller than SCAN_MIB, so the scan's pages
 * are reclaimed behind it (the advisor gives SEQUENTIAL only out of core).
 *
 * With MORE_READS, that many random reads more once the block is random
 * (a run held up by random faults, for what --verbose and the statistics
 * say about it).
 *
 * With PACE_MS, a last phase once the scan made the block sequential: one
 * random read every PACE_MS until the block is random again, at most
 * PACED_MAX: a single reader on a slow disk, where each fault reads a whole
 * read-ahead window and only a few faults fall between two of the
 * advisor's looks.
 *
 * usage: advisor_big SIZE_MIB MAX_READS SCAN_MIB [MORE_READS [PACE_MS]]
 */
#include "common.h"

#define PACED_MAX 200

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  CHECK(argc >= 4 && argc <= 6, "usage: advisor_big SIZE_MIB MAX_READS SCAN_MIB [MORE_READS [PACE_MS]]");
  long more = argc >= 5 ? atol(argv[4]) : 0, pace_ms = argc == 6 ? atol(argv[5]) : 0;
  size_t size = (size_t)atol(argv[1]) * MiB, scan = (size_t)atol(argv[3]) * MiB;
  long max_reads = atol(argv[2]);
  CHECK(scan <= size, "SCAN_MIB larger than the block");
  api_init();
  unsigned char *p = malloc(size);
  CHECK(p, "malloc(%zu) failed", size);
  CHECK(api_fb(p), "the block is not file-backed");
  printf("at_start=%s\n", advice_of(p));

  double t0 = now_s();
  uint64_t x = 88172645463325252ull;
  volatile uint64_t sum = 0;   /* keeps the reads */
  long reads = 0;
  while (reads < max_reads) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    size_t page = (size_t)(x % (size / 4096));
    for (size_t k = 0; k < 4096; k += 512) sum += p[page * 4096 + k];
    if (++reads % 16 == 0 && !strcmp(advice_of(p), "rr")) break;
  }
  for (long i = 0; i < more; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    size_t page = (size_t)(x % (size / 4096));
    for (size_t k = 0; k < 4096; k += 512) sum += p[page * 4096 + k];
  }
  double t1 = now_s();
  printf("reads_until_random=%ld\nmore_reads=%ld\nrandom_s=%.3f\nafter_random=%s\n", reads, more, t1 - t0, advice_of(p));

  size_t done = 0;
  while (done < scan) {
    for (size_t i = done; i < done + MiB; i += 4096) sum += p[i];
    done += MiB;
    if (!strcmp(advice_of(p), "sr")) break;
  }
  printf("scan_mib_until_sequential=%zu\nscan_s=%.3f\nafter_scan=%s\n", done / MiB, now_s() - t1, advice_of(p));

  if (pace_ms > 0) {
    double t2 = now_s();
    struct timespec pace = { pace_ms / 1000, (pace_ms % 1000) * 1000000L };
    reads = 0;
    while (reads < PACED_MAX && strcmp(advice_of(p), "rr")) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      sum += p[(size_t)(x % (size / 4096)) * 4096];
      reads++;
      nanosleep(&pace, NULL);
    }
    printf("paced_reads_until_random=%ld\npaced_s=%.3f\nafter_paced=%s\n", reads, now_s() - t2, advice_of(p));
  }
  CHECK(sum == 0, "an untouched block read %" PRIu64 ", not zeros", (uint64_t)sum);
  free(p);
  printf("advisor_big ok\n");
  return 0;
}
