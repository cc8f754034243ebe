/*
 * internal.h: what the library's files share and nobody else sees. Built with
 * -fvisibility=hidden: only exm_* API functions and the malloc family are
 * exported (build.ts checks that).
 */
#ifndef EXM_INTERNAL_H
#define EXM_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "exm.h"

#define EXM_API __attribute__((visibility("default")))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* ---- options.c: the one option table ---------------------------------------- */

#define EXM_PATH_MAX 4096

typedef struct exm_config {
  size_t threshold;            /* EXM_THRESHOLD */
  char dir[EXM_PATH_MAX];      /* EXM_DIR, else TMPDIR, else /tmp */
  int child;                   /* EXM_CHILD: exm_child_mode_t */
  int advice;                  /* EXM_ADVICE: exm_advice_t */
  size_t max_disk;             /* EXM_MAX_DISK, 0 = no cap */
  char stats[EXM_PATH_MAX];    /* EXM_STATS: "" off, "1" summary on stderr, else a JSON path */
  int verbose;                 /* EXM_VERBOSE */
} exm_config_t;

extern exm_config_t exm_cfg;
void exm_options_load(void);

/* ---- a line builder for stderr and JSON (no printf, no malloc) --------------- */

typedef struct exm_line {
  char buf[1024];
  size_t n;
} exm_line_t;
void exm_line_str(exm_line_t *l, const char *s);
void exm_line_value(exm_line_t *l, const char *s);  /* escaped, truncated */
void exm_line_u64(exm_line_t *l, uint64_t v);
void exm_line_size(exm_line_t *l, uint64_t bytes);   /* "1.5 GiB" */
void exm_line_err(exm_line_t *l, int err);           /* strerror text */
/* "exm: <what>\n" on stderr, in one write. */
void exm_warn(const char *what, const char *detail, int err);
void exm_line_emit(exm_line_t *l);

/* ---- os.c: the only file that talks to the kernel ---------------------------- */

int exm_os_tmpfile(const char *dir, int *fd);
void *exm_os_map_file(int fd, size_t *cap);
int exm_os_remap(void *base, size_t cap, int fd, int private_copy);
int exm_os_file_id(int fd, uint64_t *dev, uint64_t *ino);
int exm_os_same_file(int fd, uint64_t dev, uint64_t ino);
int exm_os_reserve(int fd, size_t off, size_t len);
int exm_os_punch(int fd, size_t off, size_t len);
int exm_os_drop_private(void *p, size_t len);
int exm_os_madvise(void *p, size_t len, int advice);
void *exm_os_anon(size_t len);
void exm_os_unmap(void *p, size_t len);
int exm_os_dir_usable(const char *dir);
int exm_os_new_like(const char *dir, size_t cap, int *newfd);
int exm_os_copy_range(int from, const char *base, int to, size_t off, size_t len, int reserve);
int exm_os_memfd(size_t cap, int *fd);
int exm_os_map_copy(char *base, int fd, size_t off, size_t len);
int exm_os_snapshot(void *p, size_t len);
int exm_os_pipe(int fds[2]);
char exm_os_wait_pipe(int fd);
int exm_os_write_all(int fd, const char *buf, size_t len);
uint64_t exm_os_now_ns(void);

/* ---- arena.c: per-process arenas, locking, fork ---------------------------- */

typedef struct exm_arena {
  pthread_mutex_t lock;
  exm_core_t core;
  int fd;                      /* backing file, -1 once closed */
  uint64_t dev, ino;           /* its identity: the program may close fd and reuse the number */
  int kind;                    /* ARENA_* */
} exm_arena_t;

enum { ARENA_OWN = 0, ARENA_COW = 1, ARENA_SHARED = 2 };

extern int exm_ready;
void exm_init(void);
static inline void exm_ensure_init(void) {
  if (unlikely(!__atomic_load_n(&exm_ready, __ATOMIC_ACQUIRE))) exm_init();
}
/* The arena whose range holds p, or NULL. Inline: free() asks it of every
 * pointer, and most are glibc's. */
