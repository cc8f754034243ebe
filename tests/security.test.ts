/**
 * Security (issue 7), with two made-up uids (54321 the user, 54322 someone
 * else on the machine), run through setpriv as root:
 * - the backing file is never reachable by another user: unlinked from
 *   birth, 0600, and /proc/PID/fd of the holder closed to others; also on a
 *   filesystem without O_TMPFILE (the create-then-unlink fallback);
 * - the launcher's library cache cannot be hijacked (what cli.test.ts does
 *   not cover yet: other unsafe modes, a library owned by someone else, a
 *   FIFO or directory in its place, an unsafe parent directory);
 * - another user's planted /tmp/exm-<uid> cannot make exm load their library
 *   (the planted library would say so: its constructor writes a marker).
 * Skips (saying why) without root, setpriv or a built exm.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "bun";
import {
  chmodSync, chownSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, symlinkSync,
  writeFileSync,
} from "node:fs";
import { basename, join } from "node:path";
import { ATTACKER_UID, VICTIM_UID, asUser, otherUsersAvailable, ownedDir, publicCopy, scratch } from "./support/programs";
import { EXM, LIB, cProgram, compileC, explain, libAvailable, run, skipUnless, spawnUntil } from "./support/sys";

const noUsers = skipUnless(otherUsersAvailable() ?? libAvailable(), "security tests");
const noCli = noUsers || skipUnless(existsSync(EXM) ? null : `${EXM} not built`, "cache hijack tests");

let work: ReturnType<typeof scratch>;
let pub: string;
beforeAll(() => {
  work = scratch("exm-security-");
  chmodSync(work.dir, 0o755);
  pub = join(work.dir, "public");
});
afterAll(() => {
  work.remove();
  // a run that fell back to the shared locations made them for the made-up uid
  for (const p of [`/tmp/exm-${VICTIM_UID}`, `/dev/shm/exm-${VICTIM_UID}`]) rmSync(p, { recursive: true, force: true });
});

let serial = 0;
const sub = (name: string) => join(work.dir, `${name}-${++serial}`);

/** A directory anyone may write, sticky, like /tmp. */
function sharedDir(name: string): string {
  const d = sub(name);
  mkdirSync(d);
  chmodSync(d, 0o1777);
  return d;
}

/* ---- the backing file ------------------------------------------------------------- */

interface Held {
  pid: number;
  fd: string;
  target: string;
}

/** The holder's descriptor on a deleted file in dir. */
function backingFd(pid: number, dir: string): Held {
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue;
    }
    if (target.startsWith(`${dir}/`) && target.endsWith(" (deleted)")) return { pid, fd, target };
  }
  throw new Error(`process ${pid} holds no deleted file in ${dir}: ${readdirSync(`/proc/${pid}/fd`).map((f) => readlinkSync(`/proc/${pid}/fd/${f}`)).join(", ")}`);
}

/** What another user gets trying to read path: "ok" or the error. */
async function asAttacker(argv: string[]): Promise<{ code: number | null; stderr: string }> {
  const r = await run(asUser(ATTACKER_UID, argv), { timeoutMs: 30_000 });
  return { code: r.code, stderr: r.stderr.trim() };
}

