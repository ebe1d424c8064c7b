/**
 * The trajectory log (docs/algorithm.md §7): every update pass of the base weights,
 * exactly as applied, so that the base checkpoint + this log rebuild x_K by seed replay.
 * Versioned, append-only, little-endian throughout.
 *
 * Layout, format version 3:
 *
 *   offset 0    8 bytes   magic, ASCII "ZOFOTRAJ"
 *   offset 8    u32       format version, 3
 *   offset 12   u32       L: byte length of the header text, a multiple of 8
 *   offset 16   L bytes   the header: UTF-8 JSON, no whitespace, keys sorted at every
 *                         level, padded at its end with spaces (0x20) to L bytes
 *   offset 16+L 32 bytes  header checksum: SHA-256 of bytes 0 .. 16+L (magic to padding)
 *   offset 48+L           records, 48 bytes each, one per update pass, to the end of file
 *
 * Header JSON (exactly these keys; a reader rejects missing, ill-typed or unknown ones):
 *
 *   {"base":{"dtype":"f32"|"bf16"|"f16","hash":<non-empty lowercase hex>,"parameters":<int ≥ 0>},
 *    "estimator":"forward"|"central","mu":<finite > 0>,"perturbations":<int 1..65535>,
 *    "seed":<decimal string of a 64-bit unsigned integer, no sign or leading zeros>,
 *    "table":[{"count":<int ≥ 0>,"decay":<finite>,"name":<non-empty, unique>,"trainable":<bool>},…],
 *    "version":3}
 *
 * Versions 1 and 2 are still read (and continued by appends in their own format), never
 * created. Version 2 has no header checksum (records start at 16+L) and each record's
 * CRC covers that record alone. Version 1 is version 2 with "seed" a JSON number, which
 * cannot hold a seed ≥ 2^53 exactly.
 *
 * Record, 48 bytes:
 *
 *   0   u64  step           k (at most 2^53 − 1)
 *   8   u64  seed           s_{k,j}, the Philox key of this pass
 *   16  f64  projectedGrad  c_j
 *   24  f32  scale          the pass's fp32 scale, −η_x(k)·c_j/q
 *   28  f32  etaLambda      the pass's fp32 η_x(k)·λ_x (applied by j = 0 only)
 *   32  f32  lr             η_x(k), informational
 *   36  f32  weightDecay    λ_x, informational
 *                           (all five finite: a NaN or ∞ is refused on write and on read)
 *   40  u16  j              0-based pass index within the step
 *   42  u16  q              passes in the step, ≥ 1; j < q
 *   44  u32  crc32          running CRC-32 (IEEE 802.3, as zlib: reflected polynomial
 *                           0xEDB88320, initial value and final xor 0xFFFFFFFF) of bytes
 *                           0..43 of every record up to and including this one, i.e.
 *                           zlib's crc32(bytes 0..43, crc of the previous record), the
 *                           first record starting from 0. A record deleted, repeated or
 *                           moved breaks every later CRC; a torn tail is cut at a record
 *                           boundary, so the records before it keep their CRCs.
 *
 * Order: the records form one group per step, j = 0, 1, …, q−1 with equal step and q;
 * successive groups have strictly increasing steps (gaps allowed).
 *
 * Crash tolerance: a file is created whole and atomically; afterwards it only grows by
 * appends, each followed by fsync. A crash mid-append leaves a prefix of the bytes being
 * written, possibly followed by zero bytes (the file's size reached the disk before its
 * data). So a reader ignores, and reports as a torn tail: a final partial record,
 * trailing records whose 48 bytes are all zero (never valid: their CRC would not match),
 * and a final step with fewer than q records. Anything else that is wrong is an error.
 */
import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { crc32 } from 'node:zlib'; // Node ≥ 20.15; package.json requires ≥ 20.17
import { describe, invalidArg, ZofoError } from '../errors.js';
import { badFile, ioError, isCount, isRecord, parseJsonHeader, readRegularFile, writeAll, writeFileAtomic } from '../formats/files.js';
import type { Trajectory, TrajectoryHeader, TrajectoryRecord, TrajectoryTensor } from './types.js';

