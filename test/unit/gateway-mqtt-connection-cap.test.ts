import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { MqttConnectionCap } from '../../common/mqtt-connection-cap.js';

/** mqtt.maxConnections (connection-cap.ts), with fake sockets: who gives way, who is refused. */

let port = 40_000;
class FakeSocket extends EventEmitter {
  destroyed = false;
  readonly remoteAddress = '127.0.0.1';
  readonly remotePort = (port += 1);
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.emit('close');
  }
}
const socket = (): FakeSocket & Socket => new FakeSocket() as FakeSocket & Socket;

describe('MqttConnectionCap', () => {
  it('past the bound, the connection waiting longest without an accepted CONNECT gives way to the newcomer', () => {
    const cap = new MqttConnectionCap({ max: 3, configKey: 'mqtt.maxConnections', metric: 'm' });
    const [a, b, c, d] = [socket(), socket(), socket(), socket()];
    for (const s of [a, b, c]) {
      cap.admit(s);
      cap.handled(s, s);
    }
    cap.connected(a); // a device: never gives way
    cap.admit(d);
    expect([a, b, c, d].map((s) => s.destroyed)).toEqual([false, true, false, false]);
  });

  it('refuses the newcomer, counted, when every connection is a client', () => {
    let refused = 0;
    const warnings: unknown[] = [];
    const cap = new MqttConnectionCap({ max: 2, configKey: 'mqtt.maxConnections', metric: 'm', onRefused: () => (refused += 1), logger: { warn: (o) => warnings.push(o) } });
    const [a, b, c] = [socket(), socket(), socket()];
    for (const s of [a, b]) {
      cap.admit(s);
      cap.handled(s, s);
      cap.connected(s);
    }
    cap.admit(c);
    expect([a.destroyed, b.destroyed, c.destroyed]).toEqual([false, false, true]);
    expect(refused).toBe(1);
    expect(warnings).toEqual([{ limit: 2, refused: 1 }]);
    // A client that leaves frees its slot.
    a.destroy();
    const e = socket();
    cap.admit(e);
    expect(e.destroyed).toBe(false);
  });
});
