import { describe, expect, it } from 'vitest';
import { decodeBatch, DEFAULT_LIMITS } from '../../../protocols/index.js';
import { readItemHead } from '../../../protocols/item-head.js';

const head = (text: string) => {
  const bytes = Buffer.from(text);
  return readItemHead(bytes, 0, bytes.byteLength);
};

describe('readItemHead: the id and chain fields of an event refused unparsed', () => {
  it('reads the top-level string and number fields it looks for, skipping nested values whatever they hold', () => {
    const hash = 'a'.repeat(64);
    const text = JSON.stringify({
      agent: 'ag-1',
      data: { id: 'nested', seq: 99, list: ['}', '{', '"', { epoch: 'x' }], s: 'quote " and \\ and }' },
      epoch: 'E1',
      hash,
      id: 'ev-\u00e9-1',
      prev: 'b'.repeat(64),
      seq: 7,
      source: 'dev-1',
      type: 'big',
    });
    expect(head(text)).toEqual({ agent: 'ag-1', epoch: 'E1', hash, id: 'ev-é-1', prev: 'b'.repeat(64), seq: 7, source: 'dev-1' });
    expect(head(' { "id" : "x\\u0041" , "seq": 1e0, "agent": null }')).toEqual({ id: 'xA', seq: 1 });
  });

  it('reads nothing from what is not an object, or an object cut short', () => {
    expect(head('[1,2]')).toBeUndefined();
    expect(head('{"id":"a","data":{"x":1}')).toBeUndefined();
    expect(head('{"id":"a" "seq":1}')).toBeUndefined();
  });

  it('is how the decoder describes an NDJSON line or array item over maxEventBytes', () => {
    const big = JSON.stringify({ id: 'big-1', source: 's', agent: 'ag', epoch: 'E', seq: 2, hash: 'c'.repeat(64), type: 't', data: { pad: 'x'.repeat(2000) } });
    const limits = { ...DEFAULT_LIMITS, maxEventBytes: 1024 };
    const [line] = decodeBatch(Buffer.from(`${big}\n`), 'ndjson', limits);
    expect(line).toMatchObject({ error: expect.stringMatching(/maxEventBytes/), head: { id: 'big-1', seq: 2, agent: 'ag' } });
    const [, item] = decodeBatch(Buffer.from(`[{"type":"a"},${big}]`), 'json', limits);
    expect(item).toMatchObject({ error: expect.stringMatching(/maxEventBytes/), head: { id: 'big-1', seq: 2, hash: 'c'.repeat(64) } });
  });
});
