/**
 * System helpers for exm's tests: compiling the C test programs, running a
 * program with libexm preloaded, inside a memory cgroup, or with a data
 * directory on a small tmpfs, and measuring what is left behind.
 *
 * Everything that needs privileges (cgroups, mounts) has an `...Available()`
 * probe returning null when usable and otherwise the reason it is not, so a
 * test can skip and say why (see `skipUnless`).
 */
import { spawn, spawnSync } from "bun";
import { createHash, randomBytes } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  statfsSync,
  writeFileSync,
  rmdirSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";

/** The repository root. */
export const ROOT = resolve(import.meta.dir, "..", "..");
/**
 * The library under test: build/libexm.so as build.ts leaves it, or another
 * build named by EXM_TEST_LIB (e.g. a debug build). Not passed to children:
 * cleanEnv drops every EXM_* variable.
 */
export const LIB = resolve(process.env.EXM_TEST_LIB || join(ROOT, "build", "libexm.so"));
/** Where build.ts copies exm.h next to the library. */
export const HEADER_DIR = join(ROOT, "build");
/** The compiled launcher. */
export const EXM = join(ROOT, "dist", "exm");
/** The C test programs. */
export const C_DIR = join(ROOT, "tests", "c");

const MiB = 1 << 20;

/* ---- Skips ----------------------------------------------------------------- */

/**
 * Returns true when `reason` is non-null, after printing it, so that
 * `test.skipIf(skipUnless(cgroupAvailable(), "name"))` both skips and says why.
 */
export function skipUnless(reason: string | null, what = "test"): boolean {
  if (reason) console.warn(`skip ${what}: ${reason}`);
  return reason !== null;
}

/** null when build/libexm.so exists, else why not. */
export function libAvailable(): string | null {
  return existsSync(LIB) ? null : `${LIB} is not built (run the build first)`;
}

/* ---- Compiling C ------------------------------------------------------------ */

export interface CompileOptions {
  /** Output path; default: a cache directory under build/tests/. */
  out?: string;
  /** Extra compiler flags (e.g. -DEXM_LINKED). */
  flags?: string[];
  /** Extra link arguments (e.g. -L build -lexm). */
  link?: string[];
}

const CACHE_DIR = join(ROOT, "build", "tests");

function mtimeOr0(p: string): number {
  try {
    return statSync(p).mtimeMs;
  } catch {
    return 0;
  }
}

/**
 * Compiles one C file with gcc -O1 -g -Wall -Werror -pthread -I build and
 * returns the executable's path. Cached by the source's mtime (and those of
 * every header it may include, of the files linked in, and the flags); throws
 * with the compiler's output on failure.
 */
