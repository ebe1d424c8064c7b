// The fused kernels: perturb (x += a·z) and restore+update
// (x ← (1 − η·λ·mask)·x + a·z) over fp32, bf16 and f16 storage and whole tables,
// checked against float64 references built from gaussian() and the test's own
// rounding functions; plus exact round trips and rejection of bad input.
import t from 'tap';
import { kernels } from '../lib/index.js';
import { bf16ToNumber, f16ToNumber, freshSeed, numberToBf16, rng } from './helpers/reference.js';

const ulp32 = (x: number) => {
  const a = Math.abs(x);
  if (a < 2 ** -126) return 2 ** -149;
  return 2 ** (Math.floor(Math.log2(a)) - 23);
};

function randomWeights(n: number, seed: number, scale = 0.05): Float32Array {
  const r = rng(seed);
  const w = new Float32Array(n);
  for (let i = 0; i < n; i++) w[i] = (r() * 2 - 1) * scale;
  return w;
}

t.test('perturb(+a) then perturb(−a) restores fp32 weights within one rounding each way', async (t) => {
  const seed0 = freshSeed();
  const x0 = randomWeights(100_003, seed0);
  const x = x0.slice();
  const opts = { seed: BigInt(seed0), name: 'model.layers.0.mlp.up_proj.weight' };
  kernels.perturb(x, { ...opts, scale: 1e-3 });
  const pert = x.slice();
  kernels.perturb(x, { ...opts, scale: -1e-3 });
  let bad = 0,
    exact = 0;
  for (let i = 0; i < x.length; i++) {
    // |x' − x| ≤ ½ulp(x+az) + ½ulp(x'): each of the two adds rounds once.
    const bound = 0.5 * ulp32(pert[i]) + 0.5 * ulp32(x[i]);
    if (Math.abs(x[i] - x0[i]) > bound) bad++;
    if (x[i] === x0[i]) exact++;
  }
  t.equal(bad, 0, `no element off by more than its rounding bound (input seed ${seed0})`);
  t.comment(`${((100 * exact) / x.length).toFixed(1)}% restored bit-exactly`);
  t.not(Buffer.from(pert.buffer).equals(Buffer.from(x0.buffer)), 'the perturbation did change the weights');
});

t.test('perturb and restoreUpdate match float64 references over a table of tensors', async (t) => {
  const seed0 = freshSeed();
  const r = rng(seed0);
  const seed = (BigInt(seed0) << 20n) | 12345n;
  // Three tensors with gaps, odd offsets, a split tensor (first ≠ 0) and a decay-exempt one.
  const tensors = [
    { name: 'model.embed_tokens.weight', offset: 3, count: 1001, first: 0n, decay: false },
    { name: 'model.layers.0.self_attn.q_proj.weight', offset: 1010, count: 4099, first: 17n, decay: true },
    { name: 'model.norm.weight', offset: 5200, count: 513, first: 2n ** 33n + 1n, decay: true },
  ];
  const x0 = randomWeights(5800, seed0);
  const a = -(1e-3 + r() * 1e-3),
    lr = 1e-2 * (1 + r()),
    wd = 0.1 * (1 + r());

  const x = x0.slice();
  kernels.restoreUpdate(x, { seed, scale: a, lr, weightDecay: wd, tensors });
  const p = x0.slice();
  kernels.perturb(p, { seed, scale: a, tensors });

  const inTable = new Uint8Array(x0.length);
  let worstUpdate = 0,
    worstPerturb = 0;
  for (const ten of tensors) {
    const z = kernels.gaussian(ten.count, { seed, name: ten.name, offset: ten.first });
    // The kernel takes its coefficients in fp32: a, η·λ, and d = 1 − η·λ·mask.
    const a32 = Math.fround(a);
    const d32 = ten.decay ? Math.fround(1 - Math.fround(lr * wd)) : 1;
    for (let i = 0; i < ten.count; i++) {
      const k = ten.offset + i;
      inTable[k] = 1;
      const wantU = d32 * x0[k] + a32 * z[i];
      const wantP = x0[k] + a32 * z[i];
      // fp32 product d·x (½ ulp) then one fma (½ ulp): the error, in units of those bounds, is ≤ 1.
      worstUpdate = Math.max(worstUpdate, Math.abs(x[k] - wantU) / (0.5 * ulp32(d32 * x0[k]) + 0.5 * ulp32(Math.max(Math.abs(wantU), Math.abs(x[k])))));
      worstPerturb = Math.max(worstPerturb, Math.abs(p[k] - wantP) / ulp32(wantP));
    }
  }
  t.ok(worstUpdate <= 1, `restoreUpdate worst error ${worstUpdate.toFixed(3)} of its rounding bound (input seed ${seed0})`);
  t.ok(worstPerturb <= 0.5, `perturb worst error ${worstPerturb.toFixed(3)} ulp (one fma rounding)`);
  let touched = 0;
  for (let k = 0; k < x0.length; k++) if (!inTable[k] && (x[k] !== x0[k] || p[k] !== x0[k])) touched++;
  t.equal(touched, 0, 'elements outside the table are untouched');
});

