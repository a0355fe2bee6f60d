/*
 * bnkernels.h: every batch-normalization kernel of bnkernels, in plain C.
 *
 * Layout: NCHW, C-contiguous (the standard family also has *_nhwc kernels
 * for channels-last tensors). Sizes are named as in Darknet:
 *   batch    = N
 *   channels = C
 *   spatial  = H * W
 * Element (b, c, s) of a tensor lives at  x[(b * channels + c) * spatial + s].
 * Per-channel vectors have `channels` elements. n = batch * spatial is the
 * number of values each channel's statistics are taken over.
 *
 * Every kernel exists for float32 (suffix _f32, T = float) and float64
 * (suffix _f64, T = double); the declarations below are written once with T.
 * The caller owns every buffer, inputs and outputs. Kernels do not allocate,
 * with one exception: bn_stats_nhwc and bn_backward_reduce_nhwc, when they
 * run on two or more threads, malloc (and free before returning) a workspace
 * of 2 * min(64, blocks) * channels doubles for the threads' partial sums
 * (blocks: of 2 to 64 rows); if malloc fails they compute the same bits on
 * one thread with stack scratch. Scratch on the stack: at most about 100 KB
 * per call and thread (the NHWC kernels' per-channel tiles). Large calls
 * run on several threads when built with OpenMP (see bn_set_num_threads).
 *
 * Besides batch normalization: im2col/col2im and 2-D max and average
 * pooling, for the layers built on these kernels.
 *
 * The sources: formulas.h holds each element formula once; csrc/ref/ is the
 * reference tier (plain loops); csrc/fast/ the fast tier (lanes, tiling,
 * streaming stores, threads), which defines these names in a normal build.
 * Built with -DBNKERNELS_REFERENCE_ONLY, the reference tier alone does.
 *
 * Two families:
 *   bn_dk_*  Darknet-exact. Same operations, in the same order and at the
 *            same precision, as Darknet's CPU code, so float32 results
 *            equal Darknet's bit for bit (both tiers). Compile without
 *            fast-math and with -ffp-contract=off. "Bit for bit" and "the
 *            same bits" put NaN at the same positions; where two NaN
 *            operands meet (a NaN x and a NaN scale, say), which payload
 *            the result carries follows the operand order a compiler
 *            picks, in Darknet's build too, and is unspecified.
 *   bn_*     Standard numerics, the convention of the BN paper, PyTorch and
 *            cuDNN. Statistics are accumulated in double and per-channel
 *            statistics are kept in double. The fast tier sums two passes
 *            per (b, c) row merged by Chan et al.'s update (NHWC: per block
 *            of rows; float32 NHWC in one pass about each 64 rows' first
 *            row), in fixed lanes; the reference tier two passes per
 *            channel. The two agree to rounding, not bit for bit.
 *
 * Aliasing: an elementwise kernel's output may be the very same buffer as its
 * elementwise input (Darknet works in place); any other overlap is undefined.
 */
#ifndef BNKERNELS_H
#define BNKERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BNKERNELS_VERSION_MAJOR 0
#define BNKERNELS_VERSION_MINOR 1

