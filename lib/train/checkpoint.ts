/**
 * Crash-safe training checkpoints (docs/algorithm.md §4: the sampler state is part of them).
 * Layout of a checkpoint root `<dir>`:
 *
 *   <dir>/step-000123/          one complete checkpoint per saved step
 *     optimizer.safetensors     optimizer.state().tensors (fp32, names as keys)
 *     trajectory.zlog           the ZO trajectory, when the optimizer has one
 *     adapter/                  the LoRA adapters in the HF PEFT layout, when the model has them
 *     base/                     optional (saveBase): the current base weights as an HF directory
 *     trainer.json              written last: step, sampler, schedule (optimizer json), evals, …,
 *                               and `sha256`: the SHA-256 of every other file in the directory
 *                               (keys: paths relative to it, '/'-separated), checked on load
 *   <dir>/latest                {"step":123,"path":"step-000123"}: the commit point
 *   <dir>/best/                 a checkpoint of the best evaluation so far
 *
 * A step directory is written under a temp name, fsynced and renamed into place; only
 * then does `latest` move (temp file, fsync, rename, directory fsync), and only after
 * that are old step directories pruned. A crash at any point leaves `latest` naming a
 * complete checkpoint; leftovers (`*.tmp-*`, an uncommitted step directory) are ignored.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { copyFile, mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ZofoError } from '../errors.js';
import { badFile, ioError, isCount, isRecord, readJsonFile, syncDirectory, uniqueSuffix, writeFileAtomic } from '../formats/files.js';
import { openCheckpoint, openSafetensors, writeSafetensors, type TensorData } from '../formats/safetensors.js';
import type { Model } from '../model/model.js';
import type { SamplerState } from './sampler.js';
import { readTrajectory, writeTrajectory } from './trajectory.js';
import { u64FromJson, u64ToJson } from '../validate/u64.js';
import type { OptimizerState, TrainableOptimizer, Trajectory } from './types.js';

export const CHECKPOINT_FORMAT = 'zofo-trainer-checkpoint';
/**
 * The trainer checkpoint version this zofo writes; it also reads version 1 (no `sha256`
 * manifest in trainer.json).
 */
export const CHECKPOINT_VERSION = 2;
const SUPPORTED_VERSIONS = [1, CHECKPOINT_VERSION];
const LATEST = 'latest';
const BEST = 'best';
const TRAINER_JSON = 'trainer.json';
const OPTIMIZER_FILE = 'optimizer.safetensors';
const TRAJECTORY_FILE = 'trajectory.zlog';

/** One evaluation of a run: the step after which it ran, the loss and the accuracy. */
export interface EvalRecord {
  /** Trainer step (batches consumed) after which the evaluation ran. */
  step: number;
  loss: number;
  /** Null when the eval set has no classification examples. */
  accuracy: number | null;
}

/** Everything besides the optimizer and the weights that a resumed run needs. */
export interface TrainerCheckpointState {
  /** Batches consumed so far (skipped non-finite steps included). */
  step: number;
  /** Of those, the batches skipped for a non-finite loss (the optimizer took step − skipped steps). Absent in older checkpoints. */
  skipped?: number;
  sampler: SamplerState;
  /** `seed` is a decimal string: it is 64-bit (older checkpoints hold a JSON number, read as its string). */
  samplerOptions: { batchSize: number; seed: string; dropLast: boolean; withReplacement: boolean };
  /** Fingerprint of the training set: a resumed run must see the same examples. */
  train: { n: number; sha256: string };
  totalSteps: number;
  /** Wall time of the run so far, across resumes. */
  elapsedMs: number;
  evals: EvalRecord[];
  best: EvalRecord | null;
  /** Evaluations since the last improvement (early stopping). */
  sinceImprovement: number;
  /** Step directories of this run, oldest first (what keep prunes). */
  history: string[];
}

/**
 * A checkpoint as `loadCheckpoint()` reads it: trainer state, optimizer state and where its adapter and base live.
 */
