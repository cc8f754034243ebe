/*
 * msg.c: the line builder, and the two ways exm speaks up: a warning line,
 * and the line before an abort on a bad pointer.
 *
 * Promises: no printf, no malloc, no locale (it runs inside malloc, maybe
 * before libc is set up): a line is built in a fixed buffer (truncated at
 * 1 KiB) and written to stderr in one write, so lines of several processes
 * do not interleave.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "msg.h"
#include "os.h"

void exm_line_str(exm_line_t *l, const char *s) {
  while (*s && l->n < sizeof l->buf - 2) l->buf[l->n++] = *s++;
}

/* A value from outside: control characters escaped (a newline could forge
 * a second "exm:" line), at most 200 bytes of it. */
void exm_line_value(exm_line_t *l, const char *s) {
  size_t shown = 0;
  for (; *s && shown < 200; s++, shown++) {
    unsigned char ch = (unsigned char)*s;
    if (ch >= 0x20 && ch != 0x7f) {
      char one[2] = { (char)ch, 0 };
      exm_line_str(l, one);
    } else {
      char esc[5] = { '\\', 'x', "0123456789abcdef"[ch >> 4], "0123456789abcdef"[ch & 15], 0 };
      exm_line_str(l, ch == '\n' ? "\\n" : ch == '\t' ? "\\t" : esc);
    }
  }
  if (*s) exm_line_str(l, "...");
}

void exm_line_u64(exm_line_t *l, uint64_t v) {
  char d[24];
  int n = 0;
  do d[n++] = (char)('0' + v % 10), v /= 10; while (v);
  while (n && l->n < sizeof l->buf - 2) l->buf[l->n++] = d[--n];
}

void exm_line_size(exm_line_t *l, uint64_t b) {
  static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
  int u = 0;
  uint64_t scaled10 = b * 10;   /* tenths */
  if (b >= 1024) {
    while (u < 5 && b >= ((uint64_t)1024 << (10 * u))) u++;
    scaled10 = (uint64_t)(((unsigned __int128)b * 10 + ((uint64_t)1 << (10 * u)) / 2) >> (10 * u));
  }
  exm_line_u64(l, scaled10 / 10);
  if (u) {
    exm_line_str(l, ".");
    exm_line_u64(l, scaled10 % 10);
  }
  exm_line_str(l, " ");
  exm_line_str(l, units[u]);
}

void exm_line_err(exm_line_t *l, int err) {
  const char *d = strerrordesc_np(err);   /* untranslated, static: no malloc */
  if (d) exm_line_str(l, d);
  else exm_line_str(l, "error "), exm_line_u64(l, (uint64_t)err);
}

void exm_line_emit(exm_line_t *l) {
  l->buf[l->n++] = '\n';
  exm_os_write_all(2, l->buf, l->n);
  l->n = 0;
}

void exm_warn(const char *what, const char *detail, int err) {
  exm_line_t l = { .n = 0 };
  exm_line_str(&l, "exm: ");
  exm_line_str(&l, what);
  if (detail) exm_line_value(&l, detail);
  if (err) exm_line_str(&l, ": "), exm_line_err(&l, err);
  exm_line_emit(&l);
}

void exm_bad_pointer(const char *who, const void *p) {
  exm_line_t l = { .n = 0 };
  exm_line_str(&l, "exm: ");
  exm_line_str(&l, who);
  exm_line_str(&l, "(): pointer 0x");
  char hex[17];
  uintptr_t v = (uintptr_t)p;
  for (int i = 15; i >= 0; i--, v >>= 4) hex[i] = "0123456789abcdef"[v & 15];
  hex[16] = 0;
  exm_line_str(&l, hex);
  exm_line_str(&l, " is not a live block of the file-backed arena (double free or corrupted pointer); aborting");
  exm_line_emit(&l);
  abort();
}
