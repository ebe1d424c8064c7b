// The zofo CLI end to end on a tiny random Llama with a word-level tokenizer:
// train → checkpoint → resume → eval → merge → loadModel, replay, config files, errors,
// and Ctrl-C (SIGINT) during training leaving a loadable checkpoint (a child process;
// the other commands run in this process through main()).
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { backendInfo } from '../lib/index.js';
import { loadModel } from '../lib/model/model.js';
import { loadCheckpoint } from '../lib/train/checkpoint.js';
import { readTrajectory } from '../lib/train/trajectory.js';
import { freshSeed } from './helpers/reference.js';
import { sst2Fixture } from './helpers/sst2-fixture.js';
import { zofo } from './helpers/cli-in-process.js';

const here = import.meta.dirname ?? new URL('.', import.meta.url).pathname;
const entry = join(here, 'helpers', 'cli-child.ts');
const seed = freshSeed() % 1_000_000;
t.comment(`input seed ${seed}`);

const fixture = (root: string) => sst2Fixture(root, seed);

t.test('train → resume → eval → merge → loadModel; replay', async (t) => {
  const root = t.testdir({});
  const f = await fixture(root);
  const out = join(root, 'out');
  const common = [
    '--model',
    f.model,
    '--task',
    'sst2',
    '--train',
    f.train,
    '--dev',
    f.dev,
    '--mode',
    'hybrid',
    '--batch-size',
    '4',
    '--lr-x',
    '1e-3',
    '--lr-y',
    '0.05',
    '--rank',
    '2',
    '--seed',
    '3',
    '--eval-every',
    '2',
    '--checkpoint-every',
    '2',
    '--out',
    out,
  ];
  const first = await zofo(['train', ...common, '--steps', '4']);
  t.equal(first.status, 0, `train exits 0 ${first.stderr}`);
  t.match(first.stdout, /completed after 4 steps; dev loss [\d.]+, accuracy [\d.]+%/);
  for (const f of ['adapter/adapter_config.json', 'adapter/adapter_model.safetensors', 'trajectory.zlog', 'curves.svg', 'curves.csv', 'checkpoints/latest']) {
    t.ok(existsSync(join(out, f)), `wrote ${f}`);
  }
  t.match(first.stderr, /step 4\/4 loss/, 'plain progress lines when not a TTY');
  t.match(first.stderr, /eval @ step 2: dev loss/);
  t.equal((await loadCheckpoint(join(out, 'checkpoints'))).trainer.step, 4);

  const more = await zofo(['train', ...common, '--steps', '6', '--resume']);
  t.equal(more.status, 0, `resumed train exits 0 ${more.stderr}`);
  t.match(more.stdout, /completed after 6 steps/);
  t.equal((await readTrajectory(join(out, 'trajectory.zlog'))).records.length, 6, 'the trajectory covers all 6 steps');

  const ev = await zofo([
    'eval',
    '--model',
    f.model,
    '--adapter',
    join(out, 'adapter'),
    '--log',
    join(out, 'trajectory.zlog'),
    '--task',
    'sst2',
    '--data',
    f.dev,
  ]);
  const sampled = await zofo(['eval', '--model', f.model, '--task', 'sst2', '--data', f.train, '--samples', '5', '--seed', '1']);
  t.match(sampled.stdout, /^5 examples:/, '--samples draws k examples');
  t.equal(ev.status, 0, ev.stderr);
  t.match(ev.stdout, /^8 examples: loss [\d.]+, accuracy [\d.]+%/);

  const merged = join(root, 'merged');
  const mg = await zofo(['merge', '--model', f.model, '--adapter', join(out, 'adapter'), '--log', join(out, 'trajectory.zlog'), '--out', merged]);
  t.equal(mg.status, 0, mg.stderr);
  const m = await loadModel(merged);
  t.teardown(() => m.dispose());
  t.ok(m.tokenizer, 'the merged directory carries the tokenizer');
  const evMerged = await zofo(['eval', '--model', merged, '--task', 'sst2', '--data', f.dev]);
  const num = (s: string) => Number(/loss ([\d.]+)/.exec(s)?.[1]);
  t.ok(Math.abs(num(evMerged.stdout) - num(ev.stdout)) < 1e-3, `merged model's loss ${num(evMerged.stdout)} = base + log + adapter's ${num(ev.stdout)}`);

  const rp = await zofo(['replay', '--base', f.model, '--log', join(out, 'trajectory.zlog'), '--out', join(root, 'replayed')]);
  t.equal(rp.status, 0, rp.stderr);
  const replayed = await loadModel(join(root, 'replayed'));
  t.teardown(() => replayed.dispose());
  t.not(await replayed.baseHash(), await (await loadModel(f.model)).baseHash(), 'the replayed base differs from the base');
});

