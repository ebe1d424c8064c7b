#!/usr/bin/env bash
# The CPU addon under AddressSanitizer + UndefinedBehaviorSanitizer: builds it into
# build-sanitize/Release (ZOFO_SANITIZE=1; build/Release is left alone), then runs the
# model, optimizer, safetensors and kernel tests, the hostile-file and worker-termination
# tests, and every reader over the fuzzer's seed corpus with that addon. Any sanitizer
# report stops the process with an error, so it fails this script.
set -euo pipefail
cd "$(dirname "$0")/.."

ZOFO_SANITIZE=1 node scripts/build.mjs
[[ -f dist/lib/index.js ]] || npx tsc -p tsconfig.json

export ZOFO_BINDING_DIR=build-sanitize/Release ZOFO_BINDING_ONLY=1 ZOFO_CUDA=0
# node itself is not instrumented: the runtimes must be loaded first.
LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
export LD_PRELOAD
export ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

node -e "const b = require('./build-sanitize/Release/zofo_cpu.node'); console.log('sanitizer build loaded:', b.backend, b.simd)"
npx tap --disable-coverage --jobs=1 \
  test/model.test.ts test/optimizer.test.ts test/safetensors.test.ts \
  test/perturb.test.ts test/matmul.test.ts test/ops.test.ts test/gaussian.test.ts test/philox.test.ts \
  test/config-sizes.test.ts test/hostile-files.test.ts test/terminate.test.ts
# Every reader over the unmutated seed corpus (no mutation budget: the mutations run
# in `npm run fuzz`, against the release build).
ZOFO_FUZZ_SECONDS=0 ZOFO_FUZZ_JOBS=1 node scripts/fuzz/fuzz.mjs
echo "sanitizers: no report"
