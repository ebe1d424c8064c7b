// The training loop and its checkpoints, driven by a fake TrainableOptimizer (a float64
// "weight" in JS whose losses are a pure function of the weight and the batch): batches
// follow the sampler, events come in order, evaluation tracks the best, early stopping,
// non-finite steps, cancellation, crash-safe checkpoints, pruning and exact resume. One
// test uses a real tiny model for evaluation, adapters and the saved base weights.
import t from 'tap';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadModel, type Example, type LmExample, type Model } from '../lib/model/model.js';
import { ReshufflingSampler } from '../lib/train/sampler.js';
import { Trainer, type TrainerEvent, type TrainerOptions } from '../lib/train/trainer.js';
import { loadCheckpoint, saveCheckpoint, type TrainerCheckpointState } from '../lib/train/checkpoint.js';
import { TRAJECTORY_VERSION } from '../lib/train/trajectory.js';
import type { OptimizerState, StepOptions, StepResult, TrainableOptimizer, Trajectory, TrajectoryHeader, TrajectoryRecord } from '../lib/train/types.js';
import { freshSeed } from './helpers/reference.js';
import { randomCheckpoint, writeCheckpointDir } from './helpers/tiny-checkpoints.js';

const seed = freshSeed() % 1_000_000;
t.comment(`input seed ${seed}`);

const withCode = (code: string, message: string): Error => Object.assign(new Error(message), { code });
const idOf = (e: Example): number => e.prompt[0];

/** Examples whose first prompt token is their index. */
const lmData = (n: number): LmExample[] => Array.from({ length: n }, (_, i) => ({ prompt: [i, 1], target: [2] }));

const TRAJ_HEADER: TrajectoryHeader = {
  version: TRAJECTORY_VERSION,
  base: { hash: 'feedface', dtype: 'f32', parameters: 4 },
  table: [{ name: 'w', count: 4, trainable: true, decay: 0 }],
  estimator: 'forward',
  mu: 1e-3,
  perturbations: 1,
  seed: 5n,
};

/**
 * A deterministic optimizer: w ← w − η(k)·2·mean(w − id/n) with a linear schedule over
 * totalSteps, a float32 moment tensor, and hooks for aborting and poisoning batches.
 */
class FakeOptimizer implements TrainableOptimizer {
  totalSteps = 1;
  stepCount = 0;
  w = 1;
  moment = new Float32Array(3);
  /** Every batch the optimizer applied, as example ids. */
  applied: number[][] = [];
  /** Examples whose loss is NaN. */
  poison = new Set<number>();
  /** Called before the update; may abort the signal. */
  beforeUpdate?: (k: number) => void;
  /** Called after the update (the step then completes even if aborted). */
  afterUpdate?: (k: number) => void;

  /** The trajectory log (null: the optimizer keeps none). */
  records: TrajectoryRecord[] | null = null;

  constructor(
    readonly model: Model,
    readonly n: number,
  ) {}

  lossOf(ids: number[]): number {
    return ids.reduce((s, i) => s + (this.w - i / this.n) ** 2, 0) / ids.length;
  }

  async step(batch: Example[], opts: StepOptions = {}): Promise<StepResult> {
    await new Promise((r) => setImmediate(r)); // a real step is asynchronous
    const ids = batch.map(idOf),
      k = this.stepCount;
    if (ids.some((i) => this.poison.has(i))) throw withCode('ZOFO_NON_FINITE', `step ${k}: the loss is NaN`);
    this.beforeUpdate?.(k);
    if (opts.signal?.aborted) throw withCode('ZOFO_ABORTED', `step ${k}: aborted`);
    const loss = this.lossOf(ids);
    const grad = ids.reduce((s, i) => s + 2 * (this.w - i / this.n), 0) / ids.length;
    const lr = 0.3 * (1 - k / this.totalSteps);
    this.w -= lr * grad;
    for (let i = 0; i < 3; i++) this.moment[i] = 0.9 * this.moment[i] + (i + 1) * grad;
    this.applied.push(ids);
    this.records?.push({
      step: k,
      j: 0,
      q: 1,
      seed: BigInt(k) * 7n + 1n,
      projectedGrad: grad,
      lr: Math.fround(lr),
      weightDecay: 0,
      scale: Math.fround(-lr * grad),
      etaLambda: 0,
    });
    this.stepCount++;
    this.afterUpdate?.(k);
    return { step: k, loss, perturbedLosses: [loss + 1], projectedGrads: [grad], seeds: [BigInt(k)], lrX: lr, lrY: lr / 2 };
  }

