/**
 * safetensors bytes built by hand for the tests, from the format's description
 * (u64-LE header length, JSON header, data), sharing no code with lib/formats.
 */

/** [u64-LE length][header][data]; `length` overrides the prefix (hostile files). */
export function fileBytes(header: string | Uint8Array, data: Uint8Array = new Uint8Array(0), length?: bigint): Buffer {
  const h = typeof header === 'string' ? Buffer.from(header, 'utf8') : Buffer.from(header);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(length ?? BigInt(h.length));
  return Buffer.concat([prefix, h, data]);
}

/** One header entry as text. */
export function entry(dtype: string, shape: readonly number[], begin: number, end: number): string {
  return `{"dtype":"${dtype}","shape":[${shape.join(',')}],"data_offsets":[${begin},${end}]}`;
}

/** bf16 bits → number, by the definition (1 sign, 8 exponent, 7 mantissa bits; bias 127). */
export function bf16Definition(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 7) & 0xff;
  const mant = h & 0x7f;
  if (exp === 0) return sign * mant * 2 ** -133;
  if (exp === 255) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 128) * 2 ** (exp - 127);
}
