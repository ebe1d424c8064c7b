/**
 * Tiny random HF-style checkpoints (config.json + float64 weights under the HF names)
 * for the reference model and for engine-vs-reference tests, PEFT-named random LoRA
 * adapters, and a writer of checkpoint directories (config.json + model.safetensors or
 * shards + model.safetensors.index.json) in F32 / F16 / BF16.
 *
 * Float64 → F16 / BF16 is rounded here, plainly, to nearest-even in one step.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeSafetensors } from '../../lib/index.js';
import type { LoraWeights, Tensor64, Weights } from './reference-model.js';

export interface Checkpoint64 {
  /** A raw HF config.json object. */
  config: Record<string, unknown>;
  weights: Weights;
}

export type TinyFamily = 'llama' | 'opt' | 'opt-350m' | 'gpt2' | 'qwen2';

// ---- seeded randomness (test inputs only) ----

export interface Random {
  uniform(): number; // [0, 1)
  normal(): number; // N(0, 1)
  int(n: number): number; // [0, n)
}

/** mulberry32 with Box–Muller normals. */
export function seededRandom(seed: number): Random {
  let s = seed >>> 0;
  const uniform = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    uniform,
    normal: () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform()),
    int: (n) => Math.floor(uniform() * n),
  };
}

function tensor(shape: number[], fill: (i: number) => number): Tensor64 {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float64Array(n);
  for (let i = 0; i < n; i++) data[i] = fill(i);
  return { shape, data };
}

// ---- random checkpoints ----

const STD = 0.2;

/**
 * A tiny random checkpoint of `family`: 2 layers, 4 heads, max 32 positions; weights
 * N(0, 0.2), norm weights 1 + N(0, 0.1). `tie` overrides tie_word_embeddings (default:
 * llama false, qwen2/opt/gpt2 true); `kvHeads` the llama/qwen2 kv heads (default 2);
 * `prefix` whether GPT-2 keys carry `transformer.` (default true); `buffers` whether
 * GPT-2's attn.bias / attn.masked_bias buffers are stored (default true).
 */
