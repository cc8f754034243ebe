/*
 * shim.c: the floor for a malloc interposer. Built as a shared library and
 * preloaded, it defines the malloc family and only forwards each call to
 * glibc's __libc_* entry points: what any interposer pays for the PLT hop
 * and the extra call, with no decision of its own. bench/alloc.ts counts
 * its instructions next to glibc's and exm's.
 *
 *   gcc -O2 -fPIC -shared -o shim.so shim.c
 */
#include <stddef.h>

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

#define API __attribute__((visibility("default")))

API void *malloc(size_t n) { return __libc_malloc(n); }
API void free(void *p) { __libc_free(p); }
API void *calloc(size_t c, size_t n) { return __libc_calloc(c, n); }
API void *realloc(void *p, size_t n) { return __libc_realloc(p, n); }
API void *memalign(size_t a, size_t n) { return __libc_memalign(a, n); }
