/**
 * bench/fit.ts: what exm costs a program whose data fit in RAM (issue 13's
 * goals: no pattern slower than 1.1x plain, cow fork pools at most 1.2x,
 * major faults in the hundreds, free as quick as munmap, start-up at most
 * 20 ms over the program).
 *
 * Every workload runs plain, under `dist/exm` (default settings) and under
 * `dist/exm --threshold auto` (large blocks in RAM while the budget lasts)
 * in the same round, the order of the three rotating from round to round
 * (--no-auto: plain and default only); each run is
 * wrapped by bench/c/measure.c, which reports wall time, major faults and the
 * bytes the run sent to the disk (write_bytes - cancelled_write_bytes from
 * /proc/PID/io: a dirty page punched before writeback costs no disk write).
 * The ratio of a round is exm's time over plain's in that round; the report
 * gives the median and range of the per-round ratios, and auto's median.
 *
 *   bun bench/fit.ts [--rounds N] [--only NAME,NAME] [--quick] [--no-auto] [--out FILE]
 *
 * Results: bench/results/fit.json (--quick: build/bench/results/fit.json, as
 * the other benchmarks keep their quick runs out of the committed results),
 * and its chart next to it (fit.svg, bench/chart.ts).
 */
import { existsSync, mkdirSync, writeFileSync, rmSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { chartAfterRun } from "./chart.ts";
import { compile, EXM, fmt, median, ROOT, run } from "./lib";

const args = process.argv.slice(2);
const opt = (name: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const QUICK = args.includes("--quick");
const VARIANTS = args.includes("--no-auto") ? (["plain", "exm"] as const) : (["plain", "exm", "auto"] as const);
type Variant = "plain" | "exm" | "auto";
const ROUNDS = Number(opt("rounds") ?? (QUICK ? 1 : 3));
const ONLY = opt("only")?.split(",");
const PY = ["/usr/bin/python3", "python3"].find((p) => p.startsWith("/") ? existsSync(p) : true)!;
const SCALE = QUICK ? 4 : 1;   // --quick: a quarter of the sizes
const OUT = resolve(opt("out") ?? join(ROOT, ...(QUICK ? ["build", "bench"] : ["bench"]), "results", "fit.json"));

interface Workload {
  name: string;
  what: string;
  argv: string[];
  /** Extra exm options (child modes). */
  exmOpts?: string[];
  goal: number;
  /** The ratio is of the free() call's time (free_ms= on stdout), not of the run's. */
  ofFree?: boolean;
}

function workloads(scratch: string): Workload[] {
  const fit = compile("fit");
  const mib = (n: number) => String(Math.max(16, Math.round(n / SCALE)));
  const sortInput = join(scratch, "sort-input.txt");
  const lines = Math.round(6_000_000 / SCALE);
  const numpy = `
import numpy as np, time
t = time.time()
for i in range(3):
    a = np.ones(${Number(mib(2048)) << 17}, dtype=np.float64)   # ${mib(2048)} MiB
    a *= 2.0
    s = float(a.sum())
    t0 = time.time(); del a; free_s = time.time() - t0
print("numpy ok", s, "free_ms=%.1f" % (free_s * 1000))
`;
  const pool = `
import multiprocessing as mp, hashlib
buf = bytes(${mib(256)} << 20)          # calloc: above the default threshold
mv = memoryview(buf)
def work(i):
    n = len(buf) // 8
    return hashlib.sha256(mv[i * n:(i + 1) * n]).hexdigest()[:8]
if __name__ == "__main__":
    ctx = mp.get_context("fork")
    with ctx.Pool(4) as p:
        print("pool ok", len(set(p.map(work, range(8)))))
`;
  const list: Workload[] = [
    { name: "bytearray-doubling", what: `python3: bytearray(b'xy') * 2^29 (1 GiB doubling copy)`, argv: [PY, "-c", `b = bytearray(b'xy') * (${1 << 29} // ${SCALE}); print('ok', len(b))`], goal: 1.1 },
    { name: "c-doubling", what: `C: memcpy doubling copy into ${mib(1024)} MiB`, argv: [fit, "doubling", mib(1024)], goal: 1.1 },
    { name: "realloc-growth", what: `C: realloc x1.5 growth to ${mib(1024)} MiB`, argv: [fit, "realloc", mib(1024)], goal: 1.1 },
    { name: "strided", what: `C: strided writes over ${mib(1024)} MiB`, argv: [fit, "strided", mib(1024)], goal: 1.1 },
    { name: "fill-scan", what: `C: fill ${mib(1024)} MiB, three scans`, argv: [fit, "fillscan", mib(1024)], goal: 1.1 },
    { name: "fill-free", what: `C: 8 x (malloc ${mib(256)} MiB, fill, free)`, argv: [fit, "fillfree", mib(256), "8"], goal: 1.1 },
    { name: "free-512m", what: `C: free() of a filled ${mib(512)} MiB block (glibc: munmap)`, argv: [fit, "free", mib(512)], goal: 2, ofFree: true },
    { name: "free-2g", what: `C: free() of a filled ${mib(2048)} MiB block (glibc: munmap)`, argv: [fit, "free", mib(2048)], goal: 2, ofFree: true },
    { name: "numpy", what: `numpy: 3 x (ones ${mib(2048)} MiB, *= 2, sum, del)`, argv: [PY, "-c", numpy], goal: 1.1 },
    { name: "sort", what: `sort -S 1G of ${lines} lines`, argv: ["sort", "-S", "1G", "-o", "/dev/null", sortInput], goal: 1.1 },
  ];
  for (const mode of ["cow", "shared", "duplicate"]) {
    list.push({ name: `pool-${mode}`, what: `python3 fork pool of 4 over a ${mib(256)} MiB parent buffer, --child ${mode}`, argv: [PY, "-c", pool], exmOpts: ["--child", mode], goal: mode === "cow" ? 1.2 : 1.1 });
  }
  return list.filter((w) => !ONLY || ONLY.includes(w.name));
}

interface Sample { wall: number; majflt: number; diskWritten: number; freeMs?: number }

async function measureOnce(argv: string[]): Promise<Sample> {
  const measure = compile("measure");
  const r = await run([measure, ...argv], { HOME: process.env.HOME }, 600_000);
  const last = r.stderr.trim().split("\n").pop() ?? "";
  const m = /^measure: (.*)$/.exec(last);
  if (r.code !== 0 || !m) throw new Error(`failed: ${argv.join(" ")}\n${r.stderr.slice(-2000)}`);
  const kv = Object.fromEntries(m[1]!.split(" ").map((p) => p.split("=")));
  const free = /free_ms=([\d.]+)/.exec(r.stdout);
  return { wall: Number(kv.wall), majflt: Number(kv.majflt), diskWritten: Number(kv.disk_written), freeMs: free ? Number(free[1]) : undefined };
}

async function startup(): Promise<{ plainMs: number; exmMs: number; overMs: number; overMin: number }> {
  const plain: number[] = [];
  const exm: number[] = [];
  for (let i = 0; i < 30; i++) {
    for (const which of i % 2 ? ["exm", "plain"] : ["plain", "exm"]) {
      const argv = which === "exm" ? [EXM, "true"] : ["true"];
      const t0 = performance.now();
      await run(argv, { HOME: process.env.HOME });
      (which === "exm" ? exm : plain).push(performance.now() - t0);
    }
  }
  const over = exm.map((e, i) => e - plain[i]!);
  return { plainMs: median(plain), exmMs: median(exm), overMs: median(over), overMin: Math.min(...exm) - Math.min(...plain) };
}

async function main(): Promise<void> {
  if (!existsSync(EXM)) throw new Error(`${EXM} not built (npm run build)`);
  mkdirSync(dirname(OUT), { recursive: true });
  const scratch = mkdtempSync(join(tmpdir(), "exm-fit-"));
  try {
    const list = workloads(scratch);
    if (list.some((w) => w.name === "sort")) {
      const n = Math.round(6_000_000 / SCALE);
      const r = await run([PY, "-c", `import random\nr = random.Random(7)\nwith open(${JSON.stringify(join(scratch, "sort-input.txt"))}, "w") as f:\n    for i in range(${n}): f.write("%016x %d\\n" % (r.getrandbits(64), i))`]);
      if (r.code !== 0) throw new Error(r.stderr);
    }
    const results: Record<string, { what: string; goal: number; ofFree: boolean } & Record<Variant, Sample[]>> = {};
    for (const w of list) results[w.name] = { what: w.what, goal: w.goal, ofFree: w.ofFree ?? false, plain: [], exm: [], auto: [] };
    for (let round = 0; round < ROUNDS; round++) {
      for (const [i, w] of list.entries()) {
        const k = (round + i) % VARIANTS.length;
        const order = [...VARIANTS.slice(k), ...VARIANTS.slice(0, k)];
        if ((round + i) % 2) order.reverse();
        for (const which of order) {
          const argv = which === "plain" ? w.argv : [EXM, ...(which === "auto" ? ["--threshold", "auto"] : []), ...(w.exmOpts ?? []), ...w.argv];
          const s = await measureOnce(argv);
          results[w.name]![which].push(s);
          console.error(`round ${round + 1} ${w.name} ${which}: ${fmt(s.wall)} s, ${s.majflt} major faults, ${fmt(s.diskWritten / 2 ** 20)} MiB to disk`);
        }
      }
    }
    const st = await startup();
    const rows = Object.entries(results).map(([name, r]) => {
      const ratioOf = (e: Sample, i: number) => (r.ofFree ? e.freeMs! / r.plain[i]!.freeMs! : e.wall / r.plain[i]!.wall);
      const ratios = r.exm.map(ratioOf);
      const autoRatios = r.auto.map(ratioOf);
      const row = {
        name, what: r.what, goal: r.goal, ratioOf: r.ofFree ? "free() call" : "run",
        plainS: median(r.plain.map((s) => s.wall)), exmS: median(r.exm.map((s) => s.wall)),
        ratio: median(ratios), ratioMin: Math.min(...ratios), ratioMax: Math.max(...ratios),
        plainMajflt: median(r.plain.map((s) => s.majflt)), exmMajflt: median(r.exm.map((s) => s.majflt)),
        plainDiskMiB: median(r.plain.map((s) => s.diskWritten)) / 2 ** 20, exmDiskMiB: median(r.exm.map((s) => s.diskWritten)) / 2 ** 20,
        plainFreeMs: r.plain[0]?.freeMs !== undefined ? median(r.plain.map((s) => s.freeMs!)) : undefined,
        exmFreeMs: r.exm[0]?.freeMs !== undefined ? median(r.exm.map((s) => s.freeMs!)) : undefined,
        autoS: r.auto.length ? median(r.auto.map((s) => s.wall)) : undefined,
        autoRatio: autoRatios.length ? median(autoRatios) : undefined,
        autoRatioMin: autoRatios.length ? Math.min(...autoRatios) : undefined,
        autoRatioMax: autoRatios.length ? Math.max(...autoRatios) : undefined,
        autoMajflt: r.auto.length ? median(r.auto.map((s) => s.majflt)) : undefined,
        autoDiskMiB: r.auto.length ? median(r.auto.map((s) => s.diskWritten)) / 2 ** 20 : undefined,
        autoFreeMs: r.auto[0]?.freeMs !== undefined ? median(r.auto.map((s) => s.freeMs!)) : undefined,
      };
      return { ...row, met: row.ratio <= r.goal };
    });
    const out = { date: new Date().toISOString(), rounds: ROUNDS, quick: QUICK, load: (await Bun.file("/proc/loadavg").text()).trim(), startup: st, rows };
    writeFileSync(OUT, `${JSON.stringify(out, null, 2)}\n`);
    const auto = VARIANTS.length === 3;
    const range = (m?: number, lo?: number, hi?: number) => (m === undefined ? "-" : `${fmt(m, 2)} (${fmt(lo!, 2)}-${fmt(hi!, 2)})`);
    console.log(`| workload | plain s | exm s | exm/plain (range) | goal |${auto ? " auto s | auto/plain (range) |" : ""} major faults plain / exm${auto ? " / auto" : ""} | MiB to disk plain / exm${auto ? " / auto" : ""} |`);
    console.log(`|---|---|---|---|---|${auto ? "---|---|" : ""}---|---|`);
    for (const r of rows) {
      if (r.ratioOf !== "run") continue;
      const a = auto ? ` ${fmt(r.autoS!)} | ${range(r.autoRatio, r.autoRatioMin, r.autoRatioMax)} |` : "";
      console.log(`| ${r.what} | ${fmt(r.plainS)} | ${fmt(r.exmS)} | ${range(r.ratio, r.ratioMin, r.ratioMax)} | ${r.goal}: ${r.met ? "met" : "missed"} |${a} ${r.plainMajflt} / ${r.exmMajflt}${auto ? ` / ${r.autoMajflt}` : ""} | ${fmt(r.plainDiskMiB)} / ${fmt(r.exmDiskMiB)}${auto ? ` / ${fmt(r.autoDiskMiB!)}` : ""} |`);
    }
    const frees = rows.filter((r) => r.ratioOf !== "run");
    if (frees.length) {
      console.log(`\n| free() of | plain (munmap) ms | exm ms | exm/plain (range) | goal |${auto ? " auto ms |" : ""} whole run plain / exm${auto ? " / auto" : ""} s |`);
      console.log(`|---|---|---|---|---|${auto ? "---|" : ""}---|`);
      for (const r of frees) {
        console.log(`| ${r.what} | ${fmt(r.plainFreeMs!)} | ${fmt(r.exmFreeMs!)} | ${range(r.ratio, r.ratioMin, r.ratioMax)} | ${r.goal}: ${r.met ? "met" : "missed"} |${auto ? ` ${fmt(r.autoFreeMs!)} |` : ""} ${fmt(r.plainS)} / ${fmt(r.exmS)}${auto ? ` / ${fmt(r.autoS!)}` : ""} |`);
      }
    }
    const numpyRow = rows.find((r) => r.name === "numpy");
    if (numpyRow?.exmFreeMs !== undefined) console.log(`\nfree of the numpy array: plain ${fmt(numpyRow.plainFreeMs!)} ms, exm ${fmt(numpyRow.exmFreeMs)} ms`);
    console.log(`start-up (30 pairs): true ${fmt(st.plainMs)} ms, exm true ${fmt(st.exmMs)} ms: +${fmt(st.overMs)} ms median (+${fmt(st.overMin)} ms fastest); goal +20 ms: ${st.overMs <= 20 ? "met" : "missed"}`);
    console.log(`load average at the end: ${out.load}`);
    console.log(`results: ${OUT.startsWith(ROOT + "/") ? OUT.slice(ROOT.length + 1) : OUT}`);
    chartAfterRun("fit", OUT);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

await main();
