"""Darknet's batch-norm kernels, under Darknet's names, bit for bit.

Each function computes exactly what the Darknet CPU function of the same name
computes (same operations, order and precision), so float32 results equal
Darknet's bit for bit. x and delta are 4-D ``(N, C, H, W)`` arrays; per-channel
vectors have shape ``(C,)``; all arrays share one dtype, float32 or float64,
and must be C-contiguous. Every function returns a new array unless ``out=`` is
given; an elementwise kernel's ``out`` may be its main input itself (Darknet
works in place), which is the only aliasing allowed.

Two Darknet code bases differ, and ``numerics=`` picks one where they do (the
word bnkernels uses for the choice everywhere; ``flavor="pjreddie"`` and
``flavor="alexeyab"`` are deprecated aliases that warn):

``"darknet"`` (default)
    github.com/pjreddie/darknet. Forward epsilon 1e-6 *outside* the square
    root; the backward uses 1e-5 *inside*. Rolling statistics keep 0.99.
``"darknet-alexeyab"``
    github.com/AlexeyAB/darknet. Forward epsilon 1e-5 *inside* the square
    root; ``normalize_delta_cpu`` uses 1e-5 *outside*. Rolling statistics keep
    0.9 on the CPU. Its CPU ``backward_batchnorm_layer`` never computes the bias
    gradient (it stays 0); ``backward_bias`` here still computes the real one.

and ``build=``, which every kernel function takes (keyword-only), picks how
that Darknet was compiled (docs/darknet-ofast.md):

``"strict"`` (default)
    ``-O2 -fno-fast-math``: every sum in Darknet's loop order.
``"ofast"``
    Each fork's default Makefile build, ``-Ofast`` (GCC, x86-64, SSE2, no
    ``-march``). The forward and ``mean_delta_cpu``/``variance_delta_cpu``
    give the strict bits; ``backward_bias`` and ``backward_scale_cpu`` sum
    each (b, c) row in four lanes, ``(l0 + l2) + (l1 + l3)``, then the
    H*W mod 4 last values, and ``normalize_delta_cpu`` multiplies mean_delta
    by ``fl(1/n)`` instead of dividing by n.
``"ofast-avx"``
    AlexeyAB's CMake default on x86, ``-Ofast -mavx -mavx2`` (GCC): as
    "ofast", but the row sums take eight lanes, folded to four
    (``lane_k + lane_(k+4)``), plus the next four values when at least four
    remain, before the same ``(l0 + l2) + (l1 + l3)``.

The layers (``bnkernels.BatchNorm``) name a fork and a build in one word:
``LAYER_NUMERICS`` ("darknet-ofast" is ``numerics="darknet", build="ofast"``;
``split_numerics`` maps each).

The epsilons are Darknet's float constants (``.000001f``, ``.00001f``), also in
float64; ``eps=`` overrides them. Every ``eps=`` must be finite and >= 0, every
``momentum=`` finite and in [0, 1]; a bool or a string is a TypeError, NaN,
infinity or a value out of range a ValueError, raised before anything is
written.

Every array a function writes (``out``, ``rolling``) shares no memory with
any other argument; the only exception is the in-place mode documented on the
function (``out`` may be x itself, or delta itself).
"""
from typing import Any, NamedTuple
import warnings

import numpy as np
import numpy.typing as npt

import bnkernels._kernels as _kernels
from bnkernels._typing import FloatArray, Tensor

__all__ = [
    "NUMERICS", "BUILDS", "LAYER_NUMERICS", "check_numerics", "check_build",
    "split_numerics", "eps_inside_sqrt", "forward_eps", "BACKWARD_EPS", "default_momentum",
    "mean_cpu", "variance_cpu", "normalize_cpu", "scale_bias", "add_bias",
    "scale_add_bias", "rolling_update", "backward_bias", "backward_scale_cpu", "mean_delta_cpu",
    "variance_delta_cpu", "normalize_delta_cpu", "backward_batchnorm_layer",
    "StandardParams", "DarknetParams", "to_standard", "from_standard",
]

