"""Every framework's batch norm as its own source or documentation states it.

Float64 NumPy oracles, one pair per framework: ``<framework>_train`` (one
training step: y and the new running statistics) and ``<framework>_infer``
(normalizing with the stored statistics). Each takes x in the layout the
framework uses and its state under the framework's own conventions: momentum on
the side the framework puts it, its epsilon and where it sits, what it stores
as running statistics. The comment above each function cites what it was
written from (repository, file and lines at the commit read, or the document).
None of them calls bnkernels: they are the oracle the bnkernels arguments in
CONVENTIONS are tested against, and tests/test_convention_oracles.py checks
each against the live framework where that installs.

Inputs are never modified; every function returns new arrays.

Sources read (commit, date):
  pytorch  torch 2.13.0, torch/nn/modules/batchnorm.py (_BatchNorm.forward)
  onnx     onnx/onnx f7546912 (2026-08): docs/Operators.md BatchNormalization
           (opset 15), onnx/reference/ops/op_batch_normalization.py
  keras    keras-team/keras 3422977a (2026-08):
           keras/src/layers/normalization/batch_normalization.py,
           keras/src/backend/jax/nn.py (moments, batch_normalization)
  tf.keras keras-team/tf-keras dd0a7237 (2026-03):
           tf_keras/layers/normalization/batch_normalization.py;
           tensorflow/core/kernels/fused_batch_norm_op.cc (CPU FusedBatchNorm)
  flax     google/flax 18f8f311 (2026-07): flax/linen/normalization.py
  caffe    BVLC/caffe 9b891540 (2020-02): src/caffe/layers/batch_norm_layer.cpp,
           src/caffe/proto/caffe.proto (BatchNormParameter)
  darknet  pjreddie/darknet f6afaabc (2022-07), AlexeyAB/darknet 59596d78
           (2025-12): src/batchnorm_layer.c, src/blas.c, src/connected_layer.c
"""
from typing import Callable, NamedTuple

import numpy as np

F32 = np.float32


def _f32(value):
    """A float32 constant or attribute (C's ``1e-5f``, a protobuf float) as the
    float64 the framework then computes with."""
    return float(F32(value))


def _channel_axis(x, channels_last):
    return x.ndim - 1 if channels_last else 1


def _reduce_axes(x, channels_last):
    c = _channel_axis(x, channels_last)
    return tuple(a for a in range(x.ndim) if a != c)


def _per_channel(v, x, channels_last):
    """v of shape (C,) shaped to broadcast against x."""
    shape = [1] * x.ndim
    shape[_channel_axis(x, channels_last)] = -1
    return np.asarray(v, np.float64).reshape(shape)


def _values_per_channel(x, channels_last):
    c = x.shape[_channel_axis(x, channels_last)]
    return x.size // c


def _f64(*arrays):
    return tuple(None if a is None else np.asarray(a, np.float64) for a in arrays)


# ---------------------------------------------------------------------------
# PyTorch: torch.nn.BatchNorm1d/2d/3d, torch.nn.functional.batch_norm.
# torch/nn/modules/batchnorm.py (torch 2.13.0): eps=1e-5 (line 41), momentum=0.1;
# running_var starts at ones (line 71), running_mean at zeros; forward (lines
# 176-196): exponential_average_factor = momentum, or with momentum=None
# 1/num_batches_tracked after the increment (a cumulative moving average).
# The docstring (line 323): "the moving average of the variance is calculated
# via the unbiased estimator", the output uses the biased one ("equivalent to
# torch.var(input, unbiased=False)"). x is (N, C, *spatial); with training and
# one value per channel PyTorch raises "Expected more than 1 value per channel".
# running = (1 - factor) * running + factor * batch: the factor multiplies the
# batch statistic.

