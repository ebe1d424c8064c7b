// API option objects are validated whole at construction: every bad value, unknown key,
// null example or oversized kernel argument is a ZofoError (ZOFO_INVALID_ARG) whose
// `option` is the path of the option and whose message names it; unknown keys suggest the
// nearest valid key. Also the key-suggestion functions, against distances worked by hand.
import t, { type Test } from 'tap';
import { ZofoError } from '../lib/errors.js';
import { kernels } from '../lib/index.js';
import { loadModel, type Model } from '../lib/model/model.js';
import { HybridOptimizer } from '../lib/train/optimizer.js';
import { Trainer } from '../lib/train/trainer.js';
import { editDistance, nearestKey, unknownKeyMessage } from '../lib/validate/suggest.js';
import { freshSeed } from './helpers/reference.js';
import { randomCheckpoint, writeCheckpointDir } from './helpers/tiny-checkpoints.js';

const seed0 = freshSeed() % 1_000_000;
t.comment(`input seed ${seed0}`);

function refused(t: Test, fn: () => unknown, option: string, message: RegExp, code = 'ZOFO_INVALID_ARG'): void {
  try {
    fn();
    t.fail(`accepted; expected an error naming ${option}`);
  } catch (err) {
    if (!(err instanceof ZofoError)) {
      t.fail(`${(err as Error)?.name}: ${(err as Error)?.message} is not a ZofoError (option ${option})`);
      return;
    }
    t.equal(err.code, code, `${option}: code ${code}`);
    if (code === 'ZOFO_INVALID_ARG') t.equal((err as { option?: string }).option, option, `the error's option is ${option}`);
    t.ok(err.message.includes(option), `the message names ${option}: ${err.message}`);
    t.match(err.message, message);
  }
}

async function rejected(t: Test, p: Promise<unknown>, what: RegExp, code = 'ZOFO_INVALID_ARG'): Promise<void> {
  try {
    await p;
    t.fail(`accepted; expected ${what}`);
  } catch (err) {
    t.type(err, ZofoError, (err as Error).message);
    t.equal((err as ZofoError).code, code);
    t.match((err as Error).message, what);
  }
}

t.test('edit distance and the nearest key (hand-worked cases)', async (t) => {
  // Each distance worked out by hand (OSA: a swap of neighbours is one edit).
  const cases: Array<[string, string, number]> = [
    ['', '', 0],
    ['', 'abc', 3],
    ['abc', '', 3],
    ['steps', 'steps', 0],
    ['setps', 'steps', 1],
    ['step', 'steps', 1],
    ['kitten', 'sitting', 3],
    ['lr', 'mu', 2],
    ['ca', 'abc', 3],
    ['LR', 'lr', 0],
    ['batchsize', 'batchSize', 0],
    ['abcd', 'badc', 2],
  ];
  for (const [a, b, d] of cases) t.equal(editDistance(a, b), d, `d(${JSON.stringify(a)}, ${JSON.stringify(b)}) = ${d}`);
  const keys = ['batchSize', 'epochs', 'steps', 'seed', 'eval', 'checkpoint'];
  t.equal(nearestKey('setps', keys), 'steps');
  t.equal(nearestKey('batch_size', keys), 'batchSize', 'case, _ and - ignored');
  t.equal(nearestKey('epoch', keys), 'epochs');
  t.equal(nearestKey('checkpiont', keys), 'checkpoint');
  t.equal(nearestKey('zzzzzz', keys), undefined, 'nothing close: no suggestion');
  t.equal(nearestKey('x', keys), undefined, 'a one-letter key is not "close" to anything two edits away');
  t.equal(nearestKey('learning_rate', ['lr', 'mu'], { learning_rate: 'lr' }), 'lr', 'an alias');
  t.equal(unknownKeyMessage('setps', keys), 'unknown option "setps"; did you mean "steps"?');
  t.equal(unknownKeyMessage('learning_rate', ['lr', 'mu'], 'fo', 'option', { learningRate: 'lr' }), 'unknown option "fo.learning_rate"; did you mean "fo.lr"?');
  t.equal(unknownKeyMessage('zzz', ['lr', 'mu'], 'zo'), 'unknown option "zo.zzz"; valid options of zo are "lr", "mu"');
});

