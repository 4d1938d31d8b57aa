import { constants, gunzip, inflate, inflateRaw, type ZlibOptions } from 'node:zlib';
import { promisify } from 'node:util';
import { bodyFormat, ProtocolErrors, unsupportedContentType, type BodyFormat } from '../../protocols/index.js';

const gunzipAsync = promisify(gunzip);
const inflateAsync = promisify(inflate);
const inflateRawAsync = promisify(inflateRaw);
/** Bounds of the output chunk a decompression fills at a time, bytes. */
const MIN_CHUNK = 64 * 1024;
const MAX_CHUNK = 1024 * 1024;

/**
 * Decompresses a request body per Content-Encoding, never inflating past
 * `maxBytes` (a 10 KB gzip bomb must not become gigabytes in memory).
 */
export async function decodeContent(raw: Buffer, encoding: string | undefined, maxBytes: number): Promise<Buffer> {
  const enc = (encoding ?? 'identity').trim().toLowerCase();
  if (enc === 'identity' || enc === '') return raw;
  if (enc !== 'gzip' && enc !== 'x-gzip' && enc !== 'deflate') {
    throw ProtocolErrors.METEORZX_UNSUPPORTED_MEDIA_TYPE(`unsupported Content-Encoding "${enc.slice(0, 40)}" (use gzip, deflate or none)`);
  }
  // One byte over the limit is enough to know it is too large. Output chunks near the body's size: with
  // zlib's 16 KiB, a 400 KB NDJSON body is 26 round trips to the thread pool and 3× the CPU (docs/performance.md).
  const opts = { maxOutputLength: maxBytes + 1, chunkSize: Math.max(constants.Z_MIN_CHUNK, Math.min(maxBytes + 1, MAX_CHUNK, Math.max(MIN_CHUNK, raw.byteLength * 8))) };
  let out: Buffer;
  try {
    out = enc === 'deflate' ? await inflateEither(raw, opts) : await gunzipAsync(raw, opts);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
      throw ProtocolErrors.METEORZX_BODY_TOO_LARGE(`decompressed body is over the limit of ${maxBytes} bytes (maxBodyBytes)`);
    }
    throw ProtocolErrors.METEORZX_BODY_UNREADABLE(`body is not valid ${enc}: ${(err as Error).message}`);
  }
  if (out.byteLength > maxBytes) {
    throw ProtocolErrors.METEORZX_BODY_TOO_LARGE(`decompressed body is over the limit of ${maxBytes} bytes (maxBodyBytes)`);
  }
  return out;
}

/**
 * `deflate` is the zlib format (RFC 9110 §8.4.1.2), but some clients (IIS-era stacks, zlib's deflateRaw
 * used by mistake) send the bare deflate stream: one that has no zlib header is read as that, as curl and
 * browsers do, instead of a 400 "incorrect header check".
 */
async function inflateEither(raw: Buffer, opts: ZlibOptions): Promise<Buffer> {
  // A zlib header: CMF 0x?8 (deflate method), and CMF·256 + FLG a multiple of 31.
  const zlibHeader = raw.length >= 2 && ((raw[0] as number) & 0x0f) === 8 && (((raw[0] as number) << 8) | (raw[1] as number)) % 31 === 0;
  if (!zlibHeader) return inflateRawAsync(raw, opts);
  try {
    return await inflateAsync(raw, opts);
  } catch (err) {
    // Past the size limit is an answer of its own; otherwise a bare stream may start like a zlib header by chance.
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw err;
    return inflateRawAsync(raw, opts).catch(() => Promise.reject(err as Error));
  }
}

/** The body format for a Content-Type, or a 415 naming the ones we take. */
export function requireFormat(contentType: string | undefined): BodyFormat {
  const format = bodyFormat(contentType);
  if (format === undefined) throw unsupportedContentType(contentType);
  return format;
}
