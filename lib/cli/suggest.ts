/**
 * "Did you mean …?" for unknown option keys: the valid key nearest to a misspelled one.
 * Keys are compared after normalising case, separators and a few synonyms
 * (`fo.learning_rate` → `fo.lr`, `batch_size` → `batchsize`), by the optimal string
 * alignment distance (Levenshtein plus adjacent transpositions: `setps` → `steps` is 1).
 */

// Spellings of the same thing, after normalising (lower case, no separators).
const SYNONYMS: Record<string, string> = { learningrate: 'lr', lrate: 'lr', epsilon: 'mu', maxsteps: 'steps', numsteps: 'steps' };

/** Lower case, each dot-separated part without `_`/`-`/spaces, synonyms replaced. */
export function normalizeKey(key: string): string {
  return key
    .split('.')
    .map((part) => {
      const p = part.toLowerCase().replace(/[^a-z0-9]/g, '');
      return SYNONYMS[p] ?? p;
    })
    .join('.');
}

/** Optimal string alignment distance between a and b. */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/**
 * The valid key nearest to `unknown`, or null when none is close (more than 40% of the
 * longer key's characters would have to change). `keys` maps every accepted spelling
 * (a config path, a flag name) to the key to suggest.
 */
export function suggestKey(unknown: string, keys: ReadonlyMap<string, string>): string | null {
  const u = normalizeKey(unknown);
  let best: { key: string; distance: number } | null = null;
  for (const [spelling, key] of keys) {
    const s = normalizeKey(spelling);
    const distance = editDistance(u, s);
    if (distance > Math.max(1, Math.floor(0.4 * Math.max(u.length, s.length)))) continue;
    if (best === null || distance < best.distance) best = { key, distance };
  }
  return best?.key ?? null;
}
