/*
 * fork.c: what fork does to this process's arenas (pthread_atfork handlers).
 *
 * Owns the fork handlers, the order in which they take exm's locks, the
 * copy a child gets of the parent's arena, and this thread's forks under
 * way. Promises: the child always finds consistent structures, even with
 * threads allocating (every arena's lock is held across fork); the child
 * mode is read once, in prepare, so one fork follows one mode whatever
 * another thread sets meanwhile; the parent never waits for the child; a
 * fork from a signal handler never waits for a lock.
 *
 * What a child sees of its parent's arena is the child mode:
 *  - cow: the range is remapped MAP_PRIVATE in the child; its writes become
 *    private pages, and freeing a block drops them;
 *  - shared: the child keeps the MAP_SHARED mapping;
 *  - duplicate: the parent copies its committed extents (disk reserved,
 *    data copied in the kernel, holes and never-written pages skipped: os.c)
 *    into a new file before fork returns, and the child maps that at the
 *    same address and keeps it as its own arena, consistent as of the fork.
 * The parent's arena becomes one of the child's inherited arenas (arena.c),
 * except in duplicate mode, where the copy is the child's own.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "advisor.h"
#include "arena_int.h"
#include "budget.h"
#include "fork.h"
#include "init.h"
#include "msg.h"
#include "options.h"
#include "os.h"
#include "punch.h"
#include "tcache.h"

static uint64_t forks;                /* forks this process made (statistics) */

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
 *    When the process can open no descriptor at all (at its limit: no
 *    file, no memfd, no pipe), the parent copies the segments into
 *    anonymous memory in its prepare handler, every lock held, and the
 *    child moves those pages into place (mremap); the parent drops its copy
 *    once fork returns. (The child used to copy them itself from the
 *    parent's memory as it was by then: the parent's threads had gone on
 *    freeing and reusing chunks, and the child's heap was not the one it
 *    forked with.)
 */

enum { COPY_NONE, COPY_SEGS, COPY_ALL };
static void copy_make(void);

static int fork_mode;                 /* the child mode of this fork, read once */
static int copy_plan;                 /* COPY_* */
static int copy_src = -1;             /* the arena's descriptor, -1 when the program closed it */
static int copy_fd = -1, copy_mem = -1;
static int copy_fd_err;              /* why there is no copy_fd (told if the whole copy needed it) */
static int copy_pipe[2] = { -1, -1 }; /* parent -> child: one byte, copy_result */
static char copy_result;              /* 'a' all in copy_fd, 'f' segments in copy_fd, 'm' in copy_mem, 0 none */
static char *copy_anon;               /* no descriptor: the segments one after another, in anonymous memory */
static size_t copy_anon_len, copy_anon_at;

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

static int anon_size(void *ctx, size_t off, size_t len, int state) {
  (void)ctx, (void)off;
  if (state == EXT_SEG) copy_anon_len += len;
  return 0;
}

static int anon_put(void *ctx, size_t off, size_t len, int state) {
  (void)ctx;
  if (state != EXT_SEG) return 0;
  memcpy(copy_anon + copy_anon_at, exm_own.core.base + off, len);
  copy_anon_at += len;
  return 0;
}

/* In the parent, every lock held, before the fork: the segments into
 * anonymous memory, which the child inherits (copy_child_segments). */
static void anon_make(void) {
  copy_anon_len = copy_anon_at = 0;
  exm_core_walk(&exm_own.core, anon_size, NULL);
  if (!copy_anon_len || !(copy_anon = exm_os_anon(copy_anon_len))) return;
  exm_core_walk(&exm_own.core, anon_put, NULL);
}

static void anon_drop(void) {
  if (copy_anon) exm_os_unmap(copy_anon, copy_anon_len);
  copy_anon = NULL;
}

/* In the parent, every lock held: decide what the child gets a copy of. */
static void copy_prepare(void) {
  copy_plan = COPY_NONE;
  copy_result = 0;
  fork_mode = exm_cfg_child();
  if (!exm_own.core.cap) return;               /* no arena of our own */
  copy_src = exm_arena_fd_intact(&exm_own) ? exm_own.fd : -1;
  if (fork_mode == EXM_CHILD_DUPLICATE || (fork_mode == EXM_CHILD_COW && copy_src < 0)) copy_plan = COPY_ALL;
  else if (exm_own.core.seg_count) copy_plan = COPY_SEGS;
  else return;
  if ((copy_fd_err = exm_os_new_like(exm_cfg.dir, exm_own.core.cap, &copy_fd))) copy_fd = -1;
  if (exm_own.core.seg_count && exm_os_memfd(exm_own.core.cap, &copy_mem)) copy_mem = -1;
  if (exm_own.core.seg_count && copy_fd < 0 && copy_mem < 0) {
    anon_make();   /* no descriptor to copy into: no pipe needed either */
    return;
  }
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
  if (copy_plan == COPY_ALL && !(err = copy_fd < 0 ? copy_fd_err : copy_into(copy_fd, 1, 0))) {
    copy_result = 'a';
    return;
  }
  if (err) exm_warn("could not copy the file-backed arena for a forked child", NULL, err);
  if (!exm_own.core.seg_count) return;
  if (!copy_into(copy_fd, 1, 1)) copy_result = 'f';
  else if (!copy_into(copy_mem, 0, 1)) copy_result = 'm';
}

