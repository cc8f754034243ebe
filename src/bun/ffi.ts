/*
 * ffi.ts: the one bun:ffi table of libexm, mirroring native/exm.h one to one:
 * the same functions in the same order with the same names, the enums'
 * values, and the layouts of the two structs the functions fill in.
 *
 * Nothing here interprets a result: functions returning int return 0 or an
 * errno value, size_t comes back as a bigint, pointers as numbers or null,
 * exactly as C has them. api.ts turns that into JavaScript (exceptions,
 * numbers, objects). When exm.h changes, this file changes with it, and
 * tests/bun-api.test.ts compiles a C program that checks the struct layouts
 * below against the header.
 */

import { dlopen, FFIType, type Pointer } from "bun:ffi";

const { cstring, i32, u64, ptr, void: none } = FFIType;

/** EXM_VERSION_MAJOR.MINOR.PATCH of the exm.h this table mirrors. */
export const HEADER_VERSION = "0.1.0";

/* ---- enums -------------------------------------------------------------- */

export const EXM_CHILD_COW = 0;
export const EXM_CHILD_SHARED = 1;
export const EXM_CHILD_DUPLICATE = 2;

export const EXM_ADVICE_AUTO = 0;
export const EXM_ADVICE_NORMAL = 1;
export const EXM_ADVICE_SEQUENTIAL = 2;
export const EXM_ADVICE_RANDOM = 3;

/* ---- functions ------------------------------------------------------------ */

export const EXM_SYMBOLS = {
  // Version
  exm_version: { args: [], returns: cstring },
  // Settings
  exm_parse_size: { args: [ptr, ptr], returns: i32 },
  exm_get_threshold: { args: [], returns: u64 },
  exm_set_threshold: { args: [u64], returns: i32 },
  exm_get_dir: { args: [ptr, u64], returns: i32 },
  exm_set_dir: { args: [ptr], returns: i32 },
  exm_get_child_mode: { args: [], returns: i32 },
  exm_set_child_mode: { args: [i32], returns: i32 },
  exm_get_advice: { args: [], returns: i32 },
  exm_set_advice: { args: [i32], returns: i32 },
  exm_get_max_disk: { args: [], returns: u64 },
  exm_set_max_disk: { args: [u64], returns: i32 },
  // Explicit file-backed allocation
  exm_alloc: { args: [u64], returns: ptr },
  exm_free: { args: [ptr], returns: none },
  // Lookup
  exm_is_file_backed: { args: [ptr], returns: i32 },
  exm_lookup: { args: [ptr, ptr], returns: i32 },
  exm_advise: { args: [ptr, i32], returns: i32 },
  // Statistics and checks
  exm_get_stats: { args: [ptr], returns: i32 },
  exm_check: { args: [], returns: i32 },
} as const;

export function openExm(path: string) {
  return dlopen(path, EXM_SYMBOLS);
}

export type ExmLibrary = ReturnType<typeof openExm>;
export type ExmSymbols = ExmLibrary["symbols"];

/**
 * The C address of a symbol of the table (what a C function pointer to it
 * holds). Bun puts it on each function as `ptr`, which its types omit.
 */
export function symbolAddress(fn: ExmSymbols[keyof ExmSymbols]): Pointer {
  const address = (fn as unknown as { ptr?: unknown }).ptr;
  if (typeof address !== "number" || address === 0) throw new Error("bun:ffi gave no address for a libexm function");
  return address as Pointer;
}

/* ---- structs (x86-64 and arm64 Linux: LP64) ------------------------------- */

/** exm_block_info_t: byte offsets of its fields, and its size. */
export const BLOCK_INFO = {
  base: 0,      // void *
  size: 8,      // size_t
  offset: 16,   // size_t
  fd: 24,       // int
  path: 28,     // char[256]
  pathLength: 256,
  sizeof: 288,
} as const;

/** exm_stats_t: its uint64_t fields in declaration order. */
export const STATS_FIELDS = [
  "live_bytes",
  "peak_live_bytes",
  "live_blocks",
  "total_allocs",
  "total_frees",
  "disk_reserved",
  "peak_disk_reserved",
  "bytes_punched",
  "arena_size",
  "fallbacks",
  "failures",
  "forks",
  "alloc_ns",
  "ram_budget_bytes",
] as const;

export const STATS_SIZEOF = STATS_FIELDS.length * 8;
