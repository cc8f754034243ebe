/*
 * options.h: the library's settings (options.c), read once from EXM_*
 * variables by exm_options_load (init.c calls it).
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

#endif
