/**
 * HuggingFace `config.json` → one normalised `ModelConfig` for the three families the
 * engine implements: Llama (with its Mistral and Qwen2 variants), OPT and GPT-2.
 *
 * Each family's field names and defaults follow its transformers config class
 * (LlamaConfig, MistralConfig, Qwen2Config, OPTConfig, GPT2Config). A field that would
 * change the math and that the engine does not implement (a rope_scaling type, an
 * activation, post-hoc attention scaling, ...) is rejected by name with
 * ZOFO_UNSUPPORTED; it is never silently ignored. A malformed field is a
 * ZOFO_BAD_CONFIG that names the file, the field and what it held.
 */
import { join } from 'node:path';
import { describe, ZofoError } from '../errors.js';
import { readJsonFile } from '../formats/files.js';

/**
 * The architecture families the engine implements (Llama-style includes Mistral and Qwen2 checkpoints).
 */
export type ModelFamily = 'llama' | 'opt' | 'gpt2';
/**
 * Feed-forward activation named by a model's config.json.
 */
export type Activation = 'silu' | 'relu' | 'gelu_new' | 'gelu';

/**
 * A HuggingFace config.json reduced to what the engine needs, normalised across families; `raw` keeps the file's own object.
 */
export interface ModelConfig {
  /** Which forward graph runs: Llama (also Mistral, Qwen2), OPT or GPT-2. */
  family: ModelFamily;
  /** The HF class, e.g. "LlamaForCausalLM" (`architectures[0]`, or implied by model_type). */
  architecture: string;
  /** HF `model_type`: "llama", "mistral", "qwen2", "opt" or "gpt2". */
  modelType: string;
  /** Rows of the token embedding (and of lm_head). */
  vocabSize: number;
  /** Width of the residual stream. */
  hiddenSize: number;
  /** Number of decoder blocks. */
  numLayers: number;
  /** Query heads per attention layer. */
  numHeads: number;
  /** Key/value heads (< numHeads under grouped-query attention); query head h uses kv head ⌊h / (numHeads / numKvHeads)⌋. */
  numKvHeads: number;
  /** Width of one head (Llama may state it; otherwise hiddenSize / numHeads). */
  headDim: number;
  /** Inner width of the MLP (intermediate_size, ffn_dim, n_inner). */
  ffnSize: number;
  /** Longest sequence the position embeddings (or RoPE training) cover. */
  maxPositions: number;
  /** RMSNorm (Llama) or LayerNorm (OPT, GPT-2). */
  norm: 'rmsnorm' | 'layernorm';
  /** The norm's epsilon. */
  normEps: number;
  /** MLP activation: SwiGLU gate for Llama, plain activation for OPT / GPT-2. */
  activation: Activation;
  /** RoPE base (Llama family only; undefined for learned position embeddings). */
  ropeTheta: number | undefined;
  /** lm_head shares the token embedding's weights. */
  tieWordEmbeddings: boolean;
  /** q/k/v projections have biases. */
  attentionBias: boolean;
  /** The attention output projection (o_proj / out_proj / c_proj) has a bias. */
  outputBias: boolean;
  /** MLP projections have biases. */
  mlpBias: boolean;
  /** Norm before each sublayer (true), or after the residual add (OPT-350m). */
  preNorm: boolean;
  /** A norm after the last block (absent in post-LN OPT). */
  finalNorm: boolean;
  /** Width of the token embedding: OPT word_embed_proj_dim; ≠ hiddenSize means project_in / project_out exist. */
  embedProjDim: number;
  /** Row of the position embedding used by position 0 (OPT: 2, the rest: 0). */
  positionOffset: number;
  /** Mistral's attention window; null when attention is over the whole sequence. */
  slidingWindow: number | null;
  bosTokenId?: number;
  /** The first end-of-sequence id (see eosTokenIds). */
  eosTokenId?: number;
  /** Every end-of-sequence id (configs may give a list); empty when none is stated. */
  eosTokenIds: number[];
  padTokenId?: number;
  /** The dtype the checkpoint was saved in ("bfloat16", "float16", "float32"), when stated. */
  torchDtype?: string;
  /** The parsed config.json, unchanged. */
  raw: Readonly<Record<string, unknown>>;
}

