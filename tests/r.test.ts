/**
 * The exm R package (issue 8), rpkg/: installed into a temporary library and
 * driven from Rscript under the exm launcher (dist/exm).
 *
 * R comes from Debian's r-base-core. When Rscript is missing, this file
 * installs it with apt-get (as root), and skips with the reason where it
 * cannot. The package is built from a copy of rpkg/ laid out as in the
 * repository (so its configure takes native/exm.h, as `R CMD INSTALL rpkg`
 * does), once more outside it (configure then takes the header from the exm
 * launcher on PATH), and once with neither, where the install must stop.
 */
import { afterAll, beforeAll, describe, expect, test, setDefaultTimeout } from "bun:test";
import { spawnSync } from "bun";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { GiB, MiB, assertOk, assertRun, withDataDir } from "./support/native";
import { which } from "./support/programs";
import {
  EXM,
  LIB,
  ROOT,
  aptInstall,
  cgroupAvailable,
  cleanEnv,
  explain,
  freshDir,
  kv,
  run,
  runInCgroup,
  sh,
  skipUnless,
} from "./support/sys";

setDefaultTimeout(120_000);

const FIXTURES = join(ROOT, "tests", "fixtures", "r");
const NOT_UNDER_EXM =
  "this R session was not started under exm: run it as `exm R` or `exm Rscript ...`";

/**
 * null when Rscript runs (installing r-base-core first if needed and
 * possible), else why the R tests cannot run.
 */
function ensureR(): string | null {
  if (which("Rscript") && sh(["Rscript", "--version"]).ok) return null;
  const why = aptInstall(["r-base-core"], "r.test");
  if (why) return `R is not installed, and ${why}`;
  if (!sh(["Rscript", "--version"]).ok) return "r-base-core installed but Rscript does not run";
  return null;
}

const R_MISSING = skipUnless(ensureR(), "R package tests");
const EXM_MISSING = skipUnless(existsSync(EXM) ? null : `${EXM} is not built`, "R package tests");
const SKIP = R_MISSING || EXM_MISSING;
const CC_MISSING =
  !SKIP && skipUnless(which("gcc") || which("cc") ? null : "no C compiler", "R package install");

/* ---- The package, installed once into a temporary library ---------------------------- */

let work = "";
let lib = "";
let installLog = "";

/**
 * Lays out rpkg/ in dir as in a clone (without what a build leaves in it, the
 * header configure puts into src/ included), with `header` as dir/native/exm.h
 * when given, and runs R CMD INSTALL there into dir/lib, with `env` over the
 * test environment (PATH decides whether configure finds an exm launcher).
 */
function installPackage(dir: string, header: string | null, env: Record<string, string> = {}) {
  const into = join(dir, "lib");
  mkdirSync(into, { recursive: true });
  if (header !== null) {
    mkdirSync(join(dir, "native"), { recursive: true });
    writeFileSync(join(dir, "native", "exm.h"), header);
  }
  const built = join(ROOT, "rpkg", "src", "exm.h");
  cpSync(join(ROOT, "rpkg"), join(dir, "rpkg"), {
    recursive: true,
    filter: (src) => !/\.(o|so)$/.test(src) && src !== built,
  });
  const r = spawnSync(["R", "CMD", "INSTALL", "--no-test-load", "-l", into, "rpkg"], {
    cwd: dir,
    env: cleanEnv(env),
    stdout: "pipe",
    stderr: "pipe",
  });
  return { ok: r.exitCode === 0, log: r.stdout.toString() + r.stderr.toString(), lib: into };
}

/** PATH without any directory that holds an `exm`, so that configure finds no launcher. */
function pathWithoutExm(): string {
  return (process.env.PATH ?? "/usr/bin:/bin")
    .split(":")
    .filter((d) => d && !existsSync(join(d, "exm")))
    .join(":");
}

const NATIVE_HEADER = readFileSync(join(ROOT, "native", "exm.h"), "utf8");

