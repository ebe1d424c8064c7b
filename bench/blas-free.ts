/**
 * The prebuilt binary against a source build, forward speed (not part of `npm test`):
 * the self-contained zofo_cpu.node of the platform package (static OpenBLAS, built by
 * `npm run prebuild`) and the source build that links the system's OpenBLAS
 * (build/Release, `npm run build:native` with libopenblas-dev installed). Each binary
 * runs in its own child process (pinned with ZOFO_BINDING_DIR + ZOFO_BINDING_ONLY), the
 * two alternating, on the same Llama-shaped model with the same random weights and the
 * same environment. Reported: median forward time of each and their ratio (source ÷
 * prebuilt: ≥ 1 means the prebuilt is as fast). OPENBLAS_CORETYPE changes which OpenBLAS
 * kernel both pick; when it is set, the comparison runs again with it unset.
 *
 *   node dist/bench/blas-free.js [--prebuilt DIR] [--source DIR] [--rounds 3] [--reps 2]
 *                                [--layers 6] [--hidden 512] [--ffn 1408] [--vocab 8000]
 *                                [--batch 8] [--seq 64]
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { numberArg } from './args.js';
import { llamaNative, xorshift } from './llama-native.js';
import { addonFiles, cpuBinding, packageRoot } from '../lib/binding.js';
import { cpuPackageName } from '../lib/platform.js';

const L = numberArg('layers', 6),
  C = numberArg('hidden', 512),
  F = numberArg('ffn', 1408),
  V = numberArg('vocab', 8000);
const B = numberArg('batch', 8),
  T = numberArg('seq', 64),
  reps = numberArg('reps', 2),
  rounds = numberArg('rounds', 3);
const NH = Math.max(1, Math.round(C / 64)),
  HS = C / NH,
  N = B * T;

function stringArg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? fallback : resolve(process.argv[i + 1]);
}

interface ChildResult {
  file: string;
  blas: string;
  seconds: number[];
  logitSum: number;
}

// In the child: one binary, one model, `reps` timed forwards after a warm-up.
async function child(): Promise<void> {
  const rand = xorshift();
  const model = llamaNative({ V, C, L, NH, HS, F }, rand);
  const ids = Int32Array.from({ length: N }, () => Math.floor(rand() * V));
  const positions = Int32Array.from({ length: N }, (_, i) => i % T);
  const mask = new Uint8Array(N).fill(1);
  const rows = Int32Array.from({ length: N }, (_, i) => i);
  const logits = new Float32Array(N * V);
  await model.logits(ids, positions, mask, B, T, rows, logits);
  const seconds: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = process.hrtime.bigint();
    await model.logits(ids, positions, mask, B, T, rows, logits);
    seconds.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  model.dispose();
  const result: ChildResult = { file: addonFiles().cpu ?? '', blas: cpuBinding().blas, seconds, logitSum: logits.reduce((a, b) => a + b, 0) };
  console.log(JSON.stringify(result));
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};

function runChild(dir: string, env: NodeJS.ProcessEnv): ChildResult {
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child', ...process.argv.slice(2)], {
    encoding: 'utf8',
    env: { ...env, ZOFO_BINDING_DIR: dir, ZOFO_BINDING_ONLY: '1', ZOFO_CUDA: '0' },
  });
  if (r.status !== 0) throw new Error(`benchmark child for ${dir} failed:\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as ChildResult;
}

function compare(label: string, prebuilt: string, source: string, env: NodeJS.ProcessEnv): number {
  const times = { prebuilt: [] as number[], source: [] as number[] };
  const seen: Record<string, ChildResult> = {};
  for (let k = 0; k < rounds; k++) {
    // alternate, so both see the same machine state
    for (const [name, dir] of [
      ['prebuilt', prebuilt],
      ['source', source],
    ] as const) {
      const r = runChild(dir, env);
      times[name].push(...r.seconds);
      seen[name] = r;
    }
  }
  const [p, s] = [median(times.prebuilt), median(times.source)];
  const agree = Math.abs(seen.prebuilt.logitSum - seen.source.logitSum) <= 1e-3 * Math.max(1, Math.abs(seen.source.logitSum));
  console.log(`\n${label}`);
  console.log('| binary | BLAS | forward (median of ' + times.prebuilt.length + ') | tokens/s |');
  console.log('|---|---|---:|---:|');
  console.log(
    `| prebuilt ${relative(packageRoot, seen.prebuilt.file)} | ${seen.prebuilt.blas} (static) | ${(p * 1e3).toFixed(0)} ms | ${(N / p).toFixed(0)} |`,
  );
  console.log(`| source ${relative(packageRoot, seen.source.file)} | ${seen.source.blas} (system .so) | ${(s * 1e3).toFixed(0)} ms | ${(N / s).toFixed(0)} |`);
  console.log(`speed prebuilt ÷ source: ${(s / p).toFixed(3)} (target ≥ 0.9); logits agree: ${agree ? 'yes' : 'NO'}`);
  return s / p;
}

async function main(): Promise<void> {
  const prebuilt = stringArg('prebuilt', join(packageRoot, 'packages', cpuPackageName().split('/')[1]));
  const source = stringArg('source', join(packageRoot, 'build', 'Release'));
  for (const dir of [prebuilt, source]) {
    if (!existsSync(join(dir, 'zofo_cpu.node'))) throw new Error(`${join(dir, 'zofo_cpu.node')} is missing (npm run prebuild / npm run build:native)`);
  }
  console.log('zofo prebuilt (self-contained) vs source build (system OpenBLAS): forward');
  console.log(`model: Llama-shaped, ${L} layers, hidden ${C}, ffn ${F}, vocab ${V}; batch ${B} × ${T} tokens; ${rounds} rounds × ${reps} forwards each`);
  const coretype = process.env.OPENBLAS_CORETYPE;
  compare(`OPENBLAS_CORETYPE=${coretype ?? '(unset)'}`, prebuilt, source, process.env);
  if (coretype !== undefined) {
    const env = { ...process.env };
    delete env.OPENBLAS_CORETYPE;
    compare('OPENBLAS_CORETYPE unset (OpenBLAS picks the kernel for this CPU)', prebuilt, source, env);
  }
}

if (process.argv.includes('--child')) await child();
else await main();
