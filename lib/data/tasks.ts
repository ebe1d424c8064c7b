/**
 * Task loaders with MeZO's prompts (princeton-nlp/MeZO `large_models/templates.py`),
 * producing zofo Examples (token ids) from a Tokenizer, and MeZO's seeded sampling of
 * train / dev / eval subsets (docs/algorithm.md §5, after MeZO's reference prompts).
 *
 * Formats: `sst2` (GLUE TSV), `wsc` (SuperGLUE JSONL), `winogrande` (JSONL) and `jsonl`
 * (a user's {prompt, candidates, label} or {prompt, target} rows). Every malformed row is
 * a ZOFO_BAD_FILE `<file>:<line>: <what is wrong>`, unless `skipBad` is set, which skips it
 * and lists its line in `Task.skipped`.
 *
 * Tokenization follows MeZO's `encode_prompt`: a candidate's tokens are the tail of the
 * joint encoding of prompt + candidate past the prompt's own tokens (for byte-level BPE
 * this equals encoding " great" alone; for SentencePiece-style tokenizers, which prepend
 * "▁" to every text they encode, only the joint encoding is right). The prompt gets the
 * special tokens the tokenizer's template puts before the text (a BOS), never those it
 * puts after it (an EOS): a continuation follows the prompt.
 */
import { stat } from 'node:fs/promises';
import { invalidArg, ZofoError } from '../errors.js';
import { badFile, checkJsonLimits, ioError, isRecord, readRegularFile } from '../formats/files.js';
import type { ClassificationExample, Example, LmExample } from '../model/model.js';
import type { Tokenizer } from '../model/tokenizer.js';

/**
 * The task formats `loadTask()` reads.
 */
export const TASK_NAMES = ['sst2', 'wsc', 'winogrande', 'jsonl'] as const;
/**
 * One of `TASK_NAMES`.
 */
export type TaskName = (typeof TASK_NAMES)[number];

/** The text an example was built from, before tokenization (for debugging and reports). */
export interface TaskText {
  /** 1-based line of the file. */
  line: number;
  prompt: string;
  /** Classification: the candidate continuations, in label order. */
  candidates?: string[];
  /** LM: the target continuation. */
  target?: string;
}

/**
 * A loaded task: its name and file, the tokenised examples, and the text each was built from.
 */
export interface Task {
  name: TaskName;
  file: string;
  /** 'classification' (prompt + candidates + label) or 'lm' (prompt + target); never mixed. */
  kind: 'classification' | 'lm';
  examples: Example[];
  /** texts[i] is what examples[i] was built from. */
  texts: TaskText[];
  /** How the task departs from MeZO, where it does. */
  note?: string;
  /** With skipBad: the lines of the malformed rows that were left out, in file order. */
  skipped?: number[];
}

/**
 * Options of `loadTask()`: how many rows, which rows to tokenise, what to do with malformed rows, and task-specific scoring.
 */
export interface LoadTaskOptions {
  /** Read only the first `limit` well-formed rows of the file. */
  limit?: number;
  /**
   * Tokenize only some rows: called with the number n of well-formed rows read, returns
   * the indices (0 .. n-1) of those to keep, in the order wanted. Tokenizing is most of a
   * load's time, so `(n) => sampleIndices(n, 1500, seed)` loads MeZO's 1000 train + 500
   * dev sample of SST-2 (examples 0..999 and 1000..1499, as splitTask would split them)
   * without tokenizing its 67k rows.
   */
  pick?: (n: number) => readonly number[];
  /** Skip malformed rows (listing their lines in Task.skipped) instead of throwing. */
  skipBad?: boolean;
  /**
   * WinoGrande scoring. 'prefix' (default): the sentence before "_" is the prompt and each
   * candidate is option + rest of the sentence, scored as a whole. 'full' (MeZO's
   * WinograndeTemplate exactly): the prompt is the BOS token alone and each candidate is
   * the whole sentence with the option substituted.
   */
  winogrande?: 'prefix' | 'full';
  /** Refuse a file larger than this many bytes (default TASK_LIMITS.maxFileBytes, 1 GiB), before reading it. */
  maxFileBytes?: number;
  /** Refuse a row whose line is longer than this many characters (default TASK_LIMITS.maxLineChars, 1,000,000), before parsing or tokenizing it. */
  maxLineChars?: number;
  /** Refuse an example whose prompt plus longest continuation exceeds this many tokens (default TASK_LIMITS.maxTokens, 65,536). */
  maxTokens?: number;
}

