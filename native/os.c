/*
 * os.c: the kernel primitives of the library: backing files, mappings, disk
 * reservation and punching, the copies fork makes, the file I/O of the
 * statistics and the advisor's /proc reads, residency (mincore), resource
 * usage and limits, sleeping, and starting a helper thread. Most return 0 or
 * an errno value with outputs by pointer (some a pointer, NULL on failure, or
 * a value that cannot fail), and none allocates: they run inside malloc.
 * Outside it, on purpose: the C library's own services that are not a kernel
 * primitive — locks and condition waits (with the clock a timed wait needs,
 * punch.c), getenv (options.c), exit and abort (advisor.c runs the program's
 * exit handlers; msg.c, fork.c), and the dynamic linker's dlsym,
 * dl_iterate_phdr and pthread_atfork (fork.c, heapinfo.c, override.c), which
 * find glibc's entry points and register the fork handlers.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core.h"
#include "exm.h"
#include "msg.h"
#include "options.h"
#include "os.h"

/* madvise without the library's own definition of it (override.c, which
 * the library's calls would otherwise reach through the PLT: its
 * MADV_DONTNEED emulation must never apply to exm's own calls). */
static int sys_madvise(void *p, size_t len, int advice) { return (int)syscall(SYS_madvise, p, len, advice); }

/* A fresh backing file, unlinked from birth: a crash leaves nothing behind
 * and no other user can open it. O_TMPFILE where the filesystem has it,
 * else a 0600 file created exclusively and unlinked at once. */
/* The backing file's descriptor goes high: never 0-2 (a program started
 * with stderr closed would write its messages into the heap) and out of the
 * low numbers programs reuse after closing descriptors they do not know. */
static int move_high(int fd) {
  static const int floors[] = { 900, 200, 64, 10 };
  for (size_t i = 0; i < sizeof floors / sizeof *floors; i++) {
    int high = fcntl(fd, F_DUPFD_CLOEXEC, floors[i]);
    if (high >= 0) {
      close(fd);
      return high;
    }
  }
  if (fd > 2) return fd;
  close(fd);
  errno = EMFILE;
  return -1;
}

int exm_os_tmpfile(const char *dir, int *fdp) {
  int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC | O_EXCL, 0600);
  if (fd >= 0) return (fd = move_high(fd)) < 0 ? errno : (*fdp = fd, 0);
  if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) return errno;
  static unsigned counter;
  char path[EXM_PATH_MAX + 64];
  size_t n = strlen(dir);
  if (n + 48 > sizeof path) return ENAMETOOLONG;
  for (int attempt = 0; attempt < 100; attempt++) {
    exm_line_t l = { .n = 0 };
    exm_line_str(&l, "/.exm-");
    exm_line_u64(&l, (uint64_t)getpid());
    exm_line_str(&l, "-");
    exm_line_u64(&l, (exm_os_now_ns() ^ __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED)) % 1000000007u);
    memcpy(path, dir, n);
    memcpy(path + n, l.buf, l.n);
    path[n + l.n] = 0;
    fd = open(path, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0) {
      unlink(path);
      return (fd = move_high(fd)) < 0 ? errno : (*fdp = fd, 0);
    }
    if (errno != EEXIST) return errno;
  }
  return EEXIST;
}

/* Is the program's mlockall(MCL_FUTURE) in effect? A new readable page is
 * then populated (and resident) as soon as it is mapped; or, past
 * RLIMIT_MEMLOCK, not mapped at all. */
