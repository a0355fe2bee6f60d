"""Batch normalization over NCHW tensors: functions and a layer.

Three numerics families, chosen with ``numerics=``:

``"standard"``
    The BN paper / PyTorch / cuDNN convention: normalize with the biased batch
    variance, ``eps`` inside the square root (default 1e-5), keep the unbiased
    variance in ``running_var``, ``running = (1 - momentum) * running +
    momentum * batch`` with momentum 0.1. Statistics are accumulated and kept
    in float64; the gradients are exact.
``"darknet"``
    pjreddie/darknet's CPU layer, bit for bit: unbiased (n - 1) variance for
    both normalizing and the rolling estimate, epsilon 1e-6 outside the square
    root, momentum 0.01, and Darknet's own backward (see bnkernels.darknet).
``"darknet-alexeyab"``
    AlexeyAB/darknet's CPU layer: as above, but epsilon 1e-5 inside the square
    root and momentum 0.1.
"""
from dataclasses import dataclass
import warnings

import numpy as np

from bnkernels import _kernels, darknet

__all__ = ["NUMERICS", "defaults", "BatchNormSaved", "batch_norm_forward",
           "batch_norm_backward", "BatchNorm2d"]

NUMERICS = ("standard", "darknet", "darknet-alexeyab")
_FLAVOR = {"darknet": "pjreddie", "darknet-alexeyab": "alexeyab"}


def check_numerics(numerics):
    if numerics not in NUMERICS:
        raise ValueError(
            f"numerics must be one of {', '.join(map(repr, NUMERICS))}, got {numerics!r}")
    return numerics


def defaults(numerics="standard"):
    """``(eps, momentum)`` that a numerics family uses when given None."""
    if check_numerics(numerics) == "standard":
        return 1e-5, 0.1
    flavor = _FLAVOR[numerics]
    return darknet.forward_eps(flavor), darknet.default_momentum(flavor)


@dataclass(frozen=True)
class BatchNormSaved:
    """What batch_norm_backward needs from the forward pass.

    x is referenced, not copied: do not modify it before the backward.
    Standard numerics keep ``mean`` and ``invstd`` (float64; running statistics
    in eval mode); Darknet numerics keep Darknet's ``mean``, ``variance`` and
    ``x_norm`` in x's dtype.
    """
    numerics: str
    training: bool
    x: np.ndarray
    weight: np.ndarray | None
    has_bias: bool
    mean: np.ndarray | None
    invstd: np.ndarray | None = None
    variance: np.ndarray | None = None
    x_norm: np.ndarray | None = None
    x_overwritten: bool = False


def _reject_overlaps(written, read):
    """Raise if an array the call writes shares memory with any other array."""
    for i, (name, a) in enumerate(written):
        for other_name, other in written[i + 1:] + read:
            if other is not None and np.may_share_memory(a, other):
                raise ValueError(f"{name} overlaps {other_name}; pass arrays that "
                                 "share no memory")


def _check_arguments(x, weight, bias, running_mean, running_var, training, out):
    """Validate everything up front, so that a bad argument changes no state."""
    x = _kernels.check_tensor(x, "x")
    if weight is not None:
        weight = _kernels.check_channels(weight, "weight", x, "x")
    if bias is not None:
        bias = _kernels.check_channels(bias, "bias", x, "x")
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var must be given together "
                         "(both arrays, or both None)")
    if running_mean is None:
        if not training:
            raise ValueError("training=False normalizes with running_mean and "
                             "running_var, but both are None")
    else:
        for name, value in (("running_mean", running_mean), ("running_var", running_var)):
            if training and not isinstance(value, np.ndarray):
                raise TypeError(f"{name} must be a numpy.ndarray (training updates it in "
                                f"place), got {type(value).__name__}")
        running_mean = _kernels.check_channels(running_mean, "running_mean", x, "x",
                                               writeable=training)
        running_var = _kernels.check_channels(running_var, "running_var", x, "x",
                                              writeable=training)
    written = [("running_mean", running_mean), ("running_var", running_var)] if training else []
    if out is not None:
        if not isinstance(out, np.ndarray):
            raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
        out = _kernels.check_tensor_like(out, "out", x, "x")
        if not out.flags.writeable:
            raise ValueError("out is read-only; pass a writeable array")
        if not _kernels.same_memory(out, x):   # out may be x itself (in place), no other overlap
            written.append(("out", out))
    read = [("x", x), ("weight", weight), ("bias", bias)]
    if not training:
        read += [("running_mean", running_mean), ("running_var", running_var)]
    _reject_overlaps(written, read)
    return x, weight, bias, running_mean, running_var


