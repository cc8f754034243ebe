/*
 * arena.c: this process's arenas, their locks, and the host callbacks that
 * tie the carving core (core.c) to a backing file.
 *
 * A process has one arena of its own, created at its first file-backed
 * allocation (most processes started under exm never make one), and the
 * arenas it inherited from its parents, which it may read, write and free
 * blocks of but never carves or gives disk back from: the parent still
 * owns them (fork.c makes them; the child mode decides how the child sees
 * them). Each arena has one mutex, held around every call into its core;
 * the per-thread cache (tcache.c) sits in front of the own arena's lock for
 * small chunks. Promises: a pointer is checked by the core before any free,
 * resize or size query trusts it (a bad one aborts with one line: msg.c);
 * errno is preserved by free; a large block's disk is given back outside
 * the lock.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "advisor.h"
#include "arena_int.h"
#include "block.h"
#include "budget.h"
#include "fork.h"
#include "internal.h"
#include "msg.h"
#include "options.h"
#include "os.h"
#include "punch.h"
#include "tcache.h"
#include "trace.h"

uint64_t exm_fallbacks;
static uint64_t alloc_ns;

/* The arena locks are adaptive (spin a little before the futex wait):
 * their sections are short, and with a plain mutex two threads that meet
 * on one (the realloc loop's page blocks at 2 threads: 7 600 futex calls
 * in a 0.5 s run) paid a sleep and a wake-up each time: 1.7x glibc's CPU,
 * 1.2x with the spin (bench/alloc.ts; the README has the figures). */
exm_arena_t exm_own = { .lock = PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP, .fd = -1 };

void exm_arena_lock_init(pthread_mutex_t *m) {
  pthread_mutexattr_t at;
  pthread_mutexattr_init(&at);
  pthread_mutexattr_settype(&at, PTHREAD_MUTEX_ADAPTIVE_NP);
  pthread_mutex_init(m, &at);
  pthread_mutexattr_destroy(&at);
}
int exm_own_state;                     /* OWN_*: made yet, usable */
exm_arena_t exm_inherited[EXM_MAX_INHERITED];
int exm_n_inherited;
static int no_fallocate, no_punch;     /* filesystem limits, warned about once */
/* The directory the own arena's file was made in, for the messages about
 * its filesystem: exm_set_dir changes exm_cfg.dir for the next arena only
 * (and may be rewriting it while the punch thread reports). Written by
 * own_create under the lock, before the arena is published. */
static char own_dir[EXM_PATH_MAX];
static int advised_blocks;             /* some block carries its own advice */

/* ---- host callbacks for the carving core -------------------------------- */

/* Is the arena's descriptor still its file? If the program closed it (and
 * perhaps reused the number for a file of its own), exm must never touch
 * that descriptor again: the arena stops growing and, for the process's own
 * arena, new large allocations stay in RAM (host_commit). Existing blocks
 * live on: the mapping holds the file. Called with or without the lock
 * (a large block's disk is given back outside it), so a->fd is atomic and
 * the loss is told once. */
int exm_arena_fd_intact(exm_arena_t *a) {
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
  if (!exm_arena_fd_intact(a)) {
    if (a == &exm_own) exm_own_state = OWN_UNUSABLE;
    return ENOMEM;
  }
  if (no_fallocate) return 0;
  int err = exm_os_reserve(__atomic_load_n(&a->fd, __ATOMIC_RELAXED), off, len);
  if (err == EOPNOTSUPP) {
    no_fallocate = 1;
    exm_line_t l = { .n = 0 };
    exm_line_str(&l, "exm: cannot reserve disk in ");
    exm_line_value(&l, own_dir);
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
  } else if (a->kind == ARENA_OWN && !__atomic_load_n(&no_punch, __ATOMIC_RELAXED)) {
    /* Through the mapping: also once the program has closed the descriptor,
     * and without the race of a check of the descriptor before its use (a
     * program thread may close it and open a file of its own in between). */
    int err = exm_os_punch_mapped(a->core.base + off, len);
    /* by descriptor where the kernel refuses (an mlock'ed or read-only
     * range: EINVAL, EACCES; a seccomp filter: anything), not where the
     * filesystem cannot punch at all */
    if (err && err != EOPNOTSUPP && exm_arena_fd_intact(a))
      err = exm_os_punch(__atomic_load_n(&a->fd, __ATOMIC_RELAXED), off, len);
    if (err == EOPNOTSUPP && !__atomic_exchange_n(&no_punch, 1, __ATOMIC_RELAXED)) {
      if (exm_cfg.verbose) exm_warn("cannot punch holes in files of ", own_dir, err);
    }
  }
}

