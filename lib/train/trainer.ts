/**
 * The training loop: random-reshuffling minibatches (docs/algorithm.md §4) fed to a
 * TrainableOptimizer, periodic evaluation with best-model tracking and early stopping,
 * crash-safe checkpoints, cancellation, and exact resume. `fit()` is an async generator
 * of typed events, so callers drive it with `for await`.
 *
 * `step` in every event counts the batches consumed so far (1-based: the first step is
 * 1; skipped non-finite batches count too). It equals StepResult.step unless batches were
 * skipped.
 */
import { createHash } from 'node:crypto';
import { invalidArg, ZofoError } from '../errors.js';
import type { ClassificationExample, Example, Model } from '../model/model.js';
import { ReshufflingSampler } from './sampler.js';
import { loadCheckpoint, restoreCheckpoint, saveBestCheckpoint, saveCheckpoint, type EvalRecord, type TrainerCheckpointState } from './checkpoint.js';
import type { AbortSignalLike, TrainableOptimizer } from './types.js';
import { validateTrainerOptions } from '../validate/options.js';
import { OptionError } from '../errors.js';
import { u64ToJson } from '../validate/u64.js';

/**
 * Evaluation during `Trainer.fit()`: the examples, how often, the batch size, and the metric that picks the best checkpoint.
 */
export interface EvalOptions {
  data: Example[];
  /** Evaluate after every `every` steps (default: once per epoch). */
  every?: number;
  /** Eval minibatch size (default: the training batch size). */
  batchSize?: number;
  /** What selects the best checkpoint and drives early stopping (default 'loss'). */
  metric?: 'loss' | 'accuracy';
}

/**
 * Crash-safe checkpoints during `Trainer.fit()` (format: docs/algorithm.md §8): where, how often, how many to keep.
 */
export interface CheckpointOptions {
  dir: string;
  /** Save a step checkpoint every N steps (default: only the final one). */
  every?: number;
  /** Step checkpoints to keep (default 2). */
  keep?: number;
  /** Keep a copy of the best checkpoint by the eval metric in <dir>/best (default true when eval is set). */
  best?: boolean;
  /** Also save the base weights in each checkpoint (default false). */
  saveBase?: boolean;
}

/**
 * Options of `Trainer`: batch size, epochs or steps, sampling, evaluation, early stopping, checkpoints, non-finite handling and cancellation.
 */
export interface TrainerOptions {
  batchSize: number;
  /** Exactly one of epochs and steps. */
  epochs?: number;
  steps?: number;
  /** Seed of the epoch permutations (default 0): 64-bit unsigned, a bigint or a non-negative safe integer. */
  seed?: number | bigint;
  dropLast?: boolean;
  withReplacement?: boolean;
  /** Eval examples (evaluated once per epoch), or the full options. */
  eval?: Example[] | EvalOptions;
  earlyStop?: { patience: number; minDelta?: number };
  checkpoint?: CheckpointOptions;
  /** A step whose loss is not finite: skip its batch, or stop the run (default). */
  onNonFinite?: 'skip' | 'stop';
  signal?: AbortSignalLike;
  /**
   * Several processes, each with its Trainer on the same data and options and an
   * optimizer created with `parallel` (docs/distributed.md). Only rank 0 writes
   * checkpoints; the replicas are checked bit-identical before every checkpoint.
   * (Implied by a parallel optimizer; true insists on one.)
   */
  distributed?: boolean;
}

/**
 * The best evaluation of a run so far: its step, loss and accuracy (null without classification examples).
 */
export interface BestInfo {
  step: number;
  loss: number;
  accuracy: number | null;
}

/**
 * What `Trainer.fit()` yields, one event at a time: a step, a skipped step, an evaluation, a checkpoint, and finally `done` with the reason the run ended.
 */
export type TrainerEvent =
  | {
      type: 'step';
      step: number;
      epoch: number;
      loss: number;
      lrX: number;
      lrY: number;
      perturbedLosses: number[];
      projectedGrads: number[];
      /** Wall time of the run so far (across resumes), and of this step alone. */
      elapsedMs: number;
      stepMs: number;
    }
  | { type: 'skip'; step: number; epoch: number; reason: 'non-finite'; message: string }
  | { type: 'eval'; step: number; loss: number; accuracy: number | null; best: boolean }
  | { type: 'checkpoint'; step: number; dir: string; best: boolean }
  | { type: 'done'; step: number; reason: 'completed' | 'early-stop' | 'aborted' | 'non-finite'; best?: BestInfo };

/**
 * Options of one `Trainer.fit()` call: an optional checkpoint to resume from.
 */
export interface FitOptions {
  /** A checkpoint root (its `latest`) or one checkpoint directory to continue from. */
  resumeFrom?: string;
}

