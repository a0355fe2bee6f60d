/* Streaming (non-temporal) stores for large outputs.
 *
 * A store to a line that is not in cache first reads the line from memory
 * (to own it) and writes it back later: writing an output costs two
 * transfers of it where one would do. A non-temporal store writes whole
 * lines without reading them and without keeping them in cache. For an
 * output larger than the cache, which could not stay there anyway, that
 * saves the read; for a small one it would throw away lines the next
 * kernel reads, hence the threshold (bnkernels.h: 16 MiB by default).
 *
 * The kernels below compute the whole 64-byte lines of an output in
 * registers and store each with one 64-byte streaming store; the kernels
 * of standard.inc write the partial lines at either end of a thread's range
 * with ordinary stores (bn_stream_span). Each kernel computes, lane by lane,
 * the IEEE operations of a formula of formulas.h (bn_affine_f32/_f64,
 * bn_dx_common_f32/_f64), so the bits are the same either way.
 * The vectors inside one (b, c) row take its coefficients as they are; a
 * vector that straddles two rows takes each lane's from its own row (a
 * masked blend), so rows need only be one vector long.
 *
 * Streaming pays only for outputs that would not stay in cache anyway;
 * the placements of the output where it does not (4K aliasing) take
 * ordinary stores or walk down (standard_nhwc.inc). Measurements and what
 * was tried: docs/design/kernels.md. */
/* A reference-only build (BNKERNELS_REFERENCE_ONLY) has no fast tier. */
#ifndef BNKERNELS_REFERENCE_ONLY
#include "bnkernels.h"
#include "compiler.h"
#include "formulas.h"
#include "stream.h"

#if defined(BN_STREAM_KERNELS)
#include <immintrin.h>
#endif

#if defined(BN_STREAM_KERNELS)
#define BN_STREAM_TARGET __attribute__((target("avx512f")))

/* The rows of elements [e, e_hi): row r = e / spatial of channel
 * r % channels, the current one and the next (a vector may reach into it). */
typedef struct {
    int64_t channels, spatial, c, row_end;
} row_walk;

static row_walk walk_from(int64_t e, int64_t channels, int64_t spatial)
{
    const int64_t r = e / spatial;
    row_walk w = {channels, spatial, r % channels, (r + 1) * spatial};
    return w;
}

static int64_t next_channel(const row_walk *w)
{
    return w->c + 1 == w->channels ? 0 : w->c + 1;
}

static void step_row(row_walk *w)
{
    w->c = next_channel(w);
    w->row_end += w->spatial;
}

/* where the vectors of `lanes` values from e that lie wholly inside the row
 * ending at row_end stop, at most at e_hi */
static int64_t whole_vectors_end(int64_t e, int64_t row_end, int64_t lanes,
                                 int64_t e_hi)
{
    const int64_t end = e + (row_end - e) / lanes * lanes;
    return end < e_hi ? end : e_hi;
}

/* lanes [k, 8) (k < 8) or none of eight: the lanes that belong to the next row */
#define NEXT_ROW_LANES8(k) ((__mmask8)((k) < 8 ? 0xFFu << (k) : 0u))

/* fl( x * a + o ) for 16 floats (x_lo, then x_hi), in double (affine_value
 * for float32): lanes 0-7 with (a_lo, o_lo), lanes 8-15 with (a_hi, o_hi);
 * then max(y, 0) if relu (v < 0 ? 0 : v: NaN and -0 stay). */
BN_STREAM_TARGET
static inline __m512 affine16_f32(__m256 x_lo, __m256 x_hi, __m512d a_lo,
                                  __m512d o_lo, __m512d a_hi, __m512d o_hi,
                                  int relu)
{
    const __m512d lo = _mm512_cvtps_pd(x_lo), hi = _mm512_cvtps_pd(x_hi);
    const __m256 y_lo = _mm512_cvtpd_ps(_mm512_add_pd(_mm512_mul_pd(lo, a_lo), o_lo));
    const __m256 y_hi = _mm512_cvtpd_ps(_mm512_add_pd(_mm512_mul_pd(hi, a_hi), o_hi));
    __m512 out = _mm512_castpd_ps(_mm512_insertf64x4(
        _mm512_castps_pd(_mm512_castps256_ps512(y_lo)), _mm256_castps_pd(y_hi), 1));
    if (relu)
        out = _mm512_mask_mov_ps(out, _mm512_cmp_ps_mask(out, _mm512_setzero_ps(),
                                                         _CMP_LT_OQ),
                                 _mm512_setzero_ps());
    return out;
}

