/*
 * glibc_rules.c: what glibc 2.36 answers, checked one entry point at a time,
 * with and without exm (tests/glibc.test.ts runs it both ways):
 *   errno      NULL/errno/return value of every aligned entry point for
 *              alignments 1..2^63 and for sizes that cannot be served
 *   realloc    a glibc block moved into the arena by realloc keeps all its
 *              bytes (even when dlsym cannot find malloc_usable_size)
 *   heapinfo   mallinfo2/mallinfo count blocks in use (the arena's too),
 *              malloc_info's XML is well formed, malloc_trim answers
 *   stats      malloc_stats with some blocks in use
 *   stdio      at threshold 0, glibc's own small blocks (a FILE) stay in its heap
 * Prints "<mode> ok"; failures print FAIL on stderr.
 */
#include "common.h"

#include <malloc.h>

/* mallinfo is deprecated, and still what many programs call. */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

/* Sizes no allocator can serve, hidden from gcc's size warnings. */
static volatile size_t huge_v = SIZE_MAX - 4096 * 4;

static int mode_errno(void) {
  size_t huge = huge_v;
  for (size_t a = 1; a; a <<= 1) {
    errno = 0;
    void *p = memalign(a, huge);
    CHECK(p == NULL && errno == ENOMEM, "memalign(%zu, huge) = %p, errno %d (want NULL, ENOMEM)", a, p, errno);
    errno = 0;
    p = aligned_alloc(a, huge);
    CHECK(p == NULL && errno == ENOMEM, "aligned_alloc(%zu, huge) = %p, errno %d", a, p, errno);
    if (a % sizeof(void *) == 0) {
      void *q = NULL;
      errno = 0;
      int rc = posix_memalign(&q, a, huge);
      CHECK(rc == ENOMEM && q == NULL, "posix_memalign(%zu, huge) = %d", a, rc);
      CHECK(errno == ENOMEM, "posix_memalign(%zu, huge) failed but errno is %d, glibc leaves ENOMEM", a, errno);
    }
  }
  /* Past 2^63 no alignment is a power of two: EINVAL. */
  errno = 0;
  void *p = memalign(((size_t)1 << 63) + 1, 64);
  CHECK(p == NULL && errno == EINVAL, "memalign(2^63+1, 64) = %p, errno %d (want EINVAL)", p, errno);
  /* Not a power of two: rounded up, as glibc 2.36 does (aligned_alloc too). */
  p = memalign(24, 100);
  CHECK(p && ((uintptr_t)p & 31) == 0, "memalign(24, 100) = %p, want 32-aligned", p);
  free(p);
  p = aligned_alloc(48, 100);
  CHECK(p && ((uintptr_t)p & 63) == 0, "aligned_alloc(48, 100) = %p, want 64-aligned", p);
  free(p);
  void *q = NULL;
  CHECK(posix_memalign(&q, 24, 64) == EINVAL && q == NULL, "posix_memalign(24) must be EINVAL");
  CHECK(posix_memalign(&q, 4, 64) == EINVAL, "posix_memalign(4) must be EINVAL");
  /* Success leaves errno alone. */
  errno = 1234;
  CHECK(posix_memalign(&q, 64, 1 << 20) == 0 && errno == 1234, "posix_memalign success changed errno to %d", errno);
  free(q);
  errno = 0;
  CHECK(malloc(huge) == NULL && errno == ENOMEM, "malloc(huge): errno %d", errno);
  errno = 0;
  CHECK(calloc(huge / 2, 4) == NULL && errno == ENOMEM, "calloc overflow: errno %d", errno);
  errno = 0;
  CHECK(valloc(huge) == NULL && errno == ENOMEM, "valloc(huge): errno %d", errno);
  errno = 0;
  CHECK(pvalloc(SIZE_MAX - 1) == NULL && errno == ENOMEM, "pvalloc(SIZE_MAX-1): errno %d", errno);
  printf("errno ok\n");
  return 0;
}

/* Blocks made below the threshold (glibc's, when it is not 0), grown past
 * it: realloc must copy every byte, whatever glibc's usable size is. */
static int mode_realloc(void) {
  static const size_t sizes[] = { 1, 24, 100, 1000, 4000, 5000, 70000, 200000, 300000 };
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    size_t n = sizes[i];
    unsigned char *p = i % 2 ? memalign(256, n) : malloc(n);
    CHECK(p, "malloc(%zu)", n);
    for (size_t k = 0; k < n; k++) p[k] = (unsigned char)(k * 7 + i);
    size_t to = 80u << 20;    /* past the default threshold too */
    unsigned char *q = realloc(p, to);
    CHECK(q, "realloc(%zu -> %zu)", n, to);
    for (size_t k = 0; k < n; k++) CHECK(q[k] == (unsigned char)(k * 7 + i), "realloc of %zu bytes lost byte %zu", n, k);
    free(q);
  }
  printf("realloc ok\n");
  return 0;
}

