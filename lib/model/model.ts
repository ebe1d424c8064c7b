/**
 * A HuggingFace causal LM on the zofo engine: `loadModel(dir)` reads config.json,
 * the safetensors checkpoint (single file or sharded) and, when present,
 * tokenizer.json; the model then computes logits, the losses of docs/algorithm.md §5, and
 * the gradients of a loss w.r.t. its LoRA adapters (the base stays frozen).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { cpuBinding, cudaBinding, cudaLoadErrors, type EngineBinding, type NativeModel, type NativeModelConfig, type NativeTensorSpec } from '../binding.js';
import { awaitNative, invalidArg, rethrowNative, ZofoError } from '../errors.js';
import { openCheckpoint, type Checkpoint } from '../formats/safetensors.js';
import { loadAdapter, saveAdapter, saveMerged } from '../formats/peft.js';
import { loadConfig, type ModelConfig } from './config.js';
import { matchCheckpoint } from './checkpoint-shapes.js';
import { loadTokenizer, type Tokenizer } from './tokenizer.js';
import { validateLoraOptions } from '../validate/options.js';
import { foldSeed32 } from '../validate/u64.js';

/** Classification: prompt + K candidate continuations; `label` indexes the right one. */
export interface ClassificationExample {
  prompt: number[];
  candidates: number[][];
  label: number;
}
/** Language modelling: next-token loss over `target`, the prompt masked. */
export interface LmExample {
  prompt: number[];
  target: number[];
}
/**
 * One training or evaluation example, already tokenised: a classification example or a language-modelling one.
 */
export type Example = ClassificationExample | LmExample;

/**
 * Options of `loadModel()`: the device and the storage dtype of the base weights.
 */
export interface LoadModelOptions {
  /**
   * Where the model runs: 'cpu' (default), 'cuda' (device 0; 'cuda:N' for device N: weights,
   * adapters, optimizer state and activations in device memory), or 'auto' (CUDA when the
   * CUDA addon loads and a device is usable, else the CPU). backendInfo().cuda says why
   * CUDA is unavailable.
   */
  device?: 'cpu' | 'auto' | 'cuda' | `cuda:${number}`;
  /**
   * How the base weights are stored: 'f32', 'bf16' or 'f16' (half the memory; values
   * rounded to nearest even on load and on every update; arithmetic stays fp32).
   * Default: 'bf16' on CUDA, 'f32' on the CPU.
   */
  dtype?: 'f32' | 'bf16' | 'f16';
  /**
   * Precision of the matmul operands, separate from the storage dtype: 'fp32', 'tf32'
   * (operands rounded to a 10-bit mantissa) or 'bf16' (operands rounded to bf16), products
   * and sums in fp32 in every case. Norms, softmax, the loss, reductions, LoRA masters and
   * optimizer moments stay fp32. Default: 'bf16' on CUDA (tensor cores), 'fp32' on the
   * CPU, where 'bf16' and 'tf32' emulate the tensor cores' numerics (fp32 GEMMs plus
   * operand rounding; docs/precision.md). On CUDA, the deprecated ZOFO_CUDA_TF32=1 makes the default 'tf32'.
   */
  compute?: Compute;
}

/** Compute precision of a model's matmuls (LoadModelOptions.compute). */
export type Compute = 'fp32' | 'tf32' | 'bf16';

/** The addon and device string a model runs on. */
function resolveDevice(device: unknown): { binding: EngineBinding; device: string } {
  if (device === 'cpu') return { binding: cpuBinding(), device: 'cpu' };
  if (device === 'auto') {
    const cuda = cudaBinding();
    return cuda ? { binding: cuda, device: 'cuda' } : { binding: cpuBinding(), device: 'cpu' };
  }
  if (typeof device === 'string' && /^cuda(:\d{1,3})?$/.test(device)) {
    const cuda = cudaBinding();
    if (!cuda) {
      const why = cudaLoadErrors()
        .map((a) => `\n  - ${a.file}: ${a.error}`)
        .join('');
      throw new ZofoError(
        'ZOFO_CUDA',
        `loadModel: device '${device}' needs the CUDA addon, which did not load:${why}\n` +
          "Build it on a machine with the CUDA toolkit and cuBLAS (npm rebuild zofo), or use device 'cpu' or 'auto'.",
      );
    }
    return { binding: cuda, device };
  }
  throw invalidArg("'cpu', 'auto', 'cuda' or 'cuda:N'", 'device', device);
}

