/**
 * Faults and bad input (issue 7), beyond what native*.test.ts and
 * cli.test.ts already cover (a 256 MiB request on a 64 MiB tmpfs, the disk
 * cap once, SIGKILL, a few bad values):
 * - never worse than without exm: the data directory filling up mid-run (by
 *   the program itself or another writer), the EXM_MAX_DISK cap, an arena
 *   made small by an address-space limit: what the arena cannot serve comes
 *   from RAM (no ENOMEM / MemoryError / RangeError the program would not get
 *   without exm), exm says so in one line naming the reason and the data
 *   directory, never SIGBUS, and the arena serves again once there is room;
 * - a data directory unusable at start, or gone before the first big
 *   allocation: the library alone warns once and passes everything through;
 * - the ways a process ends (SIGSEGV, exit from a thread, exit while other
 *   threads allocate, pthread_exit from main, abort, a signal): no file left,
 *   all disk given back, and the arena kept out of core dumps;
 * - garbage in every EXM_* variable and every CLI option: a clear line, no
 *   crash;
 * - programs exm cannot serve (static, setuid, setgid, file capabilities):
 *   they run, and exm says so once.
 * Library bugs found here and not yet fixed are kept as test.todo with the
 * reproduction; fixed ones became ordinary tests.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "bun";
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseSetting, variable } from "../src/settings";
import { ATTACKER_UID, IS_ROOT, MiB, VICTIM_UID, asUser, otherUsersAvailable, realPython, scratch, which } from "./support/programs";
import {
  EXM,
  LIB,
  cProgram,
  cgroupAvailable,
  compileC,
  dirIsEmpty,
  explain,
  fsUsed,
  kv,
  libAvailable,
  listDir,
  run,
  runInCgroup,
  runWithLib,
  skipUnless,
  spawnUntil,
  tmpfsAvailable,
  waitFor,
  withTmpfs,
} from "./support/sys";

const noLib = skipUnless(libAvailable(), "fault tests");
const noTmpfs = noLib || skipUnless(tmpfsAvailable(), "fault tests on a small tmpfs");
const noUsers = noLib || skipUnless(otherUsersAvailable(), "fault tests as another user");
const noCgroup = noLib || skipUnless(cgroupAvailable(), "mlockall tests (a memory cgroup: the bug OOM-kills)");
const noCli = skipUnless(existsSync(EXM) ? null : `${EXM} not built`, "CLI fault tests");
const PY = realPython();
const NODE = which("node");

let work: ReturnType<typeof scratch>;
beforeAll(() => {
  work = scratch("exm-faults-");
  chmodSync(work.dir, 0o755); // other uids run programs copied in here
});
afterAll(() => work.remove());

let serial = 0;
function subdir(name: string, mode = 0o755): string {
  const d = join(work.dir, `${name}-${++serial}`);
  mkdirSync(d, { mode });
  chmodSync(d, mode);
  return d;
}

/** Lines of a stderr text (no empty last one). */
const lines = (s: string) => s.split("\n").filter((l) => l !== "");

function faults(): string {
  return cProgram("stress_faults");
}

/* ---- the data directory fills up mid-run ------------------------------------------ */

/** Exactly one line from exm: the arena could not serve a request, naming why and dir. */
function assertToldRam(stderr: string, dir: string, reason: RegExp): void {
  const mine = lines(stderr).filter((l) => l.startsWith("exm: "));
  expect(mine.length).toBe(1);
  expect(mine[0]).toMatch(/^exm: a request of .* does not fit in the file-backed arena in .*; such requests are served in RAM$/);
  expect(mine[0]).toContain(dir);
  expect(mine[0]).toMatch(reason);
}

describe.skipIf(noTmpfs)("data directory filling up mid-run (96 MiB tmpfs): RAM takes over", () => {
  for (const t of ["0", "4096", "1M"]) {
    test(`C at threshold ${t}: the next block comes from RAM, never SIGBUS; space comes back; another writer fills it; carries on`, async () => {
      await withTmpfs(96 * MiB, async (dir) => {
        const r = await runWithLib([faults(), "fill", "1100K", "6M", join(dir, "filler")], { EXM_DIR: dir, EXM_THRESHOLD: t }, {
          timeoutMs: 120_000,
        });
        if (r.signal === "SIGBUS") throw new Error(`SIGBUS\n${explain(r)}`);
        if (r.code !== 0 || !r.stdout.includes("fill ok")) throw new Error(`fill at threshold ${t}\n${explain(r)}`);
        assertToldRam(r.stderr, dir, /no space left on its filesystem/);
        const v = kv(r.stdout);
        console.log(`fill at ${t}: ${v.first_mib} MiB until full, ${v.refilled_mib} of ${v.freed_mib} MiB freed used again, filler took ${v.filler_mib} MiB`);
        expect(listDir(dir)).toEqual([]);
      });
    }, 150_000);
  }

  test.skipIf(!PY)("python3: 160 MiB of bytearrays on a 96 MiB disk, no MemoryError, frees, allocates again, finishes", async () => {
    const script = `
blocks, errors = [], 0
try:
    for i in range(40):
        blocks.append(bytearray(4 << 20))
        blocks[-1][::4096] = b"\\x05" * len(blocks[-1][::4096])
except MemoryError:
    errors += 1
n = len(blocks)
del blocks[n // 2:]
again = []
try:
    for i in range(30):
        again.append(bytes(4 << 20))
except MemoryError:
    errors += 1
ok = all(b[4096 * 7] == 5 for b in blocks)
print("first", n, "again", len(again), "errors", errors, "intact", ok)
del again
print("python carried on" if ok and errors == 0 and n == 40 else "python FAILED")
`;
    await withTmpfs(96 * MiB, async (dir) => {
      const r = await runWithLib([PY!, "-c", script], { EXM_DIR: dir, EXM_THRESHOLD: "1M" }, { timeoutMs: 120_000 });
      if (r.signal) throw new Error(`python killed by ${r.signal}\n${explain(r)}`);
      if (r.code !== 0 || !r.stdout.includes("python carried on")) throw new Error(explain(r));
      assertToldRam(r.stderr, dir, /no space left/);
      console.log(`python on a full tmpfs: ${r.stdout.trim().split("\n")[0]}`);
      expect(listDir(dir)).toEqual([]);
    });
  }, 150_000);

  test.skipIf(!NODE)("node: Buffers past the disk's size come from RAM, no RangeError; node carries on", async () => {
    const script = `
const held = [];
let failed = 0;
try { for (let i = 0; i < 20; i++) held.push(Buffer.alloc(8 << 20, 1)); } catch (e) { failed = 1; console.log(String(e)); }
const n = held.length;
held.length = Math.floor(n / 2);
const again = Buffer.alloc(4 << 20, 7);
console.log("held", n, "failed", failed, "again", again[12345]);
console.log(failed === 0 && n === 20 && held.every((b) => b[8 << 19] === 1) && again[12345] === 7 ? "node carried on" : "node FAILED");
`;
    await withTmpfs(96 * MiB, async (dir) => {
      const r = await runWithLib([NODE!, "-e", script], { EXM_DIR: dir, EXM_THRESHOLD: "1M" }, { timeoutMs: 120_000 });
      if (r.signal) throw new Error(`node killed by ${r.signal}\n${explain(r)}`);
      if (r.code !== 0 || !r.stdout.includes("node carried on")) throw new Error(explain(r));
      expect(listDir(dir)).toEqual([]);
    });
  }, 150_000);

  test.skipIf(!PY)("python3 at threshold 0 on a full disk: small objects and big ones carry on in RAM", async () => {
    // At threshold 0 every allocation, however small, needs disk: once it is
    // gone the interpreter's small objects come from RAM too.
    await withTmpfs(32 * MiB, async (dir) => {
      const script = "x = []\nfor i in range(64): x.append(bytearray(1 << 20)); x[-1][-1] = i % 256\nd = {str(i): [i] * 10 for i in range(20000)}\nprint('done', len(x), sum(b[-1] for b in x), len(d))\n";
      const r = await runWithLib([PY!, "-c", script], { EXM_DIR: dir, EXM_THRESHOLD: "0" }, { timeoutMs: 60_000 });
      if (r.code !== 0) throw new Error(explain(r));
      expect(r.stdout).toContain(`done 64 ${(63 * 64) / 2} 20000`);
      assertToldRam(r.stderr, dir, /no space left/);
      expect(listDir(dir)).toEqual([]);
    });
  }, 90_000);
});

