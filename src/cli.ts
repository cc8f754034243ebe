/*
 * cli.ts: the `exm` command. Thin: splits argv, lets citty parse exm's own
 * options, dispatches to run/extract/inspect/prune, and is the one place that
 * prints an error and sets the exit status.
 */

import { parseArgs, type ArgsDef } from "citty";
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { pruneCache } from "../embed/cache";
import { EMBEDDED_HEADER_PATH, EMBEDDED_LIBRARY_PATH, LIBRARY } from "../embed/library";
import pkg from "../package.json" with { type: "json" };
import { rawArgs, rawEnviron, splitArgs } from "./argv";
import { ExmError, oneLine, usageError } from "./errors";
import { inspect, parsePid, renderInspect, requireArena } from "./inspect";
import { OPTIONS, renderHelp, resolveSettings, type SettingFlags } from "./options";
import { stderr, stdout } from "./out";
import { run } from "./run";

/** citty's argument definitions, from the one option table. */
const ARGS: ArgsDef = Object.fromEntries(
  OPTIONS.map((o) => [o.flag, { type: o.value ? "string" : "boolean", description: o.meaning, ...(o.short ? { alias: o.short } : {}) }]),
) as ArgsDef;

function versionText(): string {
  return `exm ${pkg.version} (libexm ${LIBRARY.version}, bun ${Bun.version}) for ${LIBRARY.target}; the library needs glibc ${LIBRARY.glibc} or later`;
}

/** Writes a file via a temporary name and rename, so readers never see half of it. */
function writeAtomic(path: string, data: Uint8Array, mode: number): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, data, { mode });
  renameSync(tmp, path);
}

function extract(dirArg: string): void {
  const dir = dirArg.startsWith("/") ? dirArg : `${process.cwd()}/${dirArg}`;
  try {
    mkdirSync(dir, { recursive: true });
    writeAtomic(`${dir}/libexm.so`, readFileSync(EMBEDDED_LIBRARY_PATH), 0o755);
    writeAtomic(`${dir}/exm.h`, readFileSync(EMBEDDED_HEADER_PATH), 0o644);
  } catch (e) {
    throw new ExmError(`--extract: cannot write to ${dir}: ${(e as Error).message}`);
  }
  stdout(
    [
      `wrote ${dir}/libexm.so (libexm ${LIBRARY.version}) and ${dir}/exm.h`,
      "use it:",
      `  preload:  LD_PRELOAD=${dir}/libexm.so EXM_THRESHOLD=64M program [args...]`,
      `  link:     cc app.c -I${dir} -L${dir} -lexm -Wl,-rpath,${dir}`,
      `  dlopen:   dlopen("${dir}/libexm.so", RTLD_NOW) and the functions of exm.h`,
      "",
    ].join("\n"),
  );
}

function main(): number {
  const split = splitArgs(rawArgs());
  const parsed = parseArgs(split.own, ARGS) as Record<string, unknown>;
  // A repeated flag: the last one wins.
  const get = (flag: string): string | boolean | undefined => {
    const v = parsed[flag];
    return Array.isArray(v) ? v.at(-1) : (v as string | boolean | undefined);
  };

  const actions = OPTIONS.filter((o) => o.kind === "action" && get(o.flag) !== undefined && get(o.flag) !== false);
  if (actions.some((a) => a.flag === "help")) {
    stdout(`${renderHelp(pkg.version)}\n`);
    return 0;
  }
  if (actions.length > 1) throw usageError(`${actions.map((a) => `--${a.flag}`).join(" and ")} cannot be used together`);
  const action = actions[0]?.flag;
  if (action && split.program.length > 0) {
    throw usageError(`--${action} takes no program (got '${split.program[0]!.toString()}')`);
  }
  if (get("json") && action !== "inspect") throw usageError("--json goes with --inspect");

  switch (action) {
    case "version":
      stdout(`${versionText()}\n`);
      return 0;
    case "extract":
      extract(String(get("extract")));
      return 0;
    case "inspect": {
      const report = inspect(parsePid(String(get("inspect"))));
      requireArena(report);
      stdout(get("json") ? `${JSON.stringify(report, null, 2)}\n` : `${renderInspect(report)}\n`);
      return 0;
    }
    case "prune-cache": {
      const lines = pruneCache(process.env, process.geteuid?.() ?? 0);
      stdout(lines.length ? `${lines.join("\n")}\n` : "nothing to prune\n");
      return 0;
    }
  }

  if (split.program.length === 0) throw usageError("missing program to run", true);
  const flags: SettingFlags = {};
  for (const o of OPTIONS) if (o.kind === "setting") flags[o.flag] = get(o.flag);
  const settings = resolveSettings(flags, process.env, process.cwd());
  run({ settings, program: split.program, environ: rawEnviron() });
}

try {
  process.exitCode = main();
} catch (e) {
  if (e instanceof ExmError) {
    stderr(`exm: ${oneLine(e.message)}${e.showHint ? " (see exm --help)" : ""}\n`);
    process.exit(e.status);
  }
  stderr(`exm: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
}
