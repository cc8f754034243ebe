/*
 * stress_faults.c: what a program sees when things go wrong around exm.
 * Runs with and without libexm; driven by tests/faults.test.ts.
 *
 *   fill MIN MAX [FILLER]  allocate blocks of MIN..MAX bytes until one does
 *                          not fit in the arena and comes from RAM instead
 *                          (never ENOMEM, never SIGBUS), free half, fill up
 *                          again, then let another writer (the file FILLER)
 *                          take the rest of the disk: malloc is served in
 *                          RAM, held blocks stay writable, and the arena
 *                          serves again once the filler is gone
 *   exit MODE SIZE         hold SIZE in the arena while 4 threads churn, then
 *                          end by MODE: segv, thread-exit, exit-busy,
 *                          main-pthread-exit, abort, raise-term
 *   churn                  malloc/free in a loop until killed (prints ready)
 *   fdreuse                close every descriptor above 2 (as daemons do)
 *                          after the arena exists, open a file of our own:
 *                          it must be left alone by exm
 *   lostfd-realloc         after the descriptors are closed, a realloc that
 *                          moves a block takes RAM and keeps its contents
 *   lostfd-punch           after the descriptors are closed and a file of
 *                          ours put at exm's number, a freed block's disk is
 *                          still given back, and our file left alone
 *   closed-stderr          run with fd 2 closed: writes to stderr must not
 *                          land in the program's heap
 *   fsize                  RLIMIT_FSIZE of 1 GiB, then a 100 MiB block
 *   mlocked-free           a block the program mlock'ed is freed: its disk is
 *                          still given back
 *   seccomp-free           the same under a seccomp filter that refuses
 *                          madvise(MADV_REMOVE)
 *   fsize-fork             RLIMIT_FSIZE lowered to 1 GiB once the arena
 *                          exists, then a fork: parent and child go on
 *   rlimit-as              RLIMIT_AS lowered to 4 GiB once the arena exists:
 *                          blocks, a thread, a mapping and a fork still come
 *   emfile                 every descriptor in use at the first big malloc
 *   pin-uring              a 64 MiB malloc'd buffer registered with io_uring as a
 *                          fixed buffer (a long-term pin of its pages);
 *                          prints pinned=ok or the errno's text, or
 *                          no_io_uring= when the kernel has none
 *   dontneed [fork]        madvise(MADV_DONTNEED) on 16 MiB inside a filled 64 MiB
 *                          block: prints after= (a byte read back: 0 on
 *                          glibc's anonymous memory), nonzero= (bytes of the
 *                          range still not 0, sampled) and beyond= (past the
 *                          range, still 1), disk_kept=1 when the backing file
 *                          still holds the block's disk; fork: in a child, and
 *                          the parent keeps its data (parent_kept=1)
 *   fsize-ram              run under an RLIMIT_FSIZE below the arena's smallest
 *                          file: a 100 MiB block, in RAM
 *   as-crowded [fork]      RLIMIT_AS of 1 GiB before the arena exists, then a
 *                          600 MiB block (more than the arena's half of the
 *                          limit, and it fits in RAM without exm) and a 64 MiB
 *                          one; fork: a 64 MiB block first, then a child that
 *                          makes the 600 MiB block beside the inherited arena
 *
 * Prints key=value lines and "<mode> ok"; failures print FAIL on stderr.
 */
#include "common.h"

#include <malloc.h>

#include <fcntl.h>
#if __has_include(<linux/io_uring.h>)
#include <linux/io_uring.h>
#define HAVE_IO_URING_H 1
#endif
#include <pthread.h>
#include <signal.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/uio.h>

/* ---- fill ------------------------------------------------------------------ */

#define MAXB 20000
static blk_t blk[MAXB];
static int nb;
static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint64_t rnd(void) { return xorshift64(&rng); }

/* Allocates until a block lands in RAM (the arena is full); every block is
 * written in full (a block whose disk was not reserved would SIGBUS here on
 * a full filesystem). Never more than MAXB blocks, so a bug cannot eat RAM. */
