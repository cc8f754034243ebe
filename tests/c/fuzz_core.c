/*
 * fuzz_core.c: a fuzz target for the carving core (native/core.c), on a
 * plain 64 MiB buffer, no file, no kernel.
 *
 * The input is a little program: each operation takes its code and operands
 * from the next bytes (allocate with a size class, alignment and zero flag;
 * free; free through the out-of-lock path; resize in place; a bad free of an
 * interior or stale pointer; lookups; flush; a disk cap; commit failures
 * injected by a bit pattern). A shadow model checks everything the core
 * promises: blocks aligned, inside the range, not overlapping, usable size
 * at least what was asked, contents kept until free and across an in-place
 * resize, clean memory reading as zeros, disk committed exactly once and
 * given back exactly once, bad frees refused without harm, exm_core_check
 * consistent after every operation, and nothing committed once all is freed.
 *
 * Builds three ways:
 *  - libFuzzer:  clang -fsanitize=fuzzer,address,undefined fuzz_core.c ../../native/core.c
 *  - replay:     gcc -DFUZZ_MAIN -fsanitize=address,undefined ... ; fuzz_core FILE|DIR...
 *                (no argument: one input from stdin, AFL++ style)
 *  - random:     fuzz_core --random COUNT SEED MAXLEN [OUTDIR]: random inputs,
 *                each written to OUTDIR/current first, so the one that
 *                failed is there to keep (a poor man's fuzzer for machines
 *                without clang; bench/soak.ts uses it).
 */
#include "core_buffer.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define CAP ((size_t)64 << 20)
#define PAGES (CAP / EXM_PAGE)
#define MAXLIVE 256
#define MAXMETA 4096

static unsigned char *buf;
static unsigned char committed[PAGES];
static size_t committed_bytes;
static struct { void *p; size_t len; } meta[MAXMETA];
static int nmeta;
static uint64_t fail_bits;        /* commit k fails when bit (k % 64) is set */
static unsigned ncommit;
static int trace;                 /* FUZZ_TRACE=1: print each operation on stderr */
static int strict = 1;            /* FUZZ_STRICT=0: skip double frees of small chunks */
#define T(...) do { if (trace) fprintf(stderr, __VA_ARGS__); } while (0)

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("fuzz_core: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  abort();
}

/* ---- host ------------------------------------------------------------------ */

static int h_commit(void *ctx, size_t off, size_t len) {
  (void)ctx;
  if ((off | len) & (EXM_PAGE - 1) || !len || off + len > CAP) die("commit of a bad range %zu+%zu", off, len);
  if ((fail_bits >> (ncommit++ % 64)) & 1) return ENOMEM;
  for (size_t p = off / EXM_PAGE; p < (off + len) / EXM_PAGE; p++) {
    if (committed[p]) die("page %zu committed twice", p);
    committed[p] = 1;
  }
  committed_bytes += len;
  return 0;
}

static void h_decommit(void *ctx, size_t off, size_t len) {
  (void)ctx;
  if ((off | len) & (EXM_PAGE - 1) || !len || off + len > CAP) die("decommit of a bad range %zu+%zu", off, len);
  for (size_t p = off / EXM_PAGE; p < (off + len) / EXM_PAGE; p++) {
    if (!committed[p]) die("page %zu given back but not committed", p);
    committed[p] = 0;
  }
  committed_bytes -= len;
  /* A punched hole reads as zeros, as anonymous memory does after this. */
  madvise(buf + off, len, MADV_DONTNEED);
}

static void *h_meta_map(void *ctx, size_t len) {
  (void)ctx;
  if (nmeta == MAXMETA) return NULL;
  void *p = anon_map(len);
  if (!p) return NULL;
  meta[nmeta].p = p;
  meta[nmeta++].len = len;
  return p;
}

