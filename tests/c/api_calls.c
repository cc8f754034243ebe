/*
 * api_calls.c (issue 4: the C API): every function of exm.h, called once
 * preloaded (the API found by dlsym) and once from a binary linked with
 * -lexm and run without LD_PRELOAD (built with -DEXM_LINKED). Run with
 * EXM_DIR set to a fresh directory and no other EXM_* variable.
 */
#include "common.h"

#include <fcntl.h>
#include <malloc.h>
#include <sys/stat.h>

static void versions(void) {
  char want[32];
  snprintf(want, sizeof want, "%d.%d.%d", EXM_VERSION_MAJOR, EXM_VERSION_MINOR, EXM_VERSION_PATCH);
  CHECK(X.version && strcmp(X.version(), want) == 0, "exm_version() = %s, header says %s",
        X.version ? X.version() : "(none)", want);
  printf("version=%s\n", X.version());
}

static void threshold(void) {
  size_t t0 = X.get_threshold();
  CHECK(t0 == 64 * MiB, "default threshold %zu, want 64 MiB", t0);
  CHECK(X.set_threshold(12345) == 0, "set_threshold");
  CHECK(X.get_threshold() == 12345, "get_threshold after set: %zu", X.get_threshold());
  void *a = malloc(12345), *b = malloc(12344);
  CHECK(a && b, "malloc");
  CHECK(api_fb(a) && !api_fb(b), "at threshold 12345: 12345 B fb=%d, 12344 B fb=%d", api_fb(a),
        api_fb(b));
  free(a);
  free(b);
  CHECK(X.set_threshold(0) == 0, "set_threshold(0)");
  a = malloc(24);
  CHECK(a && api_fb(a), "threshold 0: malloc(24) not file-backed");
  free(a);
  CHECK(X.set_threshold(t0) == 0, "restore threshold");
  printf("threshold ok\n");
}

static void dirs(void) {
  char buf[4096];
  CHECK(X.get_dir(buf, sizeof buf) == 0, "get_dir");
  const char *env = getenv("EXM_DIR");
  if (env) CHECK(strcmp(buf, env) == 0, "get_dir = %s, EXM_DIR = %s", buf, env);
  char tiny[2];
  CHECK(X.get_dir(tiny, sizeof tiny) == ERANGE, "get_dir into 2 bytes: want ERANGE");
  CHECK(X.set_dir("/nonexistent/exm-dir") != 0, "set_dir of a missing dir succeeded");
  CHECK(X.set_dir("/etc/hostname") != 0, "set_dir of a regular file succeeded");
  CHECK(X.set_dir(buf) == 0, "set_dir(%s)", buf);
  char again[4096];
  CHECK(X.get_dir(again, sizeof again) == 0 && strcmp(again, buf) == 0, "get_dir after set_dir");
  printf("dir=%s\n", buf);
}

static void modes(void) {
  CHECK(X.get_child_mode() == EXM_CHILD_COW, "default child mode %d", (int)X.get_child_mode());
  for (int m = 0; m < 3; m++) {
    CHECK(X.set_child_mode((exm_child_mode_t)m) == 0, "set_child_mode(%d)", m);
    CHECK(X.get_child_mode() == (exm_child_mode_t)m, "get_child_mode after set %d", m);
  }
  CHECK(X.set_child_mode((exm_child_mode_t)7) == EINVAL, "set_child_mode(7): want EINVAL");
  X.set_child_mode(EXM_CHILD_COW);
  CHECK(X.get_advice() == EXM_ADVICE_AUTO, "default advice %d", (int)X.get_advice());
  for (int a = 0; a < 4; a++) {
    CHECK(X.set_advice((exm_advice_t)a) == 0, "set_advice(%d)", a);
    CHECK(X.get_advice() == (exm_advice_t)a, "get_advice after set %d", a);
  }
  CHECK(X.set_advice((exm_advice_t)9) == EINVAL, "set_advice(9): want EINVAL");
  X.set_advice(EXM_ADVICE_AUTO);
  CHECK(X.get_max_disk() == 0, "default max_disk %zu", X.get_max_disk());
  CHECK(X.set_max_disk(GiB) == 0 && X.get_max_disk() == GiB, "set/get max_disk");
  X.set_max_disk(0);
  printf("modes ok\n");
}

