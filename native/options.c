/*
 * options.c: the library's settings, read once from EXM_* variables.
 *
 * The table is native/options.gen.h, generated from native/options.json,
 * the same table the CLI, --help and the README follow. The grammar of each
 * type (size, choice, switch, dir, stats) is written out in src/settings.ts;
 * this is its C half, and tests/settings.test.ts runs one set of vectors
 * (tests/fixtures/settings-vectors.json) against both. A bad value gives one
 * line on stderr in the CLI's words, `exm: EXM_X: 'value' <problem>`, and
 * then the default is used: the program always runs. An empty variable is
 * the same as an unset one.
 *
 * Runs inside the first malloc call, so: getenv only, no allocation, no stdio.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "msg.h"
#include "options.h"
#include "trace.h"
#include "options.gen.h"

exm_config_t exm_cfg;

#define MAX_FRACTION_DIGITS 36    /* 10^36 * 2 fits in 128 bits: exact floors below */

static int blank(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }
static char lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c; }

/* [*s, *e) with blanks trimmed off both ends. */
static void trim(const char **s, const char **e) {
  while (*s < *e && blank(**s)) (*s)++;
  while (*e > *s && blank((*e)[-1])) (*e)--;
}

/* 0; EINVAL not a size; EDOM a fraction of a byte; ERANGE over 2^63-1. */
static int parse_size(const char *text, size_t *out) {
  const char *p = text, *e = text + strlen(text);
  trim(&p, &e);
  const char *digits = p;
  unsigned __int128 whole = 0;
  int big = 0;
  for (; p < e && *p >= '0' && *p <= '9'; p++) {
    whole = whole * 10 + (unsigned)(*p - '0');
    if (whole >> 64) big = 1, whole = (unsigned __int128)1 << 64;
  }
  int have_whole = p > digits;
  unsigned __int128 frac = 0, scale = 1;
  int have_frac = 0;
  if (p < e && *p == '.') {
    p++;
    const char *f = p;
    for (; p < e && *p >= '0' && *p <= '9'; p++)
      if (p - f < MAX_FRACTION_DIGITS) frac = frac * 10 + (unsigned)(*p - '0'), scale *= 10;
    if (p == f) return EINVAL;
    have_frac = 1;
  }
  if (!have_whole && !have_frac) return EINVAL;
  while (p < e && blank(*p)) p++;
  unsigned shift = 0;
  int unit = 0;
  if (p < e) {
    switch (lower(*p)) {
      case 'k': shift = 10; break;
      case 'm': shift = 20; break;
      case 'g': shift = 30; break;
      case 't': shift = 40; break;
      case 'p': shift = 50; break;
      case 'e': shift = 60; break;
      case 'b': break;
      default: return EINVAL;
    }
    unit = lower(*p) != 'b';
    p++;
    if (unit && p < e && lower(*p) == 'i') {
      p++;
      if (p == e || lower(*p) != 'b') return EINVAL;
    }
    if (unit && p < e && lower(*p) == 'b') p++;
    if (p != e) return EINVAL;
  }
  if (have_frac && !unit) return EDOM;
  if (big || whole > (((unsigned __int128)1 << 63) >> shift)) return ERANGE;
  /* floor(frac / scale * 2^shift), bit by bit: exact, and no overflow */
  unsigned __int128 part = 0;
  for (unsigned i = 0; i < shift; i++) {
    frac *= 2;
    part = part * 2 + (frac >= scale);
    if (frac >= scale) frac -= scale;
  }
  unsigned __int128 v = (whole << shift) + part;
  if (v > (((unsigned __int128)1 << 63) - 1)) return ERANGE;
  *out = (size_t)v;
  return 0;
}

EXM_API int exm_parse_size(const char *text, size_t *bytes) {
  if (!text || !bytes) return EINVAL;
  size_t v;
  int err = parse_size(text, &v);
  if (err) return err == EDOM ? EINVAL : err;
  *bytes = v;
  return 0;
}

/* The index of `text` (blanks trimmed, any case) among `names`, or -1. */
static int choice(const char *text, const char *const *names, int n) {
  const char *s = text, *e = text + strlen(text);
  trim(&s, &e);
  for (int i = 0; i < n; i++) {
    size_t len = strlen(names[i]);
    if ((size_t)(e - s) != len) continue;
    size_t k = 0;
    while (k < len && lower(s[k]) == names[i][k]) k++;
    if (k == len) return i;
  }
  return -1;
}

static const char *const switch_words[] = { "0", "off", "no", "false", "1", "on", "yes", "true" };
/* 0 or 1 for a switch word, -1 for anything else. */
static int switch_value(const char *text) {
  int i = choice(text, switch_words, 8);
  return i < 0 ? -1 : i >= 4;
}

/* `path` made absolute against the working directory and normalised as
 * src/settings.ts does it ("." and ".." segments, repeated and trailing
 * slashes), into dst[EXM_PATH_MAX]. */
