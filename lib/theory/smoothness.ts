/**
 * Estimates of the hybrid smoothness constants of docs/algorithm.md §6 on a user's problem,
 * and the step sizes they admit.
 *
 *   ‖∇_x f(x₁,y) − ∇_x f(x₂,y)‖ ≤ L_x‖x₁ − x₂‖,   ‖∇_y f(x,y₁) − ∇_y f(x,y₂)‖ ≤ L_y‖y₁ − y₂‖.
 *
 * For a C² loss the best constants at a point are the spectral norms of the Hessian blocks
 * ∇²_yy f and ∇²_xx f. `estimateSmoothness` measures them by power iteration on
 * finite-difference Hessian–vector products of a gradient,
 *
 *   H v ≈ (∇ f(w + t v) − ∇ f(w − t v)) / (2t)      (central difference, error O(t²)),
 *
 * a fixed number of products per minibatch (model) or per random restart (plain
 * objective), and reports |vᵀHv| of the final unit vector v (its Rayleigh quotient),
 * which converges to the largest |eigenvalue| from below. L_y uses the adapter gradient
 * (one backward that never forms a base gradient); L_x uses the full base gradient,
 * affordable only for small models (or any objective that has gradX). For every model
 * size it also measures the forward-only curvature along random unit directions,
 *
 *   q(v) = (f(w + t v) − 2 f(w) + f(w − t v)) / t² ≈ vᵀ ∇²_xx f v,
 *
 * the quantity the zeroth-order (Gaussian-smoothing) analysis actually meets; each q(v) is
 * a lower bound on L_x (vᵀHv ≤ λmax ≤ ‖H‖), typically far below it.
 *
 * Step lengths are RELATIVE to the parameter scale: the displacement along a unit
 * direction v has length t = h · max(1, ‖w‖) for the block w being perturbed (x or y), so
 * each element moves by about h·RMS(w)·|N(0,1)|, a relative change of order h. Two steps:
 *   - `h` (default 1e-3) for the forward-only second differences of the loss;
 *   - `hGrad` (default 1e-4) for the gradient differences of the power iterations.
 * Why relative: a model stores w in fp32, so w ± t v is rounded by ε₃₂|w_i| (ε₃₂ = 2⁻²⁴ ≈
 * 6e-8) per element, an error relative to the displacement of about ε₃₂/h (6e-5 at
 * h = 1e-3, 6e-4 at 1e-4) whatever the model's size, while an absolute t would be lost to
 * rounding on a large model. Why two: the losses and gradients are fp32 sums too, and the
 * rounding floor of a second difference of losses grows as σ_f/t² (σ_f: the loss's
 * rounding noise) while that of a gradient difference grows only as σ_g/t; so the
 * gradient differences can afford a 10× smaller step, which cuts their O(t²) truncation
 * error 100× (on a tiny random Llama with LoRA, L_y at a relative step of 1e-3 was 0.8%
 * low from truncation alone; at 1e-4, < 0.05%). The curvature's floor is MEASURED, not
 * guessed (`resolution`): seven losses at spacing t/100 along one more random direction
 * on the first batch (six extra forwards), a quadratic fit, σ_f from its residual, and
 * resolution = √6·σ_f/t² (the rounding noise of one sample). Plain objectives are
 * evaluated in float64 at the same relative steps; on a quadratic every central
 * difference is exact up to rounding for any t.
 *
 * Models stored in bf16/f16 round every written weight to 8 or 11 significant bits, far
 * coarser than a relative perturbation of 1e-3, so x ± t v would not be symmetric and the
 * differences would be dominated by rounding: for them L_x and the curvature are not
 * measured (null, with a note). L_y is unaffected (adapters are fp32).
 *
 * The base weights and the adapters are written through the model's own setters and
 * restored afterwards to their exact original values (bit for bit), also when an
 * evaluation throws. The estimator keeps one fp32 copy of each perturbed block while it
 * runs (for the base: 4 bytes per base parameter).
 */
import { invalidArg, ZofoError } from '../errors.js';
import * as kernels from '../kernels.js';
import type { Example, Model } from '../model/model.js';

// ---------------------------------------------------------------------------------------
// Types

/** A vector a plain objective returns (a Float64Array, a Float32Array or a plain array). */
export type VecLike = ArrayLike<number>;

/** A user's own objective f(x, y), evaluated in float64. */
export interface PlainObjective {
  dimX: number;
  dimY: number;
  /** f(x, y). */
  loss(x: Float64Array, y: Float64Array): number | Promise<number>;
  /** ∇_y f (needed for L_y; dimY may be 0 for no y block). */
  gradY(x: Float64Array, y: Float64Array): VecLike | Promise<VecLike>;
  /** ∇_x f: when given, L_x is estimated by power iteration too. */
  gradX?(x: Float64Array, y: Float64Array): VecLike | Promise<VecLike>;
  /** The point of the estimate (default 0). */
  x0?: VecLike;
  y0?: VecLike;
}

/** A model and a few minibatches of its task; y = the model's LoRA adapters, x = its base. */
export interface ModelTarget {
  model: Model;
  batches: Example[][];
}

/**
 * What `estimateSmoothness()` measures: a plain objective on Float64Arrays, or a model with a batch of examples.
 */
export type SmoothnessTarget = PlainObjective | ModelTarget;

/**
 * Options of `estimateSmoothness()`: directions, iterations, finite-difference steps, batches and seed.
 */
