/**
 * The float64 reference ("oracle") for zofo's model engine: causal LMs exactly as
 * HuggingFace transformers computes them (modeling_llama.py / Mistral / Qwen2,
 * modeling_opt.py, modeling_gpt2.py), plus PEFT LoRA adapters, the MeZO-style losses of
 * docs/algorithm.md §5, and analytic LoRA gradients through a tape (autograd64.ts).
 *
 * Written plainly from HF semantics; shares no code with lib/ or native/. Weights are
 * keyed by the checkpoint's own names, read as stored (GPT-2 Conv1D weights stay [in, out]).
 *
 * Shapes in comments: B batch, T padded length, C hidden size, NH query heads, NKV kv
 * heads, HS head size, F feed-forward size, V vocabulary, N = B·T rows.
 */
import { constant, parameter, Tape, type Activation, type Var } from './autograd64.js';

export interface Tensor64 {
  shape: number[];
  data: Float64Array;
}

export type Weights = Map<string, Tensor64>;

/** PEFT adapters: tensors named like `base_model.model.<module>.lora_{A,B}.weight`; s = alpha / r. */
export interface LoraWeights {
  scaling: number;
  tensors: Map<string, Tensor64>;
}

export interface ForwardOptions {
  /** Where pads go when sequences differ in length (default right). */
  padding?: 'right' | 'left';
  /** Token id written into pad slots (default 0); masked out, so its value must not matter. */
  padId?: number;
  lora?: LoraWeights;
  /** Sees intermediate activations (full padded batch), named after HF modules. */
  trace?: (name: string, data: Float64Array, shape: number[]) => void;
  /** Rounds both operands of every matmul of a linear layer (emulated bf16/tf32 compute). */
  operand?: (x: number) => number;
}

export interface LossOptions extends ForwardOptions {
  /** Candidate score: mean log-prob of its tokens (MeZO, default) or their sum. */
  score?: 'mean' | 'sum';
}

export interface ClassificationExample {
  prompt: number[];
  candidates: number[][];
  label: number;
}

export interface LmExample {
  prompt: number[];
  target: number[];
}

export type Family = 'llama' | 'opt' | 'gpt2';

type Config = Record<string, unknown>;

// ---- config reading ----

function num(config: Config, key: string, fallback?: number): number {
  const v = config[key];
  if (v === undefined || v === null) {
    if (fallback === undefined) throw new Error(`config.json: missing ${key}`);
    return fallback;
  }
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`config.json: ${key} must be a number, not ${JSON.stringify(v)}`);
  return v;
}

function bool(config: Config, key: string, fallback: boolean): boolean {
  const v = config[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'boolean') throw new Error(`config.json: ${key} must be a boolean, not ${JSON.stringify(v)}`);
  return v;
}

function activationOf(name: unknown): Activation {
  if (name === 'relu') return 'relu';
  if (name === 'silu' || name === 'swish') return 'silu';
  if (name === 'gelu_new' || name === 'gelu_pytorch_tanh') return 'gelu_new';
  throw new Error(`reference model: activation ${JSON.stringify(name)} is not implemented`);
}

/** The family from `model_type` (else `architectures[0]`). */
export function familyOf(config: Config): Family {
  const type = config.model_type;
  const arch = Array.isArray(config.architectures) ? config.architectures[0] : undefined;
  if (type === 'llama' || type === 'mistral' || type === 'qwen2') return 'llama';
  if (type === 'opt') return 'opt';
  if (type === 'gpt2') return 'gpt2';
  if (arch === 'LlamaForCausalLM' || arch === 'MistralForCausalLM' || arch === 'Qwen2ForCausalLM') return 'llama';
  if (arch === 'OPTForCausalLM') return 'opt';
  if (arch === 'GPT2LMHeadModel') return 'gpt2';
  throw new Error(`reference model: unknown model_type ${JSON.stringify(type)} / architecture ${JSON.stringify(arch)}`);
}

// ---- padding ----

/** A padded batch: B sequences laid out in [B, T] with a mask. */
interface Padded {
  B: number;
  T: number;
  tokens: number[]; // [B·T]
  mask: boolean[]; // [B·T], true on real tokens
  start: number[]; // [B] slot of each sequence's first real token
  lengths: number[]; // [B]
}

