#!/usr/bin/env node
// Builds the native addons; run by `npm install`. Offline by design: cmake-js takes
// Node-API headers from the node-api-headers package (package.json "binary" field);
// node-gyp needs local Node headers (npm_config_nodedir / --nodedir).
//
//   node scripts/build.mjs            cmake-js if cmake is installed, else node-gyp
//   ZOFO_BUILD=cmake|gyp              force one tool
//   ZOFO_CUDA=0|1                     CUDA addon off / required (default: when cuBLAS is found)
//   ZOFO_BLAS=0                       built-in matmul instead of OpenBLAS/Accelerate
//   ZOFO_SANITIZE=1                   CPU addon with ASan + UBSan, into build-sanitize/Release
//                                     (cmake-js only; load it with ZOFO_BINDING_DIR and
//                                     LD_PRELOAD=$(gcc -print-file-name=libasan.so))
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const tool = process.env.ZOFO_BUILD ?? 'auto';

function run(cmd, args, env = process.env) {
  console.log(`zofo: ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env });
  return r.status === 0;
}

function have(cmd) {
  return spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
}

const sanitize = process.env.ZOFO_SANITIZE === '1';

function cmakeJs(env) {
  const cli = require.resolve('cmake-js/bin/cmake-js');
  const jobs = String(Math.max(1, Math.min(4, cpuCount())));
  // cmake-js ignores CXXFLAGS from the environment: the sanitizer build is a CMake option,
  // built into its own folder so it never replaces build/Release.
  const extra = sanitize ? ['--CDZOFO_SANITIZE=ON', '--out', 'build-sanitize'] : [];
  return run(process.execPath, [cli, 'rebuild', '--parallel', jobs, ...extra], sanitize ? { ...env, ZOFO_CUDA: '0' } : env);
}

function cpuCount() {
  try {
    return require('node:os').availableParallelism();
  } catch {
    return 2;
  }
}

// The node-gyp inside npm's own install, next to this Node (Unix: <prefix>/lib/node_modules,
// Windows: <prefix>/node_modules).
function npmBundledNodeGyp() {
  const bin = dirname(process.execPath);
  for (const npmDir of [join(dirname(bin), 'lib', 'node_modules', 'npm'), join(bin, 'node_modules', 'npm')]) {
    const gyp = join(npmDir, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
    if (existsSync(gyp)) return gyp;
  }
  return null;
}

function nodeGyp() {
  // npm exposes its bundled node-gyp to scripts; otherwise use ours from devDependencies.
  let gyp = process.env.npm_config_node_gyp;
  if (!gyp || !existsSync(gyp)) {
    try {
      gyp = require.resolve('node-gyp/bin/node-gyp.js');
    } catch {
      gyp = null;
    }
  }
  if (!gyp) gyp = npmBundledNodeGyp(); // `npx zofo build` in a project without node-gyp
  if (!gyp) {
    console.error('zofo: node-gyp not found (it ships with npm; or `npm i -D node-gyp`).');
    return false;
  }
  const args = [gyp, 'rebuild', '--jobs', String(cpuCount())];
  // Use local headers when there are any: the ones npm was told about, else those of
  // the running Node's own install prefix. Otherwise node-gyp downloads them.
  const prefix = dirname(dirname(process.execPath));
  const nodedir = process.env.npm_config_nodedir || (existsSync(join(prefix, 'include', 'node', 'node_api.h')) ? prefix : undefined);
  if (nodedir) args.push(`--nodedir=${nodedir}`);
  return run(process.execPath, args);
}

let ok = false;
if (sanitize) {
  if (tool === 'gyp' || !have('cmake')) console.error('zofo: ZOFO_SANITIZE=1 needs cmake (cmake-js)');
  else ok = cmakeJs(process.env);
} else if (tool === 'cmake' || (tool === 'auto' && have('cmake'))) {
  ok = cmakeJs(process.env);
  // A broken optional CUDA toolchain must not cost the user the CPU addon.
  if (!ok && process.env.ZOFO_CUDA !== '1' && process.env.ZOFO_CUDA !== '0') {
    console.warn('zofo: build failed; retrying without CUDA (ZOFO_CUDA=0)');
    ok = cmakeJs({ ...process.env, ZOFO_CUDA: '0' });
  }
  if (!ok && tool === 'auto') {
    console.warn('zofo: cmake-js build failed; trying node-gyp (CPU only)');
    ok = nodeGyp();
  }
} else if (tool === 'gyp' || tool === 'auto') {
  if (tool === 'auto') console.log('zofo: cmake not found; building the CPU addon with node-gyp');
  ok = nodeGyp();
} else {
  console.error(`zofo: ZOFO_BUILD must be cmake, gyp or auto, not ${JSON.stringify(tool)}`);
}
if (!ok) {
  console.error(
    'zofo: could not build the native addon. Needs cmake (or python3 + make) and a C++17 compiler;\n' +
      '      on Debian/Ubuntu: apt-get install cmake g++ (optional: libopenblas-dev for a faster CPU matmul).',
  );
  process.exit(1);
}
