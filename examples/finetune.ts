/**
 * A hybrid fine-tune from TypeScript on a task of your own: text → tokens → minibatches
 * → hybrid ZO/FO training with evaluation → a PEFT adapter on disk.
 *
 *   node dist/examples/finetune.js [model-dir] [out-dir] [steps]
 *
 * Defaults: zofo's demo model, a fresh temporary directory, 200 steps (a few seconds).
 * Prints progress, then one JSON line with the results.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { evaluate, HybridOptimizer, loadModel, Trainer } from 'zofo';
import { reviewTask, tokenize } from './review-task.js';

const modelDir = process.argv[2] || fileURLToPath(new URL('demo/model/', import.meta.resolve('zofo/package.json')));
const outDir = process.argv[3] || (await mkdtemp(join(tmpdir(), 'zofo-finetune-')));
const steps = Number(process.argv[4] || 200);

await using model = await loadModel(modelDir);
if (!model.tokenizer) throw new Error(`${modelDir} has no tokenizer.json`);

// 1. Tokenise: the task's text becomes token-id examples.
const task = reviewTask();
const train = tokenize(task.train, model.tokenizer);
const dev = tokenize(task.dev, model.tokenizer);
console.log(`task: ${train.length} train / ${dev.length} dev examples`);

// 2. Adapters for the first-order part; the base weights get the zeroth-order part.
model.addLoRA({ rank: 8, alpha: 16, seed: 1 });
const before = await evaluate(model, dev);
console.log(`dev before: loss ${before.loss.toFixed(4)}, accuracy ${((before.accuracy ?? 0) * 100).toFixed(1)}%`);

// 3. Train: the trainer batches (random reshuffling), steps, and evaluates.
await using opt = new HybridOptimizer(model, {
  zo: { lr: 2e-4, mu: 1e-3 }, // base weights: forward passes only
  fo: { lr: 0.05 }, // LoRA adapters: backprop
  seed: 1,
});
const trainer = new Trainer(model, opt, { batchSize: 16, steps, seed: 0, eval: { data: dev, every: Math.max(1, Math.floor(steps / 3)) } });
for await (const ev of trainer.fit(train)) {
  if (ev.type === 'eval') console.log(`step ${ev.step}: dev loss ${ev.loss.toFixed(4)}, accuracy ${((ev.accuracy ?? 0) * 100).toFixed(1)}%`);
  if (ev.type === 'done') console.log(`done after step ${ev.step} (${ev.reason})`);
}

// 4. Evaluate and save: the adapter in HF PEFT layout, the base-weight updates as a seed log.
const after = await evaluate(model, dev);
const adapter = join(outDir, 'adapter');
await model.saveAdapter(adapter);
await opt.saveTrajectory(join(outDir, 'zo.zlog'));
console.log(`dev after: loss ${after.loss.toFixed(4)}, accuracy ${((after.accuracy ?? 0) * 100).toFixed(1)}%`);
console.log(JSON.stringify({ before, after, steps, adapter, trajectory: join(outDir, 'zo.zlog') }));
