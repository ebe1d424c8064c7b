/**
 * An HTTP service that queues fine-tuning jobs and runs each in a worker thread, with
 * progress and cancellation over the wire. Node's own `http`; no framework.
 *
 *   node dist/examples/server.js [port] [out-dir] [model-dir]
 *
 * port 0 (the default) picks a free one; the first line printed is
 * `listening on http://127.0.0.1:<port>`. Jobs run one at a time, in order.
 *
 *   POST   /jobs        {"steps"?, "batchSize"?, "lrX"?, "lrY"?, "seed"?}  → 202 {"id", "state"}
 *   GET    /jobs        → every job
 *   GET    /jobs/<id>   → {"id", "state", "step", "steps", "loss", "evals", "accuracy", "adapter", "error"}
 *   DELETE /jobs/<id>   → cancels a queued or running job (a running one stops before its next update)
 *
 * state: queued → running → done | cancelled | failed.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { mkdir, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { JobMessage, JobSpec } from './job-worker.js';

type State = 'queued' | 'running' | 'done' | 'cancelled' | 'failed';

interface Job {
  id: string;
  state: State;
  spec: JobSpec;
  step: number;
  loss: number | null;
  evals: Array<{ step: number; loss: number; accuracy: number | null }>;
  accuracy: number | null;
  adapter: string | null;
  error: string | null;
  worker: Worker | null;
}

const port = Number(process.argv[2] || 0);
const outRoot = process.argv[3] || (await mkdtemp(join(tmpdir(), 'zofo-jobs-')));
const modelDir = process.argv[4] || fileURLToPath(new URL('demo/model/', import.meta.resolve('zofo/package.json')));

const jobs = new Map<string, Job>();
const queue: Job[] = [];
let running: Job | null = null;
let nextId = 1;

/** Starts the next queued job when none is running. */
function pump(): void {
  if (running) return;
  const job = queue.shift();
  if (!job) return;
  running = job;
  job.state = 'running';
  const worker = new Worker(new URL('./job-worker.js', import.meta.url), { workerData: job.spec });
  job.worker = worker;
  worker.on('message', (m: JobMessage) => {
    if (m.type === 'progress') [job.step, job.loss] = [m.step, m.loss];
    else if (m.type === 'eval') job.evals.push({ step: m.step, loss: m.loss, accuracy: m.accuracy });
    else if (m.type === 'done') {
      job.state = m.reason === 'aborted' ? 'cancelled' : m.reason === 'completed' ? 'done' : 'failed';
      [job.step, job.accuracy, job.adapter] = [m.step, m.accuracy, m.adapter];
      if (job.state === 'failed') job.error = `training stopped: ${m.reason}`;
    }
  });
  worker.on('error', (err) => {
    job.state = 'failed';
    job.error = err.message;
  });
  worker.on('exit', () => {
    if (job.state === 'running') [job.state, job.error] = ['failed', 'the worker exited without finishing'];
    job.worker = null;
    running = null;
    pump();
  });
}

/** A job's public view. */
const view = ({ worker: _worker, spec, ...rest }: Job) => ({ ...rest, steps: spec.steps });

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(`${JSON.stringify(body)}\n`);
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  let text = '';
  for await (const chunk of req) text += chunk;
  const value: unknown = text.trim() === '' ? {} : JSON.parse(text);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('the body must be a JSON object');
  return value as Record<string, unknown>;
}

/** A number option of a job: `fallback` when absent, else checked. */
function option(body: Record<string, unknown>, name: string, fallback: number, ok: (v: number) => boolean): number {
  const v = body[name] ?? fallback;
  if (typeof v !== 'number' || !ok(v)) throw new Error(`${name}: ${JSON.stringify(v)} is not allowed`);
  return v;
}

async function submit(req: IncomingMessage): Promise<Job> {
  const body = await readJson(req);
  const id = String(nextId++);
  const outDir = join(outRoot, `job-${id}`);
  const positiveInt = (v: number) => Number.isSafeInteger(v) && v > 0;
  const rate = (v: number) => Number.isFinite(v) && v >= 0;
  const spec: JobSpec = {
    modelDir,
    outDir,
    steps: option(body, 'steps', 200, positiveInt),
    batchSize: option(body, 'batchSize', 16, positiveInt),
    lrX: option(body, 'lrX', 2e-4, rate),
    lrY: option(body, 'lrY', 0.05, rate),
    seed: option(body, 'seed', 1, (v) => Number.isSafeInteger(v) && v >= 0),
  };
  await mkdir(outDir, { recursive: true });
  const job: Job = { id, state: 'queued', spec, step: 0, loss: null, evals: [], accuracy: null, adapter: null, error: null, worker: null };
  jobs.set(id, job);
  queue.push(job);
  pump();
  return job;
}

function cancel(job: Job): void {
  if (job.state === 'queued') {
    queue.splice(queue.indexOf(job), 1);
    job.state = 'cancelled';
  } else if (job.state === 'running') {
    job.worker?.postMessage('cancel'); // the worker's trainer stops; its 'done' says 'aborted'
  }
}

const server = createServer((req, res) => {
  const handle = async () => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    const m = /^\/jobs(?:\/([^/]+))?$/.exec(path);
    if (!m) return send(res, 404, { error: `no route ${path}` });
    if (!m[1]) {
      if (req.method === 'POST') {
        try {
          return send(res, 202, view(await submit(req)));
        } catch (err) {
          return send(res, 400, { error: (err as Error).message });
        }
      }
      if (req.method === 'GET') return send(res, 200, [...jobs.values()].map(view));
      return send(res, 405, { error: `${req.method} /jobs` });
    }
    const job = jobs.get(m[1]);
    if (!job) return send(res, 404, { error: `no job ${m[1]}` });
    if (req.method === 'GET') return send(res, 200, view(job));
    if (req.method === 'DELETE') {
      cancel(job);
      return send(res, 202, view(job));
    }
    return send(res, 405, { error: `${req.method} /jobs/${job.id}` });
  };
  handle().catch((err: Error) => send(res, 500, { error: err.message }));
});

server.listen(port, '127.0.0.1', () => {
  const address = server.address();
  console.log(`listening on http://127.0.0.1:${typeof address === 'object' && address ? address.port : port}`);
  console.log(`job outputs under ${outRoot}`);
});

// Ctrl-C / SIGTERM: cancel everything, let running workers stop, then close.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    for (const job of jobs.values()) cancel(job);
    server.close();
    setTimeout(() => process.exit(0), 2000).unref();
  });
}
