/*
 * settings.ts: the grammar of exm's settings, the TypeScript half.
 *
 * native/options.json is the one table of settings (variable, type, default,
 * flags, meanings). The library reads the same values with native/options.c;
 * both follow the grammar below, and tests/fixtures/settings-vectors.json is
 * run against both (tests/settings.test.ts), so `EXM_THRESHOLD=1.5` means the
 * same whether the CLI or a library preloaded by hand reads it. A bad value
 * gets the same words on both sides: `<source>: '<value>' <problem>`; the CLI
 * then refuses to run (exit 2), the library says which default it uses.
 *
 * The grammar:
 *  - size: optional blanks, a number (`12`, `1.5`, `.5`), optional blanks, an
 *    optional unit K M G T P E (binary, any case) optionally followed by `B`
 *    or `iB`, or a bare `B`; optional blanks. A fraction needs a unit and is
 *    rounded down to a whole byte (fraction digits past the 36th are
 *    ignored). At most 2^63-1 bytes.
 *  - threshold: a size, or the word `auto` (any case, blanks around ignored).
 *  - choice: one of the names, any case, blanks around ignored.
 *  - switch: 0/off/no/false or 1/on/yes/true, any case, blanks ignored.
 *  - dir: a path; a relative one is taken from the working directory and
 *    normalised (`.`, `..`, repeated and trailing slashes). Not trimmed.
 *  - stats: a switch word (1 = summary on stderr), or else a file path as for
 *    dir; digits other than 0 and 1 are refused (a file named `2` is more
 *    likely a typo than a wish).
 * An empty variable is the same as an unset one.
 */

import spec from "../native/options.json" with { type: "json" };

export type SettingType = "size" | "threshold" | "dir" | "choice" | "switch" | "stats";

export interface VariableSpec {
  readonly env: string;
  readonly type: SettingType;
  readonly default: string;
  readonly choices?: readonly string[];
}

export interface FlagSpec {
  readonly flag: string;
  readonly value?: string;
  readonly variable: string;
  /** How the variable is shown in the option table (EXM_STATS=1). */
  readonly shown: string;
  /** The default as a person reads it. */
  readonly default: string;
  readonly meaning: string;
}

export const VARIABLES = spec.variables as readonly VariableSpec[];
export const SETTING_FLAGS = spec.flags as readonly FlagSpec[];

export function variable(env: string): VariableSpec {
  const v = VARIABLES.find((x) => x.env === env);
  if (!v) throw new Error(`native/options.json has no variable ${env}`);
  return v;
}

/** What a good value of `v` looks like, for messages. */
export function expectText(v: VariableSpec): string {
  const text = (spec.expect as Record<SettingType, string>)[v.type];
  return text.replace("$choices", (v.choices ?? []).join(", "));
}

export const MAX_SIZE = (1n << 63n) - 1n;
export const PATH_MAX = 4096;
const MAX_FRACTION_DIGITS = 36;
const UNIT_SHIFT: Record<string, bigint> = { k: 10n, m: 20n, g: 30n, t: 40n, p: 50n, e: 60n };
const BLANKS = /^[ \t\n\r\f\v]+|[ \t\n\r\f\v]+$/g;
const SIZE_RE = /^(\d*)(?:\.(\d+))?[ \t\n\r\f\v]*(?:([kmgtpe])(i?b)?|(b))?$/i;

export type Parsed<T> = { ok: true; value: T } | { ok: false; problem: string };

const bad = <T>(problem: string): Parsed<T> => ({ ok: false, problem });

/** A size in bytes, or why the text is not one. */
export function parseSizeText(text: string): Parsed<bigint> {
  const s = text.replace(BLANKS, "");
  const m = SIZE_RE.exec(s);
  const notSize = `is not ${expectText({ env: "", type: "size", default: "" })}`;
  if (!m || (m[1] === "" && m[2] === undefined)) return bad(notSize);
  const [, whole = "", frac = "", unit] = m;
  if (!unit && frac !== "") return bad("is not a whole number of bytes (a fraction needs a unit: 1.5K)");
  const digits = frac.slice(0, MAX_FRACTION_DIGITS);
  const shift = unit ? UNIT_SHIFT[unit.toLowerCase()]! : 0n;
  const scale = 10n ** BigInt(digits.length);
  const bytes = ((BigInt(whole || "0") * scale + BigInt(digits || "0")) << shift) / scale;
  if (bytes > MAX_SIZE) return bad("is too large (at most 2^63-1 bytes)");
  return { ok: true, value: bytes };
}

