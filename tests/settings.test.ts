/*
 * One settings grammar: native/options.json is the one table, and every
 * vector of tests/fixtures/settings-vectors.json is read by the CLI's code
 * (src/settings.ts through resolveSettings) and by the library preloaded by
 * hand (native/options.c, seen through print_config): both must take the
 * same value, or both refuse it with the same words. The CLI binary is run
 * for the refusals too (exit 2, one line).
 */

import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ExmError } from "../src/errors";
import { resolveSettings, type Settings } from "../src/options";
import { parseSetting, renderOptionsHeader, variable, VARIABLES } from "../src/settings";
import { cProgram, EXM, kv, libAvailable, ROOT, run, runWithLib, skipUnless } from "./support/sys";

const noLib = skipUnless(libAvailable(), "settings tests with the library");
const noCli = skipUnless(existsSync(EXM) ? null : `${EXM} not built`, "settings tests with the CLI");
const VECTORS = JSON.parse(readFileSync(join(ROOT, "tests", "fixtures", "settings-vectors.json"), "utf8")).vectors as Record<
  string,
  [string, string | null][]
>;

const CWD = mkdtempSync(join(tmpdir(), "exm-settings-"));
for (const d of ["a", "b", "sub"]) mkdirSync(join(CWD, d));
// afterAll, not process.on("exit"): under bun test the exit handler never ran (a directory per run was left in /tmp)
afterAll(() => rmSync(CWD, { recursive: true, force: true }));
const expand = (s: string) => s.replaceAll("$CWD", CWD);

/** What the CLI's code makes of `env=text`: the value in the library's form, or the error's words. */
function cliValue(env: string, text: string): { value: string } | { error: string } {
  let s: Settings;
  try {
    s = resolveSettings({}, { [env]: text }, CWD);
  } catch (e) {
    if (e instanceof ExmError) return { error: e.message };
    throw e;
  }
  const value: Record<string, string> = {
    EXM_THRESHOLD: s.thresholdAuto ? "auto" : s.threshold.toString(),
    EXM_MAX_DISK: s.maxDisk.toString(),
    EXM_DIR: s.dir,
    EXM_CHILD: s.child,
    EXM_ADVICE: s.advice,
    EXM_STATS: s.stats,
    EXM_VERBOSE: s.verbose ? "1" : "0",
  };
  return { value: value[env]! };
}

/** What the library makes of it: its value (as print_config reports it, or by what it does) and its warnings. */
async function libValue(env: string, text: string): Promise<{ value: string | null; warnings: string[] }> {
  const extra: Record<string, string> = { [env]: text };
  const argv = [cProgram("print_config")];
  // Verbose and stats have no getter: a large block makes a verbose library
  // speak; a summary or a file at exit shows the statistics setting.
  if (env === "EXM_VERBOSE") argv.push("1M"), (extra.EXM_THRESHOLD = "4096");
  const r = await runWithLib(argv, extra, { cwd: CWD });
  expect(r.code).toBe(0);
  const lines = r.stderr.split("\n").filter(Boolean);
  const warnings = lines.filter((l) => l.startsWith(`exm: ${env}: `));
  const other = lines.filter((l) => !warnings.includes(l));
  const c = kv(r.stdout);
  if (warnings.length) return { value: null, warnings };
  const v = variable(env);
  let value: string;
  switch (env) {
    case "EXM_THRESHOLD": value = c.threshold!; break;
    case "EXM_MAX_DISK": value = c.max_disk!; break;
    case "EXM_DIR": value = c.dir!; break;
    case "EXM_CHILD": value = v.choices![Number(c.child)]!; break;
    case "EXM_ADVICE": value = v.choices![Number(c.advice)]!; break;
    case "EXM_VERBOSE": value = other.length ? "1" : "0"; break;
    case "EXM_STATS": {
      const file = text.trim() === "" ? "" : parseSetting(v, text, CWD);
      if (file && file.ok && file.value.startsWith("/") && existsSync(file.value)) {
        value = file.value;
        rmSync(file.value);
      } else value = other.some((l) => l.startsWith("exm: ")) ? "1" : "0";
      break;
    }
    default: throw new Error(`no reader for ${env}`);
  }
  return { value, warnings };
}

