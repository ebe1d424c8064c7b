#!/usr/bin/env bash
# Installs zofo like a user would, from the tarballs `npm run pack:all` wrote to
# artifacts/, and uses it (`npm run test:install`):
#  - a fresh project in a folder whose path has spaces;
#  - `npm install --ignore-scripts` of zofo and this machine's platform package, with a
#    PATH that holds only node and npm: no compiler, no cmake, no make, no python;
#  - ESM by package name: the addon comes from the platform package (not a build
#    folder), one hybrid step on the embedded demo model (demoModelDir()), two worker
#    threads loading zofo at once;
#  - CommonJS require('zofo');
#  - a TypeScript consumer compiled with --strict and no @types/node (lib ES2022 plus
#    ESNext.Disposable, for the models' Symbol.asyncDispose).
# Ends with "N passed, N failed"; exits non-zero on any failure.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
target="$(node --input-type=module -e "import('$root/dist/lib/platform.js').then((p) => console.log(p.platformTarget()))")"
version="$(node -p "require('$root/package.json').version")"
zofo_tgz="$root/artifacts/zofo-$version.tgz"
platform_tgz="$root/artifacts/zofo-$target-$version.tgz"
for f in "$zofo_tgz" "$platform_tgz"; do
  [[ -f "$f" ]] || { echo "missing $f: run \`npm run pack:all\` first" >&2; exit 1; }
done
ts_version="$(node -p "require('$root/node_modules/typescript/package.json').version")"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Every install and run below sees a PATH with only node and npm on it.
mkdir -p "$work/bin"
for tool in node npm npx; do ln -s "$(command -v "$tool")" "$work/bin/$tool"; done
bare() { PATH="$work/bin" "$@"; }
bare "$BASH" -c 'for t in cc gcc g++ c++ clang cmake make python3 sh; do
  if command -v "$t" >/dev/null 2>&1; then echo "PATH still has $t" >&2; exit 1; fi; done'

app="$work/my app"
mkdir -p "$app"
cd "$app"
cat > package.json <<'EOF'
{ "name": "consumer", "version": "1.0.0", "private": true, "type": "module" }
EOF
echo "== npm install --ignore-scripts (PATH: node, npm and npx only)"
bare npm install --ignore-scripts --no-audit --no-fund --prefer-offline "$zofo_tgz" "$platform_tgz" "typescript@$ts_version"

cat > esm.mjs <<'EOF'
// ESM consumer: by package name, the platform package's addon, a hybrid step.
import { existsSync, readFileSync } from 'node:fs';
import { join, sep } from 'node:path';
import { Worker } from 'node:worker_threads';
import { backendInfo, demoModelDir, HybridOptimizer, loadModel } from 'zofo';

const [platformPackage] = process.argv.slice(2);
let passed = 0, failed = 0;
const check = (ok, name, detail = '') => {
  if (ok) passed++; else failed++;
  console.log(`${ok ? 'PASS' : 'FAIL'} ${name}${!ok && detail ? `: ${detail}` : ''}`);
};

const manifest = JSON.parse(readFileSync(join('node_modules', 'zofo', 'package.json'), 'utf8'));
const lifecycle = ['preinstall', 'install', 'postinstall', 'prepare'].filter((s) => manifest.scripts?.[s]);
check(lifecycle.length === 0, 'the published zofo has no install-time script', lifecycle.join(', '));
check(!existsSync(join('node_modules', 'zofo', 'build')), 'nothing was compiled at install (no node_modules/zofo/build)');

const info = backendInfo();
const expected = join(process.cwd(), 'node_modules', ...platformPackage.split('/'), 'zofo_cpu.node');
check(info.cpu.file === expected, `the addon is ${platformPackage}'s`, info.cpu.file);
check(!info.cpu.file.split(sep).includes('build'), 'not a build folder', info.cpu.file);
console.log(`# cpu: simd ${info.cpu.simd}, blas ${info.cpu.blas}; cuda: ${info.cuda.available ? info.cuda.file : 'not available'}`);

const dir = demoModelDir();
check(dir === join(process.cwd(), 'node_modules', 'zofo', 'demo', 'model'), 'demoModelDir() is inside the installed package', dir);
const model = await loadModel(dir);
model.addLoRA({ rank: 4, alpha: 8, seed: 1 });
const enc = (s) => model.tokenizer.encode(s, { addSpecialTokens: false });
const candidates = [enc(' terrible'), enc(' great')];
const batch = [
  { prompt: enc('the soup was great . It was'), candidates, label: 1 },
  { prompt: enc('the film was awful . It was'), candidates, label: 0 },
];
const before = await model.baseHash();
const opt = new HybridOptimizer(model, { zo: { lr: 1e-3, mu: 1e-3 }, fo: { lr: 1e-2 }, seed: 7 });
const r = await opt.step(batch);
check(Number.isFinite(r.loss) && r.perturbedLosses.every(Number.isFinite), 'a hybrid step on the demo model gives finite losses', `${r.loss} ${r.perturbedLosses}`);
check((await model.baseHash()) !== before, 'the step moved the base weights (ZO update)');
model.dispose();

