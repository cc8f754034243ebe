/**
 * The exm Python package (issue 17), python/: driven from Python programs run
 * under the exm launcher (dist/exm), whose key=value output is checked here.
 *
 * numpy comes from Debian's python3-numpy (PyPI is out of reach offline).
 * The interpreter is the first python3 that has numpy: the one on PATH, else
 * /usr/bin/python3; when neither has it, this file installs python3-numpy
 * with apt-get (as root), and skips the numpy tests with the reason where it
 * cannot. One test installs the package with pip into a temporary directory
 * (offline, as a user without a network would) and imports it from there; the
 * others import it from python/ directly, writing no bytecode into the tree.
 * The API is called in Python child processes only (key=value output), under
 * dist/exm or, where a test says so, without it.
 */
import { describe, expect, test, setDefaultTimeout } from "bun:test";
import { spawnSync } from "bun";
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GiB, MiB, assertOk, assertRun, withDataDir } from "./support/native";
import { realPython, which } from "./support/programs";
import {
  EXM,
  LIB,
  ROOT,
  aptInstall,
  cgroupAvailable,
  compileC,
  explain,
  freshDir,
  kv,
  run,
  runInCgroup,
  sh,
  skipUnless,
  tmpfsAvailable,
  withTmpfs,
} from "./support/sys";

setDefaultTimeout(120_000);

const FIXTURES = join(ROOT, "tests", "fixtures", "python");
const fixture = (name: string) => join(FIXTURES, name);
const NOT_UNDER_EXM =
  "exm: libexm is not loaded in this Python process: start Python under exm: `exm python3 ...`";

/** text as a literal in a RegExp. */
const re = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

function hasNumpy(py: string): boolean {
  return sh([py, "-c", "import numpy"]).ok;
}

/** The interpreters to try, in order: the system's, python3 on PATH (a real binary, not a shim). */
function candidates(): string[] {
  const list = ["/usr/bin/python3", realPython()].filter((p): p is string => !!p && existsSync(p));
  return [...new Set(list)];
}

/** A python3 with numpy (installing python3-numpy if needed and possible), or why there is none. */
function ensureNumpy(): { py: string | null; why: string | null } {
  let py = candidates().find(hasNumpy);
  if (py) return { py, why: null };
  if (!existsSync("/usr/bin/python3")) return { py: null, why: "no python3 has numpy, and there is no /usr/bin/python3 to give it python3-numpy" };
  const why = aptInstall(["python3-numpy"], "python.test");
  if (why) return { py: null, why: `no python3 has numpy, and ${why}` };
  py = candidates().find(hasNumpy);
  return py ? { py, why: null } : { py: null, why: "python3-numpy installed, but no python3 imports numpy" };
}

const NUMPY = ensureNumpy();
/** The interpreter the tests use: one with numpy (the system's first), else any (for the tests that need none). */
const PY = NUMPY.py ?? candidates()[0] ?? null;
/** Every interpreter with numpy, labelled with its and numpy's version: the API test runs on each. */
const NUMPY_PYS = candidates()
  .filter(hasNumpy)
  .map((py) => ({ py, label: sh([py, "-c", "import sys, numpy; print('Python %d.%d, numpy %s' % (sys.version_info[:2] + (numpy.__version__,)))"]).out.trim() }));
const NO_PY = skipUnless(PY ? null : "no python3 found", "Python package tests");
const NO_EXM = skipUnless(existsSync(EXM) ? null : `${EXM} is not built`, "Python package tests");
const SKIP = NO_PY || NO_EXM;
const NO_NUMPY = !SKIP && skipUnless(NUMPY.why, "Python package tests with numpy");

/** Environment importing the package straight from python/ (no .pyc written into the tree). */
const SOURCE_ENV = { PYTHONPATH: join(ROOT, "python"), PYTHONDONTWRITEBYTECODE: "1" };

/** Runs a fixture with `py` under exm (launcher options first). */
function exmPython(py: string, opts: string[], script: string, args: string[] = [], env = SOURCE_ENV, timeoutMs = 120_000) {
  return run([EXM, ...opts, py, script, ...args], { env, timeoutMs });
}

