/*
 * os.h: the kernel primitives (os.c). Each returns 0 or an errno value (or
 * NULL), and none allocates: they run inside malloc.
 */
#ifndef EXM_OS_H
#define EXM_OS_H

#include <stddef.h>
#include <stdint.h>

int exm_os_tmpfile(const char *dir, int *fd);
void *exm_os_map_file(int fd, size_t *cap);
int exm_os_remap(void *base, size_t cap, int fd, int private_copy);
int exm_os_file_id(int fd, uint64_t *dev, uint64_t *ino);
int exm_os_same_file(int fd, uint64_t dev, uint64_t ino);
int exm_os_reserve(int fd, size_t off, size_t len);
int exm_os_punch(int fd, size_t off, size_t len);
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
int exm_os_pipe(int fds[2]);
char exm_os_wait_pipe(int fd);
int exm_os_write_all(int fd, const char *buf, size_t len);
uint64_t exm_os_now_ns(void);

#endif
