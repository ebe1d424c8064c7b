/**
 * HF PEFT adapters and merged checkpoints, so that Python users can take zofo's results:
 *
 *   <dir>/adapter_config.json        LoRA config, keys sorted (as PEFT writes it)
 *   <dir>/adapter_model.safetensors  base_model.model.<module>.lora_{A,B}.weight
 *
 * A merged checkpoint is an HF model directory whose linears hold W + s·B·A (GPT-2's
 * Conv1D weights, stored [in, out], get the transpose), loadable by loadModel and by
 * transformers. Every file is written atomically (temp file, fsync, rename).
 */
import { copyFile, mkdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, invalidArg, ZofoError } from '../errors.js';
import { MAX_LORA_RANK, MAX_LORA_SCALING } from '../validate/options.js';
import { badFile, ioError, isRecord, parseJsonText, readRegularFile, writeFileAtomic } from './files.js';
import { openSafetensors, writeSafetensors, type TensorData } from './safetensors.js';

/** What a Model exposes to these formats (lib/model/model.ts implements it). */
export interface AdaptedModel {
  readonly dir: string;
  readonly config: { family: string; raw: Readonly<Record<string, unknown>> };
  loraNames(): string[];
  loraTensor(name: string): Float32Array;
  setLoraTensor(name: string, data: Float32Array): void;
  /** [rows, cols] of a LoRA tensor, by PEFT name. */
  loraShape(name: string): number[];
  loraConfig(): { rank: number; alpha: number; targets: string[] } | null;
  addLoRA(opts: { rank: number; alpha: number; targets: string[] }): string[];
  parameterNames(): string[];
  tensor(name: string): Promise<Float32Array>;
  tensorShape(name: string): number[];
}

const GPT2_CONV1D = /\.(c_attn|c_proj|c_fc)$/;

/** JSON with object keys sorted at every level (PEFT's adapter_config.json is). */
function sortedJson(value: unknown): string {
  const sort = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(sort);
    if (v && typeof v === 'object')
      return Object.fromEntries(
        Object.keys(v)
          .sort()
          .map((k) => [k, sort((v as Record<string, unknown>)[k])]),
      );
    return v;
  };
  return `${JSON.stringify(sort(value), null, 2)}\n`;
}

async function ensureDir(dir: string): Promise<void> {
  if (typeof dir !== 'string' || dir.length === 0) throw invalidArg('a directory path', 'dir', dir);
  try {
    await mkdir(dir, { recursive: true });
  } catch (err) {
    throw ioError(dir, 'could not create the directory', err);
  }
}

/** Writes the model's LoRA adapters in the HF PEFT layout. */
export async function saveAdapter(model: AdaptedModel, dir: string): Promise<void> {
  const lora = model.loraConfig();
  if (!lora) throw new ZofoError('ZOFO_INVALID_STATE', 'saveAdapter: the model has no LoRA adapters; call addLoRA() first');
  await ensureDir(dir);
  const tensors = new Map<string, TensorData>();
  for (const name of model.loraNames()) {
    const data = model.loraTensor(name);
    tensors.set(name, { dtype: 'F32', shape: model.loraShape(name), data });
  }
  await writeSafetensors(join(dir, 'adapter_model.safetensors'), tensors);
  await writeFileAtomic(
    join(dir, 'adapter_config.json'),
    sortedJson({
      alpha_pattern: {},
      auto_mapping: null,
      base_model_name_or_path: model.dir,
      bias: 'none',
      fan_in_fan_out: model.config.family === 'gpt2',
      inference_mode: true,
      init_lora_weights: true,
      layers_pattern: null,
      layers_to_transform: null,
      lora_alpha: lora.alpha,
      lora_dropout: 0.0,
      modules_to_save: null,
      peft_type: 'LORA',
      r: lora.rank,
      rank_pattern: {},
      revision: null,
      target_modules: [...lora.targets].sort(),
      task_type: 'CAUSAL_LM',
    }),
    'could not write',
  );
}

