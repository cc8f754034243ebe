/*
 * native-tcache.test.ts: realloc of small chunks through the thread cache
 * (issue 14: the realloc of a small chunk took the arena lock twice or
 * three times; it now moves through the calling thread's cache when that
 * holds a chunk of the new size, with no lock).
 *
 * The always-on check stays on that path: a realloc of a small block that
 * was already freed (so sits in the cache) aborts with one line, whether it
 * would have moved, stayed in place or shrunk (tests/c/realloc_freed.c).
 * Contents across those moves: tests/c/realloc_cross.c (native.test.ts) and
 * tests/c/realloc_growth.c (native-growth.test.ts).
 */
import { describe, expect, test } from "bun:test";
import { LIB_MISSING, assertRun, withDataDir } from "./support/native";
import { cProgram, runWithLib } from "./support/sys";

describe.skipIf(!!LIB_MISSING)("realloc of a freed small block at threshold 0", () => {
  for (const how of ["grow", "fits", "shrink"]) {
    test(`${how}: aborts with exm's one line`, async () => {
      await withDataDir(async (dir) => {
        const r = await runWithLib([cProgram("realloc_freed"), how], { EXM_DIR: dir, EXM_THRESHOLD: "0" }, { timeoutMs: 30_000 });
        assertRun(r.signal === "SIGABRT", r, `${how}: expected SIGABRT`);
        expect(r.stdout).not.toContain("not detected");
        expect(r.stderr).toContain("realloc");
        expect(r.stderr).toContain("not a live block of the file-backed arena");
      });
    });
  }
});
