// The per-thread work of the CUDA perturbation kernels (perturb.cu): one "group" of 4
// consecutive elements of a buffer. Everything here is __host__ __device__ so that the
// tests can also run the exact kernel bodies on the CPU (test/cuda/test_perturb.cu
// --host-only), which checks the grouping, boundary and alignment logic on machines
// without a GPU.
//
// Groups are laid out on the buffer's 4-element-aligned grid: with h = how many
// elements the buffer pointer sits past a 4-element boundary (0 for cudaMalloc'd
// memory), group g covers buffer positions p = 4g - h .. 4g - h + 3. A group whose 4
// positions all exist and lie in one table entry takes the fast path: one 16-byte
// (fp32) or 8-byte (bf16/f16) load and store, and one Philox block, or two when the
// tensor index of its first element is not a multiple of 4. Every other group (buffer
// head/tail, entry boundaries, holes between entries) goes element by element.
#pragma once

#include <stdint.h>
#include <string.h>

#include <cuda_runtime.h>  // float4, uint2

#include "../common/dtype.h"
#include "../common/param_table.h"
#include "../common/philox.h"

namespace zofo::cuda::groups {

// ---- storage types: load to fp32, store rounded to nearest even (as native/cpu) ----

struct F32 {
  using T = float;
  using V = float4;  // 4 elements, 16 bytes
  ZOFO_HD static float load(float v) { return v; }
  ZOFO_HD static float store(float v) { return v; }
  ZOFO_HD static void load4(const V* p, float x[4]) {
#if defined(__CUDA_ARCH__)
    const float4 v = *p;
#else
    float4 v;
    memcpy(&v, p, sizeof v);  // host emulation: no type-punned access
#endif
    x[0] = v.x;
    x[1] = v.y;
    x[2] = v.z;
    x[3] = v.w;
  }
  ZOFO_HD static void store4(V* p, const float x[4]) {
    const float4 v = make_float4(x[0], x[1], x[2], x[3]);
#if defined(__CUDA_ARCH__)
    *p = v;
#else
    memcpy(p, &v, sizeof v);
#endif
  }
};

// 4 × 16-bit in one uint2 (8 bytes), little endian: element 0 in the low half of .x.
template <float (*Load)(uint16_t), uint16_t (*Store)(float)>
struct Half16 {
  using T = uint16_t;
  using V = uint2;
  ZOFO_HD static float load(uint16_t v) { return Load(v); }
  ZOFO_HD static uint16_t store(float v) { return Store(v); }
  ZOFO_HD static void load4(const V* p, float x[4]) {
#if defined(__CUDA_ARCH__)
    const uint2 v = *p;
#else
    uint2 v;
    memcpy(&v, p, sizeof v);
#endif
    x[0] = Load((uint16_t)(v.x & 0xffffu));
    x[1] = Load((uint16_t)(v.x >> 16));
    x[2] = Load((uint16_t)(v.y & 0xffffu));
    x[3] = Load((uint16_t)(v.y >> 16));
  }
  ZOFO_HD static void store4(V* p, const float x[4]) {
    uint2 v;
    v.x = (uint32_t)Store(x[0]) | ((uint32_t)Store(x[1]) << 16);
    v.y = (uint32_t)Store(x[2]) | ((uint32_t)Store(x[3]) << 16);
#if defined(__CUDA_ARCH__)
    *p = v;
#else
    memcpy(p, &v, sizeof v);
#endif
  }
};
using BF16 = Half16<bf16_to_f32, f32_to_bf16>;
using F16 = Half16<f16_to_f32, f32_to_f16>;

// ---- normals ----

// z of tensor element e (lane e % 4 of Philox block e / 4). Selects with constant
// indices keep n[] in registers (a dynamic index would put it in local memory).
ZOFO_HD float normal1(const PhiloxKeys& k, uint64_t stream, uint64_t e) {
  float n[4];
  gaussian_block(k, stream, e >> 2, n);
  const uint32_t lane = (uint32_t)(e & 3);
  return lane == 0 ? n[0] : lane == 1 ? n[1] : lane == 2 ? n[2] : n[3];
}

// z of tensor elements e0 .. e0+3: one Philox block when e0 % 4 == 0, else the tail
// of block e0/4 and the head of the next one.
ZOFO_HD void normals4(const PhiloxKeys& k, uint64_t stream, uint64_t e0, float z[4]) {
  float lo[4];
  gaussian_block(k, stream, e0 >> 2, lo);
  const uint32_t lane = (uint32_t)(e0 & 3);
  if (lane == 0) {
    z[0] = lo[0];
    z[1] = lo[1];
    z[2] = lo[2];
    z[3] = lo[3];
    return;
  }
  float hi[4];
  gaussian_block(k, stream, (e0 >> 2) + 1, hi);
  if (lane == 1) {
    z[0] = lo[1];
    z[1] = lo[2];
    z[2] = lo[3];
    z[3] = hi[0];
  } else if (lane == 2) {
    z[0] = lo[2];
    z[1] = lo[3];
    z[2] = hi[0];
    z[3] = hi[1];
  } else {
    z[0] = lo[3];
    z[1] = hi[0];
    z[2] = hi[1];
    z[3] = hi[2];
  }
}

// ---- table lookup ----

// Index of the entry holding buffer position p, or -1 when p lies in no entry.
// Entries are sorted by offset and disjoint (validate_param_table), so the only
// candidate is the last entry with offset <= p. `hint` (the entry this thread used
// last) is tried first: a thread's consecutive groups are usually in one tensor.
ZOFO_HD int64_t find_entry(const ParamEntry* table, size_t n_entries, uint64_t p, int64_t hint) {
  if (hint >= 0 && p >= table[hint].offset && p - table[hint].offset < table[hint].count) return hint;
  size_t lo = 0, hi = n_entries;  // invariant: entries [0, lo) have offset <= p, [hi, n) have offset > p
  while (lo < hi) {
    const size_t mid = lo + (hi - lo) / 2;
    if (table[mid].offset <= p) lo = mid + 1;
    else hi = mid;
  }
  if (lo == 0) return -1;
  const ParamEntry& e = table[lo - 1];
  return p - e.offset < e.count ? (int64_t)(lo - 1) : -1;
}

// ---- group bodies ----

// Elements before the first 4-element boundary of the buffer: h in 0..3.
ZOFO_HD uint64_t head_of(const void* p, size_t elem_size) {
  return ((uint64_t)(uintptr_t)p % (4 * elem_size)) / elem_size;
}

// Groups covering a buffer of n elements whose pointer is h elements past a boundary.
ZOFO_HD uint64_t group_count(uint64_t n, uint64_t h) { return (n + h + 3) / 4; }

// x ← store(fmaf(a, z, d·load(x))), d = fmaf(-eta_lambda, decay, 1), for the buffer
// positions of group g that lie in a table entry: exactly native/cpu/perturb.cpp's
// expression, so both backends round identically.
//   data: (n_elems,) storage S::T; h = head_of(data); table: (n_entries,) ParamEntry.
template <class S>
ZOFO_HD void axpby_group(typename S::T* data, uint64_t n_elems, uint64_t h, const ParamEntry* table, size_t n_entries,
                         const PhiloxKeys& k, float a, float eta_lambda, uint64_t g, int64_t& hint) {
  using T = typename S::T;
  const uint64_t q0 = 4 * g;  // position on the aligned grid; buffer position p = q - h
  if (q0 >= h && q0 - h <= n_elems && n_elems - (q0 - h) >= 4) {
    const uint64_t p0 = q0 - h;
    const int64_t i = find_entry(table, n_entries, p0, hint);
    if (i >= 0 && p0 + 3 - table[i].offset < table[i].count) {
      hint = i;
      const ParamEntry& e = table[i];
      const float d = fmaf(-eta_lambda, e.decay, 1.0f);
      float z[4], x[4];
      normals4(k, e.stream, e.first + (p0 - e.offset), z);
      typename S::V* v = (typename S::V*)(data + p0);  // 16/8-byte aligned: p0 + h ≡ 0 (mod 4)
      S::load4(v, x);
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
      for (int j = 0; j < 4; ++j) x[j] = fmaf(a, z[j], d * x[j]);
      S::store4(v, x);
      return;
    }
  }
  // Slow path: each position on its own (head/tail, entry boundaries, holes).
  for (uint64_t q = q0; q < q0 + 4; ++q) {
    if (q < h || q - h >= n_elems) continue;
    const uint64_t p = q - h;
    const int64_t i = find_entry(table, n_entries, p, hint);
    if (i < 0) continue;
    hint = i;
    const ParamEntry& e = table[i];
    const float d = fmaf(-eta_lambda, e.decay, 1.0f);
    const float z = normal1(k, e.stream, e.first + (p - e.offset));
    T* x = data + p;
    *x = S::store(fmaf(a, z, d * S::load(*x)));
  }
}

// out[i] = z of element first + i, for the positions of group g.
//   out: (count,) fp32; h = head_of(out).
ZOFO_HD void gaussian_group(float* out, uint64_t count, uint64_t h, const PhiloxKeys& k, uint64_t stream,
                            uint64_t first, uint64_t g) {
  const uint64_t q0 = 4 * g;
  if (q0 >= h && q0 - h <= count && count - (q0 - h) >= 4) {
    const uint64_t i0 = q0 - h;
    float z[4];
    normals4(k, stream, first + i0, z);
    F32::store4((float4*)(out + i0), z);
    return;
  }
  for (uint64_t q = q0; q < q0 + 4; ++q) {
    if (q < h || q - h >= count) continue;
    out[q - h] = normal1(k, stream, first + (q - h));
  }
}

// x[i] ← store(fmaf(a, z[i], d·load(x[i]))): the second half of the MeZO-style
// baseline, z already materialised in memory. x and z are both (count,).
template <class S>
ZOFO_HD void axpy_materialized_one(typename S::T* x, const float* z, float a, float d, uint64_t i) {
  x[i] = S::store(fmaf(a, z[i], d * S::load(x[i])));
}

// ---- weight views: fp32 copies of stored weights, perturbed; the storage is untouched ----
//
// A view's groups lie on the tensor's Philox grid, not on the buffers' alignment:
// group g covers tensor elements e = 4·(first/4 + g) .. +3, exactly one Philox block,
// and writes dst[e − first] for those e in [first, first + n). Any `first` then costs
// one block per 4 outputs (a dst-aligned grid would need two whenever first % 4 ≠ 0).

// Groups of an n-element view starting at tensor element `first` (first + n must not
// overflow: the launcher checks).
ZOFO_HD uint64_t view_group_count(uint64_t n, uint64_t first) {
  return n == 0 ? 0 : ((first + n - 1) >> 2) - (first >> 2) + 1;
}

// dst[i] = fmaf(a, z(first + i), load(src[i])) for the (up to 4) i of group g: the
// expression of zofo::cpu::perturbed_copy, so the bits match. a == 0 is the CPU's plain
// conversion (no Philox, and no fmaf, which would turn −0 into +0 and quiet NaNs).
// D = BF16: the same fp32 value rounded to nearest even (a bf16 matmul operand).
//   dst: (n,) D::T (fp32 by default); src: (n,) storage S::T, any element alignment.
template <class S, class D = F32>
ZOFO_HD void weight_view_group(typename D::T* dst, const typename S::T* src, uint64_t n, uint64_t first,
                               const PhiloxKeys& k, uint64_t stream, float a, uint64_t g) {
  using T = typename S::T;
  const uint64_t block = (first >> 2) + g;
  const uint64_t e0 = block << 2;  // ≤ UINT64_MAX − 3: no overflow below
  const bool noise = a != 0.0f;
  float z[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  if (noise) gaussian_block(k, stream, block, z);
  // Whole group inside the view with both pointers vector-aligned: one vector load/store.
  if (e0 >= first && n >= 4 && e0 - first <= n - 4) {
    const uint64_t i0 = e0 - first;
    if ((uintptr_t)(dst + i0) % sizeof(typename D::V) == 0 && (uintptr_t)(src + i0) % (4 * sizeof(T)) == 0) {
      float x[4];
      S::load4((const typename S::V*)(src + i0), x);
      if (noise) {
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
        for (int j = 0; j < 4; ++j) x[j] = fmaf(a, z[j], x[j]);
      }
      D::store4((typename D::V*)(dst + i0), x);
      return;
    }
  }
  // View head/tail or misaligned buffers: element by element.
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int j = 0; j < 4; ++j) {
    const uint64_t e = e0 + (uint64_t)j;
    if (e < first || e - first >= n) continue;
    const uint64_t i = e - first;
    const float x = S::load(src[i]);
    dst[i] = D::store(noise ? fmaf(a, z[j], x) : x);
  }
}

// Embedding view: row r of out (N, C) is the weight view of table row ids[r], i.e.
// tensor elements ids[r]·C .. +C−1. Groups per row: the most Philox blocks C consecutive
// elements can touch (C + 3 when the row starts at lane 3, rounded up to blocks).
ZOFO_HD uint64_t embedding_groups_per_row(uint64_t C) { return (C + 6) / 4; }

// Group j of row r (j < embedding_groups_per_row(C); groups past the row's own
// view_group_count do nothing).
//   out: (N, C) fp32; table: (V, C) storage S::T; ids: (N,) int32 in [0, V), checked by the caller.
template <class S>
ZOFO_HD void embedding_view_group(float* out, const typename S::T* table, const int32_t* ids, uint64_t C,
                                  const PhiloxKeys& k, uint64_t stream, float a, uint64_t r, uint64_t j) {
  const uint64_t first = (uint64_t)(int64_t)ids[r] * C;
  if (j >= view_group_count(C, first)) return;
  weight_view_group<S>(out + r * C, table + first, C, first, k, stream, a, j);
}

}  // namespace zofo::cuda::groups
