"""C declarations of csrc/bnkernels.h, for Cython code compiled together with
the C kernels: bnkernels' own extension, whose bnkernels/_capi.pxi re-exports
each of them (see bnkernels/_kernels.pxd).

Another extension must not cimport from here: the kernels' C symbols live inside
bnkernels/_kernels*.so, which Python loads privately (RTLD_LOCAL), so its module
would fail to link or to import. It cimports the same names from
bnkernels._kernels instead.
"""
from libc.stdint cimport int64_t

cdef extern from "bnkernels.h" nogil:
    # float
    void bn_dk_mean_f32(const float *x, int64_t batch, int64_t channels, int64_t spatial, float *mean)
    void bn_dk_variance_f32(const float *x, const float *mean, int64_t batch, int64_t channels, int64_t spatial, float *variance)
    void bn_dk_rolling_update_f32(int64_t channels, float keep, float take, const float *stat, float *rolling)
    void bn_dk_normalize_eps_outside_f32(const float *x, const float *mean, const float *variance, int64_t batch, int64_t channels, int64_t spatial, float eps, float *out)
    void bn_dk_normalize_eps_inside_f32(const float *x, const float *mean, const float *variance, int64_t batch, int64_t channels, int64_t spatial, float eps, float *out)
    void bn_dk_scale_bias_f32(const float *x, const float *scales, int64_t batch, int64_t channels, int64_t spatial, float *out)
    void bn_dk_add_bias_f32(const float *x, const float *biases, int64_t batch, int64_t channels, int64_t spatial, float *out)
    void bn_dk_scale_add_bias_f32(const float *x, const float *scales, const float *biases, int64_t batch, int64_t channels, int64_t spatial, float *out)
    void bn_dk_backward_bias_f32(const float *delta, int64_t batch, int64_t channels, int64_t spatial, float *bias_updates)
    void bn_dk_backward_scale_f32(const float *x_norm, const float *delta, int64_t batch, int64_t channels, int64_t spatial, float *scale_updates)
    void bn_dk_mean_delta_f32(const float *delta, const float *variance, int64_t batch, int64_t channels, int64_t spatial, float eps, float *mean_delta)
    void bn_dk_variance_delta_f32(const float *x, const float *delta, const float *mean, const float *variance, int64_t batch, int64_t channels, int64_t spatial, float eps, float *variance_delta)
    void bn_dk_normalize_delta_eps_inside_f32(const float *x, const float *mean, const float *variance, const float *mean_delta, const float *variance_delta, const float *delta, int64_t batch, int64_t channels, int64_t spatial, float eps, float *out)
    void bn_dk_normalize_delta_eps_outside_f32(const float *x, const float *mean, const float *variance, const float *mean_delta, const float *variance_delta, const float *delta, int64_t batch, int64_t channels, int64_t spatial, float eps, float *out)
    void bn_dk_backward_sums_f32(const float *x, const float *x_norm, const float *delta, const float *mean, const float *variance, const float *scales, int64_t batch, int64_t channels, int64_t spatial, float eps, float *bias_updates, float *scale_updates, float *mean_delta, float *variance_delta)
    void bn_dk_backward_dx_eps_inside_f32(const float *x, const float *mean, const float *variance, const float *mean_delta, const float *variance_delta, const float *delta, const float *scales, int64_t batch, int64_t channels, int64_t spatial, float eps, float *out)
    void bn_dk_backward_dx_eps_outside_f32(const float *x, const float *mean, const float *variance, const float *mean_delta, const float *variance_delta, const float *delta, const float *scales, int64_t batch, int64_t channels, int64_t spatial, float eps, float *out)
    void bn_stats_f32(const float *x, int64_t batch, int64_t channels, int64_t spatial, double *mean, double *var)
    void bn_normalize_affine_f32(const float *x, const double *mean, const double *invstd, const float *weight, const float *bias, int64_t batch, int64_t channels, int64_t spatial, int relu, float *y)
    void bn_rolling_update_f32(int64_t channels, double momentum, int64_t count, int64_t ddof, const double *mean, const double *var, float *running_mean, float *running_var)
    void bn_backward_reduce_f32(const float *dy, const float *x, const double *mean, const double *invstd, const float *weight, const float *bias, int relu, int64_t batch, int64_t channels, int64_t spatial, double *sum_dy, double *sum_dy_xhat)
    void bn_backward_dx_f32(const float *dy, const float *x, const double *mean, const double *invstd, const float *weight, const float *bias, int relu, const double *sum_dy, const double *sum_dy_xhat, int64_t batch, int64_t channels, int64_t spatial, float *dx)
    # double
    void bn_dk_mean_f64(const double *x, int64_t batch, int64_t channels, int64_t spatial, double *mean)
    void bn_dk_variance_f64(const double *x, const double *mean, int64_t batch, int64_t channels, int64_t spatial, double *variance)
    void bn_dk_rolling_update_f64(int64_t channels, double keep, double take, const double *stat, double *rolling)
    void bn_dk_normalize_eps_outside_f64(const double *x, const double *mean, const double *variance, int64_t batch, int64_t channels, int64_t spatial, double eps, double *out)
    void bn_dk_normalize_eps_inside_f64(const double *x, const double *mean, const double *variance, int64_t batch, int64_t channels, int64_t spatial, double eps, double *out)
    void bn_dk_scale_bias_f64(const double *x, const double *scales, int64_t batch, int64_t channels, int64_t spatial, double *out)
    void bn_dk_add_bias_f64(const double *x, const double *biases, int64_t batch, int64_t channels, int64_t spatial, double *out)
    void bn_dk_scale_add_bias_f64(const double *x, const double *scales, const double *biases, int64_t batch, int64_t channels, int64_t spatial, double *out)
    void bn_dk_backward_bias_f64(const double *delta, int64_t batch, int64_t channels, int64_t spatial, double *bias_updates)
    void bn_dk_backward_scale_f64(const double *x_norm, const double *delta, int64_t batch, int64_t channels, int64_t spatial, double *scale_updates)
    void bn_dk_mean_delta_f64(const double *delta, const double *variance, int64_t batch, int64_t channels, int64_t spatial, double eps, double *mean_delta)
    void bn_dk_variance_delta_f64(const double *x, const double *delta, const double *mean, const double *variance, int64_t batch, int64_t channels, int64_t spatial, double eps, double *variance_delta)
    void bn_dk_normalize_delta_eps_inside_f64(const double *x, const double *mean, const double *variance, const double *mean_delta, const double *variance_delta, const double *delta, int64_t batch, int64_t channels, int64_t spatial, double eps, double *out)
    void bn_dk_normalize_delta_eps_outside_f64(const double *x, const double *mean, const double *variance, const double *mean_delta, const double *variance_delta, const double *delta, int64_t batch, int64_t channels, int64_t spatial, double eps, double *out)
    void bn_dk_backward_sums_f64(const double *x, const double *x_norm, const double *delta, const double *mean, const double *variance, const double *scales, int64_t batch, int64_t channels, int64_t spatial, double eps, double *bias_updates, double *scale_updates, double *mean_delta, double *variance_delta)
    void bn_dk_backward_dx_eps_inside_f64(const double *x, const double *mean, const double *variance, const double *mean_delta, const double *variance_delta, const double *delta, const double *scales, int64_t batch, int64_t channels, int64_t spatial, double eps, double *out)
    void bn_dk_backward_dx_eps_outside_f64(const double *x, const double *mean, const double *variance, const double *mean_delta, const double *variance_delta, const double *delta, const double *scales, int64_t batch, int64_t channels, int64_t spatial, double eps, double *out)
    void bn_stats_f64(const double *x, int64_t batch, int64_t channels, int64_t spatial, double *mean, double *var)
    void bn_normalize_affine_f64(const double *x, const double *mean, const double *invstd, const double *weight, const double *bias, int64_t batch, int64_t channels, int64_t spatial, int relu, double *y)
    void bn_rolling_update_f64(int64_t channels, double momentum, int64_t count, int64_t ddof, const double *mean, const double *var, double *running_mean, double *running_var)
    void bn_backward_reduce_f64(const double *dy, const double *x, const double *mean, const double *invstd, const double *weight, const double *bias, int relu, int64_t batch, int64_t channels, int64_t spatial, double *sum_dy, double *sum_dy_xhat)
    void bn_backward_dx_f64(const double *dy, const double *x, const double *mean, const double *invstd, const double *weight, const double *bias, int relu, const double *sum_dy, const double *sum_dy_xhat, int64_t batch, int64_t channels, int64_t spatial, double *dx)
    # channels-last (NHWC) twins of the standard kernels, the same arguments
    void bn_stats_nhwc_f32(const float *x, int64_t batch, int64_t channels, int64_t spatial, double *mean, double *var)
    void bn_normalize_affine_nhwc_f32(const float *x, const double *mean, const double *invstd, const float *weight, const float *bias, int64_t batch, int64_t channels, int64_t spatial, int relu, float *y)
    void bn_backward_reduce_nhwc_f32(const float *dy, const float *x, const double *mean, const double *invstd, const float *weight, const float *bias, int relu, int64_t batch, int64_t channels, int64_t spatial, double *sum_dy, double *sum_dy_xhat)
    void bn_backward_dx_nhwc_f32(const float *dy, const float *x, const double *mean, const double *invstd, const float *weight, const float *bias, int relu, const double *sum_dy, const double *sum_dy_xhat, int64_t batch, int64_t channels, int64_t spatial, float *dx)
    void bn_stats_nhwc_f64(const double *x, int64_t batch, int64_t channels, int64_t spatial, double *mean, double *var)
    void bn_normalize_affine_nhwc_f64(const double *x, const double *mean, const double *invstd, const double *weight, const double *bias, int64_t batch, int64_t channels, int64_t spatial, int relu, double *y)
    void bn_backward_reduce_nhwc_f64(const double *dy, const double *x, const double *mean, const double *invstd, const double *weight, const double *bias, int relu, int64_t batch, int64_t channels, int64_t spatial, double *sum_dy, double *sum_dy_xhat)
    void bn_backward_dx_nhwc_f64(const double *dy, const double *x, const double *mean, const double *invstd, const double *weight, const double *bias, int relu, const double *sum_dy, const double *sum_dy_xhat, int64_t batch, int64_t channels, int64_t spatial, double *dx)
    void bn_invstd(int64_t channels, const double *var, double eps, double *invstd)
    void bn_merge_moments(int64_t parts, int64_t channels, const double *counts, const double *means, const double *m2s, double *mean, double *m2)

    # convolution and pooling (conv_pool.c)
    void bn_im2col_f32(const float *x, int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t out_h, int64_t out_w, float *cols)
    void bn_col2im_f32(const float *cols, int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t out_h, int64_t out_w, float *x)
    void bn_max_pool2d_forward_f32(const float *x, int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t out_h, int64_t out_w, float *y, int64_t *indices)
    void bn_max_pool2d_backward_f32(const float *dy, const int64_t *indices, int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t out_h, int64_t out_w, float *dx)
    void bn_avg_pool2d_forward_f32(const float *x, int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t out_h, int64_t out_w, int count_include_pad, float *y)
    void bn_avg_pool2d_backward_f32(const float *dy, int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t out_h, int64_t out_w, int count_include_pad, float *dx)
    void bn_im2col_f64(const double *x, int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t out_h, int64_t out_w, double *cols)
    void bn_col2im_f64(const double *cols, int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t out_h, int64_t out_w, double *x)
    void bn_max_pool2d_forward_f64(const double *x, int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t out_h, int64_t out_w, double *y, int64_t *indices)
    void bn_max_pool2d_backward_f64(const double *dy, const int64_t *indices, int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t out_h, int64_t out_w, double *dx)
    void bn_avg_pool2d_forward_f64(const double *x, int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t out_h, int64_t out_w, int count_include_pad, double *y)
    void bn_avg_pool2d_backward_f64(const double *dy, int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t out_h, int64_t out_w, int count_include_pad, double *dx)
    int64_t bn_pool_output_size(int64_t size, int64_t kernel, int64_t stride, int64_t pad, int ceil_mode)
    const int64_t BN_POOL_MAX_VALUES
    enum: BN_GEOMETRY_OK
    int bn_pool_geometry_check(int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t out_h, int64_t out_w)

    enum: BN_MAX_THREADS
    void bn_set_num_threads(int threads)
    int bn_get_num_threads()
    int bn_openmp_enabled()
    void bn_set_stream_min_bytes(int64_t bytes)
    int64_t bn_get_stream_min_bytes()
    int bn_stream_available()
