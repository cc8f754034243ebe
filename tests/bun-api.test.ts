/**
 * The Bun API (`import { ... } from "exm"`, src/bun/): file-backed
 * ArrayBuffers over bun:ffi.
 *
 * This file never loads libexm into the test runner, which all test files
 * share (an arena in it would change what tests/cli.test.ts inspects). The
 * API is called in child processes: tests/fixtures/bun/in-process.ts, a
 * bun:test file of direct calls run as `bun test` of its own, and scripts of
 * tests/fixtures/bun/ for what needs a fresh process (a data directory fixed
 * before the first allocation, a memory cgroup, use after free, running
 * under exm, a dependent project), whose key=value output is checked here.
 */
import { describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EXM_SYMBOLS, BLOCK_INFO, HEADER_VERSION, STATS_FIELDS, STATS_SIZEOF } from "../src/bun/ffi";
import * as ffi from "../src/bun/ffi";
import { assertOk, assertRun, MiB, withDataDir } from "./support/native";
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

  test("in a process of its own: library, settings, alloc/lookup/advise/stats, typed arrays, bad sizes, 4 GiB, collect and retry", async () => {
    const r = await run([BUN, "test", fixture("in-process.ts")], { cwd: ROOT, timeoutMs: 120_000 });
    const passed = Number(/(\d+) pass/.exec(r.stderr)?.[1] ?? 0);
    assertRun(r.code === 0 && / 0 fail/.test(r.stderr) && passed >= 7, r, "bun test tests/fixtures/bun/in-process.ts");
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
      expect(Number(o.failures)).toBeGreaterThanOrEqual(1); // one per try (alloc collects and retries)
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
