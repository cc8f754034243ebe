/**
 * The chart of bench/run.ts's result (bench/results/latest.json ->
 * latest.svg): out-of-core throughput, random reads (log scale), in-RAM
 * times relative to glibc with the goals marked, and the goals' verdicts.
 */
import { type Bar, COLORS, ChartInputError, Page, type Row, fmt, records, str } from "./chart-svg.ts";

interface Summary { median: number; min: number; max: number; n: number }
interface Variant { name: string; status: string; metrics: Record<string, Summary>; note?: string; ratio?: Summary }
interface Scenario { id: string; title: string; status: string; variants: Variant[]; note?: string }
interface Goal { id: string; text: string; target: string; measured: number | null; met: boolean | null; detail: string }
export interface BenchResult {
  date: string;
  mode: string;
  machine: Record<string, unknown>;
  scenarios: Scenario[];
  goals: Goal[];
}

const statusText = (v: Variant) => (v.status === "oom-killed" ? "OOM-killed" : v.status === "not-run" ? "not run (--with-swap)" : v.status);

/** The out-of-core panels (sequential MB/s, random reads), or the line saying they were skipped. */
function oocPanels(res: BenchResult, page: Page): void {
  const ooc = res.scenarios.find((s) => s.id === "ooc");
  if (ooc && ooc.status === "ok") {
    const m = (v: Variant, k: string): Bar => {
      const s = v.metrics?.[k];
      const ok = v.status === "ok" && s && s.n > 0;
      return ok
        ? { value: s.median, min: s.min, max: s.max, color: k === "write_mbs" ? COLORS.write : k === "seq_mbs" ? COLORS.read : COLORS.rand,
            text: `${fmt(s.median)}${k === "rand_per_s" ? "/s" : " MB/s"}` }
        : { value: null, color: v.status === "oom-killed" ? COLORS.bad : COLORS.muted, text: statusText(v) };
    };
    page.panel({
      title: `${ooc.title}: sequential MB/s (higher is better)`,
      legend: [{ color: COLORS.write, label: "write" }, { color: COLORS.read, label: "read" }],
      rows: ooc.variants.map((v) => ({ label: v.name, bars: [m(v, "write_mbs"), m(v, "seq_mbs")] })),
    });
    page.panel({
      title: "Random 4 KiB reads per second, same runs (log scale)",
      log: true,
      rows: ooc.variants.map((v) => ({ label: v.name, bars: [m(v, "rand_per_s")] })),
    });
  } else if (ooc) {
    page.note(`Out of core: skipped (${ooc.note ?? ""})`);
    page.space(10);
  }
}

/** In RAM: each exm variant's time relative to glibc's, one row each. */
function ramRows(res: BenchResult): Row[] {
  const rows: Row[] = [];
  for (const id of ["small-1t", "small-2t", "small-instr", "bigcycle"]) {
    const sc = res.scenarios.find((s) => s.id === id);
    if (!sc || sc.status !== "ok") continue;
    const key = id === "bigcycle" ? "ms_per_cycle" : id === "small-instr" ? "per_op" : "seconds";
    const base = sc.variants.find((v) => v.name === "glibc")?.metrics?.[key];
    if (!base || !(base.median > 0)) continue;
    for (const v of sc.variants) {
      if (v.name === "glibc") continue;
      // The paired ratio (round by round) when there is one.
      const r = v.ratio;
      const s = v.metrics?.[key];
      const what = { bigcycle: "large block cycle", "small-1t": "small, 1 thread", "small-2t": "small, 2 threads",
        "small-instr": "small, 1 thread, instr." }[id];
      const label = `${what}: ${v.name === "exm-t0" ? "threshold 0" : "exm"}`;
      rows.push({
        label,
        bars: [v.status !== "ok" || !s || !s.n
          ? { value: null, color: COLORS.bad, text: v.status }
          : r && r.n
            ? { value: r.median, min: r.min, max: r.max, color: COLORS.ratio,
                text: `${r.median.toFixed(2)}x` + (r.n > 1 && base.min > 0 ? `, fastest runs ${(s.min / base.min).toFixed(2)}x` : "") }
            : { value: s.median / base.median, min: s.min / base.median, max: s.max / base.median, color: COLORS.ratio,
                text: `${(s.median / base.median).toFixed(2)}x` }],
      });
    }
  }
  return rows;
}

/** Checks the shape the renderer relies on (a bench/run.ts result), one line if it is not. */
function check(x: unknown): BenchResult {
  const what = "a bench/run.ts result (latest.json)";
  const scenarios = records(x, "scenarios", what);
  records(x, "goals", what);
  for (const s of scenarios)
    if (typeof s.id !== "string" || !Array.isArray(s.variants)) throw new ChartInputError(`a scenario without id or variants: not ${what}`);
  const r = x as BenchResult;
  if (typeof r.date !== "string") throw new ChartInputError(`no date: not ${what}`);
  return { ...r, machine: r.machine ?? {}, mode: String(r.mode ?? "") };
}

export function renderLatest(json: unknown): string {
  const res = check(json);
  const page = new Page();
  page.title(`exm benchmarks, ${res.mode} run of ${res.date.slice(0, 10)} ` +
    `(${str(res.machine.cpus, "?")} cores, Linux ${str(res.machine.kernel, "?").split("-")[0]!}): medians, whiskers min-max`);
  page.space(6);
  oocPanels(res, page);
  const rows = ramRows(res);
  if (rows.length)
    page.panel({
      title: "In RAM: time (or instructions) relative to glibc malloc, paired round by round (lower is better; glibc = 1)",
      rows,
      refs: [{ value: 1, label: "glibc" }, { value: 1.2, label: "1.2x", color: "#999" }, { value: 1.3, label: "1.3x", color: "#999" }],
    });
  page.heading("Goals");
  for (const g of res.goals) {
    const mark = g.met === null ? "–" : g.met ? "✓" : "✗";
    const color = g.met === null ? "#888" : g.met ? COLORS.good : COLORS.bad;
    page.mark(mark, color, `${g.text} (${g.target}): ${g.detail}`);
  }
  return page.svg();
}

