/**
 * The hybrid optimizer (docs/algorithm.md §2): zeroth-order updates of the base weights x
 * (seed-regenerated Gaussian perturbations, forward passes only) jointly with
 * first-order updates of the LoRA adapters y, each with its own learning rate.
 * `await opt.step(batch)` runs the whole step in ONE native call off the JS thread.
 *
 * Baselines run through the same code path, chosen by options:
 *   - hybrid:     { zo, fo }
 *   - ZO only:    { zo }                       (MeZO; no adapters needed)
 *   - LoRA only:  { fo }                       (PEFT-style)
 *   - full FT:    { fo: { params: 'all' } }     (backprop on every base weight; fp32, small models)
 *
 * Exact restore: the engine computes perturbed weights into per-tensor scratch and
 * never perturbs x in place, so a step's only write to x is its final update pass. A
 * step that is cancelled, fails, or meets a non-finite loss leaves x and y
 * bit-identical, in every storage dtype (MeZO's +μ/−2μ/+μ does not in fp16).
 */
import { cpuBinding, type NativeOptimizer, type NativeStepResult } from '../binding.js';
import { awaitNative, describe, invalidArg, rethrowNative, ZofoError } from '../errors.js';
import { encodeLossBatch, splitScores, type ClassificationExample, type Compute, type Example, type Model } from '../model/model.js';
import { OptionError } from '../errors.js';
import { validateOptimizerOptions } from '../validate/options.js';
import { u64FromJson } from '../validate/u64.js';
import { learningRate, type ScheduleOptions } from './schedule.js';
import { TRAJECTORY_VERSION, writeTrajectory } from './trajectory.js';
import { Communicator } from '../distributed/communicator.js';
import { checkReplicas } from '../distributed/replicas.js';
import { sliceOf } from '../distributed/slice.js';
import type {
  FoOptions,
  HybridOptimizerOptions,
  OptimizerState,
  ParallelInfo,
  ParallelOptions,
  StepOptions,
  StepResult,
  TrainableOptimizer,
  Trajectory,
  TrajectoryHeader,
  TrajectoryRecord,
  ZoOptions,
} from './types.js';

const FO_KIND = { sgd: 0, momentum: 1, adamw: 2 } as const;

/** zo.mu when not given, by the model's compute precision (chosen from the measurements in docs/precision.md). */
export const DEFAULT_MU: Readonly<Record<Compute, number>> = { fp32: 1e-3, tf32: 1e-3, bf16: 3e-3 };
const STATE_VERSION = 1;

interface ResolvedZo extends Required<Omit<ZoOptions, 'freeze' | 'schedule'>> {
  freeze: Array<string | RegExp>;
  schedule: ScheduleOptions;
}
interface ResolvedFo extends Required<Omit<FoOptions, 'schedule'>> {
  schedule: ScheduleOptions;
}

// Options arrive validated (validateOptimizerOptions): these only fill in defaults.
function resolveZo(zo: ZoOptions, defaultMu: number): ResolvedZo {
  const estimator = zo.estimator ?? 'forward';
  const foAt = zo.foAt ?? 'center';
  if (foAt === 'plus' && estimator !== 'central')
    throw new OptionError('zo.foAt', "zo.foAt 'plus' needs zo.estimator 'central' (the forward estimator already takes the FO gradient at its centre forward)");
  return {
    lr: zo.lr,
    mu: zo.mu ?? defaultMu,
    estimator,
    perturbations: zo.perturbations ?? 1,
    foAt,
    freeze: zo.freeze ?? [],
    weightDecay: zo.weightDecay ?? 0,
    schedule: zo.schedule ?? {},
  };
}

function resolveFo(fo: FoOptions): ResolvedFo {
  const betas = fo.betas ?? [0.9, 0.999];
  return {
    lr: fo.lr,
    optimizer: fo.optimizer ?? 'sgd',
    params: fo.params ?? 'adapters',
    momentum: fo.momentum ?? 0.9,
    betas: [betas[0], betas[1]],
    eps: fo.eps ?? 1e-8,
    weightDecay: fo.weightDecay ?? 0,
    schedule: fo.schedule ?? {},
  };
}

const PARALLEL_KIND = { data: 1, perturbation: 2 } as const;

