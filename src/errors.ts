/*
 * errors.ts: the one error type of the launcher.
 *
 * Every check throws an ExmError carrying the exit status it calls for; the
 * CLI's main() is the only place that prints one (as `exm: <message>`) and
 * sets the exit status. Statuses follow env(1): 2 for bad usage, 126 for a
 * program that cannot be run, 127 for one that is not found, 1 otherwise.
 */

export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
export const EXIT_CANNOT_RUN = 126;
export const EXIT_NOT_FOUND = 127;

export class ExmError extends Error {
  /** Exit status main() uses when this error ends the run. */
  readonly status: number;
  /** Print the short usage hint after the message (usage errors). */
  readonly showHint: boolean;

  constructor(message: string, status: number = EXIT_FAILURE, showHint = false) {
    super(message);
    this.name = "ExmError";
    this.status = status;
    this.showHint = showHint;
  }
}

/** Bad command line or bad EXM_* value: exit 2 (`hint`: point at --help). */
export function usageError(message: string, hint = false): ExmError {
  return new ExmError(message, EXIT_USAGE, hint);
}

/**
 * A message as one printable line: control characters (a newline in a bad
 * value could forge a second `exm:` line) are shown as escapes.
 */
export function oneLine(message: string): string {
  return message.replace(/[\x00-\x1f\x7f]/g, (c) =>
    c === "\n" ? "\\n" : c === "\t" ? "\\t" : c === "\r" ? "\\r" : `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`,
  );
}
