/*
 * api.ts: exm for Bun programs: file-backed ArrayBuffers and the allocator's
 * settings, over the FFI table of ffi.ts.
 *
 * Bun allocates its ArrayBuffers itself, not through glibc malloc, so running
 * `exm bun app.ts` moves none of a program's arrays to disk; these functions
 * are how a Bun program gets arrays larger than RAM:
 *
 *   import { float64Array, free } from "exm";
 *   const a = float64Array(256 * 2 ** 20);   // 2 GiB, in a file, reads as zeros
 *   ...
 *   free(a);                                 // or drop it: the GC frees it
 *
 * How a buffer lives and dies. alloc() asks exm_alloc for a block of the
 * process's arena and wraps it with bun:ffi's toArrayBuffer, passing
 * exm_free's C address as the deallocator: JavaScriptCore calls it when the
 * buffer and every view of it are unreachable and collected. free() detaches
 * the buffer (`transfer(0)`), which makes JavaScriptCore run that same
 * deallocator at once, so the block is freed exactly once either way, and
 * every view of the freed buffer reads as length 0 afterwards instead of
 * touching freed memory. A second free() is a plain exception; it never
 * reaches exm_free (which aborts the process on a bad pointer).
 *
 * Conventions. Sizes and counters are returned as numbers (exact up to 2^53:
 * 8 PiB, or 104 days of nanoseconds). Sizes given to setters may be numbers,
 * bigints or strings such as "512M" (as on the command line). A bad argument
 * throws RangeError or TypeError before anything is allocated; a failure of
 * the library throws Error naming the call and the cause. The library is
 * loaded on the first call, not at import (see locate.ts for which one).
 */

import { ptr, toArrayBuffer, type Pointer } from "bun:ffi";
import { statfsSync } from "node:fs";
import { constants as osConstants } from "node:os";
import { resolve } from "node:path";
import { ExmError } from "../errors";
import { strerror } from "../libc";
import { ADVICES, CHILD_MODES, formatSize, parseSize, type Advice, type ChildMode } from "../options";
import {
  BLOCK_INFO, EXM_ADVICE_AUTO, EXM_CHILD_COW, HEADER_VERSION, openExm, STATS_FIELDS, STATS_SIZEOF, symbolAddress,
  type ExmLibrary, type ExmSymbols,
} from "./ffi";
import { cachedLibrary, libraryCandidates, type LibraryCandidate, type LibrarySource } from "./locate";

/**
 * The largest ArrayBuffer JavaScriptCore accepts (Bun 1.4: 4 GiB, whether it
 * allocates the memory or wraps ours). Larger data take several buffers.
 */
export const MAX_BUFFER_BYTES = 2 ** 32;

/* ---- the loaded library --------------------------------------------------- */

interface Loaded {
  lib: ExmLibrary;
  sym: ExmSymbols;
  path: string;
  source: LibrarySource;
  version: string;
  /** exm_free's address: the deallocator of every buffer alloc() returns. */
  freeAddress: Pointer;
}

let loaded: Loaded | undefined;

function majorMinor(version: string): string {
  return version.split(".").slice(0, 2).join(".");
}

/** Opens one candidate; throws when it cannot be used. */
function open(c: LibraryCandidate): Loaded {
  const lib = openExm(c.path);
  const version = String(lib.symbols.exm_version());
  if (majorMinor(version) !== majorMinor(HEADER_VERSION)) {
    if (c.source !== "loaded") lib.close();
    throw new Error(
      `exm: ${c.path} is libexm ${version}, but this package speaks libexm ${HEADER_VERSION}` +
        (c.source === "loaded" ? " (the process runs under another exm version: use the matching one)" : ""),
    );
  }
  return { lib, sym: lib.symbols, path: c.path, source: c.source, version, freeAddress: symbolAddress(lib.symbols.exm_free) };
}

