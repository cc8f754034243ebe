/**
 * The advice-policy experiment: the out-of-core workload (bench/c/ooc.c
 * through exm, bench/c/rawmap.c without) under a memory cgroup, for each
 * advice policy, repeated; prints medians and writes bench/results/advice.json.
 *
 *   bun bench/advice.ts [--size 4G] [--limit 1G] [--repeats 3] [--reads 20000]
 *                       [--rand-seconds 10] [--seq-seconds 20] [--policies a,b,...]
 *                       [--backends exm,raw] [--raw-policies a,b,...]
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  LIB,
  MiB,
  ROOT,
  arg,
  checkArgs,
  cgroupAvailable,
  cleanupCgroups,
  compile,
  fmt,
  kv,
  runInCgroup,
  shellLine,
  sizeArg,
  summarize,
} from "./lib.ts";

const SIZE = arg("size", "4G");
const LIMIT = sizeArg(arg("limit", "1G"), "--limit");
const REPEATS = Number(arg("repeats", "3"));
const READS = arg("reads", "20000");
const RAND_S = arg("rand-seconds", "10");
const SEQ_S = arg("seq-seconds", "20");
const POLICIES = arg(
  "policies",
  "none,sequential,random,seq-rand,fadv-random,hugepage,auto-switch",
).split(",");
const BACKENDS = arg("backends", "exm,raw").split(",");
const RAW_POLICIES = arg("raw-policies", "none,sequential,random,seq-rand,auto-switch").split(",");
const DIR = arg("dir", "/tmp");
const OUT_NAME = arg("out", "advice.json");
checkArgs();

const why = cgroupAvailable();
if (why) {
  console.error(`skip: ${why}`);
  process.exit(0);
}
for (const s of ["SIGINT", "SIGTERM"] as const)
  process.on(s, () => {
    cleanupCgroups();
    process.exit(130);
  });

const ooc = compile("ooc");
const raw = compile("rawmap");

type Row = { backend: string; policy: string; cmd: string; runs: Record<string, string>[]; fails: string[] };
const rows: Row[] = [];
for (const b of BACKENDS)
  for (const p of b === "raw" ? RAW_POLICIES : POLICIES) {
    const common = ["--size", SIZE, "--reads", READS, "--rand-seconds", RAND_S, "--seq-seconds", SEQ_S];
    let argv: string[];
    let env: Record<string, string> = {};
    if (b === "exm") {
      // normal/sequential/random through the library's own setting (EXM_ADVICE);
      // the rest through exm_advise / posix_fadvise on exm's fd.
      const viaEnv = ["normal", "sequential", "random"].includes(p);
      env = { LD_PRELOAD: LIB, EXM_THRESHOLD: "1G", EXM_DIR: DIR };
      if (viaEnv) env.EXM_ADVICE = p;
      argv = [ooc, ...common, "--policy", viaEnv ? "none" : p];
    } else {
      argv = [raw, "--dir", DIR, ...common, "--policy", p];
    }
    rows.push({ backend: b, policy: p, cmd: shellLine(argv, env), runs: [], fails: [], ...{ argv, env } } as Row);
  }

const t0 = Date.now();
for (let rep = 0; rep < REPEATS; rep++) {
  for (const row of rows) {
    const { argv, env } = row as unknown as { argv: string[]; env: Record<string, string> };
    const r = await runInCgroup(LIMIT, argv, env, { timeoutMs: 600_000 });
    const o = kv(r.stdout);
    if (r.code === 0 && o.sum_ok === "1") row.runs.push(o);
    else row.fails.push(`code=${r.code} signal=${r.signal} oom=${r.oomKilled} ${r.stderr.trim().slice(0, 200)}`);
    console.error(
      `[${((Date.now() - t0) / 1000).toFixed(0)}s] rep ${rep + 1} ${row.backend} ${row.policy}: ` +
        `write ${o.write_mbs} MB/s, seq ${o.seq_mbs} MB/s, rand ${o.rand_per_s}/s` +
        (r.code !== 0 ? ` FAILED code=${r.code} signal=${r.signal}` : ""),
    );
  }
}

const out = rows.map((r) => {
  const f = (k: string) => summarize(r.runs.map((o) => Number(o[k])));
  return {
    backend: r.backend,
    policy: r.policy,
    cmd: r.cmd,
    write_mbs: f("write_mbs"),
    seq_mbs: f("seq_mbs"),
    rand_per_s: f("rand_per_s"),
    ...(r.runs.some((o) => o.helper_scans)
      ? { helper_scan_ms: f("helper_scan_ms"), helper_scans: f("helper_scans"), helper_switches: f("helper_switches") }
      : {}),
    fails: r.fails,
  };
});
console.log(`\n${SIZE} under a ${LIMIT / MiB} MiB cgroup, median of ${REPEATS} (min-max)\n`);
console.log("| backend | policy | write MB/s | seq read MB/s | random 4 KiB reads/s |");
console.log("|---|---|---|---|---|");
const mm = (s: { median: number; min: number; max: number }) => `${fmt(s.median)} (${fmt(s.min)}-${fmt(s.max)})`;
for (const r of out)
  console.log(`| ${r.backend} | ${r.policy} | ${mm(r.write_mbs)} | ${mm(r.seq_mbs)} | ${mm(r.rand_per_s)} |`);
console.log("\nCommands (each run inside a memory cgroup of the limit above):");
for (const r of out) console.log(`  ${r.cmd}`);
for (const r of out)
  if ("helper_scan_ms" in r)
    console.log(`helper ${r.backend} ${r.policy}: scan ${fmt(r.helper_scan_ms!.median, 2)} ms median per scan, ` +
      `${fmt(r.helper_scans!.median)} scans, ${fmt(r.helper_switches!.median)} switches`);
mkdirSync(join(ROOT, "bench", "results"), { recursive: true });
writeFileSync(
  join(ROOT, "bench", "results", OUT_NAME),
  JSON.stringify({ date: new Date().toISOString(), size: SIZE, limit: LIMIT, repeats: REPEATS, reads: READS, rows: out }, null, 2) + "\n",
);