t.test('HybridOptimizer, Trainer and addLoRA options: every problem names its option', async (t) => {
  const dir = t.testdir({});
  await writeCheckpointDir(dir, randomCheckpoint('llama', seed0, {}), { dtype: 'F32' });
  const model: Model = await loadModel(dir);
  t.teardown(() => model.dispose());
  model.addLoRA({ rank: 2 });
  const opt = (o: unknown) => () => new HybridOptimizer(model, o as never);
  refused(t, opt(null), 'options', /Expected an options object for options but received null/);
  refused(t, opt({ zo: { lr: 1 }, setps: 3 }), 'setps', /unknown option "setps"; valid options are/);
  refused(t, opt({ zo: { lr: 1, setps: 3 } }), 'zo.setps', /unknown option "zo.setps"/);
  refused(t, opt({ fo: { learning_rate: 1 } }), 'fo.learning_rate', /unknown option "fo.learning_rate"; did you mean "fo.lr"\?/);
  refused(t, opt({ fo: { lr: 1, weight_decay: 0.1 } }), 'fo.weight_decay', /did you mean "fo.weightDecay"\?/);
  refused(t, opt({ zo: { lr: 1, schedule: { kind: 'linear', warmupStep: 3 } } }), 'zo.schedule.warmupStep', /did you mean "zo.schedule.warmupSteps"\?/);
  refused(t, opt({ zo: {} }), 'zo.lr', /Expected a finite number ≥ 0 for zo.lr but received undefined/);
  refused(t, opt({ zo: { lr: -1 } }), 'zo.lr', /Expected a finite number ≥ 0 for zo.lr but received -1 of type number/);
  refused(t, opt({ zo: { lr: NaN } }), 'zo.lr', /received NaN/);
  refused(t, opt({ zo: { lr: 1, mu: 1e-50 } }), 'zo.mu', /representable in fp32/);
  refused(t, opt({ zo: { lr: 1, perturbations: 0 } }), 'zo.perturbations', /an integer in 1 \.\. 65535/);
  refused(t, opt({ zo: { lr: 1, estimator: 'backward' } }), 'zo.estimator', /'forward' or 'central'/);
  refused(t, opt({ zo: { lr: 1, freeze: ['', /x/] } }), 'zo.freeze[0]', /a non-empty string or a RegExp/);
  refused(t, opt({ zo: { lr: 1, foAt: 'plus' } }), 'zo.foAt', /needs zo.estimator 'central'/);
  refused(t, opt({ fo: { lr: 1, betas: [0.9] } }), 'fo.betas', /two numbers in \[0, 1\)/);
  refused(t, opt({ fo: { lr: 1, betas: [0.9, 1] } }), 'fo.betas[1]', /a number in \[0, 1\)/);
  refused(t, opt({ fo: { lr: 1, momentum: 1 } }), 'fo.momentum', /\[0, 1\)/);
  refused(t, opt({ fo: { lr: 1, eps: 0 } }), 'fo.eps', /> 0/);
  refused(t, opt({ fo: { lr: 1, optimizer: 'adam' } }), 'fo.optimizer', /'sgd', 'momentum' or 'adamw'/);
  refused(t, opt({ zo: { lr: 1 }, totalSteps: 0 }), 'totalSteps', /a positive integer/);
  // Schedules are checked at construction, not at the first step.
  refused(t, opt({ zo: { lr: 1, schedule: { kind: 'cosin' } } }), 'zo.schedule.kind', /'constant', 'linear' or 'cosine'/);
  refused(t, opt({ fo: { lr: 1e-3, schedule: { kind: 'linear', minLr: 1e-2 } } }), 'fo.schedule.minLr', /a number in 0 \.\. lr \(0\.001\)/);
  refused(t, opt({ fo: { lr: 1, schedule: { warmupSteps: -1 } } }), 'fo.schedule.warmupSteps', /a non-negative integer/);
  refused(t, opt({ fo: { lr: 1, schedule: null } }), 'fo.schedule', /a schedule object/);

  const good = new HybridOptimizer(model, { zo: { lr: 1e-3 } });
  const trainer = (o: unknown) => () => new Trainer(model, good, o as never);
  refused(t, trainer({ batchSize: 2, setps: 3 }), 'setps', /did you mean "steps"\?/);
  refused(t, trainer({ batchSize: 2, steps: 3, batch_size: 2 }), 'batch_size', /did you mean "batchSize"\?/);
  refused(t, trainer({ batchSize: 0, steps: 3 }), 'batchSize', /a positive integer/);
  refused(t, trainer({ batchSize: 2 }), 'steps', /exactly one of epochs and steps \(got neither\)/);
  refused(t, trainer({ batchSize: 2, steps: 1, epochs: 1 }), 'epochs', /got both/);
  refused(t, trainer({ batchSize: 2, steps: 3, eval: { data: [], every: 2 } }), 'eval.data', /non-empty array of examples/);
  refused(t, trainer({ batchSize: 2, steps: 3, eval: [null] }), 'eval[0]', /an example object/);
  refused(t, trainer({ batchSize: 2, steps: 3, eval: { data: [{ prompt: [1], target: [2] }], evry: 2 } }), 'eval.evry', /did you mean "eval.every"\?/);
  refused(t, trainer({ batchSize: 2, steps: 3, checkpoint: { dir: 'x', every: 0 } }), 'checkpoint.every', /a positive integer/);
  refused(t, trainer({ batchSize: 2, steps: 3, checkpoint: { dir: '' } }), 'checkpoint.dir', /a directory path/);
  refused(t, trainer({ batchSize: 2, steps: 3, earlyStop: { patience: 2 } }), 'earlyStop', /needs eval/);
  refused(t, trainer({ batchSize: 2, steps: 3, onNonFinite: 'ignore' }), 'onNonFinite', /'skip' or 'stop'/);
  refused(t, trainer({ batchSize: 2, steps: 3, signal: {} }), 'signal', /an AbortSignal/);

  const fresh = await loadModel(dir);
  t.teardown(() => fresh.dispose());
  refused(t, () => fresh.addLoRA({ alpha: 1e300 }), 'alpha', /alpha \/ rank ≤ 1024/);
  refused(t, () => fresh.addLoRA({ alpha: Infinity }), 'alpha', /a finite number > 0/);
  refused(t, () => fresh.addLoRA({ alpha: 0 }), 'alpha', /a finite number > 0/);
  refused(t, () => fresh.addLoRA({ rank: 0 }), 'rank', /an integer in 1 \.\. 65536/);
  refused(t, () => fresh.addLoRA({ rank: 2, lora_alpha: 4 } as never), 'lora_alpha', /did you mean "alpha"\?/);
  refused(t, () => fresh.addLoRA({ targets: [] }), 'targets', /non-empty array of module names/);
  t.same(fresh.loraNames(), [], 'refused addLoRA calls added nothing');
  t.ok(fresh.addLoRA({ rank: 4, alpha: 4096 }).length > 0, 'alpha / rank = 1024 is accepted');
});

