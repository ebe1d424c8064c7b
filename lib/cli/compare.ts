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
 *   - seeds (default 1): every mode runs that many times, run i with sampler seed
 *     seed + i and optimizer / LoRA seed seed + i + 1 (the data sample stays the same).
 *     Each mode is then summarised by the mean ± standard deviation and a 95% interval
 *     (Student's t) of its final accuracy and of its steps to the target, and the chart
 *     draws each mode's mean curve with a min..max band over its runs.
 *
 * Writes <out>/compare.svg (accuracy vs step and vs seconds, training and dev loss, all
 * modes), compare.csv and compare.jsonl (the rows, with the learning rates of each
 * step), compare.md (the table and every setting each mode ran with).
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
import { summarize, type Summary } from './stats.js';

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
  /** Runs per mode (default 1); run i uses seed + i (see the module comment). */
  seeds?: number;
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
  /** The learning rates the step used (after schedules); null where the mode has no such part, and at step 0. */
  lrX: number | null;
  lrY: number | null;
  devLoss: number | null;
  devAccuracy: number | null;
}

/** First point where a curve reaches a target. */
export interface TargetHit {
  step: number;
  seconds: number;
}

/** One run of one mode. */
export interface ModeResult {
  mode: CompareMode;
  /** The run's sampler seed (its optimizer and LoRA seed: `optimizer.seed`). */
  seed: number;
  /** The optimizer options the run used: every rate, the estimator, q, seeds. */
  optimizer: HybridOptimizerOptions;
  /** The adapters' options (hybrid and LoRA). */
  lora: LoraOptions | null;
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

/** A mode over its runs (`seeds`): final accuracy and steps to target, summarised. */
export interface ModeSummary {
  mode: CompareMode;
  runs: number;
  skipped?: string;
  finalAccuracy: Summary;
  /** Over the runs that reached the target (`reached` of `runs`). */
  stepsToTarget: Summary;
  reached: number;
  secondsPerStep: Summary;
  peakRssMiB: Summary;
}

export interface CompareResult {
  /** Every run: modes in order, each mode's runs in seed order. */
  results: ModeResult[];
  /** Per mode, over its runs. */
  summary: ModeSummary[];
  /** The target accuracy used (null for tasks without accuracy). */
  target: number | null;
  /** Markdown: one run per mode: mode, final acc, best acc, steps to target, seconds to target, s/step, peak RSS MiB; several: the summary per mode. */
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
  return (
    `full fine-tuning needs ${(need / MiB).toFixed(1)} MiB (${parameters} parameters × 4 bytes × 4: weights, gradients, 2 AdamW moments), ` +
    `over the memory budget of ${(budget / MiB).toFixed(1)} MiB (memoryBudget)`
  );
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
  | { type: 'step'; step: number; loss: number; lrX: number; lrY: number; seconds: number }
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
  } catch {
    /* not Linux */
  }
  return process.resourceUsage().maxRSS * 1024;
}