t.test('a JSON config supplies the options; flags override it; errors name the problem', async (t) => {
  const root = t.testdir({});
  const f = await fixture(root);
  const cfg = join(root, 'run.json');
  await writeFile(
    cfg,
    JSON.stringify({ model: f.model, task: 'sst2', train: f.train, mode: 'zo', steps: 50, batchSize: 4, zo: { lr: 1e-3, mu: 1e-3 }, out: join(root, 'out') }),
  );
  const r = await zofo(['train', '--config', cfg, '--steps', '2']);
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /completed after 2 steps/, '--steps overrides the file');
  t.notOk(existsSync(join(root, 'out', 'adapter')), 'ZO-only writes no adapter');

  const missing = await zofo(['train', '--task', 'sst2', '--train', f.train, '--out', join(root, 'x')]);
  t.equal(missing.status, 2, 'a missing option is a usage error: exit code 2');
  t.match(missing.stderr, /--model is required/);
  const badMode = await zofo(['train', '--config', cfg, '--mode', 'sideways']);
  t.equal(badMode.status, 2);
  t.match(badMode.stderr, /sideways/);
  await writeFile(join(root, 'bad.tsv'), 'sentence\tlabel\nw1 w2\t7\n');
  const badRow = await zofo(['eval', '--model', f.model, '--task', 'sst2', '--data', join(root, 'bad.tsv')]);
  t.equal(badRow.status, 1);
  t.match(badRow.stderr, /bad\.tsv:2: .*label/, 'a bad row names the file and line');
  const help = await zofo(['train', '--help']);
  t.match(help.stdout, /--lr-x <lr>/);
  t.match(help.stdout, /--device <device>/);
  if (!backendInfo().cuda.available) {
    const noGpu = await zofo(['eval', '--model', f.model, '--device', 'cuda', '--task', 'sst2', '--data', f.dev]);
    t.equal(noGpu.status, 1);
    t.match(noGpu.stderr, /device 'cuda' needs the CUDA addon/, '--device cuda without a GPU says why');
    const auto = await zofo(['eval', '--model', f.model, '--device', 'auto', '--task', 'sst2', '--data', f.dev]);
    t.equal(auto.status, 0, `--device auto falls back to the CPU ${auto.stderr}`);
  }
});

t.test('Ctrl-C (SIGINT) during training stops cleanly with a loadable checkpoint', async (t) => {
  const root = t.testdir({});
  const f = await fixture(root);
  const out = join(root, 'out');
  const p = spawn(
    process.execPath,
    [
      ...process.execArgv,
      entry,
      'train',
      '--model',
      f.model,
      '--task',
      'sst2',
      '--train',
      f.train,
      '--mode',
      'hybrid',
      '--steps',
      '100000',
      '--batch-size',
      '4',
      '--lr-x',
      '1e-4',
      '--lr-y',
      '0.01',
      '--out',
      out,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let err = '',
    out1 = '';
  p.stdout.on('data', (d: Buffer) => {
    out1 += d.toString();
  });
  const code = await new Promise<number | null>((resolve) => {
    p.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      if (/step \d+\/100000/.test(err) && !p.killed) p.kill('SIGINT');
    });
    p.on('close', (c) => resolve(c));
  });
  t.equal(code, 130, `exit code 130 after Ctrl-C ${err.slice(-300)}`);
  t.match(err, /stopping: finishing or rolling back the current step/);
  t.match(out1, /aborted after \d+ steps/);
  const ckpt = await loadCheckpoint(join(out, 'checkpoints'));
  t.ok(ckpt.trainer.step >= 1, `checkpoint at step ${ckpt.trainer.step}`);
  t.ok(existsSync(join(out, 'adapter', 'adapter_model.safetensors')), 'adapter written');
  const cfg = JSON.parse(await readFile(join(out, 'adapter', 'adapter_config.json'), 'utf8'));
  t.equal(cfg.r, 8);
});

t.test('zofo smoothness estimates L_x, L_y on the demo model and judges the given rates', async (t) => {
  const r = await zofo(['smoothness', '--batches', '2', '--iterations', '8', '--directions', '4', '--lr-x', '1e-9', '--lr-y', '5']);
  t.equal(r.status, 0, r.stderr);
  const ly = Number(/\| L_y \| ([\d.e+-]+) \|/.exec(r.stdout)?.[1]);
  t.ok(ly > 0 && Number.isFinite(ly), `L_y = ${ly}`);
  t.match(r.stdout, /\| L_x \| [\d.e+-]+ \|/, 'L_x by the full backward (a small model)');
  t.match(r.stdout, /max vᵀ∇²ₓf v/);
  t.match(r.stdout, new RegExp(`your lr_y 5: ${5 > 2 / ly ? 'above 2/L: expected to diverge' : 'above 1/L'}`));
  t.match(r.stdout, /your lr_x 1e-9: (within the admissible range|conservative)/);
});
