/**
 * A swap file for the benchmarks' "anonymous memory + swap on the same disk"
 * baseline: made just before a run (fallocate, mkswap, swapon) in the
 * benchmark's data directory, swapoff'd and removed right after it, and also
 * on failure or a signal (register swapOff with cleanUpOnExit). Files left by
 * a benchmark that was SIGKILLed (named <prefix>-<pid>.swap, pid gone) are
 * removed by removeStale. Needs root.
 */
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { spawnSync } from "bun";
import { alive } from "./lib.ts";

let swapFile: string | null = null;

const swapping = (f: string) => readFileSync("/proc/swaps", "utf8").includes(f);

/** Turns a swap file of `size` bytes on in dir (throws with the failing step). */
export function swapOn(dir: string, prefix: string, size: number): void {
  const f = join(dir, `${prefix}-${process.pid}.swap`);
  swapFile = f;
  for (const argv of [["fallocate", "-l", String(size), f], ["chmod", "600", f], ["mkswap", f], ["swapon", f]]) {
    const r = spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
    if (r.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr.toString().trim()}`);
  }
}

/** Turns this benchmark's swap file off and removes it (a no-op when there is none). */
export function swapOff(): void {
  if (!swapFile) return;
  const f = swapFile;
  spawnSync(["swapoff", f], { stdout: "pipe", stderr: "pipe" });
  if (swapping(f)) {
    console.error(`warning: swapoff ${f} failed; the file stays`);
    return;
  }
  rmSync(f, { force: true });
  swapFile = null;
}

/** Files named <prefix>-<pid>.<ext> in dir whose benchmark is gone: swapped off and removed. */
export function removeStale(dir: string, prefix: string, exts: string[]): void {
  const re = new RegExp(`^${prefix}-(\\d+)\\.(${exts.join("|")})$`);
  for (const n of readdirSync(dir)) {
    const m = re.exec(n);
    if (!m || alive(Number(m[1]))) continue;
    const f = join(dir, n);
    if (swapping(f)) spawnSync(["swapoff", f]);
    if (!swapping(f)) rmSync(f, { force: true });
  }
}
