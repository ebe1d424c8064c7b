// safetensors reader/writer: exact round trips, the byte layout against a hand-built
// file, the f16/bf16 → f32 conversion on every bit pattern, one test per kind of
// hostile file, native bounds checks, atomic writes, sharded checkpoints, and close().
import t, { type Test } from 'tap';
import { mkdirSync, readdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openCheckpoint, openSafetensors, writeSafetensors, ZofoError, type TensorData } from '../lib/index.js';
import { cpuBinding } from '../lib/binding.js';
import { f16ToNumber, freshSeed, rng } from './helpers/reference.js';
import { bf16Definition, entry, fileBytes } from './helpers/safetensors-bytes.js';

const DTYPES = ['F32', 'F16', 'BF16'] as const;

/** Random tensors of every dtype: random shapes (rank 0..3), plus an empty one per dtype. */
function randomTensors(seed: number): Record<string, TensorData> {
  const r = rng(seed);
  const out: Record<string, TensorData> = {};
  const count = 3 + Math.floor(r() * 5);
  for (let i = 0; i < count; i++) {
    const dtype = DTYPES[i % 3];
    const rank = i === 0 ? 0 : Math.floor(r() * 4); // tensor 0 is a 0-d scalar
    const shape = Array.from({ length: rank }, () => 1 + Math.floor(r() * 7));
    const n = shape.reduce((a, b) => a * b, 1);
    const data = dtype === 'F32' ? new Float32Array(n) : new Uint16Array(n);
    // Any bits, NaN payloads included: the file must carry them unchanged.
    const bits = dtype === 'F32' ? new Uint32Array(data.buffer) : data;
    const range = dtype === 'F32' ? 2 ** 32 : 65536;
    for (let k = 0; k < n; k++) bits[k] = Math.floor(r() * range);
    out[`model.layers.${i}.w${Math.floor(r() * 100)}`] = { dtype, shape, data };
  }
  for (const dtype of DTYPES) out[`empty.${dtype}`] = { dtype, shape: [3, 0], data: dtype === 'F32' ? new Float32Array(0) : new Uint16Array(0) };
  return out;
}

const bytesOf = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** Asserts that `promise` rejects with `code` and a message naming `file` and matching `problem`. */
async function rejectsWith(t: Test, promise: Promise<unknown>, code: string, file: string, problem: RegExp): Promise<void> {
  try {
    await promise;
    t.fail(`expected ${code} (${problem}) but it succeeded`);
  } catch (err) {
    t.type(err, ZofoError);
    t.equal((err as ZofoError).code, code, (err as Error).message);
    t.ok((err as Error).message.includes(file), 'the message names the file');
    t.match((err as Error).message, problem);
  }
}

t.test('writer → reader round trip is bit-identical for F32, F16 and BF16', async (t) => {
  const seed = freshSeed();
  t.comment(`input seed ${seed}`);
  const dir = t.testdir({});
  const file = join(dir, 'model.safetensors');
  const tensors = randomTensors(seed);
  await writeSafetensors(file, tensors, { note: 'zofo test' });
  const st = await openSafetensors(file);
  t.teardown(() => st.close());
  t.equal(st.file, file);
  t.same(st.metadata, { format: 'pt', note: 'zofo test' }, 'metadata: format pt merged with ours');
  t.same([...st.tensors.keys()].sort(), Object.keys(tensors).sort(), 'every tensor, nothing else');
  for (const [name, want] of Object.entries(tensors)) {
    const info = st.tensors.get(name)!;
    t.equal(info.dtype, want.dtype, `${name} dtype`);
    t.same(info.shape, want.shape, `${name} shape`);
    const raw = await st.readRaw(name);
    t.ok(Buffer.from(raw).equals(bytesOf(want.data)), `${name} (${want.dtype} [${want.shape}]) raw bytes identical (seed ${seed})`);
    const values = await st.read(name);
    t.equal(values.length, want.data.length, `${name} element count`);
    if (want.dtype === 'F32') t.ok(bytesOf(values).equals(bytesOf(want.data)), `${name} fp32 read is bit-identical`);
  }
  // A Map works too, and gives the same file.
  const again = join(dir, 'again.safetensors');
  await writeSafetensors(again, new Map(Object.entries(tensors).reverse()), { note: 'zofo test' });
  t.ok(readFileSync(again).equals(readFileSync(file)), 'same bytes from a Map in another insertion order');
});

