/* Streaming (non-temporal) stores for large outputs; see stream.h. */
#include "stream.h"
#include "dispatch.h"

#ifdef BN_HAVE_DISPATCH  /* GCC on x86-64 glibc: AVX-512 chosen at run time */
#include <immintrin.h>
#include <stdatomic.h>
#include <unistd.h>

static _Atomic int64_t threshold_bytes = -1;   /* -1: not yet read */

static int64_t default_threshold(void)
{
    long l3 = -1;
#ifdef _SC_LEVEL3_CACHE_SIZE
    l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
#endif
    return l3 > 0 ? (int64_t)l3 / 4 * 3 : (int64_t)24 << 20;
}

void bn_set_stream_threshold(int64_t bytes)
{
    threshold_bytes = bytes < 0 ? default_threshold() : bytes;
}

int bn_stream_rows(int64_t output_bytes, int64_t row_bytes)
{
    int64_t threshold = threshold_bytes;
    if (threshold < 0)
        threshold_bytes = threshold = default_threshold();
    return output_bytes >= threshold && row_bytes >= 1024 &&
           __builtin_cpu_supports("avx512f");
}

/* Scalar elements, for the unaligned head and the tail of a row. */
#define AFFINE_SCALAR(T)                                                       \
    {                                                                          \
        const T v = (T)((double)x[s] * a + off);                               \
        y[s] = relu && v < 0 ? (T)0 : v;                                       \
    }

__attribute__((target("avx512f")))
void bn_affine_row_stream_f32(const float *x, int64_t n, double a, double off,
                              int relu, float *y)
{
    const __m512d va = _mm512_set1_pd(a), voff = _mm512_set1_pd(off);
    const __m512 zero = _mm512_setzero_ps();
    int64_t s = 0;
    for (; s < n && ((uintptr_t)(y + s) & 63); ++s)
        AFFINE_SCALAR(float)
    for (; s + 16 <= n; s += 16) {
        const __m512d lo = _mm512_add_pd(
            _mm512_mul_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x + s)), va), voff);
        const __m512d hi = _mm512_add_pd(
            _mm512_mul_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x + s + 8)), va), voff);
        __m512 v = _mm512_castpd_ps(_mm512_insertf64x4(
            _mm512_castps_pd(_mm512_castps256_ps512(_mm512_cvtpd_ps(lo))),
            _mm256_castps_pd(_mm512_cvtpd_ps(hi)), 1));
        if (relu)
            v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ), zero);
        _mm512_stream_ps(y + s, v);
    }
    for (; s < n; ++s)
        AFFINE_SCALAR(float)
}

__attribute__((target("avx512f")))
void bn_affine_row_stream_f64(const double *x, int64_t n, double a, double off,
                              int relu, double *y)
{
    const __m512d va = _mm512_set1_pd(a), voff = _mm512_set1_pd(off);
    const __m512d zero = _mm512_setzero_pd();
    int64_t s = 0;
    for (; s < n && ((uintptr_t)(y + s) & 63); ++s)
        AFFINE_SCALAR(double)
    for (; s + 8 <= n; s += 8) {
        __m512d v = _mm512_add_pd(_mm512_mul_pd(_mm512_loadu_pd(x + s), va), voff);
        if (relu)
            v = _mm512_mask_mov_pd(v, _mm512_cmp_pd_mask(v, zero, _CMP_LT_OQ), zero);
        _mm512_stream_pd(y + s, v);
    }
    for (; s < n; ++s)
        AFFINE_SCALAR(double)
}

void bn_stream_fence(void)
{
    _mm_sfence();
}

#else  /* elsewhere: never stream */

void bn_set_stream_threshold(int64_t bytes) { (void)bytes; }

int bn_stream_rows(int64_t output_bytes, int64_t row_bytes)
{
    (void)output_bytes;
    (void)row_bytes;
    return 0;
}

void bn_affine_row_stream_f32(const float *x, int64_t n, double a, double off,
                              int relu, float *y)
{
    (void)x; (void)n; (void)a; (void)off; (void)relu; (void)y;
}

void bn_affine_row_stream_f64(const double *x, int64_t n, double a, double off,
                              int relu, double *y)
{
    (void)x; (void)n; (void)a; (void)off; (void)relu; (void)y;
}

void bn_stream_fence(void) {}

#endif
