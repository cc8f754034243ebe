/**
 * glibc's own malloc tests (malloc/tst-*.c of the glibc source that Debian's
 * `glibc-source` package ships as /usr/src/glibc/glibc-<version>.tar.xz),
 * built standalone against glibc's support/ test harness and run with
 * libexm preloaded.
 *
 * Nobody on exm wrote these tests: they say what glibc promises of the
 * public malloc API (NULL and errno for every size and alignment, fork
 * while threads allocate or use stdio, fork from a signal handler, thread
 * exit, mallinfo2...), and a preloaded allocator must keep those promises.
 *
 * Building: the needed parts of the tarball are unpacked into
 * build/glibc-tests/<key>/ (key: the tarball and this file), the few
 * support/ files the chosen tests link against are compiled with the system
 * gcc into libsupport.a, and each test is compiled as glibc's makefiles
 * would (its own .c including test-driver.c or test-skeleton.c). A handful
 * of internal glibc headers the tests include (libc-diag.h,
 * array_length.h, malloc-size.h...) are plain macros and are copied from
 * the same tarball. The only change to a test is a smaller iteration count
 * for the two fork-from-a-signal-handler tests (see ITERATIONS).
 *
 *   bun tests/glibc/harness.ts [LIB ...]   print the pass/fail table for
 *                                          each library (default build/libexm.so;
 *                                          "none" runs plain glibc)
 */
import { spawn, spawnSync } from "bun";
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";

const ROOT = join(import.meta.dir, "..", "..");
const SRC_DIR = "/usr/src/glibc";

/** The tests that exercise the public API, in the order glibc's makefile lists them. */
export const SELECTED = [
  "mallocbug", "tst-malloc", "tst-valloc", "tst-calloc", "tst-obstack", "tst-mallocfork", "tst-trim1",
  "tst-realloc", "tst-reallocarray", "tst-posix_memalign", "tst-pvalloc", "tst-pvalloc-fortify", "tst-memalign",
  "tst-mallopt", "tst-malloc-thread-exit", "tst-malloc-thread-fail", "tst-malloc-fork-deadlock", "tst-mallocfork2",
  "tst-mallocfork3", "tst-interpose-nothread", "tst-interpose-thread", "tst-free-errno", "tst-malloc-tcache-leak",
  "tst-malloc_info", "tst-mallinfo2", "tst-malloc-too-large", "tst-malloc-stats-cancellation", "tst-tcfree1",
  "tst-tcfree2", "tst-tcfree3", "tst-mallocalign1",
] as const;

/** The rest of malloc/'s tests, and why they are not run (the README lists the same). */
export const EXCLUDED: Record<string, string> = {
  "tst-malloc-check": "MALLOC_CHECK_ (glibc's debugging malloc, libc_malloc_debug.so, replaces the allocator under test)",
  "tst-malloc-usable": "run by glibc under MALLOC_CHECK_=3, and asserts its exact usable size (7 bytes asked, 7 usable)",
  "tst-malloc-usable-tunables": "GLIBC_TUNABLES",
  "tst-mxfast": "GLIBC_TUNABLES (glibc.malloc.mxfast)",
  "tst-malloc-backtrace": "overwrites the header of glibc's next chunk and expects glibc's corruption check to abort",
  "tst-safe-linking": "corrupts glibc's tcache and fastbin pointers and expects glibc's safe-linking checks",
  "tst-mtrace": "mtrace (libc_malloc_debug.so and the mtrace perl script)",
  "tst-mallocstate": "malloc_set_state/malloc_get_state, compatibility symbols removed in glibc 2.25 (link against GLIBC_2.2.5)",
  "tst-compathooks-off": "__malloc_hook and friends, compatibility symbols removed in glibc 2.34",
  "tst-compathooks-on": "__malloc_hook and friends, compatibility symbols removed in glibc 2.34",
  "tst-interpose-static-nothread": "statically linked: nothing can be preloaded",
  "tst-interpose-static-thread": "statically linked: nothing can be preloaded",
  "tst-alloc_buffer": "glibc-internal alloc_buffer (GLIBC_PRIVATE symbols)",
  "tst-scratch_buffer": "glibc-internal scratch_buffer (GLIBC_PRIVATE symbols)",
  "tst-dynarray": "glibc-internal dynarray",
  "tst-dynarray-fail": "glibc-internal dynarray",
  "tst-dynarray-at-fail": "glibc-internal dynarray",
};