/**
 * The trajectory log format version this zofo writes (docs/algorithm.md §7); it reads this
 * one and version 1.
 */
export const TRAJECTORY_VERSION = 3;
export const RECORD_BYTES = 48;

const MAGIC = Buffer.from('ZOFOTRAJ', 'latin1');
const PREAMBLE_BYTES = 16;
const SUPPORTED_VERSIONS = [1, 2, TRAJECTORY_VERSION];
/** Bytes of the header checksum after the header text; version 3 on. */
const HEADER_SUM_BYTES = 32;
const hasChecksums = (version: number): boolean => version >= 3;
const CRC_OFFSET = 44;
/** 22 million records: far past any run, and below what one Buffer holds. */
const MAX_TRAJECTORY_BYTES = 1 << 30;
const DTYPES = ['f32', 'bf16', 'f16'];
const ESTIMATORS = ['forward', 'central'];
const U16_MAX = 0xffff;
const U64_LIMIT = 1n << 64n;
const U64_DECIMAL = /^(0|[1-9][0-9]{0,19})$/;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

const HEADER_KEYS = ['base', 'estimator', 'mu', 'perturbations', 'seed', 'table', 'version'];
const BASE_KEYS = ['dtype', 'hash', 'parameters'];
const TENSOR_KEYS = ['count', 'decay', 'name', 'trainable'];

const isFinite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
// JSON has no −0: normalizing it keeps the in-memory header equal to what the file holds.
const noNegativeZero = (v: number): number => (v === 0 ? 0 : v);

// ---- header ----

/** How a header check reports a bad field: `path` is relative to the header ('' for the header itself). */
type FieldError = (path: string, expected: string, value: unknown) => ZofoError;

const argumentFieldError: FieldError = (path, expected, value) => invalidArg(expected, path ? `header.${path}` : 'header', value);

function fileFieldError(file: string): FieldError {
  return (path, expected, value) =>
    value === undefined
      ? badFile(file, `the header has no field ${path}`)
      : badFile(file, `header field ${path || '(the header itself)'} must be ${expected}, not ${describe(value)}`);
}

/**
 * Checks a header and returns a fresh copy holding exactly its fields, keys in sorted
 * order at every level (none is integer-like, so JSON.stringify keeps that order).
 * `unknownKey`, when given, makes keys beyond those of the format an error (files);
 * callers' objects may carry extra properties, which are left out.
 */
