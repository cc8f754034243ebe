/*
 * inspect.ts: `exm --inspect PID`, from /proc alone.
 *
 * The library maps one very large shared mapping of an unlinked backing file
 * per arena: in /proc/PID/maps it is a `rw-s` (or, in a copy-on-write child,
 * `rw-p`) range of at least 1 GiB whose path ends in " (deleted)" and whose
 * file name is `#<inode>` (O_TMPFILE) or `.exm-*` (the create-then-unlink
 * fallback). madvise on parts of it splits it into several VMAs, so ranges
 * are grouped by device and inode. Resident bytes come from smaps, disk use
 * from st_blocks of the file through a /proc/PID/fd link (or map_files), and
 * the settings from the process's initial environment.
 *
 * A process under exm that has no arena yet (nothing reached the threshold)
 * is an answer, not an error: a monitor can poll a process that just started.
 * Only a process without libexm at all is an error.
 */

import { readdirSync, readFileSync, readlinkSync, statSync } from "node:fs";
import { ExmError, usageError } from "./errors";
import { formatSize } from "./options";

const MIN_ARENA = 1n << 30n;

export interface ArenaReport {
  file: string;
  inode: number;
  shared: boolean;
  /** Virtual bytes mapped for this backing file. */
  size: number;
  /** Bytes of it resident in RAM (page cache pages mapped by the process). */
  resident: number;
  /** Bytes of the file allocated on disk, or null if the file could not be reached. */
  disk: number | null;
  mappings: { start: string; end: string; perms: string }[];
}

export interface InspectReport {
  pid: number;
  command: string[];
  library: string | null;
  settings: Record<string, string>;
  processRss: number | null;
  /** Major faults of the process so far (its own, from /proc/PID/stat). */
  majorFaults: number;
  /** Bytes read from and written to storage so far (/proc/PID/io), or null if not readable. */
  readBytes: number | null;
  writtenBytes: number | null;
  arenas: ArenaReport[];
}

interface Mapping {
  start: bigint;
  end: bigint;
  perms: string;
  dev: string;
  inode: number;
  path: string;
  rss: number;
}

function readProc(pid: number, file: string): string {
  try {
    return readFileSync(`/proc/${pid}/${file}`, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ESRCH") throw new ExmError(`no process with pid ${pid}`);
    if (code === "EACCES" || code === "EPERM") throw new ExmError(`cannot read /proc/${pid}/${file}: permission denied (not your process?)`);
    throw new ExmError(`cannot read /proc/${pid}/${file}: ${(e as Error).message}`);
  }
}

function parseSmaps(text: string): Mapping[] {
  const out: Mapping[] = [];
  const header = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) [0-9a-f]+ (\S+) (\d+)\s*(.*)$/;
  let cur: Mapping | undefined;
  for (const line of text.split("\n")) {
    const m = header.exec(line);
    if (m) {
      cur = { start: BigInt(`0x${m[1]}`), end: BigInt(`0x${m[2]}`), perms: m[3]!, dev: m[4]!, inode: Number(m[5]), path: m[6]!, rss: 0 };
      out.push(cur);
    } else if (cur && line.startsWith("Rss:")) {
      cur.rss = Number(/(\d+)/.exec(line)![1]) * 1024;
    }
  }
  return out;
}

/** Is this mapping a piece of an exm arena? (size is checked per file later) */
function looksLikeArena(m: Mapping): boolean {
  if (!m.path.endsWith(" (deleted)")) return false;
  if (m.perms !== "rw-s" && m.perms !== "rw-p") return false;
  const file = m.path.slice(0, -" (deleted)".length);
  const base = file.slice(file.lastIndexOf("/") + 1);
  return /^#\d+$/.test(base) || base.startsWith(".exm-");
}

function diskUsage(pid: number, inode: number, mappings: Mapping[]): number | null {
  const matches = (path: string) => {
    try {
      const st = statSync(path);
      return st.ino === inode ? st.blocks * 512 : null;
    } catch {
      return null;
    }
  };
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      const used = matches(`/proc/${pid}/fd/${fd}`);
      if (used !== null) return used;
    }
  } catch {
    // fall through to map_files
  }
  for (const m of mappings) {
    const used = matches(`/proc/${pid}/map_files/${m.start.toString(16)}-${m.end.toString(16)}`);
    if (used !== null) return used;
  }
  return null;
}