  state(): OptimizerState {
    const trajectory = this.records && { header: TRAJ_HEADER, records: this.records.map((r) => ({ ...r })) };
    return { json: { w: this.w, stepCount: this.stepCount, totalSteps: this.totalSteps }, tensors: new Map([['moment', this.moment.slice()]]), trajectory };
  }

  async loadState(s: OptimizerState): Promise<void> {
    this.w = s.json.w as number;
    this.stepCount = s.json.stepCount as number;
    this.totalSteps = s.json.totalSteps as number;
    this.moment = s.tensors.get('moment')!.slice();
    this.records = s.trajectory ? s.trajectory.records.map((r) => ({ ...r })) : null;
  }

  trajectory(): Trajectory {
    throw new Error('the fake optimizer has no trajectory');
  }

  async saveTrajectory(): Promise<void> {
    throw new Error('the fake optimizer has no trajectory');
  }
}

/**
 * A stand-in Model: eval loss is the optimizer's loss on the batch unless `script` maps
 * the optimizer's step count to an eval loss; classification predictions are right for
 * the first `correct(stepCount)` examples of each batch.
 */
function fakeModel(script?: Record<number, number>): { model: Model; bind(opt: FakeOptimizer): void } {
  let opt: FakeOptimizer | undefined;
  const model = {
    dir: '/nowhere',
    loraNames: () => [],
    async loss(batch: Example[]) {
      const loss = script ? script[opt!.stepCount] : opt!.lossOf(batch.map(idOf));
      const first = batch[0] as { candidates?: number[][] };
      if (!first.candidates) return { loss };
      return { loss, predictions: batch.map((e) => ((e as { label: number }).label + (opt!.stepCount >= 4 ? 0 : 1)) % 2) };
    },
  } as unknown as Model;
  return {
    model,
    bind: (o) => {
      opt = o;
    },
  };
}

function setup(n: number, script?: Record<number, number>): { model: Model; opt: FakeOptimizer; train: LmExample[] } {
  const fm = fakeModel(script);
  const opt = new FakeOptimizer(fm.model, n);
  fm.bind(opt);
  return { model: fm.model, opt, train: lmData(n) };
}

async function collect(it: AsyncIterable<TrainerEvent>): Promise<TrainerEvent[]> {
  const out: TrainerEvent[] = [];
  for await (const e of it) out.push(e);
  return out;
}

const ofType = <K extends TrainerEvent['type']>(events: TrainerEvent[], type: K) =>
  events.filter((e) => e.type === type) as Extract<TrainerEvent, { type: K }>[];

t.test('options are validated with clear errors', async (t) => {
  const { model, opt } = setup(8);
  const make = (o: Partial<TrainerOptions>) => () => new Trainer(model, opt, { batchSize: 2, ...o } as TrainerOptions);
  t.throws(make({}), { code: 'ZOFO_INVALID_ARG', message: /exactly one of epochs and steps \(got neither\)/ });
  t.throws(make({ epochs: 1, steps: 3 }), { code: 'ZOFO_INVALID_ARG', message: /exactly one of epochs and steps \(got both\)/ });
  t.throws(make({ epochs: 0 }), { code: 'ZOFO_INVALID_ARG', message: /positive integer for epochs but received 0/ });
  t.throws(make({ steps: 2.5 }), { code: 'ZOFO_INVALID_ARG', message: /for steps/ });
  t.throws(make({ steps: 2, batchSize: 0 }), { code: 'ZOFO_INVALID_ARG', message: /for batchSize/ });
  t.throws(make({ steps: 2, seed: -1 }), { code: 'ZOFO_INVALID_ARG', message: /for seed/ });
  t.throws(make({ steps: 2, earlyStop: { patience: 2 } }), { message: /earlyStop needs eval/ });
  t.throws(make({ steps: 2, eval: { data: lmData(3), metric: 'accuracy' } }), { message: /'accuracy' needs classification examples/ });
  t.throws(make({ steps: 2, eval: { data: [] } }), { message: /eval\.data/ });
  t.throws(make({ steps: 2, eval: lmData(2), earlyStop: { patience: 0 } }), { message: /earlyStop\.patience/ });
  t.throws(make({ steps: 2, checkpoint: { dir: '' } }), { message: /checkpoint\.dir/ });
  t.throws(make({ steps: 2, checkpoint: { dir: 'x', keep: 0 } }), { message: /checkpoint\.keep/ });
  t.throws(make({ steps: 2, checkpoint: { dir: 'x', best: true } }), { message: /checkpoint\.best needs eval/ });
  t.throws(make({ steps: 2, onNonFinite: 'ignore' as 'skip' }), { message: /onNonFinite/ });
  const other = setup(8);
  t.throws(() => new Trainer(model, other.opt, { batchSize: 2, steps: 1 }), { code: 'ZOFO_INVALID_ARG', message: /another model/ });
  const trainer = new Trainer(model, opt, { batchSize: 2, steps: 1 });
  await t.rejects(collect(trainer.fit([])), { code: 'ZOFO_INVALID_ARG', message: /train/ });
});

