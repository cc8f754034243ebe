/*
 * rexm.c: the exm R package's C side.
 *
 * The package never links libexm. It calls the exm_* functions of the copy
 * already in the process, the one `exm R` / `exm Rscript` preloaded, found at
 * load time with dlsym(RTLD_DEFAULT, ...). That way the package builds and
 * loads anywhere (it needs only exm.h, vendored next to this file), and a
 * session that was not started under exm gets a clear error instead of a
 * second, unused allocator.
 *
 * Sizes cross into R as doubles (exact up to 2^53 bytes); SIZE_MAX, the
 * threshold that sends nothing to the arena, is Inf on the R side.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define R_NO_REMAP
#include <R.h>
#include <Rinternals.h>
#include <R_ext/Rallocators.h>
#include <R_ext/Rdynload.h>

#include "exm.h"

/* ---- Finding the preloaded library ------------------------------------------ */

static struct {
#define API_FIELD(ret, name, params) ret(*name) params;
  EXM_FUNCTIONS(API_FIELD)
#undef API_FIELD
} api;

/* Why the API cannot be used: empty when it can. */
static char unavailable[512];

#define NOT_UNDER_EXM \
  "this R session was not started under exm: run it as `exm R` or `exm Rscript ...`"

static void resolve(void) {
  void *version = dlsym(RTLD_DEFAULT, "exm_version");
  if (!version) {
    snprintf(unavailable, sizeof unavailable, "%s", NOT_UNDER_EXM);
    return;
  }
  const char *v = ((const char *(*)(void))version)();
  int major = -1, minor = -1;
  if (!v || sscanf(v, "%d.%d", &major, &minor) != 2 || major != EXM_VERSION_MAJOR ||
      minor != EXM_VERSION_MINOR) {
    snprintf(unavailable, sizeof unavailable,
             "the exm library in this session (version %s) does not match the one the exm R "
             "package was built for (%d.%d.%d): reinstall the package from the same exm "
             "(R CMD INSTALL rpkg)",
             v ? v : "unknown", EXM_VERSION_MAJOR, EXM_VERSION_MINOR, EXM_VERSION_PATCH);
    return;
  }
  struct {
    const char *name;
    void **slot;
  } syms[] = {
#define API_SYM(ret, name, params) { "exm_" #name, (void **)&api.name },
    EXM_FUNCTIONS(API_SYM)
#undef API_SYM
  };
  for (size_t i = 0; i < sizeof syms / sizeof *syms; i++) {
    void *p = dlsym(RTLD_DEFAULT, syms[i].name);
    if (!p) {
      memset(&api, 0, sizeof api);
      snprintf(unavailable, sizeof unavailable,
               "the exm library in this session (version %s) has no %s: reinstall exm and "
               "this package from the same release",
               v, syms[i].name);
      return;
    }
    *syms[i].slot = p;
  }
}

/* Stops with the reason unless the API is usable. */
static void need_api(void) {
  if (unavailable[0]) Rf_error("%s", unavailable);
}

/* Stops with `what` and the errno text unless err is 0. */
static void check_err(int err, const char *what) {
  if (err) Rf_error("%s: %s", what, strerror(err));
}

/* ---- Conversions -------------------------------------------------------------- */

static SEXP size_to_r(size_t n) {
  return Rf_ScalarReal(n == SIZE_MAX ? R_PosInf : (double)n);
}

/* A byte count from R: a finite whole number >= 0, or Inf (SIZE_MAX) when
 * allow_inf. */
static size_t size_from_r(SEXP x, const char *what, int allow_inf) {
  if (!Rf_isNumeric(x) || Rf_isFactor(x) || XLENGTH(x) != 1)
    Rf_error("%s must be one number of bytes", what);
  double d = Rf_asReal(x);
  if (ISNAN(d)) Rf_error("%s must not be NA", what);
  if (d == R_PosInf && allow_inf) return SIZE_MAX;
  if (d < 0 || !R_FINITE(d) || d != floor(d) || d >= 18446744073709551616.0)
    Rf_error("%s must be a whole number of bytes >= 0%s (got %g)", what,
             allow_inf ? " or Inf" : "", d);
  return (size_t)d;
}

static int int_from_r(SEXP x, const char *what) {
  int v = Rf_asInteger(x);
  if (v == NA_INTEGER) Rf_error("%s must be a number", what);
  return v;
}

/* ---- Entry points: availability, version, settings --------------------------------- */

static SEXP C_available(void) { return Rf_ScalarLogical(unavailable[0] == 0); }

static SEXP C_unavailable_reason(void) {
  return unavailable[0] ? Rf_mkString(unavailable) : R_NilValue;
}

static SEXP C_version(void) {
  need_api();
  return Rf_mkString(api.version());
}

static SEXP C_header_version(void) {
  char buf[64];
  snprintf(buf, sizeof buf, "%d.%d.%d", EXM_VERSION_MAJOR, EXM_VERSION_MINOR,
           EXM_VERSION_PATCH);
  return Rf_mkString(buf);
}

