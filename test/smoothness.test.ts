// Smoothness estimates (docs/algorithm.md §6) and step-size advice: on the synthetic quadratic
// the power-iteration estimates of L_x = λmax(A) and L_y = λmax(B) land within 15% at the
// default 20 iterations and the forward-only curvature equals vᵀAv direction by direction;
// on a tiny random Llama with LoRA the L_y estimate agrees with the spectrum of a dense
// finite-difference Hessian, the base and the adapters come back bit for bit (also when a
// batch throws), and the ZO-side numbers are consistent; the advice's bounds and verdicts.
import t from 'tap';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { loadModel, type ClassificationExample, type Model } from '../lib/model/model.js';
import { quadraticProblem } from '../lib/train/quadratic.js';
import { CURVATURE_LABEL, estimateSmoothness, stepSizeAdvice, type Estimate, type PlainObjective } from '../lib/theory/smoothness.js';
import { caught } from './helpers/errors.js';
import { freshSeed } from './helpers/reference.js';
import { randomCheckpoint, seededRandom, writeCheckpointDir } from './helpers/tiny-checkpoints.js';

const seed0 = freshSeed() % 1_000_000;
t.comment(`input seed ${seed0}`);
const SCENARIO_SEED = 657306; // the tiny-Llama power-iteration test's fixed instance (see there)

const dot = (u: ArrayLike<number>, v: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < u.length; i++) s += u[i] * v[i];
  return s;
};
const relErr = (got: number, want: number) => Math.abs(got - want) / Math.abs(want);

/** Mat-vec of a row-major d × d matrix. */
const matVec = (m: Float64Array, v: ArrayLike<number>) => {
  const d = v.length,
    out = new Float64Array(d);
  for (let r = 0; r < d; r++) {
    let s = 0;
    for (let c = 0; c < d; c++) s += m[r * d + c] * v[c];
    out[r] = s;
  }
  return out;
};

/** All eigenvalues of a symmetric row-major d × d matrix (cyclic Jacobi, float64). */
function symmetricEigenvalues(m: Float64Array, d: number): number[] {
  const a = Float64Array.from(m);
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0,
      total = 0;
    for (let i = 0; i < d * d; i++) {
      total += a[i] * a[i];
      if (i % (d + 1) !== 0) off += a[i] * a[i];
    }
    if (off <= 1e-26 * total) break;
    for (let p = 0; p < d - 1; p++) {
      for (let q = p + 1; q < d; q++) {
        const apq = a[p * d + q];
        if (apq === 0) continue;
        const theta = (a[q * d + q] - a[p * d + p]) / (2 * apq);
        const tn = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(tn * tn + 1),
          s = tn * c;
        for (let k = 0; k < d; k++) {
          // columns p, q
          const akp = a[k * d + p],
            akq = a[k * d + q];
          a[k * d + p] = c * akp - s * akq;
          a[k * d + q] = s * akp + c * akq;
        }
        for (let k = 0; k < d; k++) {
          // rows p, q
          const apk = a[p * d + k],
            aqk = a[q * d + k];
          a[p * d + k] = c * apk - s * aqk;
          a[q * d + k] = s * apk + c * aqk;
        }
      }
    }
  }
  return Array.from({ length: d }, (_, i) => a[i * d + i]).sort((x, y) => x - y);
}

// ---------------------------------------------------------------------------------------
// The synthetic quadratic: known constants

