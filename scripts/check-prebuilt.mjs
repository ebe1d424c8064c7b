#!/usr/bin/env node
// Checks that a prebuilt .node needs nothing on the user's machine beyond the platform's
// C runtime (and, for zofo_cuda.node, the driver and cuBLAS): no libopenblas, libblas,
// libgfortran, libstdc++ or libgcc_s. Prints the dependencies and, on Linux, the newest
// glibc symbol version it uses (the oldest glibc it runs on).
//
//   node scripts/check-prebuilt.mjs FILE.node...     exit 1 when a dependency is not allowed
//
// Linux: readelf -d (NEEDED); macOS: otool -L. Other systems: nothing to check here.
import { spawnSync } from 'node:child_process';
import { basename } from 'node:path';

// glibc's own libraries and the dynamic loader.
const LINUX_C_RUNTIME = /^(libc|libm|libpthread|libdl|librt)\.so\.\d+$|^ld-linux[-\w.]*\.so\.\d+$/;
// The CUDA variant: the driver is loaded by the static CUDA runtime; cuBLAS is the one
// library it links (docs/distribution.md).
const LINUX_CUDA = /^libcublas(Lt)?\.so\.\d+$/;
const MAC_SYSTEM =
  /^(\/usr\/lib\/libSystem\.B\.dylib|\/usr\/lib\/libc\+\+\.1\.dylib|\/System\/Library\/Frameworks\/Accelerate\.framework\/.+|@rpath\/zofo_\w+\.node)$/;

function run(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr || r.error}`);
  return r.stdout;
}

/** The shared libraries a binary needs, as its loader sees them. */
export function dependencies(file) {
  if (process.platform === 'linux') {
    return [...run('readelf', ['-d', file]).matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
  }
  if (process.platform === 'darwin') {
    return run('otool', ['-L', file])
      .split('\n')
      .slice(1)
      .map((l) => l.trim().split(' ')[0])
      .filter(Boolean);
  }
  return [];
}

/** The dependencies of a prebuilt file that are not allowed. */
export function disallowed(file, deps) {
  const cuda = basename(file).startsWith('zofo_cuda');
  if (process.platform === 'linux') return deps.filter((d) => !LINUX_C_RUNTIME.test(d) && !(cuda && LINUX_CUDA.test(d)));
  if (process.platform === 'darwin') return deps.filter((d) => !MAC_SYSTEM.test(d));
  return [];
}

function newestGlibc(file) {
  const versions = [...run('objdump', ['-T', file]).matchAll(/GLIBC_(\d+)\.(\d+)(?:\.(\d+))?/g)].map((m) => [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)]);
  versions.sort((a, b) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2]);
  return versions.length ? versions[versions.length - 1].filter((v, i) => i < 2 || v).join('.') : 'none';
}

if (process.argv[1] && import.meta.url.endsWith(basename(process.argv[1]))) {
  const files = process.argv.slice(2);
  if (!files.length) {
    console.error('usage: node scripts/check-prebuilt.mjs FILE.node...');
    process.exit(2);
  }
  let bad = 0;
  for (const file of files) {
    const deps = dependencies(file);
    const extra = disallowed(file, deps);
    const glibc = process.platform === 'linux' ? `; needs glibc >= ${newestGlibc(file)}` : '';
    console.log(`${file}: needs ${deps.join(', ') || 'nothing listed'}${glibc}`);
    if (extra.length) {
      console.error(`${file}: not self-contained: ${extra.join(', ')}`);
      bad++;
    }
  }
  process.exit(bad ? 1 : 0);
}