/**
 * Options of `Model.addLoRA()`: rank r (default 8), alpha (default 16, scaling alpha / r), target modules and the init seed.
 */
export interface LoraOptions {
  rank?: number;
  alpha?: number;
  /** Module-name suffixes; default q_proj + v_proj (Llama, OPT) or c_attn (GPT-2). */
  targets?: string[];
  /** Seed of the kaiming-uniform init of the A matrices (B starts at 0): 64-bit unsigned, a bigint or a non-negative safe integer. */
  seed?: number | bigint;
}

/**
 * What `Model.loss()` returns: the batch loss and, for classification, the candidates' scores and the predictions.
 */
export interface LossResult {
  loss: number;
  /** Classification: per example, the mean log-prob score of each candidate. */
  scores?: number[][];
  /** Classification: per example, the argmax candidate. */
  predictions?: number[];
}

/**
 * What `Model.loraGradients()` returns: the loss and d loss / d every LoRA tensor.
 */
export interface LoraGradients {
  loss: number;
  /** d loss / d tensor, keyed by PEFT tensor name (…lora_A.weight / …lora_B.weight). */
  grads: Map<string, Float32Array>;
}

const FAMILY_CODE = { llama: 0, opt: 1, gpt2: 2 } as const;
const DTYPE_CODE: Record<string, number> = { f32: 0, bf16: 1, f16: 2 };
const COMPUTE_CODE: Record<string, number> = { fp32: 0, tf32: 1, bf16: 2 };
const ACTIVATION_CODE: Record<string, number> = { gelu_new: 0, relu: 1, silu: 2 };
const PEFT_PREFIX = 'base_model.model.';
const LORA_DEFAULTS = { rank: 8, alpha: 16 };

interface Spec {
  name: string;
  shape: number[];
  offset: number;
}

/** The compute precision asked for, or the device's default (LoadModelOptions.compute). */
function resolveCompute(compute: unknown, device: string): Compute {
  if (compute === undefined) {
    if (device === 'cpu') return 'fp32';
    return process.env.ZOFO_CUDA_TF32 === '1' ? 'tf32' : 'bf16'; // the env var is a deprecated alias
  }
  if (typeof compute !== 'string' || !Object.hasOwn(COMPUTE_CODE, compute)) throw invalidArg("'fp32', 'tf32' or 'bf16'", 'compute', compute);
  return compute as Compute;
}

/**
 * Loads a HuggingFace model directory: config.json, model.safetensors (or shards with
 * their index) and, when present, tokenizer.json.
 *
 * @example
 * ```ts
 * import { loadModel } from 'zofo';
 *
 * const model = await loadModel('./opt-125m', { device: 'auto', dtype: 'f32' });
 * const ids = model.tokenizer!.encode('the movie was great');
 * const [logits] = await model.logits([ids]); // (T, V) for each sequence
 * model.dispose();
 * ```
 */
