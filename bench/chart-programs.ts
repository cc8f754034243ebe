/**
 * The chart of bench/programs.ts's result (programs.json -> programs.svg):
 * the numpy job's seconds per phase under exm and under swap (log scale; the
 * goal: every phase faster than swap), its random gathers per second (goal
 * 2x swap), the bytes it read from the disk over the bytes each phase
 * touched (goal 2), and the sort job's time per backend. A backend killed by the
 * limit or capped says so (its notes); a backend or a job not run is left
 * out.
 */
import { type Bar, COLORS, type Json, Page, type Row, fmt, isObject, loadRange, records, str, summary, when } from "./chart-svg.ts";

const PHASES: [string, string][] = [["fill", "fill"], ["arith", "a*2+1 in place"], ["sum", "sum"], ["sort", "sort a slice"]];
const COLOR: Record<string, string> = { exm: COLORS.ratio, swap: COLORS.rand, ram: COLORS.muted, spill: COLORS.read };
const NAME: Record<string, string> = {
  exm: "exm (defaults)", swap: "anonymous + swap file", ram: "plain, no swap", spill: "plain sort -S 200M (spills to its files)",
};

const metric = (r: Json | undefined, k: string) => summary(isObject(r?.metrics) ? r!.metrics[k] : undefined);
const notes = (r: Json | undefined) => (Array.isArray(r?.notes) ? r!.notes.map((n) => str(n)) : []);

export function renderPrograms(json: unknown): string {
  const rows = records(json, "rows", "a bench/programs.ts result (programs.json)");
  const j = json as Json;
  const page = new Page();
  page.title("Real programs out of core (bench/programs.ts): exm against swap on the same disk");
  page.note(`${when(j.date)}, ${str(j.rounds, "?")} round${j.rounds === 1 ? "" : "s"}: ${str(j.command)}`);
  page.space(6);
  const of = (job: string) => rows.filter((r) => r.job === job);
  const numpy = of("numpy");
  if (numpy.length) {
    const by = (b: string) => numpy.find((r) => r.backend === b);
    const swap = by("swap");
    const backends = ["exm", "swap"].filter((b) => by(b));
    const bar = (b: string, k: string, unit: string, vs: "time" | "rate"): Bar => {
      const r = by(b), s = metric(r, k);
      if (!s) return { value: null, color: COLORS.muted, text: `${b}: ${notes(r).join("; ") || "no result"}` };
      let text = `${b} ${fmt(s.median)}${unit}${s.max > s.min ? ` (${fmt(s.min)}-${fmt(s.max)})` : ""}`;
      const o = metric(b === "exm" ? swap : undefined, k);
      if (o && o.median > 0)
        text += vs === "time" ? (s.median < o.median ? `: ${fmt(o.median / s.median)}x faster than swap` : `: ${fmt(s.median / o.median)}x swap's time (goal missed)`)
          : `: ${fmt(s.median / o.median)}x swap's rate (goal 2x: ${s.median >= 2 * o.median ? "met" : "missed"})`;
      return { value: s.median, min: s.min, max: s.max, color: COLOR[b] ?? COLORS.other, text };
    };
    const legend = backends.map((b) => ({ color: COLOR[b]!, label: NAME[b]! }));
    const phaseRows: Row[] = [...PHASES, ["total", "whole run"] as [string, string]].map(([k, label]) => ({
      label, bars: backends.map((b) => bar(b, `${k}_s`, " s", "time")),
    }));
    page.panel({ title: "numpy (bench/ooc_numpy.py): seconds per phase (log scale; lower is better; goal: every phase faster than swap)",
      legend, log: true, rows: phaseRows });
    page.panel({ title: "numpy: random single-element gathers per second (higher is better; goal 2x swap)",
      legend, rows: [{ label: "random gathers", bars: backends.map((b) => bar(b, "gathers_per_s", "/s", "rate")) }],
      refs: metric(swap, "gathers_per_s") ? [{ value: 2 * metric(swap, "gathers_per_s")!.median, label: "goal: 2x swap", color: COLORS.bad }] : [] });
    const touched = [...PHASES.slice(1), ["gather", "random gathers"] as [string, string]];
    if (touched.some(([k]) => backends.some((b) => metric(by(b), `${k}_read_per_touched`))))
      page.panel({ title: "numpy: bytes read from the disk over the bytes the phase touched (lower is better; goal: at most 2)",
        legend, rows: touched.map(([k, label]) => ({ label, bars: backends.map((b) => {
          const s = metric(by(b), `${k}_read_per_touched`);
          return s ? { value: s.median, min: s.min, max: s.max, color: COLOR[b] ?? COLORS.other, text: `${b} ${fmt(s.median)}` }
            : { value: null, color: COLORS.muted, text: `${b}: no result` };
        }) })),
        refs: [{ value: 2, label: "goal: 2", color: COLORS.bad }] });
    for (const r of numpy.filter((x) => !backends.includes(str(x.backend))))
      page.note(`${NAME[str(r.backend)] ?? str(r.backend)}: ${notes(r).join("; ") || `whole run ${fmt(metric(r, "total_s")?.median ?? NaN)} s`}`);
    page.note(`loads: ${numpy.map((r) => `${str(r.backend)} ${loadRange(r.loadavg) || "-"}`).join(", ")}`);
    page.space(6);
  }
  const sort = of("sort");
  if (sort.length) {
    page.panel({
      title: "sort -S 2G of random lines under a memory limit: seconds (lower is better), GB read from the disk",
      rows: sort.map((r) => {
        const b = str(r.backend), s = metric(r, "total_s"), gb = metric(r, "read_gb");
        const capped = notes(r).some((n) => /capped/.test(n));
        const text = s ? `${fmt(s.median)} s${capped ? ", capped: unfinished" : ""}${gb ? `, ${fmt(gb.median)} GB read` : ""}`
          : notes(r).join("; ") || "no result";
        return { label: NAME[b] ?? b, bars: [s ? { value: s.median, min: s.min, max: s.max, color: capped ? COLORS.bad : COLOR[b] ?? COLORS.other, text }
          : { value: null, color: COLORS.muted, text }] };
      }),
    });
  }
  if (!numpy.length && !sort.length) page.note("No numpy or sort rows in this result.");
  return page.svg();
}