t.test('without mmap (ZOFO_MMAP=0) positioned reads give the same values, across chunk boundaries', async (t) => {
  const seed = freshSeed();
  t.comment(`input seed ${seed}`);
  const r = rng(seed);
  const n = 200_003; // > 3 chunks of 2^16 elements
  const f32 = new Float32Array(n).map(() => r() * 2 - 1);
  const bits = new Uint16Array(n).map(() => Math.floor(r() * 65536));
  const file = join(t.testdir({}), 'big.safetensors');
  await writeSafetensors(file, {
    a: { dtype: 'F32', shape: [n], data: f32 },
    b: { dtype: 'BF16', shape: [n], data: bits },
    c: { dtype: 'F16', shape: [n], data: bits },
  });
  const mapped = await openSafetensors(file);
  const { MappedFile } = cpuBinding();
  const probe = (what: string, want: boolean) => {
    const f = new MappedFile(file);
    t.equal(f.mapped, want, what);
    f.close();
  };
  probe('mmap is the default', true);
  process.env.ZOFO_MMAP = '0';
  let unmapped;
  try {
    probe('ZOFO_MMAP=0 turns it off', false);
    unmapped = await openSafetensors(file);
  } finally {
    delete process.env.ZOFO_MMAP;
  }
  t.teardown(() => {
    mapped.close();
    unmapped.close();
  });
  for (const name of ['a', 'b', 'c']) {
    t.ok(bytesOf(await unmapped.read(name)).equals(bytesOf(await mapped.read(name))), `${name}: same fp32 values (seed ${seed})`);
    t.ok(Buffer.from(await unmapped.readRaw(name)).equals(Buffer.from(await mapped.readRaw(name))), `${name}: same raw bytes`);
  }
  t.ok(bytesOf(await unmapped.read('a')).equals(bytesOf(f32)), 'and they are the written ones');
  // A file cut short after it was opened: the positioned read fails cleanly (ZOFO_IO).
  truncateSync(file, 1000);
  await rejectsWith(t, unmapped.read('c'), 'ZOFO_IO', file, /file ended at offset|read .* failed/);
});

t.test('the file layout equals one built by hand from the format description', async (t) => {
  const seed = freshSeed();
  t.comment(`input seed ${seed}`);
  const r = rng(seed);
  const dir = t.testdir({});
  const file = join(dir, 'layout.safetensors');
  const b = new Uint16Array(Array.from({ length: 6 }, () => Math.floor(r() * 65536)));
  const a = new Float32Array([r(), -r(), r()]);
  const s = new Uint16Array([Math.floor(r() * 65536)]);
  // Names chosen so sorted order differs from insertion order, and "10" is integer-like.
  await writeSafetensors(
    file,
    {
      'z.bias': { dtype: 'BF16', shape: [2, 3], data: b },
      '10': { dtype: 'F16', shape: [], data: s },
      'a.weight': { dtype: 'F32', shape: [3], data: a },
    },
    { zz: 'last', aa: 'first' },
  );

  const json =
    '{"__metadata__":{"format":"pt","aa":"first","zz":"last"},' +
    `"10":${entry('F16', [], 0, 2)},"a.weight":${entry('F32', [3], 2, 14)},"z.bias":${entry('BF16', [2, 3], 14, 26)}}`;
  const padded = json + ' '.repeat((8 - ((8 + json.length) % 8)) % 8);
  const want = Buffer.concat([fileBytes(padded), bytesOf(s), bytesOf(a), bytesOf(b)]);
  const got = readFileSync(file);
  t.equal(got.readBigUInt64LE(0), BigInt(padded.length), 'length prefix: u64 LE of the padded header');
  t.equal((8 + Number(got.readBigUInt64LE(0))) % 8, 0, 'data starts at a multiple of 8');
  t.equal(got.subarray(8 + json.length, 8 + padded.length).toString('latin1'), ' '.repeat(padded.length - json.length), 'padding is spaces');
  t.ok(got.equals(want), `whole file byte-identical to the hand-built one (seed ${seed})`);
});

