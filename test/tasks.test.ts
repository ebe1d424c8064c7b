// Task loaders (lib/data/tasks.ts): MeZO's prompts for SST-2, WSC and WinoGrande and a
// user's JSONL, tokenized by a byte-level BPE tokenizer.json built here (every byte is a
// token, so any text encodes; a few merge chains make " terrible" / " great" one token
// each) with a <s> … </s> template. Expected ids are tokenizer.encode of strings written
// out by hand. Then: each malformed row's file:line error, skipBad, limit, and MeZO's
// seeded sampling, checked against numpy's `np.random.seed(s); np.random.permutation(n)`.
import t, { type Test } from 'tap';
import { join } from 'node:path';
import { loadTokenizer, ZofoError } from '../lib/index.js';
import type { ClassificationExample, LmExample, Tokenizer } from '../lib/index.js';
import { loadTask, sampleExamples, sampleIndices, splitTask, TASK_NAMES, type TaskName } from '../lib/data/tasks.js';
import { byteLevelBpe, special, template } from './helpers/bpe-tokenizer.js';
import { caught } from './helpers/errors.js';

// GPT-2's byte → printable-character map (bytes_to_unicode).
function byteChars(): string[] {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  for (let b = 0, n = 0; b < 256; b++)
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  const chars = new Array<string>(256);
  bs.forEach((b, i) => {
    chars[b] = String.fromCodePoint(cs[i]);
  });
  return chars;
}

function byteLevelTokenizer(withTemplate: boolean): object {
  const vocab: Record<string, number> = { '<s>': 0, '</s>': 1, '<pad>': 2 };
  for (const c of byteChars()) vocab[c] = Object.keys(vocab).length;
  // Merge chains (prefix + next char) that build these words whole.
  const merges: string[] = [];
  for (const word of ['Ġterrible', 'Ġgreat']) {
    for (let i = 1; i < word.length; i++) {
      merges.push(`${word.slice(0, i)} ${word[i]}`);
      vocab[word.slice(0, i + 1)] ??= Object.keys(vocab).length;
    }
  }
  return byteLevelBpe(vocab, merges, withTemplate);
}

const CONFIG = { bos_token: '<s>', eos_token: '</s>', pad_token: '<pad>' };
const BOS = 0;

/**
 * One testdir per test (tap replaces it on a second call): the tokenizer's files under
 * tok/ (and bare/: no template, no tokenizer_config.json) and the fixture `files`,
 * whose paths come back by name.
 */
async function setup(t: Test, files: Record<string, string | Buffer> = {}): Promise<{ tok: Tokenizer; bare: Tokenizer; paths: Record<string, string> }> {
  const dir = t.testdir({
    tok: { 'tokenizer.json': JSON.stringify(byteLevelTokenizer(true)), 'tokenizer_config.json': JSON.stringify(CONFIG) },
    bare: { 'tokenizer.json': JSON.stringify(byteLevelTokenizer(false)) },
    ...files,
  });
  return {
    tok: await loadTokenizer(join(dir, 'tok')),
    bare: await loadTokenizer(join(dir, 'bare')),
    paths: Object.fromEntries(Object.keys(files).map((name) => [name, join(dir, name)])),
  };
}

const jsonl = (...rows: unknown[]): string => rows.map((r) => (typeof r === 'string' ? r : JSON.stringify(r))).join('\n') + '\n';

t.test('TASK_NAMES', async (t) => {
  t.same([...TASK_NAMES], ['sst2', 'wsc', 'winogrande', 'jsonl']);
});

