/*
 * Times the standard-numerics kernels through bnkernels.h alone, for one
 * shape, on one thread; benchmarks/simd_levels.py builds it for each SIMD
 * level and compares. Prints one line per kernel and dtype,
 *   <kernel> <dtype> <best milliseconds of reps>
 * then one line per dtype, "hash <dtype> <hex>", a hash of every output's
 * bytes (the same in every build: no result depends on the SIMD width).
 *
 *   time_standard BATCH CHANNELS SPATIAL REPS [STREAM]
 * STREAM 1: streaming stores as the library's default has them (outputs of
 * 16 MiB and more, on CPUs with AVX-512F); without it, none.
 */
#define _POSIX_C_SOURCE 199309L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bnkernels.h"

static double seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* FNV-1a over the bytes of p[0, bytes), folded into h */
static uint64_t fold(uint64_t h, const void *p, size_t bytes)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < bytes; ++i)
        h = (h ^ c[i]) * 1099511628211ULL;
    return h;
}

static void *buffer(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}

/* TIME(name, dtype, call): the best of reps runs of call */
#define TIME(name, dtype, call)                                                \
    {                                                                          \
        double best = 1e30;                                                    \
        for (int r_ = 0; r_ < reps; ++r_) {                                    \
            const double t0 = seconds();                                       \
            call;                                                              \
            const double t = seconds() - t0;                                   \
            best = t < best ? t : best;                                        \
        }                                                                      \
        printf("%s %s %.4f\n", name, dtype, best * 1e3);                       \
    }

/* Every standard kernel of type T (suffix SUF), NCHW then NHWC, on
 * deterministic inputs; the outputs' hash at the end. */
#define TIME_ALL(T, SUF)                                                       \
    {                                                                          \
        const char *dt = #SUF;                                                 \
        T *x = buffer(n * sizeof(T)), *dy = buffer(n * sizeof(T));             \
        T *y = buffer(n * sizeof(T)), *w = buffer(c * sizeof(T));              \
        T *b = buffer(c * sizeof(T));                                          \
        double *mean = buffer(c * 8), *var = buffer(c * 8), *inv = buffer(c * 8); \
        double *s1 = buffer(c * 8), *s2 = buffer(c * 8);                       \
        uint64_t state = 12345, h = 1469598103934665603ULL;                    \
        for (size_t i = 0; i < n; ++i) {                                       \
            state = state * 6364136223846793005ULL + 1442695040888963407ULL;   \
            x[i] = (T)((double)(state >> 11) * 0x1p-53 * 2. - 0.5);            \
            dy[i] = (T)((double)(state >> 40) * 0x1p-24 - 0.5);                \
        }                                                                      \
        for (size_t j = 0; j < c; ++j) {                                       \
            w[j] = (T)(1. + 0.01 * (double)j);                                 \
            b[j] = (T)(0.1 * (double)j);                                       \
        }                                                                      \
        TIME("stats", dt, bn_stats_##SUF(x, N, C, S, mean, var));              \
        bn_invstd(C, var, 1e-5, inv);                                          \
        TIME("normalize_affine", dt,                                           \
             bn_normalize_affine_##SUF(x, mean, inv, w, b, N, C, S, 0, y));    \
        TIME("backward_reduce", dt,                                            \
             bn_backward_reduce_##SUF(dy, x, mean, inv, w, b, 0, N, C, S, s1, s2)); \
        TIME("backward_dx", dt,                                                \
             bn_backward_dx_##SUF(dy, x, mean, inv, w, b, 0, s1, s2, N, C, S, y)); \
        h = fold(fold(fold(fold(fold(h, mean, c * 8), var, c * 8), s1, c * 8), \
                      s2, c * 8), y, n * sizeof(T));                           \
        TIME("stats_nhwc", dt, bn_stats_nhwc_##SUF(x, N, C, S, mean, var));    \
        bn_invstd(C, var, 1e-5, inv);                                          \
        TIME("normalize_affine_nhwc", dt,                                      \
             bn_normalize_affine_nhwc_##SUF(x, mean, inv, w, b, N, C, S, 0, y)); \
        TIME("backward_reduce_nhwc", dt,                                       \
             bn_backward_reduce_nhwc_##SUF(dy, x, mean, inv, w, b, 0, N, C, S, s1, s2)); \
        TIME("backward_dx_nhwc", dt,                                           \
             bn_backward_dx_nhwc_##SUF(dy, x, mean, inv, w, b, 0, s1, s2, N, C, S, y)); \
        h = fold(fold(fold(fold(fold(h, mean, c * 8), var, c * 8), s1, c * 8), \
                      s2, c * 8), y, n * sizeof(T));                           \
        printf("hash %s %016llx\n", dt, (unsigned long long)h);                \
        free(x); free(dy); free(y); free(w); free(b);                          \
        free(mean); free(var); free(inv); free(s1); free(s2);                  \
    }

int main(int argc, char **argv)
{
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: %s BATCH CHANNELS SPATIAL REPS [STREAM]\n", argv[0]);
        return 2;
    }
    const int64_t N = atoll(argv[1]), C = atoll(argv[2]), S = atoll(argv[3]);
    const int reps = atoi(argv[4]);
    if (N < 1 || C < 1 || S < 1 || reps < 1) {
        fprintf(stderr, "sizes and REPS must be positive\n");
        return 2;
    }
    const size_t n = (size_t)(N * C * S), c = (size_t)C;
#ifdef BN_STREAM_DEFAULT_MIN_BYTES
    /* the SIMD level's own stores: no streaming (on by default for large
     * outputs since that macro exists; off before) */
    bn_set_stream_min_bytes(argc == 6 && atoi(argv[5]) ? BN_STREAM_DEFAULT_MIN_BYTES : -1);
#endif
    TIME_ALL(float, f32)
    TIME_ALL(double, f64)
    return 0;
}