static size_t fill_up(size_t min, size_t max, const char *phase) {
  size_t bytes = 0;
  int start = nb;
  while (nb < MAXB) {
    size_t n = min + (max > min ? rnd() % (max - min) : 0);
    errno = 0;
    unsigned char *p = nb % 2 ? calloc(1, n) : malloc(n);
    CHECK(p != NULL, "%s: malloc(%zu) failed with errno %d: RAM should have served it", phase, n, errno);
    if (!api_fb(p)) {
      fill_pattern(p, n, 9);
      free(p);
      break;
    }
    if (nb % 2) CHECK(find_nonzero(p, n) < 0, "%s: calloc(%zu) not zero", phase, n);
    blk[nb] = (blk_t){ p, n, rnd() };
    fill_pattern(p, n, blk[nb].seed);
    bytes += n;
    nb++;
  }
  CHECK(nb < MAXB, "%s: never ran out (%d blocks): is the data directory small?", phase, nb);
  printf("%s_blocks=%d %s_mib=%zu\n", phase, nb - start, phase, bytes >> 20);
  return bytes;
}

static void verify_all(const char *when) {
  for (int i = 0; i < nb; i++) CHECK_PATTERN(blk[i].p, blk[i].n, blk[i].seed, when);
}

static void drop(int i) {
  CHECK_PATTERN(blk[i].p, blk[i].n, blk[i].seed, "before free");
  free(blk[i].p);
  blk[i] = blk[--nb];
}

static int mode_fill(size_t min, size_t max, const char *filler) {
  size_t a = fill_up(min, max, "first");
  CHECK(a > 0, "not even one block fitted");
  /* Still full: the same request is served in RAM again. */
  void *m = malloc(max);
  CHECK(m != NULL && !api_fb(m), "malloc(%zu) on a full disk: %p, file-backed %d", max, m, m ? api_fb(m) : -1);
  fill_pattern(m, max, 8);
  free(m);
  /* realloc that cannot grow in the arena moves the block to RAM, intact. */
  if (api_fb(blk[0].p)) {
    unsigned char *q = realloc(blk[0].p, blk[0].n + 4 * max);
    CHECK(q != NULL, "realloc could not grow on a full disk: errno %d", errno);
    blk[0].p = q;
  }
  verify_all("after failed allocations");
  /* Free half: the disk comes back and can be used again. */
  size_t freed = 0;
  for (int i = nb - 1; i >= 0; i -= 2) freed += blk[i].n, drop(i);
  size_t b = fill_up(min, max, "second");
  printf("freed_mib=%zu refilled_mib=%zu\n", freed >> 20, b >> 20);
  CHECK(b + max >= freed / 2, "freed %zu bytes but could use only %zu again", freed, b);
  verify_all("after refill");
  if (filler) {
    /* Keep a quarter, then another writer takes all the free space. */
    while (nb > 1 && nb > (int)(a / max / 4)) drop(nb - 1);
    /* free() hands a large block's punch to a background thread (punch.c):
     * let it finish, or the filler finds less room than was freed and the
     * arena's next allocation, which drains the queue first, reuses the
     * disk it gets back (seen under load: a file-backed block on a "full"
     * disk). malloc_trim drains the queue. */
    malloc_trim(0);
    int fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0, "open %s: %s", filler, strerror(errno));
    static char chunk[1 << 16];
    memset(chunk, 'f', sizeof chunk);
    size_t written = 0;
    for (;;) {
      ssize_t w = write(fd, chunk, sizeof chunk);
      if (w <= 0) break;
      written += (size_t)w;
    }
    CHECK(errno == ENOSPC, "filler stopped with errno %d, want ENOSPC", errno);
    printf("filler_mib=%zu\n", written >> 20);
    void *p = malloc(min);
    CHECK(p != NULL && !api_fb(p), "malloc(%zu) with the disk full: %p, file-backed %d", min, p, p ? api_fb(p) : -1);
    fill_pattern(p, min, 6);
    free(p);
    /* Every held block is reserved: rewriting all of it cannot SIGBUS. */
    for (int i = 0; i < nb; i++) {
      blk[i].seed = rnd();
      fill_pattern(blk[i].p, blk[i].n, blk[i].seed);
    }
    verify_all("rewritten with the disk full");
    close(fd);
    unlink(filler);
    p = malloc(min);
    CHECK(p != NULL && api_fb(p), "malloc(%zu) not file-backed again after the filler was removed", min);
    fill_pattern(p, min, 7);
    free(p);
  }
  while (nb) drop(nb - 1);
  API_CHECK("fill");
  printf("fill ok\n");
  return 0;
}

