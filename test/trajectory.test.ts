// The trajectory log: bit-exact round trips (fp32 −0 and subnormals, u64 seeds near
// 2^64), the byte layout against a hand-built record and an independent CRC-32, the
// appender (create, reopen, continue, torn tails cut off, header mismatch refused),
// and one test per kind of hostile file, plus random mutations that must only ever
// give ZOFO_BAD_FILE.
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ZofoError } from '../lib/errors.js';
import {
  decodeTrajectory,
  encodeTrajectoryHeader,
  encodeTrajectoryRecord,
  readTrajectory,
  RECORD_BYTES,
  TrajectoryAppender,
  TRAJECTORY_VERSION,
  writeTrajectory,
} from '../lib/train/trajectory.js';
import type { TrajectoryHeader, TrajectoryRecord } from '../lib/train/types.js';
import { freshSeed, rng } from './helpers/reference.js';

const seed = freshSeed();
t.comment(`input seed ${seed}`);

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const bitsOf = (x: number): number => ((f32[0] = x), u32[0]);
const fromBits = (b: number): number => ((u32[0] = b), f32[0]);

/** Independent bitwise CRC-32 (IEEE, reflected 0xEDB88320). */
function crc32Ref(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

function header(over: Partial<TrajectoryHeader> = {}): TrajectoryHeader {
  return {
    version: TRAJECTORY_VERSION,
    base: { hash: '0123456789abcdef', dtype: 'f32', parameters: 1234 },
    table: [
      { name: 'model.embed_tokens.weight', count: 1000, trainable: true, decay: 0 },
      { name: 'model.layers.0.mlp.up_proj.weight', count: 200, trainable: true, decay: 1 },
      { name: 'model.norm.weight', count: 34, trainable: false, decay: 0 },
    ],
    estimator: 'forward',
    mu: 1e-3,
    perturbations: 2,
    seed: 42n,
    ...over,
  };
}

// fp32 bit patterns worth keeping exactly: ±0, subnormals, extremes (±Infinity is refused: a log holds finite values).
const SPECIAL_F32 = [0x80000000, 0x00000000, 0x00000001, 0x807fffff, 0x00400000, 0x7f7fffff, 0xff7fffff, 0x3f800000];
const SPECIAL_SEEDS = [0n, 1n, (1n << 64n) - 1n, (1n << 64n) - 2n, 1n << 63n, (1n << 53n) + 1n];

/** Random steps (increasing, with gaps), each a full group j = 0..q−1. */
function randomRecords(r: () => number, steps: number, firstStep = 0, q?: number): TrajectoryRecord[] {
  const out: TrajectoryRecord[] = [];
  const randomF32 = (): number => {
    if (r() < 0.3) return fromBits(SPECIAL_F32[Math.floor(r() * SPECIAL_F32.length)]);
    let b: number;
    do b = Math.floor(r() * 2 ** 32);
    while ((b & 0x7f800000) === 0x7f800000); // no NaN or ±Infinity
    return fromBits(b);
  };
  let step = firstStep;
  for (let s = 0; s < steps; s++) {
    const qs = q ?? 1 + Math.floor(r() * 4);
    for (let j = 0; j < qs; j++) {
      const seedValue =
        r() < 0.3 ? SPECIAL_SEEDS[Math.floor(r() * SPECIAL_SEEDS.length)] : (BigInt(Math.floor(r() * 2 ** 32)) << 32n) | BigInt(Math.floor(r() * 2 ** 32));
      out.push({
        step,
        j,
        q: qs,
        seed: seedValue,
        projectedGrad: r() < 0.1 ? -0 : (r() - 0.5) * 10 ** Math.floor(r() * 20 - 10),
        lr: r() * 1e-3, // a double: stored as its fp32 rounding
        weightDecay: r() < 0.5 ? 0 : r() * 0.1,
        scale: randomF32(),
        etaLambda: j === 0 ? randomF32() : 0,
      });
    }
    step += 1 + (r() < 0.2 ? Math.floor(r() * 5) : 0);
  }
  return out;
}

/** Asserts that decoded records equal the written ones: fp32 fields bit for bit, lr/weightDecay rounded to fp32. */
function sameRecords(t: Test, got: TrajectoryRecord[], want: TrajectoryRecord[]): void {
  t.equal(got.length, want.length, 'record count');
  let bad = 0;
  for (let i = 0; i < want.length; i++) {
    const g = got[i],
      w = want[i];
    const ok =
      g.step === w.step &&
      g.j === w.j &&
      g.q === w.q &&
      g.seed === w.seed &&
      Object.is(g.projectedGrad, w.projectedGrad) &&
      bitsOf(g.scale) === bitsOf(w.scale) &&
      Object.is(g.scale, w.scale) &&
      bitsOf(g.etaLambda) === bitsOf(w.etaLambda) &&
      Object.is(g.etaLambda, w.etaLambda) &&
      Object.is(g.lr, Math.fround(w.lr)) &&
      Object.is(g.weightDecay, Math.fround(w.weightDecay));
    if (!ok && bad++ < 5) t.fail(`record ${i} differs: got ${JSON.stringify(g, (_, v) => (typeof v === 'bigint' ? `${v}n` : v))}`);
  }
  t.equal(bad, 0, 'every record is bit-identical');
}

const concat = (...parts: Uint8Array[]): Uint8Array => Buffer.concat(parts);
/**
 * Records as a version 3 log holds them: each CRC recomputed (with the reference CRC) over
 * bytes 0..43 of every record up to and including it.
 */
function chainRecords(...recs: Uint8Array[]): Uint8Array {
  const out = Buffer.from(concat(...recs));
  const covered: Uint8Array[] = [];
  for (let i = 0; i < recs.length; i++) {
    covered.push(out.subarray(i * RECORD_BYTES, i * RECORD_BYTES + 44));
    out.writeUInt32LE(crc32Ref(concat(...covered)), i * RECORD_BYTES + 44);
  }
  return out;
}
const recordsBytes = (rs: TrajectoryRecord[]): Uint8Array => chainRecords(...rs.map((r) => encodeTrajectoryRecord(r)));
/** Records as version 1 and 2 logs hold them: each CRC covers its own record only. */
const recordsBytesV2 = (rs: TrajectoryRecord[]): Uint8Array => concat(...rs.map((r) => encodeTrajectoryRecord(r)));
const sha256Ref = (bytes: Uint8Array): Buffer => createHash('sha256').update(bytes).digest();

function expectError(t: Test, err: unknown, code: string, name: string, problem: RegExp): void {
  t.type(err, ZofoError);
  t.equal((err as ZofoError).code, code, (err as Error).message);
  t.ok((err as Error).message.includes(name), `the message names ${name}`);
  t.match((err as Error).message, problem);
}

async function rejectsWith(t: Test, promise: Promise<unknown>, code: string, name: string, problem: RegExp): Promise<void> {
  try {
    await promise;
    t.fail(`expected ${code} (${problem}) but it succeeded`);
  } catch (err) {
    expectError(t, err, code, name, problem);
  }
}

function throwsWith(t: Test, fn: () => unknown, code: string, name: string, problem: RegExp): void {
  try {
    fn();
    t.fail(`expected ${code} (${problem}) but it succeeded`);
  } catch (err) {
    expectError(t, err, code, name, problem);
  }
}

t.test('write → read round trip is bit-exact (fp32 −0, subnormals, u64 seeds near 2^64)', async (t) => {
  const r = rng(seed);
  const dir = t.testdir({});
  const file = join(dir, 'zo.log');
  const records = randomRecords(r, 200);
  // Make sure the special values occur regardless of the draw.
  records[0] = { ...records[0], seed: (1n << 64n) - 1n, scale: -0, etaLambda: fromBits(1), projectedGrad: -0 };
  records[1] = { ...records[1], seed: (1n << 64n) - 2n, scale: fromBits(0x807fffff), etaLambda: records[1].j === 0 ? -0 : 0 };
  await writeTrajectory(file, { header: header(), records });
  t.same(readdirSync(dir), ['zo.log'], 'no temp file left behind');

  const back = await readTrajectory(file);
  t.equal(back.tornTail, false);
  t.same(back.header, header());
  sameRecords(t, back.records, records);
  t.ok(Object.is(back.records[0].scale, -0) && Object.is(back.records[0].projectedGrad, -0), '−0 stays −0');
  t.equal(back.records[0].etaLambda, 2 ** -149, 'the smallest subnormal survives');
  t.equal(back.records[0].seed, 18446744073709551615n);

  const bytes = readFileSync(file);
  const headerLength = bytes.readUInt32LE(12);
  t.equal(bytes.subarray(0, 8).toString('latin1'), 'ZOFOTRAJ', 'magic');
  t.equal(bytes.readUInt32LE(8), 3, 'format version 3');
  t.same(
    bytes.subarray(16 + headerLength, 48 + headerLength),
    sha256Ref(bytes.subarray(0, 16 + headerLength)),
    'the header checksum is the SHA-256 of bytes 0..16+L',
  );
  t.equal((48 + headerLength) % 8, 0, 'records start 8-byte aligned');
  t.equal(bytes.length, 48 + headerLength + records.length * RECORD_BYTES, 'header, checksum + 48 bytes per record');
  t.same(bytes.subarray(48 + headerLength), recordsBytes(records), 'each record CRC runs over all records up to it');
  t.same(decodeTrajectory(bytes, 'mem'), back, 'decodeTrajectory agrees with readTrajectory');

  // Rewriting what was read gives the same bytes (deterministic encoding).
  await writeTrajectory(file, back);
  t.same(readFileSync(file), bytes, 'rewriting gives identical bytes');
});

t.test('a record has the documented byte layout and an IEEE CRC-32', async (t) => {
  const rec: TrajectoryRecord = {
    step: 0x0102030405,
    j: 1,
    q: 3,
    seed: 0xfedcba9876543210n,
    projectedGrad: -2.5,
    lr: 1e-4,
    weightDecay: 0.01,
    scale: Math.fround(-1.25e-7),
    etaLambda: -0,
  };
  const got = encodeTrajectoryRecord(rec);
  t.equal(got.length, RECORD_BYTES);
  const want = Buffer.alloc(48);
  want.writeBigUInt64LE(0x0102030405n, 0);
  want.writeBigUInt64LE(0xfedcba9876543210n, 8);
  want.writeDoubleLE(-2.5, 16);
  want.writeFloatLE(Math.fround(-1.25e-7), 24);
  want.writeUInt32LE(0x80000000, 28); // −0
  want.writeFloatLE(1e-4, 32);
  want.writeFloatLE(0.01, 36);
  want.writeUInt16LE(1, 40);
  want.writeUInt16LE(3, 42);
  want.writeUInt32LE(crc32Ref(want.subarray(0, 44)), 44);
  t.same(Buffer.from(got), want, 'bytes match the hand-built record');
  t.equal(crc32Ref(Buffer.from('123456789')), 0xcbf43926, 'the reference CRC is the IEEE one (check value)');
});

t.test("the header JSON has sorted keys, only the format's fields, and space padding", async (t) => {
  // Keys deliberately in unsorted order, with an extra property the format does not have.
  const h = {
    seed: 7n,
    perturbations: 1,
    mu: 0.01,
    estimator: 'central',
    version: 3,
    table: [{ trainable: true, name: 'w', decay: 1, count: 3, extra: 'x' }],
    base: { parameters: 3, hash: 'ff', dtype: 'bf16' },
    note: 'not part of the format',
  } as unknown as TrajectoryHeader;
  const bytes = Buffer.from(encodeTrajectoryHeader(h));
  const length = bytes.readUInt32LE(12);
  t.equal(length % 8, 0, 'header length is a multiple of 8');
  t.equal(bytes.length, 16 + length + 32, 'preamble, header text and its SHA-256');
  t.same(bytes.subarray(16 + length), sha256Ref(bytes.subarray(0, 16 + length)), 'the header checksum');
  const text = bytes.subarray(16, 16 + length).toString('utf8');
  t.match(text, /^\{[^ ]*\} *$/, 'compact JSON followed only by spaces');
  const json = JSON.parse(text);
  const sorted = (v: unknown, path: string): void => {
    if (Array.isArray(v)) v.forEach((x, i) => sorted(x, `${path}[${i}]`));
    else if (typeof v === 'object' && v !== null) {
      const keys = Object.keys(v);
      t.same(keys, [...keys].sort(), `keys of ${path || 'the header'} are sorted`);
      for (const k of keys) sorted((v as Record<string, unknown>)[k], `${path}.${k}`);
    }
  };
  sorted(json, '');
  t.same(
    json,
    {
      base: { dtype: 'bf16', hash: 'ff', parameters: 3 },
      estimator: 'central',
      mu: 0.01,
      perturbations: 1,
      seed: '7',
      table: [{ count: 3, decay: 1, name: 'w', trainable: true }],
      version: 3,
    },
    "exactly the format's fields, the seed as a decimal string",
  );
  t.same(Buffer.from(encodeTrajectoryHeader({ ...JSON.parse(JSON.stringify(json)), seed: 7n })), bytes, 'same header, same bytes, whatever the key order');
});

t.test('the appender creates, reopens and continues a log', async (t) => {
  const r = rng(seed ^ 0x5a5a5a5a);
  const file = join(t.testdir({}), 'zo.log');
  const all = randomRecords(r, 30, 0, 2);

  const a = await TrajectoryAppender.open(file, header());
  t.equal(a.count, 0);
  t.equal(a.lastStep, -1);
  t.equal(a.tornTail, false);
  t.same((await readTrajectory(file)).records, [], 'created holding only the header');
  await a.append(all.slice(0, 10));
  // Two appends without awaiting the first: they land in call order.
  const p1 = a.append(all.slice(10, 13)); // ends mid-step: allowed, the next call completes it
  const p2 = a.append(all.slice(13, 20));
  await Promise.all([p1, p2]);
  t.equal(a.count, 20);
  t.equal(a.lastStep, all[19].step);
  sameRecords(t, (await readTrajectory(file)).records, all.slice(0, 20));

  await rejectsWith(t, a.append([all[0]]), 'ZOFO_INVALID_ARG', 'records[0]', /step \d+ follows step \d+/);
  await rejectsWith(t, a.append([all[21]]), 'ZOFO_INVALID_ARG', 'records[0]', /starts at j=1, not j=0/);
  await rejectsWith(t, a.append([all[20], { ...all[21], seed: -1n }]), 'ZOFO_INVALID_ARG', 'records[1].seed', /bigint in \[0, 2\^64\)/);
  t.equal(a.count, 20, 'refused appends change nothing');
  t.equal(statSync(file).size, encodeTrajectoryHeader(header()).length + 20 * RECORD_BYTES, 'nothing was written by refused appends');
  await a.close();
  t.equal(a.closed, true);
  await rejectsWith(t, a.append(all.slice(20, 22)), 'ZOFO_CLOSED', file, /closed/);
  await a.close(); // twice is fine

  const b = await TrajectoryAppender.open(file, { ...JSON.parse(JSON.stringify({ ...header(), seed: 0 })), seed: 42 }); // a plain-JSON copy, the seed a safe-integer number
  t.equal(b.count, 20, 'reopened: sees the records');
  t.equal(b.lastStep, all[19].step);
  t.equal(b.tornTail, false);
  await b.append(all.slice(20));
  await b.close();
  const back = await readTrajectory(file);
  t.equal(back.tornTail, false);
  sameRecords(t, back.records, all);
});

t.test('torn tails: ignored by the reader, cut off by the appender', async (t) => {
  const r = rng(seed ^ 0x33333333);
  const dir = t.testdir({});
  const records = randomRecords(r, 6, 10, 3);
  const full = concat(encodeTrajectoryHeader(header({ perturbations: 3 })), recordsBytes(records));

  const cases: Array<[string, Uint8Array, number]> = [
    ['a partial record (crash mid-write)', concat(full, encodeTrajectoryRecord(records[0]).subarray(0, 21)), records.length],
    ['zero-filled records and a zero partial one (size on disk before the data)', concat(full, new Uint8Array(2 * RECORD_BYTES + 7)), records.length],
    ['a last step with 2 of its 3 records', full.subarray(0, full.length - RECORD_BYTES), records.length - 3],
    [
      'a last step with 1 of 3 records plus a partial one',
      concat(full.subarray(0, full.length - 2 * RECORD_BYTES), encodeTrajectoryRecord(records[0]).subarray(0, 40)),
      records.length - 3,
    ],
  ];
  for (const [k, [what, bytes, kept]] of cases.entries()) {
    const file = join(dir, `torn-${k}.log`);
    writeFileSync(file, bytes);
    const back = await readTrajectory(file);
    t.equal(back.tornTail, true, `${what}: tornTail`);
    sameRecords(t, back.records, records.slice(0, kept));

    const a = await TrajectoryAppender.open(file, header({ perturbations: 3 }));
    t.equal(a.tornTail, true, `${what}: the appender reports the torn tail`);
    t.equal(a.count, kept);
    t.equal(statSync(file).size, full.length - (records.length - kept) * RECORD_BYTES, `${what}: cut back to the last complete step`);
    const more = randomRecords(r, 2, records[kept - 1].step + 1, 3);
    await a.append(more);
    await a.close();
    const after = await readTrajectory(file);
    t.equal(after.tornTail, false, `${what}: clean after the appender`);
    sameRecords(t, after.records, [...records.slice(0, kept), ...more]);
  }
});

t.test('the appender refuses a log whose header differs, naming the field', async (t) => {
  const dir = t.testdir({});
  const file = join(dir, 'zo.log');
  await writeTrajectory(file, { header: header(), records: randomRecords(rng(seed), 3, 0, 2) });
  const before = readFileSync(file);
  const h = header();
  const variants: Array<[TrajectoryHeader, RegExp]> = [
    [{ ...h, base: { ...h.base, hash: 'abcdef' } }, /at base\.hash: the file has "0123456789abcdef", expected "abcdef"/],
    [{ ...h, table: h.table.map((e, i) => (i === 1 ? { ...e, count: 201 } : e)) }, /at table\[1\]\.count: the file has 200, expected 201/],
    [{ ...h, table: h.table.slice(0, 2) }, /at table\.length: the file has 3, expected 2/],
    [{ ...h, mu: 1e-2 }, /at mu:/],
    [{ ...h, estimator: 'central' }, /at estimator:/],
    [{ ...h, seed: 43n }, /at seed: the file has 42, expected 43/],
    [{ ...h, seed: (1n << 64n) - 1n }, /at seed: the file has 42, expected 18446744073709551615/],
  ];
  for (const [other, problem] of variants) await rejectsWith(t, TrajectoryAppender.open(file, other), 'ZOFO_BAD_FILE', file, problem);
  t.same(readFileSync(file), before, 'the file is untouched');
  await rejectsWith(t, TrajectoryAppender.open(file, { ...h, base: { ...h.base, hash: 'XYZ' } }), 'ZOFO_INVALID_ARG', 'header.base.hash', /lowercase hex/);
});

t.test('each kind of hostile file is a ZOFO_BAD_FILE naming the problem', async (t) => {
  const h = encodeTrajectoryHeader(header());
  const records = randomRecords(rng(seed ^ 0x777), 4, 0, 2);
  const good = concat(h, recordsBytes(records));
  const withHeaderText = (text: string, version = 3): Uint8Array => {
    const raw = Buffer.from(text, 'utf8');
    const json = Buffer.alloc(Math.ceil(raw.length / 8) * 8, 0x20);
    raw.copy(json);
    const pre = Buffer.alloc(16);
    pre.write('ZOFOTRAJ', 0, 'latin1');
    pre.writeUInt32LE(version, 8);
    pre.writeUInt32LE(json.length, 12);
    return version >= 3 ? concat(pre, json, sha256Ref(concat(pre, json))) : concat(pre, json);
  };
  const headerLength = Buffer.from(h).readUInt32LE(12);
  const validJson = JSON.parse(Buffer.from(h.subarray(16, 16 + headerLength)).toString('utf8'));
  /** `good` with `from` replaced by `to` (as long) in the header text; the stored checksum is left as it was. */
  const editHeader = (from: string, to: string): Uint8Array => {
    const copy = Buffer.from(good);
    const at = copy.indexOf(from);
    if (at < 16 || at >= 16 + headerLength || from.length !== to.length) throw new Error(`cannot edit ${from}`);
    copy.write(to, at, 'utf8');
    return copy;
  };
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the cases edit arbitrary fields of the parsed header
  const jsonWith = (edit: (j: Record<string, any>) => void): Uint8Array => {
    const j = structuredClone(validJson);
    edit(j);
    return withHeaderText(JSON.stringify(j));
  };
  const mutate = (bytes: Uint8Array, at: number, value: number): Uint8Array => {
    const copy = Uint8Array.from(bytes);
    copy[at] = value;
    return copy;
  };
  /** A record with a correct CRC but any field values (the encoder would refuse them). */
  const rawRecord = (step: bigint, j: number, q: number): Uint8Array => {
    const b = Buffer.from(encodeTrajectoryRecord({ ...records[0], j: 0, q: 1 }));
    b.writeBigUInt64LE(step, 0);
    b.writeUInt16LE(j, 40);
    b.writeUInt16LE(q, 42);
    b.writeUInt32LE(crc32Ref(b.subarray(0, 44)), 44);
    return b;
  };
  /** A valid record of step 0 with one float field overwritten (and its CRC fixed). */
  const rawFloatRecord = (at: number, value: number, f64 = false): Uint8Array => {
    const b = Buffer.from(rawRecord(0n, 0, 1));
    if (f64) b.writeDoubleLE(value, at);
    else b.writeFloatLE(value, at);
    b.writeUInt32LE(crc32Ref(b.subarray(0, 44)), 44);
    return b;
  };
  const recordStart = h.length;
  const dir = t.testdir({});

  const cases: Array<[string, Uint8Array, RegExp]> = [
    ['empty file', new Uint8Array(0), /file is 0 bytes, shorter than the 16-byte start/],
    ['short file', good.subarray(0, 12), /file is 12 bytes/],
    ['bad magic', mutate(good, 4, 0x58), /bad magic 5a4f464f5852414a \(expected "ZOFOTRAJ"/],
    ['a safetensors file', concat(new Uint8Array([8, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{}      ')), /not a zofo trajectory log: bad magic/],
    ['future version', mutate(good, 8, 4), /unsupported trajectory format version 4 \(this zofo reads version 1, 2, 3\)/],
    [
      'header length past the end',
      (() => {
        const b = Buffer.from(good.subarray(0, 64));
        b.writeUInt32LE(0xfffffff8, 12);
        return b;
      })(),
      /header length 4294967288 runs past the end of the file \(64 bytes\)/,
    ],
    [
      'header length not a multiple of 8',
      (() => {
        const b = Buffer.from(good);
        b.writeUInt32LE(b.readUInt32LE(12) - 3, 12);
        return b;
      })(),
      /header length \d+ is not a multiple of 8/,
    ],
    ['malformed JSON', withHeaderText('{"base": '), /header is not valid JSON/],
    ['JSON that is not an object', withHeaderText('[1,2]'), /header field \(the header itself\) must be an object/],
    [
      'non-UTF-8 header (version 2: no checksum)',
      concat(withHeaderText('{"a":"xx"}', 2).subarray(0, 22), new Uint8Array([0xff, 0xfe]), withHeaderText('{"a":"xx"}', 2).subarray(24)),
      /header is not valid UTF-8/,
    ],
    ['missing field', jsonWith((j) => delete j.mu), /the header has no field mu/],
    ['missing nested field', jsonWith((j) => delete j.base.hash), /the header has no field base\.hash/],
    ['ill-typed field', jsonWith((j) => (j.perturbations = '2')), /header field perturbations must be an integer in \[1, 65535\], not "2" of type string/],
    ['ill-typed table entry', jsonWith((j) => (j.table[2].trainable = 1)), /header field table\[2\]\.trainable must be a boolean/],
    ['duplicate tensor name', jsonWith((j) => (j.table[1].name = j.table[0].name)), /table\[1\]\.name must be a name no earlier entry has/],
    ['unknown dtype', jsonWith((j) => (j.base.dtype = 'f64')), /base\.dtype must be 'f32', 'bf16' or 'f16'/],
    ['unknown field', jsonWith((j) => (j.base.extra = 1)), /unknown header field base\.extra/],
    ['JSON version differs from the format version', jsonWith((j) => (j.version = 1)), /header field version must be 3/],
    [
      'seed as a number in a version 3 file',
      jsonWith((j) => (j.seed = 42)),
      /header field seed must be the decimal string of an integer in 0 \.\. 2\^64-1, not 42 of type number/,
    ],
    ['seed of 2^64', jsonWith((j) => (j.seed = '18446744073709551616')), /header field seed must be the decimal string/],
    ['seed with a leading zero', jsonWith((j) => (j.seed = '042')), /header field seed must be the decimal string/],
    ['negative seed', jsonWith((j) => (j.seed = '-1')), /header field seed must be the decimal string/],
    ['NaN scale in a record', concat(h, rawFloatRecord(24, NaN)), /record 0 \(step 0, j=0\): scale is NaN/],
    ['infinite etaLambda in a record', concat(h, rawFloatRecord(28, -Infinity)), /record 0 \(step 0, j=0\): etaLambda is -Infinity/],
    ['infinite projected gradient', concat(h, rawFloatRecord(16, Infinity, true)), /record 0 \(step 0, j=0\): projectedGrad is Infinity/],
    ['infinite decay mask', jsonWith((j) => (j.table[0].decay = Infinity)), /header field table\[0\]\.decay must be a finite number/],
    [
      'flipped byte in record 2',
      mutate(good, recordStart + 2 * RECORD_BYTES + 17, good[recordStart + 2 * RECORD_BYTES + 17] ^ 0x10),
      /record 2 \(byte offset \d+\) fails its running CRC-32 check/,
    ],
    ['flipped CRC byte in record 0', mutate(good, recordStart + 45, good[recordStart + 45] ^ 1), /record 0 .*fails its running CRC-32 check/],
    [
      'zero record before a valid one',
      concat(h, new Uint8Array(RECORD_BYTES), encodeTrajectoryRecord(records[0])),
      /record 0 .*fails its running CRC-32 check/,
    ],
    [
      'a header field changed to another valid value',
      editHeader('"estimator":"forward"', '"estimator":"central"'),
      /header checksum mismatch: the SHA-256 of bytes 0\.\.\d+ is [0-9a-f]{64}, the file stores [0-9a-f]{64}/,
    ],
    ['a decay mask changed to another valid value', editHeader('"decay":1,', '"decay":0,'), /header checksum mismatch/],
    ['a flipped byte in the header checksum', mutate(good, 16 + headerLength + 31, good[16 + headerLength + 31] ^ 0x80), /header checksum mismatch/],
    ['no room for the header checksum', good.subarray(0, 16 + headerLength + 20), /too short for its \d+-byte header and the 32-byte header checksum/],
    [
      'a whole step deleted from the middle (steps may have gaps)',
      concat(good.subarray(0, recordStart + 2 * RECORD_BYTES), good.subarray(recordStart + 4 * RECORD_BYTES)),
      /record 2 .*fails its running CRC-32 check/,
    ],
    [
      'two steps swapped',
      concat(
        good.subarray(0, recordStart),
        good.subarray(recordStart + 2 * RECORD_BYTES, recordStart + 4 * RECORD_BYTES),
        good.subarray(recordStart, recordStart + 2 * RECORD_BYTES),
      ),
      /record 0 .*fails its running CRC-32 check/,
    ],
    ['step going back', concat(h, chainRecords(rawRecord(5n, 0, 1), rawRecord(4n, 0, 1))), /record 1: step 4 follows step 5/],
    ['step repeated', concat(h, chainRecords(rawRecord(5n, 0, 1), rawRecord(5n, 0, 1))), /record 1: step 5 follows step 5/],
    ['j skipping', concat(h, chainRecords(rawRecord(1n, 0, 3), rawRecord(1n, 2, 3))), /record 1: j=2 where j=1 was expected/],
    ['step starting at j=1', concat(h, rawRecord(1n, 1, 2)), /record 0: step 1 starts at j=1, not j=0/],
    [
      'next step before the last is complete',
      concat(h, chainRecords(rawRecord(1n, 0, 2), rawRecord(2n, 0, 2))),
      /record 1: step 2 begins before step 1 is complete/,
    ],
    ['q changing within a step', concat(h, chainRecords(rawRecord(1n, 0, 2), rawRecord(1n, 1, 3))), /record 1: q=3 differs from q=2/],
    ['q of 0', concat(h, rawRecord(1n, 0, 0)), /record 0: q is 0/],
    ['j not below q', concat(h, rawRecord(1n, 2, 2)), /record 0: j=2 is not below q=2/],
    ['step beyond 2^53', concat(h, rawRecord(1n << 60n, 0, 1)), /record 0: step 1152921504606846976 exceeds 2\^53/],
  ];
  for (const [what, bytes, problem] of cases) {
    throwsWith(t, () => decodeTrajectory(bytes, 'mem.log'), 'ZOFO_BAD_FILE', 'mem.log', problem);
    if (what === 'future version' || what === 'flipped byte in record 2' || what === 'bad magic') {
      const file = join(dir, `${what.replace(/\W+/g, '-')}.log`);
      writeFileSync(file, bytes);
      await rejectsWith(t, readTrajectory(file), 'ZOFO_BAD_FILE', file, problem);
      await rejectsWith(t, TrajectoryAppender.open(file, header()), 'ZOFO_BAD_FILE', file, problem);
      t.same(readFileSync(file), Buffer.from(bytes), `${what}: the appender leaves a bad file alone`);
    }
  }
  await rejectsWith(t, readTrajectory(join(dir, 'missing.log')), 'ZOFO_IO', 'missing.log', /cannot open: ENOENT/);
});

t.test('random truncations and byte flips only ever give ZOFO_BAD_FILE or a valid prefix', async (t) => {
  const r = rng(seed ^ 0x1234567);
  const records = randomRecords(r, 20);
  const good = concat(encodeTrajectoryHeader(header()), recordsBytes(records));
  let rejected = 0,
    accepted = 0,
    other = 0;
  for (let trial = 0; trial < 3000; trial++) {
    let bytes = Uint8Array.from(good);
    const flips = Math.floor(r() * 3);
    for (let k = 0; k < flips; k++) bytes[Math.floor(r() * bytes.length)] ^= 1 << Math.floor(r() * 8);
    if (r() < 0.5) bytes = bytes.subarray(0, Math.floor(r() * bytes.length));
    try {
      const back = decodeTrajectory(bytes, 'fuzz');
      accepted++;
      // Whatever is accepted must be a prefix of the log (a flip could only hit padding).
      if (back.records.length > records.length || back.records.some((x, i) => x.seed !== records[i].seed || x.step !== records[i].step)) {
        other++;
        t.fail(`trial ${trial}: accepted records that were not written`);
      }
    } catch (err) {
      if (err instanceof ZofoError && err.code === 'ZOFO_BAD_FILE') rejected++;
      else {
        other++;
        if (other < 5) t.fail(`trial ${trial}: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`);
      }
    }
  }
  t.comment(`${rejected} rejected, ${accepted} accepted`);
  t.equal(other, 0, 'no other exception and nothing invented');
});

t.test('encoders and writeTrajectory check their arguments', async (t) => {
  const rec: TrajectoryRecord = { step: 1, j: 0, q: 1, seed: 1n, projectedGrad: 0, lr: 0, weightDecay: 0, scale: 0, etaLambda: 0 };
  throwsWith(t, () => encodeTrajectoryRecord({ ...rec, seed: 1n << 64n }), 'ZOFO_INVALID_ARG', 'record.seed', /bigint in \[0, 2\^64\)/);
  throwsWith(t, () => encodeTrajectoryRecord({ ...rec, seed: 1 as unknown as bigint }), 'ZOFO_INVALID_ARG', 'record.seed', /received 1 of type number/);
  throwsWith(t, () => encodeTrajectoryRecord({ ...rec, step: -1 }), 'ZOFO_INVALID_ARG', 'record.step', /non-negative safe integer/);
  throwsWith(t, () => encodeTrajectoryRecord({ ...rec, j: 1 }), 'ZOFO_INVALID_ARG', 'record.j', /\[0, q = 1\)/);
  throwsWith(t, () => encodeTrajectoryRecord({ ...rec, q: 65536 }), 'ZOFO_INVALID_ARG', 'record.q', /\[1, 65535\]/);
  throwsWith(t, () => encodeTrajectoryRecord({ ...rec, scale: '1' as unknown as number }), 'ZOFO_INVALID_ARG', 'record.scale', /a number/);
  throwsWith(t, () => encodeTrajectoryHeader(header({ mu: 0 })), 'ZOFO_INVALID_ARG', 'header.mu', /finite number > 0/);
  throwsWith(t, () => encodeTrajectoryHeader(header({ version: 1 })), 'ZOFO_INVALID_ARG', 'header.version', /Expected 3/);
  throwsWith(t, () => encodeTrajectoryHeader(header({ seed: 0.5 as unknown as bigint })), 'ZOFO_INVALID_ARG', 'header.seed', /bigint in 0 \.\. 2\^64-1/);
  throwsWith(t, () => encodeTrajectoryHeader(header({ seed: 1n << 64n })), 'ZOFO_INVALID_ARG', 'header.seed', /bigint in 0 \.\. 2\^64-1/);
  throwsWith(t, () => encodeTrajectoryHeader(header({ seed: -1n })), 'ZOFO_INVALID_ARG', 'header.seed', /bigint in 0 \.\. 2\^64-1/);
  throwsWith(t, () => encodeTrajectoryRecord({ ...rec, scale: Infinity }), 'ZOFO_INVALID_ARG', 'record.scale', /finite in fp32/);
  throwsWith(t, () => encodeTrajectoryRecord({ ...rec, etaLambda: 1e39 }), 'ZOFO_INVALID_ARG', 'record.etaLambda', /finite in fp32/);
  throwsWith(t, () => encodeTrajectoryRecord({ ...rec, projectedGrad: NaN }), 'ZOFO_INVALID_ARG', 'record.projectedGrad', /a finite number/);

  const dir = t.testdir({});
  const file = join(dir, 'zo.log');
  await rejectsWith(
    t,
    writeTrajectory(file, { header: header(), records: [{ ...rec, q: 2 }] }),
    'ZOFO_INVALID_ARG',
    'trajectory.records',
    /ends inside a step/,
  );
  await rejectsWith(t, writeTrajectory(file, { header: header(), records: [rec, rec] }), 'ZOFO_INVALID_ARG', 'trajectory.records[1]', /step 1 follows step 1/);
  t.same(readdirSync(dir), [], 'nothing written');
  await rejectsWith(t, writeTrajectory(join(dir, 'no', 'such', 'dir.log'), { header: header(), records: [] }), 'ZOFO_IO', 'dir.log', /cannot write/);
  t.same(readdirSync(dir), [], 'no temp file left behind on failure');

  // An appended partial record from outside is still only a torn tail.
  await writeTrajectory(file, { header: header(), records: [rec] });
  appendFileSync(file, Buffer.from([1, 2, 3]));
  t.equal((await readTrajectory(file)).tornTail, true);
});

t.test('64-bit run seeds round-trip exactly through the header (0, 2^53 ± 1, 2^53, 2^64 − 1)', async (t) => {
  const dir = t.testdir({});
  const seeds = [0n, (1n << 53n) - 1n, 1n << 53n, (1n << 53n) + 1n, (1n << 64n) - 1n];
  for (const s of seeds) {
    const file = join(dir, `seed-${s}.log`);
    await writeTrajectory(file, { header: header({ seed: s }), records: randomRecords(rng(seed), 2, 0, 2) });
    const back = await readTrajectory(file);
    t.equal(back.header.seed, s, `seed ${s} reads back exactly`);
    const text = readFileSync(file).subarray(16).toString('utf8');
    t.ok(text.includes(`"seed":"${s}"`), `the file holds seed ${s} as a decimal string`);
    const a = await TrajectoryAppender.open(file, header({ seed: s }));
    t.equal(a.count, 4, 'the appender reopens it with the same seed');
    await a.close();
  }
});

t.test('version 1 logs (the seed a JSON number) are still read', async (t) => {
  // A version 1 file, built by hand: the same layout with "seed":42 and version 1.
  const json = JSON.stringify({
    base: { dtype: 'f32', hash: '0123456789abcdef', parameters: 1234 },
    estimator: 'forward',
    mu: 1e-3,
    perturbations: 2,
    seed: 42,
    table: header().table.map((e) => ({ count: e.count, decay: e.decay, name: e.name, trainable: e.trainable })),
    version: 1,
  });
  const raw = Buffer.alloc(Math.ceil(json.length / 8) * 8, 0x20);
  raw.write(json, 'utf8');
  const pre = Buffer.alloc(16);
  pre.write('ZOFOTRAJ', 0, 'latin1');
  pre.writeUInt32LE(1, 8);
  pre.writeUInt32LE(raw.length, 12);
  const records = randomRecords(rng(seed ^ 0x0101), 3, 0, 2);
  const bytes = concat(pre, raw, recordsBytesV2(records));
  const back = decodeTrajectory(bytes, 'v1.log');
  t.equal(back.header.seed, 42n, 'the seed as a bigint');
  t.equal(back.header.version, TRAJECTORY_VERSION, 'in memory the header is of the current version');
  sameRecords(t, back.records, records);
  const unsafe = Buffer.from(bytes);
  const at = unsafe.indexOf('"seed":42');
  unsafe.write('"seed":-1', at); // same length
  throwsWith(t, () => decodeTrajectory(unsafe, 'v1.log'), 'ZOFO_BAD_FILE', 'v1.log', /header field seed must be a non-negative safe integer/);
  // A version 1 log can be continued: the appender only adds records, whose layout is unchanged.
  const dir = t.testdir({});
  const file = join(dir, 'v1.log');
  writeFileSync(file, bytes);
  const a = await TrajectoryAppender.open(file, header());
  await a.append(randomRecords(rng(seed ^ 0x0202), 1, records[records.length - 1].step + 1, 2));
  await a.close();
  t.equal((await readTrajectory(file)).records.length, 8, 'appended to the version 1 file');
});

t.test('version 2 logs (no header checksum, per-record CRCs) are still read and continued as version 2', async (t) => {
  // A version 2 file, built by hand: the header text directly followed by the records.
  const json = JSON.stringify({
    base: { dtype: 'f32', hash: '0123456789abcdef', parameters: 1234 },
    estimator: 'forward',
    mu: 1e-3,
    perturbations: 2,
    seed: '18446744073709551615',
    table: header().table.map((e) => ({ count: e.count, decay: e.decay, name: e.name, trainable: e.trainable })),
    version: 2,
  });
  const raw = Buffer.alloc(Math.ceil(json.length / 8) * 8, 0x20);
  raw.write(json, 'utf8');
  const pre = Buffer.alloc(16);
  pre.write('ZOFOTRAJ', 0, 'latin1');
  pre.writeUInt32LE(2, 8);
  pre.writeUInt32LE(raw.length, 12);
  const records = randomRecords(rng(seed ^ 0x0303), 3, 0, 2);
  const bytes = concat(pre, raw, recordsBytesV2(records));
  const back = decodeTrajectory(bytes, 'v2.log');
  t.equal(back.header.seed, (1n << 64n) - 1n);
  t.equal(back.header.version, TRAJECTORY_VERSION, 'in memory the header is of the current version');
  sameRecords(t, back.records, records);
  // The same file with version 3 in its preamble has no room for a valid header checksum.
  const asV3 = Buffer.from(bytes);
  asV3.writeUInt32LE(3, 8);
  throwsWith(t, () => decodeTrajectory(asV3, 'v2.log'), 'ZOFO_BAD_FILE', 'v2.log', /header checksum mismatch/);
  // A record deleted from the middle of a version 2 log cannot be told apart from a gap in its steps.
  const dir = t.testdir({});
  const file = join(dir, 'v2.log');
  writeFileSync(file, bytes);
  const a = await TrajectoryAppender.open(file, header({ seed: (1n << 64n) - 1n }));
  const more = randomRecords(rng(seed ^ 0x0404), 1, records[records.length - 1].step + 1, 2);
  await a.append(more);
  await a.close();
  const after = readFileSync(file);
  t.equal(after.readUInt32LE(8), 2, 'still a version 2 file');
  t.same(after.subarray(bytes.length), recordsBytesV2(more), 'appended records carry version 2 (per-record) CRCs');
  sameRecords(t, (await readTrajectory(file)).records, [...records, ...more]);
});

t.test('the appender continues the running CRC of a version 3 log across reopenings and torn tails', async (t) => {
  const dir = t.testdir({});
  const file = join(dir, 'zo.log');
  const r = rng(seed ^ 0x0505);
  const records = randomRecords(r, 6, 0, 2);
  let a = await TrajectoryAppender.open(file, header());
  await a.append(records.slice(0, 4));
  await a.close();
  appendFileSync(file, encodeTrajectoryRecord(records[4]).subarray(0, 30)); // a torn append
  a = await TrajectoryAppender.open(file, header());
  t.equal(a.tornTail, true);
  await a.append(records.slice(4));
  await a.close();
  const bytes = readFileSync(file);
  const start = 48 + bytes.readUInt32LE(12);
  t.same(bytes.subarray(start), recordsBytes(records), 'the same bytes as one uninterrupted run');
  sameRecords(t, (await readTrajectory(file)).records, records);
});

t.test(
  'a FIFO or a directory in place of a log is refused naming the path, never waited on',
  { skip: process.platform === 'win32' && 'no mkfifo' },
  async (t) => {
    const dir = t.testdir({ 'a-dir.log': {} });
    const fifo = join(dir, 'fifo.log');
    execFileSync('mkfifo', [fifo]);
    for (const file of [fifo, join(dir, 'a-dir.log')]) {
      await t.rejects(readTrajectory(file), {
        code: 'ZOFO_IO',
        message: new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: is (not a regular file|a directory)`),
      });
    }
    await t.rejects(TrajectoryAppender.open(fifo, header()), { code: 'ZOFO_IO', message: /fifo\.log: is not a regular file/ });
  },
);
