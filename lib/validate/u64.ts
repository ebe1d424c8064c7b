/**
 * 64-bit unsigned values (seeds) in options and files. JSON numbers are doubles, exact
 * only below 2^53, so files store a 64-bit value as its decimal string; readers also
 * take the JSON numbers older files hold. Consumers of 32-bit seeds fold the high word in.
 */

/** Largest 64-bit unsigned value, 2^64 − 1. */
export const U64_MAX = (1n << 64n) - 1n;

const DECIMAL = /^(0|[1-9][0-9]{0,19})$/;

/** Whether `value` is a 64-bit unsigned integer: a bigint in [0, 2^64) or a non-negative safe integer. */
export function isU64(value: unknown): value is bigint | number {
  if (typeof value === 'bigint') return value >= 0n && value <= U64_MAX;
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/** How a file stores a 64-bit value: its decimal string. */
export function u64ToJson(value: bigint | number): string {
  return BigInt(value).toString();
}

/**
 * A 64-bit value read from a file: a decimal string (no sign, no leading zeros) below
 * 2^64, or a non-negative safe integer (older files). Undefined when it is neither.
 */
export function u64FromJson(value: unknown): bigint | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 ? BigInt(value) : undefined;
  if (typeof value !== 'string' || !DECIMAL.test(value)) return undefined;
  const v = BigInt(value);
  return v <= U64_MAX ? v : undefined;
}

/**
 * A 32-bit seed from a 64-bit one, for generators keyed by 32 bits: the low word, xored
 * with a mix of the high word (zero for seeds below 2^32, which keep their old streams).
 */
export function foldSeed32(seed: bigint | number): number {
  const s = BigInt(seed);
  const lo = Number(s & 0xffffffffn),
    hi = Number(s >> 32n);
  if (hi === 0) return lo;
  let z = hi >>> 0; // murmur3's finalizer: every bit of the high word moves the result
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  z = (z ^ (z >>> 16)) >>> 0;
  return (lo ^ (z || 0x9e3779b9)) >>> 0;
}
