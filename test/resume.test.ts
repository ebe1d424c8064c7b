// Kill and resume with the real optimizer and trainer: a training process is killed
// with SIGKILL mid-run (possibly inside a checkpoint write), and the run resumed from
// what it left on disk must equal an uninterrupted run bit for bit (losses, projected
// gradients, base weights by hash, adapters).
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { loadModel } from '../lib/model/model.js';
import { loadCheckpoint } from '../lib/train/checkpoint.js';
import { HybridOptimizer } from '../lib/train/optimizer.js';
import { Trainer } from '../lib/train/trainer.js';
import { syntheticTask } from './helpers/synthetic-task.js';
import { freshSeed } from './helpers/reference.js';
import { randomCheckpoint, writeCheckpointDir } from './helpers/tiny-checkpoints.js';

const child = join(import.meta.dirname ?? new URL('.', import.meta.url).pathname, 'helpers', 'train-child.ts');
const STEPS = 10;
const seed = freshSeed() % 1_000_000;
t.comment(`input seed ${seed}`);

type Line = { type: string; step?: number; loss?: number; projectedGrads?: number[]; base?: string; adapters?: string };
// Complete lines only: a chunk read while the child writes may end mid-line.
const parse = (out: string): Line[] =>
  out
    .slice(0, out.lastIndexOf('\n') + 1)
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Line);

function runToEnd(args: string[]): Line[] {
  const r = spawnSync(process.execPath, [...process.execArgv, child, ...args], { encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) throw new Error(`train-child exited ${r.status}: ${r.stderr}`);
  return parse(r.stdout);
}

// Starts a run and SIGKILLs it once it has printed `killAfter` step lines. The child
// holds after step killAfter + 1 until killed, so the kill lands in the checkpoint write
// after step killAfter, in step killAfter + 1, or at the hold: never after the run ended.
function runAndKill(args: string[], killAfter: number): Promise<Line[]> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [...process.execArgv, child, ...args, `hold=${killAfter + 1}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '',
      err = '',
      killed = false;
    const deadline = setTimeout(() => p.kill('SIGKILL'), 120_000); // a hung child fails the test, it does not hang it
    p.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (!killed && parse(out).filter((l) => l.type === 'step').length >= killAfter) {
        killed = true;
        p.kill('SIGKILL');
      }
    });
    p.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    p.on('error', reject);
    p.on('close', (code, signal) => {
      clearTimeout(deadline);
      if (killed && signal === 'SIGKILL') resolve(parse(out));
      else reject(new Error(`child ended ${code}/${signal} ${killed ? 'after' : 'before'} the kill: ${err}`));
    });
  });
}

t.test('a run killed with SIGKILL and resumed equals an uninterrupted run', async (t) => {
  const root = t.testdir({});
  const modelDir = join(root, 'model');
  await writeCheckpointDir(modelDir, randomCheckpoint('llama', seed), { dtype: 'F32' });
  const full = runToEnd([modelDir, join(root, 'full'), String(STEPS)]);
  const fullSteps = full.filter((l) => l.type === 'step');
  t.equal(fullSteps.length, STEPS, 'the uninterrupted run took every step');

  const ckpt = join(root, 'killed');
  const before = await runAndKill([modelDir, ckpt, String(STEPS)], 5);
  const killedAt = before.filter((l) => l.type === 'step').length;
  t.ok(killedAt >= 5 && killedAt < STEPS, `killed after step ${killedAt} of ${STEPS}`);
  const saved = await loadCheckpoint(ckpt); // the last committed checkpoint survives the kill
  t.ok(saved.trainer.step >= 4 && saved.trainer.step <= killedAt, `latest committed checkpoint: step ${saved.trainer.step}`);

  const after = runToEnd([modelDir, ckpt, String(STEPS), 'resume']);
  const resumedSteps = after.filter((l) => l.type === 'step');
  t.equal(resumedSteps[0]?.step, saved.trainer.step + 1, 'resumes at the step after the checkpoint');
  t.same(resumedSteps, fullSteps.slice(saved.trainer.step), 'losses and projected gradients equal the uninterrupted run');
  const a = full.find((l) => l.type === 'final')!,
    b = after.find((l) => l.type === 'final')!;
  t.equal(b.base, a.base, 'base weights (replayed from the trajectory, then trained on) hash equal');
  t.equal(b.adapters, a.adapters, 'adapters bit-identical');
});

t.test('full fine-tuning resumes from the base saved whole in its checkpoint (no seed log exists)', async (t) => {
  const root = t.testdir({});
  const modelDir = join(root, 'model');
  await writeCheckpointDir(modelDir, randomCheckpoint('opt', seed + 1), { dtype: 'F32' });
  const { train } = syntheticTask(48, 12, 1, seed);
  const run = async (ckptDir: string, stopAt: number | null, resume: boolean) => {
    const model = await loadModel(modelDir);
    const opt = new HybridOptimizer(model, { fo: { lr: 0.05, params: 'all', optimizer: 'momentum' } });
    const ac = new AbortController();
    const trainer = new Trainer(model, opt, { batchSize: 4, steps: 6, seed: 2, checkpoint: { dir: ckptDir }, signal: ac.signal });
    const losses: number[] = [];
    let reason = '';
    for await (const ev of trainer.fit(train, resume ? { resumeFrom: ckptDir } : {})) {
      if (ev.type === 'step') {
        losses.push(ev.loss);
        if (ev.step === stopAt) ac.abort();
      }
      if (ev.type === 'done') reason = ev.reason;
    }
    const weights = await Promise.all(model.parameterNames().map((n) => model.tensor(n)));
    model.dispose();
    return { losses, reason, weights };
  };
  const full = await run(join(root, 'a'), null, false);
  const first = await run(join(root, 'b'), 3, false);
  t.equal(first.reason, 'aborted');
  t.ok((await loadCheckpoint(join(root, 'b'))).baseDir, 'the checkpoint holds the base weights whole');
  const rest = await run(join(root, 'b'), null, true);
  t.same([...first.losses, ...rest.losses], full.losses, 'losses equal the uninterrupted run');
  t.ok(
    rest.weights.every((w, i) => Buffer.compare(Buffer.from(w.buffer), Buffer.from(full.weights[i].buffer)) === 0),
    'base weights bit-identical',
  );
});
