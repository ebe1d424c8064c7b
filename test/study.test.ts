// The convergence testbed (lib/theory/study.ts): the objectives' gradients and block
// constants are what they claim; hybrid reshuffling SGD at the theory's rates converges on
// the hybrid-smooth objectives (two quadratics, one non-convex) and diverges past 2/L_y; on
// the objective that violates hybrid smoothness the rates admissible at the start do not
// converge; the chart, CSV and JSONL are written.
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import {
  CONVERGE_FACTOR,
  DIVERGE_FACTOR,
  formatStudyTable,
  makeObjective,
  OBJECTIVES,
  runStudy,
  study,
  studyChart,
  THEORY_LR_X,
  THEORY_LR_Y,
  type StudyOptions,
  type StudyRun,
} from '../lib/theory/study.js';
import { quadraticProblem, runHybrid, type HybridObjective } from '../lib/train/quadratic.js';
import { freshSeed } from './helpers/reference.js';

const seed = freshSeed() % 1_000_000;
t.comment(`input seed ${seed}`);

const DX = 16,
  DY = 8,
  N = 32,
  B = 8,
  EPOCHS = 300;
// The study runs below are claims about trajectories on one problem instance (converges,
// rebounds at most 3×, diverges past 2/L_y), not about a kernel: their margins depend on
// the instance and the run's noise (over 15 fresh seeds the worst rebound reached 2.2×),
// so they use one fixed instance, as learning.test.ts does. The objectives' own checks
// above draw a fresh one.
const SCENARIO_SEED = 123083;
const base = { dimX: DX, dimY: DY, n: N, batchSize: B, seed: SCENARIO_SEED } as const;
const theory = { lrX: 'theory', lrY: 'theory', mu: [1e-3] } as const;

const dot = (u: ArrayLike<number>, v: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < u.length; i++) s += u[i] * v[i];
  return s;
};
const norm = (u: ArrayLike<number>) => Math.sqrt(dot(u, u));
const diff = (u: ArrayLike<number>, v: ArrayLike<number>) => Float64Array.from(u, (ui, i) => ui - v[i]);

/** A deterministic pseudo-random vector (xorshift on the test seed). */
function vec(d: number, scale: number, salt: number): Float64Array {
  let s = (seed * 2654435761 + salt * 40503 + 1) >>> 0 || 1;
  return Float64Array.from({ length: d }, () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return scale * (2 * (s / 2 ** 32) - 1);
  });
}

/** Ratio of the largest block RMS of ‖∇f‖ (10 blocks of epochs) to the best block before it. */
function rebound(run: StudyRun): number {
  const h = run.records.slice(1).map((r) => r.gradNorm),
    size = Math.floor(h.length / 10);
  let best = run.start,
    worst = 0;
  for (let b = 0; b < 10; b++) {
    const blk = h.slice(b * size, (b + 1) * size),
      rms = Math.sqrt(blk.reduce((s, v) => s + v * v, 0) / blk.length);
    worst = Math.max(worst, rms / best);
    best = Math.min(best, rms);
  }
  return worst;
}

const describeRun = (r: StudyRun) =>
  `${r.label}: ‖∇f‖ ${r.start.toPrecision(3)} → ${r.end.toPrecision(3)} (÷${r.ratio.toPrecision(3)}), max ×${r.maxRatio.toPrecision(3)}`;

