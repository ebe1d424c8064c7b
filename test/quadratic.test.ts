// The synthetic quadratic of docs/algorithm.md §6 and hybrid ZO/FO reshuffling SGD on it:
// the problem's constants are what it claims, the Gaussian-smoothing estimator built on
// the real z has the mean theory predicts (unbiased on a quadratic, O(μ²) bias on a
// smooth cubic, O(μ) on an L-smooth function with a kink), the fused fp32 step matches
// its float64 formula, admissible step sizes converge, too large a η_y diverges, and a
// run is bit-reproducible.
import t from 'tap';
import { kernels } from '../lib/index.js';
import { stepSeed } from '../lib/train/optimizer.js';
import { projectedGradient, quadraticProblem, runHybrid, xStream, type QuadraticProblem } from '../lib/train/quadratic.js';
import { freshSeed } from './helpers/reference.js';

const seed = freshSeed() % 1_000_000;
t.comment(`input seed ${seed}`);

const DX = 32,
  DY = 8,
  N = 32;
const problem = quadraticProblem({ dimX: DX, dimY: DY, n: N, lx: 1, ly: 2, mux: 0.25, muy: 0.2, spread: 0.15, seed });

const dot = (u: ArrayLike<number>, v: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < u.length; i++) s += u[i] * v[i];
  return s;
};
const norm = (u: ArrayLike<number>) => Math.sqrt(dot(u, u));
/** A point away from the minimiser, drawn from zofo's generator. */
const point = (name: string, d: number, s = seed) => Float64Array.from(kernels.gaussian(d, { seed: BigInt(s), name }));
/** z of direction k, exactly as a step of runHybrid would draw it. */
const direction = (s: number, k: number) => kernels.gaussian(DX, { seed: stepSeed(s, k, 0), stream: xStream() });

/** Whether symmetric S (row-major d × d) is positive definite (Cholesky succeeds). */
function positiveDefinite(s: Float64Array, d: number): boolean {
  const l = new Float64Array(d * d);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j <= i; j++) {
      let sum = s[i * d + j];
      for (let k = 0; k < j; k++) sum -= l[i * d + k] * l[j * d + k];
      if (i === j) {
        if (!(sum > 0)) return false;
        l[i * d + i] = Math.sqrt(sum);
      } else l[i * d + j] = sum / l[j * d + j];
    }
  }
  return true;
}
const shifted = (m: Float64Array, d: number, alpha: number, beta: number) =>
  // alpha·I + beta·M
  m.map((v, i) => beta * v + (i % (d + 1) === 0 ? alpha : 0));

/** Running mean and standard error per component. */
class Moments {
  readonly sum: Float64Array;
  readonly sq: Float64Array;
  count = 0;
  constructor(d: number) {
    this.sum = new Float64Array(d);
    this.sq = new Float64Array(d);
  }
  add(v: ArrayLike<number>) {
    this.count++;
    for (let i = 0; i < v.length; i++) {
      this.sum[i] += v[i];
      this.sq[i] += v[i] * v[i];
    }
  }
  mean(i: number) {
    return this.sum[i] / this.count;
  }
  se(i: number) {
    const m = this.mean(i);
    return Math.sqrt(Math.max(0, this.sq[i] / this.count - m * m) / (this.count - 1));
  }
  /** max_i |mean_i − want_i| / se_i */
  worstZ(want: ArrayLike<number>) {
    let w = 0;
    for (let i = 0; i < want.length; i++) w = Math.max(w, Math.abs(this.mean(i) - want[i]) / this.se(i));
    return w;
  }
}

// Tolerances: means are compared at 6.5 standard errors. P(|N(0,1)| > 6.5) = 8e-11, and
// the file makes about 200 such comparisons (32 components per vector check): 2e-8 per
// run (Bonferroni), which leaves room for the tails of these sample means being heavier
// than normal ones at n = 3000–4000 (products of Gaussians are skewed).
const Z = 6.5;

