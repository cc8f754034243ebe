/**
 * bench/alloc.ts: the allocator's own cost (issue 14). `npm run bench:alloc`.
 *
 *   bun bench/alloc.ts [--rounds N] [--threads 1,2,8] [--only NAME,NAME]
 *                      [--no-instr] [--quick] [--out FILE]
 *
 * Time: every workload of bench/c/alloc.c and bench/c/small.c (the
 * small-object churn), at each thread count, under three variants in the same
 * round: glibc (no preload), exm at its default threshold (LD_PRELOAD of
 * build/libexm.so: every request passes through to glibc) and exm at
 * threshold 0 (everything in the file-backed arena). The order of the three
 * rotates from cell to cell and round to round, so that the shared machine's
 * noise hits them alike. The figure of a round is the variant's time per
 * operation over glibc's in that round (wall, and CPU user+system); the report
 * gives the median and range of the per-round ratios. The total work of a
 * workload is the same at every thread count (split among the threads), so 8
 * threads on 2 cores is an oversubscribed pool doing the same job.
 *
 * Disk: at threshold 0 each run leaves its EXM_STATS record; the peak file
 * bytes reserved over the peak live bytes (usable sizes of the arena's live
 * blocks) is the waste of the arena (goal <= 1.3x). mstress also prints the
 * bytes its filled live set requested.
 *
 * Instructions: the single-thread churn (small.c) under valgrind
 * --tool=cachegrind, glibc vs a bare forwarding shim (bench/c/shim.c, the
 * floor of any interposer) vs exm at its default threshold (goal <= 1.03x
 * glibc) and at threshold 0; per operation, as the difference to a
 * one-operation run (which takes out start-up).
 *
 * Results: bench/results/alloc.json (--quick: build/bench/results/alloc.json),
 * with the load average before, during and after (a shared machine), and its
 * chart next to it (alloc.svg, bench/chart.ts).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { spawnSync } from "bun";
import { chartAfterRun } from "./chart.ts";
import { C_DIR, LIB, OUT_DIR, ROOT, compile, fmt, killChildren, kv, median, run, shellLine } from "./lib.ts";

const args = process.argv.slice(2);
const opt = (name: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};
for (const a of args) {
  if (a === "--help" || a === "-h") {
    console.log("usage: bun bench/alloc.ts [--rounds N] [--threads 1,2,8] [--only NAME,NAME] [--no-instr] [--quick] [--out FILE]");
    process.exit(0);
  }
}
const QUICK = args.includes("--quick");
const ROUNDS = Number(opt("rounds") ?? (QUICK ? 1 : 5));
const THREADS = (opt("threads") ?? "1,2,8").split(",").map(Number);
const ONLY = opt("only")?.split(",");
const INSTR = !args.includes("--no-instr");
const OUT = resolve(opt("out") ?? (QUICK ? join(ROOT, "build", "bench", "results", "alloc.json") : join(ROOT, "bench", "results", "alloc.json")));
const SCALE = QUICK ? 20 : 1;
const INSTR_OPS = QUICK ? 20_000 : 1_000_000;
const TIMEOUT_MS = 300_000;
/** The disk-over-live ratio is reported for peak live sets of at least this. */
const MIN_LIVE = 16 * 2 ** 20;
if (!Number.isInteger(ROUNDS) || ROUNDS < 1 || THREADS.some((t) => !Number.isInteger(t) || t < 1 || t > 64)) {
  console.error("alloc.ts: --rounds wants a positive integer, --threads a list of 1-64");
  process.exit(2);
}
if (!existsSync(LIB)) {
  console.error(`alloc.ts: ${LIB} is not built (npm run build)`);
  process.exit(1);
}

/* ---- workloads and variants --------------------------------------------------------- */

interface Workload {
  name: string;
  what: string;
  /** Total operations (all threads). */
  ops: number;
  argv: (threads: number, ops: number) => string[];
}

