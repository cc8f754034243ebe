/*
 * out.ts: writing to stdout/stderr. process.stdout and process.stderr cost
 * 7-9 ms of start-up each in a compiled Bun binary (they build a stream on
 * first use); a plain write(2) costs nothing.
 */

import { writeSync } from "node:fs";

function writeAll(fd: number, text: string): void {
  const bytes = Buffer.from(text);
  let done = 0;
  while (done < bytes.length) {
    try {
      done += writeSync(fd, bytes, done);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "EAGAIN") continue;
      return; // closed or broken output: nothing sensible left to do
    }
  }
}

export function stdout(text: string): void {
  writeAll(1, text);
}

export function stderr(text: string): void {
  writeAll(2, text);
}
