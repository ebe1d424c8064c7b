/**
 * The synthetic review language of `zofo demo`: a fixed vocabulary (≈ 230 words), a
 * WordLevel tokenizer for it (HF tokenizer.json), and seeded generators of
 *
 *   - reviews of three kinds, each with a sentiment label:
 *       simple    "The soup was tasty, and I loved the staff."          → great
 *       negation  "The pasta was not fresh. We ordered the wine."      → terrible
 *       contrast  "The room was lovely, but the bed was dirty."       → terrible
 *     (a negated adjective flips its polarity; after "but" the last clause decides);
 *   - the pretraining corpus: mostly simple reviews closed by a verdict "It was great." /
 *     "It was terrible." (with label noise), plus plain descriptive text in which negation
 *     and contrast occur but no verdict follows them. A model pretrained on it knows the
 *     words and the verdict format but has seen few verdicts on negated or contrasted
 *     reviews, so it is good on simple reviews and weak on the others: what the demo's
 *     fine-tuning then teaches.
 *
 * Everything is deterministic from the seeds given; nothing here touches the model.
 */

/** mulberry32: a small seeded generator (uniform in [0, 1)). */
export class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = (seed >>> 0) ^ 0x9e3779b9;
  }
  next(): number {
    this.#s = (this.#s + 0x6d2b79f5) >>> 0;
    let t = this.#s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [items[i], items[j]] = [items[j], items[i]];
    }
    return items;
  }
}

// ---- the lexicon ----

export const NOUNS = [
  'food',
  'service',
  'staff',
  'waiter',
  'pizza',
  'pasta',
  'soup',
  'salad',
  'steak',
  'coffee',
  'dessert',
  'bread',
  'wine',
  'beer',
  'menu',
  'room',
  'bed',
  'hotel',
  'view',
  'pool',
  'movie',
  'film',
  'plot',
  'acting',
  'music',
  'ending',
  'story',
  'book',
  'game',
  'phone',
  'screen',
  'battery',
  'camera',
  'price',
  'shop',
  'car',
  'seats',
  'show',
  'song',
  'chef',
] as const;
export const POSITIVE_ADJECTIVES = [
  'good',
  'nice',
  'excellent',
  'wonderful',
  'delicious',
  'amazing',
  'fantastic',
  'lovely',
  'fresh',
  'friendly',
  'perfect',
  'superb',
  'pleasant',
  'brilliant',
  'tasty',
  'charming',
  'clean',
  'enjoyable',
  'fun',
  'beautiful',
  'solid',
  'impressive',
  'awesome',
  'cozy',
] as const;
export const NEGATIVE_ADJECTIVES = [
  'bad',
  'awful',
  'horrible',
  'poor',
  'bland',
  'boring',
  'rude',
  'dirty',
  'stale',
  'disappointing',
  'mediocre',
  'dull',
  'slow',
  'noisy',
  'greasy',
  'soggy',
  'ugly',
  'weak',
  'annoying',
  'broken',
  'overpriced',
  'unpleasant',
  'disgusting',
  'lousy',
] as const;
export const NEUTRAL_ADJECTIVES = ['big', 'small', 'new', 'old', 'red', 'blue', 'round', 'long', 'short', 'busy', 'dark', 'full'] as const;
export const POSITIVE_VERBS = ['loved', 'liked', 'enjoyed', 'adored', 'appreciated', 'praised', 'admired', 'recommend'] as const;
export const NEGATIVE_VERBS = ['hated', 'disliked', 'regretted', 'despised', 'resented', 'loathed', 'avoided', 'mocked'] as const;
export const INTENSIFIERS = ['very', 'really', 'quite', 'so', 'truly', 'extremely', 'rather', 'pretty'] as const;
export const DETERMINERS = ['the', 'this', 'our', 'my', 'their'] as const;
export const SUBJECTS = ['i', 'we', 'they', 'everyone'] as const;
const NEUTRAL_VERBS = ['ordered', 'watched', 'bought', 'tried', 'saw', 'visited', 'checked', 'shared'] as const;
const DAYS = ['monday', 'tuesday', 'friday', 'saturday', 'sunday', 'weekend', 'evening', 'night'] as const;
const COMPANY = ['friends', 'family', 'kids', 'parents', 'colleagues', 'wife', 'husband', 'sister'] as const;
const FUNCTION_WORDS = [
  'was',
  'is',
  'not',
  'and',
  'but',
  'it',
  'a',
  'on',
  'with',
  'there',
  'went',
  'last',
  'my',
  'to',
  'of',
  'also',
  'for',
  'two',
  'hours',
  'again',
  'back',
  'will',
  'come',
  'day',
  'next',
  'time',
  'in',
  'at',
  'one',
  'after',
] as const;
/** The verdict words: the classification candidates (" terrible" = 0, " great" = 1). */
export const VERDICTS = ['terrible', 'great'] as const;
const PUNCTUATION = ['.', ',', '!', ';'] as const;

