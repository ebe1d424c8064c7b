// The hybrid optimizer (docs/algorithm.md §2) on tiny random checkpoints: one step against
// a float64 reference built from independently checked pieces (the engine's tested
// losses and gradients, kernels.gaussian's z), exact restore in every storage dtype,
// non-finite and cancelled steps, determinism, FO optimizers against PyTorch's
// formulas, state round trips, and seed replay bit for bit.
import t from 'tap';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { kernels } from '../lib/index.js';
import { loadModel, type ClassificationExample, type Model } from '../lib/model/model.js';
import { HybridOptimizer, stepSeed } from '../lib/train/optimizer.js';
import { replay } from '../lib/train/replay.js';
import { readTrajectory } from '../lib/train/trajectory.js';
import { freshSeed } from './helpers/reference.js';
import { randomCheckpoint, seededRandom, writeCheckpointDir, type TinyFamily } from './helpers/tiny-checkpoints.js';

const seed0 = freshSeed() % 1_000_000;
t.comment(`input seed ${seed0}`);

// A fresh folder under the test's own directory (t.testdir may be called once per test).
const roots = new WeakMap<object, { dir: string; n: number }>();
async function scratchDir(t: Tap.Test): Promise<string> {
  let root = roots.get(t);
  if (!root) roots.set(t, (root = { dir: t.testdir({}), n: 0 }));
  const dir = join(root.dir, `d${root.n++}`);
  await mkdir(dir, { recursive: true });
  return dir;
}

async function tinyDir(t: Tap.Test, family: TinyFamily = 'llama', seed = seed0, opts: Parameters<typeof randomCheckpoint>[2] = {}): Promise<string> {
  const dir = await scratchDir(t);
  await writeCheckpointDir(dir, randomCheckpoint(family, seed, opts), { dtype: 'F32' });
  return dir;
}

// Classification examples for a vocabulary of V: random prompts, two single-token candidates.
function classificationBatch(V: number, n: number, seed: number): ClassificationExample[] {
  const r = seededRandom(seed);
  return Array.from({ length: n }, () => {
    const prompt = Array.from({ length: 3 + Math.floor(r.uniform() * 4) }, () => Math.floor(r.uniform() * V));
    return { prompt, candidates: [[5], [7]], label: r.uniform() < 0.5 ? 0 : 1 };
  });
}

async function snapshot(model: Model): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const name of model.parameterNames()) out.set(name, await model.tensor(name));
  return out;
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length),
    y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

async function allSameBits(model: Model, before: Map<string, Float32Array>): Promise<string[]> {
  const differ: string[] = [];
  for (const [name, x] of before) if (!sameBits(await model.tensor(name), x)) differ.push(name);
  return differ;
}