async function runMode(job: ModeJob, onEvent: (e: ModeEvent) => void = () => {}): Promise<ModeRun> {
  const model = await loadModel(job.model);
  try {
    if (!model.tokenizer) throw new ZofoError('ZOFO_BAD_FILE', `${job.model}: no tokenizer.json; compare tokenizes the task with the model's tokenizer`);
    const { train, dev } = await loadExamples(model, job.task);
    const evalNow = () => evaluate(model, dev, job.evalBatchSize);
    const first = await evalNow();
    const rows: CompareRow[] = [{ step: 0, seconds: 0, loss: null, lrX: null, lrY: null, devLoss: first.loss, devAccuracy: first.accuracy }];
    (globalThis as { gc?: () => void }).gc?.();
    const rssReset = job.measureRss ? resetPeakRss() : null;
    // Read after the reset: the mark then equals the RSS at this moment (the collector
    // may still be returning pages, so an earlier reading could exceed it).
    const loadedRss = rssReset ? peakRssBytes() : process.memoryUsage().rss;
    const base = model.parameterCounts().reduce((a, b) => a + b, 0);
    if (job.mode === 'hybrid' || job.mode === 'lora') model.addLoRA(job.lora);
    const trainable =
      job.mode === 'full'
        ? base
        : model.loraNames().reduce((a, n) => a + model.loraTensor(n).length, 0) + (job.mode === 'zo' || job.mode === 'hybrid' ? base : 0);
    const opt = new HybridOptimizer(model, job.optimizer);
    let trainMs = 0,
      step = 0,
      reason = 'completed';
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
        const row: CompareRow = {
          step,
          seconds: trainMs / 1000,
          loss: ev.loss,
          lrX: job.optimizer.zo ? ev.lrX : null,
          lrY: job.optimizer.fo ? ev.lrY : null,
          devLoss: null,
          devAccuracy: null,
        };
        rows.push(row);
        onEvent({ type: 'step', step, loss: ev.loss, lrX: ev.lrX, lrY: ev.lrY, seconds: row.seconds });
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
      rows,
      reason,
      steps: step,
      seconds: trainMs / 1000,
      wallSeconds: (performance.now() - started) / 1000,
      peakRssMiB: peak === null ? null : peak / MiB,
      loadedRssMiB: job.measureRss ? loadedRss / MiB : null,
      rssReset,
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
    let buffered = '',
      stderr = '';
    let result: ModeRun | null = null,
      failure: { code?: string; message: string } | null = null;
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
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-8000);
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (buffered) line(buffered);
      if (code === 0 && result) return resolve(result);
      const f = failure as { code?: string; message: string } | null;
      const errCode = (f?.code?.startsWith('ZOFO_') ? f.code : 'ZOFO_INTERNAL') as ZofoErrorCode;
      reject(
        new ZofoError(
          errCode,
          `compare (${job.mode}): ${f ? f.message : `the child process exited with ${signal ?? `code ${code}`}`}${f ? '' : `\n${stderr.trim()}`}`,
        ),
      );
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
    case 'hybrid':
      return { zo, fo: { ...fo, params: 'adapters' }, seed: s };
    case 'zo':
      return { zo, seed: s };
    case 'lora':
      return { fo: { ...fo, params: 'adapters' }, seed: s };
    case 'full':
      return { fo: { ...fo, params: 'all' }, seed: s };
  }
}

const pct = (x: number | null) => (x === null ? '–' : `${(100 * x).toFixed(1)}%`);

/** The markdown table of a comparison. */
export function compareTable(results: readonly ModeResult[], withSeeds = false): string {
  const name = (r: ModeResult) => (withSeeds ? `${r.mode} (seed ${r.seed})` : r.mode);
  const lines = ['| mode | final acc | best acc | steps to target | seconds to target | s/step | peak RSS MiB |', '|---|---:|---:|---:|---:|---:|---:|'];
  for (const r of results) {
    if (r.skipped) {
      lines.push(`| ${name(r)} | skipped: ${r.skipped} | | | | | |`);
      continue;
    }
    lines.push(
      `| ${name(r)} | ${pct(r.finalAccuracy)} | ${pct(r.bestAccuracy)} | ${r.stepsToTarget ?? 'not reached'} | ` +
        `${r.secondsToTarget === null ? 'not reached' : r.secondsToTarget.toFixed(2)} | ${r.secondsPerStep === null ? '–' : r.secondsPerStep.toFixed(4)} | ` +
        `${r.peakRssMiB === null ? '–' : r.peakRssMiB.toFixed(0)} |`,
    );
  }
  return lines.join('\n');
}

/** Where the runs' curves meet: per eval index, the mean x and mean / min / max y over runs. */
function meanCurve(
  runs: readonly ModeResult[],
  x: keyof CompareRow,
  y: keyof CompareRow,
): { points: Array<readonly [number, number]>; band: Array<readonly [number, number, number]> } {
  const curves = runs.map((r) => r.rows.filter((row) => row[y] !== null));
  const n = Math.min(...curves.map((c) => c.length));
  const points: Array<readonly [number, number]> = [],
    band: Array<readonly [number, number, number]> = [];
  for (let i = 0; i < n; i++) {
    const xs = curves.map((c) => c[i][x] as number),
      ys = curves.map((c) => c[i][y] as number);
    const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
    points.push([mx, ys.reduce((a, b) => a + b, 0) / ys.length]);
    band.push([mx, Math.min(...ys), Math.max(...ys)]);
  }
  return { points, band };
}

