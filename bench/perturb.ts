/**
 * Perturbation-engine benchmark (not part of `npm test`).
 *
 * Measures, in one run and on the same buffers, GB/s of zofo's fused perturbation and
 * fused restore+update, against (a) the memory limit: a threaded copy and an in-place
 * scale, (b) the arithmetic limit: the generator alone writing z, and (c) a MeZO-style
 * baseline that materialises z into a (preallocated) temporary and then does an axpy,
 * a second pass. Bytes counted
 * are weight bytes read + written (the generator counts the z bytes it writes).
 *
 *   node dist/bench/perturb.js [--mib 256] [--reps 7] [--threads N]
 */
import { backendInfo, kernels } from '../lib/index.js';
import { cpuBinding } from '../lib/binding.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} expects a positive number, got ${process.argv[i + 1]}`);
  return v;
}

const mib = arg('mib', 256);
const reps = Math.round(arg('reps', 7));
const threads = process.argv.includes('--threads') ? Math.round(arg('threads', 1)) : undefined;
const native = cpuBinding();

interface Row { name: string; bytes: number; normals: number; times: number[] }
interface Case { name: string; bytes: number; normals: number; fn: () => void }

// Runs the cases in alternation, round after round, so that a noisy neighbour or a
// frequency change hits all of them alike; reports per-case times.
function measure(cases: Case[]): Row[] {
  for (const c of cases) c.fn(); // warm-up: page faults, thread start-up
  const rows: Row[] = cases.map((c) => ({ name: c.name, bytes: c.bytes, normals: c.normals, times: [] }));
  for (let r = 0; r < reps; r++) {
    cases.forEach((c, i) => {
      const t0 = process.hrtime.bigint();
      c.fn();
      rows[i].times.push(Number(process.hrtime.bigint() - t0) / 1e9);
    });
  }
  return rows;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const gbs = (row: Row) => row.bytes / median(row.times) / 1e9;

function runFp32(): Row[] {
  const n = Math.floor((mib * 2 ** 20) / 4);
  const x = new Float32Array(n).fill(0.25);
  const y = new Float32Array(n);
  const z = new Float32Array(n); // the generator's output and the baseline's preallocated z
  const seed = 42n, stream = kernels.streamId('bench.weight');
  const bytes = 8 * n;
  return measure([
    { name: 'copy (memory limit)', bytes, normals: 0, fn: () => native.benchCopy(y, x, threads) },
    { name: 'in-place scale (memory limit)', bytes, normals: 0, fn: () => native.benchScale(x, 1.0, threads) },
    { name: 'generator only, writes z (arith. limit)', bytes: 4 * n, normals: n, fn: () => native.gaussian(seed, stream, 0n, z, threads) },
    { name: 'zofo fused perturb', bytes, normals: n, fn: () => kernels.perturb(x, { seed, stream, scale: 1e-3, threads }) },
    { name: 'zofo fused restore+update', bytes, normals: n, fn: () =>
      kernels.restoreUpdate(x, { seed, stream, scale: -1e-3, lr: 1e-6, weightDecay: 0.1, threads }) },
    { name: 'MeZO-style: materialise z, then axpy', bytes, normals: n, fn: () => native.benchMaterializeAxpy(x, z, seed, stream, 1e-3, threads) },
  ]);
}

function runBf16(): Row[] {
  const n = Math.floor((mib * 2 ** 20) / 2);
  const x = new Uint16Array(n).fill(0x3e80); // 0.25
  const y = new Uint16Array(n);
  const z = new Float32Array(n); // the baseline's preallocated z
  const seed = 42n, stream = kernels.streamId('bench.weight');
  const bytes = 4 * n;
  return measure([
    { name: 'copy (memory limit)', bytes, normals: 0, fn: () => native.benchCopy(y, x, threads) },
    { name: 'zofo fused perturb', bytes, normals: n, fn: () => kernels.perturb(x, { seed, stream, scale: 1e-3, dtype: 'bf16', threads }) },
    { name: 'zofo fused restore+update', bytes, normals: n, fn: () =>
      kernels.restoreUpdate(x, { seed, stream, scale: -1e-3, lr: 1e-6, weightDecay: 0.1, dtype: 'bf16', threads }) },
    { name: 'MeZO-style: materialise z, then axpy', bytes, normals: n, fn: () => native.benchMaterializeAxpy(x, z, seed, stream, 1e-3, threads) },
  ]);
}

function table(title: string, rows: Row[]): string {
  const copy = rows.find((r) => r.name.startsWith('copy'))!;
  const gen = rows.find((r) => r.name.startsWith('generator'));
  const base = rows.find((r) => r.name.startsWith('MeZO'))!;
  const lines = [
    `\n${title}`,
    '| kernel | median GB/s | spread (min–max s) | G normals/s | ÷ copy | ÷ generator-only (normals/s) | speedup vs MeZO-style |',
    '|---|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows) {
    const t = median(r.times);
    const normalsPerS = r.normals ? r.normals / t / 1e9 : 0;
    const genRate = gen ? gen.normals / median(gen.times) / 1e9 : 0;
    const fused = r.name.startsWith('zofo');
    lines.push(
      `| ${r.name} | ${gbs(r).toFixed(2)} | ${Math.min(...r.times).toFixed(3)}–${Math.max(...r.times).toFixed(3)} | ` +
        `${r.normals ? normalsPerS.toFixed(3) : '–'} | ${(gbs(r) / gbs(copy)).toFixed(3)} | ` +
        `${fused && gen ? (normalsPerS / genRate).toFixed(3) : '–'} | ` +
        `${fused ? (median(base.times) / t).toFixed(2) + '×' : '–'} |`,
    );
  }
  return lines.join('\n');
}

const info = backendInfo();
console.log('zofo perturbation benchmark');
console.log(`buffer: ${mib} MiB per dtype; ${reps} rounds after 1 warm-up, cases alternating within each round; threads: ${threads ?? info.cpu.threads}`);
console.log(`cpu: ${info.cpu.simd}, philox path: ${info.cpu.philox}; node ${process.version}; ` +
  `OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE ?? '(unset)'} (no BLAS involved here)`);
console.log('GB/s counts weight bytes read + written (generator: z bytes written). Ratios are within this run.');
console.log(table(`fp32 (${mib} MiB)`, runFp32()));
console.log(table(`bf16 (${mib} MiB)`, runBf16()));
