/* Convolution helpers (im2col, col2im) and 2-D pooling, NCHW, for float32
 * and float64 from one template (conv_pool.inc). */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "bnkernels.h"
#include "loops.h"

/* The geometry every kernel of this file shares: an input plane of
 * height x width, windows of kernel_h x kernel_w moved by stride_h, stride_w
 * over it padded by pad_h, pad_w on each side, out_h x out_w windows. */
typedef struct {
    int64_t height, width, kernel_h, kernel_w, stride_h, stride_w;
    int64_t pad_h, pad_w, out_h, out_w;
} Geometry;

/* floor(a / b) for b > 0, also for negative a (C's / truncates). */
static int64_t floor_div(int64_t a, int64_t b)
{
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

/* The outputs o in [*lo, *hi) whose input o * stride + offset lies in
 * [0, size), for o in [0, out): the part of a row im2col copies. */
static void inside(int64_t out, int64_t stride, int64_t offset, int64_t size,
                   int64_t *lo, int64_t *hi)
{
    int64_t l = -floor_div(offset, stride); /* ceil(-offset / stride) */
    int64_t h = floor_div(size - 1 - offset, stride) + 1;
    l = l < 0 ? 0 : l > out ? out : l;
    h = h > out ? out : h;
    *lo = l;
    *hi = h > l ? h : l;
}

/* The pooling window of output o along one axis, clipped to the input:
 * [*lo, *hi), empty (*lo == *hi) when it holds no input. Returns the window's size clipped to the padded input, which
 * is PyTorch's count_include_pad divisor (a window of a ceil_mode output may
 * reach past the padding; that part is not counted): in [0, kernel]. */
static int64_t window(int64_t o, int64_t kernel, int64_t stride, int64_t pad,
                      int64_t size, int64_t *lo, int64_t *hi)
{
    const int64_t start = o * stride - pad;
    int64_t end = start + kernel;
    if (end > size + pad)
        end = size + pad;
    if (end < start) /* a window past the padding (out beyond PyTorch's count) */
        end = start;
    const int64_t padded = end - start;
    *lo = start < 0 ? 0 : start;
    *hi = end < size ? end : size;
    if (*hi < *lo)
        *hi = *lo;
    return padded;
}

/* im2col and col2im with a 1x1 kernel, stride 1, no padding and every
 * window: each plane's one column row is the plane itself. */
static int is_copy(const Geometry *g)
{
    return g->kernel_h == 1 && g->kernel_w == 1 && g->stride_h == 1 &&
           g->stride_w == 1 && g->pad_h == 0 && g->pad_w == 0 &&
           g->out_h == g->height && g->out_w == g->width;
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
static int check_planes(int64_t batch, int64_t channels, int64_t height,
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
    const int planes = check_planes(batch, channels, height, width, out_h, out_w);
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

#define GEOMETRY                                                               \
    const Geometry g = {height,   width,    kernel_h, kernel_w, stride_h,      \
                        stride_w, pad_h,    pad_w,    out_h,    out_w}
/* Every kernel returns at once, reading and writing nothing, on a geometry
 * bn_pool_geometry_check rejects: its callers check first. */
#define CHECK_GEOMETRY                                                         \
    bn_pool_geometry_check(batch, channels, height, width, kernel_h, kernel_w, \
                           stride_h, stride_w, pad_h, pad_w, out_h, out_w)

#define T float
#define NAME(f) f##_f32
#include "conv_pool.inc"
#undef T
#undef NAME

#define T double
#define NAME(f) f##_f64
#include "conv_pool.inc"
#undef T
#undef NAME