export interface LoadedCheckpoint {
  /** The checkpoint directory that was read. */
  dir: string;
  trainer: TrainerCheckpointState;
  optimizer: OptimizerState;
  /** The PEFT adapter directory, or null when the model had no adapters. */
  adapterDir: string | null;
  /** The saved base weights (HF directory), or null. */
  baseDir: string | null;
}

export interface SaveCheckpointOptions {
  model: Model;
  optimizer: TrainableOptimizer;
  state: TrainerCheckpointState;
  /** Step checkpoints to keep (default 2). */
  keep?: number;
  /** Also write the base weights under base/ (default false). */
  saveBase?: boolean;
}

interface TrainerJson {
  format: string;
  version: number;
  trainer: TrainerCheckpointState;
  optimizer: Record<string, unknown>;
  files: { tensors: string[]; trajectory: boolean; adapter: boolean; base: boolean };
  /** Version 2 on: path relative to the checkpoint directory → SHA-256 (lowercase hex) of its bytes. */
  sha256?: Record<string, string>;
}

export const stepDirName = (step: number): string => `step-${String(step).padStart(6, '0')}`;

/** fsync a file (directories: syncDirectory, best effort). */
async function syncFile(file: string): Promise<void> {
  const handle = await open(file, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Every file and directory under `dir`, fsynced (children first). */
async function syncTree(dir: string): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) await syncTree(join(dir, entry.name));
    else await syncFile(join(dir, entry.name));
  }
  await syncDirectory(dir);
}

