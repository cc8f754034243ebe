/**
 * Out of core at every size (issue 12): for each --sizes entry, under a
 * memory cgroup of --limit, the same workload (bench/c/ooc_common.h: a
 * sequential write, a sequential read timed per 64 MiB step, R random 4 KiB
 * reads single-threaded, R more shared by --threads threads) on
 *   device  the disk itself: fio, O_DIRECT, on a file in --dir (sequential
 *           write and read of 1 MiB blocks, random 4 KiB reads at queue depth
 *           1 and at --threads), time-based, on a --device-size file;
 *   raw     a plain MAP_SHARED mapping of a fallocated file, the best advice
 *           (SEQUENTIAL to write and scan, RANDOM before the random reads);
 *   swap    anonymous memory with a swap file on the same disk (created just
 *           before the run and swapoff'd and removed right after it, also on
 *           failure or a signal: never held together with an exm file);
 *   exm     one malloc block served by exm, default settings;
 *   exm-base  the same through the library given by --base-lib (say, main's
 *           build: a before/after comparison in the same run);
 *   exm+L[+L...]  the same with the workload's --lever L,... (a pager's levers,
 *           tried from the program before the library does them: wb,
 *           willneed, populate, cold, pageout, dontneed; see ooc_common.h).
 * Rounds run the backends in rotating order; each metric is the median of the
 * rounds (min-max). Slow phases are capped (--swap-seconds for swap's write and
 * scan, --rand-seconds for random reads): the rate is then that of the part
 * done. Prints tables of medians and ratios, writes bench/results/<--out>,
 * then redraws scale.svg there from every scale*.json (bench/chart.ts).
 *
 *   bun bench/scale.ts [--sizes 4G,16G] [--limit 1G] [--rounds 3] [--reads 20000]
 *       [--threads 4] [--backends device,raw,swap,exm] [--rand-seconds 30]
 *       [--swap-seconds 90] [--device-size 4G] [--device-seconds 8] [--dir /tmp]
 *       [--out scale.json]   (relative to bench/results/) [--base-lib PATH]
 *
 * Needs root (cgroups, swapon) and fio (apt-get install fio) for the device.
 */
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { spawnSync } from "bun";
import {
  GiB,
  LIB,
  MiB,
  ROOT,
  arg,
  checkArgs,
  cgroupAvailable,
  cleanUpOnExit,
  compile,
  fmt,
  fmtRange,
  kv,
  loadavg,
  log,
  run,
  runInCgroup,
  shellLine,
  sizeArg,
  summarize,
  type Summary,
} from "./lib.ts";
import { removeStale, swapOff, swapOn } from "./swap.ts";
import { chartAfterRun } from "./chart.ts";


const SIZES = arg("sizes", "4G,16G").split(",");
const LIMIT = sizeArg(arg("limit", "1G"), "--limit");
const ROUNDS = Number(arg("rounds", "3"));
const READS = arg("reads", "20000");
const THREADS = arg("threads", "4");
const BACKENDS = arg("backends", "device,raw,swap,exm").split(",");
const RAND_S = arg("rand-seconds", "30");
const SWAP_S = arg("swap-seconds", "90");
const DEV_SIZE = arg("device-size", "4G");
const DEV_S = arg("device-seconds", "8");
const DIR = arg("dir", "/tmp");
const BASE_LIB = arg("base-lib", "");
const OUT = resolve(join(ROOT, "bench", "results"), arg("out", "scale.json"));
checkArgs();
const LEVERS = ["wb", "willneed", "populate", "cold", "pageout", "dontneed"];
for (const b of BACKENDS)
  if (!["device", "raw", "swap", "exm", ...(BASE_LIB ? ["exm-base"] : [])].includes(b) &&
      !(b.startsWith("exm+") && b.slice(4).split("+").every((l) => LEVERS.includes(l)))) {
    console.error(`scale: unknown backend ${b} (device, raw, swap, exm, exm-base with --base-lib, exm+LEVER[+LEVER]: ${LEVERS.join(", ")})`);
    process.exit(2);
  }

