/*
 * fork_closed_fd.c: a program that closes every descriptor it does not know
 * (a daemon, some shells), exm's backing file included, and then forks.
 *
 * usage: fork_closed_fd [ROUNDS]
 *
 * The parent fills small and large blocks with patterns, closes all
 * descriptors above 2, and forks ROUNDS times. Each child verifies what it
 * inherited, writes over some of it (in cow and duplicate mode the parent
 * must not see that), frees the rest and allocates blocks of its own, then
 * runs exm_check. The parent then verifies its blocks and runs exm_check: a
 * child that still shares the parent's small-chunk segments rewrites their
 * in-band headers when it frees, and the parent's heap is corrupt.
 */
#include "common.h"

#include <sys/wait.h>

#define SMALL 400
#define LARGE 4

int main(int argc, char **argv) {
  api_init();
  int rounds = argc > 1 ? atoi(argv[1]) : 8;
  const char *mode = getenv("EXM_CHILD");
  int shared = mode && !strcmp(mode, "shared");
  static unsigned char *sp[SMALL], *lp[LARGE];
  static size_t sn[SMALL], ln[LARGE];
  for (int i = 0; i < SMALL; i++) {
    sn[i] = 16 + (size_t)(i * 37) % 2000;
    sp[i] = malloc(sn[i]);
    CHECK(sp[i], "malloc");
    fill_pattern(sp[i], sn[i], (uint64_t)i);
  }
  for (int i = 0; i < LARGE; i++) {
    ln[i] = (size_t)(i + 1) * MiB;
    lp[i] = malloc(ln[i]);
    CHECK(lp[i], "malloc");
    fill_pattern(lp[i], ln[i], 1000 + (uint64_t)i);
  }
  printf("file_backed=%d\n", api_fb(sp[0]) && api_fb(lp[0]));
  for (int fd = 3; fd < 1024; fd++) close(fd);
  /* one allocation after the close: the library notices its file is gone */
  void *probe = malloc(3 * MiB);
  CHECK(probe, "malloc after close");
  free(probe);
  for (int r = 0; r < rounds; r++) {
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
      for (int i = 0; i < SMALL; i++) CHECK_PATTERN(sp[i], sn[i], (uint64_t)i, "child: inherited small block");
      for (int i = 0; i < LARGE; i++) CHECK_PATTERN(lp[i], ln[i], 1000 + (uint64_t)i, "child: inherited large block");
      if (!shared) {
        for (int i = 0; i < LARGE; i++) memset(lp[i], 0xAB, ln[i]);
        for (int i = 0; i < SMALL; i += 2) memset(sp[i], 0xCD, sn[i]);
      }
      for (int i = 0; i < SMALL; i++) free(sp[i]);
      for (int i = 0; i < LARGE; i++) free(lp[i]);
      for (int i = 0; i < 200; i++) {
        void *q = malloc(16 + (size_t)i * 13);
        CHECK(q, "child malloc");
        memset(q, 0x5A, 16 + (size_t)i * 13);
        if (i % 3) free(q);
      }
      API_CHECK("child");
      _exit(0);
    }
    int st = 0;
    CHECK(waitpid(pid, &st, 0) == pid, "waitpid");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d failed (status 0x%x)", r, st);
    API_CHECK("parent, after a child freed its inheritance");
    for (int i = 0; i < SMALL; i++) CHECK_PATTERN(sp[i], sn[i], (uint64_t)i, "parent: small block after the child ran");
    for (int i = 0; i < LARGE; i++) CHECK_PATTERN(lp[i], ln[i], 1000 + (uint64_t)i, "parent: large block after the child ran");
    /* the parent keeps working */
    for (int i = 0; i < SMALL; i += 5) {
      free(sp[i]);
      sp[i] = malloc(sn[i]);
      CHECK(sp[i], "malloc");
      fill_pattern(sp[i], sn[i], (uint64_t)i);
    }
  }
  for (int i = 0; i < SMALL; i++) free(sp[i]);
  for (int i = 0; i < LARGE; i++) free(lp[i]);
  API_CHECK("the end");
  printf("fork_closed_fd ok\n");
  return 0;
}