def pytorch_train(x, weight, bias, running_mean, running_var, num_batches_tracked=0,
                  *, eps=1e-5, momentum=0.1):
    """-> (y, running_mean, running_var, num_batches_tracked)."""
    x, weight, bias, running_mean, running_var = _f64(x, weight, bias, running_mean,
                                                      running_var)
    axes = _reduce_axes(x, False)
    n = _values_per_channel(x, False)
    if n <= 1:
        raise ValueError("Expected more than 1 value per channel when training")
    mean = x.mean(axis=axes)
    var = x.var(axis=axes)                        # biased: normalizes y
    y = (x - _per_channel(mean, x, False)) / np.sqrt(_per_channel(var, x, False) + eps)
    y = _affine(y, weight, bias, x, False)
    num_batches_tracked += 1
    factor = 1.0 / num_batches_tracked if momentum is None else momentum
    unbiased = var * n / (n - 1)                  # stored in running_var
    new_mean = (1 - factor) * running_mean + factor * mean
    new_var = (1 - factor) * running_var + factor * unbiased
    return y, new_mean, new_var, num_batches_tracked


def pytorch_infer(x, weight, bias, running_mean, running_var, *, eps=1e-5):
    return _standard_infer(x, weight, bias, running_mean, running_var, eps, False)


# ---------------------------------------------------------------------------
# ONNX BatchNormalization, opset 15 (14 has the same semantics, narrower
# types), docs/Operators.md "BatchNormalization":
#   running_mean = input_mean * momentum + current_mean * (1 - momentum)
#   running_var  = input_var * momentum + current_var * (1 - momentum)
#   Y = (X - current_mean) / sqrt(current_var + epsilon) * scale + B
# "ReduceVar refers to the population variance ... sum(sqrd(x_i - x_avg)) / N"
# (biased, also for the running_var output). Attributes epsilon = 1e-5,
# momentum = 0.9 (it multiplies the OLD value), training_mode = 0. Attributes
# are protobuf floats: momentum 0.9 arrives as 0.89999997615814208984375, which
# a float64 comparison sees. X is (N, C, D1, ..., Dn); a 1-D X of size N has C = 1.
# training_mode=0 normalizes with input_mean and input_var. Opset 9 (momentum
# given = training) normalizes with the *updated* running statistics
# (op_batch_normalization.py lines 75-88): not this convention.

ONNX_EPS = _f32(1e-5)
ONNX_MOMENTUM = _f32(0.9)


def _onnx_x(x):
    x = np.asarray(x, np.float64)
    return x.reshape(-1, 1) if x.ndim == 1 else x


def onnx_train(x, scale, B, input_mean, input_var, *, epsilon=ONNX_EPS,
               momentum=ONNX_MOMENTUM):
    """training_mode=1 -> (Y, running_mean, running_var)."""
    shape = np.shape(x)
    x = _onnx_x(x)
    scale, B, input_mean, input_var = _f64(scale, B, input_mean, input_var)
    axes = _reduce_axes(x, False)
    current_mean = x.mean(axis=axes)
    current_var = ((x - _per_channel(current_mean, x, False)) ** 2).mean(axis=axes)
    running_mean = input_mean * momentum + current_mean * (1 - momentum)
    running_var = input_var * momentum + current_var * (1 - momentum)
    Y = ((x - _per_channel(current_mean, x, False))
         / np.sqrt(_per_channel(current_var, x, False) + epsilon)
         * _per_channel(scale, x, False) + _per_channel(B, x, False))
    return Y.reshape(shape), running_mean, running_var


def onnx_infer(x, scale, B, input_mean, input_var, *, epsilon=ONNX_EPS):
    """training_mode=0."""
    shape = np.shape(x)
    y = _standard_infer(_onnx_x(x), scale, B, input_mean, input_var, epsilon, False)
    return y.reshape(shape)


