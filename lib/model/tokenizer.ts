/**
 * The tokenizer of a HuggingFace model directory: tokenizer.json (required) and
 * tokenizer_config.json (optional: special tokens, clean-up flags), run by the
 * maintained @huggingface/tokenizers library. This file only loads the files, maps
 * the library's errors to ZofoErrors naming the file, and gives zofo's small interface.
 */
import { join } from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { invalidArg, ZofoError } from '../errors.js';
import { readJsonFile } from '../formats/files.js';

/**
 * A model directory's tokenizer (tokenizer.json, run by @huggingface/tokenizers).
 * `encode(text)` adds the template's special tokens (e.g. a start token) unless
 * `{ addSpecialTokens: false }` is given; prompts and candidates of an example are usually
 * encoded without them.
 */
export interface Tokenizer {
  /** Token ids of `text`; with addSpecialTokens (default true) the template's <s>/</s> etc. are added. */
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
  /** Text of `ids`; with skipSpecialTokens (default false) special tokens are left out. */
  decode(ids: readonly number[], opts?: { skipSpecialTokens?: boolean }): string;
  /** One more than the largest token id, added tokens included. */
  readonly vocabSize: number;
  readonly bosTokenId?: number;
  readonly eosTokenId?: number;
  readonly padTokenId?: number;
  /** The id of one token (as spelled in the vocabulary, e.g. "Ġworld"), if it exists. */
  tokenToId(token: string): number | undefined;
}

/**
 * The part of the library's Tokenizer used here. Its .d.ts files import each other
 * without file extensions, which NodeNext resolution cannot follow, so TypeScript would
 * see `any`; this states the types instead. An id outside the vocabulary is undefined.
 */
interface HfTokenizerApi {
  encode(text: string, options: { add_special_tokens: boolean }): { ids: (number | undefined)[]; tokens: string[] };
  decode(ids: number[], options: { skip_special_tokens: boolean }): string;
  token_to_id(token: string): number | undefined;
  id_to_token(id: number): string | undefined;
  get_vocab(withAddedTokens: boolean): Map<string, number>;
}

/** tokenizer_config.json names special tokens as a string or as a serialised AddedToken `{content: ...}`. */
function specialTokenText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && value !== null && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  return undefined;
}

class HfBackedTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosTokenId?: number;
  readonly eosTokenId?: number;
  readonly padTokenId?: number;

  constructor(
    private readonly hf: HfTokenizerApi,
    private readonly file: string,
    config: Record<string, unknown>,
  ) {
    let largest = -1;
    for (const id of hf.get_vocab(true).values()) largest = Math.max(largest, id);
    this.vocabSize = largest + 1;
    this.bosTokenId = this.specialId(config.bos_token);
    this.eosTokenId = this.specialId(config.eos_token);
    this.padTokenId = this.specialId(config.pad_token);
  }

  private specialId(value: unknown): number | undefined {
    const text = specialTokenText(value);
    return text === undefined ? undefined : this.tokenToId(text);
  }

  /** Runs a library call; its failures come from the file's content, so they name the file. */
  private guard<T>(what: string, call: () => T): T {
    try {
      return call();
    } catch (err) {
      throw new ZofoError('ZOFO_BAD_FILE', `${this.file}: ${what} failed: ${(err as Error).message}`, { cause: err });
    }
  }

  encode(text: string, opts: { addSpecialTokens?: boolean } = {}): number[] {
    if (typeof text !== 'string') throw invalidArg('a string', 'text', text);
    return this.guard('encode', () => {
      const { ids, tokens } = this.hf.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true });
      // The library gives an undefined id to a piece it cannot look up (e.g. an unk_token
      // missing from the vocabulary); a model would read garbage for it.
      const missing = ids.findIndex((id) => id === undefined);
      if (missing >= 0) throw new Error(`token ${JSON.stringify(tokens[missing])} has no id in the vocabulary`);
      return ids as number[];
    });
  }

  decode(ids: readonly number[], opts: { skipSpecialTokens?: boolean } = {}): string {
    if (!Array.isArray(ids)) throw invalidArg('an array of token ids', 'ids', ids);
    // The library maps an unknown id to its unk token (or to nothing); reject it instead.
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!Number.isSafeInteger(id) || id < 0 || this.hf.id_to_token(id) === undefined) {
        throw invalidArg(`a token id in [0, ${this.vocabSize})`, `ids[${i}]`, id);
      }
    }
    if (ids.length === 0) return ''; // the library rejects an empty list
    return this.guard('decode', () => this.hf.decode([...ids], { skip_special_tokens: opts.skipSpecialTokens ?? false }));
  }

  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }
}

