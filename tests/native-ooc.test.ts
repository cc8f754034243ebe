/**
 * libexm beyond RAM (issue 3): out-of-core runs under a memory cgroup (C and
 * python3; each asserted to be OOM-killed without exm and to finish with it),
 * a full data directory (the request served in RAM, never SIGBUS), the
 * EXM_MAX_DISK cap, SIGKILL leaving nothing behind, and free() of evicted
 * pages causing no major faults.
 *
 * Needs root for cgroups and tmpfs mounts; each test says what it skips.
 */
import { describe, expect, test, setDefaultTimeout } from "bun:test";
import { readFileSync, readdirSync } from "node:fs";
import { GiB, LIB_MISSING, MiB, assertOk, assertRun, withDataDir } from "./support/native";
import {
  LIB,
  cProgram,
  cgroupAvailable,
  fsUsed,
  kv,
  python3,
  run,
  runInCgroup,
  runWithLib,
  skipUnless,
  spawnUntil,
  tmpfsAvailable,
  waitFor,
  withTmpfs,
  dirIsEmpty,
  listDir,
} from "./support/sys";

const skipNoLib = !!LIB_MISSING;
const noCgroup = skipNoLib || skipUnless(cgroupAvailable(), "out-of-core tests (memory cgroup)");
const noTmpfs = skipNoLib || skipUnless(tmpfsAvailable(), "full-disk tests (tmpfs)");
const PY = python3();
const noPython = skipUnless(PY ? null : "python3 not found", "python3 tests");
const hasNumpy = PY !== null && Bun.spawnSync([PY, "-c", "import numpy"]).exitCode === 0;
const noNumpy = skipUnless(hasNumpy ? null : "python3 has no numpy", "numpy test");

const LIMIT = 256 * MiB;

// Each test bounds its own runs; this only backs them up.
setDefaultTimeout(120_000);

/**
 * `python3 -c script` under LIMIT: OOM-killed without exm, and printing
 * `marker` with libexm preloaded (data in a fresh directory); the time of the
 * run with exm goes to the log as `what`.
 */
async function pythonBeyondRam(script: string, marker: string, what: string, plainMs: number, exmMs: number) {
  const plain = await runInCgroup(LIMIT, [PY!, "-c", script], { timeoutMs: plainMs });
  assertRun(plain.oomKilled && plain.code !== 0, plain, `${what} without exm must be OOM-killed`);
  await withDataDir(async (dir) => {
    const r = await runInCgroup(LIMIT, [PY!, "-c", script], {
      env: { LD_PRELOAD: LIB, EXM_DIR: dir },
      timeoutMs: exmMs,
    });
    assertOk(r, marker, `${what} with exm under the cgroup`);
    console.log(`${what} in 256M cgroup: ${(r.ms / 1000).toFixed(1)} s`);
  });
}

