#!/usr/bin/env python3
"""Bit-exact reference of zofo's perturbation stream, written from docs/algorithm.md
alone (section "The perturbation stream"): Philox4x32-10, FNV-1a-64 stream ids, step
seeds, and z with the fp32 log / sin / cos of that page. Every fp32 operation is done
exactly in rationals and rounded once to the nearest float32 (ties to even), which is
what an IEEE fmaf, multiply or add does. Shares no code with the addon.

Reads a JSON list of queries on stdin and writes a JSON list of answers:
  {"stream": name}                          -> "0x<16 hex>"
  {"stepSeed": [runSeed, k, j]}             -> "0x<16 hex>"
  {"z": [seed, name, first, count]}         -> ["0x<8 hex fp32 bits>", ...]
Seeds and offsets are decimal strings (they exceed 2^53).
"""
import json
import math
import struct
import sys
from fractions import Fraction

M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF


# ---- Philox4x32-10 ----

def philox(counter, key):
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for _ in range(10):
        p0 = 0xD2511F53 * c0
        p1 = 0xCD9E8D57 * c2
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0) & M32, p1 & M32, ((p0 >> 32) ^ c3 ^ k1) & M32, p0 & M32
        k0 = (k0 + 0x9E3779B9) & M32
        k1 = (k1 + 0xBB67AE85) & M32
    return c0, c1, c2, c3


def fnv1a64(name):
    h = 0xCBF29CE484222325
    for byte in name.encode('utf-8'):
        h = ((h ^ byte) * 0x100000001B3) & M64
    return h


def step_seed(run_seed, k, j):
    w = philox((k & M32, (k >> 32) & M32, j, 0x5EED5EED), (run_seed & M32, run_seed >> 32))
    return w[0] | (w[1] << 32)


# ---- fp32 arithmetic, exactly rounded ----

def f32(x):
    """Round an exact rational (or int / str) to the nearest float32, ties to even."""
    q = Fraction(x)
    if q == 0:
        return Fraction(0)
    sign = -1 if q < 0 else 1
    a = abs(q)
    e = a.numerator.bit_length() - a.denominator.bit_length()
    if Fraction(2) ** e > a:
        e -= 1
    e = max(e, -126)                     # subnormals share the exponent of the smallest normal
    ulp = Fraction(2) ** (e - 23)
    n, rem = divmod(a, ulp)
    n = int(n)
    if rem > ulp / 2 or (rem == ulp / 2 and n % 2 == 1):
        n += 1
    r = n * ulp
    assert r < Fraction(2) ** 128, 'overflow'
    return sign * r


def fma(a, b, c):
    return f32(a * b + c)


def mul(a, b):
    return f32(a * b)


def add(a, b):
    return f32(a + b)


def bits(x):
    return struct.unpack('<I', struct.pack('<f', float(x)))[0]


LOG_P = [f32(s) for s in ['7.0376836292e-2', '-1.1514610310e-1', '1.1676998740e-1', '-1.2420140846e-1',
                          '1.4249322787e-1', '-1.6668057665e-1', '2.0000714765e-1', '-2.4999993993e-1',
                          '3.3333331174e-1']]
LN2_HI = f32('0.693359375')
LN2_LO = f32('-2.12194440e-4')
SQRT_HALF = f32('0.707106781')
SIN_C = [f32(s) for s in ['42.0586939', '-76.7058598', '81.6052493', '-41.3417022', '6.28318531']]
COS_C = [f32(s) for s in ['-26.4262568', '60.2446414', '-85.4568172', '64.9393940', '-19.7392088', '1']]


def log_f32(x):
    """Natural log of a positive normal float32 x, as the spec's steps say."""
    b = bits(x)
    e = (b >> 23) - 126
    m = Fraction(0x800000 | (b & 0x7FFFFF), 2 ** 24)       # the significand scaled into [0.5, 1)
    if m < SQRT_HALF:
        e -= 1
        f = fma(m, 2, -1)
    else:
        f = fma(m, 1, -1)
    z = mul(f, f)
    p = LOG_P[0]
    for c in LOG_P[1:]:
        p = fma(p, f, c)
    y = mul(mul(p, f), z)
    y = fma(e, LN2_LO, y)
    y = fma(z, Fraction(-1, 2), y)
    return fma(e, LN2_HI, add(f, y))


def sincos_2pi(jj):
    """(sin, cos) of 2*pi*jj*2^-24 for an integer jj in [1, 2^24)."""
    k = (jj + (1 << 21)) >> 22
    r = Fraction(jj - (k << 22), 2 ** 24)
    t = mul(r, r)
    s = SIN_C[0]
    for c in SIN_C[1:]:
        s = fma(s, t, c)
    s = mul(s, r)
    c = COS_C[0]
    for cc in COS_C[1:]:
        c = fma(c, t, cc)
    if k & 1:
        s, c = c, s
    if k & 2:
        s = -s
    if (k + 1) & 2:
        c = -c
    return s, c


def sqrt_f32(x):
    # Correctly rounded: a float64 square root rounded to float32 is (53 >= 2*24 + 2).
    return f32(Fraction(math.sqrt(float(x))))


def box_muller(va, vb):
    ua = Fraction(2 * (va >> 9) + 1, 2 ** 24)
    rad = sqrt_f32(mul(-2, log_f32(ua)))
    s, c = sincos_2pi(2 * (vb >> 9) + 1)
    return mul(rad, c), mul(rad, s)


def z(seed, name, first, count):
    stream = fnv1a64(name)
    key = (seed & M32, seed >> 32)
    out = []
    for e in range(first, first + count):
        block = e // 4
        w = philox((block & M32, block >> 32, stream & M32, stream >> 32), key)
        n = box_muller(w[0], w[1]) + box_muller(w[2], w[3])
        out.append('0x%08x' % bits(n[e % 4]))
    return out


def answer(q):
    if 'stream' in q:
        return '0x%016x' % fnv1a64(q['stream'])
    if 'stepSeed' in q:
        s, k, j = q['stepSeed']
        return '0x%016x' % step_seed(int(s), int(k), int(j))
    if 'z' in q:
        s, name, first, count = q['z']
        return z(int(s), name, int(first), int(count))
    raise ValueError('unknown query %r' % (q,))


if __name__ == '__main__':
    json.dump([answer(q) for q in json.load(sys.stdin)], sys.stdout)
