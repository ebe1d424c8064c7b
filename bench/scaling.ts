/**
 * The scaling part of bench/torch.ts: which points to measure (model size at a fixed batch,
 * batch × sequence at a fixed model), and what to write from the measurements: one long CSV
 * (bench/scaling.csv), one SVG chart per sweep (bench/img/scaling-*.svg, drawn with
 * lib/chart.ts) and the Markdown section of bench/RESULTS.md.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { renderChart, toCsv, type ChartPanel, type ChartPoint, type ChartRow, type ChartSeries } from '../lib/chart.js';

export interface Shape {
  name: string;
  dim: number;
  layers: number;
  heads: number;
  ffn: number;
  vocab: number;
}
export interface Result {
  kind: string;
  median_s: number;
  min_s: number;
  max_s: number;
  peak_rss_mib: number;
  built_rss_mib: number;
  params: number;
  reps?: number;
  torch?: string;
  /** Other processes' CPU use during the timed runs, in cores: (machine busy CPU-s − this process's CPU-s) ÷ wall s. */
  other_load?: number | null;
}
/** One measured kind at one point: zofo's and the reference's results (either may be missing). */
export interface Pair {
  z?: Result;
  p?: Result;
}

export type Sweep = 'model' | 'tokens';
export interface Point {
  sweep: Sweep;
  shape: Shape;
  batch: number;
  seq: number;
}
/** The kinds measured at each scaling point. */
export const SCALING_KINDS = ['forward', 'zo', 'hybrid'] as const;
export type ScalingKind = (typeof SCALING_KINDS)[number];
export type Measure = (p: Point, kind: ScalingKind) => Pair;

const KIND_LABEL: Record<ScalingKind, string> = { forward: 'forward', zo: 'ZO step', hybrid: 'hybrid step' };
const ZOFO = 'zofo',
  REF = 'PyTorch reference';

/** Sweep over model size at batch × seq, then over batch × seq at `fixed`. */
export function scalingPoints(sizes: Shape[], fixed: Shape, batch: number, seq: number, tokenPoints: [number, number][]): Point[] {
  const out: Point[] = sizes.map((shape) => ({ sweep: 'model' as const, shape, batch, seq }));
  const bt = [...tokenPoints, [batch, seq] as [number, number]]
    .filter(([b, t], i, all) => all.findIndex(([b2, t2]) => b2 === b && t2 === t) === i)
    .sort((a, b) => a[0] * a[1] - b[0] * b[1] || a[1] - b[1]);
  for (const [b, t] of bt) out.push({ sweep: 'tokens', shape: fixed, batch: b, seq: t });
  return out;
}

export interface Measured {
  point: Point;
  params: number;
  kinds: Partial<Record<ScalingKind, Pair>>;
}

const xOf = (m: Measured): number => (m.point.sweep === 'model' ? m.params / 1e6 : m.point.batch * m.point.seq);

/** Least-squares slope of log(y) on log(x): the exponent k in y ∝ x^k over the sweep. */
export function logSlope(xs: number[], ys: number[]): number {
  const pts = xs.map((x, i) => [Math.log(x), Math.log(ys[i])]).filter(([a, b]) => Number.isFinite(a) && Number.isFinite(b));
  if (pts.length < 2) return NaN;
  const mx = pts.reduce((s, p) => s + p[0], 0) / pts.length,
    my = pts.reduce((s, p) => s + p[1], 0) / pts.length;
  const sxx = pts.reduce((s, p) => s + (p[0] - mx) ** 2, 0),
    sxy = pts.reduce((s, p) => s + (p[0] - mx) * (p[1] - my), 0);
  return sxx > 0 ? sxy / sxx : NaN;
}

export function csvRows(all: Measured[]): ChartRow[] {
  const rows: ChartRow[] = [];
  for (const m of all) {
    const { shape: s, batch, seq, sweep } = m.point;
    for (const kind of SCALING_KINDS) {
      const pair = m.kinds[kind];
      for (const [side, r] of [
        ['zofo', pair?.z],
        ['pytorch', pair?.p],
      ] as const) {
        rows.push({
          sweep,
          shape: s.name,
          dim: s.dim,
          layers: s.layers,
          heads: s.heads,
          ffn: s.ffn,
          vocab: s.vocab,
          base_params: m.params,
          batch,
          seq,
          tokens: batch * seq,
          kind,
          side,
          median_s: r?.median_s ?? null,
          min_s: r?.min_s ?? null,
          max_s: r?.max_s ?? null,
          reps: r?.reps ?? null,
          other_load_cores: typeof r?.other_load === 'number' ? Math.round(r.other_load * 100) / 100 : null,
          peak_rss_mib: r ? Math.round(r.peak_rss_mib * 10) / 10 : null,
          built_rss_mib: r ? Math.round(r.built_rss_mib * 10) / 10 : null,
        });
      }
    }
  }
  return rows;
}

