/*
 * A fuzz harness for the C kernels of csrc/, without Python.
 *
 * The input bytes choose the sizes (batch, channels, spatial, each small and
 * possibly 0, sometimes large enough for threads), the thread count, the flags (ReLU, NULL weight or bias, eval
 * mode) and the values (raw float/double bit patterns: NaN, Inf, subnormals
 * and huge numbers included). Every kernel of bnkernels.h then runs, f32 and
 * f64, on buffers of exactly the size the header documents (the convolution
 * and pooling kernels on a plane and windows the next bytes choose, within
 * PyTorch's rules), so that a build
 * with AddressSanitizer reports any read or write outside them, and UBSan any
 * undefined behaviour.
 *
 * Then hostile geometries: each of the 12 sizes of the convolution and
 * pooling kernels small or an extreme (negative, 2**31, 2**62, INT64_MAX,
 * ...). bn_pool_geometry_check must agree with the header's rules computed
 * here in 128-bit arithmetic; on sizes it rejects, every kernel must leave
 * its buffers untouched; on sizes it accepts that fit in memory, the kernels
 * run on exact buffers and im2col is compared with a direct loop (the
 * coordinates of huge strides and paddings included). An input that starts
 * with "GEOM" is one such case written out: 12 little-endian int64 (batch,
 * channels, height, width, kernel_h, kernel_w, stride_h, stride_w, pad_h,
 * pad_w, out_h, out_w) and a flags byte (1: ceil_mode, 2: count_include_pad);
 * tests/fuzz/corpus/geom_* are such regression inputs.
 *
 * With clang's libFuzzer (coverage-guided; add -fopenmp where libomp is
 * installed; 47,000 inputs in 30 s and no report with Debian's clang 14):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -DBN_LIBFUZZER -Icsrc \
 *       csrc/[a-z]*.c csrc/ref/[a-z]*.c csrc/fast/[a-z]*.c tests/fuzz/fuzz_kernels.c -lm -o fuzz_kernels
 *   ./fuzz_kernels -max_total_time=600 tests/fuzz/corpus
 * With GCC (random inputs for a bounded time, then every file given):
 *   gcc -std=c11 -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=undefined \
 *       -fopenmp -Icsrc csrc/[a-z]*.c csrc/ref/[a-z]*.c csrc/fast/[a-z]*.c tests/fuzz/fuzz_kernels.c \
 *       -lm -o fuzz_kernels
 *   ./fuzz_kernels 20 tests/fuzz/corpus/[a-z]*        # 20 seconds of random inputs
 * An input that crashes goes into tests/fuzz/corpus/ (a regression input).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <math.h>

#include "bnkernels.h"
#include "ref/reference.h"

/* Bytes to values, cycling through the input. */
typedef struct {
    const uint8_t *data;
    size_t size, at;
} Source;

static uint8_t next_byte(Source *in)
{
    if (in->size == 0)
        return 0;
    const uint8_t b = in->data[in->at % in->size];
    in->at++;
    return b;
}

static void fill(Source *in, void *buffer, size_t bytes)
{
    uint8_t *p = buffer;
    for (size_t i = 0; i < bytes; ++i)
        p[i] = next_byte(in);
}

/* Values that are mostly ordinary numbers, sometimes raw bit patterns. */
#define DEFINE_FILL(T, NAME)                                                   \
    static void NAME(Source *in, T *v, int64_t n)                              \
    {                                                                          \
        for (int64_t i = 0; i < n; ++i) {                                      \
            if (next_byte(in) < 200)                                           \
                v[i] = (T)((int)next_byte(in) - 128) / (T)16;                  \
            else                                                               \
                fill(in, &v[i], sizeof v[i]);                                  \
        }                                                                      \
    }
DEFINE_FILL(float, fill_f32)
DEFINE_FILL(double, fill_f64)

/* Exactly-sized buffers: ASan sees the end of each. */
#define NEW(T, n) ((T *)malloc(((n) > 0 ? (size_t)(n) : 1) * sizeof(T)))

/* The reference tier (csrc/ref/) as the oracle. Darknet-exact kernels and
 * the convolution and pooling kernels must give its bits (a NaN matches any
 * NaN); the standard kernels, whose sums add in another order, agree with it
 * to rounding on tame inputs (finite, |v| <= 1e3). A difference aborts. */
#define SAME_BITS(T, got, want, n, what)                                       \
    for (int64_t i_ = 0; i_ < (int64_t)(n); ++i_)                              \
        if (memcmp(&(got)[i_], &(want)[i_], sizeof(T)) != 0 &&                 \
            !((got)[i_] != (got)[i_] && (want)[i_] != (want)[i_])) {           \
            fprintf(stderr, "fuzz: %s differs from the reference tier at %lld " \
                    "(%.17g, reference %.17g)\n", what, (long long)i_,         \
                    (double)(got)[i_], (double)(want)[i_]);                    \
            abort();                                                           \
        }
#define CLOSE(got, want, n, tol, what)                                         \
    for (int64_t i_ = 0; i_ < (int64_t)(n); ++i_) {                            \
        const double g_ = (double)(got)[i_], w_ = (double)(want)[i_];          \
        if (!(fabs(g_ - w_) <= (tol)) && !(g_ != g_ && w_ != w_)) {            \
            fprintf(stderr, "fuzz: %s is %.17g, the reference tier %.17g, at " \
                    "%lld (tolerance %g)\n", what, g_, w_, (long long)i_,      \
                    (double)(tol));                                            \
            abort();                                                           \
        }                                                                      \
    }

