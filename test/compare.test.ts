// compare(): hybrid vs ZO-only vs LoRA-only vs full fine-tuning under one budget, end to
// end on a tiny random Llama with a word-level tokenizer and a small SST-2 TSV: one run
// with a child process per mode (peak RSS), one in-process with a time budget and a tiny
// memory budget (full fine-tuning skipped), the steps-to-target helpers on synthetic rows.
import t from 'tap';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  compare,
  compareTable,
  COMPARE_PRESETS,
  countParameters,
  defaultTarget,
  fullFineTuningBytes,
  fullFineTuningSkip,
  reachTarget,
  type CompareRow,
  type ModeResult,
} from '../lib/cli/compare.js';
import { loadModel, type LoraOptions } from '../lib/model/model.js';
import { freshSeed } from './helpers/reference.js';
import { sst2Fixture } from './helpers/sst2-fixture.js';

const seed = freshSeed() % 1_000_000;
t.comment(`input seed ${seed}`);

const fixture = (root: string) => sst2Fixture(root, seed);

async function adapterParameters(dir: string, lora: LoraOptions): Promise<number> {
  const m = await loadModel(dir);
  try {
    m.addLoRA(lora);
    return m.loraNames().reduce((a, n) => a + m.loraTensor(n).length, 0);
  } finally {
    m.dispose();
  }
}

const row = (step: number, seconds: number, devAccuracy: number | null, loss: number | null = 0.5): CompareRow => ({
  step,
  seconds,
  loss,
  lrX: null,
  lrY: null,
  devLoss: devAccuracy === null ? null : 1 - devAccuracy,
  devAccuracy,
});

t.test('steps / seconds to target on synthetic rows', async (t) => {
  const rows = [row(0, 0, 0.5, null), row(1, 0.1, null), row(2, 0.2, 0.7), row(3, 0.3, null), row(4, 0.4, 0.9), row(5, 0.5, 0.8), row(6, 0.6, 0.95)];
  t.same(reachTarget(rows, 0.7), { step: 2, seconds: 0.2 }, 'the first eval at or above the target (≥, not >)');
  t.same(reachTarget(rows, 0.85), { step: 4, seconds: 0.4 }, 'first crossing, not the best point; later dips do not matter');
  t.same(reachTarget(rows, 0.5), { step: 0, seconds: 0 }, 'already there before training: step 0');
  t.equal(reachTarget(rows, 0.96), null, 'never reached: null');
  t.equal(reachTarget(rows, null), null, 'no target (a task without accuracy): null');
  t.equal(reachTarget([], 0.1), null);
  t.equal(reachTarget([row(0, 0, null), row(1, 1, null)], 0), null, 'rows without evals never reach anything');

  t.equal(defaultTarget([rows, [row(0, 0, 0.5), row(10, 1, 0.6)]]), 0.95 * 0.95, '0.95 × the best accuracy of any mode');
  t.equal(defaultTarget([[row(0, 0, 0.8)]], 0.5), 0.4);
  t.equal(defaultTarget([[row(0, 0, null)]]), null, 'no accuracy anywhere: no target');
  t.equal(defaultTarget([]), null);

  t.equal(fullFineTuningBytes(1000), 16000, 'weights + grads + 2 moments, 4 bytes each');
  t.equal(fullFineTuningSkip(1000, 16000), null, 'fits exactly');
  t.match(fullFineTuningSkip(1000, 15999), /16000 parameters|1000 parameters × 4 bytes × 4.*over the memory budget/);
  t.equal(fullFineTuningSkip(134_217_728, 2 ** 31), null, '128 M parameters fit 2 GiB');
  t.match(fullFineTuningSkip(134_217_729, 2 ** 31), /2048\.0 MiB.*2048\.0 MiB/, 'one more does not');

  const base: Omit<ModeResult, 'mode'> = {
    seed: 0,
    optimizer: { fo: { lr: 0.1 }, seed: 1 },
    lora: null,
    rows: [],
    reason: 'completed',
    steps: 10,
    seconds: 1.5,
    wallSeconds: 2,
    secondsPerStep: 0.15,
    initialAccuracy: 0.5,
    finalAccuracy: 0.75,
    bestAccuracy: 0.8,
    finalDevLoss: 0.4,
    stepsToTarget: 6,
    secondsToTarget: 0.9,
    peakRssMiB: 123.4,
    loadedRssMiB: 100,
    rssReset: true,
    parameters: { base: 10, trainable: 10 },
  };
  const table = compareTable([
    { mode: 'hybrid', ...base },
    { mode: 'zo', ...base, stepsToTarget: null, secondsToTarget: null, peakRssMiB: null },
    { mode: 'full', ...base, skipped: 'too big' },
  ]);
  const lines = table.split('\n');
  t.equal(lines[0], '| mode | final acc | best acc | steps to target | seconds to target | s/step | peak RSS MiB |');
  t.equal(lines[2], '| hybrid | 75.0% | 80.0% | 6 | 0.90 | 0.1500 | 123 |');
  t.equal(lines[3], '| zo | 75.0% | 80.0% | not reached | not reached | 0.1500 | – |');
  t.match(lines[4], /^\| full \| skipped: too big \|/);
  t.equal(COMPARE_PRESETS.full.fo?.params, 'all', 'the full-FT preset trains every base weight');
});

