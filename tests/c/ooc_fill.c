/*
 * ooc_fill.c: one malloc of N bytes (argv[1], e.g. 1G), written page by page
 * with a pattern, then read back and checksummed. Prints the checksum, which
 * depends only on N, so runs with and without exm can be compared. Run under
 * a memory cgroup smaller than N: anonymous memory (glibc) cannot be evicted
 * without swap and the process is OOM-killed; exm's file-backed pages are
 * written back and reclaimed, and the run completes.
 */
#include "common.h"

int main(int argc, char **argv) {
  api_init();
  size_t n = argc > 1 ? parse_size(argv[1]) : GiB;
  size_t words = n / 8;
  uint64_t *p = malloc(n);
  CHECK(p != NULL, "malloc(%zu) failed, errno %d (%s)", n, errno, strerror(errno));
  printf("size=%zu file_backed=%d\n", n, api_fb(p));
  uint64_t t0 = now_ns();
  uint64_t want = 0;
  for (size_t w = 0; w < words; w++) {
    uint64_t v = mix64(w);
    p[w] = v;
    want = want * 31 + v;
  }
  uint64_t t1 = now_ns();
  uint64_t got = 0;
  for (size_t w = 0; w < words; w++) got = got * 31 + p[w];
  uint64_t t2 = now_ns();
  printf("write_mb_s=%.0f read_mb_s=%.0f\n", n / 1e6 / ((t1 - t0) / 1e9), n / 1e6 / ((t2 - t1) / 1e9));
  printf("checksum=%016" PRIx64 "\n", got);
  CHECK(got == want, "read back %016" PRIx64 ", wrote %016" PRIx64, got, want);
  free(p);
  API_CHECK("ooc_fill");
  printf("ooc_fill ok\n");
  return 0;
}
