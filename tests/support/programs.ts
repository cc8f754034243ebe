/**
 * Helpers for the reliability suite (programs, faults, stress and security
 * tests): programs nobody here wrote, run without exm and with libexm
 * preloaded at several thresholds, outputs compared byte for byte; tools
 * installed when missing; generated input files; running as another user.
 *
 * Every served run gets a fresh EXM_DIR that must be empty afterwards, and
 * EXM_VERBOSE=1, so that each process that makes an arena says so on stderr:
 * that is how a test knows the program was really served (children that exec
 * inherit LD_PRELOAD and say so too). Those lines are taken out before
 * stderr is compared; any other line from exm fails the run.
 */
import { spawnSync } from "bun";
import { chmodSync, chownSync, closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LIB, type RunOptions, type RunResult, aptInstall, cleanEnv, dirIsEmpty, explain, freshDir, listDir, run } from "./sys";

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;
export const IS_ROOT = process.getuid?.() === 0;

/** The thresholds every real program runs at, besides without exm. */
export const PROGRAM_THRESHOLDS: [label: string, value: string | undefined][] = [
  ["0", "0"],
  ["4K", "4096"],
  ["default", undefined],
];

/* ---- Tools ------------------------------------------------------------------- */

/** Absolute path of a command on PATH, or null. */
export function which(cmd: string): string | null {
  const r = spawnSync(["sh", "-c", 'command -v "$1"', "sh", cmd], { stdout: "pipe", stderr: "pipe", env: cleanEnv() });
  const p = r.stdout.toString().trim();
  return r.exitCode === 0 && p.startsWith("/") ? p : null;
}

/**
 * Makes sure every command in `cmds` (command -> Debian package) is there,
 * installing the missing ones with apt-get when we are root (CI runs on a
 * fresh machine). Returns null when all are present, else why not.
 */
export function ensureTools(cmds: Record<string, string>): string | null {
  const missing = Object.entries(cmds).filter(([cmd]) => !which(cmd));
  if (missing.length === 0) return null;
  const pkgs = [...new Set(missing.map(([, pkg]) => pkg))];
  const why = aptInstall(pkgs, "tests", () => missing.every(([cmd]) => which(cmd)));
  return why && `missing ${missing.map(([c]) => c).join(", ")}: ${why}`;
}

/** The real python3 binary (the pyenv shim is a bash script), or null. */
export function realPython(): string | null {
  const r = spawnSync(["python3", "-c", "import sys; print(sys.executable)"], { stdout: "pipe", stderr: "pipe", env: cleanEnv() });
  const p = r.stdout.toString().trim();
  return r.exitCode === 0 && p && existsSync(p) ? p : null;
}

/* ---- Scratch space ---------------------------------------------------------------- */

/** A fresh scratch directory, removed by the returned function. */
export function scratch(prefix = "exm-prog-"): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/* ---- Generated inputs ----------------------------------------------------------------- */

/** xorshift32, so that generated files are the same on every machine. */
export function xorshift(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}

/**
 * Writes `lines` text lines to path and returns its size in bytes.
 * - "random": "<12 hex digits> <line number>" in random order;
 * - "nearly-sorted": a 12-digit key that grows with the line number plus a
 *   little jitter (like a log file's timestamps), then a random word.
 */
export function writeLines(path: string, lines: number, kind: "random" | "nearly-sorted", seed = 0x9e3779b9): number {
  const rnd = xorshift(seed);
  const fd = openSync(path, "w");
  const CHUNK = 1 << 20;
  const buf = Buffer.allocUnsafe(CHUNK + 256);
  const hex = "0123456789abcdef";
  let off = 0;
  let total = 0;
  for (let i = 0; i < lines; i++) {
    if (kind === "random") {
      let a = rnd();
      let b = rnd();
      for (let k = 0; k < 8; k++, a >>>= 4) buf[off++] = hex.charCodeAt(a & 15);
      for (let k = 0; k < 4; k++, b >>>= 4) buf[off++] = hex.charCodeAt(b & 15);
      off += buf.write(` ${i}\n`, off, "latin1");
    } else {
      const key = i * 64 + (rnd() % 4096);
      off += buf.write(`${String(key).padStart(12, "0")} ${(rnd() >>> 8).toString(36)}\n`, off, "latin1");
    }
    if (off >= CHUNK) {
      writeSync(fd, buf, 0, off);
      total += off;
      off = 0;
    }
  }
  writeSync(fd, buf, 0, off);
  closeSync(fd);
  return total + off;
}