/* y[e] = fl( x[e] * a + (shift - mean * a) ), then max(y, 0) if relu
 * (affine_value for float32), for e in [e_lo, e_hi): y + e_lo 64-byte
 * aligned, e_hi - e_lo a multiple of 16, spatial >= 16. */
BN_STREAM_TARGET
void bn_stream_normalize_affine_f32(const float *x, const double *mean,
                                    const double *invstd, const float *weight,
                                    const float *bias, int64_t channels,
                                    int64_t spatial, int relu, int64_t e_lo,
                                    int64_t e_hi, float *y)
{
    row_walk w = walk_from(e_lo, channels, spatial);
    double a = bn_scale_f32(invstd[w.c], weight, w.c);
    double o = bn_affine_offset(mean[w.c], a, bn_shift_f32(bias, w.c));
    int64_t e = e_lo;
    while (e < e_hi) {
        const __m512d va = _mm512_set1_pd(a), vo = _mm512_set1_pd(o);
        for (const int64_t end = whole_vectors_end(e, w.row_end, 16, e_hi);
             e < end; e += 16)
            _mm512_stream_ps(y + e, affine16_f32(_mm256_loadu_ps(x + e),
                                                 _mm256_loadu_ps(x + e + 8), va, vo,
                                                 va, vo, relu));
        if (e == e_hi)
            break;
        /* the row ends at e, or inside the vector at e */
        const int64_t n = next_channel(&w);
        const double a_next = bn_scale_f32(invstd[n], weight, n);
        const double o_next = bn_affine_offset(mean[n], a_next, bn_shift_f32(bias, n));
        if (e < w.row_end) {
            const int64_t k = w.row_end - e;  /* lanes [0, k) in this row */
            const __m512d na = _mm512_set1_pd(a_next), no = _mm512_set1_pd(o_next);
            const __mmask8 next_lo = NEXT_ROW_LANES8(k);
            const __mmask8 next_hi = NEXT_ROW_LANES8(k < 8 ? 0 : k - 8);
            _mm512_stream_ps(y + e, affine16_f32(
                _mm256_loadu_ps(x + e), _mm256_loadu_ps(x + e + 8),
                _mm512_mask_blend_pd(next_lo, va, na),
                _mm512_mask_blend_pd(next_lo, vo, no),
                _mm512_mask_blend_pd(next_hi, va, na),
                _mm512_mask_blend_pd(next_hi, vo, no), relu));
            e += 16;
        }
        step_row(&w);
        a = a_next;
        o = o_next;
    }
    _mm_sfence();
}

/* fl( (x - m) * a + s ) for 8 doubles (affine_value for float64), then
 * max(y, 0) if relu. */
BN_STREAM_TARGET
static inline __m512d affine8_f64(__m512d x, __m512d m, __m512d a, __m512d s,
                                  int relu)
{
    __m512d out = _mm512_add_pd(_mm512_mul_pd(_mm512_sub_pd(x, m), a), s);
    if (relu)
        out = _mm512_mask_mov_pd(out, _mm512_cmp_pd_mask(out, _mm512_setzero_pd(),
                                                         _CMP_LT_OQ),
                                 _mm512_setzero_pd());
    return out;
}

/* y[e] = fl( (x[e] - mean) * a + shift ), then max(y, 0) if relu
 * (affine_value for float64): as above, e_hi - e_lo a multiple of 8,
 * spatial >= 8. */
BN_STREAM_TARGET
void bn_stream_normalize_affine_f64(const double *x, const double *mean,
                                    const double *invstd, const double *weight,
                                    const double *bias, int64_t channels,
                                    int64_t spatial, int relu, int64_t e_lo,
                                    int64_t e_hi, double *y)
{
    row_walk w = walk_from(e_lo, channels, spatial);
    __m512d vm = _mm512_set1_pd(mean[w.c]);
    __m512d va = _mm512_set1_pd(bn_scale_f64(invstd[w.c], weight, w.c));
    __m512d vs = _mm512_set1_pd(bn_shift_f64(bias, w.c));
    int64_t e = e_lo;
    while (e < e_hi) {
        for (const int64_t end = whole_vectors_end(e, w.row_end, 8, e_hi);
             e < end; e += 8)
            _mm512_stream_pd(y + e, affine8_f64(_mm512_loadu_pd(x + e), vm, va, vs, relu));
        if (e == e_hi)
            break;
        /* the row ends at e, or inside the vector at e */
        const int64_t n = next_channel(&w);
        const __m512d nm = _mm512_set1_pd(mean[n]);
        const __m512d na = _mm512_set1_pd(bn_scale_f64(invstd[n], weight, n));
        const __m512d ns = _mm512_set1_pd(bn_shift_f64(bias, n));
        if (e < w.row_end) {  /* lanes [0, row_end - e) in this row */
            const __mmask8 next = NEXT_ROW_LANES8(w.row_end - e);
            _mm512_stream_pd(y + e, affine8_f64(_mm512_loadu_pd(x + e),
                                                _mm512_mask_blend_pd(next, vm, nm),
                                                _mm512_mask_blend_pd(next, va, na),
                                                _mm512_mask_blend_pd(next, vs, ns), relu));
            e += 8;
        }
        step_row(&w);
        vm = nm;
        va = na;
        vs = ns;
    }
    _mm_sfence();
}