function workloads(): Workload[] {
  const alloc = compile("alloc");
  const small = compile("small");
  const mode = (m: string) => (t: number, n: number) => [alloc, m, "--threads", String(t), "--ops", String(n)];
  const list: Workload[] = [
    // small.c counts operations per thread: give each its share of the total.
    { name: "small", what: "small-object churn (bench/c/small.c: malloc/realloc/free, 16 B-64 KiB, 8192 slots a thread)",
      ops: 4_000_000, argv: (t, n) => [small, "--threads", String(t), "--ops", String(Math.ceil(n / t))] },
    { name: "larson", what: "larson: replace random blocks of 8-1000 B, tables handed to a new thread every 20 000", ops: 10_000_000, argv: mode("larson") },
    { name: "xmalloc", what: "xmalloc: producers malloc batches of 1024 blocks of 16-512 B, consumers free them", ops: 8_000_000, argv: mode("xmalloc") },
    { name: "cache-scratch", what: "cache-scratch: threads free a block main allocated, then malloc/write/free 8 B", ops: 800_000_000, argv: mode("cache-scratch") },
    { name: "cache-thrash", what: "cache-thrash: threads malloc/write/free 8 B at the same time", ops: 800_000_000, argv: mode("cache-thrash") },
    { name: "mstress", what: "mstress: 200 000 live blocks of 16 B-64 KiB (~130 MB) churned, 1/16 swapped through a shared table", ops: 1_000_000, argv: mode("mstress") },
    { name: "realloc", what: "realloc growth: 32 vectors a thread grown from 8 B to 64 KiB (x1.5 or +16-128 B)", ops: 3_000_000, argv: mode("realloc") },
  ];
  return list.filter((w) => !ONLY || ONLY.includes(w.name)).map((w) => ({ ...w, ops: Math.max(1, Math.round(w.ops / SCALE)) }));
}

type VariantName = "glibc" | "exm" | "exm-t0";
const VARIANTS: VariantName[] = ["glibc", "exm", "exm-t0"];
const VARIANT_NOTE: Record<VariantName, string> = {
  glibc: "no preload",
  exm: "LD_PRELOAD=build/libexm.so, default threshold: every request passes through to glibc",
  "exm-t0": "LD_PRELOAD=build/libexm.so EXM_THRESHOLD=0: everything in the file-backed arena",
};

function env(v: VariantName, statsFile?: string): Record<string, string> {
  if (v === "glibc") return {};
  const e: Record<string, string> = { LD_PRELOAD: LIB };
  if (v === "exm-t0") {
    e.EXM_THRESHOLD = "0";
    if (statsFile) e.EXM_STATS = statsFile;
  }
  return e;
}

const loadavg = () => readFileSync("/proc/loadavg", "utf8").trim();
const log = (m: string) => console.error(`[${((performance.now() - T0) / 1000).toFixed(0).padStart(4)}s] ${m}`);
const T0 = performance.now();

for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(sig, () => {
    killChildren();
    process.exit(130);
  });
}

/* ---- time --------------------------------------------------------------------------- */

interface Sample {
  nsPerOp: number;       /* wall */
  cpuNsPerOp: number;    /* user + system */
  seconds: number;
  peakDisk?: number;
  peakLive?: number;
  liveReq?: number;
  error?: string;
}

interface Cell {
  workload: string;
  threads: number;
  samples: Record<VariantName, Sample[]>;
  cmd: Record<VariantName, string>;
}

async function runOnce(w: Workload, threads: number, v: VariantName, scratch: string): Promise<{ s: Sample; cmd: string }> {
  const ops = w.ops, argv = w.argv(threads, ops);
  const statsFile = join(scratch, `stats-${process.pid}.json`);
  rmSync(statsFile, { force: true });
  const e = env(v, statsFile);
  const cmd = shellLine(argv, env(v, v === "exm-t0" ? "stats.json" : undefined));
  const r = await run(argv, e, TIMEOUT_MS);
  const o = kv(r.stdout);
  const seconds = Number(o.seconds), cpu = Number(o.cpu_s);
  if (r.code !== 0 || !Number.isFinite(seconds)) {
    const why = r.timedOut ? `timed out after ${TIMEOUT_MS / 1000} s` : `exit ${r.code ?? r.signal}: ${(r.stderr || r.stdout).trim().slice(0, 300)}`;
    return { s: { nsPerOp: NaN, cpuNsPerOp: NaN, seconds: NaN, error: why }, cmd };
  }
  const s: Sample = { nsPerOp: (seconds / ops) * 1e9, cpuNsPerOp: (cpu / ops) * 1e9, seconds };
  if (o.live_req) s.liveReq = Number(o.live_req);
  if (v === "exm-t0" && existsSync(statsFile)) {
    const st = JSON.parse(readFileSync(statsFile, "utf8"));
    s.peakDisk = st.peakDiskReserved;
    s.peakLive = st.peakLiveBytes;
  }
  return { s, cmd };
}

