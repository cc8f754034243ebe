/*
 * cli.ts: the `exm` command. Thin: splits and parses argv (argv.ts),
 * dispatches to run/extract/inspect/prune, and is the one place that
 * prints an error and sets the exit status.
 */

import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { pruneCache } from "./cache";
import { EMBEDDED_HEADER_PATH, EMBEDDED_LIBRARY_PATH, LIBRARY } from "../embed/library";
import pkg from "../package.json" with { type: "json" };
import { rawArgs, rawEnviron, splitArgs } from "./argv";
import { ExmError, oneLine, usageError } from "./errors";
import { inspect, parsePid, renderInspect, requireLibrary } from "./inspect";
import { plot } from "./plot";
import { parseInterval, watch } from "./watch";
import { renderHelp } from "./help";
import { OPTIONS, resolveSettings, type SettingFlags } from "./options";
import { stderr, stdout } from "./out";
import { run } from "./run";
import { openFds } from "./fds";
import { ensureLibc } from "./restart";

/** Taken before exm opens anything: the descriptors it inherited (fds.ts). */
const FDS_AT_START = openFds();

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
  if (dirArg === "") throw usageError("--extract: empty directory name");
  const dir = resolve(process.cwd(), dirArg); // "./lib" prints as /home/me/lib, not /home/me/./lib
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

async function main(): Promise<number> {
  ensureLibc(FDS_AT_START, rawArgs(), rawEnviron()); // under ulimit -v: may run exm again (restart.ts)
  const split = splitArgs(rawArgs());
  const get = (flag: string): string | boolean | undefined => split.options.get(flag);

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
  if (get("watch") !== undefined && action !== "inspect") throw usageError("--watch goes with --inspect");

  switch (action) {
    case "version":
      stdout(`${versionText()}\n`);
      return 0;
    case "extract":
      extract(String(get("extract")));
      return 0;
    case "inspect": {
      const pid = parsePid(String(get("inspect")));
      if (get("watch") !== undefined) return await watch(pid, parseInterval(String(get("watch"))));
      const report = inspect(pid);
      requireLibrary(report);
      stdout(get("json") ? `${JSON.stringify(report, null, 2)}\n` : `${renderInspect(report)}\n`);
      return 0;
    }
    case "plot":
      stdout(plot(String(get("plot"))));
      return 0;
    case "prune-cache": {
      const lines = pruneCache(process.env, process.geteuid?.() ?? 0);
      stdout(lines.length ? `${lines.join("\n")}\n` : "nothing to prune\n");
      return 0;
    }
  }

  const flags: SettingFlags = {};
  for (const o of OPTIONS) if (o.kind === "setting") flags[o.flag] = get(o.flag);
  if (split.program.length === 0) {
    // `exm --threshold true`: the value was left out and the program taken for it.
    // A value that is bad for its option says so, and why no program is left.
    const last = split.lastValue;
    if (last) {
      try {
        resolveSettings(flags, process.env, process.cwd());
      } catch (e) {
        if (e instanceof ExmError && e.message.startsWith(`--${last.flag}`)) {
          throw usageError(`${e.message}; no program follows, so was the value of --${last.flag} left out?`, true);
        }
        throw e;
      }
    }
    throw usageError("missing program to run", true);
  }
  const settings = resolveSettings(flags, process.env, process.cwd());
  return await run({ settings, program: split.program, environ: rawEnviron(), fdsAtStart: FDS_AT_START });
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    if (e instanceof ExmError) {
      stderr(`exm: ${oneLine(e.message)}${e.showHint ? " (see exm --help)" : ""}\n`);
      process.exit(e.status);
    }
    stderr(`exm: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
