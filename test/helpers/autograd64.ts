/**
 * A tiny float64 tape autodiff for the reference model (test/helpers/reference-model.ts).
 *
 * Every value is a `Var`: a row-major Float64Array with a shape. Ops are methods of a
 * `Tape`; each computes its output eagerly and, when any input requires a gradient,
 * records a closure that adds the output's gradient into the inputs' gradients.
 * `backward(loss)` seeds d loss = 1 and runs the closures in reverse order.
 *
 * Only what the reference model needs is here. Base weights are constants (no gradient
 * is ever formed for them); gradients flow to activations and to the LoRA matrices,
 * which enter through `linear` as its weight. Every backward is checked against
 * central finite differences in test/reference-model.test.ts.
 *
 * Shapes in comments: N rows, M columns; B batch, T time, NH query heads, NKV kv heads,
 * HS head size.
 */

export class Var {
  grad: Float64Array | null = null;
  constructor(
    readonly data: Float64Array,
    readonly shape: number[],
    readonly requiresGrad = false,
  ) {
    const n = shape.reduce((a, b) => a * b, 1);
    if (n !== data.length) throw new Error(`Var: shape ${JSON.stringify(shape)} needs ${n} values, data has ${data.length}`);
  }

  /** The gradient buffer, allocated on first use. */
  g(): Float64Array {
    if (this.grad === null) this.grad = new Float64Array(this.data.length);
    return this.grad;
  }

  get rows(): number {
    return this.shape.length === 1 ? 1 : this.shape[0];
  }

  get cols(): number {
    return this.shape[this.shape.length - 1];
  }
}

/** A constant (no gradient). */
export function constant(data: Float64Array, shape: number[]): Var {
  return new Var(data, shape, false);
}

/** A leaf whose gradient backward() fills. */
export function parameter(data: Float64Array, shape: number[]): Var {
  return new Var(data, shape, true);
}

export type Activation = 'relu' | 'silu' | 'gelu_new';

const GELU_C = Math.sqrt(2 / Math.PI);

export class Tape {
  private readonly steps: (() => void)[] = [];

  /** `operand`, when given, rounds both operands of every linear() (a matmul's inputs as tensor cores read them). */
  constructor(private readonly operand?: (x: number) => number) {}

  private record(out: Var, step: () => void): Var {
    if (out.requiresGrad) this.steps.push(step);
    return out;
  }

  /** Runs every recorded step backwards from the scalar `loss`. */
  backward(loss: Var): void {
    if (loss.data.length !== 1) throw new Error('backward: loss must be a scalar');
    loss.g()[0] = 1;
    for (let s = this.steps.length - 1; s >= 0; s--) this.steps[s]();
  }

  /** y[N, out] = x[N, in] · Wᵀ (+ b), W: [out, in] (torch.nn.Linear), b: [out]. */
  linear(x: Var, w: Var, b?: Var): Var {
    const [N, IN] = [x.rows, x.cols];
    const [OUT, WIN] = w.shape;
    if (WIN !== IN) throw new Error(`linear: x has ${IN} columns, W is ${JSON.stringify(w.shape)}`);
    if (b?.requiresGrad) throw new Error('linear: bias gradients are not supported');
    const y = new Float64Array(N * OUT);
    const xs = this.operand ? x.data.map(this.operand) : x.data,
      ws = this.operand ? w.data.map(this.operand) : w.data;
    for (let n = 0; n < N; n++) {
      for (let o = 0; o < OUT; o++) {
        let acc = 0;
        for (let i = 0; i < IN; i++) acc += xs[n * IN + i] * ws[o * IN + i];
        y[n * OUT + o] = b ? acc + b.data[o] : acc;
      }
    }
    const out = new Var(y, [N, OUT], x.requiresGrad || w.requiresGrad);
    return this.record(out, () => {
      const dy = out.grad;
      if (dy === null) return;
      if (x.requiresGrad) {
        const dx = x.g();
        for (let n = 0; n < N; n++) {
          for (let o = 0; o < OUT; o++) {
            const d = dy[n * OUT + o];
            for (let i = 0; i < IN; i++) dx[n * IN + i] += d * w.data[o * IN + i];
          }
        }
      }
      if (w.requiresGrad) {
        const dw = w.g();
        for (let n = 0; n < N; n++) {
          for (let o = 0; o < OUT; o++) {
            const d = dy[n * OUT + o];
            for (let i = 0; i < IN; i++) dw[o * IN + i] += d * x.data[n * IN + i];
          }
        }
      }
    });
  }

