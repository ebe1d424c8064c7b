// The CLI never loses a user's data (1): resumed runs keep their earlier curves, an
// existing --out is refused without --resume / --overwrite, and stale temp folders of
// killed runs are removed on the next start (nobody else's). The CLI runs in process.
import t from 'tap';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadCheckpoint } from '../lib/train/checkpoint.js';
import { freshSeed } from './helpers/reference.js';
import { trainRun, zofo } from './helpers/cli-in-process.js';

const seed = freshSeed() % 1_000_000;
t.comment(`input seed ${seed}`);

const lastLine = (s: string) => s.trimEnd().split('\n').at(-1) ?? '';
const jsonl = async (file: string) =>
  (await readFile(file, 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, number | null>);

const setup = (root: string) => trainRun(root, seed);

t.test('resume keeps the earlier curves; a second train into --out needs --resume or --overwrite', async (t) => {
  const root = t.testdir({});
  const { out, common } = await setup(root);
  const first = await zofo(['train', ...common, '--steps', '4']);
  t.equal(first.status, 0, first.stderr);
  t.match(first.stdout, /curves\.jsonl/, 'the list of outputs names curves.jsonl');
  const before = await jsonl(join(out, 'curves.jsonl'));
  t.same(
    before.filter((r) => r.loss !== null).map((r) => r.step),
    [1, 2, 3, 4],
    'steps are numbered from 1',
  );

  const again = await zofo(['train', ...common, '--steps', '4']);
  t.equal(again.status, 2, 'a second run into the same --out is refused');
  t.match(lastLine(again.stderr), /--out .* is not empty .*--resume.*--overwrite.*\[ZOFO_INVALID_ARG\]$/);
  t.same(await jsonl(join(out, 'curves.jsonl')), before, 'and leaves the earlier run as it was');

  const more = await zofo(['train', ...common, '--steps', '6', '--resume']);
  t.equal(more.status, 0, more.stderr);
  const after = await jsonl(join(out, 'curves.jsonl'));
  t.same(
    after.filter((r) => r.loss !== null).map((r) => r.step),
    [1, 2, 3, 4, 5, 6],
    'the resumed curves hold every step',
  );
  t.same(after.slice(0, before.length), before, 'the earlier rows are kept as they were');
  t.same(
    after.filter((r) => r.devAccuracy !== null).map((r) => r.step),
    [2, 4, 6],
    'and the evaluations of both processes',
  );
  const csv = await readFile(join(out, 'curves.csv'), 'utf8');
  t.equal(csv.trim().split('\r\n').length, 1 + after.length, 'curves.csv has the same rows');

  const bytes = await readFile(join(out, 'curves.jsonl'), 'utf8');
  const idle = await zofo(['train', ...common, '--steps', '6', '--resume']);
  t.equal(idle.status, 0, idle.stderr);
  t.equal(await readFile(join(out, 'curves.jsonl'), 'utf8'), bytes, 'a resume with nothing left to do leaves the curves intact');

  const replaced = await zofo(['train', ...common, '--steps', '2', '--overwrite']);
  t.equal(replaced.status, 0, replaced.stderr);
  t.equal((await loadCheckpoint(join(out, 'checkpoints'))).trainer.step, 2, '--overwrite starts a new run');
  t.same(
    (await jsonl(join(out, 'curves.jsonl'))).filter((r) => r.loss !== null).map((r) => r.step),
    [1, 2],
    'with its own curves',
  );
  t.notOk(
    (await readdir(join(out, 'checkpoints'))).some((n) => n.startsWith('step-000006')),
    "the old run's checkpoints are gone",
  );
  const both = await zofo(['train', ...common, '--steps', '2', '--overwrite', '--resume']);
  t.equal(both.status, 2);
  t.match(lastLine(both.stderr), /--resume or --overwrite, not both/);
});

t.test("temp folders of killed runs are removed on the next start; nobody else's", async (t) => {
  const root = t.testdir({});
  const { out, common } = await setup(root);
  t.equal((await zofo(['train', ...common, '--steps', '2'])).status, 0);
  const ck = join(out, 'checkpoints');
  const deadPid = 4_194_305; // above Linux's largest pid_max: no such process
  const stale = [join(ck, `step-000004.tmp-${deadPid}-0123456789ab`), join(out, `adapter.tmp-${deadPid}-ba9876543210`)];
  const kept = [join(ck, `step-000004.tmp-${process.ppid}-0123456789ab`), join(ck, 'notes.tmp-1-x'), join(out, 'mine.tmp-12')];
  for (const d of [...stale, ...kept]) await mkdir(d, { recursive: true });
  const r = await zofo(['train', ...common, '--steps', '4', '--resume']);
  t.equal(r.status, 0, r.stderr);
  for (const d of stale) t.notOk(existsSync(d), `removed ${d.slice(root.length)}`);
  for (const d of kept) t.ok(existsSync(d), `kept ${d.slice(root.length)} (a live process's, or not zofo's name)`);

  // Killed before its first checkpoint: only a temp folder in checkpoints/; a new run may start there.
  const early = join(root, 'early');
  await mkdir(join(early, 'checkpoints', `step-000001.tmp-${deadPid}-0123456789ab`), { recursive: true });
  const fresh = await zofo(['train', ...common.map((a) => (a === out ? early : a)), '--steps', '1']);
  t.equal(fresh.status, 0, `a run left nothing to keep: the folder is free ${fresh.stderr.slice(-200)}`);
});