extern exm_arena_t exm_own;
extern int exm_n_inherited;
exm_arena_t *exm_arena_of_inherited(const void *p);
static inline exm_arena_t *exm_arena_of(const void *p) {
  /* the arena may be being created by another thread: cap is stored last
   * (exm_core_init), so a cap seen here comes with its base */
  size_t cap = __atomic_load_n(&exm_own.core.cap, __ATOMIC_ACQUIRE);
  if ((uintptr_t)p - (uintptr_t)__atomic_load_n(&exm_own.core.base, __ATOMIC_RELAXED) < cap) return &exm_own;
  return likely(!exm_n_inherited) ? NULL : exm_arena_of_inherited(p);
}
/* Allocate from this process's own arena; NULL+*err on failure. *served is 0
 * when the arena is unusable (caller passes the request through). */
void *exm_arena_alloc(size_t n, size_t align, int zero, int *served, int *err);
void exm_arena_free(exm_arena_t *a, void *p, const char *who);
/* 0 resized in place, ENOMEM not possible in place. */
int exm_arena_resize(exm_arena_t *a, void *p, size_t n, const char *who);
size_t exm_arena_usable(exm_arena_t *a, const void *p, const char *who);
void exm_arena_stats(exm_stats_t *out, int in_signal);
int exm_arena_check(void);
int exm_arena_lookup(const void *p, exm_block_info_t *info);
int exm_arena_advise(void *p, int advice);
int exm_arena_set_advice(int advice);
int exm_arena_set_dir(const char *dir);
int exm_arena_get_dir(char *buf, size_t len);
int exm_arena_set_max_disk(size_t bytes);
void exm_arena_setup(void);   /* from the constructor: checks, fork handlers */
/* For heapinfo.c: every arena's blocks, small (in segments) and large. */
typedef struct exm_heap {
  size_t small_space, small_live, small_blocks;   /* segments' bytes; small blocks in use */
  size_t large_blocks, large_bytes;               /* blocks of a page or more */
  size_t arena_bytes;                             /* the arenas' ranges */
} exm_heap_t;
void exm_arena_heap(exm_heap_t *h);
/* malloc_trim: the caller's cached chunks back, and the disk kept for reuse; 1 if any. */
int exm_arena_trim(void);
void exm_bad_pointer(const char *who, const void *p) __attribute__((noreturn));

extern uint64_t exm_fallbacks;
/* Non-zero while this thread is inside the arena's calls (override.c sets
 * it): a fork from a signal handler must then not wait for exm's locks. */
extern __thread int exm_in_arena;
static inline void exm_enter(void) { exm_in_arena++; __atomic_signal_fence(__ATOMIC_SEQ_CST); }
static inline void exm_leave(void) { __atomic_signal_fence(__ATOMIC_SEQ_CST); exm_in_arena--; }

/* ---- advisor.c: EXM_ADVICE=auto --------------------------------------------- */
void exm_advisor_block(size_t bytes);
size_t exm_advisor_min(void);
void exm_advisor_after_fork(void);
char *exm_arena_base(void);
int exm_arena_large_blocks(size_t min, size_t *offs, size_t *lens, int max);
void exm_arena_auto_advise(size_t off, size_t len, int advice, int announce);

/* ---- stats.c ----------------------------------------------------------------- */
void exm_stats_setup(void);

/* ---- trace.c: --verbose decisions, rate-limited --------------------------------- */
void exm_trace_block(const void *p, size_t n, int err);   /* arena served p, or failed with err */
void exm_trace_ram(size_t n, const char *why);            /* a request went to RAM instead */
void exm_trace_arena(size_t cap);                         /* the arena was made */
/* 1 if no process of this run has warned about `name` yet (EXM_WARNED); then
 * it counts as warned. exm_warned_publish passes the names on (constructor). */
int exm_warn_first(const char *name);
void exm_warned_publish(void);

#endif
