// The Gaussian generator of docs/algorithm.md §3: conformance with the float64 formula,
// stream ids, N(0,1) statistics, independence, thread-count independence.
import t from 'tap';
import { kernels } from '../lib/index.js';
import { fnv1a64Ref, freshSeed, gaussianRef, normalCdf, rng } from './helpers/reference.js';

const U64 = (r: () => number) => (BigInt(Math.floor(r() * 2 ** 32)) << 32n) | BigInt(Math.floor(r() * 2 ** 32));

t.test('stream id is FNV-1a-64 of the UTF-8 name', async (t) => {
  t.equal(kernels.streamId('a'), 0xaf63dc4c8601ec8cn, 'published FNV-1a-64 test vector for "a"');
  for (const name of ['model.layers.3.self_attn.q_proj.weight', 'transformer.h.0.attn.c_attn.weight', 'émbed·ü', 'lm_head.weight']) {
    t.equal(kernels.streamId(name), fnv1a64Ref(name), name);
  }
});

t.test('z matches the float64 formula within 4e-6·max(1,|z|)', async (t) => {
  const seed0 = freshSeed();
  const r = rng(seed0);
  let worst = 0,
    count = 0;
  for (let trial = 0; trial < 12; trial++) {
    const seed = U64(r);
    const name = `model.layers.${trial}.mlp.down_proj.weight`;
    // Offsets that are not multiples of 4, and beyond 2^32 (block counter carries into c1).
    const offset = trial % 3 === 0 ? BigInt(Math.floor(r() * 1000)) : trial % 3 === 1 ? 2n ** 34n + BigInt(Math.floor(r() * 1000)) : U64(r) >> 3n;
    const n = 257;
    const z = kernels.gaussian(n, { seed, name, offset });
    const stream = fnv1a64Ref(name);
    for (let i = 0; i < n; i++) {
      const ref = gaussianRef(seed, stream, offset + BigInt(i));
      const err = Math.abs(z[i] - ref) / Math.max(1, Math.abs(ref));
      worst = Math.max(worst, err);
      count++;
    }
  }
  t.ok(worst <= 4e-6, `worst scaled error ${worst.toExponential(2)} over ${count} samples (input seed ${seed0})`);
});

t.test('a slice equals the same elements of a longer draw; name and stream agree', async (t) => {
  const seed = BigInt(freshSeed());
  const whole = kernels.gaussian(1000, { seed, name: 'w' });
  const part = kernels.gaussian(333, { seed, name: 'w', offset: 101 });
  t.same(Array.from(part), Array.from(whole.subarray(101, 434)));
  const byStream = kernels.gaussian(1000, { seed, stream: kernels.streamId('w') });
  t.same(Array.from(byStream), Array.from(whole));
  t.same(Array.from(kernels.gaussian(10, { seed: 5, name: 'w' })), Array.from(kernels.gaussian(10, { seed: 5n, name: 'w' })), 'number and bigint seeds agree');
});

t.test('N(0,1) statistics on 2^21 samples', async (t) => {
  const n = 1 << 21;
  const z = kernels.gaussian(n, { seed: BigInt(freshSeed()), name: 'stats' });
  let sum = 0,
    sq = 0;
  for (let i = 0; i < n; i++) {
    sum += z[i];
    sq += z[i] * z[i];
  }
  const mean = sum / n,
    variance = sq / n - mean * mean;
  // False alarms, per check: 6 standard errors 2e-9; KS at 2.90/√m 1e-7 (asymptotic
  // Kolmogorov tail 2·exp(−2x²)); the tail count at 6√λ 1.5e-8 (Poisson). About 1.2e-7 per run.
  t.ok(Math.abs(mean) < 6 / Math.sqrt(n), `mean ${mean.toExponential(2)} (bound ${(6 / Math.sqrt(n)).toExponential(2)})`);
  t.ok(Math.abs(variance - 1) < 6 * Math.sqrt(2 / n), `variance ${variance.toFixed(5)} (bound ±${(6 * Math.sqrt(2 / n)).toExponential(2)})`);
  // Kolmogorov–Smirnov against Φ on a 2^18 subsample: critical value at α = 1e-7 is 2.90/√m.
  const m = 1 << 18;
  const sample = Float64Array.from(z.subarray(0, m)).sort();
  let d = 0;
  for (let i = 0; i < m; i++) {
    const cdf = normalCdf(sample[i]);
    d = Math.max(d, (i + 1) / m - cdf, cdf - i / m);
  }
  const critical = 2.9 / Math.sqrt(m);
  t.ok(d < critical, `KS D = ${d.toExponential(3)} < ${critical.toExponential(3)} (α = 1e-7)`);
  // The tails exist and are not clipped: |z| > 4 has probability 6.3e-5.
  let tail = 0,
    maxAbs = 0;
  for (let i = 0; i < n; i++) {
    const a = Math.abs(z[i]);
    if (a > 4) tail++;
    maxAbs = Math.max(maxAbs, a);
  }
  const expected = n * 6.334e-5;
  t.ok(Math.abs(tail - expected) < 6 * Math.sqrt(expected), `|z| > 4: ${tail} samples, expected ${expected.toFixed(0)}`);
  t.ok(maxAbs < 6, `max |z| = ${maxAbs.toFixed(3)} (Box–Muller on 2^-24 uniforms is bounded by 5.77)`);
});