/* ---- exit ---------------------------------------------------------------------- */

static volatile int churning = 1;
static const char *exit_mode;

static void *churn_thread(void *arg) {
  uint64_t r = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
  void *slot[32] = { 0 };
  for (long i = 0; churning; i++) {
    r ^= r << 13; r ^= r >> 7; r ^= r << 17;
    int k = (int)(r % 32);
    free(slot[k]);
    size_t n = (r >> 8) % 4 == 0 ? (size_t)((r >> 16) % (4 * MiB)) : (size_t)((r >> 16) % 8192);
    slot[k] = malloc(n + 1);
    if (slot[k]) memset(slot[k], (int)i, n + 1 < 4096 ? n + 1 : 4096);
    if (i == 2000 && (uintptr_t)arg == 1 && !strcmp(exit_mode, "thread-exit")) exit(3);
  }
  for (int k = 0; k < 32; k++) free(slot[k]);
  return NULL;
}

static int mode_exit(const char *mode, size_t size) {
  exit_mode = mode;
  unsigned char *hold = malloc(size);
  CHECK(hold, "malloc(%zu)", size);
  for (size_t i = 0; i < size; i += 4096) hold[i] = (unsigned char)i;
  printf("file_backed=%d\n", api_fb(hold));
  pthread_t t[4];
  for (uintptr_t i = 0; i < 4; i++) pthread_create(&t[i], NULL, churn_thread, (void *)(i + 1));
  usleep(300 * 1000);
  printf("ending=%s\n", mode);
  fflush(stdout);
  if (!strcmp(mode, "segv")) *(volatile int *)(uintptr_t)8 = 1;
  if (!strcmp(mode, "abort")) abort();
  if (!strcmp(mode, "raise-term")) raise(SIGTERM);
  if (!strcmp(mode, "exit-busy")) exit(5);
  if (!strcmp(mode, "main-pthread-exit")) {
    /* The threads stop by themselves a little later; the last one out ends
     * the process with status 0. */
    struct timespec ts = { 0, 200 * 1000 * 1000 };
    nanosleep(&ts, NULL);
    churning = 0;
    pthread_exit(NULL);
  }
  if (!strcmp(mode, "thread-exit")) {
    for (;;) pause();
  }
  FAIL("unknown exit mode %s", mode);
}

/* ---- churn (for signals from outside) ---------------------------------------------- */

static int mode_churn(void) {
  printf("ready\n");
  fflush(stdout);
  for (unsigned long i = 0;; i++) {
    char *p = malloc(4096 + (i % 64) * 4096);
    if (p) p[0] = 1;
    free(p);
    if (i == ~0ul) break;   /* never: keeps the compiler content */
  }
  return 0;
}

/* ---- descriptors ---------------------------------------------------------------------- */

static int mode_fdreuse(void) {
  size_t n = 8 * MiB;
  unsigned char *p = malloc(n);          /* the arena exists from here on */
  CHECK(p, "malloc");
  printf("file_backed=%d\n", api_fb(p));
  fill_pattern(p, n, 1);
  for (int fd = 3; fd < 1024; fd++) close(fd);
  int fd = open("user.dat", O_RDWR | O_CREAT | O_TRUNC, 0644);
  CHECK(fd >= 0, "open user.dat");
  static char buf[1 << 16];
  memset(buf, 'A', sizeof buf);
  for (int i = 0; i < 16; i++) CHECK(write(fd, buf, sizeof buf) == (ssize_t)sizeof buf, "write");
  free(p);                               /* gives disk back ... */
  void *q = malloc(16 * MiB);            /* ... and reserves some */
  CHECK(q, "malloc after closing descriptors");
  fill_pattern(q, 16 * MiB, 2);
  free(q);
  struct stat st;
  CHECK(fstat(fd, &st) == 0, "fstat");
  CHECK(pread(fd, buf, sizeof buf, 0) == (ssize_t)sizeof buf, "pread");
  printf("user_file_size=%lld\n", (long long)st.st_size);
  CHECK(st.st_size == 1 << 20, "user.dat changed size: %lld bytes, want 1048576", (long long)st.st_size);
  for (size_t i = 0; i < sizeof buf; i++) CHECK(buf[i] == 'A', "user.dat overwritten at byte %zu (0x%02x)", i, buf[i]);
  printf("fdreuse ok\n");
  return 0;
}