function normalizeHeader(h: unknown, fail: FieldError, unknownKey?: (path: string, key: string) => ZofoError, fileVersion?: number): TrajectoryHeader {
  const object = (v: unknown, path: string, keys: readonly string[]): Record<string, unknown> => {
    if (!isRecord(v)) throw fail(path, 'an object', v);
    if (unknownKey) for (const k of Object.keys(v)) if (!keys.includes(k)) throw unknownKey(path, k);
    return v;
  };
  const top = object(h, '', HEADER_KEYS);

  const base = object(top.base, 'base', BASE_KEYS);
  if (!DTYPES.includes(base.dtype as string)) throw fail('base.dtype', "'f32', 'bf16' or 'f16'", base.dtype);
  if (typeof base.hash !== 'string' || !/^[0-9a-f]+$/.test(base.hash)) throw fail('base.hash', 'a non-empty lowercase hex string', base.hash);
  if (!isCount(base.parameters)) throw fail('base.parameters', 'a non-negative safe integer', base.parameters);

  if (!ESTIMATORS.includes(top.estimator as string)) throw fail('estimator', "'forward' or 'central'", top.estimator);
  if (!isFinite(top.mu) || top.mu <= 0) throw fail('mu', 'a finite number > 0', top.mu);
  const q = top.perturbations;
  if (!isCount(q) || q < 1 || q > U16_MAX) throw fail('perturbations', `an integer in [1, ${U16_MAX}]`, q);
  const seed = headerSeed(top.seed, fileVersion);
  if (seed === undefined) {
    throw fail(
      'seed',
      fileVersion === 1
        ? 'a non-negative safe integer'
        : fileVersion === undefined
          ? 'a bigint in 0 .. 2^64-1 or a non-negative safe integer'
          : 'the decimal string of an integer in 0 .. 2^64-1',
      top.seed,
    );
  }

  if (!Array.isArray(top.table)) throw fail('table', 'an array', top.table);
  const names = new Set<string>();
  const table: TrajectoryTensor[] = top.table.map((entry: unknown, i: number) => {
    const at = `table[${i}]`;
    const e = object(entry, at, TENSOR_KEYS);
    if (!isCount(e.count)) throw fail(`${at}.count`, 'a non-negative safe integer', e.count);
    if (!isFinite(e.decay)) throw fail(`${at}.decay`, 'a finite number', e.decay);
    if (typeof e.name !== 'string' || e.name.length === 0) throw fail(`${at}.name`, 'a non-empty string', e.name);
    if (names.has(e.name)) throw fail(`${at}.name`, 'a name no earlier entry has', e.name);
    names.add(e.name);
    if (typeof e.trainable !== 'boolean') throw fail(`${at}.trainable`, 'a boolean', e.trainable);
    return { count: e.count, decay: noNegativeZero(e.decay), name: e.name, trainable: e.trainable };
  });

  const version = fileVersion ?? TRAJECTORY_VERSION;
  if (top.version !== version) throw fail('version', `${version} (the format version)`, top.version);
  return {
    base: { dtype: base.dtype as string, hash: base.hash, parameters: base.parameters },
    estimator: top.estimator as 'forward' | 'central',
    mu: top.mu,
    perturbations: q,
    seed,
    table,
    version: TRAJECTORY_VERSION,
  } as TrajectoryHeader;
}

/**
 * The run seed as a bigint: in memory a bigint or a non-negative safe integer; in a
 * version 2 or 3 file a decimal string; in a version 1 file a safe integer. Undefined if invalid.
 */
function headerSeed(value: unknown, fileVersion: number | undefined): bigint | undefined {
  const fromNumber = (v: unknown) => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? BigInt(v) : undefined);
  if (fileVersion === 1) return fromNumber(value);
  if (fileVersion === undefined) return typeof value === 'bigint' ? (value >= 0n && value < U64_LIMIT ? value : undefined) : fromNumber(value);
  if (typeof value !== 'string' || !U64_DECIMAL.test(value)) return undefined;
  const seed = BigInt(value);
  return seed < U64_LIMIT ? seed : undefined;
}

function headerBytes(h: TrajectoryHeader): Uint8Array {
  // Keys stay in sorted order; the 64-bit seed is written as a decimal string.
  const json = Buffer.from(JSON.stringify({ ...h, seed: h.seed.toString() }), 'utf8');
  const length = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(PREAMBLE_BYTES + length + HEADER_SUM_BYTES).fill(0x20, PREAMBLE_BYTES, PREAMBLE_BYTES + length);
  out.set(MAGIC, 0);
  const view = new DataView(out.buffer);
  view.setUint32(8, TRAJECTORY_VERSION, true);
  view.setUint32(12, length, true);
  out.set(json, PREAMBLE_BYTES);
  out.set(sha256(out.subarray(0, PREAMBLE_BYTES + length)), PREAMBLE_BYTES + length);
  return out;
}

const sha256 = (bytes: Uint8Array): Uint8Array => createHash('sha256').update(bytes).digest();

/**
 * The file's first 48 + L bytes: magic, version, header length, the padded JSON header
 * and its SHA-256.
 */
export function encodeTrajectoryHeader(h: TrajectoryHeader): Uint8Array {
  return headerBytes(normalizeHeader(h, argumentFieldError));
}

