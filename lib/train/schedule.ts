/**
 * Learning-rate schedules, one per parameter group (x and y independently, docs/algorithm.md
 * §4): constant, linear decay or cosine, each with an optional linear warm-up from 0.
 */
import { invalidArg } from '../errors.js';

/**
 * A learning-rate schedule for one parameter group: `kind` 'constant' (default), 'linear' or 'cosine' decay, with optional linear warm-up.
 */
export interface ScheduleOptions {
  kind?: 'constant' | 'linear' | 'cosine';
  /** Steps of linear warm-up from 0 to the base rate (default 0). */
  warmupSteps?: number;
  /** Where linear and cosine decay end, at totalSteps (default 0). */
  minLr?: number;
}

/** The learning rate at 0-based `step` of a run of `totalSteps`. */
export function learningRate(baseLr: number, step: number, totalSteps: number, opts: ScheduleOptions = {}): number {
  if (typeof baseLr !== 'number' || !Number.isFinite(baseLr) || baseLr < 0) throw invalidArg('a finite non-negative number', 'lr', baseLr);
  if (!Number.isSafeInteger(step) || step < 0) throw invalidArg('a non-negative integer', 'step', step);
  if (!Number.isSafeInteger(totalSteps) || totalSteps < 1) throw invalidArg('a positive integer', 'totalSteps', totalSteps);
  const kind = opts.kind ?? 'constant';
  if (!['constant', 'linear', 'cosine'].includes(kind)) throw invalidArg("'constant', 'linear' or 'cosine'", 'schedule.kind', kind);
  const warmup = opts.warmupSteps ?? 0,
    minLr = opts.minLr ?? 0;
  if (!Number.isSafeInteger(warmup) || warmup < 0) throw invalidArg('a non-negative integer', 'schedule.warmupSteps', warmup);
  if (typeof minLr !== 'number' || !(minLr >= 0) || minLr > baseLr) throw invalidArg(`a number in 0 .. lr (${baseLr})`, 'schedule.minLr', minLr);
  if (step < warmup) return (baseLr * (step + 1)) / (warmup + 1);
  if (kind === 'constant') return baseLr;
  const span = Math.max(1, totalSteps - warmup);
  const progress = Math.min(1, (step - warmup) / span);
  const shape = kind === 'linear' ? 1 - progress : 0.5 * (1 + Math.cos(Math.PI * progress));
  return minLr + (baseLr - minLr) * shape;
}
