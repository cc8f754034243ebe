/**
 * Statistics. By hand (EXM_STATS with LD_PRELOAD): the process the variable
 * was given to reports, also after it execs another program (same pid, as
 * Rscript does with R), and none of its children. Under `exm --stats` and
 * `--stats-file`: exm stays the parent and reports the whole tree, whatever
 * the processes do at exit (gnulib closing fd 2, dash's _exit), with the exit
 * status, wall time, faults and bytes read and written; it leaves the
 * program's signal dispositions alone and keeps its exit status.
 */
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { spawn } from "bun";
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cleanEnv, cProgram, EXM, explain, freshDir, libAvailable, python3, run, runWithLib, skipUnless } from "./support/sys";

const py = python3();
const summaries = (stderr: string) => stderr.split("\n").filter((l) => /^exm: pid \d+: peak /.test(l));
const treeLines = (stderr: string) => stderr.split("\n").filter((l) => /^exm: pid \d+ \(.*\) (exited|killed)/.test(l));
const noExm = existsSync(EXM) ? null : `${EXM} is not built`;

describe.skipIf(skipUnless(libAvailable(), "EXM_STATS reporting"))("EXM_STATS by hand", () => {
  test.skipIf(skipUnless(py ? null : "python3 not found", "exec chain"))(
    "a program exec'd by the one exm started reports, once",
    async () => {
      const dir = freshDir();
      const r = await runWithLib(["sh", "-c", `exec ${py} -c "b = bytearray(100 << 20); print(len(b))"`], {
        EXM_DIR: dir, EXM_STATS: "1", EXM_THRESHOLD: "64M",
      });
      expect(r.code).toBe(0);
      const lines = summaries(r.stderr);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(
        /^exm: pid \d+: peak 100\.0 MiB file-backed in 1 block, disk reserved peak 100\.0 MiB, given back 100\.0 MiB, still live 0 B, 0 failed, 0 fallbacks, \d+ ms in the allocator; \d+ major faults?, [\d.]+ (B|KiB|MiB) read from disk, [\d.]+ (B|KiB|MiB) written$/,
      );
      rmSync(dir, { recursive: true, force: true });
    },
  );

  test("children (forked and exec'd) stay quiet: one summary for a shell running three programs", async () => {
    const dir = freshDir();
    const r = await runWithLib(["bash", "-c", "/bin/true; /bin/true; (:); echo done"], { EXM_DIR: dir, EXM_STATS: "1" });
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe("done");
    expect(summaries(r.stderr)).toHaveLength(1);
    rmSync(dir, { recursive: true, force: true });
  });

  test("a process leaving with _exit reports; a vfork child that _exits does not (it shares its parent's memory)", async () => {
    const dir = freshDir();
    const r = await runWithLib([cProgram("stats_exit"), "_exit", "80M"], { EXM_DIR: dir, EXM_STATS: "1" });
    expect(r.code).toBe(5);
    expect(summaries(r.stderr)).toHaveLength(1);
    expect(summaries(r.stderr)[0]).toMatch(/: peak 80\.0 MiB file-backed in 1 block, disk reserved peak 80\.0 MiB, given back 0 B, still live 80\.0 MiB, /);
    const v = await runWithLib([cProgram("stats_exit"), "vfork", "80M"], { EXM_DIR: dir, EXM_STATS: "1" });
    expect(v.code).toBe(0);
    expect(summaries(v.stderr)).toHaveLength(1);
    expect(summaries(v.stderr)[0]).toMatch(/: peak 80\.0 MiB file-backed in 1 block, disk reserved peak 80\.0 MiB, given back 80\.0 MiB, still live 0 B, /);
    rmSync(dir, { recursive: true, force: true });
  });

  test.skipIf(skipUnless(py ? null : "python3 not found", "signal dispositions"))(
    "EXM_STATS changes no signal disposition: Python still finds its SIGINT handler",
    async () => {
      const dir = freshDir();
      const r = await runWithLib([py!, "-c", "import signal; print(signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))"], {
        EXM_DIR: dir, EXM_STATS: "1",
      });
      const plain = await run([py!, "-c", "import signal; print(signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))"]);
      expect(plain.stdout.trim()).toStartWith("<built-in function default_int_handler> ");
      expect(r.stdout).toBe(plain.stdout);
      rmSync(dir, { recursive: true, force: true });
    },
  );
});

