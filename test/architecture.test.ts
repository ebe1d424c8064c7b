// The import rules of docs/architecture.md, checked on the TypeScript sources: the
// library never imports its CLI, benchmarks never import the CLI, examples use only the
// public entry point, and the float64 references import nothing of the code they check.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = join(import.meta.dirname, '..');

function tsFiles(dir: string): string[] {
  return readdirSync(join(root, dir), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts'))
    .map((f) => join(dir, f));
}

/** Every module specifier a file imports or re-exports (static and dynamic). */
function importsOf(file: string): string[] {
  const text = readFileSync(join(root, file), 'utf8');
  const specs: string[] = [];
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g)) specs.push(m[1] ?? m[2]);
  return specs;
}

/** The repository path an import resolves to ('' for packages). */
const target = (file: string, spec: string) => (spec.startsWith('.') ? relative(root, join(root, file, '..', spec)) : '');

t.test('the library never imports lib/cli', async (t) => {
  const cliImports = tsFiles(join('lib', 'cli')).flatMap((f) => importsOf(f).map((s) => target(f, s)));
  t.ok(cliImports.includes(join('lib', 'train', 'optimizer.js')), 'the scan sees imports (lib/cli imports lib/train/optimizer)');
  const bad = tsFiles('lib')
    .filter((f) => !f.startsWith(join('lib', 'cli')))
    .flatMap((f) =>
      importsOf(f)
        .filter((s) => target(f, s).startsWith(join('lib', 'cli')))
        .map((s) => `${f} → ${s}`),
    );
  t.same(bad, []);
});

t.test('benchmarks never import lib/cli', async (t) => {
  const bad = tsFiles('bench').flatMap((f) =>
    importsOf(f)
      .filter((s) => target(f, s).startsWith(join('lib', 'cli')))
      .map((s) => `${f} → ${s}`),
  );
  t.same(bad, []);
});

t.test("examples import only 'zofo', node: modules and each other", async (t) => {
  const files = tsFiles('examples');
  t.ok(files.length >= 3, `${files.length} example files`);
  const bad = files.flatMap((f) =>
    importsOf(f)
      .filter((s) => !(s === 'zofo' || s.startsWith('node:') || s.startsWith('./')))
      .map((s) => `${f} → ${s}`),
  );
  t.same(bad, []);
});

t.test('the independent references share no code with lib/ or native/', async (t) => {
  const refs = ['test/helpers/reference.ts', 'test/helpers/reference-model.ts', 'test/helpers/autograd64.ts'];
  const bad = refs.flatMap((f) =>
    importsOf(f)
      .filter((s) => /^(lib|native|dist)\b/.test(target(f, s)) || s === 'zofo')
      .map((s) => `${f} → ${s}`),
  );
  t.same(bad, []);
});
