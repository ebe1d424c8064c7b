// CPU matmul: the built-in kernel against a float64 reference, and against BLAS when
// this build has one.
import t from 'tap';
import { backendInfo, kernels } from '../lib/index.js';
import { freshSeed, rng } from './helpers/reference.js';

function reference(M: number, N: number, K: number, A: Float32Array, B: Float32Array, tA: boolean, tB: boolean, alpha: number, beta: number, C0: Float32Array) {
  const C = new Float64Array(M * N);
  for (let i = 0; i < M; i++)
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += (tA ? A[k * M + i] : A[i * K + k]) * (tB ? B[j * K + k] : B[k * N + j]);
      C[i * N + j] = alpha * s + beta * C0[i * N + j];
    }
  return C;
}

const shapes: [number, number, number][] = [
  [1, 1, 1],
  [7, 13, 5],
  [64, 33, 129],
  [3, 200, 17],
];

t.test('built-in and BLAS matmul against float64', async (t) => {
  const seed = freshSeed();
  const r = rng(seed);
  const rand = (n: number) => Float32Array.from({ length: n }, () => r() * 2 - 1);
  const impls: ('builtin' | 'blas')[] = backendInfo().cpu.blas === 'none' ? ['builtin'] : ['builtin', 'blas'];
  t.comment(`BLAS in this build: ${backendInfo().cpu.blas} (input seed ${seed})`);
  for (const [M, N, K] of shapes)
    for (const tA of [false, true])
      for (const tB of [false, true]) {
        const A = rand(M * K),
          B = rand(K * N),
          C0 = rand(M * N);
        const alpha = 0.5 + r(),
          beta = r() < 0.5 ? 0 : r();
        const want = reference(M, N, K, A, B, tA, tB, alpha, beta, C0);
        for (const impl of impls) {
          const C = C0.slice();
          kernels.matmul(M, N, K, A, B, C, { transA: tA, transB: tB, alpha, beta, impl });
          let worst = 0;
          for (let i = 0; i < M * N; i++) worst = Math.max(worst, Math.abs(C[i] - want[i]) / (1e-6 + 1e-5 * Math.sqrt(K) * (Math.abs(want[i]) + 1)));
          t.ok(worst <= 1, `${impl} ${M}x${N}x${K} tA=${tA} tB=${tB}: scaled error ${worst.toFixed(3)} (atol 1e-6, rtol 1e-5·√K)`);
        }
      }
});

t.test('built-in matmul equals BLAS closely on a larger product', async (t) => {
  if (backendInfo().cpu.blas === 'none') {
    t.skip('this build has no BLAS (built with ZOFO_BLAS=0 or without libopenblas-dev)');
    return;
  }
  const r = rng(freshSeed());
  const M = 96,
    N = 160,
    K = 256;
  const A = Float32Array.from({ length: M * K }, () => r() - 0.5),
    B = Float32Array.from({ length: K * N }, () => r() - 0.5);
  const Cb = new Float32Array(M * N),
    Cf = new Float32Array(M * N);
  kernels.matmul(M, N, K, A, B, Cb, { impl: 'blas' });
  kernels.matmul(M, N, K, A, B, Cf, { impl: 'builtin' });
  let worst = 0;
  for (let i = 0; i < M * N; i++) worst = Math.max(worst, Math.abs(Cb[i] - Cf[i]));
  t.ok(worst < 1e-4, `max |BLAS − builtin| = ${worst.toExponential(2)}`);
});

t.test('matmul rejects bad shapes', async (t) => {
  t.throws(() => kernels.matmul(2, 2, 2, new Float32Array(3), new Float32Array(4), new Float32Array(4)), {
    code: 'ZOFO_INVALID_ARG',
    message: /A has 3 elements/,
  });
  t.throws(() => kernels.matmul(-1, 2, 2, new Float32Array(4), new Float32Array(4), new Float32Array(4)), { code: 'ZOFO_INVALID_ARG', message: /M/ });
  t.throws(() => kernels.matmul(1, 1, 1, new Float32Array(1), new Float32Array(1), new Float32Array(1), { impl: 'fast' as 'auto' }), {
    code: 'ZOFO_INVALID_ARG',
    message: /impl/,
  });
});
