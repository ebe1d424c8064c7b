// CUDA attention: launchers and thin kernels over the fused row bodies in attention.cuh.
// One warp per row (query rows for the forward and dq, key rows for dk/dv), 8 warps per
// block; the warps of a block take consecutive rows, so the query rows of one head (or
// the key rows of one position) share their K/V (Q/dO) reads through L1. The products
// run on CUDA cores in fp32; nothing of size T×T is stored.
#include "attention.cuh"

#include <string>

#include "check.cuh"
#include "lanes.cuh"

namespace zofo::cuda {

namespace {

constexpr int kWarpsPerBlock = 8;
constexpr int kThreads = kWarpsPerBlock * attn::kLanes;
constexpr int kBlocksPerSm = 16;  // grid cap (grid-stride over rows beyond)

// Sum over the 32 lanes of a warp by an xor butterfly: every lane gets the same bits.
struct WarpReduce {
  ZOFO_HD float sum(float v) const {
#if defined(__CUDA_ARCH__)
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
#endif
    return v;
  }
};

unsigned grid_for_rows(int64_t rows) {
  const int64_t want = (rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
  const int64_t cap = (int64_t)launch::sm_count() * kBlocksPerSm;
  return (unsigned)(want < cap ? (want > 0 ? want : 1) : cap);
}

// Warp w of the grid takes rows w, w + warps, … (warp-uniform loop: the shuffles see all lanes).
#define ZOFO_FOR_EACH_WARP_ROW(r, rows)                      \
  const int lane = (int)(threadIdx.x % attn::kLanes);        \
  const int64_t warps = (int64_t)gridDim.x * kWarpsPerBlock; \
  for (int64_t r = (int64_t)blockIdx.x * kWarpsPerBlock + threadIdx.x / attn::kLanes; r < (rows); r += warps)

template <class OutT>
__global__ void __launch_bounds__(kThreads)
    attention_forward_kernel(OutT* out, float* saved, const float* __restrict__ q, const float* __restrict__ k,
                             const float* __restrict__ v, const uint8_t* __restrict__ mask, attn::Shape sh,
                             float scale) {
  const WarpReduce red;
  ZOFO_FOR_EACH_WARP_ROW(r, sh.rows())
  attn::forward_row<attn::kDevicePerLane>(out, saved, q, k, v, mask, sh, scale, r, lane, attn::kLanes, red);
}

__global__ void __launch_bounds__(kThreads)
    attention_dq_kernel(float* dq, float* D, const float* __restrict__ dout, const float* __restrict__ saved,
                        const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                        attn::Shape sh, float scale) {
  const WarpReduce red;
  ZOFO_FOR_EACH_WARP_ROW(r, sh.rows())
  attn::backward_dq_row<attn::kDevicePerLane>(dq, D, dout, saved, q, k, v, sh, scale, r, lane, attn::kLanes, red);
}

__global__ void __launch_bounds__(kThreads)
    attention_dkdv_kernel(float* dk, float* dv, const float* __restrict__ D, const float* __restrict__ dout,
                          const float* __restrict__ saved, const float* __restrict__ q, const float* __restrict__ k,
                          const float* __restrict__ v, attn::Shape sh, float scale) {
  const WarpReduce red;
  ZOFO_FOR_EACH_WARP_ROW(r, sh.key_rows())
  attn::backward_dkdv_row<attn::kDevicePerLane>(dk, dv, D, dout, saved, q, k, v, sh, scale, r, lane, attn::kLanes, red);
}

#undef ZOFO_FOR_EACH_WARP_ROW

// ---- argument checks ----

// Sizes ≥ 0, NH a multiple of NKV, HS ≤ kMaxHS; false when there is nothing to do. The
// largest index, B·T·NH·HS, must fit in int64 with room to spare.
bool check_shape(const char* kernel, int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS) {
  if (B < 0 || T < 0 || NH < 0 || NKV < 0 || HS < 0)
    throw invalid_arg(std::string(kernel) + ": negative size (B=" + std::to_string(B) + " T=" + std::to_string(T) +
                      " NH=" + std::to_string(NH) + " NKV=" + std::to_string(NKV) + " HS=" + std::to_string(HS) + ")");
  if (B == 0 || T == 0 || NH == 0 || HS == 0) return false;
  if (NKV == 0 || NH % NKV != 0)
    throw invalid_arg(std::string(kernel) + ": NH=" + std::to_string(NH) +
                      " is not a multiple of NKV=" + std::to_string(NKV));
  if (HS > attn::kMaxHS)
    throw invalid_arg(std::string(kernel) + ": head size HS=" + std::to_string(HS) + " exceeds the kernel's " +
                      std::to_string(attn::kMaxHS));
  const int64_t kMax = (int64_t)1 << 62;
  int64_t n = B;
  for (const int64_t f : {NH, T, HS}) {
    if (n > kMax / f) throw invalid_arg(std::string(kernel) + ": sizes too large (B·T·NH·HS overflows)");
    n *= f;
  }
  return true;
}

void require(const void* p, const char* kernel, const char* arg) {
  if (p == nullptr) throw invalid_arg(std::string(kernel) + ": " + arg + " is null");
}

}  // namespace

// ---- launchers ----

void attention_forward(void* out, bool out_bf16, float* saved, const float* q, const float* k, const float* v,
                       const uint8_t* mask, int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS, float scale,
                       cudaStream_t s) {
  const char* K = "attention_forward";
  if (!check_shape(K, B, T, NH, NKV, HS)) return;
  require(out, K, "out");
  require(saved, K, "saved");
  require(q, K, "q");
  require(k, K, "k");
  require(v, K, "v");
  require(mask, K, "mask");
  const attn::Shape sh{B, T, NH, NKV, HS};
  const unsigned grid = grid_for_rows(sh.rows());
  if (out_bf16)
    attention_forward_kernel<uint16_t><<<grid, kThreads, 0, s>>>((uint16_t*)out, saved, q, k, v, mask, sh, scale);
  else attention_forward_kernel<float><<<grid, kThreads, 0, s>>>((float*)out, saved, q, k, v, mask, sh, scale);
  check_launch("attention_forward_kernel");
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* saved, const float* q,
                        const float* k, const float* v, int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS,
                        float scale, float* scratch, cudaStream_t s) {
  const char* K = "attention_backward";
  if (!check_shape(K, B, T, NH, NKV, HS)) return;
  require(dq, K, "dq");
  require(dk, K, "dk");
  require(dv, K, "dv");
  require(dout, K, "dout");
  require(saved, K, "saved");
  require(q, K, "q");
  require(k, K, "k");
  require(v, K, "v");
  require(scratch, K, "scratch");
  const attn::Shape sh{B, T, NH, NKV, HS};
  float* D = scratch;
  attention_dq_kernel<<<grid_for_rows(sh.rows()), kThreads, 0, s>>>(dq, D, dout, saved, q, k, v, sh, scale);
  check_launch("attention_dq_kernel");
  attention_dkdv_kernel<<<grid_for_rows(sh.key_rows()), kThreads, 0, s>>>(dk, dv, D, dout, saved, q, k, v, sh, scale);
  check_launch("attention_dkdv_kernel");
}

}  // namespace zofo::cuda
