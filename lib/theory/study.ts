/**
 * The convergence testbed of the paper's claim (docs/algorithm.md §6): hybrid ZO/FO reshuffling
 * SGD with separate rates η_x, η_y converges on finite sums that are hybrid-smooth,
 *
 *   ‖∇_x f(x₁,y) − ∇_x f(x₂,y)‖ ≤ L_x‖x₁ − x₂‖,   ‖∇_y f(x,y₁) − ∇_y f(x,y₂)‖ ≤ L_y‖y₁ − y₂‖,
 *
 * run on objectives whose block constants are KNOWN, plus one that breaks the condition.
 * Every run is `runHybrid` (lib/train/quadratic.ts): the real fused fp32 kernels move x,
 * exact minibatch gradients move y, minibatches come from the reshuffling sampler.
 *
 * Objectives (finite sums of n examples; constants derived where each is built):
 *   'quadratic-well'  quadraticProblem with spectra in [0.5, 1] (x) and [1, 2] (y): κ = 2.
 *   'quadratic-ill'   quadraticProblem with spectra in [0.01, 1] (x) and [0.004, 4] (y): κ = 100, 1000.
 *   'nonconvex'       sums of cosines plus a quadratic in y, with a small bounded coupling:
 *                     non-convex in x and in y, Hessian blocks bounded by stated L_x, L_y.
 *   'violates'        ½λ‖x − w_i‖² + ½(1 + ‖x‖²)‖y − v_i‖²: ∇_y's Lipschitz constant in y is
 *                     1 + ‖x‖² (unbounded in x), ∇_x's in x is λ + ‖y − v_i‖² (unbounded in y).
 *                     Its "constants" are the local ones at the start point.
 *
 * Verdict of a run, from the full-gradient norms ‖∇f‖ recorded at the start and after every
 * epoch (g₀ = the start's):
 *   'diverges'   some ‖∇f‖ is NaN/∞ or exceeds DIVERGE_FACTOR·g₀ (runs are stopped once past
 *                STOP_FACTOR·g₀, or when a step meets a non-finite loss or gradient);
 *   'converges'  otherwise, if g₀ / end ≥ CONVERGE_FACTOR, where end is the RMS of ‖∇f‖ over
 *                the last min(TAIL_EPOCHS, ⌈epochs/10⌉) epochs (with a constant step the
 *                norm settles to a noise floor that fluctuates);
 *   'stalls'     otherwise.
 *
 * Reference curve (a SLOPE to compare against, NOT a bound): the non-convex SGD analysis
 * gives min_{k≤K} E‖∇f‖² = O(1/√K), i.e. the paper's epoch complexity O(ε⁻⁴) for ‖∇f‖ ≤ ε.
 * We draw ‖∇f‖_ref(e) = g₀ · max(e, 1)^(−1/4) — C/√e for ‖∇f‖², anchored at the first point.
 * On the strongly convex quadratics the runs fall much faster (linearly, to a noise floor);
 * the reference is the worst-case rate the theory promises for smooth non-convex f.
 */
import { invalidArg, ZofoError } from '../errors.js';
import * as kernels from '../kernels.js';
import { writeChartFiles, type ChartPoint, type ChartRow, type ChartSeries, type ChartSpec } from '../chart.js';
import { quadraticProblem, runHybrid, type HybridObjective, type HybridRecord, type Vec } from '../train/quadratic.js';

/**
 * The synthetic objectives of the convergence study (docs/smoothness.md).
 */
export type ObjectiveName = 'quadratic-well' | 'quadratic-ill' | 'nonconvex' | 'violates';
/**
 * Every `ObjectiveName`, in the order the study runs them.
 */
export const OBJECTIVES: readonly ObjectiveName[] = ['quadratic-well', 'quadratic-ill', 'nonconvex', 'violates'];

/** 'converges' needs ‖∇f‖ start / end ≥ this. */
export const CONVERGE_FACTOR = 10;
/** 'diverges' once any ‖∇f‖ > this × the start's (or non-finite). */
export const DIVERGE_FACTOR = 10;
/** A run is stopped once ‖∇f‖ > this × the start's (or non-finite). */
export const STOP_FACTOR = 1e6;
/** At most this many final epochs make the end ‖∇f‖ (their RMS). */
export const TAIL_EPOCHS = 10;
/** 'theory' grids: η_y = m / L_y for these m … */
export const THEORY_LR_Y: readonly number[] = [0.5, 1, 2.5];
/** … and η_x = m / (4 (d_x + 4) L_x) for these m. */
export const THEORY_LR_X: readonly number[] = [1, 4];
/** Exponent of the reference curve ‖∇f‖_ref ∝ epoch^REFERENCE_EXPONENT. */
export const REFERENCE_EXPONENT = -0.25;

