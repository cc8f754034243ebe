/*
 * exm.h: the public C API of libexm.
 *
 * libexm serves large allocations from a file-backed arena (one unlinked,
 * sparse file per process, mapped MAP_SHARED). It is used either preloaded
 * (`exm program`, or LD_PRELOAD=libexm.so) or linked (`cc app.c -lexm`); in
 * both cases malloc & co. are interposed and these functions tune it at run
 * time. All functions are thread-safe. Functions returning int return 0 on
 * success and an errno value on failure; they never set errno themselves.
 */
#ifndef EXM_H
#define EXM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define EXM_MALLOC_ATTR(size_arg) __attribute__((malloc, alloc_size(size_arg), warn_unused_result))
#else
#define EXM_MALLOC_ATTR(size_arg)
#endif

/* ---- Version ------------------------------------------------------------ */

#define EXM_VERSION_MAJOR 0
#define EXM_VERSION_MINOR 1
#define EXM_VERSION_PATCH 0

/* The library's version as "MAJOR.MINOR.PATCH" (static storage). */
const char *exm_version(void);

/* ---- Settings ------------------------------------------------------------
 * Initial values come from the EXM_* environment variables (see the README's
 * option table). Changing them affects later allocations only. */

/* Parses a size as the EXM_* variables and the CLI take it ("4096", "512K",
 * "1.5GiB": binary units K M G T P E, a fraction needs a unit and is rounded
 * down): 0 and *bytes set, EINVAL for text that is not a size, ERANGE above
 * 2^63-1 bytes. For bindings that take sizes as text (R, Python). */
int exm_parse_size(const char *text, size_t *bytes);

/* Allocations of at least this many bytes go to the arena. 0 sends everything;
 * SIZE_MAX nothing (through malloc; the exm_alloc family still does).
 * EXM_THRESHOLD_AUTO (EXM_THRESHOLD=auto, `exm --threshold auto`): the
 * default size, but such allocations are served from RAM while the budget
 * (half the room under the process's memory limits) lasts; get returns it
 * while that mode is on, and setting a size turns it off. It is not SIZE_MAX,
 * which the bindings give for "infinity". */
#define EXM_THRESHOLD_AUTO ((size_t)-2)
size_t exm_get_threshold(void);
int exm_set_threshold(size_t bytes);

/* Directory for backing files of arenas created after the call. Copies at most
 * `len` bytes including the terminating NUL into `buf`; returns ERANGE if it
 * does not fit. exm_set_dir checks that `path` is a writable directory. */
int exm_get_dir(char *buf, size_t len);
int exm_set_dir(const char *path);

/* What a forked child sees of its parent's file-backed blocks. */
typedef enum exm_child_mode {
  EXM_CHILD_COW = 0,       /* copy-on-write: the child's writes stay private */
  EXM_CHILD_SHARED = 1,    /* parent and child share the blocks writable */
  EXM_CHILD_DUPLICATE = 2  /* the child gets its own file-backed copy */
} exm_child_mode_t;
exm_child_mode_t exm_get_child_mode(void);
int exm_set_child_mode(exm_child_mode_t mode);

/* Access advice applied to arena blocks. */
typedef enum exm_advice {
  EXM_ADVICE_AUTO = 0,       /* exm's default policy (see the README) */
  EXM_ADVICE_NORMAL = 1,     /* MADV_NORMAL: kernel read-around */
  EXM_ADVICE_SEQUENTIAL = 2, /* MADV_SEQUENTIAL: large read-ahead */
  EXM_ADVICE_RANDOM = 3      /* MADV_RANDOM: no read-ahead */
} exm_advice_t;
/* The arena's policy from now on: normal, sequential and random apply to the
 * whole arena at once (blocks advised with exm_advise included); auto lets
 * exm adapt the advice of blocks of 16 MiB and more to how they are read. */
exm_advice_t exm_get_advice(void);
int exm_set_advice(exm_advice_t advice);

/* Cap on disk reserved by this process's arena (0: no cap). A malloc that
 * would pass it is served in RAM instead; exm_alloc fails with ENOMEM. */
size_t exm_get_max_disk(void);
int exm_set_max_disk(size_t bytes);

/* ---- Explicit file-backed allocation --------------------------------------
 * Served from the arena whatever the threshold. Memory reads as zeros.
 * Returns NULL and sets errno to ENOMEM when the arena cannot serve it. The
 * result may be released with exm_free or free. */
void *exm_alloc(size_t bytes) EXM_MALLOC_ATTR(1);
void exm_free(void *ptr);

/* ---- Lookup --------------------------------------------------------------- */