t.test('objectives: exact gradients; the stated block constants hold (nonconvex) and are only local (violates)', async (t) => {
  const h = 1e-5,
    batch = [3, 1, 4, 15, 9];
  for (const name of OBJECTIVES) {
    const o = makeObjective(name, { dimX: DX, dimY: DY, n: N, seed });
    t.equal(o.x0.length, DX);
    t.ok(
      Float32Array.from(o.x0).every((v, i) => v === o.x0[i]),
      `${name}: x0 is already fp32`,
    );
    const x = Float64Array.from(o.x0, (v, i) => v + vec(DX, 1, 1)[i]),
      y = Float64Array.from(o.y0, (v, i) => v + vec(DY, 1, 2)[i]);
    const dx = vec(DX, 1, 3),
      dy = vec(DY, 1, 4);
    for (const idx of [undefined, batch]) {
      const fdX =
        (o.loss(
          x.map((v, i) => v + h * dx[i]),
          y,
          idx,
        ) -
          o.loss(
            x.map((v, i) => v - h * dx[i]),
            y,
            idx,
          )) /
        (2 * h);
      const fdY =
        (o.loss(
          x,
          y.map((v, i) => v + h * dy[i]),
          idx,
        ) -
          o.loss(
            x,
            y.map((v, i) => v - h * dy[i]),
            idx,
          )) /
        (2 * h);
      const gX = dot(o.gradX(x, y, idx), dx),
        gY = dot(o.gradY(x, y, idx), dy);
      t.ok(
        Math.abs(fdX - gX) <= 1e-6 * (1 + Math.abs(gX)) && Math.abs(fdY - gY) <= 1e-6 * (1 + Math.abs(gY)),
        `${name}${idx ? ' (minibatch)' : ''}: ∇_x f·d ${gX.toFixed(6)} vs finite difference ${fdX.toFixed(6)}; ∇_y f·d ${gY.toFixed(6)} vs ${fdY.toFixed(6)}`,
      );
    }
    const gn = Math.hypot(norm(o.gradX(x, y)), norm(o.gradY(x, y)));
    t.ok(Math.abs(o.gradNorm(x, y) - gn) <= 1e-12 * gn, `${name}: gradNorm = ‖(∇_x f, ∇_y f)‖`);
  }
  // Quadratics: the constants are quadraticProblem's exact λmax.
  const well = makeObjective('quadratic-well', { dimX: DX, dimY: DY, n: N, seed }),
    ill = makeObjective('quadratic-ill', { dimX: DX, dimY: DY, n: N, seed });
  t.same([well.lx, well.ly, ill.lx, ill.ly, well.constants], [1, 2, 1, 4, 'global'], 'quadratic-well L = (1, 2), quadratic-ill L = (1, 4), global');
  const m = ill.minimizer?.();
  t.ok(m && ill.gradNorm(m.x, m.y) < 1e-9, 'quadratic-ill: ∇f = 0 at its minimiser');

  // Nonconvex: difference quotients over far-apart pairs never exceed L_x, L_y.
  const nc = makeObjective('nonconvex', { dimX: DX, dimY: DY, n: N, seed });
  let rx = 0,
    ry = 0;
  const dx = vec(DX, 1, 5),
    dy = vec(DY, 1, 6);
  for (let k = 0; k < 200; k++) {
    const x1 = vec(DX, 4, 10 + k),
      x2 = vec(DX, 4, 1000 + k),
      y1 = vec(DY, 4, 2000 + k),
      y2 = vec(DY, 4, 3000 + k);
    rx = Math.max(rx, norm(diff(nc.gradX(x1, y1), nc.gradX(x2, y1))) / norm(diff(x1, x2)));
    ry = Math.max(ry, norm(diff(nc.gradY(x1, y1), nc.gradY(x1, y2))) / norm(diff(y1, y2)));
    // Along a short segment the quotient approaches the local Hessian norm.
    const x3 = x1.map((v, i) => v + 1e-4 * dx[i]),
      y3 = y1.map((v, i) => v + 1e-4 * dy[i]);
    rx = Math.max(rx, norm(diff(nc.gradX(x1, y1), nc.gradX(x3, y1))) / norm(diff(x1, x3)));
    ry = Math.max(ry, norm(diff(nc.gradY(x1, y1), nc.gradY(x1, y3))) / norm(diff(y1, y3)));
  }
  // And the bounds are tight to within the coupling's share: along the stiffest coordinates
  // (α and β are largest in the last one) near cos = 1 the quotients reach ≈ max α and 3 max β.
  const eX = new Float64Array(DX),
    eY = new Float64Array(DY);
  eX[DX - 1] = 1e-4;
  eY[DY - 1] = 1e-4;
  let tx = 0,
    ty = 0;
  for (let k = 0; k < 400; k++) {
    const x1 = vec(DX, 4, 5000 + k),
      y1 = vec(DY, 4, 6000 + k);
    tx = Math.max(
      tx,
      norm(
        diff(
          nc.gradX(x1, y1),
          nc.gradX(
            x1.map((v, i) => v + eX[i]),
            y1,
          ),
        ),
      ) / 1e-4,
    );
    ty = Math.max(
      ty,
      norm(
        diff(
          nc.gradY(x1, y1),
          nc.gradY(
            x1,
            y1.map((v, i) => v + eY[i]),
          ),
        ),
      ) / 1e-4,
    );
  }
  rx = Math.max(rx, tx);
  ry = Math.max(ry, ty);
  t.ok(
    tx >= nc.lx - 0.45 && ty >= nc.ly - 0.45,
    `nonconvex: along the stiffest coordinates the quotients reach ${tx.toFixed(3)} (L_x = ${nc.lx}) and ${ty.toFixed(3)} (L_y = ${nc.ly}): the bounds are tight up to the coupling γ = 0.2`,
  );
  t.ok(
    rx <= nc.lx * (1 + 1e-9) && ry <= nc.ly * (1 + 1e-9),
    `nonconvex: max ‖Δ∇_x f‖/‖Δx‖ = ${rx.toFixed(3)} ≤ L_x = ${nc.lx}, max ‖Δ∇_y f‖/‖Δy‖ = ${ry.toFixed(3)} ≤ L_y = ${nc.ly}`,
  );
  // Non-convex indeed: a negative second difference along some coordinate.
  const e0 = new Float64Array(DX);
  e0[0] = 1;
  const curv = (x: Float64Array) =>
    (nc.loss(
      x.map((v, i) => v + 1e-3 * e0[i]),
      nc.y0,
    ) -
      2 * nc.loss(x, nc.y0) +
      nc.loss(
        x.map((v, i) => v - 1e-3 * e0[i]),
        nc.y0,
      )) /
    1e-6;
  const curvs = [0, 1, 2, 3].map((k) => {
    const x = Float64Array.from(nc.x0);
    x[0] += (k * Math.PI) / 2;
    return curv(x);
  });
  t.ok(Math.min(...curvs) < 0 && Math.max(...curvs) > 0, `nonconvex: ∂²f/∂x₀² takes both signs (${curvs.map((c) => c.toFixed(3)).join(', ')})`);

  // Violates: ∇_y f is exactly linear in y with slope 1 + ‖x‖², which grows without bound.
  const v = makeObjective('violates', { dimX: DX, dimY: DY, n: N, seed });
  t.equal(v.constants, 'local-at-start');
  t.same(v.localConstants(v.x0, v.y0), { lx: v.lx, ly: v.ly }, 'the reported constants are the local ones at the start');
  const y1 = vec(DY, 1, 7),
    y2 = vec(DY, 1, 8);
  for (const scale of [0, 3, 30]) {
    const x = vec(DX, scale, 9);
    const q = norm(diff(v.gradY(x, y1), v.gradY(x, y2))) / norm(diff(y1, y2));
    t.ok(
      Math.abs(q - (1 + dot(x, x))) <= 1e-9 * q,
      `violates at ‖x‖ = ${norm(x).toFixed(2)}: ‖Δ∇_y f‖/‖Δy‖ = ${q.toPrecision(5)} = 1 + ‖x‖² (start's L_y = ${v.ly.toPrecision(4)})`,
    );
  }
  const star = v.minimizer?.();
  t.ok(star && v.gradNorm(star.x, star.y) < 1e-9, 'violates: ∇f = 0 at the closed-form minimiser');
  if (star)
    t.ok(
      v.localConstants(star.x, star.y).ly > 4 * v.ly,
      `violates: L_y(x*) = ${v.localConstants(star.x, star.y).ly.toFixed(2)} ≫ L_y(x0) = ${v.ly.toFixed(3)}`,
    );
  t.throws(() => makeObjective('cubic' as 'violates', { dimX: DX, dimY: DY, n: N, seed }), { code: 'ZOFO_INVALID_ARG', message: /objective/ });
  t.throws(() => makeObjective('nonconvex', { dimX: 0, dimY: DY, n: N, seed }), { code: 'ZOFO_INVALID_ARG', message: /dimX/ });
  t.throws(() => nc.loss(nc.x0, nc.y0, []), { code: 'ZOFO_INVALID_ARG', message: /empty minibatch/ });
  t.throws(() => nc.gradX(nc.x0, nc.y0, [N]), { code: 'ZOFO_INVALID_ARG', message: /example index/ });
  t.throws(() => v.gradY(v.x0, new Float64Array(DY + 1)), { code: 'ZOFO_INVALID_ARG', message: /dimY/ });
});

