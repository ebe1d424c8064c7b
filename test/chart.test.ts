// The training-curve chart writer: the SVG is well-formed XML (checked with a tiny
// parser below), one polyline per run of finite points per series per panel, nice
// ticks enclosing the data, escaping, every coordinate inside its plot area, colours
// consistent across panels; CSV (RFC 4180) and JSONL round-trip; the three files.
import t from 'tap';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  MARKER_LIMIT,
  PALETTE,
  escapeXml,
  finiteRuns,
  formatTicks,
  niceStep,
  niceTicks,
  renderChart,
  toCsv,
  toJsonl,
  writeChartFiles,
  type ChartPanel,
  type ChartPoint,
  type ChartRow,
  type ChartSpec,
} from '../lib/chart.js';

// ---------------------------------------------------------------------------------
// A tiny XML parser: elements, attributes (double-quoted), text, the five predefined
// entities and numeric character references. Throws on anything malformed.

interface XmlNode {
  name: string;
  attrs: Record<string, string>;
  children: XmlNode[];
  text: string;
}

function decode(s: string, where: string): string {
  if (/[<>]/.test(s)) throw new Error(`raw < or > in ${where}: ${JSON.stringify(s)}`);
  return s.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-z]+);|&/g, (m, ent: string | undefined) => {
    if (ent === undefined) throw new Error(`bare & in ${where}: ${JSON.stringify(s)}`);
    if (ent.startsWith('#x')) return String.fromCodePoint(Number.parseInt(ent.slice(2), 16));
    if (ent.startsWith('#')) return String.fromCodePoint(Number.parseInt(ent.slice(1), 10));
    const named: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };
    if (!(ent in named)) throw new Error(`unknown entity &${ent}; in ${where}`);
    return named[ent] as string;
  });
}

function parseXml(src: string): XmlNode {
  let s = src.replace(/^<\?xml[^?]*\?>\s*/, '');
  const root: XmlNode = { name: '#document', attrs: {}, children: [], text: '' };
  const stack: XmlNode[] = [root];
  const tag = /^<(\/?)([A-Za-z_][\w:.-]*)((?:\s+[A-Za-z_][\w:.-]*="[^"]*")*)\s*(\/?)>/;
  while (s.length > 0) {
    const lt = s.indexOf('<');
    const text = lt < 0 ? s : s.slice(0, lt);
    if (text.length > 0) {
      const top = stack[stack.length - 1] as XmlNode;
      const decoded = decode(text, `text of <${top.name}>`);
      if (top === root && decoded.trim() !== '') throw new Error(`text outside the root element: ${JSON.stringify(text)}`);
      top.text += decoded;
    }
    if (lt < 0) break;
    s = s.slice(lt);
    const m = tag.exec(s);
    if (!m) throw new Error(`malformed tag at: ${JSON.stringify(s.slice(0, 60))}`);
    const [whole, close, name, attrText, selfClose] = m as unknown as [string, string, string, string, string];
    s = s.slice(whole.length);
    if (close) {
      if (attrText || selfClose) throw new Error(`malformed closing tag ${whole}`);
      const open = stack.pop() as XmlNode;
      if (open.name !== name) throw new Error(`</${name}> closes <${open.name}>`);
      continue;
    }
    const attrs: Record<string, string> = {};
    for (const a of attrText.matchAll(/([A-Za-z_][\w:.-]*)="([^"]*)"/g)) {
      const key = a[1] as string;
      if (key in attrs) throw new Error(`duplicate attribute ${key} on <${name}>`);
      attrs[key] = decode(a[2] as string, `attribute ${key} of <${name}>`);
    }
    const node: XmlNode = { name, attrs, children: [], text: '' };
    const parent = stack[stack.length - 1] as XmlNode;
    if (parent === root && root.children.length > 0) throw new Error('more than one root element');
    parent.children.push(node);
    if (!selfClose) stack.push(node);
  }
  if (stack.length !== 1) throw new Error(`unclosed <${(stack[stack.length - 1] as XmlNode).name}>`);
  if (root.children.length !== 1) throw new Error('no root element');
  return root.children[0] as XmlNode;
}