t.test('quadratic: L_x and L_y within 15% at the default 20 iterations; curvature = vᵀAv exactly, ≤ L_x', async (t) => {
  const r = seededRandom(seed0);
  const shapes = [
    [32, 8],
    [48, 16],
    [20, 24],
  ] as const;
  for (const [i, [dimX, dimY]] of shapes.entries()) {
    const lx = 0.5 + 4 * r.uniform(),
      ly = 0.5 + 4 * r.uniform();
    const p = quadraticProblem({ dimX, dimY, n: 16, lx, ly, seed: seed0 + i });
    const x0 = Float64Array.from({ length: dimX }, () => r.normal()),
      y0 = Float64Array.from({ length: dimY }, () => r.normal());
    const objective: PlainObjective = {
      dimX,
      dimY,
      x0,
      y0,
      loss: (x, y) => p.loss(x, y),
      gradX: (x, y) => p.gradX(x, y),
      gradY: (x, y) => p.gradY(x, y),
    };
    const seed = seed0 + 100 + i;
    const rep = await estimateSmoothness(objective, { seed, keepVectors: true });
    const ely = relErr(rep.ly!.value, ly),
      elx = relErr(rep.lx!.value, lx);
    t.comment(
      `(${dimX}, ${dimY}) seed ${seed}: L_y ${rep.ly!.value.toFixed(4)} vs ${ly.toFixed(4)} (rel err ${ely.toExponential(2)}), ` +
        `L_x ${rep.lx!.value.toFixed(4)} vs ${lx.toFixed(4)} (rel err ${elx.toExponential(2)})`,
    );
    // 15%, not 10%: the estimate is the best of 3 starts of ‖Hv‖ after 20 products, and it
    // falls short only when a start has little weight on the top eigenvector. Spectrum evenly
    // spaced in [L/10, L] (quadraticProblem's default), Gaussian starts: per start (10^6 draws
    // in float64), P(‖H²⁰v₀‖/‖H¹⁹v₀‖ < 0.9) = 2.4e-2 at d = 8 and 4.9e-3 at d = 16, so all 3
    // starts below 10% happened in 1.5e-5 of runs; P(< 0.85) = 1.5e-4 (d = 8), 4.7e-5 (d = 16),
    // ≤ 7e-6 (d ≥ 20): all 3 below 15% ≤ 3.4e-12 per block.
    t.ok(ely <= 0.15, `(${dimX}, ${dimY}): L_y within 15% (${(100 * ely).toFixed(2)}%)`);
    t.ok(elx <= 0.15, `(${dimX}, ${dimY}): L_x within 15% (${(100 * elx).toFixed(2)}%)`);
    // A Rayleigh quotient never exceeds λmax (up to float64 rounding of the differences).
    t.ok(rep.ly!.value <= ly * (1 + 1e-9) && rep.lx!.value <= lx * (1 + 1e-9), 'estimates approach L from below');
    t.equal(rep.ly!.samples.length, 3, 'one sample per restart');
    t.same(
      rep.method,
      { ...rep.method, iterations: 20, restarts: 3, batches: 0, h: 1e-3, hGrad: 1e-4, fullBackward: true, seed },
      'method states its settings',
    );
    t.same(rep.dims, { x: dimX, y: dimY });
    // Each returned vector: unit, and its sample is |vᵀBv| computed from the matrix.
    for (const [k, v] of rep.ly!.vectors!.entries()) {
      t.ok(Math.abs(dot(v, v) - 1) < 1e-12, 'the returned vector is a unit vector');
      t.ok(relErr(rep.ly!.rayleigh[k], dot(v, matVec(p.B, v))) < 1e-6, `restart ${k}: Rayleigh quotient = vᵀBv`);
    }
    // Forward-only curvature: q(v) = vᵀAv on a quadratic, for every direction.
    const c = rep.lxCurvature!;
    t.equal(c.label, CURVATURE_LABEL);
    t.equal(c.directions, 8);
    let worst = 0;
    c.vectors!.forEach((v, j) => {
      worst = Math.max(worst, relErr(c.samples[j], dot(v, matVec(p.A, v))));
    });
    t.comment(
      `(${dimX}, ${dimY}): curvature vs vᵀAv worst rel err ${worst.toExponential(2)} over ${c.directions} directions; max ${c.max.toFixed(4)} ≤ L_x ${lx.toFixed(4)}; resolution ${c.resolution.toExponential(1)}`,
    );
    t.ok(worst <= 1e-6, `every curvature sample equals vᵀAv (worst rel err ${worst.toExponential(2)})`);
    t.ok(c.max <= lx, 'max curvature ≤ L_x');
    t.ok(c.min >= p.mux * (1 - 1e-6), 'and ≥ μ_x (A is positive definite)');
    t.ok(c.mean >= c.min && c.mean <= c.max && c.std >= 0, 'mean within [min, max]');
  }
});