/** A synthetic objective of the convergence study, with its known constants and start point. */
export interface StudyObjective extends HybridObjective {
  readonly name: ObjectiveName;
  /** One line: what f is and where L_x, L_y come from. */
  readonly description: string;
  /** The block constants the 'theory' grids use. */
  readonly lx: number;
  readonly ly: number;
  /** 'global': valid everywhere (hybrid smoothness holds); 'local-at-start': only at (x0, y0). */
  readonly constants: 'global' | 'local-at-start';
  /** The start point of every run (x0 already rounded to fp32, as runHybrid stores it). */
  readonly x0: Float64Array;
  readonly y0: Float64Array;
  /** ‖∇f(x, y)‖ over all n examples. */
  gradNorm(x: Vec, y: Vec): number;
  /**
   * Block constants valid at (x, y): sup over x' of ‖∇²_xx f(x', y)‖ and sup over y' of
   * ‖∇²_yy f(x, y')‖. The global lx, ly for the hybrid-smooth objectives; for 'violates'
   * its exact, point-dependent λ + mean_i‖y − v_i‖² and 1 + ‖x‖².
   */
  localConstants(x: Vec, y: Vec): { lx: number; ly: number };
  /** The global minimiser, where known in closed form (quadratics, 'violates'). */
  minimizer?(): { x: Float64Array; y: Float64Array };
}

/** Options of `makeObjective()`: dimensions, number of examples and seed. */
export interface ObjectiveOptions {
  dimX: number;
  dimY: number;
  n: number;
  /** Seed of the objective's data and start point (a non-negative safe integer). */
  seed: number;
}

// ---------------------------------------------------------------------------------------
// Small helpers

const positive = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v > 0;
const count = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 1;

const dot = (u: Vec, v: Vec): number => {
  let s = 0;
  for (let i = 0; i < u.length; i++) s += u[i] * v[i];
  return s;
};

/** d float64 normals from zofo's generator, stream `name` under `seed`. */
const normals = (d: number, seed: number, name: string): Float64Array => Float64Array.from(kernels.gaussian(d, { seed: BigInt(seed), name }));

/** d values evenly spaced from lo to hi (d = 1: just hi). */
const spaced = (d: number, lo: number, hi: number): Float64Array => Float64Array.from({ length: d }, (_, i) => (d === 1 ? hi : lo + ((hi - lo) * i) / (d - 1)));

function unit(v: Float64Array): Float64Array {
  const s = Math.sqrt(dot(v, v));
  return v.map((e) => e / s);
}

/** The rounding runHybrid applies to x0. */
const fp32 = (v: Vec): Float64Array => Float64Array.from(Float32Array.from(v as ArrayLike<number>));

/** Example rows of a minibatch (all n when undefined), checked. */
function rowsOf(indices: readonly number[] | undefined, n: number): readonly number[] {
  const rows = indices ?? Array.from({ length: n }, (_, i) => i);
  if (rows.length === 0) throw new ZofoError('ZOFO_INVALID_ARG', 'an empty minibatch has no loss');
  for (const i of rows) if (!Number.isInteger(i) || i < 0 || i >= n) throw invalidArg(`an example index in 0 .. ${n - 1}`, 'indices', i);
  return rows;
}

/** Row-major (n × d) table: centre + spread · N(0, I) per row. */
function examples(n: number, centre: Float64Array, spread: number, seed: number, name: string): Float64Array {
  const d = centre.length,
    noise = normals(n * d, seed, name),
    t = new Float64Array(n * d);
  for (let i = 0; i < n * d; i++) t[i] = centre[i % d] + spread * noise[i];
  return t;
}

function meanRow(t: Float64Array, d: number, rows: readonly number[]): Float64Array {
  const m = new Float64Array(d);
  for (const i of rows) for (let k = 0; k < d; k++) m[k] += t[i * d + k];
  for (let k = 0; k < d; k++) m[k] /= rows.length;
  return m;
}

function checker(dimX: number, dimY: number) {
  return (x: Vec, y: Vec) => {
    if (!x || x.length !== dimX) throw invalidArg(`a vector of length dimX = ${dimX}`, 'x', x);
    if (!y || y.length !== dimY) throw invalidArg(`a vector of length dimY = ${dimY}`, 'y', y);
  };
}