function pad(ids: readonly (readonly number[])[], padding: 'right' | 'left', padId: number): Padded {
  const B = ids.length;
  const lengths = ids.map((s) => s.length);
  if (B === 0 || lengths.some((n) => n === 0)) throw new Error('reference model: every sequence needs at least one token');
  const T = Math.max(...lengths);
  const tokens = new Array<number>(B * T).fill(padId);
  const mask = new Array<boolean>(B * T).fill(false);
  const start = lengths.map((n) => (padding === 'left' ? T - n : 0));
  ids.forEach((seq, b) =>
    seq.forEach((tok, t) => {
      tokens[b * T + start[b] + t] = tok;
      mask[b * T + start[b] + t] = true;
    }),
  );
  return { B, T, tokens, mask, start, lengths };
}

/** cumsum(mask) − 1 on real tokens; `padValue` on pads. [B·T] */
function countingPositions(batch: Padded, padValue: number): number[] {
  const pos = new Array<number>(batch.B * batch.T);
  for (let b = 0; b < batch.B; b++) {
    let count = 0;
    for (let t = 0; t < batch.T; t++) {
      const i = b * batch.T + t;
      if (batch.mask[i]) count += 1;
      pos[i] = batch.mask[i] ? count - 1 : padValue;
    }
  }
  return pos;
}

/** Causal + padding mask: query i of sequence b sees key j when j ≤ i and j is a real token. */
function causalAllowed(batch: Padded): (b: number, i: number, j: number) => boolean {
  return (b, i, j) => j <= i && batch.mask[b * batch.T + j];
}

// ---- one forward pass: the tape, the LoRA leaves, bookkeeping ----

class Run {
  readonly tape: Tape;
  readonly loraVars = new Map<string, Var>();
  readonly usedLora = new Set<string>();

  constructor(
    readonly lora: LoraWeights | undefined,
    readonly withGrad: boolean,
    readonly trace: ForwardOptions['trace'],
    operand?: ForwardOptions['operand'],
  ) {
    this.tape = new Tape(operand);
    for (const [name, t] of lora?.tensors ?? []) {
      if (t.shape.length !== 2) throw new Error(`LoRA tensor ${name} must be 2-D, is ${JSON.stringify(t.shape)}`);
      this.loraVars.set(name, withGrad ? parameter(t.data, t.shape) : constant(t.data, t.shape));
    }
  }

  emit(name: string, v: Var): Var {
    this.trace?.(name, v.data, v.shape);
    return v;
  }

  /** The adapter of PEFT module `path`, if any: s · B(A u), [N, out]. */
  adapter(u: Var, path: string, out: number): Var | undefined {
    const aName = `base_model.model.${path}.lora_A.weight`;
    const bName = `base_model.model.${path}.lora_B.weight`;
    const A = this.loraVars.get(aName),
      B = this.loraVars.get(bName);
    if (A === undefined && B === undefined) return undefined;
    if (A === undefined || B === undefined) throw new Error(`LoRA for ${path}: needs both lora_A and lora_B`);
    const [r, inA] = A.shape;
    if (inA !== u.cols || B.shape[0] !== out || B.shape[1] !== r) {
      throw new Error(`LoRA for ${path}: A ${JSON.stringify(A.shape)}, B ${JSON.stringify(B.shape)} do not fit in=${u.cols}, out=${out}`);
    }
    this.usedLora.add(aName);
    this.usedLora.add(bName);
    const down = this.tape.linear(u, A); // [N, r]
    const up = this.tape.linear(down, B); // [N, out]
    return this.tape.scale(up, (this.lora as LoraWeights).scaling);
  }

  /** Every LoRA tensor must have been used by some module. */
  checkAllLoraUsed(): void {
    for (const name of this.loraVars.keys()) {
      if (!this.usedLora.has(name)) throw new Error(`LoRA tensor ${name} matches no linear module of the model`);
    }
  }
}

// ---- the model ----

export class ReferenceModel {
  readonly family: Family;
  readonly vocabSize: number;
  private readonly used = new Set<string>();

  constructor(
    readonly config: Config,
    readonly weights: Weights,
  ) {
    this.family = familyOf(config);
    this.vocabSize = num(config, 'vocab_size');
    // Build once with a 1-token input so that missing, misshaped and unused weights fail here.
    this.hidden(new Run(undefined, false, undefined), pad([[0]], 'right', 0));
    this.lmHead(new Run(undefined, false, undefined), constant(new Float64Array(this.headWidth()), [1, this.headWidth()]));
    this.checkAllWeightsUsed();
  }

