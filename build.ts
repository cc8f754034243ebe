/*
 * build.ts: native/*.c -> build/libexm.so (+ libexm.a), checked, then the
 * single executable dist/exm with the library embedded.
 *
 *   bun build.ts                 everything for this machine (what `npm install` runs)
 *   bun build.ts --native DIR    take the C sources from DIR instead of native/
 *                                (exm.h still comes from native/; for trying a
 *                                stub while native/ is not ready)
 *   bun build.ts release         the files users download (`npm run release`):
 *                                dist/release/exm-linux-x64, exm-linux-arm64 and
 *                                SHA256SUMS, each binary with the library built
 *                                for its own architecture (see release() below)
 *   bun build.ts glibc-floor SO  only the glibc symbol-version check, on any shared object
 *   bun build.ts readme          rewrite the README's option table from src/options.ts
 *
 * The library must load on glibc 2.17 and later (GLIBC_FLOOR), whatever glibc
 * builds it: native/glibc_compat.h is force-included into every C file to pin
 * old symbol versions, and checkGlibcFloor() fails the build, naming the
 * symbols, when the linked library needs any newer version.
 *
 * Every step fails loudly: its output is shown and the build exits non-zero,
 * and the previous outputs are removed so that nothing stale looks current.
 * Outputs are written under temporary names and renamed into place, so a
 * test running while someone rebuilds never sees half a file. EXM_CFLAGS adds compiler flags (e.g. an
 * unoptimized build for a debugger: EXM_CFLAGS=-O0); CC picks the compiler.
 */

import { copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { renderOptionsHeader } from "./src/settings";

const ROOT = import.meta.dir;
const BUILD = `${ROOT}/build`;
const DIST = `${ROOT}/dist`;
const RELEASE = `${DIST}/release`;
const HEADER = `${ROOT}/native/exm.h`;
const COMPAT_HEADER = `${ROOT}/native/glibc_compat.h`;

const CFLAGS = ["-O2", "-g", "-fPIC", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden", "-pthread", "-include", COMPAT_HEADER];
/**
 * glibc 2.17-2.33 keep the pthread and dl functions the library calls in
 * libpthread.so.0 and libdl.so.2 (2.34 merged them into libc and left
 * stubs), so the library names both; the loader finds them on every glibc.
 */
const LINK_LIBS = ["-Wl,--no-as-needed", "-l:libpthread.so.0", "-l:libdl.so.2", "-Wl,--as-needed"];
/** The oldest glibc the library loads on: RHEL/CentOS 7, and arm64's first glibc. */
export const GLIBC_FLOOR = "2.17";
const MALLOC_FAMILY = [
  "malloc", "free", "calloc", "realloc", "reallocarray", "memalign", "posix_memalign", "aligned_alloc",
  "valloc", "pvalloc", "malloc_usable_size",
  "mallinfo", "mallinfo2", "malloc_stats", "malloc_info", "malloc_trim",
];
/** native/stats.c: a process leaving with _exit (dash, Python's os._exit, R's forked workers) still reports. */
const EXIT_HOOKS = ["_exit", "_Exit"];
/** native/override.c: a program's MADV_HUGEPAGE is kept off the arena's random-advised blocks, its
 * mlockall off the arenas (locking them would populate terabytes of page cache), and its RLIMIT_AS
 * makes them give back the address space they have not carved. */
const HINT_HOOKS = ["madvise", "mlockall", "setrlimit", "setrlimit64", "prlimit", "prlimit64"];
/** Defined by the linker in every shared object on some binutils; not ours to judge. */
const LINKER_SYMBOLS = new Set(["_init", "_fini", "__bss_start", "_edata", "_end"]);

/** A machine exm is built for. */
export interface Target {
  /** Release file exm-<name>; what --version prints. */
  name: "linux-x64" | "linux-arm64";
  /** process.arch on that machine. */
  arch: "x64" | "arm64";
  /** GNU triplet of its cross toolchain (gcc-<triplet>, <triplet>-readelf...). */
  triplet: string;
  /** readelf's "Machine:" for its ELF files. */
  machine: string;
  /** `bun build --compile --target` for the release. */
  bunTarget: string;
  /** The npm package holding that Bun runtime (same version as our bun). */
  runtimePackage: string;
}

/**
 * Bun's default x86-64 runtime needs AVX2 (Haswell, 2013); the baseline one
 * runs on any x86-64 with SSE4.2 (Nehalem, 2008), which older cluster nodes
 * are. Measured for the launcher (README, "Supported systems"): start-up of
 * `exm true` differs by less than the run-to-run noise, so the release
 * takes baseline.
 */
export const TARGETS: Target[] = [
  {
    name: "linux-x64", arch: "x64", triplet: "x86_64-linux-gnu", machine: "Advanced Micro Devices X86-64",
    bunTarget: "bun-linux-x64-baseline", runtimePackage: "@oven/bun-linux-x64-baseline",
  },
  {
    name: "linux-arm64", arch: "arm64", triplet: "aarch64-linux-gnu", machine: "AArch64",
    bunTarget: "bun-linux-arm64", runtimePackage: "@oven/bun-linux-aarch64",
  },
];

function hostTarget(): Target {
  const t = TARGETS.find((x) => x.arch === process.arch);
  if (!t) throw new BuildError(`no exm target for this machine (${process.platform}-${process.arch}); exm builds for ${TARGETS.map((x) => x.name).join(", ")}`);
  return t;
}

/** The compiler and binutils for a target: the host's own, or the Debian cross toolchain. */
interface Toolchain {
  cc: string;
  nm: string;
  ar: string;
  readelf: string;
}

function toolchain(t: Target): Toolchain {
  if (t.arch === process.arch) {
    return { cc: process.env.CC || "cc", nm: "nm", ar: "ar", readelf: "readelf" };
  }
  const cc = `${t.triplet}-gcc`;
  if (!Bun.which(cc)) {
    throw new BuildError(`${cc} not found: the ${t.name} library needs Debian's cross compiler (apt-get install gcc-${t.triplet.replace(/_/g, "-")})`);
  }
  return { cc, nm: `${t.triplet}-nm`, ar: `${t.triplet}-ar`, readelf: `${t.triplet}-readelf` };
}

class BuildError extends Error {}

function step(title: string): void {
  console.log(`build: ${title}`);
}

/** Runs a command; on failure shows its output and fails the build. */
async function sh(argv: string[], what: string, cwd = ROOT, env?: Record<string, string | undefined>): Promise<string> {
  const proc = Bun.spawn(argv, { cwd, stdout: "pipe", stderr: "pipe", env: env ? { ...process.env, ...env } : undefined });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) {
    throw new BuildError(`${what} failed (exit ${code}):\n$ ${argv.join(" ")}\n${out}${err}`);
  }
  if (err.trim()) process.stderr.write(err);
  return out;
}

/** exm_* functions declared in exm.h: what the library promises to export. */
export function declaredFunctions(header: string): string[] {
  const code = header.replace(/\/\*[\s\S]*?\*\//g, " ").replace(/\/\/.*$/gm, " ").replace(/^\s*#.*$/gm, " ");
  const names = new Set<string>();
  for (const m of code.matchAll(/\b(exm_[A-Za-z0-9_]+)\s*\(/g)) names.add(m[1]!);
  return [...names].sort();
}

/** Parses EXM_VERSION_MAJOR/MINOR/PATCH from the header. */
function headerVersion(header: string): string {
  const part = (n: string) => {
    const m = new RegExp(`#define\\s+EXM_VERSION_${n}\\s+(\\d+)`).exec(header);
    if (!m) throw new BuildError(`native/exm.h defines no EXM_VERSION_${n}`);
    return m[1];
  };
  return `${part("MAJOR")}.${part("MINOR")}.${part("PATCH")}`;
}

/** Compiles and checks the library into outDir (libexm.so, libexm.a, exm.h, libexm.json). */
async function buildLibrary(nativeDir: string, target: Target, outDir: string): Promise<void> {
  const sources = existsSync(nativeDir) ? readdirSync(nativeDir).filter((f) => f.endsWith(".c")).sort() : [];
  if (sources.length === 0) throw new BuildError(`no C sources (*.c) in ${nativeDir}`);
  if (!existsSync(HEADER)) throw new BuildError("native/exm.h is missing");
  // The library's option table, generated from native/options.json (committed
  // too, so that the tests' own compiles of native/*.c see it).
  const optionsHeader = `${ROOT}/native/options.gen.h`;
  const table = renderOptionsHeader();
  if (!existsSync(optionsHeader) || readFileSync(optionsHeader, "utf8") !== table) writeFileSync(optionsHeader, table);
  const tools = toolchain(target);
  const cc = tools.cc;
  const extra = (process.env.EXM_CFLAGS ?? "").split(/\s+/).filter(Boolean);
  mkdirSync(outDir, { recursive: true });
  const objDir = `${outDir}/obj-${process.pid}`;
  rmSync(objDir, { recursive: true, force: true });
  mkdirSync(objDir, { recursive: true });

  step(`compile ${sources.length} C file(s) from ${nativeDir} with ${cc} for ${target.name}`);
  const objects = sources.map((s) => `${objDir}/${s.replace(/\.c$/, ".o")}`);
  // Two at a time per core: enough to use the machine, little enough to keep errors readable.
  const jobs = Math.max(1, cpus().length * 2);
  const queue = sources.map((s, i) => () =>
    sh([cc, ...CFLAGS, ...extra, `-I${ROOT}/native`, "-c", `${nativeDir}/${s}`, "-o", objects[i]!], `compiling ${s}`));
  const failures: string[] = [];
  await Promise.all(Array.from({ length: Math.min(jobs, queue.length) }, async () => {
    for (let job = queue.shift(); job; job = queue.shift()) {
      await job().catch((e: Error) => failures.push(e.message));
    }
  }));
  if (failures.length) throw new BuildError(failures.join("\n"));

  const rel = outDir.startsWith(`${ROOT}/`) ? outDir.slice(ROOT.length + 1) : outDir;
  step(`link ${rel}/libexm.so and ${rel}/libexm.a`);
  const so = tmp(`${outDir}/libexm.so`);
  await sh([cc, ...CFLAGS, ...extra, "-shared", "-o", so, ...objects, ...LINK_LIBS], "linking libexm.so");
  await checkMachine(tools, so, target);
  await checkExports(tools, so);
  const glibc = await checkGlibcFloor(tools, so);
  await sh([tools.ar, "rcs", tmp(`${outDir}/libexm.a`), ...objects], "archiving libexm.a");
  rmSync(objDir, { recursive: true, force: true });
  copyFileSync(HEADER, tmp(`${outDir}/exm.h`));
  writeManifest(so, target, glibc, tmp(`${outDir}/libexm.json`));
  for (const f of ["libexm.so", "libexm.a", "exm.h", "libexm.json"]) publish(`${outDir}/${f}`);
}

/** The temporary name an output is written under before publish() renames it into place. */
function tmp(path: string): string {
  return `${path}.tmp-${process.pid}`;
}

function publish(path: string): void {
  renameSync(tmp(path), path);
}

async function checkMachine(tools: Toolchain, file: string, target: Target): Promise<void> {
  const header = await sh([tools.readelf, "-h", file], "readelf -h");
  const machine = /^\s*Machine:\s*(.+?)\s*$/m.exec(header)?.[1];
  if (machine !== target.machine) throw new BuildError(`${file} is for ${machine ?? "an unknown machine"}, not ${target.name} (${target.machine})`);
}

async function checkExports(tools: Toolchain, library: string): Promise<void> {
  step("check exported symbols");
  const header = readFileSync(HEADER, "utf8");
  const expected = new Set([...MALLOC_FAMILY, ...EXIT_HOOKS, ...HINT_HOOKS, ...declaredFunctions(header)]);
  const out = await sh([tools.nm, "-D", "--defined-only", library], "nm");
  const exported = new Set(
    out.split("\n").map((l) => l.trim().split(/\s+/)).filter((f) => f.length >= 3).map((f) => f[2]!.replace(/@.*$/, ""))
      .filter((n) => !LINKER_SYMBOLS.has(n)),
  );
  const extra = [...exported].filter((n) => !expected.has(n)).sort();
  const missing = [...expected].filter((n) => !exported.has(n)).sort();
  if (extra.length || missing.length) {
    throw new BuildError(
      "libexm.so exports the wrong symbols (it must export exactly the malloc family and the exm_* functions of exm.h)\n" +
        (extra.length ? `  exported but not meant to be: ${extra.join(" ")}\n` : "") +
        (missing.length ? `  missing: ${missing.join(" ")}\n` : ""),
    );
  }
}

/** -1, 0, 1 as dotted version a is older, equal, newer than b. */
export function compareVersions(a: string, b: string): number {
  const x = a.split(".").map(Number);
  const y = b.split(".").map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d) return Math.sign(d);
  }
  return 0;
}

/**
 * What the loader demands of glibc, from `readelf -V` (the version needs,
 * file by file) and `readelf --dyn-syms` (which symbol wants which version).
 */
export interface GlibcNeeds {
  /** Every GLIBC_* version needed (e.g. "2.2.5"), GLIBC_PRIVATE as "PRIVATE". */
  versions: string[];
  /** Undefined symbols by the version they are bound to. */
  symbols: Map<string, string[]>;
  /** DT_NEEDED libraries. */
  needed: string[];
}

export function parseGlibcNeeds(versionInfo: string, dynSyms: string, dynamic: string): GlibcNeeds {
  const versions = new Set<string>();
  const needs = versionInfo.slice(Math.max(0, versionInfo.indexOf("Version needs section")));
  for (const m of needs.matchAll(/Name:\s*GLIBC_([0-9.]+|PRIVATE)\b/g)) versions.add(m[1]!);
  const symbols = new Map<string, string[]>();
  for (const line of dynSyms.split("\n")) {
    const m = /\sUND\s+(\S+?)@+GLIBC_([0-9.]+|PRIVATE)\b/.exec(line);
    if (!m) continue;
    const list = symbols.get(m[2]!) ?? [];
    list.push(m[1]!);
    symbols.set(m[2]!, list);
  }
  const needed = [...dynamic.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]!);
  return { versions: [...versions].sort(compareVersions), symbols, needed };
}