export interface SmoothnessOptions {
  /** Hessian–vector products per power iteration (default 20). */
  iterations?: number;
  /** Plain objectives: independent random starting vectors (default 3). Models use one per batch. */
  restarts?: number;
  /** Random unit directions for the forward-only curvature (default 8; model: cycled over the batches). */
  directions?: number;
  /** Relative step of the forward-only curvature: t = h · max(1, ‖x‖) (default 1e-3; see the file comment). */
  h?: number;
  /** Relative step of the gradient differences (power iterations for L_x, L_y): t = hGrad · max(1, ‖w‖) (default 1e-4). */
  hGrad?: number;
  /** Seed of every random vector (a non-negative safe integer, default 0). */
  seed?: number;
  /**
   * Models: whether L_x is estimated with full base gradients (memory and time for a
   * gradient per base weight). 'auto' (default): when the base tensors of x total at most
   * FULL_BACKWARD_AUTO_LIMIT elements. Plain objectives: false skips gradX.
   */
  fullBackward?: 'auto' | boolean;
  /** Models: the base tensors that make up x (default: every one, parameterNames()). */
  tensors?: string[];
  /** Return the final power-iteration vectors and the curvature directions (see Estimate.vectors). */
  keepVectors?: boolean;
  /** Called after each evaluation of the loss or a gradient. */
  onProgress?: (info: { phase: 'ly' | 'lx' | 'curvature'; done: number; total: number }) => void;
}

/** An estimate of one block's smoothness constant. */
export interface Estimate {
  /** The estimate: max over batches/restarts of ‖Hv‖ (≥ |vᵀHv|) at the final power-iteration vector. */
  value: number;
  /** Mean of the samples. */
  mean: number;
  spread: { min: number; max: number; std: number };
  /** One max(‖Hv‖, |vᵀHv|) per batch (model) or restart (plain). */
  samples: number[];
  /** The signed Rayleigh quotients vᵀHv (negative: the largest-magnitude curvature is concave). */
  rayleigh: number[];
  /**
   * ‖Hv‖ of the same unit vectors: also ≤ ‖H‖ and converging to it, and unlike the Rayleigh
   * quotient it does not cancel when +λ and −λ are both extreme (power iteration then
   * alternates between two vectors). The samples are these (they bound |vᵀHv| from above).
   */
  hvNorms: number[];
  /** How it was measured, in words. */
  method: string;
  /**
   * With keepVectors: the final unit vectors, one per sample, over the block's coordinates
   * (plain: as given; model y: loraNames() order, each tensor row-major; model x: the
   * tensors of x in parameterNames() order).
   */
  vectors?: Float64Array[];
}

/**
 * Curvature along random directions (forward passes only): mean, spread and extremes; its maximum is a lower bound on L_x.
 */
export interface CurvatureEstimate {
  mean: number;
  max: number;
  min: number;
  std: number;
  /** q(v) = (f(x+tv) − 2f(x) + f(x−tv))/t² for each unit direction v. */
  samples: number[];
  /** Number of directions. */
  directions: number;
  label: string;
  /**
   * Rounding floor of one sample, √6·σ_f/t², with σ_f = `lossNoise` measured by a quadratic fit
   * to 7 losses at spacing t/100 along a random direction (first batch); samples whose
   * magnitude is not well above it are rounding, not curvature.
   */
  resolution: number;
  /** σ_f, the measured rounding noise of one loss evaluation. */
  lossNoise: number;
  /** With keepVectors: the unit directions (coordinates as for Estimate.vectors). */
  vectors?: Float64Array[];
}

/**
 * What `estimateSmoothness()` found: the L_x and L_y estimates with their spread, the dimensions, and how they were measured.
 */
export interface SmoothnessReport {
  /** null when there is no y block (no adapters, dimY = 0). */
  ly: Estimate | null;
  /** null without gradX (plain), when the model is too large for the full backward, or a half-precision base. */
  lx: Estimate | null;
  /** null only for a bf16/f16 base (see the file comment). */
  lxCurvature: CurvatureEstimate | null;
  dims: { x: number; y: number };
  method: {
    iterations: number;
    /** Models: the number of minibatches; plain: 0. */
    batches: number;
    /** Plain: restarts; models: 0. */
    restarts: number;
    directions: number;
    /** The relative steps (curvature; gradient differences). */
    h: number;
    hGrad: number;
    /** Actual displacement lengths t: the curvature's along x; the gradient differences' along x and y. */
    stepCurvature: number;
    stepX: number;
    stepY: number;
    fullBackward: boolean;
    seed: number;
    precision: string;
  };
  /** Why a block was not estimated, and other caveats. */
  notes: string[];
}

/** 'auto' runs the full backward for L_x up to this many base parameters. */
export const FULL_BACKWARD_AUTO_LIMIT = 5e6;

export const CURVATURE_LABEL = 'forward-only curvature along random directions (a lower bound on L_x; what the ZO analysis uses)';

// ---------------------------------------------------------------------------------------
// Small helpers

const dot = (u: ArrayLike<number>, v: ArrayLike<number>): number => {
  let s = 0;
  for (let i = 0; i < u.length; i++) s += u[i] * v[i];
  return s;
};
const norm = (u: ArrayLike<number>): number => Math.sqrt(dot(u, u));

function stats(samples: number[]): { mean: number; min: number; max: number; std: number } {
  const n = samples.length;
  const mean = samples.reduce((a, b) => a + b, 0) / n;
  const varSum = samples.reduce((a, b) => a + (b - mean) ** 2, 0);
  return { mean, min: Math.min(...samples), max: Math.max(...samples), std: n > 1 ? Math.sqrt(varSum / (n - 1)) : 0 };
}