/* The program closes exm's descriptor; a large malloc then finds the arena
 * unusable (RAM from then on). A realloc that moves a block must not carve
 * its new block in the arena either, even where retained disk would let it
 * without a reservation (the one-lock move of realloc did, once). */
static int mode_lostfd_realloc(void) {
  size_t m = 256 * 1024;                 /* at the threshold (64K), well below the 1 MiB kept at most */
  unsigned char *a = malloc(m), *b = malloc(m), *c = malloc(m), *d = malloc(m), *e = malloc(m);
  CHECK(a && b && c && d && e, "malloc");
  CHECK(api_fb(a) && api_fb(e), "the blocks are not file-backed");
  fill_pattern(a, m, 7);
  for (int fd = 3; fd < 1024; fd++) close(fd);
  void *big = malloc(32 * m);            /* needs a reservation: the arena is found unusable */
  CHECK(big, "malloc after closing descriptors");
  printf("big_file_backed=%d\n", api_fb(big));
  /* after that failure (it gave back all disk kept for reuse), 512 KiB
   * kept for reuse between b and e: no reservation needed to carve there */
  free(c);
  free(d);
  unsigned char *q = realloc(a, m + 4096);   /* b is live: a moves */
  CHECK(q, "realloc after closing descriptors");
  printf("moved_file_backed=%d\n", api_fb(q));
  long long bad = find_pattern_mismatch(q, m, 7);
  CHECK(bad < 0, "realloc lost data at byte %lld", bad);
  free(q);
  free(big);
  free(b);
  free(e);
  printf("lostfd-realloc ok\n");
  return 0;
}

/* A handle of the test's own on the backing file of block p (info filled),
 * above 2000: out of reach of a loop closing the program's descriptors. */
static int own_handle(const void *p, exm_block_info_t *info) {
  CHECK(X.lookup(p, info) == 0, "exm_lookup");
  int keep = fcntl(info->fd, F_DUPFD_CLOEXEC, 2000);
  CHECK(keep >= 2000, "F_DUPFD: %s", strerror(errno));
  return keep;
}

/* Free p; once the background punch is drained (exm_get_stats), the file
 * (seen through keep) must have given its disk back. Prints file_after_free=. */
static void free_given_back(void *p, int keep) {
  free(p);
  exm_stats_t s;
  CHECK(X.get_stats(&s) == 0, "exm_get_stats");
  size_t left = file_bytes(keep);
  printf("file_after_free=%zu\n", left);
  CHECK(left <= 2 * MiB, "exm's file still holds %zu bytes after the free", left);
}

/* The program closes exm's descriptor and puts a file of its own at that
 * number. Freeing a filled block must still give its disk back
 * (punched through the mapping, which holds the file), and the program's
 * file must stay as it was. The test keeps a handle on exm's file of its own,
 * out of the closing loop's reach (F_DUPFD above 2000), to see its disk. */
