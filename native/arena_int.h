/*
 * arena_int.h: arena.c's state that its two companions need, and nobody
 * else: fork.c (which carries the arenas across fork) and init.c (start-up).
 */
#ifndef EXM_ARENA_INT_H
#define EXM_ARENA_INT_H

#include "arena.h"

#define EXM_MAX_INHERITED 32

/* The own arena's state. */
enum {
  OWN_UNMADE = 0,        /* not made yet: the next allocation makes it */
  OWN_READY = 1,         /* made and usable */
  OWN_UNUSABLE = -1,     /* cannot be used: requests pass through to RAM */
};
extern int exm_own_state;
extern exm_arena_t exm_inherited[EXM_MAX_INHERITED];

/* Is the arena's descriptor still its file? (Tells the loss once.) */
int exm_arena_fd_intact(exm_arena_t *a);
/* Point the arena's core at this arena's host callbacks. */
void exm_arena_set_host(exm_arena_t *a);
/* A forked child's arena counters start from zero. */
void exm_arena_child_counters(void);
/* At start-up, with no arena made yet: an unusable data directory is
 * reported once, up front. */
void exm_arena_startup_check(void);

#endif
