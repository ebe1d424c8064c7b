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

/** Learning rates tuned for the demo model (see demo/model/README.md). */
export const DEMO_PRESETS: Record<DemoMode, HybridOptimizerOptions> = {
  hybrid: { zo: { lr: 2e-4, mu: 1e-3 }, fo: { lr: 0.05 }, seed: 1 },
  zo: { zo: { lr: 2e-4, mu: 1e-3 }, seed: 1 },
  lora: { fo: { lr: 0.05 }, seed: 1 },
};

export interface DemoOptions { steps?: number; out: string; modes?: DemoMode[]; batchSize?: number; log?: (line: string) => void }

export interface DemoResult { mode: DemoMode; before: number; after: number; steps: number; seconds: number }

export async function demo(o: DemoOptions): Promise<DemoResult[]> {
  const log = o.log ?? ((l: string) => console.log(l));
  const modes = o.modes ?? ['hybrid', 'zo', 'lora'];
  for (const m of modes) if (!(m in DEMO_PRESETS)) throw new ZofoError('ZOFO_INVALID_ARG', `zofo demo: unknown mode ${JSON.stringify(m)} (hybrid, zo, lora)`);
  const steps = o.steps ?? 150, batchSize = o.batchSize ?? 16;
  const dir = demoModelDir();
  log(`zofo demo: ${dir}; ${steps} steps per mode, batch ${batchSize}`);
  const results: DemoResult[] = [];
  const curves: Record<string, Array<Record<string, number | null>>> = {};
  for (const mode of modes) {
    const model = await loadModel(dir);
    try {
      const { train, dev } = demoTask(model.tokenizer!, { seed: 0 });
      const before = (await evaluate(model, dev, 64)).accuracy ?? 0;
      if (mode !== 'zo') model.addLoRA({ rank: 8, alpha: 16, seed: 1 });
      const opt = new HybridOptimizer(model, DEMO_PRESETS[mode]);
      const trainer = new Trainer(model, opt, { batchSize, steps, seed: 0, eval: { data: dev, every: Math.max(1, Math.floor(steps / 10)), batchSize: 64 } });
      const rows: Array<Record<string, number | null>> = [{ step: 0, seconds: 0, loss: null, devLoss: null, devAccuracy: before }];
      const progress = createProgress(`${mode.padEnd(6)}`, steps);
      const started = performance.now();
      for await (const ev of trainer.fit(train)) {
        if (ev.type === 'step') {
          progress.update(ev);
          rows.push({ step: ev.step, seconds: (performance.now() - started) / 1000, loss: ev.loss, devLoss: null, devAccuracy: null });
        } else if (ev.type === 'eval') {
          Object.assign([...rows].reverse().find((r) => r.step === ev.step)!, { devLoss: ev.loss, devAccuracy: ev.accuracy });
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
  log('| mode | dev accuracy before | after | steps | seconds |');
  log('|---|---:|---:|---:|---:|');
  for (const r of results) log(`| ${r.mode} | ${(100 * r.before).toFixed(1)}% | ${(100 * r.after).toFixed(1)}% | ${r.steps} | ${r.seconds.toFixed(1)} |`);
  log(`\nchart: ${join(o.out, 'demo.svg')}, data: ${join(o.out, 'demo.csv')}`);
  return results;
}
