// The shipped demo model (demo/model/, made by scripts/make-demo-model.ts): it loads, fits
// its size budget, its tokenizer is the one lib/demo/language.ts defines and gives the
// SST-2 verbalizers one token each; it is genuinely pretrained (held-out LM loss far below
// a random init's ≈ log V); on the built-in task it is well above chance but far from
// perfect, and short fine-tunes (hybrid, LoRA, ZO) raise dev accuracy by stated margins.
// Every seed is fixed, so the numbers printed are the same run to run on one machine.
import t from 'tap';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel, type ClassificationExample, type LmExample, type Model } from '../lib/model/model.js';
import { HybridOptimizer } from '../lib/train/optimizer.js';
import { Trainer } from '../lib/train/trainer.js';
import { writeSafetensors, type TensorData } from '../lib/formats/safetensors.js';
import { loadTokenizer, type Tokenizer } from '../lib/model/tokenizer.js';
import {
  CANDIDATES,
  DEMO_MIX,
  demoReviews,
  makeReview,
  pretrainingCorpus,
  promptOf,
  REVIEW_KINDS,
  Rng,
  tokenizerFiles,
  vocabulary,
  withVerdict,
  type ReviewKind,
} from '../lib/demo/language.js';
import { demoModelDir, demoTask, demoTaskReviews } from '../lib/demo/model.js';
import { DEMO_SPLIT } from '../lib/cli/demo.js';

const dir = demoModelDir();
const BUDGET_BYTES = 1.5 * 1024 * 1024; // the brief's ideal; the hard limit is 3 MB
const TASK = DEMO_SPLIT;
// The pretraining run used corpus seed 1 (demo/model/README.md); this text is unseen.
const HELD_OUT_SEED = 4242;

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

async function accuracy(model: Model, data: ClassificationExample[]): Promise<{ all: number; correct: boolean[] }> {
  const correct: boolean[] = [];
  for (let i = 0; i < data.length; i += 100) {
    const batch = data.slice(i, i + 100);
    (await model.loss(batch)).predictions!.forEach((p, j) => correct.push(p === batch[j].label));
  }
  return { all: correct.filter(Boolean).length / correct.length, correct };
}

function byKind(correct: boolean[], kinds: ReviewKind[]): Record<ReviewKind, number> {
  const out = {} as Record<ReviewKind, number>;
  for (const k of REVIEW_KINDS) {
    const idx = kinds.map((_, i) => i).filter((i) => kinds[i] === k);
    out[k] = idx.filter((i) => correct[i]).length / idx.length;
  }
  return out;
}

async function lmLoss(model: Model, examples: LmExample[]): Promise<number> {
  let sum = 0,
    tokens = 0;
  for (let i = 0; i < examples.length; i += 100) {
    const batch = examples.slice(i, i + 100);
    const n = batch.reduce((s, e) => s + e.target.length, 0);
    sum += (await model.loss(batch)).loss * n;
    tokens += n;
  }
  return sum / tokens;
}

