/**
 * zofo vs a plain-PyTorch reference (bench/reference/llama_ref.py; not part of `npm test`).
 * One command (`npm run bench:torch [-- --large]`) writes bench/RESULTS.md, bench/scaling.csv
 * and bench/img/scaling-*.svg from one run:
 *
 * 1. Side-by-side tables. For each shape, each step kind runs in a fresh process per side, zofo
 *    then PyTorch, kind after kind (so both sides see the same machine state): build the same
 *    random Llama-shaped model (LoRA r8/α16 on q_proj+v_proj), reset the peak-RSS mark, 1 warm-up
 *    + `--reps` timed runs, report median/min/max and peak RSS. Kinds:
 *      forward  zofo model.loss                      | torch forward under inference_mode
 *      zo       zofo ZO-only step (forward estimator) | MeZO zo_step + zo_update (central, 2 forwards)
 *      lora     zofo FO-only step (SGD on adapters)   | autograd + SGD on the adapters
 *      hybrid   zofo hybrid step (algorithm.md §2)    | the same step written the plain PyTorch way
 *      perturb  kernels.perturb over P fp32 values    | MeZO's perturbation pass over the P base weights
 * 2. Machine limits (bench/limits.ts), at the start and at the end of the run, by both libraries:
 *    copy bandwidth and a large square fp32 GEMM; zofo's achieved fraction of each (perturbation
 *    bytes/s ÷ copy bandwidth, forward matmul FLOP/s ÷ GEMM rate).
 * 3. Scaling (bench/scaling.ts): forward, ZO and hybrid step time and peak RSS for both sides as
 *    the model grows (at the table's batch) and as batch × sequence grows (stories15M-shaped);
 *    points already measured by the tables are reused, not rerun.
 * Threads: 2 for both (ZOFO_NUM_THREADS, torch.set_num_threads, OPENBLAS_NUM_THREADS for torch's
 * BLAS; zofo runs BLAS single-threaded inside its own threads), OMP_WAIT_POLICY=PASSIVE (see env
 * below). Each measurement records the other processes' CPU load during its timed runs; rows
 * taken on a busy machine are re-measured or marked ⚠. The reference needs torch for
 * Debian's /usr/bin/python3: when it is missing, this installs python3-torch with apt-get
 * (`--no-install` to skip; then only zofo's numbers are written).
 *
 *   node dist/bench/torch.js [--quick] [--large] [--reps 5] [--scaling-reps 3] [--batch 16]
 *                            [--seq 64] [--threads 2] [--no-scaling] [--no-install]
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { backendInfo, kernels, Model, parseConfig, type ClassificationExample } from '../lib/index.js';
import { HybridOptimizer } from '../lib/train/optimizer.js';
import { cpuBinding } from '../lib/binding.js';
import { numberArg } from './args.js';
import { ownedSections } from './results-section.js';
import { forwardFlops, perturbBytes, zofoLimits, type Limits } from './limits.js';
import { SCALING_KINDS, scalingMarkdown, scalingPoints, writeScaling, type Measured, type Pair, type Point, type Result, type Shape } from './scaling.js';

const KINDS = ['forward', 'zo', 'lora', 'hybrid', 'perturb'] as const;
const S260K: Shape = { name: 'stories260K-shaped', dim: 64, layers: 5, heads: 8, ffn: 172, vocab: 512 };
const S6M: Shape = { name: '~6M Llama-shaped', dim: 192, layers: 6, heads: 6, ffn: 512, vocab: 8192 };
const S15M: Shape = { name: 'stories15M-shaped', dim: 288, layers: 6, heads: 6, ffn: 768, vocab: 32000 };
const S42M: Shape = { name: 'stories42M-shaped', dim: 512, layers: 8, heads: 8, ffn: 1376, vocab: 32000 };
const S134M: Shape = { name: '~134M Llama-shaped', dim: 768, layers: 12, heads: 12, ffn: 2048, vocab: 32000 };
const PYTHON = '/usr/bin/python3';
const root = (p: string) => fileURLToPath(new URL(`../../${p}`, import.meta.url)); // from dist/bench/
const B = numberArg('batch', 16),
  T = numberArg('seq', 64),
  reps = numberArg('reps', 5),
  threads = numberArg('threads', 2);
const scalingReps = numberArg('scaling-reps', 3);
const arg = (name: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? null : process.argv[i + 1];
};
const flag = (name: string) => process.argv.includes(`--${name}`);
const quick = flag('quick'),
  large = flag('large');
/** Side-by-side tables: every kind on these shapes. */
const TABLE_SHAPES = quick ? [S260K] : large ? [S260K, S15M, S134M] : [S260K, S15M];
/** Scaling: model sizes at B × T, then batch × sequence points at one model. */
const SCALING: Point[] = flag('no-scaling')
  ? []
  : quick
    ? scalingPoints([S260K, S6M], S260K, B, T, [
        [4, 32],
        [8, 64],
        [32, 128],
      ])
    : scalingPoints(large ? [S260K, S6M, S15M, S42M, S134M] : [S260K, S6M, S15M, S42M], S15M, B, T, [
        [4, 32],
        [8, 64],
        [16, 128],
        [32, 128],
      ]);

