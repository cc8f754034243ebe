/**
 * libexm preloaded into small C programs (issue 3): the malloc family's
 * contract at several thresholds, alignment, zeroing, realloc across the
 * threshold, threads, disk given back, the always-on free check, and the
 * EXM_* settings. Out-of-core, full-disk and crash tests are in
 * native-ooc.test.ts; fork and the C API (issue 4) in native-fork/-api.
 *
 * Every run gets a fresh EXM_DIR that must be empty afterwards.
 */
import { describe, expect, test, setDefaultTimeout } from "bun:test";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { GiB, LIB_MISSING, THRESHOLDS, assertOk, assertRun, runC, withDataDir } from "./support/native";
import { ROOT, cProgram, compileC, fsAvail, kv, run, runWithLib } from "./support/sys";

// Each test bounds its own runs; this only backs them up.
setDefaultTimeout(120_000);

const skipNoLib = !!LIB_MISSING;

describe("the test programs themselves, without exm (glibc's answers)", () => {
  for (const name of ["api_edge", "align_sweep", "calloc_zero", "realloc_cross"]) {
    test(name, async () => {
      const r = await run([cProgram(name)], { timeoutMs: 60_000 });
      assertOk(r, `${name} ok`, `${name} without exm`);
    });
  }
  test("stress_threads 4", async () => {
    const r = await run([cProgram("stress_threads"), "4", "3000"], { timeoutMs: 60_000 });
    assertOk(r, "stress_threads ok");
  });
});

describe.skipIf(skipNoLib)("malloc family contract (api_edge)", () => {
  for (const [label, t] of THRESHOLDS) {
    test(`threshold ${label}`, async () => {
      const r = await runC("api_edge", [], { EXM_THRESHOLD: t });
      expect(kv(r.stdout).lib).toBe("1");
    });
  }
});

describe.skipIf(skipNoLib)("alignment sweep 16 B .. 1 MiB", () => {
  for (const [label, t] of THRESHOLDS.slice(0, 3)) {
    test(`threshold ${label}`, async () => {
      const r = await runC("align_sweep", [], { EXM_THRESHOLD: t });
      const v = kv(r.stdout);
      // at threshold 0 every block comes from the arena
      if (label === "0") expect(v.file_backed).toBe(v.blocks);
    });
  }
});

describe.skipIf(skipNoLib)("calloc returns zeros after reuse", () => {
  for (const t of ["0", "4096", "1M"]) {
    test(`threshold ${t}`, async () => {
      await runC("calloc_zero", [], { EXM_THRESHOLD: t });
    });
  }
  test("calloc(64 GiB) at 1 MiB: no page touched (faults counted), zeros, RSS stays tiny", async () => {
    await withDataDir(async (dir) => {
      // The arena reserves disk for what it hands out: 64 GiB needs that much
      // free. On a fuller disk, the largest whole GiB that leaves 8 GiB spare.
      const avail = fsAvail(dir);
      const gib = Math.min(64, Math.floor(avail / GiB) - 8);
      if (gib < 4) {
        console.warn(`skip big calloc: only ${(avail / GiB).toFixed(1)} GiB free in ${dir}`);
        return;
      }
      if (gib < 64) console.warn(`big calloc: ${gib} GiB instead of 64 (only ${(avail / GiB).toFixed(1)} GiB free)`);
      const r = await runWithLib(
        [cProgram("calloc_zero"), "big", `${gib}G`],
        { EXM_DIR: dir, EXM_THRESHOLD: "1M" },
        { timeoutMs: 60_000 },
      );
      assertOk(r, "calloc_zero ok", `calloc(${gib} GiB)`);
      console.log(`calloc(${gib} GiB): ${kv(r.stdout).big_calloc_faults} page faults, ${kv(r.stdout).big_calloc_ms} ms (bare fallocate ${kv(r.stdout).raw_fallocate_ms} ms), free ${kv(r.stdout).big_free_ms} ms`);
    });
  });
});

describe.skipIf(skipNoLib)("realloc across the threshold and in place", () => {
  for (const [label, t] of THRESHOLDS) {
    // Disk-bound at the default threshold (64 MiB blocks moved and grown):
    // 10-20 s idle, over 60 s under load 20 on a shared disk. A generous
    // bound: the test counts what it checks, not how long it takes.
    test(`threshold ${label}`, async () => {
      await runC("realloc_cross", [], { EXM_THRESHOLD: t }, 300_000);
    }, 320_000);
  }
});

