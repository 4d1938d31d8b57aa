/** `host:port` as URLs and listen addresses write it: an IPv6 address in brackets (`[::1]:7400`, not `::1:7400`). */
export function hostPort(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}
