// The float64 reference model (test/helpers/reference-model.ts), checked on its own:
// analytic LoRA gradients against central finite differences, padding invariance,
// causality, B = 0 adapters, one named test per model pitfall (docs/architecture.md), the
// MeZO scores, and the tiny-checkpoint writer. Fresh seeds every run, printed.
import t, { type Test } from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ReferenceModel, type ClassificationExample, type LmExample, type LoraWeights, type Tensor64, type Weights } from './helpers/reference-model.js';
import {
  fromBf16Bits,
  fromF16Bits,
  randomCheckpoint,
  randomLora,
  seededRandom,
  storedValue,
  toBf16Bits,
  toF16Bits,
  writeCheckpointDir,
  type Checkpoint64,
  type Random,
  type TinyFamily,
} from './helpers/tiny-checkpoints.js';
import { freshSeed } from './helpers/reference.js';
import { kinkClearance, lossSequences, reluInputs, sameReluPattern } from './helpers/relu-kinks.js';

const SEED = freshSeed();
t.comment(`input seed ${SEED}`);
let seedCounter = 0;
/** A distinct seed per use, derived from the printed run seed. */
const nextSeed = (): number => (SEED + 0x9e3779b9 * ++seedCounter) >>> 0;

// ---- variants under test ----

interface Variant {
  name: string;
  family: TinyFamily;
  opts?: Parameters<typeof randomCheckpoint>[2];
  /** LoRA targets for the gradient test (undefined: the PEFT defaults). */
  targets?: string[];
}

