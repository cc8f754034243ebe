/*
 * stress_served.c: says whether libexm serves it (lib=0/1), then allocates
 * argv[1] bytes (default 200M) in 4 MiB blocks, fills and checks them,
 * prints "served ok", and exits (after argv[2] milliseconds, if given). Built dynamically, statically (gcc -static), setuid or
 * setgid by tests/faults.test.ts: programs exm cannot reach must still run.
 */
#include "common.h"

int main(int argc, char **argv) {
  api_init();
  size_t total = argc > 1 ? parse_size(argv[1]) : 200 * MiB, each = 4 * MiB;
  size_t n = total / each;
  unsigned char **b = calloc(n, sizeof *b);
  CHECK(b, "calloc");
  int fb = 0;
  for (size_t i = 0; i < n; i++) {
    b[i] = malloc(each);
    CHECK(b[i], "malloc(%zu)", each);
    fb += api_fb(b[i]);
    fill_pattern(b[i], each, i);
  }
  for (size_t i = 0; i < n; i++) {
    CHECK_PATTERN(b[i], each, i, "served");
    free(b[i]);
  }
  free(b);
  printf("file_backed_blocks=%d\nserved ok\n", fb);
  fflush(stdout);
  if (argc > 2) usleep((useconds_t)atoi(argv[2]) * 1000);
  return 0;
}