t.test('the problem: L_x = λmax(A), L_y = λmax(B) exactly, PD joint Hessian, minimiser with f = 0, exact gradients', async (t) => {
  const p = problem;
  for (const [name, m, d, lo, hi] of [
    ['A', p.A, DX, p.mux, p.lx],
    ['B', p.B, DY, p.muy, p.ly],
  ] as const) {
    t.ok(positiveDefinite(shifted(m, d, hi * (1 + 1e-9), -1), d), `${name}: (1 + 1e-9)·L·I − ${name} is PD, so λmax ≤ L(1 + 1e-9)`);
    t.notOk(positiveDefinite(shifted(m, d, hi * (1 - 1e-9), -1), d), `${name}: (1 − 1e-9)·L·I − ${name} is not, so λmax > L(1 − 1e-9)`);
    t.ok(positiveDefinite(shifted(m, d, -lo * (1 - 1e-9), 1), d), `${name}: λmin ≥ μ(1 − 1e-9)`);
    t.notOk(positiveDefinite(shifted(m, d, -lo * (1 + 1e-9), 1), d), `${name}: λmin < μ(1 + 1e-9)`);
  }
  // Joint Hessian [[A, C], [Cᵀ, B]] positive definite.
  const d = DX + DY,
    H = new Float64Array(d * d);
  for (let r = 0; r < DX; r++) {
    for (let c = 0; c < DX; c++) H[r * d + c] = p.A[r * DX + c];
    for (let c = 0; c < DY; c++) H[r * d + DX + c] = H[(DX + c) * d + r] = p.C[r * DY + c];
  }
  for (let r = 0; r < DY; r++) for (let c = 0; c < DY; c++) H[(DX + r) * d + DX + c] = p.B[r * DY + c];
  t.ok(positiveDefinite(H, d), 'joint Hessian is positive definite');
  // Hybrid smoothness (§6) along random pairs: ratios ≤ L, never above.
  const x1 = point('x1', DX),
    x2 = point('x2', DX),
    y1 = point('y1', DY),
    y2 = point('y2', DY);
  const diff = (u: Float64Array, v: Float64Array) => u.map((ui, i) => ui - v[i]);
  const rx = norm(diff(p.gradX(x1, y1), p.gradX(x2, y1))) / norm(diff(x1, x2));
  const ry = norm(diff(p.gradY(x1, y1), p.gradY(x1, y2))) / norm(diff(y1, y2));
  t.ok(rx <= p.lx * (1 + 1e-12) && rx >= p.mux, `‖∇_x f(x₁,y) − ∇_x f(x₂,y)‖/‖x₁ − x₂‖ = ${rx.toFixed(4)} in [μ_x, L_x]`);
  t.ok(ry <= p.ly * (1 + 1e-12) && ry >= p.muy, `the same for y: ${ry.toFixed(4)} in [μ_y, L_y]`);
  // Minimiser.
  const m = p.minimizer();
  t.ok(p.gradNorm(m.x, m.y) < 1e-10, `‖∇f(x*, y*)‖ = ${p.gradNorm(m.x, m.y).toExponential(1)}`);
  t.ok(Math.abs(p.loss(m.x, m.y)) < 1e-10, `f(x*, y*) = ${p.loss(m.x, m.y).toExponential(1)}`);
  t.ok(p.loss(x1, y1) > 0, 'f > 0 elsewhere');
  // Gradients against central differences (exact on a quadratic up to rounding), on a minibatch.
  const batch = [3, 17, 5, 30];
  const gx = p.gradX(x1, y1, batch),
    gy = p.gradY(x1, y1, batch),
    h = 1e-3;
  let worst = 0;
  for (let i = 0; i < DX + DY; i++) {
    const e = (s: number) =>
      i < DX
        ? p.loss(
            x1.map((v, k) => v + (k === i ? s : 0)),
            y1,
            batch,
          )
        : p.loss(
            x1,
            y1.map((v, k) => v + (k === i - DX ? s : 0)),
            batch,
          );
    worst = Math.max(worst, Math.abs((e(h) - e(-h)) / (2 * h) - (i < DX ? gx[i] : gy[i - DX])));
  }
  t.ok(worst < 1e-9, `minibatch gradients match central differences (worst ${worst.toExponential(1)})`);
  // Same options, same problem; bad options rejected by name.
  t.same(
    Array.from(quadraticProblem({ dimX: DX, dimY: DY, n: N, lx: 1, ly: 2, mux: 0.25, muy: 0.2, spread: 0.15, seed }).a),
    Array.from(p.a),
    'deterministic in its seed',
  );
  t.throws(() => quadraticProblem({ dimX: 4, dimY: 2, n: 3, lx: 1, ly: 1, mux: 0.1, muy: 0.1, coupling: 0.1, seed: 1 }), {
    code: 'ZOFO_INVALID_ARG',
    message: /coupling/,
  });
  t.throws(() => quadraticProblem({ dimX: 0, dimY: 2, n: 3, lx: 1, ly: 1, seed: 1 }), { code: 'ZOFO_INVALID_ARG', message: /dimX/ });
  t.throws(() => quadraticProblem({ dimX: 2, dimY: 2, n: 3, lx: 1, ly: 1, mux: 2, seed: 1 }), { code: 'ZOFO_INVALID_ARG', message: /mux/ });
  t.throws(() => p.loss(x1, y1, [N]), { code: 'ZOFO_INVALID_ARG', message: /indices/ });
  t.throws(() => p.gradX(x1.subarray(1), y1), { code: 'ZOFO_INVALID_ARG', message: /length dimX/ });
});