for (const family of ['llama', 'opt-350m', 'gpt2'] as const)
  t.test(`${family}: one hybrid step equals docs/algorithm.md §2 computed independently in float64`, async (t) => {
    const dir = await tinyDir(t, family);
    const model = await loadModel(dir);
    const twin = await loadModel(dir); // evaluates the perturbed points independently
    t.teardown(() => {
      model.dispose();
      twin.dispose();
    });
    model.addLoRA({ rank: 4, alpha: 8, seed: seed0 });
    const V = model.config.vocabSize;
    // B ≠ 0 so the adapters shape the loss (PEFT init would make them invisible).
    const r = seededRandom(seed0 + 1);
    for (const name of model.loraNames()) {
      const y = model.loraTensor(name);
      model.setLoraTensor(
        name,
        y.map(() => 0.1 * r.normal()),
      );
    }
    twin.addLoRA({ rank: 4, alpha: 8 });
    for (const name of model.loraNames()) twin.setLoraTensor(name, model.loraTensor(name));
    const batch = classificationBatch(Math.min(V, 48), 4, seed0 + 2);
    const q = 3,
      mu = 1e-2,
      lrX = 1e-2,
      wdX = 0.1,
      lrY = 0.05,
      wdY = 0.01,
      runSeed = seed0 + 3;

    const x0 = await snapshot(model);
    const y0 = new Map(model.loraNames().map((n) => [n, model.loraTensor(n)]));
    const { loss: L0, grads } = await model.loraGradients(batch);

    const opt = new HybridOptimizer(model, { zo: { lr: lrX, mu, perturbations: q, weightDecay: wdX }, fo: { lr: lrY, weightDecay: wdY }, seed: runSeed });
    const res = await opt.step(batch);
    t.equal(res.step, 1, 'steps are numbered from 1');
    t.ok(Math.abs(res.loss - L0) <= 1e-12 * Math.abs(L0), `FO-point loss ${res.loss} = model.loraGradients loss ${L0}`);
    t.equal(res.seeds.length, q);
    t.same(
      res.seeds,
      Array.from({ length: q }, (_, j) => stepSeed(runSeed, 0, j)),
      'seeds are s_{k,j} of (run seed, k, j)',
    );
    t.equal(new Set(res.seeds.map(String)).size, q, 'q distinct seeds');

    // Each L⁺_j: the twin holds x + μ z_j (z from kernels.gaussian on the stored name), same y.
    const zs: Map<string, Float32Array>[] = [];
    for (let j = 0; j < q; j++) {
      const z = new Map<string, Float32Array>();
      for (const [name, x] of x0) {
        const zj = kernels.gaussian(x.length, { seed: res.seeds[j], name });
        z.set(name, zj);
        twin.native.setTensor(
          name,
          x.map((v, i) => Math.fround(v + Math.fround(mu) * zj[i])),
        );
      }
      zs.push(z);
      const { loss } = await twin.loss(batch);
      t.ok(Math.abs(res.perturbedLosses[j] - loss) <= 1e-5 * Math.abs(loss), `L⁺_${j}: ${res.perturbedLosses[j]} vs twin ${loss}`);
      const c = (res.perturbedLosses[j] - res.loss) / Math.fround(mu);
      t.ok(Math.abs(res.projectedGrads[j] - c) <= 1e-9 * Math.max(1, Math.abs(c)), `c_${j} = (L⁺ − L0)/μ = ${c}`);
    }

    // x₁ = x₀ − η_x (Σ_j c_j z_j / q + λ x₀), in float64; fp32 rounding per pass allowed.
    let worst = 0;
    for (const [name, x] of x0) {
      const got = await model.tensor(name);
      for (let i = 0; i < x.length; i++) {
        let g = wdX * x[i];
        for (let j = 0; j < q; j++) g += (res.projectedGrads[j] * zs[j].get(name)![i]) / q;
        const want = x[i] - lrX * g;
        worst = Math.max(worst, Math.abs(got[i] - want) / (1e-7 + 4e-7 * Math.abs(want)));
      }
    }
    t.ok(worst <= 1, `base weights follow the ZO update within fp32 rounding (worst scaled error ${worst.toFixed(3)})`);

    // y₁ = y₀ − η_y (g_y + λ_y y₀)
    worst = 0;
    for (const [name, y] of y0) {
      const got = model.loraTensor(name),
        g = grads.get(name)!;
      for (let i = 0; i < y.length; i++) {
        const want = y[i] - lrY * (g[i] + wdY * y[i]);
        worst = Math.max(worst, Math.abs(got[i] - want) / (1e-7 + 1e-6 * Math.abs(want)));
      }
    }
    t.ok(worst <= 1, `adapters follow plain SGD with weight decay (worst scaled error ${worst.toFixed(3)})`);
    t.equal(opt.stepCount, 1);
  });

for (const dtype of ['f32', 'bf16', 'f16'] as const) {
  t.test(`lr_x = 0 leaves every base weight bit-identical (${dtype} storage)`, async (t) => {
    const dir = await tinyDir(t, 'opt', seed0 + 10);
    const model = await loadModel(dir, { dtype });
    t.teardown(() => model.dispose());
    t.equal(model.dtype, dtype);
    model.addLoRA({ rank: 2 });
    const before = await snapshot(model);
    for (const estimator of ['forward', 'central'] as const) {
      const opt = new HybridOptimizer(model, { zo: { lr: 0, mu: 1e-2, estimator, perturbations: 2 }, fo: { lr: 0.1 }, seed: seed0 });
      const batch = classificationBatch(model.config.vocabSize, 3, seed0 + 11);
      for (let k = 0; k < 3; k++) {
        const res = await opt.step(batch);
        t.ok(
          res.projectedGrads.every((c) => c !== 0),
          `${estimator} step ${k}: the perturbed forwards saw perturbed weights (c ≠ 0)`,
        );
      }
    }
    t.same(await allSameBits(model, before), [], `after 6 steps with lr_x = 0, no ${dtype} weight differs`);
  });
}