/* max |v| of n values, or infinity if one is not finite */
#define DEFINE_SPAN(T, NAME)                                                   \
    static double NAME(const T *v, int64_t n)                                  \
    {                                                                          \
        double m = 0.;                                                         \
        for (int64_t i = 0; i < n; ++i) {                                      \
            const double a = fabs((double)v[i]);                               \
            if (!(a <= 1e300))                                                 \
                return INFINITY;                                               \
            m = a > m ? a : m;                                                 \
        }                                                                      \
        return m;                                                              \
    }
DEFINE_SPAN(float, span_f32)
DEFINE_SPAN(double, span_f64)
#define ULP_f32 1.2e-7
#define ULP_f64 2.3e-16

/* An -Ofast build's kernels (PRE: dk_ofast or dk_ofast_avx) against
 * the reference tier's: the fused sums, the bias and scale sums one by one
 * (accumulating into the same starting values), then dx from the sums. */
#define OFAST_ORACLE(T, SUF, PRE, o1, o2, u1, u2)                              \
    for (int64_t c = 0; c < 4 * channels; ++c)                                 \
        u1[c] = u2[c] = w[c % (channels ? channels : 1)];                      \
    bn_##PRE##_backward_sums_##SUF(x, x, dy, m1, v1, w, batch, channels,       \
                                   spatial, eps, u1, u1 + channels,            \
                                   u1 + 2 * channels, u1 + 3 * channels);      \
    bn_ref_##PRE##_backward_sums_##SUF(x, x, dy, m1, v1, w, batch, channels,   \
                                       spatial, eps, u2, u2 + channels,        \
                                       u2 + 2 * channels, u2 + 3 * channels);  \
    SAME_BITS(T, u1, u2, 4 * channels, "bn_" #PRE "_backward_sums_" #SUF)            \
    bn_##PRE##_backward_bias_##SUF(dy, batch, channels, spatial, u1);          \
    bn_ref_##PRE##_backward_bias_##SUF(dy, batch, channels, spatial, u2);      \
    bn_##PRE##_backward_scale_##SUF(x, dy, batch, channels, spatial,           \
                                    u1 + channels);                            \
    bn_ref_##PRE##_backward_scale_##SUF(x, dy, batch, channels, spatial,       \
                                        u2 + channels);                        \
    SAME_BITS(T, u1, u2, 2 * channels, "bn_" #PRE "_backward_bias/scale_" #SUF)      \
    bn_dk_ofast_backward_dx_eps_inside_##SUF(x, m1, v1, u1 + 2 * channels,     \
                                             u1 + 3 * channels, dy, w, batch,  \
                                             channels, spatial, eps, o1);      \
    bn_ref_dk_ofast_backward_dx_eps_inside_##SUF(x, m1, v1, u1 + 2 * channels, \
                                                 u1 + 3 * channels, dy, w,     \
                                                 batch, channels, spatial,     \
                                                 eps, o2);                     \
    SAME_BITS(T, o1, o2, total, "bn_" #PRE " dx_eps_inside_" #SUF)

#define ORACLE_FAMILY(T, SUF, SPAN, ULP)                                       \
    {                                                                          \
        T *m1 = NEW(T, channels), *m2 = NEW(T, channels);                      \
        T *v1 = NEW(T, channels), *v2 = NEW(T, channels);                      \
        T *o1 = NEW(T, total), *o2 = NEW(T, total);                            \
        T *u1 = NEW(T, 4 * channels), *u2 = NEW(T, 4 * channels);              \
        const T eps = (T)1e-5;                                                 \
        bn_dk_mean_##SUF(x, batch, channels, spatial, m1);                     \
        bn_ref_dk_mean_##SUF(x, batch, channels, spatial, m2);                 \
        SAME_BITS(T, m1, m2, channels, "bn_dk_mean_" #SUF)                     \
        bn_dk_variance_##SUF(x, m1, batch, channels, spatial, v1);             \
        bn_ref_dk_variance_##SUF(x, m1, batch, channels, spatial, v2);         \
        SAME_BITS(T, v1, v2, channels, "bn_dk_variance_" #SUF)                 \
        bn_dk_normalize_eps_outside_##SUF(x, m1, v1, batch, channels, spatial, \
                                          eps, o1);                            \
        bn_ref_dk_normalize_eps_outside_##SUF(x, m1, v1, batch, channels,      \
                                              spatial, eps, o2);               \
        SAME_BITS(T, o1, o2, total, "bn_dk_normalize_eps_outside_" #SUF)       \
        bn_dk_scale_add_bias_##SUF(x, w, b, batch, channels, spatial, o1);     \
        bn_ref_dk_scale_add_bias_##SUF(x, w, b, batch, channels, spatial, o2); \
        SAME_BITS(T, o1, o2, total, "bn_dk_scale_add_bias_" #SUF)              \
        for (int inside = 0; inside < 2; ++inside) {                           \
            bn_dk_inference_##SUF(x, m1, v1, w, b, batch, channels, spatial,   \
                                  eps, inside, o1);                            \
            bn_ref_dk_inference_##SUF(x, m1, v1, w, b, batch, channels,        \
                                      spatial, eps, inside, o2);               \
            SAME_BITS(T, o1, o2, total, "bn_dk_inference_" #SUF)               \
        }                                                                      \
        for (int64_t c = 0; c < 4 * channels; ++c)                             \
            u1[c] = u2[c] = w[c % (channels ? channels : 1)];                  \
        bn_dk_backward_sums_##SUF(x, x, dy, m1, v1, w, batch, channels,        \
                                  spatial, eps, u1, u1 + channels,             \
                                  u1 + 2 * channels, u1 + 3 * channels);       \
        bn_ref_dk_backward_sums_##SUF(x, x, dy, m1, v1, w, batch, channels,    \
                                      spatial, eps, u2, u2 + channels,         \
                                      u2 + 2 * channels, u2 + 3 * channels);   \
        SAME_BITS(T, u1, u2, 4 * channels, "bn_dk_backward_sums_" #SUF)        \
        bn_dk_backward_dx_eps_inside_##SUF(x, m1, v1, u1 + 2 * channels,       \
                                           u1 + 3 * channels, dy, w, batch,    \
                                           channels, spatial, eps, o1);        \
        bn_ref_dk_backward_dx_eps_inside_##SUF(x, m1, v1, u1 + 2 * channels,   \
                                               u1 + 3 * channels, dy, w,       \
                                               batch, channels, spatial, eps,  \
                                               o2);                            \
        SAME_BITS(T, o1, o2, total, "bn_dk_backward_dx_eps_inside_" #SUF)      \
        /* the -Ofast builds' sums (4 and 8 lanes) and dx */                   \
        OFAST_ORACLE(T, SUF, dk_ofast, o1, o2, u1, u2)                         \
        OFAST_ORACLE(T, SUF, dk_ofast_avx, o1, o2, u1, u2)                     \
        bn_dk_ofast_backward_dx_eps_outside_##SUF(x, m1, v1, u1 + 2 * channels,\
                                                  u1 + 3 * channels, dy, w,    \
                                                  batch, channels, spatial,    \
                                                  eps, o1);                    \
        bn_ref_dk_ofast_backward_dx_eps_outside_##SUF(                         \
            x, m1, v1, u1 + 2 * channels, u1 + 3 * channels, dy, w, batch,     \
            channels, spatial, eps, o2);                                       \
        SAME_BITS(T, o1, o2, total, "bn_dk_ofast_backward_dx_eps_outside_" #SUF)\
        bn_dk_ofast_normalize_delta_eps_inside_##SUF(x, m1, v1, u1 + 2 * channels,\
                                                     u1 + 3 * channels, dy,    \
                                                     batch, channels, spatial, \
                                                     eps, o1);                 \
        bn_ref_dk_ofast_normalize_delta_eps_inside_##SUF(                      \
            x, m1, v1, u1 + 2 * channels, u1 + 3 * channels, dy, batch,        \
            channels, spatial, eps, o2);                                       \
        SAME_BITS(T, o1, o2, total,                                            \
                  "bn_dk_ofast_normalize_delta_eps_inside_" #SUF)              \
        /* standard numerics, on tame inputs */                                \
        const double span = SPAN(x, total);                                    \
        if (batch * spatial > 0 && span <= 1e3 && SPAN(dy, total) <= 1e3 &&    \
            SPAN(w, channels) <= 1e3 && SPAN(b, channels) <= 1e3) {            \
            double *a1 = NEW(double, channels), *a2 = NEW(double, channels);   \
            double *q1 = NEW(double, channels), *q2 = NEW(double, channels);   \
            double *k = NEW(double, channels);                                 \
            const double tol_stats = 1e-12 * (1. + span * span);               \
            bn_stats_##SUF(x, batch, channels, spatial, a1, q1);               \
            bn_ref_stats_##SUF(x, batch, channels, spatial, a2, q2);           \
            CLOSE(a1, a2, channels, tol_stats, "bn_stats_" #SUF " mean")       \
            CLOSE(q1, q2, channels, tol_stats, "bn_stats_" #SUF " var")        \
            bn_stats_nhwc_##SUF(x, batch, channels, spatial, a1, q1);          \
            bn_ref_stats_nhwc_##SUF(x, batch, channels, spatial, a2, q2);      \
            CLOSE(a1, a2, channels, tol_stats, "bn_stats_nhwc_" #SUF " mean")  \
            CLOSE(q1, q2, channels, tol_stats, "bn_stats_nhwc_" #SUF " var")   \
            /* invstd of at most 1e3: the outputs stay within ~1e9 */          \
            bn_invstd(channels, q2, 1e-3, k);                                  \
            const double tol_out = ULP * 1e9 * 4;                              \
            bn_normalize_affine_##SUF(x, a2, k, w, b, batch, channels,         \
                                      spatial, 0, o1);                         \
            bn_ref_normalize_affine_##SUF(x, a2, k, w, b, batch, channels,     \
                                          spatial, 0, o2);                     \
            CLOSE(o1, o2, total, tol_out, "bn_normalize_affine_" #SUF)         \
            bn_backward_reduce_##SUF(dy, x, a2, k, w, b, 0, batch, channels,   \
                                     spatial, a1, q1);                         \
            bn_ref_backward_reduce_##SUF(dy, x, a2, k, w, b, 0, batch,         \
                                         channels, spatial, a1, q2);           \
            /* each term at most 1e3 * 2e3 * 32; double sums of total terms */ \
            CLOSE(q1, q2, channels, 1e-13 * (1. + (double)total * 6.4e7),      \
                  "bn_backward_reduce_" #SUF)                                  \
            free(a1); free(a2); free(q1); free(q2); free(k);                   \
        }                                                                      \
        free(m1); free(m2); free(v1); free(v2); free(o1); free(o2);            \
        free(u1); free(u2);                                                    \
    }

#define RUN_FAMILY(T, SUF, FILL)                                               \
    {                                                                          \
        T *x = NEW(T, total), *dy = NEW(T, total), *xn = NEW(T, total);         \
        T *out = NEW(T, total), *w = NEW(T, channels), *b = NEW(T, channels);  \
        T *mean = NEW(T, channels), *var = NEW(T, channels);                   \
        T *r1 = NEW(T, channels), *r2 = NEW(T, channels);                      \
        T *md = NEW(T, channels), *vd = NEW(T, channels);                      \
        double *dm = NEW(double, channels), *dv = NEW(double, channels);       \
        double *dk = NEW(double, channels), *s1 = NEW(double, channels);       \
        double *s2 = NEW(double, channels);                                    \
        FILL(in, x, total);                                                    \
        FILL(in, dy, total);                                                   \
        FILL(in, w, channels);                                                 \
        FILL(in, b, channels);                                                 \
        FILL(in, r1, channels);                                                \
        FILL(in, r2, channels);                                                \
        ORACLE_FAMILY(T, SUF, span_##SUF, ULP_##SUF)                           \
        /* ReLU backward on raw values: the reference tier's bits, also  */    \
        /* written over dy's copy (dx may be dy)                         */    \
        bn_ref_relu_backward_##SUF(dy, x, total, xn);                          \
        bn_relu_backward_##SUF(dy, x, total, out);                             \
        SAME_BITS(T, out, xn, total, "bn_relu_backward_" #SUF)                 \
        if (total > 0)                                                         \
            memcpy(out, dy, (size_t)total * sizeof(T));                        \
        bn_relu_backward_##SUF(out, x, total, out);                            \
        SAME_BITS(T, out, xn, total, "bn_relu_backward_" #SUF " in place")     \
        const T eps = (T)1e-5;                                                 \
        bn_dk_mean_##SUF(x, batch, channels, spatial, mean);                   \
        bn_dk_variance_##SUF(x, mean, batch, channels, spatial, var);          \
        bn_dk_rolling_update_##SUF(channels, (T)0.99, (T)0.01, mean, r1);      \
        bn_dk_normalize_eps_outside_##SUF(x, mean, var, batch, channels,       \
                                          spatial, eps, xn);                   \
        bn_dk_normalize_eps_inside_##SUF(x, mean, var, batch, channels,        \
                                         spatial, eps, out);                   \
        bn_dk_scale_bias_##SUF(xn, w, batch, channels, spatial, out);          \
        bn_dk_add_bias_##SUF(out, b, batch, channels, spatial, out);           \
        bn_dk_scale_add_bias_##SUF(xn, w, b, batch, channels, spatial, out);   \
        bn_dk_backward_bias_##SUF(dy, batch, channels, spatial, r1);           \
        bn_dk_backward_scale_##SUF(xn, dy, batch, channels, spatial, r2);      \
        bn_dk_mean_delta_##SUF(dy, var, batch, channels, spatial, eps, md);    \
        bn_dk_variance_delta_##SUF(x, dy, mean, var, batch, channels, spatial, \
                                   eps, vd);                                   \
        bn_dk_normalize_delta_eps_inside_##SUF(x, mean, var, md, vd, dy,       \
                                               batch, channels, spatial, eps,  \
                                               out);                           \
        bn_dk_normalize_delta_eps_outside_##SUF(x, mean, var, md, vd, dy,      \
                                                batch, channels, spatial, eps, \
                                                dy);                           \
        bn_dk_backward_sums_##SUF(x, xn, dy, mean, var, w, batch, channels,    \
                                  spatial, eps, r1, r2, md, vd);               \
        bn_dk_backward_dx_eps_inside_##SUF(x, mean, var, md, vd, dy, w, batch, \
                                           channels, spatial, eps, out);       \
        bn_dk_backward_dx_eps_outside_##SUF(x, mean, var, md, vd, dy, w,       \
                                            batch, channels, spatial, eps, dy);\
        bn_dk_ofast_avx_backward_sums_##SUF(x, xn, dy, mean, var, w, batch,    \
                                            channels, spatial, eps, r1, r2,    \
                                            md, vd);                           \
        bn_dk_ofast_backward_dx_eps_inside_##SUF(x, mean, var, md, vd, dy, w,  \
                                                 batch, channels, spatial,     \
                                                 eps, dy);                     \
        bn_dk_ofast_normalize_delta_eps_outside_##SUF(x, mean, var, md, vd, dy,\
                                                      batch, channels,         \
                                                      spatial, eps, dy);       \
        bn_stats_##SUF(x, batch, channels, spatial, dm, dv);                   \
        bn_invstd(channels, dv, 1e-5, dk);                                     \
        bn_normalize_affine_##SUF(x, dm, dk, no_weight ? NULL : w,             \
                                  no_bias ? NULL : b, batch, channels,         \
                                  spatial, relu, out);                         \
        if (batch * spatial > 1)                                               \
            bn_rolling_update_##SUF(channels, 0.1, batch * spatial, 1, dm, dv, \
                                    r1, r2);                                   \
        bn_backward_reduce_##SUF(dy, x, dm, dk, no_weight ? NULL : w,          \
                                 no_bias ? NULL : b, relu, batch, channels,    \
                                 spatial, s1, s2);                             \
        bn_backward_dx_##SUF(dy, x, dm, dk, no_weight ? NULL : w,              \
                             no_bias ? NULL : b, relu, eval ? NULL : s1,       \
                             eval ? NULL : s2, batch, channels, spatial, out); \
        bn_backward_dx_##SUF(dy, x, dm, dk, w, b, relu, s1, s2, batch,         \
                             channels, spatial, dy);                           \
        /* the same buffers read as (batch, spatial, channels) */              \
        bn_stats_nhwc_##SUF(x, batch, channels, spatial, dm, dv);              \
        bn_invstd(channels, dv, 1e-5, dk);                                     \
        bn_normalize_affine_nhwc_##SUF(x, dm, dk, no_weight ? NULL : w,        \
                                       no_bias ? NULL : b, batch, channels,    \
                                       spatial, relu, out);                    \
        bn_backward_reduce_nhwc_##SUF(dy, x, dm, dk, no_weight ? NULL : w,     \
                                      no_bias ? NULL : b, relu, batch,         \
                                      channels, spatial, s1, s2);              \
        bn_backward_dx_nhwc_##SUF(dy, x, dm, dk, no_weight ? NULL : w,         \
                                  no_bias ? NULL : b, relu, eval ? NULL : s1,  \
                                  eval ? NULL : s2, batch, channels, spatial,  \
                                  out);                                        \
        bn_backward_dx_nhwc_##SUF(dy, x, dm, dk, w, b, relu, s1, s2, batch,    \
                                  channels, spatial, dy);                      \
        free(x); free(dy); free(xn); free(out); free(w); free(b);              \
        free(mean); free(var); free(r1); free(r2); free(md); free(vd);         \
        free(dm); free(dv); free(dk); free(s1); free(s2);                      \
    }