/** Every descendant of `n` (not `n` itself) matching `pred`, in document order. */
function findAll(n: XmlNode, pred: (x: XmlNode) => boolean): XmlNode[] {
  const out: XmlNode[] = [];
  const walk = (x: XmlNode): void => {
    for (const c of x.children) {
      if (pred(c)) out.push(c);
      walk(c);
    }
  };
  walk(n);
  return out;
}
const byClass = (cls: string) => (x: XmlNode) => (x.attrs.class ?? '').split(/\s+/).includes(cls);
const byName = (name: string) => (x: XmlNode) => x.name === name;
const textOf = (n: XmlNode): string => n.text + n.children.map(textOf).join('');

function polylinePoints(n: XmlNode): [number, number][] {
  return (n.attrs.points ?? '')
    .trim()
    .split(/\s+/)
    .map((p) => p.split(',').map(Number) as [number, number]);
}

function plotArea(panel: XmlNode): { x0: number; y0: number; x1: number; y1: number } {
  const r = findAll(panel, byClass('plot-area'))[0] as XmlNode;
  const x0 = Number(r.attrs.x);
  const y0 = Number(r.attrs.y);
  return { x0, y0, x1: x0 + Number(r.attrs.width), y1: y0 + Number(r.attrs.height) };
}

// ---------------------------------------------------------------------------------

const line = (n: number, f: (i: number) => number, dx = 1): ChartPoint[] => Array.from({ length: n }, (_, i) => [i * dx, f(i)] as ChartPoint);

const example: ChartSpec = {
  title: 'Modes compared',
  panels: [
    {
      title: 'loss vs step',
      xLabel: 'step',
      yLabel: 'loss',
      series: [
        { name: 'hybrid', points: line(200, (i) => 2 * Math.exp(-i / 50) + 0.3, 10) },
        { name: 'MeZO', points: line(200, (i) => 2 * Math.exp(-i / 150) + 0.5, 10) },
        { name: 'LoRA', points: line(200, (i) => 2 * Math.exp(-i / 80) + 0.4, 10) },
      ],
    },
    {
      title: 'dev accuracy vs step',
      xLabel: 'step',
      yLabel: 'accuracy',
      series: [
        { name: 'MeZO', points: line(11, (i) => 0.5 + 0.03 * i, 200) },
        { name: 'hybrid', points: line(11, (i) => 0.5 + 0.04 * i, 200) },
        { name: 'LoRA', points: [] },
      ],
    },
    {
      title: 'dev accuracy vs wall time',
      xLabel: 'wall time (s)',
      yLabel: 'accuracy',
      series: [
        { name: 'hybrid', points: line(11, (i) => 0.5 + 0.04 * i, 83.7) },
        { name: 'MeZO', points: line(11, (i) => 0.5 + 0.03 * i, 61.2) },
        { name: 'LoRA', points: line(11, (i) => 0.5 + 0.035 * i, 75.1) },
      ],
    },
  ],
};

t.test('the SVG is a well-formed standalone document with a viewBox and a sans-serif font', async (t) => {
  const svg = renderChart(example);
  const root = parseXml(svg);
  t.equal(root.name, 'svg');
  t.equal(root.attrs.xmlns, 'http://www.w3.org/2000/svg');
  t.equal(root.attrs['font-family'], 'sans-serif');
  const vb = (root.attrs.viewBox ?? '').split(' ').map(Number);
  t.same(vb.slice(0, 2), [0, 0]);
  t.equal(vb[2], Number(root.attrs.width));
  t.equal(vb[3], Number(root.attrs.height));
  t.equal(findAll(root, byClass('panel')).length, 3, 'one panel per entry');
  t.equal(renderChart(example), svg, 'deterministic');
  t.notMatch(svg, /NaN|Infinity|undefined/, 'no non-numbers leak into the markup');
  // The parser itself rejects what it should.
  t.throws(() => parseXml('<svg><g></svg>'));
  t.throws(() => parseXml('<svg><text>a < b</text></svg>'));
  t.throws(() => parseXml('<svg><text>a & b</text></svg>'));
  t.throws(() => parseXml('<svg><g>'));
});

