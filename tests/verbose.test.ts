/**
 * EXM_VERBOSE=1 (--verbose): the library tells where each large block went
 * and why, and why the arena could not serve a request (the --max-disk cap, a
 * full data directory), at a rate a person can read: the first 8 messages of
 * a kind, then the 16th, 32nd, 64th...
 */
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { rmSync } from "node:fs";
import { freshDir, libAvailable, python3, runWithLib, skipUnless, tmpfsAvailable, withTmpfs } from "./support/sys";

setDefaultTimeout(60_000);
const py = python3();
const dir = freshDir();
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const ours = (stderr: string) => stderr.split("\n").filter((l) => /^exm: pid \d+: /.test(l)).map((l) => l.replace(/^exm: pid \d+: /, ""));

describe.skipIf(skipUnless(libAvailable() ?? (py ? null : "python3 not found"), "--verbose"))("the library's --verbose", () => {
  test("where each large block went and why, thinned out past 8 messages", async () => {
    // 40 blocks of 2 MiB, kept alive: laid out one after the other (each a page more than asked).
    const r = await runWithLib([py!, "-c", "l = [bytearray(2 << 20) for i in range(40)]"], {
      EXM_DIR: dir, EXM_THRESHOLD: "1M", EXM_VERBOSE: "1", EXM_ADVICE: "normal",
    });
    expect(r.code).toBe(0);
    const lines = ours(r.stderr);
    expect(lines[0]).toMatch(new RegExp(`^file-backed arena of [\\d.]+ (GiB|TiB) in ${dir} \\(address space; disk is taken only by live blocks, and [\\d.]+ (MiB|GiB|TiB) is free there\\)$`));
    const blocks = lines.filter((l) => l.includes(" file-backed at offset "));
    const want = (k: number, off: string) =>
      `2.0 MiB file-backed at offset ${off} of the arena in ${dir} (at or above the threshold of 1.0 MiB)` +
      (k > 8 ? ` (message ${k} of this kind; the ones between are not shown)` : "");
    expect(blocks).toHaveLength(10);
    expect(blocks[0]).toBe(want(1, "0 B"));
    expect(blocks[1]).toBe(want(2, "2.0 MiB"));
    expect(blocks[8]).toMatch(new RegExp(`^2\\.0 MiB file-backed at offset 30\\.\\d MiB of the arena in ${dir} \\(at or above the threshold of 1\\.0 MiB\\) \\(message 16 of this kind; the ones between are not shown\\)$`));
    expect(blocks[9]).toMatch(/\(message 32 of this kind; the ones between are not shown\)$/);
    // Without --verbose: nothing.
    const quiet = await runWithLib([py!, "-c", "l = [bytearray(2 << 20) for i in range(4)]"], { EXM_DIR: dir, EXM_THRESHOLD: "1M" });
    expect(quiet.stderr).toBe("");
  });

  // The messages about the arena's filesystem name the directory its file is
  // in: they used to read exm_cfg.dir, which exm_set_dir changes for the
  // next arena only, so the punch's message named the new directory.
  test.skipIf(skipUnless(tmpfsAvailable(), "a ramfs data directory"))("a filesystem without fallocate or hole punching (ramfs): told once each, naming the arena's directory after exm_set_dir", async () => {
    await withTmpfs(0, async (ram) => {
      const script = [
        "import ctypes",
        "lib = ctypes.CDLL(None)",
        "a = bytearray(4 << 20)",                   // the arena is made in the ramfs
        "assert lib.exm_set_dir(b'/tmp') == 0",     // for the next arena
        "b = bytearray(4 << 20)",
        "del a, b",                                 // freed: the punch fails
        "print('done')",
      ].join("\n");
      const r = await runWithLib([py!, "-c", script], { EXM_DIR: ram, EXM_THRESHOLD: "1M", EXM_VERBOSE: "1" });
      expect(r.code).toBe(0);
      expect(r.stdout).toContain("done");
      const lines = r.stderr.split("\n");
      expect(lines.filter((l) => l.includes("cannot reserve disk"))).toEqual([
        `exm: cannot reserve disk in ${ram} (no fallocate): blocks stay sparse, and a full disk will crash the program with SIGBUS`,
      ]);
      expect(lines.filter((l) => l.includes("cannot punch holes"))).toEqual([`exm: cannot punch holes in files of ${ram}: Operation not supported`]);
    }, { ramfs: true });
  });

  test("a request past the --max-disk cap: the cap and what is reserved", async () => {
    const r = await runWithLib([py!, "-c", "l = []\ntry:\n    for i in range(3): l.append(bytearray(4 << 20))\nexcept MemoryError: print('MemoryError')"], {
      EXM_DIR: dir, EXM_THRESHOLD: "1M", EXM_VERBOSE: "1", EXM_MAX_DISK: "10M",
    });
    const lines = ours(r.stderr).filter((l) => l.startsWith("the arena cannot serve"));
    expect(lines).toEqual(["the arena cannot serve 4.0 MiB: it would pass the --max-disk cap of 10.0 MiB (8.0 MiB reserved)"]);
    expect(ours(r.stderr)[0]).toMatch(/ is free there; at most 10\.0 MiB by --max-disk\)$/);
  });

  test.skipIf(skipUnless(tmpfsAvailable(), "full data directory"))("a request larger than the free space of the data directory: the space left", async () => {
    await withTmpfs(4 << 20, async (small) => {
      const r = await runWithLib([py!, "-c", "try:\n    b = bytearray(8 << 20)\nexcept MemoryError: print('MemoryError')"], {
        EXM_DIR: small, EXM_THRESHOLD: "1M", EXM_VERBOSE: "1",
      });
      const lines = ours(r.stderr).filter((l) => l.startsWith("the arena cannot serve"));
      expect(lines).toEqual([`the arena cannot serve 8.0 MiB: not enough disk space in ${small} (4.0 MiB free)`]);
      // The 8 TiB (or so) of the arena is address space; the disk's size is told next to it.
      expect(ours(r.stderr)[0]).toMatch(new RegExp(`^file-backed arena of [\\d.]+ (GiB|TiB) in ${small} \\(address space; disk is taken only by live blocks, and 4\\.0 MiB is free there\\)$`));
    });
  });

  test("a bad EXM_* value is warned about once per run, not once per process of a shim chain", async () => {
    // pyenv-style: a shell script that runs another shell that runs python3, plus a few tools.
    const chain = `true; bash -c 'sh -c true; env true'; exec ${py} -c pass`;
    const r = await runWithLib(["bash", "-c", chain], { EXM_DIR: dir, EXM_THRESHOLD: "lots" });
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("exm: EXM_THRESHOLD: 'lots' is not a size (bytes, or a number with K, M, G, T, P or E: 4096, 512K, 1.5GiB) or auto; using the default (64M)\n");
    // A second bad variable later in the chain is still told, once.
    const r2 = await runWithLib(["bash", "-c", `EXM_ADVICE=odd bash -c 'true; true'`], { EXM_DIR: dir, EXM_THRESHOLD: "lots" });
    expect(r2.stderr.split("\n").filter(Boolean).map((l) => l.slice(0, 27))).toEqual(["exm: EXM_THRESHOLD: 'lots' ", "exm: EXM_ADVICE: 'odd' is n"]);
  });

  test("a request that goes to RAM because the arena is unusable says so, after the one line about the directory", async () => {
    const r = await runWithLib([py!, "-c", "b = bytearray(100 << 20)"], { EXM_DIR: "/nonexistent/exm-data", EXM_THRESHOLD: "1M", EXM_VERBOSE: "1" });
    expect(r.code).toBe(0);
    const lines = r.stderr.split("\n").filter(Boolean);
    expect(lines[0]).toBe("exm: unusable data directory /nonexistent/exm-data: No such file or directory; allocations stay in RAM");
    expect(ours(r.stderr)).toEqual(["100.0 MiB in RAM instead of the arena: the arena is unusable (see the line above)"]);
  });
});
