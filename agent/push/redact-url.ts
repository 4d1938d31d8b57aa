/**
 * The push URL as error messages may show it (`push.lastError` in /v1/status, the log): a password
 * given in the URL (`http://user:secret@gw/…`, `mqtt://user:secret@broker`) is replaced by `***`.
 */
export function redactUrl(url: string): string {
  const parsed = URL.parse(url);
  if (parsed === null || parsed.password === '') return url;
  parsed.password = '***';
  return parsed.href;
}
