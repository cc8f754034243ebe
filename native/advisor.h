/*
 * advisor.h: EXM_ADVICE=auto (advisor.c), as arena.c and fork.c call it.
 */
#ifndef EXM_ADVISOR_H
#define EXM_ADVISOR_H

#include <stddef.h>
#include <stdint.h>

/* A block of at least exm_advisor_min() bytes was made: start watching. */
void exm_advisor_block(size_t bytes);
size_t exm_advisor_min(void);
/* In a forked child: the parent's thread did not come along; forget its state. */
void exm_advisor_after_fork(void);
/* For the statistics: the advisor's work (looks, pages looked at, the time
 * its looks took), and the time the process was held up by random faults on
 * blocks it gave random advice, with the faults and bytes read from disk
 * meanwhile (advisor.c). */
typedef struct exm_advisor_stats {
  uint64_t looks, pages_looked, look_ns, random_ns, random_faults, random_read;
} exm_advisor_stats_t;
void exm_advisor_report(exm_advisor_stats_t *s);

#endif