describe.skipIf(noLib)("EXM_MAX_DISK: the same, against exm's own cap", () => {
  for (const t of ["0", "4096", "1M"]) {
    test(`C at threshold ${t} with a 64 MiB cap`, async () => {
      const dir = subdir("data");
      const r = await runWithLib([faults(), "fill", "1100K", "6M"], { EXM_DIR: dir, EXM_THRESHOLD: t, EXM_MAX_DISK: "64M" }, {
        timeoutMs: 120_000,
      });
      if (r.code !== 0 || !r.stdout.includes("fill ok")) throw new Error(`fill under a cap at threshold ${t}\n${explain(r)}`);
      assertToldRam(r.stderr, dir, /the --max-disk cap of 64\.0 MiB/);
      const v = kv(r.stdout);
      // what fitted is bounded by the cap (plus at most one block of slack)
      expect(Number(v.first_mib)).toBeLessThanOrEqual(64);
      expect(Number(v.first_mib)).toBeGreaterThanOrEqual(40);
      expect(dirIsEmpty(dir)).toBe(true);
    }, 150_000);
  }

  test.skipIf(!PY)("python3: past the cap in RAM, no MemoryError, then carries on", async () => {
    const script = `
blocks = []
try:
    for i in range(20):
        blocks.append(bytearray(8 << 20))
except MemoryError:
    pass
n = len(blocks)
blocks.clear()
b = bytearray(32 << 20)
print("blocks", n, "then", len(b))
`;
    const dir = subdir("data");
    const r = await runWithLib([PY!, "-c", script], { EXM_DIR: dir, EXM_THRESHOLD: "1M", EXM_MAX_DISK: "100M" }, { timeoutMs: 60_000 });
    if (r.code !== 0) throw new Error(explain(r));
    expect(r.stdout).toContain(`blocks 20 then ${32 << 20}`);
    assertToldRam(r.stderr, dir, /the --max-disk cap of 100\.0 MiB/);
  }, 90_000);
});

describe.skipIf(noLib || !PY || !which("prlimit"))("an address-space limit (prlimit --as)", () => {
  test("python3 under --as=4000000000: bytes(2 << 30) works as it does without exm, and exm says why", async () => {
    const script = "b = bytes(2 << 30)\nc = bytearray(200 << 20)\nc[::4096] = b'z' * len(c[::4096])\nprint('ok', len(b), c.count(b'z'))\n";
    const plain = await run(["prlimit", "--as=4000000000", PY!, "-c", script], { timeoutMs: 60_000 });
    if (plain.code !== 0) throw new Error(`without exm\n${explain(plain)}`);
    const dir = subdir("data");
    const r = await runWithLib(["prlimit", "--as=4000000000", PY!, "-c", script], { EXM_DIR: dir, EXM_THRESHOLD: "1M" }, { timeoutMs: 60_000 });
    if (r.code !== 0) throw new Error(explain(r));
    expect(r.stdout).toBe(plain.stdout);
    assertToldRam(r.stderr, dir, /sized under the address-space limit/);
  }, 90_000);
});

/* ---- unusable data directory at start ---------------------------------------------- */

/** Asserts the library warned exactly once, naming dir, and served nothing. */
function assertPassedThrough(r: Awaited<ReturnType<typeof run>>, dir: string, what: string): void {
  if (r.code !== 0 || !r.stdout.includes("served ok")) throw new Error(`${what}: the program must run\n${explain(r)}`);
  const l = lines(r.stderr);
  if (l.length !== 1 || !l[0]!.startsWith("exm: ") || !l[0]!.includes(dir))
    throw new Error(`${what}: expected one line from exm naming ${dir}\n${explain(r)}`);
  expect(kv(r.stdout).file_backed_blocks).toBe("0");
}

