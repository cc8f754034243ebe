/*
 * override.c: the only file that defines malloc & co.
 *
 * Requests below the threshold go to glibc's allocator through its
 * __libc_* entry points (no dlsym, so this works from the very first call,
 * made by ld.so or a constructor). When glibc returns NULL, the arena gets
 * a try before the caller sees ENOMEM, as the original exm did. Requests at
 * or above the threshold go to the arena; if the arena cannot be used at
 * all (unusable data directory) they pass through too. A full disk or the
 * disk cap gives NULL and ENOMEM: never a SIGBUS later.
 *
 * Pointers are told apart by address: one range check per arena.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static inline size_t threshold(void) {
  exm_ensure_init();
  return __atomic_load_n(&exm_cfg.threshold, __ATOMIC_RELAXED);
}

/* glibc's own malloc_usable_size (ours shadows it): looked up once, after
 * start-up, since dlsym may itself allocate. */
static size_t (*libc_usable)(void *);

static size_t glibc_usable(void *p) {
  if (unlikely(!libc_usable)) {
    void *f = dlsym(RTLD_NEXT, "malloc_usable_size");
    if (!f) return 0;
    __atomic_store_n(&libc_usable, (size_t (*)(void *))f, __ATOMIC_RELAXED);
  }
  return libc_usable(p);
}

/* The arena, for a request at or above the threshold (or after glibc
 * failed). *served == 0 means the arena is unusable: pass it through. */
static void *from_arena(size_t n, size_t align, int zero, int *served) {
  int err = 0;
  void *p = exm_arena_alloc(n, align, zero, served, &err);
  if (!*served) exm_trace_ram(n, "the arena is unusable (see the line above)");
  if (!p && *served) errno = ENOMEM;
  return p;
}

/* glibc failed a below-threshold request: try the arena before failing. */
static void *fallback(size_t n, size_t align, int zero) {
  int served;
  void *p = from_arena(n, align, zero, &served);
  if (p) __atomic_fetch_add(&exm_fallbacks, 1, __ATOMIC_RELAXED);
  else errno = ENOMEM;
  return p;
}

EXM_API void *malloc(size_t n) {
  if (likely(n < threshold())) {
    void *p = __libc_malloc(n);
    return likely(p != NULL) ? p : fallback(n, 16, 0);
  }
  int served;
  void *p = from_arena(n, 16, 0, &served);
  return served ? p : __libc_malloc(n);
}

EXM_API void free(void *p) {
  exm_arena_t *a = exm_arena_of(p);    /* NULL for NULL: __libc_free(NULL) does nothing */
  if (likely(!a)) __libc_free(p);
  else exm_arena_free(a, p, "free");
}

EXM_API void *calloc(size_t count, size_t size) {
  size_t n;
  if (__builtin_mul_overflow(count, size, &n)) {
    errno = ENOMEM;
    return NULL;
  }
  if (likely(n < threshold())) {
    void *p = __libc_calloc(count, size);
    return likely(p != NULL) ? p : fallback(n, 16, 1);
  }
  int served;
  void *p = from_arena(n, 16, 1, &served);
  return served ? p : __libc_calloc(count, size);
}

static size_t usable_size(void *p, exm_arena_t *a) {
  return a ? exm_arena_usable(a, p, "realloc") : glibc_usable(p);
}

/* Move p (old usable size `old`) into a new block of n bytes. */
static void *move_block(void *p, exm_arena_t *a, size_t n) {
  void *q = malloc(n);
  if (!q) return NULL;
  size_t old = usable_size(p, a);
  memcpy(q, p, old < n ? old : n);
  if (a) exm_arena_free(a, p, "realloc");
  else __libc_free(p);
  return q;
}

EXM_API void *realloc(void *p, size_t n) {
  if (!p) return malloc(n);
  if (n == 0) {            /* glibc frees and returns NULL */
    free(p);
    return NULL;
  }
  exm_arena_t *a = exm_arena_of(p);
  size_t t = threshold();
  if (likely(!a)) {
    if (n < t) {
      void *q = __libc_realloc(p, n);
      return q ? q : move_block(p, NULL, n);   /* malloc falls back to the arena */
    }
    return move_block(p, NULL, n);
  }
  /* An arena block stays in the arena while it is at or above the threshold
   * (or while RAM is short: it got there by falling back). */
  if (n >= t && exm_arena_resize(a, p, n, "realloc") == 0) return p;
  return move_block(p, a, n);
}

EXM_API void *reallocarray(void *p, size_t count, size_t size) {
  size_t n;
  if (__builtin_mul_overflow(count, size, &n)) {
    errno = ENOMEM;
    return NULL;
  }
  return realloc(p, n);
}

static void *aligned(size_t align, size_t n) {
  if (n < threshold()) {
    void *p = __libc_memalign(align, n);
    return p ? p : fallback(n, align, 0);
  }
  int served;
  void *p = from_arena(n, align, 0, &served);
  return served ? p : __libc_memalign(align, n);
}

static inline int pow2(size_t x) { return x && !(x & (x - 1)); }

EXM_API int posix_memalign(void **out, size_t align, size_t n) {
  if (!pow2(align) || align % sizeof(void *)) return EINVAL;
  int saved = errno;
  void *p = aligned(align, n);
  errno = saved;
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}

EXM_API void *aligned_alloc(size_t align, size_t n) {
  if (!pow2(align)) {
    errno = EINVAL;
    return NULL;
  }
  return aligned(align, n);
}

EXM_API void *memalign(size_t align, size_t n) {
  if (align > ((size_t)1 << 62)) {
    errno = EINVAL;
    return NULL;
  }
  if (align < 16) align = 16;
  if (!pow2(align)) align = (size_t)1 << (64 - __builtin_clzll(align));   /* as glibc: round up */
  return aligned(align, n);
}

EXM_API void *valloc(size_t n) { return aligned((size_t)sysconf(_SC_PAGESIZE), n); }

EXM_API void *pvalloc(size_t n) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  if (n > SIZE_MAX - page) {
    errno = ENOMEM;
    return NULL;
  }
  return aligned(page, n ? (n + page - 1) & ~(page - 1) : page);
}

EXM_API size_t malloc_usable_size(void *p) {
  if (!p) return 0;
  exm_arena_t *a = exm_arena_of(p);
  return a ? exm_arena_usable(a, p, "malloc_usable_size") : glibc_usable(p);
}

__attribute__((constructor)) static void exm_constructor(void) {
  exm_arena_setup();
  exm_stats_setup();
  glibc_usable(NULL);   /* resolve it now, outside any allocation */
}