function chartPanels(ms: Measured[], xLabel: string): ChartPanel[] {
  const series = (kind: ScalingKind, side: 'z' | 'p', f: (r: Result) => number): ChartPoint[] =>
    ms.map((m) => {
      const r = m.kinds[kind]?.[side];
      return [xOf(m), r ? f(r) : NaN] as const;
    });
  const both = (kind: ScalingKind, f: (r: Result) => number): ChartSeries[] => [
    { name: ZOFO, points: series(kind, 'z', f) },
    { name: REF, points: series(kind, 'p', f) },
  ];
  const xs = ms.map(xOf);
  const ratio = (f: (r: Result) => number): ChartSeries[] => [
    ...SCALING_KINDS.slice()
      .reverse()
      .map((kind) => ({
        name: `${KIND_LABEL[kind]} (zofo ÷ ref)`,
        points: ms.map((m) => {
          const z = m.kinds[kind]?.z,
            p = m.kinds[kind]?.p;
          return [xOf(m), z && p ? f(z) / f(p) : NaN] as const;
        }),
      })),
    {
      name: 'equal (ratio 1)',
      points: [
        [Math.min(...xs), 1],
        [Math.max(...xs), 1],
      ],
    },
  ];
  const t = (r: Result) => r.median_s,
    mem = (r: Result) => r.peak_rss_mib;
  return [
    { title: 'hybrid step: time', xLabel, yLabel: 'median seconds per step', series: both('hybrid', t) },
    { title: 'ZO step (zofo ZO-only vs MeZO): time', xLabel, yLabel: 'median seconds per step', series: both('zo', t) },
    { title: 'time, zofo ÷ reference (below 1: zofo faster)', xLabel, yLabel: 'ratio', series: ratio(t) },
    { title: 'hybrid step: peak RSS', xLabel, yLabel: 'peak RSS (MiB)', series: both('hybrid', mem) },
    { title: 'ZO step: peak RSS', xLabel, yLabel: 'peak RSS (MiB)', series: both('zo', mem) },
    { title: 'peak RSS, zofo ÷ reference', xLabel, yLabel: 'ratio', series: ratio(mem) },
  ];
}

const SWEEP_X: Record<Sweep, string> = { model: 'base parameters (millions)', tokens: 'tokens per batch (B × T)' };

/** Writes bench/scaling.csv and bench/img/scaling-{model,tokens}.svg; returns the paths written (repo-relative). */
export function writeScaling(root: (p: string) => string, all: Measured[], subtitle: string): string[] {
  mkdirSync(root('bench/img'), { recursive: true });
  writeFileSync(root('bench/scaling.csv'), toCsv(csvRows(all)));
  const written = ['bench/scaling.csv'];
  for (const sweep of ['model', 'tokens'] as const) {
    const ms = all.filter((m) => m.point.sweep === sweep);
    if (ms.length === 0) continue;
    const what =
      sweep === 'model'
        ? `zofo vs PyTorch as the model grows (batch ${ms[0].point.batch} × ${ms[0].point.seq})`
        : `zofo vs PyTorch as batch × sequence grows (${ms[0].point.shape.name}, ${(ms[0].params / 1e6).toFixed(1)} M)`;
    const svg = renderChart({ title: `${what}: ${subtitle}`, panels: chartPanels(ms, SWEEP_X[sweep]), columns: 3 });
    const rel = `bench/img/scaling-${sweep}.svg`;
    writeFileSync(root(rel), svg);
    written.push(rel);
  }
  return written;
}

const f3 = (x: number | undefined) => (x === undefined ? '–' : x.toFixed(x < 0.01 ? 4 : 3));
const rat = (a: number | undefined, b: number | undefined) => (a !== undefined && b !== undefined ? (a / b).toFixed(2) : '–');

