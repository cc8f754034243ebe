/*
 * stats.c: the statistics a process reports at exit.
 *
 * Two ways in:
 * - Under `exm --stats` / `--stats-file`, the launcher stays the program's
 *   parent and names a private directory in EXM_STATS_DIR. Every process of
 *   the tree that used the arena (allocated from it, failed, or fell back to
 *   RAM) leaves one JSON record there at exit: `<pid>-<n>.json`, written to
 *   a temporary name and renamed, so the launcher never reads half of one.
 *   The launcher adds them up with what the kernel knows of the whole tree
 *   (wait status, rusage of its children) and reports. Writing a file needs
 *   no stderr, so programs that close fd 2 before exit (gnulib's
 *   close_stdout: sort, ls, env) are counted too.
 * - By hand (LD_PRELOAD, -lexm) with EXM_STATS: "1" prints one summary on
 *   stderr, a path gets the same JSON record. Only the process the variable
 *   was given to reports, also after it execs another program (Rscript
 *   execs R: same pid): the first library to see EXM_STATS records its pid
 *   in EXM_STATS_PID, and a library in any other process stays quiet.
 *
 * Reported from atexit and at_quick_exit (Bun ends scripts with quick_exit),
 * and from _exit and _Exit, which this library defines (a program's calls
 * reach them first): dash, Python's os._exit and R's forked workers leave
 * that way. Not in a vfork child, which shares its parent's memory (it would
 * report the parent's numbers and mark the parent as reported): only a
 * process whose pid is the one recorded at start-up or by the fork handler
 * reports from _exit. glibc's own calls of _exit (posix_spawn, system) bind
 * inside libc and never come here.
 * No signal handler is installed: a program's signal dispositions are its
 * own (Python's KeyboardInterrupt relies on finding SIGINT at its default),
 * so a process killed by a signal leaves no record; the launcher still
 * reports the tree, with the signal. The numbers are read without the arena
 * lock: exit may be called from a signal handler that interrupted a thread
 * holding it, and counters read a moment early are better than a deadlock.
 * (So chunks still in the exiting thread's small-object cache count as live.)
 *
 * The record's names follow the Bun API's stats() (camelCase).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "advisor.h"
#include "arena.h"
#include "internal.h"
#include "msg.h"
#include "options.h"
#include "os.h"
#include "trace.h"

static int reported;
static pid_t owner_pid;   /* by hand: the one process that reports (not its forked children) */
static pid_t self_pid;    /* this process as of start-up or its fork: a vfork child is not it */
static int hooked;        /* atexit registered: _exit reports too */
/* EXM_STATS_DIR: the launcher's private directory for per-process records. */
static char run_dir[EXM_PATH_MAX];

/* ---- a JSON builder on a fixed buffer (no malloc, no stdio) ------------------ */

typedef struct jbuf {
  char b[8192];
  size_t n;
} jbuf_t;

static void j_raw(jbuf_t *j, const char *s) {
  while (*s && j->n < sizeof j->b - 8) j->b[j->n++] = *s++;
}

static void j_u64(jbuf_t *j, uint64_t v) {
  char d[24];
  int n = 0;
  do d[n++] = (char)('0' + v % 10), v /= 10; while (v);
  while (n && j->n < sizeof j->b - 8) j->b[j->n++] = d[--n];
}

/* A JSON string of at most `max` bytes of s (escaped; invalid UTF-8 is the
 * reader's to replace). */
static void j_str(jbuf_t *j, const char *s, size_t len) {
  j_raw(j, "\"");
  for (size_t i = 0; i < len && j->n < sizeof j->b - 16; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      j->b[j->n++] = '\\';
      j->b[j->n++] = (char)c;
    } else if (c < 0x20 || c == 0x7f) {
      char esc[7] = { '\\', 'u', '0', '0', "0123456789abcdef"[c >> 4], "0123456789abcdef"[c & 15], 0 };
      j_raw(j, esc);
    } else {
      j->b[j->n++] = (char)c;
    }
  }
  j_raw(j, "\"");
}

static void j_field(jbuf_t *j, const char *name, uint64_t v) {
  j_raw(j, ",\n  \"");
  j_raw(j, name);
  j_raw(j, "\": ");
  j_u64(j, v);
}

/* "command": the process's argv from /proc/self/cmdline (what ps shows). */
static void j_command(jbuf_t *j) {
  static char cmd[4096];
  size_t got;
  exm_os_read_file("/proc/self/cmdline", cmd, sizeof cmd, &got);
  ssize_t n = (ssize_t)got;
  j_raw(j, ",\n  \"command\": [");
  for (ssize_t i = 0, first = 1; i < n; first = 0) {
    size_t len = strnlen(cmd + i, (size_t)(n - i));
    if (!first) j_raw(j, ", ");
    j_str(j, cmd + i, len);
    i += (ssize_t)len + 1;
  }
  j_raw(j, "]");
}

static uint64_t tv_ns(struct timeval tv) { return (uint64_t)tv.tv_sec * 1000000000u + (uint64_t)tv.tv_usec * 1000u; }