/**
 * Default input limits of loadTask: a hostile or mistaken file (a 50 MB line, a binary
 * file) is refused with an error naming the limit, before it costs gigabytes.
 */
export const TASK_LIMITS = { maxFileBytes: 2 ** 30, maxLineChars: 1_000_000, maxTokens: 65_536 } as const;

const WINOGRANDE_NOTES = {
  prefix:
    'WinoGrande: prompt = the sentence before "_"; candidate c = option c + the rest of the sentence, ' +
    'scored given the prefix (mean log-prob of the option + suffix tokens). MeZO instead scores the whole ' +
    'sentence with the option substituted, given only BOS (winogrande: "full"); the "partial scoring" of ' +
    'GPT-3 / lm-eval-harness scores only the suffix given prefix + option, which one prompt with K ' +
    'candidates cannot express.',
  full: 'WinoGrande as in MeZO: prompt = BOS alone; candidate c = the whole sentence with option c substituted ' + 'for "_", every token of it scored.',
} as const;

/** A malformed row: the loader adds `<file>:<line>: ` (or skips the row with skipBad). */
class RowError extends Error {}

/** What one row yields before tokenization. */
type Row = { prompt: string; candidates: string[]; label: number } | { prompt: string; target: string };

const describeJson = (v: unknown): string =>
  v === null
    ? 'null'
    : Array.isArray(v)
      ? 'an array'
      : typeof v === 'string'
        ? `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}`
        : typeof v === 'object'
          ? 'an object'
          : `${typeof v} ${String(v)}`;

function field<T>(obj: Record<string, unknown>, key: string, what: string, ok: (v: unknown) => v is T, path = key): T {
  if (!(key in obj) || obj[key] === undefined) throw new RowError(`missing field "${path}"`);
  const v = obj[key];
  if (!ok(v)) throw new RowError(`field "${path}" must be ${what}, not ${describeJson(v)}`);
  return v;
}
const isString = (v: unknown): v is string => typeof v === 'string';
const nonEmpty = (s: string, path: string): string => {
  if (s.trim() === '') throw new RowError(`field "${path}" is empty`);
  return s;
};
// MeZO's encode_prompt applies .strip(' ') (spaces only) to every prompt it builds.
const stripSpaces = (s: string): string => s.replace(/^ +| +$/g, '');

// SST-2 (MeZO SST2Template): "<sentence> It was" → " terrible" (0) / " great" (1).
function sst2Row(cols: string[], at: { sentence: number; label: number }): Row {
  const sentence = cols[at.sentence].trim();
  if (sentence === '') throw new RowError('the sentence is empty');
  const label = cols[at.label].trim();
  if (label !== '0' && label !== '1') throw new RowError(`label must be 0 or 1, not ${JSON.stringify(label)}`);
  return { prompt: `${sentence} It was`, candidates: [' terrible', ' great'], label: Number(label) };
}

// SuperGLUE WSC (MeZO WSCTemplate, from PromptSource): the answer follows a newline.
function wscRow(obj: Record<string, unknown>): Row {
  const text = nonEmpty(field(obj, 'text', 'a string', isString), 'text');
  const target = field(obj, 'target', 'an object', isRecord);
  const span1 = nonEmpty(field(target, 'span1_text', 'a string', isString, 'target.span1_text'), 'target.span1_text');
  const span2 = nonEmpty(field(target, 'span2_text', 'a string', isString, 'target.span2_text'), 'target.span2_text');
  for (const key of ['span1_index', 'span2_index']) {
    const v = target[key];
    if (v !== undefined && !(Number.isSafeInteger(v) && (v as number) >= 0)) {
      throw new RowError(`field "target.${key}" must be a non-negative integer, not ${describeJson(v)}`);
    }
  }
  const label = field(obj, 'label', 'true or false', (v): v is boolean | number => typeof v === 'boolean' || typeof v === 'number');
  if (typeof label === 'number' && label !== 0 && label !== 1) throw new RowError(`label must be true or false (or 0 or 1), not ${label}`);
  const prompt = stripSpaces(`${text}\nIn the previous sentence, does the pronoun "${span2.toLowerCase()}" refer to ${span1}? Yes or No?\n`);
  return { prompt, candidates: ['No', 'Yes'], label: Number(label) };
}

