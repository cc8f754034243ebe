/*
 * core_growth.c: the carving core on a plain buffer: page blocks that grow
 * by small steps (realloc of a vector, a buffer appended to), in place or by
 * moving, should cost a handful of disk reservations, not one per page, and
 * no punch at all while the retained disk stays under its limit.
 *
 * Checks, with a host that counts its calls:
 *  - a growth that cannot be done in place (a live block next to it) says
 *    ENOMEM and gives back no retained disk (it used to flush every DIRTY
 *    extent, a punch apiece, which the next blocks then reserved again);
 *  - one block at the top grown from 4 KiB to 8 MiB a page at a time stays in
 *    place, with O(log) reservations (slack reserved geometrically ahead),
 *    its disk at most 1.5x its size plus a page, its contents intact;
 *  - 16 blocks grown in turn by 1-3 pages, each moved (allocate, copy, free)
 *    when it cannot grow in place, up to 256 KiB and then freed and started
 *    again: no punch, reservations a small fraction of the steps, the disk
 *    bounded by the live bytes plus the retention limit;
 *  - exm_core_check passes after every phase.
 *
 * usage: core_growth
 */
#include "core_buffer.h"

#define CAP ((size_t)1 << 30)
#define DIE(...) do { fprintf(stderr, "core_growth: " __VA_ARGS__); fputc('\n', stderr); exit(1); } while (0)

#include "core_host.h"

static long commits, decommits;

static int h_commit(void *ctx, size_t off, size_t len) { (void)ctx, (void)off, (void)len; commits++; return 0; }
static void h_decommit(void *ctx, size_t off, size_t len) { (void)ctx, (void)off, (void)len; decommits++; }

static unsigned char *alloc(exm_core_t *c, size_t n) {
  int dirty, err;
  void *p = exm_core_alloc(c, n, 16, 0, &dirty, &err);
  if (!p) DIE("alloc(%zu) failed: %d", n, err);
  return p;
}

static void release(exm_core_t *c, void *p) {
  if (exm_core_free(c, p)) DIE("free refused");
}

/* One byte per page tells whose page it is and which. */
static unsigned char mark(int k, size_t page) { return (unsigned char)(k * 31 + page * 7 + 1); }
static void fill(unsigned char *p, int k, size_t from, size_t to) {
  for (size_t i = from; i < to; i++) p[i * EXM_PAGE] = mark(k, i);
}
static void verify(const unsigned char *p, int k, size_t pages, const char *when) {
  for (size_t i = 0; i < pages; i++)
    if (p[i * EXM_PAGE] != mark(k, i)) DIE("%s: block %d lost page %zu", when, k, i);
}

/* A growth that must move gives back nothing. */
static void no_flush_on_move(exm_core_t *c) {
  enum { N = 8 };
  unsigned char *keep[N], *gone[N];
  for (int i = 0; i < N; i++) gone[i] = alloc(c, 64 * 1024), keep[i] = alloc(c, EXM_PAGE);
  for (int i = 0; i < N; i++) release(c, gone[i]);
  unsigned char *a = alloc(c, 2 * EXM_PAGE), *b = alloc(c, EXM_PAGE);
  check(c, "before the growth");
  size_t dirty = c->dirty_bytes;
  if (!dirty) DIE("no retained disk to lose");
  long d0 = decommits;
  int r = exm_core_resize(c, a, 64 * EXM_PAGE);
  if (r == 0) DIE("grew in place over a live block");
  if (r != ENOMEM) DIE("resize returned %d, not ENOMEM", r);
  if (decommits != d0) DIE("a growth that has to move gave back retained disk (%ld punches)", decommits - d0);
  if (c->dirty_bytes != dirty) DIE("retained bytes went from %zu to %zu", dirty, c->dirty_bytes);
  check(c, "after the refused growth");
  release(c, a), release(c, b);
  for (int i = 0; i < N; i++) release(c, keep[i]);
  exm_core_flush(c);
  check(c, "after no_flush_on_move");
  printf("no_flush_on_move ok\n");
}