/* ------------------------------------------------------------------------ */
/* Darknet-exact family.  `eps` is Darknet's float constant (.000001f or     */
/* .00001f) unless the caller chooses another; `fl()` is rounding to T.       */
/* ------------------------------------------------------------------------ */
#define BN_DECLARE_DARKNET(T, SUF)                                             \
    /* statistics (forward) */                                                 \
    void bn_dk_mean_##SUF(const T *x, int64_t batch, int64_t channels,         \
                          int64_t spatial, T *mean);                           \
    void bn_dk_variance_##SUF(const T *x, const T *mean, int64_t batch,        \
                              int64_t channels, int64_t spatial, T *variance); \
    void bn_dk_rolling_update_##SUF(int64_t channels, T keep, T take,          \
                                    const T *stat, T *rolling);                \
    /* normalize (forward); pjreddie: eps outside sqrt, AlexeyAB: inside */    \
    void bn_dk_normalize_eps_outside_##SUF(                                    \
        const T *x, const T *mean, const T *variance, int64_t batch,           \
        int64_t channels, int64_t spatial, T eps, T *out);                     \
    void bn_dk_normalize_eps_inside_##SUF(                                     \
        const T *x, const T *mean, const T *variance, int64_t batch,           \
        int64_t channels, int64_t spatial, T eps, T *out);                     \
    void bn_dk_scale_bias_##SUF(const T *x, const T *scales, int64_t batch,    \
                                int64_t channels, int64_t spatial, T *out);    \
    void bn_dk_add_bias_##SUF(const T *x, const T *biases, int64_t batch,      \
                              int64_t channels, int64_t spatial, T *out);      \
    void bn_dk_scale_add_bias_##SUF(const T *x, const T *scales,               \
                                    const T *biases, int64_t batch,            \
                                    int64_t channels, int64_t spatial, T *out);\
    /* inference: normalize_cpu (eps_inside != 0: AlexeyAB's, else         */ \
    /* pjreddie's), scale_bias, add_bias in one pass, the same bits as the  */ \
    /* three one after another, NaN payloads aside (out may be x)           */ \
    void bn_dk_inference_##SUF(                                                \
        const T *x, const T *mean, const T *variance, const T *scales,         \
        const T *biases, int64_t batch, int64_t channels, int64_t spatial,     \
        T eps, int eps_inside, T *out);                                        \
    /* backward; the *_updates kernels ADD into their output, like Darknet */  \
    void bn_dk_backward_bias_##SUF(const T *delta, int64_t batch,              \
                                   int64_t channels, int64_t spatial,          \
                                   T *bias_updates);                           \
    void bn_dk_backward_scale_##SUF(const T *x_norm, const T *delta,           \
                                    int64_t batch, int64_t channels,           \
                                    int64_t spatial, T *scale_updates);        \
    void bn_dk_mean_delta_##SUF(const T *delta, const T *variance,             \
                                int64_t batch, int64_t channels,               \
                                int64_t spatial, T eps, T *mean_delta);        \
    void bn_dk_variance_delta_##SUF(const T *x, const T *delta, const T *mean, \
                                    const T *variance, int64_t batch,          \
                                    int64_t channels, int64_t spatial, T eps,  \
                                    T *variance_delta);                        \
    /* dx; pjreddie: sqrt(var + eps), AlexeyAB: sqrt(var) + eps */             \
    void bn_dk_normalize_delta_eps_inside_##SUF(                               \
        const T *x, const T *mean, const T *variance, const T *mean_delta,     \
        const T *variance_delta, const T *delta, int64_t batch,                \
        int64_t channels, int64_t spatial, T eps, T *out);                     \
    void bn_dk_normalize_delta_eps_outside_##SUF(                              \
        const T *x, const T *mean, const T *variance, const T *mean_delta,     \
        const T *variance_delta, const T *delta, int64_t batch,                \
        int64_t channels, int64_t spatial, T eps, T *out);                         \
    /* the whole backward in two passes, the same bits: backward_bias and  */ \
    /* backward_scale_cpu (added into their outputs), scale_bias, then     */ \
    /* mean_delta_cpu and variance_delta_cpu of the scaled delta ...       */ \
    void bn_dk_backward_sums_##SUF(                                            \
        const T *x, const T *x_norm, const T *delta, const T *mean,            \
        const T *variance, const T *scales, int64_t batch, int64_t channels,   \
        int64_t spatial, T eps, T *bias_updates, T *scale_updates,             \
        T *mean_delta, T *variance_delta);                                     \
    /* ... and normalize_delta_cpu of fl(delta * scales) (out may be delta) */\
    void bn_dk_backward_dx_eps_inside_##SUF(                                   \
        const T *x, const T *mean, const T *variance, const T *mean_delta,     \
        const T *variance_delta, const T *delta, const T *scales,              \
        int64_t batch, int64_t channels, int64_t spatial, T eps, T *out);      \
    void bn_dk_backward_dx_eps_outside_##SUF(                                  \
        const T *x, const T *mean, const T *variance, const T *mean_delta,     \
        const T *variance_delta, const T *delta, const T *scales,              \
        int64_t batch, int64_t channels, int64_t spatial, T eps, T *out);

BN_DECLARE_DARKNET(float, f32)
BN_DECLARE_DARKNET(double, f64)

