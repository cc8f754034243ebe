/*
 * free_background.c: a large block's disk is given back in the background,
 * and completely. Allocates and writes N bytes (argv[1], default 512M) at a
 * 1 MiB threshold, frees them, then:
 *  - waits (without any exm_* call) until the backing file's st_blocks fall
 *    under 32 MiB: the punch happened without anybody asking;
 *  - frees a second block and calls exm_get_stats at once: the figures
 *    already count its disk as given back (a drain, not a wait);
 *  - with argv[2] == "exit-main", ends main with pthread_exit right after a
 *    last large free: the process must still end (the punch thread does not
 *    keep it alive), which the driver checks by its exit within its timeout.
 * Prints "free_background ok" and key=value lines.
 */
#include "common.h"

#include <pthread.h>
#include <sys/stat.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  api_init();
  CHECK(X.loaded, "free_background needs libexm");
  size_t n = argc > 1 ? parse_size(argv[1]) : 512 * MiB;
  unsigned char *p = malloc(n);
  CHECK(p && api_fb(p), "malloc(%zu) not file-backed", n);
  memset(p, 0x5a, n);
  exm_block_info_t info;
  CHECK(X.lookup(p, &info) == 0, "exm_lookup");
  int fd = info.fd;
  CHECK(file_bytes(fd) >= n, "file holds %zu bytes for a %zu-byte block", file_bytes(fd), n);
  double t0 = now();
  free(p);
  double free_s = now() - t0;
  /* Given back by the background thread: wait for it, bounded by work (the
   * punch of n bytes), not by a clock the machine's load decides: 600 s. */
  double waited = 0;
  while (file_bytes(fd) > 32 * MiB && waited < 600) {
    struct timespec ts = { 0, 10 * 1000 * 1000 };
    nanosleep(&ts, NULL);
    waited += 0.01;
  }
  CHECK(file_bytes(fd) <= 32 * MiB, "the file still holds %zu bytes after %.0f s", file_bytes(fd), waited);

  unsigned char *q = malloc(n);
  CHECK(q && api_fb(q), "second malloc");
  memset(q, 0x6b, n);
  free(q);
  exm_stats_t st;
  CHECK(X.get_stats(&st) == 0, "exm_get_stats");
  CHECK(st.live_bytes == 0, "live_bytes %llu", (unsigned long long)st.live_bytes);
  CHECK(st.disk_reserved <= 32 * MiB, "disk_reserved %llu right after free + exm_get_stats",
        (unsigned long long)st.disk_reserved);
  CHECK(file_bytes(fd) <= 32 * MiB, "file holds %zu bytes after exm_get_stats", file_bytes(fd));
  CHECK(X.check() == 0, "exm_check");
  printf("free_s=%.4f\nfree_background ok\n", free_s);
  fflush(stdout);
  if (argc > 2 && !strcmp(argv[2], "exit-main")) {
    unsigned char *r = malloc(n);
    CHECK(r, "third malloc");
    memset(r, 1, n);
    free(r);
    pthread_exit(NULL);
  }
  return 0;
}
