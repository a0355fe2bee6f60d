# The C kernels as cdef functions of bnkernels._kernels, declared in
# bnkernels/_kernels.pxd: Cython exports them to other extensions (see there).
# Each only calls its C kernel, with the same arguments. Included at the end of
# _kernels.pyx.
from bnkernels cimport bnkernels_h as h

cdef void bn_dk_mean_f32(const float *x, int64_t batch, int64_t channels, int64_t spatial, float *mean) noexcept nogil:
    h.bn_dk_mean_f32(x, batch, channels, spatial, mean)

cdef void bn_dk_variance_f32(const float *x, const float *mean, int64_t batch, int64_t channels, int64_t spatial, float *variance) noexcept nogil:
    h.bn_dk_variance_f32(x, mean, batch, channels, spatial, variance)

cdef void bn_dk_rolling_update_f32(int64_t channels, float keep, float take, const float *stat, float *rolling) noexcept nogil:
    h.bn_dk_rolling_update_f32(channels, keep, take, stat, rolling)

cdef void bn_dk_normalize_eps_outside_f32(const float *x, const float *mean, const float *variance, int64_t batch, int64_t channels, int64_t spatial, float eps, float *out) noexcept nogil:
    h.bn_dk_normalize_eps_outside_f32(x, mean, variance, batch, channels, spatial, eps, out)

cdef void bn_dk_normalize_eps_inside_f32(const float *x, const float *mean, const float *variance, int64_t batch, int64_t channels, int64_t spatial, float eps, float *out) noexcept nogil:
    h.bn_dk_normalize_eps_inside_f32(x, mean, variance, batch, channels, spatial, eps, out)

cdef void bn_dk_scale_bias_f32(const float *x, const float *scales, int64_t batch, int64_t channels, int64_t spatial, float *out) noexcept nogil:
    h.bn_dk_scale_bias_f32(x, scales, batch, channels, spatial, out)

cdef void bn_dk_add_bias_f32(const float *x, const float *biases, int64_t batch, int64_t channels, int64_t spatial, float *out) noexcept nogil:
    h.bn_dk_add_bias_f32(x, biases, batch, channels, spatial, out)

cdef void bn_dk_scale_add_bias_f32(const float *x, const float *scales, const float *biases, int64_t batch, int64_t channels, int64_t spatial, float *out) noexcept nogil:
    h.bn_dk_scale_add_bias_f32(x, scales, biases, batch, channels, spatial, out)

cdef void bn_dk_backward_bias_f32(const float *delta, int64_t batch, int64_t channels, int64_t spatial, float *bias_updates) noexcept nogil:
    h.bn_dk_backward_bias_f32(delta, batch, channels, spatial, bias_updates)

cdef void bn_dk_backward_scale_f32(const float *x_norm, const float *delta, int64_t batch, int64_t channels, int64_t spatial, float *scale_updates) noexcept nogil:
    h.bn_dk_backward_scale_f32(x_norm, delta, batch, channels, spatial, scale_updates)

cdef void bn_dk_mean_delta_f32(const float *delta, const float *variance, int64_t batch, int64_t channels, int64_t spatial, float eps, float *mean_delta) noexcept nogil:
    h.bn_dk_mean_delta_f32(delta, variance, batch, channels, spatial, eps, mean_delta)

cdef void bn_dk_variance_delta_f32(const float *x, const float *delta, const float *mean, const float *variance, int64_t batch, int64_t channels, int64_t spatial, float eps, float *variance_delta) noexcept nogil:
    h.bn_dk_variance_delta_f32(x, delta, mean, variance, batch, channels, spatial, eps, variance_delta)

cdef void bn_dk_normalize_delta_eps_inside_f32(const float *x, const float *mean, const float *variance, const float *mean_delta, const float *variance_delta, const float *delta, int64_t batch, int64_t channels, int64_t spatial, float eps, float *out) noexcept nogil:
    h.bn_dk_normalize_delta_eps_inside_f32(x, mean, variance, mean_delta, variance_delta, delta, batch, channels, spatial, eps, out)

cdef void bn_dk_normalize_delta_eps_outside_f32(const float *x, const float *mean, const float *variance, const float *mean_delta, const float *variance_delta, const float *delta, int64_t batch, int64_t channels, int64_t spatial, float eps, float *out) noexcept nogil:
    h.bn_dk_normalize_delta_eps_outside_f32(x, mean, variance, mean_delta, variance_delta, delta, batch, channels, spatial, eps, out)

