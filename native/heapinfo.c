/*
 * heapinfo.c: mallinfo, mallinfo2, malloc_stats, malloc_info and
 * malloc_trim, with the arena's blocks counted.
 *
 * Programs measure their heap with these (leak checks, R's and Python's
 * memory reports, servers exporting heap gauges). glibc's answer knows
 * only glibc's heap: at threshold 0 it would say that nothing is in use.
 * So each answer is glibc's plus the arenas' (this process's own and the
 * ones inherited from its parents), in the fields that mean the same:
 *  - the small-chunk segments are heap: `arena` grows by their size,
 *    `uordblks` by the small blocks in use, `fordblks` by the rest;
 *  - page blocks are like glibc's mmapped chunks: `hblks` and `hblkhd`.
 * malloc_stats prints glibc's report and then the arena's, in its format;
 * malloc_info adds a <heap nr="exm"> element. malloc_trim gives back
 * glibc's free memory and the disk the arena keeps for reuse.
 *
 * mallopt is not replaced: its parameters tune glibc's heap (what stays
 * below the threshold); the arena has its own settings (EXM_*).
 *
 * None of this is on the allocation path, so glibc's versions are looked up
 * with dlsym when first needed (mallinfo2, malloc_stats, malloc_info and
 * malloc_trim have no __libc_ name). If a lookup fails, the arena's part is
 * still reported.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "internal.h"

extern struct mallinfo __libc_mallinfo(void);

static void *next(const char *name) { return dlsym(RTLD_NEXT, name); }

static struct mallinfo2 glibc_mallinfo2(void) {
  static struct mallinfo2 (*f)(void);
  if (!f) f = (struct mallinfo2 (*)(void))next("mallinfo2");
  if (f) return f();
  struct mallinfo m = __libc_mallinfo();   /* int fields: wrap beyond 2 GiB, as glibc's own mallinfo */
  return (struct mallinfo2){ (unsigned)m.arena, (unsigned)m.ordblks, (unsigned)m.smblks, (unsigned)m.hblks,
                             (unsigned)m.hblkhd, (unsigned)m.usmblks, (unsigned)m.fsmblks, (unsigned)m.uordblks,
                             (unsigned)m.fordblks, (unsigned)m.keepcost };
}

EXM_API struct mallinfo2 mallinfo2(void) {
  struct mallinfo2 m = glibc_mallinfo2();
  exm_heap_t h;
  exm_arena_heap(&h);
  m.arena += h.small_space;
  m.uordblks += h.small_live;
  m.fordblks += h.small_space - h.small_live;
  m.hblks += h.large_blocks;
  m.hblkhd += h.large_bytes;
  return m;
}

/* As glibc's: the same figures, cut to int. */
EXM_API struct mallinfo mallinfo(void) {
  struct mallinfo2 m = mallinfo2();
  return (struct mallinfo){ (int)m.arena, (int)m.ordblks, (int)m.smblks, (int)m.hblks, (int)m.hblkhd,
                            (int)m.usmblks, (int)m.fsmblks, (int)m.uordblks, (int)m.fordblks, (int)m.keepcost };
}

/* glibc's malloc_stats is not a cancellation point (glibc's own test
 * cancels a thread inside it); neither is the part added here. */
EXM_API void malloc_stats(void) {
  static void (*f)(void);
  if (!f) f = (void (*)(void))next("malloc_stats");
  if (f) f();
  exm_heap_t h;
  exm_arena_heap(&h);
  int old;
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
  fprintf(stderr, "exm file-backed arena:\nsystem bytes     = %10zu\nin use bytes     = %10zu\nblocks of a page or more = %zu (%zu bytes)\n",
          h.small_space + h.large_bytes, h.small_live + h.large_bytes, h.large_blocks, h.large_bytes);
  pthread_setcancelstate(old, NULL);
}

/* glibc's XML, its closing </malloc> held back, then the arena's heap. */
EXM_API int malloc_info(int options, FILE *fp) {
  if (options != 0) return EINVAL;    /* as glibc */
  static int (*f)(int, FILE *);
  if (!f) f = (int (*)(int, FILE *))next("malloc_info");
  char *buf = NULL;
  size_t len = 0;
  FILE *mem = f ? open_memstream(&buf, &len) : NULL;
  if (mem) {
    int r = f(0, mem);
    fclose(mem);
    if (r) {
      free(buf);
      return r;
    }
    const char *end = "</malloc>\n";
    size_t n = len >= 10 && !memcmp(buf + len - 10, end, 10) ? len - 10 : len;
    fwrite(buf, 1, n, fp);
    free(buf);
  } else {
    fputs("<malloc version=\"1\">\n", fp);
  }
  exm_heap_t h;
  exm_arena_heap(&h);
  fprintf(fp,
          "<heap nr=\"exm\" type=\"file-backed\">\n"
          "<total type=\"rest\" count=\"%zu\" size=\"%zu\"/>\n"
          "<total type=\"mmap\" count=\"%zu\" size=\"%zu\"/>\n"
          "<system type=\"current\" size=\"%zu\"/>\n"
          "<aspace type=\"total\" size=\"%zu\"/>\n"
          "</heap>\n</malloc>\n",
          h.small_blocks, h.small_live, h.large_blocks, h.large_bytes, h.small_space + h.large_bytes, h.arena_bytes);
  return 0;
}

EXM_API int malloc_trim(size_t pad) {
  static int (*f)(size_t);
  if (!f) f = (int (*)(size_t))next("malloc_trim");
  int r = f ? f(pad) : 0;
  return exm_arena_trim() | r;
}