/** The largest size a config may state (vocab, widths, positions): token ids and rows are int32. */
export const MAX_MODEL_DIM = 2 ** 31 - 1;
/** The most decoder blocks a config may state (the engine's limit; real models have a few hundred at most). */
export const MAX_MODEL_LAYERS = 4096;

interface ArchitectureInfo {
  family: ModelFamily;
  modelType: string;
}

const ARCHITECTURES: Record<string, ArchitectureInfo> = {
  LlamaForCausalLM: { family: 'llama', modelType: 'llama' },
  MistralForCausalLM: { family: 'llama', modelType: 'mistral' },
  Qwen2ForCausalLM: { family: 'llama', modelType: 'qwen2' },
  OPTForCausalLM: { family: 'opt', modelType: 'opt' },
  GPT2LMHeadModel: { family: 'gpt2', modelType: 'gpt2' },
};
const SUPPORTED = Object.entries(ARCHITECTURES)
  .map(([arch, info]) => `${arch} (${info.modelType})`)
  .join(', ');

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Reads `${dir}/config.json` and parses it (see parseConfig). */
export async function loadConfig(dir: string): Promise<ModelConfig> {
  const file = join(dir, 'config.json');
  return parseConfig(await readJsonFile(file, { badCode: 'ZOFO_BAD_CONFIG' }), file);
}

/**
 * Typed access to the fields of one config object. Absent and null both mean "not
 * stated" (HF writes null for unset optional fields); every error names the file and field.
 */
class Fields {
  constructor(
    readonly raw: Record<string, unknown>,
    readonly file: string,
  ) {}

  has(name: string): boolean {
    return this.raw[name] !== undefined && this.raw[name] !== null;
  }

  /** `label` names the field in the message when it is nested (e.g. "rope_parameters.rope_theta"). */
  bad(name: string, expected: string, label = name): ZofoError {
    return new ZofoError('ZOFO_BAD_CONFIG', `${this.file}: Expected ${expected} for ${label} but received ${describe(this.raw[name])}`);
  }

  unsupported(name: string, what: string): ZofoError {
    return new ZofoError('ZOFO_UNSUPPORTED', `${this.file}: ${name} ${what} is not supported`);
  }

  /**
   * A positive integer up to `max` (by default MAX_MODEL_DIM: sizes index int32 token ids
   * and rows); required unless `fallback` is given.
   */
  count(name: string, fallback?: number, max = MAX_MODEL_DIM): number {
    if (!this.has(name) && fallback !== undefined) return fallback;
    const v = this.raw[name];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw this.bad(name, 'a positive integer');
    if (v > max) throw this.bad(name, `a positive integer up to ${max}`);
    return v;
  }

  /** A positive finite number (epsilons, RoPE base); required unless `fallback` is given. */
  positive(name: string, fallback?: number, label = name): number {
    if (!this.has(name) && fallback !== undefined) return fallback;
    const v = this.raw[name];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw this.bad(name, 'a positive number', label);
    return v;
  }

  flag(name: string, fallback: boolean): boolean {
    if (!this.has(name)) return fallback;
    const v = this.raw[name];
    if (typeof v !== 'boolean') throw this.bad(name, 'a boolean');
    return v;
  }

  /** Rejects a flag by name when it is stated with the value the engine does not implement. */
  refuseFlag(name: string, fallback: boolean, refused: boolean): void {
    if (this.flag(name, fallback) === refused) throw this.unsupported(name, `= ${refused}`);
  }

