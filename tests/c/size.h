/*
 * size.h: the size argument of the C test programs and of the benchmark
 * programs (bench/c includes it too): a number (a fraction allowed) with an
 * optional K, M, G or T (powers of 1024, either case, "B" or "iB" may
 * follow): "4096", "64K", "512M", "1.5GiB". Anything else ends the program
 * with a one-line error. Header-only, and free of libexm: the benchmarks run
 * these programs without exm as well. (The library's and the launcher's own
 * grammar is native/options.c's, with src/settings.ts.)
 */
#ifndef EXM_TEST_SIZE_H
#define EXM_TEST_SIZE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static __attribute__((unused)) size_t parse_size(const char *s) {
  char *end;
  double v = strtod(s, &end);
  switch (*end) {
  case 'k': case 'K': v *= 1024.0, end++; break;
  case 'm': case 'M': v *= 1024.0 * 1024, end++; break;
  case 'g': case 'G': v *= 1024.0 * 1024 * 1024, end++; break;
  case 't': case 'T': v *= 1024.0 * 1024 * 1024 * 1024, end++; break;
  default: break;
  }
  if (end == s || (*end && strcmp(end, "B") && strcmp(end, "iB"))) {
    fprintf(stderr, "bad size %s (a number, with K, M, G or T)\n", s);
    exit(1);
  }
  return (size_t)v;
}

#endif
