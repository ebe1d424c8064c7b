/**
 * A synthetic finite-sum quadratic with KNOWN block smoothness constants (docs/algorithm.md §6),
 * and the hybrid ZO/FO reshuffling SGD of §2 run on it with the real fused kernels.
 *
 *   f(x, y)    = (1/n) Σ_i f_i(x, y)
 *   f_i(x, y)  = ½ xᵀA x + ½ yᵀB y + xᵀC y − a_iᵀx − b_iᵀy + κ
 *
 * A (d_x × d_x) and B (d_y × d_y) are symmetric with prescribed spectra, evenly spaced in
 * [μ_x, L_x] and [μ_y, L_y] (a dimension of 1 gets just L), in random orthonormal bases.
 * ∇_x f(x₁,y) − ∇_x f(x₂,y) = A(x₁ − x₂), so the hybrid smoothness constants of §6 are
 * exactly L_x = λmax(A) and L_y = λmax(B). The coupling C = γ·P Rᵀ (P, R with orthonormal
 * columns) has every singular value equal to γ; with γ² < μ_x μ_y the joint Hessian
 * [[A, C], [Cᵀ, B]] is positive definite (Schur complement A − C B⁻¹Cᵀ ⪰ (μ_x − γ²/μ_y) I),
 * so f has one minimiser. κ is chosen so that f(x*, y*) = 0.
 *
 * The examples differ only in their linear terms (a_i, b_i): every f_i has the same
 * Hessian, and the minibatch noise of a gradient is the spread of the batch's a_i, b_i.
 *
 * Everything here is float64 except the base parameters x of `runHybrid`, which are a
 * Float32Array moved only by kernels.perturb / kernels.restoreUpdate, exactly as a
 * model's base weights are.
 */
import { stepSeed } from './optimizer.js';
import { invalidArg, ZofoError } from '../errors.js';
import * as kernels from '../kernels.js';
import { ReshufflingSampler } from './sampler.js';
import { learningRate, type ScheduleOptions } from './schedule.js';

/** Any vector: a Float32Array (the fp32 x), a Float64Array or a plain array. */
export type Vec = ArrayLike<number>;

export interface QuadraticOptions {
  dimX: number;
  dimY: number;
  /** Number of examples f_i. */
  n: number;
  /** λmax(A) = L_x and λmax(B) = L_y. */
  lx: number;
  ly: number;
  /** λmin(A) and λmin(B) (defaults L_x/10 and L_y/10). */
  mux?: number;
  muy?: number;
  /** γ, every singular value of C (default ½·√(μ_x μ_y); must be < √(μ_x μ_y)). */
  coupling?: number;
  /** Spread of the examples' linear terms around their mean (default 0.5). */
  spread?: number;
  /** Seed of the problem's random bases and data (a non-negative safe integer). */
  seed: number;
}

/**
 * What `runHybrid` needs of a problem: a finite sum of n examples over (x, y) with the
 * mean loss of a minibatch and its exact block gradients. `QuadraticProblem` is one; the
 * convergence study (lib/theory/study.ts) supplies others.
 */
export interface HybridObjective {
  readonly dimX: number;
  readonly dimY: number;
  readonly n: number;
  /** Mean loss of the examples `indices` (default: all n, i.e. f itself). */
  loss(x: Vec, y: Vec, indices?: readonly number[]): number;
  /** ∇_x and ∇_y of that mean loss. */
  gradX(x: Vec, y: Vec, indices?: readonly number[]): Float64Array;
  /** ∇_y of that mean loss. */
  gradY(x: Vec, y: Vec, indices?: readonly number[]): Float64Array;
}

