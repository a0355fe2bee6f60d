/* Convolution helpers (im2col, col2im) and 2-D pooling, NCHW, for float32
 * and float64 from one template (conv_pool.inc). */
#include <math.h>
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
 * [*lo, *hi). Returns the window's size clipped to the padded input, which
 * is PyTorch's count_include_pad divisor (a window of a ceil_mode output may
 * reach past the padding; that part is not counted). */
static int64_t window(int64_t o, int64_t kernel, int64_t stride, int64_t pad,
                      int64_t size, int64_t *lo, int64_t *hi)
{
    const int64_t start = o * stride - pad;
    int64_t end = start + kernel;
    if (end > size + pad)
        end = size + pad;
    const int64_t padded = end - start;
    *lo = start < 0 ? 0 : start;
    *hi = end < size ? end : size;
    return padded;
}

/* im2col and col2im with a 1x1 kernel, stride 1 and no padding: each plane's
 * one column row is the plane itself. */
static int is_copy(const Geometry *g)
{
    return g->kernel_h == 1 && g->kernel_w == 1 && g->stride_h == 1 &&
           g->stride_w == 1 && g->pad_h == 0 && g->pad_w == 0;
}

/* PyTorch's pooling_output_shape (dilation 1):
 *   out = floor((size + 2*pad - kernel + (ceil_mode ? stride - 1 : 0)) / stride) + 1,
 *   less one if ceil_mode made the last window start in the right padding.
 * With ceil_mode = 0 it is also the convolution's output size. Invalid
 * arguments (kernel or stride < 1, pad < 0) give 0. */
int64_t bn_pool_output_size(int64_t size, int64_t kernel, int64_t stride,
                            int64_t pad, int ceil_mode)
{
    if (kernel < 1 || stride < 1 || pad < 0)
        return 0;
    int64_t out =
        floor_div(size + 2 * pad - kernel + (ceil_mode ? stride - 1 : 0), stride) + 1;
    if (ceil_mode && (out - 1) * stride >= size + pad)
        --out;
    return out;
}

#define GEOMETRY                                                               \
    const Geometry g = {height,   width,    kernel_h, kernel_w, stride_h,      \
                        stride_w, pad_h,    pad_w,    out_h,    out_w}

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