/** The first place where two normalized headers differ, as a path like `table[2].count`. */
function firstDifference(a: unknown, b: unknown, path: string): { path: string; a: unknown; b: unknown } | undefined {
  if (Array.isArray(a) && Array.isArray(b)) {
    for (let i = 0; i < Math.min(a.length, b.length); i++) {
      const d = firstDifference(a[i], b[i], `${path}[${i}]`);
      if (d) return d;
    }
    return a.length === b.length ? undefined : { path: `${path}.length`, a: a.length, b: b.length };
  }
  if (isRecord(a) && isRecord(b)) {
    for (const k of Object.keys(a)) {
      // both normalized: the same keys
      const d = firstDifference(a[k], b[k], path ? `${path}.${k}` : k);
      if (d) return d;
    }
    return undefined;
  }
  return a === b ? undefined : { path, a, b };
}

// ---- records ----

/** Checks record order one record at a time: one group j = 0..q−1 per step, steps increasing. */
class RecordOrder {
  /** Step of the last complete group; −1 before any. */
  lastStep = -1;
  // The open group: its step, q and next j; q = 0 when no group is open.
  private step = -1;
  private q = 0;
  private j = 0;

  get open(): boolean {
    return this.q !== 0;
  }

  copy(): RecordOrder {
    return Object.assign(new RecordOrder(), this);
  }

  /** Forgets an open group (its records are being discarded). */
  dropOpen(): void {
    this.q = 0;
  }

  /** Why `r` cannot come next; undefined (after taking it) when it can. Assumes 0 ≤ j < q. */
  next(r: { step: number; j: number; q: number }): string | undefined {
    if (this.q !== 0) {
      if (r.step !== this.step) return `step ${r.step} begins before step ${this.step} is complete (it has ${this.j} of its ${this.q} records)`;
      if (r.q !== this.q) return `q=${r.q} differs from q=${this.q} of the earlier records of step ${this.step}`;
      if (r.j !== this.j) return `j=${r.j} where j=${this.j} was expected (a step's records run j = 0..q−1 in order)`;
    } else {
      if (r.step <= this.lastStep) return `step ${r.step} follows step ${this.lastStep} (steps must increase and each appears once)`;
      if (r.j !== 0) return `step ${r.step} starts at j=${r.j}, not j=0`;
      this.step = r.step;
      this.q = r.q;
      this.j = 0;
    }
    this.j++;
    if (this.j === this.q) {
      this.lastStep = this.step;
      this.q = 0;
    }
    return undefined;
  }
}

const NUMBER_FIELDS = ['projectedGrad', 'scale', 'etaLambda', 'lr', 'weightDecay'] as const;

/**
 * Checks `r` (named `name` in errors) and writes it at `at`, its CRC continuing from
 * `previousCrc` (0 for a first record, and always 0 in version 1 and 2 files); returns the CRC.
 */
function writeRecord(out: Uint8Array, at: number, r: TrajectoryRecord, name: string, previousCrc: number): number {
  if (!isRecord(r)) throw invalidArg('a trajectory record object', name, r);
  if (!isCount(r.step)) throw invalidArg('a non-negative safe integer', `${name}.step`, r.step);
  if (typeof r.seed !== 'bigint' || r.seed < 0n || r.seed >= U64_LIMIT) throw invalidArg('a bigint in [0, 2^64)', `${name}.seed`, r.seed);
  if (!isCount(r.q) || r.q < 1 || r.q > U16_MAX) throw invalidArg(`an integer in [1, ${U16_MAX}]`, `${name}.q`, r.q);
  if (!isCount(r.j) || r.j >= r.q) throw invalidArg(`an integer in [0, q = ${r.q})`, `${name}.j`, r.j);
  for (const key of NUMBER_FIELDS) {
    // The fp32 fields must stay finite once rounded (1e39 would become ∞).
    const finite = key === 'projectedGrad' ? Number.isFinite(r[key]) : Number.isFinite(Math.fround(r[key]));
    if (typeof r[key] !== 'number' || !finite)
      throw invalidArg(key === 'projectedGrad' ? 'a finite number' : 'a number finite in fp32', `${name}.${key}`, r[key]);
  }
  const view = new DataView(out.buffer, out.byteOffset + at, RECORD_BYTES);
  view.setBigUint64(0, BigInt(r.step), true);
  view.setBigUint64(8, r.seed, true);
  view.setFloat64(16, r.projectedGrad, true);
  // setFloat32 rounds to nearest-even like Math.fround (and like the C++ double → float
  // cast the kernel sees), keeping −0 and subnormals.
  view.setFloat32(24, r.scale, true);
  view.setFloat32(28, r.etaLambda, true);
  view.setFloat32(32, r.lr, true);
  view.setFloat32(36, r.weightDecay, true);
  view.setUint16(40, r.j, true);
  view.setUint16(42, r.q, true);
  const crc = crc32(out.subarray(at, at + CRC_OFFSET), previousCrc);
  view.setUint32(CRC_OFFSET, crc, true);
  return crc;
}

