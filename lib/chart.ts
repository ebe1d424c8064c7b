/**
 * A small, dependency-free writer for training-curve charts: one standalone SVG with
 * several panels side by side or in a grid (loss vs step, dev accuracy vs step, dev
 * accuracy vs wall time, …), one shared legend whose colours follow the series name
 * across every panel, plus the raw rows as CSV (RFC 4180) and JSON Lines.
 *
 * The output is deterministic: the same input always gives the same bytes.
 *
 *   - Axes get "nice" ticks (steps of 1, 2 or 5 times a power of ten) whose first and
 *     last values enclose the data.
 *   - Non-finite points (NaN, ±Infinity) are skipped and break the line: each run of
 *     finite points is its own <polyline>. Series with at most MARKER_LIMIT finite
 *     points also get a circle at every point.
 *   - Colours come from the Okabe–Ito colour-blind-safe palette, assigned by first
 *     appearance of a series name over all panels; past the palette's end the colours
 *     repeat with a dash pattern so every name stays distinguishable.
 *   - A series may carry a band (x, lower, upper), drawn as a translucent polygon in
 *     its colour beneath the lines; the axes enclose it.
 *   - All text is XML-escaped.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** One (x, y) point; a non-finite coordinate leaves a gap in the line. */
export type ChartPoint = readonly [number, number];

/** One x with a lower and an upper y: a point of a band's edges. */
export type ChartBandPoint = readonly [number, number, number];

/** One line of a chart panel: a legend name and its points. */
export interface ChartSeries {
  /** Legend label; series of the same name share a colour in every panel. */
  name: string;
  points: readonly ChartPoint[];
  /**
   * A shaded band around the line (e.g. min..max or a confidence interval over repeated
   * runs), drawn under it in the series' colour: (x, lower y, upper y) in x order.
   * Non-finite entries are skipped.
   */
  band?: readonly ChartBandPoint[];
}

/** One panel of a chart: title, axis labels and its series. */
export interface ChartPanel {
  title: string;
  xLabel: string;
  yLabel: string;
  series: readonly ChartSeries[];
}

/** A whole chart (one SVG): a title and its panels, laid out in a grid. */
export interface ChartSpec {
  title: string;
  panels: readonly ChartPanel[];
  /** Total width in px (default: 440 per panel column). */
  width?: number;
  /** Total height in px (default: 320 per panel row, plus title and legend). */
  height?: number;
  /** Panels per row (default: all in one row up to 3, then a grid of 3 columns). */
  columns?: number;
}

/** A CSV/JSONL row: plain values only. */
export type ChartRow = Record<string, number | string | null>;

/** Okabe & Ito (2008), reordered so the first few are the most distinct on white. */
export const PALETTE: readonly string[] = ['#0072B2', '#E69F00', '#009E73', '#D55E00', '#CC79A7', '#56B4E9', '#000000', '#F0E442'];

/** Dash patterns used once the palette wraps around (index = how many times it wrapped). */
const DASHES: readonly string[] = ['', '6 3', '2 3', '8 3 2 3'];

/** Series with at most this many finite points get a marker at every point. */
export const MARKER_LIMIT = 30;

// Layout constants (px).
const FONT = 12;
const TITLE_FONT = 16;
const PANEL_TITLE_FONT = 13;
const PANEL_W = 440;
const PANEL_H = 320;
const MARGIN = { left: 56, right: 20, top: 30, bottom: 50 };
const OUTER = 10; // padding around everything
const LEGEND_ROW = 20;
const LEGEND_SWATCH = 26;
const LEGEND_GAP = 18;

/** Escapes text for use in XML character data and attribute values. */
export function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c] as string);
}

/** Rounds to 12 significant digits, which removes the float noise of k * step. */
const clean = (v: number): number => {
  const r = Number.parseFloat(v.toPrecision(12));
  return r === 0 ? 0 : r; // no -0
};

/** The nice step (1, 2 or 5 × 10^k) nearest above `raw`. */
export function niceStep(raw: number): number {
  if (!(raw > 0) || !Number.isFinite(raw)) return 1;
  const exp = Math.floor(Math.log10(raw));
  const base = 10 ** exp;
  const f = raw / base;
  // Allow a little slack so that e.g. 0.2000000001 does not become 0.5.
  const m = f <= 1 + 1e-9 ? 1 : f <= 2 + 1e-9 ? 2 : f <= 5 + 1e-9 ? 5 : 10;
  return clean(m * base);
}

