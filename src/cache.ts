/*
 * cache.ts: takes the embedded library out of the executable, safely.
 *
 * The program (and every child of it that execs) preloads the library from a
 * real file, so it is written once per version into a per-user cache
 * directory, as `libexm-<sha256 prefix>.so`, through a temporary file and an
 * atomic rename: concurrent first runs each write their own temporary file
 * and the last rename wins with identical bytes.
 *
 * Anything the program preloads must be ours, so a cache directory is used
 * only if it is a real directory (not a symlink), owned by us, mode 0700;
 * otherwise exm refuses, naming it, rather than fixing someone else's
 * directory. The cached file is checked at every run (regular file, ours, not
 * group/world-writable, right size and SHA-256; hashing ~100 KiB costs well
 * under a millisecond) and replaced when it fails, so a planted or damaged
 * file is never loaded.
 *
 * The loader ignores a preload from a noexec mount without a word, so such a
 * location (and one whose path LD_PRELOAD cannot carry: spaces, colons) is
 * skipped for the next candidate: $XDG_CACHE_HOME/exm (or ~/.cache/exm),
 * $XDG_RUNTIME_DIR/exm, /tmp/exm-<uid>, /dev/shm/exm-<uid>. A location whose
 * ancestors would let another user swap it is skipped too (ancestorProblem).
 */

import {
  chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, realpathSync, renameSync, statSync,
  unlinkSync, writeFileSync, type Stats,
} from "node:fs";
import { dirname } from "node:path";
import { ExmError } from "./errors";
import { mountFlags, ST_NOEXEC } from "./libc";
import { cachedName, EMBEDDED_LIBRARY_PATH, LIBRARY } from "../embed/library";

type Env = Record<string, string | undefined>;

export interface CacheCandidate {
  dir: string;
  /** Where the location comes from, for messages. */
  source: string;
  /** Create missing parent directories (only for the user's own cache home). */
  createParents: boolean;
}

/** Cache locations in order of preference. */
export function cacheCandidates(env: Env, uid: number): CacheCandidate[] {
  const out: CacheCandidate[] = [];
  const xdg = env.XDG_CACHE_HOME;
  if (xdg && xdg.startsWith("/")) out.push({ dir: `${xdg}/exm`, source: "XDG_CACHE_HOME", createParents: true });
  else if (env.HOME && env.HOME.startsWith("/")) {
    out.push({ dir: `${env.HOME.replace(/\/+$/, "")}/.cache/exm`, source: "HOME", createParents: true });
  }
  const run = env.XDG_RUNTIME_DIR;
  if (run && run.startsWith("/")) out.push({ dir: `${run}/exm`, source: "XDG_RUNTIME_DIR", createParents: false });
  out.push({ dir: `/tmp/exm-${uid}`, source: "fallback", createParents: false });
  out.push({ dir: `/dev/shm/exm-${uid}`, source: "fallback", createParents: false });
  return out;
}

function lstatOrNull(path: string): Stats | null {
  try {
    return lstatSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw new ExmError(`cache directory ${path}: ${(e as Error).message}`);
  }
}

/** What is wrong with an existing cache directory, or null when it is fine. */
export function cacheDirProblem(st: Stats, uid: number): string | null {
  if (st.isSymbolicLink()) return "is a symbolic link, not a directory";
  if (!st.isDirectory()) return "is not a directory";
  if (st.uid !== uid) return `is owned by uid ${st.uid}, not by you (uid ${uid})`;
  const mode = st.mode & 0o7777;
  if ((mode & 0o777) !== 0o700) return `has mode ${mode.toString(8).padStart(4, "0")}, must be 0700`;
  return null;
}

/**
 * Why a directory's ancestors would let another user swap it (rename it away
 * and put theirs in its place), or null. Each existing ancestor must belong
 * to root or to us, and one that others may write must be sticky (like /tmp)
 * with the entry below it ours or root's: ssh's StrictModes rule.
 */
