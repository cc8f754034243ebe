/**
 * The benchmarks' charts (bench/chart.ts), as a reader of the README meets
 * them: `bun bench/chart.ts` redraws every chart from the result JSON that is
 * committed in bench/results/, each a well-formed SVG with its titles and
 * series, identical to the committed SVG (a result committed without its
 * redrawn chart fails here); results of an older or unfinished shape (no
 * auto, no swap, a failed cell, no instructions, an unfinished run) are drawn
 * with what they have; a file that is not JSON, or not the result it should
 * be, or a missing one that was asked for, is one line and a non-zero exit.
 * No benchmark runs here: a few seconds in all.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chartAfterRun } from "../bench/chart.ts";

const ROOT = resolve(import.meta.dir, "..");
const RESULTS = join(ROOT, "bench", "results");
const scratch = mkdtempSync(join(tmpdir(), "exm-charts-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function chart(...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = Bun.spawnSync([process.execPath, join(ROOT, "bench", "chart.ts"), ...args], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode ?? -1, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

/** A fresh input directory holding the given files (name -> JSON text or object). */
function inputs(files: Record<string, unknown>): string {
  const dir = mkdtempSync(join(scratch, "in-"));
  for (const [name, body] of Object.entries(files))
    writeFileSync(join(dir, name), typeof body === "string" ? body : JSON.stringify(body, null, 2));
  return dir;
}

/**
 * Well-formed SVG as these charts are written: one <svg> root, every element
 * closed in order, attribute values quoted, no bare & or < in text, and no
 * number that came out of a missing field (NaN, undefined, Infinity).
 */
