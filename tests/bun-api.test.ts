/**
 * The Bun API (`import { ... } from "exm"`, src/bun/): file-backed
 * ArrayBuffers over bun:ffi.
 *
 * Calls that cannot hurt the test runner run here, in-process (its arena is
 * small and in the default data directory). Whatever needs a process of its
 * own (a data directory fixed before the first allocation, a memory cgroup,
 * use after free, running under exm, a dependent project) runs a script of
 * tests/fixtures/bun/ and reads its key=value output.
 */
import { describe, expect, test } from "bun:test";
import { ptr, toArrayBuffer } from "bun:ffi";
import { closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as exm from "../index";
import { EXM_SYMBOLS, BLOCK_INFO, HEADER_VERSION, STATS_FIELDS, STATS_SIZEOF } from "../src/bun/ffi";
import * as ffi from "../src/bun/ffi";
import { assertOk, assertRun, GiB, MiB, withDataDir } from "./support/native";
import {
  cgroupAvailable, compileC, EXM, kv, libAvailable, ROOT, run, runInCgroup, skipUnless, tmpfsAvailable,
  withTmpfs,
} from "./support/sys";

const BUN = process.execPath;
const FIXTURES = join(ROOT, "tests", "fixtures", "bun");
const fixture = (name: string) => join(FIXTURES, name);
const NO_LIB = skipUnless(libAvailable(), "Bun API tests");

/** Runs a fixture with bun in a clean environment plus env. */
function runFixture(args: string[], env: Record<string, string | undefined> = {}, timeoutMs = 60_000) {
  return run([BUN, ...args], { env, timeoutMs });
}

/** What throwing f gave: [error class name, message]. */
function thrown(f: () => unknown): [string, string] {
  try {
    f();
  } catch (e) {
    return [(e as Error).constructor.name, (e as Error).message];
  }
  return ["none", ""];
}

/**
 * A fresh project depending on exm as `npm install` leaves a "file:"
 * dependency: node_modules/exm is a symbolic link to the package. It gets
 * the dependent fixture (app.ts, tsconfig.json) and @types from this repo.
 */
function dependentProject(): string {
  const project = mkdtempSync(join(tmpdir(), "exm-dependent-"));
  writeFileSync(
    join(project, "package.json"),
    JSON.stringify({ name: "exm-dependent", private: true, type: "module", dependencies: { exm: `file:${ROOT}` } }),
  );
  copyFileSync(join(FIXTURES, "dependent", "app.ts"), join(project, "app.ts"));
  copyFileSync(join(FIXTURES, "dependent", "tsconfig.json"), join(project, "tsconfig.json"));
  mkdirSync(join(project, "node_modules"));
  symlinkSync(ROOT, join(project, "node_modules", "exm"));
  symlinkSync(join(ROOT, "node_modules", "@types"), join(project, "node_modules", "@types"));
  return project;
}

/** The TypeScript example of the README's "Bun API" section. */
function readmeExample(): string {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const section = readme.slice(readme.indexOf("\n## Bun API\n"));
  const m = /```ts\n([\s\S]*?)```/.exec(section);
  if (!m) throw new Error("README.md: no ```ts example in the Bun API section");
  return m[1]!;
}

describe.skipIf(NO_LIB)("Bun API", () => {
  test("the FFI table mirrors exm.h: functions in order, enums, struct layouts, version", () => {
    const header = readFileSync(join(ROOT, "native", "exm.h"), "utf8");
    const declared = [...header.matchAll(/^[a-z][\w ]*?[\s*](exm_\w+)\(/gm)].map((m) => m[1]);
    expect(Object.keys(EXM_SYMBOLS)).toEqual(declared as string[]);

    const out = kv((Bun.spawnSync([compileC(fixture("layout.c"))]).stdout as Buffer).toString());
    expect(out.version).toBe(HEADER_VERSION);
    for (const name of Object.keys(out).filter((k) => k.startsWith("EXM_"))) {
      expect(`${name}=${(ffi as unknown as Record<string, number>)[name]}`).toBe(`${name}=${out[name]}`);
    }
    for (const [field, offset] of Object.entries(BLOCK_INFO)) expect(`${field}=${offset}`).toBe(`${field}=${out[`info_${field}`]}`);
    expect(STATS_SIZEOF).toBe(Number(out.stats_sizeof));
    STATS_FIELDS.forEach((f, i) => expect(`${f}@${i * 8}`).toBe(`${f}@${out[`stats_${f}`]}`));
  });

  test("loads the package's build when not run under exm", () => {
    const lib = exm.library();
    expect(lib.source).toBe("package");
    expect(lib.path).toBe(join(ROOT, "build", "libexm.so"));
    expect(exm.version()).toBe(lib.version);
    expect(exm.version()).toMatch(/^\d+\.\d+\.\d+$/);
  });

  test("settings: get and set, sizes as numbers, bigints or strings; bad values are refused", () => {
    const saved = {
      threshold: exm.getThreshold(), dir: exm.getDataDir(), child: exm.getChildMode(),
      advice: exm.getAdvice(), maxDisk: exm.getMaxDisk(),
    };
    try {
      exm.setThreshold("1.5M");
      expect(exm.getThreshold()).toBe(1.5 * MiB);
      exm.setThreshold(4096n);
      expect(exm.getThreshold()).toBe(4096);
      exm.setThreshold(0);
      expect(exm.getThreshold()).toBe(0);
      exm.setMaxDisk("2G");
      expect(exm.getMaxDisk()).toBe(2 * GiB);
      for (const mode of ["shared", "duplicate", "cow"] as const) {
        exm.setChildMode(mode);
        expect(exm.getChildMode()).toBe(mode);
      }
      for (const advice of ["sequential", "random", "normal", "auto"] as const) {
        exm.setAdvice(advice);
        expect(exm.getAdvice()).toBe(advice);
      }
      const dir = mkdtempSync(join(tmpdir(), "exm-bun-dir-"));
      try {
        exm.setDataDir(dir);
        expect(exm.getDataDir()).toBe(dir);
      } finally {
        exm.setDataDir(saved.dir);
        rmSync(dir, { recursive: true });
      }
      expect(exm.getDataDir()).toBe(saved.dir);

      expect(thrown(() => exm.setThreshold(-1))).toEqual(["RangeError", "exm.setThreshold: the number of bytes must not be negative, got -1"]);
      expect(thrown(() => exm.setThreshold("12Q"))[0]).toBe("RangeError");
      expect(thrown(() => exm.setMaxDisk(2n ** 64n))[0]).toBe("RangeError");
      expect(thrown(() => exm.setChildMode("fork" as exm.ChildMode))).toEqual(["RangeError", 'exm.setChildMode: expected one of cow, shared, duplicate, got "fork"']);
      expect(thrown(() => exm.setAdvice("willneed" as exm.Advice))[0]).toBe("RangeError");
      const [kind, message] = thrown(() => exm.setDataDir("/nonexistent/exm"));
      expect(kind).toBe("Error");
      expect(message).toContain("/nonexistent/exm");
      expect(message).toContain("ENOENT");
    } finally {
      exm.setThreshold(saved.threshold);
      exm.setChildMode(saved.child);
      exm.setAdvice(saved.advice);
      exm.setMaxDisk(saved.maxDisk);
    }
  });

  test("alloc: a zeroed buffer in the backing file; lookup, advise and statistics agree", () => {
    const before = exm.stats();
    const a = exm.float64Array(MiB, { advice: "sequential" }); // 8 MiB
    expect(a).toBeInstanceOf(Float64Array);
    expect(a.length).toBe(MiB);
    expect(a.every((x) => x === 0)).toBe(true);
    expect(exm.isFileBacked(a)).toBe(true);
    expect(exm.isFileBacked(new Float64Array(16))).toBe(false);

    const info = exm.lookup(a)!;
    expect(info.base).toBe(ptr(a));
    expect(info.size).toBeGreaterThanOrEqual(8 * MiB);
    expect(info.path).toBe(`/proc/self/fd/${info.fd}`);
    // The block really is that part of the file: what the array holds is read back through it.
    a[3] = Math.PI;
    const fd = openSync(info.path, "r");
    const back = new Float64Array(4);
    try {
      readSync(fd, back, 0, 32, info.offset);
    } finally {
      closeSync(fd);
    }
    expect(back[3]).toBe(Math.PI);
    // A view's lookup finds the block holding its first byte.
    expect(exm.lookup(a.subarray(1000))).toEqual(info);
    expect(exm.lookup(new Uint8Array(64))).toBeNull();

    for (const advice of ["random", "sequential", "normal", "auto"] as const) exm.advise(a, advice);
    expect(thrown(() => exm.advise(new Float64Array(8), "random"))).toEqual(["TypeError", "exm.advise: not a file-backed buffer (use exm.alloc)"]);
    expect(thrown(() => exm.advise(a, "often" as exm.Advice))[0]).toBe("RangeError");

    const during = exm.stats();
    expect(during.totalAllocs - before.totalAllocs).toBe(1);
    expect(during.liveBlocks - before.liveBlocks).toBe(1);
    expect(during.liveBytes - before.liveBytes).toBeGreaterThanOrEqual(8 * MiB);
    expect(during.diskReserved).toBeGreaterThanOrEqual(8 * MiB);
    expect(during.arenaSize).toBeGreaterThanOrEqual(8 * MiB);
    for (const value of Object.values(during)) expect(typeof value).toBe("number");
    exm.check();

    exm.free(a);
    const after = exm.stats();
    expect(after.totalFrees - before.totalFrees).toBe(1);
    expect(after.liveBlocks).toBe(before.liveBlocks);
    expect(after.liveBytes).toBe(before.liveBytes);
    exm.check();
  });

  test("typed helpers give each kind of typed array over a file-backed buffer", () => {
    const made = [
      [exm.float64Array(10), Float64Array], [exm.float32Array(10), Float32Array], [exm.int8Array(10), Int8Array],
      [exm.uint8Array(10), Uint8Array], [exm.int16Array(10), Int16Array], [exm.uint16Array(10), Uint16Array],
      [exm.int32Array(10), Int32Array], [exm.uint32Array(10), Uint32Array], [exm.bigInt64Array(10), BigInt64Array],
      [exm.bigUint64Array(10), BigUint64Array], [exm.typed(Uint8ClampedArray, 10), Uint8ClampedArray],
    ] as const;
    for (const [array, type] of made) {
      expect(array).toBeInstanceOf(type);
      expect(array.length).toBe(10);
      expect(exm.isFileBacked(array)).toBe(true);
      exm.free(array);
      expect(array.length).toBe(0);
    }
    // Zero elements: an ordinary empty buffer, which free() accepts once like any other.
    const empty = exm.float64Array(0);
    expect(empty.length).toBe(0);
    expect(exm.lookup(empty)).toBeNull();
    exm.free(empty);
    expect(thrown(() => exm.free(empty))[0]).toBe("Error");
  });

  test("bad sizes are a RangeError (or TypeError) before anything is allocated", () => {
    const before = exm.stats();
    const range = [-1, NaN, 1.5, Infinity, -Infinity, 2 ** 53, exm.MAX_BUFFER_BYTES + 1, 2 ** 40];
    for (const n of range) expect([n, thrown(() => exm.alloc(n))[0]]).toEqual([n, "RangeError"]);
    expect(thrown(() => exm.alloc(-1))[1]).toBe("exm.alloc: the number of bytes must not be negative, got -1");
    expect(thrown(() => exm.alloc(1.5))[1]).toBe("exm.alloc: the number of bytes must be a whole number, got 1.5");
    expect(thrown(() => exm.alloc(NaN))[1]).toBe("exm.alloc: the number of bytes is NaN");
    expect(thrown(() => exm.alloc(8 * GiB))[1]).toBe(
      "exm.alloc: 8 GiB is more than one ArrayBuffer can hold (4 GiB, JavaScriptCore's limit); use several buffers",
    );
    expect(thrown(() => exm.float64Array(2 ** 29 + 1))[0]).toBe("RangeError");
    expect(thrown(() => exm.int32Array(-5))[0]).toBe("RangeError");
    expect(thrown(() => exm.alloc("8" as unknown as number))[0]).toBe("TypeError");
    expect(thrown(() => exm.alloc(8, { advice: "soon" as exm.Advice }))[0]).toBe("RangeError");
    expect(exm.stats().totalAllocs).toBe(before.totalAllocs);
    // Ordinary buffers are not ours to free, and are left intact.
    const plain = new Float64Array(4);
    expect(thrown(() => exm.free(plain))[0]).toBe("TypeError");
    expect(plain.length).toBe(4);
  });

  test("MAX_BUFFER_BYTES is JavaScriptCore's limit, and a 4 GiB buffer is served without touching it", () => {
    expect(() => toArrayBuffer(ptr(new Uint8Array(8)), 0, exm.MAX_BUFFER_BYTES + 1)).toThrow();
    const big = exm.alloc(exm.MAX_BUFFER_BYTES);
    try {
      expect(big.byteLength).toBe(exm.MAX_BUFFER_BYTES);
      const last = new Uint8Array(big, exm.MAX_BUFFER_BYTES - 8);
      last[7] = 9;
      expect(last[7]).toBe(9);
    } finally {
      exm.free(big);
    }
  });

  test("free and the garbage collector give the disk back; use after free and double free are caught", async () => {
    await withDataDir(async (dir) => {
      const r = await runFixture([fixture("lifecycle.ts"), dir]);
      assertOk(r, "lifecycle ok", "lifecycle.ts");
      const o = kv(r.stdout);
      const all = Number(o.disk_all);
      assertRun(all >= 128 * MiB, r, "four 32 MiB buffers hold 128 MiB of disk");
      assertRun(Number(o.disk_after_free) <= all - 64 * MiB, r, "free() of two gives 64 MiB back");
      assertRun(Number(o.live_after_free) === 2, r, "two blocks live after free()");
      assertRun(Number(o.disk_after_gc) <= all - 128 * MiB + 2 * MiB, r, "the GC gives the rest back");
      assertRun(Number(o.live_after_gc) === 0, r, "no block live after the GC");
      expect(o.freed_length).toBe("0");
      expect(o.freed_byte_length).toBe("0");
      expect(o.freed_read).toBe("undefined");
      expect(o.freed_write_read).toBe("undefined");
      expect(o.freed_fill).toStartWith("TypeError:");
      expect(o.double_free).toStartWith("Error:exm.free:_the_buffer_was_freed");
      expect(o.free_buffer_of_freed).toStartWith("Error:exm.free:_the_buffer_was_freed");
      expect(o.lookup_freed).toStartWith("Error:exm.lookup:_the_buffer_was_freed");
      expect(r.stderr).not.toContain("aborting");
    });
  });

  test("buffers dropped but not yet collected do not make alloc fail: it collects and tries again", () => {
    const saved = exm.getMaxDisk();
    exm.setMaxDisk(exm.stats().diskReserved + 100 * MiB);
    const before = exm.stats();
    try {
      // Each 32 MiB buffer is unreachable once the call returns; only three fit under the cap.
      const allocAndDrop = () => {
        exm.uint8Array(32 * MiB)[0] = 1;
      };
      for (let i = 0; i < 30; i++) allocAndDrop();
    } finally {
      exm.setMaxDisk(saved);
    }
    expect(exm.stats().totalAllocs - before.totalAllocs).toBe(30);
  });

  test("a disk cap reached is an ExmAllocError naming the cap and the data directory", async () => {
    await withDataDir(async (dir) => {
      const r = await runFixture([fixture("alloc-fail.ts"), "cap"], { EXM_DIR: dir });
      assertOk(r, "alloc-fail ok", "alloc-fail.ts cap");
      const o = kv(r.stdout);
      expect(o.error).toBe("ExmAllocError");
      expect(o.code).toBe("ENOMEM");
      expect(o.dir).toBe(dir);
      expect(o.message).toBe(
        `exm.alloc: cannot allocate 16 MiB of file-backed memory in ${dir}: it would pass the disk cap (max-disk 8 MiB; 0 B reserved already)`,
      );
      expect(o.failures).toBe("1");
    });
  });

  test.skipIf(skipUnless(tmpfsAvailable(), "full-disk Bun API test"))(
    "a full disk is an ExmAllocError saying so, and the arena stays usable",
    async () => {
      await withTmpfs(16 * MiB, async (dir) => {
        const r = await runFixture([fixture("alloc-fail.ts"), "full"], { EXM_DIR: dir });
        assertOk(r, "alloc-fail ok", "alloc-fail.ts full");
        const o = kv(r.stdout);
        expect(o.error).toBe("ExmAllocError");
        expect(o.message).toStartWith(`exm.alloc: cannot allocate 64 MiB of file-backed memory in ${dir}: the disk is full (only `);
      });
    },
  );

  const NO_CGROUP = skipUnless(cgroupAvailable(), "2 GiB Float64Array in a 512 MiB cgroup");
  test.skipIf(NO_CGROUP)("a 2 GiB Float64Array fills and checksums in a 512 MiB cgroup; a plain one is killed", async () => {
    const limit = 512 * MiB;
    await withDataDir(async (dir) => {
      const r = await runInCgroup(limit, [BUN, fixture("ooc-fill.ts"), "exm", "2048"], { env: { EXM_DIR: dir }, timeoutMs: 150_000 });
      assertOk(r, "ooc-fill ok", "ooc-fill.ts exm 2048 in a 512 MiB cgroup");
      const o = kv(r.stdout);
      assertRun(o.checksum === o.expected, r, "checksum");
      assertRun(o.live_after_free === "0", r, "freed at the end");
      console.log(`2 GiB Float64Array in 512 MiB: fill ${o.fill_ms} ms, checksum ${o.sum_ms} ms, ${Math.round(r.ms)} ms in all`);
    });
    // The README's example claims the same: 2 GiB of doubles in a 512 MiB container.
    const project = dependentProject();
    try {
      writeFileSync(join(project, "example.ts"), readmeExample());
      await withDataDir(async (dir) => {
        const r = await runInCgroup(limit, [BUN, "example.ts"], { cwd: project, env: { EXM_DIR: dir }, timeoutMs: 150_000 });
        assertOk(r, "sum 134083386240, ", "the README's Bun example in a 512 MiB cgroup");
        assertRun(/bytes of disk, in \/proc\/self\/fd\/\d+\n$/.test(r.stdout), r, "the README example's output");
        console.log(`README example (2 GiB, i % 1000, sequential advice) in 512 MiB: ${Math.round(r.ms)} ms`);
      });
    } finally {
      rmSync(project, { recursive: true, force: true });
    }
    const plain = await runInCgroup(limit, [BUN, fixture("ooc-fill.ts"), "plain", "2048"], { timeoutMs: 150_000 });
    assertRun(plain.oomKilled && !plain.stdout.includes("ooc-fill ok"), plain, "a plain 2 GiB Float64Array must be OOM-killed in 512 MiB");
  }, 300_000);

  test.skipIf(skipUnless(existsSync(EXM) ? null : `${EXM} is not built`, "Bun API under exm"))(
    "under exm, the API uses the preloaded library itself",
    async () => {
      await withDataDir(async (dir) => {
        const r = await run([EXM, "--threshold", "1T", "--dir", dir, BUN, fixture("under-exm.ts")], { timeoutMs: 60_000 });
        assertOk(r, "under-exm ok", "exm bun under-exm.ts");
        const o = kv(r.stdout);
        const preloaded = o.preload!.split(/[\s:]/)[0]!;
        expect(o.source).toBe("loaded");
        expect(o.path).toBe(preloaded);
        // One libexm in the process: the dlopen joined the preloaded copy instead of adding one.
        expect(o.mapped).toBe(preloaded);
        expect(o.threshold).toBe(String(2 ** 40));
        expect(o.total_allocs).toBe("2");
        expect(o.kept_sum).toBe(String(2 ** 20));
      });
    },
  );

  test("a dependent project imports it as \"exm\": runs, type-checks, and compiles with the library inside", async () => {
    const project = dependentProject();
    try {
      // The README example type-checks too (run in the cgroup test above).
      writeFileSync(join(project, "example.ts"), readmeExample());
      writeFileSync(join(project, "tsconfig.json"), readFileSync(join(project, "tsconfig.json"), "utf8").replace('"app.ts"', '"app.ts", "example.ts"'));
      const r = await run([BUN, "app.ts"], { cwd: project, timeoutMs: 60_000 });
      assertOk(r, "dependent ok", "bun app.ts in a dependent project");
      const o = kv(r.stdout);
      expect(o.source).toBe("package");
      expect(o.library).toBe(join(ROOT, "build", "libexm.so"));
      expect(o.sum).toBe(String(2 ** 19));
      expect(o.file).toMatch(/^\/proc\/self\/fd\/\d+$/);
      expect(o.live_after_free).toBe("0");

      const tsc = await run([join(ROOT, "node_modules", ".bin", "tsc"), "-p", project], { cwd: project, timeoutMs: 120_000 });
      assertOk(tsc, undefined, "tsc in the dependent project");

      // Compiled, the program carries the library and takes it out into a checked cache.
      const build = await run([BUN, "build", "--compile", "app.ts", "--outfile", "app"], { cwd: project, timeoutMs: 120_000 });
      assertOk(build, undefined, "bun build --compile app.ts");
      const cache = join(project, "cache");
      const c = await run([join(project, "app")], { cwd: tmpdir(), env: { XDG_CACHE_HOME: cache }, timeoutMs: 60_000 });
      assertOk(c, "dependent ok", "the compiled app");
      const co = kv(c.stdout);
      expect(co.source).toBe("cache");
      expect(co.library).toStartWith(join(cache, "exm", "libexm-"));
      expect(co.sum).toBe(String(2 ** 19));
    } finally {
      rmSync(project, { recursive: true, force: true });
    }
  }, 300_000);
});
