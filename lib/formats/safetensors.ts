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
import { open, readFile, stat, type FileHandle } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { cpuBinding, type CpuBinding } from '../binding.js';
import { awaitNative, describe, invalidArg, rethrowNative, ZofoError } from '../errors.js';
import { badFile, ioError, isCount, isRecord, parseJsonHeader, writeFileAtomic } from './files.js';

/** The storage dtypes zofo reads and writes. */
export type SafetensorsDtype = 'F32' | 'F16' | 'BF16';

const WIDTH: Record<SafetensorsDtype, number> = { F32: 4, F16: 2, BF16: 2 };
// The native dtype codes (native/common/dtype.h DType).
const NATIVE_DTYPE: Record<SafetensorsDtype, number> = { F32: 0, BF16: 1, F16: 2 };
// Valid safetensors dtypes that zofo does not load: named as "unsupported", not "unknown".
const OTHER_DTYPES = new Set([
  'BOOL', 'U8', 'I8', 'U16', 'I16', 'U32', 'I32', 'U64', 'I64', 'F64', 'C64',
  'F8_E4M3', 'F8_E5M2', 'F8_E8M0', 'F6_E2M3', 'F6_E3M2', 'F4',
]);

/** safetensors' own limit on the header size. */
export const MAX_HEADER_BYTES = 100_000_000;
const METADATA_KEY = '__metadata__';

/** Where one tensor lives: `dataOffsets` are relative to the start of the data section. */
export interface TensorInfo {
  dtype: SafetensorsDtype;
  shape: number[];
  dataOffsets: [number, number];
}

type NativeFile = InstanceType<CpuBinding['MappedFile']>;

/** Product of a shape, or undefined when it exceeds 2^53 − 1. */
function numel(shape: readonly number[]): number | undefined {
  let n = 1;
  for (const d of shape) n *= d;
  return Number.isSafeInteger(n) ? n : undefined;
}

/**
 * The first key that occurs twice in one JSON object of `text` (valid JSON), with the
 * top-level key it sits under. JSON.parse silently keeps the last duplicate, so this
 * walks the tokens: a stack of open containers, each object with the keys seen so far.
 */
function findDuplicateKey(text: string): { key: string; under?: string } | undefined {
  const stack: ({ keys: Set<string>; expectKey: boolean } | null)[] = []; // null: an array
  let top: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '{') stack.push({ keys: new Set(), expectKey: true });
    else if (c === '[') stack.push(null);
    else if (c === '}' || c === ']') stack.pop();
    else if (c === ',') {
      const frame = stack[stack.length - 1];
      if (frame) frame.expectKey = true;
    } else if (c === '"') {
      const start = i;
      for (i++; text[i] !== '"'; i++) if (text[i] === '\\') i++;
      const frame = stack[stack.length - 1];
      if (!frame?.expectKey) continue; // a string value
      frame.expectKey = false;
      const key = JSON.parse(text.slice(start, i + 1)) as string; // resolves escapes: "\u0061" is "a"
      if (frame.keys.has(key)) return stack.length === 1 ? { key } : { key, under: top };
      frame.keys.add(key);
      if (stack.length === 1) top = key;
    }
  }
  return undefined;
}