static int future_locked(void) {
  void *p = mmap(NULL, EXM_PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return 1;
  unsigned char v = 0;
  int locked = mincore(p, EXM_PAGE, &v) == 0 && (v & 1);
  munmap(p, EXM_PAGE);
  return locked;
}

/* mmap(NULL, len, read and write, flags, fd, 0), never locked: under the
 * program's mlockall(MCL_FUTURE) a readable mapping is locked and populated
 * at once, terabytes of page cache for the arena (the process was
 * OOM-killed at its first large block). Then it is mapped without access
 * (not populated), munlocked, and made accessible. Only then: valgrind
 * takes the three steps over 8 TiB for 30x slower runs (stress_fork). */
static void *map_unlocked(size_t len, int flags, int fd) {
  int careful = future_locked();
  void *p = mmap(NULL, len, careful ? PROT_NONE : PROT_READ | PROT_WRITE, flags, fd, 0);
  if (p == MAP_FAILED) return NULL;
  if (careful) {
    exm_os_unlock(p, len);
    if (mprotect(p, len, PROT_READ | PROT_WRITE)) {
      munmap(p, len);
      return NULL;
    }
  }
  return p;
}

/* Size the file as large as the filesystem and address space allow and map
 * it once: one VMA, ownership is a range check, and the arena never moves.
 * The file is sparse; disk is reserved block by block (exm_os_reserve). */
void *exm_os_map_file(int fd, size_t *cap, int *limited) {
  size_t limit = EXM_ARENA_MAX;
  *limited = -1;
  struct rlimit fsize;   /* ulimit -f: a larger file would kill us with SIGXFSZ */
  if (!getrlimit(RLIMIT_FSIZE, &fsize) && fsize.rlim_cur != RLIM_INFINITY && fsize.rlim_cur < limit)
    limit = (size_t)fsize.rlim_cur, *limited = RLIMIT_FSIZE;
  /* Under an address-space limit (ulimit -v) the arena takes at most half
   * of it: what it cannot serve goes to glibc, which needs room there too. */
  struct rlimit as;
  if (!getrlimit(RLIMIT_AS, &as) && as.rlim_cur != RLIM_INFINITY && as.rlim_cur / 2 < limit)
    limit = (size_t)(as.rlim_cur / 2), *limited = RLIMIT_AS;
  /* the limit itself first (a 100 MiB ulimit -f gets a 100 MiB arena, not
   * 64), then halves: the address space may not hold the largest */
  for (size_t size = limit & ~(EXM_SEG_SIZE - 1); size >= EXM_ARENA_MIN; size = size / 2 & ~(EXM_SEG_SIZE - 1)) {
    if (ftruncate(fd, (off_t)size)) continue;
    void *p = map_unlocked(size, MAP_SHARED | MAP_NORESERVE, fd);
    if (!p) continue;
    sys_madvise(p, size, MADV_DONTDUMP);   /* a core dump of terabytes of file helps nobody */
    return *cap = size, p;
  }
  if (limit >= EXM_ARENA_MIN) *limited = -1;   /* not the limit's fault */
  *cap = *limited == RLIMIT_AS ? limit * 2 : limit;
  return NULL;
}

/* Is fd still the file identified by (dev, ino)? A program may close
 * descriptors it does not know and reuse the number. */
int exm_os_same_file(int fd, uint64_t dev, uint64_t ino) {
  struct stat st;
  return fstat(fd, &st) == 0 && (uint64_t)st.st_dev == dev && (uint64_t)st.st_ino == ino;
}

int exm_os_file_id(int fd, uint64_t *dev, uint64_t *ino) {
  struct stat st;
  if (fstat(fd, &st)) return errno;
  *dev = (uint64_t)st.st_dev;
  *ino = (uint64_t)st.st_ino;
  return 0;
}

/* Replace the mapping of [base, base+cap) with fd, shared or private. */
int exm_os_remap(void *base, size_t cap, int fd, int private_copy) {
  void *p = mmap(base, cap, PROT_READ | PROT_WRITE,
                 (private_copy ? MAP_PRIVATE : MAP_SHARED) | MAP_FIXED | MAP_NORESERVE, fd, 0);
  if (p == MAP_FAILED) return errno;
  sys_madvise(p, cap, MADV_DONTDUMP);   /* a new mapping: as exm_os_map_file's */
  return 0;
}

/* KEEP_SIZE: the arena's file is already as large as its range, and a file
 * of the program's that took the descriptor's number behind exm's back (a
 * race the caller's check cannot close) neither grows nor changes. */
int exm_os_reserve(int fd, size_t off, size_t len) {
  while (fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len))
    if (errno != EINTR) return errno;
  return 0;
}

/* Give the disk back; the page cache of the range goes too, dirty or not,
 * without being written back. */