function exm(): Loaded {
  if (loaded) return loaded;
  const failed: string[] = [];
  for (const c of libraryCandidates()) {
    try {
      return (loaded = open(c));
    } catch (e) {
      // A loaded library of the wrong version must not be joined by a second allocator.
      if (c.source === "loaded") throw e;
      failed.push(`${c.path}: ${(e as Error).message}`);
    }
  }
  try {
    return (loaded = open(cachedLibrary()));
  } catch (e) {
    failed.push(`embedded library: ${(e as Error).message}`);
  }
  throw new Error(`exm: cannot load libexm (${failed.join("; ")}); build the package (npm run build) or run under exm`);
}

export interface LibraryInfo {
  /** File the library was loaded from. */
  path: string;
  /** Why that one: already loaded in the process (under exm), named in LD_PRELOAD, the package's build, or the cache. */
  source: LibrarySource;
  /** exm_version(). */
  version: string;
}

/** Which libexm the API uses (loading it if not done yet). */
export function library(): LibraryInfo {
  const { path, source, version } = exm();
  return { path, source, version };
}

/** The library's version, "MAJOR.MINOR.PATCH". */
export function version(): string {
  return exm().version;
}

/* ---- errors and arguments ------------------------------------------------------ */

const ERRNO_NAMES = new Map<number, string>(Object.entries(osConstants.errno).map(([name, code]) => [code, name]));

function describeErrno(code: number): string {
  return `${strerror(code)} (${ERRNO_NAMES.get(code) ?? `errno ${code}`})`;
}

/** Thrown when the arena cannot serve an allocation (disk full, disk cap, unusable directory). */
export class ExmAllocError extends Error {
  readonly code = "ENOMEM";
  /** Bytes asked for. */
  readonly bytes: number;
  /** Data directory of the arena. */
  readonly dir: string;

  constructor(message: string, bytes: number, dir: string) {
    super(message);
    this.name = "ExmAllocError";
    this.bytes = bytes;
    this.dir = dir;
  }
}

/** A value from the user: a number, bigint or size string, as a size_t. */
export type SizeInput = number | bigint | string;

const SIZE_MAX = (1n << 64n) - 1n;

function toSize(value: SizeInput, what: string): bigint {
  if (typeof value === "string") {
    try {
      return parseSize(value, what);
    } catch (e) {
      if (e instanceof ExmError) throw new RangeError(e.message);
      throw e;
    }
  }
  if (typeof value === "bigint") {
    if (value < 0n || value > SIZE_MAX) throw new RangeError(`${what}: ${value} is not a size (0 to 2^64-1 bytes)`);
    return value;
  }
  if (typeof value !== "number") throw new TypeError(`${what}: expected a size (number, bigint or string like "512M"), got ${typeof value}`);
  checkCount(value, what, "bytes");
  return BigInt(value);
}

/** Throws unless n is a whole, non-negative, safe number. */
function checkCount(n: unknown, what: string, unit: string): asserts n is number {
  if (typeof n !== "number") throw new TypeError(`${what}: expected a number of ${unit}, got ${typeof n}`);
  if (Number.isNaN(n)) throw new RangeError(`${what}: the number of ${unit} is NaN`);
  if (n < 0) throw new RangeError(`${what}: the number of ${unit} must not be negative, got ${n}`);
  if (!Number.isInteger(n)) throw new RangeError(`${what}: the number of ${unit} must be a whole number, got ${n}`);
  if (n > Number.MAX_SAFE_INTEGER) throw new RangeError(`${what}: ${n} ${unit} is not a usable size`);
}

function checkBufferBytes(bytes: number, what: string, detail = ""): void {
  if (bytes > MAX_BUFFER_BYTES) {
    throw new RangeError(
      `${what}: ${formatSize(bytes)}${detail} is more than one ArrayBuffer can hold ` +
        `(${formatSize(MAX_BUFFER_BYTES)}, JavaScriptCore's limit); use several buffers`,
    );
  }
}

/** size_t from C as a number (approximate only past 2^53). */
function num(v: bigint | number): number {
  return Number(v);
}