const withGradNorm = (o: Omit<StudyObjective, 'gradNorm' | 'localConstants'> & Partial<Pick<StudyObjective, 'localConstants'>>): StudyObjective =>
  Object.assign(o, {
    localConstants: o.localConstants ?? (() => ({ lx: o.lx, ly: o.ly })),
    gradNorm: (x: Vec, y: Vec) => {
      const gx = o.gradX(x, y),
        gy = o.gradY(x, y);
      return Math.sqrt(dot(gx, gx) + dot(gy, gy));
    },
  });

// ---------------------------------------------------------------------------------------
// The objectives

/** Spread of the examples' data around their means (small: the constant-step noise floor scales with it). */
const SPREAD = 0.1;
const VIOLATES_SPREAD = 0.03;
/** Quadratics start at (x*, y*) + START_OFFSET · N(0, I). */
const START_OFFSET = 1;

function quadraticObjective(name: 'quadratic-well' | 'quadratic-ill', o: ObjectiveOptions): StudyObjective {
  // L_x = λmax(A), L_y = λmax(B) exactly (quadraticProblem's construction; checked in
  // test/quadratic.test.ts). The start is offset from the minimiser in every eigendirection
  // alike, so ‖∇f‖ starts at ~ rms(λ)·‖offset‖ and the stiff directions dominate it.
  const spec = name === 'quadratic-well' ? { lx: 1, mux: 0.5, ly: 2, muy: 1 } : { lx: 1, mux: 0.01, ly: 4, muy: 0.004 };
  const p = quadraticProblem({ dimX: o.dimX, dimY: o.dimY, n: o.n, ...spec, spread: SPREAD, seed: o.seed });
  const m = p.minimizer(),
    dx = normals(o.dimX, o.seed, 'study.x0'),
    dy = normals(o.dimY, o.seed, 'study.y0');
  return {
    name,
    description: `½xᵀAx + ½yᵀBy + xᵀCy − a_iᵀx − b_iᵀy; spec(A) ⊂ [${spec.mux}, ${spec.lx}], spec(B) ⊂ [${spec.muy}, ${spec.ly}]: L_x = λmax(A) = ${p.lx}, L_y = λmax(B) = ${p.ly} (exact, global)`,
    dimX: o.dimX,
    dimY: o.dimY,
    n: o.n,
    lx: p.lx,
    ly: p.ly,
    constants: 'global',
    x0: fp32(m.x.map((v, i) => v + START_OFFSET * dx[i])),
    y0: m.y.map((v, i) => v + START_OFFSET * dy[i]),
    loss: (x, y, idx) => p.loss(x, y, idx),
    gradX: (x, y, idx) => p.gradX(x, y, idx),
    gradY: (x, y, idx) => p.gradY(x, y, idx),
    gradNorm: (x, y) => p.gradNorm(x, y),
    localConstants: () => ({ lx: p.lx, ly: p.ly }),
    minimizer: () => p.minimizer(),
  };
}

/**
 * f_i(x, y) = Σ_k α_k (1 − cos(x_k − u_ik))
 *           + Σ_l β_l [½ (y_l − v_il)² + ω (1 − cos y_l)]
 *           + γ sin(pᵀx) sin(qᵀy),                       ‖p‖ = ‖q‖ = 1,
 * α_k evenly spaced in [0.5, 1], β_l in [0.5, 1], ω = 2, γ = 0.2.
 *
 * ∇²_xx f_i = diag(α_k cos(x_k − u_ik)) − γ sin(pᵀx) sin(qᵀy) ppᵀ, so ‖∇²_xx f_i‖ ≤ max α + γ;
 * ∇²_yy f_i = diag(β_l (1 + ω cos y_l)) − γ sin(pᵀx) sin(qᵀy) qqᵀ, so ‖∇²_yy f_i‖ ≤ max β (1 + ω) + γ.
 * The mean f inherits both bounds, and by the mean-value theorem ∇_x f is L_x-Lipschitz in x
 * for every y and ∇_y f is L_y-Lipschitz in y for every x, with
 *   L_x = max α + γ = 1.2,   L_y = max β (1 + ω) + γ = 3.2   (global upper bounds).
 * Non-convex in x (cos) and in y (curvature β_l (1 + 2 cos y_l) < 0 where cos y_l < −½); the
 * y-block's curvature at infinity is β_l ≤ 1, so only η_y > 2/max β = 6.4/L_y can blow up.
 */
