// Runs the zofo command in this process (main()), capturing what it prints and the exit
// code it sets, and restoring stdout, stderr, console.log and process.exitCode after.
import { main } from '../../lib/cli/main.js';

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
