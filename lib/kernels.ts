/**
 * The fused perturbation primitives (docs/algorithm.md §3) on plain typed arrays, for
 * trainers that own their weights and for benchmarking. Every option is validated
 * here, before any memory is touched: bad input throws a ZofoError naming the
 * option, and the buffer is left exactly as it was.
 *
 * @example
 * ```ts
 * import { kernels } from 'zofo';
 *
 * const w = new Float32Array(1 << 20); // one tensor's weights
 * const z = kernels.gaussian(4, { seed: 42n, name: 'layer.weight' }); // z of its first 4 elements
 * kernels.perturb(w, { seed: 42n, name: 'layer.weight', scale: 1e-3 }); // w ← w + μ·z, one pass
 * kernels.restoreUpdate(w, { seed: 42n, name: 'layer.weight', scale: -1e-3 - 0.01 * 0.5, lr: 0.01, weightDecay: 0 });
 * // w ← (w − μ·z) − η·c·z: the restore and an SGD step with projected gradient c = 0.5, fused
 * ```
 *
 * @module
 */
import { cpuBinding, cudaBinding, cudaLoadErrors, type CudaBinding } from './binding.js';
import { awaitNative, describe, invalidArg, rethrowNative, ZofoError } from './errors.js';
import { OptionError } from './errors.js';

const U64_MAX = (1n << 64n) - 1n;

/**
 * Storage dtype of a weight buffer: fp32, bfloat16 or IEEE half (the last two as raw `Uint16Array` bits).
 */
export type Dtype = 'f32' | 'bf16' | 'f16';
const DTYPE_CODE: Record<Dtype, number> = { f32: 0, bf16: 1, f16: 2 };

/** A 64-bit unsigned integer: a bigint, or a non-negative safe integer. */
export type U64 = bigint | number;

function toU64(value: unknown, name: string): bigint {
  if (typeof value === 'bigint') {
    if (value < 0n || value > U64_MAX) throw invalidArg('an integer in 0 .. 2^64-1', name, value);
    return value;
  }
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return BigInt(value);
  throw invalidArg('a bigint or a non-negative safe integer', name, value);
}

function toCount(value: unknown, name: string): number {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return value;
  throw invalidArg('a non-negative safe integer', name, value);
}

/** Largest element count or matrix dimension a kernel takes: 2^31 − 1 (int32 indexing in BLAS and the launchers). */
export const MAX_KERNEL_ELEMENTS = 0x7fffffff;

/** A size argument: an integer in 0 .. MAX_KERNEL_ELEMENTS, named in the error. */
function toSize(value: unknown, name: string): number {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 && value <= MAX_KERNEL_ELEMENTS) return value;
  throw new OptionError(name, `Expected an integer in 0 .. ${MAX_KERNEL_ELEMENTS} (2^31 - 1) for ${name} but received ${describe(value)}`);
}

/** A Float32Array of `n` elements, or ZOFO_OUT_OF_MEMORY naming `what` (never a RangeError). */
function allocate(n: number, what: string): Float32Array {
  try {
    return new Float32Array(n);
  } catch (err) {
    throw new ZofoError('ZOFO_OUT_OF_MEMORY', `${what}: cannot allocate ${n} floats (${((n * 4) / 2 ** 30).toFixed(1)} GiB): ${(err as Error).message}`, {
      cause: err,
    });
  }
}

function toFinite(value: unknown, name: string): number {
  if (typeof value === 'number' && Number.isFinite(value)) return value;
  throw invalidArg('a finite number', name, value);
}

function toThreads(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= 4096) return value;
  throw invalidArg('an integer in 1 .. 4096', 'threads', value);
}

/** Where a kernel runs. 'cuda' copies host arrays to the GPU and back (conformance path). */
export type Device = 'cpu' | 'cuda';

