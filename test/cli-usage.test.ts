// How the CLI is called, in process: bad flags and --config files end with ONE line
// naming the problem and its code (exit code 2), unknown keys get the nearest valid one,
// the training flags are one definition with defaults in every command's --help; the
// statistics and chart bands of `compare --seeds`.
import t from 'tap';
import { existsSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Command } from 'commander';
import { renderChart } from '../lib/chart.js';
import { settingsTable, summarizeModes, summaryTable, type ModeResult } from '../lib/cli/compare.js';
import { TRAINING_FLAGS, validateConfig, type FlagName } from '../lib/cli/flags.js';
import { compareOverrides, main, program, trainConfig } from '../lib/cli/main.js';
import { summarize, tQuantile975 } from '../lib/cli/stats.js';
import { editDistance, suggestKey } from '../lib/cli/suggest.js';

/** Runs main() in this process; returns what it wrote to stderr and its exit code. */
async function run(args: string[]): Promise<{ stderr: string; exitCode: number }> {
  const write = process.stderr.write;
  let stderr = '';
  process.stderr.write = ((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  }) as typeof process.stderr.write;
  const before = process.exitCode;
  try {
    await main(['node', 'zofo', ...args]);
    return { stderr, exitCode: Number(process.exitCode ?? 0) };
  } finally {
    process.stderr.write = write;
    process.exitCode = before;
  }
}
const lines = (s: string) => s.trimEnd().split('\n');

t.test('bad flags: one line with the problem and the code, exit code 2, no help', async (t) => {
  for (const [args, re] of [
    [['train', '--setps', '3'], /^zofo: unknown option '--setps' \(Did you mean --steps\?\) \[ZOFO_INVALID_ARG\]/],
    [['train', '--lr-x=-1'], /--lr-x.*'-1' is invalid.*must be > 0 \[ZOFO_INVALID_ARG\]/],
    [['train', '--batch-size', '2.5'], /--batch-size.*must be an integer/],
    [['demo', '--steps', '0'], /--steps.*must be ≥ 1/],
    [['compare', '--lr-y', 'fast'], /--lr-y.*must be a number/],
    [['smoothness', '--perturbations', '0'], /--perturbations.*must be ≥ 1/],
    [['train', '--mode', 'sideways'], /--mode.*sideways.*hybrid, zo, lora, full/],
    [['train', '--model', 'm'], /--task is required/],
    [['train', '--steps', '2', '--epochs', '1', '--model', 'm', '--task', 'sst2', '--train', 'x', '--out', 'o'], /--steps or --epochs, not both/],
  ] as Array<[string[], RegExp]>) {
    const r = await run(args);
    t.equal(r.exitCode, 2, `${args.join(' ')}: exit code 2`);
    t.equal(lines(r.stderr).length, 1, `${args.join(' ')}: one line`);
    t.match(r.stderr, re, `${args.join(' ')}: ${r.stderr.trim()}`);
  }
});

