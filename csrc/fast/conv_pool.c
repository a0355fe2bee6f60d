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

/* The pools' fast path works on one output row at a time, on tiles of up
 * to POOL_TILE consecutive outputs, tap by tap: for kernel column j, every
 * output ow of the tile whose input column ow * stride_w - pad_w + j lies in
 * the plane takes that input, in one loop over ow (vectorized across output
 * positions, no bounds test inside). An output meets its taps in the same
 * (row, column) order as a window-at-a-time loop, so its max, argmax and
 * double sum are those of the reference tier. Kernels wider than
 * POOL_MAX_TAPS, and planes too large for the int32 tap codes of max
 * pooling, take the window-at-a-time path. */
#define POOL_TILE 256
#define POOL_MAX_TAPS 16
typedef struct {
    int64_t t0, n;                                 /* outputs [t0, t0 + n) */
    int64_t lo[POOL_MAX_TAPS], hi[POOL_MAX_TAPS];  /* tap j: tile outputs [lo, hi) */
} Tile;

static int pool_tiles_fit(const Geometry *g)
{
    return g->kernel_w <= POOL_MAX_TAPS && g->height * g->width < ((int64_t)1 << 30);
}

/* The tile of outputs [t0, min(t0 + POOL_TILE, out_w)) and, for each kernel
 * column j, its outputs whose input column is inside the plane. */
static void pool_tile(const Geometry *g, int64_t t0, Tile *t)
{
    t->t0 = t0;
    t->n = g->out_w - t0 < POOL_TILE ? g->out_w - t0 : POOL_TILE;
    for (int64_t j = 0; j < g->kernel_w; ++j) {
        int64_t lo, hi;
        inside(g->out_w, g->stride_w, j - g->pad_w, g->width, &lo, &hi);
        lo = lo < t0 ? 0 : lo - t0;
        hi = hi - t0 > t->n ? t->n : hi - t0;
        t->lo[j] = lo;
        t->hi[j] = hi > lo ? hi : lo;
    }
}

/* Small planes (rows too short to fill vectors) take the flat path: the
 * plane is copied into a buffer of hb x wb values, its origin at (-pad_h,
 * -pad_w), filled past the input with a value that changes no result (-inf
 * for the max: it never replaces; 0 for the sums: a double sum that starts
 * at +0 is never -0, and x + 0 = x), so that every window lies in the
 * buffer. Output (oh, ow) becomes q = oh * wb + ow, and window tap (i, j)
 * reads buffer[s * q + i * wb + j]: one loop over q per tap, across the
 * rows, with s = stride_h = stride_w. Positions q with ow >= out_w are
 * computed and dropped; one spare buffer row keeps their reads inside.
 * Scratch: the buffer (POOL_FLAT_MAX values) and the tiles' arrays
 * (POOL_TILE values each) live on the stack, under 40 KB for double. */
#define POOL_FLAT_MAX 4096
typedef struct {
    int64_t hb, wb, stride; /* buffer rows (less the spare row), width, stride */
} Flat;

static int pool_flat(const Geometry *g, Flat *f)
{
    const int64_t small = POOL_FLAT_MAX; /* every size below: no product overflows */
    if (g->stride_h != g->stride_w || g->out_h == 0 || g->out_w == 0 ||
        g->out_h > small || g->out_w > small || g->stride_h > small ||
        g->kernel_h > small || g->kernel_w > small || g->pad_h > small ||
        g->pad_w > small || g->height > small || g->width > small)
        return 0;
    const int64_t s = g->stride_h;
    const int64_t need_h = (g->out_h - 1) * s + g->kernel_h;
    const int64_t need_w = (g->out_w - 1) * s + g->kernel_w;
    f->hb = g->pad_h + g->height > need_h ? g->pad_h + g->height : need_h;
    f->wb = g->pad_w + g->width > need_w ? g->pad_w + g->width : need_w;
    f->stride = s;
    return f->wb <= POOL_TILE && (f->hb + 1) * f->wb <= POOL_FLAT_MAX &&
           g->kernel_w <= POOL_MAX_TAPS;
}

/* A geometry whose one window is the whole plane (global average pooling). */
static int pool_is_global(const Geometry *g)
{
    return g->out_h == 1 && g->out_w == 1 && g->kernel_h == g->height &&
           g->kernel_w == g->width && g->pad_h == 0 && g->pad_w == 0;
}

/* Global average pooling sums this many planes side by side. */
#define BN_GLOBAL_PLANES 8

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
