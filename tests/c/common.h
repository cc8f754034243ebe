/*
 * common.h: shared helpers for the C test programs in tests/c/.
 *
 * Every program here must run both with and without libexm, so that a test
 * can compare "plain glibc" against "preloaded" with the very same binary.
 * The exm API is therefore reached through dlsym(RTLD_DEFAULT, ...): absent
 * when the library is not loaded, present when it is preloaded. Built with
 * -DEXM_LINKED (and -lexm), the program takes the addresses directly, so the
 * link-time way of use (fsmem style, no LD_PRELOAD) is exercised too.
 *
 * A driver that expects the library to be there sets EXM_TEST_REQUIRE_LIB=1:
 * a silently ignored preload then fails the program instead of passing it.
 *
 * Conventions: print what was measured on stdout as `key=value` lines, fail
 * with one line starting "FAIL" on stderr and exit status 1.
 */
#ifndef EXM_TEST_COMMON_H
#define EXM_TEST_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "exm.h"
#include "size.h"   /* parse_size, shared with the benchmark programs */

#define FAIL(...)                                                        \
  do {                                                                   \
    fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                 \
    fprintf(stderr, __VA_ARGS__);                                        \
    fputc('\n', stderr);                                                 \
    exit(1);                                                             \
  } while (0)

#define CHECK(cond, ...)                                                 \
  do {                                                                   \
    if (!(cond)) {                                                       \
      fprintf(stderr, "FAIL %s:%d: (%s) ", __FILE__, __LINE__, #cond);   \
      fprintf(stderr, __VA_ARGS__);                                      \
      fputc('\n', stderr);                                               \
      exit(1);                                                           \
    }                                                                    \
  } while (0)

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define GiB ((size_t)1 << 30)

/* ---- The exm API, when present ------------------------------------------ */

typedef struct test_api {
  int loaded;
#define API_FIELD(ret, name, params) ret(*name) params;
  EXM_FUNCTIONS(API_FIELD)
#undef API_FIELD
} test_api_t;

static test_api_t X;

#ifdef EXM_LINKED
#define API_SYM(field, name) X.field = &name
#else
#define API_SYM(field, name) *(void **)(&X.field) = dlsym(RTLD_DEFAULT, #name)
#endif

/* Fills X. Call first thing in main. */
static __attribute__((unused)) void api_init(void) {
  setvbuf(stdout, NULL, _IOLBF, 0); /* forked children must not repeat output */
#define API_LOAD(ret, name, params) API_SYM(name, exm_##name);
  EXM_FUNCTIONS(API_LOAD)
#undef API_LOAD
  X.loaded = X.get_threshold != NULL && X.is_file_backed != NULL;
  const char *req = getenv("EXM_TEST_REQUIRE_LIB");
  if (req && *req && strcmp(req, "0") != 0 && !X.loaded)
    FAIL("EXM_TEST_REQUIRE_LIB is set but libexm is not loaded (preload ignored?)");
  printf("lib=%d\n", X.loaded);
}

/* The threshold in force: SIZE_MAX ("nothing is file-backed") without exm. */
static __attribute__((unused)) size_t api_threshold(void) { return X.loaded ? X.get_threshold() : SIZE_MAX; }

static __attribute__((unused)) int api_fb(const void *p) { return X.loaded ? X.is_file_backed(p) : 0; }

/* The disk a file holds (its allocated blocks), in bytes. */
static __attribute__((unused)) size_t file_bytes(int fd) {
  struct stat st;
  CHECK(fstat(fd, &st) == 0, "fstat(%d): %s", fd, strerror(errno));
  return (size_t)st.st_blocks * 512;
}

/* Wait for the child pid, which must exit 0; `how` names it in a failure. */
static __attribute__((unused)) void wait_child(pid_t pid, const char *how) {
  int status;
  CHECK(waitpid(pid, &status, 0) == pid, "%s: waitpid", how);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: child status 0x%x", how, status);
}

/* Must the arena serve a plain malloc of `size` bytes? -1: no rule applies. */
static __attribute__((unused)) int must_be_fb(size_t size) {
  if (!X.loaded) return 0;
  size_t t = X.get_threshold();
  if (size == 0) return -1; /* malloc(0) may go either way */
  return size >= t ? 1 : 0;
}

/* Asserts the arena/glibc placement of `p`, a fresh block of `size` bytes. */
#define EXPECT_PLACED(p, size, what)                                                   \
  do {                                                                                 \
    int want_ = must_be_fb(size);                                                      \
    if (want_ >= 0) {                                                                  \
      int got_ = api_fb(p);                                                            \
      CHECK(got_ == want_, "%s: size %zu at threshold %zu: file_backed=%d, want %d",   \
            (what), (size_t)(size), api_threshold(), got_, want_);                     \
    }                                                                                  \
  } while (0)

/* exm_check when available; a failure ends the program. */
#define API_CHECK(what)                                                   \
  do {                                                                    \
    if (X.check) {                                                        \
      int rc_ = X.check();                                                \
      CHECK(rc_ == 0, "exm_check() = %d after %s", rc_, (what));          \
    }                                                                     \
  } while (0)

/* ---- Small utilities ------------------------------------------------------ */

static __attribute__((unused)) uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Resident set size in bytes (/proc/self/statm, second field). */
static __attribute__((unused)) size_t rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long size = 0, res = 0;
  if (!f) return 0;
  if (fscanf(f, "%lu %lu", &size, &res) != 2) res = 0;
  fclose(f);
  return res * (size_t)sysconf(_SC_PAGESIZE);
}

