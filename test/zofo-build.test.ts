// `zofo build` (the fix the loader's error names) runs the package's own build script
// from the package root and exits with its status.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const root = join(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '..');
const skip = !existsSync(join(root, 'dist', 'lib', 'cli', 'main.js')) && 'dist/ not built (npm run build:ts)';

t.test('zofo build is listed and runs scripts/build.mjs', { skip }, async (t) => {
  const help = spawnSync(process.execPath, [join(root, 'bin', 'zofo.js'), '--help'], { encoding: 'utf8' });
  t.match(help.stdout, /\n\s+build\s/, 'zofo --help lists build');
  // An invalid tool choice makes build.mjs fail at once, before compiling anything:
  // its message and exit status must come through, from any working directory. No
  // other ZOFO_* setting of the caller's environment reaches it: ZOFO_SANITIZE=1, say,
  // takes a branch that skips the tool check and rebuilds the addon.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ZOFO_')));
  const r = spawnSync(process.execPath, [join(root, 'bin', 'zofo.js'), 'build'], {
    cwd: t.testdir({}),
    encoding: 'utf8',
    env: { ...env, ZOFO_BUILD: 'neither' },
  });
  t.equal(r.status, 1, 'exits with the build script status');
  t.match(r.stderr, /ZOFO_BUILD must be cmake, gyp or auto, not "neither"/, "ran the package's scripts/build.mjs");
});
