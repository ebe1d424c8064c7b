// The programs in examples/ run as a user would run them: compiled with their own
// tsconfig against the built package (`import ... from 'zofo'` through package.json
// "exports"), then started with node on the shipped demo model. Each is checked by what
// it leaves behind or answers, not by its timings.
import t, { type Test } from 'tap';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { openSafetensors, readTrajectory } from '../lib/index.js';

const root = join(import.meta.dirname, '..');
const built = (name: string) => join(root, 'dist', 'examples', `${name}.js`);

t.before(() => {
  execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'examples', 'tsconfig.json')], { stdio: 'inherit' });
});

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'zofo-example-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Runs an example to completion; its stdout's last line is its JSON summary. */
function runToEnd(name: string, args: string[]): { stdout: string; summary: Record<string, unknown> } {
  const stdout = execFileSync(process.execPath, [built(name), ...args], { cwd: root, encoding: 'utf8', timeout: 120_000 });
  const lines = stdout.trim().split('\n');
  return { stdout, summary: JSON.parse(lines[lines.length - 1]) as Record<string, unknown> };
}

t.test('finetune: text task → tokens → hybrid training → evaluation → a PEFT adapter', async (t) => {
  const out = tempDir(t);
  const steps = 120;
  const { stdout, summary } = runToEnd('finetune', ['', out, String(steps)]);
  t.match(stdout, /task: 230 train \/ 58 dev examples/, 'the text task was tokenised');
  const before = summary.before as { loss: number },
    after = summary.after as { loss: number };
  t.ok(after.loss < 0.9 * before.loss, `dev loss fell by more than 10%: ${before.loss.toFixed(4)} → ${after.loss.toFixed(4)}`);
  const adapter = join(out, 'adapter');
  const config = JSON.parse(readFileSync(join(adapter, 'adapter_config.json'), 'utf8')) as { r: number; lora_alpha: number; peft_type: string };
  t.same([config.peft_type, config.r, config.lora_alpha], ['LORA', 8, 16], 'adapter_config.json');
  const st = await openSafetensors(join(adapter, 'adapter_model.safetensors'));
  try {
    const names = [...st.tensors.keys()];
    t.ok(names.length > 0 && names.every((n) => /\.lora_[AB]\.weight$/.test(n)), `${names.length} PEFT LoRA tensors`);
  } finally {
    st.close();
  }
  const log = await readTrajectory(join(out, 'zo.zlog'));
  t.equal(log.records.length, steps, 'one trajectory record per step (q = 1)');
  t.equal(log.tornTail, false);
});

/** Starts the server example on a free port; resolves with its base URL. */
async function startServer(t: Test, out: string): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [built('server'), '0', out], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const lines = createInterface({ input: child.stdout! });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the server printed no address in 30 s')), 30_000);
    lines.on('line', (line) => {
      const m = /^listening on (http:\/\/127\.0\.0\.1:\d+)$/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on('exit', (code) => reject(new Error(`the server exited with ${code}`)));
  });
  return { url, child };
}

interface JobView {
  id: string;
  state: string;
  step: number;
  steps: number;
  evals: unknown[];
  accuracy: number | null;
  adapter: string | null;
  error: string | null;
}

async function call(url: string, method: string, body?: unknown): Promise<{ status: number; json: unknown }> {
  const res = await fetch(url, { method, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: res.status, json: await res.json() };
}

/** Polls a job until `done(job)`, at most `seconds`. */
async function waitFor(url: string, id: string, done: (j: JobView) => boolean, seconds: number): Promise<JobView> {
  const end = Date.now() + seconds * 1000;
  for (;;) {
    const job = (await call(`${url}/jobs/${id}`, 'GET')).json as JobView;
    if (done(job) || Date.now() > end) return job;
    await new Promise((r) => setTimeout(r, 100));
  }
}

t.test('server: queued jobs in worker threads, progress and cancel over HTTP', async (t) => {
  const out = tempDir(t);
  const { url, child } = await startServer(t, out);

  const long = await call(`${url}/jobs`, 'POST', { steps: 1_000_000 });
  const short = await call(`${url}/jobs`, 'POST', { steps: 30, seed: 3 });
  t.equal(long.status, 202);
  t.equal(short.status, 202);
  const [a, b] = [long.json as JobView, short.json as JobView];
  t.equal(b.state, 'queued', 'one job runs at a time: the second waits');

  const bad = await call(`${url}/jobs`, 'POST', { steps: -1 });
  t.equal(bad.status, 400, 'a bad option is refused');
  t.match((bad.json as { error: string }).error, /steps/, 'naming the option');
  t.equal((await call(`${url}/jobs/999`, 'GET')).status, 404, 'an unknown job is 404');

  const progressing = await waitFor(url, a.id, (j) => j.step >= 3, 60);
  t.ok(progressing.step >= 3 && progressing.state === 'running', `progress over the wire: job ${a.id} at step ${progressing.step}`);

  t.equal((await call(`${url}/jobs/${a.id}`, 'DELETE')).status, 202, 'cancel accepted');
  const cancelled = await waitFor(url, a.id, (j) => j.state !== 'running', 60);
  t.equal(cancelled.state, 'cancelled', `the long job stopped at step ${cancelled.step}`);
  t.ok(cancelled.step < 1_000_000);
  t.equal(cancelled.adapter, null, 'a cancelled job saves nothing');

  const finished = await waitFor(url, b.id, (j) => j.state !== 'queued' && j.state !== 'running', 90);
  t.equal(finished.state, 'done', `the queued job ran after the cancel and completed (error: ${finished.error})`);
  t.equal(finished.step, 30);
  t.ok(finished.evals.length > 0 && typeof finished.accuracy === 'number', 'its evaluations came over the wire');
  t.ok(finished.adapter && existsSync(join(finished.adapter, 'adapter_model.safetensors')), 'its adapter was saved');

  const list = (await call(`${url}/jobs`, 'GET')).json as JobView[];
  t.same(
    list.map((j) => [j.id, j.state]),
    [
      [a.id, 'cancelled'],
      [b.id, 'done'],
    ],
    'GET /jobs lists both',
  );

  child.kill('SIGTERM');
  const code = await new Promise((resolve) => child.on('exit', resolve));
  t.equal(code, 0, 'the server shuts down cleanly on SIGTERM');
});

t.test('kernel-bench: the perturbation kernels alone', async (t) => {
  const { stdout, summary } = runToEnd('kernel-bench', ['65536', '2', '1']);
  t.match(stdout, /65536 elements, median of 2 runs/);
  const rows = summary.rows as Array<{ op: string; ms: number; ratioToCopy: number }>;
  t.same(
    rows.map((r) => r.op),
    ['copy (reference)', 'gaussian → new array', 'perturb f32 (fused)', 'perturb bf16 (fused)', 'restoreUpdate f32 (fused)', 'materialise z + axpy (unfused)'],
    'every pass was measured',
  );
  t.ok(
    rows.every((r) => Number.isFinite(r.ms) && r.ms >= 0),
    'each has a time',
  );
});