export async function loadModel(dir: string, opts: LoadModelOptions = {}): Promise<Model> {
  if (typeof dir !== 'string' || dir.length === 0) throw invalidArg('a model directory', 'dir', dir);
  const target = resolveTarget(opts);
  const config = await loadConfig(dir);
  const nativeConfig = nativeConfigOf(config, join(dir, 'config.json'));
  // The tensor table the config implies (nothing allocated), checked against the
  // checkpoint's shapes before the engine allocates for the config's sizes.
  let expected: NativeTensorSpec[];
  try {
    expected = target.binding.NativeModel.tensorSpecsOf(nativeConfig);
  } catch (err) {
    rethrowNative(err, `loadModel ${dir}`);
  }
  const ckpt = await openCheckpoint(dir);
  let native: NativeModel | undefined;
  let storedNames: string[];
  try {
    storedNames = matchCheckpoint(dir, config, expected, ckpt.tensors);
    native = createNative(nativeConfig, target, `loadModel ${dir}`);
    await loadWeights(ckpt, native, storedNames);
    native.setStreamNames(storedNames); // docs/algorithm.md §3: noise streams follow the keys as stored
  } catch (err) {
    native?.dispose();
    throw err;
  } finally {
    ckpt.close();
  }
  let tokenizer: Tokenizer | null = null;
  try {
    // Every token id must index the model's embedding: a larger tokenizer is refused here, not at the first forward.
    if (existsSync(join(dir, 'tokenizer.json'))) tokenizer = await loadTokenizer(dir, { vocabSize: config.vocabSize });
  } catch (err) {
    native.dispose();
    throw err;
  }
  return new Model(dir, config, native, tokenizer, target.dtype, storedNames, target.binding, target.device, target.compute);
}

/** Where and how a model's weights live: addon, device, storage dtype and compute precision (@internal). */
export interface ModelTarget {
  binding: EngineBinding;
  device: string;
  dtype: 'f32' | 'bf16' | 'f16';
  compute: Compute;
}

/** Validates the placement options of loadModel and friends (@internal). */
export function resolveTarget(opts: LoadModelOptions): ModelTarget {
  const { binding, device } = resolveDevice(opts.device ?? 'cpu');
  const dtype = opts.dtype ?? (device === 'cpu' ? 'f32' : 'bf16');
  if (DTYPE_CODE[dtype] === undefined) throw invalidArg("'f32', 'bf16' or 'f16'", 'dtype', dtype);
  return { binding, device, dtype, compute: resolveCompute(opts.compute, device) };
}

/** The engine's view of a config (@internal); `configFile` names the config in errors. */
export function nativeConfigOf(config: ModelConfig, configFile: string): NativeModelConfig {
  const activation = ACTIVATION_CODE[config.activation];
  if (activation === undefined) {
    throw new ZofoError(
      'ZOFO_UNSUPPORTED',
      `${configFile}: activation ${JSON.stringify(config.activation)} is not implemented by the engine (gelu_new, relu, silu are)`,
    );
  }
  return {
    family: FAMILY_CODE[config.family],
    vocab: config.vocabSize,
    hidden: config.hiddenSize,
    layers: config.numLayers,
    heads: config.numHeads,
    kvHeads: config.numKvHeads,
    headDim: config.headDim,
    ffn: config.ffnSize,
    maxPositions: config.maxPositions,
    embedDim: config.embedProjDim,
    positionOffset: config.positionOffset,
    rmsnorm: config.norm === 'rmsnorm',
    normEps: config.normEps,
    activation,
    ropeTheta: config.ropeTheta ?? 10000,
    tieEmbeddings: config.tieWordEmbeddings,
    attentionBias: config.attentionBias,
    outputBias: config.outputBias,
    mlpBias: config.mlpBias,
    preNorm: config.preNorm,
    finalNorm: config.finalNorm,
  };
}

/** The engine's model for a config, its parameters zero (@internal): the caller fills the weights. */
export function createNative(nativeConfig: NativeModelConfig, target: ModelTarget, context: string): NativeModel {
  try {
    return new target.binding.NativeModel(nativeConfig, DTYPE_CODE[target.dtype], target.device, COMPUTE_CODE[target.compute]);
  } catch (err) {
    rethrowNative(err, context);
  }
}

