/*
 * run.ts: checks everything, then replaces exm with the program.
 *
 * Nothing runs until every check passed: settings, data directory, program
 * lookup, library cache. Then, just before execve (same pid, so the exit
 * status, signals and job control are the program's own), it undoes what the
 * Bun runtime did to the process that exec would otherwise pass on:
 * - SIGPIPE and SIGXFSZ are ignored by Bun, and ignored dispositions survive
 *   exec: both go back to SIG_DFL, and the thread's signal mask is emptied.
 * - Bun marks inherited descriptors >= 4 close-on-exec at start-up: it is
 *   cleared on those exm inherited (fds.ts: the descriptors open when exm's
 *   code started, still on the same files), and on no others.
 *
 * - Bun raises the soft RLIMIT_NOFILE to the hard limit (capped at 2^20) and
 *   keeps no trace of the old value. The parent's soft limit is what exm
 *   inherited in all but odd cases (a subshell that lowered its limit and then
 *   exec'd exm), so it is put back when the parent has the same hard limit.
 *   This matters for programs that still use select() (fds < 1024).
 *
 * LD_PRELOAD gets our library FIRST, before what was already there: the
 * first preloaded object that defines malloc is the one every call binds to,
 * so a preloaded allocator placed before ours would take the large requests
 * exm exists to serve; after ours, it still serves the small ones through the
 * library's fallback to the next malloc.
 */

import { accessSync, closeSync, constants, openSync, readFileSync, readSync, statSync, type Stats } from "node:fs";
import { installLibrary } from "./cache";
import { type FdSnapshot, passInheritedFds } from "./fds";
import { EXIT_CANNOT_RUN, EXIT_NOT_FOUND, ExmError, usageError } from "./errors";
import {
  ENOENT, ENOEXEC, execve, getRlimit, kernelRelease, resetSignal, RLIMIT_NOFILE, setRlimit, SIGPIPE,
  SIGXFSZ, strerror, unblockAllSignals,
} from "./libc";
import { formatSize, type Settings, settingsEnv } from "./options";
import { stderr } from "./out";
import { LIBRARY } from "../embed/library";
import { kernelGaps, kernelUnserved, resolveProgram, show, unserved } from "./program";
import { makeRunDir, supervise } from "./supervise";

function say(line: string): void {
  stderr(`exm: ${line}\n`);
}

function statOrNull(path: string): Stats | null {
  try {
    return statSync(path);
  } catch {
    return null;
  }
}

