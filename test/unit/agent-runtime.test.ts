import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent } from '../../agent/agent.js';
import { parseAgentConfig } from '../../agent/config.js';
import { FakeBuffer } from './agent-fake-buffer.js';

/** The Agent wiring, in memory: start order, status, the listening addresses, close order and idempotence. */

class RecordingBuffer extends FakeBuffer {
  readonly calls: string[] = [];
  override async open(): Promise<void> {
    this.calls.push('open');
  }
  override async close(): Promise<void> {
    this.calls.push('close');
  }
}

const agents: Agent[] = [];
afterEach(async () => {
  await Promise.all(agents.splice(0).map((a) => a.close()));
});

function makeAgent(raw: Record<string, unknown>, buffer: FakeBuffer): Agent {
  const config = parseAgentConfig({ id: 'unit-agent', intake: { http: { listen: '127.0.0.1:0' } }, pull: { listen: '127.0.0.1:0' }, ...raw });
  const agent = new Agent(config, { logger: pino({ level: 'silent' }), createBuffer: () => buffer });
  agents.push(agent);
  return agent;
}

describe('Agent', () => {
  it('starts the buffer, intake and status server; answers status; closes once, buffer last', async () => {
    const buffer = new RecordingBuffer('unit-agent');
    const agent = makeAgent({}, buffer);
    const { intake, pull } = await agent.start();
    expect(buffer.calls).toEqual(['open']);
    const res = await fetch(`http://127.0.0.1:${intake?.port}/v1/events`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify([{ type: 'a' }, { type: 'b' }]) });
    expect(await res.json()).toEqual({ accepted: 2, duplicates: 0, rejected: [] });
    const status = (await (await fetch(`http://127.0.0.1:${pull.port}/v1/status`)).json()) as Record<string, unknown>;
    expect(status).toMatchObject({ id: 'unit-agent', head: 2, delivered: 0, push: { state: 'disabled', lastError: null } });
    await Promise.all([agent.close(), agent.close()]);
    await agent.close();
    expect(buffer.calls).toEqual(['open', 'close']);
    await expect(fetch(`http://127.0.0.1:${intake?.port}/v1/events`, { method: 'POST', body: '{}' })).rejects.toThrow();
  });

  it('a failed start (port in use) closes what it opened and rethrows a typed error', async () => {
    const first = makeAgent({}, new FakeBuffer('unit-agent'));
    const { intake } = await first.start();
    const buffer = new RecordingBuffer('unit-agent');
    const second = makeAgent({ intake: { http: { listen: `127.0.0.1:${intake?.port}` } } }, buffer);
    await expect(second.start()).rejects.toMatchObject({ code: 'METEORZX_PORT_IN_USE' });
    expect(buffer.calls).toEqual(['open', 'close']);
  });
});
