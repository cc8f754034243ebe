/*
 * program.ts: finding the program as execvp(3) would, and telling whether the
 * loader will honour LD_PRELOAD for it.
 *
 * Paths are byte strings (Buffers) throughout: a program name need not be
 * UTF-8. A name containing `/` is used as is; otherwise each PATH entry is
 * tried in order (an empty entry is the current directory), a candidate that
 * exists but cannot be executed is remembered, and the search goes on, so
 * the result is 127 only when nothing by that name exists and 126 when
 * something does but cannot be run.
 */

import { accessSync, closeSync, constants, openSync, readSync, statSync, type Stats } from "node:fs";
import { EXIT_CANNOT_RUN, EXIT_NOT_FOUND, ExmError } from "./errors";

const DEFAULT_PATH = "/bin:/usr/bin";

function statOrNull(path: Buffer): Stats | null {
  try {
    return statSync(path);
  } catch {
    return null;
  }
}

function executable(path: Buffer): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Printable form of a byte-string path for messages. */
export function show(path: Buffer): string {
  return path.toString("utf8");
}

/** Returns the path to execve, or throws with status 127 or 126. */
export function resolveProgram(name: Buffer, pathEnv: Buffer | undefined): Buffer {
  if (name.length === 0) throw new ExmError("'': no such file or directory", EXIT_NOT_FOUND);
  if (name.includes(0x2f /* '/' */)) {
    const st = statOrNull(name);
    if (!st) throw new ExmError(`${show(name)}: no such file or directory`, EXIT_NOT_FOUND);
    if (st.isDirectory()) throw new ExmError(`${show(name)}: is a directory`, EXIT_CANNOT_RUN);
    if (!executable(name)) throw new ExmError(`${show(name)}: permission denied (not executable)`, EXIT_CANNOT_RUN);
    return name;
  }
  const path = pathEnv ?? Buffer.from(DEFAULT_PATH);
  let denied: Buffer | undefined;
  let start = 0;
  for (let i = 0; i <= path.length; i++) {
    if (i < path.length && path[i] !== 0x3a /* ':' */) continue;
    const dir = path.subarray(start, i);
    start = i + 1;
    const candidate = dir.length === 0 ? name : Buffer.concat([dir, Buffer.from("/"), name]);
    const st = statOrNull(candidate);
    if (!st) continue;
    if (st.isDirectory() || !executable(candidate)) {
      denied ??= candidate;
      continue;
    }
    return candidate;
  }
  if (denied) throw new ExmError(`${show(denied)}: permission denied (not executable)`, EXIT_CANNOT_RUN);
  throw new ExmError(`${show(name)}: command not found`, EXIT_NOT_FOUND);
}

export type LinkKind = "dynamic" | "static" | "other";

/**
 * "static" for an ELF executable without PT_INTERP (the loader, and so
 * LD_PRELOAD, never runs), "dynamic" with one, "other" for scripts and
 * anything unreadable (their interpreter decides).
 */
export function linkKind(path: Buffer): LinkKind {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch {
    return "other";
  }
  try {
    const head = Buffer.alloc(4096);
    const n = readSync(fd, head, 0, head.length, 0);
    if (n < 52 || head.readUInt32BE(0) !== 0x7f454c46) return "other";
    const is64 = head[4] === 2;
    const le = head[5] === 1;
    const u16 = (o: number) => (le ? head.readUInt16LE(o) : head.readUInt16BE(o));
    const u32 = (o: number) => (le ? head.readUInt32LE(o) : head.readUInt32BE(o));
    const u64 = (o: number) => Number(le ? head.readBigUInt64LE(o) : head.readBigUInt64BE(o));
    const phoff = is64 ? u64(32) : u32(28);
    const phentsize = is64 ? u16(54) : u16(42);
    const phnum = is64 ? u16(56) : u16(44);
    const table = Buffer.alloc(phentsize * phnum);
    if (readSync(fd, table, 0, table.length, phoff) !== table.length) return "other";
    for (let i = 0; i < phnum; i++) {
      const type = le ? table.readUInt32LE(i * phentsize) : table.readUInt32BE(i * phentsize);
      if (type === 3 /* PT_INTERP */) return "dynamic";
    }
    return "static";
  } catch {
    return "other";
  } finally {
    closeSync(fd);
  }
}

/**
 * Why the loader runs the program in secure mode (which drops LD_PRELOAD
 * paths with a slash), or null. Running a set-id file of our own ids is not
 * secure mode (e.g. root running a setuid-root program).
 */
export function secureModeReason(path: Buffer): string | null {
  const st = statOrNull(path);
  if (!st) return null;
  const euid = process.geteuid?.() ?? 0;
  const egid = process.getegid?.() ?? 0;
  if (st.mode & 0o4000 && st.uid !== euid) return "setuid";
  if (st.mode & 0o2000 && st.mode & 0o010 && st.gid !== egid) return "setgid";
  return null;
}