export interface QuadraticProblem extends HybridObjective {
  readonly dimX: number;
  readonly dimY: number;
  readonly n: number;
  readonly lx: number;
  readonly ly: number;
  readonly mux: number;
  readonly muy: number;
  readonly coupling: number;
  /** Row-major float64 matrices: A (d_x × d_x), B (d_y × d_y), C (d_x × d_y). */
  readonly A: Float64Array;
  readonly B: Float64Array;
  readonly C: Float64Array;
  /** The examples' linear terms, row i = a_i (n × d_x) and b_i (n × d_y). */
  readonly a: Float64Array;
  readonly b: Float64Array;
  /** Mean loss of the examples `indices` (default: all n, i.e. f itself). */
  loss(x: Vec, y: Vec, indices?: readonly number[]): number;
  /** ∇_x and ∇_y of that mean loss. */
  gradX(x: Vec, y: Vec, indices?: readonly number[]): Float64Array;
  gradY(x: Vec, y: Vec, indices?: readonly number[]): Float64Array;
  /** ‖∇f(x, y)‖ over all n examples (both blocks). */
  gradNorm(x: Vec, y: Vec): number;
  /** The unique minimiser (x*, y*) of f; f(x*, y*) = 0. */
  minimizer(): { x: Float64Array; y: Float64Array };
}

const positive = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v > 0;
const count = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 1;

/** n × n orthogonal matrix (row-major): Gram–Schmidt on Gaussian columns. */
function orthogonal(n: number, seed: bigint, name: string): Float64Array {
  const g = kernels.gaussian(n * n, { seed, name });
  const q = new Float64Array(n * n); // column c is q[r*n + c]
  for (let c = 0; c < n; c++) {
    for (let r = 0; r < n; r++) q[r * n + c] = g[c * n + r];
    for (let pass = 0; pass < 2; pass++) {
      // twice is enough for orthogonality to rounding
      for (let p = 0; p < c; p++) {
        let dot = 0;
        for (let r = 0; r < n; r++) dot += q[r * n + p] * q[r * n + c];
        for (let r = 0; r < n; r++) q[r * n + c] -= dot * q[r * n + p];
      }
    }
    let norm = 0;
    for (let r = 0; r < n; r++) norm += q[r * n + c] ** 2;
    norm = Math.sqrt(norm);
    for (let r = 0; r < n; r++) q[r * n + c] /= norm;
  }
  return q;
}

/** Q diag(λ) Qᵀ with λ evenly spaced from lo to hi (both included). */
function withSpectrum(n: number, lo: number, hi: number, seed: bigint, name: string): Float64Array {
  const q = orthogonal(n, seed, name);
  const lambda = Array.from({ length: n }, (_, i) => (n === 1 ? hi : lo + ((hi - lo) * i) / (n - 1)));
  const m = new Float64Array(n * n);
  for (let r = 0; r < n; r++) {
    for (let c = r; c < n; c++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += q[r * n + k] * lambda[k] * q[c * n + k];
      m[r * n + c] = s;
      m[c * n + r] = s; // exactly symmetric
    }
  }
  return m;
}

/** out = M v for a row-major (rows × cols) M; `transpose` gives Mᵀv. */
function matVec(m: Float64Array, rows: number, cols: number, v: Vec, transpose = false): Float64Array {
  const out = new Float64Array(transpose ? cols : rows);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      if (transpose) out[c] += m[r * cols + c] * v[r];
      else out[r] += m[r * cols + c] * v[c];
    }
  }
  return out;
}

const dot = (u: Vec, v: Vec) => {
  let s = 0;
  for (let i = 0; i < u.length; i++) s += u[i] * v[i];
  return s;
};

/** Mean of rows `indices` of a row-major (n × d) table (all rows when indices is undefined). */
function meanRows(t: Float64Array, n: number, d: number, indices?: readonly number[]): Float64Array {
  const rows = indices ?? Array.from({ length: n }, (_, i) => i);
  if (rows.length === 0) throw new ZofoError('ZOFO_INVALID_ARG', 'an empty minibatch has no loss');
  const out = new Float64Array(d);
  for (const i of rows) {
    if (!Number.isInteger(i) || i < 0 || i >= n) throw invalidArg(`an example index in 0 .. ${n - 1}`, 'indices', i);
    for (let k = 0; k < d; k++) out[k] += t[i * d + k];
  }
  for (let k = 0; k < d; k++) out[k] /= rows.length;
  return out;
}

