/*
 * fallback.c: when the program's own allocator fails below the threshold,
 * exm retries in the arena (as the original exm did). RLIMIT_DATA caps
 * private anonymous memory (glibc's heap and mmaps) but not a shared file
 * mapping, so with the limit a little above current use, 1 MiB mallocs
 * (below the default 64 MiB threshold) start failing in glibc and must then
 * come from the arena. Checks that all succeed, some are file-backed, and
 * stats.fallbacks counts them. Needs the library.
 */
#include "common.h"

#include <sys/resource.h>

static size_t vm_data(void) {
  FILE *f = fopen("/proc/self/status", "r");
  CHECK(f, "fopen status");
  char line[256];
  size_t kb = 0;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmData: %zu kB", &kb) == 1) break;
  fclose(f);
  return kb * 1024;
}

int main(void) {
  api_init();
  CHECK(X.loaded, "fallback needs libexm");
  enum { NB = 200 };
  unsigned char *b[NB];
  void *warm = malloc(api_threshold()); /* the arena exists before the limit */
  CHECK(warm && api_fb(warm), "warm-up block");
  struct rlimit rl = {vm_data() + 32 * MiB, RLIM_INFINITY};
  CHECK(setrlimit(RLIMIT_DATA, &rl) == 0, "setrlimit: %s", strerror(errno));
  int fb = 0;
  for (int i = 0; i < NB; i++) {
    b[i] = malloc(MiB);
    CHECK(b[i], "malloc(1 MiB) #%d failed under RLIMIT_DATA, errno %d", i, errno);
    fb += api_fb(b[i]);
    fill_pattern(b[i], MiB, (uint64_t)i);
  }
  for (int i = 0; i < NB; i++) {
    CHECK_PATTERN(b[i], MiB, (uint64_t)i, "fallback block");
    free(b[i]);
  }
  free(warm);
  exm_stats_t st;
  X.get_stats(&st);
  printf("file_backed=%d fallbacks=%" PRIu64 "\n", fb, st.fallbacks);
  CHECK(fb > 0, "no block came from the arena although glibc must have failed");
  CHECK(st.fallbacks >= (uint64_t)fb, "stats.fallbacks %" PRIu64 " < %d", st.fallbacks, fb);
  API_CHECK("fallback");
  printf("fallback ok\n");
  return 0;
}
