/**
 * `compare`: the paper's experiment at the user's scale. The same model, task, batches
 * and budget for hybrid (ZO on the base + backprop on LoRA), ZO-only (MeZO), LoRA-only
 * and full fine-tuning, with dev accuracy and loss over steps and over training time,
 * steps / seconds to a target accuracy, time per step and peak memory per mode.
 *
 *   - Budget: `steps` per mode (default 150), or `seconds` of training time per mode
 *     (evaluation excluded), evaluated at the same step (or time) intervals in every mode.
 *   - Same batches: every mode draws its minibatches from the same sampler seed.
 *   - Full fine-tuning runs only where it fits: base parameters × 4 bytes × 4 (weights,
 *     gradients, two AdamW moments) must not exceed `memoryBudget` (default 2 GiB);
 *     otherwise the mode is skipped with the reason printed and returned.
 *   - isolate (default): each mode runs in a child process (this module, run with a
 *     hidden flag), so its peak RSS is its own: the peak mark is reset once the model and
 *     data are loaded (Linux /proc/self/clear_refs, as bench/step.ts does) and the peak
 *     is read as VmHWM (or process.resourceUsage().maxRSS where that is unavailable).
 *
 * Writes <out>/compare.svg (accuracy vs step and vs seconds, training and dev loss, all
 * modes), compare.csv and compare.jsonl (the rows), compare.md (the table).
 */