let state = 12345;
const rand = () => {
  state ^= state << 13;
  state >>>= 0;
  state ^= state >>> 17;
  state ^= state << 5;
  state >>>= 0;
  return state / 4294967296;
};
const baseParams = (s: Shape) => 2 * s.vocab * s.dim + s.layers * (4 * s.dim * s.dim + 3 * s.dim * s.ffn + 2 * s.dim) + s.dim;

function buildModel(s: Shape): Model {
  // as bench/step.ts
  const native = new (cpuBinding().NativeModel)({
    family: 0,
    vocab: s.vocab,
    hidden: s.dim,
    layers: s.layers,
    heads: s.heads,
    kvHeads: s.heads,
    headDim: s.dim / s.heads,
    ffn: s.ffn,
    maxPositions: 4096,
    embedDim: s.dim,
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
    numel = (t: { shape: number[] }) => t.shape.reduce((a, b) => a * b, 1);
  const buf = new Float32Array(Math.max(...specs.map(numel)));
  for (const spec of specs) {
    const data = buf.subarray(0, numel(spec));
    if (spec.shape.length === 1) data.fill(1);
    else for (let i = 0; i < data.length; i++) data[i] = (rand() - 0.5) * 0.07; // std ≈ 0.02
    native.setTensor(spec.name, data);
    names.push(spec.name);
  }
  native.setStreamNames(names);
  const config = parseConfig(
    {
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      vocab_size: s.vocab,
      hidden_size: s.dim,
      intermediate_size: s.ffn,
      num_hidden_layers: s.layers,
      num_attention_heads: s.heads,
      num_key_value_heads: s.heads,
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

/** CPU-seconds the whole machine has spent busy (user, nice, system, irq, softirq, steal) since boot: /proc/stat. */
function machineBusySeconds(): number {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    return (f[0] + f[1] + f[2] + f[5] + f[6] + (f[7] ?? 0)) / 100; // USER_HZ = 100 on Linux
  } catch {
    return NaN;
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const vmRssMiB = () => {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))![1]) / 1024;
  } catch {
    return process.memoryUsage().rss / 2 ** 20;
  }
};

// Child: one kind on one shape, in its own process.
async function child(s: Shape, kind: string): Promise<void> {
  const batch: ClassificationExample[] = Array.from({ length: B }, (_, e) => ({
    prompt: Array.from({ length: T }, () => Math.floor(rand() * s.vocab)),
    candidates: [[1 + (e % 7)], [100 + (e % 5)]],
    label: e % 2,
  }));
  let fn: () => unknown,
    params = baseParams(s);
  if (kind === 'limits') {
    console.log(JSON.stringify(zofoLimits(threads)));
    return;
  }
  if (kind === 'perturb') {
    const x = new Float32Array(params).fill(0.01),
      stream = kernels.streamId('bench.weight');
    let seed = 7n;
    fn = () => kernels.perturb(x, { seed: seed++, stream, scale: 1e-3 });
  } else {
    const model = buildModel(s);
    params = model.parameterCounts().reduce((a, b) => a + b, 0);
    const zo = { lr: 1e-6, mu: 1e-3, estimator: 'forward' as const, perturbations: 1 },
      fo = { lr: 1e-4 };
    const opt =
      kind === 'zo'
        ? new HybridOptimizer(model, { zo })
        : kind === 'lora'
          ? new HybridOptimizer(model, { fo })
          : kind === 'hybrid'
            ? new HybridOptimizer(model, { zo, fo })
            : null;
    if (kind === 'forward') fn = () => model.loss(batch);
    else if (opt) fn = () => opt.step(batch);
    else throw new Error(`unknown kind ${kind}`);
  }
  (globalThis as { gc?: () => void }).gc?.();
  const built = vmRssMiB();
  try {
    writeFileSync('/proc/self/clear_refs', '5');
  } catch {
    /* peak includes building */
  }
  await fn();
  const times: number[] = [];
  const busy0 = machineBusySeconds(),
    cpu0 = process.cpuUsage(),
    wall0 = process.hrtime.bigint();
  for (let r = 0; r < reps; r++) {
    const t0 = process.hrtime.bigint();
    await fn();
    times.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  const wall = Number(process.hrtime.bigint() - wall0) / 1e9,
    cpu = process.cpuUsage(cpu0);
  const other = (machineBusySeconds() - busy0 - (cpu.user + cpu.system) / 1e6) / wall;
  const r: Result = {
    kind,
    median_s: median(times),
    min_s: Math.min(...times),
    max_s: Math.max(...times),
    peak_rss_mib: process.resourceUsage().maxRSS / 1024,
    built_rss_mib: built,
    params,
    reps,
    // /proc/stat ticks are 10 ms: below half a second of timed runs the estimate is noise.
    other_load: Number.isFinite(other) && wall >= 0.5 ? Math.max(0, other) : undefined,
  };
  console.log(JSON.stringify(r));
}

// OMP_WAIT_POLICY=PASSIVE: torch's OpenMP threads sleep instead of spinning between parallel
// regions. On a shared 2-core machine libgomp's default spinning makes the reference 2.5–20×
// slower whenever other processes take a core (zofo, which does not use OpenMP, is unaffected by
// the setting); set OMP_WAIT_POLICY yourself to override.
const env = {
  ...process.env,
  ZOFO_NUM_THREADS: String(threads),
  OMP_NUM_THREADS: String(threads),
  OPENBLAS_NUM_THREADS: process.env.OPENBLAS_NUM_THREADS ?? String(threads),
  OMP_WAIT_POLICY: process.env.OMP_WAIT_POLICY ?? 'PASSIVE',
};
const shapeArgs = (s: Shape, b: number, t: number, r: number) =>
  [
    '--dim',
    s.dim,
    '--layers',
    s.layers,
    '--heads',
    s.heads,
    '--ffn',
    s.ffn,
    '--vocab',
    s.vocab,
    '--batch',
    b,
    '--seq',
    t,
    '--reps',
    r,
    '--threads',
    threads,
  ].map(String);

function run<R>(cmd: string, args: string[]): R | string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env, maxBuffer: 1 << 24 });
  if (r.status !== 0) return `failed (${r.status}): ${(r.stderr || '').trim().split('\n').slice(-3).join(' / ')}`;
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as R;
}

