/*
 * options.h: the library's settings (options.c), read once from EXM_*
 * variables by exm_options_load (init.c calls it), and changed at run time
 * only through the exm_cfg_set_* functions below: options.c is exm_cfg's
 * one writer. The settings the runtime API changes (threshold, its auto
 * flag, child, advice, max_disk) are stored atomically, so that a reader
 * holding no lock reads them with the exm_cfg_* loads; dir is a string,
 * changed and copied under the own arena's lock (arena.c). The rest
 * (stats, verbose) never change after start-up.
 */
#ifndef EXM_OPTIONS_H
#define EXM_OPTIONS_H

#include <stddef.h>

#include "internal.h"

#define EXM_PATH_MAX 4096

typedef struct exm_config {
  size_t threshold;            /* EXM_THRESHOLD (auto: its default) */
  int threshold_auto;          /* EXM_THRESHOLD=auto: RAM first, within budget.c's budget */
  char dir[EXM_PATH_MAX];      /* EXM_DIR, else TMPDIR, else /tmp */
  int child;                   /* EXM_CHILD: exm_child_mode_t */
  int advice;                  /* EXM_ADVICE: exm_advice_t */
  size_t max_disk;             /* EXM_MAX_DISK, 0 = no cap */
  char stats[EXM_PATH_MAX];    /* EXM_STATS: "" off, "1" summary on stderr, else a JSON path */
  int verbose;                 /* EXM_VERBOSE */
} exm_config_t;

extern exm_config_t exm_cfg EXM_HIDDEN;
void exm_options_load(void);

/* Run-time changes (the runtime API, api.c and arena.c). */
void exm_cfg_set_threshold(size_t bytes, int automatic);
void exm_cfg_set_child(int mode);
void exm_cfg_set_advice(int advice);
void exm_cfg_set_max_disk(size_t bytes);
/* The caller holds the own arena's lock; dir is absolute and shorter than EXM_PATH_MAX. */
void exm_cfg_set_dir(const char *dir);

/* Loads for readers that hold no lock. */
static inline int exm_cfg_advice(void) { return __atomic_load_n(&exm_cfg.advice, __ATOMIC_RELAXED); }
static inline int exm_cfg_child(void) { return __atomic_load_n(&exm_cfg.child, __ATOMIC_RELAXED); }
static inline size_t exm_cfg_max_disk(void) { return __atomic_load_n(&exm_cfg.max_disk, __ATOMIC_RELAXED); }

#endif
