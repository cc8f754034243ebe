/*
 * punch_queue.c: freed large blocks wait for the background punch
 * (native/punch.c); whoever needs their disk must not be told no.
 *
 *   punch_queue cap N         under a --max-disk cap of about one block
 *                             (EXM_MAX_DISK), N times: malloc a block of 3/4 of
 *                             the cap, fill it, free it. Each malloc needs the
 *                             disk of the block freed just before, which the
 *                             thread is still giving back (a fill dirties
 *                             every page: its punch takes far longer than the
 *                             next malloc): it must drain the queue, and every
 *                             block must be file-backed. Prints file_backed=.
 *   punch_queue fork MODE     frees four filled 64 MiB blocks and forks at once
 *                             (the punches mostly still queued: a 2 GiB block,
 *                             live and never touched, lets that much wait, an
 *                             eighth of the live bytes) with child mode
 *                             MODE; the child checks its arena, allocates,
 *                             fills and checks a block, and (duplicate: its own
 *                             copy) sees the freed blocks given back. The
 *                             parent waits, checks, and sees them given back.
 *   punch_queue bound         keeps a filled 64 MiB block live, fills 48 blocks
 *                             of 8 MiB and frees them one after another (far
 *                             faster than their punches): right after, the
 *                             backing file holds at most the live block, what
 *                             may wait (an eighth of the live bytes, 8 MiB at
 *                             least), the block the thread is on and one more.
 *                             Prints file_mib= and the bound.
 *   punch_queue exit          frees a filled 256 MiB block and returns at once:
 *                             the record at exit (EXM_STATS=path) counts it as
 *                             given back.
 * Prints "punch_queue ok".
 */
#include "common.h"

#include <sys/wait.h>

static void *filled(size_t n, uint64_t seed) {
  unsigned char *p = malloc(n);
  CHECK(p, "malloc(%zu)", n);
  fill_pattern(p, n, seed);
  return p;
}

static void given_back(const char *who, size_t most) {
  exm_stats_t st;
  CHECK(X.get_stats(&st) == 0, "%s: exm_get_stats", who);
  CHECK(st.disk_reserved <= most, "%s: disk_reserved %llu, at most %zu expected right after exm_get_stats", who,
        (unsigned long long)st.disk_reserved, most);
  CHECK(X.check() == 0, "%s: exm_check", who);
}

int main(int argc, char **argv) {
  api_init();
  CHECK(X.loaded, "punch_queue needs libexm");
  CHECK(argc > 1, "usage: punch_queue cap N | fork MODE | bound | exit");
  if (!strcmp(argv[1], "cap")) {
    int rounds = argc > 2 ? atoi(argv[2]) : 8;
    size_t cap = X.get_max_disk();
    CHECK(cap > 0, "cap mode needs EXM_MAX_DISK");
    size_t n = cap / 4 * 3 & ~(MiB - 1);
    int fb = 0;
    for (int i = 0; i < rounds; i++) {
      unsigned char *p = filled(n, (uint64_t)i);
      fb += api_fb(p);
      CHECK_PATTERN(p, n, (uint64_t)i, "cap round");
      free(p);
    }
    printf("file_backed=%d of %d\n", fb, rounds);
    CHECK(fb == rounds, "%d of %d blocks were file-backed under a cap that fits one", fb, rounds);
    given_back("cap", 32 * MiB);
  } else if (!strcmp(argv[1], "fork")) {
    CHECK(argc > 2, "fork needs a mode");
    exm_child_mode_t mode = !strcmp(argv[2], "cow") ? EXM_CHILD_COW
                            : !strcmp(argv[2], "shared") ? EXM_CHILD_SHARED
                            : !strcmp(argv[2], "duplicate") ? EXM_CHILD_DUPLICATE
                            : (exm_child_mode_t)-1;
    CHECK((int)mode >= 0 && X.set_child_mode(mode) == 0, "child mode %s", argv[2]);
    enum { NB = 4 };
    size_t n = 64 * MiB;
    unsigned char *keep = filled(n, 99);   /* live across the fork */
    void *room = malloc(2048 * MiB);       /* never touched: disk reserved, no pages */
    CHECK(room && api_fb(room), "malloc(2 GiB) not file-backed");
    unsigned char *b[NB];
    for (int i = 0; i < NB; i++) b[i] = filled(n, (uint64_t)i);
    for (int i = 0; i < NB; i++) free(b[i]);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
      CHECK(X.check() == 0, "child: exm_check");
      CHECK_PATTERN(keep, n, 99, "child: the parent's live block");
      unsigned char *c = filled(n, 7);
      CHECK(api_fb(c), "child: a new block is not file-backed");
      CHECK_PATTERN(c, n, 7, "child: its own block");
      free(c);
      /* duplicate: the copy is the child's own arena; the blocks the parent
       * was still punching hold no disk in it */
      if (mode == EXM_CHILD_DUPLICATE) given_back("child", 2048 * MiB + n + 32 * MiB);
      CHECK(X.check() == 0, "child: exm_check at the end");
      fflush(stdout);
      _exit(0);
    }
    wait_child(pid, "fork child");
    CHECK_PATTERN(keep, n, 99, "parent: its live block after the child");
    given_back("parent", 2048 * MiB + n + 32 * MiB);
    free(room);
    free(keep);
  } else if (!strcmp(argv[1], "bound")) {
    enum { NB = 48 };
    size_t live = 64 * MiB, n = 8 * MiB;
    unsigned char *keep = filled(live, 99);
    exm_block_info_t info;
    CHECK(X.lookup(keep, &info) == 0, "exm_lookup");
    unsigned char *b[NB];
    for (int i = 0; i < NB; i++) b[i] = filled(n, (uint64_t)i);
    for (int i = 0; i < NB; i++) free(b[i]);
    size_t file = file_bytes(info.fd), wait = live / 8 > 8 * MiB ? live / 8 : 8 * MiB;
    size_t most = live + wait + 2 * n + 2 * MiB;   /* + the first 2 MiB reserved for small chunks */
    printf("file_mib=%zu\nbound_mib=%zu\n", file / MiB, most / MiB);
    CHECK(file <= most, "%zu MiB of file right after the frees, at most %zu MiB expected", file / MiB, most / MiB);
    CHECK_PATTERN(keep, live, 99, "the live block");
    given_back("bound", live + 32 * MiB);
    free(keep);
  } else if (!strcmp(argv[1], "exit")) {
    size_t n = 256 * MiB;
    free(filled(n, 5));
  } else {
    FAIL("unknown mode %s", argv[1]);
  }
  printf("punch_queue ok\n");
  return 0;
}