export function ancestorProblem(dir: string, uid: number): string | null {
  let existing = dirname(dir);
  while (existing !== "/" && !existsSync(existing)) existing = dirname(existing);
  let cur: string;
  try {
    cur = realpathSync(existing);
  } catch {
    return null;
  }
  let childUid = uid; // what we create below `existing` is ours
  for (;;) {
    const st = statSync(cur);
    if (st.uid !== 0 && st.uid !== uid) return `${cur} belongs to uid ${st.uid}`;
    if (st.mode & 0o022) {
      if (!(st.mode & 0o1000)) return `${cur} is writable by others and not sticky`;
      if (childUid !== 0 && childUid !== uid) return `an entry of the shared directory ${cur} belongs to uid ${childUid}`;
    }
    if (cur === "/") return null;
    childUid = st.uid;
    cur = dirname(cur);
  }
}

/**
 * Makes sure `c.dir` exists as our private directory. Returns why it cannot
 * be used when it is missing and cannot be created (the caller tries the next
 * candidate); throws when it exists but is not safe.
 */
function ensureDir(c: CacheCandidate, uid: number): string | null {
  let st = lstatOrNull(c.dir);
  if (!st) {
    const parent = c.dir.slice(0, c.dir.lastIndexOf("/")) || "/";
    try {
      if (c.createParents) mkdirSync(parent, { recursive: true, mode: 0o700 });
      mkdirSync(c.dir, { mode: 0o700 });
      // A umask that takes owner bits away would leave it unusable; ours to fix.
      chmodSync(c.dir, 0o700);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") return `cannot be created (${(e as Error).message})`;
    }
    st = lstatOrNull(c.dir);
    if (!st) return "vanished while being created";
  }
  const problem = cacheDirProblem(st, uid);
  if (problem) {
    throw new ExmError(`refusing cache directory ${c.dir}: it ${problem} (exm loads its library only from a private directory of yours)`);
  }
  return null;
}

function sha256(bytes: Uint8Array): string {
  return new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
}

/** Why the cached file cannot be trusted, or null when it is the right one. */
function fileProblem(path: string, uid: number): string | null {
  let st: Stats;
  try {
    st = lstatSync(path);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "ENOENT" ? "missing" : (e as Error).message;
  }
  if (!st.isFile()) return "not a regular file";
  if (st.uid !== uid) return `owned by uid ${st.uid}`;
  if (st.mode & 0o022) return "writable by group or others";
  if (st.size !== LIBRARY.size) return "wrong size";
  if (sha256(readFileSync(path)) !== LIBRARY.sha256) return "wrong content";
  return null;
}

export interface Installed {
  /** Absolute path of the verified library to preload. */
  path: string;
  /** Cache locations skipped on the way, with the reason (for --verbose). */
  skipped: string[];
}

/** Characters LD_PRELOAD splits on: a path containing one cannot be preloaded. */
const PRELOAD_SEPARATORS = /[\s:]/;

/**
 * Returns the path of a verified copy of the embedded library in the first
 * usable cache location, writing it there if needed. `warn` gets one line per
 * replaced untrustworthy file.
 */
export function installLibrary(env: Env, uid: number, warn: (line: string) => void): Installed {
  const skipped: string[] = [];
  for (const c of cacheCandidates(env, uid)) {
    if (PRELOAD_SEPARATORS.test(c.dir)) {
      skipped.push(`${c.dir}: LD_PRELOAD cannot carry a path with a space or colon`);
      continue;
    }
    const exposed = ancestorProblem(c.dir, uid);
    if (exposed) {
      skipped.push(`${c.dir}: ${exposed}, so another user could swap the cache`);
      continue;
    }
    const unusable = ensureDir(c, uid);
    if (unusable) {
      skipped.push(`${c.dir}: ${unusable}`);
      continue;
    }
    const flags = mountFlags(c.dir);
    if (flags !== undefined && (flags & ST_NOEXEC) !== 0n) {
      skipped.push(`${c.dir}: on a noexec mount, where the loader ignores preloads`);
      continue;
    }
    const path = `${c.dir}/${cachedName()}`;
    const problem = fileProblem(path, uid);
    if (problem === null) return { path, skipped };
    if (problem !== "missing") warn(`replacing ${path}: ${problem}`);
    writeLibrary(path);
    const after = fileProblem(path, uid);
    if (after !== null) throw new ExmError(`cannot install the library at ${path}: ${after}`);
    return { path, skipped };
  }
  throw new ExmError(`no usable cache location for the library (${skipped.join("; ")})`);
}

