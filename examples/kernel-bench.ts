/**
 * The perturbation kernels on their own, as a trainer that owns its weights (or a kernel
 * benchmark) uses them: no model, just a weight buffer. Times each fused pass against a
 * plain copy of the same buffer (the memory-bandwidth floor a pass over the weights
 * cannot beat) and against the unfused way (materialise z, then a second pass).
 *
 *   node dist/examples/kernel-bench.js [elements] [reps] [threads]
 *
 * Defaults: 2^22 fp32 weights (16 MiB), 5 timed repetitions after one warm-up, the
 * addon's default thread count. Prints a table, then one JSON line.
 */
import { backendInfo, kernels } from 'zofo';

const n = Number(process.argv[2] || 1 << 22);
const reps = Number(process.argv[3] || 5);
const threads = process.argv[4] ? Number(process.argv[4]) : undefined;

const seed = 42n;
const name = 'model.layers.0.mlp.up_proj.weight'; // z depends on the tensor's name, not its place
const mu = 1e-3;

/** Median wall time of `fn` in ms over `reps` runs, after one warm-up run. */
function time(fn: () => void): number {
  fn();
  const ms: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    fn();
    ms.push(performance.now() - t0);
  }
  return ms.sort((a, b) => a - b)[Math.floor(ms.length / 2)];
}

const w = new Float32Array(n).map((_, i) => Math.sin(i)); // some weights
const copy = new Float32Array(n);
const bf16 = new Uint16Array(n).fill(0x3f80); // bf16 bits of 1.0

const rows: Array<{ op: string; ms: number; bytes: number }> = [
  // Reads and writes every weight once: the floor for one pass.
  { op: 'copy (reference)', ms: time(() => copy.set(w)), bytes: 8 * n },
  // z alone: Philox4x32-10 + Box–Muller into a new buffer.
  { op: 'gaussian → new array', ms: time(() => kernels.gaussian(n, { seed, name, threads })), bytes: 4 * n },
  // x ← x + μ·z, z regenerated on the fly: one pass.
  { op: 'perturb f32 (fused)', ms: time(() => kernels.perturb(w, { seed, name, scale: mu, threads })), bytes: 8 * n },
  { op: 'perturb bf16 (fused)', ms: time(() => kernels.perturb(bf16, { dtype: 'bf16', seed, name, scale: mu, threads })), bytes: 4 * n },
  // x ← (1 − η·λ)·x + a·z: the restore of the last perturbation fused with the SGD step.
  { op: 'restoreUpdate f32 (fused)', ms: time(() => kernels.restoreUpdate(w, { seed, name, scale: -mu, lr: 1e-4, weightDecay: 0.01, threads })), bytes: 8 * n },
  // The unfused way (MeZO in PyTorch): materialise z, then a second pass x += μ·z.
  {
    op: 'materialise z + axpy (unfused)',
    ms: time(() => {
      const z = kernels.gaussian(n, { seed, name, threads });
      for (let i = 0; i < n; i++) w[i] += mu * z[i];
    }),
    bytes: 16 * n,
  },
];

const info = backendInfo().cpu;
console.log(`${n} elements, median of ${reps} runs; CPU: simd ${info.simd}, philox ${info.philox}, ${threads ?? info.threads} threads`);
const copyMs = rows[0].ms;
const cell = (s: string, width: number) => s.padEnd(width);
console.log(`${cell('pass', 32)}${cell('ms', 10)}${cell('GB/s', 10)}time ÷ copy`);
for (const r of rows) {
  console.log(`${cell(r.op, 32)}${cell(r.ms.toFixed(2), 10)}${cell((r.bytes / r.ms / 1e6).toFixed(2), 10)}${(r.ms / copyMs).toFixed(2)}`);
}
console.log(JSON.stringify({ elements: n, reps, rows: rows.map((r) => ({ ...r, ratioToCopy: r.ms / copyMs })) }));