// WinoGrande (MeZO WinograndeTemplate substitutes the option for "_").
function winograndeRow(obj: Record<string, unknown>, mode: 'prefix' | 'full'): Row {
  const sentence = nonEmpty(field(obj, 'sentence', 'a string', isString), 'sentence');
  const options = [1, 2].map((i) => nonEmpty(field(obj, `option${i}`, 'a string', isString), `option${i}`));
  const answer = field(obj, 'answer', '"1" or "2"', (v): v is string | number => typeof v === 'string' || typeof v === 'number');
  if (String(answer) !== '1' && String(answer) !== '2') throw new RowError(`answer must be "1" or "2", not ${JSON.stringify(answer)}`);
  const blanks = sentence.split('_').length - 1;
  if (blanks !== 1) throw new RowError(`the sentence must hold exactly one "_", but it holds ${blanks}`);
  const label = Number(answer) - 1;
  if (mode === 'full') {
    return { prompt: '', candidates: options.map((o) => stripSpaces(sentence.replace('_', o))), label };
  }
  const at = sentence.indexOf('_');
  const prefix = sentence.slice(0, at).replace(/^ +/, ''),
    suffix = sentence.slice(at + 1).replace(/ +$/, '');
  return { prompt: prefix, candidates: options.map((o) => o + suffix), label };
}

// A user's JSONL: {prompt, candidates: string[], label} or {prompt, target}.
function jsonlRow(obj: Record<string, unknown>): Row {
  const prompt = field(obj, 'prompt', 'a string', isString);
  const hasCandidates = 'candidates' in obj,
    hasTarget = 'target' in obj;
  if (hasCandidates && hasTarget) throw new RowError('a row has either "candidates" (classification) or "target" (LM), not both');
  if (hasTarget) return { prompt, target: field(obj, 'target', 'a string', isString) };
  if (!hasCandidates) throw new RowError('missing field "candidates" (classification) or "target" (LM)');
  const candidates = field(obj, 'candidates', 'an array of strings', (v): v is string[] => Array.isArray(v) && v.every(isString));
  if (candidates.length < 2) throw new RowError(`field "candidates" must hold at least 2 strings, not ${candidates.length}`);
  const label = field(obj, 'label', 'an integer', (v): v is number => Number.isSafeInteger(v));
  if (label < 0 || label >= candidates.length) throw new RowError(`label ${label} is out of range 0 .. ${candidates.length - 1}`);
  return { prompt, candidates, label };
}

const sameIds = (a: readonly number[], aFrom: number, b: readonly number[]): boolean => {
  if (aFrom + b.length > a.length) return false;
  for (let i = 0; i < b.length; i++) if (a[aFrom + i] !== b[i]) return false;
  return true;
};

/** Turns prompt / continuation texts into token ids, MeZO's way (see the file comment). */
class Encoder {
  /** The template's special tokens around an empty text, e.g. [<s>, </s>]. */
  readonly #specials: number[];
  /** How many of them precede the text (found on the first prompt); null: a template of another shape. */
  #lead: number | null | undefined;

  constructor(private readonly tok: Tokenizer) {
    this.#specials = this.encode('', true);
  }

  encode(text: string, specials: boolean): number[] {
    try {
      return this.tok.encode(text, { addSpecialTokens: specials });
    } catch (err) {
      throw new RowError(`cannot tokenize ${describeJson(text)}: ${(err as Error).message}`);
    }
  }

