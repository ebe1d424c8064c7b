// Seed corpus of the fuzzer, generated at start (nothing binary is committed): the demo
// model, a sharded copy of it, a PEFT adapter, a tiny training run's checkpoint folder and
// trajectory log, and task files. Each target names a folder and the files in it that
// may be mutated; the rest of the folder is shared by hard links.
import { copyFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export async function makeCorpus(zofo, demoDir, root) {
  const { loadModel, openCheckpoint, writeSafetensors, HybridOptimizer, Trainer } = zofo;
  const dir = (name) => {
    const d = join(root, name);
    mkdirSync(d, { recursive: true });
    return d;
  };

  // The demo model as shipped.
  const model = dir('model');
  for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(demoDir, f), join(model, f));

  // The same weights in two shards + an index.
  const sharded = dir('sharded');
  copyFileSync(join(demoDir, 'config.json'), join(sharded, 'config.json'));
  const ckpt = await openCheckpoint(demoDir);
  const names = [...ckpt.tensors.keys()].sort();
  const shards = [names.slice(0, names.length >> 1), names.slice(names.length >> 1)];
  const weightMap = {};
  for (let s = 0; s < 2; s++) {
    const file = `model-0000${s + 1}-of-00002.safetensors`;
    const tensors = {};
    for (const n of shards[s]) {
      tensors[n] = { dtype: 'F32', shape: ckpt.tensors.get(n).shape, data: await ckpt.read(n) };
      weightMap[n] = file;
    }
    await writeSafetensors(join(sharded, file), tensors);
  }
  ckpt.close();
  writeFileSync(join(sharded, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }, null, 2));

  // A tiny hybrid run with checkpoints; its `latest` is moved back to step 4 of 6, so the
  // fuzzer's checkpoint target resumes it and runs the last two steps.
  const m = await loadModel(demoDir);
  m.addLoRA(LORA);
  const opt = new HybridOptimizer(m, OPTIMIZER_OPTIONS);
  const run = dir('run');
  const trainer = new Trainer(m, opt, { ...TRAINER_OPTIONS, checkpoint: { dir: run, every: 2, keep: 3 } });
  for await (const ev of trainer.fit(EXAMPLES)) if (ev.type === 'done' && ev.reason !== 'completed') throw new Error(`corpus run ended: ${ev.reason}`);
  writeFileSync(join(run, 'latest'), JSON.stringify({ step: 4, path: 'step-000004' }));
  rmSync(join(run, 'step-000006'), { recursive: true, force: true });
  const trajectory = dir('trajectory');
  await opt.saveTrajectory(join(trajectory, 'trajectory.zlog'));
  const adapter = dir('adapter');
  await m.saveAdapter(adapter);
  m.dispose();

  const tasks = dir('tasks');
  writeFileSync(join(tasks, 'train.tsv'), 'sentence\tlabel\nhello world\t1\nbad film\t0\nthe end\t1\n');
  writeFileSync(
    join(tasks, 'train.jsonl'),
    [
      { prompt: 'hello', candidates: [' world', ' there'], label: 0 },
      { prompt: 'a b', candidates: [' c', ' d'], label: 1 },
    ]
      .map((r) => JSON.stringify(r))
      .join('\n') + '\n',
  );
  return { model, sharded, run, trajectory, adapter, tasks };
}

// The corpus run; the child rebuilds the same model, optimizer and trainer to resume it.
export const LORA = { rank: 2, alpha: 4, seed: 3 };
export const OPTIMIZER_OPTIONS = { zo: { lr: 1e-4, mu: 1e-3 }, fo: { lr: 1e-2 }, seed: 7 };
export const TRAINER_OPTIONS = { batchSize: 2, steps: 6, seed: 0 };
export const EXAMPLES = Array.from({ length: 8 }, (_, i) => ({ prompt: [1, 5 + i, 9], target: [12 + i, 7, 2] }));
