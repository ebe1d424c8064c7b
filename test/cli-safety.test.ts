// The CLI never loses a user's data (2): an adapter trained with ZO updates is refused
// without their log (or with another run's), merge never replaces --out silently, and a
// closed stdout/stderr pipe does not end a run.
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { evalCommand, mergeCommand } from '../lib/cli/commands.js';
import { loadCheckpoint } from '../lib/train/checkpoint.js';
import { freshSeed } from './helpers/reference.js';
import { trainRun, zofo } from './helpers/cli-in-process.js';

const here = import.meta.dirname ?? new URL('.', import.meta.url).pathname;
const entry = join(here, 'helpers', 'cli-child.ts');
const seed = freshSeed() % 1_000_000;
t.comment(`input seed ${seed}`);

const setup = (root: string) => trainRun(root, seed);

t.test('eval / merge of a hybrid adapter need its trajectory; merge --out is never replaced silently', async (t) => {
  const root = t.testdir({});
  const { f, out, common } = await setup(root);
  t.equal((await zofo(['train', ...common, '--steps', '2'])).status, 0);
  const adapter = join(out, 'adapter');
  t.ok(existsSync(join(adapter, 'zofo-run.json')), "the adapter records its run's ZO steps");
  const log = join(out, 'trajectory.zlog');

  await t.rejects(
    evalCommand({ model: f.model, adapter, task: 'sst2', data: f.dev }),
    { code: 'ZOFO_INVALID_ARG', message: /trained together with 2 ZO steps.*--log .*trajectory\.zlog$/ },
    'eval without the log is refused',
  );
  const ckptAdapter = join(out, 'checkpoints', 'step-000002', 'adapter');
  await t.rejects(
    evalCommand({ model: f.model, adapter: ckptAdapter, task: 'sst2', data: f.dev }),
    { code: 'ZOFO_INVALID_ARG', message: /step-000002.*trajectory\.zlog/ },
    'an adapter inside a checkpoint is recognised too',
  );
  await t.rejects(mergeCommand({ model: f.model, adapter, out: join(root, 'm0') }), { code: 'ZOFO_INVALID_ARG', message: /--log/ }, 'merge too');
  t.notOk(existsSync(join(root, 'm0')), 'nothing written');
  const other = join(root, 'other');
  t.equal((await zofo(['train', ...common.map((a) => (a === out ? other : a)), '--steps', '1'])).status, 0);
  await t.rejects(
    evalCommand({ model: f.model, adapter, log: join(other, 'trajectory.zlog'), task: 'sst2', data: f.dev }),
    { code: 'ZOFO_INVALID_ARG', message: /2 ZO steps, but .* holds 1/ },
    'a log of another length is refused',
  );
  // A damaged run marker is a clean error naming it, never a TypeError.
  const markerFile = join(adapter, 'zofo-run.json');
  const kept = await readFile(markerFile, 'utf8');
  for (const bad of ['null', '[1]', `{"zoSteps": ${'['.repeat(5000)}${']'.repeat(5000)}}`]) {
    await writeFile(markerFile, bad);
    await t.rejects(
      evalCommand({ model: f.model, adapter, log, task: 'sst2', data: f.dev }),
      { code: 'ZOFO_BAD_FILE', message: /zofo-run\.json: / },
      `a marker of ${bad.slice(0, 12)}`,
    );
  }
  await writeFile(markerFile, kept);

  const merged = join(root, 'merged');
  const first = await zofo(['merge', '--model', f.model, '--adapter', adapter, '--log', log, '--out', merged]);
  t.equal(first.status, 0, first.stderr);
  const marker = join(merged, 'user-note.txt');
  await writeFile(marker, 'mine');
  await t.rejects(
    mergeCommand({ model: f.model, adapter, log, out: merged }),
    { code: 'ZOFO_INVALID_ARG', message: /already exists.*--overwrite/ },
    'an existing --out is refused',
  );
  t.ok(existsSync(marker), 'and left alone');
  const over = await zofo(['merge', '--model', f.model, '--adapter', adapter, '--log', log, '--out', merged, '--overwrite']);
  t.equal(over.status, 0, over.stderr);
  t.notOk(existsSync(marker), '--overwrite replaces the folder as a whole');
  t.ok(existsSync(join(merged, 'config.json')));
  t.same(
    (await readdir(root)).filter((n) => n.includes('.tmp-')),
    [],
    'no temp folder is left beside it',
  );
});

t.test('a closed stdout and stderr do not end training', async (t) => {
  const root = t.testdir({});
  const { f, out } = await setup(root);
  const args = [
    'train',
    '--model',
    f.model,
    '--task',
    'sst2',
    '--train',
    f.train,
    '--dev',
    f.dev,
    '--batch-size',
    '4',
    '--lr-x',
    '1e-3',
    '--lr-y',
    '0.05',
    '--rank',
    '2',
    '--eval-every',
    '1',
    '--checkpoint-every',
    '3',
    '--steps',
    '12',
    '--out',
    out,
  ];
  const p = spawn(process.execPath, [...process.execArgv, entry, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  // Like `zofo train … | head -1`: read the first output, then close both pipes.
  await new Promise<void>((resolve) => p.stderr.once('data', () => resolve()));
  p.stdout.destroy();
  p.stderr.destroy();
  const code = await new Promise<number | null>((resolve) => p.on('close', (c) => resolve(c)));
  t.equal(code, 0, 'the run completes');
  t.equal((await loadCheckpoint(join(out, 'checkpoints'))).trainer.step, 12, 'with its final checkpoint');
  t.ok(existsSync(join(out, 'curves.jsonl')) && existsSync(join(out, 'adapter', 'adapter_model.safetensors')), 'and its files');
});
