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
import { copyFile, mkdir, readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { invalidArg, ZofoError } from '../errors.js';
import { badFile, ioError, writeFileAtomic } from './files.js';
import { openSafetensors, writeSafetensors, type TensorData } from './safetensors.js';

/** What a Model exposes to these formats (lib/model/model.ts implements it). */
export interface AdaptedModel {
  readonly dir: string;
  readonly config: { family: string; raw: Readonly<Record<string, unknown>> };
  loraNames(): string[];
  loraTensor(name: string): Float32Array;
  setLoraTensor(name: string, data: Float32Array): void;
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
    if (v && typeof v === 'object') return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sort((v as Record<string, unknown>)[k])]));
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
    const shape = name.endsWith('.lora_A.weight') ? [lora.rank, data.length / lora.rank] : [data.length / lora.rank, lora.rank];
    tensors.set(name, { dtype: 'F32', shape, data });
  }
  await writeSafetensors(join(dir, 'adapter_model.safetensors'), tensors);
  await writeFileAtomic(join(dir, 'adapter_config.json'), sortedJson({
    alpha_pattern: {}, auto_mapping: null, base_model_name_or_path: model.dir, bias: 'none',
    fan_in_fan_out: model.config.family === 'gpt2', inference_mode: true, init_lora_weights: true,
    layers_pattern: null, layers_to_transform: null, lora_alpha: lora.alpha, lora_dropout: 0.0,
    modules_to_save: null, peft_type: 'LORA', r: lora.rank, rank_pattern: {}, revision: null,
    target_modules: [...lora.targets].sort(), task_type: 'CAUSAL_LM',
  }), 'could not write');
}

/**
 * Loads a PEFT LoRA adapter into the model: adds adapters with the adapter's r, alpha and
 * target modules if the model has none, then sets every tensor. The tensor names must
 * match the model's adapters exactly (a clear error names what is missing or extra).
 */
export async function loadAdapter(model: AdaptedModel, dir: string): Promise<void> {
  const configFile = join(dir, 'adapter_config.json');
  let cfg: Record<string, unknown>;
  try {
    cfg = JSON.parse(await readFile(configFile, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    const code = (err as { code?: string }).code === 'ENOENT' ? 'ZOFO_IO' : 'ZOFO_BAD_FILE';
    throw new ZofoError(code, `${configFile}: ${code === 'ZOFO_IO' ? 'not found' : `not valid JSON (${(err as Error).message})`}`, { cause: err });
  }
  if (cfg.peft_type !== 'LORA') throw new ZofoError('ZOFO_UNSUPPORTED', `${configFile}: peft_type ${JSON.stringify(cfg.peft_type)} is not supported (LORA is)`);
  const rank = cfg.r, alpha = cfg.lora_alpha, targets = cfg.target_modules;
  if (!Number.isInteger(rank) || (rank as number) < 1) throw badFile(configFile, 'r must be a positive integer');
  if (typeof alpha !== 'number') throw badFile(configFile, 'lora_alpha must be a number');
  if (!Array.isArray(targets) || !targets.every((x) => typeof x === 'string')) throw badFile(configFile, 'target_modules must be a list of module names');
  if ((cfg.bias ?? 'none') !== 'none') throw new ZofoError('ZOFO_UNSUPPORTED', `${configFile}: bias ${JSON.stringify(cfg.bias)} is not supported (none is)`);
  const existing = model.loraConfig();
  if (!existing) model.addLoRA({ rank: rank as number, alpha, targets: targets as string[] });
  else if (existing.rank !== rank || existing.alpha !== alpha) {
    throw new ZofoError('ZOFO_INVALID_STATE', `${dir}: the adapter has r=${rank}, alpha=${alpha} but the model's adapters have r=${existing.rank}, alpha=${existing.alpha}`);
  }
  const file = await openSafetensors(join(dir, 'adapter_model.safetensors'));
  try {
    const want = new Set(model.loraNames());
    const have = new Set(file.tensors.keys());
    const missing = [...want].filter((n) => !have.has(n)), extra = [...have].filter((n) => !want.has(n));
    if (missing.length || extra.length) {
      throw badFile(file.file, "adapter tensors do not match the model's LoRA modules" +
        (missing.length ? `; missing ${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ', …' : ''}` : '') +
        (extra.length ? `; unexpected ${extra.slice(0, 3).join(', ')}${extra.length > 3 ? ', …' : ''}` : ''));
    }
    for (const name of want) model.setLoraTensor(name, await file.read(name));
  } finally {
    file.close();
  }
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
    const aName = `base_model.model.${module}.lora_A.weight`, bName = `base_model.model.${module}.lora_B.weight`;
    if (lora && name.endsWith('.weight') && loraNames.has(aName)) {
      const A = model.loraTensor(aName), B = model.loraTensor(bName); // A [r, in], B [out, r]
      const r = lora.rank, s = lora.alpha / r;
      const conv1d = model.config.family === 'gpt2' && GPT2_CONV1D.test(module); // stored [in, out]
      const [rows, cols] = shape;
      const out = conv1d ? cols : rows, inn = conv1d ? rows : cols;
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
