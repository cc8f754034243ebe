/**
 * Helpers for exm's benchmarks: compiling the C workloads, running them
 * (plain, preloaded, inside a memory cgroup), their command-line options, and
 * statistics. Running a program, its clean environment, memory cgroups and
 * parsing key=value output are the tests' (tests/support/sys.ts, used or
 * re-exported here); what is the benchmarks' own is holding every child and
 * cgroup so that an interrupted run (SIGINT) leaves none behind.
 */
import { spawn, spawnSync } from "bun";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { ExmError } from "../src/errors";
import { parseSize } from "../src/options";
import {
  ROOT,
  removeCgroupsNow,
  run as sysRun,
  runInCgroup as sysRunInCgroup,
  type RunResult as SysRunResult,
} from "../tests/support/sys";

export { alive, cgroupAvailable, cleanEnv, EXM, kv, ROOT } from "../tests/support/sys";
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

/* ---- command-line options ------------------------------------------------------------ */

/** The options arg() was asked for, with their defaults (for checkArgs). */
const asked = new Map<string, string>();

/** The value of `--name` on the command line, or def. */
export function arg(name: string, def: string): string {
  asked.set(name, def);
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1]! : def;
}

/**
 * After a script's last arg(), before it does anything: `--help` prints the
 * options arg() was asked for, with their defaults, and exits 0; an option
 * no arg() asked for, or one without its value, ends the script with one
 * line, status 2 (a typo must not run a long benchmark with the defaults).
 */
export function checkArgs(): void {
  const script = `bun bench/${basename(process.argv[1] ?? "bench")}`;
  const argv = process.argv.slice(2);
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(`usage: ${script} ${[...asked].map(([k, v]) => `[--${k} ${v || "VALUE"}]`).join(" ")}`);
    console.log("(what each does: the opening comment of the file)");
    process.exit(0);
  }
  for (let i = 0; i < argv.length; i += 2) {
    const a = argv[i]!;
    const known = a.startsWith("--") && asked.has(a.slice(2));
    if (known && i + 1 < argv.length) continue;
    console.error(`${script}: ${known ? `${a} needs a value` : `unknown option ${a}`} (--help lists them)`);
    process.exit(2);
  }
}

/**
 * A size given to a benchmark (512M, 4G, 1.5GiB: the grammar of exm's own
 * options), in bytes. A bad one ends the benchmark with one line, status 2.
 */
export function sizeArg(text: string, what: string): number {
  try {
    return Number(parseSize(text, what));
  } catch (e) {
    if (!(e instanceof ExmError)) throw e;
    console.error(`${basename(process.argv[1] ?? "bench")}: ${e.message}`);
    process.exit(2);
  }
}

/* ---- memory cgroups, and cleaning up when interrupted ------------------------------ */

/** Removes every cgroup this process created (for signal handlers). */
export function cleanupCgroups(): void {
  removeCgroupsNow();
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
 * tests/support/sys.ts's runInCgroup (a fresh memory cgroup limited to
 * limitBytes, removed afterwards), its child held in liveChildren. swap:
 * whether the cgroup may use swap (for the comparison with a swap file).
 */
export function runInCgroup(
  limitBytes: number,
  argv: string[],
  env: Record<string, string | undefined> = {},
  opts: { timeoutMs?: number; swap?: boolean } = {},
): Promise<RunResult> {
  return sysRunInCgroup(limitBytes, argv, { env, timeoutMs: opts.timeoutMs, swap: opts.swap, live: liveChildren });
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

/** "median (min-max)" of the numbers among xs, or "-" when there are none. */
export function fmtRange(xs: number[]): string {
  const s = summarize(xs);
  return s.n ? `${fmt(s.median)} (${fmt(s.min)}-${fmt(s.max)})` : "-";
}

/** The load average over the last minute (recorded with each round). */
export function loadavg(): number {
  return Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0]);
}

const T0 = performance.now();
/** A progress line on stderr, stamped with the seconds since the benchmark started. */
export function log(m: string): void {
  console.error(`[${((performance.now() - T0) / 1000).toFixed(0).padStart(5)}s] ${m}`);
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