const SWITCH_OFF = ["0", "off", "no", "false"];
const SWITCH_ON = ["1", "on", "yes", "true"];

/** A switch word, or undefined when the text is not one. */
export function switchValue(text: string): boolean | undefined {
  const v = text.replace(BLANKS, "").toLowerCase();
  if (SWITCH_OFF.includes(v)) return false;
  if (SWITCH_ON.includes(v)) return true;
  return undefined;
}

/** `path` made absolute against `cwd` and normalised as the library does it. */
export function normalisePath(path: string, cwd: string): string {
  const parts: string[] = [];
  for (const part of `${path.startsWith("/") ? "" : `${cwd}/`}${path}`.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") parts.pop();
    else parts.push(part);
  }
  return `/${parts.join("/")}`;
}

function parsePath(text: string, cwd: string): Parsed<string> {
  if (text === "") return bad("is an empty path");
  const path = normalisePath(text, cwd);
  if (Buffer.byteLength(path) >= PATH_MAX) return bad(`is too long (at most ${PATH_MAX - 1} bytes)`);
  return { ok: true, value: path };
}

/**
 * The value of variable `v` given `text`, in the form the library takes it:
 * sizes as decimal bytes, choices lower case, switches "0"/"1", paths
 * absolute; stats "0", "1" or an absolute path.
 */
export function parseSetting(v: VariableSpec, text: string, cwd: string): Parsed<string> {
  switch (v.type) {
    case "size":
    case "threshold": {
      if (v.type === "threshold" && text.replace(BLANKS, "").toLowerCase() === "auto") return { ok: true, value: "auto" };
      const r = parseSizeText(text);
      const notSize = `is not ${expectText({ env: "", type: "size", default: "" })}`;
      if (!r.ok && v.type === "threshold" && r.problem === notSize) return bad(`is not ${expectText(v)}`);
      return r.ok ? { ok: true, value: r.value.toString() } : r;
    }
    case "choice": {
      const c = text.replace(BLANKS, "").toLowerCase();
      return v.choices!.includes(c) ? { ok: true, value: c } : bad(`is not ${expectText(v)}`);
    }
    case "switch": {
      const b = switchValue(text);
      return b === undefined ? bad(`is not ${expectText(v)}`) : { ok: true, value: b ? "1" : "0" };
    }
    case "dir":
      return parsePath(text, cwd);
    case "stats": {
      const b = switchValue(text);
      if (b !== undefined) return { ok: true, value: b ? "1" : "0" };
      if (/^\d+$/.test(text.replace(BLANKS, ""))) return bad(`is not ${expectText(v)}`);
      return parsePath(text, cwd);
    }
  }
}

/** The one-line words for a bad value: `EXM_CHILD: 'fork' is not one of ...`. */
export function badValueMessage(source: string, text: string, problem: string): string {
  return `${source}: '${text}' ${problem}`;
}

/** native/options.gen.h: the library's table, generated from native/options.json by build.ts. */
export function renderOptionsHeader(): string {
  const c = (s: string) => JSON.stringify(s);
  const lines = [
    "/* options.gen.h: generated by build.ts from native/options.json; do not edit.",
    " * tests/settings.test.ts checks that it matches. X(variable, type, default, expected value) */",
    "#define EXM_OPTION_LIST(X) \\",
    ...VARIABLES.map((v) => `  X(${v.env}, ${v.type}, ${c(v.default)}, ${c(expectText(v))}) \\`),
    "",
    ...VARIABLES.map((v) => `#define EXM_DEFAULT_${v.env} ${c(v.default)}`),
  ];
  for (const v of VARIABLES.filter((x) => x.choices)) {
    lines.push(`#define EXM_CHOICES_${v.env} { ${v.choices!.map(c).join(", ")} }`);
  }
  return `${lines.join("\n")}\n`;
}