/**
 * One record's 48 bytes. Its CRC continues from `previousCrc`, the CRC stored in the
 * record before it (default 0: the first record of a log).
 */
export function encodeTrajectoryRecord(r: TrajectoryRecord, previousCrc = 0): Uint8Array {
  if (!Number.isInteger(previousCrc) || previousCrc < 0 || previousCrc > 0xffffffff) throw invalidArg('a u32 CRC', 'previousCrc', previousCrc);
  const out = new Uint8Array(RECORD_BYTES);
  writeRecord(out, 0, r, 'record', previousCrc);
  return out;
}

/**
 * Encodes `records` in one buffer, checking each and their order against (and advancing)
 * `order`; CRCs continue from `chain.crc` (advanced) when `chain.running`, else each starts at 0.
 */
function encodeRecords(records: readonly TrajectoryRecord[], name: string, order: RecordOrder, chain: Chain): Uint8Array {
  if (!Array.isArray(records)) throw invalidArg('an array of trajectory records', name, records);
  const out = new Uint8Array(records.length * RECORD_BYTES);
  records.forEach((r, i) => {
    const crc = writeRecord(out, i * RECORD_BYTES, r, `${name}[${i}]`, chain.running ? chain.crc : 0);
    const problem = order.next(r);
    if (problem) throw new ZofoError('ZOFO_INVALID_ARG', `${name}[${i}]: ${problem}`);
    chain.crc = crc;
  });
  return out;
}

/** The record CRC chain: whether CRCs run across records (version 3) and the last record's CRC. */
interface Chain {
  running: boolean;
  crc: number;
}

// ---- decoding ----

interface Decoded {
  header: TrajectoryHeader;
  records: TrajectoryRecord[];
  tornTail: boolean;
  /** Bytes up to the end of the last complete step: what a torn file is truncated to. */
  validBytes: number;
  order: RecordOrder;
  /** The CRC chain at validBytes. */
  chain: Chain;
}

const hex = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');

function isZero(bytes: Uint8Array, at: number, n: number): boolean {
  for (let i = at; i < at + n; i++) if (bytes[i] !== 0) return false;
  return true;
}

