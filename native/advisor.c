/*
 * advisor.c: EXM_ADVICE=auto, access advice that follows what the program
 * does.
 *
 * Out of core, no fixed advice is right (measured here, 4 GiB through a
 * 1 GiB cgroup): MADV_SEQUENTIAL and the default read-around make random
 * 4 KiB reads two orders of magnitude slower, because every fault reads a
 * whole read-ahead window (8 MiB or more); MADV_RANDOM makes every fault
 * read one page, so sequential writes and scans crawl; and MADV_SEQUENTIAL
 * in RAM makes a copy that reads back what it just wrote (bytearray * n)
 * refault every page. So a block of ADVISOR_MIN bytes or more starts with
 * the kernel's default advice, and a thread of ours, started with the first
 * such block, watches: when the process is taking major faults, it
 * compares which pages of each large block became resident since its last
 * look (mincore). Many separate new runs, each costing a major fault, mean
 * random access: the block gets MADV_RANDOM. Long runs of new pages while
 * the block also loses pages to reclaim mean a scan out of core:
 * MADV_SEQUENTIAL. Blocks the program advised itself are left alone.
 *
 * The thread does nothing while there are no major faults and the kernel
 * reclaims nothing (/proc/vmstat), sleeps at least
 * four times as long as its last look took, blocks every signal,
 * never allocates through malloc, and is not inherited by forked children
 * (they start their own when they need one).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "advisor.h"
#include "block.h"
#include "core.h"
#include "exm.h"
#include "options.h"
#include "os.h"

#define ADVISOR_MIN ((size_t)16 << 20)   /* blocks the advisor looks after */
#define PERIOD_NS 200000000L             /* between looks */
#define MAX_TRACKED 64
#define VEC_PAGES ((size_t)1 << 18)      /* mincore vector: 1 GiB per call */

typedef struct tracked {
  size_t off, len;        /* the block, by offset in the arena */
  uint8_t *prev;          /* bitmap: pages resident at the last look */
  size_t prev_bytes;      /* its mapped size */
  int seen;               /* still live at this look */
} tracked_t;

static tracked_t track[MAX_TRACKED];
static int ntrack;
static unsigned char *vec;
static int started;           /* the thread runs (this process) */
static sigset_t program_mask; /* the mask of the thread that started it */
static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;

/* What one look found for a block. */
typedef struct look { size_t new_pages, new_runs, gone_pages; } look_t;

static look_t look_at(char *base, tracked_t *t) {
  look_t r = { 0, 0, 0 };
  size_t pages = t->len / EXM_PAGE;
  /* A run is a stretch of resident pages holding at least one new page:
   * pages still resident from an earlier phase do not cut a scan in pieces. */
  int in_stretch = 0, stretch_new = 0;
  for (size_t first = 0; first < pages; first += VEC_PAGES) {
    size_t n = pages - first < VEC_PAGES ? pages - first : VEC_PAGES;
    if (mincore(base + t->off + first * EXM_PAGE, n * EXM_PAGE, vec)) return r;
    for (size_t i = 0; i < n; i++) {
      size_t pg = first + i;
      int now = vec[i] & 1, was = (t->prev[pg >> 3] >> (pg & 7)) & 1;
      if (!now) {
        in_stretch = 0;
        r.gone_pages += was;
      } else {
        if (!in_stretch) in_stretch = 1, stretch_new = 0;
        if (!was) {
          r.new_pages++;
          if (!stretch_new) r.new_runs++, stretch_new = 1;
        }
      }
      if (now) t->prev[pg >> 3] |= (uint8_t)(1u << (pg & 7));
      else t->prev[pg >> 3] &= (uint8_t)~(1u << (pg & 7));
    }
  }
  return r;
}

static tracked_t *track_find(size_t off, size_t len) {
  for (int i = 0; i < ntrack; i++)
    if (track[i].off == off && track[i].len == len) return &track[i];
  if (ntrack == MAX_TRACKED) return NULL;
  size_t bytes = (len / EXM_PAGE + 7) / 8;
  bytes = (bytes + EXM_PAGE - 1) & ~(EXM_PAGE - 1);
  uint8_t *bm = exm_os_anon(bytes);
  if (!bm) return NULL;
  track[ntrack] = (tracked_t){ off, len, bm, bytes, 0 };
  return &track[ntrack++];
}

static void track_sweep(void) {
  for (int i = 0; i < ntrack;) {
    if (track[i].seen) {
      track[i++].seen = 0;
      continue;
    }
    exm_os_unmap(track[i].prev, track[i].prev_bytes);
    track[i] = track[--ntrack];
  }
}

/* The start of a /proc file in buf, NUL-terminated; 0 when it cannot be read. */
static int read_proc(const char *path, char *buf, size_t size) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, size - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  return 1;
}

/* Are we the only thread left? /proc/self/stat: field 3 is the state of the
 * main thread (Z once it ended with pthread_exit; it still counts), field 20
 * the number of threads. */
static int alone(void) {
  char buf[1024];
  if (!read_proc("/proc/self/stat", buf, sizeof buf)) return 0;
  char *p = strrchr(buf, ')');   /* the command name may hold spaces */
  if (!p || p[1] != ' ') return 0;
  char state = p[2];
  for (int field = 2; p && field < 20; field++) p = strchr(p + 1, ' ');
  long threads = p ? strtol(p + 1, NULL, 10) : 0;
  return threads == 1 || (threads == 2 && state == 'Z');
}

