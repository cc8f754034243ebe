/*
 * watch.ts: `exm --inspect PID --watch [SECONDS]`, a live view of one
 * process's arena, like top.
 *
 * Every SECONDS it reads the process again (inspect.ts, /proc only) and shows
 * the arena's size, its resident part, the disk its file uses, the process's
 * resident memory, and what happened since the last look: major faults per
 * second and megabytes per second read from and written to storage. On a
 * terminal the view is redrawn in place; anywhere else (a pipe, a file) each
 * look is one JSON line, for a monitoring script. A process with libexm but
 * no arena yet is shown with zeros (it may make one later); the watch ends,
 * with status 0, when the process does.
 */

import { ExmError, oneLine } from "./errors";
import { inspect, type InspectReport, NO_ARENA_YET, requireLibrary } from "./inspect";
import { formatSize } from "./options";
import { stdout } from "./out";

export interface WatchLine {
  time: string;
  pid: number;
  arenaSize: number;
  arenaResident: number;
  disk: number;
  resident: number | null;
  majorFaults: number;
  /** Rates over the last interval; null on the first look. */
  majorFaultsPerSecond: number | null;
  readBytesPerSecond: number | null;
  writtenBytesPerSecond: number | null;
}

export function parseInterval(text: string): number {
  const v = Number(text);
  if (!/^\d+(\.\d+)?$/.test(text) || !(v >= 0.1) || v > 86400) {
    throw new ExmError(`--watch: not a number of seconds between 0.1 and 86400: '${text}'`, 2);
  }
  return v;
}

function lineOf(r: InspectReport, prev: { r: InspectReport; at: number } | undefined, at: number): WatchLine {
  const dt = prev ? (at - prev.at) / 1000 : 0;
  const rate = (now: number | null, before: number | null) =>
    prev && dt > 0 && now !== null && before !== null ? Math.max(0, (now - before) / dt) : null;
  return {
    time: new Date(at).toISOString(),
    pid: r.pid,
    arenaSize: r.arenas.reduce((a, x) => a + x.size, 0),
    arenaResident: r.arenas.reduce((a, x) => a + x.resident, 0),
    disk: r.arenas.reduce((a, x) => a + (x.disk ?? 0), 0),
    resident: r.processRss,
    majorFaults: r.majorFaults,
    majorFaultsPerSecond: rate(r.majorFaults, prev?.r.majorFaults ?? null),
    readBytesPerSecond: rate(r.readBytes, prev?.r.readBytes ?? null),
    writtenBytesPerSecond: rate(r.writtenBytes, prev?.r.writtenBytes ?? null),
  };
}

const mbps = (v: number | null) => (v === null ? "-" : `${(v / 1e6).toFixed(1)} MB/s`);

/** The terminal view of one look. */
export function renderWatch(r: InspectReport, l: WatchLine, seconds: number): string {
  const cmd = oneLine(r.command.join(" "));
  const lines = [
    `exm --watch: pid ${r.pid} (${cmd.length > 60 ? `${cmd.slice(0, 60)}...` : cmd}), every ${seconds} s, ${l.time.slice(11, 19)} UTC`,
    "",
    r.arenas.length
      ? `  arena       ${formatSize(l.arenaSize)} virtual, ${formatSize(l.arenaResident)} resident, ${formatSize(l.disk)} on disk`
      : `  arena       ${NO_ARENA_YET}`,
    `  process     ${l.resident === null ? "-" : formatSize(l.resident)} resident, ${l.majorFaults} major faults`,
    `  rates       ${l.majorFaultsPerSecond === null ? "-" : l.majorFaultsPerSecond.toFixed(0)} faults/s, read ${mbps(l.readBytesPerSecond)}, written ${mbps(l.writtenBytesPerSecond)}`,
    "",
    "  (Ctrl-C to stop)",
  ];
  return lines.join("\n");
}

/** Watches until the process ends. Returns the exit status for main(). */
export async function watch(pid: number, seconds: number): Promise<number> {
  // node:tty is loaded here, not at start-up: it pulls in Node's stream
  // modules, a few ms that every `exm program` would pay for nothing.
  const { isatty } = await import("node:tty");
  const tty = isatty(1);
  let prev: { r: InspectReport; at: number } | undefined;
  for (;;) {
    let r: InspectReport;
    try {
      r = inspect(pid);
    } catch (e) {
      // The process is gone: the watch is over. (Any other problem on the first look is the user's.)
      if (prev && e instanceof ExmError && e.message.startsWith("no process")) {
        if (tty) stdout(`\npid ${pid} has ended\n`);
        return 0;
      }
      throw e;
    }
    if (!prev) requireLibrary(r);
    const at = Date.now();
    const l = lineOf(r, prev, at);
    if (tty) stdout(`\x1b[H\x1b[2J${renderWatch(r, l, seconds)}\n`);
    else stdout(`${JSON.stringify(l)}\n`);
    prev = { r, at };
    await Bun.sleep(seconds * 1000);
  }
}