/* im2col, col2im and the pools on (batch, channels, height, width) planes,
 * windows within PyTorch's rules (padding <= kernel / 2 for the pools). */
#define RUN_CONV_POOL(T, SUF, FILL)                                            \
    {                                                                          \
        const int64_t planes = batch * channels, plane = height * width;      \
        const int64_t rows = planes * kh * kw, outs = oh * ow;                 \
        const int64_t pouts = ph_ * pw_;                                       \
        T *x = NEW(T, planes * plane), *dx = NEW(T, planes * plane);           \
        T *cols = NEW(T, rows * outs), *y = NEW(T, planes * pouts);            \
        T *dy = NEW(T, planes * pouts);                                        \
        int64_t *at = NEW(int64_t, planes * pouts);                            \
        FILL(in, x, planes * plane);                                           \
        FILL(in, dy, planes * pouts);                                          \
        {   /* the reference tier's bits */                                    \
            T *c2 = NEW(T, rows * outs), *d2 = NEW(T, planes * plane);         \
            bn_im2col_##SUF(x, batch, channels, height, width, kh, kw, sh, sw, \
                            pad_h, pad_w, oh, ow, cols);                       \
            bn_ref_im2col_##SUF(x, batch, channels, height, width, kh, kw, sh, \
                                sw, pad_h, pad_w, oh, ow, c2);                 \
            SAME_BITS(T, cols, c2, rows * outs, "bn_im2col_" #SUF)             \
            bn_col2im_##SUF(cols, batch, channels, height, width, kh, kw, sh,  \
                            sw, pad_h, pad_w, oh, ow, dx);                     \
            bn_ref_col2im_##SUF(cols, batch, channels, height, width, kh, kw,  \
                                sh, sw, pad_h, pad_w, oh, ow, d2);             \
            SAME_BITS(T, dx, d2, planes * plane, "bn_col2im_" #SUF)            \
            if (pool) {                                                        \
                T *y2 = NEW(T, planes * pouts);                                \
                int64_t *at2 = NEW(int64_t, planes * pouts);                   \
                bn_max_pool2d_forward_##SUF(x, batch, channels, height, width, \
                                            kh, kw, sh, sw, pad_h, pad_w, ph_, \
                                            pw_, y, at);                       \
                bn_ref_max_pool2d_forward_##SUF(x, batch, channels, height,    \
                                                width, kh, kw, sh, sw, pad_h,  \
                                                pad_w, ph_, pw_, y2, at2);     \
                SAME_BITS(T, y, y2, planes * pouts, "bn_max_pool2d_forward_" #SUF) \
                SAME_BITS(int64_t, at, at2, planes * pouts,                    \
                          "bn_max_pool2d_forward_" #SUF " indices")            \
                bn_avg_pool2d_forward_##SUF(x, batch, channels, height, width, \
                                            kh, kw, sh, sw, pad_h, pad_w, ph_, \
                                            pw_, include_pad, y);              \
                bn_ref_avg_pool2d_forward_##SUF(x, batch, channels, height,    \
                                                width, kh, kw, sh, sw, pad_h,  \
                                                pad_w, ph_, pw_, include_pad,  \
                                                y2);                           \
                SAME_BITS(T, y, y2, planes * pouts, "bn_avg_pool2d_forward_" #SUF) \
                bn_avg_pool2d_backward_##SUF(dy, batch, channels, height,      \
                                             width, kh, kw, sh, sw, pad_h,     \
                                             pad_w, ph_, pw_, include_pad, dx);\
                bn_ref_avg_pool2d_backward_##SUF(dy, batch, channels, height,  \
                                                 width, kh, kw, sh, sw, pad_h, \
                                                 pad_w, ph_, pw_, include_pad, \
                                                 d2);                          \
                SAME_BITS(T, dx, d2, planes * plane,                           \
                          "bn_avg_pool2d_backward_" #SUF)                      \
                free(y2); free(at2);                                           \
            }                                                                  \
            free(c2); free(d2);                                                \
        }                                                                      \
        bn_im2col_##SUF(x, batch, channels, height, width, kh, kw, sh, sw,     \
                        pad_h, pad_w, oh, ow, cols);                           \
        bn_col2im_##SUF(cols, batch, channels, height, width, kh, kw, sh, sw,  \
                        pad_h, pad_w, oh, ow, dx);                             \
        if (pool) {                                                            \
            bn_max_pool2d_forward_##SUF(x, batch, channels, height, width, kh, \
                                        kw, sh, sw, pad_h, pad_w, ph_, pw_, y, \
                                        at);                                   \
            bn_max_pool2d_backward_##SUF(dy, at, batch, channels, height,      \
                                         width, ph_, pw_, dx);                 \
            bn_avg_pool2d_forward_##SUF(x, batch, channels, height, width, kh, \
                                        kw, sh, sw, pad_h, pad_w, ph_, pw_,    \
                                        include_pad, y);                       \
            bn_avg_pool2d_backward_##SUF(dy, batch, channels, height, width,   \
                                         kh, kw, sh, sw, pad_h, pad_w, ph_,    \
                                         pw_, include_pad, dx);                \
        }                                                                      \
        free(x); free(dx); free(cols); free(y); free(dy); free(at);            \
    }

