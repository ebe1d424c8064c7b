// Compute precision as a model option (loadModel(dir, { compute })): on the CPU, 'bf16'
// and 'tf32' round the operands of every matmul (base linears, LoRA, lm_head) and keep
// everything else fp32. Checked against the float64 reference model with the same
// operands rounded (test/helpers/reference-model.ts `operand`), and the exact restore of
// the base weights still holds bit for bit.
import t from 'tap';
import { loadModel, type ClassificationExample, type Model } from '../lib/model/model.js';
import { HybridOptimizer } from '../lib/train/optimizer.js';
import { bf16ToNumber, freshSeed, numberToBf16, roundToSignificand } from './helpers/reference.js';
import { ReferenceModel } from './helpers/reference-model.js';
import { randomCheckpoint, randomLora, seededRandom, storedCheckpoint, writeCheckpointDir, type TinyFamily } from './helpers/tiny-checkpoints.js';

const seed0 = freshSeed() % 1_000_000;
t.comment(`input seed ${seed0}`);

// The reference reads each operand as the engine holds it (fp32), then rounds it.
const OPERAND = {
  bf16: { u: 2 ** -8, round: (x: number) => bf16ToNumber(numberToBf16(Math.fround(x))) },
  tf32: { u: 2 ** -11, round: (x: number) => roundToSignificand(Math.fround(x), 11) },
} as const;

const rms = (a: number[]) => Math.sqrt(a.reduce((s, x) => s + x * x, 0) / a.length);

t.test('compute: default fp32 on the CPU, exposed as model.compute, validated by name', async (t) => {
  const dir = t.testdir({});
  await writeCheckpointDir(dir, randomCheckpoint('llama', seed0), { dtype: 'F32' });
  const plain = await loadModel(dir);
  t.teardown(() => plain.dispose());
  t.equal(plain.compute, 'fp32');
  for (const c of ['fp32', 'tf32', 'bf16'] as const) {
    const m = await loadModel(dir, { compute: c });
    t.equal(m.compute, c);
    m.dispose();
  }
  for (const bad of ['fp16', 'BF16', 1, null]) {
    await t.rejects(loadModel(dir, { compute: bad as 'bf16' }), { code: 'ZOFO_INVALID_ARG', message: /compute/ }, `compute ${JSON.stringify(bad)} is rejected`);
  }
});

// Linear layers (matmuls) per model: per layer, plus project_in/out and lm_head.
const variants: { family: TinyFamily; linears: (layers: number) => number }[] = [
  { family: 'llama', linears: (L) => 7 * L + 1 },
  { family: 'opt-350m', linears: (L) => 6 * L + 3 },
  { family: 'gpt2', linears: (L) => 4 * L + 1 },
];

