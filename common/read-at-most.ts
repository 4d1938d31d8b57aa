import { openSync, readSync, closeSync } from 'node:fs';
import { open } from 'node:fs/promises';

/**
 * The most a PEM file (a certificate, its key, a CA bundle) may hold. Debian's whole CA bundle is ≈ 220 KB;
 * a path naming a device or a log instead was read whole.
 */
export const MAX_PEM_BYTES = 4 * 1024 * 1024;

/**
 * The first `max` + 1 bytes of `file`: enough to tell it is too large. Reading a file whole first, a path
 * naming /dev/zero (or a device, a pipe that never ends) grew the process until the OOM killer came
 * (23 GB RSS on a 24 GB box), and a large file was read into memory whole before it was refused.
 */
export async function readAtMost(file: string, max: number): Promise<Buffer> {
  const handle = await open(file, 'r');
  try {
    const buf = Buffer.alloc(max + 1);
    let length = 0;
    while (length < buf.length) {
      const { bytesRead } = await handle.read(buf, length, buf.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    return buf.subarray(0, length);
  } finally {
    await handle.close();
  }
}

/** readAtMost, synchronously. */
export function readAtMostSync(file: string, max: number): Buffer {
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(max + 1);
    let length = 0;
    while (length < buf.length) {
      const bytesRead = readSync(fd, buf, length, buf.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    return buf.subarray(0, length);
  } finally {
    closeSync(fd);
  }
}

/** What a PEM file larger than MAX_PEM_BYTES is told. */
export const PEM_TOO_LARGE = 'larger than 4 MiB: not a PEM file';

/** A PEM file, whole; a RangeError saying PEM_TOO_LARGE past MAX_PEM_BYTES (errors of reading it as they come). */
export async function readPem(file: string): Promise<Buffer> {
  return wholeOrTooLarge(await readAtMost(file, MAX_PEM_BYTES));
}

/** readPem, synchronously. */
export function readPemSync(file: string): Buffer {
  return wholeOrTooLarge(readAtMostSync(file, MAX_PEM_BYTES));
}

function wholeOrTooLarge(buf: Buffer): Buffer {
  if (buf.length > MAX_PEM_BYTES) throw new RangeError(PEM_TOO_LARGE);
  return buf;
}