typedef struct exm_block_info {
  void *base;          /* start of the block holding the pointer */
  size_t size;         /* usable size of the block */
  size_t offset;       /* offset of `base` in the backing file */
  int fd;              /* descriptor of the backing file (owned by exm) */
  char path[256];      /* /proc/self/fd/N: opens the (unlinked) backing file. In a
                          forked child, blocks inherited in cow or shared mode name
                          the parent's file (cow: without the child's own writes) */
} exm_block_info_t;

/* 1 if ptr points into a live block of this process's arena(s), else 0. */
int exm_is_file_backed(const void *ptr);
/* Fills `info` for the live arena block containing ptr; ENOENT otherwise. */
int exm_lookup(const void *ptr, exm_block_info_t *info);
/* madvise the whole block containing ptr (EXM_ADVICE_AUTO: back to the
 * arena's policy); ENOENT if not an arena block. */
int exm_advise(void *ptr, exm_advice_t advice);

/* ---- Statistics and checks ------------------------------------------------ */

typedef struct exm_stats {
  uint64_t live_bytes;      /* usable bytes of live arena blocks */
  uint64_t peak_live_bytes;
  uint64_t live_blocks;
  uint64_t total_allocs;    /* arena allocations served */
  uint64_t total_frees;
  uint64_t disk_reserved;   /* bytes fallocated and not yet given back */
  uint64_t peak_disk_reserved;
  uint64_t bytes_punched;   /* bytes given back to the filesystem */
  uint64_t arena_size;      /* bytes of the arena carved so far (its high-water mark) */
  uint64_t fallbacks;       /* below-threshold requests served by the arena after malloc failed */
  uint64_t failures;        /* requests the arena could not serve (malloc's went to RAM) */
  uint64_t forks;           /* forks seen by this process */
  uint64_t alloc_ns;        /* time spent inside the arena allocator */
  uint64_t ram_budget_bytes; /* --threshold auto: bytes served from RAM by the budget */
} exm_stats_t;

int exm_get_stats(exm_stats_t *out);
/* Walks every structure of the arena allocator; returns 0 when consistent,
 * EFAULT (after one line on stderr) when not. Costs O(blocks). */
int exm_check(void);

/* ---- Tables ---------------------------------------------------------------
 * The functions above and the fields of exm_stats_t, in declaration order,
 * as X-macros: the C bindings (rpkg/src/rexm.c, tests/c/common.h) and the
 * library's JSON record build their tables from them, and tests/tables.test.ts
 * checks the other copies (Bun, Python, the launcher) against them.
 * EXM_FUNCTIONS: X(return type, name without exm_, (parameter types)).
 * EXM_STATS_FIELDS: X(field, camelCase name in JSON and the Bun API). */

#define EXM_FUNCTIONS(X)                                  \
  X(const char *, version, (void))                        \
  X(int, parse_size, (const char *, size_t *))            \
  X(size_t, get_threshold, (void))                        \
  X(int, set_threshold, (size_t))                         \
  X(int, get_dir, (char *, size_t))                       \
  X(int, set_dir, (const char *))                         \
  X(exm_child_mode_t, get_child_mode, (void))             \
  X(int, set_child_mode, (exm_child_mode_t))              \
  X(exm_advice_t, get_advice, (void))                     \
  X(int, set_advice, (exm_advice_t))                      \
  X(size_t, get_max_disk, (void))                         \
  X(int, set_max_disk, (size_t))                          \
  X(void *, alloc, (size_t))                              \
  X(void, free, (void *))                                 \
  X(int, is_file_backed, (const void *))                  \
  X(int, lookup, (const void *, exm_block_info_t *))      \
  X(int, advise, (void *, exm_advice_t))                  \
  X(int, get_stats, (exm_stats_t *))                      \
  X(int, check, (void))

#define EXM_STATS_FIELDS(X)                   \
  X(live_bytes, liveBytes)                    \
  X(peak_live_bytes, peakLiveBytes)           \
  X(live_blocks, liveBlocks)                  \
  X(total_allocs, totalAllocs)                \
  X(total_frees, totalFrees)                  \
  X(disk_reserved, diskReserved)              \
  X(peak_disk_reserved, peakDiskReserved)     \
  X(bytes_punched, bytesPunched)              \
  X(arena_size, arenaSize)                    \
  X(fallbacks, fallbacks)                     \
  X(failures, failures)                       \
  X(forks, forks)                             \
  X(alloc_ns, allocNs)                        \
  X(ram_budget_bytes, ramBudgetBytes)

#ifdef __cplusplus
}
#endif
#endif /* EXM_H */
