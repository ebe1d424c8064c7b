/**
 * A custom classification task written as text, and its tokenisation: short reviews
 * whose verdict hinges on negation ("the soup was not fresh ." → terrible). The words
 * come from the vocabulary of zofo's demo model; with your own model, use your own text.
 */
import type { ClassificationExample, Tokenizer } from 'zofo';

export interface Review {
  text: string;
  /** 0 = terrible, 1 = great. */
  label: 0 | 1;
}

const NOUNS = ['soup', 'pasta', 'coffee', 'service', 'staff', 'room', 'movie', 'plot', 'music', 'phone', 'battery', 'chef'];
const GOOD = ['fresh', 'friendly', 'tasty', 'clean', 'lovely', 'excellent'];
const BAD = ['bland', 'rude', 'dirty', 'stale', 'boring', 'awful'];

/** Every (noun, adjective, negated?) review, in a fixed order; every fifth one is held out for dev. */
export function reviewTask(): { train: Review[]; dev: Review[] } {
  const all: Review[] = [];
  for (const noun of NOUNS) {
    for (const [adjectives, positive] of [
      [GOOD, true],
      [BAD, false],
    ] as const) {
      for (const adj of adjectives) {
        all.push({ text: `the ${noun} was ${adj} .`, label: positive ? 1 : 0 });
        all.push({ text: `the ${noun} was not ${adj} .`, label: positive ? 0 : 1 });
      }
    }
  }
  return { train: all.filter((_, i) => i % 5 !== 0), dev: all.filter((_, i) => i % 5 === 0) };
}

/**
 * Text → token ids. The prompt is the review plus " it was"; the two candidates are the
 * verdict words. `encode` adds the tokenizer's special tokens (a start token, for most
 * models) unless told not to: an example's pieces are encoded without them, since they
 * are concatenated.
 */
export function tokenize(reviews: readonly Review[], tokenizer: Tokenizer): ClassificationExample[] {
  const ids = (text: string) => tokenizer.encode(text, { addSpecialTokens: false });
  const candidates = [ids(' terrible'), ids(' great')];
  return reviews.map((r) => {
    const prompt = ids(`${r.text} it was`);
    // A word outside the vocabulary would silently become <unk>: refuse it instead.
    const unknown = tokenizer.tokenToId('<unk>');
    if (unknown !== undefined && prompt.includes(unknown)) throw new Error(`a word of ${JSON.stringify(r.text)} is not in the model's vocabulary`);
    return { prompt, candidates, label: r.label };
  });
}
