/**
 * The chart of bench/fit.ts's result (fit.json -> fit.svg): per workload,
 * exm's and `--threshold auto`'s time over plain's (the median of the
 * per-round ratios, whiskers min-max) against the goal lines of issue 13
 * (1.1, the cow fork pool 1.2); the free() call of a large block against
 * glibc's munmap (log scale, goal 2); start-up of `exm true` against `true`
 * (goal +20 ms). Results from before auto existed (no auto fields, no
 * ratioOf) are drawn with what they have.
 */
import { type Bar, COLORS, ChartInputError, type Json, Page, type Ref, fmt, isObject, num, records, str, when } from "./chart-svg.ts";

const isFree = (r: Json) => (typeof r.ratioOf === "string" ? r.ratioOf !== "run" : /^free-/.test(str(r.name)));

function ratioBar(r: Json, prefix: "" | "auto", color: string, who: string): Bar {
  const key = prefix ? "autoRatio" : "ratio";
  const m = num(r[key]);
  if (m === null) return { value: null, color: COLORS.muted, text: prefix ? "auto: not run (--no-auto or an older run)" : `${who}: no result` };
  const lo = num(r[`${key}Min`]) ?? m, hi = num(r[`${key}Max`]) ?? m;
  const goal = num(r.goal);
  const verdict = goal === null ? "" : m <= goal ? ", met" : ", missed";
  const faults = num(r[prefix ? "autoMajflt" : "exmMajflt"]);
  return { value: m, min: lo, max: hi, color, text: `${who} ${fmt(m)}x${hi > lo ? ` (${fmt(lo)}-${fmt(hi)})` : ""}${verdict}` +
    (faults !== null ? `, ${+faults.toFixed(1)} major faults` : "") };
}

export function renderFit(json: unknown): string {
  const what = "a bench/fit.ts result (fit.json)";
  const rows = records(json, "rows", what);
  if (rows.some((r) => typeof r.name !== "string")) throw new ChartInputError(`a row without a name: not ${what}`);
  const j = json as Json;
  const page = new Page();
  page.title("exm when the data fit (bench/fit.ts): time over plain's, per-round ratios, median with whiskers min-max");
  page.note(`${when(j.date)}, ${str(j.rounds, "?")} round${j.rounds === 1 ? "" : "s"}${j.quick === true ? ", --quick (quarter sizes)" : ""}` +
    `${typeof j.load === "string" ? `, load average at the end ${j.load.split(" ").slice(0, 3).join(" ")}` : ""}`);
  page.space(6);
  const runs = rows.filter((r) => !isFree(r));
  const hasAuto = rows.some((r) => num(r.autoRatio) !== null);
  if (runs.length) {
    const goals = [...new Set(runs.map((r) => num(r.goal)).filter((g): g is number => g !== null))].sort((a, b) => a - b);
    const refs: Ref[] = [{ value: 1, label: "plain" },
      ...goals.map((g) => ({ value: g, label: `goal ${g}${g === 1.2 ? " (cow pool)" : ""}`, color: COLORS.bad }))];
    page.panel({
      title: "Whole run, time over plain's (lower is better; plain = 1)",
      legend: [{ color: COLORS.ratio, label: "exm (default)" }, ...(hasAuto ? [{ color: COLORS.other, label: "exm --threshold auto" }] : [])],
      rows: runs.map((r) => ({ label: str(r.name), bars: [ratioBar(r, "", COLORS.ratio, "exm"), ...(hasAuto ? [ratioBar(r, "auto", COLORS.other, "auto")] : [])] })),
      refs,
    });
  }
  // The names are short; what each workload does (and at what size) is its "what".
  page.note(rows.map((r) => `${str(r.name)}: ${str(r.what, "?")}`).join("; ") + ".");
  page.space(6);
  const frees = rows.filter(isFree);
  if (frees.length)
    page.panel({
      title: "free() of a filled large block: its time over glibc's munmap (log scale; lower is better)",
      log: true,
      rows: frees.map((r) => {
        const bar = ratioBar(r, "", COLORS.ratio, "exm");
        const p = num(r.plainFreeMs), e = num(r.exmFreeMs);
        if (bar.value !== null && p !== null && e !== null) bar.text += `; ${fmt(e)} ms vs ${fmt(p)} ms`;
        return { label: str(r.name), bars: [bar] };
      }),
      refs: [{ value: 1, label: "munmap" }, ...[...new Set(frees.map((r) => num(r.goal)).filter((g): g is number => g !== null))]
        .map((g) => ({ value: g, label: `goal ${g}`, color: COLORS.bad }))],
    });
  const st = isObject(j.startup) ? j.startup : null;
  const plainMs = num(st?.plainMs), exmMs = num(st?.exmMs), overMs = num(st?.overMs), overMin = num(st?.overMin);
  if (st && (plainMs ?? exmMs ?? overMs) !== null) {
    const ms = (v: number | null, color: string, extra = ""): Bar =>
      v === null ? { value: null, color: COLORS.muted, text: "no result" } : { value: v, color, text: `${fmt(v)} ms${extra}` };
    page.panel({
      title: "Start-up, 30 interleaved pairs of `true` and `exm true` (lower is better)",
      rows: [
        { label: "true (median)", bars: [ms(plainMs, COLORS.muted)] },
        { label: "exm true (median)", bars: [ms(exmMs, COLORS.ratio)] },
        { label: "exm over true (median of pairs)", bars: [ms(overMs, COLORS.write, overMs === null ? "" : `, goal +20 ms: ${overMs <= 20 ? "met" : "missed"}`)] },
        { label: "exm over true (fastest of each)", bars: [ms(overMin, COLORS.write)] },
      ],
      refs: [{ value: 20, label: "goal +20 ms", color: COLORS.bad }],
    });
  } else page.note("Start-up: not in this result.");
  return page.svg();
}
