/*
 * init.h: process start-up (init.c). exm_ensure_init reads the settings on
 * first use (the first malloc may come before any constructor); exm_setup is
 * the constructor's one call (override.c).
 */
#ifndef EXM_INIT_H
#define EXM_INIT_H

#include <pthread.h>

#include "internal.h"

extern int exm_ready;
void exm_init(void);
static inline void exm_ensure_init(void) {
  if (unlikely(!__atomic_load_n(&exm_ready, __ATOMIC_ACQUIRE))) exm_init();
}
/* From the constructor: settings, the data directory's check, fork
 * handlers, the thread caches' exit hook. */
void exm_setup(void);
/* Held while the settings are read; fork.c takes it first of exm's locks. */
extern pthread_mutex_t exm_init_lock;

#endif
