/*
 * override.c: the only file that defines malloc & co.
 *
 * Requests below the threshold go to glibc's allocator through its
 * __libc_* entry points (no dlsym, so this works from the very first call,
 * made by ld.so or a constructor). When glibc returns NULL for a request
 * of EXM_SMALL_MAX or more, the arena gets a try before the caller sees
 * ENOMEM, as the original exm did (a smaller one fails as it would without
 * exm: its fast path is a tail call). Requests at or above the threshold go
 * to the arena.
 *
 * Never worse than without exm: a request the arena cannot serve (its data
 * directory is unusable or full, the --max-disk cap, the arena's own size,
 * which an address-space limit makes small) is tried in RAM through glibc
 * before the program sees ENOMEM, and exm says once, in one line, why and
 * where. Disk is still reserved before a block is handed out, so a block
 * the arena did serve never raises SIGBUS later.
 *
 * NULL and errno follow glibc 2.36 for every entry point, alignment and
 * size (its own tests check them: tests/glibc.test.ts).
 *
 * Pointers are told apart by address: one range check over the span of
 * all arenas, then one per arena inside it.
 *
 * madvise is defined here too, for one case: a program's MADV_HUGEPAGE on a
 * block of the arena that is advised random (EXM_ADVICE=random, exm_advise,
 * or the advisor) is not applied. On a file mapping VM_HUGEPAGE makes the
 * kernel read a whole 2 MiB folio on every fault before it looks at
 * MADV_RANDOM (numpy hints every large array so): 2 MiB read per random 4 KiB
 * touched. Every other call is the system call, as glibc's madvise is.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <link.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "arena.h"
#include "budget.h"
#include "core.h"
#include "fork.h"
#include "init.h"
#include "internal.h"
#include "msg.h"
#include "options.h"
#include "os.h"
#include "override.h"
#include "stats.h"
#include "tcache.h"
#include "trace.h"

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

size_t exm_fast_below;

void exm_threshold_changed(void) {
  size_t t = __atomic_load_n(&exm_cfg.threshold, __ATOMIC_RELAXED);
  __atomic_store_n(&exm_fast_below, t < EXM_SMALL_MAX ? t : EXM_SMALL_MAX, __ATOMIC_RELAXED);
}

static inline size_t fast_below(void) { return __atomic_load_n(&exm_fast_below, __ATOMIC_RELAXED); }

static inline size_t threshold(void) {
  exm_ensure_init();
  return __atomic_load_n(&exm_cfg.threshold, __ATOMIC_RELAXED);
}

/* glibc's code, found by the constructor. glibc's own small allocations
 * (stdio streams, its locale and NSS data...) stay in glibc's heap whatever
 * the threshold: glibc's fork writes into some of them in the child (it
 * resets the lock of every stream) before any atfork handler has run, while
 * the child still shares the arena's pages with its parent; in the arena
 * those writes would unlock the parent's streams under the threads that
 * hold them. Asked only on the slow paths (a size at or above a threshold
 * below EXM_SMALL_MAX). */
static uintptr_t libc_text, libc_text_end;

/* The slow paths' test: does a request of n bytes from `caller` go to
 * glibc? (After exm_init, with the threshold it set.) */
static inline int to_glibc(size_t n, const void *caller) {
  size_t t = threshold();
  if (n < t) return 1;
  return unlikely(t < EXM_SMALL_MAX) && n < EXM_SMALL_MAX &&
         (uintptr_t)caller - libc_text < libc_text_end - libc_text;
}

static int find_text(struct dl_phdr_info *info, size_t size, void *want) {
  (void)size;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
    uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
    if ((uintptr_t)want - lo < hi - lo) {
      libc_text = lo;
      libc_text_end = hi;
      return 1;
    }
  }
  return 0;
}

/* glibc's usable size of a block it handed out, read from the chunk's size
 * word as glibc's own malloc_usable_size does (ours shadows it, and a dlsym
 * may fail or allocate; realloc must never copy too few bytes). The low
 * three bits are flags; an mmapped chunk keeps two header words, others one. */
