/*
 * mclapply.c (issue 4: R-style forked workers): the parent fills an N-byte
 * array (argv[1], default 1G) of uint64 and forks 4 children; each sums its
 * slice of the inherited array and writes the sum to a pipe. The parent sums
 * the same slices itself and compares. Run under a cgroup limit below N.
 */
#include "common.h"

#include <sys/wait.h>

#define NW 4

static uint64_t sum(const uint64_t *a, size_t from, size_t to) {
  uint64_t s = 0;
  for (size_t i = from; i < to; i++) s += a[i] ^ i;
  return s;
}

int main(int argc, char **argv) {
  api_init();
  size_t n = argc > 1 ? parse_size(argv[1]) : GiB;
  size_t words = n / 8;
  uint64_t *a = malloc(n);
  CHECK(a, "malloc(%zu): errno %d", n, errno);
  printf("file_backed=%d\n", api_fb(a));
  for (size_t i = 0; i < words; i++) a[i] = mix64(i);
  int fd[NW][2];
  pid_t pid[NW];
  for (int w = 0; w < NW; w++) {
    CHECK(pipe(fd[w]) == 0, "pipe");
    fflush(NULL);
    pid[w] = fork();
    CHECK(pid[w] >= 0, "fork: %s", strerror(errno));
    if (pid[w] == 0) {
      alarm(120);
      uint64_t s = sum(a, words / NW * (size_t)w, w == NW - 1 ? words : words / NW * (size_t)(w + 1));
      if (write(fd[w][1], &s, sizeof s) != sizeof s) _exit(2);
      _exit(0);
    }
    close(fd[w][1]);
  }
  int bad = 0;
  for (int w = 0; w < NW; w++) {
    uint64_t got = 0;
    ssize_t r = read(fd[w][0], &got, sizeof got);
    int status;
    CHECK(waitpid(pid[w], &status, 0) == pid[w], "waitpid");
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0 && r == sizeof got,
          "worker %d failed: status 0x%x, read %zd", w, status, r);
    uint64_t want = sum(a, words / NW * (size_t)w, w == NW - 1 ? words : words / NW * (size_t)(w + 1));
    printf("worker %d: sum=%016" PRIx64 " want=%016" PRIx64 "\n", w, got, want);
    bad += got != want;
  }
  CHECK(bad == 0, "%d workers returned wrong sums", bad);
  free(a);
  printf("mclapply ok\n");
  return 0;
}
