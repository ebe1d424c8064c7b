/**
 * ReLU inputs of the float64 reference model, so that gradient checks stay off ReLU's
 * kink: a finite difference whose step moves a ReLU input across 0 is wrong, and an fp32
 * engine and the float64 reference may take opposite sides of a kink that an input sits
 * on within rounding error.
 */
import type { ClassificationExample, LmExample, LoraWeights, ReferenceModel } from './reference-model.js';

/** The traced module whose output feeds a ReLU (the MLP's first linear), or undefined when the model has no ReLU. */
function reluInputModule(model: ReferenceModel): RegExp | undefined {
  const c = model.config;
  if (model.family === 'opt') return (c.activation_function ?? 'relu') === 'relu' ? /\.fc1$/ : undefined;
  if (model.family === 'gpt2') return c.activation_function === 'relu' ? /\.mlp\.c_fc$/ : undefined;
  return c.hidden_act === 'relu' ? /\.mlp\.gate_proj$/ : undefined;
}

/** The token sequences the reference runs for a loss batch: prompt + candidate, or prompt + target. */
export function lossSequences(batch: readonly ClassificationExample[] | readonly LmExample[]): number[][] {
  return batch.flatMap((e: ClassificationExample | LmExample) =>
    'candidates' in e ? e.candidates.map((c) => [...e.prompt, ...c]) : [[...e.prompt, ...e.target]],
  );
}

/**
 * Every ReLU input the reference computes on the real tokens of `seqs` (pads left out),
 * in a fixed order; empty for a model without ReLU. Reads the model's current weights.
 */
export function reluInputs(model: ReferenceModel, seqs: number[][], opts: { lora?: LoraWeights; padding?: 'left' | 'right' } = {}): Float64Array {
  const module = reluInputModule(model);
  if (module === undefined) return new Float64Array(0);
  const T = Math.max(...seqs.map((s) => s.length));
  const out: number[] = [];
  model.forward(seqs, {
    ...opts,
    trace: (name, data, shape) => {
      if (!module.test(name)) return;
      const F = shape[shape.length - 1];
      seqs.forEach((s, b) => {
        const start = opts.padding === 'left' ? T - s.length : 0;
        for (let i = (b * T + start) * F; i < (b * T + start + s.length) * F; i++) out.push(data[i]);
      });
    },
  });
  return Float64Array.from(out);
}

/** min |z| / rms(z) over ReLU inputs z: how close the nearest one is to the kink, in units of their scale (Infinity when there are none). */
export function kinkClearance(z: Float64Array): number {
  if (z.length === 0) return Infinity;
  let min = Infinity,
    sq = 0;
  for (const v of z) {
    min = Math.min(min, Math.abs(v));
    sq += v * v;
  }
  return min / Math.sqrt(sq / z.length);
}

/** Whether every ReLU input is on the same side of 0 in `a` and `b` (the same ReLUs active). */
export function sameReluPattern(a: Float64Array, b: Float64Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] > 0 !== b[i] > 0) return false;
  return true;
}
