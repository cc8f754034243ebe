/**
 * `exm --plot stats.json > run.svg`: the SVG of a real --stats-file run holds
 * the timeline's data (every sample a point of each series, scaled to the
 * panel's maximum), and bad input gets one line and exit 1.
 */
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { panels, xy } from "../src/plot";
import type { RunReport } from "../src/supervise";
import { EXM, freshDir, libAvailable, python3, run, skipUnless } from "./support/sys";

setDefaultTimeout(120_000);
const py = python3();
const dir = freshDir();
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(skipUnless(libAvailable() ?? (py ? null : "python3 not found"), "--plot"))("exm --plot", () => {
  test("the SVG of a run draws every sample of resident, arena, disk, faults/s and I/O", async () => {
    const out = join(dir, "s.json");
    // 64 MiB written in 8 steps, each step a little work, then held for 1.5 s:
    // the timeline has its first and last sample in any case, and at least one
    // while the block is held (every 250 ms, or 20x a slow sample's own time;
    // without the hold a loaded CI run once sampled only python's start-up).
    const script = "import time\nb = bytearray(64 << 20)\nfor k in range(8):\n    b[k << 23:(k + 1) << 23] = b'x' * (8 << 20)\ntime.sleep(1.5)\n";
    const r = await run([EXM, "--stats-file", out, "--threshold", "1M", "--dir", dir, py!, "-c", script]);
    expect(r.code).toBe(0);
    const svgRun = await run([EXM, "--plot", out]);
    expect(svgRun.code).toBe(0);
    const svg = svgRun.stdout;
    expect(svg).toStartWith('<svg xmlns="http://www.w3.org/2000/svg"');
    expect(svg.trimEnd()).toEndWith("</svg>");
    const rep: RunReport = JSON.parse(await Bun.file(out).text());
    const samples = rep.timeline!.samples;
    expect(samples.length).toBeGreaterThanOrEqual(2);
    const tMax = samples.at(-1)!.t;
    const ps = panels(samples);
    const names = ps.flatMap((p) => p.series.map((s) => s.name));
    expect(names).toEqual(["resident", "arenaResident", "disk", "majorFaultsPerSecond", "readBytesPerSecond", "writtenBytesPerSecond"]);
    ps.forEach((p, i) => {
      const vMax = Math.max(0, ...p.series.flatMap((s) => s.values));
      expect(svg).toContain(`<g data-panel="${p.title}" data-max="${vMax}">`);
      for (const s of p.series) {
        const m = new RegExp(`<polyline data-series="${s.name}"[^>]* points="([^"]*)"/>`).exec(svg);
        expect(m).not.toBeNull();
        const pts = m![1]!.split(" ");
        expect(pts).toHaveLength(samples.length);
        pts.forEach((pt, j) => expect(pt).toBe(xy(samples[j]!.t, s.values[j]!, tMax, vMax, i).join(",")));
      }
    });
    // The memory panel's scale is the run's: at least the 64 MiB the tree held.
    const mem = Math.max(...samples.map((s) => Math.max(s.resident, s.disk)));
    expect(mem === 0 || mem >= 64 * 2 ** 20).toBe(true);
    expect(svg).toContain(`<title>exm run: ${py} -c`);
    expect(svg).toContain(`, exit 0, ${samples.length} samples</text>`);
  });

  test("bad input: a missing file, not JSON, a JSON without timeline", async () => {
    const missing = await run([EXM, "--plot", join(dir, "none.json")]);
    expect([missing.code, missing.stderr]).toEqual([1, `exm: --plot: cannot read ${join(dir, "none.json")}: ENOENT\n`]);
    writeFileSync(join(dir, "bad.json"), "{");
    const bad = await run([EXM, "--plot", join(dir, "bad.json")]);
    expect([bad.code, bad.stderr]).toEqual([1, `exm: --plot: ${join(dir, "bad.json")} is not JSON\n`]);
    writeFileSync(join(dir, "lib.json"), '{"pid": 1, "totalAllocs": 0}');
    const lib = await run([EXM, "--plot", join(dir, "lib.json")]);
    expect([lib.code, lib.stderr]).toEqual([
      1, `exm: --plot: ${join(dir, "lib.json")} has no timeline (write one with exm --stats-file ${join(dir, "lib.json")} PROGRAM)\n`,
    ]);
  });
});