interface ResolvedParallel {
  kind: 'data' | 'perturbation';
  comm: Communicator;
  checkEvery: number;
}

function resolveParallel(p: ParallelOptions, zo: ResolvedZo | null): ResolvedParallel {
  if (typeof p !== 'object') throw invalidArg('an object', 'parallel', p);
  if (p.kind !== 'data' && p.kind !== 'perturbation') throw invalidArg("'data' or 'perturbation'", 'parallel.kind', p.kind);
  if (!(p.comm instanceof Communicator)) throw invalidArg('a communicator from distributed.init()', 'parallel.comm', p.comm);
  const checkEvery = p.checkEvery ?? 100;
  if (!Number.isSafeInteger(checkEvery) || checkEvery < 0) throw invalidArg('a non-negative integer', 'parallel.checkEvery', checkEvery);
  if (p.kind === 'perturbation') {
    if (!zo) throw new ZofoError('ZOFO_INVALID_ARG', "parallel.kind 'perturbation' splits the ZO directions among the ranks; it needs zo");
    if (zo.foAt === 'plus')
      throw new ZofoError('ZOFO_INVALID_ARG', "parallel.kind 'perturbation' needs zo.foAt 'center' (every rank takes the FO gradient at the centre)");
  }
  return { kind: p.kind, comm: p.comm, checkEvery };
}

const matches = (name: string, pattern: string | RegExp) => (typeof pattern === 'string' ? name.includes(pattern) : pattern.test(name));

/**
 * The hybrid optimizer of docs/algorithm.md §2: zeroth-order (seed-regenerated Gaussian
 * perturbations, forward passes only) on the base weights and first-order (backprop) on
 * the LoRA adapters, each with its own learning rate and schedule. `step(batch)` is the
 * single-step primitive: one native call, off the JS thread, that leaves every weight
 * unchanged if it fails or is cancelled. The ZO updates are logged as a trajectory
 * (`saveTrajectory`, `replay`).
 *
 * @example
 * ```ts
 * import { HybridOptimizer, loadModel } from 'zofo';
 *
 * const model = await loadModel('./opt-125m');
 * model.addLoRA({ rank: 8, alpha: 16 });
 * const opt = new HybridOptimizer(model, {
 *   zo: { lr: 1e-6, mu: 1e-3, estimator: 'forward' },
 *   fo: { lr: 1e-4, optimizer: 'sgd' },
 *   seed: 42,
 * });
 * const r = await opt.step(batch); // batch: Example[]
 * console.log(r.loss, r.projectedGrads);
 * await opt.saveTrajectory('./out/zo.zlog'); // seeds + projected gradients, replayable
 * ```
 */
export class HybridOptimizer implements TrainableOptimizer {
  readonly model: Model;
  readonly zo: ResolvedZo | null;
  readonly fo: ResolvedFo | null;
  readonly seed: bigint;
  totalSteps: number;
  #native: NativeOptimizer | null;
  #step = 0;
  #busy = false;
  #records: TrajectoryRecord[] = [];
  #baseHash: string | null = null;
  readonly #parallel: ResolvedParallel | null;
  readonly #trainable: Uint8Array;
  readonly #decay: Float32Array;