static size_t glibc_usable(void *p) {
  size_t head = ((size_t *)p)[-1];
  size_t size = head & ~(size_t)7;
  return head & 2 ? size - 2 * sizeof(size_t) : size - sizeof(size_t);
}

/* In RAM, through glibc: for a request the arena could not serve. */
static void *in_ram(size_t n, size_t align, int zero) {
  if (zero) return __libc_calloc(1, n);
  return align <= 16 ? __libc_malloc(n) : __libc_memalign(align, n);
}

static int told_ram;    /* the one line below was written */

/* The arena failed a request with err (exm_arena_alloc's code) and RAM
 * served it instead: say why, once per process. */
static void tell_ram(size_t n, int err, size_t cap, int yielded) {
  if (__atomic_exchange_n(&told_ram, 1, __ATOMIC_RELAXED)) return;
  char dir[EXM_PATH_MAX];   /* a copy under the arena lock: exm_set_dir may be writing it */
  if (exm_arena_get_dir(dir, sizeof dir)) dir[0] = 0;
  exm_line_t l = { .n = 0 };
  exm_line_str(&l, "exm: a request of ");
  exm_line_size(&l, n);
  exm_line_str(&l, " does not fit in the file-backed arena in ");
  exm_line_value(&l, dir);
  exm_line_str(&l, " (");
  /* The arena answers ENOMEM for every reason (core.c's commit): tell
   * them apart by what can be seen from here. */
  size_t cap_disk = exm_cfg_max_disk();
  uint64_t free_bytes, as_limit;
  int full;
  if (err == ENOSPC) exm_line_str(&l, "no space left on its filesystem");
  else if (err == EDQUOT) exm_line_str(&l, "disk quota exceeded");
  else if (err != ENOMEM) exm_line_err(&l, err);
  else if (cap_disk && exm_arena_committed() + n > cap_disk)
    exm_line_str(&l, "the --max-disk cap of "), exm_line_size(&l, cap_disk);
  else if (!exm_os_disk_space(dir, &free_bytes, &full) && free_bytes < n + ((size_t)1 << 20))
    exm_line_str(&l, "no space left on its filesystem");
  else {
    exm_line_str(&l, "the arena is ");
    exm_line_size(&l, cap);
    if (!exm_os_as_limit(&as_limit) && as_limit != UINT64_MAX) exm_line_str(&l, ", sized under the address-space limit");
    if (yielded) exm_line_str(&l, ", and gave up the address space it had not used for this request");
  }
  exm_line_str(&l, "); such requests are served in RAM");
  exm_line_emit(&l);
}

/* --threshold auto: a request at or above the threshold goes to RAM while
 * the budget (budget.c) takes it. */
static inline int budget_on(void) { return __atomic_load_n(&exm_cfg.threshold_auto, __ATOMIC_RELAXED); }

/* The arena, for a request at or above the threshold; RAM when it cannot. */
static void *from_arena(size_t n, size_t align, int zero) {
  int served, err = 0;
  /* A chunk from this thread's cache first: no lock, so not "inside" for a
   * fork from a signal handler (exm_enter); the cache stays consistent
   * for the child wherever the pop is interrupted (tcache.c). */
  if (align <= 16 && n < EXM_SMALL_MAX) {
    void *c = exm_tcache_pop(n);
    if (c) return zero ? memset(c, 0, n) : c;
  }
  if (unlikely(budget_on()) && exm_budget_take(n)) {
    void *p = in_ram(n, align, zero);
    if (p) return p;
    exm_budget_give(n);
  }
  exm_enter();
  void *p = exm_arena_alloc(n, align, zero, &served, &err);
  exm_leave();
  if (likely(p != NULL)) return p;
  size_t cap = exm_arena_cap();
  p = in_ram(n, align, zero);
  /* Under ulimit -v the arena's uncarved address space may be what
   * crowds glibc out (it takes half the limit): a request that fit in RAM
   * without exm must not fail with it. */
  uint64_t as_limit;
  int yielded = !p && n >= EXM_SMALL_MAX && !exm_os_as_limit(&as_limit) && as_limit != UINT64_MAX && exm_arena_yield_as(n);
  if (yielded) p = in_ram(n, align, zero);
  if (!p) {
    errno = ENOMEM;
    return NULL;
  }
  if (served) tell_ram(n, err ? err : ENOMEM, cap, yielded);   /* not served: the arena is unusable, said already */
  exm_trace_ram(n, served ? "the arena could not serve it (the line above says why)" : "the arena is unusable (see the line above)");
  return p;
}

