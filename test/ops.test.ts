// The CPU model kernels (norms, RoPE, activations, attention), each forward checked
// against a plain float64 reference and each backward against central finite
// differences of that reference, on fresh random inputs.
import t from 'tap';
import { cpuBinding } from '../lib/binding.js';
import { freshSeed, rng } from './helpers/reference.js';

const ops = cpuBinding().ops;
const seed0 = freshSeed();
const r = rng(seed0);
t.comment(`input seed ${seed0}`);

const randn = (n: number, scale = 1) => Float32Array.from({ length: n }, () => (r() * 2 - 1) * scale);
const f64 = (a: Float32Array) => Float64Array.from(a);

/** max |got − want| / (atol + rtol·|want|): ≤ 1 passes. */
function scaledError(got: ArrayLike<number>, want: ArrayLike<number>, atol: number, rtol: number): number {
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) / (atol + rtol * Math.abs(want[i])));
  return worst;
}

/** ∂/∂x of L(x) = Σ dout·f(x), by central differences in float64. */
function fdGrad(f: (x: Float64Array) => Float64Array, x: Float64Array, dout: Float64Array, h = 1e-6): Float64Array {
  const g = new Float64Array(x.length);
  const L = (y: Float64Array) => f(y).reduce((s, v, i) => s + v * dout[i], 0);
  for (let i = 0; i < x.length; i++) {
    const keep = x[i];
    x[i] = keep + h;
    const up = L(x);
    x[i] = keep - h;
    const down = L(x);
    x[i] = keep;
    g[i] = (up - down) / (2 * h);
  }
  return g;
}

// Tolerances: forward fp32 vs float64 (atol 1e-5, rtol 1e-5); backward fp32 vs float64
// finite differences (atol 1e-4, rtol 1e-3), sizes small enough that fp32 sums stay exact to ~1e-6.
const FWD: [number, number] = [1e-5, 1e-5];
const BWD: [number, number] = [1e-4, 1e-3];

// ---- references ----

function rmsnormRef(x: Float64Array, w: Float64Array, N: number, C: number, eps: number): Float64Array {
  const y = new Float64Array(N * C);
  for (let n = 0; n < N; n++) {
    let ss = 0;
    for (let c = 0; c < C; c++) ss += x[n * C + c] ** 2;
    const rs = 1 / Math.sqrt(ss / C + eps);
    for (let c = 0; c < C; c++) y[n * C + c] = x[n * C + c] * rs * w[c];
  }
  return y;
}

function layernormRef(x: Float64Array, w: Float64Array, b: Float64Array, N: number, C: number, eps: number): Float64Array {
  const y = new Float64Array(N * C);
  for (let n = 0; n < N; n++) {
    let mu = 0;
    for (let c = 0; c < C; c++) mu += x[n * C + c] / C;
    let v = 0;
    for (let c = 0; c < C; c++) v += (x[n * C + c] - mu) ** 2 / C;
    for (let c = 0; c < C; c++) y[n * C + c] = ((x[n * C + c] - mu) / Math.sqrt(v + eps)) * w[c] + b[c];
  }
  return y;
}

/** HF's apply_rotary_pos_emb with rotate_half, written from its definition. */
function ropeRef(x: Float64Array, pos: Int32Array, B: number, T: number, NH: number, HS: number, theta: number): Float64Array {
  const y = new Float64Array(x.length);
  const half = HS / 2;
  for (let bt = 0; bt < B * T; bt++)
    for (let h = 0; h < NH; h++)
      for (let i = 0; i < HS; i++) {
        const base = (bt * NH + h) * HS;
        const j = i % half; // cos/sin are the half-length frequencies repeated twice ("emb = cat(freqs, freqs)")
        const ang = pos[bt] / theta ** ((2 * j) / HS);
        const rotated = i < half ? -x[base + i + half] : x[base + i - half]; // rotate_half
        y[base + i] = x[base + i] * Math.cos(ang) + rotated * Math.sin(ang);
      }
  return y;
}

