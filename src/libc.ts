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
    __errno_location: { args: [], returns: p },
    strerror: { args: [i32], returns: cstring },
    getxattr: { args: [p, p, p, u64], returns: i64 },
  });
}

function libc() {
  handle ??= open();
  return handle.symbols;
}

export const F_GETFD = 1;
export const F_SETFD = 2;
export const FD_CLOEXEC = 1;
export const SIG_SETMASK = 2;
export const SIG_DFL = 0n;
export const SIGPIPE = 13;
export const SIGXFSZ = 25;
export const ST_NOEXEC = 8n;
export const ENOEXEC = 8;
export const RLIMIT_NOFILE = 7;

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
  libc().execve(ptr(cPath), ptr(av), ptr(ev));
  const e = errno();
  // Keep the buffers reachable until after the call.
  void [cPath, cArgv, cEnvp, av, ev];
  return e;
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