static int mode_lostfd_punch(void) {
  size_t n = 64 * MiB;
  unsigned char *p = malloc(n);
  CHECK(p && api_fb(p), "malloc(%zu) not file-backed", n);
  fill_pattern(p, n, 3);
  exm_block_info_t info;
  int keep = own_handle(p, &info);
  CHECK(file_bytes(keep) >= n, "exm's file holds less than the block");
  for (int fd = 3; fd < 1024; fd++) close(fd);
  int own = open("user.dat", O_RDWR | O_CREAT | O_TRUNC, 0644);   /* at exm's number, as bash's exec N>file */
  CHECK(own >= 0, "open user.dat: %s", strerror(errno));
  int fd = dup2(own, info.fd);
  CHECK(fd == info.fd, "dup2 to %d: %s", info.fd, strerror(errno));
  close(own);
  static char buf[1 << 16];
  memset(buf, 'U', sizeof buf);
  CHECK(write(fd, buf, sizeof buf) == (ssize_t)sizeof buf, "write");
  free_given_back(p, keep);
  struct stat st;
  CHECK(fstat(fd, &st) == 0 && st.st_size == (off_t)sizeof buf, "user.dat changed size: %lld", (long long)st.st_size);
  CHECK(pread(fd, buf, sizeof buf, 0) == (ssize_t)sizeof buf, "pread");
  for (size_t i = 0; i < sizeof buf; i++) CHECK(buf[i] == 'U', "user.dat changed at byte %zu", i);
  close(fd);
  close(keep);
  printf("lostfd-punch ok\n");
  return 0;
}

/* A seccomp filter (as sandboxes install) that refuses madvise(MADV_REMOVE)
 * with EPERM. */
static void refuse_madv_remove(void) {
  struct sock_filter f[] = {
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_madvise, 0, 3),
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2])),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, MADV_REMOVE, 0, 1),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = { (unsigned short)(sizeof f / sizeof f[0]), f };
  CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
  CHECK(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0, "PR_SET_SECCOMP: %s", strerror(errno));
}

/* A block the program mlock'ed is freed (or, with `seccomp`, freed under a
 * filter that refuses madvise(MADV_REMOVE)): the kernel will not punch
 * through a locked mapping (EINVAL), so exm punches by descriptor. The
 * test's own handle on exm's file (own_handle) sees its disk. Prints
 * mlock_failed=1 (and nothing more is checked) where RLIMIT_MEMLOCK is too
 * low for 64 MiB. */
static int mode_mlocked_free(int seccomp) {
  size_t n = 64 * MiB;
  unsigned char *p = malloc(n);
  CHECK(p && api_fb(p), "malloc(%zu) not file-backed", n);
  fill_pattern(p, n, 8);
  if (seccomp) {
    refuse_madv_remove();
  } else if (mlock(p, n)) {
    printf("mlock_failed=1\nmlocked-free ok\n");
    return 0;
  }
  exm_block_info_t info;
  int keep = own_handle(p, &info);
  free_given_back(p, keep);
  close(keep);
  printf("%s ok\n", seccomp ? "seccomp-free" : "mlocked-free");
  return 0;
}

/* The program lowers RLIMIT_FSIZE (to 1 GiB) once the arena exists, then
 * forks: a child's copy of the arena (segments at a low threshold, all of it
 * for --child duplicate) was a new file of the arena's size, and its
 * ftruncate past the limit sent SIGXFSZ, which killed the parent. */
static int mode_fsize_fork(void) {
  size_t n = 8 * MiB;
  unsigned char *p = malloc(n), *s = malloc(100);
  CHECK(p && s, "malloc");
  fill_pattern(p, n, 9);
  memcpy(s, "small", 6);
  struct rlimit rl = { (rlim_t)GiB, (rlim_t)GiB };
  CHECK(setrlimit(RLIMIT_FSIZE, &rl) == 0, "setrlimit(RLIMIT_FSIZE): %s", strerror(errno));
  pid_t pid = fork();
  CHECK(pid >= 0, "fork: %s", strerror(errno));
  if (pid == 0) {
    CHECK_PATTERN(p, n, 9, "child: the parent's block");
    CHECK(!strcmp((char *)s, "small"), "child: the parent's small block");
    unsigned char *c = malloc(n);
    CHECK(c, "child: malloc");
    fill_pattern(c, n, 10);
    CHECK_PATTERN(c, n, 10, "child: its own block");
    fflush(stdout);
    _exit(0);
  }
  wait_child(pid, "fork child");
  CHECK_PATTERN(p, n, 9, "parent: its block after the fork");
  free(p);
  free(s);
  printf("fsize-fork ok\n");
  return 0;
}

static void *nothing(void *arg) { return arg; }

