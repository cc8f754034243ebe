/*
 * depot.c: small blocks that move between threads (issue 14), at threshold 0.
 *
 * A thread's cache hands half of a full bin to its size class's depot, and
 * an empty bin takes a batch from there before the arena's lock
 * (native/tcache.c). This program drives the paths a program with threads
 * that free what others allocated takes through it:
 *
 * usage: depot handoff [ROUNDS]
 *   A producer thread allocates blocks of 16..1040 bytes, writes a pattern
 *   and hands them to two consumer threads through a ring; the consumers
 *   check the pattern (a block handed out twice, or written while in a
 *   cache, shows here) and free them. Meanwhile the main thread runs
 *   exm_check. Then a second producer allocates a last set and exits before
 *   the consumers free them (a thread gone while others hold its blocks).
 *   At the end the arena's live blocks must be back where they started:
 *   nothing kept in a depot or a cache counts as live once the statistics
 *   are read. Prints "depot ok".
 *
 * usage: depot fork [FORKS]
 *   Two threads pass blocks to each other (filling the depot and taking
 *   from it) while the main thread forks; each child allocates, checks and
 *   frees blocks of every small size, runs exm_check and exits 0. Run it in
 *   every EXM_CHILD mode. Prints "depot ok".
 *
 * usage: depot fork-late [FORKS]
 *   The child runs its fork handlers only after the parent's fork has
 *   returned and the parent has taken the depot's batches of one class and
 *   written over every byte of those chunks (a handler of this program's,
 *   registered before libexm's, holds the child until then). Whatever the
 *   child reads of the depot must be the copy of the heap made at the
 *   fork, never the parent's memory as it is now. Each child allocates,
 *   checks and frees, runs exm_check and exits 0. Prints "depot ok".
 *
 * usage: depot fork-nofd [FORKS]
 *   The same hold, with the process at its descriptor limit (no file, memfd
 *   or pipe for the copy of the heap): the parent frees and reuses the
 *   blocks the held child inherited; the child checks and frees them.
 *
 * A double free of a block in the depot: tcache_threads double-free depot.
 */
#include "common.h"

#include <pthread.h>
#include <sys/resource.h>
#include <sys/wait.h>

#define RING 256

typedef struct {
  void *p[RING];
  size_t n[RING];
  uint64_t seed[RING];
  unsigned head, tail;   /* head: next to take, tail: next to put */
  int done;
  pthread_mutex_t m;
  pthread_cond_t cv;
} ring_t;

