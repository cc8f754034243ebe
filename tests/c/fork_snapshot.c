/*
 * fork_snapshot.c: what a forked child sees of a block that other threads
 * keep writing.
 *
 * usage: fork_snapshot [FORKS] [SIZE]
 *
 * A writer thread stores an increasing sequence number into the first and
 * the last word of a SIZE block (default 64 MiB: file-backed at the default
 * threshold), then publishes it in a global. The main thread forks FORKS
 * times (default 50). The child's copy of the global is the last value
 * published before fork: both words of its view of the block must be at
 * least that (a copy taken before the fork is older, and wrong).
 *
 * Then the parent's forking thread writes a marker into the middle of the
 * block after fork returned, and tells the child (pipe). In duplicate mode
 * the child's copy must not show it (it is a copy, made before fork returned
 * in the parent); in cow and shared mode the child reports what it sees
 * ("later_write_seen"): a page the cow child has not written itself still
 * shows the parent's later writes.
 */
#include "common.h"

#include <pthread.h>
#include <sys/wait.h>

static uint64_t *blk;
static size_t words;
static uint64_t published;
static volatile int stop;

static void *writer(void *arg) {
  (void)arg;
  for (uint64_t seq = 1; !stop; seq++) {
    __atomic_store_n(&blk[0], seq, __ATOMIC_RELAXED);
    __atomic_store_n(&blk[words - 1], seq, __ATOMIC_RELAXED);
    __atomic_store_n(&published, seq, __ATOMIC_RELEASE);
  }
  return NULL;
}

int main(int argc, char **argv) {
  api_init();
  int forks = argc > 1 ? atoi(argv[1]) : 50;
  size_t size = argc > 2 ? parse_size(argv[2]) : 64 * MiB;
  const char *mode = getenv("EXM_CHILD");
  int dup = mode && !strcmp(mode, "duplicate");
  words = size / 8;
  blk = malloc(size);
  CHECK(blk, "malloc");
  memset(blk, 0, size);
  printf("file_backed=%d\n", api_fb(blk));
  pthread_t th;
  CHECK(pthread_create(&th, NULL, writer, NULL) == 0, "pthread_create");
  while (__atomic_load_n(&published, __ATOMIC_ACQUIRE) < 1000) {}
  int older = 0, later_seen = 0;
  for (int f = 0; f < forks; f++) {
    int go[2], res[2];
    CHECK(pipe(go) == 0 && pipe(res) == 0, "pipe");
    uint64_t marker = 0xfeed000000000000ull | (uint64_t)f;
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
      uint64_t pub = __atomic_load_n(&published, __ATOMIC_ACQUIRE);
      uint64_t first = blk[0], last = blk[words - 1];
      char r[2] = { first >= pub && last >= pub ? 'y' : 'n', 0 };
      if (r[0] == 'n') fprintf(stderr, "child %d: published %llu, block has %llu / %llu\n", f, (unsigned long long)pub,
                               (unsigned long long)first, (unsigned long long)last);
      char b;
      if (read(go[0], &b, 1) != 1) _exit(9);
      r[1] = blk[words / 2] == marker ? 'y' : 'n';
      if (write(res[1], r, 2) != 2) _exit(9);
      _exit(0);
    }
    blk[words / 2] = marker;      /* after fork returned: not in a copy */
    CHECK(write(go[1], "g", 1) == 1, "write");
    char r[2];
    CHECK(read(res[0], r, 2) == 2, "child %d gave no answer", f);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d failed", f);
    older += r[0] == 'n';
    later_seen += r[1] == 'y';
    close(go[0]), close(go[1]), close(res[0]), close(res[1]);
  }
  stop = 1;
  pthread_join(th, NULL);
  printf("forks=%d older=%d later_write_seen=%d\n", forks, older, later_seen);
  CHECK(older == 0, "%d of %d children saw the block older than the value published before fork", older, forks);
  if (dup) CHECK(later_seen == 0, "%d of %d duplicate children saw a write the parent made after fork returned", later_seen, forks);
  free(blk);
  API_CHECK("the end");
  printf("fork_snapshot ok\n");
  return 0;
}