NUMERICS = ("darknet", "darknet-alexeyab")
# the two forks' own names, under which their vectors are stored (data/darknet_vectors)
_FORKS = ("pjreddie", "alexeyab")
_FORK = dict(zip(NUMERICS, _FORKS))
_NUMERICS_OF = dict(zip(_FORKS, NUMERICS))
BUILDS = ("strict", "ofast", "ofast-avx")
# the layers' Darknet numerics: each a fork (the kernels' numerics=) and a
# build. pjreddie's Makefile has no AVX build; the kernels still take
# numerics="darknet", build="ofast-avx".
_LAYER = {"darknet": ("darknet", "strict"),
          "darknet-alexeyab": ("darknet-alexeyab", "strict"),
          "darknet-ofast": ("darknet", "ofast"),
          "darknet-alexeyab-ofast": ("darknet-alexeyab", "ofast"),
          "darknet-alexeyab-ofast-avx": ("darknet-alexeyab", "ofast-avx")}
LAYER_NUMERICS = tuple(_LAYER)

_FORWARD_EPS = {"pjreddie": float(np.float32(1e-6)),   # src/blas.c: .000001f
                "alexeyab": float(np.float32(1e-5))}   # src/blas.c: .00001f
BACKWARD_EPS = float(np.float32(1e-5))                 # .00001f, both forks
_MOMENTUM = {"pjreddie": 0.01,   # rolling = .99 * rolling + .01 * batch
             "alexeyab": 0.1}    # rolling = .9 * rolling + .1 * batch (CPU)


def _check_fork(flavor: str) -> str:
    """Return the canonical fork name ("pjreddie" or "alexeyab")."""
    name = str(flavor).lower() if isinstance(flavor, str) else flavor
    if name not in _FORKS:
        raise ValueError(f"flavor must be 'pjreddie' or 'alexeyab', got {flavor!r}")
    return name


def check_numerics(numerics: str = "darknet", flavor: str | None = None, *,
                   stacklevel: int = 3) -> str:
    """The Darknet numerics family, "darknet" or "darknet-alexeyab".

    ``flavor=`` ("pjreddie", "alexeyab") is the deprecated spelling of the
    same choice, and so is one of those names given as ``numerics``: both
    warn (DeprecationWarning) and map to the new name. ValueError for anything
    else; TypeError if both numerics and flavor are given.
    """
    if flavor is not None:
        if numerics != "darknet":
            raise TypeError(f"give numerics= only (flavor= is its deprecated alias), got "
                            f"numerics={numerics!r} and flavor={flavor!r}")
        warnings.warn(f"flavor= is deprecated; use numerics="
                      f"{_NUMERICS_OF.get(_check_fork(flavor))!r}",
                      DeprecationWarning, stacklevel=stacklevel)
        return _NUMERICS_OF[_check_fork(flavor)]
    if isinstance(numerics, str) and numerics.lower() in _FORKS:
        new = _NUMERICS_OF[numerics.lower()]
        warnings.warn(f"numerics={numerics!r} is deprecated; use numerics={new!r}",
                      DeprecationWarning, stacklevel=stacklevel)
        return new
    if isinstance(numerics, str) and numerics in _LAYER and numerics not in NUMERICS:
        fork, build = _LAYER[numerics]
        raise ValueError(f"numerics={numerics!r} names a fork and a build; the kernel "
                         f"functions take them apart: numerics={fork!r}, build={build!r}")
    if numerics not in NUMERICS:
        raise ValueError(f"numerics must be 'darknet' or 'darknet-alexeyab', got {numerics!r}")
    return numerics


def check_build(build: str) -> str:
    """The build ("strict", "ofast" or "ofast-avx"); ValueError for anything else."""
    if not isinstance(build, str) or build not in BUILDS:
        raise ValueError(f"build must be 'strict', 'ofast' or 'ofast-avx', got {build!r}")
    return build


def split_numerics(numerics: str) -> tuple[str, str]:
    """``(fork, build)`` of a layer's Darknet numerics (one of LAYER_NUMERICS):
    ``split_numerics("darknet-alexeyab-ofast") == ("darknet-alexeyab", "ofast")``.
    ValueError for anything else."""
    if not isinstance(numerics, str) or numerics not in _LAYER:
        raise ValueError(f"numerics must be one of {', '.join(map(repr, LAYER_NUMERICS))}, "
                         f"got {numerics!r}")
    return _LAYER[numerics]