/* ---- hostile geometries of the convolution and pooling kernels ---- */

__extension__ typedef __int128 i128;

/* a * b for a, b >= 0, or CAP when it is larger (no 128-bit overflow). */
#define CAP ((i128)1 << 100)
static i128 mul(i128 a, i128 b)
{
    return a != 0 && b > CAP / a ? CAP : a * b;
}

/* The header's conditions on batch, channels, height, width, out_h, out_w
 * (what bn_max_pool2d_backward checks), in 128 bits. */
static int planes_ok(const int64_t *g)
{
    const int64_t batch = g[0], channels = g[1], height = g[2], width = g[3];
    const int64_t out_h = g[10], out_w = g[11];
    if (batch < 0 || channels < 0 || height < 1 || width < 1 || out_h < 0 || out_w < 0)
        return 0;
    const i128 max = BN_POOL_MAX_VALUES, planes = mul(batch, channels);
    const i128 plane = mul(height, width), outs = mul(out_h, out_w);
    return plane <= max && outs <= max && mul(planes, plane) <= max &&
           mul(planes, outs) <= max;
}

static i128 floor_div128(i128 a, i128 b)
{
    const i128 q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

/* PyTorch's window count in 128 bits (no overflow for any int64 input). */
static i128 count128(i128 size, i128 kernel, i128 stride, i128 pad, int ceil_mode)
{
    i128 out = floor_div128(size + 2 * pad - kernel + (ceil_mode ? stride - 1 : 0), stride) + 1;
    if (ceil_mode && (out - 1) * stride >= size + pad)
        --out;
    return out;
}

/* bn_pool_output_size's documented result, from the 128-bit count. */
static int64_t expected_output_size(int64_t size, int64_t kernel, int64_t stride,
                                    int64_t pad, int ceil_mode)
{
    if (size < 0 || kernel < 1 || stride < 1 || pad < 0 ||
        (i128)size + 2 * (i128)pad + kernel + stride > INT64_MAX)
        return 0;
    return (int64_t)count128(size, kernel, stride, pad, ceil_mode);
}

/* Whether bn_pool_geometry_check must accept g (bnkernels.h's rules). */
static int geometry_ok(const int64_t *g)
{
    if (!planes_ok(g))
        return 0;
    for (int a = 0; a < 2; ++a) {
        const int64_t size = g[2 + a], kernel = g[4 + a], stride = g[6 + a];
        const int64_t pad = g[8 + a], out = g[10 + a];
        if (kernel < 1 || stride < 1 || pad < 0)
            return 0;
        if ((i128)size + 2 * (i128)pad + kernel + stride > INT64_MAX)
            return 0;
        i128 most = count128(size, kernel, stride, pad, 0);
        const i128 ceil_count = count128(size, kernel, stride, pad, 1);
        most = ceil_count > most ? ceil_count : most;
        if (out > (most > 0 ? most : 0))
            return 0;
    }
    const i128 window = mul(g[4], g[5]), cols = mul(window, mul(g[10], g[11]));
    return window <= BN_POOL_MAX_VALUES && cols <= BN_POOL_MAX_VALUES &&
           mul(mul(g[0], g[1]), cols) <= BN_POOL_MAX_VALUES;
}

#define SENTINEL 4

/* Every kernel on 4-value buffers filled with a byte pattern: on sizes the
 * check rejects, none may read past or write any of them. */
#define RUN_REJECTED(T, SUF)                                                   \
    {                                                                          \
        T x[SENTINEL], out[SENTINEL], before[SENTINEL];                        \
        int64_t at[SENTINEL], at_before[SENTINEL];                             \
        memset(x, 0x5a, sizeof x);                                             \
        memset(out, 0xa5, sizeof out);                                         \
        memset(at, 0x3c, sizeof at);                                           \
        memcpy(before, out, sizeof out);                                       \
        memcpy(at_before, at, sizeof at);                                      \
        bn_im2col_##SUF(x, G12, out);                                          \
        bn_col2im_##SUF(x, G12, out);                                          \
        bn_max_pool2d_forward_##SUF(x, G12, out, at);                          \
        bn_avg_pool2d_forward_##SUF(x, G12, include_pad, out);                 \
        bn_avg_pool2d_backward_##SUF(x, G12, include_pad, out);                \
        if (!planes_ok(g))                                                     \
            bn_max_pool2d_backward_##SUF(x, at, g[0], g[1], g[2], g[3], g[10], \
                                         g[11], out);                          \
        if (memcmp(out, before, sizeof out) || memcmp(at, at_before, sizeof at)) { \
            fprintf(stderr, "a " #SUF " kernel wrote on rejected sizes\n");    \
            abort();                                                           \
        }                                                                      \
    }

/* The kernels on exact buffers; im2col against the definition, element by
 * element (coordinates in 128 bits). */
#define RUN_ACCEPTED(T, SUF, FILL)                                             \
    {                                                                          \
        T *x = NEW(T, x_n), *dx = NEW(T, x_n), *cols = NEW(T, cols_n);        \
        T *y = NEW(T, y_n), *dy = NEW(T, y_n);                                 \
        int64_t *at = NEW(int64_t, y_n);                                       \
        FILL(in, x, x_n);                                                      \
        FILL(in, dy, y_n);                                                     \
        bn_im2col_##SUF(x, G12, cols);                                         \
        int64_t k = 0;                                                         \
        for (int64_t p = 0; p < g[0] * g[1] && cols_n > 0; ++p)                \
            for (int64_t i = 0; i < g[4]; ++i)                                 \
                for (int64_t j = 0; j < g[5]; ++j)                             \
                    for (int64_t oh = 0; oh < g[10]; ++oh)                     \
                        for (int64_t ow = 0; ow < g[11]; ++ow, ++k) {          \
                            const i128 h = (i128)oh * g[6] - g[8] + i;         \
                            const i128 w = (i128)ow * g[7] - g[9] + j;         \
                            T want = 0;                                        \
                            if (h >= 0 && h < g[2] && w >= 0 && w < g[3])      \
                                want = x[p * g[2] * g[3] + (int64_t)h * g[3] + (int64_t)w]; \
                            if (memcmp(&want, &cols[k], sizeof want)) {        \
                                fprintf(stderr, "im2col_" #SUF " differs from " \
                                        "its definition at %lld\n", (long long)k); \
                                abort();                                       \
                            }                                                  \
                        }                                                      \
        bn_col2im_##SUF(cols, G12, dx);                                        \
        bn_max_pool2d_forward_##SUF(x, G12, y, at);                            \
        bn_max_pool2d_backward_##SUF(dy, at, g[0], g[1], g[2], g[3], g[10],   \
                                     g[11], dx);                               \
        bn_avg_pool2d_forward_##SUF(x, G12, include_pad, y);                   \
        bn_avg_pool2d_backward_##SUF(dy, G12, include_pad, dx);                \
        free(x); free(dx); free(cols); free(y); free(dy); free(at);            \
    }

