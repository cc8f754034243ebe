/*
 * fds.ts: which descriptors exm passes on to the program.
 *
 * Bun marks inherited descriptors >= 4 close-on-exec at start-up, so just
 * before execve exm clears close-on-exec on the descriptors it inherited, and
 * on those only. "Inherited" is what was open when exm's own code started
 * (openFds(), taken by cli.ts before it does anything), each named by its
 * device and inode: a descriptor opened since (by the runtime or by exm: its
 * embedded files, the library cache) is not in that list, or is there under
 * another file if it reused a closed number, and keeps close-on-exec. Bun's
 * event loop (epoll, eventfd, timerfd and other anon_inode objects) and exm's
 * own executable are never passed, whenever they were opened: no shell
 * passes those, and exm's runtime reads its embedded files through the latter.
 */

import { fstatSync, readdirSync, readlinkSync } from "node:fs";
import { FD_CLOEXEC, getFdFlags, setFdFlags } from "./libc";

/** Open descriptors: fd number to its file's "device:inode". */
export type FdSnapshot = Map<number, string>;

/** Object types of Bun's own event loop, which must not leak into the program. */
function isRuntimeFd(target: string): boolean {
  return target.startsWith("anon_inode:");
}

/** The open descriptors that could be the program's, by file; empty without /proc. */
export function openFds(): FdSnapshot {
  const out: FdSnapshot = new Map();
  let names: string[];
  try {
    names = readdirSync("/proc/self/fd");
  } catch {
    return out; // no /proc: nothing we can tell apart safely
  }
  let self = "";
  try {
    self = readlinkSync("/proc/self/exe");
  } catch {}
  for (const name of names) {
    const fd = Number(name);
    try {
      const target = readlinkSync(`/proc/self/fd/${name}`);
      if (isRuntimeFd(target) || (self !== "" && target === self)) continue;
      const st = fstatSync(fd);
      out.set(fd, `${st.dev}:${st.ino}`);
    } catch {
      // the descriptor readdirSync itself used, now closed
    }
  }
  return out;
}

/**
 * Clears close-on-exec on every descriptor open now that was open, on the
 * same file, in atStart. Without a snapshot: on every one open now.
 */
export function passInheritedFds(atStart?: FdSnapshot): void {
  for (const [fd, file] of openFds()) {
    if (atStart && atStart.get(fd) !== file) continue;
    const flags = getFdFlags(fd);
    if (flags >= 0 && flags & FD_CLOEXEC) setFdFlags(fd, flags & ~FD_CLOEXEC);
  }
}
