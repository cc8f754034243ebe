/*
 * init.c: process start-up.
 *
 * Owns exm_ready and the lock under which the settings are read. Promises:
 * the settings are read exactly once, by whichever comes first, the first
 * malloc (ld.so and constructors allocate before exm's constructor runs) or
 * the constructor (exm_setup); nothing here allocates through malloc.
 */
#define _GNU_SOURCE
#include <pthread.h>

#include "arena_int.h"
#include "fork.h"
#include "init.h"
#include "options.h"
#include "tcache.h"

int exm_ready;
pthread_mutex_t exm_init_lock = PTHREAD_MUTEX_INITIALIZER;

void exm_init(void) {
  pthread_mutex_lock(&exm_init_lock);
  if (!exm_ready) {
    exm_options_load();
    __atomic_store_n(&exm_ready, 1, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&exm_init_lock);
}

void exm_setup(void) {
  exm_ensure_init();
  exm_arena_startup_check();
  exm_fork_setup();
  exm_tcache_setup();
}
