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
 * look (mincore; of a block over 1 GiB, a fixed sample of 4096 pages, each
 * new run checked behind at full resolution, so that a look, and with it
 * the time to react, costs the same at any size). Many separate new runs,
 * each costing a major fault, or runs of one page, mean random access: the
 * block gets MADV_RANDOM. Long runs of new pages while the block also loses
 * pages to reclaim mean a scan out of core: MADV_SEQUENTIAL. Blocks the
 * program advised itself are left alone. While the process takes major
 * faults fast on a block it made random, it counts the time (statistics)
 * and says once with --verbose why the program is slow.
 *
 * The thread does nothing while there are no major faults and the kernel
 * reclaims nothing (/proc/vmstat), sleeps at least four times as long as its
 * last look took (a period, unless a burst of major faults comes while a
 * block may still need random advice: then sooner), blocks every signal,
 * never allocates through malloc, and is not inherited by forked children
 * (they start their own when they need one).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <stdlib.h>

#include "advisor.h"
#include "block.h"
#include "core.h"
#include "exm.h"
#include "msg.h"
#include "options.h"
#include "os.h"

#define ADVISOR_MIN ((size_t)16 << 20)   /* blocks the advisor looks after */
#define PERIOD_NS 200000000L             /* between looks */
/* The sleep between looks is cut in slices of SLICE_NS, each ending with a
 * read of the process's major fault counter (getrusage: a microsecond or so).
 * A burst of major faults while a block may still need random advice wakes
 * the advisor early (see wait_for_look). */
#define SLICE_NS 25000000L
#define BURST 8                          /* major faults since the last look */
#define MAX_TRACKED 64
#define VEC_PAGES ((size_t)1 << 18)      /* mincore vector: 1 GiB per call */
/* A look at a block costs about the same whatever its size: a block of up to
 * VEC_PAGES pages (1 GiB) is looked at whole, in one mincore (~20 ms at
 * most here); a larger one at SAMPLES pages spread evenly over it (stride =
 * pages / SAMPLES, at least 64), always the same ones so that two looks can
 * be compared, one mincore each (~4 us a call here: about the same cost).
 * (One mincore over a whole 32 GiB block took ~0.6 s; the advisor then
 * slept four times that while each random fault read a whole read-around
 * window.) */
#define SAMPLES ((size_t)4096)
/* Next to the first new sample of each run (at most PROBES runs per look):
 * PROBE pages at full resolution on either side, to tell a stream (the
 * pages just before it are resident too) from isolated one-page faults
 * (they are not). */
#define PROBE ((size_t)64)
#define PROBES 16

/* A new run's new samples, first and last (sample indices). */
typedef struct span { size_t lo, hi; } span_t;

typedef struct tracked {
  size_t off, len;        /* the block, by offset in the arena */
  int advice;             /* what the advisor last gave it (0: nothing yet) */
  size_t stride;          /* pages between two samples (1: every page) */
  size_t nsamples;
  uint8_t *prev;          /* bitmap: samples resident at the last look */
  size_t prev_bytes;      /* its mapped size */
  int seen;               /* still live at this look */
  int looked;             /* looked at before (a first look only sets prev) */
  span_t runs[PROBES];    /* the new runs of the last look (the first PROBES) */
  int nruns;
  /* Isolated new runs (far from every new run of the look before: not a
   * stream going on) and major faults, summed over consecutive looks
   * while isolated runs outnumber continuing ones. */
  size_t iso_runs;
  uint64_t iso_faults;
} tracked_t;

static tracked_t track[MAX_TRACKED];
static int ntrack;
static unsigned char *vec;
static unsigned char probe_vec[PROBE];   /* the advisor's thread only */
static int started;           /* the thread runs (this process) */
static sigset_t program_mask; /* the mask of the thread that started it */
static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;
/* For the statistics (the advisor's thread writes, anyone reads): its work,
 * and the time the process spent taking major faults at RANDOM_RATE or more
 * while a block had random advice from it (a run slowed by random reads of
 * file-backed memory), with the faults and bytes read from disk meanwhile. */
