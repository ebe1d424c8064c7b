// A training process for test/resume.test.ts: hybrid fine-tuning of a tiny checkpoint
// with a checkpoint after every step, printing one JSON line per event. The test kills
// it (SIGKILL) mid-run, then resumes from what it left on disk.
//   argv: modelDir ckptDir steps [resume] [hold=<n>]
// hold=<n>: after printing step n's line the child waits until it is killed, so a kill
// sent after an earlier line always lands mid-run, however late the killer is.
import { setTimeout as sleep } from 'node:timers/promises';
import { loadModel } from '../../lib/model/model.js';
import { HybridOptimizer } from '../../lib/train/optimizer.js';
import { Trainer } from '../../lib/train/trainer.js';
import { syntheticTask } from './synthetic-task.js';

const [modelDir, ckptDir, stepsArg, ...flags] = process.argv.slice(2);
const resume = flags.includes('resume');
const hold = Number(flags.find((f) => f.startsWith('hold='))?.slice('hold='.length) ?? NaN);
const model = await loadModel(modelDir);
model.addLoRA({ rank: 2, alpha: 4, seed: 9 });
const opt = new HybridOptimizer(model, {
  zo: { lr: 1e-3, mu: 1e-3, perturbations: 2, weightDecay: 0.01 },
  fo: { lr: 0.05, optimizer: 'adamw', schedule: { kind: 'cosine', warmupSteps: 2 } },
  seed: 77,
});
const { train, dev } = syntheticTask(model.config.vocabSize, 24, 8, 4);
const trainer = new Trainer(model, opt, {
  batchSize: 5,
  steps: Number(stepsArg),
  seed: 3,
  eval: { data: dev, every: 3 },
  checkpoint: { dir: ckptDir, every: 1, keep: 2 },
});
for await (const ev of trainer.fit(train, resume ? { resumeFrom: ckptDir } : {})) {
  if (ev.type === 'step') {
    console.log(JSON.stringify({ type: 'step', step: ev.step, loss: ev.loss, projectedGrads: ev.projectedGrads }));
    if (ev.step === hold) await sleep(3_600_000); // the parent kills it here at the latest
  } else if (ev.type === 'checkpoint') console.log(JSON.stringify({ type: 'checkpoint', step: ev.step }));
  else if (ev.type === 'eval') console.log(JSON.stringify({ type: 'eval', step: ev.step, loss: ev.loss }));
}
const adapters = model
  .loraNames()
  .map((n) => Buffer.from(model.loraTensor(n).buffer).toString('base64'))
  .join('|');
console.log(JSON.stringify({ type: 'final', base: await model.baseHash(), adapters }));
opt.dispose();
model.dispose();