function attentionRef(
  q: Float64Array,
  k: Float64Array,
  v: Float64Array,
  mask: Uint8Array,
  B: number,
  T: number,
  NH: number,
  NKV: number,
  HS: number,
  scale: number,
): Float64Array {
  const out = new Float64Array(B * T * NH * HS);
  const rep = NH / NKV;
  for (let b = 0; b < B; b++)
    for (let h = 0; h < NH; h++) {
      const g = Math.floor(h / rep);
      for (let t = 0; t < T; t++) {
        const scores: number[] = [];
        for (let s = 0; s <= t; s++) {
          if (!mask[b * T + s]) continue;
          let d = 0;
          for (let i = 0; i < HS; i++) d += q[((b * T + t) * NH + h) * HS + i] * k[((b * T + s) * NKV + g) * HS + i];
          scores.push(d * scale);
        }
        if (scores.length === 0) continue; // nothing visible: zeros
        const m = Math.max(...scores);
        const e = scores.map((sc) => Math.exp(sc - m));
        const z = e.reduce((a, c) => a + c, 0);
        let idx = 0;
        for (let s = 0; s <= t; s++) {
          if (!mask[b * T + s]) continue;
          const p = e[idx++] / z;
          for (let i = 0; i < HS; i++) out[((b * T + t) * NH + h) * HS + i] += p * v[((b * T + s) * NKV + g) * HS + i];
        }
      }
    }
  return out;
}

const geluNewRef = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
const siluRef = (x: number) => x / (1 + Math.exp(-x));

// ---- tests ----

t.test('rmsnorm forward and backward', async (t) => {
  const N = 5,
    C = 12,
    eps = 1e-6;
  const x = randn(N * C),
    w = randn(C, 1.5),
    dout = randn(N * C);
  const out = new Float32Array(N * C),
    rstd = new Float32Array(N);
  ops.rmsnormForward(out, rstd, x, w, N, C, eps);
  t.ok(scaledError(out, rmsnormRef(f64(x), f64(w), N, C, eps), ...FWD) <= 1, 'forward');
  const dx = new Float32Array(N * C),
    dw = new Float32Array(C);
  ops.rmsnormBackward(dx, dw, dout, x, w, rstd, N, C);
  t.ok(
    scaledError(
      dx,
      fdGrad((xx) => rmsnormRef(xx, f64(w), N, C, eps), f64(x), f64(dout)),
      ...BWD,
    ) <= 1,
    'dinp vs finite differences',
  );
  t.ok(
    scaledError(
      dw,
      fdGrad((ww) => rmsnormRef(f64(x), ww, N, C, eps), f64(w), f64(dout)),
      ...BWD,
    ) <= 1,
    'dweight vs finite differences',
  );
  const dx2 = new Float32Array(N * C).fill(1);
  ops.rmsnormBackward(dx2, null, dout, x, w, rstd, N, C);
  t.ok(
    dx2.every((v, i) => Math.abs(v - 1 - dx[i]) < 1e-6),
    'dinp accumulates; a frozen weight (null) is skipped',
  );
});

t.test('layernorm forward and backward', async (t) => {
  const N = 4,
    C = 10,
    eps = 1e-5;
  const x = randn(N * C),
    w = randn(C, 1.5),
    b = randn(C),
    dout = randn(N * C);
  const out = new Float32Array(N * C),
    mean = new Float32Array(N),
    rstd = new Float32Array(N);
  ops.layernormForward(out, mean, rstd, x, w, b, N, C, eps);
  t.ok(scaledError(out, layernormRef(f64(x), f64(w), f64(b), N, C, eps), ...FWD) <= 1, 'forward');
  const dx = new Float32Array(N * C),
    dw = new Float32Array(C),
    db = new Float32Array(C);
  ops.layernormBackward(dx, dw, db, dout, x, w, mean, rstd, N, C);
  t.ok(
    scaledError(
      dx,
      fdGrad((xx) => layernormRef(xx, f64(w), f64(b), N, C, eps), f64(x), f64(dout)),
      ...BWD,
    ) <= 1,
    'dinp',
  );
  t.ok(
    scaledError(
      dw,
      fdGrad((ww) => layernormRef(f64(x), ww, f64(b), N, C, eps), f64(w), f64(dout)),
      ...BWD,
    ) <= 1,
    'dweight',
  );
  t.ok(
    scaledError(
      db,
      fdGrad((bb) => layernormRef(f64(x), f64(w), bb, N, C, eps), f64(b), f64(dout)),
      ...BWD,
    ) <= 1,
    'dbias',
  );
});

