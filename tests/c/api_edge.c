/*
 * api_edge.c: every malloc-family entry point and its edge cases, as glibc
 * defines them. The same binary runs without exm (that is glibc's answer) and
 * preloaded at several thresholds; where the size says a block must come from
 * the arena (size >= threshold) or must not, exm_is_file_backed is asserted.
 */
#include "common.h"

#include <malloc.h>

static size_t page;

/* Writes every byte (small blocks) or every page and the ends (large ones). */
static void touch(void *p, size_t n, unsigned char v) {
  unsigned char *b = p;
  if (n <= 8 * MiB) {
    memset(b, v, n);
    return;
  }
  for (size_t i = 0; i < n; i += page) b[i] = v;
  b[n - 1] = v;
}

static void free_keeps_errno(void *p, const char *what) {
  errno = 4242;
  free(p);
  CHECK(errno == 4242, "%s: free changed errno to %d", what, errno);
}

static size_t sizes[64];
static int nsizes;

static void add_size(size_t s) {
  for (int i = 0; i < nsizes; i++)
    if (sizes[i] == s) return;
  sizes[nsizes++] = s;
}

static void test_malloc(void) {
  for (int i = 0; i < nsizes; i++) {
    size_t n = sizes[i];
    void *p = malloc(n);
    CHECK(p != NULL, "malloc(%zu) returned NULL, errno %d", n, errno);
    CHECK((uintptr_t)p % 16 == 0, "malloc(%zu) = %p is not 16-byte aligned", n, p);
    CHECK(malloc_usable_size(p) >= n, "malloc_usable_size = %zu < %zu", malloc_usable_size(p), n);
    EXPECT_PLACED(p, n, "malloc");
    if (n) touch(p, n, 0x5a);
    free_keeps_errno(p, "malloc");
  }
  /* malloc(0) gives a unique, freeable pointer. */
  void *a = malloc(0), *b = malloc(0);
  CHECK(a != NULL && b != NULL && a != b, "malloc(0) twice: %p %p", a, b);
  free(a);
  free(b);
  printf("malloc ok\n");
}

static void test_free_null(void) {
  errno = 77;
  free(NULL);
  CHECK(errno == 77, "free(NULL) changed errno to %d", errno);
  CHECK(malloc_usable_size(NULL) == 0, "malloc_usable_size(NULL) = %zu", malloc_usable_size(NULL));
  printf("free(NULL) ok\n");
}

static void test_realloc_edges(void) {
  for (int i = 0; i < nsizes; i++) {
    size_t n = sizes[i];
    void *p = realloc(NULL, n);
    CHECK(p != NULL, "realloc(NULL, %zu) returned NULL", n);
    EXPECT_PLACED(p, n, "realloc(NULL, n)");
    if (n) touch(p, n, 0x33);
    /* glibc: realloc(p, 0) frees p and returns NULL. */
    void *q = realloc(p, opaque(0));
    CHECK(q == NULL, "realloc(p of %zu, 0) returned %p, glibc returns NULL", n, q);
  }
  printf("realloc edges ok\n");
}

static void test_calloc(void) {
  for (int i = 0; i < nsizes; i++) {
    size_t n = sizes[i];
    unsigned char *p = calloc(n, 1);
    CHECK(p != NULL, "calloc(%zu, 1) returned NULL", n);
    EXPECT_PLACED(p, n, "calloc");
    long long nz = find_nonzero(p, n);
    CHECK(nz < 0, "calloc(%zu, 1): byte %lld is not zero", n, nz);
    free(p);
    if (n >= 4) {
      p = calloc(n / 4, 4);
      CHECK(p != NULL, "calloc(%zu, 4) returned NULL", n / 4);
      nz = find_nonzero(p, n / 4 * 4);
      CHECK(nz < 0, "calloc(%zu, 4): byte %lld is not zero", n / 4, nz);
      free(p);
    }
  }
  void *z = calloc(0, 16);
  CHECK(z != NULL, "calloc(0, 16) returned NULL");
  free(z);

  errno = 0;
  void *o = calloc(opaque(SIZE_MAX / 2 + 1), opaque(2));
  CHECK(o == NULL && errno == ENOMEM, "calloc overflow: %p errno %d", o, errno);
  errno = 0;
  o = calloc(opaque((size_t)1 << 33), opaque((size_t)1 << 33));
  CHECK(o == NULL && errno == ENOMEM, "calloc(2^33, 2^33): %p errno %d", o, errno);
  printf("calloc ok\n");
}

