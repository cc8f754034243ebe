/*
 * options.ts: the one table of exm's options, and what turns flags and EXM_*
 * variables into the settings a program runs with.
 *
 * OPTIONS drives everything that knows about options: the argv splitter (which
 * flags take a value), citty's argument definitions, --help, and the README
 * table (tests/cli.test.ts checks the README against renderOptionsMarkdown()).
 * Precedence: a flag beats its EXM_* variable, which beats the default. The
 * launcher hands the program normalized values (sizes in bytes, absolute
 * paths) so that the library never has to guess what the CLI meant.
 *
 * Nothing here touches the file system; checks that do live in run.ts.
 */

import { resolve } from "node:path";
import { usageError } from "./errors";

export type OptionKind = "setting" | "action" | "info";

export interface OptionSpec {
  /** Long flag without the leading dashes. */
  readonly flag: string;
  readonly short?: string;
  /** Placeholder of the flag's value; absent for a switch. */
  readonly value?: string;
  /** The value may be left out (`--watch` or `--watch 5`): then it is this. */
  readonly valueDefault?: string;
  /** EXM_* variable that sets the same thing, as shown in the table. */
  readonly env?: string;
  readonly default: string;
  readonly meaning: string;
  /** setting: passed to the program; action: runs instead of a program; info: modifies an action. */
  readonly kind: OptionKind;
}

export const CHILD_MODES = ["cow", "shared", "duplicate"] as const;
export const ADVICES = ["auto", "normal", "sequential", "random"] as const;
export type ChildMode = (typeof CHILD_MODES)[number];
export type Advice = (typeof ADVICES)[number];

export const OPTIONS: readonly OptionSpec[] = [
  { flag: "threshold", value: "SIZE", env: "EXM_THRESHOLD", default: "64M", kind: "setting",
    meaning: "allocations of at least SIZE bytes go to the file-backed arena (0: all of them)" },
  { flag: "dir", value: "PATH", env: "EXM_DIR", default: "$TMPDIR, else /tmp", kind: "setting",
    meaning: "existing writable directory for the (unlinked) backing files; put it on a fast SSD" },
  { flag: "child", value: "MODE", env: "EXM_CHILD", default: "cow", kind: "setting",
    meaning: "what a forked child sees of its parent's file-backed blocks: cow, shared or duplicate" },
  { flag: "advice", value: "ADVICE", env: "EXM_ADVICE", default: "auto", kind: "setting",
    meaning: "madvise for arena blocks: auto, normal, sequential or random" },
  { flag: "max-disk", value: "SIZE", env: "EXM_MAX_DISK", default: "0 (no cap)", kind: "setting",
    meaning: "cap on disk reserved per process; allocations past it fail with ENOMEM" },
  { flag: "stats", env: "EXM_STATS=1", default: "off", kind: "setting",
    meaning: "when the program ends, print one line on stderr for its whole process tree: exit status, wall time, arena use, major faults, bytes read and written (exm stays its parent)" },
  { flag: "stats-file", value: "PATH", env: "EXM_STATS=PATH", default: "none", kind: "setting",
    meaning: "the same as JSON in PATH (atomically), with one record per process and a timeline for --plot" },
  { flag: "verbose", env: "EXM_VERBOSE=1", default: "off", kind: "setting",
    meaning: "say what exm and the library do, on stderr" },
  { flag: "extract", value: "DIR", default: "", kind: "action",
    meaning: "write libexm.so and exm.h into DIR for direct use (dlopen, -lexm, LD_PRELOAD) and exit" },
  { flag: "inspect", value: "PID", default: "", kind: "action",
    meaning: "report the arena of running process PID (size, resident, disk, settings) and exit" },
  { flag: "json", default: "", kind: "info",
    meaning: "with --inspect: print JSON instead of text" },
  { flag: "watch", value: "[SECONDS]", valueDefault: "2", default: "", kind: "info",
    meaning: "with --inspect: report again every SECONDS (default 2) until the process ends: in place on a terminal, else one JSON line each time" },
  { flag: "plot", value: "FILE", default: "", kind: "action",
    meaning: "draw the timeline of a --stats-file JSON (resident, disk, faults over time) as SVG on stdout and exit" },
  { flag: "prune-cache", default: "", kind: "action",
    meaning: "remove cached library versions other than this exm's and exit" },
  { flag: "help", short: "h", default: "", kind: "action", meaning: "show this help and exit" },
  { flag: "version", short: "V", default: "", kind: "action", meaning: "show versions and exit" },
];

export function findOption(flag: string): OptionSpec | undefined {
  return OPTIONS.find((o) => o.flag === flag);
}

export function findShort(short: string): OptionSpec | undefined {
  return OPTIONS.find((o) => o.short === short);
}

// ---- Sizes ------------------------------------------------------------------