t.test('panels sit side by side up to 3, then in a grid; an explicit size is honoured', async (t) => {
  const boxes = (spec: ChartSpec) => findAll(parseXml(renderChart(spec)), byClass('panel')).map(plotArea);
  const three = boxes(example);
  t.ok(three[0]!.y0 === three[1]!.y0 && three[1]!.y0 === three[2]!.y0, 'one row');
  t.ok(three[0]!.x1 < three[1]!.x0 && three[1]!.x1 < three[2]!.x0, 'left to right, not overlapping');
  const four = boxes({ ...example, panels: [...example.panels, example.panels[0] as ChartPanel] });
  t.equal(four.length, 4);
  t.ok(four[3]!.y0 > four[0]!.y1, 'the fourth panel starts a second row');
  const two = boxes({ ...example, columns: 2 });
  t.ok(two[2]!.y0 > two[0]!.y1 && two[2]!.x0 === two[0]!.x0, 'columns: 2 puts the third panel under the first');
  const sized = parseXml(renderChart({ ...example, width: 1000, height: 420 }));
  t.equal(sized.attrs.width, '1000');
  t.equal(sized.attrs.height, '420');
  t.equal(sized.attrs.viewBox, '0 0 1000 420');
  for (const b of findAll(sized, byClass('panel')).map(plotArea)) t.ok(b.x0 >= 0 && b.x1 <= 1000 && b.y0 >= 0 && b.y1 <= 420, 'inside the canvas');
  // No panels at all still makes a valid (empty) document.
  t.equal(findAll(parseXml(renderChart({ title: '', panels: [] })), byClass('panel')).length, 0);
});

t.test('one polyline per non-empty series per panel, markers only for short series', async (t) => {
  const root = parseXml(renderChart(example));
  const panels = findAll(root, byClass('panel'));
  panels.forEach((panel, i) => {
    const spec = example.panels[i] as ChartPanel;
    const groups = findAll(panel, byClass('series'));
    const nonEmpty = spec.series.filter((s) => s.points.length > 0);
    t.same(
      groups.map((g) => g.attrs['data-series']),
      nonEmpty.map((s) => s.name),
      `panel ${i}: one group per non-empty series`,
    );
    groups.forEach((g, j) => {
      const s = nonEmpty[j]!;
      const polys = findAll(g, byName('polyline'));
      t.equal(polys.length, 1, `panel ${i} ${s.name}: one polyline`);
      t.equal(polylinePoints(polys[0]!).length, s.points.length, 'every point drawn');
      t.equal(findAll(g, byName('circle')).length, s.points.length <= MARKER_LIMIT ? s.points.length : 0, 'markers iff ≤ MARKER_LIMIT points');
    });
  });
  // The boundary exactly.
  const at = (n: number) =>
    findAll(
      parseXml(renderChart({ title: 'm', panels: [{ title: 'p', xLabel: 'x', yLabel: 'y', series: [{ name: 's', points: line(n, (i) => i) }] }] })),
      byName('circle'),
    ).length;
  t.equal(at(MARKER_LIMIT), MARKER_LIMIT + 1, '30 points: 30 markers (+1 in the legend)');
  t.equal(at(MARKER_LIMIT + 1), 1, '31 points: only the legend marker');
});

