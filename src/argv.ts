/*
 * argv.ts: exm's own arguments and the program's, byte for byte.
 *
 * process.argv has replaced non-UTF-8 bytes with U+FFFD, so the raw argument
 * vector comes from /proc/self/cmdline (and the raw environment from
 * /proc/self/environ, which the kernel keeps as it was at exec even if the
 * runtime changes variables later; after a restart under an address-space
 * limit, both come from the first exm: restart.ts). Splitting and parsing are both done here,
 * from the one option table: exm's options end at the first non-option or at
 * `--`, and what follows is the program's even when it looks like an option
 * of exm's (`-h`, `--threshold`). (exm used citty for the parsing once; it only
 * re-parsed what this split had already parsed, so it went.)
 */

import { readFileSync } from "node:fs";
import { usageError } from "./errors";
import { findOption, findShort, type OptionSpec } from "./options";
import { RESTARTED as RESTART } from "./restart";

/** Splits a NUL-terminated list (cmdline, environ) into its byte strings. */
export function splitNul(bytes: Uint8Array): Buffer[] {
  const out: Buffer[] = [];
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let start = 0;
  for (let i = 0; i < buf.length; i++) {
    if (buf[i] === 0) {
      out.push(buf.subarray(start, i));
      start = i + 1;
    }
  }
  if (start < buf.length) out.push(buf.subarray(start));
  return out;
}

/**
 * The arguments after the executable's own name, as raw bytes: the kernel's
 * copy, which also leaves out what Bun may add to process.argv (BUN_OPTIONS).
 * Run from source (`bun src/cli.ts ...`), the command line also holds bun's
 * own arguments: then the last process.argv.length - 2 entries are ours.
 * process.argv only serves when /proc cannot be read.
 */
export function rawArgs(): Buffer[] {
  if (RESTART) return RESTART.args; // restarted (restart.ts): the first exm's, byte for byte
  const fromProcess = process.argv.slice(2);
  try {
    const cmdline = splitNul(readFileSync("/proc/self/cmdline"));
    const compiled = process.argv[1]?.startsWith("/$bunfs/") ?? false;
    if (compiled) return cmdline.slice(1);
    return cmdline.slice(Math.max(1, cmdline.length - fromProcess.length));
  } catch {
    return fromProcess.map((a) => Buffer.from(a));
  }
}

/** The environment as it was at exec, raw; falls back to process.env. */
export function rawEnviron(): Buffer[] {
  if (RESTART) return RESTART.environ;
  try {
    return splitNul(readFileSync("/proc/self/environ"));
  } catch {
    return Object.entries(process.env).map(([k, v]) => Buffer.from(`${k}=${v}`));
  }
}

export interface SplitArgs {
  /** exm's own options given, by flag name: the value, or true for a flag
   *  without one. A repeated option: the last one wins. */
  options: Map<string, string | true>;
  /** The program and its arguments, untouched (empty when none was given). */
  program: Buffer[];
  /** The last option took its value from the next argument, and nothing followed:
   *  that value may have been meant as the program (`exm --threshold true`). */
  lastValue?: { flag: string; value: string };
}

/** Separates exm's options from the program and its arguments. */
export function splitArgs(args: Buffer[]): SplitArgs {
  const options = new Map<string, string | true>();
  let i = 0;
  let lastValue: { flag: string; value: string } | undefined;
  const take = (spec: OptionSpec, inline: string | undefined, given: string) => {
    let value: string | true = true;
    lastValue = undefined;
    if (spec.valueDefault !== undefined && inline === undefined) {
      // An optional value: the next argument only if it looks like one (a number).
      const next = args[i + 1]?.toString();
      value = next !== undefined && /^\d+(\.\d+)?$/.test(next) ? (i++, next) : spec.valueDefault;
    } else if (spec.value) {
      if (inline !== undefined) value = inline;
      else if (i + 1 < args.length) {
        value = args[++i]!.toString();
        lastValue = { flag: spec.flag, value };
      } else throw usageError(`option ${given} needs a value (${spec.value})`, true);
    } else {
      if (inline !== undefined) throw usageError(`option --${spec.flag} takes no value`, true);
    }
    options.set(spec.flag, value);
  };
  for (; i < args.length; i++) {
    const a = args[i]!.toString();
    if (a === "--") {
      i++;
      break;
    }
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      const name = eq < 0 ? a.slice(2) : a.slice(2, eq);
      const spec = findOption(name);
      if (!spec) throw usageError(`unknown option '${eq < 0 ? a : a.slice(0, eq)}'`, true);
      take(spec, eq < 0 ? undefined : a.slice(eq + 1), `--${name}`);
      continue;
    }
    if (a.startsWith("-") && a.length > 1) {
      const spec = a.length === 2 ? findShort(a[1]!) : undefined;
      if (!spec) throw usageError(`unknown option '${a}'`, true);
      take(spec, undefined, a);
      continue;
    }
    if (a === "-") throw usageError("unknown option '-'", true);
    break;
  }
  return { options, program: args.slice(i), ...(i >= args.length && lastValue ? { lastValue } : {}) };
}