cdef void bn_dk_backward_sums_f32(const float *x, const float *x_norm, const float *delta, const float *mean, const float *variance, const float *scales, int64_t batch, int64_t channels, int64_t spatial, float eps, float *bias_updates, float *scale_updates, float *mean_delta, float *variance_delta) noexcept nogil:
    h.bn_dk_backward_sums_f32(x, x_norm, delta, mean, variance, scales, batch, channels, spatial, eps, bias_updates, scale_updates, mean_delta, variance_delta)

cdef void bn_dk_backward_dx_eps_inside_f32(const float *x, const float *mean, const float *variance, const float *mean_delta, const float *variance_delta, const float *delta, const float *scales, int64_t batch, int64_t channels, int64_t spatial, float eps, float *out) noexcept nogil:
    h.bn_dk_backward_dx_eps_inside_f32(x, mean, variance, mean_delta, variance_delta, delta, scales, batch, channels, spatial, eps, out)

cdef void bn_dk_backward_dx_eps_outside_f32(const float *x, const float *mean, const float *variance, const float *mean_delta, const float *variance_delta, const float *delta, const float *scales, int64_t batch, int64_t channels, int64_t spatial, float eps, float *out) noexcept nogil:
    h.bn_dk_backward_dx_eps_outside_f32(x, mean, variance, mean_delta, variance_delta, delta, scales, batch, channels, spatial, eps, out)

cdef void bn_stats_f32(const float *x, int64_t batch, int64_t channels, int64_t spatial, double *mean, double *var) noexcept nogil:
    h.bn_stats_f32(x, batch, channels, spatial, mean, var)

cdef void bn_normalize_affine_f32(const float *x, const double *mean, const double *invstd, const float *weight, const float *bias, int64_t batch, int64_t channels, int64_t spatial, int relu, float *y) noexcept nogil:
    h.bn_normalize_affine_f32(x, mean, invstd, weight, bias, batch, channels, spatial, relu, y)

cdef void bn_rolling_update_f32(int64_t channels, double momentum, int64_t count, int64_t ddof, const double *mean, const double *var, float *running_mean, float *running_var) noexcept nogil:
    h.bn_rolling_update_f32(channels, momentum, count, ddof, mean, var, running_mean, running_var)

cdef void bn_backward_reduce_f32(const float *dy, const float *x, const double *mean, const double *invstd, const float *weight, const float *bias, int relu, int64_t batch, int64_t channels, int64_t spatial, double *sum_dy, double *sum_dy_xhat) noexcept nogil:
    h.bn_backward_reduce_f32(dy, x, mean, invstd, weight, bias, relu, batch, channels, spatial, sum_dy, sum_dy_xhat)

cdef void bn_backward_dx_f32(const float *dy, const float *x, const double *mean, const double *invstd, const float *weight, const float *bias, int relu, const double *sum_dy, const double *sum_dy_xhat, int64_t batch, int64_t channels, int64_t spatial, float *dx) noexcept nogil:
    h.bn_backward_dx_f32(dy, x, mean, invstd, weight, bias, relu, sum_dy, sum_dy_xhat, batch, channels, spatial, dx)

cdef void bn_dk_mean_f64(const double *x, int64_t batch, int64_t channels, int64_t spatial, double *mean) noexcept nogil:
    h.bn_dk_mean_f64(x, batch, channels, spatial, mean)

cdef void bn_dk_variance_f64(const double *x, const double *mean, int64_t batch, int64_t channels, int64_t spatial, double *variance) noexcept nogil:
    h.bn_dk_variance_f64(x, mean, batch, channels, spatial, variance)

cdef void bn_dk_rolling_update_f64(int64_t channels, double keep, double take, const double *stat, double *rolling) noexcept nogil:
    h.bn_dk_rolling_update_f64(channels, keep, take, stat, rolling)

cdef void bn_dk_normalize_eps_outside_f64(const double *x, const double *mean, const double *variance, int64_t batch, int64_t channels, int64_t spatial, double eps, double *out) noexcept nogil:
    h.bn_dk_normalize_eps_outside_f64(x, mean, variance, batch, channels, spatial, eps, out)

cdef void bn_dk_normalize_eps_inside_f64(const double *x, const double *mean, const double *variance, int64_t batch, int64_t channels, int64_t spatial, double eps, double *out) noexcept nogil:
    h.bn_dk_normalize_eps_inside_f64(x, mean, variance, batch, channels, spatial, eps, out)

