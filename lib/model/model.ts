/**
 * A HuggingFace causal LM on the zofo engine: `loadModel(dir)` reads config.json,
 * the safetensors checkpoint (single file or sharded) and, when present,
 * tokenizer.json; the model then computes logits, the losses of ALGORITHM.md §5, and
 * the gradients of a loss w.r.t. its LoRA adapters (the base stays frozen).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { cpuBinding, cudaBinding, cudaLoadErrors, type EngineBinding, type NativeModel, type NativeModelConfig, type NativeTensorSpec } from '../binding.js';
import { awaitNative, invalidArg, rethrowNative, ZofoError } from '../errors.js';
import { openCheckpoint } from '../formats/safetensors.js';
import { loadAdapter, saveAdapter, saveMerged } from '../formats/peft.js';
import { loadConfig, type ModelConfig } from './config.js';
import { matchCheckpoint } from './checkpoint-shapes.js';
import { loadTokenizer, type Tokenizer } from './tokenizer.js';

/** Classification: prompt + K candidate continuations; `label` indexes the right one. */
export interface ClassificationExample { prompt: number[]; candidates: number[][]; label: number }
/** Language modelling: next-token loss over `target`, the prompt masked. */
export interface LmExample { prompt: number[]; target: number[] }
export type Example = ClassificationExample | LmExample;

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
}

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
      const why = cudaLoadErrors().map((a) => `\n  - ${a.file}: ${a.error}`).join('');
      throw new ZofoError('ZOFO_CUDA', `loadModel: device '${device}' needs the CUDA addon, which did not load:${why}\n` +
        "Build it on a machine with the CUDA toolkit and cuBLAS (npm rebuild zofo), or use device 'cpu' or 'auto'.");
    }
    return { binding: cuda, device };
  }
  throw invalidArg("'cpu', 'auto', 'cuda' or 'cuda:N'", 'device', device);
}

export interface LoraOptions {
  rank?: number;
  alpha?: number;
  /** Module-name suffixes; default q_proj + v_proj (Llama, OPT) or c_attn (GPT-2). */
  targets?: string[];
  /** Seed of the kaiming-uniform init of the A matrices (B starts at 0). */
  seed?: number;
}

export interface LossResult {
  loss: number;
  /** Classification: per example, the mean log-prob score of each candidate. */
  scores?: number[][];
  /** Classification: per example, the argmax candidate. */
  predictions?: number[];
}

export interface LoraGradients {
  loss: number;
  /** d loss / d tensor, keyed by PEFT tensor name (…lora_A.weight / …lora_B.weight). */
  grads: Map<string, Float32Array>;
}

const FAMILY_CODE = { llama: 0, opt: 1, gpt2: 2 } as const;
const DTYPE_CODE: Record<string, number> = { f32: 0, bf16: 1, f16: 2 };
const ACTIVATION_CODE: Record<string, number> = { gelu_new: 0, relu: 1, silu: 2 };
const PEFT_PREFIX = 'base_model.model.';

interface Spec { name: string; shape: number[]; offset: number }

