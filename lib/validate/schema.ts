/**
 * Option objects validated by valibot schemas, with zofo's errors: every failure is an
 * OptionError (a ZofoError, code ZOFO_INVALID_ARG) whose `option` is the path of the
 * offending option (`zo.lr`, `eval.every`, `checkpoint`) and whose message says what was
 * expected and what arrived, or, for an unknown key, names it and suggests the nearest
 * valid one. The builders here attach those messages, so schemas read as plain lists of
 * fields.
 */
import * as v from 'valibot';
import { describe, OptionError } from '../errors.js';
import { unknownKeyMessage, type KeyAliases } from './suggest.js';
import { isU64 } from './u64.js';

// OptionError lives in errors.ts, so the public typings never reach valibot's.
export { OptionError };

/** Any schema built here (output type left to the caller, which owns the TypeScript interface). */
export type Schema = v.GenericSchema;

type Issue = v.BaseIssue<unknown>;

// The unknown-key issues of strict objects, with the keys that would have been valid.
const unknownKeys = new WeakMap<object, { keys: string[]; aliases: KeyAliases }>();

/** A number passing `ok` (NaN never passes); `expected` describes it for errors ("a finite number ≥ 0"). */
export function number(expected: string, ok: (x: number) => boolean = Number.isFinite): Schema {
  return v.pipe(v.number(expected), v.check(ok, expected));
}

/** An integer in [min, max] (safe integers only). */
export function integer(min: number, max = Number.MAX_SAFE_INTEGER, expected?: string): Schema {
  const what =
    expected ??
    (max === Number.MAX_SAFE_INTEGER
      ? min === 0
        ? 'a non-negative integer'
        : min === 1
          ? 'a positive integer'
          : `an integer ≥ ${min}`
      : `an integer in ${min} .. ${max}`);
  return number(what, (x) => Number.isSafeInteger(x) && x >= min && x <= max);
}

/** A 64-bit unsigned integer: a bigint in [0, 2^64), or a non-negative safe integer. */
export function u64(expected = 'a bigint in 0 .. 2^64-1 or a non-negative safe integer'): Schema {
  return v.custom<number | bigint>(isU64, expected);
}

/** One of `values`. */
export function oneOf<const T extends readonly (string | number)[]>(values: T): Schema {
  return v.picklist(
    values,
    values
      .map((x) => JSON.stringify(x).replace(/"/g, "'"))
      .join(', ')
      .replace(/, ([^,]*)$/, ' or $1'),
  );
}

/** A boolean. */
export const boolean = (): Schema => v.boolean('a boolean');

/** A non-empty string. */
export const nonEmptyString = (expected = 'a non-empty string'): Schema => v.pipe(v.string(expected), v.minLength(1, expected));

/** An instance of `type` (AbortSignal, RegExp…). */
export const instance = (type: abstract new (...args: never[]) => unknown, expected: string): Schema => v.custom((x) => x instanceof type, expected);

/** An optional field (absent or undefined). */
export const optional = (schema: Schema): Schema => v.optional(schema);

/** An optional field that may also be null. */
export const nullish = (schema: Schema): Schema => v.nullish(schema);

/** An array whose items all pass `item`. */
export const array = (item: Schema, expected = 'an array'): Schema => v.array(item, expected);

/** Exactly two items, each passing `item`. */
export const pair = (item: Schema, expected: string): Schema => v.pipe(v.array(item, expected), v.length(2, expected));

/** `ifTrue` for inputs that pass `test`, else `otherwise`: a union whose errors come from the branch the input was meant for. */
export const either = (test: (input: unknown) => boolean, ifTrue: Schema, otherwise: Schema): Schema => v.lazy((input) => (test(input) ? ifTrue : otherwise));

/** An object with exactly these fields: unknown keys are errors suggesting the nearest valid key. */
export function strict(entries: Record<string, Schema>, expected = 'an object', aliases: KeyAliases = {}): Schema {
  const keys = Object.keys(entries);
  return v.strictObject(entries, (issue: Issue) => {
    const last = issue.path?.at(-1) as { origin?: string; key?: unknown } | undefined;
    if (last?.origin === 'key' && issue.expected === 'never') {
      unknownKeys.set(issue, { keys, aliases });
      return 'unknown key';
    }
    if (last?.origin === 'key' && typeof last.key === 'string') {
      // A required field is missing: say what it should have been.
      const m = (entries[last.key] as { message?: unknown } | undefined)?.message;
      return typeof m === 'string' ? m : 'a value';
    }
    return expected;
  });
}

/** `a.b[2].c` from a valibot issue path. */
function pathOf(issue: Issue, drop = 0): string {
  const items = issue.path ?? [];
  let out = '';
  for (const item of items.slice(0, items.length - drop)) {
    const key = (item as { key?: unknown }).key;
    if (typeof key === 'number') out += `[${key}]`;
    else out += out ? `.${String(key)}` : String(key);
  }
  return out;
}

/** The first issue as an OptionError; `root` prefixes every path (e.g. 'opts'). */
function toError(issue: Issue, root: string): OptionError {
  const join = (p: string): string => (root && p ? (p.startsWith('[') ? `${root}${p}` : `${root}.${p}`) : root || p);
  const unknown = unknownKeys.get(issue);
  if (unknown) {
    const key = String((issue.path!.at(-1) as { key: unknown }).key);
    const parent = join(pathOf(issue, 1));
    return new OptionError(join(pathOf(issue)), unknownKeyMessage(key, unknown.keys, parent, 'option', unknown.aliases));
  }
  // A union reports its own message; its options' issues would only confuse.
  const path = join(pathOf(issue)) || 'options';
  const input = issue.path?.at(-1) && (issue.path.at(-1) as { origin?: string }).origin === 'key' ? undefined : issue.input;
  return new OptionError(path, `Expected ${issue.message} for ${path} but received ${describe(input)}`);
}

/**
 * Validates `value` against `schema` and returns it as `T` (valibot's output: the same
 * values, with defaults of optional fields left undefined). Throws an OptionError for
 * the first problem found.
 */
export function parse<T>(schema: Schema, value: unknown, root = ''): T {
  const result = v.safeParse(schema, value);
  if (result.success) return result.output as T;
  // A misspelt key explains the "missing" one it was meant to be: report unknown keys first.
  const issues = result.issues as unknown as Issue[];
  throw toError(issues.find((i) => unknownKeys.has(i)) ?? issues[0], root);
}