t.test("MeZO's in-place +μ/−2μ/+μ does NOT restore bf16 weights (why zofo perturbs into scratch)", async (t) => {
  const n = 4096,
    x = new Uint16Array(n);
  const r = seededRandom(seed0 + 12);
  const f32 = new Float32Array(1),
    u32 = new Uint32Array(f32.buffer);
  for (let i = 0; i < n; i++) {
    f32[0] = 0.05 * r.normal();
    x[i] = u32[0] >>> 16;
  }
  const orig = x.slice();
  const opts = { dtype: 'bf16' as const, seed: 7n, name: 'w' };
  kernels.perturb(x, { ...opts, scale: 1e-3 });
  kernels.perturb(x, { ...opts, scale: -2e-3 });
  kernels.perturb(x, { ...opts, scale: 1e-3 });
  const changed = x.reduce((c, v, i) => c + (v !== orig[i] ? 1 : 0), 0);
  t.ok(changed > n / 20, `${changed} of ${n} bf16 weights differ after MeZO's restore sequence`);
});

t.test('a non-finite loss rejects the step: ZOFO_NON_FINITE, weights and counter unchanged', async (t) => {
  const dir = await tinyDir(t, 'llama', seed0 + 20);
  const model = await loadModel(dir);
  t.teardown(() => model.dispose());
  model.addLoRA({ rank: 2 });
  const before = await snapshot(model);
  const y0 = model.loraNames().map((n) => model.loraTensor(n));
  // μ = 1e30 overflows the perturbed forward to NaN; the centre stays finite.
  const opt = new HybridOptimizer(model, { zo: { lr: 1e-3, mu: 1e30 }, fo: { lr: 0.1 }, seed: 1 });
  const batch = classificationBatch(model.config.vocabSize, 2, seed0);
  await t.rejects(opt.step(batch), { code: 'ZOFO_NON_FINITE', message: /step 0 was rejected: perturbed loss 0 is .*no weight changed/ });
  t.equal(opt.stepCount, 0, 'the step counter did not advance');
  t.same(await allSameBits(model, before), [], 'no base weight changed');
  t.ok(
    model.loraNames().every((n, i) => sameBits(model.loraTensor(n), y0[i])),
    'no adapter weight changed',
  );
});

t.test('cancellation: an aborted signal rejects with ZOFO_ABORTED and leaves weights exact', async (t) => {
  const dir = await tinyDir(t, 'llama', seed0 + 30);
  const model = await loadModel(dir);
  t.teardown(() => model.dispose());
  model.addLoRA({ rank: 2 });
  const opt = new HybridOptimizer(model, { zo: { lr: 1e-2, mu: 1e-2, perturbations: 64 }, fo: { lr: 0.1 }, seed: 2 });
  const batch = classificationBatch(model.config.vocabSize, 16, seed0);
  const before = await snapshot(model);
  const pre = new AbortController();
  pre.abort();
  await t.rejects(opt.step(batch, { signal: pre.signal }), { code: 'ZOFO_ABORTED' }, 'an already-aborted signal');
  t.same(await allSameBits(model, before), [], 'the already-aborted step changed no base weight');
  t.equal(opt.stepCount, 0, 'and did not count');
  // A completed step first: it names the run's base (hashes it), after which step()
  // hands the batch to the engine before it returns, so an abort reaches the engine.
  await opt.step(batch);
  let aborted = 0,
    completed = 1;
  /** One step whose signal `abortAt` fires: tallies the outcome; an aborted step must have changed nothing. */
  const attempt = async (abortAt: (ac: AbortController) => void) => {
    const ac = new AbortController();
    const snap = await snapshot(model);
    const running = opt.step(batch, { signal: ac.signal });
    abortAt(ac);
    try {
      await running;
      completed++;
    } catch (err) {
      t.equal((err as { code?: string }).code, 'ZOFO_ABORTED');
      aborted++;
      t.same(await allSameBits(model, snap), [], 'an aborted step changed no base weight');
    }
  };
  // Aborted while the engine has the step: the engine polls the cancel flag before and
  // between its 65 forward passes, so this lands unless this thread stalls for a whole
  // step, which a few tries rule out.
  for (let i = 0; i < 5 && aborted === 0; i++) await attempt((ac) => ac.abort());
  t.ok(aborted >= 1, `an abort sent while the engine had the step landed (${aborted} aborted, ${completed - 1} completed)`);
  // Aborted 2 ms in: inside the forward passes, or too late once the update has begun;
  // either way the step is whole or not at all.
  for (let i = 0; i < 3; i++) await attempt((ac) => setTimeout(() => ac.abort(), 2));
  t.comment(`${aborted} steps aborted, ${completed} completed`);
  t.equal(opt.stepCount, completed, 'only completed steps count');
  await opt.step(batch); // usable after a cancelled step
  t.equal(opt.stepCount, completed + 1);
});

