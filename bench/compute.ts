/**
 * What the CPU's tensor-core emulation costs (not part of `npm test`): the time of a
 * forward (logits at every position) of one Llama-shaped random model under compute
 * 'fp32', 'tf32' and 'bf16', measured alternately in one run, as ratios to fp32. The
 * emulation rounds each matmul's operands into scratch before the fp32 GEMM, so its
 * cost is the rounding passes (and their memory traffic), not cheaper arithmetic.
 *
 *   node dist/bench/compute.js [--layers 4] [--hidden 512] [--ffn 1408] [--vocab 8000]
 *                              [--batch 4] [--seq 64] [--reps 15]
 */
import { backendInfo } from '../lib/index.js';
import type { NativeModel } from '../lib/binding.js';
import { numberArg } from './args.js';
import { llamaNative, xorshift } from './llama-native.js';

const L = numberArg('layers', 4),
  C = numberArg('hidden', 512),
  F = numberArg('ffn', 1408),
  V = numberArg('vocab', 8000);
const B = numberArg('batch', 4),
  T = numberArg('seq', 64),
  reps = numberArg('reps', 15);
const NH = Math.max(1, Math.round(C / 64)),
  HS = C / NH,
  N = B * T;
const COMPUTES = ['fp32', 'tf32', 'bf16'] as const;

// The same weights for every compute precision.
const buildModel = (compute: number): NativeModel => llamaNative({ V, C, L, NH, HS, F }, xorshift(), compute);

async function main(): Promise<void> {
  const info = backendInfo();
  console.log('zofo compute-precision benchmark (CPU emulation of tensor-core operands)');
  console.log(`model: Llama-shaped, ${L} layers, hidden ${C}, ${NH} heads × ${HS}, ffn ${F}, vocab ${V}; batch ${B} × ${T} tokens`);
  console.log(`cpu: ${info.cpu.simd}; BLAS: ${info.cpu.blas}; threads: ${info.cpu.threads}`);
  const models = COMPUTES.map((_, code) => buildModel(code));
  let state = 777;
  const ids = Int32Array.from({ length: N }, () => {
    state = (state * 1103515245 + 12345) >>> 0;
    return state % V;
  });
  const positions = Int32Array.from({ length: N }, (_, i) => i % T);
  const mask = new Uint8Array(N).fill(1);
  const rows = Int32Array.from({ length: N }, (_, i) => i);
  const logits = new Float32Array(N * V);
  const times = COMPUTES.map(() => [] as number[]);
  for (const m of models) await m.logits(ids, positions, mask, B, T, rows, logits); // warm-up
  for (let r = 0; r < reps; r++) {
    // Alternate, so all see the same machine state, and rotate who goes first: on a busy
    // machine the position in the round measurably changes the time.
    for (let j = 0; j < models.length; j++) {
      const i = (r + j) % models.length;
      const t0 = process.hrtime.bigint();
      await models[i].logits(ids, positions, mask, B, T, rows, logits);
      times[i].push(Number(process.hrtime.bigint() - t0) / 1e9);
    }
  }
  for (const m of models) m.dispose();
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const base = median(times[0]);
  // The fastest of the reps is the least disturbed by other work on the machine.
  const best = Math.min(...times[0]);
  console.log('\n| compute | fastest forward s | median s | slowest s | fastest ÷ fp32 fastest | median ÷ fp32 median |');
  console.log('|---|---:|---:|---:|---:|---:|');
  for (const [i, c] of COMPUTES.entries()) {
    const ts = times[i];
    console.log(
      `| ${c} | ${Math.min(...ts).toFixed(4)} | ${median(ts).toFixed(4)} | ${Math.max(...ts).toFixed(4)} | ${(Math.min(...ts) / best).toFixed(2)} | ${(median(ts) / base).toFixed(2)} |`,
    );
  }
}

await main();
