/*
 * Hashes of every public kernel's output, for checking that a change to
 * csrc/ keeps the bits: build it on two versions of csrc/ and diff the
 * outputs (docs/design/kernels.md, "Same bits").
 *
 *   cc -std=c11 -O3 -ffp-contract=off -fopenmp -Icsrc csrc/[a-z]*.c \
 *       csrc/ref/[a-z]*.c csrc/fast/[a-z]*.c tests/c/kernel_hashes.c -lm -o kernel_hashes
 *   ./kernel_hashes > hashes.txt
 *
 * Each line: the kernel, dtype, shape (batch, channels, spatial), flags,
 * thread count and output offset (in elements, from a 64-byte aligned
 * buffer), then an FNV-1a hash of the output bytes. The shapes include a
 * tiny one, odd ones, and outputs of 16 MiB and more (streaming stores, where
 * the CPU has them); each runs on 1 and 2 threads when built with OpenMP.
 */
#define _POSIX_C_SOURCE 200112L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bnkernels.h"

static uint64_t fnv(const void *p, size_t bytes, uint64_t h)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < bytes; ++i) {
        h ^= b[i];
        h *= 1099511628211ull;
    }
    return h;
}
#define FNV0 14695981039346656037ull

static uint64_t rng_state;
static double uniform(void) /* [0, 1) */
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng_state >> 11) * (1.0 / 9007199254740992.0);
}

static void *aligned(size_t bytes)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes + 256)) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    memset(p, 0, bytes + 256);
    return p;
}

static const char *shape_name;
static int threads_now, offset_now;

static void report(const char *kernel, const char *dtype, const char *flags,
                   const void *out, size_t bytes)
{
    printf("%-36s %s %-16s %-10s t%d o%d %016llx\n", kernel, dtype, shape_name,
           flags, threads_now, offset_now,
           (unsigned long long)fnv(out, bytes, FNV0));
}

