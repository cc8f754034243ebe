/*
 * big_free_nofault.c: free must never touch the pages of a block (they may be
 * on disk). Allocates N bytes (argv[1], default 1G) from the arena, writes all
 * of it, pushes the pages out (MADV_PAGEOUT where the kernel has it; the
 * driver also runs this in a memory cgroup smaller than N), then counts major
 * faults (getrusage ru_majflt) across free(): there must be none.
 */
#include "common.h"

#include <sys/mman.h>
#include <sys/resource.h>

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

static long majflt(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_majflt;
}

/* Pages of [p, p+n) in core, by mincore. */
static size_t resident(void *p, size_t n) {
  size_t pg = (size_t)sysconf(_SC_PAGESIZE), np = (n + pg - 1) / pg, r = 0;
  unsigned char *vec = malloc(np);
  CHECK(vec, "malloc vec");
  if (mincore(p, n, vec) != 0) {
    free(vec);
    return (size_t)-1;
  }
  for (size_t i = 0; i < np; i++) r += vec[i] & 1;
  free(vec);
  return r * pg;
}

int main(int argc, char **argv) {
  api_init();
  CHECK(X.loaded, "big_free_nofault needs libexm");
  size_t n = argc > 1 ? parse_size(argv[1]) : GiB;
  unsigned char *p = malloc(n);
  CHECK(p != NULL, "malloc(%zu) failed, errno %d", n, errno);
  CHECK(api_fb(p), "malloc(%zu) at threshold %zu is not file-backed", n, api_threshold());
  for (size_t i = 0; i < n; i += 4096) p[i] = (unsigned char)(i >> 12 | 1);
  p[n - 1] = 7;
  /* flush dirty pages, then ask the kernel to drop them from memory */
  int ms = msync(p, n, MS_SYNC);
  int rc = madvise(p, n, MADV_PAGEOUT);
  printf("msync=%d madvise_pageout=%d errno=%d\n", ms, rc, rc ? errno : 0);
  size_t res = resident(p, n);
  printf("resident_before_free=%zu of %zu\n", res, n);
  if (res != (size_t)-1 && res > n / 2)
    printf("warning: most of the block is still resident; the test proves little\n");
  long f0 = majflt();
  uint64_t t0 = now_ns();
  free(p);
  uint64_t dt = now_ns() - t0;
  long f1 = majflt();
  printf("majflt_during_free=%ld free_ms=%.3f\n", f1 - f0, dt / 1e6);
  CHECK(f1 - f0 == 0, "free of an evicted %zu B block caused %ld major faults", n, f1 - f0);
  API_CHECK("big free");
  printf("big_free_nofault ok\n");
  return 0;
}