/* splitmix64: a cheap, well-mixed pattern generator. */
static inline uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/* Byte i of the pattern `seed`: cheap enough for multi-MiB blocks. */
static inline unsigned char pat_byte(uint64_t seed, size_t i) {
  return (unsigned char)(mix64(seed ^ (i >> 3)) >> ((i & 7) * 8));
}

static __attribute__((unused)) void fill_pattern(void *p, size_t n, uint64_t seed) {
  unsigned char *b = p;
  size_t words = n / 8;
  for (size_t w = 0; w < words; w++) {
    uint64_t v = mix64(seed ^ w);
    memcpy(b + w * 8, &v, 8);
  }
  for (size_t i = words * 8; i < n; i++) b[i] = pat_byte(seed, i);
}

/* Offset of the first byte that differs from the pattern, or -1. */
static __attribute__((unused)) long long find_pattern_mismatch(const void *p, size_t n, uint64_t seed) {
  const unsigned char *b = p;
  size_t words = n / 8;
  for (size_t w = 0; w < words; w++) {
    uint64_t v = mix64(seed ^ w), got;
    memcpy(&got, b + w * 8, 8);
    if (got != v) {
      for (size_t i = w * 8; i < w * 8 + 8; i++)
        if (b[i] != pat_byte(seed, i)) return (long long)i;
    }
  }
  for (size_t i = words * 8; i < n; i++)
    if (b[i] != pat_byte(seed, i)) return (long long)i;
  return -1;
}

#define CHECK_PATTERN(p, n, seed, what)                                                  \
  do {                                                                                   \
    long long off_ = find_pattern_mismatch((p), (n), (seed));                            \
    CHECK(off_ < 0, "%s: pattern mismatch at byte %lld of %zu (block %p)", (what), off_, \
          (size_t)(n), (void *)(p));                                                     \
  } while (0)

/* Offset of the first non-zero byte, or -1. */
static __attribute__((unused)) long long find_nonzero(const void *p, size_t n) {
  const unsigned char *b = p;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v;
    memcpy(&v, b + i, 8);
    if (v) break;
  }
  for (; i < n; i++)
    if (b[i]) return (long long)i;
  return -1;
}

/* ---- Random blocks, for the stress programs -------------------------------- */

/* xorshift64: the sequence that picks sizes, slots and operations, so that a
 * seed gives the same run on a loaded machine as on an idle one. */
static inline uint64_t xorshift64(uint64_t *x) {
  *x ^= *x << 13;
  *x ^= *x >> 7;
  *x ^= *x << 17;
  return *x;
}

/* A block under test: where, how large, and the seed of the pattern it holds. */
typedef struct blk {
  unsigned char *p;
  size_t n;
  uint64_t seed;
} blk_t;

/* One band of a size distribution: a draw below `permille` (of 1000, the
 * bands in rising order, the last at 1000) gives base + a second draw % span. */
typedef struct size_band {
  unsigned permille;
  size_t base, span;
} size_band_t;

static __attribute__((unused)) size_t band_size(const size_band_t *bands, uint64_t *rng) {
  uint64_t r = xorshift64(rng) % 1000;
  while (r >= bands->permille) bands++;
  return bands->base + xorshift64(rng) % bands->span;
}

/* A stress program's budget: "N", a count (*count = N), or "Ns", seconds
 * (*count = -1: until the time is up, see run_for). `unit` names the count
 * in the line that refuses a bad budget. */
static __attribute__((unused)) void parse_budget(const char *budget, const char *unit, long *count, double *seconds) {
  *count = -1;
  *seconds = 0;
  if (budget[0] && budget[strlen(budget) - 1] == 's') *seconds = atof(budget);
  else *count = atol(budget);
  CHECK(*count > 0 || *seconds > 0, "bad budget %s (%s or SECONDSs)", budget, unit);
}

/* The time budget: sleeps `seconds`, then tells the threads to stop. */
static __attribute__((unused)) void run_for(double seconds, volatile int *stop) {
  struct timespec d = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
  nanosleep(&d, NULL);
  *stop = 1;
}

