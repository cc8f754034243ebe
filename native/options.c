/*
 * options.c: the library's settings, read once from EXM_* variables.
 *
 * One table below lists every variable with its default and its parser; the
 * CLI's table (src/options.ts) and the README follow it, and a test checks
 * that they agree. A bad value gives one line on stderr naming the variable
 * and the value, then the default is used: the program always runs.
 *
 * Runs inside the first malloc call, so: getenv only, no allocation, no stdio.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

exm_config_t exm_cfg;

typedef struct option {
  const char *env;     /* variable name */
  const char *def;     /* default, as a user would write it ("" = computed) */
  int (*apply)(const char *value);   /* 0, or an errno for "bad value" */
  const char *expect;  /* what a good value looks like, for the warning */
} option_t;

int exm_parse_size(const char *s, size_t *out) {
  if (!s || !*s) return EINVAL;
  unsigned __int128 whole = 0, frac = 0, fscale = 1;
  const char *p = s;
  while (*p == ' ') p++;
  if (*p < '0' || *p > '9') return EINVAL;
  for (; *p >= '0' && *p <= '9'; p++) {
    whole = whole * 10 + (unsigned)(*p - '0');
    if (whole > ((unsigned __int128)1 << 64)) return ERANGE;
  }
  if (*p == '.') {
    p++;
    if (*p < '0' || *p > '9') return EINVAL;
    for (; *p >= '0' && *p <= '9'; p++)
      if (fscale < 1000000000000ull) frac = frac * 10 + (unsigned)(*p - '0'), fscale *= 10;
  }
  while (*p == ' ') p++;
  unsigned shift = 0;
  switch (*p | 0x20) {
    case 'k': shift = 10; p++; break;
    case 'm': shift = 20; p++; break;
    case 'g': shift = 30; p++; break;
    case 't': shift = 40; p++; break;
    case 'p': shift = 50; p++; break;
    default: break;
  }
  if (shift && (*p | 0x20) == 'i') {
    p++;
    if ((*p | 0x20) != 'b') return EINVAL;
  }
  if ((*p | 0x20) == 'b') p++;
  if (*p) return EINVAL;
  unsigned __int128 v = (whole << shift) + ((frac << shift) / fscale);
  if (v > (unsigned __int128)((size_t)1 << 63)) return ERANGE;
  *out = (size_t)v;
  return 0;
}

static const char *const child_names[] = { "cow", "shared", "duplicate" };
static const char *const advice_names[] = { "auto", "normal", "sequential", "random" };

static int parse_name(const char *s, const char *const *names, int n, int *out) {
  for (int i = 0; i < n; i++)
    if (!strcmp(s, names[i])) return *out = i, 0;
  return EINVAL;
}

int exm_parse_child(const char *s, int *out) {
  if (!strcmp(s, "copy-on-write")) return *out = EXM_CHILD_COW, 0;
  return parse_name(s, child_names, 3, out);
}
int exm_parse_advice(const char *s, int *out) { return parse_name(s, advice_names, 4, out); }
const char *exm_child_name(int mode) { return mode >= 0 && mode < 3 ? child_names[mode] : "?"; }
const char *exm_advice_name(int advice) { return advice >= 0 && advice < 4 ? advice_names[advice] : "?"; }

static int copy_str(char *dst, const char *s) {
  size_t n = strlen(s);
  if (n >= EXM_PATH_MAX) return ENAMETOOLONG;
  memcpy(dst, s, n + 1);
  return 0;
}

static int set_threshold(const char *v) { return exm_parse_size(v, &exm_cfg.threshold); }
static int set_max_disk(const char *v) { return exm_parse_size(v, &exm_cfg.max_disk); }
static int set_child(const char *v) { return exm_parse_child(v, &exm_cfg.child); }
static int set_advice(const char *v) { return exm_parse_advice(v, &exm_cfg.advice); }
static int set_dir(const char *v) { return *v == '/' ? copy_str(exm_cfg.dir, v) : EINVAL; }
static int set_stats(const char *v) {
  if (!strcmp(v, "0") || !*v) return exm_cfg.stats[0] = 0, 0;
  return copy_str(exm_cfg.stats, v);
}
static int set_verbose(const char *v) {
  if (!strcmp(v, "0") || !strcmp(v, "1")) return exm_cfg.verbose = *v - '0', 0;
  return EINVAL;
}

/* The option table: the library side of the README's table. */
static const option_t options[] = {
  { "EXM_THRESHOLD", "64M", set_threshold, "a size such as 4096, 512K, 64M or 1.5GiB" },
  { "EXM_DIR", "", set_dir, "an absolute path" },
  { "EXM_CHILD", "cow", set_child, "cow, shared or duplicate" },
  { "EXM_ADVICE", "auto", set_advice, "auto, normal, sequential or random" },
  { "EXM_MAX_DISK", "0", set_max_disk, "a size (0 = no cap)" },
  { "EXM_STATS", "0", set_stats, "1 or a file path" },
  { "EXM_VERBOSE", "0", set_verbose, "0 or 1" },
};

void exm_options_load(void) {
  const char *tmp = getenv("TMPDIR");
  if (!tmp || tmp[0] != '/' || copy_str(exm_cfg.dir, tmp)) copy_str(exm_cfg.dir, "/tmp");
  for (size_t i = 0; i < sizeof options / sizeof *options; i++) {
    const option_t *o = &options[i];
    if (*o->def) o->apply(o->def);
    const char *v = getenv(o->env);
    if (!v) continue;
    if (o->apply(v)) {
      exm_line_t l = { .n = 0 };
      exm_line_str(&l, "exm: ignoring ");
      exm_line_str(&l, o->env);
      exm_line_str(&l, "=\"");
      exm_line_value(&l, v);
      exm_line_str(&l, "\": expected ");
      exm_line_str(&l, o->expect);
      exm_line_str(&l, "; using the default");
      if (*o->def) {
        exm_line_str(&l, " (");
        exm_line_str(&l, o->def);
        exm_line_str(&l, ")");
      }
      if (exm_warn_first(o->env)) exm_line_emit(&l);
      if (*o->def) o->apply(o->def);
    }
  }
  /* Trailing slashes make ugly paths in messages. */
  size_t n = strlen(exm_cfg.dir);
  while (n > 1 && exm_cfg.dir[n - 1] == '/') exm_cfg.dir[--n] = 0;
}

/* ---- line builder ----------------------------------------------------------- */

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