interface Range { median: number; min: number; max: number; n: number }
function range(xs: number[]): Range {
  const v = xs.filter(Number.isFinite);
  return { median: median(v), min: v.length ? Math.min(...v) : NaN, max: v.length ? Math.max(...v) : NaN, n: v.length };
}
const rng = (r: Range, d = 2) => (r.n ? `${fmt(r.median, d)} (${fmt(r.min, d)}-${fmt(r.max, d)})` : "-");

/* ---- instructions ------------------------------------------------------------------------ */

interface Instr { name: string; cmd: string; startup: number; perOp: number; ratio?: number; note: string }

async function instructions(): Promise<Instr[] | string> {
  const vg = spawnSync(["sh", "-c", "command -v valgrind"], { stdout: "pipe" }).stdout.toString().trim();
  if (!vg) return "valgrind is not installed (apt-get install valgrind)";
  const small = compile("small");
  const shim = join(OUT_DIR, "shim.so");
  mkdirSync(OUT_DIR, { recursive: true });
  const cc = spawnSync(["gcc", "-O2", "-fPIC", "-shared", "-Wall", "-Werror", "-o", shim, join(C_DIR, "shim.c")], { stderr: "pipe" });
  if (cc.exitCode !== 0) throw new Error(`shim.c: ${cc.stderr.toString()}`);
  const vars: [string, Record<string, string>, string][] = [
    ["glibc", {}, "no preload"],
    ["shim", { LD_PRELOAD: shim }, "bench/c/shim.c: forwards to __libc_* and nothing else"],
    ["exm", { LD_PRELOAD: LIB }, "default threshold (pass-through)"],
    ["exm-t0", { LD_PRELOAD: LIB, EXM_THRESHOLD: "0" }, "threshold 0"],
  ];
  const count = async (e: Record<string, string>, ops: number) => {
    const argv = [vg, "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null", small, "--ops", String(ops)];
    const r = await run(argv, e, 900_000);
    const m = /I\s+refs:\s+([\d,]+)/.exec(r.stderr);
    return { argv, n: r.code === 0 && m ? Number(m[1]!.replace(/,/g, "")) : NaN };
  };
  const out: Instr[] = [];
  let base = NaN;
  for (const [name, e, note] of vars) {
    const one = await count(e, 1);
    const all = await count(e, INSTR_OPS);
    const perOp = (all.n - one.n) / INSTR_OPS;
    if (name === "glibc") base = perOp;
    out.push({ name, cmd: shellLine(all.argv, e), startup: one.n, perOp, ratio: name === "glibc" ? undefined : perOp / base, note });
    log(`instructions ${name}: ${fmt(perOp)}/op`);
  }
  return out;
}

/* ---- main --------------------------------------------------------------------------------- */

