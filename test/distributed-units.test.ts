// The pieces of lib/distributed that need no second process: the slice rule, launcher
// detection, the loader's error, option validation, and a one-rank communicator in this
// process (MPI singleton): collectives, the replica check, and a one-rank data-parallel
// optimizer against the plain one.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { detectLaunch } from '../lib/distributed/environment.js';
import { sliceOf } from '../lib/distributed/slice.js';
import { loadModel } from '../lib/model/model.js';
import { HybridOptimizer } from '../lib/train/optimizer.js';
import { Trainer } from '../lib/train/trainer.js';
import { freshSeed } from './helpers/reference.js';
import { syntheticTask } from './helpers/synthetic-task.js';
import { randomCheckpoint, writeCheckpointDir } from './helpers/tiny-checkpoints.js';

const root = join(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '..');
const haveComm = existsSync(join(root, 'build', 'Release', 'zofo_comm.node'));
const haveMpirun = spawnSync('mpirun', ['--version'], { stdio: 'ignore' }).status === 0;
const seed = freshSeed() % 1_000_000;
t.comment(`input seed ${seed}`);

t.test('slice rule: contiguous blocks that cover the global batch exactly once', async (t) => {
  for (let B = 1; B <= 40; B++) {
    for (let P = 1; P <= 9; P++) {
      const owner = new Array<number>(B).fill(-1);
      let prevEnd = 0;
      for (let r = 0; r < P; r++) {
        const [from, to] = sliceOf(B, r, P);
        if (from !== prevEnd || to < from) t.fail(`B=${B} P=${P} rank ${r}: [${from}, ${to}) does not follow ${prevEnd}`);
        if (to - from > Math.ceil(B / P) || to - from < Math.floor(B / P)) t.fail(`B=${B} P=${P} rank ${r}: ${to - from} rows is unbalanced`);
        for (let i = from; i < to; i++) owner[i] = r;
        prevEnd = to;
      }
      if (prevEnd !== B || owner.includes(-1)) t.fail(`B=${B} P=${P}: the slices do not cover the batch`);
    }
  }
  t.same(sliceOf(16, 0, 2), [0, 8]);
  t.same(sliceOf(16, 1, 2), [8, 16]);
  t.same(sliceOf(5, 2, 3), [3, 5]);
});

t.test('launcher detection reads Open MPI, PMIx and PMI variables', async (t) => {
  t.same(detectLaunch({ OMPI_COMM_WORLD_SIZE: '4', OMPI_COMM_WORLD_RANK: '2' }), { rank: 2, size: 4, source: 'OMPI_COMM_WORLD_SIZE' });
  t.same(detectLaunch({ PMIX_SIZE: '2', PMIX_RANK: '1' }), { rank: 1, size: 2, source: 'PMIX_SIZE' });
  t.same(detectLaunch({ PMI_SIZE: '8', PMI_RANK: '7' }), { rank: 7, size: 8, source: 'PMI_SIZE' });
  t.equal(detectLaunch({}), null, 'no launcher');
  t.equal(detectLaunch({ OMPI_COMM_WORLD_SIZE: '2', OMPI_COMM_WORLD_RANK: '2' }), null, 'a rank outside the world is not a launch');
  t.equal(detectLaunch({ PMI_SIZE: 'x' }), null, 'garbage is not a launch');
});

t.test('a missing communicator addon is one error naming the packages to install', async (t) => {
  const script = "import('./lib/distributed/binding.ts').then((m) => { try { m.commBinding(); } catch (e) { console.log(e.code + ' ' + e.message); } })";
  const r = spawnSync(process.execPath, [...process.execArgv, '--input-type=module', '-e', script], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, ZOFO_BINDING_ONLY: '1', ZOFO_BINDING_DIR: t.testdir({}) },
  });
  t.match(r.stdout, /ZOFO_LOAD_FAILED/, 'code ZOFO_LOAD_FAILED');
  t.match(r.stdout, /zofo_comm\.node: not found/, 'names the file tried');
  t.match(r.stdout, /apt-get install openmpi-bin libopenmpi-dev/, 'names the packages');
});

