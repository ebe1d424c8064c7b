// A config.json whose sizes disagree with its checkpoint is refused before the engine
// allocates anything: the error names the field, the config's value and the
// checkpoint's shape, and memory stays flat even for a vocab_size of 2^40.
import t, { type Test } from 'tap';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadModel } from '../lib/index.js';

const root = join(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '..');
const demo = join(root, 'demo/model');

async function modelWith(t: Test, edit: Record<string, unknown>): Promise<string> {
  const dir = t.testdir({});
  const config = JSON.parse(await readFile(join(demo, 'config.json'), 'utf8'));
  await writeFile(join(dir, 'config.json'), JSON.stringify({ ...config, ...edit }));
  await copyFile(join(demo, 'model.safetensors'), join(dir, 'model.safetensors'));
  return dir;
}

const cases: [string, Record<string, unknown>, string, RegExp][] = [
  [
    'vocab_size 2^24',
    { vocab_size: 2 ** 24 },
    'ZOFO_BAD_FILE',
    /embed_tokens\.weight has shape \[196, 64\].*implies \[16777216, 64\].*vocab_size = 16777216.*dimension 0 is 196/,
  ],
  ['vocab_size 2^30', { vocab_size: 2 ** 30 }, 'ZOFO_BAD_FILE', /vocab_size = 1073741824.*dimension 0 is 196/],
  ['vocab_size 2^40 (over the int32 limit)', { vocab_size: 2 ** 40 }, 'ZOFO_BAD_CONFIG', /vocab_size.*up to 2147483647.*1099511627776/],
  ['intermediate_size', { intermediate_size: 1 << 20 }, 'ZOFO_BAD_FILE', /gate_proj\.weight has shape \[192, 64\].*intermediate_size = 1048576/],
  ['hidden_size', { hidden_size: 128, head_dim: 32 }, 'ZOFO_BAD_FILE', /hidden_size = 128.*is 64/],
  ['head_dim', { head_dim: 64 }, 'ZOFO_BAD_FILE', /num_attention_heads × head_dim = 4 × 64/],
  ['num_hidden_layers too many', { num_hidden_layers: 3000 }, 'ZOFO_BAD_FILE', /num_hidden_layers = 3000 in config\.json, but the checkpoint holds 2 layers/],
  [
    'num_hidden_layers too few',
    { num_hidden_layers: 1 },
    'ZOFO_BAD_FILE',
    /layers\.1\..*does not use \(num_hidden_layers = 1 in config\.json, but the checkpoint holds 2 layers\)/,
  ],
  ['num_hidden_layers over the limit', { num_hidden_layers: 1e9 }, 'ZOFO_BAD_CONFIG', /num_hidden_layers.*up to 4096/],
  ['max_position_embeddings 2^40', { max_position_embeddings: 2 ** 40 }, 'ZOFO_BAD_CONFIG', /max_position_embeddings/],
];

for (const [what, edit, code, message] of cases) {
  t.test(`${what}: a clean error, no allocation for the config's sizes`, async (t) => {
    const dir = await modelWith(t, edit);
    const before = process.memoryUsage().rss;
    await t.rejects(loadModel(dir), { code, message });
    const grown = process.memoryUsage().rss - before;
    // The bad sizes would need gigabytes (2^24 × 64 floats alone is 4 GiB).
    t.ok(grown < 256 * 2 ** 20, `resident memory grew by ${(grown / 2 ** 20).toFixed(1)} MiB (< 256 MiB)`);
  });
}

t.test('the demo model itself still loads', async (t) => {
  const model = await loadModel(demo);
  t.equal(model.config.vocabSize, 196);
  model.dispose();
});
