/**
 * Builds demo/model/: a tiny Llama (random init), PRETRAINED with zofo's own
 * full-parameter backprop (HybridOptimizer { fo: { params: 'all', optimizer: 'adamw' } })
 * on the synthetic review corpus of lib/demo/language.ts, then saved as an HF checkpoint
 * (config.json, model.safetensors, tokenizer.json, tokenizer_config.json, README.md).
 *
 *   npm run make-demo-model                 # writes <package>/demo/model
 *   node dist/scripts/make-demo-model.js --out /tmp/m --steps 3000 --seed 1
 *   node dist/scripts/make-demo-model.js --readme-only
 *       # re-measures the shipped model (no training): checks the held-out LM loss its
 *       # README states and rewrites the README's zero-shot accuracy line
 *
 * Deterministic for a given seed on one machine (the engine is bit-reproducible for a
 * thread count; BLAS on another CPU may round differently).
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { HybridOptimizer, loadModel, loadTokenizer, writeSafetensors, type LmExample, type Model, type TensorData } from '../lib/index.js';
import { CORPUS_DEFAULTS, Rng, pretrainingCorpus, REVIEW_KINDS, tokenizerFiles, vocabulary, type ReviewKind } from '../lib/demo/language.js';
import { demoModelDir, demoTask, demoTaskReviews } from '../lib/demo/model.js';
import { DEMO_SPLIT } from '../lib/cli/demo.js';

const { values: args } = parseArgs({
  options: {
    out: { type: 'string' },
    seed: { type: 'string', default: '1' },
    steps: { type: 'string', default: '3000' },
    batch: { type: 'string', default: '32' },
    lr: { type: 'string', default: '3e-3' },
    hidden: { type: 'string', default: '64' },
    layers: { type: 'string', default: '2' },
    heads: { type: 'string', default: '4' },
    ffn: { type: 'string', default: '' },
    corpus: { type: 'string', default: '40000' },
    dtype: { type: 'string', default: 'F32' },
    text: { type: 'string', default: String(CORPUS_DEFAULTS.text) },
    'hard-verdicts': { type: 'string', default: String(CORPUS_DEFAULTS.hardVerdicts) },
    'label-noise': { type: 'string', default: String(CORPUS_DEFAULTS.labelNoise) },
    'readme-only': { type: 'boolean', default: false },
  },
});

const num = (name: keyof typeof args) => {
  const v = Number(args[name]);
  if (!Number.isFinite(v)) throw new Error(`--${name}: not a number: ${String(args[name])}`);
  return v;
};
const seed = num('seed'),
  steps = num('steps'),
  batchSize = num('batch'),
  lr = num('lr');
const hidden = num('hidden'),
  layers = num('layers'),
  heads = num('heads');
const ffn = args.ffn ? num('ffn') : 3 * hidden;
const corpusSize = num('corpus');
const dtype = args.dtype === 'BF16' ? 'BF16' : 'F32';
const corpusOptions = { text: num('text'), hardVerdicts: num('hard-verdicts'), labelNoise: num('label-noise') };
const out = resolve(args.out ?? demoModelDir());

const vocab = vocabulary();
const config = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  vocab_size: vocab.length,
  hidden_size: hidden,
  intermediate_size: ffn,
  num_hidden_layers: layers,
  num_attention_heads: heads,
  num_key_value_heads: heads,
  head_dim: hidden / heads,
  max_position_embeddings: 64,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  rope_scaling: null,
  hidden_act: 'silu',
  tie_word_embeddings: true,
  attention_bias: false,
  mlp_bias: false,
  initializer_range: 0.02,
  torch_dtype: dtype === 'BF16' ? 'bfloat16' : 'float32',
  bos_token_id: 1,
  eos_token_id: 2,
  pad_token_id: 3,
};

function log(msg: string) {
  process.stdout.write(`${msg}\n`);
}

/** Random init as HF LlamaPreTrainedModel does: N(0, 0.02²) linears and embedding, norms 1. */
function randomWeights(rng: Rng): Map<string, TensorData> {
  const t = new Map<string, TensorData>();
  const normal = () => Math.sqrt(-2 * Math.log(1 - rng.next())) * Math.cos(2 * Math.PI * rng.next());
  const add = (name: string, shape: number[], fill: () => number) => {
    t.set(name, { dtype: 'F32', shape, data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, fill) });
  };
  const w = (name: string, shape: number[]) => add(name, shape, () => config.initializer_range * normal());
  const ones = (name: string, n: number) => add(name, [n], () => 1);
  w('model.embed_tokens.weight', [vocab.length, hidden]);
  for (let l = 0; l < layers; l++) {
    const p = `model.layers.${l}`;
    ones(`${p}.input_layernorm.weight`, hidden);
    for (const m of ['q_proj', 'k_proj', 'v_proj', 'o_proj']) w(`${p}.self_attn.${m}.weight`, [hidden, hidden]);
    ones(`${p}.post_attention_layernorm.weight`, hidden);
    w(`${p}.mlp.gate_proj.weight`, [ffn, hidden]);
    w(`${p}.mlp.up_proj.weight`, [ffn, hidden]);
    w(`${p}.mlp.down_proj.weight`, [hidden, ffn]);
  }
  ones('model.norm.weight', hidden);
  return t;
}

