/**
 * The chart of bench/scale.ts's results (every bench/results/scale*.json ->
 * scale.svg): per size, sequential write and read MB/s and random 4 KiB
 * reads/s (single-threaded and by --threads threads, log scale) of the
 * device, the raw mapping, swap and exm, each from the newest file that
 * measured that backend at that size (the runs are of different lengths and
 * backends: a 32 GiB run may have no swap). The goals of issue 12 are drawn
 * as lines at their multiple of the device's (or swap's) figure shown; a
 * ratio in a bar's text says whether it is of the same run. Then, across the
 * sizes, the seconds per GiB written and read (goal: the largest size at most
 * 1.2x exm's smallest) and the worst 64 MiB read step over the median (goal 5).
 */
import {
  type Bar, COLORS, ChartInputError, Page, type Ref, type Row, type Summary,
  fmt, isObject, loadRange, num, records, str, summary, when,
} from "./chart-svg.ts";

export interface ScaleFile { name: string; json: unknown }

const BACKENDS = ["device", "raw", "swap", "exm"] as const;
type Backend = (typeof BACKENDS)[number];
const LABEL: Record<Backend, string> = { device: "device (fio, O_DIRECT)", raw: "raw mapping, best advice", swap: "anonymous + swap", exm: "exm (defaults)" };

interface Pick {
  file: string;
  date: string;
  rounds: number | null;
  threads: number | null;
  limit: number | null;
  capped: boolean;
  loads: unknown;
  fails: string[];
  m: Record<string, Summary | null>;
}

const KEYS = ["write_mbs", "seq_mbs", "rand_qd1", "rand_qdT", "s_per_gib", "seq_step_ratio"];

function sizeBytes(s: string): number {
  const m = /^([\d.]+)\s*([KMGT]?)/i.exec(s);
  return m ? Number(m[1]) * 1024 ** " KMGT".indexOf((m[2] || " ").toUpperCase()) : Infinity;
}

/** Checks every file, then picks, per size and backend, the newest one with a result. */
function pick(files: ScaleFile[]): Map<string, Map<Backend, Pick>> {
  const what = "a bench/scale.ts result";
  const parsed = files.map((f) => {
    try {
      const rows = records(f.json, "rows", what);
      const j = f.json as Record<string, unknown>;
      return { f, j, rows, date: str(j.date) };
    } catch (e) {
      throw e instanceof ChartInputError ? new ChartInputError(`${f.name}: ${e.message}`) : e;
    }
  }).sort((a, b) => b.date.localeCompare(a.date));
  const out = new Map<string, Map<Backend, Pick>>();
  for (const { f, j, rows, date } of parsed)
    for (const r of rows) {
      const size = str(r.size), backend = str(r.backend) as Backend;
      if (!size || !BACKENDS.includes(backend)) continue;
      const metrics = isObject(r.metrics) ? r.metrics : {};
      const m = Object.fromEntries(KEYS.map((k) => [k, summary(metrics[k])]));
      const has = KEYS.some((k) => m[k]);
      const bySize = out.get(size) ?? new Map<Backend, Pick>();
      out.set(size, bySize);
      const old = bySize.get(backend);
      // Newest first: the first file with a result wins; one without only
      // holds the place (its failures are the text) until one with comes.
      if (old && (Object.values(old.m).some(Boolean) || !has)) continue;
      bySize.set(backend, {
        file: f.name, date, rounds: num(j.rounds), threads: num(j.threads), limit: num(j.limit),
        capped: r.capped === true, loads: r.loadavg, fails: Array.isArray(r.fails) ? r.fails.map((x) => str(x)) : [], m,
      });
    }
  return out;
}

const gib = (b: number | null) => (b === null ? "?" : b >= 2 ** 30 ? `${+(b / 2 ** 30).toFixed(2)} GiB` : `${+(b / 2 ** 20).toFixed(1)} MiB`);