/**
 * adapter_config.json options that change the adapter's math, which zofo does not
 * implement: refused by name (a value equal to PEFT's default is accepted). Options that
 * only affect training or initialisation (lora_dropout, init_lora_weights, loftq_config,
 * inference_mode, …) do not change what a trained adapter computes and are accepted;
 * `fan_in_fan_out` is accepted either way because PEFT itself overrides it to match the
 * layer type (true for GPT-2's Conv1D, false for nn.Linear).
 */
const UNSUPPORTED_PEFT: ReadonlyArray<{ key: string; isDefault: (v: unknown) => boolean; why: string }> = [
  { key: 'use_rslora', isDefault: (v) => v === false, why: 'rank-stabilised scaling alpha/√r' },
  { key: 'use_dora', isDefault: (v) => v === false, why: 'weight-decomposed (DoRA) adapters' },
  { key: 'rank_pattern', isDefault: isEmptyObject, why: 'per-module ranks' },
  { key: 'alpha_pattern', isDefault: isEmptyObject, why: 'per-module alphas' },
  { key: 'layers_to_transform', isDefault: (v) => v === null, why: 'adapters on some layers only' },
  { key: 'layers_pattern', isDefault: (v) => v === null || (Array.isArray(v) && v.length === 0), why: 'adapters on some layers only' },
  { key: 'modules_to_save', isDefault: (v) => v === null || (Array.isArray(v) && v.length === 0), why: 'fully trained extra modules' },
  { key: 'exclude_modules', isDefault: (v) => v === null || (Array.isArray(v) && v.length === 0), why: 'excluded modules' },
  { key: 'lora_bias', isDefault: (v) => v === false, why: 'a bias on lora_B' },
  { key: 'layer_replication', isDefault: (v) => v === null, why: 'replicated layers' },
  { key: 'trainable_token_indices', isDefault: (v) => v === null, why: 'trained token embeddings' },
  { key: 'target_parameters', isDefault: (v) => v === null || (Array.isArray(v) && v.length === 0), why: 'adapters on parameters' },
  { key: 'use_qalora', isDefault: (v) => v === false, why: 'QA-LoRA' },
  { key: 'megatron_config', isDefault: (v) => v === null, why: 'Megatron layers' },
];

function isEmptyObject(v: unknown): boolean {
  return v === null || (typeof v === 'object' && !Array.isArray(v) && Object.keys(v as object).length === 0);
}

/** What an adapter directory holds, read and checked in full before the model is touched. */
interface AdapterFiles {
  rank: number;
  alpha: number;
  targets: string[];
  tensors: Map<string, { shape: number[]; data: Float32Array }>;
}

async function readAdapterConfig(configFile: string): Promise<{ rank: number; alpha: number; targets: string[] }> {
  // A regular file of bounded size: a FIFO, device or directory in its place is refused, never waited on.
  const cfg = parseJsonText(configFile, (await readRegularFile(configFile, 1 << 20)).toString('utf8'));
  if (!isRecord(cfg)) throw badFile(configFile, 'not a JSON object');
  if (cfg.peft_type !== 'LORA') throw new ZofoError('ZOFO_UNSUPPORTED', `${configFile}: peft_type ${JSON.stringify(cfg.peft_type)} is not supported (LORA is)`);
  const rank = cfg.r,
    alpha = cfg.lora_alpha,
    targets = cfg.target_modules;
  if (!Number.isSafeInteger(rank) || (rank as number) < 1 || (rank as number) > MAX_LORA_RANK)
    throw badFile(configFile, `r must be an integer in 1 .. ${MAX_LORA_RANK}, not ${describe(rank)}`);
  if (typeof alpha !== 'number' || !Number.isFinite(alpha) || alpha <= 0 || alpha / (rank as number) > MAX_LORA_SCALING) {
    throw badFile(configFile, `lora_alpha must be a finite number > 0 with lora_alpha / r ≤ ${MAX_LORA_SCALING}, not ${describe(alpha)}`);
  }
  if (!Array.isArray(targets) || targets.length === 0 || !targets.every((x) => typeof x === 'string' && x.length > 0)) {
    throw badFile(configFile, 'target_modules must be a non-empty list of module names (a regular expression string is not supported)');
  }
  if ((cfg.bias ?? 'none') !== 'none') throw new ZofoError('ZOFO_UNSUPPORTED', `${configFile}: bias ${JSON.stringify(cfg.bias)} is not supported (none is)`);
  for (const u of UNSUPPORTED_PEFT) {
    if (u.key in cfg && cfg[u.key] !== undefined && !u.isDefault(cfg[u.key])) {
      throw new ZofoError(
        'ZOFO_UNSUPPORTED',
        `${configFile}: ${u.key} ${JSON.stringify(cfg[u.key])} is not supported (${u.why} change what the adapter computes; zofo implements plain LoRA)`,
      );
    }
  }
  return { rank: rank as number, alpha, targets: targets as string[] };
}