export interface Ticks {
  /** Axis start and end: the first and last tick. */
  min: number;
  max: number;
  step: number;
  values: number[];
}

/**
 * Nice ticks covering [lo, hi] with about `target` intervals. A degenerate range (one
 * value) is widened around the value; a non-finite range gives the ticks of [0, 1].
 */
export function niceTicks(lo: number, hi: number, target = 5): Ticks {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) {
    lo = 0;
    hi = 1;
  }
  if (lo > hi) [lo, hi] = [hi, lo];
  if (lo === hi) {
    const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  const intervals = Math.max(1, Math.round(target));
  // step ≥ range / intervals, so the enclosing ticks span at most intervals + 1 steps.
  const step = niceStep((hi - lo) / intervals);
  const first = Math.floor(lo / step + 1e-9);
  const last = Math.ceil(hi / step - 1e-9);
  const values: number[] = [];
  for (let k = first; k <= last; k++) values.push(clean(k * step));
  return { min: values[0] as number, max: values[values.length - 1] as number, step, values };
}

/**
 * Tick labels for one axis: as many decimals as the step needs, one `k`/`M`/`G` suffix
 * for the whole axis when its values are large, exponent form when the step is tiny.
 */
export function formatTicks(ticks: Ticks): string[] {
  const { step, values } = ticks;
  const big = Math.max(step, ...values.map(Math.abs));
  let scale = 1;
  let suffix = '';
  if (big >= 1e9) [scale, suffix] = [1e9, 'G'];
  else if (big >= 1e6) [scale, suffix] = [1e6, 'M'];
  else if (big >= 1e4) [scale, suffix] = [1e3, 'k'];
  else if (step < 1e-4) {
    return values.map((v) => {
      if (v === 0) return '0';
      const digits = Math.max(0, Math.ceil(Math.log10(Math.abs(v) / step) - 1e-9));
      return v.toExponential(Math.min(digits, 6)).replace(/\.?0+e/, 'e');
    });
  }
  const decimals = Math.min(12, Math.max(0, -Math.floor(Math.log10(step / scale) + 1e-9)));
  return values.map((v) => (v === 0 ? '0' : (v / scale).toFixed(decimals) + suffix));
}

/** Text width estimate for layout (average glyph of a sans-serif face ≈ 0.6 em). */
const textWidth = (s: string, size: number): number => s.length * size * 0.6;

/** `s`, cut with an ellipsis when its estimated width exceeds `max`. */
function fit(s: string, max: number, size: number): string {
  const chars = Math.max(1, Math.floor(max / (size * 0.6)));
  return s.length <= chars ? s : `${s.slice(0, Math.max(0, chars - 1))}…`;
}

/** Coordinates written with at most 2 decimals. */
const num = (v: number): string => {
  const r = Math.round(v * 100) / 100;
  return String(r === 0 ? 0 : r);
};

/** Splits a series into runs of finite points. */
export function finiteRuns(points: readonly ChartPoint[]): ChartPoint[][] {
  const runs: ChartPoint[][] = [];
  let run: ChartPoint[] = [];
  for (const p of points) {
    if (Number.isFinite(p[0]) && Number.isFinite(p[1])) run.push(p);
    else if (run.length > 0) {
      runs.push(run);
      run = [];
    }
  }
  if (run.length > 0) runs.push(run);
  return runs;
}

interface Style {
  color: string;
  dash: string;
}

/** Series name → colour (and dash once the palette wraps), by first appearance over all panels. */
function styles(panels: readonly ChartPanel[]): Map<string, Style> {
  const out = new Map<string, Style>();
  for (const panel of panels) {
    for (const s of panel.series) {
      if (out.has(s.name)) continue;
      const i = out.size;
      out.set(s.name, { color: PALETTE[i % PALETTE.length] as string, dash: DASHES[Math.floor(i / PALETTE.length) % DASHES.length] as string });
    }
  }
  return out;
}

interface LegendItem {
  name: string;
  x: number;
  y: number;
}