/** Solves S w = h for symmetric positive definite S (Cholesky, float64). */
function solveSpd(s: Float64Array, h: Float64Array): Float64Array {
  const n = h.length,
    l = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let sum = s[i * n + j];
      for (let k = 0; k < j; k++) sum -= l[i * n + k] * l[j * n + k];
      if (i === j) {
        if (!(sum > 0)) throw new ZofoError('ZOFO_INTERNAL', 'the joint Hessian is not positive definite');
        l[i * n + i] = Math.sqrt(sum);
      } else {
        l[i * n + j] = sum / l[j * n + j];
      }
    }
  }
  const w = Float64Array.from(h);
  for (let i = 0; i < n; i++) {
    // L u = h
    for (let k = 0; k < i; k++) w[i] -= l[i * n + k] * w[k];
    w[i] /= l[i * n + i];
  }
  for (let i = n - 1; i >= 0; i--) {
    // Lᵀ w = u
    for (let k = i + 1; k < n; k++) w[i] -= l[k * n + i] * w[k];
    w[i] /= l[i * n + i];
  }
  return w;
}

/** Builds the problem; the same options always give the same problem. */
export function quadraticProblem(opts: QuadraticOptions): QuadraticProblem {
  if (typeof opts !== 'object' || opts === null) throw invalidArg('an options object', 'quadraticProblem options', opts);
  const { dimX, dimY, n, lx, ly, seed } = opts;
  for (const [name, v] of [
    ['dimX', dimX],
    ['dimY', dimY],
    ['n', n],
  ] as const)
    if (!count(v)) throw invalidArg('a positive integer', name, v);
  if (!positive(lx)) throw invalidArg('a positive number', 'lx', lx);
  if (!positive(ly)) throw invalidArg('a positive number', 'ly', ly);
  const mux = opts.mux ?? lx / 10,
    muy = opts.muy ?? ly / 10;
  if (!positive(mux) || mux > lx) throw invalidArg(`a number in (0, lx = ${lx}]`, 'mux', mux);
  if (!positive(muy) || muy > ly) throw invalidArg(`a number in (0, ly = ${ly}]`, 'muy', muy);
  const coupling = opts.coupling ?? 0.5 * Math.sqrt(mux * muy);
  if (typeof coupling !== 'number' || !(coupling >= 0) || coupling ** 2 >= mux * muy) {
    throw invalidArg(`a number in [0, √(mux·muy) = ${Math.sqrt(mux * muy)}) (else the joint Hessian is not positive definite)`, 'coupling', coupling);
  }
  const spread = opts.spread ?? 0.5;
  if (typeof spread !== 'number' || !(spread >= 0) || !Number.isFinite(spread)) throw invalidArg('a finite non-negative number', 'spread', spread);
  if (!Number.isSafeInteger(seed) || seed < 0) throw invalidArg('a non-negative safe integer', 'seed', seed);

  // The construction's randomness comes from zofo's own generator, one named stream each.
  const s = BigInt(seed);
  const A = withSpectrum(dimX, mux, lx, s, 'quadratic.A');
  const B = withSpectrum(dimY, muy, ly, s, 'quadratic.B');
  const P = orthogonal(dimX, s, 'quadratic.C.left'),
    R = orthogonal(dimY, s, 'quadratic.C.right');
  const C = new Float64Array(dimX * dimY);
  for (let r = 0; r < dimX; r++) {
    for (let c = 0; c < dimY; c++) {
      let sum = 0;
      for (let k = 0; k < Math.min(dimX, dimY); k++) sum += P[r * dimX + k] * R[c * dimY + k];
      C[r * dimY + c] = coupling * sum;
    }
  }
  const centreX = kernels.gaussian(dimX, { seed: s, name: 'quadratic.a.mean' });
  const centreY = kernels.gaussian(dimY, { seed: s, name: 'quadratic.b.mean' });
  const noiseX = kernels.gaussian(n * dimX, { seed: s, name: 'quadratic.a' });
  const noiseY = kernels.gaussian(n * dimY, { seed: s, name: 'quadratic.b' });
  const a = new Float64Array(n * dimX),
    b = new Float64Array(n * dimY);
  for (let i = 0; i < n * dimX; i++) a[i] = centreX[i % dimX] + spread * noiseX[i];
  for (let i = 0; i < n * dimY; i++) b[i] = centreY[i % dimY] + spread * noiseY[i];

  // Minimiser of f: H w* = h with H = [[A, C], [Cᵀ, B]], h = (ā, b̄); f(w*) = −½ hᵀw* + κ.
  const d = dimX + dimY,
    H = new Float64Array(d * d);
  for (let r = 0; r < dimX; r++) {
    for (let c = 0; c < dimX; c++) H[r * d + c] = A[r * dimX + c];
    for (let c = 0; c < dimY; c++) H[r * d + dimX + c] = H[(dimX + c) * d + r] = C[r * dimY + c];
  }
  for (let r = 0; r < dimY; r++) for (let c = 0; c < dimY; c++) H[(dimX + r) * d + dimX + c] = B[r * dimY + c];
  const h = new Float64Array(d);
  h.set(meanRows(a, n, dimX));
  h.set(meanRows(b, n, dimY), dimX);
  const wStar = solveSpd(H, h);
  const xStar = wStar.slice(0, dimX),
    yStar = wStar.slice(dimX);
  const kappa = 0.5 * dot(h, wStar);

  const checkDims = (x: Vec, y: Vec) => {
    if (!x || x.length !== dimX) throw invalidArg(`a vector of length dimX = ${dimX}`, 'x', x);
    if (!y || y.length !== dimY) throw invalidArg(`a vector of length dimY = ${dimY}`, 'y', y);
  };

  const problem: QuadraticProblem = {
    dimX,
    dimY,
    n,
    lx,
    ly,
    mux,
    muy,
    coupling,
    A,
    B,
    C,
    a,
    b,
    loss(x, y, indices) {
      checkDims(x, y);
      const aBar = meanRows(a, n, dimX, indices),
        bBar = meanRows(b, n, dimY, indices);
      return (
        0.5 * dot(x, matVec(A, dimX, dimX, x)) + 0.5 * dot(y, matVec(B, dimY, dimY, y)) + dot(x, matVec(C, dimX, dimY, y)) - dot(aBar, x) - dot(bBar, y) + kappa
      );
    },
    gradX(x, y, indices) {
      // A x + C y − ā_B
      checkDims(x, y);
      const g = matVec(A, dimX, dimX, x),
        cy = matVec(C, dimX, dimY, y),
        aBar = meanRows(a, n, dimX, indices);
      for (let k = 0; k < dimX; k++) g[k] += cy[k] - aBar[k];
      return g;
    },
    gradY(x, y, indices) {
      // B y + Cᵀx − b̄_B
      checkDims(x, y);
      const g = matVec(B, dimY, dimY, y),
        ctx = matVec(C, dimX, dimY, x, true),
        bBar = meanRows(b, n, dimY, indices);
      for (let k = 0; k < dimY; k++) g[k] += ctx[k] - bBar[k];
      return g;
    },
    gradNorm(x, y) {
      const gx = problem.gradX(x, y),
        gy = problem.gradY(x, y);
      return Math.sqrt(dot(gx, gx) + dot(gy, gy));
    },
    minimizer: () => ({ x: xStar.slice(), y: yStar.slice() }),
  };
  return problem;
}