def _fork_of_any(numerics: str, flavor: str | None = None, stacklevel: int = 4) -> str:
    """The fork of a kernel's numerics or of a layer's (LAYER_NUMERICS): for
    the functions whose answer no build changes."""
    if flavor is None and isinstance(numerics, str) and numerics in _LAYER:
        return _FORK[_LAYER[numerics][0]]
    return _FORK[check_numerics(numerics, flavor, stacklevel=stacklevel)]


def _fork(numerics: str, flavor: str | None, stacklevel: int = 4) -> str:
    """The fork ("pjreddie" or "alexeyab") a public function's numerics= (or
    its deprecated flavor=) names, for the tables keyed by fork."""
    return _FORK[check_numerics(numerics, flavor, stacklevel=stacklevel)]


# Where each fork puts epsilon: inside the square root, sqrt(var + eps), or
# outside, sqrt(var) + eps. The forks disagree, and each fork's forward and
# backward disagree: pjreddie's forward is outside and its backward inside,
# AlexeyAB's the other way round.
_EPS_INSIDE = {("pjreddie", "forward"): False, ("pjreddie", "backward"): True,
               ("alexeyab", "forward"): True, ("alexeyab", "backward"): False}


def eps_inside_sqrt(numerics: str, direction: str) -> bool:
    """True where ``numerics`` (a fork, "darknet" or "darknet-alexeyab", or
    one of LAYER_NUMERICS: builds do not move epsilon) divides by
    sqrt(var + eps) in ``direction`` ("forward": normalize_cpu; "backward":
    normalize_delta_cpu), False where it divides by sqrt(var) + eps."""
    if direction not in ("forward", "backward"):
        raise ValueError(f"direction must be 'forward' or 'backward', got {direction!r}")
    return _EPS_INSIDE[_fork_of_any(numerics), direction]


def forward_eps(numerics: str = "darknet", *, flavor: str | None = None) -> float:
    """The forward epsilon of a Darknet numerics family (a fork or one of
    LAYER_NUMERICS), as the float32 constant Darknet uses."""
    return _FORWARD_EPS[_fork_of_any(numerics, flavor)]


def default_momentum(numerics: str = "darknet", *, flavor: str | None = None) -> float:
    """Weight of the batch statistic in a Darknet family's rolling update (a
    fork or one of LAYER_NUMERICS)."""
    return _MOMENTUM[_fork_of_any(numerics, flavor)]


def _eps(eps: float | None, default: float) -> float:
    """The family's default for None; the kernels check any other value."""
    return default if eps is None else eps


def mean_cpu(x: Tensor, *, out: FloatArray | None = None, build: str = "strict"
             ) -> FloatArray:
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
    check_build(build)
    return _kernels.dk_mean(x, out)


def variance_cpu(x: Tensor, mean: Tensor, *, out: FloatArray | None = None,
                 build: str = "strict") -> FloatArray:
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
    check_build(build)
    return _kernels.dk_variance(x, mean, out)


def normalize_cpu(x: Tensor, mean: Tensor, variance: Tensor, *, numerics: str = "darknet",
                  eps: float | None = None, out: FloatArray | None = None,
                  flavor: str | None = None, build: str = "strict") -> FloatArray:
    """Normalize each channel, with the family's epsilon placement.

    "darknet": ``(x - mean) / (sqrt(var) + eps)``, eps = 1e-6;
    "darknet-alexeyab": ``(x - mean) / sqrt(var + eps)``, eps = 1e-5.

    Parameters
    ----------
    x : ndarray, (N, C, H, W)
    mean, variance : ndarray, (C,)
    numerics : {"darknet", "darknet-alexeyab"}
        (flavor= "pjreddie" / "alexeyab": deprecated alias)
    eps : float, optional
        Replaces the family's epsilon (its placement stays).
    out : ndarray, (N, C, H, W), optional
        May be x itself, as Darknet normalizes in place.

    Returns
    -------
    x_norm : ndarray, (N, C, H, W)
    """
    fork = _fork(numerics, flavor)
    check_build(build)
    return _kernels.dk_normalize(x, mean, variance, _eps(eps, _FORWARD_EPS[fork]),
                                 _EPS_INSIDE[fork, "forward"], out)