const codeOf = (err: unknown): string | undefined => (err as { code?: string } | null)?.code;
const isPositiveInt = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 1;
const isClassification = (e: Example): e is ClassificationExample => Array.isArray((e as ClassificationExample).candidates);

function fingerprint(train: Example[]): string {
  const hash = createHash('sha256');
  for (const e of train) hash.update(JSON.stringify(e)).update('\n');
  return hash.digest('hex');
}

/**
 * Mean loss (weighted by examples) and accuracy of `model` over `data`, in minibatches;
 * accuracy is null without classification examples.
 */
export async function evaluate(model: Model, data: Example[], batchSize = 16): Promise<{ loss: number; accuracy: number | null }> {
  if (!Array.isArray(data) || data.length === 0) throw invalidArg('a non-empty array of examples', 'data', data);
  if (!isPositiveInt(batchSize)) throw invalidArg('a positive integer', 'batchSize', batchSize);
  // model.loss takes one kind per batch: classification and LM examples batch apart.
  const groups = [data.filter(isClassification), data.filter((e) => !isClassification(e))];
  let lossSum = 0,
    correct = 0;
  for (const group of groups) {
    for (let i = 0; i < group.length; i += batchSize) {
      const batch = group.slice(i, i + batchSize);
      const r = await model.loss(batch);
      lossSum += r.loss * batch.length;
      r.predictions?.forEach((p, j) => {
        if (p === (batch[j] as ClassificationExample).label) correct++;
      });
    }
  }
  return { loss: lossSum / data.length, accuracy: groups[0].length > 0 ? correct / groups[0].length : null };
}

interface ResolvedEval {
  data: Example[];
  every: number | null;
  batchSize: number;
  metric: 'loss' | 'accuracy';
}

/**
 * The training loop: reshuffled minibatches fed to an optimizer's `step()`, with
 * evaluation, early stopping, crash-safe checkpoints, cancellation (`signal`) and exact
 * resume. `fit()` is an async generator of `TrainerEvent`s.
 *
 * @example
 * ```ts
 * import { HybridOptimizer, Trainer, loadModel, loadTask, splitTask } from 'zofo';
 *
 * const model = await loadModel('./opt-125m');
 * model.addLoRA({ rank: 8, alpha: 16 });
 * const task = await loadTask('sst2', './sst2/train.tsv', model.tokenizer!);
 * const { train, dev } = splitTask(task.examples, { train: 1000, dev: 500, seed: 0 });
 * const opt = new HybridOptimizer(model, { zo: { lr: 1e-6 }, fo: { lr: 1e-4 }, seed: 42 });
 * const trainer = new Trainer(model, opt, { batchSize: 16, epochs: 3, eval: dev, checkpoint: { dir: './ckpt' } });
 * for await (const ev of trainer.fit(train)) {
 *   if (ev.type === 'eval') console.log(`step ${ev.step}: dev accuracy ${ev.accuracy}`);
 * }
 * await model.saveAdapter('./out/adapter');
 * ```
 */
export class Trainer {
  readonly model: Model;
  readonly optimizer: TrainableOptimizer;
  readonly options: Readonly<TrainerOptions>;
  #eval: ResolvedEval | null;
  #running = false;