const count = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 1;

function finiteOrThrow(v: ArrayLike<number>, what: string): void {
  for (let i = 0; i < v.length; i++) {
    if (!Number.isFinite(v[i])) throw new ZofoError('ZOFO_NON_FINITE', `estimateSmoothness: ${what} has a non-finite entry (${v[i]}) at index ${i}`);
  }
}
function finiteNumber(v: number, what: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ZofoError('ZOFO_NON_FINITE', `estimateSmoothness: ${what} is ${v}, not a finite number`);
  return v;
}

/** A random unit vector of length d in float64 (zofo's generator, stream `name`). */
function randomUnit(d: number, seed: bigint, name: string): Float64Array {
  const v = Float64Array.from(kernels.gaussian(d, { seed, name }));
  const n = norm(v);
  for (let i = 0; i < d; i++) v[i] /= n;
  return v;
}

interface PowerResult {
  rayleigh: number;
  hvNorm: number;
  vector: Float64Array;
}

/**
 * Power iteration: `iterations` products w = Hv; v ← w/‖w‖ between them. Returns the
 * Rayleigh quotient vᵀHv and ‖Hv‖ of the last unit vector v multiplied.
 */
async function powerIteration(v0: Float64Array, iterations: number, hvp: (v: Float64Array) => Promise<Float64Array>): Promise<PowerResult> {
  let v = v0;
  for (let k = 0; ; k++) {
    const w = await hvp(v);
    const rayleigh = dot(v, w),
      hvNorm = norm(w);
    if (k === iterations - 1 || hvNorm === 0) return { rayleigh, hvNorm, vector: v };
    v = w.map((e) => e / hvNorm);
  }
}

function toEstimate(results: PowerResult[], method: string, keep: boolean): Estimate {
  // ‖Hv‖ ≥ |vᵀHv| for a unit v, both ≤ ‖H‖; ‖Hv‖ also converges when +λ and −λ are both
  // extreme (the Rayleigh quotient then cancels as the iterate alternates).
  const samples = results.map((r) => Math.max(Math.abs(r.rayleigh), r.hvNorm));
  const s = stats(samples);
  const e: Estimate = {
    value: s.max,
    mean: s.mean,
    spread: { min: s.min, max: s.max, std: s.std },
    samples,
    rayleigh: results.map((r) => r.rayleigh),
    hvNorms: results.map((r) => r.hvNorm),
    method,
  };
  if (keep) e.vectors = results.map((r) => r.vector);
  return e;
}

/** Offsets k·(t/100) of the noise probe (k = 0 is f(x) itself). */
const PROBE = [-3, -2, -1, 1, 2, 3];

/** σ of the residual of a least-squares quadratic through (k, f_k), k = −3..3 (4 degrees of freedom). */
function probeNoise(fk: Map<number, number>): number {
  const ks = [-3, -2, -1, 0, 1, 2, 3],
    f = ks.map((k) => fk.get(k)!);
  // Orthogonal basis on symmetric points: 1, k, k² − mean(k²) (mean k² = 4).
  const basis = [ks.map(() => 1), ks, ks.map((k) => k * k - 4)];
  const resid = f.slice();
  for (const b of basis) {
    const c = dot(f, b) / dot(b, b);
    for (let i = 0; i < resid.length; i++) resid[i] -= c * b[i];
  }
  return Math.sqrt(dot(resid, resid) / (ks.length - basis.length));
}

function toCurvature(samples: number[], lossNoise: number, step: number, vectors: Float64Array[] | null): CurvatureEstimate {
  const s = stats(samples);
  const c: CurvatureEstimate = {
    mean: s.mean,
    max: s.max,
    min: s.min,
    std: s.std,
    samples,
    directions: samples.length,
    label: CURVATURE_LABEL,
    resolution: (Math.sqrt(6) * lossNoise) / (step * step),
    lossNoise,
  };
  if (vectors) c.vectors = vectors;
  return c;
}

const fmt = (v: number) => v.toPrecision(3);

function isModelTarget(t: SmoothnessTarget): t is ModelTarget {
  return typeof t === 'object' && t !== null && 'model' in t;
}

interface Resolved {
  iterations: number;
  restarts: number;
  directions: number;
  h: number;
  hGrad: number;
  seed: number;
  fullBackward: 'auto' | boolean;
  keep: boolean;
  progress: (phase: 'ly' | 'lx' | 'curvature', done: number, total: number) => void;
}

function resolveOptions(o: SmoothnessOptions): Resolved {
  if (typeof o !== 'object' || o === null) throw invalidArg('an options object', 'estimateSmoothness options', o);
  const iterations = o.iterations ?? 20,
    restarts = o.restarts ?? 3,
    directions = o.directions ?? 8;
  const h = o.h ?? 1e-3,
    hGrad = o.hGrad ?? 1e-4,
    seed = o.seed ?? 0,
    fullBackward = o.fullBackward ?? 'auto';
  if (!count(iterations)) throw invalidArg('a positive integer', 'iterations', iterations);
  if (!count(restarts)) throw invalidArg('a positive integer', 'restarts', restarts);
  if (!count(directions)) throw invalidArg('a positive integer', 'directions', directions);
  if (typeof h !== 'number' || !(h > 0) || !(h < 1)) throw invalidArg('a number in (0, 1)', 'h', h);
  if (typeof hGrad !== 'number' || !(hGrad > 0) || !(hGrad < 1)) throw invalidArg('a number in (0, 1)', 'hGrad', hGrad);
  if (!Number.isSafeInteger(seed) || seed < 0) throw invalidArg('a non-negative safe integer', 'seed', seed);
  if (fullBackward !== 'auto' && fullBackward !== true && fullBackward !== false) throw invalidArg("'auto', true or false", 'fullBackward', fullBackward);
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function') throw invalidArg('a function', 'onProgress', o.onProgress);
  const cb = o.onProgress;
  return {
    iterations,
    restarts,
    directions,
    h,
    hGrad,
    seed,
    fullBackward,
    keep: o.keepVectors === true,
    progress: (phase, done, total) => cb?.({ phase, done, total }),
  };
}