  /** One of `allowed`; any other string is unsupported, named with its value. */
  activation<A extends Activation>(name: string, fallback: A, allowed: readonly A[]): A {
    if (!this.has(name)) return fallback;
    const v = this.raw[name];
    if (typeof v !== 'string') throw this.bad(name, 'a string');
    if (!(allowed as readonly string[]).includes(v)) {
      throw this.unsupported(name, `${JSON.stringify(v)} (supported: ${allowed.map((a) => JSON.stringify(a)).join(', ')})`);
    }
    return v as A;
  }

  /** A token id (a non-negative integer), or a list of them for eos_token_id. */
  tokenIds(name: string, fallback?: number): number[] {
    const v = this.has(name) ? this.raw[name] : fallback;
    if (v === undefined) return [];
    const ids = Array.isArray(v) ? v : [v];
    if (!ids.every((id) => typeof id === 'number' && Number.isSafeInteger(id) && id >= 0)) {
      throw this.bad(name, 'a non-negative integer token id or a list of them');
    }
    return ids as number[];
  }

  optionalString(name: string): string | undefined {
    if (!this.has(name)) return undefined;
    const v = this.raw[name];
    if (typeof v !== 'string') throw this.bad(name, 'a string');
    return v;
  }
}

/** The fields whose meaning is the same in every family, given that family's defaults. */
function commonFields(f: Fields, tokenDefaults: { bos?: number; eos?: number; pad?: number }) {
  const eosTokenIds = f.tokenIds('eos_token_id', tokenDefaults.eos);
  return {
    bosTokenId: f.tokenIds('bos_token_id', tokenDefaults.bos)[0],
    eosTokenId: eosTokenIds[0],
    eosTokenIds,
    padTokenId: f.tokenIds('pad_token_id', tokenDefaults.pad)[0],
    // transformers ≥ 4.56 writes `dtype`, earlier versions `torch_dtype`.
    torchDtype: f.optionalString('torch_dtype') ?? f.optionalString('dtype'),
    raw: f.raw,
  };
}

/** hidden / heads, insisting that it divides. */
function headWidth(f: Fields, hiddenName: string, hidden: number, headsName: string, heads: number): number {
  if (hidden % heads !== 0) {
    throw new ZofoError('ZOFO_BAD_CONFIG', `${f.file}: ${hiddenName} (${hidden}) is not divisible by ${headsName} (${heads})`);
  }
  return hidden / heads;
}

/**
 * Checks that a RoPE parameter object describes plain RoPE. `rope_scaling` (transformers
 * < 5) and `rope_parameters` (transformers ≥ 5) name the variant in `rope_type` or, in
 * older configs, `type`; every variant but "default" rescales frequencies or
 * attention and would silently change the model.
 */
function checkRopeType(f: Fields, name: string): void {
  if (!f.has(name)) return;
  const rope = f.raw[name];
  if (!isRecord(rope)) throw f.bad(name, 'an object or null');
  const type = rope.rope_type ?? rope.type ?? 'default';
  if (type !== 'default') throw f.unsupported(name, `type ${JSON.stringify(type)} (only "default" RoPE is implemented)`);
}