/* ---- Served runs --------------------------------------------------------------------- */

export interface ServedResult extends RunResult {
  /** Processes that made a file-backed arena (one EXM_VERBOSE line each). */
  arenas: number;
  /** Other lines exm printed (warnings): a correct run has none. */
  exmLines: string[];
  /** stderr without exm's lines. */
  programStderr: string;
}

const ARENA_LINE = /^exm: pid \d+: file-backed arena of [^\n]* in [^\n]*$/;
/** --verbose news of the advisor switching a block's advice: information, not a complaint. */
const ADVICE_LINE = /^exm: advice for a block of [^\n]*: (random|sequential)$/;
/** --verbose telling where a large block went (native/trace.c): expected, not a problem. */
const BLOCK_LINE = /^exm: pid \d+: [\d.]+ [KMGT]?i?B file-backed at offset [^\n]* of the arena in [^\n]*$/;

/** Splits exm's lines out of a stderr text. */
export function splitExmLines(stderr: string): { arenas: number; exmLines: string[]; rest: string } {
  let arenas = 0;
  const exmLines: string[] = [];
  const rest: string[] = [];
  const lines = stderr.split("\n");
  const last = lines.pop(); // "" after a final newline
  for (const line of lines) {
    if (ARENA_LINE.test(line)) arenas++;
    else if (ADVICE_LINE.test(line) || BLOCK_LINE.test(line)) continue;
    else if (line.startsWith("exm: ")) exmLines.push(line);
    else rest.push(line);
  }
  return { arenas, exmLines, rest: rest.map((l) => `${l}\n`).join("") + (last ?? "") };
}

/**
 * Runs argv with libexm preloaded at `threshold` (undefined: the library's
 * default) in a fresh data directory, and checks that the directory is empty
 * afterwards (every backing file is unlinked from birth).
 */