/** Special tokens: ids 0..3. */
export const SPECIAL_TOKENS = ['<unk>', '<s>', '</s>', '<pad>'] as const;

/** Every token, in id order: the specials, then the words and punctuation in first-seen order. */
export function vocabulary(): string[] {
  const seen = new Set<string>(SPECIAL_TOKENS);
  const lists: readonly (readonly string[])[] = [
    VERDICTS,
    PUNCTUATION,
    FUNCTION_WORDS,
    DETERMINERS,
    SUBJECTS,
    INTENSIFIERS,
    NOUNS,
    POSITIVE_ADJECTIVES,
    NEGATIVE_ADJECTIVES,
    NEUTRAL_ADJECTIVES,
    POSITIVE_VERBS,
    NEGATIVE_VERBS,
    NEUTRAL_VERBS,
    DAYS,
    COMPANY,
  ];
  for (const list of lists) for (const w of list) seen.add(w);
  return [...seen];
}

/**
 * The HF tokenizer files: tokenizer.json (Lowercase normalizer, Whitespace pre-tokenizer,
 * i.e. words and punctuation runs split apart, WordLevel model with <unk>) and
 * tokenizer_config.json (special tokens). Leading spaces are dropped by the
 * pre-tokenizer, so " great" and "great" are the same single token. No post-processor:
 * encode() never adds <s>/</s>, and the model is trained on text without them.
 */