const why = cgroupAvailable();
if (why) {
  console.error(`skip: memory cgroups unavailable: ${why}`);
  process.exit(0);
}
const haveFio = spawnSync(["sh", "-c", "command -v fio"]).exitCode === 0;
if (BACKENDS.includes("device") && !haveFio) console.error("note: fio not found (apt-get install fio): no device row");

/* ---- clean-up: children, cgroups, the swap file, fio's file --------------- */

let fioFile: string | null = null;
cleanUpOnExit(() => {
  swapOff();
  if (fioFile) rmSync(fioFile, { force: true });
});
removeStale(DIR, "exm-scale", ["swap", "fio"]);


/* ---- the device ------------------------------------------------------------ */

type Sample = Record<string, number>;

async function device(): Promise<{ sample: Sample; cmd: string } | { fail: string }> {
  const f = join(DIR, `exm-scale-${process.pid}.fio`);
  fioFile = f;
  const jobs: [string, string[]][] = [
    ["write_mbs", ["--rw=write", "--bs=1M", "--iodepth=8"]],
    ["seq_mbs", ["--rw=read", "--bs=1M", "--iodepth=8"]],
    ["rand_qd1", ["--rw=randread", "--bs=4k", "--iodepth=1"]],
    ["rand_qdT", ["--rw=randread", "--bs=4k", `--iodepth=${THREADS}`]],
  ];
  const common = ["fio", "--name=dev", `--filename=${f}`, `--size=${DEV_SIZE}`, "--direct=1",
    "--ioengine=libaio", "--time_based", `--runtime=${DEV_S}`, "--output-format=json"];
  const sample: Sample = {};
  try {
    for (const [key, extra] of jobs) {
      const r = await run([...common, ...extra], {}, 300_000);
      if (r.code !== 0) return { fail: `fio ${extra.join(" ")}: ${r.stderr.trim().slice(0, 200)}` };
      const j = JSON.parse(r.stdout).jobs[0];
      const side = key === "write_mbs" ? j.write : j.read;
      sample[key] = key.endsWith("mbs") ? side.bw_bytes / 1e6 : side.iops;
    }
  } finally {
    rmSync(f, { force: true });
    fioFile = null;
  }
  return { sample, cmd: `${common.join(" ")} {--rw=write|read --bs=1M --iodepth=8 | --rw=randread --bs=4k --iodepth=1|${THREADS}}` };
}

/* ---- the mapped backends ---------------------------------------------------- */

const ooc = compile("ooc");
const raw = compile("rawmap");

function plan(b: string, size: string): { argv: string[]; env: Record<string, string>; swap?: boolean } {
  const common = ["--size", size, "--reads", READS, "--threads", THREADS, "--rand-seconds", RAND_S,
    "--seq-seconds", "1200"];
  if (b === "raw") return { argv: [raw, "--dir", DIR, ...common, "--policy", "seq-rand"], env: {} };
  if (b === "exm") return { argv: [ooc, ...common], env: { LD_PRELOAD: LIB, EXM_DIR: DIR } };
  if (b === "exm-base") return { argv: [ooc, ...common], env: { LD_PRELOAD: resolve(BASE_LIB), EXM_DIR: DIR } };
  if (b.startsWith("exm+"))
    return { argv: [ooc, ...common, "--lever", b.slice(4).split("+").join(",")], env: { LD_PRELOAD: LIB, EXM_DIR: DIR } };
  return {
    argv: [ooc, "--anon", ...common, "--write-seconds", SWAP_S, "--seq-seconds", SWAP_S],
    env: {},
    swap: true,
  };
}

