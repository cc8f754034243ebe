/**
 * Helpers for exm's benchmarks: compiling the C workloads, running them
 * (plain, preloaded, inside a memory cgroup), and statistics. Running a
 * program, its clean environment and parsing its key=value output are the
 * tests' (tests/support/sys.ts, re-exported here); the memory cgroups stay
 * the benchmarks' own: they may allow swap, report the peak, and are removed
 * synchronously from a signal handler.
 */
import { spawn, spawnSync } from "bun";
import {
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  rmdirSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { basename, join, resolve } from "node:path";
import { ROOT, run as sysRun, type RunResult as SysRunResult } from "../tests/support/sys";

export { cleanEnv, EXM, kv, ROOT } from "../tests/support/sys";
export const LIB = resolve(process.env.EXM_BENCH_LIB || join(ROOT, "build", "libexm.so"));
export const C_DIR = join(ROOT, "bench", "c");
export const OUT_DIR = join(ROOT, "build", "bench");
export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

/* ---- compiling ------------------------------------------------------------- */

function mtime(p: string): number {
  try {
    return statSync(p).mtimeMs;
  } catch {
    return 0;
  }
}

/**
 * Compiles bench/c/<name>.c with gcc -O2 (cached on the mtimes of the source,
 * the headers next to it, tests/c/size.h and exm.h) and returns the executable's path.
 */
export function compile(name: string): string {
  const src = join(C_DIR, `${name}.c`);
  const deps = [
    src,
    join(ROOT, "native", "exm.h"),
    join(ROOT, "tests", "c", "size.h"),
    ...readdirSync(C_DIR)
      .filter((f) => f.endsWith(".h"))
      .map((f) => join(C_DIR, f)),
  ];
  const out = join(OUT_DIR, name);
  if (existsSync(out) && deps.every((d) => mtime(d) <= mtime(out))) return out;
  mkdirSync(OUT_DIR, { recursive: true });
  const tmp = `${out}.tmp-${process.pid}`;
  const argv = ["gcc", "-O2", "-g", "-Wall", "-Werror", "-pthread", "-fno-builtin-malloc",
    "-fno-builtin-calloc", "-fno-builtin-free", "-I", join(ROOT, "native"), "-o", tmp, src, "-ldl"];
  const r = spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) {
    rmSync(tmp, { force: true });
    throw new Error(`compile failed: ${argv.join(" ")}\n${r.stderr.toString()}`);
  }
  renameSync(tmp, out);
  return out;
}

/* ---- running ------------------------------------------------------------------ */

export type RunResult = SysRunResult & { oomKilled?: boolean; maxUsage?: number };

/** Live children, killed if the benchmark is interrupted. */
export const liveChildren = new Set<ReturnType<typeof spawn>>();

/** tests/support/sys.ts's run (clean environment plus env), its child held in liveChildren. */
export function run(
  argv: string[],
  env: Record<string, string | undefined> = {},
  timeoutMs?: number,
): Promise<RunResult> {
  return sysRun(argv, { env, timeoutMs, live: liveChildren });
}

/* ---- memory cgroups (v1 or v2) --------------------------------------------------- */

const CG_PREFIX = "exm-bench-";
let cgProbe: { base: string; v: 1 | 2 } | string | undefined;

function cgKind(): { base: string; v: 1 | 2 } | string {
  if (cgProbe !== undefined) return cgProbe;
  if (process.platform !== "linux") return (cgProbe = "not Linux");
  const cands: { base: string; v: 1 | 2 }[] = [];
  if (existsSync("/sys/fs/cgroup/memory/memory.limit_in_bytes") || existsSync("/sys/fs/cgroup/memory/cgroup.procs"))
    cands.push({ base: "/sys/fs/cgroup/memory", v: 1 });
  if (existsSync("/sys/fs/cgroup/cgroup.controllers")) cands.push({ base: "/sys/fs/cgroup", v: 2 });
  const why: string[] = [];
  for (const c of cands) {
    removeStaleCgroups(c.base);
    const dir = join(c.base, `${CG_PREFIX}probe-${process.pid}`);
    try {
      mkdirSync(dir);
    } catch (e) {
      why.push(`cannot create a cgroup in ${c.base}: ${(e as Error).message}`);
      continue;
    }
    try {
      writeFileSync(join(dir, c.v === 1 ? "memory.limit_in_bytes" : "memory.max"), String(256 * MiB));
      return (cgProbe = c);
    } catch (e) {
      why.push(`cannot limit memory in ${c.base}: ${(e as Error).message}`);
    } finally {
      try {
        rmdirSync(dir);
      } catch {}
    }
  }
  return (cgProbe = why.join("; ") || "no memory cgroup hierarchy mounted");
}