/** The Markdown of the scaling section (tables, growth exponents, chart links). */
export function scalingMarkdown(all: Measured[], contended: number): string[] {
  const out: string[] = [];
  for (const sweep of ['model', 'tokens'] as const) {
    const ms = all.filter((m) => m.point.sweep === sweep);
    if (ms.length === 0) continue;
    out.push('');
    out.push(
      sweep === 'model'
        ? `### As the model grows (batch ${ms[0].point.batch} × ${ms[0].point.seq})`
        : `### As batch × sequence grows (${ms[0].point.shape.name}, ${(ms[0].params / 1e6).toFixed(2)} M base parameters)`,
    );
    out.push('');
    out.push(`![${sweep} scaling](img/scaling-${sweep}.svg)`);
    out.push('');
    out.push(
      '| point | base params | B × T | hybrid zofo / ref (s) | ÷ | ZO zofo / ref (s) | ÷ | forward zofo / ref (s) | ÷ | hybrid peak RSS zofo / ref (MiB) | ÷ | ZO peak RSS zofo / ref (MiB) | ÷ | max other load (cores) |',
    );
    out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const m of ms) {
      const k = m.kinds;
      const t = (kind: ScalingKind) => `${f3(k[kind]?.z?.median_s)} / ${f3(k[kind]?.p?.median_s)} | ${rat(k[kind]?.z?.median_s, k[kind]?.p?.median_s)}`;
      const mem = (kind: ScalingKind) =>
        `${k[kind]?.z?.peak_rss_mib.toFixed(0) ?? '–'} / ${k[kind]?.p?.peak_rss_mib.toFixed(0) ?? '–'} | ${rat(k[kind]?.z?.peak_rss_mib, k[kind]?.p?.peak_rss_mib)}`;
      const load = Math.max(0, ...SCALING_KINDS.flatMap((kind) => [k[kind]?.z?.other_load ?? 0, k[kind]?.p?.other_load ?? 0]));
      out.push(
        `| ${m.point.shape.name} | ${(m.params / 1e6).toFixed(2)} M | ${m.point.batch} × ${m.point.seq} | ${t('hybrid')} | ${t('zo')} | ${t('forward')} | ${mem('hybrid')} | ${mem('zo')} | ${load.toFixed(2)}${load > contended ? ' ⚠' : ''} |`,
      );
    }
    out.push('');
    const r = (kind: ScalingKind, f: (x: Result) => number, m: Measured) =>
      rat(m.kinds[kind]?.z && f(m.kinds[kind]!.z!), m.kinds[kind]?.p && f(m.kinds[kind]!.p!));
    const span = (kind: ScalingKind, f: (x: Result) => number) => `${r(kind, f, ms[0])} → ${r(kind, f, ms[ms.length - 1])}`;
    const tm = (x: Result) => x.median_s,
      pk = (x: Result) => x.peak_rss_mib;
    out.push(
      `zofo ÷ reference from the first to the last point: time — hybrid ${span('hybrid', tm)}, ZO ${span('zo', tm)}, forward ${span('forward', tm)}; ` +
        `peak RSS — hybrid ${span('hybrid', pk)}, ZO ${span('zo', pk)}, forward ${span('forward', pk)}.`,
    );
    out.push('');
    const xs = ms.map(xOf);
    const xName = sweep === 'model' ? 'parameters' : 'tokens';
    out.push(
      `Growth over this sweep (${xName} ×${(xs[xs.length - 1] / xs[0]).toFixed(1)} from first to last point): cost of the last point ÷ the first, and the exponent k of a least-squares fit cost ∝ ${xName}^k (log–log):`,
    );
    out.push('');
    out.push('| step | time growth zofo / ref | time exponent zofo / ref | peak-RSS growth zofo / ref | peak-RSS exponent zofo / ref |');
    out.push('|---|---:|---:|---:|---:|');
    for (const kind of ['hybrid', 'zo', 'forward'] as const) {
      const cells: string[] = [];
      for (const f of [(r: Result) => r.median_s, (r: Result) => r.peak_rss_mib]) {
        const g = (side: 'z' | 'p') => {
          const ys = ms.map((m) => {
            const r = m.kinds[kind]?.[side];
            return r ? f(r) : NaN;
          });
          return { growth: ys[ys.length - 1] / ys[0], k: logSlope(xs, ys) };
        };
        const z = g('z'),
          p = g('p');
        const fmt = (v: number) => (Number.isFinite(v) ? v.toFixed(2) : '–');
        cells.push(`×${fmt(z.growth)} / ×${fmt(p.growth)}`, `${fmt(z.k)} / ${fmt(p.k)}`);
      }
      out.push(`| ${KIND_LABEL[kind]} | ${cells.join(' | ')} |`);
    }
  }
  return out;
}