function chartOf(title: string, results: readonly ModeResult[], target: number | null): ChartSpec {
  const ran = results.filter((r) => !r.skipped);
  const modes = [...new Set(ran.map((r) => r.mode))];
  const several = modes.some((m) => ran.filter((r) => r.mode === m).length > 1);
  const series = (x: keyof CompareRow, y: keyof CompareRow) =>
    modes.map((mode) => {
      const runs = ran.filter((r) => r.mode === mode);
      if (runs.length === 1)
        return { name: mode, points: runs[0].rows.filter((row) => row[y] !== null).map((row) => [row[x] as number, row[y] as number] as const) };
      return { name: mode, ...meanCurve(runs, x, y) };
    });
  const targetLine = (x: keyof CompareRow) => {
    if (target === null) return [];
    const xs = ran.flatMap((r) => r.rows.map((row) => row[x] as number));
    return xs.length === 0
      ? []
      : [
          {
            name: `target ${pct(target)}`,
            points: [
              [0, target],
              [Math.max(...xs), target],
            ] as const,
          },
        ];
  };
  return {
    title: several ? `${title}; mean of the runs, band: min..max` : title,
    columns: 2,
    panels: [
      { title: 'dev accuracy vs step', xLabel: 'step', yLabel: 'accuracy', series: [...series('step', 'devAccuracy'), ...targetLine('step')] },
      {
        title: 'dev accuracy vs training time',
        xLabel: 'seconds',
        yLabel: 'accuracy',
        series: [...series('seconds', 'devAccuracy'), ...targetLine('seconds')],
      },
      { title: 'training loss', xLabel: 'step', yLabel: 'loss', series: series('step', 'loss') },
      { title: 'dev loss', xLabel: 'step', yLabel: 'loss', series: series('step', 'devLoss') },
    ],
  };
}

/** Per mode over its runs: final accuracy and steps to target (the runs that reached it), time per step, peak RSS. */
export function summarizeModes(results: readonly ModeResult[]): ModeSummary[] {
  const modes = [...new Set(results.map((r) => r.mode))];
  const finite = (xs: Array<number | null>) => xs.filter((x): x is number => x !== null && Number.isFinite(x));
  return modes.map((mode) => {
    const runs = results.filter((r) => r.mode === mode);
    const ran = runs.filter((r) => !r.skipped);
    const reached = finite(ran.map((r) => r.stepsToTarget));
    return {
      mode,
      runs: runs.length,
      ...(runs[0].skipped ? { skipped: runs[0].skipped } : {}),
      finalAccuracy: summarize(finite(ran.map((r) => r.finalAccuracy))),
      stepsToTarget: summarize(reached),
      reached: reached.length,
      secondsPerStep: summarize(finite(ran.map((r) => r.secondsPerStep))),
      peakRssMiB: summarize(finite(ran.map((r) => r.peakRssMiB))),
    };
  });
}

const meanSd = (s: Summary, f: (x: number) => string) => (s.mean === null ? '–' : s.sd === null ? f(s.mean) : `${f(s.mean)} ± ${f(s.sd)}`);
const interval = (s: Summary, f: (x: number) => string) => (s.ci95 === null ? '–' : `${f(s.ci95[0])} – ${f(s.ci95[1])}`);

/** The markdown table of several runs per mode: mean ± sd and the 95% interval of final accuracy and steps to target. */
export function summaryTable(summary: readonly ModeSummary[]): string {
  const p = (x: number) => `${(100 * x).toFixed(1)}%`,
    n = (x: number) => x.toFixed(1);
  const lines = [
    '| mode | runs | final acc (mean ± sd) | final acc 95% CI | steps to target (mean ± sd) | steps to target 95% CI | reached target | s/step | peak RSS MiB |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const m of summary) {
    if (m.skipped) {
      lines.push(`| ${m.mode} | ${m.runs} | skipped: ${m.skipped} | | | | | | |`);
      continue;
    }
    lines.push(
      `| ${m.mode} | ${m.runs} | ${meanSd(m.finalAccuracy, p)} | ${interval(m.finalAccuracy, p)} | ${meanSd(m.stepsToTarget, n)} | ` +
        `${interval(m.stepsToTarget, n)} | ${m.reached}/${m.runs} | ${m.secondsPerStep.mean === null ? '–' : m.secondsPerStep.mean.toFixed(4)} | ` +
        `${m.peakRssMiB.mean === null ? '–' : m.peakRssMiB.mean.toFixed(0)} |`,
    );
  }
  return lines.join('\n');
}