describe.skipIf(skipNoLib)("threads hammering random sizes, patterns verified at free", () => {
  for (const threads of ["1", "4"]) {
    for (const t of ["0", "4096", "1M"]) {
      test(`${threads} thread(s) at threshold ${t}`, async () => {
        const r = await runC("stress_threads", [threads, "3000"], { EXM_THRESHOLD: t }, 90_000);
        const v = kv(r.stdout);
        expect(Number(v.ops)).toBeGreaterThan(1000);
      }, 120_000);
    }
  }
});

// The per-thread cache of small chunks, at threshold 0 (every block in the arena).
describe.skipIf(skipNoLib)("thread caches across threads", () => {
  test("100 threads that only free give their caches back when they exit", async () => {
    const r = await runC("tcache_threads", ["consumers", "100"], { EXM_THRESHOLD: "0" });
    const v = kv(r.stdout);
    expect(Number(v.live_blocks_after)).toBeLessThanOrEqual(Number(v.live_blocks_before) + 16);
  });
  // A cached chunk holds the cache's mark in its second word: every way out
  // of a cache must clear it, or a block the program never writes reads as
  // a double free when it is freed.
  test("blocks that are never written pass through caches, the depot and the arena and free without a false double free", async () => {
    const r = await runC("tcache_threads", ["unwritten", "40"], { EXM_THRESHOLD: "0" }, 120_000);
    expect(r.stdout).toContain("tcache_threads ok");
    const v = kv(r.stdout);
    expect(Number(v.live_blocks_after)).toBeLessThanOrEqual(Number(v.live_blocks_before) + 16);
  });
  test("a double free from a second thread aborts with exm's message (it used to hand the block out twice)", async () => {
    await withDataDir(async (dir) => {
      const r = await runWithLib([cProgram("tcache_threads"), "double-free"], { EXM_DIR: dir, EXM_THRESHOLD: "0" }, { timeoutMs: 60_000 });
      assertRun(r.signal === "SIGABRT", r, "expected SIGABRT");
      expect(r.stdout).toContain("second free");
      expect(r.stderr).toContain("not a live block of the file-backed arena (double free");
    });
  });
});

// main ends with pthread_exit while the advisor thread runs: the advisor
// ends the process (glibc's last thread would call exit(0) too), so the
// program's atexit handler ran on the advisor's 64 KiB stack with every
// signal blocked: a handler using 1 MiB of stack crashed with SIGSEGV.
describe("the advisor ending a process whose main called pthread_exit", () => {
  test("without exm: the atexit handler runs", async () => {
    const r = await run([cProgram("advisor_exit")], { timeoutMs: 30_000 });
    assertOk(r, "advisor_exit ok");
  });
  test.skipIf(skipNoLib)("with the advisor running: a normal stack and the program's signal mask", async () => {
    const r = await runC("advisor_exit", [], { EXM_THRESHOLD: "1M", EXM_ADVICE: "auto" }, 30_000);
    expect(kv(r.stdout).file_backed).toBe("1");
    expect(r.stdout).toContain("sigterm_blocked=0");
  });
});