t.test('null examples, bad optimizer states and kernel sizes are ZofoErrors, never TypeError or RangeError', async (t) => {
  const dir = t.testdir({});
  await writeCheckpointDir(dir, randomCheckpoint('llama', seed0 + 1, {}), { dtype: 'F32' });
  const model = await loadModel(dir);
  t.teardown(() => model.dispose());
  model.addLoRA({ rank: 2 });
  const opt = new HybridOptimizer(model, { zo: { lr: 1e-3 }, fo: { lr: 1e-3 } });
  const ok = { prompt: [1, 2], candidates: [[5], [7]], label: 0 };
  await rejected(t, opt.step([null as never]), /batch\[0\]/);
  await rejected(t, opt.step([ok, null as never]), /batch\[1\]/);
  await rejected(t, opt.step([{ prompt: [1], candidates: null, label: 0 } as never]), /batch\[0\]/);
  await rejected(t, model.loss([undefined as never]), /batch\[0\]/);
  const trainer = new Trainer(model, opt, { batchSize: 1, steps: 1 });
  await rejected(t, trainer.fit([ok, null as never]).next(), /train\[1\]/);
  t.equal(opt.stepCount, 0, 'no step was taken');

  await opt.step([ok]);
  const state = opt.state();
  const withJson = (json: Record<string, unknown>) => ({ ...state, json: { ...state.json, ...json } });
  await rejected(t, opt.loadState(withJson({ step: NaN })), /step must be a non-negative integer, not NaN/, 'ZOFO_INVALID_STATE');
  await rejected(t, opt.loadState(withJson({ step: -1 })), /step must be a non-negative integer, not -1/, 'ZOFO_INVALID_STATE');
  await rejected(t, opt.loadState(withJson({ foUpdates: -2 })), /foUpdates must be a non-negative integer/, 'ZOFO_INVALID_STATE');
  await rejected(t, opt.loadState(withJson({ foUpdates: 3 })), /foUpdates is 3 but a 'hybrid' run of 1 steps has made 1/, 'ZOFO_INVALID_STATE');
  await rejected(t, opt.loadState(withJson({ totalSteps: Infinity })), /totalSteps must be a positive integer/, 'ZOFO_INVALID_STATE');
  await rejected(
    t,
    opt.loadState(withJson({ step: 2, foUpdates: 2 })),
    /the trajectory holds 1 update passes, but 2 steps of q = 1 make 2/,
    'ZOFO_INVALID_STATE',
  );
  await rejected(t, opt.loadState(withJson({ seed: '01' })), /seed must be the decimal string/, 'ZOFO_INVALID_STATE');
  const moments = new Map(state.tensors);
  const [first] = moments.keys();
  if (first !== undefined) {
    const poisoned = moments.get(first)!.slice();
    poisoned[0] = NaN;
    moments.set(first, poisoned);
    await rejected(t, opt.loadState({ ...state, tensors: moments }), /holds NaN at index 0/, 'ZOFO_INVALID_STATE');
  }

  refused(t, () => kernels.gaussian(2 ** 40, { seed: 1n, name: 'w' }), 'count', /an integer in 0 \.\. 2147483647/);
  refused(t, () => kernels.gaussian(-1, { seed: 1n, name: 'w' }), 'count', /an integer in 0 \.\. 2147483647/);
  const A = new Float32Array(4),
    C = new Float32Array(4);
  refused(t, () => kernels.matmul(2 ** 40, 1, 1, A, A, C), 'M', /an integer in 0 \.\. 2147483647/);
  refused(t, () => kernels.matmul(1, 2 ** 31, 1, A, A, C), 'N', /an integer in 0 \.\. 2147483647/);
  refused(t, () => kernels.matmul(1, 1, 1.5, A, A, C), 'K', /an integer/);
});
