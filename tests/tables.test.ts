/**
 * One source for what exm.h declares (issue 16): its X-macro tables,
 * EXM_FUNCTIONS and EXM_STATS_FIELDS, and its EXM_VERSION_*. The C copies
 * are built from the tables (stats.c's JSON record, rpkg/src/rexm.c,
 * tests/c/common.h) and native/api.c holds the tables to the declarations at
 * compile time; every copy that is not C is checked here, so a copy that
 * drifts fails this file. No program is run: it reads the sources.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { EXM_SYMBOLS, HEADER_VERSION, STATS_FIELDS } from "../src/bun/ffi";
import { ARENA_FIELDS } from "../src/supervise";

const ROOT = join(import.meta.dir, "..");
const read = (...p: string[]) => readFileSync(join(ROOT, ...p), "utf8");
const header = read("native", "exm.h");

/** The body of the X-macro `name` in exm.h, one X(...) per entry. */
function xmacro(name: string): string[][] {
  const m = new RegExp(`#define ${name}\\(X\\)((?:.*\\\\\\n)*.*)`).exec(header);
  if (!m) throw new Error(`native/exm.h defines no ${name}(X)`);
  return [...m[1]!.matchAll(/X\(((?:[^()]|\([^()]*\))*)\)/g)].map((x) => splitTop(x[1]!));
}

/** Splits on commas outside parentheses. */
function splitTop(s: string): string[] {
  const out: string[] = [];
  let depth = 0, cur = "";
  for (const ch of s) {
    if (ch === "," && depth === 0) out.push(cur.trim()), cur = "";
    else {
      depth += ch === "(" ? 1 : ch === ")" ? -1 : 0;
      cur += ch;
    }
  }
  return [...out, cur.trim()];
}

const FUNCTIONS = xmacro("EXM_FUNCTIONS").map(([ret, name, params]) => {
  const inner = params!.replace(/^\(|\)$/g, "").trim();
  return { ret: ret!, name: `exm_${name}`, arity: inner === "void" ? 0 : splitTop(inner).length };
});
const FIELDS = xmacro("EXM_STATS_FIELDS").map(([field, json]) => ({ field: field!, json: json! }));
const camel = (s: string) => s.replace(/_(\w)/g, (_, c: string) => c.toUpperCase());
const version = ["MAJOR", "MINOR", "PATCH"]
  .map((n) => new RegExp(`#define\\s+EXM_VERSION_${n}\\s+(\\d+)`).exec(header)?.[1] ?? "?")
  .join(".");