t.test('quadratic: more iterations converge further; the fixed count is stated', async (t) => {
  const p = quadraticProblem({ dimX: 40, dimY: 40, n: 4, lx: 2, ly: 3, seed: seed0 + 7 });
  const objective: PlainObjective = { dimX: 40, dimY: 40, loss: (x, y) => p.loss(x, y), gradX: (x, y) => p.gradX(x, y), gradY: (x, y) => p.gradY(x, y) };
  const few = await estimateSmoothness(objective, { seed: seed0, iterations: 2, restarts: 1, directions: 1 });
  // 5 starts: the 40 eigenvalues are 0.023 L apart, so one start whose weight on the top
  // eigenvector is small ends near the second eigenvalue, 2.3% low. Per start (10^6 float64
  // draws) P(‖H²⁰⁰v₀‖/‖H¹⁹⁹v₀‖ < 0.99) = 7.0e-3: a single start failed 1% in 1.4% of runs
  // (6 of 400 seeds, both blocks); the best of 5 fails in (7.0e-3)⁵ ≈ 1.7e-11 per block.
  // Start 0 is the same start as `few`'s, so the monotone check below still compares one start.
  const many = await estimateSmoothness(objective, { seed: seed0, iterations: 200, restarts: 5, directions: 1 });
  t.comment(`L_y after 2 products ${few.ly!.value.toFixed(4)}, after 200 ${many.ly!.value.toFixed(5)} (true 3)`);
  t.ok(many.ly!.samples[0] >= few.ly!.value, 'power iteration rises monotonically on a PD matrix');
  t.ok(relErr(many.ly!.value, 3) < 0.01 && relErr(many.lx!.value, 2) < 0.01, '200 products, best of 5 starts: within 1%');
  t.match(few.ly!.method, /2 Hessian–vector products/);
  t.ok(
    many.ly!.hvNorms.every((h, k) => h >= Math.abs(many.ly!.rayleigh[k]) * (1 - 1e-12)),
    '‖Hv‖ ≥ |vᵀHv| for a unit v',
  );
});

t.test('plain objectives: an indefinite Hessian, missing blocks, async functions, validation', async (t) => {
  // f = ½ (3 y₀² − 5 y₁²) + x-part; the largest |eigenvalue| of ∇²_yy is 5 (concave direction).
  const objective: PlainObjective = {
    dimX: 2,
    dimY: 2,
    loss: async (x, y) => 0.5 * (3 * y[0] ** 2 - 5 * y[1] ** 2) + Math.cosh(x[0]) + x[1] ** 2,
    gradY: async (x, y) => [3 * y[0], -5 * y[1]],
  };
  const rep = await estimateSmoothness(objective, { seed: seed0, iterations: 60, restarts: 2, directions: 3 });
  t.ok(relErr(rep.ly!.value, 5) < 1e-3, `|λ| = 5 found on a concave direction (${rep.ly!.value})`);
  t.ok(
    rep.ly!.rayleigh.every((q) => q < 0),
    'the signed Rayleigh quotient is negative',
  );
  t.equal(rep.lx, null, 'no gradX: no L_x');
  t.match(rep.notes.join('\n'), /no gradX/);
  // cosh''(0) = 1 and (x₁²)'' = 2: q(v) = v₀² + 2v₁² ∈ [1, 2] (up to O(t²)).
  t.ok(
    rep.lxCurvature!.samples.every((q) => q >= 1 - 1e-4 && q <= 2 + 1e-4),
    "curvature within the Hessian's range",
  );

  const noY = await estimateSmoothness(
    { dimX: 2, dimY: 0, loss: (x) => Math.cosh(x[0]) + x[1] ** 2, gradY: () => [], gradX: (x) => [Math.sinh(x[0]), 2 * x[1]] },
    { fullBackward: false, directions: 1 },
  );
  t.equal(noY.ly, null);
  t.equal(noY.lx, null, 'fullBackward false skips gradX');
  t.match(noY.notes.join('\n'), /dimY = 0/);
  t.match(noY.notes.join('\n'), /fullBackward is false/);

  const progress: string[] = [];
  await estimateSmoothness(
    { ...objective, gradX: (x) => [Math.sinh(x[0]), 2 * x[1]] },
    { iterations: 2, restarts: 1, directions: 2, onProgress: (i) => progress.push(`${i.phase} ${i.done}/${i.total}`) },
  );
  t.same(progress, ['ly 1/2', 'ly 2/2', 'lx 1/2', 'lx 2/2', 'curvature 1/2', 'curvature 2/2'], 'progress per evaluation');

  const bad = async (target: unknown, opts: object = {}) => (await caught(estimateSmoothness(target as PlainObjective, opts))).code;
  t.equal(await bad(null), 'ZOFO_INVALID_ARG');
  t.equal(await bad({ ...objective, dimX: 0 }), 'ZOFO_INVALID_ARG');
  t.equal(await bad({ ...objective, dimY: -1 }), 'ZOFO_INVALID_ARG');
  t.equal(await bad({ ...objective, loss: 1 }), 'ZOFO_INVALID_ARG');
  t.equal(await bad({ ...objective, gradY: undefined }), 'ZOFO_INVALID_ARG');
  t.equal(await bad({ ...objective, gradX: 'no' }), 'ZOFO_INVALID_ARG');
  t.equal(await bad({ ...objective, x0: [1, 2, 3] }), 'ZOFO_INVALID_ARG');
  t.equal(await bad({ ...objective, y0: [NaN, 0] }), 'ZOFO_NON_FINITE');
  t.equal(await bad({ ...objective, gradY: () => [1] }), 'ZOFO_INVALID_ARG', 'a gradient of the wrong length');
  t.equal(await bad({ ...objective, gradY: () => [1, Infinity] }), 'ZOFO_NON_FINITE');
  t.equal(await bad({ ...objective, loss: () => NaN }), 'ZOFO_NON_FINITE');
  for (const opts of [{ iterations: 0 }, { restarts: 1.5 }, { directions: -1 }, { h: 0 }, { h: 1 }, { seed: -1 }, { fullBackward: 'yes' }, { onProgress: 3 }])
    t.equal(await bad(objective, opts), 'ZOFO_INVALID_ARG', JSON.stringify(opts));
  t.equal((await caught(estimateSmoothness(objective, null as never))).code, 'ZOFO_INVALID_ARG');
});