function bf16Bits(data: Float32Array): Uint16Array {
  const u = new Uint32Array(data.buffer, data.byteOffset, data.length);
  return Uint16Array.from(u, (x) => (x + 0x7fff + ((x >>> 16) & 1)) >>> 16); // round to nearest even (finite values)
}

async function writeModelDir(dir: string, weights: Map<string, TensorData>, readme?: string) {
  await mkdir(dir, { recursive: true });
  const tok = tokenizerFiles();
  await writeFile(join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  await writeFile(join(dir, 'tokenizer.json'), `${JSON.stringify(tok.tokenizer)}\n`);
  await writeFile(join(dir, 'tokenizer_config.json'), `${JSON.stringify(tok.config, null, 2)}\n`);
  await writeSafetensors(join(dir, 'model.safetensors'), weights, { producer: 'zofo scripts/make-demo-model.ts' });
  if (readme) await writeFile(join(dir, 'README.md'), readme);
}

async function lmLoss(model: Model, examples: LmExample[]): Promise<number> {
  let sum = 0,
    n = 0;
  for (let i = 0; i < examples.length; i += 64) {
    const b = examples.slice(i, i + 64);
    const tokens = b.reduce((s, e) => s + e.target.length, 0);
    sum += (await model.loss(b)).loss * tokens; // per-batch mean over target tokens
    n += tokens;
  }
  return sum / n;
}

/** Dev accuracy of the demo task on the split `zofo demo` evaluates, overall and per review kind. */
async function demoAccuracy(model: Model): Promise<{ all: number; byKind: Record<ReviewKind, number> }> {
  const tok = model.tokenizer!;
  const { dev } = demoTask(tok, DEMO_SPLIT);
  const kinds = demoTaskReviews(DEMO_SPLIT).dev.map((r) => r.kind);
  const correct: boolean[] = [];
  for (let i = 0; i < dev.length; i += 100) {
    const b = dev.slice(i, i + 100);
    (await model.loss(b)).predictions!.forEach((p, j) => correct.push(p === b[j].label));
  }
  const acc = (sel: (i: number) => boolean) => {
    const idx = correct.map((_, i) => i).filter(sel);
    return idx.filter((i) => correct[i]).length / idx.length;
  };
  const byKind = Object.fromEntries(REVIEW_KINDS.map((k) => [k, acc((i) => kinds[i] === k)])) as Record<ReviewKind, number>;
  return { all: acc(() => true), byKind };
}

const fmt = (a: { all: number; byKind: Record<ReviewKind, number> }) =>
  `${(100 * a.all).toFixed(1)}% (${REVIEW_KINDS.map((k) => `${k} ${(100 * a.byKind[k]).toFixed(1)}%`).join(', ')})`;

/** The README line of the zero-shot accuracy, on the split `zofo demo` evaluates. */
const accuracyLine = (acc: { all: number; byKind: Record<ReviewKind, number> }) =>
  `- demo dev accuracy before fine-tuning (the ${DEMO_SPLIT.dev} dev reviews of seed ${DEMO_SPLIT.seed} that \`zofo demo\` evaluates): ${fmt(acc)}`;

const heldOutCorpus = (tok: { encode(s: string, o: { addSpecialTokens: boolean }): number[] }): LmExample[] =>
  pretrainingCorpus(2000, seed + 1_000_003, corpusOptions).map((line) => {
    const ids = tok.encode(line, { addSpecialTokens: false });
    return { prompt: ids.slice(0, 1), target: ids.slice(1) };
  });

/**
 * --readme-only: the shipped model measured again without training. Its README must
 * state the held-out LM loss measured here (else it describes other weights); the
 * zero-shot accuracy line is rewritten from the measurement.
 */
async function readmeOnly() {
  const model = await loadModel(out);
  try {
    const loss = await lmLoss(model, heldOutCorpus(model.tokenizer!));
    const acc = await demoAccuracy(model);
    const file = join(out, 'README.md');
    const readme = readFileSync(file, 'utf8');
    const stated = /→ ([\d.]+) pretrained/.exec(readme)?.[1];
    if (stated !== loss.toFixed(3))
      throw new Error(
        `${file} states a held-out LM loss of ${stated ?? '(none)'}; these weights measure ${loss.toFixed(3)}: retrain with npm run make-demo-model`,
      );
    const lines = readme.split('\n');
    const at = lines.findIndex((l) => l.startsWith('- demo dev accuracy'));
    if (at < 0) throw new Error(`${file}: no "- demo dev accuracy" line to rewrite`);
    lines[at] = accuracyLine(acc);
    await writeFile(file, lines.join('\n'));
    log(`${file}: held-out LM loss ${loss.toFixed(3)} as stated; ${lines[at]}`);
  } finally {
    model.dispose();
  }
}

async function main() {
  const t0 = performance.now();
  const work = await mkdtemp(join(tmpdir(), 'zofo-demo-init-'));
  try {
    await writeModelDir(work, randomWeights(new Rng(seed * 7919 + 17)));
    const model = await loadModel(work);
    const tok = model.tokenizer ?? (await loadTokenizer(work));
    const toLm = (line: string): LmExample => {
      const ids = tok.encode(line, { addSpecialTokens: false });
      return { prompt: ids.slice(0, 1), target: ids.slice(1) };
    };
    const corpus = pretrainingCorpus(corpusSize, seed, corpusOptions).map(toLm);
    const heldOut = heldOutCorpus(tok);
    const longest = Math.max(...corpus.map((e) => e.prompt.length + e.target.length));
    const params = model.parameterCounts().reduce((a, b) => a + b, 0);
    log(`demo model: llama hidden ${hidden}, ${layers} layers, ${heads} heads, ffn ${ffn}, vocab ${vocab.length}: ${params} parameters`);
    log(`corpus: ${corpus.length} lines (seed ${seed}, ${JSON.stringify(corpusOptions)}), longest ${longest} tokens`);
    const initLoss = await lmLoss(model, heldOut);
    log(
      `random init: held-out LM loss ${initLoss.toFixed(3)} (log V = ${Math.log(vocab.length).toFixed(3)}); demo dev accuracy ${fmt(await demoAccuracy(model))}`,
    );

    const opt = new HybridOptimizer(model, {
      fo: { lr, params: 'all', optimizer: 'adamw', weightDecay: 0.01, schedule: { kind: 'cosine', warmupSteps: Math.min(200, steps >> 3), minLr: lr / 20 } },
      totalSteps: steps,
      seed,
    });
    const rng = new Rng(seed + 99);
    let order: number[] = [],
      at = corpus.length;
    let running = 0,
      count = 0;
    const tTrain = performance.now();
    for (let k = 0; k < steps; k++) {
      if (at + batchSize > order.length) {
        // random reshuffling, a fresh permutation per epoch
        order = rng.shuffle(Array.from({ length: corpus.length }, (_, i) => i));
        at = 0;
      }
      const batch = order.slice(at, at + batchSize).map((i) => corpus[i]);
      at += batchSize;
      const r = await opt.step(batch);
      running += r.loss;
      count++;
      if ((k + 1) % 250 === 0 || k + 1 === steps) {
        log(
          `step ${k + 1}/${steps}  train loss ${(running / count).toFixed(3)}  lr ${r.lrX.toExponential(2)}  ${((performance.now() - tTrain) / 1000).toFixed(1)} s`,
        );
        running = 0;
        count = 0;
      }
    }
    const trainSeconds = (performance.now() - tTrain) / 1000;
    const finalLoss = await lmLoss(model, heldOut);
    const acc = await demoAccuracy(model);
    log(`pretrained: held-out LM loss ${finalLoss.toFixed(3)}; demo dev accuracy ${fmt(acc)}; ${trainSeconds.toFixed(1)} s`);

    const weights = new Map<string, TensorData>();
    const stored = model.storedNames();
    const names = model.parameterNames();
    for (let i = 0; i < names.length; i++) {
      const data = await model.tensor(names[i]);
      weights.set(
        stored[i],
        dtype === 'BF16' ? { dtype, shape: model.tensorShape(names[i]), data: bf16Bits(data) } : { dtype, shape: model.tensorShape(names[i]), data },
      );
    }
    model.dispose();
    const command = `node dist/scripts/make-demo-model.js ${process.argv.slice(2).join(' ')}`.trim();
    const readme = `# zofo demo model

A tiny Llama (LlamaForCausalLM: hidden ${hidden}, ${layers} layers, ${heads} heads, ffn ${ffn},
vocab ${vocab.length}, tied embeddings; ${params} parameters, ${dtype}) pretrained from a random init
with zofo's own full-parameter backprop (HybridOptimizer fo.params 'all', AdamW) on the synthetic
review language of lib/demo/language.ts. \`zofo demo\` fine-tunes it on the built-in
sentiment task (lib/demo/model.ts demoTask).

Made by \`npm run make-demo-model\` (${command}):

- seed ${seed}; ${steps} steps of batch ${batchSize}, AdamW lr ${lr} (cosine, warm-up), weight decay 0.01
- corpus: ${corpus.length} lines, options ${JSON.stringify(corpusOptions)}
- held-out LM loss: ${initLoss.toFixed(3)} at random init (log V = ${Math.log(vocab.length).toFixed(3)}) → ${finalLoss.toFixed(3)} pretrained
${accuracyLine(acc)}
- pretraining time: ${trainSeconds.toFixed(1)} s on ${(await import('node:os')).cpus().length} CPU threads
`;
    await writeModelDir(out, weights, readme);

    // The saved files read back to the same model.
    const check = await loadModel(out);
    const again = await demoAccuracy(check);
    const heldAgain = await lmLoss(check, heldOut);
    check.dispose();
    const size = ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'README.md'].reduce(
      (s, f) => s + statSync(join(out, f)).size,
      0,
    );
    log(`wrote ${out} (${(size / 1024).toFixed(0)} KiB); reloaded: LM loss ${heldAgain.toFixed(3)}, dev accuracy ${fmt(again)}`);
    log(`total ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

await (args['readme-only'] ? readmeOnly() : main());
