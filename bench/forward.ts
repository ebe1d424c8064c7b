/**
 * Model-engine benchmark (not part of `npm test`): tokens/s of a forward (logits at
 * every position) and of forward + adapter-only backward (LM loss over 63 of 64
 * positions, LoRA rank 8 on q_proj/v_proj) for a Llama-shaped model with random
 * weights, against the matmul floor measured in the same run: the time BLAS sgemm needs
 * for exactly the GEMMs of that pass, at those shapes (Σ FLOPs_i ÷ measured GFLOP/s_i).
 * Achieved ÷ floor = floor time ÷ measured time (1.0 = nothing but GEMMs, at BLAS speed).
 * LoRA's rank-8 GEMMs and attention's T×T products are not in the floor (< 2% of FLOPs).
 *
 *   node dist/bench/forward.js [--layers 12] [--hidden 768] [--ffn 2048] [--vocab 32000]
 *                              [--batch 8] [--seq 64] [--reps 3]
 */
import { backendInfo, kernels } from '../lib/index.js';
import { numberArg } from './args.js';
import { llamaNative, xorshift } from './llama-native.js';
import type { NativeModel } from '../lib/binding.js';

const L = numberArg('layers', 12),
  C = numberArg('hidden', 768),
  F = numberArg('ffn', 2048),
  V = numberArg('vocab', 32000);
const B = numberArg('batch', 8),
  T = numberArg('seq', 64),
  reps = numberArg('reps', 3);
const NH = Math.max(1, Math.round(C / 64)),
  HS = C / NH;
const N = B * T;

const rand = xorshift();
const buildModel = (): NativeModel => llamaNative({ V, C, L, NH, HS, F }, rand);

// GEMMs of one pass: [M, N, K, transB, count].
type Gemm = [number, number, number, boolean, number];
const forwardGemms = (rows: number): Gemm[] => [
  [N, C, C, true, 4 * L], // q, k, v, o
  [N, F, C, true, 2 * L], // gate, up
  [N, C, F, true, L], // down
  [rows, V, C, true, 1], // lm_head at the rows read
];
// Adapter-only backward: du = dy·W for every linear above the lowest adapter (all here,
// except layer 0's q/k/v input gradient, which nothing needs), and dz = dlogits·W_head.
const backwardGemms = (rows: number): Gemm[] => [
  [N, C, C, false, 4 * L - 3],
  [N, C, F, false, 2 * L],
  [N, F, C, false, L],
  [rows, C, V, false, 1],
];

function gemmRate(M: number, Nn: number, K: number, transB: boolean): number {
  const A = new Float32Array(M * K).fill(0.01),
    Bm = new Float32Array(K * Nn).fill(0.01),
    Cm = new Float32Array(M * Nn);
  kernels.matmul(M, Nn, K, A, Bm, Cm, { transB });
  let best = Infinity;
  for (let r = 0; r < 3; r++) {
    const t0 = process.hrtime.bigint();
    kernels.matmul(M, Nn, K, A, Bm, Cm, { transB });
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return (2 * M * Nn * K) / best; // FLOP/s
}

function floorSeconds(gemms: Gemm[], rates: Map<string, number>): { seconds: number; flops: number } {
  let seconds = 0,
    flops = 0;
  for (const [M, Nn, K, tb, count] of gemms) {
    const key = `${M}x${Nn}x${K}${tb ? 'T' : ''}`;
    if (!rates.has(key)) rates.set(key, gemmRate(M, Nn, K, tb));
    flops += 2 * M * Nn * K * count;
    seconds += (2 * M * Nn * K * count) / rates.get(key)!;
  }
  return { seconds, flops };
}

async function main(): Promise<void> {
  const info = backendInfo();
  console.log('zofo model-engine benchmark (CPU)');
  console.log(`model: Llama-shaped, ${L} layers, hidden ${C}, ${NH} heads × ${HS}, ffn ${F}, vocab ${V}; batch ${B} × ${T} tokens`);
  console.log(
    `cpu: ${info.cpu.simd}; BLAS: ${info.cpu.blas}; threads: ${info.cpu.threads}; ` +
      `OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE ?? '(unset)'}; OPENBLAS_NUM_THREADS=${process.env.OPENBLAS_NUM_THREADS ?? '(unset)'}`,
  );
  const model = buildModel();
  const params = model.tensorSpecs().reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0);
  console.log(`parameters: ${(params / 1e6).toFixed(1)} M (random, fp32)`);

  const ids = Int32Array.from({ length: N }, () => Math.floor(rand() * V));
  const positions = Int32Array.from({ length: N }, (_, i) => i % T);
  const mask = new Uint8Array(N).fill(1);
  const allRows = Int32Array.from({ length: N }, (_, i) => i);
  const logits = new Float32Array(N * V);
  // LM loss: every position but the last of each sequence predicts its successor.
  const rows = Int32Array.from({ length: B * (T - 1) }, (_, i) => Math.floor(i / (T - 1)) * T + (i % (T - 1)));
  const targets = Int32Array.from(rows, (r) => ids[r + 1]);
  const lora = model.addLoRA(['q_proj', 'v_proj'], 8, 16);
  for (const s of lora) if (s.name.endsWith('lora_B.weight')) model.setLoraTensor(s.name, new Float32Array(s.shape[0] * s.shape[1]).fill(0.01));
  const grad = new Float32Array(lora.reduce((n, s) => n + s.shape[0] * s.shape[1], 0));
  const empty = new Int32Array(0);

  const forward = () => model.logits(ids, positions, mask, B, T, allRows, logits);
  const forwardBackward = () => model.loss(ids, positions, mask, B, T, 0, rows, targets, empty, empty, new Uint8Array(0), 0, grad);
  const times = { forward: [] as number[], forwardBackward: [] as number[] };
  await forward();
  await forwardBackward();
  for (let r = 0; r < reps; r++) {
    // alternate, so both see the same machine state
    let t0 = process.hrtime.bigint();
    await forward();
    times.forward.push(Number(process.hrtime.bigint() - t0) / 1e9);
    t0 = process.hrtime.bigint();
    await forwardBackward();
    times.forwardBackward.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  model.dispose();

  const rates = new Map<string, number>();
  const fwdFloor = floorSeconds(forwardGemms(N), rates);
  const fbFloor = floorSeconds([...forwardGemms(rows.length), ...backwardGemms(rows.length)], rates);
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  console.log('\nsgemm rates measured in this run (row-major, BLAS):');
  for (const [shape, rate] of rates) console.log(`  ${shape.padEnd(18)} ${(rate / 1e9).toFixed(1)} GFLOP/s`);
  console.log('\n| pass | median s | spread (s) | tokens/s | GEMM GFLOP | floor s (sgemm) | achieved ÷ floor |');
  console.log('|---|---:|---:|---:|---:|---:|---:|');
  for (const [name, ts, floor] of [
    ['forward (logits at all positions)', times.forward, fwdFloor],
    ['forward + adapter backward (LM loss)', times.forwardBackward, fbFloor],
  ] as const) {
    const t = median(ts);
    console.log(
      `| ${name} | ${t.toFixed(3)} | ${Math.min(...ts).toFixed(3)}–${Math.max(...ts).toFixed(3)} | ` +
        `${(N / t).toFixed(0)} | ${(floor.flops / 1e9).toFixed(1)} | ${floor.seconds.toFixed(3)} | ${(floor.seconds / t).toFixed(3)} |`,
    );
  }
}

await main();