/** Parses and validates a header (the N bytes after the length prefix) against a data section of `dataLength` bytes. */
function parseHeader(file: string, bytes: Uint8Array, dataLength: number): { tensors: Map<string, TensorInfo>; metadata: Record<string, string> } {
  const { text, value: header } = parseJsonHeader(file, bytes);
  if (!isRecord(header)) throw badFile(file, `header is not a JSON object but ${describe(header)}`);
  const dup = findDuplicateKey(text);
  if (dup) {
    throw badFile(file, dup.under === undefined ? `duplicate tensor name ${JSON.stringify(dup.key)} in the header`
      : `duplicate key ${JSON.stringify(dup.key)} in the header entry ${JSON.stringify(dup.under)}`);
  }

  let metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorInfo>();
  for (const [name, entry] of Object.entries(header)) {
    const where = `tensor ${JSON.stringify(name)}`;
    if (name === METADATA_KEY) {
      if (!isRecord(entry)) throw badFile(file, `${METADATA_KEY} must be an object of strings, not ${describe(entry)}`);
      for (const [k, v] of Object.entries(entry)) {
        if (typeof v !== 'string') throw badFile(file, `${METADATA_KEY} must map strings to strings, but key ${JSON.stringify(k)} holds ${describe(v)}`);
      }
      metadata = Object.fromEntries(Object.entries(entry as Record<string, string>)); // own keys only, even "__proto__"
      continue;
    }
    if (!isRecord(entry)) throw badFile(file, `${where}: entry must be an object, not ${describe(entry)}`);
    const { dtype, shape, data_offsets: offsets } = entry;
    if (dtype === undefined) throw badFile(file, `${where}: missing dtype`);
    if (shape === undefined) throw badFile(file, `${where}: missing shape`);
    if (offsets === undefined) throw badFile(file, `${where}: missing data_offsets`);
    if (typeof dtype !== 'string') throw badFile(file, `${where}: dtype must be a string, not ${describe(dtype)}`);
    if (OTHER_DTYPES.has(dtype)) throw badFile(file, `unsupported dtype ${dtype} for ${where} (zofo reads F32, F16 and BF16)`);
    if (!Object.hasOwn(WIDTH, dtype)) throw badFile(file, `unknown dtype ${JSON.stringify(dtype)} for ${where}`);
    if (!Array.isArray(shape) || !shape.every(isCount)) {
      throw badFile(file, `${where}: shape must be an array of non-negative safe integers, not ${JSON.stringify(shape)}`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount) || offsets[0] > offsets[1]) {
      throw badFile(file, `${where}: data_offsets must be two non-negative safe integers [begin, end] with begin ≤ end, not ${JSON.stringify(offsets)}`);
    }
    const width = WIDTH[dtype as SafetensorsDtype];
    const n = numel(shape);
    const [begin, end] = offsets as [number, number];
    if (n === undefined || n * width !== end - begin) {
      throw badFile(file, `${where}: data_offsets [${begin}, ${end}] hold ${end - begin} bytes but ${dtype} ${JSON.stringify(shape)} needs ${n === undefined ? 'more than 2^53' : n * width}`);
    }
    if (end > dataLength) {
      throw badFile(file, `${where}: data_offsets [${begin}, ${end}] run past the end of the data section (${dataLength} bytes)`);
    }
    tensors.set(name, { dtype: dtype as SafetensorsDtype, shape: [...shape], dataOffsets: [begin, end] });
  }

  // Sorted by begin, the tensors must tile [0, dataLength): no overlap, no hole, nothing after.
  const order = [...tensors].sort((a, b) => a[1].dataOffsets[0] - b[1].dataOffsets[0] || a[1].dataOffsets[1] - b[1].dataOffsets[1]);
  let covered = 0;
  let previous = '';
  for (const [name, info] of order) {
    const [begin, end] = info.dataOffsets;
    if (begin < covered) {
      throw badFile(file, `tensor ${JSON.stringify(name)} [${begin}, ${end}] overlaps tensor ${JSON.stringify(previous)}, which ends at ${covered}`);
    }
    if (begin > covered) throw badFile(file, `hole in the data section: bytes [${covered}, ${begin}) belong to no tensor`);
    covered = end;
    previous = name;
  }
  if (covered !== dataLength) {
    throw badFile(file, `hole in the data section: bytes [${covered}, ${dataLength}) at its end belong to no tensor`);
  }
  return { tensors, metadata };
}

/** Reads the length prefix and the header with fs (never the data). */
async function readHeader(file: string): Promise<{ size: number; headerLength: number; header: Uint8Array }> {
  let handle: FileHandle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    throw ioError(file, 'cannot open', err);
  }
  try {
    const { size } = await handle.stat();
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
  } finally {
    await handle.close();
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
  const { tensors, metadata } = parseHeader(file, header, size - dataStart);
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
  const { size } = await stat(indexPath);
  if (size > MAX_HEADER_BYTES) throw badFile(indexPath, `index is ${size} bytes, over the limit of ${MAX_HEADER_BYTES}`);
  let index: unknown;
  try {
    index = JSON.parse(await readFile(indexPath, 'utf8'));
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
  return stat(path).then(() => true, () => false);
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
  const metaKeys = ['format', ...Object.keys(meta).filter((k) => k !== 'format').sort()];
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
