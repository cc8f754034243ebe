/*
 * diskfull.c: when the arena cannot reserve disk (a full data directory, or
 * EXM_MAX_DISK), a large malloc returns NULL with errno ENOMEM; there is no
 * SIGBUS at a later store, and the process carries on: a smaller allocation
 * still works. argv[1]: the size that must fail (default 256M); argv[2]: the
 * one that must then succeed (default 16M). Needs the library.
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
  if (p) {
    /* writing it all would SIGBUS (or succeed only if space really exists) */
    printf("malloc(%zu) returned %p; writing it\n", big, (void *)p);
    for (size_t i = 0; i < big; i += 4096) p[i] = 1;
    FAIL("malloc(%zu) succeeded where the data directory cannot hold it", big);
  }
  CHECK(errno == ENOMEM, "malloc(%zu) failed with errno %d (%s), want ENOMEM", big, errno,
        strerror(errno));
  printf("big malloc: NULL/ENOMEM\n");

  errno = 0;
  p = calloc(1, big);
  CHECK(p == NULL && errno == ENOMEM, "calloc(%zu): %p errno %d", big, (void *)p, errno);
  void *q = NULL;
  int rc = posix_memalign(&q, 4096, big);
  CHECK(rc == ENOMEM, "posix_memalign(4096, %zu) = %d, want ENOMEM", big, rc);
  unsigned char *r = malloc(small / 2 > 0 ? small / 2 : 1);
  CHECK(r, "malloc small");
  errno = 0;
  unsigned char *r2 = realloc(r, big);
  CHECK(r2 == NULL && errno == ENOMEM, "realloc to %zu: %p errno %d", big, (void *)r2, errno);
  free(r);

  p = malloc(small);
  CHECK(p != NULL, "malloc(%zu) after the failure: NULL, errno %d", small, errno);
  CHECK(api_fb(p), "malloc(%zu) after the failure is not file-backed", small);
  memset(p, 0x5c, small);
  for (size_t i = 0; i < small; i += 4096) CHECK(p[i] == 0x5c, "readback at %zu", i);
  free(p);
  if (X.get_stats) {
    exm_stats_t st;
    X.get_stats(&st);
    printf("failures=%" PRIu64 "\n", st.failures);
    CHECK(st.failures >= 1, "stats.failures = %" PRIu64 " after failed allocations", st.failures);
  }
  API_CHECK("diskfull");
  printf("diskfull ok\n");
  return 0;
}
