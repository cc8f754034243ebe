/*
 * ooc_common.h: the out-of-core workload shared by ooc.c (one block from
 * malloc, served by libexm) and rawmap.c (a plain MAP_SHARED file mapping,
 * no exm) -- same phases, same advice policies, same output.
 *
 * Phases, each timed:
 *   write  fill the region sequentially, 8-byte words of a known pattern;
 *   seq    read it back sequentially and check the sum;
 *   rand   R random 4 KiB reads (page-aligned offsets, the whole page read),
 *          stopped early after --rand-seconds; reported as reads/s;
 *   randT  with --threads T (T >= 2): R more random reads shared by T threads
 *          (R/T each, own seeds), stopped after --rand-seconds; reads/s.
 * write and seq also time each --step-mb (64 MiB) step: the median and the
 * worst step show a collapse (the page cache filling) that a mean hides.
 * --lever L[,L...]: what a pager could do behind or ahead of a sequential front,
 * done here by the workload at each step boundary (on the region's mapping
 * and its backing file), to measure it before the library does it:
 *   wb        sync_file_range(WRITE) of the step just written: writeback
 *             starts behind the write front, so reclaim finds clean pages;
 *   willneed  MADV_WILLNEED on the next step ahead of the scan;
 *   populate  MADV_POPULATE_READ of the next step ahead of the scan;
 *   cold      MADV_COLD on the step behind the scan (two steps back);
 *   pageout   MADV_PAGEOUT on the step behind the scan;
 *   dontneed  POSIX_FADV_DONTNEED on the backing range of the step behind.
 * --write-seconds / --seq-seconds stop a phase early (a slow backend such as
 * swap): the rate is then that of the part done, and the later phases use it.
 *
 * Policies (--policy NAME), all applied to the region only:
 *   none         nothing (exm: whatever EXM_ADVICE says; raw: kernel default)
 *   normal | sequential | random
 *                that madvise advice on the region before writing
 *   seq-rand     SEQUENTIAL for write and scan, RANDOM before the random reads
 *   fadv-random  mapping left NORMAL, posix_fadvise(fd, RANDOM) on the file
 *   rand-fadv-seq  MADV_RANDOM + posix_fadvise(fd, SEQUENTIAL)
 *   hugepage     MADV_HUGEPAGE (large folios, 2 MiB read-around)
 *   auto-switch  a helper thread flips the region between SEQUENTIAL and
 *                RANDOM: whenever the process took major faults since its last
 *                look, it compares the region's residency (mincore) with the
 *                previous scan; new resident runs that continue an already
 *                resident run mean a stream (SEQUENTIAL), runs that start
 *                after a non-resident page are jumps (RANDOM when there are
 *                at least 2 and more jumps than continuations)
 *   auto-seq     auto-switch starting from SEQUENTIAL (set before writing:
 *                faults on fresh pages are not major, so the helper does not
 *                look while a new block is being filled)
 *   auto-burst   auto-seq, and a burst of major faults (>= 50/s) while
 *                SEQUENTIAL switches to RANDOM at once (a stream under
 *                SEQUENTIAL takes almost none)
 *
 * Output: key=value lines (write_s, write_mbs, seq_s, seq_mbs, rand_reads,
 * rand_s, rand_per_s, majflt_*, sum_ok, policy, ...). Exit 0 on success, 2 on
 * a bad checksum, 1 on a usage or set-up error.
 */
#ifndef OOC_COMMON_H
#define OOC_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>

#include "../../tests/c/size.h"   /* parse_size, shared with the test programs */
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define PAGE 4096UL

typedef struct ooc_region {
  char *base;
  size_t len;
  int fd;       /* backing file, -1 if unknown */
  off_t off;    /* offset of base in the file */
} ooc_region_t;

/* Provided by the including file: how to apply an madvise advice to the
 * region (exm: exm_advise when available; raw: madvise). */
static int ooc_advise(ooc_region_t *r, int madv);