  /** The prompt's ids: the template's leading specials, then the text; trailing specials dropped. */
  prompt(text: string, plain: number[]): number[] {
    // An empty text: the BOS alone, so the first continuation token has a context.
    if (plain.length === 0) return this.tok.bosTokenId === undefined ? [] : [this.tok.bosTokenId];
    const s = this.#specials;
    if (typeof this.#lead === 'number') return [...s.slice(0, this.#lead), ...plain];
    const full = this.encode(text, true);
    if (this.#lead === undefined) {
      // full = s[0, p) + plain + s[p, end) for the template's split p (the same for every
      // text, so it is found once); prefer the largest.
      this.#lead = null;
      for (let p = s.length; p >= 0; p--) {
        if (
          full.length === s.length + plain.length &&
          sameIds(full, 0, s.slice(0, p)) &&
          sameIds(full, p, plain) &&
          sameIds(full, p + plain.length, s.slice(p))
        ) {
          this.#lead = p;
          return full.slice(0, p + plain.length);
        }
      }
    }
    return full; // a template of another shape: keep what it gives
  }

  /**
   * The continuation's ids: the tail of the joint encoding past the prompt's own ids; when a
   * token spans the boundary (the joint encoding does not start with the prompt's ids), the
   * continuation encoded on its own.
   */
  continuation(promptText: string, promptPlain: number[], text: string): number[] {
    const joint = this.encode(promptText + text, false);
    return sameIds(joint, 0, promptPlain) ? joint.slice(promptPlain.length) : this.encode(text, false);
  }

  /** A row's example and texts; trailing spaces of the prompt move to each continuation. Refuses more than `maxTokens` tokens. */
  example(row: Row, line: number, maxTokens: number = TASK_LIMITS.maxTokens): { example: Example; text: TaskText } {
    const made = this.#example(row, line);
    const e = made.example;
    const longest = 'target' in e ? e.target.length : Math.max(...e.candidates.map((c) => c.length));
    if (e.prompt.length + longest > maxTokens) {
      throw new RowError(
        `the example has ${e.prompt.length + longest} tokens (prompt ${e.prompt.length} + continuation ${longest}), over the limit of ${maxTokens} (maxTokens)`,
      );
    }
    return made;
  }

  #example(row: Row, line: number): { example: Example; text: TaskText } {
    const spaces = /( *)$/.exec(row.prompt)![1];
    const prompt = row.prompt.slice(0, row.prompt.length - spaces.length);
    const plain = this.encode(prompt, false);
    const promptIds = this.prompt(prompt, plain);
    if (promptIds.length === 0) {
      throw new RowError(
        prompt === '' ? 'the prompt is empty and the tokenizer has no BOS token to stand for it' : `the prompt ${describeJson(prompt)} tokenizes to nothing`,
      );
    }
    const continuation = (text: string, what: string): number[] => {
      const ids = this.continuation(prompt, plain, text);
      if (ids.length === 0) throw new RowError(`${what} ${describeJson(text)} tokenizes to nothing`);
      return ids;
    };
    if ('target' in row) {
      const target = spaces + row.target;
      const example: LmExample = { prompt: promptIds, target: continuation(target, 'the target') };
      return { example, text: { line, prompt, target } };
    }
    const candidates = row.candidates.map((c) => spaces + c);
    const example: ClassificationExample = {
      prompt: promptIds,
      candidates: candidates.map((c, i) => continuation(c, `candidate ${i}`)),
      label: row.label,
    };
    return { example, text: { line, prompt, candidates } };
  }
}

async function readLines(file: string, maxFileBytes: number): Promise<string[]> {
  let bytes: Uint8Array;
  try {
    const size = (await stat(file)).size;
    if (size > maxFileBytes) throw badFile(file, `the file is ${size} bytes, over the limit of ${maxFileBytes} (maxFileBytes)`);
    // A regular file only: a FIFO or device in its place is refused, never waited on.
    bytes = await readRegularFile(file, maxFileBytes);
  } catch (err) {
    throw ioError(file, 'cannot read', err);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw badFile(file, 'not valid UTF-8');
  }
  if (text.startsWith('\uFEFF')) text = text.slice(1);
  return text.split('\n').map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
}