// ---------------------------------------------------------------------------------------
// The estimator

/**
 * Estimates L_y, L_x and the forward-only curvature of `target` (see the file comment).
 * Models: the base weights and adapters are restored bit for bit before it returns or throws.
 */
export async function estimateSmoothness(target: SmoothnessTarget, options: SmoothnessOptions = {}): Promise<SmoothnessReport> {
  const o = resolveOptions(options);
  if (typeof target !== 'object' || target === null) throw invalidArg('a plain objective or { model, batches }', 'target', target);
  return isModelTarget(target) ? estimateModel(target, o, options.tensors) : estimatePlain(target, o);
}

async function estimatePlain(p: PlainObjective, o: Resolved): Promise<SmoothnessReport> {
  const { dimX, dimY } = p;
  if (!count(dimX)) throw invalidArg('a positive integer', 'dimX', dimX);
  if (!Number.isSafeInteger(dimY) || dimY < 0) throw invalidArg('a non-negative integer', 'dimY', dimY);
  if (typeof p.loss !== 'function') throw invalidArg('a function', 'loss', p.loss);
  if (dimY > 0 && typeof p.gradY !== 'function') throw invalidArg('a function', 'gradY', p.gradY);
  if (p.gradX !== undefined && typeof p.gradX !== 'function') throw invalidArg('a function', 'gradX', p.gradX);
  const point = (v: VecLike | undefined, d: number, name: string) => {
    if (v === undefined) return new Float64Array(d);
    if (!v || v.length !== d) throw invalidArg(`a vector of length ${d}`, name, v);
    const out = Float64Array.from(v);
    finiteOrThrow(out, name);
    return out;
  };
  const x0 = point(p.x0, dimX, 'x0'),
    y0 = point(p.y0, dimY, 'y0');
  const seed = BigInt(o.seed),
    notes: string[] = [];
  const stepX = o.hGrad * Math.max(1, norm(x0)),
    stepY = o.hGrad * Math.max(1, norm(y0)),
    stepC = o.h * Math.max(1, norm(x0));

  const grad = async (g: (x: Float64Array, y: Float64Array) => VecLike | Promise<VecLike>, x: Float64Array, y: Float64Array, d: number, what: string) => {
    const out = await g.call(p, x, y);
    if (!out || out.length !== d) throw new ZofoError('ZOFO_INVALID_ARG', `estimateSmoothness: ${what} returned ${out?.length ?? out} values, expected ${d}`);
    const v = Float64Array.from(out);
    finiteOrThrow(v, what);
    return v;
  };
  /** (g(w + t v) − g(w − t v)) / 2t, perturbing block `which` of (x0, y0). */
  const hvp = (which: 'x' | 'y', t: number, phase: 'ly' | 'lx', total: number) => {
    let done = 0;
    return async (v: Float64Array): Promise<Float64Array> => {
      const base = which === 'x' ? x0 : y0,
        d = base.length;
      const plus = base.map((b, i) => b + t * v[i]),
        minus = base.map((b, i) => b - t * v[i]);
      const g = which === 'x' ? p.gradX! : p.gradY,
        what = which === 'x' ? 'gradX' : 'gradY';
      const gp = which === 'x' ? await grad(g, plus, y0, d, what) : await grad(g, x0, plus, d, what);
      const gm = which === 'x' ? await grad(g, minus, y0, d, what) : await grad(g, x0, minus, d, what);
      o.progress(phase, ++done, total);
      return gp.map((a, i) => (a - gm[i]) / (2 * t));
    };
  };

  let ly: Estimate | null = null;
  if (dimY > 0) {
    const results: PowerResult[] = [];
    const f = hvp('y', stepY, 'ly', o.restarts * o.iterations);
    for (let r = 0; r < o.restarts; r++) results.push(await powerIteration(randomUnit(dimY, seed, `zofo.smoothness/ly/${r}`), o.iterations, f));
    ly = toEstimate(
      results,
      `power iteration: ${o.iterations} Hessian–vector products (central differences of ∇_y f, step t = ${fmt(stepY)}) from each of ${o.restarts} random starts, float64`,
      o.keep,
    );
  } else {
    notes.push('L_y: the objective has no y block (dimY = 0).');
  }

  let lx: Estimate | null = null;
  const useGradX = p.gradX !== undefined && o.fullBackward !== false;
  if (useGradX) {
    const results: PowerResult[] = [];
    const f = hvp('x', stepX, 'lx', o.restarts * o.iterations);
    for (let r = 0; r < o.restarts; r++) results.push(await powerIteration(randomUnit(dimX, seed, `zofo.smoothness/lx/${r}`), o.iterations, f));
    lx = toEstimate(
      results,
      `power iteration: ${o.iterations} Hessian–vector products (central differences of ∇_x f, step t = ${fmt(stepX)}) from each of ${o.restarts} random starts, float64`,
      o.keep,
    );
  } else {
    notes.push(
      p.gradX === undefined
        ? 'L_x: the objective has no gradX; only the forward-only curvature (a lower bound) is measured.'
        : 'L_x: fullBackward is false; only the forward-only curvature (a lower bound) is measured.',
    );
  }

  const f0 = finiteNumber(await p.loss(x0, y0), 'loss(x0, y0)');
  const samples: number[] = [],
    vectors: Float64Array[] = [];
  for (let j = 0; j < o.directions; j++) {
    const v = randomUnit(dimX, seed, `zofo.smoothness/curvature/${j}`);
    const fp = finiteNumber(
      await p.loss(
        x0.map((b, i) => b + stepC * v[i]),
        y0,
      ),
      'loss(x0 + t v, y0)',
    );
    const fm = finiteNumber(
      await p.loss(
        x0.map((b, i) => b - stepC * v[i]),
        y0,
      ),
      'loss(x0 − t v, y0)',
    );
    samples.push((fp - 2 * f0 + fm) / (stepC * stepC));
    if (o.keep) vectors.push(v);
    o.progress('curvature', j + 1, o.directions);
  }
  const probe = new Map([[0, f0]]),
    u = randomUnit(dimX, seed, 'zofo.smoothness/noise');
  for (const k of PROBE)
    probe.set(
      k,
      finiteNumber(
        await p.loss(
          x0.map((b, i) => b + ((k * stepC) / 100) * u[i]),
          y0,
        ),
        'loss (noise probe)',
      ),
    );
  const lxCurvature = toCurvature(samples, probeNoise(probe), stepC, o.keep ? vectors : null);

  return {
    ly,
    lx,
    lxCurvature,
    dims: { x: dimX, y: dimY },
    method: {
      iterations: o.iterations,
      batches: 0,
      restarts: o.restarts,
      directions: o.directions,
      h: o.h,
      hGrad: o.hGrad,
      stepCurvature: stepC,
      stepX,
      stepY,
      fullBackward: useGradX,
      seed: o.seed,
      precision: 'float64 (plain objective)',
    },
    notes,
  };
}

