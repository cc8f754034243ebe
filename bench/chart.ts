/**
 * The benchmark chart: a self-written SVG (no dependency) of a result object
 * from bench/run.ts -- out-of-core throughput, random reads (log scale), in-RAM
 * times relative to glibc with the goals marked, and the calloc/start-up
 * figures.
 */

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

const W = 900;
const LABEL_W = 250;
const VALUE_W = 150;
const PLOT_W = W - LABEL_W - VALUE_W - 20;
const BAR_H = 14;
const COLORS = { write: "#4e79a7", read: "#59a14f", rand: "#f28e2b", ratio: "#76b7b2", bad: "#e15759", muted: "#bab0ac" };

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function fmt(x: number): string {
  if (!Number.isFinite(x)) return "-";
  if (Math.abs(x) >= 1000) return Math.round(x).toLocaleString("en-US");
  if (Math.abs(x) >= 100) return x.toFixed(0);
  if (Math.abs(x) >= 10) return x.toFixed(1);
  return x.toFixed(2);
}

interface Bar { value: number | null; min?: number; max?: number; color: string; text: string }
interface Row { label: string; bars: Bar[] }
interface Panel {
  title: string;
  rows: Row[];
  log?: boolean;
  refs?: { value: number; label: string; color?: string }[];
  legend?: { color: string; label: string }[];
}

