/*
 * program.ts: finding the program as execvp(3) would, and telling whether the
 * loader will honour LD_PRELOAD for it, and whether the kernel has what the
 * library needs (unserved(), kernelGaps()).
 *
 * Paths are byte strings (Buffers) throughout: a program name need not be
 * UTF-8. A name containing `/` is used as is; otherwise each PATH entry is
 * tried in order (an empty entry is the current directory), a candidate that
 * exists but cannot be executed is remembered, and the search goes on, so
 * the result is 127 only when nothing by that name exists and 126 when
 * something does but cannot be run.
 */

import { accessSync, closeSync, constants, existsSync, openSync, readSync, statSync, type Stats } from "node:fs";
import { hasXattr } from "./libc";
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

/** What the loader sees of an executable. */
export interface ElfInfo {
  kind: LinkKind;
  /** ELF e_machine (62 x86-64, 183 AArch64, 3 i386, 40 ARM...). */
  machine?: number;
  is64?: boolean;
  /** The PT_INTERP path: the loader the kernel starts for it. */
  interp?: string;
}

/**
 * Reads the ELF header and program headers: "static" for an executable
 * without PT_INTERP (the loader, and so LD_PRELOAD, never runs), "dynamic"
 * with one, "other" for scripts and anything unreadable (their interpreter
 * decides).
 */
export function elfInfo(path: Buffer): ElfInfo {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch {
    return { kind: "other" };
  }
  try {
    const head = Buffer.alloc(64);
    const n = readSync(fd, head, 0, head.length, 0);
    if (n < 52 || head.readUInt32BE(0) !== 0x7f454c46) return { kind: "other" };
    const is64 = head[4] === 2;
    const le = head[5] === 1;
    const u16 = (b: Buffer, o: number) => (le ? b.readUInt16LE(o) : b.readUInt16BE(o));
    const u32 = (b: Buffer, o: number) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
    const u64 = (b: Buffer, o: number) => Number(le ? b.readBigUInt64LE(o) : b.readBigUInt64BE(o));
    const machine = u16(head, 18);
    const phoff = is64 ? u64(head, 32) : u32(head, 28);
    const phentsize = is64 ? u16(head, 54) : u16(head, 42);
    const phnum = is64 ? u16(head, 56) : u16(head, 44);
    const table = Buffer.alloc(phentsize * phnum);
    if (readSync(fd, table, 0, table.length, phoff) !== table.length) return { kind: "other" };
    for (let i = 0; i < phnum; i++) {
      const e = i * phentsize;
      if (u32(table, e) !== 3 /* PT_INTERP */) continue;
      const off = is64 ? u64(table, e + 8) : u32(table, e + 4);
      const size = Math.min(is64 ? u64(table, e + 32) : u32(table, e + 16), 4096);
      const name = Buffer.alloc(size);
      const got = readSync(fd, name, 0, size, off);
      const nul = name.indexOf(0);
      return { kind: "dynamic", machine, is64, interp: name.subarray(0, nul >= 0 ? Math.min(nul, got) : got).toString("latin1") };
    }
    return { kind: "static", machine, is64 };
  } catch {
    return { kind: "other" };
  } finally {
    closeSync(fd);
  }
}

export function linkKind(path: Buffer): LinkKind {
  return elfInfo(path).kind;
}

/** The glibc loader and the ELF machine of each target the library is built for (build.ts TARGETS). */
const TARGET_ELF: Record<string, { machine: number; loader: string; what: string }> = {
  "linux-x64": { machine: 62, loader: "ld-linux-x86-64.so.2", what: "x86-64" },
  "linux-arm64": { machine: 183, loader: "ld-linux-aarch64.so.1", what: "arm64" },
};

const MACHINES: Record<number, string> = { 3: "i386", 8: "MIPS", 20: "PowerPC", 21: "PowerPC64", 22: "s390", 40: "ARM", 62: "x86-64", 183: "arm64", 243: "RISC-V" };

/**
 * Why the loader runs the program in secure mode (which drops LD_PRELOAD
 * paths with a slash), or null. Running a set-id file of our own ids is not
 * secure mode (e.g. root running a setuid-root program), nor is root running
 * a file with capabilities (root gains none).
 */
export function secureModeReason(path: Buffer): string | null {
  const st = statOrNull(path);
  if (!st) return null;
  const euid = process.geteuid?.() ?? 0;
  const egid = process.getegid?.() ?? 0;
  if (st.mode & 0o4000 && st.uid !== euid) return "setuid";
  if (st.mode & 0o2000 && st.mode & 0o010 && st.gid !== egid) return "setgid";
  if (euid !== 0 && hasXattr(path, "security.capability")) return "capabilities";
  return null;
}

/** A program exm cannot serve: the one line said before it runs, and whether LD_PRELOAD must be left out. */
export interface Unserved {
  line: string;
  /**
   * The loader would try our library and fail (another libc, another
   * architecture): the program gets the environment exm was given, without
   * our library in LD_PRELOAD.
   */
  dropPreload: boolean;
}

