// device: 'cuda' — bit-identical to the CPU where a GPU is usable; a clear error
// (never a crash, never a broken CPU path) where it is not.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { backendInfo, HybridOptimizer, kernels, loadModel, type ClassificationExample, type Model } from '../lib/index.js';
import { freshSeed, rng } from './helpers/reference.js';
import { randomCheckpoint, seededRandom, writeCheckpointDir } from './helpers/tiny-checkpoints.js';

const info = backendInfo();

t.test(
  'without a usable CUDA addon, device "cuda" is a clear error and the CPU still works',
  { skip: info.cuda.available && 'a CUDA device is available here' },
  async (t) => {
    t.throws(() => kernels.gaussian(4, { seed: 1, name: 'w', device: 'cuda' }), {
      code: 'ZOFO_CUDA',
      message: /CUDA addon is not available[\s\S]*zofo_cuda\.node/,
    });
    const x = new Float32Array(8);
    t.throws(() => kernels.perturb(x, { seed: 1, scale: 1, name: 'w', device: 'cuda' }), { code: 'ZOFO_CUDA' });
    t.ok(
      x.every((v) => v === 0),
      'buffer untouched',
    );
    t.equal(kernels.gaussian(4, { seed: 1, name: 'w' }).length, 4, 'the CPU path is unaffected');
    t.throws(() => kernels.gaussian(4, { seed: 1, name: 'w', device: 'tpu' as 'cpu' }), { code: 'ZOFO_INVALID_ARG', message: /device/ });
  },
);

t.test('CUDA gives the same bits as the CPU', { skip: !info.cuda.available && 'no usable CUDA device (see backendInfo().cuda.reasons)' }, async (t) => {
  const seed0 = freshSeed();
  const r = rng(seed0);
  const seed = BigInt(seed0) * 7919n;
  const offset = 2n ** 33n + 3n;
  const cpu = kernels.gaussian(100_003, { seed, name: 'w', offset });
  const gpu = kernels.gaussian(100_003, { seed, name: 'w', offset, device: 'cuda' });
  t.ok(Buffer.from(cpu.buffer).equals(Buffer.from(gpu.buffer)), `gaussian bit-identical (input seed ${seed0})`);
  const tensors = [
    { name: 'a', offset: 1, count: 5001, first: 3n, decay: false },
    { name: 'b', offset: 5003, count: 999 },
  ];
  for (const dtype of ['f32', 'bf16', 'f16'] as const) {
    const n = 6100;
    const x0 =
      dtype === 'f32'
        ? Float32Array.from({ length: n }, () => r() - 0.5)
        : Uint16Array.from({ length: n }, () => (dtype === 'bf16' ? 0x3c00 : 0x3400) + Math.floor(r() * 512));
    const a = x0.slice(),
      b = x0.slice();
    const opts = { seed, scale: 1e-3, lr: 0.1, weightDecay: 0.3, tensors, ...(dtype === 'f32' ? {} : { dtype }) };
    kernels.restoreUpdate(a, opts);
    kernels.restoreUpdate(b, { ...opts, device: 'cuda' });
    t.ok(Buffer.from(a.buffer).equals(Buffer.from(b.buffer)), `${dtype} restoreUpdate bit-identical`);
  }
});

async function tinyLlama(t: Tap.Test, seed: number): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'zofo-device-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeCheckpointDir(dir, randomCheckpoint('llama', seed), { dtype: 'F32' });
  return dir;
}

function batchOf(V: number, n: number, seed: number): ClassificationExample[] {
  const r = seededRandom(seed);
  return Array.from({ length: n }, () => ({
    prompt: Array.from({ length: 3 + Math.floor(r.uniform() * 5) }, () => Math.floor(r.uniform() * V)),
    candidates: [[5], [7, 9]],
    label: r.uniform() < 0.5 ? 0 : 1,
  }));
}