static int mode_heapinfo(void) {
  struct mallinfo2 a = mallinfo2();
  struct mallinfo ai = mallinfo();
  enum { N = 64 };
  void *small[N], *big[4];
  size_t total = 0;
  for (int i = 0; i < N; i++) total += 32 * (i + 1), small[i] = malloc(32 * (i + 1));   /* below a page: heap, not mmap-like */
  for (int i = 0; i < 4; i++) big[i] = malloc(1 << 20);
  struct mallinfo2 b = mallinfo2();
  struct mallinfo bi = mallinfo();
  printf("uordblks_before=%zu uordblks_after=%zu hblkhd_before=%zu hblkhd_after=%zu\n", a.uordblks, b.uordblks, a.hblkhd,
         b.hblkhd);
  CHECK(b.uordblks + b.hblkhd >= a.uordblks + a.hblkhd + total + (4u << 20),
        "mallinfo2: in use grew by %zu, allocated %zu", (b.uordblks + b.hblkhd) - (a.uordblks + a.hblkhd), total + (4u << 20));
  CHECK(b.uordblks >= a.uordblks + total, "mallinfo2.uordblks grew by %zu, small blocks %zu", b.uordblks - a.uordblks, total);
  CHECK(bi.uordblks >= ai.uordblks + (int)total, "mallinfo.uordblks grew by %d, small blocks %zu", bi.uordblks - ai.uordblks, total);
  CHECK(b.arena >= b.uordblks, "mallinfo2: arena %zu < uordblks %zu", b.arena, b.uordblks);
  char *xml = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&xml, &len);
  CHECK(f && malloc_info(0, f) == 0, "malloc_info");
  fclose(f);
  CHECK(!strncmp(xml, "<malloc version=\"1\">", 20) && len > 11 && !strcmp(xml + len - 10, "</malloc>\n"),
        "malloc_info: not one <malloc> element:\n%s", xml);
  CHECK(malloc_info(1, stdout) == EINVAL, "malloc_info(1) must be EINVAL");
  printf("exm_heap=%d\n", strstr(xml, "<heap nr=\"exm\"") != NULL);
  free(xml);
  for (int i = 0; i < N; i++) free(small[i]);
  for (int i = 0; i < 4; i++) free(big[i]);
  struct mallinfo2 c = mallinfo2();
  CHECK(c.uordblks + c.hblkhd + total / 2 < b.uordblks + b.hblkhd, "mallinfo2: in use did not shrink after free");
  int t = malloc_trim(0);
  CHECK(t == 0 || t == 1, "malloc_trim = %d", t);
  printf("heapinfo ok\n");
  return 0;
}

/* At threshold 0: the program's small blocks are file-backed, glibc's own
 * (a stream from fopen, whose lock glibc's fork resets in the child) not. */
static int mode_stdio(void) {
  CHECK(X.loaded, "stdio needs libexm");
  void *mine = malloc(100);
  CHECK(api_fb(mine), "malloc(100) at threshold 0 is not file-backed");
  FILE *f = fopen("/dev/null", "r");
  CHECK(f, "fopen");
  CHECK(!api_fb(f), "a FILE from fopen is in the arena: glibc's fork would reset its lock in memory the child shares");
  char *line = NULL;
  size_t cap = 0;
  CHECK(getline(&line, &cap, f) == -1, "getline on /dev/null");
  fclose(f);
  free(line);
  free(mine);
  printf("stdio ok\n");
  return 0;
}

/* malloc_stats after some blocks exist (its report goes to stderr). */
static int mode_stats(void) {
  void *p[16];
  for (int i = 0; i < 16; i++) p[i] = malloc(100 + 1000 * i);
  malloc_stats();
  for (int i = 0; i < 16; i++) free(p[i]);
  printf("stats ok\n");
  return 0;
}

int main(int argc, char **argv) {
  api_init();
  const char *mode = argc > 1 ? argv[1] : "";
  if (!strcmp(mode, "errno")) return mode_errno();
  if (!strcmp(mode, "realloc")) return mode_realloc();
  if (!strcmp(mode, "heapinfo")) return mode_heapinfo();
  if (!strcmp(mode, "stats")) return mode_stats();
  if (!strcmp(mode, "stdio")) return mode_stdio();
  fprintf(stderr, "usage: glibc_rules errno|realloc|heapinfo|stats|stdio\n");
  return 2;
}
