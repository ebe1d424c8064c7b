/**
 * `zofo smoothness`: estimates L_x and L_y (docs/algorithm.md §6) on a model and a few
 * minibatches of the user's task, and judges learning rates against the step sizes the
 * hybrid analysis admits (lib/theory/smoothness.ts has the methods and formulas).
 */
import { loadTask, sampleIndices, type TaskName } from '../data/tasks.js';
import { ZofoError } from '../errors.js';
import { demoModelDir, demoTask } from '../demo/model.js';
import { loadModel, type Example } from '../model/model.js';
import { estimateSmoothness, stepSizeAdvice, type SmoothnessReport, type StepSizeAdvice } from '../theory/smoothness.js';

export interface SmoothnessCommandOptions {
  model?: string;
  adapter?: string;
  task?: TaskName;
  data?: string;
  batches?: number;
  batchSize?: number;
  rank?: number;
  lrX?: number;
  lrY?: number;
  perturbations?: number;
  iterations?: number;
  directions?: number;
  seed?: number;
}

export async function smoothness(
  o: SmoothnessCommandOptions,
  log: (line: string) => void = (l) => console.log(l),
): Promise<{ report: SmoothnessReport; advice: StepSizeAdvice }> {
  const dir = o.model ?? demoModelDir();
  const model = await loadModel(dir);
  try {
    if (!model.tokenizer) throw new ZofoError('ZOFO_BAD_FILE', `${dir}: no tokenizer.json`);
    const batches = o.batches ?? 3,
      batchSize = o.batchSize ?? 16,
      seed = o.seed ?? 0;
    let examples: Example[];
    if (o.task && o.data) {
      examples = (await loadTask(o.task, o.data, model.tokenizer, { pick: (n) => sampleIndices(n, Math.min(n, batches * batchSize), seed) })).examples;
    } else if (!o.task && !o.data && !o.model) {
      examples = demoTask(model.tokenizer, { train: batches * batchSize, dev: 1, seed }).train;
    } else {
      throw new ZofoError('ZOFO_INVALID_ARG', 'zofo smoothness: give --task and --data (or neither, for the demo model and task)');
    }
    if (o.adapter) await model.loadAdapter(o.adapter);
    else model.addLoRA({ rank: o.rank ?? 8 });
    const chunks: Example[][] = [];
    for (let i = 0; i < examples.length; i += batchSize) chunks.push(examples.slice(i, i + batchSize));
    log(`estimating on ${dir}: ${chunks.length} minibatches of ≤ ${batchSize} examples`);
    const report = await estimateSmoothness({ model, batches: chunks }, { iterations: o.iterations, directions: o.directions, seed });
    const dimX = model.parameterCounts().reduce((a, b) => a + b, 0);
    const advice = stepSizeAdvice({ lx: report.lx ?? report.lxCurvature, ly: report.ly, dimX, lrX: o.lrX, lrY: o.lrY, q: o.perturbations });
    const f = (x: number | null | undefined) => (x === null || x === undefined ? 'n/a' : x.toPrecision(4));
    log('');
    log('| quantity | estimate | spread (min–max) | method |');
    log('|---|---:|---|---|');
    if (report.ly) log(`| L_y | ${f(report.ly.value)} | ${f(report.ly.spread.min)}–${f(report.ly.spread.max)} | ${report.ly.method} |`);
    if (report.lx) log(`| L_x | ${f(report.lx.value)} | ${f(report.lx.spread.min)}–${f(report.lx.spread.max)} | ${report.lx.method} |`);
    if (report.lxCurvature) log(`| max vᵀ∇²ₓf v | ${f(report.lxCurvature.max)} | mean ${f(report.lxCurvature.mean)} | ${report.lxCurvature.label} |`);
    log('');
    log(`admissible η_y ≤ 1/L_y = ${f(advice.lrYMax)} (diverges above 2/L_y = ${f(advice.lrYDiverge)})  [${advice.formulas.y}]`);
    log(`admissible η_x ≤ ${f(advice.lrXMax)} (d_x = ${dimX})  [${advice.formulas.x}]`);
    if (advice.verdicts.y) log(`your lr_y ${o.lrY}: ${advice.verdicts.y.message}`);
    if (advice.verdicts.x) log(`your lr_x ${o.lrX}: ${advice.verdicts.x.message}`);
    for (const n of [...report.notes, ...advice.notes]) log(`note: ${n}`);
    return { report, advice };
  } finally {
    model.dispose();
  }
}