/** A Python 3.9 interpreter (the oldest the package supports), or null. */
function python39(): string | null {
  const onPath = which("python3.9");
  if (onPath && sh([onPath, "-c", "import sys; assert sys.version_info[:2] == (3, 9)"]).ok) return onPath;
  const root = process.env.PYENV_ROOT || join(process.env.HOME || "/root", ".pyenv");
  try {
    for (const v of readdirSync(join(root, "versions")).filter((d) => d.startsWith("3.9")).sort().reverse()) {
      const p = join(root, "versions", v, "bin", "python3.9");
      if (existsSync(p)) return p;
    }
  } catch {
    /* no pyenv */
  }
  return null;
}

/* ---- pip ------------------------------------------------------------------------------------ */

/** True when py can build the package offline: pip, setuptools >= 61, and bdist_wheel (wheel, or setuptools >= 70.1). */
function canBuild(py: string): boolean {
  const code =
    "import importlib.util, setuptools, sys; v = tuple(int(x) for x in setuptools.__version__.split('.')[:2]); " +
    "sys.exit(0 if v >= (61, 0) and (v >= (70, 1) or importlib.util.find_spec('wheel')) else 1)";
  return sh([py, "-m", "pip", "--version"]).ok && sh([py, "-c", code]).ok;
}

/** An interpreter that can pip-install the package offline (installing python3-pip if needed and possible), or why none. */
function ensurePip(): { py: string | null; why: string | null } {
  const prefer = (list: string[]) => [...list.filter((p) => p === PY), ...list.filter((p) => p !== PY)];
  let py = prefer(candidates()).find(canBuild);
  if (py) return { py, why: null };
  if (!existsSync("/usr/bin/python3")) return { py: null, why: "no python3 has pip, setuptools and wheel" };
  const why = aptInstall(["python3-pip", "python3-setuptools", "python3-wheel"], "python.test");
  if (why) return { py: null, why: `no python3 has pip, setuptools and wheel, and ${why}` };
  py = prefer(candidates()).find(canBuild);
  return py ? { py, why: null } : { py: null, why: "python3-pip installed, but no python3 can build with it" };
}

/* ---- tests ------------------------------------------------------------------------------------ */

