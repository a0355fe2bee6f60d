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
 * With clang's libFuzzer (coverage-guided; add -fopenmp where libomp is
 * installed; 47,000 inputs in 30 s and no report with Debian's clang 14):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -DBN_LIBFUZZER -Icsrc \
 *       csrc/*.c tests/fuzz/fuzz_kernels.c -lm -o fuzz_kernels
 *   ./fuzz_kernels -max_total_time=600 tests/fuzz/corpus
 * With GCC (random inputs for a bounded time, then every file given):
 *   gcc -std=c11 -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=undefined \
 *       -fopenmp -Icsrc csrc/*.c tests/fuzz/fuzz_kernels.c -lm -o fuzz_kernels
 *   ./fuzz_kernels 20 tests/fuzz/corpus/[a-z]*        # 20 seconds of random inputs
 * An input that crashes goes into tests/fuzz/corpus/ (a regression input).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bnkernels.h"

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
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
