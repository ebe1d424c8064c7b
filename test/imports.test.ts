// The direction of imports: lib/cli/ (the command line) depends on the library, never
// the other way round, and bench/ uses the library, not the CLI. Then a bundler that
// includes zofo pulls in no CLI code (commander, cli-progress).
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';

const root = join(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '..');

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** The files (repository-relative, '/'-separated) a source file imports by relative path. */
function relativeImports(file: string): string[] {
  const src = readFileSync(file, 'utf8');
  const specs = [
    ...src.matchAll(/\bfrom\s*['"]([^'"]+)['"]/g), // import … from, export … from
    ...src.matchAll(/\bimport\s*\(\s*['"]([^'"]+)['"]/g), // import('…')
    ...src.matchAll(/\bimport\s+['"]([^'"]+)['"]/g), // import '…'
  ].map((m) => m[1]);
  return specs
    .filter((s) => s.startsWith('.'))
    .map((s) =>
      relative(root, resolve(dirname(file), s))
        .split(sep)
        .join('/'),
    );
}

const inCli = (path: string) => path.startsWith('lib/cli/');

t.test('the scanner sees the imports it must judge', async (t) => {
  // lib/cli/main.ts imports lib/cli/commands.ts and the library: a scanner that finds
  // neither would pass the tests below vacuously.
  const found = relativeImports(join(root, 'lib/cli/main.ts'));
  t.ok(found.some(inCli), `finds main.ts's CLI imports (${found.join(', ')})`);
  t.ok(
    found.some((p) => p.startsWith('lib/') && !inCli(p)),
    'finds its library imports',
  );
});

t.test('nothing under lib/ outside lib/cli/ imports lib/cli/', async (t) => {
  const files = tsFiles(join(root, 'lib')).filter((f) => !inCli(relative(root, f).split(sep).join('/')));
  t.ok(files.length > 20, `${files.length} library files scanned`);
  for (const f of files) {
    const bad = relativeImports(f).filter(inCli);
    t.same(bad, [], `${relative(root, f)} imports no CLI module`);
  }
});

t.test('bench/ never imports lib/cli/', async (t) => {
  const files = tsFiles(join(root, 'bench'));
  t.ok(files.length > 0, `${files.length} bench files scanned`);
  for (const f of files) t.same(relativeImports(f).filter(inCli), [], `${relative(root, f)} imports no CLI module`);
});
