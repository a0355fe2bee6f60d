"""Pure-NumPy twin of bnkernels: the same functions, written the NumPy way.

Every public function of ``bnkernels.darknet`` and ``bnkernels.batchnorm`` has
a twin here with the same signature, and so do the convolution and pooling
kernels of ``bnkernels._kernels`` (im2col, col2im, max and average pooling). They compute the same formulas with
ordinary NumPy expressions in the input's dtype (NumPy's pairwise sums, no
Darknet operation order), so in float64 they are the oracle the tests compare
the C kernels against, and in float32 they are the baseline the benchmarks
race. Read these first to learn the math.

One exception: with ``build="ofast"`` or ``"ofast-avx"``, backward_bias,
backward_scale_cpu and normalize_delta_cpu follow Darknet's -Ofast builds
operation by operation (their lane row sums, the double arithmetic of dx), so
they equal the C kernels bit for bit in both dtypes; the other kernels take
``build=`` and check it (-Ofast gives them the strict bits).
"""
import copy
from dataclasses import dataclass
import sys
from collections.abc import Sequence
from typing import Any, TypeVar
import warnings

import numpy as np
import numpy.typing as npt

from bnkernels import batchnorm as _batchnorm
from bnkernels import darknet as _darknet
from bnkernels._typing import FloatArray
from bnkernels.module import Module

_M = TypeVar("_M", bound=Module)
Pair = int | tuple[int, int]   # a kernel size, stride or padding: one for both axes, or (h, w)

__all__ = [
    "mean_cpu", "variance_cpu", "normalize_cpu", "scale_bias", "add_bias",
    "scale_add_bias", "rolling_update", "backward_bias", "backward_scale_cpu", "mean_delta_cpu",
    "variance_delta_cpu", "normalize_delta_cpu",
    "batch_norm_forward", "batch_norm_backward", "BatchNorm", "BatchNorm1d", "BatchNorm2d",
    "BatchNorm3d",
    "pool_output_size", "im2col", "col2im", "max_pool2d_forward", "max_pool2d_backward",
    "avg_pool2d_forward", "avg_pool2d_backward", "numpy_twin",
]

_AXES = (0, 2, 3)  # every axis but the channel axis of NCHW


def _per_channel(v):
    """A (C,) vector shaped to broadcast against (N, C, H, W)."""
    return np.asarray(v)[None, :, None, None]


def _count(x):
    return x.shape[0] * x.shape[2] * x.shape[3]


def _result(value, out, accumulate=False):
    if out is None:
        return value
    if accumulate:
        out += value
    else:
        out[...] = value
    return out


# ---------------------------------------------------------------------------
# Darknet's kernels (formulas of ../darknet_vectors/README.md, NumPy order)
# ---------------------------------------------------------------------------

def mean_cpu(x: FloatArray, *, out: FloatArray | None = None, build: str = "strict"
             ) -> FloatArray:
    _darknet.check_build(build)
    return _result(x.mean(axis=_AXES), out)


def variance_cpu(x: FloatArray, mean: FloatArray, *, out: FloatArray | None = None,
                 build: str = "strict") -> FloatArray:
    _darknet.check_build(build)
    squares = ((x - _per_channel(mean)) ** 2).sum(axis=_AXES)
    with np.errstate(divide="ignore", invalid="ignore"):  # n = 1: 0/0 = NaN, like Darknet
        return _result(squares / x.dtype.type(_count(x) - 1), out)


def normalize_cpu(x: FloatArray, mean: FloatArray, variance: FloatArray, *,
                  numerics: str = "darknet", eps: float | None = None,
                  out: FloatArray | None = None, flavor: str | None = None,
                  build: str = "strict") -> FloatArray:
    numerics = _darknet.check_numerics(numerics, flavor)
    _darknet.check_build(build)
    eps = _darknet.forward_eps(numerics) if eps is None else eps
    eps = x.dtype.type(eps)
    if _darknet.eps_inside_sqrt(numerics, "forward"):
        denom = np.sqrt(variance + eps)
    else:
        denom = np.sqrt(variance) + eps
    return _result((x - _per_channel(mean)) / _per_channel(denom), out)


