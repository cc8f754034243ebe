/*
 * measure.c: runs a command and prints what it cost, as key=value pairs on
 * stderr's last line (stdout stays the command's): wall seconds, major and
 * minor faults (wait4), and the bytes the process tree sent to the disk.
 * The disk figure is /proc/PID/io read while the child is a zombie (waitid
 * WNOWAIT): write_bytes is counted when a page is dirtied, and
 * cancelled_write_bytes when a dirty page is dropped (punched, truncated)
 * before writeback, so their difference is what was written back, or would
 * have been. Reaped children of the command are folded into its counters.
 *
 *   measure PROGRAM [ARGS...]
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long field(const char *text, const char *name) {
  const char *p = strstr(text, name);
  return p ? atoll(p + strlen(name)) : -1;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: measure PROGRAM [ARGS...]\n");
    return 2;
  }
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  pid_t pid = fork();
  if (pid < 0) return perror("fork"), 1;
  if (pid == 0) {
    execvp(argv[1], argv + 1);
    perror(argv[1]);
    _exit(127);
  }
  siginfo_t si;
  if (waitid(P_PID, pid, &si, WEXITED | WNOWAIT)) return perror("waitid"), 1;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  char path[64], io[4096] = "";
  snprintf(path, sizeof path, "/proc/%d/io", (int)pid);
  FILE *f = fopen(path, "r");
  if (f) {
    size_t n = fread(io, 1, sizeof io - 1, f);
    io[n] = 0;
    fclose(f);
  }
  int status;
  struct rusage ru;
  if (wait4(pid, &status, 0, &ru) != pid) return perror("wait4"), 1;
  long long wb = field(io, "\nwrite_bytes: "), cancelled = field(io, "cancelled_write_bytes: ");
  long long rb = field(io, "\nread_bytes: ");
  double wall = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  fprintf(stderr, "measure: wall=%.4f majflt=%ld minflt=%ld disk_read=%lld disk_written=%lld dirtied=%lld status=%d\n", wall,
          ru.ru_majflt, ru.ru_minflt, rb, wb >= 0 && cancelled >= 0 ? wb - cancelled : -1, wb,
          WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