  /** y[N, out] = x[N, in] · W + b with W: [in, out] (GPT-2's Conv1D, a constant). */
  conv1d(x: Var, w: Var, b: Var): Var {
    const [N, IN] = [x.rows, x.cols];
    const [WIN, OUT] = w.shape;
    if (WIN !== IN) throw new Error(`conv1d: x has ${IN} columns, W is ${JSON.stringify(w.shape)}`);
    if (w.requiresGrad || b.requiresGrad) throw new Error('conv1d: weight gradients are not supported');
    const y = new Float64Array(N * OUT);
    const xs = this.operand ? x.data.map(this.operand) : x.data,
      ws = this.operand ? w.data.map(this.operand) : w.data;
    for (let n = 0; n < N; n++) {
      for (let o = 0; o < OUT; o++) {
        let acc = 0;
        for (let i = 0; i < IN; i++) acc += xs[n * IN + i] * ws[i * OUT + o];
        y[n * OUT + o] = acc + b.data[o];
      }
    }
    const out = new Var(y, [N, OUT], x.requiresGrad);
    return this.record(out, () => {
      const dy = out.grad;
      if (dy === null) return;
      const dx = x.g();
      for (let n = 0; n < N; n++) {
        for (let o = 0; o < OUT; o++) {
          const d = dy[n * OUT + o];
          for (let i = 0; i < IN; i++) dx[n * IN + i] += d * w.data[i * OUT + o];
        }
      }
    });
  }

  /** a + b, same shapes. */
  add(a: Var, b: Var): Var {
    if (a.data.length !== b.data.length) throw new Error('add: shapes differ');
    const y = new Float64Array(a.data.length);
    for (let i = 0; i < y.length; i++) y[i] = a.data[i] + b.data[i];
    const out = new Var(y, [...a.shape], a.requiresGrad || b.requiresGrad);
    return this.record(out, () => {
      const dy = out.grad;
      if (dy === null) return;
      for (const v of [a, b]) {
        if (!v.requiresGrad) continue;
        const dv = v.g();
        for (let i = 0; i < dy.length; i++) dv[i] += dy[i];
      }
    });
  }

  /** a ⊙ b, same shapes. */
  mul(a: Var, b: Var): Var {
    if (a.data.length !== b.data.length) throw new Error('mul: shapes differ');
    const y = new Float64Array(a.data.length);
    for (let i = 0; i < y.length; i++) y[i] = a.data[i] * b.data[i];
    const out = new Var(y, [...a.shape], a.requiresGrad || b.requiresGrad);
    return this.record(out, () => {
      const dy = out.grad;
      if (dy === null) return;
      if (a.requiresGrad) {
        const da = a.g();
        for (let i = 0; i < dy.length; i++) da[i] += dy[i] * b.data[i];
      }
      if (b.requiresGrad) {
        const db = b.g();
        for (let i = 0; i < dy.length; i++) db[i] += dy[i] * a.data[i];
      }
    });
  }

  /** s · a for a constant number s. */
  scale(a: Var, s: number): Var {
    const y = new Float64Array(a.data.length);
    for (let i = 0; i < y.length; i++) y[i] = a.data[i] * s;
    const out = new Var(y, [...a.shape], a.requiresGrad);
    return this.record(out, () => {
      const dy = out.grad;
      if (dy === null) return;
      const da = a.g();
      for (let i = 0; i < dy.length; i++) da[i] += dy[i] * s;
    });
  }

