/**
 * The files users download (`npm run release`: dist/release/exm-linux-x64,
 * exm-linux-arm64, SHA256SUMS), tested where users run them: on Debian 11
 * (glibc 2.31, older than the Debian 12 that builds them) for real, not by
 * symbol lists alone.
 *
 * - the x86-64 binary in a bullseye amd64 root (chroot): `--version`, the
 *   CLI's exit statuses (127, 126, the program's own), and the root's own
 *   python3 outgrowing a memory cgroup (the same run without exm is
 *   OOM-killed);
 * - the arm64 binary in a bullseye arm64 root under qemu-aarch64 (binfmt):
 *   the same, smaller (qemu emulates every instruction);
 * - the glibc floor check of build.ts refuses a library that needs a newer
 *   glibc;
 * - programs exm cannot serve on this machine (musl, another architecture,
 *   an old kernel's gaps) are told in one line and still run.
 *
 * Costs: the release build (30 s, 50 s with the runtimes downloaded) runs when a binary is missing or older
 * than the sources; the roots are built once (amd64 2.5 min, arm64 26 min
 * on the 2-core test machine, see tests/support/roots.ts) and cached in
 * /var/cache/exm-test-roots; then the file takes ~85 s. Without root,
 * debootstrap, qemu or cgroups the parts that need them skip, saying why.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "bun";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { compareVersions, GLIBC_FLOOR, parseGlibcNeeds } from "../build";
import { kernelGaps, kernelUnserved } from "../src/program";
import { aarch64Available, type DebArch, ensureRoot, removeStaleTemporaries } from "./support/roots";
import { aptInstall, cgroupAvailable, EXM, explain, run, runInCgroup, skipUnless, type RunResult } from "./support/sys";

const ROOT = join(import.meta.dir, "..");
const RELEASE = join(ROOT, "dist", "release");
const IS_ROOT = process.getuid?.() === 0;
const MiB = 1 << 20;

const scratch = mkdtempSync(join(tmpdir(), "exm-release-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function sh(argv: string[], env?: Record<string, string>): { ok: boolean; out: string; code: number | null } {
  const r = spawnSync(argv, { stdout: "pipe", stderr: "pipe", env: env ? { ...process.env, ...env } : undefined });
  return { ok: r.exitCode === 0, out: `${r.stdout.toString()}${r.stderr.toString()}`, code: r.exitCode };
}

/* ---- the release build: made here when missing or older than its sources ---------------- */

function newestSource(): number {
  let newest = 0;
  const walk = (p: string) => {
    const st = statSync(p);
    if (st.isDirectory()) for (const e of readdirSync(p)) walk(join(p, e));
    else newest = Math.max(newest, st.mtimeMs);
  };
  for (const p of ["src", "embed", "native", "build.ts", "package.json"]) walk(join(ROOT, p));
  return newest;
}

function releaseState(): string | null {
  const files = ["exm-linux-x64", "exm-linux-arm64", "SHA256SUMS"].map((f) => join(RELEASE, f));
  const missing = files.filter((f) => !existsSync(f));
  if (missing.length) return `missing ${missing.join(", ")}`;
  const src = newestSource();
  return files.some((f) => statSync(f).mtimeMs < src) ? "older than its sources" : null;
}

/** null when dist/release is current (built here if needed), else why it could not be built. */
function ensureRelease(): string | null {
  const state = releaseState();
  if (!state) return null;
  const cross = aptInstall(["gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross"], "release.test", () => sh(["sh", "-c", "command -v aarch64-linux-gnu-gcc"]).ok);
  if (cross) return cross;
  console.log(`release: dist/release is ${state}: npm run release`);
  const r = sh([process.execPath, join(ROOT, "build.ts"), "release"]);
  if (!r.ok) return `npm run release failed:\n${r.out}`;
  return releaseState();
}

const RELEASE_WHY = ensureRelease();
const NO_RELEASE = skipUnless(RELEASE_WHY, "release tests");

/* ---- running inside a root -------------------------------------------------------------------- */

if (IS_ROOT) removeStaleTemporaries();

interface Root {
  dir: string;
  /** The release binary for this root's architecture. */
  binary: string;
}

