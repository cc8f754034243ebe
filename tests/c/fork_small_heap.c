/*
 * fork_small_heap.c: mclapply at threshold 0. The parent builds a heap of
 * small blocks (argv[1] bytes of them, default 256M, 1 KiB each, so every
 * one is carved from the arena's small-chunk segments), then forks 4
 * workers that are all alive at once; each sums a quarter of the blocks and
 * sends the sum back. Every fork gives the child its own copy of the
 * segments (their bookkeeping is in band): run under a memory cgroup below
 * 4 x the heap, that copy must not be charged as anonymous memory four
 * times over (the library used to memcpy it into each child's RAM).
 */
#include "common.h"

#define NW 4
#define BLK 1000

static uint64_t **b;
static size_t nblk;

/* Worker w's sum over its quarter of the blocks. */
static uint64_t sum(int w, int nw) {
  size_t from, to;
  share_of(nblk, nw, w, &from, &to);
  uint64_t s = 0;
  for (size_t i = from; i < to; i++)
    for (size_t k = 0; k < BLK / 8; k++) s += b[i][k] ^ k;
  return s;
}

int main(int argc, char **argv) {
  api_init();
  size_t total = argc > 1 ? parse_size(argv[1]) : 256 * MiB;
  nblk = total / BLK;
  b = malloc(nblk * sizeof *b);
  CHECK(b, "malloc");
  for (size_t i = 0; i < nblk; i++) {
    b[i] = malloc(BLK);
    CHECK(b[i], "malloc %zu", i);
    for (size_t k = 0; k < BLK / 8; k++) b[i][k] = mix64(i * 131 + k);
  }
  printf("file_backed=%d\n", api_fb(b[0]) && api_fb(b[nblk - 1]));
  /* All workers alive at once: each holds its copy of the segments. */
  int bad = fork_workers(NW, sum, 300, 1);
  CHECK(!bad, "%d workers summed wrong", bad);
  for (size_t i = 0; i < nblk; i++) free(b[i]);
  free(b);
  API_CHECK("the end");
  printf("fork_small_heap ok\n");
  return 0;
}
