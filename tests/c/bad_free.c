/*
 * bad_free.c: the always-on check in free/realloc. argv[1] picks the misuse:
 * "double" frees an arena block twice, "interior" frees a pointer into the
 * middle of one, "realloc-interior" reallocs one. Each must abort (SIGABRT)
 * with one line on stderr, before corrupting anything; reaching the end of
 * main is a failure. Needs the library.
 */
#include "common.h"

int main(int argc, char **argv) {
  api_init();
  CHECK(X.loaded, "bad_free needs libexm");
  CHECK(argc > 1, "usage: bad_free double|interior|realloc-interior");
  size_t t = api_threshold();
  size_t n = t > 0 ? t + 4096 : 8192;
  unsigned char *p = malloc(n), *keep = malloc(n);
  CHECK(p && api_fb(p) && keep, "malloc(%zu) not file-backed", n);
  uintptr_t addr = (uintptr_t)p;
  fflush(stdout);
  if (strcmp(argv[1], "double") == 0) {
    free(p);
    free((void *)addr);
  } else if (strcmp(argv[1], "interior") == 0) {
    free(p + 4096);
  } else {
    void *q = realloc(p + 4096, 2 * n);
    (void)q;
  }
  printf("misuse was not detected\n");
  return 1;
}
