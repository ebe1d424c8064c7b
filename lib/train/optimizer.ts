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
import { encodeLossBatch, splitScores, type ClassificationExample, type Example, type Model } from '../model/model.js';
import { learningRate, type ScheduleOptions } from './schedule.js';
import { TRAJECTORY_VERSION, writeTrajectory } from './trajectory.js';
import type {
  FoOptions, HybridOptimizerOptions, OptimizerState, StepOptions, StepResult, TrainableOptimizer, Trajectory,
  TrajectoryHeader, TrajectoryRecord, ZoOptions,
} from './types.js';

const FO_KIND = { sgd: 0, momentum: 1, adamw: 2 } as const;
const STATE_VERSION = 1;

interface ResolvedZo extends Required<Omit<ZoOptions, 'freeze' | 'schedule'>> { freeze: Array<string | RegExp>; schedule: ScheduleOptions }
interface ResolvedFo extends Required<Omit<FoOptions, 'schedule'>> { schedule: ScheduleOptions }

function finiteAtLeast(value: unknown, min: number, name: string, strict = false): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || (strict && value === min)) {
    throw invalidArg(`a finite number ${strict ? '>' : '≥'} ${min}`, name, value);
  }
  return value;
}

function resolveZo(zo: ZoOptions): ResolvedZo {
  if (typeof zo !== 'object') throw invalidArg('an object', 'zo', zo);
  const estimator = zo.estimator ?? 'forward';
  if (estimator !== 'forward' && estimator !== 'central') throw invalidArg("'forward' or 'central'", 'zo.estimator', estimator);
  const foAt = zo.foAt ?? 'center';
  if (foAt !== 'center' && foAt !== 'plus') throw invalidArg("'center' or 'plus'", 'zo.foAt', foAt);
  if (foAt === 'plus' && estimator !== 'central') throw new ZofoError('ZOFO_INVALID_ARG', "zo.foAt 'plus' needs zo.estimator 'central' (the forward estimator already takes the FO gradient at its centre forward)");
  const perturbations = zo.perturbations ?? 1;
  if (!Number.isSafeInteger(perturbations) || perturbations < 1 || perturbations > 65535) throw invalidArg('an integer in 1 .. 65535', 'zo.perturbations', perturbations);
  const freeze = zo.freeze ?? [];
  if (!Array.isArray(freeze) || !freeze.every((f) => (typeof f === 'string' && f.length > 0) || f instanceof RegExp)) {
    throw invalidArg('an array of non-empty strings or RegExps', 'zo.freeze', freeze);
  }
  const mu = finiteAtLeast(zo.mu ?? 1e-3, 0, 'zo.mu', true);
  if (Math.fround(mu) === 0) throw invalidArg('a mu representable in fp32 (≥ 1e-38)', 'zo.mu', mu);
  return {
    lr: finiteAtLeast(zo.lr, 0, 'zo.lr'), mu, estimator, perturbations, foAt, freeze,
    weightDecay: finiteAtLeast(zo.weightDecay ?? 0, 0, 'zo.weightDecay'), schedule: zo.schedule ?? {},
  };
}

