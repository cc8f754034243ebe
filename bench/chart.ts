/**
 * bench/chart.ts: the benchmarks' charts, drawn from their result files.
 *
 *   bun bench/chart.ts [--in DIR] [--out DIR] [latest|scale|fit|alloc|programs ...]
 *
 * reads, in --in (default bench/results/), the results that exist
 *   latest.json    bench/run.ts       -> latest.svg
 *   scale*.json    bench/scale.ts     -> scale.svg (all of them: the newest per size and backend)
 *   fit.json       bench/fit.ts       -> fit.svg
 *   alloc.json     bench/alloc.ts     -> alloc.svg
 *   programs.json  bench/programs.ts  -> programs.svg
 * and writes the charts to --out (default: the same directory), one line each.
 * Without kinds, a missing result is skipped with a line saying so; a kind
 * named on the command line must have its result. A file that is not JSON, or
 * not the result it should be, gives one line `chart: FILE: why` and exit
 * status 1 (the other charts are still written).
 *
 * Each benchmark calls chartAfterRun() once its result is written, so a re-run
 * redraws its chart; the renderers are bench/chart-*.ts, the drawing bench/chart-svg.ts.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { basename, dirname, join, relative, resolve } from "node:path";
import { renderAlloc } from "./chart-alloc.ts";
import { renderFit } from "./chart-fit.ts";
import { renderLatest } from "./chart-latest.ts";
import { renderPrograms } from "./chart-programs.ts";
import { renderScale } from "./chart-scale.ts";
import { ChartInputError } from "./chart-svg.ts";

export const KINDS = ["latest", "scale", "fit", "alloc", "programs"] as const;
export type Kind = (typeof KINDS)[number];
const WRITER: Record<Kind, string> = {
  latest: "bench/run.ts", scale: "bench/scale.ts", fit: "bench/fit.ts", alloc: "bench/alloc.ts", programs: "bench/programs.ts",
};
const RESULTS = resolve(import.meta.dir, "results");

const shown = (p: string) => {
  const r = relative(process.cwd(), p);
  return r && !r.startsWith("..") ? r : p;
};

/** The result files of a kind in dir (scale: every scale*.json), sorted. */
export function inputsOf(kind: Kind, dir: string): string[] {
  if (kind !== "scale") return existsSync(join(dir, `${kind}.json`)) ? [join(dir, `${kind}.json`)] : [];
  return existsSync(dir) ? readdirSync(dir).filter((f) => /^scale.*\.json$/.test(f)).sort().map((f) => join(dir, f)) : [];
}

function readJson(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new ChartInputError(`${shown(file)}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ChartInputError(`${shown(file)}: not JSON (${(e as Error).message})`);
  }
}

/** The SVG of a kind drawn from its result files; ChartInputError (one line, naming the file) if one is unusable. */
export function render(kind: Kind, files: string[]): string {
  const file = files[0];
  if (!file) throw new ChartInputError(`no ${kind === "scale" ? "scale*" : kind}.json`);
  if (kind === "scale") {
    const parsed = files.map((f) => ({ name: basename(f), json: readJson(f) }));
    // renderScale names the file it rejects; anything else it trips on is about their content.
    return oneLine(() => renderScale(parsed), "");
  }
  const json = readJson(file);
  return oneLine(() => ({ latest: renderLatest, fit: renderFit, alloc: renderAlloc, programs: renderPrograms }[kind](json)), `${shown(file)}: `);
}

/** draw(), with whatever it throws made a one-line ChartInputError prefixed by `where`. */
function oneLine(draw: () => string, where: string): string {
  try {
    return draw();
  } catch (e) {
    const why = e instanceof ChartInputError ? e.message : `cannot draw it (${(e as Error).name}: ${(e as Error).message})`;
    throw new ChartInputError(`${where}${why}`);
  }
}

/** Draws one chart into outDir; returns the line to print. */
function writeChart(kind: Kind, files: string[], outDir: string): string {
  const svg = render(kind, files);
  mkdirSync(outDir, { recursive: true });
  const out = join(outDir, `${kind}.svg`);
  writeFileSync(out, svg);
  return `wrote ${shown(out)} (from ${files.map((f) => basename(f)).join(", ")})`;
}

/**
 * For a benchmark that has just written jsonPath: redraws its chart next to it
 * (scale: scale.svg from every scale*.json in that directory; another kind:
 * the file's name with .svg). Never throws: a chart that cannot be drawn is
 * one line on stderr, the benchmark's result stands.
 */
export function chartAfterRun(kind: Kind, jsonPath: string): void {
  try {
    const dir = dirname(jsonPath);
    // A scale result written under another name (--out) counts too.
    if (kind === "scale") console.log(`chart: ${writeChart("scale", [...new Set([...inputsOf("scale", dir), resolve(jsonPath)])], dir)}`);
    else {
      const out = jsonPath.replace(/\.json$/, "") + ".svg";
      writeFileSync(out, render(kind, [jsonPath]));
      console.log(`chart: wrote ${shown(out)}`);
    }
  } catch (e) {
    console.error(`chart: ${(e as Error).message}`);
  }
}

function main(argv: string[]): number {
  let inDir = RESULTS, outDir: string | undefined;
  const kinds: Kind[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--in" || a === "--out") {
      const v = argv[++i];
      if (!v) return usage(`${a} needs a directory`);
      if (a === "--in") inDir = resolve(v);
      else outDir = resolve(v);
    } else if (a === "--help" || a === "-h") {
      console.log(USAGE);
      return 0;
    } else if ((KINDS as readonly string[]).includes(a)) kinds.push(a as Kind);
    else return usage(`unknown argument ${a}`);
  }
  let failed = false;
  for (const kind of kinds.length ? kinds : KINDS) {
    const files = inputsOf(kind, inDir);
    if (!files.length) {
      const what = `no ${kind === "scale" ? "scale*.json" : `${kind}.json`} in ${shown(inDir)} (${WRITER[kind]} writes it)`;
      if (kinds.length) {
        console.error(`chart: ${what}`);
        failed = true;
      } else console.log(`skip ${kind}: ${what}`);
      continue;
    }
    try {
      console.log(writeChart(kind, files, outDir ?? inDir));
    } catch (e) {
      console.error(`chart: ${e instanceof ChartInputError ? e.message : `${kind}: ${(e as Error).message}`}`);
      failed = true;
    }
  }
  return failed ? 1 : 0;
}

const USAGE = `usage: bun bench/chart.ts [--in DIR] [--out DIR] [${KINDS.join("|")} ...]`;
function usage(why: string): number {
  console.error(`chart: ${why}\n${USAGE}`);
  return 2;
}

if (import.meta.main) process.exit(main(process.argv.slice(2)));
