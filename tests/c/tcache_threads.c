/*
 * tcache_threads.c: the per-thread cache of small chunks across threads.
 *
 * usage: tcache_threads consumers [THREADS]
 *   THREADS threads (default 100) that only free: the main thread allocates
 *   the blocks, each thread frees its share and exits. Afterwards the
 *   arena's live block count must be back where it was: a thread's cache is
 *   given back when it exits, whether or not it ever allocated.
 *
 * usage: tcache_threads fork-cache
 *   The thread cache across fork, in any child mode: the parent's cache is
 *   stocked with chunks of every size class up to 4095 bytes, then it forks;
 *   the child allocates from the cache it inherited and fills what it gets
 *   with 0xEE. Blocks a child allocates are its own: the parent must not see
 *   those writes in the chunks its own cache then hands out, and its heap
 *   must stay consistent (EXM_CHILD=shared once crashed here: the
 *   4089..4095-byte class was stocked with page blocks, which a shared child
 *   writes into the parent's memory, cache links included).
 *
 * usage: tcache_threads double-free [depot]
 *   A block is freed by one thread, which stays alive (its cache holds the
 *   block), and then again by the main thread. The second free must abort
 *   with exm's message; if it does not, the program shows the consequence:
 *   the same block handed out to two threads (exit status 3). With
 *   "depot", the thread frees the block in the middle of a run of 800
 *   same-size frees: past the first full bin a bin always holds more than
 *   half its limit, so the block is among the newest half at the next
 *   overflow and goes on to the depot with that batch (native/tcache.c).
 *
 * usage: tcache_threads unwritten [ROUNDS]
 *   Blocks that the program never writes: a cached chunk holds the cache's
 *   mark in its second word, and every way out of a cache (a pop, a batch
 *   taken from the depot, a bin or a depot given back to the arena) must
 *   clear it, or the next free of a block that kept it reads as a double
 *   free. Four threads allocate and free runs of 600 unwritten blocks of
 *   every small class (full bins go to the depot, empty ones take other
 *   threads' batches) and exit; malloc_trim gives the depot back; then the
 *   main thread carves blocks of other sizes over the same memory (other
 *   chunk boundaries), asks their usable size, reallocs a third in place,
 *   and frees them all, unwritten. No abort, a consistent arena, and the
 *   live block count back where it started. Last, glibc's tst-tcfree3 on
 *   every class: the first 32 bytes of a freed (cached) block, its mark
 *   included, are copied into two live blocks, which then free without an
 *   abort (a mark belongs to one chunk; glibc confirms its own key by a walk
 *   of its list). Prints "tcache_threads ok".
 *
 * usage: tcache_threads race TRIALS [trim]
 *   Two frees of one block that race each other on two threads. Each trial
 *   is a forked child: the main thread and a new one wait at a spin barrier
 *   and then both free the same 40-byte block, one of them after a delay
 *   that sweeps -400..400 spins over the trials (the new thread's free makes
 *   its cache: the slow path). One of the two frees must abort with exm's
 *   message; a child in which both return has let a double free through
 *   (the block then sits in both threads' caches) and exits 0. With
 *   "trim", the second thread frees the block before the barrier (into its
 *   cache) and after it gives its cache back (malloc_trim), while the main
 *   thread frees the block again after a delay that sweeps the flush (0 to
 *   4000 spins, by trial). Prints "trials=N aborted=N slipped=N other=N".
 */
#include "common.h"

#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <pthread.h>
#include <sys/wait.h>

#define PER_THREAD 40

static void **blocks;

static void *consumer(void *arg) {
  long i = (long)arg;
  for (int k = 0; k < PER_THREAD; k++) free(blocks[i * PER_THREAD + k]);
  return NULL;
}

static void *victim;
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int stage;
#define FILL 400
static int fill;                  /* 0, or FILL with "depot" */
static void *fillers[2 * FILL];
static void *got_by_thread[2 * FILL + 1], *got_by_main[2 * FILL + 1];

static void *first_freer(void *arg) {
  (void)arg;
  for (int i = 0; i < fill; i++) free(fillers[i]);
  free(victim);
  for (int i = fill; i < 2 * fill; i++) free(fillers[i]);
  pthread_mutex_lock(&m);
  stage = 1;
  pthread_cond_broadcast(&cv);
  while (stage < 2) pthread_cond_wait(&cv, &m);
  pthread_mutex_unlock(&m);
  for (int i = 0; i <= 2 * fill; i++) got_by_thread[i] = malloc(40);   /* the victim among them */
  return NULL;
}

#define RUN 600
static long unwritten_rounds = 40;

static void *unwritten_worker(void *arg) {
  void **b = malloc(sizeof(void *) * RUN);
  CHECK(b, "malloc");
  for (long r = 0; r < unwritten_rounds; r++) {
    size_t n = 8 + (size_t)((r * 7 + (long)arg * 13) % 256) * 16;   /* classes up to 4104 bytes */
    for (int i = 0; i < RUN; i++) CHECK((b[i] = malloc(n)), "malloc(%zu)", n);
    for (int i = 0; i < RUN; i++) free(b[i]);
  }
  free(b);
  return NULL;
}