/**
 * Fails when the library needs a glibc newer than GLIBC_FLOOR (or glibc's
 * private symbols), naming the symbols; returns the newest version needed.
 */
async function checkGlibcFloor(tools: Toolchain, library: string): Promise<string> {
  step(`check glibc symbol versions (floor: ${GLIBC_FLOOR})`);
  const needs = parseGlibcNeeds(
    await sh([tools.readelf, "-V", "-W", library], "readelf -V"),
    await sh([tools.readelf, "--dyn-syms", "-W", library], "readelf --dyn-syms"),
    await sh([tools.readelf, "-d", "-W", library], "readelf -d"),
  );
  const bad = needs.versions.filter((v) => v === "PRIVATE" || compareVersions(v, GLIBC_FLOOR) > 0);
  if (bad.length) {
    throw new BuildError(
      `libexm.so needs a glibc newer than ${GLIBC_FLOOR}, the oldest it must load on:\n` +
        bad.map((v) => `  GLIBC_${v}: ${(needs.symbols.get(v) ?? ["(no symbol named)"]).sort().join(" ")}\n`).join("") +
        "  pin an older version of each (or use the raw system call) in native/glibc_compat.h",
    );
  }
  for (const lib of ["libpthread.so.0", "libdl.so.2"]) {
    if (!needs.needed.includes(lib)) throw new BuildError(`libexm.so does not name ${lib}: glibc before 2.34 would not find the pthread/dl functions pinned in glibc_compat.h`);
  }
  const newest = needs.versions.filter((v) => v !== "PRIVATE").at(-1) ?? GLIBC_FLOOR;
  return newest;
}

