// The public JavaScript API on CUDA against the CPU, for the GPU check
// (scripts/test-gpu.sh) on machines where the test runner is not installed: plain
// Node.js over the built dist/, the embedded demo model and its task.
//   ZOFO_BINDING_DIR=<folder with zofo_cpu.node and zofo_cuda.node> node scripts/gpu-smoke.mjs
// Prints PASS/FAIL lines and "N passed, N failed"; exits non-zero on any failure.
import { backendInfo, HybridOptimizer, loadModel } from '../dist/lib/index.js';
import { demoModelDir, demoTask } from '../dist/lib/demo/model.js';

let passed = 0,
  failed = 0;
function check(ok, name, detail = '') {
  if (ok) passed++;
  else failed++;
  console.log(`${ok ? 'PASS' : 'FAIL'} ${name}${!ok && detail ? `: ${detail}` : ''}`);
}
function close(a, b, name, atol = 1e-5, rtol = 1e-4) {
  check(Math.abs(a - b) <= atol + rtol * Math.abs(b), name, `cuda ${a} vs cpu ${b}`);
}

async function main() {
  const info = backendInfo();
  check(info.cuda.available, 'the CUDA addon loads', info.cuda.reasons.join('; '));
  if (!info.cuda.available) return;
  const dir = demoModelDir();
  const cpu = await loadModel(dir);
  // fp32 compute: the CUDA engine agrees with the CPU to float rounding.
  const gpu = await loadModel(dir, { device: 'cuda', dtype: 'f32', compute: 'fp32' });
  const auto = await loadModel(dir, { device: 'auto' });
  check(gpu.device === 'cuda' && auto.device === 'cuda' && auto.dtype === 'bf16', "device 'cuda' and 'auto' run on CUDA, bf16 by default");
  const { train } = demoTask(cpu.tokenizer, { seed: 1 });
  const batch = train.slice(0, 8);
  const [a, b] = [await gpu.loss(batch), await cpu.loss(batch)];
  close(a.loss, b.loss, 'loss of the demo batch');
  // The CUDA default compute (bf16 operands, fp32 sums) against the CPU in fp32: each
  // operand rounded once (2⁻⁹ relative), the loss within 32 · 2⁻⁹ of max(1, |loss|).
  for (const compute of ['bf16', 'tf32']) {
    const m = await loadModel(dir, { device: 'cuda', dtype: 'f32', compute });
    const c = await m.loss(batch);
    close(c.loss, b.loss, `loss of the demo batch in ${compute} compute`, 32 * 2 ** -9 * Math.max(1, Math.abs(b.loss)), 0);
    m.dispose();
  }
  for (const m of [cpu, gpu, auto]) m.addLoRA({ rank: 4, alpha: 8, seed: 3 });
  const opts = { zo: { lr: 1e-4, mu: 1e-3 }, fo: { lr: 1e-2 }, seed: 5 };
  const oc = new HybridOptimizer(cpu, opts),
    og = new HybridOptimizer(gpu, opts);
  for (let k = 0; k < 3; k++) {
    const [x, y] = [await og.step(batch), await oc.step(batch)];
    close(x.loss, y.loss, `hybrid step ${k}: loss`);
    close(x.perturbedLosses[0], y.perturbedLosses[0], `hybrid step ${k}: perturbed loss`);
  }
  const before = await auto.baseHash();
  const frozen = new HybridOptimizer(auto, { zo: { lr: 0, mu: 1e-3 }, fo: { lr: 1e-2 }, seed: 5 });
  for (let k = 0; k < 3; k++) await frozen.step(batch);
  check((await auto.baseHash()) === before, 'bf16 on CUDA: lr_x = 0 leaves the base weights bit-identical');
  for (const m of [cpu, gpu, auto]) m.dispose();
}

try {
  await main();
} catch (err) {
  check(false, 'the smoke test ran to the end', err instanceof Error ? `${err.code ?? ''} ${err.stack}` : String(err));
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
