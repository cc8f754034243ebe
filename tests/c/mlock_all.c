/*
 * mlock_all.c: a program that locks its memory (mlockall, as security tools
 * and real-time programs do) and then uses exm's arena. Locking a mapping
 * populates it: exm's arena is terabytes of file, so the process was
 * OOM-killed at its first large block (MCL_FUTURE before the arena) or at
 * the mlockall itself (MCL_CURRENT after). Run under a memory limit.
 *
 *   mlock_all future    mlockall(MCL_CURRENT | MCL_FUTURE), then the arena
 *   mlock_all current   the arena first, then mlockall(MCL_CURRENT | MCL_FUTURE)
 *
 * Then a 64 MiB block is filled and checked (and one more after the lock,
 * in "current"), and 20 000 small blocks made and freed (at threshold 0 the
 * arena's table of segments); the arena's mapping must not be locked (no "lo" in its
 * VmFlags) while the program's own memory is (VmLck in /proc/self/status).
 * Prints locked=0|1 (mlockall succeeded), block_locked=, vmlck_kib=, and
 * "mlock_all ok"; when mlockall itself fails (RLIMIT_MEMLOCK), locked=0 and
 * the rest still has to work.
 */
#include "common.h"

#include <sys/mman.h>

static long vmlck_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  CHECK(f, "open /proc/self/status");
  char line[256];
  long kib = -1;
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, "VmLck:", 6)) kib = atol(line + 6);
  fclose(f);
  return kib;
}

static unsigned char *block(size_t n, uint64_t seed) {
  unsigned char *p = malloc(n);
  CHECK(p && api_fb(p), "malloc(%zu) not file-backed", n);
  fill_pattern(p, n, seed);
  CHECK_PATTERN(p, n, seed, "the block");
  return p;
}

int main(int argc, char **argv) {
  CHECK(argc == 2 && (!strcmp(argv[1], "future") || !strcmp(argv[1], "current")), "usage: mlock_all future|current");
  api_init();
  size_t n = 64 * MiB;
  int future = !strcmp(argv[1], "future");
  unsigned char *first = future ? NULL : block(n, 1);
  int locked = mlockall(MCL_CURRENT | MCL_FUTURE) == 0;
  printf("locked=%d\n", locked);
  if (!locked) printf("mlockall: %s\n", strerror(errno));
  fflush(stdout);
  unsigned char *p = block(n, 2);
  if (first) CHECK_PATTERN(first, n, 1, "the block made before mlockall");
  static void *small[20000];
  for (int i = 0; i < 20000; i++) CHECK((small[i] = malloc(16 + i % 2000)), "malloc(%d)", 16 + i % 2000);
  for (int i = 0; i < 20000; i++) free(small[i]);
  int lo = has_vmflag(p, "lo");
  long kib = vmlck_kib();
  printf("block_locked=%d\nvmlck_kib=%ld\n", lo, kib);
  CHECK(!lo, "the arena's mapping is locked in RAM");
  if (locked) CHECK(kib > 0, "mlockall succeeded but nothing is locked");
  /* the program's own memory is ~12 MiB (8 of them exm's advisor's stack);
   * exm's 64 MiB table of segments (threshold 0) was locked and populated,
   * and the kernel's count of locked pages wraps when an 8 TiB mapping is
   * locked and unlocked */
  CHECK(kib < 48 * 1024, "VmLck is %ld KiB", kib);
  free(p);
  free(first);
  munlockall();
  printf("mlock_all ok\n");
  return 0;
}