t.test('batches follow the sampler: every epoch a permutation; events in order', async (t) => {
  const n = 10,
    { model, opt, train } = setup(n);
  const trainer = new Trainer(model, opt, { batchSize: 4, epochs: 3, seed });
  const events = await collect(trainer.fit(train));
  t.equal(opt.totalSteps, 9, 'totalSteps = epochs × batches per epoch (3 × 3)');
  const sampler = new ReshufflingSampler(n, { batchSize: 4, seed });
  const expected = Array.from({ length: 9 }, () => sampler.next());
  t.strictSame(
    opt.applied,
    expected.map((b) => b.indices),
    "the optimizer saw the sampler's batches",
  );
  for (let e = 0; e < 3; e++) {
    const seen = opt.applied
      .slice(3 * e, 3 * e + 3)
      .flat()
      .sort((a, b) => a - b);
    t.strictSame(
      seen,
      Array.from({ length: n }, (_, i) => i),
      `epoch ${e} visits every example once`,
    );
  }
  t.strictSame(
    events.map((e) => e.type),
    [...Array(9).fill('step'), 'done'],
  );
  const steps = ofType(events, 'step');
  t.strictSame(
    steps.map((s) => s.step),
    [1, 2, 3, 4, 5, 6, 7, 8, 9],
    'step counts batches, 1-based',
  );
  t.strictSame(
    steps.map((s) => s.epoch),
    [0, 0, 0, 1, 1, 1, 2, 2, 2],
  );
  t.equal(steps[3].lrY, steps[3].lrX / 2, 'the step result is passed through');
  t.strictSame(steps[0].projectedGrads.length, 1);
  t.ok(
    steps.every((s, i) => s.elapsedMs >= s.stepMs && (i === 0 || s.elapsedMs >= steps[i - 1].elapsedMs)),
    'elapsed time grows',
  );
  t.match(events.at(-1), { type: 'done', step: 9, reason: 'completed', best: undefined });

  const byDrop = setup(n);
  await collect(new Trainer(byDrop.model, byDrop.opt, { batchSize: 4, epochs: 2, dropLast: true, seed }).fit(byDrop.train));
  t.equal(byDrop.opt.totalSteps, 4, 'dropLast: 2 batches per epoch');
  t.ok(byDrop.opt.applied.every((b) => b.length === 4));
  const bySteps = setup(n);
  await collect(new Trainer(bySteps.model, bySteps.opt, { batchSize: 3, steps: 7, seed }).fit(bySteps.train));
  t.equal(bySteps.opt.totalSteps, 7);
  t.equal(bySteps.opt.applied.length, 7);
});

