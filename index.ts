// exm's package entry: re-exports only. The Bun API (file-backed ArrayBuffers
// over bun:ffi) will be exported from here too.
export {
  ADVICES, CHILD_MODES, formatSize, OPTIONS, parseSize, renderOptionsMarkdown, resolveSettings, settingsEnv,
} from "./src/options";
export type { Advice, ChildMode, OptionSpec, Settings } from "./src/options";
