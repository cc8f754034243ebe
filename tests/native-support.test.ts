/**
 * Self-tests of tests/support/sys.ts: the helpers every native test relies on
 * must themselves be right (an OOM that is not detected, or a cgroup or mount
 * left behind, would make other tests lie or leak).
 */
import { describe, expect, test, setDefaultTimeout } from "bun:test";
import { existsSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  cgroupAvailable,
  compileC,
  cProgram,
  freshDir,
  kv,
  run,
  runInCgroup,
  skipUnless,
  tmpfsAvailable,
  withTmpfs,
} from "./support/sys";

setDefaultTimeout(60_000);

const MiB = 1 << 20;

test("kv parses one pair per line and several pairs on a line", () => {
  expect(kv("a=1\nb=x y\nops=3 checked_mb=4\n  c=/p/q \nnot a pair\n")).toEqual({
    a: "1",
    b: "x y",
    ops: "3",
    checked_mb: "4",
    c: "/p/q",
  });
});

test("compileC caches by mtime and throws with the compiler's output", () => {
  const dir = freshDir("exm-cc-");
  const src = join(dir, "bad.c");
  writeFileSync(src, "int main(void) { return undefined_name; }\n");
  expect(() => compileC(src, { out: join(dir, "bad") })).toThrow(/undefined_name/);
  rmSync(dir, { recursive: true, force: true });
  const a = cProgram("hold");
  expect(cProgram("hold")).toBe(a);
});

test("run reports exit codes and signals", async () => {
  const a = await run(["sh", "-c", "echo out; echo err >&2; exit 3"]);
  expect([a.code, a.signal, a.stdout, a.stderr]).toEqual([3, null, "out\n", "err\n"]);
  const b = await run(["sh", "-c", "kill -TERM $$"]);
  expect([b.code, b.signal]).toEqual([null, "SIGTERM"]);
  const c = await run(["sleep", "10"], { timeoutMs: 200 });
  expect(c.timedOut).toBe(true);
});

const noCgroup = skipUnless(cgroupAvailable(), "cgroup helper self-test");
describe.skipIf(noCgroup)("runInCgroup", () => {
  test("detects an OOM kill, reports success otherwise, and removes its cgroup", async () => {
    const bin = cProgram("ooc_fill");
    const oom = await runInCgroup(64 * MiB, [bin, "256M"], { timeoutMs: 60_000 });
    expect(oom.oomKilled).toBe(true);
    expect(oom.code).toBeNull();
    const ok = await runInCgroup(256 * MiB, [bin, "32M"], { timeoutMs: 60_000 });
    expect(ok.code).toBe(0);
    expect(ok.oomKilled).toBe(false);
    expect(ok.maxUsage).toBeGreaterThan(16 * MiB);
    const left = readdirSync("/sys/fs/cgroup/memory").filter((n) => n.startsWith(`exm-test-${process.pid}-`));
    expect(left).toEqual([]);
  });

  test("a timeout kills the program's children too (they hold its output open): it returns at once", async () => {
    // sh runs sleep as a child, which keeps stdout open; before, the run waited the full 30 s
    const r = await runInCgroup(64 * MiB, ["sh", "-c", "sleep 30; echo not killed"], { timeoutMs: 300 });
    expect(r.timedOut).toBe(true);
    expect(r.stdout).toBe("");
    expect(r.ms).toBeLessThan(15_000);
  });
});

const noTmpfs = skipUnless(tmpfsAvailable(), "tmpfs helper self-test");
describe.skipIf(noTmpfs)("withTmpfs", () => {
  test("mounts the size asked, noexec when asked, and unmounts even when fn throws", async () => {
    let seen = "";
    await expect(
      withTmpfs(
        8 * MiB,
        async (dir) => {
          seen = dir;
          const mounts = (await Bun.file("/proc/self/mounts").text()).split("\n");
          const line = mounts.find((l) => l.split(" ")[1] === dir) ?? "";
          expect(line).toContain("tmpfs");
          expect(line).toContain("noexec");
          throw new Error("boom");
        },
        { noexec: true },
      ),
    ).rejects.toThrow("boom");
    expect(existsSync(seen)).toBe(false);
  });
});
