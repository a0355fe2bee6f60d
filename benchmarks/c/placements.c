/*
 * Times one elementwise standard-numerics pass (NCHW) at every placement
 * of its inputs and its output, for one or more builds of csrc/ side by
 * side: each placement's calls alternate between the builds, and each
 * round visits every placement in turn (each input placement has its own
 * buffers), so that a busy spell slows builds and placements alike rather
 * than one row of the table. Prints, per build, the best and the worst
 * placement's time and their ratio, then the table of times (microseconds,
 * the best of each placement's calls): rows are the inputs' byte offset
 * from a page (x, and dy 2048 bytes from x's page offset), columns the
 * output's. Every placement must give a build the same output bits as
 * its first: otherwise it says where and exits with 1.
 *
 *   cc -O3 -std=c11 -ffp-contract=off -fPIC -shared -Icsrc \
 *      csrc/[a-z]*.c csrc/ref/[a-z]*.c csrc/fast/[a-z]*.c -lm -o libA.so
 *   cc -O2 benchmarks/c/placements.c -ldl -o placements
 *   placements KERNEL DTYPE BATCH CHANNELS SPATIAL ROUNDS LIB...
 *
 * KERNEL: normalize (bn_normalize_affine), dx (bn_backward_dx, training),
 * dx-eval (bn_backward_dx in eval mode) or dx-relu (training, with the
 * fused ReLU).
 * DTYPE: f32 or f64. One thread (the libraries are built without OpenMP).
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
#define PLACES 5
#define CALLS 20

typedef void (*normalize_fn)(const void *, const double *, const double *,
                             const void *, const void *, int64_t, int64_t,
                             int64_t, int, void *);
typedef void (*dx_fn)(const void *, const void *, const double *,
                      const double *, const void *, const void *, int,
                      const double *, const double *, int64_t, int64_t,
                      int64_t, void *);

static const int offsets[PLACES] = {0, 8, 16, 32, 48};

int main(int argc, char **argv)
{
    if (argc < 8) {
        fprintf(stderr, "usage: %s normalize|dx|dx-eval|dx-relu f32|f64 BATCH CHANNELS "
                "SPATIAL ROUNDS LIB...\n", argv[0]);
        return 2;
    }
    const int dx = strncmp(argv[1], "dx", 2) == 0;
    const int eval = strcmp(argv[1], "dx-eval") == 0;
    const int relu = strcmp(argv[1], "dx-relu") == 0;
    const char *suffix = argv[2];
    const int size = strcmp(suffix, "f64") == 0 ? 8 : 4;
    const int64_t batch = atoll(argv[3]), channels = atoll(argv[4]);
    const int64_t spatial = atoll(argv[5]);
    const int rounds = atoi(argv[6]), libs = argc - 7;
    if (libs > MAX_LIBS) {
        fprintf(stderr, "at most %d libraries\n", MAX_LIBS);
        return 2;
    }
    normalize_fn normalize[MAX_LIBS];
    dx_fn backward_dx[MAX_LIBS];
    for (int l = 0; l < libs; ++l) {
        void *lib = dlopen(argv[7 + l], RTLD_NOW | RTLD_LOCAL);
        char name[64];
        if (!lib) {
            fprintf(stderr, "%s\n", dlerror());
            return 1;
        }
        snprintf(name, sizeof name, "bn_normalize_affine_%s", suffix);
        normalize[l] = (normalize_fn)dlsym(lib, name);
        snprintf(name, sizeof name, "bn_backward_dx_%s", suffix);
        backward_dx[l] = (dx_fn)dlsym(lib, name);
        if (!normalize[l] || !backward_dx[l]) {
            fprintf(stderr, "%s: no %s kernels\n", argv[7 + l], suffix);
            return 1;
        }
    }

    const int64_t n = batch * channels * spatial;
    const size_t bytes = (size_t)n * (size_t)size;
    char *xs[PLACES], *dys[PLACES];
    for (int i = 0; i < PLACES; ++i) {
        xs[i] = boundary_buffer(4096, bytes + 4096);
        dys[i] = boundary_buffer(4096, bytes + 4096);
        fill(xs[i] + offsets[i], size, n, -0.5, 97, 0.01);
        fill(dys[i] + 2048 + offsets[i], size, n, -0.3, 31, 0.02);
    }
    char *ys = boundary_buffer(4096, bytes + 4096);
    double *mean = malloc(4 * (size_t)channels * sizeof(double));
    double *invstd = mean + channels, *sum_dy = invstd + channels;
    double *sum_dy_xhat = sum_dy + channels;
    char *weight = malloc(2 * (size_t)channels * 8), *bias = weight + channels * 8;
    for (int64_t c = 0; c < channels; ++c) {
        mean[c] = 0.1;
        invstd[c] = 1.3;
        sum_dy[c] = 0.5;
        sum_dy_xhat[c] = 0.2;
    }
    fill(weight, size, channels, 0.5, 7, 0.25);
    fill(bias, size, channels, -0.2, 5, 0.1);

    char *first[MAX_LIBS] = {NULL};  /* each build's output at its first placement */
    static double best[MAX_LIBS][PLACES][PLACES];
    for (int l = 0; l < libs; ++l)
        for (int i = 0; i < PLACES; ++i)
            for (int j = 0; j < PLACES; ++j)
                best[l][i][j] = 1e30;
    for (int r = 0; r < rounds; ++r)
        for (int i = 0; i < PLACES; ++i)
            for (int j = 0; j < PLACES; ++j)
                for (int l = 0; l < libs; ++l) {
                    const char *x = xs[i] + offsets[i];
                    const char *dy = dys[i] + 2048 + offsets[i];
                    char *y = ys + offsets[j];
                    for (int k = 0; k < CALLS; ++k) {
                        const double t0 = seconds();
                        if (dx)
                            backward_dx[l](dy, x, mean, invstd, weight, bias, relu,
                                           eval ? NULL : sum_dy,
                                           eval ? NULL : sum_dy_xhat, batch,
                                           channels, spatial, y);
                        else
                            normalize[l](x, mean, invstd, weight, bias, batch,
                                         channels, spatial, 0, y);
                        const double t = seconds() - t0;
                        if (t < best[l][i][j])
                            best[l][i][j] = t;
                    }
                    if (!first[l]) {
                        first[l] = boundary_buffer(4096, bytes);
                        memcpy(first[l], y, bytes);
                    } else if (memcmp(first[l], y, bytes) != 0) {
                        fprintf(stderr, "%s: the output with the inputs at %d and the "
                                "output at %d bytes from a page differs from its first "
                                "placement's\n", argv[7 + l], offsets[i], offsets[j]);
                        return 1;
                    }
                }

    for (int l = 0; l < libs; ++l) {
        double lo = 1e30, hi = 0;
        for (int i = 0; i < PLACES; ++i)
            for (int j = 0; j < PLACES; ++j) {
                lo = best[l][i][j] < lo ? best[l][i][j] : lo;
                hi = best[l][i][j] > hi ? best[l][i][j] : hi;
            }
        printf("%s: best %.2f us, worst %.2f us, worst/best %.2f\n",
               argv[7 + l], 1e6 * lo, 1e6 * hi, hi / lo);
        printf("  in\\out");
        for (int j = 0; j < PLACES; ++j)
            printf(" %7d", offsets[j]);
        printf("\n");
        for (int i = 0; i < PLACES; ++i) {
            printf("  %6d", offsets[i]);
            for (int j = 0; j < PLACES; ++j)
                printf(" %7.2f", 1e6 * best[l][i][j]);
            printf("\n");
        }
    }
    return 0;
}