function nonconvexObjective(o: ObjectiveOptions): StudyObjective {
  const { dimX, dimY, n, seed } = o;
  const OMEGA = 2,
    GAMMA = 0.2;
  const alpha = spaced(dimX, 0.5, 1),
    beta = spaced(dimY, 0.5, 1);
  const uBar = normals(dimX, seed, 'nonconvex.u.mean'),
    vBar = normals(dimY, seed, 'nonconvex.v.mean');
  const u = examples(n, uBar, SPREAD, seed, 'nonconvex.u'),
    v = examples(n, vBar, SPREAD, seed, 'nonconvex.v');
  const p = unit(normals(dimX, seed, 'nonconvex.p')),
    q = unit(normals(dimY, seed, 'nonconvex.q'));
  const lx = Math.max(...alpha) + GAMMA,
    ly = Math.max(...beta) * (1 + OMEGA) + GAMMA;
  const check = checker(dimX, dimY);
  const sx = normals(dimX, seed, 'study.x0'),
    sy = normals(dimY, seed, 'study.y0');
  return withGradNorm({
    name: 'nonconvex' as const,
    description: `Σα_k(1 − cos(x_k − u_ik)) + Σβ_l[½(y_l − v_il)² + ${OMEGA}(1 − cos y_l)] + ${GAMMA}·sin(pᵀx)sin(qᵀy): L_x = max α + γ = ${lx}, L_y = max β(1 + ω) + γ = ${ly} (Hessian-block bounds, global)`,
    dimX,
    dimY,
    n,
    lx,
    ly,
    constants: 'global' as const,
    x0: fp32(uBar.map((c, k) => c + 1.5 * sx[k])),
    y0: vBar.map((c, l) => c + sy[l]),
    loss(x: Vec, y: Vec, idx?: readonly number[]) {
      check(x, y);
      const rows = rowsOf(idx, n);
      let s = 0;
      for (const i of rows) {
        for (let k = 0; k < dimX; k++) s += alpha[k] * (1 - Math.cos(x[k] - u[i * dimX + k]));
        for (let l = 0; l < dimY; l++) s += 0.5 * beta[l] * (y[l] - v[i * dimY + l]) ** 2;
      }
      s /= rows.length;
      for (let l = 0; l < dimY; l++) s += beta[l] * OMEGA * (1 - Math.cos(y[l]));
      return s + GAMMA * Math.sin(dot(p, x)) * Math.sin(dot(q, y));
    },
    gradX(x: Vec, y: Vec, idx?: readonly number[]) {
      check(x, y);
      const rows = rowsOf(idx, n),
        g = new Float64Array(dimX);
      for (const i of rows) for (let k = 0; k < dimX; k++) g[k] += Math.sin(x[k] - u[i * dimX + k]);
      const c = GAMMA * Math.cos(dot(p, x)) * Math.sin(dot(q, y));
      for (let k = 0; k < dimX; k++) g[k] = (alpha[k] * g[k]) / rows.length + c * p[k];
      return g;
    },
    gradY(x: Vec, y: Vec, idx?: readonly number[]) {
      check(x, y);
      const vB = meanRow(v, dimY, rowsOf(idx, n)),
        c = GAMMA * Math.sin(dot(p, x)) * Math.cos(dot(q, y));
      return Float64Array.from({ length: dimY }, (_, l) => beta[l] * (y[l] - vB[l] + OMEGA * Math.sin(y[l])) + c * q[l]);
    },
  });
}

/**
 * VIOLATES hybrid smoothness:
 *   f_i(x, y) = ½λ‖x − w_i‖² + ½(1 + ‖x‖²)‖y − v_i‖²,   λ = 1, ‖w̄‖ = 3.
 * ∇_x f_i = λ(x − w_i) + ‖y − v_i‖² x,   ∇_y f_i = (1 + ‖x‖²)(y − v_i);
 * ∇²_yy f = (1 + ‖x‖²) I: ∇_y f is Lipschitz in y with constant 1 + ‖x‖², which is not
 * bounded over x; ∇²_xx f = (λ + mean_i‖y − v_i‖²) I, not bounded over y. No global L_x, L_y.
 * The minimiser is y* = v̄, x* = λw̄/(λ + mean_i‖v_i − v̄‖²) (‖x*‖ ≈ 3, so L_y(x*) ≈ 10).
 * The constants reported (and used by 'theory' grids) are the LOCAL ones at the start,
 * x0 ≈ 0 (L_y(x0) = 1 + ‖x0‖² ≈ 1), y0 = v̄ + ½N(0, I) (L_x = λ + mean_i‖y0 − v_i‖²):
 * a rate admissible there, η_y < 2/L_y(x0), stops being so once ‖x‖² > 2/η_y − 1, and the
 * iterate does travel there (x → x*).
 */
