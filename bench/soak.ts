/**
 * soak.ts: the long runs behind issue 7's suite, by hand (npm test only
 * replays what they leave behind).
 *
 *   bun bench/soak.ts                    everything below with default budgets
 *   bun bench/soak.ts --fuzz 600         fuzz the carving core for 600 s
 *   bun bench/soak.ts --stress 600       threads + forks stress for 600 s
 *   bun bench/soak.ts --stress 1800 --thresholds 0    the same, threshold 0 only
 *   bun bench/soak.ts --seed-corpus      (re)write the generated seeds in tests/fuzz/corpus
 *   bun bench/soak.ts --merge            minimise a fuzzing run's corpus into tests/fuzz/corpus
 *
 * Fuzzing uses libFuzzer (clang, plus compiler-rt: apt-get install clang
 * libclang-rt-14-dev; --install does that when root) with ASan and UBSan,
 * starting from tests/fuzz/corpus and writing new inputs to
 * build/fuzz/corpus and crashes to build/fuzz/artifacts. Without clang it
 * falls back to fuzz_core's own random mode (gcc, ASan, UBSan), which keeps
 * the failing input as build/fuzz/current.
 *
 * The stress part runs tests/c/stress_fork.c preloaded with build/libexm.so
 * (and with a UBSan build of the library) over many seeds, thread counts,
 * thresholds and child modes, and stress_threads.c longer than npm test does.
 * Any failure stops with the command that reproduces it.
 */
import { spawnSync } from "bun";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { xorshift } from "../tests/support/programs";

const ROOT = resolve(import.meta.dir, "..");
const NATIVE = join(ROOT, "native");
const CORPUS = join(ROOT, "tests", "fuzz", "corpus");
const FUZZ = join(ROOT, "build", "fuzz");
const LIB = join(ROOT, "build", "libexm.so");
const SAN = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"];

function say(line: string): void {
  console.log(`soak: ${line}`);
}

function sh(argv: string[], opts: { env?: Record<string, string>; quiet?: boolean } = {}): { code: number; out: string } {
  const r = spawnSync(argv, { cwd: ROOT, env: { ...process.env, ...opts.env }, stdout: "pipe", stderr: "pipe" });
  const out = r.stdout.toString() + r.stderr.toString();
  if (!opts.quiet && r.exitCode !== 0) console.log(out.slice(-4000));
  return { code: r.exitCode ?? 1, out };
}

function need(cond: boolean, what: string): void {
  if (!cond) {
    console.error(`soak: ${what}`);
    process.exit(1);
  }
}

/* ---- seeds ---------------------------------------------------------------------- */

/**
 * Deterministic seed inputs for fuzz_core, each biased to one kind of
 * operation (see the opcode table in tests/c/fuzz_core.c: op % 12 = 0-3
 * allocate, 4-5 free (bit 4: the out-of-lock path), 6 resize, 7 bad free,
 * 8 lookup, 9 flush, 10 disk cap, 11 commit failures).
 */
function seedCorpus(): void {
  mkdirSync(CORPUS, { recursive: true });
  const rnd = xorshift(0x12345678);
  const mixes: Record<string, number[]> = {
    "alloc-free": [0, 1, 2, 3, 4, 5, 4, 5],
    "alloc-heavy": [0, 1, 2, 3, 0, 1, 4],
    "resize": [0, 1, 6, 6, 6, 4],
    "out-of-lock-free": [0, 1, 2, 0x14, 0x15, 0x14],
    "bad-free": [0, 1, 7, 7, 4],
    "lookup": [0, 1, 8, 8, 5],
    "flush": [0, 1, 4, 5, 9],
    "cap": [10, 0, 1, 2, 3, 4, 10],
    "commit-fail": [11, 0, 1, 2, 4, 6],
    "everything": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
  };
  let n = 0;
  for (const [name, ops] of Object.entries(mixes)) {
    for (const len of [256, 2048]) {
      const bytes: number[] = [];
      while (bytes.length < len) {
        const op = ops[rnd() % ops.length]!;
        // the opcode, then random operands (each op reads what it needs)
        bytes.push((op + 12 * (rnd() % 21)) & 0xff);
        const operands = 1 + (rnd() % 5);
        for (let i = 0; i < operands; i++) bytes.push(rnd() & 0xff);
      }
      writeFileSync(join(CORPUS, `seed-${name}-${len}`), Buffer.from(bytes.slice(0, len)));
      n++;
    }
  }
  say(`wrote ${n} seed inputs to ${CORPUS}`);
}

