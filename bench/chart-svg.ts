/**
 * The drawing primitives of the benchmark charts (bench/chart.ts): a page of
 * horizontal-bar panels written as SVG by hand (no dependency). A panel is a
 * title, an optional legend, rows of one or more bars (a median with min-max
 * whiskers, or a line of text where there is no value), on a linear or log
 * axis, with dashed reference lines (a baseline, a goal). The renderers of the
 * result kinds (bench/chart-*.ts) build panels; this file knows nothing of
 * what a benchmark measures.
 *
 * Also the input checks every renderer shares: a result file is JSON written
 * by another program, possibly older or unfinished, so the renderers read it
 * through num()/summary()/... which turn anything odd into "no value" (drawn
 * as text) and throw ChartInputError, a one-line message, only when the file
 * is not the kind of result it should be.
 */

export const W = 900;
const LABEL_W = 250;
const VALUE_W = 240;
const PLOT_W = W - LABEL_W - VALUE_W - 20;
const BAR_H = 14;
export const COLORS = {
  write: "#4e79a7", read: "#59a14f", rand: "#f28e2b", randT: "#b07aa1", ratio: "#76b7b2", other: "#9c755f",
  bad: "#e15759", muted: "#bab0ac", good: "#2e7d32",
};

export function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** A figure for a bar's text: 12,611 / 534 / 40.4 / 2.56 / 0.0004. */
export function fmt(x: number): string {
  if (!Number.isFinite(x)) return "-";
  if (Math.abs(x) >= 1000) return Math.round(x).toLocaleString("en-US");
  if (Math.abs(x) >= 100) return x.toFixed(0);
  if (Math.abs(x) >= 10) return x.toFixed(1);
  if (Math.abs(x) >= 0.01 || x === 0) return x.toFixed(2);
  return x.toPrecision(1);
}

/** "2026-12-02 01:08 UTC" of an ISO date, or the text as it is. */
export function when(iso: unknown): string {
  const s = typeof iso === "string" ? iso : "";
  return /^\d{4}-\d\d-\d\dT\d\d:\d\d/.test(s) ? `${s.slice(0, 10)} ${s.slice(11, 16)} UTC` : s || "undated";
}

export interface Bar { value: number | null; min?: number; max?: number; color: string; text: string }
export interface Row { label: string; bars: Bar[] }
export interface Ref { value: number; label: string; color?: string }
export interface Panel {
  title: string;
  rows: Row[];
  log?: boolean;
  refs?: Ref[];
  legend?: { color: string; label: string }[];
}

/** A chart page: title, lines of text and panels, top to bottom. */
export class Page {
  private out: string[] = [];
  private y = 10;

  title(text: string): this {
    this.out.push(`<text x="10" y="${this.y + 16}" class="t">${esc(text)}</text>`);
    this.y += 28;
    return this;
  }

  heading(text: string): this {
    this.out.push(`<text x="10" y="${this.y + 14}" class="h">${esc(text)}</text>`);
    this.y += 22;
    return this;
  }

  /** A line of small text, wrapped at ~140 characters (SVG has no text layout). */
  note(text: string, color?: string): this {
    for (const l of wrap(text, 140)) {
      this.out.push(`<text x="14" y="${this.y + 11}" class="s"${color ? ` fill="${color}"` : ""}>${esc(l)}</text>`);
      this.y += 14;
    }
    return this;
  }

  /** A line with a leading mark (a goal met, missed or not measured), wrapped at ~130 characters. */
  mark(mark: string, color: string, text: string): this {
    this.out.push(`<text x="14" y="${this.y + 11}" class="l" fill="${color}">${esc(mark)}</text>`);
    const lines = wrap(text, 130);
    lines.forEach((l, i) => this.out.push(`<text x="${i ? 44 : 32}" y="${this.y + 11 + i * 15}" class="l">${esc(l)}</text>`));
    this.y += 17 + (lines.length - 1) * 15;
    return this;
  }

  space(px: number): this {
    this.y += px;
    return this;
  }

  panel(p: Panel): this {
    this.y = drawPanel(p, this.y, this.out);
    return this;
  }

  svg(): string {
    const h = Math.ceil(this.y + 8);
    return [
      `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${h}" viewBox="0 0 ${W} ${h}" font-family="Helvetica, Arial, sans-serif">`,
      `<style>.t{font-size:15px;font-weight:bold}.h{font-size:13px;font-weight:bold}.l{font-size:12px}.s{font-size:11px}.w{stroke:#222;stroke-width:1;fill:none}</style>`,
      `<rect width="100%" height="100%" fill="#fff"/>`,
      ...this.out,
      "</svg>",
      "",
    ].join("\n");
  }
}

function wrap(text: string, width: number): string[] {
  const lines: string[] = [""];
  for (const w of text.split(" ")) {
    if (lines.at(-1)!.length && lines.at(-1)!.length + w.length + 1 > width) lines.push("");
    lines[lines.length - 1] += (lines.at(-1) ? " " : "") + w;
  }
  return lines;
}