t.test('evaluation every N steps tracks the best; best checkpoint; early stopping', async (t) => {
  // eval losses by optimizer step count: best at 4, then no improvement for 2 evals.
  const script = { 2: 5, 4: 3, 6: 3.5, 8: 3.0, 10: 2 };
  const { model, opt, train } = setup(12, script);
  const dir = t.testdir({});
  const trainer = new Trainer(model, opt, {
    batchSize: 3,
    steps: 20,
    seed,
    eval: { data: lmData(5), every: 2 },
    earlyStop: { patience: 2 },
    checkpoint: { dir },
  });
  const events = await collect(trainer.fit(train));
  t.strictSame(
    events.map((e) => e.type),
    ['step', 'step', 'eval', 'checkpoint', 'step', 'step', 'eval', 'checkpoint', 'step', 'step', 'eval', 'step', 'step', 'eval', 'checkpoint', 'done'],
    'equal losses (3.0 vs 3) are no improvement',
  );
  t.strictSame(
    ofType(events, 'eval').map((e) => [e.step, e.loss, e.accuracy, e.best]),
    [
      [2, 5, null, true],
      [4, 3, null, true],
      [6, 3.5, null, false],
      [8, 3, null, false],
    ],
  );
  const cks = ofType(events, 'checkpoint');
  t.strictSame(
    cks.map((c) => [c.step, c.best]),
    [
      [2, true],
      [4, true],
      [8, false],
    ],
    'best copies, then the final checkpoint',
  );
  t.equal(cks[0].dir, join(dir, 'best'));
  t.match(events.at(-1), { type: 'done', step: 8, reason: 'early-stop', best: { step: 4, loss: 3, accuracy: null } });
  const best = await loadCheckpoint(join(dir, 'best'));
  t.equal(best.trainer.step, 4, 'best/ holds the step-4 state');
  t.equal(best.optimizer.json.stepCount, 4);
  const latest = await loadCheckpoint(dir);
  t.equal(latest.trainer.step, 8);
  t.equal(latest.trainer.sinceImprovement, 2);
  t.strictSame(
    latest.trainer.evals.map((e) => e.loss),
    [5, 3, 3.5, 3],
  );
  t.notOk(
    (await readdir(dir)).some((f) => f.includes('.tmp-') || f.includes('.old-')),
    'no temp or old directories left',
  );

  // minDelta: 4 → 3.5 is not an improvement by more than 0.6.
  const md = setup(12, { 2: 4, 4: 3.5, 6: 3.5 });
  const evs = await collect(
    new Trainer(md.model, md.opt, { batchSize: 3, steps: 20, seed, eval: { data: lmData(4), every: 2 }, earlyStop: { patience: 2, minDelta: 0.6 } }).fit(
      md.train,
    ),
  );
  t.strictSame(
    ofType(evs, 'eval').map((e) => e.best),
    [true, false, false],
    'improvements must exceed minDelta',
  );
  t.match(evs.at(-1), { reason: 'early-stop', step: 6, best: { step: 2, loss: 4 } });
});

t.test('accuracy metric with classification examples; eval defaults to once per epoch', async (t) => {
  const { model, opt } = setup(8, { 4: 2, 8: 2.5 });
  const cls = Array.from({ length: 8 }, (_, i) => ({ prompt: [i, 1], candidates: [[3], [4]], label: i % 2 }));
  const trainer = new Trainer(model, opt, { batchSize: 2, epochs: 2, seed, eval: { data: cls, metric: 'accuracy', batchSize: 3 } });
  const events = await collect(trainer.fit(cls));
  const evals = ofType(events, 'eval');
  t.strictSame(
    evals.map((e) => [e.step, e.loss, e.accuracy, e.best]),
    [
      [4, 2, 1, true],
      [8, 2.5, 1, false],
    ],
    'once per epoch (4 batches); accuracy 1 is not beaten by 1',
  );
  t.match(events.at(-1), { reason: 'completed', best: { step: 4, accuracy: 1 } });
  const direct = await trainer.evaluate(cls.slice(0, 3).concat(lmData(2) as never[]));
  t.equal(direct.accuracy, 1, 'mixed eval sets: accuracy over the classification examples');
});

t.test('non-finite steps: skip or stop', async (t) => {
  const n = 6;
  const skip = setup(n);
  skip.opt.poison.add(2);
  const events = await collect(new Trainer(skip.model, skip.opt, { batchSize: 2, epochs: 2, seed, onNonFinite: 'skip' }).fit(skip.train));
  const skips = ofType(events, 'skip');
  t.equal(skips.length, 2, 'the poisoned batch is skipped once per epoch');
  t.match(skips[0], { type: 'skip', reason: 'non-finite', message: /NaN/ });
  t.equal(ofType(events, 'step').length, 4);
  t.match(events.at(-1), { type: 'done', step: 6, reason: 'completed' }, 'skipped batches count as steps');
  t.notOk(skip.opt.applied.flat().includes(2));

  const stop = setup(n);
  stop.opt.poison.add(2);
  const dir = t.testdir({});
  const sevents = await collect(new Trainer(stop.model, stop.opt, { batchSize: 2, epochs: 2, seed, checkpoint: { dir } }).fit(stop.train));
  const done = sevents.at(-1) as Extract<TrainerEvent, { type: 'done' }>;
  t.equal(done.reason, 'non-finite', "default 'stop'");
  const stepsBefore = ofType(sevents, 'step').length;
  t.equal(done.step, stepsBefore);
  t.match(sevents.at(-2), { type: 'checkpoint', step: stepsBefore, best: false }, 'a final checkpoint');
  const ck = await loadCheckpoint(dir);
  const sampler = new ReshufflingSampler(n, { batchSize: 2, seed });
  for (let i = 0; i < stepsBefore; i++) sampler.next();
  t.strictSame(ck.trainer.sampler, sampler.state, 'the checkpoint is before the poisoned batch: a resumed run retries it');
});

