/* The sizes of convolution and pooling: bn_pool_output_size and
 * bn_pool_geometry_check (bnkernels.h), shared by both tiers. */
#include <stdint.h>

#include "bnkernels.h"
#include "geometry.h"

/* floor(a / b) for b > 0, also for negative a (C's / truncates). */
static int64_t floor_div(int64_t a, int64_t b)
{
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

/* a + b into *sum for a, b >= 0; 0 if it would not fit in int64_t. */
static int add_fits(int64_t a, int64_t b, int64_t *sum)
{
    if (b > INT64_MAX - a)
        return 0;
    *sum = a + b;
    return 1;
}

/* a * b into *product for a, b >= 0; 0 if it would not fit in int64_t. */
static int mul_fits(int64_t a, int64_t b, int64_t *product)
{
    if (a != 0 && b > INT64_MAX / a)
        return 0;
    *product = a * b;
    return 1;
}

/* size + 2 * pad + kernel + stride fits in int64_t: every coordinate the
 * kernels compute along an axis (a window's start o * stride - pad and end,
 * with o below the ceil_mode window count) lies within +-that. Arguments
 * are >= 0. */
static int axis_fits(int64_t size, int64_t kernel, int64_t stride, int64_t pad)
{
    int64_t sum;
    return add_fits(size, pad, &sum) && add_fits(sum, pad, &sum) &&
           add_fits(sum, kernel, &sum) && add_fits(sum, stride, &sum);
}

/* PyTorch's pooling_output_shape (dilation 1):
 *   out = floor((size + 2*pad - kernel + (ceil_mode ? stride - 1 : 0)) / stride) + 1,
 *   less one if ceil_mode made the last window start in the right padding.
 * With ceil_mode = 0 it is also the convolution's output size. Invalid
 * arguments (size < 0, kernel or stride < 1, pad < 0, or size + 2*pad +
 * kernel + stride beyond int64_t) give 0. */
int64_t bn_pool_output_size(int64_t size, int64_t kernel, int64_t stride,
                            int64_t pad, int ceil_mode)
{
    if (size < 0 || kernel < 1 || stride < 1 || pad < 0 ||
        !axis_fits(size, kernel, stride, pad))
        return 0;
    int64_t out =
        floor_div(size + 2 * pad - kernel + (ceil_mode ? stride - 1 : 0), stride) + 1;
    if (ceil_mode && (out - 1) * stride >= size + pad)
        --out;
    return out;
}

/* The larger of the two window counts along an axis, or 0. */
static int64_t most_windows(int64_t size, int64_t kernel, int64_t stride, int64_t pad)
{
    const int64_t floor_count = bn_pool_output_size(size, kernel, stride, pad, 0);
    const int64_t ceil_count = bn_pool_output_size(size, kernel, stride, pad, 1);
    const int64_t most = floor_count > ceil_count ? floor_count : ceil_count;
    return most > 0 ? most : 0;
}

/* planes buffers of per_plane values each hold at most BN_POOL_MAX_VALUES
 * values in all, and per_plane on its own does too (checked even when
 * planes is 0, so that no kernel forms a larger product). */
static int buffer_fits(int64_t planes, int64_t per_plane)
{
    int64_t total;
    return per_plane <= BN_POOL_MAX_VALUES && mul_fits(planes, per_plane, &total) &&
           total <= BN_POOL_MAX_VALUES;
}

/* The checks of bn_pool_geometry_check on the sizes that every kernel of
 * this file shares: (batch, channels, height, width) planes in and
 * (batch, channels, out_h, out_w) values out. */
int bn_pool_planes_check(int64_t batch, int64_t channels, int64_t height,
                        int64_t width, int64_t out_h, int64_t out_w)
{
    int64_t planes, plane, outs;
    if (batch < 0 || channels < 0 || height < 1 || width < 1 || out_h < 0 || out_w < 0)
        return BN_GEOMETRY_INVALID;
    if (!mul_fits(batch, channels, &planes) || !mul_fits(height, width, &plane) ||
        !mul_fits(out_h, out_w, &outs) || !buffer_fits(planes, plane) ||
        !buffer_fits(planes, outs))
        return BN_GEOMETRY_OVERFLOW;
    return BN_GEOMETRY_OK;
}

int bn_pool_geometry_check(int64_t batch, int64_t channels, int64_t height,
                           int64_t width, int64_t kernel_h, int64_t kernel_w,
                           int64_t stride_h, int64_t stride_w, int64_t pad_h,
                           int64_t pad_w, int64_t out_h, int64_t out_w)
{
    const int planes = bn_pool_planes_check(batch, channels, height, width, out_h, out_w);
    if (planes != BN_GEOMETRY_OK)
        return planes;
    if (kernel_h < 1 || kernel_w < 1 || stride_h < 1 || stride_w < 1 || pad_h < 0 ||
        pad_w < 0)
        return BN_GEOMETRY_INVALID;
    if (!axis_fits(height, kernel_h, stride_h, pad_h) ||
        !axis_fits(width, kernel_w, stride_w, pad_w))
        return BN_GEOMETRY_OVERFLOW;
    /* at most the larger window count (ceil_mode's when pad <= kernel / 2,
     * else the floor one): every window starts before height + 2 * pad_h */
    if (out_h > most_windows(height, kernel_h, stride_h, pad_h) ||
        out_w > most_windows(width, kernel_w, stride_w, pad_w))
        return BN_GEOMETRY_INVALID;
    int64_t window, outs, cols;
    if (!mul_fits(kernel_h, kernel_w, &window) || window > BN_POOL_MAX_VALUES ||
        !mul_fits(out_h, out_w, &outs) ||
        !mul_fits(window, outs, &cols) || !buffer_fits(batch * channels, cols))
        return BN_GEOMETRY_OVERFLOW;
    return BN_GEOMETRY_OK;
}
