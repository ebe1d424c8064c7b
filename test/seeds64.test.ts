// 64-bit seeds survive every file zofo writes: run seeds 0, 2^53 − 1, 2^53, 2^53 + 1 and
// 2^64 − 1 go through a trajectory log (replay), an optimizer state (loadState) and a
// trainer checkpoint (resume), and each comes back exactly; seeds outside [0, 2^64) are
// refused with an error naming the option.
import t, { type Test } from 'tap';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ZofoError } from '../lib/errors.js';
import { loadModel, type ClassificationExample, type Model } from '../lib/model/model.js';
import { loadCheckpoint } from '../lib/train/checkpoint.js';
import { HybridOptimizer } from '../lib/train/optimizer.js';
import { replay } from '../lib/train/replay.js';
import { Trainer } from '../lib/train/trainer.js';
import { readTrajectory } from '../lib/train/trajectory.js';
import { freshSeed } from './helpers/reference.js';
import { randomCheckpoint, seededRandom, writeCheckpointDir } from './helpers/tiny-checkpoints.js';

const seed0 = freshSeed() % 1_000_000;
t.comment(`input seed ${seed0}`);

const SEEDS = [0n, (1n << 53n) - 1n, 1n << 53n, (1n << 53n) + 1n, (1n << 64n) - 1n];

function data(V: number, n: number, seed: number): ClassificationExample[] {
  const r = seededRandom(seed);
  return Array.from({ length: n }, () => ({
    prompt: Array.from({ length: 3 + r.int(3) }, () => r.int(V)),
    candidates: [[5], [7]],
    label: r.int(2),
  }));
}

async function bits(model: Model): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (const name of model.parameterNames()) parts.push(Buffer.from((await model.tensor(name)).buffer));
  for (const name of model.loraNames()) parts.push(Buffer.from(model.loraTensor(name).buffer));
  return Buffer.concat(parts);
}

async function fresh(t: Test, dir: string, loraSeed: bigint): Promise<Model> {
  const model = await loadModel(dir);
  t.teardown(() => model.dispose());
  model.addLoRA({ rank: 2, seed: loraSeed });
  return model;
}

