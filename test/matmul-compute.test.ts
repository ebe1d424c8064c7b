// The CPU matmul's tensor-core emulation (compute 'bf16' / 'tf32'): op(A) and op(B)
// rounded to nearest even, then fp32 products and sums. Checked against float64 products
// of the operands rounded here independently, and against the unrounded float64 product.
import t from 'tap';
import { backendInfo, kernels } from '../lib/index.js';
import { freshSeed, rng, roundToSignificand } from './helpers/reference.js';

// Significand bits p and unit roundoff u = 2^-p of each operand format.
const FORMATS = { bf16: 8, tf32: 11 } as const;
const U32 = 2 ** -24;

interface Ref {
  value: Float64Array;
  magnitude: Float64Array;
}
/** alpha·op(A)·op(B) + beta·C0 in float64, with each operand passed through `round`; magnitude = the same with |·|. */
function reference(
  M: number,
  N: number,
  K: number,
  A: Float32Array,
  B: Float32Array,
  tA: boolean,
  tB: boolean,
  alpha: number,
  beta: number,
  C0: Float32Array,
  round: (x: number) => number,
): Ref {
  const value = new Float64Array(M * N),
    magnitude = new Float64Array(M * N);
  for (let i = 0; i < M; i++)
    for (let j = 0; j < N; j++) {
      let s = 0,
        m = 0;
      for (let k = 0; k < K; k++) {
        const p = round(tA ? A[k * M + i] : A[i * K + k]) * round(tB ? B[j * K + k] : B[k * N + j]);
        s += p;
        m += Math.abs(p);
      }
      value[i * N + j] = alpha * s + beta * C0[i * N + j];
      magnitude[i * N + j] = Math.abs(alpha) * m + Math.abs(beta * C0[i * N + j]);
    }
  return { value, magnitude };
}

const shapes: [number, number, number][] = [
  [1, 1, 1],
  [7, 13, 5],
  [64, 33, 129],
  [3, 200, 17],
];

t.test('bf16 and tf32 operands: equal to float64 on the rounded operands, within the rounding bound of the exact product', async (t) => {
  const seed = freshSeed();
  const r = rng(seed);
  const rand = (n: number) => Float32Array.from({ length: n }, () => r() * 2 - 1);
  const impls: ('builtin' | 'blas')[] = backendInfo().cpu.blas === 'none' ? ['builtin'] : ['builtin', 'blas'];
  t.comment(`input seed ${seed}`);
  for (const [compute, p] of Object.entries(FORMATS) as ['bf16' | 'tf32', number][]) {
    const u = 2 ** -p;
    for (const [M, N, K] of shapes)
      for (const tA of [false, true])
        for (const tB of [false, true]) {
          const A = rand(M * K),
            B = rand(K * N),
            C0 = rand(M * N);
          const alpha = 0.5 + r(),
            beta = r() < 0.5 ? 0 : r();
          const rounded = reference(M, N, K, A, B, tA, tB, alpha, beta, C0, (x) => roundToSignificand(x, p));
          const exact = reference(M, N, K, A, B, tA, tB, alpha, beta, C0, (x) => x);
          for (const impl of impls) {
            const C = C0.slice();
            kernels.matmul(M, N, K, A, B, C, { transA: tA, transB: tB, alpha, beta, impl, compute });
            // Products of two p ≤ 12-bit significands are exact in fp32; what is left is fp32
            // arithmetic: K − 1 additions, alpha, beta and the final add, each ≤ 2^-24 relative,
            // so |C − rounded| ≤ (K + 3)·2^-24·Σ|terms| (first order).
            // Against the exact product each operand moves by ≤ u relative: |fl(a)fl(b) − ab| ≤ (2u + u²)|ab|,
            // so |rounded − exact| ≤ (2u + u²)·|alpha|·Σ|ab| ≤ (2u + u²)·exact.magnitude (which already
            // carries |alpha|), and |C − exact| ≤ that + the fp32 bound above.
            let tight = 0,
              loose = 0;
            for (let i = 0; i < M * N; i++) {
              const fp32 = (K + 3) * U32 * rounded.magnitude[i] + 1e-30;
              tight = Math.max(tight, Math.abs(C[i] - rounded.value[i]) / fp32);
              loose = Math.max(loose, Math.abs(C[i] - exact.value[i]) / ((2 * u + u * u) * exact.magnitude[i] + fp32));
            }
            const what = `${compute} ${impl} ${M}x${N}x${K} tA=${tA} tB=${tB}`;
            t.ok(tight <= 1, `${what}: error vs float64 on rounded operands ${tight.toFixed(3)} of (K+3)·2^-24·Σ|terms|`);
            t.ok(loose <= 1, `${what}: error vs the exact product ${loose.toFixed(3)} of (2u+u²)·Σ|alpha·ab| + fp32 bound`);
          }
        }
  }
});