describe.skipIf(noCgroup)("out of core under a 256 MiB cgroup", () => {
  test("C: 1 GiB fill + checksum is OOM-killed without exm, finishes with it, same checksum", async () => {
    const bin = cProgram("ooc_fill");
    // reference checksum, no limit, no exm
    const ref = await run([bin, "1G"], { timeoutMs: 120_000 });
    assertOk(ref, "ooc_fill ok", "reference run");
    const plain = await runInCgroup(LIMIT, [bin, "1G"], { timeoutMs: 120_000 });
    assertRun(plain.oomKilled && plain.code !== 0, plain, "without exm the run must be OOM-killed");
    await withDataDir(async (dir) => {
      const r = await runInCgroup(LIMIT, [bin, "1G"], {
        env: { LD_PRELOAD: LIB, EXM_DIR: dir, EXM_TEST_REQUIRE_LIB: "1" },
        timeoutMs: 180_000,
      });
      assertOk(r, "ooc_fill ok", "with exm under the cgroup");
      assertRun(!r.oomKilled, r, "OOM kill with exm");
      expect(kv(r.stdout).file_backed).toBe("1");
      expect(kv(r.stdout).checksum).toBe(kv(ref.stdout).checksum!);
      console.log(
        `ooc_fill 1G in 256M: write ${kv(r.stdout).write_mb_s} MB/s, read ${kv(r.stdout).read_mb_s} MB/s, ` +
          `peak cgroup usage ${(r.maxUsage / MiB).toFixed(0)} MiB, ${(r.ms / 1000).toFixed(1)} s`,
      );
    });
  }, 400_000);

  test.skipIf(noPython)("python3: 1 GiB bytearray fill + checksum, OOM-killed without exm", async () => {
    const script = `
import zlib, sys
n = 1 << 30
chunk = 1 << 20
b = bytearray(n)
for i in range(n // chunk):
    b[i*chunk:(i+1)*chunk] = i.to_bytes(8, "little") * (chunk // 8)
mv = memoryview(b)
got = 0
for i in range(n // chunk):
    got = zlib.crc32(mv[i*chunk:(i+1)*chunk], got)
want = 0
for i in range(n // chunk):
    want = zlib.crc32(i.to_bytes(8, "little") * (chunk // 8), want)
print("checksum=%08x" % got)
print("python ok" if got == want else "python MISMATCH want %08x" % want)
sys.exit(0 if got == want else 1)
`;
    await pythonBeyondRam(script, "python ok", "python 1 GiB", 180_000, 300_000);
  }, 500_000);

  test.skipIf(noNumpy)("python3 + numpy: 2 GiB of float64 arrays, OOM-killed without exm", async () => {
    const script = `
import numpy as np
n = 1 << 27  # 1 GiB of float64
a = np.arange(n, dtype=np.float64)
a *= 2.0
b = a[::-1].copy()  # another GiB
s = float(a.sum() + b.sum())
want = 2.0 * (n - 1) * n
print("numpy ok" if abs(s - want) < 1e-9 * want else "numpy MISMATCH %r %r" % (s, want))
`;
    await pythonBeyondRam(script, "numpy ok", "numpy 2 GiB", 120_000, 240_000);
  }, 400_000);

  test("free() of an evicted 1 GiB block causes no major faults", async () => {
    await withDataDir(async (dir) => {
      const r = await runInCgroup(LIMIT, [cProgram("big_free_nofault"), "1G"], {
        env: { LD_PRELOAD: LIB, EXM_DIR: dir, EXM_TEST_REQUIRE_LIB: "1" },
        timeoutMs: 180_000,
      });
      assertOk(r, "big_free_nofault ok", "big_free_nofault in a 256 MiB cgroup");
      console.log(r.stdout.split("\n").filter((l) => /resident|majflt/.test(l)).join("\n"));
    });
  }, 200_000);
});

describe.skipIf(skipNoLib)("free() of evicted pages without a cgroup (MADV_PAGEOUT)", () => {
  test("no major faults", async () => {
    await withDataDir(async (dir) => {
      const r = await runWithLib([cProgram("big_free_nofault"), "512M"], { EXM_DIR: dir }, { timeoutMs: 120_000 });
      assertOk(r, "big_free_nofault ok");
    });
  }, 150_000);
});

describe.skipIf(noTmpfs)("full data directory (64 MiB tmpfs)", () => {
  test("C: malloc(256 MiB) is served in RAM with one line, no SIGBUS, then 16 MiB is file-backed", async () => {
    await withTmpfs(64 * MiB, async (dir) => {
      const r = await runWithLib([cProgram("diskfull"), "256M", "16M"], { EXM_DIR: dir, EXM_THRESHOLD: "1M" }, {
        timeoutMs: 60_000,
      });
      assertRun(r.signal !== "SIGBUS", r, "SIGBUS");
      assertOk(r, "diskfull ok");
      assertRun(/^exm: a request of 256\.0 MiB does not fit in the file-backed arena in .*no space left.*served in RAM\n$/.test(r.stderr)
        && r.stderr.includes(dir), r, "one line naming the reason and the directory");
      assertRun(dirIsEmpty(dir), r, `tmpfs not empty: ${listDir(dir)}`);
    });
  }, 60_000);

  test.skipIf(noPython)("python3: a 256 MiB bytearray works (in RAM), then carries on", async () => {
    const script = `
try:
    b = bytearray(256 << 20)
    b[::4096] = b"y" * len(b[::4096])
    print("no MemoryError", sum(b[::4096]) == ord("y") * len(b[::4096]))
except MemoryError:
    print("MemoryError")
small = bytearray(16 << 20)
small[::4096] = b"x" * len(small[::4096])
print("carried on", sum(small[::4096]) == ord("x") * len(small[::4096]))
`;
    await withTmpfs(64 * MiB, async (dir) => {
      const r = await runWithLib([PY!, "-c", script], { EXM_DIR: dir, EXM_THRESHOLD: "1M" }, { timeoutMs: 60_000 });
      assertRun(r.signal !== "SIGBUS", r, "SIGBUS");
      assertOk(r, "no MemoryError True", "python on a full data dir");
      assertRun(r.stdout.includes("carried on True"), r, "python did not carry on");
      assertRun(dirIsEmpty(dir), r, `tmpfs not empty: ${listDir(dir)}`);
    });
  });
});