function expectWellFormed(svg: string, what: string): void {
  expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg" '), what).toBe(true);
  expect(svg.trimEnd().endsWith("</svg>"), what).toBe(true);
  expect(svg, what).not.toMatch(/NaN|undefined|Infinity|="null"|>null</);
  const stack: string[] = [];
  const tag = /<(\/?)([a-zA-Z]+)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/y;
  let i = 0;
  while (i < svg.length) {
    const lt = svg.indexOf("<", i);
    const text = svg.slice(i, lt < 0 ? svg.length : lt);
    expect(text.replace(/&(amp|lt|gt|quot|#\d+);/g, ""), `${what}: bare & or > in text near ${JSON.stringify(text.slice(0, 60))}`).not.toMatch(/[&>]/);
    if (lt < 0) break;
    tag.lastIndex = lt;
    const m = tag.exec(svg);
    expect(m, `${what}: malformed tag at ${JSON.stringify(svg.slice(lt, lt + 60))}`).not.toBeNull();
    const [all, close, name, , self] = m!;
    if (close) expect(stack.pop(), `${what}: </${name}> closes another element`).toBe(name);
    else if (!self) stack.push(name!);
    if (!close && stack.length === 0) expect(name, what).toBe("svg");
    i = lt + all.length;
  }
  expect(stack, `${what}: unclosed elements`).toEqual([]);
}

/** The text of the chart's <text> elements, entities decoded (what a reader sees). */
function texts(svg: string): string {
  return [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]!.replace(/&quot;/g, '"').replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">").replace(/&amp;/g, "&")).join("\n");
}

const readJson = (name: string) => JSON.parse(readFileSync(join(RESULTS, name), "utf8"));

describe("the committed results", () => {
  const out = join(scratch, "committed");
  const r = chart("--out", out);

  test("bun bench/chart.ts draws each of them, one line per chart, exit 0", () => {
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe("");
    const committed = readdirSync(RESULTS);
    for (const kind of ["latest", "alloc", "programs", "fit"]) {
      if (committed.includes(`${kind}.json`)) expect(r.stdout).toContain(`${kind}.svg (from ${kind}.json)`);
      else expect(r.stdout).toContain(`skip ${kind}: no ${kind}.json in bench/results`);
    }
    expect(r.stdout).toMatch(/scale\.svg \(from scale-[^)]*\)/);
  });

  test("each chart is well-formed and the same as the committed SVG", () => {
    for (const f of readdirSync(out)) {
      const svg = readFileSync(join(out, f), "utf8");
      expectWellFormed(svg, f);
      expect(existsSync(join(RESULTS, f)), `bench/results/${f} is not committed: run bun bench/chart.ts`).toBe(true);
      expect(svg === readFileSync(join(RESULTS, f), "utf8"), `bench/results/${f} is not the chart of the committed JSON: run bun bench/chart.ts`).toBe(true);
    }
  });

  test("scale.svg: every size of every scale*.json, the four backends, the goals, the files named", () => {
    const t = texts(readFileSync(join(out, "scale.svg"), "utf8"));
    const files = readdirSync(RESULTS).filter((f) => /^scale.*\.json$/.test(f));
    const sizes = new Set<string>(), backends = new Set<string>();
    for (const f of files)
      for (const row of readJson(f).rows) {
        sizes.add(row.size);
        backends.add(row.backend);
      }
    for (const s of sizes) expect(t).toContain(`${s.replace(/G$/, " GiB")} under a 1 GiB memory cgroup`);
    for (const [b, label] of [["device", "device (fio, O_DIRECT)"], ["raw", "raw mapping, best advice"], ["swap", "anonymous + swap"], ["exm", "exm (defaults)"]] as const)
      if (backends.has(b)) expect(t).toContain(label);
    expect(t).not.toContain("exm-base");
    for (const g of ["goal: write 0.8x device", "goal: read 0.9x device", "goal: 0.9x device QD1", "goal: 2x swap", "goal: 5x"]) expect(t).toContain(g);
    expect(t).toContain("Seconds per GiB written and read back");
    expect(t).toMatch(/goal: 1\.2x exm at 4G/);
    // swap was measured in one file only: it is named as swap's source.
    const swapFiles = files.filter((f) => readJson(f).rows.some((x: { backend: string }) => x.backend === "swap"));
    if (swapFiles.length === 1) expect(t).toMatch(new RegExp(`swap: ${swapFiles[0]!.replace(".", "\\.")} \\(`));
  });

  test("alloc.svg: both variants for every workload x threads, the goal, the instructions", () => {
    const t = texts(readFileSync(join(out, "alloc.svg"), "utf8"));
    const res = readJson("alloc.json");
    expect(t).toContain(`commit ${res.commit}`);
    expect(t).toContain("Threshold 0 (every block from the file-backed arena)");
    expect(t).toContain("Default threshold (every request passes through to glibc)");
    expect(t).toContain("goal 1.1");
    for (const row of res.rows) {
      const label = `${row.workload}, ${row.threads} thread${row.threads === 1 ? "" : "s"}`;
      expect(t.split("\n").filter((l) => l === label).length, label).toBe(2);
    }
    const t0 = res.rows[0].t0CpuRatio.median as number;
    expect(t).toContain(`CPU ${t0.toFixed(2)}x`);
    expect(t).toContain("Instructions per operation");
    for (const i of res.instructions) expect(t).toContain((i.perOp as number).toFixed(1));
  });

  test("programs.svg: numpy phases exm vs swap, the gathers, the sort rows, the killed run", () => {
    const t = texts(readFileSync(join(out, "programs.svg"), "utf8"));
    for (const s of ["fill", "a*2+1 in place", "sum", "sort a slice", "whole run", "random gathers", "goal: 2x swap",
      "exm (defaults)", "anonymous + swap file", "plain sort -S 200M (spills to its files)", "killed by the memory limit",
      "bytes read from the disk over the bytes the phase touched", "goal: 2"]) expect(t).toContain(s);
    expect(t).toMatch(/exm 161 s: 2\.80x faster than swap/);
    expect(t).toMatch(/capped: unfinished/);
  });

  test("latest.svg: out of core, in RAM, the goals", () => {
    const t = texts(readFileSync(join(out, "latest.svg"), "utf8"));
    for (const s of ["sequential MB/s", "Random 4 KiB reads per second", "In RAM", "Goals", "OOM-killed"]) expect(t).toContain(s);
  });
});

/** bench/fit.ts's row as it writes it now (with auto), and as an older run wrote it. */
function fitRow(name: string, goal: number, ratio: number, extra: Record<string, unknown> = {}) {
  return { name, what: name, goal, ratioOf: "run", plainS: 1, exmS: ratio, ratio, ratioMin: ratio * 0.9, ratioMax: ratio * 1.2,
    plainMajflt: 0, exmMajflt: 58.5, autoS: 1, autoRatio: 0.9, autoRatioMin: 0.8, autoRatioMax: 1.1, autoMajflt: 0, met: ratio <= goal, ...extra };
}

