/**
 * In CEL `type` is a built-in (the type of types, and `type(x)`), so a rule
 * written as DESIGN §5 shows it — `type == "auth.login"` — would compare
 * the built-in with a string. Rules see the event's `type` field as the
 * variable `_type` instead; this rewrites every bare `type` identifier
 * (not a field access `x.type`, not a call `type(x)`, not inside a string
 * or a `//` comment).
 */
export const TYPE_VARIABLE = '_type';

/**
 * CEL's `matches` is RE2: linear in the text, whatever the pattern. The
 * CEL library runs it as a JavaScript RegExp, which backtracks: a rule
 * `data.s.matches("^(a+)+$")` took hours on one event of 40 `a`s and a `b`,
 * with the whole gateway stopped meanwhile. So calls to `matches` (both
 * forms, `s.matches(p)` and `matches(s, p)`) are rewritten to this function,
 * which rules.ts runs on V8's linear-time engine.
 */
export const MATCHES_FUNCTION = '_matches';

const IDENT_START = /[A-Za-z_]/;
const IDENT_PART = /[A-Za-z0-9_]/;
const STRING_PREFIXES = new Set(['r', 'R', 'b', 'B', 'rb', 'rB', 'Rb', 'RB', 'br', 'bR', 'Br', 'BR']);

export function rewriteTypeIdentifier(source: string): string {
  let out = '';
  let i = 0;
  while (i < source.length) {
    const c = source[i] as string;
    if (source.startsWith('//', i)) {
      // A comment, to the end of its line: copied as it is, so that a quote in it (`// don't`) opens no string.
      const eol = source.indexOf('\n', i);
      const end = eol === -1 ? source.length : eol;
      out += source.slice(i, end);
      i = end;
    } else if (c === '"' || c === "'") {
      const end = stringEnd(source, i, false);
      out += source.slice(i, end);
      i = end;
    } else if (IDENT_START.test(c)) {
      let j = i + 1;
      while (j < source.length && IDENT_PART.test(source[j] as string)) j += 1;
      const ident = source.slice(i, j);
      const next = source[j];
      if ((next === '"' || next === "'") && STRING_PREFIXES.has(ident)) {
        const end = stringEnd(source, j, /r/i.test(ident));
        out += source.slice(i, end);
        i = end;
        continue;
      }
      const isField = /\.\s*$/.test(out);
      const isCall = /^\s*\(/.test(source.slice(j));
      if (ident === 'type' && !isField && !isCall) out += TYPE_VARIABLE;
      else if (ident === 'matches' && isCall) out += MATCHES_FUNCTION;
      else out += ident;
      i = j;
    } else {
      out += c;
      i += 1;
    }
  }
  return out;
}

/** Index just past the string literal opening at `start` (a quote). Unterminated: the end of the source. */
function stringEnd(source: string, start: number, raw: boolean): number {
  const quote = source[start] as string;
  const triple = source.startsWith(quote.repeat(3), start);
  const close = triple ? quote.repeat(3) : quote;
  let i = start + close.length;
  while (i < source.length) {
    if (!raw && source[i] === '\\') {
      i += 2;
      continue;
    }
    if (source.startsWith(close, i)) return i + close.length;
    i += 1;
  }
  return source.length;
}
