/*
 * restart.ts: exm under an address-space limit (ulimit -v; a batch
 * scheduler's h_vmem or VSZ limit).
 *
 * Bun's JIT reserves its executable memory when the runtime starts (about
 * 3 GB of address space); under a lower limit the runtime starts without the
 * JIT, and bun:ffi, through which exm makes the libc calls it needs (execve
 * first of all), refuses to load: "bun:ffi requires the JIT". Measured with
 * Bun 1.4.5: `exm true` failed so under `ulimit -v` of 0.5-2 GB and ran under
 * 3 GB. The reservation's size is a JSC option that only the environment at
 * start sets (BUN_JSC_jitMemoryReservationSize), so exm runs itself again,
 * same pid, with a 64 MiB reservation: it then runs under 0.5 GB (below
 * about 0.4 GB the runtime cannot start at all). Its arguments and
 * environment travel byte for byte in one variable (EXM_RESTART), so the
 * program gets exactly the environment the first exm was given, without
 * either variable (argv.ts reads them from there).
 *
 * What a restart would lose: Bun marks the descriptors exm inherited above 2
 * close-on-exec at start-up (fds.ts), and without libc exm cannot clear the
 * mark. Given any, exm stops and says how to start it instead.
 */

import { readFileSync } from "node:fs";
import { ExmError } from "./errors";
import type { FdSnapshot } from "./fds";
import { libcError } from "./libc";
import { formatSize } from "./options";

const RESTART_VAR = "EXM_RESTART";
const JIT_VAR = "BUN_JSC_jitMemoryReservationSize";
const JIT_BYTES = 64 << 20;
const O_CLOEXEC = 0o2000000;

/** The soft RLIMIT_AS in bytes, undefined when unlimited or unknown (read from /proc: no libc needed). */
function addressSpaceLimit(): number | undefined {
  try {
    const line = readFileSync("/proc/self/limits", "latin1").split("\n").find((l) => l.startsWith("Max address space"));
    const soft = line?.slice("Max address space".length).trim().split(/\s+/)[0];
    return soft && /^[0-9]+$/.test(soft) ? Number(soft) : undefined;
  } catch {
    return undefined;
  }
}

/** Descriptors of `atStart` (those above 2) that an exec would now close. */
function closedByExec(atStart: FdSnapshot): number[] {
  const lost: number[] = [];
  for (const fd of atStart.keys()) {
    if (fd <= 2) continue;
    try {
      const flags = /^flags:\s*([0-7]+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, "latin1"))?.[1];
      if (flags !== undefined && (parseInt(flags, 8) & O_CLOEXEC) !== 0) lost.push(fd);
    } catch {}
  }
  return lost.sort((a, b) => a - b);
}

/**
 * The first exm's arguments and environment, encoded for EXM_RESTART, with
 * its pid: execve keeps the pid, so a value this process did not write
 * (left in an environment by anything else) never passes for one.
 */
export function encodeRestart(args: Buffer[], environ: Buffer[]): string {
  return JSON.stringify({
    pid: process.pid, args: args.map((b) => b.toString("base64")), environ: environ.map((b) => b.toString("base64")),
  });
}

/** What the first exm handed over, or undefined (not restarted, or a value that is not ours). */
export function decodeRestart(value: string | undefined): { args: Buffer[]; environ: Buffer[] } | undefined {
  if (!value) return undefined;
  try {
    const v = JSON.parse(value) as { pid?: unknown; args?: unknown; environ?: unknown };
    if (v.pid !== process.pid) return undefined;
    const list = (x: unknown) =>
      Array.isArray(x) && x.every((s) => typeof s === "string") ? x.map((s: string) => Buffer.from(s, "base64")) : undefined;
    const args = list(v.args), environ = list(v.environ);
    return args && environ ? { args, environ } : undefined;
  } catch {
    return undefined;
  }
}

/** This exm's restart payload, when it is the restarted one. */
export const RESTARTED = decodeRestart(process.env[RESTART_VAR]);

/**
 * Called first, before anything needs libc: returns when libc can be called,
 * runs exm again (does not return) when only the JIT's reservation is in the
 * way, and throws when neither helps.
 */
export function ensureLibc(atStart: FdSnapshot, args: Buffer[], environ: Buffer[]): void {
  const limit = addressSpaceLimit();
  if (limit === undefined) return; // without a limit the JIT is there (and a failure is reported where it happens)
  const err = libcError();
  if (!err) return;
  const why = `under the address-space limit (ulimit -v) of ${formatSize(limit)} exm cannot call libc (${err.message})`;
  if (RESTARTED) {
    throw new ExmError(`${why}, even with a smaller JIT reservation: exm needs a limit of 512 MiB or more`);
  }
  const instead = `start exm with ${JIT_VAR}=${JIT_BYTES} in its environment`;
  const lost = closedByExec(atStart);
  if (lost.length) {
    throw new ExmError(
      `${why}; starting again with a smaller JIT reservation would close the descriptor${lost.length > 1 ? "s" : ""} ` +
        `${lost.join(", ")} it was given: ${instead}`,
    );
  }
  if (typeof process.execve !== "function") throw new ExmError(`${why}: ${instead}`);
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
  env[JIT_VAR] ??= String(JIT_BYTES);
  env[RESTART_VAR] = encodeRestart(args, environ);
  process.removeAllListeners("warning"); // Bun warns that process.execve is experimental (seen when it fails)
  try {
    process.execve!(process.execPath, [process.argv0, ...args.map((a) => a.toString())], env);
  } catch (e) {
    // E2BIG: one variable holds at most 128 KiB, about 96 KiB of arguments and environment
    throw new ExmError(`${why}, and starting again failed (${(e as Error).message}): ${instead}`);
  }
}