function violatingObjective(o: ObjectiveOptions): StudyObjective {
  const { dimX, dimY, n, seed } = o;
  const LAMBDA = 1,
    RADIUS = 3;
  const wBar = unit(normals(dimX, seed, 'violates.w.mean')).map((e) => RADIUS * e),
    vBar = normals(dimY, seed, 'violates.v.mean');
  // A smaller spread than the others': ∇_y's noise floor is L_y(x*)·(spread of the batch means of v_i).
  const w = examples(n, wBar, VIOLATES_SPREAD, seed, 'violates.w'),
    v = examples(n, vBar, VIOLATES_SPREAD, seed, 'violates.v');
  const check = checker(dimX, dimY);
  const meanSq = (y: Vec, rows: readonly number[]) => {
    // mean_i ‖y − v_i‖²
    let s = 0;
    for (const i of rows) for (let l = 0; l < dimY; l++) s += (y[l] - v[i * dimY + l]) ** 2;
    return s / rows.length;
  };
  const x0 = fp32(normals(dimX, seed, 'study.x0').map((e) => 0.1 * e));
  const y0 = normals(dimY, seed, 'study.y0').map((e, l) => vBar[l] + 0.5 * e);
  const all = rowsOf(undefined, n);
  const local = (x: Vec, y: Vec) => ({ lx: LAMBDA + meanSq(y, all), ly: 1 + dot(x, x) });
  const { lx, ly } = local(x0, y0);
  const vBarAll = meanRow(v, dimY, all),
    wBarAll = meanRow(w, dimX, all),
    s = meanSq(vBarAll, all);
  const xStar = wBarAll.map((e) => (LAMBDA * e) / (LAMBDA + s));
  return withGradNorm({
    name: 'violates' as const,
    description: `½λ‖x − w_i‖² + ½(1 + ‖x‖²)‖y − v_i‖²: L_y(x) = 1 + ‖x‖², L_x(y) = λ + mean‖y − v_i‖² are unbounded; local at the start: L_x = ${lx.toPrecision(4)}, L_y = ${ly.toPrecision(4)}; at the minimiser L_y = ${(1 + dot(xStar, xStar)).toPrecision(4)}`,
    dimX,
    dimY,
    n,
    lx,
    ly,
    constants: 'local-at-start' as const,
    x0,
    y0,
    localConstants: local,
    minimizer: () => ({ x: xStar.slice(), y: vBarAll.slice() }),
    loss(x: Vec, y: Vec, idx?: readonly number[]) {
      check(x, y);
      const rows = rowsOf(idx, n);
      let s = 0;
      for (const i of rows) for (let k = 0; k < dimX; k++) s += (x[k] - w[i * dimX + k]) ** 2;
      return (0.5 * LAMBDA * s) / rows.length + 0.5 * (1 + dot(x, x)) * meanSq(y, rows);
    },
    gradX(x: Vec, y: Vec, idx?: readonly number[]) {
      check(x, y);
      const rows = rowsOf(idx, n),
        wB = meanRow(w, dimX, rows),
        s = meanSq(y, rows);
      return Float64Array.from({ length: dimX }, (_, k) => LAMBDA * (x[k] - wB[k]) + s * x[k]);
    },
    gradY(x: Vec, y: Vec, idx?: readonly number[]) {
      check(x, y);
      const vB = meanRow(v, dimY, rowsOf(idx, n)),
        h = 1 + dot(x, x);
      return Float64Array.from({ length: dimY }, (_, l) => h * (y[l] - vB[l]));
    },
  });
}

/** Builds one of the study's objectives; the same options always give the same objective. */
export function makeObjective(name: ObjectiveName, opts: ObjectiveOptions): StudyObjective {
  if (typeof opts !== 'object' || opts === null) throw invalidArg('an options object', 'makeObjective options', opts);
  for (const key of ['dimX', 'dimY', 'n'] as const) if (!count(opts[key])) throw invalidArg('a positive integer', key, opts[key]);
  if (!Number.isSafeInteger(opts.seed) || opts.seed < 0) throw invalidArg('a non-negative safe integer', 'seed', opts.seed);
  switch (name) {
    case 'quadratic-well':
    case 'quadratic-ill':
      return quadraticObjective(name, opts);
    case 'nonconvex':
      return nonconvexObjective(opts);
    case 'violates':
      return violatingObjective(opts);
    default:
      throw invalidArg(OBJECTIVES.map((o) => `'${o}'`).join(', '), 'objective', name);
  }
}