t.test('on the quadratic the forward and central estimators are unbiased; E‖ĝ‖² = (d_x + 2)‖∇_x f‖²', async (t) => {
  // E[c z] = ∇f_μ(x) with f_μ(x) = E f(x + μz) = f(x) + (μ²/2) tr A: same gradient, no bias.
  const x = point('x', DX),
    y = point('y', DY),
    f = (v: Float64Array) => problem.loss(v, y),
    fx = f(x);
  const g = problem.gradX(x, y),
    mu = 1e-3,
    dirs = 4000,
    runSeed = seed + 1;
  for (const estimator of ['forward', 'central'] as const) {
    const m = new Moments(DX),
      sq = new Moments(1);
    for (let k = 0; k < dirs; k++) {
      const z = direction(runSeed, k);
      const c = projectedGradient(f, x, z, mu, estimator, fx);
      const gz = Array.from(z, (v) => c * v);
      m.add(gz);
      sq.add([dot(gz, gz) / dot(g, g)]);
    }
    const worst = m.worstZ(g);
    t.ok(
      worst < Z,
      `${estimator}: mean of c·z over ${dirs} directions within ${worst.toFixed(2)} standard errors of ∇_x f (bound ${Z}); ‖∇_x f‖ = ${norm(g).toFixed(3)}, typical SE ${m.se(0).toFixed(3)}`,
    );
    // E[(gᵀz)² ‖z‖²] = (d + 2)‖g‖² (+ O(μ²)): the variance behind η_x ~ 1/(L_x (d_x + 2)).
    const ratio = sq.mean(0),
      se = sq.se(0);
    t.ok(Math.abs(ratio - (DX + 2)) < Z * se, `${estimator}: E‖c·z‖² / ‖∇_x f‖² = ${ratio.toFixed(2)} ± ${se.toFixed(2)}, theory d_x + 2 = ${DX + 2}`);
  }
});

// Variance reduction for the bias measurements below, both unbiased for E[c z] − ∇f:
// (1) antithetic pairs: z and −z are equally likely, so the mean of ½(c(z) z + c(−z)(−z))
//     is the forward estimator's own mean; (2) control variate: E[(gᵀz) z] = g exactly, so
//     u = ½(c(z) z − c(−z) z) − (gᵀz) z has mean bias(μ) and a spread that shrinks with μ
//     instead of the O(‖g‖) spread of c·z itself.
function measureBias(
  f: (v: Float64Array) => number,
  g: Float64Array,
  x: Float64Array,
  mu: number,
  runSeed: number,
  dirs: number,
  analytic: Float64Array,
): { m: Moments; beta: { value: number; se: number } } {
  const fx = f(x),
    m = new Moments(DX),
    proj = new Moments(1),
    bb = dot(analytic, analytic);
  for (let k = 0; k < dirs; k++) {
    const z = direction(runSeed, k),
      minus = z.map((v) => -v);
    const cp = projectedGradient(f, x, z, mu, 'forward', fx),
      cm = projectedGradient(f, x, minus, mu, 'forward', fx);
    const gz = dot(g, z);
    const u = Array.from(z, (v) => 0.5 * (cp - cm) * v - gz * v);
    m.add(u);
    proj.add([dot(u, analytic) / bb]); // β = ⟨u, b⟩/‖b‖²: mean 1 when the bias is the analytic b
  }
  return { m, beta: { value: proj.mean(0), se: proj.se(0) } };
}