static struct {
  size_t size;
  long reads;
  double rand_seconds;
  double seq_seconds;   /* the scan stops early after this long (a cliff) */
  const char *policy;
  int scan_ms;
  unsigned seed;
  int verbose;
  int anon;     /* ooc.c: plain malloc without exm is fine (anonymous memory) */
  int threads;  /* the randT phase: 0 or 1 = not run */
  double write_seconds;
  size_t step;  /* bytes per timed step of write and seq */
  int wb, willneed, populate, cold, pageout, dontneed;   /* --lever */
} opt = { (size_t)1 << 30, 20000, 60.0, 60.0, "none", 50, 12345, 0, 0, 0, 1e9, (size_t)64 << 20,
          0, 0, 0, 0, 0, 0 };

#ifndef MADV_COLD
#define MADV_COLD 20
#endif
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

static void parse_levers(const char *v) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s", v);
  for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
    if (!strcmp(t, "wb")) opt.wb = 1;
    else if (!strcmp(t, "willneed")) opt.willneed = 1;
    else if (!strcmp(t, "populate")) opt.populate = 1;
    else if (!strcmp(t, "cold")) opt.cold = 1;
    else if (!strcmp(t, "pageout")) opt.pageout = 1;
    else if (!strcmp(t, "dontneed")) opt.dontneed = 1;
    else if (strcmp(t, "none")) { fprintf(stderr, "unknown lever %s\n", t); exit(1); }
  }
}

static void ooc_usage(const char *prog) {
  fprintf(stderr,
          "usage: %s [--size N[KMG]] [--reads R] [--rand-seconds S] [--seq-seconds S]\n"
          "          [--write-seconds S] [--threads T] [--step-mb M] [--policy P]\n"
          "          [--lever wb,willneed,populate,cold,pageout,dontneed]\n"
          "          [--scan-ms MS] [--seed N] [--verbose] [--anon]\n"
          "policies: none normal sequential random seq-rand fadv-random rand-fadv-seq\n"
          "          hugepage auto-switch auto-seq auto-burst\n",
          prog);
  exit(1);
}

static void ooc_parse(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--verbose")) { opt.verbose = 1; continue; }
    if (!strcmp(a, "--anon")) { opt.anon = 1; continue; }
    if (!v) ooc_usage(argv[0]);
    if (!strcmp(a, "--size")) opt.size = parse_size(v);
    else if (!strcmp(a, "--reads")) opt.reads = atol(v);
    else if (!strcmp(a, "--rand-seconds")) opt.rand_seconds = atof(v);
    else if (!strcmp(a, "--seq-seconds")) opt.seq_seconds = atof(v);
    else if (!strcmp(a, "--write-seconds")) opt.write_seconds = atof(v);
    else if (!strcmp(a, "--threads")) opt.threads = atoi(v);
    else if (!strcmp(a, "--step-mb")) opt.step = (size_t)atol(v) << 20;
    else if (!strcmp(a, "--lever")) parse_levers(v);
    else if (!strcmp(a, "--policy")) opt.policy = v;
    else if (!strcmp(a, "--scan-ms")) opt.scan_ms = atoi(v);
    else if (!strcmp(a, "--seed")) opt.seed = (unsigned)atol(v);
    else ooc_usage(argv[0]);
    i++;
  }
  opt.size &= ~(PAGE - 1);
  if (opt.size < PAGE || opt.step < PAGE || opt.threads < 0 || opt.threads > 64) ooc_usage(argv[0]);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static long majflt(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_majflt;
}

/* ---- the helper thread (auto-switch) ---------------------- */

enum { MODE_NONE, MODE_SEQ, MODE_RAND };

static struct {
  ooc_region_t *r;
  volatile int stop;
  pthread_t tid;
  long scans, switches;
  double scan_time;
  int mode;
  int burst;             /* SEQUENTIAL -> RANDOM on a major-fault burst alone */
} helper;