/* "auto" under --threshold auto (EXM_THRESHOLD_AUTO; Inf is SIZE_MAX). */
static SEXP C_get_threshold(void) {
  need_api();
  size_t t = api.get_threshold();
  return t == EXM_THRESHOLD_AUTO ? Rf_mkString("auto") : size_to_r(t);
}

static SEXP C_set_threshold(SEXP bytes) {
  need_api();
  /* exm_threshold passes "auto" as is; no double converts to 2^64-2 */
  size_t n = Rf_isString(bytes) ? EXM_THRESHOLD_AUTO : size_from_r(bytes, "the threshold", 1);
  check_err(api.set_threshold(n), "cannot set the threshold");
  return R_NilValue;
}

static SEXP C_get_dir(void) {
  need_api();
  size_t len = 4096;
  for (int i = 0; i < 8; i++, len *= 2) {
    char *buf = R_alloc(len, 1);
    int err = api.get_dir(buf, len);
    if (err == 0) return Rf_mkString(buf);
    if (err != ERANGE) check_err(err, "cannot get the data directory");
  }
  Rf_error("cannot get the data directory: path too long");
  return R_NilValue;
}

static SEXP C_set_dir(SEXP path) {
  need_api();
  if (!Rf_isString(path) || XLENGTH(path) != 1 || STRING_ELT(path, 0) == NA_STRING)
    Rf_error("path must be one character string");
  const char *p = Rf_translateCharUTF8(STRING_ELT(path, 0));
  int err = api.set_dir(p);
  if (err == EINVAL) Rf_error("cannot use '%s' as exm's data directory: not an absolute path to a directory, or too long", p);
  if (err) Rf_error("cannot use '%s' as exm's data directory: %s", p, strerror(err));
  return R_NilValue;
}

static SEXP C_get_child_mode(void) {
  need_api();
  return Rf_ScalarInteger((int)api.get_child_mode());
}

static SEXP C_set_child_mode(SEXP mode) {
  need_api();
  check_err(api.set_child_mode((exm_child_mode_t)int_from_r(mode, "mode")),
            "cannot set the child mode");
  return R_NilValue;
}

static SEXP C_get_advice(void) {
  need_api();
  return Rf_ScalarInteger((int)api.get_advice());
}

static SEXP C_set_advice(SEXP advice) {
  need_api();
  check_err(api.set_advice((exm_advice_t)int_from_r(advice, "advice")),
            "cannot set the default advice");
  return R_NilValue;
}

static SEXP C_get_max_disk(void) {
  need_api();
  return size_to_r(api.get_max_disk());
}

static SEXP C_set_max_disk(SEXP bytes) {
  need_api();
  check_err(api.set_max_disk(size_from_r(bytes, "the disk cap", 0)),
            "cannot set the disk cap");
  return R_NilValue;
}

/* ---- Objects ----------------------------------------------------------------------- */

/* Bytes per element of a vector type, 0 for what is not a vector. */
static size_t elt_size(SEXP x) {
  switch (TYPEOF(x)) {
  case LGLSXP:
  case INTSXP:
    return sizeof(int);
  case REALSXP:
    return sizeof(double);
  case CPLXSXP:
    return sizeof(Rcomplex);
  case RAWSXP:
    return 1;
  case STRSXP:
  case VECSXP:
  case EXPRSXP:
    return sizeof(SEXP);
  default:
    return 0;
  }
}

/* The data pointer of vector x, or NULL for an ALTREP object whose data
 * are not materialized (asking for them would allocate them all). */
static const void *data_of(SEXP x) {
  if (!elt_size(x))
    Rf_error("x must be a vector (atomic or list), not of type '%s'", Rf_type2char(TYPEOF(x)));
  return DATAPTR_OR_NULL(x);
}

static SEXP C_is_file_backed(SEXP x) {
  need_api();
  const void *p = data_of(x);
  return Rf_ScalarLogical(p && api.is_file_backed(p));
}

static SEXP C_lookup(SEXP x) {
  need_api();
  const void *p = data_of(x);
  double data_size = (double)XLENGTH(x) * (double)elt_size(x);
  exm_block_info_t info;
  int err = p ? api.lookup(p, &info) : ENOENT;
  if (err && err != ENOENT) check_err(err, "exm_lookup");
  const char *names[] = { "file_backed", "path", "offset", "size",
                          "block_offset", "block_size", "fd", "" };
  SEXP out = PROTECT(Rf_mkNamed(VECSXP, names));
  if (err == 0) {
    size_t delta = (size_t)((const char *)p - (const char *)info.base);
    info.path[sizeof info.path - 1] = 0;
    SET_VECTOR_ELT(out, 0, Rf_ScalarLogical(1));
    /* A forked child's view of its parent's blocks (cow, shared) has no
     * descriptor of its own: fd -1 and an empty path. */
    int named = info.fd >= 0 && info.path[0];
    SET_VECTOR_ELT(out, 1, named ? Rf_mkString(info.path) : Rf_ScalarString(NA_STRING));
    SET_VECTOR_ELT(out, 2, Rf_ScalarReal((double)(info.offset + delta)));
    SET_VECTOR_ELT(out, 3, Rf_ScalarReal(data_size));
    SET_VECTOR_ELT(out, 4, Rf_ScalarReal((double)info.offset));
    SET_VECTOR_ELT(out, 5, Rf_ScalarReal((double)info.size));
    SET_VECTOR_ELT(out, 6, Rf_ScalarInteger(named ? info.fd : NA_INTEGER));
  } else {
    SET_VECTOR_ELT(out, 0, Rf_ScalarLogical(0));
    SET_VECTOR_ELT(out, 1, Rf_ScalarString(NA_STRING));
    SET_VECTOR_ELT(out, 2, Rf_ScalarReal(NA_REAL));
    SET_VECTOR_ELT(out, 3, Rf_ScalarReal(data_size));
    SET_VECTOR_ELT(out, 4, Rf_ScalarReal(NA_REAL));
    SET_VECTOR_ELT(out, 5, Rf_ScalarReal(NA_REAL));
    SET_VECTOR_ELT(out, 6, Rf_ScalarInteger(NA_INTEGER));
  }
  UNPROTECT(1);
  return out;
}