static void *host_meta_map(void *ctx, size_t len) { (void)ctx; return exm_os_anon(len); }
static void host_meta_unmap(void *ctx, void *p, size_t len) { (void)ctx; exm_os_unmap(p, len); }

void exm_arena_set_host(exm_arena_t *a) {
  exm_core_set_host(&a->core, &(exm_host_t){ a, host_commit, host_decommit, host_meta_map, host_meta_unmap });
}

/* ---- the process's own arena ---------------------------------------------- */

static void mark_unusable(const char *why, int err) {
  exm_own_state = OWN_UNUSABLE;
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
  int limited;
  char *base = exm_os_map_file(fd, &cap, &limited);
  if (!base) {
    exm_os_close(fd);
    if (limited < 0) return mark_unusable("cannot map a backing file in ", ENOMEM);
    /* the program's ulimit, not the directory, is why: say which */
    exm_own_state = OWN_UNUSABLE;
    exm_line_t l = { .n = 0 };
    exm_line_str(&l, limited == RLIMIT_FSIZE ? "exm: the file size limit (ulimit -f) of " : "exm: the address-space limit (ulimit -v) of ");
    exm_line_size(&l, cap);
    exm_line_str(&l, limited == RLIMIT_FSIZE ? " is below the " : " leaves less than the ");
    exm_line_size(&l, EXM_ARENA_MIN);
    exm_line_str(&l, " a backing file needs; allocations stay in RAM");
    exm_line_emit(&l);
    return;
  }
  if (exm_os_file_id(fd, &exm_own.dev, &exm_own.ino)) {
    exm_os_close(fd);
    return mark_unusable("cannot use a backing file in ", EIO);
  }
  memcpy(own_dir, exm_cfg.dir, sizeof own_dir);
  exm_span_add(base, cap);
  exm_core_init(&exm_own.core, base, cap, &(exm_host_t){ 0 });
  exm_core_set_key(&exm_own.core, exm_os_random64());
  exm_arena_set_host(&exm_own);
  exm_core_set_max_commit(&exm_own.core, exm_cfg.max_disk);
  exm_own.fd = fd;
  exm_own.kind = ARENA_OWN;
  if (exm_cfg.advice >= EXM_ADVICE_SEQUENTIAL) exm_os_madvise(base, cap, exm_cfg.advice);
  __atomic_store_n(&exm_own_state, OWN_READY, __ATOMIC_RELEASE);
  exm_trace_arena(cap);
}

/* At start-up: an unusable data directory is reported once, up front. */
static void check_dir(void) {
  int err = exm_os_dir_usable(exm_cfg.dir);
  if (err) return mark_unusable("unusable data directory ", err);
  uint64_t free_bytes;
  int full;
  if (!exm_os_disk_space(exm_cfg.dir, &free_bytes, &full) && full)
    mark_unusable("no space left in data directory ", 0);
}

uintptr_t exm_span_lo = UINTPTR_MAX, exm_span_hi = 0;

/* Widens the span by one arena's range (under the own arena's lock: no two
 * callers race; an inherited arena keeps the range its parent added). */
void exm_span_add(const void *base, size_t cap) {
  uintptr_t lo = (uintptr_t)base, hi = lo + cap;
  if (lo < exm_span_lo) __atomic_store_n(&exm_span_lo, lo, __ATOMIC_RELAXED);
  if (hi > exm_span_hi) __atomic_store_n(&exm_span_hi, hi, __ATOMIC_RELAXED);
}