t.test('abort mid-run: done "aborted" and a loadable checkpoint; resume completes the run exactly', async (t) => {
  const n = 9,
    opts = { batchSize: 2, epochs: 2, seed } as const;
  const ref = setup(n);
  ref.opt.records = [];
  const refEvents = ofType(await collect(new Trainer(ref.model, ref.opt, opts).fit(ref.train)), 'step');

  // The step in flight when the signal fires is rejected (weights untouched).
  const dir = t.testdir({});
  const a = setup(n),
    ac = new AbortController();
  a.opt.records = [];
  a.opt.beforeUpdate = (k) => {
    if (k === 4) ac.abort();
  };
  const events = await collect(new Trainer(a.model, a.opt, { ...opts, signal: ac.signal, checkpoint: { dir, every: 3 } }).fit(a.train));
  t.strictSame(
    events.map((e) => e.type),
    ['step', 'step', 'step', 'checkpoint', 'step', 'checkpoint', 'done'],
  );
  t.match(events.at(-1), { type: 'done', step: 4, reason: 'aborted' });
  t.equal(a.opt.stepCount, 4, 'the rejected step applied nothing');
  const ck = await loadCheckpoint(dir);
  t.equal(ck.trainer.step, 4);
  t.strictSame(ck.optimizer.trajectory, { header: TRAJ_HEADER, records: a.opt.records }, 'the trajectory round-trips through trajectory.zlog');

  const b = setup(n);
  const resumed = await collect(new Trainer(b.model, b.opt, opts).fit(b.train, { resumeFrom: dir }));
  const steps = [...ofType(events, 'step'), ...ofType(resumed, 'step')];
  t.strictSame(
    steps.map((s) => [s.step, s.epoch, s.loss, s.lrX, s.projectedGrads]),
    refEvents.map((s) => [s.step, s.epoch, s.loss, s.lrX, s.projectedGrads]),
    'the same losses bit for bit',
  );
  t.strictSame([...a.opt.applied, ...b.opt.applied], ref.opt.applied, 'the same batches');
  t.equal(b.opt.w, ref.opt.w);
  t.strictSame(b.opt.records, ref.opt.records, 'the resumed trajectory continues the saved one');

  // A step that completes after the signal fires is kept and checkpointed.
  const dir2 = join(dir, 'second');
  const c = setup(n),
    ac2 = new AbortController();
  c.opt.afterUpdate = (k) => {
    if (k === 2) ac2.abort();
  };
  const cev = await collect(new Trainer(c.model, c.opt, { ...opts, signal: ac2.signal, checkpoint: { dir: dir2 } }).fit(c.train));
  t.strictSame(
    cev.map((e) => e.type),
    ['step', 'step', 'step', 'checkpoint', 'done'],
  );
  t.match(cev.at(-1), { step: 3, reason: 'aborted' });
  t.equal((await loadCheckpoint(dir2)).optimizer.json.stepCount, 3);

  // A damaged trajectory log is refused.
  const zlog = join(ck.dir, 'trajectory.zlog');
  const bytes = await readFile(zlog);
  await writeFile(zlog, bytes.subarray(0, bytes.length - 5));
  await t.rejects(loadCheckpoint(dir), {
    code: 'ZOFO_BAD_FILE',
    message: /trajectory\.zlog: SHA-256 [0-9a-f]{64} differs from the [0-9a-f]{64} recorded in .*trainer\.json/,
  });
  // A version 1 checkpoint (no checksums) is refused by the log's own checks.
  const tjFile = join(ck.dir, 'trainer.json');
  const v1 = JSON.parse(await readFile(tjFile, 'utf8'));
  delete v1.sha256;
  v1.version = 1;
  await writeFile(tjFile, JSON.stringify(v1));
  await t.rejects(loadCheckpoint(dir), { code: 'ZOFO_BAD_FILE', message: /trajectory\.zlog: the trajectory log is truncated/ });

  // Aborted before the start: no step; without checkpointing nothing is written.
  const d = setup(n);
  const dev = await collect(new Trainer(d.model, d.opt, { ...opts, signal: AbortSignal.abort() }).fit(d.train));
  t.strictSame(dev, [{ type: 'done', step: 0, reason: 'aborted', best: undefined }]);
});