static void h_meta_unmap(void *ctx, void *p, size_t len) {
  (void)ctx;
  for (int i = 0; i < nmeta; i++)
    if (meta[i].p == p) {
      if (meta[i].len != len) die("meta unmap of %zu bytes, mapped %zu", len, meta[i].len);
      munmap(p, len);
      meta[i] = meta[--nmeta];
      return;
    }
  die("meta unmap of %p, never mapped", p);
}

/* ---- shadow -------------------------------------------------------------------- */

typedef struct { unsigned char *p; size_t n; uint8_t seed, small; } live_t;
static live_t live[MAXLIVE];
static int nlive;
static struct { unsigned char *p; int small; } stale[16];   /* freed pointers, for double frees */
static int nstale;

/* Pattern at sparse offsets in large blocks: every byte of the first and
 * last 64, then a stride (blocks may be megabytes). Small ones are filled
 * whole, so that no stale chunk header survives inside a live chunk. */
static inline size_t next_off(size_t i, size_t n) {
  if (n <= EXM_SMALL_MAX || i < 64 || i + 64 >= n) return i + 1;
  size_t s = i + 509;
  return s + 64 > n ? n - 64 : s;
}
static void fill(const live_t *b) {
  for (size_t i = 0; i < b->n; i = next_off(i, b->n)) b->p[i] = (unsigned char)(b->seed + i * 7);
}
static void verify(const live_t *b, size_t upto, const char *when) {
  for (size_t i = 0; i < upto; i = next_off(i, b->n))   /* the offsets fill() wrote */
    if (b->p[i] != (unsigned char)(b->seed + i * 7))
      die("block %p (%zu bytes) corrupted at %zu %s", (void *)b->p, b->n, i, when);
}

static void check(exm_core_t *c, const char *after) {
  char msg[200];
  if (exm_core_check(c, msg, sizeof msg)) die("exm_core_check after %s: %s", after, msg);
  if (c->st.committed != committed_bytes)
    die("after %s: core counts %llu bytes committed, host %zu", after, (unsigned long long)c->st.committed, committed_bytes);
}

static int walk_sum(void *ctx, size_t off, size_t len, int state) {
  (void)state;
  for (size_t p = off / EXM_PAGE; p < (off + len) / EXM_PAGE; p++)
    if (!committed[p]) die("walk reports %zu+%zu holding disk, page %zu is not committed", off, len, p);
  *(size_t *)ctx += len;
  return 0;
}

static void overlap_check(const unsigned char *p, size_t n) {
  for (int i = 0; i < nlive; i++)
    if (p < live[i].p + live[i].n && live[i].p < p + n)
      die("new block %p+%zu overlaps live %p+%zu", (void *)p, n, (void *)live[i].p, live[i].n);
}

/* ---- the input's program ------------------------------------------------------------ */

typedef struct { const uint8_t *p; size_t n; } in_t;
static unsigned get8(in_t *in) {
  if (!in->n) return 0;
  in->n--;
  return *in->p++;
}
static unsigned get16(in_t *in) { return get8(in) | get8(in) << 8; }

static size_t pick_size(in_t *in) {
  unsigned cls = get8(in);
  switch (cls % 8) {
    case 0: return get8(in) % 33;                              /* tiny, incl. 0 */
    case 1: case 2: return get16(in) % 1024;
    case 3: return get16(in) % 4096;                           /* just below a page */
    case 4: return EXM_PAGE * (1 + get8(in) % 16) + (get8(in) % 2 ? 0 : get16(in) % EXM_PAGE);
    case 5: return get16(in) % (1u << 16) * 16;                /* up to 1 MiB */
    case 6: return ((size_t)get16(in) << 8) % (8u << 20);      /* up to 8 MiB */
    default: return (size_t)(EXM_SEG_SIZE - 64 + get8(in));    /* around a segment */
  }
}

/* Allocate: size class, alignment and zero flag from the input; the block must
 * be aligned, inside the range, apart from every live one, at least as large
 * as asked, zero when clean, and on committed disk. */
