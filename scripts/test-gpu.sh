#!/usr/bin/env bash
# The GPU check (`npm run test:gpu`): one command, no network, Node.js optional. For a
# machine with an NVIDIA GPU, the CUDA toolkit with cuBLAS, and cmake:
#  1. builds the CUDA backend and its test programs with plain CMake (top-level
#     CMakeLists.txt with ZOFO_CUDA=1 ZOFO_CUDA_TEST=ON) in $BUILD_DIR (build-gpu);
#  2. tests: the perturbation kernels bit-exact against the CPU backend
#     (test/cuda/test_perturb.cu), every layer kernel (and its bf16-output variant) and
#     the fused attention against the CPU backend and float64 references (test_layers.cu,
#     test_attention.cu), the matmul in each compute precision (fp32, tf32, bf16: cuBLAS
#     and the tiled reference against float64 with rounded operands, test_gemm.cu), and
#     the engine on CUDA in each compute precision against the engine on the CPU
#     (test_engine.cu: losses, gradients, hybrid steps, bf16 exact restore);
#  3. benchmarks, bf16 storage and bf16 compute (the CUDA default): the ~1B and ~7B
#     Llama shapes (forward vs the bf16 cuBLAS rate of its own GEMMs in this run, hybrid
#     step vs 2 forwards + 1 adapter backward, peak memory; the 1B also in fp32 compute),
#     the perturbation pass vs device copy, and on a GPU with ≥ 120 GiB the llama-30b
#     shape's peak memory ÷ weight bytes — one table, numbers in $OUT/gpu-results.json
#     (or $BUILD_DIR/gpu-results.json);
#  4. with Node.js and the built JavaScript present (or packed by scripts/gpu-carry.sh):
#     builds zofo_cuda.node and runs scripts/gpu-smoke.mjs (the API on CUDA vs the CPU);
#  5. with python3 + PyTorch + CUDA: the plain-PyTorch reference in bf16 (autocast, bf16
#     weights) on the same shapes (bench/reference/gpu_compare.py: MeZO's ZO step, the
#     PEFT-style LoRA step, the hybrid step), and the issue's target ratios side by side
#     ($OUT/gpu-vs-torch.json).
# Exits non-zero on any failure; the last line is "N passed, N failed".
#
#   scripts/test-gpu.sh               everything
#   scripts/test-gpu.sh --no-bench    tests only
#   scripts/test-gpu.sh --large       accepted for older callers (the ~7B shape always runs)
# Environment: BUILD_DIR (default build-gpu), CUDACXX (nvcc), ZOFO_CUDA_ARCH (default:
# the GPU's compute capability, e.g. 90), OUT (a folder for the JSON results).
set -uo pipefail
cd "$(dirname "$0")/.."
build="${BUILD_DIR:-build-gpu}"
out="${OUT:-$build}"
start=$SECONDS
bench=1
large=()
for a in "$@"; do
  case "$a" in
    --no-bench) bench=0 ;;
    --large) large=(--large) ;;
    *) echo "usage: $0 [--no-bench] [--large]" >&2; exit 2 ;;
  esac