/* Darknet's backward as GCC -Ofast builds compute it (csrc/formulas.h   */
/* states the order): the kernels above where those builds differ. bias and */
/* scale sums take each (b, c) row in lanes, then its tail: four lanes      */
/* (bn_dk_ofast_*: each fork's Makefile, SSE2) or eight folded to four      */
/* (bn_dk_ofast_avx_*: AlexeyAB's CMake, -mavx); dx's mean term is          */
/* fl(mean_delta * fl(1 / fl(n))) in both. The forward and mean_delta /     */
/* variance_delta are the strict kernels' own.                              */
#define BN_DECLARE_DARKNET_OFAST(T, SUF)                                       \
    void bn_dk_ofast_backward_bias_##SUF(const T *delta, int64_t batch,        \
                                         int64_t channels, int64_t spatial,    \
                                         T *bias_updates);                     \
    void bn_dk_ofast_backward_scale_##SUF(const T *x_norm, const T *delta,     \
                                          int64_t batch, int64_t channels,     \
                                          int64_t spatial, T *scale_updates);  \
    void bn_dk_ofast_normalize_delta_eps_inside_##SUF(                         \
        const T *x, const T *mean, const T *variance, const T *mean_delta,     \
        const T *variance_delta, const T *delta, int64_t batch,                \
        int64_t channels, int64_t spatial, T eps, T *out);                     \
    void bn_dk_ofast_normalize_delta_eps_outside_##SUF(                        \
        const T *x, const T *mean, const T *variance, const T *mean_delta,     \
        const T *variance_delta, const T *delta, int64_t batch,                \
        int64_t channels, int64_t spatial, T eps, T *out);                     \
    void bn_dk_ofast_backward_sums_##SUF(                                      \
        const T *x, const T *x_norm, const T *delta, const T *mean,            \
        const T *variance, const T *scales, int64_t batch, int64_t channels,   \
        int64_t spatial, T eps, T *bias_updates, T *scale_updates,             \
        T *mean_delta, T *variance_delta);                                     \
    void bn_dk_ofast_backward_dx_eps_inside_##SUF(                             \
        const T *x, const T *mean, const T *variance, const T *mean_delta,     \
        const T *variance_delta, const T *delta, const T *scales,              \
        int64_t batch, int64_t channels, int64_t spatial, T eps, T *out);      \
    void bn_dk_ofast_backward_dx_eps_outside_##SUF(                            \
        const T *x, const T *mean, const T *variance, const T *mean_delta,     \
        const T *variance_delta, const T *delta, const T *scales,              \
        int64_t batch, int64_t channels, int64_t spatial, T eps, T *out);      \
    /* the sums of -Ofast -mavx (AlexeyAB's CMake default on x86) */           \
    void bn_dk_ofast_avx_backward_bias_##SUF(const T *delta, int64_t batch,    \
                                             int64_t channels,                 \
                                             int64_t spatial,                  \
                                             T *bias_updates);                 \
    void bn_dk_ofast_avx_backward_scale_##SUF(                                 \
        const T *x_norm, const T *delta, int64_t batch, int64_t channels,      \
        int64_t spatial, T *scale_updates);                                    \
    void bn_dk_ofast_avx_backward_sums_##SUF(                                  \
        const T *x, const T *x_norm, const T *delta, const T *mean,            \
        const T *variance, const T *scales, int64_t batch, int64_t channels,   \
        int64_t spatial, T eps, T *bias_updates, T *scale_updates,             \
        T *mean_delta, T *variance_delta);

BN_DECLARE_DARKNET_OFAST(float, f32)
BN_DECLARE_DARKNET_OFAST(double, f64)