// ---------------------------------------------------------------------------------------
// A tiny random Llama with LoRA

async function tinyLlama(t: Tap.Test, sub: string, dtype: 'F32' | 'BF16' = 'F32', seed = seed0): Promise<Model> {
  const dir = join(t.testdir({}), sub);
  await mkdir(dir, { recursive: true });
  await writeCheckpointDir(dir, randomCheckpoint('llama', seed), { dtype });
  const model = await loadModel(dir, { dtype: dtype === 'F32' ? 'f32' : 'bf16' });
  t.teardown(() => model.dispose());
  return model;
}

function withLora(model: Model, seed: number): void {
  model.addLoRA({ rank: 1, alpha: 2, seed });
  // B ≠ 0 so the adapters shape the loss away from the PEFT init.
  const r = seededRandom(seed + 1);
  for (const name of model.loraNames())
    model.setLoraTensor(
      name,
      model.loraTensor(name).map(() => 0.3 * r.normal()),
    );
}

function classificationBatch(V: number, n: number, seed: number): ClassificationExample[] {
  const r = seededRandom(seed);
  return Array.from({ length: n }, () => ({
    prompt: Array.from({ length: 3 + r.int(4) }, () => r.int(V)),
    candidates: [[5], [7]],
    label: r.int(2),
  }));
}

async function snapshot(model: Model): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const name of model.parameterNames()) out.set(name, await model.tensor(name));
  for (const name of model.loraNames()) out.set(name, model.loraTensor(name));
  return out;
}

async function changedTensors(model: Model, before: Map<string, Float32Array>): Promise<string[]> {
  const differ: string[] = [];
  for (const [name, x] of before) {
    const now = name.includes('lora_') ? model.loraTensor(name) : await model.tensor(name);
    const a = new Uint32Array(now.buffer, now.byteOffset, now.length),
      b = new Uint32Array(x.buffer, x.byteOffset, x.length);
    if (a.length !== b.length || !a.every((w, i) => w === b[i])) differ.push(name);
  }
  return differ;
}