const UNIT_SHIFT: Record<string, bigint> = { "": 0n, k: 10n, m: 20n, g: 30n, t: 40n, p: 50n, e: 60n };
export const MAX_SIZE = (1n << 63n) - 1n;
const SIZE_RE = /^(\d+)(?:\.(\d+))?\s*([kmgtpe]?)(i?b)?$/i;
const SIZE_RE_FRACTION_ONLY = /^\.(\d+)\s*([kmgtpe]?)(i?b)?$/i;

/**
 * Parses "512M", "1.5GiB", "2g", "4096", "64KB" into bytes. Units are binary
 * (1K = 1024) whatever the spelling; a fraction is rounded down to a whole
 * byte. Throws a usage error naming `what` for anything else.
 */
export function parseSize(text: string, what: string): bigint {
  const s = text.trim();
  if (s.startsWith("-")) throw usageError(`${what}: size must not be negative: '${text}'`);
  let m = SIZE_RE.exec(s);
  let whole: string, frac: string, unit: string, suffix: string | undefined;
  if (m) [, whole, frac = "", unit, suffix] = m as unknown as [string, string, string, string, string | undefined];
  else if ((m = SIZE_RE_FRACTION_ONLY.exec(s))) {
    whole = "0";
    [, frac, unit, suffix] = m as unknown as [string, string, string, string | undefined];
  } else {
    throw usageError(`${what}: not a size: '${text}' (use bytes or a number with K, M, G or T, e.g. 512M, 1.5G)`);
  }
  // "iB" needs a unit before it: "5iB" is junk, "5B" is five bytes.
  if (suffix && suffix.toLowerCase() === "ib" && unit === "") {
    throw usageError(`${what}: not a size: '${text}'`);
  }
  if (unit === "" && frac !== "") throw usageError(`${what}: not a whole number of bytes: '${text}'`);
  const shift = UNIT_SHIFT[unit.toLowerCase()]!;
  const scale = 10n ** BigInt(frac.length);
  const bytes = ((BigInt(whole) * scale + BigInt(frac || "0")) << shift) / scale;
  if (bytes > MAX_SIZE) throw usageError(`${what}: size too large: '${text}' (at most 2^63-1 bytes)`);
  return bytes;
}

/** Renders bytes the way a person reads them: 64 MiB, 1.5 GiB, 4096 B. */
export function formatSize(bytes: bigint | number): string {
  const b = typeof bytes === "bigint" ? bytes : BigInt(Math.round(bytes));
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
  let i = 0;
  while (i < units.length - 1 && b >= 1n << BigInt(10 * (i + 1))) i++;
  if (i === 0) return `${b} B`;
  const value = Number(b) / 2 ** (10 * i);
  const text = value >= 100 || Number.isInteger(value) ? value.toFixed(0) : value.toFixed(1);
  return `${text} ${units[i]}`;
}

// ---- Settings -------------------------------------------------------------

/** Where a setting's value came from, for error messages. */
export type Source = string;

export interface Settings {
  threshold: bigint;
  /** Absolute path of the data directory (not yet checked on disk). */
  dir: string;
  dirSource: Source;
  child: ChildMode;
  advice: Advice;
  maxDisk: bigint;
  /** "0" off, "1" human summary on stderr, else an absolute path for JSON. */
  stats: string;
  statsSource: Source;
  verbose: boolean;
}

/** Values of setting flags as parsed from the command line (strings or true). */
export type SettingFlags = Partial<Record<string, string | boolean>>;

type Env = Record<string, string | undefined>;

function pick(flags: SettingFlags, env: Env, flag: string, envName: string): [string, Source] | undefined {
  const f = flags[flag];
  if (typeof f === "string") return [f, `--${flag}`];
  const e = env[envName];
  if (e !== undefined && e !== "") return [e, envName];
  return undefined;
}

function pickEnum<T extends string>(choices: readonly T[], value: [string, Source] | undefined, fallback: T): T {
  if (!value) return fallback;
  const v = value[0].trim().toLowerCase() as T;
  if (!choices.includes(v)) {
    throw usageError(`${value[1]}: '${value[0]}' is not one of ${choices.join(", ")}`);
  }
  return v;
}

function absolute(path: string, cwd: string): string {
  return resolve(cwd, path);
}

function parseSwitch(value: string, name: string): boolean {
  const v = value.trim().toLowerCase();
  if (["", "0", "false", "no", "off"].includes(v)) return false;
  if (["1", "true", "yes", "on"].includes(v)) return true;
  throw usageError(`${name}: '${value}' is not 0 or 1`);
}

/**
 * Flags over EXM_* variables over defaults. Throws a usage error naming the
 * flag or variable whose value is bad.
 */