describe("results of other shapes", () => {
  test("fit.json as bench/fit.ts writes it: exm and auto per workload, the goal lines, free, start-up", () => {
    const dir = inputs({ "fit.json": {
      date: "2026-12-02T07:00:00.000Z", rounds: 3, quick: false, load: "7.5 8 9 1/2 3",
      startup: { plainMs: 1.1, exmMs: 26.3, overMs: 25.2, overMin: 19 },
      rows: [fitRow("c-doubling", 1.1, 2.24), fitRow("pool-cow", 1.2, 1.53),
        { ...fitRow("free-2g", 2, 0.0004), ratioOf: "free() call", plainFreeMs: 830, exmFreeMs: 0.33 }],
    } });
    const r = chart("--in", dir, "fit");
    expect(r.code, r.stderr).toBe(0);
    const svg = readFileSync(join(dir, "fit.svg"), "utf8");
    expectWellFormed(svg, "fit.svg");
    const t = texts(svg);
    for (const s of ["exm (default)", "exm --threshold auto", "c-doubling", "exm 2.24x (2.02-2.69), missed, 58.5 major faults",
      "auto 0.90x (0.80-1.10)", "goal 1.2 (cow pool)", "goal 1.1", "free-2g", "0.33 ms vs 830 ms", "munmap", "25.2 ms, goal +20 ms: missed",
      "goal +20 ms", "3 rounds", "pool-cow: pool-cow;"]) expect(t).toContain(s);
  });

  test("an older fit.json (no auto, no ratioOf, NaN written as null) is drawn without auto", () => {
    const old = fitRow("free-512m", 2, 0.04);
    for (const k of ["ratioOf", "autoS", "autoRatio", "autoRatioMin", "autoRatioMax", "autoMajflt"]) delete (old as Record<string, unknown>)[k];
    const dir = inputs({ "fit.json": { date: "2026-12-01T21:38:11.096Z", rounds: 1, quick: true, load: "12.96 13.30 9.13 13/199 15166",
      startup: { plainMs: 2.5, exmMs: null, overMs: null, overMin: 38 },
      rows: [{ ...fitRow("numpy", 1.1, 0.99), ratioOf: undefined, autoRatio: undefined, ratioMin: null }, old] } });
    const r = chart("--in", dir, "fit");
    expect(r.code, r.stderr).toBe(0);
    const svg = readFileSync(join(dir, "fit.svg"), "utf8");
    expectWellFormed(svg, "old fit.svg");
    const t = texts(svg);
    expect(t).not.toContain("exm --threshold auto");
    expect(t).toContain("--quick (quarter sizes)");
    expect(t).toContain("free() of a filled large block"); // free-512m without ratioOf is still a free() row
    expect(t).toContain("exm 0.04x");
  });

  test("alloc.json without instructions, with a failed cell; scale without swap and a failed row; an unfinished programs run", () => {
    const alloc = readJson("alloc.json");
    alloc.instructions = "not run (--no-instr)";
    alloc.rows[0].t0Ratio = { median: null, min: null, max: null, n: 0, samples: [] };
    alloc.rows[0].t0CpuRatio = { median: null, min: null, max: null, n: 0, samples: [] };
    alloc.rows[0].errors = { "exm-t0": ["exit 134: exm: out of disk"] };
    const scale = { schema: "exm-scale/1", date: "2026-12-02T07:00:00.000Z", limit: 2 ** 30, rounds: 1, threads: 4, rows: [
      { size: "8G", backend: "device", metrics: { write_mbs: { median: 200, min: 200, max: 200, n: 1 }, rand_qd1: { median: 9000, min: 9000, max: 9000, n: 1 } }, fails: [] },
      { size: "8G", backend: "exm", metrics: { write_mbs: { median: 150, min: 140, max: 160, n: 2 } }, fails: [] },
      { size: "8G", backend: "raw", metrics: {}, fails: ["code=137 signal=SIGKILL oom=true"] },
    ] };
    const programs = { schema: "exm-programs/1", date: "2026-12-02T07:00:00.000Z", rounds: 1, command: "bun bench/programs.ts --jobs numpy",
      rows: [{ job: "numpy", backend: "exm", notes: ["round 1: capped at 60 s"], metrics: { fill_s: { median: 30, min: 30, max: 30, n: 1 } } },
        { job: "numpy", backend: "swap", notes: ["round 1: exit 1"], metrics: {} }] };
    const dir = inputs({ "alloc.json": alloc, "scale-x.json": scale, "programs.json": programs });
    const r = chart("--in", dir);
    expect(r.code, r.stderr).toBe(0);
    const a = readFileSync(join(dir, "alloc.svg"), "utf8");
    expectWellFormed(a, "alloc.svg");
    expect(texts(a)).toContain("failed: exit 134: exm: out of disk");
    expect(texts(a)).toContain("Instructions: not run (--no-instr).");
    const s = readFileSync(join(dir, "scale.svg"), "utf8");
    expectWellFormed(s, "scale.svg");
    expect(texts(s)).toContain("8 GiB under a 1 GiB memory cgroup");
    expect(texts(s)).toContain("failed: code=137 signal=SIGKILL oom=true");
    expect(texts(s)).toContain("150 MB/s, 0.75x device");
    expect(texts(s)).not.toContain("anonymous + swap");
    const p = readFileSync(join(dir, "programs.svg"), "utf8");
    expectWellFormed(p, "programs.svg");
    expect(texts(p)).toContain("swap: round 1: exit 1");
  });
});