function parseLlama(f: Fields, modelType: string): Omit<ModelConfig, 'architecture' | 'modelType'> {
  const hiddenSize = f.count('hidden_size');
  const numHeads = f.count('num_attention_heads');
  const numKvHeads = f.count('num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw new ZofoError('ZOFO_BAD_CONFIG', `${f.file}: num_attention_heads (${numHeads}) is not divisible by num_key_value_heads (${numKvHeads})`);
  }
  const headDim = f.has('head_dim') ? f.count('head_dim') : headWidth(f, 'hidden_size', hiddenSize, 'num_attention_heads', numHeads);

  checkRopeType(f, 'rope_scaling');
  checkRopeType(f, 'rope_parameters');
  // transformers ≥ 5 moves rope_theta into rope_parameters.
  const ropeParameters = f.raw.rope_parameters as Record<string, unknown> | null | undefined;
  const ropeTheta =
    ropeParameters?.rope_theta !== undefined
      ? new Fields(ropeParameters, f.file).positive('rope_theta', undefined, 'rope_parameters.rope_theta')
      : f.positive('rope_theta', 10000);

  // Mistral attends within a window (the engine rejects longer sequences); Qwen2 states a
  // window but uses it only with use_sliding_window, which the engine does not implement.
  let slidingWindow: number | null = null;
  if (modelType === 'mistral' && f.has('sliding_window')) slidingWindow = f.count('sliding_window');
  if (modelType === 'qwen2') f.refuseFlag('use_sliding_window', false, true);
  if (f.has('layer_types')) {
    const types = f.raw.layer_types;
    if (!Array.isArray(types)) throw f.bad('layer_types', 'a list of layer types');
    const other = types.find((t) => t !== 'full_attention');
    if (other !== undefined) throw f.unsupported('layer_types', `entry ${JSON.stringify(other)} (only "full_attention" is implemented)`);
  }

  // Llama's attention_bias covers q, k, v and o; Qwen2 always has q/k/v biases and never an o_proj bias.
  const attentionBias = modelType === 'qwen2' ? true : f.flag('attention_bias', false);
  const outputBias = modelType === 'qwen2' ? false : attentionBias;
  return {
    family: 'llama',
    vocabSize: f.count('vocab_size'),
    hiddenSize,
    numLayers: f.count('num_hidden_layers', undefined, MAX_MODEL_LAYERS),
    numHeads,
    numKvHeads,
    headDim,
    ffnSize: f.count('intermediate_size'),
    maxPositions: f.count('max_position_embeddings'),
    norm: 'rmsnorm',
    normEps: f.positive('rms_norm_eps'),
    activation: f.activation('hidden_act', 'silu', ['silu']),
    ropeTheta,
    tieWordEmbeddings: f.flag('tie_word_embeddings', false),
    attentionBias,
    outputBias,
    mlpBias: f.flag('mlp_bias', false),
    preNorm: true,
    finalNorm: true,
    embedProjDim: hiddenSize,
    positionOffset: 0,
    slidingWindow,
    // `pretraining_tp` only splits matmuls during HF pretraining: the same math, so accepted.
    ...commonFields(f, {}),
  };
}

function parseOpt(f: Fields): Omit<ModelConfig, 'architecture' | 'modelType'> {
  const hiddenSize = f.count('hidden_size');
  const numHeads = f.count('num_attention_heads');
  const preNorm = f.flag('do_layer_norm_before', true);
  // Without elementwise affine the norms have no weight/bias tensors: not implemented.
  f.refuseFlag('layer_norm_elementwise_affine', true, false);
  const enableBias = f.flag('enable_bias', true);
  return {
    family: 'opt',
    vocabSize: f.count('vocab_size'),
    hiddenSize,
    numLayers: f.count('num_hidden_layers', undefined, MAX_MODEL_LAYERS),
    numHeads,
    numKvHeads: numHeads,
    headDim: headWidth(f, 'hidden_size', hiddenSize, 'num_attention_heads', numHeads),
    ffnSize: f.count('ffn_dim'),
    maxPositions: f.count('max_position_embeddings'),
    norm: 'layernorm',
    normEps: 1e-5, // OPT uses nn.LayerNorm's default epsilon
    activation: f.activation('activation_function', 'relu', ['relu']),
    ropeTheta: undefined,
    tieWordEmbeddings: f.flag('tie_word_embeddings', true),
    attentionBias: enableBias,
    outputBias: enableBias,
    mlpBias: enableBias,
    preNorm,
    // OPTDecoder builds final_layer_norm only for pre-LN models not marked _remove_final_layer_norm.
    finalNorm: preNorm && !f.flag('_remove_final_layer_norm', false),
    embedProjDim: f.count('word_embed_proj_dim', hiddenSize),
    positionOffset: 2, // OPTLearnedPositionalEmbedding reserves rows 0 and 1
    slidingWindow: null,
    ...commonFields(f, { bos: 2, eos: 2, pad: 1 }),
  };
}