async function checkBackingFile(extraPreload: string | null, what: string): Promise<void> {
  const data = sharedDir("data");
  const lib = publicCopy(LIB, pub);
  const preload = extraPreload ? `${publicCopy(extraPreload, pub)}:${lib}` : lib;
  const h = await spawnUntil(asUser(VICTIM_UID, [publicCopy(cProgram("hold"), pub), "64M"]), {
    LD_PRELOAD: preload,
    EXM_DIR: data,
    EXM_THRESHOLD: "1M",
    EXM_TEST_REQUIRE_LIB: "1",
  }, "ready", 60_000);
  try {
    expect(h.stdout).toContain("file_backed=1");
    const held = backingFd(h.proc.pid, data);
    // "#<inode>" is an O_TMPFILE file; the fallback's name is ".exm-<pid>-<n>"
    expect(basename(held.target)).toMatch(extraPreload ? /^\.exm-\d+-\d+ \(deleted\)$/ : /^#\d+ \(deleted\)$/);
    // nothing to find in the directory, ever
    expect(readdirSync(data)).toEqual([]);
    // the file itself, as root sees it through the holder's descriptor
    const st = statSync(`/proc/${held.pid}/fd/${held.fd}`);
    expect({ what, mode: (st.mode & 0o7777).toString(8), nlink: st.nlink, uid: st.uid }).toEqual({
      what, mode: "600", nlink: 0, uid: VICTIM_UID,
    });
    // another user can open neither the descriptor nor the mapping
    const viaFd = await asAttacker(["cat", `/proc/${held.pid}/fd/${held.fd}`]);
    expect(viaFd.code).not.toBe(0);
    expect(viaFd.stderr).toMatch(/Permission denied|Operation not permitted/);
    const maps = await asAttacker(["ls", `/proc/${held.pid}/map_files/`]);
    expect(maps.code).not.toBe(0);
    const mem = await asAttacker(["dd", `if=/proc/${held.pid}/mem`, "bs=1", "count=1", "status=none"]);
    expect(mem.code).not.toBe(0);
  } finally {
    h.proc.kill("SIGKILL");
    await h.proc.exited;
  }
  expect(readdirSync(data)).toEqual([]);
}

describe.skipIf(noUsers)("the backing file is never reachable by another user", () => {
  test("O_TMPFILE: unlinked from birth, 0600, the holder's /proc closed to others", async () => {
    await checkBackingFile(null, "O_TMPFILE");
  });

  test("without O_TMPFILE (fallback): created 0600, unlinked at once, same protection", async () => {
    const shim = compileC(join(import.meta.dir, "c", "stress_notmpfile.c"), { flags: ["-shared", "-fPIC"], out: join(work.dir, "notmpfile.so") });
    await checkBackingFile(shim, "fallback");
  });
});

/* ---- the library cache ------------------------------------------------------------ */

let libName: string | undefined;
/** The cache file name of this exm's library (libexm-<hash>.so). */
async function cachedLibName(): Promise<string> {
  if (!libName) {
    const home = sub("probe-home");
    mkdirSync(home);
    const r = await run([EXM, "printenv", "LD_PRELOAD"], { env: { HOME: home, XDG_CACHE_HOME: undefined } });
    if (r.code !== 0) throw new Error(explain(r));
    libName = basename(r.stdout.trim());
  }
  return libName;
}

let exmPath: string | undefined;
/** dist/exm where the other uids can run it. */
function exmForUsers(): string {
  if (!exmPath) exmPath = spawnSync(asUser(VICTIM_UID, ["test", "-x", EXM])).exitCode === 0 ? EXM : publicCopy(EXM, pub);
  return exmPath;
}

/** A library that creates `marker` when loaded, planted at `path`, owned by uid. */
function plantLibrary(path: string, marker: string, uid: number): void {
  compileC(join(import.meta.dir, "c", "stress_planted.c"), {
    flags: ["-shared", "-fPIC", `-DMARKER="${marker}"`],
    out: path,
  });
  chownSync(path, uid, uid);
  chmodSync(path, 0o755);
}

/** Runs exm as the victim; returns the run and whether the planted library ran. */
async function victimRuns(env: Record<string, string | undefined>, marker: string) {
  const r = await run(asUser(VICTIM_UID, [exmForUsers(), "sh", "-c", 'echo "$LD_PRELOAD"; grep -c libexm /proc/self/maps']), {
    env: { XDG_CACHE_HOME: undefined, XDG_RUNTIME_DIR: undefined, TMPDIR: undefined, ...env },
    timeoutMs: 30_000,
  });
  return { r, planted: existsSync(marker) };
}

describe.skipIf(noCli)("the cache directory cannot be hijacked", () => {
  for (const mode of [0o770, 0o777, 0o1777, 0o711, 0o701]) {
    test(`a cache directory with mode ${mode.toString(8).padStart(4, "0")} is refused`, async () => {
      const home = ownedDir(sub("home"), VICTIM_UID);
      const cache = ownedDir(join(home, ".cache"), VICTIM_UID);
      const dir = ownedDir(join(cache, "exm"), VICTIM_UID, mode);
      const marker = join(sharedDir("marker"), "loaded");
      plantLibrary(join(dir, await cachedLibName()), marker, VICTIM_UID);
      chmodSync(join(dir, await cachedLibName()), 0o777);
      const { r, planted } = await victimRuns({ HOME: home }, marker);
      expect(planted).toBe(false);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^exm: refusing cache directory .*: it has mode \d+, must be 0700/);
    });
  }

  test("a library owned by someone else (right content) in the user's own cache is replaced", async () => {
    const home = ownedDir(sub("home"), VICTIM_UID);
    const first = await run(asUser(VICTIM_UID, [exmForUsers(), "true"]), { env: { HOME: home } });
    if (first.code !== 0) throw new Error(explain(first));
    const lib = join(home, ".cache", "exm", await cachedLibName());
    chownSync(lib, ATTACKER_UID, ATTACKER_UID);
    const r = await run(asUser(VICTIM_UID, [exmForUsers(), "true"]), { env: { HOME: home } });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(new RegExp(`^exm: warning: replacing ${lib}: owned by uid ${ATTACKER_UID}\\n$`));
    expect(lstatSync(lib).uid).toBe(VICTIM_UID);
  });

  test("a FIFO in the library's place: no hang, replaced", async () => {
    const home = ownedDir(sub("home"), VICTIM_UID);
    const dir = ownedDir(join(ownedDir(join(home, ".cache"), VICTIM_UID), "exm"), VICTIM_UID);
    const lib = join(dir, await cachedLibName());
    expect(spawnSync(["mkfifo", lib]).exitCode).toBe(0);
    chownSync(lib, VICTIM_UID, VICTIM_UID);
    const r = await run(asUser(VICTIM_UID, [exmForUsers(), "true"]), { env: { HOME: home }, timeoutMs: 20_000 });
    expect(r.timedOut).toBe(false);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/replacing .*: not a regular file/);
    expect(lstatSync(lib).isFile()).toBe(true);
  });

  test("a directory in the library's place: a clear error, nothing run", async () => {
    const home = ownedDir(sub("home"), VICTIM_UID);
    const dir = ownedDir(join(ownedDir(join(home, ".cache"), VICTIM_UID), "exm"), VICTIM_UID);
    ownedDir(join(dir, await cachedLibName()), VICTIM_UID);
    const marker = join(sharedDir("ran"), "ran");
    const r = await run(asUser(VICTIM_UID, [exmForUsers(), "touch", marker]), { env: { HOME: home }, timeoutMs: 20_000 });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^(exm: warning: replacing [^\n]+\n)?exm: cannot write the library to [^\n]+\n$/);
    expect(existsSync(marker)).toBe(false);
  });

  // Found by this suite (fixed in 43e14a6): only the last component of the
  // cache path was checked, so the owner of a writable parent could swap the
  // checked directory for one of theirs while the user's program ran, and its
  // later execs preloaded their library.
  test("a cache inside a directory another user may write: the other user cannot get a library loaded", async () => {
    const parent = sub("attacker-parent");
    mkdirSync(parent);
    chownSync(parent, ATTACKER_UID, ATTACKER_UID);
    chmodSync(parent, 0o777);
    const marker = join(sharedDir("marker"), "loaded");
    const name = await cachedLibName();
    plantLibrary(join(parent, "evil.so"), marker, ATTACKER_UID);
    let h: Awaited<ReturnType<typeof spawnUntil>>;
    try {
      h = await spawnUntil(
        asUser(VICTIM_UID, [exmForUsers(), "sh", "-c", 'echo "started $LD_PRELOAD"; sleep 2; sh -c true']),
        { HOME: "/nonexistent", XDG_CACHE_HOME: parent },
        "started",
      );
    } catch (e) {
      console.log(`exm refused to run at all: ${(e as Error).message.split("\n").slice(-2).join(" ")}`);
      return; // refusing is safe too
    }
    console.log(`with XDG_CACHE_HOME in another user's directory: ${h.stdout.trim()}`);
    await run(asUser(ATTACKER_UID, ["sh", "-c", `mv "$1/exm" "$1/old" && mkdir "$1/exm" && cp "$1/evil.so" "$1/exm/${name}"`, "sh", parent]));
    await h.proc.exited;
    expect(existsSync(marker)).toBe(false);
    expect(h.stdout).not.toContain(`${parent}/`);
  }, 30_000);
});