  // -- weights --

  private w(name: string, shape: number[]): Var {
    const t = this.weights.get(name);
    if (t === undefined) throw new Error(`checkpoint: missing tensor ${name}`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new Error(`checkpoint: ${name} has shape ${JSON.stringify(t.shape)}, expected ${JSON.stringify(shape)}`);
    }
    if (t.data.length !== shape.reduce((a, b) => a * b, 1))
      throw new Error(`checkpoint: ${name} has ${t.data.length} values for shape ${JSON.stringify(shape)}`);
    this.used.add(name);
    return constant(t.data, t.shape);
  }

  private checkAllWeightsUsed(): void {
    const ignorable = (name: string): boolean =>
      (this.family === 'gpt2' && /(^|\.)h\.\d+\.attn\.(bias|masked_bias)$/.test(name)) || // GPT-2 mask buffers
      name.endsWith('.rotary_emb.inv_freq') || // old Llama buffers
      (name === 'lm_head.weight' && this.tied()); // a tied head stored anyway: HF ties it to the embedding
    const unused = [...this.weights.keys()].filter((n) => !this.used.has(n) && !ignorable(n));
    if (unused.length > 0) throw new Error(`checkpoint: tensors the ${this.family} model does not use: ${unused.join(', ')}`);
  }

  private tied(): boolean {
    // LlamaConfig / MistralConfig / Qwen2Config default to false; OPT and GPT-2 inherit PretrainedConfig's true.
    return bool(this.config, 'tie_word_embeddings', this.family !== 'llama');
  }

  /** Embedding of token rows: rows of `table` [V, W] → [N, W] (a constant). */
  private embed(table: Var, ids: readonly number[]): Var {
    const [V, W] = table.shape;
    const out = new Float64Array(ids.length * W);
    ids.forEach((id, n) => {
      if (!Number.isInteger(id) || id < 0 || id >= V) throw new Error(`token/position id ${id} outside [0, ${V})`);
      out.set(table.data.subarray(id * W, (id + 1) * W), n * W);
    });
    return constant(out, [ids.length, W]);
  }

  /** nn.Linear module `path` (weight [out, in], optional bias [out]) plus its LoRA adapter. */
  private linear(run: Run, x: Var, path: string, out: number, bias: boolean, prefix = ''): Var {
    const W = this.w(`${prefix}${path}.weight`, [out, x.cols]);
    const b = bias ? this.w(`${prefix}${path}.bias`, [out]) : undefined;
    const y = run.tape.linear(x, W, b);
    const lora = run.adapter(x, path, out);
    return run.emit(path, lora ? run.tape.add(y, lora) : y);
  }

  /** GPT-2 Conv1D module: y = x · W + b with W stored [in, out]; LoRA as PEFT (fan_in_fan_out). */
  private conv1d(run: Run, x: Var, path: string, prefix: string, out: number): Var {
    const W = this.w(`${prefix}${path}.weight`, [x.cols, out]);
    const b = this.w(`${prefix}${path}.bias`, [out]);
    const y = run.tape.conv1d(x, W, b);
    const lora = run.adapter(x, `transformer.${path}`, out);
    return run.emit(path, lora ? run.tape.add(y, lora) : y);
  }

  // -- families --

  /** Final hidden states [N, W] for the padded batch (before lm_head). */
  private hidden(run: Run, batch: Padded): Var {
    if (this.family === 'llama') return this.llamaHidden(run, batch);
    if (this.family === 'opt') return this.optHidden(run, batch);
    return this.gpt2Hidden(run, batch);
  }

  /** Width of the vectors lm_head reads. */
  private headWidth(): number {
    if (this.family === 'llama') return num(this.config, 'hidden_size');
    if (this.family === 'opt') return num(this.config, 'word_embed_proj_dim', num(this.config, 'hidden_size'));
    return num(this.config, 'n_embd');
  }

  /** lm_head on rows h [n, W] → logits [n, V]: the embedding when tied, else lm_head.weight. */
  private lmHead(run: Run, h: Var): Var {
    const V = this.vocabSize;
    const W = h.cols;
    let table: Var;
    if (this.tied()) {
      const name =
        this.family === 'llama' ? 'model.embed_tokens.weight' : this.family === 'opt' ? 'model.decoder.embed_tokens.weight' : `${this.gpt2Prefix()}wte.weight`;
      table = this.w(name, [V, W]);
    } else {
      table = this.w('lm_head.weight', [V, W]);
    }
    const y = run.tape.linear(h, table); // no bias in any of the three
    const lora = run.adapter(h, 'lm_head', V);
    return lora ? run.tape.add(y, lora) : y;
  }