t.test('the same run twice is bit-identical; seed replay rebuilds the base exactly', async (t) => {
  const dir = await tinyDir(t, 'gpt2', seed0 + 40, { prefix: false }); // stored keys without `transformer.`
  const runOnce = async () => {
    const model = await loadModel(dir);
    model.addLoRA({ rank: 2, seed: 3 });
    const opt = new HybridOptimizer(model, { zo: { lr: 5e-3, mu: 1e-3, perturbations: 2, weightDecay: 0.01 }, fo: { lr: 0.05 }, seed: 99 });
    const losses: number[] = [];
    for (let k = 0; k < 4; k++) losses.push((await opt.step(classificationBatch(model.config.vocabSize, 3, seed0 + k))).loss);
    return { model, opt, losses };
  };
  const a = await runOnce(),
    b = await runOnce();
  t.teardown(() => {
    a.model.dispose();
    b.model.dispose();
  });
  t.same(a.losses, b.losses, 'identical losses');
  t.same(await allSameBits(b.model, await snapshot(a.model)), [], 'identical base weights');
  t.ok(
    a.model.storedNames().every((n) => !n.startsWith('transformer.')),
    'streams named by the keys as stored',
  );

  const log = join(await scratchDir(t), 'run.zlog');
  await a.opt.saveTrajectory(log);
  const traj = await readTrajectory(log);
  t.equal(traj.records.length, 8, '4 steps × 2 perturbations');
  const base = await loadModel(dir);
  t.teardown(() => base.dispose());
  t.equal(traj.header.base.hash, await base.baseHash(), 'the header names the base by hash');
  const rebuilt = await replay(dir, log);
  t.teardown(() => rebuilt.dispose());
  t.same(await allSameBits(rebuilt, await snapshot(a.model)), [], 'replayed base equals the trained base bit for bit');
  t.ok((await allSameBits(base, await snapshot(a.model))).length > 0, 'and differs from the untrained base');

  const other = await tinyDir(t, 'gpt2', seed0 + 41, { prefix: false });
  await t.rejects(replay(other, log), { code: 'ZOFO_INVALID_ARG', message: /hash/ }, 'a log refuses a different base');
});

t.test('seed replay in bf16 storage is bit-exact too; the log records the dtype', async (t) => {
  const dir = await tinyDir(t, 'llama', seed0 + 50);
  const model = await loadModel(dir, { dtype: 'bf16' });
  t.teardown(() => model.dispose());
  const opt = new HybridOptimizer(model, { zo: { lr: 1e-2, mu: 1e-3, estimator: 'central', freeze: ['embed_tokens'] }, seed: 5 });
  for (let k = 0; k < 3; k++) await opt.step(classificationBatch(model.config.vocabSize, 2, seed0 + k));
  const log = join(await scratchDir(t), 'bf16.zlog');
  await opt.saveTrajectory(log);
  const rebuilt = await replay(dir, log);
  t.teardown(() => rebuilt.dispose());
  t.equal(rebuilt.dtype, 'bf16');
  t.same(await allSameBits(rebuilt, await snapshot(model)), [], 'bf16 replay equals the trained weights');
  const base = await loadModel(dir, { dtype: 'bf16' });
  t.teardown(() => base.dispose());
  const emb = 'model.embed_tokens.weight';
  t.ok(sameBits(await model.tensor(emb), await base.tensor(emb)), 'a frozen tensor is never updated');
  t.same(opt.trainableTensors().includes(emb), false);
});