function enumCode<T extends string>(names: readonly T[], value: unknown, what: string): number {
  const i = names.indexOf(value as T);
  if (i < 0) throw new RangeError(`${what}: expected one of ${names.join(", ")}, got ${JSON.stringify(value)}`);
  return i;
}

/* ---- settings ---------------------------------------------------------------- */

/** exm.h's EXM_THRESHOLD_AUTO: --threshold auto (SIZE_MAX is "nothing to the file"). */
const THRESHOLD_AUTO = SIZE_MAX - 1n;

/**
 * Allocations of at least this many bytes through glibc malloc go to the arena (under exm; 0: all);
 * "auto" under `--threshold auto` (the default size, served from RAM while the budget lasts).
 */
export function getThreshold(): number | "auto" {
  const t = BigInt(exm().sym.exm_get_threshold());
  return t === THRESHOLD_AUTO ? "auto" : num(t);
}

/** A size, or "auto" (any case) for the budget mode of `--threshold auto`. */
export function setThreshold(bytes: SizeInput | "auto"): void {
  const auto = typeof bytes === "string" && bytes.trim().toLowerCase() === "auto";
  const n = auto ? THRESHOLD_AUTO : toSize(bytes, "exm.setThreshold");
  if (n === THRESHOLD_AUTO && !auto) throw new RangeError(`exm.setThreshold: ${n} is reserved for "auto"; say "auto"`);
  exm().sym.exm_set_threshold(n);
}

/** Directory the arena's (unlinked) backing file is created in. */
export function getDataDir(): string {
  const buf = new Uint8Array(4096);
  const err = exm().sym.exm_get_dir(ptr(buf), buf.length);
  if (err) throw new Error(`exm.getDataDir: ${describeErrno(err)}`);
  return new TextDecoder().decode(buf.subarray(0, buf.indexOf(0)));
}

/**
 * Sets the data directory (made absolute here). It applies to an arena not
 * created yet: a process has one arena, created at its first file-backed
 * allocation, so set it before the first alloc().
 */
export function setDataDir(path: string): void {
  if (typeof path !== "string" || path === "") throw new TypeError("exm.setDataDir: expected a directory path");
  const abs = resolve(path);
  const cPath = Buffer.from(`${abs}\0`);
  if (cPath.indexOf(0) !== cPath.length - 1) throw new TypeError("exm.setDataDir: the path contains a NUL byte");
  const err = exm().sym.exm_set_dir(ptr(cPath));
  if (err) throw new Error(`exm.setDataDir: cannot use ${abs} for backing files: ${describeErrno(err)}`);
}

/** What a forked child sees of this process's file-backed blocks. */
export function getChildMode(): ChildMode {
  const code = exm().sym.exm_get_child_mode();
  return CHILD_MODES[code] ?? CHILD_MODES[EXM_CHILD_COW]!;
}

export function setChildMode(mode: ChildMode): void {
  const err = exm().sym.exm_set_child_mode(enumCode(CHILD_MODES, mode, "exm.setChildMode"));
  if (err) throw new Error(`exm.setChildMode: ${describeErrno(err)}`);
}

/** The madvise advice new arena blocks get. */
export function getAdvice(): Advice {
  const code = exm().sym.exm_get_advice();
  return ADVICES[code] ?? ADVICES[EXM_ADVICE_AUTO]!;
}

export function setAdvice(advice: Advice): void {
  const err = exm().sym.exm_set_advice(enumCode(ADVICES, advice, "exm.setAdvice"));
  if (err) throw new Error(`exm.setAdvice: ${describeErrno(err)}`);
}

/** Cap on the disk this process's arena reserves (0: no cap). */
export function getMaxDisk(): number {
  return num(exm().sym.exm_get_max_disk());
}

export function setMaxDisk(bytes: SizeInput): void {
  const err = exm().sym.exm_set_max_disk(toSize(bytes, "exm.setMaxDisk"));
  if (err) throw new Error(`exm.setMaxDisk: ${describeErrno(err)}`);
}

