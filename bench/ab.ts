/**
 * bench/ab.ts: two (or more) builds of the library against each other and
 * glibc on one allocator workload, in rotating rounds (issue 14's A/B runs).
 *
 *   bun bench/ab.ts [--rounds N] [--threshold T] --lib A.so --lib B.so WORKLOAD [ARGS...]
 *
 * WORKLOAD is `small` (bench/c/small.c) or a mode of bench/c/alloc.c
 * (larson, xmalloc, cache-scratch, cache-thrash, mstress, realloc); ARGS go
 * to it (--threads N, --ops N). Each round runs glibc and every library
 * (LD_PRELOAD, EXM_THRESHOLD=T, 0 unless given), the order rotating by one
 * each round, and takes the CPU time the workload reports (cpu_s, user +
 * system of its timed part) and its wall time (seconds) over glibc's in the
 * same round. Prints each library's median (min-max) of those ratios. A library is built by hand:
 * e.g. `git worktree add /tmp/base <commit>`, `bun build.ts` there, copy its
 * build/libexm.so.
 */
import { existsSync } from "node:fs";
import { compile, kv, run, summarize } from "./lib.ts";

const fail = (m: string): never => {
  console.error(`bun bench/ab.ts: ${m}`);
  process.exit(2);
};
const argv = process.argv.slice(2);
let rounds = 10, threshold = "0";
const libs: string[] = [];
while (argv[0]?.startsWith("--")) {
  const o = argv.shift()!, v = argv.shift();
  if (v === undefined) fail(`${o} needs a value`);
  if (o === "--rounds") rounds = /^[1-9][0-9]*$/.test(v!) ? Number(v) : fail(`--rounds takes a positive whole number, not ${v}`);
  else if (o === "--threshold") threshold = v!;
  else if (o === "--lib") libs.push(v!);
  else fail(`unknown option ${o}`);
}
const workload = argv.shift();
if (!workload || !libs.length) {
  console.error("usage: bun bench/ab.ts [--rounds N] [--threshold T] --lib A.so [--lib B.so ...] WORKLOAD [ARGS...]");
  process.exit(2);
}
for (const l of libs) if (!existsSync(l)) fail(`no library at ${l}`);
const cmd = workload === "small" ? [compile("small"), ...argv] : [compile("alloc"), workload, ...argv];

const variants = ["glibc", ...libs];
const ratios = new Map<string, number[]>(libs.map((l) => [l, []]));
const walls = new Map<string, number[]>(libs.map((l) => [l, []]));
for (let r = 0; r < rounds; r++) {
  const order = variants.map((_, i) => variants[(i + r) % variants.length]!);
  const cpu = new Map<string, number>(), wall = new Map<string, number>();
  for (const v of order) {
    const env: Record<string, string> = v === "glibc" ? {} : { LD_PRELOAD: v, EXM_THRESHOLD: threshold };
    const res = await run(cmd, env, 600_000);
    const out = kv(res.stdout), c = Number(out.cpu_s), w = Number(out.seconds);
    if (res.code !== 0 || !Number.isFinite(c) || !Number.isFinite(w)) fail(`${cmd.join(" ")} under ${v}: exit ${res.code ?? res.signal}: ${res.stderr.trim().split("\n")[0]}`);
    cpu.set(v, c);
    wall.set(v, w);
  }
  for (const l of libs) {
    ratios.get(l)!.push(cpu.get(l)! / cpu.get("glibc")!);
    walls.get(l)!.push(wall.get(l)! / wall.get("glibc")!);
  }
}
const fmt = (xs: number[]) => {
  const s = summarize(xs);
  return `${s.median.toFixed(2)} (${s.min.toFixed(2)}-${s.max.toFixed(2)})`;
};
console.log(`${cmd.join(" ")}: over glibc's, ${rounds} rotating rounds, threshold ${threshold}`);
for (const l of libs) console.log(`${l}: CPU ${fmt(ratios.get(l)!)}, wall ${fmt(walls.get(l)!)}`);