import { spawn } from 'node:child_process';
import { readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { basename, join, resolve as resolvePath } from 'node:path';
import { fileURLToPath } from 'node:url';
import { invalidArg, ZofoError, type ZofoErrorCode } from '../errors.js';
import { loadTask, sampleIndices, TASK_NAMES, type TaskName } from '../data/tasks.js';
import { demoModelDir, demoTask } from '../demo/model.js';
import { openCheckpoint } from '../formats/safetensors.js';
import { loadModel, type Example, type LoraOptions, type Model } from '../model/model.js';
import { HybridOptimizer } from '../train/optimizer.js';
import { evaluate, Trainer } from '../train/trainer.js';
import type { FoOptions, HybridOptimizerOptions, ZoOptions } from '../train/types.js';
import { writeChartFiles, type ChartRow, type ChartSpec } from '../chart.js';
import { MODES, type Mode } from './commands.js';
import { DEMO_PRESETS } from './demo.js';
import { createProgress, type Progress } from './progress.js';

export type CompareMode = Mode;

/**
 * Optimizer presets per mode, tuned for the demo model: the demo's for hybrid, ZO and
 * LoRA; AdamW lr 1e-3 on every base weight for full fine-tuning (on the demo model it
 * reaches 100% dev accuracy within 30–45 steps for sampler seeds 0–2; 3e-3 is less
 * stable across seeds and 1e-2 does not learn).
 */
export const COMPARE_PRESETS: Record<CompareMode, HybridOptimizerOptions> = {
  ...DEMO_PRESETS,
  full: { fo: { lr: 1e-3, params: 'all', optimizer: 'adamw' }, seed: 1 },
};

/** A task from files (as `zofo train` reads them); k-shot sampling MeZO's way under `seed`. */
export interface CompareTask {
  name: TaskName;
  train: string;
  dev: string;
  trainSamples?: number;
  devSamples?: number;
}

/** Per-mode overrides, merged into COMPARE_PRESETS[mode] part by part (zo, fo, seed). */
export interface ModeOverrides {
  zo?: Partial<ZoOptions>;
  fo?: Partial<FoOptions>;
  seed?: number;
}

export interface CompareOptions {
  /** A HuggingFace model directory with tokenizer.json (default: the embedded demo model). */
  model?: string;
  /** Task files (default: demoTask, the built-in task of the demo model). */
  task?: CompareTask;
  /** Step budget per mode (default 150; with `seconds`, a cap, none by default). */
  steps?: number;
  /** Wall-time budget per mode: seconds of training (evaluation excluded). */
  seconds?: number;
  /** Training minibatch (default 16). */
  batchSize?: number;
  /** Evaluate the dev set every this many steps (default: steps / 10; the last step always). */
  evalEvery?: number;
  /** With `seconds`: evaluate every this many seconds of training (default seconds / 10) unless evalEvery is given. */
  evalEverySeconds?: number;
  /** Eval minibatch (default 64). */
  evalBatchSize?: number;
  /** Target dev accuracy for steps/seconds-to-target (default: 0.95 × the best accuracy any mode reaches). */
  target?: number;
  /** Default: all four, in the order hybrid, zo, lora, full. */
  modes?: CompareMode[];
  /** Per-mode optimizer options over COMPARE_PRESETS. */
  optimizers?: Partial<Record<CompareMode, ModeOverrides>>;
  /** Adapters of hybrid and LoRA (default rank 8, alpha 16, the preset's seed). */
  lora?: LoraOptions;
  /** Batch order (default 0); the optimizer and LoRA init use seed + 1 (the presets' 1 by default). */
  seed?: number;
  /** Bytes full fine-tuning may take: parameters × 4 B × 4 (default 2 GiB). */
  memoryBudget?: number;
  /** Where the chart, CSV, JSONL and table go. */
  out: string;
  /** Run each mode in a child process so its peak RSS is measured alone (default true). */
  isolate?: boolean;
  /** Progress bars / lines on stderr (default true). */
  progress?: boolean;
  log?: (line: string) => void;
}

/** One point of a mode's curves: a step (loss) and, at eval points, dev loss and accuracy. */
export interface CompareRow {
  step: number;
  /** Training seconds so far: the optimizer steps alone, evaluation excluded. */
  seconds: number;
  loss: number | null;
  devLoss: number | null;
  devAccuracy: number | null;
}

/** First point where a curve reaches a target. */
export interface TargetHit { step: number; seconds: number }

export interface ModeResult {
  mode: CompareMode;
  /** Why the mode did not run (full fine-tuning over the memory budget); everything else is empty then. */
  skipped?: string;
  rows: CompareRow[];
  /** How the run ended: 'completed' (steps), 'time' (seconds), 'non-finite', 'skipped'. */
  reason: string;
  steps: number;
  /** Training seconds (optimizer steps only) and wall seconds of the run (with evaluations). */
  seconds: number;
  wallSeconds: number;
  secondsPerStep: number | null;
  initialAccuracy: number | null;
  finalAccuracy: number | null;
  bestAccuracy: number | null;
  finalDevLoss: number | null;
  stepsToTarget: number | null;
  secondsToTarget: number | null;
  /** Peak RSS during training (MiB), model included; null when not isolated. */
  peakRssMiB: number | null;
  /** RSS once the model and data were loaded (MiB), where the peak mark was reset. */
  loadedRssMiB: number | null;
  /** Whether the peak mark was reset after loading (false: the peak includes loading). */
  rssReset: boolean | null;
  parameters: { base: number; trainable: number };
}

export interface CompareResult {
  results: ModeResult[];
  /** The target accuracy used (null for tasks without accuracy). */
  target: number | null;
  /** Markdown: mode, final acc, best acc, steps to target, seconds to target, s/step, peak RSS MiB. */
  table: string;
  files: { svg: string; csv: string; jsonl: string; md: string };
}

const MiB = 2 ** 20;
const GiB = 2 ** 30;
/** Default bytes full fine-tuning may take. */
export const DEFAULT_MEMORY_BUDGET = 2 * GiB;
/** The hidden flag a child process runs one mode under. */
export const CHILD_FLAG = '--zofo-compare-child';
const MAX_STEPS = 2 ** 31 - 1;
// Checkpoint tensors loadModel ignores (as lib/model/model.ts).
const IGNORED = [/\.attn\.(masked_)?bias$/, /\.rotary_emb\.inv_freq$/];

/** First row whose dev accuracy is ≥ target (rows in step order), or null. */
export function reachTarget(rows: readonly CompareRow[], target: number | null): TargetHit | null {
  if (target === null || !Number.isFinite(target)) return null;
  for (const r of rows) if (r.devAccuracy !== null && r.devAccuracy >= target) return { step: r.step, seconds: r.seconds };
  return null;
}

/** The default target: 0.95 × the best dev accuracy any mode reached (null without any accuracy). */
export function defaultTarget(curves: ReadonlyArray<readonly CompareRow[]>, fraction = 0.95): number | null {
  let best: number | null = null;
  for (const rows of curves) for (const r of rows) if (r.devAccuracy !== null && (best === null || r.devAccuracy > best)) best = r.devAccuracy;
  return best === null ? null : best * fraction;
}

/** Bytes full fine-tuning needs at least: fp32 weights, gradients and two AdamW moments. */
export function fullFineTuningBytes(parameters: number): number {
  return parameters * 4 * 4;
}

/** Base parameters of a model directory, from the safetensors headers alone. */
export async function countParameters(dir: string): Promise<number> {
  const ckpt = await openCheckpoint(dir);
  try {
    let n = 0;
    for (const [name, info] of ckpt.tensors) if (!IGNORED.some((re) => re.test(name))) n += info.shape.reduce((a, b) => a * b, 1);
    return n;
  } finally {
    ckpt.close();
  }
}

/** Why full fine-tuning of `parameters` does not fit `budget` bytes, or null when it does. */
export function fullFineTuningSkip(parameters: number, budget: number): string | null {
  const need = fullFineTuningBytes(parameters);
  if (need <= budget) return null;
  return `full fine-tuning needs ${(need / MiB).toFixed(1)} MiB (${parameters} parameters × 4 bytes × 4: weights, gradients, 2 AdamW moments), ` +
    `over the memory budget of ${(budget / MiB).toFixed(1)} MiB (memoryBudget)`;
}

// ---- one mode (in a child process, or in this one) ----

type TaskJob = { kind: 'demo' } | ({ kind: 'files'; seed: number } & CompareTask);
type FreezeJSON = string | { regexp: string; flags: string };

interface ModeJob {
  mode: CompareMode;
  model: string;
  task: TaskJob;
  optimizer: HybridOptimizerOptions;
  lora: LoraOptions;
  batchSize: number;
  steps: number | null;
  seconds: number | null;
  evalEvery: number | null;
  evalEverySeconds: number | null;
  evalBatchSize: number;
  seed: number;
  measureRss: boolean;
}

interface ModeRun {
  rows: CompareRow[];
  reason: string;
  steps: number;
  seconds: number;
  wallSeconds: number;
  peakRssMiB: number | null;
  loadedRssMiB: number | null;
  rssReset: boolean | null;
  parameters: { base: number; trainable: number };
}

type ModeEvent =
  | { type: 'step'; step: number; loss: number; lrX: number; lrY: number }
  | { type: 'eval'; step: number; seconds: number; loss: number; accuracy: number | null };

async function loadExamples(model: Model, task: TaskJob): Promise<{ train: Example[]; dev: Example[] }> {
  if (task.kind === 'demo') return demoTask(model.tokenizer!, { seed: 0 });
  const read = async (file: string, k: number | undefined) => {
    const pick = k === undefined ? undefined : (n: number) => sampleIndices(n, Math.min(k, n), task.seed);
    const t = await loadTask(task.name, file, model.tokenizer!, { pick });
    if (t.examples.length === 0) throw new ZofoError('ZOFO_BAD_FILE', `${file}: no examples`);
    return t.examples;
  };
  return { train: await read(task.train, task.trainSamples), dev: await read(task.dev, task.devSamples) };
}

/** Linux: resets the peak-RSS mark (VmHWM) to the current RSS. */
function resetPeakRss(): boolean {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}

/** Peak RSS in bytes: VmHWM (the mark clear_refs resets) where readable, else maxRSS. */
function peakRssBytes(): number {
  try {
    const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]) * 1024;
  } catch { /* not Linux */ }
  return process.resourceUsage().maxRSS * 1024;
}