t.test('F16 and BF16 → F32 conversion on all 65536 bit patterns', async (t) => {
  const dir = t.testdir({});
  const file = join(dir, 'all.safetensors');
  const bits = new Uint16Array(65536).map((_, i) => i);
  await writeSafetensors(file, { f16: { dtype: 'F16', shape: [65536], data: bits }, bf16: { dtype: 'BF16', shape: [256, 256], data: bits } });
  const st = await openSafetensors(file);
  t.teardown(() => st.close());
  for (const [name, decode] of [
    ['f16', f16ToNumber],
    ['bf16', bf16Definition],
  ] as const) {
    const got = await st.read(name);
    let bad = 0,
      first = -1;
    for (let i = 0; i < 65536; i++) {
      const want = decode(i);
      const ok = Number.isNaN(want) ? Number.isNaN(got[i]) : Object.is(got[i], want); // Object.is: ±0 differ
      if (!ok) {
        bad++;
        if (first < 0) first = i;
      }
    }
    t.equal(bad, 0, `${name}: every pattern decodes exactly${bad ? ` (first bad 0x${first.toString(16)}: ${got[first]})` : ''}`);
  }
});

t.test('an empty file with zero tensors is valid', async (t) => {
  const dir = t.testdir({ 'empty.safetensors': fileBytes('{}      ') });
  const st = await openSafetensors(join(dir, 'empty.safetensors'));
  t.equal(st.tensors.size, 0);
  t.same(st.metadata, {});
  st.close();
  const written = join(dir, 'written.safetensors');
  await writeSafetensors(written, {});
  const back = await openSafetensors(written);
  t.equal(back.tensors.size, 0);
  t.same(back.metadata, { format: 'pt' });
  back.close();
});

// ---- hostile files: each built by hand, each must be rejected before any tensor read ----

