/**
 * Output that nobody reads any more must not end a run: `zofo train … | head` closes
 * the pipe after ten lines, and the next write to it fails with EPIPE. Node reports
 * that as an 'error' event on process.stdout / process.stderr, which kills the process
 * when nothing listens. The CLI listens: from the first failed write on, that stream's
 * output is dropped and the command carries on to its checkpoints and files.
 */

let installed = false;

/** Drops output to a closed stdout or stderr instead of dying (idempotent). */
export function ignoreBrokenPipes(): void {
  if (installed) return;
  installed = true;
  for (const stream of [process.stdout, process.stderr]) {
    // EPIPE, or any other write error (EIO from a vanished terminal): there is nowhere
    // left to report it, and the run's results are in its files. Later writes go nowhere.
    stream.on('error', () => {
      stream.write = ((...args: unknown[]) => {
        const done = args.at(-1);
        if (typeof done === 'function') process.nextTick(done as () => void);
        return true;
      }) as typeof stream.write;
    });
  }
}