async function runMode(job: ModeJob, onEvent: (e: ModeEvent) => void = () => {}): Promise<ModeRun> {
  const model = await loadModel(job.model);
  try {
    if (!model.tokenizer) throw new ZofoError('ZOFO_BAD_FILE', `${job.model}: no tokenizer.json; compare tokenizes the task with the model's tokenizer`);
    const { train, dev } = await loadExamples(model, job.task);
    const evalNow = () => evaluate(model, dev, job.evalBatchSize);
    const first = await evalNow();
    const rows: CompareRow[] = [{ step: 0, seconds: 0, loss: null, devLoss: first.loss, devAccuracy: first.accuracy }];
    (globalThis as { gc?: () => void }).gc?.();
    const rssReset = job.measureRss ? resetPeakRss() : null;
    // Read after the reset: the mark then equals the RSS at this moment (the collector
    // may still be returning pages, so an earlier reading could exceed it).
    const loadedRss = rssReset ? peakRssBytes() : process.memoryUsage().rss;
    const base = model.parameterCounts().reduce((a, b) => a + b, 0);
    if (job.mode === 'hybrid' || job.mode === 'lora') model.addLoRA(job.lora);
    const trainable = job.mode === 'full' ? base : model.loraNames().reduce((a, n) => a + model.loraTensor(n).length, 0) + (job.mode === 'zo' || job.mode === 'hybrid' ? base : 0);
    const opt = new HybridOptimizer(model, job.optimizer);
    let trainMs = 0, step = 0, reason = 'completed';
    const started = performance.now();
    try {
      const trainer = new Trainer(model, opt, { batchSize: job.batchSize, steps: job.steps ?? MAX_STEPS, seed: job.seed });
      const interval = job.evalEverySeconds;
      let nextEvalAt = interval ?? Infinity;
      const evalInto = async (row: CompareRow) => {
        const r = await evalNow();
        row.devLoss = r.loss;
        row.devAccuracy = r.accuracy;
        onEvent({ type: 'eval', step: row.step, seconds: row.seconds, loss: r.loss, accuracy: r.accuracy });
      };
      for await (const ev of trainer.fit(train)) {
        if (ev.type === 'done') {
          reason = ev.reason;
          break;
        }
        if (ev.type === 'skip') step = ev.step;
        if (ev.type !== 'step') continue;
        trainMs += ev.stepMs;
        step = ev.step;
        const row: CompareRow = { step, seconds: trainMs / 1000, loss: ev.loss, devLoss: null, devAccuracy: null };
        rows.push(row);
        onEvent({ type: 'step', step, loss: ev.loss, lrX: ev.lrX, lrY: ev.lrY });
        const outOfTime = job.seconds !== null && trainMs >= job.seconds * 1000;
        const due = interval !== null ? trainMs >= nextEvalAt * 1000 : step % (job.evalEvery as number) === 0;
        if (due || outOfTime || step === job.steps) await evalInto(row);
        if (interval !== null) while (nextEvalAt * 1000 <= trainMs) nextEvalAt += interval;
        if (outOfTime) {
          reason = 'time';
          break;
        }
      }
      // A run stopped by a non-finite loss: evaluate where it stopped.
      const last = rows[rows.length - 1];
      if (last.devAccuracy === null && last.devLoss === null) await evalInto(last);
    } finally {
      opt.dispose();
    }
    const peak = job.measureRss ? peakRssBytes() : null;
    return {
      rows, reason, steps: step, seconds: trainMs / 1000, wallSeconds: (performance.now() - started) / 1000,
      peakRssMiB: peak === null ? null : peak / MiB, loadedRssMiB: job.measureRss ? loadedRss / MiB : null, rssReset,
      parameters: { base, trainable },
    };
  } finally {
    model.dispose();
  }
}

