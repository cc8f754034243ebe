/*
 * advisor_exit.c: main ends with pthread_exit while exm's advisor thread
 * runs (EXM_ADVICE=auto and a block of 32 MiB start it). The advisor then
 * ends the process, as the last thread would have (glibc calls exit(0)
 * there), so the program's atexit handler runs in the advisor's thread: it
 * must get a normal stack (it touches 1 MiB of it) and the program's signal
 * mask (SIGTERM not blocked), not the advisor's.
 */
#include "common.h"

#include <pthread.h>
#include <signal.h>

static void at_exit(void) {
  volatile char big[1 << 20];
  memset((char *)big, 1, sizeof big);
  sigset_t now;
  pthread_sigmask(SIG_BLOCK, NULL, &now);
  printf("atexit: stack ok, sigterm_blocked=%d\n", sigismember(&now, SIGTERM));
  printf("advisor_exit ok\n");
}

int main(void) {
  api_init();
  char *p = malloc(32 * MiB);
  CHECK(p, "malloc");
  memset(p, 7, 32 * MiB);
  printf("file_backed=%d\n", api_fb(p));
  atexit(at_exit);
  pthread_exit(NULL);
}
