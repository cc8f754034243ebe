/**
 * The allocator's own cost (issue 14), what its changes could break.
 *
 * The malloc family's fast paths: free and realloc tell glibc's
 * pointers from the arena's by one range check over every arena's span, and
 * malloc/calloc/realloc compare the size with one cached copy of the
 * threshold. tests/c/span_free.c checks them where they can be wrong: glibc
 * pointers right below and right at the end of the arena's mapping, in a hole
 * between a forked child's arena and the inherited one, the arena's lowest
 * and last addresses, and exm_set_threshold moving the fast paths. (glibc's
 * own small allocations at threshold 0: tests/glibc.test.ts, "stdio".)
 *
 * The carving core's retention of freed page blocks (tests/c/core_flush.c,
 * on a buffer): past the limit, the largest retained extents are punched
 * until half is left, and the rest is reused without reserving disk.
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { LIB_MISSING, assertOk, assertRun, withDataDir } from "./support/native";
import { ROOT, cProgram, compileC, kv, run, runWithLib } from "./support/sys";

test("core_flush: past the retention limit the largest extents are punched, half is kept for reuse", async () => {
  const bin = compileC(join(ROOT, "tests", "c", "core_flush.c"), { link: [join(ROOT, "native", "core.c")] });
  const r = await run([bin], { timeoutMs: 60_000 });
  assertOk(r, "core_flush ok", "core_flush");
});

describe.skipIf(!!LIB_MISSING)("free's range check at the edges of the arenas (span_free)", () => {
  for (const mode of ["edges", "between", "threshold"]) {
    test(mode, async () => {
      await withDataDir(async (dir) => {
        const r = await runWithLib([cProgram("span_free"), mode], { EXM_DIR: dir, EXM_THRESHOLD: "1M" }, { timeoutMs: 60_000 });
        assertOk(r, `${mode} ok`, `span_free ${mode}`);
        if (mode === "edges") expect(Number(kv(r.stdout).edges_tested)).toBeGreaterThanOrEqual(1);
      });
    });
  }
  test("free of the arena's last 16 bytes (no block there) aborts with one line", async () => {
    await withDataDir(async (dir) => {
      const r = await runWithLib([cProgram("span_free"), "top"], { EXM_DIR: dir, EXM_THRESHOLD: "1M" }, { timeoutMs: 30_000 });
      assertRun(r.signal === "SIGABRT", r, "top: expected SIGABRT");
      assertRun(/not a live block of the file-backed arena/.test(r.stderr), r, "top: expected exm's one line");
      assertRun(!r.stdout.includes("not detected"), r, "top: misuse not detected");
    });
  });
});
