/*
 * help.ts: exm's option table (options.ts) as people read it: the text of
 * --help, and the README's option table (tests/cli.test.ts checks the README
 * against renderOptionsMarkdown(); `bun build.ts readme` rewrites it).
 */

import { OPTIONS, type OptionKind, type OptionSpec } from "./options";

function flagText(o: OptionSpec): string {
  const long = `--${o.flag}${o.value ? ` ${o.value}` : ""}`;
  return o.short ? `-${o.short}, ${long}` : long;
}

/** The README's option table (markdown), generated from OPTIONS. */
export function renderOptionsMarkdown(): string {
  const rows = [
    "| Flag | Environment | Default | Meaning |",
    "| --- | --- | --- | --- |",
  ];
  for (const o of OPTIONS) {
    const cell = (s: string) => (s ? s.replace(/\|/g, "\\|") : "");
    const env = o.env ? `\`${o.env}\`` : "";
    rows.push(`| \`${flagText(o)}\` | ${env} | ${cell(o.default)} | ${cell(o.meaning)} |`);
  }
  return rows.join("\n");
}

const HELP_WIDTH = 80;

/** Splits text into lines of at most `width` characters, at spaces. */
function wrap(text: string, width: number): string[] {
  const out: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line && line.length + 1 + word.length > width) {
      out.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) out.push(line);
  return out;
}

/** Text of --help. */
export function renderHelp(version: string): string {
  const lines = [
    `exm ${version}: run a program with its large allocations served from a file-backed arena`,
    "",
    "Usage: exm [options] <program> [args...]",
    "       exm --extract DIR | --inspect PID [--json] [--watch [SECONDS]] | --plot FILE",
    "       exm --prune-cache | --help | --version",
    "",
    "exm's options end at the first argument that is not one, or at `--`; everything",
    "after that is the program's, untouched. Flags override EXM_* variables.",
    "Sizes: bytes or a number with K, M, G, T, P, E (binary units), e.g. 512M, 1.5GiB.",
    "",
  ];
  const width = Math.max(...OPTIONS.map((o) => flagText(o).length));
  const pad = " ".repeat(width + 4);
  const section = (title: string, kinds: OptionKind[]) => {
    lines.push(title);
    for (const o of OPTIONS.filter((x) => kinds.includes(x.kind))) {
      const extra = [o.env ? `env ${o.env}` : "", o.kind === "setting" ? `default ${o.default}` : ""].filter(Boolean);
      const text = wrap(o.meaning, HELP_WIDTH - pad.length);
      if (extra.length) text.push(extra.join(", "));
      lines.push(`  ${flagText(o).padEnd(width)}  ${text[0]}`, ...text.slice(1).map((t) => pad + t));
    }
    lines.push("");
  };
  section("Options passed to the program:", ["setting"]);
  section("Other actions:", ["action", "info"]);
  lines.push("Exit status: the program's own; 2 for bad usage, 126 if the program cannot be");
  lines.push("run, 127 if it is not found, 1 for other errors of exm itself.");
  return lines.join("\n");
}
