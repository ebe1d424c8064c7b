#!/usr/bin/env bash
# CUDA checks that need nvcc and the CUDA runtime but no GPU and no cuBLAS (CI):
#  1. host emulation: the CUDA test programs run the kernels' per-thread bodies on the
#     host (--host-only) against the CPU backend and float64 references: perturbation
#     (bit-exact), layers (norms, activations, RoPE, elementwise, optimizers, rows, loss;
#     the bf16-output variants), attention (fused, lse-saving) + weight views (fp32 and
#     bf16 destinations), and the GEMM in every compute precision (fp32, tf32, bf16);
#  2. the whole CUDA addon (engine, CUDA backend, every kernel; the matmul through the
#     tiled kernel in place of cuBLAS) is compiled, linked and loaded: without a usable
#     GPU it must fail to load with a clear reason while the CPU addon keeps working,
#     and loadModel({ device: 'cuda' }) must say why; with a GPU it must load;
#  3. the engine's GPU test program compiles (it runs only on a GPU: npm run test:gpu).
# Skips (exit 0, with a message) when nvcc or the CUDA runtime is missing, unless
# ZOFO_REQUIRE_NVCC=1. Needs the built JavaScript (dist/) for step 2.
set -euo pipefail
cd "$(dirname "$0")/.."

nvcc="${CUDACXX:-$(command -v nvcc || true)}"
if [[ -z "$nvcc" && -x /usr/local/cuda/bin/nvcc ]]; then nvcc=/usr/local/cuda/bin/nvcc; fi
if [[ -z "$nvcc" ]]; then
  echo "cuda-host-check: no nvcc; skipped"
  [[ "${ZOFO_REQUIRE_NVCC:-0}" == 1 ]] && exit 1
  exit 0
fi
cuda_root="$(dirname "$(dirname "$(readlink -f "$nvcc")")")"
[[ -f "$cuda_root/include/cuda_runtime.h" ]] || cuda_root=/usr/local/cuda
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
jobs="$(nproc 2>/dev/null || echo 2)"
# in_parallel CMD...: runs CMD in the background, at most $jobs at a time; settle waits for all.
pids=()
in_parallel() {
  "$@" &
  pids+=($!)
  if ((${#pids[@]} >= jobs)); then
    wait "${pids[0]}"
    pids=("${pids[@]:1}")
  fi
}
settle() {
  for p in "${pids[@]}"; do wait "$p"; done
  pids=()
}
flags=(-std=c++17 --fmad=false -O2 -I native -I . -Xcompiler=-ffp-contract=off,-fno-math-errno,-fPIC
       -gencode arch=compute_90,code=sm_90)

# Every kernel file once, as objects (gemm_cublas.cu needs cuBLAS: left out here).
kernels=()
for f in native/cuda/*.cu; do
  [[ "$f" == native/cuda/gemm_cublas.cu ]] || kernels+=("$f")
done
kernels+=(test/cuda/gemm_without_cublas.cu)
echo "== compile ${#kernels[@]} CUDA sources"
for f in "${kernels[@]}"; do in_parallel "$nvcc" "${flags[@]}" -c "$f" -o "$tmp/$(tr / _ <<<"$f").o"; done
settle
objects=("$tmp"/*.o)

echo "== host emulation of the CUDA kernel bodies"
"$nvcc" "${flags[@]}" test/cuda/test_perturb.cu "$tmp/native_cuda_perturb.cu.o" native/cpu/perturb.cpp \
  native/cpu/philox_chunk.cpp -o "$tmp/perturb_test" -lpthread
"$tmp/perturb_test" --host-only
"$nvcc" "${flags[@]}" test/cuda/test_layers.cu "${objects[@]}" native/cpu/norm.cpp native/cpu/activation.cpp \
  native/cpu/rope.cpp native/cpu/optim.cpp native/cpu/perturb.cpp native/cpu/philox_chunk.cpp -o "$tmp/layers_test" \
  -lpthread
"$tmp/layers_test" --host-only
"$nvcc" "${flags[@]}" test/cuda/test_attention.cu "${objects[@]}" native/cpu/attention.cpp native/cpu/matmul.cpp \
  native/cpu/perturb.cpp native/cpu/philox_chunk.cpp -o "$tmp/attention_test" -lpthread
"$tmp/attention_test" --host-only
"$nvcc" "${flags[@]}" test/cuda/test_gemm.cu "$tmp/native_cuda_gemm_tiled.cu.o" \
  "$tmp/test_cuda_gemm_without_cublas.cu.o" -o "$tmp/gemm_test"
"$tmp/gemm_test" --host-only

echo "== the CUDA addon: compile, link, load (or fail to load cleanly)"
napi_inc="$(node -p "require('node-api-headers').include_dir")"
addon_inc="$(node -p "require('node-addon-api').include_dir")"
cpu_sources=($(node -p "const s = require('./sources.json'); [...s.cpu, ...s.engine, ...s.cuda_addon].join(' ')"))
for f in "${cpu_sources[@]}"; do
  in_parallel g++ -std=c++17 -O1 -fPIC -ffp-contract=off -DNAPI_VERSION=8 -DNODE_ADDON_API_DISABLE_DEPRECATED \
    -I native -I "$cuda_root/include" -I "$napi_inc" -I "$addon_inc" -c "$f" -o "$tmp/host_$(tr / _ <<<"$f").o"
done
settle
g++ -shared -fPIC "$tmp"/host_*.o "${objects[@]}" -L "$cuda_root/lib64" -lcudart_static -ldl -lrt -lpthread \
  -o "$tmp/zofo_cuda.node"
echo "linked zofo_cuda.node ($(du -k "$tmp/zofo_cuda.node" | cut -f1) KiB)"
ZOFO_BINDING_DIR="$tmp" node --input-type=module -e "
  const { backendInfo, kernels, loadModel } = await import('./dist/lib/index.js');
  const { demoModelDir } = await import('./dist/lib/demo/model.js');
  const info = backendInfo();
  console.log('cuda:', JSON.stringify(info.cuda));
  const z = kernels.gaussian(8, { seed: 1n, name: 'w' });
  if (z.length !== 8) throw new Error('CPU path broken');
  if (!info.cuda.available) {
    const reason = info.cuda.reasons.find((r) => r.includes('zofo_cuda.node:') && !r.endsWith('not found'));
    if (!reason || !/CUDA/.test(reason)) throw new Error('the CUDA addon failed to load without a clear reason');
    let said = '';
    try { await loadModel(demoModelDir(), { device: 'cuda' }); } catch (e) { said = e.code + ' ' + e.message; }
    if (!/ZOFO_CUDA[\s\S]*zofo_cuda\.node: [^\n]*CUDA/.test(said)) throw new Error('loadModel did not say why CUDA is unavailable: ' + said);
    const cpu = await loadModel(demoModelDir(), { device: 'auto' });
    if (cpu.device !== 'cpu') throw new Error('auto did not fall back to the CPU');
    cpu.dispose();
    console.log('ok: CUDA addon links and is unavailable here with its reason recorded; the CPU addon works');
  } else {
    const g = kernels.gaussian(1000, { seed: 1n, name: 'w', device: 'cuda' });
    const c = kernels.gaussian(1000, { seed: 1n, name: 'w' });
    if (!Buffer.from(g.buffer).equals(Buffer.from(c.buffer))) throw new Error('CUDA and CPU z differ');
    console.log('ok: CUDA addon loaded; z bit-identical to the CPU');
  }
"

echo "== the engine's GPU test program compiles"
"$nvcc" "${flags[@]}" -c test/cuda/test_engine.cu -o "$tmp/engine_test.o"
echo "ok"