/* Channels last (bn_normalize_affine_nhwc, bn_backward_dx_nhwc): one, two
 * or four ranges of the output side by side, as the ordinary kernel walks
 * them, element e of range k at x[e + k * stride]. Element e belongs to
 * channel e % channels in every range (stride is a multiple of channels),
 * and the per-channel coefficients come as arrays extended past the last
 * channel (value i for channel i % channels, channels + 16 values), so a
 * vector's lanes load theirs in one go across a row's end. One load of the
 * coefficients serves every range's vector. */

/* lanes of element e's channel onward: the next coefficient offset */
static int64_t advance_channel(int64_t j, int64_t lanes, int64_t channels)
{
    for (j += lanes; j >= channels;)
        j -= channels;
    return j;
}

/* The channel of the vector before the one at channel j. */
static int64_t retreat_channel(int64_t j, int64_t lanes, int64_t channels)
{
    for (j -= lanes; j < 0;)
        j += channels;
    return j;
}

/* The NHWC twins below write `streams` (1, 2 or 4) ranges side by side,
 * each vector's stores to y (or dx) whole aligned 64-byte lines: with
 * `nt`, streaming stores; without, ordinary ones, for outputs that stay in
 * cache (a store that straddles two lines costs about two). Each is
 * instantiated for every (streams, nt) by an always-inlined walk with
 * those constant.
 *
 * The y twins walk each range up from e_lo, or with `descending` down
 * from e_hi: for y 1 to 255 bytes past x modulo 4 KB. Walking up, each load
 * of x would come just after a streaming store to y at the same page
 * offset, and wait on it (4K aliasing); walking down, every store to y at
 * that offset comes after the load. */
#define BN_WALK_INLINE static inline __attribute__((always_inline))

/* NHWC_INSTANCES(CALL): CALL(streams, nt) for the one (streams, nt) the
 * arguments name. */
#define NHWC_INSTANCES(CALL)                                                   \
    do {                                                                       \
        if (streams == 4) {                                                    \
            if (nt) CALL(4, 1); else CALL(4, 0);                               \
        } else if (streams == 2) {                                             \
            if (nt) CALL(2, 1); else CALL(2, 0);                               \
        } else {                                                               \
            if (nt) CALL(1, 1); else CALL(1, 0);                               \
        }                                                                      \
    } while (0)

/* float32: y = fl( x * ca + co ) (affine_value with its float32 offset),
 * then max(y, 0) if relu, for e in [e_lo, e_hi) of each range: y + e_lo
 * and stride * 4 bytes multiples of 64, e_hi - e_lo a multiple of 16. */
BN_STREAM_TARGET BN_WALK_INLINE void
affine_nhwc_walk_f32(const float *x, const double *ca, const double *co,
                     int64_t channels, int relu, int64_t e_lo, int64_t e_hi,
                     int64_t stride, int descending, float *y,
                     const int streams, const int nt)
{
    const int64_t step = descending ? -16 : 16;
    int64_t e = descending ? e_hi - 16 : e_lo;
    int64_t j = e % channels;
    for (int64_t left = (e_hi - e_lo) / 16; left > 0; --left, e += step) {
        const __m512d a_lo = _mm512_loadu_pd(ca + j), a_hi = _mm512_loadu_pd(ca + j + 8);
        const __m512d o_lo = _mm512_loadu_pd(co + j), o_hi = _mm512_loadu_pd(co + j + 8);
        __m256 v_lo[4], v_hi[4];  /* all the ranges' loads before their stores */
        for (int k = 0; k < streams; ++k) {
            v_lo[k] = _mm256_loadu_ps(x + e + k * stride);
            v_hi[k] = _mm256_loadu_ps(x + e + k * stride + 8);
        }
        for (int k = 0; k < streams; ++k) {
            const __m512 out = affine16_f32(v_lo[k], v_hi[k], a_lo, o_lo, a_hi, o_hi, relu);
            if (nt)
                _mm512_stream_ps(y + e + k * stride, out);
            else
                _mm512_store_ps(y + e + k * stride, out);
        }
        j = descending ? retreat_channel(j, 16, channels) : advance_channel(j, 16, channels);
    }
    if (nt)
        _mm_sfence();
}