export function resolveSettings(flags: SettingFlags, env: Env, cwd: string): Settings {
  const thr = pick(flags, env, "threshold", "EXM_THRESHOLD");
  const threshold = thr ? parseSize(thr[0], thr[1]) : 64n << 20n;

  const maxd = pick(flags, env, "max-disk", "EXM_MAX_DISK");
  const maxDisk = maxd ? parseSize(maxd[0], maxd[1]) : 0n;

  let dirPick = pick(flags, env, "dir", "EXM_DIR");
  if (!dirPick && env.TMPDIR) dirPick = [env.TMPDIR, "TMPDIR"];
  const [dirText, dirSource] = dirPick ?? ["/tmp", "default"];
  if (dirText === "") throw usageError(`${dirSource}: empty path for the data directory`);
  const dir = absolute(dirText, cwd);

  const child = pickEnum(CHILD_MODES, pick(flags, env, "child", "EXM_CHILD"), "cow");
  const advice = pickEnum(ADVICES, pick(flags, env, "advice", "EXM_ADVICE"), "auto");

  if (flags.stats === true && typeof flags["stats-file"] === "string") {
    throw usageError("--stats and --stats-file cannot be used together (EXM_STATS holds one of them)");
  }
  let stats = "0";
  let statsSource: Source = "default";
  if (flags.stats === true) [stats, statsSource] = ["1", "--stats"];
  else if (typeof flags["stats-file"] === "string") {
    if (flags["stats-file"] === "") throw usageError("--stats-file: empty path");
    [stats, statsSource] = [absolute(flags["stats-file"], cwd), "--stats-file"];
  } else if (env.EXM_STATS !== undefined) {
    const v = env.EXM_STATS;
    statsSource = "EXM_STATS";
    if (v === "" || v === "0") stats = "0";
    else if (v === "1") stats = "1";
    else stats = absolute(v, cwd);
  }

  let verbose = false;
  if (flags.verbose === true) verbose = true;
  else if (env.EXM_VERBOSE !== undefined) verbose = parseSwitch(env.EXM_VERBOSE, "EXM_VERBOSE");

  return { threshold, dir, dirSource, child, advice, maxDisk, stats, statsSource, verbose };
}

/** The EXM_* variables the program gets, in the exact form the library reads. */
export function settingsEnv(s: Settings): [string, string][] {
  return [
    ["EXM_THRESHOLD", s.threshold.toString()],
    ["EXM_DIR", s.dir],
    ["EXM_CHILD", s.child],
    ["EXM_ADVICE", s.advice],
    ["EXM_MAX_DISK", s.maxDisk.toString()],
    ["EXM_STATS", s.stats],
    ["EXM_VERBOSE", s.verbose ? "1" : "0"],
  ];
}

// ---- Rendering ----------------------------------------------------------------

function flagText(o: OptionSpec): string {
  const long = `--${o.flag}${o.value ? ` ${o.value}` : ""}`;
  return o.short ? `-${o.short}, ${long}` : long;
}

/** The README's option table (markdown), generated from OPTIONS. */
export function renderOptionsMarkdown(): string {
  const rows = [
    "| Flag | Environment | Default | Meaning |",
    "| --- | --- | --- | --- |",
  ];
  for (const o of OPTIONS) {
    const cell = (s: string) => (s ? s.replace(/\|/g, "\\|") : "");
    const env = o.env ? `\`${o.env}\`` : "";
    rows.push(`| \`${flagText(o)}\` | ${env} | ${cell(o.default)} | ${cell(o.meaning)} |`);
  }
  return rows.join("\n");
}

const HELP_WIDTH = 80;

/** Splits text into lines of at most `width` characters, at spaces. */
function wrap(text: string, width: number): string[] {
  const out: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line && line.length + 1 + word.length > width) {
      out.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) out.push(line);
  return out;
}

/** Text of --help. */
export function renderHelp(version: string): string {
  const lines = [
    `exm ${version}: run a program with its large allocations served from a file-backed arena`,
    "",
    "Usage: exm [options] <program> [args...]",
    "       exm --extract DIR | --inspect PID [--json] [--watch [SECONDS]] | --plot FILE",
    "       exm --prune-cache | --help | --version",
    "",
    "exm's options end at the first argument that is not one, or at `--`; everything",
    "after that is the program's, untouched. Flags override EXM_* variables.",
    "Sizes: bytes or a number with K, M, G, T (binary units), e.g. 512M, 1.5GiB.",
    "",
  ];
  const width = Math.max(...OPTIONS.map((o) => flagText(o).length));
  const pad = " ".repeat(width + 4);
  const section = (title: string, kinds: OptionKind[]) => {
    lines.push(title);
    for (const o of OPTIONS.filter((x) => kinds.includes(x.kind))) {
      const extra = [o.env ? `env ${o.env}` : "", o.kind === "setting" ? `default ${o.default}` : ""].filter(Boolean);
      const text = wrap(o.meaning, HELP_WIDTH - pad.length);
      if (extra.length) text.push(extra.join(", "));
      lines.push(`  ${flagText(o).padEnd(width)}  ${text[0]}`, ...text.slice(1).map((t) => pad + t));
    }
    lines.push("");
  };
  section("Options passed to the program:", ["setting"]);
  section("Other actions:", ["action", "info"]);
  lines.push("Exit status: the program's own; 2 for bad usage, 126 if the program cannot be");
  lines.push("run, 127 if it is not found, 1 for other errors of exm itself.");
  return lines.join("\n");
}