t.test('one table pass equals one call per tensor, for any thread count', async (t) => {
  const seed = BigInt(freshSeed());
  const tensors = [
    { name: 'a', offset: 0, count: 70_001 },
    { name: 'b', offset: 70_001, count: 90_000, first: 5n },
    { name: 'c', offset: 160_001, count: 3 },
  ];
  const x0 = randomWeights(160_004, Number(seed & 0xffffn));
  const results = [1, 2, 5].map((threads) => {
    const x = x0.slice();
    kernels.restoreUpdate(x, { seed, scale: 0.01, lr: 0.1, weightDecay: 0.5, tensors, threads });
    return Buffer.from(x.buffer);
  });
  t.ok(results[0].equals(results[1]) && results[0].equals(results[2]), '1, 2 and 5 threads bit-identical');
  const y = x0.slice();
  for (const ten of tensors) {
    kernels.restoreUpdate(y.subarray(ten.offset, ten.offset + ten.count), {
      seed,
      scale: 0.01,
      lr: 0.1,
      weightDecay: 0.5,
      name: ten.name,
      offset: ten.first ?? 0n,
    });
  }
  t.ok(Buffer.from(y.buffer).equals(results[0]), 'per-tensor calls give the same bits');
});

t.test('bf16 and f16 storage: fp32 math, round to nearest even on store', async (t) => {
  const seed0 = freshSeed();
  const seed = BigInt(seed0);
  const n = 20_000;
  const r = rng(seed0);
  const a = 3e-3;
  for (const dtype of ['bf16', 'f16'] as const) {
    const bits0 = new Uint16Array(n);
    const toBits = dtype === 'bf16' ? numberToBf16 : (v: number) => kernels_f16(v);
    for (let i = 0; i < n; i++) bits0[i] = toBits((r() * 2 - 1) * 0.1);
    const bits = bits0.slice();
    kernels.perturb(bits, { seed, scale: a, dtype, name: 'w' });
    const z = kernels.gaussian(n, { seed, name: 'w' });
    const toNum = dtype === 'bf16' ? bf16ToNumber : f16ToNumber;
    let exact = 0,
      within1 = 0;
    for (let i = 0; i < n; i++) {
      const want = toBits(toNum(bits0[i]) + a * z[i]); // float64 math, one rounding
      if (bits[i] === want) exact++;
      else if (Math.abs(bits[i] - want) === 1) within1++;
    }
    t.equal(exact + within1, n, `${dtype}: every element within 1 unit of the float64 reference`);
    t.ok(exact / n > 0.999, `${dtype}: ${((100 * exact) / n).toFixed(3)}% exactly equal (fp32 intermediate may double-round)`);
  }
});

// Float64 → f16 bits, nearest even (the test's own reference; handles subnormals).
function kernels_f16(x: number): number {
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (Number.isNaN(x)) return 0x7e00;
  if (a >= 65520) return sign | 0x7c00;
  let e = Math.floor(Math.log2(a || 2 ** -30));
  if (2 ** e > a) e -= 1;
  e = Math.max(e, -14);
  const step = 2 ** (e - 10);
  let q = a / step;
  const fl = Math.floor(q),
    frac = q - fl;
  q = frac > 0.5 || (frac === 0.5 && fl % 2 === 1) ? fl + 1 : fl;
  const v = q * step;
  if (v >= 65536) return sign | 0x7c00;
  if (v < 2 ** -14) return sign | Math.round(v / 2 ** -24);
  let ex = Math.floor(Math.log2(v));
  if (2 ** ex > v) ex -= 1;
  return sign | ((ex + 15) << 10) | Math.round((v / 2 ** ex - 1) * 1024);
}

t.test('scale 0 leaves every bf16 and f16 bit pattern unchanged (conversions round-trip)', async (t) => {
  for (const dtype of ['bf16', 'f16'] as const) {
    const all = new Uint16Array(65536);
    for (let i = 0; i < 65536; i++) all[i] = i;
    const x = all.slice();
    kernels.restoreUpdate(x, { seed: 1, scale: 0, dtype, name: 'w' });
    let changed = 0;
    for (let i = 0; i < 65536; i++) {
      const isNaN = dtype === 'bf16' ? (i & 0x7f80) === 0x7f80 && (i & 0x7f) !== 0 : (i & 0x7c00) === 0x7c00 && (i & 0x3ff) !== 0;
      if (isNaN ? !(x[i] & (dtype === 'bf16' ? 0x7f : 0x3ff)) : x[i] !== i) changed++;
    }
    t.equal(changed, 0, `${dtype}: all 65536 patterns survive load → fp32 → store (NaNs stay NaN)`);
  }
});