function writable(dir: string): boolean {
  try {
    accessSync(dir, constants.W_OK | constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The data directory must exist, be a directory, and be writable by us. */
export function checkDataDir(s: Settings): void {
  const what = `data directory ${s.dir}${s.dirSource === "default" ? "" : ` (from ${s.dirSource})`}`;
  const st = statOrNull(s.dir);
  if (!st) throw usageError(`${what} does not exist`);
  if (!st.isDirectory()) throw usageError(`${what} is not a directory`);
  if (!writable(s.dir)) throw usageError(`${what} is not writable`);
}

/** A statistics file must be creatable: its directory must exist and be writable. */
export function checkStatsFile(s: Settings): void {
  if (s.stats === "0" || s.stats === "1") return;
  const dir = s.stats.slice(0, s.stats.lastIndexOf("/")) || "/";
  const st = statOrNull(dir);
  if (!st) throw usageError(`${s.statsSource}: directory ${dir} of the statistics file does not exist`);
  if (!st.isDirectory()) throw usageError(`${s.statsSource}: ${dir} is not a directory`);
  if (!writable(dir)) throw usageError(`${s.statsSource}: directory ${dir} is not writable`);
  if (statOrNull(s.stats)?.isDirectory()) throw usageError(`${s.statsSource}: ${s.stats} is a directory`);
}

/** The variables exm sets; any value the program would have inherited is replaced. */
const EXM_NAMES = new Set([
  "EXM_THRESHOLD", "EXM_DIR", "EXM_CHILD", "EXM_ADVICE", "EXM_MAX_DISK", "EXM_STATS", "EXM_VERBOSE",
  // The library's reporting protocol (native/stats.c): who reports by hand, and
  // where the records of an exm --stats run go. A run of ours sets its own.
  "EXM_STATS_PID",
]);

function envName(entry: Buffer): string {
  const eq = entry.indexOf(0x3d /* '=' */);
  return entry.subarray(0, eq < 0 ? entry.length : eq).toString("latin1");
}

/** Splits a LD_PRELOAD value the way ld.so does (spaces and colons). */
function preloadEntries(value: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  for (let i = 0; i <= value.length; i++) {
    if (i < value.length && value[i] !== 0x20 && value[i] !== 0x3a && value[i] !== 0x09 && value[i] !== 0x0a) continue;
    if (i > start) out.push(value.subarray(start, i));
    start = i + 1;
  }
  return out;
}

/**
 * The program's environment: the original one byte for byte, with the EXM_*
 * settings replaced by their normalized values and our library first in
 * LD_PRELOAD (theirs kept after it, in their order; a second copy of ours
 * dropped).
 */
export function programEnv(environ: Buffer[], s: Settings, library: string, runDir?: string): Buffer[] {
  const out: Buffer[] = [];
  let preload: Buffer | undefined;
  for (const entry of environ) {
    const name = envName(entry);
    if (EXM_NAMES.has(name) || (runDir && name === "EXM_STATS_DIR")) continue;
    if (name === "LD_PRELOAD") {
      preload = entry.subarray(name.length + 1);
      continue;
    }
    out.push(entry);
  }
  const ours = Buffer.from(library);
  const theirs = preload ? preloadEntries(preload).filter((e) => !e.equals(ours)) : [];
  out.push(Buffer.concat([Buffer.from("LD_PRELOAD="), ...[ours, ...theirs].flatMap((e, i) => (i ? [Buffer.from(":"), e] : [e]))]));
  for (const [k, v] of settingsEnv(s)) out.push(Buffer.from(k === "EXM_STATS" && runDir ? "EXM_STATS=0" : `${k}=${v}`));
  if (runDir) out.push(Buffer.from(`EXM_STATS_DIR=${runDir}`));
  return out;
}

/**
 * Why execve said ENOENT of a file that exists: the interpreter of its #!
 * line is missing (the kernel reports the interpreter's absence as the
 * script's). Undefined when that is not it.
 */
export function missingInterpreter(path: Buffer): { interp: string; elf: boolean } | undefined {
  let head: Buffer;
  try {
    const fd = openSync(path, "r");
    try {
      head = Buffer.alloc(256);
      head = head.subarray(0, readSync(fd, head, 0, head.length, 0));
    } finally {
      closeSync(fd);
    }
  } catch {
    return undefined;
  }
  let interp: string | undefined;
  const script = head[0] === 0x23 && head[1] === 0x21;
  if (script) {
    // "#!": the interpreter is the first word of the line.
    const line = head.subarray(2, head.indexOf(0x0a) < 0 ? head.length : head.indexOf(0x0a)).toString("latin1");
    interp = line.trim().split(/[ \t]+/)[0];
  } else {
    interp = elfInterpreter(path);
  }
  if (!interp || statOrNull(interp)) return undefined;
  return { interp, elf: !script };
}

/** PT_INTERP of a 64-bit little-endian ELF file (the dynamic loader it names), if any. */
function elfInterpreter(path: Buffer): string | undefined {
  try {
    const fd = openSync(path, "r");
    try {
      const h = Buffer.alloc(64);
      if (readSync(fd, h, 0, 64, 0) < 64 || h.readUInt32BE(0) !== 0x7f454c46 || h[4] !== 2 || h[5] !== 1) return undefined;
      const phoff = Number(h.readBigUInt64LE(0x20));
      const size = h.readUInt16LE(0x36);
      const count = h.readUInt16LE(0x38);
      const ph = Buffer.alloc(size * count);
      readSync(fd, ph, 0, ph.length, phoff);
      for (let i = 0; i < count; i++) {
        if (ph.readUInt32LE(i * size) !== 3 /* PT_INTERP */) continue;
        const off = Number(ph.readBigUInt64LE(i * size + 8));
        const len = Math.min(Number(ph.readBigUInt64LE(i * size + 32)), 4096);
        const name = Buffer.alloc(len);
        readSync(fd, name, 0, len, off);
        return name.subarray(0, name.indexOf(0) < 0 ? len : name.indexOf(0)).toString("latin1");
      }
    } finally {
      closeSync(fd);
    }
  } catch {
    // unreadable: nothing to explain
  }
  return undefined;
}

/** The one-line error for a program that could not be started. */
function cannotRun(program: Buffer, resolved: Buffer, err: number): ExmError {
  if (err === ENOENT) {
    const missing = missingInterpreter(resolved);
    if (missing) {
      const from = missing.elf ? "its ELF loader: built for another system?" : "from its #! line";
      return new ExmError(`${show(program)}: cannot run: its interpreter ${missing.interp} (${from}) does not exist`, EXIT_NOT_FOUND);
    }
    return new ExmError(`${show(program)}: cannot run: ${strerror(err)}`, EXIT_NOT_FOUND);
  }
  return new ExmError(`${show(program)}: cannot run: ${strerror(err)}`, EXIT_CANNOT_RUN);
}

/** "Max open files" soft and hard limits of another process, from /proc. */
function procFileLimit(pid: number): [bigint, bigint] | undefined {
  try {
    const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(readFileSync(`/proc/${pid}/limits`, "utf8"));
    if (!m) return undefined;
    const n = (v: string) => (v === "unlimited" ? 0xffffffffffffffffn : BigInt(v));
    return [n(m[1]!), n(m[2]!)];
  } catch {
    return undefined;
  }
}

/** Puts back the soft open-file limit Bun raised, as far as it can be known. */
export function restoreFileLimit(): void {
  const ours = getRlimit(RLIMIT_NOFILE);
  const parent = procFileLimit(process.ppid);
  if (!ours || !parent) return;
  const [soft, hard] = ours;
  const [parentSoft, parentHard] = parent;
  if (parentHard === hard && parentSoft < soft) setRlimit(RLIMIT_NOFILE, parentSoft, hard);
}

export interface RunRequest {
  settings: Settings;
  /** Program name as given, then its arguments, raw bytes. */
  program: Buffer[];
  environ: Buffer[];
  /** The descriptors open when exm started (fds.ts): the ones passed on. */
  fdsAtStart?: FdSnapshot;
}

/**
 * Runs the program in place of exm (execve), or, with statistics, as exm's
 * child (supervise.ts). Returns only by throwing.
 */
export async function run(req: RunRequest): Promise<never> {
  const { settings: s, program, environ } = req;
  checkDataDir(s);
  checkStatsFile(s);

  const pathEntry = environ.find((e) => envName(e) === "PATH");
  const resolved = resolveProgram(program[0]!, pathEntry?.subarray(5));

  // Told at once, one line: a program exm cannot serve still runs, unserved (program.ts).
  const kernel = kernelRelease();
  const cannot = kernelUnserved(kernel) ?? unserved(resolved, LIBRARY.target);
  if (cannot) say(cannot.line);
  if (s.verbose) for (const line of kernelGaps(kernel).soft) say(line);

  const uid = process.geteuid?.() ?? 0;
  const lib = installLibrary(process.env, uid, (line) => say(`warning: ${line}`));
  if (s.verbose) {
    for (const line of lib.skipped) say(`skipped cache location ${line}`);
    if (!cannot?.dropPreload) say(`running ${show(resolved)} with ${lib.path}: threshold ${s.thresholdAuto ? `auto (${formatSize(s.threshold)} past the RAM budget)` : formatSize(s.threshold)}, data in ${s.dir}, ` +
      `child ${s.child}, advice ${s.advice}, max disk ${s.maxDisk ? formatSize(s.maxDisk) : "no cap"}`);
  }

  restoreFileLimit();
  passInheritedFds(req.fdsAtStart);
  // As execvp does: a file without a #! line is a shell script.
  const asScript = (): [Buffer, Buffer[]] => [Buffer.from("/bin/sh"), [Buffer.from("/bin/sh"), resolved, ...program.slice(1)]];

  if (s.stats !== "0") {
    const outerDir = environ.find((e) => envName(e) === "EXM_STATS_DIR")?.subarray("EXM_STATS_DIR=".length).toString();
    const runDir = makeRunDir(s.dir);
    const envp = cannot?.dropPreload ? environ : programEnv(environ, s, lib.path, runDir);
    const req = { path: resolved, argv: program, envp, stats: s.stats, threshold: s.threshold, dir: s.dir, runDir, outerDir };
    let err = await supervise(req, [SIGPIPE, SIGXFSZ]);
    if (err === ENOEXEC) {
      const [path, argv] = asScript();
      err = await supervise({ ...req, runDir: makeRunDir(s.dir), path, argv }, [SIGPIPE, SIGXFSZ]);
    }
    throw cannotRun(program[0]!, resolved, err);
  }

  const envp = cannot?.dropPreload ? environ : programEnv(environ, s, lib.path);
  resetSignal(SIGPIPE);
  resetSignal(SIGXFSZ);
  unblockAllSignals();
  let err = execve(resolved, program, envp);
  if (err === ENOEXEC) err = execve(...asScript(), envp);
  throw cannotRun(program[0]!, resolved, err);
}