const F32x2 = new Uint8Array(8);
const hostile: [string, Buffer, RegExp][] = [
  ['shorter than 8 bytes', Buffer.from([1, 0, 0]), /3 bytes, shorter than the 8-byte header length/],
  ['header length past the end of the file', fileBytes('{}', undefined, 1000n), /header length 1000 runs past the end of the file \(10 bytes\)/],
  ['header length over 100 MB', fileBytes('{}', undefined, 100_000_001n), /header length 100000001 exceeds the limit of 100000000 bytes/],
  ['header length near 2^64', fileBytes('{}', undefined, (1n << 64n) - 1n), /exceeds the limit/],
  ['invalid UTF-8', fileBytes(new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d])), /header is not valid UTF-8/],
  ['invalid JSON', fileBytes('{"a": {"dtype": "F32",'), /header is not valid JSON/],
  ['header is an array', fileBytes('[1, 2]'), /header is not a JSON object but an array/],
  ['header is a number', fileBytes('42'), /header is not a JSON object but 42/],
  ['entry is not an object', fileBytes('{"w": [1, 2]}'), /tensor "w": entry must be an object/],
  ['missing dtype', fileBytes('{"w":{"shape":[2],"data_offsets":[0,8]}}', F32x2), /tensor "w": missing dtype/],
  ['missing shape', fileBytes('{"w":{"dtype":"F32","data_offsets":[0,8]}}', F32x2), /tensor "w": missing shape/],
  ['missing data_offsets', fileBytes('{"w":{"dtype":"F32","shape":[2]}}', F32x2), /tensor "w": missing data_offsets/],
  ['dtype not a string', fileBytes('{"w":{"dtype":4,"shape":[2],"data_offsets":[0,8]}}', F32x2), /tensor "w": dtype must be a string/],
  ['unknown dtype', fileBytes(`{"w":${entry('F33', [2], 0, 8)}}`, F32x2), /unknown dtype "F33" for tensor "w"/],
  ['dtype named like an Object method', fileBytes(`{"w":${entry('toString', [2], 0, 8)}}`, F32x2), /unknown dtype "toString" for tensor "w"/],
  ['unsupported dtype F64', fileBytes(`{"w":${entry('F64', [1], 0, 8)}}`, F32x2), /unsupported dtype F64 for tensor "w"/],
  ['unsupported dtype I64', fileBytes(`{"w":${entry('I64', [1], 0, 8)}}`, F32x2), /unsupported dtype I64 for tensor "w"/],
  [
    'negative dimension',
    fileBytes('{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}', F32x2),
    /tensor "w": shape must be an array of non-negative safe integers, not \[-2\]/,
  ],
  ['fractional dimension', fileBytes('{"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}', F32x2), /tensor "w": shape must be/],
  ['shape not an array', fileBytes('{"w":{"dtype":"F32","shape":"2","data_offsets":[0,8]}}', F32x2), /tensor "w": shape must be/],
  ['shape with more than 2^53 elements', fileBytes(`{"w":${entry('F32', [2 ** 30, 2 ** 30, 2 ** 30], 0, 8)}}`, F32x2), /needs more than 2\^53/],
  [
    'three data_offsets',
    fileBytes('{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}}', F32x2),
    /tensor "w": data_offsets must be two non-negative safe integers/,
  ],
  ['begin after end', fileBytes('{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}', F32x2), /begin ≤ end, not \[8,0\]/],
  ['offset beyond 2^53', fileBytes('{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,9007199254740993]}}', F32x2), /data_offsets must be/],
  ['negative offset', fileBytes('{"w":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}}', F32x2), /data_offsets must be/],
  ['size ≠ numel·width', fileBytes(`{"w":${entry('F32', [3], 0, 8)}}`, F32x2), /tensor "w": data_offsets \[0, 8\] hold 8 bytes but F32 \[3\] needs 12/],
  [
    'offsets past the data section',
    fileBytes(`{"w":${entry('F32', [4], 0, 16)}}`, F32x2),
    /tensor "w": data_offsets \[0, 16\] run past the end of the data section \(8 bytes\)/,
  ],
  [
    'overlapping tensors',
    fileBytes(`{"a":${entry('F32', [2], 0, 8)},"b":${entry('F32', [1], 4, 8)}}`, F32x2),
    /tensor "b" \[4, 8\] overlaps tensor "a", which ends at 8/,
  ],
  [
    'hole between tensors',
    fileBytes(`{"a":${entry('F32', [1], 0, 4)},"b":${entry('BF16', [1], 6, 8)}}`, F32x2),
    /hole in the data section: bytes \[4, 6\) belong to no tensor/,
  ],
  ['hole at the start', fileBytes(`{"a":${entry('F32', [1], 4, 8)}}`, F32x2), /hole in the data section: bytes \[0, 4\)/],
  ['bytes after the last tensor', fileBytes(`{"a":${entry('F32', [1], 0, 4)}}`, F32x2), /bytes \[4, 8\) at its end belong to no tensor/],
  ['duplicate tensor names', fileBytes(`{"w":${entry('F32', [1], 0, 4)},"w":${entry('F32', [1], 4, 8)}}`, F32x2), /duplicate tensor name "w"/],
  [
    'duplicate names spelled with escapes',
    fileBytes(`{"w":${entry('F32', [1], 0, 4)},"\\u0077":${entry('F32', [1], 4, 8)}}`, F32x2),
    /duplicate tensor name "w"/,
  ],
  [
    'duplicate key inside an entry',
    fileBytes(`{"w":{"dtype":"F32","shape":[2],"dtype":"F32","data_offsets":[0,8]}}`, F32x2),
    /duplicate key "dtype" in the header entry "w"/,
  ],
  ['__metadata__ not an object', fileBytes('{"__metadata__":"pt"}'), /__metadata__ must be an object of strings/],
  [
    '__metadata__ with a non-string value',
    fileBytes('{"__metadata__":{"format":"pt","step":3}}'),
    /__metadata__ must map strings to strings, but key "step" holds 3 of type number/,
  ],
];

for (const [what, bytes, problem] of hostile) {
  t.test(`hostile file rejected: ${what}`, async (t) => {
    const file = join(t.testdir({}), 'hostile.safetensors');
    writeFileSync(file, bytes);
    await rejectsWith(t, openSafetensors(file), 'ZOFO_BAD_FILE', file, problem);
  });
}

t.test('strings in arrays and values do not confuse the duplicate-key scan', async (t) => {
  const header = `{"__metadata__":{"a":"x\\",\\"y","b":"{[,"},"w":${entry('F32', [2], 0, 8)}}`;
  const file = join(t.testdir({}), 'ok.safetensors');
  writeFileSync(file, fileBytes(header, F32x2));
  const st = await openSafetensors(file);
  t.same(st.metadata, { a: 'x","y', b: '{[,' });
  st.close();
});

t.test('a file that does not exist is ZOFO_IO naming it', async (t) => {
  const file = join(t.testdir({}), 'missing.safetensors');
  await rejectsWith(t, openSafetensors(file), 'ZOFO_IO', file, /cannot open/);
  await t.rejects(openSafetensors(''), { code: 'ZOFO_INVALID_ARG' });
});

