// One rank (or the single process) of test/distributed.test.ts: hybrid fine-tuning of a
// tiny checkpoint through Trainer, printing one JSON line per event. Plain JavaScript
// on the compiled library (dist/), so that mpirun starts each rank without a TypeScript
// loader.
//   argv[2]: JSON { model, mode: 'none' | 'data' | 'perturbation', steps, q, batch, mu,
//                   lrX, result, out?, every?, resume?, pauseMs?, stallAfter? }
// stallAfter: rank 1 stops answering (sleeps for good) after that many steps.
// Step lines go to stdout (short, so mpirun never interleaves them); the final weights
// go to `${result}.rank<r>.json`.
// 'none' runs without MPI; the others call distributed.init() (under mpirun).
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { distributed, HybridOptimizer, loadModel, Trainer } from '../../dist/lib/index.js';

const a = JSON.parse(process.argv[2]);
const comm = a.mode === 'none' ? null : await distributed.init();
const rank = comm?.rank ?? 0;
const print = (o) => process.stdout.write(`${JSON.stringify({ rank, ...o })}\n`);
print({ type: 'ready', pid: process.pid, size: comm?.size ?? 1 });

const model = await loadModel(a.model);
model.addLoRA({ rank: 2, alpha: 4, seed: 9 });
const opt = new HybridOptimizer(model, {
  zo: { lr: a.lrX, mu: a.mu, perturbations: a.q, weightDecay: 0.01 },
  fo: { lr: 0.05 },
  seed: 77,
  ...(comm ? { parallel: { kind: a.mode, comm, checkEvery: 5 } } : {}),
});

// The label rides on the first prompt token (20–23 → 1, 30–33 → 0); candidates 5 and 7.
let s = 12345;
const uniform = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32;
const V = model.config.vocabSize;
const train = Array.from({ length: 40 }, () => {
  const label = uniform() < 0.5 ? 0 : 1;
  const prompt = [(label ? 20 : 30) + Math.floor(uniform() * 4), ...Array.from({ length: 3 }, () => 10 + Math.floor(uniform() * (V - 10)))];
  return { prompt, candidates: [[5], [7]], label };
});

const trainer = new Trainer(model, opt, {
  batchSize: a.batch,
  steps: a.steps,
  seed: 3,
  distributed: comm !== null,
  ...(a.out ? { checkpoint: { dir: join(a.out, 'checkpoints'), every: a.every ?? a.steps, keep: 2 } } : {}),
});
for await (const ev of trainer.fit(train, a.resume ? { resumeFrom: join(a.out, 'checkpoints') } : {})) {
  if (ev.type === 'step') print({ type: 'step', step: ev.step, loss: ev.loss, perturbedLosses: ev.perturbedLosses, projectedGrads: ev.projectedGrads });
  if (ev.type === 'step' && a.pauseMs) await sleep(a.pauseMs); // gives the kill test a mid-run moment
  if (ev.type === 'step' && rank === 1 && ev.step === a.stallAfter) await sleep(3_600_000);
}
const adapters = Buffer.concat(model.loraNames().map((n) => Buffer.from(model.loraTensor(n).buffer))).toString('base64');
const tensors = await Promise.all(model.parameterNames().map((n) => model.tensor(n)));
const base = Buffer.concat(tensors.map((t) => Buffer.from(t.buffer, t.byteOffset, t.byteLength))).toString('base64');
const hash = await model.baseHash();
if (rank === 0 && a.out) {
  await opt.saveTrajectory(join(a.out, 'trajectory.zlog'));
  await writeFile(join(a.out, 'final.json'), JSON.stringify({ hash }));
}
await writeFile(`${a.result}.rank${rank}.json`, JSON.stringify({ rank, type: 'final', hash, adapters, base }));
opt.dispose();
model.dispose();