// ---------------------------------------------------------------------------------------
// Models

interface Block {
  names: string[];
  sizes: number[];
  /** The exact original values, one Float32Array per tensor. */
  original: Float32Array[];
  dim: number;
  write(name: string, data: Float32Array): void;
}

/** Writes original + s·v (rounded to fp32) into every tensor of the block; v over the block's coordinates. */
function writeShifted(block: Block, v: Float64Array | ((tensor: number) => ArrayLike<number>), s: number, scratch: Float32Array): void {
  let at = 0;
  block.names.forEach((name, k) => {
    const n = block.sizes[k],
      orig = block.original[k],
      out = scratch.subarray(0, n);
    const dir = typeof v === 'function' ? v(k) : v.subarray(at, at + n);
    for (let i = 0; i < n; i++) out[i] = orig[i] + s * dir[i];
    block.write(name, out);
    at += n;
  });
}

function restore(block: Block): void {
  block.names.forEach((name, k) => block.write(name, block.original[k]));
}

function blockNorm(block: Block): number {
  let s = 0;
  for (const t of block.original) s += dot(t, t);
  return Math.sqrt(s);
}

async function estimateModel(target: ModelTarget, o: Resolved, tensors: string[] | undefined): Promise<SmoothnessReport> {
  const { model, batches } = target;
  if (typeof model !== 'object' || model === null || typeof model.loss !== 'function') throw invalidArg('a Model (loadModel)', 'model', model);
  if (!Array.isArray(batches) || batches.length === 0 || !batches.every((b) => Array.isArray(b) && b.length > 0)) {
    throw invalidArg('a non-empty array of non-empty minibatches (Example[][])', 'batches', batches);
  }
  const allNames = model.parameterNames();
  let xNames = allNames;
  if (tensors !== undefined) {
    if (!Array.isArray(tensors) || tensors.length === 0) throw invalidArg('a non-empty array of base tensor names', 'tensors', tensors);
    const wanted = new Set(tensors);
    for (const name of wanted)
      if (!allNames.includes(name)) throw new ZofoError('ZOFO_INVALID_ARG', `estimateSmoothness: the model has no base tensor named ${JSON.stringify(name)}`);
    xNames = allNames.filter((n) => wanted.has(n)); // parameterNames() order
  }
  const numel = model.parameterCounts();
  const counts = new Map(allNames.map((n, i) => [n, numel[i]] as const));
  const xSizes = xNames.map((n) => counts.get(n)!);
  const dimX = xSizes.reduce((a, b) => a + b, 0);
  const yNames = model.loraNames();
  const ySizes = yNames.map((n) => model.loraTensor(n).length);
  const dimY = ySizes.reduce((a, b) => a + b, 0);
  const seed = BigInt(o.seed),
    notes: string[] = [];
  const half = model.dtype !== 'f32';
  const useFull = !half && (o.fullBackward === true || (o.fullBackward === 'auto' && dimX <= FULL_BACKWARD_AUTO_LIMIT));
  const nb = batches.length;

  // Snapshots of the exact original values (restored in `finally`).
  const yBlock: Block = {
    names: yNames,
    sizes: ySizes,
    original: yNames.map((n) => model.loraTensor(n)),
    dim: dimY,
    write: (name, data) => model.setLoraTensor(name, data),
  };
  const xBlock: Block | null = half
    ? null
    : {
        names: xNames,
        sizes: xSizes,
        original: await Promise.all(xNames.map((n) => model.tensor(n))),
        dim: dimX,
        write: (name, data) => model.native.setTensor(name, data),
      };
  const stepY = o.hGrad * Math.max(1, blockNorm(yBlock));
  const xNorm = xBlock ? Math.max(1, blockNorm(xBlock)) : NaN;
  const stepX = o.hGrad * xNorm,
    stepC = o.h * xNorm;
  const flatten = (grads: Map<string, Float32Array>, names: string[], dim: number, what: string) => {
    const out = new Float64Array(dim);
    let at = 0;
    for (const name of names) {
      const g = grads.get(name);
      if (!g) throw new ZofoError('ZOFO_INTERNAL', `estimateSmoothness: ${what} has no gradient for ${name}`);
      out.set(g, at);
      at += g.length;
    }
    finiteOrThrow(out, what);
    return out;
  };

  let ly: Estimate | null = null,
    lx: Estimate | null = null,
    lxCurvature: CurvatureEstimate | null = null;
  const yScratch = new Float32Array(Math.max(0, ...ySizes));
  try {
    // ---- L_y: adapter-gradient differences, the base untouched.
    if (dimY > 0) {
      const results: PowerResult[] = [];
      let done = 0;
      for (let b = 0; b < nb; b++) {
        const batch = batches[b];
        results.push(
          await powerIteration(randomUnit(dimY, seed, `zofo.smoothness/ly/${b}`), o.iterations, async (v) => {
            writeShifted(yBlock, v, stepY, yScratch);
            const gp = flatten((await model.loraGradients(batch)).grads, yNames, dimY, 'loraGradients');
            writeShifted(yBlock, v, -stepY, yScratch);
            const gm = flatten((await model.loraGradients(batch)).grads, yNames, dimY, 'loraGradients');
            o.progress('ly', ++done, nb * o.iterations);
            return gp.map((a, i) => (a - gm[i]) / (2 * stepY));
          }),
        );
      }
      restore(yBlock);
      ly = toEstimate(
        results,
        `power iteration: ${o.iterations} Hessian–vector products (central differences of the fp32 adapter gradient, step t = ${fmt(stepY)} = ${o.hGrad}·‖y‖) on each of ${nb} minibatches`,
        o.keep,
      );
    } else {
      notes.push('L_y: the model has no LoRA adapters (call addLoRA() or loadAdapter() first).');
    }

    if (!xBlock) {
      notes.push(
        `L_x and the curvature are not measured on a ${model.dtype} base: its rounding (${model.dtype === 'bf16' ? '2⁻⁸' : '2⁻¹¹'} relative) ` +
          "swamps a finite-difference perturbation; load the model with dtype 'f32' to measure them.",
      );
    } else {
      const xScratch = new Float32Array(Math.max(...xSizes));
      // ---- L_x: full base-gradient differences (small models).
      if (useFull) {
        const results: PowerResult[] = [];
        let done = 0;
        for (let b = 0; b < nb; b++) {
          const batch = batches[b];
          results.push(
            await powerIteration(randomUnit(dimX, seed, `zofo.smoothness/lx/${b}`), o.iterations, async (v) => {
              writeShifted(xBlock, v, stepX, xScratch);
              const gp = flatten((await model.baseGradients(batch)).grads, xNames, dimX, 'baseGradients');
              writeShifted(xBlock, v, -stepX, xScratch);
              const gm = flatten((await model.baseGradients(batch)).grads, xNames, dimX, 'baseGradients');
              o.progress('lx', ++done, nb * o.iterations);
              return gp.map((a, i) => (a - gm[i]) / (2 * stepX));
            }),
          );
        }
        restore(xBlock);
        lx = toEstimate(
          results,
          `power iteration: ${o.iterations} Hessian–vector products (central differences of the fp32 full base gradient, step t = ${fmt(stepX)} = ${o.hGrad}·‖x‖) on each of ${nb} minibatches`,
          o.keep,
        );
      } else {
        notes.push(
          o.fullBackward === false
            ? 'L_x: fullBackward is false; only the forward-only curvature (a lower bound) is measured.'
            : `L_x: ${dimX} base parameters exceed the full-backward limit of ${FULL_BACKWARD_AUTO_LIMIT} (fullBackward: true forces it); only the forward-only curvature (a lower bound) is measured.`,
        );
      }

      // ---- Forward-only curvature along random unit directions, one tensor's z at a time.
      const f0 = new Map<number, number>();
      const samples: number[] = [],
        vectors: Float64Array[] = [];
      for (let j = 0; j < o.directions; j++) {
        const b = j % nb,
          batch = batches[b];
        if (!f0.has(b)) {
          restore(xBlock);
          f0.set(b, finiteNumber((await model.loss(batch)).loss, `loss of batch ${b}`));
        }
        const stream = (k: number) => kernels.gaussian(xSizes[k], { seed, name: `zofo.smoothness/curvature/${j}/${xNames[k]}` });
        let sq = 0;
        for (let k = 0; k < xNames.length; k++) {
          const z = stream(k);
          sq += dot(z, z);
        }
        const scale = 1 / Math.sqrt(sq);
        const unit = (k: number) => Float64Array.from(stream(k), (e) => e * scale);
        writeShifted(xBlock, unit, stepC, xScratch);
        const fp = finiteNumber((await model.loss(batch)).loss, 'loss at x + t v');
        writeShifted(xBlock, unit, -stepC, xScratch);
        const fm = finiteNumber((await model.loss(batch)).loss, 'loss at x − t v');
        samples.push((fp - 2 * f0.get(b)! + fm) / (stepC * stepC));
        if (o.keep) {
          const v = new Float64Array(dimX);
          let at = 0;
          for (let k = 0; k < xNames.length; k++) {
            const z = stream(k);
            for (let i = 0; i < z.length; i++) v[at + i] = z[i] * scale;
            at += z.length;
          }
          vectors.push(v);
        }
        o.progress('curvature', j + 1, o.directions);
      }
      // The rounding noise of the loss: 7 losses at spacing t/100 on the first batch.
      const noiseUnit = (() => {
        let sq = 0;
        for (let k = 0; k < xNames.length; k++) {
          const z = kernels.gaussian(xSizes[k], { seed, name: `zofo.smoothness/noise/${xNames[k]}` });
          sq += dot(z, z);
        }
        const scale = 1 / Math.sqrt(sq);
        return (k: number) => Float64Array.from(kernels.gaussian(xSizes[k], { seed, name: `zofo.smoothness/noise/${xNames[k]}` }), (e) => e * scale);
      })();
      const probe = new Map([[0, f0.get(0)!]]);
      for (const k of PROBE) {
        writeShifted(xBlock, noiseUnit, (k * stepC) / 100, xScratch);
        probe.set(k, finiteNumber((await model.loss(batches[0])).loss, 'loss (noise probe)'));
      }
      restore(xBlock);
      lxCurvature = toCurvature(samples, probeNoise(probe), stepC, o.keep ? vectors : null);
    }
  } finally {
    // Exact original values, also when an evaluation threw (a second restore is harmless).
    restore(yBlock);
    if (xBlock) restore(xBlock);
  }

  return {
    ly,
    lx,
    lxCurvature,
    dims: { x: dimX, y: dimY },
    method: {
      iterations: o.iterations,
      batches: nb,
      restarts: 0,
      directions: o.directions,
      h: o.h,
      hGrad: o.hGrad,
      stepCurvature: stepC,
      stepX,
      stepY,
      fullBackward: useFull,
      seed: o.seed,
      precision: `fp32 model (${model.dtype} base storage): steps relative to ‖w‖, rounding floors ≈ ε₃₂/h in the displacement`,
    },
    notes,
  };
}

