/**
 * Real programs out of core (issue 12), each phase timed, against anonymous
 * memory with a swap file on the same disk:
 *   numpy  bench/ooc_numpy.py on a --numpy-size float64 array under a
 *          --numpy-limit memory cgroup: fill, in-place a*2+1, sum, in-place
 *          sort of its first --numpy-sort bytes, --gathers random single-
 *          element reads (stopped after --gather-seconds); backends
 *            exm   `dist/exm python3 ...` (default settings)
 *            swap  plain python3, the cgroup allowed to swap (a swap file of
 *                  the array's size + 2 GiB, on in --dir just for the run)
 *            ram   plain python3, no swap (expected: killed by the limit; the
 *                  phase it reached is reported)
 *   sort   `sort -S 2G` of a --sort-input file of random base64 lines under a
 *          --sort-limit cgroup: exm (`dist/exm sort -S 2G`), swap (plain, may
 *          swap) and spill (plain `sort -S 200M -T --dir`, which spills to its
 *          own temporary files: what a user would run without exm).
 * Per phase: seconds, major faults, bytes read from the disk holding --dir
 * (machine-wide /sys/dev/block counters: other jobs on the machine count too)
 * and, for numpy, that over the bytes the phase touched. Each run is capped
 * (--numpy-seconds, --sort-seconds): a capped run reports the phases it did.
 * Rounds rotate the backends' order; medians with ranges. Results in
 * bench/results/<--out>, and its chart next to it (programs.svg for
 * programs.json, bench/chart.ts).
 *
 *   bun bench/programs.ts [--jobs numpy,sort] [--rounds 1] [--numpy-size 8G]
 *       [--numpy-limit 2G] [--numpy-sort 2G] [--gathers 1000000]
 *       [--gather-seconds 120] [--numpy-seconds 1800] [--numpy-backends exm,swap,ram]
 *       [--sort-input 1.5G] [--sort-limit 512M] [--sort-seconds 1800]
 *       [--sort-backends exm,swap,spill] [--dir /tmp] [--out programs.json]
 *
 * Needs root (cgroups, swapon), python3 with numpy, GNU sort.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { spawnSync } from "bun";
import {
  EXM, GiB, MiB, ROOT, arg, cgroupAvailable, checkArgs, cleanUpOnExit, fmt, fmtRange, kv, loadavg, log, runInCgroup, shellLine, sizeArg, summarize,
} from "./lib.ts";
import { removeStale, swapOff, swapOn } from "./swap.ts";
import { chartAfterRun } from "./chart.ts";

const bytes = (name: string, def: string) => sizeArg(arg(name, def), `--${name}`);

const JOBS = arg("jobs", "numpy,sort").split(",");
const ROUNDS = Number(arg("rounds", "1"));
const NP_SIZE = bytes("numpy-size", "8G"), NP_LIMIT = bytes("numpy-limit", "2G"), NP_SORT = bytes("numpy-sort", "2G");
const GATHERS = Number(arg("gathers", "1000000")), GATHER_S = Number(arg("gather-seconds", "120"));
const NP_S = Number(arg("numpy-seconds", "1800"));
const NP_BACKENDS = arg("numpy-backends", "exm,swap,ram").split(",");
const SORT_INPUT = bytes("sort-input", "1.5G"), SORT_LIMIT = bytes("sort-limit", "512M");
const SORT_S = Number(arg("sort-seconds", "1800"));
const SORT_BACKENDS = arg("sort-backends", "exm,swap,spill").split(",");
const DIR = resolve(arg("dir", "/tmp"));
const OUT = resolve(join(ROOT, "bench", "results"), arg("out", "programs.json"));
checkArgs();
for (const [job, list, ok] of [["numpy", NP_BACKENDS, ["exm", "swap", "ram"]], ["sort", SORT_BACKENDS, ["exm", "swap", "spill"]]] as const)
  for (const b of list)
    if (!(ok as readonly string[]).includes(b)) {
      console.error(`programs: unknown ${job} backend ${b} (${ok.join(", ")})`);
      process.exit(2);
    }
for (const j of JOBS)
  if (j !== "numpy" && j !== "sort") {
    console.error(`programs: unknown job ${j} (numpy, sort)`);
    process.exit(2);
  }

const why = cgroupAvailable();
if (why) {
  console.error(`skip: memory cgroups unavailable: ${why}`);
  process.exit(0);
}
if (!existsSync(EXM)) {
  console.error(`programs: ${EXM} is missing (npm run build)`);
  process.exit(2);
}

/* The disk under DIR, as /sys/dev/block names it (major:minor). */
const dev = statSync(DIR).dev;
const DEVICE = `${(dev >> 8) & 0xfff}:${(dev & 0xff) | ((dev >> 12) & ~0xff)}`;
const diskRead = () => Number(readFileSync(`/sys/dev/block/${DEVICE}/stat`, "utf8").trim().split(/\s+/)[2]) * 512;