function decode(bytes: Uint8Array, file: string): Decoded {
  const size = bytes.length;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (size >= MAGIC.length && !MAGIC.equals(bytes.subarray(0, MAGIC.length))) {
    throw badFile(file, `not a zofo trajectory log: bad magic ${hex(bytes.subarray(0, MAGIC.length))} (expected "ZOFOTRAJ", ${hex(MAGIC)})`);
  }
  if (size < PREAMBLE_BYTES)
    throw badFile(file, `file is ${size} bytes, shorter than the ${PREAMBLE_BYTES}-byte start of a trajectory log (magic, version, header length)`);
  const version = view.getUint32(8, true);
  if (!SUPPORTED_VERSIONS.includes(version)) {
    throw badFile(file, `unsupported trajectory format version ${version} (this zofo reads version ${SUPPORTED_VERSIONS.join(', ')})`);
  }
  const length = view.getUint32(12, true);
  if (length > size - PREAMBLE_BYTES) throw badFile(file, `header length ${length} runs past the end of the file (${size} bytes)`);
  if (length % 8 !== 0) throw badFile(file, `header length ${length} is not a multiple of 8`);
  const running = hasChecksums(version);
  const sumBytes = running ? HEADER_SUM_BYTES : 0;
  if (sumBytes > size - PREAMBLE_BYTES - length)
    throw badFile(file, `file is ${size} bytes, too short for its ${length}-byte header and the ${HEADER_SUM_BYTES}-byte header checksum`);
  if (running) {
    const stored = bytes.subarray(PREAMBLE_BYTES + length, PREAMBLE_BYTES + length + HEADER_SUM_BYTES);
    const computed = sha256(bytes.subarray(0, PREAMBLE_BYTES + length));
    if (!Buffer.from(computed).equals(stored)) {
      throw badFile(
        file,
        `header checksum mismatch: the SHA-256 of bytes 0..${PREAMBLE_BYTES + length} is ${hex(computed)}, the file stores ${hex(stored)} (the header was changed or damaged)`,
      );
    }
  }

  const json = parseJsonHeader(file, bytes.subarray(PREAMBLE_BYTES, PREAMBLE_BYTES + length)).value;
  const header = normalizeHeader(json, fileFieldError(file), (path, key) => badFile(file, `unknown header field ${path ? `${path}.${key}` : key}`), version);
  // In memory a header is always of the current version (version 1 differs only in how the seed is written).
  header.version = TRAJECTORY_VERSION;

  const start = PREAMBLE_BYTES + length + sumBytes;
  let n = Math.floor((size - start) / RECORD_BYTES);
  let tornTail = (size - start) % RECORD_BYTES !== 0;
  while (n > 0 && isZero(bytes, start + (n - 1) * RECORD_BYTES, RECORD_BYTES)) {
    n--;
    tornTail = true;
  }

  const order = new RecordOrder();
  const records: TrajectoryRecord[] = [];
  let complete = 0; // records in complete steps
  let crc = 0,
    completeCrc = 0; // the chain after the last record, after the last complete step
  for (let i = 0; i < n; i++) {
    const at = start + i * RECORD_BYTES;
    const stored = view.getUint32(at + CRC_OFFSET, true);
    const computed = crc32(bytes.subarray(at, at + CRC_OFFSET), running ? crc : 0);
    if (stored !== computed) {
      const what = running ? 'running CRC-32 check (a record before it may be missing, repeated or changed)' : 'CRC-32 check';
      throw badFile(
        file,
        `record ${i} (byte offset ${at}) fails its ${what} (stored 0x${stored.toString(16).padStart(8, '0')}, computed 0x${computed.toString(16).padStart(8, '0')})`,
      );
    }
    crc = stored;
    const step = view.getBigUint64(at, true);
    if (step > MAX_SAFE) throw badFile(file, `record ${i}: step ${step} exceeds 2^53 − 1`);
    const j = view.getUint16(at + 40, true);
    const q = view.getUint16(at + 42, true);
    if (q === 0) throw badFile(file, `record ${i}: q is 0 (a step has at least one pass)`);
    if (j >= q) throw badFile(file, `record ${i}: j=${j} is not below q=${q}`);
    const problem = order.next({ step: Number(step), j, q });
    if (problem) throw badFile(file, `record ${i}: ${problem}`);
    const record: TrajectoryRecord = {
      step: Number(step),
      j,
      q,
      seed: view.getBigUint64(at + 8, true),
      projectedGrad: view.getFloat64(at + 16, true),
      lr: view.getFloat32(at + 32, true),
      weightDecay: view.getFloat32(at + 36, true),
      scale: view.getFloat32(at + 24, true),
      etaLambda: view.getFloat32(at + 28, true),
    };
    const nonFinite = NUMBER_FIELDS.find((key) => !Number.isFinite(record[key]));
    if (nonFinite) throw badFile(file, `record ${i} (step ${record.step}, j=${j}): ${nonFinite} is ${record[nonFinite]} (a log holds only finite values)`);
    records.push(record);
    if (!order.open) {
      complete = i + 1;
      completeCrc = crc;
    }
  }
  if (complete < records.length) {
    // The last step is incomplete: a crash mid-append. Its passes are not replayed.
    records.length = complete;
    order.dropOpen();
    tornTail = true;
  }
  return { header, records, tornTail, validBytes: start + complete * RECORD_BYTES, order, chain: { running, crc: completeCrc } };
}