const t0 = Date.now();
const elapsed = () => `${((Date.now() - t0) / 60000).toFixed(1)} min`;
let torchVersion: string | null = null;

/** Other processes' CPU use (cores) during a pair's timed runs: the larger of the two sides. */
const contention = (pair: Pair) => Math.max(pair.z?.other_load ?? 0, pair.p?.other_load ?? 0);
/** How unevenly the two sides were contended (cores): what biases their ratio most. */
const asymmetry = (pair: Pair) => Math.abs((pair.z?.other_load ?? 0) - (pair.p?.other_load ?? 0));
const CONTENDED = Number(arg('contended') ?? 0.3),
  RETRIES = Number(arg('retries') ?? 1);
let repeats = 0;

/**
 * One kind at one shape and batch, zofo then PyTorch, each in a fresh process; cached by point.
 * When the other processes' load differed between the two sides' timed runs by more than
 * CONTENDED cores (one side ran on a busier machine), the pair is measured again (up to RETRIES
 * times) and the more evenly contended pair is kept.
 */
const cache = new Map<string, Pair>();
function measure(s: Shape, b: number, t: number, kind: string, r: number): Pair {
  const key = `${s.name}|${b}|${t}|${kind}`;
  const hit = cache.get(key);
  if (hit) return hit;
  let pair = measureOnce(s, b, t, kind, r);
  for (let i = 0; i < RETRIES && asymmetry(pair) > CONTENDED; i++) {
    repeats++;
    process.stderr.write(`    (unevenly contended: other load ${pair.z?.other_load?.toFixed(2)} / ${pair.p?.other_load?.toFixed(2)} cores; measuring again)\n`);
    const again = measureOnce(s, b, t, kind, r);
    if (asymmetry(again) < asymmetry(pair)) pair = again;
  }
  cache.set(key, pair);
  return pair;
}

function measureOnce(s: Shape, b: number, t: number, kind: string, r: number): Pair {
  const pair: Pair = {};
  const zr = run<Result>(process.execPath, ['--expose-gc', process.argv[1], '--child', kind, '--shape', s.name, ...shapeArgs(s, b, t, r)]);
  if (typeof zr === 'string') console.error(`zofo ${kind} (${s.name}, ${b}×${t}): ${zr}`);
  else pair.z = zr;
  if (torchVersion) {
    const pr = run<Result>(PYTHON, [root('bench/reference/llama_ref.py'), ...shapeArgs(s, b, t, r), '--step', kind]);
    if (typeof pr === 'string') console.error(`torch ${kind} (${s.name}, ${b}×${t}): ${pr}`);
    else pair.p = pr;
  }
  process.stderr.write(
    `  [${elapsed()}] ${s.name} ${b}×${t} ${kind}: zofo ${pair.z?.median_s.toFixed(3) ?? '–'} s, ` +
      `torch ${pair.p?.median_s.toFixed(3) ?? '–'} s; other load ${pair.z?.other_load?.toFixed(2) ?? '–'} / ${pair.p?.other_load?.toFixed(2) ?? '–'} cores\n`,
  );
  return pair;
}

