/*
 * diskfull.c: when the arena cannot serve a request (a full data directory,
 * or EXM_MAX_DISK), the request is served in RAM by glibc instead: never
 * worse than without exm. No SIGBUS at a later store (the RAM block is
 * written in full), and the arena serves again what fits: a smaller
 * allocation is file-backed. argv[1]: the size the arena cannot serve
 * (default 256M); argv[2]: one that it can (default 16M). Needs the library.
 */
#include "common.h"

#include <signal.h>

static void on_sigbus(int sig) {
  (void)sig;
  static const char msg[] = "FAIL: SIGBUS\n";
  ssize_t w = write(2, msg, sizeof msg - 1);
  (void)w;
  _exit(3);
}

/* p (n bytes) is a RAM block holding what it should: write it all, read back. */
static void check_ram(unsigned char *p, size_t n, int zero, const char *what) {
  CHECK(p != NULL, "%s(%zu) failed with errno %d (%s): RAM should have served it", what, n, errno, strerror(errno));
  CHECK(!api_fb(p), "%s(%zu) is file-backed where the data directory cannot hold it", what, n);
  if (zero) CHECK(find_nonzero(p, n) < 0, "%s(%zu) not zero", what, n);
  /* every 16th page and the last byte: usable memory (a RAM block cannot SIGBUS) */
  for (size_t i = 0; i < n; i += 16 * 4096) p[i] = 1;
  p[n - 1] = 1;
  for (size_t i = 0; i < n; i += 16 * 4096) CHECK(p[i] == 1, "%s: readback at %zu", what, i);
}

int main(int argc, char **argv) {
  api_init();
  CHECK(X.loaded, "diskfull needs libexm");
  signal(SIGBUS, on_sigbus);
  size_t big = argc > 1 ? parse_size(argv[1]) : 256 * MiB;
  size_t small = argc > 2 ? parse_size(argv[2]) : 16 * MiB;
  CHECK(small >= api_threshold(), "small size %zu is below the threshold %zu", small,
        api_threshold());

  errno = 0;
  unsigned char *p = malloc(big);
  check_ram(p, big, 0, "malloc");
  free(p);
  printf("big malloc: in RAM\n");

  p = calloc(1, big);
  check_ram(p, big, 1, "calloc");
  free(p);
  void *q = NULL;
  int rc = posix_memalign(&q, 4096, big);
  CHECK(rc == 0 && ((uintptr_t)q & 4095) == 0, "posix_memalign(4096, %zu) = %d, %p", big, rc, q);
  check_ram(q, big, 0, "posix_memalign");
  free(q);
  unsigned char *r = malloc(small / 2 > 0 ? small / 2 : 1);
  CHECK(r, "malloc small");
  memset(r, 0x33, small / 2);
  unsigned char *r2 = realloc(r, big);
  CHECK(r2 != NULL, "realloc to %zu: NULL, errno %d", big, errno);
  for (size_t i = 0; i < small / 2; i++) CHECK(r2[i] == 0x33, "realloc lost byte %zu", i);
  check_ram(r2, big, 0, "realloc");
  free(r2);

  p = malloc(small);
  CHECK(p != NULL, "malloc(%zu) after the big ones: NULL, errno %d", small, errno);
  CHECK(api_fb(p), "malloc(%zu) after the big ones is not file-backed", small);
  memset(p, 0x5c, small);
  for (size_t i = 0; i < small; i += 4096) CHECK(p[i] == 0x5c, "readback at %zu", i);
  free(p);
  if (X.get_stats) {
    exm_stats_t st;
    X.get_stats(&st);
    printf("failures=%" PRIu64 "\n", st.failures);
    CHECK(st.failures >= 1, "stats.failures = %" PRIu64 " after requests the arena could not serve", st.failures);
  }
  API_CHECK("diskfull");
  printf("diskfull ok\n");
  return 0;
}
