/*
 * plot.ts: `exm --plot stats.json > run.svg`, the picture of a finished run.
 *
 * Reads the timeline that `exm --stats-file` keeps (supervise.ts) and draws
 * three panels over the run's wall time: memory (the tree's resident memory,
 * the arenas' resident part, the disk their files use), major faults per
 * second, and megabytes per second read from and written to storage (rates
 * between consecutive samples). Plain SVG, no script, no external font: it
 * opens in a browser and embeds in a README. Each series is one <polyline>
 * with a data-series attribute, so what is drawn can be checked against the
 * JSON (tests/plot.test.ts does).
 */

import { readFileSync } from "node:fs";
import { ExmError } from "./errors";
import { formatSize } from "./options";
import type { RunReport, Sample } from "./supervise";

export const WIDTH = 800;
export const LEFT = 90;
export const RIGHT = 20;
export const PANEL_HEIGHT = 150;
export const PANEL_GAP = 50;
export const TOP = 50;

interface Series {
  name: string;
  label: string;
  color: string;
  values: number[];
}

interface Panel {
  title: string;
  unit: (v: number) => string;
  series: Series[];
}

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

/** Per-interval rate of a cumulative counter (the first sample has none: 0). */
export function rates(samples: Sample[], key: "majorFaults" | "readBytes" | "writtenBytes"): number[] {
  return samples.map((s, i) => {
    if (i === 0) return 0;
    const dt = (s.t - samples[i - 1]!.t) / 1000;
    return dt > 0 ? Math.max(0, (s[key] - samples[i - 1]![key]) / dt) : 0;
  });
}

/** The coordinates of a value, as drawn (one decimal). */
export function xy(t: number, v: number, tMax: number, vMax: number, panel: number): [number, number] {
  const w = WIDTH - LEFT - RIGHT;
  const top = TOP + panel * (PANEL_HEIGHT + PANEL_GAP);
  const x = LEFT + (tMax > 0 ? (t / tMax) * w : 0);
  const y = top + PANEL_HEIGHT - (vMax > 0 ? (v / vMax) * PANEL_HEIGHT : 0);
  return [Math.round(x * 10) / 10, Math.round(y * 10) / 10];
}

export function panels(samples: Sample[]): Panel[] {
  return [
    {
      title: "memory",
      unit: (v) => formatSize(v),
      series: [
        { name: "resident", label: "resident (whole tree)", color: "#1f77b4", values: samples.map((s) => s.resident) },
        { name: "arenaResident", label: "arena resident", color: "#2ca02c", values: samples.map((s) => s.arenaResident) },
        { name: "disk", label: "arena on disk", color: "#d62728", values: samples.map((s) => s.disk) },
      ],
    },
    {
      title: "major faults per second",
      unit: (v) => `${Math.round(v)}/s`,
      series: [{ name: "majorFaultsPerSecond", label: "major faults/s", color: "#9467bd", values: rates(samples, "majorFaults") }],
    },
    {
      title: "storage I/O",
      unit: (v) => `${(v / 1e6).toFixed(1)} MB/s`,
      series: [
        { name: "readBytesPerSecond", label: "read", color: "#ff7f0e", values: rates(samples, "readBytes") },
        { name: "writtenBytesPerSecond", label: "written", color: "#8c564b", values: rates(samples, "writtenBytes") },
      ],
    },
  ];
}

export function renderSvg(r: RunReport): string {
  const samples = r.timeline!.samples;
  const tMax = samples.at(-1)?.t ?? 0;
  const ps = panels(samples);
  const height = TOP + ps.length * (PANEL_HEIGHT + PANEL_GAP);
  const w = WIDTH - LEFT - RIGHT;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif" font-size="12">`,
    `<title>${esc(`exm run: ${r.command.join(" ")}`)}</title>`,
    `<rect width="${WIDTH}" height="${height}" fill="white"/>`,
    `<text x="${LEFT}" y="20" font-size="14" font-weight="bold">${esc(r.command.join(" ").slice(0, 90))}</text>`,
    `<text x="${LEFT}" y="38">${esc(`${r.start}, ${(r.wallNs / 1e9).toFixed(2)} s, ${r.signal ? `killed by ${r.signal}` : `exit ${r.exitCode}`}, ${samples.length} samples`)}</text>`,
  ];
  ps.forEach((p, i) => {
    const top = TOP + i * (PANEL_HEIGHT + PANEL_GAP);
    const vMax = Math.max(0, ...p.series.flatMap((s) => s.values));
    out.push(`<g data-panel="${esc(p.title)}" data-max="${vMax}">`);
    out.push(`<text x="${LEFT}" y="${top - 8}" font-weight="bold">${esc(p.title)}</text>`);
    out.push(`<rect x="${LEFT}" y="${top}" width="${w}" height="${PANEL_HEIGHT}" fill="none" stroke="#999"/>`);
    out.push(`<text x="${LEFT - 6}" y="${top + 10}" text-anchor="end">${esc(p.unit(vMax))}</text>`);
    out.push(`<text x="${LEFT - 6}" y="${top + PANEL_HEIGHT}" text-anchor="end">0</text>`);
    out.push(`<text x="${LEFT + w}" y="${top + PANEL_HEIGHT + 14}" text-anchor="end">${(tMax / 1000).toFixed(1)} s</text>`);
    p.series.forEach((s, k) => {
      const pts = s.values.map((v, j) => xy(samples[j]!.t, v, tMax, vMax, i).join(",")).join(" ");
      out.push(`<polyline data-series="${s.name}" fill="none" stroke="${s.color}" stroke-width="1.5" points="${pts}"/>`);
      const lx = LEFT + 10 + k * 180;
      out.push(`<rect x="${lx}" y="${top + 6}" width="10" height="10" fill="${s.color}"/>`);
      out.push(`<text x="${lx + 14}" y="${top + 15}">${esc(s.label)}</text>`);
    });
    out.push("</g>");
  });
  out.push("</svg>");
  return `${out.join("\n")}\n`;
}

/** Reads a --stats-file JSON and returns the SVG. */
export function plot(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new ExmError(`--plot: cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let r: RunReport;
  try {
    r = JSON.parse(text);
  } catch {
    throw new ExmError(`--plot: ${path} is not JSON`);
  }
  if (!r || !r.timeline || !Array.isArray(r.timeline.samples) || r.timeline.samples.length === 0) {
    throw new ExmError(`--plot: ${path} has no timeline (write one with exm --stats-file ${path} PROGRAM)`);
  }
  return renderSvg(r);
}