/** Loads a HuggingFace model directory. */
export async function loadModel(dir: string, opts: LoadModelOptions = {}): Promise<Model> {
  if (typeof dir !== 'string' || dir.length === 0) throw invalidArg('a model directory', 'dir', dir);
  const { binding, device } = resolveDevice(opts.device ?? 'cpu');
  const dtype = opts.dtype ?? (device === 'cpu' ? 'f32' : 'bf16');
  const dtypeCode = DTYPE_CODE[dtype];
  if (dtypeCode === undefined) throw invalidArg("'f32', 'bf16' or 'f16'", 'dtype', dtype);
  const config = await loadConfig(dir);
  const activation = ACTIVATION_CODE[config.activation];
  if (activation === undefined) {
    throw new ZofoError('ZOFO_UNSUPPORTED', `${join(dir, 'config.json')}: activation ${JSON.stringify(config.activation)} is not implemented by the engine (gelu_new, relu, silu are)`);
  }
  const nativeConfig: NativeModelConfig = {
    family: FAMILY_CODE[config.family], vocab: config.vocabSize, hidden: config.hiddenSize, layers: config.numLayers,
    heads: config.numHeads, kvHeads: config.numKvHeads, headDim: config.headDim, ffn: config.ffnSize,
    maxPositions: config.maxPositions, embedDim: config.embedProjDim, positionOffset: config.positionOffset,
    rmsnorm: config.norm === 'rmsnorm', normEps: config.normEps, activation, ropeTheta: config.ropeTheta ?? 10000,
    tieEmbeddings: config.tieWordEmbeddings, attentionBias: config.attentionBias, outputBias: config.outputBias,
    mlpBias: config.mlpBias, preNorm: config.preNorm, finalNorm: config.finalNorm,
  };
  // The tensor table the config implies (nothing allocated), checked against the
  // checkpoint's shapes before the engine allocates for the config's sizes.
  let expected: NativeTensorSpec[];
  try {
    expected = binding.NativeModel.tensorSpecsOf(nativeConfig);
  } catch (err) {
    rethrowNative(err, `loadModel ${dir}`);
  }
  const ckpt = await openCheckpoint(dir);
  let native: NativeModel | undefined;
  let storedNames: string[];
  try {
    storedNames = matchCheckpoint(dir, config, expected, ckpt.tensors);
    try {
      native = new binding.NativeModel(nativeConfig, dtypeCode, device);
    } catch (err) {
      rethrowNative(err, `loadModel ${dir}`);
    }
    const specs = native.tensorSpecs();
    for (let i = 0; i < specs.length; i++) native.setTensor(specs[i].name, await ckpt.read(storedNames[i]));
    native.setStreamNames(storedNames); // ALGORITHM.md §3: noise streams follow the keys as stored
  } catch (err) {
    native?.dispose();
    throw err;
  } finally {
    ckpt.close();
  }
  const tokenizer = existsSync(join(dir, 'tokenizer.json')) ? await loadTokenizer(dir) : null;
  return new Model(dir, config, native, tokenizer, dtype, storedNames, binding, device);
}

/** A padded batch in the engine's layout: (B, T) row-major, right padding. */
interface PackedBatch { ids: Int32Array; positions: Int32Array; mask: Uint8Array; B: number; T: number }

function pack(sequences: number[][], vocab: number, what: string): PackedBatch {
  if (!Array.isArray(sequences) || sequences.length === 0) throw invalidArg('a non-empty array of token-id arrays', what, sequences);
  const B = sequences.length;
  const T = Math.max(...sequences.map((s) => (Array.isArray(s) ? s.length : 0)));
  const ids = new Int32Array(B * T), positions = new Int32Array(B * T), mask = new Uint8Array(B * T);
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
  b: PackedBatch; kind: number; rows: Int32Array; targets: Int32Array; group: Int32Array;
  candidateExample: Int32Array; candidateIsLabel: Uint8Array; examples: number;
}

/** Validates a batch of examples and lays it out for the engine (@internal; also used by the optimizer). */
export function encodeLossBatch(batch: Example[], V: number): EncodedLossBatch {
  if (!Array.isArray(batch) || batch.length === 0) throw invalidArg('a non-empty array of examples', 'batch', batch);
  const classification = isClassification(batch[0]);
  const sequences: number[][] = [], rowSeq: number[] = [], rowPos: number[] = [], targets: number[] = [], group: number[] = [];
  const candidateExample: number[] = [], candidateIsLabel: number[] = [];
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
    if (isClassification(ex) !== classification) throw new ZofoError('ZOFO_INVALID_ARG', `batch[${e}]: a batch must hold only classification or only LM examples`);
    check(ex.prompt, `batch[${e}].prompt`);
    if (isClassification(ex)) {
      if (ex.candidates.length < 2) throw invalidArg('at least 2 candidates', `batch[${e}].candidates`, ex.candidates);
      if (!Number.isInteger(ex.label) || ex.label < 0 || ex.label >= ex.candidates.length) throw invalidArg(`an index in 0 .. ${ex.candidates.length - 1}`, `batch[${e}].label`, ex.label);
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
    b, kind: classification ? 1 : 0, rows: Int32Array.from(rowSeq, (seq, i) => seq * b.T + rowPos[i]),
    targets: Int32Array.from(targets), group: Int32Array.from(group), candidateExample: Int32Array.from(candidateExample),
    candidateIsLabel: Uint8Array.from(candidateIsLabel), examples: batch.length,
  };
}