// ---------------------------------------------------------------------------------------
// Step-size advice

/**
 * Input of `stepSizeAdvice()`: the constants (numbers or estimates), d_x, q and the learning rates to judge.
 */
export interface StepSizeInput {
  /** L_x: a number, an Estimate (its value), or a CurvatureEstimate (its max: a LOWER bound, so the advice is optimistic). */
  lx?: number | Estimate | CurvatureEstimate | null;
  /** L_y: a number or an Estimate. */
  ly?: number | Estimate | null;
  /** d_x, the number of base parameters perturbed by the ZO estimator. */
  dimX: number;
  /** The learning rates to judge (optional). */
  lrX?: number;
  lrY?: number;
  /** Perturbations averaged per step (default 1). */
  q?: number;
}

/** How a learning rate compares with its admissible bound, from well below it to far above. */
export type VerdictLevel = 'conservative' | 'admissible' | 'oscillate' | 'diverge';

/**
 * The advice on one learning rate: the rate, its admissible bound, their ratio, a level and a sentence.
 */
export interface Verdict {
  rate: number;
  /** The admissible bound it is compared with (lrYMax or lrXMax). */
  bound: number;
  /** rate / bound. */
  ratio: number;
  level: VerdictLevel;
  message: string;
}

/**
 * What `stepSizeAdvice()` says about a pair of learning rates: the admissible rates and a verdict per group.
 */