/* TRUE when advised, FALSE when x's data are not in the arena. */
static SEXP C_advise(SEXP x, SEXP advice) {
  need_api();
  const void *p = data_of(x);
  int a = int_from_r(advice, "advice");
  if (!p) return Rf_ScalarLogical(0);
  int err = api.advise((void *)p, (exm_advice_t)a);
  if (err == ENOENT) return Rf_ScalarLogical(0);
  check_err(err, "exm_advise");
  return Rf_ScalarLogical(1);
}

static SEXP C_stats(void) {
  need_api();
  exm_stats_t s;
  check_err(api.get_stats(&s), "exm_get_stats");
#define STAT_NAME(field, json) #field,
  const char *names[] = { EXM_STATS_FIELDS(STAT_NAME) "" };
#undef STAT_NAME
#define STAT_VALUE(field, json) s.field,
  const uint64_t v[] = { EXM_STATS_FIELDS(STAT_VALUE) };
#undef STAT_VALUE
  SEXP out = PROTECT(Rf_mkNamed(VECSXP, names));
  for (size_t i = 0; i < sizeof v / sizeof *v; i++)
    SET_VECTOR_ELT(out, (R_xlen_t)i, Rf_ScalarReal((double)v[i]));
  UNPROTECT(1);
  return out;
}

static SEXP C_check(void) {
  need_api();
  return Rf_ScalarLogical(api.check() == 0);
}

/* ---- File-backed vectors whatever the threshold -------------------------------------- */

static void *r_alloc(R_allocator_t *self, size_t n) {
  (void)self;
  return api.alloc(n);
}

static void r_free(R_allocator_t *self, void *p) {
  (void)self;
  api.free(p);
}

/* R copies this into each block it allocates with it. */
static R_allocator_t allocator = { r_alloc, r_free, NULL, NULL };

static SEXP C_vector(SEXP type, SEXP length) {
  need_api();
  if (!Rf_isString(type) || XLENGTH(type) != 1 || STRING_ELT(type, 0) == NA_STRING)
    Rf_error("mode must be one character string");
  SEXPTYPE t = Rf_str2type(CHAR(STRING_ELT(type, 0)));
  if (t != LGLSXP && t != INTSXP && t != REALSXP && t != CPLXSXP && t != RAWSXP)
    Rf_error("exm_vector makes logical, integer, double, complex or raw vectors");
  double d = Rf_asReal(length);
  if (ISNAN(d) || d < 0 || d != floor(d) || d > (double)R_XLEN_T_MAX)
    Rf_error("length must be a whole number >= 0");
  return Rf_allocVector3(t, (R_xlen_t)d, &allocator);
}

/* ---- Registration --------------------------------------------------------------------- */

/* Through void (*)(void), which gcc accepts as a generic function pointer. */
#define ENTRY(name, n) { #name, (DL_FUNC)(void (*)(void))&name, n }

static const R_CallMethodDef calls[] = {
  ENTRY(C_available, 0),     ENTRY(C_unavailable_reason, 0), ENTRY(C_version, 0),
  ENTRY(C_header_version, 0), ENTRY(C_get_threshold, 0),     ENTRY(C_set_threshold, 1),
  ENTRY(C_get_dir, 0),       ENTRY(C_set_dir, 1),            ENTRY(C_get_child_mode, 0),
  ENTRY(C_set_child_mode, 1), ENTRY(C_get_advice, 0),        ENTRY(C_set_advice, 1),
  ENTRY(C_get_max_disk, 0),  ENTRY(C_set_max_disk, 1),       ENTRY(C_is_file_backed, 1),
  ENTRY(C_lookup, 1),        ENTRY(C_advise, 2),             ENTRY(C_stats, 0),
  ENTRY(C_check, 0),         ENTRY(C_vector, 2),             { NULL, NULL, 0 },
};

void R_init_exm(DllInfo *dll) {
  resolve();
  R_registerRoutines(dll, NULL, calls, NULL, NULL);
  R_useDynamicSymbols(dll, FALSE);
  R_forceSymbols(dll, TRUE);
}
