/*
 * native-depot.test.ts: small blocks that move between threads, at
 * threshold 0 (issue 14). A full bin of a thread's cache hands half of
 * itself to its size class's depot, an empty one takes a batch from there
 * before the arena's lock (native/tcache.c); tests/c/depot.c drives it.
 *
 * What a user would check: blocks a producer hands to consumers keep their
 * contents and all come back (live blocks at the end as at the start, the
 * producer gone before the last ones are freed); exm_check passes while
 * the blocks move; a second free of a block that sits in the depot aborts
 * with exm's one line, from any thread, also when two threads free it at
 * the same moment; fork while blocks move between
 * threads gives every child mode a consistent heap it can use, also when
 * the child runs only after the parent has reused the depot's chunks, and
 * at the process's descriptor limit.
 * The same program under ThreadSanitizer: tests/stress.test.ts.
 */
import { describe, expect, test } from "bun:test";
import { LIB_MISSING, assertRun, runC, withDataDir } from "./support/native";
import { cProgram, kv, runWithLib } from "./support/sys";

describe.skipIf(!!LIB_MISSING)("blocks moving between threads' caches, threshold 0", () => {
  test("a producer's blocks, freed by two consumers: contents kept, every block back", async () => {
    const r = await runC("depot", ["handoff", "200000"], { EXM_THRESHOLD: "0" }, 120_000);
    const v = kv(r.stdout);
    expect(Number(v.live_blocks_after)).toBe(Number(v.live_blocks_before));
    expect(Number(v.checks)).toBe(20);
  }, 130_000);

  test("a double free of a block in the depot, from another thread, aborts with exm's message", async () => {
    await withDataDir(async (dir) => {
      const r = await runWithLib([cProgram("tcache_threads"), "double-free", "depot"], { EXM_DIR: dir, EXM_THRESHOLD: "0" }, { timeoutMs: 60_000 });
      assertRun(r.signal === "SIGABRT", r, "expected SIGABRT");
      expect(r.stdout).toContain("second free");
      expect(r.stdout).not.toContain("not detected");
      expect(r.stderr).toContain("not a live block of the file-backed arena (double free");
    });
  });

  // Two frees of one block at the same moment on two threads both read "not
  // cached" and both cached it, before the mark went in by compare-and-swap
  // (native/core.h, exm_core_claim_cached). How often depends on how the
  // two CPUs are scheduled: that build let 6, 0, 14 and 16 of 1000 trials
  // through in four runs, so this test catches it most of the time, not
  // always. The new build: none in 7500.
  test("two frees of one block racing on two threads: one of them aborts, every time", async () => {
    await withDataDir(async (dir) => {
      const r = await runWithLib([cProgram("tcache_threads"), "race", "1000"], { EXM_DIR: dir, EXM_THRESHOLD: "0" }, { timeoutMs: 120_000 });
      assertRun(r.code === 0, r, "race driver failed");
      const v = kv(r.stdout);
      expect(Number(v.trials)).toBe(1000);
      expect(Number(v.slipped)).toBe(0);
      expect(Number(v.other)).toBe(0);
      expect(Number(v.aborted)).toBe(1000);
    });
  }, 130_000);

  // The other side of it: a free that gives a cached block back under the
  // arena's lock (malloc_trim's flush) while another thread frees the block
  // again, at delays that sweep the flush: before it the second free finds
  // the mark, during it the flush's free or the claim sees the other (it
  // used to ignore a failed free), after it the live bit is clear. No slip
  // was seen before the change either: the window is a few instructions.
  test("a double free racing the cache's flush under the lock aborts, every time", async () => {
    await withDataDir(async (dir) => {
      const r = await runWithLib([cProgram("tcache_threads"), "race", "300", "trim"], { EXM_DIR: dir, EXM_THRESHOLD: "0" }, { timeoutMs: 120_000 });
      assertRun(r.code === 0, r, "race driver failed");
      const v = kv(r.stdout);
      expect(Number(v.slipped)).toBe(0);
      expect(Number(v.other)).toBe(0);
      expect(Number(v.aborted)).toBe(300);
    });
  }, 130_000);

  for (const mode of ["duplicate", "cow", "shared"]) {
    test(`fork while two threads swap blocks, EXM_CHILD=${mode}: each child allocates, frees and checks`, async () => {
      const r = await runC("depot", ["fork", "20"], { EXM_THRESHOLD: "0", EXM_CHILD: mode }, 120_000);
      expect(Number(kv(r.stdout).forks)).toBe(20);
    }, 130_000);

    // CI's stress_fork (threshold 0, 8 threads, cow) lost a child to SIGSEGV
    // 1 run in 3: the child's fork handler walked the depot's batches through
    // the parent's live memory, after the parent had taken a batch and written
    // over it. Here the child is held until that has happened, every time.
    test(`EXM_CHILD=${mode}: a child whose fork handlers run after the parent rewrote the depot's chunks`, async () => {
      const r = await runC("depot", ["fork-late", "5"], { EXM_THRESHOLD: "0", EXM_CHILD: mode }, 60_000);
      expect(Number(kv(r.stdout).forks)).toBe(5);
    }, 70_000);

    // Found reading fork.c after the bug above: at the descriptor limit
    // (no file, memfd or pipe for the copy of the heap) the child copied
    // its small-chunk segments itself, from the parent's memory as it was by
    // then. Held until the parent had freed and reused the blocks it
    // inherited, the child died of SIGSEGV freeing them, in every mode.
    test(`EXM_CHILD=${mode}: at the descriptor limit, a child still gets the heap as it was at the fork`, async () => {
      const r = await runC("depot", ["fork-nofd", "5"], { EXM_THRESHOLD: "0", EXM_CHILD: mode }, 60_000);
      expect(Number(kv(r.stdout).forks)).toBe(5);
    }, 70_000);
  }
});
