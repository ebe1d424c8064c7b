/**
 * The CLI's commands as functions (lib/cli/main.ts parses arguments into them):
 * train, eval, replay, merge. Each takes a plain options object whose fields mirror the
 * TypeScript API, so a JSON config file (--config) and flags fill the same shape.
 */
import { existsSync } from 'node:fs';
import { mkdir, rm, rmdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { invalidArg, ZofoError } from '../errors.js';
import { loadTask, sampleIndices, TASK_NAMES, type TaskName } from '../data/tasks.js';
import { badFile, ioError, isRecord, parseJsonText, readJsonFile, readRegularFile, writeFileAtomic } from '../formats/files.js';
import { loadModel, type Example, type LoadModelOptions, type LoraOptions, type Model } from '../model/model.js';
import { HybridOptimizer, applyTrajectory } from '../train/optimizer.js';
import { replay } from '../train/replay.js';
import { evaluate, Trainer, type TrainerOptions } from '../train/trainer.js';
import { readTrajectory } from '../train/trajectory.js';
import type { FoOptions, HybridOptimizerOptions, ParallelOptions, Trajectory, ZoOptions } from '../train/types.js';
import { init as initCommunicator } from '../distributed/communicator.js';
import { detectLaunch } from '../distributed/environment.js';
import { renderChart, toCsv, toJsonl } from '../chart.js';
import { MODES, type Mode } from './flags.js';
import { nonEmptyDir, removeStaleTemps, writeDirAtomic } from './outdir.js';
import { createProgress } from './progress.js';
import { UsageError } from './usage.js';

export { MODES, type Mode };

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
  /** Continue the run under `out` from its latest checkpoint. */
  resume?: boolean;
  /** Distributed mode (docs/distributed.md); default 'data' when started by mpirun/srun with more than one rank. */
  parallel?: 'data' | 'perturbation';
  /** Replace an earlier run under `out` (without it, a non-empty `out` is refused). */
  overwrite?: boolean;
}

/** Defaults of `zofo train`: MeZO's presets (lr 1e-6 for ZO, 1e-4 for LoRA), batch 16 (the --help shows them from lib/cli/flags.ts); μ: HybridOptimizer's, by the model's compute. */
export const TRAIN_DEFAULTS = { lrX: 1e-6, lrY: 1e-4, batchSize: 16 } as const;