t.test('native reads are bounds-checked: bad calls throw, never read out of bounds', async (t) => {
  const file = join(t.testdir({}), 'small.bin');
  writeFileSync(file, Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]));
  const { MappedFile } = cpuBinding();
  const f = new MappedFile(file);
  t.equal(f.size, 8);
  const out = new Uint8Array(4);
  await f.readRaw(4, out);
  t.same([...out], [5, 6, 7, 8], 'an in-range read works');
  t.throws(() => f.readRaw(5, out), { code: 'ZOFO_INVALID_ARG', message: /\[5, 5 \+ 4\) is outside the file of 8 bytes/ });
  t.throws(() => f.readRaw(2 ** 53 - 1, out), { code: 'ZOFO_INVALID_ARG' });
  t.throws(() => f.readRaw(-1, out), { code: 'ZOFO_INVALID_ARG' });
  t.throws(() => f.readRaw(0.5, out), { code: 'ZOFO_INVALID_ARG' });
  t.throws(() => f.readF32(4, 8, 0, new Float32Array(2)), { code: 'ZOFO_INVALID_ARG', message: /outside the file/ });
  t.throws(() => f.readF32(0, 8, 0, new Float32Array(1)), { code: 'ZOFO_INVALID_ARG', message: /does not match out/ });
  t.throws(() => f.readF32(0, 4, 7, new Float32Array(1)), { code: 'ZOFO_INVALID_ARG', message: /dtype code/ });
  t.throws(() => f.readF32(0, 4, 0, new Uint8Array(4) as unknown as Float32Array), { code: 'ZOFO_INVALID_ARG' });
  t.throws(() => f.readRaw(0, new Float32Array(1) as unknown as Uint8Array), { code: 'ZOFO_INVALID_ARG' });
  const half = new Float32Array(2);
  await f.readF32(0, 4, 2, half);
  t.equal(half[0], f16ToNumber(0x0201), 'f16 read of bytes 01 02 (little-endian)');
  f.close();
  t.throws(() => f.size, { code: 'ZOFO_CLOSED' });
  t.throws(() => f.readRaw(0, out), { code: 'ZOFO_CLOSED', message: /small\.bin was closed/ });
  t.doesNotThrow(() => f.close(), 'closing twice is harmless');
  t.throws(() => new MappedFile(join(file, 'nope')), { code: 'ZOFO_IO' });
  t.throws(() => new MappedFile(t.testdirName), { code: 'ZOFO_IO', message: /is a directory/ });
  t.throws(() => new (MappedFile as unknown as new (p: number) => unknown)(3), { code: 'ZOFO_INVALID_ARG' });
});

t.test('use after close() throws ZOFO_CLOSED; a read in flight still completes', async (t) => {
  const seed = freshSeed();
  t.comment(`input seed ${seed}`);
  const file = join(t.testdir({}), 'm.safetensors');
  const data = new Float32Array(1 << 20).map(rng(seed));
  await writeSafetensors(file, { w: { dtype: 'F32', shape: [1024, 1024], data } });
  const st = await openSafetensors(file);
  const pending = st.read('w');
  st.close();
  t.ok(st.closed);
  t.ok(bytesOf(await pending).equals(bytesOf(data)), 'the read started before close() returns the right bytes');
  await rejectsWith(t, st.read('w'), 'ZOFO_CLOSED', file, /was closed/);
  await rejectsWith(t, st.readRaw('w'), 'ZOFO_CLOSED', file, /was closed/);
  st.close();
  const open = await openSafetensors(file);
  await rejectsWith(t, open.read('nope'), 'ZOFO_INVALID_ARG', file, /no tensor "nope"/);
  open.close();
});

// ---- atomic writes ----

t.test('writing into a directory that does not exist throws ZOFO_IO and leaves nothing', async (t) => {
  const dir = t.testdir({});
  const file = join(dir, 'no', 'such', 'dir', 'x.safetensors');
  await rejectsWith(t, writeSafetensors(file, { w: { dtype: 'F32', shape: [1], data: new Float32Array(1) } }), 'ZOFO_IO', file, /cannot write/);
  t.same(readdirSync(dir), [], 'nothing created');
});

