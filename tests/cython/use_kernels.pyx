# cython: language_level=3, boundscheck=False, wraparound=False
"""A user's extension that calls bnkernels' C kernels from Cython, without the
GIL (built and checked by tests/test_cimport.py). Tensors are passed as
(batch, channels, spatial) arrays, C-contiguous and not empty."""
import numpy as np

from bnkernels._kernels cimport (
    bn_dk_mean_f32, bn_dk_normalize_eps_outside_f32, bn_dk_variance_f32,
    bn_get_num_threads, bn_invstd, bn_normalize_affine_f64, bn_set_num_threads,
    bn_stats, bn_stats_f32, real)


def stats_f32(const float[:, :, ::1] x):
    """Per-channel mean and biased variance of float32 x, in float64."""
    mean, var = np.empty(x.shape[1]), np.empty(x.shape[1])
    cdef double[::1] m = mean, v = var
    with nogil:
        bn_stats_f32(&x[0, 0, 0], x.shape[0], x.shape[1], x.shape[2], &m[0], &v[0])
    return mean, var


def stats(const real[:, :, ::1] x):
    """Per-channel mean and biased variance of float32 or float64 x, in
    float64: the fused bn_stats, which calls bn_stats_f32 or bn_stats_f64."""
    mean, var = np.empty(x.shape[1]), np.empty(x.shape[1])
    cdef double[::1] m = mean, v = var
    with nogil:
        bn_stats(&x[0, 0, 0], x.shape[0], x.shape[1], x.shape[2], &m[0], &v[0])
    return mean, var


def normalize_affine_f64(const double[:, :, ::1] x, const double[::1] mean,
                         const double[::1] var, double eps, const double[::1] weight,
                         const double[::1] bias):
    """y = (x - mean) / sqrt(var + eps) * weight + bias, float64."""
    y = np.empty_like(np.asarray(x))
    invstd = np.empty(x.shape[1])
    cdef double[:, :, ::1] out = y
    cdef double[::1] k = invstd
    with nogil:
        bn_invstd(x.shape[1], &var[0], eps, &k[0])
        bn_normalize_affine_f64(&x[0, 0, 0], &mean[0], &k[0], &weight[0], &bias[0],
                                x.shape[0], x.shape[1], x.shape[2], 0, &out[0, 0, 0])
    return y


def darknet_normalize_f32(const float[:, :, ::1] x, float eps):
    """Darknet's mean_cpu, variance_cpu and normalize_cpu (pjreddie: eps
    outside the square root) of float32 x: (mean, variance, x_norm)."""
    mean, variance = np.empty(x.shape[1], np.float32), np.empty(x.shape[1], np.float32)
    x_norm = np.empty_like(np.asarray(x))
    cdef float[::1] m = mean, v = variance
    cdef float[:, :, ::1] out = x_norm
    with nogil:
        bn_dk_mean_f32(&x[0, 0, 0], x.shape[0], x.shape[1], x.shape[2], &m[0])
        bn_dk_variance_f32(&x[0, 0, 0], &m[0], x.shape[0], x.shape[1], x.shape[2], &v[0])
        bn_dk_normalize_eps_outside_f32(&x[0, 0, 0], &m[0], &v[0], x.shape[0], x.shape[1],
                                        x.shape[2], eps, &out[0, 0, 0])
    return mean, variance, x_norm


def set_num_threads(int threads):
    with nogil:
        bn_set_num_threads(threads)


def get_num_threads():
    return bn_get_num_threads()
