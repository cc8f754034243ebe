/*
 * fork_leak.c (issue 4: fork leaks): argv[1] forks (default 200) while the
 * parent holds a file-backed block; each child reads the inherited block,
 * allocates and frees a large block of its own and exits (through exit(), so
 * atexit work runs). Afterwards the parent's open descriptors, mapping count
 * (/proc/self/maps lines) and backing file size must be as before.
 */
#include "common.h"

#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>

static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  CHECK(d, "opendir /proc/self/fd");
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) n += e->d_name[0] != '.';
  closedir(d);
  return n - 1; /* the DIR's own descriptor */
}

int main(int argc, char **argv) {
  api_init();
  CHECK(X.loaded, "fork_leak needs libexm");
  int rounds = argc > 1 ? atoi(argv[1]) : 200;
  size_t t = api_threshold();
  size_t n = t > 0 ? t * 2 : 8 * MiB;
  unsigned char *p = malloc(n);
  CHECK(p && api_fb(p), "malloc(%zu) not file-backed", n);
  fill_pattern(p, n, 42);
  exm_block_info_t info;
  CHECK(X.lookup(p, &info) == 0, "lookup");
  struct stat st0, st1;
  CHECK(fstat(info.fd, &st0) == 0, "fstat");
  /* one warm-up fork, so that lazily created state is counted in the baseline */
  int fds0 = 0, maps0 = 0;
  for (int r = -1; r < rounds; r++) {
    if (r == 0) {
      fds0 = count_fds();
      maps0 = count_maps();
    }
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork %d: %s", r, strerror(errno));
    if (pid == 0) {
      alarm(20);
      if (find_pattern_mismatch(p, n, 42) >= 0) _exit(5);
      unsigned char *q = malloc(n);
      if (!q || !api_fb(q)) _exit(6);
      memset(q, 1, n);
      free(q);
      if (X.check() != 0) _exit(7);
      exit(0);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d failed: status 0x%x", r, status);
  }
  int fds1 = count_fds(), maps1 = count_maps();
  CHECK(fstat(info.fd, &st1) == 0, "fstat");
  printf("fds %d -> %d, maps %d -> %d, file blocks %lld -> %lld\n", fds0, fds1, maps0, maps1,
         (long long)st0.st_blocks, (long long)st1.st_blocks);
  CHECK_PATTERN(p, n, 42, "parent block after the forks");
  CHECK(fds1 == fds0, "open fds grew from %d to %d over %d forks", fds0, fds1, rounds);
  CHECK(maps1 <= maps0 + 2, "mappings grew from %d to %d over %d forks", maps0, maps1, rounds);
  CHECK(st1.st_blocks <= st0.st_blocks + 2048, "backing file grew from %lld to %lld blocks",
        (long long)st0.st_blocks, (long long)st1.st_blocks);
  free(p);
  API_CHECK("fork_leak");
  printf("fork_leak ok\n");
  return 0;
}
