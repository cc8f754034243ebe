// exm's package entry: re-exports only: the option table and size parser, and the Bun API
// (settings, statistics and file-backed ArrayBuffers over bun:ffi). What the launcher
// does with the table (resolving flags and variables, --help, the README's table) is not
// package API and stays in src/.
export { ADVICES, CHILD_MODES, formatSize, OPTIONS, parseSize } from "./src/options";
export type { Advice, ChildMode, OptionSpec } from "./src/options";
export {
  advise, alloc, bigInt64Array, bigUint64Array, check, ExmAllocError, float32Array, float64Array, free, getAdvice,
  getChildMode, getDataDir, getMaxDisk, getThreshold, int16Array, int32Array, int8Array, isFileBacked, library, lookup,
  MAX_BUFFER_BYTES, setAdvice, setChildMode, setDataDir, setMaxDisk, setThreshold, stats, typed, uint16Array,
  uint32Array, uint8Array, version,
} from "./src/bun/api";
export type {
  AllocOptions, BlockInfo, BufferLike, ExmStats, LibraryInfo, SizeInput, TypedArrayClass,
} from "./src/bun/api";