t.test('a failed write leaves an existing target byte-identical and no temp file', async (t) => {
  const dir = t.testdir({});
  const file = join(dir, 'model.safetensors');
  await writeSafetensors(file, { w: { dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) } });
  const before = readFileSync(file);
  const good = { dtype: 'F32', shape: [1], data: new Float32Array(1) } as const;
  const bad: [string, Record<string, unknown>, Record<string, string> | undefined, RegExp][] = [
    [
      'shape ≠ data length',
      { a: good, m: { dtype: 'F32', shape: [3], data: new Float32Array(2) }, z: good },
      undefined,
      /tensor "m": shape \[3\] has 3 elements but data has 2/,
    ],
    [
      'F16 with a Float32Array',
      { a: good, m: { dtype: 'F16', shape: [1], data: new Float32Array(1) }, z: good },
      undefined,
      /Expected a Uint16Array for dtype F16 for tensor "m".data/,
    ],
    ['F32 with a Uint16Array', { a: good, m: { dtype: 'F32', shape: [1], data: new Uint16Array(1) } }, undefined, /Expected a Float32Array/],
    ['unknown dtype', { a: good, m: { dtype: 'F64', shape: [1], data: new Float32Array(1) } }, undefined, /'F32', 'F16' or 'BF16' for tensor "m".dtype/],
    ['bad shape', { m: { dtype: 'F32', shape: [-1], data: new Float32Array(1) } }, undefined, /non-negative safe integers for tensor "m".shape/],
    ['not an object', { m: 3 }, undefined, /an object \{dtype, shape, data\} for tensor "m"/],
    ['empty name', { '': good }, undefined, /non-empty tensor name/],
    ['reserved name', { __metadata__: good }, undefined, /"__metadata__" is reserved/],
    ['non-string metadata', { a: good }, { step: 3 as unknown as string }, /metadata\["step"\]/],
  ];
  for (const [what, tensors, metadata, problem] of bad) {
    await t.rejects(writeSafetensors(file, tensors as Record<string, TensorData>, metadata), { code: 'ZOFO_INVALID_ARG', message: problem }, what);
  }
  await t.rejects(writeSafetensors(file, null as unknown as Record<string, TensorData>), { code: 'ZOFO_INVALID_ARG' }, 'tensors not a record');
  await t.rejects(writeSafetensors(file, {}, [] as unknown as Record<string, string>), { code: 'ZOFO_INVALID_ARG' }, 'metadata not a record');
  await t.rejects(writeSafetensors('', {}), { code: 'ZOFO_INVALID_ARG' }, 'empty path');
  t.ok(readFileSync(file).equals(before), 'target byte-identical after every failed write');
  t.same(readdirSync(dir), ['model.safetensors'], 'no temp file left behind');

  // A failure after the temp file exists (rename onto a directory) also cleans up.
  const target = join(dir, 'a-directory');
  mkdirSync(target);
  writeFileSync(join(target, 'keep'), 'x');
  await rejectsWith(t, writeSafetensors(target, { w: good }), 'ZOFO_IO', target, /cannot write/);
  t.same(readdirSync(dir).sort(), ['a-directory', 'model.safetensors'], 'temp file removed after a failed rename');
  t.same(readdirSync(target), ['keep'], 'the directory is untouched');
});

// ---- sharded checkpoints ----

t.test('two shards + index read back identical to the single file', async (t) => {
  const seed = freshSeed();
  t.comment(`input seed ${seed}`);
  const tensors = randomTensors(seed);
  const names = Object.keys(tensors).sort();
  const single = t.testdir({});
  await writeSafetensors(join(single, 'model.safetensors'), tensors);
  const sharded = join(single, 'sharded');
  mkdirSync(sharded);
  const half = Math.ceil(names.length / 2);
  const shardNames = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
  const weightMap: Record<string, string> = {};
  for (const [i, part] of [names.slice(0, half), names.slice(half)].entries()) {
    await writeSafetensors(join(sharded, shardNames[i]), Object.fromEntries(part.map((n) => [n, tensors[n]])));
    for (const n of part) weightMap[n] = shardNames[i];
  }
  writeFileSync(join(sharded, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));

  const a = await openCheckpoint(single);
  const b = await openCheckpoint(sharded);
  t.teardown(() => {
    a.close();
    b.close();
  });
  t.equal(a.shards.length, 1);
  t.equal(b.shards.length, 2, 'each shard opened once');
  t.same([...b.tensors.keys()].sort(), names);
  for (const n of names) {
    t.same(b.tensors.get(n)!.shape, a.tensors.get(n)!.shape, `${n} shape`);
    t.ok(Buffer.from(await b.readRaw(n)).equals(Buffer.from(await a.readRaw(n))), `${n} raw bytes equal (seed ${seed})`);
    t.ok(bytesOf(await b.read(n)).equals(bytesOf(await a.read(n))), `${n} fp32 values equal`);
    t.equal(b.fileOf(n).file, join(sharded, weightMap[n]), `${n} comes from its shard`);
  }
  await t.rejects(b.read('nope'), { code: 'ZOFO_INVALID_ARG', message: /no tensor "nope" in the checkpoint/ });
  await t.rejects(b.readRaw('nope'), { code: 'ZOFO_INVALID_ARG' });
  b.close();
  await t.rejects(b.read(names[0]), { code: 'ZOFO_CLOSED' }, 'closing the checkpoint closes its shards');
});