/**
 * Whether the library can reach the program, told in one line when not:
 * secure mode (setuid, setgid, file capabilities), no loader at all
 * (static), a loader of another libc (musl's ld-musl-*.so.1 would fail on
 * glibc's symbols) or an executable of another architecture or word size.
 * Scripts: their interpreter is what runs, and it is checked when exec'd
 * (an interpreter exm cannot serve then runs without it, silently: only
 * the program named on the command line is read).
 */
export function unserved(path: Buffer, target: string): Unserved | null {
  const p = show(path);
  const secure = secureModeReason(path);
  if (secure) {
    const what = secure === "capabilities" ? "has file capabilities" : `is ${secure}`;
    return { line: `${p} ${what}: the loader ignores LD_PRELOAD for it, so it runs without exm`, dropPreload: false };
  }
  const elf = elfInfo(path);
  if (elf.kind === "other") return null;
  if (elf.kind === "static") return { line: `${p} is statically linked: LD_PRELOAD cannot reach it, so it runs without exm`, dropPreload: false };
  const want = TARGET_ELF[target];
  if (!want) return null;
  if (elf.machine !== want.machine || !elf.is64) {
    const theirs = `${MACHINES[elf.machine ?? -1] ?? `machine ${elf.machine}`}${elf.is64 ? "" : " 32-bit"}`;
    return { line: `${p} is built for ${theirs} and exm's library for ${want.what}, so it runs without exm`, dropPreload: true };
  }
  const loader = elf.interp?.slice(elf.interp.lastIndexOf("/") + 1) ?? "";
  // A loader that is not there: the program cannot start at all, and run.ts
  // says so by name (no word about C libraries first).
  if (loader !== want.loader && elf.interp && existsSync(elf.interp)) {
    const libc = /^ld-musl-/.test(loader) ? "musl" : "not glibc";
    return {
      line: `${p} is linked against another C library (${libc}: its loader is ${elf.interp}), which cannot load exm's glibc-built library, so it runs without exm`,
      dropPreload: true,
    };
  }
  return null;
}

/**
 * What the library uses of the kernel, with the release that brought it.
 * `hard`: without it the library cannot serve at all (then exm runs the
 * program without it); the others have a fallback, said with --verbose.
 * The hard floor is glibc 2.17's own (2.6.32): every kernel that can run the
 * library has what it needs, so in practice only the soft rows show.
 */
export const KERNEL_NEEDS: { what: string; since: string; hard: boolean; without: string }[] = [
  { what: "fallocate", since: "2.6.23", hard: true, without: "no disk can be reserved" },
  { what: "F_DUPFD_CLOEXEC and O_CLOEXEC", since: "2.6.24", hard: true, without: "the backing file leaks into exec'd programs" },
  { what: "FALLOC_FL_PUNCH_HOLE", since: "2.6.38", hard: false, without: "freed blocks keep their disk, and their dirty pages are written back" },
  { what: "SEEK_DATA/SEEK_HOLE", since: "3.1", hard: false, without: "--child duplicate falls back to copy-on-write" },
  { what: "MADV_DONTDUMP", since: "3.4", hard: false, without: "core dumps include the file-backed blocks" },
  { what: "O_TMPFILE", since: "3.11", hard: false, without: "backing files are created, then unlinked at once" },
  { what: "copy_file_range", since: "4.5", hard: false, without: "--child duplicate falls back to copy-on-write" },
];

/** Leading numeric part of a kernel release ("5.10.0-28-amd64" -> [5, 10, 0]), or null. */
function releaseNumbers(release: string): number[] | null {
  const m = /^(\d+)\.(\d+)(?:\.(\d+))?/.exec(release);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : null;
}

function older(release: number[], since: string): boolean {
  const s = since.split(".").map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (release[i] ?? 0) - (s[i] ?? 0);
    if (d) return d < 0;
  }
  return false;
}

/**
 * The rows of KERNEL_NEEDS this kernel release predates. Distribution
 * kernels backport features, so a soft row is said as "may", and only a
 * hard one changes what exm does. An unparsable release predates nothing.
 */
export function kernelGaps(release: string): { hard: string[]; soft: string[] } {
  const r = releaseNumbers(release);
  const out = { hard: [] as string[], soft: [] as string[] };
  if (!r) return out;
  for (const n of KERNEL_NEEDS) {
    if (!older(r, n.since)) continue;
    if (n.hard) out.hard.push(`${n.what} (Linux ${n.since})`);
    else out.soft.push(`kernel ${release} is older than ${n.since}, which brought ${n.what}: if it lacks it, ${n.without}`);
  }
  return out;
}

/** The kernel cannot run the library: the program runs without it, told in one line. */
export function kernelUnserved(release: string): Unserved | null {
  const { hard } = kernelGaps(release);
  if (!hard.length) return null;
  return { line: `kernel ${release} lacks ${hard.join(", ")}, which exm's library needs, so the program runs without exm`, dropPreload: true };
}