/* The program lowers its address-space limit (RLIMIT_AS, as Python's
 * resource.setrlimit or a sandbox does) once the arena exists, to 4 GiB:
 * the arena's terabytes of address space must not make every later mmap
 * and brk fail. Small and large blocks, a thread and an anonymous mapping
 * must still come, and the blocks made before keep their contents. */
static int mode_rlimit_as(void) {
  size_t n = 64 * MiB;
  unsigned char *p = malloc(n);
  CHECK(p, "malloc");
  fill_pattern(p, n, 4);
  printf("file_backed=%d\n", api_fb(p));
  struct rlimit rl = { (rlim_t)4 << 30, (rlim_t)4 << 30 };
  CHECK(setrlimit(RLIMIT_AS, &rl) == 0, "setrlimit(RLIMIT_AS): %s", strerror(errno));
  static void *small[100000];
  for (int i = 0; i < 100000; i++) CHECK((small[i] = malloc(1000)), "malloc(1000) #%d after the limit", i);
  unsigned char *q = malloc(256 * MiB);
  CHECK(q, "malloc(256 MiB) after the limit");
  fill_pattern(q, 256 * MiB, 5);
  printf("large_file_backed=%d\n", api_fb(q));
  pthread_t t;
  CHECK(pthread_create(&t, NULL, nothing, NULL) == 0, "pthread_create after the limit");
  pthread_join(t, NULL);
  void *m = mmap(NULL, 64 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(m != MAP_FAILED, "mmap(64 MiB) after the limit: %s", strerror(errno));
  munmap(m, 64 * MiB);
  CHECK_PATTERN(p, n, 4, "the block made before the limit");
  CHECK_PATTERN(q, 256 * MiB, 5, "the block made after it");
  pid_t pid = fork();   /* a child maps the (smaller) arena again */
  CHECK(pid >= 0, "fork after the limit: %s", strerror(errno));
  if (pid == 0) {
    CHECK_PATTERN(p, n, 4, "child: the parent's block");
    unsigned char *c = malloc(32 * MiB);
    CHECK(c, "child: malloc(32 MiB)");
    fill_pattern(c, 32 * MiB, 6);
    CHECK_PATTERN(c, 32 * MiB, 6, "child: its own block");
    free(c);
    if (X.loaded) CHECK(X.check() == 0, "child: exm_check");
    fflush(stdout);
    _exit(0);
  }
  wait_child(pid, "fork child");
  for (int i = 0; i < 100000; i++) free(small[i]);
  free(q);
  free(p);
  if (X.loaded) CHECK(X.check() == 0, "exm_check");
  printf("rlimit-as ok\n");
  return 0;
}

static int mode_closed_stderr(void) {
  CHECK(fcntl(2, F_GETFD) < 0, "run me with fd 2 closed (prog 2>&-)");
  size_t n = 64 * MiB;
  unsigned char *p = malloc(n);
  CHECK(p, "malloc");
  printf("file_backed=%d\n", api_fb(p));
  fill_pattern(p, n, 3);
  /* Without exm these fail with EBADF and change nothing. */
  fprintf(stderr, "a diagnostic written to a closed stderr\n");
  perror("and perror too");
  long long bad = find_pattern_mismatch(p, n, 3);
  if (bad >= 0) {
    printf("block corrupted at byte %lld: \"%.24s\"\n", bad, (char *)p + bad);
    return 1;
  }
  free(p);
  printf("closed-stderr ok\n");
  return 0;
}

/* fsize: under an RLIMIT_FSIZE of 1 GiB set here; fsize-ram: under the one it
 * was started with (below the arena's smallest file: the block is in RAM). */
static int mode_fsize(const char *mode, int set_limit) {
  if (set_limit) {
    struct rlimit rl = { (rlim_t)GiB, (rlim_t)GiB };
    CHECK(setrlimit(RLIMIT_FSIZE, &rl) == 0, "setrlimit");
  }
  size_t n = 100 * MiB;
  unsigned char *p = malloc(n);
  CHECK(p, "malloc(100 MiB) under RLIMIT_FSIZE");
  printf("file_backed=%d\n", api_fb(p));
  fill_pattern(p, n, 4);
  CHECK_PATTERN(p, n, 4, "under RLIMIT_FSIZE");
  free(p);
  printf("%s ok\n", mode);
  return 0;
}

static int mode_emfile(void) {
  struct rlimit rl = { 64, 64 };
  CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0, "setrlimit");
  int fds[64], n = 0;
  while (n < 64 && (fds[n] = open("/dev/null", O_RDONLY)) >= 0) n++;
  CHECK(errno == EMFILE, "open stopped with %d", errno);
  unsigned char *p = malloc(100 * MiB);
  int fb1 = p ? api_fb(p) : -1;
  if (p) fill_pattern(p, 100 * MiB, 5), free(p);
  while (n) close(fds[--n]);
  p = malloc(100 * MiB);
  CHECK(p, "malloc after closing descriptors");
  int fb2 = api_fb(p);
  fill_pattern(p, 100 * MiB, 6);
  free(p);
  printf("at_emfile=%s file_backed_then=%d file_backed_after=%d\n", fb1 < 0 ? "NULL" : "pointer", fb1, fb2);
  printf("emfile ok\n");
  return 0;
}