t.test('resume from a crash reproduces the uninterrupted run; eval and best state carry over', async (t) => {
  const n = 11,
    script: Record<number, number> = { 3: 4, 6: 2, 9: 3, 12: 1, 15: 5, 18: 0.5 };
  const opts = { batchSize: 3, epochs: 5, seed, eval: { data: lmData(3), every: 3 }, earlyStop: { patience: 3 } } as const;
  const ref = setup(n, script);
  const refEvents = await collect(new Trainer(ref.model, ref.opt, opts).fit(ref.train));

  const dir = t.testdir({});
  const a = setup(n, script);
  const first: TrainerEvent[] = [];
  for await (const e of new Trainer(a.model, a.opt, { ...opts, checkpoint: { dir, every: 4, best: false } }).fit(a.train)) {
    first.push(e);
    if (e.type === 'step' && e.step === 10) break; // a crash: the last checkpoint is step 8
  }
  t.equal((await loadCheckpoint(dir)).trainer.step, 8);
  const b = setup(n, script);
  const second = await collect(new Trainer(b.model, b.opt, { ...opts, checkpoint: { dir, every: 4, best: false } }).fit(b.train, { resumeFrom: dir }));
  const strip = (evs: TrainerEvent[]) => evs.filter((e) => e.type !== 'checkpoint').map((e) => (e.type === 'step' ? { ...e, elapsedMs: 0, stepMs: 0 } : e));
  const combined = [...strip(first).filter((e) => e.step <= 8), ...strip(second)];
  t.strictSame(combined, strip(refEvents), 'steps, evals (with best flags) and done match the uninterrupted run');
  t.equal(b.opt.w, ref.opt.w, 'the same final weight, bit for bit');
  t.ok(ofType(second, 'step')[0].elapsedMs >= ofType(first, 'step')[7].elapsedMs, 'elapsed time continues across the resume');

  // Aborted right after step 6, whose evaluation was due: the resumed run evaluates first.
  const dir2 = join(dir, 'aborted');
  const c1 = setup(n, script),
    ac = new AbortController();
  c1.opt.afterUpdate = (k) => {
    if (k === 5) ac.abort();
  };
  const part1 = await collect(new Trainer(c1.model, c1.opt, { ...opts, signal: ac.signal, checkpoint: { dir: dir2, best: false } }).fit(c1.train));
  t.strictSame(
    part1.slice(-3).map((e) => `${e.type}:${e.step}`),
    ['step:6', 'checkpoint:6', 'done:6'],
    'the abort skips the eval',
  );
  const c2 = setup(n, script);
  const part2 = await collect(new Trainer(c2.model, c2.opt, { ...opts, checkpoint: { dir: dir2, best: false } }).fit(c2.train, { resumeFrom: dir2 }));
  t.match(part2[0], { type: 'eval', step: 6, loss: 2, best: true }, 'the missed eval comes first');
  t.strictSame([...strip(part1).filter((e) => e.type !== 'done'), ...strip(part2)], strip(refEvents), 'and the run matches the uninterrupted one');

  // A different training set or sampler option is refused.
  const c = setup(n, script);
  await t.rejects(collect(new Trainer(c.model, c.opt, opts).fit(lmData(n + 1), { resumeFrom: dir })), {
    code: 'ZOFO_INVALID_STATE',
    message: /another training set/,
  });
  const swapped = lmData(n);
  swapped[0] = { prompt: [0, 2], target: [2] };
  await t.rejects(collect(new Trainer(c.model, c.opt, opts).fit(swapped, { resumeFrom: dir })), {
    code: 'ZOFO_INVALID_STATE',
    message: /another training set/,
  });
  await t.rejects(collect(new Trainer(c.model, c.opt, { ...opts, seed: seed + 1 }).fit(c.train, { resumeFrom: dir })), {
    code: 'ZOFO_INVALID_STATE',
    message: /seed/,
  });
});

t.test('keep=N prunes old step checkpoints only after latest moves', async (t) => {
  const dir = t.testdir({});
  const { model, opt, train } = setup(10);
  const events = await collect(new Trainer(model, opt, { batchSize: 2, steps: 10, seed, checkpoint: { dir, every: 2, keep: 2 } }).fit(train));
  t.strictSame(
    ofType(events, 'checkpoint').map((c) => c.step),
    [2, 4, 6, 8, 10],
    'no extra final checkpoint when the last step was saved',
  );
  t.strictSame((await readdir(dir)).sort(), ['latest', 'step-000008', 'step-000010']);
  t.strictSame(JSON.parse(await readFile(join(dir, 'latest'), 'utf8')), { step: 10, path: 'step-000010' });
  const ck = await loadCheckpoint(dir);
  t.strictSame(ck.trainer.history, ['step-000008', 'step-000010']);
  t.strictSame([...ck.optimizer.tensors.keys()], ['moment']);
  t.strictSame(ck.optimizer.tensors.get('moment'), opt.moment, 'optimizer tensors round-trip');
  t.equal(ck.adapterDir, null);

  const dir1 = join(dir, 'keep1');
  const one = setup(10);
  await collect(new Trainer(one.model, one.opt, { batchSize: 2, steps: 5, seed, checkpoint: { dir: dir1, every: 1, keep: 1 } }).fit(one.train));
  t.strictSame((await readdir(dir1)).sort(), ['latest', 'step-000005']);
});