export function randomCheckpoint(
  family: TinyFamily,
  seed: number,
  opts: { tie?: boolean; kvHeads?: number; prefix?: boolean; buffers?: boolean } = {},
): Checkpoint64 {
  const r = seededRandom(seed);
  const weights: Weights = new Map();
  const normal = (...shape: number[]): Tensor64 => tensor(shape, () => STD * r.normal());
  const normW = (n: number): Tensor64 => tensor([n], () => 1 + 0.1 * r.normal());
  const set = (name: string, t: Tensor64): void => {
    weights.set(name, t);
  };

  if (family === 'llama' || family === 'qwen2') {
    const qwen2 = family === 'qwen2';
    const [V, C, NH, HS, F, L] = [48, 32, 4, 8, 40, 2];
    const NKV = opts.kvHeads ?? 2;
    const tie = opts.tie ?? qwen2;
    const config: Record<string, unknown> = qwen2
      ? {
          architectures: ['Qwen2ForCausalLM'],
          model_type: 'qwen2',
          vocab_size: V,
          hidden_size: C,
          intermediate_size: F,
          num_hidden_layers: L,
          num_attention_heads: NH,
          num_key_value_heads: NKV,
          max_position_embeddings: 32,
          rms_norm_eps: 1e-5,
          rope_theta: 1000000,
          hidden_act: 'silu',
          tie_word_embeddings: tie,
          use_sliding_window: false,
          sliding_window: 32,
          max_window_layers: L,
          torch_dtype: 'float32',
          bos_token_id: 1,
          eos_token_id: 2,
        }
      : {
          architectures: ['LlamaForCausalLM'],
          model_type: 'llama',
          vocab_size: V,
          hidden_size: C,
          intermediate_size: F,
          num_hidden_layers: L,
          num_attention_heads: NH,
          num_key_value_heads: NKV,
          head_dim: HS,
          max_position_embeddings: 32,
          rms_norm_eps: 1e-5,
          rope_theta: 10000,
          rope_scaling: null,
          hidden_act: 'silu',
          tie_word_embeddings: tie,
          attention_bias: false,
          mlp_bias: false,
          torch_dtype: 'float32',
          bos_token_id: 1,
          eos_token_id: 2,
        };
    set('model.embed_tokens.weight', normal(V, C));
    for (let l = 0; l < L; l++) {
      const p = `model.layers.${l}`;
      set(`${p}.input_layernorm.weight`, normW(C));
      set(`${p}.self_attn.q_proj.weight`, normal(NH * HS, C));
      set(`${p}.self_attn.k_proj.weight`, normal(NKV * HS, C));
      set(`${p}.self_attn.v_proj.weight`, normal(NKV * HS, C));
      if (qwen2) {
        set(`${p}.self_attn.q_proj.bias`, normal(NH * HS));
        set(`${p}.self_attn.k_proj.bias`, normal(NKV * HS));
        set(`${p}.self_attn.v_proj.bias`, normal(NKV * HS));
      }
      set(`${p}.self_attn.o_proj.weight`, normal(C, NH * HS));
      set(`${p}.post_attention_layernorm.weight`, normW(C));
      set(`${p}.mlp.gate_proj.weight`, normal(F, C));
      set(`${p}.mlp.up_proj.weight`, normal(F, C));
      set(`${p}.mlp.down_proj.weight`, normal(C, F));
    }
    set('model.norm.weight', normW(C));
    if (!tie) set('lm_head.weight', normal(V, C));
    return { config, weights };
  }

  if (family === 'opt' || family === 'opt-350m') {
    const post = family === 'opt-350m';
    const [V, C, NH, L, P] = [50, post ? 32 : 24, 4, 2, 32];
    const F = post ? 40 : 48;
    const E = post ? 16 : C; // word_embed_proj_dim
    const tie = opts.tie ?? true;
    const config: Record<string, unknown> = {
      architectures: ['OPTForCausalLM'],
      model_type: 'opt',
      vocab_size: V,
      hidden_size: C,
      ffn_dim: F,
      num_hidden_layers: L,
      num_attention_heads: NH,
      max_position_embeddings: P,
      word_embed_proj_dim: E,
      do_layer_norm_before: !post,
      activation_function: 'relu',
      enable_bias: true,
      layer_norm_elementwise_affine: true,
      _remove_final_layer_norm: false,
      tie_word_embeddings: tie,
      pad_token_id: 1,
      bos_token_id: 2,
      eos_token_id: 2,
      torch_dtype: 'float32',
    };
    const d = 'model.decoder';
    set(`${d}.embed_tokens.weight`, normal(V, E));
    set(`${d}.embed_positions.weight`, normal(P + 2, C));
    if (post) {
      set(`${d}.project_in.weight`, normal(C, E));
      set(`${d}.project_out.weight`, normal(E, C));
    }
    for (let l = 0; l < L; l++) {
      const p = `${d}.layers.${l}`;
      for (const m of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) {
        set(`${p}.self_attn.${m}.weight`, normal(C, C));
        set(`${p}.self_attn.${m}.bias`, normal(C));
      }
      set(`${p}.self_attn_layer_norm.weight`, normW(C));
      set(`${p}.self_attn_layer_norm.bias`, normal(C));
      set(`${p}.fc1.weight`, normal(F, C));
      set(`${p}.fc1.bias`, normal(F));
      set(`${p}.fc2.weight`, normal(C, F));
      set(`${p}.fc2.bias`, normal(C));
      set(`${p}.final_layer_norm.weight`, normW(C));
      set(`${p}.final_layer_norm.bias`, normal(C));
    }
    if (!post) {
      set(`${d}.final_layer_norm.weight`, normW(C));
      set(`${d}.final_layer_norm.bias`, normal(C));
    }
    if (!tie) set('lm_head.weight', normal(V, E));
    return { config, weights };
  }

  // GPT-2
  const [V, C, NH, L, P] = [50, 24, 4, 2, 32];
  const tie = opts.tie ?? true;
  const pre = (opts.prefix ?? true) ? 'transformer.' : '';
  const config: Record<string, unknown> = {
    architectures: ['GPT2LMHeadModel'],
    model_type: 'gpt2',
    vocab_size: V,
    n_embd: C,
    n_layer: L,
    n_head: NH,
    n_positions: P,
    n_ctx: P,
    n_inner: null,
    activation_function: 'gelu_new',
    layer_norm_epsilon: 1e-5,
    scale_attn_weights: true,
    scale_attn_by_inverse_layer_idx: false,
    tie_word_embeddings: tie,
    bos_token_id: 0,
    eos_token_id: 0,
    torch_dtype: 'float32',
  };
  set(`${pre}wte.weight`, normal(V, C));
  set(`${pre}wpe.weight`, normal(P, C));
  for (let l = 0; l < L; l++) {
    const p = `${pre}h.${l}`;
    set(`${p}.ln_1.weight`, normW(C));
    set(`${p}.ln_1.bias`, normal(C));
    set(`${p}.attn.c_attn.weight`, normal(C, 3 * C)); // Conv1D [in, out]
    set(`${p}.attn.c_attn.bias`, normal(3 * C));
    set(`${p}.attn.c_proj.weight`, normal(C, C));
    set(`${p}.attn.c_proj.bias`, normal(C));
    set(`${p}.ln_2.weight`, normW(C));
    set(`${p}.ln_2.bias`, normal(C));
    set(`${p}.mlp.c_fc.weight`, normal(C, 4 * C));
    set(`${p}.mlp.c_fc.bias`, normal(4 * C));
    set(`${p}.mlp.c_proj.weight`, normal(4 * C, C));
    set(`${p}.mlp.c_proj.bias`, normal(C));
    if (opts.buffers ?? true) {
      set(
        `${p}.attn.bias`,
        tensor([1, 1, P, P], (i) => (i % P <= Math.floor(i / P) ? 1 : 0)),
      ); // tril
      set(
        `${p}.attn.masked_bias`,
        tensor([], () => -1e4),
      );
    }
  }
  set(`${pre}ln_f.weight`, normW(C));
  set(`${pre}ln_f.bias`, normal(C));
  if (!tie) set('lm_head.weight', normal(V, C));
  return { config, weights };
}