static int mode_pin_uring(void) {
#if !defined(HAVE_IO_URING_H) || !defined(__NR_io_uring_setup)
  printf("no_io_uring=no headers\npin-uring ok\n");
  return 0;
#else
  struct io_uring_params prm;
  memset(&prm, 0, sizeof prm);
  int ring = (int)syscall(__NR_io_uring_setup, 8, &prm);
  if (ring < 0) {
    printf("no_io_uring=%s\npin-uring ok\n", strerror(errno));
    return 0;
  }
  size_t n = 64 * MiB;
  unsigned char *p = malloc(n);
  CHECK(p, "malloc(64 MiB)");
  fill_pattern(p, n, 3);
  printf("file_backed=%d\n", api_fb(p));
  struct iovec iov = { p, n };
  int r = (int)syscall(__NR_io_uring_register, ring, IORING_REGISTER_BUFFERS, &iov, 1);
  printf("pinned=%s\n", r < 0 ? strerror(errno) : "ok");
  close(ring);
  CHECK_PATTERN(p, n, 3, "the buffer");
  free(p);
  printf("pin-uring ok\n");
  return 0;
#endif
}

static int mode_dontneed(int forked) {
  size_t n = 64 * MiB, r = 16 * MiB;
  unsigned char *p = malloc(n);
  CHECK(p, "malloc(64 MiB)");
  memset(p, 1, n);
  unsigned char *q = (unsigned char *)(((uintptr_t)p + 4095) & ~(uintptr_t)4095);
  exm_block_info_t info;
  int fd = X.loaded && X.lookup(p, &info) == 0 ? info.fd : -1;
  size_t disk = fd >= 0 ? file_bytes(fd) : 0;
  pid_t pid = forked ? fork() : 0;
  CHECK(pid >= 0, "fork: %s", strerror(errno));
  if (pid == 0) {
    CHECK(madvise(q, r, MADV_DONTNEED) == 0, "madvise(MADV_DONTNEED): %s", strerror(errno));
    if (!forked && fd >= 0) printf("disk_kept=%d\n", file_bytes(fd) == disk);   /* reserved: never SIGBUS later */
    size_t nonzero = 0;
    for (size_t i = 0; i < r; i += 512) nonzero += q[i] != 0;
    printf("file_backed=%d\nafter=%d\nnonzero=%zu\nbeyond=%d\n", api_fb(p), q[4096], nonzero, q[r + 1]);
    if (!forked) {   /* and it is memory again (not in a child: a shared one writes the parent's) */
      q[4096] = 2;
      CHECK(q[4096] == 2, "a write after MADV_DONTNEED");
    }
    if (forked) {
      fflush(stdout);
      _exit(0);
    }
  } else {
    wait_child(pid, "fork child");
    CHECK(q[4096] == 1 && q[r - 1] == 1, "the parent's block after its child's MADV_DONTNEED");
    printf("parent_kept=1\n");
  }
  free(p);
  if (X.loaded) CHECK(X.check() == 0, "exm_check");
  printf("dontneed ok\n");
  return 0;
}

