/*
 * budget.c: --threshold auto (EXM_THRESHOLD=auto) keeps blocks in RAM while
 * the budget lasts, and sends the later ones to the file.
 *
 * usage: budget COUNT SIZE
 *
 * Allocates COUNT blocks of SIZE bytes (malloc, then one realloc growing the
 * last block by a quarter), fills each with its own pattern and keeps them
 * all, then checks every pattern and prints where each block went
 * (placed=RRFF...: R in RAM, F file-backed), the statistics' ram_budget_bytes
 * and total_allocs (blocks the arena served), and the arena's file pages
 * (disk_reserved).
 */
#include "common.h"

int main(int argc, char **argv) {
  api_init();
  CHECK(argc > 2, "usage: budget COUNT SIZE");
  int count = atoi(argv[1]);
  size_t size = parse_size(argv[2]);
  CHECK(count > 0 && count <= 64, "COUNT is 1 to 64");
  unsigned char *blk[64];
  size_t len[64];
  char placed[65] = "";
  for (int i = 0; i < count; i++) {
    len[i] = size;
    blk[i] = malloc(size);
    CHECK(blk[i], "malloc(%zu) of block %d", size, i);
    if (i == count - 1) {
      len[i] = size + size / 4;
      blk[i] = realloc(blk[i], len[i]);
      CHECK(blk[i], "realloc of block %d", i);
    }
    fill_pattern(blk[i], len[i], 0xb0 + (uint64_t)i);
    placed[i] = api_fb(blk[i]) ? 'F' : 'R';
  }
  for (int i = 0; i < count; i++) CHECK_PATTERN(blk[i], len[i], 0xb0 + (uint64_t)i, "a kept block");
  exm_stats_t st = { 0 };
  if (X.get_stats) X.get_stats(&st);
  printf("placed=%s\nram_budget_bytes=%llu\ntotal_allocs=%llu\ndisk_reserved=%llu\n", placed,
         (unsigned long long)st.ram_budget_bytes, (unsigned long long)st.total_allocs,
         (unsigned long long)st.disk_reserved);
  for (int i = 0; i < count; i++) free(blk[i]);
  API_CHECK("the end");
  printf("budget ok\n");
  return 0;
}
