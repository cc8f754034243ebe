/*
 * library.ts: the library and header embedded in the executable.
 *
 * build.ts compiles native/ into build/libexm.so and writes build/libexm.json
 * (its SHA-256, size and version) before bundling, so the hash that names the
 * cached copy is known without reading or hashing the embedded bytes at every
 * start. Under `bun build --compile` the imported paths point into the
 * executable ($bunfs); run from source they are the files in build/.
 */

import libraryPath from "../build/libexm.so" with { type: "file" };
import headerPath from "../build/exm.h" with { type: "file" };
import manifest from "../build/libexm.json" with { type: "json" };

export interface LibraryManifest {
  /** Lowercase hex SHA-256 of libexm.so. */
  sha256: string;
  size: number;
  /** Version from exm.h's EXM_VERSION_* macros (what exm_version() returns). */
  version: string;
  /** The machine it was built for (build.ts TARGETS: linux-x64, linux-arm64). */
  target: string;
  /** The newest glibc symbol version it needs, e.g. "2.17": it loads on that glibc and later. */
  glibc: string;
}

export const LIBRARY: LibraryManifest = manifest;

/** Path of the embedded libexm.so (readable with node:fs, not loadable). */
export const EMBEDDED_LIBRARY_PATH: string = libraryPath;
export const EMBEDDED_HEADER_PATH: string = headerPath;

/** File name of this library version in the cache. */
export function cachedName(): string {
  return `libexm-${LIBRARY.sha256.slice(0, 20)}.so`;
}
