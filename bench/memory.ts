/**
 * Memory at scale: a random Llama-shaped model of a named size (lib/model/shapes.ts),
 * built in memory (no checkpoint), a few hybrid steps, and one JSON line: weight bytes,
 * peak memory during the steps (RSS on the CPU; the backend's device memory on CUDA),
 * step time, and peak ÷ weight bytes.
 * --checkpoint first writes the random model to a temporary fp32 checkpoint in a child
 * process, then loads it back (as --dtype) and reports the load's peak too.
 *
 *   node dist/bench/memory.js --shape llama-7b --dtype bf16 --device cpu [--checkpoint]
 *                             [--steps 2] [--batch 1] [--seq 64] [--keep-checkpoint DIR] [--record]
 *
 * --record keeps the JSON line in bench/RESULTS.md's memory section.
 *
 * Peak RSS is the kernel's high-water mark (VmHWM), reset right before the measured
 * phase (Linux: /proc/self/clear_refs 5), so it counts everything resident: weights,
 * scratch, mapped file pages, the JS heap and Node itself. Each phase runs in a child
 * process of its own, so one phase's garbage never lands in another's peak.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HybridOptimizer, loadModel, type LmExample, type Model } from '../lib/index.js';
import { LLAMA_SHAPES, randomModel, type LlamaShape } from '../lib/model/shapes.js';
import { readSection, writeSection } from './results-section.js';

const GiB = 1024 ** 3;

interface Args {
  shape: LlamaShape;
  dtype: 'f32' | 'bf16' | 'f16';
  device: string;
  steps: number;
  batch: number;
  seq: number;
  checkpoint: boolean;
  keep?: string;
  phase?: string;
  dir?: string;
  record: boolean;
}

function parseArgs(argv: string[]): Args {
  const get = (name: string) => {
    const i = argv.indexOf(`--${name}`);
    return i < 0 ? undefined : argv[i + 1];
  };
  const int = (name: string, fallback: number) => {
    const v = get(name);
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} expects a positive integer, got ${v}`);
    return n;
  };
  const shape = (get('shape') ?? 'llama-1b') as LlamaShape;
  if (!Object.hasOwn(LLAMA_SHAPES, shape)) throw new Error(`--shape must be one of ${Object.keys(LLAMA_SHAPES).join(', ')}, got ${shape}`);
  const dtype = (get('dtype') ?? 'bf16') as Args['dtype'];
  if (!['f32', 'bf16', 'f16'].includes(dtype)) throw new Error(`--dtype must be f32, bf16 or f16, got ${dtype}`);
  return {
    shape,
    dtype,
    device: get('device') ?? 'cpu',
    steps: int('steps', 2),
    batch: int('batch', 1),
    seq: int('seq', 64),
    checkpoint: argv.includes('--checkpoint'),
    record: argv.includes('--record'),
    keep: get('keep-checkpoint'),
    phase: get('phase'),
    dir: get('dir'),
  };
}

// ---- peak resident memory (Linux) ----

function resetPeak(): boolean {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}

function peakRssBytes(): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]) * 1024;
  } catch {
    /* not Linux */
  }
  return process.resourceUsage().maxRSS * 1024;
}

// ---- the phases (each in its own child process) ----

/**
 * Writes the random model as an fp32 safetensors checkpoint, one tensor at a time (the
 * hardest case for a bf16 load: the file holds twice the bytes the model keeps).
 */
async function writeCheckpoint(args: Args, dir: string): Promise<void> {
  const model = await randomModel(args.shape, { dtype: args.dtype, device: 'cpu' });
  try {
    const specs = model.parameterNames().map((name) => ({ name, shape: model.tensorShape(name) }));
    let offset = 0;
    const parts = [`"__metadata__":{"format":"pt"}`];
    for (const s of specs) {
      const n = s.shape.reduce((a, b) => a * b, 1);
      parts.push(`${JSON.stringify(s.name)}:{"dtype":"F32","shape":${JSON.stringify(s.shape)},"data_offsets":[${offset},${offset + n * 4}]}`);
      offset += n * 4;
    }
    const json = Buffer.from(`{${parts.join(',')}}`);
    const header = Buffer.alloc(Math.ceil(json.length / 8) * 8, 0x20);
    json.copy(header);
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(header.length));
    const fh = await open(join(dir, 'model.safetensors'), 'w');
    try {
      await fh.write(prefix);
      await fh.write(header);
      for (const s of specs) {
        const values = await model.tensor(s.name);
        await fh.write(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
      }
    } finally {
      await fh.close();
    }
    writeFileSync(join(dir, 'config.json'), JSON.stringify(LLAMA_SHAPES[args.shape], null, 2));
  } finally {
    model.dispose();
  }
}