cdef void bn_dk_scale_bias_f64(const double *x, const double *scales, int64_t batch, int64_t channels, int64_t spatial, double *out) noexcept nogil:
    h.bn_dk_scale_bias_f64(x, scales, batch, channels, spatial, out)

cdef void bn_dk_add_bias_f64(const double *x, const double *biases, int64_t batch, int64_t channels, int64_t spatial, double *out) noexcept nogil:
    h.bn_dk_add_bias_f64(x, biases, batch, channels, spatial, out)

cdef void bn_dk_scale_add_bias_f64(const double *x, const double *scales, const double *biases, int64_t batch, int64_t channels, int64_t spatial, double *out) noexcept nogil:
    h.bn_dk_scale_add_bias_f64(x, scales, biases, batch, channels, spatial, out)

cdef void bn_dk_backward_bias_f64(const double *delta, int64_t batch, int64_t channels, int64_t spatial, double *bias_updates) noexcept nogil:
    h.bn_dk_backward_bias_f64(delta, batch, channels, spatial, bias_updates)

cdef void bn_dk_backward_scale_f64(const double *x_norm, const double *delta, int64_t batch, int64_t channels, int64_t spatial, double *scale_updates) noexcept nogil:
    h.bn_dk_backward_scale_f64(x_norm, delta, batch, channels, spatial, scale_updates)

cdef void bn_dk_mean_delta_f64(const double *delta, const double *variance, int64_t batch, int64_t channels, int64_t spatial, double eps, double *mean_delta) noexcept nogil:
    h.bn_dk_mean_delta_f64(delta, variance, batch, channels, spatial, eps, mean_delta)

cdef void bn_dk_variance_delta_f64(const double *x, const double *delta, const double *mean, const double *variance, int64_t batch, int64_t channels, int64_t spatial, double eps, double *variance_delta) noexcept nogil:
    h.bn_dk_variance_delta_f64(x, delta, mean, variance, batch, channels, spatial, eps, variance_delta)

cdef void bn_dk_normalize_delta_eps_inside_f64(const double *x, const double *mean, const double *variance, const double *mean_delta, const double *variance_delta, const double *delta, int64_t batch, int64_t channels, int64_t spatial, double eps, double *out) noexcept nogil:
    h.bn_dk_normalize_delta_eps_inside_f64(x, mean, variance, mean_delta, variance_delta, delta, batch, channels, spatial, eps, out)

cdef void bn_dk_normalize_delta_eps_outside_f64(const double *x, const double *mean, const double *variance, const double *mean_delta, const double *variance_delta, const double *delta, int64_t batch, int64_t channels, int64_t spatial, double eps, double *out) noexcept nogil:
    h.bn_dk_normalize_delta_eps_outside_f64(x, mean, variance, mean_delta, variance_delta, delta, batch, channels, spatial, eps, out)

cdef void bn_dk_backward_sums_f64(const double *x, const double *x_norm, const double *delta, const double *mean, const double *variance, const double *scales, int64_t batch, int64_t channels, int64_t spatial, double eps, double *bias_updates, double *scale_updates, double *mean_delta, double *variance_delta) noexcept nogil:
    h.bn_dk_backward_sums_f64(x, x_norm, delta, mean, variance, scales, batch, channels, spatial, eps, bias_updates, scale_updates, mean_delta, variance_delta)

cdef void bn_dk_backward_dx_eps_inside_f64(const double *x, const double *mean, const double *variance, const double *mean_delta, const double *variance_delta, const double *delta, const double *scales, int64_t batch, int64_t channels, int64_t spatial, double eps, double *out) noexcept nogil:
    h.bn_dk_backward_dx_eps_inside_f64(x, mean, variance, mean_delta, variance_delta, delta, scales, batch, channels, spatial, eps, out)

cdef void bn_dk_backward_dx_eps_outside_f64(const double *x, const double *mean, const double *variance, const double *mean_delta, const double *variance_delta, const double *delta, const double *scales, int64_t batch, int64_t channels, int64_t spatial, double eps, double *out) noexcept nogil:
    h.bn_dk_backward_dx_eps_outside_f64(x, mean, variance, mean_delta, variance_delta, delta, scales, batch, channels, spatial, eps, out)

cdef void bn_stats_f64(const double *x, int64_t batch, int64_t channels, int64_t spatial, double *mean, double *var) noexcept nogil:
    h.bn_stats_f64(x, batch, channels, spatial, mean, var)

cdef void bn_normalize_affine_f64(const double *x, const double *mean, const double *invstd, const double *weight, const double *bias, int64_t batch, int64_t channels, int64_t spatial, int relu, double *y) noexcept nogil:
    h.bn_normalize_affine_f64(x, mean, invstd, weight, bias, batch, channels, spatial, relu, y)