static int unwritten(void) {
  exm_stats_t s0, s1;
  pthread_t th[4];
  CHECK(pthread_create(&th[0], NULL, unwritten_worker, NULL) == 0 && pthread_join(th[0], NULL) == 0, "warm-up thread");
  CHECK(X.get_stats(&s0) == 0, "stats");
  for (long i = 0; i < 4; i++) CHECK(pthread_create(&th[i], NULL, unwritten_worker, (void *)i) == 0, "pthread_create");
  for (int i = 0; i < 4; i++) CHECK(pthread_join(th[i], NULL) == 0, "join");
  malloc_trim(0);
  API_CHECK("after the threads, their exits and malloc_trim");
  enum { N = 3000 };
  static void *b[N];
  static size_t want[N];
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < N; i++) {
      want[i] = 1 + (size_t)((i * 37 + round * 11) % 2100);   /* any size, other chunk boundaries */
      CHECK((b[i] = malloc(want[i])) && api_fb(b[i]), "malloc(%zu) not file-backed (run at threshold 0)", want[i]);
      CHECK(malloc_usable_size(b[i]) >= want[i], "malloc_usable_size(%zu-byte block) = %zu", want[i], malloc_usable_size(b[i]));
    }
    for (int i = 0; i < N; i += 3) {
      void *q = realloc(b[i], want[i] + 8);
      CHECK(q, "realloc(%zu)", want[i] + 8);
      b[i] = q;
    }
    for (int i = 0; i < N; i++) free(b[i]);
    API_CHECK("after carving unwritten blocks over the same memory");
  }
  for (size_t n = 24; n <= 4104; n += 16) {
    unsigned char *a = malloc(n), *c = malloc(n), *d = malloc(n);
    CHECK(a && c && d, "malloc(%zu)", n);
    memset(c, 0xff, n);
    free(a);                           /* into the cache: a holds the mark now */
    memcpy(c, a, 32);                  /* reads freed memory, as tst-tcfree3 does */
    memcpy(d, a, 32);
    free(c);                           /* must not read as a double free */
    free(d);
  }
  API_CHECK("after freeing blocks that hold a copy of a cached block's words");
  CHECK(X.get_stats(&s1) == 0, "stats");
  printf("live_blocks_before=%" PRIu64 " live_blocks_after=%" PRIu64 "\n", s0.live_blocks, s1.live_blocks);
  CHECK(s1.live_blocks <= s0.live_blocks + 16, "%" PRIu64 " blocks left live", s1.live_blocks - s0.live_blocks);
  printf("tcache_threads ok\n");
  return 0;
}

/* ---- race: two frees of one block at the same moment ---------------------- */
static void *race_block;
static int race_trim;
static long race_delay;
static volatile int race_arrived;

static void race_barrier(void) {
  __atomic_add_fetch(&race_arrived, 1, __ATOMIC_SEQ_CST);
  while (__atomic_load_n(&race_arrived, __ATOMIC_ACQUIRE) < 2) {}
}

static void *race_other(void *arg) {
  (void)arg;
  if (race_trim) free(race_block);     /* the one legitimate free: into this thread's cache */
  race_barrier();
  if (race_trim) {
    malloc_trim(0);                    /* the cache back to the arena, under its lock */
  } else {
    for (volatile long i = 0; i < -race_delay; i++) {}
    free(race_block);
  }
  return NULL;
}

static int race_trial(void) {
  race_block = malloc(40);
  CHECK(race_block && api_fb(race_block), "block not file-backed (run at threshold 0)");
  pthread_t th;
  CHECK(pthread_create(&th, NULL, race_other, NULL) == 0, "pthread_create");
  race_barrier();
  for (volatile long i = 0; i < race_delay; i++) {}
  free(race_block);
  CHECK(pthread_join(th, NULL) == 0, "join");
  return 0;                            /* both frees returned: not caught */
}

static int race(long trials) {
  long aborted = 0, slipped = 0, other = 0;
  for (long t = 0; t < trials; t++) {
    race_delay = race_trim ? (t * 37) % 4001 : (t * 7) % 801 - 400;
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
      int dn = open("/dev/null", O_WRONLY);  /* the expected abort's line, once per trial */
      if (dn >= 0) dup2(dn, 2);
      _exit(race_trial());
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid, "waitpid");
    if (WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT) aborted++;
    else if (WIFEXITED(st) && WEXITSTATUS(st) == 0) slipped++;
    else other++;
  }
  printf("trials=%ld aborted=%ld slipped=%ld other=%ld\n", trials, aborted, slipped, other);
  return 0;
}

