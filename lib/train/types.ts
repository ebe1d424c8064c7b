/**
 * The types the optimizer, the trajectory log, the trainer and its checkpoints share
 * (docs/algorithm.md §2–§4). Kept in one file so each module depends on shapes, not on
 * each other.
 */
import type { Example, Model } from '../model/model.js';
import type { ScheduleOptions } from './schedule.js';
import type { Communicator } from '../distributed/communicator.js';

/** Zeroth-order part: Gaussian-smoothing estimates of ∇_x over the base weights. */
export interface ZoOptions {
  /** η_x, the base-weight learning rate (before its schedule). */
  lr: number;
  /** Smoothing radius μ (default by the model's compute precision: 1e-3 for fp32 and tf32, 3e-3 for bf16; docs/precision.md). */
  mu?: number;
  /** 'forward' (default; (L⁺ − L0)/μ) or 'central' (MeZO's SPSA, (L⁺ − L⁻)/2μ). */
  estimator?: 'forward' | 'central';
  /** q, perturbations per step (default 1). */
  perturbations?: number;
  /** λ_x (default 0). */
  weightDecay?: number;
  /** Central estimator only: take the adapter gradient at the centre (default, 3 forwards) or at x + μz (2 forwards, O(μ) bias). */
  foAt?: 'center' | 'plus';
  /** Base tensors kept fixed: checkpoint-name substrings or regular expressions. */
  freeze?: Array<string | RegExp>;
  schedule?: ScheduleOptions;
}

/** First-order part: backprop updates of the adapters (or, with params 'all', of every base weight). */
export interface FoOptions {
  /** η_y (before its schedule). */
  lr: number;
  /** 'sgd' (default; the analysed method), 'momentum' or 'adamw'. */
  optimizer?: 'sgd' | 'momentum' | 'adamw';
  /** λ_y (default 0); decoupled for AdamW. */
  weightDecay?: number;
  /** Momentum coefficient (default 0.9). */
  momentum?: number;
  /** AdamW (β1, β2) (default [0.9, 0.999]) and ε (default 1e-8). */
  betas?: [number, number];
  eps?: number;
  /** 'adapters' (default) or 'all': full fine-tuning of every base weight (small models; fp32). */
  params?: 'adapters' | 'all';
  schedule?: ScheduleOptions;
}

/**
 * Options of `HybridOptimizer`: the zeroth-order part, the first-order part (either may be omitted, not both), the run seed and the schedules' length.
 */
export interface HybridOptimizerOptions {
  /** The ZO part; omit (or null) for FO-only (LoRA / full fine-tuning). */
  zo?: ZoOptions | null;
  /** The FO part; omit (or null) for ZO-only (MeZO). */
  fo?: FoOptions | null;
  /** Run seed, 64-bit unsigned (a bigint, or a non-negative safe integer): step k's perturbation seeds are derived from (seed, k, j). Default 0. */
  seed?: number | bigint;
  /** Steps the schedules span (linear/cosine decay ends here). Default 1 (constant schedules need nothing else). */
  totalSteps?: number;
  /** Run the step over several processes (docs/distributed.md); omit for one process. */
  parallel?: ParallelOptions | null;
}

/**
 * Several processes, one full replica each, every rank calling step() with the same
 * global batch:
 *   - 'data': each rank takes its slice of the batch (distributed.sliceOf); loss sums,
 *     row counts and adapter-gradient sums are allreduced;
 *   - 'perturbation': each rank evaluates directions j ≡ rank (mod size) on the whole
 *     batch and the perturbed losses are allreduced (needs zo; q > 1 to gain).
 * Every rank then applies the identical update.
 */
export interface ParallelOptions {
  /** 'data': a slice of every batch per rank; 'perturbation': a share of the q directions per rank. */
  kind: 'data' | 'perturbation';
  /** From `await distributed.init()`. */
  comm: Communicator;
  /** Check that the replicas are bit-identical every N steps (default 100; 0: only when asked, e.g. at checkpoints). */
  checkEvery?: number;
}

/** Where this optimizer runs: its parallel mode, rank and world size. */
export interface ParallelInfo {
  /** The parallel mode. */
  kind: 'data' | 'perturbation';
  /** This process's rank, 0 … size − 1. */
  rank: number;
  /** Ranks in the job. */
  size: number;
}

/** What one step did. */
export interface StepResult {
  /**
   * This step's number, 1-based: the first step is 1 (equal to stepCount after it), as
   * in Trainer events and the CLI. The trajectory's records and the seed derivation use
   * the 0-based index k = step − 1.
   */
  step: number;
  /** Loss at the point where the adapter gradient was taken (x_k, y_k) (foAt 'plus': x_k + μz_1). */
  loss: number;
  /** L⁺_j (forward), or L⁺_1, L⁻_1, L⁺_2, L⁻_2, … (central). */
  perturbedLosses: number[];
  /** c_j, the projected gradients. */
  projectedGrads: number[];
  /** s_{k,j}, the perturbation seeds. */
  seeds: bigint[];
  /** The learning rates this step used (after schedules). */
  lrX: number;
  lrY: number;
  /** Classification batches: the argmax candidate per example at the FO point. */
  predictions?: number[];
}