static int mode_as_crowded(int forked) {
  struct rlimit rl = { (rlim_t)GiB, (rlim_t)GiB };
  CHECK(setrlimit(RLIMIT_AS, &rl) == 0, "setrlimit(RLIMIT_AS): %s", strerror(errno));
  size_t n = 600 * MiB, m = 64 * MiB;
  if (forked) {
    /* the child inherits the parent's arena (half the limit) and makes
     * its own beside it: both must give way */
    unsigned char *first = malloc(m);
    CHECK(first, "malloc(64 MiB) before the fork");
    fill_pattern(first, m, 6);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
      unsigned char *c = malloc(n);
      CHECK(c, "child: malloc(600 MiB) under a 1 GiB address-space limit");
      fill_pattern(c, n, 5);
      CHECK_PATTERN(c, n, 5, "child: its 600 MiB block");
      CHECK_PATTERN(first, m, 6, "child: the parent's block");
      free(c);
      fflush(stdout);
      _exit(0);
    }
    wait_child(pid, "fork child");
    CHECK_PATTERN(first, m, 6, "the block made before the fork");
    free(first);
  }
  unsigned char *p = malloc(n);
  CHECK(p, "malloc(600 MiB) under a 1 GiB address-space limit, which fits without exm");
  fill_pattern(p, n, 7);
  printf("file_backed=%d\n", api_fb(p));
  unsigned char *q = malloc(m);
  CHECK(q, "malloc(64 MiB) next to it");
  fill_pattern(q, m, 8);
  static void *small[20000];
  for (int i = 0; i < 20000; i++) CHECK((small[i] = malloc(1000)), "malloc(1000) #%d", i);
  CHECK_PATTERN(p, n, 7, "the 600 MiB block");
  CHECK_PATTERN(q, m, 8, "the 64 MiB block");
  for (int i = 0; i < 20000; i++) free(small[i]);
  free(q);
  free(p);
  if (X.loaded) CHECK(X.check() == 0, "exm_check");
  printf("as-crowded ok\n");
  return 0;
}

int main(int argc, char **argv) {
  api_init();
  const char *mode = argc > 1 ? argv[1] : "";
  if (!strcmp(mode, "fill") && argc >= 4) return mode_fill(parse_size(argv[2]), parse_size(argv[3]), argc > 4 ? argv[4] : NULL);
  if (!strcmp(mode, "exit") && argc >= 4) return mode_exit(argv[2], parse_size(argv[3]));
  if (!strcmp(mode, "churn")) return mode_churn();
  if (!strcmp(mode, "fdreuse")) return mode_fdreuse();
  if (!strcmp(mode, "closed-stderr")) return mode_closed_stderr();
  if (!strcmp(mode, "lostfd-realloc")) return mode_lostfd_realloc();
  if (!strcmp(mode, "lostfd-punch")) return mode_lostfd_punch();
  if (!strcmp(mode, "rlimit-as")) return mode_rlimit_as();
  if (!strcmp(mode, "fsize-fork")) return mode_fsize_fork();
  if (!strcmp(mode, "mlocked-free")) return mode_mlocked_free(0);
  if (!strcmp(mode, "seccomp-free")) return mode_mlocked_free(1);
  if (!strcmp(mode, "fsize")) return mode_fsize(mode, 1);
  if (!strcmp(mode, "emfile")) return mode_emfile();
  if (!strcmp(mode, "as-crowded")) return mode_as_crowded(argc > 2 && !strcmp(argv[2], "fork"));
  if (!strcmp(mode, "fsize-ram")) return mode_fsize(mode, 0);
  if (!strcmp(mode, "pin-uring")) return mode_pin_uring();
  if (!strcmp(mode, "dontneed")) return mode_dontneed(argc > 2 && !strcmp(argv[2], "fork"));
  FAIL("usage: stress_faults fill MIN MAX [FILLER] | exit MODE SIZE | churn | fdreuse | lostfd-realloc | lostfd-punch | rlimit-as | fsize-fork | mlocked-free | seccomp-free | closed-stderr | fsize | emfile | as-crowded [fork] | fsize-ram | pin-uring | dontneed [fork]");
}
