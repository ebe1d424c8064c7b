/**
 * zofo vs a plain-PyTorch reference (bench/reference/llama_ref.py; not part of `npm test`).
 *
 * For each shape, each step kind runs in a fresh process per side, zofo then PyTorch, kind
 * after kind (so both sides see the same machine state): build the same random Llama-shaped
 * model (LoRA r8/α16 on q_proj+v_proj), reset the peak-RSS mark, 1 warm-up + `--reps` timed
 * runs, report median/min/max and peak RSS. Kinds:
 *   forward  zofo model.loss                      | torch forward under inference_mode
 *   zo       zofo ZO-only step (forward estimator) | MeZO zo_step + zo_update (central, 2 forwards)
 *   lora     zofo FO-only step (SGD on adapters)   | autograd + SGD on the adapters
 *   hybrid   zofo hybrid step (ALGORITHM §2)       | the same step written the plain PyTorch way
 *   perturb  kernels.perturb over P fp32 values    | MeZO's perturbation pass over the P base weights
 * Threads: 2 for both (ZOFO_NUM_THREADS, torch.set_num_threads). The reference needs torch for
 * Debian's /usr/bin/python3 (apt-get install python3-torch). Writes bench/RESULTS.md.
 *
 *   node dist/bench/torch.js [--quick] [--large] [--reps 5] [--batch 16] [--seq 64] [--threads 2]
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { backendInfo, kernels, Model, parseConfig, type ClassificationExample } from '../lib/index.js';
import { HybridOptimizer } from '../lib/train/optimizer.js';
import { cpuBinding } from '../lib/binding.js';
import { numberArg } from './args.js';

interface Shape { name: string; dim: number; layers: number; heads: number; ffn: number; vocab: number }
interface Result { kind: string; median_s: number; min_s: number; max_s: number; peak_rss_mib: number; built_rss_mib: number; params: number; torch?: string }

const KINDS = ['forward', 'zo', 'lora', 'hybrid', 'perturb'] as const;
const SHAPES: Shape[] = [
  { name: 'stories260K-shaped', dim: 64, layers: 5, heads: 8, ffn: 172, vocab: 512 },
  { name: 'stories15M-shaped', dim: 288, layers: 6, heads: 6, ffn: 768, vocab: 32000 },
  { name: '~134M Llama-shaped', dim: 768, layers: 12, heads: 12, ffn: 2048, vocab: 32000 },
];
const PYTHON = '/usr/bin/python3';
const root = (p: string) => fileURLToPath(new URL(`../../${p}`, import.meta.url)); // from dist/bench/
const B = numberArg('batch', 16), T = numberArg('seq', 64), reps = numberArg('reps', 5), threads = numberArg('threads', 2);
const arg = (name: string) => { const i = process.argv.indexOf(`--${name}`); return i < 0 ? null : process.argv[i + 1]; };

let state = 12345;
const rand = () => { state ^= state << 13; state >>>= 0; state ^= state >>> 17; state ^= state << 5; state >>>= 0; return state / 4294967296; };
const baseParams = (s: Shape) => 2 * s.vocab * s.dim + s.layers * (4 * s.dim * s.dim + 3 * s.dim * s.ffn + 2 * s.dim) + s.dim;

function buildModel(s: Shape): Model { // as bench/step.ts
  const native = new (cpuBinding().NativeModel)({
    family: 0, vocab: s.vocab, hidden: s.dim, layers: s.layers, heads: s.heads, kvHeads: s.heads, headDim: s.dim / s.heads, ffn: s.ffn,
    maxPositions: 4096, embedDim: s.dim, positionOffset: 0, rmsnorm: true, normEps: 1e-5, activation: 2, ropeTheta: 10000,
    tieEmbeddings: false, attentionBias: false, outputBias: false, mlpBias: false, preNorm: true, finalNorm: true,
  });
  const names: string[] = [];
  const specs = native.tensorSpecs(), numel = (t: { shape: number[] }) => t.shape.reduce((a, b) => a * b, 1);
  const buf = new Float32Array(Math.max(...specs.map(numel)));
  for (const spec of specs) {
    const data = buf.subarray(0, numel(spec));
    if (spec.shape.length === 1) data.fill(1);
    else for (let i = 0; i < data.length; i++) data[i] = (rand() - 0.5) * 0.07; // std ≈ 0.02
    native.setTensor(spec.name, data);
    names.push(spec.name);
  }
  native.setStreamNames(names);
  const config = parseConfig({
    architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: s.vocab, hidden_size: s.dim, intermediate_size: s.ffn,
    num_hidden_layers: s.layers, num_attention_heads: s.heads, num_key_value_heads: s.heads, max_position_embeddings: 4096,
    rms_norm_eps: 1e-5, hidden_act: 'silu', rope_theta: 10000, tie_word_embeddings: false,
  }, '(random model)');
  const model = new Model('(random model)', config, native, null, 'f32', names);
  model.addLoRA({ rank: 8, alpha: 16, targets: ['q_proj', 'v_proj'] });
  return model;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const vmRssMiB = () => { try { return Number(/VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))![1]) / 1024; } catch { return process.memoryUsage().rss / 2 ** 20; } };

// Child: one kind on one shape, in its own process.
async function child(s: Shape, kind: string): Promise<void> {
  const batch: ClassificationExample[] = Array.from({ length: B }, (_, e) => ({
    prompt: Array.from({ length: T }, () => Math.floor(rand() * s.vocab)), candidates: [[1 + (e % 7)], [100 + (e % 5)]], label: e % 2,
  }));
  let fn: () => unknown, params = baseParams(s);
  if (kind === 'perturb') {
    const x = new Float32Array(params).fill(0.01), stream = kernels.streamId('bench.weight');
    let seed = 7n;
    fn = () => kernels.perturb(x, { seed: seed++, stream, scale: 1e-3 });
  } else {
    const model = buildModel(s);
    params = model.parameterCounts().reduce((a, b) => a + b, 0);
    const zo = { lr: 1e-6, mu: 1e-3, estimator: 'forward' as const, perturbations: 1 }, fo = { lr: 1e-4 };
    const opt = kind === 'zo' ? new HybridOptimizer(model, { zo }) : kind === 'lora' ? new HybridOptimizer(model, { fo })
      : kind === 'hybrid' ? new HybridOptimizer(model, { zo, fo }) : null;
    if (kind === 'forward') fn = () => model.loss(batch);
    else if (opt) fn = () => opt.step(batch);
    else throw new Error(`unknown kind ${kind}`);
  }
  (globalThis as { gc?: () => void }).gc?.();
  const built = vmRssMiB();
  try { writeFileSync('/proc/self/clear_refs', '5'); } catch { /* peak includes building */ }
  await fn();
  const times: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = process.hrtime.bigint();
    await fn();
    times.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  const r: Result = { kind, median_s: median(times), min_s: Math.min(...times), max_s: Math.max(...times),
    peak_rss_mib: process.resourceUsage().maxRSS / 1024, built_rss_mib: built, params };
  console.log(JSON.stringify(r));
}