describe.skipIf(noCli)("another user's planted /tmp/exm-<uid> cannot make exm load their library", () => {
  const tmpCache = `/tmp/exm-${VICTIM_UID}`;
  const shmCache = `/dev/shm/exm-${VICTIM_UID}`;
  const clean = () => {
    for (const p of [tmpCache, shmCache]) rmSync(p, { recursive: true, force: true });
  };
  beforeAll(clean);
  afterAll(clean);

  /** Plants what `plant` makes at /tmp/exm-54321, runs exm as 54321 with no usable HOME. */
  async function attempt(what: string, plant: (marker: string) => Promise<void> | void) {
    clean();
    const marker = join(sharedDir("marker"), "loaded");
    await plant(marker);
    const { r, planted } = await victimRuns({ HOME: "/nonexistent" }, marker);
    const loaded = r.stdout.split("\n")[0] ?? "";
    console.log(`${what}: exit ${r.code}, preload ${JSON.stringify(loaded)}, ${JSON.stringify(r.stderr.trim())}`);
    expect({ what, planted }).toEqual({ what, planted: false });
    if (r.code === 0) {
      // it ran: then with a library of its own, from a place the other user does not control
      expect(loaded.startsWith(`${tmpCache}/`)).toBe(false);
      expect(Number(r.stdout.split("\n")[1])).toBeGreaterThan(0);
    } else {
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`^exm: refusing cache directory ${tmpCache}: [^\\n]+\\n$`));
    }
    clean();
  }

  test("a world-writable directory of theirs with their library in it", async () => {
    await attempt("0777 dir", async (marker) => {
      ownedDir(tmpCache, ATTACKER_UID, 0o777);
      plantLibrary(join(tmpCache, await cachedLibName()), marker, ATTACKER_UID);
    });
  });

  test("a private (0700) directory of theirs", async () => {
    await attempt("0700 dir", async (marker) => {
      ownedDir(tmpCache, ATTACKER_UID, 0o700);
      plantLibrary(join(tmpCache, await cachedLibName()), marker, ATTACKER_UID);
    });
  });

  /** The cache path as the attacker's symlink to `target`, a directory of `owner` with a library planted in it. */
  async function symlinkToPlanted(target: string, owner: number, marker: string) {
    plantLibrary(join(target, await cachedLibName()), marker, owner);
    symlinkSync(target, tmpCache);
    spawnSync(["chown", "-h", `${ATTACKER_UID}:${ATTACKER_UID}`, tmpCache]);
  }

  test("a symlink of theirs to a directory of theirs", async () => {
    await attempt("symlink", (marker) =>
      symlinkToPlanted(ownedDir(sub("attacker-dir"), ATTACKER_UID, 0o755), ATTACKER_UID, marker),
    );
  });

  test("a symlink of theirs to a private directory of the user's", async () => {
    await attempt("symlink to the user's dir", (marker) =>
      symlinkToPlanted(ownedDir(sub("victim-dir"), VICTIM_UID, 0o700), VICTIM_UID, marker),
    );
  });

  test("a regular file of theirs", async () => {
    await attempt("file", () => {
      writeFileSync(tmpCache, "not a directory\n");
      chownSync(tmpCache, ATTACKER_UID, ATTACKER_UID);
    });
  });

  test("nothing planted: exm makes /tmp/exm-<uid> its own (0700) and uses it", async () => {
    clean();
    const marker = join(sharedDir("marker"), "loaded");
    const { r } = await victimRuns({ HOME: "/nonexistent" }, marker);
    if (r.code !== 0) throw new Error(explain(r));
    expect(r.stdout.startsWith(`${tmpCache}/libexm-`)).toBe(true);
    const st = lstatSync(tmpCache);
    expect({ dir: st.isDirectory(), uid: st.uid, mode: (st.mode & 0o777).toString(8) }).toEqual({ dir: true, uid: VICTIM_UID, mode: "700" });
    clean();
  });
});