t.test(
  `theory rates (η_x = {1, 4}/(4(d_x + 4)L_x), η_y = {½, 1}/L_y) cut ‖∇f‖ ≥ ${CONVERGE_FACTOR}× on the hybrid-smooth objectives; η_y past 2/L_y diverges`,
  async (t) => {
    for (const objective of ['quadratic-well', 'quadratic-ill', 'nonconvex'] as const) {
      const res = runStudy({ ...base, objective, epochs: EPOCHS, grid: theory });
      t.comment(`${objective}: ${res.objective.description}\n${formatStudyTable(res)}`);
      t.equal(res.runs.length, THEORY_LR_X.length * THEORY_LR_Y.length, `${objective}: one run per grid point`);
      for (const run of res.runs) {
        const my = Math.round(run.lrY * res.objective.ly * 100) / 100;
        if (my <= 1) {
          const rm = (e: number) => run.records[e].runningMin,
            rb = rebound(run);
          t.equal(run.verdict, 'converges', `${objective} ${describeRun(run)}`);
          t.ok(
            run.ratio >= CONVERGE_FACTOR && run.maxRatio <= DIVERGE_FACTOR && run.records.length === EPOCHS + 1,
            `${objective} η_y·L_y = ${my}: ≥ ${CONVERGE_FACTOR}× over ${EPOCHS} epochs, never above ${DIVERGE_FACTOR}× the start`,
          );
          t.ok(
            rm(EPOCHS / 4) < run.start && rm(EPOCHS) <= rm(EPOCHS / 4) && rm(EPOCHS) <= run.start / CONVERGE_FACTOR,
            `running min of ‖∇f‖: ${run.start.toPrecision(3)} → ${rm(EPOCHS / 4).toPrecision(3)} (epoch ${EPOCHS / 4}) → ${rm(EPOCHS).toPrecision(3)} (epoch ${EPOCHS})`,
          );
          t.ok(rb <= 3, `monotone-ish: no block of ${EPOCHS / 10} epochs has an RMS ‖∇f‖ above 3× the best earlier block (worst ${rb.toFixed(2)}×)`);
        } else if (objective === 'nonconvex') {
          // L_y = 3.2 is a global bound; the curvature β(1 + 2cos y) exceeds 2/η_y only in
          // bounded regions, so at 2.5/L_y a run may stall or (depending on the data) still
          // converge — but it never blows up. Past 2/(max β) it diverges (below).
          t.not(run.verdict, 'diverges', `nonconvex η_y = 2.5/L_y stays bounded: ${run.verdict} (${describeRun(run)})`);
        } else {
          t.equal(run.verdict, 'diverges', `${objective} η_y = 2.5/L_y: ${run.verdict} (${describeRun(run)}; ${run.stopped})`);
        }
      }
      // Far past 2/L_y also on the non-convex objective: η_y·max β = 8/3.2 = 2.5 > 2 on its quadratic part.
      if (objective === 'nonconvex') {
        const far = runStudy({ ...base, objective, epochs: EPOCHS, grid: { lrX: 'theory', lrY: [8 / res.objective.ly], mu: [1e-3] } });
        for (const run of far.runs) t.equal(run.verdict, 'diverges', `nonconvex η_y = 8/L_y: ${run.verdict} (${run.stopped})`);
      }
    }
  },
);