static void test_huge(void) {
  const size_t huge[] = {SIZE_MAX, SIZE_MAX - 4096, (size_t)PTRDIFF_MAX + 1, (size_t)1 << 50};
  for (unsigned i = 0; i < sizeof huge / sizeof huge[0]; i++) {
    errno = 0;
    void *p = malloc(opaque(huge[i]));
    CHECK(p == NULL && errno == ENOMEM, "malloc(%zu): %p errno %d, want NULL/ENOMEM", huge[i], p,
          errno);
    errno = 0;
    p = calloc(opaque(huge[i]), opaque(1));
    CHECK(p == NULL && errno == ENOMEM, "calloc(%zu, 1): %p errno %d", huge[i], p, errno);
    void *q = malloc(64);
    CHECK(q != NULL, "malloc(64)");
    errno = 0;
    void *r = realloc(q, opaque(huge[i]));
    CHECK(r == NULL && errno == ENOMEM, "realloc(p, %zu): %p errno %d", huge[i], r, errno);
    free(q); /* still ours after a failed realloc */
    void *m = NULL;
    int rc = posix_memalign(&m, 64, opaque(huge[i]));
    CHECK(rc == ENOMEM, "posix_memalign(64, %zu) = %d, want ENOMEM", huge[i], rc);
  }
  printf("huge ok\n");
}

static void test_reallocarray(void) {
  for (int i = 0; i < nsizes; i++) {
    size_t n = sizes[i];
    if (n < 16) continue;
    unsigned char *p = reallocarray(NULL, n / 8, 8);
    CHECK(p != NULL, "reallocarray(NULL, %zu, 8) returned NULL", n / 8);
    EXPECT_PLACED(p, n / 8 * 8, "reallocarray");
    fill_pattern(p, n / 8 * 8, n);
    errno = 0;
    void *q = reallocarray(p, opaque(SIZE_MAX / 2), opaque(3));
    CHECK(q == NULL && errno == ENOMEM, "reallocarray overflow: %p errno %d", q, errno);
    CHECK_PATTERN(p, n / 8 * 8, n, "block kept after failed reallocarray");
    free(p);
  }
  printf("reallocarray ok\n");
}

static void test_posix_memalign(void) {
  const size_t bad[] = {0, 1, 3, 4, 12, 24, 48, 4095};
  for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    void *m = (void *)0x1;
    errno = 99;
    int rc = posix_memalign(&m, opaque(bad[i]), 128);
    CHECK(rc == EINVAL, "posix_memalign(align %zu) = %d, want EINVAL", bad[i], rc);
    CHECK(errno == 99, "posix_memalign(align %zu) touched errno (%d)", bad[i], errno);
  }
  const size_t good[] = {8, 16, 64, 4096, 65536, 2 * MiB};
  for (unsigned a = 0; a < sizeof good / sizeof good[0]; a++) {
    for (int i = 0; i < nsizes; i++) {
      size_t n = sizes[i];
      void *m = NULL;
      errno = 99;
      int rc = posix_memalign(&m, good[a], n);
      CHECK(rc == 0 && m != NULL, "posix_memalign(%zu, %zu) = %d", good[a], n, rc);
      CHECK(errno == 99, "posix_memalign success touched errno (%d)", errno);
      CHECK((uintptr_t)m % good[a] == 0, "posix_memalign(%zu, %zu) = %p misaligned", good[a], n, m);
      CHECK(malloc_usable_size(m) >= n, "usable %zu < %zu", malloc_usable_size(m), n);
      EXPECT_PLACED(m, n, "posix_memalign");
      if (n) touch(m, n, 0x11);
      free_keeps_errno(m, "posix_memalign");
    }
  }
  printf("posix_memalign ok\n");
}