t.test('ticks are nice numbers covering the data range', async (t) => {
  const isNice = (step: number): boolean => {
    const m = step / 10 ** Math.floor(Math.log10(step) + 1e-12);
    return [1, 2, 5].some((k) => Math.abs(m - k) < 1e-9);
  };
  let seed = 7;
  const rnd = (): number => {
    seed = (seed * 16807) % 2147483647;
    return seed / 2147483647;
  };
  const cases: [number, number][] = [
    [0, 1],
    [0, 2000],
    [0.3, 2.3],
    [0.49, 0.93],
    [-120, 40],
    [1e-6, 3.7e-6],
    [12345, 98765],
    [-0.001, 0.001],
    [5, 5],
    [0, 0],
    [-3, -3],
  ];
  for (let i = 0; i < 200; i++) {
    const scale = 10 ** Math.floor(rnd() * 16 - 8);
    const a = (rnd() - 0.5) * scale;
    cases.push([a, a + rnd() * scale]);
  }
  for (const [lo, hi] of cases) {
    for (const target of [2, 5, 8]) {
      const tk = niceTicks(lo, hi, target);
      const tight = lo === hi || (tk.min > lo - tk.step * (1 + 1e-9) && tk.max < hi + tk.step * (1 + 1e-9)); // a single value is widened first
      const ok =
        isNice(tk.step) &&
        tk.min <= lo &&
        tk.max >= hi &&
        tight &&
        (lo !== hi || (tk.min < lo && tk.max > hi)) &&
        tk.values.length >= 2 &&
        tk.values.length <= target + 2 &&
        tk.values[0] === tk.min &&
        tk.values[tk.values.length - 1] === tk.max &&
        tk.values.every(
          (v, k) => Math.abs(v / tk.step - Math.round(v / tk.step)) < 1e-6 && (k === 0 || Math.abs(v - tk.values[k - 1]! - tk.step) < tk.step * 1e-6),
        );
      if (!ok) t.fail(`niceTicks(${lo}, ${hi}, ${target}) = ${JSON.stringify(tk)}`);
    }
  }
  t.pass(`${cases.length * 3} ranges`);
  t.same(niceTicks(0, 2000, 4).values, [0, 500, 1000, 1500, 2000]);
  t.same(niceTicks(0.49, 0.93, 5).values, [0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1]);
  t.same(niceTicks(0.1, 0.7, 6).values, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7], 'no float noise');
  t.same(niceTicks(0.12, 0.31, 1).values, [0, 0.2, 0.4], 'a range that straddles a nice step');
  t.same(niceTicks(3, 1, 2).values, niceTicks(1, 3, 2).values, 'reversed range');
  t.same(niceTicks(NaN, Infinity).values, niceTicks(0, 1).values, 'non-finite range: [0, 1]');
  t.equal(niceStep(0), 1);
  t.equal(niceStep(0.3), 0.5);
  t.equal(niceStep(7), 10);
  t.equal(niceStep(0.2000000001), 0.2);
  // In the SVG: the tick values of each axis enclose that panel's data.
  const root = parseXml(renderChart(example));
  findAll(root, byClass('panel')).forEach((panel, i) => {
    const pts = (example.panels[i] as ChartPanel).series.flatMap((s) => s.points);
    for (const [axis, k] of [
      ['x-ticks', 0],
      ['y-ticks', 1],
    ] as const) {
      const vals = findAll(findAll(panel, byClass(axis))[0]!, byName('text')).map((n) => Number(n.attrs['data-value']));
      const data = pts.map((p) => p[k]);
      t.ok(vals.length >= 2 && isNice(vals[1]! - vals[0]!), `panel ${i} ${axis}: nice step`);
      t.ok(Math.min(...vals) <= Math.min(...data) && Math.max(...vals) >= Math.max(...data), `panel ${i} ${axis}: covers the data`);
    }
  });
});

t.test('tick labels', async (t) => {
  t.same(formatTicks(niceTicks(0, 2000, 4)), ['0', '500', '1000', '1500', '2000']);
  t.same(formatTicks(niceTicks(0, 15000, 3)), ['0', '5k', '10k', '15k'], 'one suffix for the whole axis');
  t.same(formatTicks(niceTicks(0, 2.5e6, 5)), ['0', '0.5M', '1.0M', '1.5M', '2.0M', '2.5M']);
  t.same(formatTicks(niceTicks(0, 3e9, 3)), ['0', '1G', '2G', '3G']);
  t.same(formatTicks(niceTicks(0.4, 1, 6)), ['0.4', '0.5', '0.6', '0.7', '0.8', '0.9', '1.0']);
  t.same(formatTicks(niceTicks(-0.02, 0.02, 4)), ['-0.02', '-0.01', '0', '0.01', '0.02']);
  t.same(formatTicks(niceTicks(1e-5, 3e-5, 4)), ['1e-5', '1.5e-5', '2e-5', '2.5e-5', '3e-5']);
});

