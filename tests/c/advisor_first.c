/*
 * advisor_first.c: the advisor's first look at a block cannot tell what is
 * new, so it decides nothing. A 128 MiB block (EXM_ADVICE=auto) is filled,
 * written back, and then 3 MiB of every 4 MiB are dropped from the page
 * cache (POSIX_FADV_DONTNEED on the backing file), so that 32 stretches stay
 * resident, as reclaim under a memory limit leaves a block behind a fill;
 * then the process takes major faults elsewhere (pages of a file of its own
 * dropped from the page cache, read through a mapping of it): the advisor's
 * first look comes after both, finds 32 resident stretches it has not seen
 * before and enough faults for them to have cost one each. Nothing was read
 * at random from the block, so its advice must stay the kernel's default.
 *
 * Prints majflt= (the faults taken), after= (the block's advice flags from
 * /proc/self/smaps: "--", "rr" or "sr") and "advisor_first ok".
 *
 * usage: advisor_first DIR (where the file of the faults goes)
 */
#include "common.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#define FAULT_PAGES 32

int main(int argc, char **argv) {
  CHECK(argc == 2, "usage: advisor_first DIR");
  api_init();
  size_t size = 128 * MiB;
  unsigned char *p = malloc(size);
  CHECK(p && api_fb(p), "malloc(%zu) not file-backed", size);
  for (size_t i = 0; i < size; i += 4096) p[i] = (unsigned char)(i >> 12);
  exm_block_info_t info;
  CHECK(X.lookup(p, &info) == 0, "exm_lookup");
  CHECK(fdatasync(info.fd) == 0, "fdatasync: %s", strerror(errno));
  size_t head = (size_t)((unsigned char *)info.base - p);   /* 0: the block starts at p */
  /* The pages leave the mapping (the system call itself: exm's madvise would
   * give an anonymous-memory meaning to MADV_DONTNEED), then the cache. */
  for (size_t at = 0; at < size; at += 4 * MiB)
    CHECK(syscall(SYS_madvise, p + at + MiB, 3 * MiB, MADV_DONTNEED) == 0, "madvise(MADV_DONTNEED): %s", strerror(errno));
  for (size_t at = 0; at < size; at += 4 * MiB)
    CHECK(posix_fadvise(info.fd, (off_t)(info.offset + head + at + MiB), (off_t)(3 * MiB), POSIX_FADV_DONTNEED) == 0,
          "posix_fadvise(DONTNEED)");
  unsigned char *vec = malloc(size / 4096);
  CHECK(vec && mincore(p, size, vec) == 0, "mincore: %s", strerror(errno));
  int stretches = 0;
  for (size_t i = 0; i < size / 4096; i++) stretches += (vec[i] & 1) && (i == 0 || !(vec[i - 1] & 1));
  free(vec);
  printf("stretches=%d\n", stretches);

  char path[4096];
  snprintf(path, sizeof path, "%s/advisor_first.XXXXXX", argv[1]);
  int fd = mkstemp(path);
  CHECK(fd >= 0, "mkstemp(%s): %s", path, strerror(errno));
  unlink(path);
  size_t flen = FAULT_PAGES * 64 * 4096;   /* pages 64 apart: no read-around joins two */
  static unsigned char page[4096];
  memset(page, 0x33, sizeof page);
  for (size_t off = 0; off < flen; off += sizeof page)
    CHECK(pwrite(fd, page, sizeof page, (off_t)off) == (ssize_t)sizeof page, "pwrite: %s", strerror(errno));
  CHECK(fdatasync(fd) == 0, "fdatasync: %s", strerror(errno));
  CHECK(posix_fadvise(fd, 0, (off_t)flen, POSIX_FADV_DONTNEED) == 0, "posix_fadvise");
  unsigned char *m = mmap(NULL, flen, PROT_READ, MAP_SHARED, fd, 0);
  CHECK(m != MAP_FAILED, "mmap: %s", strerror(errno));
  CHECK(madvise(m, flen, MADV_RANDOM) == 0, "madvise: %s", strerror(errno));
  struct rusage r0, r1;
  getrusage(RUSAGE_SELF, &r0);
  volatile unsigned sum = 0;
  for (size_t i = 0; i < FAULT_PAGES; i++) sum += m[i * 64 * 4096];
  getrusage(RUSAGE_SELF, &r1);
  long faults = r1.ru_majflt - r0.ru_majflt;
  printf("majflt=%ld\n", faults);
  CHECK(sum == 0x33u * FAULT_PAGES, "the file's pages read back wrong");

  /* Three of the advisor's periods (200 ms): its first look and the next. */
  struct timespec ts = { 0, 700 * 1000 * 1000 };
  nanosleep(&ts, NULL);
  printf("after=%s\n", advice_of(p));
  munmap(m, flen);
  close(fd);
  free(p);
  printf("advisor_first ok\n");
  return 0;
}