// One set of options for the in-process run of all four modes and the isolated run of two.
const common = (f: { model: string; train: string; dev: string }) => ({
  model: f.model,
  task: { name: 'sst2' as const, train: f.train, dev: f.dev },
  steps: 4,
  batchSize: 4,
  evalEvery: 2,
  seed: 3,
  optimizers: { zo: { zo: { lr: 1e-3 } }, hybrid: { zo: { lr: 1e-3 } }, full: { fo: { lr: 1e-3 } } },
  lora: { rank: 2, alpha: 4 },
  progress: false,
});
let inProcess: ModeResult[] = [];

t.test('all four modes in process: files, rows, steps to target', async (t) => {
  const root = t.testdir({});
  const f = await fixture(root);
  const out = join(root, 'out');
  const lines: string[] = [];
  const r = await compare({ ...common(f), out, isolate: false, log: (l) => lines.push(l) });
  inProcess = r.results;
  t.same(
    r.results.map((m) => m.mode),
    ['hybrid', 'zo', 'lora', 'full'],
    'every mode, in order',
  );
  const params = await countParameters(f.model);
  for (const m of r.results) {
    t.notOk(m.skipped, `${m.mode} ran`);
    t.equal(m.reason, 'completed');
    t.same(
      m.rows.map((x) => x.step),
      [0, 1, 2, 3, 4],
      `${m.mode}: a row per step after the step-0 eval`,
    );
    t.same(
      m.rows.filter((x) => x.devAccuracy !== null).map((x) => x.step),
      [0, 2, 4],
      `${m.mode}: evaluated every 2 steps`,
    );
    t.ok(
      m.rows.slice(1).every((x) => Number.isFinite(x.loss)),
      `${m.mode}: training losses`,
    );
    t.ok(
      m.rows.every((x, i) => i === 0 || x.seconds >= m.rows[i - 1].seconds),
      `${m.mode}: seconds never decrease`,
    );
    t.equal(m.steps, 4);
    t.ok(m.secondsPerStep! > 0 && Math.abs(m.secondsPerStep! * 4 - m.seconds) < 1e-9, `${m.mode}: s/step = seconds / steps`);
    t.equal(m.initialAccuracy, r.results[0].initialAccuracy, `${m.mode}: the same model and dev set before training`);
    t.equal(m.peakRssMiB, null, `${m.mode}: no peak RSS without isolation`);
    t.equal(m.parameters.base, params);
    const hit = reachTarget(m.rows, r.target);
    t.same([m.stepsToTarget, m.secondsToTarget], [hit?.step ?? null, hit?.seconds ?? null], `${m.mode}: steps to target from its rows`);
  }
  const adapters = await adapterParameters(f.model, { rank: 2, alpha: 4 });
  t.same(
    r.results.map((m) => m.parameters.trainable),
    [params + adapters, params, adapters, params],
    'trainable: base + adapters, base, adapters, base',
  );
  const best = Math.max(...r.results.map((m) => m.bestAccuracy!));
  t.equal(r.target, best * 0.95, 'the default target: 0.95 × the best accuracy reached');
  t.ok(
    r.results.some((m) => m.stepsToTarget !== null),
    'some mode reaches it',
  );

  for (const file of Object.values(r.files)) t.ok(existsSync(file), `wrote ${file}`);
  t.same(
    Object.values(r.files).map((p) => p.slice(out.length + 1)),
    ['compare.svg', 'compare.csv', 'compare.jsonl', 'compare.md'],
  );
  const svg = await readFile(r.files.svg, 'utf8');
  for (const name of ['hybrid', 'zo', 'lora', 'full', 'dev accuracy vs step', 'dev accuracy vs training time', 'training loss'])
    t.match(svg, `>${name}<`, `the chart shows ${name}`);
  const csv = (await readFile(r.files.csv, 'utf8')).trim().split(/\r?\n/);
  t.equal(csv[0], 'mode,seed,step,seconds,loss,lrX,lrY,devLoss,devAccuracy');
  t.equal(csv.length, 1 + 4 * 5, 'a CSV row per mode and row');
  const jsonl = (await readFile(r.files.jsonl, 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  t.same(
    jsonl.filter((x) => x.mode === 'full').map((x) => x.step),
    [0, 1, 2, 3, 4],
  );
  const md = await readFile(r.files.md, 'utf8');
  t.ok(md.includes(r.table), 'compare.md holds the table');
  t.match(md, /\| zo \| 3 \| 4 \| 0\.001 \| 0\.001 \| forward \| 1 \| 0 \| – \|/, 'and the rates each mode ran with');
  t.match(md, /\| full \| 3 \| 4 \| – \| – \| – \| – \| – \| 0\.001 \| adamw \| all \| 0 \| – \|/);
  t.ok(
    jsonl.filter((x) => x.mode === 'zo' && x.step > 0).every((x) => Math.abs(x.lrX - 1e-3) < 1e-9 && x.lrY === null),
    'each step records its learning rates',
  );
  t.equal(lines.filter((l) => l === r.table).length, 1, 'the table is printed once');
  t.equal(r.table.split('\n').length, 2 + 4);
  t.ok(lines.includes(r.table), 'the table is logged');
  t.match(lines[0], /4 steps per mode, batch 4; eval every 2 steps; in this process/);
});

t.test('isolated: one child process per mode, the same curves, peak RSS', async (t) => {
  const root = t.testdir({});
  const f = await fixture(root);
  const lines: string[] = [];
  const r = await compare({ ...common(f), modes: ['hybrid', 'full'], out: join(root, 'out'), isolate: true, log: (l) => lines.push(l) });
  t.match(lines[0], /one child process per mode/);
  t.same(
    r.results.map((m) => m.mode),
    ['hybrid', 'full'],
  );
  for (const m of r.results) {
    const same = inProcess.find((x) => x.mode === m.mode)!;
    t.same(
      m.rows.map(({ step, loss, devLoss, devAccuracy }) => ({ step, loss, devLoss, devAccuracy })),
      same.rows.map(({ step, loss, devLoss, devAccuracy }) => ({ step, loss, devLoss, devAccuracy })),
      `${m.mode}: the child trains exactly as in process`,
    );
    t.same(m.parameters, same.parameters);
    t.equal(m.rssReset, process.platform === 'linux', 'the peak mark is reset after loading (Linux)');
    t.ok(
      m.loadedRssMiB! > 10 && m.peakRssMiB! >= m.loadedRssMiB! - 1,
      `${m.mode}: peak RSS ${m.peakRssMiB?.toFixed(1)} MiB measured in the child (${m.loadedRssMiB?.toFixed(1)} MiB once loaded)`,
    );
  }
  t.match(r.table, /\| hybrid \| [\d.]+% \| [\d.]+% \| .* \| [\d.]+ \|$/m, 'the table shows the peak RSS');
});

t.test('in process: a time budget, and full fine-tuning skipped over a tiny memory budget', async (t) => {
  const root = t.testdir({});
  const f = await fixture(root);
  const lines: string[] = [];
  const r = await compare({
    model: f.model,
    task: { name: 'sst2', train: f.train, dev: f.dev },
    seconds: 0.3,
    batchSize: 4,
    modes: ['lora', 'full'],
    memoryBudget: 1024,
    target: 0.5,
    out: join(root, 'out'),
    isolate: false,
    progress: false,
    log: (l) => lines.push(l),
  });
  const [lora, full] = r.results;
  t.equal(full.mode, 'full');
  t.match(full.skipped, /full fine-tuning needs .* × 4 bytes × 4.*over the memory budget of 0\.0 MiB/, `skipped with a reason: ${full.skipped}`);
  t.same(full.rows, []);
  t.ok(
    lines.some((l) => /^full {3}skipped: full fine-tuning needs/.test(l)),
    'the reason is printed',
  );
  t.match(r.table, /\| full \| skipped: full fine-tuning needs/);
  t.equal(r.target, 0.5, 'a given target is used as is');

  t.equal(lora.reason, 'time', 'stopped by the time budget');
  t.ok(lora.seconds >= 0.3, `trained for ${lora.seconds.toFixed(3)} s ≥ the budget`);
  t.ok(lora.steps >= 1 && lora.rows.length === lora.steps + 1);
  const evals = lora.rows.filter((x) => x.devAccuracy !== null);
  t.ok(evals.length >= 2, `evaluated at time intervals (${evals.length} evals)`);
  t.equal(evals.at(-1), lora.rows.at(-1), 'and at the end');
  t.equal(lora.peakRssMiB, null, 'no peak RSS without isolation');
  t.equal(lora.parameters.trainable, await adapterParameters(f.model, { rank: 8, alpha: 16 }), 'rank-8 adapters by default');
  const csv = (await readFile(r.files.csv, 'utf8')).trim().split(/\r?\n/);
  t.ok(
    csv.slice(1).every((l) => l.startsWith('lora,')),
    'only the mode that ran has rows',
  );
});

t.test('errors', async (t) => {
  const root = t.testdir({});
  const f = await fixture(root);
  const task = { name: 'sst2' as const, train: f.train, dev: f.dev };
  const quiet = { progress: false, log: () => {} };
  await t.rejects(compare({ model: f.model, task, out: root, modes: ['sideways' as never], ...quiet }), { code: 'ZOFO_INVALID_ARG', message: /sideways/ });
  await t.rejects(compare({ model: f.model, task, out: root, modes: ['zo', 'zo'], ...quiet }), { code: 'ZOFO_INVALID_ARG' });
  await t.rejects(compare({ model: f.model, task, out: root, steps: 0, ...quiet }), { code: 'ZOFO_INVALID_ARG', message: /steps/ });
  await t.rejects(compare({ model: f.model, task, out: root, target: 2, ...quiet }), { code: 'ZOFO_INVALID_ARG', message: /target/ });
  await t.rejects(compare({ model: f.model, task: { ...task, name: 'nope' as never }, out: root, ...quiet }), { code: 'ZOFO_INVALID_ARG' });
  // A failure inside the child comes back with its code and message.
  await t.rejects(compare({ model: f.model, task: { ...task, dev: join(root, 'missing.tsv') }, modes: ['zo'], steps: 1, out: root, isolate: true, ...quiet }), {
    message: /compare \(zo\): .*missing\.tsv/,
  });
});

t.test('--seeds: every mode N times with other sampler and perturbation seeds; mean ± sd, 95% interval, bands', async (t) => {
  const root = t.testdir({});
  const f = await fixture(root);
  const r = await compare({ ...common(f), modes: ['zo', 'lora'], seeds: 3, out: join(root, 'out'), isolate: false, log: () => {} });
  t.same(
    r.results.map((m) => [m.mode, m.seed, m.optimizer.seed]),
    [
      ['zo', 3, 4],
      ['zo', 4, 5],
      ['zo', 5, 6],
      ['lora', 3, 4],
      ['lora', 4, 5],
      ['lora', 5, 6],
    ],
  );
  const zo = r.results.filter((m) => m.mode === 'zo');
  t.not(zo[0].rows[1].loss, zo[1].rows[1].loss, 'another sampler seed: other batches, another first loss');
  t.same(
    r.summary.map((m) => [m.mode, m.runs, m.finalAccuracy.n]),
    [
      ['zo', 3, 3],
      ['lora', 3, 3],
    ],
  );
  for (const m of r.summary) {
    const accs = r.results.filter((x) => x.mode === m.mode).map((x) => x.finalAccuracy!);
    const mean = accs.reduce((a, b) => a + b, 0) / 3;
    const sd = Math.sqrt(accs.reduce((a, x) => a + (x - mean) ** 2, 0) / 2);
    t.ok(Math.abs(m.finalAccuracy.mean! - mean) < 1e-12 && Math.abs(m.finalAccuracy.sd! - sd) < 1e-12, `${m.mode}: mean and sd of the runs' final accuracy`);
    const half = (4.302653 * sd) / Math.sqrt(3); // t(0.975, 2)
    t.ok(
      Math.abs(m.finalAccuracy.ci95![0] - (mean - half)) < 1e-5 && Math.abs(m.finalAccuracy.ci95![1] - (mean + half)) < 1e-5,
      `${m.mode}: the 95% t interval`,
    );
  }
  t.match(r.table, /^\| mode \| runs \| final acc \(mean ± sd\) \| final acc 95% CI \| steps to target \(mean ± sd\) \| steps to target 95% CI \|/);
  const md = await readFile(r.files.md, 'utf8');
  t.match(md, /## Every run[\s\S]*\| zo \(seed 5\) \|/, 'compare.md lists every run too');
  const svg = await readFile(r.files.svg, 'utf8');
  t.match(svg, /<polygon class="band" data-series="zo"/, 'the chart draws bands');
  t.match(svg, /band: min\.\.max/);
});
