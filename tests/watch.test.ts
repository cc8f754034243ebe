/**
 * `exm --inspect PID --watch [SECONDS]` and `--inspect` of a process that has
 * no arena yet: read from a pipe (one JSON line per look) and from a terminal
 * (tmux: the view is redrawn in place). Each test waits for a number of looks,
 * not for a time.
 */
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { spawn, spawnSync } from "bun";
import { readFileSync, rmSync } from "node:fs";
import { aptInstall, cleanEnv, EXM, freshDir, libAvailable, python3, run, sh, skipUnless } from "./support/sys";

setDefaultTimeout(120_000);
const py = python3();
const MiB = 2 ** 20;
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

type Proc = ReturnType<typeof spawn>;

/** Reads a process's stdout line by line. */
function lines(p: Proc): () => Promise<string | null> {
  const reader = (p.stdout as ReadableStream<Uint8Array>).getReader();
  const dec = new TextDecoder();
  let buf = "";
  return async () => {
    while (!buf.includes("\n")) {
      const c = await reader.read();
      if (c.done) return buf ? ((buf = ""), buf) : null;
      buf += dec.decode(c.value);
    }
    const i = buf.indexOf("\n");
    const line = buf.slice(0, i);
    buf = buf.slice(i + 1);
    return line;
  };
}

/** A python3 under exm holding `mib` MiB file-backed (0: no arena) until its stdin closes. */
async function target(mib: number): Promise<Proc> {
  const dir = freshDir();
  dirs.push(dir);
  const script = [
    "import sys",
    `b = bytearray(${mib} << 20) if ${mib} else b''`,
    `for i in range(0, len(b), 4096): b[i] = 1`,
    "print('ready', flush=True)",
    "sys.stdin.read()",
  ].join("\n");
  const p = spawn([EXM, "--threshold", "1M", "--dir", dir, py!, "-c", script], { env: cleanEnv({}), stdin: "pipe", stdout: "pipe", stderr: "inherit" });
  const next = lines(p);
  expect(await next()).toBe("ready");
  return p;
}

