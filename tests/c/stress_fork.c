/*
 * stress_fork.c: threads doing random malloc/calloc/realloc/aligned_alloc/
 * posix_memalign/free, with forks mixed in from any thread while the others
 * keep allocating.
 *
 * usage: stress_fork THREADS ROUNDS [SEED]
 *        stress_fork THREADS SECONDSs [SEED]   (a time budget: "5s", for soaks)
 *
 * Each thread does ROUNDS rounds of 50 random operations, each round
 * followed by a fork with 8 % chance (at most 12 per thread) or a
 * posix_spawn with 1 %. Each thread draws from its own generator, seeded
 * from SEED, so a count of rounds gives the same operations and the same
 * forks on a loaded machine as on an idle one (a time budget does not).
 *
 * Every block carries a fill pattern from its own seed, verified in full
 * before it is freed or resized (and a calloc'ed block is checked to be zero
 * first). Each thread owns its slots. A thread that forks waits for its child
 * before it touches its slots again, so what the child inherited from that
 * thread is stable in the parent: the child verifies all of it, then, unless
 * EXM_CHILD=shared (where the child's writes would reach the parent, by
 * design), overwrites, resizes and frees some of it; in every mode it runs
 * random operations of its own (a fresh arena), sometimes forks a grandchild
 * that verifies too, and exits. The parent then checks that its slots are
 * as it left them: a child's writes must not show through (cow, duplicate).
 * At the end everything is verified and freed, and exm_check runs.
 *
 * Prints "ops=N forks=N children_ok=N" and "stress_fork ok".
 */
#include "common.h"

#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#define SLOTS 48
#define MAX_THREADS 16

extern char **environ;

typedef struct tstate {
  int id;
  uint64_t rng;
  long ops, forks, children_ok, spawns;
  blk_t slot[SLOTS];
} tstate_t;

static volatile int stop;
static int shared_mode;      /* EXM_CHILD=shared: children only read and free */
static long max_forks_per_thread = 12;

static uint64_t rnd(tstate_t *t) { return xorshift64(&t->rng); }

static const size_band_t SIZES[] = {
    {450, 1, 256}, {700, 1, 4096}, {850, 4096, 60 * KiB}, {970, 64 * KiB, MiB}, {1000, MiB, 6 * MiB},
};

static size_t rand_size(tstate_t *t) { return band_size(SIZES, &t->rng); }

static void verify(tstate_t *t, blk_t *b, const char *what) {
  long long m = find_pattern_mismatch(b->p, b->n, b->seed);
  CHECK(m < 0, "pid %d thread %d: %s: block %p of %zu B (file-backed %d) corrupted at byte %lld", (int)getpid(), t->id,
        what, (void *)b->p, b->n, api_fb(b->p), m);
}

static void new_block(tstate_t *t, blk_t *b) {
  size_t n = rand_size(t);
  int how = (int)(rnd(t) % 10);
  unsigned char *p = NULL;
  if (how < 5) {
    p = malloc(n);
  } else if (how < 7) {
    p = calloc(1, n);
    CHECK(!p || find_nonzero(p, n) < 0, "calloc(%zu) not zeroed", n);
  } else if (how < 9) {
    size_t align = (size_t)16 << (rnd(t) % 9);           /* 16 .. 4096 */
    n = (n + align - 1) / align * align;
    p = aligned_alloc(align, n);
    CHECK(!p || (uintptr_t)p % align == 0, "aligned_alloc(%zu) misaligned", align);
  } else {
    size_t align = (size_t)4096 << (rnd(t) % 5);          /* 4 KiB .. 64 KiB */
    void *q = NULL;
    CHECK(posix_memalign(&q, align, n) == 0, "posix_memalign(%zu, %zu)", align, n);
    p = q;
    CHECK((uintptr_t)p % align == 0, "posix_memalign(%zu) misaligned", align);
  }
  CHECK(p, "allocation of %zu bytes failed (errno %d)", n, errno);
  b->p = p;
  b->n = n;
  b->seed = rnd(t);
  fill_pattern(p, n, b->seed);
}

static void free_block(tstate_t *t, blk_t *b, const char *what) {
  verify(t, b, what);
  free(b->p);
  b->p = NULL;
}

static void resize_block(tstate_t *t, blk_t *b) {
  verify(t, b, "before realloc");
  size_t n = rnd(t) % 2 ? rand_size(t) : b->n + rnd(t) % (b->n + 1);
  if (n == 0) n = 1;
  unsigned char *p = realloc(b->p, n);
  CHECK(p, "realloc(%zu -> %zu) failed", b->n, n);
  size_t keep = n < b->n ? n : b->n;
  long long m = find_pattern_mismatch(p, keep, b->seed);
  CHECK(m < 0, "thread %d: realloc %zu -> %zu lost data at byte %lld", t->id, b->n, n, m);
  b->p = p;
  b->n = n;
  b->seed = rnd(t);
  fill_pattern(p, n, b->seed);
}

static void random_ops(tstate_t *t, long count) {
  for (long i = 0; i < count; i++) {
    blk_t *b = &t->slot[rnd(t) % SLOTS];
    uint64_t op = rnd(t) % 10;
    if (!b->p) new_block(t, b);
    else if (op < 4) free_block(t, b, "before free");
    else if (op < 6) resize_block(t, b);
    else verify(t, b, "spot check");
    t->ops++;
  }
}

/* STRESS_CHILD=exit (the child ends at once) or verify (it only reads what
 * it inherited): narrower children, for telling a library bug's cause. */
static const char *child_kind;