t.test('options: parallel and distributed are validated', async (t) => {
  const dir = t.testdir({});
  await writeCheckpointDir(join(dir, 'm'), randomCheckpoint('llama', seed), { dtype: 'F32' });
  const model = await loadModel(join(dir, 'm'));
  t.teardown(() => model.dispose());
  model.addLoRA({ rank: 2, alpha: 4 });
  const bad = (parallel: unknown) => () => new HybridOptimizer(model, { zo: { lr: 1e-3 }, fo: { lr: 1e-2 }, parallel: parallel as never });
  t.throws(bad({ kind: 'pipeline', comm: {} }), { code: 'ZOFO_INVALID_ARG', message: /parallel\.kind/ });
  t.throws(bad({ kind: 'data', comm: {} }), { code: 'ZOFO_INVALID_ARG', message: /parallel\.comm/ });
  const opt = new HybridOptimizer(model, { zo: { lr: 1e-3 }, fo: { lr: 1e-2 } });
  t.equal(opt.parallel, null, 'one process: no parallel info');
  t.throws(() => new Trainer(model, opt, { batchSize: 4, steps: 1, distributed: true }), {
    code: 'ZOFO_INVALID_ARG',
    message: /distributed needs an optimizer created with parallel/,
  });
});

t.test('a one-rank communicator in this process', { skip: !haveMpirun && 'mpirun not found (apt-get install openmpi-bin libopenmpi-dev)' }, async (t) => {
  t.ok(haveComm, 'zofo_comm.node is built (needs libopenmpi-dev at build time, then a rebuild)');
  if (!haveComm) return;
  process.env.OMPI_ALLOW_RUN_AS_ROOT = '1';
  process.env.OMPI_ALLOW_RUN_AS_ROOT_CONFIRM = '1';
  const { init } = await import('../lib/distributed/communicator.js');
  const comm = await init();
  t.equal(comm.size, 1);
  t.equal(comm.rank, 0);
  t.ok(comm.threadLevel === 'multiple' || comm.threadLevel === 'serialized', `thread level ${comm.threadLevel}`);
  t.equal(await init(), comm, 'init() is once per process');

  const f64 = new Float64Array([1.5, -2]);
  await comm.allreduce(f64);
  t.same(Array.from(f64), [1.5, -2], 'a one-rank sum leaves fp64 values as they are');
  const f32 = new Float32Array([3, 4]);
  await comm.allreduce(f32);
  t.same(Array.from(f32), [3, 4], 'fp32 too');
  await comm.broadcast(new Uint8Array([7]), 0);
  await comm.barrier();
  await t.rejects(comm.allreduce(new Int32Array(2) as never), { code: 'ZOFO_INVALID_ARG' });
  await t.rejects(comm.broadcast(new Uint8Array(1), 1), { code: 'ZOFO_INVALID_ARG', message: /root/ });
  t.throws(() => comm.enableDevice(0), { code: comm.nccl ? 'ZOFO_COMM' : 'ZOFO_UNSUPPORTED' }, 'no NCCL device here');

  const dir = t.testdir({});
  await writeCheckpointDir(join(dir, 'm'), randomCheckpoint('llama', seed), { dtype: 'F32' });
  const probe = await loadModel(join(dir, 'm'));
  // Batches of 4: a one-rank data-parallel step scales its gradient by the slice weight
  // and divides the sum by the total (w·g/w in fp32). With w a power of two both are
  // exact, so the data-parallel run must equal the plain one bit for bit; with w = 3
  // the rounding of g·3/3 moved the adapters by an ulp and, after 4 steps, the losses
  // by up to 2.3e-6 relative (above a 1e-6 tolerance for 5 of 278 random checkpoints).
  const BATCH = 4;
  const { train } = syntheticTask(probe.config.vocabSize, 4 * BATCH, 2, seed);
  probe.dispose();
  const runs: Array<{ losses: number[]; grads: number[][]; hash: string }> = [];
  for (const kind of [null, 'data', 'perturbation'] as const) {
    const model = await loadModel(join(dir, 'm'));
    model.addLoRA({ rank: 2, alpha: 4, seed: 5 });
    const opt = new HybridOptimizer(model, {
      zo: { lr: 1e-3, mu: 1e-2, perturbations: 2 },
      fo: { lr: 1e-2 },
      seed: 11,
      ...(kind ? { parallel: { kind, comm, checkEvery: 2 } } : {}),
    });
    if (kind) t.same(opt.parallel, { kind, rank: 0, size: 1 });
    const losses: number[] = [],
      grads: number[][] = [];
    for (let k = 0; k < 4; k++) {
      const r = await opt.step(train.slice(BATCH * k, BATCH * (k + 1)));
      losses.push(r.loss);
      grads.push(r.projectedGrads);
      if (kind === 'data') t.equal(r.predictions, undefined, 'data-parallel steps report no predictions');
    }
    await opt.checkReplicas();
    runs.push({ losses, grads, hash: await model.baseHash() });
    opt.dispose();
    model.dispose();
  }
  const [alone, data, pert] = runs;
  t.same(pert, alone, 'one-rank perturbation-parallel == one process, bit for bit');
  t.same(data, alone, 'one-rank data-parallel == one process, bit for bit (slice weight 4: w·g/w is exact)');
});
