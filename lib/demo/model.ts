/**
 * The model and task of `zofo demo`: a tiny Llama pretrained on the synthetic review
 * language of ./language.ts (shipped in the package under demo/model/, made by
 * scripts/make-demo-model.ts), and the built-in sentiment task it is fine-tuned on.
 */
import { join } from 'node:path';
import { packageRoot } from '../binding.js';
import { ZofoError } from '../errors.js';
import type { ClassificationExample } from '../model/model.js';
import type { Tokenizer } from '../model/tokenizer.js';
import { CANDIDATES, demoReviews, promptOf, type Review } from './language.js';

/**
 * Absolute path of the demo model shipped inside the zofo package (config.json,
 * model.safetensors, tokenizer.json): a tiny pretrained Llama for trying the API,
 * e.g. `await loadModel(demoModelDir())`, without guessing `node_modules/zofo/demo/model`.
 */
export function demoModelDir(): string {
  return join(packageRoot, 'demo', 'model');
}

export interface DemoTaskOptions {
  /** Training examples (default 256). */
  train?: number;
  /** Dev examples (default 200). */
  dev?: number;
  /** Seed of the split (default 0); dev never repeats a training review. */
  seed?: number;
}

/** The reviews behind demoTask (same options, same order), with their kinds. */
export function demoTaskReviews(opts: DemoTaskOptions = {}): { train: Review[]; dev: Review[] } {
  const nTrain = opts.train ?? 256,
    nDev = opts.dev ?? 200,
    seed = opts.seed ?? 0;
  for (const [name, n] of [
    ['train', nTrain],
    ['dev', nDev],
  ] as const) {
    if (!Number.isSafeInteger(n) || n < 0) throw new ZofoError('ZOFO_INVALID_ARG', `demoTask: ${name} must be a non-negative integer, got ${String(n)}`);
  }
  if (!Number.isSafeInteger(seed) || seed < 0) throw new ZofoError('ZOFO_INVALID_ARG', `demoTask: seed must be a non-negative integer, got ${String(seed)}`);
  // Distinct streams per split, far from the pretraining corpus seeds (small integers).
  const train = demoReviews(nTrain, 0x7a11 + 2 * seed);
  const dev = demoReviews(nDev, 0x7a12 + 2 * seed, new Set(train.map((r) => r.text)));
  return { train, dev };
}

/**
 * The built-in task: SST-2-style sentiment classification of the demo language's
 * reviews (docs/algorithm.md §5): prompt "<review> It was", candidates [" terrible", " great"],
 * label 0 (negative) or 1 (positive). Labels are balanced; a mix of simple, negated and
 * contrasted reviews (language.ts DEMO_MIX).
 */
export function demoTask(tokenizer: Tokenizer, opts: DemoTaskOptions = {}): { train: ClassificationExample[]; dev: ClassificationExample[] } {
  const candidates = CANDIDATES.map((c) => tokenizer.encode(c, { addSpecialTokens: false }));
  candidates.forEach((ids, i) => {
    if (ids.length !== 1)
      throw new ZofoError(
        'ZOFO_INVALID_ARG',
        `demoTask: the candidate ${JSON.stringify(CANDIDATES[i])} is ${ids.length} tokens with this tokenizer; the demo tokenizer makes it one`,
      );
  });
  const { train, dev } = demoTaskReviews(opts);
  const toExample = (r: Review): ClassificationExample => ({
    prompt: tokenizer.encode(promptOf(r), { addSpecialTokens: false }),
    candidates: candidates.map((c) => [...c]),
    label: r.label,
  });
  return { train: train.map(toExample), dev: dev.map(toExample) };
}
