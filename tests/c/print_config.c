/*
 * print_config.c: prints the settings libexm took from the environment, as
 * key=value lines; with argv[1], also mallocs that many bytes and prints
 * whether the block is file-backed. Used to test EXM_* parsing.
 */
#include "common.h"

int main(int argc, char **argv) {
  api_init();
  CHECK(X.loaded, "print_config needs libexm");
  char dir[4096] = "";
  X.get_dir(dir, sizeof dir);
  if (X.get_threshold() == EXM_THRESHOLD_AUTO) printf("threshold=auto\n");
  else printf("threshold=%zu\n", X.get_threshold());
  printf("dir=%s\nchild=%d\nadvice=%d\nmax_disk=%zu\n", dir,
         (int)X.get_child_mode(), (int)X.get_advice(), X.get_max_disk());
  if (argc > 1) {
    size_t n = parse_size(argv[1]);
    unsigned char *p = malloc(n);
    CHECK(p, "malloc(%zu) failed: errno %d", n, errno);
    memset(p, 3, n);
    printf("file_backed=%d\n", api_fb(p));
    free(p);
  }
  API_CHECK("print_config");
  return 0;
}