async function readAdapterFiles(dir: string): Promise<AdapterFiles> {
  const config = await readAdapterConfig(join(dir, 'adapter_config.json'));
  const file = await openSafetensors(join(dir, 'adapter_model.safetensors'));
  try {
    const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const [name, info] of file.tensors) {
      const data = await file.read(name);
      const bad = data.findIndex((x) => !Number.isFinite(x));
      if (bad >= 0) throw badFile(file.file, `tensor ${name} holds ${data[bad]} at index ${bad} (an adapter must be finite)`);
      tensors.set(name, { shape: [...info.shape], data });
    }
    return { ...config, tensors };
  } finally {
    file.close();
  }
}

// The in-layer 2-D weights are the engine's linear layers (norms are 1-D, embeddings and
// heads sit outside the layers); GPT-2's Conv1D weights are stored [in, out].
const LAYER_WEIGHT = /(^|\.)(layers|h)\.\d+\..*\.weight$/;

/**
 * The adapters addLoRA would create for `targets` at `rank`: PEFT name → [rows, cols],
 * lora_A [r, in] and lora_B [out, r] for every linear whose module name ends with a target.
 */
function plannedAdapters(model: AdaptedModel, rank: number, targets: readonly string[]): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const name of model.parameterNames()) {
    const shape = model.tensorShape(name);
    if (shape.length !== 2 || !LAYER_WEIGHT.test(name)) continue;
    const module = name.slice(0, -'.weight'.length);
    if (!targets.some((t) => module.endsWith(t))) continue;
    const conv1d = model.config.family === 'gpt2' && GPT2_CONV1D.test(module);
    const [outDim, inDim] = conv1d ? [shape[1], shape[0]] : shape;
    out.set(`base_model.model.${module}.lora_A.weight`, [rank, inDim]);
    out.set(`base_model.model.${module}.lora_B.weight`, [outDim, rank]);
  }
  return out;
}

/**
 * Loads a PEFT LoRA adapter into the model: adds adapters with the adapter's r, alpha and
 * target modules if the model has none, then sets every tensor. Everything is read and
 * checked first (config options zofo does not implement, tensor names, shapes, finite
 * values), so a failed load leaves the model exactly as it was.
 */