def batch_norm_forward(x, weight, bias, running_mean, running_var, *,
                       training=True, momentum=None, eps=None,
                       numerics="standard", out=None):
    """Batch-normalize an NCHW tensor per channel.

    Parameters
    ----------
    x : ndarray, (N, C, H, W), float32 or float64, C-contiguous
    weight, bias : ndarray, (C,), x's dtype, or None
        gamma and beta; None means 1 and 0 (no affine transform).
    running_mean, running_var : ndarray, (C,), x's dtype, or None
        Used for normalizing when ``training`` is false. When ``training`` is
        true and they are given, they are updated in place with the batch
        statistics. None (both) means no running statistics.
    training : bool
        Normalize with the batch statistics (True) or the running ones.
    momentum, eps : float, optional
        None takes the family's default (see ``defaults``). For the Darknet
        families eps is the forward epsilon; the backward keeps Darknet's 1e-5.
    numerics : {"standard", "darknet", "darknet-alexeyab"}
    out : ndarray, (N, C, H, W), optional
        Where to write y. May be x itself (in place, for inference); the
        backward then raises, since it needs x.

    Returns
    -------
    y : ndarray, (N, C, H, W)
    saved : BatchNormSaved
        Pass it to batch_norm_backward.

    Raises
    ------
    ValueError
        Standard numerics with one value per channel in training (N*H*W == 1),
        as PyTorch. Darknet numerics compute Darknet's NaN instead and warn.

    An empty batch (N*H*W == 0) gives an empty y and leaves the running
    statistics unchanged.
    """
    numerics = check_numerics(numerics)
    default_eps, default_momentum = defaults(numerics)
    eps = default_eps if eps is None else float(eps)
    momentum = default_momentum if momentum is None else float(momentum)
    x, weight, bias, running_mean, running_var = _check_arguments(
        x, weight, bias, running_mean, running_var, training, out)
    if numerics == "standard":
        return _standard_forward(x, weight, bias, running_mean, running_var,
                                 training, momentum, eps, out)
    return _darknet_forward(x, weight, bias, running_mean, running_var,
                            training, momentum, eps, numerics, out)


def batch_norm_backward(dy, saved, *, out=None):
    """Gradients of batch_norm_forward.

    Parameters
    ----------
    dy : ndarray, (N, C, H, W)
        dL/dy, same shape and dtype as the forward's x.
    saved : BatchNormSaved
        From batch_norm_forward.
    out : ndarray, (N, C, H, W), optional
        Where to write dx; may be dy itself.

    Returns
    -------
    dx : ndarray, (N, C, H, W)
    dweight, dbias : ndarray, (C,), or None where the forward had no weight or
        bias. With Darknet numerics they are Darknet's ``scale_updates`` and
        ``backward_bias`` (AlexeyAB's own CPU layer leaves the latter at 0).
    """
    if not isinstance(saved, BatchNormSaved):
        raise TypeError(f"saved must be the BatchNormSaved returned by "
                        f"batch_norm_forward, got {type(saved).__name__}")
    dy = _kernels.check_tensor_like(dy, "dy", saved.x, "x")
    if saved.x_overwritten:
        raise ValueError("the forward wrote y over x (out=x), so x is gone; run the "
                         "forward without out=x to take a backward")
    if saved.numerics == "standard":
        return _standard_backward(dy, saved, out)
    return _darknet_backward(dy, saved, out)


# ---------------------------------------------------------------------------
# standard numerics
# ---------------------------------------------------------------------------

def _values_per_channel(x):
    return x.shape[0] * x.shape[2] * x.shape[3]


def _overwrites(out, x):
    return out is not None and np.may_share_memory(out, x)


def _standard_forward(x, weight, bias, running_mean, running_var, training,
                      momentum, eps, out):
    n = _values_per_channel(x)
    use_batch_stats = training or running_mean is None
    if use_batch_stats and n == 1:
        raise ValueError(f"Expected more than 1 value per channel when training, "
                         f"got input of shape {x.shape}")
    if use_batch_stats and n == 0:  # an empty batch: nothing to normalize or sum
        mean, var = np.zeros(x.shape[1]), np.ones(x.shape[1])
    elif use_batch_stats:
        mean, var = _kernels.stats(x)
    else:
        mean = running_mean.astype(np.float64)
        var = running_var.astype(np.float64)
    invstd = _kernels.invstd(var, eps)
    saved = BatchNormSaved("standard", use_batch_stats, x, weight,
                           bias is not None, mean, invstd,
                           x_overwritten=_overwrites(out, x))
    y = _kernels.normalize_affine(x, mean, invstd, weight, bias, out)
    if training and running_mean is not None and n > 0:
        _kernels.rolling_update(momentum, n, mean, var, running_mean, running_var)
    return y, saved


