/*
 * punch.c: the disk of a freed large block is given back in the background.
 *
 * Punching a hole drops the block's pages from the page cache and frees its
 * extents in the filesystem: for a GiB that takes a few hundred ms (seconds
 * when the kernel's flusher has started writing the pages back: the punch
 * waits for that writeback), while glibc's free of the same block (munmap)
 * takes a few. So free() hands such a block, already out of the carving
 * core's lists (BUSY: neither free nor live), to a thread of ours, which
 * punches it and then, under the arena lock, files it as free space
 * (exm_core_free_end). Only the own arena's blocks go there: an inherited
 * arena's free punches nothing. The thread starts with the first such
 * free, blocks every signal, and ends after a second with nothing to do, so
 * it never keeps a process alive (main's pthread_exit) for long.
 *
 * The bound on the file (README, "Disk is given back"): at most QUEUE_MAX
 * blocks wait, and at most an eighth of the arena's live bytes (but 8 MiB
 * whatever the live bytes, and 4 GiB whatever they are), so that the disk
 * held for frees not yet given back stays a small part of what the program
 * uses even when the thread lags (a punch waits for the writeback of its
 * pages, which other jobs' writes slow down: a loaded machine had the disk at
 * 3.3x the live bytes with a fixed 4 GiB bound). One block may always wait.
 * Past the bound free() punches itself, without the arena lock. Whoever
 * needs the disk now drains the queue first, holding the arena lock: an
 * allocation that failed (a full disk, the --max-disk cap),
 * exm_get_stats and exm_check (so their figures count every free made so
 * far), malloc_trim. A drain takes the waiting blocks and punches them
 * itself, and waits only for the one the thread is punching (which holds no
 * lock meanwhile). So a full disk still gives ENOMEM only once nothing is
 * left to give back. At exit nothing is drained: closing the unlinked file
 * gives everything back, and the record at exit (read without locks, maybe
 * from a signal handler) counts what waits as given back.
 *
 * Fork: the queue's lock is taken after the arenas' locks (fork.c), so the
 * child finds the queue consistent, and no thread: the parent's thread goes
 * on punching the parent's blocks in the parent. A child of a process that
 * had other threads starts no thread of its own (exm_punch_child). In a
 * child that keeps the parent's range (cow, shared) those blocks stay BUSY
 * there (the parent owns them); a child whose own arena is the copy
 * (duplicate) files them as free space, which the copy never gave disk to
 * (exm_punch_child_own). A fork
 * from a signal handler takes the lock only if it is free; otherwise the
 * child leaves the queue alone (its arena is a view that takes no blocks).
 *
 * Locks: q_lock is taken after an arena lock, never before; the thread
 * holds no lock while it punches.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "os.h"
#include "punch.h"

#define QUEUE_MAX 256
#define PENDING_MIN ((size_t)8 << 20)
#define PENDING_MAX ((size_t)4 << 30)
#define IDLE_SECONDS 1

typedef struct job {
  exm_arena_t *arena;
  exm_ext_t *ext;
  size_t len;          /* ext->len when queued: exm_core_free_end may merge ext away */
} job_t;

static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_work = PTHREAD_COND_INITIALIZER;   /* a job was queued */
static pthread_cond_t q_idle = PTHREAD_COND_INITIALIZER;   /* the thread finished punching one */
static job_t queue[QUEUE_MAX];
static int q_head, q_count;
static size_t q_bytes;               /* queued, being punched, or punched and not yet filed */
static job_t running;                /* the one being punched; arena NULL when none */
static job_t done[QUEUE_MAX];        /* punched, waiting for exm_core_free_end */
static int n_done;
static int thread_up;
static int no_thread;                /* a child of a multi-threaded fork: free punches itself */

static void punch(const job_t *j) { exm_core_free_decommit(&j->arena->core, j->ext); }

/* Under a->lock and q_lock: file a's punched blocks as free space. */
static void finish_done(exm_arena_t *a) {
  int keep = 0;
  for (int i = 0; i < n_done; i++) {
    if (done[i].arena == a) {
      exm_core_free_end(&a->core, done[i].ext);
      __atomic_fetch_sub(&q_bytes, done[i].len, __ATOMIC_RELAXED);
    } else {
      done[keep++] = done[i];
    }
  }
  n_done = keep;
}

static void *punch_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&q_lock);
  for (;;) {
    while (!q_count && !n_done) {
      struct timespec until;
      clock_gettime(CLOCK_REALTIME, &until);
      until.tv_sec += IDLE_SECONDS;
      if (pthread_cond_timedwait(&q_work, &q_lock, &until) == ETIMEDOUT && !q_count && !n_done) {
        thread_up = 0;
        pthread_mutex_unlock(&q_lock);
        return NULL;
      }
    }
    if (q_count) {
      running = queue[q_head];
      q_head = (q_head + 1) % QUEUE_MAX;
      q_count--;
      pthread_mutex_unlock(&q_lock);
      punch(&running);
      pthread_mutex_lock(&q_lock);
      done[n_done++] = running;
      running.arena = NULL;
      pthread_cond_broadcast(&q_idle);
      continue;   /* punch everything waiting before taking an arena lock */
    }
    /* Nothing waits: file the punched blocks. The arena lock comes first
     * (the lock order), so q_lock is let go meanwhile, and a drain may have
     * filed them already: done[] is looked at again under both. */
    exm_arena_t *a = done[0].arena;
    pthread_mutex_unlock(&q_lock);
    pthread_mutex_lock(&a->lock);
    pthread_mutex_lock(&q_lock);
    finish_done(a);
    pthread_mutex_unlock(&a->lock);
  }
}

