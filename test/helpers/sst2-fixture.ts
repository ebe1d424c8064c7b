// A tiny random Llama (vocab 48) with a word-level tokenizer.json and small SST-2 TSV
// files (label carried by w1 / w2), for end-to-end tests of the CLI and compare().
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomCheckpoint, seededRandom, writeCheckpointDir } from './tiny-checkpoints.js';

const WORDS = ['<unk>', 'It', 'was', 'terrible', 'great', ...Array.from({ length: 43 }, (_, i) => `w${i}`)]; // 48 = the tiny vocab
export const wordTokenizer = {
  version: '1.0',
  truncation: null,
  padding: null,
  added_tokens: [],
  normalizer: null,
  pre_tokenizer: { type: 'WhitespaceSplit' },
  post_processor: null,
  decoder: null,
  model: { type: 'WordLevel', vocab: Object.fromEntries(WORDS.map((w, i) => [w, i])), unk_token: '<unk>' },
};

export async function sst2Fixture(root: string, seed: number): Promise<{ model: string; train: string; dev: string }> {
  const model = join(root, 'model');
  await writeCheckpointDir(model, randomCheckpoint('llama', seed), { dtype: 'F32' });
  await writeFile(join(model, 'tokenizer.json'), JSON.stringify(wordTokenizer));
  const r = seededRandom(seed);
  const rows = (n: number) =>
    [
      'sentence\tlabel',
      ...Array.from({ length: n }, () => {
        const label = r.uniform() < 0.5 ? 0 : 1;
        return `${label ? 'w1' : 'w2'} ${Array.from({ length: 4 }, () => `w${3 + Math.floor(r.uniform() * 40)}`).join(' ')}\t${label}`;
      }),
    ].join('\n') + '\n';
  await writeFile(join(root, 'train.tsv'), rows(24));
  await writeFile(join(root, 'dev.tsv'), rows(8));
  return { model, train: join(root, 'train.tsv'), dev: join(root, 'dev.tsv') };
}
