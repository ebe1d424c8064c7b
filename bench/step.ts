/**
 * Hybrid-step benchmark (not part of `npm test`): the cost of one `await opt.step(batch)`
 * (ZO on every base weight, forward estimator, q = 1; SGD on LoRA rank 8 q_proj/v_proj)
 * against its floor measured in the same run: one forward (model.loss) + one forward
 * with adapter backward (model.loraGradients), i.e. the two forwards and the backward
 * the step cannot avoid. What is left is the two weight passes (perturb into scratch,
 * fused update) and bookkeeping. Peak RSS of step vs forward-only comes from child
 * processes that each build the same model and run one phase.
 * Llama-shaped model with random weights; classification batch of B prompts × T tokens,
 * 2 single-token candidates each (default 16 × 64: MeZO's preset batch). The two weight
 * passes cost the same whatever the batch, so the ratio grows as the batch shrinks
 * (about 1.12–1.19 at 8 × 64 on 2 cores).
 *
 *   node dist/bench/step.js [--small] [--layers 12] [--hidden 768] [--ffn 2048] [--vocab 32000]
 *                           [--batch 16] [--seq 64] [--reps 5]
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { backendInfo, kernels, Model, parseConfig, type ClassificationExample } from '../lib/index.js';
import { HybridOptimizer } from '../lib/train/optimizer.js';
import { cpuBinding } from '../lib/binding.js';
import { numberArg } from './args.js';

const small = process.argv.includes('--small');
const L = numberArg('layers', small ? 4 : 12),
  C = numberArg('hidden', small ? 256 : 768);
const F = numberArg('ffn', small ? 688 : 2048),
  V = numberArg('vocab', small ? 8000 : 32000);
const B = numberArg('batch', 16), // MeZO's preset batch size
  T = numberArg('seq', 64),
  reps = numberArg('reps', 5);
const NH = Math.max(1, Math.round(C / 64)),
  HS = C / NH;
const phaseAt = process.argv.indexOf('--phase');
const phase = phaseAt < 0 ? null : process.argv[phaseAt + 1];

let state = 12345;
const rand = () => {
  state ^= state << 13;
  state >>>= 0;
  state ^= state >>> 17;
  state ^= state << 5;
  state >>>= 0;
  return state / 4294967296;
};

function buildModel(): Model {
  const native = new (cpuBinding().NativeModel)({
    family: 0,
    vocab: V,
    hidden: C,
    layers: L,
    heads: NH,
    kvHeads: NH,
    headDim: HS,
    ffn: F,
    maxPositions: 4096,
    embedDim: C,
    positionOffset: 0,
    rmsnorm: true,
    normEps: 1e-5,
    activation: 2,
    ropeTheta: 10000,
    tieEmbeddings: false,
    attentionBias: false,
    outputBias: false,
    mlpBias: false,
    preNorm: true,
    finalNorm: true,
  });
  const names: string[] = [];
  const specs = native.tensorSpecs(),
    numel = (s: { shape: number[] }) => s.shape.reduce((a, b) => a * b, 1);
  const buf = new Float32Array(Math.max(...specs.map(numel))); // one staging buffer: setTensor copies
  for (const spec of specs) {
    const n = numel(spec);
    const data = buf.subarray(0, n);
    if (spec.shape.length === 1) data.fill(1);
    else for (let i = 0; i < n; i++) data[i] = (rand() - 0.5) * 0.07; // std ≈ 0.02
    native.setTensor(spec.name, data);
    names.push(spec.name);
  }
  native.setStreamNames(names); // as loadModel does
  const config = parseConfig(
    {
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      vocab_size: V,
      hidden_size: C,
      intermediate_size: F,
      num_hidden_layers: L,
      num_attention_heads: NH,
      num_key_value_heads: NH,
      max_position_embeddings: 4096,
      rms_norm_eps: 1e-5,
      hidden_act: 'silu',
      rope_theta: 10000,
      tie_word_embeddings: false,
    },
    '(random model)',
  );
  const model = new Model('(random model)', config, native, null, 'f32', names);
  model.addLoRA({ rank: 8, alpha: 16, targets: ['q_proj', 'v_proj'] });
  return model;
}

const batch: ClassificationExample[] = Array.from({ length: B }, (_, e) => ({
  prompt: Array.from({ length: T }, () => Math.floor(rand() * V)),
  candidates: [[1 + (e % 7)], [100 + (e % 5)]],
  label: e % 2,
}));
const hybrid = (model: Model) => new HybridOptimizer(model, { zo: { lr: 1e-6, mu: 1e-3, estimator: 'forward', perturbations: 1 }, fo: { lr: 1e-4 } });
const zoOnly = (model: Model) => new HybridOptimizer(model, { zo: { lr: 1e-6, mu: 1e-3, estimator: 'forward', perturbations: 1 } });
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const mib = (kb: number) => kb / 1024;

// Child: build the model, then reset the peak-RSS mark (Linux: /proc/self/clear_refs 5)
// so that building does not mask the phase; run the phase 3 times; report RSS in KiB.
async function child(name: string): Promise<void> {
  const model = buildModel();
  const opt = name === 'step' ? hybrid(model) : null;
  (globalThis as { gc?: () => void }).gc?.();
  const built = process.memoryUsage().rss / 1024;
  let reset = true;
  try {
    writeFileSync('/proc/self/clear_refs', '5');
  } catch {
    reset = false;
  }
  for (let r = 0; r < 3; r++) {
    if (name === 'forward') await model.loss(batch);
    else if (name === 'loraGradients') await model.loraGradients(batch);
    else if (name === 'step') await opt!.step(batch);
    else throw new Error(`unknown --phase ${name}`);
  }
  console.log(JSON.stringify({ maxRSS: process.resourceUsage().maxRSS, built, reset }));
}

function peakRss(name: string): { maxRSS: number; built: number; reset: boolean } {
  const args = process.argv.slice(2).filter((a, i, all) => a !== '--phase' && all[i - 1] !== '--phase');
  const r = spawnSync(process.execPath, ['--expose-gc', process.argv[1], ...args, '--phase', name], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`--phase ${name} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

async function main(): Promise<void> {
  const info = backendInfo();
  console.log('zofo hybrid-step benchmark (CPU)');
  console.log(
    `model: Llama-shaped, ${L} layers, hidden ${C}, ${NH} heads × ${HS}, ffn ${F}, vocab ${V}; LoRA r8 q_proj+v_proj; ` +
      `classification batch ${B} × ${T}-token prompts, 2 single-token candidates`,
  );
  console.log(
    `cpu: ${info.cpu.simd}; BLAS: ${info.cpu.blas}; threads: ${info.cpu.threads} ` +
      `(ZOFO_NUM_THREADS=${process.env.ZOFO_NUM_THREADS ?? '(unset)'}); OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE ?? '(unset)'}; ` +
      `OPENBLAS_NUM_THREADS=${process.env.OPENBLAS_NUM_THREADS ?? '(unset)'}; node ${process.version}`,
  );

  // Children first, while this process is small: on Linux a child's maxRSS starts at the
  // peak of the process it was forked from.
  const rss = Object.fromEntries(['forward', 'loraGradients', 'step'].map((p) => [p, peakRss(p)]));
  const model = buildModel();
  const params = model.parameterCounts().reduce((a, b) => a + b, 0);
  const opt = hybrid(model),
    zo = zoOnly(model);
  // The weight passes alone, at kernel level: a fused perturb and a fused restore+update
  // over a buffer of P fp32 values (one tensor-sized stream; the step does this per tensor).
  const x = new Float32Array(params).fill(0.01),
    stream = kernels.streamId('bench.weight');
  const cases: Record<string, () => Promise<unknown>> = {
    forward: () => model.loss(batch),
    loraGradients: () => model.loraGradients(batch),
    step: () => opt.step(batch),
    zoStep: () => zo.step(batch),
    passes: async () => {
      kernels.perturb(x, { seed: 7n, stream, scale: 1e-3 });
      kernels.restoreUpdate(x, { seed: 7n, stream, scale: -1e-3, lr: 1e-6 });
    },
  };
  const times: Record<string, number[]> = {};
  for (const [name, fn] of Object.entries(cases)) {
    await fn();
    times[name] = [];
  } // warm-up (also the base hash)
  for (let r = 0; r < reps; r++) {
    // interleaved, so every case sees the same machine state
    for (const [name, fn] of Object.entries(cases)) {
      const t0 = process.hrtime.bigint();
      await fn();
      times[name].push(Number(process.hrtime.bigint() - t0) / 1e9);
    }
  }
  opt.dispose();
  zo.dispose();
  model.dispose();

  const t = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, median(v)]));
  const spread = (k: string) => `${Math.min(...times[k]).toFixed(3)}–${Math.max(...times[k]).toFixed(3)}`;
  const floor = t.forward + t.loraGradients;
  const rows: string[][] = [
    ['parameters (base, fp32)', `${(params / 1e6).toFixed(1)} M`, '', '', ''],
    ['(a) forward: model.loss', `${t.forward.toFixed(3)} s (${spread('forward')})`, '', '', ''],
    [
      '(b) forward + adapter backward: model.loraGradients',
      `${t.loraGradients.toFixed(3)} s (${spread('loraGradients')})`,
      '(a)',
      `${t.forward.toFixed(3)} s`,
      (t.loraGradients / t.forward).toFixed(3),
    ],
    [
      '(c) hybrid step: opt.step (zo + fo)',
      `${t.step.toFixed(3)} s (${spread('step')})`,
      'floor (a) + (b)',
      `${floor.toFixed(3)} s`,
      `**${(t.step / floor).toFixed(3)}** (target ≤ 1.15)`,
    ],
    [
      'ZO-only step: opt.step (zo)',
      `${t.zoStep.toFixed(3)} s (${spread('zoStep')})`,
      '2 × (a)',
      `${(2 * t.forward).toFixed(3)} s`,
      (t.zoStep / (2 * t.forward)).toFixed(3),
    ],
    [
      'non-forward part of ZO step: ZO step − 2 × (a)',
      `${(t.zoStep - 2 * t.forward).toFixed(3)} s`,
      '(c)',
      `${t.step.toFixed(3)} s`,
      ((t.zoStep - 2 * t.forward) / t.step).toFixed(3),
    ],
    ['hybrid step − floor', `${(t.step - floor).toFixed(3)} s`, '(c)', `${t.step.toFixed(3)} s`, ((t.step - floor) / t.step).toFixed(3)],
    [
      'kernel perturb + restoreUpdate over P values',
      `${t.passes.toFixed(3)} s (${spread('passes')})`,
      '(c)',
      `${t.step.toFixed(3)} s`,
      (t.passes / t.step).toFixed(3),
    ],
    [
      'peak RSS: step (3 × opt.step)',
      `${mib(rss.step.maxRSS).toFixed(0)} MiB`,
      'forward-only (3 × loss)',
      `${mib(rss.forward.maxRSS).toFixed(0)} MiB`,
      `**${(rss.step.maxRSS / rss.forward.maxRSS).toFixed(3)}**`,
    ],
    [
      'peak RSS: loraGradients (3 ×)',
      `${mib(rss.loraGradients.maxRSS).toFixed(0)} MiB`,
      'forward-only',
      `${mib(rss.forward.maxRSS).toFixed(0)} MiB`,
      (rss.loraGradients.maxRSS / rss.forward.maxRSS).toFixed(3),
    ],
    [
      'peak RSS above the built model: step',
      `${mib(rss.step.maxRSS - rss.step.built).toFixed(0)} MiB`,
      'forward-only',
      `${mib(rss.forward.maxRSS - rss.forward.built).toFixed(0)} MiB`,
      '',
    ],
    [
      'RSS of the built model (before the phase)',
      `${mib(rss.forward.built).toFixed(0)} MiB`,
      'fp32 weights alone',
      `${((params * 4) / 2 ** 20).toFixed(0)} MiB`,
      (rss.forward.built / ((params * 4) / 1024)).toFixed(3),
    ],
  ];
  console.log(
    `\n${reps} interleaved rounds after 1 warm-up; medians (min–max). Peak RSS: one child process per phase, same model, process.resourceUsage().maxRSS${rss.forward.reset ? ' with the peak mark reset after building' : ' (peak mark NOT reset: includes building)'}.`,
  );
  console.log('\n| measured | value | compared with | reference | ratio |');
  console.log('|---|---:|---|---:|---:|');
  for (const r of rows) console.log(`| ${r.join(' | ')} |`);
}

if (phase) await child(phase);
else await main();