t.test('first-order optimizers follow torch.optim (SGD momentum, AdamW) on the adapters', async (t) => {
  const dir = await tinyDir(t, 'llama', seed0 + 60);
  for (const kind of ['momentum', 'adamw'] as const) {
    const model = await loadModel(dir);
    t.teardown(() => model.dispose());
    model.addLoRA({ rank: 2, seed: 1 });
    const names = model.loraNames();
    const r = seededRandom(seed0 + 61);
    for (const n of names)
      model.setLoraTensor(
        n,
        model.loraTensor(n).map(() => 0.1 * r.normal()),
      );
    const lr = 0.01,
      wd = 0.05,
      beta1 = 0.8,
      beta2 = 0.95,
      eps = 1e-6,
      mom = 0.7;
    const opt = new HybridOptimizer(model, { fo: { lr, optimizer: kind, weightDecay: wd, momentum: mom, betas: [beta1, beta2], eps } });
    const m = new Map<string, Float64Array>(),
      v = new Map<string, Float64Array>();
    let worst = 0;
    for (let k = 1; k <= 3; k++) {
      const batch = classificationBatch(model.config.vocabSize, 3, seed0 + k);
      const { grads } = await model.loraGradients(batch);
      const y = new Map(names.map((n) => [n, model.loraTensor(n)]));
      await opt.step(batch);
      for (const n of names) {
        const g = grads.get(n)!,
          x = y.get(n)!,
          got = model.loraTensor(n);
        if (!m.has(n)) {
          m.set(n, new Float64Array(g.length));
          v.set(n, new Float64Array(g.length));
        }
        const mm = m.get(n)!,
          vv = v.get(n)!;
        for (let i = 0; i < g.length; i++) {
          let want: number;
          if (kind === 'momentum') {
            mm[i] = mom * mm[i] + (g[i] + wd * x[i]);
            want = x[i] - lr * mm[i];
          } else {
            const decayed = x[i] * (1 - lr * wd);
            mm[i] = beta1 * mm[i] + (1 - beta1) * g[i];
            vv[i] = beta2 * vv[i] + (1 - beta2) * g[i] * g[i];
            const mh = mm[i] / (1 - beta1 ** k),
              vh = vv[i] / (1 - beta2 ** k);
            want = decayed - (lr * mh) / (Math.sqrt(vh) + eps);
          }
          worst = Math.max(worst, Math.abs(got[i] - want) / (1e-6 + 1e-5 * Math.abs(want)));
        }
        // Continue the reference from the engine's values (no drift between the two).
      }
    }
    t.ok(worst <= 1, `${kind}: 3 steps match the float64 formulas (worst scaled error ${worst.toFixed(3)})`);
    t.equal(opt.state().tensors.size, kind === 'adamw' ? 2 : 1, `${kind} keeps its moments in state()`);
  }
});

t.test('full fine-tuning: fo.params all updates every base weight by its gradient', async (t) => {
  const dir = await tinyDir(t, 'opt', seed0 + 70);
  const model = await loadModel(dir);
  t.teardown(() => model.dispose());
  const batch = classificationBatch(model.config.vocabSize, 3, seed0);
  const x0 = await snapshot(model);
  const { grads } = await model.baseGradients(batch);
  const lr = 0.05;
  const opt = new HybridOptimizer(model, { fo: { lr, params: 'all' } });
  t.equal(opt.mode, 'full');
  await opt.step(batch);
  let worst = 0;
  for (const [name, x] of x0) {
    const got = await model.tensor(name),
      g = grads.get(name)!;
    for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(got[i] - (x[i] - lr * g[i])) / (1e-7 + 1e-6 * Math.abs(x[i])));
  }
  t.ok(worst <= 1, `x ← x − η ∇_x f (worst scaled error ${worst.toFixed(3)})`);
  t.throws(() => opt.trajectory(), { code: 'ZOFO_UNSUPPORTED' }, 'no seed log for gradient updates of the base');
  t.equal(opt.state().trajectory, null);
});

t.test('state() / loadState(): a resumed optimizer continues bit-identically', async (t) => {
  const dir = await tinyDir(t, 'llama', seed0 + 80);
  const opts = { zo: { lr: 1e-2, mu: 1e-3 }, fo: { lr: 0.01, optimizer: 'adamw' as const }, seed: 11 };
  const batches = Array.from({ length: 4 }, (_, k) => classificationBatch(48, 3, seed0 + k));
  const a = await loadModel(dir);
  t.teardown(() => a.dispose());
  a.addLoRA({ rank: 2, seed: 4 });
  const optA = new HybridOptimizer(a, opts);
  const lossesA: number[] = [];
  for (const b of batches) lossesA.push((await optA.step(b)).loss);

  const b1 = await loadModel(dir);
  t.teardown(() => b1.dispose());
  b1.addLoRA({ rank: 2, seed: 4 });
  const opt1 = new HybridOptimizer(b1, opts);
  for (const b of batches.slice(0, 2)) await opt1.step(b);
  const saved = opt1.state();
  const adapters = b1.loraNames().map((n) => b1.loraTensor(n));

  const b2 = await loadModel(dir); // a fresh process: base from disk, state + adapters from the checkpoint
  t.teardown(() => b2.dispose());
  b2.addLoRA({ rank: 2, seed: 4 });
  b2.loraNames().forEach((n, i) => b2.setLoraTensor(n, adapters[i]));
  const opt2 = new HybridOptimizer(b2, opts);
  await opt2.loadState(saved);
  t.equal(opt2.stepCount, 2);
  const lossesB: number[] = [];
  for (const b of batches.slice(2)) lossesB.push((await opt2.step(b)).loss);
  t.same(lossesB, lossesA.slice(2), 'losses after resuming equal the uninterrupted run');
  t.same(await allSameBits(b2, await snapshot(a)), [], 'base weights equal the uninterrupted run');
  t.ok(
    b2.loraNames().every((n) => sameBits(b2.loraTensor(n), a.loraTensor(n))),
    'adapters equal the uninterrupted run',
  );
  await t.rejects(opt2.loadState(saved), { code: 'ZOFO_INVALID_ARG', message: /hash/ }, 'replaying onto already-trained weights is refused');
});

