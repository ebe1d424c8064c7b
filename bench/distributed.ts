/**
 * Distributed hybrid-step benchmark (not part of `npm test`; needs mpirun and
 * zofo_comm.node): the time of one `await opt.step(globalBatch)` and the part of it
 * spent in collectives (waiting for the other rank included), for 1 and 2 ranks, and the
 * bare allreduce of the step's two messages (|LoRA| fp32 gradient sums; the 2q + 2 loss
 * scalars) measured on their own. Everything is measured in the same run on this machine:
 *   - 1 process, all cores (ZOFO_NUM_THREADS = cores) and 1 thread, without MPI;
 *   - mpirun -n 2, data-parallel, 1 thread per rank (each rank half of the batch);
 *   - q = 4: 1 process against mpirun -n 2 perturbation-parallel (2 directions per rank).
 * Llama-shaped random model, LoRA rank 8 on q_proj/v_proj, classification batch B × T.
 *
 *   node dist/bench/distributed.js [--layers 4] [--hidden 256] [--ffn 688] [--vocab 8000]
 *                                  [--batch 16] [--seq 32] [--reps 8]
 * Run as a rank by itself (under mpirun, with --rank-config JSON).
 */
import { spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { distributed, type ClassificationExample, type Model } from '../lib/index.js';
import { HybridOptimizer } from '../lib/train/optimizer.js';
import { numberArg } from './args.js';
import { llamaModel, xorshift } from './llama-native.js';

const L = numberArg('layers', 4),
  C = numberArg('hidden', 256),
  F = numberArg('ffn', 688),
  V = numberArg('vocab', 8000);
const B = numberArg('batch', 16),
  T = numberArg('seq', 32),
  reps = numberArg('reps', 8);
const NH = Math.max(1, Math.round(C / 64)),
  HS = C / NH;

interface RankConfig {
  mode: 'none' | 'data' | 'perturbation';
  q: number;
}
interface RankResult {
  stepMs: number;
  commMsPerStep: number;
  bytesPerStep: number;
  loraFloats: number;
  allreduceLoraMs: number;
  allreduceScalarsMs: number;
  params: number;
}

const rand = xorshift();
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// The same weights on every rank: the generator's seed is fixed.
function buildModel(): Model {
  const model = llamaModel({ V, C, L, NH, HS, F }, rand);
  model.addLoRA({ rank: 8, alpha: 16, targets: ['q_proj', 'v_proj'], seed: 1 });
  return model;
}

async function rank(cfg: RankConfig): Promise<void> {
  const comm = cfg.mode === 'none' ? null : await distributed.init();
  const model = buildModel();
  const batch: ClassificationExample[] = Array.from({ length: B }, (_, e) => ({
    prompt: Array.from({ length: T }, () => Math.floor(rand() * V)),
    candidates: [[1 + (e % 7)], [100 + (e % 5)]],
    label: e % 2,
  }));
  const opt = new HybridOptimizer(model, {
    zo: { lr: 1e-6, mu: 1e-3, perturbations: cfg.q },
    fo: { lr: 1e-4 },
    seed: 5,
    ...(comm ? { parallel: { kind: cfg.mode as 'data' | 'perturbation', comm, checkEvery: 0 } } : {}),
  });
  for (let i = 0; i < 2; i++) await opt.step(batch); // warm-up
  await comm?.barrier();
  const before = comm?.stats();
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await opt.step(batch);
    times.push(performance.now() - t0);
  }
  const after = comm?.stats();
  const loraFloats = model.loraNames().reduce((n, name) => n + model.loraTensor(name).length, 0);
  let allreduceLoraMs = 0,
    allreduceScalarsMs = 0;
  if (comm) {
    const g = new Float32Array(loraFloats),
      s = new Float64Array(2 * cfg.q + 2);
    const timed = async (buf: Float32Array | Float64Array) => {
      const xs: number[] = [];
      for (let i = 0; i < 30; i++) {
        await comm.barrier();
        const t0 = performance.now();
        await comm.allreduce(buf);
        xs.push(performance.now() - t0);
      }
      return median(xs);
    };
    allreduceLoraMs = await timed(g);
    allreduceScalarsMs = await timed(s);
  }
  const result: RankResult = {
    stepMs: median(times),
    commMsPerStep: before && after ? (1000 * (after.seconds - before.seconds)) / reps : 0,
    bytesPerStep: before && after ? (after.bytes - before.bytes) / reps : 0,
    loraFloats,
    allreduceLoraMs,
    allreduceScalarsMs,
    params: model.parameterCounts().reduce((a, b) => a + b, 0),
  };
  if ((comm?.rank ?? 0) === 0) console.log(`RESULT ${JSON.stringify(result)}`);
  opt.dispose();
  model.dispose();
}