describe.skipIf(skipNoLib)("disk given back", () => {
  test("the backing file shrinks to near zero after all blocks are freed", async () => {
    const r = await runC("free_disk", [], { EXM_THRESHOLD: "1M" });
    console.log(r.stdout.split("\n").filter((l) => l.includes("file_bytes")).join("\n"));
  });

  // free() of a large block hands its punch to a background thread (punch.c):
  // the disk must still come back by itself, and at once for exm_get_stats.
  test("a large block's disk comes back in the background, and at once when statistics are asked for", async () => {
    const r = await runC("free_background", ["512M"], { EXM_THRESHOLD: "1M" }, 300_000);
    console.log(`free of 512 MiB: ${kv(r.stdout).free_s} s`);
  }, 320_000);

  test("the background punch thread does not keep a process alive after main's pthread_exit", async () => {
    const r = await runC("free_background", ["64M", "exit-main"], { EXM_THRESHOLD: "1M" }, 120_000);
    expect(r.code).toBe(0);
  }, 130_000);

  // Each malloc needs the disk of the block freed just before, still being
  // punched by the thread: it must wait for it rather than go to RAM.
  test("under --max-disk, an allocation that needs disk still being given back waits for it and is file-backed", async () => {
    const r = await runC("punch_queue", ["cap", "6"], { EXM_THRESHOLD: "1M", EXM_MAX_DISK: "256M" }, 120_000);
    expect(r.stdout).toContain("file_backed=6 of 6");
    expect(r.stderr).not.toContain("RAM");
  }, 130_000);

  // 48 blocks of 8 MiB freed far faster than they can be punched: the ones
  // past the bound (an eighth of the live bytes) are punched by free itself.
  test("frees waiting for the background punch hold at most an eighth of the live bytes' disk (8 MiB at least)", async () => {
    const r = await runC("punch_queue", ["bound"], { EXM_THRESHOLD: "1M" }, 120_000);
    const o = kv(r.stdout);
    expect(Number(o.file_mib)).toBeLessThanOrEqual(Number(o.bound_mib));
  }, 130_000);

  for (const mode of ["cow", "shared", "duplicate"]) {
    test(`a fork (--child ${mode}) while freed blocks wait for the punch: child and parent consistent, disk given back`, async () => {
      await runC("punch_queue", ["fork", mode], { EXM_THRESHOLD: "1M" }, 120_000);
    }, 130_000);
  }

  test("the record at exit counts a block freed just before as given back", async () => {
    await withDataDir(async (dir) => {
      const out = join(dir, "..", `exm-punch-stats-${process.pid}.json`);
      try {
        const r = await runWithLib([cProgram("punch_queue"), "exit"], { EXM_DIR: dir, EXM_THRESHOLD: "1M", EXM_STATS: out });
        assertOk(r, "punch_queue ok");
        const s = JSON.parse(readFileSync(out, "utf8")) as Record<string, number>;
        expect(s.bytesPunched!).toBeGreaterThanOrEqual(256 * 2 ** 20);
        expect(s.diskReserved!).toBeLessThan(32 * 2 ** 20);
      } finally {
        rmSync(out, { force: true });
      }
    });
  }, 60_000);
});

describe.skipIf(skipNoLib)("many blocks, one mapping", () => {
  // 70 000 is past vm.max_map_count's default (65 530); the other advices
  // only need enough blocks for a VMA per block to show in the count.
  for (const [advice, n] of [["auto", "70000"], ["random", "20000"], ["sequential", "20000"]] as const) {
    test(`${n} live 4-12 KiB blocks at threshold 4096 (EXM_ADVICE=${advice}): no VMA per block`, async () => {
      // ~100 us per block on ext4 (a fallocate and a punch each): slow on a busy disk
      const r = await runC("many_blocks", [n], { EXM_THRESHOLD: "4096", EXM_ADVICE: advice }, 150_000);
      console.log(r.stdout.split("\n").find((l) => l.startsWith("blocks=")));
    }, 180_000);
  }
});

describe.skipIf(skipNoLib)("fallback to the arena when glibc fails", () => {
  test("1 MiB mallocs under RLIMIT_DATA succeed from the arena", async () => {
    await runC("fallback");
  });
});

describe.skipIf(skipNoLib)("always-on check of pointers given to free/realloc", () => {
  for (const misuse of ["double", "interior", "realloc-interior"]) {
    test(`${misuse} free aborts with one line`, async () => {
      await withDataDir(async (dir) => {
        const r = await runWithLib([cProgram("bad_free"), misuse], { EXM_DIR: dir, EXM_THRESHOLD: "1M" }, {
          timeoutMs: 30_000,
        });
        assertRun(r.signal === "SIGABRT", r, `${misuse}: expected SIGABRT`);
        const lines = r.stderr.trim().split("\n").filter(Boolean);
        assertRun(lines.length >= 1 && lines.length <= 2, r, `${misuse}: expected one line on stderr`);
        assertRun(!r.stdout.includes("not detected"), r, `${misuse}: misuse not detected`);
      });
    });
  }
});

