/*
 * core_unit.c: the carving core on a plain buffer, no file, no kernel.
 *
 * A random sequence of allocations, frees and in-place resizes runs against
 * a shadow model (every live block carries a fill pattern that must survive
 * until it is freed), with the host callbacks checking that disk is
 * committed exactly once and given back exactly once, and a full
 * consistency walk (exm_core_check) after every operation.
 *
 * usage: core_unit [operations] [seed]
 */
#include "core_buffer.h"

#define CAP ((size_t)512 << 20)
#define MAXLIVE 400

static unsigned char *buf;
static unsigned char committed[CAP / EXM_PAGE];
static size_t meta_bytes;
static uint64_t rng_state;

static uint64_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

#define DIE(...) do { fprintf(stderr, "core_unit: " __VA_ARGS__); fputc('\n', stderr); exit(1); } while (0)

static int h_commit(void *ctx, size_t off, size_t len) {
  (void)ctx;
  if ((off | len) & (EXM_PAGE - 1) || off + len > CAP) DIE("commit of bad range %zu+%zu", off, len);
  for (size_t p = off / EXM_PAGE; p < (off + len) / EXM_PAGE; p++) {
    if (committed[p]) DIE("page %zu committed twice", p);
    committed[p] = 1;
  }
  return 0;
}

static void h_decommit(void *ctx, size_t off, size_t len) {
  (void)ctx;
  for (size_t p = off / EXM_PAGE; p < (off + len) / EXM_PAGE; p++) {
    if (!committed[p]) DIE("page %zu given back but not committed", p);
    committed[p] = 0;
  }
  memset(buf + off, 0, len);  /* a punched hole reads as zeros */
}

static void *h_meta_map(void *ctx, size_t len) {
  (void)ctx;
  void *p = anon_map(len);
  if (!p) return NULL;
  meta_bytes += len;
  return p;
}

static void h_meta_unmap(void *ctx, void *p, size_t len) {
  (void)ctx;
  munmap(p, len);
  meta_bytes -= len;
}

typedef struct { unsigned char *p; size_t n; unsigned char seed; } live_t;
static live_t live[MAXLIVE];
static int nlive;

static void fill(live_t *b) { for (size_t i = 0; i < b->n; i += (i < 64 ? 1 : i < 65536 ? 61 : 4093)) b->p[i] = (unsigned char)(b->seed + i); }
static void verify(const live_t *b, size_t upto, const char *when) {
  for (size_t i = 0; i < upto; i += (i < 64 ? 1 : i < 65536 ? 61 : 4093))
    if (b->p[i] != (unsigned char)(b->seed + i)) DIE("block %p (%zu bytes) corrupted at %zu %s", (void *)b->p, b->n, i, when);
}

static size_t pick_size(void) {
  switch (rnd() % 10) {
    case 0: return rnd() % 17;
    case 1: case 2: case 3: return rnd() % 512;
    case 4: case 5: return rnd() % 4096;
    case 6: return 4096 * (1 + rnd() % 8) + (rnd() % 2 ? 0 : rnd() % 4096);
    case 7: return rnd() % (256 << 10);
    case 8: return rnd() % (2 << 20);
    default: return rnd() % (12 << 20);
  }
}

#define MAXBUSY 3
static exm_ext_t *busy[MAXBUSY];
static int nbusy;

static void finish_busy(exm_core_t *c, int k) {
  h_decommit(NULL, busy[k]->off, busy[k]->len);
  exm_core_free_end(c, busy[k]);
  busy[k] = busy[--nbusy];
}

/* The last blocks freed, to check that the lock-free peek refuses them. */
#define NFREED 64
static unsigned char *freed[NFREED];
static int freed_at;
static void note_freed(unsigned char *p) { freed[freed_at++ % NFREED] = p; }
static void note_reused(unsigned char *p) {
  for (int k = 0; k < NFREED; k++)
    if (freed[k] == p) freed[k] = NULL;
}