/* ------------------------------------------------------------------------ */
/* Standard family.  Per-channel statistics are double whatever T is, so a  */
/* float32 tensor whose mean is 1e4 standard deviations keeps its accuracy. */
/*   mean, variance     -> bn_stats        (one read of x)                   */
/*   normalize, scale_bias, add_bias -> bn_normalize_affine (fused)          */
/*   backward_bias, backward_scale, mean/variance_delta -> bn_backward_reduce*/
/*   normalize_delta    -> bn_backward_dx                                    */
/* ------------------------------------------------------------------------ */
#define BN_DECLARE_STANDARD(T, SUF)                                            \
    void bn_stats_##SUF(const T *x, int64_t batch, int64_t channels,           \
                        int64_t spatial, double *mean, double *var);           \
    /* relu != 0: y = max(y, 0), the Conv+BN+ReLU unit in one pass */         \
    void bn_normalize_affine_##SUF(                                            \
        const T *x, const double *mean, const double *invstd,                  \
        const T *weight, const T *bias, int64_t batch, int64_t channels,       \
        int64_t spatial, int relu, T *y);                                      \
    /* running_var takes var * count / (count - ddof): ddof 1 unbiased,     */\
    /* 0 biased; needs count > ddof                                         */\
    void bn_rolling_update_##SUF(int64_t channels, double momentum,            \
                                 int64_t count, int64_t ddof,                  \
                                 const double *mean, const double *var,        \
                                 T *running_mean, T *running_var);             \
    /* backward: relu != 0 masks dy where the forward's y was 0 (recomputed  */\
    /* from x, weight and bias, so y need not be kept)                       */\
    void bn_backward_reduce_##SUF(                                             \
        const T *dy, const T *x, const double *mean, const double *invstd,     \
        const T *weight, const T *bias, int relu, int64_t batch,               \
        int64_t channels, int64_t spatial, double *sum_dy,                     \
        double *sum_dy_xhat);                                                  \
    /* sum_dy = sum_dy_xhat = NULL: eval mode, dx = weight * invstd * dy     */\
    void bn_backward_dx_##SUF(                                                 \
        const T *dy, const T *x, const double *mean, const double *invstd,     \
        const T *weight, const T *bias, int relu, const double *sum_dy,        \
        const double *sum_dy_xhat, int64_t batch, int64_t channels,            \
        int64_t spatial, T *dx);                                               \
    /* channels-last (NHWC) twins, the same arguments: element (b, s, c) at  */\
    /* x[(b * spatial + s) * channels + c]                                   */\
    void bn_stats_nhwc_##SUF(const T *x, int64_t batch, int64_t channels,      \
                             int64_t spatial, double *mean, double *var);      \
    void bn_normalize_affine_nhwc_##SUF(                                       \
        const T *x, const double *mean, const double *invstd,                  \
        const T *weight, const T *bias, int64_t batch, int64_t channels,       \
        int64_t spatial, int relu, T *y);                                      \
    void bn_backward_reduce_nhwc_##SUF(                                        \
        const T *dy, const T *x, const double *mean, const double *invstd,     \
        const T *weight, const T *bias, int relu, int64_t batch,               \
        int64_t channels, int64_t spatial, double *sum_dy,                     \
        double *sum_dy_xhat);                                                  \
    void bn_backward_dx_nhwc_##SUF(                                            \
        const T *dy, const T *x, const double *mean, const double *invstd,     \
        const T *weight, const T *bias, int relu, const double *sum_dy,        \
        const double *sum_dy_xhat, int64_t batch, int64_t channels,            \
        int64_t spatial, T *dx);

BN_DECLARE_STANDARD(float, f32)
BN_DECLARE_STANDARD(double, f64)

/* invstd[c] = 1 / sqrt(var[c] + eps), in double. */
void bn_invstd(int64_t channels, const double *var, double eps, double *invstd);

/* Synchronized batch norm: each shard's (count, mean, M2) come from bn_stats
 * (M2 = var * count); bn_merge_moments merges any number of them, in order,
 * into the moments of the whole batch (Chan et al.; shards of 0 skipped).
 * counts[parts], means[parts * channels], m2s[parts * channels]. */
void bn_merge_moments(int64_t parts, int64_t channels, const double *counts,
                      const double *means, const double *m2s, double *mean,
                      double *m2);

/* ------------------------------------------------------------------------ */
/* Convolution and pooling.  x is (batch, channels, height, width),        */
/* NCHW; windows of kernel_h x kernel_w move by stride_h, stride_w         */
/* over x padded by pad_h, pad_w zeros (for max pooling, -inf) on each      */
/* side; there are out_h x out_w of them (bn_pool_output_size).  Outputs    */
/* never alias inputs.  Each (b, c) plane is computed on its own.           */
/* Precondition: bn_pool_geometry_check accepts the sizes (for             */
/* bn_max_pool2d_backward, its conditions on batch, channels, height,      */
/* width, out_h and out_w alone); on sizes it rejects, a kernel returns at  */
/* once without reading or writing memory.                                  */
/* ------------------------------------------------------------------------ */
#define BN_POOL_GEOMETRY                                                       \
    int64_t batch, int64_t channels, int64_t height, int64_t width,            \
        int64_t kernel_h, int64_t kernel_w, int64_t stride_h,                  \
        int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t out_h,         \
        int64_t out_w
