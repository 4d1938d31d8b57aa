/**
 * `relayFor` patterns (DESIGN §5), for the gateway's MQTT users and the edge
 * broker's devices: `*` matches any run of characters, `?` one character;
 * everything else is literal. Source ids have no separators (they match
 * [A-Za-z0-9._:-]), so a path-aware glob library would add nothing but rules
 * that do not apply here.
 */
export function globToRegExp(pattern: string): RegExp {
  let re = '^';
  for (const ch of pattern) {
    if (ch === '*') re += '.*';
    else if (ch === '?') re += '.';
    else re += ch.replace(/[.+^${}()|[\]\\-]/g, '\\$&');
  }
  return new RegExp(`${re}$`);
}

/** One predicate for a list of patterns; an empty list matches nothing. */
export function globMatcher(patterns: readonly string[]): (value: string) => boolean {
  const res = patterns.map(globToRegExp);
  return (value) => res.some((re) => re.test(value));
}