describe.skipIf(skipNoLib)("EXM_* settings read by the library", () => {
  const cases: [string, number][] = [
    ["4096", 4096],
    ["512K", 512 * 1024],
    ["64M", 64 * 1024 * 1024],
    ["2G", 2 * GiB],
    ["1.5GiB", 1.5 * GiB],
    ["0", 0],
  ];
  for (const [value, bytes] of cases) {
    test(`EXM_THRESHOLD=${value} means ${bytes} bytes`, async () => {
      await withDataDir(async (dir) => {
        const r = await runWithLib([cProgram("print_config")], { EXM_DIR: dir, EXM_THRESHOLD: value });
        assertOk(r);
        expect(kv(r.stdout).threshold).toBe(String(bytes));
        assertRun(r.stderr === "", r, "a valid value must print nothing");
      });
    });
  }
  test("defaults: 64 MiB threshold, cow, auto advice, no disk cap, TMPDIR as data dir", async () => {
    await withDataDir(async (dir) => {
      const r = await runWithLib([cProgram("print_config")], { TMPDIR: dir });
      assertOk(r);
      const v = kv(r.stdout);
      expect(v.threshold).toBe(String(64 * 1024 * 1024));
      expect(v.child).toBe("0");
      expect(v.advice).toBe("0");
      expect(v.max_disk).toBe("0");
      expect(v.dir).toBe(dir);
    });
  });
  for (const [name, value] of [
    ["EXM_THRESHOLD", "banana"],
    ["EXM_THRESHOLD", "-5M"],
    ["EXM_CHILD", "fork"],
    ["EXM_ADVICE", "fast"],
    ["EXM_MAX_DISK", "lots"],
  ] as const) {
    test(`bad ${name}=${value}: one line naming it, then the default`, async () => {
      await withDataDir(async (dir) => {
        const r = await runWithLib([cProgram("print_config"), "70M"], { EXM_DIR: dir, [name]: value });
        assertOk(r, undefined, `${name}=${value}`);
        const lines = r.stderr.trim().split("\n").filter(Boolean);
        assertRun(lines.length === 1, r, "expected exactly one line on stderr");
        assertRun(lines[0]!.includes(name) && lines[0]!.includes(value), r, "the line must name the variable and value");
        const v = kv(r.stdout);
        if (name === "EXM_THRESHOLD") expect(v.threshold).toBe(String(64 * 1024 * 1024));
        if (name === "EXM_CHILD") expect(v.child).toBe("0");
        if (name === "EXM_ADVICE") expect(v.advice).toBe("0");
        if (name === "EXM_MAX_DISK") expect(v.max_disk).toBe("0");
        expect(v.file_backed).toBe("1");
      });
    });
  }
  for (const [label, value] of [
    ["missing", "/nonexistent/exm-data"],
    ["a regular file", "/etc/hostname"],
  ] as const) {
    test(`unusable EXM_DIR (${label}): one line, allocations pass through`, async () => {
      const r = await runWithLib([cProgram("print_config"), "100M"], { EXM_DIR: value });
      assertOk(r, undefined, `EXM_DIR=${value}`);
      const lines = r.stderr.trim().split("\n").filter(Boolean);
      assertRun(lines.length === 1 && lines[0]!.includes(value), r, "expected one line naming the directory");
      expect(kv(r.stdout).file_backed).toBe("0");
    });
  }
  test("EXM_CHILD and EXM_ADVICE values", async () => {
    const modes: [string, string, string][] = [
      ["EXM_CHILD", "cow", "0"],
      ["EXM_CHILD", "shared", "1"],
      ["EXM_CHILD", "duplicate", "2"],
      ["EXM_ADVICE", "auto", "0"],
      ["EXM_ADVICE", "normal", "1"],
      ["EXM_ADVICE", "sequential", "2"],
      ["EXM_ADVICE", "random", "3"],
    ];
    await withDataDir(async (dir) => {
      for (const [name, value, want] of modes) {
        const r = await runWithLib([cProgram("print_config")], { EXM_DIR: dir, [name]: value });
        assertOk(r, undefined, `${name}=${value}`);
        expect(kv(r.stdout)[name === "EXM_CHILD" ? "child" : "advice"]).toBe(want);
        assertRun(r.stderr === "", r, `${name}=${value} must print nothing`);
      }
      const r = await runWithLib([cProgram("print_config")], { EXM_DIR: dir, EXM_MAX_DISK: "3G" });
      expect(kv(r.stdout).max_disk).toBe(String(3 * GiB));
    });
  });
});

// The carving core on a plain buffer: it never calls the OS, so it builds
// from core.c alone, without the interposer. Nothing here is optional: a
// missing source or a failed compile fails the test.
const coreUnit = join(ROOT, "tests", "c", "core_unit.c");
describe("carving core unit test (tests/c/core_unit.c)", () => {
  test("core_unit", async () => {
    const core = [join(ROOT, "native", "core.c")];
    for (const f of [coreUnit, ...core]) if (!existsSync(f)) throw new Error(`${f} is missing`);
    const bin = compileC(coreUnit, { flags: ["-I", join(ROOT, "native")], link: core });
    const r = await run([bin], { timeoutMs: 180_000 });
    assertOk(r, undefined, "core_unit");
  }, 200_000);
});