t.test('sst2: "<sentence> It was" → " terrible" / " great"', async (t) => {
  const {
    tok,
    paths: { train, swapped },
  } = await setup(t, {
    // GLUE's sentences end in a space; CRLF line ends and a blank line are tolerated.
    train: "sentence\tlabel\r\nit 's a charming and often affecting journey . \t1\r\n\r\nunflinchingly bleak and desperate \t0\r\n",
    // The header's columns may come in either order.
    swapped: 'label\tsentence\n0\tbad\n',
  });
  const plain = (s: string) => tok.encode(s, { addSpecialTokens: false });
  const task = await loadTask('sst2', train, tok);
  t.equal(task.name, 'sst2');
  t.equal(task.kind, 'classification');
  t.equal(task.note, undefined);
  t.equal(task.skipped, undefined);
  const terrible = plain(' terrible'),
    great = plain(' great');
  t.equal(terrible.length, 1, '" terrible" is one token, so the model scores it in one forward');
  t.equal(great.length, 1);
  t.same(
    task.examples,
    [
      { prompt: [BOS, ...plain("it 's a charming and often affecting journey . It was")], candidates: [terrible, great], label: 1 },
      { prompt: [BOS, ...plain('unflinchingly bleak and desperate It was')], candidates: [terrible, great], label: 0 },
    ],
    'BOS from the template, its trailing </s> dropped',
  );
  t.same(task.texts, [
    { line: 2, prompt: "it 's a charming and often affecting journey . It was", candidates: [' terrible', ' great'] },
    { line: 4, prompt: 'unflinchingly bleak and desperate It was', candidates: [' terrible', ' great'] },
  ]);
  t.same((await loadTask('sst2', swapped, tok)).examples, [{ prompt: [BOS, ...plain('bad It was')], candidates: [terrible, great], label: 0 }]);
  t.equal((await loadTask('sst2', train, tok, { limit: 1 })).examples.length, 1, 'limit');
});

t.test('wsc: MeZO\'s WSCTemplate, "No" / "Yes" after a newline', async (t) => {
  const text = 'Mark told Pete many lies about himself, which Pete included in his book. He should have been more skeptical.';
  const {
    tok,
    paths: { wsc },
  } = await setup(t, {
    wsc: jsonl(
      { text, target: { span2_index: 13, span1_index: 0, span1_text: 'Mark', span2_text: 'He' }, idx: 0, label: false },
      {
        text: 'The sack of potatoes had been placed below the bag of flour, so it had to be moved first.',
        target: { span1_text: 'the bag of flour', span2_text: 'it' },
        label: true,
      },
      { text: 'Alice thanked Beth.', target: { span1_text: 'Beth', span2_text: 'She' }, label: 1 },
    ),
  });
  const plain = (s: string) => tok.encode(s, { addSpecialTokens: false });
  const task = await loadTask('wsc', wsc, tok);
  const prompt1 = `${text}\nIn the previous sentence, does the pronoun "he" refer to Mark? Yes or No?\n`;
  const prompt2 =
    'The sack of potatoes had been placed below the bag of flour, so it had to be moved first.\nIn the previous sentence, does the pronoun "it" refer to the bag of flour? Yes or No?\n';
  const no = plain('No'),
    yes = plain('Yes');
  t.same(task.examples, [
    { prompt: [BOS, ...plain(prompt1)], candidates: [no, yes], label: 0 },
    { prompt: [BOS, ...plain(prompt2)], candidates: [no, yes], label: 1 },
    {
      prompt: [BOS, ...plain('Alice thanked Beth.\nIn the previous sentence, does the pronoun "she" refer to Beth? Yes or No?\n')],
      candidates: [no, yes],
      label: 1,
    },
  ]);
  t.same(task.texts[0], { line: 1, prompt: prompt1, candidates: ['No', 'Yes'] });
});