// ---------------------------------------------------------------------------------------
// Seeds and the projected gradient

let xStreamId: bigint | undefined;
/** The Philox stream id of the synthetic problem's x (FNV-1a of the name 'x'); computed on first use, so importing this module never loads the addon. */
export function xStream(): bigint {
  xStreamId ??= kernels.streamId('x');
  return xStreamId;
}

/**
 * c, the projected gradient of §2 step 2, in float64 for a given direction z:
 * forward (f(x + μz) − f(x)) / μ, or central (f(x + μz) − f(x − μz)) / 2μ. The reference
 * the fused fp32 path of `runHybrid` is checked against; c·z estimates ∇f(x).
 */
export function projectedGradient(
  f: (x: Float64Array) => number,
  x: Vec,
  z: Vec,
  mu: number,
  estimator: 'forward' | 'central' = 'forward',
  fx?: number,
): number {
  const at = (t: number) => f(Float64Array.from(x, (v, i) => v + t * z[i]));
  if (estimator === 'central') return (at(mu) - at(-mu)) / (2 * mu);
  return (at(mu) - (fx ?? f(Float64Array.from(x)))) / mu;
}

// ---------------------------------------------------------------------------------------
// Hybrid reshuffling SGD (docs/algorithm.md §2 and §4)

export interface HybridRunOptions {
  /** Length of the run: whole epochs, or a number of steps (exactly one of the two). */
  epochs?: number;
  steps?: number;
  batchSize: number;
  /** η_x and η_y (base rates; see scheduleX / scheduleY). */
  lrX: number;
  lrY: number;
  /** Smoothing radius μ (default 1e-3). */
  mu?: number;
  /** Perturbations per step (default 1). */
  q?: number;
  /** Default 'forward'. */
  estimator?: 'forward' | 'central';
  /** Run seed: perturbation seeds are stepSeed(seed, k, j), the sampler uses it too. */
  seed: number;
  dropLast?: boolean;
  withReplacement?: boolean;
  scheduleX?: ScheduleOptions;
  scheduleY?: ScheduleOptions;
  /** Starting point (default 0 for both); x0 is rounded to fp32. */
  x0?: Vec;
  y0?: Vec;
  /** Called after every step. */
  onStep?: (info: HybridStepInfo) => void;
  /**
   * Called with every record as it is appended to the history (the start, each epoch's
   * end, the end of the run); returning true ends the run right there, and `steps` of the
   * result then counts the steps taken.
   */
  onRecord?: (record: HybridRecord) => boolean | void;
}

