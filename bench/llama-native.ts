/**
 * A Llama-shaped engine model with uniform random weights (std ≈ 0.02, norms 1), built
 * straight on the native binding for the benchmarks that time the engine itself.
 */
import { cpuBinding, type NativeModel } from '../lib/binding.js';
import { Model, parseConfig } from '../lib/index.js';

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

/** The same model behind the public Model API (fp32 on the CPU, noise streams named as loadModel names them). */
export function llamaModel(d: LlamaDims, rand: () => number): Model {
  const native = llamaNative(d, rand);
  const names = native.tensorSpecs().map((s) => s.name);
  native.setStreamNames(names);
  const config = parseConfig(
    {
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      vocab_size: d.V,
      hidden_size: d.C,
      intermediate_size: d.F,
      num_hidden_layers: d.L,
      num_attention_heads: d.NH,
      num_key_value_heads: d.NH,
      max_position_embeddings: 4096,
      rms_norm_eps: 1e-5,
      hidden_act: 'silu',
      rope_theta: 10000,
      tie_word_embeddings: false,
    },
    '(random model)',
  );
  return new Model('(random model)', config, native, null, 'f32', names);
}