describe("bad input: one line, non-zero exit", () => {
  const oneLine = (r: { stderr: string }) => {
    expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
    expect(r.stderr).not.toMatch(/^\s+at /m);
  };

  test("a file that is not JSON: named, the other charts still written", () => {
    const dir = inputs({ "alloc.json": "{ not json" });
    copyFileSync(join(RESULTS, "programs.json"), join(dir, "programs.json"));
    const r = chart("--in", dir);
    expect(r.code).toBe(1);
    oneLine(r);
    expect(r.stderr).toMatch(/^chart: .*alloc\.json: not JSON \(/);
    expect(existsSync(join(dir, "programs.svg"))).toBe(true);
    expect(existsSync(join(dir, "alloc.svg"))).toBe(false);
  });

  test("JSON that is not the result it should be", () => {
    for (const [name, body, why] of [
      ["fit.json", { rows: 5 }, 'no "rows" list: not a bench/fit.ts result'],
      ["alloc.json", [1, 2], 'no "rows" list: not a bench/alloc.ts result'],
      ["latest.json", { scenarios: [{ id: "ooc" }], goals: [], date: "x" }, "a scenario without id or variants"],
      ["scale-bad.json", "null", 'scale-bad.json: no "rows" list: not a bench/scale.ts result'],
    ] as const) {
      const dir = inputs({ [name]: body });
      const r = chart("--in", dir);
      expect(r.code, name).toBe(1);
      oneLine(r);
      expect(r.stderr, name).toContain(why);
    }
  });

  test("a kind asked for whose result is missing; an unknown argument", () => {
    const empty = mkdtempSync(join(scratch, "empty-"));
    const r = chart("--in", empty, "fit");
    expect(r.code).toBe(1);
    oneLine(r);
    expect(r.stderr).toContain("chart: no fit.json in");
    expect(r.stderr).toContain("(bench/fit.ts writes it)");
    const all = chart("--in", empty);
    expect(all.code).toBe(0);
    expect(all.stdout.trimEnd().split("\n")).toHaveLength(5);
    const bad = chart("--colour");
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^chart: unknown argument --colour\nusage: bun bench\/chart\.ts/);
  });
});

describe("after a benchmark's run (chartAfterRun)", () => {
  test("the chart goes next to the result; scale's from every scale*.json there and the file written; a bad result is a line, not a throw", () => {
    const dir = inputs({ "alloc-x.json": readJson("alloc.json"), "scale-a.json": readJson("scale-after-32g.json"),
      "mine.json": readJson("scale-after-16g.json"), "programs.json": "[" });
    chartAfterRun("alloc", join(dir, "alloc-x.json"));
    expectWellFormed(readFileSync(join(dir, "alloc-x.svg"), "utf8"), "alloc-x.svg");
    chartAfterRun("scale", join(dir, "mine.json"));
    const t = texts(readFileSync(join(dir, "scale.svg"), "utf8"));
    expect(t).toContain("scale-a.json (");
    expect(t).toContain("mine.json (");
    const errors: string[] = [];
    const was = console.error;
    console.error = (...a: unknown[]) => void errors.push(a.join(" "));
    try {
      chartAfterRun("programs", join(dir, "programs.json"));
    } finally {
      console.error = was;
    }
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/^chart: .*programs\.json: not JSON/);
    expect(existsSync(join(dir, "programs.svg"))).toBe(false);
  });
});