t.test('seeds at 0, 2^53 ± 1, 2^53 and 2^64 − 1 round-trip through log, state and checkpoint', async (t) => {
  const top = t.testdir({});
  const base = join(top, 'base');
  await mkdir(base);
  await writeCheckpointDir(base, randomCheckpoint('llama', seed0, {}), { dtype: 'F32' });
  const train = data(48, 8, seed0 + 1);
  for (const seed of SEEDS) {
    const root = join(top, `seed-${seed}`);
    const opts = { zo: { lr: 1e-2, mu: 1e-3, perturbations: 2 }, fo: { lr: 1e-2 }, seed };

    // Trajectory log → replay: the replayed base equals the trained one bit for bit.
    const a = await fresh(t, base, seed);
    const opt = new HybridOptimizer(a, opts);
    const r0 = await opt.step(train.slice(0, 4));
    await opt.step(train.slice(4, 8));
    const log = join(root, 'zo.zlog');
    await mkdir(root, { recursive: true });
    await opt.saveTrajectory(log);
    const back = await readTrajectory(log);
    t.equal(back.header.seed, seed, `seed ${seed}: the log's header holds it exactly`);
    t.match(await readFile(log, 'latin1'), `"seed":"${seed}"`, `seed ${seed}: written as a decimal string`);
    t.same(
      back.records.slice(0, 2).map((r) => r.seed),
      r0.seeds,
      `seed ${seed}: the step seeds derived from it are logged`,
    );
    const replayed = await replay(base, log);
    t.teardown(() => replayed.dispose());
    const trainedBase = Buffer.concat(await Promise.all(a.parameterNames().map(async (n) => Buffer.from((await a.tensor(n)).buffer))));
    const replayedBase = Buffer.concat(await Promise.all(replayed.parameterNames().map(async (n) => Buffer.from((await replayed.tensor(n)).buffer))));
    t.ok(trainedBase.equals(replayedBase), `seed ${seed}: replay rebuilds the trained base bit for bit`);

    // Optimizer state → loadState in another optimizer with the same seed; another seed is refused.
    const b = await fresh(t, base, seed);
    b.loraNames().forEach((n) => b.setLoraTensor(n, a.loraTensor(n)));
    const optB = new HybridOptimizer(b, opts);
    const state = opt.state();
    t.equal(state.json.seed, seed.toString(), `seed ${seed}: the state holds it as a decimal string`);
    await optB.loadState(state);
    t.equal(optB.stepCount, 2);
    const other = new HybridOptimizer(await fresh(t, base, seed), { ...opts, seed: seed ^ 1n });
    await t.rejects(other.loadState(state), { code: 'ZOFO_INVALID_STATE', message: /seed/ }, `seed ${seed}: a state of another seed is refused`);

    // Trainer checkpoints → resume from the middle: the final files equal the uninterrupted run's.
    const full = join(root, 'full'),
      part = join(root, 'part');
    const trainerOpts = { batchSize: 2, steps: 4, seed };
    const m1 = await fresh(t, base, seed);
    for await (const _ of new Trainer(m1, new HybridOptimizer(m1, opts), { ...trainerOpts, checkpoint: { dir: full, every: 2, keep: 5 } }).fit(train)) void _;
    const mid = await loadCheckpoint(join(full, 'step-000002'));
    t.equal(mid.trainer.samplerOptions.seed, seed.toString(), `seed ${seed}: trainer.json holds the sampler seed exactly`);
    const m2 = await fresh(t, base, seed);
    for await (const _ of new Trainer(m2, new HybridOptimizer(m2, opts), { ...trainerOpts, checkpoint: { dir: part, every: 2 } }).fit(train, {
      resumeFrom: join(full, 'step-000002'),
    }))
      void _;
    t.ok((await bits(m2)).equals(await bits(m1)), `seed ${seed}: the resumed run's weights and adapters equal the uninterrupted run's`);
    for (const f of ['trajectory.zlog', 'optimizer.safetensors', join('adapter', 'adapter_model.safetensors')]) {
      t.ok((await readFile(join(part, 'step-000004', f))).equals(await readFile(join(full, 'step-000004', f))), `seed ${seed}: ${f} is byte-identical`);
    }
  }
});

t.test('seeds outside [0, 2^64) are refused, naming the option', async (t) => {
  const base = t.testdir({});
  await writeCheckpointDir(base, randomCheckpoint('llama', seed0 + 5, {}), { dtype: 'F32' });
  const model = await loadModel(base);
  t.teardown(() => model.dispose());
  model.addLoRA({ rank: 2 });
  const bad: unknown[] = [-1, -1n, 1n << 64n, 1.5, 2 ** 53, Number.NaN, '5', null];
  for (const seed of bad) {
    const shown = typeof seed === 'bigint' ? `${seed}n` : String(seed);
    for (const [what, make] of [
      ['HybridOptimizer', () => new HybridOptimizer(model, { zo: { lr: 0 }, seed: seed as number })],
      ['Trainer', () => new Trainer(model, new HybridOptimizer(model, { zo: { lr: 0 } }), { batchSize: 1, steps: 1, seed: seed as number })],
    ] as const) {
      try {
        make();
        t.fail(`${what}: seed ${shown} was accepted`);
      } catch (err) {
        t.type(err, ZofoError);
        t.equal((err as ZofoError).code, 'ZOFO_INVALID_ARG');
        t.equal((err as { option?: string }).option, 'seed', `${what}: seed ${shown} is named`);
        t.match((err as Error).message, /Expected a bigint in 0 \.\. 2\^64-1 or a non-negative safe integer for seed/);
      }
    }
  }
  t.throws(() => model.addLoRA({ seed: 1n << 64n }), { code: 'ZOFO_INVALID_ARG', message: /for seed/ }, 'addLoRA: a LoRA seed of 2^64 is refused');
});