function writeLibrary(path: string): void {
  const dir = path.slice(0, path.lastIndexOf("/"));
  const name = path.slice(dir.length + 1);
  const tmp = `${dir}/.${name}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  try {
    writeFileSync(tmp, readFileSync(EMBEDDED_LIBRARY_PATH), { mode: 0o555, flag: "wx" });
    renameSync(tmp, path);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      // already gone
    }
    throw new ExmError(`cannot write the library to ${path}: ${(e as Error).message}`);
  }
}

const TEMP_MAX_AGE_MS = 10 * 60 * 1000;

/**
 * Removes other library versions (and stale temporary files) from every
 * cache location that passes the checks. Returns one line per removed file
 * or skipped location.
 */
/**
 * Files of the cache mapped by a running process, with one pid and its name
 * for each (/proc/PID/maps of the processes we may read). A library still
 * mapped is in use: its program's children that exec would preload it by path.
 */
export function mappedLibraries(dirs: string[]): Map<string, string> {
  const inUse = new Map<string, string>();
  let pids: string[] = [];
  try {
    pids = readdirSync("/proc").filter((n) => /^\d+$/.test(n));
  } catch {
    return inUse;
  }
  for (const pid of pids) {
    let maps: string;
    try {
      maps = readFileSync(`/proc/${pid}/maps`, "latin1");
    } catch {
      continue; // gone, or not ours to read
    }
    for (const dir of dirs) {
      let at = maps.indexOf(` ${dir}/libexm-`);
      while (at >= 0) {
        const end = maps.indexOf("\n", at);
        const path = maps.slice(at + 1, end < 0 ? undefined : end).replace(/ \(deleted\)$/, "");
        if (!inUse.has(path)) {
          let comm = "?";
          try {
            comm = readFileSync(`/proc/${pid}/comm`, "utf8").trim();
          } catch {
            // ended meanwhile
          }
          inUse.set(path, `pid ${pid} (${comm})`);
        }
        at = maps.indexOf(` ${dir}/libexm-`, at + 1);
      }
    }
  }
  return inUse;
}

export function pruneCache(env: Env, uid: number): string[] {
  const report: string[] = [];
  const current = cachedName();
  const inUse = mappedLibraries(cacheCandidates(env, uid).map((c) => c.dir));
  for (const c of cacheCandidates(env, uid)) {
    const st = lstatOrNull(c.dir);
    if (!st) continue;
    const problem = cacheDirProblem(st, uid);
    if (problem) {
      report.push(`skipped ${c.dir}: it ${problem}`);
      continue;
    }
    for (const name of readdirSync(c.dir)) {
      const path = `${c.dir}/${name}`;
      const old = /^libexm-[0-9a-f]+\.so$/.test(name) && name !== current;
      let stale = false;
      if (/^\.libexm-.*\.tmp$/.test(name)) {
        const age = Date.now() - (lstatOrNull(path)?.mtimeMs ?? Date.now());
        stale = age > TEMP_MAX_AGE_MS;
      }
      if (!old && !stale) continue;
      const user = old ? inUse.get(path) : undefined;
      if (user) {
        report.push(`kept ${path}: in use by ${user}`);
        continue;
      }
      try {
        unlinkSync(path);
        report.push(`removed ${path}`);
      } catch (e) {
        throw new ExmError(`cannot remove ${path}: ${(e as Error).message}`);
      }
    }
  }
  return report;
}