t.test("violates: the theory rates at the start's local constants do not converge; the iterate drifts to where they are inadmissible", async (t) => {
  const res = runStudy({ ...base, objective: 'violates', epochs: EPOCHS, grid: theory });
  t.comment(`violates: ${res.objective.description}\n${formatStudyTable(res)}`);
  const counts: Record<string, number> = {};
  for (const run of res.runs) {
    const my = Math.round(run.lrY * res.objective.ly * 100) / 100;
    counts[run.verdict] = (counts[run.verdict] ?? 0) + 1;
    t.not(run.verdict, 'converges', `η_y·L_y(x0) = ${my}: ${run.verdict} (${describeRun(run)}${run.stopped ? `; ${run.stopped}` : ''})`);
    if (my > 2) t.equal(run.verdict, 'diverges', 'η_y past 2/L_y(x0) diverges at once');
    if (run.verdict === 'stalls' && run.endConstants) {
      // Observed: x travels towards x* (‖x*‖ ≈ 3), L_y(x) = 1 + ‖x‖² grows until η_y L_y(x) ≈ 2 —
      // the edge of stability — where y's oscillation (∇_x f ∋ ‖y − v‖² x) pushes x back.
      const at = run.lrY * run.endConstants.ly;
      t.ok(at > 1, `stalled run: η_y·L_y(x_K) = ${at.toFixed(2)} at the last iterate (was ${my} at the start; edge of stability ≈ 2)`);
    }
  }
  t.comment(`violates, theory grid at the start's constants: ${JSON.stringify(counts)}`);
  // The same problem converges once the rates use constants valid along the whole path:
  // L_y(x*) = sup of 1 + ‖x‖² over the segment from x0 ≈ 0 to x*, L_x at the minimiser.
  const v = makeObjective('violates', { dimX: DX, dimY: DY, n: N, seed: SCENARIO_SEED });
  const star = v.minimizer?.();
  if (!star) throw new Error('violates has a closed-form minimiser');
  const at = v.localConstants(star.x, star.y);
  const ok = runStudy({ ...base, objective: 'violates', epochs: EPOCHS, grid: { lrX: [1 / (4 * (DX + 4) * at.lx)], lrY: [0.5 / at.ly], mu: [1e-3] } });
  t.equal(ok.runs[0].verdict, 'converges', `with η_y = ½/L_y(x*) = ${ok.runs[0].lrY.toFixed(4)} (L_y(x*) = ${at.ly.toFixed(2)}): ${describeRun(ok.runs[0])}`);
});