interface LimitsPair {
  z?: Limits;
  p?: Limits;
}
function measureLimits(): LimitsPair {
  const out: LimitsPair = {};
  const z = run<Limits>(process.execPath, [process.argv[1], '--child', 'limits', '--threads', String(threads)]);
  if (typeof z === 'string') console.error(`zofo limits: ${z}`);
  else out.z = z;
  if (torchVersion) {
    const p = run<Limits>(PYTHON, [root('bench/reference/llama_ref.py'), '--step', 'limits', '--threads', String(threads)]);
    if (typeof p === 'string') console.error(`torch limits: ${p}`);
    else out.p = p;
  }
  process.stderr.write(
    `  [${elapsed()}] machine limits: copy ${((out.z?.copy_bytes_per_s ?? NaN) / 1e9).toFixed(1)} / ` +
      `${((out.p?.copy_bytes_per_s ?? NaN) / 1e9).toFixed(1)} GB/s, GEMM ${((out.z?.gemm_flop_per_s ?? NaN) / 1e9).toFixed(0)} / ` +
      `${((out.p?.gemm_flop_per_s ?? NaN) / 1e9).toFixed(0)} GFLOP/s (zofo / torch)\n`,
  );
  return out;
}

/** torch for /usr/bin/python3: its version, installing Debian's python3-torch with apt-get when missing. */
function ensureTorch(): string | null {
  const probe = () => spawnSync(PYTHON, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8', env });
  let p = probe();
  if (p.status === 0) return p.stdout.trim();
  if (flag('no-install')) return null;
  console.error(`${PYTHON} cannot import torch: installing Debian's python3-torch with apt-get (--no-install skips this)`);
  const root_ = process.getuid?.() === 0;
  const apt = (args: string[]) =>
    spawnSync(root_ ? 'apt-get' : 'sudo', root_ ? args : ['-n', 'apt-get', ...args], {
      stdio: 'inherit',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
  const install = ['install', '-y', '--no-install-recommends', 'python3-torch'];
  if (apt(install).status !== 0) {
    apt(['update']);
    apt(install);
  }
  p = probe();
  return p.status === 0 ? p.stdout.trim() : null;
}

const f3 = (x: number) => x.toFixed(x < 0.01 ? 5 : 3);
const cell = (r: Result | undefined) => (r ? `${f3(r.median_s)} s (${f3(r.min_s)}–${f3(r.max_s)})` : 'not run');
const LABELS: Record<string, [string, string]> = {
  forward: ['forward', 'model.loss vs inference_mode forward'],
  zo: ['ZO step', 'ZO-only opt.step (forward est.) vs MeZO zo_step+zo_update'],
  lora: ['LoRA step', 'FO-only opt.step vs autograd + SGD on adapters'],
  hybrid: ['hybrid step', 'hybrid opt.step vs plain-PyTorch hybrid'],
  perturb: ['perturbation pass', 'kernels.perturb vs per-tensor manual_seed+normal+add'],
};
const gb = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? '–' : (x / 1e9).toFixed(1));
const frac = (a: number | undefined, b: number) => (a === undefined || !Number.isFinite(a) || !(b > 0) ? '–' : (a / b).toFixed(3));

async function main(): Promise<void> {
  const info = backendInfo();
  const zofoVersion = JSON.parse(readFileSync(root('package.json'), 'utf8')).version as string;
  const loadStart = os.loadavg();
  const idle0 = machineBusySeconds(),
    cpuIdle0 = process.cpuUsage();
  await new Promise((res) => setTimeout(res, 3000));
  const otherBefore = (machineBusySeconds() - idle0 - (process.cpuUsage(cpuIdle0).user + process.cpuUsage(cpuIdle0).system) / 1e6) / 3;
  if (otherBefore > CONTENDED)
    process.stderr.write(
      `warning: other processes use ${otherBefore.toFixed(2)} cores before the run starts: absolute times will be inflated and rows marked ⚠\n`,
    );
  torchVersion = ensureTorch();
  const coreProbe = torchVersion
    ? spawnSync(
        PYTHON,
        [
          '-c',
          'import ctypes, torch\ntry:\n f = ctypes.CDLL("libopenblas.so.0").openblas_get_corename; f.restype = ctypes.c_char_p; print(f().decode())\nexcept Exception: print("?")',
        ],
        { encoding: 'utf8', env },
      )
    : null;
  const openblasCore = coreProbe?.status === 0 ? coreProbe.stdout.trim() : '?';
  process.stderr.write(`zofo vs PyTorch: ${TABLE_SHAPES.length} table shapes, ${SCALING.length} scaling points; torch ${torchVersion ?? 'NOT AVAILABLE'}\n`);

  // 1. limits at the start, 2. tables, 3. scaling, 4. limits at the end.
  const limitsStart = measureLimits();
  const tables = TABLE_SHAPES.map((s) => ({ s, r: Object.fromEntries(KINDS.map((k) => [k, measure(s, B, T, k, reps)])) as Record<string, Pair> }));
  const scaling: Measured[] = SCALING.map((point) => {
    const kinds = Object.fromEntries(SCALING_KINDS.map((k) => [k, measure(point.shape, point.batch, point.seq, k, scalingReps)]));
    const f = kinds.forward as Pair;
    return { point, params: f.z?.params ?? f.p?.params ?? baseParams(point.shape), kinds };
  });
  const limitsEnd = measureLimits();
  const minutes = (Date.now() - t0) / 60000;

  // The machine's limits: the best either library showed, at either time (the fractions are then conservative).
  const all = [limitsStart.z, limitsStart.p, limitsEnd.z, limitsEnd.p].filter((x): x is Limits => !!x);
  const copyBest = Math.max(...all.map((l) => l.copy_bytes_per_s)),
    gemmBest = Math.max(...all.map((l) => l.gemm_flop_per_s));

  const out: string[] = [];
  const say = (line = '') => out.push(line);
  const command = `npm run bench:torch${process.argv.length > 2 ? ' -- ' + process.argv.slice(2).join(' ') : ''}`;
  say('# zofo vs PyTorch reference (CPU)');
  say();
  say('Regenerate everything in this file, [bench/scaling.csv](scaling.csv) and [bench/img/](img/) with one command:');
  say();
  say('```sh');
  say('npm run bench:torch              # stories260K + stories15M tables, scaling to 58 M parameters (≈ 6 min on a quiet 2-core machine)');
  say(
    'npm run bench:torch -- --large   # adds the ~134M model to the tables and to the model-size sweep (≈ 10 min quiet, ≈ 15 min with a core taken by other work)',
  );
  say('```');
  say();
  say(
    `This file: \`${command}\`, ${minutes.toFixed(1)} min wall time. All numbers are from that one run; performance claims are the ratios between its columns.`,
  );
  say();
  say(
    '**GPU: NOT measured.** Every number below is CPU; no GPU number exists yet. The GPU part runs inside the GPU check, `npm run test:gpu` (one command, on a machine with an NVIDIA GPU): the ~1B and ~7B Llama shapes in bf16 storage and bf16 compute (the CUDA default) at batch 16 × 128 — forward ÷ the bf16 cuBLAS rate of its own GEMMs measured in the same run (target ≥ 0.6), hybrid step ÷ (2 forwards + 1 adapter backward) (target ≤ 1.15), perturbation GB/s ÷ device copy and generator, peak device memory; the plain-PyTorch reference in bf16 (autocast: the MeZO ZO step, the PEFT-style LoRA step, the hybrid step) on the same shapes via `bench/reference/gpu_compare.py` (target: the zofo hybrid step ≥ 2× faster); and, on a GPU with ≥ 120 GiB (141 GB H200), the peak device memory of the llama-30b shape ÷ weight bytes (target ≤ 1.1 × weights + activations). It writes its numbers to `gpu-results.json` and `gpu-vs-torch.json`; it has not run on a GPU yet.',
  );
  say();
  say('## Setup');
  say();
  say(`- date: ${new Date().toISOString()}`);
  say(
    `- machine: ${os.cpus()[0]?.model ?? '?'} (${os.cpus().length} logical CPUs, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB), **shared**: other work may run at the same time, so absolute times are noisy; load average ${loadStart.map((x) => x.toFixed(2)).join(' ')} at start, ${os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')} at end. zofo SIMD ${info.cpu.simd}, BLAS ${info.cpu.blas}`,
  );
  say(`- versions: node ${process.version}, zofo ${zofoVersion}, torch ${torchVersion ?? 'NOT AVAILABLE'} (${PYTHON}, Debian python3-torch)`);
  say(
    `- BLAS: both sides load the same OpenBLAS library with the same environment: OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE ?? '(unset)'} for both (OpenBLAS picked core: ${openblasCore}); OPENBLAS_NUM_THREADS=${env.OPENBLAS_NUM_THREADS} (torch's BLAS threads; zofo calls OpenBLAS single-threaded inside its own ${threads} threads)`,
  );
  say(`- threads: ${threads} for both (ZOFO_NUM_THREADS=${threads}, torch.set_num_threads(${threads}), OMP_NUM_THREADS=${threads})`);
  say(
    `- batch: ${B} prompts × ${T} tokens, 2 single-token candidates (MeZO's classification loss); LoRA r8/α16 on q_proj+v_proj; fp32; tables: ${reps} timed runs after 1 warm-up, scaling: ${scalingReps} (points the tables measured are reused); one fresh process per kind and side, zofo then PyTorch`,
  );
  say(
    '- zofo ZO step: forward estimator, q = 1 (2 forwards); MeZO: central SPSA (2 forwards) + 4 z-generation passes. PyTorch hybrid: FO at x, +μz forward, restore, update (3 z passes). Logits at the last position only on both sides.',
  );
  const loads = [...cache.values()].flatMap((x) => [x.z?.other_load, x.p?.other_load]).filter((x): x is number => typeof x === 'number');
  const meanLoad = loads.reduce((a, b) => a + b, 0) / Math.max(1, loads.length);
  say(
    `- contention: "other load" = other processes' CPU use during a measurement's timed runs, in cores ((machine busy CPU-seconds from /proc/stat − the measuring process's own) ÷ wall seconds; ${os.cpus().length} cores in all). Before the run (3 s idle sample): ${otherBefore.toFixed(2)} cores; over the run: mean ${meanLoad.toFixed(2)}, max ${Math.max(0, ...loads).toFixed(2)} cores. Not estimated (–) when the timed runs took under 0.5 s in all (/proc/stat counts 10 ms ticks). A pair (zofo + reference) whose two sides saw other loads differing by more than ${CONTENDED} cores was measured again (up to ${RETRIES}×) and the more evenly contended pair kept: ${repeats} repeat(s). Rows where either side saw more than ${CONTENDED} cores of other load are marked ⚠: their absolute times are inflated and their ratios less reliable.`,
  );
  say(
    `- OMP_WAIT_POLICY=${env.OMP_WAIT_POLICY} for both (only torch uses OpenMP): with libgomp's default spin-waiting, the reference ran 2.5–20× slower whenever another process took one of the 2 cores (checked before this run: stories15M ZO step 4.8–5.6 s spinning vs 2.4–2.5 s passive, at ~0.8 cores of other load), which would flatter zofo. On a quiet machine PASSIVE helps the reference too (checked: stories15M forward 0.22 s passive vs 0.40 s spinning, hybrid 1.7 vs 2.4 s; stories260K forward 0.068 vs 0.056 s, the one case it costs), so it is the reference-friendly choice.`,
  );
  say(
    '- peak RSS: maxRSS over warm-up + timed runs, with the peak mark reset after building (/proc/self/clear_refs 5); "above built" = peak − RSS after building (it can come out slightly negative when the allocator returns pages after the built snapshot). zofo\'s perturbation row uses a separate P-value buffer and no model, so only its "above built" is comparable.',
  );
  if (!torchVersion) {
    say();
    say(`**The PyTorch reference was NOT run**: ${PYTHON} cannot import torch and installing python3-torch failed (or --no-install). zofo's numbers follow.`);
  }

  say();
  say('## Machine limits (measured in this run)');
  say();
  say('| limit | zofo, start | zofo, end | PyTorch, start | PyTorch, end | used below (best) |');
  say('|---|---:|---:|---:|---:|---:|');
  const lim = (l: Limits | undefined, f: (l: Limits) => number) => (l ? gb(f(l)) : '–');
  const lz = limitsStart.z ?? limitsEnd.z,
    lp = limitsStart.p ?? limitsEnd.p;
  say(
    `| memory copy bandwidth, GB/s (bytes read + written; ${lz?.copy_mib ?? 256} MiB fp32; zofo benchCopy / torch Tensor.copy_) | ${lim(limitsStart.z, (l) => l.copy_bytes_per_s)} | ${lim(limitsEnd.z, (l) => l.copy_bytes_per_s)} | ${lim(limitsStart.p, (l) => l.copy_bytes_per_s)} | ${lim(limitsEnd.p, (l) => l.copy_bytes_per_s)} | **${gb(copyBest)}** |`,
  );
  say(
    `| GEMM rate, GFLOP/s (${lz?.gemm_n ?? 2048}³ fp32, 2n³ FLOP; ${lz?.blas ?? 'zofo sgemm'} / ${lp?.blas ?? 'torch.mm'}) | ${lim(limitsStart.z, (l) => l.gemm_flop_per_s)} | ${lim(limitsEnd.z, (l) => l.gemm_flop_per_s)} | ${lim(limitsStart.p, (l) => l.gemm_flop_per_s)} | ${lim(limitsEnd.p, (l) => l.gemm_flop_per_s)} | **${gb(gemmBest)}** |`,
  );

  const verdicts: string[] = [];
  const fractions: string[] = [];
  for (const { s, r } of tables) {
    const z = Object.fromEntries(KINDS.map((k) => [k, r[k].z])) as Record<string, Result | undefined>;
    const p = Object.fromEntries(KINDS.map((k) => [k, r[k].p])) as Record<string, Result | undefined>;
    const P = z.forward?.params ?? baseParams(s);
    say();
    say(
      `## ${s.name}: dim ${s.dim}, ${s.layers} layers, ${s.heads} heads, ffn ${s.ffn}, vocab ${s.vocab}; ${(P / 1e6).toFixed(2)} M base parameters (torch: ${p.forward ? (p.forward.params / 1e6).toFixed(2) + ' M' : '–'})`,
    );
    say();
    say(
      '| step | zofo vs reference | zofo median (min–max) | reference median (min–max) | zofo ÷ ref | speed-up (ref ÷ zofo) | peak RSS zofo / ref (MiB) | ÷ forward-only zofo / ref | above built zofo / ref (MiB) | other load zofo / ref (cores) |',
    );
    say('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const kind of KINDS) {
      const a = z[kind],
        b = p[kind];
      const ratio = a && b ? (a.median_s / b.median_s).toFixed(3) : '–';
      const speed = a && b ? `**${(b.median_s / a.median_s).toFixed(2)}×**` : '–';
      const rss = `${a ? a.peak_rss_mib.toFixed(0) : '–'} / ${b ? b.peak_rss_mib.toFixed(0) : '–'}`;
      const vsF = (x: Result | undefined, f: Result | undefined) => (x && f && kind !== 'perturb' ? (x.peak_rss_mib / f.peak_rss_mib).toFixed(3) : '–');
      const above = (x: Result | undefined) => (x ? String(Math.round(x.peak_rss_mib - x.built_rss_mib) || 0) : '–'); // no "-0"
      const load = (x: Result | undefined) => x?.other_load?.toFixed(2) ?? '–';
      const mark = contention(r[kind]) > CONTENDED ? ' ⚠' : '';
      say(
        `| ${LABELS[kind][0]} | ${LABELS[kind][1]} | ${cell(a)} | ${cell(b)} | ${ratio} | ${speed} | ${rss} | ${vsF(a, z.forward)} / ${vsF(b, p.forward)} | ${above(a)} / ${above(b)} | ${load(a)} / ${load(b)}${mark} |`,
      );
    }
    // Achieved fractions of the machine's limits.
    const flops = forwardFlops(s, B, T),
      bytes = perturbBytes(P);
    const fw = (x: Result | undefined) => (x ? flops / x.median_s : undefined),
      pb = (x: Result | undefined) => (x ? bytes / x.median_s : undefined);
    fractions.push(
      `| ${s.name} | ${(flops / 1e9).toFixed(2)} | ${gb(fw(z.forward))} | **${frac(fw(z.forward), gemmBest)}** | ${gb(fw(p.forward))} | ${frac(fw(p.forward), gemmBest)} | ` +
        `${(bytes / 2 ** 20).toFixed(0)} | ${gb(pb(z.perturb))} | **${frac(pb(z.perturb), copyBest)}** | ${gb(pb(p.perturb))} | ${frac(pb(p.perturb), copyBest)} |`,
    );
    const target = (kind: string, want: number, what: string) => {
      const a = z[kind],
        b = p[kind];
      if (!a || !b) {
        verdicts.push(`- ${s.name}: ${what} ≥ ${want}× — not measured`);
        return;
      }
      const sp = b.median_s / a.median_s;
      const aboveA = a.peak_rss_mib - a.built_rss_mib,
        aboveB = b.peak_rss_mib - b.built_rss_mib;
      const memOk = kind === 'perturb' ? aboveA <= aboveB + 1 : a.peak_rss_mib <= b.peak_rss_mib;
      verdicts.push(
        `- ${s.name}: ${what} ≥ ${want}× faster — ${sp.toFixed(2)}×: **${sp >= want ? 'met' : 'MISSED'}**; ` +
          `no more peak memory — **${memOk ? 'met' : 'MISSED'}** (peak ${a.peak_rss_mib.toFixed(0)} vs ${b.peak_rss_mib.toFixed(0)} MiB; ` +
          `above built ${Math.round(aboveA) || 0} vs ${Math.round(aboveB) || 0} MiB)` +
          (contention(r[kind]) > CONTENDED ? `; ⚠ contended (other load ${(a.other_load ?? 0).toFixed(2)} / ${(b.other_load ?? 0).toFixed(2)} cores)` : ''),
      );
    };
    target('hybrid', 1.5, 'hybrid step vs PyTorch hybrid reference');
    target('zo', 2, 'ZO step vs MeZO');
    target('perturb', 3, "perturbation pass vs MeZO's per-tensor generation");
  }

  say();
  say('## Achieved fraction of the machine limits');
  say();
  say(
    `Forward: matmul FLOP/s = (matmul FLOPs of one forward) ÷ forward median time, ÷ the GEMM rate above. With N = B·T tokens, L layers, C = dim, F = ffn, V = vocab, NH heads of size HS, LoRA rank r = 8 on q and v, logits at the last position only: **FLOPs = 2·N·L·(4C² + 3CF) + 2·N·L·2·(2rC) + 2·B·V·C + 4·B·L·NH·T²·HS** (the layers' linears, the adapters, lm_head on B rows, attention's QKᵀ and PV over the full T×T; a causal kernel may skip about half of the last term; norms, RoPE, softmax and SiLU are not counted). Perturbation: useful bytes = 8·P (each fp32 base weight read once and written once), ÷ pass median time, ÷ the copy bandwidth above (also read + written bytes). Both sides are divided by the same limits (the best of the four measurements), so the fractions are conservative.`,
  );
  say();
  say(
    '| shape | forward GFLOP | zofo forward GFLOP/s | zofo ÷ GEMM rate | ref forward GFLOP/s | ref ÷ GEMM rate | perturbation MiB (8·P) | zofo perturb GB/s | zofo ÷ copy bandwidth | ref perturb GB/s | ref ÷ copy bandwidth |',
  );
  say('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const f of fractions) say(f);

  if (scaling.length > 0) {
    say();
    say('## Scaling');
    say();
    say(
      `Forward, ZO step and hybrid step for both sides, ${scalingReps} timed runs per point (the points the tables measured reuse their ${reps}). Charts: time (top row) and peak RSS (bottom row); the right-hand panels are zofo ÷ reference (below 1: zofo is faster / lighter). Raw rows: [bench/scaling.csv](scaling.csv) (one row per point, kind and side).`,
    );
    for (const line of scalingMarkdown(scaling, CONTENDED)) say(line);
  }

  say();
  say('## Targets');
  say();
  say(
    "Hybrid step ≥ 1.5× faster than the PyTorch hybrid reference, ZO step ≥ 2× faster than MeZO, perturbation pass ≥ 3× faster than MeZO's per-tensor generation, each at no more peak memory (perturbation pass: peak above the built state); on GPU, perturbation ≥ 0.8 of copy bandwidth.",
  );
  say();
  for (const v of verdicts) say(v);
  say(
    '- GPU: perturbation pass ≥ 0.8 of device copy bandwidth, forward ≥ 0.6 of the bf16 cuBLAS rate, hybrid step ≤ 1.15 × (2 forwards + 1 adapter backward), hybrid step ≥ 2× faster than the PyTorch bf16 hybrid reference (~1B/~7B), llama-30b peak ≤ 1.1 × weights + activations — **not measured** (no GPU has run `npm run test:gpu` yet; CPU fractions are in the table above, with no target attached)',
  );
  const met = verdicts.join('\n').match(/\*\*met\*\*/g)?.length ?? 0,
    missed = verdicts.join('\n').match(/\*\*MISSED\*\*/g)?.length ?? 0;
  say();
  say(`CPU: ${met} of ${met + missed} checks met, ${missed} missed.`);

  if (scaling.length > 0) {
    const written = writeScaling(root, scaling, `${threads} threads, ${os.cpus().length}-CPU shared machine`);
    process.stderr.write(`wrote ${written.join(', ')}\n`);
  }
  // Sections other benchmarks own (bench memory) survive this rewrite.
  const kept = existsSync(root('bench/RESULTS.md')) ? ownedSections(readFileSync(root('bench/RESULTS.md'), 'utf8')) : [];
  writeFileSync(root('bench/RESULTS.md'), [...out, ...kept.flatMap((s) => ['', s])].join('\n') + '\n');
  console.log(out.join('\n'));
  console.log(`\n(wrote ${root('bench/RESULTS.md')}; ${minutes.toFixed(1)} min)`);
}

const childKind = arg('child');
if (childKind) {
  const s: Shape = {
    name: arg('shape') ?? '',
    dim: numberArg('dim', 64),
    layers: numberArg('layers', 5),
    heads: numberArg('heads', 8),
    ffn: numberArg('ffn', 172),
    vocab: numberArg('vocab', 512),
  };
  await child(s, childKind);
} else await main();
