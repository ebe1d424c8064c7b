// The model pitfalls of docs/architecture.md, one named test each, on the ENGINE (the float64 reference
// has its own in reference-model.test.ts; here the engine must reproduce them).
import t from 'tap';
import { join } from 'node:path';
import { loadModel } from '../lib/model/model.js';
import { freshSeed } from './helpers/reference.js';
import { ReferenceModel } from './helpers/reference-model.js';
import { randomCheckpoint, storedCheckpoint, writeCheckpointDir, type Checkpoint64 } from './helpers/tiny-checkpoints.js';

const seed0 = freshSeed();
t.comment(`input seed ${seed0}`);
const ids = [[3, 1, 4, 1, 5, 9, 2, 6]];

async function engineLogits(t: Tap, ckpt: Checkpoint64, name: string): Promise<Float32Array> {
  const dir = join(t.testdir({ [name]: {} }), name);
  await writeCheckpointDir(dir, ckpt, { dtype: 'F32' });
  const model = await loadModel(dir);
  const [logits] = await model.logits(ids);
  model.dispose();
  return logits;
}
type Tap = Parameters<Parameters<typeof t.test>[1]>[0];

const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

t.test('Llama: RoPE rotates halves with the configured rope_theta', async (t) => {
  const ckpt = randomCheckpoint('llama', seed0);
  ckpt.config.rope_theta = 500000;
  const got = await engineLogits(t, ckpt, 'theta');
  const want = new ReferenceModel(ckpt.config, storedCheckpoint(ckpt, 'F32').weights).forward(ids)[0];
  t.ok(maxDiff(got, want) < 1e-4, 'matches HF rotate_half with rope_theta 500000');
  ckpt.config.rope_theta = 10000;
  const other = await engineLogits(t, ckpt, 'theta-default');
  t.ok(maxDiff(got, other) > 1e-4, 'and rope_theta is really read from config.json');
});

t.test('Llama: GQA maps query head h to kv head floor(h / n_rep)', async (t) => {
  const ckpt = randomCheckpoint('llama', seed0 + 1, { kvHeads: 2 });
  const got = await engineLogits(t, ckpt, 'gqa');
  const want = new ReferenceModel(ckpt.config, storedCheckpoint(ckpt, 'F32').weights).forward(ids)[0];
  t.ok(maxDiff(got, want) < 1e-4, 'matches the reference (which repeats kv heads as HF repeat_kv does)');
});

t.test('OPT: positions start at row 2 of embed_positions; rows 0 and 1 are unused by real tokens', async (t) => {
  const ckpt = randomCheckpoint('opt', seed0 + 2);
  const base = await engineLogits(t, ckpt, 'opt-base');
  const table = ckpt.weights.get('model.decoder.embed_positions.weight')!;
  const C = table.shape[1];
  for (const [row, changes] of [
    [0, false],
    [1, false],
    [2, true],
  ] as const) {
    const keep = table.data.slice(row * C, (row + 1) * C);
    for (let c = 0; c < C; c++) table.data[row * C + c] += (c % 3) - 1; // not a constant shift: LayerNorm would remove that
    const moved = await engineLogits(t, ckpt, `opt-row${row}`);
    table.data.set(keep, row * C);
    t.equal(maxDiff(moved, base) > 1e-5, changes, `changing row ${row} ${changes ? 'changes' : 'does not change'} the logits`);
  }
});

t.test('OPT-350m: post-LN blocks, project_in/out, no final layer norm', async (t) => {
  const ckpt = randomCheckpoint('opt-350m', seed0 + 3);
  const got = await engineLogits(t, ckpt, 'opt350');
  const want = new ReferenceModel(ckpt.config, storedCheckpoint(ckpt, 'F32').weights).forward(ids)[0];
  t.ok(maxDiff(got, want) < 1e-4, 'matches the reference');
});

t.test('GPT-2: Conv1D weights are [in, out]; attn.bias buffers and a missing transformer. prefix are fine', async (t) => {
  const ckpt = randomCheckpoint('gpt2', seed0 + 4, { prefix: false, buffers: true });
  const got = await engineLogits(t, ckpt, 'gpt2');
  const want = new ReferenceModel(ckpt.config, storedCheckpoint(ckpt, 'F32').weights).forward(ids)[0];
  t.ok(maxDiff(got, want) < 1e-4, 'matches the reference');
  // A transposed c_proj (the nn.Linear convention) must give a different model.
  const name = [...ckpt.weights.keys()].find((k) => k.endsWith('h.0.attn.c_proj.weight'))!;
  const w = ckpt.weights.get(name)!;
  const [n] = w.shape;
  const tr = new Float64Array(w.data.length);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) tr[j * n + i] = w.data[i * n + j];
  ckpt.weights.set(name, { shape: w.shape, data: tr });
  const transposed = await engineLogits(t, ckpt, 'gpt2-T');
  t.ok(maxDiff(transposed, got) > 1e-4, 'reading the weight as [out, in] would change the output');
});

t.test('tied embeddings: the head is the embedding; an untied lm_head is used when present', async (t) => {
  const tied = randomCheckpoint('llama', seed0 + 5, { tie: true });
  const gotTied = await engineLogits(t, tied, 'tied');
  const want = new ReferenceModel(tied.config, storedCheckpoint(tied, 'F32').weights).forward(ids)[0];
  t.ok(maxDiff(gotTied, want) < 1e-4, 'tied head matches');
  const untied = randomCheckpoint('llama', seed0 + 5, { tie: false });
  const gotUntied = await engineLogits(t, untied, 'untied');
  t.ok(maxDiff(gotUntied, new ReferenceModel(untied.config, storedCheckpoint(untied, 'F32').weights).forward(ids)[0]) < 1e-4, 'untied head matches');
});

t.test('unsupported rope_scaling is rejected by name, not silently ignored', async (t) => {
  const ckpt = randomCheckpoint('llama', seed0 + 6);
  ckpt.config.rope_scaling = { rope_type: 'yarn', factor: 4 };
  const dir = join(t.testdir({}), 'yarn');
  await writeCheckpointDir(dir, ckpt, { dtype: 'F32' });
  await t.rejects(loadModel(dir), { code: 'ZOFO_UNSUPPORTED', message: /rope_scaling.*yarn/ });
});