function sampleOf(o: Record<string, string>): Sample {
  const n = (k: string) => (o[k] === undefined ? NaN : Number(o[k]));
  const gib = n("size_bytes") / GiB;
  return {
    write_mbs: n("write_mbs"),
    seq_mbs: n("seq_mbs"),
    write_complete: n("write_complete"),
    seq_complete: n("seq_complete"),
    write_step_ratio: n("write_step_worst_ms") / n("write_step_median_ms"),
    seq_step_median_ms: n("seq_step_median_ms"),
    seq_step_worst_ms: n("seq_step_worst_ms"),
    seq_step_ratio: n("seq_step_worst_ms") / n("seq_step_median_ms"),
    // time per GiB of write + scan, counted from the rates (a capped phase
    // counts at the rate of its part done)
    s_per_gib: (GiB / 1e6) / n("write_mbs") + (GiB / 1e6) / n("seq_mbs"),
    rand_qd1: n("rand_per_s"),
    rand_qdT: n("randT_per_s"),
    rand_reads: n("rand_reads"),
    randT_reads: n("randT_reads"),
    majflt_rand: n("majflt_rand"),
    majflt_randT: n("majflt_randT"),
    majflt_seq: n("majflt_seq"),
    gib,
  };
}

/* ---- the rounds ----------------------------------------------------------------- */

type Row = { size: string; backend: string; cmd: string; samples: Sample[]; loads: number[]; fails: string[] };
const rows: Row[] = [];
const row = (size: string, backend: string): Row => {
  let r = rows.find((x) => x.size === size && x.backend === backend);
  if (!r) rows.push((r = { size, backend, cmd: "", samples: [], loads: [], fails: [] }));
  return r;
};

function write(): void {
  const keys = ["write_mbs", "seq_mbs", "seq_step_ratio", "write_step_ratio", "s_per_gib", "rand_qd1", "rand_qdT",
    "seq_step_median_ms", "seq_step_worst_ms", "majflt_rand", "majflt_randT", "majflt_seq", "rand_reads", "randT_reads"];
  const out = rows.map((r) => {
    const m: Record<string, Summary> = {};
    for (const k of keys) {
      const s = summarize(r.samples.map((x) => x[k] ?? NaN));
      if (s.n) m[k] = s;
    }
    return { size: r.size, backend: r.backend, cmd: r.cmd, loadavg: r.loads, metrics: m, fails: r.fails,
      capped: r.samples.some((x) => x.write_complete === 0 || x.seq_complete === 0) };
  });
  mkdirSync(dirname(OUT), { recursive: true });
  writeFileSync(OUT, JSON.stringify({
    schema: "exm-scale/1", date: new Date().toISOString(), limit: LIMIT, rounds: ROUNDS, reads: Number(READS),
    threads: Number(THREADS), device_size: DEV_SIZE, device_seconds: Number(DEV_S), swap_seconds: Number(SWAP_S),
    command: `bun bench/scale.ts ${process.argv.slice(2).join(" ")}`.trim(), rows: out,
  }, null, 2) + "\n");
}

