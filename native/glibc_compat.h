/*
 * glibc_compat.h: makes libexm.so load on glibc 2.17 and later, on x86-64
 * and arm64, whatever glibc builds it. build.ts force-includes it (-include)
 * ahead of every C file of native/, so no source file names it; build.ts then
 * fails the build if the linked library still needs a symbol version newer
 * than GLIBC_2.17 (checkGlibcFloor), naming the symbol: add it here.
 *
 * A glibc binds each call to the newest version of its symbol. Three kinds
 * of fix, by what glibc 2.17 has:
 * - the same function under an older version (glibc 2.34 merged libpthread
 *   and libdl into libc and gave their functions new versions, keeping the
 *   old ones): `.symver` pins the reference to the old version. On glibc
 *   2.17-2.33 those live in libpthread.so.0 and libdl.so.2, which build.ts
 *   therefore links by name (they are stubs on 2.34 and later);
 * - no symbol at all before 2.33 (`stat` and `fstat` were inline wrappers
 *   around __xstat) or a wrapper newer than the system call
 *   (copy_file_range, 2.27): the raw system call, which has the same
 *   structure layout as glibc's on both architectures;
 * - strerrordesc_np (2.32) has no older twin: the same untranslated,
 *   static strings come from sys_errlist, which every glibc still carries
 *   as a compat symbol (no malloc, no locale: safe inside the allocator).
 * The x86-64 ABI's oldest version is GLIBC_2.2.5; arm64 starts at 2.17.
 */
#ifndef EXM_GLIBC_COMPAT_H
#define EXM_GLIBC_COMPAT_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* as the sources define it; must precede the first system header */
#endif

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define EXM_GLIBC_BASE "GLIBC_2.2.5"
#define EXM_GLIBC_SETNAME "GLIBC_2.12"
#define EXM_GLIBC_ERRLIST "GLIBC_2.12"   /* the list as of 2.12 (EHWPOISON), the last change before 2.17 */
#elif defined(__aarch64__)
#define EXM_GLIBC_BASE "GLIBC_2.17"
#define EXM_GLIBC_SETNAME "GLIBC_2.17"
#define EXM_GLIBC_ERRLIST "GLIBC_2.17"
#else
#error "exm's glibc floor is set for x86-64 and arm64 only: add this architecture's oldest versions"
#endif

/* Merged into libc by glibc 2.34, with new versions there. */
__asm__(".symver pthread_create, pthread_create@" EXM_GLIBC_BASE);
__asm__(".symver pthread_key_create, pthread_key_create@" EXM_GLIBC_BASE);
__asm__(".symver pthread_mutex_trylock, pthread_mutex_trylock@" EXM_GLIBC_BASE);
__asm__(".symver pthread_setspecific, pthread_setspecific@" EXM_GLIBC_BASE);
__asm__(".symver pthread_getspecific, pthread_getspecific@" EXM_GLIBC_BASE);
__asm__(".symver pthread_attr_setstacksize, pthread_attr_setstacksize@" EXM_GLIBC_BASE);
__asm__(".symver pthread_sigmask, pthread_sigmask@" EXM_GLIBC_BASE);
__asm__(".symver pthread_join, pthread_join@" EXM_GLIBC_BASE);
__asm__(".symver pthread_mutexattr_init, pthread_mutexattr_init@" EXM_GLIBC_BASE);
__asm__(".symver pthread_mutexattr_settype, pthread_mutexattr_settype@" EXM_GLIBC_BASE);
__asm__(".symver pthread_mutexattr_destroy, pthread_mutexattr_destroy@" EXM_GLIBC_BASE);
__asm__(".symver pthread_detach, pthread_detach@" EXM_GLIBC_BASE);
__asm__(".symver pthread_kill, pthread_kill@" EXM_GLIBC_BASE);
__asm__(".symver pthread_setname_np, pthread_setname_np@" EXM_GLIBC_SETNAME);
__asm__(".symver dlsym, dlsym@" EXM_GLIBC_BASE);
__asm__(".symver dlopen, dlopen@" EXM_GLIBC_BASE);
__asm__(".symver dladdr, dladdr@" EXM_GLIBC_BASE);

/* Function-like macros: `struct stat` and the declarations in <sys/stat.h>
 * (already included above) are left alone. */
static inline int exm_compat_stat(const char *path, struct stat *st) {
  return (int)syscall(SYS_newfstatat, AT_FDCWD, path, st, 0);
}
static inline int exm_compat_fstat(int fd, struct stat *st) {
  return (int)syscall(SYS_fstat, fd, st);
}
static inline int exm_compat_lstat(const char *path, struct stat *st) {
  return (int)syscall(SYS_newfstatat, AT_FDCWD, path, st, AT_SYMLINK_NOFOLLOW);
}
static inline int exm_compat_fstatat(int dirfd, const char *path, struct stat *st, int flags) {
  return (int)syscall(SYS_newfstatat, dirfd, path, st, flags);
}
#define stat(path, st) exm_compat_stat(path, st)
#define fstat(fd, st) exm_compat_fstat(fd, st)
#define lstat(path, st) exm_compat_lstat(path, st)
#define fstatat(dirfd, path, st, flags) exm_compat_fstatat(dirfd, path, st, flags)

/* Linux 4.5; ENOSYS on older kernels, which the caller reports like any error. */
static inline ssize_t exm_compat_copy_file_range(int in, off_t *in_off, int out, off_t *out_off, size_t len, unsigned flags) {
  return (ssize_t)syscall(SYS_copy_file_range, in, in_off, out, out_off, len, flags);
}
#define copy_file_range(in, in_off, out, out_off, len, flags) exm_compat_copy_file_range(in, in_off, out, out_off, len, flags)

/* glibc 2.27 (Linux 3.17); ENOSYS on older kernels: the caller falls back. */
static inline int exm_compat_memfd_create(const char *name, unsigned flags) {
  return (int)syscall(SYS_memfd_create, name, flags);
}
#define memfd_create(name, flags) exm_compat_memfd_create(name, flags)

extern const char *const exm_compat_sys_errlist[];
extern const int exm_compat_sys_nerr;
__asm__(".symver exm_compat_sys_errlist, sys_errlist@" EXM_GLIBC_ERRLIST);
__asm__(".symver exm_compat_sys_nerr, sys_nerr@" EXM_GLIBC_ERRLIST);
static inline const char *exm_compat_strerrordesc_np(int err) {
  return err >= 0 && err < exm_compat_sys_nerr ? exm_compat_sys_errlist[err] : NULL;
}
#define strerrordesc_np(err) exm_compat_strerrordesc_np(err)

#endif