export interface StepSizeAdvice {
  /** 1/L_y: the first-order block's step, η ≲ 1/L. */
  lrYMax: number | null;
  /** 2/L_y: beyond it gradient descent diverges along the sharpest direction. */
  lrYDiverge: number | null;
  /** 1/(2 L_x B_q), = 1/(4(d_x + 4)L_x) for q = 1 (Nesterov & Spokoiny 2017; see stepSizeAdvice). */
  lrXMax: number | null;
  /** 2/(L_x B_q) = 4·lrXMax: beyond it the expected one-step change of f along the sharpest curvature is an increase. */
  lrXDiverge: number | null;
  /** The L values used. */
  lx: number | null;
  ly: number | null;
  /** B_q = 2(d_x + 4)/q + 1 − 1/q. */
  secondMomentFactor: number;
  formulas: { y: string; x: string };
  verdicts: { x?: Verdict; y?: Verdict };
  notes: string[];
}

/** How far below the bound a rate must be to be called conservative. */
const CONSERVATIVE = 10;

function lValue(v: number | Estimate | CurvatureEstimate | null | undefined, name: string): { value: number | null; lower: boolean } {
  if (v === undefined || v === null) return { value: null, lower: false };
  const value = typeof v === 'number' ? v : 'value' in v ? v.value : 'max' in v ? v.max : NaN;
  if (!(value > 0) || !Number.isFinite(value)) throw invalidArg('a positive finite number or an estimate with one', name, v);
  return { value, lower: typeof v === 'object' && !('value' in v) };
}

