/*
 * advisor.h: EXM_ADVICE=auto (advisor.c), as arena.c and fork.c call it.
 */
#ifndef EXM_ADVISOR_H
#define EXM_ADVISOR_H

#include <stddef.h>

/* A block of at least exm_advisor_min() bytes was made: start watching. */
void exm_advisor_block(size_t bytes);
size_t exm_advisor_min(void);
/* In a forked child: the parent's thread did not come along; forget its state. */
void exm_advisor_after_fork(void);

#endif