t.test('RoPE rotates halves (rotate_half), with rope_theta; backward is its adjoint', async (t) => {
  const B = 2,
    T = 5,
    NH = 3,
    HS = 8,
    theta = 500000;
  const x = randn(B * T * NH * HS);
  const pos = Int32Array.from({ length: B * T }, (_, i) => (i % T) + (i >= T ? 3 : 0)); // second row offset, as under left padding
  const y = x.slice();
  ops.rope(y, pos, B, T, NH, HS, theta, false);
  t.ok(scaledError(y, ropeRef(f64(x), pos, B, T, NH, HS, theta), ...FWD) <= 1, 'forward matches HF rotate_half');
  // The interleaved convention (pairs 2i, 2i+1) gives a different answer: the test can tell them apart.
  const inter = f64(x);
  for (let bt = 0; bt < B * T; bt++)
    for (let h = 0; h < NH; h++)
      for (let i = 0; i < HS / 2; i++) {
        const base = (bt * NH + h) * HS,
          ang = pos[bt] / theta ** ((2 * i) / HS);
        const a = x[base + 2 * i],
          c = x[base + 2 * i + 1];
        inter[base + 2 * i] = a * Math.cos(ang) - c * Math.sin(ang);
        inter[base + 2 * i + 1] = c * Math.cos(ang) + a * Math.sin(ang);
      }
  t.ok(scaledError(y, inter, ...FWD) > 1, 'and not the interleaved-pairs convention');
  const dy = randn(x.length);
  const dx = dy.slice();
  ops.rope(dx, pos, B, T, NH, HS, theta, true);
  let lhs = 0,
    rhs = 0;
  for (let i = 0; i < x.length; i++) {
    lhs += y[i] * dy[i];
    rhs += x[i] * dx[i];
  }
  t.ok(Math.abs(lhs - rhs) < 1e-4 * (1 + Math.abs(lhs)), `<rope(x), dy> = <x, rope_backward(dy)> (${lhs.toFixed(6)} vs ${rhs.toFixed(6)})`);
  t.ok(
    scaledError(
      dx,
      fdGrad((xx) => ropeRef(xx, pos, B, T, NH, HS, theta), f64(x), f64(dy)),
      ...BWD,
    ) <= 1,
    'backward vs finite differences',
  );
});

t.test('gelu_new, relu and swiglu forward and backward', async (t) => {
  const N = 64;
  // ReLU's kink: a central difference with h = 1e-6 is exact where |x| > h and off by up to
  // |dout|/2 where |x| < h. Inputs moved 1e-3 away from 0 (|x| ≥ 1e-3 ≫ h) never straddle it,
  // and fp32 and float64 read the same x, so both take the same side: no chance failure.
  const x = randn(N, 3).map((v) => (v < 0 ? v - 1e-3 : v + 1e-3)),
    dout = randn(N);
  for (const [kind, name, ref] of [
    [0, 'gelu_new', geluNewRef],
    [1, 'relu', (v: number) => Math.max(v, 0)],
  ] as const) {
    const out = new Float32Array(N);
    ops.activationForward(kind, out, x, N);
    t.ok(scaledError(out, Array.from(x, ref), ...FWD) <= 1, `${name} forward`);
    const dx = new Float32Array(N);
    ops.activationBackward(kind, dx, x, dout, N);
    t.ok(
      scaledError(
        dx,
        fdGrad((xx) => xx.map(ref), f64(x), f64(dout)),
        ...BWD,
      ) <= 1,
      `${name} backward`,
    );
  }
  const gate = randn(N, 3),
    up = randn(N, 2);
  const out = new Float32Array(N);
  ops.swigluForward(out, gate, up, N);
  t.ok(
    scaledError(
      out,
      Array.from(gate, (g, i) => siluRef(g) * up[i]),
      ...FWD,
    ) <= 1,
    'swiglu forward: silu(gate)·up',
  );
  const dg = new Float32Array(N),
    du = new Float32Array(N);
  ops.swigluBackward(dg, du, gate, up, dout, N);
  t.ok(
    scaledError(
      dg,
      fdGrad((gg) => gg.map((g, i) => siluRef(g) * up[i]), f64(gate), f64(dout)),
      ...BWD,
    ) <= 1,
    'swiglu dgate',
  );
  t.ok(
    scaledError(
      du,
      fdGrad((uu) => uu.map((u, i) => siluRef(gate[i]) * u), f64(up), f64(dout)),
      ...BWD,
    ) <= 1,
    'swiglu dup',
  );
});

