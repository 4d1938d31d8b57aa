/** One `intake.files[]` entry as the file intake uses it (config sizes already in bytes). */
export interface FileSpec {
  /** A path or a glob (`/var/log/app/*.log`); relative ones are relative to the working directory. */
  path: string;
  /** json: each line is an event; line: each line becomes an event with its text in data.line. */
  format: 'json' | 'line';
  /** Where to start in a file found at start-up that was never read before. */
  startAt: 'beginning' | 'end';
  /** Event type of `line` events. */
  type: string;
  /** Longest line kept, bytes; longer lines are cut and flagged. */
  maxLineBytes: number;
  /** ms a file read to its end stays open without growing (default 5 min); it is opened again when it changes. */
  closeInactiveMs?: number;
  /** ms a rotated file read to its end is kept open without growing before it is closed (default 5 s; Fluent Bit's `Rotate_Wait`). */
  rotateWaitMs?: number;
}