export function renderScale(files: ScaleFile[]): string {
  if (!files.length) throw new ChartInputError("no scale*.json");
  const picks = pick(files);
  const page = new Page();
  page.title("exm out of core at every size (bench/scale.ts): medians of the rounds, whiskers min-max");
  page.note("Each backend from the newest bench/results/scale*.json that measured it at that size (named below); " +
    "dashed lines: the goals, at their multiple of the device's (or swap's) figure drawn.");
  page.space(6);
  const sizes = [...picks.keys()].sort((a, b) => sizeBytes(a) - sizeBytes(b));
  if (!sizes.length) page.note("No device, raw, swap or exm row in any scale*.json.", COLORS.bad);
  for (const size of sizes) {
    const p = picks.get(size)!;
    const limit = [...p.values()].map((x) => x.limit).find((x) => x !== null) ?? null;
    page.heading(`${size.replace(/G$/, " GiB").replace(/M$/, " MiB")} under a ${gib(limit)} memory cgroup`);
    const byFile = new Map<string, Backend[]>();
    for (const b of BACKENDS) {
      const x = p.get(b);
      if (x) byFile.set(x.file, [...(byFile.get(x.file) ?? []), b]);
    }
    for (const [file, bs] of byFile) {
      const x = p.get(bs[0]!)!;
      const loads = bs.map((b) => loadRange(p.get(b)!.loads)).filter(Boolean);
      page.note(`${bs.join(", ")}: ${file} (${when(x.date)}, ${x.rounds ?? "?"} round${x.rounds === 1 ? "" : "s"}` +
        `${loads.length ? `, ${loads.join(" / ")}` : ""})`);
    }
    const dev = p.get("device"), swap = p.get("swap"), exm = p.get("exm");
    const same = (a?: Pick, b?: Pick) => (a && b && a.file === b.file ? "" : " (other run)");
    const ratio = (k: string, base?: Pick, name = "device") => {
      const e = exm?.m[k], d = base?.m[k];
      return e && d && d.median > 0 ? `, ${fmt(e.median / d.median)}x ${name}${same(exm, base)}` : "";
    };
    const bar = (b: Backend, k: string, color: string, unit: string): Bar => {
      const x = p.get(b);
      const s = x?.m[k] ?? null;
      const extra = b === "exm" ? (k === "rand_qd1" ? ratio(k, dev) + ratio(k, swap, "swap") : ratio(k, dev)) : "";
      const capped = x?.capped && (k === "write_mbs" || k === "seq_mbs") ? " (capped: rate of the part done)" : "";
      const none = !x ? "not run" : x.fails.length ? `failed: ${x.fails[0]!.slice(0, 80)}` : "no result";
      return s ? { value: s.median, min: s.min, max: s.max, color, text: `${fmt(s.median)}${unit}${extra}${capped}` }
        : { value: null, color: x?.fails.length ? COLORS.bad : COLORS.muted, text: none };
    };
    const shown = BACKENDS.filter((b) => p.has(b));
    const refs = (pairs: [Pick | undefined, string, number, string][]): Ref[] =>
      pairs.flatMap(([base, k, times, label]) => {
        const s = base?.m[k];
        return s ? [{ value: s.median * times, label, color: "#666" }] : [];
      });
    const seqRows: Row[] = shown.map((b) => ({ label: LABEL[b], bars: [bar(b, "write_mbs", COLORS.write, " MB/s"), bar(b, "seq_mbs", COLORS.read, " MB/s")] }));
    page.panel({
      title: "Sequential MB/s (higher is better)",
      legend: [{ color: COLORS.write, label: "write" }, { color: COLORS.read, label: "read (64 MiB steps)" }],
      rows: seqRows,
      refs: refs([[dev, "write_mbs", 0.8, "goal: write 0.8x device"], [dev, "seq_mbs", 0.9, "goal: read 0.9x device"]]),
    });
    const threads = [...p.values()].map((x) => x.threads).find((x) => x !== null) ?? 4;
    page.panel({
      title: `Random 4 KiB reads per second (log scale; device: queue depth 1 and ${threads})`,
      log: true,
      legend: [{ color: COLORS.rand, label: "1 thread (QD1)" }, { color: COLORS.randT, label: `${threads} threads (QD${threads})` }],
      rows: shown.map((b) => ({ label: LABEL[b], bars: [bar(b, "rand_qd1", COLORS.rand, "/s"), bar(b, "rand_qdT", COLORS.randT, "/s")] })),
      refs: refs([[dev, "rand_qd1", 0.9, "goal: 0.9x device QD1"], [swap, "rand_qd1", 2, "goal: 2x swap"],
        [dev, "rand_qdT", 0.7, `goal: ${threads} threads 0.7x QD${threads}`]]),
    });
  }
  if (sizes.length) acrossSizes(picks, sizes, page);
  return page.svg();
}

/** The mapped backends' seconds per GiB and worst scan step, one row per size. */
function acrossSizes(picks: Map<string, Map<Backend, Pick>>, sizes: string[], page: Page): void {
  const mapped = (["raw", "swap", "exm"] as const).filter((b) => sizes.some((s) => picks.get(s)!.get(b)));
  const color: Record<string, string> = { raw: COLORS.read, swap: COLORS.rand, exm: COLORS.ratio };
  const legend = mapped.map((b) => ({ color: color[b]!, label: LABEL[b] }));
  const rows = (k: string, unit: string, tell: (s: Summary, b: string) => string = () => ""): Row[] => sizes.map((size) => ({
    label: size.replace(/G$/, " GiB").replace(/M$/, " MiB"),
    bars: mapped.map((b) => {
      const s = picks.get(size)!.get(b)?.m[k] ?? null;
      return s ? { value: s.median, min: s.min, max: s.max, color: color[b]!, text: `${b} ${fmt(s.median)}${unit}${tell(s, b)}` }
        : { value: null, color: COLORS.muted, text: `${b}: not run` };
    }),
  }));
  page.heading("Across sizes (the same picks as above)");
  const first = picks.get(sizes[0]!)!.get("exm")?.m.s_per_gib ?? null;
  page.panel({
    title: `Seconds per GiB written and read back (lower is better; goal: at the largest size at most 1.2x exm's at ${sizes[0]})`,
    legend, rows: rows("s_per_gib", " s", (s, b) => (first && b === "exm" && s !== first ? `, ${fmt(s.median / first.median)}x exm at ${sizes[0]}` : "")),
    refs: first ? [{ value: first.median * 1.2, label: `goal: 1.2x exm at ${sizes[0]}`, color: "#666" }] : [],
  });
  page.panel({
    title: "Worst 64 MiB step of the sequential read over the median step (log scale; goal: at most 5x)",
    legend, log: true, rows: rows("seq_step_ratio", "x"),
    refs: [{ value: 5, label: "goal: 5x", color: "#666" }],
  });
}
