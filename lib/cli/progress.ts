/**
 * Training progress for the CLI: a cli-progress bar on a terminal (step, loss, lr_x,
 * lr_y, steps/s, ETA), plain one-line-per-report output otherwise (logs, CI, pipes).
 */
import cliProgress from 'cli-progress';

export interface ProgressReport {
  step: number;
  loss: number;
  lrX: number;
  lrY: number;
}

export interface Progress {
  update(r: ProgressReport): void;
  /** A line above the bar (eval results, checkpoints). */
  log(line: string): void;
  stop(): void;
}

const fmt = (x: number) => (Number.isFinite(x) ? (Math.abs(x) >= 1e-3 || x === 0 ? x.toFixed(4) : x.toExponential(2)) : String(x));

export function createProgress(label: string, total: number, stream: NodeJS.WriteStream = process.stderr): Progress {
  const started = performance.now();
  const rate = (step: number, done: number) => (done > 0 ? step / done : 0);
  if (stream.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        format: `${label} [{bar}] {value}/{total} | loss {loss} | lr_x {lrX} | lr_y {lrY} | {rate} steps/s | ETA {eta_formatted}`,
        stream,
        hideCursor: true,
        clearOnComplete: false,
        etaBuffer: 20,
      },
      cliProgress.Presets.shades_classic,
    );
    let first = 0;
    bar.start(total, 0, { loss: '-', lrX: '-', lrY: '-', rate: '-' });
    return {
      update(r) {
        first ||= r.step;
        bar.update(r.step, {
          loss: fmt(r.loss),
          lrX: fmt(r.lrX),
          lrY: fmt(r.lrY),
          rate: rate(r.step - first + 1, (performance.now() - started) / 1000).toFixed(2),
        });
      },
      log(line) {
        stream.write(`\r\x1b[K${line}\n`);
        bar.render();
      },
      stop: () => bar.stop(),
    };
  }
  // Not a terminal: a line for the first step, every ~5% of the run, at least every
  // 10 s, and the last step.
  const every = Math.max(1, Math.round(total / 20));
  let first = 0,
    last = 0;
  return {
    update(r) {
      const now = performance.now();
      if (first && r.step % every !== 0 && r.step !== total && now - last < 10_000) return;
      first ||= r.step;
      last = now;
      const secs = (performance.now() - started) / 1000,
        sps = rate(r.step - first + 1, secs);
      const eta = sps > 0 ? Math.round((total - r.step) / sps) : 0;
      stream.write(`${label} step ${r.step}/${total} loss ${fmt(r.loss)} lr_x ${fmt(r.lrX)} lr_y ${fmt(r.lrY)} ${sps.toFixed(2)} steps/s ETA ${eta}s\n`);
    },
    log: (line) => {
      stream.write(`${line}\n`);
    },
    stop() {},
  };
}