const lmBatch = (args: Args, vocab: number): LmExample[] => {
  let s = 12345;
  const rand = () => (s = (s * 1103515245 + 12345) % 2147483648) / 2147483648;
  const half = Math.max(1, Math.floor(args.seq / 2));
  const ids = (n: number) => Array.from({ length: n }, () => 1 + Math.floor(rand() * (vocab - 1)));
  return Array.from({ length: args.batch }, () => ({ prompt: ids(args.seq - half), target: ids(half) }));
};

interface Measured {
  parameters: number;
  weightBytes: number;
  baselineRssBytes: number;
  loadPeakBytes?: number;
  loadSeconds?: number;
  stepPeakBytes: number;
  stepSeconds: number[];
  peakMark: 'VmHWM reset' | 'process maximum';
  /** CUDA: the backend's peak device memory during the steps, and up to them (building or loading). */
  devicePeakBytes?: number;
  deviceLoadPeakBytes?: number;
}

async function measure(args: Args): Promise<Measured> {
  let model: Model;
  let loadPeakBytes: number | undefined, loadSeconds: number | undefined;
  let reset = true;
  (globalThis as { gc?: () => void }).gc?.();
  const baselineRssBytes = process.memoryUsage().rss;
  if (args.dir) {
    reset = resetPeak() && reset;
    const t0 = performance.now();
    model = await loadModel(args.dir, { dtype: args.dtype, device: args.device as 'cpu' });
    loadSeconds = (performance.now() - t0) / 1000;
    loadPeakBytes = peakRssBytes();
  } else {
    model = await randomModel(args.shape, { dtype: args.dtype, device: args.device as 'cpu' });
  }
  const parameters = model.parameterCounts().reduce((a, b) => a + b, 0);
  const weightBytes = parameters * (args.dtype === 'f32' ? 4 : 2);
  model.addLoRA({ rank: 8, alpha: 16, targets: ['q_proj', 'v_proj'] });
  const opt = new HybridOptimizer(model, { zo: { lr: 1e-6, mu: 1e-3 }, fo: { lr: 1e-4 }, seed: 1 });
  const batch = lmBatch(args, model.config.vocabSize);
  (globalThis as { gc?: () => void }).gc?.();
  reset = resetPeak() && reset;
  const deviceLoad = model.native.deviceMemory(true); // and resets the device peak for the steps
  const stepSeconds: number[] = [];
  for (let i = 0; i < args.steps; i++) {
    const t0 = performance.now();
    await opt.step(batch);
    stepSeconds.push((performance.now() - t0) / 1000);
  }
  const stepPeakBytes = peakRssBytes();
  const devicePeakBytes = model.native.deviceMemory(false)?.peak;
  opt.dispose();
  model.dispose();
  return {
    parameters,
    weightBytes,
    baselineRssBytes,
    loadPeakBytes,
    loadSeconds,
    stepPeakBytes,
    stepSeconds,
    peakMark: reset ? 'VmHWM reset' : 'process maximum',
    devicePeakBytes,
    deviceLoadPeakBytes: deviceLoad?.peak,
  };
}