  constructor(model: Model, options: HybridOptimizerOptions) {
    options = validateOptimizerOptions(options);
    this.model = model;
    this.zo = options.zo ? resolveZo(options.zo, DEFAULT_MU[model.compute]) : null;
    this.fo = options.fo ? resolveFo(options.fo) : null;
    if (!this.zo && !this.fo) throw new ZofoError('ZOFO_INVALID_ARG', 'HybridOptimizer: give zo (zeroth-order on the base weights), fo (first-order), or both');
    if (this.zo && this.fo?.params === 'all')
      throw new ZofoError(
        'ZOFO_INVALID_ARG',
        "HybridOptimizer: fo.params 'all' (full fine-tuning) updates every base weight by backprop and cannot be combined with zo",
      );
    if (this.fo?.params === 'all' && model.dtype !== 'f32')
      throw new ZofoError('ZOFO_UNSUPPORTED', `HybridOptimizer: full fine-tuning needs fp32 base weights; this model was loaded with dtype '${model.dtype}'`);
    const hasAdapters = model.loraNames().length > 0;
    if (this.fo?.params === 'adapters' && !hasAdapters)
      throw new ZofoError(
        'ZOFO_INVALID_STATE',
        "HybridOptimizer: fo updates LoRA adapters but the model has none; call model.addLoRA() first (or use fo.params 'all', or zo only)",
      );
    this.seed = BigInt(options.seed ?? 0);
    this.totalSteps = options.totalSteps ?? 1;
    this.#parallel = options.parallel ? resolveParallel(options.parallel, this.zo) : null;
    const names = model.parameterNames();
    this.#trainable = Uint8Array.from(names, (n) => (this.zo?.freeze.some((p) => matches(n, p)) ? 0 : 1));
    if (this.zo && this.#trainable.every((t) => t === 0))
      throw new ZofoError('ZOFO_INVALID_ARG', `zo.freeze freezes every base tensor (${names.length}); drop zo for an FO-only run`);
    this.#decay = new Float32Array(names.length).fill(1);
    try {
      this.#native = new model.binding.NativeOptimizer(model.native, {
        zo: this.zo !== null,
        central: this.zo?.estimator === 'central',
        foAtPlus: this.zo?.foAt === 'plus',
        q: this.zo?.perturbations ?? 1,
        mu: this.zo?.mu ?? 1e-3,
        trainable: this.#trainable,
        decay: this.#decay,
        foAdapters: this.fo !== null && hasAdapters,
        foBase: this.fo?.params === 'all',
        foKind: FO_KIND[this.fo?.optimizer ?? 'sgd'],
        momentum: this.fo?.momentum ?? 0.9,
        beta1: this.fo?.betas[0] ?? 0.9,
        beta2: this.fo?.betas[1] ?? 0.999,
        eps: this.fo?.eps ?? 1e-8,
        seed: this.seed,
        ...(this.#parallel ? { parallel: PARALLEL_KIND[this.#parallel.kind], comm: this.#parallel.comm.handle } : {}),
      });
    } catch (err) {
      rethrowNative(err, 'HybridOptimizer');
    }
    model.attach(this);
  }

  #live(): NativeOptimizer {
    if (!this.#native) throw new ZofoError('ZOFO_DISPOSED', 'this optimizer has been disposed');
    return this.#native;
  }

  /** Steps applied so far: the index of the next step. */
  get stepCount(): number {
    return this.#step;
  }

  /** The parallel mode, this rank and the world size; null for one process. */
  get parallel(): ParallelInfo | null {
    const p = this.#parallel;
    return p ? { kind: p.kind, rank: p.comm.rank, size: p.comm.size } : null;
  }