t.test('study(): chart (log10 ‖∇f‖ per run + reference slope), CSV and JSONL are written; the table', async (t) => {
  const dir = t.testdir();
  const opts: StudyOptions & { out: string } = {
    ...base,
    objective: 'quadratic-well',
    epochs: 16,
    grid: { lrX: 'theory', lrY: 'theory', mu: [1e-3, 1e-2] },
    out: dir,
  };
  const { result, table, files } = await study(opts);
  t.equal(result.runs.length, 12, '2 × 3 × 2 runs');
  for (const f of [files.svg, files.csv, files.jsonl]) t.ok(existsSync(f), `${f} written`);
  t.same(files, { svg: `${dir}/study.svg`, csv: `${dir}/study.csv`, jsonl: `${dir}/study.jsonl` });

  const chart = studyChart(result);
  const main = chart.panels[0];
  t.equal(main.yLabel, 'log10 ‖∇f‖');
  t.equal(main.series.length, result.runs.length + 1, 'one series per (η_x, η_y, μ), plus the reference');
  t.equal(new Set(main.series.map((s) => s.name)).size, main.series.length, 'distinct series names');
  t.match(main.series.at(-1)?.name, /reference/);
  const g0 = result.runs[0].start;
  t.same(
    result.reference.points.slice(0, 2),
    [
      [0, g0],
      [1, g0],
    ],
    'the reference is anchored at the first point',
  );
  t.ok(Math.abs((result.reference.points[16]?.[1] ?? 0) - g0 / 2) < 1e-12 * g0, 'and falls as epoch^(−1/4): ½ at epoch 16');
  const conv = result.runs[0];
  t.same(
    main.series[0].points.map((p) => p[1]),
    conv.records.map((r) => Math.log10(r.gradNorm)),
    'points are log10 ‖∇f‖',
  );
  const diverged = result.runs.find((r) => r.verdict === 'diverges');
  t.ok(diverged, 'the η_y = 2.5/L_y runs diverge');
  const capped = main.series[result.runs.indexOf(diverged as StudyRun)].points;
  t.ok(Math.max(...capped.map((p) => p[1])) <= Math.log10(1e6 * g0) + 1e-12, 'a diverged run is drawn clipped at 1e6 × the start');

  const svg = readFileSync(files.svg, 'utf8');
  t.match(svg, /^<\?xml/);
  t.match(svg, /log10 ‖∇f‖/);
  t.match(svg, /reference ∝ epoch\^\(−1\/4\)/);
  for (const r of result.runs) t.ok(svg.includes(`data-series="${r.label}"`), `svg has the series ${r.label}`);
  const csv = readFileSync(files.csv, 'utf8').trimEnd().split('\r\n');
  t.equal(csv.length, result.rows.length + 1, 'CSV: a header and one line per (run, epoch)');
  t.same(csv[0].split(','), [
    'objective',
    'run',
    'lrX',
    'lrY',
    'mu',
    'epoch',
    'step',
    'loss',
    'gradNorm',
    'gradNormX',
    'gradNormY',
    'log10GradNorm',
    'runningMin',
    'reference',
    'verdict',
  ]);
  const jsonl = readFileSync(files.jsonl, 'utf8')
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l));
  t.equal(jsonl.length, result.rows.length);
  t.equal(jsonl[0].epoch, 0);
  t.equal(jsonl[0].gradNorm, g0);

  const lines = table.trimEnd().split('\n');
  t.equal(lines.length, result.runs.length + 2, 'table: header, rule, one line per run');
  t.match(lines[0], /objective +lrX .* start ‖∇f‖ +end ‖∇f‖ +ratio +verdict/);
  t.match(table, /diverges \(stopped, epoch/);
  t.comment(table);
});

