/*
 * options.ts: the one table of exm's options, and what turns flags and EXM_*
 * variables into the settings a program runs with.
 *
 * OPTIONS drives everything that knows about options: the argv splitter (which
 * flags take a value, and parses them), --help and the README
 * table (both rendered by help.ts).
 * Precedence: a flag beats its EXM_* variable, which beats the default. The
 * launcher hands the program normalized values (sizes in bytes, absolute
 * paths) so that the library never has to guess what the CLI meant.
 *
 * Nothing here touches the file system; checks that do live in run.ts.
 */

import { usageError } from "./errors";
import { badValueMessage, parseSetting, parseSizeText, SETTING_FLAGS, variable } from "./settings";

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

/** Settings rows come from native/options.json (shared with the library). */
const SETTING_ROWS: OptionSpec[] = SETTING_FLAGS.map((f) => ({
  flag: f.flag,
  ...(f.value ? { value: f.value } : {}),
  env: f.shown,
  default: f.default,
  meaning: f.meaning,
  kind: "setting" as const,
}));

export const OPTIONS: readonly OptionSpec[] = [
  ...SETTING_ROWS,
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

export { MAX_SIZE } from "./settings";

/**
 * Parses "512M", "1.5GiB", "2g", "4096", "64KB" into bytes (the grammar of
 * src/settings.ts, the library's too). Throws a usage error naming `what`.
 */
export function parseSize(text: string, what: string): bigint {
  const r = parseSizeText(text);
  if (!r.ok) throw usageError(badValueMessage(what, text, r.problem));
  return r.value;
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
  /** The size threshold (with auto: the default size, past the RAM budget). */
  threshold: bigint;
  /** --threshold auto: large blocks in RAM while the budget lasts (native/budget.c). */
  thresholdAuto: boolean;
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

/** The flag's value, else the variable's (an empty variable counts as unset), with its source. */
function pick(flags: SettingFlags, env: Env, flag: string, envName: string): [string, Source] | undefined {
  const f = flags[flag];
  if (typeof f === "string") return [f, `--${flag}`];
  const e = env[envName];
  if (e !== undefined && e !== "") return [e, envName];
  return undefined;
}

/** The setting of variable `envName` (flag `flag`), in the form the library takes it. */
function setting(flags: SettingFlags, env: Env, flag: string, envName: string, cwd: string): string {
  const v = variable(envName);
  const given = pick(flags, env, flag, envName) ?? [v.default, "default"];
  const r = parseSetting(v, given[0], cwd);
  if (!r.ok) throw usageError(badValueMessage(given[1], given[0], r.problem));
  return r.value;
}

/**
 * Flags over EXM_* variables over defaults. Throws a usage error naming the
 * flag or variable whose value is bad.
 */
export function resolveSettings(flags: SettingFlags, env: Env, cwd: string): Settings {
  const thresholdText = setting(flags, env, "threshold", "EXM_THRESHOLD", cwd);
  const thresholdAuto = thresholdText === "auto";
  const threshold = BigInt(thresholdAuto ? setting({}, {}, "threshold", "EXM_THRESHOLD", cwd) : thresholdText);
  const maxDisk = BigInt(setting(flags, env, "max-disk", "EXM_MAX_DISK", cwd));

  // The data directory: --dir, EXM_DIR, else TMPDIR when it is absolute (as
  // the library takes it), else /tmp.
  let dir = "/tmp";
  let dirSource: Source = "default";
  const dirPick = pick(flags, env, "dir", "EXM_DIR");
  if (dirPick) [dir, dirSource] = [setting(flags, env, "dir", "EXM_DIR", cwd), dirPick[1]];
  else if (env.TMPDIR?.startsWith("/")) {
    const r = parseSetting(variable("EXM_DIR"), env.TMPDIR, cwd);
    if (r.ok) [dir, dirSource] = [r.value, "TMPDIR"];
  }

  const child = setting(flags, env, "child", "EXM_CHILD", cwd) as ChildMode;
  const advice = setting(flags, env, "advice", "EXM_ADVICE", cwd) as Advice;

  if (flags.stats === true && typeof flags["stats-file"] === "string") {
    throw usageError("--stats and --stats-file cannot be used together (EXM_STATS holds one of them)");
  }
  let stats = "0";
  let statsSource: Source = "default";
  if (flags.stats === true) [stats, statsSource] = ["1", "--stats"];
  else if (typeof flags["stats-file"] === "string") {
    const text = flags["stats-file"];
    // A flag that names a file takes any name, switch words included.
    const r = parseSetting(variable("EXM_DIR"), text, cwd);
    if (!r.ok) throw usageError(badValueMessage("--stats-file", text, r.problem));
    [stats, statsSource] = [r.value, "--stats-file"];
  } else if (env.EXM_STATS) {
    [stats, statsSource] = [setting(flags, env, "stats", "EXM_STATS", cwd), "EXM_STATS"];
  }

  const verbose = flags.verbose === true || setting({}, env, "verbose", "EXM_VERBOSE", cwd) === "1";

  return { threshold, thresholdAuto, dir, dirSource, child, advice, maxDisk, stats, statsSource, verbose };
}

/** The EXM_* variables the program gets, in the exact form the library reads. */
export function settingsEnv(s: Settings): [string, string][] {
  return [
    ["EXM_THRESHOLD", s.thresholdAuto ? "auto" : s.threshold.toString()],
    ["EXM_DIR", s.dir],
    ["EXM_CHILD", s.child],
    ["EXM_ADVICE", s.advice],
    ["EXM_MAX_DISK", s.maxDisk.toString()],
    ["EXM_STATS", s.stats],
    ["EXM_VERBOSE", s.verbose ? "1" : "0"],
  ];
}
