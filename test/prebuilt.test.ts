// The prebuilt binary is self-contained: scripts/check-prebuilt.mjs rejects any shared
// library beyond the C runtime (no libopenblas, libblas, libgfortran, libstdc++, libgcc_s),
// and the platform package's zofo_cpu.node (npm run prebuild) passes it.
import t from 'tap';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { cpuPackageName } from '../lib/platform.js';

const root = join(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '..');
const check = (await import(pathToFileURL(join(root, 'scripts', 'check-prebuilt.mjs')).href)) as {
  dependencies(file: string): string[];
  disallowed(file: string, deps: string[]): string[];
};
const linux = process.platform === 'linux';
const prebuilt = join(root, 'packages', cpuPackageName().split('/')[1], 'zofo_cpu.node');

t.test('the checker rejects what a prebuilt must not need', { skip: !linux && 'the rules checked here are the Linux ones' }, async (t) => {
  const runtime = ['libc.so.6', 'libm.so.6', 'libpthread.so.0', 'libdl.so.2', 'ld-linux-x86-64.so.2', 'ld-linux-aarch64.so.1'];
  t.same(check.disallowed('zofo_cpu.node', runtime), [], 'the C runtime is allowed');
  for (const lib of ['libopenblas.so.0', 'libblas.so.3', 'libgfortran.so.5', 'libstdc++.so.6', 'libgcc_s.so.1', 'libcublas.so.13']) {
    t.same(check.disallowed('zofo_cpu.node', [...runtime, lib]), [lib], `${lib} is rejected in the CPU addon`);
  }
  t.same(check.disallowed('zofo_cuda.node', ['libc.so.6', 'libcublas.so.13', 'libcublasLt.so.13']), [], 'cuBLAS is allowed in the CUDA addon');
  t.same(check.disallowed('zofo_cuda.node', ['libc.so.6', 'libopenblas.so.0']), ['libopenblas.so.0'], 'but not OpenBLAS');
});

t.test(
  "this platform's prebuilt zofo_cpu.node needs only the C runtime",
  {
    skip: !linux ? 'checked with readelf on Linux' : !existsSync(prebuilt) && `${prebuilt} not built (npm run prebuild)`,
  },
  async (t) => {
    const deps = check.dependencies(prebuilt);
    t.ok(deps.includes('libc.so.6'), `readelf sees its dependencies: ${deps.join(', ')}`);
    t.same(check.disallowed(prebuilt, deps), [], 'nothing beyond the C runtime');
  },
);

const source = join(root, 'build', 'Release', 'zofo_cpu.node');
const sourceDeps = linux && existsSync(source) ? check.dependencies(source) : [];
t.test(
  'a source build against the system OpenBLAS is caught',
  {
    skip: !linux
      ? 'checked with readelf on Linux'
      : !sourceDeps.some((d) => d.startsWith('libopenblas')) && 'build/Release does not link the system OpenBLAS here',
  },
  async (t) => {
    t.ok(
      check.disallowed(source, sourceDeps).some((d) => d.startsWith('libopenblas')),
      'libopenblas is flagged',
    );
  },
);
