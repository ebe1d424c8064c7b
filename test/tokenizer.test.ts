// Tokenizer loading: a tiny byte-level BPE tokenizer.json (GPT-2 style, with a
// <s> … </s> template) built here, whose encodings are worked out by hand from its
// merges; special-token ids from tokenizer_config.json; and the file errors.
import t, { type Test } from 'tap';
import { join } from 'node:path';
import { loadTokenizer } from '../lib/index.js';
import { byteLevelBpe } from './helpers/bpe-tokenizer.js';
import { caught } from './helpers/errors.js';

// ids: 0-2 special, 3-10 the bytes that occur ("Ġ" is the byte-level space), 11-19 merges.
const VOCAB = {
  '<s>': 0,
  '</s>': 1,
  '<pad>': 2,
  d: 3,
  e: 4,
  h: 5,
  l: 6,
  o: 7,
  r: 8,
  w: 9,
  Ġ: 10,
  he: 11,
  ll: 12,
  hell: 13,
  hello: 14,
  Ġw: 15,
  or: 16,
  Ġwor: 17,
  Ġworl: 18,
  Ġworld: 19,
};
// In rank order: "hello" merges h+e, l+l, he+ll, hell+o; "Ġworld" merges Ġ+w, o+r, Ġw+or, Ġwor+l, Ġworl+d.
const MERGES = ['h e', 'l l', 'he ll', 'hell o', 'Ġ w', 'o r', 'Ġw or', 'Ġwor l', 'Ġworl d'];

const TOKENIZER = byteLevelBpe(VOCAB, MERGES, true) as Record<string, unknown> & { model: Record<string, unknown> };

const TOKENIZER_CONFIG = {
  bos_token: '<s>',
  eos_token: '</s>',
  // Older configs serialise special tokens as AddedToken objects.
  pad_token: { __type: 'AddedToken', content: '<pad>', lstrip: false, normalized: false, rstrip: false, single_word: false },
  clean_up_tokenization_spaces: false,
  model_max_length: 1024,
};

function modelDir(t: Test, files: Record<string, string> = {}): string {
  return t.testdir({ 'tokenizer.json': JSON.stringify(TOKENIZER), 'tokenizer_config.json': JSON.stringify(TOKENIZER_CONFIG), ...files });
}

t.test('encodes by the merges, with the <s> … </s> template', async (t) => {
  const tok = await loadTokenizer(modelDir(t));
  t.same(tok.encode('hello world'), [0, 14, 19, 1]);
  // "held": h+e merges, then nothing applies: he, l, d. The space stays a lone Ġ.
  t.same(tok.encode('hello held'), [0, 14, 10, 11, 6, 3, 1]);
  t.same(tok.encode('hello world', { addSpecialTokens: false }), [14, 19]);
  t.same(tok.encode('', { addSpecialTokens: false }), []);
  // Special tokens written in the text are matched whole, never split into bytes.
  t.same(tok.encode('<s>hello</s>', { addSpecialTokens: false }), [0, 14, 1]);
});

t.test('decodes back to the text', async (t) => {
  const tok = await loadTokenizer(modelDir(t));
  for (const text of ['hello world', 'hello held', 'world hello', 'dew', 'hello  world']) {
    t.equal(tok.decode(tok.encode(text, { addSpecialTokens: false })), text, JSON.stringify(text));
    t.equal(tok.decode(tok.encode(text), { skipSpecialTokens: true }), text, `${JSON.stringify(text)} without specials`);
  }
  t.equal(tok.decode([0, 14, 19, 1]), '<s>hello world</s>');
  t.equal(tok.decode([13, 7, 15, 16, 6, 3]), 'hello world', 'unmerged pieces decode to the same text');
  t.equal(tok.decode([]), '');
});

t.test('special-token ids, vocabulary size and token lookup', async (t) => {
  const tok = await loadTokenizer(modelDir(t));
  t.equal(tok.bosTokenId, 0);
  t.equal(tok.eosTokenId, 1);
  t.equal(tok.padTokenId, 2, 'from an AddedToken object');
  t.equal(tok.vocabSize, 20);
  t.equal(tok.tokenToId('Ġworld'), 19);
  t.equal(tok.tokenToId('</s>'), 1);
  t.equal(tok.tokenToId('world'), undefined);
});