# ---------------------------------------------------------------------------
# Keras 3 keras.layers.BatchNormalization (any backend; tf.keras in
# TensorFlow >= 2.16 is Keras 3). batch_normalization.py: axis=-1 (channels
# last), momentum=0.99, epsilon=1e-3 (lines 160-170), moving_mean "zeros",
# moving_variance "ones"; call() (lines 363-404), with training=True and a
# trainable layer:
#   moving_mean = moving_mean * momentum + mean * (1 - momentum)
#   moving_var  = moving_var * momentum + var * (1 - momentum)
# mean, var from ops.moments: jnp.var, biased (backend/jax/nn.py lines
# 1041-1071); y = x * inv + (beta - mean * inv), inv = gamma * rsqrt(var + epsilon)
# (lines 1074-1092). momentum multiplies the OLD value: bnkernels momentum =
# 1 - 0.99. A layer with trainable=False always normalizes with the moving
# statistics and never updates them.

def keras_train(x, gamma, beta, moving_mean, moving_variance, *, axis=-1,
                momentum=0.99, epsilon=1e-3):
    """-> (y, moving_mean, moving_variance)."""
    last = _keras_channels_last(x, axis)
    x, gamma, beta, moving_mean, moving_variance = _f64(x, gamma, beta, moving_mean,
                                                        moving_variance)
    axes = _reduce_axes(x, last)
    mean = x.mean(axis=axes)
    var = x.var(axis=axes)
    new_mean = moving_mean * momentum + mean * (1.0 - momentum)
    new_var = moving_variance * momentum + var * (1.0 - momentum)
    y = _standard_normalize(x, gamma, beta, mean, var, epsilon, last)
    return y, new_mean, new_var


def keras_infer(x, gamma, beta, moving_mean, moving_variance, *, axis=-1, epsilon=1e-3):
    last = _keras_channels_last(x, axis)
    return _standard_infer(x, gamma, beta, moving_mean, moving_variance, epsilon, last)


def _keras_channels_last(x, axis):
    ndim = np.ndim(x)
    axis = axis % ndim
    if axis not in (1, ndim - 1):
        raise ValueError("these oracles take the channel axis first after N or last")
    return axis == ndim - 1


# ---------------------------------------------------------------------------
# tf.keras of TensorFlow <= 2.15 (Keras 2; the tf_keras package today).
# tf_keras/layers/normalization/batch_normalization.py: same defaults as
# Keras 3 (momentum=0.99, epsilon=1e-3, axis=-1). Its *fused* path is taken
# by default for 4-D and 5-D input with the channel axis second or last and a
# float16/bfloat16/float32 compute dtype (lines 211-243, 357-387). It calls
# tf.compat.v1.nn.fused_batch_norm with exponential_avg_factor = 1 - momentum
# and leaves the moving variance as the op returns it, since
# _bessels_correction_test_only = True (line 243) turns
# _maybe_add_or_remove_bessels_correction into the identity. The CPU op
# (tensorflow/core/kernels/fused_batch_norm_op.cc, FusedBatchNorm<CPUDevice,
# T, U, true>) computes
#   new_variance = (1 - f) * old_variance + f * rest_size_adjust * batch_variance
# with rest_size_adjust = n / (n - 1) "for Bessel's correction": the moving
# variance is UNBIASED there, while y uses the biased variance. The non-fused
# path (2-D and 3-D input, float64, fused=False, renorm, virtual batches)
# uses tf.nn.moments: biased, as Keras 3; its _assign_moving_average computes
# variable - (variable - value) * decay with decay = 1 - momentum made a
# tensor first, a float32 one (0.01 arrives as 0.00999999977648258).

def tf_keras2_train(x, gamma, beta, moving_mean, moving_variance, *, fused, axis=-1,
                    momentum=0.99, epsilon=1e-3):
    """-> (y, moving_mean, moving_variance); fused as the layer decided."""
    last = _keras_channels_last(x, axis)
    x, gamma, beta, moving_mean, moving_variance = _f64(x, gamma, beta, moving_mean,
                                                        moving_variance)
    axes = _reduce_axes(x, last)
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    y = _standard_normalize(x, gamma, beta, mean, var, epsilon, last)
    if fused:
        n = _values_per_channel(x, last)
        f = 1.0 - momentum
        new_mean = (1 - f) * moving_mean + f * mean
        new_var = (1 - f) * moving_variance + f * (n / max(n - 1, 1)) * var
    else:
        decay = _f32(1.0 - momentum)
        new_mean = moving_mean - (moving_mean - mean) * decay
        new_var = moving_variance - (moving_variance - var) * decay
    return y, new_mean, new_var


