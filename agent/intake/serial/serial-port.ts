import { read as fsRead } from 'node:fs';
import { promisify } from 'node:util';

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
  const binding = eofAsDisconnect(SerialPort.binding as unknown as Binding);
  // `binding` is not in SerialPort's option type but is honoured (it overrides the detected one).
  return ({ path, baudRate }) => new SerialPort({ path, baudRate, autoOpen: false, binding } as unknown as ConstructorParameters<typeof SerialPort>[0]);
}

interface Binding {
  open(options: unknown): Promise<UnixPortBinding>;
  list(): Promise<unknown>;
}

/** What the unix bindings (linux, darwin) expose of an open port. */
interface UnixPortBinding {
  fd?: number | null;
  readonly isOpen: boolean;
  poller?: { once(event: 'readable', callback: (err?: Error | null) => void): unknown };
  read(buffer: Buffer, offset: number, length: number): Promise<{ bytesRead: number; buffer: Buffer }>;
}

const readAsync = promisify(fsRead);

const canceled = (): Error => Object.assign(new Error('Port is not open'), { canceled: true });

/**
 * The unix bindings of `@serialport/bindings-cpp` (13.0.0, still open
 * upstream: serialport/bindings-cpp#162) retry a read that returns 0 bytes
 * at once, for ever. A tty whose device is gone (a USB adapter unplugged, a
 * pty whose other end closed) is hung up, and a hung-up tty reads 0 bytes
 * (end of file) from then on: the binding spins on it, burning CPU, and
 * never reports the disconnect, so the port stays "open" and is never
 * reopened. Whether the loss shows as a poll error (reported) or as an end
 * of file (lost) is a race with the kernel's hangup, lost more often under
 * load. The port is opened non-blocking with VMIN=1, so "no data yet" is
 * EAGAIN, never 0: here 0 bytes is a disconnect, as the binding interface
 * means it (any read error other than `canceled` closes the stream with a
 * disconnect, and the intake reopens the path with backoff).
 */
function eofAsDisconnect(binding: Binding): Binding {
  return {
    list: () => binding.list(),
    async open(options) {
      const port = await binding.open(options);
      if (typeof port.fd === 'number' && port.poller !== undefined) {
        port.read = (buffer, offset, length) => readUntilData(port, buffer, offset, length);
      }
      return port;
    },
  };
}

async function readUntilData(port: UnixPortBinding, buffer: Buffer, offset: number, length: number): Promise<{ bytesRead: number; buffer: Buffer }> {
  for (;;) {
    const fd = port.fd;
    if (!port.isOpen || typeof fd !== 'number') throw canceled();
    let bytesRead: number;
    try {
      ({ bytesRead } = await readAsync(fd, buffer, offset, length, null));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EAGAIN' && code !== 'EWOULDBLOCK' && code !== 'EINTR') throw err;
      if (!port.isOpen || port.poller === undefined) throw canceled();
      const poller = port.poller;
      // A poll error (the device gone while waiting) rejects, and so closes the stream as a disconnect.
      await new Promise<void>((resolve, reject) => poller.once('readable', (e) => (e ? reject(e) : resolve())));
      continue;
    }
    if (bytesRead > 0) return { bytesRead, buffer };
    if (!port.isOpen) throw canceled();
    throw Object.assign(new Error('serial device hung up (read returned end of file)'), { code: 'EOF', disconnect: true });
  }
}