t.test("winogrande: prefix as the prompt, option + suffix as the candidates; or MeZO's whole sentence", async (t) => {
  const {
    tok,
    bare,
    paths: { wino },
  } = await setup(t, {
    wino: jsonl(
      { qID: 'a', sentence: "The trophy doesn't fit into the brown suitcase because the _ is too large.", option1: 'trophy', option2: 'suitcase', answer: '1' },
      { qID: 'b', sentence: '_ went to the café because Sarah was hungry.', option1: 'Sarah', option2: 'Maria', answer: 2 },
    ),
  });
  const plain = (s: string) => tok.encode(s, { addSpecialTokens: false });
  const task = await loadTask('winogrande', wino, tok);
  t.match(task.note, /MeZO instead scores the whole sentence/);
  const prefix = "The trophy doesn't fit into the brown suitcase because the";
  const [a, b] = task.examples as ClassificationExample[];
  t.same(a, { prompt: [BOS, ...plain(prefix)], candidates: [plain(' trophy is too large.'), plain(' suitcase is too large.')], label: 0 });
  t.same(
    task.texts[0],
    { line: 1, prompt: prefix, candidates: [' trophy is too large.', ' suitcase is too large.'] },
    'the space before "_" moves to the candidates',
  );
  // prompt + candidate is exactly the encoding of the substituted sentence.
  t.same([...a.prompt, ...a.candidates[1]], [BOS, ...plain("The trophy doesn't fit into the brown suitcase because the suitcase is too large.")]);
  // "_" first: the prompt is BOS alone.
  t.same(b, {
    prompt: [BOS],
    candidates: [plain('Sarah went to the café because Sarah was hungry.'), plain('Maria went to the café because Sarah was hungry.')],
    label: 1,
  });

  const full = await loadTask('winogrande', wino, tok, { winogrande: 'full' });
  t.match(full.note, /as in MeZO/);
  t.same(full.examples[0], {
    prompt: [BOS],
    candidates: [
      plain("The trophy doesn't fit into the brown suitcase because the trophy is too large."),
      plain("The trophy doesn't fit into the brown suitcase because the suitcase is too large."),
    ],
    label: 0,
  });
  t.same(full.texts[0], {
    line: 1,
    prompt: '',
    candidates: [
      "The trophy doesn't fit into the brown suitcase because the trophy is too large.",
      "The trophy doesn't fit into the brown suitcase because the suitcase is too large.",
    ],
  });

  // Without a BOS token an empty prompt has nothing to stand for it.
  const err = await caught(loadTask('winogrande', wino, bare, { winogrande: 'full' }));
  t.equal(err.code, 'ZOFO_BAD_FILE');
  t.equal(err.message, `${wino}:1: the prompt is empty and the tokenizer has no BOS token to stand for it`);
  t.same((await loadTask('winogrande', wino, bare, { limit: 1 })).examples[0].prompt, bare.encode(prefix), 'no template: no specials');
});

t.test('jsonl: classification and LM rows', async (t) => {
  const {
    tok,
    paths: { cls, lm },
  } = await setup(t, {
    cls: jsonl(
      { prompt: 'Q: 2+2? A:', candidates: [' 3', ' 4', ' five'], label: 1 },
      { prompt: 'Answer: ', candidates: ['yes', 'no'], label: 0 },
      // "g" + "reat" encode jointly as one token "Ġgreat": the candidate is encoded alone.
      { prompt: 'It was g', candidates: ['reat', 'ross'], label: 0 },
    ),
    lm: jsonl({ prompt: 'hello', target: ' world' }, { prompt: '', target: 'hello world' }),
  });
  const plain = (s: string) => tok.encode(s, { addSpecialTokens: false });
  const task = await loadTask('jsonl', cls, tok);
  t.equal(task.kind, 'classification');
  t.same(task.examples, [
    { prompt: [BOS, ...plain('Q: 2+2? A:')], candidates: [plain(' 3'), plain(' 4'), plain(' five')], label: 1 },
    { prompt: [BOS, ...plain('Answer:')], candidates: [plain(' yes'), plain(' no')], label: 0 },
    { prompt: [BOS, ...plain('It was g')], candidates: [plain('reat'), plain('ross')], label: 0 },
  ]);
  t.same(task.texts[1], { line: 2, prompt: 'Answer:', candidates: [' yes', ' no'] }, 'trailing prompt spaces move to the candidates');
  t.not(plain('It was great').slice(0, 3).join(), plain('It was g').join(), 'the joint encoding differs at the boundary');

  const lmTask = await loadTask('jsonl', lm, tok);
  t.equal(lmTask.kind, 'lm');
  t.same(lmTask.examples as LmExample[], [
    { prompt: [BOS, ...plain('hello')], target: plain(' world') },
    { prompt: [BOS], target: plain('hello world') },
  ]);
  t.same(lmTask.texts, [
    { line: 1, prompt: 'hello', target: ' world' },
    { line: 2, prompt: '', target: 'hello world' },
  ]);
});

