/**
 * Independent float64 / BigInt references for the tests: Philox4x32-10, FNV-1a-64,
 * Box–Muller in float64 (Math.log/cos/sin), rounding to bf16/f16, the normal CDF.
 * Written plainly from the specifications (Salmon et al. SC'11, docs/algorithm.md §3),
 * sharing no code with the native implementation.
 */
const M32 = 0xffffffffn;

export function philoxRef(counter: readonly number[], key: readonly number[]): number[] {
  let c = counter.map(BigInt);
  let k0 = BigInt(key[0]),
    k1 = BigInt(key[1]);
  for (let round = 0; round < 10; round++) {
    const p0 = 0xd2511f53n * c[0];
    const p1 = 0xcd9e8d57n * c[2];
    c = [((p1 >> 32n) ^ c[1] ^ k0) & M32, p1 & M32, ((p0 >> 32n) ^ c[3] ^ k1) & M32, p0 & M32];
    k0 = (k0 + 0x9e3779b9n) & M32;
    k1 = (k1 + 0xbb67ae85n) & M32;
  }
  return c.map(Number);
}

export function fnv1a64Ref(name: string): bigint {
  let h = 0xcbf29ce484222325n;
  for (const byte of new TextEncoder().encode(name)) {
    h ^= BigInt(byte);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return h;
}

/** z of element e of `stream` under `seed`, in float64 from the spec's formula. */
export function gaussianRef(seed: bigint, stream: bigint, e: bigint): number {
  const block = e / 4n;
  const words = philoxRef([Number(block & M32), Number(block >> 32n), Number(stream & M32), Number(stream >> 32n)], [Number(seed & M32), Number(seed >> 32n)]);
  const u = words.map((v) => ((v >>> 9) + 0.5) * 2 ** -23);
  const lane = Number(e % 4n);
  const pair = lane < 2 ? 0 : 2;
  const r = Math.sqrt(-2 * Math.log(u[pair]));
  const theta = 2 * Math.PI * u[pair + 1];
  return lane % 2 === 0 ? r * Math.cos(theta) : r * Math.sin(theta);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function bf16ToNumber(h: number): number {
  u32[0] = h << 16;
  return f32[0];
}

/** Round a float64 to bf16 bits, nearest-even, in one step (no float32 intermediate). */
export function numberToBf16(x: number): number {
  if (Number.isNaN(x)) return 0x7fc0;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a === 0) return sign;
  // bf16: 8 exponent bits, 7 mantissa bits, min normal 2^-126, subnormal step 2^-133.
  let exp = Math.floor(Math.log2(a));
  if (2 ** exp > a) exp -= 1;
  if (2 ** (exp + 1) <= a) exp += 1;
  const e = Math.max(exp, -126);
  const step = 2 ** (e - 7);
  let q = a / step;
  const fl = Math.floor(q);
  const frac = q - fl;
  q = frac > 0.5 || (frac === 0.5 && fl % 2 === 1) ? fl + 1 : fl;
  const value = q * step;
  if (value >= 2 ** 128) return sign | 0x7f80;
  f32[0] = value; // exact: value is a bf16 number
  return sign | (u32[0] >>> 16);
}

export function f16ToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 31) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** Standard normal CDF via erfc (W. J. Cody's rational approximations are overkill
 *  here; this series/continued-fraction pair is accurate to ~1e-12 on the range used). */
export function normalCdf(x: number): number {
  return 0.5 * erfc(-x / Math.SQRT2);
}

function erfc(x: number): number {
  if (x < 0) return 2 - erfc(-x);
  if (x < 2.5) {
    // erf Taylor series: erf(x) = 2/sqrt(pi) Σ (-1)^n x^(2n+1) / (n! (2n+1))
    let sum = 0,
      term = x;
    for (let n = 0; n < 200; n++) {
      const t = term / (2 * n + 1);
      sum += t;
      term *= (-x * x) / (n + 1);
      if (Math.abs(t) < 1e-17) break;
    }
    return 1 - (2 / Math.sqrt(Math.PI)) * sum;
  }
  // Continued fraction (Lentz) for large x.
  let f = x,
    C = x,
    D = 0;
  for (let n = 1; n < 300; n++) {
    const an = n / 2;
    D = x + an * D;
    D = 1 / D;
    C = x + an / C;
    const delta = C * D;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return Math.exp(-x * x) / Math.sqrt(Math.PI) / f;
}

/** Seeded xorshift for test inputs (not under test). */
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

/** A new seed per run; ZOFO_TEST_SEED=<n> replays the run a failing test's "input seed" comment names. */
export function freshSeed(): number {
  const fixed = process.env.ZOFO_TEST_SEED;
  if (fixed !== undefined && /^\d+$/.test(fixed)) return Number(fixed) >>> 0;
  return (Date.now() ^ (process.pid << 8) ^ Math.floor(Math.random() * 2 ** 31)) >>> 0;
}

/** x rounded to p significand bits, nearest even, in float64 (normal range; 0, ±inf, NaN pass through): bf16 p = 8, TF32 p = 11. */
export function roundToSignificand(x: number, p: number): number {
  if (x === 0 || !Number.isFinite(x)) return x;
  const a = Math.abs(x);
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e -= 1;
  if (2 ** (e + 1) <= a) e += 1;
  const step = 2 ** (e - p + 1);
  const q = a / step,
    fl = Math.floor(q),
    frac = q - fl;
  return Math.sign(x) * (frac > 0.5 || (frac === 0.5 && fl % 2 === 1) ? fl + 1 : fl) * step;
}