describe.skipIf(skipUnless(noExm ?? libAvailable(), "exm --stats"))("exm --stats: one summary for the tree", () => {
  setDefaultTimeout(120_000);
  const exm = (args: string[], cwd?: string, env: Record<string, string> = {}) =>
    run([EXM, ...args], { cwd, env: { HOME: process.env.HOME ?? "/root", ...env }, timeoutMs: 120_000 });

  test("a gnulib program that closes stderr before exit (sort) is reported", async () => {
    const dir = freshDir();
    // 200 000 lines: enough for sort to size its buffer past the threshold.
    writeFileSync(join(dir, "in"), Array.from({ length: 200000 }, (_, i) => `${(i * 7919) % 200000}\n`).join(""));
    const r = await exm(["--stats", "--dir", dir, "sort", "-n", "-S", "200M", join(dir, "in")]);
    expect(r.code).toBe(0);
    expect(r.stdout.split("\n")[0]).toBe("0");
    const lines = treeLines(r.stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^exm: pid \d+ \(sort\) exited 0 after \d+\.\d\d s: peak [\d.]+ MiB file-backed in 1 block, disk reserved peak [\d.]+ MiB, given back [\d.]+ MiB, still live 0 B, 0 failed, 0 fallbacks, \d+ ms in the allocator; \d+ major faults?, [\d.]+ (B|KiB|MiB|GiB) read from disk, [\d.]+ (B|KiB|MiB|GiB) written$/,
    );
    rmSync(dir, { recursive: true, force: true });
  });

  test("a dash pipeline: --stats-file counts the children, with command, status, wall time and per-process records", async () => {
    const dir = freshDir();
    writeFileSync(join(dir, "in"), Array.from({ length: 200000 }, (_, i) => `${(i * 7919) % 200000}\n`).join(""));
    const out = join(dir, "s.json");
    const r = await exm(["--stats-file", out, "--dir", dir, "/bin/sh", "-c", `sort -S 200M ${join(dir, "in")} | wc -l; exit 4`]);
    expect(r.code).toBe(4);
    expect(r.stdout.trim()).toBe("200000");
    const s = JSON.parse(readFileSync(out, "utf8"));
    expect(s.command).toEqual(["/bin/sh", "-c", `sort -S 200M ${join(dir, "in")} | wc -l; exit 4`]);
    expect([s.exitCode, s.signal, s.exitStatus]).toEqual([4, null, 4]);
    expect(s.wallNs).toBeGreaterThan(0);
    expect(Date.parse(s.start)).toBeGreaterThan(Date.parse("2026-01-01"));
    expect(s.threshold).toBe(64 * 2 ** 20);
    // sort's 200 MiB buffer is file-backed (only sort reached the threshold).
    expect(s.processes).toHaveLength(1);
    const sort = s.processes[0];
    expect(sort.command[0]).toBe("sort");
    expect(sort.totalAllocs).toBe(1);
    expect(sort.peakLiveBytes).toBeGreaterThanOrEqual(64 * 2 ** 20);
    for (const f of ["totalAllocs", "peakLiveBytes", "peakDiskReserved", "bytesPunched", "liveBytes"]) expect(s[f]).toBe(sort[f]);
    for (const f of ["majorFaults", "minorFaults", "readBytes", "writtenBytes", "cpuNs", "maxResident"]) expect(typeof s[f]).toBe("number");
    expect(s.minorFaults).toBeGreaterThan(0);
    // The timeline has its first and last sample whatever the timing.
    expect(s.timeline.samples.length).toBeGreaterThanOrEqual(2);
    expect(s.timeline.samples.at(-1).majorFaults).toBe(s.majorFaults);
    expect(readdirSync(dir).filter((n) => n.startsWith(".exm-stats-"))).toEqual([]);
    rmSync(dir, { recursive: true, force: true });
  });

  test.skipIf(skipUnless(py ? null : "python3 not found", "faults and disk"))(
    "major faults and bytes read back and written are the kernel's, for the tree",
    async () => {
      const dir = freshDir();
      const out = join(dir, "s.json");
      // 32 MiB written into a file-backed block, synced and paged out, then read back.
      const script = [
        "import ctypes, mmap",
        "n = 32 << 20",
        "b = bytearray(n)",
        "for i in range(0, n, 4096): b[i] = 1",
        "libc = ctypes.CDLL(None, use_errno=True)",
        "a = ctypes.addressof((ctypes.c_char * n).from_buffer(b))",
        "assert libc.msync(ctypes.c_void_p(a), ctypes.c_size_t(n), 4) == 0",
        "assert libc.madvise(ctypes.c_void_p(a), ctypes.c_size_t(n), 21) == 0",
        "print(sum(b[i] for i in range(0, n, 4096)))",
      ].join("\n");
      const r = await exm(["--stats-file", out, "--dir", dir, "--threshold", "16M", py!, "-c", script]);
      expect(r.code, explain(r)).toBe(0);
      expect(r.stdout.trim()).toBe(String(32 * 256));
      const s = JSON.parse(readFileSync(out, "utf8"));
      expect(s.writtenBytes).toBeGreaterThanOrEqual(32 * 2 ** 20);
      expect(s.majorFaults).toBeGreaterThanOrEqual(1);
      expect(s.readBytes).toBeGreaterThanOrEqual(32 * 2 ** 20);
      // The process's record is written by its exit hook; a fault after it (the rest of its
      // exit, a thread of exm's still running) is counted by the kernel for the tree only.
      expect(s.processes[0].majorFaults).toBeGreaterThanOrEqual(1);
      expect(s.processes[0].majorFaults).toBeLessThanOrEqual(s.majorFaults);
      rmSync(dir, { recursive: true, force: true });
    },
  );

  test("forked workers that leave with _exit (R's mclapply, Python's os._exit) are counted, a vfork child is not", async () => {
    const dir = freshDir();
    const out = join(dir, "s.json");
    const r = await exm(["--stats-file", out, "--dir", dir, cProgram("stats_exit"), "fork", "80M"]);
    expect(r.code, explain(r)).toBe(0);
    const s = JSON.parse(readFileSync(out, "utf8"));
    expect(s.processes.map((p: { totalAllocs: number; peakLiveBytes: number }) => [p.totalAllocs, p.peakLiveBytes]).sort())
      .toEqual([[1, 160 * 2 ** 20], [1, 80 * 2 ** 20]].sort());
    expect(s.peakLiveBytes).toBe(240 * 2 ** 20);
    const v = await exm(["--stats-file", out, "--dir", dir, cProgram("stats_exit"), "vfork", "80M"]);
    expect(v.code, explain(v)).toBe(0);
    expect(JSON.parse(readFileSync(out, "utf8")).processes).toHaveLength(1);
    rmSync(dir, { recursive: true, force: true });
  });

  test("the exit status is the program's: a code, or the same signal", async () => {
    const dir = freshDir();
    const out = join(dir, "s.json");
    const r = await exm(["--stats-file", out, "--dir", dir, "sh", "-c", "kill -USR1 $$"]);
    expect(r.signal).toBe("SIGUSR1");
    const s = JSON.parse(readFileSync(out, "utf8"));
    expect([s.exitCode, s.signal, s.exitStatus]).toEqual([null, "SIGUSR1", 138]);
    const r2 = await exm(["--stats", "--dir", dir, "sh", "-c", "exit 7"]);
    expect(r2.code).toBe(7);
    expect(treeLines(r2.stderr)[0]).toMatch(/^exm: pid \d+ \(sh\) exited 7 after \d+\.\d\d s: nothing file-backed \(no allocation of 64\.0 MiB or more\); \d+ major faults?, /);
    rmSync(dir, { recursive: true, force: true });
  });

  test.skipIf(skipUnless(py ? null : "python3 not found", "signals"))(
    "signal dispositions are the program's: SIGINT sent to exm is a KeyboardInterrupt in Python, SIGTERM is passed on",
    async () => {
      const dir = freshDir();
      const script = [
        "import signal, sys, time",
        "try:",
        "    print(signal.getsignal(signal.SIGINT), flush=True)", // inside the try: the signal may come at once
        "    time.sleep(120)",
        "except KeyboardInterrupt:",
        "    print('KeyboardInterrupt', flush=True)",
        "    sys.exit(5)",
      ].join("\n");
      for (const [sig, code, out] of [["SIGINT", 5, "KeyboardInterrupt"], ["SIGTERM", null, ""]] as const) {
        const p = spawn([EXM, "--stats", "--dir", dir, py!, "-c", script], { env: cleanEnv({}), stdout: "pipe", stderr: "pipe", stdin: "ignore" });
        const reader = (p.stdout as ReadableStream<Uint8Array>).getReader();
        let text = "";
        while (!text.includes("\n")) text += new TextDecoder().decode((await reader.read()).value);
        expect(text).toBe("<built-in function default_int_handler>\n");
        p.kill(sig);
        for (let c = await reader.read(); !c.done; c = await reader.read()) text += new TextDecoder().decode(c.value);
        await p.exited;
        expect(text.split("\n")[1]).toBe(out);
        expect(code === null ? p.signalCode : p.exitCode).toBe(code === null ? "SIGTERM" : code);
        const line = treeLines(await new Response(p.stderr).text())[0];
        expect(line).toContain(code === null ? "(python3) killed by SIGTERM after" : "(python3) exited 5 after");
      }
      rmSync(dir, { recursive: true, force: true });
    },
  );

  test.skipIf(skipUnless(py ? null : "python3 not found", "nested runs"))(
    "nested exm --stats runs: each prints its line, and the outer one counts the inner's processes",
    async () => {
      const dir = freshDir();
      const inner = `${EXM} --stats --dir ${dir} ${py} -c "b = bytearray(100 << 20)"`;
      const r = await exm(["--stats", "--dir", dir, "sh", "-c", `${inner}; ${inner}`]);
      expect(r.code, explain(r)).toBe(0);
      const lines = treeLines(r.stderr);
      expect(lines).toHaveLength(3);
      expect(lines[0]).toMatch(/\(python3\) exited 0 .*: peak 100\.0 MiB file-backed in 1 block,/);
      expect(lines[1]).toMatch(/\(python3\) exited 0 .*: peak 100\.0 MiB file-backed in 1 block,/);
      expect(lines[2]).toMatch(/\(sh\) exited 0 .*: peak 200\.0 MiB file-backed in 2 blocks \(2 processes\),/);
      rmSync(dir, { recursive: true, force: true });
    },
  );

  test("a statistics file that cannot be written: one line, the program's status kept", async () => {
    const r = await exm(["--stats-file", "/dev/full", "sh", "-c", "exit 3"]);
    expect([r.code, r.stderr]).toEqual([3, "exm: cannot write statistics to /dev/full: ENOSPC\n"]);
  });
});
