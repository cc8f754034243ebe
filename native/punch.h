/*
 * punch.h: freed large blocks given back in the background (punch.c).
 *
 * Lock order: an arena's lock, then the queue's. Every function here that
 * takes an arena gets it with its lock held, except exm_punch_later (called
 * by the free path just after it let the lock go).
 */
#ifndef EXM_PUNCH_H
#define EXM_PUNCH_H

#include <stddef.h>
#include <stdint.h>

#include "arena.h"

/* 1 when the BUSY extent of a (the own arena) was queued: the background
 * thread punches it and files it as free space. 0: the caller does it.
 * `live`: a's live bytes, read under its lock (what may wait is bounded by
 * them). */
int exm_punch_later(exm_arena_t *a, exm_ext_t *busy, size_t live);
/* Bytes freed but not yet given back (a lock-free read). */
size_t exm_punch_pending(void);
/* With a->lock held: give back every block of a still waiting, now. */
void exm_punch_drain(exm_arena_t *a);

/* Fork (fork.c), in its lock order: after the arenas' locks. */
void exm_punch_fork_lock(void);
int exm_punch_fork_trylock(void);     /* a fork from a signal handler: 1 when taken */
void exm_punch_fork_unlock(void);
/* In the child, first: no thread, an empty queue. `took`: the fork held
 * the queue's lock (the queue is consistent and the child may read it).
 * `threaded`: the parent had other threads (or may have had): this child
 * starts no thread, its frees punch themselves. */
void exm_punch_child(int took, int threaded);
/* In a child whose own arena is the parent's copy (duplicate mode): the
 * blocks the parent was still giving back are free space in the copy too
 * (the copy holds no disk for them). */
void exm_punch_child_own(exm_arena_t *own);

#endif
