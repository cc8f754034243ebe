/*
 * realloc_cross.c: realloc keeps contents when a block crosses the threshold
 * (glibc -> arena on growth, arena -> glibc on shrink), and through long
 * grow/shrink sequences inside the arena, where exm may resize in place.
 * Every step checks the kept prefix against the block's pattern, then
 * refills the whole block.
 */
#include "common.h"

#include <malloc.h>

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static unsigned char *resize(unsigned char *p, size_t old, size_t n, uint64_t seed,
                             uint64_t nseed, const char *what) {
  unsigned char *q = realloc(p, n);
  CHECK(q != NULL, "%s: realloc(%zu -> %zu) NULL, errno %d", what, old, n, errno);
  size_t keep = old < n ? old : n;
  long long m = find_pattern_mismatch(q, keep, seed);
  CHECK(m < 0, "%s: realloc %zu -> %zu (%p -> %p, fb %d) lost byte %lld", what, old, n, (void *)p,
        (void *)q, api_fb(q), m);
  CHECK(malloc_usable_size(q) >= n, "%s: usable %zu < %zu", what, malloc_usable_size(q), n);
  fill_pattern(q, n, nseed);
  return q;
}

static void crossings(size_t t) {
  /* sizes on either side of the threshold, walked up and down */
  size_t below[] = {t - 1, t / 2 ? t / 2 : 1, t > 100 ? t - 100 : 1};
  size_t above[] = {t, t + 4096, 2 * t, t + 1, 3 * t + 12345};
  /* every pair costs several times t of pattern traffic: fewer when t is big */
  unsigned nb = t > 8 * MiB ? 2 : 3, na = t > 8 * MiB ? 2 : 5;
  uint64_t seed = 1;
  for (unsigned i = 0; i < nb; i++) {
    for (unsigned j = 0; j < na; j++) {
      size_t a = below[i], b = above[j];
      unsigned char *p = malloc(a);
      CHECK(p, "malloc(%zu)", a);
      fill_pattern(p, a, seed);
      EXPECT_PLACED(p, a, "below threshold");
      p = resize(p, a, b, seed, seed + 1, "grow across");
      EXPECT_PLACED(p, b, "grown across threshold");
      p = resize(p, b, a, seed + 1, seed + 2, "shrink across");
      EXPECT_PLACED(p, a, "shrunk back across threshold");
      p = resize(p, a, b, seed + 2, seed + 3, "grow again");
      EXPECT_PLACED(p, b, "grown again");
      free(p);
      seed += 10;
    }
  }
  API_CHECK("threshold crossings");
  printf("crossings ok\n");
}

/* Random walk of sizes within [lo, hi]; some blocks stay live around the
 * walking one, so in-place growth sometimes is, sometimes is not possible. */
static void walk(size_t lo, size_t hi, int steps, const char *what) {
  enum { NB = 8 };
  unsigned char *bl[NB];
  size_t sz[NB];
  uint64_t sd[NB];
  for (int i = 0; i < NB; i++) {
    sz[i] = lo + rnd() % (hi - lo + 1);
    sd[i] = rnd();
    bl[i] = malloc(sz[i]);
    CHECK(bl[i], "malloc(%zu)", sz[i]);
    fill_pattern(bl[i], sz[i], sd[i]);
  }
  long in_place = 0;
  /* bound the pattern traffic to about 1 GiB per walk */
  size_t avg = lo / 2 + hi / 2 + 1;
  if ((size_t)steps > GiB / avg) steps = (int)(GiB / avg) < 20 ? 20 : (int)(GiB / avg);
  for (int s = 0; s < steps; s++) {
    int i = (int)(rnd() % NB);
    size_t n;
    switch (rnd() % 4) {
    case 0: n = sz[i] + 1 + rnd() % 4096; break;           /* nudge up */
    case 1: n = sz[i] > lo + 4096 ? sz[i] - rnd() % 4096 : sz[i] + 1; break; /* nudge down */
    default: n = lo + rnd() % (hi - lo + 1); break;         /* jump */
    }
    if (n > hi) n = hi;
    if (n < lo) n = lo;
    uint64_t ns = rnd();
    unsigned char *old = bl[i];
    bl[i] = resize(bl[i], sz[i], n, sd[i], ns, what);
    if (bl[i] == old) in_place++;
    EXPECT_PLACED(bl[i], n, what);
    sz[i] = n;
    sd[i] = ns;
    if (s % 64 == 0) API_CHECK(what);
  }
  for (int i = 0; i < NB; i++) {
    CHECK_PATTERN(bl[i], sz[i], sd[i], what);
    free(bl[i]);
  }
  API_CHECK(what);
  printf("%s: steps=%d in_place=%ld\n", what, steps, in_place);
}

int main(int argc, char **argv) {
  api_init();
  size_t t = api_threshold();
  printf("threshold=%zu\n", t);
  if (argc > 1) rng = strtoull(argv[1], NULL, 0) | 1;
  if (t != SIZE_MAX && t > 1) crossings(t);
  else crossings(1 * MiB); /* without exm (or at 0) this still checks contents */

  /* arena-sized walk: everything at or above the threshold */
  size_t lo = (t != SIZE_MAX && t > 0) ? t : 1 * MiB;
  walk(lo, lo + 8 * MiB, 400, "arena walk");
  /* a walk that keeps crossing */
  walk(lo > 8192 ? lo / 2 : 1, lo + 2 * MiB, 400, "crossing walk");
  /* small blocks (in the arena at threshold 0) */
  walk(1, 8192, 3000, "small walk");
  printf("realloc_cross ok\n");
  return 0;
}
