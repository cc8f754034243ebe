/*
 * libc.ts: the few libc calls Bun has no API for, through bun:ffi.
 *
 * This file mirrors the C prototypes one to one; callers get plain numbers
 * back (-1 and errno, as in C). Buffers passed to C must be kept alive by the
 * caller until the call returns (execve never returns on success).
 */

import { dlopen, FFIType, ptr, read, type Pointer } from "bun:ffi";

const { i32, i64, u64, ptr: p, cstring } = FFIType;

let handle: ReturnType<typeof open> | undefined;

function open() {
  return dlopen("libc.so.6", {
    execve: { args: [p, p, p], returns: i32 },
    fcntl: { args: [i32, i32, i32], returns: i32 },
    signal: { args: [i32, u64], returns: u64 },
    sigprocmask: { args: [i32, p, p], returns: i32 },
    statvfs: { args: [p, p], returns: i32 },
    getrlimit: { args: [i32, p], returns: i32 },
    setrlimit: { args: [i32, p], returns: i32 },
    posix_spawn: { args: [p, p, p, p, p, p], returns: i32 },
    posix_spawnattr_init: { args: [p], returns: i32 },
    posix_spawnattr_setflags: { args: [p, i32], returns: i32 },
    posix_spawnattr_setsigdefault: { args: [p, p], returns: i32 },
    posix_spawnattr_setsigmask: { args: [p, p], returns: i32 },
    syscall: { args: [i64, i64, i64], returns: i64 },
    poll: { args: [p, u64, i32], returns: i32 },
    waitpid: { args: [i32, p, i32], returns: i32 },
    kill: { args: [i32, i32], returns: i32 },
    getpid: { args: [], returns: i32 },
    getrusage: { args: [i32, p], returns: i32 },
    prctl: { args: [i32, u64, u64, u64, u64], returns: i32 },
    __errno_location: { args: [], returns: p },
    strerror: { args: [i32], returns: cstring },
    getxattr: { args: [p, p, p, u64], returns: i64 },
    uname: { args: [p], returns: i32 },
  });
}

function libc() {
  handle ??= open();
  return handle.symbols;
}

/** Why libc cannot be called through bun:ffi here (restart.ts), or undefined when it can. */
export function libcError(): Error | undefined {
  try {
    libc();
    return undefined;
  } catch (e) {
    return e instanceof Error ? e : new Error(String(e));
  }
}

export const F_GETFD = 1;
export const F_SETFD = 2;
export const FD_CLOEXEC = 1;
export const SIG_SETMASK = 2;
export const SIG_DFL = 0n;
export const SIGPIPE = 13;
export const SIGXFSZ = 25;
export const ST_NOEXEC = 8n;
export const ENOENT = 2;
export const ENOEXEC = 8;
export const RLIMIT_NOFILE = 7;
export const RLIMIT_CORE = 4;
export const EINTR = 4;
export const ECHILD = 10;
export const WNOHANG = 1;
const POSIX_SPAWN_SETSIGDEF = 0x04;
const POSIX_SPAWN_SETSIGMASK = 0x08;
const PR_SET_CHILD_SUBREAPER = 36;
const SYS_PIDFD_OPEN = 434; // the same number on x86-64 and arm64
const RUSAGE_CHILDREN = -1;

export function errno(): number {
  return read.i32(libc().__errno_location() as Pointer, 0);
}

export function strerror(code: number): string {
  return String(libc().strerror(code));
}

/** A NUL-terminated copy of a byte string, for C. */
export function cString(bytes: Uint8Array | string): Buffer {
  const b = typeof bytes === "string" ? Buffer.from(bytes) : bytes;
  const out = Buffer.alloc(b.length + 1);
  out.set(b);
  return out;
}

/** A NULL-terminated char*[] over `strings` (which must stay alive). */
export function cArray(strings: Buffer[]): BigUint64Array {
  const arr = new BigUint64Array(strings.length + 1);
  strings.forEach((s, i) => {
    arr[i] = BigInt(ptr(s));
  });
  return arr;
}

/** execve(2). Returns only on failure, with the errno. */
export function execve(path: Buffer, argv: Buffer[], envp: Buffer[]): number {
  const cPath = cString(path);
  const cArgv = argv.map(cString);
  const cEnvp = envp.map(cString);
  const av = cArray(cArgv);
  const ev = cArray(cEnvp);
  // This thread's errno is found before the call and read straight from
  // memory after it: a second FFI call in between (__errno_location) could
  // itself run code that sets errno.
  const errnoLocation = libc().__errno_location() as Pointer;
  libc().execve(ptr(cPath), ptr(av), ptr(ev));
  const e = read.i32(errnoLocation, 0);
  // Keep the buffers reachable until after the call.
  void [cPath, cArgv, cEnvp, av, ev];
  return e;
}

/**
 * uname(2)'s release (what `uname -r` prints), as the program will see it: a
 * personality such as setarch --uname-2.6 changes it, /proc does not show
 * that. (node:os has it too, but loading node:os costs start-up ms.)
 */
export function kernelRelease(): string {
  const u = new Uint8Array(6 * 65); // struct utsname: six fields of 65 bytes on Linux
  if (libc().uname(ptr(u)) !== 0) return "";
  const rel = u.subarray(2 * 65, 3 * 65);
  const end = rel.indexOf(0);
  return Buffer.from(rel.subarray(0, end < 0 ? rel.length : end)).toString("latin1");
}

export function getFdFlags(fd: number): number {
  return libc().fcntl(fd, F_GETFD, 0);
}

export function setFdFlags(fd: number, flags: number): number {
  return libc().fcntl(fd, F_SETFD, flags);
}

