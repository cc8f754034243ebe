/*
 * realloc_freed.c: realloc of a small block that was already freed, at
 * threshold 0. The freed chunk sits in the thread's cache; realloc of small
 * chunks goes through that cache without the lock, and must still refuse
 * it: abort with one line, before the chunk is handed out twice.
 * argv[1]: "grow" (to another size class: the cache's move), "fits" (to a
 * size the chunk still holds: realloc would return the pointer itself),
 * "shrink". Reaching the end of main is a failure.
 */
#include "common.h"

int main(int argc, char **argv) {
  api_init();
  CHECK(X.loaded, "realloc_freed needs libexm");
  CHECK(argc > 1, "usage: realloc_freed grow|fits|shrink");
  /* stock the cache with chunks of the sizes asked for below */
  void *stock[4];
  for (int i = 0; i < 4; i++) CHECK((stock[i] = malloc(i & 1 ? 200 : 40)) && api_fb(stock[i]), "malloc not file-backed (run at threshold 0)");
  for (int i = 0; i < 4; i++) free(stock[i]);
  unsigned char *p = malloc(100);
  CHECK(p && api_fb(p), "malloc(100) not file-backed");
  memset(p, 0x5a, 100);
  uintptr_t addr = (uintptr_t)p;     /* the compiler would see the misuse */
  free(p);
  fflush(stdout);
  size_t n = !strcmp(argv[1], "grow") ? 200 : !strcmp(argv[1], "fits") ? 104 : 40;
  void *q = realloc((void *)opaque(addr), n);
  printf("misuse was not detected: realloc(%#zx, %zu) = %p\n", (size_t)addr, n, q);
  return 1;
}