/** The library's identity for the launcher (embed/library.ts): hash, size, version, target, glibc. */
function writeManifest(library: string, target: Target, glibc: string, out: string): void {
  const bytes = readFileSync(library);
  const sha256 = new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
  const manifest = { sha256, size: bytes.length, version: headerVersion(readFileSync(HEADER, "utf8")), target: target.name, glibc };
  writeFileSync(out, `${JSON.stringify(manifest, null, 2)}\n`);
}

const COMPILE_FLAGS = [
  "--compile", "--minify", "--bytecode", "--no-compile-autoload-dotenv", "--no-compile-autoload-bunfig",
  "--no-compile-autoload-tsconfig", "--no-compile-autoload-package-json",
];

async function buildExecutable(): Promise<void> {
  step("compile dist/exm");
  mkdirSync(DIST, { recursive: true });
  await sh([process.execPath, "build", ...COMPILE_FLAGS, `${ROOT}/src/cli.ts`, "--outfile", tmp(`${DIST}/exm`)], "bun build --compile");
  const out = await sh([tmp(`${DIST}/exm`), "--version"], "running dist/exm --version");
  copyFileSync(`${BUILD}/libexm.so`, tmp(`${DIST}/libexm.so`));
  copyFileSync(`${BUILD}/exm.h`, tmp(`${DIST}/exm.h`));
  for (const f of ["exm", "libexm.so", "exm.h"]) publish(`${DIST}/${f}`);
  step(`done: ${out.trim()}`);
}

export const README_BEGIN = "<!-- options:begin (generated from native/options.json and src/options.ts by `bun build.ts readme`) -->";

/* ---- release: the files users download ------------------------------------------------ */

