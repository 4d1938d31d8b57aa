import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../common/logger.js';

function sink(): { stream: Writable; lines: () => Record<string, unknown>[] } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      chunks.push(chunk.toString());
      done();
    },
  });
  const lines = () =>
    chunks
      .join('')
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  return { stream, lines };
}

describe('createLogger', () => {
  it('writes JSON lines with name, level and ISO time, at the configured level', () => {
    const out = sink();
    const log = createLogger({ name: 'agent', level: 'warn', env: {}, destination: out.stream });
    log.info('hidden');
    log.warn({ seq: 3 }, 'shown');
    const lines = out.lines();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ name: 'agent', level: 40, msg: 'shown', seq: 3 });
    expect(String(lines[0]?.time)).toMatch(/^\d{4}-\d\d-\d\dT/);
  });

  it('lets METEORZX_LOG_LEVEL override the config level, defaulting to info', () => {
    expect(createLogger({ name: 'x', level: 'error', env: { METEORZX_LOG_LEVEL: 'debug' }, destination: sink().stream }).level).toBe('debug');
    expect(createLogger({ name: 'x', env: {}, destination: sink().stream }).level).toBe('info');
  });

  it('rejects an unknown METEORZX_LOG_LEVEL with a one-line user error', () => {
    expect(() => createLogger({ name: 'x', env: { METEORZX_LOG_LEVEL: 'verbose' }, destination: sink().stream })).toThrow(
      expect.objectContaining({ code: 'METEORZX_ENV_INVALID', userError: true }),
    );
  });

  it('redacts tokens and passwords', () => {
    const out = sink();
    const log = createLogger({ name: 'gateway', env: {}, destination: out.stream });
    log.info({ push: { token: 'secret' }, password: 'pw' }, 'config');
    expect(out.lines()[0]).toMatchObject({ push: { token: '[redacted]' }, password: '[redacted]' });
  });
});