#define BN_DECLARE_CONV_POOL(T, SUF)                                           \
    /* cols (batch, channels*kernel_h*kernel_w, out_h*out_w):                */\
    /* cols[b, (c*kernel_h + i)*kernel_w + j, oh*out_w + ow]                 */\
    /*   = x[b, c, oh*stride_h - pad_h + i, ow*stride_w - pad_w + j], 0 out  */\
    void bn_im2col_##SUF(const T *x, BN_POOL_GEOMETRY, T *cols);               \
    /* its adjoint: x = sum of the cols entries read from each x (overwrites)*/\
    void bn_col2im_##SUF(const T *cols, BN_POOL_GEOMETRY, T *x);               \
    /* y, indices (batch, channels, out_h, out_w): max of each window and    */\
    /* its h*width + w (first max; a NaN wins, the first one)                */\
    void bn_max_pool2d_forward_##SUF(const T *x, BN_POOL_GEOMETRY, T *y,       \
                                     int64_t *indices);                        \
    /* dx = 0, then dx[b, c, indices] += dy (indices out of range skipped)   */\
    void bn_max_pool2d_backward_##SUF(const T *dy, const int64_t *indices,     \
                                      int64_t batch, int64_t channels,         \
                                      int64_t height, int64_t width,           \
                                      int64_t out_h, int64_t out_w, T *dx);    \
    /* y = window sum / divisor, PyTorch's AvgPool2d divisor rule            */\
    void bn_avg_pool2d_forward_##SUF(const T *x, BN_POOL_GEOMETRY,             \
                                     int count_include_pad, T *y);             \
    /* its adjoint: dx = sum of dy / divisor over the windows (overwrites)   */\
    void bn_avg_pool2d_backward_##SUF(const T *dy, BN_POOL_GEOMETRY,           \
                                      int count_include_pad, T *dx);

BN_DECLARE_CONV_POOL(float, f32)
BN_DECLARE_CONV_POOL(double, f64)

/* The ReLU's backward over n values (none for n <= 0):                     */
/* dx = dy where x > 0, else +0 (a NaN or -0 x gives +0).  dx may be dy     */
/* itself; no other overlap.                                                */
#define BN_DECLARE_RELU(T, SUF)                                                \
    void bn_relu_backward_##SUF(const T *dy, const T *x, int64_t n, T *dx);

BN_DECLARE_RELU(float, f32)
BN_DECLARE_RELU(double, f64)

/* Windows along one axis, PyTorch's rule (dilation 1): floor((size + 2*pad -
 * kernel + (ceil_mode ? stride - 1 : 0)) / stride) + 1, less one when
 * ceil_mode would start the last window in the right padding. ceil_mode = 0
 * gives a convolution's output size. 0 for size < 0, kernel or stride < 1,
 * pad < 0, or size + 2*pad + kernel + stride beyond INT64_MAX; PyTorch's
 * pools also require pad <= kernel / 2 and a result >= 1. */
int64_t bn_pool_output_size(int64_t size, int64_t kernel, int64_t stride,
                            int64_t pad, int ceil_mode);

/* The most values one buffer of the convolution and pooling kernels may
 * hold: its size in bytes (8 per value at most) fits in ptrdiff_t. */
