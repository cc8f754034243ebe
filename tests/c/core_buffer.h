/*
 * core_buffer.h: what the carving core's tests on a plain buffer (core_unit.c,
 * core_flush.c, fuzz_core.c) share: the range the core carves, an anonymous
 * reservation in place of the arena's file mapping, and the anonymous memory
 * their hosts hand the core for its bookkeeping, as arena.c's host does.
 * No file and no kernel beyond mmap: what these tests check is the core alone.
 */
#ifndef EXM_TEST_CORE_BUFFER_H
#define EXM_TEST_CORE_BUFFER_H

#include "../../native/core.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* cap bytes of address space, NORESERVE: only the pages a test touches cost
 * RAM. A machine that cannot give it ends the program with one line. The
 * range starts five pages past a segment boundary, on purpose: the kernel
 * aligns large mappings, valgrind does not, and the core must work at any
 * page-aligned base (its segments are aligned in the address space, not in
 * the range; a peek that mixed the two passed here with an aligned buffer
 * and failed only under valgrind). */
static __attribute__((unused)) unsigned char *core_buffer(size_t cap) {
  size_t pad = 2 * EXM_SEG_SIZE;
  void *p = mmap(NULL, cap + pad, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    fprintf(stderr, "core test: cannot reserve %zu MiB for the buffer: %s\n", cap >> 20, strerror(errno));
    exit(1);
  }
  uintptr_t seg = ((uintptr_t)p + EXM_SEG_SIZE - 1) & ~(EXM_SEG_SIZE - 1);
  return (unsigned char *)(seg + 5 * EXM_PAGE);
}

/* The core initialised over a fresh buffer of cap bytes; returns the buffer. */
static __attribute__((unused)) unsigned char *core_on_buffer(exm_core_t *c, size_t cap, const exm_host_t *host) {
  unsigned char *buf = core_buffer(cap);
  exm_core_init(c, buf, cap, host);
  return buf;
}

/* Zeroed, page-aligned memory for the core's bookkeeping, or NULL. */
static __attribute__((unused)) void *anon_map(size_t len) {
  void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

#endif