int exm_os_punch(int fd, size_t off, size_t len) {
  while (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len))
    if (errno != EINTR) return errno;
  return 0;
}

#ifndef FALLOC_FL_ZERO_RANGE
#define FALLOC_FL_ZERO_RANGE 0x10
#endif

/* Zeros over [off, off+len) of the file with its disk kept (ext4 and XFS
 * make the range unwritten extents) and its pages dropped from the page
 * cache and from every mapping of it. */
int exm_os_zero(int fd, size_t off, size_t len) {
  while (fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len))
    if (errno != EINTR) return errno;
  return 0;
}

/* The same under [p, p+len) of a shared file mapping: the hole is punched
 * through the mapping, with no descriptor, so it works after the program
 * closed exm's and never reaches a file that took its number. EINVAL or
 * EACCES where the kernel will not (an mlock'ed or read-only range): the
 * caller punches by descriptor. */
int exm_os_punch_mapped(void *p, size_t len) {
  while (sys_madvise(p, len, MADV_REMOVE))
    if (errno != EINTR && errno != EAGAIN) return errno;
  return 0;
}

void exm_os_unlock(void *p, size_t len) { munlock(p, len); }

/* Drop private (copy-on-write) pages of a range: it reads the file again. */
int exm_os_drop_private(void *p, size_t len) { return sys_madvise(p, len, MADV_DONTNEED) ? errno : 0; }

/* Random advice also takes the range's huge-page hint away: a file mapping
 * with MADV_HUGEPAGE (numpy gives one to every large array) reads a whole
 * 2 MiB folio on each fault whatever the other advice says (the kernel
 * reads ahead for VM_HUGEPAGE before it looks at VM_RAND_READ): measured,
 * random single-element reads of a 1 GiB numpy array through a 256 MiB
 * cgroup, 2 MiB read per major fault and ~450 reads/s, against 4 KiB and
 * ~10 000/s without the hint. Where THP is not built in, MADV_NOHUGEPAGE
 * fails with EINVAL, which changes nothing. */
int exm_os_madvise(void *p, size_t len, int advice) {
  static const int adv[] = { MADV_NORMAL, MADV_NORMAL, MADV_SEQUENTIAL, MADV_RANDOM };
  if (advice < 0 || advice > 3) return EINVAL;
  if (sys_madvise(p, len, adv[advice])) return errno;
#ifdef MADV_NOHUGEPAGE
  if (adv[advice] == MADV_RANDOM) sys_madvise(p, len, MADV_NOHUGEPAGE);
#endif
  return 0;
}

/* Large ones (the core's table of segments: 64 MiB of address space, of
 * which a few pages are ever touched) are not locked under the program's
 * mlockall(MCL_FUTURE): map_unlocked. */