function prepareRoot(arch: DebArch): Root | string {
  if (RELEASE_WHY) return RELEASE_WHY;
  if (!IS_ROOT) return "not root: chroot needs root";
  if (arch === "arm64" && process.arch !== "arm64") {
    const q = aarch64Available();
    if (q) return q;
  }
  const t0 = Date.now();
  const r = ensureRoot(arch);
  if ("skip" in r) return r.skip;
  if (Date.now() - t0 > 5000) console.log(`release: built the bullseye ${arch} root in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  return { dir: r.root, binary: join(RELEASE, arch === "amd64" ? "exm-linux-x64" : "exm-linux-arm64") };
}

const AMD64 = prepareRoot("amd64");
const ARM64 = prepareRoot("arm64");
const NO_AMD64 = skipUnless(typeof AMD64 === "string" ? AMD64 : null, "Debian 11 amd64 root");
const NO_ARM64 = skipUnless(typeof ARM64 === "string" ? ARM64 : null, "Debian 11 arm64 root (qemu-aarch64)");
const NO_CGROUP = cgroupAvailable();

/** A private scratch directory inside the root (HOME, data, the binary), removed at the end. */
const rootScratch = new Map<string, string>();
function scratchIn(root: Root): string {
  let d = rootScratch.get(root.dir);
  if (!d) {
    d = `/tmp/exm-release-${process.pid}`;
    mkdirSync(join(root.dir, d), { recursive: true, mode: 0o700 });
    writeFileSync(join(root.dir, d, "exm"), readFileSync(root.binary), { mode: 0o755 });
    mkdirSync(join(root.dir, d, "home"), { mode: 0o700 });
    rootScratch.set(root.dir, d);
  }
  return d;
}
afterAll(() => {
  for (const [dir, d] of rootScratch) rmSync(join(dir, d), { recursive: true, force: true });
});

/**
 * argv that runs `argv` inside the root as a fresh login would: its own
 * mount namespace with /proc (the launcher reads /proc/self), chroot, and
 * nothing of this machine's environment.
 */
function inRoot(root: Root, argv: string[], opts: { fileLimitKiB?: number } = {}): string[] {
  const d = scratchIn(root);
  const ulimit = opts.fileLimitKiB ? `ulimit -f ${opts.fileLimitKiB}; ` : "";
  return [
    "unshare", "--mount", "--fork", "--", "sh", "-c",
    `${ulimit}home=$1; shift; mount -t proc proc "$0/proc" && exec chroot "$0" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin "HOME=$home" "TMPDIR=$home" LANG=C.UTF-8 "$@"`,
    root.dir, `${d}/home`, ...argv,
  ];
}

/**
 * qemu-user 7.2 (Debian 12) keeps flags for every guest page of a mapping:
 * the arena's 8 TiB reservation alone made qemu use over 2 GiB. The library
 * sizes its file within RLIMIT_FSIZE, so arm64 runs under qemu get
 * `ulimit -f` 1 GiB (real arm64 machines need no such limit).
 */
const QEMU_FILE_LIMIT_KIB = 1 << 20;

function exmIn(root: Root): string {
  return `${scratchIn(root)}/exm`;
}

/** The root's own python3: allocates `mib` MiB in one bytearray, writes every page, reads them back. */
function pythonOoc(mib: number): string[] {
  return [
    "python3", "-c",
    [
      "import sys",
      `n = ${mib} << 20`,
      "b = bytearray(n)",
      "b[::4096] = b'\\x07' * (n // 4096)",
      "ok = sum(b[::4096]) == 7 * (n // 4096)",
      "print('ooc', 'ok' if ok else 'BAD', sys.version.split()[0])",
      "sys.exit(0 if ok else 1)",
    ].join("\n"),
  ];
}

/**
 * The root's python3 allocates, writes and reads `mib` MiB under a memory
 * cgroup of `limitMiB`: through the root's exm it finishes, every byte of it
 * file-backed (as --stats says); without exm it is OOM-killed. `opts` as in
 * inRoot, for the exm run only (the one that writes a file).
 */
async function oocInRoot(root: Root, limitMiB: number, mib: number, timeoutMs: number, opts: { fileLimitKiB?: number } = {}) {
  const served = await runInCgroup(
    limitMiB * MiB,
    inRoot(root, [exmIn(root), "--threshold", "1M", "--stats", ...pythonOoc(mib)], opts),
    { timeoutMs },
  );
  expect(served.code, explain(served)).toBe(0);
  expect(served.oomKilled).toBe(false);
  expect(served.stdout).toMatch(/^ooc ok 3\.9\./);
  expect(served.stderr).toMatch(new RegExp(`peak ${mib}\\.\\d MiB file-backed`));
  const plain = await runInCgroup(limitMiB * MiB, inRoot(root, pythonOoc(mib)), { timeoutMs });
  expect(plain.oomKilled, explain(plain)).toBe(true);
}

function expectContract(results: { notFound: RunResult; notExec: RunResult; own: RunResult; pyOwn: RunResult }): void {
  expect(results.notFound.code, explain(results.notFound)).toBe(127);
  expect(results.notFound.stderr).toMatch(/^exm: no-such-program-here: command not found\n$/);
  expect(results.notExec.code, explain(results.notExec)).toBe(126);
  expect(results.notExec.stderr).toMatch(/^exm: \/etc\/passwd: permission denied/);
  expect(results.own.code, explain(results.own)).toBe(42);
  expect(results.pyOwn.code, explain(results.pyOwn)).toBe(3);
  expect(results.pyOwn.stdout).toBe("from python\n");
}

async function contract(root: Root) {
  const exm = exmIn(root);
  return {
    notFound: await run(inRoot(root, [exm, "no-such-program-here"])),
    notExec: await run(inRoot(root, [exm, "/etc/passwd"])),
    own: await run(inRoot(root, [exm, "sh", "-c", "exit 42"])),
    pyOwn: await run(inRoot(root, [exm, "python3", "-c", "import sys; print('from python'); sys.exit(3)"])),
  };
}

/* ---- the artefacts ---------------------------------------------------------------------------- */

describe.skipIf(NO_RELEASE)("npm run release", () => {
  test("SHA256SUMS checks both binaries the way the README says (sha256sum -c)", () => {
    const r = spawnSync(["sha256sum", "-c", "SHA256SUMS"], { cwd: RELEASE, stdout: "pipe", stderr: "pipe" });
    expect(r.exitCode, r.stderr.toString()).toBe(0);
    expect(r.stdout.toString()).toBe("exm-linux-x64: OK\nexm-linux-arm64: OK\n");
  });

  test("each binary is for its machine and embeds the library built for the same one, on the glibc floor", () => {
    const want: [string, string, Record<string, string> | null][] = [
      ["exm-linux-x64", "Advanced Micro Devices X86-64", process.arch === "x64" ? {} : null],
      ["exm-linux-arm64", "AArch64", process.arch === "arm64" ? {} : aarch64Available() ? null : { QEMU_LD_PREFIX: "/usr/aarch64-linux-gnu" }],
    ];
    for (const [file, machine, env] of want) {
      const bin = join(RELEASE, file);
      expect(sh(["readelf", "-h", bin]).out).toMatch(new RegExp(`Machine:\\s+${machine}\n`));
      // Bun's runtime itself: the same floor.
      const own = parseGlibcNeeds(sh(["readelf", "-V", "-W", bin]).out, "", "");
      expect(own.versions.filter((v) => v === "PRIVATE" || compareVersions(v, GLIBC_FLOOR) > 0)).toEqual([]);
      if (!env || (env.QEMU_LD_PREFIX && !existsSync(env.QEMU_LD_PREFIX))) {
        console.warn(`skip the embedded library of ${file}: this machine cannot run it`);
        continue;
      }
      const out = join(scratch, `extract-${file}`);
      const x = sh([join(RELEASE, file), "--extract", out], env);
      expect(x.ok, x.out).toBe(true);
      const lib = join(out, "libexm.so");
      expect(sh(["readelf", "-h", lib]).out).toMatch(new RegExp(`Machine:\\s+${machine}\n`));
      const needs = parseGlibcNeeds(sh(["readelf", "-V", "-W", lib]).out, sh(["readelf", "--dyn-syms", "-W", lib]).out, sh(["readelf", "-d", "-W", lib]).out);
      expect(needs.versions.length).toBeGreaterThan(0);
      for (const v of needs.versions) expect(v !== "PRIVATE" && compareVersions(v, GLIBC_FLOOR) <= 0, `${file}: GLIBC_${v}`).toBe(true);
      expect(needs.needed).toEqual(expect.arrayContaining(["libpthread.so.0", "libdl.so.2", "libc.so.6"]));
    }
  });

  test("the glibc floor check fails the build, naming the symbol, for a library that needs glibc 2.34", () => {
    const src = join(scratch, "new.c");
    const so = join(scratch, "libnew.so");
    writeFileSync(src, "#define _GNU_SOURCE\n#include <unistd.h>\nvoid close_rest(void) { closefrom(3); }\n");
    const c = sh(["cc", "-shared", "-fPIC", "-o", so, src, "-Wl,--no-as-needed", "-l:libpthread.so.0", "-l:libdl.so.2"]);
    if (skipUnless(c.ok ? null : `this glibc has no closefrom (2.34): ${c.out.trim().split("\n").at(-1)}`, "glibc floor failure")) return;
    const bad = sh([process.execPath, join(ROOT, "build.ts"), "glibc-floor", so]);
    expect(bad.ok).toBe(false);
    expect(bad.out).toMatch(/GLIBC_2\.34: closefrom/);
    const good = sh([process.execPath, join(ROOT, "build.ts"), "glibc-floor", join(ROOT, "build", "libexm.so")]);
    expect(good.ok, good.out).toBe(true);
  });
});

/* ---- Debian 11, x86-64 ------------------------------------------------------------------------ */

describe.skipIf(NO_RELEASE || NO_AMD64)("exm-linux-x64 on Debian 11 (glibc 2.31)", () => {
  const root = AMD64 as Root;

  test("--version names the target and the glibc the library needs", async () => {
    const r = await run(inRoot(root, [exmIn(root), "--version"]));
    expect(r.code, explain(r)).toBe(0);
    expect(r.stdout).toMatch(/^exm \d+\.\d+\.\d+ \(libexm \d+\.\d+\.\d+, bun [\d.]+\) for linux-x64; the library needs glibc 2\.1[0-7](\.\d+)? or later\n$/);
    const libc = await run(inRoot(root, ["ldd", "--version"]));
    expect(libc.stdout).toMatch(/GLIBC 2\.31/);
  });

  test("exit statuses: 127 not found, 126 not executable, the program's own", async () => {
    expectContract(await contract(root));
  });

  test.skipIf(skipUnless(NO_CGROUP, "out-of-core run in the Debian 11 root"))(
    "the root's python3 writes and reads 768 MiB under a 256 MiB memory cgroup through exm; without exm it is OOM-killed",
    () => oocInRoot(root, 256, 768, 240_000),
  );
});

/* ---- Debian 11, arm64 under qemu ------------------------------------------------------------- */

describe.skipIf(NO_RELEASE || NO_ARM64)("exm-linux-arm64 on Debian 11 under qemu-aarch64", () => {
  const root = ARM64 as Root;

  test("--version names the target; the root is arm64", async () => {
    const r = await run(inRoot(root, [exmIn(root), "--version"]), { timeoutMs: 120_000 });
    expect(r.code, explain(r)).toBe(0);
    expect(r.stdout).toMatch(/ for linux-arm64; the library needs glibc 2\.17 or later\n$/);
    const arch = await run(inRoot(root, ["python3", "-c", "import platform; print(platform.machine())"]), { timeoutMs: 120_000 });
    expect(arch.stdout).toBe("aarch64\n");
  });

  test("exit statuses: 127 not found, 126 not executable, the program's own", async () => {
    expectContract(await contract(root));
  });

  test.skipIf(skipUnless(NO_CGROUP, "out-of-core run in the arm64 root"))(
    "the root's python3 writes and reads 384 MiB under a 160 MiB memory cgroup through exm; without exm it is OOM-killed",
    () => oocInRoot(root, 160, 384, 280_000, { fileLimitKiB: QEMU_FILE_LIMIT_KIB }),
  );
});

/* ---- programs exm cannot serve, on this machine ------------------------------------------------ */

const NO_EXM = skipUnless(existsSync(EXM) ? null : `${EXM} is not built`, "unserved-program tests");

/** `source` compiled by `cc` (another C library's or another architecture's) into scratch/name. */
function compileWith(cc: string, name: string, source: string): string {
  const src = join(scratch, `${name}.c`);
  const bin = join(scratch, name);
  writeFileSync(src, source);
  const c = sh([cc, "-o", bin, src]);
  expect(c.ok, c.out).toBe(true);
  return bin;
}

describe.skipIf(NO_EXM)("programs exm cannot serve are told in one line and run", () => {
  test("a musl program: told, run without the library (a glibc preload would stop it loading)", async () => {
    const why = aptInstall(["musl-tools"], "release.test", () => sh(["sh", "-c", "command -v musl-gcc"]).ok);
    if (skipUnless(why, "musl program")) return;
    const bin = compileWith("musl-gcc", "musl-prog",
      '#include <stdio.h>\n#include <stdlib.h>\nint main(void) { char *p = malloc(8 << 20); p[0] = 1; puts("musl ran"); return 7; }\n');
    expect(sh(["readelf", "-l", bin]).out).toContain("ld-musl-");
    // What exm saves it from: musl's loader takes the preload and fails on glibc's symbols.
    const plain = await run([bin], { env: { LD_PRELOAD: join(ROOT, "build", "libexm.so") } });
    expect(plain.code).not.toBe(7);
    const r = await run([EXM, "--threshold", "1M", bin], { env: { HOME: scratch } });
    expect(r.code, explain(r)).toBe(7);
    expect(r.stdout).toBe("musl ran\n");
    expect(r.stderr).toMatch(/^exm: .*musl-prog is linked against another C library \(musl: its loader is \/lib\/ld-musl-x86_64\.so\.1\), which cannot load exm's glibc-built library, so it runs without exm\n$/);
  });

  test.skipIf(process.arch !== "x64")("a program of another architecture (arm64, through qemu): told, run without the library", async () => {
    const why = aarch64Available() ?? aptInstall(["gcc-aarch64-linux-gnu"], "release.test", () => sh(["sh", "-c", "command -v aarch64-linux-gnu-gcc"]).ok);
    if (skipUnless(why, "foreign-architecture program")) return;
    const bin = compileWith("aarch64-linux-gnu-gcc", "arm-prog", '#include <stdio.h>\nint main(void) { puts("arm ran"); return 5; }\n');
    const r = await run([EXM, bin], { env: { HOME: scratch, QEMU_LD_PREFIX: "/usr/aarch64-linux-gnu" } });
    expect(r.code, explain(r)).toBe(5);
    expect(r.stdout).toBe("arm ran\n");
    expect(r.stderr).toMatch(/^exm: .*arm-prog is built for arm64 and exm's library for x86-64, so it runs without exm\n$/);
  });

  test("an old kernel: what it may lack is said with --verbose, and the program is still served", async () => {
    // setarch --uname-2.6 makes uname() report 2.6.<60+minor>, as programs from 2011 expect: older than
    // the kernels that brought O_TMPFILE (3.11) and copy_file_range (4.5).
    if (skipUnless(sh(["setarch", "--uname-2.6", "true"]).ok ? null : "setarch --uname-2.6 does not work here", "old-kernel test")) return;
    const r = await run(["setarch", "--uname-2.6", EXM, "--verbose", "--threshold", "1M", "--stats", "sh", "-c", "uname -r"], { env: { HOME: scratch } });
    expect(r.code, explain(r)).toBe(0);
    expect(r.stdout).toMatch(/^2\.6\.\d+/);
    expect(r.stderr).toMatch(/^exm: kernel 2\.6\.\d+\S* is older than 3\.11, which brought O_TMPFILE: if it lacks it, backing files are created, then unlinked at once$/m);
    expect(r.stderr).toMatch(/older than 4\.5, which brought copy_file_range/);
    expect(r.stderr).not.toMatch(/runs without exm/);
    const quiet = await run(["setarch", "--uname-2.6", EXM, "true"], { env: { HOME: scratch } });
    expect(quiet.code).toBe(0);
    expect(quiet.stderr).toBe("");
  });

  test("a kernel older than what the library cannot do without is a one-line refusal to serve, by release", () => {
    expect(kernelUnserved("6.1.0-13-amd64")).toBeNull();
    expect(kernelUnserved("3.10.0-1160.el7.x86_64")).toBeNull();
    const old = kernelUnserved("2.6.18-419.el5");
    expect(old?.line).toBe("kernel 2.6.18-419.el5 lacks fallocate (Linux 2.6.23), F_DUPFD_CLOEXEC and O_CLOEXEC (Linux 2.6.24), which exm's library needs, so the program runs without exm");
    expect(old?.dropPreload).toBe(true);
    expect(kernelGaps("3.10.0-1160.el7.x86_64").soft.map((l) => /brought (.*?):/.exec(l)?.[1])).toEqual(["O_TMPFILE", "copy_file_range"]);
    expect(kernelGaps("not a release")).toEqual({ hard: [], soft: [] });
  });
});