// ---- LoRA ----

/** A linear module a LoRA adapter can target: its PEFT path and its in/out sizes. */
export interface LinearModule {
  path: string;
  in: number;
  out: number;
}

/**
 * The linear modules of a checkpoint whose last name component is in `targets`, with
 * PEFT's module paths (GPT-2 always under `transformer.`, Conv1D weights read as [in, out]).
 */
export function linearModules(ckpt: Checkpoint64, targets: readonly string[]): LinearModule[] {
  const gpt2 = ckpt.config.model_type === 'gpt2';
  const out: LinearModule[] = [];
  for (const [name, t] of ckpt.weights) {
    if (!name.endsWith('.weight') || t.shape.length !== 2) continue;
    let path = name.slice(0, -'.weight'.length);
    const leaf = path.split('.').pop() as string;
    if (!targets.includes(leaf)) continue;
    if (/embed_tokens|embed_positions|(^|\.)wte$|(^|\.)wpe$/.test(path)) continue;
    const conv1d = gpt2 && path !== 'lm_head';
    if (gpt2 && path !== 'lm_head') path = `transformer.${path.replace(/^transformer\./, '')}`;
    const [a, b] = t.shape;
    out.push(conv1d ? { path, in: a, out: b } : { path, in: b, out: a });
  }
  return out;
}

/**
 * Random PEFT adapters: A [r, in], B [out, r] ~ N(0, std²) (B nonzero unless zeroB),
 * s = alpha / r. Default targets: q_proj, v_proj (Llama/OPT) or c_attn (GPT-2).
 */
export function randomLora(
  ckpt: Checkpoint64,
  seed: number,
  opts: { r?: number; alpha?: number; targets?: string[]; zeroB?: boolean; std?: number } = {},
): LoraWeights {
  const rnd = seededRandom(seed);
  const r = opts.r ?? 2;
  const alpha = opts.alpha ?? 4;
  const std = opts.std ?? 0.2;
  const targets = opts.targets ?? (ckpt.config.model_type === 'gpt2' ? ['c_attn'] : ['q_proj', 'v_proj']);
  const modules = linearModules(ckpt, targets);
  if (modules.length === 0) throw new Error(`randomLora: no module named ${targets.join('/')}`);
  const tensors = new Map<string, Tensor64>();
  for (const m of modules) {
    tensors.set(
      `base_model.model.${m.path}.lora_A.weight`,
      tensor([r, m.in], () => std * rnd.normal()),
    );
    tensors.set(
      `base_model.model.${m.path}.lora_B.weight`,
      tensor([m.out, r], () => (opts.zeroB ? 0 : std * rnd.normal())),
    );
  }
  return { scaling: alpha / r, tensors };
}

// ---- float64 → F16 / BF16, round to nearest, ties to even ----

/**
 * Bits of the nearest value of a binary format with `expBits` exponent bits and
 * `mantBits` stored mantissa bits (IEEE layout, subnormals, ±Inf on overflow).
 */