export interface HybridStepInfo {
  step: number;
  epoch: number;
  indices: number[];
  /** L0 = f(x_k, y_k; B), the minibatch loss before the step. */
  loss: number;
  seeds: bigint[];
  /** c_j. */
  projectedGrads: number[];
  lrX: number;
  lrY: number;
}

/** One recorded point of a `runHybrid` run: epoch, step, loss and gradient norms. */
export interface HybridRecord {
  /** Epochs completed (0: the start; fractional for a run that ends mid-epoch) and steps taken. */
  epoch: number;
  step: number;
  loss: number;
  gradNorm: number;
  gradNormX: number;
  gradNormY: number;
}

export interface HybridRun {
  x: Float32Array;
  y: Float64Array;
  /** Steps taken (fewer than asked when `onRecord` stopped the run). */
  steps: number;
  /** Full loss and gradient norms at the start, after every epoch, and at the end. */
  history: HybridRecord[];
}

/**
 * Hybrid ZO/FO reshuffling SGD on `problem`. Step k on minibatch B:
 *   L0 = f(x_k, y_k; B) and g_y = ∇_y f(x_k, y_k; B), exact, at the current point;
 *   for each j: x ← x + μ z_j (kernels.perturb, seed s_{k,j}, stream 'x'), L⁺_j = f(x, y_k; B),
 *     c_j = (L⁺_j − L0)/μ (forward) — or also x ← x − 2μ z_j, L⁻_j, c_j = (L⁺_j − L⁻_j)/2μ;
 *   the restore of the last perturbation and its update are one kernels.restoreUpdate pass
 *     with scale −μ − η_x c_q/q (forward; +μ − η_x c_q/q after the central's −2μ);
 *   y ← y − η_y g_y.
 * With q > 1 the earlier perturbations are restored plainly and their updates
 * (scale −η_x c_j/q) applied after the last one: folding them into their own restore
 * would move the later perturbations off x_k while L0 stays the loss at x_k, adding a
 * (η_x/μ)-sized error to every later c_j.
 *
 * A step whose L0, g_y or some c_j is NaN or ±∞ (a diverged run) is rejected with
 * ZOFO_NON_FINITE: the perturbation in flight is restored, and neither x nor y is updated.
 */
