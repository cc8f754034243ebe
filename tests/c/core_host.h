/*
 * core_host.h: for the C tests that run the carving core on a plain buffer
 * (core_flush.c, core_growth.c): the host's memory for the core's
 * bookkeeping (anonymous mappings) and the consistency walk between phases.
 * The includer defines DIE(...), its one-line failure, first; the disk
 * callbacks (what each test counts) are its own.
 */
#ifndef EXM_TEST_CORE_HOST_H
#define EXM_TEST_CORE_HOST_H

#include "core_buffer.h"

static void *h_meta_map(void *ctx, size_t len) { (void)ctx; return anon_map(len); }
static void h_meta_unmap(void *ctx, void *p, size_t len) { (void)ctx; munmap(p, len); }

static void check(exm_core_t *c, const char *when) {
  char msg[160];
  if (exm_core_check(c, msg, sizeof msg)) DIE("%s: exm_core_check: %s", when, msg);
}

#endif
