/*
 * stats_exit.c (issue 18: statistics that always arrive): allocates one
 * block of argv[2] bytes, then leaves the way argv[1] says:
 *   _exit    _exit(5) (as dash and Python's os._exit do)
 *   vfork    a vfork child that _exits at once, then exit(0) in the parent
 *            (the child shares the parent's memory: it must not report)
 *   fork     a forked child that allocates its own block and _exits, then
 *            exit(0) in the parent after waiting
 * The driver sets EXM_STATS or runs it under exm --stats and counts reports.
 */
#include "common.h"

#include <sys/wait.h>

int main(int argc, char **argv) {
  api_init();
  const char *how = argc > 1 ? argv[1] : "_exit";
  size_t sz = argc > 2 ? parse_size(argv[2]) : 80 * MiB;
  char *b = malloc(sz);
  CHECK(b, "malloc(%zu)", sz);
  memset(b, 1, sz);
  printf("allocated %zu\n", sz);
  fflush(stdout);
  if (!strcmp(how, "_exit")) _exit(5);
  if (!strcmp(how, "vfork")) {
    pid_t pid = vfork();
    if (pid == 0) _exit(0);
    CHECK(pid > 0, "vfork");
    waitpid(pid, NULL, 0);
  } else if (!strcmp(how, "fork")) {
    pid_t pid = fork();
    if (pid == 0) {
      char *c = malloc(sz * 2);
      if (c) memset(c, 2, sz * 2);
      _exit(0);
    }
    CHECK(pid > 0, "fork");
    waitpid(pid, NULL, 0);
  }
  free(b);
  return 0;
}
