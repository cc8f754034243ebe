/*
 * arena.c: this process's arenas, their locks, and what fork does to them.
 *
 * A process has one arena of its own, created at its first file-backed
 * allocation (most processes started under exm never make one), and the
 * arenas it inherited from its parents, which it may read, write and free
 * blocks of but never carves or gives disk back from: the parent still
 * owns them. What a child sees of its parent's arena is the child mode:
 *  - cow: the range is remapped MAP_PRIVATE in the child; its writes become
 *    private pages, and freeing a block drops them;
 *  - shared: the child keeps the MAP_SHARED mapping;
 *  - duplicate: the parent copies its committed extents (disk reserved,
 *    data copied in the kernel, holes skipped) into a new file before fork
 *    returns, and the child maps that at the same address and keeps it as
 *    its own arena, consistent as of the fork.
 * Each arena has one mutex; fork takes them all (pthread_atfork), so the
 * child always finds consistent structures, even with threads allocating.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "internal.h"

#define MAX_INHERITED 32

int exm_ready;
uint64_t exm_fallbacks;
static uint64_t forks, alloc_ns;
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;

exm_arena_t exm_own = { .lock = PTHREAD_MUTEX_INITIALIZER, .fd = -1 };
static int own_state;                  /* 0 not yet, 1 ready, -1 unusable: pass through */
static exm_arena_t inherited[MAX_INHERITED];
int exm_n_inherited;
static int no_fallocate, no_punch;     /* filesystem limits, warned about once */
static int advised_blocks;             /* some block carries its own advice */

