/**
 * A Llama-shaped engine model with uniform random weights (std ≈ 0.02, norms 1), built
 * straight on the native binding for the benchmarks that time the engine itself.
 */
import { cpuBinding, type NativeModel } from '../lib/binding.js';

/** Dimensions of a benchmark model: vocabulary, width, layers, heads × head size, FFN width. */
export interface LlamaDims {
  V: number;
  C: number;
  L: number;
  NH: number;
  HS: number;
  F: number;
}

/** xorshift32 from `seed`: the benchmarks' reproducible inputs. */
export function xorshift(seed = 12345): () => number {
  let state = seed >>> 0;
  return () => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state / 4294967296;
  };
}

/** The model, its weights drawn from `rand`; `compute` is the engine's compute code (0 fp32, 1 tf32, 2 bf16). */
export function llamaNative(d: LlamaDims, rand: () => number, compute?: number): NativeModel {
  const model = new (cpuBinding().NativeModel)(
    {
      family: 0,
      vocab: d.V,
      hidden: d.C,
      layers: d.L,
      heads: d.NH,
      kvHeads: d.NH,
      headDim: d.HS,
      ffn: d.F,
      maxPositions: 4096,
      embedDim: d.C,
      positionOffset: 0,
      rmsnorm: true,
      normEps: 1e-5,
      activation: 2,
      ropeTheta: 10000,
      tieEmbeddings: false,
      attentionBias: false,
      outputBias: false,
      mlpBias: false,
      preNorm: true,
      finalNorm: true,
    },
    0,
    'cpu',
    compute,
  );
  for (const spec of model.tensorSpecs()) {
    const n = spec.shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    if (spec.shape.length === 1) data.fill(1);
    else for (let i = 0; i < n; i++) data[i] = (rand() - 0.5) * 0.07; // uniform, std ≈ 0.02
    model.setTensor(spec.name, data);
  }
  return model;
}