/* ---- statistics and checks ----------------------------------------------------- */

/** exm_stats_t, in camelCase, as numbers. */
export interface ExmStats {
  /** Usable bytes of live arena blocks. */
  liveBytes: number;
  peakLiveBytes: number;
  liveBlocks: number;
  /** Arena allocations served. */
  totalAllocs: number;
  totalFrees: number;
  /** Bytes fallocated and not yet given back. */
  diskReserved: number;
  peakDiskReserved: number;
  /** Bytes given back to the filesystem. */
  bytesPunched: number;
  /** Bytes of the arena carved so far (its high-water mark). */
  arenaSize: number;
  /** Below-threshold malloc requests served by the arena after glibc failed. */
  fallbacks: number;
  /** Arena requests that failed (ENOMEM). */
  failures: number;
  /** Forks seen by this process. */
  forks: number;
  /** Nanoseconds spent inside the arena allocator. */
  allocNs: number;
  /** --threshold auto: bytes served from RAM by the budget. */
  ramBudgetBytes: number;
}

const camel = (s: string) => s.replace(/_(\w)/g, (_, c: string) => c.toUpperCase());

/** The arena's statistics now (all zeros before the first allocation). */
export function stats(): ExmStats {
  const raw = new BigUint64Array(STATS_SIZEOF / 8);
  const err = exm().sym.exm_get_stats(ptr(raw));
  if (err) throw new Error(`exm.stats: ${describeErrno(err)}`);
  const out: Record<string, number> = {};
  STATS_FIELDS.forEach((name, i) => {
    out[camel(name)] = Number(raw[i]!);
  });
  return out as unknown as ExmStats;
}

/** Walks every structure of the allocator; throws if any is inconsistent (details on stderr). */
export function check(): void {
  const err = exm().sym.exm_check();
  if (err) throw new Error(`exm.check: the file-backed arena is inconsistent (${describeErrno(err)}; details on stderr)`);
}

/* ---- file-backed buffers ---------------------------------------------------------- */

/**
 * toArrayBuffer's five-argument form (Bun has it; its types omit it): the
 * buffer calls deallocator(bytes, context) when JavaScriptCore releases it.
 */
const toArrayBufferWithDeallocator = toArrayBuffer as unknown as (
  address: Pointer,
  byteOffset: number,
  byteLength: number,
  context: Pointer | null,
  deallocator: Pointer,
) => ArrayBuffer;

/**
 * Full collections alloc() runs before it gives up: buffers nobody can reach
 * any more may be what fills the disk or the cap, and JavaScriptCore frees
 * them only when it collects.
 */
const GC_RETRIES = 2;

/** Buffers made by alloc() and not freed: what free() accepts. */
const ours = new WeakSet<ArrayBuffer>();

export interface AllocOptions {
  /** madvise for this block (default: the current setting, see setAdvice). */
  advice?: Advice;
}

/** A buffer, or a typed array or DataView on one. */
export type BufferLike =
  | ArrayBuffer | DataView | Int8Array | Uint8Array | Uint8ClampedArray | Int16Array | Uint16Array | Int32Array
  | Uint32Array | Float32Array | Float64Array | BigInt64Array | BigUint64Array;

function bufferOf(target: BufferLike, what: string): ArrayBuffer {
  const b = ArrayBuffer.isView(target) ? target.buffer : target;
  if (!(b instanceof ArrayBuffer)) throw new TypeError(`${what}: expected an ArrayBuffer or a view of one`);
  return b;
}

function freedError(what: string): Error {
  return new Error(`${what}: the buffer was freed (or transferred away); it holds no memory any more`);
}

