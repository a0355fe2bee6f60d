/* Direct 2-D convolution, float32, stride 1, NCHW (private to csrc/; the
 * nn layers' Conv2d calls it through _kernels._conv2d_direct):
 *
 *   y[n, o, oh, ow] = bias[o] + sum over (c, i, j) of
 *                     weight[o, c, i, j] * x[n, c, oh - ph + i, ow - pw + j]
 *
 * with x read as 0 outside its plane. It replaces im2col + a GEMM where the
 * columns (C*kh*kw times the map) would be many times x's size and the GEMM
 * thin (few output channels), which is where a BLAS is slowest.
 *
 * Only AVX-512F code exists (conv_direct.c); bn_conv_direct_available()
 * says whether this build has it and the running CPU can run it. The sums
 * are float32 fused multiply-adds in (c, i, j) order, starting from the
 * bias: a GEMM's order differs, so results agree with im2col + GEMM to
 * float32 rounding, not bit for bit. Any number of threads gives the same
 * bits (threads take whole blocks of outputs). */
#ifndef BNKERNELS_CONV_DIRECT_H
#define BNKERNELS_CONV_DIRECT_H

#include <stdint.h>

/* 1 where bn_conv_direct_f32 may be called, else 0 */
int bn_conv_direct_available(void);

/* The floats of workspace bn_conv_direct_f32 needs: the weights packed in
 * blocks of output channels, and x padded, each plane (H + 2*ph) x
 * (W + 2*pw), with zeros read past the last plane. The caller checks that
 * every size and this count fit in int64. */
int64_t bn_conv_direct_work_f32(int64_t batch, int64_t channels, int64_t height,
                                int64_t width, int64_t out_channels,
                                int64_t kernel_h, int64_t kernel_w, int64_t pad_h,
                                int64_t pad_w);

/* y (batch, out_channels, OH, OW), OH = height + 2*pad_h - kernel_h + 1 >= 1
 * (OW likewise), for x (batch, channels, height, width) and weight
 * (out_channels, channels, kernel_h, kernel_w), all C-contiguous; bias has
 * out_channels values or is NULL. work: bn_conv_direct_work_f32 floats,
 * overwritten. y overlaps nothing else. */
void bn_conv_direct_f32(const float *x, int64_t batch, int64_t channels,
                        int64_t height, int64_t width, const float *weight,
                        const float *bias, int64_t out_channels, int64_t kernel_h,
                        int64_t kernel_w, int64_t pad_h, int64_t pad_w, float *work,
                        float *y);

/* The weight gradient of the convolution above, ADDED into grad_weight
 * (out_channels, channels, kernel_h, kernel_w):
 *
 *   grad_weight[o, c, i, j] += sum over (n, oh, ow) of
 *                              dy[n, o, oh, ow] * x[n, c, oh - ph + i, ow - pw + j]
 *
 * for x as above and dy (batch, out_channels, OH, OW), C-contiguous, and
 * kernel_h * kernel_w <= BN_CONV_DIRECT_DW_MAX_TAPS. Each
 * sum is float32: 16 lanes of fused multiply-adds over (n, positions), then
 * the lanes added; any number of threads gives the same bits. work:
 * bn_conv_direct_dw_work_f32 floats, overwritten; grad_weight overlaps
 * nothing else. */
#define BN_CONV_DIRECT_DW_MAX_TAPS 48
int64_t bn_conv_direct_dw_work_f32(int64_t batch, int64_t channels, int64_t height,
                                   int64_t width, int64_t out_channels,
                                   int64_t kernel_h, int64_t kernel_w, int64_t pad_h,
                                   int64_t pad_w);
void bn_conv_direct_dw_f32(const float *x, int64_t batch, int64_t channels,
                           int64_t height, int64_t width, const float *dy,
                           int64_t out_channels, int64_t kernel_h, int64_t kernel_w,
                           int64_t pad_h, int64_t pad_w, float *work, float *grad_weight);

#endif