/** Per-example candidate scores and argmax predictions from the engine's flat scores (@internal). */
export function splitScores(batch: ClassificationExample[], flat: Float64Array): { scores: number[][]; predictions: number[] } {
  const scores: number[][] = [], predictions: number[] = [];
  let k = 0;
  for (const ex of batch) {
    const s = Array.from(flat.subarray(k, k + ex.candidates.length));
    k += ex.candidates.length;
    scores.push(s);
    predictions.push(s.indexOf(Math.max(...s)));
  }
  return { scores, predictions };
}


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
  constructor(readonly dir: string, readonly config: ModelConfig, native: NativeModel, readonly tokenizer: Tokenizer | null,
              /** Storage dtype of the base weights. */
              readonly dtype: 'f32' | 'bf16' | 'f16' = 'f32', storedNames?: string[],
              binding?: EngineBinding,
              /** Where the model runs: 'cpu', 'cuda' or 'cuda:N'. */
              readonly device: string = 'cpu') {
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
    const rank = opts.rank ?? 8, alpha = opts.alpha ?? 16;
    if (!Number.isInteger(rank) || rank < 1) throw invalidArg('a positive integer', 'rank', rank);
    if (typeof alpha !== 'number' || !Number.isFinite(alpha)) throw invalidArg('a finite number', 'alpha', alpha);
    const targets = opts.targets ?? (this.config.family === 'gpt2' ? ['c_attn'] : ['q_proj', 'v_proj']);
    if (!Array.isArray(targets) || targets.length === 0 || !targets.every((t) => typeof t === 'string' && t.length > 0)) {
      throw invalidArg('a non-empty array of module names', 'targets', targets);
    }
    let specs: Spec[];
    try {
      specs = this.#live().addLoRA(targets, rank, alpha) as Spec[];
    } catch (err) {
      rethrowNative(err, 'addLoRA');
    }
    this.#loraSpecs = specs;
    this.#lora = { rank, alpha, targets: [...targets] };
    let state = (opts.seed ?? 0x5eed) >>> 0 || 1;
    const uniform = () => { // xorshift32: reproducible init
      state ^= state << 13; state >>>= 0; state ^= state >>> 17; state ^= state << 5; state >>>= 0;
      return state / 4294967296;
    };
    for (const s of specs) {
      if (!s.name.endsWith('.lora_A.weight')) continue;
      const bound = 1 / Math.sqrt(s.shape[1]);
      this.#live().setLoraTensor(s.name, Float32Array.from({ length: s.shape[0] * s.shape[1] }, () => (2 * uniform() - 1) * bound));
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

  loraTensor(name: string): Float32Array {
    const spec = this.#loraSpec(name);
    const out = new Float32Array(spec.shape[0] * spec.shape[1]);
    this.#live().getLoraTensor(spec.name, out);
    return out;
  }

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
    const baseGrad = withBaseGrad
      ? new Float32Array(this.#numel) : undefined;
    let out: { loss: number; scores: Float64Array } | undefined;
    await awaitNative(async () => {
      out = await native.loss(b.ids, b.positions, b.mask, b.B, b.T, kind, rowIndex, targets, group, candidateExample,
        candidateIsLabel, examples, grad ?? null, baseGrad ?? null);
    }, withBaseGrad ? 'baseGradients' : withGrad ? 'loraGradients' : 'loss');
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

  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }
}
