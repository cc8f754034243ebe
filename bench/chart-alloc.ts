/**
 * The chart of bench/alloc.ts's result (alloc.json -> alloc.svg): per
 * workload and thread count, exm's time per operation over glibc's in the
 * same round (median of the rounds' ratios, whiskers min-max; CPU and wall,
 * log scale), at threshold 0 (goal 1.1, and the peak file bytes over the
 * live bytes, goal 1.3) and passing through (goal: within the noise); then
 * the instructions per operation under cachegrind of glibc, the forwarding
 * shim, exm's default and threshold 0 (goal 1.03x glibc passing through).
 * A run without instructions (--no-instr: a string there) or with failed
 * cells (errors) is drawn with what it has.
 */
import { type Bar, COLORS, type Json, Page, type Row, fmt, isObject, loadRange, num, records, str, summary, summaryBar, when } from "./chart-svg.ts";

const ratioText = (s: { median: number; min: number; max: number }) => `${fmt(s.median)}x${s.max > s.min ? ` (${fmt(s.min)}-${fmt(s.max)})` : ""}`;

function errorsOf(r: Json, variant: string): string {
  const e = isObject(r.errors) ? r.errors[variant] : undefined;
  return Array.isArray(e) && e.length ? `failed: ${str(e[0]).slice(0, 80)}` : "no result";
}

export function renderAlloc(json: unknown): string {
  const what = "a bench/alloc.ts result (alloc.json)";
  const rows = records(json, "rows", what);
  const j = json as Json;
  const goals = isObject(j.goals) ? j.goals : {};
  const t0Goal = num(goals.t0Time) ?? 1.1, diskGoal = num(goals.t0DiskOverLive) ?? 1.3, instrGoal = num(goals.passthroughInstr) ?? 1.03;
  const page = new Page();
  page.title("exm's own cost as an allocator (bench/alloc.ts): time per operation over glibc's in the same round");
  page.note(`${when(j.date)}, commit ${str(j.commit, "?")}, ${str(j.rounds, "?")} round${j.rounds === 1 ? "" : "s"}` +
    `${j.quick === true ? ", --quick" : ""}${loadRange(j.loadavg) ? `, ${loadRange(j.loadavg)}` : ""}; ` +
    "median of the rounds' ratios, whiskers min-max; CPU is user+system of the whole run.");
  page.space(6);
  const label = (r: Json) => `${str(r.workload, "?")}, ${str(r.threads, "?")} thread${r.threads === 1 ? "" : "s"}`;
  const pair = (r: Json, prefix: "t0" | "exm", variant: string, diskText: boolean): Bar[] => {
    const cpu = summary(r[`${prefix}CpuRatio`]), wall = summary(r[`${prefix}Ratio`]);
    const disk = diskText ? summary(r.t0PeakDiskOverLive) : null;
    const verdict = prefix === "t0" && cpu ? (cpu.median <= t0Goal ? ", met" : ", missed") : "";
    return [
      summaryBar(cpu, COLORS.ratio, (s) => `CPU ${ratioText(s)}${verdict}` +
        (disk ? `; disk/live ${fmt(disk.median)}${disk.median <= diskGoal ? "" : " (missed)"}` : ""), errorsOf(r, variant)),
      summaryBar(wall, COLORS.muted, (s) => `wall ${ratioText(s)}`, errorsOf(r, variant)),
    ];
  };
  const legend = [{ color: COLORS.ratio, label: "CPU" }, { color: COLORS.muted, label: "wall" }];
  const t0Rows: Row[] = rows.map((r) => ({ label: label(r), bars: pair(r, "t0", "exm-t0", true) }));
  page.panel({
    title: `Threshold 0 (every block from the file-backed arena), over glibc (log scale; lower is better; goal ${t0Goal}; peak disk/live ${diskGoal})`,
    legend, log: true, rows: t0Rows,
    refs: [{ value: 1, label: "glibc" }, { value: t0Goal, label: `goal ${t0Goal}`, color: COLORS.bad }],
  });
  page.panel({
    title: "Default threshold (every request passes through to glibc), over glibc (log scale; goal: within the noise)",
    legend, log: true, rows: rows.map((r) => ({ label: label(r), bars: pair(r, "exm", "exm", false) })),
    refs: [{ value: 1, label: "glibc" }],
  });
  const instr = Array.isArray(j.instructions) ? j.instructions.filter(isObject) : null;
  if (instr && instr.length) {
    const glibc = num(instr.find((i) => i.name === "glibc")?.perOp);
    const name: Record<string, string> = { glibc: "glibc", shim: "forwarding shim (floor)", exm: "exm, default threshold", "exm-t0": "exm, threshold 0" };
    page.panel({
      title: "Instructions per operation, small-object churn, 1 thread (valgrind cachegrind; lower is better)",
      rows: instr.map((i) => {
        const per = num(i.perOp);
        const ratio = num(i.ratio) ?? (per !== null && glibc ? per / glibc : null);
        return { label: name[str(i.name)] ?? str(i.name, "?"), bars: [per === null
          ? { value: null, color: COLORS.muted, text: "no result" }
          : { value: per, color: i.name === "glibc" ? COLORS.muted : COLORS.ratio,
              text: `${per.toFixed(1)}${ratio !== null && i.name !== "glibc" ? ` (${ratio.toFixed(3)}x glibc)` : ""}` +
                (i.name === "exm" && ratio !== null ? `, goal ${instrGoal}x: ${ratio <= instrGoal ? "met" : "missed"}` : "") }] };
      }),
      refs: glibc ? [{ value: glibc, label: "glibc" }, { value: glibc * instrGoal, label: `goal ${instrGoal}x glibc (pass-through)`, color: COLORS.bad }] : [],
    });
  } else page.note(`Instructions: ${typeof j.instructions === "string" ? j.instructions : "not in this result"}.`);
  return page.svg();
}