function allocError(bytes: number): ExmAllocError {
  const dir = getDataDir();
  const cap = getMaxDisk();
  const s = stats();
  let why: string;
  let avail = Infinity;
  try {
    const fs = statfsSync(dir);
    avail = fs.bavail * fs.bsize;
  } catch {
    // unreadable: the library's own stderr line says why
  }
  if (cap > 0 && s.diskReserved + bytes > cap) {
    why = `it would pass the disk cap (max-disk ${formatSize(cap)}; ${formatSize(s.diskReserved)} reserved already)`;
  } else if (avail < bytes) {
    why = `the disk is full (only ${formatSize(avail)} free)`;
  } else {
    why = "the arena cannot serve it (data directory unusable? see the exm line on stderr)";
  }
  return new ExmAllocError(`exm.alloc: cannot allocate ${formatSize(bytes)} of file-backed memory in ${dir}: ${why}`, bytes, dir);
}

/**
 * An ArrayBuffer of `bytes` bytes, reading as zeros, in the process's
 * file-backed arena (whatever the threshold). It is freed by free() or by the
 * garbage collector once it and its views are unreachable. At most
 * MAX_BUFFER_BYTES; a zero-length request gives an ordinary empty buffer.
 * When the arena cannot serve it, a full collection runs first (dropped
 * buffers give their disk back) before ExmAllocError is thrown.
 */
export function alloc(bytes: number, options: AllocOptions = {}): ArrayBuffer {
  checkCount(bytes, "exm.alloc", "bytes");
  checkBufferBytes(bytes, "exm.alloc");
  const advice = options.advice === undefined ? undefined : enumCode(ADVICES, options.advice, "exm.alloc: advice");
  const { sym, freeAddress } = exm();
  let buffer: ArrayBuffer;
  if (bytes === 0) {
    buffer = new ArrayBuffer(0); // toArrayBuffer refuses an empty range
  } else {
    let result = sym.exm_alloc(bytes);
    // Unreachable buffers hold disk until the collector runs: collect, then try again.
    for (let round = 0; result === null && round < GC_RETRIES; round++) {
      Bun.gc(true);
      result = sym.exm_alloc(bytes);
    }
    if (result === null) throw allocError(bytes);
    const address = (typeof result === "bigint" ? Number(result) : result) as Pointer;
    try {
      buffer = toArrayBufferWithDeallocator(address, 0, bytes, null, freeAddress);
    } catch (e) {
      sym.exm_free(address);
      throw e;
    }
    if (advice !== undefined) {
      const err = sym.exm_advise(address, advice);
      if (err) {
        buffer.transfer(0);
        throw new Error(`exm.alloc: madvise(${options.advice}) failed: ${describeErrno(err)}`);
      }
    }
  }
  ours.add(buffer);
  return buffer;
}

/**
 * Frees a buffer from alloc() now (given it or any view of it), instead of
 * when the garbage collector finds it. The buffer is detached: it and its
 * views read as length 0 from then on. Freeing twice throws.
 */
export function free(target: BufferLike): void {
  const buffer = bufferOf(target, "exm.free");
  if (buffer.detached) throw freedError("exm.free");
  if (!ours.has(buffer)) {
    throw new TypeError("exm.free: not a buffer from exm.alloc (a buffer moved out with .transfer() is freed by the garbage collector)");
  }
  // Detaching releases the contents at once: their deallocator is exm_free.
  try {
    buffer.transfer(0);
  } catch (e) {
    throw new Error(`exm.free: cannot detach the buffer: ${(e as Error).message}`);
  }
  ours.delete(buffer);
}

/** The address of a view's first byte (or a buffer's), or null when it is empty. */
function addressOf(target: BufferLike, what: string): Pointer | null {
  const buffer = bufferOf(target, what);
  if (buffer.detached) throw freedError(what);
  const length = ArrayBuffer.isView(target) ? target.byteLength : buffer.byteLength;
  return length === 0 ? null : ptr(target);
}

/** True when the buffer's (or view's) memory is in the file-backed arena. */
export function isFileBacked(target: BufferLike): boolean {
  const address = addressOf(target, "exm.isFileBacked");
  return address !== null && exm().sym.exm_is_file_backed(address) === 1;
}