def scale_bias(x: FloatArray, scales: FloatArray, *, out: FloatArray | None = None,
               build: str = "strict") -> FloatArray:
    _darknet.check_build(build)
    return _result(x * _per_channel(scales), out)


def add_bias(x: FloatArray, biases: FloatArray, *, out: FloatArray | None = None,
             build: str = "strict") -> FloatArray:
    _darknet.check_build(build)
    return _result(x + _per_channel(biases), out)


def scale_add_bias(x: FloatArray, scales: FloatArray, biases: FloatArray, *,
                   out: FloatArray | None = None, build: str = "strict") -> FloatArray:
    _darknet.check_build(build)
    return _result(x * _per_channel(scales) + _per_channel(biases), out)


def rolling_update(rolling: FloatArray, stat: FloatArray, *, momentum: float | None = None,
                   numerics: str = "darknet", flavor: str | None = None,
                   build: str = "strict") -> FloatArray:
    numerics = _darknet.check_numerics(numerics, flavor)
    _darknet.check_build(build)
    m = _darknet.default_momentum(numerics) if momentum is None else momentum
    rolling *= rolling.dtype.type(1 - m)
    rolling += rolling.dtype.type(m) * stat
    return rolling


def _ofast_lanes(p: FloatArray, build: str) -> tuple[FloatArray | None, FloatArray]:
    """-Ofast's partial sums of each (b, c) row of p, (N, C, S) in p's dtype:
    (lanes, tail) where lanes[b, c] = (l0 + l2) + (l1 + l3) (None when there
    are no lanes) and tail the values after the lanes'.
    "ofast": lane j is the running sum of p[b, c, 4k + j] over the first
    4 * (S // 4) values (none when S < 4).
    "ofast-avx": eight running sums e_j over the first 8 * (S // 8) values,
    lane j = e_j + e_(j+4), then p[b, c, q + j] added if at least four values
    remain after them (q the count so far)."""
    width = 8 if build == "ofast-avx" else 4
    spatial = p.shape[2]
    q = spatial - spatial % width if spatial >= width else 0
    lanes = np.zeros(p.shape[:2] + (width,), p.dtype)
    for k in range(0, q, width):
        lanes += p[:, :, k:k + width]
    if width == 8:
        lanes = lanes[..., :4] + lanes[..., 4:]
        if spatial - q >= 4:
            lanes = lanes + p[:, :, q:q + 4]
            q += 4
    if not q:
        return None, p
    return (lanes[..., 0] + lanes[..., 2]) + (lanes[..., 1] + lanes[..., 3]), p[:, :, q:]


def _ofast_bias(delta: FloatArray, build: str) -> FloatArray:
    """backward_bias + sum_array, -Ofast: row = lanes + tail[0] + ... (left to
    right), then the rows added in order of b."""
    lanes, tail = _ofast_lanes(delta.reshape(delta.shape[0], delta.shape[1], -1), build)
    rows = np.zeros(tail.shape[:2], delta.dtype) if lanes is None else lanes
    for s in range(tail.shape[2]):
        rows = rows + tail[:, :, s]
    total = np.zeros(delta.shape[1], delta.dtype)
    for b in range(delta.shape[0]):
        total = total + rows[b]
    return total


def _ofast_scale(x_norm: FloatArray, delta: FloatArray, build: str) -> FloatArray:
    """backward_scale_cpu, -Ofast: for each b in order, acc += lanes of the
    row's products, then each of its tail products."""
    products = (delta * x_norm).reshape(delta.shape[0], delta.shape[1], -1)
    lanes, tail = _ofast_lanes(products, build)
    acc = np.zeros(delta.shape[1], delta.dtype)
    for b in range(delta.shape[0]):
        if lanes is not None:
            acc = acc + lanes[b]
        for s in range(tail.shape[2]):
            acc = acc + tail[b, :, s]
    return acc


