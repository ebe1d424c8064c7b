// Random models of named Llama shapes (lib/model/shapes.ts), the streaming checkpoint
// loader (native loadTensors: straight from the file into the parameter buffer), and
// `bench memory`'s peaks on a model large enough to see a second copy of the weights.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { kernels, LLAMA_SHAPES, loadModel, randomModel, writeSafetensors, type Model } from '../lib/index.js';
import { freshSeed } from './helpers/reference.js';

const seed0 = freshSeed() % 1_000_000;
t.comment(`input seed ${seed0}`);

// Parameter count of a Llama config, written out from the architecture (untied head).
function llamaParameters(c: {
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  tie_word_embeddings: boolean;
}): number {
  const C = c.hidden_size,
    F = c.intermediate_size,
    kv = (C / c.num_attention_heads) * c.num_key_value_heads;
  const layer = 2 * C * C + 2 * C * kv + 3 * C * F + 2 * C;
  return c.vocab_size * C * (c.tie_word_embeddings ? 1 : 2) + c.num_hidden_layers * layer + C;
}

// bf16 of an fp32 value, round to nearest even (finite values), as plain integer math.
function bf16(x: number): number {
  const u = new Uint32Array(Float32Array.of(x).buffer)[0];
  const r = ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) << 16;
  return new Float32Array(Uint32Array.of(r >>> 0).buffer)[0];
}

async function tensors(model: Model): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const name of model.parameterNames()) out.set(name, await model.tensor(name));
  return out;
}

t.test('randomModel: the shape’s parameters, norms at 1, matrices exactly std · z(seed, name)', async (t) => {
  const seed = 1000n + BigInt(seed0);
  const model = await randomModel('llama-tiny', { dtype: 'f32', seed, std: 0.02 });
  t.teardown(() => model.dispose());
  const counts = model.parameterCounts();
  t.equal(
    counts.reduce((a, b) => a + b, 0),
    llamaParameters(LLAMA_SHAPES['llama-tiny']),
    'parameter count of the config',
  );
  const all = await tensors(model);
  for (const [name, values] of all) {
    if (/norm\.weight$/.test(name)) {
      t.ok(
        values.every((v) => v === 1),
        `${name} is all ones`,
      );
      continue;
    }
    const z = kernels.gaussian(values.length, { seed, name, offset: 0 });
    const a = Math.fround(0.02);
    let bad = 0;
    for (let i = 0; i < values.length; i++) if (values[i] !== Math.fround(a * z[i])) bad++;
    t.equal(bad, 0, `${name} = fp32(0.02 · z) element for element`);
  }
  // And the draw really has standard deviation 0.02: the sample variance of n Gaussians
  // has relative standard deviation √(2/n); 6 of those is a false alarm below 1e-8.
  const emb = all.get('model.embed_tokens.weight')!;
  const n = emb.length;
  const variance = emb.reduce((s, v) => s + v * v, 0) / n;
  t.ok(Math.abs(variance / 0.02 ** 2 - 1) <= 6 * Math.sqrt(2 / n), `variance ${variance} vs 0.02² (n = ${n})`);
});

t.test('randomModel: bad arguments are ZofoErrors naming the option', async (t) => {
  await t.rejects(randomModel('llama-2b' as never), { code: 'ZOFO_INVALID_ARG', message: /shape/ });
  await t.rejects(randomModel('llama-tiny', { std: -1 }), { code: 'ZOFO_INVALID_ARG', message: /std/ });
  await t.rejects(randomModel('llama-tiny', { seed: -1 }), { code: 'ZOFO_INVALID_ARG', message: /seed/ });
});

t.test('loadModel streams each tensor into the parameter buffer: an f32 checkpoint loaded as bf16 is its values rounded once', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'zofo-shapes-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const source = await randomModel('llama-tiny', { dtype: 'f32', seed: BigInt(seed0 + 1) });
  const values = await tensors(source);
  const file = new Map([...values].map(([name, data]) => [name, { dtype: 'F32' as const, shape: source.tensorShape(name), data }]));
  source.dispose();
  await writeSafetensors(join(dir, 'model.safetensors'), file);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(LLAMA_SHAPES['llama-tiny']));
  for (const dtype of ['f32', 'bf16'] as const) {
    const model = await loadModel(dir, { dtype });
    const loaded = await tensors(model);
    let bad = 0;
    for (const [name, want] of values) {
      const got = loaded.get(name)!;
      for (let i = 0; i < want.length; i++) if (got[i] !== (dtype === 'f32' ? want[i] : bf16(want[i]))) bad++;
    }
    t.equal(bad, 0, `${dtype}: every element is the file's value${dtype === 'bf16' ? ' rounded to nearest even' : ''}`);

    // The native loader itself refuses what the validated header would not have allowed.
    const native = model.native;
    const path = join(dir, 'model.safetensors');
    const size = statSync(path).size;
    const name = 'model.norm.weight';
    await t.rejects(native.loadTensors(path, size + 8, [name], Float64Array.of(8), Uint8Array.of(0)), { code: 'ZOFO_BAD_FILE', message: /changed size/ });
    await t.rejects(native.loadTensors(path, size, [name], Float64Array.of(size - 4), Uint8Array.of(0)), { message: /outside the file/ });
    t.throws(() => native.loadTensors(path, size, ['model.nope'], Float64Array.of(8), Uint8Array.of(0)), /model\.nope/);
    t.same(await model.tensor(name), loaded.get(name), 'a refused load leaves the tensor as it was');
    model.dispose();
  }
});

t.test(
  'bench memory: a bf16 load and step never hold a second copy of the weights',
  { skip: existsSync('/proc/self/clear_refs') ? false : 'needs Linux /proc/self/clear_refs to reset the peak-RSS mark' },
  async (t) => {
    const script = fileURLToPath(new URL('../dist/bench/memory.js', import.meta.url)); // built by npm install (tsc)
    const r = spawnSync(process.execPath, [script, '--shape', 'llama-60m', '--dtype', 'bf16', '--checkpoint', '--steps', '1'], { encoding: 'utf8' });
    t.equal(r.status, 0, r.stderr);
    const m = JSON.parse(r.stdout.trim().split('\n').pop()!);
    t.equal(m.parameters, llamaParameters(LLAMA_SHAPES['llama-60m']), 'parameters of the shape');
    t.equal(m.weightBytes, 2 * m.parameters, 'bf16: two bytes a parameter');
    t.equal(m.peakMark, 'VmHWM reset');
    t.equal(m.memory, 'rss', 'the CPU figures are the process’s resident set');
    // The fp32 file is 2 × the bf16 weights: a load that kept the file's pages (or an fp32
    // copy of a tensor beside the model) would exceed this bound by far.
    const MiB = 2 ** 20;
    t.ok(
      m.loadPeakBytes - m.baselineRssBytes <= 1.15 * m.weightBytes + 96 * MiB,
      `load: ${((m.loadPeakBytes - m.baselineRssBytes) / MiB).toFixed(0)} MiB above the process baseline for ${(m.weightBytes / MiB).toFixed(0)} MiB of weights`,
    );
    t.ok(
      m.stepPeakBytes - m.baselineRssBytes <= 1.15 * m.weightBytes + 256 * MiB,
      `step: ${((m.stepPeakBytes - m.baselineRssBytes) / MiB).toFixed(0)} MiB above the process baseline for ${(m.weightBytes / MiB).toFixed(0)} MiB of weights`,
    );
  },
);