static int set_path(char *dst, const char *path) {
  char buf[EXM_PATH_MAX];
  size_t n = 0;
  if (!*path) return EINVAL;
  if (*path != '/') {
    if (!getcwd(buf, sizeof buf)) return ENAMETOOLONG;
    n = strlen(buf);
    if (n == 1) n = 0;   /* "/" */
  }
  for (const char *p = path; *p;) {
    while (*p == '/') p++;
    const char *q = p;
    while (*q && *q != '/') q++;
    size_t len = (size_t)(q - p);
    if (len == 1 && p[0] == '.') {
    } else if (len == 2 && p[0] == '.' && p[1] == '.') {
      while (n > 0 && buf[n - 1] != '/') n--;
      if (n > 0) n--;
    } else if (len) {
      if (n + 1 + len >= sizeof buf) return ENAMETOOLONG;
      buf[n++] = '/';
      memcpy(buf + n, p, len);
      n += len;
    }
    p = q;
  }
  if (n == 0) buf[n++] = '/';
  buf[n] = 0;
  memcpy(dst, buf, n + 1);
  return 0;
}

/* A size, or `auto`: the default size, with RAM first while the budget lasts. */
static int set_EXM_THRESHOLD(const char *v) {
  static const char *const auto_word[] = { "auto" };
  if (choice(v, auto_word, 1) == 0) {
    exm_cfg.threshold_auto = 1;
    return parse_size(EXM_DEFAULT_EXM_THRESHOLD, &exm_cfg.threshold);
  }
  size_t t;
  int err = parse_size(v, &t);
  if (!err) exm_cfg.threshold = t, exm_cfg.threshold_auto = 0;
  return err;
}
static int set_EXM_MAX_DISK(const char *v) { return parse_size(v, &exm_cfg.max_disk); }
static const char *const child_names[] = EXM_CHOICES_EXM_CHILD;
static const char *const advice_names[] = EXM_CHOICES_EXM_ADVICE;
static int set_EXM_CHILD(const char *v) {
  int i = choice(v, child_names, 3);
  return i < 0 ? EINVAL : (exm_cfg.child = i, 0);
}
static int set_EXM_ADVICE(const char *v) {
  int i = choice(v, advice_names, 4);
  return i < 0 ? EINVAL : (exm_cfg.advice = i, 0);
}
static int set_EXM_DIR(const char *v) { return *v ? set_path(exm_cfg.dir, v) : 0; /* "": computed */ }
static int set_EXM_STATS(const char *v) {
  int on = switch_value(v);
  if (on >= 0) {
    exm_cfg.stats[0] = on ? '1' : 0;
    exm_cfg.stats[1] = 0;
    return 0;
  }
  const char *s = v, *e = v + strlen(v);
  trim(&s, &e);
  while (s < e && *s >= '0' && *s <= '9') s++;
  if (s == e) return EINVAL;   /* digits: a typo more likely than a file name */
  return set_path(exm_cfg.stats, v);
}
static int set_EXM_VERBOSE(const char *v) {
  int on = switch_value(v);
  return on < 0 ? EINVAL : (exm_cfg.verbose = on, 0);
}

typedef struct option {
  const char *env;     /* variable name */
  const char *def;     /* default, as a user would write it ("" = computed) */
  int (*apply)(const char *value);   /* 0, or an errno for "bad value" */
  const char *expect;  /* what a good value looks like, for the warning */
} option_t;

static const option_t options[] = {
#define OPTION_ROW(env, type, def, expect) { #env, def, set_##env, expect },
  EXM_OPTION_LIST(OPTION_ROW)
#undef OPTION_ROW
};

/* The CLI's words for what is wrong with a value (src/settings.ts). */
static void say_problem(exm_line_t *l, const option_t *o, int err) {
  if (err == EDOM) exm_line_str(l, "is not a whole number of bytes (a fraction needs a unit: 1.5K)");
  else if (err == ERANGE) exm_line_str(l, "is too large (at most 2^63-1 bytes)");
  else if (err == ENAMETOOLONG) exm_line_str(l, "is too long (at most 4095 bytes)");
  else exm_line_str(l, "is not "), exm_line_str(l, o->expect);
}

void exm_cfg_set_threshold(size_t bytes, int automatic) {
  __atomic_store_n(&exm_cfg.threshold, bytes, __ATOMIC_RELAXED);
  __atomic_store_n(&exm_cfg.threshold_auto, automatic, __ATOMIC_RELAXED);
}
void exm_cfg_set_child(int mode) { __atomic_store_n(&exm_cfg.child, mode, __ATOMIC_RELAXED); }
void exm_cfg_set_advice(int advice) { __atomic_store_n(&exm_cfg.advice, advice, __ATOMIC_RELAXED); }
void exm_cfg_set_max_disk(size_t bytes) { __atomic_store_n(&exm_cfg.max_disk, bytes, __ATOMIC_RELAXED); }
void exm_cfg_set_dir(const char *dir) { memcpy(exm_cfg.dir, dir, strlen(dir) + 1); }

void exm_options_load(void) {
  const char *tmp = getenv("TMPDIR");
  if (!tmp || tmp[0] != '/' || set_path(exm_cfg.dir, tmp)) set_path(exm_cfg.dir, "/tmp");
  for (size_t i = 0; i < sizeof options / sizeof *options; i++) {
    const option_t *o = &options[i];
    if (*o->def) o->apply(o->def);
    const char *v = getenv(o->env);
    if (!v || !*v) continue;
    int err = o->apply(v);
    if (err) {
      exm_line_t l = { .n = 0 };
      exm_line_str(&l, "exm: ");
      exm_line_str(&l, o->env);
      exm_line_str(&l, ": '");
      exm_line_value(&l, v);
      exm_line_str(&l, "' ");
      say_problem(&l, o, err);
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
}
