/*
 * core_flush.c: the carving core on a plain buffer: what happens when freed
 * page blocks pass the retention limit (exm_core_retain_limit). The largest retained
 * extents are given back (punched) until half the limit is left, so that the
 * next blocks of those sizes still find retained disk and cost no system
 * call; flushing everything would make every following malloc reserve disk
 * and every free punch again (at threshold 0 that was most of the time of
 * bench/c/alloc.c's mstress on a busy disk).
 *
 * Checks: after the limit is passed, retained bytes are at most half the
 * limit and more than zero; the punched extents are the largest ones; the
 * small retained extents are reused with no commit; exm_core_flush still
 * gives back everything; beside a large live set the limit is a quarter of
 * the live bytes (exm_core_retain_limit), and falls back with them;
 * exm_core_check passes throughout.
 *
 * usage: core_flush
 */
#include "core_buffer.h"

#define CAP ((size_t)256 << 20)
#define DIE(...) do { fprintf(stderr, "core_flush: " __VA_ARGS__); fputc('\n', stderr); exit(1); } while (0)

#include "core_host.h"

static unsigned char *buf;
static long commits, decommits;
static size_t smallest_punched = (size_t)-1;

static int h_commit(void *ctx, size_t off, size_t len) { (void)ctx, (void)off, (void)len; commits++; return 0; }
static void h_decommit(void *ctx, size_t off, size_t len) {
  (void)ctx, (void)off;
  decommits++;
  if (len < smallest_punched) smallest_punched = len;
}

static void *alloc(exm_core_t *c, size_t n) {
  int dirty, err;
  void *p = exm_core_alloc(c, n, EXM_PAGE, 0, &dirty, &err);
  if (!p) DIE("alloc(%zu) failed: %d", n, err);
  return p;
}

int main(void) {
  exm_host_t host = { NULL, h_commit, h_decommit, h_meta_map, h_meta_unmap };
  static exm_core_t core;
  exm_core_t *c = &core;
  buf = core_on_buffer(c, CAP, &host);
  const size_t limit = c->dirty_limit, small = 16 * 1024, large = 512 * 1024;
  if (large > c->retain_max) DIE("a %zu-byte block would not be retained", large);
  /* Pairs of (small, large) blocks with a kept block after each, so that no
   * two freed extents coalesce: enough of them to pass the limit. */
  enum { N = 64 };
  void *s[N], *l[N], *keep[2 * N];
  for (int i = 0; i < N; i++) {
    s[i] = alloc(c, small), keep[2 * i] = alloc(c, EXM_PAGE);
    l[i] = alloc(c, large), keep[2 * i + 1] = alloc(c, EXM_PAGE);
  }
  check(c, "after the allocations");
  long d0 = decommits;
  int i = 0;
  for (; i < N && decommits == d0; i++) {
    if (exm_core_free(c, s[i]) || exm_core_free(c, l[i])) DIE("free refused");
    s[i] = l[i] = NULL;
  }
  if (decommits == d0) DIE("freeing %d x %zu bytes never passed the limit of %zu", N, small + large, limit);
  check(c, "after the flush");
  printf("limit=%zu retained=%zu punched=%ld smallest_punched=%zu\n", limit, c->dirty_bytes, decommits - d0,
         smallest_punched);
  if (c->dirty_bytes > limit / 2) DIE("%zu bytes retained after the flush, want at most %zu", c->dirty_bytes, limit / 2);
  if (c->dirty_bytes == 0) DIE("the flush gave back every retained byte");
  if (smallest_punched < large) DIE("a %zu-byte extent was punched while %zu-byte ones were retained", smallest_punched, large);
  /* The retained small extents serve new small blocks with no commit. */
  long c0 = commits;
  for (int k = 0; k < 8; k++) alloc(c, small);
  if (commits != c0) DIE("small blocks reserved disk (%ld commits) with small extents retained", commits - c0);
  check(c, "after the reuse");
  for (int k = 0; k < 2 * N; k++)
    if (exm_core_free(c, keep[k])) DIE("free of a kept block refused");
  for (int k = i; k < N; k++)
    if (exm_core_free(c, s[k]) || exm_core_free(c, l[k])) DIE("free refused");
  exm_core_flush(c);
  if (c->dirty_bytes) DIE("exm_core_flush left %zu bytes retained", c->dirty_bytes);
  check(c, "after exm_core_flush");

  /* A large live set retains more: the limit is a quarter of the live bytes
   * when that is more than dirty_limit. 160 MiB live beside 60 blocks of
   * 512 KiB: freeing 30 MiB of them punches nothing (the fixed limit would
   * have punched past 16 MiB); once the big block goes, the limit is
   * dirty_limit again and the next free flushes down to half of it. */
  enum { M = 60 };
  void *big = alloc(c, (size_t)160 << 20), *m[M], *mk[M];
  for (int k = 0; k < M; k++) m[k] = alloc(c, large), mk[k] = alloc(c, EXM_PAGE);
  long d1 = decommits;
  for (int k = 0; k < M - 1; k++)
    if (exm_core_free(c, m[k])) DIE("free refused");
  check(c, "after freeing beside a large live set");
  printf("live=%zu retained=%zu limit=%zu punched=%ld\n", (size_t)exm_core_stats(c)->live_bytes, c->dirty_bytes,
         exm_core_retain_limit(c), decommits - d1);
  if (decommits != d1) DIE("%ld punches with %zu bytes retained beside %zu live", decommits - d1, c->dirty_bytes,
                           (size_t)exm_core_stats(c)->live_bytes);
  if (c->dirty_bytes < (size_t)(M - 1) * large) DIE("only %zu bytes retained", c->dirty_bytes);
  if (exm_core_free(c, big)) DIE("free of the big block refused");
  if (exm_core_free(c, m[M - 1])) DIE("free refused");
  if (c->dirty_bytes > limit / 2) DIE("%zu bytes retained once the live set is small, want at most %zu", c->dirty_bytes, limit / 2);
  check(c, "after the live set went");
  for (int k = 0; k < M; k++)
    if (exm_core_free(c, mk[k])) DIE("free refused");
  exm_core_flush(c);
  check(c, "at the end");
  printf("core_flush ok\n");
  return 0;
}