static void build_record(jbuf_t *j, const exm_stats_t *s, const struct rusage *ru) {
  j_raw(j, "{\n  \"pid\": ");
  j_u64(j, (uint64_t)getpid());
  j_field(j, "ppid", (uint64_t)getppid());
  j_command(j);
  j_field(j, "threshold", exm_cfg.threshold);
#define STAT_FIELD(field, json) j_field(j, #json, s->field);
  EXM_STATS_FIELDS(STAT_FIELD)
#undef STAT_FIELD
  /* The kernel's account of this process alone (its children have their
   * own records): faults, and file-system blocks read and dirtied, in
   * 512-byte units. */
  j_field(j, "majorFaults", (uint64_t)ru->ru_majflt);
  j_field(j, "minorFaults", (uint64_t)ru->ru_minflt);
  j_field(j, "readBytes", (uint64_t)ru->ru_inblock * 512);
  j_field(j, "writtenBytes", (uint64_t)ru->ru_oublock * 512);
  j_field(j, "maxResident", (uint64_t)ru->ru_maxrss * 1024);
  j_field(j, "cpuNs", tv_ns(ru->ru_utime) + tv_ns(ru->ru_stime));
  /* EXM_ADVICE=auto: the advisor's work, and the time the process was held
   * up by random faults on blocks it gave random advice (advisor.c). */
  exm_advisor_stats_t a;
  exm_advisor_report(&a);
  j_field(j, "advisorLooks", a.looks);
  j_field(j, "advisorPagesLooked", a.pages_looked);
  j_field(j, "advisorLookNs", a.look_ns);
  j_field(j, "randomFaultNs", a.random_ns);
  j_field(j, "randomFaults", a.random_faults);
  j_field(j, "randomReadBytes", a.random_read);
  j_raw(j, "\n}\n");
}

/* Write `buf` to `path`. A regular file (or a new one) is replaced
 * atomically: a temporary name of ours (O_EXCL, so nobody can plant it) is
 * renamed into place. Anything else (a terminal, /dev/stderr, a pipe) is
 * written in place, never replaced; a pipe with no reader is an error, not
 * a hang. `quiet_enoent`: the launcher's directory is gone (a process that
 * outlived the run): nothing to say. */
static void write_file(const char *path, const char *buf, size_t len, int quiet_enoent) {
  int err = exm_os_write_file(path, buf, len);
  if (err && !(quiet_enoent && err == ENOENT)) exm_warn("cannot write statistics to ", path, err);
}

static void print_summary(const exm_stats_t *s, const struct rusage *ru) {
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
  exm_line_str(&l, " ms in the allocator; ");
  if (s->ram_budget_bytes) {
    exm_line_size(&l, s->ram_budget_bytes);
    exm_line_str(&l, " served from RAM by --threshold auto; ");
  }
  exm_line_u64(&l, (uint64_t)ru->ru_majflt);
  exm_line_str(&l, ru->ru_majflt == 1 ? " major fault, " : " major faults, ");
  exm_line_size(&l, (uint64_t)ru->ru_inblock * 512);
  exm_line_str(&l, " read from disk, ");
  exm_line_size(&l, (uint64_t)ru->ru_oublock * 512);
  exm_line_str(&l, " written");
  exm_advisor_stats_t a;
  exm_advisor_report(&a);
  if (a.random_ns >= 1000000000u) {
    /* why it was slow: random reads of file-backed memory (advisor.c) */
    exm_line_str(&l, "; held up by random reads from disk for ");
    exm_line_u64(&l, a.random_ns / 1000000000u);
    exm_line_str(&l, " s (");
    exm_line_u64(&l, a.random_faults * 1000000000u / a.random_ns);
    exm_line_str(&l, " major faults/s, ");
    exm_line_size(&l, a.random_read * 1000000000u / a.random_ns);
    exm_line_str(&l, "/s read back)");
  }
  exm_line_emit(&l);
}

static void report(void) {
  if (!exm_cfg.stats[0] && !run_dir[0]) return;
  if (!run_dir[0] && getpid() != owner_pid) return;
  if (__atomic_exchange_n(&reported, 1, __ATOMIC_ACQ_REL)) return;
  exm_stats_t s;
  exm_arena_stats(&s, 1);   /* no lock: see the top of the file */
  struct rusage ru;
  exm_os_rusage(&ru);
  if (run_dir[0]) {
    if (!s.total_allocs && !s.failures && !s.fallbacks && !s.ram_budget_bytes) return;   /* nothing of exm's to tell */
    static jbuf_t j;
    build_record(&j, &s, &ru);
    char path[EXM_PATH_MAX + 64];
    exm_line_t name = { .n = 0 };
    exm_line_str(&name, "/");
    exm_line_u64(&name, (uint64_t)getpid());
    exm_line_str(&name, "-");
    exm_line_u64(&name, exm_os_now_ns());
    exm_line_str(&name, ".json");
    size_t n = strlen(run_dir);
    memcpy(path, run_dir, n);
    memcpy(path + n, name.buf, name.n);
    path[n + name.n] = 0;
    write_file(path, j.b, j.n, 1);
  } else if (!strcmp(exm_cfg.stats, "1")) {
    print_summary(&s, &ru);
  } else {
    static jbuf_t j;
    build_record(&j, &s, &ru);
    write_file(exm_cfg.stats, j.b, j.n, 0);
  }
}

static void after_fork_child(void) { self_pid = getpid(); }

/* _exit and _Exit: report, then leave as glibc's _exit does. */
__attribute__((noreturn)) static void leave(int status) {
  if (hooked && getpid() == __atomic_load_n(&self_pid, __ATOMIC_RELAXED)) report();
  exm_os_exit(status);
}
EXM_API void _exit(int status) { leave(status); }
EXM_API void _Exit(int status) { leave(status); }

void exm_stats_setup(void) {
  exm_warned_publish();   /* not stats, but this is the constructor's one hook here */
  self_pid = getpid();
  const char *dir = getenv("EXM_STATS_DIR");
  if (dir && dir[0] == '/' && strlen(dir) < sizeof run_dir - 64) {
    memcpy(run_dir, dir, strlen(dir) + 1);
  } else {
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
    owner_pid = getpid();
  }
  atexit(report);
  at_quick_exit(report);   /* Bun ends scripts with quick_exit */
  pthread_atfork(NULL, NULL, after_fork_child);
  hooked = 1;
}