/** The adapter gradient at the current adapters, flattened in loraNames() order. */
async function flatLoraGrad(model: Model, batch: ClassificationExample[]): Promise<Float64Array> {
  const { grads } = await model.loraGradients(batch);
  const parts = model.loraNames().map((n) => grads.get(n)!);
  const out = new Float64Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Writes the flat adapter vector y into the model. */
function setFlatLora(model: Model, y: Float64Array): void {
  let at = 0;
  for (const name of model.loraNames()) {
    const n = model.loraTensor(name).length;
    model.setLoraTensor(name, Float32Array.from(y.subarray(at, at + n)));
    at += n;
  }
}

t.test('tiny Llama + LoRA: L_y agrees with a dense finite-difference Hessian; weights bit-identical; L_x ≥ curvature', async (t) => {
  // One fixed instance: how close 20 and 100 power-iteration products get depends on the
  // instance's spectral gap, and the curvature check's rounding floor is estimated from a
  // 4-degree-of-freedom fit; neither has a derivable 1e-6 tail over random instances
  // (over 13 fresh ones the worst 20-product error was 9e-4 against 25% allowed, and the
  // worst curvature difference about half its bound). The quadratic tests above and the
  // restore tests below draw fresh instances.
  const s0 = SCENARIO_SEED;
  const started = Date.now();
  const model = await tinyLlama(t, 'f32', 'F32', s0);
  withLora(model, s0 + 3);
  const V = model.config.vocabSize;
  const batches = [classificationBatch(V, 4, s0 + 11), classificationBatch(V, 4, s0 + 12)];
  const before = await snapshot(model);

  const rep = await estimateSmoothness({ model, batches }, { seed: s0 + 5, keepVectors: true, directions: 6 });
  t.same(await changedTensors(model, before), [], 'every base tensor and adapter is bit-identical afterwards');
  t.ok(rep.ly && rep.lx && rep.lxCurvature, 'L_y, L_x (full backward, auto) and the curvature are all measured');
  const ly = rep.ly as Estimate,
    lx = rep.lx as Estimate,
    c = rep.lxCurvature!;
  t.equal(rep.method.fullBackward, true, "'auto' takes the full backward on a tiny model");
  t.equal(ly.samples.length, 2, 'one L_y sample per batch');
  t.equal(rep.dims.y, ly.vectors![0].length);
  t.equal(
    rep.dims.x,
    model.parameterCounts().reduce((a, b) => a + b, 0),
  );

  // Independent: the dense Hessian of batch 0, column by column by central differences of
  // the adapter gradient (the test's own loop), symmetrised; its full spectrum by Jacobi.
  const batch = batches[0],
    d = rep.dims.y,
    tStep = rep.method.stepY;
  const y0 = new Float64Array(d);
  {
    let at = 0;
    for (const n of model.loraNames()) {
      const v = model.loraTensor(n);
      y0.set(v, at);
      at += v.length;
    }
  }
  const H = new Float64Array(d * d);
  for (let i = 0; i < d; i++) {
    const y = Float64Array.from(y0);
    y[i] = y0[i] + tStep;
    setFlatLora(model, y);
    const gp = await flatLoraGrad(model, batch);
    y[i] = y0[i] - tStep;
    setFlatLora(model, y);
    const gm = await flatLoraGrad(model, batch);
    for (let r = 0; r < d; r++) H[r * d + i] = (gp[r] - gm[r]) / (2 * tStep);
  }
  setFlatLora(model, y0);
  let asym = 0,
    scale = 0;
  for (let r = 0; r < d; r++)
    for (let k = 0; k < r; k++) {
      asym = Math.max(asym, Math.abs(H[r * d + k] - H[k * d + r]));
      scale = Math.max(scale, Math.abs(H[r * d + k]));
    }
  for (let r = 0; r < d; r++) for (let k = 0; k < r; k++) H[r * d + k] = H[k * d + r] = 0.5 * (H[r * d + k] + H[k * d + r]);
  const eig = symmetricEigenvalues(H, d);
  const top = Math.max(Math.abs(eig[0]), Math.abs(eig[d - 1]));
  const second = eig.map(Math.abs).sort((a, b) => b - a)[1];
  const v = ly.vectors![0];
  const denseRayleigh = dot(v, matVec(H, v));
  t.comment(
    `d_y = ${d}, step ${tStep.toExponential(2)}: dense Hessian asymmetry ${(asym / scale).toExponential(1)} (relative); ` +
      `spectrum [${eig[0].toFixed(4)}, ${eig[d - 1].toFixed(4)}], |λ|max ${top.toFixed(4)}, next ${second.toFixed(4)}`,
  );
  t.comment(
    `power iteration (20 products) on batch 0: |vᵀHv| ${ly.samples[0].toFixed(4)} (rel err vs |λ|max ${relErr(ly.samples[0], top).toExponential(2)}); ` +
      `dense vᵀHv on the returned v ${denseRayleigh.toFixed(4)} (rel diff ${relErr(ly.rayleigh[0], denseRayleigh).toExponential(2)}); ‖Hv‖ ${ly.hvNorms[0].toFixed(4)}`,
  );
  t.ok(asym <= 1e-2 * scale, 'the finite-difference Hessian is symmetric to 1% of its largest entry');
  // Tolerances: the Rayleigh quotient of the same vector is the same quantity up to fp32
  // gradient noise and O(t²) truncation (≤ 1%); the estimate approaches |λ|max from below
  // (1% slack). How close 20 products get depends on the model's spectral gap: over 40
  // random tiny Llamas the ratio ranged 0.87–1.0 (median 1.0000), so 20 products are held
  // to 25%, and 100 products (same batch, same start) to 1%.
  t.ok(relErr(ly.rayleigh[0], denseRayleigh) <= 1e-2, "the returned vector's Rayleigh quotient equals vᵀHv of the dense Hessian (≤ 1%)");
  t.ok(ly.samples[0] <= top * 1.01, 'the estimate does not exceed |λ|max of the dense Hessian (1% slack)');
  t.ok(ly.samples[0] >= 0.75 * top, '20 products: within 25% of it');
  const long = await estimateSmoothness({ model, batches: [batch] }, { seed: s0 + 5, iterations: 100, directions: 1, fullBackward: false });
  t.comment(`100 products on batch 0: ${long.ly!.value.toFixed(4)} (rel err vs |λ|max ${relErr(long.ly!.value, top).toExponential(2)})`);
  t.ok(relErr(long.ly!.value, top) <= 1e-2, '100 products: within 1% of |λ|max of the dense Hessian');
  t.same(await changedTensors(model, before), [], "(the test's own loop restored the adapters too)");

  // ZO side: finite forward-only curvature samples, bounded by the full-backward L_x.
  t.ok(c.samples.length === 6 && c.samples.every(Number.isFinite), 'curvature samples are finite');
  t.comment(
    `L_x (full backward) ${lx.value.toFixed(4)} (samples ${lx.samples.map((s) => s.toFixed(4)).join(', ')}); ` +
      `curvature along random directions: mean ${c.mean.toExponential(3)}, range [${c.min.toExponential(3)}, ${c.max.toExponential(3)}], ` +
      `resolution ${c.resolution.toExponential(1)} (σ_f ${c.lossNoise.toExponential(1)}, t ${rep.method.stepCurvature.toExponential(2)}); L_y ${ly.value.toFixed(4)}`,
  );
  t.ok(lx.value >= c.max, 'L_x (power iteration, full backward) ≥ every curvature sample');
  t.ok(lx.value >= Math.abs(c.min), 'and ≥ |every curvature sample|');
  // Independently: vᵀ∇²f v by central differences of the full base gradient along the same
  // returned unit direction v (the test writes x ± t v itself), on the batch the sample used.
  const xNames = model.parameterNames(),
    x0 = await Promise.all(xNames.map((n) => model.tensor(n)));
  const setX = (v: Float64Array, s: number) => {
    let at = 0;
    xNames.forEach((n, k) => {
      model.native.setTensor(
        n,
        x0[k].map((e, i) => e + s * v[at + i]),
      );
      at += x0[k].length;
    });
  };
  const flatBase = async (b: ClassificationExample[]) => {
    const { grads } = await model.baseGradients(b);
    const out = new Float64Array(rep.dims.x);
    let at = 0;
    for (const n of xNames) {
      out.set(grads.get(n)!, at);
      at += grads.get(n)!.length;
    }
    return out;
  };
  const sx = rep.method.stepX;
  for (let j = 0; j < 3; j++) {
    const v = c.vectors![j];
    t.ok(Math.abs(dot(v, v) - 1) < 1e-9, `direction ${j} is a unit vector`);
    setX(v, sx);
    const gp = await flatBase(batches[j % 2]);
    setX(v, -sx);
    const gm = await flatBase(batches[j % 2]);
    const viaGrad = (dot(v, gp) - dot(v, gm)) / (2 * sx);
    const diff = Math.abs(c.samples[j] - viaGrad);
    t.comment(
      `direction ${j}: forward-only q(v) ${c.samples[j].toExponential(4)}, vᵀ(∇f(x+tv) − ∇f(x−tv))/2t ${viaGrad.toExponential(4)}, |diff| ${diff.toExponential(1)}`,
    );
    t.ok(
      diff <= 4 * c.resolution + 0.05 * Math.abs(viaGrad),
      `the forward-only sample agrees with the gradient-based directional curvature (|diff| ≤ 4× the measured rounding floor ${c.resolution.toExponential(1)} + 5%)`,
    );
  }
  xNames.forEach((n, k) => model.native.setTensor(n, x0[k]));
  t.same(await changedTensors(model, before), [], '(and the test restored the base)');
  t.comment(`took ${Date.now() - started} ms (budget 20 s; ~4 s on an idle 16-core machine)`);
});

t.test('tiny Llama: exact restore when a batch throws; fullBackward false; tensors; no adapters; bf16 base', async (t) => {
  const model = await tinyLlama(t, 'f32');
  const V = model.config.vocabSize;
  const good = classificationBatch(V, 3, seed0 + 21);
  const broken = [{ prompt: [1, 2], candidates: [[5], [7]], label: 5 }]; // label out of range: throws at the loss
  // No adapters: L_y is null; the throw comes in the full-backward pass of the second batch, x perturbed.
  let before = await snapshot(model);
  const err = await caught(estimateSmoothness({ model, batches: [good, broken] }, { iterations: 2, directions: 1 }));
  t.equal(err.code, 'ZOFO_INVALID_ARG', "the batch's error propagates");
  t.same(await changedTensors(model, before), [], 'base bit-identical after the throw');

  const noLora = await estimateSmoothness({ model, batches: [good] }, { iterations: 2, directions: 2, fullBackward: false });
  t.equal(noLora.ly, null);
  t.equal(noLora.lx, null);
  t.match(noLora.notes.join('\n'), /no LoRA adapters/);
  t.match(noLora.notes.join('\n'), /fullBackward is false/);
  t.equal(noLora.lxCurvature!.samples.length, 2);

  withLora(model, seed0 + 4);
  before = await snapshot(model);
  const err2 = await caught(estimateSmoothness({ model, batches: [good, broken] }, { iterations: 2, directions: 1 }));
  t.equal(err2.code, 'ZOFO_INVALID_ARG');
  t.same(await changedTensors(model, before), [], 'adapters and base bit-identical after a throw in the L_y pass');

  const names = model.parameterNames().filter((n) => n.includes('mlp'));
  const sub = await estimateSmoothness({ model, batches: [good] }, { iterations: 3, directions: 2, tensors: names, fullBackward: true, keepVectors: true });
  const dimSub = names.reduce((a, n) => a + model.parameterCounts()[model.parameterNames().indexOf(n)], 0);
  t.equal(sub.dims.x, dimSub, 'x is the chosen tensors');
  t.equal(sub.lx!.vectors![0].length, dimSub);
  t.same(await changedTensors(model, before), []);
  t.equal((await caught(estimateSmoothness({ model, batches: [good] }, { tensors: ['nope'] }))).code, 'ZOFO_INVALID_ARG');
  t.equal((await caught(estimateSmoothness({ model, batches: [good] }, { tensors: [] }))).code, 'ZOFO_INVALID_ARG');
  t.equal((await caught(estimateSmoothness({ model, batches: [] }))).code, 'ZOFO_INVALID_ARG');
  t.equal((await caught(estimateSmoothness({ model, batches: [[]] }))).code, 'ZOFO_INVALID_ARG');
  t.equal((await caught(estimateSmoothness({ model: {} as Model, batches: [good] }))).code, 'ZOFO_INVALID_ARG');

  const half = await tinyLlama(t, 'bf16', 'BF16');
  withLora(half, seed0 + 6);
  const halfBefore = await snapshot(half);
  const h = await estimateSmoothness({ model: half, batches: [good] }, { iterations: 3 });
  t.ok(h.ly && Number.isFinite(h.ly.value), 'bf16 base: L_y (fp32 adapters) is measured');
  t.equal(h.lx, null);
  t.equal(h.lxCurvature, null);
  t.match(h.notes.join('\n'), /bf16 base/);
  t.same(await changedTensors(half, halfBefore), []);
});

// ---------------------------------------------------------------------------------------
// Step-size advice

t.test('stepSizeAdvice: bounds and verdicts', async (t) => {
  const a = stepSizeAdvice({ ly: 2, lx: 1, dimX: 100 });
  t.equal(a.lrYMax, 0.5);
  t.equal(a.lrYDiverge, 1);
  t.ok(relErr(a.lrXMax!, 1 / (4 * 104)) < 1e-15, 'q = 1: 1/(4(d_x + 4)L_x) (Nesterov & Spokoiny)');
  t.ok(relErr(a.lrXDiverge!, 4 * a.lrXMax!) < 1e-15);
  t.same(a.verdicts, {});
  const q4 = stepSizeAdvice({ ly: 2, lx: 1, dimX: 100, q: 4 });
  t.ok(
    relErr(q4.secondMomentFactor, (2 * 104) / 4 + 0.75) < 1e-15 && relErr(q4.lrXMax!, 1 / (2 * q4.secondMomentFactor)) < 1e-15,
    'q = 4: B_q = 2(d+4)/q + 1 − 1/q',
  );
  t.ok(q4.lrXMax! > a.lrXMax!, 'averaging more directions admits a larger η_x');

  const y = (lrY: number) => stepSizeAdvice({ ly: 2, dimX: 10, lrY }).verdicts.y!;
  t.equal(y(0.01).level, 'conservative');
  t.equal(y(0.01).message, 'conservative: 50× below the bound (1/L)');
  t.equal(y(0.4).level, 'admissible');
  t.match(y(0.5).message, /within the admissible range/, 'exactly 1/L is admissible');
  t.equal(y(0.7).message, 'above 1/L: may oscillate');
  t.equal(y(1.1).message, 'above 2/L: expected to diverge');
  t.ok(relErr(y(0.7).ratio, 1.4) < 1e-12);

  const x = (lrX: number, q = 1) => stepSizeAdvice({ lx: 1, dimX: 100, lrX, q }).verdicts.x!;
  t.equal(x(1e-3).level, 'admissible', `1e-3 ≤ 1/416`);
  t.equal(x(1e-5).level, 'conservative');
  t.match(x(1e-5).message, /conservative: 240× below/);
  t.equal(x(5e-3).level, 'oscillate');
  t.match(x(5e-3).message, /^above 1\/\(2 L_x B_q\)/);
  t.equal(x(1e-2).level, 'diverge');
  t.equal(x(5e-3, 64).level, 'conservative', 'the same η_x is 24× below the bound with q = 64');
  t.equal(x(5e-2, 64).level, 'admissible', 'and 10× it is admissible');

  // Estimates are accepted directly; the curvature (a lower bound) is flagged.
  const est = { value: 4 } as Estimate;
  t.equal(stepSizeAdvice({ ly: est, dimX: 1 }).lrYMax, 0.25);
  const fromCurv = stepSizeAdvice({ lx: { max: 2, mean: 1, min: 0, std: 0, samples: [], directions: 0, label: '', resolution: 0 }, dimX: 1, lrX: 1 });
  t.equal(fromCurv.lx, 2);
  t.match(fromCurv.notes.join('\n'), /lower bound/);
  const none = stepSizeAdvice({ dimX: 5, lrX: 1, lrY: 1 });
  t.equal(none.lrXMax, null);
  t.equal(none.lrYMax, null);
  t.same(none.verdicts, {});
  t.equal(none.notes.length, 2, 'says why neither rate was judged');
  for (const bad of [null, { dimX: 0 }, { dimX: 3, q: 0 }, { dimX: 3, lrX: -1 }, { dimX: 3, ly: 0 }, { dimX: 3, lx: { value: NaN } }]) {
    t.throws(() => stepSizeAdvice(bad as never), { code: 'ZOFO_INVALID_ARG' }, JSON.stringify(bad));
  }
});

t.test('the advice on the quadratic: η_y = lrYMax converges, above lrYDiverge diverges (gradient descent on y)', async (t) => {
  const p = quadraticProblem({ dimX: 8, dimY: 12, n: 4, lx: 1, ly: 3, seed: seed0 + 9 });
  const rep = await estimateSmoothness({ dimX: 8, dimY: 12, loss: (x, y) => p.loss(x, y), gradY: (x, y) => p.gradY(x, y) }, { seed: seed0, iterations: 100 });
  const advice = stepSizeAdvice({ ly: rep.ly, dimX: 8 });
  const run = (lr: number) => {
    const x = new Float64Array(8),
      y = Float64Array.from({ length: 12 }, (_, i) => Math.sin(i + seed0));
    for (let k = 0; k < 300; k++) {
      const g = p.gradY(x, y);
      for (let i = 0; i < 12; i++) y[i] -= lr * g[i];
    }
    let g2 = 0;
    for (const g of p.gradY(x, y)) g2 += g * g;
    return Math.sqrt(g2);
  };
  const ok = run(advice.lrYMax!),
    bad = run(advice.lrYDiverge! * 1.05);
  t.comment(`‖∇_y f‖ after 300 steps: η = lrYMax ${ok.toExponential(2)}, η = 1.05·lrYDiverge ${bad.toExponential(2)}`);
  t.ok(ok < 1e-6 * (1 + run(0)), 'η_y = 1/L̂_y converges');
  t.ok(bad > 1e3 * run(0), 'η_y just above 2/L̂_y diverges');
});