/** Where an arena block lives (exm_block_info_t). */
export interface BlockInfo {
  /** /proc/self/fd/N: opens the (unlinked) backing file, from this process. */
  path: string;
  /** Descriptor of the backing file (owned by exm: do not close it). */
  fd: number;
  /** Offset of the block in the backing file. */
  offset: number;
  /** Usable size of the block (at least what was asked for). */
  size: number;
  /** Address of the block's first byte. */
  base: number;
}

/**
 * The arena block holding a buffer (or a view's first byte): its backing
 * file and offset. null when the memory is not file-backed (an ordinary
 * buffer, or an empty one).
 */
export function lookup(target: BufferLike): BlockInfo | null {
  const address = addressOf(target, "exm.lookup");
  if (address === null) return null;
  const raw = new Uint8Array(BLOCK_INFO.sizeof);
  const err = exm().sym.exm_lookup(address, ptr(raw));
  if (err === osConstants.errno.ENOENT) return null;
  if (err) throw new Error(`exm.lookup: ${describeErrno(err)}`);
  const view = new DataView(raw.buffer);
  const pathBytes = raw.subarray(BLOCK_INFO.path, BLOCK_INFO.path + BLOCK_INFO.pathLength);
  const end = pathBytes.indexOf(0);
  return {
    path: new TextDecoder().decode(end < 0 ? pathBytes : pathBytes.subarray(0, end)),
    fd: view.getInt32(BLOCK_INFO.fd, true),
    offset: num(view.getBigUint64(BLOCK_INFO.offset, true)),
    size: num(view.getBigUint64(BLOCK_INFO.size, true)),
    base: num(view.getBigUint64(BLOCK_INFO.base, true)),
  };
}

/**
 * madvise the whole arena block holding a buffer: "sequential" before a
 * pass over it, "random" before scattered reads, "normal" or "auto" for the
 * kernel's default read-around.
 */
export function advise(target: BufferLike, advice: Advice): void {
  const code = enumCode(ADVICES, advice, "exm.advise");
  const address = addressOf(target, "exm.advise");
  const err = address === null ? osConstants.errno.ENOENT : exm().sym.exm_advise(address, code);
  if (err === osConstants.errno.ENOENT) throw new TypeError("exm.advise: not a file-backed buffer (use exm.alloc)");
  if (err) throw new Error(`exm.advise: madvise(${advice}) failed: ${describeErrno(err)}`);
}

/* ---- typed arrays ------------------------------------------------------------------ */

/** A typed-array class (Float64Array, Int32Array, ...). */
export interface TypedArrayClass<T> {
  new (buffer: ArrayBuffer): T;
  readonly BYTES_PER_ELEMENT: number;
  readonly name: string;
}

/** A typed array of `length` elements (zeros) over a buffer from alloc(). */
export function typed<T>(type: TypedArrayClass<T>, length: number, options?: AllocOptions): T {
  const what = `exm.typed(${type.name})`;
  checkCount(length, what, "elements");
  const bytes = length * type.BYTES_PER_ELEMENT;
  checkBufferBytes(bytes, what, ` (${length} elements)`);
  return new type(alloc(bytes, options));
}

export const float64Array = (length: number, options?: AllocOptions) => typed(Float64Array, length, options);
export const float32Array = (length: number, options?: AllocOptions) => typed(Float32Array, length, options);
export const int8Array = (length: number, options?: AllocOptions) => typed(Int8Array, length, options);
export const uint8Array = (length: number, options?: AllocOptions) => typed(Uint8Array, length, options);
export const int16Array = (length: number, options?: AllocOptions) => typed(Int16Array, length, options);
export const uint16Array = (length: number, options?: AllocOptions) => typed(Uint16Array, length, options);
export const int32Array = (length: number, options?: AllocOptions) => typed(Int32Array, length, options);
export const uint32Array = (length: number, options?: AllocOptions) => typed(Uint32Array, length, options);
export const bigInt64Array = (length: number, options?: AllocOptions) => typed(BigInt64Array, length, options);
export const bigUint64Array = (length: number, options?: AllocOptions) => typed(BigUint64Array, length, options);