const INPUT = join(DIR, `exm-programs-${process.pid}.input`);
cleanUpOnExit(() => {
  swapOff();
  rmSync(INPUT, { force: true });
});
removeStale(DIR, "exm-programs", ["swap", "input"]);


type Sample = Record<string, number>;
type Row = { job: string; backend: string; cmd: string; samples: Sample[]; loads: number[]; notes: string[] };
const rows: Row[] = [];
function row(job: string, backend: string): Row {
  let r = rows.find((x) => x.job === job && x.backend === backend);
  if (!r) rows.push((r = { job, backend, cmd: "", samples: [], loads: [], notes: [] }));
  return r;
}

const PHASES = ["fill", "arith", "sum", "sort", "gather"];

/** One numpy run: its phases' figures (those it finished), and how it ended. */
async function numpy(b: string): Promise<{ sample: Sample; cmd: string; note: string }> {
  const py = ["python3", join(ROOT, "bench", "ooc_numpy.py"), String(NP_SIZE), String(NP_SORT), String(GATHERS), String(GATHER_S), DEVICE];
  const argv = b === "exm" ? [EXM, ...py] : py;
  const env = b === "exm" ? { EXM_DIR: DIR } : {};
  const cmd = shellLine(argv, env) + ` (in a ${NP_LIMIT / MiB} MiB memory cgroup${b === "swap" ? ", swap allowed" : ", memory+swap capped"})`;
  if (b === "swap") swapOn(DIR, "exm-programs", NP_SIZE + 2 * GiB);
  try {
    const t = performance.now();
    const r = await runInCgroup(NP_LIMIT, argv, env, { timeoutMs: NP_S * 1000, swap: b === "swap" });
    const o = kv(r.stdout), s: Sample = { total_s: (performance.now() - t) / 1000 };
    const touched: Record<string, number> = { arith: NP_SIZE, sum: NP_SIZE, sort: NP_SORT, gather: Number(o.gather_done ?? 0) * 4096 };
    for (const p of PHASES) {
      if (o[`${p}_s`] === undefined) continue;
      s[`${p}_s`] = Number(o[`${p}_s`]);
      s[`${p}_majflt`] = Number(o[`${p}_majflt`]);
      s[`${p}_read_gb`] = Number(o[`${p}_read_bytes`]) / 1e9;
      if (touched[p]) s[`${p}_read_per_touched`] = Number(o[`${p}_read_bytes`]) / touched[p]!;
    }
    if (o.gather_done) {
      s.gather_done = Number(o.gather_done);
      s.gathers_per_s = s.gather_done / s.gather_s!;
    }
    const ok = r.code === 0 && r.stdout.includes("ooc_numpy ok");
    const reached = PHASES.find((p) => o[`${p}_s`] === undefined);
    const note = ok ? "" : `${r.timedOut ? `capped at ${NP_S} s` : r.oomKilled ? "killed by the memory limit" : `exit ${r.code} ${r.signal ?? ""}`}` +
      ` during ${reached ?? "the end"} ${r.stderr.trim().split("\n").at(-1)?.slice(0, 120) ?? ""}`;
    return { sample: s, cmd, note: note.trim() };
  } finally {
    if (b === "swap") swapOff();
  }
}

/** The sort job's input: random base64 lines (100 characters and a newline), made once. */
function sortInput(): void {
  if (existsSync(INPUT)) return;
  const r = spawnSync(["sh", "-c", `base64 -w 100 /dev/urandom | head -c ${SORT_INPUT} > '${INPUT}'`]);
  if (r.exitCode !== 0) throw new Error(`making the sort input failed: ${r.stderr.toString().trim()}`);
}