static void test_aligned_alloc_memalign(void) {
  const size_t al[] = {16, 64, 4096, 65536, MiB};
  for (unsigned a = 0; a < sizeof al / sizeof al[0]; a++) {
    for (int i = 0; i < nsizes; i++) {
      size_t n = sizes[i];
      if (n == 0) continue;
      void *p = aligned_alloc(al[a], n);
      CHECK(p != NULL, "aligned_alloc(%zu, %zu) NULL errno %d", al[a], n, errno);
      CHECK((uintptr_t)p % al[a] == 0, "aligned_alloc(%zu, %zu) = %p", al[a], n, p);
      CHECK(malloc_usable_size(p) >= n, "aligned_alloc usable %zu < %zu", malloc_usable_size(p), n);
      EXPECT_PLACED(p, n, "aligned_alloc");
      touch(p, n, 0x22);
      free(p);
      p = memalign(al[a], n);
      CHECK(p != NULL, "memalign(%zu, %zu) NULL", al[a], n);
      CHECK((uintptr_t)p % al[a] == 0, "memalign(%zu, %zu) = %p", al[a], n, p);
      EXPECT_PLACED(p, n, "memalign");
      touch(p, n, 0x23);
      free(p);
    }
  }
  /* memalign rounds an alignment that is not a power of two up to one. */
  for (int i = 0; i < nsizes; i++) {
    size_t n = sizes[i];
    if (n == 0) continue;
    void *p = memalign(opaque(24), n);
    CHECK(p != NULL && (uintptr_t)p % 32 == 0, "memalign(24, %zu) = %p, want 32-aligned", n, p);
    free(p);
  }
  printf("aligned_alloc/memalign ok\n");
}

static void test_valloc_pvalloc(void) {
  for (int i = 0; i < nsizes; i++) {
    size_t n = sizes[i];
    void *p = valloc(n);
    CHECK(p != NULL, "valloc(%zu) NULL", n);
    CHECK((uintptr_t)p % page == 0, "valloc(%zu) = %p not page aligned", n, p);
    CHECK(malloc_usable_size(p) >= n, "valloc usable %zu < %zu", malloc_usable_size(p), n);
    EXPECT_PLACED(p, n, "valloc");
    if (n) touch(p, n, 0x44);
    free(p);

    p = pvalloc(n);
    size_t rounded = (n + page - 1) / page * page;
    /* glibc: pvalloc(0) rounds to 0 and returns a minimum-sized block. */
    CHECK(p != NULL, "pvalloc(%zu) NULL", n);
    CHECK((uintptr_t)p % page == 0, "pvalloc(%zu) = %p not page aligned", n, p);
    CHECK(malloc_usable_size(p) >= rounded, "pvalloc(%zu): usable %zu < %zu", n,
          malloc_usable_size(p), rounded);
    if (rounded) touch(p, rounded, 0x45); /* the whole rounded size is the caller's */
    if (api_threshold() > 0 && n >= api_threshold())
      CHECK(api_fb(p), "pvalloc(%zu) at threshold %zu is not file-backed", n, api_threshold());
    free(p);
  }
  printf("valloc/pvalloc ok\n");
}

/* A freed arena block is no longer reported as live. */
static void test_lookup_after_free(void) {
  if (!X.loaded) return;
  size_t t = api_threshold();
  size_t n = t ? t : 4096;
  void *p = malloc(n);
  CHECK(p && api_fb(p), "malloc(%zu) at threshold %zu not file-backed", n, t);
  uintptr_t addr = (uintptr_t)p;
  free(p);
  CHECK(X.is_file_backed((void *)addr) == 0, "freed block %p still reported file-backed",
        (void *)addr);
  printf("lookup after free ok\n");
}

int main(void) {
  api_init();
  page = (size_t)sysconf(_SC_PAGESIZE);
  const size_t fixed[] = {0, 1, 15, 16, 17, 100, 4095, 4096, 4097, 65536, MiB - 1, MiB, MiB + 1,
                          3 * MiB + 5};
  for (unsigned i = 0; i < sizeof fixed / sizeof fixed[0]; i++) add_size(fixed[i]);
  size_t t = api_threshold();
  if (t != SIZE_MAX && t > 0) {
    add_size(t - 1);
    add_size(t);
    add_size(t + 1);
  }
  printf("threshold=%zu\n", t);

  test_malloc();
  test_free_null();
  test_realloc_edges();
  test_calloc();
  test_huge();
  test_reallocarray();
  test_posix_memalign();
  test_aligned_alloc_memalign();
  test_valloc_pvalloc();
  test_lookup_after_free();
  API_CHECK("api_edge");
  printf("api_edge ok\n");
  return 0;
}
