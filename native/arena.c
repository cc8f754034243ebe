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
static int dup_fd = -1, dup_err;       /* duplicate mode: the copy made for the child */
static int no_fallocate, no_punch;     /* filesystem limits, warned about once */
static int advised_blocks;             /* some block carries its own advice */
static uintptr_t tc_key;               /* marks chunks in a thread cache (below) */

void exm_init(void) {
  pthread_mutex_lock(&init_lock);
  if (!exm_ready) {
    tc_key = (uintptr_t)exm_os_now_ns() * 0x9E3779B97F4A7C15ull ^ (uintptr_t)&tc_key;
    exm_options_load();
    __atomic_store_n(&exm_ready, 1, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&init_lock);
}

/* ---- host callbacks for the carving core -------------------------------- */

/* Is the arena's descriptor still its file? If the program closed it (and
 * perhaps reused the number for a file of its own), exm must never touch
 * that descriptor again: the arena stops growing and, for the process's own
 * arena, new large allocations stay in RAM. Existing blocks live on: the
 * mapping holds the file. */
static int fd_intact(exm_arena_t *a) {
  if (a->fd < 0) return 0;
  if (exm_os_same_file(a->fd, a->dev, a->ino)) return 1;
  a->fd = -1;
  if (a == &exm_own) {
    own_state = -1;
    exm_warn("the program closed the descriptor of exm's backing file; new large allocations stay in RAM", NULL, 0);
  }
  return 0;
}

static int host_commit(void *ctx, size_t off, size_t len) {
  exm_arena_t *a = ctx;
  if (a->kind != ARENA_OWN || !fd_intact(a)) return ENOMEM;
  if (no_fallocate) return 0;
  int err = exm_os_reserve(a->fd, off, len);
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
  } else if (a->kind == ARENA_OWN && !no_punch && fd_intact(a)) {
    int err = exm_os_punch(a->fd, off, len);
    if (err == EOPNOTSUPP) {
      no_punch = 1;
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
 * TC_LIMIT freed chunks per size class (chunk sizes 32..1040) and hands them
 * out again without the lock. Cached chunks stay "in use" for the carving
 * core. A cached chunk carries tc_key in its second word, so a double free
 * into the cache is caught by a short list walk. Threads give their cache
 * back when they exit. Small blocks held in caches count as live in the
 * statistics. */
#define TC_CLASSES 256                          /* chunk sizes 32 .. 4112 */
#define TC_MAX_CHUNK ((size_t)(TC_CLASSES + 1) * 16)
#define TC_LIMIT(cls) ((cls) < 64 ? 16 : 4)      /* at most ~2.5 MiB cached per thread */
#define TC_BATCH 8                               /* chunks taken per lock on a miss */

typedef struct tcache {
  void *head[TC_CLASSES];
  uint8_t count[TC_CLASSES];
  int registered;                    /* thread-exit destructor armed */
} tcache_t;

static __thread tcache_t tc;
static pthread_key_t tc_exit_key;
static int tc_exit_ready;

static inline void cache_put(unsigned cls, void *p) {
  uintptr_t *w = p;
  w[0] = (uintptr_t)tc.head[cls];
  w[1] = tc_key;
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
  p[1] = NULL;
  return p;
}

/* Under exm_own.lock, after a miss: stock the cache with more chunks of the
 * size just served, so the next few mallocs of it take no lock. */
static void cache_refill(size_t chunk) {
  if (chunk > TC_MAX_CHUNK) return;
  unsigned cls = (unsigned)(chunk >> 4) - 2;
  for (int i = 1; i < TC_BATCH && tc.count[cls] < TC_LIMIT(cls); i++) {
    int dirty, err;
    /* a request that stays small (a 4112-byte chunk is 4095 bytes, not 4104,
     * which would be a page block: shared-mode children write into those) */
    size_t n = chunk - 8 < EXM_SMALL_MAX ? chunk - 8 : EXM_SMALL_MAX - 1;
    void *q = exm_core_alloc(&exm_own.core, n, 16, 0, &dirty, &err);
    if (!q) break;
    cache_put(cls, q);
  }
  if (unlikely(!tc.registered) && tc_exit_ready) {
    tc.registered = 1;
    pthread_setspecific(tc_exit_key, &tc);
  }
}

/* 1 when p (a chunk of our own arena) went into this thread's cache, or
 * went back to the arena together with half of a full cache bin. */
static int cache_push(void *p, const char *who) {
  size_t sz = exm_core_small_peek(&exm_own.core, p);
  if (!sz || sz > TC_MAX_CHUNK) return 0;
  unsigned cls = (unsigned)(sz >> 4) - 2;
  uintptr_t *w = p;
  if (w[1] == tc_key)
    for (void **q = tc.head[cls]; q; q = q[0])
      if (q == p) exm_bad_pointer(who, p);
  if (tc.count[cls] >= TC_LIMIT(cls)) {
    /* Full: return p and half the bin in one lock. */
    int saved = errno;
    pthread_mutex_lock(&exm_own.lock);
    int bad = exm_core_free(&exm_own.core, p);
    for (int i = TC_LIMIT(cls) / 2; i > 0 && !bad; i--) {
      void **q = tc.head[cls];
      tc.head[cls] = q[0];
      tc.count[cls]--;
      q[1] = NULL;
      exm_core_free(&exm_own.core, q);
    }
    pthread_mutex_unlock(&exm_own.lock);
    errno = saved;
    if (bad) exm_bad_pointer(who, p);
    return 1;
  }
  cache_put(cls, p);
  return 1;
}

static void cache_flush(void *arg) {
  tcache_t *t = arg;
  for (unsigned cls = 0; cls < TC_CLASSES; cls++) {
    void **p;
    while ((p = t->head[cls])) {
      t->head[cls] = p[0];
      p[1] = NULL;
      exm_arena_t *a = exm_arena_of(p);
      if (a) {
        pthread_mutex_lock(&a->lock);
        exm_core_free(&a->core, p);
        pthread_mutex_unlock(&a->lock);
      }
    }
    t->count[cls] = 0;
  }
  t->registered = 0;
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
  if (timed) alloc_ns += exm_os_now_ns() - t0;
  else if (p && align <= 16) cache_refill(exm_core_chunk_size_for(n));
  if (!p && own_state < 0) *served = 0;    /* lost its file just now: RAM instead */
  pthread_mutex_unlock(&exm_own.lock);
  if (*served) exm_trace_block(p, n, *err);
  if (p && zero && dirty) memset(p, 0, n);
  if (p && n >= exm_advisor_min() && exm_cfg.advice == EXM_ADVICE_AUTO) {
    exm_arena_auto_advise((size_t)((char *)p - exm_own.core.base), (n + EXM_PAGE - 1) & ~(EXM_PAGE - 1),
                          EXM_ADVICE_SEQUENTIAL, 0);   /* a new block is usually filled first */
    exm_advisor_block(n);
  }
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
  out->alloc_ns = alloc_ns;
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
  info->fd = a->fd;
  if (a->fd >= 0) {
    exm_line_t l = { .n = 0 };
    exm_line_str(&l, "/proc/self/fd/");
    exm_line_u64(&l, (uint64_t)a->fd);
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
    int err = exm_os_madvise(base, size, autop ? EXM_ADVICE_SEQUENTIAL
                                               : exm_cfg.advice >= EXM_ADVICE_SEQUENTIAL ? exm_cfg.advice : EXM_ADVICE_NORMAL);
    if (!err) e->advice = autop ? 0x80 | EXM_ADVICE_SEQUENTIAL : 0;
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

int exm_arena_set_max_disk(size_t bytes) {
  pthread_mutex_lock(&exm_own.lock);
  exm_cfg.max_disk = bytes;
  exm_own.core.max_commit = bytes;
  pthread_mutex_unlock(&exm_own.lock);
  return 0;
}

/* ---- fork ------------------------------------------------------------------- */

typedef struct dup_ctx { int from, to, err; } dup_ctx_t;

static int dup_extent(void *ctx, size_t off, size_t len, int state) {
  dup_ctx_t *d = ctx;
  (void)state;
  return d->err = exm_os_copy_extent(d->from, d->to, off, len);
}

/* Small-chunk segments keep their bookkeeping in band. A child that only
 * had a view of them through the parent's file would see the parent's later
 * frees rewrite the headers its own allocator state depends on (and in
 * shared mode its frees would rewrite the parent's), so the child copies
 * them into private memory while the parent waits (snap_pipe). */
static int snap_pipe[2] = { -1, -1 };

static int snapshot_segment(void *ctx, size_t off, size_t len, int state) {
  exm_arena_t *a = ctx;
  if (state != EXT_SEG) return 0;
  int err = exm_os_snapshot(a->core.base + off, len);
  if (err) exm_warn("could not give a forked child its exm_own copy of small blocks", NULL, err);
  return err;
}

static void fork_prepare(void) {
  pthread_mutex_lock(&init_lock);
  pthread_mutex_lock(&exm_own.lock);
  for (int i = 0; i < exm_n_inherited; i++) pthread_mutex_lock(&inherited[i].lock);
  dup_fd = -1;
  dup_err = 0;
  if (own_state == 1 && exm_own.core.seg_count && exm_cfg.child != EXM_CHILD_DUPLICATE &&
      exm_os_pipe(snap_pipe))
    snap_pipe[0] = snap_pipe[1] = -1;
  if (own_state == 1 && exm_cfg.child == EXM_CHILD_DUPLICATE && fd_intact(&exm_own)) {
    dup_ctx_t d = { exm_own.fd, -1, 0 };
    dup_err = exm_os_new_like(exm_cfg.dir, exm_own.core.cap, &d.to);
    if (!dup_err) {
      exm_core_walk(&exm_own.core, dup_extent, &d);
      dup_err = d.err;
      if (dup_err) close(d.to);
      else dup_fd = d.to;
    }
  }
}

static void fork_parent(void) {
  if (snap_pipe[0] >= 0) {
    close(snap_pipe[1]);
    exm_os_wait_pipe(snap_pipe[0]);
    close(snap_pipe[0]);
    snap_pipe[0] = snap_pipe[1] = -1;
  }
  if (dup_fd >= 0) close(dup_fd);
  dup_fd = -1;
  forks++;
  for (int i = exm_n_inherited - 1; i >= 0; i--) pthread_mutex_unlock(&inherited[i].lock);
  pthread_mutex_unlock(&exm_own.lock);
  pthread_mutex_unlock(&init_lock);
}

static void fork_child(void) {
  pthread_mutex_init(&init_lock, NULL);
  pthread_mutex_init(&exm_own.lock, NULL);
  for (int i = 0; i < exm_n_inherited; i++) pthread_mutex_init(&inherited[i].lock, NULL);
  exm_advisor_after_fork();
  forks = 0;
  alloc_ns = 0;
  exm_fallbacks = 0;
  exm_cfg.stats[0] = 0;     /* the process exm was given reports, not its children */
  if (own_state != 1) return;
  int mode = exm_cfg.child;
  if (mode == EXM_CHILD_DUPLICATE) {
    if (dup_fd >= 0 && !exm_os_remap(exm_own.core.base, exm_own.core.cap, dup_fd, 0)) {
      close(exm_own.fd);
      exm_own.fd = dup_fd;
      exm_os_file_id(dup_fd, &exm_own.dev, &exm_own.ino);
      dup_fd = -1;
      return;    /* the copy is this child's own arena, structures and all */
    }
    exm_warn("could not duplicate the file-backed arena for a child; it sees the parent's blocks copy-on-write",
             NULL, dup_err);
    if (dup_fd >= 0) close(dup_fd);
    dup_fd = -1;
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
  if (snap_pipe[1] >= 0) {
    close(snap_pipe[0]);
    exm_core_walk(&exm_own.core, snapshot_segment, &exm_own);
    close(snap_pipe[1]);    /* the parent may go on */
    snap_pipe[0] = snap_pipe[1] = -1;
  }
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
  pthread_atfork(fork_prepare, fork_parent, fork_child);
  if (!pthread_key_create(&tc_exit_key, cache_flush)) tc_exit_ready = 1;
}
