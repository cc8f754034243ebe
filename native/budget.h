/*
 * budget.h: --threshold auto's RAM budget (budget.c): may a request at or
 * above the threshold be served from RAM?
 */
#ifndef EXM_BUDGET_H
#define EXM_BUDGET_H

#include <stddef.h>
#include <stdint.h>

/* 1: serve n bytes from RAM, taken from the budget; 0: from the file. */
int exm_budget_take(size_t n);
/* RAM could not serve what exm_budget_take allowed: give it back. */
void exm_budget_give(size_t n);
/* Bytes served from RAM by the budget so far (statistics). */
uint64_t exm_budget_served(void);
/* A forked child starts counting again. */
void exm_budget_after_fork(void);

#endif
