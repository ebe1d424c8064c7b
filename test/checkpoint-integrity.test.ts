// Trainer checkpoints record the SHA-256 of every file they hold in trainer.json and
// refuse, naming the file, any file whose bytes changed: a flipped byte in an adapter
// tensor, the optimizer moments, the trajectory log or the saved base. Version 1
// checkpoints (no checksums) still load.
import t from 'tap';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { loadModel, type Model } from '../lib/model/model.js';
import { loadCheckpoint, saveCheckpoint, type TrainerCheckpointState } from '../lib/train/checkpoint.js';
import { TRAJECTORY_VERSION } from '../lib/train/trajectory.js';
import type { OptimizerState, TrainableOptimizer } from '../lib/train/types.js';
import { freshSeed } from './helpers/reference.js';
import { randomCheckpoint, writeCheckpointDir } from './helpers/tiny-checkpoints.js';

const seed = freshSeed() % 1_000_000;
t.comment(`input seed ${seed}`);

/** An optimizer that has taken 2 steps: a moment tensor and a 2-record trajectory. */
function twoStepOptimizer(): TrainableOptimizer {
  const state: OptimizerState = {
    json: { stepCount: 2, totalSteps: 6 },
    tensors: new Map([['moment', Float32Array.from([0.25, -1.5, 3])]]),
    trajectory: {
      header: {
        version: TRAJECTORY_VERSION,
        base: { hash: 'feedface', dtype: 'f32', parameters: 4 },
        table: [{ name: 'w', count: 4, trainable: true, decay: 0 }],
        estimator: 'forward',
        mu: 1e-3,
        perturbations: 1,
        seed: 5n,
      },
      records: [0, 1].map((step) => ({
        step,
        j: 0,
        q: 1,
        seed: BigInt(step) + 11n,
        projectedGrad: 0.5 - step,
        lr: 1e-3,
        weightDecay: 0,
        scale: Math.fround(-5e-4 * (0.5 - step)),
        etaLambda: 0,
      })),
    },
  };
  return { state: () => state } as unknown as TrainableOptimizer;
}

const trainerState: TrainerCheckpointState = {
  step: 2,
  skipped: 0,
  sampler: { epoch: 0, position: 4 },
  samplerOptions: { batchSize: 2, seed: '1', dropLast: false, withReplacement: false },
  train: { n: 8, sha256: 'ab' },
  totalSteps: 6,
  elapsedMs: 10,
  evals: [],
  best: null,
  sinceImprovement: 0,
  history: [],
};

const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

