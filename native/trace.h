/*
 * trace.h: --verbose decisions, rate-limited, and warnings given once per
 * run (trace.c).
 */
#ifndef EXM_TRACE_H
#define EXM_TRACE_H

#include <stddef.h>

void exm_trace_block(const void *p, size_t n, int err);   /* arena served p, or failed with err */
void exm_trace_ram(size_t n, const char *why);            /* a request went to RAM instead */
void exm_trace_arena(size_t cap);                         /* the arena was made */
void exm_trace_hint_dropped(const void *p, size_t len);   /* override.c's madvise kept MADV_HUGEPAGE off */
/* 1 if no process of this run has warned about `name` yet (EXM_WARNED); then
 * it counts as warned. exm_warned_publish passes the names on (constructor). */
int exm_warn_first(const char *name);
void exm_warned_publish(void);

#endif