#define BN_POOL_MAX_VALUES ((int64_t)(PTRDIFF_MAX / 8))
#define BN_GEOMETRY_OK 0
#define BN_GEOMETRY_INVALID 1  /* a size out of its range (see below) */
#define BN_GEOMETRY_OVERFLOW 2 /* a buffer or a coordinate too large */
/* BN_GEOMETRY_OK when the convolution and pooling kernels can run on these
 * sizes without overflow: batch, channels, pad_h, pad_w, out_h, out_w >= 0;
 * height, width, kernel_h, kernel_w, stride_h, stride_w >= 1; out_h and out_w
 * at most the window counts (bn_pool_output_size, the larger of ceil_mode 0
 * and 1); size +
 * 2*pad + kernel + stride within int64_t along each axis; x (batch x channels
 * x height x width), the pooled outputs (batch x channels x out_h x out_w)
 * and cols (batch x channels x kernel_h x kernel_w x out_h x out_w) each at
 * most BN_POOL_MAX_VALUES values, and so are one plane of each and one
 * window (kernel_h x kernel_w). Else BN_GEOMETRY_INVALID or
 * BN_GEOMETRY_OVERFLOW. */
int bn_pool_geometry_check(BN_POOL_GEOMETRY);

/* ------------------------------------------------------------------------ */
/* Threads (OpenMP, when the library was built with it).  Every kernel      */
/* gives the same bits whatever the number of threads: threads split the   */
/* channels or (b, c) rows, never one channel's sum.                        */
/* ------------------------------------------------------------------------ */
/* The most threads a kernel call starts: a guard against a mistyped count, */
/* which the OpenMP runtime would try to start and end the process when it  */
/* cannot (libgomp: "Thread creation failed").                              */
#define BN_MAX_THREADS 1024
/* threads <= 0: back to OpenMP's default (OMP_NUM_THREADS, threadpoolctl). */
/* A count above BN_MAX_THREADS, set here or by default, is BN_MAX_THREADS. */
/* A child process made by fork() starts at 1 thread, since the OpenMP      */
/* runtime's threads do not survive fork; calling bn_set_num_threads in the */
/* child is the caller's risk: with GNU libgomp, if the parent had run a    */
/* parallel call, the child's next one on 2+ threads never returns.         */
void bn_set_num_threads(int threads);
/* The number of threads a large kernel call will use (1 without OpenMP). */
int bn_get_num_threads(void);
/* 1 if built with OpenMP, else 0. */
int bn_openmp_enabled(void);
/* The number of threads a kernel call over items independent units of    */
/* work_per_item values each (channels, or (b, c) rows) uses now: at most   */
/* bn_get_num_threads() and items, one per 65,536 values at most, and 1 for */
/* a while (10 ms, doubling up to 1 s while it recurs) after a call whose   */
/* threads the OS kept off their cores, as on a machine whose other cores   */
/* are busy: a thread kept waiting at the end of a call costs a scheduler   */
/* slice, far more than a small call's work. Only calls whose work would    */
/* take less time than that wait go serial; larger calls keep threads.      */
int bn_threads_for_work(int64_t items, int64_t work_per_item);
/* on = 1 (the default): the back-off above; 0: none (and forget any now).  */
void bn_set_thread_backoff(int on);

/* ------------------------------------------------------------------------ */
/* Streaming stores. bn_normalize_affine and bn_backward_dx (NCHW; dx in    */
/* training mode without ReLU) write an output of at least                  */
/* bn_get_stream_min_bytes() bytes, in rows (H * W) of at least 16 values,  */
/* with non-temporal stores, which skip the read of each line before it is  */
/* written and do not keep the output in cache. bn_normalize_affine_nhwc   */
/* and bn_backward_dx_nhwc (training, no ReLU) stream too: y walking down  */
/* when it starts 4-252 bytes past x modulo 4 KB (4K aliasing); dx not     */
/* when it starts 1-255 bytes past dy or x, nor y when its values are not  */
/* aligned like x's. Only CPUs with AVX-512 stream (bn_stream_available),  */
/* and only the fast tier. Same bits always. Measurements:                 */
/* docs/design/kernels.md.                                                  */
/* ------------------------------------------------------------------------ */
/* The default: outputs of 16 MiB and more, which would not stay in a       */
/* 32 MB cache beside their input anyway.                                   */
#define BN_STREAM_DEFAULT_MIN_BYTES ((int64_t)16 << 20)
/* bytes < 0: never stream.                                                 */
void bn_set_stream_min_bytes(int64_t bytes);
int64_t bn_get_stream_min_bytes(void);
/* 1 if this CPU has the stores (x86-64 with AVX-512F), else 0.             */
int bn_stream_available(void);

#ifdef __cplusplus
}
#endif

#endif /* BNKERNELS_H */