void *exm_os_anon(size_t len) {
  if (len >= ((size_t)1 << 20)) return map_unlocked(len, MAP_PRIVATE | MAP_ANONYMOUS, -1);
  void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

void exm_os_unmap(void *p, size_t len) { munmap(p, len); }

int exm_os_dir_usable(const char *dir) {
  struct stat st;
  if (stat(dir, &st)) return errno;
  if (!S_ISDIR(st.st_mode)) return ENOTDIR;
  if (access(dir, W_OK | X_OK)) return errno;
  return 0;
}

/* Copy [off, end) of one file into the same place of another, in the kernel. */
static int copy_part(int from, int to, size_t off, size_t end) {
  off_t in = (off_t)off, out = (off_t)off;
  while ((size_t)in < end) {
    ssize_t n = copy_file_range(from, &in, to, &out, end - (size_t)in, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n < 0 ? errno : EIO;
  }
  return 0;
}

/* ---- What of a reserved block holds data --------------------------------
 * SEEK_DATA counts every page in the page cache as data, and a block's disk
 * is reserved (fallocate: unwritten extents) before it is handed out, so
 * the zero pages that read-ahead brought in around one written page (8 MiB
 * of them on ext4 for a one-byte store) were copied for every duplicate
 * child: a Python buffer whose header page was written was copied whole.
 * What an unwritten extent holds that is not zero is in its dirty pages and
 * in those under writeback: ext4 and XFS keep a page's writeback flag until
 * its extent is converted to written (ext4_release_io_end, xfs_end_ioend).
 * So, per range: the page cache's count of dirty and writeback pages
 * (cachestat, Linux 6.5) is read BEFORE the extent map (FIEMAP): a page
 * that is clean and not under writeback at the count, over an extent still
 * unwritten at the map, was never written (a write racing the fork from
 * another thread aside, which the README leaves undefined), and a page
 * written back meanwhile has a written extent by the map. Written extents
 * are copied whole; unwritten ones only where the count finds dirty or
 * writeback pages, halving the range down to 64 KiB. Elsewhere (other
 * filesystems, older kernels, FIEMAP refused) every SEEK_DATA range is
 * copied, as before. */
struct exm_cachestat_range { uint64_t off, len; };
struct exm_cachestat { uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted; };
#ifndef __NR_cachestat
#define __NR_cachestat 451     /* the same number on every architecture */
#endif

/* Pages of [off, end) that may hold what the disk does not: dirty or under writeback. */
static int unsettled_pages(int fd, size_t off, size_t end, uint64_t *pages) {
  struct exm_cachestat_range r = { off, end - off };
  struct exm_cachestat cs;
  if (syscall(__NR_cachestat, fd, &r, &cs, 0)) return errno;
  *pages = cs.nr_dirty + cs.nr_writeback;
  return 0;
}

#define COPY_GRAIN ((size_t)64 << 10)   /* below this, a range with a dirty page is copied whole */

static int copy_written(int from, int to, size_t off, size_t end);

/* [x, y) is not a written extent; `unsettled` of the `pages` pages of the
 * range around it were dirty or under writeback at the count. */
static int copy_unwritten(int from, int to, size_t x, size_t y, uint64_t unsettled, uint64_t pages) {
  if (!unsettled) return 0;
  if (y - x <= COPY_GRAIN || unsettled >= pages) return copy_part(from, to, x, y);
  size_t mid = x + ((y - x) / 2 & ~(EXM_PAGE - 1));
  int err = copy_written(from, to, x, mid);
  if (!err) err = copy_written(from, to, mid, y);
  return err == ENOTSUP ? copy_part(from, to, x, y) : err;
}

/* Copy what of [off, end) holds data (see above); ENOTSUP when this file's
 * extents cannot be told apart (the caller then copies the whole range). */
static int copy_written(int from, int to, size_t off, size_t end) {
  uint64_t unsettled = 0, pages = (end - off + EXM_PAGE - 1) / EXM_PAGE;
  if (unsettled_pages(from, off, end, &unsettled)) return ENOTSUP;
  enum { N = 8 };
  char buf[sizeof(struct fiemap) + N * sizeof(struct fiemap_extent)];
  struct fiemap *fm = (struct fiemap *)buf;
  size_t at = off;                 /* [off, at) is done */
  int err = 0;
  while (at < end && !err) {
    memset(fm, 0, sizeof *fm);
    fm->fm_start = at;
    fm->fm_length = end - at;
    fm->fm_extent_count = N;
    if (ioctl(from, FS_IOC_FIEMAP, fm)) return ENOTSUP;
    unsigned n = fm->fm_mapped_extents;
    for (unsigned i = 0; i < n && !err && at < end; i++) {
      const struct fiemap_extent *e = &fm->fm_extents[i];
      size_t a = (size_t)e->fe_logical, b = (size_t)(e->fe_logical + e->fe_length);
      if (a < at) a = at;
      if (a > end) a = end;
      if (b > end) b = end;
      if (a > at) err = copy_unwritten(from, to, at, a, unsettled, pages);   /* a gap: no extent */
      if (!err && b > a)
        err = e->fe_flags & (FIEMAP_EXTENT_UNWRITTEN | FIEMAP_EXTENT_UNKNOWN | FIEMAP_EXTENT_DELALLOC)
                  ? copy_unwritten(from, to, a, b, unsettled, pages)
                  : copy_part(from, to, a, b);
      if (b > at) at = b;
    }
    if (!err && at < end && (n < N || (fm->fm_extents[N - 1].fe_flags & FIEMAP_EXTENT_LAST))) {
      err = copy_unwritten(from, to, at, end, unsettled, pages);   /* no extent to the end */
      at = end;
    }
  }
  return err;
}

/* Does this file keep a page's writeback flag until its extent is written
 * (the rule copy_written relies on)? ext4 and XFS do. */
static int extents_settle_late(int fd) {
  struct statfs sf;
  return !fstatfs(fd, &sf) && ((unsigned long)sf.f_type == 0xEF53u /* ext4 */ || (unsigned long)sf.f_type == 0x58465342u /* XFS */);
}

/* Copy [off, off+len) of one file into the same place of another, in the
 * kernel, skipping holes and, where the filesystem lets it tell, the
 * never-written pages of reserved extents. */
static int copy_data(int from, int to, size_t off, size_t end) {
  int precise = extents_settle_late(from);
  while (off < end) {
    off_t data = lseek(from, (off_t)off, SEEK_DATA);
    if (data < 0) return errno == ENXIO ? 0 : errno;
    if ((size_t)data >= end) return 0;
    off_t hole = lseek(from, data, SEEK_HOLE);
    if (hole < 0) return errno;
    size_t stop = (size_t)hole < end ? (size_t)hole : end;
    int err = precise ? copy_written(from, to, (size_t)data, stop) : ENOTSUP;
    if (err == ENOTSUP) precise = 0, err = copy_part(from, to, (size_t)data, stop);
    if (err) return err;
    off = stop;
  }
  return 0;
}

/* Would a file of `size` bytes pass the program's RLIMIT_FSIZE (lowered
 * since the arena was sized under it)? ftruncate past it sends SIGXFSZ,
 * which kills the process: the caller must not try. */
static int past_fsize(size_t size) {
  struct rlimit r;
  return !getrlimit(RLIMIT_FSIZE, &r) && r.rlim_cur != RLIM_INFINITY && size > (size_t)r.rlim_cur;
}

/* A new empty backing file of the arena's size, for a duplicating child. */
int exm_os_new_like(const char *dir, size_t cap, int *newfd) {
  if (past_fsize(cap)) return EFBIG;
  int nfd, err = exm_os_tmpfile(dir, &nfd);
  if (err) return err;
  if (ftruncate(nfd, (off_t)cap)) {
    err = errno;
    close(nfd);
    return err;
  }
  *newfd = nfd;
  return 0;
}

/* Copy [off, off+len) of the arena into the same place of `to`: from the
 * arena's file `from` in the kernel, skipping holes, or (from < 0: the
 * program closed it; or across filesystems) by writing what the mapping at
 * base reads. With `reserve`, the range's disk is reserved in `to` first, so
 * that a child using the copy cannot SIGBUS on a full disk either; a reflink
 * would share blocks and break that promise. */
int exm_os_copy_range(int from, const char *base, int to, size_t off, size_t len, int reserve) {
  int err = reserve ? exm_os_reserve(to, off, len) : 0;
  if (err) return err;
  if (from >= 0) {
    err = copy_data(from, to, off, off + len);
    if (err != EXDEV && err != EINVAL && err != EOPNOTSUPP && err != ENOSYS && err != EBADF) return err;
  }
  for (size_t done = 0; done < len;) {
    size_t n = len - done < ((size_t)1 << 30) ? len - done : ((size_t)1 << 30);
    ssize_t w = pwrite(to, base + off + done, n, (off_t)(off + done));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return w < 0 ? errno : EIO;
    done += (size_t)w;
  }
  return 0;
}

/* An anonymous file of cap bytes (nothing allocated yet): where a forked
 * child's copy of the small-chunk segments goes when the data directory
 * cannot take it. */
int exm_os_memfd(size_t cap, int *fdp) {
  if (past_fsize(cap)) return EFBIG;
  int fd = memfd_create("exm-fork-copy", MFD_CLOEXEC);
  if (fd < 0) return errno;
  if (ftruncate(fd, (off_t)cap)) {
    int err = errno;
    close(fd);
    return err;
  }
  if ((fd = move_high(fd)) < 0) return errno;
  *fdp = fd;
  return 0;
}

/* Map [off, off+len) of fd (a child's copy) over the same offsets of the
 * arena at base, private: nobody else writes the copy, and the child's own
 * children must get it copy-on-write, not shared. */
int exm_os_map_copy(char *base, int fd, size_t off, size_t len) {
  void *p = mmap(base + off, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE, fd, (off_t)off);
  return p == MAP_FAILED ? errno : 0;
}

int exm_os_move(void *from, size_t len, void *dst) {
  return mremap(from, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, dst) == MAP_FAILED ? errno : 0;
}

/* Replace the mapping of [p, p+len) by private anonymous memory holding a
 * copy of what it reads now: a snapshot no other process can change. */
int exm_os_snapshot(void *p, size_t len) {
  void *tmp = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (tmp == MAP_FAILED) return errno;
  memcpy(tmp, p, len);
  int err = exm_os_move(tmp, len, p);
  if (err) munmap(tmp, len);
  return err;
}

int exm_os_pipe(int fds[2]) { return pipe2(fds, O_CLOEXEC) ? errno : 0; }

/* Block until the other end writes a byte (returned) or is closed (0). */
char exm_os_wait_pipe(int fd) {
  char b = 0;
  ssize_t n;
  while ((n = read(fd, &b, 1)) < 0 && errno == EINTR) {}
  return n == 1 ? b : 0;
}

int exm_os_write_all(int fd, const char *buf, size_t len) {
  while (len) {
    ssize_t n = write(fd, buf, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n < 0 ? errno : EIO;
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

uint64_t exm_os_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int exm_os_close(int fd) { return close(fd) ? errno : 0; }

int exm_os_disk_space(const char *dir, uint64_t *free_bytes, int *full) {
  struct statvfs vfs;
  if (statvfs(dir, &vfs)) return errno;
  *free_bytes = (uint64_t)vfs.f_bavail * vfs.f_frsize;
  *full = vfs.f_bavail == 0 && vfs.f_blocks;
  return 0;
}

int exm_os_read_file(const char *path, char *buf, size_t len, size_t *got) {
  *got = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  ssize_t n = read(fd, buf, len);
  int err = n < 0 ? errno : 0;
  close(fd);
  if (n > 0) *got = (size_t)n;
  return err;
}

static const char *hex(const char *p, const char *end, uintptr_t *v) {
  *v = 0;
  for (; p < end; p++) {
    int d = *p >= '0' && *p <= '9' ? *p - '0' : *p >= 'a' && *p <= 'f' ? *p - 'a' + 10 : -1;
    if (d < 0) break;
    *v = *v << 4 | (uintptr_t)d;
  }
  return p;
}

/* mlock [lo, hi) but what the ranges of `skip` cover, from its i-th on. */
static int lock_range(uintptr_t lo, uintptr_t hi, int onfault, int (*skip)(int, uintptr_t *, uintptr_t *), int i) {
  uintptr_t a, b;
  for (; skip(i, &a, &b); i++) {
    if (b <= lo || a >= hi) continue;
    int e1 = a > lo ? lock_range(lo, a, onfault, skip, i + 1) : 0;
    int e2 = b < hi ? lock_range(b, hi, onfault, skip, i + 1) : 0;
    return e1 ? e1 : e2;
  }
  long r = onfault ? syscall(SYS_mlock2, (void *)lo, hi - lo, 1 /* MLOCK_ONFAULT */) : mlock((void *)lo, hi - lo);
  return r ? errno : 0;
}

/* One line of /proc/self/maps ("lo-hi perms ..."): a mapping with no access
 * (a guard: mlock fails on it) and [vsyscall] (above the user half) are left. */
static int lock_line(const char *line, const char *end, int onfault, int (*skip)(int, uintptr_t *, uintptr_t *)) {
  uintptr_t lo, hi;
  const char *dash = hex(line, end, &lo);
  if (dash == line || dash >= end || *dash != '-') return 0;
  const char *space = hex(dash + 1, end, &hi);
  if (space + 4 > end || *space != ' ' || hi <= lo) return 0;
  if (!memcmp(space + 1, "---", 3) || (intptr_t)lo < 0) return 0;
  return lock_range(lo, hi, onfault, skip, 0);
}

int exm_os_lock_mappings(int onfault, int (*skip)(int i, uintptr_t *lo, uintptr_t *hi)) {
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  char buf[4096];
  size_t have = 0;
  int err = 0;
  for (;;) {
    ssize_t n = read(fd, buf + have, sizeof buf - have);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    have += (size_t)n;
    char *line = buf, *nl;
    while ((nl = memchr(line, '\n', (size_t)(buf + have - line)))) {
      int e = lock_line(line, nl, onfault, skip);
      if (e && !err) err = e;   /* the first failure is the answer; the rest are still locked */
      line = nl + 1;
    }
    have = (size_t)(buf + have - line);
    memmove(buf, line, have);
    if (have == sizeof buf) have = 0;   /* a line longer than the buffer: its path only */
  }
  close(fd);
  return err;
}

int exm_os_write_file(const char *path, const char *buf, size_t len) {
  struct stat st;
  if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
    /* a pipe with no reader is an error, not a hang */
    int fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return errno;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    int err = exm_os_write_all(fd, buf, len);
    close(fd);
    return err;
  }
  char tmp[EXM_PATH_MAX + 64];
  size_t n = strlen(path);
  if (n + 48 > sizeof tmp) return ENAMETOOLONG;
  int fd = -1, err = EEXIST;
  for (int attempt = 0; attempt < 20 && err == EEXIST; attempt++) {
    exm_line_t suffix = { .n = 0 };
    exm_line_str(&suffix, ".tmp.");
    exm_line_u64(&suffix, (uint64_t)getpid());
    exm_line_str(&suffix, ".");
    exm_line_u64(&suffix, exm_os_now_ns() % 1000000007u);
    memcpy(tmp, path, n);
    memcpy(tmp + n, suffix.buf, suffix.n);
    tmp[n + suffix.n] = 0;
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    err = fd < 0 ? errno : 0;
  }
  if (fd < 0) return err;
  err = exm_os_write_all(fd, buf, len);
  if (close(fd) && !err) err = errno;
  if (!err && rename(tmp, path)) err = errno;
  if (err) unlink(tmp);
  return err;
}

int exm_os_rusage(struct rusage *ru) {
  if (!getrusage(RUSAGE_SELF, ru)) return 0;
  int err = errno;
  memset(ru, 0, sizeof *ru);
  return err;
}

void exm_os_exit(int status) {
  for (;;) syscall(SYS_exit_group, status);
}

int exm_os_mincore(void *p, size_t len, unsigned char *vec) { return mincore(p, len, vec) ? errno : 0; }

void exm_os_sleep_ns(uint64_t ns) {
  struct timespec ts = { (time_t)(ns / 1000000000u), (long)(ns % 1000000000u) };
  while (nanosleep(&ts, &ts) && errno == EINTR) {}
}

size_t exm_os_page_size(void) { return (size_t)sysconf(_SC_PAGESIZE); }

int exm_os_as_limit(uint64_t *limit) {
  struct rlimit as;
  if (getrlimit(RLIMIT_AS, &as)) return errno;
  *limit = as.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)as.rlim_cur;
  return 0;
}

int exm_os_thread(void *(*fn)(void *), const char *name, size_t stack, sigset_t *mask) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  if (stack) pthread_attr_setstacksize(&attr, stack);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);   /* the thread inherits: every signal blocked */
  if (mask) *mask = old;
  pthread_t th;
  int err = pthread_create(&th, &attr, fn, NULL);
  if (!err) pthread_setname_np(th, name);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&attr);
  return err;
}

int exm_os_sigmask(const sigset_t *mask) { return pthread_sigmask(SIG_SETMASK, mask, NULL); }

uint64_t exm_os_random64(void) {
  uint64_t r;
#ifdef SYS_getrandom
  if (syscall(SYS_getrandom, &r, sizeof r, 1 /* GRND_NONBLOCK */) == (long)sizeof r) return r;
#endif
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ssize_t got = read(fd, &r, sizeof r);
    close(fd);
    if (got == (ssize_t)sizeof r) return r;
  }
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 40);
}