function cudaOrThrow(device: unknown): CudaBinding | null {
  if (device === undefined || device === 'cpu') return null;
  if (device !== 'cuda') throw invalidArg("'cpu' or 'cuda'", 'device', device);
  const cuda = cudaBinding();
  if (!cuda) {
    throw new ZofoError(
      'ZOFO_CUDA',
      'device "cuda" requested but the CUDA addon is not available:' +
        cudaLoadErrors()
          .map((a) => `\n  - ${a.file}: ${a.error}`)
          .join('') +
        '\nIt is built by `npm install` when the CUDA toolkit with cuBLAS is present (ZOFO_CUDA=1 to require it).',
    );
  }
  return cuda;
}

/** Rejects buffers native code must not write to: detached or SharedArrayBuffer-backed. */
function checkWritable(array: ArrayBufferView, name: string): void {
  if (typeof SharedArrayBuffer !== 'undefined' && array.buffer instanceof SharedArrayBuffer) {
    throw new ZofoError('ZOFO_INVALID_ARG', `${name} is backed by a SharedArrayBuffer; zofo only writes to unshared memory (copy it first)`);
  }
  // (Where `detached` is not available, the native layer checks it too.)
  if ((array.buffer as ArrayBuffer & { detached?: boolean }).detached === true) {
    throw new ZofoError('ZOFO_INVALID_ARG', `${name} is backed by a detached ArrayBuffer`);
  }
}

/** Philox stream id of a tensor: FNV-1a-64 of its checkpoint name (UTF-8). */
export function streamId(name: string): bigint {
  if (typeof name !== 'string' || name.length === 0) throw invalidArg('a non-empty tensor name', 'name', name);
  return cpuBinding().fnv1a64(name);
}

function streamOf(opts: { name?: unknown; stream?: unknown }, where: string): bigint {
  if (opts.name !== undefined && opts.stream !== undefined) {
    throw new ZofoError('ZOFO_INVALID_ARG', `${where}: give either name or stream, not both`);
  }
  if (opts.name !== undefined) {
    if (typeof opts.name !== 'string' || opts.name.length === 0) throw invalidArg('a non-empty tensor name', `${where}.name`, opts.name);
    return streamId(opts.name);
  }
  if (opts.stream !== undefined) return toU64(opts.stream, `${where}.stream`);
  throw new ZofoError('ZOFO_INVALID_ARG', `${where}: a tensor name (or its stream id) is required: the noise of a tensor is keyed by its checkpoint name`);
}

/**
 * Philox4x32-10 of one block: counter (4 words) under key (2 words). Exposed for
 * known-answer tests against Random123.
 */
export function philox4x32(counter: ArrayLike<number>, key: ArrayLike<number>): Uint32Array {
  const words = (v: ArrayLike<number>, n: number, name: string) => {
    if (!v || v.length !== n) throw invalidArg(`${n} 32-bit words`, name, v);
    const out = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      const w = v[i];
      if (!Number.isInteger(w) || w < 0 || w > 0xffffffff) throw invalidArg('a 32-bit unsigned word', `${name}[${i}]`, w);
      out[i] = w;
    }
    return out;
  };
  return cpuBinding().philox4x32(words(counter, 4, 'counter'), words(key, 2, 'key'));
}

/**
 * Which slice of the perturbation stream `gaussian()` draws: the key, the tensor (by name or stream id), the first element, and the thread count.
 */
export interface GaussianOptions {
  /** 64-bit step seed s_{k,j}. */
  seed: U64;
  /** Tensor name as stored in the checkpoint (its stream id is FNV-1a-64 of it)… */
  name?: string;
  /** …or the stream id itself. */
  stream?: U64;
  /** Index of the first element wanted (0-based, row-major in checkpoint layout). Default 0. */
  offset?: U64;
  /** Worker threads (default: ZOFO_NUM_THREADS or all cores). Results never depend on it. */
  threads?: number;
  /** 'cpu' (default) or 'cuda': both give bit-identical z. */
  device?: Device;
}

