/*
 * stats.h: EXM_STATS, the report at exit (stats.c).
 */
#ifndef EXM_STATS_H
#define EXM_STATS_H

/* From the constructor: exit hooks and the run's statistics directory. */
void exm_stats_setup(void);

#endif
