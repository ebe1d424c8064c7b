/**
 * The schemas of zofo's API option objects: HybridOptimizer (with its zo / fo parts and
 * their schedules), Trainer and addLoRA. Each is checked whole when the object is
 * constructed (not at the first step), unknown keys included; cross-field rules the
 * schemas cannot state (minLr ≤ lr, LoRA scaling) are checked here too, so that callers
 * get one function per options object.
 */
import { describe } from '../errors.js';
import type { LoraOptions } from '../model/model.js';
import type { ScheduleOptions } from '../train/schedule.js';
import type { HybridOptimizerOptions } from '../train/types.js';
import type { TrainerOptions } from '../train/trainer.js';
import {
  array,
  boolean,
  either,
  instance,
  integer,
  nonEmptyString,
  nullish,
  number,
  oneOf,
  optional,
  OptionError,
  pair,
  parse,
  strict,
  u64,
  type Schema,
} from './schema.js';

const finiteAtLeast0 = () => number('a finite number ≥ 0', (x) => Number.isFinite(x) && x >= 0);
const finiteAbove0 = () => number('a finite number > 0', (x) => Number.isFinite(x) && x > 0);
const unitInterval = () => number('a number in [0, 1)', (x) => x >= 0 && x < 1);

// Spellings from other libraries (PyTorch, HF, PEFT) that edit distance would not find.
const ALIASES = {
  learning_rate: 'lr',
  learningRate: 'lr',
  eta: 'lr',
  epsilon: 'eps',
  max_steps: 'steps',
  num_train_epochs: 'epochs',
  batch_size: 'batchSize',
  per_device_train_batch_size: 'batchSize',
  warmup: 'warmupSteps',
  min_lr: 'minLr',
  zo_eps: 'mu',
  r: 'rank',
  lora_alpha: 'alpha',
  lora_r: 'rank',
  target_modules: 'targets',
  num_perturbations: 'perturbations',
} as const;

const schedule = (): Schema =>
  optional(
    strict(
      {
        kind: optional(oneOf(['constant', 'linear', 'cosine'] as const)),
        warmupSteps: optional(integer(0)),
        minLr: optional(finiteAtLeast0()),
      },
      'a schedule object',
      ALIASES,
    ),
  );

const zo = strict(
  {
    lr: finiteAtLeast0(),
    mu: optional(
      number('a finite number > 0 representable in fp32 (≥ 1e-38)', (x) => Number.isFinite(x) && x > 0 && Math.fround(x) > 0 && Math.fround(x) < Infinity),
    ),
    estimator: optional(oneOf(['forward', 'central'] as const)),
    perturbations: optional(integer(1, 65535)),
    weightDecay: optional(finiteAtLeast0()),
    foAt: optional(oneOf(['center', 'plus'] as const)),
    freeze: optional(
      array(
        either((x) => x instanceof RegExp, instance(RegExp, 'a RegExp'), nonEmptyString('a non-empty string or a RegExp')),
        'an array of non-empty strings or RegExps',
      ),
    ),
    schedule: schedule(),
  },
  'an object (the zeroth-order options)',
  ALIASES,
);

const fo = strict(
  {
    lr: finiteAtLeast0(),
    optimizer: optional(oneOf(['sgd', 'momentum', 'adamw'] as const)),
    weightDecay: optional(finiteAtLeast0()),
    momentum: optional(unitInterval()),
    betas: optional(pair(unitInterval(), 'two numbers in [0, 1)')),
    eps: optional(finiteAbove0()),
    params: optional(oneOf(['adapters', 'all'] as const)),
    schedule: schedule(),
  },
  'an object (the first-order options)',
  ALIASES,
);

const hybrid = strict(
  {
    zo: nullish(zo),
    fo: nullish(fo),
    seed: optional(u64()),
    totalSteps: optional(integer(1)),
    // { kind, comm, checkEvery? }: checked in detail by the optimizer (it needs the communicator class).
    parallel: optional(instance(Object, "an object { kind: 'data' | 'perturbation', comm, checkEvery? }")),
  },
  'an options object',
  ALIASES,
);

/** Checks a schedule against its base rate (minLr ≤ lr); `at` is its path, e.g. `zo.schedule`. */
function checkSchedule(lr: number, s: ScheduleOptions | undefined, at: string): void {
  if (s?.minLr !== undefined && s.minLr > lr)
    throw new OptionError(`${at}.minLr`, `Expected a number in 0 .. lr (${lr}) for ${at}.minLr but received ${describe(s.minLr)}`);
}