  /** Llama / Mistral / Qwen2 decoder. */
  private llamaHidden(run: Run, batch: Padded): Var {
    const c = this.config;
    const type = c.model_type;
    const C = num(c, 'hidden_size');
    const L = num(c, 'num_hidden_layers');
    const NH = num(c, 'num_attention_heads');
    const NKV = num(c, 'num_key_value_heads', NH);
    const HS = num(c, 'head_dim', C / NH);
    const F = num(c, 'intermediate_size');
    const eps = num(c, 'rms_norm_eps', 1e-6);
    const theta = num(c, 'rope_theta', 10000);
    const act = activationOf(c.hidden_act ?? 'silu');
    const qwen2 = type === 'qwen2' || (Array.isArray(c.architectures) && c.architectures[0] === 'Qwen2ForCausalLM');
    const attnBias = bool(c, 'attention_bias', false); // Llama: q, k, v and o
    const qkvBias = qwen2 || attnBias; // Qwen2: q, k, v always, o never
    const oBias = !qwen2 && attnBias;
    const mlpBias = bool(c, 'mlp_bias', false);
    const scaling = c.rope_scaling as Record<string, unknown> | null | undefined;
    if (scaling !== undefined && scaling !== null) {
      const kind = scaling.rope_type ?? scaling.type;
      if (kind !== 'default') throw new Error(`reference model: rope_scaling ${JSON.stringify(kind)} is not implemented`);
    }
    if (num(c, 'partial_rotary_factor', 1) !== 1) throw new Error('reference model: partial_rotary_factor ≠ 1 is not implemented');
    const window = type === 'mistral' ? c.sliding_window : qwen2 && bool(c, 'use_sliding_window', false) ? c.sliding_window : null;
    if (typeof window === 'number' && batch.T > window) throw new Error(`reference model: sequences longer than sliding_window ${window} are not implemented`);

    const N = batch.B * batch.T;
    const positions = countingPositions(batch, 1); // HF callers: cumsum(mask) − 1, pads filled with 1
    // inv_freq[i] = 1 / theta^(2i / HS), i < HS/2
    const invFreq = new Float64Array(HS / 2);
    for (let i = 0; i < HS / 2; i++) invFreq[i] = 1 / theta ** ((2 * i) / HS);

    let x = this.embed(this.w('model.embed_tokens.weight', [this.vocabSize, C]), batch.tokens); // [N, C]
    for (let l = 0; l < L; l++) {
      const p = `model.layers.${l}`;
      const h = run.emit(`${p}.input_layernorm`, run.tape.rmsNorm(x, this.w(`${p}.input_layernorm.weight`, [C]), eps));
      const q = this.linear(run, h, `${p}.self_attn.q_proj`, NH * HS, qkvBias); // [N, NH·HS]
      const k = this.linear(run, h, `${p}.self_attn.k_proj`, NKV * HS, qkvBias); // [N, NKV·HS]
      const v = this.linear(run, h, `${p}.self_attn.v_proj`, NKV * HS, qkvBias); // [N, NKV·HS]
      const qr = run.emit(`${p}.self_attn.q_rope`, run.tape.rope(q, positions, NH, HS, invFreq));
      const kr = run.emit(`${p}.self_attn.k_rope`, run.tape.rope(k, positions, NKV, HS, invFreq));
      const attn = run.emit(
        `${p}.self_attn.attn_output`,
        run.tape.attention(qr, kr, v, { B: batch.B, T: batch.T, NH, NKV, HS }, causalAllowed(batch), 1 / Math.sqrt(HS)),
      );
      const o = this.linear(run, attn, `${p}.self_attn.o_proj`, C, oBias);
      x = run.tape.add(x, o);
      const h2 = run.emit(`${p}.post_attention_layernorm`, run.tape.rmsNorm(x, this.w(`${p}.post_attention_layernorm.weight`, [C]), eps));
      const gate = run.tape.activation(this.linear(run, h2, `${p}.mlp.gate_proj`, F, mlpBias), act);
      const up = this.linear(run, h2, `${p}.mlp.up_proj`, F, mlpBias);
      const down = this.linear(run, run.tape.mul(gate, up), `${p}.mlp.down_proj`, C, mlpBias);
      x = run.emit(p, run.tape.add(x, down));
    }
    if (x.rows !== N) throw new Error('internal: row count');
    return run.emit('model.norm', run.tape.rmsNorm(x, this.w('model.norm.weight', [C]), eps));
  }

