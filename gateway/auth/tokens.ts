import { createHash, timingSafeEqual } from 'node:crypto';

/** What a bearer token may do (DESIGN §5): ingest = POST, query = GETs, admin = everything. */
export type Scope = 'ingest' | 'query' | 'admin';

export interface TokenEntry {
  name: string;
  token: string;
  scopes: readonly Scope[];
}

export type TokenCheck =
  | { ok: true; name: string }
  | { ok: false; status: 401 | 403; reason: string };

const digest = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest();

/**
 * Bearer-token check for the HTTP API. Tokens are compared as SHA-256
 * digests with timingSafeEqual, and every configured token is compared on
 * every request, so neither a token's length nor its position in the list
 * shows in the response time.
 */
export class TokenAuth {
  private readonly entries: { name: string; digest: Buffer; scopes: ReadonlySet<Scope> }[];

  constructor(tokens: readonly TokenEntry[]) {
    this.entries = tokens.map((t) => ({ name: t.name, digest: digest(t.token), scopes: new Set(t.scopes) }));
  }

  /** No tokens configured: the API is open (allowed only on a loopback bind, see exposure.ts). */
  get enabled(): boolean {
    return this.entries.length > 0;
  }

  check(authorization: string | undefined, scope: Scope): TokenCheck {
    if (!this.enabled) return { ok: true, name: 'anonymous' };
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
    if (!m) return { ok: false, status: 401, reason: 'missing bearer token (Authorization: Bearer <token>)' };
    const given = digest(m[1] as string);
    let found: (typeof this.entries)[number] | undefined;
    for (const entry of this.entries) {
      // No early exit: the loop costs the same wherever the match is.
      if (timingSafeEqual(entry.digest, given) && found === undefined) found = entry;
    }
    if (found === undefined) return { ok: false, status: 401, reason: 'invalid token' };
    if (!found.scopes.has(scope) && !found.scopes.has('admin')) {
      return { ok: false, status: 403, reason: `token "${found.name}" lacks the ${scope} scope` };
    }
    return { ok: true, name: found.name };
  }
}