t.test('loadModel: device choices without a usable CUDA addon', { skip: info.cuda.available && 'a CUDA device is available here' }, async (t) => {
  const dir = await tinyLlama(t, freshSeed());
  for (const device of ['cuda', 'cuda:1'] as const) {
    await t.rejects(
      loadModel(dir, { device }),
      { code: 'ZOFO_CUDA', message: /needs the CUDA addon[\s\S]*zofo_cuda\.node[\s\S]*'auto'/ },
      `${device}: says why and what to do`,
    );
  }
  await t.rejects(loadModel(dir, { device: 'gpu' as 'cpu' }), { code: 'ZOFO_INVALID_ARG', message: /device/ });
  await t.rejects(loadModel(dir, { device: 'cuda:x' as 'cuda' }), { code: 'ZOFO_INVALID_ARG', message: /device/ });
  const model = await loadModel(dir, { device: 'auto' });
  t.teardown(() => model.dispose());
  t.equal(model.device, 'cpu', "'auto' falls back to the CPU");
  t.equal(model.dtype, 'f32', 'and keeps the CPU default dtype');
});

// The engine on the device against the engine on the CPU, through the public API.
// fp32 storage and compute: the same weights, so losses and gradients agree to float rounding
// (different summation orders); bf16: the CUDA default, exact restore with lr_x = 0.
t.test(
  'a model on CUDA computes what the CPU computes',
  { skip: !info.cuda.available && 'no usable CUDA device (see backendInfo().cuda.reasons)' },
  async (t) => {
    const seed = freshSeed();
    const dir = await tinyLlama(t, seed);
    const cpu = await loadModel(dir),
      gpu = await loadModel(dir, { device: 'cuda', dtype: 'f32', compute: 'fp32' });
    t.teardown(() => {
      cpu.dispose();
      gpu.dispose();
    });
    t.equal(gpu.device, 'cuda');
    const close = (a: number, b: number, what: string): void => {
      t.ok(Math.abs(a - b) <= 1e-5 + 1e-4 * Math.abs(b), `${what}: cuda ${a} vs cpu ${b} (input seed ${seed})`);
    };
    for (const m of [cpu, gpu]) m.addLoRA({ rank: 4, alpha: 8, seed });
    const r = seededRandom(seed + 1);
    for (const name of cpu.loraNames()) {
      const y = cpu.loraTensor(name).map(() => 0.1 * r.normal());
      cpu.setLoraTensor(name, y);
      gpu.setLoraTensor(name, y);
    }
    const batch = batchOf(cpu.config.vocabSize, 6, seed + 2);
    const [a, b] = [await gpu.loraGradients(batch), await cpu.loraGradients(batch)];
    close(a.loss, b.loss, 'loss');
    let worst = 0;
    for (const [name, g] of b.grads) {
      const h = a.grads.get(name)!;
      for (let i = 0; i < g.length; i++) worst = Math.max(worst, Math.abs(h[i] - g[i]) / (1e-5 + 1e-3 * Math.abs(g[i])));
    }
    t.ok(worst <= 1, `adapter gradients within 1e-5 + 1e-3·|cpu| (worst ratio ${worst.toFixed(3)})`);

    const options = { zo: { lr: 1e-3, mu: 1e-2, perturbations: 2 }, fo: { lr: 0.05 }, seed: seed + 3 };
    const optCpu = new HybridOptimizer(cpu, options),
      optGpu = new HybridOptimizer(gpu, options);
    for (let k = 0; k < 3; k++) {
      const [x, y] = [await optGpu.step(batch), await optCpu.step(batch)];
      close(x.loss, y.loss, `step ${k} loss`);
      x.perturbedLosses.forEach((l, j) => close(l, y.perturbedLosses[j], `step ${k} perturbed loss ${j}`));
    }

    const low: Model = await loadModel(dir, { device: 'cuda' });
    t.teardown(() => low.dispose());
    t.equal(low.dtype, 'bf16', 'bf16 is the CUDA default');
    t.equal(low.compute, 'bf16', 'bf16 compute is the CUDA default');
    low.addLoRA({ rank: 4, alpha: 8, seed });
    const before = await low.baseHash();
    const opt = new HybridOptimizer(low, { zo: { lr: 0, mu: 1e-2 }, fo: { lr: 0.05 }, seed });
    for (let k = 0; k < 2; k++) await opt.step(batch);
    t.equal(await low.baseHash(), before, 'lr_x = 0: bf16 base weights bit-identical after perturbed steps');
  },
);
