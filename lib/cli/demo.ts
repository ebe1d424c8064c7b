/**
 * `zofo demo`: the main job out of the box. Fine-tunes the embedded pretrained model
 * (demo/model, made by `npm run make-demo-model`) on the built-in task with hybrid,
 * ZO-only and LoRA-only under the same step budget, prints dev accuracy before and
 * after for each, and writes one chart of all modes (the paper's comparison) + CSV.
 */
import { join } from 'node:path';
import { ZofoError } from '../errors.js';
import { demoModelDir, demoTask } from '../demo/model.js';
import { loadModel } from '../model/model.js';
import { HybridOptimizer } from '../train/optimizer.js';
import { evaluate, Trainer } from '../train/trainer.js';
import type { HybridOptimizerOptions } from '../train/types.js';
import { writeChartFiles } from '../chart.js';
import { rowsToChart } from './commands.js';
import { createProgress } from './progress.js';

export type DemoMode = 'hybrid' | 'zo' | 'lora';

/**
 * The demo's split of the built-in task: what `zofo demo` trains and evaluates on, and
 * what scripts/make-demo-model.ts measures the shipped model's README numbers on.
 */
export const DEMO_SPLIT = { train: 256, dev: 200, seed: 0 } as const;

/** Learning rates tuned for the demo model (see demo/model/README.md). */
export const DEMO_PRESETS: Record<DemoMode, HybridOptimizerOptions> = {
  hybrid: { zo: { lr: 2e-4, mu: 1e-3 }, fo: { lr: 0.05 }, seed: 1 },
  zo: { zo: { lr: 2e-4, mu: 1e-3 }, seed: 1 },
  lora: { fo: { lr: 0.05 }, seed: 1 },
};

/** Options of `zofo demo`; rates and LoRA settings given here replace the presets' in every mode that uses them. */
export interface DemoOptions {
  steps?: number;
  /** Where the chart and CSV go (the CLI's default is a new temp folder). */
  out: string;
  modes?: DemoMode[];
  batchSize?: number;
  /** Sampler seed (default 0); the optimizer and the LoRA init use seed + 1. */
  seed?: number;
  lrX?: number;
  lrY?: number;
  mu?: number;
  lora?: { rank?: number; alpha?: number };
  log?: (line: string) => void;
}

/** A mode's optimizer options: its preset, with the rates and seed the options give. */
export function demoOptimizer(mode: DemoMode, o: Pick<DemoOptions, 'lrX' | 'lrY' | 'mu' | 'seed'>): HybridOptimizerOptions {
  const p = DEMO_PRESETS[mode];
  return {
    ...(p.zo ? { zo: { ...p.zo, ...(o.lrX !== undefined ? { lr: o.lrX } : {}), ...(o.mu !== undefined ? { mu: o.mu } : {}) } } : {}),
    ...(p.fo ? { fo: { ...p.fo, ...(o.lrY !== undefined ? { lr: o.lrY } : {}) } } : {}),
    seed: o.seed === undefined ? p.seed : o.seed + 1,
  };
}

export interface DemoResult {
  mode: DemoMode;
  before: number;
  after: number;
  steps: number;
  seconds: number;
}

/** `zofo demo`: each mode fine-tunes a fresh copy of the demo model; prints and plots dev accuracy before and after. */
export async function demo(o: DemoOptions): Promise<DemoResult[]> {
  const log = o.log ?? ((l: string) => console.log(l));
  const modes = o.modes ?? ['hybrid', 'zo', 'lora'];
  for (const m of modes) if (!(m in DEMO_PRESETS)) throw new ZofoError('ZOFO_INVALID_ARG', `zofo demo: unknown mode ${JSON.stringify(m)} (hybrid, zo, lora)`);
  const steps = o.steps ?? 150,
    batchSize = o.batchSize ?? 16,
    seed = o.seed ?? 0;
  const dir = demoModelDir();
  log(`zofo demo: ${dir}; ${steps} steps per mode, batch ${batchSize}`);
  const results: DemoResult[] = [];
  const curves: Record<string, Array<Record<string, number | null>>> = {};
  for (const mode of modes) {
    const model = await loadModel(dir);
    try {
      const { train, dev } = demoTask(model.tokenizer!, DEMO_SPLIT);
      const before = (await evaluate(model, dev, 64)).accuracy ?? 0;
      const optimizer = demoOptimizer(mode, o);
      if (mode !== 'zo') model.addLoRA({ rank: 8, alpha: 16, ...o.lora, seed: optimizer.seed });
      const opt = new HybridOptimizer(model, optimizer);
      const trainer = new Trainer(model, opt, { batchSize, steps, seed, eval: { data: dev, every: Math.max(1, Math.floor(steps / 10)), batchSize: 64 } });
      const rows: Array<Record<string, number | null>> = [{ step: 0, seconds: 0, loss: null, lrX: null, lrY: null, devLoss: null, devAccuracy: before }];
      const progress = createProgress(`${mode.padEnd(6)}`, steps);
      const started = performance.now();
      for await (const ev of trainer.fit(train)) {
        if (ev.type === 'step') {
          progress.update(ev);
          rows.push({
            step: ev.step,
            seconds: (performance.now() - started) / 1000,
            loss: ev.loss,
            lrX: optimizer.zo ? ev.lrX : null,
            lrY: optimizer.fo ? ev.lrY : null,
            devLoss: null,
            devAccuracy: null,
          });
        } else if (ev.type === 'eval') {
          Object.assign(
            [...rows].reverse().find((r) => r.step === ev.step)!,
            { devLoss: ev.loss, devAccuracy: ev.accuracy },
          );
        }
      }
      progress.stop();
      const seconds = (performance.now() - started) / 1000;
      const after = (await evaluate(model, dev, 64)).accuracy ?? 0;
      results.push({ mode, before, after, steps, seconds });
      curves[mode] = rows;
      log(`${mode.padEnd(6)} dev accuracy ${(100 * before).toFixed(1)}% → ${(100 * after).toFixed(1)}% in ${seconds.toFixed(1)} s`);
    } finally {
      model.dispose();
    }
  }
  const rows = Object.entries(curves).flatMap(([mode, rs]) => rs.map((r) => ({ mode, ...r })));
  await writeChartFiles(o.out, 'demo', rowsToChart(`zofo demo: ${steps} steps per mode`, curves), rows);
  log('');
  log('| mode | lr_x | lr_y | dev accuracy before | after | steps | seconds |');
  log('|---|---:|---:|---:|---:|---:|---:|');
  for (const r of results) {
    const { zo, fo } = demoOptimizer(r.mode, o);
    log(
      `| ${r.mode} | ${zo?.lr ?? '–'} | ${fo?.lr ?? '–'} | ${(100 * r.before).toFixed(1)}% | ${(100 * r.after).toFixed(1)}% | ${r.steps} | ${r.seconds.toFixed(1)} |`,
    );
  }
  log(`\nchart: ${join(o.out, 'demo.svg')}, data: ${join(o.out, 'demo.csv')}`);
  return results;
}
