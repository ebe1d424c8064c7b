// CUDA attention: launchers and thin kernels over the bodies in attention.cuh.
// Forward: scores + masked softmax (one block per score row), then out = P·V.
// Backward: dS (one block per row, into the caller's scratch), then dq = dS·K and
// dk = dSᵀ·Q, dv = Pᵀ·dO, one thread per output element summing in a fixed order.
// Attention is a small share of a step (the projections dominate), so the products
// read global memory directly through L1/L2 rather than tiling in shared memory.
#include "attention.cuh"

#include <string>

#include "check.cuh"
#include "lanes.cuh"

namespace zofo::cuda {

namespace {

constexpr int kThreads = 256;        // element kernels, and the most a row kernel uses
constexpr int kBlocksPerSm = 8;      // grid cap for the element kernels (grid-stride beyond)
constexpr int kRowBlocksPerSm = 32;  // grid cap for the row kernels

// Block-wide reductions for the row bodies: blockDim.x a multiple of 32, every thread
// calls them and gets the result. Fixed shuffle tree + fixed warp order: deterministic.
struct BlockReduce {
  ZOFO_HD float sum(float v) const {
#if defined(__CUDA_ARCH__)
    __shared__ float part[32];
    return reduce(v, part, false);
#else
    return v;  // never used on the host (test harnesses bring their own)
#endif
  }
  ZOFO_HD float max(float v) const {
#if defined(__CUDA_ARCH__)
    __shared__ float part[32];
    return reduce(v, part, true);
#else
    return v;
#endif
  }
#if defined(__CUDA_ARCH__)
  __device__ static float combine(float a, float b, bool is_max) { return is_max ? fmaxf(a, b) : a + b; }
  __device__ static float reduce(float v, float* part, bool is_max) {
    const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1) v = combine(v, __shfl_xor_sync(0xffffffffu, v, o), is_max);
    __syncthreads();  // the previous reduction's readers are done with part[]
    if (lane == 0) part[warp] = v;
    __syncthreads();
    // Every warp folds the partials itself: the result lands in all threads, no third sync.
    v = lane < nwarps ? part[lane] : (is_max ? -INFINITY : 0.0f);
    for (int o = 16; o > 0; o >>= 1) v = combine(v, __shfl_xor_sync(0xffffffffu, v, o), is_max);
    return v;
  }
#endif
};

unsigned grid_for(int64_t items, int64_t per_block, int per_sm) {
  const int64_t want = (items + per_block - 1) / per_block;
  const int64_t cap = (int64_t)launch::sm_count() * per_sm;
  return (unsigned)(want < cap ? (want > 0 ? want : 1) : cap);
}

// Row kernels: one warp per 32 columns up to kThreads (a short row leaves no idle warps).
int row_threads(int64_t T) { return T >= kThreads ? kThreads : (int)((T + 31) / 32 * 32); }

// ---- kernels ----

// att: (B, NH, T, T); one block per score row (grid-stride over rows, block-uniform).
__global__ void __launch_bounds__(kThreads)
    softmax_forward_kernel(float* att, const float* __restrict__ q, const float* __restrict__ k,
                           const uint8_t* __restrict__ mask, attn::Shape sh, float scale) {
  const BlockReduce red;
  for (int64_t r = blockIdx.x; r < sh.rows(); r += gridDim.x)
    attn::softmax_forward_row(att, q, k, mask, sh, scale, r, threadIdx.x, blockDim.x, red);
}

// out: (B, T, NH, HS); one thread per element.
__global__ void __launch_bounds__(kThreads)
    attention_out_kernel(float* out, const float* __restrict__ att, const float* __restrict__ v, attn::Shape sh,
                         int64_t n) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    attn::attention_out_one(out, att, v, sh, i);
}

// dS: (B, NH, T, T); one block per score row.
__global__ void __launch_bounds__(kThreads)
    softmax_backward_kernel(float* dS, const float* __restrict__ att, const float* __restrict__ dout,
                            const float* __restrict__ v, attn::Shape sh, float scale) {
  const BlockReduce red;
  for (int64_t r = blockIdx.x; r < sh.rows(); r += gridDim.x)
    attn::softmax_backward_row(dS, att, dout, v, sh, scale, r, threadIdx.x, blockDim.x, red);
}

// dq: (B, T, NH, HS); one thread per element.
__global__ void __launch_bounds__(kThreads)
    attention_dq_kernel(float* dq, const float* __restrict__ dS, const float* __restrict__ k, attn::Shape sh,
                        int64_t n) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    attn::attention_dq_one(dq, dS, k, sh, i);
}

