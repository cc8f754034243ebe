/*
 * span_free.c: free, realloc and malloc's fast paths tell glibc's pointers
 * from the arena's by one range check; this checks that check where it can be
 * wrong: at the edges of the arena's mapping and between two arenas.
 *
 * A "glibc pointer" at a chosen address is made the way glibc makes its own
 * mmapped chunks: a fresh page whose first 16 bytes are a chunk header (size
 * 4096, IS_MMAPPED), the pointer 16 bytes in. glibc's free of it munmaps the
 * page; the arena's free of it would abort (not a block). So a page that is
 * gone after free() went to glibc.
 *
 *   span_free edges      pages right below the arena and right at its end go
 *                        to glibc; the arena block at offset 0 is the arena's
 *   span_free top        free of the arena's last 16 bytes (no block there) is
 *                        caught: must abort with one line
 *   span_free between    a forked child (its own arena and the parent's
 *                        inherited one, a page kept free between them): a
 *                        page in that hole goes to glibc, blocks of both
 *                        arenas to the arena
 *   span_free threshold  exm_set_threshold moves the fast paths: malloc,
 *                        calloc, realloc(NULL) and realloc of a glibc block
 *                        land where the new threshold says
 * Prints "<mode> ok". Needs the library, EXM_THRESHOLD=1M for edges/top/between.
 */
#include "common.h"

#include <sys/mman.h>
#include <sys/wait.h>

#define PAGE ((size_t)4096)

typedef struct { uintptr_t lo, hi; } range_t;

/* The mapping that holds `base` (adjacent pieces of the same file, split by
 * madvise, joined) from /proc/self/maps. */
static range_t mapping_of(uintptr_t base) {
  FILE *f = fopen("/proc/self/maps", "r");
  CHECK(f, "fopen maps");
  char line[512];
  range_t r = { 0, 0 };
  unsigned long long ino_want = 0;
  while (fgets(line, sizeof line, f)) {
    unsigned long long lo, hi, off, ino;
    if (sscanf(line, "%llx-%llx %*s %llx %*s %llu", &lo, &hi, &off, &ino) != 4) continue;
    if (!r.hi && lo <= base && base < hi) {
      r = (range_t){ (uintptr_t)(lo - off), (uintptr_t)hi };
      ino_want = ino;
    } else if (r.hi && lo == r.hi && ino == ino_want && off == lo - r.lo) {
      r.hi = (uintptr_t)hi;
    }
  }
  fclose(f);
  CHECK(r.hi, "no mapping holds %#lx", (unsigned long)base);
  return r;
}

/* Is [a, a + PAGE) free in the address space? */
static int page_free(uintptr_t a) {
  unsigned char v;
  return mincore((void *)a, PAGE, &v) != 0 && errno == ENOMEM;
}

/* A glibc-style mmapped chunk in the page at a (which must be free); its
 * user pointer. */