describe.skipIf(SKIP)("the exm Python package", () => {
  const PIP = SKIP ? { py: null, why: "skipped" } : ensurePip();
  test.skipIf(!SKIP && skipUnless(PIP.why, "pip install test"))(
    "pip installs it offline into a target directory, and the installed copy is the one imported",
    async () => {
      const py = PIP.py!;
      const work = mkdtempSync(join(tmpdir(), "exm-pypkg-"));
      try {
        // pip builds in the source tree (build/, *.egg-info): give it a copy.
        cpSync(join(ROOT, "python"), join(work, "python"), {
          recursive: true,
          filter: (src) => !/(__pycache__|\.egg-info|\/build)$/.test(src),
        });
        const target = join(work, "site");
        const t0 = performance.now();
        // Offline: no index, no build isolation (the installed setuptools builds it).
        const r = sh(
          [py, "-m", "pip", "install", "--no-index", "--no-deps", "--no-build-isolation", "--target", target, join(work, "python")],
          { PIP_DISABLE_PIP_VERSION_CHECK: "1", PIP_NO_CACHE_DIR: "1", PIP_ROOT_USER_ACTION: "ignore" },
        );
        console.log(`python.test: pip install ./python took ${Math.round(performance.now() - t0)} ms`);
        if (!r.ok || !r.out.includes("Successfully installed exm-0.1.0")) throw new Error(`pip install failed:\n${r.out}`);
        expect(existsSync(join(target, "exm", "__init__.py"))).toBe(true);
        expect(existsSync(join(target, "exm", "py.typed"))).toBe(true);
        const i = await run([EXM, py, "-c", "import exm; print('file=' + exm.__file__); print('version=' + exm.version())"], {
          env: { PYTHONPATH: target },
        });
        assertOk(i, "version=", "installed package under exm");
        expect(kv(i.stdout).file).toBe(join(target, "exm", "__init__.py"));
        expect(kv(i.stdout).version).toBe(/libexm (\d+\.\d+\.\d+)/.exec(sh([EXM, "--version"]).out)?.[1] ?? "?");
      } finally {
        rmSync(work, { recursive: true, force: true });
      }
    },
    300_000,
  );

  test("the ctypes table mirrors exm.h: functions in order, enums, struct layouts, version", async () => {
    const c = kv(spawnSync([compileC(join(ROOT, "tests", "fixtures", "bun", "layout.c"))]).stdout.toString());
    const r = await run([PY!, fixture("layout.py")], { env: SOURCE_ENV });
    assertOk(r, "functions=", "layout.py");
    const py = kv(r.stdout);
    expect(Object.keys(c).length).toBeGreaterThan(20);
    for (const [k, v] of Object.entries(c)) expect({ k, v: py[k] }).toEqual({ k, v });
    const header = readFileSync(join(ROOT, "native", "exm.h"), "utf8");
    const declared = [...header.matchAll(/^[a-z][^(\n]*?\b(exm_\w+)\(/gm)].map((m) => m[1]!);
    expect(py.functions!.split(",")).toEqual(declared);
  });

  for (const { py, label } of NUMPY_PYS.length ? NUMPY_PYS : [{ py: "", label: "no numpy" }])
  test.skipIf(!py)(`every function, called under exm (${label})`, async () => {
    const dir1 = freshDir();
    const dir2 = freshDir();
    try {
      const r = await exmPython(py, ["--threshold", "64M", "--dir", dir1], fixture("api.py"), [dir1, dir2]);
      assertOk(r, "done", "api.py under exm");
      const v = kv(r.stdout);
      expect(r.stderr).toBe("");
      expect(v).toMatchObject({
        available: "True",
        version: /libexm (\d+\.\d+\.\d+)/.exec(sh([EXM, "--version"]).out)?.[1] ?? "?",
        // data directory: from --dir, set, a missing one refused, relative made absolute, restored
        dir: dir1,
        dir_old: dir1,
        dir_new: dir2,
        dir_after_err: dir2,
        dir_relative: dir1,
        dir_restored: dir2,
        // the sizes of the command line
        size_4096: "4096",
        size_512K: String(512 * 1024),
        size_64M: String(64 * MiB),
        size_1_5GiB: String(1.5 * GiB),
        size_2g: String(2 * GiB),
        size_8_MB: String(8 * MiB),
        size_16m: String(16 * MiB),
        size__5K: "512",
        size_3kb: "3072",
        size_7E: (7n << 60n).toString(),
        // threshold: from --threshold, strings, ints, floats, inf, with-blocks
        threshold: String(64 * MiB),
        threshold_old: String(64 * MiB),
        threshold_1G: String(GiB),
        threshold_6G: String(6 * GiB),
        threshold_float: "1000000000",
        threshold_inf: ((1n << 64n) - 1n).toString(),
        threshold_inf_fb: "False",
        threshold_inf_budget: "0",
        threshold_auto_old: ((1n << 64n) - 1n).toString(),
        threshold_auto: "auto",
        threshold_auto_inside: String(MiB),
        threshold_auto_after_with: "auto",
        threshold_auto_err: "ValueError: exm.set_threshold: 18446744073709551614 is reserved for 'auto'; say 'auto'",
        threshold_with: String(MiB),
        threshold_inside: String(MiB),
        threshold_after_with: String(64 * MiB),
        threshold_setting: `<exm.Setting threshold=${MiB} (was ${64 * MiB})>`,
        threshold_kept: String(MiB),
        // child mode: set, with-blocks (nested, left by an exception), case-insensitive
        child: "cow",
        child_old: "cow",
        child_shared: "shared",
        child_with: "duplicate",
        child_inside: "duplicate",
        child_nested: "cow",
        child_nested_after: "duplicate",
        child_after_with: "shared",
        child_after_raise: "shared",
        child_upper: "shared",
        child_cow: "cow",
        // advice policy and disk cap
        advice: "auto",
        advice_old: "auto",
        advice_random: "random",
        advice_inside: "sequential",
        advice_after_with: "random",
        max_disk: "0",
        max_disk_old: "0",
        max_disk_100G: String(100 * GiB),
        // buffers: file-backed zeros in dir2, written data read back through the file, freed
        buffer_type: "memoryview",
        buffer_len: String(MiB),
        buffer_format: "B",
        buffer_readonly: "False",
        buffer_zeros: "True",
        buffer_file_backed: "True",
        buffer_lookup_size: String(MiB - 10),
        buffer_lookup_delta: "10",
        buffer_path_in_dir2: "True",
        buffer_fd_matches: "True",
        buffer_from_file: "exm!",
        buffer_slice_keeps_block: "True",
        buffer_freed: "True",
        buffer_frees: "1",
        buffer_empty_len: "0",
        buffer_empty_block: "4096",
        // objects in ordinary memory
        bytearray_file_backed: "False",
        bytearray_lookup: "None",
        bytes_lookup: "None",
        mmap_file_backed: "False",
        advise_ordinary: "False",
        advise_warning: "RuntimeWarning",
        // statistics, check, docstrings
        stats_fields:
          "live_bytes,peak_live_bytes,live_blocks,total_allocs,total_frees,disk_reserved," +
          "peak_disk_reserved,bytes_punched,arena_size,fallbacks,failures,forks,alloc_ns,ram_budget_bytes",
        stats_all_int: "True",
        stats_allocs: "True",
        check: "None",
        help_documented: "True",
        // numpy arrays: file-backed zeros, slices and columns looked up, read back through the file
        zeros_dtype: "float64",
        zeros_shape: `(${2 ** 24},)`,
        zeros_sum: "0.0",
        zeros_writeable: "True",
        zeros_file_backed: "True",
        lookup_size: String(128 * MiB),
        lookup_block_size_ok: "True",
        slice_size: "8000",
        slice_delta: "8000",
        slice_block_same: "True",
        slice_from_file: "42.5",
        slice_target_in_dir2: "True",
        fortran: "True",
        column_delta: String(5 * 100 * 4),
        column_size: "400",
        reversed_file_backed: "True",
        datetime_file_backed: "True",
        structured_shape: "(3, 2)",
        empty_zero: "(0, 4)",
        empty_small_block: "4096",
        // advice reaches the mapping (VmFlags rr / sr)
        advise_random: "True",
        advise_random_vmflags: "True",
        advise_sequential: "True",
        advise_sequential_vmflags: "True",
        advise_normal: "True",
        advise_normal_vmflags: "True",
        advise_auto: "True",
        zeros_advice_vmflags: "True",
        // numpy's own arrays follow the threshold, exm.zeros does not
        numpy_big_file_backed: "True",
        numpy_small_file_backed: "False",
        numpy_small_under_1M: "True",
        numpy_big_under_inf: "False",
        zeros_under_inf: "True",
        // 2 GiB of zeros cost no RAM
        zeros_2G_ends: "0.0",
        zeros_2G_rss_growth_below_16M: "True",
        zeros_2G_disk_reserved: "True",
        // freed with the last view
        view_keeps_block: "True",
        view_value: "0.0",
        array_freed: "True",
        // the disk cap as a MemoryError naming the directory
        cap_error: "ExmMemoryError",
        cap_reason: "cap",
        cap_dir: dir2,
        cap_bytes: String(128 * MiB),
        after_cap: "0.0",
        stats_live_at_least: "True",
        stats_frees_grew: "True",
        check_end: "None",
      });
      for (const text of ["1.5", "5iB", "-1", "", "1X", "8E", "M"])
        expect({ text, error: (v[`size_err_${text.replace(/\W/g, "_")}`] ?? "").split(":")[0] }).toEqual({ text, error: "ValueError" });
      expect(v.threshold_err__1).toStartWith("ValueError: exm.set_threshold: size must not be negative");
      expect(v.threshold_err__lots_).toStartWith("ValueError: exm.set_threshold: 'lots' is not a size");
      expect(v.threshold_err_1_5).toStartWith("ValueError: exm.set_threshold: not a whole number");
      expect(v.threshold_err__1_).toStartWith("TypeError: ");
      expect(v.threshold_err_True).toStartWith("TypeError: ");
      expect(v.dir_err).toStartWith(`FileNotFoundError: [Errno 2] exm: cannot use ${dir2}/missing as the data directory`);
      expect(v.dir_err_type).toStartWith("TypeError: ");
      expect(v.child_err).toBe("ValueError: exm.set_child_mode: 'sometimes' is not one of cow, shared, duplicate");
      expect(v.child_err_type).toStartWith("TypeError: ");
      expect(v.advice_err).toStartWith("ValueError: exm.set_advice: 'often' is not one of auto");
      expect(v.advise_err).toStartWith("ValueError: exm.advise: 'sideways'");
      expect(v.max_disk_err).toStartWith("ValueError: ");
      expect(v.buffer_err_neg).toStartWith("ValueError: ");
      expect(v.buffer_err_str).toStartWith("ValueError: exm.buffer: 'huge' is not a size");
      expect(v.buffer_err_type).toStartWith("TypeError: ");
      expect(v.lookup_err).toStartWith("TypeError: exm.lookup: expected an object with the buffer protocol");
      expect(v.zeros_err_neg).toStartWith("ValueError: exm.zeros: negative dimensions");
      expect(v.zeros_err_order).toStartWith("ValueError: exm.zeros: order must be");
      expect(v.zeros_err_object).toStartWith("ValueError: exm.zeros: dtype object holds Python objects");
      expect(v.zeros_err_dtype).toStartWith("ValueError: exm.zeros: not a dtype");
      expect(v.zeros_err_shape).toStartWith("TypeError: ");
      expect(v.zeros_err_huge).toStartWith("ValueError: exm.zeros: ");
      expect(v.cap_message).toMatch(
        new RegExp(`^exm\\.zeros: cannot allocate 128 MiB of file-backed memory in ${re(dir2)}: it would pass the disk cap \\(max_disk 64 MiB; [\\d.]+ \\w+ reserved already\\)$`),
      );
      expect(Number(v.stats_failures)).toBeGreaterThanOrEqual(1);
      // Nothing was left in either data directory (the backing file is unlinked from birth).
      expect(readdirSync(dir1)).toEqual([]);
      expect(readdirSync(dir2)).toEqual([]);
    } finally {
      rmSync(dir1, { recursive: true, force: true });
      rmSync(dir2, { recursive: true, force: true });
    }
  });

  test("without numpy: buffer() and everything else work, zeros() says numpy is missing", async () => {
    const dir1 = freshDir();
    const dir2 = freshDir();
    try {
      // sys.modules["numpy"] = None makes `import numpy` fail as if it were not installed.
      const code = `import runpy, sys; sys.modules["numpy"] = None; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name="__main__")`;
      const r = await run([EXM, "--dir", dir1, PY!, "-c", code, fixture("api.py"), dir1, dir2], { env: SOURCE_ENV });
      assertOk(r, "done", "api.py without numpy");
      const v = kv(r.stdout);
      expect(v).toMatchObject({ numpy: "missing", buffer_from_file: "exm!", buffer_freed: "True", help_documented: "True" });
      expect(v.zeros_err).toBe(
        "ImportError: exm.zeros needs numpy (Debian/Ubuntu: apt-get install python3-numpy; or pip install numpy); " +
          "exm.buffer(nbytes) works without it",
      );
    } finally {
      rmSync(dir1, { recursive: true, force: true });
      rmSync(dir2, { recursive: true, force: true });
    }
  });

  const PY39 = python39();
  test.skipIf(skipUnless(PY39 ? null : "no Python 3.9 (python3.9 on PATH or in pyenv)", "Python 3.9 test"))(
    "on Python 3.9, the oldest supported",
    async () => {
      const dir1 = freshDir();
      const dir2 = freshDir();
      try {
        const r = await exmPython(PY39!, ["--dir", dir1], fixture("api.py"), [dir1, dir2]);
        assertOk(r, "done", "api.py on Python 3.9");
        expect(kv(r.stdout)).toMatchObject({ available: "True", buffer_from_file: "exm!", child_after_raise: "shared", check: "None" });
      } finally {
        rmSync(dir1, { recursive: true, force: true });
        rmSync(dir2, { recursive: true, force: true });
      }
    },
  );

  test("not under exm: import works, available() is False, every other function says how to start Python", async () => {
    const r = await run([PY!, fixture("not_exm.py")], { env: SOURCE_ENV });
    assertOk(r, "done", "not_exm.py without exm");
    const v = kv(r.stdout);
    expect(v.available).toBe("False");
    const fns = Object.keys(v).filter((k) => k !== "available");
    expect(fns.length).toBe(19);
    for (const fn of fns) expect({ fn, message: v[fn] }).toEqual({ fn, message: NOT_UNDER_EXM });
    // help(exm) reads without exm too.
    const h = await run([PY!, "-c", "import exm, pydoc; print(pydoc.render_doc(exm, renderer=pydoc.plaintext))"], { env: SOURCE_ENV });
    assertOk(h, "FUNCTIONS", "pydoc of exm");
    for (const name of ["zeros(shape", "lookup(obj", "child_mode(mode", "class Stats", "class BlockInfo", "Start Python under exm"])
      expect({ name, found: h.stdout.includes(name) }).toEqual({ name, found: true });
  });

  test("libexm preloaded by hand (LD_PRELOAD, no launcher) is used, and never a second copy", async () => {
    const code =
      "import exm; v = exm.version(); b = exm.buffer(10); " +
      "maps = {l.split()[-1] for l in open('/proc/self/maps') if 'libexm' in l}; " +
      "print('available=%s version=%s copies=%d' % (exm.available(), v, len(maps)))";
    const byHand = await run([PY!, "-c", code], { env: { ...SOURCE_ENV, LD_PRELOAD: LIB } });
    assertOk(byHand, "available=True", "python with LD_PRELOAD");
    expect(kv(byHand.stdout).copies).toBe("1");
    const launched = await run([EXM, PY!, "-c", code], { env: SOURCE_ENV });
    assertOk(launched, "available=True", "python under exm");
    expect(kv(launched.stdout).copies).toBe("1");
  });

  test("a package speaking another libexm version refuses, saying so", async () => {
    const other = mkdtempSync(join(tmpdir(), "exm-pyother-"));
    try {
      cpSync(join(ROOT, "python", "exm"), join(other, "exm"), { recursive: true, filter: (s) => !s.endsWith("__pycache__") });
      const ffi = join(other, "exm", "_ffi.py");
      writeFileSync(ffi, readFileSync(ffi, "utf8").replace(/HEADER_VERSION = "[^"]+"/, 'HEADER_VERSION = "0.99.0"'));
      const code = "import exm\ntry:\n    exm.threshold()\nexcept RuntimeError as e:\n    print('error=%s' % e)\nprint('available=%s' % exm.available())";
      const r = await run([EXM, PY!, "-c", code], { env: { PYTHONPATH: other, PYTHONDONTWRITEBYTECODE: "1" } });
      assertOk(r, "available=False", "mismatched package under exm");
      expect(kv(r.stdout).error).toMatch(/libexm in this process is version 0\.1\.\d+, but this exm package speaks 0\.99\.0/);
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  test.skipIf(skipUnless(tmpfsAvailable(), "Python MemoryError on a full disk"))(
    "a full data directory: ExmMemoryError naming it and the reason, then smaller arrays still work",
    async () => {
      await withTmpfs(8 * MiB, async (dir) => {
        const code =
          "import exm\ntry:\n    exm.buffer('16M')\nexcept MemoryError as e:\n" +
          "    print('type=%s' % type(e).__name__); print('reason=%s' % e.reason); print('message=%s' % e)\n" +
          "print('after=%d' % len(exm.buffer('1M')))";
        const r = await run([EXM, "--dir", dir, PY!, "-c", code], { env: SOURCE_ENV });
        assertOk(r, "after=", "python on a full tmpfs");
        const v = kv(r.stdout);
        expect(v).toMatchObject({ type: "ExmMemoryError", reason: "disk full", after: String(MiB) });
        expect(v.message).toMatch(new RegExp(`^exm\\.buffer: cannot allocate 16 MiB of file-backed memory in ${re(dir)}: the disk is full \\(only [\\d.]+ \\w+ free\\)$`));
      });
    },
  );

  const noCgroup = skipUnless(cgroupAvailable(), "Python 2 GiB array under a 512 MiB cgroup");
  test.skipIf(noCgroup || NO_NUMPY)(
    "exm.zeros((2**28,)) (2 GiB) filled and summed under a 512 MiB cgroup; numpy.zeros of the same size is OOM-killed",
    async () => {
      // --threshold 4G: numpy's own 2 GiB goes to glibc; exm.zeros is file-backed whatever the threshold.
      await withDataDir(async (dir) => {
        const r = await runInCgroup(512 * MiB, [EXM, "--threshold", "4G", "--dir", dir, PY!, fixture("ooc.py"), "exm"], {
          env: SOURCE_ENV,
          timeoutMs: 300_000,
        });
        assertOk(r, "sum=", "exm.zeros under 512 MiB");
        assertRun(!r.oomKilled, r, "OOM kill under exm");
        expect(kv(r.stdout)).toMatchObject({ file_backed: "True", n: String(2 ** 28), sum: String(2 ** 29), disk_reserved: String(2 * GiB) });
        console.log(`python.test: exm.zeros 2 GiB fill+sum in a 512 MiB cgroup: ${Math.round(r.ms)} ms`);
        const plain = await runInCgroup(512 * MiB, [EXM, "--threshold", "4G", "--dir", dir, PY!, fixture("ooc.py"), "numpy"], {
          env: SOURCE_ENV,
          timeoutMs: 300_000,
        });
        assertRun(plain.oomKilled && plain.stdout.includes("file_backed=False") && !plain.stdout.includes("sum="), plain, "numpy.zeros should be OOM-killed");
      });
    },
    600_000,
  );

  test.skipIf(NO_NUMPY)("multiprocessing (fork) in each child mode: what a worker sees, what the parent sees after", async () => {
    await withDataDir(async (dir) => {
      const r = await exmPython(PY!, ["--dir", dir], fixture("fork.py"));
      assertOk(r, "done", "fork.py under exm");
      const cases: Record<string, Record<string, string>> = {};
      for (const line of r.stdout.split("\n")) if (line.startsWith("case=")) cases[kv(line).case!] = kv(line);
      // Every worker: the parent's mode, its array readable and file-backed, an arena of its own.
      const all = { worker_a0: "7.0", worker_fb: "True", worker_own_fb: "True", worker_own_file: "other", worker_check: "True", mode_after: "cow" };
      const expected: Record<string, object> = {
        // its write (a[1] = 42) stays its own; it reads the parent's file
        cow: { ...all, worker_mode: "cow", worker_file: "parent", parent_a1: "0.0" },
        // its write reaches the parent, and it sees the parent's write after the fork (a[2] = 5)
        shared: { ...all, worker_mode: "shared", worker_file: "parent", worker_a2: "5.0", parent_a1: "42.0" },
        // a copy as of the fork, in a file of its own
        duplicate: { ...all, worker_mode: "duplicate", worker_file: "other", worker_a2: "0.0", parent_a1: "0.0" },
      };
      for (const [mode, want] of Object.entries(expected)) {
        if (!cases[mode]) throw new Error(`fork.py printed no case ${mode}\n${explain(r)}`);
        expect({ mode, ...cases[mode] }).toMatchObject({ mode, ...want });
      }
      expect(kv(r.stdout)).toMatchObject({ forks: "3", check: "True" });
    });
  });

  test.skipIf(NO_NUMPY)("the README's Python example runs (at 256 MiB)", async () => {
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    const at = readme.indexOf("\n## Python\n");
    if (at < 0) throw new Error("README.md has no '## Python' section");
    const m = /```python\n([\s\S]*?)```/.exec(readme.slice(at));
    if (!m) throw new Error("README.md: no ```python example in the Python section");
    const SIZE_LINE = /^n = 2\*\*28 /m;
    if (!SIZE_LINE.test(m[1]!)) throw new Error("README example: no `n = 2**28` line to scale down");
    const script = join(tmpdir(), `exm-readme-${process.pid}.py`);
    writeFileSync(script, m[1]!.replace(SIZE_LINE, "n = 2**25 "));
    try {
      await withDataDir(async (dir) => {
        const r = await exmPython(PY!, ["--dir", dir], script);
        assertOk(r, "MiB of disk reserved", "README example");
        expect(r.stdout).toMatch(/^256 MiB at offset 0 of \/proc\/self\/fd\/\d+$/m);
        const sums = /^sum (\S+) in parts, (\S+) in one$/m.exec(r.stdout);
        assertRun(!!sums && sums[1] === sums[2] && Number(sums[1]) > 0, r, "the parts should add up to the whole");
      });
    } finally {
      rmSync(script, { force: true });
    }
  });
});