// Reads every tensor (already matched and shape-checked) straight into the model's
// parameter buffer, one native call per file, off the JS thread.
async function loadWeights(ckpt: Checkpoint, native: NativeModel, storedNames: string[]): Promise<void> {
  const perFile = new Map<string, { fileSize: number; names: string[]; offsets: number[]; dtypes: number[] }>();
  native.tensorSpecs().forEach((spec, i) => {
    const at = ckpt.fileOf(storedNames[i]).location(storedNames[i]);
    let group = perFile.get(at.file);
    if (!group) perFile.set(at.file, (group = { fileSize: at.fileSize, names: [], offsets: [], dtypes: [] }));
    group.names.push(spec.name);
    group.offsets.push(at.offset);
    group.dtypes.push(DTYPE_CODE[at.dtype.toLowerCase()]);
  });
  for (const [file, g] of perFile) {
    await awaitNative(
      () => native.loadTensors(file, g.fileSize, g.names, Float64Array.from(g.offsets), Uint8Array.from(g.dtypes)),
      `loadModel: reading ${file}`,
    );
  }
}

/** A padded batch in the engine's layout: (B, T) row-major, right padding. */
interface PackedBatch {
  ids: Int32Array;
  positions: Int32Array;
  mask: Uint8Array;
  B: number;
  T: number;
}

function pack(sequences: number[][], vocab: number, what: string): PackedBatch {
  if (!Array.isArray(sequences) || sequences.length === 0) throw invalidArg('a non-empty array of token-id arrays', what, sequences);
  const B = sequences.length;
  const T = Math.max(...sequences.map((s) => (Array.isArray(s) ? s.length : 0)));
  const ids = new Int32Array(B * T),
    positions = new Int32Array(B * T),
    mask = new Uint8Array(B * T);
  sequences.forEach((seq, b) => {
    if (!Array.isArray(seq) || seq.length === 0) throw invalidArg('a non-empty array of token ids', `${what}[${b}]`, seq);
    seq.forEach((id, t) => {
      if (!Number.isInteger(id) || id < 0 || id >= vocab) throw invalidArg(`a token id in 0 .. ${vocab - 1}`, `${what}[${b}][${t}]`, id);
      ids[b * T + t] = id;
      positions[b * T + t] = t; // = cumsum(mask) − 1 under right padding
      mask[b * T + t] = 1;
    });
  });
  return { ids, positions, mask, B, T };
}

const isClassification = (e: Example): e is ClassificationExample => Array.isArray((e as ClassificationExample).candidates);

/** A loss batch in the engine's layout: the padded sequences and what the loss reads (@internal). */
export interface EncodedLossBatch {
  b: PackedBatch;
  kind: number;
  rows: Int32Array;
  targets: Int32Array;
  group: Int32Array;
  candidateExample: Int32Array;
  candidateIsLabel: Uint8Array;
  examples: number;
}

