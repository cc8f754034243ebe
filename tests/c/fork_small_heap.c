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

#include <sys/wait.h>

#define NW 4
#define BLK 1000

int main(int argc, char **argv) {
  api_init();
  size_t total = argc > 1 ? parse_size(argv[1]) : 256 * MiB;
  size_t nblk = total / BLK;
  uint64_t **b = malloc(nblk * sizeof *b);
  CHECK(b, "malloc");
  for (size_t i = 0; i < nblk; i++) {
    b[i] = malloc(BLK);
    CHECK(b[i], "malloc %zu", i);
    for (size_t k = 0; k < BLK / 8; k++) b[i][k] = mix64(i * 131 + k);
  }
  printf("file_backed=%d\n", api_fb(b[0]) && api_fb(b[nblk - 1]));
  int go[2];
  CHECK(pipe(go) == 0, "pipe");
  int fd[NW][2];
  pid_t pid[NW];
  for (int w = 0; w < NW; w++) {
    CHECK(pipe(fd[w]) == 0, "pipe");
    fflush(NULL);
    pid[w] = fork();
    CHECK(pid[w] >= 0, "fork: %s", strerror(errno));
    if (pid[w] == 0) {
      alarm(300);
      close(go[1]);
      char c;
      if (read(go[0], &c, 1) < 0) _exit(3);     /* all workers alive before any ends */
      uint64_t s = 0;
      for (size_t i = nblk / NW * (size_t)w; i < (w == NW - 1 ? nblk : nblk / NW * (size_t)(w + 1)); i++)
        for (size_t k = 0; k < BLK / 8; k++) s += b[i][k] ^ k;
      if (write(fd[w][1], &s, sizeof s) != sizeof s) _exit(2);
      _exit(0);
    }
    close(fd[w][1]);
  }
  close(go[0]);
  close(go[1]);
  int bad = 0;
  for (int w = 0; w < NW; w++) {
    uint64_t got = 0, want = 0;
    ssize_t r = read(fd[w][0], &got, sizeof got);
    int status;
    CHECK(waitpid(pid[w], &status, 0) == pid[w], "waitpid");
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0 && r == sizeof got, "worker %d failed: status 0x%x", w, status);
    for (size_t i = nblk / NW * (size_t)w; i < (w == NW - 1 ? nblk : nblk / NW * (size_t)(w + 1)); i++)
      for (size_t k = 0; k < BLK / 8; k++) want += b[i][k] ^ k;
    bad += got != want;
  }
  CHECK(!bad, "%d workers summed wrong", bad);
  for (size_t i = 0; i < nblk; i++) free(b[i]);
  free(b);
  API_CHECK("the end");
  printf("fork_small_heap ok\n");
  return 0;
}