async function sort(b: string): Promise<{ sample: Sample; cmd: string; note: string }> {
  sortInput();
  const sortArgs = b === "spill" ? ["sort", "-S", "200M", "-T", DIR] : ["sort", "-S", "2G"];
  const argv = [...(b === "exm" ? [EXM] : []), ...sortArgs, "-o", "/dev/null", INPUT];
  const env = b === "exm" ? { EXM_DIR: DIR } : {};
  const cmd = shellLine(argv, env) + ` (in a ${SORT_LIMIT / MiB} MiB memory cgroup${b === "swap" ? ", swap allowed" : ", memory+swap capped"})`;
  if (b === "swap") swapOn(DIR, "exm-programs", 2 * GiB + 2 * GiB);
  try {
    const t = performance.now(), read0 = diskRead();
    // the shell stays to read its waited-for child's major faults (cmajflt, /proc/PID/stat field 13)
    const script = '"$@"; c=$?; echo "majflt=$(cut -d" " -f13 /proc/$$/stat)"; exit $c';
    const r = await runInCgroup(SORT_LIMIT, ["sh", "-c", script, "sh", ...argv], env, { timeoutMs: SORT_S * 1000, swap: b === "swap" });
    const s: Sample = { total_s: (performance.now() - t) / 1000, read_gb: (diskRead() - read0) / 1e9 };
    const o = kv(r.stdout);
    if (o.majflt) s.majflt = Number(o.majflt);
    const note = r.code === 0 ? "" : r.timedOut ? `capped at ${SORT_S} s` : r.oomKilled ? "killed by the memory limit" : `exit ${r.code} ${r.stderr.trim().slice(0, 120)}`;
    return { sample: s, cmd, note };
  } finally {
    if (b === "swap") swapOff();
  }
}

function write(): void {
  const out = rows.map((r) => {
    const keys = [...new Set(r.samples.flatMap((x) => Object.keys(x)))];
    return { job: r.job, backend: r.backend, cmd: r.cmd, loadavg: r.loads, notes: r.notes,
      metrics: Object.fromEntries(keys.map((k) => [k, summarize(r.samples.map((x) => x[k] ?? NaN))])) };
  });
  mkdirSync(dirname(OUT), { recursive: true });
  writeFileSync(OUT, JSON.stringify({ schema: "exm-programs/1", date: new Date().toISOString(), rounds: ROUNDS,
    command: `bun bench/programs.ts ${process.argv.slice(2).join(" ")}`.trim(), device: DEVICE, rows: out }, null, 2) + "\n");
}

for (let round = 0; round < ROUNDS; round++)
  for (const job of JOBS) {
    const list = job === "numpy" ? NP_BACKENDS : SORT_BACKENDS;
    for (const b of list.map((_, i) => list[(i + round) % list.length]!)) {
      const r = row(job, b), load = loadavg();
      try {
        const res = job === "numpy" ? await numpy(b) : await sort(b);
        r.cmd = res.cmd;
        r.samples.push(res.sample);
        r.loads.push(load);
        if (res.note) r.notes.push(`round ${round + 1}: ${res.note}`);
        log(`${job} round ${round + 1} ${b} (load ${load}): ${Object.entries(res.sample).map(([k, v]) => `${k}=${fmt(v)}`).join(" ")}` +
          (res.note ? ` [${res.note}]` : ""));
      } catch (e) {
        r.notes.push(`round ${round + 1}: ${(e as Error).message}`);
        log(`${job} round ${round + 1} ${b}: FAILED ${(e as Error).message}`);
      }
      write();
    }
  }

const mm = (r: Row, k: string) => fmtRange(r.samples.map((x) => x[k] ?? NaN));
if (JOBS.includes("numpy")) {
  console.log(`\nnumpy on ${fmt(NP_SIZE / GiB)} GiB under ${NP_LIMIT / MiB} MiB; medians of ${ROUNDS} round(s) (min-max); s, then GB read from disk / GB touched\n`);
  console.log(`| backend | ${PHASES.join(" s | ")} s | gathers/s | whole run s | ${PHASES.slice(1).map((p) => `${p} read/touched`).join(" | ")} | notes |`);
  console.log(`|---|${PHASES.map(() => "---|").join("")}---|---|${PHASES.slice(1).map(() => "---|").join("")}---|`);
  for (const r of rows.filter((x) => x.job === "numpy"))
    console.log(`| ${r.backend} | ${PHASES.map((p) => mm(r, `${p}_s`)).join(" | ")} | ${mm(r, "gathers_per_s")} | ${mm(r, "total_s")} | ` +
      `${PHASES.slice(1).map((p) => mm(r, `${p}_read_per_touched`)).join(" | ")} | ${r.notes.join("; ")} |`);
}
if (JOBS.includes("sort")) {
  console.log(`\nsort of ${fmt(SORT_INPUT / GiB)} GiB under ${SORT_LIMIT / MiB} MiB; medians of ${ROUNDS} round(s)\n`);
  console.log("| backend | s | major faults | GB read from disk | notes |\n|---|---|---|---|---|");
  for (const r of rows.filter((x) => x.job === "sort"))
    console.log(`| ${r.backend} | ${mm(r, "total_s")} | ${mm(r, "majflt")} | ${mm(r, "read_gb")} | ${r.notes.join("; ")} |`);
}
console.log("\nCommands:");
for (const r of rows) console.log(`  ${r.job} ${r.backend}: ${r.cmd}`);
chartAfterRun("programs", OUT);