/** Validates HybridOptimizer options (every field, unknown keys, schedules) and returns them. */
export function validateOptimizerOptions(options: unknown): HybridOptimizerOptions {
  const o = parse<HybridOptimizerOptions>(hybrid, options);
  if (o.zo) checkSchedule(o.zo.lr, o.zo.schedule, 'zo.schedule');
  if (o.fo) checkSchedule(o.fo.lr, o.fo.schedule, 'fo.schedule');
  return o;
}

// Each example's fields are checked when it is batched (encodeLossBatch).
const nonEmptyExamples = (): Schema => array(instance(Object, 'an example object'), 'a non-empty array of examples');

const trainer = strict(
  {
    batchSize: integer(1),
    epochs: optional(integer(1)),
    steps: optional(integer(1)),
    seed: optional(u64()),
    dropLast: optional(boolean()),
    withReplacement: optional(boolean()),
    eval: optional(
      either(
        Array.isArray,
        nonEmptyExamples(),
        strict(
          {
            data: nonEmptyExamples(),
            every: optional(integer(1)),
            batchSize: optional(integer(1)),
            metric: optional(oneOf(['loss', 'accuracy'] as const)),
          },
          'an array of examples or { data, every?, batchSize?, metric? }',
          ALIASES,
        ),
      ),
    ),
    earlyStop: optional(
      strict(
        {
          patience: integer(1),
          minDelta: optional(finiteAtLeast0()),
        },
        'an object { patience, minDelta? }',
        ALIASES,
      ),
    ),
    checkpoint: optional(
      strict(
        {
          dir: nonEmptyString('a directory path'),
          every: optional(integer(1)),
          keep: optional(integer(1)),
          best: optional(boolean()),
          saveBase: optional(boolean()),
        },
        'an object { dir, every?, keep?, best?, saveBase? }',
        ALIASES,
      ),
    ),
    onNonFinite: optional(oneOf(['skip', 'stop'] as const)),
    signal: optional(instance(AbortSignal, 'an AbortSignal')),
    distributed: optional(boolean()),
  },
  'an options object',
  ALIASES,
);

/** Validates Trainer options and returns them (cross-field rules such as "epochs or steps" stay with the Trainer). */
export function validateTrainerOptions(options: unknown): TrainerOptions {
  const o = parse<TrainerOptions>(trainer, options);
  const data = Array.isArray(o.eval) ? o.eval : o.eval?.data;
  if (o.eval !== undefined && data!.length === 0)
    throw new OptionError(
      Array.isArray(o.eval) ? 'eval' : 'eval.data',
      `Expected a non-empty array of examples for ${Array.isArray(o.eval) ? 'eval' : 'eval.data'} but received an array of length 0`,
    );
  return o;
}

/** Largest LoRA rank accepted (PEFT ranks are at most a few hundred). */
export const MAX_LORA_RANK = 65536;
/** Largest LoRA scaling alpha / rank accepted: beyond it an adapter dominates any base weight, and fp32 overflows soon after. */
export const MAX_LORA_SCALING = 1024;

const lora = strict(
  {
    rank: optional(integer(1, MAX_LORA_RANK)),
    alpha: optional(finiteAbove0()),
    targets: optional(array(nonEmptyString(), 'a non-empty array of module names')),
    seed: optional(u64()),
  },
  'an options object',
  ALIASES,
);

/** Validates addLoRA options, including the scaling alpha / rank (finite, > 0, ≤ MAX_LORA_SCALING). */
export function validateLoraOptions(options: unknown, defaults: { rank: number; alpha: number }): LoraOptions {
  const o = parse<LoraOptions>(lora, options);
  if (o.targets !== undefined && o.targets.length === 0)
    throw new OptionError('targets', 'Expected a non-empty array of module names for targets but received an array of length 0');
  const rank = o.rank ?? defaults.rank,
    alpha = o.alpha ?? defaults.alpha;
  if (alpha / rank > MAX_LORA_SCALING) {
    throw new OptionError(
      'alpha',
      `Expected an alpha with alpha / rank ≤ ${MAX_LORA_SCALING} for alpha but received ${describe(alpha)} (rank ${rank}: scaling ${alpha / rank})`,
    );
  }
  return o;
}