t.test('a SentencePiece-style tokenizer: candidates are the tail of the joint encoding, as in MeZO', async (t) => {
  // Llama-2's tokenizer.json: the normalizer prepends "▁" to every text and turns spaces
  // into "▁", so " great" alone is ["▁", "▁great"]; after "It was" it is "▁great".
  const words = ['▁a', '▁film', '▁It', '▁was', '▁great', '▁terrible'];
  const vocab: Record<string, number> = { '<unk>': 0, '<s>': 1 };
  const merges: string[] = [];
  for (const c of new Set(words.join(''))) vocab[c] = Object.keys(vocab).length;
  for (const word of words) {
    for (let i = 1; i < word.length; i++) {
      merges.push(`${word.slice(0, i)} ${word[i]}`);
      vocab[word.slice(0, i + 1)] ??= Object.keys(vocab).length;
    }
  }
  const dir = t.testdir({
    'tokenizer.json': JSON.stringify({
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: [special(0, '<unk>'), special(1, '<s>')],
      normalizer: {
        type: 'Sequence',
        normalizers: [
          { type: 'Prepend', prepend: '▁' },
          { type: 'Replace', pattern: { String: ' ' }, content: '▁' },
        ],
      },
      pre_tokenizer: null,
      post_processor: {
        type: 'TemplateProcessing',
        single: template('<s>', '$A'),
        pair: template('<s>', '$A', '<s>', '$A'),
        special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
      },
      decoder: null,
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: '<unk>',
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: true,
        byte_fallback: false,
        vocab,
        merges,
      },
    }),
    'tokenizer_config.json': JSON.stringify({ bos_token: '<s>' }),
    'train.tsv': 'sentence\tlabel\na film\t1\n',
  });
  const tok = await loadTokenizer(dir);
  const id = (piece: string) => vocab[piece];
  t.same(tok.encode(' great', { addSpecialTokens: false }), [id('▁'), id('▁great')], 'encoded alone, " great" is two tokens');
  t.same(tok.encode('a film It was great'), [1, id('▁a'), id('▁film'), id('▁It'), id('▁was'), id('▁great')]);
  const task = await loadTask('sst2', join(dir, 'train.tsv'), tok);
  t.same(task.examples, [{ prompt: [1, id('▁a'), id('▁film'), id('▁It'), id('▁was')], candidates: [[id('▁terrible')], [id('▁great')]], label: 1 }]);
});