t.test('options are validated with messages naming the option', async (t) => {
  const dir = await tinyDir(t, 'llama', seed0 + 90);
  const model = await loadModel(dir);
  t.teardown(() => model.dispose());
  t.throws(() => new HybridOptimizer(model, {}), { code: 'ZOFO_INVALID_ARG', message: /give zo/ });
  t.throws(() => new HybridOptimizer(model, { zo: { lr: -1 } }), { message: /zo\.lr/ });
  t.throws(() => new HybridOptimizer(model, { zo: { lr: 1, mu: 0 } }), { message: /zo\.mu/ });
  t.throws(() => new HybridOptimizer(model, { zo: { lr: 1, perturbations: 0 } }), { message: /zo\.perturbations/ });
  t.throws(() => new HybridOptimizer(model, { zo: { lr: 1, estimator: 'backward' as never } }), { message: /zo\.estimator/ });
  t.throws(() => new HybridOptimizer(model, { zo: { lr: 1, foAt: 'plus' } }), { message: /foAt 'plus' needs zo\.estimator 'central'/ });
  t.throws(() => new HybridOptimizer(model, { zo: { lr: 1, freeze: [/./] } }), { message: /freezes every base tensor/ });
  t.throws(() => new HybridOptimizer(model, { fo: { lr: 1 } }), { code: 'ZOFO_INVALID_STATE', message: /addLoRA/ });
  t.throws(() => new HybridOptimizer(model, { fo: { lr: 1, optimizer: 'lion' as never } }), { message: /fo\.optimizer/ });
  t.throws(() => new HybridOptimizer(model, { zo: { lr: 1 }, fo: { lr: 1, params: 'all' } }), { message: /cannot be combined/ });
  t.throws(() => new HybridOptimizer(model, { zo: { lr: 1 }, seed: -1 }), { message: /seed/ });
  const opt = new HybridOptimizer(model, { zo: { lr: 1e-3 } });
  await t.rejects(opt.step([]), { code: 'ZOFO_INVALID_ARG', message: /batch/ });
  await t.rejects(opt.step([{ prompt: [1, 999], target: [2] }]), { message: /batch\[0\]\.prompt\[1\]/ });
  t.throws(() => opt.trajectory(), { code: 'ZOFO_INVALID_STATE' }, 'no trajectory before the first step');
  opt.dispose();
  await t.rejects(opt.step([{ prompt: [1], target: [2] }]), { code: 'ZOFO_DISPOSED' });
  const other = new HybridOptimizer(model, { zo: { lr: 1e-3 } });
  model.dispose();
  await t.rejects(other.step([{ prompt: [1], target: [2] }]), { code: 'ZOFO_DISPOSED' }, 'disposing the model disposes its optimizers');
});

t.test('foAt plus: 2 forwards, adapter gradient at x + μz; step is still exact', async (t) => {
  const dir = await tinyDir(t, 'llama', seed0 + 100);
  const model = await loadModel(dir);
  t.teardown(() => model.dispose());
  model.addLoRA({ rank: 2 });
  const opt = new HybridOptimizer(model, { zo: { lr: 1e-3, mu: 1e-3, estimator: 'central', foAt: 'plus' }, fo: { lr: 0.1 }, seed: 3 });
  const res = await opt.step(classificationBatch(model.config.vocabSize, 2, seed0));
  t.equal(res.perturbedLosses.length, 2, 'L⁺ and L⁻');
  t.equal(res.loss, res.perturbedLosses[0], 'the FO loss is the one at x + μz');
  t.ok(Math.abs(res.projectedGrads[0] - (res.perturbedLosses[0] - res.perturbedLosses[1]) / (2 * Math.fround(1e-3))) < 1e-9);
});