/**
 * Loads a task file as zofo Examples. `sst2`: a GLUE SST-2 TSV with the header
 * `sentence<TAB>label`; `wsc`: SuperGLUE WSC JSONL ({text, target: {span1_text,
 * span2_text}, label}); `winogrande`: WinoGrande JSONL ({sentence, option1, option2,
 * answer}); `jsonl`: {prompt, candidates, label} or {prompt, target} per line.
 * Empty lines are skipped; a malformed row throws ZOFO_BAD_FILE `<file>:<line>: …`
 * (the rows are all parsed first, then tokenized: a row that only fails to tokenize is
 * reported after the parse errors, and only if `pick` keeps it).
 *
 * @example
 * ```ts
 * import { loadModel, loadTask, sampleIndices, splitTask } from 'zofo';
 *
 * const model = await loadModel('./opt-125m');
 * // MeZO's SST-2 sample: 1000 train + 500 dev examples, tokenising only those rows.
 * const task = await loadTask('sst2', './SST-2/train.tsv', model.tokenizer!, { pick: (n) => sampleIndices(n, 1500, 0) });
 * const train = task.examples.slice(0, 1000), dev = task.examples.slice(1000);
 * ```
 */
export async function loadTask(name: TaskName, file: string, tokenizer: Tokenizer, opts: LoadTaskOptions = {}): Promise<Task> {
  if (!(TASK_NAMES as readonly unknown[]).includes(name)) throw invalidArg(`one of ${TASK_NAMES.map((n) => `'${n}'`).join(', ')}`, 'name', name);
  if (typeof file !== 'string' || file.length === 0) throw invalidArg('a file path', 'file', file);
  if (typeof tokenizer !== 'object' || tokenizer === null || typeof tokenizer.encode !== 'function') throw invalidArg('a Tokenizer', 'tokenizer', tokenizer);
  if (typeof opts !== 'object' || opts === null) throw invalidArg('an options object', 'opts', opts);
  const limit = opts.limit ?? Infinity;
  if (limit !== Infinity && !(Number.isSafeInteger(limit) && limit >= 1)) throw invalidArg('a positive integer', 'opts.limit', opts.limit);
  const skipBad = opts.skipBad ?? false;
  if (typeof skipBad !== 'boolean') throw invalidArg('a boolean', 'opts.skipBad', opts.skipBad);
  const mode = opts.winogrande ?? 'prefix';
  if (mode !== 'prefix' && mode !== 'full') throw invalidArg("'prefix' or 'full'", 'opts.winogrande', opts.winogrande);
  const inputLimit = (key: keyof typeof TASK_LIMITS): number => {
    const value = opts[key] ?? TASK_LIMITS[key];
    if (!Number.isSafeInteger(value) || value < 1) throw invalidArg('a positive integer', `opts.${key}`, value);
    return value;
  };
  const maxFileBytes = inputLimit('maxFileBytes'),
    maxLineChars = inputLimit('maxLineChars'),
    maxTokens = inputLimit('maxTokens');

  const lines = await readLines(file, maxFileBytes);
  let encoder: Encoder;
  try {
    encoder = new Encoder(tokenizer);
  } catch (err) {
    throw err instanceof RowError ? new ZofoError('ZOFO_INVALID_ARG', `loadTask: the tokenizer cannot encode an empty text: ${err.message}`) : err;
  }
  // Pass 1: parse and check every row (cheap); pass 2: tokenize the picked ones.
  const rows: { row: Row; line: number }[] = [],
    skipped: number[] = [];
  let kind: Task['kind'] | undefined;
  const bad = (line: number, err: unknown): void => {
    if (!(err instanceof RowError)) throw err;
    if (!skipBad) throw badFile(`${file}:${line}`, err.message);
    skipped.push(line);
  };
  let first = 0;
  let tsv: { sentence: number; label: number } | undefined;
  if (name === 'sst2') {
    first = lines.findIndex((l) => l.trim() !== '');
    if (first >= 0 && lines[first].length > maxLineChars)
      throw badFile(`${file}:${first + 1}`, `the header line has ${lines[first].length} characters, over the limit of ${maxLineChars} (maxLineChars)`);
    const header = first < 0 ? [] : lines[first].split('\t').map((h) => h.trim());
    const sentence = header.indexOf('sentence'),
      label = header.indexOf('label');
    if (header.length !== 2 || sentence < 0 || label < 0) {
      throw badFile(
        `${file}:${first < 0 ? 1 : first + 1}`,
        `expected the header "sentence<TAB>label" of a GLUE SST-2 TSV, not ${JSON.stringify(first < 0 ? '' : lines[first])}`,
      );
    }
    tsv = { sentence, label };
    first++;
  }
  for (let i = first; i < lines.length && rows.length < limit; i++) {
    const line = lines[i];
    if (line.length > maxLineChars) {
      bad(i + 1, new RowError(`the line has ${line.length} characters, over the limit of ${maxLineChars} (maxLineChars)`));
      continue;
    }
    if (line.trim() === '') continue;
    try {
      let row: Row;
      if (tsv) {
        const cols = line.split('\t');
        if (cols.length !== 2) throw new RowError(`expected 2 tab-separated columns, found ${cols.length}`);
        row = sst2Row(cols, tsv);
      } else {
        let obj: unknown;
        try {
          checkJsonLimits('the row', line); // nesting walked later (messages, tokenization) stays bounded
          obj = JSON.parse(line);
        } catch (err) {
          throw new RowError(`not valid JSON (${(err as Error).message})`);
        }
        if (!isRecord(obj)) throw new RowError(`expected a JSON object, not ${describeJson(obj)}`);
        row = name === 'wsc' ? wscRow(obj) : name === 'winogrande' ? winograndeRow(obj, mode) : jsonlRow(obj);
      }
      const rowKind = 'target' in row ? 'lm' : 'classification';
      if (kind !== undefined && rowKind !== kind) {
        throw new RowError(
          `${rowKind === 'lm' ? 'an LM row ({prompt, target})' : 'a classification row ({prompt, candidates, label})'} in a file of ${kind === 'lm' ? 'LM' : 'classification'} rows; a task holds one kind`,
        );
      }
      kind = rowKind;
      rows.push({ row, line: i + 1 });
    } catch (err) {
      bad(i + 1, err);
    }
  }

  let picked: readonly number[] = rows.map((_, i) => i);
  if (opts.pick !== undefined) {
    if (typeof opts.pick !== 'function') throw invalidArg('a function (n) => indices', 'opts.pick', opts.pick);
    picked = opts.pick(rows.length);
    if (!Array.isArray(picked)) throw invalidArg('an array of row indices from opts.pick', 'opts.pick(n)', picked);
    picked.forEach((r, i) => {
      if (!Number.isSafeInteger(r) || r < 0 || r >= rows.length)
        throw invalidArg(`a row index in 0 .. ${rows.length - 1}`, `opts.pick(${rows.length})[${i}]`, r);
    });
  }
  const examples: Example[] = [],
    texts: TaskText[] = [];
  for (const r of picked) {
    try {
      const { example, text } = encoder.example(rows[r].row, rows[r].line, maxTokens);
      examples.push(example);
      texts.push(text);
    } catch (err) {
      bad(rows[r].line, err);
    }
  }
  skipped.sort((x, y) => x - y);
  if (examples.length === 0) {
    if (picked.length === 0 && rows.length > 0)
      throw new ZofoError('ZOFO_INVALID_ARG', `loadTask: opts.pick picked none of the ${rows.length} rows of ${file}`);
    throw badFile(
      file,
      skipped.length > 0
        ? `no usable rows (${skipped.length} malformed, skipped: lines ${skipped.slice(0, 10).join(', ')}${skipped.length > 10 ? ', …' : ''})`
        : 'no examples',
    );
  }
  const task: Task = { name, file, kind: kind!, examples, texts };
  if (name === 'winogrande') task.note = WINOGRANDE_NOTES[mode];
  if (skipBad) task.skipped = skipped;
  return task;
}