export function compileC(srcPath: string, opts: CompileOptions = {}): string {
  const src = resolve(srcPath);
  const flags = opts.flags ?? [];
  const link = opts.link ?? [];
  // Every header a test program may reach: the shipped exm.h, the library's
  // own headers (the core-on-a-buffer programs include core.h and friends
  // through -I native) and the source's folder. A change to any of them
  // rebuilds the program (a stale binary once compared with an old constant).
  const headersIn = (dir: string) => {
    try {
      return readdirSync(dir).filter((f) => f.endsWith(".h")).map((f) => join(dir, f));
    } catch {
      return [];
    }
  };
  const headers = [join(HEADER_DIR, "exm.h"), ...headersIn(join(ROOT, "native")), ...headersIn(dirname(src))];
  const key = createHash("sha256")
    .update(JSON.stringify([src, mtimeOr0(src), headers.map(mtimeOr0), flags, link, link.map(mtimeOr0)]))
    .digest("hex")
    .slice(0, 16);
  const out = opts.out ?? join(CACHE_DIR, `${basename(src, ".c")}-${key}`);
  if (!opts.out && existsSync(out)) return out;
  mkdirSync(dirname(out), { recursive: true });
  // -I build first (the header shipped with the library), native/ as the
  // fallback while the library is not built yet. -fno-builtin keeps gcc from
  // folding away malloc/free pairs that the tests exist to exercise.
  const tmp = `${out}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  const argv = [
    "gcc",
    "-O1",
    "-g",
    "-Wall",
    "-Werror",
    "-pthread",
    "-fno-builtin",
    "-I",
    HEADER_DIR,
    "-I",
    join(ROOT, "native"),
    ...flags,
    "-o",
    tmp,
    src,
    ...link,
  ];
  const r = spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) {
    rmSync(tmp, { force: true });
    throw new Error(
      `compile failed: ${argv.join(" ")}\n${r.stdout.toString()}${r.stderr.toString()}`,
    );
  }
  renameSync(tmp, out);
  return out;
}

/** Compiles tests/c/<name>.c (cached) and returns the binary's path. */
export function cProgram(name: string, opts: CompileOptions = {}): string {
  return compileC(join(C_DIR, `${name}.c`), opts);
}

/* ---- Running programs --------------------------------------------------------- */

export interface RunResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  /** Wall time in milliseconds. */
  ms: number;
  /** True when the run was killed for exceeding timeoutMs. */
  timedOut: boolean;
}

export interface RunOptions {
  /** Variables to set (a value of undefined removes one). */
  env?: Record<string, string | undefined>;
  cwd?: string;
  timeoutMs?: number;
  /** Data written to stdin. */
  stdin?: string;
  /** Holds the child while it runs (a benchmark kills these when interrupted). */
  live?: Set<ReturnType<typeof spawn>>;
  /** Called when timeoutMs passed, after the child was killed: what else to kill (its descendants). */
  onTimeout?: () => void;
}

/**
 * The inherited environment without any EXM_* or LD_PRELOAD, so that what a
 * test sets is all that applies.
 */
export function cleanEnv(extra: Record<string, string | undefined> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined || k.startsWith("EXM_") || k === "LD_PRELOAD") continue;
    env[k] = v;
  }
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

/** Runs argv to completion, stdout and stderr together; ok is false also when it cannot be started. */
export function sh(argv: string[], env: Record<string, string | undefined> = {}): { ok: boolean; out: string } {
  try {
    const r = spawnSync(argv, { env: cleanEnv(env), stdout: "pipe", stderr: "pipe" });
    return { ok: r.exitCode === 0, out: r.stdout.toString() + r.stderr.toString() };
  } catch (e) {
    return { ok: false, out: `${argv[0]}: ${(e as Error).message}` };
  }
}

/**
 * Installs Debian packages for a test file that needs them (CI starts from a
 * fresh machine): null when apt-get installed them, else why not. Stale package
 * lists are the usual cause of a failure, so it updates them and tries once more.
 * `who` names the test file in the line that says it is installing; `probe`,
 * when given, says whether what the packages bring is there (before: nothing
 * to install; after: installed, but is it usable?).
 */
export function aptInstall(packages: string[], who: string, probe?: () => boolean): string | null {
  if (probe?.()) return null;
  const list = packages.join(" ");
  if (process.platform !== "linux") return "not Linux";
  if (process.getuid?.() !== 0) return `installing ${list} needs root`;
  if (!sh(["sh", "-c", "command -v apt-get"]).ok) return `no apt-get to install ${list}`;
  console.warn(`${who}: installing ${list} with apt-get (once)`);
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  const lock = ["-o", "DPkg::Lock::Timeout=300"];
  const install = () => sh(["apt-get", "install", "-y", "-q", "--no-install-recommends", ...lock, ...packages], env);
  let r = install();
  if (!r.ok) {
    sh(["apt-get", "update", "-q", ...lock], env);
    r = install();
  }
  if (!r.ok) return `apt-get install ${list} failed:\n${r.out.split("\n").slice(-8).join("\n")}`;
  return !probe || probe() ? null : `${list} installed but still not usable`;
}

const SIGNALS: Record<number, string> = {
  1: "SIGHUP",
  2: "SIGINT",
  3: "SIGQUIT",
  4: "SIGILL",
  6: "SIGABRT",
  7: "SIGBUS",
  8: "SIGFPE",
  9: "SIGKILL",
  11: "SIGSEGV",
  13: "SIGPIPE",
  14: "SIGALRM",
  15: "SIGTERM",
  25: "SIGXFSZ",
};

function signalName(s: number | string | null | undefined): string | null {
  if (s === null || s === undefined) return null;
  if (typeof s === "string") return s;
  return SIGNALS[s] ?? `SIG${s}`;
}

/** Runs argv with a clean environment plus opts.env; never throws on failure. */
export async function run(argv: string[], opts: RunOptions = {}): Promise<RunResult> {
  const t0 = performance.now();
  const proc = spawn(argv, {
    env: cleanEnv(opts.env),
    cwd: opts.cwd,
    stdin: opts.stdin !== undefined ? new TextEncoder().encode(opts.stdin) : "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  opts.live?.add(proc);
  let timedOut = false;
  const timer =
    opts.timeoutMs !== undefined
      ? setTimeout(() => {
          timedOut = true;
          proc.kill("SIGKILL");
          opts.onTimeout?.();
        }, opts.timeoutMs)
      : undefined;
  const [stdout, stderr] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
  ]);
  await proc.exited;
  opts.live?.delete(proc);
  if (timer) clearTimeout(timer);
  return {
    code: proc.signalCode ? null : proc.exitCode,
    signal: signalName(proc.signalCode),
    stdout,
    stderr,
    ms: performance.now() - t0,
    timedOut,
  };
}

/**
 * Runs argv with LD_PRELOAD=LIB and the given EXM_* variables (and
 * EXM_TEST_REQUIRE_LIB=1, so a test program fails if the preload was ignored).
 */
export function runWithLib(
  argv: string[],
  env: Record<string, string | undefined> = {},
  opts: Omit<RunOptions, "env"> = {},
): Promise<RunResult> {
  return run(argv, { ...opts, env: { LD_PRELOAD: LIB, EXM_TEST_REQUIRE_LIB: "1", ...env } });
}

/** One line per field, for assertion messages. */
export function explain(r: RunResult | CgroupResult): string {
  const extra = "oomKilled" in r ? ` oomKilled=${r.oomKilled} maxUsage=${r.maxUsage}` : "";
  return `code=${r.code} signal=${r.signal}${extra}\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;
}

