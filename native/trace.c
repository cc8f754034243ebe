/*
 * trace.c: what --verbose (EXM_VERBOSE=1) tells of the library's decisions:
 * the arena's size (address space) against the disk it may use, where each
 * large block went and why, a request the arena could not serve, a request
 * that went to RAM instead of the arena.
 *
 * At a rate a person can read: of each kind of message the first 8 are
 * printed, then only the 16th, 32nd, 64th... (each saying which one it is),
 * so a program making a million blocks prints about 25 lines, not a million.
 * Called outside the arena lock (a write to stderr can block), from any
 * thread, with no malloc or stdio: one write(2) per line.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arena.h"
#include "msg.h"
#include "options.h"
#include "os.h"
#include "trace.h"

/* Blocks smaller than this are not "large": with --threshold 0 every small
 * object goes to the arena, and telling of each would drown the rest. */
#define TRACE_MIN ((size_t)1 << 20)

enum { T_BLOCK, T_FAIL, T_RAM, T_HINT, T_KINDS };
static uint64_t counts[T_KINDS];

/* 0: stay quiet; else the message's number, to be printed. */
static uint64_t next_shown(int kind) {
  uint64_t k = __atomic_add_fetch(&counts[kind], 1, __ATOMIC_RELAXED);
  return k <= 8 || (k & (k - 1)) == 0 ? k : 0;
}

static void head(exm_line_t *l) {
  exm_line_str(l, "exm: pid ");
  exm_line_u64(l, (uint64_t)getpid());
  exm_line_str(l, ": ");
}

static void tail(exm_line_t *l, uint64_t k) {
  if (k > 8) {
    exm_line_str(l, " (message ");
    exm_line_u64(l, k);
    exm_line_str(l, " of this kind; the ones between are not shown)");
  }
  exm_line_emit(l);
}

void exm_trace_block(const void *p, size_t n, int err) {
  if (!exm_cfg.verbose || n < TRACE_MIN) return;
  uint64_t k = next_shown(p ? T_BLOCK : T_FAIL);
  if (!k) return;
  /* a copy taken under the arena lock: exm_set_dir may be writing it */
  char dir[EXM_PATH_MAX];
  if (exm_arena_get_dir(dir, sizeof dir)) dir[0] = 0;
  exm_line_t l = { .n = 0 };
  head(&l);
  if (p) {
    exm_line_size(&l, n);
    exm_line_str(&l, " file-backed at offset ");
    exm_line_size(&l, (uint64_t)((const char *)p - exm_own.core.base));
    exm_line_str(&l, " of the arena in ");
    exm_line_value(&l, dir);
    if (n >= exm_cfg.threshold) {
      exm_line_str(&l, " (at or above the threshold of ");
      exm_line_size(&l, exm_cfg.threshold);
      exm_line_str(&l, ")");
    } else {
      exm_line_str(&l, " (below the threshold: asked for explicitly, or glibc had no memory)");
    }
  } else {
    exm_stats_t s;
    exm_arena_stats(&s, 1);
    uint64_t avail;
    int full;
    if (exm_os_disk_space(dir, &avail, &full)) avail = UINT64_MAX;
    exm_line_str(&l, "the arena cannot serve ");
    exm_line_size(&l, n);
    exm_line_str(&l, ": ");
    if (exm_cfg_max_disk() && s.disk_reserved + n > exm_cfg_max_disk()) {
      exm_line_str(&l, "it would pass the --max-disk cap of ");
      exm_line_size(&l, exm_cfg_max_disk());
      exm_line_str(&l, " (");
      exm_line_size(&l, s.disk_reserved);
      exm_line_str(&l, " reserved)");
    } else if (err == ENOSPC || err == EDQUOT || avail < n) {
      exm_line_str(&l, "not enough disk space in ");
      exm_line_value(&l, dir);
      if (avail != UINT64_MAX) {
        exm_line_str(&l, " (");
        exm_line_size(&l, avail);
        exm_line_str(&l, " free)");
      }
    } else if (n > exm_own.core.cap) {
      exm_line_str(&l, "larger than the arena (");
      exm_line_size(&l, exm_own.core.cap);
      exm_line_str(&l, ")");
    } else {
      exm_line_err(&l, err ? err : ENOMEM);
      exm_line_str(&l, " (data directory ");
      exm_line_value(&l, dir);
      exm_line_str(&l, ")");
    }
  }
  tail(&l, k);
}

