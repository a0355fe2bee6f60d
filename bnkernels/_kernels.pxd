"""The C kernels of csrc/bnkernels.h, for other Cython extensions to cimport.

Every kernel is declared for float32 (_f32) and float64 (_f64); the formulas are
documented in csrc/bnkernels.h, csrc/darknet.inc and csrc/standard.inc. All are
nogil, never raise and never allocate (the caller owns every buffer)::

    from bnkernels._kernels cimport bn_stats_f32

    with nogil:
        bn_stats_f32(&x[0, 0, 0], batch, channels, spatial, &mean[0], &var[0])

Build with cythonize(..., include_path=[bnkernels.get_include()]); nothing to
link: the names and signatures below are those of the C kernels, but each is a
cdef function of bnkernels._kernels (defined in bnkernels/_capi.pxi) that calls
its kernel. Cython exports them through the module's __pyx_capi__, and a module
that cimports them takes their addresses from there when it is imported (it
imports bnkernels._kernels then), so it calls the one copy of the kernels that
bnkernels uses, with the same thread setting (bn_set_num_threads).

A new C kernel is declared in three places besides csrc/bnkernels.h: its extern
declaration in bnkernels/bnkernels_h.pxd, its cdef declaration here, and its
one-line forwarder in bnkernels/_capi.pxi.
"""
from libc.stdint cimport int64_t

