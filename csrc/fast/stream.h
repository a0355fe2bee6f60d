/* Streaming stores: the bn_stream_* twins of stream.c (the fast tier; private to csrc/). */
#ifndef BNKERNELS_STREAM_H
#define BNKERNELS_STREAM_H

#include <stdint.h>

/* Streaming stores (stream.c): outputs of at least bn_get_stream_min_bytes()
 * bytes, on CPUs with 64-byte streaming stores, bypass the cache. A kernel
 * that streams writes the elements [e_lo, e_hi) of its range in three
 * spans (bn_stream_span): the partial 64-byte line at each end with its
 * ordinary loop, and the whole lines between by its bn_stream_* twin,
 * which needs rows (NCHW: H * W values) of one vector at least. The
 * normalize twins and the NHWC dx twin also take `nt` = 0: the same
 * aligned whole lines by ordinary stores, for outputs that stay in cache
 * (standard.inc and standard_nhwc.inc write y, and NHWC dx, so wherever
 * they start), and `descending`, which walks them down. */
#define BN_STREAM_MIN_ROW_VALUES 16
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(_MSC_VER)
#define BN_STREAM_KERNELS 1  /* the bn_stream_* twins exist (AVX-512F code) */
#endif
int bn_stream_output(int64_t bytes);
void bn_stream_normalize_affine_f32(const float *x, const double *mean,
                                    const double *invstd, const float *weight,
                                    const float *bias, int64_t channels,
                                    int64_t spatial, int relu, int64_t e_lo,
                                    int64_t e_hi, int descending, int nt,
                                    float *y);
void bn_stream_normalize_affine_f64(const double *x, const double *mean,
                                    const double *invstd, const double *weight,
                                    const double *bias, int64_t channels,
                                    int64_t spatial, int relu, int64_t e_lo,
                                    int64_t e_hi, int descending, int nt,
                                    double *y);
void bn_stream_normalize_affine_nhwc4_f32(const float *x, const float *cm,
                                          const float *ca, const float *cs,
                                          int64_t channels, int relu,
                                          int64_t e_lo, int64_t e_hi,
                                          int64_t stride, int descending,
                                          int streams, int nt, float *y);
void bn_stream_normalize_affine_nhwc4_f64(const double *x, const double *cm,
                                          const double *ca, const double *cs,
                                          int64_t channels, int relu,
                                          int64_t e_lo, int64_t e_hi,
                                          int64_t stride, int descending,
                                          int streams, int nt, double *y);
void bn_stream_backward_dx_nhwc4_f32(const float *dy, const float *x,
                                     const float *ta, const float *tm,
                                     const float *tq, const float *tp,
                                     int64_t channels, int64_t e_lo,
                                     int64_t e_hi, int64_t stride,
                                     int descending, int streams, int nt,
                                     float *dx);
void bn_stream_backward_dx_nhwc4_f64(const double *dy, const double *x,
                                     const double *da, const double *dm,
                                     const double *dq, const double *dp,
                                     int64_t channels, int64_t e_lo,
                                     int64_t e_hi, int64_t stride,
                                     int descending, int streams, int nt,
                                     double *dx);
void bn_stream_backward_dx_f32(const float *dy, const float *x,
                               const float *terms, int64_t channels,
                               int64_t spatial, int64_t e_lo, int64_t e_hi,
                               int descending, int nt, float *dx);
void bn_stream_backward_dx_f64(const double *dy, const double *x,
                               const double *terms, int64_t channels,
                               int64_t spatial, int64_t e_lo, int64_t e_hi,
                               int descending, int nt, double *dx);

/* The whole 64-byte lines of out[e_lo, e_hi) (elements of `size` bytes):
 * [*s_lo, *s_hi), empty when out is not aligned to its element size. */
static inline void bn_stream_span(const void *out, int64_t size, int64_t e_lo,
                                  int64_t e_hi, int64_t *s_lo, int64_t *s_hi)
{
    const uintptr_t start = (uintptr_t)out + (uintptr_t)(e_lo * size);
    const int64_t past = (int64_t)(start % 64);
    *s_lo = *s_hi = e_lo;
    if ((uintptr_t)out % (uintptr_t)size)
        return;
    const int64_t first = e_lo + (past ? (64 - past) / size : 0);
    if (first >= e_hi)
        return;
    *s_lo = first;
    *s_hi = first + (e_hi - first) / (64 / size) * (64 / size);
}

#endif