/* The arena's size is address space, not disk: say what the disk has.
 * Called by own_create, under the arena lock (so exm_cfg.dir is stable). */
void exm_trace_arena(size_t cap) {
  if (!exm_cfg.verbose) return;
  exm_line_t l = { .n = 0 };
  head(&l);
  exm_line_str(&l, "file-backed arena of ");
  exm_line_size(&l, cap);
  exm_line_str(&l, " in ");
  exm_line_value(&l, exm_cfg.dir);
  uint64_t free_bytes;
  int full;
  exm_line_str(&l, " (address space; disk is taken only by live blocks");
  if (exm_os_disk_space(exm_cfg.dir, &free_bytes, &full) == 0) {
    exm_line_str(&l, ", and ");
    exm_line_size(&l, free_bytes);
    exm_line_str(&l, " is free there");
  }
  if (exm_cfg_max_disk()) {
    exm_line_str(&l, "; at most ");
    exm_line_size(&l, exm_cfg_max_disk());
    exm_line_str(&l, " by --max-disk");
  }
  exm_line_str(&l, ")");
  exm_line_emit(&l);
}

void exm_trace_ram(size_t n, const char *why) {
  if (!exm_cfg.verbose || n < TRACE_MIN) return;
  uint64_t k = next_shown(T_RAM);
  if (!k) return;
  exm_line_t l = { .n = 0 };
  head(&l);
  exm_line_size(&l, n);
  exm_line_str(&l, " in RAM instead of the arena: ");
  exm_line_str(&l, why);
  tail(&l, k);
}

/* ---- warnings once per run ----------------------------------------------------
 * A bad EXM_* value is warned about by every process that loads the library;
 * through a shim chain (pyenv's python3 is a bash script that runs others)
 * that is dozens of copies of one line. The names already warned about travel
 * in EXM_WARNED (space-separated) to the processes started afterwards, which
 * stay quiet about them. The settings are read inside the first malloc, where
 * setenv (which allocates) cannot run, so the names are kept here and
 * published from the constructor. */
static char warned[512];

static int listed(const char *list, const char *name) {
  size_t n = strlen(name);
  for (const char *p = list; (p = strstr(p, name)); p += n)
    if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == 0)) return 1;
  return 0;
}

int exm_warn_first(const char *name) {
  const char *before = getenv("EXM_WARNED");
  if ((before && listed(before, name)) || listed(warned, name)) return 0;
  size_t have = strlen(warned), n = strlen(name);
  if (have + n + 2 < sizeof warned) {
    if (have) warned[have++] = ' ';
    memcpy(warned + have, name, n + 1);
  }
  return 1;
}

void exm_warned_publish(void) {
  if (!warned[0]) return;
  const char *before = getenv("EXM_WARNED");
  char all[1024];
  size_t b = before ? strlen(before) : 0, w = strlen(warned);
  if (b + w + 2 > sizeof all) return;
  if (b) memcpy(all, before, b), all[b++] = ' ';
  memcpy(all + b, warned, w + 1);
  setenv("EXM_WARNED", all, 1);   /* constructor time: malloc is ready */
}

void exm_trace_hint_dropped(const void *p, size_t len) {
  if (!exm_cfg.verbose) return;
  uint64_t k = next_shown(T_HINT);
  if (!k) return;
  exm_line_t l = { .n = 0 };
  head(&l);
  exm_line_str(&l, "the program's MADV_HUGEPAGE on ");
  exm_line_size(&l, len);
  exm_line_str(&l, " at offset ");
  exm_line_size(&l, (uint64_t)((const char *)p - exm_own.core.base));
  exm_line_str(&l, " of the arena was not applied: the block is advised random, and on a file mapping the hint makes every fault read 2 MiB");
  tail(&l, k);
}
