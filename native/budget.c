/*
 * budget.c: --threshold auto (EXM_THRESHOLD=auto): requests at or above the
 * threshold (64 MiB) are served from RAM, by glibc, while the process has
 * ample room, and from the file-backed arena past it.
 *
 * The rule. At a look, the headroom is the smaller of MemAvailable
 * (/proc/meminfo) and, for the memory cgroup of the process and each of its
 * ancestors, limit minus usage (v2: memory.max - memory.current; v1:
 * memory.limit_in_bytes - memory.usage_in_bytes), the cgroup found through
 * /proc/self/cgroup. The allowance is half the headroom, minus what was
 * served from RAM since the previous look (the kernel counts a block only
 * once its pages are touched). A request that fits in what is left of the
 * allowance is served from RAM and taken from it; one that does not makes a
 * new look, at most one a second (counted on CLOCK_MONOTONIC, a vDSO call),
 * and goes to the file unless the new allowance takes it. So looks happen
 * only on requests at or above the threshold, the first one and those past
 * the allowance: never a system call per malloc.
 *
 * What it cannot do: a block served from RAM stays in RAM. Moving it to the
 * file later would mean stopping every thread of the program while its
 * pages are copied and remapped (or catching its faults with signal
 * handlers that are the program's), so a program that keeps growing after
 * its early blocks went to RAM can run out of memory where the file alone
 * would have carried it; and the budget does not see a RAM block freed (its
 * free is glibc's, outside the arena's span) until a look finds the room
 * again. That is why auto is not the default.
 *
 * Runs inside malloc: no allocation, no stdio; the files are read into
 * buffers on the stack, under the budget's own lock.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "budget.h"
#include "msg.h"
#include "options.h"
#include "os.h"

static pthread_mutex_t budget_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t allowance;          /* bytes RAM may still take until the next look */
static uint64_t since_look;         /* bytes served from RAM since the last look */
static uint64_t last_look_ns;       /* 0: no look yet */
static uint64_t served;             /* bytes served from RAM in all (statistics) */
static uint64_t headroom_seen;      /* the last look's headroom (--verbose) */
static int told;                    /* --verbose: 1 the RAM line, 2 the file line was written */

#define LOOK_EVERY_NS 1000000000ull

/* The number after `key` in text (a /proc/meminfo line, in kB), in bytes. */
static int meminfo_bytes(const char *text, const char *key, uint64_t *out) {
  const char *p = strstr(text, key);
  if (!p) return 0;
  p += strlen(key);
  while (*p == ' ' || *p == '\t') p++;
  uint64_t v = 0;
  if (*p < '0' || *p > '9') return 0;
  for (; *p >= '0' && *p <= '9'; p++) v = v * 10 + (uint64_t)(*p - '0');
  *out = v * 1024;
  return 1;
}

/* A file holding one number (or "max"): 1 and the number, 0 when absent or unlimited. */
static int read_number(const char *path, uint64_t *out) {
  char buf[64];
  size_t got;
  if (exm_os_read_file(path, buf, sizeof buf - 1, &got) || !got) return 0;
  buf[got] = 0;
  if (buf[0] < '0' || buf[0] > '9') return 0;   /* "max" */
  uint64_t v = 0;
  for (const char *p = buf; *p >= '0' && *p <= '9'; p++) v = v * 10 + (uint64_t)(*p - '0');
  *out = v;
  return 1;
}

/* limit - usage of the cgroup directory dir (v2 or v1 names), into *room
 * when it has a limit smaller than *room. */
static void cgroup_room(const char *dir, size_t n, int v1, uint64_t *room) {
  char path[EXM_PATH_MAX + 64];
  uint64_t limit, usage;
  const char *lim = v1 ? "/memory.limit_in_bytes" : "/memory.max";
  const char *use = v1 ? "/memory.usage_in_bytes" : "/memory.current";
  if (n + 32 > sizeof path) return;
  memcpy(path, dir, n);
  strcpy(path + n, lim);
  if (!read_number(path, &limit)) return;
  strcpy(path + n, use);
  if (!read_number(path, &usage)) return;
  uint64_t r = usage < limit ? limit - usage : 0;
  if (r < *room) *room = r;
}

