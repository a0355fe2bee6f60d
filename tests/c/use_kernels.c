/*
 * A C program that uses bnkernels through bnkernels.h alone, without Python
 * (built and checked by tests/test_c_api.py): the standard-numerics forward
 * and backward in float64 and float32, the reductions on short rows and on
 * channels-last tensors, and Darknet's forward in float32.
 *
 *   cc -std=c11 -O2 -ffp-contract=off -Icsrc csrc/[a-z]*.c csrc/ref/[a-z]*.c csrc/fast/[a-z]*.c \
 *       tests/c/use_kernels.c \
 *       -lm -o use_kernels
 *   ./use_kernels inputs.bin
 * (add -fopenmp for threads; OMP_NUM_THREADS then says how many).
 *
 * inputs.bin holds int64 batch, channels and spatial, then float64 x and dy
 * (batch * channels * spatial values each, NCHW) and weight and bias
 * (channels values each). Each result is printed on one line: its name, then
 * its values (%.17g, which reads back exactly).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "bnkernels.h"

static void print_f64(const char *name, const double *v, int64_t count)
{
    printf("%s", name);
    for (int64_t i = 0; i < count; ++i)
        printf(" %.17g", v[i]);
    printf("\n");
}

static void print_f32(const char *name, const float *v, int64_t count)
{
    printf("%s", name);
    for (int64_t i = 0; i < count; ++i)
        printf(" %.17g", (double)v[i]);
    printf("\n");
}

static void *buffer(int64_t count, size_t size)
{
    void *p = malloc(count > 0 ? (size_t)count * size : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}

static float *to_f32(const double *v, int64_t count)
{
    float *out = buffer(count, sizeof(float));
    for (int64_t i = 0; i < count; ++i)
        out[i] = (float)v[i];
    return out;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s inputs.bin\n", argv[0]);
        return 2;
    }
    FILE *in = fopen(argv[1], "rb");
    int64_t sizes[3];
    if (!in || fread(sizes, sizeof sizes[0], 3, in) != 3) {
        fprintf(stderr, "cannot read the sizes from %s\n", argv[1]);
        return 1;
    }
    const int64_t batch = sizes[0], channels = sizes[1], spatial = sizes[2];
    const int64_t n = batch * channels * spatial, c = channels;
    double *x = buffer(n, sizeof *x), *dy = buffer(n, sizeof *dy);
    double *weight = buffer(c, sizeof *weight), *bias = buffer(c, sizeof *bias);
    if (fread(x, sizeof *x, n, in) != (size_t)n || fread(dy, sizeof *dy, n, in) != (size_t)n ||
        fread(weight, sizeof *weight, c, in) != (size_t)c ||
        fread(bias, sizeof *bias, c, in) != (size_t)c) {
        fprintf(stderr, "%s is too short\n", argv[1]);
        return 1;
    }
    fclose(in);

    /* standard numerics, float64: forward (training), then backward */
    double *mean = buffer(c, sizeof *mean), *var = buffer(c, sizeof *var);
    double *invstd = buffer(c, sizeof *invstd);
    double *sum_dy = buffer(c, sizeof *sum_dy), *sum_dy_xhat = buffer(c, sizeof *sum_dy_xhat);
    double *y = buffer(n, sizeof *y), *dx = buffer(n, sizeof *dx);
    bn_stats_f64(x, batch, channels, spatial, mean, var);
    bn_invstd(channels, var, 1e-5, invstd);
    bn_normalize_affine_f64(x, mean, invstd, weight, bias, batch, channels, spatial, 0, y);
    bn_backward_reduce_f64(dy, x, mean, invstd, weight, bias, 0, batch, channels, spatial,
                           sum_dy, sum_dy_xhat);
    bn_backward_dx_f64(dy, x, mean, invstd, weight, bias, 0, sum_dy, sum_dy_xhat, batch,
                       channels, spatial, dx);
    print_f64("mean", mean, c);
    print_f64("var", var, c);
    print_f64("invstd", invstd, c);
    print_f64("y", y, n);
    print_f64("sum_dy", sum_dy, c);
    print_f64("sum_dy_xhat", sum_dy_xhat, c);
    print_f64("dx", dx, n);

    /* the same in float32 (statistics still in float64), with the fused ReLU */
    float *x32 = to_f32(x, n), *dy32 = to_f32(dy, n);
    float *weight32 = to_f32(weight, c), *bias32 = to_f32(bias, c);
    float *y32 = buffer(n, sizeof *y32), *dx32 = buffer(n, sizeof *dx32);
    bn_stats_f32(x32, batch, channels, spatial, mean, var);
    bn_invstd(channels, var, 1e-5, invstd);
    bn_normalize_affine_f32(x32, mean, invstd, weight32, bias32, batch, channels, spatial, 1,
                            y32);
    bn_backward_reduce_f32(dy32, x32, mean, invstd, weight32, bias32, 1, batch, channels,
                           spatial, sum_dy, sum_dy_xhat);
    bn_backward_dx_f32(dy32, x32, mean, invstd, weight32, bias32, 1, sum_dy, sum_dy_xhat,
                       batch, channels, spatial, dx32);
    print_f32("relu_y_f32", y32, n);
    print_f32("relu_dx_f32", dx32, n);

    /* channels-last, float64 and float32: the same x and dy read as NHWC
     * tensors of 2 * channels channels and spatial / 2 positions (rows of
     * 32 values when channels = 16, which the reductions sum 32 channels
     * at a time); no weight or bias, which these kernels need only with
     * the ReLU */
    if (spatial % 2 == 0) {
        const int64_t c2 = 2 * channels, s2 = spatial / 2;
        double *mean2 = buffer(c2, sizeof *mean2), *var2 = buffer(c2, sizeof *var2);
        double *invstd2 = buffer(c2, sizeof *invstd2), *sum_dy2 = buffer(c2, sizeof *sum_dy2);
        double *sum_dy_xhat2 = buffer(c2, sizeof *sum_dy_xhat2);
        bn_stats_nhwc_f64(x, batch, c2, s2, mean2, var2);
        bn_invstd(c2, var2, 1e-5, invstd2);
        bn_backward_reduce_nhwc_f64(dy, x, mean2, invstd2, NULL, NULL, 0, batch, c2, s2,
                                    sum_dy2, sum_dy_xhat2);
        print_f64("nhwc_mean", mean2, c2);
        print_f64("nhwc_var", var2, c2);
        print_f64("nhwc_sum_dy", sum_dy2, c2);
        print_f64("nhwc_sum_dy_xhat", sum_dy_xhat2, c2);
        bn_stats_nhwc_f32(x32, batch, c2, s2, mean2, var2);
        bn_invstd(c2, var2, 1e-5, invstd2);
        bn_backward_reduce_nhwc_f32(dy32, x32, mean2, invstd2, NULL, NULL, 0, batch, c2, s2,
                                    sum_dy2, sum_dy_xhat2);
        print_f64("nhwc_mean_f32", mean2, c2);
        print_f64("nhwc_var_f32", var2, c2);
        print_f64("nhwc_sum_dy_f32", sum_dy2, c2);
        print_f64("nhwc_sum_dy_xhat_f32", sum_dy_xhat2, c2);
        void *nhwc_buffers[] = {mean2, var2, invstd2, sum_dy2, sum_dy_xhat2};
        for (size_t i = 0; i < sizeof nhwc_buffers / sizeof nhwc_buffers[0]; ++i)
            free(nhwc_buffers[i]);
    }

    /* float64 statistics and backward sums on short rows: the same x and dy
     * read as 64 times the channels of spatial / 64 values (rows of 256
     * bytes for spatial = 2048, which an AVX-512 CPU sums in one 64-byte
     * vector and the other builds in two halves: same bits) */
    if (spatial % 64 == 0) {
        const int64_t c3 = 64 * channels, s3 = spatial / 64;
        double *mean3 = buffer(c3, sizeof *mean3), *var3 = buffer(c3, sizeof *var3);
        double *invstd3 = buffer(c3, sizeof *invstd3), *sum_dy3 = buffer(c3, sizeof *sum_dy3);
        double *sum_dy_xhat3 = buffer(c3, sizeof *sum_dy_xhat3);
        bn_stats_f64(x, batch, c3, s3, mean3, var3);
        bn_invstd(c3, var3, 1e-5, invstd3);
        bn_backward_reduce_f64(dy, x, mean3, invstd3, NULL, NULL, 0, batch, c3, s3, sum_dy3,
                               sum_dy_xhat3);
        print_f64("short_mean", mean3, c3);
        print_f64("short_var", var3, c3);
        print_f64("short_sum_dy", sum_dy3, c3);
        print_f64("short_sum_dy_xhat", sum_dy_xhat3, c3);
        void *short_buffers[] = {mean3, var3, invstd3, sum_dy3, sum_dy_xhat3};
        for (size_t i = 0; i < sizeof short_buffers / sizeof short_buffers[0]; ++i)
            free(short_buffers[i]);
    }

    /* Darknet (pjreddie), float32: mean_cpu, variance_cpu, normalize_cpu */
    float *dk_mean = buffer(c, sizeof *dk_mean), *dk_variance = buffer(c, sizeof *dk_variance);
    float *x_norm = buffer(n, sizeof *x_norm);
    bn_dk_mean_f32(x32, batch, channels, spatial, dk_mean);
    bn_dk_variance_f32(x32, dk_mean, batch, channels, spatial, dk_variance);
    bn_dk_normalize_eps_outside_f32(x32, dk_mean, dk_variance, batch, channels, spatial,
                                    .000001f, x_norm);
    print_f32("dk_mean", dk_mean, c);
    print_f32("dk_variance", dk_variance, c);
    print_f32("dk_x_norm", x_norm, n);

    printf("openmp_enabled %d\n", bn_openmp_enabled());
    printf("num_threads %d\n", bn_get_num_threads());

    void *buffers[] = {x, dy, weight, bias, mean, var, invstd, sum_dy, sum_dy_xhat, y, dx,
                       x32, dy32, weight32, bias32, y32, dx32, dk_mean, dk_variance, x_norm};
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; ++i)
        free(buffers[i]);
    return 0;
}