/** The version of Bun this checkout builds with (package.json's devDependency), which the runtimes must match. */
function bunVersion(): string {
  const pkg = JSON.parse(readFileSync(`${ROOT}/package.json`, "utf8")) as { devDependencies?: Record<string, string> };
  const v = pkg.devDependencies?.bun;
  if (!v || !/^\d+\.\d+\.\d+$/.test(v)) throw new BuildError(`package.json pins no exact bun version (got ${v ?? "none"})`);
  if (v !== Bun.version) throw new BuildError(`build.ts runs under bun ${Bun.version} but package.json pins ${v}: npm install first`);
  return v;
}

/**
 * The Bun runtime for a target, from the npm registry (GitHub, where
 * `bun build --compile --target` would download it from, may be out of
 * reach). `npm pack` checks the tarball against the registry's integrity
 * hash; the runtime is kept under build/runtimes/ and reused.
 */
async function runtimeFor(t: Target, version: string): Promise<string> {
  const dir = `${BUILD}/runtimes/${t.runtimePackage.replace("/", "+")}-${version}`;
  const bin = `${dir}/package/bin/bun`;
  if (existsSync(bin)) return bin;
  step(`fetch ${t.runtimePackage}@${version} from the npm registry`);
  const work = `${dir}.tmp-${process.pid}`;
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const out = await sh(["npm", "pack", "--silent", "--pack-destination", work, `${t.runtimePackage}@${version}`], `npm pack ${t.runtimePackage}`, work);
  const tarball = out.trim().split("\n").at(-1)!;
  await sh(["tar", "-xzf", `${work}/${tarball}`, "-C", work], "unpacking the runtime");
  rmSync(`${work}/${tarball}`);
  if (!existsSync(`${work}/package/bin/bun`)) throw new BuildError(`${t.runtimePackage}@${version} has no package/bin/bun`);
  await checkMachine({ cc: "", nm: "", ar: "", readelf: "readelf" }, `${work}/package/bin/bun`, t);
  rmSync(dir, { recursive: true, force: true });
  renameSync(work, dir);
  return bin;
}

/**
 * The launcher's sources with the target's library in place of build/'s,
 * so that the embedding imports (embed/library.ts: ../build/libexm.so) pick
 * up that library; node_modules is still found above it.
 */
function stage(libDir: string, stageDir: string): void {
  rmSync(stageDir, { recursive: true, force: true });
  mkdirSync(`${stageDir}/build`, { recursive: true });
  for (const d of ["src", "embed"]) cpSync(`${ROOT}/${d}`, `${stageDir}/${d}`, { recursive: true });
  mkdirSync(`${stageDir}/native`, { recursive: true });
  copyFileSync(`${ROOT}/native/options.json`, `${stageDir}/native/options.json`);   // src/settings.ts reads it
  copyFileSync(`${ROOT}/package.json`, `${stageDir}/package.json`);
  for (const f of ["libexm.so", "exm.h", "libexm.json"]) copyFileSync(`${libDir}/${f}`, `${stageDir}/build/${f}`);
}

/**
 * How this machine runs the target's binaries: natively, or through qemu's
 * binfmt handler with the cross toolchain's libraries as the target's root
 * (QEMU_LD_PREFIX: the binary's loader is /lib/ld-linux-aarch64.so.1 there);
 * null when it cannot.
 */
function runEnv(t: Target): Record<string, string> | null {
  if (t.arch === process.arch) return {};
  try {
    if (!readFileSync(`/proc/sys/fs/binfmt_misc/qemu-${t.triplet.split("-")[0]}`, "utf8").startsWith("enabled")) return null;
  } catch {
    return null;
  }
  return existsSync(`/usr/${t.triplet}/lib`) ? { QEMU_LD_PREFIX: `/usr/${t.triplet}` } : null;
}

/**
 * dist/release/exm-<target> for every target, and SHA256SUMS for them
 * (`sha256sum -c SHA256SUMS` checks a download). Each binary is run once
 * (`--version`, through qemu for a foreign one when binfmt has it) to check
 * that it starts and embeds the library for its own target.
 */