t.test('broken sharded checkpoints are rejected naming the file', async (t) => {
  const one = { w1: { dtype: 'F32', shape: [1], data: new Float32Array([1]) } } as const;
  const two = { w2: { dtype: 'F32', shape: [1], data: new Float32Array([2]) } } as const;
  async function checkpoint(index: string | object, shards: Record<string, Record<string, TensorData>>): Promise<string> {
    const dir = t.testdir({});
    for (const [name, tensors] of Object.entries(shards)) await writeSafetensors(join(dir, name), tensors);
    writeFileSync(join(dir, 'model.safetensors.index.json'), typeof index === 'string' ? index : JSON.stringify(index));
    return dir;
  }
  const idx = (dir: string) => join(dir, 'model.safetensors.index.json');
  let dir = await checkpoint({ weight_map: { w1: 's1.safetensors', w2: 'gone.safetensors' } }, { 's1.safetensors': one });
  await rejectsWith(t, openCheckpoint(dir), 'ZOFO_BAD_FILE', idx(dir), /shard gone\.safetensors \(.*gone\.safetensors\) named by weight_map does not exist/);
  dir = await checkpoint('{"weight_map": {', {});
  await rejectsWith(t, openCheckpoint(dir), 'ZOFO_BAD_FILE', idx(dir), /index is not valid JSON/);
  dir = await checkpoint({ weights: {} }, {});
  await rejectsWith(t, openCheckpoint(dir), 'ZOFO_BAD_FILE', idx(dir), /"weight_map" object/);
  dir = await checkpoint({ weight_map: { w1: '../s1.safetensors' } }, {});
  await rejectsWith(t, openCheckpoint(dir), 'ZOFO_BAD_FILE', idx(dir), /weight_map\["w1"\] must be a file name inside the checkpoint directory/);
  dir = await checkpoint({ weight_map: { w1: 's1.safetensors', w2: 's1.safetensors' } }, { 's1.safetensors': one, 's2.safetensors': two });
  await rejectsWith(t, openCheckpoint(dir), 'ZOFO_BAD_FILE', idx(dir), /weight_map puts tensor "w2" in .*s1\.safetensors, which does not hold it/);
  dir = await checkpoint({ weight_map: { w1: 's1.safetensors', w2: 's2.safetensors' } }, { 's1.safetensors': one, 's2.safetensors': { ...one, ...two } });
  await rejectsWith(t, openCheckpoint(dir), 'ZOFO_BAD_FILE', idx(dir), /tensor "w1" appears in two shards: .*s1\.safetensors and .*s2\.safetensors/);
  dir = await checkpoint({ weight_map: { w1: 's1.safetensors' } }, { 's1.safetensors': { ...one, ...two } });
  await rejectsWith(t, openCheckpoint(dir), 'ZOFO_BAD_FILE', idx(dir), /tensor "w2" of .*s1\.safetensors is missing from weight_map/);
  dir = await checkpoint({ weight_map: { w1: 's1.safetensors' } }, { 's1.safetensors': one });
  writeFileSync(join(dir, 's1.safetensors'), Buffer.from([1, 2]));
  await rejectsWith(t, openCheckpoint(dir), 'ZOFO_BAD_FILE', join(dir, 's1.safetensors'), /shorter than the 8-byte header length/);
  const empty = t.testdir({});
  await rejectsWith(t, openCheckpoint(empty), 'ZOFO_IO', empty, /no model\.safetensors or model\.safetensors\.index\.json/);
  await t.rejects(openCheckpoint(''), { code: 'ZOFO_INVALID_ARG' });
});