t.test('crash safety: leftovers are ignored; damage is a clear ZOFO_BAD_FILE', async (t) => {
  const dir = t.testdir({});
  const { model, opt, train } = setup(8);
  await collect(new Trainer(model, opt, { batchSize: 2, steps: 6, seed, checkpoint: { dir, every: 3 } }).fit(train));
  // A crash while writing step 9: a half-written temp directory and a torn temp latest.
  await mkdir(join(dir, 'step-000009.tmp-999-dead'), { recursive: true });
  await writeFile(join(dir, 'step-000009.tmp-999-dead', 'optimizer.safetensors'), 'junk');
  await writeFile(join(dir, 'latest.tmp-999-beef'), '{"step": 9, "pa');
  // A crash after renaming step 12 into place but before latest moved: complete, uncommitted.
  await mkdir(join(dir, 'step-000012'));
  const ck = await loadCheckpoint(dir);
  t.equal(ck.trainer.step, 6, 'latest still names the previous checkpoint');
  t.equal(ck.dir, join(dir, 'step-000006'));

  // Resuming and saving again replaces the uncommitted directory, keeps the leftovers harmless.
  const b = setup(8);
  await collect(new Trainer(b.model, b.opt, { batchSize: 2, steps: 12, seed, checkpoint: { dir, every: 6 } }).fit(b.train, { resumeFrom: dir }));
  t.equal((await loadCheckpoint(dir)).trainer.step, 12);
  t.ok(existsSync(join(dir, 'step-000012', 'trainer.json')));

  // Saving over the committed checkpoint's name (a run resumed from an older one) picks a fresh name.
  const committed = await loadCheckpoint(dir);
  const state: TrainerCheckpointState = { ...committed.trainer, history: [] };
  const saved = await saveCheckpoint(dir, { model: b.model, optimizer: b.opt, state });
  t.match(saved.dir, /step-000012-[0-9a-f]{8}$/);
  t.equal((await loadCheckpoint(dir)).dir, saved.dir);
  t.ok(existsSync(join(dir, 'step-000012', 'trainer.json')), 'the previous commit is untouched');

  // Damage.
  const bad = join(dir, 'bad');
  await mkdir(bad);
  await t.rejects(loadCheckpoint(bad), { code: 'ZOFO_BAD_FILE', message: /neither latest nor trainer\.json/ });
  await writeFile(join(bad, 'latest'), 'not json');
  await t.rejects(loadCheckpoint(bad), {
    code: 'ZOFO_BAD_FILE',
    message: new RegExp(`${join(bad, 'latest').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: not valid JSON`),
  });
  await writeFile(join(bad, 'latest'), '{"step": 3, "path": "../elsewhere"}');
  await t.rejects(loadCheckpoint(bad), { code: 'ZOFO_BAD_FILE', message: /latest: expected/ });
  await writeFile(join(bad, 'latest'), '{"step": 3, "path": "step-000003"}');
  await t.rejects(loadCheckpoint(bad), { code: 'ZOFO_BAD_FILE', message: /names step-000003, which is not a complete checkpoint/ });
  const s6 = join(dir, 'step-000006');
  const tj = await readFile(join(s6, 'trainer.json'), 'utf8');
  await writeFile(join(s6, 'trainer.json'), tj.replace('"sinceImprovement": 0', '"sinceImprovement": "x"'));
  await t.rejects(loadCheckpoint(s6), { code: 'ZOFO_BAD_FILE', message: /trainer\.json: trainer\.sinceImprovement is missing or malformed/ });
  await writeFile(join(s6, 'trainer.json'), tj.replace('"version": 2', '"version": 99'));
  await t.rejects(loadCheckpoint(s6), { code: 'ZOFO_BAD_FILE', message: /version 99 is not supported/ });
  await writeFile(join(s6, 'trainer.json'), tj);
  await rm(join(s6, 'optimizer.safetensors'));
  await t.rejects(loadCheckpoint(s6), { code: 'ZOFO_BAD_FILE', message: /optimizer\.safetensors: missing/ });
});

