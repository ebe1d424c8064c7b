// The trainer's building blocks: random reshuffling (fresh seeded permutation every
// epoch, resumable from { epoch, position }) and the learning-rate schedules.
import t from 'tap';
import { ReshufflingSampler, epochPermutation } from '../lib/train/sampler.js';
import { learningRate } from '../lib/train/schedule.js';
import { freshSeed } from './helpers/reference.js';

const seed = freshSeed() % 1_000_000;
t.comment(`input seed ${seed}`);

t.test('every epoch is a permutation, walked in minibatches without replacement', async (t) => {
  const n = 23,
    s = new ReshufflingSampler(n, { batchSize: 5, seed });
  t.equal(s.batchesPerEpoch, 5);
  const epochs: number[][] = [[], [], []];
  for (let i = 0; i < 15; i++) {
    const { indices, epoch } = s.next();
    t.ok(indices.length === 5 || (i % 5 === 4 && indices.length === 3), `batch ${i} has ${indices.length} examples (last of an epoch keeps the remainder)`);
    epochs[epoch].push(...indices);
  }
  for (const [e, seen] of epochs.entries())
    t.same(
      [...seen].sort((a, b) => a - b),
      Array.from({ length: n }, (_, i) => i),
      `epoch ${e} visits every example once`,
    );
  t.not(epochs[0].join(), epochs[1].join(), 'each epoch draws a fresh permutation');
});

t.test('reproducible from the seed; a resumed sampler continues exactly', async (t) => {
  const a = new ReshufflingSampler(40, { batchSize: 7, seed }),
    b = new ReshufflingSampler(40, { batchSize: 7, seed });
  const runA = Array.from({ length: 20 }, () => a.next().indices.join());
  const firstHalf = Array.from({ length: 9 }, () => b.next().indices.join());
  const saved = JSON.parse(JSON.stringify(b.state));
  const c = new ReshufflingSampler(40, { batchSize: 7, seed });
  c.restore(saved);
  const secondHalf = Array.from({ length: 11 }, () => c.next().indices.join());
  t.same([...firstHalf, ...secondHalf], runA, 'interrupted at batch 9 and resumed: the same 20 batches');
  const other = new ReshufflingSampler(40, { batchSize: 7, seed: seed + 1 });
  t.not(other.next().indices.join(), runA[0], 'another seed, another order');
});

t.test('dropLast drops the short batch; with-replacement stays in range', async (t) => {
  const s = new ReshufflingSampler(10, { batchSize: 4, seed, dropLast: true });
  t.equal(s.batchesPerEpoch, 2);
  const sizes = Array.from({ length: 6 }, () => s.next()).map((b) => `${b.epoch}:${b.indices.length}`);
  t.same(sizes, ['0:4', '0:4', '1:4', '1:4', '2:4', '2:4']);
  const w = new ReshufflingSampler(10, { batchSize: 10, seed, withReplacement: true });
  const idx = w.next().indices;
  t.ok(
    idx.every((i) => Number.isInteger(i) && i >= 0 && i < 10),
    'indices in range',
  );
  t.ok(new Set([...idx, ...w.next().indices, ...w.next().indices]).size < 30, 'repeats occur (with replacement)');
});

t.test('permutations are uniform: where element 0 lands, over 4000 epochs', async (t) => {
  const n = 8,
    counts = new Array(n).fill(0),
    epochs = 4000;
  for (let e = 0; e < epochs; e++) counts[epochPermutation(n, seed, e).indexOf(0)]++;
  const expected = epochs / n;
  const chi2 = counts.reduce((s, c) => s + (c - expected) ** 2 / expected, 0);
  // α = 1e-7 (a false alarm in 10 million runs); a biased shuffle (Sattolo's, say, which never
  // leaves element 0 in place) puts hundreds on the statistic.
  t.ok(chi2 < 45.7, `chi-square ${chi2.toFixed(2)} < 45.7 (7 degrees of freedom, α = 1e-7)`);
});

t.test('schedules: warm-up, constant, linear and cosine decay', async (t) => {
  const lr = 1e-3,
    total = 100;
  t.equal(learningRate(lr, 0, total), lr, 'constant');
  t.equal(learningRate(lr, 99, total), lr);
  t.ok(Math.abs(learningRate(lr, 0, total, { warmupSteps: 9 }) - lr / 10) < 1e-15, 'warm-up starts at lr/(w+1)');
  t.ok(Math.abs(learningRate(lr, 9, total, { warmupSteps: 9 }) - lr) < 1e-15, 'and reaches lr after w steps');
  t.ok(Math.abs(learningRate(lr, 50, total, { kind: 'linear' }) - lr / 2) < 1e-15, 'linear: half way, half the rate');
  t.ok(Math.abs(learningRate(lr, 100, total, { kind: 'linear', minLr: 1e-4 }) - 1e-4) < 1e-15, 'linear ends at minLr');
  t.ok(Math.abs(learningRate(lr, 50, total, { kind: 'cosine', minLr: 2e-4 }) - 6e-4) < 1e-12, 'cosine midpoint is (lr + minLr)/2');
  t.ok(learningRate(lr, 30, total, { kind: 'cosine' }) > learningRate(lr, 31, total, { kind: 'cosine' }), 'cosine decreases');
  t.throws(() => learningRate(-1, 0, total), { code: 'ZOFO_INVALID_ARG', message: /lr/ });
  t.throws(() => learningRate(lr, 0, total, { kind: 'step' as 'linear' }), { code: 'ZOFO_INVALID_ARG', message: /schedule\.kind/ });
  t.throws(() => learningRate(lr, 0, total, { minLr: 1 }), { code: 'ZOFO_INVALID_ARG', message: /minLr/ });
  t.throws(() => new ReshufflingSampler(0, { batchSize: 1, seed: 0 }), { code: 'ZOFO_INVALID_ARG' });
  t.throws(() => new ReshufflingSampler(5, { batchSize: 1.5, seed: 0 }), { code: 'ZOFO_INVALID_ARG', message: /batchSize/ });
  const s = new ReshufflingSampler(5, { batchSize: 2, seed: 0 });
  t.throws(() => s.restore({ epoch: 0, position: 9 }), { code: 'ZOFO_INVALID_ARG', message: /position/ });
});
