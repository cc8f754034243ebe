/*
 * os.h: the kernel primitives (os.c). Each returns 0 or an errno value (or
 * NULL), and none allocates: they run inside malloc.
 */
#ifndef EXM_OS_H
#define EXM_OS_H

#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <sys/resource.h>

/* The backing file's mapping: at most 8 TiB, at least 64 MiB. */
#define EXM_ARENA_MAX ((size_t)8 << 40)
#define EXM_ARENA_MIN ((size_t)64 << 20)

int exm_os_tmpfile(const char *dir, int *fd);
/* NULL when no size from EXM_ARENA_MAX down to EXM_ARENA_MIN could be
 * mapped; then *limited is RLIMIT_FSIZE or RLIMIT_AS when that limit (its
 * value in *cap) is what left less than EXM_ARENA_MIN, else -1. */
void *exm_os_map_file(int fd, size_t *cap, int *limited);
int exm_os_remap(void *base, size_t cap, int fd, int private_copy);
int exm_os_file_id(int fd, uint64_t *dev, uint64_t *ino);
int exm_os_same_file(int fd, uint64_t dev, uint64_t ino);
int exm_os_reserve(int fd, size_t off, size_t len);
int exm_os_punch(int fd, size_t off, size_t len);
int exm_os_zero(int fd, size_t off, size_t len);
int exm_os_punch_mapped(void *p, size_t len);
/* Never locked in RAM (munlock), whatever the program's mlockall asked. */
void exm_os_unlock(void *p, size_t len);
/* mlock (mlock2 MLOCK_ONFAULT with onfault) every mapping of the process
 * that has some access, but the ranges skip(i, &lo, &hi) gives for i = 0, 1,
 * ... until it returns 0: 0 or the first error (the rest are locked all the
 * same). */
int exm_os_lock_mappings(int onfault, int (*skip)(int i, uintptr_t *lo, uintptr_t *hi));
int exm_os_drop_private(void *p, size_t len);
int exm_os_madvise(void *p, size_t len, int advice);
void *exm_os_anon(size_t len);
void exm_os_unmap(void *p, size_t len);
int exm_os_dir_usable(const char *dir);
int exm_os_new_like(const char *dir, size_t cap, int *newfd);
int exm_os_copy_range(int from, const char *base, int to, size_t off, size_t len, int reserve);
int exm_os_memfd(size_t cap, int *fd);
int exm_os_map_copy(char *base, int fd, size_t off, size_t len);
int exm_os_snapshot(void *p, size_t len);
/* Move the pages of [from, from+len) (private anonymous memory) to dst,
 * replacing what was mapped there (mremap). */
int exm_os_move(void *from, size_t len, void *dst);
int exm_os_pipe(int fds[2]);
char exm_os_wait_pipe(int fd);
int exm_os_write_all(int fd, const char *buf, size_t len);
uint64_t exm_os_now_ns(void);
int exm_os_close(int fd);
/* Free space of the filesystem holding dir: bytes a user may take, and
 * whether it is full (no block left, on a filesystem that counts blocks). */
int exm_os_disk_space(const char *dir, uint64_t *free_bytes, int *full);
/* Up to len bytes of a file (from its start) into buf; *got says how many. */
int exm_os_read_file(const char *path, char *buf, size_t len, size_t *got);
/* Write buf as the whole content of path: in place when path exists and is
 * not a regular file (a pipe, a terminal), else through a fresh temporary
 * file next to it renamed over it, so no reader sees half of it. */
int exm_os_write_file(const char *path, const char *buf, size_t len);
/* The process's resource usage (zeros when the kernel will not tell). */
int exm_os_rusage(struct rusage *ru);
/* Residency of the pages of [p, p+len): one byte each into vec (mincore). */
int exm_os_mincore(void *p, size_t len, unsigned char *vec);
/* Sleep ns nanoseconds, through signals. */
void exm_os_sleep_ns(uint64_t ns);
/* The page size (sysconf). */
size_t exm_os_page_size(void);
/* The address-space limit (RLIMIT_AS) in *limit; UINT64_MAX when none. */
int exm_os_as_limit(uint64_t *limit);
/* Start a detached thread named name running fn(NULL), with every signal
 * blocked (it inherits the mask), on a stack of `stack` bytes (0: the
 * default). *mask (when not NULL): the caller's signal mask, unchanged. */
int exm_os_thread(void *(*fn)(void *), const char *name, size_t stack, sigset_t *mask);
/* Set the calling thread's signal mask. */
int exm_os_sigmask(const sigset_t *mask);
/* 64 random bits: getrandom, else /dev/urandom (kernels before 3.17), else
 * the clock and the process id. Not AT_RANDOM: glibc's stack and pointer
 * guards are made of those bytes, and this value is stored in the heap. */
uint64_t exm_os_random64(void);
/* Leave at once, as glibc's _exit does. */
void exm_os_exit(int status) __attribute__((noreturn));

#endif