static int start_thread(void) {
  return exm_os_thread(punch_main, "exm-punch", 64 * 1024, NULL);
}

/* What may wait besides the first block, for an arena with `live` bytes. */
static size_t pending_bound(size_t live) {
  size_t b = live / 8;
  return b < PENDING_MIN ? PENDING_MIN : b > PENDING_MAX ? PENDING_MAX : b;
}

int exm_punch_later(exm_arena_t *a, exm_ext_t *busy, size_t live) {
  pthread_mutex_lock(&q_lock);
  if (no_thread || q_count + n_done + 1 >= QUEUE_MAX || (q_bytes && q_bytes + busy->len > pending_bound(live))) {
    pthread_mutex_unlock(&q_lock);
    return 0;
  }
  if (!thread_up) {
    /* pthread_create allocates: not under q_lock (its malloc may free,
     * and a free can come back here). */
    thread_up = 1;
    pthread_mutex_unlock(&q_lock);
    if (start_thread()) {
      pthread_mutex_lock(&q_lock);
      thread_up = 0;
      pthread_mutex_unlock(&q_lock);
      return 0;
    }
    pthread_mutex_lock(&q_lock);
  }
  queue[(q_head + q_count) % QUEUE_MAX] = (job_t){ a, busy, busy->len };
  q_count++;
  __atomic_fetch_add(&q_bytes, busy->len, __ATOMIC_RELAXED);
  pthread_cond_signal(&q_work);
  pthread_mutex_unlock(&q_lock);
  return 1;
}

size_t exm_punch_pending(void) { return __atomic_load_n(&q_bytes, __ATOMIC_RELAXED); }

void exm_punch_drain(exm_arena_t *a) {
  if (!exm_punch_pending()) return;
  pthread_mutex_lock(&q_lock);
  /* This arena's waiting blocks are ours to punch (the others stay queued,
   * in order); then the one the thread is on, and what it has punched. */
  job_t mine[QUEUE_MAX];
  int n = 0, keep = 0;
  for (int i = 0; i < q_count; i++) {
    job_t j = queue[(q_head + i) % QUEUE_MAX];
    if (j.arena == a) mine[n++] = j;
    else queue[(q_head + keep++) % QUEUE_MAX] = j;
  }
  q_count = keep;
  while (running.arena == a) pthread_cond_wait(&q_idle, &q_lock);
  finish_done(a);
  for (int i = 0; i < n; i++) {
    punch(&mine[i]);
    exm_core_free_end(&a->core, mine[i].ext);
    __atomic_fetch_sub(&q_bytes, mine[i].len, __ATOMIC_RELAXED);
  }
  pthread_mutex_unlock(&q_lock);
}

void exm_punch_fork_lock(void) { pthread_mutex_lock(&q_lock); }
int exm_punch_fork_trylock(void) { return !pthread_mutex_trylock(&q_lock); }
void exm_punch_fork_unlock(void) { pthread_mutex_unlock(&q_lock); }

/* The blocks a forked child found waiting, for exm_punch_child_own. */
static job_t orphans[2 * QUEUE_MAX + 1];
static int n_orphans;

void exm_punch_child(int took, int threaded) {
  n_orphans = 0;
  /* POSIX allows a child of a multi-threaded process only async-signal-safe
   * calls until it execs, and ThreadSanitizer refuses to start a thread
   * there: such a child gives its blocks' disk back in free, as glibc's
   * munmap would, without a thread. (glibc's fork leaves a child single-
   * threaded again, so its own children may have one.) */
  no_thread = threaded;
  if (!took) {
    /* The fork interrupted this thread inside the queue's lock: it finishes
     * when the signal handler returns. No thread here, whatever it finds. */
    __atomic_store_n(&thread_up, 0, __ATOMIC_RELAXED);
    return;
  }
  pthread_mutex_init(&q_lock, NULL);
  pthread_cond_init(&q_work, NULL);
  pthread_cond_init(&q_idle, NULL);
  for (int i = 0; i < q_count; i++) orphans[n_orphans++] = queue[(q_head + i) % QUEUE_MAX];
  for (int i = 0; i < n_done; i++) orphans[n_orphans++] = done[i];
  if (running.arena) orphans[n_orphans++] = running;
  q_head = q_count = n_done = 0;
  running.arena = NULL;
  __atomic_store_n(&q_bytes, 0, __ATOMIC_RELAXED);
  thread_up = 0;
}

void exm_punch_child_own(exm_arena_t *own) {
  for (int i = 0; i < n_orphans; i++)
    if (orphans[i].arena == own) exm_core_free_end(&own->core, orphans[i].ext);
  n_orphans = 0;
}
