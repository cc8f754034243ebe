/*
 * stats.c: EXM_STATS. "1" prints one summary on stderr when the process
 * exits; a path gets the statistics as JSON, written to a temporary file
 * and renamed into place. exit and quick_exit (Bun ends scripts with it)
 * are covered, and so are SIGTERM, SIGINT, SIGHUP and SIGQUIT when the
 * program leaves them at their default: the handler reports, restores the
 * default and raises the signal again.
 *
 * Only the process the variable was given to reports, also after it execs
 * another program (a wrapper such as Rscript execs R: same pid): the first
 * library to see EXM_STATS records its pid in EXM_STATS_PID, and a library
 * in any other process (children, forked or exec'd) stays quiet.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static int reported;

static void json_field(exm_line_t *l, const char *name, uint64_t v, int last) {
  exm_line_str(l, "  \"");
  exm_line_str(l, name);
  exm_line_str(l, "\": ");
  exm_line_u64(l, v);
  exm_line_str(l, last ? "\n" : ",\n");
}

static void write_file(const char *path, const char *buf, size_t len);

static void write_json(const exm_stats_t *s) {
  exm_line_t l = { .n = 0 };
  exm_line_str(&l, "{\n");
  json_field(&l, "pid", (uint64_t)getpid(), 0);
  json_field(&l, "threshold", exm_cfg.threshold, 0);
  json_field(&l, "live_bytes", s->live_bytes, 0);
  json_field(&l, "peak_live_bytes", s->peak_live_bytes, 0);
  json_field(&l, "live_blocks", s->live_blocks, 0);
  json_field(&l, "total_allocs", s->total_allocs, 0);
  json_field(&l, "total_frees", s->total_frees, 0);
  json_field(&l, "disk_reserved", s->disk_reserved, 0);
  json_field(&l, "peak_disk_reserved", s->peak_disk_reserved, 0);
  json_field(&l, "bytes_punched", s->bytes_punched, 0);
  json_field(&l, "arena_size", s->arena_size, 0);
  json_field(&l, "fallbacks", s->fallbacks, 0);
  json_field(&l, "failures", s->failures, 0);
  json_field(&l, "forks", s->forks, 0);
  json_field(&l, "alloc_ns", s->alloc_ns, 1);
  exm_line_str(&l, "}\n");
  write_file(exm_cfg.stats, l.buf, l.n);
}

/* Write the statistics to `path`. A regular file (or a new one) is replaced
 * atomically: a temporary name of ours (O_EXCL, so nobody can plant it) is
 * renamed into place. Anything else (a terminal, /dev/stderr, a pipe) is
 * written in place, never replaced; a pipe with no reader is an error, not
 * a hang. */
static void write_file(const char *path, const char *buf, size_t len) {
  struct stat st;
  if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
    int fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    int err = fd < 0 ? errno : 0;
    if (fd >= 0) {
      fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
      err = exm_os_write_all(fd, buf, len);
      close(fd);
    }
    if (err) exm_warn("cannot write statistics to ", path, err);
    return;
  }
  char tmp[EXM_PATH_MAX + 64];
  size_t n = strlen(path);
  if (n + 48 > sizeof tmp) return exm_warn("cannot write statistics to ", path, ENAMETOOLONG);
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
  if (fd < 0) return exm_warn("cannot write statistics to ", path, err);
  err = exm_os_write_all(fd, buf, len);
  if (close(fd) && !err) err = errno;
  if (!err && rename(tmp, path)) err = errno;
  if (err) {
    unlink(tmp);
    exm_warn("cannot write statistics to ", path, err);
  }
}

static void print_summary(const exm_stats_t *s) {
  exm_line_t l = { .n = 0 };
  exm_line_str(&l, "exm: pid ");
  exm_line_u64(&l, (uint64_t)getpid());
  exm_line_str(&l, ": peak ");
  exm_line_size(&l, s->peak_live_bytes);
  exm_line_str(&l, " file-backed in ");
  exm_line_u64(&l, s->total_allocs);
  exm_line_str(&l, s->total_allocs == 1 ? " block" : " blocks");
  exm_line_str(&l, ", disk reserved peak ");
  exm_line_size(&l, s->peak_disk_reserved);
  exm_line_str(&l, ", given back ");
  exm_line_size(&l, s->bytes_punched);
  exm_line_str(&l, ", still live ");
  exm_line_size(&l, s->live_bytes);
  exm_line_str(&l, ", ");
  exm_line_u64(&l, s->failures);
  exm_line_str(&l, " failed, ");
  exm_line_u64(&l, s->fallbacks);
  exm_line_str(&l, " fallbacks, ");
  exm_line_u64(&l, s->alloc_ns / 1000000);
  exm_line_str(&l, " ms in the allocator");
  exm_line_emit(&l);
}

static void report_now(int in_signal) {
  if (!exm_cfg.stats[0] || __atomic_exchange_n(&reported, 1, __ATOMIC_ACQ_REL)) return;
  exm_stats_t s;
  exm_arena_stats(&s, in_signal);
  if (!strcmp(exm_cfg.stats, "1")) print_summary(&s);
  else write_json(&s);
}

static void report(void) { report_now(0); }

static void on_signal(int sig) {
  report_now(1);
  signal(sig, SIG_DFL);
  raise(sig);
}

void exm_stats_setup(void) {
  if (!exm_cfg.stats[0]) return;
  exm_line_t pid = { .n = 0 };
  exm_line_u64(&pid, (uint64_t)getpid());
  pid.buf[pid.n] = 0;
  const char *owner = getenv("EXM_STATS_PID");
  if (!owner) {
    setenv("EXM_STATS_PID", pid.buf, 1);   /* constructor time: malloc is ready */
  } else if (strcmp(owner, pid.buf)) {
    exm_cfg.stats[0] = 0;
    return;
  }
  atexit(report);
  at_quick_exit(report);   /* Bun ends scripts with quick_exit */
  static const int sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT };
  for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) {
    struct sigaction old;
    if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_DFL) {
      struct sigaction sa;
      memset(&sa, 0, sizeof sa);
      sa.sa_handler = on_signal;
      sa.sa_flags = SA_RESETHAND;
      sigaction(sigs[i], &sa, NULL);
    }
  }
}
