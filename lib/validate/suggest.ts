/**
 * "Did you mean …?" for misspelled option names: the nearest valid key by edit distance
 * (Damerau–Levenshtein, optimal string alignment: a swap of two neighbours counts once,
 * so "setps" is one edit from "steps"). Shared by every validator of option objects and
 * config files.
 */

/** Edits (insert, delete, substitute, swap neighbours) that turn `a` into `b`; case-insensitive. */
export function editDistance(a: string, b: string): number {
  const s = a.toLowerCase(),
    t = b.toLowerCase();
  const m = s.length,
    n = t.length;
  // d[i][j]: distance between s[0, i) and t[0, j); three rows suffice for the swap rule.
  let twoBack = new Array<number>(n + 1).fill(0);
  let prev = Array.from({ length: n + 1 }, (_, j) => j);
  for (let i = 1; i <= m; i++) {
    const row = new Array<number>(n + 1);
    row[0] = i;
    for (let j = 1; j <= n; j++) {
      const cost = s[i - 1] === t[j - 1] ? 0 : 1;
      let d = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + cost);
      if (i > 1 && j > 1 && s[i - 1] === t[j - 2] && s[i - 2] === t[j - 1]) d = Math.min(d, twoBack[j - 2] + 1);
      row[j] = d;
    }
    twoBack = prev;
    prev = row;
  }
  return prev[n];
}

/** A word split into parts for comparison: `learning_rate`, `learningRate` and `learning-rate` all give "learningrate". */
const squash = (key: string): string => key.replace(/[-_\s]/g, '').toLowerCase();

/** Other spellings of a key that are too far from it by edits (`learning_rate` for `lr`): alias → key. */
export type KeyAliases = Readonly<Record<string, string>>;

/**
 * The valid key nearest to `key`, or undefined when none is close: equal once case, `_`
 * and `-` are ignored; a known alias of it; or within a third of the key's length in
 * edits (at least 1, at most 3). Ties go to the earlier candidate.
 */
export function nearestKey(key: string, candidates: readonly string[], aliases: KeyAliases = {}): string | undefined {
  const squashed = squash(key);
  const same = candidates.find((c) => squash(c) === squashed);
  if (same !== undefined) return same;
  for (const [alias, target] of Object.entries(aliases)) {
    if (squash(alias) === squashed && candidates.includes(target)) return target;
  }
  const limit = Math.min(3, Math.max(1, Math.floor(key.length / 3)));
  let best: string | undefined,
    bestDistance = limit + 1;
  for (const c of candidates) {
    const d = editDistance(key, c);
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best;
}

/**
 * The message for an unknown key: `unknown option "fo.learning_rate"; did you mean
 * "fo.lr"?` (without a close key: `valid options are …`). `parent` is the path of the
 * object holding the key ('' at the top level); `what` names the kind of key.
 */
export function unknownKeyMessage(key: string, validKeys: readonly string[], parent = '', what = 'option', aliases: KeyAliases = {}): string {
  const at = (k: string): string => (parent ? `${parent}.${k}` : k);
  const near = nearestKey(key, validKeys, aliases);
  if (near !== undefined) return `unknown ${what} ${JSON.stringify(at(key))}; did you mean ${JSON.stringify(at(near))}?`;
  const list = validKeys.length > 0 ? validKeys.map((k) => JSON.stringify(k)).join(', ') : 'none';
  return `unknown ${what} ${JSON.stringify(at(key))}; valid ${what}s${parent ? ` of ${parent}` : ''} are ${list}`;
}