export function tokenizerFiles(): { tokenizer: object; config: object } {
  const vocab = vocabulary();
  const special = (content: string) => ({
    id: vocab.indexOf(content),
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  return {
    tokenizer: {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: SPECIAL_TOKENS.map(special),
      normalizer: { type: 'Lowercase' },
      pre_tokenizer: { type: 'Whitespace' },
      post_processor: null,
      decoder: null,
      model: { type: 'WordLevel', vocab: Object.fromEntries(vocab.map((w, i) => [w, i])), unk_token: '<unk>' },
    },
    config: {
      tokenizer_class: 'PreTrainedTokenizerFast',
      unk_token: '<unk>',
      bos_token: '<s>',
      eos_token: '</s>',
      pad_token: '<pad>',
      clean_up_tokenization_spaces: true,
      model_max_length: 64,
    },
  };
}

// ---- reviews ----

export type ReviewKind = 'simple' | 'negation' | 'contrast';
export const REVIEW_KINDS: readonly ReviewKind[] = ['simple', 'negation', 'contrast'];

export interface Review {
  /** The review text, e.g. "The soup was not fresh." */
  text: string;
  /** 0: negative (" terrible"), 1: positive (" great"). */
  label: 0 | 1;
  kind: ReviewKind;
}

const capitalize = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

/** A clause of polarity `positive`; with `negate`, "not" + an adjective of the other polarity. */
function sentimentClause(rng: Rng, positive: boolean, negate = false): string {
  if (!negate && rng.chance(0.3)) {
    const subject = rng.pick(SUBJECTS);
    return `${subject} ${rng.pick(positive ? POSITIVE_VERBS : NEGATIVE_VERBS)} the ${rng.pick(NOUNS)}`;
  }
  const adjPositive = negate ? !positive : positive;
  const adj = rng.pick(adjPositive ? POSITIVE_ADJECTIVES : NEGATIVE_ADJECTIVES);
  const intens = rng.chance(0.3) ? `${rng.pick(negate ? ['very', 'really', 'so'] : INTENSIFIERS)} ` : '';
  return `${rng.pick(DETERMINERS)} ${rng.pick(NOUNS)} ${rng.pick(['was', 'was', 'is'])} ${negate ? 'not ' : ''}${intens}${adj}`;
}

function neutralClause(rng: Rng): string {
  switch (rng.int(4)) {
    case 0:
      return `we went there on a ${rng.pick(DAYS)}`;
    case 1:
      return `${rng.pick(['i', 'we'])} ${rng.pick(NEUTRAL_VERBS)} the ${rng.pick(NOUNS)}`;
    case 2:
      return `${rng.pick(DETERMINERS)} ${rng.pick(NOUNS)} was ${rng.pick(NEUTRAL_ADJECTIVES)}`;
    default:
      return `i went there with my ${rng.pick(COMPANY)}`;
  }
}

/** Joins clauses into sentences: ". " or ", and " between them. */
function joinClauses(rng: Rng, clauses: string[]): string {
  let text = capitalize(clauses[0]);
  for (let i = 1; i < clauses.length; i++) text += rng.chance(0.5) ? `. ${capitalize(clauses[i])}` : `, and ${clauses[i]}`;
  return `${text}.`;
}

/** One review of `kind` and `label`. */
export function makeReview(rng: Rng, kind: ReviewKind, label: 0 | 1): Review {
  const pos = label === 1;
  let clauses: string[];
  if (kind === 'simple') {
    clauses = Array.from({ length: 1 + rng.int(2) }, () => sentimentClause(rng, pos));
  } else if (kind === 'negation') {
    // Every sentiment clause negated: ignoring "not" reads the opposite sentiment.
    clauses = Array.from({ length: 1 + rng.int(2) }, () => sentimentClause(rng, pos, true));
  } else {
    // "<the other sentiment>, but <this one>": the clause after "but" decides.
    const text = `${capitalize(sentimentClause(rng, !pos))}, but ${sentimentClause(rng, pos)}.`;
    return { text: rng.chance(0.3) ? `${capitalize(neutralClause(rng))}. ${text}` : text, label, kind };
  }
  if (rng.chance(0.3)) clauses.splice(rng.int(clauses.length + 1), 0, neutralClause(rng));
  return { text: joinClauses(rng, clauses), label, kind };
}

/** The classification prompt of a review (docs/algorithm.md §5's SST-2 template). */
export const promptOf = (review: Review | string): string => `${typeof review === 'string' ? review : review.text} It was`;
/** The candidate strings, in label order. */
export const CANDIDATES = [' terrible', ' great'] as const;
/** A review with its verdict, as pretraining text. */
export const withVerdict = (text: string, label: 0 | 1): string => `${text} It was ${VERDICTS[label]}.`;

// ---- the pretraining corpus ----

export interface CorpusOptions {
  /** Share of verdict-free descriptive lines (negation / contrast text without a verdict). */
  text?: number;
  /** Share of verdict lines that are negation or contrast reviews (the rest are simple). */
  hardVerdicts?: number;
  /** Probability that a verdict is the wrong one. */
  labelNoise?: number;
}

export const CORPUS_DEFAULTS: Required<CorpusOptions> = { text: 0.35, hardVerdicts: 0.005, labelNoise: 0.08 };

/** One line of pretraining text. */
export function corpusLine(rng: Rng, opts: CorpusOptions = {}): string {
  const o = { ...CORPUS_DEFAULTS, ...opts };
  if (rng.chance(o.text)) {
    // Descriptive text: negation and contrast occur, the sentiment is never judged.
    const kind = rng.pick(REVIEW_KINDS);
    return makeReview(rng, kind, rng.chance(0.5) ? 1 : 0).text;
  }
  const kind: ReviewKind = rng.chance(o.hardVerdicts) ? rng.pick(['negation', 'contrast'] as const) : 'simple';
  const review = makeReview(rng, kind, rng.chance(0.5) ? 1 : 0);
  const label = rng.chance(o.labelNoise) ? ((1 - review.label) as 0 | 1) : review.label;
  return withVerdict(review.text, label);
}

/** `n` lines of pretraining text from `seed`. */
export function pretrainingCorpus(n: number, seed: number, opts: CorpusOptions = {}): string[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => corpusLine(rng, opts));
}

/** The demo task's mix of review kinds. */
export const DEMO_MIX: Readonly<Record<ReviewKind, number>> = { simple: 0.3, negation: 0.35, contrast: 0.35 };

/**
 * `n` labelled reviews from `seed`: kinds in the exact proportions of `mix` (rounded),
 * labels alternating within each kind (so balanced), shuffled; no text repeats or is in
 * `exclude`.
 */
export function demoReviews(n: number, seed: number, exclude: ReadonlySet<string> = new Set(), mix = DEMO_MIX): Review[] {
  const rng = new Rng(seed);
  const total = REVIEW_KINDS.reduce((s, k) => s + mix[k], 0);
  const kinds: ReviewKind[] = [];
  let cumulative = 0;
  for (const k of REVIEW_KINDS) {
    cumulative += mix[k];
    const upto = Math.round((n * cumulative) / total);
    while (kinds.length < upto) kinds.push(k);
  }
  const out: Review[] = [];
  const seen = new Set(exclude);
  for (let i = 0; i < n; i++) {
    let review: Review;
    do review = makeReview(rng, kinds[i], (i % 2) as 0 | 1);
    while (seen.has(review.text));
    seen.add(review.text);
    out.push(review);
  }
  return rng.shuffle(out);
}
