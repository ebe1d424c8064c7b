// The addon is context-aware: it loads and gives the same bits inside worker_threads,
// and async kernels keep the event loop free.
import t from 'tap';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { kernels } from '../lib/index.js';

const root = join(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '..');
const dist = join(root, 'dist/lib/index.js');

t.test('two workers load the addon and agree with the main thread', { skip: !existsSync(dist) && 'dist/ not built (npm run build:ts)' }, async (t) => {
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    import(workerData.url).then(({ kernels }) => {
      const z = kernels.gaussian(1000, { seed: 99n, name: 'worker.weight', offset: 5 });
      const x = new Float32Array(1000).fill(0.5);
      kernels.perturb(x, { seed: 99n, scale: 0.01, name: 'worker.weight', offset: 5 });
      parentPort.postMessage({ z, x });
    }, (e) => parentPort.postMessage({ error: String(e) }));`;
  const run = () =>
    new Promise<{ z: Float32Array; x: Float32Array; error?: string }>((resolve, reject) => {
      const w = new Worker(code, { eval: true, workerData: { url: pathToFileURL(dist).href } });
      w.once('message', (m) => {
        resolve(m);
        void w.terminate();
      });
      w.once('error', reject);
    });
  const [a, b] = await Promise.all([run(), run()]);
  t.notOk(a.error ?? b.error, 'workers loaded zofo');
  const z = kernels.gaussian(1000, { seed: 99n, name: 'worker.weight', offset: 5 });
  const x = new Float32Array(1000).fill(0.5);
  kernels.perturb(x, { seed: 99n, scale: 0.01, name: 'worker.weight', offset: 5 });
  for (const r of [a, b]) {
    t.ok(Buffer.from(r.z.buffer).equals(Buffer.from(z.buffer)), 'worker z bit-identical');
    t.ok(Buffer.from(r.x.buffer).equals(Buffer.from(x.buffer)), 'worker perturb bit-identical');
  }
});

t.test('an async pass leaves the event loop responsive', async (t) => {
  const x = new Float32Array(1 << 23); // 32 MiB
  let settled = false;
  const pass = kernels.perturbAsync(x, { seed: 3n, scale: 1e-3, name: 'w', threads: 1 }).then(() => {
    settled = true;
  });
  // A pass run on this thread would have settled by now. One on the thread pool reports
  // back through the event loop, on a later turn, so after a few microtasks it cannot have
  // (whatever the machine's load: no timing is involved).
  for (let i = 0; i < 4; i++) await Promise.resolve();
  t.notOk(settled, 'perturbAsync returned to this thread before its pass reported back');
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  const t0 = Date.now();
  await pass;
  clearInterval(timer);
  t.comment(`pass took ${Date.now() - t0} ms after the check; a 1 ms timer fired ${ticks} times meanwhile`);
  const want = new Float32Array(x.length);
  kernels.perturb(want, { seed: 3n, scale: 1e-3, name: 'w', threads: 1 });
  t.ok(x.some((v) => v !== 0) && Buffer.from(x.buffer).equals(Buffer.from(want.buffer)), 'the pass ran, and gave the bits perturb() gives');
});
