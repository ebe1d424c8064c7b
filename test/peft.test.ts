// HF PEFT adapters and merged checkpoints: layout, round trip, and a merged model that
// computes what the adapted one does.
import t from 'tap';
import { readFile, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../lib/model/model.js';
import { openSafetensors } from '../lib/formats/safetensors.js';
import { freshSeed } from './helpers/reference.js';
import { randomCheckpoint, randomLora, writeCheckpointDir, type TinyFamily } from './helpers/tiny-checkpoints.js';

const seed0 = freshSeed();
t.comment(`input seed ${seed0}`);

for (const [fi, family] of (['llama', 'opt', 'gpt2'] as TinyFamily[]).entries()) {
  t.test(`${family}: saveAdapter → loadAdapter round trip, and saveMerged`, async (t) => {
    const root = t.testdir({});
    const ckpt = randomCheckpoint(family, seed0 + fi);
    await writeCheckpointDir(join(root, 'base'), ckpt, { dtype: 'F32' });
    const model = await loadModel(join(root, 'base'));
    const names = model.addLoRA({ rank: 2, alpha: 4 });
    for (const [name, tensor] of randomLora(ckpt, seed0 + 10 + fi, { r: 2, alpha: 4 }).tensors) model.setLoraTensor(name, Float32Array.from(tensor.data));
    await model.saveAdapter(join(root, 'adapter'));

    const cfg = JSON.parse(await readFile(join(root, 'adapter', 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
    t.same(Object.keys(cfg), [...Object.keys(cfg)].sort(), 'adapter_config.json keys are sorted');
    t.match(cfg, { peft_type: 'LORA', r: 2, lora_alpha: 4, task_type: 'CAUSAL_LM', bias: 'none', fan_in_fan_out: family === 'gpt2' });
    t.same(cfg.target_modules, family === 'gpt2' ? ['c_attn'] : ['q_proj', 'v_proj']);
    const file = await openSafetensors(join(root, 'adapter', 'adapter_model.safetensors'));
    t.same([...file.tensors.keys()].sort(), [...names].sort(), 'tensor names are the PEFT names');
    const first = names[0];
    t.match(
      first,
      family === 'llama'
        ? /^base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.lora_A\.weight$/
        : family === 'opt'
          ? /^base_model\.model\.model\.decoder\.layers\.0\.self_attn\.q_proj\.lora_A\.weight$/
          : /^base_model\.model\.transformer\.h\.0\.attn\.c_attn\.lora_A\.weight$/,
      'PEFT naming',
    );
    t.same(file.tensors.get(first)!.shape, [2, ckpt.config.hidden_size ?? ckpt.config.n_embd], 'lora_A is [r, in]');
    file.close();

    // A fresh model loads the adapter and computes the same logits, bit for bit.
    const again = await loadModel(join(root, 'base'));
    await again.loadAdapter(join(root, 'adapter'));
    const ids = [[1, 2, 3, 4, 5]];
    const [a] = await model.logits(ids),
      [b] = await again.logits(ids);
    t.ok(Buffer.from(a.buffer).equals(Buffer.from(b.buffer)), 'reloaded adapter: identical logits');

    // Merged: W + s·B·A in the base weights, no adapters, same function (to fp32 rounding).
    await model.saveMerged(join(root, 'merged'));
    const merged = await loadModel(join(root, 'merged'));
    const [m] = await merged.logits(ids);
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - m[i]) / (1e-5 + 1e-4 * Math.abs(a[i])));
    t.ok(worst <= 1, `merged model's logits match the adapted model's (atol 1e-5, rtol 1e-4; worst ${worst.toFixed(3)})`);
    t.notOk(existsSync(join(root, 'merged', 'adapter_config.json')), 'a merged checkpoint is a plain model');
    for (const x of [model, again, merged]) x.dispose();
  });
}

t.test('loadAdapter rejects adapters that do not fit', async (t) => {
  const root = t.testdir({});
  const ckpt = randomCheckpoint('llama', seed0 + 99);
  await writeCheckpointDir(join(root, 'base'), ckpt, { dtype: 'F32' });
  const model = await loadModel(join(root, 'base'));
  await t.rejects(model.saveAdapter(join(root, 'none')), { code: 'ZOFO_INVALID_STATE' });
  model.addLoRA({ rank: 2, alpha: 4, targets: ['q_proj'] });
  await model.saveAdapter(join(root, 'q'));
  const other = await loadModel(join(root, 'base'));
  other.addLoRA({ rank: 2, alpha: 4, targets: ['q_proj', 'v_proj'] });
  await t.rejects(other.loadAdapter(join(root, 'q')), { code: 'ZOFO_BAD_FILE', message: /missing .*v_proj/ });
  const third = await loadModel(join(root, 'base'));
  third.addLoRA({ rank: 4, alpha: 4, targets: ['q_proj'] });
  await t.rejects(third.loadAdapter(join(root, 'q')), { code: 'ZOFO_INVALID_STATE', message: /r=2/ });
  await writeFile(join(root, 'q', 'adapter_config.json'), '{ not json');
  const fourth = await loadModel(join(root, 'base'));
  await t.rejects(fourth.loadAdapter(join(root, 'q')), { code: 'ZOFO_BAD_FILE', message: /adapter_config\.json/ });
  await t.rejects(fourth.loadAdapter(join(root, 'absent')), { code: 'ZOFO_IO' });
  for (const x of [model, other, third, fourth]) x.dispose();
});
