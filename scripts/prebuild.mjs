#!/usr/bin/env node
// Builds this machine's prebuilt binary into its platform package folder (packages/):
//
//   npm run prebuild              packages/<target>/zofo_cpu.node, e.g. packages/linux-x64-gnu
//   npm run prebuild -- --cuda    packages/linux-x64-gnu-cuda<major>/zofo_cuda.node
//                                 (needs nvcc and cuBLAS; the major comes from nvcc)
//
// The build is portable (ZOFO_PORTABLE=1, see CMakeLists.txt): static OpenBLAS and, on
// Linux, static libstdc++/libgcc with hidden symbols. It goes to build-prebuild/, so the
// development build in build/Release is left alone, and it is checked with
// scripts/check-prebuilt.mjs before it is copied. Needs cmake and `npm run build:ts`
// (dist/lib/platform.js names the target).
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const platformJs = join(root, 'dist', 'lib', 'platform.js');
if (!existsSync(platformJs)) {
  console.error(`prebuild: ${platformJs} is missing; run \`npm run build:ts\` first`);
  process.exit(1);
}
const { CUDA_MAJORS, cpuPackageName, cudaPackageNames, platformTarget } = await import(pathToFileURL(platformJs).href);

const cuda = process.argv.includes('--cuda');
const target = platformTarget();
let pkg = cpuPackageName(target);
const addon = cuda ? 'zofo_cuda' : 'zofo_cpu';
if (cuda) {
  const nvcc = spawnSync(process.env.CUDACXX ?? 'nvcc', ['--version'], { encoding: 'utf8' });
  const major = Number(/release (\d+)\./.exec(nvcc.stdout ?? '')?.[1]);
  if (!major) {
    console.error('prebuild --cuda: nvcc not found (put it on PATH or set CUDACXX)');
    process.exit(1);
  }
  pkg = cudaPackageNames(target).find((name) => name.endsWith(`-cuda${major}`));
  if (!pkg) {
    console.error(`prebuild --cuda: no CUDA ${major} package for ${target} (CUDA variants: ${CUDA_MAJORS.join(', ')} on linux-x64-gnu)`);
    process.exit(1);
  }
}
const folder = join(root, 'packages', pkg.split('/')[1]);
if (!existsSync(join(folder, 'package.json'))) {
  console.error(`prebuild: ${folder}/package.json is missing: ${target} has no platform package`);
  process.exit(1);
}

const out = 'build-prebuild';
const cli = require.resolve('cmake-js/bin/cmake-js');
const env = { ...process.env, ZOFO_PORTABLE: '1', ZOFO_CUDA: cuda ? '1' : '0' };
const jobs = String(Math.max(1, Math.min(4, availableParallelism())));
console.log(`prebuild: ${pkg} (${target}), portable cmake-js build in ${out}/`);
const r = spawnSync(process.execPath, [cli, 'rebuild', '--out', out, '--parallel', jobs], { cwd: root, stdio: 'inherit', env });
if (r.status !== 0) process.exit(r.status ?? 1);

const built = join(root, out, 'Release', `${addon}.node`);
const check = spawnSync(process.execPath, [join(root, 'scripts', 'check-prebuilt.mjs'), built], { stdio: 'inherit' });
if (check.status !== 0) process.exit(check.status ?? 1);
copyFileSync(built, join(folder, `${addon}.node`));
console.log(`prebuild: wrote ${join('packages', pkg.split('/')[1], `${addon}.node`)}`);