// ---- child processes ----

const thisFile = fileURLToPath(import.meta.url);

function toJob(job: ModeJob): string {
  const freeze = job.optimizer.zo?.freeze?.map((f): FreezeJSON => (f instanceof RegExp ? { regexp: f.source, flags: f.flags } : f));
  const zo = job.optimizer.zo ? { ...job.optimizer.zo, ...(freeze ? { freeze } : {}) } : job.optimizer.zo;
  return JSON.stringify({ ...job, optimizer: { ...job.optimizer, zo } });
}

function fromJob(text: string): ModeJob {
  const job = JSON.parse(text) as ModeJob;
  const zo = job.optimizer.zo as (Omit<ZoOptions, 'freeze'> & { freeze?: FreezeJSON[] }) | null | undefined;
  if (zo?.freeze) job.optimizer.zo = { ...zo, freeze: zo.freeze.map((f) => (typeof f === 'string' ? f : new RegExp(f.regexp, f.flags))) };
  return job;
}

// Flags a child must not repeat (a debugger port is taken by the parent).
const NOT_INHERITED = /^--(inspect|inspect-brk|inspect-port|debug-port|inspect-wait)(=|$)/;

function runChild(job: ModeJob, onEvent: (e: ModeEvent) => void): Promise<ModeRun> {
  const execArgv = process.execArgv.filter((a) => !NOT_INHERITED.test(a));
  if (!execArgv.includes('--expose-gc')) execArgv.push('--expose-gc');
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...execArgv, thisFile, CHILD_FLAG, toJob(job)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let buffered = '', stderr = '';
    let result: ModeRun | null = null, failure: { code?: string; message: string } | null = null;
    const line = (text: string) => {
      if (!text.startsWith('{')) return;
      let msg: { zofoCompare?: string; event?: ModeEvent; run?: ModeRun; error?: { code?: string; message: string } };
      try {
        msg = JSON.parse(text);
      } catch {
        return;
      }
      if (msg.zofoCompare === 'event' && msg.event) onEvent(msg.event);
      else if (msg.zofoCompare === 'result' && msg.run) result = msg.run;
      else if (msg.zofoCompare === 'error' && msg.error) failure = msg.error;
    };
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      let nl;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        line(buffered.slice(0, nl));
        buffered = buffered.slice(nl + 1);
      }
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr = (stderr + chunk).slice(-8000); });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (buffered) line(buffered);
      if (code === 0 && result) return resolve(result);
      const f = failure as { code?: string; message: string } | null;
      const errCode = (f?.code?.startsWith('ZOFO_') ? f.code : 'ZOFO_INTERNAL') as ZofoErrorCode;
      reject(new ZofoError(errCode, `compare (${job.mode}): ${f ? f.message : `the child process exited with ${signal ?? `code ${code}`}`}${f ? '' : `\n${stderr.trim()}`}`));
    });
  });
}

