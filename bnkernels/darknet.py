"""Darknet's batch-norm kernels, under Darknet's names, bit for bit.

Each function computes exactly what the Darknet CPU function of the same name
computes (same operations, order and precision), so float32 results equal
Darknet's bit for bit. x and delta are 4-D ``(N, C, H, W)`` arrays; per-channel
vectors have shape ``(C,)``; all arrays share one dtype, float32 or float64,
and must be C-contiguous. Every function returns a new array unless ``out=`` is
given; an elementwise kernel's ``out`` may be its main input itself (Darknet
works in place), which is the only aliasing allowed.

Two Darknet code bases differ, and ``flavor=`` picks one where they do:

``"pjreddie"`` (default)
    github.com/pjreddie/darknet. Forward epsilon 1e-6 *outside* the square
    root; the backward uses 1e-5 *inside*. Rolling statistics keep 0.99.
``"alexeyab"``
    github.com/AlexeyAB/darknet. Forward epsilon 1e-5 *inside* the square
    root; ``normalize_delta_cpu`` uses 1e-5 *outside*. Rolling statistics keep
    0.9 on the CPU. Its CPU ``backward_batchnorm_layer`` never computes the bias
    gradient (it stays 0); ``backward_bias`` here still computes the real one.

The epsilons are Darknet's float constants (``.000001f``, ``.00001f``), also in
float64; ``eps=`` overrides them.
"""
import numpy as np

from bnkernels import _kernels

__all__ = [
    "FLAVORS", "forward_eps", "BACKWARD_EPS", "default_momentum",
    "mean_cpu", "variance_cpu", "normalize_cpu", "scale_bias", "add_bias",
    "scale_add_bias", "rolling_update", "backward_bias", "backward_scale_cpu", "mean_delta_cpu",
    "variance_delta_cpu", "normalize_delta_cpu", "backward_batchnorm_layer",
]

FLAVORS = ("pjreddie", "alexeyab")

_FORWARD_EPS = {"pjreddie": float(np.float32(1e-6)),   # src/blas.c: .000001f
                "alexeyab": float(np.float32(1e-5))}   # src/blas.c: .00001f
BACKWARD_EPS = float(np.float32(1e-5))                 # .00001f, both forks
_MOMENTUM = {"pjreddie": 0.01,   # rolling = .99 * rolling + .01 * batch
             "alexeyab": 0.1}    # rolling = .9 * rolling + .1 * batch (CPU)


def check_flavor(flavor):
    """Return the canonical flavor name ("pjreddie" or "alexeyab")."""
    name = str(flavor).lower() if isinstance(flavor, str) else flavor
    if name not in FLAVORS:
        raise ValueError(f"flavor must be 'pjreddie' or 'alexeyab', got {flavor!r}")
    return name


def forward_eps(flavor="pjreddie"):
    """The forward epsilon of a flavor, as the float32 constant Darknet uses."""
    return _FORWARD_EPS[check_flavor(flavor)]


def default_momentum(flavor="pjreddie"):
    """Weight of the batch statistic in a flavor's rolling update."""
    return _MOMENTUM[check_flavor(flavor)]


def _eps(eps, default):
    return default if eps is None else float(eps)


def mean_cpu(x, *, out=None):
    """Per-channel mean, Darknet's way.

    ``mean[c] = fl(sum_{b,s} x[b,c,s] * fl(1/n))``: a sequential sum in x's
    dtype times the rounded reciprocal of n = N*H*W (an empty batch gives NaN).

    Parameters
    ----------
    x : ndarray, (N, C, H, W), float32 or float64
    out : ndarray, (C,), optional

    Returns
    -------
    mean : ndarray, (C,)
    """
    return _kernels.dk_mean(x, out)


def variance_cpu(x, mean, *, out=None):
    """Per-channel unbiased variance, Darknet's way.

    ``var[c] = fl(acc * fl(1/(n-1)))`` where each step rounds
    ``double(acc) + double(x - mean)**2`` back to x's dtype. n = 1 gives NaN,
    as in Darknet.

    Parameters
    ----------
    x : ndarray, (N, C, H, W)
    mean : ndarray, (C,)
    out : ndarray, (C,), optional

    Returns
    -------
    variance : ndarray, (C,)
    """
    return _kernels.dk_variance(x, mean, out)


def normalize_cpu(x, mean, variance, *, flavor="pjreddie", eps=None, out=None):
    """Normalize each channel, with the flavor's epsilon placement.

    pjreddie: ``(x - mean) / (sqrt(var) + eps)``, eps = 1e-6;
    alexeyab: ``(x - mean) / sqrt(var + eps)``, eps = 1e-5.

    Parameters
    ----------
    x : ndarray, (N, C, H, W)
    mean, variance : ndarray, (C,)
    flavor : {"pjreddie", "alexeyab"}
    eps : float, optional
        Replaces the flavor's epsilon (its placement stays).
    out : ndarray, (N, C, H, W), optional
        May be x itself, as Darknet normalizes in place.

    Returns
    -------
    x_norm : ndarray, (N, C, H, W)
    """
    flavor = check_flavor(flavor)
    return _kernels.dk_normalize(x, mean, variance,
                                 _eps(eps, _FORWARD_EPS[flavor]),
                                 flavor == "alexeyab", out)


