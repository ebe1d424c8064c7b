#include "philox_chunk.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define ZOFO_HAVE_AVX2_PATH 1
#endif

namespace zofo::cpu {

void philox_chunk_portable(const PhiloxKeys& k, uint64_t stream, uint64_t b0, uint32_t (*words)[kChunkBlocks]) {
  for (int j = 0; j < kChunkBlocks; ++j) {
    const uint64_t b = b0 + (uint64_t)j;
    uint32_t c0 = (uint32_t)b, c1 = (uint32_t)(b >> 32), c2 = (uint32_t)stream, c3 = (uint32_t)(stream >> 32);
    philox4x32_10<uint32_t>(c0, c1, c2, c3, k);
    words[0][j] = c0;
    words[1][j] = c1;
    words[2][j] = c2;
    words[3][j] = c3;
  }
}

#ifdef ZOFO_HAVE_AVX2_PATH
// One block per 64-bit lane. Only the low 32 bits of each lane are meaningful:
// vpmuludq reads only those, and >> 32 of a product is exact, so no masking is needed
// between rounds. kGroups independent vectors per iteration hide the multiply latency
// (each round depends on the previous one).
constexpr int kGroups = 4;  // 16 blocks per iteration

__attribute__((target("avx2"))) static void philox_chunk_avx2(const PhiloxKeys& k, uint64_t stream, uint64_t b0,
                                                              uint32_t (*words)[kChunkBlocks]) {
  const __m256i m0 = _mm256_set1_epi64x(kPhiloxM0), m1 = _mm256_set1_epi64x(kPhiloxM1);
  const __m256i s0 = _mm256_set1_epi64x((long long)(uint32_t)stream);
  const __m256i s1 = _mm256_set1_epi64x((long long)(stream >> 32));
  const __m256i low_halves = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  const __m256i lane = _mm256_setr_epi64x(0, 1, 2, 3);
  static_assert(kChunkBlocks % (4 * kGroups) == 0, "chunk must be a whole number of iterations");
  for (int j = 0; j < kChunkBlocks; j += 4 * kGroups) {
    __m256i c0[kGroups], c1[kGroups], c2[kGroups], c3[kGroups];
    for (int g = 0; g < kGroups; ++g) {
      const __m256i b = _mm256_add_epi64(_mm256_set1_epi64x((long long)(b0 + (uint64_t)(j + 4 * g))), lane);
      c0[g] = b;
      c1[g] = _mm256_srli_epi64(b, 32);
      c2[g] = s0;
      c3[g] = s1;
    }
#pragma GCC unroll 10
    for (int r = 0; r < kPhiloxRounds; ++r) {
      const __m256i k0 = _mm256_set1_epi64x(k.k0[r]), k1 = _mm256_set1_epi64x(k.k1[r]);
      for (int g = 0; g < kGroups; ++g) {
        const __m256i p0 = _mm256_mul_epu32(c0[g], m0), p1 = _mm256_mul_epu32(c2[g], m1);
        c0[g] = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p1, 32), c1[g]), k0);
        c2[g] = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p0, 32), c3[g]), k1);
        c1[g] = p1;
        c3[g] = p0;
      }
    }
    for (int g = 0; g < kGroups; ++g) {
      const __m256i out[4] = {c0[g], c1[g], c2[g], c3[g]};
      for (int w = 0; w < 4; ++w)
        _mm_storeu_si128((__m128i*)&words[w][j + 4 * g],
                         _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(out[w], low_halves)));
    }
  }
}
#endif

PhiloxChunkFn philox_chunk_best() {
#ifdef ZOFO_HAVE_AVX2_PATH
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx2) return philox_chunk_avx2;
#endif
  return philox_chunk_portable;
}

const char* philox_chunk_best_name() { return philox_chunk_best() == philox_chunk_portable ? "portable" : "avx2"; }

}  // namespace zofo::cpu