def backward_bias(delta: FloatArray, *, out: FloatArray | None = None,
                  accumulate: bool = False, build: str = "strict") -> FloatArray:
    if _darknet.check_build(build) != "strict":
        return _result(_ofast_bias(delta, build), out, accumulate)
    return _result(delta.sum(axis=_AXES), out, accumulate)


def backward_scale_cpu(x_norm: FloatArray, delta: FloatArray, *,
                       out: FloatArray | None = None, accumulate: bool = False,
                       build: str = "strict") -> FloatArray:
    if _darknet.check_build(build) != "strict":
        return _result(_ofast_scale(x_norm, delta, build), out, accumulate)
    return _result((delta * x_norm).sum(axis=_AXES), out, accumulate)


def mean_delta_cpu(delta: FloatArray, variance: FloatArray, *, eps: float | None = None,
                   out: FloatArray | None = None, build: str = "strict") -> FloatArray:
    _darknet.check_build(build)
    eps = delta.dtype.type(_darknet.BACKWARD_EPS if eps is None else eps)
    return _result(delta.sum(axis=_AXES) * (-1 / np.sqrt(variance + eps)), out)


def variance_delta_cpu(x: FloatArray, delta: FloatArray, mean: FloatArray,
                       variance: FloatArray, *, eps: float | None = None,
                       out: FloatArray | None = None, build: str = "strict") -> FloatArray:
    _darknet.check_build(build)
    eps = x.dtype.type(_darknet.BACKWARD_EPS if eps is None else eps)
    total = (delta * (x - _per_channel(mean))).sum(axis=_AXES)
    return _result(total * (-0.5 * (variance + eps) ** -1.5), out)


def _ofast_normalize_delta(x: FloatArray, mean: FloatArray, variance: FloatArray,
                           mean_delta: FloatArray, variance_delta: FloatArray,
                           delta: FloatArray, inside: bool, eps: Any) -> FloatArray:
    """normalize_delta_cpu as -Ofast builds it, in Darknet's own precision:
    fl((g / D + (vd * 2 * fl(x - mean)) / n) + fl(md * fl(1 / fl(n)))) with
    the outer sums in double and D = sqrt(fl(var + eps)) (inside) or
    sqrt(var) + eps (outside), in double."""
    t = x.dtype.type
    f64 = np.float64
    if inside:
        denom = np.sqrt((variance + eps).astype(f64))
    else:
        denom = np.sqrt(variance.astype(f64)) + f64(eps)
    n = _count(x)
    inv_n = t(1) / t(n)
    centered = (x - _per_channel(mean)).astype(f64)
    direct = delta.astype(f64) / _per_channel(denom)
    via_var = (_per_channel(variance_delta.astype(f64)) * 2.0) * centered / f64(n)
    mean_term = (mean_delta * inv_n).astype(f64)
    return ((direct + via_var) + _per_channel(mean_term)).astype(x.dtype)


def normalize_delta_cpu(x: FloatArray, mean: FloatArray, variance: FloatArray,
                        mean_delta: FloatArray, variance_delta: FloatArray, delta: FloatArray,
                        *, numerics: str = "darknet", eps: float | None = None,
                        out: FloatArray | None = None, flavor: str | None = None,
                        build: str = "strict") -> FloatArray:
    numerics = _darknet.check_numerics(numerics, flavor)
    eps = x.dtype.type(_darknet.BACKWARD_EPS if eps is None else eps)
    if _darknet.check_build(build) != "strict":
        return _result(_ofast_normalize_delta(
            x, mean, variance, mean_delta, variance_delta, delta,
            _darknet.eps_inside_sqrt(numerics, "backward"), eps), out)
    if _darknet.eps_inside_sqrt(numerics, "backward"):
        denom = np.sqrt(variance + eps)
    else:
        denom = np.sqrt(variance) + eps
    n = x.dtype.type(_count(x))
    dx = (delta / _per_channel(denom)
          + _per_channel(variance_delta) * 2 * (x - _per_channel(mean)) / n
          + _per_channel(mean_delta) / n)
    return _result(dx, out)