function panel(p: Panel, y0: number, out: string[]): number {
  let y = y0;
  out.push(`<text x="10" y="${y + 14}" class="h">${esc(p.title)}</text>`);
  y += 22;
  if (p.legend) {
    let x = LABEL_W;
    for (const l of p.legend) {
      out.push(`<rect x="${x}" y="${y}" width="10" height="10" fill="${l.color}"/>`);
      out.push(`<text x="${x + 14}" y="${y + 9}" class="s">${esc(l.label)}</text>`);
      x += 24 + l.label.length * 6.5;
    }
    y += 16;
  }
  const vals = p.rows.flatMap((r) => r.bars.flatMap((b) => [b.value ?? 0, b.max ?? 0]))
    .concat((p.refs ?? []).map((r) => r.value))
    .filter((v) => Number.isFinite(v) && v > 0);
  const hi = Math.max(1e-9, ...vals) * 1.05;
  const lo = p.log ? Math.max(1, Math.min(...vals.filter((v) => v > 0)) / 2) : 0;
  const sx = (v: number) => {
    if (p.log) {
      const a = Math.log10(Math.max(v, lo));
      return LABEL_W + ((a - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * PLOT_W;
    }
    return LABEL_W + (v / hi) * PLOT_W;
  };
  const top = y;
  for (const r of p.rows) {
    const h = r.bars.length * (BAR_H + 2);
    out.push(`<text x="${LABEL_W - 8}" y="${y + h / 2 + 4}" class="l" text-anchor="end">${esc(r.label)}</text>`);
    for (const b of r.bars) {
      if (b.value !== null && Number.isFinite(b.value)) {
        const x1 = sx(b.value);
        out.push(`<rect x="${LABEL_W}" y="${y}" width="${Math.max(1, x1 - LABEL_W).toFixed(1)}" height="${BAR_H}" fill="${b.color}"/>`);
        if (b.min !== undefined && b.max !== undefined && Number.isFinite(b.min) && b.max > b.min) {
          const a = sx(b.min), c = sx(b.max), m = y + BAR_H / 2;
          out.push(`<path d="M${a.toFixed(1)} ${m}H${c.toFixed(1)}M${a.toFixed(1)} ${m - 4}v8M${c.toFixed(1)} ${m - 4}v8" class="w"/>`);
        }
        out.push(`<text x="${Math.max(x1, b.max !== undefined && Number.isFinite(b.max) ? sx(b.max) : x1) + 5}" y="${y + BAR_H - 3}" class="s">${esc(b.text)}</text>`);
      } else {
        out.push(`<text x="${LABEL_W + 4}" y="${y + BAR_H - 3}" class="s" fill="${b.color}">${esc(b.text)}</text>`);
      }
      y += BAR_H + 2;
    }
    y += 6;
  }
  (p.refs ?? []).forEach((ref, i) => {
    const x = sx(ref.value).toFixed(1);
    const ly = y + 8 + (i % 2) * 11;
    out.push(`<line x1="${x}" y1="${top - 4}" x2="${x}" y2="${ly - 9}" stroke="${ref.color ?? "#333"}" stroke-dasharray="4 3"/>`);
    out.push(`<text x="${x}" y="${ly}" class="s" text-anchor="middle" fill="${ref.color ?? "#333"}">${esc(ref.label)}</text>`);
  });
  if (p.refs?.length) y += p.refs.length > 1 ? 23 : 12;
  return y + 10;
}

const statusText = (v: Variant) => (v.status === "oom-killed" ? "OOM-killed" : v.status === "not-run" ? "not run (--with-swap)" : v.status);

/** The out-of-core panels (sequential MB/s, random reads), or the line saying they were skipped. */
function oocPanels(res: BenchResult, y: number, out: string[]): number {
  const ooc = res.scenarios.find((s) => s.id === "ooc");
  if (ooc && ooc.status === "ok") {
    const m = (v: Variant, k: string): Bar => {
      const s = v.metrics[k];
      const ok = v.status === "ok" && s && s.n > 0;
      return ok
        ? { value: s.median, min: s.min, max: s.max, color: k === "write_mbs" ? COLORS.write : k === "seq_mbs" ? COLORS.read : COLORS.rand,
            text: `${fmt(s.median)}${k === "rand_per_s" ? "/s" : " MB/s"}` }
        : { value: null, color: v.status === "oom-killed" ? COLORS.bad : COLORS.muted, text: statusText(v) };
    };
    y = panel({
      title: `${ooc.title}: sequential MB/s (higher is better)`,
      legend: [{ color: COLORS.write, label: "write" }, { color: COLORS.read, label: "read" }],
      rows: ooc.variants.map((v) => ({ label: v.name, bars: [m(v, "write_mbs"), m(v, "seq_mbs")] })),
    }, y, out);
    y = panel({
      title: "Random 4 KiB reads per second, same runs (log scale)",
      log: true,
      rows: ooc.variants.map((v) => ({ label: v.name, bars: [m(v, "rand_per_s")] })),
    }, y, out);
  } else if (ooc) {
    out.push(`<text x="10" y="${y + 12}" class="l">Out of core: skipped (${esc(ooc.note ?? "")})</text>`);
    y += 24;
  }
  return y;
}

/** In RAM: each exm variant's time relative to glibc's, one row each. */
function ramRows(res: BenchResult): Row[] {
  const rows: Row[] = [];
  for (const id of ["small-1t", "small-2t", "small-instr", "bigcycle"]) {
    const sc = res.scenarios.find((s) => s.id === id);
    if (!sc || sc.status !== "ok") continue;
    const key = id === "bigcycle" ? "ms_per_cycle" : id === "small-instr" ? "per_op" : "seconds";
    const base = sc.variants.find((v) => v.name === "glibc")?.metrics[key];
    if (!base || !(base.median > 0)) continue;
    for (const v of sc.variants) {
      if (v.name === "glibc") continue;
      // The paired ratio (round by round) when there is one.
      const r = v.ratio;
      const s = v.metrics[key];
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

/** The goals, one marked line each (wrapped). */
function goalLines(res: BenchResult, y: number, out: string[]): number {
  out.push(`<text x="10" y="${y + 14}" class="h">Goals</text>`);
  y += 22;
  for (const g of res.goals) {
    const mark = g.met === null ? "–" : g.met ? "✓" : "✗";
    const color = g.met === null ? "#888" : g.met ? "#2e7d32" : COLORS.bad;
    out.push(`<text x="14" y="${y + 11}" class="l" fill="${color}">${mark}</text>`);
    // Wrap at ~130 characters (no text layout in SVG).
    const words = `${g.text} (${g.target}): ${g.detail}`.split(" ");
    const lines: string[] = [""];
    for (const w of words) {
      if (lines.at(-1)!.length + w.length + 1 > 130) lines.push("");
      lines[lines.length - 1] += (lines.at(-1) ? " " : "") + w;
    }
    lines.forEach((l, i) => out.push(`<text x="${i ? 44 : 32}" y="${y + 11 + i * 15}" class="l">${esc(l)}</text>`));
    y += 17 + (lines.length - 1) * 15;
  }
  return y;
}

export function renderSvg(res: BenchResult): string {
  const out: string[] = [];
  let y = 10;
  out.push(`<text x="10" y="${y + 16}" class="t">exm benchmarks, ${esc(res.mode)} run of ${esc(res.date.slice(0, 10))} ` +
    `(${esc(String(res.machine.cpus))} cores, Linux ${esc(String(res.machine.kernel).split("-")[0]!)}): medians, whiskers min-max</text>`);
  y += 34;
  y = oocPanels(res, y, out);
  const rows = ramRows(res);
  if (rows.length)
    y = panel({
      title: "In RAM: time (or instructions) relative to glibc malloc, paired round by round (lower is better; glibc = 1)",
      rows,
      refs: [{ value: 1, label: "glibc" }, { value: 1.2, label: "1.2x", color: "#999" }, { value: 1.3, label: "1.3x", color: "#999" }],
    }, y, out);
  y = goalLines(res, y, out) + 8;
  const h = Math.ceil(y);
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${h}" viewBox="0 0 ${W} ${h}" font-family="Helvetica, Arial, sans-serif">`,
    `<style>.t{font-size:15px;font-weight:bold}.h{font-size:13px;font-weight:bold}.l{font-size:12px}.s{font-size:11px}.w{stroke:#222;stroke-width:1;fill:none}</style>`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    ...out,
    "</svg>",
    "",
  ].join("\n");
}
