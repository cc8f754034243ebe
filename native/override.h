/*
 * override.h: what override.c (the malloc family) shares: the copy of the
 * threshold that its fast paths compare with.
 */
#ifndef EXM_OVERRIDE_H
#define EXM_OVERRIDE_H

#include <stddef.h>

#include "internal.h"

/* Requests below this go straight to glibc, in one compare: the threshold,
 * capped at EXM_SMALL_MAX (a larger request below the threshold takes the
 * slow path, which retries in the arena when glibc fails). 0 until exm_init
 * has read the settings, so that the first requests take the slow path,
 * which initialises. */
extern size_t exm_fast_below EXM_HIDDEN;
/* Recomputes exm_fast_below from exm_cfg.threshold (after every write of it). */
void exm_threshold_changed(void);

#endif