def scale_bias(x: Tensor, scales: Tensor, *, out: FloatArray | None = None,
               build: str = "strict") -> FloatArray:
    """``out[b,c,s] = x[b,c,s] * scales[c]``; out may be x itself."""
    check_build(build)
    return _kernels.dk_scale_bias(x, scales, out)


def add_bias(x: Tensor, biases: Tensor, *, out: FloatArray | None = None,
             build: str = "strict") -> FloatArray:
    """``out[b,c,s] = x[b,c,s] + biases[c]``; out may be x itself."""
    check_build(build)
    return _kernels.dk_add_bias(x, biases, out)


def scale_add_bias(x: Tensor, scales: Tensor, biases: Tensor, *,
                   out: FloatArray | None = None, build: str = "strict") -> FloatArray:
    """``out = fl(fl(x * scales[c]) + biases[c])``: scale_bias then add_bias in
    one pass, bit for bit the same; out may be x itself."""
    check_build(build)
    return _kernels.dk_scale_add_bias(x, scales, biases, out)


def rolling_update(rolling: FloatArray, stat: Tensor, *, momentum: float | None = None,
                   numerics: str = "darknet", flavor: str | None = None,
                   build: str = "strict") -> FloatArray:
    """Update a rolling statistic in place, as Darknet's scal_cpu + axpy_cpu.

    ``rolling = fl(fl(rolling * fl(1 - momentum)) + fl(fl(momentum) * stat))``.
    momentum defaults to the family's: 0.01 ("darknet"), 0.1 ("darknet-alexeyab").

    Parameters
    ----------
    rolling : ndarray, (C,)
        Updated in place and returned; shares no memory with stat.
    stat : ndarray, (C,), same dtype
        The batch statistic (mean, or the n-1 variance).
    momentum : float, optional
        Finite, in [0, 1].
    """
    fork = _fork(numerics, flavor)
    check_build(build)
    m = _MOMENTUM[fork] if momentum is None else _kernels.check_momentum(momentum)
    return _kernels.dk_rolling_update(1.0 - m, m, stat, rolling)


def backward_bias(delta: Tensor, *, out: FloatArray | None = None,
                  accumulate: bool = False, build: str = "strict") -> FloatArray:
    """Per-channel sum of the gradient (dL/dbeta), Darknet's order.

    Each (b, c) row is summed first, then the rows are added into the result
    in order of b. With ``accumulate=True`` the sums are added into ``out``,
    like Darknet's ``bias_updates +=``; otherwise ``out`` is overwritten.

    Parameters
    ----------
    delta : ndarray, (N, C, H, W)
    out : ndarray, (C,), optional
    accumulate : bool
    build : {"strict", "ofast", "ofast-avx"}
        "ofast" sums each row in -Ofast's four lanes, "ofast-avx" in its
        eight (see the module).

    Returns
    -------
    bias_updates : ndarray, (C,)
    """
    return _kernels.dk_backward_bias(delta, out, accumulate, check_build(build))


def backward_scale_cpu(x_norm: Tensor, delta: Tensor, *, out: FloatArray | None = None,
                       accumulate: bool = False, build: str = "strict") -> FloatArray:
    """Per-channel ``sum(delta * x_norm)`` (dL/dgamma), one running sum.

    With ``accumulate=True`` the sums are added into ``out`` (Darknet's
    ``scale_updates +=``); otherwise ``out`` is overwritten. With
    ``build="ofast"`` (``"ofast-avx"``) each (b, c) row is summed in -Ofast's
    four (eight) lanes before it joins the running sum (see the module).
    """
    return _kernels.dk_backward_scale(x_norm, delta, out, accumulate, check_build(build))


def mean_delta_cpu(delta: Tensor, variance: Tensor, *, eps: float | None = None,
                   out: FloatArray | None = None, build: str = "strict") -> FloatArray:
    """``mean_delta[c] = sum(delta) * (-1 / sqrt(var + eps))``, eps = 1e-5.

    delta is the gradient already multiplied by gamma (``scale_bias``).
    """
    check_build(build)
    return _kernels.dk_mean_delta(delta, variance, _eps(eps, BACKWARD_EPS), out)