t.test('text is XML-escaped everywhere', async (t) => {
  const nasty = `a<b & "c" 'd'>`;
  const svg = renderChart({
    title: `T ${nasty}`,
    panels: [{ title: `P ${nasty}`, xLabel: `X ${nasty}`, yLabel: `Y ${nasty}`, series: [{ name: nasty, points: line(5, (i) => i) }] }],
  });
  t.notOk(svg.includes(nasty), 'never raw');
  t.ok(svg.includes('a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;'));
  const root = parseXml(svg);
  t.equal(textOf(findAll(root, byName('title'))[0]!), `T ${nasty}`);
  t.equal(textOf(findAll(root, byClass('title'))[0]!), `T ${nasty}`);
  t.equal(textOf(findAll(root, byClass('panel-title'))[0]!), `P ${nasty}`);
  t.equal(textOf(findAll(root, byClass('x-label'))[0]!), `X ${nasty}`);
  t.equal(textOf(findAll(root, byClass('y-label'))[0]!), `Y ${nasty}`);
  t.equal(findAll(root, byClass('series'))[0]!.attrs['data-series'], nasty);
  t.equal(textOf(findAll(root, byClass('legend-item'))[0]!).trim(), nasty);
  t.equal(escapeXml('&amp;'), '&amp;amp;', 'escapes & even when it looks like an entity');
});

t.test('NaN and Infinity points are skipped and split the line', async (t) => {
  const pts: ChartPoint[] = [
    [0, 1],
    [1, 2],
    [2, NaN],
    [3, 3],
    [4, 4],
    [Infinity, 5],
    [6, -Infinity],
    [7, 6],
    [8, NaN],
  ];
  t.same(finiteRuns(pts), [
    [
      [0, 1],
      [1, 2],
    ],
    [
      [3, 3],
      [4, 4],
    ],
    [[7, 6]],
  ]);
  t.same(finiteRuns([]), []);
  t.same(finiteRuns([[NaN, NaN]]), []);
  const root = parseXml(
    renderChart({
      title: 'gaps',
      panels: [
        {
          title: 'p',
          xLabel: 'x',
          yLabel: 'y',
          series: [
            { name: 'gappy', points: pts },
            {
              name: 'all NaN',
              points: [
                [0, NaN],
                [1, NaN],
              ],
            },
            { name: 'empty', points: [] },
          ],
        },
      ],
    }),
  );
  const groups = findAll(root, byClass('series'));
  t.same(
    groups.map((g) => g.attrs['data-series']),
    ['gappy'],
    'series without finite points draw nothing',
  );
  const polys = findAll(groups[0]!, byName('polyline'));
  t.same(
    polys.map((p) => polylinePoints(p).length),
    [2, 2, 1],
    'one polyline per finite run',
  );
  t.equal(findAll(groups[0]!, byName('circle')).length, 5, 'a marker per finite point (so a lone point is visible)');
  // The axes ignore the skipped values.
  const xs = findAll(findAll(root, byClass('x-ticks'))[0]!, byName('text')).map((n) => Number(n.attrs['data-value']));
  t.ok(Math.max(...xs) < 10, 'x axis ignores Infinity');
  // The legend still names every series, in a consistent colour.
  t.same(
    findAll(root, byClass('legend-item')).map((n) => n.attrs['data-series']),
    ['gappy', 'all NaN', 'empty'],
  );
  // A panel with no data at all still draws its axes and says so.
  const empty = parseXml(renderChart({ title: 'e', panels: [{ title: 'p', xLabel: 'x', yLabel: 'y', series: [{ name: 's', points: [[NaN, 1]] }] }] }));
  t.equal(findAll(empty, byClass('no-data')).length, 1);
  t.equal(findAll(empty, byName('polyline')).length, 0);
  t.ok(findAll(empty, byClass('x-ticks')).length === 1 && findAll(empty, byClass('y-ticks')).length === 1);
});

