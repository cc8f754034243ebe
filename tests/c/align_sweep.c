/*
 * align_sweep.c: every power-of-two alignment from 16 B to 1 MiB crossed with
 * sizes around the threshold and around the alignment itself, through
 * posix_memalign, aligned_alloc and memalign. Each block is checked for
 * alignment and written at both ends and every page (blocks are kept live in
 * a batch, so an overlap between two of them shows as a clobbered pattern);
 * exm_check runs after each batch.
 */
#include "common.h"

#include <malloc.h>

#define MAXB 512

static blk_t live[MAXB];
static int nlive;

/* Marks 8 bytes per page (not overlapping the tail) and the last 8 bytes. */
static void mark(blk_t *b) {
  size_t n = b->n, tail = n < 8 ? n : 8;
  for (size_t off = 0; off + 16 <= n; off += 4096) fill_pattern(b->p + off, 8, b->seed + off);
  fill_pattern(b->p + n - tail, tail, b->seed ^ 0xffff);
}

static void verify(blk_t *b) {
  size_t n = b->n, tail = n < 8 ? n : 8;
  for (size_t off = 0; off + 16 <= n; off += 4096) {
    long long m = find_pattern_mismatch(b->p + off, 8, b->seed + off);
    CHECK(m < 0, "block %p (%zu B) clobbered at %zu", (void *)b->p, n, off + (size_t)m);
  }
  CHECK_PATTERN(b->p + n - tail, tail, b->seed ^ 0xffff, "block tail");
}

static void flush_batch(const char *what) {
  for (int i = 0; i < nlive; i++) verify(&live[i]);
  API_CHECK(what);
  for (int i = 0; i < nlive; i++) free(live[i].p);
  nlive = 0;
  API_CHECK(what);
}

int main(void) {
  api_init();
  size_t t = api_threshold();
  size_t sizes[32];
  int ns = 0;
  const size_t fixed[] = {1, 16, 100, 4096, 4097, 65536 + 3, MiB + 17, 3 * MiB};
  for (unsigned i = 0; i < sizeof fixed / sizeof fixed[0]; i++) sizes[ns++] = fixed[i];
  if (t != SIZE_MAX && t > 0) {
    sizes[ns++] = t - 1;
    sizes[ns++] = t;
    sizes[ns++] = t + 1;
    sizes[ns++] = t + 4096;
  }
  printf("threshold=%zu\n", t);

  uint64_t seed = 1;
  long count = 0, fb = 0;
  for (size_t al = 16; al <= MiB; al <<= 1) {
    for (int s = 0; s < ns + 3; s++) {
      /* sizes around the alignment as well as the fixed ones */
      size_t n = s < ns ? sizes[s] : (s == ns ? al - 1 : s == ns + 1 ? al : al + 1);
      if (n == 0) continue;
      for (int fn = 0; fn < 3; fn++) {
        void *p = NULL;
        const char *name;
        if (fn == 0) {
          name = "posix_memalign";
          int rc = posix_memalign(&p, al, n);
          CHECK(rc == 0, "posix_memalign(%zu, %zu) = %d", al, n, rc);
        } else if (fn == 1) {
          name = "aligned_alloc";
          p = aligned_alloc(al, n);
        } else {
          name = "memalign";
          p = memalign(al, n);
        }
        CHECK(p != NULL, "%s(%zu, %zu) returned NULL, errno %d", name, al, n, errno);
        CHECK((uintptr_t)p % al == 0, "%s(%zu, %zu) = %p misaligned", name, al, n, p);
        CHECK(malloc_usable_size(p) >= n, "%s(%zu, %zu): usable %zu", name, al, n,
              malloc_usable_size(p));
        EXPECT_PLACED(p, n, name);
        fb += api_fb(p);
        live[nlive++] = (blk_t){p, n, seed++ * 0x1000193};
        mark(&live[nlive - 1]);
        count++;
        if (nlive == MAXB) flush_batch("a full batch");
      }
    }
    flush_batch("an alignment batch");
  }
  printf("blocks=%ld file_backed=%ld\n", count, fb);
  printf("align_sweep ok\n");
  return 0;
}