// RESULTS.md's memory section: one JSON line per (shape, dtype, device, checkpoint), the
// newest replacing an older one of the same key.
function record(line: string, args: Args): void {
  const file = fileURLToPath(new URL('../../bench/RESULTS.md', import.meta.url));
  const key = (l: string) => {
    const o = JSON.parse(l);
    return `${o.shape}|${o.dtype}|${o.device}|${o.loadPeakBytes !== undefined}`;
  };
  const old = readSection(file, 'memory')
    .split('\n')
    .filter((l) => l.startsWith('{'));
  const lines = [...old.filter((l) => key(l) !== key(line)), line].sort();
  writeSection(
    file,
    'memory',
    [
      '## Memory at scale (`zofo bench memory`)',
      '',
      'A random Llama-shaped model built in memory, LoRA r8 on q_proj/v_proj, hybrid steps on one',
      `${args.batch} × ${args.seq}-token example; one JSON line per run (\`npm run bench:memory -- --shape S [--checkpoint] --record\`).`,
      "Peaks are the process's resident high-water mark (VmHWM) reset before the phase (device memory on CUDA);",
      'target: peak ≤ 1.15 × weight bytes + 0.5 GiB. `--checkpoint` lines load an fp32 checkpoint as bf16. CPU lines only: no GPU line was measured.',
      '',
      '```jsonl',
      ...lines,
      '```',
    ].join('\n'),
  );
}

function child(phase: string, argv: string[]): string {
  const r = spawnSync(process.execPath, ['--expose-gc', process.argv[1], ...argv, '--phase', phase], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 1 << 24,
  });
  if (r.status !== 0) throw new Error(`bench memory: the ${phase} phase failed (exit ${r.status ?? r.signal})`);
  return r.stdout.trim().split('\n').pop() ?? '';
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const args = parseArgs(argv);
  if (args.phase === 'write') return writeCheckpoint(args, args.dir!);
  if (args.phase === 'measure') {
    console.log(JSON.stringify(await measure(args)));
    return;
  }
  const plain = argv.filter((a, i) => !['--checkpoint', '--keep-checkpoint', '--record'].includes(a) && argv[i - 1] !== '--keep-checkpoint');
  let dir: string | undefined;
  try {
    if (args.checkpoint) {
      dir = args.keep ?? mkdtempSync(join(tmpdir(), `zofo-bench-${args.shape}-`));
      child('write', [...plain, '--dir', dir]);
    }
    const m: Measured = JSON.parse(child('measure', dir ? [...plain, '--dir', dir] : plain));
    // On a GPU the figures are the device's: the process's RSS holds no weights there.
    if (m.devicePeakBytes !== undefined) {
      m.stepPeakBytes = m.devicePeakBytes;
      if (m.loadPeakBytes !== undefined) m.loadPeakBytes = m.deviceLoadPeakBytes;
      m.baselineRssBytes = 0;
    }
    const budget = 1.15 * m.weightBytes + 0.5 * GiB;
    const median = [...m.stepSeconds].sort((a, b) => a - b)[Math.floor(m.stepSeconds.length / 2)];
    const line = JSON.stringify({
      shape: args.shape,
      device: args.device,
      dtype: args.dtype,
      batch: `${args.batch}x${args.seq}`,
      parameters: m.parameters,
      weightBytes: m.weightBytes,
      baselineRssBytes: m.baselineRssBytes,
      memory: m.devicePeakBytes !== undefined ? 'device' : 'rss',
      stepPeakBytes: m.stepPeakBytes,
      stepPeakRatio: +(m.stepPeakBytes / m.weightBytes).toFixed(3),
      stepWithinTarget: m.stepPeakBytes <= budget,
      stepSeconds: +median.toFixed(3),
      steps: m.stepSeconds.length,
      ...(m.loadPeakBytes !== undefined
        ? {
            loadPeakBytes: m.loadPeakBytes,
            loadPeakRatio: +(m.loadPeakBytes / m.weightBytes).toFixed(3),
            loadWithinTarget: m.loadPeakBytes <= budget,
            loadSeconds: +m.loadSeconds!.toFixed(2),
          }
        : {}),
      targetBytes: Math.round(budget),
      peakMark: m.peakMark,
      env: { OPENBLAS_CORETYPE: process.env.OPENBLAS_CORETYPE ?? null, node: process.version, cpus: cpus().length, memoryBytes: totalmem() },
    });
    console.log(line);
    if (args.record) record(line, args);
  } finally {
    if (dir && !args.keep) rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
