import { describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../protocols/index.js';
import { rewriteTypeIdentifier } from '../../gateway/pipeline/rules/cel-source.js';
import { Rules } from '../../gateway/pipeline/rules/rules.js';

const ingest = { method: 'http' as const, peer: 'p', integrity: 'verified' as const };
const login = (outcome?: AuditEvent['outcome']): AuditEvent => ({ type: 'auth.login', source: 's', ...(outcome ? { outcome } : {}), data: { n: 7 } });

describe('rules stage', () => {
  it('rewrites the bare `type` identifier only', () => {
    expect(rewriteTypeIdentifier('type == "type" && data.type == type(1) && x.type')).toBe('_type == "type" && data.type == type(1) && x.type');
    expect(rewriteTypeIdentifier(`'it''s type' + r"\\type" + """type""" && type`)).toBe(`'it''s type' + r"\\type" + """type""" && _type`);
    expect(rewriteTypeIdentifier('types == 1 || mytype')).toBe('types == 1 || mytype');
  });

  it('reads a quote inside a // comment as comment text, so the type after it is still the field', () => {
    const source = 'outcome == "failure" // don\'t alert on "success"\n  && type == "auth.login" // it\'s the login\n';
    expect(rewriteTypeIdentifier(source)).toBe(source.replace('&& type', '&& _type'));
    const rules = new Rules([{ name: 'commented', if: source, tag: 'x' }]);
    expect(rules.evaluate(login('failure'), ingest).tags).toEqual(['x']);
    expect(rules.evaluate({ ...login('failure'), type: 'auth.logout' }, ingest).tags).toEqual([]);
    // A slash in a string is no comment.
    expect(rewriteTypeIdentifier('data.path == "//" && type == "a"')).toBe('data.path == "//" && _type == "a"');
  });

  it('runs matches as RE2 does: linear time, so no backreferences; both call forms', () => {
    expect(rewriteTypeIdentifier('data.s.matches("x") && matches(type, "y") && data.matches == "z"')).toBe(
      'data.s._matches("x") && _matches(_type, "y") && data.matches == "z"',
    );
    const rules = new Rules([
      { name: 'member', if: 'data.s.matches("^(a+)+$")', tag: 'member' },
      { name: 'global', if: 'matches(type, "^auth[.]")', tag: 'global' },
      { name: 'backref', if: 'data.s.matches(r"(a)\\1")', tag: 'backref' },
      { name: 'field', if: 'has(data.matches) && data.matches == "z"', tag: 'field' },
    ]);
    // A backtracking engine takes seconds on this text, hours with a few more a.
    const verdict = rules.evaluate({ ...login(), data: { s: `${'a'.repeat(22)}b`, matches: 'z' } }, ingest);
    expect(verdict.tags).toEqual(['global', 'field']);
    // RE2 has no backreferences: the pattern is an error (no match, counted), never a backtracking run.
    expect(verdict.errors).toEqual([{ rule: 'backref', message: expect.stringContaining('linear time') }]);
    expect(rules.evaluate({ ...login(), data: { s: 'aaaa' } }, ingest)).toMatchObject({ tags: ['member', 'global'], errors: [{ rule: 'backref' }] });
  });

  it('evaluates the DESIGN example and adds up actions in order', () => {
    const rules = new Rules([
      { name: 'root-fail', if: 'type == "auth.login" && outcome == "failure"', tag: 'security', alert: true },
      { name: 'big', if: 'has(data.n) && data.n > 5', tag: 'big' },
      { name: 'tagged', if: '"security" in tags', tag: 'seen-security' },
      { name: 'noise', if: 'type.startsWith("auth.") && outcome == "success"', drop: true },
      { name: 'noise2', if: 'outcome == "success"', drop: true },
      { name: 'chain', if: 'ingest.integrity == "verified" && event.source == "s"', tag: 'chained' },
    ]);
    expect(rules.evaluate(login('failure'), ingest)).toEqual({
      tags: ['security', 'big', 'seen-security', 'chained'],
      alerts: ['root-fail'],
      droppedBy: undefined,
      errors: [],
    });
    expect(rules.evaluate(login('success'), ingest)).toMatchObject({ tags: ['big', 'chained'], alerts: [], droppedBy: 'noise' });
    // No outcome at all: the comparison is false, not an error.
    expect(rules.evaluate(login(), ingest)).toMatchObject({ tags: ['big', 'chained'], droppedBy: undefined, errors: [] });
  });

  it('counts an evaluation error as not matched and reports it', () => {
    const rules = new Rules([{ name: 'num', if: 'data.n > 5', tag: 'x' }]);
    const verdict = rules.evaluate({ type: 't', data: { n: 'seven' } }, ingest);
    expect(verdict.tags).toEqual([]);
    expect(verdict.errors).toEqual([{ rule: 'num', message: expect.stringContaining('overload') }]);
  });

  it('fails at start, naming the rule, for bad CEL or a rule that does nothing', () => {
    expect(() => new Rules([{ name: 'broken', if: 'type ==', tag: 'x' }])).toThrow(
      expect.objectContaining({ code: 'METEORZX_RULE_INVALID', message: expect.stringContaining('rule "broken"') }),
    );
    expect(() => new Rules([{ name: 'unknown-fn', if: 'nope(type)', tag: 'x' }])).toThrow(/unknown-fn/);
    expect(() => new Rules([{ name: 'unknown-var', if: 'colour == "red"', tag: 'x' }])).toThrow(/unknown-var/);
    expect(() => new Rules([{ name: 'idle', if: 'true' }])).toThrow(/does nothing/);
  });
});