#define RANDOM_RATE 100   /* major faults per second */
static uint64_t n_looks, n_pages_looked, n_look_ns, rnd_ns, rnd_faults, rnd_read;
static int rnd_told;

/* What one look found for a block, in samples (pages when stride is 1):
 * new_runs counts stretches of resident samples holding a new one; of the
 * probed runs, long_runs had the PROBE pages next to their first new sample
 * resident (a stream, or read-around), short_runs did not (one-page faults). */
typedef struct look {
  size_t new_pages, new_runs, gone_pages, long_runs, short_runs, looked;
  size_t isolated, continuing;   /* of the first PROBES new runs: see tracked_t */
} look_t;

/* Are the PROBE pages just before page `pg` of the block at `start` (a
 * stream going up), or else just after it (going down), resident? */
static int probe_stream(char *start, size_t pg, size_t pages, size_t *looked) {
  for (int side = 0; side < 2; side++) {
    size_t first = side == 0 ? pg - PROBE : pg + 1;
    if (side == 0 ? pg < PROBE : pg + 1 + PROBE > pages) continue;
    if (exm_os_mincore(start + first * EXM_PAGE, PROBE * EXM_PAGE, probe_vec)) return 0;
    *looked += PROBE;
    size_t resident = 0;
    for (size_t i = 0; i < PROBE; i++) resident += probe_vec[i] & 1;
    if (resident >= PROBE * 7 / 8) return 1;
  }
  return 0;
}

/* Is the run `s` within `near` samples of a new run of the look before? */
static int continues(const tracked_t *t, span_t s, size_t near) {
  for (int i = 0; i < t->nruns; i++) {
    span_t p = t->runs[i];
    size_t gap = s.lo > p.hi ? s.lo - p.hi : p.lo > s.hi ? p.lo - s.hi : 0;
    if (gap <= near) return 1;
  }
  return 0;
}

/* Of the new runs of this look: which go on from one of the last look
 * that saw any (a stream's front moves on from where it was: the next run
 * starts a sample or so past the last one's end), which are isolated
 * (random faults land anywhere: on a 8 GiB block one lands that near one
 * of the last look's few runs about once in 200). Then they become the
 * last look's. */
static void classify_runs(tracked_t *t, const span_t *runs, int n, look_t *r) {
  size_t near = t->nsamples / 1024 > 4 ? t->nsamples / 1024 : 4;
  for (int i = 0; i < n; i++) {
    if (continues(t, runs[i], near)) r->continuing++;
    else r->isolated++;
  }
  if (n == 0) return;
  memcpy(t->runs, runs, (size_t)n * sizeof *runs);
  t->nruns = n;
}

static look_t look_at(char *base, tracked_t *t) {
  look_t r = { 0, 0, 0, 0, 0, 0, 0, 0 };
  span_t runs[PROBES];
  int nruns = 0, cur = -1;   /* cur: the current stretch's entry in runs, if any */
  char *start = base + t->off;
  /* A run is a stretch of resident samples holding at least one new one:
   * samples still resident from an earlier phase do not cut a scan in
   * pieces. */
  int in_stretch = 0, stretch_new = 0;
  for (size_t first = 0; first < t->nsamples; first += VEC_PAGES) {
    size_t n = t->nsamples - first < VEC_PAGES ? t->nsamples - first : VEC_PAGES;
    if (t->stride == 1) {
      if (exm_os_mincore(start + first * EXM_PAGE, n * EXM_PAGE, vec)) return r;
    } else {
      for (size_t i = 0; i < n; i++)
        if (exm_os_mincore(start + (first + i) * t->stride * EXM_PAGE, EXM_PAGE, vec + i)) return r;
    }
    r.looked += n;
    for (size_t i = 0; i < n; i++) {
      size_t s = first + i;
      int now = vec[i] & 1, was = (t->prev[s >> 3] >> (s & 7)) & 1;
      if (!now) {
        in_stretch = 0;
        r.gone_pages += was;
      } else {
        if (!in_stretch) in_stretch = 1, stretch_new = 0, cur = -1;
        if (!was) {
          r.new_pages++;
          if (cur >= 0) runs[cur].hi = s;
          if (!stretch_new) {
            r.new_runs++, stretch_new = 1;
            if (nruns < PROBES) runs[cur = nruns++] = (span_t){ s, s };
            if (t->stride > 1 && r.long_runs + r.short_runs < PROBES) {
              if (probe_stream(start, s * t->stride, t->len / EXM_PAGE, &r.looked)) r.long_runs++;
              else r.short_runs++;
            }
          }
        }
      }
      if (now) t->prev[s >> 3] |= (uint8_t)(1u << (s & 7));
      else t->prev[s >> 3] &= (uint8_t)~(1u << (s & 7));
    }
  }
  classify_runs(t, runs, nruns, &r);
  return r;
}

