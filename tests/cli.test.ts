/**
 * End-to-end tests of the built launcher, dist/exm, run as a user would run
 * it: argument pass-through, exit statuses and signals, inherited
 * descriptors, the environment the program gets, every bad input, the
 * library cache's checks, --extract, --inspect, and (with a working library)
 * a program that outgrows a memory cgroup.
 *
 * Each test gets its own HOME and XDG_CACHE_HOME under a temporary directory,
 * so the real cache is never touched. Tests that need root, mount or cgroups
 * skip, saying what is missing.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "bun";
import {
  chmodSync, chownSync, closeSync, existsSync, lstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync,
  rmSync, statSync, symlinkSync, writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openFds, passInheritedFds } from "../src/fds";
import { renderOptionsMarkdown } from "../src/help";
import { FD_CLOEXEC, getFdFlags } from "../src/libc";
import { parseSize } from "../src/options";
import {
  EXM, LIB, cgroupAvailable, cleanEnv, python3, runInCgroup, skipUnless, spawnUntil, tmpfsAvailable, withTmpfs,
} from "./support/sys";

const ROOT = join(import.meta.dir, "..");
const DIST_LIB = join(ROOT, "dist", "libexm.so");
const IS_ROOT = process.getuid?.() === 0;
const NOBODY = 65534;
const MiB = 1 << 20;
const GiB = 1 << 30;

const BUILT = existsSync(EXM) ? null : `${EXM} is not built (npm install / npm run build)`;
if (BUILT) console.warn(`skip CLI tests: ${BUILT}`);

let scratch: string;
beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), "exm-cli-"));
});
afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
});

let serial = 0;
/** A fresh HOME with its own (not yet created) cache, per call. */
function home(): { home: string; cache: string; env: Record<string, string | undefined> } {
  const h = join(scratch, `home-${++serial}`);
  mkdirSync(h, { recursive: true });
  const cache = join(h, ".cache");
  return { home: h, cache, env: { HOME: h, XDG_CACHE_HOME: cache, XDG_RUNTIME_DIR: undefined, TMPDIR: undefined } };
}

interface Result {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  pid: number;
}

