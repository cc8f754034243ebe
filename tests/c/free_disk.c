/*
 * free_disk.c: the backing file's allocated blocks follow the live bytes.
 * Allocates many arena blocks of mixed sizes, writes them, then frees them all
 * (in an interleaved order, so neighbours coalesce late); the file's st_blocks
 * (fstat of the descriptor exm_lookup reports) and stats.disk_reserved must
 * come back near zero. Needs the library; run at a 1 MiB threshold.
 */
#include "common.h"

#include <sys/stat.h>

#define NB 160

int main(void) {
  api_init();
  CHECK(X.loaded, "free_disk needs libexm");
  size_t t = api_threshold();
  unsigned char *b[NB];
  size_t total = 0;
  uint64_t rng = 12345;
  for (int i = 0; i < NB; i++) {
    rng = mix64(rng);
    size_t n = (t > 4096 ? t : 4096) + rng % (4 * MiB);
    b[i] = malloc(n);
    CHECK(b[i], "malloc(%zu)", n);
    CHECK(api_fb(b[i]), "block %d (%zu B) not file-backed at threshold %zu", i, n, t);
    memset(b[i], i | 1, n);
    total += n;
  }
  exm_block_info_t info;
  CHECK(X.lookup(b[0], &info) == 0, "exm_lookup of a live block");
  int fd = info.fd;
  size_t full = file_bytes(fd);
  exm_stats_t st;
  CHECK(X.get_stats(&st) == 0, "stats");
  printf("live=%zu file_bytes=%zu disk_reserved=%" PRIu64 "\n", total, full, st.disk_reserved);
  CHECK(full >= total, "file holds %zu B for %zu B written", full, total);
  for (int pass = 0; pass < 2; pass++)
    for (int i = pass; i < NB; i += 2) free(b[i]);
  /* Large blocks are punched in the background; exm_get_stats first gives
   * back whatever is still waiting, so the file is measured after it. */
  CHECK(X.get_stats(&st) == 0, "stats");
  size_t after = file_bytes(fd);
  printf("after_free file_bytes=%zu disk_reserved=%" PRIu64 " bytes_punched=%" PRIu64 "\n", after,
         st.disk_reserved, st.bytes_punched);
  /* punching may be batched, but the slack must stay bounded */
  size_t slack = 64 * MiB;
  CHECK(after <= slack, "backing file still holds %zu B after freeing everything", after);
  CHECK(st.disk_reserved <= slack, "disk_reserved %" PRIu64 " after freeing everything",
        st.disk_reserved);
  CHECK(st.bytes_punched >= total - slack, "bytes_punched %" PRIu64 " < freed %zu",
        st.bytes_punched, total);
  API_CHECK("free_disk");
  printf("free_disk ok\n");
  return 0;
}
