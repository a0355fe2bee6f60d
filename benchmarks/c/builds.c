/*
 * Times the four standard-numerics kernels (bn_stats, bn_normalize_affine,
 * bn_backward_reduce, bn_backward_dx, NCHW or NHWC) of two or more builds
 * of csrc/ side by side, one thread: each round calls every kernel of every
 * build in turn, so that a busy spell slows them alike. Prints one line per
 * kernel: each build's best time (microseconds) and the first build's time
 * over the second's. x and dy start XOFF bytes past a 64-byte line (the
 * environment variable; 0 by default), the output on a line.
 *
 *   cc -O3 -std=c11 -ffp-contract=off -fPIC -shared -Icsrc \
 *      csrc/[a-z]*.c csrc/ref/[a-z]*.c csrc/fast/[a-z]*.c -lm -o libA.so
 *   cc -O2 benchmarks/c/builds.c -ldl -o builds
 *   [XOFF=16] builds f32|f64 nchw|nhwc BATCH CHANNELS SPATIAL ROUNDS LIB LIB...
 */
#define _POSIX_C_SOURCE 199309L
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "timing.h"

#define MAX_LIBS 4
#define KERNELS 4
#define CALLS 10

typedef void (*stats_fn)(const void *, int64_t, int64_t, int64_t, double *,
                         double *);
typedef void (*normalize_fn)(const void *, const double *, const double *,
                             const void *, const void *, int64_t, int64_t,
                             int64_t, int, void *);
typedef void (*reduce_fn)(const void *, const void *, const double *,
                          const double *, const void *, const void *, int,
                          int64_t, int64_t, int64_t, double *, double *);
typedef void (*dx_fn)(const void *, const void *, const double *,
                      const double *, const void *, const void *, int,
                      const double *, const double *, int64_t, int64_t,
                      int64_t, void *);

static const char *const kernel_names[KERNELS] = {
    "bn_stats", "bn_normalize_affine", "bn_backward_reduce", "bn_backward_dx"};

int main(int argc, char **argv)
{
    if (argc < 9) {
        fprintf(stderr, "usage: %s f32|f64 nchw|nhwc BATCH CHANNELS SPATIAL "
                "ROUNDS LIB LIB...\n", argv[0]);
        return 2;
    }
    const char *suffix = argv[1];
    const int size = strcmp(suffix, "f64") == 0 ? 8 : 4;
    const int nhwc = strcmp(argv[2], "nhwc") == 0;
    const int64_t batch = atoll(argv[3]), channels = atoll(argv[4]);
    const int64_t spatial = atoll(argv[5]);
    const int rounds = atoi(argv[6]), libs = argc - 7;
    const int offset = getenv("XOFF") ? atoi(getenv("XOFF")) : 0;
    if (libs > MAX_LIBS || offset < 0 || offset >= 64) {
        fprintf(stderr, "at most %d libraries, XOFF in [0, 64)\n", MAX_LIBS);
        return 2;
    }
    void *kernel[MAX_LIBS][KERNELS];
    for (int l = 0; l < libs; ++l) {
        void *lib = dlopen(argv[7 + l], RTLD_NOW | RTLD_LOCAL);
        if (!lib) {
            fprintf(stderr, "%s\n", dlerror());
            return 1;
        }
        for (int k = 0; k < KERNELS; ++k) {
            char name[64];
            snprintf(name, sizeof name, "%s%s_%s", kernel_names[k],
                     nhwc ? "_nhwc" : "", suffix);
            kernel[l][k] = dlsym(lib, name);
            if (!kernel[l][k]) {
                fprintf(stderr, "%s: no %s\n", argv[7 + l], name);
                return 1;
            }
        }
    }

    const int64_t n = batch * channels * spatial;
    const size_t bytes = (size_t)n * (size_t)size;
    char *x = boundary_buffer(64, bytes) + offset, *dy = boundary_buffer(64, bytes) + offset;
    char *out = boundary_buffer(64, bytes);
    fill(x, size, n, -0.5, 97, 0.01);
    fill(dy, size, n, -0.3, 31, 0.02);
    double *mean = malloc(6 * (size_t)channels * sizeof(double));
    double *invstd = mean + channels, *var = invstd + channels;
    double *sum_dy = var + channels, *sum_dy_xhat = sum_dy + channels;
    double *stats_mean = sum_dy_xhat + channels;
    char *weight = malloc(2 * (size_t)channels * 8), *bias = weight + channels * 8;
    for (int64_t c = 0; c < channels; ++c) {
        mean[c] = 0.1;
        invstd[c] = 1.3;
    }
    fill(weight, size, channels, 0.5, 7, 0.25);
    fill(bias, size, channels, -0.2, 5, 0.1);

    static double best[MAX_LIBS][KERNELS];
    for (int l = 0; l < libs; ++l)
        for (int k = 0; k < KERNELS; ++k)
            best[l][k] = 1e30;
    for (int r = 0; r < rounds; ++r)
        for (int k = 0; k < KERNELS; ++k)
            for (int l = 0; l < libs; ++l)
                for (int i = 0; i < CALLS; ++i) {
                    const double t0 = seconds();
                    if (k == 0)
                        ((stats_fn)kernel[l][k])(x, batch, channels, spatial,
                                                 stats_mean, var);
                    else if (k == 1)
                        ((normalize_fn)kernel[l][k])(x, mean, invstd, weight, bias,
                                                     batch, channels, spatial, 0,
                                                     out);
                    else if (k == 2)
                        ((reduce_fn)kernel[l][k])(dy, x, mean, invstd, weight, bias,
                                                  0, batch, channels, spatial,
                                                  sum_dy, sum_dy_xhat);
                    else
                        ((dx_fn)kernel[l][k])(dy, x, mean, invstd, weight, bias, 0,
                                              sum_dy, sum_dy_xhat, batch, channels,
                                              spatial, out);
                    const double t = seconds() - t0;
                    if (t < best[l][k])
                        best[l][k] = t;
                }

    for (int k = 0; k < KERNELS; ++k) {
        printf("%-20s %s %s %lldx%lldx%lld XOFF %d:", kernel_names[k], suffix,
               nhwc ? "nhwc" : "nchw", (long long)batch, (long long)channels,
               (long long)spatial, offset);
        for (int l = 0; l < libs; ++l)
            printf(" %9.2f", 1e6 * best[l][k]);
        printf("   first/second %.2f\n", best[0][k] / best[1][k]);
    }
    return 0;
}