export async function loadAdapter(model: AdaptedModel, dir: string): Promise<void> {
  if (typeof dir !== 'string' || dir.length === 0) throw invalidArg('an adapter directory', 'dir', dir);
  const adapter = await readAdapterFiles(dir);
  const { rank, alpha, targets } = adapter;
  const existing = model.loraConfig();
  if (existing && (existing.rank !== rank || existing.alpha !== alpha)) {
    throw new ZofoError(
      'ZOFO_INVALID_STATE',
      `${dir}: the adapter has r=${rank}, alpha=${alpha} but the model's adapters have r=${existing.rank}, alpha=${existing.alpha}`,
    );
  }
  const planned = plannedAdapters(model, rank, targets);
  const configFile = join(dir, 'adapter_config.json'),
    file = join(dir, 'adapter_model.safetensors');
  if (planned.size === 0) throw badFile(configFile, `target_modules ${JSON.stringify(targets)} match no linear layer of this model`);
  const want = existing ? new Map(model.loraNames().map((n) => [n, model.loraShape(n)])) : planned;
  const missing = [...want.keys()].filter((n) => !adapter.tensors.has(n)),
    extra = [...adapter.tensors.keys()].filter((n) => !want.has(n));
  if (missing.length || extra.length) {
    throw badFile(
      file,
      "adapter tensors do not match the model's LoRA modules" +
        (missing.length ? `; missing ${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ', …' : ''}` : '') +
        (extra.length ? `; unexpected ${extra.slice(0, 3).join(', ')}${extra.length > 3 ? ', …' : ''}` : ''),
    );
  }
  for (const [name, shape] of want) {
    const got = adapter.tensors.get(name)!.shape;
    if (got.join(',') !== shape.join(',')) throw badFile(file, `tensor ${name} has shape [${got.join(', ')}]; the model needs [${shape.join(', ')}]`);
  }
  // The config must describe the tensors it ships with (they were checked against the model's adapters).
  if (existing && (planned.size !== want.size || [...want.keys()].some((n) => !planned.has(n)))) {
    throw badFile(configFile, `target_modules ${JSON.stringify(targets)} name other modules than the adapter's tensors are on`);
  }
  if (!existing) {
    model.addLoRA({ rank, alpha, targets });
    const made = model.loraNames();
    if (made.length !== want.size || made.some((n) => want.get(n)?.join(',') !== model.loraShape(n).join(','))) {
      throw new ZofoError('ZOFO_INTERNAL', `loadAdapter ${dir}: the adapters addLoRA made differ from those planned (${made.length} vs ${want.size} tensors)`);
    }
  }
  for (const [name, { data }] of adapter.tensors) model.setLoraTensor(name, data);
}

/**
 * Writes an HF checkpoint directory with the LoRA adapters merged into the base weights
 * (fp32 safetensors + config.json, and the tokenizer files when the source has them).
 */
export async function saveMerged(model: AdaptedModel, dir: string): Promise<void> {
  await ensureDir(dir);
  const lora = model.loraConfig();
  const merged = new Map<string, TensorData>();
  const loraNames = new Set(model.loraNames());
  for (const name of model.parameterNames()) {
    const shape = model.tensorShape(name);
    const data = await model.tensor(name);
    const module = name.replace(/\.weight$/, '');
    const aName = `base_model.model.${module}.lora_A.weight`,
      bName = `base_model.model.${module}.lora_B.weight`;
    if (lora && name.endsWith('.weight') && loraNames.has(aName)) {
      const A = model.loraTensor(aName),
        B = model.loraTensor(bName); // A [r, in], B [out, r]
      const r = lora.rank,
        s = lora.alpha / r;
      const conv1d = model.config.family === 'gpt2' && GPT2_CONV1D.test(module); // stored [in, out]
      const [rows, cols] = shape;
      const out = conv1d ? cols : rows,
        inn = conv1d ? rows : cols;
      for (let o = 0; o < out; o++) {
        for (let i = 0; i < inn; i++) {
          let acc = 0;
          for (let k = 0; k < r; k++) acc += B[o * r + k] * A[k * inn + i];
          data[conv1d ? i * out + o : o * inn + i] += s * acc;
        }
      }
    }
    merged.set(name, { dtype: 'F32', shape, data });
  }
  await writeSafetensors(join(dir, 'model.safetensors'), merged, { format: 'pt' });
  await writeFileAtomic(join(dir, 'config.json'), `${JSON.stringify({ ...model.config.raw, torch_dtype: 'float32' }, null, 2)}\n`, 'could not write');
  for (const f of ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']) {
    if (existsSync(join(model.dir, f))) await copyFile(join(model.dir, f), join(dir, f));
  }
}