# ---------------------------------------------------------------------------
# batch norm, forward and backward
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Saved:
    """What the reference backward needs: the forward's input and statistics."""
    numerics: str
    training: bool
    x: np.ndarray
    weight: np.ndarray | None
    has_bias: bool
    mean: np.ndarray
    variance: np.ndarray
    eps: float
    positive: np.ndarray | None = None  # the fused ReLU's mask, y > 0
    nhwc: bool = False  # the caller's tensors are channels last; x is kept as NCHW
    shape: tuple = ()  # the caller's shape; x is kept as (N, C, spatial size, 1)


def _to_nchw(a, nhwc):
    """An (N, C, *spatial) array (with nhwc, (N, *spatial, C)) as
    (N, C, S, 1), S the spatial size: every rank through one 4-D formula."""
    if a.ndim < 2:
        raise ValueError(f"x must have at least 2 axes, got shape {a.shape}")
    a = np.moveaxis(a, -1, 1) if nhwc else a
    return a.reshape(a.shape[0], a.shape[1], -1, 1)


def _from_nchw(a, nhwc, shape):
    """_to_nchw's inverse: a back in the caller's shape and layout."""
    if nhwc:
        return np.moveaxis(a.reshape((shape[0], shape[-1]) + tuple(shape[1:-1])), 1, -1)
    return a.reshape(shape)


def batch_norm_forward(x: FloatArray, weight: FloatArray | None, bias: FloatArray | None,
                       running_mean: Any, running_var: Any, *,
                       training: bool = True, momentum: float | None = None,
                       eps: float | None = None, numerics: str = "standard",
                       activation: str | None = None, out: FloatArray | None = None,
                       workspace: FloatArray | None = None, layout: str = "NCHW",
                       running_var_ddof: int = 1) -> tuple[FloatArray, Any]:
    """batch_norm_forward in NumPy (workspace is accepted and not needed).
    Every rank and layout is computed as NCHW on (N, C, spatial size, 1)."""
    relu = _batchnorm.check_activation(activation)
    numerics = _batchnorm.check_numerics(numerics)
    nhwc = _batchnorm.check_layout(layout, numerics)
    shape = np.shape(x)
    x = _to_nchw(np.asarray(x), nhwc)
    default_eps, default_momentum = _batchnorm.defaults(numerics)
    eps = default_eps if eps is None else eps
    momentum = default_momentum if momentum is None else momentum
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var must be given together")
    use_batch_stats = training or running_mean is None
    if running_mean is None and not training:
        raise ValueError("training=False needs running_mean and running_var")
    n = _count(x)
    weight_ = np.ones(x.shape[1], x.dtype) if weight is None else weight
    bias_ = np.zeros(x.shape[1], x.dtype) if bias is None else bias

    if numerics == "standard":
        if use_batch_stats and n == 1:
            raise ValueError("Expected more than 1 value per channel when training")
        if use_batch_stats:
            mean, var = x.mean(axis=_AXES), x.var(axis=_AXES)
        else:
            mean, var = running_mean, running_var
        x_hat = (x - _per_channel(mean)) / np.sqrt(_per_channel(var) + x.dtype.type(eps))
        y = x_hat * _per_channel(weight_) + _per_channel(bias_)
        if training and running_mean is not None and n > 0:
            tracked = var * x.dtype.type(n / (n - running_var_ddof))
            running_mean[...] = (1 - momentum) * running_mean + momentum * mean
            running_var[...] = (1 - momentum) * running_var + momentum * tracked
    else:
        if use_batch_stats:
            if n == 1:
                warnings.warn("one value per channel: Darknet's variance is NaN",
                              RuntimeWarning, stacklevel=2)
            mean = mean_cpu(x)
            var = variance_cpu(x, mean)
        else:
            mean, var = running_mean, running_var
        fork = _darknet.split_numerics(numerics)[0]
        x_hat = normalize_cpu(x, mean, var, numerics=fork, eps=eps)
        y = add_bias(scale_bias(x_hat, weight_), bias_)
        if training and running_mean is not None and n > 0:
            rolling_update(running_mean, mean, momentum=momentum, numerics=fork)
            rolling_update(running_var, var, momentum=momentum, numerics=fork)
    y = y.astype(x.dtype, copy=False)
    positive = None
    if relu:
        positive = y > 0
        y = np.where(y < 0, x.dtype.type(0), y)
    saved = Saved(numerics, use_batch_stats, x, weight, bias is not None,
                  mean, var, eps, positive, nhwc, shape)
    return _result(_from_nchw(y, nhwc, shape), out), saved


