// The platform packages (packages/<target>/) and the published manifest: each package's
// name, os/cpu/libc and files match its target; the loader's names (lib/platform.ts)
// reach every package; the published zofo lists them all as optional dependencies at
// its own version and runs no script at install.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CPU_TARGETS, CUDA_MAJORS, cpuPackageName, cudaPackageNames, platformTarget } from '../lib/platform.js';

const root = join(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '..');
const rootManifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string; scripts: Record<string, string> };

interface PlatformManifest {
  name: string;
  version: string;
  os: string[];
  cpu: string[];
  libc?: string[];
  files: string[];
  scripts?: object;
}
const dirs = readdirSync(join(root, 'packages'), { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => d.name);
const manifests = new Map(dirs.map((d) => [d, JSON.parse(readFileSync(join(root, 'packages', d, 'package.json'), 'utf8')) as PlatformManifest]));

t.test('the required targets have packages', async (t) => {
  for (const target of ['linux-x64-gnu', 'linux-arm64-gnu', 'darwin-arm64', 'win32-x64', ...CUDA_MAJORS.map((m) => `linux-x64-gnu-cuda${m}`)]) {
    t.ok(manifests.has(target), `packages/${target}`);
  }
  t.ok(CUDA_MAJORS.includes(13), 'a CUDA 13 variant');
});

t.test("each package's fields say what its folder name says", async (t) => {
  for (const [dir, m] of manifests) {
    const match = /^(linux|darwin|win32)-(x64|arm64)(?:-(gnu|musl))?(?:-cuda(\d+))?$/.exec(dir);
    t.ok(match, `${dir} is <os>-<arch>[-<libc>][-cuda<N>]`);
    if (!match) continue;
    const [, os, cpu, libc, cuda] = match;
    t.equal(m.name, `@zofo/${dir}`, `${dir}: name`);
    t.equal(m.version, rootManifest.version, `${dir}: version is zofo's`);
    t.same(m.os, [os], `${dir}: os`);
    t.same(m.cpu, [cpu], `${dir}: cpu`);
    t.same(m.libc, libc ? [libc === 'gnu' ? 'glibc' : 'musl'] : undefined, `${dir}: libc`);
    t.equal(os === 'linux', libc !== undefined, `${dir}: a libc exactly on Linux`);
    t.same(m.files, [cuda ? 'zofo_cuda.node' : 'zofo_cpu.node'], `${dir}: ships exactly its addon`);
    t.equal(m.scripts, undefined, `${dir}: no scripts`);
  }
});

t.test("the loader's package names reach every package, and only those", async (t) => {
  const named = new Set<string>();
  for (const [os, archs] of [
    ['linux', ['x64', 'arm64']],
    ['darwin', ['arm64', 'x64']],
    ['win32', ['x64', 'arm64']],
  ] as const) {
    for (const arch of archs) {
      const target = platformTarget(os, arch, () => 'gnu');
      if (CPU_TARGETS.includes(target)) named.add(cpuPackageName(target));
      for (const n of cudaPackageNames(target)) named.add(n);
    }
  }
  t.same([...named].sort(), [...manifests.values()].map((m) => m.name).sort());
  t.same([...CPU_TARGETS].sort(), [...manifests.keys()].filter((d) => !d.includes('-cuda')).sort(), 'CPU_TARGETS are the CPU package folders');
  t.equal(
    platformTarget('linux', 'x64', () => 'musl'),
    'linux-x64-musl',
    'musl is a separate target',
  );
  t.same(cudaPackageNames('darwin-arm64'), [], 'no CUDA variant on macOS');
});

t.test('the published zofo: no install-time scripts, every platform package optional at its version', async (t) => {
  const pack = (await import(pathToFileURL(join(root, 'scripts', 'pack.mjs')).href)) as {
    publishedManifest(
      m: object,
      p: Array<{ name: string; version: string }>,
    ): { scripts: Record<string, string>; optionalDependencies: Record<string, string> };
    platformPackages(): Array<{ name: string; version: string }>;
  };
  t.ok(rootManifest.scripts.install, 'the repository itself still builds on npm install');
  const published = pack.publishedManifest(rootManifest, pack.platformPackages());
  for (const s of ['preinstall', 'install', 'postinstall', 'prepare']) t.equal(published.scripts[s], undefined, `no ${s} script`);
  t.ok(published.scripts.test, 'other scripts are kept');
  t.same(published.optionalDependencies, Object.fromEntries([...manifests.values()].map((m) => [m.name, rootManifest.version])));
  t.throws(() => pack.publishedManifest(rootManifest, [{ name: '@zofo/x', version: '0.0.0-other' }]), /versions must match/);
});