// ---------------------------------------------------------------------------------------
// The study

/**
 * The grid a study sweeps: step sizes for each block (or the rates the theory admits) and smoothing radii.
 */
export interface StudyGrid {
  /** η_x values, or 'theory': THEORY_LR_X / (4 (d_x + 4) L_x). */
  lrX: readonly number[] | 'theory';
  /** η_y values, or 'theory': THEORY_LR_Y / L_y. */
  lrY: readonly number[] | 'theory';
  /** Smoothing radii μ. */
  mu: readonly number[];
}

/**
 * Options of `runStudy()` / `study()`: which objective, the grid of step sizes and smoothing radii, steps and seed.
 */
export interface StudyOptions {
  objective: ObjectiveName;
  dimX: number;
  dimY: number;
  n: number;
  batchSize: number;
  epochs: number;
  grid: StudyGrid;
  /** Seeds the objective's data and start, and every run (all runs share perturbations and batches). */
  seed: number;
  /** Perturbations per step (default 1) and estimator (default 'forward'), as in runHybrid. */
  q?: number;
  estimator?: 'forward' | 'central';
}

/** How a study run ended. */
export type Verdict = 'converges' | 'diverges' | 'stalls';

/** One recorded point of a study run: a `HybridRecord` plus the running minimum of the gradient norm. */
export interface StudyRecord extends HybridRecord {
  /** min of ‖∇f‖ over this and every earlier record (NaN/∞ ignored). */
  runningMin: number;
}

/**
 * One run of the study: its rates and radius, the recorded trajectory, the constants at its end and its verdict.
 */
export interface StudyRun {
  lrX: number;
  lrY: number;
  mu: number;
  /** Legend name of the run. */
  label: string;
  /** Start, then one per epoch; shorter when the run was stopped. */
  records: StudyRecord[];
  /** ‖∇f‖ at the start. */
  start: number;
  /** RMS of ‖∇f‖ over the final epochs (see TAIL_EPOCHS); the last value of a stopped run. */
  end: number;
  /** start / end. */
  ratio: number;
  /** max ‖∇f‖ / start (∞ when some norm was not finite). */
  maxRatio: number;
  verdict: Verdict;
  /** Why the run ended before its last epoch (null: it did not). */
  stopped: string | null;
  /**
   * objective.localConstants at the last iterate (null when a step was rejected as
   * non-finite). For 'violates' this shows how far the local L_y moved from the start's.
   */
  endConstants: { lx: number; ly: number } | null;
}

/**
 * All runs of a study on one objective, with the objective's known constants and a reference curve for the chart.
 */
export interface StudyResult {
  objective: {
    name: ObjectiveName;
    description: string;
    lx: number;
    ly: number;
    constants: 'global' | 'local-at-start';
    dimX: number;
    dimY: number;
    n: number;
  };
  batchSize: number;
  epochs: number;
  seed: number;
  runs: StudyRun[];
  /** The reference slope: g₀ · max(e, 1)^(−1/4), one point per epoch. */
  reference: { label: string; points: ChartPoint[] };
  /** One row per (run, record), for CSV/JSONL. */
  rows: ChartRow[];
}

/** Three significant digits, exponent form outside [1e-3, 1e4). */
function fmt(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (v === 0) return '0';
  const a = Math.abs(v);
  return a >= 1e-3 && a < 1e4 ? String(Number.parseFloat(v.toPrecision(3))) : v.toExponential(2);
}

function checkRates(v: unknown, name: string): readonly number[] {
  if (!Array.isArray(v) || v.length === 0 || !v.every(positive))
    throw invalidArg(`a non-empty array of positive numbers${name === 'mu' ? '' : " or 'theory'"}`, `grid.${name}`, v);
  return v;
}