t.test('malformed rows: ZOFO_BAD_FILE naming file:line', async (t) => {
  const wsc = (over: Record<string, unknown>, target: Record<string, unknown> = {}) =>
    JSON.stringify({ text: 'Al met Bo. He smiled.', target: { span1_text: 'Al', span2_text: 'He', ...target }, label: true, ...over });
  const wino = (over: Record<string, unknown>) => JSON.stringify({ sentence: 'Al met Bo and _ smiled.', option1: 'Al', option2: 'Bo', answer: '1', ...over });
  const cases: [TaskName, string, number, string][] = [
    ['sst2', 'index\tsentence\n0\tgood\n', 1, 'expected the header "sentence<TAB>label" of a GLUE SST-2 TSV, not "index\\tsentence"'],
    ['sst2', '\nsentence\tlabel\tx\n', 2, 'expected the header "sentence<TAB>label" of a GLUE SST-2 TSV, not "sentence\\tlabel\\tx"'],
    ['sst2', 'sentence\tlabel\ngood\t1\ta\n', 2, 'expected 2 tab-separated columns, found 3'],
    ['sst2', 'sentence\tlabel\ngood\t1\n\njust a sentence\n', 4, 'expected 2 tab-separated columns, found 1'],
    ['sst2', 'sentence\tlabel\ngood\t2\n', 2, 'label must be 0 or 1, not "2"'],
    ['sst2', 'sentence\tlabel\ngood\t\n', 2, 'label must be 0 or 1, not ""'],
    ['sst2', 'sentence\tlabel\n  \t1\n', 2, 'the sentence is empty'],
    ['wsc', `${wsc({})}\n{"text": "x",\n`, 2, 'not valid JSON ('],
    ['wsc', '[1, 2]\n', 1, 'expected a JSON object, not an array'],
    ['wsc', `${wsc({ text: undefined })}\n`, 1, 'missing field "text"'],
    ['wsc', `${wsc({ text: 7 })}\n`, 1, 'field "text" must be a string, not number 7'],
    ['wsc', `${wsc({ target: 'Al' })}\n`, 1, 'field "target" must be an object, not the string "Al"'],
    ['wsc', `${wsc({}, { span2_text: undefined })}\n`, 1, 'missing field "target.span2_text"'],
    ['wsc', `${wsc({}, { span1_index: -1 })}\n`, 1, 'field "target.span1_index" must be a non-negative integer, not number -1'],
    ['wsc', `${wsc({ label: 'yes' })}\n`, 1, 'field "label" must be true or false, not the string "yes"'],
    ['wsc', `${wsc({ label: 2 })}\n`, 1, 'label must be true or false (or 0 or 1), not 2'],
    ['wsc', `${wsc({ label: undefined })}\n`, 1, 'missing field "label"'],
    ['winogrande', `${wino({ sentence: 'Al met Bo and he smiled.' })}\n`, 1, 'the sentence must hold exactly one "_", but it holds 0'],
    ['winogrande', `${wino({ sentence: '_ met _.' })}\n`, 1, 'the sentence must hold exactly one "_", but it holds 2'],
    ['winogrande', `${wino({ answer: '3' })}\n`, 1, 'answer must be "1" or "2", not "3"'],
    ['winogrande', `${wino({ answer: null })}\n`, 1, 'field "answer" must be "1" or "2", not null'],
    ['winogrande', `${wino({ option2: undefined })}\n`, 1, 'missing field "option2"'],
    ['winogrande', `${wino({ option1: '' })}\n`, 1, 'field "option1" is empty'],
    ['jsonl', '{"prompt": 1, "target": "x"}\n', 1, 'field "prompt" must be a string, not number 1'],
    ['jsonl', '{"prompt": "p"}\n', 1, 'missing field "candidates" (classification) or "target" (LM)'],
    [
      'jsonl',
      '{"prompt": "p", "target": "x", "candidates": ["a", "b"], "label": 0}\n',
      1,
      'a row has either "candidates" (classification) or "target" (LM), not both',
    ],
    ['jsonl', '{"prompt": "p", "candidates": ["a"], "label": 0}\n', 1, 'field "candidates" must hold at least 2 strings, not 1'],
    ['jsonl', '{"prompt": "p", "candidates": ["a", 2], "label": 0}\n', 1, 'field "candidates" must be an array of strings, not an array'],
    ['jsonl', '{"prompt": "p", "candidates": ["a", "b"], "label": 2}\n', 1, 'label 2 is out of range 0 .. 1'],
    ['jsonl', '{"prompt": "p", "candidates": ["a", "b"], "label": 0.5}\n', 1, 'field "label" must be an integer, not number 0.5'],
    ['jsonl', '{"prompt": "p", "candidates": ["a", "b"]}\n', 1, 'missing field "label"'],
    ['jsonl', '{"prompt": "p", "candidates": [" a", ""], "label": 0}\n', 1, 'candidate 1 the string "" tokenizes to nothing'],
    ['jsonl', '{"prompt": "p", "target": ""}\n', 1, 'the target the string "" tokenizes to nothing'],
    [
      'jsonl',
      '{"prompt": "p", "target": "x"}\n{"prompt": "p", "candidates": ["a", "b"], "label": 0}\n',
      2,
      'a classification row ({prompt, candidates, label}) in a file of LM rows; a task holds one kind',
    ],
    [
      'jsonl',
      '{"prompt": "p", "candidates": ["a", "b"], "label": 0}\n\n{"prompt": "p", "target": "x"}\n',
      3,
      'an LM row ({prompt, target}) in a file of classification rows; a task holds one kind',
    ],
  ];
  const { tok, paths } = await setup(t, Object.fromEntries(cases.map(([, content], i) => [`case${i}`, content])));
  for (const [i, [name, content, line, message]] of cases.entries()) {
    const file = paths[`case${i}`];
    const err = await caught(loadTask(name, file, tok));
    t.equal(err.code, 'ZOFO_BAD_FILE', `${name} ${JSON.stringify(content)}`);
    t.equal(err.message.slice(0, `${file}:${line}: ${message}`.length), `${file}:${line}: ${message}`, `${name} ${JSON.stringify(content)}`);
  }
});