static void check(exm_core_t *c, long step) {
  char msg[160];
  if (exm_core_check(c, msg, sizeof msg)) DIE("step %ld: exm_core_check: %s", step, msg);
  /* exm_core_small_peek (the per-thread cache's free, without the lock)
   * must know every live small chunk by its size, and nothing else: not a
   * page-aligned block, not a pointer into a chunk, not a freed block */
  for (int i = 0; i < nlive; i++) {
    unsigned char *p = live[i].p;
    size_t pk = exm_core_small_peek(c, p);
    if (!((uintptr_t)p & (EXM_PAGE - 1))) {
      if (pk) DIE("step %ld: peek at the page-aligned block %p gave %zu", step, (void *)p, pk);
      continue;
    }
    if (pk != exm_core_usable(c, p) + 8) DIE("step %ld: peek at the small block %p gave %zu, usable %zu", step, (void *)p, pk, exm_core_usable(c, p));
    if (exm_core_small_peek(c, p + 16)) DIE("step %ld: peek accepted the interior pointer %p", step, (void *)(p + 16));
  }
  for (int k = 0; k < NFREED; k++)
    if (freed[k] && exm_core_small_peek(c, freed[k])) DIE("step %ld: peek accepted the freed block %p", step, (void *)freed[k]);
  for (int i = 0; i < nlive; i++) {
    size_t off = (size_t)(live[i].p - buf);
    for (size_t p = off / EXM_PAGE; p <= (off + (live[i].n ? live[i].n - 1 : 0)) / EXM_PAGE; p++)
      if (!committed[p]) DIE("step %ld: live block at %zu has uncommitted page %zu", step, off, p);
  }
}

