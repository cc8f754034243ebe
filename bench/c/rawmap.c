/*
 * rawmap.c: the out-of-core workload (see ooc_common.h) on a plain MAP_SHARED
 * mapping of an unlinked, fallocated file -- no exm: the ceiling for exm's
 * design on this disk.
 *
 *   ./rawmap --dir /tmp --size 4G --policy sequential
 */
#include "ooc_common.h"

static int ooc_advise(ooc_region_t *r, int madv) {
  return madvise(r->base, r->len, madv) ? errno : 0;
}

int main(int argc, char **argv) {
  const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  /* --dir is ours; the rest goes to ooc_parse. */
  char **rest = calloc((size_t)argc + 1, sizeof *rest);
  int n = 0;
  rest[n++] = argv[0];
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
    else rest[n++] = argv[i];
  }
  ooc_parse(n, rest);
  int fd = open(dir, O_TMPFILE | O_RDWR, 0600);
  if (fd < 0) {
    fprintf(stderr, "open(%s, O_TMPFILE): %s\n", dir, strerror(errno));
    return 1;
  }
  int err = posix_fallocate(fd, 0, (off_t)opt.size);
  if (err) {
    fprintf(stderr, "fallocate %zu: %s\n", opt.size, strerror(err));
    return 1;
  }
  char *p = mmap(NULL, opt.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    perror("mmap");
    return 1;
  }
  printf("backend=rawmap\n");
  ooc_region_t r = { p, opt.size, fd, 0 };
  int rc = ooc_run(&r);
  munmap(p, opt.size);
  close(fd);
  return rc;
}