function resolveFo(fo: FoOptions): ResolvedFo {
  if (typeof fo !== 'object') throw invalidArg('an object', 'fo', fo);
  const optimizer = fo.optimizer ?? 'sgd';
  if (!(optimizer in FO_KIND)) throw invalidArg("'sgd', 'momentum' or 'adamw'", 'fo.optimizer', optimizer);
  const params = fo.params ?? 'adapters';
  if (params !== 'adapters' && params !== 'all') throw invalidArg("'adapters' or 'all'", 'fo.params', params);
  const betas = fo.betas ?? [0.9, 0.999];
  if (!Array.isArray(betas) || betas.length !== 2 || !betas.every((b) => typeof b === 'number' && b >= 0 && b < 1)) {
    throw invalidArg('two numbers in [0, 1)', 'fo.betas', betas);
  }
  const momentum = fo.momentum ?? 0.9;
  if (typeof momentum !== 'number' || !(momentum >= 0 && momentum < 1)) throw invalidArg('a number in [0, 1)', 'fo.momentum', momentum);
  return {
    lr: finiteAtLeast(fo.lr, 0, 'fo.lr'), optimizer, params, momentum, betas: [betas[0], betas[1]],
    eps: finiteAtLeast(fo.eps ?? 1e-8, 0, 'fo.eps', true), weightDecay: finiteAtLeast(fo.weightDecay ?? 0, 0, 'fo.weightDecay'),
    schedule: fo.schedule ?? {},
  };
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
  readonly #trainable: Uint8Array;
  readonly #decay: Float32Array;

  constructor(model: Model, options: HybridOptimizerOptions) {
    if (typeof options !== 'object' || options === null) throw invalidArg('an options object', 'options', options);
    this.model = model;
    this.zo = options.zo ? resolveZo(options.zo) : null;
    this.fo = options.fo ? resolveFo(options.fo) : null;
    if (!this.zo && !this.fo) throw new ZofoError('ZOFO_INVALID_ARG', 'HybridOptimizer: give zo (zeroth-order on the base weights), fo (first-order), or both');
    if (this.zo && this.fo?.params === 'all') throw new ZofoError('ZOFO_INVALID_ARG', "HybridOptimizer: fo.params 'all' (full fine-tuning) updates every base weight by backprop and cannot be combined with zo");
    if (this.fo?.params === 'all' && model.dtype !== 'f32') throw new ZofoError('ZOFO_UNSUPPORTED', `HybridOptimizer: full fine-tuning needs fp32 base weights; this model was loaded with dtype '${model.dtype}'`);
    const hasAdapters = model.loraNames().length > 0;
    if (this.fo?.params === 'adapters' && !hasAdapters) throw new ZofoError('ZOFO_INVALID_STATE', 'HybridOptimizer: fo updates LoRA adapters but the model has none; call model.addLoRA() first (or use fo.params \'all\', or zo only)');
    const seed = options.seed ?? 0;
    if (typeof seed === 'bigint' ? seed < 0n || seed >= 1n << 64n : !Number.isSafeInteger(seed) || seed < 0) {
      throw invalidArg('a non-negative safe integer', 'seed', seed);
    }
    this.seed = BigInt(seed);
    const total = options.totalSteps ?? 1;
    if (!Number.isSafeInteger(total) || total < 1) throw invalidArg('a positive integer', 'totalSteps', total);
    this.totalSteps = total;
    const names = model.parameterNames();
    this.#trainable = Uint8Array.from(names, (n) => (this.zo?.freeze.some((p) => matches(n, p)) ? 0 : 1));
    if (this.zo && this.#trainable.every((t) => t === 0)) throw new ZofoError('ZOFO_INVALID_ARG', `zo.freeze freezes every base tensor (${names.length}); drop zo for an FO-only run`);
    this.#decay = new Float32Array(names.length).fill(1);
    try {
      this.#native = new model.binding.NativeOptimizer(model.native, {
        zo: this.zo !== null, central: this.zo?.estimator === 'central', foAtPlus: this.zo?.foAt === 'plus',
        q: this.zo?.perturbations ?? 1, mu: this.zo?.mu ?? 1e-3, trainable: this.#trainable, decay: this.#decay,
        foAdapters: this.fo !== null && hasAdapters, foBase: this.fo?.params === 'all',
        foKind: FO_KIND[this.fo?.optimizer ?? 'sgd'], momentum: this.fo?.momentum ?? 0.9,
        beta1: this.fo?.betas[0] ?? 0.9, beta2: this.fo?.betas[1] ?? 0.999, eps: this.fo?.eps ?? 1e-8, seed: this.seed,
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
    const enc = encodeLossBatch(batch, this.model.config.vocabSize);
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
        r = await native.step(b.ids, b.positions, b.mask, b.B, b.T, enc.kind, enc.rows, enc.targets, enc.group,
          enc.candidateExample, enc.candidateIsLabel, enc.examples,
          { step: k, lrX, wdX: this.zo?.weightDecay ?? this.fo?.weightDecay ?? 0, lrY, wdY: this.fo?.weightDecay ?? 0 });
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
    seeds.forEach((seed, j) => this.#records.push({
      step: k, j, q, seed, projectedGrad: projectedGrads[j], lr: Math.fround(lrX), weightDecay: Math.fround(this.zo!.weightDecay),
      scale: scales[j], etaLambda: j === 0 ? Math.fround(etaLambda) : 0,
    }));
    const result: StepResult = { step: k, loss: r.loss, perturbedLosses: Array.from(r.perturbed), projectedGrads, seeds, lrX, lrY };
    if (enc.kind === 1) result.predictions = splitScores(batch as ClassificationExample[], r.scores).predictions;
    return result;
  }

  /** The header a trajectory of this run carries (parameter table by stored key). */
  #header(): TrajectoryHeader {
    if (this.fo?.params === 'all') throw new ZofoError('ZOFO_UNSUPPORTED', 'full fine-tuning changes the base weights by gradients, which no seed log can replay; save the weights whole (model.saveMerged, or checkpoints with saveBase)');
    if (this.#baseHash === null) throw new ZofoError('ZOFO_INVALID_STATE', 'no step has been taken yet: the trajectory has no base to name');
    const counts = this.model.parameterCounts();
    const stored = this.model.storedNames();
    return {
      version: TRAJECTORY_VERSION,
      base: { hash: this.#baseHash, dtype: this.model.dtype, parameters: counts.reduce((a, b) => a + b, 0) },
      table: stored.map((name, i) => ({ name, count: counts[i], trainable: this.#trainable[i] === 1, decay: this.#decay[i] })),
      estimator: this.zo?.estimator ?? 'forward', mu: this.zo?.mu ?? 0, perturbations: this.zo?.perturbations ?? 1,
      seed: Number(this.seed),
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
        version: STATE_VERSION, step: this.#step, foUpdates: native.foUpdates, totalSteps: this.totalSteps,
        seed: this.seed.toString(), baseHash: this.#baseHash, mode: this.mode,
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
    const json = state?.json as Record<string, unknown> | undefined;
    if (!json || json.version !== STATE_VERSION) throw new ZofoError('ZOFO_BAD_FILE', `optimizer state: unsupported version ${describe(json?.version)} (this zofo reads version ${STATE_VERSION})`);
    if (json.mode !== this.mode) throw new ZofoError('ZOFO_INVALID_ARG', `optimizer state was saved by a '${String(json.mode)}' run; this optimizer is '${this.mode}'`);
    if (json.seed !== this.seed.toString()) throw new ZofoError('ZOFO_INVALID_ARG', `optimizer state was saved with seed ${String(json.seed)}; this optimizer has seed ${this.seed}`);
    const step = json.step, foUpdates = json.foUpdates;
    if (!Number.isSafeInteger(step) || (step as number) < 0) throw invalidArg('a non-negative integer', 'state.json.step', step);
    if (!Number.isSafeInteger(foUpdates) || (foUpdates as number) < 0) throw invalidArg('a non-negative integer', 'state.json.foUpdates', foUpdates);
    const wanted = native.moments();
    for (const m of wanted) {
      const data = state.tensors.get(m.name);
      if (!(data instanceof Float32Array) || data.length !== m.length) throw new ZofoError('ZOFO_BAD_FILE', `optimizer state: moment ${m.name} is missing or has the wrong length (expected ${m.length})`);
    }
    const traj = state.trajectory;
    if (traj && opts.replay !== false) await applyTrajectory(this.model, traj);
    for (const m of wanted) native.setMoment(m.name, state.tensors.get(m.name)!);
    native.foUpdates = foUpdates as number;
    this.#step = step as number;
    if (typeof json.totalSteps === 'number') this.totalSteps = json.totalSteps;
    this.#records = traj ? traj.records.map((r) => ({ ...r })) : [];
    this.#baseHash = traj ? traj.header.base.hash : typeof json.baseHash === 'string' ? json.baseHash : null;
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
  const names = model.storedNames(), counts = model.parameterCounts();
  if (h.base.dtype !== model.dtype) throw new ZofoError('ZOFO_INVALID_ARG', `trajectory: the log was recorded on ${h.base.dtype} weights; this model stores ${model.dtype} (load it with dtype '${h.base.dtype}')`);
  if (h.table.length !== names.length) throw new ZofoError('ZOFO_INVALID_ARG', `trajectory: the log's parameter table has ${h.table.length} tensors; this model has ${names.length}`);
  h.table.forEach((t, i) => {
    if (t.name !== names[i] || t.count !== counts[i]) throw new ZofoError('ZOFO_INVALID_ARG', `trajectory: tensor ${i} of the log is ${t.name} (${t.count} values); this model's is ${names[i]} (${counts[i]} values)`);
  });
  const hash = await model.baseHash();
  if (hash !== h.base.hash) throw new ZofoError('ZOFO_INVALID_ARG', `trajectory: the log starts from base weights with hash ${h.base.hash}; this model's weights hash to ${hash} (a different checkpoint, or already updated)`);
  const n = traj.records.length;
  const seeds = new BigUint64Array(n), scales = new Float32Array(n), etaLambdas = new Float32Array(n);
  traj.records.forEach((r, i) => {
    seeds[i] = r.seed;
    scales[i] = r.scale;
    etaLambdas[i] = r.etaLambda;
  });
  const trainable = Uint8Array.from(h.table, (t) => (t.trainable ? 1 : 0));
  const decay = Float32Array.from(h.table, (t) => t.decay);
  await awaitNative(() => model.native.applyUpdates(seeds, scales, etaLambdas, trainable, decay), 'applyTrajectory');
}
