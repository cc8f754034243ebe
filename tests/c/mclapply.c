/*
 * mclapply.c (issue 4: R-style forked workers): the parent fills an N-byte
 * array (argv[1], default 1G) of uint64 and forks 4 children; each sums its
 * slice of the inherited array and writes the sum to a pipe. The parent sums
 * the same slices itself and compares. Run under a cgroup limit below N.
 */
#include "common.h"

#define NW 4

static uint64_t *a;
static size_t words;

/* Worker w's sum over its slice of the array. */
static uint64_t sum(int w, int nw) {
  size_t from, to;
  share_of(words, nw, w, &from, &to);
  uint64_t s = 0;
  for (size_t i = from; i < to; i++) s += a[i] ^ i;
  return s;
}

int main(int argc, char **argv) {
  api_init();
  size_t n = argc > 1 ? parse_size(argv[1]) : GiB;
  words = n / 8;
  a = malloc(n);
  CHECK(a, "malloc(%zu): errno %d", n, errno);
  printf("file_backed=%d\n", api_fb(a));
  for (size_t i = 0; i < words; i++) a[i] = mix64(i);
  int bad = fork_workers(NW, sum, 120, 0);
  CHECK(bad == 0, "%d workers returned wrong sums", bad);
  free(a);
  printf("mclapply ok\n");
  return 0;
}