  /** Distributed runs: throws ZOFO_REPLICA_MISMATCH on every rank if any rank's weights differ from rank 0's. */
  async checkReplicas(): Promise<void> {
    if (this.#parallel) await checkReplicas(this.#parallel.comm, this.model, this.#step);
  }

  /** Names of the base tensors the ZO part perturbs and updates (not frozen). */
  trainableTensors(): string[] {
    return this.model.parameterNames().filter((_, i) => this.#trainable[i] === 1);
  }

  /** The learning rates step k uses: { lrX, lrY } after the schedules. */
  learningRates(k: number): { lrX: number; lrY: number } {
    const fo = this.fo ? learningRate(this.fo.lr, k, this.totalSteps, this.fo.schedule) : 0;
    const lrX = this.zo ? learningRate(this.zo.lr, k, this.totalSteps, this.zo.schedule) : this.fo?.params === 'all' ? fo : 0;
    return { lrX, lrY: this.fo ? fo : 0 };
  }

  /**
   * One hybrid step on a minibatch. Rejects with ZOFO_NON_FINITE (a loss or gradient
   * was NaN/∞) or ZOFO_ABORTED (opts.signal fired before the update phase); either way
   * no weight changed and the step counter did not advance.
   */
  async step(batch: Example[], opts: StepOptions = {}): Promise<StepResult> {
    const native = this.#live();
    if (this.#busy) throw new ZofoError('ZOFO_INVALID_STATE', 'HybridOptimizer.step: the previous step has not finished; await it before the next');
    const signal = opts.signal;
    if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalidArg('an AbortSignal', 'signal', signal);
    const k = this.#step;
    const abortError = () => new ZofoError('ZOFO_ABORTED', `step ${k} was cancelled before its update; no weight changed`);
    if (signal?.aborted) throw abortError();
    // Data-parallel: this rank's slice of the global batch. A rank with no rows still
    // takes part in the exchange (idle), on a stand-in batch it never evaluates.
    const par = this.#parallel;
    let local = batch,
      idle = false;
    if (par?.kind === 'data') {
      if (!Array.isArray(batch) || batch.length === 0) throw invalidArg('a non-empty array of examples', 'batch', batch);
      const [from, to] = sliceOf(batch.length, par.comm.rank, par.comm.size);
      idle = from === to;
      local = idle ? batch.slice(0, 1) : batch.slice(from, to);
    }
    const enc = encodeLossBatch(local, this.model.config.vocabSize);
    const { lrX, lrY } = this.learningRates(k);
    this.#busy = true;
    const onAbort = () => native.cancel();
    signal?.addEventListener('abort', onAbort, { once: true });
    let r: NativeStepResult | undefined;
    try {
      this.#baseHash ??= await this.model.baseHash(); // the trajectory starts from these weights
      if (signal?.aborted) throw abortError();
      const b = enc.b;
      await awaitNative(async () => {
        r = await native.step(
          b.ids,
          b.positions,
          b.mask,
          b.B,
          b.T,
          enc.kind,
          enc.rows,
          enc.targets,
          enc.group,
          enc.candidateExample,
          enc.candidateIsLabel,
          enc.examples,
          { step: k, lrX, wdX: this.zo?.weightDecay ?? this.fo?.weightDecay ?? 0, lrY, wdY: this.fo?.weightDecay ?? 0, idle },
        );
      }, `step ${k}`);
    } finally {
      signal?.removeEventListener('abort', onAbort);
      this.#busy = false;
    }
    if (!r) throw new ZofoError('ZOFO_INTERNAL', `step ${k}: the engine returned no result`);
    if (r.status === 2) throw abortError();
    if (r.status === 1) throw new ZofoError('ZOFO_NON_FINITE', `step ${k} was rejected: ${r.reason}; no weight changed`);
    this.#step = k + 1;
    const seeds = Array.from(r.seeds);
    const projectedGrads = Array.from(r.projected);
    const q = seeds.length;
    const { scales, etaLambda } = r;
    seeds.forEach((seed, j) =>
      this.#records.push({
        step: k,
        j,
        q,
        seed,
        projectedGrad: projectedGrads[j],
        lr: Math.fround(lrX),
        weightDecay: Math.fround(this.zo!.weightDecay),
        scale: scales[j],
        etaLambda: j === 0 ? Math.fround(etaLambda) : 0,
      }),
    );
    const result: StepResult = { step: k + 1, loss: r.loss, perturbedLosses: Array.from(r.perturbed), projectedGrads, seeds, lrX, lrY };
    if (par && par.checkEvery > 0 && this.#step % par.checkEvery === 0) await checkReplicas(par.comm, this.model, this.#step);
    // Data-parallel ranks score only their slice: no predictions for the global batch.
    if (enc.kind === 1 && par?.kind !== 'data') result.predictions = splitScores(batch as ClassificationExample[], r.scores).predictions;
    return result;
  }

  /** The header a trajectory of this run carries (parameter table by stored key). */
  #header(): TrajectoryHeader {
    if (this.fo?.params === 'all')
      throw new ZofoError(
        'ZOFO_UNSUPPORTED',
        'full fine-tuning changes the base weights by gradients, which no seed log can replay; save the weights whole (model.saveMerged, or checkpoints with saveBase)',
      );
    if (this.#baseHash === null) throw new ZofoError('ZOFO_INVALID_STATE', 'no step has been taken yet: the trajectory has no base to name');
    const counts = this.model.parameterCounts();
    const stored = this.model.storedNames();
    return {
      version: TRAJECTORY_VERSION,
      base: { hash: this.#baseHash, dtype: this.model.dtype, parameters: counts.reduce((a, b) => a + b, 0) },
      table: stored.map((name, i) => ({ name, count: counts[i], trainable: this.#trainable[i] === 1, decay: this.#decay[i] })),
      estimator: this.zo?.estimator ?? 'forward',
      mu: this.zo?.mu ?? 0,
      perturbations: this.zo?.perturbations ?? 1,
      seed: this.seed,
    };
  }

  /** The seed log so far: base + these records reproduce x bit-for-bit (see replay()). */
  trajectory(): Trajectory {
    return { header: this.#header(), records: this.#records.map((r) => ({ ...r })) };
  }

  /** Writes the trajectory log (atomically). */
  async saveTrajectory(file: string): Promise<void> {
    await writeTrajectory(file, this.trajectory());
  }

  /** Everything needed to continue this run exactly (moments, counters, trajectory). */
  state(): OptimizerState {
    const native = this.#live();
    const tensors = new Map<string, Float32Array>();
    for (const m of native.moments()) {
      const out = new Float32Array(m.length);
      native.getMoment(m.name, out);
      tensors.set(m.name, out);
    }
    const full = this.fo?.params === 'all';
    return {
      json: {
        version: STATE_VERSION,
        step: this.#step,
        foUpdates: native.foUpdates,
        totalSteps: this.totalSteps,
        seed: this.seed.toString(),
        baseHash: this.#baseHash,
        mode: this.mode,
      },
      tensors,
      trajectory: full || this.#baseHash === null ? null : this.trajectory(),
      baseNeedsSaving: full && this.#step > 0,
    };
  }

  /** 'hybrid' | 'zo' | 'lora' | 'full' */
  get mode(): string {
    if (this.zo) return this.fo ? 'hybrid' : 'zo';
    return this.fo?.params === 'all' ? 'full' : 'lora';
  }

  /**
   * Continues from state(). With its trajectory, the model must hold the trajectory's
   * base weights: they are checked by hash and the logged updates replayed onto them,
   * so x equals the saved run's bit for bit (set replay: false if x is already there).
   */
  async loadState(state: OptimizerState, opts: { replay?: boolean } = {}): Promise<void> {
    const native = this.#live();
    const problem = this.stateProblem(state);
    if (problem) throw new ZofoError('ZOFO_INVALID_STATE', `optimizer state: ${problem}`);
    const json = state.json as unknown as StateJson;
    const wanted = native.moments();
    const traj = state.trajectory;
    if (traj && opts.replay !== false) await applyTrajectory(this.model, traj);
    for (const m of wanted) native.setMoment(m.name, state.tensors.get(m.name)!);
    native.foUpdates = json.foUpdates;
    this.#step = json.step;
    if (json.totalSteps !== undefined) this.totalSteps = json.totalSteps;
    this.#records = traj ? traj.records.map((r) => ({ ...r })) : [];
    this.#baseHash = traj ? traj.header.base.hash : (json.baseHash ?? null);
  }

  /**
   * Why `state` cannot be loaded into this optimizer, or undefined: it must be consistent
   * (optimizerStateProblem) and made by an optimizer like this one (mode, seed, moments,
   * and the ZO settings and parameter table its trajectory records, which the next save
   * writes again as its header).
   */
  stateProblem(state: OptimizerState): string | undefined {
    const problem = optimizerStateProblem(state);
    if (problem) return problem;
    const json = state.json as unknown as StateJson;
    if (json.mode !== this.mode) return `it was saved by a '${json.mode}' run; this optimizer is '${this.mode}'`;
    if (u64FromJson(json.seed) !== this.seed) return `it was saved with seed ${json.seed}; this optimizer has seed ${this.seed}`;
    const wanted = this.#live().moments();
    for (const m of wanted) {
      const data = state.tensors.get(m.name);
      if (!(data instanceof Float32Array) || data.length !== m.length)
        return `moment ${m.name} is missing or has the wrong length (expected ${m.length}, found ${data?.length ?? 'none'})`;
    }
    const extra = [...state.tensors.keys()].find((name) => !wanted.some((m) => m.name === name));
    if (extra !== undefined)
      return `moment ${extra} is not one this '${this.mode}' optimizer keeps (it keeps ${wanted.map((m) => m.name).join(', ') || 'none'})`;
    const h = state.trajectory?.header;
    if (!h || !this.zo) return undefined;
    const differs = (what: string, theirs: unknown, ours: unknown) =>
      `the trajectory was recorded with ${what} ${String(theirs)}; this optimizer has ${String(ours)}`;
    if (h.estimator !== this.zo.estimator) return differs('zo.estimator', h.estimator, this.zo.estimator);
    if (h.mu !== this.zo.mu) return differs('zo.mu', h.mu, this.zo.mu);
    if (h.perturbations !== this.zo.perturbations) return differs('zo.perturbations', h.perturbations, this.zo.perturbations);
    const n = Math.min(h.table.length, this.#trainable.length); // a table of another length: applyTrajectory names it
    for (let i = 0; i < n; i++) {
      const t = h.table[i];
      if (t.trainable !== (this.#trainable[i] === 1))
        return differs(`tensor ${t.name}`, t.trainable ? 'trainable' : 'frozen', `it ${this.#trainable[i] === 1 ? 'trainable' : 'frozen'} (zo.freeze)`);
      if (t.decay !== this.#decay[i]) return differs(`a decay mask for ${t.name} of`, t.decay, this.#decay[i]);
    }
    return undefined;
  }

  /** Frees the native state (moments). Further calls throw ZOFO_DISPOSED. */
  dispose(): void {
    this.#native?.dispose();
    this.#native = null;
  }

  /** `await using` support: the same as `dispose()`. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }
}

const MODES = ['hybrid', 'zo', 'lora', 'full'] as const;

/** OptimizerState.json as state() writes it (version 1). */
interface StateJson {
  version: number;
  mode: (typeof MODES)[number];
  step: number;
  foUpdates: number;
  totalSteps?: number;
  /** The run seed as a decimal string (a JSON number in older files). */
  seed: string | number;
  baseHash: string | null;
}

/**
 * The first way an optimizer state disagrees with itself (counters, moments, trajectory),
 * or undefined when it is consistent. It cannot see the optimizer that will load it:
 * loadState checks mode, seed and moment names against that.
 */
export function optimizerStateProblem(state: OptimizerState): string | undefined {
  if (typeof state !== 'object' || state === null) return `expected {json, tensors, trajectory}, not ${describe(state)}`;
  const j = state.json as Partial<Record<keyof StateJson, unknown>> | undefined;
  if (typeof j !== 'object' || j === null) return 'json is missing';
  if (j.version !== STATE_VERSION) return `unsupported version ${describe(j.version)} (this zofo reads version ${STATE_VERSION})`;
  if (!MODES.includes(j.mode as StateJson['mode'])) return `mode is ${describe(j.mode)}, not one of ${MODES.join(', ')}`;
  const count = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
  if (!count(j.step)) return `step must be a non-negative integer, not ${describe(j.step)}`;
  if (!count(j.foUpdates)) return `foUpdates must be a non-negative integer, not ${describe(j.foUpdates)}`;
  if (j.totalSteps !== undefined && !(count(j.totalSteps) && (j.totalSteps as number) >= 1))
    return `totalSteps must be a positive integer, not ${describe(j.totalSteps)}`;
  const seed = u64FromJson(j.seed);
  if (seed === undefined) return `seed must be the decimal string of an integer in 0 .. 2^64-1, not ${describe(j.seed)}`;
  if (j.baseHash !== null && j.baseHash !== undefined && !(typeof j.baseHash === 'string' && /^[0-9a-f]+$/.test(j.baseHash)))
    return `baseHash must be a lowercase hex string or null, not ${describe(j.baseHash)}`;
  const mode = j.mode as StateJson['mode'],
    step = j.step as number;
  // The engine makes one first-order update per applied step, when the run has an FO part.
  const foUpdates = mode === 'zo' ? 0 : step;
  if (j.foUpdates !== foUpdates) return `foUpdates is ${j.foUpdates} but a '${mode}' run of ${step} steps has made ${foUpdates} first-order updates`;
  if (!(state.tensors instanceof Map)) return 'tensors must be a Map of moments';
  for (const [name, data] of state.tensors) {
    if (!(data instanceof Float32Array)) return `moment ${name} is not a Float32Array`;
    const bad = data.findIndex((x) => !Number.isFinite(x));
    if (bad >= 0) return `moment ${name} holds ${data[bad]} at index ${bad} (moments are finite)`;
  }
  const traj = state.trajectory;
  const zo = mode === 'zo' || mode === 'hybrid';
  if (zo && step > 0 && !traj) return `a '${mode}' run of ${step} steps has no trajectory: its base-weight updates could not be replayed`;
  if (traj) {
    const h = traj.header;
    if (h.seed !== seed) return `the trajectory's seed ${h.seed} differs from the state's seed ${seed}`;
    if (typeof j.baseHash === 'string' && h.base.hash !== j.baseHash)
      return `the trajectory starts from base ${h.base.hash}, the state names base ${j.baseHash}`;
    const passes = zo ? step * h.perturbations : 0;
    if (traj.records.length !== passes)
      return `the trajectory holds ${traj.records.length} update passes, but ${zo ? `${step} steps of q = ${h.perturbations} make ${passes}` : `a '${mode}' run makes none`}`;
    const last = traj.records.at(-1);
    if (last && last.step !== step - 1) return `the trajectory's last step is ${last.step}, but the state has taken ${step} steps (last index ${step - 1})`;
  }
  return undefined;
}

/**
 * s_{k,j}: the perturbation seed of step k, perturbation j (both 0-based), under a run
 * seed: Philox4x32-10 keyed by the run seed at counter (k, j, 0x5eed5eed), so nearby
 * (seed, k, j) give unrelated seeds. The engine derives its seeds with the same function.
 */
export function stepSeed(runSeed: number | bigint, k: number, j: number): bigint {
  if (typeof runSeed === 'number' ? !Number.isSafeInteger(runSeed) || runSeed < 0 : typeof runSeed !== 'bigint' || runSeed < 0n || runSeed >= 1n << 64n) {
    throw invalidArg('a 64-bit unsigned seed (bigint or non-negative safe integer)', 'seed', runSeed);
  }
  if (!Number.isSafeInteger(k) || k < 0) throw invalidArg('a non-negative integer', 'k', k);
  if (!Number.isSafeInteger(j) || j < 0 || j > 0xffffffff) throw invalidArg('a non-negative 32-bit integer', 'j', j);
  return cpuBinding().NativeOptimizer.stepSeed(BigInt(runSeed), k, j);
}

/**
 * Applies a trajectory's update passes to a model holding its base weights, after
 * checking the parameter table and the base hash. The model ends bit-identical to the
 * trained one (same backend and dtype).
 */
export async function applyTrajectory(model: Model, traj: Trajectory): Promise<void> {
  const h = traj.header;
  const names = model.storedNames(),
    counts = model.parameterCounts();
  if (h.base.dtype !== model.dtype)
    throw new ZofoError(
      'ZOFO_INVALID_ARG',
      `trajectory: the log was recorded on ${h.base.dtype} weights; this model stores ${model.dtype} (load it with dtype '${h.base.dtype}')`,
    );
  if (h.table.length !== names.length)
    throw new ZofoError('ZOFO_INVALID_ARG', `trajectory: the log's parameter table has ${h.table.length} tensors; this model has ${names.length}`);
  h.table.forEach((t, i) => {
    if (t.name !== names[i] || t.count !== counts[i])
      throw new ZofoError(
        'ZOFO_INVALID_ARG',
        `trajectory: tensor ${i} of the log is ${t.name} (${t.count} values); this model's is ${names[i]} (${counts[i]} values)`,
      );
  });
  const hash = await model.baseHash();
  if (hash !== h.base.hash)
    throw new ZofoError(
      'ZOFO_INVALID_ARG',
      `trajectory: the log starts from base weights with hash ${h.base.hash}; this model's weights hash to ${hash} (a different checkpoint, or already updated)`,
    );
  const n = traj.records.length;
  const seeds = new BigUint64Array(n),
    scales = new Float32Array(n),
    etaLambdas = new Float32Array(n);
  traj.records.forEach((r, i) => {
    seeds[i] = r.seed;
    scales[i] = r.scale;
    etaLambdas[i] = r.etaLambda;
  });
  const trainable = Uint8Array.from(h.table, (t) => (t.trainable ? 1 : 0));
  const decay = Float32Array.from(h.table, (t) => t.decay);
  await awaitNative(() => model.native.applyUpdates(seeds, scales, etaLambdas, trainable, decay), 'applyTrajectory');
}
