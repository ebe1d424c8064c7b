/**
 * The tokenizer of a HuggingFace model directory: tokenizer.json (required) and
 * tokenizer_config.json (optional: special tokens, clean-up flags), run by the
 * maintained @huggingface/tokenizers library. This file only loads the files, maps
 * the library's errors to ZofoErrors naming the file, and gives zofo's small interface.
 */
import { join } from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { invalidArg, ZofoError } from '../errors.js';
import { readJsonFile } from './config.js';

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

  constructor(private readonly hf: HfTokenizerApi, private readonly file: string, config: Record<string, unknown>) {
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

/** How far token ids may run past the number of tokens: ids are dense in real tokenizers. */
const MAX_ID_GAP = 1 << 16;

/**
 * The library sizes its tables by the largest token id: one huge id in a vocabulary or in
 * added_tokens stalls loading for minutes and costs gigabytes. Ids must be integers below
 * the number of tokens plus MAX_ID_GAP.
 */
function checkTokenIds(file: string, json: unknown): void {
  if (typeof json !== 'object' || json === null) return; // the library names what is wrong
  const ids: [string, unknown][] = [];
  const vocab = (json as { model?: { vocab?: unknown } }).model?.vocab;
  if (typeof vocab === 'object' && vocab !== null && !Array.isArray(vocab)) {
    for (const [token, id] of Object.entries(vocab)) ids.push([`model.vocab[${JSON.stringify(token)}]`, id]);
  }
  const added = (json as { added_tokens?: unknown }).added_tokens;
  if (Array.isArray(added)) added.forEach((t, i) => ids.push([`added_tokens[${i}].id`, (t as { id?: unknown })?.id]));
  const limit = ids.length + MAX_ID_GAP;
  for (const [where, id] of ids) {
    if (id === undefined) continue;
    if (!Number.isSafeInteger(id) || (id as number) < 0 || (id as number) >= limit) {
      throw new ZofoError('ZOFO_BAD_FILE', `${file}: ${where} is ${JSON.stringify(id)}; token ids must be integers in [0, ${limit}) for ${ids.length} tokens`);
    }
  }
}

/** Loads `${dir}/tokenizer.json` and, when present, `${dir}/tokenizer_config.json`. */
export async function loadTokenizer(dir: string): Promise<Tokenizer> {
  const file = join(dir, 'tokenizer.json');
  const configFile = join(dir, 'tokenizer_config.json');
  const json = await readJsonFile(file, 'ZOFO_BAD_FILE');
  const config = (await readJsonFile(configFile, 'ZOFO_BAD_FILE', true)) ?? {};
  if (typeof config !== 'object' || config === null || Array.isArray(config)) {
    throw new ZofoError('ZOFO_BAD_FILE', `${configFile}: not a JSON object`);
  }
  checkTokenIds(file, json);
  let hf: HfTokenizerApi;
  try {
    hf = new HfTokenizer(json as object, config) as HfTokenizerApi;
  } catch (err) {
    throw new ZofoError('ZOFO_BAD_FILE', `${file}: not a tokenizer the library can load: ${(err as Error).message}`, { cause: err });
  }
  return new HfBackedTokenizer(hf, file, config as Record<string, unknown>);
}