/**
 * tst-mallocfork2 and tst-mallocfork3 fork from a SIGUSR1 handler while the
 * main flow mallocs, frees and forks, 10 000 times, synchronised with five
 * signal-sending processes through a barrier: about 50 s on plain glibc on
 * a busy 2-core machine, and the suite runs them six times. 1 000 still
 * lands dozens of signals inside fork, malloc and free (they print the
 * counts). In duplicate mode every fork (thousands: each signal forks)
 * copies the arena's live blocks, tens of MiB: there a second build with
 * DUP_ITERATIONS runs.
 */
const ITERATIONS: Record<string, number> = { "tst-mallocfork2": 1000, "tst-mallocfork3": 1000 };
const DUP_ITERATIONS = 150;

/**
 * glibc's test driver kills a test after TIMEOUT (20 s by default, 100 s for
 * tst-mallocfork2/3) times TIMEOUTFACTOR. Meant for a quiet machine: here
 * several tests run at once on a machine shared with other jobs, and
 * tst-malloc-too-large alone makes 50 000 failing mmap/brk calls (10 s on
 * plain glibc under load). A deadlock is still caught, later.
 */
const TIMEOUT_FACTOR = "5";

/** support/ objects the selected tests link against (found with -Wl,-Map). */
const SUPPORT = [
  "check", "oom_error", "support_paths", "support_record_failure", "support_shared_allocate",
  "support_test_compare_failure", "support_test_main", "support_test_verify_impl", "temp_file", "write_message",
  "xasprintf", "xcalloc", "xchdir", "xclose", "xfopen", "xfork", "xmalloc", "xmmap", "xmunmap", "xopen", "xpipe",
  "xpthread_barrier_destroy", "xpthread_barrier_init", "xpthread_barrier_wait", "xpthread_barrierattr_destroy",
  "xpthread_barrierattr_init", "xpthread_barrierattr_setpshared", "xpthread_check_return", "xpthread_create",
  "xpthread_join", "xpthread_kill", "xrealloc", "xsignal", "xstrdup", "xsysconf", "xwaitpid", "xwrite",
];

/** Internal headers the tests include: macros only, taken from the same tarball. */
const SHIM_HEADERS = [
  "include/libc-diag.h", "include/array_length.h", "include/intprops.h",
  "sysdeps/generic/malloc-size.h", "sysdeps/generic/malloc-alignment.h",
];

export interface GlibcTests {
  version: string;
  /** Directory holding one executable per selected test. */
  binDir: string;
  tests: string[];
  /** The tests whose code forks after it allocated: the ones a child mode can change. */
  forking: Set<string>;
}

function sh(argv: string[], env?: Record<string, string>): { ok: boolean; out: string } {
  try {
    const r = spawnSync(argv, { stdout: "pipe", stderr: "pipe", env: env ? { ...process.env, ...env } : undefined });
    return { ok: r.exitCode === 0, out: r.stdout.toString() + r.stderr.toString() };
  } catch (e) {
    return { ok: false, out: `${argv[0]}: ${(e as Error).message}` };
  }
}

function findTarball(): string | null {
  if (!existsSync(SRC_DIR)) return null;
  const t = readdirSync(SRC_DIR).filter((f) => /^glibc-[\d.]+\.tar\.xz$/.test(f)).sort();
  return t.length ? join(SRC_DIR, t[t.length - 1]!) : null;
}

/**
 * The glibc source tarball, installing Debian's glibc-source first when it
 * is missing (as root, with apt-get); a string saying why not otherwise.
 */