async function release(nativeDir: string): Promise<void> {
  const version = bunVersion();
  mkdirSync(RELEASE, { recursive: true });
  const built: string[] = [];
  for (const t of TARGETS) {
    const work = `${BUILD}/release/${t.name}`;
    await buildLibrary(nativeDir, t, `${work}/lib`);
    const runtime = await runtimeFor(t, version);
    stage(`${work}/lib`, `${work}/stage`);
    const file = `exm-${t.name}`;
    step(`compile dist/release/${file} (${t.bunTarget})`);
    await sh(
      [
        process.execPath, "build", ...COMPILE_FLAGS, `--target=${t.bunTarget}`, `--compile-executable-path=${runtime}`,
        `${work}/stage/src/cli.ts`, "--outfile", tmp(`${RELEASE}/${file}`),
      ],
      `bun build --compile --target=${t.bunTarget}`,
    );
    await checkMachine({ cc: "", nm: "", ar: "", readelf: "readelf" }, tmp(`${RELEASE}/${file}`), t);
    const env = runEnv(t);
    if (env) {
      const v = (await sh([tmp(`${RELEASE}/${file}`), "--version"], `running ${file} --version`, ROOT, env)).trim();
      if (!v.includes(t.name)) throw new BuildError(`${file} --version does not name its target ${t.name}: ${v}`);
      step(`${file}: ${v}`);
    } else {
      step(`${file}: not run (this machine cannot run ${t.name} binaries: no qemu-${t.triplet.split("-")[0]} binfmt handler, or no /usr/${t.triplet})`);
    }
    publish(`${RELEASE}/${file}`);
    built.push(file);
  }
  const sums = built.map((f) => `${new Bun.CryptoHasher("sha256").update(readFileSync(`${RELEASE}/${f}`)).digest("hex")}  ${f}\n`).join("");
  writeFileSync(tmp(`${RELEASE}/SHA256SUMS`), sums);
  publish(`${RELEASE}/SHA256SUMS`);
  step(`done: dist/release/{${built.join(",")},SHA256SUMS}`);
}

export const README_END = "<!-- options:end -->";

async function updateReadme(): Promise<void> {
  const { renderOptionsMarkdown } = await import("./src/help");
  const path = `${ROOT}/README.md`;
  const text = readFileSync(path, "utf8");
  const a = text.indexOf(README_BEGIN);
  const b = text.indexOf(README_END);
  if (a < 0 || b < a) throw new BuildError(`README.md has no ${README_BEGIN} ... ${README_END} section`);
  writeFileSync(path, `${text.slice(0, a + README_BEGIN.length)}\n${renderOptionsMarkdown()}\n${text.slice(b)}`);
  step("README.md option table updated");
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args[0] === "readme") return updateReadme();
  if (args[0] === "glibc-floor") {
    if (!args[1]) throw new BuildError("glibc-floor needs a shared object");
    const glibc = await checkGlibcFloor({ cc: "", nm: "", ar: "", readelf: "readelf" }, args[1]);
    return step(`${args[1]} needs glibc ${glibc} or later`);
  }
  let nativeDir = `${ROOT}/native`;
  const i = args.indexOf("--native");
  if (i >= 0) {
    if (!args[i + 1]) throw new BuildError("--native needs a directory");
    nativeDir = args[i + 1]!.startsWith("/") ? args[i + 1]! : `${process.cwd()}/${args[i + 1]}`;
  }
  if (args[0] === "release") return release(nativeDir);
  mkdirSync(BUILD, { recursive: true });
  await buildLibrary(nativeDir, hostTarget(), BUILD);
  await buildExecutable();
}

/** After a failure: remove outputs that would look current, and our temporaries. */
function removeOutputs(releasing: boolean): void {
  if (releasing) {
    for (const f of [...TARGETS.map((t) => `exm-${t.name}`), "SHA256SUMS"]) {
      rmSync(`${RELEASE}/${f}`, { force: true });
      rmSync(tmp(`${RELEASE}/${f}`), { force: true });
    }
    for (const t of TARGETS) rmSync(`${BUILD}/release/${t.name}`, { recursive: true, force: true });
    return;
  }
  for (const f of ["libexm.so", "libexm.a", "exm.h", "libexm.json"]) {
    rmSync(`${BUILD}/${f}`, { force: true });
    rmSync(tmp(`${BUILD}/${f}`), { force: true });
  }
  for (const f of ["exm", "libexm.so", "exm.h"]) {
    rmSync(`${DIST}/${f}`, { force: true });
    rmSync(tmp(`${DIST}/${f}`), { force: true });
  }
  rmSync(`${BUILD}/obj-${process.pid}`, { recursive: true, force: true });
}

if (import.meta.main) {
  try {
    await main();
  } catch (e) {
    if (process.argv[2] !== "readme" && process.argv[2] !== "glibc-floor") removeOutputs(process.argv[2] === "release");
    console.error(`build: FAILED: ${e instanceof BuildError ? e.message : (e as Error).stack ?? String(e)}`);
    process.exit(1);
  }
}