/**
 * Decodes a whole trajectory file held in memory (`name` names it in errors). Every
 * defect is a ZOFO_BAD_FILE; a torn tail (see the top of this file) is dropped and
 * reported as `tornTail: true`.
 */
export function decodeTrajectory(bytes: Uint8Array, name: string): Trajectory & { tornTail: boolean } {
  if (!(bytes instanceof Uint8Array)) throw invalidArg('a Uint8Array', 'bytes', bytes);
  const { header, records, tornTail } = decode(bytes, String(name));
  return { header, records, tornTail };
}

/** Reads and validates a trajectory file (ZOFO_IO if it cannot be read, ZOFO_BAD_FILE if it is not a valid log). */
export async function readTrajectory(file: string): Promise<Trajectory & { tornTail: boolean }> {
  if (typeof file !== 'string' || file.length === 0) throw invalidArg('a file path', 'file', file);
  // A regular file of bounded size: a FIFO or device in its place is refused, never waited on.
  return decodeTrajectory(await readRegularFile(file, MAX_TRAJECTORY_BYTES), file);
}

// ---- writing ----

/**
 * Writes a whole trajectory atomically. The records must be in log order and end
 * with a complete step (ZOFO_INVALID_ARG otherwise).
 */
export async function writeTrajectory(file: string, t: Trajectory): Promise<void> {
  if (typeof file !== 'string' || file.length === 0) throw invalidArg('a file path', 'file', file);
  if (!isRecord(t)) throw invalidArg('a trajectory {header, records}', 'trajectory', t);
  const head = encodeTrajectoryHeader(t.header);
  const order = new RecordOrder();
  const body = encodeRecords(t.records, 'trajectory.records', order, { running: true, crc: 0 });
  if (order.open)
    throw new ZofoError(
      'ZOFO_INVALID_ARG',
      `trajectory.records ends inside a step: its last step ${t.records[t.records.length - 1].step} lacks records j = ${t.records[t.records.length - 1].j + 1}..q−1`,
    );
  const bytes = new Uint8Array(head.length + body.length);
  bytes.set(head, 0);
  bytes.set(body, head.length);
  await writeFileAtomic(file, bytes);
}

/**
 * Appends records to a trajectory file as the run goes, fsyncing each batch. One
 * appender per file at a time. Appends are queued in call order; once one fails, the
 * file is cut back to where it began and every later append rejects with that error.
 */
export class TrajectoryAppender {
  private pending: Promise<void> = Promise.resolve();
  private failure: ZofoError | undefined;

  /** @internal use TrajectoryAppender.open(). */
  private constructor(
    readonly file: string,
    readonly header: TrajectoryHeader,
    /** Whether open() found and cut off a torn tail. */
    readonly tornTail: boolean,
    private handle: FileHandle | undefined,
    private size: number,
    private order: RecordOrder,
    private recordCount: number,
    private chain: Chain,
  ) {}

