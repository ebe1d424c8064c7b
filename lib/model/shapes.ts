/**
 * Llama-shaped models of well-known sizes, built in memory with random weights: no
 * checkpoint on disk, no tokenizer. For measuring memory and speed at a scale whose
 * real weights are not at hand (`zofo bench memory`), and for tests of large shapes.
 */
import { awaitNative, invalidArg } from '../errors.js';
import { parseConfig } from './config.js';
import { createNative, Model, nativeConfigOf, resolveTarget, type LoadModelOptions } from './model.js';

// HF config.json fields of each shape (vocabulary 32000 as in Llama 1/2 and TinyLlama).
const llama = (hidden: number, layers: number, heads: number, kvHeads: number, ffn: number, tie = false) => ({
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  vocab_size: 32000,
  hidden_size: hidden,
  intermediate_size: ffn,
  num_hidden_layers: layers,
  num_attention_heads: heads,
  num_key_value_heads: kvHeads,
  max_position_embeddings: 2048,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  hidden_act: 'silu',
  tie_word_embeddings: tie,
});

/** The shapes `randomModel` knows, as the config.json of each (Llama 1/2 and TinyLlama sizes). */
export const LLAMA_SHAPES = {
  /** A 2-layer toy (hidden 64), for tests. */
  'llama-tiny': { ...llama(64, 2, 4, 2, 172), vocab_size: 256 },
  /** A 58M-parameter Llama (hidden 512, 8 layers): large enough to measure memory in tests. */
  'llama-60m': llama(512, 8, 8, 8, 1376),
  /** TinyLlama-1.1B: hidden 2048, 22 layers, GQA 32/4 heads. */
  'llama-1b': llama(2048, 22, 32, 4, 5632),
  /** Llama-2-7B: hidden 4096, 32 layers. */
  'llama-7b': llama(4096, 32, 32, 32, 11008),
  /** Llama-2-13B: hidden 5120, 40 layers. */
  'llama-13b': llama(5120, 40, 40, 40, 13824),
  /** LLaMA-30B (33B): hidden 6656, 60 layers. */
  'llama-30b': llama(6656, 60, 52, 52, 17920),
} as const;

/** A shape name of LLAMA_SHAPES. */
export type LlamaShape = keyof typeof LLAMA_SHAPES;

/** Options of randomModel: where the weights live and how they are drawn. */
export interface RandomModelOptions extends LoadModelOptions {
  /** Seed of the weights' Gaussian draw (default 1). */
  seed?: bigint | number;
  /** Standard deviation of every weight matrix (default 0.02); norm weights are 1. */
  std?: number;
}

const isNorm = (name: string) => /norm\.weight$/.test(name);

/**
 * A Llama-shaped model with random weights, built in place: every matrix is
 * std · z(seed) drawn by the perturbation engine straight into the parameter buffer
 * (one pass, no host copy), every norm weight is 1.
 *
 * @example
 * ```ts
 * const model = await randomModel('llama-7b', { dtype: 'bf16' });
 * console.log(model.numParameters());
 * ```
 */
export async function randomModel(shape: LlamaShape, opts: RandomModelOptions = {}): Promise<Model> {
  const json = LLAMA_SHAPES[shape];
  if (json === undefined) throw invalidArg(`one of ${Object.keys(LLAMA_SHAPES).join(', ')}`, 'shape', shape);
  const seed = BigInt(opts.seed ?? 1);
  const std = opts.std ?? 0.02;
  if (seed < 0n || seed >= 1n << 64n) throw invalidArg('a seed in 0 .. 2^64 − 1', 'seed', opts.seed);
  if (!(Number.isFinite(std) && std > 0 && std < 1e3)) throw invalidArg('a positive finite standard deviation', 'std', opts.std);
  const target = resolveTarget(opts);
  const source = `random:${shape}`;
  const config = parseConfig(json, source);
  const native = createNative(nativeConfigOf(config, source), target, `randomModel ${shape}`);
  try {
    const specs = native.tensorSpecs() as { name: string; shape: number[] }[];
    const trainable = Uint8Array.from(specs, (s) => (isNorm(s.name) ? 0 : 1));
    await awaitNative(
      () => native.applyUpdates(BigUint64Array.of(seed), Float32Array.of(std), Float32Array.of(0), trainable, new Float32Array(specs.length)),
      `randomModel ${shape}`,
    );
    for (const s of specs) {
      if (isNorm(s.name)) native.setTensor(s.name, new Float32Array(s.shape.reduce((a, b) => a * b, 1)).fill(1));
    }
  } catch (err) {
    native.dispose();
    throw err;
  }
  return new Model(source, config, native, null, target.dtype, undefined, target.binding, target.device, target.compute);
}
