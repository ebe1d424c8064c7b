/**
 * One fine-tuning job, run in a worker thread by server.ts: the same steps as
 * finetune.ts, reporting progress to the parent and stopping when it says "cancel".
 * Training is async and runs off the JS thread, so the worker stays responsive to the
 * cancel message between (and during) steps.
 */
import { join } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { evaluate, HybridOptimizer, loadModel, Trainer } from 'zofo';
import { reviewTask, tokenize } from './review-task.js';

/** What the server sends the worker. */
export interface JobSpec {
  modelDir: string;
  outDir: string;
  steps: number;
  batchSize: number;
  lrX: number;
  lrY: number;
  seed: number;
}

/** What the worker sends back. */
export type JobMessage =
  | { type: 'progress'; step: number; steps: number; loss: number }
  | { type: 'eval'; step: number; loss: number; accuracy: number | null }
  | { type: 'done'; reason: string; step: number; accuracy: number | null; adapter: string | null };

const spec = workerData as JobSpec;
const port = parentPort!;
const send = (m: JobMessage) => port.postMessage(m);
const abort = new AbortController();
const onMessage = (m: unknown) => {
  if (m === 'cancel') abort.abort();
};
port.on('message', onMessage);

await using model = await loadModel(spec.modelDir);
const task = reviewTask();
const train = tokenize(task.train, model.tokenizer!);
const dev = tokenize(task.dev, model.tokenizer!);
model.addLoRA({ rank: 8, alpha: 16, seed: spec.seed });
await using opt = new HybridOptimizer(model, { zo: { lr: spec.lrX, mu: 1e-3 }, fo: { lr: spec.lrY }, seed: spec.seed });
const trainer = new Trainer(model, opt, {
  batchSize: spec.batchSize,
  steps: spec.steps,
  seed: spec.seed,
  signal: abort.signal,
  eval: { data: dev, every: Math.max(1, Math.floor(spec.steps / 4)) },
});
let reason = 'completed',
  last = 0;
for await (const ev of trainer.fit(train)) {
  if (ev.type === 'step') send({ type: 'progress', step: ev.step, steps: spec.steps, loss: ev.loss });
  else if (ev.type === 'eval') send({ type: 'eval', step: ev.step, loss: ev.loss, accuracy: ev.accuracy });
  else if (ev.type === 'done') [reason, last] = [ev.reason, ev.step];
}
port.off('message', onMessage); // the worker may now exit: nothing else keeps it alive
if (reason === 'aborted') {
  send({ type: 'done', reason, step: last, accuracy: null, adapter: null });
} else {
  const adapter = join(spec.outDir, 'adapter');
  await model.saveAdapter(adapter);
  send({ type: 'done', reason, step: last, accuracy: (await evaluate(model, dev)).accuracy, adapter });
}
