/**
 * The safetensors header check (safetensors' `validate`): parses the JSON header and
 * checks every entry and that the tensors tile the data section exactly. Pure and
 * synchronous, with no native code, so it can run in a worker thread
 * (safetensors-header-worker.ts) when a header is large enough to block the event loop.
 */
import { describe } from '../errors.js';
import { badFile, isCount, isRecord, parseJsonHeader } from './files.js';

/** The storage dtypes zofo reads and writes. */
export type SafetensorsDtype = 'F32' | 'F16' | 'BF16';

/** Where one tensor lives: `dataOffsets` are relative to the start of the data section. */
export interface TensorInfo {
  dtype: SafetensorsDtype;
  shape: number[];
  dataOffsets: [number, number];
}

/** Bytes per element of each dtype. */
export const WIDTH: Record<SafetensorsDtype, number> = { F32: 4, F16: 2, BF16: 2 };
// Valid safetensors dtypes that zofo does not load: named as "unsupported", not "unknown".
const OTHER_DTYPES = new Set([
  'BOOL',
  'U8',
  'I8',
  'U16',
  'I16',
  'U32',
  'I32',
  'U64',
  'I64',
  'F64',
  'C64',
  'F8_E4M3',
  'F8_E5M2',
  'F8_E8M0',
  'F6_E2M3',
  'F6_E3M2',
  'F4',
]);
/** The header key holding string metadata rather than a tensor. */
export const METADATA_KEY = '__metadata__';
/** Most dimensions a tensor shape may have. */
const MAX_RANK = 16;

/** What a header holds: tensors by name, and the string metadata. */
export interface ParsedHeader {
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
}

/** Product of a shape, or undefined when it exceeds 2^53 − 1. */
export function numel(shape: readonly number[]): number | undefined {
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
export function parseHeader(file: string, bytes: Uint8Array, dataLength: number): ParsedHeader {
  const { text, value: header } = parseJsonHeader(file, bytes);
  if (!isRecord(header)) throw badFile(file, `header is not a JSON object but ${describe(header)}`);
  const dup = findDuplicateKey(text);
  if (dup) {
    throw badFile(
      file,
      dup.under === undefined
        ? `duplicate tensor name ${JSON.stringify(dup.key)} in the header`
        : `duplicate key ${JSON.stringify(dup.key)} in the header entry ${JSON.stringify(dup.under)}`,
    );
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
    if (Array.isArray(shape) && shape.length > MAX_RANK) throw badFile(file, `${where}: shape has ${shape.length} dimensions, more than ${MAX_RANK}`);
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
      throw badFile(
        file,
        `${where}: data_offsets [${begin}, ${end}] hold ${end - begin} bytes but ${dtype} ${JSON.stringify(shape)} needs ${n === undefined ? 'more than 2^53' : n * width}`,
      );
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
