/**
 * What the compute precision does to the ZO estimator (docs/precision.md): on a model
 * whose loss the float64 reference (test/helpers/reference-model.ts) evaluates exactly,
 * the engine's projected gradient c = (f(x + μz) − f(x))/μ — one step of HybridOptimizer
 * with lr_x = 0, so exactly what training computes — is compared with the true
 * directional derivative D = ∇f(x)·z along the same z (kernels.gaussian of the step's
 * seed: the engine's own fp32 z).
 *
 * D in float64: central differences of the float64 reference loss at the engine's stored
 * weights, D_h = (F(x + hz) − F(x − hz))/(2h), Richardson-extrapolated,
 * D = (4·D_{h/2} − D_h)/3 (error O(h⁴)); |D_{h/2} − D_h| bounds its error and is reported.
 * Shared by scripts/precision.ts (the tables) and test/precision.test.ts.
 */
import { kernels } from '../lib/index.js';
import { loadModel, type ClassificationExample, type Compute, type Model } from '../lib/model/model.js';
import { HybridOptimizer } from '../lib/train/optimizer.js';
import { openCheckpoint } from '../lib/formats/safetensors.js';
import { ReferenceModel, type Weights } from '../test/helpers/reference-model.js';

/** The loss's float64 reference at the weights of a checkpoint directory. */
export interface Reference {
  /** F(x + h·z) in float64 (z: per stored tensor name; h = 0: F(x)). */
  loss(z: Map<string, Float32Array> | null, h: number): number;
  /** Stored tensor names (the Philox streams). */
  names: string[];
  numel: Map<string, number>;
}

export async function reference(dir: string, batch: ClassificationExample[]): Promise<Reference> {
  const ckpt = await openCheckpoint(dir);
  const base: Weights = new Map();
  try {
    for (const [name, info] of ckpt.tensors) base.set(name, { shape: info.shape, data: Float64Array.from(await ckpt.read(name)) });
  } finally {
    ckpt.close();
  }
  const config = JSON.parse(await (await import('node:fs/promises')).readFile(`${dir}/config.json`, 'utf8')) as Record<string, unknown>;
  return {
    names: [...base.keys()],
    numel: new Map([...base].map(([n, t]) => [n, t.data.length])),
    loss(z, h) {
      const w: Weights = new Map();
      for (const [name, t] of base) {
        const zn = z?.get(name);
        w.set(name, zn && h !== 0 ? { shape: t.shape, data: t.data.map((x, i) => x + h * zn[i]) } : t);
      }
      return new ReferenceModel(config, w).classificationBatchLoss(batch).loss;
    },
  };
}

/** z of one seed, for every stored tensor (the engine's exact fp32 values). */
export function directionOf(ref: Reference, seed: bigint): Map<string, Float32Array> {
  return new Map(ref.names.map((name) => [name, kernels.gaussian(ref.numel.get(name)!, { seed, name })]));
}

/** D = ∇F·z in float64 by Richardson-extrapolated central differences; err = |D_{h/2} − D_h|. */
export function directionalDerivative(ref: Reference, z: Map<string, Float32Array>, h = 1e-3): { d: number; err: number } {
  const central = (s: number) => (ref.loss(z, s) - ref.loss(z, -s)) / (2 * s);
  const dh = central(h),
    dh2 = central(h / 2);
  return { d: (4 * dh2 - dh) / 3, err: Math.abs(dh2 - dh) };
}

/**
 * The engine's projected gradients c_k (k < n) at smoothing μ under `compute`: n steps of a
 * ZO-only HybridOptimizer with lr_x = 0 (the weights stay exact), run seed `seed`; also
 * the step seeds, so z_k = directionOf(ref, seeds[k]).
 */
export async function engineEstimates(
  dir: string,
  compute: Compute,
  mu: number,
  batch: ClassificationExample[],
  n: number,
  seed: number,
): Promise<{ c: number[]; seeds: bigint[]; loss: number }> {
  const model: Model = await loadModel(dir, { compute });
  try {
    const opt = new HybridOptimizer(model, { zo: { lr: 0, mu }, seed });
    const c: number[] = [],
      seeds: bigint[] = [];
    let loss = NaN;
    for (let k = 0; k < n; k++) {
      const r = await opt.step(batch);
      c.push(r.projectedGrads[0]);
      seeds.push(r.seeds[0]);
      loss = r.loss;
    }
    return { c, seeds, loss };
  } finally {
    model.dispose();
  }
}

/** Pearson correlation of two equal-length samples. */
export function correlation(a: readonly number[], b: readonly number[]): number {
  const n = a.length,
    ma = a.reduce((s, x) => s + x, 0) / n,
    mb = b.reduce((s, x) => s + x, 0) / n;
  let sab = 0,
    saa = 0,
    sbb = 0;
  for (let i = 0; i < n; i++) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) ** 2;
    sbb += (b[i] - mb) ** 2;
  }
  return sab / Math.sqrt(saa * sbb);
}

/** rms(c − d) / rms(d): the estimator's error relative to the derivative's typical size. */
export function relativeError(c: readonly number[], d: readonly number[]): number {
  let e = 0,
    s = 0;
  for (let i = 0; i < d.length; i++) {
    e += (c[i] - d[i]) ** 2;
    s += d[i] ** 2;
  }
  return Math.sqrt(e / s);
}