t.test('config files: checked against the flags, unknown keys named with the nearest valid one', async (t) => {
  const root = t.testdir({});
  const base = { model: 'm', task: 'sst2', train: 't.tsv', out: 'o' };
  const cases: Array<[string, unknown, RegExp]> = [
    ['setps.json', { ...base, setps: 3 }, /unknown key "setps" \(did you mean "steps"\?\)/],
    ['nested.json', { ...base, fo: { learning_rate: 1e-4 } }, /unknown key "fo\.learning_rate" \(did you mean "fo\.lr"\?\)/],
    ['dotted.json', { ...base, 'fo.learning_rate': 1e-4 }, /unknown key "fo\.learning_rate" \(did you mean "fo\.lr"\?\)/],
    ['flagname.json', { ...base, 'lr-y': 1e-4 }, /unknown key "lr-y" \(did you mean "fo\.lr"\?\)/],
    ['snake.json', { ...base, batch_size: 4 }, /unknown key "batch_size" \(did you mean "batchSize"\?\)/],
    [
      'two.json',
      { ...base, setps: 3, zo: { lr: 1, muu: 2 } },
      /unknown keys (?=.*"setps" \(did you mean "steps"\?\))(?=.*"zo\.muu" \(did you mean "zo\.mu"\?\))/,
    ],
    ['far.json', { ...base, zzzzzzzz: 1 }, /unknown key "zzzzzzzz"; valid keys: model, /],
    ['type.json', { ...base, steps: 'ten' }, /"steps" must be a number/],
    ['int.json', { ...base, steps: 2.5 }, /"steps" must be an integer/],
    ['range.json', { ...base, zo: { lr: -1 } }, /"zo\.lr" must be > 0/],
    ['nan.json', '{"steps": 1e999}', /"steps" must be an integer/],
    ['choice.json', { ...base, mode: 'sideways' }, /"mode" must be one of hybrid, zo, lora, full/],
    ['part.json', { ...base, fo: 3 }, /"fo" must be an object/],
    ['array.json', [1, 2], /must be a JSON object/],
    ['syntax.json', '{"steps": 3,', /not valid JSON/],
  ];
  for (const [name, json, re] of cases) {
    const file = join(root, name);
    await writeFile(file, typeof json === 'string' ? json : JSON.stringify(json));
    const r = await run(['train', '--config', file]);
    t.equal(r.exitCode, 2, `${name}: exit code 2`);
    t.equal(lines(r.stderr).length, 1, `${name}: one line`);
    t.match(r.stderr, re, `${name}: ${r.stderr.trim().slice(0, 140)}`);
    t.ok(r.stderr.startsWith(`zofo: ${file}: `) && r.stderr.trimEnd().endsWith('[ZOFO_BAD_CONFIG]'), `${name}: names the file, ends with the code`);
  }
  const missing = await run(['train', '--config', join(root, 'nope.json')]);
  t.equal(missing.exitCode, 2);
  t.match(missing.stderr, /nope\.json: cannot read the config file.*\[ZOFO_IO\]/);

  // The file's values come back by flag name; flags given on the command line win.
  const values = validateConfig(
    'run.json',
    { ...base, steps: 5, zo: { lr: 2e-6 }, fo: { lr: 3e-4, optimizer: 'adamw' }, lora: { targets: ['q_proj'] } },
    Object.keys(TRAINING_FLAGS) as FlagName[],
  );
  t.same(values, { model: 'm', task: 'sst2', train: 't.tsv', out: 'o', steps: 5, lrX: 2e-6, lrY: 3e-4, foOptimizer: 'adamw', targets: ['q_proj'] });
  const c = trainConfig({ lrX: 1e-5, epochs: 2 }, values);
  t.same(
    c,
    { model: 'm', task: 'sst2', train: 't.tsv', out: 'o', epochs: 2, zo: { lr: 1e-5 }, fo: { lr: 3e-4, optimizer: 'adamw' }, lora: { targets: ['q_proj'] } },
    "a flag overrides the file (and --epochs replaces the file's steps)",
  );
});

t.test('nearest-key suggestions', async (t) => {
  t.equal(editDistance('steps', 'steps'), 0);
  t.equal(editDistance('setps', 'steps'), 1, 'an adjacent transposition is one edit');
  t.equal(editDistance('kitten', 'sitting'), 3, 'the textbook pair');
  t.equal(editDistance('', 'abc'), 3);
  t.equal(editDistance('ca', 'abc'), 3, 'optimal string alignment, not unrestricted Damerau (which gives 2)');
  const keys = new Map([
    ['steps', 'steps'],
    ['epochs', 'epochs'],
    ['zo.lr', 'zo.lr'],
    ['fo.lr', 'fo.lr'],
    ['batchSize', 'batchSize'],
  ]);
  t.equal(suggestKey('setps', keys), 'steps');
  t.equal(suggestKey('Epoch', keys), 'epochs');
  t.equal(suggestKey('fo.learningRate', keys), 'fo.lr');
  t.equal(suggestKey('BATCH-SIZE', keys), 'batchSize');
  t.equal(suggestKey('temperature', keys), null, 'nothing close: no suggestion');
});