function parseGpt2(f: Fields): Omit<ModelConfig, 'architecture' | 'modelType'> {
  const hiddenSize = f.count('n_embd');
  const numHeads = f.count('n_head');
  // Variants of the attention score the engine does not implement.
  f.refuseFlag('scale_attn_weights', true, false);
  f.refuseFlag('scale_attn_by_inverse_layer_idx', false, true);
  f.refuseFlag('reorder_and_upcast_attn', false, true);
  f.refuseFlag('add_cross_attention', false, true);
  return {
    family: 'gpt2',
    vocabSize: f.count('vocab_size'),
    hiddenSize,
    numLayers: f.count('n_layer', undefined, MAX_MODEL_LAYERS),
    numHeads,
    numKvHeads: numHeads,
    headDim: headWidth(f, 'n_embd', hiddenSize, 'n_head', numHeads),
    ffnSize: f.count('n_inner', 4 * hiddenSize),
    maxPositions: f.count('n_positions'),
    norm: 'layernorm',
    normEps: f.positive('layer_norm_epsilon', 1e-5),
    activation: f.activation('activation_function', 'gelu_new', ['gelu_new', 'gelu', 'relu']),
    ropeTheta: undefined,
    tieWordEmbeddings: f.flag('tie_word_embeddings', true),
    attentionBias: true, // Conv1D layers always carry a bias
    outputBias: true,
    mlpBias: true,
    preNorm: true,
    finalNorm: true,
    embedProjDim: hiddenSize,
    positionOffset: 0,
    slidingWindow: null,
    ...commonFields(f, { bos: 50256, eos: 50256 }),
  };
}

/**
 * Which architecture a config describes. transformers' Auto classes go by model_type;
 * architectures[0] names the class the checkpoint was saved from. Either may be
 * missing, but when both are present they must agree.
 */
function resolveArchitecture(f: Fields): { architecture: string; info: ArchitectureInfo } {
  const architectures = f.raw.architectures;
  if (f.has('architectures') && (!Array.isArray(architectures) || architectures.length === 0 || typeof architectures[0] !== 'string')) {
    throw f.bad('architectures', 'a non-empty list of class names');
  }
  const modelType = f.optionalString('model_type');
  const named = (architectures as string[] | undefined)?.[0];
  const architecture = named ?? Object.keys(ARCHITECTURES).find((a) => ARCHITECTURES[a].modelType === modelType);
  if (architecture === undefined || !Object.hasOwn(ARCHITECTURES, architecture)) {
    const what =
      named !== undefined
        ? `architecture ${JSON.stringify(named)}`
        : modelType !== undefined
          ? `model_type ${JSON.stringify(modelType)}`
          : 'a config with neither architectures nor model_type';
    throw new ZofoError('ZOFO_UNSUPPORTED', `${f.file}: ${what} is not supported; supported: ${SUPPORTED}`);
  }
  const info = ARCHITECTURES[architecture];
  if (modelType !== undefined && modelType !== info.modelType) {
    throw new ZofoError(
      'ZOFO_BAD_CONFIG',
      `${f.file}: model_type ${JSON.stringify(modelType)} does not match architectures[0] ${JSON.stringify(architecture)} (model_type ${JSON.stringify(info.modelType)})`,
    );
  }
  return { architecture, info };
}

/** Validates a parsed config.json (`file` names it in errors) and derives the engine's view of it. */
export function parseConfig(json: unknown, file: string): ModelConfig {
  if (!isRecord(json)) throw new ZofoError('ZOFO_BAD_CONFIG', `${file}: Expected a JSON object but received ${describe(json)}`);
  const f = new Fields(json, file);
  const { architecture, info } = resolveArchitecture(f);
  const fields = info.family === 'llama' ? parseLlama(f, info.modelType) : info.family === 'opt' ? parseOpt(f) : parseGpt2(f);
  return { architecture, modelType: info.modelType, ...fields };
}
