/*
 * spawn.c: start-up time of commands, alternated to share the noise.
 *
 *   ./spawn N cmdA [args...] :: cmdB [args...] [:: ...]
 * Runs each command N times (A, B, A, B, ...), each by fork + execvp +
 * waitpid with stdout/stderr to /dev/null, and prints for command i:
 *   cmd<i>_ms=<t1>,<t2>,... (wall milliseconds of each run)
 *   cmd<i>_fail=<runs that did not exit 0>
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s N cmdA [args...] :: cmdB [args...]\n", argv[0]);
    return 1;
  }
  int n = atoi(argv[1]);
  char **cmds[16];
  int nc = 0;
  cmds[nc++] = &argv[2];
  for (int i = 2; i < argc; i++)
    if (!strcmp(argv[i], "::")) {
      argv[i] = NULL;
      if (nc < 16 && i + 1 < argc) cmds[nc++] = &argv[i + 1];
    }
  double *ms = calloc((size_t)n * nc, sizeof *ms);
  int fails[16] = { 0 };
  int devnull = open("/dev/null", O_WRONLY);
  for (int r = 0; r < n; r++)
    for (int c = 0; c < nc; c++) {
      double t0 = now_ms();
      pid_t pid = fork();
      if (pid == 0) {
        dup2(devnull, 1);
        dup2(devnull, 2);
        execvp(cmds[c][0], cmds[c]);
        _exit(127);
      }
      int st = 0;
      waitpid(pid, &st, 0);
      ms[r * nc + c] = now_ms() - t0;
      if (!WIFEXITED(st) || WEXITSTATUS(st)) fails[c]++;
    }
  for (int c = 0; c < nc; c++) {
    printf("cmd%d_ms=", c);
    for (int r = 0; r < n; r++) printf("%s%.3f", r ? "," : "", ms[r * nc + c]);
    printf("\ncmd%d_fail=%d\n", c, fails[c]);
  }
  return 0;
}