/* ---- fuzzing -------------------------------------------------------------------------- */

function haveLibFuzzer(install: boolean): boolean {
  const probe = () =>
    sh(["sh", "-c", "echo 'int LLVMFuzzerTestOneInput(const char *d, long n) { return 0; }' | clang -x c -fsanitize=fuzzer -o /dev/null -"], {
      quiet: true,
    }).code === 0;
  if (probe()) return true;
  if (install && process.getuid?.() === 0) {
    say("installing clang and compiler-rt (apt-get)");
    sh(["apt-get", "install", "-y", "-q", "--no-install-recommends", "clang", "libclang-rt-14-dev"], { env: { DEBIAN_FRONTEND: "noninteractive" } });
    return probe();
  }
  return false;
}

function fuzz(seconds: number, install: boolean): void {
  mkdirSync(join(FUZZ, "corpus"), { recursive: true });
  mkdirSync(join(FUZZ, "artifacts"), { recursive: true });
  const src = [join(ROOT, "tests", "c", "fuzz_core.c"), join(NATIVE, "core.c")];
  if (haveLibFuzzer(install)) {
    const bin = join(FUZZ, "fuzz_core-libfuzzer");
    const b = sh(["clang", "-g", "-O1", "-fsanitize=fuzzer,address,undefined", "-I", NATIVE, "-o", bin, ...src]);
    need(b.code === 0, "clang build of the fuzz target failed");
    say(`libFuzzer for ${seconds} s (new inputs: build/fuzz/corpus, crashes: build/fuzz/artifacts)`);
    const r = spawnSync(
      [bin, `-max_total_time=${seconds}`, "-max_len=4096", "-timeout=30", `-artifact_prefix=${join(FUZZ, "artifacts")}/`, "-print_final_stats=1",
        join(FUZZ, "corpus"), CORPUS],
      { cwd: ROOT, stdout: "inherit", stderr: "inherit" },
    );
    need(r.exitCode === 0, `libFuzzer found a failure: see build/fuzz/artifacts; replay with ${bin} <file>, FUZZ_TRACE=1 for the operations`);
    say("no failure; `bun bench/soak.ts --merge` minimises the corpus into tests/fuzz/corpus");
    return;
  }
  say("no libFuzzer (clang with compiler-rt): random inputs with the gcc build instead (--install to get clang)");
  const bin = join(FUZZ, "fuzz_core-random");
  need(sh(["gcc", "-O1", "-g", "-DFUZZ_MAIN", ...SAN, "-I", NATIVE, "-o", bin, ...src]).code === 0, "gcc build of the fuzz target failed");
  const end = Date.now() + seconds * 1000;
  let batch = 0;
  while (Date.now() < end) {
    const seed = String(Date.now() ^ (batch++ * 0x9e3779b9));
    const r = sh([bin, "--random", "2000", seed, "4096", FUZZ]);
    need(r.code === 0, `fuzz_core failed (seed ${seed}); the input is build/fuzz/current: replay with FUZZ_TRACE=1 ${bin} build/fuzz/current`);
  }
  say(`${batch} batches of 2000 random inputs: no failure`);
}

function merge(): void {
  need(haveLibFuzzer(false), "merge needs libFuzzer (clang)");
  const bin = join(FUZZ, "fuzz_core-libfuzzer");
  need(existsSync(bin), "run --fuzz first");
  const out = mkdtempSync(join(tmpdir(), "exm-corpus-"));
  const r = sh([bin, "-merge=1", "-max_len=4096", out, CORPUS, join(FUZZ, "corpus")]);
  need(r.code === 0, "merge failed");
  // Keep the named seeds and known reproductions; replace the rest (files
  // named by libFuzzer: the SHA-1 of their content) with the merged set,
  // leaving out copies of the named ones.
  const sha1 = (f: string) => new Bun.CryptoHasher("sha1").update(readFileSync(f)).digest("hex");
  const named = new Set(readdirSync(CORPUS).filter((f) => !/^[0-9a-f]{40}$/.test(f)).map((f) => sha1(join(CORPUS, f))));
  for (const f of readdirSync(CORPUS)) if (/^[0-9a-f]{40}$/.test(f)) rmSync(join(CORPUS, f));
  for (const f of readdirSync(out)) if (/^[0-9a-f]{40}$/.test(f) && !named.has(f)) copyFileSync(join(out, f), join(CORPUS, f));
  rmSync(out, { recursive: true, force: true });
  say(`corpus: ${readdirSync(CORPUS).length} files`);
}