t.test('every coordinate stays inside its plot area', async (t) => {
  const specs: ChartSpec[] = [
    example,
    { ...example, width: 700, height: 300 },
    {
      title: 'odd data',
      panels: [
        { title: 'single point', xLabel: 'x', yLabel: 'y', series: [{ name: 'a', points: [[5, 5]] }] },
        { title: 'flat', xLabel: 'x', yLabel: 'y', series: [{ name: 'b', points: line(40, () => -2) }] },
        { title: 'huge', xLabel: 'x', yLabel: 'y', series: [{ name: 'c', points: line(40, (i) => (i - 20) * 1e8, 1e5) }] },
        { title: 'tiny', xLabel: 'x', yLabel: 'y', series: [{ name: 'd', points: line(40, (i) => Math.sin(i) * 1e-7, 1e-3) }] },
      ],
    },
  ];
  for (const spec of specs) {
    const root = parseXml(renderChart(spec));
    for (const panel of findAll(root, byClass('panel'))) {
      const a = plotArea(panel);
      const inside = ([x, y]: [number, number]): boolean => x >= a.x0 - 0.01 && x <= a.x1 + 0.01 && y >= a.y0 - 0.01 && y <= a.y1 + 0.01;
      const pts = [
        ...findAll(panel, byName('polyline')).flatMap(polylinePoints),
        ...findAll(panel, byName('circle')).map((c) => [Number(c.attrs.cx), Number(c.attrs.cy)] as [number, number]),
      ];
      t.ok(pts.length > 0);
      const outside = pts.filter((p) => !inside(p) || !p.every(Number.isFinite));
      t.same(outside, [], `${spec.title}: all ${pts.length} points inside [${a.x0}, ${a.x1}] × [${a.y0}, ${a.y1}]`);
    }
  }
});

t.test('one colour per series name, the same in every panel and in the legend', async (t) => {
  const root = parseXml(renderChart(example));
  const legend = new Map(findAll(root, byClass('legend-item')).map((n) => [n.attrs['data-series'], findAll(n, byName('line'))[0]!.attrs.stroke]));
  t.same([...legend.keys()], ['hybrid', 'MeZO', 'LoRA'], 'legend in order of first appearance');
  t.same([...legend.values()], PALETTE.slice(0, 3));
  for (const g of findAll(root, byClass('series'))) {
    for (const p of findAll(g, byName('polyline'))) t.equal(p.attrs.stroke, legend.get(g.attrs['data-series']), `${g.attrs['data-series']}`);
  }
  // Past the palette, colours repeat but with a dash pattern: every name stays distinct.
  const many = renderChart({
    title: 'many',
    panels: [{ title: 'p', xLabel: 'x', yLabel: 'y', series: Array.from({ length: 20 }, (_, i) => ({ name: `s${i}`, points: line(3, (k) => k + i) })) }],
  });
  const styles = findAll(parseXml(many), byClass('legend-item')).map((n) => {
    const l = findAll(n, byName('line'))[0]!;
    return `${l.attrs.stroke} ${l.attrs['stroke-dasharray'] ?? ''}`;
  });
  t.equal(new Set(styles).size, 20, 'twenty distinct styles');
});

t.test('legend entries do not overlap and wrap within the width', async (t) => {
  const series = Array.from({ length: 12 }, (_, i) => ({ name: `a rather long series name number ${i}`, points: line(3, (k) => k) }));
  const root = parseXml(renderChart({ title: 'legend', width: 600, panels: [{ title: 'p', xLabel: 'x', yLabel: 'y', series }] }));
  const items = findAll(root, byClass('legend-item')).map((n) => {
    const l = findAll(n, byName('line'))[0]!;
    const txt = findAll(n, byName('text'))[0]!;
    const x0 = Number(l.attrs.x1);
    return { x0, x1: Number(txt.attrs.x) + textOf(txt).length * 12 * 0.6, y: Number(l.attrs.y1) };
  });
  t.equal(items.length, 12);
  t.ok(new Set(items.map((i) => i.y)).size > 1, 'wraps onto several rows');
  for (const a of items) {
    t.ok(a.x0 >= 0 && a.x1 <= 600, 'inside the width');
    for (const b of items) if (a !== b && a.y === b.y) t.ok(a.x1 <= b.x0 || b.x1 <= a.x0, 'no overlap in a row');
  }
  const top = Math.min(...findAll(root, byClass('panel')).map((p) => plotArea(p).y0));
  t.ok(Math.max(...items.map((i) => i.y)) + 10 < top - 20, 'the legend ends above the panels (and their titles)');
});

// ---------------------------------------------------------------------------------