#define G12 g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9], g[10], g[11]

/* Buffers of at most this many values are allocated to run accepted sizes. */
#define MOST_VALUES ((i128)1 << 16)

static void run_geometry(Source *in, const int64_t *g, int ceil_mode, int include_pad)
{
    for (int a = 0; a < 2; ++a)
        for (int c = 0; c < 2; ++c) {
            const int64_t got = bn_pool_output_size(g[2 + a], g[4 + a], g[6 + a], g[8 + a], c);
            if (got != expected_output_size(g[2 + a], g[4 + a], g[6 + a], g[8 + a], c)) {
                fprintf(stderr, "bn_pool_output_size(%lld, %lld, %lld, %lld, %d) = %lld\n",
                        (long long)g[2 + a], (long long)g[4 + a], (long long)g[6 + a],
                        (long long)g[8 + a], c, (long long)got);
                abort();
            }
        }
    const int accepted = bn_pool_geometry_check(G12) == BN_GEOMETRY_OK;
    if (accepted != geometry_ok(g)) {
        fprintf(stderr, "bn_pool_geometry_check %s:", accepted ? "accepts" : "rejects");
        for (int i = 0; i < 12; ++i)
            fprintf(stderr, " %lld", (long long)g[i]);
        fprintf(stderr, "\n");
        abort();
    }
    (void)ceil_mode;
    if (!accepted) {
        RUN_REJECTED(float, f32)
        RUN_REJECTED(double, f64)
        return;
    }
    const i128 planes = mul(g[0], g[1]);
    const i128 x_values = mul(planes, mul(g[2], g[3]));
    const i128 y_values = mul(planes, mul(g[10], g[11]));
    const i128 cols_values = mul(y_values, mul(g[4], g[5]));
    if (x_values > MOST_VALUES || cols_values > MOST_VALUES)
        return;  /* accepted, but more than this harness allocates */
    const int64_t x_n = (int64_t)x_values, y_n = (int64_t)y_values;
    const int64_t cols_n = (int64_t)cols_values;
    RUN_ACCEPTED(float, f32, fill_f32)
    RUN_ACCEPTED(double, f64, fill_f64)
}