# float
cdef void bn_dk_mean_f32(const float *x, int64_t batch, int64_t channels, int64_t spatial, float *mean) noexcept nogil
cdef void bn_dk_variance_f32(const float *x, const float *mean, int64_t batch, int64_t channels, int64_t spatial, float *variance) noexcept nogil
cdef void bn_dk_rolling_update_f32(int64_t channels, float keep, float take, const float *stat, float *rolling) noexcept nogil
cdef void bn_dk_normalize_eps_outside_f32(const float *x, const float *mean, const float *variance, int64_t batch, int64_t channels, int64_t spatial, float eps, float *out) noexcept nogil
cdef void bn_dk_normalize_eps_inside_f32(const float *x, const float *mean, const float *variance, int64_t batch, int64_t channels, int64_t spatial, float eps, float *out) noexcept nogil
cdef void bn_dk_scale_bias_f32(const float *x, const float *scales, int64_t batch, int64_t channels, int64_t spatial, float *out) noexcept nogil
cdef void bn_dk_add_bias_f32(const float *x, const float *biases, int64_t batch, int64_t channels, int64_t spatial, float *out) noexcept nogil
cdef void bn_dk_scale_add_bias_f32(const float *x, const float *scales, const float *biases, int64_t batch, int64_t channels, int64_t spatial, float *out) noexcept nogil
cdef void bn_dk_backward_bias_f32(const float *delta, int64_t batch, int64_t channels, int64_t spatial, float *bias_updates) noexcept nogil
cdef void bn_dk_backward_scale_f32(const float *x_norm, const float *delta, int64_t batch, int64_t channels, int64_t spatial, float *scale_updates) noexcept nogil
cdef void bn_dk_mean_delta_f32(const float *delta, const float *variance, int64_t batch, int64_t channels, int64_t spatial, float eps, float *mean_delta) noexcept nogil
cdef void bn_dk_variance_delta_f32(const float *x, const float *delta, const float *mean, const float *variance, int64_t batch, int64_t channels, int64_t spatial, float eps, float *variance_delta) noexcept nogil
cdef void bn_dk_normalize_delta_eps_inside_f32(const float *x, const float *mean, const float *variance, const float *mean_delta, const float *variance_delta, const float *delta, int64_t batch, int64_t channels, int64_t spatial, float eps, float *out) noexcept nogil
cdef void bn_dk_normalize_delta_eps_outside_f32(const float *x, const float *mean, const float *variance, const float *mean_delta, const float *variance_delta, const float *delta, int64_t batch, int64_t channels, int64_t spatial, float eps, float *out) noexcept nogil
cdef void bn_dk_backward_sums_f32(const float *x, const float *x_norm, const float *delta, const float *mean, const float *variance, const float *scales, int64_t batch, int64_t channels, int64_t spatial, float eps, float *bias_updates, float *scale_updates, float *mean_delta, float *variance_delta) noexcept nogil
cdef void bn_dk_backward_dx_eps_inside_f32(const float *x, const float *mean, const float *variance, const float *mean_delta, const float *variance_delta, const float *delta, const float *scales, int64_t batch, int64_t channels, int64_t spatial, float eps, float *out) noexcept nogil
cdef void bn_dk_backward_dx_eps_outside_f32(const float *x, const float *mean, const float *variance, const float *mean_delta, const float *variance_delta, const float *delta, const float *scales, int64_t batch, int64_t channels, int64_t spatial, float eps, float *out) noexcept nogil
cdef void bn_stats_f32(const float *x, int64_t batch, int64_t channels, int64_t spatial, double *mean, double *var) noexcept nogil
cdef void bn_normalize_affine_f32(const float *x, const double *mean, const double *invstd, const float *weight, const float *bias, int64_t batch, int64_t channels, int64_t spatial, int relu, float *y) noexcept nogil
cdef void bn_rolling_update_f32(int64_t channels, double momentum, int64_t count, int64_t ddof, const double *mean, const double *var, float *running_mean, float *running_var) noexcept nogil
cdef void bn_backward_reduce_f32(const float *dy, const float *x, const double *mean, const double *invstd, const float *weight, const float *bias, int relu, int64_t batch, int64_t channels, int64_t spatial, double *sum_dy, double *sum_dy_xhat) noexcept nogil
cdef void bn_backward_dx_f32(const float *dy, const float *x, const double *mean, const double *invstd, const float *weight, const float *bias, int relu, const double *sum_dy, const double *sum_dy_xhat, int64_t batch, int64_t channels, int64_t spatial, float *dx) noexcept nogil
# double
cdef void bn_dk_mean_f64(const double *x, int64_t batch, int64_t channels, int64_t spatial, double *mean) noexcept nogil
cdef void bn_dk_variance_f64(const double *x, const double *mean, int64_t batch, int64_t channels, int64_t spatial, double *variance) noexcept nogil
cdef void bn_dk_rolling_update_f64(int64_t channels, double keep, double take, const double *stat, double *rolling) noexcept nogil
cdef void bn_dk_normalize_eps_outside_f64(const double *x, const double *mean, const double *variance, int64_t batch, int64_t channels, int64_t spatial, double eps, double *out) noexcept nogil
cdef void bn_dk_normalize_eps_inside_f64(const double *x, const double *mean, const double *variance, int64_t batch, int64_t channels, int64_t spatial, double eps, double *out) noexcept nogil
cdef void bn_dk_scale_bias_f64(const double *x, const double *scales, int64_t batch, int64_t channels, int64_t spatial, double *out) noexcept nogil
cdef void bn_dk_add_bias_f64(const double *x, const double *biases, int64_t batch, int64_t channels, int64_t spatial, double *out) noexcept nogil
cdef void bn_dk_scale_add_bias_f64(const double *x, const double *scales, const double *biases, int64_t batch, int64_t channels, int64_t spatial, double *out) noexcept nogil
cdef void bn_dk_backward_bias_f64(const double *delta, int64_t batch, int64_t channels, int64_t spatial, double *bias_updates) noexcept nogil
cdef void bn_dk_backward_scale_f64(const double *x_norm, const double *delta, int64_t batch, int64_t channels, int64_t spatial, double *scale_updates) noexcept nogil
cdef void bn_dk_mean_delta_f64(const double *delta, const double *variance, int64_t batch, int64_t channels, int64_t spatial, double eps, double *mean_delta) noexcept nogil
cdef void bn_dk_variance_delta_f64(const double *x, const double *delta, const double *mean, const double *variance, int64_t batch, int64_t channels, int64_t spatial, double eps, double *variance_delta) noexcept nogil
cdef void bn_dk_normalize_delta_eps_inside_f64(const double *x, const double *mean, const double *variance, const double *mean_delta, const double *variance_delta, const double *delta, int64_t batch, int64_t channels, int64_t spatial, double eps, double *out) noexcept nogil
cdef void bn_dk_normalize_delta_eps_outside_f64(const double *x, const double *mean, const double *variance, const double *mean_delta, const double *variance_delta, const double *delta, int64_t batch, int64_t channels, int64_t spatial, double eps, double *out) noexcept nogil
cdef void bn_dk_backward_sums_f64(const double *x, const double *x_norm, const double *delta, const double *mean, const double *variance, const double *scales, int64_t batch, int64_t channels, int64_t spatial, double eps, double *bias_updates, double *scale_updates, double *mean_delta, double *variance_delta) noexcept nogil
cdef void bn_dk_backward_dx_eps_inside_f64(const double *x, const double *mean, const double *variance, const double *mean_delta, const double *variance_delta, const double *delta, const double *scales, int64_t batch, int64_t channels, int64_t spatial, double eps, double *out) noexcept nogil
cdef void bn_dk_backward_dx_eps_outside_f64(const double *x, const double *mean, const double *variance, const double *mean_delta, const double *variance_delta, const double *delta, const double *scales, int64_t batch, int64_t channels, int64_t spatial, double eps, double *out) noexcept nogil
cdef void bn_stats_f64(const double *x, int64_t batch, int64_t channels, int64_t spatial, double *mean, double *var) noexcept nogil
cdef void bn_normalize_affine_f64(const double *x, const double *mean, const double *invstd, const double *weight, const double *bias, int64_t batch, int64_t channels, int64_t spatial, int relu, double *y) noexcept nogil
cdef void bn_rolling_update_f64(int64_t channels, double momentum, int64_t count, int64_t ddof, const double *mean, const double *var, double *running_mean, double *running_var) noexcept nogil
cdef void bn_backward_reduce_f64(const double *dy, const double *x, const double *mean, const double *invstd, const double *weight, const double *bias, int relu, int64_t batch, int64_t channels, int64_t spatial, double *sum_dy, double *sum_dy_xhat) noexcept nogil
cdef void bn_backward_dx_f64(const double *dy, const double *x, const double *mean, const double *invstd, const double *weight, const double *bias, int relu, const double *sum_dy, const double *sum_dy_xhat, int64_t batch, int64_t channels, int64_t spatial, double *dx) noexcept nogil
# channels-last (NHWC) twins of the standard kernels, the same arguments
cdef void bn_stats_nhwc_f32(const float *x, int64_t batch, int64_t channels, int64_t spatial, double *mean, double *var) noexcept nogil
cdef void bn_normalize_affine_nhwc_f32(const float *x, const double *mean, const double *invstd, const float *weight, const float *bias, int64_t batch, int64_t channels, int64_t spatial, int relu, float *y) noexcept nogil
cdef void bn_backward_reduce_nhwc_f32(const float *dy, const float *x, const double *mean, const double *invstd, const float *weight, const float *bias, int relu, int64_t batch, int64_t channels, int64_t spatial, double *sum_dy, double *sum_dy_xhat) noexcept nogil
cdef void bn_backward_dx_nhwc_f32(const float *dy, const float *x, const double *mean, const double *invstd, const float *weight, const float *bias, int relu, const double *sum_dy, const double *sum_dy_xhat, int64_t batch, int64_t channels, int64_t spatial, float *dx) noexcept nogil
cdef void bn_stats_nhwc_f64(const double *x, int64_t batch, int64_t channels, int64_t spatial, double *mean, double *var) noexcept nogil
cdef void bn_normalize_affine_nhwc_f64(const double *x, const double *mean, const double *invstd, const double *weight, const double *bias, int64_t batch, int64_t channels, int64_t spatial, int relu, double *y) noexcept nogil
cdef void bn_backward_reduce_nhwc_f64(const double *dy, const double *x, const double *mean, const double *invstd, const double *weight, const double *bias, int relu, int64_t batch, int64_t channels, int64_t spatial, double *sum_dy, double *sum_dy_xhat) noexcept nogil
cdef void bn_backward_dx_nhwc_f64(const double *dy, const double *x, const double *mean, const double *invstd, const double *weight, const double *bias, int relu, const double *sum_dy, const double *sum_dy_xhat, int64_t batch, int64_t channels, int64_t spatial, double *dx) noexcept nogil
cdef void bn_invstd(int64_t channels, const double *var, double eps, double *invstd) noexcept nogil
cdef void bn_merge_moments(int64_t parts, int64_t channels, const double *counts, const double *means, const double *m2s, double *mean, double *m2) noexcept nogil
# convolution and pooling (conv_pool.c)
cdef void bn_im2col_f32(const float *x, int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t out_h, int64_t out_w, float *cols) noexcept nogil
cdef void bn_col2im_f32(const float *cols, int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t out_h, int64_t out_w, float *x) noexcept nogil
cdef void bn_max_pool2d_forward_f32(const float *x, int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t out_h, int64_t out_w, float *y, int64_t *indices) noexcept nogil
cdef void bn_max_pool2d_backward_f32(const float *dy, const int64_t *indices, int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t out_h, int64_t out_w, float *dx) noexcept nogil
cdef void bn_avg_pool2d_forward_f32(const float *x, int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t out_h, int64_t out_w, int count_include_pad, float *y) noexcept nogil
cdef void bn_avg_pool2d_backward_f32(const float *dy, int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t out_h, int64_t out_w, int count_include_pad, float *dx) noexcept nogil
cdef void bn_im2col_f64(const double *x, int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t out_h, int64_t out_w, double *cols) noexcept nogil
cdef void bn_col2im_f64(const double *cols, int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t out_h, int64_t out_w, double *x) noexcept nogil
cdef void bn_max_pool2d_forward_f64(const double *x, int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t out_h, int64_t out_w, double *y, int64_t *indices) noexcept nogil
cdef void bn_max_pool2d_backward_f64(const double *dy, const int64_t *indices, int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t out_h, int64_t out_w, double *dx) noexcept nogil
cdef void bn_avg_pool2d_forward_f64(const double *x, int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t out_h, int64_t out_w, int count_include_pad, double *y) noexcept nogil
cdef void bn_avg_pool2d_backward_f64(const double *dy, int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t out_h, int64_t out_w, int count_include_pad, double *dx) noexcept nogil
cdef int64_t bn_pool_output_size(int64_t size, int64_t kernel, int64_t stride, int64_t pad, int ceil_mode) noexcept nogil
cdef int bn_pool_geometry_check(int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t out_h, int64_t out_w) noexcept nogil

