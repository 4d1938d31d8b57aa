import { describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS, deterministicId, type BatchItem } from '../../protocols/index.js';
import { validateItem } from '../../gateway/pipeline/validate/validate.js';
import type { IngestContext } from '../../gateway/pipeline/ingestor.js';

const AT = '2026-03-10T10:00:00.000Z';
const http: IngestContext = { method: 'http', peer: '127.0.0.1:1' };
const mqtt: IngestContext = { method: 'mqtt', peer: 'dev-1', defaultSource: 'dev-1', mayUseSource: (s) => s === 'dev-1' || s.startsWith('dev-1-') };
const item = (value: unknown, index = 0): BatchItem => ({ index, value, bytes: JSON.stringify(value).length });

describe('validate stage', () => {
  it('passes a full event through unchanged and does not touch the input', () => {
    const value = { id: 'a', source: 'host-1', time: '2026-01-01T00:00:00Z', type: 'auth.login' };
    const frozen = Object.freeze({ ...value });
    expect(validateItem(item(frozen), http, DEFAULT_LIMITS, AT)).toEqual({ index: 0, id: 'a', source: 'host-1', arrived: value, event: value });
  });

  it('fills source from the ingress, time from receipt and a deterministic id', () => {
    const value = { type: 'door.open', data: { door: 3 } };
    const out = validateItem(item(value, 4), mqtt, DEFAULT_LIMITS, AT);
    expect(out.index).toBe(4);
    expect(out.event).toEqual({ type: 'door.open', data: { door: 3 }, source: 'dev-1', time: AT, id: deterministicId('dev-1', value) });
    expect(value).toEqual({ type: 'door.open', data: { door: 3 } });
    // A retry of the same payload at another moment gets the same id.
    expect(validateItem(item({ ...value }), mqtt, DEFAULT_LIMITS, '2026-03-11T00:00:00.000Z').event?.id).toBe(out.event?.id);
    expect(validateItem(item({ type: 'door.open', data: { door: 4 } }), mqtt, DEFAULT_LIMITS, AT).event?.id).not.toBe(out.event?.id);
  });

  it('rejects a top-level "__proto__" key, and keeps one under data as data, not as a prototype', () => {
    const top = validateItem(item(JSON.parse('{"type":"t","__proto__":{"polluted":true}}')), mqtt, DEFAULT_LIMITS, AT);
    expect(top.rejected?.reason).toMatch(/^__proto__: unknown field/);
    const value = JSON.parse('{"type":"t","data":{"__proto__":{"polluted":true}}}') as Record<string, unknown>;
    const event = validateItem(item(value), mqtt, DEFAULT_LIMITS, AT).event as unknown as Record<string, unknown> & { data: object };
    expect(Object.getPrototypeOf(event)).toBe(Object.prototype);
    expect(event.polluted).toBeUndefined();
    expect(Object.keys(event)).toEqual(['type', 'data', 'id', 'source', 'time']);
    expect(Object.getOwnPropertyDescriptor(event.data, '__proto__')?.value).toEqual({ polluted: true });
    expect(Object.keys(value)).toEqual(['type', 'data']); // the input is not changed
  });

  it('rejects with the reason: decode errors, envelope errors, no source, forbidden source', () => {
    expect(validateItem({ index: 2, bytes: 3, error: 'malformed JSON: x' }, http, DEFAULT_LIMITS, AT)).toEqual({
      index: 2,
      rejected: { stage: 'decode', reason: 'malformed JSON: x' },
    });
    // Over MQTT the topic's source is kept even when nothing of the payload could be read.
    expect(validateItem({ index: 0, bytes: 3, error: 'malformed JSON: x' }, mqtt, DEFAULT_LIMITS, AT)).toEqual({
      index: 0,
      source: mqtt.defaultSource,
      rejected: { stage: 'decode', reason: 'malformed JSON: x' },
    });
    const bad = validateItem(item({ id: 'x1', source: 'host-1', seq: 0 }), http, DEFAULT_LIMITS, AT);
    expect(bad).toMatchObject({ id: 'x1', source: 'host-1', rejected: { stage: 'validate' } });
    expect(bad.rejected?.reason).toContain('type: required');
    expect(bad.rejected?.reason).toContain('seq');
    expect(validateItem(item({ type: 't' }), http, DEFAULT_LIMITS, AT).rejected?.reason).toMatch(/^source: required/);
    const relay = validateItem(item({ type: 't', source: 'dev-2' }), mqtt, DEFAULT_LIMITS, AT);
    expect(relay).toMatchObject({ source: 'dev-2', rejected: { stage: 'validate', reason: 'source: this client may not send events for "dev-2"' } });
    expect(validateItem(item({ type: 't', source: 'dev-1-a' }), mqtt, DEFAULT_LIMITS, AT).event?.source).toBe('dev-1-a');
    // Another agent's chain record: rejected, whatever its source; its own, or one it may relay for, taken.
    const forged = validateItem(item({ type: 't', agent: 'edge-9', epoch: 'E1', seq: 3 }), mqtt, DEFAULT_LIMITS, AT);
    expect(forged).toMatchObject({ source: mqtt.defaultSource, rejected: { stage: 'validate', reason: 'agent: this client may not send chain records of "edge-9"' } });
    expect(validateItem(item({ type: 't', agent: mqtt.defaultSource, epoch: 'E1', seq: 3 }), mqtt, DEFAULT_LIMITS, AT).rejected).toBeUndefined();
    expect(validateItem(item({ type: 't', agent: 'dev-1-a', epoch: 'E1', seq: 3 }), mqtt, DEFAULT_LIMITS, AT).rejected).toBeUndefined();
    // Without a client identity (HTTP: tokens name no source) any agent is taken.
    expect(validateItem(item({ type: 't', source: 's', agent: 'edge-9', epoch: 'E1', seq: 3 }), http, DEFAULT_LIMITS, AT).rejected).toBeUndefined();
  });

  it('applies the configured limits', () => {
    const limits = { ...DEFAULT_LIMITS, maxEventBytes: 50 };
    const out = validateItem(item({ type: 't', source: 's', data: { x: 'y'.repeat(100) } }), http, limits, AT);
    expect(out.rejected?.reason).toContain('maxEventBytes');
  });
});
