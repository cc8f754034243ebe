/**
 * Helpers shared by the tests that drive libexm through the C programs in
 * tests/c/: a fresh data directory per test that must be empty afterwards,
 * and assertions that print the whole run when they fail.
 */
import { rmSync } from "node:fs";
import {
  type CgroupResult,
  type RunResult,
  cProgram,
  dirIsEmpty,
  explain,
  freshDir,
  libAvailable,
  listDir,
  runWithLib,
} from "./sys";

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

/** Why the library tests cannot run (null when they can). Printed once. */
export const LIB_MISSING = libAvailable();
if (LIB_MISSING) console.warn(`skip libexm tests: ${LIB_MISSING}`);

/**
 * Runs fn with a fresh EXM_DIR, then asserts that the directory is empty
 * (an arena's file is unlinked from birth: nothing may ever appear there).
 */
export async function withDataDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = freshDir();
  try {
    const out = await fn(dir);
    if (!dirIsEmpty(dir)) throw new Error(`data directory ${dir} not empty: ${listDir(dir).join(", ")}`);
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Throws with the full run (status, stdout, stderr) unless it exited 0 and printed `marker`. */
export function assertOk(r: RunResult | CgroupResult, marker?: string, what = "run"): void {
  if (r.code !== 0 || (marker && !r.stdout.includes(marker)) || ("timedOut" in r && r.timedOut)) {
    throw new Error(
      `${what}: expected exit 0${marker ? ` and "${marker}"` : ""}${r.timedOut ? " (TIMED OUT)" : ""}\n${explain(r)}`,
    );
  }
}

/** Throws unless cond, with the run attached. */
export function assertRun(cond: boolean, r: RunResult | CgroupResult, what: string): void {
  if (!cond) throw new Error(`${what}\n${explain(r)}`);
}

/** A thresholds list as the tests use them: [label, EXM_THRESHOLD or undefined]. */
export const THRESHOLDS: [string, string | undefined][] = [
  ["0", "0"],
  ["4096", "4096"],
  ["1M", "1M"],
  ["default", undefined],
];

/** Runs tests/c/<name> preloaded in a fresh data dir; asserts exit 0 and "<name> ok". */
export async function runC(
  name: string,
  args: string[] = [],
  env: Record<string, string | undefined> = {},
  timeoutMs = 60_000,
): Promise<RunResult> {
  const bin = cProgram(name);
  return withDataDir(async (dir) => {
    const r = await runWithLib([bin, ...args], { EXM_DIR: dir, ...env }, { timeoutMs });
    assertOk(r, `${name} ok`, `${name} ${args.join(" ")} with ${JSON.stringify(env)}`);
    return r;
  });
}