function drawPanel(p: Panel, y0: number, out: string[]): number {
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
  const vals = p.rows.flatMap((r) => r.bars.flatMap((b) => [b.value ?? 0, b.max ?? 0, b.min ?? 0]))
    .concat((p.refs ?? []).map((r) => r.value))
    .filter((v) => Number.isFinite(v) && v > 0);
  const hi = Math.max(1e-9, ...vals) * 1.05;
  // A log axis starts at half the smallest value: every bar has some length.
  const lo = p.log ? Math.min(hi / 10, ...vals) / 2 : 0;
  const sx = (v: number) => {
    if (p.log) {
      const a = Math.log10(Math.max(v, lo));
      return LABEL_W + ((a - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * PLOT_W;
    }
    return LABEL_W + (Math.max(0, v) / hi) * PLOT_W;
  };
  const top = y;
  for (const r of p.rows) {
    const h = r.bars.length * (BAR_H + 2);
    out.push(`<text x="${LABEL_W - 8}" y="${y + h / 2 + 4}" class="l" text-anchor="end">${esc(r.label)}</text>`);
    for (const b of r.bars) {
      if (b.value !== null && Number.isFinite(b.value)) {
        const x1 = sx(b.value);
        out.push(`<rect x="${LABEL_W}" y="${y}" width="${Math.max(1, x1 - LABEL_W).toFixed(1)}" height="${BAR_H}" fill="${b.color}"/>`);
        const whisker = b.min !== undefined && b.max !== undefined && Number.isFinite(b.min) && Number.isFinite(b.max) && b.max > b.min;
        if (whisker) {
          const a = sx(b.min!), c = sx(b.max!), m = y + BAR_H / 2;
          out.push(`<path d="M${a.toFixed(1)} ${m}H${c.toFixed(1)}M${a.toFixed(1)} ${m - 4}v8M${c.toFixed(1)} ${m - 4}v8" class="w"/>`);
        }
        // A text too long for the room right of the bar moves left over it, on a white ground.
        const want = Math.max(x1, whisker ? sx(b.max!) : x1) + 5, width = b.text.length * 5.9, tx = Math.min(want, W - 6 - width);
        if (tx < want) out.push(`<rect x="${(tx - 2).toFixed(1)}" y="${y}" width="${(width + 4).toFixed(1)}" height="${BAR_H}" fill="#fff" fill-opacity="0.85"/>`);
        out.push(`<text x="${tx.toFixed(1)}" y="${y + BAR_H - 3}" class="s">${esc(b.text)}</text>`);
      } else {
        out.push(`<text x="${LABEL_W + 4}" y="${y + BAR_H - 3}" class="s" fill="${b.color}">${esc(b.text)}</text>`);
      }
      y += BAR_H + 2;
    }
    y += 6;
  }
  (p.refs ?? []).forEach((ref, i) => {
    const x = sx(ref.value).toFixed(1);
    const ly = y + 8 + (i % 3) * 11;
    out.push(`<line x1="${x}" y1="${top - 4}" x2="${x}" y2="${ly - 9}" stroke="${ref.color ?? "#333"}" stroke-dasharray="4 3"/>`);
    out.push(`<text x="${x}" y="${ly}" class="s" text-anchor="middle" fill="${ref.color ?? "#333"}">${esc(ref.label)}</text>`);
  });
  if (p.refs?.length) y += 12 + (Math.min(p.refs.length, 3) - 1) * 11;
  return y + 10;
}

/* ---- reading a result file -------------------------------------------------------- */

/** A result file that is not the kind it should be; the message is one line. */
export class ChartInputError extends Error {}

export type Json = Record<string, unknown>;

export function isObject(x: unknown): x is Json {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/** o[key] as an array of objects, or ChartInputError naming what is missing. */
export function records(o: unknown, key: string, what: string): Json[] {
  const v = isObject(o) ? o[key] : undefined;
  if (!Array.isArray(v)) throw new ChartInputError(`no "${key}" list: not ${what}`);
  return v.filter(isObject);
}

/** A finite number, or null (JSON writes NaN and Infinity as null). */
export function num(x: unknown): number | null {
  return typeof x === "number" && Number.isFinite(x) ? x : null;
}

export function str(x: unknown, def = ""): string {
  return typeof x === "string" ? x : typeof x === "number" ? String(x) : def;
}

export interface Summary { median: number; min: number; max: number; n: number }

/** A {median, min, max, n} with a finite median, or null. */
export function summary(x: unknown): Summary | null {
  if (!isObject(x)) return null;
  const m = num(x.median);
  if (m === null || num(x.n) === 0) return null;
  return { median: m, min: num(x.min) ?? m, max: num(x.max) ?? m, n: num(x.n) ?? 1 };
}

/** A bar of a summary (whiskers min-max), or a line of text saying why there is none. */
export function summaryBar(s: Summary | null, color: string, text: (s: Summary) => string, none = "no result"): Bar {
  return s ? { value: s.median, min: s.min, max: s.max, color, text: text(s) } : { value: null, color: COLORS.muted, text: none };
}

/** "load 6.4-14" of a list of load averages (numbers, or /proc/loadavg lines: the first figure), or "". */
export function loadRange(xs: unknown): string {
  const v = (Array.isArray(xs) ? xs : []).map((x) => num(typeof x === "string" ? parseFloat(x) : x)).filter((x): x is number => x !== null);
  if (!v.length) return "";
  const lo = Math.min(...v), hi = Math.max(...v);
  return `load ${fmt(lo)}${hi > lo ? `-${fmt(hi)}` : ""}`;
}