async function main(): Promise<void> {
  const scratch = mkdtempSync(join(tmpdir(), "exm-alloc-bench-"));
  const loads: string[] = [loadavg()];
  try {
    const list = workloads();
    const cells: Cell[] = [];
    for (const w of list)
      for (const t of THREADS)
        cells.push({ workload: w.name, threads: t, samples: { glibc: [], exm: [], "exm-t0": [] }, cmd: {} as Record<VariantName, string> });
    for (let round = 0; round < ROUNDS; round++) {
      for (const [ci, c] of cells.entries()) {
        const w = list.find((x) => x.name === c.workload)!;
        for (let k = 0; k < VARIANTS.length; k++) {
          const v = VARIANTS[(k + round + ci) % VARIANTS.length]!;
          const { s, cmd } = await runOnce(w, c.threads, v, scratch);
          c.samples[v].push(s);
          c.cmd[v] = cmd;
          if (s.error) log(`round ${round + 1} ${c.workload} ${c.threads}t ${v}: ${s.error}`);
        }
        const g = c.samples.glibc[round]!, e = c.samples.exm[round]!, z = c.samples["exm-t0"][round]!;
        log(`round ${round + 1} ${c.workload} ${c.threads}t: glibc ${fmt(g.nsPerOp)} ns/op, exm ${fmt(e.nsPerOp / g.nsPerOp)}x, t0 ${fmt(z.nsPerOp / g.nsPerOp)}x`);
      }
      loads.push(loadavg());
    }
    const rows = cells.map((c) => {
      const ratio = (v: VariantName, k: "nsPerOp" | "cpuNsPerOp") =>
        range(c.samples[v].map((s, i) => s[k] / c.samples.glibc[i]![k]));
      const t0 = c.samples["exm-t0"];
      // A live set of a few MiB is below the arena's granularity (segments,
      // the thread caches): its ratio says nothing of waste at scale.
      const disk = range(t0.map((s) => (s.peakDisk && s.peakLive && s.peakLive >= MIN_LIVE ? s.peakDisk / s.peakLive : NaN)));
      const req = range(t0.map((s) => (s.peakDisk && s.liveReq ? s.peakDisk / s.liveReq : NaN)));
      return {
        workload: c.workload,
        threads: c.threads,
        glibcNsPerOp: range(c.samples.glibc.map((s) => s.nsPerOp)),
        exmRatio: ratio("exm", "nsPerOp"),
        exmCpuRatio: ratio("exm", "cpuNsPerOp"),
        t0Ratio: ratio("exm-t0", "nsPerOp"),
        t0CpuRatio: ratio("exm-t0", "cpuNsPerOp"),
        t0PeakDiskOverLive: disk,
        t0PeakDiskOverRequested: req.n ? req : undefined,
        t0PeakDiskBytes: median(t0.map((s) => s.peakDisk ?? NaN).filter(Number.isFinite)),
        t0PeakLiveBytes: median(t0.map((s) => s.peakLive ?? NaN).filter(Number.isFinite)),
        errors: Object.fromEntries(VARIANTS.map((v) => [v, c.samples[v].filter((s) => s.error).map((s) => s.error)]).filter(([, e]) => e!.length)),
        cmd: c.cmd,
        samples: c.samples,
      };
    });
    const instr = INSTR ? await instructions() : "not run (--no-instr)";
    loads.push(loadavg());
    const head = spawnSync(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], { stdout: "pipe" }).stdout.toString().trim();
    const dirty = spawnSync(["git", "-C", ROOT, "status", "--porcelain", "native"], { stdout: "pipe" }).stdout.toString().trim() !== "";
    const out = {
      date: new Date().toISOString(),
      commit: head + (dirty ? " (native/ modified)" : ""),
      rounds: ROUNDS,
      quick: QUICK,
      threads: THREADS,
      loadavg: loads,
      variants: VARIANT_NOTE,
      workloads: Object.fromEntries(list.map((w) => [w.name, { what: w.what, ops: w.ops }])),
      goals: { passthroughInstr: 1.03, passthroughTime: "within the noise", t0Time: 1.1, t0DiskOverLive: 1.3 },
      rows,
      instructions: instr,
    };
    mkdirSync(dirname(OUT), { recursive: true });
    writeFileSync(OUT, `${JSON.stringify(out, null, 2)}\n`);

    console.log(`## exm's allocator cost (${ROUNDS} round${ROUNDS > 1 ? "s" : ""}, commit ${out.commit}, ${out.date})\n`);
    console.log("Time per operation over glibc's in the same round: median (range); wall, then CPU.\n");
    console.log("| workload | threads | glibc ns/op | exm (pass-through) wall | cpu | threshold 0 wall | cpu | t0 peak disk / live |");
    console.log("|---|---|---|---|---|---|---|---|");
    for (const r of rows)
      console.log(`| ${r.workload} | ${r.threads} | ${fmt(r.glibcNsPerOp.median)} | ${rng(r.exmRatio)} | ${rng(r.exmCpuRatio)} | ${rng(r.t0Ratio)} | ${rng(r.t0CpuRatio)} | ${r.t0PeakDiskOverLive.n ? rng(r.t0PeakDiskOverLive) : `- (live ${fmt(r.t0PeakLiveBytes / 2 ** 20)} MiB, disk ${fmt(r.t0PeakDiskBytes / 2 ** 20)} MiB)`}${r.t0PeakDiskOverRequested ? ` (/ requested ${fmt(r.t0PeakDiskOverRequested.median, 2)})` : ""} |`);
    if (typeof instr === "string") console.log(`\ninstructions: ${instr}`);
    else {
      console.log(`\nInstructions per operation, small-object churn, 1 thread, ${INSTR_OPS} operations (valgrind cachegrind):\n`);
      console.log("| variant | instr./op | / glibc |");
      console.log("|---|---|---|");
      for (const i of instr) console.log(`| ${i.name} | ${fmt(i.perOp, 1)} | ${i.ratio === undefined ? "-" : fmt(i.ratio, 3)} |`);
    }
    console.log(`\nload average: ${loads.join(" -> ")}`);
    console.log(`results: ${OUT.startsWith(ROOT + "/") ? OUT.slice(ROOT.length + 1) : OUT}`);
    chartAfterRun("alloc", OUT);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

await main();
