/**
 * Foreign system roots for the release tests: Debian 11 (bullseye, glibc
 * 2.31) for amd64 and arm64, made with debootstrap and kept under
 * /var/cache/exm-test-roots (EXM_TEST_ROOTS overrides) between runs.
 *
 * The cache is honest: a root is used only when its marker file names the
 * same recipe (suite, architecture, packages, mirror) that would build it
 * now, and the marker is written last, after debootstrap succeeded, into a
 * directory that is renamed into place only then. A half-built root (a run
 * killed midway) is never used; it is removed at the next build.
 *
 * arm64 runs under qemu-user through binfmt_misc: the kernel must hand
 * aarch64 ELF files to qemu-aarch64-static even when they are exec'd by
 * another emulated program (exm execs the program it runs), which an
 * explicit `qemu-aarch64-static prog` cannot do. The handler is registered
 * with the F flag (Debian's own qemu-aarch64.conf), so the interpreter is
 * opened once at registration and works inside a chroot without a copy.
 *
 * Everything here needs root (debootstrap, chroot, mount); ...Available()
 * functions return null when usable, else the reason, for `skipUnless`.
 */
import { spawnSync } from "bun";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { aptInstall } from "./sys";

export type DebArch = "amd64" | "arm64";

export const ROOTS_DIR = process.env.EXM_TEST_ROOTS || "/var/cache/exm-test-roots";
const SUITE = "bullseye";
const MIRROR = "http://deb.debian.org/debian";
/** python3 for the out-of-core runs; nothing else beyond minbase. */
const PACKAGES = ["python3"];
const MARKER = ".exm-root-complete";

function recipe(arch: DebArch): string {
  return JSON.stringify({ suite: SUITE, arch, variant: "minbase", packages: PACKAGES, mirror: MIRROR });
}

export function rootDir(arch: DebArch): string {
  return join(ROOTS_DIR, `${SUITE}-${arch}`);
}

