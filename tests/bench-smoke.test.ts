/**
 * Smoke test of the benchmark suite: `bun bench/run.ts --quick` runs every
 * scenario at small sizes within the time budget and writes a well-formed
 * JSON result and an SVG chart. Timings are not asserted (this is a 2-core
 * shared machine; the figures are goals for the code, reported by the full
 * run, not pass/fail criteria).
 */
import { expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..");
const BUDGET_MS = 90_000;
const built = existsSync(join(ROOT, "build", "libexm.so")) || existsSync(join(ROOT, "dist", "exm"));

test.skipIf(!built)(
  "bench --quick runs every scenario and writes valid JSON and SVG",
  async () => {
    const out = mkdtempSync(join(tmpdir(), "exm-bench-smoke-"));
    try {
      const t0 = performance.now();
      const env: Record<string, string> = {};
      for (const [k, v] of Object.entries(process.env))
        if (v !== undefined && !k.startsWith("EXM_") && k !== "LD_PRELOAD") env[k] = v;
      const proc = Bun.spawn(["bun", join(ROOT, "bench", "run.ts"), "--quick", "--out", out], {
        cwd: ROOT,
        env,
        stdout: "pipe",
        stderr: "pipe",
      });
      const timer = setTimeout(() => proc.kill("SIGTERM"), BUDGET_MS);
      const [stdout, stderr] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
      const code = await proc.exited;
      clearTimeout(timer);
      const ms = performance.now() - t0;
      const why = `exit ${code} after ${ms.toFixed(0)} ms\n--- stdout\n${stdout}\n--- stderr\n${stderr}`;
      expect(code, why).toBe(0);
      expect(ms, why).toBeLessThan(BUDGET_MS);
      expect(stdout).toContain("## Goals");

      const res = JSON.parse(readFileSync(join(out, "latest.json"), "utf8"));
      expect(res.schema).toBe("exm-bench/1");
      expect(res.mode).toBe("quick");
      expect(Number.isNaN(Date.parse(res.date))).toBe(false);
      const ids = res.scenarios.map((s: { id: string }) => s.id);
      expect(ids).toEqual(["ooc", "small-1t", "small-2t", "small-instr", "bigcycle", "calloc", "startup"]);
      for (const s of res.scenarios) {
        expect(["ok", "skipped"]).toContain(s.status);
        expect(typeof s.title).toBe("string");
        for (const v of s.variants) {
          expect(typeof v.name).toBe("string");
          expect(typeof v.cmd).toBe("string");
          expect(["ok", "oom-killed", "failed", "skipped", "not-run"]).toContain(v.status);
          for (const m of Object.values(v.metrics) as { median: number; min: number; max: number; n: number }[]) {
            expect(typeof m.n).toBe("number");
            if (m.n > 0) expect(m.min <= m.median && m.median <= m.max).toBe(true);
          }
        }
      }
      // Everything that ran in RAM must have run: a failure there is a bug.
      for (const id of ["small-1t", "small-2t", "small-instr", "bigcycle"]) {
        const s = res.scenarios.find((x: { id: string }) => x.id === id);
        if (s.status === "skipped") continue; // small-instr without valgrind
        for (const v of s.variants) expect(`${id}/${v.name}: ${v.status} ${v.note ?? ""}`).toBe(`${id}/${v.name}: ok ${v.note ?? ""}`);
      }
      const ooc = res.scenarios[0];
      if (ooc.status === "ok") {
        const status = Object.fromEntries(ooc.variants.map((v: { name: string; status: string }) => [v.name, v.status]));
        expect(status.exm).toBe("ok");
        expect(status.raw).toBe("ok");
        expect(["oom-killed", "ok"]).toContain(status.anon);
      }
      expect(res.goals.length).toBeGreaterThanOrEqual(10);
      for (const g of res.goals) expect([true, false, null]).toContain(g.met);

      const svg = readFileSync(join(out, "latest.svg"), "utf8");
      expect(svg.startsWith("<svg ")).toBe(true);
      expect(svg.trimEnd().endsWith("</svg>")).toBe(true);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  },
  BUDGET_MS + 30_000,
);

// bench/lib.ts's checkArgs: a typo must not start an hour of benchmark with the defaults.
test("bench/scale.ts, advice.ts and programs.ts: an unknown option is one line and status 2, --help lists the options", () => {
  for (const script of ["scale.ts", "advice.ts"]) {
    const bad = Bun.spawnSync([process.execPath, join(ROOT, "bench", script), "--sizez", "4G"], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr.toString()).toBe(`bun bench/${script}: unknown option --sizez (--help lists them)\n`);
    expect(bad.stdout.toString()).toBe("");
    const help = Bun.spawnSync([process.execPath, join(ROOT, "bench", script), "--help"], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    expect(help.exitCode).toBe(0);
    expect(help.stdout.toString()).toMatch(new RegExp(`^usage: bun bench/${script.replace(".", "\\.")} .*\\[--limit 1G\\]`));
  }
  const programs = Bun.spawnSync([process.execPath, join(ROOT, "bench", "programs.ts"), "--jobz", "numpy"], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  expect([programs.exitCode, programs.stderr.toString()]).toEqual([2, "bun bench/programs.ts: unknown option --jobz (--help lists them)\n"]);
  const noValue = Bun.spawnSync([process.execPath, join(ROOT, "bench", "scale.ts"), "--rounds"], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  expect([noValue.exitCode, noValue.stderr.toString()]).toEqual([2, "bun bench/scale.ts: --rounds needs a value (--help lists them)\n"]);
});

// bench/ab.ts: the A/B runs of the README's allocator section.
test("bench/ab.ts: a library against glibc in rotating rounds; bad input is one line and status 2", () => {
  const ab = (...a: string[]) => Bun.spawnSync([process.execPath, join(ROOT, "bench", "ab.ts"), ...a], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  const lib = join(ROOT, "build", "libexm.so");
  const ok = ab("--rounds", "2", "--lib", lib, "small", "--threads", "2", "--ops", "20000");
  expect(ok.exitCode).toBe(0);
  expect(ok.stdout.toString()).toMatch(/: over glibc's, 2 rotating rounds, threshold 0\n/);
  const fig = "[0-9]+\\.[0-9]{2} \\([0-9]+\\.[0-9]{2}-[0-9]+\\.[0-9]{2}\\)";
  expect(ok.stdout.toString()).toMatch(new RegExp(`\n${lib.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: CPU ${fig}, wall ${fig}\n$`));
  expect([ab("--lib", "/nonexistent.so", "small").exitCode, ab("--lib", "/nonexistent.so", "small").stderr.toString()]).toEqual([2, "bun bench/ab.ts: no library at /nonexistent.so\n"]);
  expect(ab("--rounds", "x", "--lib", lib, "small").stderr.toString()).toBe("bun bench/ab.ts: --rounds takes a positive whole number, not x\n");
  const bad = ab("--lib", lib, "larsen");
  expect(bad.exitCode).toBe(2);
  expect(bad.stderr.toString()).toMatch(/^bun bench\/ab\.ts: .*alloc larsen under glibc: exit 2: usage: /);
  expect(ab().exitCode).toBe(2);
});
