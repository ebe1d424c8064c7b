// Kill-and-resume soak: `zofo train` (bin/zofo.js) on the demo model and a demo task with
// a checkpoint every step is killed with SIGKILL at random moments before its end (held
// there if the kill is late), resumed each time with --resume, and run to the end; the
// final adapter, trajectory log and last checkpoint must equal an uninterrupted run's
// byte for byte. (curves.* hold wall-clock seconds, so they are not compared.) Bounded:
// a few dozen steps of a tiny model.
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { demoModelDir } from '../lib/demo/model.js';
import { demoTaskReviews } from '../lib/demo/model.js';
import { loadCheckpoint } from '../lib/train/checkpoint.js';
import { freshSeed } from './helpers/reference.js';
import { seededRandom } from './helpers/tiny-checkpoints.js';

const seed = freshSeed() % 1_000_000;
t.comment(`input seed ${seed}`);

const here = import.meta.dirname ?? new URL('.', import.meta.url).pathname;
const bin = join(here, '..', 'bin', 'zofo.js');
const STEPS = 40,
  KILLS = 6;

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  /** Ended by the kill this test sent (not by the hang deadline, not by itself). */
  killed: boolean;
}

/**
 * Runs `zofo train`. With `kill`, SIGKILLs it `afterMs` after its first progress line;
 * the child (test/helpers/hold-at-step.mjs) holds once it has printed the line of step
 * `holdAt` or later, so the kill lands by then at the latest and never after the run.
 */
function train(args: string[], kill?: { afterMs: number; holdAt: number }): Promise<Run> {
  return new Promise((resolve, reject) => {
    const hold = kill ? ['--import', pathToFileURL(join(here, 'helpers', 'hold-at-step.mjs')).href] : [];
    const p = spawn(process.execPath, [...hold, bin, 'train', ...args], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: kill ? { ...process.env, HOLD_AT_STEP: String(kill.holdAt) } : process.env,
    });
    let stderr = '',
      armed = false,
      sent = false;
    const deadline = setTimeout(() => p.kill('SIGKILL'), 60_000); // a hung run fails the test, it does not hang it
    p.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (kill && !armed && /step \d+\/\d+/.test(stderr)) {
        armed = true;
        setTimeout(() => {
          sent = true;
          p.kill('SIGKILL');
        }, kill.afterMs);
      }
    });
    p.on('error', reject);
    p.on('close', (code, signal) => {
      clearTimeout(deadline);
      resolve({ code, signal, stderr, killed: sent && signal === 'SIGKILL' });
    });
  });
}

t.test(`SIGKILL ×${KILLS} during zofo train, resumed each time: the result equals an uninterrupted run byte for byte`, { timeout: 240_000 }, async (t) => {
  if (!existsSync(join(here, '..', 'dist', 'lib', 'cli', 'main.js'))) {
    t.fail('dist/ is not built: run `npm run build:ts` (npm install does) before this test');
    return;
  }
  const root = t.testdir({});
  const { train: reviews } = demoTaskReviews({ train: 64, dev: 0, seed: 1 });
  const data = join(root, 'train.tsv');
  await writeFile(data, ['sentence\tlabel', ...reviews.map((r) => `${r.text}\t${r.label}`)].join('\n') + '\n');
  const common = (out: string) => [
    '--model',
    demoModelDir(),
    '--task',
    'sst2',
    '--train',
    data,
    '--mode',
    'hybrid',
    '--steps',
    String(STEPS),
    '--batch-size',
    '4',
    '--lr-x',
    '2e-4',
    '--lr-y',
    '0.01',
    '--fo-optimizer',
    'adamw',
    '--rank',
    '2',
    '--perturbations',
    '2',
    '--seed',
    '7',
    '--checkpoint-every',
    '1',
    '--keep',
    '2',
    '--out',
    out,
  ];

  const ref = join(root, 'ref');
  const whole = await train(common(ref));
  t.equal(whole.code, 0, whole.code === 0 ? 'the uninterrupted run exits 0' : whole.stderr.slice(-600));

  const soak = join(root, 'soak');
  const r = seededRandom(seed);
  let killed = 0;
  const resumedFrom: number[] = [];
  for (let i = 0; i < KILLS; i++) {
    const resume = existsSync(join(soak, 'checkpoints', 'latest'));
    const from = resume ? (await loadCheckpoint(join(soak, 'checkpoints'))).trainer.step : 0;
    if (resume) resumedFrom.push(from);
    // Killed a random 0–1.2 s into the run, or at a random step of what is left (the
    // last step's line is always printed, and held before its checkpoint is written).
    const kill = { afterMs: Math.floor(r.uniform() * 1200), holdAt: from + 1 + Math.floor(r.uniform() * (STEPS - from)) };
    const run = await train([...common(soak), ...(resume ? ['--resume'] : [])], kill);
    if (!run.killed) {
      t.fail(`run ${i} ended ${run.code}/${run.signal} without the kill: ${run.stderr.slice(-600)}`);
      break;
    }
    killed++;
  }
  const last = await train([...common(soak), '--resume']);
  t.equal(last.code, 0, last.code === 0 ? 'the final resume exits 0' : last.stderr.slice(-600));
  t.comment(`${killed} runs killed; resumed from steps ${resumedFrom.join(', ') || '(none)'}`);
  t.equal(killed, KILLS, 'every run but the last was killed mid-training');

  for (const f of [
    'adapter/adapter_model.safetensors',
    'adapter/adapter_config.json',
    'trajectory.zlog',
    `checkpoints/step-${String(STEPS).padStart(6, '0')}/optimizer.safetensors`,
    `checkpoints/step-${String(STEPS).padStart(6, '0')}/trajectory.zlog`,
  ]) {
    const a = await readFile(join(ref, f)),
      b = await readFile(join(soak, f));
    t.ok(a.equals(b), `${f} is byte-identical (${a.length} bytes)`);
  }
  const ck = await loadCheckpoint(join(soak, 'checkpoints'));
  t.equal(ck.trainer.step, STEPS, 'the last checkpoint is at the final step');
});