static ring_t ring = { .m = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

static void ring_put(void *p, size_t n, uint64_t seed) {
  pthread_mutex_lock(&ring.m);
  while (ring.tail - ring.head == RING) pthread_cond_wait(&ring.cv, &ring.m);
  unsigned i = ring.tail++ % RING;
  ring.p[i] = p, ring.n[i] = n, ring.seed[i] = seed;
  pthread_cond_broadcast(&ring.cv);
  pthread_mutex_unlock(&ring.m);
}

/* 0 when the ring is empty and the producer done. */
static int ring_take(void **p, size_t *n, uint64_t *seed) {
  pthread_mutex_lock(&ring.m);
  while (ring.tail == ring.head && !ring.done) pthread_cond_wait(&ring.cv, &ring.m);
  int got = ring.tail != ring.head;
  if (got) {
    unsigned i = ring.head++ % RING;
    *p = ring.p[i], *n = ring.n[i], *seed = ring.seed[i];
    pthread_cond_broadcast(&ring.cv);
  }
  pthread_mutex_unlock(&ring.m);
  return got;
}

static long rounds = 200000;

static size_t size_of(uint64_t r) { return 16 + (size_t)(r % 64) * 16; }

static void *producer(void *arg) {
  (void)arg;
  uint64_t rng = 0x9e3779b97f4a7c15ull;
  for (long i = 0; i < rounds; i++) {
    uint64_t r = xorshift64(&rng);
    size_t n = size_of(r);
    void *p = malloc(n);
    CHECK(p && api_fb(p), "malloc(%zu) not file-backed (run at threshold 0)", n);
    fill_pattern(p, n, r);
    ring_put(p, n, r);
  }
  pthread_mutex_lock(&ring.m);
  ring.done = 1;
  pthread_cond_broadcast(&ring.cv);
  pthread_mutex_unlock(&ring.m);
  return NULL;
}

static void *consumer(void *arg) {
  (void)arg;
  void *p;
  size_t n;
  uint64_t seed;
  while (ring_take(&p, &n, &seed)) {
    CHECK_PATTERN(p, n, seed, "a block handed from the producer");
    free(p);
  }
  return NULL;
}

#define LAST 3000
static void *last[LAST];

static void *last_producer(void *arg) {
  (void)arg;
  for (int i = 0; i < LAST; i++) {
    last[i] = malloc(size_of((uint64_t)i * 7));
    CHECK(last[i], "malloc");
    fill_pattern(last[i], size_of((uint64_t)i * 7), (uint64_t)i);
  }
  return NULL;
}

static void *last_consumer(void *arg) {
  long half = (long)arg;
  for (int i = (int)half; i < LAST; i += 2) {
    CHECK_PATTERN(last[i], size_of((uint64_t)i * 7), (uint64_t)i, "a block of a thread that exited");
    free(last[i]);
  }
  return NULL;
}

static void *idle(void *arg) { return arg; }

static int handoff(void) {
  exm_stats_t s0, s1;
  pthread_t pr, c1, c2;
  /* glibc keeps the stacks of exited threads for reuse, with a few small
   * blocks of theirs (thread-local storage vectors): make the three it will
   * keep before counting */
  CHECK(pthread_create(&pr, NULL, idle, NULL) == 0 && pthread_create(&c1, NULL, idle, NULL) == 0 &&
        pthread_create(&c2, NULL, idle, NULL) == 0, "pthread_create");
  CHECK(pthread_join(pr, NULL) == 0 && pthread_join(c1, NULL) == 0 && pthread_join(c2, NULL) == 0, "join");
  CHECK(X.get_stats(&s0) == 0, "stats");
  CHECK(pthread_create(&pr, NULL, producer, NULL) == 0, "pthread_create");
  CHECK(pthread_create(&c1, NULL, consumer, NULL) == 0, "pthread_create");
  CHECK(pthread_create(&c2, NULL, consumer, NULL) == 0, "pthread_create");
  int checks = 0;
  for (; checks < 20; checks++) API_CHECK("the handoff, while it runs");
  CHECK(pthread_join(pr, NULL) == 0 && pthread_join(c1, NULL) == 0 && pthread_join(c2, NULL) == 0, "join");
  CHECK(pthread_create(&pr, NULL, last_producer, NULL) == 0 && pthread_join(pr, NULL) == 0, "last producer");
  CHECK(pthread_create(&c1, NULL, last_consumer, (void *)0L) == 0, "pthread_create");
  CHECK(pthread_create(&c2, NULL, last_consumer, (void *)1L) == 0, "pthread_create");
  CHECK(pthread_join(c1, NULL) == 0 && pthread_join(c2, NULL) == 0, "join");
  API_CHECK("the handoff, after it");
  CHECK(X.get_stats(&s1) == 0, "stats");
  printf("rounds=%ld checks=%d live_blocks_before=%" PRIu64 " live_blocks_after=%" PRIu64 " live_bytes_after=%" PRIu64 "\n",
         rounds, checks, s0.live_blocks, s1.live_blocks, s1.live_bytes);
  CHECK(s1.live_blocks == s0.live_blocks, "%" PRId64 " blocks left live after every block was freed",
        (int64_t)(s1.live_blocks - s0.live_blocks));
  printf("depot ok\n");
  return 0;
}

/* ---- fork while blocks move between threads ------------------------------ */

static int stop;   /* atomic */
#define SLOTS 512
static void *slot[SLOTS];
static pthread_mutex_t slot_m = PTHREAD_MUTEX_INITIALIZER;

/* Each thread puts its new blocks in the shared slots and frees what the
 * other put there: most frees are of the other thread's blocks. */
static void *swapper(void *arg) {
  uint64_t rng = 0x1234567ull + (uint64_t)(uintptr_t)arg;
  while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
    uint64_t r = xorshift64(&rng);
    size_t n = size_of(r);
    unsigned char *p = malloc(n);
    CHECK(p, "malloc");
    memset(p, (int)(r >> 8), n);     /* all of it, as a program uses what it asked for */
    pthread_mutex_lock(&slot_m);
    void *old = slot[r % SLOTS];
    slot[r % SLOTS] = p;
    pthread_mutex_unlock(&slot_m);
    free(old);
  }
  return NULL;
}

