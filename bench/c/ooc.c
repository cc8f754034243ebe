/*
 * ooc.c: the out-of-core workload (see ooc_common.h) on one block from
 * malloc. Run with libexm preloaded and a threshold below --size, the block
 * comes from exm's file-backed arena; the advice policies then act on that
 * block (exm_advise when the library has it, else madvise on the block) and
 * posix_fadvise on exm's backing file (exm_lookup().fd).
 *
 * Without exm the block is anonymous memory: allowed only with --anon
 * (policies that need a file then do nothing to it).
 *
 *   LD_PRELOAD=build/libexm.so EXM_THRESHOLD=1G ./ooc --size 4G --policy none
 *   ./ooc --anon --size 4G
 */
#define _GNU_SOURCE   /* before any system header (sync_file_range in ooc_common.h) */
#include <dlfcn.h>

#include "ooc_common.h"
#include "exm.h"

typedef int (*advise_fn)(void *, exm_advice_t);
typedef int (*lookup_fn)(const void *, exm_block_info_t *);
static advise_fn p_advise;

static int ooc_advise(ooc_region_t *r, int madv) {
  if (p_advise) {
    exm_advice_t a = madv == MADV_SEQUENTIAL ? EXM_ADVICE_SEQUENTIAL
                   : madv == MADV_RANDOM     ? EXM_ADVICE_RANDOM
                                             : EXM_ADVICE_NORMAL;
    int err = p_advise(r->base, a);
    if (err) fprintf(stderr, "exm_advise: %s\n", strerror(err));
    return err;
  }
  return madvise(r->base, r->len, madv) ? errno : 0;
}

int main(int argc, char **argv) {
  ooc_parse(argc, argv);
  p_advise = (advise_fn)dlsym(RTLD_DEFAULT, "exm_advise");
  lookup_fn p_lookup = (lookup_fn)dlsym(RTLD_DEFAULT, "exm_lookup");
  char *p = malloc(opt.size);
  if (!p) {
    fprintf(stderr, "malloc(%zu) failed\n", opt.size);
    return 1;
  }
  ooc_region_t r = { p, opt.size, -1, 0 };
  exm_block_info_t info;
  if (p_lookup && p_lookup(p, &info) == 0) {
    r.fd = info.fd;
    r.off = (off_t)info.offset;
    if ((char *)info.base != p) fprintf(stderr, "note: block base %p != pointer %p\n", info.base, (void *)p);
    printf("backend=exm\n");
  } else if (opt.anon) {
    p_advise = NULL;
    printf("backend=anon\n");
  } else {
    fprintf(stderr, "the block is not file-backed: run with libexm preloaded and "
                    "EXM_THRESHOLD below --size, or pass --anon\n");
    return 1;
  }
  int rc = ooc_run(&r);
  free(p);
  return rc;
}
