// A small random Llama learns a synthetic classification task through ONE API: hybrid
// (ZO on every base weight + LoRA by backprop), ZO-only (MeZO) and LoRA-only, chosen by
// HybridOptimizer options, under reshuffling SGD. A fixed scenario (seeds printed),
// checked with margins: this is a convergence check, not a kernel comparison.
import t from 'tap';
import { loadModel } from '../lib/model/model.js';
import { HybridOptimizer } from '../lib/train/optimizer.js';
import { ReshufflingSampler } from '../lib/train/sampler.js';
import type { HybridOptimizerOptions } from '../lib/train/types.js';
import { syntheticTask } from './helpers/synthetic-task.js';
import { randomCheckpoint, writeCheckpointDir } from './helpers/tiny-checkpoints.js';

const CKPT_SEED = 123,
  DATA_SEED = 5;
t.comment(`checkpoint seed ${CKPT_SEED}, data seed ${DATA_SEED}`);

const { train, dev } = syntheticTask(48, 64, 64, DATA_SEED);

const modes: Array<{ name: string; opts: HybridOptimizerOptions; lora: boolean; steps: number }> = [
  { name: 'LoRA-only', opts: { fo: { lr: 0.5 } }, lora: true, steps: 100 },
  { name: 'hybrid', opts: { zo: { lr: 1e-3, mu: 1e-3 }, fo: { lr: 0.5 } }, lora: true, steps: 150 },
  { name: 'ZO-only (MeZO)', opts: { zo: { lr: 1e-3, mu: 1e-3 } }, lora: false, steps: 300 },
];

for (const mode of modes) {
  t.test(`${mode.name} learns the task`, async (t) => {
    const dir = t.testdir({});
    await writeCheckpointDir(dir, randomCheckpoint('llama', CKPT_SEED), { dtype: 'F32' });
    const model = await loadModel(dir);
    t.teardown(() => model.dispose());
    if (mode.lora) model.addLoRA({ rank: 4, alpha: 8, targets: ['q_proj', 'v_proj', 'o_proj'] });
    const opt = new HybridOptimizer(model, { ...mode.opts, seed: 1 });
    const accuracy = (pred: number[]) => pred.filter((p, i) => p === dev[i].label).length / dev.length;
    const devBefore = await model.loss(dev),
      trainBefore = await model.loss(train);
    const sampler = new ReshufflingSampler(train.length, { batchSize: 8, seed: 3 });
    for (let k = 0; k < mode.steps; k++) await opt.step(sampler.next().indices.map((i) => train[i]));
    const devAfter = await model.loss(dev),
      trainAfter = await model.loss(train);
    const accBefore = accuracy(devBefore.predictions!),
      accAfter = accuracy(devAfter.predictions!);
    t.comment(
      `${mode.name}: train loss ${trainBefore.loss.toFixed(3)} → ${trainAfter.loss.toFixed(3)}, dev loss ${devBefore.loss.toFixed(3)} → ${devAfter.loss.toFixed(3)}, dev accuracy ${accBefore.toFixed(2)} → ${accAfter.toFixed(2)}`,
    );
    t.ok(trainAfter.loss <= 0.75 * trainBefore.loss, `train loss fell by ≥ 25% (${trainBefore.loss.toFixed(3)} → ${trainAfter.loss.toFixed(3)})`);
    t.ok(devAfter.loss < devBefore.loss, 'dev loss fell');
    if (mode.lora) t.ok(accAfter >= 0.85, `dev accuracy ${accBefore.toFixed(2)} → ${accAfter.toFixed(2)} (≥ 0.85)`);
    t.equal(opt.stepCount, mode.steps);
  });
}