/** Validates a batch of examples and lays it out for the engine (@internal; also used by the optimizer). */
export function encodeLossBatch(batch: Example[], V: number): EncodedLossBatch {
  if (!Array.isArray(batch) || batch.length === 0) throw invalidArg('a non-empty array of examples', 'batch', batch);
  batch.forEach((ex, e) => {
    if (typeof ex !== 'object' || ex === null) throw invalidArg('an example object ({prompt, candidates, label} or {prompt, target})', `batch[${e}]`, ex);
  });
  const classification = isClassification(batch[0]);
  const sequences: number[][] = [],
    rowSeq: number[] = [],
    rowPos: number[] = [],
    targets: number[] = [],
    group: number[] = [];
  const candidateExample: number[] = [],
    candidateIsLabel: number[] = [];
  const check = (ids: unknown, what: string) => {
    if (!Array.isArray(ids) || ids.length === 0) throw invalidArg('a non-empty array of token ids', what, ids);
    ids.forEach((id, i) => {
      if (!Number.isInteger(id) || id < 0 || id >= V) throw invalidArg(`a token id in 0 .. ${V - 1}`, `${what}[${i}]`, id);
    });
  };
  // Row (b, t) predicts token t + 1: a continuation token j is read at prompt.length − 1 + j.
  const addSequence = (prompt: number[], cont: number[], g: number) => {
    const b = sequences.length;
    sequences.push([...prompt, ...cont]);
    cont.forEach((tok, j) => {
      rowSeq.push(b);
      rowPos.push(prompt.length - 1 + j);
      targets.push(tok);
      group.push(g);
    });
  };
  batch.forEach((ex, e) => {
    if (typeof ex !== 'object' || ex === null) throw invalidArg('an example object', `batch[${e}]`, ex);
    if (isClassification(ex) !== classification)
      throw new ZofoError('ZOFO_INVALID_ARG', `batch[${e}]: a batch must hold only classification or only LM examples`);
    check(ex.prompt, `batch[${e}].prompt`);
    if (isClassification(ex)) {
      if (!Array.isArray(ex.candidates) || ex.candidates.length < 2) throw invalidArg('at least 2 candidates', `batch[${e}].candidates`, ex.candidates);
      if (!Number.isInteger(ex.label) || ex.label < 0 || ex.label >= ex.candidates.length)
        throw invalidArg(`an index in 0 .. ${ex.candidates.length - 1}`, `batch[${e}].label`, ex.label);
      ex.candidates.forEach((cand, c) => check(cand, `batch[${e}].candidates[${c}]`));
      // Single-token verbalizers (SST-2's " terrible" / " great"): one forward of the
      // prompt, the K candidates read at its last position. Otherwise one sequence each.
      const singleToken = ex.candidates.every((cand) => cand.length === 1);
      const b = sequences.length;
      if (singleToken) sequences.push([...ex.prompt]);
      ex.candidates.forEach((cand, c) => {
        candidateExample.push(e);
        candidateIsLabel.push(c === ex.label ? 1 : 0);
        if (!singleToken) {
          addSequence(ex.prompt, cand, candidateExample.length - 1);
          return;
        }
        rowSeq.push(b);
        rowPos.push(ex.prompt.length - 1);
        targets.push(cand[0]);
        group.push(candidateExample.length - 1);
      });
    } else {
      check((ex as LmExample).target, `batch[${e}].target`);
      addSequence(ex.prompt, (ex as LmExample).target, 0);
    }
  });
  const b = pack(sequences, V, 'sequences');
  return {
    b,
    kind: classification ? 1 : 0,
    rows: Int32Array.from(rowSeq, (seq, i) => seq * b.T + rowPos[i]),
    targets: Int32Array.from(targets),
    group: Int32Array.from(group),
    candidateExample: Int32Array.from(candidateExample),
    candidateIsLabel: Uint8Array.from(candidateIsLabel),
    examples: batch.length,
  };
}

/** Per-example candidate scores and argmax predictions from the engine's flat scores (@internal). */
export function splitScores(batch: ClassificationExample[], flat: Float64Array): { scores: number[][]; predictions: number[] } {
  const scores: number[][] = [],
    predictions: number[] = [];
  let k = 0;
  for (const ex of batch) {
    const s = Array.from(flat.subarray(k, k + ex.candidates.length));
    k += ex.candidates.length;
    scores.push(s);
    predictions.push(s.indexOf(Math.max(...s)));
  }
  return { scores, predictions };
}

/**
 * A loaded causal LM on the zofo engine (create it with `loadModel()`): logits, losses,
 * LoRA adapters and their gradients, and PEFT / merged-model output. Holds native memory:
 * call `dispose()` (or use `await using`) when done; disposing cascades to its optimizers.
 *
 * @example
 * ```ts
 * import { loadModel } from 'zofo';
 *
 * await using model = await loadModel('./opt-125m');
 * model.addLoRA({ rank: 8, alpha: 16 });
 * const tok = model.tokenizer!;
 * const ex = {
 *   prompt: tok.encode('a great movie . It was', { addSpecialTokens: false }),
 *   candidates: [[tok.tokenToId('Ġterrible')!], [tok.tokenToId('Ġgreat')!]],
 *   label: 1,
 * };
 * const { loss, predictions } = await model.loss([ex]);
 * await model.saveAdapter('./out/adapter'); // HF PEFT layout
 * ```
 */
