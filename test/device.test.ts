// device: 'cuda' — bit-identical to the CPU where a GPU is usable; a clear error
// (never a crash, never a broken CPU path) where it is not.
import t from 'tap';
import { backendInfo, kernels } from '../lib/index.js';
import { freshSeed, rng } from './helpers/reference.js';

const info = backendInfo();

t.test('without a usable CUDA addon, device "cuda" is a clear error and the CPU still works', { skip: info.cuda.available && 'a CUDA device is available here' }, async (t) => {
  t.throws(() => kernels.gaussian(4, { seed: 1, name: 'w', device: 'cuda' }), { code: 'ZOFO_CUDA', message: /CUDA addon is not available[\s\S]*zofo_cuda\.node/ });
  const x = new Float32Array(8);
  t.throws(() => kernels.perturb(x, { seed: 1, scale: 1, name: 'w', device: 'cuda' }), { code: 'ZOFO_CUDA' });
  t.ok(x.every((v) => v === 0), 'buffer untouched');
  t.equal(kernels.gaussian(4, { seed: 1, name: 'w' }).length, 4, 'the CPU path is unaffected');
  t.throws(() => kernels.gaussian(4, { seed: 1, name: 'w', device: 'tpu' as 'cpu' }), { code: 'ZOFO_INVALID_ARG', message: /device/ });
});

t.test('CUDA gives the same bits as the CPU', { skip: !info.cuda.available && 'no usable CUDA device (see backendInfo().cuda.reasons)' }, async (t) => {
  const seed0 = freshSeed();
  const r = rng(seed0);
  const seed = BigInt(seed0) * 7919n;
  const offset = 2n ** 33n + 3n;
  const cpu = kernels.gaussian(100_003, { seed, name: 'w', offset });
  const gpu = kernels.gaussian(100_003, { seed, name: 'w', offset, device: 'cuda' });
  t.ok(Buffer.from(cpu.buffer).equals(Buffer.from(gpu.buffer)), `gaussian bit-identical (input seed ${seed0})`);
  const tensors = [{ name: 'a', offset: 1, count: 5001, first: 3n, decay: false }, { name: 'b', offset: 5003, count: 999 }];
  for (const dtype of ['f32', 'bf16', 'f16'] as const) {
    const n = 6100;
    const x0 = dtype === 'f32' ? Float32Array.from({ length: n }, () => r() - 0.5) : Uint16Array.from({ length: n }, () => (dtype === 'bf16' ? 0x3c00 : 0x3400) + Math.floor(r() * 512));
    const a = x0.slice(), b = x0.slice();
    const opts = { seed, scale: 1e-3, lr: 0.1, weightDecay: 0.3, tensors, ...(dtype === 'f32' ? {} : { dtype }) };
    kernels.restoreUpdate(a, opts);
    kernels.restoreUpdate(b, { ...opts, device: 'cuda' });
    t.ok(Buffer.from(a.buffer).equals(Buffer.from(b.buffer)), `${dtype} restoreUpdate bit-identical`);
  }
});