for (const size of SIZES) {
  const sz = sizeArg(size, "--sizes");
  for (let round = 0; round < ROUNDS; round++) {
    const order = BACKENDS.map((_, i) => BACKENDS[(i + round) % BACKENDS.length]!);
    for (const b of order) {
      const r = row(size, b);
      const load = loadavg();
      if (b === "device") {
        if (!haveFio) continue;
        const d = await device();
        if ("fail" in d) r.fails.push(d.fail);
        else {
          r.samples.push(d.sample);
          r.cmd = d.cmd;
          r.loads.push(load);
        }
        log(`${size} round ${round + 1} device: ${JSON.stringify("sample" in d ? d.sample : d)}`);
        write();
        continue;
      }
      const p = plan(b, size);
      r.cmd = shellLine(p.argv, p.env) + ` (in a ${LIMIT / MiB} MiB memory cgroup${p.swap ? ", swap allowed" : ", memory+swap capped"})`;
      try {
        if (p.swap) swapOn(DIR, "exm-scale", sz + 2 * GiB);
        const res = await runInCgroup(LIMIT, p.argv, p.env, { timeoutMs: 3_600_000, swap: p.swap });
        const o = kv(res.stdout);
        if (res.code === 0 && o.sum_ok === "1") {
          r.samples.push(sampleOf(o));
          r.loads.push(load);
        } else r.fails.push(`code=${res.code} signal=${res.signal} oom=${res.oomKilled} ${res.stderr.trim().slice(0, 200)}`);
        const s = r.samples.at(-1);
        log(`${size} round ${round + 1} ${b} (load ${load}): ` + (res.code === 0 && s
          ? `write ${fmt(s.write_mbs!)} MB/s, seq ${fmt(s.seq_mbs!)} MB/s (worst step ${fmt(s.seq_step_ratio!)}x median), ` +
            `rand ${fmt(s.rand_qd1!)}/s, ${THREADS} threads ${fmt(s.rand_qdT!)}/s` +
            (s.write_complete === 0 || s.seq_complete === 0 ? " (capped)" : "")
          : `FAILED ${r.fails.at(-1)}`));
      } catch (e) {
        r.fails.push(String((e as Error).message));
        log(`${size} round ${round + 1} ${b}: FAILED ${(e as Error).message}`);
      } finally {
        if (p.swap) swapOff();
      }
      write();
    }
  }
}

/* ---- tables ------------------------------------------------------------------------ */

const med = (r: Row | undefined, k: string) => (r ? summarize(r.samples.map((x) => x[k] ?? NaN)).median : NaN);
const mm = (r: Row, k: string) => fmtRange(r.samples.map((x) => x[k] ?? NaN));
console.log(`\nUnder a ${LIMIT / MiB} MiB memory cgroup; medians of ${ROUNDS} rounds (min-max)\n`);
console.log("| size | backend | write MB/s | seq read MB/s | worst/median 64 MiB step | s per GiB (write+read) | random 4 KiB reads/s | " +
  `${THREADS} threads reads/s | load |`);
console.log("|---|---|---|---|---|---|---|---|---|");
for (const r of rows)
  console.log(`| ${r.size} | ${r.backend} | ${mm(r, "write_mbs")} | ${mm(r, "seq_mbs")} | ${mm(r, "seq_step_ratio")} | ` +
    `${mm(r, "s_per_gib")} | ${mm(r, "rand_qd1")} | ${mm(r, "rand_qdT")} | ${r.loads.map((l) => fmt(l)).join(", ")} |`);
console.log("\nRatios of medians (exm / device, exm / swap, exm / raw):\n");
console.log("| size | write / dev | seq / dev | rand / dev QD1 | rand / swap | threads / dev QD | rand / raw |");
console.log("|---|---|---|---|---|---|---|");
for (const size of SIZES) {
  const e = rows.find((x) => x.size === size && x.backend === "exm");
  const d = rows.find((x) => x.size === size && x.backend === "device");
  const s = rows.find((x) => x.size === size && x.backend === "swap");
  const w = rows.find((x) => x.size === size && x.backend === "raw");
  const q = (a: number, b: number) => fmt(a / b, 2);
  console.log(`| ${size} | ${q(med(e, "write_mbs"), med(d, "write_mbs"))} | ${q(med(e, "seq_mbs"), med(d, "seq_mbs"))} | ` +
    `${q(med(e, "rand_qd1"), med(d, "rand_qd1"))} | ${q(med(e, "rand_qd1"), med(s, "rand_qd1"))} | ` +
    `${q(med(e, "rand_qdT"), med(d, "rand_qdT"))} | ${q(med(e, "rand_qd1"), med(w, "rand_qd1"))} |`);
}
for (const r of rows) if (r.fails.length) console.log(`failures ${r.size} ${r.backend}: ${r.fails.join("; ")}`);
console.log("\nCommands:");
for (const r of rows) console.log(`  ${r.size} ${r.backend}: ${r.cmd}`);
if (!existsSync(OUT)) write();
chartAfterRun("scale", OUT);