async function childMain(jobText: string): Promise<void> {
  const send = (msg: object) => process.stdout.write(`${JSON.stringify(msg)}\n`);
  try {
    const run = await runMode(fromJob(jobText), (event) => send({ zofoCompare: 'event', event }));
    send({ zofoCompare: 'result', run });
  } catch (err) {
    send({ zofoCompare: 'error', error: { code: (err as { code?: string }).code, message: (err as Error).message ?? String(err) } });
    process.exitCode = 1;
  }
}

// ---- the comparison ----

const isPositiveInt = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 1;
const isPositive = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x) && x > 0;

function optimizerFor(mode: CompareMode, o: ModeOverrides | undefined, seed: number | undefined): HybridOptimizerOptions {
  const p = COMPARE_PRESETS[mode];
  const s = o?.seed ?? (seed === undefined ? p.seed : seed + 1);
  const zo = { ...p.zo, ...o?.zo } as ZoOptions;
  const fo = { ...p.fo, ...o?.fo } as FoOptions;
  switch (mode) {
    case 'hybrid': return { zo, fo: { ...fo, params: 'adapters' }, seed: s };
    case 'zo': return { zo, seed: s };
    case 'lora': return { fo: { ...fo, params: 'adapters' }, seed: s };
    case 'full': return { fo: { ...fo, params: 'all' }, seed: s };
  }
}