def tf_keras2_uses_fused(ndim, axis=-1, dtype="float32"):
    """Whether tf.keras 2 takes the fused path by default (fused=None)."""
    axis = axis % ndim
    return (ndim in (4, 5) and axis in (1, ndim - 1)
            and np.dtype(dtype) in (np.float16, np.float32))


# ---------------------------------------------------------------------------
# Flax linen nn.BatchNorm (nnx.BatchNorm has the same defaults and update).
# flax/linen/normalization.py: axis=-1, momentum=0.99, epsilon=1e-5,
# use_fast_variance=True (lines 308-321); batch_stats 'mean' zeros and 'var'
# ones (lines 358-375); with use_running_average=False and not initializing
# (lines 388-404):
#   ra_mean = momentum * ra_mean + (1 - momentum) * mean
#   ra_var  = momentum * ra_var + (1 - momentum) * var
# var from _compute_stats (lines 137-151): with use_fast_variance,
# max(0, E[x^2] - E[x]^2), else E[(x - E[x])^2]: biased either way.
# _normalize (lines 203-226): (x - mean) * rsqrt(var + epsilon) * scale + bias.
# use_running_average=True normalizes with ra_mean, ra_var. Module.init runs a
# training-mode call without updating batch_stats.

def flax_train(x, scale, bias, ra_mean, ra_var, *, axis=-1, momentum=0.99,
               epsilon=1e-5, use_fast_variance=True):
    """use_running_average=False -> (y, ra_mean, ra_var)."""
    last = _keras_channels_last(x, axis)
    x, scale, bias, ra_mean, ra_var = _f64(x, scale, bias, ra_mean, ra_var)
    axes = _reduce_axes(x, last)
    mean = x.mean(axis=axes)
    if use_fast_variance:
        var = np.maximum(0.0, (x * x).mean(axis=axes) - mean * mean)
    else:
        var = ((x - _per_channel(mean, x, last)) ** 2).mean(axis=axes)
    new_mean = momentum * ra_mean + (1 - momentum) * mean
    new_var = momentum * ra_var + (1 - momentum) * var
    return _standard_normalize(x, scale, bias, mean, var, epsilon, last), new_mean, new_var


def flax_infer(x, scale, bias, ra_mean, ra_var, *, axis=-1, epsilon=1e-5):
    """use_running_average=True."""
    last = _keras_channels_last(x, axis)
    return _standard_infer(x, scale, bias, ra_mean, ra_var, epsilon, last)


# ---------------------------------------------------------------------------
# Caffe BatchNormLayer (src/caffe/layers/batch_norm_layer.cpp; the .cu is the
# same). No gamma or beta: a Scale layer (bias_term: true) follows and computes
# y * gamma + beta. Three blobs, zero at creation (lines 25-35): blobs[0] the
# accumulated means, blobs[1] the accumulated variances, blobs[2] (one value)
# the scale factor s. BatchNormParameter (caffe.proto lines 526-546):
# moving_average_fraction = .999, eps = 1e-5 (floats), use_global_stats
# defaults to phase == TEST. Training (use_global_stats false, lines 106-147):
#   mean, var  of the batch, var = E((X - EX)^2), biased; y uses them
#   s       = s * fraction + 1
#   blobs[0] = blobs[0] * fraction + mean
#   blobs[1] = blobs[1] * fraction + m / (m - 1) * var   (m > 1; else factor 1)
# with m = count / channels, the values per channel. Inference (use_global_stats,
# lines 98-105): mean = blobs[0] / s, var = blobs[1] / s, and both 0 while
# s == 0. Then y = (x - mean) / sqrt(var + eps) (lines 149-161). x is
# (N, C, *); a 1-D x has one channel.
# The proto comment describes S_t = (1 - beta) Y_t + beta S_{t-1}; the code
# keeps un-normalized sums and divides by s, which docs/conventions.md shows
# is a torch-style update with a momentum of 1/s per step.