def _standard_backward(dy, saved, out):
    x = saved.x
    sum_dy, sum_dy_xhat = _kernels.backward_reduce(dy, x, saved.mean, saved.invstd)
    if saved.training:
        dx = _kernels.backward_dx(dy, x, saved.mean, saved.invstd, saved.weight,
                                  sum_dy, sum_dy_xhat, out)
    else:  # the statistics are constants: dx = dy * weight * invstd
        zero_mean = np.zeros_like(saved.mean)
        dx = _kernels.normalize_affine(dy, zero_mean, saved.invstd, saved.weight,
                                       None, out)
    dweight = sum_dy_xhat.astype(x.dtype) if saved.weight is not None else None
    dbias = sum_dy.astype(x.dtype) if saved.has_bias else None
    return dx, dweight, dbias


# ---------------------------------------------------------------------------
# Darknet numerics: forward_batchnorm_layer and backward_batchnorm_layer of
# src/batchnorm_layer.c, composed from the kernels of bnkernels.darknet
# ---------------------------------------------------------------------------

def _or_constant(vector, value, x):
    """Darknet's layer always has scales and biases: None means 1 or 0."""
    return np.full(x.shape[1], value, x.dtype) if vector is None else vector


def _darknet_forward(x, weight, bias, running_mean, running_var, training,
                     momentum, eps, numerics, out):
    flavor = _FLAVOR[numerics]
    n = _values_per_channel(x)
    use_batch_stats = training or running_mean is None
    if use_batch_stats:
        if n == 1:
            warnings.warn(
                "one value per channel: Darknet divides the variance by n - 1 = 0, "
                "so the variance, the output and the rolling variance are NaN",
                RuntimeWarning, stacklevel=3)
        mean = darknet.mean_cpu(x)
        variance = darknet.variance_cpu(x, mean)
    else:
        mean, variance = running_mean, running_var
    # Darknet keeps x_norm for its backward; without a backward (eval mode)
    # it is normalized straight into y.
    x_norm = darknet.normalize_cpu(x, mean, variance, flavor=flavor, eps=eps,
                                   out=None if use_batch_stats else out)
    saved = BatchNormSaved(numerics, use_batch_stats, x, weight, bias is not None,
                           mean, variance=variance,
                           x_norm=x_norm if use_batch_stats else None,
                           x_overwritten=_overwrites(out, x))
    y = darknet.scale_add_bias(x_norm, _or_constant(weight, 1, x),
                               _or_constant(bias, 0, x),
                               out=out if use_batch_stats else x_norm)
    if training and running_mean is not None and n > 0:
        darknet.rolling_update(running_mean, mean, momentum=momentum)
        darknet.rolling_update(running_var, variance, momentum=momentum)
    return y, saved


def _darknet_backward(dy, saved, out):
    if not saved.training:
        raise ValueError(
            "Darknet numerics define the backward only after a training forward "
            "(Darknet's backward_batchnorm_layer uses the batch statistics)")
    x = saved.x
    dbias = darknet.backward_bias(dy)
    dweight = darknet.backward_scale_cpu(saved.x_norm, dy)
    scaled = darknet.scale_bias(dy, _or_constant(saved.weight, 1, x))
    mean_delta = darknet.mean_delta_cpu(scaled, saved.variance)
    variance_delta = darknet.variance_delta_cpu(x, scaled, saved.mean, saved.variance)
    dx = darknet.normalize_delta_cpu(x, saved.mean, saved.variance, mean_delta,
                                     variance_delta, scaled,
                                     flavor=_FLAVOR[saved.numerics],
                                     out=scaled if out is None else out)
    return (dx, dweight if saved.weight is not None else None,
            dbias if saved.has_bias else None)


# ---------------------------------------------------------------------------
# the layer
# ---------------------------------------------------------------------------