/**
 * Largest token id a tokenizer.json may hold without a model to compare with: 2^21, eight
 * times the largest vocabularies in use. The library's load time grows with the largest
 * id (about 2.4 s at 2^24, 14 s at 10^8), so ids are checked before it sees the file.
 */
export const MAX_TOKEN_ID = 2 ** 21;

/** Options of loadTokenizer. */
export interface LoadTokenizerOptions {
  /** The model's vocabulary size (config.json vocab_size): every token id must be below it. */
  vocabSize?: number;
}

/** Every token id tokenizer.json assigns: model.vocab ({token: id}, or Unigram's [[piece, score]] list) and added_tokens. */
function* tokenIds(json: Record<string, unknown>): Generator<{ token: string; id: unknown }> {
  const model = json.model as { vocab?: unknown } | undefined;
  const vocab = model?.vocab;
  if (Array.isArray(vocab)) {
    // Unigram: the id is the position; only the count matters.
    if (vocab.length > 0) yield { token: String((vocab.at(-1) as unknown[] | undefined)?.[0]), id: vocab.length - 1 };
  } else if (typeof vocab === 'object' && vocab !== null) {
    for (const [token, id] of Object.entries(vocab)) yield { token, id };
  }
  if (Array.isArray(json.added_tokens)) {
    for (const t of json.added_tokens as Array<{ content?: unknown; id?: unknown }>) yield { token: String(t?.content), id: t?.id };
  }
}

/** Loads `${dir}/tokenizer.json` and, when present, `${dir}/tokenizer_config.json`. */
export async function loadTokenizer(dir: string, opts: LoadTokenizerOptions = {}): Promise<Tokenizer> {
  const file = join(dir, 'tokenizer.json');
  const configFile = join(dir, 'tokenizer_config.json');
  const modelVocab = opts.vocabSize;
  if (modelVocab !== undefined && !(Number.isSafeInteger(modelVocab) && modelVocab >= 1)) throw invalidArg('a positive integer', 'vocabSize', modelVocab);
  const json = await readJsonFile(file);
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw new ZofoError('ZOFO_BAD_FILE', `${file}: not a tokenizer the library can load: not a JSON object`);
  const limit = modelVocab ?? MAX_TOKEN_ID;
  for (const { token, id } of tokenIds(json as Record<string, unknown>)) {
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0)
      throw new ZofoError('ZOFO_BAD_FILE', `${file}: token ${JSON.stringify(token)} has id ${JSON.stringify(id)}, not a non-negative integer`);
    if (id >= limit) {
      throw new ZofoError(
        'ZOFO_BAD_FILE',
        modelVocab !== undefined
          ? `${file}: token ${JSON.stringify(token)} has id ${id}, outside the model's vocabulary of ${modelVocab} (config.json vocab_size): the tokenizer is larger than the model`
          : `${file}: token ${JSON.stringify(token)} has id ${id}; ids above ${MAX_TOKEN_ID} are refused (give the model's vocabSize to allow up to it)`,
      );
    }
  }
  const config = (await readJsonFile(configFile, { optional: true })) ?? {};
  if (typeof config !== 'object' || config === null || Array.isArray(config)) {
    throw new ZofoError('ZOFO_BAD_FILE', `${configFile}: not a JSON object`);
  }
  let hf: HfTokenizerApi;
  try {
    hf = new HfTokenizer(json as object, config) as HfTokenizerApi;
  } catch (err) {
    throw new ZofoError('ZOFO_BAD_FILE', `${file}: not a tokenizer the library can load: ${(err as Error).message}`, { cause: err });
  }
  return new HfBackedTokenizer(hf, file, config as Record<string, unknown>);
}
