import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { cmdTopic, eventsTopic, isBridgeNotification, isMeteorError, parseTopic, statusTopic, tryParseTopic } from '../../../protocols/index.js';

describe('topics', () => {
  it('builds and parses the three kinds', () => {
    expect(eventsTopic('dev-1')).toBe('audit/dev-1/events');
    expect(statusTopic('host.17')).toBe('audit/host.17/status');
    expect(cmdTopic('a:b_c')).toBe('audit/a:b_c/cmd');
    expect(parseTopic('audit/dev-1/events')).toEqual({ source: 'dev-1', kind: 'events' });
  });

  it('rejects wildcards, bad sources, extra levels and unknown kinds', () => {
    for (const t of ['audit/+/events', 'audit/#', 'audit/dev/events/x', 'audit//events', 'audit/dev/other', 'other/dev/events', 'audit/dev dev/events', `audit/${'a'.repeat(129)}/events`, '']) {
      expect(() => parseTopic(t), t).toThrowError(/invalid topic/);
    }
    expect(() => eventsTopic('+')).toThrowError(/invalid source/);
    expect(() => eventsTopic('a/b')).toThrowError(/invalid source/);
  });

  it('knows a Mosquitto bridge notification topic, and nothing else under $SYS', () => {
    expect(isBridgeNotification('$SYS/broker/connection/vm.gw/state')).toBe(true);
    for (const t of ['$SYS/broker/connection/+/state', '$SYS/broker/connection/#', '$SYS/broker/connection/a/b/state', '$SYS/broker/connection//state', '$SYS/broker/uptime', 'audit/a/events']) {
      expect(isBridgeNotification(t), t).toBe(false);
    }
  });

  it('never throws anything but its typed error, and round-trips valid sources', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (t) => {
        try {
          const p = parseTopic(t);
          expect(`audit/${p.source}/${p.kind}`).toBe(t);
        } catch (err) {
          expect(isMeteorError(err)).toBe(true);
          expect(tryParseTopic(t)).toBeUndefined();
        }
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(fc.stringMatching(/^[A-Za-z0-9._:-]{1,128}$/), fc.constantFrom('events', 'status', 'cmd'), (s, k) => {
        expect(parseTopic(`audit/${s}/${k}`)).toEqual({ source: s, kind: k });
      }),
    );
  });
});
