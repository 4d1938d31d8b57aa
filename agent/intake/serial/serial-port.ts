/**
 * The part of a `serialport` stream the intake uses, so tests can hand in
 * `SerialPortMock` (binding-mock) and the agent the real bindings.
 */
export interface SerialPortLike {
  readonly isOpen: boolean;
  open(callback: (err: Error | null) => void): void;
  close(callback?: (err: Error | null) => void): void;
  pause(): unknown;
  resume(): unknown;
  on(event: 'data', listener: (chunk: Buffer) => void): unknown;
  on(event: 'close', listener: (err?: Error | null) => void): unknown;
  on(event: 'error', listener: (err: Error) => void): unknown;
  removeAllListeners(): unknown;
}

export interface SerialPortSpec {
  path: string;
  baudRate: number;
}

/** Makes an unopened port; called again for every reopen (a vanished device's stream is not reused). */
export type SerialPortFactory = (spec: SerialPortSpec) => SerialPortLike;

/**
 * The real bindings (`serialport`, prebuilt N-API for linux x64/arm/arm64),
 * loaded only when a serial intake is configured: loading them costs memory
 * and a native module every other agent can do without.
 */
export async function loadSerialPortFactory(): Promise<SerialPortFactory> {
  const { SerialPort } = await import('serialport');
  return ({ path, baudRate }) => new SerialPort({ path, baudRate, autoOpen: false });
}
