/* Convolution helpers (im2col, col2im) and 2-D pooling, NCHW, for float32
 * and float64 from one template (conv_pool.inc). */
/* A reference-only build (BNKERNELS_REFERENCE_ONLY) has no fast tier. */
#ifndef BNKERNELS_REFERENCE_ONLY
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "bnkernels.h"
#include "geometry.h"
#include "compiler.h"
#include "dispatch.h"
#include "parallel.h"

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

/* im2col and col2im with a 1x1 kernel, stride 1, no padding and every
 * window: each plane's one column row is the plane itself. */
static int is_copy(const Geometry *g)
{
    return g->kernel_h == 1 && g->kernel_w == 1 && g->stride_h == 1 &&
           g->stride_w == 1 && g->pad_h == 0 && g->pad_w == 0 &&
           g->out_h == g->height && g->out_w == g->width;
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

#endif /* BNKERNELS_REFERENCE_ONLY */