  /**
   * Opens `file` for appending: creates it (atomically) holding only `header` when it
   * does not exist; otherwise validates it in full, requires its header to equal
   * `header` (ZOFO_BAD_FILE naming the first differing field) and cuts off a torn tail,
   * so that the file ends with the last complete step (see `lastStep`).
   */
  static async open(file: string, header: TrajectoryHeader): Promise<TrajectoryAppender> {
    if (typeof file !== 'string' || file.length === 0) throw invalidArg('a file path', 'file', file);
    const expected = normalizeHeader(header, argumentFieldError);
    let handle = await open(file, 'r+').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw ioError(file, 'cannot open', err);
    });
    if (!handle) {
      await writeFileAtomic(file, headerBytes(expected));
      handle = await open(file, 'r+').catch((err: unknown) => {
        throw ioError(file, 'cannot open', err);
      });
    }
    try {
      let bytes: Uint8Array;
      try {
        const st = await handle.stat();
        if (!st.isFile()) throw new ZofoError('ZOFO_IO', `${file}: is not a regular file, not a trajectory log zofo can append to`);
        if (st.size > MAX_TRAJECTORY_BYTES) throw badFile(file, `file is ${st.size} bytes, over the limit of ${MAX_TRAJECTORY_BYTES} bytes`);
        bytes = await handle.readFile();
      } catch (err) {
        throw ioError(file, 'cannot read', err);
      }
      const found = decode(bytes, file);
      const diff = firstDifference(found.header, expected, '');
      if (diff) {
        const show = (x: unknown) => (typeof x === 'bigint' ? x.toString() : JSON.stringify(x));
        throw badFile(file, `the log's header differs from the expected one at ${diff.path}: the file has ${show(diff.a)}, expected ${show(diff.b)}`);
      }
      if (found.validBytes < bytes.length) {
        try {
          await handle.truncate(found.validBytes);
          await handle.sync();
        } catch (err) {
          throw ioError(file, 'cannot cut off the torn tail', err);
        }
      }
      return new TrajectoryAppender(file, expected, found.tornTail, handle, found.validBytes, found.order, found.records.length, found.chain);
    } catch (err) {
      await handle.close().catch(() => undefined);
      throw err;
    }
  }

  /** Records in the file, counting those of appends still in flight. */
  get count(): number {
    return this.recordCount;
  }

  /** The last step whose q records have all been appended (in flight included); −1 when none. */
  get lastStep(): number {
    return this.order.lastStep;
  }

  /** Whether `close()` has been called. */
  get closed(): boolean {
    return this.handle === undefined;
  }

  /**
   * Appends records (checked, and required to continue the log's order, before anything
   * is written) and fsyncs. A step may be split across calls; a step left incomplete
   * when the run stops counts as torn and is dropped on the next open.
   */
  append(records: readonly TrajectoryRecord[]): Promise<void> {
    const handle = this.handle;
    if (!handle) return Promise.reject(new ZofoError('ZOFO_CLOSED', `append: the trajectory appender of ${this.file} was closed`));
    if (this.failure) return Promise.reject(this.failure);
    const order = this.order.copy();
    const chain = { ...this.chain };
    let bytes: Uint8Array;
    try {
      bytes = encodeRecords(records, 'records', order, chain);
    } catch (err) {
      return Promise.reject(err);
    }
    // Commit the order, CRC chain and position now, so that appends queued behind this
    // one are checked against and chained to it.
    this.order = order;
    this.chain = chain;
    this.recordCount += records.length;
    const at = this.size;
    this.size += bytes.length;
    const write = async (): Promise<void> => {
      if (this.failure) throw this.failure;
      try {
        await writeAll(handle, bytes, at);
        await handle.sync();
      } catch (err) {
        this.failure = ioError(this.file, 'cannot append', err);
        await handle.truncate(at).catch(() => undefined);
        throw this.failure;
      }
    };
    const done = this.pending.then(write);
    this.pending = done.catch(() => undefined);
    return done;
  }

  /** Waits for queued appends, then closes the file. Later appends reject with ZOFO_CLOSED. */
  async close(): Promise<void> {
    const handle = this.handle;
    if (!handle) return;
    this.handle = undefined;
    await this.pending;
    await handle.close();
  }
}