/**
 * Parses a test program's `key=value` output: one pair per line, or several
 * space-separated pairs on one line ("ops=10 checked_mb=3").
 */
export function kv(stdout: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of stdout.split("\n")) {
    const line = raw.trim();
    if (/^\w+=\S*( \w+=\S*)+$/.test(line)) {
      for (const tok of line.split(" ")) {
        const i = tok.indexOf("=");
        out[tok.slice(0, i)] = tok.slice(i + 1);
      }
      continue;
    }
    const m = /^([A-Za-z_]\w*)=(.*)$/.exec(line);
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

/**
 * Starts argv (clean environment plus env) and resolves once `marker` appears
 * on its stdout; the caller kills and awaits it. Rejects if it exits first or
 * the marker does not come within timeoutMs.
 */
export async function spawnUntil(
  argv: string[],
  env: Record<string, string | undefined>,
  marker: string,
  timeoutMs = 60_000,
): Promise<{ proc: ReturnType<typeof spawn>; stdout: string; stderr: () => Promise<string> }> {
  const proc = spawn(argv, { env: cleanEnv(env), stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const stderrText = new Response(proc.stderr).text();
  const reader = (proc.stdout as ReadableStream<Uint8Array>).getReader();
  const dec = new TextDecoder();
  let out = "";
  const deadline = Date.now() + timeoutMs;
  while (!out.includes(marker)) {
    const left = deadline - Date.now();
    const next = await Promise.race([
      reader.read(),
      Bun.sleep(Math.max(left, 0)).then(() => "timeout" as const),
    ]);
    if (next === "timeout" || next.done) {
      proc.kill("SIGKILL");
      await proc.exited;
      throw new Error(
        `${argv.join(" ")}: ${next === "timeout" ? "timed out" : "exited"} before "${marker}"\n` +
          `stdout: ${out}\nstderr: ${await stderrText}`,
      );
    }
    out += dec.decode(next.value, { stream: true });
  }
  reader.releaseLock();
  return { proc, stdout: out, stderr: () => stderrText };
}

/* ---- Memory cgroups ------------------------------------------------------------ */

export interface CgroupResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  oomKilled: boolean;
  /** Peak memory charged to the cgroup, bytes (0 when unknown). */
  maxUsage: number;
  ms: number;
  timedOut: boolean;
}

type CgroupKind = { version: 1 | 2; base: string };

let cgroupProbe: { kind: CgroupKind | null; reason: string | null } | undefined;

function tryWrite(path: string, value: string): string | null {
  try {
    writeFileSync(path, value);
    return null;
  } catch (e) {
    return `cannot write ${path}: ${(e as Error).message}`;
  }
}

function detectCgroup(): { kind: CgroupKind | null; reason: string | null } {
  if (process.platform !== "linux") return { kind: null, reason: "not Linux" };
  const v1 = "/sys/fs/cgroup/memory";
  const candidates: CgroupKind[] = [];
  if (existsSync(join(v1, "memory.limit_in_bytes")) || existsSync(join(v1, "cgroup.procs")))
    candidates.push({ version: 1, base: v1 });
  if (existsSync("/sys/fs/cgroup/cgroup.controllers")) {
    // v2: a child of the root (needs +memory in the root's subtree_control).
    candidates.push({ version: 2, base: "/sys/fs/cgroup" });
  }
  if (candidates.length === 0) return { kind: null, reason: "no memory cgroup hierarchy mounted" };
  const reasons: string[] = [];
  for (const kind of candidates) removeStaleCgroups(kind.base);
  for (const kind of candidates) {
    const dir = join(kind.base, `exm-test-probe-${process.pid}-${randomBytes(3).toString("hex")}`);
    try {
      mkdirSync(dir);
    } catch (e) {
      reasons.push(`cannot create a cgroup in ${kind.base}: ${(e as Error).message}`);
      continue;
    }
    try {
      const limitFile = kind.version === 1 ? "memory.limit_in_bytes" : "memory.max";
      if (!existsSync(join(dir, limitFile))) {
        reasons.push(`${kind.base}: no ${limitFile} (memory controller not enabled)`);
        continue;
      }
      const err = tryWrite(join(dir, limitFile), String(256 * MiB));
      if (err) {
        reasons.push(err);
        continue;
      }
      return { kind, reason: null };
    } finally {
      try {
        rmdirSync(dir);
      } catch {
        /* best effort */
      }
    }
  }
  return { kind: null, reason: reasons.join("; ") };
}

/** True when pid is a live process (a zombie, killed and not yet reaped, is not). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** Removes empty exm-test-<pid>-* cgroups left by test runs (and benchmarks) that died. */
function removeStaleCgroups(base: string): void {
  let names: string[];
  try {
    names = readdirSync(base);
  } catch {
    return;
  }
  for (const name of names) {
    const m = /^exm-test-(?:probe-)?(\d+)-/.exec(name);
    if (!m) continue;
    if (alive(Number(m[1])) || cgroupPids(join(base, name)).length > 0) continue;
    try {
      rmdirSync(join(base, name));
    } catch {
      /* someone else's, or busy */
    }
  }
}

/** null when we can create and limit memory cgroups; else why not. */
export function cgroupAvailable(): string | null {
  cgroupProbe ??= detectCgroup();
  return cgroupProbe.reason;
}

function readNum(path: string): number {
  try {
    return Number(readFileSync(path, "utf8").trim()) || 0;
  } catch {
    return 0;
  }
}

function readKeyed(path: string, key: string): number {
  try {
    const m = new RegExp(`^${key} (\\d+)$`, "m").exec(readFileSync(path, "utf8"));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

function cgroupPids(dir: string): number[] {
  try {
    return readFileSync(join(dir, "cgroup.procs"), "utf8")
      .split("\n")
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

/** The cgroups made by runInCgroup and not yet removed. */
const liveCgroups = new Set<string>();

/** One try at removing a cgroup: kills what is left in it, then rmdir. */
/** SIGKILL to every process in the cgroup. */
function killCgroup(dir: string): void {
  for (const pid of cgroupPids(dir)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      /* gone already */
    }
  }
}

function tryRemoveCgroup(dir: string): boolean {
  killCgroup(dir);
  try {
    rmdirSync(dir);
    liveCgroups.delete(dir);
    return true;
  } catch {
    return false;
  }
}

async function removeCgroup(dir: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (tryRemoveCgroup(dir)) return;
    await Bun.sleep(50);
  }
  console.warn(`warning: could not remove cgroup ${dir}`);
}

/**
 * Removes every cgroup this process still has, synchronously: for a signal
 * handler or an exit hook (an interrupted benchmark), where nothing awaits.
 */
export function removeCgroupsNow(): void {
  for (const dir of [...liveCgroups]) {
    let done = false;
    for (let i = 0; i < 200 && !(done = tryRemoveCgroup(dir)); i++) Bun.sleepSync(25);
    if (!done) console.error(`warning: could not remove cgroup ${dir}`);
  }
}

/** runInCgroup's options: run()'s, and whether the cgroup may swap. */
export interface CgroupOptions extends RunOptions {
  /**
   * Let the cgroup use swap (v1: memory+swap left unlimited, swappiness 60;
   * v2: memory.swap.max unlimited), for the benchmarks that compare with a
   * swap file. By default memory+swap is capped at the limit, so that swap
   * cannot help.
   */
  swap?: boolean;
}

/**
 * Runs argv in a fresh memory cgroup limited to limitBytes (swap included
 * where the kernel accounts it, unless opts.swap), and removes the cgroup
 * afterwards, killing anything left in it. Environment as in run().
 */
export async function runInCgroup(
  limitBytes: number,
  argv: string[],
  opts: CgroupOptions = {},
): Promise<CgroupResult> {
  const why = cgroupAvailable();
  if (why) throw new Error(`memory cgroups unavailable: ${why}`);
  const kind = cgroupProbe!.kind!;
  const dir = join(kind.base, `exm-test-${process.pid}-${randomBytes(6).toString("hex")}`);
  mkdirSync(dir);
  liveCgroups.add(dir);
  try {
    if (kind.version === 1) {
      writeFileSync(join(dir, "memory.limit_in_bytes"), String(limitBytes));
      if (!opts.swap && existsSync(join(dir, "memory.memsw.limit_in_bytes")))
        writeFileSync(join(dir, "memory.memsw.limit_in_bytes"), String(limitBytes));
      if (existsSync(join(dir, "memory.swappiness")))
        tryWrite(join(dir, "memory.swappiness"), opts.swap ? "60" : "0");
    } else {
      writeFileSync(join(dir, "memory.max"), String(limitBytes));
      if (existsSync(join(dir, "memory.swap.max")))
        writeFileSync(join(dir, "memory.swap.max"), opts.swap ? "max" : "0");
    }
    const procs = join(dir, "cgroup.procs");
    // The shell moves itself into the cgroup, then becomes the program. On a
    // timeout the program's own children go too (they would hold its output
    // pipes open, and run() would wait for them).
    const r = await run(["sh", "-c", `echo $$ > '${procs}' && exec "$@"`, "sh", ...argv], { ...opts, onTimeout: () => killCgroup(dir) });
    let oomKills: number;
    let maxUsage: number;
    if (kind.version === 1) {
      oomKills = readKeyed(join(dir, "memory.oom_control"), "oom_kill");
      maxUsage = readNum(join(dir, "memory.max_usage_in_bytes"));
    } else {
      oomKills = readKeyed(join(dir, "memory.events"), "oom_kill");
      maxUsage = readNum(join(dir, "memory.peak"));
    }
    return {
      ...r,
      oomKilled: oomKills > 0 || (r.signal === "SIGKILL" && !r.timedOut),
      maxUsage,
    };
  } finally {
    await removeCgroup(dir);
  }
}

/* ---- tmpfs -------------------------------------------------------------------- */

let tmpfsProbe: string | null | undefined;

/** null when we can mount a tmpfs (root, or CAP_SYS_ADMIN); else why not. */
export function tmpfsAvailable(): string | null {
  if (tmpfsProbe !== undefined) return tmpfsProbe;
  const dir = mkdtempSync(join(tmpdir(), "exm-tmpfs-probe-"));
  const m = spawnSync(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir], {
    stdout: "pipe",
    stderr: "pipe",
  });
  if (m.exitCode === 0) {
    spawnSync(["umount", dir]);
    tmpfsProbe = null;
  } else {
    tmpfsProbe = `cannot mount a tmpfs: ${m.stderr.toString().trim() || `mount exited ${m.exitCode}`}`;
  }
  rmSync(dir, { recursive: true, force: true });
  return tmpfsProbe;
}

/**
 * Mounts a tmpfs of sizeBytes on a fresh temporary directory, runs fn with
 * it, and unmounts and removes it afterwards, also when fn throws. With
 * ramfs: a ramfs instead (no size limit, no fallocate, no hole punching: a
 * filesystem exm cannot reserve disk on), mounted the same way.
 */
export async function withTmpfs<T>(
  sizeBytes: number,
  fn: (dir: string) => Promise<T>,
  opts: { noexec?: boolean; ramfs?: boolean } = {},
): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), "exm-tmpfs-"));
  const fs = opts.ramfs ? "ramfs" : "tmpfs";
  const options = opts.ramfs ? ["mode=0777"] : [`size=${sizeBytes}`, "mode=0777"];
  if (opts.noexec) options.push("noexec");
  const m = spawnSync(["mount", "-t", fs, "-o", options.join(","), fs, dir], {
    stdout: "pipe",
    stderr: "pipe",
  });
  if (m.exitCode !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`mount ${fs} on ${dir} failed: ${m.stderr.toString()}`);
  }
  try {
    return await fn(dir);
  } finally {
    for (let i = 0; i < 50; i++) {
      const u = spawnSync(["umount", dir], { stdout: "pipe", stderr: "pipe" });
      if (u.exitCode === 0) break;
      await Bun.sleep(100); // busy: a killed process may still be exiting
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

/* ---- Files and disks --------------------------------------------------------------- */

/** A fresh directory for one test's EXM_DIR. */
export function freshDir(prefix = "exm-data-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** True when dir has no entries. */
export function dirIsEmpty(dir: string): boolean {
  return readdirSync(dir).length === 0;
}

/** Entries of dir, for assertion messages. */
export function listDir(dir: string): string[] {
  return readdirSync(dir);
}

/** Bytes allocated on disk for a file (st_blocks * 512). */
export function diskUsage(path: string): number {
  return (statSync(path) as unknown as { blocks: number }).blocks * 512;
}

/** Bytes in use on the filesystem holding path (total - free). */
export function fsUsed(path: string): number {
  const s = statfsSync(path);
  return (s.blocks - s.bfree) * s.bsize;
}

/** Bytes available to an unprivileged user on the filesystem holding path. */
export function fsAvail(path: string): number {
  const s = statfsSync(path);
  return s.bavail * s.bsize;
}

/** Waits until cond() holds or timeoutMs passes; returns the last cond(). */
export async function waitFor(cond: () => boolean, timeoutMs = 5000, stepMs = 50): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (cond()) return true;
    await Bun.sleep(stepMs);
  }
  return cond();
}

/** The real python3 binary (not a pyenv shim script), or null. */
export function python3(): string | null {
  const r = spawnSync(["python3", "-c", "import sys; print(sys.executable)"], {
    stdout: "pipe",
    stderr: "pipe",
    env: cleanEnv(),
  });
  if (r.exitCode !== 0) return null;
  const p = r.stdout.toString().trim();
  return p && existsSync(p) ? p : null;
}