t.test('skipBad leaves malformed rows out and lists their lines', async (t) => {
  const {
    tok,
    paths: { sst, wino, allBad },
  } = await setup(t, {
    sst: 'sentence\tlabel\ngood\t1\nbad\t7\n\nno tab\nfine\t0\n\ttoo\tmany\n',
    wino: jsonl('nope', { sentence: 'A _ b', option1: 'x', option2: 'y', answer: '2' }, { sentence: 'no blank', option1: 'x', option2: 'y', answer: '1' }),
    allBad: 'sentence\tlabel\nx\t5\ny\t6\n',
  });
  const plain = (s: string) => tok.encode(s, { addSpecialTokens: false });
  const task = await loadTask('sst2', sst, tok, { skipBad: true });
  t.same(task.skipped, [3, 5, 7]);
  t.same(
    task.examples.map((e) => (e as ClassificationExample).label),
    [1, 0],
  );
  t.same(
    task.texts.map((x) => x.line),
    [2, 6],
  );
  t.same(task.examples[1].prompt, [BOS, ...plain('fine It was')]);
  const w = await loadTask('winogrande', wino, tok, { skipBad: true });
  t.same(w.skipped, [1, 3]);
  t.same(w.examples, [{ prompt: [BOS, ...plain('A')], candidates: [plain(' x b'), plain(' y b')], label: 1 }]);
  t.same((await loadTask('sst2', sst, tok, { skipBad: true, limit: 1 })).skipped, [], 'rows past the limit are not read');
  // Nothing usable at all is still an error.
  const err = await caught(loadTask('sst2', allBad, tok, { skipBad: true }));
  t.equal(err.message, `${allBad}: no usable rows (2 malformed, skipped: lines 2, 3)`);
});

t.test('file errors and invalid arguments', async (t) => {
  const {
    tok,
    paths: { empty, blank, latin1, ok, bom },
  } = await setup(t, {
    empty: '',
    blank: '\n\n  \n',
    latin1: Buffer.from([0x7b, 0xe9, 0x7d, 0x0a]),
    ok: '{"prompt": "p", "target": "x"}\n',
    bom: '\uFEFFsentence\tlabel\nok\t1\n',
  });
  t.equal((await caught(loadTask('jsonl', empty, tok))).message, `${empty}: no examples`);
  t.equal((await caught(loadTask('jsonl', blank, tok))).message, `${blank}: no examples`);
  t.equal((await caught(loadTask('sst2', empty, tok))).message, `${empty}:1: expected the header "sentence<TAB>label" of a GLUE SST-2 TSV, not ""`);
  t.match(await caught(loadTask('jsonl', latin1, tok)), { code: 'ZOFO_BAD_FILE', message: `${latin1}: not valid UTF-8` });
  const missing = join(ok, '..', 'missing.jsonl');
  t.match(await caught(loadTask('jsonl', missing, tok)), {
    code: 'ZOFO_IO',
    message: new RegExp(`^${missing.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: cannot read: `),
  });
  t.match(await caught(loadTask('mnli' as TaskName, ok, tok)), {
    code: 'ZOFO_INVALID_ARG',
    message: "Expected one of 'sst2', 'wsc', 'winogrande', 'jsonl' for name but received \"mnli\" of type string",
  });
  t.match(await caught(loadTask('jsonl', '', tok)), { code: 'ZOFO_INVALID_ARG', message: /for file/ });
  t.match(await caught(loadTask('jsonl', ok, {} as Tokenizer)), { code: 'ZOFO_INVALID_ARG', message: /for tokenizer/ });
  t.match(await caught(loadTask('jsonl', ok, tok, { limit: 0 })), { code: 'ZOFO_INVALID_ARG', message: /positive integer for opts.limit but received 0/ });
  t.match(await caught(loadTask('jsonl', ok, tok, { skipBad: 1 as unknown as boolean })), { code: 'ZOFO_INVALID_ARG', message: /opts.skipBad/ });
  t.match(await caught(loadTask('jsonl', ok, tok, { winogrande: 'suffix' as 'full' })), { code: 'ZOFO_INVALID_ARG', message: /opts.winogrande/ });
  // A UTF-8 byte-order mark is not part of the first row.
  t.equal((await loadTask('sst2', bom, tok)).examples.length, 1);
});