t.test('without tokenizer_config.json there are no special-token ids, but the template still applies', async (t) => {
  const dir = t.testdir({ 'tokenizer.json': JSON.stringify(TOKENIZER) });
  const tok = await loadTokenizer(dir);
  t.equal(tok.bosTokenId, undefined);
  t.equal(tok.eosTokenId, undefined);
  t.equal(tok.padTokenId, undefined);
  t.same(tok.encode('hello'), [0, 14, 1]);
});

t.test('invalid arguments', async (t) => {
  const tok = await loadTokenizer(modelDir(t));
  for (const [ids, name, received] of [
    [[14, 20], 'ids[1]', '20 of type number'],
    [[-1], 'ids[0]', '-1 of type number'],
    [[1.5], 'ids[0]', '1.5 of type number'],
  ] as const) {
    t.throws(() => tok.decode(ids), { code: 'ZOFO_INVALID_ARG', message: `Expected a token id in [0, 20) for ${name} but received ${received}` });
  }
  t.throws(() => tok.decode('14' as unknown as number[]), { code: 'ZOFO_INVALID_ARG', message: /for ids but received "14"/ });
  t.throws(() => tok.encode(14 as unknown as string), { code: 'ZOFO_INVALID_ARG', message: /Expected a string for text but received 14/ });
});

t.test('file errors name the file', async (t) => {
  t.test('missing tokenizer.json', async (t) => {
    const dir = t.testdir({ 'tokenizer_config.json': JSON.stringify(TOKENIZER_CONFIG) });
    const err = await caught(loadTokenizer(dir));
    t.equal(err.code, 'ZOFO_IO');
    t.equal(err.message, `${join(dir, 'tokenizer.json')}: cannot read: no such file`);
  });
  t.test('tokenizer.json that is not JSON', async (t) => {
    const dir = modelDir(t, { 'tokenizer.json': JSON.stringify(TOKENIZER).slice(0, 100) });
    const err = await caught(loadTokenizer(dir));
    t.equal(err.code, 'ZOFO_BAD_FILE');
    t.match(err.message, `${join(dir, 'tokenizer.json')}: not valid JSON`);
  });
  t.test('tokenizer.json the library cannot load', async (t) => {
    for (const broken of [
      { ...TOKENIZER, model: { type: 'NoSuchModel' } },
      { ...TOKENIZER, decoder: undefined },
      { ...TOKENIZER, pre_tokenizer: { type: 'NoSuchPreTokenizer' } },
      [TOKENIZER],
    ]) {
      const dir = modelDir(t, { 'tokenizer.json': JSON.stringify(broken) });
      const err = await caught(loadTokenizer(dir));
      t.equal(err.code, 'ZOFO_BAD_FILE');
      t.match(err.message, `${join(dir, 'tokenizer.json')}: not a tokenizer the library can load: `);
    }
  });
  t.test('tokenizer_config.json that is not JSON, or not an object', async (t) => {
    for (const text of ['{"bos_token": ', '["<s>"]']) {
      const dir = modelDir(t, { 'tokenizer_config.json': text });
      const err = await caught(loadTokenizer(dir));
      t.equal(err.code, 'ZOFO_BAD_FILE');
      t.match(err.message, join(dir, 'tokenizer_config.json'));
    }
  });
  t.test('an unk_token missing from the vocabulary', async (t) => {
    const broken = { ...TOKENIZER, model: { ...TOKENIZER.model, unk_token: '<unk>' } };
    const tok = await loadTokenizer(modelDir(t, { 'tokenizer.json': JSON.stringify(broken) }));
    t.same(tok.encode('hello', { addSpecialTokens: false }), [14]);
    const err = await caught((async () => tok.encode('hex'))());
    t.equal(err.code, 'ZOFO_BAD_FILE');
    t.match(err.message, /tokenizer\.json: encode failed: token "<unk>" has no id in the vocabulary/);
  });
});