/* glibc failed a below-threshold request: try the arena before failing. */
static void *fallback(size_t n, size_t align, int zero) {
  int served, err = 0;
  exm_enter();
  void *p = exm_arena_alloc(n, align, zero, &served, &err);
  exm_leave();
  if (p) __atomic_fetch_add(&exm_fallbacks, 1, __ATOMIC_RELAXED);
  else errno = ENOMEM;
  return p;
}

/* The fast paths: a request below exm_fast_below, a glibc pointer to free,
 * is one relaxed load and compare, then a tail call into glibc (no stack
 * frame; the disassembly is in the README). Below EXM_SMALL_MAX a NULL from
 * glibc goes to the program as it would without exm; everything else is out
 * of line. The caller's address is taken here and passed on: the slow
 * path's own would be malloc's. */
static __attribute__((noinline)) void *malloc_slow(size_t n, const void *caller) {
  if (to_glibc(n, caller)) {
    void *p = __libc_malloc(n);
    return likely(p != NULL) ? p : fallback(n, 16, 0);
  }
  return from_arena(n, 16, 0);
}

EXM_API void *malloc(size_t n) {
  if (likely(n < fast_below())) return __libc_malloc(n);
  return malloc_slow(n, __builtin_return_address(0));
}

static __attribute__((noinline)) void free_slow(void *p) {
  exm_arena_t *a = exm_arena_of(p);
  if (!a) return __libc_free(p);   /* between two arenas: glibc's */
  /* Into this thread's cache with no call in between (its slow path enters
   * by itself where it locks) */
  if (a == &exm_own && ((uintptr_t)p & (EXM_PAGE - 1)) && exm_tcache_push(&exm_own.core, p, "free")) return;
  exm_enter();
  exm_arena_free(a, p, "free");
  exm_leave();
}

EXM_API void free(void *p) {
  if (likely(!exm_in_span(p))) return __libc_free(p);   /* NULL too: __libc_free(NULL) does nothing */
  free_slow(p);
}

static __attribute__((noinline)) void *calloc_slow(size_t count, size_t size, const void *caller) {
  size_t n;
  if (__builtin_mul_overflow(count, size, &n)) {
    errno = ENOMEM;
    return NULL;
  }
  if (to_glibc(n, caller)) {
    void *p = __libc_calloc(count, size);
    return likely(p != NULL) ? p : fallback(n, 16, 1);
  }
  return from_arena(n, 16, 1);
}

EXM_API void *calloc(size_t count, size_t size) {
  size_t n;
  if (likely(!__builtin_mul_overflow(count, size, &n) && n < fast_below())) return __libc_calloc(count, size);
  return calloc_slow(count, size, __builtin_return_address(0));
}

static size_t usable_size(void *p, exm_arena_t *a, const char *who) {
  if (!a) return glibc_usable(p);
  exm_enter();
  size_t n = exm_arena_usable(a, p, who);
  exm_leave();
  return n;
}

/* p's contents (old usable bytes) into q, a new block of n bytes; p freed
 * (a: its arena, or NULL for glibc's). */
static void *move_into(void *q, void *p, exm_arena_t *a, size_t old, size_t n) {
  memcpy(q, p, old < n ? old : n);
  if (a) {
    exm_enter();
    exm_arena_free(a, p, "realloc");
    exm_leave();
  } else {
    __libc_free(p);
  }
  return q;
}