int main(int argc, char **argv) {
  api_init();
  CHECK(X.loaded && X.get_stats, "tcache_threads needs libexm");
  const char *what = argc > 1 ? argv[1] : "consumers";
  if (!strcmp(what, "consumers")) {
    int n = argc > 2 ? atoi(argv[2]) : 100;
    exm_stats_t s0, s1;
    CHECK(X.get_stats(&s0) == 0, "stats");
    blocks = malloc(sizeof(void *) * (size_t)n * PER_THREAD);
    CHECK(blocks, "malloc");
    for (long i = 0; i < (long)n * PER_THREAD; i++) {
      blocks[i] = malloc(16 + (size_t)(i % 50) * 16);
      CHECK(blocks[i] && api_fb(blocks[i]), "block %ld not file-backed (run at threshold 0)", i);
    }
    for (long i = 0; i < n; i++) {
      pthread_t th;
      CHECK(pthread_create(&th, NULL, consumer, (void *)i) == 0, "pthread_create");
      CHECK(pthread_join(th, NULL) == 0, "join");
    }
    free(blocks);
    CHECK(X.get_stats(&s1) == 0, "stats");
    printf("live_blocks_before=%" PRIu64 " live_blocks_after=%" PRIu64 "\n", s0.live_blocks, s1.live_blocks);
    CHECK(s1.live_blocks <= s0.live_blocks + 16, "%" PRIu64 " blocks left live by %d threads that only freed",
          s1.live_blocks - s0.live_blocks, n);
    API_CHECK("consumers");
    printf("tcache_threads ok\n");
    return 0;
  }
  if (!strcmp(what, "fork-cache")) {
    static const size_t sizes[] = { 24, 100, 1000, 2040, 4000, 4089, 4095 };
    enum { NS = sizeof sizes / sizeof *sizes, PER = 6 };
    for (int k = 0; k < NS; k++) {     /* a miss stocks the cache; the frees fill it */
      void *b[PER];
      for (int i = 0; i < PER; i++) CHECK((b[i] = malloc(sizes[k])) && api_fb(b[i]), "malloc(%zu) not file-backed (run at threshold 0)", sizes[k]);
      for (int i = 0; i < PER; i++) free(b[i]);
    }
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
      for (int k = 0; k < NS; k++)
        for (int i = 0; i < 2 * PER; i++) {
          void *q = malloc(sizes[k]);
          if (!q) _exit(2);
          memset(q, 0xEE, sizes[k]);
        }
      API_CHECK("child");
      _exit(0);
    }
    int st = 0;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child failed (status 0x%x)", st);
    API_CHECK("parent, after the child used its inherited cache");
    int seen = 0;
    for (int k = 0; k < NS; k++)
      for (int i = 0; i < 2 * PER; i++) {
        unsigned char *q = malloc(sizes[k]);
        CHECK(q, "malloc");
        for (size_t j = 16; j < sizes[k]; j++) seen += q[j] == 0xEE && j == 16;
        memset(q, 0x11, sizes[k]);
      }
    CHECK(seen == 0, "%d blocks the parent got hold the child's writes", seen);
    API_CHECK("parent, after reusing its cache");
    printf("tcache_threads ok\n");
    return 0;
  }
  if (!strcmp(what, "unwritten")) {
    if (argc > 2) unwritten_rounds = atol(argv[2]);
    return unwritten();
  }
  if (!strcmp(what, "race")) {
    race_trim = argc > 3 && !strcmp(argv[3], "trim");
    return race(argc > 2 ? atol(argv[2]) : 1000);
  }
  if (!strcmp(what, "double-free")) {
    fill = argc > 2 && !strcmp(argv[2], "depot") ? FILL : 0;
    for (int i = 0; i < 2 * fill; i++) CHECK((fillers[i] = malloc(40)), "malloc");
    victim = malloc(40);
    CHECK(victim && api_fb(victim), "victim not file-backed (run at threshold 0)");
    pthread_t th;
    CHECK(pthread_create(&th, NULL, first_freer, NULL) == 0, "pthread_create");
    pthread_mutex_lock(&m);
    while (stage < 1) pthread_cond_wait(&cv, &m);
    pthread_mutex_unlock(&m);
    printf("second free\n");
    fflush(stdout);
    free(victim);                    /* the double free, from another thread */
    for (int i = 0; i <= 2 * fill; i++) got_by_main[i] = malloc(40);
    pthread_mutex_lock(&m);
    stage = 2;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&m);
    pthread_join(th, NULL);
    int twice = 0;
    for (int i = 0; i <= 2 * fill; i++)
      for (int j = 0; j <= 2 * fill; j++) twice += got_by_main[i] == got_by_thread[j];
    printf("not detected: %d block(s) handed out to both threads\n", twice);
    if (twice) {
      fprintf(stderr, "FAIL: double free not caught: one block handed out twice\n");
      return 3;
    }
    fprintf(stderr, "FAIL: double free not caught\n");
    return 2;
  }
  FAIL("usage: tcache_threads consumers [THREADS] | fork-cache | double-free [depot] | unwritten [ROUNDS] | race TRIALS [trim]");
}