/** The optimizer options of a mode: TRAIN_DEFAULTS under the given zo / fo parts. */
export function optimizerOptions(mode: Mode, c: Pick<TrainConfig, 'zo' | 'fo' | 'seed'>): HybridOptimizerOptions {
  const zo: ZoOptions = { lr: TRAIN_DEFAULTS.lrX, ...c.zo };
  const fo: FoOptions = { lr: TRAIN_DEFAULTS.lrY, ...c.fo };
  switch (mode) {
    case 'hybrid':
      return { zo, fo, seed: c.seed ?? 0 };
    case 'zo':
      return { zo, seed: c.seed ?? 0 };
    case 'lora':
      return { fo, seed: c.seed ?? 0 };
    case 'full':
      return { fo: { ...fo, params: 'all' }, seed: c.seed ?? 0 };
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

/** The files of a run under --out that `--overwrite` replaces. */
const RUN_FILES = ['checkpoints', 'adapter', 'trajectory.zlog', 'curves.svg', 'curves.csv', 'curves.jsonl'];

/** Marker written into a trained adapter: its run also changed the base by ZO steps (see needsLog). */
export const ADAPTER_RUN_FILE = 'zofo-run.json';

type CurveRow = Record<string, number | null>;

/** Bound on an earlier run's curves.jsonl (a million steps write ~200 MB), below V8's longest string. */
const MAX_CURVES_BYTES = 256 << 20;

/** The rows of an earlier run's curves.jsonl (none when there is no such file). */
async function readCurves(file: string): Promise<CurveRow[]> {
  let content: string;
  try {
    content = (await readRegularFile(file, MAX_CURVES_BYTES)).toString('utf8');
  } catch (err) {
    if ((err as { cause?: { code?: string } }).cause?.code === 'ENOENT') return [];
    throw ioError(file, 'cannot read the curves of the earlier run', err);
  }
  const lines = content.split('\n');
  const rows: CurveRow[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() === '') continue;
    const where = `${file}:${i + 1}`;
    try {
      const row = parseJsonText(where, lines[i]);
      if (!isRecord(row) || !Number.isSafeInteger(row.step)) throw badFile(where, 'expected an object with an integer "step"');
      const bad = Object.entries(row).find(([, v]) => v !== null && !(typeof v === 'number' && Number.isFinite(v)));
      if (bad) throw badFile(where, `"${bad[0]}" must be a finite number or null`);
      rows.push(row as CurveRow);
    } catch (err) {
      throw new ZofoError('ZOFO_BAD_FILE', `${(err as Error).message}; resuming would lose the earlier rows (move the file away to start the curves afresh)`, {
        cause: err,
      });
    }
  }
  return rows;
}

/** curves.jsonl (the record), .csv and .svg, each written atomically. */
async function writeCurves(out: string, title: string, mode: string, rows: CurveRow[]): Promise<void> {
  await writeFileAtomic(join(out, 'curves.jsonl'), toJsonl(rows));
  await writeFileAtomic(join(out, 'curves.csv'), toCsv(rows));
  await writeFileAtomic(join(out, 'curves.svg'), renderChart(rowsToChart(title, { [mode]: rows })));
}

/** Refuses to start over an earlier run unless told to; clears what a killed run left behind. */
async function prepareOut(c: TrainConfig): Promise<void> {
  if (c.resume && c.overwrite) throw new UsageError('ZOFO_INVALID_ARG', 'zofo train: give --resume or --overwrite, not both');
  await removeStaleTemps(c.out);
  await removeStaleTemps(join(c.out, 'checkpoints'));
  // A run killed before its first checkpoint leaves an empty checkpoints/ only: nothing to keep.
  if (!(await nonEmptyDir(join(c.out, 'checkpoints')))) await rmdir(join(c.out, 'checkpoints')).catch(() => undefined);
  if (c.resume || !(await nonEmptyDir(c.out))) return;
  const found = RUN_FILES.filter((f) => existsSync(join(c.out, f)));
  if (!c.overwrite) {
    throw new UsageError(
      'ZOFO_INVALID_ARG',
      `zofo train: --out ${c.out} is not empty${found.length ? ` (an earlier run: ${found.join(', ')})` : ''}; ` +
        'pass --resume to continue that run, --overwrite to replace it, or choose another folder',
    );
  }
  for (const f of found) await rm(join(c.out, f), { recursive: true, force: true });
}

/** zofo train: fine-tunes, writing checkpoints, the adapter, the trajectory and the curves under `out` (rank 0 only when distributed). */
export async function train(c: TrainConfig, log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Promise<TrainSummary> {
  const mode = c.mode ?? 'hybrid';
  if (!MODES.includes(mode)) throw invalidArg(MODES.map((m) => `'${m}'`).join(', '), 'mode', mode);
  if (c.steps === undefined && c.epochs === undefined) c = { ...c, epochs: 1 };
  const parallel = await parallelOptions(c);
  const rank = parallel?.comm.rank ?? 0;
  if (rank !== 0) log = () => {};
  // Only rank 0 writes: it alone checks and clears --out.
  if (rank === 0) await prepareOut(c);
  // A resumed run keeps the earlier rows up to the step it resumes from.
  const earlier = c.resume && rank === 0 ? await readCurves(join(c.out, 'curves.jsonl')) : [];
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
    const opt = new HybridOptimizer(model, { ...optimizerOptions(mode, c), ...(parallel ? { parallel } : {}) });
    const batchSize = c.batchSize ?? TRAIN_DEFAULTS.batchSize;
    const options: TrainerOptions = {
      batchSize,
      seed: c.seed ?? 0,
      signal: ac.signal,
      ...(c.steps !== undefined ? { steps: c.steps } : { epochs: c.epochs }),
      checkpoint: { dir: join(c.out, 'checkpoints'), every: c.checkpointEvery, keep: c.keep, best: devSet !== undefined },
      ...(devSet
        ? { eval: { data: devSet, every: c.evalEvery, metric: devSet.some((e) => 'candidates' in e) ? ('accuracy' as const) : ('loss' as const) } }
        : {}),
    };
    const trainer = new Trainer(model, opt, options);
    const total = c.steps ?? (c.epochs as number) * Math.ceil(trainSet.length / batchSize);
    const progress =
      rank === 0
        ? createProgress(`zofo train (${mode}${parallel ? `, ${parallel.kind}-parallel on ${parallel.comm.size} ranks` : ''})`, total)
        : silentProgress;
    const title = `zofo train: ${c.task}, ${mode}`;
    let rows: CurveRow[] = [];
    let resumedAt: number | null = c.resume ? null : 0;
    // The first event tells where a resumed run continues: earlier rows past it were not kept by the checkpoint.
    const startAt = (step: number) => {
      if (resumedAt !== null) return;
      resumedAt = step;
      rows = earlier.filter((r) => (r.step as number) <= step);
    };
    let done: { reason: string; step: number; best?: TrainSummary['best'] } = { reason: 'completed', step: 0 };
    for await (const ev of trainer.fit(trainSet, c.resume ? { resumeFrom: join(c.out, 'checkpoints') } : {})) {
      startAt(ev.type === 'step' || ev.type === 'skip' ? ev.step - 1 : ev.step);
      if (ev.type === 'step') {
        progress.update(ev);
        rows.push({ step: ev.step, seconds: ev.elapsedMs / 1000, loss: ev.loss, lrX: ev.lrX, lrY: ev.lrY, devLoss: null, devAccuracy: null });
      } else if (ev.type === 'eval') {
        progress.log(
          `eval @ step ${ev.step}: dev loss ${ev.loss.toFixed(4)}${ev.accuracy === null ? '' : `, accuracy ${(100 * ev.accuracy).toFixed(1)}%`}${ev.best ? ' (best)' : ''}`,
        );
        const row = [...rows].reverse().find((r) => r.step === ev.step);
        if (row) Object.assign(row, { devLoss: ev.loss, devAccuracy: ev.accuracy });
        else rows.push({ step: ev.step, seconds: null, loss: null, lrX: null, lrY: null, devLoss: ev.loss, devAccuracy: ev.accuracy });
      } else if (ev.type === 'checkpoint') {
        if (!ev.best) await writeCurves(c.out, title, mode, rows);
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
      const zoSteps = opt.zo ? opt.stepCount : 0;
      await writeFileAtomic(
        join(c.out, 'adapter', ADAPTER_RUN_FILE),
        `${JSON.stringify({ format: 'zofo-adapter-run', version: 1, mode, zoSteps, trajectory: zoSteps > 0 ? '../trajectory.zlog' : null }, null, 2)}\n`,
      );
      files.push(join(c.out, 'adapter'));
    }
    if (opt.zo && opt.stepCount > 0) {
      await opt.saveTrajectory(join(c.out, 'trajectory.zlog'));
      files.push(join(c.out, 'trajectory.zlog'));
    }
    await writeCurves(c.out, title, mode, rows);
    files.push(join(c.out, 'curves.jsonl'), join(c.out, 'curves.csv'), join(c.out, 'curves.svg'));
    const final = devSet ? await evaluate(model, devSet, batchSize) : undefined;
    return { rank, reason: done.reason, steps: done.step, best: done.best, final, files };
  } finally {
    process.removeListener('SIGINT', onSigint);
    model.dispose();
  }
}

/** Loss and dev accuracy against step and wall time, one series per mode. */
export function rowsToChart(title: string, byMode: Record<string, Array<Record<string, number | null>>>) {
  const series = (x: string, y: string) =>
    Object.entries(byMode).map(([name, rows]) => ({
      name,
      points: rows.filter((r) => r[y] !== null && r[y] !== undefined).map((r) => [r[x] as number, r[y] as number] as [number, number]),
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

export interface EvalConfig {
  model: string;
  device?: TrainConfig['device'];
  dtype?: TrainConfig['dtype'];
  adapter?: string;
  log?: string;
  task: TaskName;
  data: string;
  batchSize?: number;
  samples?: number;
  seed?: number;
}

/**
 * How many ZO steps of the base an adapter was trained together with, and where its
 * run wrote their log: from the marker `zofo train` writes into the adapter, or from the
 * checkpoint an adapter of checkpoints/ sits in. Null: no ZO updates recorded.
 */
export async function adapterZoSteps(adapter: string): Promise<{ steps: number; log: string } | null> {
  const marker = join(adapter, ADAPTER_RUN_FILE);
  if (existsSync(marker)) {
    const m = await readJsonFile(marker, { maxBytes: 1 << 16 });
    if (!isRecord(m)) throw badFile(marker, 'expected a JSON object');
    if (!Number.isSafeInteger(m.zoSteps) || (m.zoSteps as number) < 0)
      throw new ZofoError('ZOFO_BAD_FILE', `${marker}: zoSteps must be a non-negative integer`);
    if (m.zoSteps === 0) return null;
    return { steps: m.zoSteps as number, log: resolve(adapter, typeof m.trajectory === 'string' ? m.trajectory : '../trajectory.zlog') };
  }
  const trainerJson = join(dirname(resolve(adapter)), 'trainer.json');
  if (!existsSync(trainerJson)) return null;
  try {
    const t = (await readJsonFile(trainerJson, { optional: true })) as { files?: { trajectory?: unknown }; optimizer?: { step?: unknown } } | undefined;
    const steps = t?.optimizer?.step;
    if (t?.files?.trajectory === true && typeof steps === 'number' && steps > 0) return { steps, log: join(dirname(trainerJson), 'trajectory.zlog') };
  } catch {
    /* not a zofo checkpoint */
  }
  return null;
}

/** The base an adapter was trained on includes ZO updates: refuse to use the adapter without their log, or with a log of another length. */
async function checkLogFor(command: string, adapter: string, traj: Trajectory | null, logFile: string | undefined): Promise<void> {
  const zo = await adapterZoSteps(adapter);
  if (!zo) return;
  if (!traj) {
    throw new UsageError(
      'ZOFO_INVALID_ARG',
      `zofo ${command}: ${adapter} was trained together with ${zo.steps} ZO steps of the base weights; ` +
        `without them it would run on the wrong base. Pass --log ${zo.log}`,
    );
  }
  const logSteps = traj.records.length === 0 ? 0 : traj.records[traj.records.length - 1].step + 1;
  if (logSteps !== zo.steps) {
    throw new UsageError(
      'ZOFO_INVALID_ARG',
      `zofo ${command}: ${adapter} was trained together with ${zo.steps} ZO steps, but ${logFile} holds ${logSteps}; pass the log of the same run (${zo.log})`,
    );
  }
}

/** zofo eval: loss and accuracy of a model (+ trajectory, + adapter) on a task file. */
export async function evalCommand(c: EvalConfig): Promise<{ loss: number; accuracy: number | null; examples: number }> {
  const traj = c.log ? await readTrajectory(c.log) : null;
  if (c.adapter) await checkLogFor('eval', c.adapter, traj, c.log);
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

/** zofo replay: base + trajectory → the fine-tuned base as an HF directory (written whole; an existing `out` only with `overwrite`). */
export async function replayCommand(c: { base: string; log: string; out: string; overwrite?: boolean }): Promise<void> {
  await writeDirAtomic('replay', c.out, c.overwrite ?? false, async (tmp) => {
    const model = await replay(c.base, c.log);
    try {
      await model.saveMerged(tmp);
    } finally {
      model.dispose();
    }
  });
}

/** zofo merge: base (+ trajectory) + PEFT adapter → one HF directory with the adapter merged in (written whole; an existing `out` only with `overwrite`). */
export async function mergeCommand(c: { model: string; adapter: string; log?: string; out: string; overwrite?: boolean }): Promise<void> {
  const traj = c.log ? await readTrajectory(c.log) : null;
  await checkLogFor('merge', c.adapter, traj, c.log);
  await writeDirAtomic('merge', c.out, c.overwrite ?? false, async (tmp) => {
    const model = await loadModel(c.model, { dtype: logDtype(traj) });
    try {
      if (traj) await applyTrajectory(model, traj);
      await model.loadAdapter(c.adapter);
      await model.saveMerged(tmp);
    } finally {
      model.dispose();
    }
  });
}
