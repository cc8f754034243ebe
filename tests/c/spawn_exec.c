/*
 * spawn_exec.c (issue 4: exec, vfork, posix_spawn): a parent holding a
 * file-backed block starts children that exec this same program as
 * `spawn_exec child` through fork+execv, vfork+execv and posix_spawn. LD_PRELOAD
 * is inherited, so each child image must start a clean arena of its own
 * (a file-backed block, no live blocks inherited) and exit 0; the parent's
 * block must be intact afterwards and its allocator consistent.
 */
#include "common.h"

#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>

extern char **environ;

static int child_main(void) {
  CHECK(X.loaded, "child: libexm not loaded after exec");
  exm_stats_t st;
  CHECK(X.get_stats(&st) == 0, "child: stats");
  CHECK(st.live_blocks == 0 || api_threshold() == 0, "child: %" PRIu64 " live blocks right after exec",
        st.live_blocks);
  size_t n = api_threshold() > 0 ? api_threshold() : 4096;
  unsigned char *p = malloc(n);
  CHECK(p && api_fb(p), "child: malloc(%zu) not file-backed", n);
  fill_pattern(p, n, 5);
  CHECK_PATTERN(p, n, 5, "child block");
  free(p);
  API_CHECK("child after exec");
  printf("child ok\n");
  return 0;
}

static void wait_ok(pid_t pid, const char *how) {
  wait_child(pid, how);
  printf("%s ok\n", how);
}

int main(int argc, char **argv) {
  api_init();
  if (argc > 1 && strcmp(argv[1], "child") == 0) return child_main();
  CHECK(X.loaded, "spawn_exec needs libexm");
  size_t n = api_threshold() * 2 + 4096;
  unsigned char *p = malloc(n);
  CHECK(p && api_fb(p), "malloc(%zu) not file-backed", n);
  fill_pattern(p, n, 9);
  char self[4096];
  ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
  CHECK(len > 0, "readlink /proc/self/exe");
  self[len] = 0;
  char *cargv[] = {self, "child", NULL};

  fflush(NULL);
  pid_t pid = fork();
  CHECK(pid >= 0, "fork");
  if (pid == 0) {
    execv(self, cargv);
    _exit(127);
  }
  wait_ok(pid, "fork+exec");

  pid = vfork();
  CHECK(pid >= 0, "vfork");
  if (pid == 0) {
    execv(self, cargv);
    _exit(127);
  }
  wait_ok(pid, "vfork+exec");

  int rc = posix_spawn(&pid, self, NULL, NULL, cargv, environ);
  CHECK(rc == 0, "posix_spawn: %s", strerror(rc));
  wait_ok(pid, "posix_spawn");

  CHECK_PATTERN(p, n, 9, "parent block after the children");
  free(p);
  API_CHECK("parent");
  printf("spawn_exec ok\n");
  return 0;
}
