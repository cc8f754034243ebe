/*
 * stress_planted.c: the library an attacker plants where exm might look for
 * its own (security.test.ts). Built as a shared object with -DMARKER="path":
 * if any process ever loads it, its constructor creates MARKER, which the
 * test then finds.
 */
#include <fcntl.h>
#include <unistd.h>

#ifndef MARKER
#error "build with -DMARKER=\"/path/to/marker\""
#endif

__attribute__((constructor)) static void planted(void) {
  int fd = open(MARKER, O_WRONLY | O_CREAT | O_APPEND, 0666);
  if (fd >= 0) {
    (void)write(fd, "planted library loaded\n", 23);
    close(fd);
  }
}