describe.skipIf(noLib)("unusable data directory at start, library preloaded by hand: one warning, all passed through", () => {
  test.skipIf(noTmpfs)("a read-only mount", async () => {
    const dir = subdir("ro");
    const m = spawnSync(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", dir]);
    if (m.exitCode !== 0) throw new Error(`mount -o ro failed: ${m.stderr.toString()}`);
    try {
      const r = await runWithLib([cProgram("stress_served"), "100M"], { EXM_DIR: dir, EXM_THRESHOLD: "1M" });
      assertPassedThrough(r, dir, "read-only data directory");
    } finally {
      spawnSync(["umount", dir]);
    }
  });

  test.skipIf(noTmpfs)("a full filesystem", async () => {
    await withTmpfs(4 * MiB, async (dir) => {
      const fill = spawnSync(["dd", "if=/dev/zero", `of=${dir}/full`, "bs=64k"], { stderr: "pipe" });
      expect(fill.exitCode).not.toBe(0); // stopped by ENOSPC
      const r = await runWithLib([cProgram("stress_served"), "100M"], { EXM_DIR: dir, EXM_THRESHOLD: "1M" });
      assertPassedThrough(r, dir, "full data directory");
    });
  });

  test.skipIf(noUsers)("a directory the user may not write (as uid 54321)", async () => {
    const dir = subdir("notmine", 0o755); // root's
    const bin = publicCopy(cProgram("stress_served"));
    const lib = publicCopy(LIB);
    const r = await run(asUser(VICTIM_UID, [bin, "100M"]), { env: { LD_PRELOAD: lib, EXM_DIR: dir, EXM_THRESHOLD: "1M" } });
    assertPassedThrough(r, dir, "unwritable data directory");
  });

  test.skipIf(!PY)("removed after start, before the first big allocation", async () => {
    const dir = subdir("gone");
    const script = `
import os
os.rmdir(os.environ["EXM_DIR"])
b = bytearray(100 << 20)
b[::4096] = b"\\x01" * len(b[::4096])
print("sum", sum(b[::4096]))
c = bytearray(100 << 20)
print("served ok")
`;
    const r = await runWithLib([PY!, "-c", script], { EXM_DIR: dir, EXM_THRESHOLD: "1M" });
    if (r.code !== 0 || !r.stdout.includes(`sum ${(100 << 20) / 4096}`)) throw new Error(explain(r));
    const l = lines(r.stderr);
    if (l.length !== 1 || !l[0]!.includes(dir)) throw new Error(`expected one line naming ${dir}\n${explain(r)}`);
  });

  // Was: ignored with one line (the CLI resolves it): one grammar now.
  test("a relative path is taken from the working directory, as the CLI takes it", async () => {
    const cwd = subdir("relative-cwd");
    mkdirSync(join(cwd, "relative", "dir"), { recursive: true });
    const r = await runWithLib([cProgram("stress_served"), "100M"], { EXM_DIR: "relative/dir", EXM_THRESHOLD: "1M" }, { cwd });
    if (r.code !== 0) throw new Error(explain(r));
    expect(lines(r.stderr)).toEqual([]);
    expect(Number(kv(r.stdout).file_backed_blocks)).toBe(25);
  });
});

describe.skipIf(noCli || noLib)("unusable data directory at start, through the CLI: one clear line, non-zero", () => {
  test.skipIf(noUsers)("a directory the user may not write (as uid 54321)", async () => {
    const dir = subdir("cli-notmine", 0o755);
    const home = userHome(VICTIM_UID);
    const marker = join(work.dir, `ran-${++serial}`);
    const r = await run(asUser(VICTIM_UID, [publicExm(), "--dir", dir, "touch", marker]), { env: { HOME: home } });
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`exm: data directory ${dir} (from --dir) is not writable\n`);
    expect(existsSync(marker)).toBe(false);
  });

  test.skipIf(noTmpfs)("a full filesystem: the program runs, and the library says once that nothing is served", async () => {
    await withTmpfs(4 * MiB, async (dir) => {
      spawnSync(["dd", "if=/dev/zero", `of=${dir}/full`, "bs=64k"], { stderr: "pipe" });
      const home = subdir("home");
      const r = await run([EXM, "--dir", dir, "--threshold", "1M", cProgram("stress_served"), "100M"], { env: { HOME: home } });
      assertPassedThrough(r, dir, "full data directory via the CLI");
    });
  });
});

/* ---- how a process ends --------------------------------------------------------------- */

const ENDINGS: [mode: string, code: number | null, signal: string | null][] = [
  ["segv", null, "SIGSEGV"],
  ["thread-exit", 3, null],
  ["exit-busy", 5, null],
  ["abort", null, "SIGABRT"],
  ["raise-term", null, "SIGTERM"],
];

describe.skipIf(noTmpfs)("endings with 512 MiB held and 4 threads allocating (1 GiB tmpfs): nothing left, disk back", () => {
  for (const [mode, code, signal] of ENDINGS) {
    test(mode, async () => {
      await withTmpfs(1024 * MiB, async (dir) => {
        const before = fsUsed(dir);
        const r = await runWithLib([faults(), "exit", mode, "512M"], { EXM_DIR: dir, EXM_THRESHOLD: "1M" }, { timeoutMs: 60_000 });
        if (r.code !== code || r.signal !== signal || !r.stdout.includes(`ending=${mode}`))
          throw new Error(`${mode}: expected code ${code} signal ${signal}\n${explain(r)}`);
        expect(kv(r.stdout).file_backed).toBe("1");
        const back = await waitFor(() => fsUsed(dir) - before < MiB, 10_000, 100);
        if (!back) throw new Error(`${mode}: ${(fsUsed(dir) - before) / MiB} MiB still used after the process ended`);
        expect(listDir(dir)).toEqual([]);
      });
    }, 90_000);
  }

  // Found by this suite (fixed in 77091a1): the library's exm-advisor thread
  // kept such a process alive forever, deaf to SIGTERM.
  test("main-pthread-exit (main ends with pthread_exit, the last thread ends the process)", async () => {
    await withTmpfs(1024 * MiB, async (dir) => {
      const r = await runWithLib([faults(), "exit", "main-pthread-exit", "512M"], { EXM_DIR: dir, EXM_THRESHOLD: "1M" }, { timeoutMs: 20_000 });
      expect({ code: r.code, timedOut: r.timedOut }).toEqual({ code: 0, timedOut: false });
    });
  }, 60_000);

  test("a core dump of a process holding 1 GiB in the arena leaves the arena out", async () => {
    const pattern = readFileSync("/proc/sys/kernel/core_pattern", "utf8").trim();
    if (pattern.startsWith("|") || pattern.includes("/")) {
      console.warn(`skip core dump size: core_pattern is '${pattern}' (not a file in the working directory)`);
      return;
    }
    const cwd = subdir("core");
    await withTmpfs(2048 * MiB, async (dir) => {
      const r = await run(["sh", "-c", 'ulimit -c unlimited && exec "$@"', "sh", faults(), "exit", "segv", "1G"], {
        cwd,
        env: { LD_PRELOAD: LIB, EXM_DIR: dir, EXM_THRESHOLD: "1M" },
        timeoutMs: 120_000,
      });
      expect(r.signal).toBe("SIGSEGV");
    });
    const cores = readdirSync(cwd).filter((f) => f.startsWith(pattern.replace(/%.*/, "") || "core"));
    if (cores.length === 0) {
      console.warn(`no core file was written in ${cwd} (core_pattern '${pattern}'); nothing to measure`);
      return;
    }
    const size = statSync(join(cwd, cores[0]!)).blocks * 512;
    console.log(`core dump with 1 GiB in the arena: ${(size / MiB).toFixed(1)} MiB on disk`);
    expect(size).toBeLessThan(256 * MiB);
  }, 150_000);
});

/* ---- garbage in every setting ----------------------------------------------------------- */