cdef void bn_rolling_update_f64(int64_t channels, double momentum, int64_t count, int64_t ddof, const double *mean, const double *var, double *running_mean, double *running_var) noexcept nogil:
    h.bn_rolling_update_f64(channels, momentum, count, ddof, mean, var, running_mean, running_var)

cdef void bn_backward_reduce_f64(const double *dy, const double *x, const double *mean, const double *invstd, const double *weight, const double *bias, int relu, int64_t batch, int64_t channels, int64_t spatial, double *sum_dy, double *sum_dy_xhat) noexcept nogil:
    h.bn_backward_reduce_f64(dy, x, mean, invstd, weight, bias, relu, batch, channels, spatial, sum_dy, sum_dy_xhat)

cdef void bn_backward_dx_f64(const double *dy, const double *x, const double *mean, const double *invstd, const double *weight, const double *bias, int relu, const double *sum_dy, const double *sum_dy_xhat, int64_t batch, int64_t channels, int64_t spatial, double *dx) noexcept nogil:
    h.bn_backward_dx_f64(dy, x, mean, invstd, weight, bias, relu, sum_dy, sum_dy_xhat, batch, channels, spatial, dx)

cdef void bn_stats_nhwc_f32(const float *x, int64_t batch, int64_t channels, int64_t spatial, double *mean, double *var) noexcept nogil:
    h.bn_stats_nhwc_f32(x, batch, channels, spatial, mean, var)

cdef void bn_normalize_affine_nhwc_f32(const float *x, const double *mean, const double *invstd, const float *weight, const float *bias, int64_t batch, int64_t channels, int64_t spatial, int relu, float *y) noexcept nogil:
    h.bn_normalize_affine_nhwc_f32(x, mean, invstd, weight, bias, batch, channels, spatial, relu, y)

cdef void bn_backward_reduce_nhwc_f32(const float *dy, const float *x, const double *mean, const double *invstd, const float *weight, const float *bias, int relu, int64_t batch, int64_t channels, int64_t spatial, double *sum_dy, double *sum_dy_xhat) noexcept nogil:
    h.bn_backward_reduce_nhwc_f32(dy, x, mean, invstd, weight, bias, relu, batch, channels, spatial, sum_dy, sum_dy_xhat)

cdef void bn_backward_dx_nhwc_f32(const float *dy, const float *x, const double *mean, const double *invstd, const float *weight, const float *bias, int relu, const double *sum_dy, const double *sum_dy_xhat, int64_t batch, int64_t channels, int64_t spatial, float *dx) noexcept nogil:
    h.bn_backward_dx_nhwc_f32(dy, x, mean, invstd, weight, bias, relu, sum_dy, sum_dy_xhat, batch, channels, spatial, dx)

cdef void bn_stats_nhwc_f64(const double *x, int64_t batch, int64_t channels, int64_t spatial, double *mean, double *var) noexcept nogil:
    h.bn_stats_nhwc_f64(x, batch, channels, spatial, mean, var)

cdef void bn_normalize_affine_nhwc_f64(const double *x, const double *mean, const double *invstd, const double *weight, const double *bias, int64_t batch, int64_t channels, int64_t spatial, int relu, double *y) noexcept nogil:
    h.bn_normalize_affine_nhwc_f64(x, mean, invstd, weight, bias, batch, channels, spatial, relu, y)

cdef void bn_backward_reduce_nhwc_f64(const double *dy, const double *x, const double *mean, const double *invstd, const double *weight, const double *bias, int relu, int64_t batch, int64_t channels, int64_t spatial, double *sum_dy, double *sum_dy_xhat) noexcept nogil:
    h.bn_backward_reduce_nhwc_f64(dy, x, mean, invstd, weight, bias, relu, batch, channels, spatial, sum_dy, sum_dy_xhat)

cdef void bn_backward_dx_nhwc_f64(const double *dy, const double *x, const double *mean, const double *invstd, const double *weight, const double *bias, int relu, const double *sum_dy, const double *sum_dy_xhat, int64_t batch, int64_t channels, int64_t spatial, double *dx) noexcept nogil:
    h.bn_backward_dx_nhwc_f64(dy, x, mean, invstd, weight, bias, relu, sum_dy, sum_dy_xhat, batch, channels, spatial, dx)

cdef void bn_invstd(int64_t channels, const double *var, double eps, double *invstd) noexcept nogil:
    h.bn_invstd(channels, var, eps, invstd)