/** The settings table: every rate and option each mode ran with. */
export function settingsTable(results: readonly ModeResult[]): string {
  const lines = [
    '| mode | sampler seeds | optimizer seeds | lr_x | μ | estimator | q | wd_x | lr_y | FO optimizer | FO params | wd_y | LoRA rank / alpha |',
    '|---|---|---|---:|---:|---|---:|---:|---:|---|---|---:|---|',
  ];
  const v = (x: unknown) => (x === undefined || x === null ? '–' : String(x));
  for (const mode of [...new Set(results.map((r) => r.mode))]) {
    const runs = results.filter((r) => r.mode === mode && !r.skipped);
    if (runs.length === 0) continue;
    const { zo, fo } = runs[0].optimizer;
    lines.push(
      `| ${mode} | ${runs.map((r) => r.seed).join(', ')} | ${runs.map((r) => r.optimizer.seed).join(', ')} | ${v(zo?.lr)} | ${v(zo?.mu ?? (zo ? 1e-3 : undefined))} | ` +
        `${v(zo ? (zo.estimator ?? 'forward') : undefined)} | ${v(zo ? (zo.perturbations ?? 1) : undefined)} | ${v(zo ? (zo.weightDecay ?? 0) : undefined)} | ${v(fo?.lr)} | ` +
        `${v(fo ? (fo.optimizer ?? 'sgd') : undefined)} | ${v(fo ? (fo.params ?? 'adapters') : undefined)} | ${v(fo ? (fo.weightDecay ?? 0) : undefined)} | ` +
        `${runs[0].lora ? `${runs[0].lora.rank ?? 8} / ${runs[0].lora.alpha ?? 16}${runs[0].lora.targets ? ` (${runs[0].lora.targets.join(',')})` : ''}` : '–'} |`,
    );
  }
  return lines.join('\n');
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
  for (const [name, v] of [
    ['steps', opts.steps],
    ['batchSize', opts.batchSize],
    ['evalEvery', opts.evalEvery],
    ['evalBatchSize', opts.evalBatchSize],
  ] as const) {
    if (v !== undefined && !isPositiveInt(v)) throw invalidArg('a positive integer', name, v);
  }
  for (const [name, v] of [
    ['seconds', opts.seconds],
    ['evalEverySeconds', opts.evalEverySeconds],
    ['memoryBudget', opts.memoryBudget],
  ] as const) {
    if (v !== undefined && !isPositive(v)) throw invalidArg('a finite number > 0', name, v);
  }
  if (opts.target !== undefined && !(typeof opts.target === 'number' && opts.target >= 0 && opts.target <= 1))
    throw invalidArg('a number in [0, 1]', 'target', opts.target);
  if (opts.seed !== undefined && !(Number.isSafeInteger(opts.seed) && opts.seed >= 0)) throw invalidArg('a non-negative integer', 'seed', opts.seed);
  if (opts.seeds !== undefined && !isPositiveInt(opts.seeds)) throw invalidArg('a positive integer', 'seeds', opts.seeds);
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
  log(
    `zofo compare: ${model}; ${taskText}; ${budgetText} per mode, batch ${batchSize}; ` +
      `eval every ${evalEvery === null ? `${evalEverySeconds} s` : `${evalEvery} steps`}; ${isolate ? 'one child process per mode' : 'in this process'}`,
  );

  const seeds = opts.seeds ?? 1;
  const parameters = await countParameters(model);
  const runs: Array<{ mode: CompareMode; seed: number; optimizer: HybridOptimizerOptions; lora: LoraOptions | null; run: ModeRun | null; skipped?: string }> =
    [];
  for (const mode of modes) {
    if (mode === 'full') {
      const why = fullFineTuningSkip(parameters, budget);
      if (why) {
        log(`full   skipped: ${why}`);
        runs.push({ mode, seed: opts.seed ?? 0, optimizer: optimizerFor(mode, opts.optimizers?.[mode], opts.seed ?? 0), lora: null, run: null, skipped: why });
        continue;
      }
    }
    for (let i = 0; i < seeds; i++) {
      const seed = (opts.seed ?? 0) + i;
      const optimizer = optimizerFor(mode, opts.optimizers?.[mode], seed);
      const lora: LoraOptions = { rank: 8, alpha: 16, seed: optimizer.seed, ...opts.lora };
      const job: ModeJob = {
        mode,
        model,
        task,
        optimizer,
        lora,
        batchSize,
        steps,
        seconds: timeBudget,
        evalEvery,
        evalEverySeconds,
        evalBatchSize: opts.evalBatchSize ?? 64,
        seed,
        measureRss: isolate,
      };
      const label = (seeds > 1 ? `${mode} #${i + 1}` : mode).padEnd(seeds > 1 ? 10 : 6);
      const bar: Progress | null = showProgress && steps !== null && timeBudget === null ? createProgress(label, steps) : null;
      const onEvent = (e: ModeEvent) => {
        if (e.type === 'step') bar?.update(e);
        else if (showProgress && !bar)
          process.stderr.write(
            `${label} eval @ step ${e.step} (${e.seconds.toFixed(1)} s): dev loss ${e.loss.toFixed(4)}${e.accuracy === null ? '' : `, accuracy ${pct(e.accuracy)}`}\n`,
          );
      };
      let run: ModeRun;
      try {
        run = isolate ? await runChild(job, onEvent) : await runMode(job, onEvent);
      } finally {
        bar?.stop();
      }
      const evals = run.rows.filter((r) => r.devAccuracy !== null);
      log(
        `${label} dev accuracy ${pct(run.rows[0].devAccuracy)} → ${pct(evals.at(-1)?.devAccuracy ?? null)} in ${run.steps} steps, ` +
          `${run.seconds.toFixed(1)} s of training (${run.wallSeconds.toFixed(1)} s with evaluation)${run.peakRssMiB === null ? '' : `; peak RSS ${run.peakRssMiB.toFixed(0)} MiB`}`,
      );
      runs.push({ mode, seed, optimizer, lora: mode === 'hybrid' || mode === 'lora' ? lora : null, run });
    }
  }

  const target = opts.target ?? defaultTarget(runs.flatMap((r) => (r.run ? [r.run.rows] : [])));
  const results: ModeResult[] = runs.map(({ mode, seed, optimizer, lora, run, skipped }) => {
    if (!run) {
      return {
        mode,
        seed,
        optimizer,
        lora,
        skipped,
        rows: [],
        reason: 'skipped',
        steps: 0,
        seconds: 0,
        wallSeconds: 0,
        secondsPerStep: null,
        initialAccuracy: null,
        finalAccuracy: null,
        bestAccuracy: null,
        finalDevLoss: null,
        stepsToTarget: null,
        secondsToTarget: null,
        peakRssMiB: null,
        loadedRssMiB: null,
        rssReset: null,
        parameters: { base: parameters, trainable: parameters },
      };
    }
    const evals = run.rows.filter((r) => r.devLoss !== null);
    const accs = evals.flatMap((r) => (r.devAccuracy === null ? [] : [r.devAccuracy]));
    const hit = reachTarget(run.rows, target);
    return {
      mode,
      seed,
      optimizer,
      lora,
      ...run,
      secondsPerStep: run.steps > 0 ? run.seconds / run.steps : null,
      initialAccuracy: run.rows[0].devAccuracy,
      finalAccuracy: evals.at(-1)?.devAccuracy ?? null,
      bestAccuracy: accs.length > 0 ? Math.max(...accs) : null,
      finalDevLoss: evals.at(-1)?.devLoss ?? null,
      stepsToTarget: hit?.step ?? null,
      secondsToTarget: hit?.seconds ?? null,
    };
  });

  const summary = summarizeModes(results);
  const table = seeds > 1 ? summaryTable(summary) : compareTable(results);
  const settings = settingsTable(results);
  const title = `zofo compare: ${opts.model === undefined ? 'the demo model' : basename(resolvePath(opts.model))}, ${taskText}, ${budgetText} per mode, batch ${batchSize}${seeds > 1 ? `, ${seeds} runs per mode` : ''}`;
  const rows: ChartRow[] = results.flatMap((r) => r.rows.map((row) => ({ mode: r.mode, seed: r.seed, ...row })));
  await mkdir(opts.out, { recursive: true });
  const written = await writeChartFiles(opts.out, 'compare', chartOf(title, results, target), rows);
  const md = join(opts.out, 'compare.md');
  const targetText =
    target === null ? 'no accuracy on this task' : `target dev accuracy ${pct(target)}${opts.target === undefined ? ' (0.95 × the best any run reached)' : ''}`;
  const rssText = isolate
    ? 'peak RSS: each mode in its own process, peak mark reset after loading the model and data'
    : 'peak RSS not measured (isolate: false)';
  const statsText =
    seeds > 1
      ? `; ${seeds} runs per mode: mean ± sample sd, 95% CI of the mean from Student's t with runs − 1 degrees of freedom; steps to target over the runs that reached it`
      : '';
  const perRun = seeds > 1 ? `\n## Every run\n\n${compareTable(results, true)}\n` : '';
  await writeFile(
    md,
    `# ${title}\n\n${table}\n\n${targetText}; seconds are training time (optimizer steps, evaluation excluded); ${rssText}${statsText}.\n\n## Settings\n\n${settings}\n${perRun}\n`,
  );
  log('');
  log(table);
  log('');
  log(settings);
  log('');
  log(`${targetText}; seconds: training time, evaluation excluded${statsText}`);
  log(`chart: ${written.svg}, data: ${written.csv}, ${written.jsonl}, table and settings: ${md}`);
  return { results, summary, target, table, files: { ...written, md } };
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