static void op_alloc(exm_core_t *c, in_t *in) {
  size_t n = pick_size(in);
  unsigned a = get8(in);
  size_t align = a & 0x80 ? (size_t)16 << (a % 13) : 16;   /* 16 .. 64 KiB */
  int zero = a & 0x40 ? EXM_CORE_ZERO : 0, dirty = 0, err = 0;
  if (nlive == MAXLIVE) return;
  unsigned char *p = exm_core_alloc(c, n, align, zero, &dirty, &err);
  T("alloc %zu align %zu%s -> %s%zx\n", n, align, zero ? " zero" : "", p ? "+" : "NULL ", p ? (size_t)(p - buf) : 0);
  if (!p) {
    if (err != ENOMEM) die("allocation of %zu failed with %d, want ENOMEM", n, err);
    return;
  }
  if ((uintptr_t)p % (align < 16 ? 16 : align)) die("%zu bytes at %p not aligned to %zu", n, (void *)p, align);
  if (p < buf || p + n > buf + CAP) die("block %p+%zu outside the range", (void *)p, n);
  if (exm_core_usable(c, p) < n) die("usable %zu < %zu", exm_core_usable(c, p), n);
  overlap_check(p, n ? n : 1);
  if (!dirty)
    for (size_t k = 0; k < n; k = next_off(k, n))
      if (p[k]) die("clean block of %zu bytes not zero at %zu", n, k);
  for (size_t pg = (size_t)(p - buf) / EXM_PAGE; n && pg <= (size_t)(p - buf + n - 1) / EXM_PAGE; pg++)
    if (!committed[pg]) die("live block %p+%zu has uncommitted page %zu", (void *)p, n, pg);
  live[nlive] = (live_t){ p, n, (uint8_t)get8(in), n < EXM_SMALL_MAX && align < EXM_PAGE };
  fill(&live[nlive++]);
}

/* Free a live block, through exm_core_free or (op bit 0x10) the out-of-lock
 * path; it is remembered for a later double free. */
static void op_free(exm_core_t *c, in_t *in, unsigned op) {
  if (!nlive) return;
  int i = (int)(get8(in) % (unsigned)nlive);
  verify(&live[i], live[i].n, "before free");
  unsigned char *p = live[i].p;
  T("free%s +%zx (%zu)\n", op & 0x10 ? " (begin/end)" : "", (size_t)(p - buf), live[i].n);
  if (op & 0x10) {                              /* the out-of-lock path */
    exm_ext_t *busy = NULL;
    if (exm_core_free_begin(c, p, &busy)) die("free_begin of a live block refused");
    if (busy) {
      h_decommit(NULL, busy->off, busy->len);
      exm_core_free_end(c, busy);
    }
  } else if (exm_core_free(c, p)) {
    die("free of a live block refused");
  }
  live_t gone = live[i];
  live[i] = live[--nlive];
  live[nlive] = gone;
  stale[nstale % 16].p = p;
  stale[nstale++ % 16].small = live[nlive].small;   /* the freed entry, just moved out */
}

/* Resize a live block in place: contents kept, no live neighbour overrun; or ENOMEM. */
static void op_resize(exm_core_t *c, in_t *in) {
  if (!nlive) return;
  int i = (int)(get8(in) % (unsigned)nlive);
  size_t n = get8(in) % 2 ? pick_size(in) : live[i].n + get16(in);
  int r = exm_core_resize(c, live[i].p, n);
  T("resize +%zx %zu -> %zu: %d\n", (size_t)(live[i].p - buf), live[i].n, n, r);
  if (r == 0) {
    verify(&live[i], n < live[i].n ? n : live[i].n, "after an in-place resize");
    if (exm_core_usable(c, live[i].p) < n) die("usable below the resized size");
    for (int k = 0; k < nlive; k++)
      if (k != i && live[k].p < live[i].p + n && live[i].p < live[k].p + live[k].n) die("resize grew over a live block");
    live[i].n = n;
    fill(&live[i]);
  } else if (r != ENOMEM) {
    die("resize of a live block returned %d", r);
  }
}

