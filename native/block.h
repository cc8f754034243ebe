/*
 * block.h: the narrow interface the advisor (advisor.c) has to the own
 * arena's large blocks (arena.c). Blocks are named by offset in the arena,
 * so the advisor holds no pointer that a free could invalidate.
 */
#ifndef EXM_BLOCK_H
#define EXM_BLOCK_H

#include <stddef.h>

/* The own arena's base address (offsets below are from it). */
char *exm_arena_base(void);
/* Up to max live blocks of at least min bytes that the user has not advised:
 * their offsets and lengths, in address order. */
int exm_arena_large_blocks(size_t min, size_t *offs, size_t *lens, int max);
/* Give the block [off, off+len) the advisor's advice, if it is still that
 * block and the user has not advised it; announce: tell a switch under --verbose. */
void exm_arena_auto_advise(size_t off, size_t len, int advice, int announce);

#endif