class BatchNorm2d:
    """Batch normalization layer over (N, C, H, W) inputs, with its state.

    Parameters
    ----------
    num_features : int
        C, the number of channels.
    numerics : {"standard", "darknet", "darknet-alexeyab"}
    eps, momentum : float, optional
        None takes the family's default (standard: 1e-5 and 0.1).
    affine : bool
        Learn weight (gamma, starts at 1) and bias (beta, starts at 0).
    track_running_stats : bool
        Keep running_mean (starts at 0) and running_var (starts at 1); without
        them the batch statistics are used in eval mode too.
    dtype : numpy.float32 or numpy.float64

    Attributes
    ----------
    weight, bias, grad_weight, grad_bias : ndarray, (C,), or None if not affine
        Gradients accumulate (``+=``) across backward calls, as in PyTorch and
        Darknet; ``zero_grad()`` resets them. With Darknet numerics,
        ``grad_bias`` is the real bias gradient even for AlexeyAB, whose own
        CPU layer leaves it at 0.
    running_mean, running_var : ndarray, (C,), or None
    num_batches_tracked : int
    """

    _forward = staticmethod(batch_norm_forward)
    _backward = staticmethod(batch_norm_backward)

    def __init__(self, num_features, *, numerics="standard", eps=None,
                 momentum=None, affine=True, track_running_stats=True,
                 dtype=np.float32):
        if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)) \
                or num_features < 0:
            raise ValueError(f"num_features must be a non-negative int, got {num_features!r}")
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
        self.numerics = check_numerics(numerics)
        default_eps, default_momentum = defaults(numerics)
        self.num_features = int(num_features)
        self.eps = default_eps if eps is None else float(eps)
        self.momentum = default_momentum if momentum is None else float(momentum)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        self.dtype = dtype
        c = self.num_features
        if self.affine:
            self.weight = np.ones(c, dtype)
            self.bias = np.zeros(c, dtype)
            self.grad_weight = np.zeros(c, dtype)
            self.grad_bias = np.zeros(c, dtype)
        else:
            self.weight = self.bias = self.grad_weight = self.grad_bias = None
        if self.track_running_stats:
            self.running_mean = np.zeros(c, dtype)
            self.running_var = np.ones(c, dtype)
        else:
            self.running_mean = self.running_var = None
        self.num_batches_tracked = 0
        self._saved = None

    def forward(self, x, training=True):
        """Normalize x; in training, update the running statistics.

        Returns y, an (N, C, H, W) array of the layer's dtype.
        """
        # without running statistics, eval mode normalizes with the batch's too
        use_batch_stats = training or not self.track_running_stats
        y, self._saved = self._forward(
            x, self.weight, self.bias, self.running_mean, self.running_var,
            training=use_batch_stats, momentum=self.momentum, eps=self.eps,
            numerics=self.numerics)
        if training and self.track_running_stats:
            self.num_batches_tracked += 1
        return y

    __call__ = forward

    def backward(self, dy):
        """dL/dx for the last forward; adds dL/dweight, dL/dbias to the grads."""
        if self._saved is None:
            raise RuntimeError("backward called before forward")
        dx, dweight, dbias = self._backward(dy, self._saved)
        if self.affine:
            self.grad_weight += dweight
            self.grad_bias += dbias
        return dx

    def zero_grad(self):
        if self.affine:
            self.grad_weight.fill(0)
            self.grad_bias.fill(0)

    def parameters(self):
        """[(weight, grad_weight), (bias, grad_bias)], or [] if not affine."""
        if not self.affine:
            return []
        return [(self.weight, self.grad_weight), (self.bias, self.grad_bias)]

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean.fill(0)
            self.running_var.fill(1)
            self.num_batches_tracked = 0

    def state_dict(self):
        """Copies of the state, under torch.nn.BatchNorm2d's keys."""
        state = {}
        if self.affine:
            state["weight"] = self.weight.copy()
            state["bias"] = self.bias.copy()
        if self.track_running_stats:
            state["running_mean"] = self.running_mean.copy()
            state["running_var"] = self.running_var.copy()
            state["num_batches_tracked"] = np.int64(self.num_batches_tracked)
        return state

    def load_state_dict(self, state):
        """Copy values in from a state_dict (shapes must match)."""
        expected = set(self.state_dict())
        if set(state) != expected:
            raise KeyError(f"state keys {sorted(state)} do not match {sorted(expected)}")
        for key in expected - {"num_batches_tracked"}:
            value = np.asarray(state[key])
            target = getattr(self, key)
            if value.shape != target.shape:
                raise ValueError(f"{key} has shape {value.shape}, expected {target.shape}")
            target[...] = value
        if "num_batches_tracked" in state:
            self.num_batches_tracked = int(state["num_batches_tracked"])

    def __repr__(self):
        return (f"{type(self).__name__}({self.num_features}, numerics={self.numerics!r}, "
                f"eps={self.eps:g}, momentum={self.momentum:g}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}, dtype={self.dtype.name})")