t.test('best/ is replaced atomically and recovered after a crash between its renames', async (t) => {
  const dir = t.testdir({});
  const { model, opt, train } = setup(8, { 1: 3, 2: 2, 3: 1 });
  await collect(new Trainer(model, opt, { batchSize: 2, steps: 3, seed, eval: { data: lmData(2), every: 1 }, checkpoint: { dir } }).fit(train));
  t.equal((await loadCheckpoint(join(dir, 'best'))).trainer.step, 3);
  t.strictSame((await readdir(dir)).sort(), ['best', 'latest', 'step-000003']);
  await rename(join(dir, 'best'), join(dir, 'best.old-1-ab'));
  t.equal((await loadCheckpoint(join(dir, 'best'))).trainer.step, 3, 'the renamed-away copy is found');
});

t.test('a real tiny model: eval by model.loss, adapters and base weights in checkpoints, exact resume', async (t) => {
  const root = t.testdir({});
  const ckpt = randomCheckpoint('llama', seed);
  await writeCheckpointDir(join(root, 'base'), ckpt, { dtype: 'F32' });
  const V = ckpt.config.vocab_size as number;
  const data: Example[] = Array.from({ length: 7 }, (_, i) => ({ prompt: [i % V, (3 * i + 1) % V, 5], target: [(i + 2) % V, 4] }));

  // A fake optimizer that moves one LoRA B tensor, so eval losses change with training.
  class LoraFake extends FakeOptimizer {
    override async step(batch: Example[], o?: StepOptions): Promise<StepResult> {
      const r = await super.step(batch, o);
      const name = this.model.loraNames().find((x) => x.endsWith('lora_B.weight'))!;
      const B = this.model.loraTensor(name);
      for (let i = 0; i < B.length; i++) B[i] += 0.05 * Math.sin(i + this.w * 7);
      this.model.setLoraTensor(name, B);
      return r;
    }
  }
  const make = async (loraSeed = 7) => {
    const model = await loadModel(join(root, 'base'));
    model.addLoRA({ rank: 2, alpha: 4, seed: loraSeed });
    return { model, opt: new LoraFake(model, data.length) };
  };
  const opts = { batchSize: 2, steps: 6, seed, eval: { data: data.slice(0, 5), every: 2, batchSize: 2 } } as const;
  const ref = await make();
  const refEvents = await collect(new Trainer(ref.model, ref.opt, opts).fit(data));
  const evals = ofType(refEvents, 'eval');
  t.equal(evals.length, 3);
  const direct = await ref.model.loss(data.slice(0, 5));
  t.ok(Math.abs(evals[2].loss - direct.loss) < 1e-5, 'eval loss is the example-weighted mean of model.loss');
  t.equal(evals[0].accuracy, null, 'LM data: no accuracy');

  const dir = join(root, 'run');
  const a = await make(),
    ac = new AbortController();
  a.opt.beforeUpdate = (k) => {
    if (k === 3) ac.abort();
  };
  const first = await collect(new Trainer(a.model, a.opt, { ...opts, signal: ac.signal, checkpoint: { dir, saveBase: true } }).fit(data));
  t.match(first.at(-1), { reason: 'aborted', step: 3 });
  const ck = await loadCheckpoint(dir);
  t.ok(ck.adapterDir && existsSync(join(ck.adapterDir, 'adapter_model.safetensors')), 'the adapter is saved in the PEFT layout');
  const savedBase = await loadModel(ck.baseDir!);
  t.strictSame(savedBase.parameterNames(), a.model.parameterNames(), 'base/ is a loadable HF directory');
  const name = a.model.parameterNames()[0];
  t.strictSame(await savedBase.tensor(name), await a.model.tensor(name));
  savedBase.dispose();
  t.ok(existsSync(join(dir, 'best', 'adapter')), 'best/ was written (eval set, best defaults on)');

  const b = await make(8); // other adapters: the checkpoint's must replace them
  const second = await collect(new Trainer(b.model, b.opt, { ...opts, checkpoint: { dir } }).fit(data, { resumeFrom: dir }));
  const strip = (evs: TrainerEvent[]) =>
    evs.filter((e) => e.type === 'step' || e.type === 'eval').map((e) => (e.type === 'step' ? [e.step, e.loss] : [e.step, e.loss, e.best]));
  t.strictSame([...strip(first), ...strip(second)], strip(refEvents), 'eval losses equal the uninterrupted run bit for bit');
  for (const m of [ref.model, a.model, b.model]) m.dispose();
});