/**
 * An AbortSignal, as zofo's typings name it: the members zofo uses, so the declarations
 * need neither @types/node nor the DOM library. Pass a real `AbortSignal`
 * (`new AbortController().signal`); anything else is rejected at run time.
 */
export interface AbortSignalLike {
  /** Whether the signal has fired. */
  readonly aborted: boolean;
  /** Calls `listener` when the signal fires. */
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  /** Stops calling `listener`. */
  removeEventListener(type: 'abort', listener: () => void): void;
}

/**
 * Options of one `HybridOptimizer.step()`.
 */
export interface StepOptions {
  /** Aborting before the update phase rejects with ZOFO_ABORTED and leaves every weight as it was. */
  signal?: AbortSignalLike;
}

/**
 * One update pass of the base weights, exactly as applied (docs/algorithm.md §7):
 * x ← (1 − etaLambda·decay)·x + scale·z(seed). Replaying these in order on the base
 * reproduces x bit-for-bit on the same backend.
 */
export interface TrajectoryRecord {
  step: number;
  /** j, 0-based, and q. */
  j: number;
  q: number;
  seed: bigint;
  /** c_j (float64). */
  projectedGrad: number;
  /** η_x(k) and λ_x of this step. */
  lr: number;
  weightDecay: number;
  /** The update pass's fp32 arguments: scale = −η c_j / q, etaLambda = η λ (j = 0 only). */
  scale: number;
  etaLambda: number;
}

/** One base tensor as the trajectory's parameter table records it. */
export interface TrajectoryTensor {
  /** Checkpoint key as stored (its FNV-1a-64 is the Philox stream id). */
  name: string;
  count: number;
  /** 0 = frozen (never perturbed or updated). */
  trainable: boolean;
  /** Weight-decay mask. */
  decay: number;
}

/**
 * The header of a trajectory log: base identity, parameter table, estimator, μ, q and run seed (docs/algorithm.md §7).
 */
export interface TrajectoryHeader {
  version: number;
  /** Identity of the base weights the log starts from. */
  base: { hash: string; dtype: string; parameters: number };
  table: TrajectoryTensor[];
  estimator: 'forward' | 'central';
  mu: number;
  perturbations: number;
  /** The run seed, 64-bit unsigned (stored in the file as a decimal string). */
  seed: bigint;
}

/**
 * A whole trajectory log in memory: its header and its records in log order.
 */
export interface Trajectory {
  header: TrajectoryHeader;
  records: TrajectoryRecord[];
}

/** The slice of HybridOptimizer that Trainer relies on. */
export interface TrainableOptimizer {
  readonly model: Model;
  /** Steps taken so far (the next step's index). */
  readonly stepCount: number;
  /** Steps the schedules span; Trainer sets it from its epochs / steps. */
  totalSteps: number;
  /** One step on a minibatch (see `HybridOptimizer.step`). */
  step(batch: Example[], opts?: StepOptions): Promise<StepResult>;
  /** Everything needed to continue exactly: JSON-safe scalars and named fp32 tensors (moments). */
  state(): OptimizerState;
  /**
   * Why `state` cannot be loaded into this optimizer (it disagrees with itself or with this
   * optimizer's settings), or undefined when it can. Checkpoints call it before they change anything.
   */
  stateProblem?(state: OptimizerState): string | undefined;
  /** Restores state(); replays its trajectory onto the base weights the model holds (async). */
  loadState(state: OptimizerState, opts?: { replay?: boolean }): Promise<void>;
  /** The seed log so far. */
  trajectory(): Trajectory;
  /** Writes the seed log atomically. */
  saveTrajectory(file: string): Promise<void>;
  /** Set when the step runs over several processes; Trainer then writes files on rank 0 only. */
  readonly parallel?: ParallelInfo | null;
  /** Distributed runs: throws ZOFO_REPLICA_MISMATCH on every rank if any replica differs. */
  checkReplicas?(): Promise<void>;
}

/**
 * An optimizer's state as `state()` returns it and checkpoints store it.
 */
export interface OptimizerState {
  json: Record<string, unknown>;
  tensors: Map<string, Float32Array>;
  trajectory: Trajectory | null;
  /** The base weights changed in ways no trajectory records (full fine-tuning): checkpoints must save them whole. */
  baseNeedsSaving?: boolean;
}