def scale_bias(x, scales, *, out=None):
    """``out[b,c,s] = x[b,c,s] * scales[c]``; out may be x itself."""
    return _kernels.dk_scale_bias(x, scales, out)


def add_bias(x, biases, *, out=None):
    """``out[b,c,s] = x[b,c,s] + biases[c]``; out may be x itself."""
    return _kernels.dk_add_bias(x, biases, out)


def scale_add_bias(x, scales, biases, *, out=None):
    """``out = fl(fl(x * scales[c]) + biases[c])``: scale_bias then add_bias in
    one pass, bit for bit the same; out may be x itself."""
    return _kernels.dk_scale_add_bias(x, scales, biases, out)


def rolling_update(rolling, stat, *, momentum=None, flavor="pjreddie"):
    """Update a rolling statistic in place, as Darknet's scal_cpu + axpy_cpu.

    ``rolling = fl(fl(rolling * fl(1 - momentum)) + fl(fl(momentum) * stat))``.
    momentum defaults to the flavor's: 0.01 (pjreddie), 0.1 (alexeyab).

    Parameters
    ----------
    rolling : ndarray, (C,)
        Updated in place and returned.
    stat : ndarray, (C,), same dtype
        The batch statistic (mean, or the n-1 variance).
    """
    m = default_momentum(flavor) if momentum is None else float(momentum)
    return _kernels.dk_rolling_update(1.0 - m, m, stat, rolling)


def backward_bias(delta, *, out=None, accumulate=False):
    """Per-channel sum of the gradient (dL/dbeta), Darknet's order.

    Each (b, c) row is summed first, then the rows are added into the result
    in order of b. With ``accumulate=True`` the sums are added into ``out``,
    like Darknet's ``bias_updates +=``; otherwise ``out`` is overwritten.

    Parameters
    ----------
    delta : ndarray, (N, C, H, W)
    out : ndarray, (C,), optional
    accumulate : bool

    Returns
    -------
    bias_updates : ndarray, (C,)
    """
    return _kernels.dk_backward_bias(delta, out, accumulate)


def backward_scale_cpu(x_norm, delta, *, out=None, accumulate=False):
    """Per-channel ``sum(delta * x_norm)`` (dL/dgamma), one running sum.

    With ``accumulate=True`` the sums are added into ``out`` (Darknet's
    ``scale_updates +=``); otherwise ``out`` is overwritten.
    """
    return _kernels.dk_backward_scale(x_norm, delta, out, accumulate)


def mean_delta_cpu(delta, variance, *, eps=None, out=None):
    """``mean_delta[c] = sum(delta) * (-1 / sqrt(var + eps))``, eps = 1e-5.

    delta is the gradient already multiplied by gamma (``scale_bias``).
    """
    return _kernels.dk_mean_delta(delta, variance, _eps(eps, BACKWARD_EPS), out)


def variance_delta_cpu(x, delta, mean, variance, *, eps=None, out=None):
    """``variance_delta[c] = sum(delta * (x - mean)) * (-0.5 * (var + eps)**-1.5)``.

    eps = 1e-5; delta is the gamma-scaled gradient.
    """
    return _kernels.dk_variance_delta(x, delta, mean, variance,
                                      _eps(eps, BACKWARD_EPS), out)


def normalize_delta_cpu(x, mean, variance, mean_delta, variance_delta, delta, *,
                        flavor="pjreddie", eps=None, out=None):
    """Gradient with respect to x, Darknet's formula.

    ``dx = delta / D + variance_delta * 2 * (x - mean) / n + mean_delta / n``
    with D = ``sqrt(var + eps)`` (pjreddie) or ``sqrt(var) + eps`` (alexeyab),
    eps = 1e-5. Note the 2/n although the forward variance divides by n - 1,
    and no mean term through the variance: that is what Darknet computes.

    Parameters
    ----------
    x : ndarray, (N, C, H, W)
    mean, variance, mean_delta, variance_delta : ndarray, (C,)
    delta : ndarray, (N, C, H, W)
        The gamma-scaled gradient.
    out : ndarray, (N, C, H, W), optional
        May be delta itself, as Darknet updates ``l.delta`` in place.

    Returns
    -------
    dx : ndarray, (N, C, H, W)
    """
    flavor = check_flavor(flavor)
    return _kernels.dk_normalize_delta(x, mean, variance, mean_delta,
                                       variance_delta, delta,
                                       _eps(eps, BACKWARD_EPS),
                                       flavor == "pjreddie", out)


def backward_batchnorm_layer(x, x_norm, delta, mean, variance, scales, *,
                             flavor="pjreddie", eps=None, out=None):
    """Darknet's backward_batchnorm_layer, fused into two passes over memory.

    The same bits as backward_bias, backward_scale_cpu, scale_bias,
    mean_delta_cpu, variance_delta_cpu and normalize_delta_cpu called one
    after another (Darknet's six passes): one pass takes the four per-channel
    sums, each in Darknet's order, and one writes dx.

    Returns
    -------
    dx : ndarray, (N, C, H, W)
        In out if given (out may be delta itself).
    scale_updates, bias_updates : ndarray, (C,)
        The gradient sums, starting from 0 (add them into Darknet's
        accumulators yourself).
    """
    flavor = check_flavor(flavor)
    return _kernels.dk_backward(x, x_norm, delta, mean, variance, scales,
                                _eps(eps, BACKWARD_EPS), flavor == "pjreddie", out)