t.test('pick: tokenize only the sampled rows', async (t) => {
  const {
    tok,
    paths: { sst, lm },
  } = await setup(t, {
    sst: ['sentence\tlabel', ...Array.from({ length: 12 }, (_, i) => `movie ${i}\t${i % 2}`), 'broken\t9', ''].join('\n'),
    lm: jsonl({ prompt: 'a', target: 'b' }, { prompt: 'c', target: '' }, { prompt: 'd', target: 'e' }),
  });
  const all = await loadTask('sst2', sst, tok, { skipBad: true });
  t.equal(all.examples.length, 12);
  // MeZO's 6 train + 3 dev sample with seed 5, without tokenizing the other rows.
  const task = await loadTask('sst2', sst, tok, {
    skipBad: true,
    pick: (n) => {
      t.equal(n, 12, 'n counts the well-formed rows');
      return sampleIndices(n, 9, 5);
    },
  });
  t.same(task.examples, sampleExamples(all.examples, 9, 5));
  t.same(task.texts, sampleExamples(all.texts, 9, 5));
  t.same(task.skipped, [14]);
  const split = splitTask(all.examples, { train: 6, dev: 3, seed: 5 });
  t.same({ train: task.examples.slice(0, 6), dev: task.examples.slice(6) }, split, 'the same split as splitTask');
  // A row that only fails to tokenize counts among the n rows; skipped if picked.
  t.same(
    (await loadTask('jsonl', lm, tok, { skipBad: true, pick: () => [2, 1] })).texts.map((x) => x.line),
    [3],
  );
  t.same((await loadTask('jsonl', lm, tok, { skipBad: true, pick: () => [2, 1] })).skipped, [2]);
  t.same(
    (await loadTask('jsonl', lm, tok, { pick: () => [0, 2] })).texts.map((x) => x.line),
    [1, 3],
    'a bad row left unpicked is not tokenized',
  );
  t.match(await caught(loadTask('jsonl', lm, tok, { pick: () => [0, 3] })), {
    code: 'ZOFO_INVALID_ARG',
    message: 'Expected a row index in 0 .. 2 for opts.pick(3)[1] but received 3 of type number',
  });
  t.match(await caught(loadTask('jsonl', lm, tok, { pick: () => 'all' as unknown as number[] })), { code: 'ZOFO_INVALID_ARG', message: /opts.pick\(n\)/ });
  t.match(await caught(loadTask('jsonl', lm, tok, { pick: [0] as unknown as () => number[] })), {
    code: 'ZOFO_INVALID_ARG',
    message: /function \(n\) => indices for opts.pick/,
  });
  t.match(await caught(loadTask('jsonl', lm, tok, { pick: () => [] })), {
    code: 'ZOFO_INVALID_ARG',
    message: `loadTask: opts.pick picked none of the 3 rows of ${lm}`,
  });
});

t.test('a tokenizer that fails on a row, or whose template is not "specials + text + specials"', async (t) => {
  const {
    paths: { rows },
  } = await setup(t, { rows: jsonl({ prompt: 'ab', target: 'c' }, { prompt: 'aXb', target: 'c' }) });
  // Ids are char codes; 'X' cannot be encoded; the template adds [900] to "" but [900, 901] to any other text.
  const stub = (encode: Tokenizer['encode']): Tokenizer => ({ encode, decode: () => '', vocabSize: 1000, tokenToId: () => undefined });
  const codes = (text: string) => [...text].map((c) => c.charCodeAt(0));
  const tok = stub((text, opts) => {
    if (text.includes('X')) throw new ZofoError('ZOFO_BAD_FILE', 'tokenizer.json: encode failed: no id for X');
    return opts?.addSpecialTokens === false ? codes(text) : text === '' ? [900] : [900, 901, ...codes(text)];
  });
  const err = await caught(loadTask('jsonl', rows, tok));
  t.equal(err.message, `${rows}:2: cannot tokenize the string "aXb": tokenizer.json: encode failed: no id for X`);
  const task = await loadTask('jsonl', rows, tok, { skipBad: true });
  t.same(task.skipped, [2]);
  t.same(task.examples, [{ prompt: [900, 901, ...codes('ab')], target: codes('c') }], 'an unusual template is kept as it is');
  const broken = stub(() => {
    throw new Error('no vocabulary');
  });
  t.match(await caught(loadTask('jsonl', rows, broken)), {
    code: 'ZOFO_INVALID_ARG',
    message: 'loadTask: the tokenizer cannot encode an empty text: cannot tokenize the string "": no vocabulary',
  });
});

