/* The sizes of convolution and pooling (private to csrc/; geometry.c). */
#ifndef BNKERNELS_GEOMETRY_H
#define BNKERNELS_GEOMETRY_H

#include <stdint.h>

/* bn_pool_geometry_check's conditions on batch, channels, height, width,
 * out_h and out_w alone: what bn_max_pool2d_backward needs. */
int bn_pool_planes_check(int64_t batch, int64_t channels, int64_t height,
                         int64_t width, int64_t out_h, int64_t out_w);

/* The pooling window of output o along one axis, clipped to the input:
 * [*lo, *hi), empty (*lo == *hi) when it holds no input. Returns the window's size clipped to the padded input, which
 * is PyTorch's count_include_pad divisor (a window of a ceil_mode output may
 * reach past the padding; that part is not counted): in [0, kernel]. */
static inline int64_t bn_pool_window(int64_t o, int64_t kernel, int64_t stride, int64_t pad,
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

#endif