/* ---- stress ------------------------------------------------------------------------------- */

function compileStress(name: string): string {
  const out = join(ROOT, "build", "soak", name);
  mkdirSync(join(ROOT, "build", "soak"), { recursive: true });
  const r = sh(["gcc", "-O1", "-g", "-Wall", "-Werror", "-pthread", "-fno-builtin", "-I", join(ROOT, "build"), "-I", NATIVE, "-o", out,
    join(ROOT, "tests", "c", `${name}.c`)]);
  need(r.code === 0, `cannot build ${name}`);
  return out;
}

function ubsanLib(): string {
  const out = join(ROOT, "build", "soak", "libexm-ubsan.so");
  const srcs = readdirSync(NATIVE).filter((f) => f.endsWith(".c")).map((f) => join(NATIVE, f));
  const r = sh(["gcc", "-O1", "-g", "-shared", "-fPIC", "-pthread", "-fvisibility=hidden", "-fsanitize=undefined", "-fno-sanitize-recover=all",
    "-I", NATIVE, "-o", out, ...srcs, "-ldl"]);
  need(r.code === 0, "cannot build the UBSan library");
  return out;
}

function stress(seconds: number, thresholds: string[]): void {
  need(existsSync(LIB), `${LIB} is not built (bun build.ts)`);
  const fork = compileStress("stress_fork");
  const threads = compileStress("stress_threads");
  const libs = [LIB, ubsanLib()];
  const end = Date.now() + seconds * 1000;
  let runs = 0, forks = 0;
  for (let seed = 1; Date.now() < end; seed++) {
    for (const lib of libs) {
      for (const t of thresholds) {
        for (const mode of ["cow", "shared", "duplicate"]) {
          const n = [2, 3, 4, 6, 8][seed % 5]!;
          const dir = mkdtempSync(join(tmpdir(), "exm-soak-"));
          const env = { LD_PRELOAD: lib, EXM_DIR: dir, EXM_THRESHOLD: t, EXM_CHILD: mode, EXM_TEST_REQUIRE_LIB: "1" };
          // 40 rounds of 50 operations per thread: work, not time
          const cmd = `${Object.entries(env).map(([k, v]) => `${k}=${v}`).join(" ")} ${fork} ${n} 40 ${seed}`;
          const r = sh([fork, String(n), "40", String(seed)], { env });
          need(r.code === 0 && r.out.includes("stress_fork ok"), `FAILED: ${cmd}\n${r.out.slice(-3000)}`);
          forks += Number(/forks=(\d+)/.exec(r.out)?.[1] ?? 0);
          need(readdirSync(dir).length === 0, `data directory not empty after: ${cmd}`);
          rmSync(dir, { recursive: true, force: true });
          runs++;
          if (Date.now() > end) break;
        }
      }
      const dir = mkdtempSync(join(tmpdir(), "exm-soak-"));
      const tt = thresholds.length === 1 ? thresholds[0]! : seed % 2 ? "0" : "4096";
      const r = sh([threads, "8", "5000"], { env: { LD_PRELOAD: lib, EXM_DIR: dir, EXM_THRESHOLD: tt } });
      need(r.code === 0 && r.out.includes("stress_threads ok"), `FAILED: EXM_THRESHOLD=${tt} stress_threads 8 5000 with ${lib}\n${r.out.slice(-3000)}`);
      rmSync(dir, { recursive: true, force: true });
      runs++;
    }
    say(`seed ${seed}: ${runs} runs, ${forks} forks so far, no failure (crash or exm_check)`);
  }
  say(`stress: ${runs} runs, ${forks} forks, no failure`);
}

/* ---- main ------------------------------------------------------------------------------ */

const args = process.argv.slice(2);
const num = (flag: string, def: number) => {
  const i = args.indexOf(flag);
  return i >= 0 && args[i + 1] && /^\d+$/.test(args[i + 1]!) ? Number(args[i + 1]) : def;
};
const install = args.includes("--install");
if (args.includes("--seed-corpus")) seedCorpus();
else if (args.includes("--merge")) merge();
else {
  const all = !args.includes("--fuzz") && !args.includes("--stress");
  if (all || args.includes("--fuzz")) fuzz(num("--fuzz", 600), install);
  const ti = args.indexOf("--thresholds");
  const thresholds = ti >= 0 && args[ti + 1] ? args[ti + 1]!.split(",") : ["0", "4096", "1M"];
  if (all || args.includes("--stress")) stress(num("--stress", 600), thresholds);
}