cdef void bn_merge_moments(int64_t parts, int64_t channels, const double *counts, const double *means, const double *m2s, double *mean, double *m2) noexcept nogil:
    h.bn_merge_moments(parts, channels, counts, means, m2s, mean, m2)

cdef void bn_im2col_f32(const float *x, int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t out_h, int64_t out_w, float *cols) noexcept nogil:
    h.bn_im2col_f32(x, batch, channels, height, width, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, out_h, out_w, cols)

cdef void bn_col2im_f32(const float *cols, int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t out_h, int64_t out_w, float *x) noexcept nogil:
    h.bn_col2im_f32(cols, batch, channels, height, width, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, out_h, out_w, x)

cdef void bn_max_pool2d_forward_f32(const float *x, int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t out_h, int64_t out_w, float *y, int64_t *indices) noexcept nogil:
    h.bn_max_pool2d_forward_f32(x, batch, channels, height, width, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, out_h, out_w, y, indices)

cdef void bn_max_pool2d_backward_f32(const float *dy, const int64_t *indices, int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t out_h, int64_t out_w, float *dx) noexcept nogil:
    h.bn_max_pool2d_backward_f32(dy, indices, batch, channels, height, width, out_h, out_w, dx)

cdef void bn_avg_pool2d_forward_f32(const float *x, int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t out_h, int64_t out_w, int count_include_pad, float *y) noexcept nogil:
    h.bn_avg_pool2d_forward_f32(x, batch, channels, height, width, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, out_h, out_w, count_include_pad, y)

cdef void bn_avg_pool2d_backward_f32(const float *dy, int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t out_h, int64_t out_w, int count_include_pad, float *dx) noexcept nogil:
    h.bn_avg_pool2d_backward_f32(dy, batch, channels, height, width, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, out_h, out_w, count_include_pad, dx)

cdef void bn_im2col_f64(const double *x, int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t out_h, int64_t out_w, double *cols) noexcept nogil:
    h.bn_im2col_f64(x, batch, channels, height, width, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, out_h, out_w, cols)

cdef void bn_col2im_f64(const double *cols, int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t out_h, int64_t out_w, double *x) noexcept nogil:
    h.bn_col2im_f64(cols, batch, channels, height, width, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, out_h, out_w, x)

cdef void bn_max_pool2d_forward_f64(const double *x, int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t out_h, int64_t out_w, double *y, int64_t *indices) noexcept nogil:
    h.bn_max_pool2d_forward_f64(x, batch, channels, height, width, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, out_h, out_w, y, indices)

cdef void bn_max_pool2d_backward_f64(const double *dy, const int64_t *indices, int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t out_h, int64_t out_w, double *dx) noexcept nogil:
    h.bn_max_pool2d_backward_f64(dy, indices, batch, channels, height, width, out_h, out_w, dx)

cdef void bn_avg_pool2d_forward_f64(const double *x, int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t out_h, int64_t out_w, int count_include_pad, double *y) noexcept nogil:
    h.bn_avg_pool2d_forward_f64(x, batch, channels, height, width, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, out_h, out_w, count_include_pad, y)

cdef void bn_avg_pool2d_backward_f64(const double *dy, int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t out_h, int64_t out_w, int count_include_pad, double *dx) noexcept nogil:
    h.bn_avg_pool2d_backward_f64(dy, batch, channels, height, width, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, out_h, out_w, count_include_pad, dx)

cdef int64_t bn_pool_output_size(int64_t size, int64_t kernel, int64_t stride, int64_t pad, int ceil_mode) noexcept nogil:
    return h.bn_pool_output_size(size, kernel, stride, pad, ceil_mode)

cdef int bn_pool_geometry_check(int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t out_h, int64_t out_w) noexcept nogil:
    return h.bn_pool_geometry_check(batch, channels, height, width, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, out_h, out_w)

cdef void bn_set_num_threads(int threads) noexcept nogil:
    h.bn_set_num_threads(threads)

cdef int bn_get_num_threads() noexcept nogil:
    return h.bn_get_num_threads()

cdef int bn_openmp_enabled() noexcept nogil:
    return h.bn_openmp_enabled()

cdef void bn_set_stream_min_bytes(int64_t bytes) noexcept nogil:
    h.bn_set_stream_min_bytes(bytes)

cdef int64_t bn_get_stream_min_bytes() noexcept nogil:
    return h.bn_get_stream_min_bytes()

cdef int bn_stream_available() noexcept nogil:
    return h.bn_stream_available()