describe.skipIf(skipNoLib)("EXM_MAX_DISK cap", () => {
  test("malloc past the cap is served in RAM with one line, then a smaller one is file-backed", async () => {
    await withDataDir(async (dir) => {
      const r = await runWithLib(
        [cProgram("diskfull"), "256M", "16M"],
        { EXM_DIR: dir, EXM_THRESHOLD: "1M", EXM_MAX_DISK: "64M" },
        { timeoutMs: 60_000 },
      );
      assertRun(r.signal !== "SIGBUS", r, "SIGBUS");
      assertOk(r, "diskfull ok");
      assertRun(/^exm: a request of 256\.0 MiB does not fit .*the --max-disk cap of 64\.0 MiB.*\n$/.test(r.stderr), r, "one line naming the cap");
    });
  }, 60_000);
});

/** dev:inode keys of the deleted files under dir that process pid maps. */
function mappedDeletedFiles(pid: number, dir: string): string[] {
  const keys = new Set<string>();
  for (const line of readFileSync(`/proc/${pid}/maps`, "utf8").split("\n")) {
    // address perms offset dev inode path
    const f = line.split(/\s+/);
    if (f.length >= 6 && f.slice(5).join(" ").startsWith(`${dir}/`) && line.endsWith("(deleted)"))
      keys.add(`${f[3]}:${f[4]}`);
  }
  return [...keys];
}

/** Processes that still map or hold open a file with one of these dev:inode keys. */
function holders(keys: string[]): string[] {
  const found: string[] = [];
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      for (const line of readFileSync(`/proc/${pid}/maps`, "utf8").split("\n")) {
        const f = line.split(/\s+/);
        if (f.length >= 5 && keys.includes(`${f[3]}:${f[4]}`)) found.push(`${pid}: ${line}`);
      }
    } catch {
      /* gone */
    }
  }
  return found;
}

/**
 * Starts hold.c with 1 GiB in the arena, SIGKILLs it, checks what is left:
 * nothing in the data directory, no process holding the backing file, and,
 * where the filesystem is ours alone (exact), its usage back where it was.
 */
async function killHolder(dir: string, exact: boolean): Promise<void> {
  const before = fsUsed(dir);
  const h = await spawnUntil(
    [cProgram("hold"), "1G"],
    { LD_PRELOAD: LIB, EXM_DIR: dir, EXM_TEST_REQUIRE_LIB: "1" },
    "ready",
    120_000,
  );
  const during = fsUsed(dir);
  expect(h.stdout).toContain("file_backed=1");
  expect(listDir(dir)).toEqual([]); // unlinked from birth
  const files = mappedDeletedFiles(h.proc.pid, dir);
  h.proc.kill("SIGKILL");
  await h.proc.exited;
  if (files.length === 0) throw new Error(`the holder mapped no deleted file under ${dir}`);
  const back = exact ? await waitFor(() => fsUsed(dir) - before < 4 * MiB, 10_000, 100) : true;
  const after = fsUsed(dir);
  console.log(
    `hold 1 GiB on ${exact ? "a tmpfs" : dir}: used +${((during - before) / MiB).toFixed(0)} MiB while held, ` +
      `+${((after - before) / MiB).toFixed(0)} MiB after SIGKILL${exact ? "" : " (shared disk: noise from other processes)"}`,
  );
  const left = holders(files);
  if (left.length) throw new Error(`backing file still held after SIGKILL:\n${left.join("\n")}`);
  expect(listDir(dir)).toEqual([]);
  if (exact) {
    if (during - before < 1000 * MiB)
      throw new Error(`holding 1 GiB used only ${(during - before) / MiB} MiB: is it fallocated?`);
    if (!back) throw new Error(`space not given back: ${(after - before) / MiB} MiB still used after SIGKILL`);
  }
}

describe.skipIf(skipNoLib)("SIGKILL of a process holding 1 GiB in the arena", () => {
  test.skipIf(!!tmpfsAvailable())("on a tmpfs (exact accounting)", async () => {
    await withTmpfs(2 * GiB, (dir) => killHolder(dir, true));
  }, 120_000);
  test("on the default disk (TMPDIR)", async () => {
    // other processes share this filesystem: usage is only reported; what is
    // asserted is that no process holds the unlinked backing file any more
    await withDataDir((dir) => killHolder(dir, false));
  }, 120_000);
});