/* Bad frees, of an interior pointer or a stale one: refused, and harmless. */
static void op_bad_free(exm_core_t *c, in_t *in) {
  unsigned k = get8(in);
  if (k & 1 && nlive) {
    live_t *b = &live[k % (unsigned)nlive];
    size_t off = b->n > 16 ? 16 * (1 + get16(in) % (b->n / 16)) : 0;
    T("bad free +%zx+%zu\n", (size_t)(b->p - buf), off);
    if (off && off < b->n && exm_core_free(c, b->p + off) == 0)
      die("free of interior pointer %p+%zu accepted", (void *)b->p, off);
  } else if (nstale) {
    int si = (int)(k % (unsigned)(nstale < 16 ? nstale : 16));
    unsigned char *p = stale[si].p;
    int is_live = 0;
    for (int i = 0; i < nlive; i++) is_live |= live[i].p == p;
    /* A small chunk's header is in band, and a later block may have
     * overwritten it with its own data; the segment's bitmap of live
     * chunk starts still refuses the stale pointer
     * (tests/fuzz/corpus/small-double-free-reused). */
    if (!strict && stale[si].small) is_live = 1;
    T("double free +%zx%s\n", (size_t)(p - buf), is_live ? " (live again: skipped)" : "");
    if (!is_live && exm_core_free(c, p) == 0) die("double free of %p accepted", (void *)p);
  }
}

/* A lookup anywhere inside a live block gives the block back. */
static void op_lookup(exm_core_t *c, in_t *in) {
  if (!nlive) return;
  live_t *b = &live[get8(in) % (unsigned)nlive];
  size_t off = b->n ? get16(in) % b->n : 0;
  void *base;
  size_t sz;
  if (!exm_core_find(c, b->p + off, &base, &sz, NULL) || base != b->p || sz < b->n)
    die("find(%p+%zu) did not give the block back", (void *)b->p, off);
}

/* After the last operation: the walk agrees with the host, everything can be
 * freed and all disk comes back; then fresh bookkeeping and zeroed memory for
 * the next input. */
static void finish_input(exm_core_t *c) {
  size_t walked = 0;
  exm_core_walk(c, walk_sum, &walked);
  if (walked != committed_bytes) die("walk sums %zu bytes, %zu committed", walked, committed_bytes);
  while (nlive) {
    verify(&live[nlive - 1], live[nlive - 1].n, "at the end");
    if (exm_core_free(c, live[--nlive].p)) die("final free refused");
  }
  exm_core_flush(c);
  check(c, "freeing everything");
  if (committed_bytes) die("%zu bytes still committed after freeing everything", committed_bytes);
  if (c->top) die("carved range not returned: top = %zu", c->top);
  /* Next input: fresh bookkeeping and zeroed memory. */
  while (nmeta) {
    munmap(meta[nmeta - 1].p, meta[nmeta - 1].len);
    nmeta--;
  }
  madvise(buf, (c->st.top_peak + EXM_PAGE - 1) & ~(EXM_PAGE - 1), MADV_DONTNEED);
}

