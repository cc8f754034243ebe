/*
 * many_blocks.c: tens of thousands of live arena blocks (argv[1], default
 * 70000, more than vm.max_map_count's default of 65530) of 4-12 KiB at a
 * 4 KiB threshold. The arena is one mapping: per-block madvise or mmap must
 * not split it into a VMA per block, or allocations start failing with
 * ENOMEM once the map count limit is reached. Checks every block, the
 * /proc/self/maps line count, and frees everything.
 */
#include "common.h"

int main(int argc, char **argv) {
  api_init();
  int nb = argc > 1 ? atoi(argv[1]) : 70000;
  int maps0 = count_maps();
  unsigned char **b = calloc((size_t)nb, sizeof *b);
  size_t *sz = calloc((size_t)nb, sizeof *sz);
  CHECK(b && sz, "calloc");
  uint64_t r = 7;
  int fb = 0;
  for (int i = 0; i < nb; i++) {
    r = mix64(r);
    sz[i] = 4096 + r % 8192;
    b[i] = malloc(sz[i]);
    CHECK(b[i], "malloc #%d (%zu B) failed, errno %d; /proc/self/maps has %d lines", i, sz[i], errno,
          count_maps());
    fb += api_fb(b[i]);
    b[i][0] = (unsigned char)i;
    b[i][sz[i] - 1] = (unsigned char)(i >> 8);
  }
  int maps1 = count_maps();
  printf("blocks=%d file_backed=%d maps_before=%d maps_live=%d\n", nb, fb, maps0, maps1);
  if (X.loaded) CHECK(fb == nb, "only %d of %d blocks are file-backed at threshold %zu", fb, nb, api_threshold());
  CHECK(maps1 < maps0 + 1000, "%d mappings with %d live blocks (was %d)", maps1, nb, maps0);
  for (int i = 0; i < nb; i++) {
    CHECK(b[i][0] == (unsigned char)i && b[i][sz[i] - 1] == (unsigned char)(i >> 8), "block %d clobbered", i);
    free(b[i]);
  }
  API_CHECK("many blocks");
  free(b);
  free(sz);
  printf("many_blocks ok\n");
  return 0;
}
