/**
 * Sections of bench/RESULTS.md that other benchmarks own: each lies between
 * `<!-- NAME:begin -->` and `<!-- NAME:end -->`, is rewritten by its own benchmark and
 * kept as it is when the rest of the file is regenerated (bench/torch.ts).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

const marks = (name: string) => [`<!-- ${name}:begin -->`, `<!-- ${name}:end -->`] as const;

/** Every owned section of `text`, markers included, in order. */
export function ownedSections(text: string): string[] {
  return [...text.matchAll(/<!-- ([a-z-]+):begin -->[\s\S]*?<!-- \1:end -->/g)].map((m) => m[0]);
}

/** Replaces (or appends) section `name` of the file with `body`. */
export function writeSection(file: string, name: string, body: string): void {
  const [begin, end] = marks(name);
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
  const block = `${begin}\n${body.trim()}\n${end}`;
  const at = text.indexOf(begin),
    stop = text.indexOf(end);
  const next = at >= 0 && stop > at ? text.slice(0, at) + block + text.slice(stop + end.length) : `${text.trimEnd()}\n\n${block}\n`;
  writeFileSync(file, next);
}

/** The body of section `name` of the file ('' when absent). */
export function readSection(file: string, name: string): string {
  const [begin, end] = marks(name);
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
  const at = text.indexOf(begin),
    stop = text.indexOf(end);
  return at >= 0 && stop > at ? text.slice(at + begin.length, stop).trim() : '';
}
