/**
 * Summaries of repeated runs (`compare --seeds N`): mean, sample standard deviation and
 * the 95% confidence interval of the mean from Student's t distribution,
 * mean ± t(0.975, n − 1) · sd / √n. The t quantile comes from jstat.
 */
import jstat from 'jstat';

/** Mean, spread and 95% interval of n values (sd and the interval need n ≥ 2). */
export interface Summary {
  n: number;
  mean: number | null;
  /** Sample standard deviation (n − 1 in the denominator). */
  sd: number | null;
  min: number | null;
  max: number | null;
  /** 95% confidence interval of the mean (t distribution, n − 1 degrees of freedom). */
  ci95: [number, number] | null;
}

/** t(0.975, dof): the two-sided 95% quantile of Student's t. */
export function tQuantile975(dof: number): number {
  return jstat.jStat.studentt.inv(0.975, dof);
}

/** Summarises values (non-finite ones excluded by the caller). */
export function summarize(values: readonly number[]): Summary {
  const n = values.length;
  if (n === 0) return { n, mean: null, sd: null, min: null, max: null, ci95: null };
  const mean = values.reduce((a, b) => a + b, 0) / n;
  const min = Math.min(...values),
    max = Math.max(...values);
  if (n < 2) return { n, mean, sd: null, min, max, ci95: null };
  const sd = Math.sqrt(values.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1));
  const half = (tQuantile975(n - 1) * sd) / Math.sqrt(n);
  return { n, mean, sd, min, max, ci95: [mean - half, mean + half] };
}
