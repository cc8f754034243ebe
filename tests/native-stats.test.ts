/**
 * Who reports EXM_STATS: the process exm started, also after it execs
 * another program (same pid, as Rscript does with R), and none of its
 * children.
 */
import { describe, expect, test } from "bun:test";
import { freshDir, python3, runWithLib, skipUnless, libAvailable } from "./support/sys";

const py = python3();
const summaries = (stderr: string) => stderr.split("\n").filter((l) => /^exm: pid \d+: peak /.test(l));

describe.skipIf(skipUnless(libAvailable(), "EXM_STATS reporting"))("EXM_STATS reporting", () => {
  test.skipIf(skipUnless(py ? null : "python3 not found", "exec chain"))(
    "a program exec'd by the one exm started reports, once",
    async () => {
      const dir = freshDir();
      const r = await runWithLib(["sh", "-c", `exec ${py} -c "b = bytearray(100 << 20); print(len(b))"`], {
        EXM_DIR: dir, EXM_STATS: "1", EXM_THRESHOLD: "64M",
      });
      expect(r.code).toBe(0);
      const lines = summaries(r.stderr);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain("peak 100.0 MiB file-backed");
    },
  );

  test("children (forked and exec'd) stay quiet: one summary for a shell running three programs", async () => {
    const r = await runWithLib(["bash", "-c", "/bin/true; /bin/true; (:); echo done"], {
      EXM_DIR: freshDir(), EXM_STATS: "1",
    });
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe("done");
    expect(summaries(r.stderr)).toHaveLength(1);
  });
});
