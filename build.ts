/*
 * build.ts: native/*.c -> build/libexm.so (+ libexm.a), checked, then the
 * single executable dist/exm with the library embedded.
 *
 *   bun build.ts                 everything (what `npm install` runs)
 *   bun build.ts --native DIR    take the C sources from DIR instead of native/
 *                                (exm.h still comes from native/; for trying a
 *                                stub while native/ is not ready)
 *   bun build.ts readme          rewrite the README's option table from src/options.ts
 *
 * Every step fails loudly: its output is shown and the build exits non-zero,
 * and the previous outputs are removed so that nothing stale looks current.
 * Outputs are written under temporary names and renamed into place, so a
 * test running while someone rebuilds never sees half a file. EXM_CFLAGS adds compiler flags (e.g. a
 * debug build: EXM_CFLAGS="-O0 -DEXM_DEBUG=1"); CC picks the compiler.
 */

import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { renderOptionsHeader } from "./src/settings";

const ROOT = import.meta.dir;
const BUILD = `${ROOT}/build`;
const DIST = `${ROOT}/dist`;
const HEADER = `${ROOT}/native/exm.h`;

const CFLAGS = ["-O2", "-g", "-fPIC", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden", "-pthread"];
const MALLOC_FAMILY = [
  "malloc", "free", "calloc", "realloc", "reallocarray", "memalign", "posix_memalign", "aligned_alloc",
  "valloc", "pvalloc", "malloc_usable_size",
  "mallinfo", "mallinfo2", "malloc_stats", "malloc_info", "malloc_trim",
];
/** native/stats.c: a process leaving with _exit (dash, Python's os._exit, R's forked workers) still reports. */
const EXIT_HOOKS = ["_exit", "_Exit"];
/** Defined by the linker in every shared object on some binutils; not ours to judge. */
const LINKER_SYMBOLS = new Set(["_init", "_fini", "__bss_start", "_edata", "_end"]);

class BuildError extends Error {}

function step(title: string): void {
  console.log(`build: ${title}`);
}

/** Runs a command; on failure shows its output and fails the build. */
async function sh(argv: string[], what: string): Promise<string> {
  const proc = Bun.spawn(argv, { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
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

async function buildLibrary(nativeDir: string): Promise<void> {
  const sources = existsSync(nativeDir) ? readdirSync(nativeDir).filter((f) => f.endsWith(".c")).sort() : [];
  if (sources.length === 0) throw new BuildError(`no C sources (*.c) in ${nativeDir}`);
  if (!existsSync(HEADER)) throw new BuildError("native/exm.h is missing");
  // The library's option table, generated from native/options.json (committed
  // too, so that the tests' own compiles of native/*.c see it).
  const optionsHeader = `${ROOT}/native/options.gen.h`;
  const table = renderOptionsHeader();
  if (!existsSync(optionsHeader) || readFileSync(optionsHeader, "utf8") !== table) writeFileSync(optionsHeader, table);
  const cc = process.env.CC || "cc";
  const extra = (process.env.EXM_CFLAGS ?? "").split(/\s+/).filter(Boolean);
  const objDir = `${BUILD}/obj-${process.pid}`;
  rmSync(objDir, { recursive: true, force: true });
  mkdirSync(objDir, { recursive: true });

  step(`compile ${sources.length} C file(s) from ${nativeDir} with ${cc}`);
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

  step("link build/libexm.so and build/libexm.a");
  await sh([cc, ...CFLAGS, ...extra, "-shared", "-o", tmp(`${BUILD}/libexm.so`), ...objects, "-ldl"], "linking libexm.so");
  await checkExports(tmp(`${BUILD}/libexm.so`));
  await sh(["ar", "rcs", tmp(`${BUILD}/libexm.a`), ...objects], "archiving libexm.a");
  rmSync(objDir, { recursive: true, force: true });
  copyFileSync(HEADER, tmp(`${BUILD}/exm.h`));
  for (const f of ["libexm.so", "libexm.a", "exm.h"]) publish(`${BUILD}/${f}`);
}

/** The temporary name an output is written under before publish() renames it into place. */
function tmp(path: string): string {
  return `${path}.tmp-${process.pid}`;
}

function publish(path: string): void {
  renameSync(tmp(path), path);
}

async function checkExports(library: string): Promise<void> {
  step("check exported symbols");
  const header = readFileSync(HEADER, "utf8");
  const expected = new Set([...MALLOC_FAMILY, ...EXIT_HOOKS, ...declaredFunctions(header)]);
  const out = await sh(["nm", "-D", "--defined-only", library], "nm");
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

async function writeManifest(): Promise<void> {
  const bytes = readFileSync(`${BUILD}/libexm.so`);
  const sha256 = new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
  const manifest = { sha256, size: bytes.length, version: headerVersion(readFileSync(HEADER, "utf8")) };
  writeFileSync(tmp(`${BUILD}/libexm.json`), `${JSON.stringify(manifest, null, 2)}\n`);
  publish(`${BUILD}/libexm.json`);
}

async function buildExecutable(): Promise<void> {
  step("compile dist/exm");
  mkdirSync(DIST, { recursive: true });
  await sh(
    [
      process.execPath, "build", "--compile", "--minify", "--bytecode", "--no-compile-autoload-dotenv", "--no-compile-autoload-bunfig",
      "--no-compile-autoload-tsconfig", "--no-compile-autoload-package-json", `${ROOT}/src/cli.ts`, "--outfile", tmp(`${DIST}/exm`),
    ],
    "bun build --compile",
  );
  const out = await sh([tmp(`${DIST}/exm`), "--version"], "running dist/exm --version");
  copyFileSync(`${BUILD}/libexm.so`, tmp(`${DIST}/libexm.so`));
  copyFileSync(`${BUILD}/exm.h`, tmp(`${DIST}/exm.h`));
  for (const f of ["exm", "libexm.so", "exm.h"]) publish(`${DIST}/${f}`);
  step(`done: ${out.trim()}`);
}

export const README_BEGIN = "<!-- options:begin (generated from native/options.json and src/options.ts by `bun build.ts readme`) -->";
export const README_END = "<!-- options:end -->";

async function updateReadme(): Promise<void> {
  const { renderOptionsMarkdown } = await import("./src/options");
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
  let nativeDir = `${ROOT}/native`;
  const i = args.indexOf("--native");
  if (i >= 0) {
    if (!args[i + 1]) throw new BuildError("--native needs a directory");
    nativeDir = args[i + 1]!.startsWith("/") ? args[i + 1]! : `${process.cwd()}/${args[i + 1]}`;
  }
  mkdirSync(BUILD, { recursive: true });
  await buildLibrary(nativeDir);
  await writeManifest();
  await buildExecutable();
}

/** After a failure: remove outputs that would look current, and our temporaries. */
function removeOutputs(): void {
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
    if (process.argv[2] !== "readme") removeOutputs();
    console.error(`build: FAILED: ${e instanceof BuildError ? e.message : (e as Error).stack ?? String(e)}`);
    process.exit(1);
  }
}