const env = { ...process.env, ZOFO_NUM_THREADS: String(threads), OMP_NUM_THREADS: String(threads) };
const shapeArgs = (s: Shape) => ['--dim', s.dim, '--layers', s.layers, '--heads', s.heads, '--ffn', s.ffn, '--vocab', s.vocab,
  '--batch', B, '--seq', T, '--reps', reps, '--threads', threads].map(String);

function run(cmd: string, args: string[]): Result | string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env, maxBuffer: 1 << 24 });
  if (r.status !== 0) return `failed (${r.status}): ${(r.stderr || '').trim().split('\n').slice(-3).join(' / ')}`;
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Result;
}

const f3 = (x: number) => x.toFixed(x < 0.01 ? 5 : 3);
const cell = (r: Result | undefined) => r ? `${f3(r.median_s)} s (${f3(r.min_s)}–${f3(r.max_s)})` : 'not run';
const LABELS: Record<string, [string, string]> = {
  forward: ['forward', 'model.loss vs inference_mode forward'],
  zo: ['ZO step', 'ZO-only opt.step (forward est.) vs MeZO zo_step+zo_update'],
  lora: ['LoRA step', 'FO-only opt.step vs autograd + SGD on adapters'],
  hybrid: ['hybrid step', 'hybrid opt.step vs plain-PyTorch hybrid'],
  perturb: ['perturbation pass', 'kernels.perturb vs per-tensor manual_seed+normal+add'],
};

