#!/usr/bin/env node
// `npm run fuzz`: a mutation fuzzer over every reader of outside data (safetensors, a
// sharded index, config.json, tokenizer.json, PEFT adapters, trajectory logs, trainer
// checkpoints, task files). Each case mutates one file of a seed folder and runs its
// reader in a pool of child processes (one case at a time each; a crash or hang kills
// only that child, which is replaced). Outcomes: ok (loaded), clean (ZofoError), other
// (any other exception), crash, hang, memory (> 1 GiB resident), silent (loaded into a
// state that differs from the seed's, where the reader can tell: trajectory logs and
// checkpoints), prefix (a trajectory log cut after a complete step: a shorter valid log).
// Anything but ok / clean / prefix fails the run (exit 1).
//
//   ZOFO_FUZZ_SECONDS   budget (default 120)     ZOFO_FUZZ_SEED   PRNG seed (default 1)
//   ZOFO_FUZZ_JOBS      child processes (default min(2, cores))
//   ZOFO_FUZZ_OUT       where failing cases are kept (default a temp folder)
//   ZOFO_FUZZ_CORPUS=dir   only write the seed corpus to dir and exit (the sanitizer job runs it)
import { spawn } from 'node:child_process';
import { linkSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, cpSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { makeCorpus } from './corpus.mjs';
import { mutate, rng } from './mutate.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '../..');
const dist = join(root, 'dist/lib/index.js');
const demo = join(root, 'demo/model');
const seconds = Number(process.env.ZOFO_FUZZ_SECONDS ?? 120);
const seed = Number(process.env.ZOFO_FUZZ_SEED ?? 1);
const jobs = Number(process.env.ZOFO_FUZZ_JOBS ?? Math.min(2, availableParallelism()));
const CASE_TIMEOUT_MS = 20_000;
const MEMORY_LIMIT = 2 ** 30;

const zofo = await import(pathToFileURL(dist).href);
const work = mkdtempSync(join(tmpdir(), 'zofo-fuzz-'));
const corpusDir = process.env.ZOFO_FUZZ_CORPUS || join(work, 'corpus');
const c = await makeCorpus(zofo, demo, corpusDir);
if (process.env.ZOFO_FUZZ_CORPUS) {
  console.log(`seed corpus written to ${corpusDir}`);
  process.exit(0);
}
const findings = process.env.ZOFO_FUZZ_OUT || join(work, 'findings');

const latestStep = JSON.parse(readFileSync(join(c.run, 'latest'), 'utf8')).path;
// target → { folder, files that may be mutated (relative), their kind }
const TARGETS = {
  safetensors: { dir: c.model, files: [['model.safetensors', 'safetensors']] },
  sharded: {
    dir: c.sharded,
    files: [
      ['model.safetensors.index.json', 'text'],
      ['model-00001-of-00002.safetensors', 'safetensors'],
      ['model-00002-of-00002.safetensors', 'safetensors'],
    ],
  },
  model: {
    dir: c.model,
    files: [
      ['config.json', 'text'],
      ['model.safetensors', 'safetensors'],
      ['tokenizer.json', 'text'],
    ],
  },
  tokenizer: {
    dir: c.model,
    files: [
      ['tokenizer.json', 'text'],
      ['tokenizer_config.json', 'text'],
    ],
  },
  adapter: {
    dir: c.adapter,
    files: [
      ['adapter_config.json', 'text'],
      ['adapter_model.safetensors', 'safetensors'],
    ],
  },
  trajectory: { dir: c.trajectory, files: [['trajectory.zlog', 'binary']], silent: true },
  checkpoint: {
    dir: c.run,
    silent: true,
    files: [
      ['latest', 'text'],
      [`${latestStep}/trainer.json`, 'text'],
      [`${latestStep}/optimizer.safetensors`, 'safetensors'],
      [`${latestStep}/trajectory.zlog`, 'binary'],
      [`${latestStep}/adapter/adapter_config.json`, 'text'],
      [`${latestStep}/adapter/adapter_model.safetensors`, 'safetensors'],
    ],
  },
  tasksTsv: { dir: c.tasks, files: [['train.tsv', 'text']] },
  tasksJsonl: { dir: c.tasks, files: [['train.jsonl', 'text']] },
};

/** The case folder: hard links to the seed folder's files, `file` replaced by `bytes`. */
function caseFolder(target, file, bytes, id) {
  const dst = join(work, 'cases', String(id));
  const src = TARGETS[target].dir;
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name),
        rel = relative(src, p),
        q = join(dst, rel);
      if (e.isDirectory()) {
        mkdirSync(q, { recursive: true });
        walk(p);
      } else if (rel !== file) linkSync(p, q);
    }
  };
  mkdirSync(dst, { recursive: true });
  walk(src);
  writeFileSync(join(dst, file), bytes);
  return dst;
}