const VARIANTS: Variant[] = [
  { name: 'llama GQA untied', family: 'llama', opts: { kvHeads: 2, tie: false } },
  {
    name: 'llama MHA tied, all linears',
    family: 'llama',
    opts: { kvHeads: 4, tie: true },
    targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
  },
  { name: 'qwen2 biases', family: 'qwen2', targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj'] },
  { name: 'opt pre-LN', family: 'opt', targets: ['q_proj', 'k_proj', 'v_proj', 'out_proj', 'fc1', 'fc2'] },
  { name: 'opt-350m post-LN', family: 'opt-350m', targets: ['q_proj', 'v_proj', 'project_in', 'project_out', 'fc2'] },
  { name: 'gpt2 transformer. prefix', family: 'gpt2', opts: { prefix: true }, targets: ['c_attn', 'c_proj', 'c_fc'] },
  { name: 'gpt2 bare keys, untied', family: 'gpt2', opts: { prefix: false, buffers: false, tie: false } },
];

function build(v: Variant, seed = nextSeed()): { ckpt: Checkpoint64; model: ReferenceModel; seed: number } {
  const ckpt = randomCheckpoint(v.family, seed, v.opts);
  return { ckpt, model: new ReferenceModel(ckpt.config, ckpt.weights), seed };
}

function tokens(r: Random, n: number, V: number): number[] {
  return Array.from({ length: n }, () => r.int(V));
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function copyWeights(w: Weights): Weights {
  return new Map([...w].map(([k, v]) => [k, { shape: [...v.shape], data: v.data.slice() }]));
}

/** All traced activations of one forward. */
function capture(model: ReferenceModel, ids: number[][], opts: { lora?: LoraWeights } = {}): { logits: Float64Array[]; act: Map<string, Tensor64> } {
  const act = new Map<string, Tensor64>();
  const logits = model.forward(ids, { ...opts, trace: (name, data, shape) => act.set(name, { shape: [...shape], data: data.slice() }) });
  return { logits, act };
}

function get(act: Map<string, Tensor64>, name: string): Tensor64 {
  const v = act.get(name);
  if (v === undefined) throw new Error(`no trace ${name}`);
  return v;
}

function row(x: Tensor64, n: number): Float64Array {
  const M = x.shape[x.shape.length - 1];
  return x.data.slice(n * M, (n + 1) * M);
}

// ---- hand computations (direct formulas, independent of the model code) ----

/** W [out, in] (nn.Linear) times x, plus b. */
function linearHand(W: Tensor64, x: ArrayLike<number>, b?: Tensor64): Float64Array {
  const [out, inn] = W.shape;
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = b ? b.data[o] : 0;
    for (let i = 0; i < inn; i++) s += W.data[o * inn + i] * x[i];
    y[o] = s;
  }
  return y;
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

function softmax(x: number[]): number[] {
  const m = Math.max(...x);
  const e = x.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

function logSoftmax(x: ArrayLike<number>): number[] {
  const arr = Array.from(x);
  const m = Math.max(...arr);
  const lse = m + Math.log(arr.reduce((a, v) => a + Math.exp(v - m), 0));
  return arr.map((v) => v - lse);
}

function layerNormHand(x: ArrayLike<number>, w: Float64Array, b: Float64Array, eps: number): Float64Array {
  const n = x.length;
  let mean = 0;
  for (let i = 0; i < n; i++) mean += x[i] / n;
  let v = 0;
  for (let i = 0; i < n; i++) v += (x[i] - mean) ** 2 / n;
  return Float64Array.from({ length: n }, (_, i) => ((x[i] - mean) / Math.sqrt(v + eps)) * w[i] + b[i]);
}

/** Attention output of one query head over keys/values [j][HS], scale s. */
function headAttention(q: ArrayLike<number>, keys: ArrayLike<number>[], values: ArrayLike<number>[], scale: number): Float64Array {
  const p = softmax(keys.map((k) => dot(q, k) * scale));
  const out = new Float64Array(q.length);
  p.forEach((pj, j) => {
    for (let d = 0; d < out.length; d++) out[d] += pj * values[j][d];
  });
  return out;
}

function slice(x: Float64Array, from: number, n: number): Float64Array {
  return x.slice(from, from + n);
}

// ---- (a) analytic LoRA gradients vs central finite differences ----

function classificationBatch(r: Random, V: number): ClassificationExample[] {
  return [0, 1].map(() => {
    const K = 2 + r.int(2);
    return { prompt: tokens(r, 2 + r.int(4), V), candidates: Array.from({ length: K }, () => tokens(r, 1 + r.int(3), V)), label: r.int(K) };
  });
}

function lmBatch(r: Random, V: number): LmExample[] {
  // Prompts of ≥ 2 tokens: every scored position then attends to ≥ 2 keys, so q/k gradients are not identically zero.
  return [0, 1].map(() => ({ prompt: tokens(r, 2 + r.int(3), V), target: tokens(r, 1 + r.int(3), V) }));
}

const FD_H = 1e-5;
// |analytic − FD| ≤ 1e-6 · max(|analytic|, |FD|, 1e-3): relative, with an absolute floor of
// 1e-9 where a gradient entry is tiny. The FD is the five-point central difference
// (−f(2h) + 8f(h) − 8f(−h) + f(−2h)) / 12h, truncation h⁴·f⁽⁵⁾/30 ≈ 3e-22·f⁽⁵⁾; rounding
// noise ≈ 1e-10. The three-point one's h²·f'''/6 reached 2.4e-9 (f''' ≈ 140 along a k_proj
// lora_B entry, input seed 2415085369) and failed 1 of 40 seeded runs.
const FD_REL = 1e-6;
const FD_FLOOR = 1e-3;
// OPT's ReLU: a step of 2h moves a ReLU input z by about |∂z/∂θ|·2h. With every |z| ≥ 1e-4·rms(z),
// crossing 0 needs |∂z/∂θ| > 5·rms(z) (measured for 10·rms(z): never, over 56684 base-weight entries of
// model.test.ts). 16 batch draws all missing the clearance: < 1e-15.
const KINK_CLEARANCE = 1e-4;
const BATCH_DRAWS = 16;

for (const v of VARIANTS) {
  for (const kind of ['classification', 'lm'] as const) {
    t.test(`(a) ${v.name}: ${kind} LoRA gradients match central differences`, (t) => {
      const { ckpt, model, seed } = build(v);
      const r = seededRandom(seed ^ 0x5bd1e995);
      const lora = randomLora(ckpt, seed + 1, { targets: v.targets, r: 2, alpha: 6 });
      const drawBatch = (): ClassificationExample[] | LmExample[] =>
        kind === 'classification' ? classificationBatch(r, model.vocabSize) : lmBatch(r, model.vocabSize);
      // A ReLU input within ~1e-7 of 0 would be crossed by most steps below; redraw the batch
      // until all are KINK_CLEARANCE clear of 0 (a draw misses with probability 0.07, measured).
      let batch = drawBatch();
      for (let d = 1; d < BATCH_DRAWS && kinkClearance(reluInputs(model, lossSequences(batch), { lora })) < KINK_CLEARANCE; d++) batch = drawBatch();
      const padding = r.uniform() < 0.5 ? ('left' as const) : ('right' as const);
      const loss = (): number =>
        kind === 'classification'
          ? model.classificationBatchLoss(batch as ClassificationExample[], { lora, padding }).loss
          : model.lmBatchLoss(batch as LmExample[], { lora, padding }).loss;
      const { loss: L0, grads } = model.loraGradients(batch, kind, { lora, padding });
      t.equal(L0, loss(), 'loraGradients reports the same loss as the loss function');
      t.equal(grads.size, lora.tensors.size, 'a gradient for every LoRA tensor');

      const seqs = lossSequences(batch);
      const relu0 = reluInputs(model, seqs, { lora, padding });
      let worst = 0,
        checked = 0,
        redrawn = 0;
      /** Relative error of `analytic` against the five-point central difference of loss along `move`, and whether a step of up to ±2h flips some ReLU. */
      const difference = (analytic: number, move: (step: number) => void): { err: number; crossesKink: boolean } => {
        const at = (offset: number): { loss: number; sameRelu: boolean } => {
          move(offset);
          const value = { loss: loss(), sameRelu: sameReluPattern(relu0, reluInputs(model, seqs, { lora, padding })) };
          move(-offset);
          return value;
        };
        const [p2, p1, m1, m2] = [2, 1, -1, -2].map((k) => at(k * FD_H));
        const fd = (8 * (p1.loss - m1.loss) - (p2.loss - m2.loss)) / (12 * FD_H);
        return {
          err: Math.abs(analytic - fd) / Math.max(Math.abs(analytic), Math.abs(fd), FD_FLOOR),
          crossesKink: ![p2, p1, m1, m2].every((x) => x.sameRelu),
        };
      };
      // OPT's ReLU has kinks: a step of up to ±2h that moves a ReLU input across 0 spoils the
      // difference (with ±h steps, 26 of 52960 sampled entries crossed one without the clearance
      // above, 0 of 14400 with it). With the same ReLUs active at −2h … +2h, all four losses are values of
      // one smooth function whose slope is the analytic derivative, so a crossing entry (or
      // direction) is redrawn, up to 8 times: 9 in a row have probability < 1e-17 even at
      // 1e-2 a draw. Only the forward pass decides, never the gradient under test, so a wrong
      // gradient cannot hide.
      const check = (draw: () => { analytic: number; move: (step: number) => void; label: string }): { err: number; label: string } => {
        let at = draw(),
          d = difference(at.analytic, at.move);
        for (let again = 0; d.crossesKink && again < 8; again++, redrawn++) {
          at = draw();
          d = difference(at.analytic, at.move);
        }
        return { err: d.err, label: at.label };
      };
      for (const [name, tensor] of lora.tensors) {
        const g = grads.get(name) as Float64Array;
        t.ok(
          g.some((x) => x !== 0),
          `${name}: gradient is nonzero`,
        );
        for (let k = 0; k < 3; k++) {
          // a few random entries per tensor
          const { err, label } = check(() => {
            const e = r.int(tensor.data.length);
            return {
              analytic: g[e],
              move: (step) => {
                tensor.data[e] += step;
              },
              label: `${name}[${e}]: analytic ${g[e]}`,
            };
          });
          worst = Math.max(worst, err);
          checked++;
          if (err > FD_REL) t.fail(`${label} disagrees with FD (rel ${err.toExponential(2)})`);
        }
      }
      // one random unit direction through every LoRA tensor at once
      const dir = check(() => {
        const dirs = new Map([...lora.tensors].map(([name, x]) => [name, Float64Array.from(x.data, () => r.normal())]));
        const norm = Math.sqrt([...dirs.values()].reduce((a, d) => a + dot(d, d), 0));
        for (const d of dirs.values())
          d.forEach((x, i) => {
            d[i] = x / norm;
          });
        let analytic = 0;
        for (const [name, g] of grads) analytic += dot(g, dirs.get(name) as Float64Array);
        return {
          analytic,
          move: (step) => {
            for (const [name, x] of lora.tensors)
              (dirs.get(name) as Float64Array).forEach((d, i) => {
                x.data[i] += step * d;
              });
          },
          label: `directional derivative ${analytic.toPrecision(6)}`,
        };
      });
      t.ok(dir.err <= FD_REL, `${dir.label} (rel err ${dir.err.toExponential(2)})`);
      const kinks = relu0.length > 0 ? `, ${redrawn} redrawn off a ReLU kink` : '';
      t.ok(worst <= FD_REL, `${checked} entries within ${FD_REL} relative (worst ${worst.toExponential(2)}${kinks}, ${padding} padding)`);
      t.end();
    });
  }
}

// ---- (b) padding invariance, (c) causality, (d) B = 0 ----

for (const v of VARIANTS) {
  t.test(`(b) ${v.name}: a sequence's logits do not depend on padding or batch mates`, (t) => {
    const { ckpt, model, seed } = build(v);
    const r = seededRandom(seed);
    const V = model.vocabSize;
    const short = tokens(r, 2 + r.int(3), V);
    const mates = [tokens(r, 7 + r.int(4), V), tokens(r, 5 + r.int(2), V)];
    const lora = randomLora(ckpt, seed + 2);
    for (const withLora of [false, true]) {
      const opts = withLora ? { lora } : {};
      const alone = model.forward([short], opts)[0];
      for (const padding of ['right', 'left'] as const) {
        const padId = 1 + r.int(V - 1);
        const batched = model.forward([mates[0], short, mates[1]], { ...opts, padding, padId });
        const d = maxAbsDiff(alone, batched[1]);
        t.ok(d <= 1e-12, `${padding} padding${withLora ? ', LoRA' : ''}: max |Δ| = ${d.toExponential(2)} ≤ 1e-12`);
        t.equal(batched[1].length, short.length * V, 'logits for the real tokens only');
        const mateAlone = model.forward([mates[1]], opts)[0];
        t.ok(maxAbsDiff(mateAlone, batched[2]) <= 1e-12, `${padding} padding: a shorter batch mate is unchanged too`);
      }
    }
    t.end();
  });

  t.test(`(c) ${v.name}: changing a later token leaves earlier logits unchanged`, (t) => {
    const { model, seed } = build(v);
    const r = seededRandom(seed);
    const V = model.vocabSize;
    const seq = tokens(r, 8, V);
    const at = 2 + r.int(5);
    const changed = [...seq];
    changed[at] = (seq[at] + 1 + r.int(V - 1)) % V;
    const [a, b] = model.forward([seq, changed]);
    t.ok(maxAbsDiff(a.subarray(0, at * V), b.subarray(0, at * V)) <= 1e-12, `positions < ${at} unchanged`);
    t.ok(maxAbsDiff(a.subarray(at * V), b.subarray(at * V)) > 1e-6, `positions ≥ ${at} do change (the test can fail)`);
    t.end();
  });

  t.test(`(d) ${v.name}: a LoRA adapter with B = 0 leaves the logits unchanged`, (t) => {
    const { ckpt, model, seed } = build(v);
    const r = seededRandom(seed);
    const ids = [tokens(r, 6, model.vocabSize), tokens(r, 3, model.vocabSize)];
    const base = model.forward(ids);
    const zero = model.forward(ids, { lora: randomLora(ckpt, seed + 3, { targets: v.targets, zeroB: true }) });
    const live = model.forward(ids, { lora: randomLora(ckpt, seed + 3, { targets: v.targets }) });
    t.ok(maxAbsDiff(base[0], zero[0]) === 0 && maxAbsDiff(base[1], zero[1]) === 0, 'B = 0: identical logits');
    t.ok(maxAbsDiff(base[0], live[0]) > 1e-6, 'B ≠ 0: logits change (the test can fail)');
    t.end();
  });
}

// ---- (e) named pitfalls ----

t.test('(e) Llama RoPE rotates halves (rotate_half), with rope_theta from config', (t) => {
  const seed = nextSeed();
  const ckpt = randomCheckpoint('llama', seed);
  const theta = 50 + 1000 * seededRandom(seed).uniform(); // not the 10000 default
  ckpt.config.rope_theta = theta;
  const model = new ReferenceModel(ckpt.config, ckpt.weights);
  const r = seededRandom(seed + 1);
  const T = 7;
  const { act } = capture(model, [tokens(r, T, model.vocabSize)]);
  const HS = 8,
    NH = 4;
  const q = get(act, 'model.layers.0.self_attn.q_proj'),
    qr = get(act, 'model.layers.0.self_attn.q_rope');
  const pos = T - 1,
    head = 1 + r.int(NH - 1);
  const x = slice(row(q, pos), head * HS, HS),
    got = slice(row(qr, pos), head * HS, HS);
  // HF: inv_freq = 1/theta^(arange(0, d, 2)/d); emb = cat(freqs, freqs); q·cos + rotate_half(q)·sin
  const half = new Float64Array(HS),
    inter = new Float64Array(HS);
  for (let i = 0; i < HS / 2; i++) {
    const a = pos / theta ** ((2 * i) / HS);
    half[i] = x[i] * Math.cos(a) - x[i + HS / 2] * Math.sin(a);
    half[i + HS / 2] = x[i + HS / 2] * Math.cos(a) + x[i] * Math.sin(a);
    inter[2 * i] = x[2 * i] * Math.cos(a) - x[2 * i + 1] * Math.sin(a); // the interleaved (GPT-J) convention
    inter[2 * i + 1] = x[2 * i + 1] * Math.cos(a) + x[2 * i] * Math.sin(a);
  }
  t.ok(maxAbsDiff(got, half) <= 1e-12, `q at position ${pos}, head ${head}: HF rotate_half formula (|Δ| ${maxAbsDiff(got, half).toExponential(2)})`);
  t.ok(maxAbsDiff(got, inter) > 1e-3, 'and not the interleaved-pairs convention');
  t.ok(maxAbsDiff(row(q, 0), row(qr, 0)) === 0, 'position 0 is not rotated');
  const k = get(act, 'model.layers.0.self_attn.k_proj'),
    kr = get(act, 'model.layers.0.self_attn.k_rope');
  const kx = slice(row(k, pos), HS, HS),
    kgot = slice(row(kr, pos), HS, HS);
  const a0 = pos; // i = 0: inv_freq 1
  t.ok(Math.abs(kgot[0] - (kx[0] * Math.cos(a0) - kx[HS / 2] * Math.sin(a0))) <= 1e-12, 'k is rotated the same way');
  t.end();
});

t.test('(e) Llama GQA: query head h reads kv head ⌊h / n_rep⌋', (t) => {
  const seed = nextSeed();
  const model = build({ name: 'gqa', family: 'llama', opts: { kvHeads: 2 } }, seed).model;
  const r = seededRandom(seed);
  const T = 5,
    NH = 4,
    NKV = 2,
    HS = 8,
    rep = NH / NKV;
  const { act } = capture(model, [tokens(r, T, model.vocabSize)]);
  const p = 'model.layers.1.self_attn';
  const q = get(act, `${p}.q_rope`),
    k = get(act, `${p}.k_rope`),
    v = get(act, `${p}.v_proj`),
    out = get(act, `${p}.attn_output`);
  const i = T - 1;
  const keysOf = (kh: number): Float64Array[] => Array.from({ length: i + 1 }, (_, j) => slice(row(k, j), kh * HS, HS));
  const valsOf = (kh: number): Float64Array[] => Array.from({ length: i + 1 }, (_, j) => slice(row(v, j), kh * HS, HS));
  t.ok(maxAbsDiff(keysOf(0)[1], keysOf(1)[1]) > 1e-3, 'the two kv heads differ');
  for (let h = 0; h < NH; h++) {
    const qh = slice(row(q, i), h * HS, HS);
    const right = headAttention(qh, keysOf(Math.floor(h / rep)), valsOf(Math.floor(h / rep)), 1 / Math.sqrt(HS));
    const got = slice(row(out, i), h * HS, HS);
    t.ok(maxAbsDiff(got, right) <= 1e-12, `head ${h} → kv head ${Math.floor(h / rep)}`);
    if (h % NKV !== Math.floor(h / rep)) {
      const wrong = headAttention(qh, keysOf(h % NKV), valsOf(h % NKV), 1 / Math.sqrt(HS));
      t.ok(maxAbsDiff(got, wrong) > 1e-6, `head ${h} does not read kv head h mod n_kv = ${h % NKV}`);
    }
  }
  t.end();
});

t.test('(e) Llama RMSNorm: x · rsqrt(mean(x²) + eps) · w', (t) => {
  const seed = nextSeed();
  const { ckpt, model } = build({ name: 'rms', family: 'llama' }, seed);
  const r = seededRandom(seed);
  const ids = tokens(r, 3, model.vocabSize);
  const { act } = capture(model, [ids]);
  const C = 32,
    eps = ckpt.config.rms_norm_eps as number;
  const E = ckpt.weights.get('model.embed_tokens.weight') as Tensor64;
  const w = (ckpt.weights.get('model.layers.0.input_layernorm.weight') as Tensor64).data;
  const got = get(act, 'model.layers.0.input_layernorm');
  for (let n = 0; n < ids.length; n++) {
    const x = E.data.slice(ids[n] * C, (ids[n] + 1) * C);
    const ms = dot(x, x) / C;
    const right = x.map((xi, c) => xi * (1 / Math.sqrt(ms + eps)) * w[c]);
    const wrong = x.map((xi, c) => (xi / (Math.sqrt(ms) + eps)) * w[c]);
    t.ok(maxAbsDiff(row(got, n), right) <= 1e-12, `token ${n}: matches the HF formula`);
    t.ok(maxAbsDiff(row(got, n), wrong) > 1e-8, `token ${n}: eps is inside the square root`);
  }
  t.end();
});

t.test('(e) Qwen2: q, k, v carry biases, o_proj none', (t) => {
  const seed = nextSeed();
  const { ckpt, model } = build({ name: 'qwen2', family: 'qwen2' }, seed);
  const ids = tokens(seededRandom(seed), 4, model.vocabSize);
  const { act } = capture(model, [ids]);
  const h = row(get(act, 'model.layers.0.input_layernorm'), 2);
  const W = ckpt.weights.get('model.layers.0.self_attn.k_proj.weight') as Tensor64;
  const b = ckpt.weights.get('model.layers.0.self_attn.k_proj.bias') as Tensor64;
  t.ok(maxAbsDiff(row(get(act, 'model.layers.0.self_attn.k_proj'), 2), linearHand(W, h, b)) <= 1e-12, 'k = W h + b');
  const noBias = copyWeights(ckpt.weights);
  noBias.delete('model.layers.1.self_attn.q_proj.bias');
  t.throws(() => new ReferenceModel(ckpt.config, noBias), /missing tensor model\.layers\.1\.self_attn\.q_proj\.bias/, 'a missing q bias is an error');
  const oBias = copyWeights(ckpt.weights);
  oBias.set('model.layers.0.self_attn.o_proj.bias', { shape: [32], data: new Float64Array(32) });
  t.throws(
    () => new ReferenceModel(ckpt.config, oBias),
    /does not use: model\.layers\.0\.self_attn\.o_proj\.bias/,
    'an o_proj bias is not silently used or dropped',
  );
  t.end();
});

t.test('(e) tied and untied lm_head', (t) => {
  for (const [family, embName] of [
    ['llama', 'model.embed_tokens.weight'],
    ['opt', 'model.decoder.embed_tokens.weight'],
    ['gpt2', 'transformer.wte.weight'],
  ] as const) {
    const seed = nextSeed();
    const finalName = family === 'llama' ? 'model.norm' : family === 'opt' ? 'model.decoder.final_layer_norm' : 'ln_f';
    const tied = randomCheckpoint(family, seed, { tie: true });
    const untied = randomCheckpoint(family, seed, { tie: false });
    const ids = tokens(seededRandom(seed), 4, 40);
    for (const [ckpt, headName] of [
      [tied, embName],
      [untied, 'lm_head.weight'],
    ] as const) {
      const model = new ReferenceModel(ckpt.config, ckpt.weights);
      const { logits, act } = capture(model, [ids]);
      const hLast = row(get(act, finalName), ids.length - 1);
      const hand = linearHand(ckpt.weights.get(headName) as Tensor64, hLast);
      const V = model.vocabSize;
      t.ok(
        maxAbsDiff(logits[0].subarray((ids.length - 1) * V), hand) <= 1e-12,
        `${family} ${ckpt === tied ? 'tied: logits = h · embeddingᵀ' : 'untied: logits = h · lm_headᵀ'}`,
      );
    }
    // A stored lm_head.weight is ignored when tied (HF ties it to the embedding).
    const extra = copyWeights(tied.weights);
    const C = (tied.weights.get(embName) as Tensor64).shape;
    extra.set('lm_head.weight', { shape: [...C], data: Float64Array.from({ length: C[0] * C[1] }, () => 1) });
    const a = new ReferenceModel(tied.config, tied.weights).forward([ids])[0];
    const b = new ReferenceModel(tied.config, extra).forward([ids])[0];
    t.ok(maxAbsDiff(a, b) === 0, `${family} tied: a stored lm_head.weight changes nothing`);
    // Untied: the separate head is used.
    const other = copyWeights(untied.weights);
    (other.get('lm_head.weight') as Tensor64).data[0] += 1;
    const c = new ReferenceModel(untied.config, untied.weights).forward([ids])[0];
    const d = new ReferenceModel(untied.config, other).forward([ids])[0];
    t.ok(maxAbsDiff(c, d) > 1e-6, `${family} untied: lm_head.weight is used`);
  }
  t.end();
});

t.test('(e) OPT positions: real tokens from row 2, pads row 1, row 0 never', (t) => {
  const seed = nextSeed();
  const ckpt = randomCheckpoint('opt', seed);
  const r = seededRandom(seed);
  const V = 50,
    C = 24;
  const short = tokens(r, 3, V),
    long = tokens(r, 7, V);
  const base = new ReferenceModel(ckpt.config, ckpt.weights);
  const withRow = (rowIndex: number): ReferenceModel => {
    const w = copyWeights(ckpt.weights);
    const P = w.get('model.decoder.embed_positions.weight') as Tensor64;
    for (let c = 0; c < C; c++) P.data[rowIndex * C + c] += 0.5 + r.uniform();
    return new ReferenceModel(ckpt.config, w);
  };
  const run = (m: ReferenceModel, padding: 'left' | 'right'): Float64Array[] => m.forward([long, short], { padding });
  for (const padding of ['left', 'right'] as const) {
    const ref = run(base, padding);
    const r0 = run(withRow(0), padding),
      r1 = run(withRow(1), padding),
      r2 = run(withRow(2), padding);
    t.ok(maxAbsDiff(ref[0], r0[0]) === 0 && maxAbsDiff(ref[1], r0[1]) === 0, `${padding}: row 0 is never read`);
    t.ok(maxAbsDiff(ref[0], r1[0]) === 0 && maxAbsDiff(ref[1], r1[1]) === 0, `${padding}: row 1 (pads) does not reach real tokens`);
    t.ok(maxAbsDiff(ref[1].subarray(0, V), r2[1].subarray(0, V)) > 1e-6, `${padding}: row 2 changes the padded sequence's first token`);
    t.ok(maxAbsDiff(ref[0].subarray(0, V), r2[0].subarray(0, V)) > 1e-6, `${padding}: row 2 changes the full sequence's first token`);
  }
  // The k-th real token reads row k + 2: perturbing row 3 leaves token 0 alone, changes token 1.
  const a = base.forward([short])[0],
    b = withRow(3).forward([short])[0];
  t.ok(maxAbsDiff(a.subarray(0, V), b.subarray(0, V)) === 0 && maxAbsDiff(a.subarray(V, 2 * V), b.subarray(V, 2 * V)) > 1e-6, 'token 1 reads row 3');
  // Hand check of the input to layer 0: embed_tokens[id] + embed_positions[t + 2].
  const { act } = capture(base, [short]);
  const E = ckpt.weights.get('model.decoder.embed_tokens.weight') as Tensor64;
  const P = ckpt.weights.get('model.decoder.embed_positions.weight') as Tensor64;
  const L = ckpt.weights;
  const x1 = Float64Array.from({ length: C }, (_, c) => E.data[short[1] * C + c] + P.data[3 * C + c]);
  const ln = layerNormHand(
    x1,
    (L.get('model.decoder.layers.0.self_attn_layer_norm.weight') as Tensor64).data,
    (L.get('model.decoder.layers.0.self_attn_layer_norm.bias') as Tensor64).data,
    1e-5,
  );
  t.ok(maxAbsDiff(row(get(act, 'model.decoder.layers.0.self_attn_layer_norm'), 1), ln) <= 1e-12, 'layer 0 LN input = token embedding + position row t + 2');
  t.end();
});

t.test('(e) OPT scales q by head_dim^-0.5 after q_proj bias', (t) => {
  const seed = nextSeed();
  const ckpt = randomCheckpoint('opt', seed);
  const model = new ReferenceModel(ckpt.config, ckpt.weights);
  const T = 5,
    NH = 4,
    HS = 6;
  const { act } = capture(model, [tokens(seededRandom(seed), T, 50)]);
  const p = 'model.decoder.layers.0.self_attn';
  const x = get(act, 'model.decoder.layers.0.self_attn_layer_norm');
  const w = (m: string): Tensor64 => ckpt.weights.get(`${p}.${m}`) as Tensor64;
  const s = HS ** -0.5;
  const i = T - 1;
  const qRight = linearHand(w('q_proj.weight'), row(x, i), w('q_proj.bias')).map((v) => v * s);
  const qWrong = linearHand(w('q_proj.weight'), row(x, i)).map((v, o) => v * s + w('q_proj.bias').data[o]);
  const ks = Array.from({ length: i + 1 }, (_, j) => linearHand(w('k_proj.weight'), row(x, j), w('k_proj.bias')));
  const vs = Array.from({ length: i + 1 }, (_, j) => linearHand(w('v_proj.weight'), row(x, j), w('v_proj.bias')));
  const got = row(get(act, `${p}.attn_output`), i);
  for (let h = 0; h < NH; h++) {
    const keys = ks.map((k) => slice(k, h * HS, HS)),
      vals = vs.map((v) => slice(v, h * HS, HS));
    const right = headAttention(slice(qRight, h * HS, HS), keys, vals, 1);
    const wrong = headAttention(slice(qWrong, h * HS, HS), keys, vals, 1);
    t.ok(maxAbsDiff(slice(got, h * HS, HS), right) <= 1e-12, `head ${h}: softmax((W x + b)·s · kᵀ) v`);
    t.ok(maxAbsDiff(slice(got, h * HS, HS), wrong) > 1e-8, `head ${h}: not softmax((W x·s + b) · kᵀ) v`);
  }
  t.end();
});

t.test('(e) OPT-350m: project_in, post-LN blocks, project_out, no final layer norm', (t) => {
  const seed = nextSeed();
  const ckpt = randomCheckpoint('opt-350m', seed);
  const model = new ReferenceModel(ckpt.config, ckpt.weights);
  const ids = tokens(seededRandom(seed), 4, 50);
  const { logits, act } = capture(model, [ids]);
  const w = (n: string): Tensor64 => ckpt.weights.get(`model.decoder.${n}`) as Tensor64;
  const C = 32,
    E = 16,
    V = 50;
  // layer 0 by hand: x0 = project_in(embed) + pos; post-LN: LN(x0 + out_proj(attn))
  const n = 2;
  const x0 = linearHand(w('project_in.weight'), w('embed_tokens.weight').data.slice(ids[n] * E, (ids[n] + 1) * E));
  for (let c = 0; c < C; c++) x0[c] += w('embed_positions.weight').data[(n + 2) * C + c];
  t.ok(
    maxAbsDiff(
      row(get(act, 'model.decoder.project_in'), n).map((v, c) => v + w('embed_positions.weight').data[(n + 2) * C + c]),
      x0,
    ) <= 1e-12,
    'x0 = project_in(embed) + positions',
  );
  const attnOut = linearHand(
    w('layers.0.self_attn.out_proj.weight'),
    row(get(act, 'model.decoder.layers.0.self_attn.attn_output'), n),
    w('layers.0.self_attn.out_proj.bias'),
  );
  const post = layerNormHand(
    x0.map((v, c) => v + attnOut[c]),
    w('layers.0.self_attn_layer_norm.weight').data,
    w('layers.0.self_attn_layer_norm.bias').data,
    1e-5,
  );
  t.ok(maxAbsDiff(row(get(act, 'model.decoder.layers.0.self_attn_layer_norm'), n), post) <= 1e-12, 'attention block: residual, then layer norm');
  // the q input of layer 0 is the raw residual stream (no LN before attention)
  const q = linearHand(w('layers.0.self_attn.q_proj.weight'), x0, w('layers.0.self_attn.q_proj.bias'));
  t.ok(maxAbsDiff(row(get(act, 'model.decoder.layers.0.self_attn.q_proj'), n), q) <= 1e-12, 'q_proj reads the un-normalised stream');
  // a block ends with its final_layer_norm; logits = lm_head(project_out(last block))
  t.same(get(act, 'model.decoder.layers.1').data, get(act, 'model.decoder.layers.1.final_layer_norm').data, 'FFN block ends with the layer norm');
  const out = linearHand(w('project_out.weight'), row(get(act, 'model.decoder.layers.1'), n));
  t.ok(
    maxAbsDiff(logits[0].subarray(n * V, (n + 1) * V), linearHand(w('embed_tokens.weight'), out)) <= 1e-12,
    'logits = embedᵀ · project_out(last block), no final LN',
  );
  const extra = copyWeights(ckpt.weights);
  extra.set('model.decoder.final_layer_norm.weight', { shape: [C], data: new Float64Array(C).fill(1) });
  extra.set('model.decoder.final_layer_norm.bias', { shape: [C], data: new Float64Array(C) });
  t.throws(() => new ReferenceModel(ckpt.config, extra), /does not use: model\.decoder\.final_layer_norm/, 'a final layer norm is not part of a post-LN OPT');
  t.end();
});

t.test('(e) GPT-2 Conv1D weights are [in, out], c_attn packs q | k | v', (t) => {
  const seed = nextSeed();
  const ckpt = randomCheckpoint('gpt2', seed);
  const model = new ReferenceModel(ckpt.config, ckpt.weights);
  const ids = tokens(seededRandom(seed), 4, 50);
  const { logits, act } = capture(model, [ids]);
  const C = 24;
  const W = ckpt.weights.get('transformer.h.0.attn.c_attn.weight') as Tensor64; // [C, 3C]
  const b = ckpt.weights.get('transformer.h.0.attn.c_attn.bias') as Tensor64;
  const x = row(get(act, 'h.0.ln_1'), 3);
  const hand = new Float64Array(3 * C); // x · W + b
  for (let o = 0; o < 3 * C; o++) {
    let s = b.data[o];
    for (let i = 0; i < C; i++) s += x[i] * W.data[i * 3 * C + o];
    hand[o] = s;
  }
  const got = row(get(act, 'h.0.attn.c_attn'), 3);
  t.ok(maxAbsDiff(got, hand) <= 1e-12, 'c_attn(x) = x · W[in, out] + b');
  const asLinear = linearHand({ shape: [3 * C, C], data: W.data }, x, b); // the same bytes read as nn.Linear [out, in]
  t.ok(maxAbsDiff(got, asLinear) > 1e-6, 'not the bytes read as an nn.Linear [out, in] weight');
  // The model takes q from columns [0, C), k from [C, 2C), v from [2C, 3C): check head 0 at token 0 (attends to itself only).
  const head0 = slice(row(get(act, 'h.0.attn.attn_output'), 0), 0, 6);
  t.ok(
    maxAbsDiff(head0, slice(row(get(act, 'h.0.attn.c_attn'), 0), 2 * C, 6)) <= 1e-12,
    'token 0 attends to itself: head 0 output = its v, columns [2C, 2C + 6)',
  );
  // A transposed square Conv1D weight (c_proj [C, C]) changes the output.
  const tw = copyWeights(ckpt.weights);
  const P = tw.get('transformer.h.0.attn.c_proj.weight') as Tensor64;
  const orig = P.data.slice();
  for (let i = 0; i < C; i++) for (let o = 0; o < C; o++) P.data[o * C + i] = orig[i * C + o];
  t.ok(maxAbsDiff(logits[0], new ReferenceModel(ckpt.config, tw).forward([ids])[0]) > 1e-6, 'transposing c_proj changes the logits');
  // A c_attn stored [3C, C] does not fit.
  const bad = copyWeights(ckpt.weights);
  (bad.get('transformer.h.1.attn.c_attn.weight') as Tensor64).shape = [3 * C, C];
  t.throws(
    () => new ReferenceModel(ckpt.config, bad),
    /c_attn\.weight has shape \[72,24\], expected \[24,72\]/,
    'a c_attn weight stored [out, in] is rejected',
  );
  t.end();
});

t.test('(e) GPT-2 ignores attn.bias / attn.masked_bias buffers; keys with or without transformer.', (t) => {
  const seed = nextSeed();
  const ids = [tokens(seededRandom(seed), 6, 50)];
  const withBuffers = randomCheckpoint('gpt2', seed, { buffers: true, prefix: true });
  const garbled = copyWeights(withBuffers.weights);
  (garbled.get('transformer.h.0.attn.bias') as Tensor64).data.fill(0);
  (garbled.get('transformer.h.1.attn.masked_bias') as Tensor64).data.fill(7);
  const bare = randomCheckpoint('gpt2', seed, { buffers: false, prefix: false });
  const a = new ReferenceModel(withBuffers.config, withBuffers.weights).forward(ids)[0];
  const b = new ReferenceModel(withBuffers.config, garbled).forward(ids)[0];
  const c = new ReferenceModel(bare.config, bare.weights).forward(ids)[0];
  t.ok(bare.weights.has('wte.weight') && !bare.weights.has('h.0.attn.bias'), 'the bare checkpoint has no prefix and no buffers');
  t.ok(maxAbsDiff(a, b) === 0, 'buffer values do not matter');
  t.ok(maxAbsDiff(a, c) === 0, 'same logits without buffers and without the transformer. prefix');
  t.end();
});

t.test('(e) LoRA: h = W u + b + s · B(A u), on nn.Linear and on GPT-2 Conv1D', (t) => {
  for (const [family, modName, inName, traceName, peft] of [
    ['llama', 'model.layers.1.self_attn.v_proj', 'model.layers.1.input_layernorm', 'model.layers.1.self_attn.v_proj', 'model.layers.1.self_attn.v_proj'],
    [
      'opt',
      'model.decoder.layers.0.self_attn.q_proj',
      'model.decoder.layers.0.self_attn_layer_norm',
      'model.decoder.layers.0.self_attn.q_proj',
      'model.decoder.layers.0.self_attn.q_proj',
    ],
    ['gpt2', 'transformer.h.1.attn.c_attn', 'h.1.ln_1', 'h.1.attn.c_attn', 'transformer.h.1.attn.c_attn'],
  ] as const) {
    const seed = nextSeed();
    const ckpt = randomCheckpoint(family, seed);
    const model = new ReferenceModel(ckpt.config, ckpt.weights);
    const lora = randomLora(ckpt, seed, { r: 3, alpha: 5 });
    const ids = [tokens(seededRandom(seed), 4, 40)];
    const base = capture(model, ids, {}).act;
    const adapted = capture(model, ids, { lora }).act;
    const A = lora.tensors.get(`base_model.model.${peft}.lora_A.weight`) as Tensor64;
    const B = lora.tensors.get(`base_model.model.${peft}.lora_B.weight`) as Tensor64;
    t.ok(A !== undefined && B !== undefined, `${family}: PEFT names base_model.model.${peft}.lora_{A,B}.weight`);
    const n = 3;
    const u = row(get(adapted, inName), n);
    const delta = linearHand(B, linearHand(A, u)).map((v) => v * (5 / 3));
    // the base projection of the adapted stream: W u + b, by hand
    const W = ckpt.weights.get(`${modName}.weight`) as Tensor64;
    const bias = ckpt.weights.get(`${modName}.bias`);
    let baseProj: Float64Array;
    if (family === 'gpt2') {
      const [IN, OUT] = W.shape;
      baseProj = Float64Array.from(
        { length: OUT },
        (_, o) => (bias as Tensor64).data[o] + Array.from({ length: IN }, (_, i) => u[i] * W.data[i * OUT + o]).reduce((a, v) => a + v, 0),
      );
    } else {
      baseProj = linearHand(W, u, bias);
    }
    const got = row(get(adapted, traceName), n);
    t.ok(
      maxAbsDiff(
        got,
        baseProj.map((v, o) => v + delta[o]),
      ) <= 1e-12,
      `${family}: W u + b + (alpha/r) · B A u`,
    );
    t.ok(maxAbsDiff(get(base, traceName).data, get(adapted, traceName).data) > 1e-6, `${family}: the adapter changes ${traceName}`);
  }
  const ckpt = randomCheckpoint('llama', nextSeed());
  const model = new ReferenceModel(ckpt.config, ckpt.weights);
  const stray: LoraWeights = {
    scaling: 1,
    tensors: new Map([['base_model.model.model.layers.0.self_attn.qproj.lora_A.weight', { shape: [1, 32], data: new Float64Array(32) }]]),
  };
  t.throws(() => model.forward([[1, 2]], { lora: stray }), /matches no linear module/, 'a LoRA tensor that matches no module is an error');
  t.end();
});

t.test('(e) unsupported configs are rejected by name', (t) => {
  const ckpt = randomCheckpoint('llama', nextSeed());
  const scaled = { ...ckpt.config, rope_scaling: { rope_type: 'llama3', factor: 8 } };
  t.throws(() => new ReferenceModel(scaled, ckpt.weights), /rope_scaling "llama3" is not implemented/);
  const mistral = { ...ckpt.config, model_type: 'mistral', sliding_window: 4 };
  t.throws(() => new ReferenceModel(mistral, ckpt.weights).forward([[1, 2, 3, 4, 5]]), /sliding_window 4/);
  t.end();
});

// ---- (f) MeZO scores and the LM loss convention ----

t.test('(f) classification score is the MEAN log-prob of the candidate tokens', (t) => {
  for (const family of ['llama', 'opt', 'gpt2'] as const) {
    const seed = nextSeed();
    const ckpt = randomCheckpoint(family, seed);
    const model = new ReferenceModel(ckpt.config, ckpt.weights);
    const r = seededRandom(seed);
    const V = model.vocabSize;
    const prompt = tokens(r, 4, 40);
    const ex: ClassificationExample = { prompt, candidates: [tokens(r, 2, 40), tokens(r, 1, 40), tokens(r, 3, 40)], label: r.int(3) };
    const res = model.classificationLoss(ex);
    const sums = res.scores.map(() => 0);
    ex.candidates.forEach((cand, c) => {
      const logits = model.forward([[...prompt, ...cand]])[0];
      let s = 0;
      cand.forEach((tok, k) => {
        s += logSoftmax(logits.subarray((prompt.length + k - 1) * V, (prompt.length + k) * V))[tok];
      });
      sums[c] = s;
      t.ok(Math.abs(res.scores[c] - s / cand.length) <= 1e-12, `${family} candidate ${c} (${cand.length} tokens): score = mean of the token log-probs`);
    });
    t.ok(Math.abs(res.scores[0] - sums[0]) > 1e-9, `${family}: the 2-token score is not the sum`);
    const hand = -logSoftmax(res.scores)[ex.label];
    t.ok(Math.abs(res.loss - hand) <= 1e-12, `${family}: loss = −log softmax(scores)[label]`);
    t.equal(res.prediction, res.scores.indexOf(Math.max(...res.scores)), 'prediction = argmax score');
    const summed = model.classificationLoss(ex, { score: 'sum' });
    t.ok(maxAbsDiff(summed.scores, sums) <= 1e-12, `${family}: score option "sum"`);
    const batch = model.classificationBatchLoss([ex, { ...ex, label: (ex.label + 1) % 3 }]);
    const second = model.classificationLoss({ ...ex, label: (ex.label + 1) % 3 }).loss;
    t.ok(Math.abs(batch.loss - (res.loss + second) / 2) <= 1e-12, `${family}: batch loss = mean over examples`);
  }
  t.end();
});

t.test('(f) LM loss: mean next-token CE over all target tokens of the batch, prompt masked', (t) => {
  const seed = nextSeed();
  const ckpt = randomCheckpoint('qwen2', seed);
  const model = new ReferenceModel(ckpt.config, ckpt.weights);
  const r = seededRandom(seed);
  const V = model.vocabSize;
  const exs: LmExample[] = [
    { prompt: tokens(r, 3, V), target: tokens(r, 1, V) },
    { prompt: tokens(r, 2, V), target: tokens(r, 4, V) },
  ];
  const nll: number[][] = exs.map((e) => {
    const logits = model.forward([[...e.prompt, ...e.target]])[0];
    return e.target.map((tok, k) => -logSoftmax(logits.subarray((e.prompt.length + k - 1) * V, (e.prompt.length + k) * V))[tok]);
  });
  const all = nll.flat();
  const tokenMean = all.reduce((a, b) => a + b, 0) / all.length;
  const exampleMean = nll.map((v) => v.reduce((a, b) => a + b, 0) / v.length).reduce((a, b) => a + b, 0) / nll.length;
  t.ok(Math.abs(model.lmBatchLoss(exs).loss - tokenMean) <= 1e-12, 'batch loss = mean over the 5 target tokens');
  t.ok(Math.abs(tokenMean - exampleMean) > 1e-9, 'which differs from the mean of per-example means (the test can fail)');
  const mean1 = nll[1].reduce((a, b) => a + b, 0) / nll[1].length;
  t.ok(Math.abs(model.lmLoss(exs[1]).loss - mean1) <= 1e-12, 'single example: mean over its target tokens only (prompt masked)');
  t.end();
});

// ---- tiny-checkpoint writer ----

t.test('F16 / BF16 rounding: nearest, ties to even, subnormals, overflow', (t) => {
  t.equal(toF16Bits(1), 0x3c00);
  t.equal(toF16Bits(1 + 2 ** -11), 0x3c00, 'tie → even (down)');
  t.equal(toF16Bits(1 + 3 * 2 ** -11), 0x3c02, 'tie → even (up)');
  t.equal(toF16Bits(65504), 0x7bff);
  t.equal(toF16Bits(65519.99), 0x7bff);
  t.equal(toF16Bits(65520), 0x7c00, 'overflow → Inf');
  t.equal(toF16Bits(2 ** -24), 0x0001, 'smallest subnormal');
  t.equal(toF16Bits(2 ** -25), 0x0000, 'half of it ties to 0');
  t.equal(toF16Bits(-(2 ** -14)), 0x8400, 'smallest normal, negative');
  t.equal(toBf16Bits(1 + 2 ** -8), 0x3f80);
  t.equal(toBf16Bits(1 + 3 * 2 ** -8), 0x3f82);
  t.equal(toBf16Bits(-2.5), 0xc020);
  t.equal(toBf16Bits(2 ** -133), 0x0001, 'bf16 smallest subnormal');
  // one-step rounding from float64: not via float32 (1 + 2^-8 + 2^-30 rounds up; via fp32 it would tie to 1)
  t.equal(toBf16Bits(1 + 2 ** -8 + 2 ** -30), 0x3f81, 'no double rounding through float32');
  const r = seededRandom(nextSeed());
  for (let k = 0; k < 2000; k++) {
    const x = (r.uniform() - 0.5) * 2 ** (r.int(36) - 20); // |x| < 2^15: finite in F16
    for (const [to, from, name] of [
      [toF16Bits, fromF16Bits, 'F16'],
      [toBf16Bits, fromBf16Bits, 'BF16'],
    ] as const) {
      const h = to(x),
        v = from(h);
      const up = from(h + 1),
        down = h % 0x8000 === 0 ? -from(h) : from(h - 1);
      if (Math.abs(x - v) > Math.abs(x - up) || (Number.isFinite(down) && Math.abs(x - v) > Math.abs(x - down))) {
        t.fail(`${name}(${x}) = ${v} is not the nearest (neighbours ${down}, ${up})`);
      }
    }
  }
  t.pass('2000 random values round to a nearest neighbour in both formats');
  t.end();
});

/** A safetensors file read by hand: header JSON, then the raw bytes of each tensor. */
function readSafetensorsByHand(file: string): Map<string, { dtype: string; shape: number[]; bytes: Buffer }> {
  const buf = readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const out = new Map<string, { dtype: string; shape: number[]; bytes: Buffer }>();
  for (const [name, e] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    out.set(name, { dtype: e.dtype, shape: e.shape, bytes: buf.subarray(8 + n + e.data_offsets[0], 8 + n + e.data_offsets[1]) });
  }
  return out;
}

t.test('writeCheckpointDir: config.json, single file and shards, F32 / F16 / BF16 values', async (t: Test) => {
  const dir = mkdtempSync(join(tmpdir(), 'zofo-tiny-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const ckpt = randomCheckpoint('gpt2', nextSeed());
  for (const [dtype, shards] of [
    ['F32', 1],
    ['F16', 3],
    ['BF16', 2],
  ] as const) {
    const sub = join(dir, `${dtype}-${shards}`);
    await writeCheckpointDir(sub, ckpt, { dtype, shards });
    t.same(JSON.parse(readFileSync(join(sub, 'config.json'), 'utf8')), ckpt.config, `${dtype}: config.json`);
    const files = new Map<string, string>();
    if (shards === 1) {
      for (const name of ckpt.weights.keys()) files.set(name, 'model.safetensors');
    } else {
      const index = JSON.parse(readFileSync(join(sub, 'model.safetensors.index.json'), 'utf8')) as {
        weight_map: Record<string, string>;
        metadata: { total_size: number };
      };
      t.same(Object.keys(index.weight_map).sort(), [...ckpt.weights.keys()].sort(), `${dtype}: weight_map names every tensor`);
      t.equal(new Set(Object.values(index.weight_map)).size, shards, `${dtype}: ${shards} shards`);
      t.ok(
        Object.values(index.weight_map).every((f) => /^model-0000\d-of-0000\d\.safetensors$/.test(f)),
        'HF shard names',
      );
      for (const [name, f] of Object.entries(index.weight_map)) files.set(name, f);
    }
    let bad = 0;
    const cache = new Map<string, ReturnType<typeof readSafetensorsByHand>>();
    for (const [name, tensor] of ckpt.weights) {
      const file = files.get(name) as string;
      if (!cache.has(file)) cache.set(file, readSafetensorsByHand(join(sub, file)));
      const e = (cache.get(file) as ReturnType<typeof readSafetensorsByHand>).get(name);
      if (!e || e.dtype !== dtype || JSON.stringify(e.shape) !== JSON.stringify(tensor.shape)) {
        bad++;
        continue;
      }
      for (let i = 0; i < tensor.data.length; i++) {
        const stored =
          dtype === 'F32' ? e.bytes.readFloatLE(4 * i) : dtype === 'F16' ? fromF16Bits(e.bytes.readUInt16LE(2 * i)) : fromBf16Bits(e.bytes.readUInt16LE(2 * i));
        if (stored !== storedValue(tensor.data[i], dtype)) bad++;
      }
    }
    t.equal(bad, 0, `${dtype}: every tensor stored with its dtype, shape and rounded values`);
  }
});
