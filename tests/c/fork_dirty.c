/*
 * fork_dirty.c: a child's copy of a large reserved block holds exactly the
 * pages the parent wrote, wherever those pages are (dirty in the page
 * cache, under writeback, or on disk and evicted), and a duplicate child's
 * copy is not made of the whole block.
 *
 * usage: fork_dirty CASE [SIZE] [DEPTH]
 *
 * The parent callocs SIZE (default 256 MiB: file-backed, its disk reserved
 * and never written), writes PAGES scattered pages (each its own pattern),
 * then, per CASE:
 *   fresh       forks at once (the pages are dirty, their extents unwritten);
 *   cached      has read the whole block first (every page in the page
 *               cache, clean zeros: what SEEK_DATA calls data);
 *   writeback   starts their writeback (sync_file_range, no wait) and forks;
 *   evicted     writes them back, unmaps and drops them from the page cache
 *               (only the disk has them) and forks.
 * The child counts the pages of the block resident in its view before it
 * reads anything (copied_kib: in duplicate mode, what the copy put into the
 * copy's page cache), then checks every page: the written ones hold their
 * pattern, every other page reads as zeros. With DEPTH 2 the child forks
 * again and its child checks the same (the copy's pages are dirty in the
 * page cache and mapped by nobody). Prints copied_kib=N per generation.
 */
#include "common.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define PAGE ((size_t)4096)
#define PAGES 37

static size_t page_at(size_t i, size_t n) {   /* scattered, distinct, page-aligned */
  return (size_t)(mix64(0xd1e7 + i) % (n / PAGE / PAGES)) * PAGE + i * (n / PAGES / PAGE) * PAGE;
}

static size_t resident_kib(unsigned char *p, size_t n) {
  size_t pages = n / PAGE, res = 0;
  unsigned char *vec = malloc(pages);
  CHECK(vec && mincore(p, n, vec) == 0, "mincore");
  for (size_t i = 0; i < pages; i++) res += vec[i] & 1;
  free(vec);
  return res * 4;
}

/* Every page the parent wrote holds its pattern; every other reads zero. */
static void check_view(unsigned char *p, size_t n, const char *who) {
  size_t next = 0;
  for (size_t off = 0; off < n; off += PAGE) {
    if (next < PAGES && off == page_at(next, n)) {
      long long bad = find_pattern_mismatch(p + off, PAGE, 0x5eed + next);
      CHECK(bad < 0, "%s: written page %zu (offset %zu) differs at byte %lld", who, next, off, bad);
      next++;
    } else {
      long long nz = find_nonzero(p + off, PAGE);
      CHECK(nz < 0, "%s: page at offset %zu was never written but reads non-zero at byte %lld", who, off, nz);
    }
  }
  CHECK(next == PAGES, "%s: %zu of %d written pages checked", who, next, PAGES);
}

static void generation(unsigned char *p, size_t n, int depth, const char *who) {
  printf("%s: copied_kib=%zu\n", who, resident_kib(p, n));
  check_view(p, n, who);
  if (depth > 1) {
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
      alarm(60);
      generation(p, n, depth - 1, "grandchild");
      _exit(0);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: its child failed", who);
  }
}

int main(int argc, char **argv) {
  api_init();
  CHECK(argc > 1, "usage: fork_dirty fresh|cached|writeback|evicted [SIZE] [DEPTH]");
  const char *how = argv[1];
  size_t n = argc > 2 ? parse_size(argv[2]) : 256 * MiB;
  int depth = argc > 3 ? atoi(argv[3]) : 1;
  unsigned char *p = calloc(1, n);
  CHECK(p, "calloc(%zu)", n);
  printf("file_backed=%d\n", api_fb(p));
  if (!strcmp(how, "cached")) CHECK(find_nonzero(p, n) < 0, "a fresh calloc block is not zero");
  for (size_t i = 0; i < PAGES; i++) fill_pattern(p + page_at(i, n), PAGE, 0x5eed + i);
  int fd = -1;
  if (api_fb(p)) {
    exm_block_info_t info;
    CHECK(X.lookup(p, &info) == 0, "exm_lookup");
    fd = info.fd;
  }
  if (!strcmp(how, "writeback") && fd >= 0) {
    exm_block_info_t info;
    X.lookup(p, &info);
    CHECK(sync_file_range(fd, (off_t)info.offset, (off_t)n, SYNC_FILE_RANGE_WRITE) == 0, "sync_file_range: %s", strerror(errno));
  } else if (!strcmp(how, "evicted") && fd >= 0) {
    exm_block_info_t info;
    X.lookup(p, &info);
    CHECK(fdatasync(fd) == 0, "fdatasync: %s", strerror(errno));
    /* the kernel's DONTNEED (unmaps, the file keeps the data), not the
     * library's, which gives an arena block anonymous memory's zeros */
    CHECK(syscall(SYS_madvise, p, n, MADV_DONTNEED) == 0, "madvise");
    CHECK(posix_fadvise(fd, (off_t)info.offset, (off_t)n, POSIX_FADV_DONTNEED) == 0, "fadvise");
    printf("parent_resident_kib=%zu\n", resident_kib(p, n));
  } else {
    CHECK(!strcmp(how, "fresh") || !strcmp(how, "cached") || fd < 0, "unknown case %s", how);
  }
  pid_t pid = fork();
  CHECK(pid >= 0, "fork");
  if (pid == 0) {
    alarm(60);
    generation(p, n, depth, "child");
    _exit(0);
  }
  int st;
  CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child failed");
  check_view(p, n, "parent");
  free(p);
  API_CHECK("the end");
  printf("fork_dirty ok\n");
  return 0;
}
