/*
 * madvise_calls.c: exm defines madvise (native/override.c) to keep a
 * program's MADV_HUGEPAGE off the arena's random-advised blocks and to give
 * MADV_DONTNEED on an arena block the anonymous memory's result (zeros);
 * every other call must be the system call, with its results and errors.
 * Run preloaded with EXM_THRESHOLD=1M, EXM_ADVICE=auto and a fresh EXM_DIR.
 */
#include "common.h"

#include <sys/mman.h>
#include <unistd.h>

static int thp(void) { return access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) == 0; }

int main(void) {
  api_init();
  CHECK(X.loaded, "the library is not preloaded");
  size_t len = 4 * MiB;

  /* Anonymous memory: the kernel's semantics, DONTNEED zeroes it. */
  unsigned char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(m != MAP_FAILED, "mmap");
  memset(m, 1, len);
  CHECK(madvise(m, len, MADV_DONTNEED) == 0, "madvise(DONTNEED): %s", strerror(errno));
  CHECK(m[0] == 0 && m[len - 1] == 0, "DONTNEED of anonymous memory did not zero it");
  errno = 0;
  CHECK(madvise(m, len, 12345) == -1 && errno == EINVAL, "unknown advice: want -1/EINVAL, errno %d", errno);
  errno = 0;
  CHECK(madvise(m + 1, len - 4096, MADV_NORMAL) == -1 && errno == EINVAL, "unaligned: want -1/EINVAL, errno %d", errno);
  if (thp()) {
    CHECK(madvise(m, len, MADV_HUGEPAGE) == 0 && has_vmflag(m, "hg"), "HUGEPAGE on anonymous memory not applied");
  }
  munmap(m, len);
  printf("anonymous ok\n");

  /* An arena block: the hint applies while exm has not made it random... */
  size_t n = 16 * MiB;
  unsigned char *b = malloc(n), *page = (unsigned char *)(((uintptr_t)b + 4095) & ~(uintptr_t)4095);
  CHECK(b && api_fb(b), "a 16 MiB block is not file-backed");
  if (thp()) {
    CHECK(madvise(page, n - 4096, MADV_HUGEPAGE) == 0 && has_vmflag(page, "hg"), "HUGEPAGE on a block exm leaves alone not applied");
    CHECK(madvise(page, n - 4096, MADV_NOHUGEPAGE) == 0 && !has_vmflag(page, "hg"), "NOHUGEPAGE not applied");
  }
  /* ...and is not once the block is random (exm_advise: the user's advice). */
  CHECK(X.advise(b, EXM_ADVICE_RANDOM) == 0, "exm_advise(RANDOM)");
  CHECK(madvise(page, n - 4096, MADV_HUGEPAGE) == 0, "HUGEPAGE on a random block must still return 0");
  CHECK(!has_vmflag(page, "hg"), "HUGEPAGE applied to a block advised random");
  CHECK(!strcmp(advice_of(page), "rr"), "the block lost its random advice: %s", advice_of(page));
  /* DONTNEED on an arena block reads back zeros, as glibc's anonymous
   * block would (the kernel alone keeps a file mapping's data), and only
   * that page; the block is memory again after it. */
  b[n / 2] = 7;
  b[n / 2 + 4096] = 8;
  size_t pg = ((uintptr_t)(b + n / 2)) & ~(uintptr_t)4095;
  CHECK(madvise((void *)pg, 4096, MADV_DONTNEED) == 0 && b[n / 2] == 0, "DONTNEED on an arena block kept its data");
  CHECK(b[n / 2 + 4096] == 8, "DONTNEED reached past its page");
  b[n / 2] = 9;
  CHECK(b[n / 2] == 9, "a write after DONTNEED");
  errno = 0;
  CHECK(madvise((void *)(pg + 1), 4096, MADV_DONTNEED) == -1 && errno == EINVAL, "unaligned DONTNEED: want -1/EINVAL, errno %d", errno);
  free(b);
  printf("arena ok\nmadvise_calls ok\n");
  return 0;
}