/* The arenas give up the address space they have not carved: the own one
 * keeps at most own_max of it and `less` below its capacity (0 when that
 * is all of it), an inherited one (which never carves) only what it has
 * carved. 1 when any went. */
static int give_up_as(size_t own_max, size_t less) {
  int gave = 0;
  pthread_mutex_lock(&exm_own.lock);
  for (int k = 0; k <= exm_n_inherited; k++) {
    exm_arena_t *a = k ? &exm_inherited[k - 1] : &exm_own;
    size_t old = a->core.cap, want = old > less ? old - less : 0;
    if (!old) continue;
    size_t now = exm_core_shrink(&a->core, k ? 0 : want < own_max ? want : own_max);
    if (now < old) exm_os_unmap(a->core.base + now, old - now), gave = 1;
  }
  pthread_mutex_unlock(&exm_own.lock);
  return gave;
}

/* the own arena keeps room to grow, half the limit as at its start (os.c) */
void exm_arena_fit_as(size_t limit) { give_up_as(limit / 2, 0); }

int exm_arena_yield_as(size_t n) { return give_up_as(SIZE_MAX, n + EXM_ARENA_MIN); }

int exm_arena_dontneed(void *addr, size_t len) {
  exm_arena_t *a = exm_arena_of(addr);
  if (!a || ((uintptr_t)addr & (EXM_PAGE - 1))) return -1;   /* not ours, or the kernel's EINVAL */
  len = (len + EXM_PAGE - 1) & ~(EXM_PAGE - 1);
  size_t off = (size_t)((char *)addr - a->core.base), cap = __atomic_load_n(&a->core.cap, __ATOMIC_ACQUIRE);
  if (!len || off > cap || len > cap - off) return -1;       /* partly outside: the kernel's as it comes */
  if (a->kind == ARENA_SHARED) return -1;   /* the parent's pages, shared both ways: kept, as shmem keeps them */
  /* a cow view is private only below the parent's top at the fork (fork.c):
   * zeros written past it would reach the parent's file */
  if (a->kind == ARENA_COW && off + len > __atomic_load_n(&a->core.top, __ATOMIC_RELAXED)) return -1;
  if (a->kind == ARENA_OWN && exm_arena_fd_intact(a) && !exm_os_zero(__atomic_load_n(&a->fd, __ATOMIC_RELAXED), off, len))
    return 0;
  memset(addr, 0, len);   /* a cow child's private view, a filesystem without ZERO_RANGE, a lost descriptor */
  return 0;
}

int exm_arena_unlocked(int i, uintptr_t *lo, uintptr_t *hi) {
  for (int k = 0; k <= exm_n_inherited; k++) {
    exm_core_t *c = k ? &exm_inherited[k - 1].core : &exm_own.core;
    size_t cap = __atomic_load_n(&c->cap, __ATOMIC_ACQUIRE);
    if (!cap) continue;
    if (i-- == 0) return *lo = (uintptr_t)c->base, *hi = (uintptr_t)c->base + cap, 1;
    uint64_t **tab = __atomic_load_n(&c->seg_live, __ATOMIC_ACQUIRE);
    if (tab && i-- == 0)
      return *lo = (uintptr_t)tab, *hi = ((uintptr_t)tab + c->seg_slots * sizeof *tab + EXM_PAGE - 1) & ~(uintptr_t)(EXM_PAGE - 1), 1;
  }
  return 0;
}

exm_arena_t *exm_arena_of_inherited(const void *p) {
  for (int i = 0; i < exm_n_inherited; i++)
    if ((uintptr_t)p - (uintptr_t)exm_inherited[i].core.base < exm_inherited[i].core.cap) return &exm_inherited[i];
  return NULL;
}

/* Under exm_own.lock: a block from the own arena's core, with the disk still
 * being given back (punch.c) taken now when it does not fit without. */
