/**
 * File helpers shared by the readers and writers of zofo's on-disk formats (safetensors,
 * PEFT adapters, trajectory logs, trainer checkpoints): one way to name a bad or
 * unreadable file, and one crash-safe way to write one.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { open, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ZofoError, type ZofoErrorCode } from '../errors.js';

/** A file whose contents are wrong: ZOFO_BAD_FILE, `<file>: <problem>`. */
export function badFile(file: string, problem: string, cause?: unknown): ZofoError {
  return new ZofoError('ZOFO_BAD_FILE', `${file}: ${problem}`, cause === undefined ? undefined : { cause });
}

/**
 * A file that cannot be opened, read or written: ZOFO_IO, `<file>: <action>: <reason>`.
 * A ZofoError is passed through as it is: it already names its file, and wrapping it
 * would hide its code (a bad tensor, say, is not an I/O failure).
 */
export function ioError(file: string, action: string, err: unknown): ZofoError {
  if (err instanceof ZofoError) return err;
  return new ZofoError('ZOFO_IO', `${file}: ${action}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}

/** A JSON object (not null, not an array). */
export const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A count or size: a non-negative safe integer. */
export const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** Limits on the JSON zofo reads from files (headers, configs, indexes). */
export interface JsonLimits {
  /** Deepest nesting of objects and arrays. */
  maxDepth: number;
  /** Most objects and arrays in all. */
  maxContainers: number;
  /** Most values (array elements and object members) in all. */
  maxValues: number;
}

/**
 * Generous for every file zofo reads (a safetensors header nests 3 deep; a tokenizer.json
 * holds a few hundred thousand values), while bounding what JSON.parse may build from a
 * hostile file: deep nesting or millions of tiny values cost far more memory than bytes.
 */
export const JSON_LIMITS: JsonLimits = { maxDepth: 64, maxContainers: 1 << 21, maxValues: 1 << 23 };

/**
 * Throws ZOFO_BAD_FILE when `text` (any text, valid JSON or not) nests deeper or holds
 * more containers or values than `limits` allow. One pass, constant work per character,
 * strings skipped: run before JSON.parse so a pathological file is refused cheaply.
 */
export function checkJsonLimits(file: string, text: string, limits: JsonLimits = JSON_LIMITS): void {
  let depth = 0,
    containers = 0,
    values = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      // a string: skip to its closing quote
      for (i++; i < text.length && text.charCodeAt(i) !== 0x22; i++) if (text.charCodeAt(i) === 0x5c) i++;
    } else if (c === 0x7b || c === 0x5b) {
      // { [
      if (++depth > limits.maxDepth) throw badFile(file, `JSON nests deeper than ${limits.maxDepth} levels`);
      if (++containers > limits.maxContainers) throw badFile(file, `JSON holds more than ${limits.maxContainers} objects and arrays`);
      values++;
    } else if (c === 0x7d || c === 0x5d) {
      // } ]
      depth--;
    } else if (c === 0x2c) {
      // ,
      if (++values > limits.maxValues) throw badFile(file, `JSON holds more than ${limits.maxValues} values`);
    }
  }
}

/**
 * Decodes a JSON header: strict UTF-8 (a lenient decode would hide corruption behind
 * U+FFFD), a check of its nesting and size (checkJsonLimits), then JSON.parse. Returns
 * the text too, for checks JSON.parse cannot make (duplicate keys). Each failure is a
 * ZOFO_BAD_FILE naming the file.
 */
export function parseJsonHeader(file: string, bytes: Uint8Array, limits: JsonLimits = JSON_LIMITS): { text: string; value: unknown } {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw badFile(file, 'header is not valid UTF-8');
  }
  checkJsonLimits(file, text, limits);
  try {
    return { text, value: JSON.parse(text) };
  } catch (err) {
    throw badFile(file, `header is not valid JSON (${(err as Error).message})`);
  }
}

/**
 * Opens `file` for reading without ever blocking on it: a FIFO opened plainly waits for
 * a writer forever (and holds a libuv thread while it does), and a device such as
 * /dev/zero never ends. stat first, then open with O_NONBLOCK, then fstat the handle (the
 * path may have changed in between). A directory or anything but a regular file is a
 * ZOFO_IO naming the path; a missing file is a ZOFO_IO whose cause has code ENOENT.
 */
export async function openRegularFile(file: string): Promise<{ handle: FileHandle; size: number }> {
  const refuse = (st: { isDirectory(): boolean }) =>
    new ZofoError('ZOFO_IO', `${file}: ${st.isDirectory() ? 'is a directory' : 'is not a regular file (a FIFO, socket or device)'}, not a file zofo can read`);
  let handle: FileHandle;
  try {
    const st = await stat(file);
    if (!st.isFile()) throw refuse(st);
    handle = await open(file, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  } catch (err) {
    throw ioError(file, 'cannot open', err);
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw refuse(st);
    return { handle, size: st.size };
  } catch (err) {
    await handle.close().catch(() => undefined);
    throw ioError(file, 'cannot stat', err);
  }
}

/**
 * The whole of a regular file of at most `maxBytes` (see openRegularFile): larger is a
 * ZOFO_BAD_FILE naming the limit, so no reader ever pulls an unbounded file into memory.
 */
export async function readRegularFile(file: string, maxBytes: number): Promise<Buffer> {
  const { handle, size } = await openRegularFile(file);
  try {
    if (size > maxBytes) throw badFile(file, `file is ${size} bytes, over the limit of ${maxBytes} bytes`);
    const bytes = Buffer.alloc(size);
    for (let done = 0; done < size;) {
      const { bytesRead } = await handle.read(bytes, done, size - done, done);
      if (bytesRead === 0) throw badFile(file, `file shrank while being read (${done} of ${size} bytes)`);
      done += bytesRead;
    }
    return bytes;
  } catch (err) {
    throw ioError(file, 'cannot read', err);
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/**
 * Parses JSON text read from `file`: checkJsonLimits first (a deeply nested value would
 * overflow the stack of anything that walks it later, JSON.stringify in an error message
 * included), then JSON.parse. Either failure is a ZOFO_BAD_FILE naming the file.
 */
export function parseJsonText(file: string, text: string, limits: JsonLimits = JSON_LIMITS): unknown {
  checkJsonLimits(file, text, limits);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw badFile(file, `not valid JSON (${(err as Error).message})`, err);
  }
}

/** The largest JSON file zofo reads whole (config.json, tokenizer.json, trainer.json). */
export const MAX_JSON_FILE_BYTES = 256 * 2 ** 20;

/** Options of readJsonFile. */
export interface ReadJsonOptions {
  /** The largest file accepted (default MAX_JSON_FILE_BYTES). */
  maxBytes?: number;
  /** The code for text that is not JSON, breaks JSON_LIMITS or is too large (default ZOFO_BAD_FILE). */
  badCode?: ZofoErrorCode;
  /** A missing file gives undefined (which no JSON text parses to) instead of a ZOFO_IO. */
  optional?: boolean;
}

/**
 * Reads and parses a JSON file: a regular file of bounded size (a FIFO or device in its
 * place is refused, never waited on; see readRegularFile), then parseJsonText. A missing
 * or unreadable file is a ZOFO_IO naming the path; bad text is `badCode` naming it.
 */
export async function readJsonFile(
  file: string,
  { maxBytes = MAX_JSON_FILE_BYTES, badCode = 'ZOFO_BAD_FILE', optional = false }: ReadJsonOptions = {},
): Promise<unknown> {
  try {
    let bytes: Buffer;
    try {
      bytes = await readRegularFile(file, maxBytes);
    } catch (err) {
      if ((err as { cause?: NodeJS.ErrnoException }).cause?.code !== 'ENOENT') throw err;
      if (optional) return undefined;
      throw new ZofoError('ZOFO_IO', `${file}: cannot read: no such file`, { cause: err });
    }
    return parseJsonText(file, bytes.toString('utf8'));
  } catch (err) {
    if (badCode !== 'ZOFO_BAD_FILE' && err instanceof ZofoError && err.code === 'ZOFO_BAD_FILE') throw new ZofoError(badCode, err.message, { cause: err });
    throw err;
  }
}

/** `<pid>-<random hex>`: unique among processes and among calls, for temp and set-aside names. */
export const uniqueSuffix = (): string => `${process.pid}-${randomBytes(6).toString('hex')}`;

// fs caps one write near 2 GiB, and a write may be short: loop in bounded chunks.
const CHUNK = 1 << 26;

/** Writes all of `bytes` at `position`, or at the handle's current position when it is omitted. */
export async function writeAll(handle: FileHandle, bytes: Uint8Array, position?: number): Promise<void> {
  for (let done = 0; done < bytes.length;) {
    const { bytesWritten } = await handle.write(bytes, done, Math.min(CHUNK, bytes.length - done), position === undefined ? null : position + done);
    done += bytesWritten;
  }
}

/** Makes a rename in `dir` durable. Best effort: Windows cannot open a directory. */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r').catch(() => undefined);
  await handle?.sync().catch(() => undefined);
  await handle?.close();
}

/**
 * Replaces `file` atomically: a temp file in the same directory (so rename cannot cross
 * file systems), written in full and fsynced, renamed over `file`, then the directory
 * fsynced. Readers see the old file or the new one, never a torn one. `data` may come in
 * parts, written in order, so that large tensors need not be joined in memory. On any
 * error the temp file is removed, an existing `file` is left untouched, and the error is
 * ZOFO_IO `<file>: <action>: <reason>`.
 */
export async function writeFileAtomic(file: string, data: string | Uint8Array | readonly Uint8Array[], action = 'cannot write'): Promise<void> {
  const parts = typeof data === 'string' ? [Buffer.from(data, 'utf8')] : data instanceof Uint8Array ? [data] : data;
  const tmp = join(dirname(file), `${basename(file)}.tmp-${uniqueSuffix()}`);
  let handle: FileHandle | undefined;
  try {
    handle = await open(tmp, 'wx');
    for (const part of parts) await writeAll(handle, part);
    await handle.sync();
    await handle.close();
    handle = undefined;
    await rename(tmp, file);
    await syncDirectory(dirname(file));
  } catch (err) {
    await handle?.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw ioError(file, action, err);
  }
}