function correlation(a: Float32Array, b: Float32Array): number {
  let sa = 0,
    sb = 0,
    sab = 0,
    saa = 0,
    sbb = 0;
  for (let i = 0; i < a.length; i++) {
    sa += a[i];
    sb += b[i];
    sab += a[i] * b[i];
    saa += a[i] * a[i];
    sbb += b[i] * b[i];
  }
  const n = a.length;
  return (sab / n - (sa / n) * (sb / n)) / Math.sqrt((saa / n - (sa / n) ** 2) * (sbb / n - (sb / n) ** 2));
}

t.test('no correlation between adjacent streams, adjacent seeds, or neighbouring elements', async (t) => {
  const n = 1 << 20;
  // r of independent streams is ≈ N(0, 1/n): 6 standard errors, 2e-9 per check, 5 checks.
  const bound = 6 / Math.sqrt(n);
  const seed = BigInt(freshSeed());
  const stream = kernels.streamId('layer.weight');
  const base = kernels.gaussian(n, { seed, stream });
  const nextStream = kernels.gaussian(n, { seed, stream: stream + 1n });
  const nextSeed = kernels.gaussian(n, { seed: seed + 1n, stream });
  t.ok(Math.abs(correlation(base, nextStream)) < bound, `adjacent streams: r = ${correlation(base, nextStream).toExponential(2)}`);
  t.ok(Math.abs(correlation(base, nextSeed)) < bound, `adjacent seeds: r = ${correlation(base, nextSeed).toExponential(2)}`);
  // Lag 1 and lag 2 inside a stream (the two normals of one Box–Muller pair, and pairs).
  for (const lag of [1, 2, 4]) {
    const r = correlation(base.subarray(0, n - lag), base.subarray(lag));
    t.ok(Math.abs(r) < bound, `lag ${lag}: r = ${r.toExponential(2)}`);
  }
});

t.test('results do not depend on the thread count', async (t) => {
  const seed = BigInt(freshSeed());
  const n = 300_001;
  const one = kernels.gaussian(n, { seed, name: 'threads', offset: 3, threads: 1 });
  for (const threads of [2, 3, 7]) {
    const many = kernels.gaussian(n, { seed, name: 'threads', offset: 3, threads });
    t.ok(Buffer.from(one.buffer).equals(Buffer.from(many.buffer)), `${threads} threads bit-identical to 1`);
  }
});

t.test('gaussian rejects bad arguments', async (t) => {
  t.throws(() => kernels.gaussian(-1, { seed: 1, name: 'a' }), { code: 'ZOFO_INVALID_ARG', message: /count/ });
  t.throws(() => kernels.gaussian(1.5, { seed: 1, name: 'a' }), { code: 'ZOFO_INVALID_ARG', message: /count/ });
  t.throws(() => kernels.gaussian(4, { seed: 1.5, name: 'a' }), { code: 'ZOFO_INVALID_ARG', message: /seed/ });
  t.throws(() => kernels.gaussian(4, { seed: -1n, name: 'a' }), { code: 'ZOFO_INVALID_ARG', message: /seed/ });
  t.throws(() => kernels.gaussian(4, { seed: 2n ** 64n, name: 'a' }), { code: 'ZOFO_INVALID_ARG', message: /seed/ });
  t.throws(() => kernels.gaussian(4, { seed: '7' as unknown as bigint, name: 'a' }), { code: 'ZOFO_INVALID_ARG', message: /seed/ });
  t.throws(() => kernels.gaussian(4, { seed: 1 }), { code: 'ZOFO_INVALID_ARG', message: /name/ });
  t.throws(() => kernels.gaussian(4, { seed: 1, name: 'a', stream: 3n }), { code: 'ZOFO_INVALID_ARG', message: /not both/ });
  t.throws(() => kernels.gaussian(4, { seed: 1, name: 'a', offset: 2n ** 64n - 2n }), { code: 'ZOFO_INVALID_ARG', message: /offset/ });
  t.throws(() => kernels.gaussian(4, { seed: 1, name: 'a', threads: 0 }), { code: 'ZOFO_INVALID_ARG', message: /threads/ });
  t.equal(kernels.gaussian(0, { seed: 1, name: 'a' }).length, 0, 'count 0 is an empty draw');
});