static int child_work(void) {
  void *b[256];
  for (int round = 0; round < 20; round++) {
    for (int i = 0; i < 256; i++) {
      size_t n = 8 + (size_t)i * 16;
      if (!(b[i] = malloc(n))) return 2;
      fill_pattern(b[i], n, (uint64_t)(round * 256 + i));
    }
    for (int i = 0; i < 256; i++) {
      if (find_pattern_mismatch(b[i], 8 + (size_t)i * 16, (uint64_t)(round * 256 + i)) >= 0) return 4;
      free(b[i]);
    }
  }
  return X.check && X.check() ? 5 : 0;
}

static int forks(int n) {
  pthread_t t1, t2;
  CHECK(pthread_create(&t1, NULL, swapper, (void *)1) == 0 && pthread_create(&t2, NULL, swapper, (void *)2) == 0, "pthread_create");
  for (int i = 0; i < n; i++) {
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) _exit(child_work());
    int st = 0;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d failed (status 0x%x)", i, st);
  }
  __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
  CHECK(pthread_join(t1, NULL) == 0 && pthread_join(t2, NULL) == 0, "join");
  for (int i = 0; i < SLOTS; i++) free(slot[i]);
  API_CHECK("the parent, after the forks");
  printf("forks=%d\ndepot ok\n", n);
  return 0;
}

/* ---- a child that runs its fork handlers late ----------------------------
 * pthread_atfork runs the child's handlers in the order they were
 * registered, and a preloaded library's constructor runs before the
 * program's: only the main program's preinit_array comes before it. So
 * hold_child, registered there, runs first in every child and waits for
 * the byte the parent writes to hold_pipe (when it is open). */
static int hold_pipe[2] = { -1, -1 };

static void hold_child(void) {
  char c;
  if (hold_pipe[0] < 0) return;
  close(hold_pipe[1]);
  while (read(hold_pipe[0], &c, 1) < 0 && errno == EINTR) {}
  close(hold_pipe[0]);
}

static void register_hold(int argc, char **argv, char **envp) {
  (void)argc, (void)argv, (void)envp;
  pthread_atfork(NULL, NULL, hold_child);
}
__attribute__((section(".preinit_array"), used)) static void (*const preinit_hold)(int, char **, char **) = register_hold;

static void hold_open(void) { CHECK(pipe(hold_pipe) == 0, "pipe"); }

static pid_t held_fork(void) {
  fflush(NULL);
  pid_t pid = fork();
  CHECK(pid >= 0, "fork");
  return pid;
}

/* In the parent: let the held child go on, and check that it exits 0. */
static void release_and_wait(pid_t pid, int i) {
  close(hold_pipe[0]);
  CHECK(write(hold_pipe[1], "x", 1) == 1, "write");
  close(hold_pipe[1]);
  hold_pipe[0] = hold_pipe[1] = -1;
  int st = 0;
  CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d failed (status 0x%x)", i, st);
}

/* n blocks of size bytes, written all over. */
static void take_and_write(void **b, int n, size_t size) {
  for (int k = 0; k < n; k++) {
    CHECK((b[k] = malloc(size)), "malloc");
    memset(b[k], 0xa5, size);
  }
}