function judge(rate: number, bound: number, diverge: number, boundName: string, divergeName: string): Verdict {
  const ratio = rate / bound;
  if (rate > diverge) return { rate, bound, ratio, level: 'diverge', message: `above ${divergeName}: expected to diverge` };
  if (rate > bound) return { rate, bound, ratio, level: 'oscillate', message: `above ${boundName}: may oscillate` };
  if (rate * CONSERVATIVE <= bound) {
    const n = bound / rate;
    return {
      rate,
      bound,
      ratio,
      level: 'conservative',
      message: `conservative: ${n >= 100 ? Math.round(n) : n.toPrecision(2)}× below the bound (${boundName})`,
    };
  }
  return { rate, bound, ratio, level: 'admissible', message: `within the admissible range (≤ ${boundName})` };
}

/**
 * Admissible step sizes from L_x, L_y, and plain-language verdicts on given rates.
 *
 * y (first-order block, exact gradient): the descent lemma f(y − ηg) ≤ f(y) − η(1 − Lη/2)‖g‖²
 * gives decrease for η < 2/L and the classical choice η ≤ 1/L; on a quadratic, η > 2/L
 * diverges along the top eigenvector.
 *
 * x (zeroth-order block, Gaussian-smoothing estimator ĝ = (1/q)Σ_j c_j z_j): Nesterov &
 * Spokoiny, "Random gradient-free minimization of convex functions", Found. Comput. Math.
 * 17:527–566 (2017), bound the second moment of one random gradient-free oracle by
 * E‖g_μ(x)‖² ≤ 2(n + 4)‖∇f(x)‖² + O(μ²) and take the step h = 1/(4(n + 4)L₁) for their
 * random gradient-free method (n = d_x, L₁ = L_x). Averaging q independent directions
 * (our extension, not in the paper): E‖ĝ‖² = (1/q)E‖g_μ‖² + (1 − 1/q)‖∇f_μ‖²
 * ≤ B_q‖∇f‖² + O(μ²) with B_q = 2(n + 4)/q + 1 − 1/q. The descent step then reads
 * E f(x − ηĝ) ≤ f(x) − η(1 − LηB_q/2)‖∇f‖² + O(μ), and the same rule as theirs, η = 1/(2L B_q),
 * gives lrXMax = 1/(2 L_x B_q) — exactly 1/(4(d_x + 4)L_x) at q = 1, 1/(2L_x) as q → ∞.
 * The bound on the expected change turns positive at η = 2/(L_x B_q) = lrXDiverge (the
 * analogue of 2/L; for f = (L/2)‖x‖² it is within (d_x+4)/(d_x+2) of the exact threshold).
 */
export function stepSizeAdvice(input: StepSizeInput): StepSizeAdvice {
  if (typeof input !== 'object' || input === null) throw invalidArg('an options object', 'stepSizeAdvice input', input);
  const { dimX } = input,
    q = input.q ?? 1;
  if (!count(dimX)) throw invalidArg('a positive integer', 'dimX', dimX);
  if (!count(q)) throw invalidArg('a positive integer', 'q', q);
  for (const [name, v] of [
    ['lrX', input.lrX],
    ['lrY', input.lrY],
  ] as const) {
    if (v !== undefined && !(typeof v === 'number' && v > 0 && Number.isFinite(v))) throw invalidArg('a positive finite number', name, v);
  }
  const lx = lValue(input.lx, 'lx'),
    ly = lValue(input.ly, 'ly');
  const bq = (2 * (dimX + 4)) / q + 1 - 1 / q;
  const notes: string[] = [];
  const advice: StepSizeAdvice = {
    lrYMax: ly.value === null ? null : 1 / ly.value,
    lrYDiverge: ly.value === null ? null : 2 / ly.value,
    lrXMax: lx.value === null ? null : 1 / (2 * lx.value * bq),
    lrXDiverge: lx.value === null ? null : 2 / (lx.value * bq),
    lx: lx.value,
    ly: ly.value,
    secondMomentFactor: bq,
    formulas: {
      y: 'η_y ≤ 1/L_y (descent lemma; η_y > 2/L_y diverges on the sharpest direction)',
      x: `η_x ≤ 1/(2 L_x B_q), B_q = 2(d_x + 4)/q + 1 − 1/q${q === 1 ? ' = 2(d_x + 4): 1/(4(d_x + 4)L_x), Nesterov & Spokoiny (2017)' : ' (Nesterov & Spokoiny 2017 with q directions averaged)'}`,
    },
    verdicts: {},
    notes,
  };
  if (lx.lower) notes.push('L_x taken from the forward-only curvature, a lower bound: lrXMax may be too large.');
  if (input.lrY !== undefined) {
    if (advice.lrYMax === null) notes.push('lrY not judged: no L_y.');
    else advice.verdicts.y = judge(input.lrY, advice.lrYMax, advice.lrYDiverge!, '1/L', '2/L');
  }
  if (input.lrX !== undefined) {
    if (advice.lrXMax === null) notes.push('lrX not judged: no L_x.');
    else {
      advice.verdicts.x = judge(
        input.lrX,
        advice.lrXMax,
        advice.lrXDiverge!,
        `1/(2 L_x B_q) = ${advice.lrXMax.toPrecision(3)}`,
        `2/(L_x B_q) = ${advice.lrXDiverge!.toPrecision(3)}`,
      );
      // The x bound is worst case over directions: the dimension factor assumes the
      // sharpest curvature along every random direction, which real losses rarely have.
      if (advice.verdicts.x.level === 'diverge') {
        advice.verdicts.x.message = `above 2/(L_x B_q) = ${advice.lrXDiverge!.toPrecision(3)}: outside what the worst-case analysis guarantees (ZO often tolerates larger rates when the curvature along random directions is far below L_x; watch the loss)`;
      }
    }
  }
  return advice;
}