/* One template for both dtypes. */
#define DEFINE_RUN(T, SUF)                                                     \
static void run_##SUF(int64_t B, int64_t C, int64_t S)                         \
{                                                                              \
    const int64_t n = B * C * S;                                               \
    const size_t nb = (size_t)n * sizeof(T), cb = (size_t)C * sizeof(T);       \
    const int off = offset_now;                                                \
    T *x = aligned(nb), *dy = aligned(nb), *x2 = aligned(nb);                  \
    T *out_buf = aligned(nb + 64 * sizeof(T)), *out = out_buf + off;           \
    T *w = aligned(cb), *bias = aligned(cb), *m = aligned(cb);                 \
    T *v = aligned(cb), *md = aligned(cb), *vd = aligned(cb);                  \
    T *bu = aligned(cb), *su = aligned(cb), *roll = aligned(cb);               \
    double *dm = aligned(C * 8), *dv = aligned(C * 8), *di = aligned(C * 8);   \
    double *s1 = aligned(C * 8), *s2 = aligned(C * 8);                         \
    rng_state = 12345 + (uint64_t)n;                                           \
    for (int64_t i = 0; i < n; ++i) {                                          \
        x[i] = (T)(3. + 2. * uniform() - (double)(i % 7) * 0.1);               \
        dy[i] = (T)(uniform() - 0.45);                                         \
    }                                                                          \
    for (int64_t c = 0; c < C; ++c) {                                          \
        w[c] = (T)(0.5 + uniform());                                           \
        bias[c] = (T)(uniform() - 0.5);                                        \
    }                                                                          \
    /* Darknet-exact */                                                        \
    bn_dk_mean_##SUF(x, B, C, S, m);                                           \
    report("bn_dk_mean", #SUF, "-", m, cb);                                    \
    bn_dk_variance_##SUF(x, m, B, C, S, v);                                    \
    report("bn_dk_variance", #SUF, "-", v, cb);                                \
    memcpy(roll, w, cb);                                                       \
    bn_dk_rolling_update_##SUF(C, (T).99, (T).01, v, roll);                    \
    report("bn_dk_rolling_update", #SUF, "-", roll, cb);                       \
    for (int inside = 0; inside < 2; ++inside) {                               \
        const char *fl = inside ? "inside" : "outside";                        \
        const T eps = inside ? (T).00001 : (T).000001;                         \
        if (inside)                                                            \
            bn_dk_normalize_eps_inside_##SUF(x, m, v, B, C, S, eps, out);      \
        else                                                                   \
            bn_dk_normalize_eps_outside_##SUF(x, m, v, B, C, S, eps, out);     \
        report("bn_dk_normalize", #SUF, fl, out, nb);                          \
        memcpy(x2, out, nb); /* x_norm */                                      \
        bn_dk_scale_bias_##SUF(x2, w, B, C, S, out);                           \
        report("bn_dk_scale_bias", #SUF, fl, out, nb);                         \
        bn_dk_add_bias_##SUF(x2, bias, B, C, S, out);                          \
        report("bn_dk_add_bias", #SUF, fl, out, nb);                           \
        bn_dk_scale_add_bias_##SUF(x2, w, bias, B, C, S, out);                 \
        report("bn_dk_scale_add_bias", #SUF, fl, out, nb);                     \
        bn_dk_inference_##SUF(x, m, v, w, bias, B, C, S, eps, inside, out);    \
        report("bn_dk_inference", #SUF, fl, out, nb);                          \
        memset(bu, 0, cb);                                                     \
        memset(su, 0, cb);                                                     \
        bn_dk_backward_bias_##SUF(dy, B, C, S, bu);                            \
        report("bn_dk_backward_bias", #SUF, fl, bu, cb);                       \
        bn_dk_backward_scale_##SUF(x2, dy, B, C, S, su);                       \
        report("bn_dk_backward_scale", #SUF, fl, su, cb);                      \
        bn_dk_mean_delta_##SUF(dy, v, B, C, S, eps, md);                       \
        report("bn_dk_mean_delta", #SUF, fl, md, cb);                          \
        bn_dk_variance_delta_##SUF(x, dy, m, v, B, C, S, eps, vd);             \
        report("bn_dk_variance_delta", #SUF, fl, vd, cb);                      \
        if (inside)                                                            \
            bn_dk_normalize_delta_eps_inside_##SUF(x, m, v, md, vd, dy, B, C,  \
                                                   S, eps, out);               \
        else                                                                   \
            bn_dk_normalize_delta_eps_outside_##SUF(x, m, v, md, vd, dy, B, C, \
                                                    S, eps, out);              \
        report("bn_dk_normalize_delta", #SUF, fl, out, nb);                    \
        memset(bu, 0, cb);                                                     \
        memset(su, 0, cb);                                                     \
        bn_dk_backward_sums_##SUF(x, x2, dy, m, v, w, B, C, S, eps, bu, su,    \
                                  md, vd);                                     \
        report("bn_dk_backward_sums.bias", #SUF, fl, bu, cb);                  \
        report("bn_dk_backward_sums.scale", #SUF, fl, su, cb);                 \
        report("bn_dk_backward_sums.mean_delta", #SUF, fl, md, cb);            \
        report("bn_dk_backward_sums.variance_delta", #SUF, fl, vd, cb);        \
        if (inside)                                                            \
            bn_dk_backward_dx_eps_inside_##SUF(x, m, v, md, vd, dy, w, B, C,   \
                                               S, eps, out);                   \
        else                                                                   \
            bn_dk_backward_dx_eps_outside_##SUF(x, m, v, md, vd, dy, w, B, C,  \
                                                S, eps, out);                  \
        report("bn_dk_backward_dx", #SUF, fl, out, nb);                        \
        /* the -Ofast builds: 4 lanes, then 8 (_avx) */                       \
        for (int avx = 0; avx < 2; ++avx) {                                    \
            char ofl[32];                                                      \
            snprintf(ofl, sizeof ofl, "%s%s", fl, avx ? " avx" : "");          \
            memset(bu, 0, cb);                                                 \
            memset(su, 0, cb);                                                 \
            (avx ? bn_dk_ofast_avx_backward_bias_##SUF                         \
                 : bn_dk_ofast_backward_bias_##SUF)(dy, B, C, S, bu);          \
            report("bn_dk_ofast_backward_bias", #SUF, ofl, bu, cb);            \
            (avx ? bn_dk_ofast_avx_backward_scale_##SUF                        \
                 : bn_dk_ofast_backward_scale_##SUF)(x2, dy, B, C, S, su);     \
            report("bn_dk_ofast_backward_scale", #SUF, ofl, su, cb);           \
            memset(bu, 0, cb);                                                 \
            memset(su, 0, cb);                                                 \
            (avx ? bn_dk_ofast_avx_backward_sums_##SUF                         \
                 : bn_dk_ofast_backward_sums_##SUF)(x, x2, dy, m, v, w, B, C,  \
                                                    S, eps, bu, su, md, vd);   \
            report("bn_dk_ofast_backward_sums.bias", #SUF, ofl, bu, cb);       \
            report("bn_dk_ofast_backward_sums.scale", #SUF, ofl, su, cb);      \
            report("bn_dk_ofast_backward_sums.mean_delta", #SUF, ofl, md, cb); \
            report("bn_dk_ofast_backward_sums.variance_delta", #SUF, ofl, vd,  \
                   cb);                                                        \
        }                                                                      \
        if (inside)                                                            \
            bn_dk_ofast_normalize_delta_eps_inside_##SUF(x, m, v, md, vd, dy,  \
                                                         B, C, S, eps, out);   \
        else                                                                   \
            bn_dk_ofast_normalize_delta_eps_outside_##SUF(x, m, v, md, vd, dy, \
                                                          B, C, S, eps, out);  \
        report("bn_dk_ofast_normalize_delta", #SUF, fl, out, nb);              \
        if (inside)                                                            \
            bn_dk_ofast_backward_dx_eps_inside_##SUF(x, m, v, md, vd, dy, w,   \
                                                     B, C, S, eps, out);       \
        else                                                                   \
            bn_dk_ofast_backward_dx_eps_outside_##SUF(x, m, v, md, vd, dy, w,  \
                                                      B, C, S, eps, out);      \
        report("bn_dk_ofast_backward_dx", #SUF, fl, out, nb);                  \
    }                                                                          \
    /* standard, NCHW and NHWC (the same buffers read as either layout) */     \
    for (int nhwc = 0; nhwc < 2; ++nhwc) {                                     \
        const char *lay = nhwc ? "_nhwc" : "";                                 \
        char name[64];                                                         \
        (nhwc ? bn_stats_nhwc_##SUF : bn_stats_##SUF)(x, B, C, S, dm, dv);     \
        snprintf(name, sizeof name, "bn_stats%s.mean", lay);                   \
        report(name, #SUF, "-", dm, (size_t)C * 8);                            \
        snprintf(name, sizeof name, "bn_stats%s.var", lay);                    \
        report(name, #SUF, "-", dv, (size_t)C * 8);                            \
        bn_invstd(C, dv, 1e-5, di);                                            \
        report("bn_invstd", #SUF, lay, di, (size_t)C * 8);                     \
        memcpy(roll, w, cb);                                                   \
        memcpy(x2, bias, cb);                                                  \
        if (B * S > 1) {                                                       \
            bn_rolling_update_##SUF(C, 0.1, B * S, 1, dm, dv, roll, x2);       \
            report("bn_rolling_update.mean", #SUF, lay, roll, cb);             \
            report("bn_rolling_update.var", #SUF, lay, x2, cb);                \
        }                                                                      \
        for (int k = 0; k < 8; ++k) {                                          \
            const int relu = k & 1, nullwb = (k >> 1) & 1, eval = (k >> 2) & 1;\
            const T *wk = nullwb ? NULL : w, *bk = nullwb ? NULL : bias;       \
            char flags[32];                                                    \
            snprintf(flags, sizeof flags, "r%d n%d e%d", relu, nullwb, eval);  \
            if (!eval) {                                                       \
                (nhwc ? bn_normalize_affine_nhwc_##SUF                         \
                      : bn_normalize_affine_##SUF)(x, dm, di, wk, bk, B, C, S, \
                                                   relu, out);                 \
                snprintf(name, sizeof name, "bn_normalize_affine%s", lay);     \
                report(name, #SUF, flags, out, nb);                            \
                (nhwc ? bn_backward_reduce_nhwc_##SUF                          \
                      : bn_backward_reduce_##SUF)(dy, x, dm, di, wk, bk, relu, \
                                                  B, C, S, s1, s2);            \
                snprintf(name, sizeof name, "bn_backward_reduce%s.dy", lay);   \
                report(name, #SUF, flags, s1, (size_t)C * 8);                  \
                snprintf(name, sizeof name, "bn_backward_reduce%s.dyx", lay);  \
                report(name, #SUF, flags, s2, (size_t)C * 8);                  \
            }                                                                  \
            (nhwc ? bn_backward_dx_nhwc_##SUF : bn_backward_dx_##SUF)(         \
                dy, x, dm, di, wk, bk, relu, eval ? NULL : s1,                 \
                eval ? NULL : s2, B, C, S, out);                               \
            snprintf(name, sizeof name, "bn_backward_dx%s", lay);              \
            report(name, #SUF, flags, out, nb);                                \
        }                                                                      \
    }                                                                          \
    {                                                                          \
        double counts[3] = {(double)B, 0., (double)(B * S)};                   \
        double *means = aligned(3 * C * 8), *m2s = aligned(3 * C * 8);         \
        for (int64_t i = 0; i < 3 * C; ++i) {                                  \
            means[i] = (double)x[i % n];                                       \
            m2s[i] = (double)w[i % C];                                         \
        }                                                                      \
        bn_merge_moments(3, C, counts, means, m2s, dm, dv);                    \
        report("bn_merge_moments.mean", #SUF, "-", dm, (size_t)C * 8);         \
        report("bn_merge_moments.m2", #SUF, "-", dv, (size_t)C * 8);           \
        free(means);                                                           \
        free(m2s);                                                             \
    }                                                                          \
    /* ReLU backward: dy's mixed signs (and a NaN, a -0) as its x */           \
    {                                                                          \
        memcpy(x2, dy, nb);                                                    \
        x2[0] = (T)NAN;                                                        \
        x2[n - 1] = (T)-0.0;                                                   \
        bn_relu_backward_##SUF(x, x2, n, out);                                 \
        report("bn_relu_backward", #SUF, "-", out, nb);                        \
    }                                                                          \
    /* convolution and pooling: a plane of S values as (h, w) */               \
    {                                                                          \
        int64_t H = 1, W = S;                                                  \
        for (int64_t h = (int64_t)sqrt((double)S); h > 1; --h)                 \
            if (S % h == 0) { H = h; W = S / h; break; }                       \
        static const int64_t g[][4] = {{1, 1, 0, 0}, {3, 1, 1, 0},             \
                                       {2, 2, 0, 0}, {3, 2, 1, 1},             \
                                       {3, 2, 0, 1}, {3, 2, 0, 0}};            \
        for (int gi = 0; gi < 6; ++gi) {                                       \
            const int64_t k = g[gi][0], st = g[gi][1], pad = g[gi][2];         \
            const int ceil = (int)g[gi][3];                                    \
            if (k > H + 2 * pad || k > W + 2 * pad)                            \
                continue;                                                      \
            const int64_t oh = bn_pool_output_size(H, k, st, pad, ceil);       \
            const int64_t ow = bn_pool_output_size(W, k, st, pad, ceil);       \
            if (bn_pool_geometry_check(B, C, H, W, k, k, st, st, pad, pad, oh, \
                                       ow) != BN_GEOMETRY_OK)                  \
                continue;                                                      \
            char flags[32];                                                    \
            snprintf(flags, sizeof flags, "k%d s%d p%d c%d", (int)k, (int)st,  \
                     (int)pad, ceil);                                          \
            const int64_t po = B * C * oh * ow, co = po * k * k;               \
            if (co > (int64_t)1 << 26)                                         \
                continue;                                                      \
            T *cols = aligned((size_t)co * sizeof(T));                         \
            T *pooled = aligned((size_t)po * sizeof(T));                       \
            int64_t *idx = aligned((size_t)po * 8);                            \
            bn_im2col_##SUF(x, B, C, H, W, k, k, st, st, pad, pad, oh, ow,     \
                            cols);                                             \
            report("bn_im2col", #SUF, flags, cols, (size_t)co * sizeof(T));    \
            bn_col2im_##SUF(cols, B, C, H, W, k, k, st, st, pad, pad, oh, ow,  \
                            out);                                              \
            report("bn_col2im", #SUF, flags, out, nb);                         \
            bn_max_pool2d_forward_##SUF(x, B, C, H, W, k, k, st, st, pad, pad, \
                                        oh, ow, pooled, idx);                  \
            report("bn_max_pool2d_forward", #SUF, flags, pooled,               \
                   (size_t)po * sizeof(T));                                    \
            report("bn_max_pool2d_forward.idx", #SUF, flags, idx,              \
                   (size_t)po * 8);                                            \
            bn_max_pool2d_backward_##SUF(pooled, idx, B, C, H, W, oh, ow,      \
                                         out);                                 \
            report("bn_max_pool2d_backward", #SUF, flags, out, nb);            \
            for (int inc = 0; inc < 2; ++inc) {                                \
                bn_avg_pool2d_forward_##SUF(x, B, C, H, W, k, k, st, st, pad,  \
                                            pad, oh, ow, inc, pooled);         \
                report(inc ? "bn_avg_pool2d_forward.inc"                       \
                           : "bn_avg_pool2d_forward",                          \
                       #SUF, flags, pooled, (size_t)po * sizeof(T));           \
                bn_avg_pool2d_backward_##SUF(pooled, B, C, H, W, k, k, st, st, \
                                             pad, pad, oh, ow, inc, out);      \
                report(inc ? "bn_avg_pool2d_backward.inc"                      \
                           : "bn_avg_pool2d_backward",                         \
                       #SUF, flags, out, nb);                                  \
            }                                                                  \
            free(cols);                                                        \
            free(pooled);                                                      \
            free(idx);                                                         \
        }                                                                      \
        /* global average pooling: one window, the whole plane */             \
        T *pooled = aligned((size_t)(B * C) * sizeof(T));                      \
        for (int inc = 0; inc < 2; ++inc) {                                    \
            bn_avg_pool2d_forward_##SUF(x, B, C, H, W, H, W, 1, 1, 0, 0, 1, 1, \
                                        inc, pooled);                          \
            report("bn_avg_pool2d_forward.global", #SUF, inc ? "inc" : "-",    \
                   pooled, (size_t)(B * C) * sizeof(T));                       \
        }                                                                      \
        free(pooled);                                                          \
    }                                                                          \
    free(x); free(dy); free(x2); free(out_buf); free(w); free(bias);           \
    free(m); free(v); free(md); free(vd); free(bu); free(su); free(roll);      \
    free(dm); free(dv); free(di); free(s1); free(s2);                          \
}

DEFINE_RUN(float, f32)
DEFINE_RUN(double, f64)

int main(int argc, char **argv)
{
    /* batch, channels, spatial; the last ones write 16 MiB and more */
    static const int64_t shapes[][3] = {
        {1, 1, 1},    {2, 3, 5},     {3, 5, 7},      {2, 17, 33},
        {4, 70, 129}, {5, 9, 300},   {1, 130, 1},    {8, 8, 16},
        {16, 64, 49}, {2, 200, 64},  {3, 20, 23},    {2, 40, 300},
        {2, 16, 100}, {8, 64, 9216}, {4, 1024, 1200}, {8, 2100, 256},
        {100, 2500, 17},
    };
    const int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    const int nshapes = (int)(sizeof shapes / sizeof shapes[0]) - (quick ? 4 : 0);
    const int max_threads = bn_openmp_enabled() ? 2 : 1;
    bn_set_stream_min_bytes(BN_STREAM_DEFAULT_MIN_BYTES);
    printf("# stream available: %d, openmp: %d\n", bn_stream_available(),
           bn_openmp_enabled());
    for (int i = 0; i < nshapes; ++i) {
        char shape[64];
        snprintf(shape, sizeof shape, "%lldx%lldx%lld", (long long)shapes[i][0],
                 (long long)shapes[i][1], (long long)shapes[i][2]);
        shape_name = shape;
        const int big = shapes[i][0] * shapes[i][1] * shapes[i][2] > 1 << 20;
        for (int t = 1; t <= max_threads; ++t)
            for (int o = 0; o < (big ? 3 : 1); ++o) {
                static const int offsets[] = {0, 1, 4};
                threads_now = t;
                offset_now = offsets[o];
                bn_set_num_threads(t);
                run_f32(shapes[i][0], shapes[i][1], shapes[i][2]);
                run_f64(shapes[i][0], shapes[i][1], shapes[i][2]);
            }
    }
    return 0;
}
