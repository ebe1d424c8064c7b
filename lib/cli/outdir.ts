/**
 * Output folders of the CLI: an existing folder is never replaced silently, a new one
 * appears whole or not at all (written under a temp name beside it, then renamed), and
 * temp folders left by a killed run are removed on the next start.
 *
 * Temp names are zofo's own: `<name>.tmp-<pid>-<12 hex digits>` (lib/formats/files.ts
 * uniqueSuffix). One is stale when the process that made it is gone.
 */
import { existsSync } from 'node:fs';
import { readdir, rename, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { ioError, uniqueSuffix } from '../formats/files.js';
import { UsageError } from './usage.js';

const TEMP_NAME = /\.tmp-(\d+)-[0-9a-f]{12}$/;

/** Whether a process with this id is running (a permission error means it exists). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code === 'EPERM';
  }
}

/** Removes zofo's temp files and folders under `dir` whose process is gone; returns their paths. */
export async function removeStaleTemps(dir: string, only?: (name: string) => boolean): Promise<string[]> {
  const removed: string[] = [];
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return removed; // no folder yet: nothing left behind
  }
  for (const name of names) {
    const m = TEMP_NAME.exec(name);
    if (!m || (only && !only(name))) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || processAlive(pid)) continue;
    await rm(join(dir, name), { recursive: true, force: true });
    removed.push(join(dir, name));
  }
  return removed;
}

/** Whether `dir` exists and holds anything. */
export async function nonEmptyDir(dir: string): Promise<boolean> {
  try {
    return (await readdir(dir)).length > 0;
  } catch {
    return existsSync(dir);
  }
}

/** A run killed between its two renames left `out` missing and the old folder aside: put it back. */
async function restoreInterrupted(target: string): Promise<void> {
  if (existsSync(target)) return;
  const prefix = `${basename(target)}.old.tmp-`;
  const names = await readdir(dirname(target)).catch(() => [] as string[]);
  const old = names.find((n) => n.startsWith(prefix) && TEMP_NAME.test(n) && !processAlive(Number(TEMP_NAME.exec(n)![1])));
  if (old) await rename(join(dirname(target), old), target);
}

/**
 * Writes a folder as one unit: `write` fills a temp folder beside `out`, which is then
 * renamed to `out`. An existing `out` is an error unless `overwrite`; then it is renamed
 * away first and deleted only once the new one is in place. Stale temp folders of `out`
 * from killed runs are removed first.
 */
export async function writeDirAtomic(command: string, out: string, overwrite: boolean, write: (tmp: string) => Promise<void>): Promise<void> {
  const target = resolve(out),
    parent = dirname(target),
    name = basename(target);
  await restoreInterrupted(target);
  await removeStaleTemps(parent, (n) => n.startsWith(`${name}.tmp-`) || n.startsWith(`${name}.old.tmp-`));
  if (existsSync(target) && !overwrite) {
    throw new UsageError('ZOFO_INVALID_ARG', `zofo ${command}: --out ${out} already exists; choose another folder or pass --overwrite to replace it`);
  }
  const tmp = join(parent, `${name}.tmp-${uniqueSuffix()}`);
  try {
    await write(tmp);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    throw err;
  }
  const old = existsSync(target) ? join(parent, `${name}.old.tmp-${uniqueSuffix()}`) : null;
  try {
    if (old) await rename(target, old);
    await rename(tmp, target);
  } catch (err) {
    if (old && !existsSync(target)) await rename(old, target).catch(() => undefined);
    await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    throw ioError(target, 'could not move the new folder into place', err);
  }
  if (old) await rm(old, { recursive: true, force: true });
}
