/**
 * libexm's C API and statistics (issue 4): every function of exm.h from a
 * preloaded program and from one linked with -lexm (no LD_PRELOAD), and
 * EXM_STATS as a human summary and as JSON.
 */
import { describe, expect, test, setDefaultTimeout } from "bun:test";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { LIB_MISSING, MiB, assertOk, assertRun, runC, withDataDir } from "./support/native";
import { HEADER_DIR, LIB, cProgram, kv, run, runWithLib } from "./support/sys";

// Each test bounds its own runs; this only backs them up.
setDefaultTimeout(120_000);

const skipNoLib = !!LIB_MISSING;

describe.skipIf(skipNoLib)("C API", () => {
  test("preloaded", async () => {
    const r = await runC("api_calls");
    expect(kv(r.stdout).version).toMatch(/^\d+\.\d+\.\d+$/);
  });
  test("linked with -lexm, no LD_PRELOAD", async () => {
    // -L build -lexm for the built library; by path for an EXM_TEST_LIB build
    const link =
      LIB === join(HEADER_DIR, "libexm.so")
        ? ["-L", HEADER_DIR, "-lexm", `-Wl,-rpath,${HEADER_DIR}`]
        : [LIB, `-Wl,-rpath,${dirname(LIB)}`];
    const bin = cProgram("api_calls", { flags: ["-DEXM_LINKED"], link });
    await withDataDir(async (dir) => {
      const r = await run([bin], { env: { EXM_DIR: dir }, timeoutMs: 60_000 });
      assertOk(r, "api_calls ok", "api_calls linked with -lexm");
    });
  });
});

describe.skipIf(skipNoLib)("madvise (defined by the library)", () => {
  test("the system call's results and errors; MADV_HUGEPAGE kept off a block advised random only", async () => {
    const r = await runC("madvise_calls", [], { EXM_THRESHOLD: "1M", EXM_ADVICE: "auto" });
    expect(r.stdout).toContain("anonymous ok");
    expect(r.stdout).toContain("arena ok");
  });
});

describe.skipIf(skipNoLib)("EXM_STATS", () => {
  test("a path: JSON written there, matching what was allocated", async () => {
    await withDataDir(async (dir) => {
      const out = join(dir, "..", `exm-stats-${process.pid}-${Date.now()}.json`);
      const r = await runWithLib([cProgram("stats_run"), "3", "100M"], { EXM_DIR: dir, EXM_STATS: out });
      assertOk(r);
      assertRun(existsSync(out), r, `no stats file at ${out}`);
      const text = readFileSync(out, "utf8");
      let s: Record<string, number>;
      try {
        s = JSON.parse(text);
      } catch (e) {
        throw new Error(`stats file is not JSON: ${(e as Error).message}\n${text}`);
      }
      const fields = ["peakLiveBytes", "totalAllocs", "totalFrees", "peakDiskReserved", "liveBytes"];
      for (const f of fields) if (typeof s[f] !== "number") throw new Error(`stats JSON lacks ${f}:\n${text}`);
      expect(s.peakLiveBytes!).toBeGreaterThanOrEqual(300 * MiB);
      expect(s.peakLiveBytes!).toBeLessThan(310 * MiB);
      expect(s.totalAllocs!).toBeGreaterThanOrEqual(3);
      expect(s.totalFrees!).toBeGreaterThanOrEqual(3);
      expect(s.liveBytes!).toBeLessThan(MiB);
      expect(s.peakDiskReserved!).toBeGreaterThanOrEqual(300 * MiB);
      rmSync(out, { force: true });
    });
  });
  test("1: one human summary on stderr at exit", async () => {
    await withDataDir(async (dir) => {
      const r = await runWithLib([cProgram("stats_run"), "2", "80M"], { EXM_DIR: dir, EXM_STATS: "1" });
      assertOk(r);
      assertRun(/exm/i.test(r.stderr) && r.stderr.trim().length > 0, r, "no summary on stderr");
    });
  });
  // The library installs no signal handler (the program's dispositions are its
  // own): a process killed by a signal leaves no record by hand. `exm --stats`
  // reports such runs (tests/native-stats.test.ts).
  test("a path, exit by SIGTERM: the program dies of it at once, and no record is written", async () => {
    await withDataDir(async (dir) => {
      const out = join(dir, "..", `exm-stats-term-${process.pid}-${Date.now()}.json`);
      const r = await runWithLib([cProgram("stats_run"), "1", "70M", "kill"], { EXM_DIR: dir, EXM_STATS: out });
      expect(r.signal).toBe("SIGTERM");
      expect(existsSync(out)).toBe(false);
      rmSync(out, { force: true });
    });
  });
});
