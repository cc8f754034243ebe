/*
 * stats_run.c (issue 4: statistics): allocates argv[1] blocks of argv[2]
 * bytes, writes them, frees them all and exits normally; with argv[3] =
 * "kill", raises SIGTERM instead of freeing. The driver sets EXM_STATS and
 * checks the summary against what was allocated.
 */
#include "common.h"

#include <signal.h>

int main(int argc, char **argv) {
  api_init();
  int n = argc > 1 ? atoi(argv[1]) : 3;
  size_t sz = argc > 2 ? parse_size(argv[2]) : 100 * MiB;
  unsigned char **b = calloc((size_t)n, sizeof *b);
  CHECK(b, "calloc");
  for (int i = 0; i < n; i++) {
    b[i] = malloc(sz);
    CHECK(b[i], "malloc(%zu)", sz);
    memset(b[i], i, sz);
  }
  printf("allocated %d x %zu\n", n, sz);
  fflush(stdout);
  if (argc > 3 && strcmp(argv[3], "kill") == 0) raise(SIGTERM);
  for (int i = 0; i < n; i++) free(b[i]);
  free(b);
  return 0;
}