static uint64_t major_faults(void) {
  struct rusage ru;
  return getrusage(RUSAGE_SELF, &ru) ? 0 : (uint64_t)ru.ru_majflt;
}

/* Pages the kernel scanned for reclaim, machine-wide (/proc/vmstat pgscan_*):
 * a fill out of core takes no major faults, but it makes the kernel reclaim.
 * Only a reason to look; what the look finds in our own blocks decides. */
static uint64_t reclaim_scans(void) {
  static char buf[16384];   /* the advisor's thread only */
  if (!read_proc("/proc/vmstat", buf, sizeof buf)) return 0;
  uint64_t sum = 0;
  for (char *p = buf; (p = strstr(p, "pgscan_")); p++) {
    if (p != buf && p[-1] != '\n') continue;
    char *v = strchr(p, ' ');
    if (v) sum += strtoull(v + 1, NULL, 10);
  }
  return sum;
}

static void *advisor_main(void *arg) {
  (void)arg;
  uint64_t faults = major_faults(), scans = reclaim_scans(), look_ns = 0;
  for (;;) {
    /* A look costs ~20 ms per GiB of watched blocks: sleeping four times
     * that keeps the thread under a fifth of a core. */
    uint64_t sleep_ns = look_ns * 4 > (uint64_t)PERIOD_NS ? look_ns * 4 : (uint64_t)PERIOD_NS;
    struct timespec ts = { (time_t)(sleep_ns / 1000000000u), (long)(sleep_ns % 1000000000u) };
    while (nanosleep(&ts, &ts) && errno == EINTR) {}
    look_ns = 0;
    /* The program's threads are all gone (main ended with pthread_exit):
     * end the process as the last of them would have, rather than keep it
     * alive for nothing. exit(0) is what glibc itself calls in the last
     * thread to end (start_thread), so atexit handlers and destructors run
     * as they would have; they run here on a stack of the default size and
     * with the signal mask the program had when the advisor started, not
     * with every signal blocked. No program thread is left that could race
     * with them. */
    if (alone()) {
      pthread_sigmask(SIG_SETMASK, &program_mask, NULL);
      exit(0);
    }
    uint64_t now = major_faults(), delta = now - faults, scanned = reclaim_scans();
    uint64_t reclaiming = scanned - scans >= 4096;
    faults = now;
    scans = scanned;
    if ((delta < 8 && !reclaiming) || exm_cfg.advice != EXM_ADVICE_AUTO) continue;
    /* Which large blocks are there? (offsets and lengths, under the lock) */
    uint64_t t0 = exm_os_now_ns();
    size_t offs[MAX_TRACKED], lens[MAX_TRACKED];
    int n = exm_arena_large_blocks(ADVISOR_MIN, offs, lens, MAX_TRACKED);
    char *base = exm_arena_base();
    for (int i = 0; i < n; i++) {
      tracked_t *t = track_find(offs[i], lens[i]);
      if (!t) continue;
      t->seen = 1;
      look_t r = look_at(base, t);
      int advice = -1;
      /* A scan gets SEQUENTIAL only out of core: while the block loses pages
       * (reclaim). In RAM it stays as it started, with the kernel's default:
       * there SEQUENTIAL only makes a copy refault what it just wrote. */
      if (r.new_runs >= 8 && delta >= r.new_runs / 2) advice = EXM_ADVICE_RANDOM;
      else if (r.new_pages >= 512 && r.new_pages / (r.new_runs ? r.new_runs : 1) >= 64 && r.gone_pages >= 256)
        advice = EXM_ADVICE_SEQUENTIAL;
      if (advice >= 0) exm_arena_auto_advise(offs[i], lens[i], advice, 1);
    }
    track_sweep();
    look_ns = exm_os_now_ns() - t0;
  }
  return NULL;
}

/* A block of `bytes` was just handed out under EXM_ADVICE=auto (called
 * without any arena lock held: starting a thread may allocate). */
void exm_advisor_block(size_t bytes) {
  if (bytes < ADVISOR_MIN || __atomic_load_n(&started, __ATOMIC_ACQUIRE)) return;
  pthread_mutex_lock(&start_lock);
  if (!started) {
    if (!vec) vec = exm_os_anon(VEC_PAGES);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    /* The default stack size (virtual: only what is touched costs): the
     * thread may end up running the program's exit handlers (below). */
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);   /* the thread inherits: every signal blocked */
    program_mask = old;
    pthread_t th;
    if (vec && !pthread_create(&th, &attr, advisor_main, NULL)) {
      pthread_setname_np(th, "exm-advisor");
      __atomic_store_n(&started, 1, __ATOMIC_RELEASE);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
  }
  pthread_mutex_unlock(&start_lock);
}

size_t exm_advisor_min(void) { return ADVISOR_MIN; }

/* In a forked child: the thread is not there, its state is the parent's. */
void exm_advisor_after_fork(void) {
  pthread_mutex_init(&start_lock, NULL);
  for (int i = 0; i < ntrack; i++) exm_os_unmap(track[i].prev, track[i].prev_bytes);
  ntrack = 0;
  started = 0;
}
