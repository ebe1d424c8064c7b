/**
 * The types the optimizer, the trajectory log, the trainer and its checkpoints share
 * (docs/algorithm.md §2–§4). Kept in one file so each module depends on shapes, not on
 * each other.
 */
import type { Example, Model } from '../model/model.js';
import type { ScheduleOptions } from './schedule.js';

/** Zeroth-order part: Gaussian-smoothing estimates of ∇_x over the base weights. */
export interface ZoOptions {
  /** η_x, the base-weight learning rate (before its schedule). */
  lr: number;
  /** Smoothing radius μ (default 1e-3). */
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
  /** Run seed: step k's perturbation seeds are derived from (seed, k, j). Default 0. */
  seed?: number;
  /** Steps the schedules span (linear/cosine decay ends here). Default 1 (constant schedules need nothing else). */
  totalSteps?: number;
}

/** What one step did. */
export interface StepResult {
  /** 0-based index of this step. */
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
 * Options of one `HybridOptimizer.step()`.
 */
export interface StepOptions {
  /** Aborting before the update phase rejects with ZOFO_ABORTED and leaves every weight as it was. */
  signal?: AbortSignal;
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
  seed: number;
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
  /** Restores state(); replays its trajectory onto the base weights the model holds (async). */
  loadState(state: OptimizerState, opts?: { replay?: boolean }): Promise<void>;
  /** The seed log so far. */
  trajectory(): Trajectory;
  /** Writes the seed log atomically. */
  saveTrajectory(file: string): Promise<void>;
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