def batch_norm_backward(dy: FloatArray, saved: Any, *, out: FloatArray | None = None
                        ) -> tuple[FloatArray, FloatArray | None, FloatArray | None]:
    x, n = saved.x, _count(saved.x)
    dy = _to_nchw(np.asarray(dy), saved.nhwc)
    if dy.shape != x.shape:
        raise ValueError(f"dy has shape {np.shape(dy)}, expected {saved.shape}")
    if saved.positive is not None:  # ReLU's gradient: dy where y > 0
        dy = np.where(saved.positive, dy, dy.dtype.type(0))
    weight = np.ones(x.shape[1], x.dtype) if saved.weight is None else saved.weight
    if saved.numerics == "standard":
        invstd = 1 / np.sqrt(saved.variance + x.dtype.type(saved.eps))
        x_hat = (x - _per_channel(saved.mean)) * _per_channel(invstd)
        dbias = dy.sum(axis=_AXES)
        dweight = (dy * x_hat).sum(axis=_AXES)
        if saved.training:
            dx = (_per_channel(weight * invstd / n)
                  * (n * dy - _per_channel(dbias) - x_hat * _per_channel(dweight)))
        else:
            dx = dy * _per_channel(weight * invstd)
    else:
        if not saved.training:
            raise ValueError("Darknet numerics define the backward only after a "
                             "training forward")
        fork, build = _darknet.split_numerics(saved.numerics)
        x_hat = normalize_cpu(x, saved.mean, saved.variance, numerics=fork, eps=saved.eps)
        dbias = backward_bias(dy, build=build)
        dweight = backward_scale_cpu(x_hat, dy, build=build)
        scaled = scale_bias(dy, weight)
        md = mean_delta_cpu(scaled, saved.variance)
        vd = variance_delta_cpu(x, scaled, saved.mean, saved.variance)
        dx = normalize_delta_cpu(x, saved.mean, saved.variance, md, vd, scaled,
                                 numerics=fork, build=build)
    return (_result(_from_nchw(dx.astype(x.dtype, copy=False), saved.nhwc, saved.shape),
                    out),
            dweight.astype(x.dtype) if saved.weight is not None else None,
            dbias.astype(x.dtype) if saved.has_bias else None)


class BatchNorm(_batchnorm.BatchNorm):
    """The layer of bnkernels.BatchNorm, running on this module's functions."""
    _forward = staticmethod(batch_norm_forward)
    _backward = staticmethod(batch_norm_backward)


class BatchNorm1d(BatchNorm, _batchnorm.BatchNorm1d):
    """bnkernels.BatchNorm1d on this module's functions."""


class BatchNorm2d(BatchNorm, _batchnorm.BatchNorm2d):
    """bnkernels.BatchNorm2d on this module's functions."""