static void *helper_main(void *arg) {
  (void)arg;
  ooc_region_t *r = helper.r;
  size_t pages = r->len / PAGE;
  unsigned char *vec = malloc(pages), *prev = calloc(pages, 1);
  if (!vec || !prev) return NULL;
  long last_flt = majflt();
  int fresh = 0;         /* prev is the scan of the previous interval */
  double sleep_s = opt.scan_ms / 1e3;
  while (!helper.stop) {
    struct timespec ts = { (time_t)sleep_s, (long)((sleep_s - (time_t)sleep_s) * 1e9) };
    nanosleep(&ts, NULL);
    /* No major fault since the last look: nothing is being read from disk,
     * and no scan is needed (a program working in RAM never pays for one). */
    long flt = majflt();
    if (flt == last_flt) {
      fresh = 0;
      continue;
    }
    /* Under SEQUENTIAL a stream takes almost no major faults (readahead runs
     * ahead of it), so a burst of them means random access: switch at once,
     * without waiting for two scans. */
    if (helper.burst && helper.mode == MODE_SEQ && (flt - last_flt) / sleep_s >= 50) {
      ooc_advise(r, MADV_RANDOM);
      helper.mode = MODE_RAND;
      helper.switches++;
      if (opt.verbose) fprintf(stderr, "helper: rand (burst of %ld major faults)\n", flt - last_flt);
    }
    last_flt = flt;
    double t0 = now_s();
    if (mincore(r->base, r->len, vec)) break;
    /* New resident pages since the last scan, grouped into runs. A run that
     * starts right after a page that was already resident continues a
     * stream (sequential); one that starts after a non-resident page is a
     * jump (random access, or the first touch of a stream). */
    size_t jumps = 0, conts = 0, newp = 0;
    for (size_t i = 0; i < pages; i++) {
      if (!((vec[i] & 1) && !(prev[i] & 1))) continue;
      size_t j = i;
      while (j < pages && (vec[j] & 1) && !(prev[j] & 1)) j++;
      newp += j - i;
      if (i > 0 && (prev[i - 1] & 1)) conts++;
      else jumps++;
      i = j;
    }
    unsigned char *t = prev; prev = vec; vec = t;
    double dt = now_s() - t0;
    helper.scans++;
    helper.scan_time += dt;
    /* Keep the helper under ~20% of a core. */
    sleep_s = opt.scan_ms / 1e3 > 4 * dt ? opt.scan_ms / 1e3 : 4 * dt;
    if (!fresh) {
      fresh = 1;
      continue;
    }
    int rnd = jumps >= 2 && jumps > conts;
    int seq = !rnd && jumps == 0 && conts >= 1 && newp >= 64;
    int want = seq ? MODE_SEQ : rnd ? MODE_RAND : helper.mode;
    if (want != helper.mode) {
      ooc_advise(r, want == MODE_SEQ ? MADV_SEQUENTIAL : MADV_RANDOM);
      helper.mode = want;
      helper.switches++;
      if (opt.verbose)
        fprintf(stderr, "helper: %s (jumps=%zu conts=%zu new=%zu scan=%.1fms)\n",
                want == MODE_SEQ ? "seq" : "rand", jumps, conts, newp, dt * 1e3);
    }
  }
  free(vec);
  free(prev);
  return NULL;
}

static void helper_start(ooc_region_t *r, int mode) {
  helper.r = r;
  helper.mode = mode;
  if (pthread_create(&helper.tid, NULL, helper_main, NULL)) {
    perror("pthread_create");
    exit(1);
  }
}

/* ---- phases ---------------------------------------------------------------- */

#define PATTERN(i) ((uint64_t)(i) * 0x9E3779B97F4A7C15ULL + 1)

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Prints <name>_step_median_ms, _step_worst_ms, _step_worst_at (its index)
 * and _steps for n step times; the last, partial step is left out (its
 * time is not comparable). */
static void print_steps(const char *name, const double *t, size_t n) {
  if (n == 0) return;
  double *s = malloc(n * sizeof *s);
  if (!s) return;
  memcpy(s, t, n * sizeof *s);
  qsort(s, n, sizeof *s, cmp_double);
  size_t worst = 0;
  for (size_t i = 1; i < n; i++) if (t[i] > t[worst]) worst = i;
  printf("%s_steps=%zu\n%s_step_median_ms=%.2f\n%s_step_worst_ms=%.2f\n%s_step_worst_at=%zu\n",
         name, n, name, (n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2) * 1e3, name,
         t[worst] * 1e3, name, worst);
  free(s);
}

static uint64_t xorshift(uint64_t *x) {
  *x ^= *x << 13; *x ^= *x >> 7; *x ^= *x << 17;
  return *x;
}

/* One reader of the randT phase. */
typedef struct {
  ooc_region_t *r;
  size_t pages;
  long want, done;
  uint64_t seed, sum;
  double t0;
} reader_t;