static void explicit_alloc_and_lookup(void) {
  unsigned char *p = X.alloc(1000);
  CHECK(p, "exm_alloc(1000): errno %d", errno);
  CHECK(api_fb(p) && api_fb(p + 999), "exm_alloc block not file-backed under a 64 MiB threshold");
  CHECK(find_nonzero(p, 1000) < 0, "exm_alloc memory is not zero");
  CHECK(malloc_usable_size(p) >= 1000, "usable %zu", malloc_usable_size(p));
  fill_pattern(p, 1000, 77);

  exm_block_info_t info;
  memset(&info, 0, sizeof info);
  CHECK(X.lookup(p + 100, &info) == 0, "exm_lookup(interior pointer)");
  CHECK(info.base == p, "lookup base %p, block %p", info.base, (void *)p);
  CHECK(info.size >= 1000, "lookup size %zu", info.size);
  CHECK(info.fd >= 0, "lookup fd %d", info.fd);
  struct stat st;
  CHECK(fstat(info.fd, &st) == 0 && S_ISREG(st.st_mode), "backing fd is not a regular file");
  CHECK((st.st_mode & 077) == 0, "backing file mode %o is open to others", st.st_mode & 0777);
  CHECK(st.st_nlink == 0, "backing file has %lu links (should be unlinked)", (unsigned long)st.st_nlink);
  int fd = open(info.path, O_RDONLY);
  CHECK(fd >= 0, "open(%s): %s", info.path, strerror(errno));
  unsigned char back[1000];
  CHECK(pread(fd, back, sizeof back, (off_t)info.offset) == (ssize_t)sizeof back, "pread");
  close(fd);
  CHECK(memcmp(back, p, sizeof back) == 0, "file at offset %zu does not hold the block's bytes",
        info.offset);
  CHECK(X.advise(p, EXM_ADVICE_RANDOM) == 0, "exm_advise");
  CHECK(X.advise(p, EXM_ADVICE_SEQUENTIAL) == 0, "exm_advise");
  X.free(p);

  /* a glibc block, the stack, NULL */
  void *g = malloc(100);
  int local;
  CHECK(X.lookup(g, &info) == ENOENT, "lookup of a glibc block: want ENOENT");
  CHECK(X.lookup(&local, &info) == ENOENT, "lookup of a stack address: want ENOENT");
  CHECK(X.lookup(NULL, &info) == ENOENT, "lookup(NULL): want ENOENT");
  CHECK(X.is_file_backed(NULL) == 0 && X.is_file_backed(g) == 0, "is_file_backed false positives");
  CHECK(X.advise(g, EXM_ADVICE_RANDOM) == ENOENT, "advise of a glibc block: want ENOENT");
  free(g);

  /* free() takes exm_alloc's blocks too */
  void *q = X.alloc(5 * MiB);
  CHECK(q && api_fb(q), "exm_alloc(5 MiB)");
  free(q);
  printf("explicit alloc and lookup ok\n");
}

static void stats(void) {
  exm_stats_t s0, s1, s2;
  CHECK(X.get_stats(&s0) == 0, "get_stats");
  void *b[3];
  for (int i = 0; i < 3; i++) {
    b[i] = X.alloc(10 * MiB);
    CHECK(b[i], "exm_alloc(10 MiB)");
    memset(b[i], 1, 10 * MiB);
  }
  CHECK(X.get_stats(&s1) == 0, "get_stats");
  printf("live_bytes %" PRIu64 " -> %" PRIu64 ", disk_reserved %" PRIu64 "\n", s0.live_bytes,
         s1.live_bytes, s1.disk_reserved);
  CHECK(s1.live_blocks == s0.live_blocks + 3, "live_blocks %" PRIu64 " -> %" PRIu64,
        s0.live_blocks, s1.live_blocks);
  CHECK(s1.live_bytes >= s0.live_bytes + 30 * MiB, "live_bytes did not grow by 30 MiB");
  CHECK(s1.peak_live_bytes >= s1.live_bytes, "peak < live");
  CHECK(s1.total_allocs >= s0.total_allocs + 3, "total_allocs");
  CHECK(s1.disk_reserved >= 30 * MiB, "disk_reserved %" PRIu64, s1.disk_reserved);
  CHECK(s1.peak_disk_reserved >= s1.disk_reserved, "peak_disk_reserved");
  CHECK(s1.arena_size >= 30 * MiB, "arena_size %" PRIu64, s1.arena_size);
  for (int i = 0; i < 3; i++) X.free(b[i]);
  CHECK(X.get_stats(&s2) == 0, "get_stats");
  CHECK(s2.live_blocks == s0.live_blocks, "live_blocks after free %" PRIu64, s2.live_blocks);
  CHECK(s2.total_frees >= s0.total_frees + 3, "total_frees");
  CHECK(s2.peak_live_bytes >= s0.live_bytes + 30 * MiB, "peak_live_bytes forgot the peak");
  CHECK(s2.failures == s0.failures, "failures grew");
  printf("stats ok\n");
}

int main(void) {
  api_init();
  CHECK(X.loaded, "libexm is neither preloaded nor linked");
  versions();
  threshold();
  dirs();
  modes();
  explicit_alloc_and_lookup();
  stats();
  /* the default threshold serves large mallocs from the arena, linked or preloaded */
  void *big = malloc(64 * MiB);
  CHECK(big && api_fb(big), "malloc(64 MiB) is not file-backed");
  free(big);
  CHECK(X.check() == 0, "exm_check");
  printf("api_calls ok\n");
  return 0;
}
