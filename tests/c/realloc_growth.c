/*
 * realloc_growth.c: vectors grown by realloc, the way programs grow them
 * (x1.5, or by a few bytes at a time), keep their contents, and at threshold
 * 0 the arena serves that growth without giving disk back and without
 * taking more disk than the live bytes need.
 *
 * Phase "small": 32 vectors grown in turn from 8 B to 64 KiB (x1.5 or
 * +16-128 B: bench/c/alloc.c's realloc loop), freed and started again.
 * Phase "large": 32 vectors grown in turn by x1.1-x1.3 to 2 MiB and all kept,
 * so that the live set reaches 64 MiB. Every step checks a byte per page
 * written when the page was first in the vector, and the last byte; a
 * vector is checked whole before it is freed.
 *
 * Prints, from exm_get_stats: small_punched (bytes given back in the first
 * phase), live_peak, disk_peak (bytes reserved at the peak), punched (in
 * all), and reallocs.
 *
 * usage: realloc_growth
 */
#include "common.h"

#define V 32

static unsigned char mark(int k, size_t i) { return (unsigned char)(k * 31 + (i >> 12) * 7 + 1); }

/* The byte of each page (and the last one) from `from` on. */
static void put(unsigned char *p, int k, size_t from, size_t to) {
  for (size_t i = (from + 4095) & ~(size_t)4095; i < to; i += 4096) p[i] = mark(k, i);
  if ((to - 1) & 4095) p[to - 1] = (unsigned char)(k + 1);
}
static void check(const unsigned char *p, int k, size_t len, const char *when) {
  for (size_t i = 0; i < len; i += 4096)
    CHECK(p[i] == mark(k, i), "%s: vector %d (%zu B) lost byte %zu", when, k, len, i);
}

static uint64_t x = 88172645463325252ull;
static uint64_t rnd(void) {
  x ^= x << 13, x ^= x >> 7, x ^= x << 17;
  return x;
}

static long reallocs;

static unsigned char *grow(unsigned char *p, int k, size_t old, size_t n) {
  unsigned char *q = realloc(p, n);
  CHECK(q, "realloc(%zu -> %zu) failed, errno %d", old, n, errno);
  reallocs++;
  check(q, k, old, "after realloc");
  CHECK(!old || !((old - 1) & 4095) || q[old - 1] == (unsigned char)(k + 1), "vector %d lost its last byte (%zu -> %zu)", k, old, n);
  put(q, k, old, n);
  return q;
}

int main(void) {
  api_init();
  unsigned char *v[V] = { 0 };
  size_t len[V] = { 0 };
  for (long s = 0; s < 200000; s++) {
    uint64_t r = rnd();
    int k = (int)(r % V);
    size_t want = !len[k] ? 8 : k & 1 ? len[k] + len[k] / 2 : len[k] + 16 + (r >> 8) % 113;
    if (want > 64 * KiB) {
      check(v[k], k, len[k], "before free");
      free(v[k]);
      v[k] = NULL, len[k] = 0, want = 8;
    }
    v[k] = grow(v[k], k, len[k], want);
    len[k] = want;
  }
  for (int k = 0; k < V; k++) free(v[k]), v[k] = NULL, len[k] = 0;
  exm_stats_t small = { 0 };
  if (X.loaded) CHECK(X.get_stats(&small) == 0, "exm_get_stats");
  for (int done = 0; done < V;) {
    uint64_t r = rnd();
    int k = (int)(r % V);
    if (len[k] == 2 * MiB) continue;
    size_t want = !len[k] ? 4 * KiB : len[k] + len[k] * (10 + (r >> 8) % 21) / 100;
    if (want >= 2 * MiB) want = 2 * MiB, done++;
    v[k] = grow(v[k], k, len[k], want);
    len[k] = want;
  }
  for (int k = 0; k < V; k++) check(v[k], k, len[k], "at the end");
  exm_stats_t st = { 0 };
  if (X.loaded) CHECK(X.get_stats(&st) == 0, "exm_get_stats");
  for (int k = 0; k < V; k++) free(v[k]);
  API_CHECK("realloc growth");
  printf("small_punched=%" PRIu64 "\n", small.bytes_punched);
  printf("reallocs=%ld\nlive_peak=%" PRIu64 "\ndisk_peak=%" PRIu64 "\npunched=%" PRIu64 "\n", reallocs,
         st.peak_live_bytes, st.peak_disk_reserved, st.bytes_punched);
  printf("realloc_growth ok\n");
  return 0;
}