t.test('every file of a checkpoint is covered by a SHA-256 in trainer.json; a changed byte is refused naming the file', async (t) => {
  const root = t.testdir({});
  await writeCheckpointDir(join(root, 'base'), randomCheckpoint('llama', seed), { dtype: 'F32' });
  const model: Model = await loadModel(join(root, 'base'));
  t.teardown(() => model.dispose());
  model.addLoRA({ rank: 2, alpha: 4, seed: 3 });
  const runDir = join(root, 'run');
  const { dir } = await saveCheckpoint(runDir, { model, optimizer: twoStepOptimizer(), state: trainerState, saveBase: true });
  t.equal((await loadCheckpoint(runDir)).trainer.step, 2, 'the saved checkpoint loads');

  const trainerFile = join(dir, 'trainer.json');
  const saved = readFileSync(trainerFile, 'utf8');
  const json = JSON.parse(saved);
  t.equal(json.version, 2, 'checkpoint format version 2');
  const listed = Object.keys(json.sha256).sort();
  for (const f of [
    'optimizer.safetensors',
    'trajectory.zlog',
    'adapter/adapter_config.json',
    'adapter/adapter_model.safetensors',
    'base/model.safetensors',
    'base/config.json',
  ]) {
    t.ok(listed.includes(f), `the manifest lists ${f}`);
  }
  t.notOk(listed.includes('trainer.json'), 'trainer.json does not list itself');
  for (const f of listed) {
    t.equal(
      json.sha256[f],
      createHash('sha256')
        .update(readFileSync(join(dir, f)))
        .digest('hex'),
      `${f}: the SHA-256 of its bytes`,
    );
  }

  // One flipped byte in any listed file, at its end (tensor data for safetensors) and at its start.
  for (const f of listed) {
    const path = join(dir, f);
    const good = readFileSync(path);
    for (const at of [good.length - 1, 0]) {
      const bad = Buffer.from(good);
      bad[at] ^= 0x01;
      writeFileSync(path, bad);
      await t.rejects(
        loadCheckpoint(runDir),
        {
          code: 'ZOFO_BAD_FILE',
          message: new RegExp(`^${escape(path)}: SHA-256 [0-9a-f]{64} differs from the ${json.sha256[f]} recorded in ${escape(trainerFile)}`),
        },
        `${f}: byte ${at} flipped`,
      );
    }
    writeFileSync(path, good);
  }
  t.equal((await loadCheckpoint(runDir)).trainer.step, 2, 'loads again once the bytes are restored');

  // A damaged manifest.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the test edits arbitrary JSON
  const withJson = async (edit: (j: Record<string, any>) => void, problem: RegExp, what: string) => {
    const j = JSON.parse(saved);
    edit(j);
    writeFileSync(trainerFile, JSON.stringify(j, null, 2));
    await t.rejects(loadCheckpoint(runDir), { code: 'ZOFO_BAD_FILE', message: problem }, what);
  };
  await withJson((j) => delete j.sha256, /trainer\.json: sha256 \(the checksum of each file of the checkpoint\) is missing/, 'version 2 without a manifest');
  await withJson(
    (j) => delete j.sha256['adapter/adapter_model.safetensors'],
    /trainer\.json: sha256 has no checksum for adapter\/adapter_model\.safetensors/,
    'a file resume reads is not listed',
  );
  await withJson(
    (j) => (j.sha256['../elsewhere'] = j.sha256['trajectory.zlog']),
    /sha256 names "\.\.\/elsewhere", not a file of the checkpoint/,
    'a path outside the checkpoint',
  );
  await withJson((j) => (j.sha256['trajectory.zlog'] = 'ABC'), /sha256\["trajectory\.zlog"\] must be 64 lowercase hex digits/, 'a malformed checksum');
  await withJson(
    (j) => (j.sha256['extra.bin'] = '0'.repeat(64)),
    /extra\.bin: missing \(trainer\.json records its checksum\)/,
    'a listed file that is not there',
  );
  await withJson(
    (j) => {
      j.version = 1;
      j.sha256['optimizer.safetensors'] = '0'.repeat(64);
    },
    /optimizer\.safetensors: SHA-256 [0-9a-f]{64} differs/,
    'a manifest in a version 1 file is checked too',
  );
  writeFileSync(trainerFile, saved);
  await rm(join(dir, 'adapter', 'adapter_model.safetensors'));
  await t.rejects(loadCheckpoint(runDir), { code: 'ZOFO_BAD_FILE', message: /adapter_model\.safetensors: missing/ }, 'a deleted adapter file');
});

t.test('version 1 checkpoints (no manifest) still load', async (t) => {
  const root = t.testdir({});
  await writeCheckpointDir(join(root, 'base'), randomCheckpoint('llama', seed ^ 1), { dtype: 'F32' });
  const model: Model = await loadModel(join(root, 'base'));
  t.teardown(() => model.dispose());
  model.addLoRA({ rank: 2, alpha: 4, seed: 4 });
  const runDir = join(root, 'run');
  const { dir } = await saveCheckpoint(runDir, { model, optimizer: twoStepOptimizer(), state: trainerState });
  // trainer.json as version 1 wrote it, by hand: the same fields, no sha256.
  const v1 = {
    format: 'zofo-trainer-checkpoint',
    version: 1,
    trainer: { ...trainerState, history: ['step-000002'] },
    optimizer: { stepCount: 2, totalSteps: 6 },
    files: { tensors: ['moment'], trajectory: true, adapter: true, base: false },
  };
  writeFileSync(join(dir, 'trainer.json'), `${JSON.stringify(v1, null, 2)}\n`);
  const ck = await loadCheckpoint(runDir);
  t.equal(ck.trainer.step, 2);
  t.strictSame([...ck.optimizer.tensors.get('moment')!], [0.25, -1.5, 3], 'the optimizer moments');
  t.equal(ck.optimizer.trajectory?.records.length, 2, 'the trajectory');
  t.equal(ck.adapterDir, join(dir, 'adapter'));
});
