/**
 * The CLI's commands as functions (lib/cli/main.ts parses arguments into them):
 * train, eval, replay, merge. Each takes a plain options object whose fields mirror the
 * TypeScript API, so a JSON config file (--config) and flags fill the same shape.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { invalidArg, ZofoError } from '../errors.js';
import { loadTask, sampleIndices, TASK_NAMES, type TaskName } from '../data/tasks.js';
import { loadModel, type Example, type LoadModelOptions, type LoraOptions, type Model } from '../model/model.js';
import { HybridOptimizer, applyTrajectory } from '../train/optimizer.js';
import { replay } from '../train/replay.js';
import { evaluate, Trainer, type TrainerOptions } from '../train/trainer.js';
import { readTrajectory } from '../train/trajectory.js';
import type { FoOptions, HybridOptimizerOptions, ParallelOptions, ZoOptions } from '../train/types.js';
import { init as initCommunicator } from '../distributed/communicator.js';
import { detectLaunch } from '../distributed/environment.js';
import { writeChartFiles } from '../chart.js';
import { createProgress } from './progress.js';

export type Mode = 'hybrid' | 'zo' | 'lora' | 'full';
export const MODES: readonly Mode[] = ['hybrid', 'zo', 'lora', 'full'];

export interface TrainConfig {
  model: string;
  /** 'cpu' (default), 'cuda', 'cuda:N' or 'auto' (see loadModel). */
  device?: LoadModelOptions['device'];
  dtype?: 'f32' | 'bf16' | 'f16';
  /** Matmul operand precision (see loadModel; default bf16 on CUDA, fp32 on the CPU). */
  compute?: LoadModelOptions['compute'];
  task: TaskName;
  train: string;
  dev?: string;
  /** Sample this many training / dev examples with the seed (MeZO-style k-shot; default: all). */
  trainSamples?: number;
  devSamples?: number;
  mode?: Mode;
  steps?: number;
  epochs?: number;
  batchSize?: number;
  seed?: number;
  zo?: Partial<ZoOptions>;
  fo?: Partial<FoOptions>;
  lora?: LoraOptions;
  evalEvery?: number;
  checkpointEvery?: number;
  keep?: number;
  out: string;
  resume?: boolean;
  /** Distributed mode (docs/distributed.md); default 'data' when started by mpirun/srun with more than one rank. */
  parallel?: 'data' | 'perturbation';
}

/** Defaults: MeZO's presets (lr 1e-6 for ZO, 1e-4 for LoRA), batch 16; μ: HybridOptimizer's, by the model's compute. */
export function optimizerOptions(mode: Mode, c: Pick<TrainConfig, 'zo' | 'fo' | 'seed'>): HybridOptimizerOptions {
  const zo: ZoOptions = { lr: 1e-6, ...c.zo };
  const fo: FoOptions = { lr: 1e-4, ...c.fo };
  switch (mode) {
    case 'hybrid': return { zo, fo, seed: c.seed ?? 0 };
    case 'zo': return { zo, seed: c.seed ?? 0 };
    case 'lora': return { fo, seed: c.seed ?? 0 };
    case 'full': return { fo: { ...fo, params: 'all' }, seed: c.seed ?? 0 };
  }
}

/** Reads a JSON config file (fields as TrainConfig); flags given on the command line override it. */
export async function readConfig(file: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ZofoError('ZOFO_IO', `${file}: cannot read the config file: ${(err as Error).message}`);
  }
  try {
    const json = JSON.parse(text) as unknown;
    if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error('expected a JSON object');
    return json as Record<string, unknown>;
  } catch (err) {
    throw new ZofoError('ZOFO_BAD_CONFIG', `${file}: ${(err as Error).message}`);
  }
}

async function modelWithTokenizer(dir: string, dtype?: TrainConfig['dtype'], device?: TrainConfig['device'], compute?: TrainConfig['compute']): Promise<Model> {
  const model = await loadModel(dir, { dtype, device, compute });
  if (!model.tokenizer) {
    model.dispose();
    throw new ZofoError('ZOFO_BAD_FILE', `${dir}: no tokenizer.json; the CLI tokenizes task files with the model's tokenizer`);
  }
  return model;
}

// k examples sampled MeZO's way (numpy permutation under the seed); every example without k.
async function taskExamples(model: Model, task: TaskName, file: string, k?: number, seed = 0): Promise<Example[]> {
  if (!TASK_NAMES.includes(task)) throw invalidArg(TASK_NAMES.map((n) => `'${n}'`).join(', '), 'task', task);
  const pick = k === undefined ? undefined : (n: number) => sampleIndices(n, Math.min(k, n), seed);
  const t = await loadTask(task, file, model.tokenizer!, { pick });
  if (t.examples.length === 0) throw new ZofoError('ZOFO_BAD_FILE', `${file}: no examples`);
  return t.examples;
}

