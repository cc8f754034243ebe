/*
 * supervise.ts: `exm --stats` / `--stats-file`: exm stays the program's
 * parent and reports on the whole process tree when it ends.
 *
 * Why not exec as without statistics: a library inside the program can only
 * report on its own process, and only when the process lets it (gnulib's
 * close_stdout closes fd 2 before atexit handlers run, dash leaves with _exit,
 * a signal leaves no handler time unless the library steals the program's
 * dispositions). A parent sees what the kernel knows of every descendant it
 * reaps (wait status, faults, blocks read and written, CPU time), and each
 * library of the tree leaves a record of its arena in a private directory
 * (EXM_STATS_DIR, see native/stats.c), so nothing the program does can lose
 * the summary.
 *
 * The contract of a plain run is kept where it can be: the program's
 * standard streams and descriptors, its environment, its exit status (a
 * program killed by a signal kills exm with the same signal, without a second
 * core dump). What differs: the program runs under another pid, exm's.
 * Signals sent to exm are passed on (SIGTERM, SIGUSR1/2, SIGALRM always;
 * SIGINT, SIGQUIT and SIGHUP only when exm is not in the terminal's
 * foreground, where the terminal already sent them to the program too, as
 * time(1) and system(3) leave them). A stop (Ctrl-Z) stops both.
 *
 * Nested runs: an `exm --stats` inside another one reports its own tree and
 * also leaves its records in the outer run's directory, so the outer summary
 * counts them.
 *
 * With --stats-file the JSON also holds a timeline of the tree sampled from
 * /proc (resident memory, arena resident and disk, faults, bytes read and
 * written), which `exm --plot` draws. Samples start every 250 ms; past 600
 * samples every other one is dropped and the interval doubles, so a run of
 * any length keeps a few hundred points. A sample that took long (smaps of a
 * process with gigabytes resident) pushes the next one out to 20 times its
 * cost, so sampling stays under 5 % of a core.
 */

import { mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import type { ExmStats } from "./bun/api";
import { inspect } from "./inspect";
import {
  becomeSubreaper, childUsage, ECHILD, getPid, kill, pidfdOpen, pollReadable, resetSignal, RLIMIT_CORE, setRlimit,
  spawn, waitPid, WNOHANG, type ChildUsage,
} from "./libc";
import { stderr } from "./out";

/** Signal numbers on Linux (x86-64 and arm64 agree on these). */
export const SIGNALS: Record<string, number> = {
  SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGILL: 4, SIGTRAP: 5, SIGABRT: 6, SIGBUS: 7, SIGFPE: 8, SIGKILL: 9, SIGUSR1: 10,
  SIGSEGV: 11, SIGUSR2: 12, SIGPIPE: 13, SIGALRM: 14, SIGTERM: 15, SIGSTKFLT: 16, SIGCHLD: 17, SIGCONT: 18,
  SIGSTOP: 19, SIGTSTP: 20, SIGTTIN: 21, SIGTTOU: 22, SIGURG: 23, SIGXCPU: 24, SIGXFSZ: 25, SIGVTALRM: 26,
  SIGPROF: 27, SIGWINCH: 28, SIGIO: 29, SIGPWR: 30, SIGSYS: 31,
};
export function signalName(sig: number): string {
  return Object.keys(SIGNALS).find((k) => SIGNALS[k] === sig) ?? `signal ${sig}`;
}

const ALWAYS_FORWARD = ["SIGTERM", "SIGUSR1", "SIGUSR2", "SIGALRM"] as const;
const TERMINAL_SIGNALS = ["SIGINT", "SIGQUIT", "SIGHUP"] as const;

/** The library's record of one process (native/stats.c): the Bun API's stats() fields, and the process's own. */
export interface ProcessRecord extends ExmStats {
  pid: number;
  ppid: number;
  command: string[];
  threshold: number;
  majorFaults: number;
  minorFaults: number;
  readBytes: number;
  writtenBytes: number;
  maxResident: number;
  cpuNs: number;
  /** EXM_ADVICE=auto: time held up by random faults on blocks the advisor made random (native/advisor.c). */
  randomFaultNs?: number;
  randomFaults?: number;
  randomReadBytes?: number;
}

/** Arena counters summed over the processes of the tree. */
export const ARENA_FIELDS = [
  "liveBytes", "peakLiveBytes", "liveBlocks", "totalAllocs", "totalFrees", "diskReserved", "peakDiskReserved",
  "bytesPunched", "arenaSize", "fallbacks", "failures", "forks", "allocNs", "ramBudgetBytes",
] as const;

export interface Sample {
  /** Milliseconds since the program started. */
  t: number;
  /** Processes of the tree alive at this moment. */
  processes: number;
  /** Resident memory of the tree (RSS, which includes the arena's resident pages). */
  resident: number;
  /** Of it, pages of exm arenas. */
  arenaResident: number;
  /** Disk used by the arenas' backing files. */
  disk: number;
  /** Since the start, for the tree: */
  majorFaults: number;
  readBytes: number;
  writtenBytes: number;
}

export interface RunReport extends ChildUsage, Record<(typeof ARENA_FIELDS)[number], number> {
  command: string[];
  pid: number;
  start: string;
  wallNs: number;
  /** Exit code, or null when a signal ended the program. */
  exitCode: number | null;
  signal: string | null;
  coreDumped: boolean;
  /** What a shell would show as $?: the code, or 128 + the signal number. */
  exitStatus: number;
  threshold: number;
  dir: string;
  processes: ProcessRecord[];
  timeline?: { intervalMs: number; samples: Sample[] };
}

export interface SuperviseRequest {
  path: Buffer;
  argv: Buffer[];
  envp: Buffer[];
  /** "1": a line on stderr; else the absolute path of the JSON file. */
  stats: string;
  threshold: bigint;
  dir: string;
  runDir: string;
  /** EXM_STATS_DIR of an enclosing exm --stats run, if any. */
  outerDir: string | undefined;
}

/** A private directory for the records of one run, in `base` (mode 0700 from mkdtemp). */
export function makeRunDir(base: string): string {
  return mkdtempSync(`${base.replace(/\/+$/, "")}/.exm-stats-`);
}

// ---- sampling the tree from /proc ----------------------------------------------

function readText(path: string): string | null {
  try {
    return readFileSync(path, "latin1");
  } catch {
    return null;
  }
}

/** [ppid, majflt + cmajflt, rss pages] from /proc/PID/stat. */
function procStat(pid: number): [number, number, number] | null {
  const s = readText(`/proc/${pid}/stat`);
  if (!s) return null;
  const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
  // f[0] is field 3 (state): ppid is field 4, majflt 12, cmajflt 13, rss 24.
  return [Number(f[1]), Number(f[9]) + Number(f[10]), Number(f[21])];
}

function procIo(pid: number): [number, number] {
  const s = readText(`/proc/${pid}/io`);
  if (!s) return [0, 0];
  const v = (k: string) => Number(new RegExp(`^${k}: (\\d+)`, "m").exec(s)?.[1] ?? 0);
  return [v("read_bytes"), Math.max(0, v("write_bytes") - v("cancelled_write_bytes"))];
}

const PAGE = 4096;

/** The pids of `root` and its descendants, from the ppid of every process. */
export function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  let names: string[] = [];
  try {
    names = readdirSync("/proc");
  } catch {
    return [root];
  }
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    const st = procStat(Number(name));
    if (!st) continue;
    children.set(st[0], [...(children.get(st[0]) ?? []), Number(name)]);
  }
  const out: number[] = [];
  const todo = [root];
  while (todo.length) {
    const p = todo.pop()!;
    out.push(p);
    todo.push(...(children.get(p) ?? []));
  }
  return out;
}

function sampleTree(root: number, t: number, base: ChildUsage): Sample {
  const s: Sample = { t, processes: 0, resident: 0, arenaResident: 0, disk: 0, majorFaults: 0, readBytes: 0, writtenBytes: 0 };
  for (const pid of descendants(root)) {
    const st = procStat(pid);
    if (!st) continue;
    s.processes++;
    s.majorFaults += st[1];
    s.resident += st[2] * PAGE;
    const [r, w] = procIo(pid);
    s.readBytes += r;
    s.writtenBytes += w;
    const maps = readText(`/proc/${pid}/maps`);
    if (!maps || !/ \(deleted\)$/m.test(maps)) continue;
    try {
      for (const a of inspect(pid).arenas) {
        s.arenaResident += a.resident;
        s.disk += a.disk ?? 0;
      }
    } catch {
      // the process ended meanwhile
    }
  }
  // Reaped descendants are folded into exm's own child usage.
  const now = childUsage();
  s.majorFaults += now.majorFaults - base.majorFaults;
  s.readBytes += now.readBytes - base.readBytes;
  s.writtenBytes += now.writtenBytes - base.writtenBytes;
  return s;
}

// ---- records -----------------------------------------------------------------

function readRecords(dir: string): ProcessRecord[] {
  const out: ProcessRecord[] = [];
  let names: string[] = [];
  try {
    names = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of names.sort()) {
    if (!/^\d+-\d+\.json$/.test(name)) continue;
    try {
      out.push(JSON.parse(readFileSync(`${dir}/${name}`, "utf8")) as ProcessRecord);
    } catch {
      // a record cut short (disk full): left out
    }
  }
  return out;
}