CAFFE_EPS = _f32(1e-5)
CAFFE_FRACTION = _f32(0.999)


class CaffeBlobs(NamedTuple):
    mean_sum: np.ndarray     # blobs[0], (C,)
    var_sum: np.ndarray      # blobs[1], (C,)
    scale_factor: float      # blobs[2][0]


def caffe_new_blobs(channels):
    return CaffeBlobs(np.zeros(channels), np.zeros(channels), 0.0)


def _caffe_x(x):
    x = np.asarray(x, np.float64)
    return x.reshape(-1, 1) if x.ndim == 1 else x


def caffe_train(x, blobs, *, moving_average_fraction=CAFFE_FRACTION, eps=CAFFE_EPS):
    """One TRAIN-phase forward -> (y, new CaffeBlobs)."""
    shape = np.shape(x)
    x = _caffe_x(x)
    axes = _reduce_axes(x, False)
    mean = x.mean(axis=axes)
    var = ((x - _per_channel(mean, x, False)) ** 2).mean(axis=axes)
    m = _values_per_channel(x, False)
    correction = m / (m - 1) if m > 1 else 1.0
    new = CaffeBlobs(
        mean_sum=np.asarray(blobs.mean_sum, np.float64) * moving_average_fraction + mean,
        var_sum=(np.asarray(blobs.var_sum, np.float64) * moving_average_fraction
                 + correction * var),
        scale_factor=float(blobs.scale_factor) * moving_average_fraction + 1)
    y = (x - _per_channel(mean, x, False)) / np.sqrt(_per_channel(var, x, False) + eps)
    return y.reshape(shape), new


def caffe_global_stats(blobs):
    """(mean, var) that use_global_stats normalizes with: the sums over s."""
    s = float(blobs.scale_factor)
    k = 0.0 if s == 0 else 1.0 / s
    return (k * np.asarray(blobs.mean_sum, np.float64),
            k * np.asarray(blobs.var_sum, np.float64))


def caffe_infer(x, blobs, *, eps=CAFFE_EPS):
    """use_global_stats: true (the TEST phase)."""
    shape = np.shape(x)
    mean, var = caffe_global_stats(blobs)
    y = _standard_infer(_caffe_x(x), None, None, mean, var, eps, False)
    return y.reshape(shape)


def caffe_step_momentum(scale_factor_after):
    """The torch-style momentum that reproduces a Caffe step: 1 / s_t, s_t the
    scale factor after the step (s_t = fraction * s_(t-1) + 1)."""
    return 1.0 / scale_factor_after


def caffe_momenta(steps, moving_average_fraction=CAFFE_FRACTION):
    """Per-step torch-style momenta of ``steps`` Caffe steps from new blobs:
    1/s_t with s_t = sum of fraction**k for k < t."""
    s, out = 0.0, []
    for _ in range(steps):
        s = s * moving_average_fraction + 1
        out.append(caffe_step_momentum(s))
    return out