/** The exact z of elements offset … offset+count−1 of tensor `name` under `seed`. */
export function gaussian(count: number, opts: GaussianOptions): Float32Array {
  const n = toSize(count, 'count');
  if (typeof opts !== 'object' || opts === null) throw invalidArg('an options object', 'gaussian options', opts);
  const seed = toU64(opts.seed, 'seed');
  const stream = streamOf(opts, 'gaussian');
  const offset = toU64(opts.offset ?? 0, 'offset');
  if (offset + BigInt(n) - 1n > U64_MAX) throw new ZofoError('ZOFO_INVALID_ARG', `offset ${offset} + count ${n} runs past element 2^64-1`);
  const threads = toThreads(opts.threads);
  const cuda = cudaOrThrow(opts.device);
  const out = allocate(n, 'gaussian');
  try {
    if (cuda) cuda.gaussian(seed, stream, offset, out);
    else cpuBinding().gaussian(seed, stream, offset, out, threads);
  } catch (err) {
    rethrowNative(err, 'gaussian');
  }
  return out;
}

/** One tensor's slice of a flat weight buffer. */
export interface TensorSlice {
  /** Checkpoint name (or give `stream`). */
  name?: string;
  stream?: U64;
  /** First element of the slice in the buffer. */
  offset: number;
  /** Number of elements. */
  count: number;
  /** Tensor element index of buffer[offset] (non-zero when a tensor is split). Default 0. */
  first?: U64;
  /** Whether weight decay applies to this tensor (default true). */
  decay?: boolean;
}

/**
 * Options of `perturb()`: the key, the scale a of x ← x + a·z, the storage dtype, the tensor (name or stream, first element) or a table of tensors, the thread count and the device.
 */
export interface PerturbOptions {
  seed: U64;
  /** a in x ← x + a·z (e.g. μ to perturb, −μ to restore). */
  scale: number;
  /** Storage dtype: implied 'f32' for a Float32Array; required ('bf16' | 'f16') for a Uint16Array. */
  dtype?: Dtype;
  /** The whole buffer is one tensor: its name (or stream) and the element index of buffer[0]. */
  name?: string;
  stream?: U64;
  offset?: U64;
  /** Or: a table of tensors laid out in the buffer (sorted by offset, disjoint). */
  tensors?: readonly TensorSlice[];
  threads?: number;
  /** 'cpu' (default) or 'cuda' (sync calls only): bit-identical results. */
  device?: Device;
}

/**
 * Options of `restoreUpdate()`: those of `perturb()` plus the update's weight-decay term.
 */
export interface RestoreUpdateOptions extends PerturbOptions {
  /** η: the learning rate of this step (multiplies weight decay). Default 0. */
  lr?: number;
  /** λ: weight decay, applied to tensors whose `decay` is not false. Default 0. */
  weightDecay?: number;
}

interface Prepared {
  weights: Float32Array | Uint16Array;
  dtype: number;
  table: BigUint64Array;
  decay: Float32Array;
  seed: bigint;
  scale: number;
  etaLambda: number;
  threads: number | undefined;
  cuda: CudaBinding | null;
}