class BatchNorm3d(BatchNorm, _batchnorm.BatchNorm3d):
    """bnkernels.BatchNorm3d on this module's functions."""


# ---------------------------------------------------------------------------
# Convolution helpers and pooling (bnkernels._kernels' im2col, col2im,
# max_pool2d_*, avg_pool2d_*), PyTorch's output sizes and divisors. A window
# of output (oh, ow) covers rows oh*sh - ph ... + kh - 1 and columns
# ow*sw - pw ... + kw - 1 of x; _windows views them all, _fold is its adjoint.
# ---------------------------------------------------------------------------

def _pair(v):
    return (int(v), int(v)) if np.ndim(v) == 0 else tuple(int(a) for a in v)


def pool_output_size(size: int, kernel: int, stride: int, padding: int, *, ceil_mode: bool
                     ) -> int:
    """PyTorch's number of windows along one axis (a convolution's without ceil_mode)."""
    out = (size + 2 * padding - kernel + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1  # the last window may not start in the right padding
    return out


def _geometry(x_shape, kernel_size, stride, padding, ceil_mode=False):
    k, p = _pair(kernel_size), _pair(padding)
    s = k if stride is None else _pair(stride)
    out = tuple(pool_output_size(x_shape[2 + a], k[a], s[a], p[a],
                                 ceil_mode=ceil_mode) for a in (0, 1))
    return k, s, p, out


def _windows(x, k, s, p, out, fill):
    """Every window of x padded with `fill`: a (N, C, OH, OW, kh, kw) view."""
    after = [max((out[a] - 1) * s[a] + k[a] - p[a] - x.shape[2 + a], 0) for a in (0, 1)]
    padded = np.pad(x, ((0, 0), (0, 0), (p[0], after[0]), (p[1], after[1])),
                    constant_values=fill)
    views = np.lib.stride_tricks.sliding_window_view(padded, k, axis=(2, 3))
    return views[:, :, ::s[0], ::s[1]][:, :, :out[0], :out[1]]


def _fold(windows, x_shape, s, p):
    """The adjoint of _windows: each window's values added back where they came from."""
    n, c, oh, ow, kh, kw = windows.shape
    h, w = x_shape[2:]
    padded = np.zeros((n, c, max(h + 2 * p[0], (oh - 1) * s[0] + kh),
                       max(w + 2 * p[1], (ow - 1) * s[1] + kw)), windows.dtype)
    for i in range(kh):
        for j in range(kw):
            padded[:, :, i:i + (oh - 1) * s[0] + 1:s[0], j:j + (ow - 1) * s[1] + 1:s[1]] += \
                windows[:, :, :, :, i, j]
    return padded[:, :, p[0]:p[0] + h, p[1]:p[1] + w]


def im2col(x: FloatArray, kernel_size: Pair, stride: Pair, padding: Pair, *,
           out: FloatArray | None = None) -> FloatArray:
    k, s, p, (oh, ow) = _geometry(x.shape, kernel_size, stride, padding)
    windows = _windows(x, k, s, p, (oh, ow), 0)  # (N, C, OH, OW, kh, kw)
    cols = windows.transpose(0, 1, 4, 5, 2, 3).reshape(x.shape[0], -1, oh * ow)
    return _result(cols, out)


def col2im(cols: FloatArray, x_shape: Sequence[int], kernel_size: Pair, stride: Pair,
           padding: Pair, *, out: FloatArray | None = None) -> FloatArray:
    k, s, p, (oh, ow) = _geometry(x_shape, kernel_size, stride, padding)
    n, c = x_shape[:2]
    windows = cols.reshape(n, c, k[0], k[1], oh, ow).transpose(0, 1, 4, 5, 2, 3)
    return _result(_fold(windows, x_shape, s, p), out)


def max_pool2d_forward(x: FloatArray, kernel_size: Pair, stride: Pair, padding: Pair, *,
                       ceil_mode: bool = False, out: FloatArray | None = None,
                       indices: npt.NDArray[np.int64] | None = None
                       ) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    k, s, p, (oh, ow) = _geometry(x.shape, kernel_size, stride, padding, ceil_mode)
    windows = _windows(x, k, s, p, (oh, ow), -np.inf)
    inside = _windows(np.ones(x.shape, bool), k, s, p, (oh, ow), False)
    y = windows.max(axis=(4, 5))  # NaN propagates
    top = y[..., None, None]
    hit = ((windows == top) | (np.isnan(windows) & np.isnan(top))) & inside
    first = hit.reshape(*hit.shape[:4], -1).argmax(axis=-1)  # row-major window order
    i, j = np.divmod(first, k[1])
    rows = np.arange(oh)[:, None] * s[0] - p[0] + i
    cols = np.arange(ow)[None, :] * s[1] - p[1] + j
    return _result(y, out), _result((rows * x.shape[3] + cols).astype(np.int64), indices)


def max_pool2d_backward(dy: FloatArray, indices: npt.NDArray[np.int64], x_shape: Sequence[int],
                        *, out: FloatArray | None = None) -> FloatArray:
    n, c, h, w = x_shape
    dx = np.zeros((n * c, h * w), dy.dtype)
    planes = np.arange(n * c)[:, None]
    np.add.at(dx, (planes, indices.reshape(n * c, -1)), dy.reshape(n * c, -1))
    return _result(dx.reshape(x_shape), out)


def _divisors(x_shape, k, s, p, out, count_include_pad):
    """Each window's divisor: its size clipped to the padded input
    (count_include_pad), or the number of input elements in it."""
    sizes = []
    for a in (0, 1):
        start = np.arange(out[a]) * s[a] - p[a]
        end = np.minimum(start + k[a], x_shape[2 + a] + p[a])
        if not count_include_pad:
            start, end = np.maximum(start, 0), np.minimum(end, x_shape[2 + a])
        sizes.append(end - start)
    return np.outer(*sizes)


def avg_pool2d_forward(x: FloatArray, kernel_size: Pair, stride: Pair, padding: Pair, *,
                       ceil_mode: bool = False, count_include_pad: bool = True,
                       out: FloatArray | None = None) -> FloatArray:
    k, s, p, o = _geometry(x.shape, kernel_size, stride, padding, ceil_mode)
    sums = _windows(x, k, s, p, o, 0).sum(axis=(4, 5))
    y = sums / _divisors(x.shape, k, s, p, o, count_include_pad).astype(x.dtype)
    return _result(y, out)


def avg_pool2d_backward(dy: FloatArray, x_shape: Sequence[int], kernel_size: Pair,
                        stride: Pair, padding: Pair, *, ceil_mode: bool = False,
                        count_include_pad: bool = True, out: FloatArray | None = None
                        ) -> FloatArray:
    k, s, p, o = _geometry(x_shape, kernel_size, stride, padding, ceil_mode)
    share = dy / _divisors(x_shape, k, s, p, o, count_include_pad).astype(dy.dtype)
    windows = np.broadcast_to(share[..., None, None], share.shape + k)
    return _result(_fold(windows, x_shape, s, p), out)


def numpy_twin(module: _M) -> _M:
    """A deep copy of a Module (parameters, state, mode) whose layers compute
    with this module's pure-NumPy twins: im2col/col2im and the pools, and
    batch norm with the same numerics. Matrix products are NumPy's in both."""
    twin = copy.deepcopy(module)
    stack: list[Module] = [twin]
    while stack:
        layer = stack.pop()
        layer.kernels = sys.modules[__name__]
        if isinstance(layer, _batchnorm.BatchNorm):
            layer._forward = batch_norm_forward
            layer._backward = batch_norm_backward
        stack.extend(child for _, child in layer.children())
    return twin