/* In a forked child: the calling thread's inheritance, checked and used. */
static void child_work(tstate_t *t, int depth) {
  if (child_kind && !strcmp(child_kind, "exit")) return;
  if (child_kind && !strcmp(child_kind, "verify")) {
    for (int i = 0; i < SLOTS; i++)
      if (t->slot[i].p) verify(t, &t->slot[i], "child: inherited");
    return;
  }
  if (child_kind && !strcmp(child_kind, "free")) {      /* only frees what it inherited */
    for (int i = 0; i < SLOTS; i++)
      if (t->slot[i].p) free_block(t, &t->slot[i], "child: inherited, before free");
    return;
  }
  if (child_kind && !strcmp(child_kind, "ops")) {       /* only works on blocks of its own */
    memset(t->slot, 0, sizeof t->slot);
    random_ops(t, 300);
    for (int i = 0; i < SLOTS; i++)
      if (t->slot[i].p) free_block(t, &t->slot[i], "child: at exit");
    return;
  }
  for (int i = 0; i < SLOTS; i++)
    if (t->slot[i].p) verify(t, &t->slot[i], depth ? "grandchild: inherited" : "child: inherited");
  if (!shared_mode) {
    for (int i = 0; i < SLOTS; i++) {
      blk_t *b = &t->slot[i];
      if (!b->p) continue;
      switch (rnd(t) % 4) {
        case 0: b->seed = rnd(t); fill_pattern(b->p, b->n, b->seed); break;   /* private write */
        case 1: resize_block(t, b); break;
        case 2: free_block(t, b, "child: inherited, before free"); break;
        default: break;
      }
    }
  } else {
    for (int i = 0; i < SLOTS; i += 3)
      if (t->slot[i].p) free_block(t, &t->slot[i], "child: inherited, before free");
  }
  random_ops(t, 300);
  if (depth == 0 && rnd(t) % 4 == 0 && !(child_kind && !strcmp(child_kind, "nofork"))) {
    pid_t g = fork();
    CHECK(g >= 0, "fork in child");
    if (g == 0) {
      child_work(t, 1);
      _exit(0);
    }
    int st = 0;
    CHECK(waitpid(g, &st, 0) == g, "waitpid grandchild");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "grandchild failed (status 0x%x)", st);
  }
  for (int i = 0; i < SLOTS; i++)
    if (t->slot[i].p) free_block(t, &t->slot[i], "child: at exit");
  API_CHECK("child");
}

static void do_fork(tstate_t *t) {
  blk_t before[SLOTS];
  memcpy(before, t->slot, sizeof before);
  pid_t pid = fork();
  CHECK(pid >= 0, "fork: errno %d", errno);
  if (pid == 0) {
    stop = 1;   /* nothing else runs here: the other threads did not come along */
    child_work(t, 0);
    if (rnd(t) % 2) exit(0);
    _exit(0);
  }
  int st = 0;
  CHECK(waitpid(pid, &st, 0) == pid, "waitpid");
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "thread %d: child %d failed (status 0x%x)", t->id, (int)pid, st);
  t->forks++;
  t->children_ok++;
  CHECK(!memcmp(before, t->slot, sizeof before), "the parent's slot table changed across fork");
  for (int i = 0; i < SLOTS; i++)
    if (t->slot[i].p) verify(t, &t->slot[i], "parent: after its child ran");
}

static void do_spawn(tstate_t *t) {
  pid_t pid;
  char *argv[] = { "true", NULL };
  if (posix_spawnp(&pid, "true", NULL, NULL, argv, environ) == 0) {
    int st;
    waitpid(pid, &st, 0);
    t->spawns++;
  }
}

static long rounds = -1;     /* per thread; -1: until the time is up */

static void *worker(void *arg) {
  tstate_t *t = arg;
  for (long r = 0; rounds < 0 ? !stop : r < rounds; r++) {
    random_ops(t, 50);
    uint64_t r = rnd(t) % 100;
    if (r < 8 && t->forks < max_forks_per_thread) do_fork(t);
    else if (r == 8) do_spawn(t);
  }
  return NULL;
}

int main(int argc, char **argv) {
  api_init();
  int nthreads = argc > 1 ? atoi(argv[1]) : 4;
  const char *budget = argc > 2 ? argv[2] : "40";
  double seconds;
  parse_budget(budget, "ROUNDS", &rounds, &seconds);
  uint64_t seed = argc > 3 ? strtoull(argv[3], NULL, 0) : 0x9e3779b97f4a7c15ull;
  CHECK(nthreads >= 1 && nthreads <= MAX_THREADS, "1..%d threads", MAX_THREADS);
  const char *mode = getenv("EXM_CHILD");
  shared_mode = mode && !strcmp(mode, "shared");
  child_kind = getenv("STRESS_CHILD");
  static tstate_t ts[MAX_THREADS];
  pthread_t th[MAX_THREADS];
  for (int i = 0; i < nthreads; i++) {
    ts[i].id = i;
    ts[i].rng = mix64(seed + (uint64_t)i) | 1;
    CHECK(pthread_create(&th[i], NULL, worker, &ts[i]) == 0, "pthread_create");
  }
  if (rounds < 0) run_for(seconds, &stop);
  long ops = 0, forks = 0, ok = 0, spawns = 0;
  for (int i = 0; i < nthreads; i++) {
    pthread_join(th[i], NULL);
    for (int k = 0; k < SLOTS; k++)
      if (ts[i].slot[k].p) free_block(&ts[i], &ts[i].slot[k], "at the end");
    ops += ts[i].ops;
    forks += ts[i].forks;
    ok += ts[i].children_ok;
    spawns += ts[i].spawns;
  }
  API_CHECK("the end");
  printf("ops=%ld forks=%ld children_ok=%ld spawns=%ld\n", ops, forks, ok, spawns);
  printf("stress_fork ok\n");
  return 0;
}
