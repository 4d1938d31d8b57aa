/**
 * Typed errors with stable codes (STYLE §4). Each side (protocols, common,
 * agent, gateway, cli) keeps its own catalogue built with `defineErrors`;
 * `docs/errors.md` documents every code and a test checks that it does.
 */
export interface ErrorSpec {
  /** One-line description for docs and `--help`; the thrown message says what went wrong. */
  readonly description: string;
  /** HTTP status when this error answers a request. */
  readonly status?: number;
}

export class MeteorError extends Error {
  readonly code: string;
  readonly status: number | undefined;
  /** True for a user mistake: the CLI prints one line, no stack trace. */
  readonly userError: boolean;

  constructor(code: string, message: string, options: { cause?: unknown; status?: number; userError?: boolean } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'MeteorError';
    this.code = code;
    this.status = options.status;
    this.userError = options.userError ?? false;
  }
}

export type ErrorFactory = (message: string, options?: { cause?: unknown; userError?: boolean }) => MeteorError;

/** Builds a catalogue: one factory per code, each stamping its code and status. */
export function defineErrors<const T extends Record<string, ErrorSpec>>(
  specs: T,
): { readonly [K in keyof T]: ErrorFactory } & { readonly specs: T } {
  const out: Record<string, unknown> = { specs };
  for (const [code, spec] of Object.entries(specs)) {
    out[code] = (message: string, options: { cause?: unknown; userError?: boolean } = {}) =>
      new MeteorError(code, message, { ...options, ...(spec.status === undefined ? {} : { status: spec.status }) });
  }
  return out as { readonly [K in keyof T]: ErrorFactory } & { readonly specs: T };
}

export function isMeteorError(err: unknown): err is MeteorError {
  return err instanceof MeteorError;
}

/** The `code` of an error (ours, Node's, LevelDB's), as a metric label; 'unknown' when it has none. */
export function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | undefined)?.code;
  return code === undefined ? 'unknown' : String(code);
}

export const ProtocolErrors = defineErrors({
  METEORZX_INVALID_SIZE: { description: 'A size is not a number with an optional unit (B, KB, KiB, MB, MiB, GB, GiB, TB, TiB).' },
  METEORZX_INVALID_DURATION: { description: 'A duration is not a number with a unit (ms, s, m, h, d, w).' },
  METEORZX_INVALID_TOPIC: { description: 'An MQTT topic is not of the form audit/<source>/events|status|cmd, or names an invalid source.' },
  METEORZX_INVALID_SOURCE: { description: 'A source or agent id is outside [A-Za-z0-9._:-]{1,128}.' },
  METEORZX_INVALID_COMMAND: { description: 'A command-channel message is not a known command.' },
  METEORZX_BODY_UNREADABLE: { description: 'A request body cannot be read as JSON, a JSON array or NDJSON.', status: 400 },
  METEORZX_BATCH_TOO_LARGE: { description: 'A batch has more events than the batch limit.', status: 413 },
  METEORZX_BODY_TOO_LARGE: { description: 'A request body is larger than the body limit.', status: 413 },
  METEORZX_UNSUPPORTED_MEDIA_TYPE: { description: 'A request body has a content type other than JSON or NDJSON.', status: 415 },
});