export async function runServed(
  argv: string[],
  threshold: string | undefined,
  opts: RunOptions = {},
): Promise<ServedResult> {
  const dataDir = freshDir();
  try {
    const r = await run(argv, {
      ...opts,
      env: { ...opts.env, LD_PRELOAD: LIB, EXM_DIR: dataDir, EXM_VERBOSE: "1", EXM_THRESHOLD: threshold },
    });
    if (!dirIsEmpty(dataDir)) {
      throw new Error(`data directory ${dataDir} not empty after the run: ${listDir(dataDir).join(", ")}\n${explain(r)}`);
    }
    const s = splitExmLines(r.stderr);
    return { ...r, arenas: s.arenas, exmLines: s.exmLines, programStderr: s.rest };
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

export interface CompareOptions extends RunOptions {
  /** Applied to stdout before comparing (e.g. to drop timings). */
  normalize?: (stdout: string) => string;
  /** Compare stderr too (exm's own lines taken out). */
  compareStderr?: boolean;
  /** Called before each run with a fresh working directory; returns the argv. */
  prepare?: (cwd: string) => string[] | Promise<string[]>;
  /** Thresholds at which the program must have made at least one arena. */
  mustServe?: string[];
}

export interface Comparison {
  plain: RunResult;
  served: [label: string, r: ServedResult][];
  /** "plain 1.2 s, 0: 2.3 s (4 arenas), ..." */
  summary: string;
}

function clip(s: string, n = 4000): string {
  return s.length > n ? `${s.slice(0, n / 2)}\n[... ${s.length - n} bytes ...]\n${s.slice(-n / 2)}` : s;
}

/** First differing line of two texts, for messages. */
export function firstDifference(a: string, b: string): string {
  const la = a.split("\n");
  const lb = b.split("\n");
  for (let i = 0; i < Math.max(la.length, lb.length); i++) {
    if (la[i] !== lb[i]) return `line ${i + 1}:\n  without exm: ${JSON.stringify(la[i])}\n  with exm:    ${JSON.stringify(lb[i])}`;
  }
  return "(no line differs: a difference in the final newline)";
}

/**
 * Runs a program without exm, then preloaded at each of PROGRAM_THRESHOLDS,
 * each in a fresh working directory (prepare builds its inputs), and asserts
 * the same exit status and the same stdout (and stderr when asked) every
 * time, no warnings from exm, and an arena at the thresholds in mustServe.
 */
export async function compareRuns(what: string, argv: string[] | null, opts: CompareOptions = {}): Promise<Comparison> {
  const norm = opts.normalize ?? ((s: string) => s);
  const once = async (threshold: string | undefined, plain: boolean) => {
    const cwd = scratch();
    try {
      const args = opts.prepare ? await opts.prepare(cwd.dir) : argv!;
      const o = { ...opts, cwd: cwd.dir };
      return plain ? await run(args, o) : await runServed(args, threshold, o);
    } finally {
      cwd.remove();
    }
  };
  const plain = await once(undefined, true);
  if (plain.code !== 0 || plain.timedOut) throw new Error(`${what}: fails without exm\n${clip(explain(plain))}`);
  const served: [string, ServedResult][] = [];
  for (const [label, t] of PROGRAM_THRESHOLDS) {
    const r = (await once(t, false)) as ServedResult;
    served.push([label, r]);
    const where = `${what} at threshold ${label}`;
    if (r.code !== plain.code || r.signal || r.timedOut)
      throw new Error(`${where}: exit ${r.code} signal ${r.signal}${r.timedOut ? " (timed out)" : ""}, without exm ${plain.code}\n${clip(explain(r))}`);
    if (r.exmLines.length) throw new Error(`${where}: unexpected lines from exm:\n${r.exmLines.join("\n")}`);
    if ((opts.mustServe ?? ["0", "4K"]).includes(label) && r.arenas === 0)
      throw new Error(`${where}: no process made a file-backed arena (was the library loaded?)\n${clip(explain(r))}`);
    if (norm(r.stdout) !== norm(plain.stdout))
      throw new Error(`${where}: stdout differs from the run without exm at ${firstDifference(norm(plain.stdout), norm(r.stdout))}`);
    if (opts.compareStderr && r.programStderr !== plain.stderr)
      throw new Error(`${where}: stderr differs at ${firstDifference(plain.stderr, r.programStderr)}`);
  }
  const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  const summary =
    `${what}: without exm ${secs(plain.ms)}; ` +
    served.map(([l, r]) => `${l}: ${secs(r.ms)} (${r.arenas} arena${r.arenas === 1 ? "" : "s"})`).join(", ");
  return { plain, served, summary };
}

/* ---- Other users ------------------------------------------------------------------------ */

/**
 * uids for "another user" in the security tests: unlikely to exist, so no
 * real account's files are touched (setpriv needs no passwd entry).
 */
export const VICTIM_UID = 54321;
export const ATTACKER_UID = 54322;

/** null when we can run programs as other uids (root and setpriv), else why not. */
export function otherUsersAvailable(): string | null {
  if (!IS_ROOT) return "not root";
  if (!which("setpriv")) return "no setpriv (util-linux)";
  return null;
}

/** argv prefix running the rest as uid:gid with no supplementary groups. */
export function asUser(uid: number, argv: string[]): string[] {
  return ["setpriv", `--reuid=${uid}`, `--regid=${uid}`, "--clear-groups", "--", ...argv];
}

/** A copy of `file` in `dir` (created 0755) that every uid can read and run. */
export function publicCopy(file: string, dir: string): string {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  chmodSync(dir, 0o755);
  const out = join(dir, `${++copies}-${file.split("/").pop()}`);
  copyFileSync(file, out);
  chmodSync(out, 0o755);
  return out;
}
let copies = 0;

/** A private (0700) directory owned by uid, e.g. a HOME. */
export function ownedDir(path: string, uid: number, mode = 0o700): string {
  mkdirSync(path, { recursive: true });
  chownSync(path, uid, uid);
  chmodSync(path, mode);
  return path;
}