export interface TrainSummary {
  /** This process's rank (distributed runs; only rank 0 writes files and reports). */
  rank: number;
  reason: string;
  steps: number;
  best?: { step: number; loss: number; accuracy: number | null };
  final?: { loss: number; accuracy: number | null };
  files: string[];
}

// Started by mpirun / srun with several ranks, or --parallel: the MPI communicator and the mode.
async function parallelOptions(c: TrainConfig): Promise<ParallelOptions | null> {
  const launch = detectLaunch();
  if (c.parallel === undefined && (launch === null || launch.size === 1)) return null;
  const kind = c.parallel ?? 'data';
  if (kind !== 'data' && kind !== 'perturbation') throw invalidArg("'data' or 'perturbation'", 'parallel', kind);
  return { kind, comm: await initCommunicator() };
}

const silentProgress = { update() {}, log() {}, stop() {} };

/** zofo train: fine-tunes, writing checkpoints, the adapter, the trajectory and the curves under `out` (rank 0 only when distributed). */
export async function train(c: TrainConfig, log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Promise<TrainSummary> {
  const mode = c.mode ?? 'hybrid';
  if (!MODES.includes(mode)) throw invalidArg(MODES.map((m) => `'${m}'`).join(', '), 'mode', mode);
  if (c.steps === undefined && c.epochs === undefined) c = { ...c, epochs: 1 };
  const parallel = await parallelOptions(c);
  const rank = parallel?.comm.rank ?? 0;
  if (rank !== 0) log = () => {};
  const model = await modelWithTokenizer(c.model, c.dtype, c.device, c.compute);
  const ac = new AbortController();
  const onSigint = () => {
    if (ac.signal.aborted) return;
    log('\nstopping: finishing or rolling back the current step, then saving a checkpoint (Ctrl-C again to kill)');
    ac.abort();
    process.once('SIGINT', () => process.exit(130));
  };
  process.once('SIGINT', onSigint);
  try {
    const trainSet = await taskExamples(model, c.task, c.train, c.trainSamples, c.seed);
    const devSet = c.dev ? await taskExamples(model, c.task, c.dev, c.devSamples, c.seed) : undefined;
    if (mode === 'hybrid' || mode === 'lora') model.addLoRA(c.lora ?? {});
    const opt = new HybridOptimizer(model, { ...optimizerOptions(mode, c), parallel });
    const batchSize = c.batchSize ?? 16;
    const options: TrainerOptions = {
      batchSize, seed: c.seed ?? 0, signal: ac.signal,
      ...(c.steps !== undefined ? { steps: c.steps } : { epochs: c.epochs }),
      checkpoint: { dir: join(c.out, 'checkpoints'), every: c.checkpointEvery, keep: c.keep, best: devSet !== undefined },
      ...(devSet ? { eval: { data: devSet, every: c.evalEvery, metric: devSet.some((e) => 'candidates' in e) ? 'accuracy' as const : 'loss' as const } } : {}),
    };
    const trainer = new Trainer(model, opt, options);
    const total = c.steps ?? (c.epochs as number) * Math.ceil(trainSet.length / batchSize);
    const progress = rank === 0 ? createProgress(`zofo train (${mode}${parallel ? `, ${parallel.kind}-parallel on ${parallel.comm.size} ranks` : ''})`, total) : silentProgress;
    const rows: Array<Record<string, number | null>> = [];
    const started = performance.now();
    let done: { reason: string; step: number; best?: TrainSummary['best'] } = { reason: 'completed', step: 0 };
    for await (const ev of trainer.fit(trainSet, c.resume ? { resumeFrom: join(c.out, 'checkpoints') } : {})) {
      if (ev.type === 'step') {
        progress.update(ev);
        rows.push({ step: ev.step, seconds: (performance.now() - started) / 1000, loss: ev.loss, lrX: ev.lrX, lrY: ev.lrY, devLoss: null, devAccuracy: null });
      } else if (ev.type === 'eval') {
        progress.log(`eval @ step ${ev.step}: dev loss ${ev.loss.toFixed(4)}${ev.accuracy === null ? '' : `, accuracy ${(100 * ev.accuracy).toFixed(1)}%`}${ev.best ? ' (best)' : ''}`);
        const row = [...rows].reverse().find((r) => r.step === ev.step);
        if (row) Object.assign(row, { devLoss: ev.loss, devAccuracy: ev.accuracy });
        else rows.push({ step: ev.step, seconds: (performance.now() - started) / 1000, loss: null, lrX: null, lrY: null, devLoss: ev.loss, devAccuracy: ev.accuracy });
      } else if (ev.type === 'skip') {
        progress.log(`step ${ev.step} skipped: ${ev.message}`);
      } else if (ev.type === 'done') {
        done = ev;
      }
    }
    progress.stop();
    if (rank !== 0) return { rank, reason: done.reason, steps: done.step, files: [] };
    const files: string[] = [join(c.out, 'checkpoints')];
    await mkdir(c.out, { recursive: true });
    if (model.loraNames().length > 0) {
      await model.saveAdapter(join(c.out, 'adapter'));
      files.push(join(c.out, 'adapter'));
    }
    if (opt.zo && opt.stepCount > 0) {
      await opt.saveTrajectory(join(c.out, 'trajectory.zlog'));
      files.push(join(c.out, 'trajectory.zlog'));
    }
    const curves = rowsToChart(`zofo train: ${c.task}, ${mode}`, { [mode]: rows });
    await writeChartFiles(c.out, 'curves', curves, rows);
    files.push(join(c.out, 'curves.svg'), join(c.out, 'curves.csv'));
    const final = devSet ? await evaluate(model, devSet, batchSize) : undefined;
    return { rank, reason: done.reason, steps: done.step, best: done.best, final, files };
  } finally {
    process.removeListener('SIGINT', onSigint);
    model.dispose();
  }
}

/** Loss and dev accuracy against step and wall time, one series per mode. */
export function rowsToChart(title: string, byMode: Record<string, Array<Record<string, number | null>>>) {
  const series = (x: string, y: string) => Object.entries(byMode).map(([name, rows]) => ({
    name, points: rows.filter((r) => r[y] !== null && r[y] !== undefined).map((r) => [r[x] as number, r[y] as number] as [number, number]),
  }));
  return {
    title,
    panels: [
      { title: 'training loss', xLabel: 'step', yLabel: 'loss', series: series('step', 'loss') },
      { title: 'dev accuracy', xLabel: 'step', yLabel: 'accuracy', series: series('step', 'devAccuracy') },
      { title: 'dev accuracy vs time', xLabel: 'seconds', yLabel: 'accuracy', series: series('seconds', 'devAccuracy') },
    ],
  };
}

export interface EvalConfig { model: string; device?: TrainConfig['device']; dtype?: TrainConfig['dtype']; adapter?: string; log?: string; task: TaskName; data: string; batchSize?: number; samples?: number; seed?: number }

/** zofo eval: loss and accuracy of a model (+ trajectory, + adapter) on a task file. */
export async function evalCommand(c: EvalConfig): Promise<{ loss: number; accuracy: number | null; examples: number }> {
  const traj = c.log ? await readTrajectory(c.log) : null;
  const model = await modelWithTokenizer(c.model, c.dtype ?? logDtype(traj), c.device);
  try {
    if (traj) await applyTrajectory(model, traj);
    if (c.adapter) await model.loadAdapter(c.adapter);
    const data = await taskExamples(model, c.task, c.data, c.samples, c.seed);
    return { ...(await evaluate(model, data, c.batchSize ?? 16)), examples: data.length };
  } finally {
    model.dispose();
  }
}

// A trajectory replays onto weights stored as it was recorded.
const logDtype = (traj: { header: { base: { dtype: string } } } | null) => traj?.header.base.dtype as TrainConfig['dtype'] | undefined;

/** zofo replay: base + trajectory → the fine-tuned base as an HF directory. */
export async function replayCommand(c: { base: string; log: string; out: string }): Promise<void> {
  const model = await replay(c.base, c.log);
  try {
    await model.saveMerged(c.out);
  } finally {
    model.dispose();
  }
}

/** zofo merge: base (+ trajectory) + PEFT adapter → one HF directory with the adapter merged in. */
export async function mergeCommand(c: { model: string; adapter: string; log?: string; out: string }): Promise<void> {
  const traj = c.log ? await readTrajectory(c.log) : null;
  const model = await loadModel(c.model, { dtype: logDtype(traj) });
  try {
    if (traj) await applyTrajectory(model, traj);
    await model.loadAdapter(c.adapter);
    await model.saveMerged(c.out);
  } finally {
    model.dispose();
  }
}