t.test('causal attention with padding mask and GQA: forward and backward', async (t) => {
  const B = 2,
    T = 6,
    NH = 4,
    NKV = 2,
    HS = 4,
    scale = 1 / Math.sqrt(HS);
  const q = randn(B * T * NH * HS),
    k = randn(B * T * NKV * HS),
    v = randn(B * T * NKV * HS);
  const mask = Uint8Array.from({ length: B * T }, (_, i) => (i >= T && i < T + 2 ? 0 : 1)); // row 1 left-padded by 2
  const out = new Float32Array(q.length),
    att = new Float32Array(B * NH * T * T);
  ops.attentionForward(out, att, q, k, v, mask, B, T, NH, NKV, HS, scale);
  const ref = (qq: Float64Array, kk: Float64Array, vv: Float64Array) => attentionRef(qq, kk, vv, mask, B, T, NH, NKV, HS, scale);
  t.ok(scaledError(out, ref(f64(q), f64(k), f64(v)), ...FWD) <= 1, 'forward');
  const padRows = out.subarray(T * NH * HS, (T + 2) * NH * HS);
  t.ok(
    padRows.every((x) => x === 0),
    'padding queries output zeros, not NaN',
  );
  const dout = randn(q.length);
  const dq = new Float32Array(q.length),
    dk = new Float32Array(k.length),
    dv = new Float32Array(v.length);
  ops.attentionBackward(dq, dk, dv, dout, att, q, k, v, B, T, NH, NKV, HS, scale);
  t.ok(
    scaledError(
      dq,
      fdGrad((x) => ref(x, f64(k), f64(v)), f64(q), f64(dout)),
      ...BWD,
    ) <= 1,
    'dq',
  );
  t.ok(
    scaledError(
      dk,
      fdGrad((x) => ref(f64(q), x, f64(v)), f64(k), f64(dout)),
      ...BWD,
    ) <= 1,
    'dk',
  );
  t.ok(
    scaledError(
      dv,
      fdGrad((x) => ref(f64(q), f64(k), x), f64(v), f64(dout)),
      ...BWD,
    ) <= 1,
    'dv',
  );
});

t.test('GQA: query head h reads KV head floor(h / (NH/NKV))', async (t) => {
  const B = 1,
    T = 3,
    NH = 4,
    NKV = 2,
    HS = 2;
  const q = randn(B * T * NH * HS),
    k = randn(B * T * NKV * HS);
  // Distinct constant values per KV head make the head mapping visible in the output.
  const v = new Float32Array(B * T * NKV * HS);
  for (let s = 0; s < T; s++) for (let g = 0; g < NKV; g++) for (let i = 0; i < HS; i++) v[(s * NKV + g) * HS + i] = 10 * (g + 1);
  const out = new Float32Array(q.length),
    att = new Float32Array(NH * T * T);
  ops.attentionForward(out, att, q, k, v, new Uint8Array(T).fill(1), B, T, NH, NKV, HS, 1);
  const headValue = (t_: number, h: number) => out[(t_ * NH + h) * HS];
  t.same(
    [0, 1, 2, 3].map((h) => Math.round(headValue(2, h))),
    [10, 10, 20, 20],
    'heads 0,1 → kv 0; heads 2,3 → kv 1',
  );
});

t.test('a sequence gives the same attention output alone and left-padded in a batch', async (t) => {
  const T = 4,
    NH = 2,
    NKV = 1,
    HS = 4,
    pad = 3,
    scale = 0.5;
  const q = randn(T * NH * HS),
    k = randn(T * NKV * HS),
    v = randn(T * NKV * HS);
  const alone = new Float32Array(q.length);
  ops.attentionForward(alone, new Float32Array(NH * T * T), q, k, v, new Uint8Array(T).fill(1), 1, T, NH, NKV, HS, scale);
  const Tp = T + pad;
  const shift = (a: Float32Array, heads: number) => {
    const o = randn(Tp * heads * HS, 5);
    o.set(a, pad * heads * HS);
    return o;
  };
  const padded = new Float32Array(Tp * NH * HS);
  const mask = Uint8Array.from({ length: Tp }, (_, i) => (i < pad ? 0 : 1));
  ops.attentionForward(padded, new Float32Array(NH * Tp * Tp), shift(q, NH), shift(k, NKV), shift(v, NKV), mask, 1, Tp, NH, NKV, HS, scale);
  t.ok(scaledError(padded.subarray(pad * NH * HS), alone, 1e-6, 1e-6) <= 1, 'real positions identical; garbage in pads ignored');
});

t.test('ops reject arrays that are too short', async (t) => {
  t.throws(() => ops.rmsnormForward(new Float32Array(3), new Float32Array(1), new Float32Array(4), new Float32Array(4), 1, 4, 1e-6), {
    code: 'ZOFO_INVALID_ARG',
    message: /out has 3 elements, needs 4/,
  });
  t.throws(
    () =>
      ops.attentionForward(
        new Float32Array(8),
        new Float32Array(4),
        new Float32Array(8),
        new Float32Array(8),
        new Float32Array(8),
        new Uint8Array(2),
        1,
        2,
        3,
        2,
        2,
        1,
      ),
    { code: 'ZOFO_INVALID_ARG', message: /NH must be a multiple of NKV/ },
  );
  t.throws(() => ops.rope(new Float32Array(6), new Int32Array(1), 1, 1, 2, 3, 1e4, false), { code: 'ZOFO_INVALID_ARG', message: /even/ });
});