static tracked_t *track_find(size_t off, size_t len) {
  for (int i = 0; i < ntrack; i++)
    if (track[i].off == off && track[i].len == len) return &track[i];
  if (ntrack == MAX_TRACKED) return NULL;
  size_t pages = len / EXM_PAGE;
  size_t stride = pages > VEC_PAGES ? pages / SAMPLES : 1;
  size_t nsamples = stride == 1 ? pages : SAMPLES;
  size_t bytes = (nsamples + 7) / 8;
  bytes = (bytes + EXM_PAGE - 1) & ~(EXM_PAGE - 1);
  uint8_t *bm = exm_os_anon(bytes);
  if (!bm) return NULL;
  track[ntrack] = (tracked_t){ .off = off, .len = len, .stride = stride, .nsamples = nsamples, .prev = bm, .prev_bytes = bytes };
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
  size_t n;
  if (exm_os_read_file(path, buf, size - 1, &n) || n == 0) return 0;
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

/* The process's major faults; *read: bytes it read from disk. */
static uint64_t major_faults(uint64_t *read) {
  struct rusage ru;
  exm_os_rusage(&ru);   /* zeros when the kernel will not tell */
  *read = (uint64_t)ru.ru_inblock * 512;
  return (uint64_t)ru.ru_majflt;
}

/* --verbose, once: the program is held up by random reads from disk. */
static void tell_random(uint64_t faults_per_s, uint64_t read_per_s, size_t block) {
  exm_line_t l = { .n = 0 };
  exm_line_str(&l, "exm: random reads from disk hold this program up: ");
  exm_line_u64(&l, faults_per_s);
  exm_line_str(&l, " major faults/s, ");
  exm_line_size(&l, read_per_s);
  exm_line_str(&l, "/s read back, in a block of ");
  exm_line_size(&l, block);
  exm_line_str(&l, " (random advice: each fault reads a page from the file, at the disk's random-read speed)");
  exm_line_emit(&l);
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

/* Could a look now make a block random? Not when every block we watch has
 * random advice from us already (nor when the advice is fixed). */
static int may_turn_random(void) {
  if (exm_cfg_advice() != EXM_ADVICE_AUTO) return 0;
  for (int i = 0; i < ntrack; i++)
    if (track[i].advice != EXM_ADVICE_RANDOM) return 1;
  return ntrack == 0;
}

/* Sleeps up to sleep_ns, in slices. Random reads that start on a block a
 * scan left sequential (or with the default read-around) read a whole
 * window per fault until the block is made random, and a whole period was
 * the time to notice: 200 ms of a 0.55 s random phase at 4 GiB, which ran at
 * a third of its later rate meanwhile (measured here: the switch came
 * 204-209 ms after the first random read). So once early_ns has passed since
 * the last look, BURST major faults since that look while a block may still
 * turn random end the sleep. A scan out of core takes almost none (its
 * faults find pages read ahead: 1 major fault in a 4 GiB scan, 15 000 in
 * 20 000 random reads after it). Returns whether it woke early. */
static int wait_for_look(uint64_t sleep_ns, uint64_t early_ns, uint64_t faults_looked) {
  uint64_t slept = 0;
  while (slept < sleep_ns) {
    uint64_t s = sleep_ns - slept < (uint64_t)SLICE_NS ? sleep_ns - slept : (uint64_t)SLICE_NS;
    exm_os_sleep_ns(s);
    slept += s;
    if (slept < early_ns || slept >= sleep_ns) continue;
    uint64_t read;
    if (major_faults(&read) - faults_looked >= BURST && may_turn_random()) return 1;
  }
  return 0;
}

static void *advisor_main(void *arg) {
  (void)arg;
  uint64_t read = 0, faults = major_faults(&read), scans = reclaim_scans(), look_ns = 0;
  /* Major faults at the last look: faults too few for a look in one period
   * add up to one in a few (one reader on a slow disk, each fault reading a
   * whole read-ahead window, makes only a few per period). */
  uint64_t faults_looked = faults;
  uint64_t last_ns = exm_os_now_ns();
  int first_look = 0;
  /* The least time between a look and an early one: SLICE_NS, doubled (up
   * to the period) after each early look that changed nothing, so that
   * faults no look can act on (a random phase on blocks already random: a
   * file of the program's) do not make the looks come faster than before;
   * back to SLICE_NS when faults stop or a look changes a block's advice. */
  uint64_t early_ns = SLICE_NS;
  for (;;) {
    /* A look costs ~20 ms per GiB of watched blocks: sleeping four times
     * that keeps the thread under a fifth of a core. After a block's first
     * look, which can only note what is resident (nothing was seen gone
     * yet), the next comes a quarter period later: a write front through a
     * 768 MiB block given MADV_HUGEPAGE (2 MiB folios) is over in 0.4-0.9 s,
     * and the third period came too late for it in about half the runs. */
    uint64_t period = first_look ? (uint64_t)PERIOD_NS / 4 : (uint64_t)PERIOD_NS;
    uint64_t sleep_ns = look_ns * 4 > period ? look_ns * 4 : period;
    first_look = 0;
    /* never sooner than four times the last look: the cost bound above */
    uint64_t soonest = look_ns * 4 > early_ns ? look_ns * 4 : early_ns;
    int early = wait_for_look(sleep_ns, soonest, faults_looked);
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
      exm_os_sigmask(&program_mask);
      exit(0);
    }
    uint64_t read_now, now = major_faults(&read_now), delta = now - faults, scanned = reclaim_scans();
    uint64_t reclaiming = scanned - scans >= 4096, read_delta = read_now - read;
    uint64_t now_ns = exm_os_now_ns(), interval_ns = now_ns - last_ns;
    faults = now;
    read = read_now;
    scans = scanned;
    last_ns = now_ns;
    /* Slowed by random reads: a fast fault rate while a block has random
     * advice from us (as of the last look). */
    size_t random_block = 0;
    for (int i = 0; i < ntrack; i++)
      if (track[i].advice == EXM_ADVICE_RANDOM && track[i].len > random_block) random_block = track[i].len;
    if (random_block && interval_ns && delta * 1000000000u >= (uint64_t)RANDOM_RATE * interval_ns) {
      __atomic_add_fetch(&rnd_ns, interval_ns, __ATOMIC_RELAXED);
      __atomic_add_fetch(&rnd_faults, delta, __ATOMIC_RELAXED);
      __atomic_add_fetch(&rnd_read, read_delta, __ATOMIC_RELAXED);
      if (exm_cfg.verbose && !rnd_told && rnd_ns >= 1000000000u) {
        rnd_told = 1;
        tell_random(rnd_faults * 1000000000u / rnd_ns, rnd_read * 1000000000u / rnd_ns, random_block);
      }
    }
    uint64_t since_look = now - faults_looked;
    if (since_look < BURST) early_ns = SLICE_NS;
    if ((since_look < BURST && !reclaiming) || exm_cfg_advice() != EXM_ADVICE_AUTO) continue;
    int changed = 0;
    faults_looked = now;
    delta = since_look;
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
      __atomic_add_fetch(&n_looks, 1, __ATOMIC_RELAXED);
      __atomic_add_fetch(&n_pages_looked, r.looked, __ATOMIC_RELAXED);
      /* A first look only notes what is resident: every resident stretch
       * is "new" to it, also the ones a fill left behind reclaim long ago,
       * and the faults it counts are the process's, not this block's (a
       * fill cut into 32 stretches, 32 faults elsewhere: random advice for a
       * block nobody read at random, tests/c/advisor_first.c). The next
       * look, a quarter period later, compares. */
      if (!t->looked) {
        t->looked = 1, first_look = 1;
        continue;
      }
      /* in pages (a sample stands for the stride of pages it starts) */
      size_t new_pages = r.new_pages * t->stride, gone_pages = r.gone_pages * t->stride;
      int advice = -1;
      /* Random: many separate runs, each costing a major fault (under the
       * default advice each fault's read-around makes one run of resident
       * samples), or, sampled, runs whose pages just before are not
       * resident: one-page faults. A scan gets SEQUENTIAL only out of core:
       * while the block loses pages (reclaim); in RAM it stays as it
       * started, with the kernel's default: there SEQUENTIAL only makes a
       * copy refault what it just wrote. Sampled, the probe must say stream
       * (a sample stands for many pages, so the pages-per-run test alone
       * would pass for isolated faults too). */
      /* The same summed over looks: a few isolated runs per look (one
       * random reader on a slow disk) add up, until a look sees more runs
       * going on from the look before than isolated ones (a stream). */
      if (r.continuing > r.isolated) t->iso_runs = 0, t->iso_faults = 0;
      else t->iso_runs += r.isolated, t->iso_faults += delta;
      if (r.new_runs >= 8 && delta >= r.new_runs / 2) advice = EXM_ADVICE_RANDOM;
      else if (t->iso_runs >= 8 && t->iso_faults >= t->iso_runs / 2) advice = EXM_ADVICE_RANDOM;
      else if (r.short_runs >= 2 && r.short_runs > r.long_runs && delta >= r.short_runs) advice = EXM_ADVICE_RANDOM;
      else if (new_pages >= 512 && new_pages / (r.new_runs ? r.new_runs : 1) >= 64 && gone_pages >= 256 &&
               (t->stride == 1 || r.long_runs > r.short_runs))
        advice = EXM_ADVICE_SEQUENTIAL;
      if (advice >= 0) {
        if (advice != t->advice) changed = 1;
        exm_arena_auto_advise(offs[i], lens[i], advice, 1);
        t->advice = advice;
        t->iso_runs = 0, t->iso_faults = 0;
      }
    }
    track_sweep();
    if (changed) early_ns = SLICE_NS;
    else if (early) early_ns = early_ns * 2 < (uint64_t)PERIOD_NS ? early_ns * 2 : (uint64_t)PERIOD_NS;
    look_ns = exm_os_now_ns() - t0;
    __atomic_add_fetch(&n_look_ns, look_ns, __ATOMIC_RELAXED);
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
    /* The default stack size (virtual: only what is touched costs): the
     * thread may end up running the program's exit handlers (above). */
    if (vec && !exm_os_thread(advisor_main, "exm-advisor", 0, &program_mask))
      __atomic_store_n(&started, 1, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&start_lock);
}

size_t exm_advisor_min(void) { return ADVISOR_MIN; }

void exm_advisor_report(exm_advisor_stats_t *s) {
  s->looks = __atomic_load_n(&n_looks, __ATOMIC_RELAXED);
  s->pages_looked = __atomic_load_n(&n_pages_looked, __ATOMIC_RELAXED);
  s->look_ns = __atomic_load_n(&n_look_ns, __ATOMIC_RELAXED);
  s->random_ns = __atomic_load_n(&rnd_ns, __ATOMIC_RELAXED);
  s->random_faults = __atomic_load_n(&rnd_faults, __ATOMIC_RELAXED);
  s->random_read = __atomic_load_n(&rnd_read, __ATOMIC_RELAXED);
}

/* In a forked child: the thread is not there, its state is the parent's. */
void exm_advisor_after_fork(void) {
  pthread_mutex_init(&start_lock, NULL);
  for (int i = 0; i < ntrack; i++) exm_os_unmap(track[i].prev, track[i].prev_bytes);
  ntrack = 0;
  started = 0;
  n_looks = n_pages_looked = n_look_ns = rnd_ns = rnd_faults = rnd_read = 0;
  rnd_told = 0;
}
