/**
 * The machine's limits for bench/torch.ts, measured in the same run as the step timings, and
 * the counts that turn a step time into a fraction of them.
 *
 *   copy bandwidth  binding.benchCopy over a `copyMiB` fp32 buffer (threaded memcpy), bytes read +
 *                   written per second (2 × buffer bytes per copy); median of 7 after 1 warm-up.
 *   GEMM rate       binding.sgemm (the matmul the model engine calls: BLAS when built with it) on
 *                   a square `gemmN`³ fp32 product, 2·n³ FLOP per call; median of 5 after 1 warm-up.
 *
 * The PyTorch side measures the same two with torch (`llama_ref.py --step limits`: Tensor.copy_
 * and torch.mm), so both libraries' view of the machine is on record.
 */
import { backendInfo } from '../lib/index.js';
import { cpuBinding } from '../lib/binding.js';

export interface Limits {
  kind: 'limits';
  /** Bytes read + written per second by a large copy. */
  copy_bytes_per_s: number;
  /** FLOP per second of a large square fp32 GEMM. */
  gemm_flop_per_s: number;
  copy_mib: number;
  gemm_n: number;
  /** What did the GEMM (zofo: its BLAS name; torch: OpenBLAS core name when found). */
  blas: string;
}

export interface ShapeDims {
  dim: number;
  layers: number;
  heads: number;
  ffn: number;
  vocab: number;
}

export const LORA_RANK = 8;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function timeIt(fn: () => void, reps: number): number {
  fn();
  const times: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = process.hrtime.bigint();
    fn();
    times.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return median(times);
}

/** zofo's side: a threaded copy through the addon and a large sgemm. */
export function zofoLimits(threads: number, copyMiB = 256, gemmN = 2048): Limits {
  const native = cpuBinding();
  const n = Math.floor((copyMiB * 2 ** 20) / 4);
  const src = new Float32Array(n).fill(0.25),
    dst = new Float32Array(n);
  const copyS = timeIt(() => native.benchCopy(dst, src, threads), 7);
  const A = new Float32Array(gemmN * gemmN).fill(0.01),
    B = new Float32Array(gemmN * gemmN).fill(0.02);
  const C = new Float32Array(gemmN * gemmN);
  const gemmS = timeIt(() => native.sgemm(false, false, gemmN, gemmN, gemmN, 1, A, B, 0, C, 0, threads), 5);
  return {
    kind: 'limits',
    copy_bytes_per_s: (8 * n) / copyS,
    gemm_flop_per_s: (2 * gemmN ** 3) / gemmS,
    copy_mib: copyMiB,
    gemm_n: gemmN,
    blas: `zofo sgemm (${backendInfo().cpu.blas})`,
  };
}

/**
 * Matmul FLOPs of one forward of the benchmark's model (logits at the last position only),
 * batch B × T, N = B·T tokens:
 *   2·N·L·(4·C² + 3·C·F)        the layers' linears (q, k, v, o, gate, up, down)
 * + 2·N·L·2·(2·r·C)             the LoRA adapters on q and v (A: r×C, B: C×r)
 * + 2·B·V·C                     lm_head at the last position of each prompt
 * + 4·B·L·NH·T²·HS              attention's QKᵀ and PV, the full T×T (a causal kernel can skip half)
 */
export function forwardFlops(s: ShapeDims, B: number, T: number, rank = LORA_RANK): number {
  const N = B * T,
    C = s.dim,
    L = s.layers,
    HS = s.dim / s.heads;
  return 2 * N * L * (4 * C * C + 3 * C * s.ffn) + 2 * N * L * 2 * (2 * rank * C) + 2 * B * s.vocab * C + 4 * B * L * s.heads * T * T * HS;
}

/** Useful bytes of one perturbation pass over P fp32 values: each read once and written once. */
export const perturbBytes = (P: number): number => 8 * P;