export function runHybrid(problem: HybridObjective, opts: HybridRunOptions): HybridRun {
  if (typeof opts !== 'object' || opts === null) throw invalidArg('an options object', 'runHybrid options', opts);
  const { dimX, dimY, n } = problem;
  const mu = opts.mu ?? 1e-3,
    q = opts.q ?? 1,
    estimator = opts.estimator ?? 'forward';
  if (!positive(mu)) throw invalidArg('a positive number', 'mu', mu);
  if (!count(q)) throw invalidArg('a positive integer', 'q', q);
  if (estimator !== 'forward' && estimator !== 'central') throw invalidArg("'forward' or 'central'", 'estimator', estimator);
  if ((opts.epochs === undefined) === (opts.steps === undefined)) {
    throw new ZofoError('ZOFO_INVALID_ARG', 'runHybrid: give exactly one of epochs and steps');
  }
  const sampler = new ReshufflingSampler(n, {
    batchSize: opts.batchSize,
    seed: opts.seed,
    dropLast: opts.dropLast,
    withReplacement: opts.withReplacement,
  });
  const total = opts.steps ?? (opts.epochs as number) * sampler.batchesPerEpoch;
  if (!Number.isSafeInteger(total) || total < 0) {
    throw invalidArg('a non-negative integer', opts.steps !== undefined ? 'steps' : 'epochs', opts.steps ?? opts.epochs);
  }

  const x = new Float32Array(dimX),
    y = new Float64Array(dimY);
  if (opts.x0 !== undefined) {
    if (opts.x0.length !== dimX) throw invalidArg(`a vector of length ${dimX}`, 'x0', opts.x0);
    x.set(opts.x0);
  }
  if (opts.y0 !== undefined) {
    if (opts.y0.length !== dimY) throw invalidArg(`a vector of length ${dimY}`, 'y0', opts.y0);
    y.set(opts.y0);
  }

  const history: HybridRecord[] = [];
  const record = (epoch: number, step: number) => {
    const gx = problem.gradX(x, y),
      gy = problem.gradY(x, y);
    const nx = Math.sqrt(dot(gx, gx)),
      ny = Math.sqrt(dot(gy, gy));
    const r: HybridRecord = { epoch, step, loss: problem.loss(x, y), gradNorm: Math.hypot(nx, ny), gradNormX: nx, gradNormY: ny };
    history.push(r);
    return opts.onRecord?.(r) === true;
  };
  if (record(0, 0)) return { x, y, steps: 0, history };
  const nonFinite = (k: number, what: string, v: number) =>
    new ZofoError('ZOFO_NON_FINITE', `runHybrid: step ${k}: ${what} is ${v}; the step was rejected (x and y unchanged)`);

  const stream = xStream();
  for (let k = 0; k < total; k++) {
    const { indices, epoch } = sampler.next();
    const lrX = learningRate(opts.lrX, k, Math.max(1, total), opts.scheduleX);
    const lrY = learningRate(opts.lrY, k, Math.max(1, total), opts.scheduleY);
    // 1. First-order part at (x_k, y_k).
    const loss0 = problem.loss(x, y, indices);
    if (!Number.isFinite(loss0)) throw nonFinite(k, 'the minibatch loss L0', loss0);
    const gy = problem.gradY(x, y, indices);
    for (let i = 0; i < dimY; i++) if (!Number.isFinite(gy[i])) throw nonFinite(k, `∇_y f[${i}]`, gy[i]);
    // 2.–3. Zeroth-order part, restores and the x-update.
    const seeds: bigint[] = [],
      cs: number[] = [];
    for (let j = 0; j < q; j++) {
      const seed = stepSeed(opts.seed, k, j);
      kernels.perturb(x, { seed, stream, scale: mu }); // x_k + μ z_j
      const plus = problem.loss(x, y, indices);
      let c: number, back: number;
      if (estimator === 'forward') {
        c = (plus - loss0) / mu;
        back = -mu;
      } else {
        kernels.perturb(x, { seed, stream, scale: -2 * mu }); // x_k − μ z_j
        c = (plus - problem.loss(x, y, indices)) / (2 * mu);
        back = mu;
      }
      if (!Number.isFinite(c)) {
        // Back to x_k (to rounding); earlier j's were restored plainly and are not yet applied.
        kernels.restoreUpdate(x, { seed, stream, scale: back });
        throw nonFinite(k, `the projected gradient c_${j}`, c);
      }
      seeds.push(seed);
      cs.push(c);
      const last = j === q - 1;
      kernels.restoreUpdate(x, { seed, stream, scale: last ? back - (lrX * c) / q : back });
    }
    for (let j = 0; j < q - 1; j++) kernels.restoreUpdate(x, { seed: seeds[j], stream, scale: -(lrX * cs[j]) / q });
    for (let i = 0; i < dimY; i++) y[i] -= lrY * gy[i];

    opts.onStep?.({ step: k, epoch, indices, loss: loss0, seeds, projectedGrads: cs, lrX, lrY });
    const done = k + 1;
    if ((done % sampler.batchesPerEpoch === 0 || done === total) && record(done / sampler.batchesPerEpoch, done)) {
      return { x, y, steps: done, history };
    }
  }
  return { x, y, steps: total, history };
}
