/**
 * --threshold auto (issue 13's budget mode, native/budget.c): blocks at or
 * above the threshold are served from RAM while half the room under the
 * process's memory limits (MemAvailable, its cgroup's limit less usage)
 * takes them, and from the file past it.
 *
 * A run that fits makes no arena file pages at all; a run under a real
 * memory cgroup that outgrows it completes, its first block in RAM and the
 * later ones in the file; a bad value is one line and exit 2 from the CLI,
 * one line and the default from the library.
 */
import { describe, expect, test, setDefaultTimeout } from "bun:test";
import { LIB_MISSING, MiB, assertOk, assertRun, runC, withDataDir } from "./support/native";
import { EXM, LIB, cProgram, cgroupAvailable, kv, run, runInCgroup, runWithLib, skipUnless } from "./support/sys";
import { existsSync } from "node:fs";

setDefaultTimeout(120_000);

const skipNoLib = !!LIB_MISSING;
const noCgroup = skipNoLib || skipUnless(cgroupAvailable(), "--threshold auto under a memory cgroup");
const noCli = skipUnless(existsSync(EXM) ? null : `${EXM} not built`, "--threshold auto from the CLI");

describe.skipIf(skipNoLib)("a run that fits", () => {
  test("EXM_THRESHOLD=auto: three 128 MiB blocks (one grown by realloc) in RAM, no arena file pages", async () => {
    const r = await runC("budget", ["3", "128M"], { EXM_THRESHOLD: "auto" });
    const v = kv(r.stdout);
    expect(v.placed).toBe("RRR");
    expect(v.total_allocs).toBe("0");
    expect(v.disk_reserved).toBe("0");
    // 3 x 128 MiB, and the realloc's 32 MiB of growth
    expect(Number(v.ram_budget_bytes)).toBeGreaterThanOrEqual(3 * 128 * MiB + 31 * MiB);
  });
  test("the default threshold sends the same blocks to the file (the control)", async () => {
    const v = kv((await runC("budget", ["3", "128M"])).stdout);
    expect(v.placed).toBe("FFF");
    expect(v.ram_budget_bytes).toBe("0");
  });
  test("a bad value: one line, and the default size threshold (blocks in the file)", async () => {
    await withDataDir(async (dir) => {
      const r = await runWithLib([cProgram("budget"), "1", "128M"], { EXM_DIR: dir, EXM_THRESHOLD: "autox" });
      assertOk(r, "budget ok");
      expect(r.stderr.trim()).toBe(
        "exm: EXM_THRESHOLD: 'autox' is not a size (bytes, or a number with K, M, G, T, P or E: 4096, 512K, 1.5GiB) or auto; using the default (64M)",
      );
      expect(kv(r.stdout).placed).toBe("F");
    });
  });
});

describe.skipIf(noCgroup)("a run that outgrows its memory cgroup under auto", () => {
  test("8 blocks of 96 MiB kept live under 512 MiB: completes, the first in RAM, later ones in the file; --verbose says both", async () => {
    await withDataDir(async (dir) => {
      const argv = [cProgram("budget"), "8", "96M"];
      const r = await runInCgroup(512 * MiB, argv, {
        env: { LD_PRELOAD: LIB, EXM_DIR: dir, EXM_THRESHOLD: "auto", EXM_VERBOSE: "1", EXM_TEST_REQUIRE_LIB: "1" },
        timeoutMs: 240_000,
      });
      assertRun(!r.oomKilled, r, "OOM kill");
      assertOk(r, "budget ok", "budget 8 x 96M under 512 MiB");
      const placed = kv(r.stdout).placed!;
      expect(placed[0]).toBe("R");
      expect(placed).toContain("F");
      // RAM blocks never take more than about half the limit
      expect(placed.split("").filter((c) => c === "R").length).toBeLessThanOrEqual(3);
      expect(r.stderr).toMatch(/^exm: pid \d+: --threshold auto: 96\.0 MiB in RAM, from a budget of half the headroom \([\d.]+ MiB: /m);
      expect(r.stderr).toMatch(/^exm: pid \d+: --threshold auto: 96\.0 MiB to the file: the RAM budget is spent \([\d.]+ MiB served from RAM/m);
    });
  }, 300_000);
});

describe.skipIf(noCli)("exm --threshold auto", () => {
  test("--threshold autox: one line, exit 2, nothing runs", async () => {
    const r = await run([EXM, "--threshold", "autox", "true"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      "exm: --threshold: 'autox' is not a size (bytes, or a number with K, M, G, T, P or E: 4096, 512K, 1.5GiB) or auto\n",
    );
  });
  test("--stats says what the budget served from RAM; the program gets EXM_THRESHOLD=auto", async () => {
    await withDataDir(async (dir) => {
      const r = await run([EXM, "--threshold", "AUTO", "--dir", dir, "--stats", cProgram("budget"), "2", "128M"]);
      assertOk(r, "budget ok");
      expect(kv(r.stdout).placed).toBe("RR");
      expect(r.stderr).toMatch(/nothing file-backed; 2[0-9.]* MiB served from RAM by --threshold auto;/);
      const env = await run([EXM, "--threshold", "auto", "sh", "-c", "echo $EXM_THRESHOLD"]);
      expect(env.stdout.trim()).toBe("auto");
    });
  });
});
