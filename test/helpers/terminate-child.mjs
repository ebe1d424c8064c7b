// Child process of test/terminate.test.ts: starts worker threads that run one zofo async
// entry point in a loop, and terminates each at a random moment (some while the addon is
// still being loaded). Prints "survived N" and exits 0 if this process lives through it;
// an abort in native teardown kills it instead.
//   node terminate-child.mjs <dist index.js url> <model dir> <rounds> <seed>
import { Worker } from 'node:worker_threads';

const [url, modelDir, roundsArg, seedArg] = process.argv.slice(2);
const rounds = Number(roundsArg);
let state = Number(seedArg) >>> 0 || 1;
const random = () => (state = (Math.imul(state, 1664525) + 1013904223) >>> 0) / 2 ** 32;

// Each entry runs forever inside the worker (until terminated), after telling the parent
// it has started, so a termination lands while native work is in flight.
const ENTRIES = [
  'require',
  'perturbAsync',
  'loadModel',
  'logits',
  'loss',
  'loraGradients',
  'step',
  'stepFoOnly',
  'baseHash',
  'tensor',
  'readSafetensors',
  'applyTrajectory',
];

const workerCode = `
const { parentPort, workerData } = require('node:worker_threads');
const { url, modelDir, entry } = workerData;
(async () => {
  const z = await import(url);
  parentPort.postMessage('loaded');
  if (entry === 'require') return;
  if (entry === 'perturbAsync') {
    const x = new Float32Array(1 << 20);
    for (let i = 0; ; i++) await z.kernels.perturbAsync(x, { seed: BigInt(i), scale: 1e-3, name: 'w' });
  }
  if (entry === 'loadModel') { for (;;) (await z.loadModel(modelDir)).dispose(); }
  if (entry === 'readSafetensors') {
    for (;;) {
      const f = await z.openSafetensors(modelDir + '/model.safetensors');
      await Promise.all([...f.tensors.keys()].map((n) => f.read(n)));
      f.close();
    }
  }
  const model = await z.loadModel(modelDir);
  const ids = [[1, 5, 9, 12, 7, 3, 8, 2], [1, 4, 4, 6, 2, 9, 11, 2]];
  const batch = ids.map((s) => ({ prompt: s.slice(0, 3), target: s.slice(3) }));
  if (entry === 'logits') for (;;) await model.logits(ids);
  if (entry === 'loss') for (;;) await model.loss(batch);
  if (entry === 'baseHash') for (;;) await model.baseHash();
  if (entry === 'tensor') for (;;) await model.tensor('model.embed_tokens.weight');
  model.addLoRA({ rank: 2 });
  if (entry === 'loraGradients') for (;;) await model.loraGradients(batch);
  const opt = new z.HybridOptimizer(model, entry === 'stepFoOnly' ? { fo: { lr: 1e-3 } } : { zo: { lr: 1e-4, mu: 1e-3 }, fo: { lr: 1e-3 } });
  if (entry === 'step' || entry === 'stepFoOnly') for (;;) await opt.step(batch);
  if (entry === 'applyTrajectory') {
    for (let k = 0; k < 3; k++) await opt.step(batch);
    const traj = opt.trajectory();
    for (;;) await z.applyTrajectory(model, traj);
  }
})().catch((e) => parentPort.postMessage('error: ' + (e && e.stack || e)));
`;

function once(entry) {
  return new Promise((resolve, reject) => {
    const w = new Worker(workerCode, { eval: true, workerData: { url, modelDir, entry } });
    let done = false;
    const kill = () => {
      if (done) return;
      done = true;
      w.terminate().then(resolve, reject);
    };
    w.on('message', (m) => {
      if (typeof m === 'string' && m.startsWith('error')) {
        done = true;
        void w.terminate();
        reject(new Error(`${entry}: ${m}`));
        return;
      }
      // Half the time terminate a random moment after loading finished (work in flight);
      // the other half the timer below already fired, possibly mid-load.
      if (m === 'loaded') setTimeout(kill, random() * 40);
    });
    w.on('error', (e) => {
      if (!done) {
        done = true;
        reject(e);
      }
    });
    setTimeout(kill, random() < 0.3 ? random() * 15 : 2000);
  });
}

let survived = 0;
for (let r = 0; r < rounds; r++) {
  // Two workers at a time, different entries, terminated independently.
  await Promise.all([0, 1].map(() => once(ENTRIES[Math.floor(random() * ENTRIES.length)])));
  survived += 2;
}
console.log(`survived ${survived}`);