function verdictOf(
  records: readonly HybridRecord[],
  epochs: number,
  stopped: string | null,
): Pick<StudyRun, 'start' | 'end' | 'ratio' | 'maxRatio' | 'verdict'> {
  const start = records[0].gradNorm;
  let max = 0,
    finite = true;
  for (const r of records) {
    if (!Number.isFinite(r.gradNorm)) finite = false;
    else max = Math.max(max, r.gradNorm);
  }
  const maxRatio = finite ? max / start : Infinity;
  let end: number;
  if (stopped !== null) end = records[records.length - 1].gradNorm;
  else {
    const tail = records.slice(1).slice(-Math.min(TAIL_EPOCHS, Math.max(1, Math.ceil(epochs / 10))));
    end = tail.length === 0 ? start : Math.sqrt(tail.reduce((s, r) => s + r.gradNorm ** 2, 0) / tail.length);
  }
  const ratio = start / end;
  const verdict: Verdict = stopped !== null || !finite || maxRatio > DIVERGE_FACTOR ? 'diverges' : ratio >= CONVERGE_FACTOR ? 'converges' : 'stalls';
  return { start, end, ratio, maxRatio, verdict };
}

/** Runs hybrid reshuffling SGD for every (η_x, η_y, μ) of the grid and judges each run. */
export function runStudy(opts: StudyOptions): StudyResult {
  if (typeof opts !== 'object' || opts === null) throw invalidArg('an options object', 'runStudy options', opts);
  const { dimX, dimY, n, batchSize, epochs, seed } = opts;
  if (!count(epochs)) throw invalidArg('a positive integer', 'epochs', epochs);
  if (!count(batchSize) || batchSize > n) throw invalidArg(`an integer in 1 .. n = ${n}`, 'batchSize', batchSize);
  if (typeof opts.grid !== 'object' || opts.grid === null) throw invalidArg('a grid { lrX, lrY, mu }', 'grid', opts.grid);
  const obj = makeObjective(opts.objective, { dimX, dimY, n, seed });
  const lrXs = opts.grid.lrX === 'theory' ? THEORY_LR_X.map((m) => m / (4 * (dimX + 4) * obj.lx)) : checkRates(opts.grid.lrX, 'lrX');
  const lrYs = opts.grid.lrY === 'theory' ? THEORY_LR_Y.map((m) => m / obj.ly) : checkRates(opts.grid.lrY, 'lrY');
  const mus = checkRates(opts.grid.mu, 'mu');

  // Every run starts at (x0, y0): g0 is their common first point (as runHybrid records it).
  let g0 = NaN;
  const runs: StudyRun[] = [];
  const rows: ChartRow[] = [];
  for (const lrX of lrXs) {
    for (const lrY of lrYs) {
      for (const mu of mus) {
        const records: HybridRecord[] = [];
        let stopped: string | null = null,
          endConstants: StudyRun['endConstants'] = null;
        try {
          const out = runHybrid(obj, {
            epochs,
            batchSize,
            lrX,
            lrY,
            mu,
            q: opts.q,
            estimator: opts.estimator,
            seed,
            x0: obj.x0,
            y0: obj.y0,
            onRecord: (r) => {
              records.push(r);
              if (!Number.isFinite(r.gradNorm)) stopped = `‖∇f‖ = ${r.gradNorm} at epoch ${fmt(r.epoch)}`;
              else if (r.gradNorm > STOP_FACTOR * records[0].gradNorm) stopped = `‖∇f‖ > ${STOP_FACTOR.toExponential(0)} × start at epoch ${fmt(r.epoch)}`;
              return stopped !== null;
            },
          });
          endConstants = obj.localConstants(out.x, out.y);
        } catch (err) {
          if (!(err instanceof ZofoError && err.code === 'ZOFO_NON_FINITE')) throw err;
          stopped = err.message;
        }
        let best = Infinity;
        const recs: StudyRecord[] = records.map((r) => {
          if (Number.isFinite(r.gradNorm)) best = Math.min(best, r.gradNorm);
          return { ...r, runningMin: best };
        });
        const label = `ηx=${fmt(lrX)} ηy=${fmt(lrY)}${mus.length > 1 ? ` μ=${fmt(mu)}` : ''}`;
        if (runs.length === 0) g0 = records[0].gradNorm;
        const run: StudyRun = { lrX, lrY, mu, label, records: recs, stopped, endConstants, ...verdictOf(records, epochs, stopped) };
        runs.push(run);
        for (const r of recs) {
          rows.push({
            objective: obj.name,
            run: label,
            lrX,
            lrY,
            mu,
            epoch: r.epoch,
            step: r.step,
            loss: r.loss,
            gradNorm: r.gradNorm,
            gradNormX: r.gradNormX,
            gradNormY: r.gradNormY,
            log10GradNorm: Math.log10(r.gradNorm),
            runningMin: r.runningMin,
            reference: g0 * Math.max(r.epoch, 1) ** REFERENCE_EXPONENT,
            verdict: run.verdict,
          });
        }
      }
    }
  }
  const reference = {
    label: 'reference ∝ epoch^(−1/4) (min‖∇f‖² = O(1/√K); a slope, not a bound)',
    points: Array.from({ length: epochs + 1 }, (_, e): ChartPoint => [e, g0 * Math.max(e, 1) ** REFERENCE_EXPONENT]),
  };
  const { name, description, lx, ly, constants } = obj;
  return { objective: { name, description, lx, ly, constants, dimX, dimY, n }, batchSize, epochs, seed, runs, reference, rows };
}