t.test('the option changes the product: fp32 operands miss the rounded reference, bf16 operands hit it', async (t) => {
  const r = rng(freshSeed());
  const M = 64,
    N = 33,
    K = 129;
  const A = Float32Array.from({ length: M * K }, () => r() * 2 - 1),
    B = Float32Array.from({ length: K * N }, () => r() * 2 - 1);
  const rounded = reference(M, N, K, A, B, false, false, 1, 0, new Float32Array(M * N), (x) => roundToSignificand(x, 8));
  const worst = (C: Float32Array) => {
    let w = 0;
    for (let i = 0; i < M * N; i++) w = Math.max(w, Math.abs(C[i] - rounded.value[i]) / ((K + 3) * U32 * rounded.magnitude[i]));
    return w;
  };
  const fp32 = new Float32Array(M * N),
    bf16 = new Float32Array(M * N);
  kernels.matmul(M, N, K, A, B, fp32, { compute: 'fp32' });
  kernels.matmul(M, N, K, A, B, bf16, { compute: 'bf16' });
  // 8448 outputs, each a sum of 129 terms whose operands move by up to 2^-9 relative: the
  // fp32 product cannot stay within the fp32 accumulation bound of all of them.
  t.ok(worst(fp32) > 10, `fp32 operands: ${worst(fp32).toFixed(1)} × the bound away from the bf16 reference`);
  t.ok(worst(bf16) <= 1, `bf16 operands: ${worst(bf16).toFixed(3)} of the bound`);
});

t.test('operand rounding at the ends of the range', async (t) => {
  const one = (a: number, compute: 'bf16' | 'tf32') => {
    const C = new Float32Array(1);
    kernels.matmul(1, 1, 1, Float32Array.of(a), Float32Array.of(1), C, { compute });
    return C[0];
  };
  // fp32's largest finite value is past bf16's and tf32's largest: it rounds to infinity.
  t.equal(one(3.4028234663852886e38, 'bf16'), Infinity);
  t.equal(one(3.4028234663852886e38, 'tf32'), Infinity);
  t.equal(one(-Infinity, 'bf16'), -Infinity);
  t.ok(Number.isNaN(one(NaN, 'tf32')));
  // Ties go to even: 1 + 2^-8 is halfway between bf16 1 and 1 + 2^-7 (→ 1); 1 + 3·2^-8 → 1 + 2^-6.
  t.equal(one(1 + 2 ** -8, 'bf16'), 1);
  t.equal(one(1 + 3 * 2 ** -8, 'bf16'), 1 + 2 ** -6);
  t.equal(one(1 + 2 ** -11, 'tf32'), 1);
  t.equal(one(1 + 3 * 2 ** -11, 'tf32'), 1 + 2 ** -9);
});

t.test('matmul rejects an unknown compute precision by name', async (t) => {
  t.throws(() => kernels.matmul(1, 1, 1, new Float32Array(1), new Float32Array(1), new Float32Array(1), { compute: 'fp16' as 'bf16' }), {
    code: 'ZOFO_INVALID_ARG',
    message: /compute/,
  });
});
