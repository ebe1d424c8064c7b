// The package around the kernels: one native source list for both builds, the
// loader's single error when no addon loads, and the CommonJS entry.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const root = join(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '..');
const sources = JSON.parse(readFileSync(join(root, 'sources.json'), 'utf8')) as { cpu: string[]; engine: string[]; addon: string[]; cuda_addon: string[] };

t.test('CMakeLists.txt and binding.gyp build from the one list in sources.json', async (t) => {
  const listed = [...sources.cpu, ...sources.engine, ...sources.addon];
  const all = [...listed, ...sources.cuda_addon];
  for (const f of all) t.ok(existsSync(join(root, f)), `${f} exists`);
  // Every C++ translation unit is listed (nothing built by only one tool).
  for (const dir of ['native/cpu', 'native/io', 'native/engine', 'native/addon']) {
    for (const f of readdirSync(join(root, dir)).filter((n) => n.endsWith('.cpp'))) {
      t.ok(all.includes(`${dir}/${f}`), `${dir}/${f} is in sources.json`);
    }
  }
  const cmake = readFileSync(join(root, 'CMakeLists.txt'), 'utf8');
  t.match(cmake, /sources\.json/, 'CMakeLists.txt reads sources.json');
  t.notMatch(cmake, /native\/cpu\/[a-z_]+\.cpp/, 'CMakeLists.txt names no CPU source itself');
  const gyp = readFileSync(join(root, 'binding.gyp'), 'utf8');
  t.match(gyp, /gyp-config\.cjs sources/, 'binding.gyp takes its sources from scripts/gyp-config.cjs');
  const printed = spawnSync(process.execPath, [join(root, 'scripts/gyp-config.cjs'), 'sources'], { encoding: 'utf8' });
  t.same(printed.stdout.trim().split('\n'), listed, 'gyp-config prints exactly the listed sources');
});

t.test('when no addon loads, one error lists every attempt and the fix', async (t) => {
  const empty = t.testdir({});
  const script = `import('${join(root, 'lib/index.ts').replace(/\\/g, '/')}').then((z) => { try { z.backendInfo(); console.log('LOADED'); } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); } });`;
  const r = spawnSync(process.execPath, [...process.execArgv, '-e', script], {
    encoding: 'utf8',
    env: { ...process.env, ZOFO_BINDING_DIR: empty, ZOFO_BINDING_ONLY: '1' },
  });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  t.not(line, 'LOADED');
  const err = JSON.parse(line) as { code: string; message: string };
  t.equal(err.code, 'ZOFO_LOAD_FAILED');
  t.match(err.message, /zofo_cpu\.node: not found/, 'names the CPU addon it looked for');
  t.match(err.message, /zofo_cuda\.node: not found/, 'names the CUDA addon it looked for');
  t.match(err.message, /npx zofo build/, 'says how to fix it');
});

t.test(
  'CommonJS consumers can require() the package',
  { skip: !existsSync(join(root, 'dist/lib/index.js')) && 'dist/ not built (run npm run build:ts)' },
  async (t) => {
    const r = spawnSync(
      process.execPath,
      ['-e', `const z = require(${JSON.stringify(join(root, 'lib/require.cjs'))}); console.log(typeof z.kernels.gaussian)`],
      { encoding: 'utf8' },
    );
    t.equal(r.stdout.trim(), 'function', r.stderr);
  },
);