  /** Elementwise activation. gelu_new: 0.5x(1 + tanh(√(2/π)(x + 0.044715x³))). */
  activation(a: Var, kind: Activation): Var {
    const n = a.data.length;
    const y = new Float64Array(n);
    const dydx = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const x = a.data[i];
      if (kind === 'relu') {
        y[i] = x > 0 ? x : 0;
        dydx[i] = x > 0 ? 1 : 0;
      } else if (kind === 'silu') {
        const sig = 1 / (1 + Math.exp(-x));
        y[i] = x * sig;
        dydx[i] = sig * (1 + x * (1 - sig));
      } else {
        const u = GELU_C * (x + 0.044715 * x * x * x);
        const th = Math.tanh(u);
        y[i] = 0.5 * x * (1 + th);
        dydx[i] = 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * GELU_C * (1 + 3 * 0.044715 * x * x);
      }
    }
    const out = new Var(y, [...a.shape], a.requiresGrad);
    return this.record(out, () => {
      const dy = out.grad;
      if (dy === null) return;
      const da = a.g();
      for (let i = 0; i < n; i++) da[i] += dy[i] * dydx[i];
    });
  }

  /** Per row of x[N, C]: y = (x · rsqrt(mean(x²) + eps)) · w  (Llama RMSNorm; w constant [C]). */
  rmsNorm(x: Var, w: Var, eps: number): Var {
    const [N, C] = [x.rows, x.cols];
    const y = new Float64Array(N * C);
    const r = new Float64Array(N); // rsqrt(mean(x²) + eps) per row
    for (let n = 0; n < N; n++) {
      let ss = 0;
      for (let c = 0; c < C; c++) ss += x.data[n * C + c] * x.data[n * C + c];
      r[n] = 1 / Math.sqrt(ss / C + eps);
      for (let c = 0; c < C; c++) y[n * C + c] = x.data[n * C + c] * r[n] * w.data[c];
    }
    const out = new Var(y, [N, C], x.requiresGrad);
    return this.record(out, () => {
      const dy = out.grad;
      if (dy === null) return;
      const dx = x.g();
      for (let n = 0; n < N; n++) {
        // g = dy ⊙ w; dx = r g − r³ x · mean(g ⊙ x)
        let gx = 0;
        for (let c = 0; c < C; c++) gx += dy[n * C + c] * w.data[c] * x.data[n * C + c];
        const r3 = r[n] * r[n] * r[n];
        for (let c = 0; c < C; c++) {
          dx[n * C + c] += r[n] * dy[n * C + c] * w.data[c] - (r3 * x.data[n * C + c] * gx) / C;
        }
      }
    });
  }

  /** Per row of x[N, C]: y = (x − mean) / sqrt(var + eps) · w + b, biased variance (torch.nn.LayerNorm). */
  layerNorm(x: Var, w: Var | undefined, b: Var | undefined, eps: number): Var {
    const [N, C] = [x.rows, x.cols];
    const y = new Float64Array(N * C);
    const xhat = new Float64Array(N * C);
    const rstd = new Float64Array(N);
    for (let n = 0; n < N; n++) {
      let mean = 0;
      for (let c = 0; c < C; c++) mean += x.data[n * C + c];
      mean /= C;
      let v = 0;
      for (let c = 0; c < C; c++) v += (x.data[n * C + c] - mean) ** 2;
      rstd[n] = 1 / Math.sqrt(v / C + eps);
      for (let c = 0; c < C; c++) {
        const h = (x.data[n * C + c] - mean) * rstd[n];
        xhat[n * C + c] = h;
        y[n * C + c] = h * (w ? w.data[c] : 1) + (b ? b.data[c] : 0);
      }
    }
    const out = new Var(y, [N, C], x.requiresGrad);
    return this.record(out, () => {
      const dy = out.grad;
      if (dy === null) return;
      const dx = x.g();
      for (let n = 0; n < N; n++) {
        // dxhat = dy ⊙ w; dx = rstd (dxhat − mean(dxhat) − xhat · mean(dxhat ⊙ xhat))
        let m1 = 0,
          m2 = 0;
        for (let c = 0; c < C; c++) {
          const d = dy[n * C + c] * (w ? w.data[c] : 1);
          m1 += d;
          m2 += d * xhat[n * C + c];
        }
        m1 /= C;
        m2 /= C;
        for (let c = 0; c < C; c++) {
          const d = dy[n * C + c] * (w ? w.data[c] : 1);
          dx[n * C + c] += rstd[n] * (d - m1 - xhat[n * C + c] * m2);
        }
      }
    });
  }

  /**
   * HF rotary embedding (rotate_half) on x[N, H·D] with one position per row:
   * for i < D/2, angle θ = pos · invFreq[i]:
   *   y[i]       = x[i] cos θ − x[i + D/2] sin θ
   *   y[i + D/2] = x[i + D/2] cos θ + x[i] sin θ
   */
  rope(x: Var, positions: readonly number[], H: number, D: number, invFreq: Float64Array): Var {
    const N = x.rows;
    const half = D / 2;
    const cos = new Float64Array(N * half);
    const sin = new Float64Array(N * half);
    for (let n = 0; n < N; n++) {
      for (let i = 0; i < half; i++) {
        const angle = positions[n] * invFreq[i];
        cos[n * half + i] = Math.cos(angle);
        sin[n * half + i] = Math.sin(angle);
      }
    }
    const y = new Float64Array(N * H * D);
    for (let n = 0; n < N; n++) {
      for (let h = 0; h < H; h++) {
        const base = n * H * D + h * D;
        for (let i = 0; i < half; i++) {
          const a = x.data[base + i],
            b = x.data[base + i + half];
          const c = cos[n * half + i],
            s = sin[n * half + i];
          y[base + i] = a * c - b * s;
          y[base + i + half] = b * c + a * s;
        }
      }
    }
    const out = new Var(y, [N, H * D], x.requiresGrad);
    return this.record(out, () => {
      const dy = out.grad;
      if (dy === null) return;
      const dx = x.g();
      for (let n = 0; n < N; n++) {
        for (let h = 0; h < H; h++) {
          const base = n * H * D + h * D;
          for (let i = 0; i < half; i++) {
            const da = dy[base + i],
              db = dy[base + i + half];
            const c = cos[n * half + i],
              s = sin[n * half + i];
            dx[base + i] += da * c + db * s;
            dx[base + i + half] += -da * s + db * c;
          }
        }
      }
    });
  }

  /**
   * Multi-head attention over a padded batch. q: [B·T, NH·HS], k, v: [B·T, NKV·HS]; query
   * head h reads kv head ⌊h / (NH/NKV)⌋. allowed(b, i, j) says whether query i of
   * sequence b sees key j. p = softmax over allowed j of scale · q_i·k_j; out_i = Σ p_ij v_j.
   * A query with no allowed key (a left pad) outputs zeros. Returns [B·T, NH·HS].
   */
  attention(
    q: Var,
    k: Var,
    v: Var,
    dims: { B: number; T: number; NH: number; NKV: number; HS: number },
    allowed: (b: number, i: number, j: number) => boolean,
    scale: number,
  ): Var {
    const { B, T, NH, NKV, HS } = dims;
    if (NH % NKV !== 0) throw new Error(`attention: ${NH} heads do not divide into ${NKV} kv heads`);
    const rep = NH / NKV;
    const QW = NH * HS,
      KW = NKV * HS;
    const p = new Float64Array(B * NH * T * T); // [B, NH, T(query), T(key)], 0 where not allowed
    const y = new Float64Array(B * T * QW);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < NH; h++) {
        const kh = Math.floor(h / rep);
        for (let i = 0; i < T; i++) {
          const prow = ((b * NH + h) * T + i) * T;
          const qo = (b * T + i) * QW + h * HS;
          let max = -Infinity;
          for (let j = 0; j < T; j++) {
            if (!allowed(b, i, j)) continue;
            const ko = (b * T + j) * KW + kh * HS;
            let s = 0;
            for (let d = 0; d < HS; d++) s += q.data[qo + d] * k.data[ko + d];
            p[prow + j] = s * scale;
            if (p[prow + j] > max) max = p[prow + j];
          }
          if (max === -Infinity) continue; // no key: zero output
          let sum = 0;
          for (let j = 0; j < T; j++) {
            if (!allowed(b, i, j)) continue;
            p[prow + j] = Math.exp(p[prow + j] - max);
            sum += p[prow + j];
          }
          for (let j = 0; j < T; j++) {
            if (!allowed(b, i, j)) continue;
            p[prow + j] /= sum;
            const vo = (b * T + j) * KW + kh * HS;
            for (let d = 0; d < HS; d++) y[qo + d] += p[prow + j] * v.data[vo + d];
          }
        }
      }
    }
    const out = new Var(y, [B * T, QW], q.requiresGrad || k.requiresGrad || v.requiresGrad);
    return this.record(out, () => {
      const dy = out.grad;
      if (dy === null) return;
      const dq = q.g(),
        dk = k.g(),
        dv = v.g();
      const dp = new Float64Array(T);
      for (let b = 0; b < B; b++) {
        for (let h = 0; h < NH; h++) {
          const kh = Math.floor(h / rep);
          for (let i = 0; i < T; i++) {
            const prow = ((b * NH + h) * T + i) * T;
            const qo = (b * T + i) * QW + h * HS;
            // dp_j = dy_i · v_j; dv_j += p_ij dy_i; ds_j = p_ij (dp_j − Σ p dp)
            let pdp = 0;
            for (let j = 0; j < T; j++) {
              dp[j] = 0;
              if (!allowed(b, i, j)) continue;
              const vo = (b * T + j) * KW + kh * HS;
              let s = 0;
              for (let d = 0; d < HS; d++) {
                s += dy[qo + d] * v.data[vo + d];
                dv[vo + d] += p[prow + j] * dy[qo + d];
              }
              dp[j] = s;
              pdp += p[prow + j] * s;
            }
            for (let j = 0; j < T; j++) {
              if (!allowed(b, i, j)) continue;
              const ds = p[prow + j] * (dp[j] - pdp) * scale;
              const ko = (b * T + j) * KW + kh * HS;
              for (let d = 0; d < HS; d++) {
                dq[qo + d] += ds * k.data[ko + d];
                dk[ko + d] += ds * q.data[qo + d];
              }
            }
          }
        }
      }
    });
  }

  /** Columns [from, from + width) of x[N, M] → [N, width]. */
  columns(x: Var, from: number, width: number): Var {
    const [N, M] = [x.rows, x.cols];
    const y = new Float64Array(N * width);
    for (let n = 0; n < N; n++) y.set(x.data.subarray(n * M + from, n * M + from + width), n * width);
    const out = new Var(y, [N, width], x.requiresGrad);
    return this.record(out, () => {
      const dy = out.grad;
      if (dy === null) return;
      const dx = x.g();
      for (let n = 0; n < N; n++) {
        for (let m = 0; m < width; m++) dx[n * M + from + m] += dy[n * width + m];
      }
    });
  }

  /** Rows idx of x[N, M] → [idx.length, M]. */
  rows(x: Var, idx: readonly number[]): Var {
    const M = x.cols;
    const y = new Float64Array(idx.length * M);
    idx.forEach((r, n) => y.set(x.data.subarray(r * M, (r + 1) * M), n * M));
    const out = new Var(y, [idx.length, M], x.requiresGrad);
    return this.record(out, () => {
      const dy = out.grad;
      if (dy === null) return;
      const dx = x.g();
      idx.forEach((r, n) => {
        for (let m = 0; m < M; m++) dx[r * M + m] += dy[n * M + m];
      });
    });
  }

  /** Row-wise log-softmax of x[N, M]. */
  logSoftmax(x: Var): Var {
    const [N, M] = [x.rows, x.cols];
    const y = new Float64Array(N * M);
    for (let n = 0; n < N; n++) {
      let max = -Infinity;
      for (let m = 0; m < M; m++) max = Math.max(max, x.data[n * M + m]);
      let sum = 0;
      for (let m = 0; m < M; m++) sum += Math.exp(x.data[n * M + m] - max);
      const lse = max + Math.log(sum);
      for (let m = 0; m < M; m++) y[n * M + m] = x.data[n * M + m] - lse;
    }
    const out = new Var(y, [...x.shape], x.requiresGrad);
    return this.record(out, () => {
      const dy = out.grad;
      if (dy === null) return;
      const dx = x.g();
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let m = 0; m < M; m++) s += dy[n * M + m];
        for (let m = 0; m < M; m++) dx[n * M + m] += dy[n * M + m] - Math.exp(y[n * M + m]) * s;
      }
    });
  }

  /** Entries (row, col) of x[N, M] → vector [cells.length]. */
  pick(x: Var, cells: readonly (readonly [number, number])[]): Var {
    const M = x.cols;
    const y = new Float64Array(cells.length);
    cells.forEach(([r, c], n) => {
      y[n] = x.data[r * M + c];
    });
    const out = new Var(y, [cells.length], x.requiresGrad);
    return this.record(out, () => {
      const dy = out.grad;
      if (dy === null) return;
      const dx = x.g();
      cells.forEach(([r, c], n) => {
        dx[r * M + c] += dy[n];
      });
    });
  }

  /** Vector x split into consecutive segments of the given lengths → [lengths.length] of their means (or sums). */
  segmentReduce(x: Var, lengths: readonly number[], mode: 'mean' | 'sum'): Var {
    const y = new Float64Array(lengths.length);
    let at = 0;
    lengths.forEach((len, s) => {
      let acc = 0;
      for (let i = 0; i < len; i++) acc += x.data[at + i];
      y[s] = mode === 'mean' ? acc / len : acc;
      at += len;
    });
    if (at !== x.data.length) throw new Error('segmentReduce: lengths do not cover x');
    const out = new Var(y, [lengths.length], x.requiresGrad);
    return this.record(out, () => {
      const dy = out.grad;
      if (dy === null) return;
      const dx = x.g();
      let from = 0;
      lengths.forEach((len, s) => {
        for (let i = 0; i < len; i++) dx[from + i] += mode === 'mean' ? dy[s] / len : dy[s];
        from += len;
      });
    });
  }

  /** Concatenation of vectors → one vector. */
  concat(parts: readonly Var[]): Var {
    const n = parts.reduce((a, v) => a + v.data.length, 0);
    const y = new Float64Array(n);
    let at = 0;
    for (const v of parts) {
      y.set(v.data, at);
      at += v.data.length;
    }
    const out = new Var(
      y,
      [n],
      parts.some((v) => v.requiresGrad),
    );
    return this.record(out, () => {
      const dy = out.grad;
      if (dy === null) return;
      let from = 0;
      for (const v of parts) {
        if (v.requiresGrad) {
          const dv = v.g();
          for (let i = 0; i < v.data.length; i++) dv[i] += dy[from + i];
        }
        from += v.data.length;
      }
    });
  }

  /** Mean of all entries → scalar [1]. */
  mean(x: Var): Var {
    let acc = 0;
    for (let i = 0; i < x.data.length; i++) acc += x.data[i];
    const out = new Var(Float64Array.of(acc / x.data.length), [1], x.requiresGrad);
    return this.record(out, () => {
      const dy = out.grad;
      if (dy === null) return;
      const dx = x.g();
      for (let i = 0; i < dx.length; i++) dx[i] += dy[0] / x.data.length;
    });
  }
}