t.test("smooth non-quadratic (cubic term): the forward estimator's bias is 3μ²w, O(μ²) — halving μ quarters it", async (t) => {
  // f₃(x) = f(x, y) + Σ w_i x_i³. f₃(x + μz) is a cubic in μ and f_μ = f + (μ²/2)Δf exactly
  // (Δ²f₃ = 0), so E[c z] = ∇f_μ = ∇f + (μ²/2)∇Δf = ∇f + 3μ² w. Gaussian smoothing is even in
  // μ, so on any C³ function the bias is O(μ²); the O(μ) of Nesterov–Spokoiny is a bound
  // for merely L-smooth functions (next test).
  const x = point('x3', DX),
    y = point('y3', DY),
    w = point('w3', DX).map((v) => 0.5 * v);
  const f = (v: Float64Array) =>
    problem.loss(v, y) +
    dot(
      w,
      v.map((vi) => vi ** 3),
    );
  const g = problem.gradX(x, y).map((gi, i) => gi + 3 * w[i] * x[i] ** 2);
  const dirs = 3000,
    betas: { value: number; se: number }[] = [];
  for (const [i, mu] of [0.2, 0.1].entries()) {
    const analytic = w.map((wi) => 3 * mu * mu * wi);
    const { m, beta: p } = measureBias(f, g, x, mu, seed + 10 + i, dirs, analytic); // independent directions per μ
    const worst = m.worstZ(analytic);
    t.ok(worst < Z, `μ = ${mu}: measured bias within ${worst.toFixed(2)} SE of 3μ²w per component (bound ${Z}); ‖3μ²w‖ = ${norm(analytic).toExponential(2)}`);
    betas.push(p);
    t.ok(
      Math.abs(p.value - 1) < Z * p.se,
      `μ = ${mu}: bias / analytic = ${p.value.toFixed(3)} ± ${p.se.toFixed(3)} (projected on the analytic bias; bound ${Z} SE)`,
    );
  }
  const ratio = (betas[0].value * 4) / betas[1].value; // bias(μ)/bias(μ/2) = 4 β(μ)/β(μ/2)
  const se = ratio * Math.hypot(betas[0].se / betas[0].value, betas[1].se / betas[1].value); // independent directions
  t.ok(Math.abs(ratio - 4) < Z * se, `bias(0.2)/bias(0.1) = ${ratio.toFixed(2)} ± ${se.toFixed(2)}: 4 (O(μ²)), not 2`);
  t.ok(Math.abs(ratio - 2) > Z * se, 'and clearly not 2');
});

t.test('L-smooth but not C² (a kink in the Hessian): the bias is O(μ) — halving μ halves it', async (t) => {
  // f_k(x) = f(x, y) + ½ Σ_{i∈K} v_i max(x_i, 0)², with x_i = 0 on K: ∇ is Lipschitz (L-smooth)
  // but the Hessian jumps at 0. E[c z]_i − ∂_i f = v_i (E[max(μ z_i, 0)] − 0) = v_i μ/√(2π) on K,
  // 0 elsewhere: exactly linear in μ, the rate of the Nesterov–Spokoiny bound.
  const K = DX / 2;
  const x = point('xk', DX).map((v, i) => (i < K ? 0 : v)),
    y = point('yk', DY);
  const v = point('vk', DX).map((vi, i) => (i < K ? 1 + Math.abs(vi) : 0));
  const f = (u: Float64Array) => {
    let s = problem.loss(u, y);
    for (let i = 0; i < K; i++) s += 0.5 * v[i] * Math.max(u[i], 0) ** 2;
    return s;
  };
  const g = problem.gradX(x, y); // the kink terms' gradient v_i max(x_i, 0) is 0 at x_i = 0
  const dirs = 3000,
    betas: { value: number; se: number }[] = [];
  for (const [i, mu] of [0.02, 0.01].entries()) {
    const analytic = v.map((vi) => (vi * mu) / Math.sqrt(2 * Math.PI));
    const { m, beta: p } = measureBias(f, g, x, mu, seed + 20 + i, dirs, analytic);
    const worst = m.worstZ(analytic);
    t.ok(
      worst < Z,
      `μ = ${mu}: measured bias within ${worst.toFixed(2)} SE of v·μ/√(2π) per component (bound ${Z}); ‖bias‖ = ${norm(analytic).toExponential(2)}`,
    );
    betas.push(p);
    t.ok(
      Math.abs(p.value - 1) < Z * p.se,
      `μ = ${mu}: bias / analytic = ${p.value.toFixed(3)} ± ${p.se.toFixed(3)} (projected on the analytic bias; bound ${Z} SE)`,
    );
  }
  const ratio = (betas[0].value * 2) / betas[1].value;
  const se = ratio * Math.hypot(betas[0].se / betas[0].value, betas[1].se / betas[1].value); // independent directions
  t.ok(Math.abs(ratio - 2) < Z * se, `bias(0.02)/bias(0.01) = ${ratio.toFixed(2)} ± ${se.toFixed(2)}: 2 (O(μ))`);
});