/** Leaves our records in the enclosing run's directory too, under the same names. */
function passRecordsOut(dir: string, outer: string): void {
  let names: string[] = [];
  try {
    names = readdirSync(dir).filter((n) => /^\d+-\d+\.json$/.test(n));
    if (!statSync(outer).isDirectory()) return;
  } catch {
    return;
  }
  for (const name of names) {
    try {
      const tmp = `${outer}/${name}.tmp.${process.pid}`;
      writeFileSync(tmp, readFileSync(`${dir}/${name}`));
      renameSync(tmp, `${outer}/${name}`);
    } catch {
      return; // the outer run has ended
    }
  }
}

// ---- the human line -------------------------------------------------------------

/** Sizes as the library prints them: "100.0 MiB", "0 B". */
export function sizeText(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  if (bytes < 1024) return `${bytes} B`;
  let u = 0;
  while (u < units.length - 1 && bytes >= 1024 ** (u + 1)) u++;
  return `${(bytes / 1024 ** u).toFixed(1)} ${units[u]}`;
}

function plural(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

export function summaryLine(r: RunReport): string {
  const name = r.command[0]?.slice(r.command[0].lastIndexOf("/") + 1) ?? "?";
  const how = r.signal ? `killed by ${r.signal}${r.coreDumped ? " (core dumped)" : ""}` : `exited ${r.exitCode}`;
  const head = `exm: pid ${r.pid} (${name}) ${how} after ${(r.wallNs / 1e9).toFixed(2)} s: `;
  const n = r.processes.length;
  const arena = r.totalAllocs === 0 && r.failures === 0 && r.fallbacks === 0
    ? `nothing file-backed${r.ramBudgetBytes ? "" : ` (no allocation of ${sizeText(r.threshold)} or more)`}`
    : `peak ${sizeText(r.peakLiveBytes)} file-backed in ${plural(r.totalAllocs, "block", "blocks")}` +
      `${n > 1 ? ` (${n} processes)` : ""}, disk reserved peak ${sizeText(r.peakDiskReserved)}, ` +
      `given back ${sizeText(r.bytesPunched)}, still live ${sizeText(r.liveBytes)}, ${r.failures} failed, ` +
      `${r.fallbacks} fallbacks, ${Math.floor(r.allocNs / 1e6)} ms in the allocator`;
  const budget = r.ramBudgetBytes ? `; ${sizeText(r.ramBudgetBytes)} served from RAM by --threshold auto` : "";
  const io = `${plural(r.majorFaults, "major fault", "major faults")}, ${sizeText(r.readBytes)} read from disk, ` +
    `${sizeText(r.writtenBytes)} written`;
  // Why a run was slow, when it was: random reads of file-backed memory (as the library's own line says).
  const sum = (k: "randomFaultNs" | "randomFaults" | "randomReadBytes") => r.processes.reduce((a, p) => a + (p[k] ?? 0), 0);
  const ns = sum("randomFaultNs");
  const held = ns >= 1e9
    ? `; held up by random reads from disk for ${Math.floor(ns / 1e9)} s (${Math.floor((sum("randomFaults") * 1e9) / ns)} ` +
      `major faults/s, ${sizeText(Math.floor((sum("randomReadBytes") * 1e9) / ns))}/s read back)`
    : "";
  return `${head}${arena}${budget}; ${io}${held}`;
}

// ---- writing the JSON ------------------------------------------------------------

function writeReport(path: string, text: string): void {
  let special = false;
  try {
    special = !statSync(path).isFile();
  } catch {
    // a new file
  }
  try {
    if (special) {
      // A terminal, /dev/stderr, a pipe: written in place, never replaced.
      writeFileSync(path, text, { flag: "a" });
    } else {
      // A fresh name of ours (O_EXCL, random: nobody can plant it), renamed into place.
      for (let attempt = 0; ; attempt++) {
        const tmp = `${path}.tmp.${process.pid}.${Math.floor(Math.random() * 1e9)}`;
        try {
          writeFileSync(tmp, text, { mode: 0o644, flag: "wx" });
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === "EEXIST" && attempt < 20) continue;
          throw e;
        }
        try {
          renameSync(tmp, path);
        } catch (e) {
          rmSync(tmp, { force: true });
          throw e;
        }
        break;
      }
    }
  } catch (e) {
    stderr(`exm: cannot write statistics to ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}\n`);
  }
}

// ---- the run ---------------------------------------------------------------------

function inTerminalForeground(): boolean {
  const s = readText("/proc/self/stat");
  if (!s) return false;
  const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
  // field 5 pgrp, field 8 tpgid (the terminal's foreground group, -1 without one)
  return Number(f[5]) > 0 && f[2] === f[5];
}

/**
 * Starts the program and reports when it ends. Returns the errno of a failed
 * start (the caller explains it); otherwise never returns.
 */