/** An RFC 4180 parser (the reference for the round trip). */
function parseCsv(src: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let i = 0;
  let quoted = false;
  while (i < src.length) {
    const c = src[i] as string;
    if (quoted) {
      if (c === '"' && src[i + 1] === '"') {
        field += '"';
        i += 2;
      } else if (c === '"') {
        quoted = false;
        i++;
      } else {
        field += c;
        i++;
      }
    } else if (c === '"') {
      if (field !== '') throw new Error('quote inside an unquoted field');
      quoted = true;
      i++;
    } else if (c === ',') {
      row.push(field);
      field = '';
      i++;
    } else if (c === '\r' && src[i + 1] === '\n') {
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
      i += 2;
    } else if (c === '\r' || c === '\n') {
      throw new Error('bare CR or LF outside quotes');
    } else {
      field += c;
      i++;
    }
  }
  if (quoted) throw new Error('unterminated quote');
  if (field !== '' || row.length > 0) throw new Error('last record not terminated by CRLF');
  return rows;
}

t.test('CSV: RFC 4180 quoting round-trips commas, quotes and newlines', async (t) => {
  const rows: ChartRow[] = [
    { mode: 'plain', step: 1, loss: 0.5 },
    { mode: 'comma, inside', step: 2, loss: -1.25e-7 },
    { mode: 'say "hi"', step: 3, loss: null },
    { mode: 'two\nlines', step: 4, loss: NaN },
    { mode: 'crlf\r\nend', step: 5, loss: Infinity, extra: 'x' },
    { mode: '"', step: 6, loss: 0.1 + 0.2 },
    { mode: '', step: 7 },
  ];
  const csv = toCsv(rows);
  const parsed = parseCsv(csv);
  t.same(parsed[0], ['mode', 'step', 'loss', 'extra'], 'columns: every key, in order of first appearance');
  t.equal(parsed.length, rows.length + 1);
  rows.forEach((r, i) => {
    const cells = parsed[i + 1] as string[];
    t.equal(cells.length, 4, `row ${i}: every column`);
    t.equal(cells[0], r.mode);
    t.equal(Number(cells[1]), r.step);
    if (r.loss === null || r.loss === undefined) t.equal(cells[2], '', 'null/missing is empty');
    else t.ok(Object.is(Number(cells[2]), r.loss), `numbers round-trip exactly: ${cells[2]}`);
    t.equal(cells[3], r.extra ?? '');
  });
  t.ok(csv.includes('"say ""hi"""'), 'quotes doubled');
  t.ok(csv.startsWith('mode,step,loss,extra\r\nplain,1,0.5,\r\n'), 'unquoted when not needed, CRLF line ends');
  // Explicit columns: that order, only those, and headers quoted when needed.
  const picked = parseCsv(toCsv(rows, ['loss', 'a,b']));
  t.same(picked[0], ['loss', 'a,b']);
  t.same(picked[1], ['0.5', '']);
  t.equal(toCsv([]), '');
  t.equal(toCsv([], ['a', 'b']), 'a,b\r\n');
});

t.test('JSONL: one object per line', async (t) => {
  const rows: ChartRow[] = [
    { mode: 'a\nb', step: 1, acc: 0.5 },
    { mode: 'c', step: 2, acc: null },
  ];
  const out = toJsonl(rows);
  t.ok(out.endsWith('\n'));
  const lines = out.trimEnd().split('\n');
  t.equal(lines.length, 2, 'embedded newlines stay escaped');
  t.same(
    lines.map((l) => JSON.parse(l)),
    rows,
  );
  t.equal(toJsonl([]), '');
});

t.test('writeChartFiles writes the SVG, CSV and JSONL, creating the directory', async (t) => {
  const dir = join(t.testdir({}), 'nested', 'out');
  const rows: ChartRow[] = [
    { mode: 'hybrid', step: 0, loss: 2.1 },
    { mode: 'hybrid', step: 10, loss: 1.4 },
  ];
  const paths = await writeChartFiles(dir, 'curves', example, rows);
  t.same(paths, { svg: join(dir, 'curves.svg'), csv: join(dir, 'curves.csv'), jsonl: join(dir, 'curves.jsonl') });
  t.equal(await readFile(paths.svg, 'utf8'), renderChart(example));
  t.equal(await readFile(paths.csv, 'utf8'), toCsv(rows));
  t.equal(await readFile(paths.jsonl, 'utf8'), toJsonl(rows));
  // Again into the now existing directory: overwritten, no error.
  await writeChartFiles(dir, 'curves', example, rows.slice(0, 1));
  t.equal(await readFile(paths.jsonl, 'utf8'), toJsonl(rows.slice(0, 1)));
});
