// Prints pieces of the node-gyp configuration, so binding.gyp reads the same source
// list (sources.json) and finds BLAS the same way CMakeLists.txt does:
//   node scripts/gyp-config.cjs sources | blas-defines | blas-include-dirs | blas-libs
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');

function pkgConfig(args) {
  try {
    return execFileSync('pkg-config', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}

// OpenBLAS through pkg-config (Linux), Accelerate on macOS; ZOFO_BLAS=0 disables.
function blas() {
  if (process.env.ZOFO_BLAS === '0') return null;
  if (process.platform === 'darwin') {
    return { defines: ['ZOFO_HAVE_ACCELERATE', 'ACCELERATE_NEW_LAPACK'], includeDirs: [], libs: ['-framework Accelerate'] };
  }
  if (pkgConfig(['--exists', 'openblas']) === null) return null;
  const includeDirs = (pkgConfig(['--cflags-only-I', 'openblas']) || '')
    .split(/\s+/)
    .filter(Boolean)
    .map((f) => f.replace(/^-I/, ''));
  const candidates = [...includeDirs, '/usr/include', '/usr/local/include'];
  if (!candidates.some((d) => fs.existsSync(path.join(d, 'cblas.h')))) return null;
  const libs = (pkgConfig(['--libs', 'openblas']) || '-lopenblas').split(/\s+/).filter(Boolean);
  return { defines: ['ZOFO_HAVE_CBLAS', 'ZOFO_BLAS_OPENBLAS'], includeDirs, libs };
}

const what = process.argv[2];
const sources = JSON.parse(fs.readFileSync(path.join(root, 'sources.json'), 'utf8'));
const found = blas();
const out = {
  sources: [...sources.cpu, ...sources.engine, ...sources.addon],
  'blas-defines': found ? found.defines : [],
  'blas-include-dirs': found ? found.includeDirs : [],
  'blas-libs': found ? found.libs : [],
}[what];
if (!out) {
  console.error(`gyp-config: unknown query ${JSON.stringify(what)}`);
  process.exit(1);
}
console.log(out.join('\n'));
