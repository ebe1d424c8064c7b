// A fuzzer worker process: reads one case per line on stdin ({ id, target, dir }), runs
// that target's reader on the case folder, and answers one line on stdout:
// { id, outcome: 'ok' | 'clean' | 'other', code?, message?, state? }. `state` fingerprints
// what was loaded, so the parent can tell a mutated file that loaded into a different state.
import { createHash } from 'node:crypto';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { EXAMPLES, LORA, OPTIMIZER_OPTIONS, TRAINER_OPTIONS } from './corpus.mjs';

const [distIndex, demoDir] = process.argv.slice(2);
const zofo = await import(pathToFileURL(distIndex).href);
const { ZofoError } = zofo;

const hash = () => createHash('sha256');
const feed = (h, v) => {
  if (ArrayBuffer.isView(v)) h.update(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
  else
    h.update(
      JSON.stringify(v, (_, x) =>
        typeof x === 'bigint'
          ? `${x}n`
          : ArrayBuffer.isView(x)
            ? createHash('sha256')
                .update(new Uint8Array(x.buffer, x.byteOffset, x.byteLength))
                .digest('hex')
            : x,
      ),
    );
  return h;
};

async function tokenizerOf() {
  return zofo.loadTokenizer(demoDir);
}

// Each reader returns a fingerprint of what it loaded.
const READERS = {
  async safetensors(dir) {
    const f = await zofo.openSafetensors(join(dir, 'model.safetensors'));
    try {
      const h = hash();
      for (const [name, info] of [...f.tensors].sort()) feed(feed(h, [name, info]), await f.read(name));
      return h.digest('hex');
    } finally {
      f.close();
    }
  },
  async sharded(dir) {
    const c = await zofo.openCheckpoint(dir);
    try {
      const h = hash();
      for (const name of [...c.tensors.keys()].sort()) feed(feed(h, name), await c.read(name));
      return h.digest('hex');
    } finally {
      c.close();
    }
  },
  async model(dir) {
    // config.json + weights + tokenizer.json through loadModel
    const m = await zofo.loadModel(dir);
    try {
      const h = feed(hash(), m.config.raw);
      feed(h, await m.baseHash());
      if (m.tokenizer) feed(h, m.tokenizer.encode('hello world the end'));
      return h.digest('hex');
    } finally {
      m.dispose();
    }
  },
  async tokenizer(dir) {
    const t = await zofo.loadTokenizer(dir);
    return feed(hash(), [t.vocabSize, t.encode('hello world, the end'), t.decode([1, 5, 9, 12])]).digest('hex');
  },
  async adapter(dir) {
    const m = await zofo.loadModel(demoDir);
    try {
      m.addLoRA(LORA);
      await m.loadAdapter(dir);
      const h = hash();
      for (const name of m.loraNames()) feed(h, m.loraTensor(name));
      return h.digest('hex');
    } finally {
      m.dispose();
    }
  },
  async trajectory(dir) {
    const t = await zofo.readTrajectory(join(dir, 'trajectory.zlog'));
    const stateOf = (records) => feed(hash(), { header: t.header, records }).digest('hex');
    // A torn tail is reported, not silent: the fingerprint says so. `prefixes` fingerprints
    // the log cut after each complete step: what a run stopped there would have written.
    const prefixes = [stateOf([])]; // cut right after the header: a run stopped before its first step
    for (let i = 0; i < t.records.length; i++) {
      if (i + 1 === t.records.length || t.records[i + 1].step !== t.records[i].step) prefixes.push(stateOf(t.records.slice(0, i + 1)));
    }
    return { state: stateOf(t.records) + (t.tornTail ? ':torn' : ''), prefixes };
  },
  async checkpoint(dir) {
    // resume the run from its checkpoint and finish it: the final state
    const m = await zofo.loadModel(demoDir);
    try {
      m.addLoRA(LORA);
      const opt = new zofo.HybridOptimizer(m, OPTIMIZER_OPTIONS);
      const trainer = new zofo.Trainer(m, opt, TRAINER_OPTIONS);
      for await (const ev of trainer.fit(EXAMPLES, { resumeFrom: dir })) {
        if (ev.type === 'done' && ev.reason !== 'completed') throw new Error(`resumed run ended: ${ev.reason}`);
      }
      const h = feed(hash(), await m.baseHash());
      for (const name of m.loraNames()) feed(h, m.loraTensor(name));
      feed(h, opt.trajectory());
      const state = opt.state();
      feed(h, state.json);
      for (const [name, t] of [...state.tensors].sort()) feed(feed(h, name), t);
      return h.digest('hex');
    } finally {
      m.dispose();
    }
  },
  async tasksTsv(dir) {
    const t = await zofo.loadTask('sst2', join(dir, 'train.tsv'), await tokenizerOf());
    return feed(hash(), t.examples).digest('hex');
  },
  async tasksJsonl(dir) {
    const t = await zofo.loadTask('jsonl', join(dir, 'train.jsonl'), await tokenizerOf());
    return feed(hash(), t.examples).digest('hex');
  },
};

const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  const { id, target, dir } = JSON.parse(line);
  let answer;
  try {
    const read = await READERS[target](dir);
    answer = typeof read === 'string' ? { id, outcome: 'ok', state: read } : { id, outcome: 'ok', ...read };
  } catch (err) {
    answer =
      err instanceof ZofoError && typeof err.code === 'string' && err.code.startsWith('ZOFO_')
        ? { id, outcome: 'clean', code: err.code }
        : { id, outcome: 'other', message: String(err?.stack ?? err).slice(0, 2000) };
  }
  process.stdout.write(JSON.stringify(answer) + '\n');
}