static void run_input(const uint8_t *data, size_t size) {
  static exm_core_t core;
  exm_core_t *c = &core;
  exm_host_t host = { NULL, h_commit, h_decommit, h_meta_map, h_meta_unmap };
  exm_core_init(c, buf, CAP, &host);
  fail_bits = 0;
  ncommit = 0;
  nlive = nstale = 0;
  in_t in = { data, size };
  while (in.n) {
    unsigned op = get8(&in);
    switch (op % 12) {
      case 0: case 1: case 2: case 3: op_alloc(c, &in); break;
      case 4: case 5: op_free(c, &in, op); break;
      case 6: op_resize(c, &in); break;
      case 7: op_bad_free(c, &in); break;
      case 8: op_lookup(c, &in); break;
      case 9:
        T("flush\n");
        exm_core_flush(c);
        break;
      case 10: {                                        /* a disk cap */
        unsigned v = get8(&in);
        c->max_commit = v % 4 == 0 ? 0 : (size_t)(v % 64 + 1) << 20;
        T("max_commit %zu\n", c->max_commit);
        break;
      }
      default:                                          /* commit failures */
        fail_bits = (uint64_t)get16(&in) << (get8(&in) % 48);
        T("fail_bits %llx\n", (unsigned long long)fail_bits);
        break;
    }
    check(c, "an operation");
  }
  finish_input(c);
}

static void setup(void) {
  if (!buf) buf = core_buffer(CAP);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  setup();
  trace = getenv("FUZZ_TRACE") != NULL;
  const char *st = getenv("FUZZ_STRICT");
  strict = !st || strcmp(st, "0") != 0;
  run_input(data, size);
  return 0;
}

#ifdef FUZZ_MAIN
static uint8_t *read_all(FILE *f, size_t *len) {
  size_t cap = 4096, n = 0;
  uint8_t *d = malloc(cap);
  for (size_t r; d && (r = fread(d + n, 1, cap - n, f)) > 0;) {
    n += r;
    if (n == cap) d = realloc(d, cap *= 2);
  }
  *len = n;
  return d;
}

static int replay_path(const char *path) {
  struct stat st;
  if (stat(path, &st)) die("%s: %s", path, strerror(errno));
  if (S_ISDIR(st.st_mode)) {
    struct dirent **names;
    int n = scandir(path, &names, NULL, alphasort), count = 0;
    if (n < 0) die("%s: %s", path, strerror(errno));
    for (int i = 0; i < n; i++) {
      if (names[i]->d_name[0] != '.') {
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/%s", path, names[i]->d_name);
        count += replay_path(sub);
      }
      free(names[i]);
    }
    free(names);
    return count;
  }
  FILE *f = fopen(path, "rb");
  if (!f) die("%s: %s", path, strerror(errno));
  size_t len;
  uint8_t *d = read_all(f, &len);
  fclose(f);
  fprintf(stderr, "%s\n", path);   /* the last name printed is the one that failed */
  LLVMFuzzerTestOneInput(d, len);
  free(d);
  return 1;
}

static uint64_t rng;
static uint64_t rnd(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }

int main(int argc, char **argv) {
  if (argc >= 5 && !strcmp(argv[1], "--random")) {
    long count = atol(argv[2]);
    rng = strtoull(argv[3], NULL, 0) | 1;
    size_t maxlen = (size_t)atol(argv[4]);
    const char *outdir = argc > 5 ? argv[5] : ".";
    char cur[4096];
    snprintf(cur, sizeof cur, "%s/current", outdir);
    uint8_t *d = malloc(maxlen);
    for (long i = 0; i < count; i++) {
      size_t len = 1 + rnd() % maxlen;
      for (size_t k = 0; k < len; k++) d[k] = (uint8_t)rnd();
      FILE *f = fopen(cur, "wb");
      if (!f || fwrite(d, 1, len, f) != len || fclose(f)) die("cannot write %s", cur);
      LLVMFuzzerTestOneInput(d, len);
    }
    unlink(cur);
    free(d);
    printf("fuzz_core: %ld random inputs OK\n", count);
    return 0;
  }
  int n = 0;
  if (argc < 2) {
    size_t len;
    uint8_t *d = read_all(stdin, &len);
    LLVMFuzzerTestOneInput(d, len);
    n = 1;
  }
  for (int i = 1; i < argc; i++) n += replay_path(argv[i]);
  printf("fuzz_core: %d inputs OK\n", n);
  return 0;
}
#endif