describe("exm.h: the tables match the declarations", () => {
  test("EXM_FUNCTIONS lists every function exm.h declares, in order", () => {
    const declared = [...header.matchAll(/^[a-z][\w ]*?[\s*](exm_\w+)\(/gm)].map((m) => m[1]);
    expect(FUNCTIONS.map((f) => f.name)).toEqual(declared as string[]);
  });
  test("EXM_STATS_FIELDS lists exm_stats_t's fields in order; JSON names are their camelCase", () => {
    const struct = /typedef struct exm_stats \{([\s\S]*?)\} exm_stats_t;/.exec(header)![1]!;
    const fields = [...struct.matchAll(/uint64_t (\w+);/g)].map((m) => m[1]);
    expect(FIELDS.map((f) => f.field)).toEqual(fields as string[]);
    for (const f of FIELDS) expect(f.json).toBe(camel(f.field));
  });
});

describe("the copies that are not C follow exm.h", () => {
  test("Bun FFI (src/bun/ffi.ts): functions in order with their arity, stats fields, version", () => {
    expect(Object.keys(EXM_SYMBOLS)).toEqual(FUNCTIONS.map((f) => f.name));
    for (const f of FUNCTIONS) {
      const args = (EXM_SYMBOLS as Record<string, { args: readonly unknown[] }>)[f.name]!.args;
      expect(`${f.name}/${args.length}`).toBe(`${f.name}/${f.arity}`);
    }
    expect([...STATS_FIELDS] as string[]).toEqual(FIELDS.map((f) => f.field));
    expect(HEADER_VERSION).toBe(version);
  });

  test("Bun API (src/bun/api.ts): ExmStats has the camelCase fields, in order", () => {
    const api = read("src", "bun", "api.ts");
    const body = /export interface ExmStats \{([\s\S]*?)\n\}/.exec(api)![1]!;
    const keys = [...body.matchAll(/^\s*(\w+): number;/gm)].map((m) => m[1]);
    expect(keys).toEqual(FIELDS.map((f) => f.json));
  });

  test("launcher (src/supervise.ts): ARENA_FIELDS are the record's camelCase fields", () => {
    expect([...ARENA_FIELDS] as string[]).toEqual(FIELDS.map((f) => f.json));
  });

  test("Python (python/exm/_ffi.py, __init__.py): symbols with their arity, ctypes fields, Stats, docs, version", () => {
    const ffi = read("python", "exm", "_ffi.py");
    const symbols = [...ffi.matchAll(/^\s*"(exm_\w+)": \((.+?), \[(.*?)\]\),$/gm)].map((m) => ({
      name: m[1]!,
      arity: m[3]!.trim() === "" ? 0 : splitTop(m[3]!).length,
    }));
    expect(symbols).toEqual(FUNCTIONS.map(({ name, arity }) => ({ name, arity })));
    const struct = /class exm_stats_t\(ctypes\.Structure\):\s*_fields_ = \[([\s\S]*?)\]/.exec(ffi)![1]!;
    expect([...struct.matchAll(/\("(\w+)", c_uint64\)/g)].map((m) => m[1])).toEqual(FIELDS.map((f) => f.field));
    expect(/^HEADER_VERSION = "([^"]+)"/m.exec(ffi)?.[1]).toBe(version);

    const init = read("python", "exm", "__init__.py");
    const tuple = /class Stats\(NamedTuple\):\s*"""[^"]*"""([\s\S]*?)\n\n\ndef /.exec(init)![1]!;
    expect([...tuple.matchAll(/^\s+(\w+): int$/gm)].map((m) => m[1])).toEqual(FIELDS.map((f) => f.field));
    const docs = /_document_fields\(\s*Stats,\s*\{([\s\S]*?)\},\s*\)/.exec(init)![1]!;
    expect([...docs.matchAll(/^\s+"(\w+)":/gm)].map((m) => m[1])).toEqual(FIELDS.map((f) => f.field));
    expect(/^__version__ = "([^"]+)"/m.exec(init)?.[1]).toBe(version);
  });

  test("the version is exm.h's everywhere: package.json, python/pyproject.toml, rpkg/DESCRIPTION", () => {
    expect(JSON.parse(read("package.json")).version).toBe(version);
    expect(/^version = "([^"]+)"/m.exec(read("python", "pyproject.toml"))?.[1]).toBe(version);
    expect(/^Version: (\S+)/m.exec(read("rpkg", "DESCRIPTION"))?.[1]).toBe(version);
  });

  test("the C copies are built from the tables, not written out", () => {
    // A hand-written list next to the macro would drift unseen: each file
    // must use the macro and name no field or function by hand.
    for (const [file, macro] of [
      [["native", "stats.c"], "EXM_STATS_FIELDS"],
      [["rpkg", "src", "rexm.c"], "EXM_STATS_FIELDS"],
      [["rpkg", "src", "rexm.c"], "EXM_FUNCTIONS"],
      [["tests", "c", "common.h"], "EXM_FUNCTIONS"],
    ] as const) {
      expect(`${file.join("/")}: ${read(...file).includes(`${macro}(`)}`).toBe(`${file.join("/")}: true`);
    }
    const handWritten: [string[], RegExp][] = [
      [["native", "stats.c"], /j_field\(j, "peakLiveBytes"/],
      [["rpkg", "src", "rexm.c"], /\{ "exm_get_stats",/],
      [["rpkg", "src", "rexm.c"], /"peak_live_bytes"/],
      [["tests", "c", "common.h"], /API_SYM\(get_stats,/],
      [["native", "api.c"], /return "\d+\.\d+\.\d+"/],
    ];
    for (const [file, re] of handWritten) expect(`${file.join("/")}: ${re.test(read(...file))}`).toBe(`${file.join("/")}: false`);
  });
});
