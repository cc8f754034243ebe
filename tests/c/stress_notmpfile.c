/*
 * stress_notmpfile.c: a preload that makes open(O_TMPFILE) fail with
 * EOPNOTSUPP, as on filesystems without it, so that libexm's fallback (a
 * 0600 file created exclusively, then unlinked at once) can be checked.
 * Preloaded BEFORE libexm (LD_PRELOAD=notmpfile.so:libexm.so): its open is
 * the one libexm's calls bind to. Everything else goes to the kernel as is.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/syscall.h>
#include <unistd.h>

static int pass(const char *path, int flags, va_list ap) {
  mode_t mode = (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
  if ((flags & O_TMPFILE) == O_TMPFILE) {
    errno = EOPNOTSUPP;
    return -1;
  }
  return (int)syscall(SYS_openat, AT_FDCWD, path, flags, mode);
}

int open(const char *path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  int fd = pass(path, flags, ap);
  va_end(ap);
  return fd;
}

/* The same function under its other name, as in glibc on 64-bit targets. */
int open64(const char *path, int flags, ...) __attribute__((alias("open")));
