/*
 * os.c: the only file that talks to the kernel. Every function returns 0 or
 * an errno value (or NULL), and none allocates: they run inside malloc.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core.h"
#include "exm.h"
#include "msg.h"
#include "options.h"
#include "os.h"

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

/* Size the file as large as the filesystem and address space allow and map
 * it once: one VMA, ownership is a range check, and the arena never moves.
 * The file is sparse; disk is reserved block by block (exm_os_reserve). */
void *exm_os_map_file(int fd, size_t *cap) {
  size_t limit = (size_t)8 << 40;
  struct rlimit fsize;   /* ulimit -f: a larger file would kill us with SIGXFSZ */
  if (!getrlimit(RLIMIT_FSIZE, &fsize) && fsize.rlim_cur != RLIM_INFINITY && fsize.rlim_cur < limit)
    limit = (size_t)fsize.rlim_cur & ~(EXM_PAGE - 1);
  /* Under an address-space limit (ulimit -v) the arena takes at most half
   * of it: what it cannot serve goes to glibc, which needs room there too. */
  struct rlimit as;
  if (!getrlimit(RLIMIT_AS, &as) && as.rlim_cur != RLIM_INFINITY && as.rlim_cur / 2 < limit)
    limit = (size_t)(as.rlim_cur / 2) & ~(EXM_PAGE - 1);
  for (size_t size = (size_t)8 << 40; size >= ((size_t)64 << 20); size >>= 1) {
    if (size > limit) continue;
    if (ftruncate(fd, (off_t)size)) continue;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (p == MAP_FAILED) continue;
    madvise(p, size, MADV_DONTDUMP);   /* a core dump of terabytes of file helps nobody */
    return *cap = size, p;
  }
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
  return p == MAP_FAILED ? errno : 0;
}

int exm_os_reserve(int fd, size_t off, size_t len) {
  while (fallocate(fd, 0, (off_t)off, (off_t)len))
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

/* Drop private (copy-on-write) pages of a range: it reads the file again. */
int exm_os_drop_private(void *p, size_t len) { return madvise(p, len, MADV_DONTNEED) ? errno : 0; }

int exm_os_madvise(void *p, size_t len, int advice) {
  static const int adv[] = { MADV_NORMAL, MADV_NORMAL, MADV_SEQUENTIAL, MADV_RANDOM };
  if (advice < 0 || advice > 3) return EINVAL;
  return madvise(p, len, adv[advice]) ? errno : 0;
}

void *exm_os_anon(size_t len) {
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

/* Copy [off, off+len) of one file into the same place of another, in the
 * kernel, skipping holes. */
static int copy_data(int from, int to, size_t off, size_t end) {
  while (off < end) {
    off_t data = lseek(from, (off_t)off, SEEK_DATA);
    if (data < 0) return errno == ENXIO ? 0 : errno;
    if ((size_t)data >= end) return 0;
    off_t hole = lseek(from, data, SEEK_HOLE);
    if (hole < 0) return errno;
    size_t stop = (size_t)hole < end ? (size_t)hole : end;
    off_t in = data, out = data;
    while ((size_t)in < stop) {
      ssize_t n = copy_file_range(from, &in, to, &out, stop - (size_t)in, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return n < 0 ? errno : EIO;
    }
    off = stop;
  }
  return 0;
}

/* A new empty backing file of the arena's size, for a duplicating child. */
int exm_os_new_like(const char *dir, size_t cap, int *newfd) {
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

/* Replace the mapping of [p, p+len) by private anonymous memory holding a
 * copy of what it reads now: a snapshot no other process can change. */
int exm_os_snapshot(void *p, size_t len) {
  void *tmp = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (tmp == MAP_FAILED) return errno;
  memcpy(tmp, p, len);
  if (mremap(tmp, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, p) == MAP_FAILED) {
    int err = errno;
    munmap(tmp, len);
    return err;
  }
  return 0;
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