  /** OPT decoder: learned positions offset by 2, pre-LN or post-LN, optional project_in/out. */
  private optHidden(run: Run, batch: Padded): Var {
    const c = this.config;
    const C = num(c, 'hidden_size');
    const E = num(c, 'word_embed_proj_dim', C);
    const L = num(c, 'num_hidden_layers');
    const NH = num(c, 'num_attention_heads');
    const HS = C / NH;
    const F = num(c, 'ffn_dim');
    const P = num(c, 'max_position_embeddings');
    const preLN = bool(c, 'do_layer_norm_before', true);
    const bias = bool(c, 'enable_bias', true);
    const affine = bool(c, 'layer_norm_elementwise_affine', true);
    const act = activationOf(c.activation_function ?? 'relu');
    const finalLN = preLN && !bool(c, '_remove_final_layer_norm', false);
    const eps = 1e-5; // nn.LayerNorm default; OPT passes none
    const d = 'model.decoder';
    const ln = (x: Var, path: string): Var =>
      run.emit(path, run.tape.layerNorm(x, affine ? this.w(`${path}.weight`, [C]) : undefined, affine ? this.w(`${path}.bias`, [C]) : undefined, eps));

    // positions = cumsum(mask)·mask − 1, then + 2 (OPTLearnedPositionalEmbedding.offset): pads → row 1
    const positions = countingPositions(batch, -1).map((p) => p + 2);
    let x = this.embed(this.w(`${d}.embed_tokens.weight`, [this.vocabSize, E]), batch.tokens); // [N, E]
    if (E !== C) x = this.linear(run, x, `${d}.project_in`, C, false); // [N, C]
    const pos = this.embed(this.w(`${d}.embed_positions.weight`, [P + 2, C]), positions); // [N, C]
    x = run.tape.add(x, pos);
    const scale = HS ** -0.5;
    for (let l = 0; l < L; l++) {
      const p = `${d}.layers.${l}`;
      // self-attention block
      let h = preLN ? ln(x, `${p}.self_attn_layer_norm`) : x;
      const q = run.tape.scale(this.linear(run, h, `${p}.self_attn.q_proj`, C, bias), scale); // bias first, then × HS^-0.5
      const k = this.linear(run, h, `${p}.self_attn.k_proj`, C, bias);
      const v = this.linear(run, h, `${p}.self_attn.v_proj`, C, bias);
      const attn = run.emit(`${p}.self_attn.attn_output`, run.tape.attention(q, k, v, { B: batch.B, T: batch.T, NH, NKV: NH, HS }, causalAllowed(batch), 1));
      h = this.linear(run, attn, `${p}.self_attn.out_proj`, C, bias);
      x = run.tape.add(x, h);
      if (!preLN) x = ln(x, `${p}.self_attn_layer_norm`);
      // feed-forward block
      h = preLN ? ln(x, `${p}.final_layer_norm`) : x;
      h = this.linear(run, run.tape.activation(this.linear(run, h, `${p}.fc1`, F, bias), act), `${p}.fc2`, C, bias);
      x = run.tape.add(x, h);
      if (!preLN) x = ln(x, `${p}.final_layer_norm`);
      run.emit(p, x);
    }
    if (finalLN) x = ln(x, `${d}.final_layer_norm`);
    if (E !== C) x = this.linear(run, x, `${d}.project_out`, E, false); // [N, E]
    return x;
  }

  private gpt2Prefix(): string {
    if (this.weights.has('transformer.wte.weight')) return 'transformer.';
    if (this.weights.has('wte.weight')) return '';
    throw new Error('checkpoint: no transformer.wte.weight or wte.weight');
  }

