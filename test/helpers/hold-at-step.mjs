// Preloaded (node --import) into a `zofo train` child by test/soak.test.ts. Once the
// child writes the progress line of a step at or after HOLD_AT_STEP, its main thread
// waits for good: the test kills it there at the latest, so a kill sent after an earlier
// line always lands mid-run, however late the killer is.
import { writeSync } from 'node:fs';

const holdAt = Number(process.env.HOLD_AT_STEP);
if (Number.isInteger(holdAt)) {
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = (chunk, ...rest) => {
    const step = /step (\d+)\/\d+/.exec(String(chunk));
    if (!step || Number(step[1]) < holdAt) return write(chunk, ...rest);
    writeSync(2, String(chunk)); // out before the wait, whatever kind of stream stderr is
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
    return true;
  };
}