beforeAll(() => {
  if (SKIP || CC_MISSING) return;
  work = mkdtempSync(join(tmpdir(), "exm-rpkg-"));
  const t0 = performance.now();
  const r = installPackage(work, NATIVE_HEADER);
  installLog = r.log;
  lib = r.lib;
  if (!r.ok) throw new Error(`R CMD INSTALL rpkg failed:\n${installLog}`);
  console.log(`r.test: R CMD INSTALL rpkg took ${Math.round(performance.now() - t0)} ms`);
}, 300_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** Runs an R script of tests/fixtures/r under exm with the given launcher options. */
function exmRscript(opts: string[], script: string, args: string[], timeoutMs = 120_000) {
  return run([EXM, ...opts, "Rscript", "--vanilla", join(FIXTURES, script), lib, ...args], {
    timeoutMs,
  });
}

/**
 * What tests/fixtures/r/api.R prints, key by key, run under
 * `exm --threshold 64M --dir dir1` with dir2 as its second directory: every
 * function of the package, its refusals aside (the test checks those).
 */
function apiExpected(dir1: string, dir2: string, libVersion: string): Record<string, string> {
  return {
    available: "TRUE",
    version: libVersion,
    // threshold: from --threshold, number, size string, > 2^31, Inf, refused values
    threshold: String(64 * MiB),
    threshold_old: String(64 * MiB),
    threshold_1G: String(GiB),
    threshold_visible: "FALSE",
    threshold_6G: String(6 * GiB),
    threshold_1_5G: String(1.5 * GiB),
    threshold_inf: "Inf",
    threshold_inf_fb: "FALSE",
    threshold_inf_budget: "0",
    threshold_auto_old: "Inf",
    threshold_auto: "auto",
    // data path: from --dir, set, a missing directory refused
    dir: dir1,
    dir_old: dir1,
    dir_new: dir2,
    dir_after_err: dir2,
    // lookup: data of a 128 MiB vector read back through the backing file
    x_file_backed: "TRUE",
    x_is_file_backed: "TRUE",
    x_size: String(128 * MiB),
    x_offset_ok: "TRUE",
    x_target_in_dir2: "TRUE",
    x_from_file: "42,43",
    small_file_backed: "FALSE",
    small_is_file_backed: "FALSE",
    small_size: "24",
    small_path: "NA",
    altrep_file_backed: "FALSE",
    altrep_allocs_same: "TRUE",
    lookup_list: "TRUE",
    // advice
    advise_normal: "TRUE",
    advise_random: "TRUE",
    advise_sequential: "TRUE",
    advice: "auto",
    advice_old: "auto",
    advice_new: "random",
    // disk cap
    max_disk: "0",
    max_disk_100G: String(100 * GiB),
    // child mode
    child: "copy on write",
    child_old: "copy on write",
    child_shared: "shared",
    child_duplicate: "duplicate",
    child_cow: "copy on write",
    child_exm_shared: "shared",
    child_exm_duplicate: "duplicate",
    child_exm_cow: "copy on write",
    child_in_expr: "shared",
    child_after_expr: "copy on write",
    // file-backed vectors whatever the threshold, also of more than 2^31 elements
    vector_file_backed: "TRUE",
    vector_type: "integer",
    vector_length: "1000",
    vector_sum: "0",
    vector_sum_filled: "500500",
    vector_numeric: "double",
    big_length: String(2 ** 31 + 10),
    big_size: String(2 ** 31 + 10),
    big_file_backed: "TRUE",
    big_last: "00",
    // statistics
    stats_names:
      "live_bytes,peak_live_bytes,live_blocks,total_allocs,total_frees,disk_reserved," +
      "peak_disk_reserved,bytes_punched,arena_size,fallbacks,failures,forks,alloc_ns,ram_budget_bytes",
    stats_all_double: "TRUE",
    stats_live_at_least_x: "TRUE",
    stats_allocs_grew: "TRUE",
    stats_frees_grew: "TRUE",
    stats_live_back: "TRUE",
    check: "TRUE",
  };
}

/* ---- Tests -------------------------------------------------------------------------------- */

describe.skipIf(SKIP || CC_MISSING)("the exm R package", () => {
  test("R CMD INSTALL built it without linking libexm", () => {
    expect(installLog).toContain("DONE (exm)");
    const so = join(lib, "exm", "libs", "exm.so");
    expect(existsSync(so)).toBe(true);
    if (which("readelf")) {
      const d = sh(["readelf", "-d", so]);
      expect(d.ok).toBe(true);
      expect(d.out).not.toContain("libexm");
    }
    // Every exported function has a help page.
    const r = sh([
      "Rscript",
      "--vanilla",
      "-e",
      `lib <- "${lib}"; fns <- getNamespaceExports(loadNamespace("exm", lib.loc = lib));
       db <- tools::Rd_db("exm", lib.loc = lib);
       tag <- function(e) attr(e, "Rd_tag");
       aliases <- unlist(lapply(db, function(rd) lapply(rd[vapply(rd, tag, "") == "\\\\alias"], as.character)));
       cat("missing=", paste(setdiff(fns, aliases), collapse = ","), "\\n", sep = "")`,
    ]);
    expect(r.out).toContain("missing=\n");
  });

  test("outside the repository, configure takes exm.h from the exm launcher on PATH (exm --extract)", async () => {
    const dir = join(work, "outside");
    const r = installPackage(dir, null, { PATH: `${dirname(EXM)}:${pathWithoutExm()}` });
    if (!r.ok) throw new Error(`R CMD INSTALL rpkg outside the repository failed:\n${r.log}`);
    expect(r.log).toContain(`configure: exm: exm.h from ${EXM} --extract`);
    const v = await run(
      [EXM, "Rscript", "--vanilla", "-e", `library(exm, lib.loc = "${r.lib}"); cat("available=", exm_available(), "\\n", sep = "")`],
      { timeoutMs: 60_000 },
    );
    assertOk(v, "available=TRUE", "the package built from exm --extract's header, under exm");
  });

  test("with neither native/exm.h nor an exm launcher, the install stops saying so", () => {
    const r = installPackage(join(work, "nowhere"), null, { PATH: pathWithoutExm() });
    expect(r.ok).toBe(false);
    expect(r.log).toContain(
      "configure: exm: error: no exm.h: install from the exm repository (R CMD INSTALL rpkg), or put the exm command on PATH",
    );
  });

  const noCgroup = skipUnless(cgroupAvailable(), "R 2 GiB vector under a 512 MiB cgroup");
  test.skipIf(noCgroup)(
    "a 2 GiB numeric vector under a 512 MiB cgroup: summed under exm, killed without",
    async () => {
      // 2^28 doubles = 2 GiB, the values 1..8 repeated: the sum is 2^25 * 36.
      const expr =
        "n <- 2^28; x <- rep_len(as.double(1:8), n); s <- sum(x); " +
        'cat(sprintf("length=%.0f sum=%.0f\\n", length(x), s))';
      await withDataDir(async (dir) => {
        const r = await runInCgroup(
          512 * MiB,
          [EXM, "--threshold", "64M", "--dir", dir, "Rscript", "--vanilla", "-e", expr],
          { timeoutMs: 300_000 },
        );
        assertOk(r, "sum=", "exm Rscript under 512 MiB");
        assertRun(!r.oomKilled, r, "OOM kill under exm");
        expect(kv(r.stdout)).toMatchObject({ length: String(2 ** 28), sum: String(2 ** 25 * 36) });
        console.log(`r.test: 2 GiB sum under exm in a 512 MiB cgroup: ${Math.round(r.ms)} ms`);
      });
      const plain = await runInCgroup(512 * MiB, ["Rscript", "--vanilla", "-e", expr], {
        timeoutMs: 300_000,
      });
      assertRun(plain.oomKilled && !plain.stdout.includes("sum="), plain, "Rscript without exm should be OOM-killed");
    },
    600_000,
  );

  test("every function, called under exm", async () => {
    const dir1 = freshDir();
    const dir2 = freshDir();
    try {
      const r = await exmRscript(["--threshold", "64M", "--dir", dir1], "api.R", [dir1, dir2]);
      assertOk(r, "done", "api.R under exm");
      const v = kv(r.stdout);
      const libVersion = /libexm (\d+\.\d+\.\d+)/.exec(sh([EXM, "--version"]).out)?.[1];
      expect(v).toMatchObject(apiExpected(dir1, dir2, libVersion ?? "?"));
      expect(v.threshold_err_neg).toContain("must be a whole number of bytes");
      expect(v.threshold_err_str).toContain("cannot read 'lots' as a size");
      expect(v.dir_err).toContain("no such directory");
      expect(v.lookup_err_fun).toContain("must be a vector");
      expect(v.advise_small).toContain("warning: x is not file-backed");
      expect(v.advise_err).toContain("advice must be one of");
      expect(v.child_err).toContain("unknown child mode 'sometimes'");
      expect(Number(v.stats_live_blocks)).toBeGreaterThanOrEqual(2);
    } finally {
      rmSync(dir1, { recursive: true, force: true });
      rmSync(dir2, { recursive: true, force: true });
    }
  });

  test("an mclapply worker sees the child mode set by exm_cow/exm_shared/exm_duplicate/exm_child_mode", async () => {
    await withDataDir(async (dir) => {
      // Started in shared mode, so that exm_cow() visibly changes something.
      const r = await exmRscript(["--child", "shared", "--threshold", "64M", "--dir", dir], "fork.R", []);
      assertOk(r, "done", "fork.R under exm");
      const cases: Record<string, Record<string, string>> = {};
      for (const line of r.stdout.split("\n")) {
        if (!line.startsWith("case=")) continue;
        const kvs = kv(line);
        cases[kvs.case!] = kvs;
      }
      // What the worker saw and did: it wrote x[1] <- 42 into the vector it inherited.
      const cow = { worker_mode: "copy_on_write", worker_x1: "42", parent_x1: "0", parent_file_mapped: "TRUE", worker_fb: "TRUE" };
      const shared = { worker_mode: "shared", worker_x1: "42", parent_x1: "42", parent_file_mapped: "TRUE", worker_fb: "TRUE" };
      // duplicate: the worker's x is in a file of its own
      const duplicate = {
        worker_mode: "duplicate",
        worker_x1: "42",
        parent_x1: "0",
        parent_file_mapped: "FALSE",
        lookup_file: "own",
        worker_fb: "TRUE",
      };
      const expected: Record<string, object> = {
        initial: { mode: "shared", ...shared },
        exm_cow: { mode: "copy_on_write", ...cow },
        set_shared: { mode: "shared", ...shared },
        set_duplicate: { mode: "duplicate", ...duplicate },
        set_copy_on_write: { mode: "copy_on_write", ...cow },
        exm_duplicate: { mode: "duplicate", ...duplicate },
        exm_shared: { mode: "shared", ...shared },
        // with an expression the mode applies while it runs, then the previous one is back
        expr_shared: { mode: "copy_on_write", ...shared },
        expr_duplicate: { mode: "copy_on_write", ...duplicate },
      };
      for (const [name, want] of Object.entries(expected)) {
        if (!cases[name]) throw new Error(`fork.R printed no case ${name}\n${explain(r)}`);
        expect({ case: name, ...cases[name] }).toMatchObject({ case: name, ...want });
      }
    });
  });

  test("not under exm: exm_available() is FALSE and every other function says how to start R", async () => {
    const r = await run(["Rscript", "--vanilla", join(FIXTURES, "not_exm.R"), lib], { timeoutMs: 60_000 });
    assertOk(r, "done", "not_exm.R without exm");
    const v = kv(r.stdout);
    expect(v.available).toBe("FALSE");
    const fns = Object.keys(v).filter((k) => k.startsWith("exm_"));
    expect(fns.length).toBeGreaterThanOrEqual(16);
    for (const fn of fns) expect({ fn, message: v[fn] }).toEqual({ fn, message: NOT_UNDER_EXM });
  });

  test("a package built for another libexm version refuses, saying so", async () => {
    // The same package built against a native/exm.h claiming version 0.99.0, in a library of its own.
    const other = installPackage(
      join(work, "other"),
      NATIVE_HEADER.replace(/#define EXM_VERSION_MINOR \d+/, "#define EXM_VERSION_MINOR 99"),
    );
    if (!other.ok) throw new Error(`R CMD INSTALL rpkg (version 0.99) failed:\n${other.log}`);
    const r = await run(
      [
        EXM,
        "Rscript",
        "--vanilla",
        "-e",
        `library(exm, lib.loc = "${other.lib}"); cat("available=", exm_available(), "\\n", sep = "");
         cat("error=", tryCatch(exm_threshold(), error = function(e) conditionMessage(e)), "\\n", sep = "")`,
      ],
      { timeoutMs: 60_000 },
    );
    assertOk(r, "available=FALSE", "mismatched package under exm");
    expect(kv(r.stdout).error).toMatch(/does not match the one the exm R package was built for \(0\.99\.\d+\)/);
  });

  test("a session with libexm preloaded by hand (LD_PRELOAD, no launcher) can use it", async () => {
    const r = await run(
      ["Rscript", "--vanilla", "-e", `library(exm, lib.loc = "${lib}"); cat("available=", exm_available(), " version=", exm_version(), "\\n", sep = "")`],
      { env: { LD_PRELOAD: LIB }, timeoutMs: 60_000 },
    );
    assertOk(r, "available=TRUE", "Rscript with LD_PRELOAD");
  });
});