def variance_delta_cpu(x: Tensor, delta: Tensor, mean: Tensor, variance: Tensor, *,
                       eps: float | None = None, out: FloatArray | None = None,
                       build: str = "strict") -> FloatArray:
    """``variance_delta[c] = sum(delta * (x - mean)) * (-0.5 * (var + eps)**-1.5)``.

    eps = 1e-5; delta is the gamma-scaled gradient.
    """
    check_build(build)
    return _kernels.dk_variance_delta(x, delta, mean, variance,
                                      _eps(eps, BACKWARD_EPS), out)


def normalize_delta_cpu(x: Tensor, mean: Tensor, variance: Tensor, mean_delta: Tensor,
                        variance_delta: Tensor, delta: Tensor, *, numerics: str = "darknet",
                        eps: float | None = None, out: FloatArray | None = None,
                        flavor: str | None = None, build: str = "strict") -> FloatArray:
    """Gradient with respect to x, Darknet's formula.

    ``dx = delta / D + variance_delta * 2 * (x - mean) / n + mean_delta / n``
    with D = ``sqrt(var + eps)`` ("darknet") or ``sqrt(var) + eps``
    ("darknet-alexeyab"),
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
    build : {"strict", "ofast", "ofast-avx"}
        "ofast" and "ofast-avx": the mean term is ``mean_delta * fl(1/n)``,
        not ``mean_delta / n``.

    Returns
    -------
    dx : ndarray, (N, C, H, W)
    """
    fork = _fork(numerics, flavor)
    return _kernels.dk_normalize_delta(x, mean, variance, mean_delta,
                                       variance_delta, delta,
                                       _eps(eps, BACKWARD_EPS),
                                       _EPS_INSIDE[fork, "backward"], out, check_build(build))


