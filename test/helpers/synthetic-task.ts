// A synthetic classification task for tiny random models: the label is carried by the
// first prompt token (20–23 → candidate 1, 30–33 → candidate 0); candidates are the
// single tokens 5 and 7. Deterministic in `seed`.
import type { ClassificationExample } from '../../lib/model/model.js';
import { seededRandom } from './tiny-checkpoints.js';

export function syntheticTask(V: number, nTrain: number, nDev: number, seed: number): { train: ClassificationExample[]; dev: ClassificationExample[] } {
  const r = seededRandom(seed);
  const make = (n: number) =>
    Array.from({ length: n }, () => {
      const label = r.uniform() < 0.5 ? 0 : 1;
      const key = (label ? 20 : 30) + Math.floor(r.uniform() * 4);
      return { prompt: [key, ...Array.from({ length: 3 }, () => 10 + Math.floor(r.uniform() * (V - 10)))], candidates: [[5], [7]], label };
    });
  return { train: make(nTrain), dev: make(nDev) };
}
