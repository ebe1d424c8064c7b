// Byte- and text-level mutations of one file: bit flips, interesting bytes, deletions,
// duplications, truncation, and for text (JSON, TSV, JSONL, safetensors headers)
// replacement of numbers and strings with boundary values and of values with deep
// nesting. A seeded PRNG makes a run reproducible from (seed, case index).

/** xorshift128+ from a 32-bit seed: fast, and reproducible across platforms. */
export function rng(seed) {
  let a = (seed ^ 0x9e3779b9) >>> 0 || 1,
    b = (Math.imul(seed, 0x85ebca6b) ^ 0xc2b2ae35) >>> 0 || 2;
  const next = () => {
    let x = a,
      y = b;
    a = y;
    x ^= x << 11;
    x ^= x >>> 8;
    b = (x ^ y ^ (y >>> 19)) >>> 0;
    return b;
  };
  for (let i = 0; i < 8; i++) next();
  const r = () => next() / 2 ** 32;
  r.int = (n) => Math.floor(r() * n);
  r.pick = (xs) => xs[r.int(xs.length)];
  return r;
}

const NUMBERS = [
  '-1',
  '0',
  '1',
  '-0',
  '1e309',
  '-1e309',
  '1e-400',
  '0.5',
  '2147483647',
  '2147483648',
  '4294967296',
  '16777216',
  '1099511627776',
  '9007199254740991',
  '9007199254740993',
  '18446744073709551615',
  '18446744073709551616',
  '1e21',
  'NaN',
  'null',
  '""',
  '[]',
  '{}',
  'true',
];
const STRINGS = ['""', '"x"', '"__proto__"', '"F64"', '"BF16"', '"constructor"', '"\\u0000"', '"\\ud800"', `"${'a'.repeat(100000)}"`];
const BYTES = [0x00, 0xff, 0x7f, 0x80, 0x20, 0x22, 0x7b, 0x7d, 0x5b, 0x5d, 0x2c, 0x3a, 0x39, 0x2d, 0x0a, 0x09, 0x5c];

/** Where a safetensors file's header text lies, when the prefix is sane. */
function headerRange(bytes) {
  if (bytes.length < 8) return null;
  const n = Number(Buffer.from(bytes.buffer, bytes.byteOffset, 8).readBigUInt64LE(0));
  return n > 0 && 8 + n <= bytes.length ? [8, 8 + n] : null;
}

function textMutation(r, text) {
  const numbers = [...text.matchAll(/-?\d+(\.\d+)?([eE][-+]?\d+)?/g)];
  const strings = [...text.matchAll(/"(?:[^"\\]|\\.)*"/g)];
  const choice = r.int(4);
  if (choice === 0 && numbers.length) {
    const m = r.pick(numbers);
    return text.slice(0, m.index) + r.pick(NUMBERS) + text.slice(m.index + m[0].length);
  }
  if (choice === 1 && strings.length) {
    const m = r.pick(strings);
    return text.slice(0, m.index) + r.pick(STRINGS) + text.slice(m.index + m[0].length);
  }
  if (choice === 2 && numbers.length) {
    // wrap a value in deep nesting
    const m = r.pick(numbers);
    const depth = r.pick([2, 100, 10000, 200000]);
    return text.slice(0, m.index) + '['.repeat(depth) + m[0] + ']'.repeat(depth) + text.slice(m.index + m[0].length);
  }
  // duplicate a line / member
  const lines = text.split(/(?<=[,\n])/);
  const i = r.int(lines.length);
  lines.splice(i, 0, lines[r.int(lines.length)]);
  return lines.join('');
}

function byteMutation(r, bytes, lo, hi) {
  const out = Buffer.from(bytes);
  const at = lo + r.int(Math.max(1, hi - lo));
  switch (r.int(6)) {
    case 0: {
      for (let k = 1 + r.int(4); k > 0; k--) {
        const p = lo + r.int(Math.max(1, hi - lo));
        if (p < out.length) out[p] ^= 1 << r.int(8);
      }
      return out;
    }
    case 1:
      if (at < out.length) out[at] = r.pick(BYTES);
      return out;
    case 2: {
      const n = 1 + r.int(64);
      return Buffer.concat([out.subarray(0, at), out.subarray(Math.min(out.length, at + n))]);
    }
    case 3: {
      const n = 1 + r.int(64);
      const src = r.int(Math.max(1, out.length));
      return Buffer.concat([out.subarray(0, at), out.subarray(src, src + n), out.subarray(at)]);
    }
    case 4:
      return out.subarray(0, r.int(out.length + 1));
    default: {
      if (at + 8 <= out.length)
        out.writeBigUInt64LE(
          BigInt.asUintN(64, BigInt(r.pick(['0', '1', '8', '-1', '4294967296', '100000000', '99999999'].map(Number).map((x) => (x < 0 ? 2 ** 64 - 1 : x))))),
          at,
        );
      return out;
    }
  }
}

/** 1–3 mutations of `bytes` (a Buffer); `kind` is 'text', 'safetensors' or 'binary'. */
export function mutate(r, bytes, kind) {
  let out = Buffer.from(bytes);
  for (let k = 1 + r.int(3); k > 0; k--) {
    if (kind === 'text' && r() < 0.6) out = Buffer.from(textMutation(r, out.toString('utf8')), 'utf8');
    else if (kind === 'safetensors' && r() < 0.6) {
      const range = headerRange(out);
      if (range && r() < 0.5) {
        const text = textMutation(r, out.subarray(range[0], range[1]).toString('utf8'));
        const header = Buffer.from(text, 'utf8');
        const prefix = Buffer.alloc(8);
        prefix.writeBigUInt64LE(BigInt(header.length));
        out = Buffer.concat([prefix, header, out.subarray(range[1])]);
      } else if (range) out = byteMutation(r, out, 0, range[1]);
      else out = byteMutation(r, out, 0, out.length);
    } else out = byteMutation(r, out, 0, out.length);
  }
  return out;
}