static void *own_carve(size_t n, size_t align, int zero, int *dirty, int *err) {
  void *p = exm_core_alloc(&exm_own.core, n, align, zero ? EXM_CORE_ZERO : 0, dirty, err);
  if (unlikely(!p) && exm_punch_pending()) {
    exm_punch_drain(&exm_own);
    p = exm_core_alloc(&exm_own.core, n, align, zero ? EXM_CORE_ZERO : 0, dirty, err);
  }
  return p;
}

/* After the lock, for a new block of n bytes: a new block starts with the
 * kernel's default advice (MADV_SEQUENTIAL would make a copy that reads
 * back what it just wrote, bytearray * n, tile, repeat, refault every page
 * of it even in RAM); the advisor gives a block SEQUENTIAL once it sees it
 * being scanned out of core. */
static void watch_block(size_t n) {
  if (n >= exm_advisor_min() && exm_cfg_advice() == EXM_ADVICE_AUTO) exm_advisor_block(n);
}

void *exm_arena_alloc(size_t n, size_t align, int zero, int *served, int *err) {
  if (align <= 16 && n < EXM_SMALL_MAX) {
    void *p = exm_tcache_pop(n);
    if (!p) p = exm_tcache_pop_depot(n);
    if (p) {
      *served = 1;
      if (zero) memset(p, 0, n);
      return p;
    }
  }
  pthread_mutex_lock(&exm_own.lock);
  if (unlikely(exm_own_state != OWN_READY)) {
    if (exm_own_state == OWN_UNMADE) own_create();
    if (exm_own_state == OWN_UNUSABLE) {
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
  void *p = own_carve(n, align, zero, &dirty, err);
  if (timed) __atomic_fetch_add(&alloc_ns, exm_os_now_ns() - t0, __ATOMIC_RELAXED);
  else if (p && align <= 16) exm_tcache_refill(exm_core_chunk_size_for(n));
  if (!p && exm_own_state == OWN_UNUSABLE) *served = 0;    /* lost its file just now: RAM instead */
  pthread_mutex_unlock(&exm_own.lock);
  if (!timed) exm_tcache_arm();
  if (*served) exm_trace_block(p, n, *err);
  if (p && zero && dirty) memset(p, 0, n);
  if (p) watch_block(n);
  return p;
}

/* A block given its own advice (by the user or the advisor) gets the
 * arena's default back when freed. */
static void reset_advice(exm_arena_t *a, void *p) {
  exm_ext_t *e = exm_core_block(&a->core, p);
  if (e && e->advice) {
    exm_os_madvise(p, e->len, exm_cfg.advice >= EXM_ADVICE_SEQUENTIAL ? exm_cfg.advice : EXM_ADVICE_NORMAL);
    e->advice = EXM_EXT_ADVICE_NONE;
  }
}

/* ---- for the advisor (advisor.c) ------------------------------------------ */

char *exm_arena_base(void) { return exm_own.core.base; }

int exm_arena_large_blocks(size_t min, size_t *offs, size_t *lens, int max) {
  pthread_mutex_lock(&exm_own.lock);
  int n = exm_own_state == OWN_READY ? exm_core_large(&exm_own.core, min, offs, lens, max) : 0;
  pthread_mutex_unlock(&exm_own.lock);
  return n;
}

void exm_arena_auto_advise(size_t off, size_t len, int advice, int announce) {
  pthread_mutex_lock(&exm_own.lock);
  exm_ext_t *e = exm_own_state == OWN_READY ? exm_core_block(&exm_own.core, exm_own.core.base + off) : NULL;
  if (e && e->len == len && (e->advice == EXM_EXT_ADVICE_NONE || EXM_EXT_ADVICE_IS_AUTO(e->advice)) && e->advice != EXM_EXT_ADVICE_AUTO(advice)) {
    int was = e->advice;
    if (!exm_os_madvise(exm_own.core.base + off, len, advice)) {
      e->advice = EXM_EXT_ADVICE_AUTO(advice);
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
  if (a == &exm_own && ((uintptr_t)p & (EXM_PAGE - 1)) && exm_tcache_push(&exm_own.core, p, who)) return;
  int saved = errno;
  int timed = !((uintptr_t)p & (EXM_PAGE - 1));    /* page blocks: the ones with system calls */
  pthread_mutex_lock(&a->lock);
  uint64_t t0 = timed ? exm_os_now_ns() : 0;
  if (unlikely(advised_blocks)) reset_advice(a, p);
  exm_ext_t *busy;
  int r = exm_core_free_begin(&a->core, p, &busy);
  size_t live = a->core.st.live_bytes;
  pthread_mutex_unlock(&a->lock);
  if (busy && !(a->kind == ARENA_OWN && exm_punch_later(a, busy, live))) {
    /* Giving back a large block's disk can take long (the filesystem frees
     * its extents, the page cache drops its pages): not under the lock, and
     * in the background (punch.c) unless too much waits already. */
    exm_core_free_decommit(&a->core, busy);
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

void *exm_arena_realloc(exm_arena_t *a, void *p, size_t n, size_t *old, const char *who) {
  *old = 0;
  if (a->kind != ARENA_OWN || n < EXM_SMALL_MAX) {
    if (exm_arena_resize(a, p, n, who) == 0) return p;
    return NULL;
  }
  pthread_mutex_lock(&a->lock);
  int r = exm_core_resize(&a->core, p, n);
  void *q = NULL;
  if (r == ENOMEM && exm_own_state == OWN_READY) {
    /* not in place: the new block under the same lock (with the old one's
     * size, read while it is held), as exm_arena_alloc carves a page block;
     * an arena that lost its file serves no new block (the caller's malloc
     * takes RAM instead) */
    *old = exm_core_usable(&a->core, p);
    uint64_t t0 = exm_os_now_ns();
    int dirty = 0, err = 0;
    q = own_carve(n, 16, 0, &dirty, &err);
    __atomic_fetch_add(&alloc_ns, exm_os_now_ns() - t0, __ATOMIC_RELAXED);
  }
  pthread_mutex_unlock(&a->lock);
  if (r < 0) exm_bad_pointer(who, p);
  if (r == 0) return p;
  if (q) {
    exm_trace_block(q, n, 0);
    watch_block(n);
  }
  return q;
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
    exm_tcache_flush();   /* the caller's cached chunks are free, not live */
    pthread_mutex_lock(&exm_own.lock);
    exm_punch_drain(&exm_own);   /* the figures count every free made so far */
  }
  const exm_core_stats_t *s = exm_core_stats(&exm_own.core);
  out->live_bytes = s->live_bytes;
  out->peak_live_bytes = s->peak_live_bytes;
  out->live_blocks = s->live_blocks;
  out->total_allocs = s->total_allocs;
  out->total_frees = s->total_frees;
  out->disk_reserved = no_fallocate ? 0 : s->committed;
  out->bytes_punched = s->punched;
  if (in_signal) {
    /* Not drained (no lock): what waits for the background punch counts as
     * given back, as it is once the thread or the file's close gets to it. */
    size_t pending = exm_punch_pending();
    if (pending > out->disk_reserved) pending = out->disk_reserved;
    out->disk_reserved -= pending;
    out->bytes_punched += pending;
  }
  out->peak_disk_reserved = no_fallocate ? 0 : s->peak_committed;
  out->arena_size = s->top_peak;
  out->failures = s->failures;
  out->fallbacks = exm_fallbacks;
  out->forks = exm_fork_count();
  out->alloc_ns = __atomic_load_n(&alloc_ns, __ATOMIC_RELAXED);
  out->ram_budget_bytes = exm_budget_served();
  if (!in_signal) pthread_mutex_unlock(&exm_own.lock);
}

static int check_one(exm_arena_t *a) {
  char msg[200];
  pthread_mutex_lock(&a->lock);
  if (!a->core.cap) {   /* not made yet (read under the lock: another thread may be making it) */
    pthread_mutex_unlock(&a->lock);
    return 0;
  }
  exm_punch_drain(a);   /* BUSY blocks waiting for the thread are neither free nor live */
  int r = exm_core_check(&a->core, msg, sizeof msg);
  pthread_mutex_unlock(&a->lock);
  if (r) exm_warn("exm_check: arena inconsistent: ", msg, 0);
  return r ? EFAULT : 0;
}

int exm_arena_check(void) {
  int err = check_one(&exm_own);
  for (int i = 0; i < exm_n_inherited && !err; i++) err = check_one(&exm_inherited[i]);
  char msg[200];
  if (!err && exm_tcache_check(msg, sizeof msg)) {
    exm_warn("exm_check: the thread caches' depot is inconsistent: ", msg, 0);
    err = EFAULT;
  }
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
  exm_cfg_set_advice(advice);
  if (exm_own_state == OWN_READY) {
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
    if (!err) e->advice = EXM_EXT_ADVICE_NONE;
    pthread_mutex_unlock(&a->lock);
    return err;
  }
  int err = !found ? ENOENT : !e ? 0 : exm_os_madvise(base, size, advice);
  if (found && e && !err) {
    e->advice = EXM_EXT_ADVICE_USER(advice);     /* the user's: the advisor keeps off */
    advised_blocks = 1;
  }
  pthread_mutex_unlock(&a->lock);
  return err;
}

/* Does the arena's block holding p read one page per fault: the arena's
 * fixed advice is random, or the user or the advisor made the block random?
 * (override.c's madvise keeps a program's MADV_HUGEPAGE off such a block.) */
int exm_arena_random_at(const void *p) {
  exm_arena_t *a = exm_arena_of(p);
  if (!a) return 0;
  if (exm_cfg_advice() == EXM_ADVICE_RANDOM) return 1;
  void *base;
  size_t size;
  exm_ext_t *e = NULL;
  pthread_mutex_lock(&a->lock);
  int r = exm_core_find(&a->core, p, &base, &size, &e) && e &&
          (e->advice == EXM_EXT_ADVICE_USER(EXM_ADVICE_RANDOM) || e->advice == EXM_EXT_ADVICE_AUTO(EXM_ADVICE_RANDOM));
  pthread_mutex_unlock(&a->lock);
  return r;
}

int exm_arena_set_dir(const char *dir) {
  int err = exm_os_dir_usable(dir);
  size_t n = strlen(dir);
  if (!err && (dir[0] != '/' || n >= EXM_PATH_MAX)) err = EINVAL;
  if (err) return err;
  pthread_mutex_lock(&exm_own.lock);
  exm_cfg_set_dir(dir);
  if (exm_own_state == OWN_UNUSABLE && !exm_own.core.cap) exm_own_state = OWN_UNMADE;   /* a usable directory at last */
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
  exm_cfg_set_max_disk(bytes);
  exm_core_set_max_commit(&exm_own.core, bytes);
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
  size_t live = exm_core_stats(&a->core)->live_bytes, blocks = exm_core_stats(&a->core)->live_blocks;
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
  for (int i = 0; i < exm_n_inherited; i++) heap_of(&exm_inherited[i], h);
}

int exm_arena_trim(void) {
  exm_tcache_flush();
  pthread_mutex_lock(&exm_own.lock);
  int any = exm_punch_pending() > 0;
  exm_punch_drain(&exm_own);
  any |= exm_own_state == OWN_READY && exm_own.core.dirty_bytes > 0;
  if (any) exm_core_flush(&exm_own.core);
  pthread_mutex_unlock(&exm_own.lock);
  return any;
}

void exm_arena_startup_check(void) {
  pthread_mutex_lock(&exm_own.lock);
  if (exm_own_state == OWN_UNMADE) check_dir();
  pthread_mutex_unlock(&exm_own.lock);
}

void exm_arena_child_counters(void) {
  alloc_ns = 0;
  exm_fallbacks = 0;
}