export function resetSignal(sig: number): void {
  libc().signal(sig, SIG_DFL);
}

/** Unblocks every signal in the calling thread (the one that will execve). */
export function unblockAllSignals(): void {
  const empty = new Uint8Array(128); // sizeof(sigset_t) in glibc
  libc().sigprocmask(SIG_SETMASK, ptr(empty), null);
}

/** f_flag of statvfs(path), or undefined when the call fails. */
export function mountFlags(path: string): bigint | undefined {
  // struct statvfs on 64-bit glibc: ten unsigned longs, f_flag is the tenth.
  const buf = new BigUint64Array(16);
  const cPath = cString(path);
  if (libc().statvfs(ptr(cPath), ptr(buf)) !== 0) return undefined;
  return buf[9];
}

/** True when the file has the extended attribute (e.g. security.capability); false also when it cannot be read. */
export function hasXattr(path: Uint8Array | string, name: string): boolean {
  const cPath = cString(path);
  const cName = cString(name);
  return Number(libc().getxattr(ptr(cPath), ptr(cName), null, 0)) >= 0;
}

/** [soft, hard] of a resource limit, or undefined when the call fails. */
export function getRlimit(resource: number): [bigint, bigint] | undefined {
  const lim = new BigUint64Array(2);
  if (libc().getrlimit(resource, ptr(lim)) !== 0) return undefined;
  return [lim[0]!, lim[1]!];
}

export function setRlimit(resource: number, soft: bigint, hard: bigint): boolean {
  const lim = new BigUint64Array([soft, hard]);
  return libc().setrlimit(resource, ptr(lim)) === 0;
}

/** A glibc sigset_t (128 bytes) holding `signals`. */
function sigset(signals: number[]): Uint8Array {
  const set = new BigUint64Array(16);
  for (const sig of signals) set[0]! |= 1n << BigInt(sig - 1);
  return new Uint8Array(set.buffer);
}

/**
 * posix_spawn(3) of `path` with `argv` and `envp`, in which `defaults` are
 * set back to SIG_DFL and no signal is blocked. Returns [0, pid] or [errno, 0].
 * glibc's posix_spawn runs the child on a vfork-like clone and reports the
 * exec's failure, so no JavaScript ever runs in the child.
 */
export function spawn(path: Buffer, argv: Buffer[], envp: Buffer[], defaults: number[]): [number, number] {
  const cPath = cString(path);
  const cArgv = argv.map(cString);
  const cEnvp = envp.map(cString);
  const av = cArray(cArgv);
  const ev = cArray(cEnvp);
  const attr = new Uint8Array(1024); // sizeof(posix_spawnattr_t) is 336 in glibc
  const dfl = sigset(defaults);
  const none = sigset([]);
  const c = libc();
  c.posix_spawnattr_init(ptr(attr));
  c.posix_spawnattr_setsigdefault(ptr(attr), ptr(dfl));
  c.posix_spawnattr_setsigmask(ptr(attr), ptr(none));
  c.posix_spawnattr_setflags(ptr(attr), POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  const pid = new Int32Array(1);
  const err = c.posix_spawn(ptr(pid), ptr(cPath), null, ptr(attr), ptr(av), ptr(ev));
  void [cPath, cArgv, cEnvp, av, ev, attr, dfl, none];
  return err ? [err, 0] : [0, pid[0]!];
}

/** A pidfd for `pid` (readable once it has exited), or -1 (kernels before 5.3). */
export function pidfdOpen(pid: number): number {
  return Number(libc().syscall(SYS_PIDFD_OPEN, pid, 0));
}

/** Waits up to `ms` for `fd` to become readable: 1 ready, 0 timeout, -1 interrupted or failed. */
export function pollReadable(fd: number, ms: number): number {
  const pfd = new Int32Array([fd, 1 /* POLLIN */]);
  return libc().poll(fd < 0 ? null : ptr(pfd), fd < 0 ? 0 : 1, Math.max(0, Math.round(ms)));
}

/** waitpid(2): [pid or 0 or -1, raw status, errno]. */
export function waitPid(pid: number, options: number): [number, number, number] {
  const st = new Int32Array(1);
  const r = libc().waitpid(pid, ptr(st), options);
  return [r, st[0]!, r < 0 ? errno() : 0];
}

export function kill(pid: number, sig: number): number {
  return libc().kill(pid, sig);
}

export function getPid(): number {
  return libc().getpid();
}

/** Orphaned descendants are re-parented to us, so their usage is counted when reaped. */
export function becomeSubreaper(): void {
  libc().prctl(PR_SET_CHILD_SUBREAPER, 1n, 0n, 0n, 0n);
}

export interface ChildUsage {
  cpuNs: number;
  maxResident: number;
  minorFaults: number;
  majorFaults: number;
  readBytes: number;
  writtenBytes: number;
}

/** getrusage(RUSAGE_CHILDREN): the waited-for descendants, summed by the kernel. */
export function childUsage(): ChildUsage {
  // struct rusage: two timevals, then 14 longs (maxrss, ixrss, idrss, isrss, minflt, majflt, nswap, inblock, oublock, ...)
  const ru = new BigInt64Array(18);
  libc().getrusage(RUSAGE_CHILDREN, ptr(ru));
  const n = (i: number) => Number(ru[i]!);
  return {
    cpuNs: (n(0) + n(2)) * 1e9 + (n(1) + n(3)) * 1e3,
    maxResident: n(4) * 1024,
    minorFaults: n(8),
    majorFaults: n(9),
    readBytes: n(11) * 512,
    writtenBytes: n(12) * 512,
  };
}