export class Model {
  #native: NativeModel | null;
  readonly #binding: EngineBinding;
  // The base tensor table never changes after loading: read it from native once.
  readonly #specs: Spec[];
  readonly #numel: number;
  #loraSpecs: Spec[] = [];
  #lora: { rank: number; alpha: number; targets: string[] } | null = null;

  readonly #storedNames: string[];

  /** @internal use loadModel() */
  constructor(
    readonly dir: string,
    readonly config: ModelConfig,
    native: NativeModel,
    readonly tokenizer: Tokenizer | null,
    /** Storage dtype of the base weights. */
    readonly dtype: 'f32' | 'bf16' | 'f16' = 'f32',
    storedNames?: string[],
    binding?: EngineBinding,
    /** Where the model runs: 'cpu', 'cuda' or 'cuda:N'. */
    readonly device: string = 'cpu',
    /** Precision of the matmul operands (LoadModelOptions.compute); must match the engine's. */
    readonly compute: Compute = 'fp32',
  ) {
    this.#native = native;
    this.#binding = binding ?? cpuBinding();
    this.#specs = native.tensorSpecs() as Spec[];
    this.#numel = this.#specs.reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0);
    this.#storedNames = storedNames ?? this.#specs.map((s) => s.name);
  }

  /** @internal the addon the model runs on (its optimizer must come from the same one). */
  get binding(): EngineBinding {
    return this.#binding;
  }

  /** @internal the engine handle, for the optimizer and replay in lib/train. */
  get native(): NativeModel {
    return this.#live();
  }

  /** Checkpoint keys as stored in the loaded file (the Philox stream names), parameterNames() order. */
  storedNames(): string[] {
    this.#live();
    return [...this.#storedNames];
  }

  /** Number of elements of each base tensor, parameterNames() order. */
  parameterCounts(): number[] {
    return this.#specs.map((s) => s.shape.reduce((a, b) => a * b, 1));
  }

  /** A 64-bit identity (hex) of the stored base weights: what a trajectory log names as its base. */
  async baseHash(): Promise<string> {
    const native = this.#live();
    let h = 0n;
    await awaitNative(async () => {
      h = await native.hashParameters();
    }, 'baseHash');
    return h.toString(16).padStart(16, '0');
  }

  #spec(name: string): Spec {
    const spec = this.#specs.find((s) => s.name === name);
    if (!spec) throw new ZofoError('ZOFO_INVALID_ARG', `the model has no tensor named ${JSON.stringify(name)}`);
    return spec;
  }

  #live(): NativeModel {
    if (!this.#native) throw new ZofoError('ZOFO_DISPOSED', `the model loaded from ${this.dir} has been disposed`);
    return this.#native;
  }

  /** Checkpoint names of the base tensors, in parameter-buffer order. */
  parameterNames(): string[] {
    this.#live();
    return this.#specs.map((s) => s.name);
  }

  /** A copy of a base tensor's current values. */
  async tensor(name: string): Promise<Float32Array> {
    const spec = this.#spec(name);
    const out = new Float32Array(spec.shape.reduce((a, b) => a * b, 1));
    this.#live().getTensor(name, out);
    return out;
  }

