// Runs the zofo command in this process (main()), capturing what it prints and the exit
// code it sets, and restoring stdout, stderr, console.log and process.exitCode after.
import { join } from 'node:path';
import { main } from '../../lib/cli/main.js';
import { sst2Fixture } from './sst2-fixture.js';

/** The CLI's output and exit code for `zofo ...args`. */
export async function zofo(args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  const [out, err, log] = [process.stdout.write, process.stderr.write, console.log];
  let stdout = '',
    stderr = '';
  process.stdout.write = ((c: string | Uint8Array) => {
    stdout += String(c);
    return true;
  }) as typeof process.stdout.write;
  process.stderr.write = ((c: string | Uint8Array) => {
    stderr += String(c);
    return true;
  }) as typeof process.stderr.write;
  console.log = (...a: unknown[]) => {
    stdout += `${a.join(' ')}\n`;
  };
  const before = process.exitCode;
  try {
    await main(['node', 'zofo', ...args]);
    return { status: Number(process.exitCode ?? 0), stdout, stderr };
  } finally {
    [process.stdout.write, process.stderr.write, console.log] = [out, err, log];
    process.exitCode = before;
  }
}

/** A small SST-2 hybrid run under `root`: the fixture, its --out folder and the train flags every CLI data test shares. */
export async function trainRun(root: string, seed: number) {
  const f = await sst2Fixture(root, seed);
  const out = join(root, 'out');
  const common = [
    '--model',
    f.model,
    '--task',
    'sst2',
    '--train',
    f.train,
    '--dev',
    f.dev,
    '--mode',
    'hybrid',
    '--batch-size',
    '4',
    '--lr-x',
    '1e-3',
    '--lr-y',
    '0.05',
    '--rank',
    '2',
    '--seed',
    '3',
    '--eval-every',
    '2',
    '--checkpoint-every',
    '2',
    '--out',
    out,
  ];
  return { f, out, common };
}
