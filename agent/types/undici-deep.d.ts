// The two files of undici the agent's HTTP push loads (agent/push/undici-pool.ts): CommonJS, untyped.
declare module 'undici/lib/dispatcher/pool.js' {
  const Pool: unknown;
  export default Pool;
}
declare module 'undici/lib/api/api-request.js' {
  const request: unknown;
  export default request;
}