t.test("sampling: MeZO's seeded subsets (numpy permutation), deterministic, without replacement", async (t) => {
  // np.random.seed(s); np.random.permutation(n).tolist()
  t.same(sampleIndices(10, 10, 0), [2, 8, 4, 9, 1, 6, 7, 3, 0, 5]);
  t.same(sampleIndices(5, 5, 42), [1, 4, 2, 0, 3]);
  t.same(sampleIndices(100, 6, 4294967295), [92, 36, 80, 77, 31, 6]);
  t.same(sampleIndices(70000, 5, 7), [7653, 66274, 9119, 10760, 43166], 'past the 624-word MT19937 state');
  t.same(sampleIndices(1, 1, 3), [0]);
  t.same(sampleIndices(0, 0, 3), []);

  const items = Array.from({ length: 50 }, (_, i) => `ex${i}`);
  const a = sampleExamples(items, 20, 13);
  t.same(sampleExamples(items, 20, 13), a, 'same seed, same sample');
  t.not(sampleExamples(items, 20, 14).join(), a.join(), 'another seed, another sample');
  t.equal(new Set(a).size, 20, 'without replacement');
  t.same(sampleExamples(items, 5, 13), a.slice(0, 5), 'a smaller k is a prefix');
  t.same(new Set(sampleExamples(items, 50, 1)), new Set(items), 'k = n is a permutation');
  t.throws(() => sampleExamples(items, 51, 0), { code: 'ZOFO_INVALID_ARG', message: 'cannot sample k = 51 examples without replacement from n = 50' });
  t.throws(() => sampleExamples(items, -1, 0), { code: 'ZOFO_INVALID_ARG', message: /for k but received -1/ });
  t.throws(() => sampleExamples(items, 2, -1), { code: 'ZOFO_INVALID_ARG', message: /seed in 0 .. 2\^32 - 1 for seed but received -1/ });
  t.throws(() => sampleExamples(items, 2, 2 ** 32), { code: 'ZOFO_INVALID_ARG', message: /for seed/ });
  t.throws(() => sampleExamples('abc' as unknown as string[], 2, 0), { code: 'ZOFO_INVALID_ARG', message: /for examples/ });

  // MeZO's run.py: sample train + dev, the last `dev` of it are dev.
  const { train, dev } = splitTask(items, { train: 6, dev: 4, seed: 0 });
  const perm = sampleIndices(50, 10, 0);
  t.same(
    train,
    perm.slice(0, 6).map((i) => items[i]),
  );
  t.same(
    dev,
    perm.slice(6).map((i) => items[i]),
  );
  t.equal(new Set([...train, ...dev]).size, 10, 'disjoint');
  t.same(splitTask(items, { train: 6, dev: 4, seed: 0 }), { train, dev }, 'deterministic');
  t.same(splitTask(items, { train: 3, dev: 0, seed: 5 }).dev, []);
  t.same(splitTask([0, 1, 2, 3], { train: 2, dev: 2, seed: 9 }).train.length, 2, 'indices work as examples');
  t.throws(() => splitTask(items, { train: 40, dev: 11, seed: 0 }), {
    code: 'ZOFO_INVALID_ARG',
    message: 'cannot split train = 40 + dev = 11 examples without replacement from n = 50',
  });
  t.throws(() => splitTask(items, { train: 1.5, dev: 1, seed: 0 }), { code: 'ZOFO_INVALID_ARG', message: /opts.train/ });
  t.throws(() => splitTask(items, { train: 1, dev: -1, seed: 0 }), { code: 'ZOFO_INVALID_ARG', message: /opts.dev/ });
  t.throws(() => splitTask(items, { train: 1, dev: 1, seed: 0.5 }), { code: 'ZOFO_INVALID_ARG', message: /opts.seed/ });
  t.throws(() => splitTask(items, null as unknown as { train: number; dev: number; seed: number }), { code: 'ZOFO_INVALID_ARG', message: /for opts/ });
});
