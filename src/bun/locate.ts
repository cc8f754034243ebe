/*
 * locate.ts: which libexm.so a Bun program's API calls go to.
 *
 * Always the one the launcher would use, so that one process never holds two
 * allocators with two sets of settings:
 *  1. a libexm already mapped into this process: under `exm bun app.ts` that
 *     is the preloaded copy, and dlopen of a loaded library returns the same
 *     handle, so the API reads and sets the very allocator serving malloc;
 *  2. a libexm named in LD_PRELOAD (loaded on purpose by the user; normally
 *     already case 1);
 *  3. the package's own build: build/libexm.so, then dist/libexm.so;
 *  4. the library embedded in the package, taken out into the checked
 *     per-user cache as the launcher does (what a program compiled with
 *     `bun build --compile` that imports exm ends up using).
 * A candidate that fails to load is skipped; the error lists every reason.
 */

import { existsSync, readFileSync } from "node:fs";
import { basename, resolve } from "node:path";

export type LibrarySource = "loaded" | "LD_PRELOAD" | "package" | "cache";

export interface LibraryCandidate {
  path: string;
  source: LibrarySource;
}

const LIBEXM = /^libexm[^/]*\.so$/;

/** Paths of libexm files mapped into this process, in /proc/self/maps order. */
export function mappedLibraries(): string[] {
  let maps: string;
  try {
    maps = readFileSync("/proc/self/maps", "utf8");
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const line of maps.split("\n")) {
    // address perms offset dev inode path (the path may contain spaces)
    const m = /^\S+\s+\S+\s+\S+\s+\S+\s+\d+\s+(\/.*)$/.exec(line);
    if (!m) continue;
    const path = m[1]!;
    if (LIBEXM.test(basename(path)) && !out.includes(path)) out.push(path);
  }
  return out;
}

/** The package root (two levels up from src/bun/), on disk when run from source. */
const PACKAGE_ROOT = resolve(import.meta.dir, "..", "..");

/** Candidates 1-3 in order; the embedded copy (4) is the caller's last resort. */
export function libraryCandidates(env: Record<string, string | undefined> = process.env): LibraryCandidate[] {
  const out: LibraryCandidate[] = [];
  const add = (path: string, source: LibrarySource) => {
    if (!out.some((c) => c.path === path)) out.push({ path, source });
  };
  for (const path of mappedLibraries()) add(path, "loaded");
  for (const entry of (env["LD_PRELOAD"] ?? "").split(/[\s:]+/)) {
    if (entry.startsWith("/") && LIBEXM.test(basename(entry)) && existsSync(entry)) add(entry, "LD_PRELOAD");
  }
  for (const rel of ["build/libexm.so", "dist/libexm.so"]) {
    const path = resolve(PACKAGE_ROOT, rel);
    if (existsSync(path)) add(path, "package");
  }
  return out;
}

/** Type of src/cache.ts's installLibrary, the only part of it used here. */
type InstallLibrary = (
  env: Record<string, string | undefined>,
  uid: number,
  warn: (line: string) => void,
) => { path: string };

/**
 * Writes (or finds, verified) the embedded library in the per-user cache and
 * returns its path. Loaded on demand: embed/ imports the build's outputs,
 * which only this last resort needs; `require` keeps the call synchronous
 * and lets `bun build --compile` embed the library into a program using exm.
 */
export function cachedLibrary(): LibraryCandidate {
  const { installLibrary } = require("../cache") as { installLibrary: InstallLibrary };
  const uid = process.getuid?.() ?? 0;
  const { path } = installLibrary(process.env, uid, (line) => process.stderr.write(`exm: ${line}\n`));
  return { path, source: "cache" };
}