/** Values no setting accepts (sizes, names, switches, paths alike). */
const GARBAGE: string[] = [
  "", " ", "-1", "-0", "0x10", "1e9", "NaN", "inf", "18446744073709551616", "9".repeat(40), "1.5.5G", "5iB", "1 G B",
  "１２", "%s%n%x%p", "é", "💥", "x".repeat(10_000), "\t", "cow,shared", "COW ", "-", "--", "=", "'", '"',
];
/** Values with control characters: still one line (they are escaped). */
const CONTROL = ["64Q\n", "64M\nexm: forged line", "\u001b[31mred", "a\rb"];

const LIB_VARS = ["EXM_THRESHOLD", "EXM_DIR", "EXM_CHILD", "EXM_ADVICE", "EXM_MAX_DISK", "EXM_STATS", "EXM_VERBOSE"];

/** Runs fns with at most `n` at a time. */
async function pool<T>(items: T[], n: number, fn: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

describe.skipIf(noLib)("garbage in every EXM_* variable, library preloaded by hand", () => {
  test(`${LIB_VARS.length} variables x ${GARBAGE.length + CONTROL.length} values: the program runs, at most one line from exm, naming the variable`, async () => {
    const prog = cProgram("stress_served");
    const cases: [string, string][] = [];
    for (const name of LIB_VARS) {
      for (const v of [...GARBAGE, ...CONTROL]) {
        // a statistics path is written at exit: no value that leaves the working directory
        if (name === "EXM_STATS" && v.includes("/")) continue;
        // blanks around a size or a name are allowed (tests/settings.test.ts): not garbage
        if (name !== "EXM_DIR" && name !== "EXM_STATS" && parseSetting(variable(name), v, "/").ok) continue;
        cases.push([name, v]);
      }
    }
    const problems: string[] = [];
    await pool(cases, 6, async ([name, value]) => {
      const cwd = subdir("garbage");
      const r = await runWithLib([prog, "80M"], { EXM_THRESHOLD: "1M", [name]: value }, { cwd, timeoutMs: 60_000 });
      const l = lines(r.stderr);
      const what = `${name}=${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value)}`;
      if (r.signal || r.code !== 0 || !r.stdout.includes("served ok")) problems.push(`${what}: exit ${r.code} signal ${r.signal}: ${l[0] ?? ""}`);
      else if (l.length > 0 && !l[0]!.startsWith("exm: ")) problems.push(`${what}: stderr does not start with "exm: ": ${l[0]}`);
      else if (l.length > 0 && !l[0]!.includes(name) && name !== "EXM_DIR" && name !== "EXM_STATS")
        problems.push(`${what}: the line does not name ${name}: ${l[0]}`);
      else if (l.length > 1) problems.push(`${what}: ${l.length} lines:\n${r.stderr}`);
      else if (l.length === 0 && !["EXM_STATS"].includes(name) && value.trim() !== "")
        problems.push(`${what}: accepted without a word`);
    });
    if (problems.length) throw new Error(`${problems.length} bad reactions:\n${problems.join("\n")}`);
  }, 300_000);

  // Found by this suite (fixed in 77091a1): a newline in a bad value made a
  // second line that looked like exm's own.
  test("control characters in a bad value are escaped: still one line", async () => {
    for (const value of CONTROL) {
      const r = await runWithLib([cProgram("stress_served"), "8M"], { EXM_THRESHOLD: value });
      expect(lines(r.stderr)).toHaveLength(1);
    }
  });
});

// Fixed (one grammar, tests/settings.test.ts has the full vectors): the
// library took "1.5" as 1 byte and refused "7E" and " 8M ", which the CLI
// took as 8 EiB and 8 MiB.
test("EXM_THRESHOLD means the same to the library as --threshold to the CLI", async () => {
  for (const v of ["1.5", "7E", " 8M ", "1.5GiB", "4096"]) {
    const cli = await run([EXM, "--threshold", v, "printenv", "EXM_THRESHOLD"], { env: { HOME: subdir("home") } });
    const lib = await runWithLib([cProgram("print_config")], { EXM_THRESHOLD: v });
    const libValue = lines(lib.stderr).length ? "refused" : kv(lib.stdout).threshold;
    expect({ v, lib: libValue }).toEqual({ v, lib: cli.code === 0 ? cli.stdout.trim() : "refused" });
  }
});

const CLI_SETTINGS = ["--threshold", "--max-disk", "--child", "--advice", "--dir", "--stats-file"];
const CLI_VARS = ["EXM_THRESHOLD", "EXM_DIR", "EXM_CHILD", "EXM_ADVICE", "EXM_MAX_DISK", "EXM_VERBOSE", "TMPDIR"];

describe.skipIf(noCli)("garbage in every CLI option and variable", () => {
  test(`${CLI_SETTINGS.length} options and ${CLI_VARS.length} variables x ${GARBAGE.length + CONTROL.length} values: exit 0 or 2 with one clear line, never a crash`, async () => {
    const cases: [kind: "flag" | "env", name: string, value: string][] = [];
    for (const f of CLI_SETTINGS) for (const v of [...GARBAGE, ...CONTROL]) if (!(f === "--stats-file" && v.includes("/"))) cases.push(["flag", f, v]);
    for (const e of CLI_VARS) for (const v of [...GARBAGE, ...CONTROL]) cases.push(["env", e, v]);
    const problems: string[] = [];
    await pool(cases, 6, async ([kind, name, value]) => {
      const cwd = subdir("cli-garbage");
      const home = join(cwd, "home");
      const marker = join(cwd, "ran");
      const argv = kind === "flag" ? [EXM, name, value, "touch", marker] : [EXM, "touch", marker];
      const env: Record<string, string> = { HOME: home, ...(kind === "env" ? { [name]: value } : {}) };
      const r = await run(argv, { cwd, env, timeoutMs: 30_000 });
      const l = lines(r.stderr);
      const what = `${name} ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value)}`;
      const ran = existsSync(marker);
      if (r.signal || (r.code !== 0 && r.code !== 2)) problems.push(`${what}: exit ${r.code} signal ${r.signal}: ${r.stderr.slice(0, 300)}`);
      else if (/internal error|\n\s+at /.test(r.stderr)) problems.push(`${what}: a crash, not a message: ${r.stderr.slice(0, 300)}`);
      else if (r.code === 2 && (l.length !== 1 || !l[0]!.startsWith("exm: ") || ran))
        problems.push(`${what}: refused but not with one line (or the program ran): ${r.stderr.slice(0, 300)}`);
      else if (r.code === 0 && !ran) problems.push(`${what}: exit 0 but the program did not run`);
    });
    if (problems.length) throw new Error(`${problems.length} bad reactions:\n${problems.join("\n")}`);
  }, 300_000);

  test("non-UTF-8 bytes in values: a clear line, no crash", async () => {
    const home = subdir("home-bytes");
    for (const script of [
      `"$EXM" --threshold $'\\xff\\xfe' true`,
      `EXM_CHILD=$'\\xc3\\x28' "$EXM" true`,
      `"$EXM" --dir $'/nonexistent/\\xff' true`,
      `EXM_ADVICE=$'\\x80' "$EXM" true`,
    ]) {
      const r = await run(["bash", "-c", script], { env: { EXM, HOME: home }, timeoutMs: 30_000 });
      expect({ script, code: r.code }).toEqual({ script, code: 2 });
      expect(r.stderr).toMatch(/^exm: [^\n]*\n$/);
    }
  });

  // Fixed, was: an empty --dir is taken as the working directory, where
  // --stats-file "" is refused: `exm --dir "" true` runs with EXM_DIR=$PWD.
  test("--dir with an empty value is refused like --stats-file", async () => {
    const r = await run([EXM, "--dir", "", "true"], { env: { HOME: subdir("home") } });
    expect(r.code).toBe(2);
  });
});

/* ---- programs exm cannot serve ------------------------------------------------------------ */

/** A copy of file in a directory every uid can read. */
function publicCopy(file: string): string {
  const dir = join(work.dir, "public");
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const out = join(dir, `${serial++}-${file.split("/").pop()}`);
  copyFileSync(file, out);
  chmodSync(out, 0o755);
  return out;
}

let exmCopy: string | undefined;
/** dist/exm where another uid can run it (the checkout may be private). */
function publicExm(): string {
  if (!exmCopy) {
    const probe = spawnSync(asUser(VICTIM_UID, ["test", "-x", EXM]));
    exmCopy = probe.exitCode === 0 ? EXM : publicCopy(EXM);
  }
  return exmCopy;
}

/** A private HOME owned by uid. */
function userHome(uid: number): string {
  const h = subdir(`home-${uid}`, 0o700);
  chownSync(h, uid, uid);
  return h;
}

describe.skipIf(noCli || noLib)("programs exm cannot serve still run", () => {
  test("a static binary at --threshold 0: correct, unserved, and said once (with --verbose too)", async () => {
    let bin: string;
    try {
      bin = compileC(join(import.meta.dir, "c", "stress_served.c"), { flags: ["-static"], out: join(work.dir, "served-static") });
    } catch (e) {
      console.warn(`skip static binary: gcc -static failed (libc6-dev has no libc.a?): ${(e as Error).message.split("\n").slice(-2).join(" ")}`);
      return;
    }
    const home = subdir("home");
    const quiet = await run([EXM, "--threshold", "0", bin, "64M"], { env: { HOME: home } });
    if (quiet.code !== 0 || !quiet.stdout.includes("served ok")) throw new Error(explain(quiet));
    expect(kv(quiet.stdout).lib).toBe("0");
    expect(quiet.stderr.match(/statically linked/g)?.length).toBe(1);
    expect(lines(quiet.stderr)).toHaveLength(1);
    const loud = await run([EXM, "--verbose", "--threshold", "0", bin, "64M"], { env: { HOME: home } });
    if (loud.code !== 0) throw new Error(explain(loud));
    expect(loud.stderr.match(/statically linked/g)?.length).toBe(1);
  });

  /** A copy of stress_served owned by root with `mode`, run through exm as uid 54321. */
  async function runSpecial(mode: number, extra?: (bin: string) => string | null) {
    const bin = publicCopy(cProgram("stress_served"));
    chownSync(bin, 0, 0);
    chmodSync(bin, mode);
    if (extra) {
      const why = extra(bin);
      if (why) return why;
    }
    const home = userHome(VICTIM_UID);
    const r = await run(asUser(VICTIM_UID, [publicExm(), "--threshold", "1M", bin, "64M"]), { env: { HOME: home } });
    if (r.code !== 0 || !r.stdout.includes("served ok")) throw new Error(explain(r));
    expect(kv(r.stdout).lib).toBe("0");
    return r;
  }

  test.skipIf(noUsers)("a setuid-root program run by another user: runs, one warning", async () => {
    const r = await runSpecial(0o4755);
    if (typeof r === "string") return;
    expect(lines(r.stderr)).toHaveLength(1);
    expect(r.stderr).toMatch(/^exm: .* is setuid: the loader ignores LD_PRELOAD for it, so it runs without exm\n$/);
  });

  test.skipIf(noUsers)("a setgid program of another group: runs, one warning", async () => {
    const r = await runSpecial(0o2755);
    if (typeof r === "string") return;
    expect(lines(r.stderr)).toHaveLength(1);
    expect(r.stderr).toMatch(/is setgid/);
  });

  // Fixed: a program with file capabilities runs in secure mode (AT_SECURE)
  // just as a setuid one does, so the loader ignores LD_PRELOAD, and exm said
  // nothing. It reads security.capability now.
  test.skipIf(noUsers)("a program with file capabilities gets the same one-line warning as a setuid one", async () => {
    const r = await runSpecial(0o755, (bin) => {
      if (!which("setcap")) return "no setcap (apt-get install libcap2-bin)";
      const s = spawnSync(["setcap", "cap_net_bind_service=ep", bin], { stderr: "pipe" });
      return s.exitCode === 0 ? null : `setcap failed: ${s.stderr.toString().trim()}`;
    });
    if (typeof r === "string") {
      console.warn(`skip file capabilities: ${r}`);
      return;
    }
    expect(lines(r.stderr)).toHaveLength(1);
    expect(r.stderr).toMatch(/^exm: .* has file capabilities: the loader ignores LD_PRELOAD for it, so it runs without exm\n$/);
  });
});

/* ---- descriptors, limits and signals: known library bugs --------------------------------- */

describe.skipIf(noLib)("descriptor and limit hazards", () => {
  test("every descriptor in use at the first big malloc: no crash, one warning, the program carries on", async () => {
    const dir = subdir("data");
    const r = await runWithLib([faults(), "emfile"], { EXM_DIR: dir, EXM_THRESHOLD: "1M" }, { timeoutMs: 60_000 });
    if (r.code !== 0 || !r.stdout.includes("emfile ok")) throw new Error(explain(r));
    expect(lines(r.stderr).length).toBeLessThanOrEqual(1);
    console.log(`EMFILE at the first big malloc: ${r.stdout.split("\n").find((l) => l.startsWith("at_emfile"))} ${JSON.stringify(r.stderr.trim())}`);
  });

  // Fixed, was serious (user data destroyed): the backing file's
  // descriptor is an ordinary low number. A program that closes descriptors
  // it does not know about (daemons, closefrom, bash's `exec 3>file`) and
  // opens a file of its own gets the same number, and exm then fallocates and
  // punches holes in THAT file (and a cow child mmaps it: EACCES, falls back
  // to shared). Reproduction:
  //   cc -o fdreuse tests/c/stress_faults.c -Ibuild (mode fdreuse), or
  //   EXM_THRESHOLD=0 LD_PRELOAD=build/libexm.so bash -c 'exec 3>out.txt; echo hi >&3; x=$(seq 20000)'
  //   -> out.txt is ~2 MB of NULs after "hi". Fix idea: F_DUPFD_CLOEXEC the
  //   descriptor high, and check (fstat dev/ino) before fallocate/punch/mmap.
  test("a program that closes unknown descriptors and opens its own file: exm leaves that file alone", async () => {
    const cwd = subdir("fdreuse");
    const r = await runWithLib([faults(), "fdreuse"], { EXM_THRESHOLD: "1M" }, { cwd, timeoutMs: 60_000 });
    if (r.code !== 0 || !r.stdout.includes("fdreuse ok")) throw new Error(explain(r));
  });

  // Found 2026-12-03: once the program had closed exm's descriptor, free gave no disk back (the
  // punch went by the descriptor, checked first: file_after_free=67108864 of a 64 MiB block, kept
  // until exit), and a check of the descriptor before its use races with a program thread that
  // closes it and opens a file of its own. Holes are now punched through the mapping.
  test("after the program closed exm's descriptor and put its own file there, free still gives disk back and leaves that file alone", async () => {
    const cwd = subdir("lostfd-punch");
    const r = await runWithLib([faults(), "lostfd-punch"], { EXM_DIR: subdir("lostfd-punch-data"), EXM_THRESHOLD: "1M" }, { cwd, timeoutMs: 60_000 });
    if (r.code !== 0 || !r.stdout.includes("lostfd-punch ok")) throw new Error(explain(r));
    expect(Number(kv(r.stdout).file_after_free)).toBeLessThanOrEqual(2 * 2 ** 20);
  });

  // Found rereading 53694b9 (fixed before it landed in a CI run): realloc's one-lock move carved
  // the new block in an arena already found unusable, from disk kept for reuse.
  test("after the program closed exm's descriptor, a realloc that moves a block takes RAM, contents kept", async () => {
    const r = await runWithLib([faults(), "lostfd-realloc"], { EXM_DIR: subdir("lostfd"), EXM_THRESHOLD: "64K" }, { timeoutMs: 60_000 });
    if (r.code !== 0 || !r.stdout.includes("lostfd-realloc ok")) throw new Error(explain(r));
    expect(kv(r.stdout)).toMatchObject({ big_file_backed: "0", moved_file_backed: "0" });
    expect(r.stderr).toContain("the program closed the descriptor of exm's backing file; new large allocations stay in RAM");
  });

  // Fixed, was serious (heap corrupted): with fd 2 closed (`prog 2>&-`)
  // the backing file becomes fd 2, and every write the program makes to
  // "stderr" lands at file offset 0, i.e. in its first big block:
  //   sh -c 'EXM_THRESHOLD=1M LD_PRELOAD=build/libexm.so exec stress_faults closed-stderr 2>&-'
  //   -> "block corrupted at byte 0". Never use descriptors 0-2 for the file.
  test("with stderr closed, writes to stderr do not land in the heap", async () => {
    const r = await run(["sh", "-c", 'exec "$@" 2>&-', "sh", faults(), "closed-stderr"], {
      env: { LD_PRELOAD: LIB, EXM_THRESHOLD: "1M", EXM_DIR: subdir("data") },
    });
    if (r.code !== 0 || !r.stdout.includes("closed-stderr ok")) throw new Error(explain(r));
  });

  // Fixed, was: under RLIMIT_FSIZE (ulimit -f, common in batch jobs) the
  // first big malloc kills the program with SIGXFSZ: the arena's
  // ftruncate(8 TiB) exceeds the limit.
  //   bash -c 'ulimit -f 1048576; EXM_THRESHOLD=1M LD_PRELOAD=build/libexm.so ./prog'  -> "File size limit exceeded"
  // Fix idea: size the file within getrlimit(RLIMIT_FSIZE).
  test("under RLIMIT_FSIZE of 1 GiB a 100 MiB block works", async () => {
    const r = await runWithLib([faults(), "fsize"], { EXM_THRESHOLD: "1M", EXM_DIR: subdir("data") });
    if (r.code !== 0 || !r.stdout.includes("fsize ok")) throw new Error(explain(r));
  });

  // Found 2026-12-03: after the program lowered RLIMIT_FSIZE (to 1 GiB) once the arena existed, its
  // next fork was killed by SIGXFSZ (exit 153) at threshold 0 (the child's copy of the segments went
  // to a new file of the arena's 8 TiB) and with --child duplicate at any threshold. Copies past the
  // limit are now refused before the ftruncate: anonymous memory for the segments, copy-on-write for
  // a duplicate child (said once).
  for (const [threshold, child] of [["0", "cow"], ["0", "duplicate"], ["1M", "duplicate"], ["4096", "shared"]]) {
    test(`RLIMIT_FSIZE lowered to 1 GiB once the arena exists, then fork (threshold ${threshold}, --child ${child}): parent and child go on`, async () => {
      const r = await runWithLib([faults(), "fsize-fork"], { EXM_THRESHOLD: threshold!, EXM_CHILD: child!, EXM_DIR: subdir("data") });
      if (r.code !== 0 || !r.stdout.includes("fsize-fork ok")) throw new Error(explain(r));
    });
  }

  // Holes are punched through the mapping (MADV_REMOVE) since 2026-12-03; where the kernel refuses
  // (a range the program mlock'ed: EINVAL) or a sandbox's seccomp filter does (EPERM), by
  // descriptor. The first build of the change fell back only on EINVAL/EACCES: under the filter a
  // freed 64 MiB block kept its disk (file_after_free=67108864).
  for (const mode of ["mlocked-free", "seccomp-free"]) {
    test(`a freed block's disk is given back ${mode === "mlocked-free" ? "when the program had mlock'ed it" : "under a seccomp filter that refuses MADV_REMOVE"}`, async () => {
      const r = await runWithLib([faults(), mode], { EXM_THRESHOLD: "1M", EXM_DIR: subdir("data") });
      if (r.code !== 0 || !r.stdout.includes(`${mode} ok`)) throw new Error(explain(r));
      const o = kv(r.stdout);
      if (o.mlock_failed) console.log(`${mode}: mlock of 64 MiB refused here (RLIMIT_MEMLOCK); nothing checked`);
      else expect(Number(o.file_after_free)).toBeLessThanOrEqual(2 * 2 ** 20);
    });
  }

  // Found 2026-12-03 (fourth session): under a 1 GiB address-space limit set before the arena
  // existed, a 600 MiB malloc that succeeds without exm returned NULL: the arena took half the limit
  // as address space, too little for the block and too much for glibc to map it beside. The arena
  // now gives up what it has not carved when both fail, and says so in its one line.
  for (const [threshold, fork] of [["1M", ""], ["0", ""], ["1M", "fork"], ["0", "fork"]]) {
    test(`under a 1 GiB RLIMIT_AS a 600 MiB block that fits without exm is served (threshold ${threshold}${fork ? ", in a forked child beside the inherited arena" : ""})`, async () => {
      const r = await runWithLib([faults(), "as-crowded", fork!], { EXM_THRESHOLD: threshold!, EXM_DIR: subdir("data") });
      if (r.code !== 0 || !r.stdout.includes("as-crowded ok")) throw new Error(explain(r));
      expect(r.stderr).toContain("sized under the address-space limit, and gave up the address space it had not used");
    });
  }

  // ulimit -f below the arena's smallest file: one line naming the limit (it said "cannot map a
  // backing file: Cannot allocate memory"), and the program runs in RAM.
  test("an RLIMIT_FSIZE of 1 MiB at start: allocations stay in RAM, and the line names the limit", async () => {
    const r = await runWithLib(["bash", "-c", `ulimit -f 1024; exec ${faults()} fsize-ram`], { EXM_THRESHOLD: "1M", EXM_DIR: subdir("data") });
    if (r.code !== 0 || !r.stdout.includes("fsize-ram ok")) throw new Error(explain(r));
    expect(r.stderr).toBe("exm: the file size limit (ulimit -f) of 1.0 MiB is below the 64.0 MiB a backing file needs; allocations stay in RAM\n");
    expect(kv(r.stdout).file_backed).toBe("0");
  });

  // Found 2026-12-03 (fourth session): a buffer the program registers with io_uring as a fixed
  // buffer (fio --fixedbufs, databases on io_uring; RDMA's ibv_reg_mr and VFIO pin the same way)
  // cannot be arena memory: the kernel refuses long-term pins of pages of a shared mapping of a
  // file that needs dirty tracking (ext4, XFS): io_uring_register gives EFAULT, where it works
  // without exm. Reproduce: `EXM_THRESHOLD=1M LD_PRELOAD=build/libexm.so stress_faults pin-uring`
  // (pinned=Bad address). No fix from the library yet (a pin is a system call it does not see; a
  // threshold above such buffers keeps them in RAM, checked below); README, Limits.
  test.todo("a 64 MiB file-backed buffer can be registered with io_uring (threshold 1M)", async () => {
    const r = await runWithLib([faults(), "pin-uring"], { EXM_THRESHOLD: "1M", EXM_DIR: subdir("data") });
    if (r.code !== 0 || !r.stdout.includes("pin-uring ok")) throw new Error(explain(r));
    const o = kv(r.stdout);
    if (o.no_io_uring === undefined) expect(o).toMatchObject({ file_backed: "1", pinned: "ok" });
  });
  test("with the threshold above it, a 64 MiB buffer stays in RAM and io_uring registers it", async () => {
    const r = await runWithLib([faults(), "pin-uring"], { EXM_THRESHOLD: "128M", EXM_DIR: subdir("data") });
    if (r.code !== 0 || !r.stdout.includes("pin-uring ok")) throw new Error(explain(r));
    const o = kv(r.stdout);
    if (o.no_io_uring !== undefined) return void console.log(`pin-uring: no io_uring here (${o.no_io_uring}); nothing checked`);
    expect(o).toMatchObject({ file_backed: "0", pinned: "ok" });
  });

  // Found 2026-12-03 (fourth session): madvise(MADV_DONTNEED) on part of a malloc'd block read back
  // zeros on glibc's anonymous memory and the old data on the arena's shared file mapping (the pages
  // left the process's page tables, not the file): a program that clears or releases a buffer that
  // way saw stale bytes (after=1 with the library before). The library's madvise now zeroes the
  // range with its disk kept (FALLOC_FL_ZERO_RANGE), or writes zeros where it cannot (tmpfs, a cow
  // child's private view); a shared child's view of its parent's blocks keeps them.
  for (const [threshold, fork] of [["1M", ""], ["0", ""], ["1M", "fork"]]) {
    test(`MADV_DONTNEED on a file-backed block reads back zeros, as on anonymous memory (threshold ${threshold}${fork ? ", in a cow child: the parent keeps its data" : ""})`, async () => {
      const r = await runWithLib([faults(), "dontneed", fork!], { EXM_THRESHOLD: threshold!, EXM_CHILD: "cow", EXM_DIR: subdir("data") });
      if (r.code !== 0 || !r.stdout.includes("dontneed ok")) throw new Error(explain(r));
      expect(kv(r.stdout)).toMatchObject({ file_backed: "1", after: "0", nonzero: "0", beyond: "1", ...(fork ? { parent_kept: "1" } : { disk_kept: "1" }) });
    });
  }
  test("MADV_DONTNEED in a shared child leaves the parent's block as it was", async () => {
    const r = await runWithLib([faults(), "dontneed", "fork"], { EXM_THRESHOLD: "1M", EXM_CHILD: "shared", EXM_DIR: subdir("data") });
    if (r.code !== 0 || !r.stdout.includes("dontneed ok")) throw new Error(explain(r));
    expect(kv(r.stdout)).toMatchObject({ file_backed: "1", after: "1", parent_kept: "1" });
  });
  test.skipIf(noTmpfs)("MADV_DONTNEED on a block in a tmpfs data directory (no ZERO_RANGE there) reads back zeros", async () => {
    await withTmpfs(96 * MiB, async (dir) => {
      const r = await runWithLib([faults(), "dontneed"], { EXM_THRESHOLD: "1M", EXM_DIR: dir });
      if (r.code !== 0 || !r.stdout.includes("dontneed ok")) throw new Error(explain(r));
      expect(kv(r.stdout)).toMatchObject({ file_backed: "1", after: "0", nonzero: "0", beyond: "1" });
    });
  });

  // Found 2026-12-03: a program that lowers RLIMIT_AS once the arena exists (Python's
  // resource.setrlimit, sandboxes) found every later mmap and brk refused, the arena's 8 TiB of
  // address space counting against the limit: MemoryError from Python's next small object, malloc
  // NULL after 129 (threshold 1M) or 8 317 (threshold 0) small blocks (the library of 0240cfd).
  for (const [threshold, child] of [["0", "cow"], ["0", "duplicate"], ["1M", "cow"], ["1M", "shared"]]) {
    test(`RLIMIT_AS lowered to 4 GiB once the arena exists (threshold ${threshold}, --child ${child}): blocks, a thread, a mapping and a fork still come`, async () => {
      const r = await runWithLib([faults(), "rlimit-as"], { EXM_THRESHOLD: threshold!, EXM_CHILD: child!, EXM_DIR: subdir("data") });
      if (r.code !== 0 || !r.stdout.includes("rlimit-as ok")) throw new Error(explain(r));
      expect(kv(r.stdout)).toMatchObject({ file_backed: "1", large_file_backed: "1" });
    });
  }

  test.skipIf(!PY)("python3 sets RLIMIT_AS to 8 GiB with resource.setrlimit at threshold 0, then allocates and starts a thread", async () => {
    const script = [
      "import resource, threading",
      "resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))",
      "a = bytearray(100 << 20)",
      "l = [bytes(1000) for i in range(100000)]",
      "t = threading.Thread(target=lambda: None); t.start(); t.join()",
      "print(len(a), len(l))",
    ].join("\n");
    const r = await runWithLib([PY!, "-c", script], { EXM_THRESHOLD: "0", EXM_DIR: subdir("data") });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(`${100 << 20} 100000`);
  });

  // Fixed, was: with EXM_STATS set, SIGTERM/SIGINT arriving while the
  // program is inside malloc/free deadlocks it: the handler's report() takes
  // the arena lock the interrupted thread holds (18 of 20 runs hung here):
  //   EXM_STATS=1 EXM_THRESHOLD=4096 LD_PRELOAD=build/libexm.so stress_faults churn & sleep .3; kill -TERM $!
  // Fix idea: read the statistics without the lock in the handler (or
  // trylock), and never block in a signal handler.
  test("SIGTERM during allocation with EXM_STATS=1 ends the program at once", async () => {
    for (let i = 0; i < 10; i++) {
      const h = await spawnUntil([faults(), "churn"], { LD_PRELOAD: LIB, EXM_STATS: "1", EXM_THRESHOLD: "4096", EXM_DIR: subdir("data") }, "ready");
      await Bun.sleep(100);
      h.proc.kill("SIGTERM");
      const ended = await Promise.race([h.proc.exited.then(() => true), Bun.sleep(3000).then(() => false)]);
      if (!ended) h.proc.kill("SIGKILL");
      expect(ended).toBe(true);
    }
  });
});

// Found 2026-12-03: a program that locks its memory (mlockall, as security tools and real-time
// programs do) was OOM-killed under exm. Locking a mapping populates it, and the arena is 8 TiB of
// file: killed at its first large block after mlockall(MCL_FUTURE), or at mlockall(MCL_CURRENT)
// itself once the arena existed (768 MiB cgroup, rc 137 both, the library of 0240cfd).
describe.skipIf(noCgroup)("a program that calls mlockall", () => {
  for (const [mode, threshold] of [["future", "1M"], ["future", "0"], ["current", "1M"], ["current", "0"]]) {
    test(`mlockall(MCL_CURRENT | MCL_FUTURE) ${mode === "future" ? "before" : "after"} the arena exists, threshold ${threshold}: the program's memory is locked, the arena is not`, async () => {
      const dir = subdir(`mlock-${mode}`);
      const r = await runInCgroup(768 * MiB, [cProgram("mlock_all"), mode!], {
        env: { LD_PRELOAD: LIB, EXM_TEST_REQUIRE_LIB: "1", EXM_DIR: dir, EXM_THRESHOLD: threshold! },
        timeoutMs: 60_000,
      });
      if (r.code !== 0 || !r.stdout.includes("mlock_all ok")) throw new Error(`oom-killed: ${r.oomKilled}\n${r.stdout}\n${r.stderr}`);
      const o = kv(r.stdout);
      expect(o.block_locked).toBe("0");
      if (o.locked === "1") expect(Number(o.vmlck_kib)).toBeGreaterThan(0);
      else console.log(`mlock_all ${mode}: mlockall failed here (${r.stdout.match(/mlockall: .*/)?.[0]}); the arena was still used`);
    }, 70_000);
  }
  test.skipIf(!PY)("python locks its memory with ctypes, then fills a 300 MiB bytearray at threshold 0 under 768 MiB", async () => {
    const script = [
      "import ctypes",
      "assert ctypes.CDLL(None).mlockall(3) == 0",   // MCL_CURRENT | MCL_FUTURE
      "a = bytearray(300 << 20)",
      "a[::4096] = b'x' * len(a[::4096])",
      "print(a.count(b'x'), {i: str(i) for i in range(100000)}[99999])",
    ].join("\n");
    const r = await runInCgroup(768 * MiB, [PY!, "-c", script], {
      env: { LD_PRELOAD: LIB, EXM_TEST_REQUIRE_LIB: "1", EXM_DIR: subdir("mlock-py"), EXM_THRESHOLD: "0" },
      timeoutMs: 60_000,
    });
    // before the fix: killed by the OOM killer at the mlockall (exit 137)
    expect(r.oomKilled).toBe(false);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(`${(300 << 20) / 4096} 99999`);
  }, 70_000);
});

// Found 2026-12-03 (fourth session): under strict overcommit (vm.overcommit_memory=2, which some
// clusters set, and which ignores MAP_NORESERVE) a forked child's copy-on-write view of the arena, a
// private mapping of its whole 8 TiB, was refused; the child got the shared view instead and its
// writes changed the parent's blocks (python: the parent read 7 where it had written 1; one warning
// line). The private view now covers only what the parent has carved.
const OVERCOMMIT = "/proc/sys/vm/overcommit_memory";
const noOvercommit = noLib || !PY || skipUnless(IS_ROOT && existsSync(OVERCOMMIT) ? null : "root and /proc/sys/vm", "strict overcommit tests");
describe.skipIf(noOvercommit)("under strict overcommit (vm.overcommit_memory=2)", () => {
  for (const threshold of ["64M", "0"]) {
    test(`a forked child's writes stay the child's (threshold ${threshold}, --child cow)`, async () => {
      const script = [
        "import os",
        "b = bytearray(300 << 20); b[5] = 1",
        "pid = os.fork()",
        "if pid == 0:",
        "    b[5] = 7; c = bytearray(100 << 20); c[-1] = 2",
        "    print('child', b[5], c[-1], flush=True); os._exit(0)",
        "os.waitpid(pid, 0)",
        "print('parent', b[5])",
      ].join("\n");
      const before = readFileSync(OVERCOMMIT, "utf8").trim();
      let r;
      writeFileSync(OVERCOMMIT, "2");
      try {
        r = await runWithLib([PY!, "-c", script], { EXM_THRESHOLD: threshold, EXM_CHILD: "cow", EXM_DIR: subdir("overcommit") }, { timeoutMs: 60_000 });
      } finally {
        writeFileSync(OVERCOMMIT, before);
      }
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toBe("child 7 2\nparent 1\n");
      expect(r.stderr).not.toContain("could not give a forked child a copy-on-write view");
    }, 70_000);
  }
});
