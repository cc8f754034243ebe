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

/** The phases of advisor_phases.c under the cgroup, with a given EXM_ADVICE; its key=value output. */
async function phases(advice: string, randomSeconds: number): Promise<Record<string, string>> {
  return withDataDir(async (dir) => {
    const r = await runInCgroup(256 * MiB, [cProgram("advisor_phases"), "768", String(randomSeconds)], {
      env: { LD_PRELOAD: LIB, EXM_TEST_REQUIRE_LIB: "1", EXM_DIR: dir, EXM_THRESHOLD: "1M", EXM_ADVICE: advice },
      timeoutMs: 120_000,
    });
    assertOk(r, "advisor_phases ok");
    return kv(r.stdout);
  });
}

describe.skipIf(skip)("EXM_ADVICE=auto under a 256 MiB cgroup", () => {
  test("a 768 MiB block: sequential while filled, random during random reads, sequential again for a scan", async () => {
    const o = await phases("auto", 4);
    expect([o.after_fill, o.after_random, o.after_scan]).toEqual(["sr", "rr", "sr"]);
  }, 150_000);

  test("EXM_ADVICE=normal leaves the block alone", async () => {
    const o = await phases("normal", 2);
    expect([o.after_fill, o.after_random, o.after_scan]).toEqual(["--", "--", "--"]);
  }, 150_000);
});
