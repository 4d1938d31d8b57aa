/**
 * Credentials in a URL (`http://user:secret@gw/…`, `mqtt://user:secret@broker`): the agent's push and the
 * gateway's alert webhook send them, and neither may show the password.
 */

/** The URL as error messages and the log may show it: a password in it replaced by `***`. */
export function redactUrl(url: string): string {
  const parsed = URL.parse(url);
  if (parsed === null || parsed.password === '') return url;
  parsed.password = '***';
  return parsed.href;
}

/**
 * The HTTP Basic `authorization` of a URL's user and password, as curl, Vector's http sink and Go's client
 * send them (undici drops them: its Pool and request take the origin only); undefined without either.
 */
export function basicAuthOf(url: URL): string | undefined {
  if (url.username === '' && url.password === '') return undefined;
  const credentials = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
  return `Basic ${Buffer.from(credentials, 'utf8').toString('base64')}`;
}