function prepare(weights: unknown, opts: RestoreUpdateOptions, what: string): Prepared {
  if (!(weights instanceof Float32Array) && !(weights instanceof Uint16Array)) {
    throw invalidArg('a Float32Array (f32) or a Uint16Array (bf16/f16 bits)', `${what} weights`, weights);
  }
  checkWritable(weights, `${what} weights`);
  if (typeof opts !== 'object' || opts === null) throw invalidArg('an options object', `${what} options`, opts);
  let dtype: Dtype;
  if (weights instanceof Float32Array) {
    if (opts.dtype !== undefined && opts.dtype !== 'f32') throw invalidArg("'f32' (or nothing) for a Float32Array", 'dtype', opts.dtype);
    dtype = 'f32';
  } else {
    if (opts.dtype !== 'bf16' && opts.dtype !== 'f16') throw invalidArg("'bf16' or 'f16' for a Uint16Array", 'dtype', opts.dtype);
    dtype = opts.dtype;
  }
  const seed = toU64(opts.seed, 'seed');
  const scale = toFinite(opts.scale, 'scale');
  const lr = toFinite(opts.lr ?? 0, 'lr');
  const weightDecay = toFinite(opts.weightDecay ?? 0, 'weightDecay');
  const threads = toThreads(opts.threads);
  const cuda = cudaOrThrow(opts.device);

  let slices: { stream: bigint; offset: number; count: number; first: bigint; decay: number }[];
  if (opts.tensors !== undefined) {
    if (opts.name !== undefined || opts.stream !== undefined || opts.offset !== undefined) {
      throw new ZofoError('ZOFO_INVALID_ARG', `${what}: give either tensors, or name/stream/offset for a single tensor, not both`);
    }
    if (!Array.isArray(opts.tensors)) throw invalidArg('an array of tensor slices', 'tensors', opts.tensors);
    slices = opts.tensors.map((t, i) => {
      const where = `tensors[${i}]`;
      if (typeof t !== 'object' || t === null) throw invalidArg('a tensor slice object', where, t);
      if (t.decay !== undefined && typeof t.decay !== 'boolean') throw invalidArg('a boolean', `${where}.decay`, t.decay);
      return {
        stream: streamOf(t, where),
        offset: toCount(t.offset, `${where}.offset`),
        count: toCount(t.count, `${where}.count`),
        first: toU64(t.first ?? 0, `${where}.first`),
        decay: t.decay === false ? 0 : 1,
      };
    });
  } else {
    slices = [{ stream: streamOf(opts, what), offset: 0, count: weights.length, first: toU64(opts.offset ?? 0, 'offset'), decay: 1 }];
  }
  let end = 0;
  slices.forEach((s, i) => {
    const name = opts.tensors ? `tensors[${i}]` : 'the tensor';
    if (s.offset + s.count > weights.length) {
      throw new ZofoError(
        'ZOFO_INVALID_ARG',
        `${name} (offset ${s.offset}, count ${s.count}) runs past the end of the weights buffer of ${weights.length} elements`,
      );
    }
    if (s.offset < end) throw new ZofoError('ZOFO_INVALID_ARG', `${name} overlaps the previous tensor: slices must be sorted by offset and disjoint`);
    if (s.first + BigInt(s.count) - 1n > U64_MAX) throw new ZofoError('ZOFO_INVALID_ARG', `${name}: first + count runs past element 2^64-1`);
    end = s.offset + s.count;
  });
  const table = new BigUint64Array(4 * slices.length);
  const decay = new Float32Array(slices.length);
  slices.forEach((s, i) => {
    table.set([BigInt(s.offset), BigInt(s.count), s.stream, s.first], 4 * i);
    decay[i] = s.decay;
  });
  return { weights, dtype: DTYPE_CODE[dtype], table, decay, seed, scale, etaLambda: lr * weightDecay, threads, cuda };
}

function run(p: Prepared, what: string): void {
  try {
    if (p.cuda) p.cuda.axpby(p.weights, p.dtype, p.table, p.decay, p.seed, p.scale, p.etaLambda);
    else cpuBinding().axpby(p.weights, p.dtype, p.table, p.decay, p.seed, p.scale, p.etaLambda, p.threads);
  } catch (err) {
    rethrowNative(err, what);
  }
}

async function runAsync(p: Prepared, what: string): Promise<void> {
  if (p.cuda) throw new ZofoError('ZOFO_INVALID_ARG', `${what}: the async variants run on the CPU; use the sync call with device 'cuda'`);
  await awaitNative(() => cpuBinding().axpbyAsync(p.weights, p.dtype, p.table, p.decay, p.seed, p.scale, p.etaLambda, p.threads), what);
}