/* One block at the top, a page at a time. */
static void grow_at_top(exm_core_t *c) {
  const size_t max = (size_t)8 << 20;
  unsigned char *p = alloc(c, EXM_PAGE);
  fill(p, 0, 0, 1);
  long c0 = commits, d0 = decommits, steps = 0;
  for (size_t len = 2 * EXM_PAGE; len <= max; len += EXM_PAGE, steps++) {
    if (exm_core_resize(c, p, len)) DIE("growth at the top to %zu did not stay in place", len);
    fill(p, 0, len / EXM_PAGE - 1, len / EXM_PAGE);
    const exm_core_stats_t *s = exm_core_stats(c);
    if (s->committed > len + len / 2 + EXM_SEG_SIZE) DIE("%zu bytes of disk for a block of %zu", (size_t)s->committed, len);
  }
  verify(p, 0, max / EXM_PAGE, "after growing at the top");
  long n = commits - c0;
  printf("grow_at_top: %ld steps, %ld reservations, %ld punches\n", steps, n, decommits - d0);
  if (n > 40) DIE("%ld reservations for %ld growth steps (want O(log))", n, steps);
  if (decommits != d0) DIE("growth punched");
  check(c, "after growing at the top");
  release(c, p);
  exm_core_flush(c);
  check(c, "after grow_at_top");
  printf("grow_at_top ok\n");
}

/* Vectors grown in turn: in place where they can, moved where they cannot. */
static void vectors(exm_core_t *c) {
  enum { K = 16 };
  const size_t max = (size_t)256 << 10;
  unsigned char *v[K] = { 0 };
  size_t pages[K] = { 0 };
  uint64_t x = 0x9E3779B97F4A7C15ull;
  long c0 = commits, d0 = decommits, steps = 0, moves = 0;
  size_t peak_live = 0;
  for (; steps < 20000; steps++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    int k = (int)(x % K);
    size_t want = pages[k] + 1 + (x >> 32) % 3;
    if (want * EXM_PAGE > max) {
      verify(v[k], k, pages[k], "before the free");
      release(c, v[k]);
      v[k] = NULL, pages[k] = 0, want = 1;
    }
    if (!v[k]) {
      v[k] = alloc(c, want * EXM_PAGE);
    } else if (exm_core_resize(c, v[k], want * EXM_PAGE)) {
      unsigned char *q = alloc(c, want * EXM_PAGE);
      memcpy(q, v[k], pages[k] * EXM_PAGE);
      release(c, v[k]);
      v[k] = q;
      moves++;
    }
    fill(v[k], k, pages[k], want);
    pages[k] = want;
    const exm_core_stats_t *s = exm_core_stats(c);
    if (s->live_bytes > peak_live) peak_live = s->live_bytes;
    if (s->committed > s->live_bytes + exm_core_retain_limit(c) + EXM_SEG_SIZE)
      DIE("%zu bytes of disk for %zu live", (size_t)s->committed, (size_t)s->live_bytes);
  }
  for (int k = 0; k < K; k++) verify(v[k], k, pages[k], "at the end");
  long n = commits - c0;
  printf("vectors: %ld steps, %ld moves, %ld reservations, %ld punches, peak live %zu KiB, peak disk %zu KiB\n",
         steps, moves, n, decommits - d0, peak_live >> 10, (size_t)exm_core_stats(c)->peak_committed >> 10);
  if (decommits != d0) DIE("growth and moves punched %ld times under the retention limit", decommits - d0);
  if (n * 50 > steps) DIE("%ld reservations for %ld steps", n, steps);
  check(c, "after the vectors");
  for (int k = 0; k < K; k++) release(c, v[k]);
  check(c, "after vectors");
  printf("vectors ok\n");
}

int main(void) {
  exm_host_t host = { NULL, h_commit, h_decommit, h_meta_map, h_meta_unmap };
  static exm_core_t core;
  core_on_buffer(&core, CAP, &host);
  no_flush_on_move(&core);
  grow_at_top(&core);
  vectors(&core);
  printf("core_growth ok\n");
  return 0;
}