for (const [vi, v] of variants.entries()) {
  t.test(`${v.family}: bf16/tf32 logits are the float64 model's on rounded matmul operands`, async (t) => {
    const seed = seed0 + 31 * vi;
    const ckpt = randomCheckpoint(v.family, seed);
    const dir = t.testdir({});
    await writeCheckpointDir(dir, ckpt, { dtype: 'F32' });
    const ref = new ReferenceModel(ckpt.config, storedCheckpoint(ckpt, 'F32').weights);
    const lora = randomLora(ckpt, seed + 7, { r: 2, alpha: 4 });
    const withLora = async (compute: 'fp32' | 'bf16' | 'tf32'): Promise<Model> => {
      const m = await loadModel(dir, { compute });
      t.teardown(() => m.dispose());
      m.addLoRA({ rank: 2, alpha: 4 });
      for (const [name, x] of lora.tensors) m.setLoraTensor(name, Float32Array.from(x.data));
      return m;
    };
    const r = seededRandom(seed + 3);
    const ids = [7, 3, 5, 6, 4, 5, 3, 7, 4].map((n) => Array.from({ length: n }, () => Math.floor(r.uniform() * ref.vocabSize)));
    const flat = (xs: ArrayLike<number>[]) => xs.flatMap((x) => Array.from(x));
    const eng32 = flat(await (await withLora('fp32')).logits(ids));
    const ref64 = flat(ref.forward(ids, { lora }));
    const L = Number(ckpt.config.num_hidden_layers ?? ckpt.config.n_layer);
    for (const compute of ['bf16', 'tf32'] as const) {
      const { u, round } = OPERAND[compute];
      const eng = flat(await (await withLora(compute)).logits(ids));
      const refC = flat(ref.forward(ids, { lora, operand: round }));
      // (1) The engine's rounding effect is the reference's, sequence by sequence. What remains
      // is fp32 arithmetic (~4e-4 of the effect in tf32, ~5e-5 in bf16) plus rounding flips:
      // an activation that fp32 and float64 put on either side of a rounding midpoint moves by
      // a whole unit of the format, and that reaches every later logit of its sequence. Flips
      // are heavy-tailed: over all logits of 3 sequences the rms mismatch reached 0.55 in 1 of
      // 891 tf32 forwards (the former bound 0.5 failed about 1 run in 300). Per sequence, of the
      // nine below, at most 8% of one family's exceeded 0.25 (2025 tf32 sequences of 225
      // forwards; bf16 ≤ 1.2%). Sequences are computed independently, so all nine exceed it
      // with probability ≤ 0.08^9 ≈ 1e-10. A rounding that is missing (1 in every sequence) or in
      // the wrong format moves every sequence by far more, so the best-agreeing one still fails.
      const effectRef = refC.map((x, i) => x - ref64[i]),
        effectEng = eng.map((x, i) => x - eng32[i]);
      const V = ref.vocabSize;
      const perSequence: number[] = [];
      for (let s = 0, at = 0; s < ids.length; at += ids[s].length * V, s++) {
        const n = ids[s].length * V;
        const diff = effectEng.slice(at, at + n).map((x, i) => x - effectRef[at + i]);
        perSequence.push(rms(diff) / rms(effectRef.slice(at, at + n)));
      }
      const best = Math.min(...perSequence);
      t.ok(
        best <= 0.25,
        `${compute}: engine effect − reference effect ≤ 0.25 of the reference effect in some sequence (per sequence: ${perSequence.map((m) => m.toExponential(1)).join(', ')})`,
      );
      // (2) Its size: operands rounded with relative errors ≤ u (rms u/√3) give each of the
      // n linear outputs a relative error of rms ≈ u·√(2/3); summed over the n layers that
      // feed the logits, ≈ u·√(2n/3) of the logits' rms. Bound: 4u√n, ~5× that estimate
      // (measured 0.4–1.0× the estimate; docs/precision.md).
      const n = v.linears(L);
      const size = rms(effectEng) / rms(eng32);
      t.ok(
        size <= 4 * u * Math.sqrt(n),
        `${compute}: rms(logits − fp32 logits) = ${size.toExponential(2)} of rms(logits) ≤ 4u√n = ${(4 * u * Math.sqrt(n)).toExponential(2)} (n = ${n})`,
      );
      t.ok(size > 0, `${compute}: the rounding changes the logits`);
    }
  });
}

// Classification examples for a vocabulary of V: random prompts, two single-token candidates.
function classificationBatch(V: number, n: number, seed: number): ClassificationExample[] {
  const r = seededRandom(seed);
  return Array.from({ length: n }, () => {
    const prompt = Array.from({ length: 3 + Math.floor(r.uniform() * 4) }, () => Math.floor(r.uniform() * V));
    return { prompt, candidates: [[5], [7]], label: r.uniform() < 0.5 ? 0 : 1 };
  });
}

for (const dtype of ['f32', 'bf16'] as const) {
  t.test(`bf16 compute, ${dtype} storage: lr_x = 0 leaves every base weight bit-identical`, async (t) => {
    const dir = t.testdir({});
    await writeCheckpointDir(dir, randomCheckpoint('opt', seed0 + 10), { dtype: 'F32' });
    const model = await loadModel(dir, { dtype, compute: 'bf16' });
    t.teardown(() => model.dispose());
    model.addLoRA({ rank: 2 });
    const before = new Map<string, Uint32Array>();
    for (const name of model.parameterNames()) before.set(name, new Uint32Array((await model.tensor(name)).buffer));
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
    const differ: string[] = [];
    for (const [name, bits] of before) {
      const now = new Uint32Array((await model.tensor(name)).buffer);
      if (!now.every((b, i) => b === bits[i])) differ.push(name);
    }
    t.same(differ, [], `after 6 steps with lr_x = 0, no ${dtype} weight differs`);
  });
}

t.test('zo.mu defaults by the model compute: 1e-3 (fp32, tf32), 3e-3 (bf16), and the step uses it', async (t) => {
  const dir = t.testdir({});
  await writeCheckpointDir(dir, randomCheckpoint('llama', seed0 + 20), { dtype: 'F32' });
  for (const [compute, mu] of [
    ['fp32', 1e-3],
    ['tf32', 1e-3],
    ['bf16', 3e-3],
  ] as const) {
    const model = await loadModel(dir, { compute });
    t.teardown(() => model.dispose());
    const batch = classificationBatch(model.config.vocabSize, 2, seed0 + 21);
    const implicit = new HybridOptimizer(model, { zo: { lr: 0 }, seed: 5 });
    const explicit = new HybridOptimizer(model, { zo: { lr: 0, mu }, seed: 5 });
    t.equal(implicit.zo?.mu, mu, `${compute}: default μ ${mu}`);
    t.same((await implicit.step(batch)).projectedGrads, (await explicit.step(batch)).projectedGrads, `${compute}: the step ran with μ = ${mu}`);
  }
});
