/** `--name value` from the command line: a positive number (an integer unless `real`), or the fallback. */
export function numberArg(name: string, fallback: number, real = false): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!(real ? Number.isFinite(v) : Number.isInteger(v)) || v <= 0) {
    throw new Error(`--${name} expects a positive ${real ? 'number' : 'integer'}, got ${process.argv[i + 1]}`);
  }
  return v;
}
