/*
 * msg.h: the line builder (msg.c). Every message exm prints, on stderr or in
 * a JSON file, is built here: no printf, no malloc, one write per line.
 */
#ifndef EXM_MSG_H
#define EXM_MSG_H

#include <stddef.h>
#include <stdint.h>

typedef struct exm_line {
  char buf[1024];
  size_t n;
} exm_line_t;
void exm_line_str(exm_line_t *l, const char *s);
void exm_line_value(exm_line_t *l, const char *s);  /* escaped, truncated */
void exm_line_u64(exm_line_t *l, uint64_t v);
void exm_line_size(exm_line_t *l, uint64_t bytes);   /* "1.5 GiB" */
void exm_line_err(exm_line_t *l, int err);           /* strerror text */
/* "exm: <what>\n" on stderr, in one write. */
void exm_warn(const char *what, const char *detail, int err);
void exm_line_emit(exm_line_t *l);
/* A pointer that is no live block of an arena was handed to `who`: one line, then abort. */
void exm_bad_pointer(const char *who, const void *p) __attribute__((noreturn));

#endif
