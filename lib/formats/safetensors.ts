/**
 * safetensors files (huggingface/safetensors): an 8-byte little-endian header length N,
 * N bytes of JSON header, then the data section, whose tensors tile it exactly:
 *
 *   [u64 N][header: {"__metadata__": {...}, "name": {"dtype", "shape", "data_offsets"}, ...}][data]
 *
 * Every file is treated as hostile: the header is checked in full (safetensors'
 * `validate`) before any tensor byte is read, and each failure is a ZOFO_BAD_FILE that
 * names the file and the problem. Only the header passes through the JS heap; tensor
 * bytes are read by native code (native/io/mapped_file.h), which checks bounds again.
 */
import { stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { cpuBinding, type CpuBinding } from '../binding.js';
import { awaitNative, describe, invalidArg, rethrowNative, ZofoError, type ZofoErrorCode } from '../errors.js';
import { badFile, checkJsonLimits, ioError, isCount, isRecord, openRegularFile, readRegularFile, writeFileAtomic } from './files.js';
import { METADATA_KEY, numel, parseHeader, WIDTH, type ParsedHeader, type SafetensorsDtype, type TensorInfo } from './safetensors-header.js';

export type { SafetensorsDtype, TensorInfo } from './safetensors-header.js';

// The native dtype codes (native/common/dtype.h DType).
const NATIVE_DTYPE: Record<SafetensorsDtype, number> = { F32: 0, BF16: 1, F16: 2 };

/** safetensors' own limit on the header size. */
export const MAX_HEADER_BYTES = 100_000_000;

type NativeFile = InstanceType<CpuBinding['MappedFile']>;

/** Reads the length prefix and the header with fs (never the data). A FIFO, device or directory is refused before any read. */
async function readHeader(file: string): Promise<{ size: number; headerLength: number; header: Uint8Array }> {
  const { handle, size } = await openRegularFile(file);
  try {
    if (size < 8) throw badFile(file, `file is ${size} bytes, shorter than the 8-byte header length`);
    const prefix = Buffer.alloc(8);
    await handle.read(prefix, 0, 8, 0);
    const n = prefix.readBigUInt64LE(0);
    if (n > BigInt(MAX_HEADER_BYTES)) throw badFile(file, `header length ${n} exceeds the limit of ${MAX_HEADER_BYTES} bytes`);
    if (n > BigInt(size - 8)) throw badFile(file, `header length ${n} runs past the end of the file (${size} bytes)`);
    const header = Buffer.alloc(Number(n));
    const { bytesRead } = await handle.read(header, 0, header.length, 8);
    if (bytesRead !== header.length) throw badFile(file, `file shrank while reading its header`);
    return { size, headerLength: Number(n), header };
  } catch (err) {
    throw ioError(file, 'cannot read', err);
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/** Where one tensor's bytes lie in a safetensors file (SafetensorsFile.location). */
export interface TensorLocation {
  file: string;
  /** The file's size in bytes, as validated at open. */
  fileSize: number;
  /** Absolute byte offset of the tensor's first element. */
  offset: number;
  nbytes: number;
  dtype: SafetensorsDtype;
}

/** Headers up to this size are parsed inline (well under a millisecond per KiB); larger ones in a worker thread. */
export const INLINE_HEADER_BYTES = 1 << 20;

// The worker's module, as compiled (.js) or as run from source by a TypeScript loader (.ts).
const HEADER_WORKER = new URL(`./safetensors-header-worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url);

/** parseHeader, in a worker thread when the header is large: the event loop stays free. */
async function parseHeaderOffThread(file: string, header: Uint8Array, dataLength: number): Promise<ParsedHeader> {
  if (header.length <= INLINE_HEADER_BYTES) return parseHeader(file, header, dataLength);
  type Answer = { tensors: [string, TensorInfo][]; metadata: Record<string, string> } | { error: { code: ZofoErrorCode; message: string } };
  const answer = await new Promise<Answer>((resolve, reject) => {
    const worker = new Worker(HEADER_WORKER, { workerData: { file, header, dataLength } });
    worker.once('message', (m: Answer) => {
      resolve(m);
      void worker.terminate();
    });
    worker.once('error', (err) => reject(new ZofoError('ZOFO_INTERNAL', `${file}: the header parser thread failed: ${err.message}`, { cause: err })));
    worker.once('exit', (code) => reject(new ZofoError('ZOFO_INTERNAL', `${file}: the header parser thread exited (${code}) without an answer`)));
  });
  if ('error' in answer) throw new ZofoError(answer.error.code, answer.error.message);
  return { tensors: new Map(answer.tensors), metadata: answer.metadata };
}

/** An open safetensors file. Call close() when done (a finalizer is only a safety net). */
export class SafetensorsFile {
  /** @internal use openSafetensors(). */
  constructor(
    readonly file: string,
    readonly tensors: ReadonlyMap<string, TensorInfo>,
    readonly metadata: Readonly<Record<string, string>>,
    private readonly dataStart: number,
    private native: NativeFile | undefined,
  ) {}

  /** Whether close() has been called. */
  get closed(): boolean {
    return this.native === undefined;
  }

  private locate(name: string, what: string): { info: TensorInfo; native: NativeFile; offset: number; nbytes: number } {
    if (!this.native) throw new ZofoError('ZOFO_CLOSED', `${what}(${JSON.stringify(name)}): ${this.file} was closed`);
    const info = this.tensors.get(name);
    if (!info) throw new ZofoError('ZOFO_INVALID_ARG', `${what}: no tensor ${JSON.stringify(name)} in ${this.file}`);
    const [begin, end] = info.dataOffsets;
    return { info, native: this.native, offset: this.dataStart + begin, nbytes: end - begin };
  }

  /**
   * Where a tensor's bytes lie in the file: its absolute byte offset and length, its
   * dtype, and the file's size when its header was validated. For loaders that read
   * straight into their own buffers.
   */
  location(name: string): TensorLocation {
    const { info, native, offset, nbytes } = this.locate(name, 'location');
    return { file: this.file, fileSize: native.size, offset, nbytes, dtype: info.dtype };
  }

  /** A tensor's values converted to fp32 (exact for F16/BF16), row-major: shape `info.shape`. */
  async read(name: string): Promise<Float32Array> {
    const { info, native, offset, nbytes } = this.locate(name, 'read');
    const out = new Float32Array(nbytes / WIDTH[info.dtype]);
    await awaitNative(() => native.readF32(offset, nbytes, NATIVE_DTYPE[info.dtype], out), `read ${JSON.stringify(name)} from ${this.file}`);
    return out;
  }

  /** A tensor's bytes as stored (little-endian `info.dtype`). */
  async readRaw(name: string): Promise<Uint8Array> {
    const { native, offset, nbytes } = this.locate(name, 'readRaw');
    const out = new Uint8Array(nbytes);
    await awaitNative(() => native.readRaw(offset, out), `readRaw ${JSON.stringify(name)} from ${this.file}`);
    return out;
  }

  /** Releases the file (unmapped once in-flight reads end). Further reads throw ZOFO_CLOSED. */
  close(): void {
    this.native?.close();
    this.native = undefined;
  }
}

/** Opens a safetensors file, validating its whole header first (ZOFO_BAD_FILE on any defect). */
export async function openSafetensors(file: string): Promise<SafetensorsFile> {
  if (typeof file !== 'string' || file.length === 0) throw invalidArg('a file path', 'file', file);
  const { size, headerLength, header } = await readHeader(file);
  const dataStart = 8 + headerLength;
  const { tensors, metadata } = await parseHeaderOffThread(file, header, size - dataStart);
  let native: NativeFile;
  try {
    native = new (cpuBinding().MappedFile)(file);
  } catch (err) {
    rethrowNative(err, 'openSafetensors');
  }
  if (native.size !== size) {
    native.close();
    throw badFile(file, `file changed size while being opened (${size} → ${native.size} bytes)`);
  }
  return new SafetensorsFile(file, tensors, metadata, dataStart, native);
}

// ---- sharded checkpoints ----

export const INDEX_FILE = 'model.safetensors.index.json';
export const SINGLE_FILE = 'model.safetensors';

/** A model's weights: one model.safetensors or the shards of model.safetensors.index.json. */
export class Checkpoint {
  /** Every tensor of every shard. */
  readonly tensors: ReadonlyMap<string, TensorInfo>;

  /** @internal use openCheckpoint(). */
  constructor(
    readonly dir: string,
    readonly shards: readonly SafetensorsFile[],
    private readonly shardOf: ReadonlyMap<string, SafetensorsFile>,
  ) {
    this.tensors = new Map([...shardOf].map(([name, shard]) => [name, shard.tensors.get(name) as TensorInfo]));
  }

  /** The shard holding `name`. */
  fileOf(name: string): SafetensorsFile {
    const shard = this.shardOf.get(name);
    if (!shard) throw new ZofoError('ZOFO_INVALID_ARG', `no tensor ${JSON.stringify(name)} in the checkpoint ${this.dir}`);
    return shard;
  }

  /** The tensor `name` as fp32 (converted from its stored dtype), from whichever shard holds it. */
  read(name: string): Promise<Float32Array> {
    try {
      return this.fileOf(name).read(name);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** The tensor `name`'s stored bytes, unconverted. */
  readRaw(name: string): Promise<Uint8Array> {
    try {
      return this.fileOf(name).readRaw(name);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Releases every shard (unmapped once in-flight reads end). Further reads throw ZOFO_CLOSED. */
  close(): void {
    for (const shard of this.shards) shard.close();
  }
}

/** weight_map of an index file: tensor name → shard file name (a plain name inside dir). */
async function readIndex(indexPath: string): Promise<Map<string, string>> {
  const text = (await readRegularFile(indexPath, MAX_HEADER_BYTES)).toString('utf8');
  checkJsonLimits(indexPath, text);
  let index: unknown;
  try {
    index = JSON.parse(text);
  } catch (err) {
    throw badFile(indexPath, `index is not valid JSON (${(err as Error).message})`);
  }
  if (!isRecord(index) || !isRecord(index.weight_map)) throw badFile(indexPath, 'index must be a JSON object with a "weight_map" object');
  const map = new Map<string, string>();
  for (const [name, shard] of Object.entries(index.weight_map)) {
    if (typeof shard !== 'string' || shard.length === 0 || basename(shard) !== shard || shard === '.' || shard === '..' || shard.includes('\\')) {
      throw badFile(indexPath, `weight_map[${JSON.stringify(name)}] must be a file name inside the checkpoint directory, not ${describe(shard)}`);
    }
    map.set(name, shard);
  }
  return map;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/**
 * Opens the weights of a HuggingFace model directory: the shards named by
 * model.safetensors.index.json (each opened once; every mapped tensor must be in its
 * shard and no tensor in two shards), else model.safetensors.
 */
export async function openCheckpoint(dir: string): Promise<Checkpoint> {
  if (typeof dir !== 'string' || dir.length === 0) throw invalidArg('a directory path', 'dir', dir);
  const indexPath = join(dir, INDEX_FILE);
  if (!(await exists(indexPath))) {
    const single = join(dir, SINGLE_FILE);
    if (!(await exists(single))) throw new ZofoError('ZOFO_IO', `${dir}: no ${SINGLE_FILE} or ${INDEX_FILE} in this directory`);
    const file = await openSafetensors(single);
    return new Checkpoint(dir, [file], new Map([...file.tensors.keys()].map((name) => [name, file])));
  }

  const weightMap = await readIndex(indexPath);
  const shards = new Map<string, SafetensorsFile>();
  try {
    for (const shardName of [...new Set(weightMap.values())].sort()) {
      const path = join(dir, shardName);
      if (!(await exists(path))) throw badFile(indexPath, `shard ${shardName} (${path}) named by weight_map does not exist`);
      shards.set(shardName, await openSafetensors(path));
    }
    const shardOf = new Map<string, SafetensorsFile>();
    for (const [name, shardName] of weightMap) {
      const shard = shards.get(shardName) as SafetensorsFile;
      if (!shard.tensors.has(name)) throw badFile(indexPath, `weight_map puts tensor ${JSON.stringify(name)} in ${shard.file}, which does not hold it`);
      shardOf.set(name, shard);
    }
    for (const shard of shards.values()) {
      for (const name of shard.tensors.keys()) {
        const owner = shardOf.get(name);
        if (owner === undefined) throw badFile(indexPath, `tensor ${JSON.stringify(name)} of ${shard.file} is missing from weight_map`);
        if (owner !== shard) throw badFile(indexPath, `tensor ${JSON.stringify(name)} appears in two shards: ${owner.file} and ${shard.file}`);
      }
    }
    return new Checkpoint(dir, [...shards.values()], shardOf);
  } catch (err) {
    for (const shard of shards.values()) shard.close();
    throw err;
  }
}

// ---- writer ----

/** A tensor to write: `data` is a Float32Array for F32, the raw bits in a Uint16Array for F16/BF16. */
export interface TensorData {
  dtype: SafetensorsDtype;
  shape: readonly number[];
  data: Float32Array | Uint16Array;
}

/** Checks one tensor to write; returns its byte view. */
function checkTensor(name: unknown, t: TensorData): Uint8Array {
  if (typeof name !== 'string' || name.length === 0) throw invalidArg('a non-empty tensor name', 'tensor name', name);
  if (name === METADATA_KEY) throw new ZofoError('ZOFO_INVALID_ARG', `"${METADATA_KEY}" is reserved and cannot name a tensor`);
  const where = `tensor ${JSON.stringify(name)}`;
  if (!isRecord(t)) throw invalidArg('an object {dtype, shape, data}', where, t);
  if (!(typeof t.dtype === 'string' && Object.hasOwn(WIDTH, t.dtype))) throw invalidArg("'F32', 'F16' or 'BF16'", `${where}.dtype`, t.dtype);
  if (!Array.isArray(t.shape) || !t.shape.every(isCount)) throw invalidArg('an array of non-negative safe integers', `${where}.shape`, t.shape);
  const want = t.dtype === 'F32' ? Float32Array : Uint16Array;
  if (!(t.data instanceof want)) throw invalidArg(`a ${want.name} for dtype ${t.dtype}`, `${where}.data`, t.data);
  const n = numel(t.shape);
  if (n !== t.data.length) {
    throw new ZofoError('ZOFO_INVALID_ARG', `${where}: shape ${JSON.stringify(t.shape)} has ${n ?? 'more than 2^53'} elements but data has ${t.data.length}`);
  }
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

/**
 * The header bytes for tensors laid out in `names` order: `__metadata__` first, then
 * each tensor with contiguous data_offsets, padded with spaces so 8 + N is a multiple of 8.
 * Built as text (not JSON.stringify of an object, which would move integer-like names first).
 */
function buildHeader(names: readonly string[], tensors: ReadonlyMap<string, TensorData>, metadata: Record<string, string>): Buffer {
  const meta: Record<string, string> = { format: 'pt', ...metadata };
  const metaKeys = [
    'format',
    ...Object.keys(meta)
      .filter((k) => k !== 'format')
      .sort(),
  ];
  const parts = [`${JSON.stringify(METADATA_KEY)}:{${metaKeys.map((k) => `${JSON.stringify(k)}:${JSON.stringify(meta[k])}`).join(',')}}`];
  let offset = 0;
  for (const name of names) {
    const t = tensors.get(name) as TensorData;
    const end = offset + t.data.byteLength;
    parts.push(`${JSON.stringify(name)}:{"dtype":${JSON.stringify(t.dtype)},"shape":${JSON.stringify(t.shape)},"data_offsets":[${offset},${end}]}`);
    offset = end;
  }
  const json = Buffer.from(`{${parts.join(',')}}`, 'utf8');
  const padded = Buffer.alloc(Math.ceil(json.length / 8) * 8, 0x20);
  json.copy(padded);
  return padded;
}

/**
 * Writes a safetensors file atomically: a temp file in the same directory, fsync, then
 * rename over `file`. On any error the temp file is removed and an existing `file` is
 * left untouched. Tensors are written sorted by name, `__metadata__` holds
 * {format: "pt", ...metadata}.
 */
export async function writeSafetensors(
  file: string,
  tensors: Readonly<Record<string, TensorData>> | ReadonlyMap<string, TensorData>,
  metadata: Readonly<Record<string, string>> = {},
): Promise<void> {
  if (typeof file !== 'string' || file.length === 0) throw invalidArg('a file path', 'file', file);
  if (!isRecord(tensors)) throw invalidArg('a record or Map of tensors', 'tensors', tensors);
  if (!isRecord(metadata)) throw invalidArg('a record of strings', 'metadata', metadata);
  for (const [k, v] of Object.entries(metadata)) if (typeof v !== 'string') throw invalidArg('a string', `metadata[${JSON.stringify(k)}]`, v);
  const byName = new Map<string, TensorData>(tensors instanceof Map ? tensors : Object.entries(tensors));
  const bytes = new Map([...byName].map(([name, t]) => [name, checkTensor(name, t)]));
  const names = [...byName.keys()].sort();
  const header = buildHeader(names, byName, metadata);

  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(header.length));
  // Host order is little-endian, as safetensors stores tensors.
  await writeFileAtomic(file, [prefix, header, ...names.map((name) => bytes.get(name) as Uint8Array)]);
}
