// Files that disagree with themselves, with each other or with the model are refused with
// an error naming the mismatch, and a refused adapter leaves the model exactly as it was:
// checkpoints (trainer vs sampler vs optimizer vs trajectory vs folder name vs latest),
// non-finite moments and adapters, adapter shapes, PEFT options zofo does not implement,
// tokenizers larger than the model or with absurd ids, and task files past their limits.
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { cp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ZofoError } from '../lib/errors.js';
import { demoModelDir } from '../lib/demo/model.js';
import { loadTask, MAX_SAMPLE_ITEMS, sampleIndices, TASK_LIMITS } from '../lib/data/tasks.js';
import { openSafetensors, writeSafetensors, type TensorData } from '../lib/formats/safetensors.js';
import { loadModel, type ClassificationExample, type Model } from '../lib/model/model.js';
import { loadTokenizer, MAX_TOKEN_ID } from '../lib/model/tokenizer.js';
import { loadCheckpoint } from '../lib/train/checkpoint.js';
import { HybridOptimizer } from '../lib/train/optimizer.js';
import { Trainer } from '../lib/train/trainer.js';
import { readTrajectory, writeTrajectory } from '../lib/train/trajectory.js';
import { freshSeed } from './helpers/reference.js';
import { seededRandom } from './helpers/tiny-checkpoints.js';

const seed0 = freshSeed() % 1_000_000;
t.comment(`input seed ${seed0}`);

const V = 196; // the demo model's vocabulary
const OPTS = { zo: { lr: 1e-3, mu: 1e-3 }, fo: { lr: 1e-2, optimizer: 'adamw' as const }, seed: 3 };

function data(n: number, seed: number): ClassificationExample[] {
  const r = seededRandom(seed);
  return Array.from({ length: n }, () => ({ prompt: Array.from({ length: 3 + r.int(4) }, () => 4 + r.int(V - 4)), candidates: [[5], [7]], label: r.int(2) }));
}

async function rejects(t: Test, p: Promise<unknown>, code: string, what: RegExp): Promise<void> {
  try {
    await p;
    t.fail(`accepted; expected ${code} ${what}`);
  } catch (err) {
    t.type(err, ZofoError, (err as Error).message);
    if (code) t.equal((err as ZofoError).code, code, (err as Error).message);
    t.match((err as Error).message, what);
  }
}