// ---- the pool of children ----
class Child {
  constructor() {
    this.proc = spawn(process.execPath, ['--max-old-space-size=2048', join(here, 'child.mjs'), dist, demo], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.buffer = '';
    this.stderr = '';
    this.pending = null;
    this.proc.stdout.on('data', (d) => {
      this.buffer += d;
      let nl;
      while ((nl = this.buffer.indexOf('\n')) >= 0) {
        const line = this.buffer.slice(0, nl);
        this.buffer = this.buffer.slice(nl + 1);
        this.finish(JSON.parse(line));
      }
    });
    this.proc.stderr.on('data', (d) => {
      this.stderr = (this.stderr + d).slice(-4000);
    });
    this.proc.on('exit', (code, signal) => this.finish({ outcome: 'crash', message: `exit ${code} ${signal ?? ''}: ${this.stderr}` }));
  }
  rss() {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${this.proc.pid}/status`, 'utf8'));
      return m ? Number(m[1]) * 1024 : 0;
    } catch {
      return 0;
    }
  }
  finish(answer) {
    const p = this.pending;
    if (!p) return;
    this.pending = null;
    clearTimeout(p.timer);
    clearInterval(p.poll);
    p.resolve(answer);
  }
  run(job) {
    return new Promise((resolve) => {
      this.pending = {
        resolve,
        timer: setTimeout(() => {
          this.finish({ outcome: 'hang' });
          this.kill();
        }, CASE_TIMEOUT_MS),
        poll: setInterval(() => {
          if (this.rss() > MEMORY_LIMIT) {
            this.finish({ outcome: 'memory' });
            this.kill();
          }
        }, 50),
      };
      this.proc.stdin.write(JSON.stringify(job) + '\n');
    });
  }
  kill() {
    this.dead = true;
    this.proc.kill('SIGKILL');
  }
}

const counts = {};
const byTarget = {};
const bad = [];
const baseline = {};
const shorter = {}; // target → fingerprints of the seed cut at a step boundary
const count = (target, outcome) => {
  counts[outcome] = (counts[outcome] ?? 0) + 1;
  byTarget[target] ??= {};
  byTarget[target][outcome] = (byTarget[target][outcome] ?? 0) + 1;
};

async function worker(slot, next) {
  let child = new Child();
  for (let job = next(); job; job = next()) {
    let answer = await child.run({ id: job.id, target: job.target, dir: job.dir });
    if (['crash', 'hang', 'memory'].includes(answer.outcome)) {
      child.kill();
      child = new Child();
    }
    let outcome = answer.outcome;
    if (job.seedCase) {
      if (outcome !== 'ok') throw new Error(`the unmutated seed of ${job.target} does not load: ${JSON.stringify(answer)}`);
      baseline[job.target] = answer.state;
      shorter[job.target] = new Set((answer.prefixes ?? []).filter((p) => p !== answer.state));
    } else if (outcome === 'ok' && TARGETS[job.target].silent && answer.state !== baseline[job.target] && !answer.state.endsWith(':torn')) {
      // A trajectory log cut exactly after a complete step is the log of the same run
      // stopped there: append-only, it has no end marker to miss. Counted apart; the
      // consumers that know the length (resume, eval/merge of an adapter) refuse it.
      outcome = shorter[job.target].has(answer.state) ? 'prefix' : 'silent';
    }
    if (!job.seedCase) count(job.target, outcome);
    if (!['ok', 'clean', 'prefix'].includes(outcome)) {
      const keep = join(findings, `${outcome}-${job.target}-${job.id}`);
      cpSync(job.dir, keep, { recursive: true, dereference: true });
      writeFileSync(join(keep, 'FINDING.txt'), `${outcome} in ${job.target} (mutated ${job.file}, seed ${seed}, case ${job.id})\n${answer.message ?? ''}\n`);
      bad.push(`${outcome} ${job.target} ${job.file}: ${keep}`);
      if (bad.length <= 20)
        console.log(`FINDING ${outcome} ${job.target} (${job.file}) → ${keep}\n  ${(answer.message ?? '').split('\n').slice(0, 3).join('\n  ')}`);
    }
    rmSync(job.dir, { recursive: true, force: true });
  }
  child.proc.stdin.end();
  child.kill();
}

const r = rng(seed);
const names = Object.keys(TARGETS);
const seeds = names.map((target) => ({ target, file: '(none)', seedCase: true }));
let id = 0;
const deadline = Date.now() + seconds * 1000;
function nextJob() {
  const s = seeds.shift();
  if (s) {
    const t = TARGETS[s.target];
    const [file] = t.files[0];
    return { ...s, id: id++, dir: caseFolder(s.target, file, readFileSync(join(t.dir, file)), id) };
  }
  if (Date.now() > deadline) return null;
  const target = names[id % names.length];
  const [file, kind] = r.pick(TARGETS[target].files);
  const bytes = mutate(r, readFileSync(join(TARGETS[target].dir, file)), kind);
  const job = { id: id++, target, file };
  job.dir = caseFolder(target, file, bytes, job.id);
  return job;
}

const t0 = Date.now();
// Seeds first, on one child, so every baseline exists before a mutated case needs it.
await worker(0, () => (seeds.length ? nextJob() : null));
await Promise.all(Array.from({ length: jobs }, (_, i) => worker(i, nextJob)));
const total = Object.values(counts).reduce((a, b) => a + b, 0);
console.log(
  `\nzofo fuzz: every reader loaded its unmutated seed (${names.length} targets); seed ${seed}, ${total} mutated cases in ${((Date.now() - t0) / 1000).toFixed(0)} s on ${jobs} processes`,
);
console.log(`outcomes: ${JSON.stringify(counts)}`);
for (const [target, o] of Object.entries(byTarget)) console.log(`  ${target.padEnd(12)} ${JSON.stringify(o)}`);
rmSync(join(work, 'cases'), { recursive: true, force: true });
if (bad.length) {
  console.log(`\n${bad.length} finding(s); cases kept under ${findings}, the seed corpus under ${corpusDir}`);
  process.exit(1);
}
rmSync(work, { recursive: true, force: true });
console.log('no crash, hang, memory blow-up, foreign exception or silent state change');