t.test('a fused fp32 step equals its float64 formula (forward, central, q = 2)', async (t) => {
  const x0 = Float32Array.from(point('x0', DX)),
    y0 = point('y0', DY),
    mu = 1e-3,
    lrX = 0.02,
    lrY = 0.3;
  const ulp = (a: number) => 2 ** (Math.floor(Math.log2(Math.max(Math.abs(a), 2 ** -126))) - 23);
  for (const [estimator, q] of [
    ['forward', 1],
    ['central', 1],
    ['forward', 2],
  ] as const) {
    let info: { indices: number[]; seeds: bigint[]; projectedGrads: number[]; loss: number } | undefined;
    const run = runHybrid(problem, {
      steps: 1,
      batchSize: 8,
      lrX,
      lrY,
      mu,
      q,
      estimator,
      seed,
      x0,
      y0,
      onStep: (s) => {
        info = s;
      },
    });
    if (!info) throw new Error('onStep was not called');
    const { indices, seeds, projectedGrads } = info;
    t.same(
      seeds,
      Array.from({ length: q }, (_, j) => stepSeed(seed, 0, j)),
      `${estimator}, q = ${q}: seeds s_{0,j}`,
    );
    t.equal(info.loss, problem.loss(x0, y0, indices), 'L0 is the minibatch loss at (x_0, y_0)');
    const f = (v: Float64Array) => problem.loss(v, y0, indices);
    const want = new Float64Array(x0);
    const bound = new Float64Array(DX);
    for (let j = 0; j < q; j++) {
      const z = kernels.gaussian(DX, { seed: seeds[j], stream: xStream() });
      const c = projectedGradient(f, x0, z, mu, estimator);
      // Each fp32 pass rounds (≤ 2⁻²⁴ relative per element), and a later j starts from a
      // restore that is exact only to rounding: the points the kernel evaluates are within
      // δ_i = 2⁻²¹(|x_i| + 2μ|z_i|) (eight roundings' worth) of the float64 ones. That moves
      // f by at most ‖∇f‖·‖δ‖ + ½L‖δ‖², and c by that over μ.
      const delta = norm(Float64Array.from(x0, (v, i) => 2 ** -21 * (Math.abs(v) + 2 * mu * Math.abs(z[i]))));
      const gradAt = (s: number) =>
        norm(
          problem.gradX(
            Float64Array.from(x0, (v, i) => v + s * mu * z[i]),
            y0,
            indices,
          ),
        );
      const cBound = (Math.max(gradAt(1), gradAt(-1)) * delta + problem.lx * delta * delta) / mu;
      t.ok(
        Math.abs(projectedGrads[j] - c) <= cBound,
        `${estimator}, j = ${j}: c = ${projectedGrads[j].toFixed(6)} vs float64 ${c.toFixed(6)} (|Δ| ${Math.abs(projectedGrads[j] - c).toExponential(1)} ≤ ${cBound.toExponential(1)})`,
      );
      for (let i = 0; i < DX; i++) {
        want[i] -= ((lrX * c) / q) * z[i];
        bound[i] += ((lrX * cBound) / q) * Math.abs(z[i]) + 2 * ulp(Math.abs(x0[i]) + 2 * mu * Math.abs(z[i]));
      }
    }
    let worst = 0;
    for (let i = 0; i < DX; i++) worst = Math.max(worst, Math.abs(run.x[i] - want[i]) / (bound[i] + 2 * ulp(want[i])));
    t.ok(worst <= 1, `${estimator}, q = ${q}: x_1 = x_0 − η_x (1/q) Σ c_j z_j within fp32 rounding (worst ${worst.toFixed(3)} of the bound)`);
    const gy = problem.gradY(x0, y0, indices);
    t.same(
      Array.from(run.y),
      Array.from(y0, (v, i) => v - lrY * gy[i]),
      'y_1 = y_0 − η_y ∇_y f(x_0, y_0; B), exactly',
    );
  }
  t.throws(() => runHybrid(problem, { batchSize: 8, lrX, lrY, seed }), { code: 'ZOFO_INVALID_ARG', message: /epochs and steps/ });
  t.throws(() => runHybrid(problem, { steps: 1, batchSize: 8, lrX, lrY, seed, estimator: 'spsa' as 'forward' }), {
    code: 'ZOFO_INVALID_ARG',
    message: /estimator/,
  });
  t.throws(() => runHybrid(problem, { steps: 1, batchSize: 8, lrX, lrY, seed, mu: 0 }), { code: 'ZOFO_INVALID_ARG', message: /mu/ });
  t.throws(() => runHybrid(problem, { steps: 1, batchSize: 8, lrX, lrY, seed, x0: new Float32Array(3) }), { code: 'ZOFO_INVALID_ARG', message: /x0/ });
});