function roundToBits(x: number, expBits: number, mantBits: number): number {
  const signBit = 2 ** (expBits + mantBits);
  const expMax = 2 ** expBits - 1; // all-ones exponent field: Inf / NaN
  if (Number.isNaN(x)) return expMax * 2 ** mantBits + 2 ** (mantBits - 1); // quiet NaN
  const sign = x < 0 || Object.is(x, -0) ? signBit : 0;
  const a = Math.abs(x);
  if (a === 0) return sign;
  if (a === Infinity) return sign + expMax * 2 ** mantBits;
  const bias = 2 ** (expBits - 1) - 1;
  let e = Math.floor(Math.log2(a)); // corrected below: log2 may be off by one near powers of 2
  if (2 ** e > a) e -= 1;
  if (2 ** (e + 1) <= a) e += 1;
  e = Math.max(e, 1 - bias); // below the normal range: subnormal step
  const step = 2 ** (e - mantBits);
  const q = a / step; // exact: division by a power of two
  const fl = Math.floor(q);
  const frac = q - fl;
  let m = frac > 0.5 || (frac === 0.5 && fl % 2 === 1) ? fl + 1 : fl; // m ∈ [0, 2^(mantBits+1)]
  if (m === 2 ** (mantBits + 1)) {
    // rounded up to the next binade
    m /= 2;
    e += 1;
  }
  if (e > bias) return sign + expMax * 2 ** mantBits; // overflow → Inf
  if (m < 2 ** mantBits) return sign + m; // subnormal (exponent field 0)
  return sign + (e + bias) * 2 ** mantBits + (m - 2 ** mantBits);
}

export const toF16Bits = (x: number): number => roundToBits(x, 5, 10);
export const toBf16Bits = (x: number): number => roundToBits(x, 8, 7);

function fromBits(h: number, expBits: number, mantBits: number): number {
  const sign = h >= 2 ** (expBits + mantBits) ? -1 : 1;
  const rest = h % 2 ** (expBits + mantBits);
  const exp = Math.floor(rest / 2 ** mantBits);
  const mant = rest % 2 ** mantBits;
  const bias = 2 ** (expBits - 1) - 1;
  if (exp === 0) return sign * mant * 2 ** (1 - bias - mantBits);
  if (exp === 2 ** expBits - 1) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 2 ** mantBits) * 2 ** (exp - bias);
}

export const fromF16Bits = (h: number): number => fromBits(h, 5, 10);
export const fromBf16Bits = (h: number): number => fromBits(h, 8, 7);

export type StoreDtype = 'F32' | 'F16' | 'BF16';

/** The value x has once stored as `dtype`. */
export function storedValue(x: number, dtype: StoreDtype): number {
  if (dtype === 'F32') return Math.fround(x);
  return dtype === 'F16' ? fromF16Bits(toF16Bits(x)) : fromBf16Bits(toBf16Bits(x));
}

/** The checkpoint as it reads back from a `dtype` file: every weight rounded to that dtype. */
export function storedCheckpoint(ckpt: Checkpoint64, dtype: StoreDtype): Checkpoint64 {
  const weights: Weights = new Map();
  for (const [name, t] of ckpt.weights) weights.set(name, { shape: [...t.shape], data: t.data.map((x) => storedValue(x, dtype)) });
  return { config: ckpt.config, weights };
}

function encode(t: Tensor64, dtype: StoreDtype): { dtype: StoreDtype; shape: number[]; data: Float32Array | Uint16Array } {
  if (dtype === 'F32') return { dtype, shape: t.shape, data: Float32Array.from(t.data) }; // Math.fround: nearest-even
  const bits = dtype === 'F16' ? toF16Bits : toBf16Bits;
  return { dtype, shape: t.shape, data: Uint16Array.from(t.data, bits) };
}

/**
 * Writes config.json and the weights (as `dtype`) into `dir`: one model.safetensors, or
 * with `shards` > 1 the files model-0000i-of-0000n.safetensors (tensors in name order,
 * split into contiguous groups) and model.safetensors.index.json with "weight_map".
 */
export async function writeCheckpointDir(dir: string, ckpt: Checkpoint64, opts: { dtype: StoreDtype; shards?: number }): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'config.json'), `${JSON.stringify(ckpt.config, null, 2)}\n`);
  const names = [...ckpt.weights.keys()].sort();
  const shards = opts.shards ?? 1;
  if (shards <= 1) {
    await writeSafetensors(join(dir, 'model.safetensors'), new Map(names.map((n) => [n, encode(ckpt.weights.get(n) as Tensor64, opts.dtype)])));
    return;
  }
  const pad5 = (i: number): string => String(i).padStart(5, '0');
  const weightMap: Record<string, string> = {};
  let totalSize = 0;
  const per = Math.ceil(names.length / shards);
  for (let s = 0; s < shards; s++) {
    const file = `model-${pad5(s + 1)}-of-${pad5(shards)}.safetensors`;
    const group = names.slice(s * per, (s + 1) * per);
    const tensors = new Map(group.map((n) => [n, encode(ckpt.weights.get(n) as Tensor64, opts.dtype)]));
    for (const [n, t] of tensors) {
      weightMap[n] = file;
      totalSize += t.data.byteLength;
    }
    await writeSafetensors(join(dir, file), tensors);
  }
  await writeFile(join(dir, 'model.safetensors.index.json'), `${JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2)}\n`);
}