const pct = (x: number | null) => (x === null ? '–' : `${(100 * x).toFixed(1)}%`);

/** The markdown table of a comparison. */
export function compareTable(results: readonly ModeResult[]): string {
  const lines = ['| mode | final acc | best acc | steps to target | seconds to target | s/step | peak RSS MiB |', '|---|---:|---:|---:|---:|---:|---:|'];
  for (const r of results) {
    if (r.skipped) {
      lines.push(`| ${r.mode} | skipped: ${r.skipped} | | | | | |`);
      continue;
    }
    lines.push(`| ${r.mode} | ${pct(r.finalAccuracy)} | ${pct(r.bestAccuracy)} | ${r.stepsToTarget ?? 'not reached'} | ` +
      `${r.secondsToTarget === null ? 'not reached' : r.secondsToTarget.toFixed(2)} | ${r.secondsPerStep === null ? '–' : r.secondsPerStep.toFixed(4)} | ` +
      `${r.peakRssMiB === null ? '–' : r.peakRssMiB.toFixed(0)} |`);
  }
  return lines.join('\n');
}

function chartOf(title: string, results: readonly ModeResult[], target: number | null): ChartSpec {
  const ran = results.filter((r) => !r.skipped);
  const series = (x: keyof CompareRow, y: keyof CompareRow) => ran.map((r) => ({
    name: r.mode, points: r.rows.filter((row) => row[y] !== null).map((row) => [row[x] as number, row[y] as number] as const),
  }));
  const targetLine = (x: keyof CompareRow) => {
    if (target === null) return [];
    const xs = ran.flatMap((r) => r.rows.map((row) => row[x] as number));
    return xs.length === 0 ? [] : [{ name: `target ${pct(target)}`, points: [[0, target], [Math.max(...xs), target]] as const }];
  };
  return {
    title, columns: 2,
    panels: [
      { title: 'dev accuracy vs step', xLabel: 'step', yLabel: 'accuracy', series: [...series('step', 'devAccuracy'), ...targetLine('step')] },
      { title: 'dev accuracy vs training time', xLabel: 'seconds', yLabel: 'accuracy', series: [...series('seconds', 'devAccuracy'), ...targetLine('seconds')] },
      { title: 'training loss', xLabel: 'step', yLabel: 'loss', series: series('step', 'loss') },
      { title: 'dev loss', xLabel: 'step', yLabel: 'loss', series: series('step', 'devLoss') },
    ],
  };
}