BN_STREAM_TARGET
void bn_stream_normalize_affine_nhwc4_f32(const float *x, const double *ca,
                                          const double *co, int64_t channels,
                                          int relu, int64_t e_lo, int64_t e_hi,
                                          int64_t stride, int descending,
                                          int streams, int nt, float *y)
{
#define AFFINE_NHWC_F32(S, NT)                                                 \
    affine_nhwc_walk_f32(x, ca, co, channels, relu, e_lo, e_hi, stride,        \
                         descending, y, S, NT)
    NHWC_INSTANCES(AFFINE_NHWC_F32);
#undef AFFINE_NHWC_F32
}

/* float64: y = fl( (x - cm) * ca + cs ), then max(y, 0) if relu: as above,
 * stride * 8 bytes a multiple of 64, e_hi - e_lo a multiple of 8. */
BN_STREAM_TARGET BN_WALK_INLINE void
affine_nhwc_walk_f64(const double *x, const double *cm, const double *ca,
                     const double *cs, int64_t channels, int relu,
                     int64_t e_lo, int64_t e_hi, int64_t stride, int descending,
                     double *y, const int streams, const int nt)
{
    const int64_t step = descending ? -8 : 8;
    int64_t e = descending ? e_hi - 8 : e_lo;
    int64_t j = e % channels;
    for (int64_t left = (e_hi - e_lo) / 8; left > 0; --left, e += step) {
        const __m512d m = _mm512_loadu_pd(cm + j), a = _mm512_loadu_pd(ca + j),
                      sh = _mm512_loadu_pd(cs + j);
        __m512d v[4];
        for (int k = 0; k < streams; ++k)
            v[k] = _mm512_loadu_pd(x + e + k * stride);
        for (int k = 0; k < streams; ++k) {
            const __m512d out = affine8_f64(v[k], m, a, sh, relu);
            if (nt)
                _mm512_stream_pd(y + e + k * stride, out);
            else
                _mm512_store_pd(y + e + k * stride, out);
        }
        j = descending ? retreat_channel(j, 8, channels) : advance_channel(j, 8, channels);
    }
    if (nt)
        _mm_sfence();
}

BN_STREAM_TARGET
void bn_stream_normalize_affine_nhwc4_f64(const double *x, const double *cm,
                                          const double *ca, const double *cs,
                                          int64_t channels, int relu,
                                          int64_t e_lo, int64_t e_hi,
                                          int64_t stride, int descending,
                                          int streams, int nt, double *y)
{
#define AFFINE_NHWC_F64(S, NT)                                                 \
    affine_nhwc_walk_f64(x, cm, ca, cs, channels, relu, e_lo, e_hi, stride,    \
                         descending, y, S, NT)
    NHWC_INSTANCES(AFFINE_NHWC_F64);
#undef AFFINE_NHWC_F64
}

/* the dx kernels, NCHW and NHWC, for each T */
#define T float
#define NAME(f) f##_f32
#define VEC __m512
#define LANES 16
#define MASK __mmask16
#define NEXT_ROW_LANES(k) ((__mmask16)((k) < 16 ? 0xFFFFu << (k) : 0u))
#define V_SET1 _mm512_set1_ps
#define V_LOADU _mm512_loadu_ps
#define V_ADD _mm512_add_ps
#define V_SUB _mm512_sub_ps
#define V_MUL _mm512_mul_ps
#define V_BLEND _mm512_mask_blend_ps
#define V_STORE _mm512_store_ps
#define V_STREAM _mm512_stream_ps
#include "stream_dx.inc"

#define T double
#define NAME(f) f##_f64
#define VEC __m512d
#define LANES 8
#define MASK __mmask8
#define NEXT_ROW_LANES NEXT_ROW_LANES8
#define V_SET1 _mm512_set1_pd
#define V_LOADU _mm512_loadu_pd
#define V_ADD _mm512_add_pd
#define V_SUB _mm512_sub_pd
#define V_MUL _mm512_mul_pd
#define V_BLEND _mm512_mask_blend_pd
#define V_STORE _mm512_store_pd
#define V_STREAM _mm512_stream_pd
#include "stream_dx.inc"

#endif

#endif /* BNKERNELS_REFERENCE_ONLY */