/** Lays legend entries out in centred rows no wider than `width`. */
function layoutLegend(names: readonly string[], width: number, top: number): { items: LegendItem[]; height: number } {
  const rows: { name: string; w: number }[][] = [];
  let row: { name: string; w: number }[] = [];
  let used = 0;
  for (const name of names) {
    const w = LEGEND_SWATCH + 6 + textWidth(name, FONT);
    if (row.length > 0 && used + LEGEND_GAP + w > width) {
      rows.push(row);
      row = [];
      used = 0;
    }
    used += (row.length > 0 ? LEGEND_GAP : 0) + w;
    row.push({ name, w });
  }
  if (row.length > 0) rows.push(row);
  const items: LegendItem[] = [];
  rows.forEach((r, i) => {
    const total = r.reduce((a, e) => a + e.w, 0) + LEGEND_GAP * (r.length - 1);
    let x = OUTER + Math.max(0, (width - total) / 2);
    for (const e of r) {
      items.push({ name: e.name, x, y: top + i * LEGEND_ROW + LEGEND_ROW / 2 });
      x += e.w + LEGEND_GAP;
    }
  });
  return { items, height: rows.length * LEGEND_ROW };
}

/** The plot area of a panel, in SVG coordinates. */
export interface PlotArea {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

/** A band's finite (x, lower, upper) entries. */
const finiteBand = (band: readonly ChartBandPoint[] | undefined): ChartBandPoint[] =>
  (band ?? []).filter(([x, lo, hi]) => Number.isFinite(x) && Number.isFinite(lo) && Number.isFinite(hi));

function renderPanel(panel: ChartPanel, ox: number, oy: number, w: number, h: number, style: Map<string, Style>, out: string[]): PlotArea {
  const runs = panel.series.map((s) => finiteRuns(s.points));
  const bands = panel.series.map((s) => finiteBand(s.band));
  let xlo = Infinity;
  let xhi = -Infinity;
  let ylo = Infinity;
  let yhi = -Infinity;
  const extend = (x: number, y: number): void => {
    if (x < xlo) xlo = x;
    if (x > xhi) xhi = x;
    if (y < ylo) ylo = y;
    if (y > yhi) yhi = y;
  };
  for (const rs of runs) for (const r of rs) for (const [x, y] of r) extend(x, y);
  for (const b of bands) {
    for (const [x, lo, hi] of b) {
      extend(x, lo);
      extend(x, hi);
    }
  }
  const hasData = xlo <= xhi;
  // Vertical extent first: the y tick labels decide how wide the left margin must be.
  const y0 = oy + MARGIN.top;
  const y1 = Math.max(y0 + 1, oy + h - MARGIN.bottom);
  const ph = y1 - y0;
  const yt = niceTicks(ylo, yhi, Math.min(8, Math.max(2, Math.floor(ph / 45))));
  const yLabels = formatTicks(yt);
  const left = Math.max(MARGIN.left, 30 + Math.max(...yLabels.map((l) => textWidth(l, FONT - 1))) + 10);
  const area: PlotArea = { x0: ox + left, y0, x1: Math.max(ox + left + 1, ox + w - MARGIN.right), y1 };
  const pw = area.x1 - area.x0;
  const xt = niceTicks(xlo, xhi, Math.min(8, Math.max(2, Math.floor(pw / 70))));
  const xLabels = formatTicks(xt);
  const sx = (x: number): number => area.x0 + ((x - xt.min) / (xt.max - xt.min)) * pw;
  const sy = (y: number): number => area.y1 - ((y - yt.min) / (yt.max - yt.min)) * ph;

  out.push(`<g class="panel">`);
  out.push(
    `<text class="panel-title" x="${num(area.x0 + pw / 2)}" y="${num(area.y0 - 10)}" text-anchor="middle" font-size="${PANEL_TITLE_FONT}" font-weight="bold">${escapeXml(fit(panel.title, w - 8, PANEL_TITLE_FONT))}</text>`,
  );
  // Grid and ticks.
  out.push(`<g class="grid" stroke="#e3e3e3" stroke-width="1">`);
  for (const v of xt.values) out.push(`<line x1="${num(sx(v))}" y1="${num(area.y0)}" x2="${num(sx(v))}" y2="${num(area.y1)}"/>`);
  for (const v of yt.values) out.push(`<line x1="${num(area.x0)}" y1="${num(sy(v))}" x2="${num(area.x1)}" y2="${num(sy(v))}"/>`);
  out.push(`</g>`);
  out.push(`<g class="x-ticks" font-size="${FONT - 1}" fill="#333" text-anchor="middle">`);
  xt.values.forEach((v, i) => {
    out.push(`<line x1="${num(sx(v))}" y1="${num(area.y1)}" x2="${num(sx(v))}" y2="${num(area.y1 + 4)}" stroke="#333"/>`);
    out.push(`<text x="${num(sx(v))}" y="${num(area.y1 + 17)}" data-value="${v}">${escapeXml(xLabels[i] as string)}</text>`);
  });
  out.push(`</g>`);
  out.push(`<g class="y-ticks" font-size="${FONT - 1}" fill="#333" text-anchor="end">`);
  yt.values.forEach((v, i) => {
    out.push(`<line x1="${num(area.x0 - 4)}" y1="${num(sy(v))}" x2="${num(area.x0)}" y2="${num(sy(v))}" stroke="#333"/>`);
    out.push(`<text x="${num(area.x0 - 7)}" y="${num(sy(v) + 4)}" data-value="${v}">${escapeXml(yLabels[i] as string)}</text>`);
  });
  out.push(`</g>`);
  out.push(
    `<rect class="plot-area" x="${num(area.x0)}" y="${num(area.y0)}" width="${num(pw)}" height="${num(ph)}" fill="none" stroke="#333" stroke-width="1"/>`,
  );
  // Axis labels.
  out.push(
    `<text class="x-label" x="${num(area.x0 + pw / 2)}" y="${num(area.y1 + 38)}" text-anchor="middle" font-size="${FONT}">${escapeXml(fit(panel.xLabel, pw, FONT))}</text>`,
  );
  const ly = area.y0 + ph / 2;
  const lx = ox + 16;
  out.push(
    `<text class="y-label" x="${num(lx)}" y="${num(ly)}" text-anchor="middle" font-size="${FONT}" transform="rotate(-90 ${num(lx)} ${num(ly)})">${escapeXml(fit(panel.yLabel, ph, FONT))}</text>`,
  );
  if (!hasData) {
    out.push(
      `<text class="no-data" x="${num(area.x0 + pw / 2)}" y="${num(area.y0 + ph / 2)}" text-anchor="middle" font-size="${FONT}" fill="#888">no data</text>`,
    );
  }
  // Bands first, so every line stays visible above them.
  panel.series.forEach((s, i) => {
    const b = bands[i] as ChartBandPoint[];
    if (b.length < 2) return;
    const st = style.get(s.name) as Style;
    const edge = [...b.map(([x, lo]) => `${num(sx(x))},${num(sy(lo))}`), ...[...b].reverse().map(([x, , hi]) => `${num(sx(x))},${num(sy(hi))}`)];
    out.push(`<polygon class="band" data-series="${escapeXml(s.name)}" points="${edge.join(' ')}" fill="${st.color}" fill-opacity="0.18" stroke="none"/>`);
  });
  // Series.
  panel.series.forEach((s, i) => {
    const rs = runs[i] as ChartPoint[][];
    if (rs.length === 0) return;
    const st = style.get(s.name) as Style;
    const dash = st.dash ? ` stroke-dasharray="${st.dash}"` : '';
    out.push(`<g class="series" data-series="${escapeXml(s.name)}">`);
    for (const r of rs) {
      const pts = r.map(([x, y]) => `${num(sx(x))},${num(sy(y))}`).join(' ');
      out.push(`<polyline points="${pts}" fill="none" stroke="${st.color}" stroke-width="1.8" stroke-linejoin="round" stroke-linecap="round"${dash}/>`);
    }
    const count = rs.reduce((a, r) => a + r.length, 0);
    if (count <= MARKER_LIMIT) {
      for (const r of rs)
        for (const [x, y] of r) out.push(`<circle cx="${num(sx(x))}" cy="${num(sy(y))}" r="3" fill="${st.color}" stroke="#fff" stroke-width="0.8"/>`);
    }
    out.push(`</g>`);
  });
  out.push(`</g>`);
  return area;
}

/** Renders the chart as a standalone SVG document. */
export function renderChart(spec: ChartSpec): string {
  const n = Math.max(1, spec.panels.length);
  const cols = Math.max(1, Math.min(n, Math.floor(spec.columns ?? (n <= 3 ? n : 3))));
  const rows = Math.ceil(n / cols);
  const width = spec.width ?? cols * PANEL_W + 2 * OUTER;
  const inner = width - 2 * OUTER;
  const style = styles(spec.panels);
  const titleH = spec.title ? TITLE_FONT + 14 : 4;
  const legend = layoutLegend([...style.keys()], inner, OUTER + titleH);
  const top = OUTER + titleH + legend.height + (legend.height > 0 ? 4 : 0);
  const height = spec.height ?? top + rows * PANEL_H + OUTER;
  const panelW = inner / cols;
  const panelH = Math.max(MARGIN.top + MARGIN.bottom + 20, (height - top - OUTER) / rows);

  const out: string[] = [];
  out.push(`<?xml version="1.0" encoding="UTF-8"?>`);
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${num(width)}" height="${num(height)}" viewBox="0 0 ${num(width)} ${num(height)}" font-family="sans-serif">`,
  );
  out.push(`<title>${escapeXml(spec.title)}</title>`);
  out.push(`<rect width="100%" height="100%" fill="#ffffff"/>`);
  if (spec.title) {
    out.push(
      `<text class="title" x="${num(width / 2)}" y="${num(OUTER + TITLE_FONT)}" text-anchor="middle" font-size="${TITLE_FONT}" font-weight="bold">${escapeXml(spec.title)}</text>`,
    );
  }
  if (legend.items.length > 0) {
    out.push(`<g class="legend" font-size="${FONT}">`);
    for (const it of legend.items) {
      const st = style.get(it.name) as Style;
      const dash = st.dash ? ` stroke-dasharray="${st.dash}"` : '';
      out.push(`<g class="legend-item" data-series="${escapeXml(it.name)}">`);
      out.push(
        `<line x1="${num(it.x)}" y1="${num(it.y)}" x2="${num(it.x + LEGEND_SWATCH)}" y2="${num(it.y)}" stroke="${st.color}" stroke-width="2.5"${dash}/>`,
      );
      out.push(`<circle cx="${num(it.x + LEGEND_SWATCH / 2)}" cy="${num(it.y)}" r="3" fill="${st.color}"/>`);
      out.push(`<text x="${num(it.x + LEGEND_SWATCH + 6)}" y="${num(it.y + 4)}">${escapeXml(it.name)}</text>`);
      out.push(`</g>`);
    }
    out.push(`</g>`);
  }
  spec.panels.forEach((panel, i) => {
    const c = i % cols;
    const r = Math.floor(i / cols);
    renderPanel(panel, OUTER + c * panelW, top + r * panelH, panelW, panelH, style, out);
  });
  out.push(`</svg>`);
  return out.join('\n') + '\n';
}