cdef void bn_set_num_threads(int threads) noexcept nogil
cdef int bn_get_num_threads() noexcept nogil
cdef int bn_openmp_enabled() noexcept nogil
cdef void bn_set_stream_min_bytes(int64_t bytes) noexcept nogil
cdef int64_t bn_get_stream_min_bytes() noexcept nogil
cdef int bn_stream_available() noexcept nogil

# Darknet -Ofast backward kernels (bnkernels/_darknet_ofast.pxi)
cdef void bn_dk_ofast_backward_bias_f32(const float *delta, int64_t batch, int64_t channels, int64_t spatial, float *bias_updates) noexcept nogil
cdef void bn_dk_ofast_backward_scale_f32(const float *x_norm, const float *delta, int64_t batch, int64_t channels, int64_t spatial, float *scale_updates) noexcept nogil
cdef void bn_dk_ofast_normalize_delta_eps_inside_f32(const float *x, const float *mean, const float *variance, const float *mean_delta, const float *variance_delta, const float *delta, int64_t batch, int64_t channels, int64_t spatial, float eps, float *out) noexcept nogil
cdef void bn_dk_ofast_normalize_delta_eps_outside_f32(const float *x, const float *mean, const float *variance, const float *mean_delta, const float *variance_delta, const float *delta, int64_t batch, int64_t channels, int64_t spatial, float eps, float *out) noexcept nogil
cdef void bn_dk_ofast_backward_sums_f32(const float *x, const float *x_norm, const float *delta, const float *mean, const float *variance, const float *scales, int64_t batch, int64_t channels, int64_t spatial, float eps, float *bias_updates, float *scale_updates, float *mean_delta, float *variance_delta) noexcept nogil
cdef void bn_dk_ofast_backward_dx_eps_inside_f32(const float *x, const float *mean, const float *variance, const float *mean_delta, const float *variance_delta, const float *delta, const float *scales, int64_t batch, int64_t channels, int64_t spatial, float eps, float *out) noexcept nogil
cdef void bn_dk_ofast_backward_dx_eps_outside_f32(const float *x, const float *mean, const float *variance, const float *mean_delta, const float *variance_delta, const float *delta, const float *scales, int64_t batch, int64_t channels, int64_t spatial, float eps, float *out) noexcept nogil
cdef void bn_dk_ofast_backward_bias_f64(const double *delta, int64_t batch, int64_t channels, int64_t spatial, double *bias_updates) noexcept nogil
cdef void bn_dk_ofast_backward_scale_f64(const double *x_norm, const double *delta, int64_t batch, int64_t channels, int64_t spatial, double *scale_updates) noexcept nogil
cdef void bn_dk_ofast_normalize_delta_eps_inside_f64(const double *x, const double *mean, const double *variance, const double *mean_delta, const double *variance_delta, const double *delta, int64_t batch, int64_t channels, int64_t spatial, double eps, double *out) noexcept nogil
cdef void bn_dk_ofast_normalize_delta_eps_outside_f64(const double *x, const double *mean, const double *variance, const double *mean_delta, const double *variance_delta, const double *delta, int64_t batch, int64_t channels, int64_t spatial, double eps, double *out) noexcept nogil
cdef void bn_dk_ofast_backward_sums_f64(const double *x, const double *x_norm, const double *delta, const double *mean, const double *variance, const double *scales, int64_t batch, int64_t channels, int64_t spatial, double eps, double *bias_updates, double *scale_updates, double *mean_delta, double *variance_delta) noexcept nogil
cdef void bn_dk_ofast_backward_dx_eps_inside_f64(const double *x, const double *mean, const double *variance, const double *mean_delta, const double *variance_delta, const double *delta, const double *scales, int64_t batch, int64_t channels, int64_t spatial, double eps, double *out) noexcept nogil
cdef void bn_dk_ofast_backward_dx_eps_outside_f64(const double *x, const double *mean, const double *variance, const double *mean_delta, const double *variance_delta, const double *delta, const double *scales, int64_t batch, int64_t channels, int64_t spatial, double eps, double *out) noexcept nogil
cdef void bn_dk_ofast_avx_backward_bias_f32(const float *delta, int64_t batch, int64_t channels, int64_t spatial, float *bias_updates) noexcept nogil
cdef void bn_dk_ofast_avx_backward_scale_f32(const float *x_norm, const float *delta, int64_t batch, int64_t channels, int64_t spatial, float *scale_updates) noexcept nogil
cdef void bn_dk_ofast_avx_backward_sums_f32(const float *x, const float *x_norm, const float *delta, const float *mean, const float *variance, const float *scales, int64_t batch, int64_t channels, int64_t spatial, float eps, float *bias_updates, float *scale_updates, float *mean_delta, float *variance_delta) noexcept nogil
cdef void bn_dk_ofast_avx_backward_bias_f64(const double *delta, int64_t batch, int64_t channels, int64_t spatial, double *bias_updates) noexcept nogil
cdef void bn_dk_ofast_avx_backward_scale_f64(const double *x_norm, const double *delta, int64_t batch, int64_t channels, int64_t spatial, double *scale_updates) noexcept nogil
cdef void bn_dk_ofast_avx_backward_sums_f64(const double *x, const double *x_norm, const double *delta, const double *mean, const double *variance, const double *scales, int64_t batch, int64_t channels, int64_t spatial, double eps, double *bias_updates, double *scale_updates, double *mean_delta, double *variance_delta) noexcept nogil