def backward_batchnorm_layer(x: Tensor, x_norm: Tensor, delta: Tensor, mean: Tensor,
                             variance: Tensor, scales: Tensor, *, numerics: str = "darknet",
                             eps: float | None = None, out: FloatArray | None = None,
                             flavor: str | None = None, build: str = "strict"
                             ) -> tuple[FloatArray, FloatArray, FloatArray]:
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

    With ``build="ofast"`` or ``"ofast-avx"``, the bits of that -Ofast build
    (the differences listed in the module docstring).
    """
    fork = _fork(numerics, flavor)
    return _kernels.dk_backward(x, x_norm, delta, mean, variance, scales,
                                _eps(eps, BACKWARD_EPS), _EPS_INSIDE[fork, "backward"], out,
                                check_build(build))


# ---------------------------------------------------------------------------
# Inference parameters: Darknet's convention <-> the standard one
# ---------------------------------------------------------------------------

class StandardParams(NamedTuple):
    """Standard-convention BN parameters converted from Darknet's (to_standard).

    ``weight, bias, running_mean, running_var`` are new (C,) arrays of the
    inputs' dtype; with ``eps`` they define
    ``y = weight * (x - running_mean) / sqrt(running_var + eps) + bias``.
    ``max_rel_diff``, ``max_abs_diff``, ``rescaled`` and ``nan_channels`` are
    described in to_standard.
    """
    weight: np.ndarray
    bias: np.ndarray
    running_mean: np.ndarray
    running_var: np.ndarray
    eps: float
    max_rel_diff: float
    max_abs_diff: float
    rescaled: np.ndarray
    nan_channels: np.ndarray


class DarknetParams(NamedTuple):
    """Darknet-convention BN parameters converted from standard ones
    (from_standard), under Darknet's names, for one ``numerics``
    ("darknet" or "darknet-alexeyab")."""
    scales: np.ndarray
    biases: np.ndarray
    rolling_mean: np.ndarray
    rolling_variance: np.ndarray
    numerics: str
    max_rel_diff: float
    max_abs_diff: float
    rescaled: np.ndarray
    nan_channels: np.ndarray

    @property
    def flavor(self) -> str:
        """Deprecated: the fork name ("pjreddie" or "alexeyab") of ``numerics``."""
        warnings.warn("DarknetParams.flavor is deprecated; use .numerics", DeprecationWarning,
                      stacklevel=2)
        return _FORK[self.numerics]


_PROBE = 3.0  # max_abs_diff is measured at x = mean +- 3 divisors


def check_channel_vectors(**vectors: Any) -> tuple[FloatArray, ...]:
    """Check per-channel (C,) vectors given by name; return them unchanged.

    Each must be a NumPy array of dtype float32 or float64 with ndim 1; all
    must have the first one's shape and dtype. Errors name the argument, the
    expected and the given value (TypeError for type and dtype, ValueError for
    shape).
    """
    first_name, first = None, None
    for name, value in vectors.items():
        if not isinstance(value, np.ndarray):
            raise TypeError(f"{name} must be a NumPy array of float32 or float64, "
                            f"got {type(value).__name__}")
        if value.dtype not in (np.float32, np.float64):
            raise TypeError(f"{name} has dtype {value.dtype}, expected float32 or float64")
        if value.ndim != 1:
            raise ValueError(f"{name} has shape {value.shape}, expected a 1-D (C,) array")
        if first is None:
            first_name, first = name, value
            continue
        if value.shape != first.shape:
            raise ValueError(f"{name} has shape {value.shape}, expected {first.shape} "
                             f"to match {first_name}")
        if value.dtype != first.dtype:
            raise TypeError(f"{name} has dtype {value.dtype}, expected {first.dtype} "
                            f"to match {first_name}")
    return tuple(vectors.values())


def check_eps(eps: float, name: str = "eps") -> float:
    """eps as a float; TypeError unless a real number (a bool is not),
    ValueError unless finite and >= 0."""
    return _kernels.check_eps(eps, name)


def divisor(running_var: Tensor, eps: float, *, inside: bool) -> FloatArray:
    """float64 per-channel divisor of inference BN: ``sqrt(var + eps)`` with
    eps inside the square root, ``sqrt(var) + eps`` outside (pjreddie's CPU
    layer). NaN where the variance makes the square root's argument negative
    or NaN."""
    var = np.asarray(running_var, np.float64)
    with np.errstate(invalid="ignore"):
        return np.sqrt(var + eps) if inside else np.sqrt(var) + eps


def _report(scale: FloatArray, old_divisor: FloatArray, new_scale: FloatArray,
            new_divisor: FloatArray, degenerate: npt.NDArray[np.bool_]) -> tuple[float, float]:
    """max_rel_diff and max_abs_diff of a conversion, over the channels that
    are not degenerate. Both maps are y = s * (x - mean) / D + bias with the
    same mean and bias (every conversion keeps them exactly, so they cancel);
    a = s / D is the effective scale."""
    ok = ~degenerate
    with np.errstate(divide="ignore", invalid="ignore"):
        a_old = scale[ok] / old_divisor[ok]
        a_new = new_scale[ok] / new_divisor[ok]
        diff = np.abs(a_new - a_old)
        rel = np.where(diff == 0, 0.0, diff / np.abs(a_old))
        # at x = mean +- 3 * old divisor: |a_new - a_old| * 3 * D_old
        absolute = np.where(diff == 0, 0.0, diff * _PROBE * old_divisor[ok])
    return (float(rel.max()) if rel.size else 0.0,
            float(absolute.max()) if absolute.size else 0.0)


def to_standard(scales: FloatArray, biases: FloatArray, rolling_mean: FloatArray,
                rolling_variance: FloatArray, *, numerics: str = "darknet", eps: float = 1e-5,
                flavor: str | None = None) -> StandardParams:
    """Standard-convention parameters that reproduce Darknet's inference BN.

    Darknet's inference output per channel c (``normalize_cpu``,
    ``scale_bias``, ``add_bias`` with the rolling statistics) is
    ``y = s * (x - m) / D + b`` with D = ``sqrt(v) + e`` (pjreddie, e = its
    float constant .000001f) or ``sqrt(v + e)`` (alexeyab, e = .00001f); see
    forward_eps. The standard convention divides by ``sqrt(var + eps)``. The
    conversion keeps bias = b and running_mean = m, and chooses
    ``running_var = D**2 - eps``, so that ``sqrt(running_var + eps) == D``
    exactly in exact arithmetic, with weight = s. Where that variance would be
    negative (pjreddie: v below about (sqrt(eps) - e)**2 ~ 1e-5 for the
    default eps, v = 0 included; alexeyab: v < eps - e, e.g. v = 0 when eps >
    e), running_var = 0 and the weight is rescaled instead:
    ``weight = s * sqrt(eps) / D``; those channels are listed in ``rescaled``.
    Everything is computed in float64 and rounded once to the inputs' dtype.
    With flavor="alexeyab" and ``eps=forward_eps("alexeyab")`` the
    conversion is the identity (for variances >= 0).

    Degenerate channels propagate: where D is NaN or 0 (pjreddie: variance
    negative or NaN; alexeyab: variance below -e or NaN, or exactly -e),
    Darknet's output is NaN or infinite for every x; running_var is set to NaN
    there so that the standard layer's output is NaN too. Those channels are
    listed in ``nan_channels`` and left out of the differences below. A
    variance of +inf is fine (both give y = b). Non-finite scales, biases or
    means are copied as they are; the bound below assumes finite ones.

    Parameters
    ----------
    scales, biases, rolling_mean, rolling_variance : ndarray, (C,)
        Darknet's parameters (gamma, beta and the rolling statistics), one
        dtype, float32 or float64. Not modified.
    numerics : {"darknet", "darknet-alexeyab"}
        Whose inference formula to reproduce (flavor= "pjreddie" /
        "alexeyab": deprecated alias).
    eps : float
        The standard-convention epsilon the result is for (PyTorch's 1e-5).

    Returns
    -------
    StandardParams
        ``weight, bias, running_mean, running_var`` (new arrays of the inputs'
        dtype), ``eps``, and:

        max_rel_diff : float
            ``max_c |a'_c - a_c| / |a_c|`` where a_c = s_c / D_c is Darknet's
            effective scale and a'_c = weight_c / sqrt(running_var_c + eps)
            the converted one, both evaluated in float64 from the arrays as
            stored (rounded to their dtype); 0 where they are equal. Since the
            mean and bias are kept exactly, for any x the two exactly
            evaluated outputs differ by ``|dy| <= max_rel_diff * |a_c (x - m_c)|``
            (plus each implementation's own rounding of y). It is ~1e-7 in
            float32 (the rounding of running_var and of a rescaled weight)
            and ~1e-16 in float64.
        max_abs_diff : float
            ``max_c |a'_c - a_c| * 3 * D_c``: the largest output difference
            in output units at x = m_c +- 3 D_c (three Darknet standard
            deviations from the mean), evaluated in float64.
        rescaled : ndarray of int64
            Channels whose weight differs from s (running_var = 0 there).
        nan_channels : ndarray of int64
            Degenerate channels (see above).
    """
    fork = _fork(numerics, flavor)
    scales, biases, rolling_mean, rolling_variance = check_channel_vectors(
        scales=scales, biases=biases, rolling_mean=rolling_mean,
        rolling_variance=rolling_variance)
    eps = check_eps(eps)
    dtype = scales.dtype
    s = scales.astype(np.float64)
    e = _FORWARD_EPS[fork]
    inside = _EPS_INSIDE[fork, "forward"]
    d = divisor(rolling_variance, e, inside=inside)
    degenerate = np.isnan(d) | (d == 0)
    with np.errstate(invalid="ignore"):
        # D**2 - eps; for alexeyab v + (e - eps), exactly v when eps == e
        var = rolling_variance.astype(np.float64) + (e - eps) if inside else d ** 2 - eps
        rescale = ~degenerate & (var < 0)
    var[degenerate] = np.nan
    var[rescale] = 0.0
    weight = s.copy()
    weight[rescale] = s[rescale] * np.sqrt(eps) / d[rescale]
    weight, var = weight.astype(dtype), var.astype(dtype)
    max_rel, max_abs = _report(s, d, weight.astype(np.float64),
                               divisor(var, eps, inside=True), degenerate)
    return StandardParams(weight, biases.copy(), rolling_mean.copy(), var, eps,
                          max_rel, max_abs, np.flatnonzero(rescale),
                          np.flatnonzero(degenerate))


def from_standard(weight: FloatArray, bias: FloatArray, running_mean: FloatArray,
                  running_var: FloatArray, *, eps: float = 1e-5, numerics: str = "darknet",
                  flavor: str | None = None) -> DarknetParams:
    """Darknet-convention parameters that reproduce standard inference BN.

    The inverse of to_standard. The standard output per channel is
    ``y = w * (x - m) / D + b`` with D = ``sqrt(var + eps)``. The conversion
    keeps biases = b, rolling_mean = m, scales = w and chooses the Darknet
    variance v whose divisor equals D: ``v = (D - e)**2`` (pjreddie, where
    sqrt(v) + e = D needs D >= e) or ``v = D**2 - e`` (alexeyab, needs
    var + eps >= e). Where that is impossible (pjreddie: var + eps < e**2 ~
    1e-12, i.e. a tiny eps with a tiny variance; alexeyab: var + eps < e ~
    1e-5, e.g. var = 0 with eps < 1e-5) the variance is set to 0 and the
    scale rescaled: ``scales = w * D0 / D`` with D0 Darknet's divisor at v = 0
    (e for pjreddie, sqrt(e) for alexeyab); those channels are listed in
    ``rescaled``. Computed in float64, rounded once to the inputs' dtype.

    Degenerate channels propagate: where D is NaN or 0 (var + eps negative,
    NaN or 0) the rolling variance is set to NaN (``nan_channels``). The
    differences are defined as in to_standard, with a = w / D the standard
    effective scale and a' = scales / D' Darknet's from the converted
    parameters; max_abs_diff is measured at x = m +- 3 D.

    Parameters
    ----------
    weight, bias, running_mean, running_var : ndarray, (C,)
        One dtype, float32 or float64. Not modified.
    eps : float
        The standard epsilon they were used with.
    numerics : {"darknet", "darknet-alexeyab"}
        Whose inference formula the result is for (flavor=: deprecated alias).

    Returns
    -------
    DarknetParams
        ``scales, biases, rolling_mean, rolling_variance`` (new arrays of the
        inputs' dtype), ``numerics``, ``max_rel_diff``, ``max_abs_diff``,
        ``rescaled``, ``nan_channels``.
    """
    fork = _fork(numerics, flavor)
    weight, bias, running_mean, running_var = check_channel_vectors(
        weight=weight, bias=bias, running_mean=running_mean, running_var=running_var)
    eps = check_eps(eps)
    dtype = weight.dtype
    w = weight.astype(np.float64)
    e = _FORWARD_EPS[fork]
    inside = _EPS_INSIDE[fork, "forward"]
    d = divisor(running_var, eps, inside=True)
    degenerate = np.isnan(d) | (d == 0)
    with np.errstate(invalid="ignore"):
        var = running_var.astype(np.float64) + (eps - e) if inside else (d - e) ** 2
        rescale = ~degenerate & ((d < e) if not inside else (var < 0))
    var[degenerate] = np.nan
    var[rescale] = 0.0
    scales = w.copy()
    d_zero = e if not inside else np.sqrt(e)
    scales[rescale] = w[rescale] * d_zero / d[rescale]
    scales, var = scales.astype(dtype), var.astype(dtype)
    max_rel, max_abs = _report(w, d, scales.astype(np.float64),
                               divisor(var, e, inside=inside), degenerate)
    return DarknetParams(scales, bias.copy(), running_mean.copy(), var, _NUMERICS_OF[fork],
                         max_rel, max_abs, np.flatnonzero(rescale),
                         np.flatnonzero(degenerate))


_DEPRECATED = {"FLAVORS": ("NUMERICS", lambda: _FORKS),
               "check_flavor": ("check_numerics", lambda: _check_fork)}


def __getattr__(name: str) -> Any:
    """The deprecated module attributes FLAVORS and check_flavor, which warn."""
    if name in _DEPRECATED:
        new, value = _DEPRECATED[name]
        warnings.warn(f"bnkernels.darknet.{name} is deprecated; use {new} (numerics names)",
                      DeprecationWarning, stacklevel=2)
        return value()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