/* Move p into a new block of n bytes. */
static void *move_block(void *p, exm_arena_t *a, size_t n) {
  void *q = malloc(n);
  return q ? move_into(q, p, a, usable_size(p, a, "realloc"), n) : NULL;
}

static __attribute__((noinline)) void *realloc_slow(void *p, size_t n) {
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
    if (unlikely(budget_on())) {
      /* growing in RAM keeps glibc's realloc (mremap, no copy); the budget
       * already holds what a block at or above the threshold had */
      size_t old = glibc_usable(p), grow = old < t ? n : n > old ? n - old : 0;
      if (exm_budget_take(grow)) {
        void *q = __libc_realloc(p, n);
        if (q) return q;
        exm_budget_give(grow);
      }
    }
    return move_block(p, NULL, n);
  }
  /* An arena block stays in the arena while it is at or above the threshold;
   * below it, it moves to glibc, a block that fell back here while RAM was
   * short too (malloc serves it from the arena again if RAM still is). */
  if (n >= t) {
    if (a == &exm_own && n < EXM_SMALL_MAX) {   /* a small chunk: through the cache if it can */
      void *q = exm_tcache_realloc(&exm_own.core, p, n, "realloc");
      if (q) return q;
    }
    size_t old;
    exm_enter();
    void *q = exm_arena_realloc(a, p, n, &old, "realloc");
    exm_leave();
    if (q == p) return p;
    if (q) return move_into(q, p, a, old, n);   /* one lock for the failed resize and the new block */
  }
  return move_block(p, a, n);
}

/* Fast: a glibc block, or NULL, resized below exm_fast_below. glibc's
 * realloc(NULL, n) is its malloc(n) and realloc(p, 0) frees p and returns
 * NULL, as the slow path would. */
EXM_API void *realloc(void *p, size_t n) {
  if (likely(n < fast_below() && !exm_in_span(p))) return __libc_realloc(p, n);
  return realloc_slow(p, n);
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
  return from_arena(n, align, 0);
}

static inline int pow2(size_t x) { return x && !(x & (x - 1)); }

/* As glibc 2.36's _mid_memalign: an alignment of 16 or less is malloc's;
 * above 2^63 none is a power of two (EINVAL); others round up to one. Then
 * only the size can fail, with ENOMEM. */
static void *memalign_as_glibc(size_t align, size_t n) {
  if (align <= 16) return malloc(n);
  if (align > SIZE_MAX / 2 + 1) {
    errno = EINVAL;
    return NULL;
  }
  if (!pow2(align)) align = (size_t)1 << (64 - __builtin_clzll(align));
  return aligned(align, n);
}

/* glibc leaves errno at ENOMEM when it fails (the return value says it
 * too), and as it was otherwise. */
EXM_API int posix_memalign(void **out, size_t align, size_t n) {
  if (!pow2(align) || align % sizeof(void *)) return EINVAL;
  int saved = errno;
  void *p = memalign_as_glibc(align, n);
  if (!p) {
    errno = ENOMEM;
    return ENOMEM;
  }
  errno = saved;
  *out = p;
  return 0;
}

/* glibc 2.36's aligned_alloc is memalign (C17's stricter EINVAL for an
 * alignment that is not a power of two came with 2.38; a program that runs
 * on 2.36 must not fail under exm). */
EXM_API void *aligned_alloc(size_t align, size_t n) { return memalign_as_glibc(align, n); }

EXM_API void *memalign(size_t align, size_t n) { return memalign_as_glibc(align, n); }

EXM_API void *valloc(size_t n) { return aligned(exm_os_page_size(), n); }

EXM_API void *pvalloc(size_t n) {
  size_t page = exm_os_page_size();
  if (n > SIZE_MAX - page) {
    errno = ENOMEM;
    return NULL;
  }
  return aligned(page, n ? (n + page - 1) & ~(page - 1) : page);   /* glibc gives pvalloc(0) a page too */
}