/**
 * The chart of a study: log10 ‖∇f‖ (and of its x and y parts) against the epoch, one series
 * per run plus the reference slope. chart.ts draws linear axes, hence the log10. A diverged
 * run's values (NaN/∞ included) are drawn clipped at STOP_FACTOR × the start, where runs stop.
 */
export function studyChart(result: StudyResult): ChartSpec {
  const g0 = result.runs[0]?.start ?? 1;
  const cap = Math.log10(STOP_FACTOR * g0);
  const log = (v: number) => (Number.isNaN(v) || v > 10 ** cap ? cap : Math.log10(v));
  const series = (pick: (r: StudyRecord) => number): ChartSeries[] =>
    result.runs.map((run) => ({ name: run.label, points: run.records.map((r): ChartPoint => [r.epoch, log(pick(r))]) }));
  const ref: ChartSeries = { name: result.reference.label, points: result.reference.points.map(([e, v]): ChartPoint => [e, Math.log10(v)]) };
  const { name, dimX, dimY, n, lx, ly, constants } = result.objective;
  return {
    title: `Hybrid reshuffling SGD on '${name}' (d_x = ${dimX}, d_y = ${dimY}, n = ${n}, B = ${result.batchSize}; L_x = ${fmt(lx)}, L_y = ${fmt(ly)}${constants === 'global' ? '' : ', local at the start'})`,
    columns: 3,
    panels: [
      { title: '‖∇f‖ (diverged runs clipped at 1e6 × start)', xLabel: 'epoch', yLabel: 'log10 ‖∇f‖', series: [...series((r) => r.gradNorm), ref] },
      { title: '‖∇_x f‖ (zeroth-order block)', xLabel: 'epoch', yLabel: 'log10 ‖∇_x f‖', series: series((r) => r.gradNormX) },
      { title: '‖∇_y f‖ (first-order block)', xLabel: 'epoch', yLabel: 'log10 ‖∇_y f‖', series: series((r) => r.gradNormY) },
    ],
  };
}

/**
 * The study as a fixed-width text table, one line per run. lrY·Ly(end) uses the local L_y
 * at the last iterate (equal to lrY·Ly for the hybrid-smooth objectives; '-' when the run
 * ended on a rejected non-finite step).
 */
export function formatStudyTable(result: StudyResult): string {
  const { name, dimX, lx, ly } = result.objective;
  const head = ['objective', 'lrX', 'lrX·4(dx+4)Lx', 'lrY', 'lrY·Ly', 'lrY·Ly(end)', 'mu', 'start ‖∇f‖', 'end ‖∇f‖', 'ratio', 'verdict'];
  const body = result.runs.map((r) => [
    name,
    fmt(r.lrX),
    fmt(r.lrX * 4 * (dimX + 4) * lx),
    fmt(r.lrY),
    fmt(r.lrY * ly),
    r.endConstants ? fmt(r.lrY * r.endConstants.ly) : '-',
    fmt(r.mu),
    fmt(r.start),
    fmt(r.end),
    fmt(r.ratio),
    r.verdict + (r.stopped !== null ? ` (stopped, epoch ${fmt(r.records[r.records.length - 1].epoch)})` : ''),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]))
      .join('  ')
      .trimEnd();
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n') + '\n';
}

/** What `study()` returns: the result, its table as text and the files it wrote. */
export interface StudyReport {
  result: StudyResult;
  /** formatStudyTable(result). */
  table: string;
  /** Paths of <out>/study.svg, .csv and .jsonl. */
  files: { svg: string; csv: string; jsonl: string };
}

/** runStudy, then writes <out>/study.svg (studyChart), study.csv and study.jsonl (the rows). */
export async function study(opts: StudyOptions & { out: string }): Promise<StudyReport> {
  if (typeof opts?.out !== 'string' || opts.out.length === 0) throw invalidArg('an output directory', 'out', opts?.out);
  const result = runStudy(opts);
  const files = await writeChartFiles(opts.out, 'study', studyChart(result), result.rows);
  return { result, table: formatStudyTable(result), files };
}