/* ---- Forked workers, as R's mclapply runs them ----------------------------- */

#define MAX_WORKERS 16

/* Worker w's share [*lo, *hi) of n items among nw; the last takes the rest. */
static inline void share_of(size_t n, int nw, int w, size_t *lo, size_t *hi) {
  *lo = n / (size_t)nw * (size_t)w;
  *hi = w == nw - 1 ? n : n / (size_t)nw * (size_t)(w + 1);
}

typedef uint64_t (*worker_fn)(int w, int nw);

/* Forks nw workers: worker w computes work(w, nw) over what it inherited
 * and sends it back through a pipe; the parent computes the same itself once
 * the worker has exited, prints both and compares. together: every worker
 * waits until all are forked, so that all are alive at once. A worker that
 * fails (killed, by its alarm after alarm_s too, or no answer) ends the
 * program. Returns how many answers were wrong. */
static __attribute__((unused)) int fork_workers(int nw, worker_fn work, unsigned alarm_s, int together) {
  CHECK(nw >= 1 && nw <= MAX_WORKERS, "bad worker count %d", nw);
  int go[2], fd[MAX_WORKERS][2];
  pid_t pid[MAX_WORKERS];
  CHECK(pipe(go) == 0, "pipe");
  for (int w = 0; w < nw; w++) {
    CHECK(pipe(fd[w]) == 0, "pipe");
    fflush(NULL);
    pid[w] = fork();
    CHECK(pid[w] >= 0, "fork: %s", strerror(errno));
    if (pid[w] == 0) {
      alarm(alarm_s);
      close(go[1]);
      char c;
      if (together && read(go[0], &c, 1) < 0) _exit(3);  /* the parent closes go once all are forked */
      uint64_t s = work(w, nw);
      if (write(fd[w][1], &s, sizeof s) != sizeof s) _exit(2);
      _exit(0);
    }
    close(fd[w][1]);
  }
  close(go[0]);
  close(go[1]);
  int bad = 0;
  for (int w = 0; w < nw; w++) {
    uint64_t got = 0;
    ssize_t r = read(fd[w][0], &got, sizeof got);
    close(fd[w][0]);
    int status;
    CHECK(waitpid(pid[w], &status, 0) == pid[w], "waitpid");
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0 && r == sizeof got,
          "worker %d failed: status 0x%x, read %zd", w, status, r);
    uint64_t want = work(w, nw);
    printf("worker %d: sum=%016" PRIx64 " want=%016" PRIx64 "\n", w, got, want);
    bad += got != want;
  }
  return bad;
}

/* Hides a value from the optimizer (no folding of sizes known to overflow). */
static inline size_t opaque(size_t v) {
  volatile size_t x = v;
  return x;
}

/* The advice the kernel holds for the mapping holding p, from its VmFlags in
 * /proc/self/smaps: "sr" (sequential), "rr" (random) or "--" (neither). */
/* The VmFlags line of the mapping holding p (/proc/self/smaps), or "". */
static inline const char *vmflags_of(const void *p) {
  static char out[512];
  FILE *f = fopen("/proc/self/smaps", "r");
  CHECK(f, "cannot open smaps");
  char line[512];
  int inside = 0;
  out[0] = 0;
  while (fgets(line, sizeof line, f)) {
    uintptr_t lo, hi;
    if (line[0] != 'V' && sscanf(line, "%" SCNxPTR "-%" SCNxPTR " ", &lo, &hi) == 2) {
      inside = (uintptr_t)p >= lo && (uintptr_t)p < hi;
      continue;
    }
    if (inside && !strncmp(line, "VmFlags:", 8)) {
      strcpy(out, line + 8);
      break;
    }
  }
  fclose(f);
  return out;
}

/* Does the mapping holding p carry the VmFlags flag (two letters)? */
static inline int has_vmflag(const void *p, const char *flag) {
  const char *flags = vmflags_of(p);
  for (const char *s = flags; (s = strstr(s, flag)); s++)
    if ((s == flags || s[-1] == ' ') && (s[2] == ' ' || s[2] == '\n' || s[2] == 0)) return 1;
  return 0;
}

/* The access advice of the mapping holding p: "sr" sequential, "rr" random, "--" neither. */
static inline const char *advice_of(const void *p) {
  return has_vmflag(p, "sr") ? "sr" : has_vmflag(p, "rr") ? "rr" : "--";
}

/* How many mappings the process has (lines of /proc/self/maps). */
static inline int count_maps(void) {
  FILE *f = fopen("/proc/self/maps", "r");
  CHECK(f, "fopen maps");
  int n = 0, c;
  while ((c = fgetc(f)) != EOF) n += c == '\n';
  fclose(f);
  return n;
}

#endif
