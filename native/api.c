/*
 * api.c: the exm_* functions of exm.h, thin wrappers over arena.c and the
 * settings (exm_parse_size is in options.c). Those returning int return 0 or
 * an errno value and never set errno; exm_alloc sets errno to ENOMEM when it
 * returns NULL, as malloc does. The checks below hold exm.h's tables
 * (EXM_FUNCTIONS, EXM_STATS_FIELDS) to its declarations at compile time.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "arena.h"
#include "init.h"
#include "internal.h"
#include "msg.h"
#include "options.h"
#include "options.gen.h"
#include "override.h"

#define CHECK_FUNCTION(ret, name, params)                                         \
  _Static_assert(__builtin_types_compatible_p(__typeof__(&exm_##name), ret(*) params), \
                 "EXM_FUNCTIONS: exm_" #name " is declared otherwise in exm.h");
EXM_FUNCTIONS(CHECK_FUNCTION)

/* The table lists every field of exm_stats_t, in order, and no other. */
enum {
#define STAT_INDEX(field, json) STAT_##field,
  EXM_STATS_FIELDS(STAT_INDEX)
  STAT_COUNT
};
#define CHECK_FIELD(field, json)                                                  \
  _Static_assert(offsetof(exm_stats_t, field) == STAT_##field * sizeof(uint64_t), \
                 "EXM_STATS_FIELDS: " #field " is not where exm.h puts it");
EXM_STATS_FIELDS(CHECK_FIELD)
_Static_assert(sizeof(exm_stats_t) == STAT_COUNT * sizeof(uint64_t), "EXM_STATS_FIELDS: exm_stats_t has other fields");

#define STR_(x) #x
#define STR(x) STR_(x)
EXM_API const char *exm_version(void) { return STR(EXM_VERSION_MAJOR) "." STR(EXM_VERSION_MINOR) "." STR(EXM_VERSION_PATCH); }

EXM_API size_t exm_get_threshold(void) {
  exm_ensure_init();
  if (__atomic_load_n(&exm_cfg.threshold_auto, __ATOMIC_RELAXED)) return EXM_THRESHOLD_AUTO;
  return __atomic_load_n(&exm_cfg.threshold, __ATOMIC_RELAXED);
}

EXM_API int exm_set_threshold(size_t bytes) {
  exm_ensure_init();
  int on = bytes == EXM_THRESHOLD_AUTO;
  size_t def;
  if (on) exm_parse_size(EXM_DEFAULT_EXM_THRESHOLD, &def), bytes = def;
  exm_cfg_set_threshold(bytes, on);
  exm_threshold_changed();
  return 0;
}

EXM_API int exm_get_dir(char *buf, size_t len) {
  exm_ensure_init();
  return buf ? exm_arena_get_dir(buf, len) : ERANGE;
}

EXM_API int exm_set_dir(const char *path) {
  exm_ensure_init();
  return path ? exm_arena_set_dir(path) : EINVAL;
}

EXM_API exm_child_mode_t exm_get_child_mode(void) {
  exm_ensure_init();
  return (exm_child_mode_t)exm_cfg_child();
}

EXM_API int exm_set_child_mode(exm_child_mode_t mode) {
  exm_ensure_init();
  if ((int)mode < EXM_CHILD_COW || mode > EXM_CHILD_DUPLICATE) return EINVAL;
  exm_cfg_set_child((int)mode);   /* fork reads it without the lock */
  return 0;
}

EXM_API exm_advice_t exm_get_advice(void) {
  exm_ensure_init();
  return (exm_advice_t)exm_cfg_advice();
}

EXM_API int exm_set_advice(exm_advice_t advice) {
  exm_ensure_init();
  if ((int)advice < EXM_ADVICE_AUTO || advice > EXM_ADVICE_RANDOM) return EINVAL;
  return exm_arena_set_advice((int)advice);
}

EXM_API size_t exm_get_max_disk(void) {
  exm_ensure_init();
  return exm_cfg_max_disk();
}

EXM_API int exm_set_max_disk(size_t bytes) {
  exm_ensure_init();
  return exm_arena_set_max_disk(bytes);
}

EXM_API void *exm_alloc(size_t bytes) {
  exm_ensure_init();
  int served, err = 0;
  void *p = exm_arena_alloc(bytes, 16, 1, &served, &err);
  if (!p) errno = ENOMEM;
  return p;
}

EXM_API void exm_free(void *ptr) {
  if (!ptr) return;
  exm_arena_t *a = exm_arena_of(ptr);
  if (!a) exm_bad_pointer("exm_free", ptr);
  exm_arena_free(a, ptr, "exm_free");
}

EXM_API int exm_is_file_backed(const void *ptr) {
  exm_block_info_t info;
  return ptr && exm_arena_lookup(ptr, &info) == 0;
}

EXM_API int exm_lookup(const void *ptr, exm_block_info_t *info) {
  if (!info) return EINVAL;
  return exm_arena_lookup(ptr, info);
}

EXM_API int exm_advise(void *ptr, exm_advice_t advice) {
  if ((int)advice < EXM_ADVICE_AUTO || advice > EXM_ADVICE_RANDOM) return EINVAL;
  return exm_arena_advise(ptr, (int)advice);
}

EXM_API int exm_get_stats(exm_stats_t *out) {
  if (!out) return EINVAL;
  exm_arena_stats(out, 0);
  return 0;
}

EXM_API int exm_check(void) { return exm_arena_check(); }
