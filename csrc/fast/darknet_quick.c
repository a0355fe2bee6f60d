/* AVX-512F twin of darknet.inc's normalize_checked for float32: the same
 * values, dst[k] = AFFINE(fl32(q')), q' = fl64(double(fl32(src[k] - mean)) *
 * recip), and the same answer to "does every value pass the check", which
 * is what the proof above normalize_checked needs, in fewer instructions:
 *   - 16 values a step, as two halves of 8 floats, each widened to 8
 *     doubles (one 64-byte vector);
 *   - the 32 low bits of the 16 products gathered into one vector by one
 *     two-source permute, the midpoint test as (low + 8 - MIDPOINT) & (DROPPED
 *     & ~15) != 0, and the lanes that pass kept in a mask register (a masked
 *     test) rather than reduced from a vector at the end;
 *   - rows that need no lower end (lower_end false) test no range at all:
 *     the proof's x86 case. Rows that need it test |fl32(q')| in
 *     [2^-125, 2^127) as normalize_checked does.
 * Compiled for AVX-512F whatever the build's target, and called only where
 * the CPU has it (BN_WIDE8(); darknet.inc's normalize_row). */
/* A reference-only build (BNKERNELS_REFERENCE_ONLY) has no fast tier. */
#ifndef BNKERNELS_REFERENCE_ONLY
#include "darknet_quick.h"

#ifdef BN_DK_QUICK16
#include <immintrin.h>

#define TARGET __attribute__((target("avx512f")))
#define TARGET_INLINE static inline __attribute__((always_inline, target("avx512f")))

/* fl32(q') for 16 values a (a0: the first eight), with the lanes of *good
 * that fail the check cleared */
TARGET_INLINE __m512 quotients16(__m256 a0, __m256 a1, __m512d recip,
                                 int lower_end, __mmask16 *good)
{
    /* lanes 0-7: the low halves of q0's doubles, 8-15: q1's */
    const __m512i low_words = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16,
                                               14, 12, 10, 8, 6, 4, 2, 0);
    const __m512d q0 = _mm512_mul_pd(_mm512_cvtps_pd(a0), recip);
    const __m512d q1 = _mm512_mul_pd(_mm512_cvtps_pd(a1), recip);
    const __m512 f = _mm512_castpd_ps(_mm512_insertf64x4(
        _mm512_castps_pd(_mm512_castps256_ps512(_mm512_cvtpd_ps(q0))),
        _mm256_castps_pd(_mm512_cvtpd_ps(q1)), 1));
    const __m512i low = _mm512_permutex2var_epi32(
        _mm512_castpd_si512(q0), low_words, _mm512_castpd_si512(q1));
    /* the dropped bits + 8 - MIDPOINT, modulo 2^29, are 16 or more */
    *good = _mm512_mask_test_epi32_mask(
        *good, _mm512_add_epi32(low, _mm512_set1_epi32((int)(8u - BN_DK_MIDPOINT))),
        _mm512_set1_epi32((int)(BN_DK_DROPPED & ~15u)));
    if (lower_end) {
        const __m512i magnitude = _mm512_and_si512(_mm512_castps_si512(f),
                                                   _mm512_set1_epi32(0x7FFFFFFF));
        *good = _mm512_mask_cmplt_epu32_mask(
            *good, _mm512_sub_epi32(magnitude, _mm512_set1_epi32((int)BN_DK_FLOAT_SAFE_MIN)),
            _mm512_set1_epi32((int)(BN_DK_FLOAT_SAFE_MAX - BN_DK_FLOAT_SAFE_MIN)));
    }
    return f;
}

/* fl32(fl32(f * scale) + bias), or f itself when not affine */
TARGET_INLINE __m512 affine16(__m512 f, int affine, __m512 scale, __m512 bias)
{
    return affine ? _mm512_add_ps(_mm512_mul_ps(f, scale), bias) : f;
}

/* the whole row with affine and lower_end constant (each call below) */
TARGET_INLINE int checked16(const float *src, int64_t n, float mean,
                            double recip, const int affine, float scale,
                            float bias, const int lower_end, float *dst)
{
    const __m256 mean8 = _mm256_set1_ps(mean);
    const __m512d r = _mm512_set1_pd(recip);
    const __m512 s = _mm512_set1_ps(scale), b = _mm512_set1_ps(bias);
    __mmask16 good = 0xFFFF;
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) {
        const __m256 a0 = _mm256_sub_ps(_mm256_loadu_ps(src + k), mean8);
        const __m256 a1 = _mm256_sub_ps(_mm256_loadu_ps(src + k + 8), mean8);
        const __m512 f = quotients16(a0, a1, r, lower_end, &good);
        _mm512_storeu_ps(dst + k, affine16(f, affine, s, b));
    }
    if (k < n) { /* the last n - k < 16 values, in masked lanes */
        const __mmask16 lanes = (__mmask16)((1u << (n - k)) - 1u);
        __mmask16 passed = lanes;
        const __m512 a = _mm512_sub_ps(_mm512_maskz_loadu_ps(lanes, src + k),
                                       _mm512_set1_ps(mean));
        const __m256 a0 = _mm512_castps512_ps256(a);
        const __m256 a1 =
            _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1));
        const __m512 f = quotients16(a0, a1, r, lower_end, &passed);
        _mm512_mask_storeu_ps(dst + k, lanes, affine16(f, affine, s, b));
        if (passed != lanes)
            good = 0;
    }
    return good == 0xFFFF;
}

TARGET
int bn_dk_normalize_checked16_f32(const float *src, int64_t n, float mean,
                                  double recip, int affine, float scale,
                                  float bias, int lower_end, float *dst)
{
    if (affine)
        return lower_end
                   ? checked16(src, n, mean, recip, 1, scale, bias, 1, dst)
                   : checked16(src, n, mean, recip, 1, scale, bias, 0, dst);
    return lower_end ? checked16(src, n, mean, recip, 0, scale, bias, 1, dst)
                     : checked16(src, n, mean, recip, 0, scale, bias, 0, dst);
}
#endif /* BN_DK_QUICK16 */

#endif /* BNKERNELS_REFERENCE_ONLY */
