/**
 * Random reshuffling (docs/algorithm.md §4): every epoch walks a fresh seeded permutation of
 * the n examples in minibatches, without replacement. The permutation of epoch e is a
 * pure function of (seed, e), so the sampler's whole state is { epoch, position }:
 * a resumed run sees exactly the batches an uninterrupted run would.
 */
import { invalidArg } from '../errors.js';
import { foldSeed32, isU64 } from '../validate/u64.js';

/**
 * Options of `ReshufflingSampler`: batch size, seed, and what to do with a short last batch.
 */
export interface SamplerOptions {
  /** Examples per minibatch. */
  batchSize: number;
  /** Seed of the epoch permutations: 64-bit unsigned (a bigint, or a non-negative safe integer). */
  seed: number | bigint;
  /** Drop a last batch smaller than batchSize (default false: keep it). */
  dropLast?: boolean;
  /** Sample with replacement instead (an option; the analysed method reshuffles). */
  withReplacement?: boolean;
}

/**
 * Where a sampler stands: the epoch and the position inside that epoch's permutation (the whole state: permutations are a pure function of seed and epoch).
 */
export interface SamplerState {
  epoch: number;
  position: number;
}

// xoshiro128** seeded through splitmix32: small, fast, and fully specified here so a
// permutation never changes between versions or platforms.
function splitmix32(x: number): () => number {
  let s = x >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

function xoshiro128ss(seed: number, stream: number): () => number {
  const init = splitmix32((seed ^ Math.imul(stream + 1, 0x9e3779b1)) >>> 0);
  let a = init(),
    b = init(),
    c = init(),
    d = init();
  return () => {
    const result = Math.imul(((Math.imul(b, 5) << 7) | (Math.imul(b, 5) >>> 25)) >>> 0, 9) >>> 0;
    const t = (b << 9) >>> 0;
    c ^= a;
    d ^= b;
    b ^= c;
    a ^= d;
    c ^= t;
    d = ((d << 11) | (d >>> 21)) >>> 0;
    a >>>= 0;
    b >>>= 0;
    c >>>= 0;
    return result;
  };
}

/** A uniform integer in [0, n) without modulo bias. */
function below(next: () => number, n: number): number {
  const limit = Math.floor(0x100000000 / n) * n;
  for (;;) {
    const x = next();
    if (x < limit) return x % n;
  }
}

/** The permutation of 0..n-1 used in `epoch` (Fisher–Yates). */
export function epochPermutation(n: number, seed: number | bigint, epoch: number): Uint32Array {
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  const next = xoshiro128ss(foldSeed32(seed), epoch);
  for (let i = n - 1; i > 0; i--) {
    const j = below(next, i + 1);
    const t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  return p;
}

/**
 * Random-reshuffling minibatches: every epoch walks a fresh seeded permutation without
 * replacement (docs/algorithm.md §4). Its state is `{ epoch, position }`, so a resumed run
 * sees the batches an uninterrupted one would.
 */
export class ReshufflingSampler {
  readonly n: number;
  readonly batchSize: number;
  readonly seed: bigint;
  readonly dropLast: boolean;
  readonly withReplacement: boolean;
  #epoch = 0;
  #position = 0;
  #perm: Uint32Array | null = null;

  constructor(n: number, opts: SamplerOptions) {
    if (!Number.isSafeInteger(n) || n < 1) throw invalidArg('a positive number of examples', 'n', n);
    if (!Number.isSafeInteger(opts.batchSize) || opts.batchSize < 1) throw invalidArg('a positive integer', 'batchSize', opts.batchSize);
    if (!isU64(opts.seed)) throw invalidArg('a bigint in 0 .. 2^64-1 or a non-negative safe integer', 'seed', opts.seed);
    if (opts.dropLast && opts.batchSize > n) throw invalidArg(`a batch size ≤ the ${n} examples when dropLast is set`, 'batchSize', opts.batchSize);
    this.n = n;
    this.batchSize = opts.batchSize;
    this.seed = BigInt(opts.seed);
    this.dropLast = opts.dropLast ?? false;
    this.withReplacement = opts.withReplacement ?? false;
  }

  /** Minibatches per epoch. */
  get batchesPerEpoch(): number {
    return this.dropLast ? Math.floor(this.n / this.batchSize) : Math.ceil(this.n / this.batchSize);
  }

  /** Where the sampler stands now (what a checkpoint stores). */
  get state(): SamplerState {
    return { epoch: this.#epoch, position: this.#position };
  }

  /** Resumes at a saved state (from `state`). */
  restore(state: SamplerState): void {
    if (!Number.isSafeInteger(state?.epoch) || state.epoch < 0) throw invalidArg('a non-negative integer', 'state.epoch', state?.epoch);
    if (!Number.isSafeInteger(state.position) || state.position < 0 || state.position > this.n) {
      throw invalidArg(`an integer in 0 .. ${this.n}`, 'state.position', state.position);
    }
    this.#epoch = state.epoch;
    this.#position = state.position;
    this.#perm = null;
  }

  /** The indices of the next minibatch; crosses into the next epoch (a fresh permutation) as needed. */
  next(): { indices: number[]; epoch: number } {
    const remaining = this.n - this.#position;
    if (remaining === 0 || (this.dropLast && remaining < this.batchSize)) {
      this.#epoch += 1;
      this.#position = 0;
      this.#perm = null;
    }
    const epoch = this.#epoch;
    const take = Math.min(this.batchSize, this.n - this.#position);
    let indices: number[];
    if (this.withReplacement) {
      const next = xoshiro128ss(foldSeed32(this.seed) ^ 0x5a5a5a5a, epoch * 0x10000 + this.#position);
      indices = Array.from({ length: take }, () => below(next, this.n));
    } else {
      this.#perm ??= epochPermutation(this.n, this.seed, epoch);
      indices = Array.from(this.#perm.subarray(this.#position, this.#position + take));
    }
    this.#position += take;
    return { indices, epoch };
  }
}