  /**
   * Adds LoRA adapters (HF PEFT init: A kaiming-uniform with a = √5, i.e. U(±1/√in);
   * B = 0, so the adapted model starts identical to the base). Returns PEFT names.
   */
  addLoRA(opts: LoraOptions = {}): string[] {
    opts = validateLoraOptions(opts, LORA_DEFAULTS);
    const rank = opts.rank ?? LORA_DEFAULTS.rank,
      alpha = opts.alpha ?? LORA_DEFAULTS.alpha;
    const targets = opts.targets ?? (this.config.family === 'gpt2' ? ['c_attn'] : ['q_proj', 'v_proj']);
    let specs: Spec[];
    try {
      specs = this.#live().addLoRA(targets, rank, alpha) as Spec[];
    } catch (err) {
      rethrowNative(err, 'addLoRA');
    }
    this.#loraSpecs = specs;
    this.#lora = { rank, alpha, targets: [...targets] };
    let state = foldSeed32(opts.seed ?? 0x5eed) || 1;
    const uniform = () => {
      // xorshift32: reproducible init
      state ^= state << 13;
      state >>>= 0;
      state ^= state >>> 17;
      state ^= state << 5;
      state >>>= 0;
      return state / 4294967296;
    };
    for (const s of specs) {
      if (!s.name.endsWith('.lora_A.weight')) continue;
      const bound = 1 / Math.sqrt(s.shape[1]);
      this.#live().setLoraTensor(
        s.name,
        Float32Array.from({ length: s.shape[0] * s.shape[1] }, () => (2 * uniform() - 1) * bound),
      );
    }
    return specs.map((s) => PEFT_PREFIX + s.name);
  }

  /** The adapters' rank, alpha and target modules (null before addLoRA). */
  loraConfig(): { rank: number; alpha: number; targets: string[] } | null {
    return this.#lora ? { ...this.#lora, targets: [...this.#lora.targets] } : null;
  }

  /** Shape of a base tensor (checkpoint layout). */
  tensorShape(name: string): number[] {
    this.#live();
    return [...this.#spec(name).shape];
  }

  /** Writes the adapters in the HF PEFT layout (adapter_config.json + adapter_model.safetensors). */
  async saveAdapter(dir: string): Promise<void> {
    await saveAdapter(this, dir);
  }

  /** Loads an HF PEFT LoRA adapter (adding adapters with its r/alpha/targets if there are none). */
  async loadAdapter(dir: string): Promise<void> {
    await loadAdapter(this, dir);
  }

  /** Writes an HF checkpoint with the adapters merged into the base weights (loadable by loadModel). */
  async saveMerged(dir: string): Promise<void> {
    await saveMerged(this, dir);
  }

  /** PEFT names of the adapter tensors (empty before addLoRA). */
  loraNames(): string[] {
    return this.#loraSpecs.map((s) => PEFT_PREFIX + s.name);
  }

  #loraSpec(name: string): Spec {
    const spec = this.#loraSpecs.find((s) => PEFT_PREFIX + s.name === name);
    if (!spec) throw new ZofoError('ZOFO_INVALID_ARG', `the model has no LoRA tensor named ${JSON.stringify(name)}`);
    return spec;
  }

  /** [rows, cols] of a LoRA tensor: lora_A [rank, in], lora_B [out, rank]. */
  loraShape(name: string): number[] {
    return [...this.#loraSpec(name).shape];
  }

  /** A copy of the LoRA tensor `name` (a PEFT name from `loraNames()`). */
  loraTensor(name: string): Float32Array {
    const spec = this.#loraSpec(name);
    const out = new Float32Array(spec.shape[0] * spec.shape[1]);
    this.#live().getLoraTensor(spec.name, out);
    return out;
  }

  /** Overwrites the LoRA tensor `name` with `data` (its exact length). */
  setLoraTensor(name: string, data: Float32Array): void {
    const spec = this.#loraSpec(name);
    if (!(data instanceof Float32Array)) throw invalidArg('a Float32Array', name, data);
    try {
      this.#live().setLoraTensor(spec.name, data);
    } catch (err) {
      rethrowNative(err, 'setLoraTensor');
    }
  }

  /** Logits of every position of each (unpadded) sequence: [length × vocab] row-major. */
  async logits(ids: number[][]): Promise<Float32Array[]> {
    const V = this.config.vocabSize;
    const b = pack(ids, V, 'ids');
    const rows: number[] = [];
    ids.forEach((seq, i) => seq.forEach((_, t) => rows.push(i * b.T + t)));
    const out = new Float32Array(rows.length * V);
    const native = this.#live();
    await awaitNative(() => native.logits(b.ids, b.positions, b.mask, b.B, b.T, Int32Array.from(rows), out), 'logits');
    const result: Float32Array[] = [];
    let at = 0;
    for (const seq of ids) {
      result.push(out.slice(at * V, (at + seq.length) * V));
      at += seq.length;
    }
    return result;
  }

  /** The batch's loss (classification or LM: all examples of one kind). */
  async loss(batch: Example[]): Promise<LossResult> {
    return (await this.#run(batch, false)).result;
  }

  /** The loss and its gradient w.r.t. every LoRA tensor (the base receives none). */
  async loraGradients(batch: Example[]): Promise<LoraGradients> {
    if (this.#loraSpecs.length === 0) throw new ZofoError('ZOFO_INVALID_STATE', 'loraGradients: the model has no LoRA adapters; call addLoRA() first');
    const { result, grad } = await this.#run(batch, true);
    const grads = new Map<string, Float32Array>();
    for (const s of this.#loraSpecs) grads.set(PEFT_PREFIX + s.name, grad!.slice(s.offset, s.offset + s.shape[0] * s.shape[1]));
    return { loss: result.loss, grads };
  }

  /**
   * The loss and its gradient w.r.t. every BASE tensor (full fine-tuning; memory for one
   * gradient per weight, so meant for small models). Keyed by checkpoint name.
   */
  async baseGradients(batch: Example[]): Promise<{ loss: number; grads: Map<string, Float32Array> }> {
    const { result, baseGrad } = await this.#run(batch, false, true);
    const grads = new Map<string, Float32Array>();
    for (const s of this.#specs) grads.set(s.name, baseGrad!.slice(s.offset, s.offset + s.shape.reduce((a, b) => a * b, 1)));
    return { loss: result.loss, grads };
  }

  async #run(batch: Example[], withGrad: boolean, withBaseGrad = false): Promise<{ result: LossResult; grad?: Float32Array; baseGrad?: Float32Array }> {
    const { b, kind, rows: rowIndex, targets, group, candidateExample, candidateIsLabel, examples } = encodeLossBatch(batch, this.config.vocabSize);
    const classification = kind === 1;
    const native = this.#live();
    const grad = withGrad ? new Float32Array(this.#loraSpecs.reduce((n, s) => n + s.shape[0] * s.shape[1], 0)) : undefined;
    const baseGrad = withBaseGrad ? new Float32Array(this.#numel) : undefined;
    let out: { loss: number; scores: Float64Array } | undefined;
    await awaitNative(
      async () => {
        out = await native.loss(
          b.ids,
          b.positions,
          b.mask,
          b.B,
          b.T,
          kind,
          rowIndex,
          targets,
          group,
          candidateExample,
          candidateIsLabel,
          examples,
          grad ?? null,
          baseGrad ?? null,
        );
      },
      withBaseGrad ? 'baseGradients' : withGrad ? 'loraGradients' : 'loss',
    );
    const result: LossResult = { loss: out!.loss };
    if (classification) Object.assign(result, splitScores(batch as ClassificationExample[], out!.scores));
    return { result, grad, baseGrad };
  }

  readonly #dependents = new Set<{ dispose(): void }>();

  /** @internal disposed with the model (its optimizers). */
  attach(dependent: { dispose(): void }): void {
    this.#dependents.add(dependent);
  }

  /** Frees the native model and its optimizers (in-flight calls finish first). Further calls throw ZOFO_DISPOSED. */
  dispose(): void {
    for (const d of this.#dependents) d.dispose();
    this.#dependents.clear();
    this.#native?.dispose();
    this.#native = null;
  }

  /** `await using` support: the same as `dispose()`. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }
}