// Two worker threads load zofo by name at the same time and get the same bits.
const code = `
  const { parentPort } = require('node:worker_threads');
  import('zofo').then(({ kernels }) => parentPort.postMessage(kernels.gaussian(64, { seed: 5n, name: 'w' })),
                      (e) => parentPort.postMessage(String(e)));`;
const inWorker = () => new Promise((resolve, reject) => {
  const w = new Worker(code, { eval: true });
  w.once('message', (m) => { resolve(m); void w.terminate(); });
  w.once('error', reject);
});
const [a, b] = await Promise.all([inWorker(), inWorker()]);
const { kernels } = await import('zofo');
const z = kernels.gaussian(64, { seed: 5n, name: 'w' });
const same = (x) => x instanceof Float32Array && x.every((v, i) => Object.is(v, z[i]));
check(same(a) && same(b), 'two worker threads load zofo at once and agree with the main thread', `${a} ${b}`);

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
EOF

cat > cjs.cjs <<'EOF'
// CommonJS consumer.
const { join } = require('node:path');
const zofo = require('zofo');
const [platformPackage] = process.argv.slice(2);
const expected = join(process.cwd(), 'node_modules', ...platformPackage.split('/'), 'zofo_cpu.node');
const file = zofo.backendInfo().cpu.file;
const z = zofo.kernels.gaussian(4, { seed: 1n, name: 'w' });
const ok = file === expected && z.length === 4 && typeof zofo.demoModelDir() === 'string';
console.log(`${ok ? 'PASS' : 'FAIL'} require('zofo') loads ${file}`);
console.log(`${ok ? 1 : 0} passed, ${ok ? 0 : 1} failed`);
process.exit(ok ? 0 : 1);
EOF

cat > consumer.ts <<'EOF'
// TypeScript consumer: compiled with --strict and no @types/node.
import { backendInfo, demoModelDir, HybridOptimizer, loadModel, ZofoError, type BackendInfo, type StepResult } from 'zofo';

export async function oneStep(): Promise<number> {
  const info: BackendInfo = backendInfo();
  const model = await loadModel(demoModelDir());
  model.addLoRA({ rank: 4 });
  if (!model.tokenizer) throw new ZofoError('ZOFO_BAD_FILE', 'the demo model has no tokenizer');
  const ids: number[] = model.tokenizer.encode('the soup was great . It was', { addSpecialTokens: false });
  const opt = new HybridOptimizer(model, { zo: { lr: 1e-3, mu: 1e-3 }, fo: { lr: 1e-2 } });
  const r: StepResult = await opt.step([{ prompt: ids, target: ids.slice(0, 1) }]);
  model.dispose();
  if (!info.cpu.file) throw new ZofoError('ZOFO_LOAD_FAILED', 'no addon');
  return r.loss;
}
EOF
cat > tsconfig.json <<'EOF'
{
  "compilerOptions": {
    "strict": true, "noEmit": true, "skipLibCheck": false, "types": [],
    "target": "ES2022", "lib": ["ES2022", "ESNext.Disposable"], "module": "NodeNext", "moduleResolution": "NodeNext"
  },
  "files": ["consumer.ts"]
}
EOF

status=0
total_pass=0; total_fail=0
tally() {  # adds a step's "N passed, N failed" line, or one failure when it printed none
  local out="$1" rc="$2" line
  line="$(grep -E '^[0-9]+ passed, [0-9]+ failed' <<<"$out" | tail -1)"
  if [[ -n "$line" ]]; then
    total_pass=$((total_pass + ${line%% passed*})); total_fail=$((total_fail + $(sed -E 's/.* ([0-9]+) failed/\1/' <<<"$line")))
  elif [[ "$rc" -ne 0 ]]; then total_fail=$((total_fail + 1)); fi
  [[ "$rc" -eq 0 ]] || status=1
}
echo "== ESM"
set +e
out="$(bare node esm.mjs "@zofo/$target" 2>&1)"; rc=$?; echo "$out"; tally "$out" "$rc"
echo "== CommonJS"
out="$(bare node cjs.cjs "@zofo/$target" 2>&1)"; rc=$?; echo "$out"; tally "$out" "$rc"
echo "== TypeScript --strict, no @types/node"
out="$(bare node node_modules/typescript/bin/tsc -p tsconfig.json 2>&1)"; rc=$?; echo "$out"
if [[ "$rc" -eq 0 ]]; then echo "PASS tsc"; total_pass=$((total_pass + 1)); else echo "FAIL tsc"; total_fail=$((total_fail + 1)); status=1; fi
set -e
echo "$total_pass passed, $total_fail failed"
exit "$status"