/* Extreme sizes: negative, around 2**31, 2**32, 2**60 and INT64_MAX. */
static const int64_t extremes[] = {
    INT64_MIN, -INT64_MAX, -((int64_t)1 << 32), -2, -1, 0,
    ((int64_t)1 << 31) - 1, (int64_t)1 << 31, (int64_t)1 << 32, ((int64_t)1 << 32) + 1,
    (int64_t)1 << 60, ((int64_t)1 << 61) + 1, (int64_t)1 << 62, INT64_MAX / 2,
    INT64_MAX / 3, INT64_MAX - 2, INT64_MAX - 1, INT64_MAX};

/* 12 sizes from the bytes: small valid ones (padding up to twice the
 * kernel's half, out_h and out_w the window counts or one off), then 0 to
 * 3 of them replaced by extremes. */
static void hostile_geometry(Source *in)
{
    int64_t g[12];
    g[0] = next_byte(in) % 4;           /* batch */
    g[1] = next_byte(in) % 4;           /* channels */
    for (int a = 0; a < 2; ++a) {
        g[2 + a] = 1 + next_byte(in) % 8;  /* height, width */
        g[4 + a] = 1 + next_byte(in) % 8;  /* kernel */
        g[6 + a] = 1 + next_byte(in) % 4;  /* stride */
        g[8 + a] = next_byte(in) % (g[4 + a] + 1);  /* pad */
    }
    const uint8_t flags = next_byte(in);
    const int ceil_mode = flags & 1, include_pad = (flags >> 1) & 1;
    for (int a = 0; a < 2; ++a) {
        const uint8_t b = next_byte(in);
        const int64_t count = bn_pool_output_size(g[2 + a], g[4 + a], g[6 + a], g[8 + a],
                                                  ceil_mode);
        g[10 + a] = b < 192 ? count : count + (b & 1 ? 1 : -1);
    }
    for (int n = next_byte(in) % 4; n > 0; --n) {
        const int at = next_byte(in) % 12;
        g[at] = extremes[next_byte(in) % (sizeof extremes / sizeof extremes[0])];
        if (at >= 2 && at < 10 && next_byte(in) & 1) {  /* and the counts follow */
            const int a = at % 2;
            g[10 + a] = bn_pool_output_size(g[2 + a], g[4 + a], g[6 + a], g[8 + a],
                                            ceil_mode);
        }
    }
    run_geometry(in, g, ceil_mode, include_pad);
}

