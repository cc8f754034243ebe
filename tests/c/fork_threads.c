/*
 * fork_threads.c (issue 4: fork safety): 3 threads allocate and free
 * (small and file-backed sizes) without pause while the main thread forks
 * argv[1] times (default 100). Each child allocates, verifies and frees in both
 * allocators, runs exm_check and exits; a child that deadlocks on a lock held
 * at fork time is killed by its alarm and fails the test.
 */
#include "common.h"

#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

static volatile int stop;
static size_t big;

static void *churn(void *arg) {
  uint64_t r = (uint64_t)(uintptr_t)arg * 7919 + 1;
  unsigned char *keep[16] = {0};
  size_t keepn[16] = {0};
  while (!stop) {
    r = mix64(r);
    int i = (int)(r % 16);
    if (keep[i]) {
      CHECK_PATTERN(keep[i], keepn[i] < 4096 ? keepn[i] : 4096, keepn[i], "thread block");
      free(keep[i]);
      keep[i] = NULL;
    } else {
      size_t n = (r >> 8) % 4 == 0 ? big + (r >> 16) % MiB : 1 + (r >> 16) % 8192;
      keep[i] = (r >> 12) % 2 ? malloc(n) : calloc(1, n);
      CHECK(keep[i], "thread malloc(%zu)", n);
      keepn[i] = n;
      fill_pattern(keep[i], n < 4096 ? n : 4096, n);
    }
  }
  for (int i = 0; i < 16; i++) free(keep[i]);
  return NULL;
}

static void child_work(void) {
  alarm(20); /* a deadlock in the child ends here, as a failure */
  for (int k = 0; k < 4; k++) {
    size_t n = k % 2 ? big + (size_t)k * 4096 : 100 + (size_t)k;
    unsigned char *p = malloc(n);
    if (!p) _exit(2);
    fill_pattern(p, n < MiB ? n : MiB, (uint64_t)k);
    if (find_pattern_mismatch(p, n < MiB ? n : MiB, (uint64_t)k) >= 0) _exit(3);
    free(p);
  }
  if (X.check && X.check() != 0) _exit(4);
  _exit(0);
}

int main(int argc, char **argv) {
  api_init();
  int rounds = argc > 1 ? atoi(argv[1]) : 100;
  size_t t = api_threshold();
  big = (t != SIZE_MAX && t > 0) ? t : 4 * MiB;
  pthread_t th[3];
  for (int i = 0; i < 3; i++)
    CHECK(pthread_create(&th[i], NULL, churn, (void *)(uintptr_t)(i + 1)) == 0, "pthread_create");
  int failed = 0;
  for (int r = 0; r < rounds; r++) {
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) child_work();
    int status;
    CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
      fprintf(stderr, "round %d: child %s %d\n", r, WIFSIGNALED(status) ? "killed by signal" : "exited",
              WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
      failed++;
    }
  }
  stop = 1;
  for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
  CHECK(failed == 0, "%d of %d forked children failed (SIGALRM = deadlock)", failed, rounds);
  API_CHECK("parent after forks");
  printf("rounds=%d\nfork_threads ok\n", rounds);
  return 0;
}