static void *reader_main(void *arg) {
  reader_t *rd = arg;
  uint64_t x = rd->seed, sum = 0;
  long n = 0;
  for (; n < rd->want; n++) {
    size_t pg = (size_t)(xorshift(&x) % rd->pages);
    const uint64_t *q = (const uint64_t *)(rd->r->base + pg * PAGE);
    for (size_t k = 0; k < PAGE / 8; k++) sum += q[k];
    if ((n & 63) == 63 && now_s() - rd->t0 > opt.rand_seconds) { n++; break; }
  }
  rd->done = n;
  rd->sum = sum;
  return NULL;
}

static int ooc_run(ooc_region_t *r) {
  const char *p = opt.policy;
  int started_helper = 0;
  if (!strcmp(p, "none")) {
  } else if (!strcmp(p, "normal")) {
    ooc_advise(r, MADV_NORMAL);
  } else if (!strcmp(p, "sequential") || !strcmp(p, "seq-rand")) {
    ooc_advise(r, MADV_SEQUENTIAL);
  } else if (!strcmp(p, "random")) {
    ooc_advise(r, MADV_RANDOM);
  } else if (!strcmp(p, "fadv-random")) {
    ooc_advise(r, MADV_NORMAL);
    if (r->fd >= 0) posix_fadvise(r->fd, 0, 0, POSIX_FADV_RANDOM);
  } else if (!strcmp(p, "rand-fadv-seq")) {
    ooc_advise(r, MADV_RANDOM);
    if (r->fd >= 0) posix_fadvise(r->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  } else if (!strcmp(p, "hugepage")) {
    if (madvise(r->base, r->len, MADV_HUGEPAGE)) perror("madvise(MADV_HUGEPAGE)");
  } else if (!strcmp(p, "auto-switch")) {
    helper_start(r, MODE_NONE);
    started_helper = 1;
  } else if (!strcmp(p, "auto-seq") || !strcmp(p, "auto-burst")) {
    ooc_advise(r, MADV_SEQUENTIAL);
    helper.burst = !strcmp(p, "auto-burst");
    helper_start(r, MODE_SEQ);
    started_helper = 1;
  } else {
    fprintf(stderr, "unknown policy %s\n", p);
    return 1;
  }

  size_t words = r->len / 8, step = opt.step / 8;
  size_t nsteps = (words + step - 1) / step;
  double *wsteps = calloc(nsteps, sizeof *wsteps), *ssteps = calloc(nsteps, sizeof *ssteps);
  if (!wsteps || !ssteps) {
    fprintf(stderr, "out of memory for %zu step times\n", nsteps);
    return 1;
  }
  uint64_t *w = (uint64_t *)r->base;

  /* Write, step by step; --write-seconds stops it early (the later phases
   * then use the part written). */
  long f0 = majflt();
  double t0 = now_s(), tl = t0;
  size_t written = 0, nw = 0;
  while (written < words) {
    size_t end = written + step < words ? written + step : words;
    for (size_t i = written; i < end; i++) w[i] = PATTERN(i);
    if (opt.wb && r->fd >= 0)
      sync_file_range(r->fd, r->off + (off_t)(written * 8), (off_t)((end - written) * 8), SYNC_FILE_RANGE_WRITE);
    double t = now_s();
    if (end - written == step) wsteps[nw++] = t - tl;
    tl = t;
    written = end;
    if (t - t0 > opt.write_seconds) break;
  }
  double t1 = now_s();
  long f1 = majflt();
  size_t used = (written * 8) & ~(PAGE - 1);   /* bytes the later phases use */
  if (used < PAGE) used = PAGE;

  /* The scan checks the clock every 1 MiB and stops after --seq-seconds:
   * the checksum then covers the part read. */
  uint64_t sum = 0, expect = 0;
  size_t done = 0, mstep = (1 << 20) / 8, ns = 0, rwords = used / 8;
  double ts = t1;
  while (done < rwords) {
    size_t end = done + mstep < rwords ? done + mstep : rwords;
    for (size_t i = done; i < end; i++) sum += w[i];
    done = end;
    double t = now_s();
    if (done % step == 0) {
      ssteps[ns++] = t - ts;
      ts = t;
      size_t at = done * 8, sb = step * 8;   /* bytes: the front, a step */
      if ((opt.willneed || opt.populate) && at < used) {
        size_t n = at + sb <= used ? sb : used - at;
        if (madvise(r->base + at, n, opt.populate ? MADV_POPULATE_READ : MADV_WILLNEED) && opt.verbose)
          perror("madvise ahead");
      }
      if (at >= 2 * sb) {
        char *behind = r->base + at - 2 * sb;
        if (opt.cold) madvise(behind, sb, MADV_COLD);
        if (opt.pageout) madvise(behind, sb, MADV_PAGEOUT);
        if (opt.dontneed && r->fd >= 0)
          posix_fadvise(r->fd, r->off + (off_t)(at - 2 * sb), (off_t)sb, POSIX_FADV_DONTNEED);
      }
    }
    if (t - t1 > opt.seq_seconds) break;
  }
  double t2 = now_s();
  long f2 = majflt();
  for (size_t i = 0; i < done; i++) expect += PATTERN(i);

  if (!strcmp(p, "seq-rand")) ooc_advise(r, MADV_RANDOM);
  size_t pages = used / PAGE;
  uint64_t x = opt.seed * 2654435761ULL + 88172645463325252ULL, rsum = 0;
  long n = 0;
  double t3 = now_s(), t4 = t3;
  for (; n < opt.reads; n++) {
    size_t pg = (size_t)(xorshift(&x) % pages);
    const uint64_t *q = (const uint64_t *)(r->base + pg * PAGE);
    for (size_t k = 0; k < PAGE / 8; k++) rsum += q[k];
    if ((n & 63) == 63) {
      t4 = now_s();
      if (t4 - t3 > opt.rand_seconds) { n++; break; }
    }
  }
  t4 = now_s();
  long f3 = majflt();

  /* randT: the same number of reads again, shared by T threads (fresh
   * seeds: pages the single-threaded phase left resident are hit at the same
   * rate as any other). */
  long nt = 0, f4 = f3;
  double t5 = t4, t6 = t4;
  if (opt.threads >= 2) {
    reader_t rd[64];
    pthread_t tid[64];
    t5 = now_s();
    for (int i = 0; i < opt.threads; i++) {
      rd[i] = (reader_t){ r, pages, opt.reads / opt.threads, 0,
                          (opt.seed + 1000003ULL * (i + 1)) * 2654435761ULL + 88172645463325252ULL, 0, t5 };
      if (pthread_create(&tid[i], NULL, reader_main, &rd[i])) {
        perror("pthread_create");
        return 1;
      }
    }
    for (int i = 0; i < opt.threads; i++) {
      pthread_join(tid[i], NULL);
      nt += rd[i].done;
      rsum += rd[i].sum;
    }
    t6 = now_s();
    f4 = majflt();
  }

  if (started_helper) {
    helper.stop = 1;
    pthread_join(helper.tid, NULL);
  }

  printf("policy=%s\n", p);
  printf("size_bytes=%zu\n", r->len);
  printf("write_s=%.3f\nwrite_mbs=%.1f\nwrite_complete=%d\n", t1 - t0, written * 8 / 1e6 / (t1 - t0),
         written == words);
  printf("seq_s=%.3f\nseq_mbs=%.1f\nseq_complete=%d\n", t2 - t1, done * 8 / 1e6 / (t2 - t1),
         done == words);
  print_steps("write", wsteps, nw);
  print_steps("seq", ssteps, ns);
  printf("rand_reads=%ld\nrand_s=%.3f\nrand_per_s=%.1f\n", n, t4 - t3, n / (t4 - t3));
  if (opt.threads >= 2)
    printf("threads=%d\nrandT_reads=%ld\nrandT_s=%.3f\nrandT_per_s=%.1f\nmajflt_randT=%ld\n",
           opt.threads, nt, t6 - t5, nt / (t6 - t5), f4 - f3);
  printf("majflt_write=%ld\nmajflt_seq=%ld\nmajflt_rand=%ld\n", f1 - f0, f2 - f1, f3 - f2);
  printf("rand_sum=%llu\n", (unsigned long long)rsum);
  if (started_helper)
    printf("helper_scans=%ld\nhelper_switches=%ld\nhelper_scan_ms=%.2f\n",
           helper.scans, helper.switches,
           helper.scans ? helper.scan_time * 1e3 / helper.scans : 0.0);
  printf("sum_ok=%d\n", sum == expect);
  fflush(stdout);
  free(wsteps);
  free(ssteps);
  return sum == expect ? 0 : 2;
}

#endif