function launch(ranks: number, threads: number, cfg: RankConfig): RankResult {
  const self = fileURLToPath(import.meta.url);
  const args = [...process.argv.slice(2), '--rank-config', JSON.stringify(cfg)];
  const env = {
    ...process.env,
    ZOFO_NUM_THREADS: String(threads),
    OMPI_ALLOW_RUN_AS_ROOT: '1',
    OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1',
    OMPI_MCA_rmaps_base_oversubscribe: '1',
  };
  const [cmd, argv] = ranks === 0 ? [process.execPath, [self, ...args]] : ['mpirun', ['-n', String(ranks), process.execPath, self, ...args]];
  const r = spawnSync(cmd, argv, { encoding: 'utf8', env, timeout: 600_000 });
  const line = r.stdout?.split('\n').find((l) => l.startsWith('RESULT '));
  if (r.status !== 0 || !line) throw new Error(`${cmd} ${argv.join(' ')} failed (${r.status}): ${r.stderr}`);
  return JSON.parse(line.slice(7)) as RankResult;
}

const at = process.argv.indexOf('--rank-config');
if (at >= 0) {
  await rank(JSON.parse(process.argv[at + 1]) as RankConfig);
} else {
  const cores = availableParallelism();
  console.log(`distributed hybrid step: Llama L=${L} C=${C} F=${F} V=${V}, LoRA r=8 q/v, batch ${B} × ${T}, ${reps} timed steps, ${cores} cores`);
  const rows: Array<[string, RankResult]> = [
    [`q=1  1 process, ${cores} threads`, launch(0, cores, { mode: 'none', q: 1 })],
    ['q=1  1 process, 1 thread', launch(0, 1, { mode: 'none', q: 1 })],
    ['q=1  2 ranks data-parallel, 1 thread each', launch(2, 1, { mode: 'data', q: 1 })],
    [`q=4  1 process, ${cores} threads`, launch(0, cores, { mode: 'none', q: 4 })],
    ['q=4  1 process, 1 thread', launch(0, 1, { mode: 'none', q: 4 })],
    ['q=4  2 ranks perturbation-parallel, 1 thread each', launch(2, 1, { mode: 'perturbation', q: 4 })],
  ];
  const base = rows[0][1].stepMs,
    base4 = rows[3][1].stepMs;
  console.log(`\nbase parameters ${rows[0][1].params}, LoRA parameters ${rows[0][1].loraFloats}\n`);
  console.log(
    '| run | step ms (median) | ÷ 1 process all cores | in collectives ms/step | bytes/step/rank | allreduce |LoRA| ms | allreduce 2q+2 scalars ms |',
  );
  console.log('|---|---|---|---|---|---|---|');
  rows.forEach(([name, r], i) => {
    const ratio = r.stepMs / (i < 3 ? base : base4);
    console.log(
      `| ${name} | ${r.stepMs.toFixed(1)} | ${ratio.toFixed(2)} | ${r.commMsPerStep.toFixed(2)} | ${r.bytesPerStep.toFixed(0)} | ${r.allreduceLoraMs ? r.allreduceLoraMs.toFixed(3) : '—'} | ${r.allreduceScalarsMs ? r.allreduceScalarsMs.toFixed(3) : '—'} |`,
    );
  });
}
