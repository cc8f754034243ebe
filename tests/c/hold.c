/*
 * hold.c: allocates N bytes (argv[1], default 1G) in the arena, writes every
 * page, prints "ready" and sleeps until killed. The driver SIGKILLs it and
 * checks that nothing is left in the data directory and the space came back.
 */
#include "common.h"

int main(int argc, char **argv) {
  api_init();
  size_t n = argc > 1 ? parse_size(argv[1]) : GiB;
  unsigned char *p = malloc(n);
  CHECK(p != NULL, "malloc(%zu) failed, errno %d", n, errno);
  printf("file_backed=%d\n", api_fb(p));
  for (size_t i = 0; i < n; i += 4096) p[i] = (unsigned char)(i >> 12);
  printf("ready\n");
  fflush(stdout);
  for (;;) pause();
}
