/**
 * EXM_ADVICE=auto (native/advisor.c), checked where it acts: the advice
 * flags the kernel holds for the block's mapping (VmFlags in smaps). A
 * 768 MiB block is filled, read at random, then scanned, inside a 256 MiB
 * memory cgroup so that reads fault; the advice must follow the phases.
 * Speed is for bench/, not here: only the flags are asserted.
 */
import { describe, expect, test } from "bun:test";
import { LIB_MISSING, assertOk, withDataDir } from "./support/native";
import { LIB, cProgram, cgroupAvailable, kv, runInCgroup, skipUnless } from "./support/sys";

const MiB = 1 << 20;
const skip = !!LIB_MISSING || skipUnless(cgroupAvailable(), "advisor tests (memory cgroup)");

describe.skipIf(skip)("EXM_ADVICE=auto under a 256 MiB cgroup", () => {
  test("a 768 MiB block: sequential while filled, random during random reads, sequential again for a scan", async () => {
    await withDataDir(async (dir) => {
      const r = await runInCgroup(256 * MiB, [cProgram("advisor_phases"), "768", "4"], {
        env: { LD_PRELOAD: LIB, EXM_TEST_REQUIRE_LIB: "1", EXM_DIR: dir, EXM_THRESHOLD: "1M", EXM_ADVICE: "auto" },
        timeoutMs: 120_000,
      });
      assertOk(r, "advisor_phases ok");
      const o = kv(r.stdout);
      expect(o.after_fill).toBe("sr");
      expect(o.after_random).toBe("rr");
      expect(o.after_scan).toBe("sr");
    });
  }, 150_000);

  test("EXM_ADVICE=normal leaves the block alone", async () => {
    await withDataDir(async (dir) => {
      const r = await runInCgroup(256 * MiB, [cProgram("advisor_phases"), "768", "2"], {
        env: { LD_PRELOAD: LIB, EXM_TEST_REQUIRE_LIB: "1", EXM_DIR: dir, EXM_THRESHOLD: "1M", EXM_ADVICE: "normal" },
        timeoutMs: 120_000,
      });
      assertOk(r, "advisor_phases ok");
      const o = kv(r.stdout);
      expect([o.after_fill, o.after_random, o.after_scan]).toEqual(["--", "--", "--"]);
    });
  }, 150_000);
});