void exm_init(void) {
  pthread_mutex_lock(&init_lock);
  if (!exm_ready) {
    exm_options_load();
    __atomic_store_n(&exm_ready, 1, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&init_lock);
}

/* ---- host callbacks for the carving core -------------------------------- */

/* Is the arena's descriptor still its file? If the program closed it (and
 * perhaps reused the number for a file of its own), exm must never touch
 * that descriptor again: the arena stops growing and, for the process's own
 * arena, new large allocations stay in RAM (host_commit). Existing blocks
 * live on: the mapping holds the file. Called with or without the lock
 * (a large block's disk is given back outside it), so a->fd is atomic and
 * the loss is told once. */
static int fd_intact(exm_arena_t *a) {
  int fd = __atomic_load_n(&a->fd, __ATOMIC_RELAXED);
  if (fd < 0) return 0;
  if (exm_os_same_file(fd, a->dev, a->ino)) return 1;
  if (__atomic_exchange_n(&a->fd, -1, __ATOMIC_RELAXED) >= 0 && a == &exm_own)
    exm_warn("the program closed the descriptor of exm's backing file; new large allocations stay in RAM", NULL, 0);
  return 0;
}

/* Under the arena's lock. */
static int host_commit(void *ctx, size_t off, size_t len) {
  exm_arena_t *a = ctx;
  if (a->kind != ARENA_OWN) return ENOMEM;
  if (!fd_intact(a)) {
    if (a == &exm_own) own_state = -1;
    return ENOMEM;
  }
  if (no_fallocate) return 0;
  int err = exm_os_reserve(__atomic_load_n(&a->fd, __ATOMIC_RELAXED), off, len);
  if (err == EOPNOTSUPP) {
    no_fallocate = 1;
    exm_line_t l = { .n = 0 };
    exm_line_str(&l, "exm: cannot reserve disk in ");
    exm_line_value(&l, exm_cfg.dir);
    exm_line_str(&l, " (no fallocate): blocks stay sparse, and a full disk will crash the program with SIGBUS");
    exm_line_emit(&l);
    return 0;
  }
  return err;
}

static void host_decommit(void *ctx, size_t off, size_t len) {
  exm_arena_t *a = ctx;
  if (a->kind == ARENA_COW) {
    exm_os_drop_private(a->core.base + off, len);
  } else if (a->kind == ARENA_OWN && !__atomic_load_n(&no_punch, __ATOMIC_RELAXED) && fd_intact(a)) {
    int err = exm_os_punch(__atomic_load_n(&a->fd, __ATOMIC_RELAXED), off, len);
    if (err == EOPNOTSUPP && !__atomic_exchange_n(&no_punch, 1, __ATOMIC_RELAXED)) {
      if (exm_cfg.verbose) exm_warn("cannot punch holes in files of ", exm_cfg.dir, err);
    }
  }
}

static void *host_meta_map(void *ctx, size_t len) { (void)ctx; return exm_os_anon(len); }
static void host_meta_unmap(void *ctx, void *p, size_t len) { (void)ctx; exm_os_unmap(p, len); }

static void set_host(exm_arena_t *a) {
  a->core.host = (exm_host_t){ a, host_commit, host_decommit, host_meta_map, host_meta_unmap };
}

/* ---- the process's own arena ---------------------------------------------- */

static void mark_unusable(const char *why, int err) {
  own_state = -1;
  exm_line_t l = { .n = 0 };
  exm_line_str(&l, "exm: ");
  exm_line_str(&l, why);
  exm_line_value(&l, exm_cfg.dir);
  if (err) exm_line_str(&l, ": "), exm_line_err(&l, err);
  exm_line_str(&l, "; allocations stay in RAM");
  exm_line_emit(&l);
}

/* Called with exm_own.lock held. */
static void own_create(void) {
  int fd, err = exm_os_tmpfile(exm_cfg.dir, &fd);
  if (err) return mark_unusable("cannot create a backing file in ", err);
  size_t cap;
  char *base = exm_os_map_file(fd, &cap);
  if (!base) {
    close(fd);
    return mark_unusable("cannot map a backing file in ", ENOMEM);
  }
  if (exm_os_file_id(fd, &exm_own.dev, &exm_own.ino)) {
    close(fd);
    return mark_unusable("cannot use a backing file in ", EIO);
  }
  exm_core_init(&exm_own.core, base, cap, &(exm_host_t){ 0 });
  set_host(&exm_own);
  exm_own.core.max_commit = exm_cfg.max_disk;
  exm_own.fd = fd;
  exm_own.kind = ARENA_OWN;
  if (exm_cfg.advice >= EXM_ADVICE_SEQUENTIAL) exm_os_madvise(base, cap, exm_cfg.advice);
  __atomic_store_n(&own_state, 1, __ATOMIC_RELEASE);
  exm_trace_arena(cap);
}

/* At start-up: an unusable data directory is reported once, up front. */
static void check_dir(void) {
  int err = exm_os_dir_usable(exm_cfg.dir);
  if (err) return mark_unusable("unusable data directory ", err);
  struct statvfs vfs;
  if (!statvfs(exm_cfg.dir, &vfs) && vfs.f_bavail == 0 && vfs.f_blocks)
    mark_unusable("no space left in data directory ", 0);
}

exm_arena_t *exm_arena_of_inherited(const void *p) {
  for (int i = 0; i < exm_n_inherited; i++)
    if ((uintptr_t)p - (uintptr_t)inherited[i].core.base < inherited[i].core.cap) return &inherited[i];
  return NULL;
}

/* ---- per-thread cache of small chunks -------------------------------------
 * With a threshold below a page, every malloc/free of a small object would
 * take the arena lock. Like glibc's tcache, each thread keeps up to
 * TC_LIMIT freed chunks per size class (chunk sizes 32..4112) and hands them
 * out again without the lock. Cached chunks stay "in use" for the carving
 * core. A cached chunk carries EXM_CHUNK_CACHED in its head, set and tested
 * in one atomic operation: a second free of it, from this thread or any
 * other, is caught at once (glibc's tcache only looks in the calling
 * thread's own list), and the core refuses to free a cached chunk. A thread
 * gives its cache back when it exits, whether it ever allocated or only
 * freed (a consumer thread). Small blocks held in caches count as live in
 * the statistics. */
#define TC_CLASSES 256                          /* chunk sizes 32 .. 4112 */
#define TC_MAX_CHUNK ((size_t)(TC_CLASSES + 1) * 16)
#define TC_LIMIT(cls) ((cls) < 64 ? 16 : 4)      /* at most ~2.5 MiB cached per thread */
#define TC_BATCH 8                               /* chunks taken per lock on a miss */

typedef struct tcache {
  void *head[TC_CLASSES];
  uint8_t count[TC_CLASSES];
  int registered;                    /* thread-exit destructor armed */
  int gone;                          /* the destructor ran: no caching any more */
} tcache_t;

static __thread tcache_t tc;
static pthread_key_t tc_exit_key;
static int tc_exit_ready;

static inline void mark_cached(void *p) {
  __atomic_fetch_or(exm_core_head_of(p), EXM_CHUNK_CACHED, __ATOMIC_RELAXED);
}
static inline void unmark_cached(void *p) {
  __atomic_fetch_and(exm_core_head_of(p), ~EXM_CHUNK_CACHED, __ATOMIC_RELAXED);
}

static inline void cache_put(unsigned cls, void *p) {
  *(void **)p = tc.head[cls];
  tc.head[cls] = p;
  tc.count[cls]++;
}

static void *cache_pop(size_t n) {
  size_t sz = exm_core_chunk_size_for(n);
  if (sz > TC_MAX_CHUNK) return NULL;
  unsigned cls = (unsigned)(sz >> 4) - 2;
  void **p = tc.head[cls];
  if (!p) return NULL;
  tc.head[cls] = p[0];
  tc.count[cls]--;
  unmark_cached(p);
  return p;
}

/* Arm the thread-exit flush. Outside every lock of ours: pthread_setspecific
 * may allocate (keys past the first 32). */
static void cache_arm(void) {
  if (likely(tc.registered) || !tc_exit_ready) return;
  tc.registered = 1;
  pthread_setspecific(tc_exit_key, &tc);
}

/* Under exm_own.lock, after a miss: stock the cache with more chunks of the
 * size just served, so the next few mallocs of it take no lock. */
static void cache_refill(size_t chunk) {
  if (chunk > TC_MAX_CHUNK || tc.gone) return;
  unsigned cls = (unsigned)(chunk >> 4) - 2;
  for (int i = 1; i < TC_BATCH && tc.count[cls] < TC_LIMIT(cls); i++) {
    int dirty, err;
    /* a request that stays small (a 4112-byte chunk is 4095 bytes, not 4104,
     * which would be a page block: shared-mode children write into those) */
    size_t n = chunk - 8 < EXM_SMALL_MAX ? chunk - 8 : EXM_SMALL_MAX - 1;
    void *q = exm_core_alloc(&exm_own.core, n, 16, 0, &dirty, &err);
    if (!q) break;
    mark_cached(q);
    cache_put(cls, q);
  }
}

/* 1 when p (a chunk of our own arena) went into this thread's cache, or
 * went back to the arena together with half of a full cache bin. */
static int cache_push(void *p, const char *who) {
  size_t sz = exm_core_small_peek(&exm_own.core, p);
  if (!sz || sz > TC_MAX_CHUNK || tc.gone) return 0;
  unsigned cls = (unsigned)(sz >> 4) - 2;
  if (__atomic_fetch_or(exm_core_head_of(p), EXM_CHUNK_CACHED, __ATOMIC_RELAXED) & EXM_CHUNK_CACHED)
    exm_bad_pointer(who, p);          /* already in a cache: a double free */
  if (tc.count[cls] >= TC_LIMIT(cls)) {
    /* Full: p and half of the bin go back, under one lock. */
    int saved = errno;
    pthread_mutex_lock(&exm_own.lock);
    unmark_cached(p);
    int bad = exm_core_free(&exm_own.core, p);
    for (int i = TC_LIMIT(cls) / 2; i > 0 && !bad; i--) {
      void **q = tc.head[cls];
      tc.head[cls] = q[0];
      tc.count[cls]--;
      unmark_cached(q);
      exm_core_free(&exm_own.core, q);
    }
    pthread_mutex_unlock(&exm_own.lock);
    errno = saved;
    if (bad) exm_bad_pointer(who, p);
    return 1;
  }
  if (unlikely(!tc.registered)) {
    int saved = errno;
    cache_arm();
    errno = saved;
  }
  cache_put(cls, p);
  return 1;
}

static void cache_flush(tcache_t *t) {
  for (unsigned cls = 0; cls < TC_CLASSES; cls++) {
    void **p;
    while ((p = t->head[cls])) {
      t->head[cls] = p[0];
      t->count[cls]--;
      unmark_cached(p);
      exm_arena_t *a = exm_arena_of(p);
      if (a) {
        pthread_mutex_lock(&a->lock);
        exm_core_free(&a->core, p);
        pthread_mutex_unlock(&a->lock);
      }
    }
    t->count[cls] = 0;
  }
}

/* The thread is exiting: give the cache back, and cache nothing more (what
 * it frees from now on, in later destructors or libc's own teardown, goes
 * straight back to the arena). */
static void cache_exit(void *arg) {
  tcache_t *t = arg;
  cache_flush(t);
  t->gone = 1;
}

/* In a forked child: the caches of the parent's other threads did not come
 * along, so their chunks lose the mark (they stay leaked: nothing in the
 * child refers to them); the calling thread's own cache came along. */
static void cache_after_fork(exm_core_t *c) {
  exm_core_clear_cached(c);
  for (unsigned cls = 0; cls < TC_CLASSES; cls++)
    for (void **p = tc.head[cls]; p; p = p[0])
      if (exm_core_owns(c, p)) mark_cached(p);
}

void *exm_arena_alloc(size_t n, size_t align, int zero, int *served, int *err) {
  if (align <= 16 && n < EXM_SMALL_MAX) {
    void *p = cache_pop(n);
    if (p) {
      *served = 1;
      if (zero) memset(p, 0, n);
      return p;
    }
  }
  pthread_mutex_lock(&exm_own.lock);
  if (unlikely(own_state <= 0)) {
    if (own_state == 0) own_create();
    if (own_state < 0) {
      pthread_mutex_unlock(&exm_own.lock);
      *served = 0;
      *err = ENOMEM;
      return NULL;
    }
  }
  *served = 1;
  int timed = n >= EXM_SMALL_MAX;    /* small ones are too quick to be worth a clock read */
  uint64_t t0 = timed ? exm_os_now_ns() : 0;
  int dirty = 0;
  void *p = exm_core_alloc(&exm_own.core, n, align, zero ? EXM_CORE_ZERO : 0, &dirty, err);
  if (timed) __atomic_fetch_add(&alloc_ns, exm_os_now_ns() - t0, __ATOMIC_RELAXED);
  else if (p && align <= 16) cache_refill(exm_core_chunk_size_for(n));
  if (!p && own_state < 0) *served = 0;    /* lost its file just now: RAM instead */
  pthread_mutex_unlock(&exm_own.lock);
  if (unlikely(!tc.registered) && !timed) cache_arm();
  if (*served) exm_trace_block(p, n, *err);
  if (p && zero && dirty) memset(p, 0, n);
  /* A new block starts with the kernel's default advice: MADV_SEQUENTIAL
   * would make a copy that reads back what it just wrote (bytearray * n,
   * tile, repeat) refault every page of it even in RAM; the advisor gives a
   * block SEQUENTIAL once it sees it being scanned out of core. */
  if (p && n >= exm_advisor_min() && exm_cfg.advice == EXM_ADVICE_AUTO) exm_advisor_block(n);
  return p;
}

void exm_bad_pointer(const char *who, const void *p) {
  exm_line_t l = { .n = 0 };
  exm_line_str(&l, "exm: ");
  exm_line_str(&l, who);
  exm_line_str(&l, "(): pointer 0x");
  char hex[17];
  uintptr_t v = (uintptr_t)p;
  for (int i = 15; i >= 0; i--, v >>= 4) hex[i] = "0123456789abcdef"[v & 15];
  hex[16] = 0;
  exm_line_str(&l, hex);
  exm_line_str(&l, " is not a live block of the file-backed arena (double free or corrupted pointer); aborting");
  exm_line_emit(&l);
  abort();
}

/* A block given its own advice (by the user or the advisor) gets the
 * arena's default back when freed. */
static void reset_advice(exm_arena_t *a, void *p) {
  exm_ext_t *e = exm_core_block(&a->core, p);
  if (e && e->advice) {
    exm_os_madvise(p, e->len, exm_cfg.advice >= EXM_ADVICE_SEQUENTIAL ? exm_cfg.advice : EXM_ADVICE_NORMAL);
    e->advice = 0;
  }
}

/* ---- for the advisor (advisor.c) ------------------------------------------ */

char *exm_arena_base(void) { return exm_own.core.base; }

int exm_arena_large_blocks(size_t min, size_t *offs, size_t *lens, int max) {
  pthread_mutex_lock(&exm_own.lock);
  int n = own_state == 1 ? exm_core_large(&exm_own.core, min, offs, lens, max) : 0;
  pthread_mutex_unlock(&exm_own.lock);
  return n;
}

void exm_arena_auto_advise(size_t off, size_t len, int advice, int announce) {
  pthread_mutex_lock(&exm_own.lock);
  exm_ext_t *e = own_state == 1 ? exm_core_block(&exm_own.core, exm_own.core.base + off) : NULL;
  if (e && e->len == len && (e->advice == 0 || (e->advice & 0x80)) && e->advice != (0x80 | advice)) {
    int was = e->advice;
    if (!exm_os_madvise(exm_own.core.base + off, len, advice)) {
      e->advice = (uint8_t)(0x80 | advice);
      advised_blocks = 1;
      /* --verbose tells of real switches (random <-> sequential), not of a
       * block (grown by realloc, say) getting its first advice */
      if (announce && was && exm_cfg.verbose) {
        exm_line_t l = { .n = 0 };
        exm_line_str(&l, "exm: advice for a block of ");
        exm_line_size(&l, len);
        exm_line_str(&l, advice == EXM_ADVICE_RANDOM ? ": random" : ": sequential");
        exm_line_emit(&l);
      }
    }
  }
  pthread_mutex_unlock(&exm_own.lock);
}

void exm_arena_free(exm_arena_t *a, void *p, const char *who) {
  if (a == &exm_own && ((uintptr_t)p & (EXM_PAGE - 1)) && cache_push(p, who)) return;
  int saved = errno;
  int timed = !((uintptr_t)p & (EXM_PAGE - 1));    /* page blocks: the ones with system calls */
  pthread_mutex_lock(&a->lock);
  uint64_t t0 = timed ? exm_os_now_ns() : 0;
  if (unlikely(advised_blocks)) reset_advice(a, p);
  exm_ext_t *busy;
  int r = exm_core_free_begin(&a->core, p, &busy);
  pthread_mutex_unlock(&a->lock);
  if (busy) {
    /* Giving back a large block's disk can take long (the filesystem frees
     * its extents, the page cache drops its pages): not under the lock. */
    a->core.host.decommit(a->core.host.ctx, busy->off, busy->len);
    pthread_mutex_lock(&a->lock);
    exm_core_free_end(&a->core, busy);
    pthread_mutex_unlock(&a->lock);
  }
  if (timed) __atomic_fetch_add(&alloc_ns, exm_os_now_ns() - t0, __ATOMIC_RELAXED);
  errno = saved;
  if (r) exm_bad_pointer(who, p);
}

int exm_arena_resize(exm_arena_t *a, void *p, size_t n, const char *who) {
  if (a->kind != ARENA_OWN) {
    if (!exm_arena_usable(a, p, who)) exm_bad_pointer(who, p);
    return ENOMEM;   /* inherited blocks move: the parent owns the space around them */
  }
  pthread_mutex_lock(&a->lock);
  int r = exm_core_resize(&a->core, p, n);
  pthread_mutex_unlock(&a->lock);
  if (r < 0) exm_bad_pointer(who, p);
  return r;
}

size_t exm_arena_usable(exm_arena_t *a, const void *p, const char *who) {
  pthread_mutex_lock(&a->lock);
  size_t n = exm_core_usable(&a->core, p);
  pthread_mutex_unlock(&a->lock);
  if (!n) exm_bad_pointer(who, p);
  return n;
}

/* ---- API support ---------------------------------------------------------- */

/* in_signal: called from a signal handler, maybe interrupting a thread
 * that holds the lock: read without it (a torn figure beats a deadlock). */
void exm_arena_stats(exm_stats_t *out, int in_signal) {
  memset(out, 0, sizeof *out);
  if (!in_signal) {
    cache_flush(&tc);     /* the caller's cached chunks are free, not live */
    pthread_mutex_lock(&exm_own.lock);
  }
  const exm_core_stats_t *s = &exm_own.core.st;
  out->live_bytes = s->live_bytes;
  out->peak_live_bytes = s->peak_live_bytes;
  out->live_blocks = s->live_blocks;
  out->total_allocs = s->total_allocs;
  out->total_frees = s->total_frees;
  out->disk_reserved = no_fallocate ? 0 : s->committed;
  out->peak_disk_reserved = no_fallocate ? 0 : s->peak_committed;
  out->bytes_punched = s->punched;
  out->arena_size = s->top_peak;
  out->failures = s->failures;
  out->fallbacks = exm_fallbacks;
  out->forks = forks;
  out->alloc_ns = __atomic_load_n(&alloc_ns, __ATOMIC_RELAXED);
  if (!in_signal) pthread_mutex_unlock(&exm_own.lock);
}

static int check_one(exm_arena_t *a) {
  char msg[200];
  pthread_mutex_lock(&a->lock);
  int r = exm_core_check(&a->core, msg, sizeof msg);
  pthread_mutex_unlock(&a->lock);
  if (r) exm_warn("exm_check: arena inconsistent: ", msg, 0);
  return r ? EFAULT : 0;
}

int exm_arena_check(void) {
  int err = exm_own.core.cap ? check_one(&exm_own) : 0;
  for (int i = 0; i < exm_n_inherited && !err; i++) err = check_one(&inherited[i]);
  return err;
}

int exm_arena_lookup(const void *p, exm_block_info_t *info) {
  exm_arena_t *a = exm_arena_of(p);
  if (!a) return ENOENT;
  void *base;
  size_t size;
  pthread_mutex_lock(&a->lock);
  int found = exm_core_find(&a->core, p, &base, &size, NULL);
  pthread_mutex_unlock(&a->lock);
  if (!found) return ENOENT;
  memset(info, 0, sizeof *info);
  info->base = base;
  info->size = size;
  info->offset = (size_t)((char *)base - a->core.base);
  info->fd = __atomic_load_n(&a->fd, __ATOMIC_RELAXED);
  if (info->fd >= 0) {
    exm_line_t l = { .n = 0 };
    exm_line_str(&l, "/proc/self/fd/");
    exm_line_u64(&l, (uint64_t)info->fd);
    memcpy(info->path, l.buf, l.n);
  }
  return 0;
}

/* The arena's policy from now on. A fixed advice applies to the whole range
 * at once (a per-block call on every allocation would cost a system call and
 * two VMAs per block); auto hands the large blocks to the advisor. */
int exm_arena_set_advice(int advice) {
  pthread_mutex_lock(&exm_own.lock);
  exm_cfg.advice = advice;
  if (own_state == 1) {
    exm_os_madvise(exm_own.core.base, exm_own.core.cap, advice >= EXM_ADVICE_SEQUENTIAL ? advice : EXM_ADVICE_NORMAL);
    exm_core_clear_advice(&exm_own.core);
  }
  pthread_mutex_unlock(&exm_own.lock);
  return 0;
}

int exm_arena_advise(void *p, int advice) {
  exm_arena_t *a = exm_arena_of(p);
  if (!a) return ENOENT;
  void *base;
  size_t size;
  exm_ext_t *e;
  pthread_mutex_lock(&a->lock);
  int found = exm_core_find(&a->core, p, &base, &size, &e);
  if (found && e && advice == EXM_ADVICE_AUTO) {
    /* Back to the arena's policy: the advisor's care under auto. */
    int autop = exm_cfg.advice == EXM_ADVICE_AUTO;
    int err = exm_os_madvise(base, size, autop || exm_cfg.advice < EXM_ADVICE_SEQUENTIAL ? EXM_ADVICE_NORMAL : exm_cfg.advice);
    if (!err) e->advice = 0;
    pthread_mutex_unlock(&a->lock);
    return err;
  }
  int err = !found ? ENOENT : !e ? 0 : exm_os_madvise(base, size, advice);
  if (found && e && !err) {
    e->advice = (uint8_t)(advice + 1);     /* the user's: the advisor keeps off */
    advised_blocks = 1;
  }
  pthread_mutex_unlock(&a->lock);
  return err;
}

int exm_arena_set_dir(const char *dir) {
  int err = exm_os_dir_usable(dir);
  size_t n = strlen(dir);
  if (!err && (dir[0] != '/' || n >= EXM_PATH_MAX)) err = EINVAL;
  if (err) return err;
  pthread_mutex_lock(&exm_own.lock);
  memcpy(exm_cfg.dir, dir, n + 1);
  if (own_state < 0 && !exm_own.core.cap) own_state = 0;   /* a usable directory at last */
  pthread_mutex_unlock(&exm_own.lock);
  return 0;
}

/* exm_set_dir may be rewriting the string in another thread. */
int exm_arena_get_dir(char *buf, size_t len) {
  pthread_mutex_lock(&exm_own.lock);
  size_t n = strlen(exm_cfg.dir);
  int err = n + 1 > len ? ERANGE : 0;
  if (!err) memcpy(buf, exm_cfg.dir, n + 1);
  pthread_mutex_unlock(&exm_own.lock);
  return err;
}

int exm_arena_set_max_disk(size_t bytes) {
  pthread_mutex_lock(&exm_own.lock);
  exm_cfg.max_disk = bytes;
  exm_own.core.max_commit = bytes;
  pthread_mutex_unlock(&exm_own.lock);
  return 0;
}

/* ---- for heapinfo.c (mallinfo & co) ------------------------------------------ */

static int heap_extent(void *ctx, size_t off, size_t len, int state) {
  exm_heap_t *h = ctx;
  (void)off;
  if (state == EXT_SEG) h->small_space += len;
  else if (state == EXT_USED) h->large_blocks++, h->large_bytes += len;
  return 0;
}

static void heap_of(exm_arena_t *a, exm_heap_t *h) {
  exm_heap_t one = { 0 };
  pthread_mutex_lock(&a->lock);
  exm_core_walk(&a->core, heap_extent, &one);
  size_t live = a->core.st.live_bytes, blocks = a->core.st.live_blocks;
  pthread_mutex_unlock(&a->lock);
  /* page blocks count their whole extent in live_bytes (core.c) */
  one.small_live = live > one.large_bytes ? live - one.large_bytes : 0;
  one.small_blocks = blocks > one.large_blocks ? blocks - one.large_blocks : 0;
  if (one.small_live > one.small_space) one.small_live = one.small_space;
  h->small_space += one.small_space;
  h->small_live += one.small_live;
  h->small_blocks += one.small_blocks;
  h->large_blocks += one.large_blocks;
  h->large_bytes += one.large_bytes;
  h->arena_bytes += a->core.cap;
}

void exm_arena_heap(exm_heap_t *h) {
  memset(h, 0, sizeof *h);
  if (exm_own.core.cap) heap_of(&exm_own, h);
  for (int i = 0; i < exm_n_inherited; i++) heap_of(&inherited[i], h);
}

int exm_arena_trim(void) {
  cache_flush(&tc);
  pthread_mutex_lock(&exm_own.lock);
  int any = own_state == 1 && exm_own.core.dirty_bytes > 0;
  if (any) exm_core_flush(&exm_own.core);
  pthread_mutex_unlock(&exm_own.lock);
  return any;
}

/* ---- fork -------------------------------------------------------------------
 *
 * What the child needs a copy of is copied AFTER the fork, by the parent,
 * from its parent handler, while it still holds every lock (so no block is
 * freed, reused or punched meanwhile) and before fork returns in the
 * parent; the child waits for it in its own handler (copy_pipe). So the copy
 * holds everything written before fork was called. Writes that other
 * threads of the parent make while the copy is made may or may not be in
 * it, as with any write racing the fork; writes the forking thread makes
 * after fork returns never are. The parent never waits for the child: a
 * child that is stopped or traced holds nobody up.
 *
 * What is copied, into a new file in the data directory (disk reserved):
 *  - duplicate mode: every extent holding disk; the child maps the copy as
 *    its own arena;
 *  - cow when the program has closed the arena's descriptor: the same (a
 *    copy-on-write view needs the file), so the child never shares the
 *    parent's memory;
 *  - otherwise the small-chunk segments only, when there are any: they keep
 *    their bookkeeping in band, and a child that saw them through the
 *    parent's file would have the parent's later frees rewrite the headers
 *    its own allocator state depends on (and in shared mode its frees would
 *    rewrite the parent's). The child maps the copy of each segment over it.
 *    When the data directory cannot take the copy, it goes to a memfd (RAM).
 */

enum { COPY_NONE, COPY_SEGS, COPY_ALL };
static void copy_make(void);

static int fork_mode;                 /* the child mode of this fork, read once */
static int copy_plan;                 /* COPY_* */
static int copy_src = -1;             /* the arena's descriptor, -1 when the program closed it */
static int copy_fd = -1, copy_mem = -1;
static int copy_pipe[2] = { -1, -1 }; /* parent -> child: one byte, copy_result */
static char copy_result;              /* 'a' all in copy_fd, 'f' segments in copy_fd, 'm' in copy_mem, 0 none */

typedef struct copy_ctx { int to, reserve, segs_only, err; } copy_ctx_t;

static int copy_one(void *ctx, size_t off, size_t len, int state) {
  copy_ctx_t *d = ctx;
  if (d->segs_only && state != EXT_SEG) return 0;
  return d->err = exm_os_copy_range(copy_src, exm_own.core.base, d->to, off, len, d->reserve);
}

static int copy_into(int to, int reserve, int segs_only) {
  copy_ctx_t d = { to, reserve, segs_only, 0 };
  return to < 0 ? EBADF : exm_core_walk(&exm_own.core, copy_one, &d);
}

/* In the parent, every lock held: decide what the child gets a copy of. */
static void copy_prepare(void) {
  copy_plan = COPY_NONE;
  copy_result = 0;
  fork_mode = __atomic_load_n(&exm_cfg.child, __ATOMIC_RELAXED);
  if (!exm_own.core.cap) return;               /* no arena of our own */
  copy_src = fd_intact(&exm_own) ? exm_own.fd : -1;
  if (fork_mode == EXM_CHILD_DUPLICATE || (fork_mode == EXM_CHILD_COW && copy_src < 0)) copy_plan = COPY_ALL;
  else if (exm_own.core.seg_count) copy_plan = COPY_SEGS;
  else return;
  if (exm_os_new_like(exm_cfg.dir, exm_own.core.cap, &copy_fd)) copy_fd = -1;
  if (exm_own.core.seg_count && exm_os_memfd(exm_own.core.cap, &copy_mem)) copy_mem = -1;
  if (exm_os_pipe(copy_pipe)) {
    /* No pipe to say when the copy is done: make it now, before the fork
     * (structures consistent, data as of now). */
    copy_pipe[0] = copy_pipe[1] = -1;
    copy_make();
  }
}

/* In the parent, after the fork or (without a pipe) before it. */
static void copy_make(void) {
  int err = 0;
  if (copy_plan == COPY_ALL && !(err = copy_into(copy_fd, 1, 0))) {
    copy_result = 'a';
    return;
  }
  if (err) exm_warn("could not copy the file-backed arena for a forked child", NULL, err);
  if (!exm_own.core.seg_count) return;
  if (!copy_into(copy_fd, 1, 1)) copy_result = 'f';
  else if (!copy_into(copy_mem, 0, 1)) copy_result = 'm';
}

static void copy_close(void) {
  if (copy_fd >= 0) close(copy_fd);
  if (copy_mem >= 0) close(copy_mem);
  copy_fd = copy_mem = -1;
}

static void copy_parent(void) {
  if (copy_pipe[1] >= 0) {
    copy_make();
    /* the read end is still open here: no SIGPIPE if the child is gone */
    while (write(copy_pipe[1], &copy_result, 1) < 0 && errno == EINTR) {}
    close(copy_pipe[0]);
    close(copy_pipe[1]);
    copy_pipe[0] = copy_pipe[1] = -1;
  }
  copy_close();
}

static int snapshot_segment(void *ctx, size_t off, size_t len, int state) {
  exm_arena_t *a = ctx;
  if (state != EXT_SEG) return 0;
  int err = exm_os_snapshot(a->core.base + off, len);
  if (err) exm_warn("could not give a forked child its own copy of small blocks", NULL, err);
  return err;
}

static int map_segment(void *ctx, size_t off, size_t len, int state) {
  int fd = *(int *)ctx;
  if (state != EXT_SEG) return 0;
  int err = exm_os_map_copy(exm_own.core.base, fd, off, len);
  if (err) exm_warn("could not map a forked child's copy of small blocks", NULL, err);
  return err;
}

/* In the child: wait for the parent's copy and put it in place. 1 when the
 * child has the whole copy as its own arena. */
static int copy_child(void) {
  if (copy_pipe[0] >= 0) {
    close(copy_pipe[1]);
    copy_result = exm_os_wait_pipe(copy_pipe[0]);   /* 0: the parent died first */
    close(copy_pipe[0]);
    copy_pipe[0] = copy_pipe[1] = -1;
  }
  if (copy_result == 'a' && !exm_os_remap(exm_own.core.base, exm_own.core.cap, copy_fd, 0)) {
    if (exm_own.fd >= 0) close(exm_own.fd);
    exm_own.fd = copy_fd;
    exm_os_file_id(copy_fd, &exm_own.dev, &exm_own.ino);
    copy_fd = -1;
    copy_close();
    own_state = 1;      /* the copy is this child's own arena, structures and all */
    return 1;
  }
  return 0;
}

/* In the child, after the range got its view (cow or shared): the segments. */
static void copy_child_segments(void) {
  if (copy_plan != COPY_NONE && exm_own.core.seg_count) {
    int fd = copy_result == 'f' || copy_result == 'a' ? copy_fd : copy_result == 'm' ? copy_mem : -1;
    if (fd < 0 || exm_core_walk(&exm_own.core, map_segment, &fd))
      /* The parent could not copy them (or died first: then nobody changes
       * them any more): copy them here. */
      exm_core_walk(&exm_own.core, snapshot_segment, &exm_own);
  }
  copy_close();
}

/* ---- fork: lock order, and fork from a signal handler ----------------------
 * Lock order: glibc's stdio list lock, then init_lock, exm_own.lock and the
 * inherited arenas' locks. Another thread may hold the list lock
 * (fflush(NULL)) while it waits for a FILE lock, held by a thread that waits
 * for exm's lock inside getline's realloc; glibc's fork takes the list lock
 * only after the prepare handlers, so exm takes it first (it is recursive:
 * glibc's own take just counts). glibc takes and resets it only when the
 * process has threads (its fork must stay usable from a signal handler),
 * and so does exm: the child finds it reset by glibc.
 *
 * A fork from a signal handler can interrupt this very thread inside exm,
 * holding a lock (threshold 0: every malloc), or inside another fork's
 * handlers, holding all of them. Waiting for them would wait forever, so
 * such a fork takes only the locks that are free (trylock), prepares no
 * copy, and its child keeps the arena where it is (the interrupted call may
 * finish in the child when the handler returns) but made a private,
 * copy-on-write view that can no longer reach the parent's file: nothing
 * the child does changes the parent. The parent is never blocked. As POSIX
 * asks of a child forked from a signal handler, it should keep to
 * async-signal-safe functions until it execs or exits. */
__thread int exm_in_arena;            /* override.c: this thread is inside the arena's calls */
static __thread int fork_depth;       /* forks under way in this thread (a handler's inside another's) */
#define FORK_DEPTH 4
static __thread uint64_t fork_took[FORK_DEPTH];   /* per depth: the locks that fork holds (TOOK_*) */
#define TOOK_INIT ((uint64_t)1)
#define TOOK_OWN ((uint64_t)2)
#define TOOK_INH(i) ((uint64_t)4 << (i))
#define TOOK_LIST ((uint64_t)1 << 40)
#define TOOK_INTERRUPTED ((uint64_t)1 << 41)

extern void _IO_list_lock(void);      /* exported by glibc (GLIBC_2.2.5) */
extern void _IO_list_unlock(void);
/* glibc 2.32's __libc_single_threaded, looked up at start-up (a link-time
 * reference would need glibc 2.32 to load); NULL on older glibc, whose fork
 * takes the list lock whatever the thread count. */
static const char *libc_single_threaded;

static uint64_t fork_lock_all(void) {
  uint64_t took = TOOK_INIT | TOOK_OWN;
  if (!libc_single_threaded || !*libc_single_threaded) {
    _IO_list_lock();
    took |= TOOK_LIST;
  }
  pthread_mutex_lock(&init_lock);
  pthread_mutex_lock(&exm_own.lock);
  for (int i = 0; i < exm_n_inherited; i++) pthread_mutex_lock(&inherited[i].lock), took |= TOOK_INH(i);
  return took;
}

static uint64_t fork_lock_free_ones(void) {
  uint64_t took = TOOK_INTERRUPTED;
  if (!pthread_mutex_trylock(&init_lock)) took |= TOOK_INIT;
  if (!pthread_mutex_trylock(&exm_own.lock)) took |= TOOK_OWN;
  for (int i = 0; i < exm_n_inherited; i++)
    if (!pthread_mutex_trylock(&inherited[i].lock)) took |= TOOK_INH(i);
  return took;
}

/* The locks this thread's innermost fork holds (it stays innermost until
 * its handler ends: a signal may come while it waits for the child). */
static uint64_t fork_top(void) {
  int d = fork_depth - 1;
  return d < FORK_DEPTH ? fork_took[d] : TOOK_INTERRUPTED;
}

static void fork_unlock(uint64_t took) {
  for (int i = exm_n_inherited - 1; i >= 0; i--)
    if (took & TOOK_INH(i)) pthread_mutex_unlock(&inherited[i].lock);
  if (took & TOOK_OWN) pthread_mutex_unlock(&exm_own.lock);
  if (took & TOOK_INIT) pthread_mutex_unlock(&init_lock);
  if (took & TOOK_LIST) _IO_list_unlock();
}

/* Child of an interrupted fork: exm_own stays in place, a private view
 * that takes no new blocks (they go to RAM; own_state -1 also keeps later
 * forks from touching it: their children inherit the view as it is). */
static void child_keeps_view(void) {
  own_state = -1;
  int err = exm_own.fd >= 0 && exm_os_same_file(exm_own.fd, exm_own.dev, exm_own.ino)
                ? exm_os_remap(exm_own.core.base, exm_own.core.cap, exm_own.fd, 1)
                : EBADF;
  exm_own.kind = err ? ARENA_SHARED : ARENA_COW;   /* neither commits nor punches the file */
}

static void fork_prepare(void) {
  int d = fork_depth++;
  int interrupted = d > 0 || exm_in_arena;
  uint64_t took = d >= FORK_DEPTH ? TOOK_INTERRUPTED : interrupted ? fork_lock_free_ones() : fork_lock_all();
  if (d < FORK_DEPTH) fork_took[d] = took;
  if (!interrupted) copy_prepare();   /* a copy needs every lock: none for an interrupted fork */
}

static void fork_parent(void) {
  uint64_t took = fork_top();
  if (!(took & TOOK_INTERRUPTED)) copy_parent();
  __atomic_fetch_add(&forks, 1, __ATOMIC_RELAXED);
  fork_unlock(took);
  fork_depth--;
}

static void fork_child(void) {
  /* The locks this fork took are the child's to reset (the list lock glibc
   * reset itself). Any other is held by this thread's interrupted call,
   * which releases it when the signal handler returns. */
  uint64_t took = fork_top();
  fork_depth--;     /* nothing below waits: a handler's fork from here on is a new one */
  if (took & TOOK_INIT) pthread_mutex_init(&init_lock, NULL);
  if (took & TOOK_OWN) pthread_mutex_init(&exm_own.lock, NULL);
  for (int i = 0; i < exm_n_inherited; i++)
    if (took & TOOK_INH(i)) pthread_mutex_init(&inherited[i].lock, NULL);
  exm_advisor_after_fork();
  forks = 0;
  alloc_ns = 0;
  exm_fallbacks = 0;
  exm_cfg.stats[0] = 0;     /* the process exm was given reports, not its children */
  if (!exm_own.core.cap) return;
  if (took & TOOK_INTERRUPTED) return child_keeps_view();
  int mode = fork_mode;
  if (copy_child()) {
    cache_after_fork(&exm_own.core);
    return;
  }
  if (mode == EXM_CHILD_DUPLICATE) {
    exm_warn("could not duplicate the file-backed arena for a child; it sees the parent's blocks copy-on-write",
             NULL, 0);
    mode = EXM_CHILD_COW;
  }
  if (exm_n_inherited == MAX_INHERITED) {
    exm_warn("too many generations of forked processes with file-backed arenas", NULL, 0);
    abort();
  }
  if (mode == EXM_CHILD_COW) {
    int err = exm_own.fd >= 0 && exm_os_same_file(exm_own.fd, exm_own.dev, exm_own.ino)
                  ? exm_os_remap(exm_own.core.base, exm_own.core.cap, exm_own.fd, 1)
                  : EBADF;
    if (err) {
      exm_warn("could not give a forked child a copy-on-write view; it shares the parent's blocks", NULL, err);
      mode = EXM_CHILD_SHARED;
    }
  }
  copy_child_segments();
  cache_after_fork(&exm_own.core);
  exm_arena_t *a = &inherited[exm_n_inherited++];
  *a = exm_own;
  pthread_mutex_init(&a->lock, NULL);
  set_host(a);
  a->kind = mode == EXM_CHILD_COW ? ARENA_COW : ARENA_SHARED;   /* fd stays open for exm_lookup */
  memset(&exm_own.core, 0, sizeof exm_own.core);
  exm_own.fd = -1;
  own_state = 0;
}

void exm_arena_setup(void) {
  exm_ensure_init();
  pthread_mutex_lock(&exm_own.lock);
  if (own_state == 0) check_dir();
  pthread_mutex_unlock(&exm_own.lock);
  libc_single_threaded = dlsym(RTLD_DEFAULT, "__libc_single_threaded");
  pthread_atfork(fork_prepare, fork_parent, fork_child);
  if (!pthread_key_create(&tc_exit_key, cache_exit)) tc_exit_ready = 1;
}
