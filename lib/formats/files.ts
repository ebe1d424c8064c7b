/**
 * File helpers shared by the readers and writers of zofo's on-disk formats (safetensors,
 * PEFT adapters, trajectory logs, trainer checkpoints): one way to name a bad or
 * unreadable file, and one crash-safe way to write one.
 */
import { randomBytes } from 'node:crypto';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ZofoError } from '../errors.js';

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

/**
 * Decodes a JSON header: strict UTF-8 (a lenient decode would hide corruption behind
 * U+FFFD), then JSON.parse. Returns the text too, for checks JSON.parse cannot make
 * (duplicate keys). Each failure is a ZOFO_BAD_FILE naming the file.
 */
export function parseJsonHeader(file: string, bytes: Uint8Array): { text: string; value: unknown } {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw badFile(file, 'header is not valid UTF-8');
  }
  try {
    return { text, value: JSON.parse(text) };
  } catch (err) {
    throw badFile(file, `header is not valid JSON (${(err as Error).message})`);
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
export async function writeFileAtomic(
  file: string,
  data: string | Uint8Array | readonly Uint8Array[],
  action = 'cannot write',
): Promise<void> {
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