/* "GEOM", 12 little-endian int64 and a flags byte: one hostile case. */
static void written_geometry(const uint8_t *data, size_t size)
{
    int64_t g[12];
    for (int i = 0; i < 12; ++i) {
        uint64_t v = 0;
        for (int b = 0; b < 8; ++b) {
            const size_t at = 4 + (size_t)i * 8 + (size_t)b;
            v |= (uint64_t)(at < size ? data[at] : 0) << (8 * b);
        }
        memcpy(&g[i], &v, sizeof v);
    }
    const uint8_t flags = size > 100 ? data[100] : 0;
    Source rest = {data, size, 0};
    run_geometry(&rest, g, flags & 1, (flags >> 1) & 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size >= 4 && memcmp(data, "GEOM", 4) == 0) {
        written_geometry(data, size);
        return 0;
    }
    Source source = {data, size, 0}, *in = &source;
    int64_t batch = next_byte(in) % 6, channels = next_byte(in) % 20;
    const uint8_t spatial_byte = next_byte(in);
    int64_t spatial = spatial_byte % 40;
    /* streaming stores forced on, or off (the byte's otherwise unused part) */
    const int stream = (spatial_byte / 40) & 1;
    const uint8_t flags = next_byte(in);
    if ((flags & 192) == 192) {  /* big enough for threads, NHWC strips and parts */
        channels = next_byte(in) % 80;
        spatial *= 8;
    }
    const int relu = flags & 1, no_weight = (flags >> 1) & 1;
    const int no_bias = (flags >> 2) & 1, eval = (flags >> 3) & 1;
    const int64_t total = batch * channels * spatial;
    bn_set_num_threads(1 + (flags >> 4) % 4);
    const int64_t stream_default = bn_get_stream_min_bytes();
    bn_set_stream_min_bytes(stream ? 0 : -1);
    RUN_FAMILY(float, f32, fill_f32)
    RUN_FAMILY(double, f64, fill_f64)
    bn_set_stream_min_bytes(stream_default);

    /* merge any number of shards' moments, some empty */
    const int64_t parts = next_byte(in) % 5;
    double *counts = NEW(double, parts), *means = NEW(double, parts * channels);
    double *m2s = NEW(double, parts * channels), *m = NEW(double, channels);
    double *q = NEW(double, channels);
    for (int64_t p = 0; p < parts; ++p)
        counts[p] = (double)(next_byte(in) % 4);
    fill_f64(in, means, parts * channels);
    fill_f64(in, m2s, parts * channels);
    bn_merge_moments(parts, channels, counts, means, m2s, m, q);
    free(counts); free(means); free(m2s); free(m); free(q);

    /* convolution and pooling: a plane of up to 12 x 12, windows of up to 7 */
    const int64_t height = 1 + next_byte(in) % 12, width = 1 + next_byte(in) % 12;
    const int64_t kh = 1 + next_byte(in) % 7, kw = 1 + next_byte(in) % 7;
    const int64_t sh = 1 + next_byte(in) % 3, sw = 1 + next_byte(in) % 3;
    const int64_t pad_h = next_byte(in) % (kh / 2 + 1), pad_w = next_byte(in) % (kw / 2 + 1);
    const uint8_t pool_flags = next_byte(in);
    const int ceil_mode = pool_flags & 1, include_pad = (pool_flags >> 1) & 1;
    const int64_t oh = bn_pool_output_size(height, kh, sh, pad_h, 0);
    const int64_t ow = bn_pool_output_size(width, kw, sw, pad_w, 0);
    const int64_t ph_ = bn_pool_output_size(height, kh, sh, pad_h, ceil_mode);
    const int64_t pw_ = bn_pool_output_size(width, kw, sw, pad_w, ceil_mode);
    const int pool = ph_ >= 1 && pw_ >= 1;
    if (oh >= 1 && ow >= 1) {
        RUN_CONV_POOL(float, f32, fill_f32)
        RUN_CONV_POOL(double, f64, fill_f64)
    }
    hostile_geometry(in);
    bn_set_num_threads(0);
    return 0;
}

#ifndef BN_LIBFUZZER
/* argv[1]: seconds of random inputs; argv[2...]: input files to replay. */
int main(int argc, char **argv)
{
    const double seconds = argc > 1 ? atof(argv[1]) : 5.0;
    long runs = 0;
    for (int i = 2; i < argc; ++i) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) {
            perror(argv[i]);
            return 1;
        }
        uint8_t buffer[1 << 16];
        const size_t n = fread(buffer, 1, sizeof buffer, f);
        fclose(f);
        LLVMFuzzerTestOneInput(buffer, n);
        ++runs;
    }
    srand((unsigned)time(NULL));
    const clock_t start = clock();
    uint8_t buffer[4096];
    while ((double)(clock() - start) / CLOCKS_PER_SEC < seconds) {
        const size_t n = (size_t)(rand() % (int)sizeof buffer);
        for (size_t i = 0; i < n; ++i)
            buffer[i] = (uint8_t)rand();
        LLVMFuzzerTestOneInput(buffer, n);
        ++runs;
    }
    printf("fuzz_kernels: %ld inputs, no report\n", runs);
    return 0;
}
#endif