/* The smallest room of the process's memory cgroup and its ancestors. */
static void cgroups_room(uint64_t *room) {
  char text[2048];
  size_t got;
  if (exm_os_read_file("/proc/self/cgroup", text, sizeof text - 1, &got)) return;
  text[got] = 0;
  for (char *line = text; *line;) {
    char *end = strchr(line, '\n');
    if (end) *end = 0;
    /* "0::/path" (v2) or "N:memory:/path", "N:cpu,memory:/path" (v1) */
    char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (c2) {
      int v2 = c2 == c1 + 1, v1 = 0;
      for (char *p = c1 + 1; p < c2 && !v2;) {
        char *q = p;
        while (q < c2 && *q != ',') q++;
        if (q - p == 6 && !memcmp(p, "memory", 6)) v1 = 1;
        p = q + 1;
      }
      if (v1 || v2) {
        char dir[EXM_PATH_MAX];
        const char *base = v1 ? "/sys/fs/cgroup/memory" : "/sys/fs/cgroup";
        size_t b = strlen(base), rel = strlen(c2 + 1);
        if (b + rel < sizeof dir) {
          memcpy(dir, base, b);
          memcpy(dir + b, c2 + 1, rel + 1);
          size_t n = b + rel;
          while (n > b && dir[n - 1] == '/') n--;
          /* this cgroup, then each ancestor up to the mount's root */
          for (;;) {
            dir[n] = 0;
            cgroup_room(dir, n, v1, room);
            if (n <= b) break;
            while (n > b && dir[n - 1] != '/') n--;
            if (n > b) n--;
          }
        }
      }
    }
    if (!end) break;
    line = end + 1;
  }
}

static uint64_t headroom(void) {
  uint64_t room = UINT64_MAX, avail;
  char text[4096];
  size_t got;
  if (!exm_os_read_file("/proc/meminfo", text, sizeof text - 1, &got)) {
    text[got] = 0;
    if (meminfo_bytes(text, "MemAvailable:", &avail)) room = avail;
  }
  cgroups_room(&room);
  return room == UINT64_MAX ? 0 : room;   /* nothing known: no RAM budget */
}

/* --verbose: the first block served from RAM, and the first sent to the file. */
static void tell(size_t n, int ram) {
  if (!exm_cfg.verbose) return;
  exm_line_t l = { .n = 0 };
  exm_line_str(&l, "exm: pid ");            /* as trace.c's --verbose lines */
  exm_line_u64(&l, (uint64_t)getpid());
  exm_line_str(&l, ": --threshold auto: ");
  exm_line_size(&l, n);
  if (ram) exm_line_str(&l, " in RAM, from a budget of half the headroom (");
  else {
    exm_line_str(&l, " to the file: the RAM budget is spent (");
    exm_line_size(&l, served);
    exm_line_str(&l, " served from RAM; headroom at the last look ");
  }
  exm_line_size(&l, headroom_seen);
  exm_line_str(&l, ram ? ": the smaller of MemAvailable and the memory cgroups' limits less their usage); past it, blocks go to the file" : ")");
  exm_line_emit(&l);
}

int exm_budget_take(size_t n) {
  pthread_mutex_lock(&budget_lock);
  int ok = n <= allowance;
  if (!ok) {
    uint64_t now = exm_os_now_ns();
    if (!last_look_ns || now - last_look_ns >= LOOK_EVERY_NS) {
      last_look_ns = now ? now : 1;
      headroom_seen = headroom();
      uint64_t half = headroom_seen / 2;
      allowance = half > since_look ? half - since_look : 0;
      since_look = 0;
      ok = n <= allowance;
    }
  }
  if (ok) {
    allowance -= n;
    since_look += n;
    served += n;
  }
  int say = !(told & (ok ? 1 : 2));    /* each kind of line once */
  told |= ok ? 1 : 2;
  pthread_mutex_unlock(&budget_lock);
  if (say) tell(n, ok);
  return ok;
}

void exm_budget_give(size_t n) {
  pthread_mutex_lock(&budget_lock);
  allowance += n;
  since_look = since_look > n ? since_look - n : 0;
  served = served > n ? served - n : 0;
  pthread_mutex_unlock(&budget_lock);
}

uint64_t exm_budget_served(void) { return __atomic_load_n(&served, __ATOMIC_RELAXED); }

void exm_budget_after_fork(void) {
  pthread_mutex_init(&budget_lock, NULL);
  allowance = since_look = last_look_ns = served = 0;
  told = 0;
}