t.test('the shipped files: present, within the size budget, tokenizer = language.ts', async (t) => {
  const files = readdirSync(dir).sort();
  t.same(files, ['README.md', 'config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
  const total = files.reduce((s, f) => s + statSync(join(dir, f)).size, 0);
  t.comment(`demo/model: ${(total / 1024).toFixed(0)} KiB in ${files.length} files`);
  t.ok(total <= BUDGET_BYTES, `total ${total} bytes ≤ ${BUDGET_BYTES}`);
  const expected = tokenizerFiles();
  t.same(JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')), expected.tokenizer, 'tokenizer.json is what tokenizerFiles() writes');
  t.same(JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')), expected.config);
  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  t.equal(config.model_type, 'llama');
  t.equal(config.vocab_size, vocabulary().length);
  t.equal(config.tie_word_embeddings, true);
  t.match(readFileSync(join(dir, 'README.md'), 'utf8'), /make-demo-model/);
});

t.test('loads; the tokenizer gives single-token verbalizers and covers the language', async (t) => {
  const model = await loadModel(demoModelDir());
  t.teardown(() => model.dispose());
  t.equal(model.config.family, 'llama');
  const tok = model.tokenizer as Tokenizer;
  t.ok(tok, 'tokenizer.json loaded with the model');
  t.equal(tok.vocabSize, model.config.vocabSize);
  const ids = CANDIDATES.map((c) => tok.encode(c));
  t.same(
    ids.map((x) => x.length),
    [1, 1],
    '" terrible" and " great" are one token each',
  );
  t.not(ids[0][0], ids[1][0]);
  // Leading spaces and case do not matter: the pre-tokenizer splits on whitespace, the normalizer lowercases.
  t.same(tok.encode('great'), ids[1]);
  t.same(tok.encode(' Great'), ids[1]);
  // No special tokens are added: the model was pretrained on bare text.
  t.same(tok.encode('It was', { addSpecialTokens: true }), tok.encode('it was', { addSpecialTokens: false }));
  const text = 'The soup was not fresh, but I loved the staff. It was great.';
  t.equal(tok.decode(tok.encode(text)), text.toLowerCase());
  const unk = tok.tokenToId('<unk>');
  t.same(tok.encode('zebra'), [unk]);
  const corpus = pretrainingCorpus(500, HELD_OUT_SEED);
  t.notOk(
    corpus.some((line) => tok.encode(line).includes(unk as number)),
    'the corpus has no unknown words',
  );
  t.ok(Math.max(...corpus.map((l) => tok.encode(l).length)) < model.config.maxPositions, 'corpus lines fit the context');

  const { train, dev } = demoTask(tok, TASK);
  t.equal(train.length, TASK.train);
  t.equal(dev.length, TASK.dev);
  for (const ex of [...train, ...dev]) {
    t.same(ex.candidates, ids, 'single-token candidates');
    t.same(ex.prompt.slice(-2), tok.encode(' It was'));
  }
  t.equal(dev.filter((e) => e.label === 1).length, TASK.dev / 2, 'balanced labels');
});

t.test('the task generator: seeded, stratified, disjoint splits', async (t) => {
  const a = demoTaskReviews(TASK),
    b = demoTaskReviews(TASK);
  t.same(a, b, 'same seed, same reviews');
  t.not(JSON.stringify(demoTaskReviews({ ...TASK, seed: 1 }).dev), JSON.stringify(a.dev), 'another seed, other reviews');
  const trainTexts = new Set(a.train.map((r) => r.text));
  t.notOk(
    a.dev.some((r) => trainTexts.has(r.text)),
    'dev never repeats a training review',
  );
  for (const k of REVIEW_KINDS) t.equal(a.dev.filter((r) => r.kind === k).length, Math.round(DEMO_MIX[k] * TASK.dev), `${k} share`);
  t.equal(demoReviews(10, 3).length, 10);
  // Semantics: negation flips the adjective, the clause after "but" decides.
  const rng = new Rng(5);
  for (let i = 0; i < 50; i++) {
    const neg = makeReview(rng, 'negation', 1);
    t.match(neg.text, / not /);
    const con = makeReview(rng, 'contrast', 0);
    t.match(con.text, /, but /);
  }
  t.equal(promptOf('Nice.'), 'Nice. It was');
  t.equal(withVerdict('Nice.', 0), 'Nice. It was terrible.');
  const fake = { encode: (s: string) => (s.includes('great') ? [1, 2] : [3]) } as unknown as Tokenizer;
  t.throws(() => demoTask(fake, TASK), { code: 'ZOFO_INVALID_ARG' }, 'multi-token candidates are refused');
  const real = await loadTokenizer(demoModelDir());
  t.throws(() => demoTask(real, { train: -1 }), { code: 'ZOFO_INVALID_ARG' });
  t.throws(() => demoTask(real, { seed: 1.5 }), { code: 'ZOFO_INVALID_ARG' });
  t.same(demoTask(real).dev.length, 200, 'defaults: 256 train, 200 dev');
});

t.test('genuinely pretrained: held-out LM loss far below a random init', async (t) => {
  const model = await loadModel(demoModelDir());
  t.teardown(() => model.dispose());
  const tok = model.tokenizer as Tokenizer;
  const heldOut = pretrainingCorpus(400, HELD_OUT_SEED).map((line): LmExample => {
    const ids = tok.encode(line);
    return { prompt: ids.slice(0, 1), target: ids.slice(1) };
  });
  const logV = Math.log(model.config.vocabSize);
  const pretrained = await lmLoss(model, heldOut);

  // The same architecture at HF's init, N(0, 0.02²), norms 1.
  const randomDir = t.testdir({
    'config.json': readFileSync(join(dir, 'config.json'), 'utf8'),
    'tokenizer.json': readFileSync(join(dir, 'tokenizer.json'), 'utf8'),
  });
  const rng = new Rng(99);
  const weights = new Map<string, TensorData>();
  for (const name of model.parameterNames()) {
    const shape = model.tensorShape(name);
    const n = shape.reduce((a, b) => a * b, 1);
    const norm = /norm/.test(name);
    weights.set(name, {
      dtype: 'F32',
      shape,
      data: Float32Array.from({ length: n }, () => (norm ? 1 : 0.02 * Math.sqrt(-2 * Math.log(1 - rng.next())) * Math.cos(2 * Math.PI * rng.next()))),
    });
  }
  await writeSafetensors(join(randomDir, 'model.safetensors'), weights);
  const random = await loadModel(randomDir);
  t.teardown(() => random.dispose());
  const randomLoss = await lmLoss(random, heldOut);
  t.comment(`held-out LM loss: pretrained ${pretrained.toFixed(3)}, random init ${randomLoss.toFixed(3)}, log V ${logV.toFixed(3)}`);
  t.ok(Math.abs(randomLoss - logV) < 0.3, 'a random init is near log V');
  t.ok(pretrained < 0.4 * logV, `pretrained loss ${pretrained.toFixed(3)} < 0.4·log V = ${(0.4 * logV).toFixed(3)}`);
});

t.test('zero-shot: well above chance, far from perfect', async (t) => {
  const model = await loadModel(demoModelDir());
  t.teardown(() => model.dispose());
  const { dev } = demoTask(model.tokenizer as Tokenizer, TASK);
  const kinds = demoTaskReviews(TASK).dev.map((r) => r.kind);
  const { all, correct } = await accuracy(model, dev);
  const k = byKind(correct, kinds);
  t.comment(`pretrained dev accuracy ${pct(all)} (${REVIEW_KINDS.map((x) => `${x} ${pct(k[x])}`).join(', ')})`);
  const readme = readFileSync(join(demoModelDir(), 'README.md'), 'utf8');
  const stated = /demo dev accuracy before fine-tuning \(the (\d+) dev reviews of seed (\d+) that `zofo demo` evaluates\): ([\d.]+%)/.exec(readme);
  t.ok(stated, "the model README states the zero-shot accuracy on the demo's split");
  t.same(
    stated?.slice(1),
    [String(DEMO_SPLIT.dev), String(DEMO_SPLIT.seed), pct(all)],
    'the README states what the demo measures (written by scripts/make-demo-model.ts)',
  );
  t.ok(all >= 0.62, `≥ 62% (chance 50%): ${pct(all)}`);
  t.ok(all <= 0.85, `≤ 85%, room for fine-tuning: ${pct(all)}`);
  t.ok(k.simple >= 0.95, 'simple reviews: the pretraining distribution');
  t.ok(k.negation <= 0.6, 'negated reviews: rarely judged in pretraining');
});

/** Fine-tunes a fresh copy of the demo model with the Trainer; returns dev accuracy before and after. */
async function fineTune(mode: 'hybrid' | 'lora' | 'zo', steps: number, options: ConstructorParameters<typeof HybridOptimizer>[1]) {
  const model = await loadModel(demoModelDir());
  try {
    const { train, dev } = demoTask(model.tokenizer as Tokenizer, TASK);
    const before = (await accuracy(model, dev)).all;
    if (mode !== 'zo') model.addLoRA({ rank: 8, seed: 1 });
    const opt = new HybridOptimizer(model, { ...options, seed: 1 });
    const trainer = new Trainer(model, opt, { batchSize: 16, steps, seed: 0 });
    const t0 = performance.now();
    for await (const ev of trainer.fit(train)) if (ev.type === 'done' && ev.reason !== 'completed') throw new Error(`fit ended: ${ev.reason}`);
    const seconds = (performance.now() - t0) / 1000;
    const after = (await accuracy(model, dev)).all;
    return { before, after, seconds };
  } finally {
    model.dispose();
  }
}

t.test('fine-tuning improves dev accuracy (fixed seeds)', async (t) => {
  const runs = [
    { mode: 'hybrid', steps: 100, margin: 0.1, options: { zo: { lr: 5e-4 }, fo: { lr: 1e-2, optimizer: 'adamw' } } },
    { mode: 'lora', steps: 100, margin: 0.1, options: { fo: { lr: 1e-2, optimizer: 'adamw' } } },
    { mode: 'zo', steps: 200, margin: 0.05, options: { zo: { lr: 1e-3, mu: 1e-2 } } },
  ] as const;
  for (const r of runs) {
    const { before, after, seconds } = await fineTune(r.mode, r.steps, r.options);
    t.comment(`${r.mode}: ${r.steps} steps × 16, dev ${pct(before)} → ${pct(after)} in ${seconds.toFixed(1)} s`);
    t.ok(after - before >= r.margin, `${r.mode} gains ≥ ${100 * r.margin} points: ${pct(before)} → ${pct(after)}`);
  }
});