int main(int argc, char **argv) {
  long ops = argc > 1 ? atol(argv[1]) : 200000;
  rng_state = argc > 2 ? strtoull(argv[2], NULL, 0) : 0x9e3779b97f4a7c15ull;
  exm_host_t host = { NULL, h_commit, h_decommit, h_meta_map, h_meta_unmap };
  static exm_core_t core;
  exm_core_t *c = &core;
  buf = core_on_buffer(c, CAP, &host);
  /* A cap below the range: some allocations must fail cleanly. */
  c->max_commit = CAP - (64 << 20);
  long fails = 0, inplace = 0, dirty_reuse = 0;
  for (long step = 0; step < ops; step++) {
    int op = (int)(rnd() % 100);
    if (nlive && (op < 40 || nlive == MAXLIVE)) {
      int i = (int)(rnd() % (uint64_t)nlive);
      verify(&live[i], live[i].n, "before free");
      note_freed(live[i].p);
      if (rnd() % 2) {
        if (exm_core_free(c, live[i].p)) DIE("free of live block refused");
      } else {
        /* The library's way for large blocks: give the disk back later,
         * outside the lock, while other operations go on. */
        exm_ext_t *b;
        if (exm_core_free_begin(c, live[i].p, &b)) DIE("free_begin of live block refused");
        if (b) {
          if (nbusy == MAXBUSY) finish_busy(c, (int)(rnd() % MAXBUSY));
          busy[nbusy++] = b;
        }
      }
      live[i] = live[--nlive];
    } else if (nlive && op < 55) {
      int i = (int)(rnd() % (uint64_t)nlive);
      size_t n = rnd() % 2 ? pick_size() : live[i].n + rnd() % (live[i].n / 2 + 64);
      int r = exm_core_resize(c, live[i].p, n);
      if (r == 0) {
        verify(&live[i], n < live[i].n ? n : live[i].n, "after in-place resize");
        if (exm_core_usable(c, live[i].p) < n) DIE("usable size below resized size");
        live[i].n = n;
        fill(&live[i]);
        inplace++;
      } else if (r != ENOMEM) DIE("resize of live block returned %d", r);
    } else {
      size_t n = pick_size(), align = 16;
      if (rnd() % 8 == 0) align = (size_t)1 << (4 + rnd() % 17);
      int zero = rnd() % 4 == 0, dirty = 0, err = 0;
      unsigned char *p = exm_core_alloc(c, n, align, zero ? EXM_CORE_ZERO : 0, &dirty, &err);
      if (!p) {
        if (err != ENOMEM) DIE("allocation failed with %d", err);
        fails++;
      } else {
        if ((uintptr_t)p % align) DIE("%zu bytes at %p not aligned to %zu", n, (void *)p, align);
        if (exm_core_usable(c, p) < n) DIE("usable %zu < requested %zu", exm_core_usable(c, p), n);
        if (!exm_core_owns(c, p) || p + n > buf + CAP) DIE("block outside the range");
        if (!dirty) {
          for (size_t k = 0; k < n; k += 509)
            if (p[k]) DIE("clean block of %zu bytes not zero at %zu", n, k);
        } else if (n >= EXM_SMALL_MAX) dirty_reuse++;
        void *b; size_t bs;
        if (!exm_core_find(c, p + n / 2, &b, &bs, NULL) || b != p) DIE("find of interior pointer failed");
        note_reused(p);
        live[nlive] = (live_t){ p, n, (unsigned char)rnd() };
        fill(&live[nlive++]);
      }
    }
    /* Invalid frees must be refused, never corrupt. */
    if (nlive && rnd() % 64 == 0) {
      live_t *b = &live[rnd() % (uint64_t)nlive];
      if (b->n > 32 && exm_core_free(c, b->p + 16) == 0) DIE("free of an interior pointer accepted");
    }
    if (nbusy && rnd() % 4 == 0) finish_busy(c, (int)(rnd() % (uint64_t)nbusy));
    if (ops <= 300000 || step % 50 == 0) check(c, step);
  }
  while (nbusy) finish_busy(c, 0);
  while (nlive) {
    verify(&live[nlive - 1], live[nlive - 1].n, "at the end");
    if (exm_core_free(c, live[--nlive].p)) DIE("final free refused");
    /* double free of the same block must be refused too */
  }
  check(c, ops);
  /* Segments filled and emptied whole, in turn: the second empty one is
   * released at once, the kept one by the flush; every freed chunk stays
   * unknown to the peek, and no slot keeps a released segment's bitmap. */
  for (int round = 0; round < 3; round++) {
    size_t n = 4000 - 16 * (size_t)round;
    for (nlive = 0; nlive < MAXLIVE; nlive++) {
      int dirty, err;
      unsigned char *p = exm_core_alloc(c, n, 16, 0, &dirty, &err);
      if (!p) DIE("segment fill: allocation failed with %d", err);
      note_reused(p);
      live[nlive] = (live_t){ p, n, (unsigned char)nlive };
      fill(&live[nlive]);
    }
    check(c, ops);
    while (nlive) {
      verify(&live[nlive - 1], live[nlive - 1].n, "segment fill");
      note_freed(live[nlive - 1].p);
      if (exm_core_free(c, live[--nlive].p)) DIE("segment fill: free refused");
      if (nlive % 40 == 0) check(c, ops);
    }
  }
  if (c->seg_count > 1) DIE("%zu segments left after emptying them all", c->seg_count);
  exm_core_flush(c);
  check(c, ops);
  if (c->st.committed) DIE("%llu bytes still committed after freeing everything", (unsigned long long)c->st.committed);
  if (c->top) DIE("carved range not returned: top = %zu", c->top);
  /* The capacity lowered (the program set RLIMIT_AS: exm_arena_fit_as):
   * never below what is carved, and nothing is carved past it after. */
  {
    int dirty, err;
    unsigned char *a = exm_core_alloc(c, 3 * EXM_SEG_SIZE, EXM_PAGE, 0, &dirty, &err);
    unsigned char *b = exm_core_alloc(c, 100, 16, 0, &dirty, &err);
    if (!a || !b) DIE("shrink: allocations failed with %d", err);
    memset(a, 0x5a, 3 * EXM_SEG_SIZE);
    size_t carved = (c->top + EXM_SEG_SIZE - 1) & ~(EXM_SEG_SIZE - 1);
    size_t cap = exm_core_shrink(c, 0);
    if (cap != carved || c->cap != carved) DIE("shrink to 0: capacity %zu, carved %zu", cap, carved);
    if (exm_core_shrink(c, (size_t)CAP) != carved) DIE("shrink raised the capacity");
    check(c, ops);
    err = 0;
    if (exm_core_alloc(c, carved, EXM_PAGE, 0, &dirty, &err) || err != ENOMEM) DIE("shrink: a block past the capacity was carved (err %d)", err);
    for (size_t i = 0; i < 3 * EXM_SEG_SIZE; i++)
      if (a[i] != 0x5a) DIE("shrink: a live block changed at byte %zu", i);
    if (exm_core_free(c, a) || exm_core_free(c, b)) DIE("shrink: free refused");
    check(c, ops);
  }
  printf("core_unit: %ld operations, %ld failed allocations (cap), %ld in-place resizes, %ld dirty reuses, peak committed %llu MiB, meta %zu KiB: OK\n",
         ops, fails, inplace, dirty_reuse, (unsigned long long)(c->st.peak_committed >> 20), meta_bytes >> 10);
  return 0;
}