EXM_API size_t malloc_usable_size(void *p) {
  if (!p) return 0;
  return usable_size(p, exm_arena_of(p), "malloc_usable_size");
}

EXM_API int madvise(void *addr, size_t len, int advice) {
  if (unlikely(advice == MADV_DONTNEED) && exm_in_span(addr) && exm_arena_dontneed(addr, len) == 0) return 0;
#ifdef MADV_HUGEPAGE
  if (unlikely(advice == MADV_HUGEPAGE) && exm_in_span(addr) && exm_arena_random_at(addr)) {
    exm_trace_hint_dropped(addr, len);
    return 0;   /* a hint: not applying it is allowed, and the program goes on as with it */
  }
#endif
  return (int)syscall(SYS_madvise, addr, len, advice);
}

#ifndef MCL_ONFAULT
#define MCL_ONFAULT 4
#endif

/* mlockall(MCL_CURRENT) locks and populates every mapping there is: with an
 * arena, terabytes of page cache (the process was OOM-killed). So the
 * current mappings but the arenas and their tables of segments (64 MiB of
 * address space each, a few pages of it used) are locked one by one, as the
 * kernel would (populated, or as pages come in with MCL_ONFAULT), and only
 * MCL_FUTURE goes to mlockall itself (exm maps an arena so that it is not
 * locked then: os.c). The arenas are never locked: paging them to their
 * file is what exm is for. (Locking an 8 TiB arena and unlocking it after
 * would not do: the kernel's count of locked pages overflows for a mapping
 * of 2^31 pages, and VmLck and RLIMIT_MEMLOCK go wrong for the process.)
 * Mappings without access are left unlocked (mlock refuses them). */
EXM_API int mlockall(int flags) {
  if (!(flags & MCL_CURRENT) || !exm_arena_mapped()) return (int)syscall(SYS_mlockall, flags);
  if ((flags & MCL_FUTURE) && syscall(SYS_mlockall, flags & ~MCL_CURRENT)) return -1;
  int err = exm_os_lock_mappings(flags & MCL_ONFAULT, exm_arena_unlocked);
  if (err) {
    errno = err;
    return -1;
  }
  return 0;
}

/* A program that lowers its address-space limit while an arena exists
 * (Python's resource.setrlimit, a sandbox) would find every later mmap and
 * brk refused: the arenas reserve terabytes of it. After the limit is set,
 * they give back what they have not carved (exm_arena_fit_as). A limit set
 * from outside (prlimit --pid) is not seen. */
static int set_limit(pid_t pid, int resource, const void *rl, void *old) {
  if (syscall(SYS_prlimit64, pid, resource, rl, old)) return -1;
  /* struct rlimit and rlimit64 are one layout on the 64-bit targets */
  const struct rlimit *r = rl;
  if (resource == RLIMIT_AS && r && r->rlim_cur != RLIM_INFINITY && (pid == 0 || pid == getpid()) && exm_arena_mapped())
    exm_arena_fit_as((size_t)r->rlim_cur);
  return 0;
}

EXM_API int prlimit(pid_t pid, enum __rlimit_resource resource, const struct rlimit *rl, struct rlimit *old) {
  return set_limit(pid, (int)resource, rl, old);
}
EXM_API int prlimit64(pid_t pid, enum __rlimit_resource resource, const struct rlimit64 *rl, struct rlimit64 *old) {
  return set_limit(pid, (int)resource, rl, old);
}
EXM_API int setrlimit(enum __rlimit_resource resource, const struct rlimit *rl) { return set_limit(0, (int)resource, rl, NULL); }
EXM_API int setrlimit64(enum __rlimit_resource resource, const struct rlimit64 *rl) { return set_limit(0, (int)resource, rl, NULL); }

__attribute__((constructor)) static void exm_constructor(void) {
  dl_iterate_phdr(find_text, (void *)(uintptr_t)&__libc_malloc);
  exm_setup();
  exm_stats_setup();
}