async function main(): Promise<void> {
  const info = backendInfo();
  const zofoVersion = JSON.parse(readFileSync(root('package.json'), 'utf8')).version as string;
  const probe = spawnSync(PYTHON, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8', env });
  const torchVersion = probe.status === 0 ? probe.stdout.trim() : null;
  const shapes = process.argv.includes('--quick') ? SHAPES.slice(0, 1) : process.argv.includes('--large') ? SHAPES : SHAPES.slice(0, 2);
  const out: string[] = [];
  const say = (line = '') => { console.log(line); out.push(line); };
  say('# zofo vs PyTorch reference (CPU)');
  say();
  say(`- date: ${new Date().toISOString()}`);
  say(`- machine: ${os.cpus()[0]?.model ?? '?'} (${os.cpus().length} logical CPUs), load average at start ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}; zofo SIMD ${info.cpu.simd}, BLAS ${info.cpu.blas}`);
  say(`- threads: ${threads} for both (ZOFO_NUM_THREADS=${threads}, torch.set_num_threads(${threads}), OMP_NUM_THREADS=${threads}); OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE ?? '(unset)'} for both`);
  say(`- versions: node ${process.version}, zofo ${zofoVersion}, torch ${torchVersion ?? 'NOT AVAILABLE'} (${PYTHON})`);
  say(`- batch: ${B} prompts × ${T} tokens, 2 single-token candidates (MeZO's classification loss); LoRA r8/α16 on q_proj+v_proj; fp32; ${reps} timed runs after 1 warm-up, one fresh process per kind and side, zofo then PyTorch`);
  say('- zofo ZO step: forward estimator, q = 1 (2 forwards); MeZO: central SPSA (2 forwards) + 4 z-generation passes. PyTorch hybrid: FO at x, +μz forward, restore, update (3 z passes). Logits at the last position only on both sides.');
  say('- peak RSS: maxRSS over warm-up + timed runs, with the peak mark reset after building (/proc/self/clear_refs 5); "above built" = peak − RSS after building. zofo\'s perturbation row uses a separate P-value buffer and no model, so only its "above built" is comparable.');
  say('- GPU: NOT run (the CUDA engine is not available in this build); all numbers are CPU.');
  if (!torchVersion) {
    say();
    say(`**The PyTorch reference was NOT run**: ${PYTHON} cannot import torch. Install it with \`apt-get install python3-torch\` and rerun. zofo's numbers follow.`);
  }
  const verdicts: string[] = [];
  for (const s of shapes) {
    const z: Record<string, Result> = {}, p: Record<string, Result> = {};
    for (const kind of KINDS) {
      const zr = run(process.execPath, ['--expose-gc', process.argv[1], '--child', kind, '--shape', s.name, ...shapeArgs(s)]);
      if (typeof zr === 'string') console.error(`zofo ${kind}: ${zr}`); else z[kind] = zr;
      if (torchVersion) {
        const pr = run(PYTHON, [root('bench/reference/llama_ref.py'), ...shapeArgs(s), '--step', kind]);
        if (typeof pr === 'string') console.error(`torch ${kind}: ${pr}`); else p[kind] = pr;
      }
      process.stderr.write(`  ${s.name} ${kind} done\n`);
    }
    const P = z.forward?.params ?? baseParams(s);
    say();
    say(`## ${s.name}: dim ${s.dim}, ${s.layers} layers, ${s.heads} heads, ffn ${s.ffn}, vocab ${s.vocab}; ${(P / 1e6).toFixed(2)} M base parameters (torch: ${p.forward ? (p.forward.params / 1e6).toFixed(2) + ' M' : '–'})`);
    say();
    say('| step | zofo vs reference | zofo median (min–max) | reference median (min–max) | zofo ÷ ref | speed-up (ref ÷ zofo) | peak RSS zofo / ref (MiB) | ÷ forward-only zofo / ref | above built zofo / ref (MiB) |');
    say('|---|---|---:|---:|---:|---:|---:|---:|---:|');
    for (const kind of KINDS) {
      const a = z[kind], b = p[kind];
      const ratio = a && b ? (a.median_s / b.median_s).toFixed(3) : '–';
      const speed = a && b ? `**${(b.median_s / a.median_s).toFixed(2)}×**` : '–';
      const rss = `${a ? a.peak_rss_mib.toFixed(0) : '–'} / ${b ? b.peak_rss_mib.toFixed(0) : '–'}`;
      const vsF = (r: Result | undefined, f: Result | undefined) => r && f && kind !== 'perturb' ? (r.peak_rss_mib / f.peak_rss_mib).toFixed(3) : '–';
      const above = (r: Result | undefined) => r ? (r.peak_rss_mib - r.built_rss_mib).toFixed(0) : '–';
      say(`| ${LABELS[kind][0]} | ${LABELS[kind][1]} | ${cell(a)} | ${cell(b)} | ${ratio} | ${speed} | ${rss} | ${vsF(a, z.forward)} / ${vsF(b, p.forward)} | ${above(a)} / ${above(b)} |`);
    }
    const target = (kind: string, want: number, what: string) => {
      const a = z[kind], b = p[kind];
      if (!a || !b) { verdicts.push(`- ${s.name}: ${what} ≥ ${want}× — not measured`); return; }
      const sp = b.median_s / a.median_s;
      const aboveA = a.peak_rss_mib - a.built_rss_mib, aboveB = b.peak_rss_mib - b.built_rss_mib;
      const memOk = kind === 'perturb' ? aboveA <= aboveB + 1 : a.peak_rss_mib <= b.peak_rss_mib;
      verdicts.push(`- ${s.name}: ${what} ≥ ${want}× faster — ${sp.toFixed(2)}×: **${sp >= want ? 'met' : 'MISSED'}**; ` +
        `no more peak memory — **${memOk ? 'met' : 'MISSED'}** (peak ${a.peak_rss_mib.toFixed(0)} vs ${b.peak_rss_mib.toFixed(0)} MiB; ` +
        `above built ${aboveA.toFixed(0)} vs ${aboveB.toFixed(0)} MiB)`);
    };
    target('hybrid', 1.5, 'hybrid step vs PyTorch hybrid reference');
    target('zo', 2, 'ZO step vs MeZO');
    target('perturb', 3, "perturbation pass vs MeZO's per-tensor generation");
  }
  say();
  say('## Targets');
  say();
  say('Hybrid step ≥ 1.5× faster than the PyTorch hybrid reference, ZO step ≥ 2× faster than MeZO, perturbation pass ≥ 3× faster than MeZO\'s per-tensor generation, each at no more peak memory (perturbation pass: peak above the built state).');
  say();
  for (const v of verdicts) say(v);
  say();
  say(`Command: \`node dist/bench/torch.js ${process.argv.slice(2).join(' ')}\``.replace(/ `$/, '`'));
  writeFileSync(root('bench/RESULTS.md'), out.join('\n') + '\n');
  console.log(`\n(wrote ${root('bench/RESULTS.md')})`);
}

const childKind = arg('child');
if (childKind) {
  const s: Shape = { name: arg('shape') ?? '', dim: numberArg('dim', 64), layers: numberArg('layers', 5), heads: numberArg('heads', 8),
    ffn: numberArg('ffn', 172), vocab: numberArg('vocab', 512) };
  await child(s, childKind);
} else await main();