t.test('async variants give the same bits off the JS thread', async (t) => {
  const seed = BigInt(freshSeed());
  const x0 = randomWeights(200_000, 7);
  const a = x0.slice(),
    b = x0.slice();
  kernels.restoreUpdate(a, { seed, scale: 1e-3, lr: 0.1, weightDecay: 0.01, name: 'w' });
  let ticks = 0;
  const timer = setInterval(() => ticks++, 0);
  await kernels.restoreUpdateAsync(b, { seed, scale: 1e-3, lr: 0.1, weightDecay: 0.01, name: 'w' });
  clearInterval(timer);
  t.ok(Buffer.from(a.buffer).equals(Buffer.from(b.buffer)), 'bit-identical to the sync call');
  await kernels.perturbAsync(b, { seed, scale: 1e-3, name: 'w' });
  kernels.perturb(a, { seed, scale: 1e-3, name: 'w' });
  t.ok(Buffer.from(a.buffer).equals(Buffer.from(b.buffer)), 'perturbAsync matches perturb');
  await t.rejects(kernels.perturbAsync(b, { seed: -1, scale: 1, name: 'w' }), { code: 'ZOFO_INVALID_ARG', message: /seed/ });
});

t.test('bad input is rejected with a clear error and leaves the buffer untouched', async (t) => {
  const x0 = randomWeights(64, 3);
  const x = x0.slice();
  const same = () => Buffer.from(x.buffer).equals(Buffer.from(x0.buffer));
  const cases: [string, () => void, RegExp][] = [
    ['Float64Array', () => kernels.perturb(new Float64Array(4) as unknown as Float32Array, { seed: 1, scale: 1, name: 'w' }), /Float32Array.*Float64Array/],
    ['Uint16Array without dtype', () => kernels.perturb(new Uint16Array(4), { seed: 1, scale: 1, name: 'w' }), /dtype/],
    ['f32 dtype on Uint16Array', () => kernels.perturb(new Uint16Array(4), { seed: 1, scale: 1, name: 'w', dtype: 'f32' }), /dtype/],
    ['bf16 dtype on Float32Array', () => kernels.perturb(x, { seed: 1, scale: 1, name: 'w', dtype: 'bf16' }), /dtype/],
    [
      'slice past the end',
      () => kernels.perturb(x, { seed: 1, scale: 1, tensors: [{ name: 'w', offset: 60, count: 5 }] }),
      /tensors\[0\].*past the end.*64 elements/,
    ],
    [
      'overlapping slices',
      () =>
        kernels.perturb(x, {
          seed: 1,
          scale: 1,
          tensors: [
            { name: 'a', offset: 0, count: 10 },
            { name: 'b', offset: 9, count: 10 },
          ],
        }),
      /tensors\[1\] overlaps/,
    ],
    ['negative count', () => kernels.perturb(x, { seed: 1, scale: 1, tensors: [{ name: 'a', offset: 0, count: -1 }] }), /tensors\[0\]\.count/],
    ['negative offset', () => kernels.perturb(x, { seed: 1, scale: 1, tensors: [{ name: 'a', offset: -2, count: 1 }] }), /tensors\[0\]\.offset/],
    ['fractional seed', () => kernels.perturb(x, { seed: 0.5, scale: 1, name: 'w' }), /seed/],
    ['NaN seed', () => kernels.perturb(x, { seed: NaN, scale: 1, name: 'w' }), /seed/],
    ['unsafe integer seed', () => kernels.perturb(x, { seed: 2 ** 60, scale: 1, name: 'w' }), /seed/],
    ['NaN scale', () => kernels.perturb(x, { seed: 1, scale: NaN, name: 'w' }), /scale/],
    ['infinite lr', () => kernels.restoreUpdate(x, { seed: 1, scale: 1, name: 'w', lr: Infinity }), /lr/],
    ['missing name', () => kernels.perturb(x, { seed: 1, scale: 1 }), /name/],
    ['tensors and name', () => kernels.perturb(x, { seed: 1, scale: 1, name: 'w', tensors: [] }), /not both/],
  ];
  for (const [what, fn, message] of cases) {
    t.throws(fn, { code: 'ZOFO_INVALID_ARG', message }, what);
    t.ok(same(), `${what}: buffer untouched`);
  }
  // A SharedArrayBuffer-backed view, and a detached buffer.
  const shared = new Float32Array(new SharedArrayBuffer(16));
  t.throws(() => kernels.perturb(shared, { seed: 1, scale: 1, name: 'w' }), { code: 'ZOFO_INVALID_ARG', message: /SharedArrayBuffer/ });
  const detached = new Float32Array(8);
  structuredClone(detached.buffer, { transfer: [detached.buffer] });
  t.throws(() => kernels.perturb(detached, { seed: 1, scale: 1, name: 'w' }), { code: 'ZOFO_INVALID_ARG', message: /detached/ });
});