function sh(argv: string[], timeoutMs = 60 * 60_000): { ok: boolean; out: string } {
  const r = spawnSync(argv, { stdout: "pipe", stderr: "pipe", timeout: timeoutMs, env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
  return { ok: r.exitCode === 0, out: `${r.stdout.toString()}${r.stderr.toString()}` };
}

function have(cmd: string): boolean {
  return sh(["sh", "-c", `command -v ${cmd}`]).ok;
}


const BINFMT = "/proc/sys/fs/binfmt_misc";

/** null when aarch64 ELF files run on this machine (natively or through qemu's binfmt handler). */
export function aarch64Available(): string | null {
  if (process.arch === "arm64") return null;
  if (process.getuid?.() !== 0) return "not root: cannot set up qemu-aarch64 through binfmt_misc";
  const why = aptInstall(["qemu-user-static"], "release.test", () => existsSync("/usr/bin/qemu-aarch64-static"));
  if (why) return why;
  if (!existsSync(join(BINFMT, "register"))) {
    const m = sh(["mount", "-t", "binfmt_misc", "binfmt_misc", BINFMT]);
    if (!m.ok) return `cannot mount binfmt_misc: ${m.out.trim()}`;
  }
  if (!existsSync(join(BINFMT, "qemu-aarch64"))) {
    const conf = "/usr/lib/binfmt.d/qemu-aarch64.conf";
    if (!existsSync(conf)) return `qemu-user-static installed no ${conf}`;
    try {
      writeFileSync(join(BINFMT, "register"), readFileSync(conf, "utf8").trim());
    } catch (e) {
      return `cannot register qemu-aarch64 with binfmt_misc: ${(e as Error).message}`;
    }
  }
  const state = readFileSync(join(BINFMT, "qemu-aarch64"), "utf8");
  if (!state.startsWith("enabled")) return "the qemu-aarch64 binfmt handler is disabled";
  if (!/flags:.*F/.test(state)) return "the qemu-aarch64 binfmt handler lacks the F flag (it would not work in a chroot)";
  return null;
}

/**
 * The bullseye root for `arch`, built on first use: on the 2-core test
 * machine, with other work running (load average 10-25), amd64 took 152 s
 * and arm64 1581 s, nearly all of it debootstrap's second stage under qemu.
 * Returns the root's path, or why there is none.
 */
export function ensureRoot(arch: DebArch): { root: string } | { skip: string } {
  const dir = rootDir(arch);
  const want = recipe(arch);
  try {
    if (readFileSync(join(dir, MARKER), "utf8") === want) return { root: dir };
  } catch {
    // not there, or not complete: build it
  }
  if (process.getuid?.() !== 0) return { skip: "not root: debootstrap and chroot need root" };
  const why = aptInstall(["debootstrap"], "release.test", () => have("debootstrap"));
  if (why) return { skip: why };
  if (arch === "arm64" && process.arch !== "arm64") {
    const q = aarch64Available();
    if (q) return { skip: q };
  }
  mkdirSync(ROOTS_DIR, { recursive: true });
  // One builder at a time (two test runs, or two checkouts, on one machine): the others wait for it.
  const lock = `${dir}.lock`;
  for (;;) {
    try {
      mkdirSync(lock);
      writeFileSync(`${lock}/pid`, String(process.pid));
      break;
    } catch {
      let holder = 0;
      try {
        holder = Number(readFileSync(`${lock}/pid`, "utf8"));
      } catch {
        // just created, pid not written yet
      }
      if (holder && !existsSync(`/proc/${holder}`)) rmSync(lock, { recursive: true, force: true });
      else Bun.sleepSync(2000);
    }
  }
  try {
    return buildRoot(arch, dir, want);
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

function buildRoot(arch: DebArch, dir: string, want: string): { root: string } | { skip: string } {
  try {
    if (readFileSync(join(dir, MARKER), "utf8") === want) return { root: dir };
  } catch {
    // still to build
  }
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  console.log(`roots: building ${dir} with debootstrap (once; then cached)${arch === "arm64" && process.arch !== "arm64" ? ", the second stage under qemu" : ""}`);
  const foreign = arch !== (process.arch === "arm64" ? "arm64" : "amd64");
  const first = sh([
    "debootstrap", "--variant=minbase", `--include=${PACKAGES.join(",")}`, `--arch=${arch}`, ...(foreign ? ["--foreign"] : []),
    SUITE, tmp, MIRROR,
  ]);
  if (!first.ok) {
    rmSync(tmp, { recursive: true, force: true });
    return { skip: `debootstrap ${SUITE} ${arch} failed: ${first.out.trim().split("\n").slice(-3).join(" ")}` };
  }
  if (foreign) {
    const second = sh(["chroot", tmp, "/debootstrap/debootstrap", "--second-stage"]);
    if (!second.ok) {
      rmSync(tmp, { recursive: true, force: true });
      return { skip: `debootstrap --second-stage (${arch} under qemu) failed: ${second.out.trim().split("\n").slice(-3).join(" ")}` };
    }
  }
  if (!existsSync(join(tmp, "usr/bin/python3"))) {
    rmSync(tmp, { recursive: true, force: true });
    return { skip: `the ${arch} root has no /usr/bin/python3 after debootstrap` };
  }
  writeFileSync(join(tmp, MARKER), want);
  // An incomplete root, or one of another recipe, goes.
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  return { root: dir };
}

/** Half-built roots of killed runs. */
export function removeStaleTemporaries(): void {
  const r = sh(["sh", "-c", `ls -d ${ROOTS_DIR}/*.tmp-[0-9]* 2>/dev/null`]);
  for (const p of r.out.split("\n").filter(Boolean)) {
    const pid = Number(p.slice(p.lastIndexOf("-") + 1));
    if (pid && !existsSync(`/proc/${pid}`)) rmSync(p, { recursive: true, force: true });
  }
}