static void copy_close(void) {
  if (copy_fd >= 0) exm_os_close(copy_fd);
  if (copy_mem >= 0) exm_os_close(copy_mem);
  copy_fd = copy_mem = -1;
}

static void copy_parent(void) {
  anon_drop();
  if (copy_pipe[1] >= 0) {
    copy_make();
    /* the read end is still open here: no SIGPIPE if the child is gone */
    exm_os_write_all(copy_pipe[1], &copy_result, 1);
    exm_os_close(copy_pipe[0]);
    exm_os_close(copy_pipe[1]);
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

static int place_segment(void *ctx, size_t off, size_t len, int state) {
  (void)ctx;
  if (state != EXT_SEG) return 0;
  int err = exm_os_move(copy_anon + copy_anon_at, len, exm_own.core.base + off);
  if (err) exm_warn("could not move a forked child's copy of small blocks into place", NULL, err);
  copy_anon_at += len;
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
    exm_os_close(copy_pipe[1]);
    copy_result = exm_os_wait_pipe(copy_pipe[0]);   /* 0: the parent died first */
    exm_os_close(copy_pipe[0]);
    copy_pipe[0] = copy_pipe[1] = -1;
  }
  if (copy_result == 'a' && !exm_os_remap(exm_own.core.base, exm_own.core.cap, copy_fd, 0)) {
    if (exm_own.fd >= 0) exm_os_close(exm_own.fd);
    exm_own.fd = copy_fd;
    exm_os_file_id(copy_fd, &exm_own.dev, &exm_own.ino);
    copy_fd = -1;
    copy_close();
    exm_own_state = OWN_READY;     /* the copy is this child's own arena, structures and all */
    return 1;
  }
  return 0;
}

/* In the child, after the range got its view (cow or shared): the segments. */
static void copy_child_segments(void) {
  if (copy_anon) {
    copy_anon_at = 0;
    int err = exm_core_walk(&exm_own.core, place_segment, NULL);
    anon_drop();   /* what was moved is gone from there already */
    if (!err) {
      copy_close();
      return;
    }
  }
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
 * Lock order: glibc's stdio list lock, then exm_init_lock, exm_own.lock, the
 * inherited arenas' locks, the depot's (tcache.c) and the punch queue's.
 * Another thread may hold the list lock (fflush(NULL)) while it waits for a
 * FILE lock, held by a thread that waits
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
__thread int exm_in_arena;            /* fork.h: this thread is inside the arena's calls */
static __thread int fork_depth;       /* forks under way in this thread (a handler's inside another's) */
#define FORK_DEPTH 4
static __thread uint64_t fork_took[FORK_DEPTH];   /* per depth: the locks that fork holds (TOOK_*) */
#define TOOK_INIT ((uint64_t)1)
#define TOOK_OWN ((uint64_t)2)
#define TOOK_INH(i) ((uint64_t)4 << (i))
#define TOOK_LIST ((uint64_t)1 << 40)
#define TOOK_INTERRUPTED ((uint64_t)1 << 41)
#define TOOK_PUNCH ((uint64_t)1 << 42)   /* the background punch's queue (punch.c), after the arenas */
#define TOOK_DEPOT ((uint64_t)1 << 43)   /* the thread caches' depot (tcache.c): only by a fork that takes all */

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
  pthread_mutex_lock(&exm_init_lock);
  pthread_mutex_lock(&exm_own.lock);
  for (int i = 0; i < exm_n_inherited; i++) pthread_mutex_lock(&exm_inherited[i].lock), took |= TOOK_INH(i);
  exm_tcache_fork_lock();
  exm_punch_fork_lock();
  return took | TOOK_DEPOT | TOOK_PUNCH;
}

static uint64_t fork_lock_free_ones(void) {
  uint64_t took = TOOK_INTERRUPTED;
  if (!pthread_mutex_trylock(&exm_init_lock)) took |= TOOK_INIT;
  if (!pthread_mutex_trylock(&exm_own.lock)) took |= TOOK_OWN;
  for (int i = 0; i < exm_n_inherited; i++)
    if (!pthread_mutex_trylock(&exm_inherited[i].lock)) took |= TOOK_INH(i);
  if (exm_punch_fork_trylock()) took |= TOOK_PUNCH;
  return took;
}

/* The locks this thread's innermost fork holds (it stays innermost until
 * its handler ends: a signal may come while it waits for the child). */
static uint64_t fork_top(void) {
  int d = fork_depth - 1;
  return d < FORK_DEPTH ? fork_took[d] : TOOK_INTERRUPTED;
}

static void fork_unlock(uint64_t took) {
  if (took & TOOK_PUNCH) exm_punch_fork_unlock();
  if (took & TOOK_DEPOT) exm_tcache_fork_unlock();
  for (int i = exm_n_inherited - 1; i >= 0; i--)
    if (took & TOOK_INH(i)) pthread_mutex_unlock(&exm_inherited[i].lock);
  if (took & TOOK_OWN) pthread_mutex_unlock(&exm_own.lock);
  if (took & TOOK_INIT) pthread_mutex_unlock(&exm_init_lock);
  if (took & TOOK_LIST) _IO_list_unlock();
}

/* In the child: the parent's arena becomes a private (copy-on-write) view,
 * for what the parent has carved. The rest of the range stays as it was,
 * shared and never touched: a view takes no new blocks. A private mapping of
 * the whole range was charged for terabytes under strict overcommit
 * (vm.overcommit_memory=2 ignores MAP_NORESERVE) and refused, so the child
 * got a shared view and its writes reached the parent's blocks. 0 or an
 * errno. */
static int remap_cow(void) {
  if (exm_own.fd < 0 || !exm_os_same_file(exm_own.fd, exm_own.dev, exm_own.ino)) return EBADF;
  return exm_own.core.top ? exm_os_remap(exm_own.core.base, exm_own.core.top, exm_own.fd, 1) : 0;
}

/* Child of an interrupted fork: exm_own stays in place, a private view
 * that takes no new blocks (they go to RAM; OWN_UNUSABLE also keeps later
 * forks from touching it: their children inherit the view as it is). */
static void child_keeps_view(void) {
  exm_own_state = OWN_UNUSABLE;
  exm_own.kind = remap_cow() ? ARENA_SHARED : ARENA_COW;   /* neither commits nor punches the file */
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
  if (took & TOOK_INIT) pthread_mutex_init(&exm_init_lock, NULL);
  if (took & TOOK_OWN) exm_arena_lock_init(&exm_own.lock);
  for (int i = 0; i < exm_n_inherited; i++)
    if (took & TOOK_INH(i)) exm_arena_lock_init(&exm_inherited[i].lock);
  exm_tcache_fork_child(!!(took & TOOK_DEPOT));
  exm_punch_child(!!(took & TOOK_PUNCH), (took & (TOOK_LIST | TOOK_INTERRUPTED)) != 0);
  exm_advisor_after_fork();
  forks = 0;
  exm_arena_child_counters();
  exm_budget_after_fork();
  exm_cfg.stats[0] = 0;     /* the process exm was given reports, not its children */
  if (!exm_own.core.cap) return;
  if (took & TOOK_INTERRUPTED) return child_keeps_view();
  int mode = fork_mode;
  if (copy_child()) {
    exm_punch_child_own(&exm_own);   /* the blocks the parent was still giving back */
    exm_tcache_after_fork(&exm_own.core);
    return;
  }
  if (mode == EXM_CHILD_DUPLICATE) {
    exm_warn("could not duplicate the file-backed arena for a child; it sees the parent's blocks copy-on-write",
             NULL, 0);
    mode = EXM_CHILD_COW;
  }
  if (exm_n_inherited == EXM_MAX_INHERITED) {
    exm_warn("too many generations of forked processes with file-backed arenas", NULL, 0);
    abort();
  }
  if (mode == EXM_CHILD_COW) {
    int err = remap_cow();
    if (err) {
      exm_warn("could not give a forked child a copy-on-write view; it shares the parent's blocks", NULL, err);
      mode = EXM_CHILD_SHARED;
    }
  }
  copy_child_segments();
  exm_tcache_after_fork(&exm_own.core);
  exm_arena_t *a = &exm_inherited[exm_n_inherited++];
  *a = exm_own;
  exm_arena_lock_init(&a->lock);
  exm_arena_set_host(a);
  a->kind = mode == EXM_CHILD_COW ? ARENA_COW : ARENA_SHARED;   /* fd stays open for exm_lookup */
  memset(&exm_own.core, 0, sizeof exm_own.core);
  exm_own.fd = -1;
  exm_own_state = OWN_UNMADE;
}

uint64_t exm_fork_count(void) { return forks; }

void exm_fork_setup(void) {
  libc_single_threaded = dlsym(RTLD_DEFAULT, "__libc_single_threaded");
  pthread_atfork(fork_prepare, fork_parent, fork_child);
}