test("native/options.gen.h is what build.ts generates from native/options.json", () => {
  expect(readFileSync(join(ROOT, "native", "options.gen.h"), "utf8")).toBe(renderOptionsHeader());
});

test("every variable of native/options.json has vectors", () => {
  expect(Object.keys(VECTORS).sort()).toEqual(VARIABLES.map((v) => v.env).sort());
});

describe.skipIf(noLib)("the library and the CLI read every vector alike", () => {
  for (const [env, rows] of Object.entries(VECTORS)) {
    test(`${env}: ${rows.length} values`, async () => {
      for (const [rawText, rawWant] of rows) {
        const text = expand(rawText);
        const want = rawWant === null ? null : expand(rawWant);
        const cli = cliValue(env, text);
        const lib = await libValue(env, text);
        const shown = JSON.stringify(text);
        if (want === null) {
          expect({ text: shown, cli: "error" in cli }).toEqual({ text: shown, cli: true });
          const words = "error" in cli ? cli.error : "";
          expect(words.startsWith(`${env}: '`)).toBe(true);
          // The same words on both sides; the library adds which default it uses.
          expect({ text: shown, lib: lib.warnings }).toEqual({
            text: shown,
            lib: [expect.stringMatching(new RegExp(`^exm: ${escape(words)}; using the default`))],
          });
        } else {
          expect({ text: shown, cli }).toEqual({ text: shown, cli: { value: want } });
          expect({ text: shown, lib }).toEqual({ text: shown, lib: { value: want, warnings: [] } });
        }
      }
    }, 120_000);
  }
});

function escape(s: string): string {
  // The library escapes control characters in values (\t, \n) as the CLI's oneLine() does.
  return s.replace(/\t/g, "\\t").replace(/\n/g, "\\n").replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

describe.skipIf(noCli)("the CLI binary refuses what the library refuses, in one line", () => {
  test("a bad value in a flag or a variable: exit 2, `exm: <source>: '<value>' <problem>`", async () => {
    const cases: [string[], Record<string, string>, string][] = [
      [["--threshold", "1.5"], {}, "exm: --threshold: '1.5' is not a whole number of bytes (a fraction needs a unit: 1.5K)"],
      [["--max-disk", "8E"], {}, "exm: --max-disk: '8E' is too large (at most 2^63-1 bytes)"],
      [["--child", "fork"], {}, "exm: --child: 'fork' is not one of cow, shared, duplicate"],
      [[], { EXM_ADVICE: "fast" }, "exm: EXM_ADVICE: 'fast' is not one of auto, normal, sequential, random"],
      [[], { EXM_VERBOSE: "2" }, "exm: EXM_VERBOSE: '2' is not a switch (0 or 1, off or on, no or yes, false or true)"],
      [[], { EXM_STATS: "2" }, "exm: EXM_STATS: '2' is not a switch (0 or 1, off or on, no or yes, false or true) or a file path"],
    ];
    for (const [flags, env, line] of cases) {
      const r = await run([EXM, ...flags, "true"], { env: { HOME: join(CWD, "home"), ...env }, cwd: CWD });
      expect({ flags, env, code: r.code, stderr: r.stderr }).toEqual({ flags, env, code: 2, stderr: `${line}\n` });
    }
  });

  test("EXM_STATS=yes is the summary, not a file named yes", async () => {
    const r = await run([EXM, "true"], { env: { HOME: join(CWD, "home"), EXM_STATS: "yes" }, cwd: CWD });
    expect(r.code).toBe(0);
    expect(existsSync(join(CWD, "yes"))).toBe(false);
  });
});
