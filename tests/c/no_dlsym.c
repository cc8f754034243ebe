/*
 * no_dlsym.c: a preloadable library whose dlsym finds nothing, for checking
 * that libexm never depends on a lookup for correctness (realloc once copied
 * 0 bytes when dlsym could not find glibc's malloc_usable_size). Built with
 * -shared and preloaded before libexm.
 */
#define _GNU_SOURCE
#include <stddef.h>

void *dlsym(void *handle, const char *name) {
  (void)handle;
  (void)name;
  return NULL;
}