/** x ← x + scale·z over one tensor or a table of tensors, in one fused pass. */
export function perturb(weights: Float32Array | Uint16Array, opts: PerturbOptions): void {
  run(prepare(weights, { ...opts, lr: 0, weightDecay: 0 }, 'perturb'), 'perturb');
}

/**
 * The fused restore+update of docs/algorithm.md §2 step 3, in one pass:
 * x ← (1 − lr·weightDecay·mask)·x + scale·z, with mask = 0 for tensors whose
 * `decay` is false.
 */
export function restoreUpdate(weights: Float32Array | Uint16Array, opts: RestoreUpdateOptions): void {
  run(prepare(weights, opts, 'restoreUpdate'), 'restoreUpdate');
}

/** perturb() off the JS thread. Do not transfer or resize the buffer until it settles. */
export function perturbAsync(weights: Float32Array | Uint16Array, opts: PerturbOptions): Promise<void> {
  try {
    return runAsync(prepare(weights, { ...opts, lr: 0, weightDecay: 0 }, 'perturb'), 'perturb');
  } catch (err) {
    return Promise.reject(err);
  }
}

/** restoreUpdate() off the JS thread. Do not transfer or resize the buffer until it settles. */
export function restoreUpdateAsync(weights: Float32Array | Uint16Array, opts: RestoreUpdateOptions): Promise<void> {
  try {
    return runAsync(prepare(weights, opts, 'restoreUpdate'), 'restoreUpdate');
  } catch (err) {
    return Promise.reject(err);
  }
}

/**
 * Options of `matmul()`: transposes, the BLAS-style scalars `alpha` and `beta`, and the thread count.
 */
export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
  alpha?: number;
  beta?: number;
  /** 'auto' (BLAS when built with one), 'blas', or 'builtin' (the portable kernel). */
  impl?: 'auto' | 'blas' | 'builtin';
  threads?: number;
  /**
   * Operand precision: 'fp32' (default), or 'bf16' / 'tf32', which round op(A) and op(B)
   * to nearest even first and then multiply and add in fp32, as tensor cores do.
   */
  compute?: 'fp32' | 'tf32' | 'bf16';
}

/** C (M×N) = alpha·op(A)·op(B) + beta·C, row-major Float32Arrays. */
export function matmul(M: number, N: number, K: number, A: Float32Array, B: Float32Array, C: Float32Array, opts: MatmulOptions = {}): void {
  const m = toSize(M, 'M'),
    n = toSize(N, 'N'),
    k = toSize(K, 'K');
  for (const [arr, name, need] of [
    [A, 'A', m * k],
    [B, 'B', k * n],
    [C, 'C', m * n],
  ] as const) {
    if (!(arr instanceof Float32Array)) throw invalidArg('a Float32Array', name, arr);
    if (arr.length < need) throw new ZofoError('ZOFO_INVALID_ARG', `${name} has ${arr.length} elements but (M, N, K) = (${m}, ${n}, ${k}) needs ${need}`);
  }
  checkWritable(C, 'C');
  const impl = opts.impl ?? 'auto';
  if (!['auto', 'blas', 'builtin'].includes(impl)) throw invalidArg("'auto', 'blas' or 'builtin'", 'impl', impl);
  const compute = opts.compute ?? 'fp32';
  if (!['fp32', 'tf32', 'bf16'].includes(compute)) throw invalidArg("'fp32', 'tf32' or 'bf16'", 'compute', compute);
  try {
    cpuBinding().sgemm(
      !!opts.transA,
      !!opts.transB,
      m,
      n,
      k,
      toFinite(opts.alpha ?? 1, 'alpha'),
      A,
      B,
      toFinite(opts.beta ?? 0, 'beta'),
      C,
      { auto: 0, blas: 1, builtin: 2 }[impl],
      toThreads(opts.threads),
      { fp32: 0, tf32: 1, bf16: 2 }[compute],
    );
  } catch (err) {
    rethrowNative(err, 'matmul');
  }
}
