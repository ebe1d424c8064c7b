// worker.terminate() while zofo native work is in flight (a step, perturbAsync, loadModel,
// logits, a safetensors read, ...) or while the addon is still loading must never take
// the process down: native completions into a closing environment are dropped. The
// worker threads run in a child process, so an abort there fails this test instead of
// killing tap.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { freshSeed } from './helpers/reference.js';

const root = join(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '..');
const dist = join(root, 'dist/lib/index.js');

t.test(
  'terminating workers at random moments across every async entry point leaves their parent alive',
  { skip: !existsSync(dist) && 'dist/ not built (npm run build:ts)' },
  async (t) => {
    const rounds = 30; // two workers per round, each terminated at a random moment
    const seed = freshSeed() % 1_000_000;
    t.comment(`input seed ${seed}`);
    const child = spawnSync(
      process.execPath,
      [join(root, 'test/helpers/terminate-child.mjs'), pathToFileURL(dist).href, join(root, 'demo/model'), String(rounds), String(seed)],
      {
        encoding: 'utf8',
        timeout: 240_000,
      },
    );
    t.equal(child.signal, null, `the child was not killed by a signal (stderr: ${child.stderr.slice(-2000)})`);
    t.equal(child.status, 0, `the child exited normally (stderr: ${child.stderr.slice(-2000)})`);
    t.match(child.stdout, new RegExp(`survived ${2 * rounds}`), 'every worker was started and terminated');
  },
);