/** Runs every mode under the same budget and writes the chart, the rows and the table under `out`. */
export async function compare(opts: CompareOptions): Promise<CompareResult> {
  if (typeof opts !== 'object' || opts === null) throw invalidArg('an options object', 'options', opts);
  const log = opts.log ?? ((l: string) => console.log(l));
  if (typeof opts.out !== 'string' || opts.out.length === 0) throw invalidArg('a directory path', 'out', opts.out);
  const modes = opts.modes ?? [...MODES];
  if (!Array.isArray(modes) || modes.length === 0) throw invalidArg('a non-empty array of modes', 'modes', modes);
  for (const m of modes) if (!MODES.includes(m)) throw invalidArg(MODES.map((n) => `'${n}'`).join(', '), 'modes', m);
  if (new Set(modes).size !== modes.length) throw invalidArg('modes without repeats', 'modes', modes);
  for (const [name, v] of [['steps', opts.steps], ['batchSize', opts.batchSize], ['evalEvery', opts.evalEvery], ['evalBatchSize', opts.evalBatchSize]] as const) {
    if (v !== undefined && !isPositiveInt(v)) throw invalidArg('a positive integer', name, v);
  }
  for (const [name, v] of [['seconds', opts.seconds], ['evalEverySeconds', opts.evalEverySeconds], ['memoryBudget', opts.memoryBudget]] as const) {
    if (v !== undefined && !isPositive(v)) throw invalidArg('a finite number > 0', name, v);
  }
  if (opts.target !== undefined && !(typeof opts.target === 'number' && opts.target >= 0 && opts.target <= 1)) throw invalidArg('a number in [0, 1]', 'target', opts.target);
  if (opts.seed !== undefined && !(Number.isSafeInteger(opts.seed) && opts.seed >= 0)) throw invalidArg('a non-negative integer', 'seed', opts.seed);
  if (opts.task !== undefined) {
    if (!TASK_NAMES.includes(opts.task.name)) throw invalidArg(TASK_NAMES.map((n) => `'${n}'`).join(', '), 'task.name', opts.task.name);
    if (typeof opts.task.train !== 'string' || typeof opts.task.dev !== 'string') throw invalidArg('train and dev file paths', 'task', opts.task);
  }

  const model = opts.model ?? demoModelDir();
  const task: TaskJob = opts.task ? { kind: 'files', seed: opts.seed ?? 0, ...opts.task } : { kind: 'demo' };
  const timeBudget = opts.seconds ?? null;
  const steps = timeBudget === null ? (opts.steps ?? 150) : (opts.steps ?? null);
  const evalEverySeconds = timeBudget !== null && opts.evalEvery === undefined ? (opts.evalEverySeconds ?? timeBudget / 10) : null;
  const evalEvery = evalEverySeconds !== null ? null : (opts.evalEvery ?? Math.max(1, Math.floor((steps as number) / 10)));
  const batchSize = opts.batchSize ?? 16;
  const isolate = opts.isolate ?? true;
  const budget = opts.memoryBudget ?? DEFAULT_MEMORY_BUDGET;
  const showProgress = opts.progress ?? true;
  const budgetText = timeBudget === null ? `${steps} steps` : `${timeBudget} s of training${steps === null ? '' : ` (at most ${steps} steps)`}`;
  const taskText = opts.task ? `${opts.task.name} (${basename(opts.task.train)})` : 'the demo task';
  log(`zofo compare: ${model}; ${taskText}; ${budgetText} per mode, batch ${batchSize}; ` +
    `eval every ${evalEvery === null ? `${evalEverySeconds} s` : `${evalEvery} steps`}; ${isolate ? 'one child process per mode' : 'in this process'}`);

  const parameters = await countParameters(model);
  const runs: Array<{ mode: CompareMode; run: ModeRun | null; skipped?: string }> = [];
  for (const mode of modes) {
    if (mode === 'full') {
      const why = fullFineTuningSkip(parameters, budget);
      if (why) {
        log(`full   skipped: ${why}`);
        runs.push({ mode, run: null, skipped: why });
        continue;
      }
    }
    const optimizer = optimizerFor(mode, opts.optimizers?.[mode], opts.seed);
    const job: ModeJob = {
      mode, model, task, optimizer, lora: { rank: 8, alpha: 16, seed: optimizer.seed, ...opts.lora }, batchSize, steps,
      seconds: timeBudget, evalEvery, evalEverySeconds, evalBatchSize: opts.evalBatchSize ?? 64, seed: opts.seed ?? 0, measureRss: isolate,
    };
    const label = mode.padEnd(6);
    const bar: Progress | null = showProgress && steps !== null && timeBudget === null ? createProgress(label, steps) : null;
    const onEvent = (e: ModeEvent) => {
      if (e.type === 'step') bar?.update(e);
      else if (showProgress && !bar) process.stderr.write(`${label} eval @ step ${e.step} (${e.seconds.toFixed(1)} s): dev loss ${e.loss.toFixed(4)}${e.accuracy === null ? '' : `, accuracy ${pct(e.accuracy)}`}\n`);
    };
    let run: ModeRun;
    try {
      run = isolate ? await runChild(job, onEvent) : await runMode(job, onEvent);
    } finally {
      bar?.stop();
    }
    const evals = run.rows.filter((r) => r.devAccuracy !== null);
    log(`${label} dev accuracy ${pct(run.rows[0].devAccuracy)} → ${pct(evals.at(-1)?.devAccuracy ?? null)} in ${run.steps} steps, ` +
      `${run.seconds.toFixed(1)} s of training (${run.wallSeconds.toFixed(1)} s with evaluation)${run.peakRssMiB === null ? '' : `; peak RSS ${run.peakRssMiB.toFixed(0)} MiB`}`);
    runs.push({ mode, run });
  }

  const target = opts.target ?? defaultTarget(runs.flatMap((r) => (r.run ? [r.run.rows] : [])));
  const results: ModeResult[] = runs.map(({ mode, run, skipped }) => {
    if (!run) {
      return {
        mode, skipped, rows: [], reason: 'skipped', steps: 0, seconds: 0, wallSeconds: 0, secondsPerStep: null, initialAccuracy: null,
        finalAccuracy: null, bestAccuracy: null, finalDevLoss: null, stepsToTarget: null, secondsToTarget: null, peakRssMiB: null,
        loadedRssMiB: null, rssReset: null, parameters: { base: parameters, trainable: parameters },
      };
    }
    const evals = run.rows.filter((r) => r.devLoss !== null);
    const accs = evals.flatMap((r) => (r.devAccuracy === null ? [] : [r.devAccuracy]));
    const hit = reachTarget(run.rows, target);
    return {
      mode, ...run, secondsPerStep: run.steps > 0 ? run.seconds / run.steps : null,
      initialAccuracy: run.rows[0].devAccuracy, finalAccuracy: evals.at(-1)?.devAccuracy ?? null,
      bestAccuracy: accs.length > 0 ? Math.max(...accs) : null, finalDevLoss: evals.at(-1)?.devLoss ?? null,
      stepsToTarget: hit?.step ?? null, secondsToTarget: hit?.seconds ?? null,
    };
  });

  const table = compareTable(results);
  const title = `zofo compare: ${opts.model === undefined ? 'the demo model' : basename(resolvePath(opts.model))}, ${taskText}, ${budgetText} per mode, batch ${batchSize}`;
  const rows: ChartRow[] = results.flatMap((r) => r.rows.map((row) => ({ mode: r.mode, ...row })));
  await mkdir(opts.out, { recursive: true });
  const written = await writeChartFiles(opts.out, 'compare', chartOf(title, results, target), rows);
  const md = join(opts.out, 'compare.md');
  const targetText = target === null ? 'no accuracy on this task' : `target dev accuracy ${pct(target)}${opts.target === undefined ? ' (0.95 × the best any mode reached)' : ''}`;
  const rssText = isolate ? 'peak RSS: each mode in its own process, peak mark reset after loading the model and data' : 'peak RSS not measured (isolate: false)';
  await writeFile(md, `# ${title}\n\n${table}\n\n${targetText}; seconds are training time (optimizer steps, evaluation excluded); ${rssText}.\n`);
  log('');
  log(table);
  log('');
  log(`${targetText}; seconds: training time, evaluation excluded`);
  log(`chart: ${written.svg}, data: ${written.csv}, ${written.jsonl}, table: ${md}`);
  return { results, target, table, files: { ...written, md } };
}

// A child process: `node [execArgv] compare.js --zofo-compare-child '<job JSON>'` runs one mode.
function isChildEntry(): boolean {
  if (process.argv[2] !== CHILD_FLAG || typeof process.argv[1] !== 'string' || typeof process.argv[3] !== 'string') return false;
  try {
    return realpathSync(process.argv[1]) === realpathSync(thisFile);
  } catch {
    return false;
  }
}

if (isChildEntry()) await childMain(process.argv[3] as string);

