// Where the loader finds the addon, in an installed layout whose path has spaces:
// ZOFO_BINDING_DIR, then a source build (node_modules/zofo/build/Release), then this
// platform's package (node_modules/@zofo/<target>); with none of them, one
// ZOFO_LOAD_FAILED error listing them in that order, with the fix.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { cpuPackageName, cudaPackageNames, nvidiaDriverPresent } from '../lib/platform.js';

const root = join(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '..');
const addon = join(root, 'build', 'Release', 'zofo_cpu.node');
const dist = join(root, 'dist', 'lib', 'index.js');
const skip = !existsSync(addon) ? 'no build/Release/zofo_cpu.node (npm run build:native)' : !existsSync(dist) ? 'dist/ not built (npm run build:ts)' : false;

t.test('the loader order in an installed layout', { skip }, async (t) => {
  const app = join(t.testdir({}), 'my app with spaces');
  const modules = join(app, 'node_modules');
  const zofo = join(modules, 'zofo');
  // What npm would install: zofo (its dist/ and package.json), its runtime dependency
  // that the library imports, and the platform package holding a copy of the addon.
  mkdirSync(join(zofo, 'dist'), { recursive: true });
  cpSync(join(root, 'dist', 'lib'), join(zofo, 'dist', 'lib'), { recursive: true });
  copyFileSync(join(root, 'package.json'), join(zofo, 'package.json'));
  symlinkSync(join(root, 'node_modules', '@huggingface'), join(modules, '@huggingface'), 'dir');
  const platformDir = join(modules, ...cpuPackageName().split('/'));
  mkdirSync(platformDir, { recursive: true });
  writeFileSync(join(platformDir, 'package.json'), JSON.stringify({ name: cpuPackageName(), version: '0.0.0' }));
  copyFileSync(addon, join(platformDir, 'zofo_cpu.node'));

  const loaded = (env: Record<string, string> = {}, preamble = '') => {
    const script = `${preamble}import(${JSON.stringify(pathToFileURL(join(zofo, 'dist', 'lib', 'index.js')).href)}).then((z) => {
      try { console.log(JSON.stringify({ file: z.backendInfo().cpu.file })); }
      catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); } });`;
    const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ZOFO_BINDING')));
    const r = spawnSync(process.execPath, ['-e', script], { cwd: app, encoding: 'utf8', env: { ...clean, ...env } });
    return JSON.parse(r.stdout.trim().split('\n').pop() || JSON.stringify({ message: r.stderr })) as { file?: string; code?: string; message?: string };
  };

  t.equal(loaded().file, join(platformDir, 'zofo_cpu.node'), 'no build: the platform package');

  const build = join(zofo, 'build', 'Release');
  mkdirSync(build, { recursive: true });
  copyFileSync(addon, join(build, 'zofo_cpu.node'));
  t.equal(loaded().file, join(build, 'zofo_cpu.node'), 'a source build wins over the platform package');

  const pinned = join(app, 'pinned dir');
  mkdirSync(pinned);
  copyFileSync(addon, join(pinned, 'zofo_cpu.node'));
  t.equal(loaded({ ZOFO_BINDING_DIR: pinned }).file, join(pinned, 'zofo_cpu.node'), 'ZOFO_BINDING_DIR wins over both');

  rmSync(join(zofo, 'build'), { recursive: true });
  rmSync(platformDir, { recursive: true });
  const err = loaded({ ZOFO_BINDING_DIR: join(app, 'empty') });
  t.equal(err.code, 'ZOFO_LOAD_FAILED');
  const message = err.message ?? '';
  const order = [
    join(app, 'empty', 'zofo_cpu.node'),
    join(build, 'zofo_cpu.node'),
    `${cpuPackageName()}/zofo_cpu.node: the package ${cpuPackageName()} is not installed`,
  ].map((s) => message.indexOf(s));
  t.ok(order.every((i) => i >= 0) && order[0] < order[1] && order[1] < order[2], `lists ZOFO_BINDING_DIR, build/, the package, in order:\n${message}`);
  t.match(message, /npx zofo build/, 'gives the fix: compile from the installed sources');
  t.match(message, new RegExp(`npm install ${cpuPackageName().replace('/', '\\/')}@`), 'or install the platform package');

  // A platform without a prebuilt package: say so, and offer only the source build.
  const other = loaded({}, "Object.defineProperty(process, 'platform', { value: 'freebsd' });");
  t.equal(other.code, 'ZOFO_LOAD_FAILED');
  t.match(other.message ?? '', `no prebuilt package for freebsd-${process.arch}`, 'names the platform');
  t.notMatch(other.message ?? '', /npm install @zofo/, 'offers no package that does not exist');
  t.match(other.message ?? '', /npx zofo build/, 'offers the source build');
  for (const cuda of cudaPackageNames()) {
    t.match(message, cuda, `lists the CUDA variant ${cuda}`);
    if (!nvidiaDriverPresent()) t.match(message, `${cuda}/zofo_cuda.node: skipped: no NVIDIA driver`, 'not opened without a driver');
  }
});