static void *fake_glibc_chunk(uintptr_t a) {
  void *m = mmap((void *)a, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  CHECK(m == (void *)a, "mmap at %#lx: %s", (unsigned long)a, strerror(errno));
  size_t *h = m;
  h[0] = 0;            /* prev_size */
  h[1] = PAGE | 2;     /* size, IS_MMAPPED */
  return (char *)m + 16;
}

static uint64_t frees(void) {
  exm_stats_t s;
  CHECK(X.get_stats(&s) == 0, "exm_get_stats");
  return s.total_frees;
}

/* free(p) of a fake chunk at page a must reach glibc (the page is unmapped)
 * and not the arena (its free count stays). */
static void glibc_frees(uintptr_t a, const char *where) {
  void *p = fake_glibc_chunk(a);
  uint64_t f0 = frees();
  free(p);
  CHECK(page_free(a), "%s: free(%p) did not reach glibc (the page is still mapped)", where, p);
  CHECK(frees() == f0, "%s: the arena counted a free of glibc's %p", where, p);
}

/* The arena holding p: [base of its file offset 0, end of the mapping). */
static range_t arena_of(void *p) {
  exm_block_info_t info;
  CHECK(X.lookup(p, &info) == 0, "exm_lookup(%p)", p);
  return mapping_of((uintptr_t)info.base - info.offset);
}

static void *arena_block(size_t n) {
  void *p = malloc(n);
  CHECK(p && api_fb(p), "malloc(%zu) = %p is not file-backed at threshold %zu", n, p, api_threshold());
  memset(p, 1, 64);
  return p;
}

static int mode_edges(void) {
  void *p = arena_block(2 * MiB);
  range_t a = arena_of(p);
  printf("arena=%#lx-%#lx\n", (unsigned long)a.lo, (unsigned long)a.hi);
  int tested = 0;
  if (page_free(a.lo - PAGE)) glibc_frees(a.lo - PAGE, "the page below the arena"), tested++;
  if (page_free(a.hi)) glibc_frees(a.hi, "the page at the arena's end"), tested++;
  CHECK(tested, "no free page next to the arena (%#lx-%#lx): nothing tested", (unsigned long)a.lo, (unsigned long)a.hi);
  printf("edges_tested=%d\n", tested);
  /* The arena's lowest address is the arena's. */
  exm_block_info_t info;
  CHECK(X.lookup(p, &info) == 0, "lookup");
  if (info.offset == 0) {
    CHECK((uintptr_t)p == a.lo, "block at offset 0 is %p, arena at %#lx", p, (unsigned long)a.lo);
    printf("block_at_base=1\n");
  }
  uint64_t f0 = frees();
  free(p);
  CHECK(frees() == f0 + 1, "free(%p) of an arena block was not the arena's", p);
  API_CHECK("edges");
  printf("edges ok\n");
  return 0;
}

static int mode_top(void) {
  void *p = arena_block(2 * MiB);
  range_t a = arena_of(p);
  fflush(stdout);
  free((void *)(a.hi - 16));   /* in the arena, no block: the check must abort */
  printf("misuse was not detected\n");
  return 1;
}

static int mode_between(void) {
  void *parent_block = arena_block(2 * MiB);
  range_t pa = arena_of(parent_block);
  fflush(stdout);
  pid_t pid = fork();
  CHECK(pid >= 0, "fork");
  if (pid == 0) {
    /* The kernel puts the child's arena right below the parent's: a page
     * held there meanwhile leaves a hole between them. */
    void *guard = page_free(pa.lo - PAGE) ? fake_glibc_chunk(pa.lo - PAGE) : NULL;
    void *own = arena_block(2 * MiB);
    if (guard) munmap((char *)guard - 16, PAGE);
    range_t ca = arena_of(own);
    CHECK(ca.lo != pa.lo, "the child's block %p is in the parent's arena", own);
    uintptr_t gap_lo = ca.hi < pa.lo ? ca.hi : pa.hi, gap_hi = ca.hi < pa.lo ? pa.lo : ca.lo;
    /* The first free page of the hole between the two arenas (an address
     * glibc could mmap a chunk at). */
    uintptr_t hole = 0;
    FILE *f = fopen("/proc/self/maps", "r");
    CHECK(f, "maps");
    char line[512];
    while (fgets(line, sizeof line, f) && !hole) {
      unsigned long long lo, hi;
      if (sscanf(line, "%llx-%llx", &lo, &hi) != 2) continue;
      if (hi >= gap_lo && hi + PAGE <= gap_hi && page_free(hi)) hole = hi;
    }
    fclose(f);
    if (gap_lo < gap_hi && page_free(gap_lo)) hole = gap_lo;
    CHECK(hole, "no free page between the arenas %#lx-%#lx and %#lx-%#lx", (unsigned long)ca.lo,
          (unsigned long)ca.hi, (unsigned long)pa.lo, (unsigned long)pa.hi);
    glibc_frees(hole, "a page between the child's and the inherited arena");
    uint64_t f0 = frees();
    free(own);
    CHECK(frees() == f0 + 1, "free(%p) of the child's own block was not the arena's", own);
    CHECK(api_fb(parent_block), "the inherited block %p is not file-backed in the child", parent_block);
    free(parent_block);   /* inherited (counted by the parent's arena): glibc's free would abort */
    CHECK(!api_fb(parent_block), "the inherited block %p is still live after free", parent_block);
    API_CHECK("between (child)");
    printf("child ok\n");
    fflush(stdout);
    _exit(0);
  }
  int st;
  CHECK(waitpid(pid, &st, 0) == pid, "waitpid");
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child failed (status %#x)", st);
  free(parent_block);
  API_CHECK("between");
  printf("between ok\n");
  return 0;
}

#define PLACED(p, want, what) CHECK((p) && api_fb(p) == (want), "%s: %p file_backed=%d, want %d", what, (void *)(p), (p) ? api_fb(p) : -1, want)

static int mode_threshold(void) {
  CHECK(X.set_threshold(SIZE_MAX) == 0, "set_threshold");
  char *g = malloc(100);
  PLACED(g, 0, "malloc(100) at threshold max");
  CHECK(X.set_threshold(0) == 0, "set_threshold 0");
  char *a = malloc(100), *c = calloc(10, 10), *r = realloc(NULL, 100);
  PLACED(a, 1, "malloc(100) at threshold 0");
  PLACED(c, 1, "calloc(10, 10) at threshold 0");
  PLACED(r, 1, "realloc(NULL, 100) at threshold 0");
  memset(g, 7, 100);
  g = realloc(g, 200);   /* a glibc block moves into the arena at threshold 0 */
  PLACED(g, 1, "realloc(glibc block, 200) at threshold 0");
  for (int i = 0; i < 100; i++) CHECK(g[i] == 7, "realloc lost byte %d", i);
  CHECK(X.set_threshold(1 * MiB) == 0, "set_threshold 1M");
  char *s = malloc(100), *b = malloc(2 * MiB), *m = malloc(8 * KiB);
  PLACED(s, 0, "malloc(100) at 1M");
  PLACED(m, 0, "malloc(8K) at 1M (the slow path's glibc case)");
  PLACED(b, 1, "malloc(2M) at 1M");
  free(a), free(c), free(r), free(g), free(s), free(b), free(m);
  API_CHECK("threshold");
  printf("threshold ok\n");
  return 0;
}

int main(int argc, char **argv) {
  api_init();
  CHECK(X.loaded && X.get_stats && X.lookup, "span_free needs libexm");
  CHECK(argc > 1, "usage: span_free edges|top|between|threshold");
  if (!strcmp(argv[1], "edges")) return mode_edges();
  if (!strcmp(argv[1], "top")) return mode_top();
  if (!strcmp(argv[1], "between")) return mode_between();
  if (!strcmp(argv[1], "threshold")) return mode_threshold();
  FAIL("unknown mode %s", argv[1]);
}