function cgPids(dir: string): number[] {
  try {
    return readFileSync(join(dir, "cgroup.procs"), "utf8").split("\n").filter(Boolean).map(Number);
  } catch {
    return [];
  }
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

function removeStaleCgroups(base: string): void {
  let names: string[] = [];
  try {
    names = readdirSync(base);
  } catch {}
  for (const n of names) {
    const m = new RegExp(`^${CG_PREFIX}(?:probe-)?(\\d+)-`).exec(n);
    if (!m) continue;
    if (alive(Number(m[1]))) continue; // its benchmark is still running
    if (cgPids(join(base, n)).length === 0) {
      try {
        rmdirSync(join(base, n));
      } catch {}
    }
  }
}

/** null when memory cgroups can be created and limited, else the reason. */
export function cgroupAvailable(): string | null {
  const k = cgKind();
  return typeof k === "string" ? k : null;
}

const liveCgroups = new Set<string>();

function removeCgroupSync(dir: string): void {
  for (let i = 0; i < 200; i++) {
    for (const pid of cgPids(dir)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {}
    }
    try {
      rmdirSync(dir);
      liveCgroups.delete(dir);
      return;
    } catch {
      Bun.sleepSync(25);
    }
  }
  console.error(`warning: could not remove cgroup ${dir}`);
}

/** Removes every cgroup this process created (for signal handlers). */
export function cleanupCgroups(): void {
  for (const d of [...liveCgroups]) removeCgroupSync(d);
}

/** Kills the children still running (for signal handlers). */
export function killChildren(): void {
  for (const p of liveChildren) {
    try {
      p.kill("SIGKILL");
    } catch {}
  }
}

/**
 * A benchmark's clean-up: kills its children, removes its cgroups, then runs
 * `more`; at exit, and on SIGINT, SIGTERM or SIGHUP (saying so, exit 130).
 * Returns it, for a caller that cleans up early.
 */
export function cleanUpOnExit(more: () => void = () => {}): () => void {
  const all = () => {
    killChildren();
    cleanupCgroups();
    more();
  };
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const)
    process.on(sig, () => {
      console.error(`\n${sig}: cleaning up`);
      all();
      process.exit(130);
    });
  process.on("exit", all);
  return all;
}

/**
 * Runs argv inside a fresh memory cgroup limited to limitBytes. swap: whether
 * the cgroup may use swap (v1: memsw limit left unlimited and swappiness kept;
 * otherwise memory+swap is capped at the limit).
 */
export async function runInCgroup(
  limitBytes: number,
  argv: string[],
  env: Record<string, string | undefined> = {},
  opts: { timeoutMs?: number; swap?: boolean } = {},
): Promise<RunResult> {
  const k = cgKind();
  if (typeof k === "string") throw new Error(`memory cgroups unavailable: ${k}`);
  const dir = join(k.base, `${CG_PREFIX}${process.pid}-${Math.random().toString(36).slice(2, 10)}`);
  mkdirSync(dir);
  liveCgroups.add(dir);
  try {
    if (k.v === 1) {
      writeFileSync(join(dir, "memory.limit_in_bytes"), String(limitBytes));
      if (!opts.swap && existsSync(join(dir, "memory.memsw.limit_in_bytes")))
        writeFileSync(join(dir, "memory.memsw.limit_in_bytes"), String(limitBytes));
      if (opts.swap && existsSync(join(dir, "memory.swappiness"))) {
        try {
          writeFileSync(join(dir, "memory.swappiness"), "60");
        } catch {}
      }
    } else {
      writeFileSync(join(dir, "memory.max"), String(limitBytes));
      if (existsSync(join(dir, "memory.swap.max")))
        writeFileSync(join(dir, "memory.swap.max"), opts.swap ? "max" : "0");
    }
    const procs = join(dir, "cgroup.procs");
    const r = await run(["sh", "-c", `echo $$ > '${procs}' && exec "$@"`, "sh", ...argv], env, opts.timeoutMs);
    const oomFile = k.v === 1 ? "memory.oom_control" : "memory.events";
    const m = /^oom_kill (\d+)$/m.exec(readFileSync(join(dir, oomFile), "utf8"));
    let maxUsage = 0;
    try {
      maxUsage = Number(readFileSync(join(dir, k.v === 1 ? "memory.max_usage_in_bytes" : "memory.peak"), "utf8").trim());
    } catch {}
    r.oomKilled = (m ? Number(m[1]) : 0) > 0 || (r.signal === "SIGKILL" && !r.timedOut);
    r.maxUsage = maxUsage;
    return r;
  } finally {
    removeCgroupSync(dir);
  }
}

/* ---- statistics -------------------------------------------------------------------- */

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export interface Summary {
  median: number;
  min: number;
  max: number;
  n: number;
  samples: number[];
}

export function summarize(xs: number[]): Summary {
  const v = xs.filter((x) => Number.isFinite(x));
  return {
    median: median(v),
    min: v.length ? Math.min(...v) : NaN,
    max: v.length ? Math.max(...v) : NaN,
    n: v.length,
    samples: xs,
  };
}

/** Three significant digits or so: 12345, 1234, 123, 12.3, 1.23, 0.123. */
export function fmt(x: number, digits?: number): string {
  if (!Number.isFinite(x)) return "-";
  if (digits !== undefined) return x.toFixed(digits);
  const a = Math.abs(x);
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  if (a >= 1) return x.toFixed(2);
  return x.toFixed(3);
}

/** A shell-quoted command line for the record. */
export function shellLine(argv: string[], env: Record<string, string | undefined> = {}): string {
  const q = (s: string) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);
  const rel = (s: string) => (s.startsWith(ROOT + "/") ? s.slice(ROOT.length + 1) : s);
  const e = Object.entries(env)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${q(rel(v!))}`);
  return [...e, ...argv.map((a) => q(rel(a)))].join(" ");
}

export function baseName(p: string): string {
  return basename(p);
}