/** Runs argv (clean environment + env) and collects everything. */
async function sh(argv: string[], env: Record<string, string | undefined> = {}, cwd?: string): Promise<Result> {
  const proc = spawn(argv, { env: cleanEnv(env), cwd, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  await proc.exited;
  return { code: proc.exitCode, signal: proc.signalCode === null ? null : String(proc.signalCode), stdout, stderr, pid: proc.pid };
}

/** Runs dist/exm with args in a fresh HOME (unless env says otherwise). */
function exm(args: string[], env: Record<string, string | undefined> = {}, cwd?: string): Promise<Result> {
  return sh([EXM, ...args], { ...home().env, ...env }, cwd);
}

function explain(r: Result): string {
  return `code=${r.code} signal=${r.signal}\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;
}

function expectOk(r: Result): void {
  if (r.code !== 0) throw new Error(`expected exit 0\n${explain(r)}`);
}

/** Prints one line per argument: its bytes in hex. */
const ARGV_HEX = ["sh", "-c", 'for a in "$@"; do printf %s "$a" | od -An -tx1 | tr -d " \\n"; echo; done', "argv-hex"];
const hex = (s: string | Buffer) => Buffer.from(s).toString("hex");

/** bash -c script with args; used where the test needs raw bytes or fd set-up only a shell does. */
function bash(script: string, env: Record<string, string | undefined> = {}): Promise<Result> {
  return sh(["bash", "-c", script], { EXM, ...home().env, ...env });
}

/**
 * Prints the environment the program was exec'd with. (The library may edit
 * its copy, e.g. it takes EXM_STATS out so that children do not inherit it;
 * /proc/self/environ keeps what execve passed.)
 */
const ENV_AT_EXEC = ["cat", "/proc/self/environ"];
const envLines = (out: string) =>
  Object.fromEntries(out.split(/[\n\0]/).filter((l) => l.includes("=")).map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));

describe.skipIf(BUILT !== null)("exm CLI", () => {
  // ---- documentation ---------------------------------------------------------

  test("README option table matches src/options.ts", () => {
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    const m = /<!-- options:begin[^>]*-->\n([\s\S]*?)\n<!-- options:end -->/.exec(readme);
    expect(m).not.toBeNull();
    expect(m![1]).toBe(renderOptionsMarkdown());
  });

  test("--help and -h show every option; --version shows versions", async () => {
    for (const flag of ["--help", "-h"]) {
      const r = await exm([flag]);
      expectOk(r);
      for (const o of ["--threshold", "--dir", "--child", "--advice", "--max-disk", "--stats", "--stats-file", "--verbose", "--extract", "--inspect", "--prune-cache", "EXM_THRESHOLD"]) {
        expect(r.stdout).toContain(o);
      }
    }
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
    for (const flag of ["--version", "-V"]) {
      const r = await exm([flag]);
      expectOk(r);
      expect(r.stdout).toContain(`exm ${pkg.version}`);
      expect(r.stdout).toMatch(/libexm \d+\.\d+\.\d+/);
    }
  });

  test("sizes: bytes, K/M/G/T with optional B/iB, decimals, any case; junk rejected", () => {
    const ok: [string, bigint][] = [
      ["0", 0n], ["4096", 4096n], ["512B", 512n], ["1k", 1024n], ["1KB", 1024n], ["1KiB", 1024n], ["64M", 64n << 20n],
      ["1.5GiB", 3n << 29n], ["1.5g", 3n << 29n], ["2T", 2n << 40n], [".5K", 512n], ["1.1K", 1126n], [" 8M ", 8n << 20n],
      ["7E", 7n << 60n], ["9223372036854775807", (1n << 63n) - 1n],
    ];
    for (const [text, bytes] of ok) expect({ text, bytes: parseSize(text, "x") }).toEqual({ text, bytes });
    for (const bad of ["", "M", "-1", "1.5", "1.5.5G", "12Q", "1 G B", "0x10", "1e6", "5iB", "8E", "9223372036854775808", "1GG"]) {
      expect(() => parseSize(bad, "--threshold")).toThrow(/^--threshold: /);
    }
  });

  // ---- arguments ---------------------------------------------------------------

  test("arguments reach the program byte for byte (spaces, --, -h, exm flags, non-UTF-8, empty)", async () => {
    const r = await bash(
      `exec "$EXM" ${ARGV_HEX.map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(" ")} ` +
        `'a b' -- -h --threshold 1G $'\\xff\\xfe' $'caf\\xc3\\xa9' '' '  '`,
    );
    expectOk(r);
    const lines = r.stdout.split("\n").slice(0, -1);
    expect(lines).toEqual([
      hex("a b"), hex("--"), hex("-h"), hex("--threshold"), hex("1G"), "fffe", hex("café"), "", hex("  "),
    ]);
  });

  test("exm's options end at --, and -- itself is not passed on", async () => {
    const r = await exm(["--threshold", "2M", "--", ...ARGV_HEX, "--verbose", "x"]);
    expectOk(r);
    expect(r.stdout).toBe(`${hex("--verbose")}\n${hex("x")}\n`);
    expect(r.stderr).toBe("");
  });

  test("a program name that looks like an option follows --", async () => {
    const dir = join(scratch, "dash-prog");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "-odd"), "#!/bin/sh\necho odd \"$@\"\n", { mode: 0o755 });
    const r = await exm(["--", "-odd", "-h"], { PATH: `${dir}:${process.env.PATH}` });
    expectOk(r);
    expect(r.stdout).toBe("odd -h\n");
  });

  test("the program is found on PATH like execvp, and a script without #! runs with /bin/sh", async () => {
    const dir = join(scratch, "path-prog");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "hello-exm"), "echo hello from sh $1\n", { mode: 0o755 });
    const r = await exm(["hello-exm", "there"], { PATH: `/nonexistent:${dir}:/usr/bin:/bin` });
    expectOk(r);
    expect(r.stdout).toBe("hello from sh there\n");
  });

  // ---- process identity, exit status, signals --------------------------------------

  test("exm becomes the program: same pid", async () => {
    const r = await exm(["sh", "-c", "echo $$"]);
    expectOk(r);
    expect(Number(r.stdout.trim())).toBe(r.pid);
  });

  test("exit statuses 0 and 7 are the program's", async () => {
    expect((await exm(["true"])).code).toBe(0);
    expect((await exm(["sh", "-c", "exit 7"])).code).toBe(7);
  });

  test("a signal ends the program as itself: SIGTERM gives 143 in the shell", async () => {
    const direct = await exm(["sh", "-c", "kill -TERM $$"]);
    expect(direct.signal).toBe("SIGTERM");
    const r = await bash(`"$EXM" sh -c 'kill -TERM $$'; echo "status=$?"`);
    expect(r.stdout).toBe("status=143\n");
  });

  test("SIGPIPE and SIGXFSZ are not ignored and no signal is blocked in the program", async () => {
    const r = await exm(["grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"]);
    expectOk(r);
    const ign = BigInt(`0x${/SigIgn:\s*([0-9a-f]+)/.exec(r.stdout)![1]}`);
    const blk = BigInt(`0x${/SigBlk:\s*([0-9a-f]+)/.exec(r.stdout)![1]}`);
    expect(ign & (1n << 12n)).toBe(0n); // SIGPIPE
    expect(ign & (1n << 24n)).toBe(0n); // SIGXFSZ
    expect(blk).toBe(0n);
    // And so a writer into a closed pipe dies quietly, as it does without exm.
    const p = await bash(`"$EXM" sh -c 'yes | head -c 1 >/dev/null'`);
    expect(p.stderr).toBe("");
  });

  test("the open-file soft limit is the one exm was started with, not Bun's raised one", async () => {
    const r = await bash(`ulimit -Sn 512 && "$EXM" sh -c 'ulimit -Sn; ulimit -Hn'; ulimit -Hn`);
    expectOk(r);
    const [soft, hard, parentHard] = r.stdout.trim().split("\n");
    expect(soft).toBe("512");
    expect(hard).toBe(parentHard);
  });

  // ---- descriptors ----------------------------------------------------------------

  test("an inherited fd 9 is readable by the program, and exm adds or drops no descriptor", async () => {
    const file = join(scratch, "fd9.txt");
    writeFileSync(file, "through fd 9\n");
    const before = join(scratch, "fds-before");
    // The shell lists its own descriptors (whatever it inherited, plus 4 and 9),
    // then becomes exm, which becomes sh: sh must hold exactly the same set.
    const r = await bash(
      `exec 9<'${file}' 4</dev/null; ls /proc/$$/fd >'${before}'; ` +
        `exec "$EXM" sh -c 'cat <&9; ls /proc/$$/fd | tr "\\n" " "'`,
    );
    expectOk(r);
    const [first, fds] = r.stdout.split("\n");
    expect(first).toBe("through fd 9");
    const sorted = (xs: string[]) => xs.filter(Boolean).map(Number).sort((x, y) => x - y);
    const expected = sorted(readFileSync(before, "utf8").split("\n"));
    expect(expected).toContain(4);
    expect(expected).toContain(9);
    expect(sorted(fds!.split(" "))).toEqual(expected);
  });

  test("only descriptors open when exm started, still on the same file, lose close-on-exec (src/fds.ts)", () => {
    // In this process, as in exm's: a descriptor from before the snapshot is
    // passed; one opened after it, or one that reused a closed number for another
    // file, keeps close-on-exec.
    const before = openSync(join(scratch, "fd-before"), "w");
    const reused = openSync(join(scratch, "fd-reused"), "w");
    const cloexec = (fd: number) => (getFdFlags(fd) & FD_CLOEXEC) !== 0;
    expect([cloexec(before), cloexec(reused)]).toEqual([true, true]);
    const atStart = openFds();
    closeSync(reused);
    // The kernel gives the lowest free number, and the runtime may free a lower
    // one meanwhile (a finished subprocess's pipe): open until the reused number
    // comes back, keeping the others open (they are "after the snapshot" too).
    const opened: number[] = [];
    let other = -1;
    for (let i = 0; i < 256 && other !== reused; i++) {
      const fd = openSync(join(scratch, `fd-other-${i}`), "w");
      if (fd === reused) other = fd;
      else opened.push(fd);
    }
    const after = openSync(join(scratch, "fd-after"), "w");
    opened.push(after);
    try {
      expect(other).toBe(reused);
      passInheritedFds(atStart);
      expect([cloexec(before), cloexec(other)]).toEqual([false, true]);
      expect(opened.filter((fd) => !cloexec(fd))).toEqual([]);
    } finally {
      for (const fd of [before, other, ...opened]) if (fd >= 0) closeSync(fd);
    }
  });

  // ---- environment -------------------------------------------------------------------

  test("defaults reach the program normalized", async () => {
    const r = await exm(ENV_AT_EXEC);
    expectOk(r);
    const e = envLines(r.stdout);
    expect(e.EXM_THRESHOLD).toBe(String(64 * MiB));
    expect(e.EXM_DIR).toBe("/tmp");
    expect(e.EXM_CHILD).toBe("cow");
    expect(e.EXM_ADVICE).toBe("auto");
    expect(e.EXM_MAX_DISK).toBe("0");
    expect(e.EXM_STATS).toBe("0");
    expect(e.EXM_VERBOSE).toBe("0");
    expect(e.LD_PRELOAD).toMatch(/\/\.cache\/exm\/libexm-[0-9a-f]+\.so$/);
  });

  test("flags beat EXM_* variables, which beat defaults; sizes and paths are normalized", async () => {
    const cwd = join(scratch, "cwd");
    mkdirSync(join(cwd, "data"), { recursive: true });
    const env = {
      EXM_THRESHOLD: "1G", EXM_CHILD: "shared", EXM_ADVICE: "RANDOM", EXM_MAX_DISK: "10G", EXM_DIR: "/tmp",
      EXM_VERBOSE: "0", EXM_STATS: "1",
    };
    const r = await exm(
      ["--threshold", "1.5M", "--max-disk=2GiB", "--dir", "data", "--stats-file", "s.json", "--verbose", ...ENV_AT_EXEC], env, cwd);
    expectOk(r);
    const e = envLines(r.stdout);
    expect(e.EXM_THRESHOLD).toBe(String(1.5 * MiB));
    expect(e.EXM_MAX_DISK).toBe(String(2 * GiB));
    expect(e.EXM_DIR).toBe(join(cwd, "data"));
    expect(e.EXM_CHILD).toBe("shared");
    expect(e.EXM_ADVICE).toBe("random");
    // With statistics exm stays the parent: the program's libraries leave
    // records in a private directory of the run, not in the file itself.
    expect(e.EXM_STATS).toBe("0");
    expect(e.EXM_STATS_DIR).toMatch(new RegExp(`^${join(cwd, "data")}/\\.exm-stats-\\w+$`));
    expect(existsSync(e.EXM_STATS_DIR!)).toBe(false); // removed when the run ended
    expect(JSON.parse(readFileSync(join(cwd, "s.json"), "utf8")).exitCode).toBe(0);
    expect(e.EXM_VERBOSE).toBe("1");

    const r2 = await exm(ENV_AT_EXEC, { ...env, TMPDIR: "/var/tmp" });
    const e2 = envLines(r2.stdout);
    expect(e2.EXM_THRESHOLD).toBe(String(GiB));
    expect(e2.EXM_DIR).toBe("/tmp");
    expect(e2.EXM_STATS).toBe("0");
    expect(e2.EXM_STATS_DIR).toMatch(/^\/tmp\/\.exm-stats-/);
    expect(r2.stderr).toMatch(/^exm: pid \d+ \(cat\) exited 0 after /);
    const r3 = await exm(["--stats", ...ENV_AT_EXEC], { TMPDIR: "/var/tmp" });
    expect(envLines(r3.stdout).EXM_DIR).toBe("/var/tmp");
    expect(envLines(r3.stdout).EXM_STATS_DIR).toMatch(/^\/var\/tmp\/\.exm-stats-/);
  });

  test("a .env, bunfig.toml, package.json or tsconfig.json in the working directory is not read by exm", async () => {
    const cwd = mkdtempSync(join(scratch, "autoload-"));
    const touched = join(cwd, "preloaded");
    writeFileSync(join(cwd, ".env"), "EXM_THRESHOLD=junk\nFROM_DOTENV=1\n");
    writeFileSync(join(cwd, "evil.ts"), `require("node:fs").writeFileSync(${JSON.stringify(touched)}, "x");\n`);
    writeFileSync(join(cwd, "bunfig.toml"), 'preload = ["./evil.ts"]\n');
    writeFileSync(join(cwd, "package.json"), '{ "type": "commonjs", "imports": { "#x": "./evil.ts" } }\n');
    writeFileSync(join(cwd, "tsconfig.json"), '{ "compilerOptions": { "jsx": "bogus" } }\n');
    const r = await exm(ENV_AT_EXEC, {}, cwd);
    expectOk(r);
    const e = envLines(r.stdout);
    expect(e.EXM_THRESHOLD).toBe(String(64 * MiB));
    expect(e.FROM_DOTENV).toBeUndefined();
    expect(existsSync(touched)).toBe(false);
  });

  test("LD_PRELOAD: ours first, the existing entries after it in order, no duplicate", async () => {
    const h = home();
    const first = await sh([EXM, "printenv", "LD_PRELOAD"], h.env);
    const ours = first.stdout.trim();
    const r = await sh([EXM, "printenv", "LD_PRELOAD"], { ...h.env, LD_PRELOAD: `/nonexistent/a.so ${ours}:/nonexistent/b.so` });
    expect(r.stdout.trim()).toBe(`${ours}:/nonexistent/a.so:/nonexistent/b.so`);
  });

  test("the library is really preloaded into the program (and its children)", async () => {
    const r = await exm(["sh", "-c", "grep -c libexm /proc/self/maps"]);
    expectOk(r);
    expect(Number(r.stdout.trim())).toBeGreaterThan(0);
  });

  test("non-UTF-8 bytes in the environment reach the program untouched", async () => {
    const r = await bash(`export ODD=$'\\xff\\xfeok'; exec "$EXM" sh -c 'printf %s "$ODD" | od -An -tx1 | tr -d " \\n"'`);
    expectOk(r);
    expect(r.stdout).toBe("fffe6f6b");
  });

  // ---- under an address-space limit (src/restart.ts) --------------------------------

  // Bun's JIT needs ~3 GB of address space at start, bun:ffi the JIT, exm bun:ffi.
  for (const gb of [1, 2]) {
    test(`under ulimit -v ${gb} GiB exm restarts itself: arguments and environment byte for byte, the library preloaded`, async () => {
      const hexOf = (v: string) => `printf %s "${v}" | od -An -tx1 | tr -d " \\n"; echo`;
      const r = await bash(
        `ulimit -v ${gb * 1024 * 1024}; export ODD=$'\\xff\\xfeok'; ` +
          `exec "$EXM" --threshold 1M sh -c '${hexOf("$1")}; ${hexOf("$ODD")}; tr "\\0" "\\n" </proc/$$/environ | cut -d= -f1; ` +
          `grep -c libexm /proc/self/maps' argv0 $'\\xc3\\x28x'`,
      );
      expectOk(r);
      const [argHex, oddHex, ...names] = r.stdout.trim().split("\n");
      expect(argHex).toBe("c32878");
      expect(oddHex).toBe("fffe6f6b");
      expect(names.filter((k) => k === "EXM_RESTART" || k.startsWith("BUN_JSC_"))).toEqual([]);
      expect(names).toContain("LD_PRELOAD");
      expect(Number(names.at(-1))).toBeGreaterThan(0); // libexm mapped in the program
      expect(r.stderr).toBe("");
    });
  }

  test("an EXM_RESTART this exm did not write (another pid's, or junk) is the program's variable, not exm's arguments", async () => {
    const stale = JSON.stringify({ pid: 1, args: [Buffer.from("true").toString("base64")], environ: [] });
    for (const value of [stale, "junk"]) {
      const r = await exm(["sh", "-c", 'echo "ran $EXM_RESTART"'], { EXM_RESTART: value });
      expectOk(r);
      expect(r.stdout).toBe(`ran ${value}\n`);
    }
  });

  test("under ulimit -v a program that allocates runs served (python3, 300 MiB block in the arena)", async () => {
    const py = python3();
    if (skipUnless(py ? null : "python3 not found", "the python3 run under ulimit -v")) return;
    const r = await bash(
      `ulimit -v ${2 * 1024 * 1024}; exec "$EXM" --threshold 64M ${py} -c ` +
        `'import ctypes; b = bytearray(300 << 20); b[-1] = 1; ` +
        `lib = ctypes.CDLL(None); lib.exm_is_file_backed.argtypes = [ctypes.c_void_p]; ` +
        `print("fb", lib.exm_is_file_backed((ctypes.c_char * 1).from_buffer(b, 0)))'`,
    );
    expectOk(r);
    expect(r.stdout).toBe("fb 1\n");
  });

  test("under ulimit -v, an environment too large to pass on again: one line saying how to start exm, nothing run", async () => {
    const m = marker();
    const r = await bash(`ulimit -v ${1024 * 1024}; export BIG=$(head -c 110000 /dev/zero | tr '\\0' x); exec "$EXM" touch ${m}`);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^exm: [^\n]*\n$/);
    expect(r.stderr).toContain("starting again failed");
    expect(r.stderr).toContain("start exm with BUN_JSC_jitMemoryReservationSize=67108864 in its environment");
    expect(existsSync(m)).toBe(false);
  });

  test("under ulimit -v, inherited descriptors a restart would close: one line saying how to start exm, nothing run", async () => {
    const m = marker();
    const r = await bash(`ulimit -v ${1024 * 1024}; exec 7</dev/null; exec "$EXM" touch ${m}`);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^exm: [^\n]*\n$/);
    expect(r.stderr).toContain("address-space limit (ulimit -v) of 1 GiB");
    expect(r.stderr).toContain("would close the descriptor 7 it was given: start exm with BUN_JSC_jitMemoryReservationSize=67108864");
    expect(existsSync(m)).toBe(false);
    // ... and that way it runs, the descriptor passed on
    const ok = await bash(`ulimit -v ${1024 * 1024}; exec 7</dev/null; BUN_JSC_jitMemoryReservationSize=67108864 exec "$EXM" sh -c 'test -r /proc/self/fd/7 && echo fd7'`);
    expectOk(ok);
    expect(ok.stdout).toBe("fd7\n");
  });

  // ---- bad input -------------------------------------------------------------------

  const marker = () => join(scratch, `ran-${++serial}`);
  const badCases: [string, string[], Record<string, string>, number, RegExp][] = [
    ["unknown option", ["--bogus"], {}, 2, /unknown option '--bogus'/],
    ["unknown short option", ["-x"], {}, 2, /unknown option '-x'/],
    ["junk size", ["--threshold", "12Q"], {}, 2, /--threshold: '12Q' is not a size/],
    ["negative size", ["--threshold=-5M"], {}, 2, /--threshold: '-5M' is not a size/],
    ["overflowing size", ["--max-disk", "9000000000T"], {}, 2, /--max-disk: '9000000000T' is too large/],
    ["bad child mode", ["--child", "fork"], {}, 2, /--child: 'fork' is not one of cow, shared, duplicate/],
    ["bad advice", ["--advice", "fast"], {}, 2, /--advice: 'fast' is not one of auto, normal, sequential, random/],
    ["bad EXM_THRESHOLD", [], { EXM_THRESHOLD: "lots" }, 2, /EXM_THRESHOLD: 'lots' is not a size/],
    ["bad EXM_CHILD", [], { EXM_CHILD: "fork" }, 2, /EXM_CHILD: 'fork' is not one of/],
    ["bad EXM_VERBOSE", [], { EXM_VERBOSE: "maybe" }, 2, /EXM_VERBOSE: 'maybe' is not a switch/],
    ["missing data directory", ["--dir", "/nonexistent/exm"], {}, 2, /data directory \/nonexistent\/exm \(from --dir\) does not exist/],
    ["data directory that is a file", ["--dir", "/etc/hostname"], {}, 2, /data directory \/etc\/hostname \(from --dir\) is not a directory/],
    ["missing TMPDIR", [], { TMPDIR: "/nonexistent/tmp" }, 2, /data directory \/nonexistent\/tmp \(from TMPDIR\) does not exist/],
    ["--stats with --stats-file", ["--stats", "--stats-file", "/tmp/x.json"], {}, 2, /cannot be used together/],
    ["stats file in a missing directory", ["--stats-file", "/nonexistent/s.json"], {}, 2, /directory \/nonexistent of the statistics file does not exist/],
  ];
  for (const [what, args, env, status, message] of badCases) {
    test(`bad input: ${what} -> exit ${status}, one line, nothing run`, async () => {
      const m = marker();
      const r = await exm([...args, "touch", m], env);
      expect(r.code).toBe(status);
      expect(r.stderr).toMatch(/^exm: [^\n]*\n$/);
      expect(r.stderr).toMatch(message);
      expect(r.stdout).toBe("");
      expect(existsSync(m)).toBe(false);
    });
  }

  test("bad input: a value-taking option at the end, no program, actions misused", async () => {
    const cases: [string[], number, RegExp][] = [
      [["--threshold"], 2, /option --threshold needs a value \(SIZE\)/],
      [["--threshold", "true"], 2, /^exm: --threshold: 'true' is not a size \(bytes, or a number with K, M, G, T, P or E: 4096, 512K, 1\.5GiB\) or auto; no program follows, so was the value of --threshold left out\? \(see exm --help\)\n$/],
      [["--child", "python3"], 2, /^exm: --child: 'python3' is not one of cow, shared, duplicate; no program follows, so was the value of --child left out\? \(see exm --help\)\n$/],
      [["--dir", "/tmp"], 2, /^exm: missing program to run \(see exm --help\)\n$/],
      [[], 2, /missing program/],
      [["--verbose"], 2, /missing program/],
      [["--version", "true"], 2, /--version takes no program/],
      [["--json", "true"], 2, /--json goes with --inspect/],
      [["--extract", "/tmp/x", "--prune-cache"], 2, /cannot be used together/],
      [["--inspect", "abc"], 2, /--inspect: not a process id: 'abc'/],
      [["--verbose=1", "true"], 2, /option --verbose takes no value/],
    ];
    for (const [args, status, message] of cases) {
      const r = await exm(args);
      expect({ args, code: r.code }).toEqual({ args, code: status });
      expect(r.stderr).toMatch(/^exm: [^\n]*\n$/);
      expect(r.stderr).toMatch(message);
    }
  });

  test("bad input: program not found -> 127, not executable or a directory -> 126", async () => {
    const notFound = await exm(["no-such-program-exm-test"]);
    expect(notFound.code).toBe(127);
    expect(notFound.stderr).toBe("exm: no-such-program-exm-test: command not found\n");
    const missingPath = await exm(["./no/such/file"]);
    expect(missingPath.code).toBe(127);
    expect(missingPath.stderr).toMatch(/^exm: \.\/no\/such\/file: no such file or directory\n$/);

    const plain = join(scratch, "not-executable");
    writeFileSync(plain, "#!/bin/sh\necho hi\n", { mode: 0o644 });
    // Root may execute a file with no x bit at all? No: execve needs one x bit even for root.
    const notExec = await exm([plain]);
    expect(notExec.code).toBe(126);
    expect(notExec.stderr).toMatch(/permission denied/);
    const dir = await exm(["/tmp"]);
    expect(dir.code).toBe(126);
    expect(dir.stderr).toMatch(/is a directory/);
    const dirOnPath = join(scratch, "pathdir");
    mkdirSync(join(dirOnPath, "prog-is-dir"), { recursive: true });
    const d2 = await exm(["prog-is-dir"], { PATH: `${dirOnPath}:/usr/bin:/bin` });
    expect(d2.code).toBe(126);
    const interp = join(scratch, "bad-interp");
    writeFileSync(interp, "#!/nonexistent/interpreter\n", { mode: 0o755 });
    const bi = await exm([interp]);
    expect(bi.code).toBe(127);
    expect(bi.stderr).toBe(`exm: ${interp}: cannot run: its interpreter /nonexistent/interpreter (from its #! line) does not exist\n`);
    // The same with --stats, where exm starts the program as its child.
    const bis = await exm(["--stats", interp]);
    expect([bis.code, bis.stderr]).toEqual([127, bi.stderr]);
    // A binary whose ELF loader is missing (made for another system): the loader is named.
    const foreign = join(scratch, "foreign-true");
    const elf = readFileSync("/bin/true");
    const loader = /\/lib[\w/.-]*\/ld-[\w.-]+\.so\.\d/.exec(elf.toString("latin1"))![0];
    const fake = `${loader.slice(0, loader.lastIndexOf("/") + 1)}ld-exm-missing`.padEnd(loader.length, "x");
    writeFileSync(foreign, Buffer.from(elf.toString("latin1").replace(loader, fake), "latin1"), { mode: 0o755 });
    const fe = await exm([foreign]);
    expect([fe.code, fe.stderr]).toEqual([127, `exm: ${foreign}: cannot run: its interpreter ${fake} (its ELF loader: built for another system?) does not exist\n`]);
  });

  test.skipIf(skipUnless(tmpfsAvailable(), "unwritable data directory (read-only mount)"))(
    "bad input: an unwritable data directory -> exit 2",
    async () => {
      const dir = mkdtempSync(join(scratch, "ro-"));
      const m = spawnSync(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", dir]);
      if (m.exitCode !== 0) throw new Error(`mount -o ro failed: ${m.stderr.toString()}`);
      try {
        const r = await exm(["--dir", dir, "true"]);
        expect(r.code).toBe(2);
        expect(r.stderr).toBe(`exm: data directory ${dir} (from --dir) is not writable\n`);
      } finally {
        spawnSync(["umount", dir]);
      }
    },
  );

  // ---- static and setuid programs ---------------------------------------------------

  test("a static program runs unserved and exm says so in one line", async () => {
    const src = join(scratch, "static.c");
    const bin = join(scratch, "static-hello");
    writeFileSync(src, '#include <stdio.h>\nint main(void) { puts("static ok"); return 0; }\n');
    const c = spawnSync(["cc", "-static", "-O0", "-o", bin, src], { stderr: "pipe" });
    if (c.exitCode !== 0) {
      console.warn(`skip static part: cc -static failed: ${c.stderr.toString().trim()}`);
      return;
    }
    const quiet = await exm([bin]);
    expectOk(quiet);
    expect(quiet.stdout).toBe("static ok\n");
    expect(quiet.stderr).toMatch(/^exm: .*static-hello is statically linked: LD_PRELOAD cannot reach it, so it runs without exm\n$/);
    const loud = await exm(["--verbose", bin]);
    expectOk(loud);
    expect(loud.stderr).toMatch(/is statically linked: LD_PRELOAD cannot reach it/);
  });

  test.skipIf(skipUnless(IS_ROOT ? null : "not root (chown needed)", "setuid program"))(
    "a setuid program of another user runs unserved, with a warning",
    async () => {
      const bin = join(scratch, "setuid-true");
      writeFileSync(bin, readFileSync("/bin/true"));
      chownSync(bin, NOBODY, NOBODY);
      chmodSync(bin, 0o4755);
      const r = await exm([bin]);
      expectOk(r);
      expect(r.stderr).toMatch(/^exm: .*setuid-true is setuid: the loader ignores LD_PRELOAD for it, so it runs without exm\n$/);
    },
  );

  // ---- the library cache ---------------------------------------------------------------

  test("the cache is created private (0700) and holds one verified copy of the library", async () => {
    const h = home();
    expectOk(await sh([EXM, "true"], h.env));
    const dir = join(h.cache, "exm");
    const st = lstatSync(dir);
    expect(st.isDirectory()).toBe(true);
    expect(st.mode & 0o777).toBe(0o700);
    const files = readdirSync(dir);
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/^libexm-[0-9a-f]+\.so$/);
    const lib = join(dir, files[0]!);
    expect(readFileSync(lib).equals(readFileSync(DIST_LIB))).toBe(true);
    expect(statSync(lib).mode & 0o022).toBe(0);
  });

  test("a cache directory that is a symlink is refused, naming it", async () => {
    const h = home();
    const elsewhere = join(h.home, "elsewhere");
    mkdirSync(elsewhere, { mode: 0o700 });
    mkdirSync(h.cache);
    symlinkSync(elsewhere, join(h.cache, "exm"));
    const m = marker();
    const r = await sh([EXM, "touch", m], h.env);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `exm: refusing cache directory ${h.cache}/exm: it is a symbolic link, not a directory (exm loads its library only from a private directory of yours)\n`,
    );
    expect(existsSync(m)).toBe(false);
    expect(readdirSync(elsewhere)).toEqual([]);
  });

  test("a cache directory with mode 0755 is refused and left alone", async () => {
    const h = home();
    mkdirSync(join(h.cache, "exm"), { recursive: true });
    chmodSync(join(h.cache, "exm"), 0o755);
    const r = await sh([EXM, "true"], h.env);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^exm: refusing cache directory ${h.cache}/exm: it has mode 0755, must be 0700`));
    expect(statSync(join(h.cache, "exm")).mode & 0o777).toBe(0o755);
  });

  test.skipIf(skipUnless(IS_ROOT ? null : "not root (chown needed)", "foreign cache owner"))(
    "a cache directory owned by someone else is refused",
    async () => {
      const h = home();
      mkdirSync(join(h.cache, "exm"), { recursive: true, mode: 0o700 });
      chownSync(join(h.cache, "exm"), NOBODY, NOBODY);
      const r = await sh([EXM, "true"], h.env);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`^exm: refusing cache directory ${h.cache}/exm: it is owned by uid ${NOBODY}, not by you`));
    },
  );

  test("a cache whose parent others may write (not sticky) is skipped: they could swap it", async () => {
    const h = home();
    const shared = join(h.home, "shared");
    mkdirSync(shared, { mode: 0o777 });
    chmodSync(shared, 0o777);
    const run = join(h.home, "run");
    mkdirSync(run, { mode: 0o700 });
    const r = await sh([EXM, "--verbose", "sh", "-c", 'echo "$LD_PRELOAD"'], { ...h.env, XDG_CACHE_HOME: shared, XDG_RUNTIME_DIR: run });
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toMatch(new RegExp(`^${run}/exm/libexm-[0-9a-f]+\\.so$`));
    expect(r.stderr).toContain(`skipped cache location ${shared}/exm: ${shared} is writable by others and not sticky`);
    expect(existsSync(join(shared, "exm"))).toBe(false);
  });

  test("a planted or damaged library file is replaced, never loaded", async () => {
    const h = home();
    const first = await sh([EXM, "printenv", "LD_PRELOAD"], h.env);
    const lib = first.stdout.trim();
    const good = readFileSync(DIST_LIB);
    const plants: [string, () => void][] = [
      ["wrong content", () => {
        chmodSync(lib, 0o700);
        writeFileSync(lib, Buffer.alloc(good.length, 0x41));
      }],
      ["group-writable", () => {
        rmSync(lib);
        writeFileSync(lib, good, { mode: 0o664 });
        chmodSync(lib, 0o664);
      }],
      ["symlink", () => {
        rmSync(lib);
        const evil = join(h.home, "evil.so");
        writeFileSync(evil, good);
        symlinkSync(evil, lib);
      }],
      ["truncated", () => {
        rmSync(lib);
        writeFileSync(lib, good.subarray(0, 100), { mode: 0o555 });
      }],
    ];
    for (const [what, plant] of plants) {
      plant();
      const r = await sh([EXM, "sh", "-c", "grep -c libexm /proc/self/maps"], h.env);
      expect({ what, code: r.code }).toEqual({ what, code: 0 });
      expect(r.stderr).toMatch(new RegExp(`^exm: warning: replacing ${lib}: `));
      const st = lstatSync(lib);
      expect(st.isFile()).toBe(true);
      expect(st.mode & 0o022).toBe(0);
      expect(readFileSync(lib).equals(good)).toBe(true);
    }
  });

  test("20 concurrent cold starts all succeed and leave one library file", async () => {
    const h = home();
    const runs = await Promise.all(Array.from({ length: 20 }, (_, i) => sh([EXM, "sh", "-c", `echo run ${i}`], h.env)));
    runs.forEach((r, i) => {
      expect({ i, code: r.code, stderr: r.stderr, stdout: r.stdout }).toEqual({ i, code: 0, stderr: "", stdout: `run ${i}\n` });
    });
    const files = readdirSync(join(h.cache, "exm"));
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/^libexm-[0-9a-f]+\.so$/);
  });

  test.skipIf(skipUnless(tmpfsAvailable(), "noexec fallback"))(
    "a cache on a noexec mount falls back to the next location, and the library is loaded",
    async () => {
      await withTmpfs(8 * MiB, async (noexec) => {
        chmodSync(noexec, 0o700); // a 0777 mount would be skipped for a different reason (others could swap the cache)
        const h = home();
        const run = join(h.home, "run");
        mkdirSync(run, { mode: 0o700 });
        const env = { ...h.env, XDG_CACHE_HOME: noexec, XDG_RUNTIME_DIR: run };
        const r = await sh([EXM, "--verbose", "sh", "-c", 'echo "$LD_PRELOAD"; grep -c libexm /proc/self/maps'], env);
        expectOk(r);
        const [preload, count] = r.stdout.split("\n");
        expect(preload).toMatch(new RegExp(`^${run}/exm/libexm-[0-9a-f]+\\.so$`));
        expect(Number(count)).toBeGreaterThan(0);
        expect(r.stderr).toContain(`skipped cache location ${noexec}/exm: on a noexec mount`);
      }, { noexec: true });
    },
  );

  test("--prune-cache removes other versions and stale temporary files, keeps the current one", async () => {
    const h = home();
    const lib = (await sh([EXM, "printenv", "LD_PRELOAD"], h.env)).stdout.trim();
    const dir = join(h.cache, "exm");
    writeFileSync(join(dir, "libexm-0123456789abcdef0123.so"), "old");
    writeFileSync(join(dir, ".libexm-x.so.1.a.tmp"), "stale");
    const old = new Date(Date.now() - 3600_000);
    const { utimesSync } = await import("node:fs");
    utimesSync(join(dir, ".libexm-x.so.1.a.tmp"), old, old);
    const r = await sh([EXM, "--prune-cache"], h.env);
    expectOk(r);
    expect(r.stdout).toContain("removed");
    expect(readdirSync(dir)).toEqual([lib.slice(dir.length + 1)]);
  });

  test("--prune-cache keeps an old version that a running program maps, naming the process", async () => {
    const h = home();
    const lib = (await sh([EXM, "printenv", "LD_PRELOAD"], h.env)).stdout.trim();
    const dir = join(h.cache, "exm");
    // Another exm version's library, in use: a program preloading it.
    const other = join(dir, "libexm-00000000000000000000.so");
    writeFileSync(other, readFileSync(lib), { mode: 0o755 });
    const user = spawn(["sleep", "60"], { env: cleanEnv({ LD_PRELOAD: other }), stdout: "ignore", stderr: "ignore", stdin: "ignore" });
    try {
      for (let i = 0; i < 100 && !readFileSync(`/proc/${user.pid}/maps`, "latin1").includes(other); i++) await Bun.sleep(20);
      const r = await sh([EXM, "--prune-cache"], h.env);
      expectOk(r);
      expect(r.stdout).toBe(`kept ${other}: in use by pid ${user.pid} (sleep)\n`);
      expect(existsSync(other)).toBe(true);
    } finally {
      user.kill("SIGKILL");
      await user.exited;
    }
    const r2 = await sh([EXM, "--prune-cache"], h.env);
    expect(r2.stdout).toBe(`removed ${other}\n`);
  });

  // ---- --extract and --inspect ------------------------------------------------------------

  test("--extract writes a library that links (-lexm) and dlopens, and its header", async () => {
    const out = join(scratch, "extracted", "sub");
    const r = await exm(["--extract", out]);
    expectOk(r);
    expect(r.stdout).toContain(`${out}/libexm.so`);
    // A relative directory is shown normalised: no "/./" or "/../" in the path.
    const rel = await exm(["--extract", "./extracted/../extracted/sub/"], {}, scratch);
    expectOk(rel);
    expect(rel.stdout.split("\n")[0]).toBe(`wrote ${out}/libexm.so (libexm ${/libexm (\S+)\)/.exec(r.stdout)![1]}) and ${out}/exm.h`);
    expect(readFileSync(join(out, "libexm.so")).equals(readFileSync(DIST_LIB))).toBe(true);
    expect(readFileSync(join(out, "exm.h"), "utf8")).toContain("exm_version");

    const src = join(scratch, "use-exm.c");
    writeFileSync(src, [
      "#include <dlfcn.h>",
      "#include <stdio.h>",
      "#include <exm.h>",
      "int main(void) {",
      "  printf(\"linked %s\\n\", exm_version());",
      `  void *h = dlopen("${out}/libexm.so", RTLD_NOW);`,
      "  if (!h) { printf(\"dlopen: %s\\n\", dlerror()); return 1; }",
      "  const char *(*v)(void) = (const char *(*)(void))dlsym(h, \"exm_version\");",
      "  printf(\"dlopened %s\\n\", v ? v() : \"?\");",
      "  return 0;",
      "}",
    ].join("\n"));
    const bin = join(scratch, "use-exm");
    const c = spawnSync(["cc", "-o", bin, src, `-I${out}`, `-L${out}`, "-lexm", `-Wl,-rpath,${out}`, "-ldl"], { stderr: "pipe" });
    if (c.exitCode !== 0) throw new Error(c.stderr.toString());
    const run = await sh([bin]);
    expectOk(run);
    expect(run.stdout).toMatch(/^linked \d+\.\d+\.\d+\ndlopened \d+\.\d+\.\d+\n$/);
  });

  // The programs that --inspect looks at are python3 processes.
  const PY = python3();
  const noPython = skipUnless(PY ? null : "no python3", "--inspect of a running program");

  test.skipIf(noPython)("--inspect reports an arena mapping: size, resident, disk, settings (text and JSON)", async () => {
    // A stand-in arena made the way the library makes one: an O_TMPFILE file
    // in the data directory mapped MAP_SHARED, 2 GiB virtual, 8 MiB touched.
    const data = mkdtempSync(join(scratch, "inspect-"));
    const script = [
      "import mmap, os, sys, time",
      "fd = os.open(os.environ['EXM_DIR'], os.O_TMPFILE | os.O_RDWR, 0o600)",
      "os.ftruncate(fd, 2 << 30)",
      "m = mmap.mmap(fd, 2 << 30, mmap.MAP_SHARED)",
      "m[0:8 << 20] = b'x' * (8 << 20)",
      "print('ready', flush=True)",
      "time.sleep(60)",
    ].join("\n");
    const { proc } = await spawnUntil([EXM, "--threshold", "1G", "--dir", data, PY!, "-c", script], home().env, "ready\n");
    try {
      const text = await exm(["--inspect", String(proc.pid)]);
      expectOk(text);
      expect(text.stdout).toContain(`pid ${proc.pid}:`);
      expect(text.stdout).toContain("virtual size: 2 GiB");
      expect(text.stdout).toContain("EXM_THRESHOLD=1073741824");
      const json = await exm(["--inspect", String(proc.pid), "--json"]);
      expectOk(json);
      const rep = JSON.parse(json.stdout);
      expect(rep.pid).toBe(proc.pid);
      expect(rep.settings.EXM_THRESHOLD).toBe("1073741824");
      expect(rep.settings.EXM_DIR).toBe(data);
      expect(rep.library).toMatch(/libexm-[0-9a-f]+\.so$/);
      // The stand-in's mapping (a library arena, if one was made, is another).
      const a = rep.arenas.find((x: { size: number }) => x.size === 2 * GiB);
      expect(a).toBeDefined();
      expect(a.size).toBe(2 * GiB);
      expect(a.shared).toBe(true);
      expect(a.file).toMatch(new RegExp(`^${data}/#\\d+ \\(deleted\\)$`));
      expect(a.resident).toBeGreaterThanOrEqual(8 * MiB);
      expect(a.resident).toBeLessThan(64 * MiB);
      expect(a.disk).toBeGreaterThanOrEqual(8 * MiB);
      expect(a.disk).toBeLessThan(64 * MiB);
    } finally {
      proc.kill("SIGKILL");
      await proc.exited;
    }
  });

  test("--inspect: a missing pid and a process without an arena are clear errors", async () => {
    const gone = await exm(["--inspect", "4194000"]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toBe("exm: no process with pid 4194000\n");
    const self = await exm(["--inspect", String(process.pid)]);
    expect(self.code).toBe(1);
    expect(self.stderr).toMatch(new RegExp(`^exm: pid ${process.pid} \\(.*\\) has no exm arena: libexm is not loaded in it\\n$`));
  });

  test.skipIf(noPython)("--inspect finds the arena the library made in a program it serves", async () => {
    const script = "b = bytearray(32 << 20)\nb[::4096] = b'\\x01' * ((32 << 20) // 4096)\nprint('ready', flush=True)\nimport time; time.sleep(60)";
    const { proc } = await spawnUntil([EXM, "--threshold", "1M", PY!, "-c", script], home().env, "ready\n");
    try {
      const r = await exm(["--inspect", String(proc.pid), "--json"]);
      if (r.code !== 0) throw new Error(`no arena found: is libexm functional yet? (${LIB})\n${explain(r)}`);
      const rep = JSON.parse(r.stdout);
      expect(rep.arenas.length).toBeGreaterThanOrEqual(1);
      expect(rep.arenas[0].size).toBeGreaterThanOrEqual(GiB);
      expect(rep.arenas[0].resident).toBeGreaterThanOrEqual(32 * MiB - 4096);
    } finally {
      proc.kill("SIGKILL");
      await proc.exited;
    }
  });

  // ---- the point of it all ----------------------------------------------------------------

  test.skipIf(skipUnless(cgroupAvailable(), "python3 under a 256 MiB cgroup"))(
    "python3 allocating 1 GiB under a 256 MiB memory cgroup finishes with exm, is OOM-killed without",
    async () => {
      const py = python3();
      if (!py) throw new Error("python3 not found");
      const data = mkdtempSync(join(scratch, "ooc-"));
      const script = [
        "b = bytearray(1 << 30)",
        "b[::4096] = b'\\x01' * ((1 << 30) // 4096)",
        "print('sum', sum(b[::4096]))",
      ].join("\n");
      const env = { ...home().env };
      const withExm = await runInCgroup(256 * MiB, [EXM, "--threshold", "64M", "--dir", data, py, "-c", script], { env, timeoutMs: 120_000 });
      if (withExm.code !== 0 || withExm.stdout !== `sum ${(1 << 30) / 4096}\n`) {
        throw new Error(
          `under exm the program should finish (is libexm functional yet? ${LIB})\n` +
            `code=${withExm.code} signal=${withExm.signal} oomKilled=${withExm.oomKilled}\n${withExm.stdout}${withExm.stderr}`,
        );
      }
      const without = await runInCgroup(256 * MiB, [py, "-c", script], { env, timeoutMs: 120_000 });
      expect({ oomKilled: without.oomKilled, code: without.code }).toEqual({ oomKilled: true, code: null });
      expect(readdirSync(data)).toEqual([]);
    },
    300_000,
  );
});