  /** GPT-2: learned absolute positions, pre-LN blocks with Conv1D projections, ln_f. */
  private gpt2Hidden(run: Run, batch: Padded): Var {
    const c = this.config;
    const pre = this.gpt2Prefix();
    const C = num(c, 'n_embd');
    const L = num(c, 'n_layer');
    const NH = num(c, 'n_head');
    const HS = C / NH;
    const F = num(c, 'n_inner', 4 * C);
    const eps = num(c, 'layer_norm_epsilon', 1e-5);
    const act = activationOf(c.activation_function ?? 'gelu_new');
    const scaleWeights = bool(c, 'scale_attn_weights', true);
    const byLayer = bool(c, 'scale_attn_by_inverse_layer_idx', false);
    const ln = (x: Var, path: string): Var =>
      run.emit(path, run.tape.layerNorm(x, this.w(`${pre}${path}.weight`, [C]), this.w(`${pre}${path}.bias`, [C]), eps));

    const positions = countingPositions(batch, 1); // cumsum(mask) − 1 (HF generate), pads 1
    let x = this.embed(this.w(`${pre}wte.weight`, [this.vocabSize, C]), batch.tokens); // [N, C]
    x = run.tape.add(x, this.embed(this.w(`${pre}wpe.weight`, [num(c, 'n_positions'), C]), positions));
    for (let l = 0; l < L; l++) {
      const p = `h.${l}`;
      let h = ln(x, `${p}.ln_1`);
      const qkv = this.conv1d(run, h, `${p}.attn.c_attn`, pre, 3 * C); // [N, 3C]: q | k | v along the output
      const q = run.tape.columns(qkv, 0, C),
        k = run.tape.columns(qkv, C, C),
        v = run.tape.columns(qkv, 2 * C, C);
      let scale = scaleWeights ? 1 / Math.sqrt(HS) : 1;
      if (byLayer) scale /= l + 1;
      const attn = run.emit(`${p}.attn.attn_output`, run.tape.attention(q, k, v, { B: batch.B, T: batch.T, NH, NKV: NH, HS }, causalAllowed(batch), scale));
      x = run.tape.add(x, this.conv1d(run, attn, `${p}.attn.c_proj`, pre, C));
      h = ln(x, `${p}.ln_2`);
      h = this.conv1d(run, run.tape.activation(this.conv1d(run, h, `${p}.mlp.c_fc`, pre, F), act), `${p}.mlp.c_proj`, pre, C);
      x = run.emit(p, run.tape.add(x, h));
    }
    return ln(x, 'ln_f');
  }

  // -- public API --

  /**
   * Logits [len × V] of each sequence's real tokens. Sequences of different lengths are
   * padded (right by default) with an attention mask, as HF does with attention_mask.
   */
  forward(ids: number[][], opts: ForwardOptions = {}): Float64Array[] {
    const run = new Run(opts.lora, false, opts.trace, opts.operand);
    const batch = pad(ids, opts.padding ?? 'right', opts.padId ?? 0);
    const h = this.hidden(run, batch);
    const rows: number[] = [];
    ids.forEach((seq, b) => seq.forEach((_, t) => rows.push(b * batch.T + batch.start[b] + t)));
    const logits = this.lmHead(run, run.tape.rows(h, rows)); // [Σ len, V]
    run.checkAllLoraUsed();
    const V = this.vocabSize;
    const out: Float64Array[] = [];
    let at = 0;
    for (const seq of ids) {
      out.push(logits.data.slice(at * V, (at + seq.length) * V));
      at += seq.length;
    }
    return out;
  }

  /**
   * Log-probs of `targets[s]` continuing `prefixes[s]`, as one padded batch: a Var
   * [Σ targets] of log p(target token | everything before it).
   */
  private targetLogProbs(run: Run, seqs: { prefix: number[]; target: number[] }[], opts: ForwardOptions): Var {
    for (const s of seqs) {
      if (s.prefix.length === 0) throw new Error('reference model: the prompt must hold at least one token');
      if (s.target.length === 0) throw new Error('reference model: a candidate/target must hold at least one token');
    }
    const ids = seqs.map((s) => [...s.prefix, ...s.target]);
    const batch = pad(ids, opts.padding ?? 'right', opts.padId ?? 0);
    const h = this.hidden(run, batch);
    // target token t of sequence b is predicted by the row of token (prefix + t − 1)
    const rows: number[] = [];
    const cells: [number, number][] = [];
    seqs.forEach((s, b) =>
      s.target.forEach((tok, t) => {
        cells.push([rows.length, tok]);
        rows.push(b * batch.T + batch.start[b] + s.prefix.length + t - 1);
      }),
    );
    const logits = this.lmHead(run, run.tape.rows(h, rows)); // [Σ targets, V]
    return run.tape.pick(run.tape.logSoftmax(logits), cells);
  }