export async function supervise(req: SuperviseRequest, defaults: number[]): Promise<number> {
  const baseUsage = childUsage();
  becomeSubreaper();
  const startWall = Date.now();
  const t0 = process.hrtime.bigint();
  // Handlers first: a signal between the spawn and them would kill exm and orphan the program.
  let pid = 0;
  const early: string[] = [];
  const forward = (name: string) => () => {
    if ((TERMINAL_SIGNALS as readonly string[]).includes(name) && inTerminalForeground()) return;
    if (pid > 0) kill(pid, SIGNALS[name]!);
    else early.push(name);
  };
  const handlers = [...ALWAYS_FORWARD, ...TERMINAL_SIGNALS].map((name) => [name, forward(name)] as const);
  for (const [name, h] of handlers) process.on(name as NodeJS.Signals, h);
  const [err, child] = spawn(req.path, req.argv, req.envp, defaults);
  if (err) {
    for (const [name, h] of handlers) process.off(name as NodeJS.Signals, h);
    rmSync(req.runDir, { recursive: true, force: true });
    return err;
  }
  pid = child;
  for (const name of early) kill(pid, SIGNALS[name]!);

  const timeline = req.stats !== "1";
  let interval = 250;
  const samples: Sample[] = [];
  const sample = () => {
    samples.push(sampleTree(pid, Number(process.hrtime.bigint() - t0) / 1e6, baseUsage));
    if (samples.length > 600) {
      for (let i = samples.length - 1; i > 0; i -= 2) samples.splice(i, 1);
      interval *= 2;
    }
  };
  if (timeline) sample();

  const pidfd = pidfdOpen(pid);
  let status: number | undefined;
  let next = Date.now() + interval;
  while (status === undefined) {
    const wait = timeline ? Math.max(0, next - Date.now()) : 1000;
    pollReadable(pidfd, pidfd < 0 ? Math.min(wait, 50) : wait);
    // Reap the program and any orphan of the tree re-parented to us.
    for (;;) {
      const [r, st, e] = waitPid(-1, WNOHANG);
      if (r === pid) status = st;
      if (r <= 0 || e === ECHILD) break;
    }
    if (status !== undefined) break;
    if (timeline && Date.now() >= next) {
      const began = Date.now();
      sample();
      // Sampling must stay cheap next to the program: smaps of a process with
      // gigabytes resident takes tens of ms to read, so wait 20 times as long.
      next = Date.now() + Math.max(interval, 20 * (Date.now() - began));
    }
    await Bun.sleep(0); // lets the signal handlers above run
  }
  const wallNs = Number(process.hrtime.bigint() - t0);

  const exited = (status & 0x7f) === 0;
  const sig = exited ? 0 : status & 0x7f;
  const usage = childUsage();
  const records = readRecords(req.runDir);
  if (req.outerDir && req.outerDir !== req.runDir) passRecordsOut(req.runDir, req.outerDir);
  rmSync(req.runDir, { recursive: true, force: true });

  const report: RunReport = {
    command: req.argv.map((a) => a.toString()),
    pid,
    start: new Date(startWall).toISOString(),
    wallNs,
    exitCode: exited ? (status >> 8) & 0xff : null,
    signal: exited ? null : signalName(sig),
    coreDumped: !exited && (status & 0x80) !== 0,
    exitStatus: exited ? (status >> 8) & 0xff : 128 + sig,
    threshold: Number(req.threshold),
    dir: req.dir,
    cpuNs: usage.cpuNs - baseUsage.cpuNs,
    maxResident: usage.maxResident,
    minorFaults: usage.minorFaults - baseUsage.minorFaults,
    majorFaults: usage.majorFaults - baseUsage.majorFaults,
    readBytes: usage.readBytes - baseUsage.readBytes,
    writtenBytes: usage.writtenBytes - baseUsage.writtenBytes,
    ...Object.fromEntries(ARENA_FIELDS.map((f) => [f, records.reduce((a, r) => a + (Number(r[f]) || 0), 0)])) as Record<(typeof ARENA_FIELDS)[number], number>,
    processes: records,
  };
  if (timeline) {
    samples.push({
      t: wallNs / 1e6, processes: 0, resident: 0, arenaResident: 0, disk: 0,
      majorFaults: report.majorFaults, readBytes: report.readBytes, writtenBytes: report.writtenBytes,
    });
    report.timeline = { intervalMs: interval, samples };
  }
  if (req.stats === "1") stderr(`${summaryLine(report)}\n`);
  else writeReport(req.stats, `${JSON.stringify(report, null, 2)}\n`);

  if (exited) process.exit(report.exitStatus);
  // Die of the same signal, as the program did (without dumping a core of our own).
  setRlimit(RLIMIT_CORE, 0n, 0n);
  process.removeAllListeners(signalName(sig) as NodeJS.Signals);
  resetSignal(sig);
  kill(getPid(), sig);
  await Bun.sleep(0);
  process.exit(report.exitStatus);
}
