import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { AgentErrors } from '../../agent/errors.js';
import { CommonErrors } from '../../common/errors.js';
import { GatewayErrors } from '../../gateway/errors.js';
import { CanonicalErrors } from '../../protocols/canonical.js';
import { isMeteorError, ProtocolErrors } from '../../protocols/errors.js';

const catalogues = { ProtocolErrors, CanonicalErrors, CommonErrors, AgentErrors, GatewayErrors };

describe('error catalogue', () => {
  const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
  const all = Object.entries(catalogues).flatMap(([side, cat]) => Object.keys(cat.specs).map((code) => ({ side, code })));

  it('has stable, prefixed, unique codes', () => {
    expect(all.length).toBeGreaterThan(10);
    for (const { code } of all) expect(code).toMatch(/^METEORZX_[A-Z0-9_]+$/);
    // A code may appear on two sides (agent and gateway both answer 401): it must mean the same there.
    const statusOf = new Map<string, number | undefined>();
    for (const [, cat] of Object.entries(catalogues)) {
      for (const [code, spec] of Object.entries(cat.specs as Record<string, { status?: number }>)) {
        if (statusOf.has(code)) expect(spec.status, code).toBe(statusOf.get(code));
        statusOf.set(code, spec.status);
      }
    }
  });

  it('documents every code in docs/errors.md', () => {
    const missing = all.filter(({ code }) => !doc.includes(`\`${code}\``)).map((e) => e.code);
    expect(missing).toEqual([]);
  });

  it('stamps code and status on what it throws', () => {
    const err = ProtocolErrors.METEORZX_BODY_TOO_LARGE('too big', { cause: new Error('x') });
    expect(isMeteorError(err)).toBe(true);
    expect(err.code).toBe('METEORZX_BODY_TOO_LARGE');
    expect(err.status).toBe(413);
    expect(err.cause).toBeInstanceOf(Error);
  });
});