// dk, dv: (B, T, NKV, HS); one thread per element of both.
__global__ void __launch_bounds__(kThreads)
    attention_dkdv_kernel(float* dk, float* dv, const float* __restrict__ dS, const float* __restrict__ att,
                          const float* __restrict__ q, const float* __restrict__ dout, attn::Shape sh, int64_t n) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    attn::attention_dkdv_one(dk, dv, dS, att, q, dout, sh, i);
}

// ---- argument checks ----

// Sizes ≥ 0 and NH a multiple of NKV; false when there is nothing to do. The largest
// index, B·NH·T·T (att), must fit in int64 with room to spare.
bool check_shape(const char* kernel, int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS) {
  if (B < 0 || T < 0 || NH < 0 || NKV < 0 || HS < 0)
    throw invalid_arg(std::string(kernel) + ": negative size (B=" + std::to_string(B) + " T=" + std::to_string(T) +
                      " NH=" + std::to_string(NH) + " NKV=" + std::to_string(NKV) + " HS=" + std::to_string(HS) + ")");
  if (B == 0 || T == 0 || NH == 0 || HS == 0) return false;
  if (NKV == 0 || NH % NKV != 0)
    throw invalid_arg(std::string(kernel) + ": NH=" + std::to_string(NH) + " is not a multiple of NKV=" +
                      std::to_string(NKV));
  const int64_t kMax = (int64_t)1 << 62;
  int64_t n = B;
  for (const int64_t f : {NH, T, T > HS ? T : HS}) {
    if (n > kMax / f) throw invalid_arg(std::string(kernel) + ": sizes too large (B·NH·T·max(T, HS) overflows)");
    n *= f;
  }
  return true;
}

void require(const void* p, const char* kernel, const char* arg) {
  if (p == nullptr) throw invalid_arg(std::string(kernel) + ": " + arg + " is null");
}

}  // namespace

// ---- launchers ----

void attention_forward(float* out, float* att, const float* q, const float* k, const float* v, const uint8_t* mask,
                       int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS, float scale, cudaStream_t s) {
  const char* K = "attention_forward";
  if (!check_shape(K, B, T, NH, NKV, HS)) return;
  require(out, K, "out");
  require(att, K, "att");
  require(q, K, "q");
  require(k, K, "k");
  require(v, K, "v");
  require(mask, K, "mask");
  const attn::Shape sh{B, T, NH, NKV, HS};
  softmax_forward_kernel<<<grid_for(sh.rows(), 1, kRowBlocksPerSm), row_threads(T), 0, s>>>(att, q, k, mask, sh,
                                                                                           scale);
  check_launch("softmax_forward_kernel");
  const int64_t n = B * T * NH * HS;
  attention_out_kernel<<<grid_for(n, kThreads, kBlocksPerSm), kThreads, 0, s>>>(out, att, v, sh, n);
  check_launch("attention_out_kernel");
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* att, const float* q,
                        const float* k, const float* v, int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS,
                        float scale, float* scratch, cudaStream_t s) {
  const char* K = "attention_backward";
  if (!check_shape(K, B, T, NH, NKV, HS)) return;
  require(dq, K, "dq");
  require(dk, K, "dk");
  require(dv, K, "dv");
  require(dout, K, "dout");
  require(att, K, "att");
  require(q, K, "q");
  require(k, K, "k");
  require(v, K, "v");
  require(scratch, K, "scratch");
  const attn::Shape sh{B, T, NH, NKV, HS};
  float* dS = scratch;
  softmax_backward_kernel<<<grid_for(sh.rows(), 1, kRowBlocksPerSm), row_threads(T), 0, s>>>(dS, att, dout, v, sh,
                                                                                            scale);
  check_launch("softmax_backward_kernel");
  const int64_t nq = B * T * NH * HS, nk = B * T * NKV * HS;
  attention_dq_kernel<<<grid_for(nq, kThreads, kBlocksPerSm), kThreads, 0, s>>>(dq, dS, k, sh, nq);
  check_launch("attention_dq_kernel");
  attention_dkdv_kernel<<<grid_for(nk, kThreads, kBlocksPerSm), kThreads, 0, s>>>(dk, dv, dS, att, q, dout, sh, nk);
  check_launch("attention_dkdv_kernel");
}

}  // namespace zofo::cuda