  /** Classification loss of a batch as a Var: mean over examples of −log softmax(scores)[label]. */
  private classificationGraph(run: Run, examples: readonly ClassificationExample[], opts: LossOptions): { loss: Var; scores: Float64Array[] } {
    const seqs = examples.flatMap((e) => e.candidates.map((cand) => ({ prefix: e.prompt, target: cand })));
    const logp = this.targetLogProbs(run, seqs, opts); // [Σ candidate tokens]
    const all = run.tape.segmentReduce(
      logp,
      seqs.map((s) => s.target.length),
      opts.score ?? 'mean',
    ); // [Σ K]
    const losses: Var[] = [];
    const scores: Float64Array[] = [];
    let at = 0;
    for (const e of examples) {
      const K = e.candidates.length;
      if (!(Number.isInteger(e.label) && e.label >= 0 && e.label < K)) throw new Error(`label ${e.label} outside [0, ${K})`);
      const s = run.tape.pick(
        all,
        Array.from({ length: K }, (_, k) => [0, at + k] as [number, number]),
      ); // [K]
      scores.push(s.data.slice());
      const nll = run.tape.scale(run.tape.pick(run.tape.logSoftmax(s), [[0, e.label]]), -1); // [1]
      losses.push(nll);
      at += K;
    }
    return { loss: run.tape.mean(run.tape.concat(losses)), scores };
  }

  /**
   * LM loss of a batch as a Var. Convention: the mean over ALL target tokens of all
   * examples (HF's shifted cross-entropy with prompt labels = −100, reduction "mean"),
   * so a longer target weighs more.
   */
  private lmGraph(run: Run, examples: readonly LmExample[], opts: ForwardOptions): Var {
    const logp = this.targetLogProbs(
      run,
      examples.map((e) => ({ prefix: e.prompt, target: e.target })),
      opts,
    );
    return run.tape.scale(run.tape.mean(logp), -1);
  }

  /** One example: score_c = mean (or sum) log p(candidate c | prompt); loss = CE(softmax(scores), label). */
  classificationLoss(example: ClassificationExample, opts: LossOptions = {}): { loss: number; scores: Float64Array; prediction: number } {
    const run = new Run(opts.lora, false, opts.trace, opts.operand);
    const { loss, scores } = this.classificationGraph(run, [example], opts);
    run.checkAllLoraUsed();
    return { loss: loss.data[0], scores: scores[0], prediction: argmax(scores[0]) };
  }

  /** A batch: loss = mean over examples of their classification losses. */
  classificationBatchLoss(examples: readonly ClassificationExample[], opts: LossOptions = {}): { loss: number; scores: Float64Array[]; predictions: number[] } {
    const run = new Run(opts.lora, false, opts.trace, opts.operand);
    const { loss, scores } = this.classificationGraph(run, examples, opts);
    run.checkAllLoraUsed();
    return { loss: loss.data[0], scores, predictions: scores.map(argmax) };
  }

  /** One example: mean next-token cross-entropy over the target tokens (prompt masked). */
  lmLoss(example: LmExample, opts: ForwardOptions = {}): { loss: number } {
    return this.lmBatchLoss([example], opts);
  }

  /** A batch: mean over all target tokens of all examples. */
  lmBatchLoss(examples: readonly LmExample[], opts: ForwardOptions = {}): { loss: number } {
    const run = new Run(opts.lora, false, opts.trace, opts.operand);
    const loss = this.lmGraph(run, examples, opts);
    run.checkAllLoraUsed();
    return { loss: loss.data[0] };
  }

  /** The batch loss and its analytic gradient w.r.t. every LoRA tensor (keyed by PEFT name). */
  loraGradients(
    batch: readonly ClassificationExample[] | readonly LmExample[],
    kind: 'classification' | 'lm',
    opts: LossOptions & { lora: LoraWeights },
  ): { loss: number; grads: Map<string, Float64Array> } {
    const run = new Run(opts.lora, true, opts.trace, opts.operand);
    const loss =
      kind === 'classification'
        ? this.classificationGraph(run, batch as readonly ClassificationExample[], opts).loss
        : this.lmGraph(run, batch as readonly LmExample[], opts);
    run.checkAllLoraUsed();
    run.tape.backward(loss);
    const grads = new Map<string, Float64Array>();
    for (const [name, v] of run.loraVars) grads.set(name, v.grad ?? new Float64Array(v.data.length));
    return { loss: loss.data[0], grads };
  }
}

function argmax(x: Float64Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}
