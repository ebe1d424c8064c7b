// Files that are not what they claim: a pathological safetensors header (deep nesting,
// millions of tiny values, a large legal header) is refused or parsed without blocking
// the event loop; a FIFO, a device or a directory in place of any file of a model
// directory is refused at once, naming the path, instead of hanging loadModel.
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import diagnostics from 'node:diagnostics_channel';
import { copyFile, mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { loadModel, loadTask, openSafetensors } from '../lib/index.js';
import { entry, fileBytes } from './helpers/safetensors-bytes.js';

const root = join(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '..');
const demo = join(root, 'demo/model');

/** Rejects with a clear failure instead of hanging the suite when `p` never settles. */
function settlesWithin<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} hung for ${ms} ms`)), ms);
  });
  return Promise.race([p, hung]).finally(() => clearTimeout(timer));
}

/**
 * Runs `load` and watches the main thread: did the event loop take a turn (a setImmediate
 * chain) while the load was pending and a worker thread it started was alive? The header
 * parser's thread needs whole loop turns to start and to answer, so a parse off the main
 * thread always shows one; a parse on it (no worker) or a main thread blocked waiting for
 * the worker shows none. Timing plays no part.
 */
async function turnWhileWorkerRuns<T>(load: () => Promise<T>): Promise<{ turned: boolean; workers: number; result: PromiseSettledResult<T> }> {
  const live = new Set<Worker>();
  let workers = 0,
    turned = false,
    pending = true;
  const onWorker = (message: unknown) => {
    const { worker } = message as { worker: Worker };
    workers++;
    live.add(worker);
    worker.once('exit', () => live.delete(worker));
  };
  const turn = () => {
    if (live.size > 0) turned = true;
    if (pending && !turned) setImmediate(turn); // stops once seen: no busy loop for the rest of the load
  };
  diagnostics.subscribe('worker_threads', onWorker);
  setImmediate(turn);
  try {
    const [result] = await Promise.allSettled([load()]);
    return { turned, workers, result };
  } finally {
    pending = false;
    diagnostics.unsubscribe('worker_threads', onWorker);
  }
}

t.test('deeply nested JSON in a legal-size header is refused cheaply, off the main thread', async (t) => {
  const dir = t.testdir({});
  const file = join(dir, 'deep.safetensors');
  const depth = 5_000_000; // 10 MB: under the 100 MB header limit, over the inline-parse size
  await writeFile(file, fileBytes('['.repeat(depth) + ']'.repeat(depth)));
  const before = process.memoryUsage().rss;
  const { turned, workers, result } = await turnWhileWorkerRuns(() => openSafetensors(file));
  t.equal(result.status, 'rejected');
  t.match((result as PromiseRejectedResult).reason, { code: 'ZOFO_BAD_FILE', message: /deep\.safetensors.*nests deeper than 64 levels/ });
  t.equal(workers, 1, 'the header was checked in a worker thread');
  t.ok(turned, 'the event loop kept turning while the header was checked');
  t.ok(process.memoryUsage().rss - before < 512 * 2 ** 20, 'no memory blow-up');
});

t.test('millions of tiny values in a header are refused by count', async (t) => {
  const dir = t.testdir({});
  const file = join(dir, 'wide.safetensors');
  await writeFile(file, fileBytes(`{"__metadata__":{"x":"y"},"a":${'['.repeat(1)}${'{},'.repeat(9_000_000)}{}]}`));
  await t.rejects(openSafetensors(file), { code: 'ZOFO_BAD_FILE', message: /more than \d+ (values|objects and arrays)/ });
});

t.test('a large legal header loads while timers keep firing', async (t) => {
  const dir = t.testdir({});
  const file = join(dir, 'many.safetensors');
  const n = 30_000; // ~2 MB of header (parsed in a worker thread): zero-size tensors tile an empty data section
  const parts = ['"__metadata__":{"format":"pt"}'];
  for (let i = 0; i < n; i++) parts.push(`"t${i}":${entry('F32', [0, 4], 0, 0)}`);
  await writeFile(file, fileBytes(`{${parts.join(',')}}`));
  const { turned, workers, result } = await turnWhileWorkerRuns(() => openSafetensors(file));
  t.equal(result.status, 'fulfilled', 'the header is valid');
  const f = (result as PromiseFulfilledResult<Awaited<ReturnType<typeof openSafetensors>>>).value;
  t.equal(f.tensors.size, n, 'every tensor is listed');
  t.same(f.tensors.get(`t${n - 1}`)?.shape, [0, 4]);
  f.close();
  t.equal(workers, 1, 'the header was parsed in a worker thread');
  t.ok(turned, 'the event loop kept turning while the header was parsed');
});

/** A copy of the demo model with `name` replaced by what `replace` puts there. */
async function demoWith(t: Test, name: string, replace: (path: string) => Promise<void>): Promise<string> {
  const dir = t.testdir({});
  for (const f of await readdir(demo)) if (f !== name) await copyFile(join(demo, f), join(dir, f));
  await replace(join(dir, name));
  return dir;
}

const fifo = async (path: string) => {
  execFileSync('mkfifo', [path]);
};
const directory = async (path: string) => {
  await mkdir(path);
};
const devZero = async (path: string) => {
  await symlink('/dev/zero', path);
};

for (const name of ['model.safetensors', 'config.json', 'tokenizer.json', 'model.safetensors.index.json']) {
  for (const [kind, make, message] of [
    ['a FIFO', fifo, /is not a regular file/],
    ['/dev/zero', devZero, /is not a regular file/],
    ['a directory', directory, /is a directory/],
  ] as const) {
    t.test(
      `${kind} in place of ${name}: loadModel fails at once with ZOFO_IO naming it`,
      { skip: process.platform === 'win32' && 'POSIX file types' },
      async (t) => {
        const dir = await demoWith(t, name, make);
        await t.rejects(settlesWithin(loadModel(dir), 20_000, 'loadModel'), {
          code: 'ZOFO_IO',
          message: new RegExp(`${join(dir, name).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}.*${message.source}`),
        });
      },
    );
  }
}

t.test('one huge token id in tokenizer.json is refused before the library sizes its tables by it', async (t) => {
  const dir = await demoWith(t, 'tokenizer.json', async (path) => {
    const json = JSON.parse(await readFile(join(demo, 'tokenizer.json'), 'utf8'));
    const token = Object.keys(json.model.vocab)[10];
    json.model.vocab[token] = 2 ** 31;
    await writeFile(path, JSON.stringify(json));
  });
  await t.rejects(settlesWithin(loadModel(dir), 20_000, 'loadModel'), {
    code: 'ZOFO_BAD_FILE',
    message: /tokenizer\.json: token ".*" has id 2147483648, outside the model's vocabulary of \d+/,
  });
});

t.test(
  'a FIFO in place of an adapter config or a task file is refused at once, naming it',
  { skip: process.platform === 'win32' && 'POSIX file types' },
  async (t) => {
    const model = await loadModel(demo);
    t.teardown(() => model.dispose());
    const adapter = t.testdir({});
    execFileSync('mkfifo', [join(adapter, 'adapter_config.json')]);
    await t.rejects(settlesWithin(model.loadAdapter(adapter), 20_000, 'loadAdapter'), {
      code: 'ZOFO_IO',
      message: /adapter_config\.json.*is not a regular file/,
    });
    const task = join(t.testdir({}), 'train.tsv');
    execFileSync('mkfifo', [task]);
    await t.rejects(settlesWithin(loadTask('sst2', task, model.tokenizer!), 20_000, 'loadTask'), {
      code: 'ZOFO_IO',
      message: /train\.tsv.*is not a regular file/,
    });
  },
);