// ---------------------------------------------------------------------------------------
// MeZO's sampling: `np.random.seed(seed); np.random.permutation(n)[:k]` (Dataset.sample_subset),
// reproduced exactly — MT19937 seeded by init_genrand, numpy's legacy Fisher–Yates shuffle
// drawing each index by masked rejection — so a seed picks the examples MeZO picks from a
// file in the same order (GLUE's train.tsv is the order of HF datasets' glue/sst2 train).

class MT19937 {
  readonly #mt = new Uint32Array(624);
  #i = 624;

  constructor(seed: number) {
    const mt = this.#mt;
    mt[0] = seed >>> 0;
    for (let k = 1; k < 624; k++) mt[k] = (Math.imul(1812433253, mt[k - 1] ^ (mt[k - 1] >>> 30)) + k) >>> 0;
  }

  next(): number {
    const mt = this.#mt;
    if (this.#i >= 624) {
      for (let k = 0; k < 624; k++) {
        const y = (mt[k] & 0x80000000) | (mt[(k + 1) % 624] & 0x7fffffff);
        mt[k] = mt[(k + 397) % 624] ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
      }
      this.#i = 0;
    }
    let y = mt[this.#i++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }
}

/** numpy's random_interval: uniform in [0, max] by masked rejection (max < 2^32). */
function randomInterval(rng: MT19937, max: number): number {
  if (max === 0) return 0;
  let mask = max;
  mask |= mask >>> 1;
  mask |= mask >>> 2;
  mask |= mask >>> 4;
  mask |= mask >>> 8;
  mask |= mask >>> 16;
  mask >>>= 0;
  for (;;) {
    const v = (rng.next() & mask) >>> 0;
    if (v <= max) return v;
  }
}

function checkSeed(seed: unknown, name: string): number {
  if (!Number.isSafeInteger(seed) || (seed as number) < 0 || (seed as number) > 0xffffffff) throw invalidArg('an integer seed in 0 .. 2^32 - 1', name, seed);
  return seed as number;
}

/** numpy's `np.random.RandomState(seed).permutation(n)`, as an array. */
function mezoPermutation(n: number, seed: number): Uint32Array {
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  const rng = new MT19937(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = randomInterval(rng, i);
    const t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  return p;
}

/** Most items sampleIndices draws from, 2^28: its permutation of n items takes 4·n bytes. */
export const MAX_SAMPLE_ITEMS = 2 ** 28;

/**
 * k distinct indices into n items, chosen by `seed` as MeZO's `sample_subset` does
 * (`np.random.seed(seed); np.random.permutation(n)[:k]`), in that order.
 */
export function sampleIndices(n: number, k: number, seed: number): number[] {
  if (!Number.isSafeInteger(n) || n < 0 || n > MAX_SAMPLE_ITEMS) throw invalidArg(`a number of items (an integer in 0 .. ${MAX_SAMPLE_ITEMS})`, 'n', n);
  if (!Number.isSafeInteger(k) || k < 0) throw invalidArg('a sample size (an integer ≥ 0)', 'k', k);
  checkSeed(seed, 'seed');
  if (k > n) throw new ZofoError('ZOFO_INVALID_ARG', `cannot sample k = ${k} examples without replacement from n = ${n}`);
  return Array.from(mezoPermutation(n, seed).subarray(0, k));
}

/** k examples sampled without replacement by `seed`: the ones MeZO's sample_subset picks. */
export function sampleExamples<T>(examples: readonly T[], k: number, seed: number): T[] {
  if (!Array.isArray(examples)) throw invalidArg('an array of examples', 'examples', examples);
  return sampleIndices(examples.length, k, seed).map((i) => examples[i]);
}

/** Options of `splitTask()`: the sizes of the train and dev samples and the seed that draws them. */
export interface SplitOptions {
  train: number;
  dev: number;
  seed: number;
}

/**
 * Disjoint train and dev samples, as MeZO's run.py draws them: one sample of train + dev
 * examples by `seed`, the first `train` of it for training and the last `dev` for dev.
 * Pass the indices 0..n-1 as `examples` to get indices (to keep Task.texts aligned).
 */
export function splitTask<T>(examples: readonly T[], opts: SplitOptions): { train: T[]; dev: T[] } {
  if (!Array.isArray(examples)) throw invalidArg('an array of examples', 'examples', examples);
  if (typeof opts !== 'object' || opts === null) throw invalidArg('{ train, dev, seed }', 'opts', opts);
  const { train, dev, seed } = opts;
  if (!Number.isSafeInteger(train) || train < 0) throw invalidArg('a number of train examples (an integer ≥ 0)', 'opts.train', train);
  if (!Number.isSafeInteger(dev) || dev < 0) throw invalidArg('a number of dev examples (an integer ≥ 0)', 'opts.dev', dev);
  checkSeed(seed, 'opts.seed');
  if (train + dev > examples.length) {
    throw new ZofoError('ZOFO_INVALID_ARG', `cannot split train = ${train} + dev = ${dev} examples without replacement from n = ${examples.length}`);
  }
  const picked = sampleIndices(examples.length, train + dev, seed).map((i) => examples[i]);
  return { train: picked.slice(0, train), dev: picked.slice(train) };
}