t.test("one definition of the training flags: the same flags and defaults in every command's --help", async (t) => {
  const p = program();
  const cmd = (name: string) => p.commands.find((c) => c.name() === name) as Command;
  const help = (name: string) => cmd(name).helpInformation().replace(/\s+/g, ' ');
  for (const name of ['train', 'compare', 'smoothness', 'demo']) {
    const h = help(name);
    t.match(h, /--lr-x <lr> ZO learning rate of the base weights \(default: /, `${name}: --lr-x`);
    t.match(h, /--batch-size <n> examples per step \(default: 16\)/, `${name}: --batch-size`);
  }
  t.match(help('train'), /--lr-x <lr> ZO learning rate of the base weights \(default: 1e-6\)/);
  t.match(help('demo'), /--steps <n> optimizer steps \(default: 150 per mode\)/, 'demo --help shows its defaults');
  t.match(help('demo'), /--lr-y <lr> .*\(default: 0\.05, the demo preset/);
  t.match(help('compare'), /--seeds <n>/);
  for (const c of ['compare', 'demo', 'smoothness']) {
    for (const o of cmd(c).options) {
      const shared = Object.values(TRAINING_FLAGS).find((f) => f.flag === o.long);
      if (shared) t.equal(o.flags, 'arg' in shared ? `${shared.flag} ${shared.arg}` : shared.flag, `${c} ${o.long}: the shared definition`);
    }
  }
  const o = compareOverrides({ lrX: 1e-3, lrY: 0.1, mu: 1e-2, foOptimizer: 'adamw', rank: 4 }, 5e-4);
  t.same(o.optimizers, {
    hybrid: { zo: { lr: 1e-3, mu: 1e-2 }, fo: { lr: 0.1, optimizer: 'adamw' } },
    zo: { zo: { lr: 1e-3, mu: 1e-2 } },
    lora: { fo: { lr: 0.1, optimizer: 'adamw' } },
    full: { fo: { lr: 5e-4 } },
  });
  t.same(o.lora, { rank: 4 });
});

t.test('summaries of repeated runs: mean, sample sd, 95% t interval', async (t) => {
  // Published two-sided 95% quantiles of Student's t (any statistics table).
  for (const [dof, q] of [
    [1, 12.706],
    [2, 4.303],
    [4, 2.776],
    [9, 2.262],
    [29, 2.045],
  ] as const) {
    t.ok(Math.abs(tQuantile975(dof) - q) < 5e-4, `t(0.975, ${dof}) = ${tQuantile975(dof)} ≈ ${q}`);
  }
  const s = summarize([0.5, 0.7, 0.9]);
  // mean 0.7; deviations ±0.2, 0 → sd = sqrt(0.08 / 2) = 0.2; half width 4.303 · 0.2 / √3.
  t.ok(Math.abs(s.mean! - 0.7) < 1e-12 && Math.abs(s.sd! - 0.2) < 1e-12);
  const half = (4.302653 * 0.2) / Math.sqrt(3);
  t.ok(Math.abs(s.ci95![0] - (0.7 - half)) < 1e-5 && Math.abs(s.ci95![1] - (0.7 + half)) < 1e-5, `95% CI ${s.ci95}`);
  t.same([s.min, s.max, s.n], [0.5, 0.9, 3]);
  t.same(summarize([3]), { n: 1, mean: 3, sd: null, min: 3, max: 3, ci95: null }, 'one run: no spread, no interval');
  t.same(summarize([]), { n: 0, mean: null, sd: null, min: null, max: null, ci95: null });
});

const run1 = (mode: ModeResult['mode'], seed: number, finalAccuracy: number, stepsToTarget: number | null, accs: number[]): ModeResult => ({
  mode,
  seed,
  optimizer: { zo: { lr: 2e-4, mu: 1e-3 }, fo: { lr: 0.05, params: 'adapters' }, seed: seed + 1 },
  lora: { rank: 8, alpha: 16 },
  rows: accs.map((a, i) => ({ step: 2 * i, seconds: i, loss: null, lrX: null, lrY: null, devLoss: 1 - a, devAccuracy: a })),
  reason: 'completed',
  steps: 4,
  seconds: 2,
  wallSeconds: 3,
  secondsPerStep: 0.5,
  initialAccuracy: accs[0],
  finalAccuracy,
  bestAccuracy: Math.max(...accs),
  finalDevLoss: 1 - finalAccuracy,
  stepsToTarget,
  secondsToTarget: stepsToTarget,
  peakRssMiB: 100,
  loadedRssMiB: 90,
  rssReset: true,
  parameters: { base: 10, trainable: 12 },
});

t.test('compare --seeds: the summary table, the settings table, bands in the chart', async (t) => {
  const results = [run1('hybrid', 0, 0.8, 2, [0.5, 0.7, 0.8]), run1('hybrid', 1, 0.9, 4, [0.5, 0.6, 0.9]), run1('hybrid', 2, 0.7, null, [0.5, 0.6, 0.7])];
  const [m] = summarizeModes(results);
  t.equal(m.runs, 3);
  t.equal(m.reached, 2, 'two of three runs reached the target');
  t.same(m.stepsToTarget.n, 2, 'steps to target over the runs that reached it');
  t.ok(Math.abs(m.finalAccuracy.mean! - 0.8) < 1e-12 && Math.abs(m.finalAccuracy.sd! - 0.1) < 1e-12);
  const table = summaryTable([m]).split('\n');
  const halfAcc = (100 * 4.302653 * 0.1) / Math.sqrt(3),
    halfSteps = (12.706205 * Math.SQRT2) / Math.sqrt(2);
  t.equal(
    table[2],
    `| hybrid | 3 | 80.0% ± 10.0% | ${(80 - halfAcc).toFixed(1)}% – ${(80 + halfAcc).toFixed(1)}% | 3.0 ± 1.4 | ${(3 - halfSteps).toFixed(1)} – ${(3 + halfSteps).toFixed(1)} | 2/3 | 0.5000 | 100 |`,
  );
  const settings = settingsTable(results).split('\n');
  t.equal(settings[2], '| hybrid | 0, 1, 2 | 1, 2, 3 | 0.0002 | 0.001 | forward | 1 | 0 | 0.05 | sgd | adapters | 0 | 8 / 16 |', 'every rate and seed used');

  const svg = renderChart({
    title: 'x',
    panels: [
      {
        title: 'p',
        xLabel: 'x',
        yLabel: 'y',
        series: [
          {
            name: 'a',
            points: [
              [0, 1],
              [1, 2],
            ],
            band: [
              [0, 0, 2],
              [1, 1, 5],
            ],
          },
        ],
      },
    ],
  });
  const band = /<polygon class="band" data-series="a" points="([^"]+)"/.exec(svg);
  t.ok(band, 'a band is drawn');
  const pts = band![1].split(' ').map((p) => p.split(',').map(Number));
  t.equal(pts.length, 4, 'lower edge forward, upper edge back');
  t.ok(pts[0][0] === pts[3][0] && pts[1][0] === pts[2][0] && pts[0][1] > pts[3][1], 'same x at both edges; the lower edge lies below');
  t.match(svg, /<text [^>]*data-value="5">/, "the y axis reaches the band's top (5), above every line point");
  t.ok(svg.indexOf('class="band"') < svg.indexOf('<polyline'), 'drawn beneath the line');
});

t.test('zofo demo writes to a new temp folder by default, never into the working directory', async (t) => {
  const log = console.log;
  const out: string[] = [];
  console.log = (...a: unknown[]) => {
    out.push(a.join(' '));
  };
  let r: { stderr: string; exitCode: number };
  try {
    r = await run(['demo', '--steps', '1', '--modes', 'lora', '--lr-y', '0.01']);
  } finally {
    console.log = log;
  }
  t.equal(r.exitCode, 0, r.stderr);
  const chart = /^chart: (.*demo\.svg), data: (.*demo\.csv)$/m.exec(out.join('\n'));
  t.ok(chart, 'prints where the chart went');
  t.ok(chart![1].startsWith(join(tmpdir(), 'zofo-demo-')), `under the temp dir: ${chart![1]}`);
  t.ok(existsSync(chart![1]) && existsSync(chart![2]));
  t.match(out.join('\n'), /\| lora \| – \| 0\.01 \| [\d.]+% \| [\d.]+% \| 1 \|/, 'the table shows the rates used');
  t.teardown(() => rm(dirname(chart![1]), { recursive: true, force: true }));
});