# ---------------------------------------------------------------------------
# Darknet, CPU build (what bnkernels' Darknet numerics reproduce bit for bit).
# pjreddie/darknet src/batchnorm_layer.c forward_batchnorm_layer (lines
# 135-155), src/blas.c mean_cpu, variance_cpu (lines 94-124: divides by
# batch*spatial - 1, also for normalizing), normalize_cpu (line 154:
# (x - mean) / (sqrt(var) + .000001f), eps OUTSIDE the root):
#   rolling = .99 * rolling + .01 * batch     (mean and the n-1 variance)
# AlexeyAB/darknet src/blas.c normalize_cpu (line 292: sqrt(var + .00001f),
# eps INSIDE), batchnorm_layer.c lines 192-199: .9 / .1; connected_layer.c
# forward_connected_layer (lines 186-201): .95 / .05 for a [connected] layer's
# own batch norm. Rolling mean and variance start at 0 (calloc) in both forks;
# weights files carry them. x is (batch, C, H, W); a [connected] layer's
# output is (batch, outputs): spatial 1. Inference normalizes with the rolling
# statistics, same placement. Then y = scales * x_norm + biases.
# GPU builds differ: with CUDNN both forks call
# cudnnBatchNormalizationForwardTraining (eps 1e-5 inside, biased variance
# for y, unbiased in the running variance, factor .01): PyTorch's formula
# with momentum 0.01; without CUDNN, normalize_gpu uses sqrt(var + .00001f)
# on the n-1 variance with .99/.01 (pjreddie blas_kernels.cu line 200).

DARKNET_EPS = {"pjreddie": _f32(1e-6), "alexeyab": _f32(1e-5)}
DARKNET_MOMENTUM = {("pjreddie", "convolutional"): 0.01,
                    ("pjreddie", "connected"): 0.01,
                    ("alexeyab", "convolutional"): 0.1,
                    ("alexeyab", "connected"): 0.05}


def _darknet_divisor(var, fork, eps):
    if fork == "pjreddie":
        return np.sqrt(var) + eps
    if fork == "alexeyab":
        return np.sqrt(var + eps)
    raise ValueError(f"fork must be 'pjreddie' or 'alexeyab', got {fork!r}")


def darknet_train(x, scales, biases, rolling_mean, rolling_variance, *, fork="pjreddie",
                  layer="convolutional", eps=None, momentum=None):
    """net.train forward -> (y, rolling_mean, rolling_variance). x is (N, C, H, W)
    ([convolutional], [batchnorm]) or (N, C) ([connected])."""
    x, scales, biases, rolling_mean, rolling_variance = _f64(
        x, scales, biases, rolling_mean, rolling_variance)
    eps = DARKNET_EPS[fork] if eps is None else eps
    momentum = DARKNET_MOMENTUM[fork, layer] if momentum is None else momentum
    axes = _reduce_axes(x, False)
    n = _values_per_channel(x, False)
    mean = x.mean(axis=axes)
    variance = ((x - _per_channel(mean, x, False)) ** 2).sum(axis=axes) / (n - 1)
    new_mean = (1 - momentum) * rolling_mean + momentum * mean
    new_var = (1 - momentum) * rolling_variance + momentum * variance
    x_norm = ((x - _per_channel(mean, x, False))
              / _per_channel(_darknet_divisor(variance, fork, eps), x, False))
    y = x_norm * _per_channel(scales, x, False) + _per_channel(biases, x, False)
    return y, new_mean, new_var


def darknet_infer(x, scales, biases, rolling_mean, rolling_variance, *, fork="pjreddie",
                  eps=None):
    x, scales, biases, rolling_mean, rolling_variance = _f64(
        x, scales, biases, rolling_mean, rolling_variance)
    eps = DARKNET_EPS[fork] if eps is None else eps
    x_norm = ((x - _per_channel(rolling_mean, x, False))
              / _per_channel(_darknet_divisor(rolling_variance, fork, eps), x, False))
    return x_norm * _per_channel(scales, x, False) + _per_channel(biases, x, False)


# ---------------------------------------------------------------------------
# Shared by the standard-convention oracles above (each cites its own formula).

def _affine(y, weight, bias, x, channels_last):
    if weight is not None:
        y = y * _per_channel(weight, x, channels_last)
    if bias is not None:
        y = y + _per_channel(bias, x, channels_last)
    return y