t.test("argument errors, and runHybrid's onRecord stop and non-finite rejection", async (t) => {
  const good: StudyOptions = { ...base, objective: 'quadratic-well', epochs: 2, grid: theory };
  t.throws(() => runStudy({ ...good, epochs: 0 }), { code: 'ZOFO_INVALID_ARG', message: /epochs/ });
  t.throws(() => runStudy({ ...good, batchSize: N + 1 }), { code: 'ZOFO_INVALID_ARG', message: /batchSize/ });
  t.throws(() => runStudy({ ...good, grid: { lrX: [], lrY: 'theory', mu: [1e-3] } }), { code: 'ZOFO_INVALID_ARG', message: /grid\.lrX/ });
  t.throws(() => runStudy({ ...good, grid: { lrX: 'theory', lrY: [-1], mu: [1e-3] } }), { code: 'ZOFO_INVALID_ARG', message: /grid\.lrY/ });
  t.throws(() => runStudy({ ...good, grid: { lrX: 'theory', lrY: 'theory', mu: 'theory' as unknown as number[] } }), {
    code: 'ZOFO_INVALID_ARG',
    message: /grid\.mu/,
  });
  t.throws(() => runStudy({ ...good, objective: 'rosenbrock' as 'nonconvex' }), { code: 'ZOFO_INVALID_ARG', message: /objective/ });
  await t.rejects(study({ ...good, out: '' }), { code: 'ZOFO_INVALID_ARG', message: /out/ });

  const p = quadraticProblem({ dimX: DX, dimY: DY, n: N, lx: 1, ly: 2, seed });
  const stopped = runHybrid(p, { epochs: 10, batchSize: B, lrX: 0.01, lrY: 0.5, seed, onRecord: (r) => r.epoch >= 2 });
  t.same([stopped.history.length, stopped.steps], [3, 2 * (N / B)], 'onRecord returning true ends the run after that record');
  let calls = 0;
  const poisoned: HybridObjective = {
    dimX: DX,
    dimY: DY,
    n: N,
    gradX: p.gradX,
    gradY: p.gradY,
    loss: (x, y, idx) => (idx && ++calls === 2 ? NaN : p.loss(x, y, idx)),
  };
  t.throws(() => runHybrid(poisoned, { steps: 1, batchSize: B, lrX: 0.01, lrY: 0.5, seed }), {
    code: 'ZOFO_NON_FINITE',
    message: /step 0: the projected gradient c_0 is NaN/,
  });
  const inf: HybridObjective = { ...poisoned, loss: (x, y, idx) => (idx ? Infinity : p.loss(x, y, idx)) };
  t.throws(() => runHybrid(inf, { steps: 1, batchSize: B, lrX: 0.01, lrY: 0.5, seed }), { code: 'ZOFO_NON_FINITE', message: /L0 is Infinity/ });
});