  constructor(model: Model, optimizer: TrainableOptimizer, options: TrainerOptions) {
    if (typeof model !== 'object' || model === null) throw invalidArg('a Model', 'model', model);
    if (typeof optimizer !== 'object' || optimizer === null || typeof optimizer.step !== 'function')
      throw invalidArg('an optimizer (HybridOptimizer)', 'optimizer', optimizer);
    if (optimizer.model !== model) throw new ZofoError('ZOFO_INVALID_ARG', 'Trainer: the optimizer was created for another model');
    const o = validateTrainerOptions(options);
    if ((o.epochs === undefined) === (o.steps === undefined)) {
      throw new OptionError(
        o.epochs === undefined ? 'steps' : 'epochs',
        `Trainer: give exactly one of epochs and steps (got ${o.epochs === undefined ? 'neither' : 'both'})`,
      );
    }
    if (o.distributed && !optimizer.parallel)
      throw new ZofoError(
        'ZOFO_INVALID_ARG',
        "Trainer: distributed needs an optimizer created with parallel: { kind: 'data' | 'perturbation', comm: await distributed.init() }",
      );
    this.#eval = null;
    if (o.eval !== undefined) {
      const e: EvalOptions = Array.isArray(o.eval) ? { data: o.eval } : o.eval;
      const metric = e.metric ?? 'loss';
      if (metric === 'accuracy' && !e.data.some(isClassification))
        throw new OptionError('eval.metric', "Trainer: eval.metric 'accuracy' needs classification examples in eval.data");
      this.#eval = { data: e.data, every: e.every ?? null, batchSize: e.batchSize ?? o.batchSize, metric };
    }
    if (o.earlyStop !== undefined && !this.#eval) throw new OptionError('earlyStop', 'Trainer: earlyStop needs eval');
    if (o.checkpoint?.best && !this.#eval) throw new OptionError('checkpoint.best', 'Trainer: checkpoint.best needs eval');
    this.model = model;
    this.optimizer = optimizer;
    this.options = { ...o };
  }

  /** Mean loss (weighted by examples) and accuracy over the eval set; accuracy is null without classification examples. */
  async evaluate(
    data: Example[] = this.#eval?.data ?? [],
    batchSize = this.#eval?.batchSize ?? this.options.batchSize,
  ): Promise<{ loss: number; accuracy: number | null }> {
    return evaluate(this.model, data, batchSize);
  }

  /** Trains on `train`, yielding events; ends with one 'done' event (errors other than non-finite steps and aborts are thrown). */
  async *fit(train: Example[], opts: FitOptions = {}): AsyncGenerator<TrainerEvent, void, undefined> {
    if (!Array.isArray(train) || train.length === 0) throw invalidArg('a non-empty array of examples', 'train', train);
    train.forEach((e, i) => {
      if (typeof e !== 'object' || e === null) throw invalidArg('an example object', `train[${i}]`, e);
    });
    if (opts.resumeFrom !== undefined && (typeof opts.resumeFrom !== 'string' || opts.resumeFrom.length === 0))
      throw invalidArg('a checkpoint directory', 'resumeFrom', opts.resumeFrom);
    if (this.#running) throw new ZofoError('ZOFO_INVALID_STATE', 'Trainer.fit: already running');
    this.#running = true;
    try {
      yield* this.#fit(train, opts);
    } finally {
      this.#running = false;
    }
  }

  async *#fit(train: Example[], opts: FitOptions): AsyncGenerator<TrainerEvent, void, undefined> {
    const o = this.options,
      ev = this.#eval,
      ck = o.checkpoint,
      signal = o.signal;
    const seed = o.seed ?? 0;
    const samplerOptions = { batchSize: o.batchSize, seed: u64ToJson(seed), dropLast: o.dropLast ?? false, withReplacement: o.withReplacement ?? false };
    const sampler = new ReshufflingSampler(train.length, { ...samplerOptions, seed });
    const totalSteps = o.steps ?? (o.epochs as number) * sampler.batchesPerEpoch;
    const evalEvery = ev ? (ev.every ?? sampler.batchesPerEpoch) : null;
    const keepBest = ck !== undefined && ev !== null && (ck.best ?? true);
    const minDelta = o.earlyStop?.minDelta ?? 0;

    const state: TrainerCheckpointState = {
      step: 0,
      skipped: 0,
      sampler: sampler.state,
      samplerOptions,
      train: { n: train.length, sha256: fingerprint(train) },
      totalSteps,
      elapsedMs: 0,
      evals: [],
      best: null,
      sinceImprovement: 0,
      history: [],
    };
    let lastSaved = -1;
    if (opts.resumeFrom !== undefined) {
      const ckpt = await loadCheckpoint(opts.resumeFrom);
      const t = ckpt.trainer;
      if (t.train.n !== state.train.n || t.train.sha256 !== state.train.sha256) {
        throw new ZofoError(
          'ZOFO_INVALID_STATE',
          `${ckpt.dir}: the checkpoint was trained on another training set (${t.train.n} examples, sha256 ${t.train.sha256.slice(0, 12)}…; now ${state.train.n}, ${state.train.sha256.slice(0, 12)}…)`,
        );
      }
      for (const k of Object.keys(samplerOptions) as Array<keyof typeof samplerOptions>) {
        if (t.samplerOptions[k] !== samplerOptions[k]) {
          throw new ZofoError(
            'ZOFO_INVALID_STATE',
            `${ckpt.dir}: the checkpoint used ${k} ${JSON.stringify(t.samplerOptions[k])} but this Trainer has ${JSON.stringify(samplerOptions[k])}`,
          );
        }
      }
      await restoreCheckpoint(ckpt, this.model, this.optimizer);
      sampler.restore(t.sampler);
      Object.assign(state, {
        step: t.step,
        skipped: t.skipped,
        elapsedMs: t.elapsedMs,
        evals: t.evals,
        best: t.best,
        sinceImprovement: t.sinceImprovement,
        history: t.history,
      });
      lastSaved = t.step;
    }
    // After loadState: this run's length decides the schedules.
    this.optimizer.totalSteps = totalSteps;

    const started = performance.now(),
      elapsedBefore = state.elapsedMs;
    const elapsed = (now = performance.now()): number => elapsedBefore + (now - started);
    const bestInfo = (): BestInfo | undefined => (state.best ? { ...state.best } : undefined);
    const { model, optimizer } = this;
    // Distributed: every rank checks the replicas, rank 0 alone writes.
    const writer = (optimizer.parallel?.rank ?? 0) === 0;
    async function* checkpointNow(): AsyncGenerator<TrainerEvent> {
      state.sampler = sampler.state;
      state.elapsedMs = elapsed();
      await optimizer.checkReplicas?.();
      if (!writer) {
        lastSaved = state.step;
        return;
      }
      const saved = await saveCheckpoint(ck!.dir, { model, optimizer, state, keep: ck!.keep, saveBase: ck!.saveBase });
      state.history = saved.history;
      lastSaved = state.step;
      yield { type: 'checkpoint', step: state.step, dir: saved.dir, best: false };
    }
    async function* finish(reason: 'completed' | 'early-stop' | 'aborted' | 'non-finite'): AsyncGenerator<TrainerEvent> {
      if (ck && state.step > lastSaved) yield* checkpointNow();
      yield { type: 'done', step: state.step, reason, best: bestInfo() };
    }

    const evaluate = (data: Example[], batchSize: number) => this.evaluate(data, batchSize);
    /** Evaluates when due at this step (not yet done); returns whether early stopping triggers. */
    async function* evalIfDue(): AsyncGenerator<TrainerEvent, boolean> {
      if (!ev || !evalEvery || state.step === 0 || state.step % evalEvery !== 0 || state.evals.at(-1)?.step === state.step) return false;
      const { loss, accuracy } = await evaluate(ev.data, ev.batchSize);
      const record: EvalRecord = { step: state.step, loss, accuracy };
      const value = ev.metric === 'loss' ? loss : (accuracy as number);
      const bestValue = state.best === null ? null : ev.metric === 'loss' ? state.best.loss : (state.best.accuracy as number);
      const improved = Number.isFinite(value) && (bestValue === null || (ev.metric === 'loss' ? value < bestValue - minDelta : value > bestValue + minDelta));
      state.evals.push(record);
      if (improved) {
        state.best = record;
        state.sinceImprovement = 0;
      } else {
        state.sinceImprovement += 1;
      }
      yield { type: 'eval', step: state.step, loss, accuracy, best: improved };
      if (improved && keepBest && writer) {
        state.sampler = sampler.state;
        state.elapsedMs = elapsed();
        const dir = await saveBestCheckpoint(ck!.dir, { model, optimizer, state, saveBase: ck!.saveBase });
        yield { type: 'checkpoint', step: state.step, dir, best: true };
      }
      return o.earlyStop !== undefined && state.sinceImprovement >= o.earlyStop.patience;
    }

    // A run aborted right after a step skipped that step's evaluation: catch up first.
    if (yield* evalIfDue()) return yield* finish('early-stop');
    while (state.step < totalSteps) {
      if (signal?.aborted) return yield* finish('aborted');
      const before = sampler.state;
      const { indices, epoch } = sampler.next();
      const batch = indices.map((i) => train[i]);
      const t0 = performance.now();
      let result;
      try {
        result = await optimizer.step(batch, { signal });
      } catch (err) {
        const code = codeOf(err);
        if (code === 'ZOFO_ABORTED') {
          // The step was not applied: a resumed run redoes this batch.
          sampler.restore(before);
          return yield* finish('aborted');
        }
        if (code !== 'ZOFO_NON_FINITE') throw err;
        if ((o.onNonFinite ?? 'stop') === 'stop') {
          sampler.restore(before);
          return yield* finish('non-finite');
        }
        state.step += 1;
        if (state.skipped !== undefined) state.skipped += 1;
        yield { type: 'skip', step: state.step, epoch, reason: 'non-finite', message: (err as Error).message };
        result = null;
      }
      if (result) {
        state.step += 1;
        // One clock reading for both: two would let a thread stall between them make
        // stepMs exceed elapsedMs.
        const now = performance.now();
        yield {
          type: 'step',
          step: state.step,
          epoch,
          loss: result.loss,
          lrX: result.lrX,
          lrY: result.lrY,
          perturbedLosses: result.perturbedLosses,
          projectedGrads: result.projectedGrads,
          elapsedMs: elapsed(now),
          stepMs: now - t0,
        };
      }
      // The applied step is kept; the rest of this step's work waits for a resumed run.
      if (signal?.aborted) return yield* finish('aborted');

      const stopEarly = yield* evalIfDue();
      if (ck?.every && state.step % ck.every === 0) yield* checkpointNow();
      if (stopEarly) return yield* finish('early-stop');
    }
    yield* finish('completed');
  }
}