/** One CSV field, quoted (RFC 4180) when it holds a comma, quote, CR or LF. */
function csvField(v: number | string | null | undefined): string {
  if (v === null || v === undefined) return '';
  const s = String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/**
 * Rows as CSV (RFC 4180: CRLF line ends, fields with `,` `"` CR or LF quoted, quotes
 * doubled). Columns default to every key in order of first appearance; a missing or
 * null value is an empty field. Numbers are written in JavaScript's shortest
 * round-trip form (so NaN and Infinity appear as such).
 */
export function toCsv(rows: readonly ChartRow[], columns?: readonly string[]): string {
  let cols = columns;
  if (!cols) {
    const seen = new Set<string>();
    for (const r of rows) for (const k of Object.keys(r)) seen.add(k);
    cols = [...seen];
  }
  if (cols.length === 0) return '';
  const lines = [cols.map(csvField).join(',')];
  for (const r of rows) lines.push(cols.map((c) => csvField(Object.hasOwn(r, c) ? r[c] : null)).join(','));
  return lines.join('\r\n') + '\r\n';
}

/** Rows as JSON Lines: one JSON object per line (non-finite numbers become null, as in JSON). */
export function toJsonl(rows: readonly ChartRow[]): string {
  return rows.map((r) => JSON.stringify(r) + '\n').join('');
}

/** Writes `<dir>/<baseName>.svg`, `.csv` and `.jsonl` (creating `dir`) and returns their paths. */
export async function writeChartFiles(
  dir: string,
  baseName: string,
  chart: ChartSpec,
  rows: readonly ChartRow[],
): Promise<{ svg: string; csv: string; jsonl: string }> {
  await mkdir(dir, { recursive: true });
  const paths = { svg: join(dir, `${baseName}.svg`), csv: join(dir, `${baseName}.csv`), jsonl: join(dir, `${baseName}.jsonl`) };
  await writeFile(paths.svg, renderChart(chart));
  await writeFile(paths.csv, toCsv(rows));
  await writeFile(paths.jsonl, toJsonl(rows));
  return paths;
}