done
passed=0
failed=0
# Adds a program's closing "N passed, N failed" line (or one failure) to the totals.
tally() {
  local log="$1" rc="$2" line
  line="$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)"
  if [[ -n "$line" ]]; then
    passed=$((passed + $(sed -E 's/^([0-9]+) passed.*/\1/' <<<"$line")))
    failed=$((failed + $(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")))
  fi
  if [[ "$rc" -ne 0 && ( -z "$line" || "$line" == *" 0 failed"* ) ]]; then failed=$((failed + 1)); fi
}
finish() {
  echo "== test-gpu: $((SECONDS - start)) s"
  echo "$passed passed, $failed failed"
  [[ "$failed" -eq 0 ]]
  exit $?
}

echo "== GPU"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=index,name,driver_version,memory.total,compute_cap --format=csv || nvidia-smi -L || true
else
  echo "nvidia-smi not found: no NVIDIA driver on this machine? (the tests need a GPU)"
fi
if ! command -v cmake >/dev/null 2>&1; then
  echo "test-gpu: cmake not found" >&2
  failed=1
  finish
fi
if [[ -z "${CUDACXX:-}" ]] && ! command -v nvcc >/dev/null 2>&1 && [[ -x /usr/local/cuda/bin/nvcc ]]; then
  export CUDACXX=/usr/local/cuda/bin/nvcc
fi
arch="${ZOFO_CUDA_ARCH:-}"
if [[ -z "$arch" ]] && command -v nvidia-smi >/dev/null 2>&1; then
  arch="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')"
fi
arch="${arch:-90}"

echo "== configure ($build, sm_$arch)"
generator=()
if command -v ninja >/dev/null 2>&1 && [[ ! -f "$build/CMakeCache.txt" ]]; then generator=(-G Ninja); fi
if ! cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DZOFO_CUDA=1 -DZOFO_CUDA_TEST=ON \
    -DCMAKE_CUDA_ARCHITECTURES="$arch"; then
  echo "test-gpu: configure failed (see the CMake error above)" >&2
  failed=1
  finish
fi

echo "== build"
jobs="$(nproc 2>/dev/null || echo 4)"
if ! timeout 300 cmake --build "$build" --parallel "$jobs"; then
  echo "test-gpu: build failed" >&2
  failed=1
  finish
fi
echo "built in $((SECONDS - start)) s"

run() {  # run NAME TIMEOUT ARGS...
  local name="$1" limit="$2"
  shift 2
  echo "== $name $*"
  local log
  log="$(mktemp)"
  timeout "$limit" "$build/$name" "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  [[ "$rc" -eq 124 ]] && echo "test-gpu: $name timed out after $limit s" >&2
  tally "$log" "$rc"
  rm -f "$log"
}

mkdir -p "$out"
if [[ "$bench" -eq 1 ]]; then
  run zofo_cuda_test 120
  run zofo_cuda_layers_test 120
  run zofo_cuda_attention_test 120
  run zofo_cuda_gemm_test 120
  run zofo_cuda_engine_test 300 --json "$out/gpu-results.json"
else
  run zofo_cuda_test 120 --no-bench
  run zofo_cuda_layers_test 120
  run zofo_cuda_attention_test 120
  run zofo_cuda_gemm_test 120
  run zofo_cuda_engine_test 180 --no-bench
fi

# ---- the TypeScript API on CUDA (needs Node.js, dist/ and the addon header packages) ----
# A machine without Node.js can be handed one by scripts/gpu-carry.sh (gpu-carry/).
if ! command -v node >/dev/null 2>&1 && [[ -f gpu-carry/node.xz && -f gpu-carry/js.tar.gz ]]; then
  mkdir -p "$build/node-bin"
  xz -dc gpu-carry/node.xz > "$build/node-bin/node" && chmod +x "$build/node-bin/node" && export PATH="$PWD/$build/node-bin:$PATH"
  tar -xzf gpu-carry/js.tar.gz
fi
if command -v node >/dev/null 2>&1 && [[ -f dist/lib/index.js && -d node_modules/node-addon-api && -d node_modules/node-api-headers ]]; then
  echo "== the JavaScript API on CUDA"
  log="$(mktemp)"
  {
    napi_inc="$(node -p "require('node-api-headers').include_dir")"
    cmake -S . -B "$build-addon" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DZOFO_CUDA=1 \
      -DCMAKE_CUDA_ARCHITECTURES="$arch" -DCMAKE_JS_VERSION=plain-cmake -DCMAKE_JS_INC="$napi_inc" \
      -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$PWD/$build-addon/Release" &&
      timeout 300 cmake --build "$build-addon" --parallel "$jobs" --target zofo_cpu zofo_cuda &&
      ZOFO_BINDING_DIR="$build-addon/Release" ZOFO_BINDING_ONLY=1 timeout 120 node scripts/gpu-smoke.mjs
  } 2>&1 | tee "$log"
  tally "$log" "${PIPESTATUS[0]}"
  rm -f "$log"
else
  echo "== the JavaScript API on CUDA: skipped (needs node on PATH, dist/ and node_modules/{node-addon-api,node-api-headers})"
fi

# ---- the plain-PyTorch reference on the GPU, same shape (bench/reference/llama_ref.py) ----
if [[ "$bench" -eq 1 && -f "$out/gpu-results.json" ]] && command -v python3 >/dev/null 2>&1 &&
    python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "== PyTorch reference on the GPU"
  log="$(mktemp)"
  timeout 300 python3 bench/reference/gpu_compare.py --zofo "$out/gpu-results.json" --out "$out/gpu-vs-torch.json" \
    "${large[@]}" 2>&1 | tee "$log"
  tally "$log" "${PIPESTATUS[0]}"
  rm -f "$log"
else
  echo "== PyTorch reference on the GPU: skipped (needs the benchmark, python3 and torch with CUDA)"
fi
# ---- the communicator's NCCL path: one-rank smoke test (separate block) ----
# Builds zofo_comm.node with -DZOFO_NCCL=ON where MPI (mpicxx) and NCCL (nccl.h,
# libnccl; NCCL_HOME) are installed, then runs ncclSelfTest: a one-rank NCCL clique
# allreduces 1024 floats on device 0 and must return them unchanged. Skipped otherwise.
nccl_h=""
for d in "${NCCL_HOME:+$NCCL_HOME/include}" /usr/include /usr/local/include /usr/local/cuda/include; do
  if [[ -n "$d" && -f "$d/nccl.h" ]]; then nccl_h="$d/nccl.h"; break; fi
done
if command -v node >/dev/null 2>&1 && command -v mpicxx >/dev/null 2>&1 && [[ -n "$nccl_h" && -d node_modules/node-api-headers ]]; then
  echo "== NCCL one-rank smoke test ($nccl_h)"
  log="$(mktemp)"
  {
    napi_inc="$(node -p "require('node-api-headers').include_dir")"
    cmake -S . -B "$build-comm" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DZOFO_CUDA=0 -DZOFO_MPI=1 -DZOFO_NCCL=ON \
      -DCMAKE_JS_VERSION=plain-cmake -DCMAKE_JS_INC="$napi_inc" -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$PWD/$build-comm/Release" &&
      timeout 300 cmake --build "$build-comm" --parallel "$jobs" --target zofo_comm &&
      timeout 60 node -e "
        const c = require('./$build-comm/Release/zofo_comm.node');
        const why = c.nccl ? c.ncclSelfTest(0, 1024) : 'zofo_comm.node was built without NCCL';
        console.log(why === '' ? 'ncclAllReduce, one rank, 1024 floats: unchanged\n1 passed, 0 failed' : 'NCCL smoke: ' + why + '\n0 passed, 1 failed');
        process.exitCode = why === '' ? 0 : 1;"
  } 2>&1 | tee "$log"
  tally "$log" "${PIPESTATUS[0]}"
  rm -f "$log"
else
  echo "== NCCL one-rank smoke test: skipped (needs node, mpicxx (libopenmpi-dev) and nccl.h + libnccl)"
fi
finish