describe.skipIf(skipUnless(existsOrReason() ?? libAvailable() ?? (py ? null : "python3 not found"), "--watch"))("exm --inspect --watch", () => {
  test("a process under exm without an arena yet: JSON with no arenas, exit 0; text says so", async () => {
    const p = await target(0);
    try {
      const r = await run([EXM, "--inspect", String(p.pid), "--json"]);
      expect(r.code).toBe(0);
      const rep = JSON.parse(r.stdout);
      expect(rep.arenas).toEqual([]);
      expect(rep.library).toMatch(/libexm-[0-9a-f]+\.so$/);
      const t = await run([EXM, "--inspect", String(p.pid)]);
      expect(t.code).toBe(0);
      expect(t.stdout).toContain("\n  arena: none yet (no allocation has reached the threshold)\n");
    } finally {
      p.kill("SIGKILL");
      await p.exited;
    }
  });

  test("from a pipe: one JSON line per look, rates from the second on; the watch ends with the process", async () => {
    const p = await target(32);
    const w = spawn([EXM, "--inspect", String(p.pid), "--watch", "0.2"], { env: cleanEnv({}), stdout: "pipe", stderr: "pipe", stdin: "ignore" });
    const next = lines(w);
    const first = JSON.parse((await next())!);
    const second = JSON.parse((await next())!);
    expect(Object.keys(first)).toEqual([
      "time", "pid", "arenaSize", "arenaResident", "disk", "resident", "majorFaults", "majorFaultsPerSecond",
      "readBytesPerSecond", "writtenBytesPerSecond",
    ]);
    expect(first.pid).toBe(p.pid);
    expect(first.arenaSize).toBeGreaterThanOrEqual(1024 * MiB);
    expect(first.arenaResident).toBeGreaterThanOrEqual(32 * MiB - 4096);
    expect(first.disk).toBeGreaterThanOrEqual(32 * MiB - 4096);
    expect(first.resident).toBeGreaterThanOrEqual(32 * MiB);
    expect([first.majorFaultsPerSecond, first.readBytesPerSecond, first.writtenBytesPerSecond]).toEqual([null, null, null]);
    for (const k of ["majorFaultsPerSecond", "readBytesPerSecond", "writtenBytesPerSecond"]) expect(typeof second[k]).toBe("number");
    expect(Date.parse(second.time)).toBeGreaterThan(Date.parse(first.time));
    (p.stdin as import("bun").FileSink).end();
    await p.exited;
    expect(await w.exited).toBe(0);
    expect(await new Response(w.stderr).text()).toBe("");
  });

  test("the pid of an exm --stats launcher points at the program it runs", async () => {
    // Its own data directory: exm is SIGKILLed below and cannot remove its run's directory there.
    const dir = freshDir();
    dirs.push(dir);
    const p = spawn([EXM, "--stats", "--dir", dir, "sleep", "60"], { env: cleanEnv({}), stdout: "ignore", stderr: "ignore", stdin: "ignore" });
    let child: string | undefined;
    try {
      let r = await run([EXM, "--inspect", String(p.pid)]);
      for (let i = 0; i < 100 && !r.stderr.includes("exm itself"); i++) {
        await Bun.sleep(20); // until exm has started the program
        r = await run([EXM, "--inspect", String(p.pid)]);
      }
      child = /running the program as pid (\d+)/.exec(r.stderr)?.[1];
      expect([r.code, r.stderr]).toEqual([1, `exm: pid ${p.pid} is exm itself, running the program as pid ${child} (with --stats or --stats-file): inspect that one\n`]);
      expect(readFileSync(`/proc/${child}/cmdline`, "latin1")).toBe("sleep\x0060\x00");
    } finally {
      if (child) process.kill(Number(child), "SIGKILL");
      p.kill("SIGKILL");
      await p.exited;
    }
  });

  test("bad intervals and --watch without --inspect are refused", async () => {
    const r = await run([EXM, "--inspect", "1", "--watch=0"]);
    expect([r.code, r.stderr]).toEqual([2, "exm: --watch: not a number of seconds between 0.1 and 86400: '0'\n"]);
    const r2 = await run([EXM, "--watch", "true"]);
    expect([r2.code, r2.stderr]).toEqual([2, "exm: --watch goes with --inspect\n"]);
  });

  test.skipIf(skipUnless(ensureTmux(), "--watch on a terminal"))("on a terminal (tmux): the view is redrawn in place", async () => {
    const p = await target(32);
    const session = `exm-watch-${process.pid}`;
    const tmux = (...args: string[]) => ["tmux", "-L", session, ...args]; // a server of our own: other tests may use tmux
    try {
      const start = spawnSync(tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "30", `${EXM} --inspect ${p.pid} --watch 0.2`), { env: cleanEnv({}) });
      expect(start.exitCode).toBe(0);
      // Wait for the second look: its rates line holds numbers instead of "-".
      let screen = "";
      for (let i = 0; i < 600 && !/rates +\d+ faults\/s, read [\d.]+ MB\/s/.test(screen); i++) {
        await Bun.sleep(100);
        screen = spawnSync(tmux("capture-pane", "-p", "-t", session)).stdout.toString();
      }
      expect(screen).toMatch(/rates +\d+ faults\/s, read [\d.]+ MB\/s, written [\d.]+ MB\/s/);
      const headers = screen.split("\n").filter((l) => l.startsWith("exm --watch: pid "));
      expect(headers).toHaveLength(1);
      expect(headers[0]).toMatch(new RegExp(`^exm --watch: pid ${p.pid} \\(.*python3.*\\), every 0\\.2 s, \\d\\d:\\d\\d:\\d\\d UTC$`));
      expect(screen).toMatch(/\n {2}arena {7}[\d.]+ (GiB|TiB) virtual, 3\d(\.\d)? MiB resident, 3\d(\.\d)? MiB on disk\n/);
    } finally {
      spawnSync(tmux("kill-server"));
      p.kill("SIGKILL");
      await p.exited;
    }
  });
});

function existsOrReason(): string | null {
  return spawnSync(["test", "-x", EXM]).exitCode === 0 ? null : `${EXM} is not built`;
}

/** tmux, installed with apt-get when missing and we are root (as tests/r.test.ts does for R). */
function ensureTmux(): string | null {
  const why = aptInstall(["tmux"], "watch.test", () => sh(["tmux", "-V"]).ok);
  return why && `tmux is not installed, and ${why}`;
}
