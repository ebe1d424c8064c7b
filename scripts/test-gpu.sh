#!/usr/bin/env bash
# GPU test of the CUDA backend, for a machine with an NVIDIA GPU, the CUDA toolkit
# (with cuBLAS) and cmake; Node.js is not needed. Builds test/cuda/test_perturb.cu in
# build-gpu/ (cmake -S scripts/gpu, CUDA required), runs it: bit-exact comparisons
# with the CPU backend, then the perturbation benchmark. Exits non-zero on any failure.
#
#   scripts/test-gpu.sh               tests + benchmark
#   scripts/test-gpu.sh --no-bench    tests only
# Environment: BUILD_DIR (default build-gpu), CUDACXX (nvcc to use).
set -euo pipefail
cd "$(dirname "$0")/.."
build="${BUILD_DIR:-build-gpu}"
start=$SECONDS

echo "== GPU"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=index,name,driver_version,memory.total,compute_cap --format=csv || nvidia-smi -L || true
else
  echo "nvidia-smi not found: no NVIDIA driver on this machine? (the test will fail without a GPU)"
fi

if ! command -v cmake >/dev/null 2>&1; then
  echo "test-gpu: cmake not found" >&2
  exit 1
fi
if [ -z "${CUDACXX:-}" ] && ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDACXX=/usr/local/cuda/bin/nvcc
fi

echo "== configure ($build)"
generator=()
if command -v ninja >/dev/null 2>&1 && [ ! -f "$build/CMakeCache.txt" ]; then generator=(-G Ninja); fi
ZOFO_CUDA=1 cmake -S scripts/gpu -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release ||
  { echo "test-gpu: configure failed (see the CMake error above)" >&2; exit 1; }

echo "== build"
jobs="$(nproc 2>/dev/null || echo 4)"
timeout 240 cmake --build "$build" --target zofo_cuda_test --parallel "$jobs"

echo "== run (built in $((SECONDS - start)) s)"
set +e
timeout 180 "$build/zofo_cuda_test" "$@"
rc=$?
set -e
if [ "$rc" -eq 124 ]; then echo "test-gpu: zofo_cuda_test timed out" >&2; fi
echo "== test-gpu: exit $rc after $((SECONDS - start)) s"
exit "$rc"