export function inspect(pid: number): InspectReport {
  const smaps = parseSmaps(readProc(pid, "smaps"));
  const command = readProc(pid, "cmdline").split("\0");
  if (command.at(-1) === "") command.pop();
  const settings: Record<string, string> = {};
  for (const entry of readProc(pid, "environ").split("\0")) {
    const eq = entry.indexOf("=");
    const name = entry.slice(0, eq);
    if (name.startsWith("EXM_")) settings[name] = entry.slice(eq + 1);
  }
  const library = smaps.find((m) => /\/libexm[^/]*\.so( \(deleted\))?$/.test(m.path))?.path ?? null;
  let processRss: number | null = null;
  const rssLine = /^VmRSS:\s+(\d+) kB/m.exec(readProc(pid, "status"));
  if (rssLine) processRss = Number(rssLine[1]) * 1024;
  const stat = readProc(pid, "stat");
  const majorFaults = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[9] ?? 0);
  let readBytes: number | null = null;
  let writtenBytes: number | null = null;
  try {
    const io = readFileSync(`/proc/${pid}/io`, "utf8");
    const v = (k: string) => Number(new RegExp(`^${k}: (\\d+)`, "m").exec(io)?.[1] ?? 0);
    readBytes = v("read_bytes");
    writtenBytes = Math.max(0, v("write_bytes") - v("cancelled_write_bytes"));
  } catch {
    // another user's process: its io file is not ours to read
  }

  const byFile = new Map<string, Mapping[]>();
  for (const m of smaps.filter(looksLikeArena)) {
    const key = `${m.dev}:${m.inode}`;
    byFile.set(key, [...(byFile.get(key) ?? []), m]);
  }
  const arenas: ArenaReport[] = [];
  for (const maps of byFile.values()) {
    const size = maps.reduce((a, m) => a + (m.end - m.start), 0n);
    if (size < MIN_ARENA) continue;
    const first = maps[0]!;
    arenas.push({
      file: first.path,
      inode: first.inode,
      shared: maps.every((m) => m.perms.endsWith("s")),
      size: Number(size),
      resident: maps.reduce((a, m) => a + m.rss, 0),
      disk: diskUsage(pid, first.inode, maps),
      mappings: maps.map((m) => ({ start: `0x${m.start.toString(16)}`, end: `0x${m.end.toString(16)}`, perms: m.perms })),
    });
  }
  return { pid, command, library, settings, processRss, majorFaults, readBytes, writtenBytes, arenas };
}

export function parsePid(text: string): number {
  if (!/^\d+$/.test(text) || Number(text) <= 0 || Number(text) > 2 ** 22) {
    throw usageError(`--inspect: not a process id: '${text}'`);
  }
  return Number(text);
}

export function renderInspect(r: InspectReport): string {
  const shown = r.command.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(" ");
  const lines = [`pid ${r.pid}: ${shown.length > 200 ? `${shown.slice(0, 200)}...` : shown}`];
  if (r.processRss !== null) lines.push(`  process resident: ${formatSize(r.processRss)}`);
  lines.push(`  library: ${r.library ?? "not loaded"}`);
  const names = Object.keys(r.settings).sort();
  lines.push(`  settings: ${names.length ? names.map((n) => `${n}=${r.settings[n]}`).join(" ") : "(no EXM_* variables)"}`);
  r.arenas.forEach((a, i) => {
    lines.push(`  arena ${i + 1}: ${a.file}${a.shared ? "" : " (private copy-on-write mapping)"}`);
    lines.push(`    virtual size: ${formatSize(a.size)}`);
    lines.push(`    resident:     ${formatSize(a.resident)}`);
    lines.push(`    disk used:    ${a.disk === null ? "unknown (backing file not reachable)" : formatSize(a.disk)}`);
  });
  if (r.arenas.length === 0 && r.library) lines.push(`  arena: ${NO_ARENA_YET}`);
  return lines.join("\n");
}

export const NO_ARENA_YET = "none yet (no allocation has reached the threshold)";

/** The children of `pid` when it is an exm launcher (the same executable as ours), else []. */
function launcherChildren(pid: number): number[] {
  try {
    if (readlinkSync(`/proc/${pid}/exe`) !== readlinkSync("/proc/self/exe")) return [];
    return readdirSync("/proc").filter((n) => /^\d+$/.test(n)).filter((n) => {
      try {
        const st = readFileSync(`/proc/${n}/stat`, "latin1");
        return Number(st.slice(st.lastIndexOf(")") + 2).split(" ")[1]) === pid;
      } catch {
        return false;
      }
    }).map(Number);
  } catch {
    return [];
  }
}

/** Throws when libexm is not in the process at all (pointing at the program when the pid is exm's own). */
export function requireLibrary(r: InspectReport): void {
  if (r.library || r.arenas.length > 0) return;
  const kids = launcherChildren(r.pid);
  if (kids.length) {
    throw new ExmError(`pid ${r.pid} is exm itself, running the program as pid ${kids.join(", ")} (with --stats or --stats-file): inspect that one`);
  }
  throw new ExmError(`pid ${r.pid} (${r.command[0] ?? "?"}) has no exm arena: libexm is not loaded in it`);
}