def _standard_normalize(x, weight, bias, mean, var, eps, channels_last):
    y = ((x - _per_channel(mean, x, channels_last))
         / np.sqrt(_per_channel(var, x, channels_last) + eps))
    return _affine(y, weight, bias, x, channels_last)


def _standard_infer(x, weight, bias, mean, var, eps, channels_last):
    x, weight, bias, mean, var = _f64(x, weight, bias, mean, var)
    return _standard_normalize(x, weight, bias, mean, var, eps, channels_last)


# ---------------------------------------------------------------------------
# The conventions table: the bnkernels.batch_norm_forward keywords that
# reproduce each framework's default layer, next to that framework's oracle
# with its defaults. train(x, weight, bias, running_mean, running_var) ->
# (y, new_mean, new_var) and infer(...) -> y take x in the framework's layout
# (channels_last: (N, *spatial, C)). Caffe is not a row: its momentum changes
# every step (caffe_momenta), and its layer has no weight or bias.

class Convention(NamedTuple):
    name: str
    kwargs: dict            # for bnkernels.batch_norm_forward
    channels_last: bool     # x as the framework stores it
    ranks: tuple            # ranks of x the framework's layer takes
    init: tuple             # (running_mean, running_var) of a new layer; None: no layer
    train: Callable
    infer: Callable


def _pytorch_train3(x, w, b, rm, rv):
    return pytorch_train(x, w, b, rm, rv)[:3]


def _darknet_row(name, fork, layer, ranks):
    numerics = {"pjreddie": "darknet", "alexeyab": "darknet-alexeyab"}[fork]
    return Convention(
        name, dict(numerics=numerics, eps=DARKNET_EPS[fork],
                   momentum=DARKNET_MOMENTUM[fork, layer]),
        False, ranks, (0.0, 0.0),
        lambda x, w, b, rm, rv: darknet_train(x, w, b, rm, rv, fork=fork, layer=layer),
        lambda x, w, b, rm, rv: darknet_infer(x, w, b, rm, rv, fork=fork))


CONVENTIONS = {
    "pytorch": Convention(
        "PyTorch", dict(eps=1e-5, momentum=0.1, running_var_ddof=1, layout="NCHW"),
        False, (2, 3, 4, 5), (0.0, 1.0), _pytorch_train3, pytorch_infer),
    "onnx": Convention(
        "ONNX BatchNormalization (opset 15)",
        dict(eps=ONNX_EPS, momentum=1 - ONNX_MOMENTUM, running_var_ddof=0, layout="NCHW"),
        False, (2, 3, 4, 5), None, onnx_train, onnx_infer),
    "keras": Convention(
        "Keras 3", dict(eps=1e-3, momentum=1 - 0.99, running_var_ddof=0, layout="NHWC"),
        True, (2, 3, 4, 5), (0.0, 1.0), keras_train, keras_infer),
    "tf_keras2_fused": Convention(
        "tf.keras 2 (TensorFlow <= 2.15), fused path: 4-D/5-D float32",
        dict(eps=1e-3, momentum=1 - 0.99, running_var_ddof=1, layout="NHWC"),
        True, (4, 5), (0.0, 1.0),
        lambda x, w, b, rm, rv: tf_keras2_train(x, w, b, rm, rv, fused=True),
        keras_infer),
    "flax": Convention(
        "Flax linen/nnx BatchNorm",
        dict(eps=1e-5, momentum=1 - 0.99, running_var_ddof=0, layout="NHWC"),
        True, (2, 3, 4, 5), (0.0, 1.0), flax_train, flax_infer),
    "darknet": _darknet_row("Darknet (pjreddie), CPU", "pjreddie", "convolutional",
                            (2, 4)),
    "darknet_alexeyab": _darknet_row(
        "Darknet (AlexeyAB), CPU, [convolutional] and [batchnorm]", "alexeyab",
        "convolutional", (4,)),
    "darknet_alexeyab_connected": _darknet_row(
        "Darknet (AlexeyAB), CPU, [connected]", "alexeyab", "connected", (2,)),
}