/** SHA-256 of a file's bytes, lowercase hex, read as a stream (a base may be large). */
async function fileSha256(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Every file under `dir` except trainer.json, as '/'-separated relative paths, sorted. */
async function listFiles(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(join(dir, prefix), { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...(await listFiles(dir, rel)));
    else if (rel !== TRAINER_JSON) out.push(rel);
  }
  return out.sort();
}

/** The manifest trainer.json records: the SHA-256 of every other file of the checkpoint. */
async function manifest(dir: string): Promise<Record<string, string>> {
  const sums: Record<string, string> = {};
  for (const rel of await listFiles(dir)) sums[rel] = await fileSha256(join(dir, rel));
  return sums;
}

/**
 * Checks the files of checkpoint `dir` against trainer.json's manifest: every file that
 * resume reads must be listed, and every listed file must hold the bytes it was saved with.
 */
async function verifyManifest(dir: string, file: string, sums: unknown, files: TrainerJson['files']): Promise<void> {
  if (!isRecord(sums)) throw badFile(file, 'sha256 (the checksum of each file of the checkpoint) is missing or not an object');
  const entries = Object.entries(sums);
  for (const [rel, sum] of entries) {
    const parts = rel.split('/');
    if (rel === TRAINER_JSON || parts.some((p) => p === '' || p === '.' || p === '..' || p.includes('\\')))
      throw badFile(file, `sha256 names ${JSON.stringify(rel)}, not a file of the checkpoint`);
    if (typeof sum !== 'string' || !/^[0-9a-f]{64}$/.test(sum))
      throw badFile(file, `sha256[${JSON.stringify(rel)}] must be 64 lowercase hex digits, not ${JSON.stringify(sum)}`);
  }
  const needed = [OPTIMIZER_FILE];
  if (files.trajectory) needed.push(TRAJECTORY_FILE);
  if (files.adapter) needed.push('adapter/adapter_config.json', 'adapter/adapter_model.safetensors');
  if (files.base) needed.push('base/model.safetensors', 'base/config.json');
  const missing = needed.find((rel) => !Object.hasOwn(sums, rel));
  if (missing) throw badFile(file, `sha256 has no checksum for ${missing}, which the checkpoint holds`);
  for (const [rel, sum] of entries) {
    const path = join(dir, ...rel.split('/'));
    let actual: string;
    try {
      actual = await fileSha256(path);
    } catch (err) {
      if ((err as { code?: string }).code === 'ENOENT') throw badFile(path, `missing (${TRAINER_JSON} records its checksum)`);
      throw ioError(path, 'could not read', err);
    }
    if (actual !== sum)
      throw badFile(path, `SHA-256 ${actual} differs from the ${sum} recorded in ${file} (the file was changed or damaged since it was saved)`);
  }
}

async function writeDurable(file: string, text: string): Promise<void> {
  const handle = await open(file, 'wx');
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** The base weights as an HF directory (not saveMerged: that would fold the adapters in). */
async function writeBase(model: Model, dir: string): Promise<void> {
  await mkdir(dir);
  const tensors = new Map<string, TensorData>();
  for (const name of model.parameterNames()) tensors.set(name, { dtype: 'F32', shape: model.tensorShape(name), data: await model.tensor(name) });
  await writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  // The weights are fp32 now, whatever the source stored.
  await writeDurable(join(dir, 'config.json'), `${JSON.stringify({ ...model.config.raw, torch_dtype: 'float32' }, null, 2)}\n`);
  for (const f of ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']) {
    if (existsSync(join(model.dir, f))) await copyFile(join(model.dir, f), join(dir, f));
  }
}

/** Writes one complete checkpoint into the (new, empty) directory `dir`; trainer.json last. */
async function writeContents(dir: string, opts: SaveCheckpointOptions): Promise<void> {
  const { model, optimizer } = opts;
  const opt = optimizer.state();
  const tensors = new Map<string, TensorData>();
  for (const [name, data] of opt.tensors) {
    if (!(data instanceof Float32Array)) throw new ZofoError('ZOFO_INVALID_STATE', `optimizer.state(): tensor ${JSON.stringify(name)} is not a Float32Array`);
    tensors.set(name, { dtype: 'F32', shape: [data.length], data });
  }
  await writeSafetensors(join(dir, OPTIMIZER_FILE), tensors);
  if (opt.trajectory) await writeTrajectory(join(dir, TRAJECTORY_FILE), opt.trajectory);
  const adapter = model.loraNames().length > 0;
  if (adapter) await model.saveAdapter(join(dir, 'adapter'));
  // Gradient updates of the base (full fine-tuning) have no seed log: save the base whole.
  const saveBase = (opts.saveBase ?? false) || opt.baseNeedsSaving === true;
  if (saveBase) await writeBase(model, join(dir, 'base'));
  const json: TrainerJson = {
    format: CHECKPOINT_FORMAT,
    version: CHECKPOINT_VERSION,
    trainer: opts.state,
    optimizer: opt.json,
    files: { tensors: [...tensors.keys()], trajectory: opt.trajectory !== null, adapter, base: saveBase },
    sha256: await manifest(dir),
  };
  await writeDurable(join(dir, TRAINER_JSON), `${JSON.stringify(json, null, 2)}\n`);
  await syncTree(dir);
}

/** Writes `name` under `root` via a temp directory; returns the temp path (caller renames). */
async function writeTempDir(root: string, name: string, opts: SaveCheckpointOptions): Promise<string> {
  const tmp = join(root, `${name}.tmp-${uniqueSuffix()}`);
  try {
    await mkdir(tmp, { recursive: true });
    await writeContents(tmp, opts);
    return tmp;
  } catch (err) {
    await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    throw ioError(tmp, 'could not write the checkpoint', err);
  }
}

async function readLatest(root: string): Promise<{ step: number; path: string } | null> {
  const file = join(root, LATEST);
  const value = await readJsonFile(file, { maxBytes: 1 << 16, optional: true });
  if (value === undefined) return null;
  const v = value as { step?: unknown; path?: unknown };
  if (
    typeof value !== 'object' ||
    value === null ||
    !Number.isSafeInteger(v.step) ||
    typeof v.path !== 'string' ||
    v.path.length === 0 ||
    v.path !== basename(v.path) ||
    v.path.startsWith('.')
  ) {
    throw badFile(file, 'expected {"step": <integer>, "path": <a checkpoint directory name>}');
  }
  return { step: v.step as number, path: v.path };
}

/**
 * Saves a step checkpoint under `root` and commits it as `latest`; then deletes this
 * run's step checkpoints beyond `keep`. Returns the checkpoint's directory and the run's
 * new history (also stored in it).
 */
export async function saveCheckpoint(root: string, opts: SaveCheckpointOptions): Promise<{ dir: string; history: string[] }> {
  const keep = opts.keep ?? 2;
  await mkdir(root, { recursive: true }).catch((err) => {
    throw ioError(root, 'could not create the directory', err);
  });
  const latest = await readLatest(root).catch(() => null);
  // The committed checkpoint is never replaced in place (a crash would leave latest dangling):
  // a clash with it (a run resumed from an older checkpoint) gets a unique name instead.
  let name = stepDirName(opts.state.step);
  if (latest?.path === name) name = `${name}-${randomBytes(4).toString('hex')}`;
  const history = [...opts.state.history.filter((h) => h !== name), name].slice(-keep);
  const dropped = opts.state.history.filter((h) => !history.includes(h));
  const tmp = await writeTempDir(root, name, { ...opts, state: { ...opts.state, history } });
  const target = join(root, name);
  let old: string | null = null;
  try {
    // An uncommitted directory of that name (crash leftover, abandoned run) is replaced.
    if (existsSync(target)) {
      old = join(root, `${name}.old-${uniqueSuffix()}`);
      await rename(target, old);
    }
    await rename(tmp, target);
    await syncDirectory(root);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    throw ioError(target, 'could not commit the checkpoint', err);
  }
  await writeFileAtomic(join(root, LATEST), `${JSON.stringify({ step: opts.state.step, path: name })}\n`, 'could not write');
  for (const d of [...dropped, ...(old ? [basename(old)] : [])]) await rm(join(root, d), { recursive: true, force: true }).catch(() => undefined);
  return { dir: target, history };
}

/**
 * Replaces `<root>/best` with a checkpoint of the current state. rename() cannot replace
 * a non-empty directory, so: new one under a temp name, old one renamed away, new one
 * renamed in, old one deleted. A crash in between leaves `best.old-*` (see loadCheckpoint).
 */
export async function saveBestCheckpoint(root: string, opts: SaveCheckpointOptions): Promise<string> {
  await mkdir(root, { recursive: true }).catch((err) => {
    throw ioError(root, 'could not create the directory', err);
  });
  const tmp = await writeTempDir(root, BEST, opts);
  const target = join(root, BEST);
  const old = join(root, `${BEST}.old-${uniqueSuffix()}`);
  try {
    if (existsSync(target)) await rename(target, old);
    await rename(tmp, target);
    await syncDirectory(root);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    throw ioError(target, 'could not commit the best checkpoint', err);
  }
  await rm(old, { recursive: true, force: true }).catch(() => undefined);
  return target;
}

/** `<root>/best` missing after a crash between its two renames: the renamed-away copy is complete. */
async function recoverBest(path: string): Promise<string | null> {
  const root = dirname(path);
  const names = await readdir(root).catch(() => [] as string[]);
  const candidates = names.filter((n) => n.startsWith(`${BEST}.old-`) && existsSync(join(root, n, TRAINER_JSON)));
  if (candidates.length === 0) return null;
  const withTime = await Promise.all(candidates.map(async (n) => ({ n, t: (await stat(join(root, n))).mtimeMs })));
  withTime.sort((a, b) => b.t - a.t);
  return join(root, withTime[0].n);
}

const isNum = (x: unknown): boolean => typeof x === 'number' || x === null; // JSON writes NaN as null

function isEval(x: unknown): boolean {
  const e = x as EvalRecord;
  return typeof x === 'object' && x !== null && isCount(e.step) && isNum(e.loss) && (e.accuracy === null || typeof e.accuracy === 'number');
}

/**
 * Checks the trainer state's fields and that they agree with each other (the sampler's
 * position with the batch size and the step count); normalizes the sampler seed to its
 * decimal string.
 */
function checkTrainer(file: string, t: TrainerCheckpointState): void {
  const fail = (field: string): never => {
    throw badFile(file, `trainer.${field} is missing or malformed`);
  };
  const disagree = (problem: string): never => {
    throw badFile(file, `the trainer state disagrees with itself: ${problem}`);
  };
  if (typeof t !== 'object' || t === null) fail('');
  if (!isCount(t.step)) fail('step');
  if (t.skipped !== undefined && (!isCount(t.skipped) || t.skipped > t.step)) fail('skipped');
  if (typeof t.sampler !== 'object' || t.sampler === null || !isCount(t.sampler.epoch) || !isCount(t.sampler.position)) fail('sampler');
  const so = t.samplerOptions;
  if (
    typeof so !== 'object' ||
    so === null ||
    !isCount(so.batchSize) ||
    so.batchSize < 1 ||
    typeof so.dropLast !== 'boolean' ||
    typeof so.withReplacement !== 'boolean'
  )
    fail('samplerOptions');
  const seed = u64FromJson(so.seed);
  if (seed === undefined) fail('samplerOptions.seed');
  so.seed = u64ToJson(seed!);
  if (typeof t.train !== 'object' || t.train === null || !isCount(t.train.n) || t.train.n < 1 || typeof t.train.sha256 !== 'string') fail('train');
  if (!isCount(t.totalSteps) || t.totalSteps < 1) fail('totalSteps');
  if (typeof t.elapsedMs !== 'number' || !(t.elapsedMs >= 0)) fail('elapsedMs');
  if (!Array.isArray(t.evals) || !t.evals.every(isEval)) fail('evals');
  if (t.best !== null && !isEval(t.best)) fail('best');
  if (!isCount(t.sinceImprovement)) fail('sinceImprovement');
  if (!Array.isArray(t.history) || !t.history.every((h) => typeof h === 'string')) fail('history');

  const { n } = t.train,
    { batchSize, dropLast } = so,
    { epoch, position } = t.sampler;
  if (dropLast && batchSize > n) disagree(`batch size ${batchSize} with dropLast exceeds the ${n} training examples`);
  if (position > n) disagree(`sampler position ${position} is past the ${n} training examples`);
  // The sampler moves a whole batch at a time; only an epoch's last, partial batch ends elsewhere (at n).
  if (position % batchSize !== 0 && position !== n)
    disagree(`sampler position ${position} is not a multiple of the batch size ${batchSize} (nor the end of the epoch, ${n})`);
  const perEpoch = dropLast ? Math.floor(n / batchSize) : Math.ceil(n / batchSize);
  const batches = epoch * perEpoch + Math.ceil(position / batchSize);
  if (batches !== t.step)
    disagree(`step ${t.step}, but the sampler (epoch ${epoch}, position ${position}, ${perEpoch} batches per epoch) has drawn ${batches} batches`);
  const late = t.evals.find((e) => e.step > t.step);
  if (late) disagree(`an evaluation at step ${late.step} is later than the state's step ${t.step}`);
}

/** `step-000123` (or `step-000123-<hex>`, a name made unique) → 123; null for other names (best/). */
function stepOfDirName(name: string): number | null {
  const m = /^step-(\d+)(-[0-9a-f]{8})?$/.exec(name);
  return m ? Number(m[1]) : null;
}

/**
 * The optimizer state and the files beside it must agree with the trainer state. Only
 * what any TrainableOptimizer's state has is checked here; the optimizer checks the rest
 * of its own state (stateProblem) when the checkpoint is restored into it.
 */
function checkParts(dir: string, t: TrainerCheckpointState, optimizer: OptimizerState): void {
  const disagree = (what: string): never => {
    throw badFile(dir, `the checkpoint's parts disagree: ${what}`);
  };
  const named = stepOfDirName(basename(dir));
  if (named !== null && named !== t.step) disagree(`the directory is named for step ${named} but trainer.step is ${t.step}`);
  for (const [name, data] of optimizer.tensors) {
    const bad = data.findIndex((x) => !Number.isFinite(x));
    if (bad >= 0) throw badFile(join(dir, OPTIMIZER_FILE), `tensor ${JSON.stringify(name)} holds ${data[bad]} at index ${bad} (optimizer moments are finite)`);
  }
  // The optimizer's own step count, where its state records one (HybridOptimizer's does).
  const o = optimizer.json as { step?: unknown; totalSteps?: unknown };
  const optimizerSteps = typeof o.step === 'number' ? o.step : null;
  const taken = t.skipped !== undefined ? t.step - t.skipped : null;
  if (optimizerSteps !== null && (taken !== null ? optimizerSteps !== taken : optimizerSteps > t.step)) {
    disagree(
      `trainer.step is ${t.step}${t.skipped !== undefined ? ` with ${t.skipped} skipped batches` : ''} but the optimizer has taken ${optimizerSteps} steps`,
    );
  }
  if (typeof o.totalSteps === 'number' && o.totalSteps !== t.totalSteps)
    disagree(`trainer.totalSteps is ${t.totalSteps} but the optimizer's is ${o.totalSteps}`);
  const last = optimizer.trajectory?.records.at(-1);
  const steps = optimizerSteps ?? taken ?? t.step;
  if (last && last.step >= steps)
    disagree(`the trajectory's last step is ${last.step} but the run has taken ${steps} optimizer steps (0-based indices up to ${steps - 1})`);
}

/**
 * Reads a checkpoint: `path` is a checkpoint root (its `latest` is followed) or one
 * checkpoint directory (a step-… directory or best/). Anything missing or malformed is a
 * ZOFO_BAD_FILE naming the file.
 */
export async function loadCheckpoint(path: string): Promise<LoadedCheckpoint> {
  if (typeof path !== 'string' || path.length === 0)
    throw new ZofoError('ZOFO_INVALID_ARG', `Expected a checkpoint directory for path but received ${JSON.stringify(path)}`);
  let dir = path;
  const latest = await readLatest(path);
  if (latest) {
    dir = join(path, latest.path);
    if (!existsSync(join(dir, TRAINER_JSON)))
      throw badFile(join(path, LATEST), `names ${latest.path}, which is not a complete checkpoint (no ${TRAINER_JSON})`);
  } else if (!existsSync(join(path, TRAINER_JSON))) {
    const recovered = basename(path) === BEST && !existsSync(path) ? await recoverBest(path) : null;
    if (!recovered) throw badFile(path, `not a checkpoint: neither ${LATEST} nor ${TRAINER_JSON} is there`);
    dir = recovered;
  }
  const file = join(dir, TRAINER_JSON);
  const json = (await readJsonFile(file)) as TrainerJson;
  if (typeof json !== 'object' || json === null || json.format !== CHECKPOINT_FORMAT)
    throw badFile(file, `not a zofo trainer checkpoint (format ${JSON.stringify((json as { format?: unknown })?.format)})`);
  if (!SUPPORTED_VERSIONS.includes(json.version))
    throw badFile(file, `checkpoint version ${JSON.stringify(json.version)} is not supported (this zofo reads ${SUPPORTED_VERSIONS.join(', ')})`);
  checkTrainer(file, json.trainer);
  if (!isRecord(json.optimizer)) throw badFile(file, 'optimizer is missing or not an object');
  const files = json.files;
  if (
    typeof files !== 'object' ||
    files === null ||
    !Array.isArray(files.tensors) ||
    typeof files.trajectory !== 'boolean' ||
    typeof files.adapter !== 'boolean' ||
    typeof files.base !== 'boolean'
  )
    throw badFile(file, 'files is missing or malformed');
  // Version 1 checkpoints have no manifest; a version 2 one must, and any present is checked.
  if (json.version >= 2 || json.sha256 !== undefined) await verifyManifest(dir, file, json.sha256, files);

  const tensorFile = join(dir, OPTIMIZER_FILE);
  if (!existsSync(tensorFile)) throw badFile(tensorFile, 'missing');
  const tensors = new Map<string, Float32Array>();
  const st = await openSafetensors(tensorFile);
  try {
    const have = [...st.tensors.keys()].sort(),
      want = [...files.tensors].sort();
    if (have.join('\n') !== want.join('\n')) throw badFile(tensorFile, `holds tensors [${have.join(', ')}] but ${TRAINER_JSON} lists [${want.join(', ')}]`);
    for (const name of have) {
      if (st.tensors.get(name)!.dtype !== 'F32') throw badFile(tensorFile, `tensor ${JSON.stringify(name)} is not F32`);
      tensors.set(name, await st.read(name));
    }
  } finally {
    st.close();
  }

  let trajectory: Trajectory | null = null;
  if (files.trajectory) {
    const tf = join(dir, TRAJECTORY_FILE);
    if (!existsSync(tf)) throw badFile(tf, 'missing');
    const { tornTail, ...rest } = await readTrajectory(tf);
    // A checkpoint's log was fsynced whole: a torn tail means the file is damaged.
    if (tornTail) throw badFile(tf, 'the trajectory log is truncated');
    trajectory = rest;
  }
  const adapterDir = files.adapter ? join(dir, 'adapter') : null;
  if (adapterDir) {
    for (const f of ['adapter_config.json', 'adapter_model.safetensors']) if (!existsSync(join(adapterDir, f))) throw badFile(join(adapterDir, f), 'missing');
  }
  const baseDir = files.base ? join(dir, 'base') : null;
  if (baseDir && !existsSync(join(baseDir, 'model.safetensors'))) throw badFile(join(baseDir, 'model.safetensors'), 'missing');
  const optimizer: OptimizerState = { json: json.optimizer, tensors, trajectory };
  checkParts(dir, json.trainer, optimizer);
  if (latest && latest.step !== json.trainer.step) throw badFile(join(path, LATEST), `names step ${latest.step}, but ${file} is at step ${json.trainer.step}`);
  return { dir, trainer: json.trainer, optimizer, adapterDir, baseDir };
}

/**
 * Puts a loaded checkpoint's adapters into the model and its state into the optimizer.
 * The base weights come from the checkpoint's base/ when it has one, else the optimizer
 * replays the trajectory onto the base the model holds.
 */
export async function restoreCheckpoint(ckpt: LoadedCheckpoint, model: Model, optimizer: TrainableOptimizer): Promise<void> {
  // Everything is checked before the model or the optimizer changes.
  const problem = optimizer.stateProblem?.(ckpt.optimizer);
  if (problem) throw badFile(join(ckpt.dir, TRAINER_JSON), `optimizer state: ${problem}`);
  if (ckpt.adapterDir) await model.loadAdapter(ckpt.adapterDir);
  else if (model.loraNames().length > 0)
    throw new ZofoError('ZOFO_INVALID_STATE', `${ckpt.dir}: the checkpoint has no adapter but the model has LoRA adapters`);
  if (ckpt.baseDir) {
    const base = await openCheckpoint(ckpt.baseDir);
    try {
      for (const name of model.parameterNames()) {
        if (!base.tensors.has(name)) throw badFile(join(ckpt.baseDir, 'model.safetensors'), `has no tensor ${name}`);
        const shape = base.tensors.get(name)!.shape;
        if (shape.join(',') !== model.tensorShape(name).join(','))
          throw badFile(
            join(ckpt.baseDir, 'model.safetensors'),
            `tensor ${name} has shape [${shape.join(', ')}], the model's is [${model.tensorShape(name).join(', ')}]`,
          );
        model.native.setTensor(name, await base.read(name));
      }
    } finally {
      base.close();
    }
    await optimizer.loadState(ckpt.optimizer, { replay: false });
  } else {
    await optimizer.loadState(ckpt.optimizer);
  }
}