export function ensureSource(): { tarball: string } | string {
  let t = findTarball();
  if (t) return { tarball: t };
  if (process.platform !== "linux") return "glibc's tests need Linux";
  if (process.getuid?.() !== 0) return `no glibc source in ${SRC_DIR}, and installing glibc-source needs root`;
  if (!sh(["sh", "-c", "command -v apt-get"]).ok) return `no glibc source in ${SRC_DIR}, and no apt-get to install glibc-source`;
  console.warn("glibc tests: installing glibc-source with apt-get (once)");
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  const install = () => sh(["apt-get", "install", "-y", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=300", "glibc-source"], env);
  let r = install();
  if (!r.ok) {
    sh(["apt-get", "update", "-o", "DPkg::Lock::Timeout=300"], env);
    r = install();
  }
  t = findTarball();
  if (!t) return `apt-get install glibc-source did not give ${SRC_DIR}/glibc-*.tar.xz:\n${r.out.split("\n").slice(-6).join("\n")}`;
  return { tarball: t };
}

/** Runs up to `width` jobs at once; throws the joined messages of the failures. */
async function pool<T>(items: T[], width: number, job: (x: T) => Promise<void>): Promise<void> {
  const queue = [...items];
  const failures: string[] = [];
  await Promise.all(Array.from({ length: Math.min(width, queue.length) }, async () => {
    for (let x = queue.shift(); x !== undefined; x = queue.shift()) await job(x).catch((e: Error) => failures.push(e.message));
  }));
  if (failures.length) throw new Error(failures.join("\n"));
}

async function cc(argv: string[], what: string): Promise<void> {
  const p = spawn(["gcc", ...argv], { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`${what}: gcc ${argv.join(" ")}\n${out}${err}`);
}

/**
 * Builds (or finds built) the selected tests; a string says why they cannot
 * be had. A failed build throws: a test that does not compile is a defect
 * of this harness, not a reason to skip.
 */
export async function buildGlibcTests(): Promise<GlibcTests | string> {
  const src = ensureSource();
  if (typeof src === "string") return src;
  if (!sh(["sh", "-c", "command -v gcc && command -v xz && command -v tar"]).ok) return "gcc, xz and tar are needed to build glibc's tests";
  const st = statSync(src.tarball);
  const self = readFileSync(import.meta.path);
  const key = createHash("sha256").update(JSON.stringify([src.tarball, st.size, st.mtimeMs])).update(self).digest("hex").slice(0, 12);
  const top = basename(src.tarball).replace(/\.tar\.xz$/, "");
  const version = top.replace(/^glibc-/, "");
  const base = join(ROOT, "build", "glibc-tests");
  const dir = join(base, key);
  const binDir = join(dir, "bin");
  const forkingIn = (root: string) =>
    new Set(SELECTED.filter((t) => {
      const f = join(root, top, "malloc", /^tst-interpose-/.test(t) ? "tst-interpose-skeleton.c" : `${t}.c`);
      return /\b(x?fork|vfork)\s*\(/.test(readFileSync(f, "utf8"));
    }));
  if (existsSync(join(dir, "done"))) return { version, binDir, tests: [...SELECTED], forking: forkingIn(dir) };

  rmSync(base, { recursive: true, force: true });   // older keys: stale
  const work = `${dir}.tmp-${process.pid}`;
  mkdirSync(work, { recursive: true });
  const untar = sh(["tar", "-xJf", src.tarball, "-C", work, `${top}/malloc`, `${top}/support`, `${top}/test-skeleton.c`,
    ...SHIM_HEADERS.map((h) => `${top}/${h}`)]);
  if (!untar.ok) throw new Error(`unpacking ${src.tarball}: ${untar.out}`);
  const tree = join(work, top);
  const shim = join(work, "shim");
  mkdirSync(shim);
  for (const h of SHIM_HEADERS) cpSync(join(tree, h), join(shim, basename(h)));
  writeFileSync(join(shim, "config.h"), "/* glibc's configure output: nothing the support files here need */\n");
  const shorter: [string, string][] = [];    // [name of the build, its source]
  for (const [t, n] of Object.entries(ITERATIONS)) {
    const f = join(tree, "malloc", `${t}.c`);
    const text = readFileSync(f, "utf8");
    if (!/enum \{ iterations = \d+ \};/.test(text)) throw new Error(`${f}: no "enum { iterations = N };" to shorten`);
    writeFileSync(f, text.replace(/enum \{ iterations = \d+ \};/, `enum { iterations = ${n} };`));
    writeFileSync(join(tree, "malloc", `${t}-dup.c`), text.replace(/enum \{ iterations = \d+ \};/, `enum { iterations = ${DUP_ITERATIONS} };`));
    shorter.push([`${t}-dup`, join(tree, "malloc", `${t}-dup.c`)]);
  }

  // support/: as support/Makefile builds it, paths pointing nowhere (no test here uses them).
  const none = '"/nonexistent"';
  const paths = ["SRCDIR", "OBJDIR", "OBJDIR_ELF_LDSO", "INSTDIR", "LIBDIR", "BINDIR", "SBINDIR", "SLIBDIR", "ROOTSBINDIR", "COMPLOCALEDIR"]
    .map((p) => `-D${p}_PATH=${none}`);
  const common = ["-O2", "-g", "-std=gnu11", "-D_GNU_SOURCE", "-pthread", `-I${shim}`, `-I${tree}`];
  const objDir = join(work, "obj");
  mkdirSync(objDir);
  await pool(SUPPORT, 2, (s) =>
    cc([...common, `-I${join(tree, "support")}`, "-DTIMEOUTFACTOR=1", "-include", "limits.h", ...(s === "support_paths" ? paths : []),
      "-c", join(tree, "support", `${s}.c`), "-o", join(objDir, `${s}.o`)], `support/${s}.c`));
  const lib = join(work, "libsupport.a");
  const ar = sh(["ar", "rcs", lib, ...SUPPORT.map((s) => join(objDir, `${s}.o`))]);
  if (!ar.ok) throw new Error(`ar: ${ar.out}`);

  // The tests, as glibc's makefiles compile them (-fno-builtin: gcc must not
  // fold away the calls whose results they check).
  const outBin = join(work, "bin");
  mkdirSync(outBin);
  const mdir = join(tree, "malloc");
  await pool([...SELECTED, ...shorter.map(([n]) => n)], 2, (t) => {
    const srcs = [shorter.find(([n]) => n === t)?.[1] ?? join(mdir, `${t}.c`)];
    const m = /^tst-interpose-(nothread|thread)$/.exec(t);
    if (m) srcs.push(join(mdir, `tst-interpose-aux-${m[1]}.c`));
    return cc([...common, "-fno-builtin", "-w", `-I${mdir}`, "-o", join(outBin, t), ...srcs, lib, "-lrt"], `malloc/${t}.c`);
  });
  rmSync(join(work, top, "support"), { recursive: true, force: true });
  writeFileSync(join(work, "done"), `${version}\n`);
  renameSync(work, dir);
  return { version, binDir, tests: [...SELECTED], forking: forkingIn(dir) };
}

export interface Config {
  label: string;
  threshold: string | undefined;
  child: "cow" | "duplicate";
}

export const CONFIGS: Config[] = ["0", "4096", undefined].flatMap((threshold) =>
  (["cow", "duplicate"] as const).map((child) => ({ label: `threshold ${threshold ?? "default"}, ${child}`, threshold, child })));

export interface Outcome {
  test: string;
  ok: boolean;
  code: number | null;
  signal: string | null;
  ms: number;
  output: string;
  /** Files left in the data directory (an arena's file is unlinked from birth: none). */
  leftovers: string[];
}

/** Environment without EXM_* and LD_PRELOAD, plus extra. */
function env(extra: Record<string, string | undefined>): Record<string, string> {
  const e: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("EXM_") && k !== "LD_PRELOAD") e[k] = v;
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) e[k] = v;
  return e;
}

/**
 * Runs one test (lib null: plain glibc) in its own working directory and data
 * directory. Its test driver kills it after its own timeout (see
 * TIMEOUT_FACTOR) and reports "Timed out"; a second limit here only guards
 * against a driver that hangs itself.
 */
export async function runOne(g: GlibcTests, test: string, lib: string | null, cfg: Config): Promise<Outcome> {
  const scratch = mkdtempSync(join(tmpdir(), "exm-glibc-"));
  const dataDir = join(scratch, "data");
  const cwd = join(scratch, "cwd");
  mkdirSync(dataDir);
  mkdirSync(cwd);
  const t0 = performance.now();
  const bin = cfg.child === "duplicate" && test in ITERATIONS ? `${test}-dup` : test;
  const p = spawn([join(g.binDir, bin)], {
    cwd,
    env: env({
      TMPDIR: cwd,
      TIMEOUTFACTOR: TIMEOUT_FACTOR,
      ...(lib ? { LD_PRELOAD: lib, EXM_THRESHOLD: cfg.threshold, EXM_CHILD: cfg.child, EXM_DIR: dataDir } : {}),
    }),
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  // SIGALRM is the driver's own timeout: it kills the test's whole process
  // group (tst-mallocfork2/3 have signal-sending children), then itself.
  const guard = setTimeout(() => {
    p.kill("SIGALRM");
    setTimeout(() => p.kill("SIGKILL"), 10_000).unref();
  }, 900_000);
  const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  await p.exited;
  clearTimeout(guard);
  const leftovers = readdirSync(dataDir);
  rmSync(scratch, { recursive: true, force: true });
  const signal = p.signalCode ? String(p.signalCode) : null;
  return {
    test,
    ok: p.exitCode === 0 && !signal && leftovers.length === 0,
    code: signal ? null : p.exitCode,
    signal,
    ms: performance.now() - t0,
    output: out + err,
    leftovers,
  };
}

/** The tests a configuration runs: in duplicate mode, only those that fork (the mode changes nothing else). */
export function testsFor(g: GlibcTests, cfg: Config): string[] {
  return cfg.child === "duplicate" ? g.tests.filter((t) => g.forking.has(t)) : g.tests;
}

/**
 * Runs the tests of one configuration (but `skip`), `width` at a time (many
 * of them mostly sleep or wait).
 */
export async function runConfig(g: GlibcTests, lib: string | null, cfg: Config, skip = new Set<string>(), width = 3): Promise<Map<string, Outcome>> {
  const results = new Map<string, Outcome>();
  // The two long ones first, so the pool does not end waiting on them alone.
  const order = testsFor(g, cfg).filter((t) => !skip.has(t)).sort((a, b) => Number(b in ITERATIONS) - Number(a in ITERATIONS));
  await pool(order, width, async (t) => {
    results.set(t, await runOne(g, t, lib, cfg));
  });
  return results;
}

/** One line of why a run failed. */
export function summary(o: Outcome): string {
  if (o.ok) return "ok";
  const lines = o.output.split("\n").filter((l) => /error|Timed out|signal|Assertion|fail/i.test(l));
  const why = o.signal ? `killed by ${o.signal}` : o.leftovers.length ? `left ${o.leftovers.join(", ")}` : `exit ${o.code}`;
  return `${why}: ${(lines[0] ?? o.output.split("\n")[0] ?? "").trim().slice(0, 160)}`;
}

if (import.meta.main) {
  const g = await buildGlibcTests();
  if (typeof g === "string") {
    console.error(`glibc tests: ${g}`);
    process.exit(1);
  }
  const libs = process.argv.slice(2);
  if (!libs.length) libs.push(join(ROOT, "build", "libexm.so"));
  for (const arg of libs) {
    const lib = arg === "none" ? null : arg;
    const cfgs = lib ? CONFIGS : [{ label: "plain glibc", threshold: undefined, child: "cow" as const }];
    const table = new Map<string, string[]>();
    const failures: string[] = [];
    for (const cfg of cfgs) {
      const r = await runConfig(g, lib, cfg);
      for (const t of g.tests) {
        const o = r.get(t);
        if (!table.has(t)) table.set(t, []);
        table.get(t)!.push(!o ? "-" : o.ok ? "pass" : "FAIL");
        if (o && !o.ok) failures.push(`${cfg.label}: ${t}: ${summary(o)}`);
      }
      const n = [...r.values()].filter((o) => o.ok).length;
      console.log(`${lib ?? "glibc"}: ${cfg.label}: ${n}/${r.size} pass`);
    }
    console.log(`\n| test | ${cfgs.map((c) => c.label).join(" | ")} |\n|---|${cfgs.map(() => "---").join("|")}|`);
    for (const [t, row] of table) console.log(`| ${t} | ${row.join(" | ")} |`);
    if (failures.length) console.log(`\n${failures.join("\n")}`);
  }
}