async function model(t: Test, lora = true): Promise<Model> {
  const m = await loadModel(demoModelDir());
  t.teardown(() => m.dispose());
  if (lora) m.addLoRA({ rank: 2, seed: 7 });
  return m;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the tests edit arbitrary JSON
async function editJson(file: string, edit: (j: Record<string, any>) => void): Promise<void> {
  const j = JSON.parse(await readFile(file, 'utf8'));
  edit(j);
  await writeFile(file, JSON.stringify(j, null, 2));
}

async function editTensors(file: string, edit: (tensors: Map<string, TensorData>) => void): Promise<void> {
  const st = await openSafetensors(file);
  const tensors = new Map<string, TensorData>();
  try {
    for (const [name, info] of st.tensors) tensors.set(name, { dtype: 'F32', shape: [...info.shape], data: await st.read(name) });
  } finally {
    st.close();
  }
  edit(tensors);
  await writeSafetensors(file, tensors);
}

/** Logits of a fixed input: what "the model is unchanged" is checked by. */
async function probe(m: Model): Promise<Buffer> {
  const out = await m.logits([
    [4, 9, 17, 30],
    [5, 6],
  ]);
  return Buffer.concat(out.map((x) => Buffer.from(x.buffer, x.byteOffset, x.byteLength)));
}

t.test('checkpoints whose parts disagree are refused, naming the mismatch', async (t) => {
  const top = t.testdir({});
  const run = join(top, 'run');
  const train = data(8, seed0);
  const m = await model(t);
  for await (const _ of new Trainer(m, new HybridOptimizer(m, OPTS), { batchSize: 2, steps: 4, seed: 1, checkpoint: { dir: run, every: 2, keep: 5 } }).fit(
    train,
  ))
    void _;
  const good = join(run, 'step-000004');
  t.equal((await loadCheckpoint(good)).trainer.step, 4, 'the unmodified checkpoint loads');
  let n = 0;
  const copy = async (name = 'step-000004'): Promise<string> => {
    const dir = join(top, `case-${n++}`, name);
    await cp(good, dir, { recursive: true });
    return dir;
  };
  const trainerJson = (dir: string) => join(dir, 'trainer.json');
  // Records the edited files' SHA-256 in trainer.json, as if the checkpoint had been saved
  // with them: the cross-checks must catch what the byte checksums cannot.
  const reseal = (dir: string) =>
    editJson(trainerJson(dir), (j) => {
      for (const f of Object.keys(j.sha256))
        j.sha256[f] = createHash('sha256')
          .update(readFileSync(join(dir, f)))
          .digest('hex');
    });

  let dir = await copy();
  await editJson(trainerJson(dir), (j) => (j.trainer.sampler.position = 3));
  await rejects(t, loadCheckpoint(dir), 'ZOFO_BAD_FILE', /sampler position 3 is not a multiple of the batch size 2/);

  dir = await copy();
  await editJson(trainerJson(dir), (j) => (j.trainer.step = 5));
  await rejects(t, loadCheckpoint(dir), 'ZOFO_BAD_FILE', /step 5, but the sampler \(epoch 0, position 8, 4 batches per epoch\) has drawn 4 batches/);

  dir = await copy();
  await editJson(trainerJson(dir), (j) => (j.optimizer.step = 3));
  await rejects(t, loadCheckpoint(dir), 'ZOFO_BAD_FILE', /trainer\.step is 4 with 0 skipped batches but the optimizer has taken 3 steps/);

  dir = await copy();
  await editJson(trainerJson(dir), (j) => (j.optimizer.totalSteps = 9));
  await rejects(t, loadCheckpoint(dir), 'ZOFO_BAD_FILE', /trainer\.totalSteps is 4 but the optimizer's is 9/);

  dir = await copy('step-000003');
  await rejects(t, loadCheckpoint(dir), 'ZOFO_BAD_FILE', /the directory is named for step 3 but trainer\.step is 4/);

  dir = await copy();
  await writeFile(join(dir, '..', 'latest'), JSON.stringify({ step: 2, path: 'step-000004' }));
  await rejects(t, loadCheckpoint(join(dir, '..')), 'ZOFO_BAD_FILE', /latest: names step 2, but .* is at step 4/);

  dir = await copy();
  await editJson(trainerJson(dir), (j) => (j.trainer.samplerOptions.seed = '18446744073709551616'));
  await rejects(t, loadCheckpoint(dir), 'ZOFO_BAD_FILE', /trainer\.samplerOptions\.seed is missing or malformed/);

  dir = await copy();
  await editTensors(join(dir, 'optimizer.safetensors'), (ts) => {
    const [first] = ts.values();
    (first.data as Float32Array)[1] = Infinity;
  });
  await reseal(dir);
  await rejects(t, loadCheckpoint(dir), 'ZOFO_BAD_FILE', /holds Infinity at index 1 \(optimizer moments are finite\)/);

  // The trajectory: a step short (resume would replay fewer updates than were applied), another seed.
  const resume = (from: string) => {
    const m2 = loadModel(demoModelDir()).then((mm) => {
      t.teardown(() => mm.dispose());
      mm.addLoRA({ rank: 2, seed: 7 });
      return mm;
    });
    return m2.then(async (mm) => {
      for await (const _ of new Trainer(mm, new HybridOptimizer(mm, OPTS), { batchSize: 2, steps: 6, seed: 1 }).fit(train, { resumeFrom: from })) void _;
      return mm;
    });
  };
  dir = await copy();
  const log = await readTrajectory(join(dir, 'trajectory.zlog'));
  await writeTrajectory(join(dir, 'trajectory.zlog'), { header: log.header, records: log.records.slice(0, -1) });
  await reseal(dir);
  await rejects(t, resume(dir), 'ZOFO_BAD_FILE', /optimizer state: the trajectory holds 3 update passes, but 4 steps of q = 1 make 4/);
  dir = await copy();
  await writeTrajectory(join(dir, 'trajectory.zlog'), { header: { ...log.header, seed: 4n }, records: log.records });
  await reseal(dir);
  await rejects(t, resume(dir), 'ZOFO_BAD_FILE', /the trajectory's seed 4 differs from the state's seed 3/);
  dir = await copy();
  await editJson(trainerJson(dir), (j) => (j.optimizer.foUpdates = 2));
  await rejects(t, resume(dir), 'ZOFO_BAD_FILE', /foUpdates is 2 but a 'hybrid' run of 4 steps has made 4 first-order updates/);

  // An adapter with a non-finite value: refused at load.
  dir = await copy();
  await editTensors(join(dir, 'adapter', 'adapter_model.safetensors'), (ts) => {
    const [first] = ts.values();
    (first.data as Float32Array)[0] = NaN;
  });
  await reseal(dir);
  await rejects(t, resume(dir), 'ZOFO_BAD_FILE', /holds NaN at index 0 \(an adapter must be finite\)/);
  const ok = await resume(good);
  t.equal(ok.loraNames().length > 0, true, 'the unmodified checkpoint resumes');

  // JSON nested deep enough to overflow the stack of anything that walks it (an error
  // message's JSON.stringify included) is refused before it is parsed.
  const deep = `${'['.repeat(20_000)}${']'.repeat(20_000)}`;
  dir = await copy();
  await writeFile(trainerJson(dir), (await readFile(trainerJson(dir), 'utf8')).replace(/"version": \d+/, `"version": ${deep}`));
  await rejects(t, loadCheckpoint(dir), 'ZOFO_BAD_FILE', /trainer\.json: JSON nests deeper than 64 levels/);
  dir = await copy();
  await writeFile(join(dir, '..', 'latest'), deep);
  await rejects(t, loadCheckpoint(join(dir, '..')), 'ZOFO_BAD_FILE', /latest: JSON nests deeper than 64 levels/);
  // A FIFO in place of `latest` is refused, not waited on.
  if (process.platform !== 'win32') {
    dir = await copy();
    execFileSync('mkfifo', [join(dir, '..', 'latest')]);
    await rejects(t, loadCheckpoint(join(dir, '..')), 'ZOFO_IO', /latest: is not a regular file/);
  }
});

t.test('adapters: wrong shapes, non-finite values and unimplemented PEFT options are refused; the model is left as it was', async (t) => {
  const top = t.testdir({});
  const src = await model(t);
  src.loraNames().forEach((name, i) =>
    src.setLoraTensor(
      name,
      Float32Array.from(src.loraTensor(name), (_, k) => Math.sin(k + i) * 0.1),
    ),
  );
  const good = join(top, 'good');
  await src.saveAdapter(good);
  let n = 0;
  const copy = async (): Promise<string> => {
    const dir = join(top, `bad-${n++}`);
    await cp(good, dir, { recursive: true });
    return dir;
  };

  const bad: Array<[string, string, RegExp]> = [];
  let dir = await copy();
  await editTensors(join(dir, 'adapter_model.safetensors'), (ts) => {
    const [name, a] = [...ts.entries()].find(([k]) => k.endsWith('lora_A.weight'))!;
    ts.set(name, { ...a, shape: [a.shape[1], a.shape[0]] }); // same element count, transposed shape
  });
  bad.push([dir, 'ZOFO_BAD_FILE', /has shape \[\d+, 2\]; the model needs \[2, \d+\]/]);
  dir = await copy();
  await editTensors(join(dir, 'adapter_model.safetensors'), (ts) => {
    const [, b] = [...ts.entries()].at(-1)!;
    (b.data as Float32Array)[3] = -Infinity;
  });
  bad.push([dir, 'ZOFO_BAD_FILE', /holds -Infinity at index 3/]);
  for (const [key, value] of [
    ['use_rslora', true],
    ['use_dora', true],
    ['rank_pattern', { q_proj: 4 }],
    ['alpha_pattern', { q_proj: 8 }],
    ['modules_to_save', ['lm_head']],
    ['layers_to_transform', [0]],
    ['lora_bias', true],
  ] as const) {
    dir = await copy();
    await editJson(join(dir, 'adapter_config.json'), (j) => (j[key] = value));
    bad.push([dir, 'ZOFO_UNSUPPORTED', new RegExp(`${key} .* is not supported`)]);
  }
  dir = await copy();
  await editJson(join(dir, 'adapter_config.json'), (j) => (j.bias = 'all'));
  bad.push([dir, 'ZOFO_UNSUPPORTED', /bias "all" is not supported/]);
  dir = await copy();
  await editJson(join(dir, 'adapter_config.json'), (j) => (j.lora_alpha = 1e300));
  bad.push([dir, 'ZOFO_BAD_FILE', /lora_alpha must be a finite number > 0 with lora_alpha \/ r ≤ 1024/]);
  dir = await copy();
  await editJson(join(dir, 'adapter_config.json'), (j) => (j.target_modules = ['no_such_proj']));
  bad.push([dir, 'ZOFO_BAD_FILE', /match no linear layer/]);
  dir = await copy();
  await editJson(join(dir, 'adapter_config.json'), (j) => (j.target_modules = ['q_proj']));
  bad.push([dir, '', /adapter tensors do not match|target_modules \["q_proj"\] name other modules than the adapter.s tensors are on/]);

  // Into a model without adapters, and into one that already holds a good adapter.
  const bare = await model(t, false);
  const before = await probe(bare);
  const loaded = await model(t, false);
  await loaded.loadAdapter(good);
  const loadedBefore = await probe(loaded);
  const adaptersBefore = loaded.loraNames().map((name) => Buffer.from(loaded.loraTensor(name).buffer));
  t.notOk(loadedBefore.equals(before), 'the good adapter changes the outputs (so the probe can see a change)');
  for (const [d, code, what] of bad) {
    await rejects(t, bare.loadAdapter(d), code, what);
    t.same(bare.loraNames(), [], 'the bare model still has no adapters');
    await rejects(t, loaded.loadAdapter(d), code, what);
  }
  t.ok((await probe(bare)).equals(before), 'the bare model computes exactly what it did');
  t.ok((await probe(loaded)).equals(loadedBefore), 'the adapted model computes exactly what it did');
  t.ok(
    loaded.loraNames().every((name, i) => Buffer.from(loaded.loraTensor(name).buffer).equals(adaptersBefore[i])),
    'its adapters are bit-identical',
  );

  // Options that only affect training or initialisation are accepted.
  dir = await copy();
  await editJson(join(dir, 'adapter_config.json'), (j) =>
    Object.assign(j, { lora_dropout: 0.1, init_lora_weights: 'gaussian', use_rslora: false, use_dora: false, fan_in_fan_out: true }),
  );
  const other = await model(t, false);
  await other.loadAdapter(dir);
  t.ok((await probe(other)).equals(loadedBefore), 'dropout, init and default-valued options do not stop a load');
});

t.test('tokenizers larger than the model, or with absurd ids, are refused at load', async (t) => {
  const top = t.testdir({});
  const dir = join(top, 'model');
  await cp(demoModelDir(), dir, { recursive: true });
  const addToken = (id: number) =>
    editJson(join(dir, 'tokenizer.json'), (j) => {
      j.added_tokens = [
        ...j.added_tokens.filter((a: { content: string }) => a.content !== '<extra>'),
        { id, content: '<extra>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
      ];
    });
  await addToken(V);
  await rejects(t, loadModel(dir), 'ZOFO_BAD_FILE', /token "<extra>" has id 196, outside the model's vocabulary of 196 \(config\.json vocab_size\)/);
  await addToken(1e9);
  await rejects(t, loadModel(dir), 'ZOFO_BAD_FILE', /id 1000000000, outside the model's vocabulary/);
  await rejects(t, loadTokenizer(dir), 'ZOFO_BAD_FILE', new RegExp(`id 1000000000; ids above ${MAX_TOKEN_ID} are refused`));
  await addToken(-3);
  await rejects(t, loadTokenizer(dir), 'ZOFO_BAD_FILE', /token "<extra>" has id -3, not a non-negative integer/);
});

t.test('task files past their limits are refused before they are tokenized', async (t) => {
  const dir = t.testdir({});
  const tok = await loadTokenizer(demoModelDir());
  const row = (prompt: string) => JSON.stringify({ prompt, candidates: [' good', ' bad'], label: 0 });
  // A line of 5 million characters (default limit 1 million): refused by length, not tokenized.
  const huge = join(dir, 'huge.jsonl');
  await writeFile(huge, `${row('the film was good')}\n${row('good '.repeat(1_000_000))}\n`);
  await rejects(
    t,
    loadTask('jsonl', huge, tok),
    'ZOFO_BAD_FILE',
    new RegExp(`huge\\.jsonl:2: the line has 5000\\d{3} characters, over the limit of ${TASK_LIMITS.maxLineChars} \\(maxLineChars\\)`),
  );
  const skipped = await loadTask('jsonl', huge, tok, { skipBad: true });
  t.same(skipped.skipped, [2], 'with skipBad the long line is skipped');
  const small = join(dir, 'small.jsonl');
  await writeFile(small, `${row('the film was good')}\n${row('good '.repeat(50))}\n`);
  await rejects(
    t,
    loadTask('jsonl', small, tok, { maxTokens: 20 }),
    'ZOFO_BAD_FILE',
    /small\.jsonl:2: the example has \d+ tokens \(prompt \d+ \+ continuation \d+\), over the limit of 20 \(maxTokens\)/,
  );
  await rejects(
    t,
    loadTask('jsonl', small, tok, { maxFileBytes: 100 }),
    'ZOFO_BAD_FILE',
    /small\.jsonl: the file is \d+ bytes, over the limit of 100 \(maxFileBytes\)/,
  );
  await rejects(t, loadTask('jsonl', small, tok, { maxLineChars: 0 }), 'ZOFO_INVALID_ARG', /opts\.maxLineChars/);
  t.equal((await loadTask('jsonl', small, tok)).examples.length, 2, 'within the limits the file loads');
  for (const n of [2 ** 40, MAX_SAMPLE_ITEMS + 1]) {
    t.throws(() => sampleIndices(n, 1, 0), { code: 'ZOFO_INVALID_ARG', message: /for n but received/ }, `sampleIndices(${n}) is refused before it allocates`);
  }
  // numpy.random.RandomState(0).permutation(10)[:4] is [2, 8, 4, 9].
  t.same(sampleIndices(10, 4, 0), [2, 8, 4, 9], 'the sampled indices are unchanged');
});
