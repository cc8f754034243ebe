/*
 * fork_modes.c (issue 4: fork modes): what a forked child sees of its
 * parent's file-backed blocks, per EXM_CHILD.
 *
 * The parent fills a 256 MiB arena block with pattern A and forks. Right after
 * fork returns, the parent overwrites the first MiB with pattern C, then lets
 * the child go. The child checks its view (duplicate: all A, as of the fork;
 * shared: C then A; cow: each page of the head A or C, the rest A), writes pattern B over the whole block, allocates and
 * frees large blocks of its own (which must live in a different backing file),
 * frees the inherited block, runs exm_check and exits. The parent then checks
 * its view (cow, duplicate: C then A; shared: all B), exm_check, frees.
 * argv[1]: the mode expected (cow | shared | duplicate), argv[2]: block size.
 */
#include "common.h"

#include <sys/stat.h>
#include <sys/wait.h>

#define HEAD MiB

static ino_t file_of(void *p) {
  exm_block_info_t info;
  CHECK(X.lookup(p, &info) == 0, "exm_lookup(%p)", p);
  struct stat st;
  CHECK(fstat(info.fd, &st) == 0, "fstat backing fd %d", info.fd);
  return st.st_ino;
}

static void child(unsigned char *p, size_t n, const char *mode, int go_fd, ino_t parent_ino) {
  alarm(60);
  char c;
  CHECK(read(go_fd, &c, 1) == 1, "child: read go");
  if (strcmp(mode, "shared") == 0) {
    CHECK_PATTERN(p, HEAD, 0xC, "child view of the head (shared: parent's post-fork write)");
  } else if (strcmp(mode, "duplicate") == 0) {
    CHECK_PATTERN(p, HEAD, 0xA, "child view of the head (duplicate: as of the fork)");
  } else {
    /* cow promises that the child's writes stay private, not that the
     * parent's later writes stay out of pages the child has not written (a
     * private file mapping reads those through the page cache): either
     * view is fine, page by page, but nothing else. */
    for (size_t off = 0; off < HEAD; off += 4096) {
      int a = 1, c = 1;
      for (size_t i = off; i < off + 4096; i++) {
        a &= p[i] == pat_byte(0xA, i);
        c &= p[i] == pat_byte(0xC, i);
      }
      CHECK(a || c, "child view of the head (cow): page at %zu is neither A nor C", off);
    }
  }
  CHECK_PATTERN(p + HEAD, n - HEAD, 0xA1, "child view of the rest");
  printf("child: view ok\n");
  fill_pattern(p, n, 0xB);
  CHECK_PATTERN(p, n, 0xB, "child re-read of its own writes");

  /* new large blocks go to an arena of the child's own */
  for (int i = 0; i < 4; i++) {
    size_t m = n / 2 + (size_t)i * 4096 * 33;
    unsigned char *q = malloc(m);
    CHECK(q, "child: malloc(%zu) errno %d", m, errno);
    CHECK(api_fb(q), "child: malloc(%zu) not file-backed", m);
    CHECK(file_of(q) != parent_ino, "child: new block lives in the parent's backing file");
    fill_pattern(q, m, 0xD0 + (uint64_t)i);
    CHECK_PATTERN(q, m, 0xD0 + (uint64_t)i, "child block");
    free(q);
  }
  unsigned char *keep = malloc(n / 4);
  CHECK(keep, "child: malloc");
  fill_pattern(keep, n / 4, 0xE);
  free(p); /* the inherited block */
  CHECK_PATTERN(keep, n / 4, 0xE, "child block after freeing the inherited one");
  free(keep);
  API_CHECK("child");
  printf("child: ok\n");
  exit(0);
}

int main(int argc, char **argv) {
  api_init();
  CHECK(X.loaded, "fork_modes needs libexm");
  CHECK(argc > 1, "usage: fork_modes cow|shared|duplicate [size]");
  const char *mode = argv[1];
  size_t n = argc > 2 ? parse_size(argv[2]) : 256 * MiB;
  exm_child_mode_t want = strcmp(mode, "cow") == 0      ? EXM_CHILD_COW
                          : strcmp(mode, "shared") == 0 ? EXM_CHILD_SHARED
                                                        : EXM_CHILD_DUPLICATE;
  CHECK(X.get_child_mode() == want, "exm_get_child_mode() = %d, EXM_CHILD says %s",
        (int)X.get_child_mode(), mode);

  unsigned char *p = malloc(n);
  CHECK(p, "malloc(%zu)", n);
  CHECK(api_fb(p), "malloc(%zu) not file-backed at threshold %zu", n, api_threshold());
  fill_pattern(p, HEAD, 0xA);
  fill_pattern(p + HEAD, n - HEAD, 0xA1);
  ino_t ino = file_of(p);
  exm_stats_t st0;
  X.get_stats(&st0);

  int go[2];
  CHECK(pipe(go) == 0, "pipe");
  fflush(NULL);
  pid_t pid = fork();
  CHECK(pid >= 0, "fork: %s", strerror(errno));
  if (pid == 0) {
    close(go[1]);
    child(p, n, mode, go[0], ino);
  }
  close(go[0]);
  fill_pattern(p, HEAD, 0xC); /* right after fork returns */
  CHECK(write(go[1], "g", 1) == 1, "write go");
  int status;
  CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed: status 0x%x", status);

  if (strcmp(mode, "shared") == 0) {
    CHECK_PATTERN(p, n, 0xB, "parent view after the child wrote (shared)");
  } else {
    CHECK_PATTERN(p, HEAD, 0xC, "parent's own post-fork write");
    CHECK_PATTERN(p + HEAD, n - HEAD, 0xA1, "parent view after the child wrote");
  }
  CHECK(api_fb(p), "parent's block no longer file-backed after the child freed its copy");
  exm_stats_t st1;
  X.get_stats(&st1);
  printf("forks=%" PRIu64 " live_blocks=%" PRIu64 "->%" PRIu64 "\n", st1.forks, st0.live_blocks,
         st1.live_blocks);
  CHECK(st1.forks >= st0.forks + 1, "stats.forks did not count the fork");
  CHECK(st1.live_blocks == st0.live_blocks, "parent's live blocks changed across the child's life");
  API_CHECK("parent after child");
  free(p);
  API_CHECK("parent after free");
  printf("mode=%s\nfork_modes ok\n", mode);
  return 0;
}