/** ‖∇f‖ at the start over the RMS of its last 10 epochs (the constant-step noise floor fluctuates). */
function reduction(run: ReturnType<typeof runHybrid>): number {
  const tail = run.history.slice(-10);
  return run.history[0].gradNorm / Math.sqrt(tail.reduce((s, h) => s + h.gradNorm ** 2, 0) / tail.length);
}

t.test('admissible steps (η_x = 1/(L_x(d_x + 2)), η_y = 1/L_y) cut ‖∇f‖ ≥ 10×; η_y = 2.5/L_y diverges', async (t) => {
  const p: QuadraticProblem = problem;
  const base = { batchSize: 8, lrX: 1 / (p.lx * (DX + 2)), mu: 1e-3, seed: seed + 30 };
  const good = runHybrid(p, { ...base, epochs: 300, lrY: 1 / p.ly });
  const h = good.history;
  const r = reduction(good);
  t.comment(
    `‖∇f‖: start ${h[0].gradNorm.toFixed(3)}, epoch 50 ${h[50].gradNorm.toFixed(3)}, epoch 300 ${h[300].gradNorm.toFixed(3)} (x ${h[300].gradNormX.toFixed(3)}, y ${h[300].gradNormY.toFixed(3)})`,
  );
  t.equal(h.length, 301, 'one record per epoch, plus the start');
  t.ok(r >= 10, `‖∇f‖ reduced ${r.toFixed(1)}× over 300 epochs (start / RMS of the last 10; need ≥ 10)`);
  t.ok(h[300].loss < 0.01 * h[0].loss, `f − f* < 1% of its start: from ${h[0].loss.toFixed(3)} to ${h[300].loss.toExponential(2)}`);

  // Above 2/L_y, the y-block's gradient step amplifies the top eigendirection of B by
  // |1 − η_y L_y| = 1.5 per step: ‖∇_y f‖ grows, and the convergence check above fails.
  const bad = runHybrid(p, { ...base, epochs: 10, lrY: 2.5 / p.ly });
  const growth = bad.history[10].gradNormY / bad.history[0].gradNormY;
  t.ok(growth > 100, `η_y = 2.5/L_y: ‖∇_y f‖ grew ${growth.toExponential(1)}× in 10 epochs (40 steps; 1.5^40 ≈ 1e7 along the top eigenvector)`);
  t.notOk(reduction(bad) >= 10, 'the ≥ 10× check fails on the diverging run');
});

t.test('the same run twice is bit-identical; another seed is not', async (t) => {
  const opts = { epochs: 3, batchSize: 8, lrX: 0.02, lrY: 0.5, mu: 1e-3, q: 2, estimator: 'central' as const, seed: seed + 40 };
  const a = runHybrid(problem, opts),
    b = runHybrid(problem, opts);
  t.ok(Buffer.from(a.x.buffer).equals(Buffer.from(b.x.buffer)), 'x: same bits');
  t.ok(Buffer.from(a.y.buffer).equals(Buffer.from(b.y.buffer)), 'y: same bits');
  t.same(a.history, b.history, 'same history');
  const c = runHybrid(problem, { ...opts, seed: seed + 41 });
  t.notOk(Buffer.from(a.x.buffer).equals(Buffer.from(c.x.buffer)), 'another run seed: another x');
  t.not(stepSeed(seed, 0, 1), stepSeed(seed, 1, 0), 's_{k,j} separates k and j');
});