/* ---- the statistics file ------------------------------------------------------------ */

describe.skipIf(noUsers)("the statistics file", () => {
  // Found by this suite (fixed in 43e14a6): the statistics were written to a
  // predictable PATH.tmp.<pid> without O_EXCL and renamed over PATH, so a
  // FIFO planted there hung the program at exit, and as root
  // `--stats-file /dev/full` replaced the device node with a JSON file.
  test("a FIFO planted at PATH.tmp.<pid> by another user does not hang the program at exit", async () => {
    // (stress_served exits through exit(), which runs the report; a shell would _exit)
    const dir = sharedDir("stats");
    const stats = join(dir, "stats.json");
    const h = await spawnUntil(asUser(VICTIM_UID, [publicCopy(cProgram("stress_served"), pub), "8M", "1000"]), {
      LD_PRELOAD: publicCopy(LIB, pub), EXM_STATS: stats, EXM_THRESHOLD: "1M",
    }, "served ok");
    await run(asUser(ATTACKER_UID, ["mkfifo", `${stats}.tmp.${h.proc.pid}`]));
    const ended = await Promise.race([h.proc.exited.then(() => true), Bun.sleep(5000).then(() => false)]);
    if (!ended) h.proc.kill("SIGKILL");
    expect(ended).toBe(true);
    // and the statistics still arrived, as the user's own file
    const st = lstatSync(stats);
    expect({ file: st.isFile(), uid: st.uid }).toEqual({ file: true, uid: VICTIM_UID });
    expect(JSON.parse(readFileSync(stats, "utf8")).totalAllocs).toBeGreaterThanOrEqual(2);
  }, 30_000);

  test("a statistics path that is a device node is written, not replaced", async () => {
    const dev = join(sub("dev"), "null");
    mkdirSync(join(dev, ".."), { recursive: true });
    spawnSync(["mknod", "-m", "666", dev, "c", "1", "3"]);
    const r = await run([EXM, "--stats-file", dev, "true"], { env: { HOME: sub("home") } });
    expect(lstatSync(dev).isCharacterDevice()).toBe(true);
    console.log(`--stats-file on a device node: exit ${r.code} ${JSON.stringify(r.stderr.trim())}`);
  });
});

test.skipIf(noUsers)("self-check: the made-up uids are really unprivileged here", async () => {
  const r = await run(asUser(ATTACKER_UID, ["sh", "-c", "id -u; cat /proc/1/environ >/dev/null 2>&1 && echo can-read-init || echo cannot-read-init"]));
  expect(r.stdout).toBe(`${ATTACKER_UID}\ncannot-read-init\n`);
  expect(readFileSync("/proc/self/status", "utf8")).toMatch(/Uid:\s+0\s/);
});