#define LATE_N 64
#define LATE_SIZE 100     /* one size class: a bin of 16, batches of 8 */

static int forks_late(int n) {
  void *b[LATE_N];
  for (int i = 0; i < n; i++) {
    /* fill the depot: a full bin hands half of itself on */
    for (int k = 0; k < LATE_N; k++) CHECK((b[k] = malloc(LATE_SIZE)), "malloc");
    for (int k = 0; k < LATE_N; k++) free(b[k]);
    hold_open();
    pid_t pid = held_fork();
    if (pid == 0) _exit(child_work());
    /* the child is held: take the bin and the depot's batches, write them */
    take_and_write(b, LATE_N, LATE_SIZE);
    release_and_wait(pid, i);
    for (int k = 0; k < LATE_N; k++) free(b[k]);
  }
  API_CHECK("the parent, after the forks");
  printf("forks=%d\ndepot ok\n", n);
  return 0;
}

/* ---- fork with no descriptor to spare -----------------------------------
 * At its descriptor limit the process can open no file and no memfd for the
 * copy of its small-chunk segments, nor a pipe to say when the copy is done.
 * The child must still get the heap as it was at the fork: here the parent,
 * while the child is held, frees the blocks the child inherited and reuses
 * their chunks; the child then checks those blocks and frees them (a heap
 * read from the parent's memory as it is now would call that a double
 * free, or find other data in them). */
#define NOFD_N 64
#define NOFD_SIZE 3000    /* a class whose bin holds 4: most frees reach the core */

static int forks_nofd(int n) {
  struct rlimit old;
  CHECK(getrlimit(RLIMIT_NOFILE, &old) == 0, "getrlimit");
  void *kept[NOFD_N], *other[NOFD_N];
  for (int i = 0; i < n; i++) {
    for (int k = 0; k < NOFD_N; k++) {
      CHECK((kept[k] = malloc(NOFD_SIZE)), "malloc");
      fill_pattern(kept[k], NOFD_SIZE, (uint64_t)(i * NOFD_N + k));
    }
    hold_open();
    int lowest = dup(0);
    CHECK(lowest >= 0, "dup");
    close(lowest);
    struct rlimit none = { (rlim_t)lowest, old.rlim_max };
    CHECK(setrlimit(RLIMIT_NOFILE, &none) == 0, "setrlimit");
    pid_t pid = held_fork();
    if (pid == 0) {
      setrlimit(RLIMIT_NOFILE, &old);
      for (int k = 0; k < NOFD_N; k++) {
        if (find_pattern_mismatch(kept[k], NOFD_SIZE, (uint64_t)(i * NOFD_N + k)) >= 0) _exit(6);
        free(kept[k]);
      }
      _exit(child_work());
    }
    CHECK(setrlimit(RLIMIT_NOFILE, &old) == 0, "setrlimit");
    for (int k = 0; k < NOFD_N; k++) free(kept[k]);
    take_and_write(other, NOFD_N, NOFD_SIZE);
    release_and_wait(pid, i);
    for (int k = 0; k < NOFD_N; k++) free(other[k]);
  }
  API_CHECK("the parent, after the forks");
  printf("forks=%d\ndepot ok\n", n);
  return 0;
}

int main(int argc, char **argv) {
  api_init();
  CHECK(X.loaded && X.get_stats, "depot needs libexm");
  const char *what = argc > 1 ? argv[1] : "handoff";
  if (!strcmp(what, "handoff")) {
    if (argc > 2) rounds = atol(argv[2]);
    return handoff();
  }
  if (!strcmp(what, "fork")) return forks(argc > 2 ? atoi(argv[2]) : 20);
  if (!strcmp(what, "fork-late")) return forks_late(argc > 2 ? atoi(argv[2]) : 5);
  if (!strcmp(what, "fork-nofd")) return forks_nofd(argc > 2 ? atoi(argv[2]) : 5);
  FAIL("usage: depot handoff [ROUNDS] | fork [FORKS] | fork-late [FORKS] | fork-nofd [FORKS]");
}
