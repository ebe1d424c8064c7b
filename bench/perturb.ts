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
import { numberArg } from './args.js';
import { cpuBinding } from '../lib/binding.js';

const mib = numberArg('mib', 256, true);
const reps = numberArg('reps', 7);
const threads = process.argv.includes('--threads') ? numberArg('threads', 1) : undefined;
const native = cpuBinding();

interface Row {
  name: string;
  bytes: number;
  normals: number;
  times: number[];
}
interface Case {
  name: string;
  bytes: number;
  normals: number;
  fn: () => void;
}

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

interface Result extends Row {
  dtype: string;
  kind: 'limit' | 'zofo' | 'baseline';
}

// Everything in one alternating run: the limits on fp32 buffers (bytes are bytes), the
// kernels on fp32 and bf16 buffers of the same size in bytes.
function runAll(): Result[] {
  const n32 = Math.floor((mib * 2 ** 20) / 4),
    n16 = 2 * n32;
  const x32 = new Float32Array(n32).fill(0.25),
    y32 = new Float32Array(n32);
  const x16 = new Uint16Array(n16).fill(0x3e80); // 0.25
  const z = new Float32Array(n16); // generator output / the baseline's preallocated z
  const seed = 42n,
    stream = kernels.streamId('bench.weight');
  const bytes = 8 * n32; // weights read + written
  const meta: { dtype: string; kind: Result['kind'] }[] = [];
  const cases: Case[] = [];
  const add = (dtype: string, kind: Result['kind'], c: Case) => {
    meta.push({ dtype, kind });
    cases.push(c);
  };
  add('f32', 'limit', { name: 'copy', bytes, normals: 0, fn: () => native.benchCopy(y32, x32, threads) });
  add('f32', 'limit', { name: 'in-place scale', bytes, normals: 0, fn: () => native.benchScale(x32, 1.0, threads) });
  add('f32', 'limit', {
    name: 'generator only (writes z)',
    bytes: 4 * n32,
    normals: n32,
    fn: () => native.gaussian(seed, stream, 0n, z.subarray(0, n32), threads),
  });
  for (const [dtype, x] of [
    ['f32', x32],
    ['bf16', x16],
  ] as const) {
    const n = x.length;
    const storage = dtype === 'f32' ? {} : { dtype };
    add(dtype, 'zofo', { name: 'zofo fused perturb', bytes, normals: n, fn: () => kernels.perturb(x, { seed, stream, scale: 1e-3, threads, ...storage }) });
    add(dtype, 'zofo', {
      name: 'zofo fused restore+update',
      bytes,
      normals: n,
      fn: () => kernels.restoreUpdate(x, { seed, stream, scale: -1e-3, lr: 1e-6, weightDecay: 0.1, threads, ...storage }),
    });
    add(dtype, 'baseline', {
      name: 'MeZO-style: materialise z, then axpy',
      bytes,
      normals: n,
      fn: () => native.benchMaterializeAxpy(x, z.subarray(0, n), seed, stream, 1e-3, threads),
    });
  }
  return measure(cases).map((row, i) => ({ ...row, ...meta[i] }));
}

function table(rows: Result[]): string {
  const limit = (name: string) => rows.find((r) => r.kind === 'limit' && r.name.startsWith(name))!;
  const copy = gbs(limit('copy')),
    scale = gbs(limit('in-place scale'));
  const gen = limit('generator');
  const genRate = gen.normals / median(gen.times);
  const lines = [
    '| dtype | kernel | median GB/s | spread (s) | G normals/s | ÷ copy | ÷ in-place scale | ÷ generator-only | speedup vs MeZO-style |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows) {
    const t = median(r.times);
    const rate = r.normals / t;
    const base = rows.find((b) => b.kind === 'baseline' && b.dtype === r.dtype);
    lines.push(
      `| ${r.dtype} | ${r.name} | ${gbs(r).toFixed(2)} | ${Math.min(...r.times).toFixed(3)}–${Math.max(...r.times).toFixed(3)} | ` +
        `${r.normals ? (rate / 1e9).toFixed(3) : '–'} | ${(gbs(r) / copy).toFixed(3)} | ${(gbs(r) / scale).toFixed(3)} | ` +
        `${r.kind === 'limit' ? '–' : (rate / genRate).toFixed(3)} | ` +
        `${r.kind === 'zofo' && base ? (median(base.times) / t).toFixed(2) + '×' : '–'} |`,
    );
  }
  return lines.join('\n');
}

const info = backendInfo();
console.log('zofo perturbation benchmark');
console.log(`buffer: ${mib} MiB; ${reps} rounds after 1 warm-up, cases alternating within each round; threads: ${threads ?? info.cpu.threads}`);
console.log(
  `cpu: ${info.cpu.simd}, philox path: ${info.cpu.philox}; node ${process.version}; ` +
    `OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE ?? '(unset)'} (no BLAS involved here)`,
);
console.log('GB/s counts weight bytes read + written (generator: z bytes written). Ratios are within this run.');
console.log(`\nweights: ${mib} MiB per case (f32: ${mib / 4} Mi elements, bf16: ${mib / 2} Mi elements)`);
console.log(table(runAll()));
