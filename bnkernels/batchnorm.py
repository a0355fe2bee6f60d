"""Batch normalization over (N, C, *spatial) tensors of any rank >= 2 (or,
with standard numerics, channels last, (N, *spatial, C)): functions and the
layers BatchNorm (any rank), BatchNorm1d, BatchNorm2d and BatchNorm3d.

The numerics, chosen with ``numerics=``:

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
``"darknet-ofast"``, ``"darknet-alexeyab-ofast"``
    The same two layers as each fork's default ``-Ofast`` build computes them:
    the same forward bits; the backward's gradient sums in that build's
    four-lane order and its reciprocal multiply in dx (``build="ofast"`` in
    bnkernels.darknet; docs/darknet-ofast.md).
``"darknet-alexeyab-ofast-avx"``
    AlexeyAB's layer as its CMake build with AVX (the default on x86)
    computes it: as above with eight-lane sums (``build="ofast-avx"``).
"""
from collections.abc import Sequence
import math
from typing import Any
import warnings

import numpy as np
import numpy.typing as npt

from bnkernels import _kernels, darknet
from bnkernels._typing import FloatArray, Tensor
from bnkernels.module import (IncompatibleKeys, Module, StateDictError,
                               _checked_state_array)

__all__ = ["NUMERICS", "ACTIVATIONS", "LAYOUTS", "defaults", "BatchNormSaved",
           "batch_norm_forward", "batch_norm_backward", "BatchNorm", "BatchNorm1d",
           "BatchNorm2d", "BatchNorm3d", "DEFAULT", "IncompatibleKeys", "StateDictError"]

# standard, then Darknet's: each a fork and a build (darknet.split_numerics)
NUMERICS = ("standard",) + darknet.LAYER_NUMERICS


def check_numerics(numerics: str) -> str:
    if numerics not in NUMERICS:
        raise ValueError(
            f"numerics must be one of {', '.join(map(repr, NUMERICS))}, got {numerics!r}")
    return numerics


LAYOUTS = ("NCHW", "NHWC")


def check_layout(layout: str, numerics: str = "standard") -> bool:
    """True for "NHWC" (channels last), False for "NCHW"; NHWC needs standard
    numerics (Darknet's layers are NCHW)."""
    name = layout.upper() if isinstance(layout, str) else layout
    if name not in LAYOUTS:
        raise ValueError(f"layout must be 'NCHW' or 'NHWC', got {layout!r}")
    if name == "NHWC" and numerics != "standard":
        raise ValueError(f"layout='NHWC' needs numerics='standard' (Darknet's layers are "
                         f"NCHW), got numerics={numerics!r}")
    return name == "NHWC"


def defaults(numerics: str = "standard") -> tuple[float, float]:
    """``(eps, momentum)`` that a numerics family uses when given None."""
    if check_numerics(numerics) == "standard":
        return 1e-5, 0.1
    return darknet.forward_eps(numerics), darknet.default_momentum(numerics)


# each Darknet numerics' (fork, eps inside the forward's square root,
# default eps, default momentum), looked up once per call
_DARKNET_FORWARD = {numerics: (darknet.split_numerics(numerics)[0],
                               darknet.eps_inside_sqrt(numerics, "forward"),
                               *defaults(numerics))
                    for numerics in darknet.LAYER_NUMERICS}


class BatchNormSaved:
    """What batch_norm_backward needs from the forward pass.

    x is referenced, not copied: do not modify it before the backward.
    Standard numerics keep ``mean`` and ``invstd`` (float64; running statistics
    in eval mode); Darknet numerics keep Darknet's ``mean``, ``variance`` and
    ``x_norm`` in x's dtype. ``relu`` records a fused ReLU; weight and bias
    are kept to recompute its mask. ``nhwc``: x is channels last.
    """
    __slots__ = ("numerics", "training", "x", "weight", "bias", "mean", "invstd",
                 "variance", "x_norm", "x_overwritten", "relu", "nhwc")

    def __init__(self, numerics: str, training: bool, x: FloatArray,
                 weight: FloatArray | None, bias: FloatArray | None, mean: FloatArray,
                 invstd: FloatArray | None = None, variance: FloatArray | None = None,
                 x_norm: FloatArray | None = None, x_overwritten: bool = False,
                 relu: bool = False, nhwc: bool = False) -> None:
        self.numerics = numerics
        self.training = training
        self.x = x
        self.weight = weight
        self.bias = bias
        self.mean = mean
        self.invstd = invstd
        self.variance = variance
        self.x_norm = x_norm
        self.x_overwritten = x_overwritten
        self.relu = relu
        self.nhwc = nhwc

    @property
    def has_bias(self) -> bool:
        return self.bias is not None

    def __repr__(self) -> str:
        return (f"BatchNormSaved(numerics={self.numerics!r}, training={self.training}, "
                f"x shape={self.x.shape}, relu={self.relu}"
                + (", layout='NHWC'" if self.nhwc else "") + ")")


ACTIVATIONS = (None, "relu")


def check_activation(activation: str | None) -> bool:
    """True for "relu", False for None; anything else raises."""
    if activation is None:
        return False
    if isinstance(activation, str) and activation == "relu":
        return True
    raise ValueError(f"activation must be None or 'relu', got {activation!r}")


def batch_norm_forward(x: Tensor, weight: Tensor | None, bias: Tensor | None,
                       running_mean: Tensor | None, running_var: Tensor | None, *,
                       training: bool = True, momentum: float | None = None,
                       eps: float | None = None, numerics: str = "standard",
                       activation: str | None = None, out: Tensor | None = None,
                       workspace: FloatArray | None = None, layout: str = "NCHW",
                       running_var_ddof: int = 1) -> tuple[FloatArray, BatchNormSaved]:
    """Batch-normalize a tensor per channel.

    Parameters
    ----------
    x : ndarray, (N, C, *spatial), float32 or float64, C-contiguous
        Zero or more spatial axes: (N, C) after a linear layer, (N, C, L),
        (N, C, H, W), (N, C, D, H, W), ... Or channels last,
        (N, *spatial, C), with ``layout="NHWC"``. Any object NumPy can view
        without a copy is accepted (``__dlpack__``, e.g. a PyTorch CPU tensor,
        ``__array_interface__``, the buffer protocol).
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
        eps must be finite and >= 0, momentum finite and in [0, 1] (a bool or
        a string is a TypeError, NaN, infinity or a value out of range a
        ValueError), in every mode.
    numerics : {"standard", "darknet", "darknet-alexeyab", "darknet-ofast", "darknet-alexeyab-ofast", "darknet-alexeyab-ofast-avx"}
    activation : {None, "relu"}
        "relu" returns max(y, 0) (NaN stays NaN), fused into the normalizing
        pass with standard numerics; the backward then passes dy only where
        y > 0 (the Conv+BN+ReLU unit of BN-Inception).
    out : ndarray, x's shape, optional
        Where to write y. May be x itself (in place, for inference); the
        backward then raises, since it needs x.
    workspace : ndarray, x's shape, optional
        Darknet numerics in training: where to keep x_norm (Darknet's
        ``l.x_norm``) instead of a new array, so that repeated calls allocate
        nothing. Standard numerics, and Darknet's eval mode, need no
        workspace: one given is checked as in training (x's shape and dtype,
        writeable, sharing no memory with another argument) and left as it
        was.
    layout : {"NCHW", "NHWC"}
        "NCHW": channels first, (N, C, *spatial). "NHWC": x, out and y are
        channels last, (N, *spatial, C), as Keras, TensorFlow and Flax store
        them and PyTorch's ``channels_last`` (permuted). Standard numerics
        only. The two are the same for (N, C).
    running_var_ddof : {1, 0}
        What the running variance tracks in training: 1, the unbiased batch
        variance (sum of squares / (n - 1), PyTorch, Darknet, Caffe); 0, the
        biased one (/ n, ONNX, Keras 3, Flax). y is normalized with the
        biased variance either way. Darknet numerics take 1 only.

    Returns
    -------
    y : ndarray, x's shape
    saved : BatchNormSaved
        Pass it to batch_norm_backward.

    Raises
    ------
    ValueError
        Standard numerics with one value per channel in training (N times the
        spatial size == 1),
        as PyTorch. Darknet numerics compute Darknet's NaN instead and warn.

    An empty batch (no values per channel) gives an empty y and leaves the running
    statistics unchanged.

    Arrays the call writes (out, workspace, and running_mean and running_var
    in training) share no memory with any other argument, given or written;
    the one exception is out=x. A call that breaks this, or raises for any
    other reason, raises before it writes anything.
    """
    relu = activation is not None and check_activation(activation)
    nhwc = layout == "NHWC" or (layout != "NCHW" and check_layout(layout, numerics))
    if numerics == "standard":  # the fast path: one call into the extension
        y, x, weight, mean, invstd, batch_stats, overwritten = _kernels.standard_forward(
            x, weight, bias, running_mean, running_var, training,
            0.1 if momentum is None else momentum, 1e-5 if eps is None else eps,
            relu, out, nhwc, running_var_ddof, workspace)
        return y, BatchNormSaved("standard", batch_stats, x, weight, bias, mean,
                                 invstd, None, None, overwritten, relu, nhwc)
    numerics = check_numerics(numerics)
    if layout != "NCHW":  # "NCHW" itself passes
        check_layout(layout, numerics)
    if _kernels.check_ddof(running_var_ddof) != 1:
        raise ValueError(f"numerics={numerics!r} keeps Darknet's unbiased variance in the "
                         f"running variance: running_var_ddof must be 1, got "
                         f"{running_var_ddof!r}")
    _, eps_inside, default_eps, default_momentum = _DARKNET_FORWARD[numerics]
    eps = default_eps if eps is None else _kernels.check_eps(eps)
    momentum = default_momentum if momentum is None else _kernels.check_momentum(momentum)
    if not (training or running_mean is None):
        # eval mode with running statistics keeps no x_norm (and takes any
        # eps, 0 included): the checks and forward_batchnorm_layer's
        # normalize_cpu, scale_bias and add_bias in one call, one pass into y
        y, x, weight, bias, running_mean, running_var, y_is_x = _kernels.dk_layer_inference(
            x, weight, bias, running_mean, running_var, eps, eps_inside, out, workspace)
        if relu:
            np.maximum(y, 0, out=y)
        return y, BatchNormSaved(numerics, False, x, weight, bias, running_mean, None,
                                 running_var, None, y_is_x, relu)
    _kernels.check_batch_eps(eps, True)
    x, weight, bias, running_mean, running_var, out = _kernels.check_forward(
        x, weight, bias, running_mean, running_var, training, out, workspace=workspace)
    return _darknet_forward(x, weight, bias, running_mean, running_var,
                            training, momentum, eps, numerics, relu, out, workspace)


def batch_norm_backward(dy: Tensor, saved: BatchNormSaved, *, out: Tensor | None = None
                        ) -> tuple[FloatArray, FloatArray | None, FloatArray | None]:
    """Gradients of batch_norm_forward.

    Parameters
    ----------
    dy : ndarray, x's shape
        dL/dy, same shape and dtype as the forward's x.
    saved : BatchNormSaved
        From batch_norm_forward.
    out : ndarray, x's shape, optional
        Where to write dx; may be dy itself, but share no memory with any
        other array the backward reads (dy, and the forward's x, weight,
        bias and statistics in saved). A bad out raises before anything is
        written.

    Returns
    -------
    dx : ndarray, x's shape
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

def _spatial_size(x):
    """The product of an NCHW tensor's spatial axes (1 for (N, C))."""
    return math.prod(x.shape[2:])


def _values_per_channel(x):
    return x.shape[0] * _spatial_size(x)


def _standard_backward(dy, saved, out):
    dx, sum_dy, sum_dy_xhat = _kernels.standard_backward(
        dy, saved.x, saved.mean, saved.invstd, saved.weight, saved.bias,
        saved.training, saved.relu, out, saved.nhwc)
    dweight = sum_dy_xhat.astype(dx.dtype) if saved.weight is not None else None
    dbias = sum_dy.astype(dx.dtype) if saved.bias is not None else None
    return dx, dweight, dbias


# ---------------------------------------------------------------------------
# Darknet numerics: forward_batchnorm_layer and backward_batchnorm_layer of
# src/batchnorm_layer.c, composed from the kernels of bnkernels.darknet
# ---------------------------------------------------------------------------

def _or_constant(vector, value, x):
    """Darknet's layer always has scales and biases: None means 1 or 0."""
    return np.full(x.shape[1], value, x.dtype) if vector is None else vector


def _darknet_forward(x, weight, bias, running_mean, running_var, training,
                     momentum, eps, numerics, relu, out, workspace):
    # the forward is the same in every build; eval mode with running
    # statistics goes by _kernels.dk_layer_inference (batch_norm_forward)
    fork = _DARKNET_FORWARD[numerics][0]
    n = _values_per_channel(x)
    if n == 1:
        warnings.warn(
            "one value per channel: Darknet divides the variance by n - 1 = 0, "
            "so the variance, the output and the rolling variance are NaN",
            RuntimeWarning, stacklevel=3)
    mean = darknet.mean_cpu(x)
    variance = darknet.variance_cpu(x, mean)
    # Darknet keeps x_norm for its backward (in the workspace, if given)
    x_norm = darknet.normalize_cpu(x, mean, variance, numerics=fork, eps=eps,
                                   out=workspace)
    y = darknet.scale_add_bias(x_norm, _or_constant(weight, 1, x),
                               _or_constant(bias, 0, x), out=out)
    if relu:
        np.maximum(y, 0, out=y)
    saved = BatchNormSaved(numerics, True, x, weight, bias, mean,
                           variance=variance, x_norm=x_norm,
                           x_overwritten=out is not None and _kernels.same_memory(out, x),
                           relu=relu)
    if training and running_mean is not None and n > 0:
        darknet.rolling_update(running_mean, mean, momentum=momentum, numerics=fork)
        darknet.rolling_update(running_var, variance, momentum=momentum, numerics=fork)
    return y, saved


def _darknet_backward(dy, saved, out):
    fork, build = darknet.split_numerics(saved.numerics)
    if not saved.training:
        raise ValueError(
            "Darknet numerics define the backward only after a training forward "
            "(Darknet's backward_batchnorm_layer uses the batch statistics)")
    # everything checked up front: the ReLU mask below writes out first
    out, x, x_norm, mean, variance, weight, bias = _kernels.check_darknet_backward(
        dy, out, saved.x, saved.x_norm, saved.mean, saved.variance, saved.weight, saved.bias)
    has_weight, has_bias = weight is not None, bias is not None
    weight = _or_constant(weight, 1, x)
    if saved.relu:  # Darknet's gradient_array: dy where the output y > 0
        # dy * 1 copies dy exactly, into out if given (checked like any out;
        # it may be dy itself); then zero it where y, recomputed a block of
        # channels at a time (small temporaries), is not positive.
        masked = darknet.scale_bias(dy, _or_constant(None, 1, x), out=out)
        bias = _or_constant(bias, 0, x)
        step = max(1, 16384 // max(1, _spatial_size(x)))
        for b in range(x.shape[0]):
            for c in range(0, x.shape[1], step):
                block = slice(b, b + 1), slice(c, c + step)
                y = darknet.scale_add_bias(x_norm[block], weight[c:c + step],
                                           bias[c:c + step])
                np.copyto(masked[block], 0, where=~(y > 0))
        dy = out = masked  # our own array now: dx may overwrite it
    dx, dweight, dbias = darknet.backward_batchnorm_layer(
        x, x_norm, dy, mean, variance, weight, numerics=fork, build=build, out=out)
    return (dx, dweight if has_weight else None, dbias if has_bias else None)


# ---------------------------------------------------------------------------
# the layer
# ---------------------------------------------------------------------------

DEFAULT = "default"  # momentum=DEFAULT: the numerics family's own (see defaults)

# how many of its recent outputs (and dx) a layer keeps for its default path
_RECENT_RESULTS = 2


class BatchNorm(Module):
    """Batch normalization layer over (N, C, *spatial) inputs of any rank >= 2
    (or (N, *spatial, C) with ``layout="NHWC"``), with its state, and
    torch.nn's layer semantics (train()/eval(), momentum=None, state_dict).
    A Module (bnkernels.module): it composes with bnkernels.nn's layers.

    BatchNorm1d, BatchNorm2d and BatchNorm3d are this layer with PyTorch's
    input-rank check.

    Parameters
    ----------
    num_features : int
        C, the number of channels.
    numerics : {"standard", "darknet", "darknet-alexeyab", "darknet-ofast", "darknet-alexeyab-ofast", "darknet-alexeyab-ofast-avx"}
    eps : float, optional
        None takes the family's default (standard: 1e-5).
    momentum : float, None or "default"
        The weight of the batch statistic in the running ones. "default"
        takes the family's (standard: 0.1); None, as in PyTorch, makes the
        running statistics the cumulative average of every batch's: the
        momentum of a training call is 1 / num_batches_tracked (after
        counting that call). eps and momentum are checked as in
        batch_norm_forward, here and whenever they are set later.
    affine : bool
        Learn weight (gamma, starts at 1) and bias (beta, starts at 0).
    track_running_stats : bool
        Keep running_mean (starts at 0) and running_var (starts at 1); without
        them the batch statistics are used in eval mode too.
    dtype : numpy.float32 or numpy.float64
    activation : {None, "relu"}
        "relu": the layer is BN followed by ReLU, fused (see batch_norm_forward).
    reuse_buffers : bool
        Keep the output, dx and (Darknet numerics) x_norm arrays and write
        into them again on the next call of the same shape, as Darknet's
        layers do: no allocation, no page faults. Each call then returns the
        same arrays, overwritten; copy a result you want to keep.
        Without it (the default) every call returns an array nothing else
        sees, but the layer still spares the page faults of a new array
        where it can: it keeps its last two outputs (and its last two dx)
        and writes into one of them again only once nothing but the layer
        references it (no variable, view, memoryview, weak reference,
        DLPack or torch.from_numpy tensor, ...), and it is writeable. The
        memory trade-off: up to two outputs and two dx of the last shapes
        stay allocated after the caller drops them, until the next call of
        another shape or ``release_buffers()``.
    layout : {"NCHW", "NHWC"}
        Channels first or last in x, y, dy and dx (see batch_norm_forward);
        NHWC needs standard numerics.
    running_var_ddof : {1, 0}
        1: running_var tracks the unbiased batch variance (PyTorch, Darknet);
        0: the biased one (ONNX, Keras 3, Flax). See batch_norm_forward.

    Attributes
    ----------
    training : bool
        The mode ``layer(x)`` runs in: ``train()`` sets it, ``eval()`` clears
        it (True for a new layer).
    weight, bias, grad_weight, grad_bias : ndarray, (C,), or None if not affine
        Gradients accumulate (``+=``) across backward calls, as in PyTorch and
        Darknet; ``zero_grad()`` resets them. With Darknet numerics,
        ``grad_bias`` is the real bias gradient even for AlexeyAB, whose own
        CPU layer leaves it at 0.
    running_mean, running_var : ndarray, (C,), or None
    num_batches_tracked : int
        Training calls that updated the running statistics.
    """

    # (C,) arrays, or None where affine (the first four) or track_running_stats
    # (the last two) is false; Any, since those flags are not in the type
    weight: Any
    bias: Any
    grad_weight: Any
    grad_bias: Any
    running_mean: Any
    running_var: Any
    _saved: BatchNormSaved | None
    _buffers: dict[str, FloatArray]
    _recent: dict[str, list[FloatArray]]
    _momentum: float | None
    _forward = staticmethod(batch_norm_forward)
    _backward = staticmethod(batch_norm_backward)
    training = True

    def __init__(self, num_features: int, *, numerics: str = "standard",
                 eps: float | None = None, momentum: float | str | None = DEFAULT,
                 affine: bool = True, track_running_stats: bool = True,
                 dtype: npt.DTypeLike = np.float32, activation: str | None = None,
                 reuse_buffers: bool = False, layout: str = "NCHW",
                 running_var_ddof: int = 1) -> None:
        if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)) \
                or num_features < 0:
            raise ValueError(f"num_features must be a non-negative int, got {num_features!r}")
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
        self.numerics = check_numerics(numerics)
        self.num_features = int(num_features)
        self.eps = eps
        self.momentum = momentum
        ddof = _kernels.check_ddof(running_var_ddof)
        if ddof != 1 and self.numerics != "standard":
            raise ValueError(f"numerics={numerics!r} keeps Darknet's unbiased variance: "
                             f"running_var_ddof must be 1, got {running_var_ddof!r}")
        self.running_var_ddof = int(ddof)
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
        check_activation(activation)
        self.activation = activation
        self.reuse_buffers = bool(reuse_buffers)
        self.layout = "NHWC" if check_layout(layout, self.numerics) else "NCHW"
        self.training = True
        self._saved = None
        self._buffers = {}
        self._recent = {}

    @property
    def eps(self) -> float:
        return self._eps

    @eps.setter
    def eps(self, value: float | None) -> None:
        """None: the family's default; otherwise finite and >= 0."""
        self._eps = defaults(self.numerics)[0] if value is None else _kernels.check_eps(value)

    @property
    def momentum(self) -> float | None:
        return self._momentum

    @momentum.setter
    def momentum(self, value: float | str | None) -> None:
        """"default": the family's; None: the cumulative average; otherwise
        finite and in [0, 1]."""
        if isinstance(value, str):
            if value != DEFAULT:
                raise TypeError(f"momentum must be a real number, None or {DEFAULT!r}, "
                                f"got str {value!r} (expected: finite and in [0, 1])")
            self._momentum = defaults(self.numerics)[1]
        elif value is None:
            self._momentum = None
        else:
            self._momentum = _kernels.check_momentum(value)

    _ranks: tuple[int, ...] | None = None     # the input ranks a subclass takes (None: any >= 2)
    _expected: dict[str, str] = {}  # {layout: the shape it expects}, for the message

    def _check_input_dim(self, x: Tensor) -> None:
        """Raise, with PyTorch's words, for an input of a rank the layer does
        not take (BatchNorm itself takes any >= 2, checked by the kernels)."""
        if self._ranks is None or (x.ndim if type(x) is np.ndarray else np.ndim(x)) in self._ranks:
            return
        ranks = " or ".join(f"{r}D" for r in self._ranks)
        raise ValueError(f"expected {ranks} input (got {np.ndim(x)}D input): x has shape "
                         f"{np.shape(x)}, expected {self._expected[self.layout]}")

    def forward(self, x: Tensor, training: bool | None = None) -> FloatArray:
        """Normalize x; in training, update the running statistics.

        training: None follows the layer's mode (``self.training``). Returns
        y, an array of x's shape and the layer's dtype.
        """
        if training is None:
            training = self.training
        self._check_input_dim(x)
        # without running statistics, eval mode normalizes with the batch's too
        use_batch_stats = training or not self.track_running_stats
        updates = training and self.track_running_stats
        momentum = self.momentum
        if momentum is None:  # the cumulative average, counting this call
            momentum = 1.0 / (self.num_batches_tracked + 1) if updates else 0.0
        self._saved = None  # a failed call leaves no stale state behind
        workspace = None
        if self.reuse_buffers:
            out = self._buffer("y", x)
            if self.numerics != "standard" and use_batch_stats:
                workspace = self._buffer("x_norm", x)
        else:
            out = self._unshared("y", x)
        y, self._saved = self._forward(
            x, self.weight, self.bias, self.running_mean, self.running_var,
            training=use_batch_stats, momentum=momentum, eps=self.eps,
            numerics=self.numerics, activation=self.activation, out=out,
            workspace=workspace, layout=self.layout,
            running_var_ddof=self.running_var_ddof)
        if not self.reuse_buffers:
            self._remember("y", y)
        if updates:
            self.num_batches_tracked += 1
        return y

    __call__ = forward

    def backward(self, dy: Tensor) -> FloatArray:
        """dL/dx for the last forward; adds dL/dweight, dL/dbias to the grads."""
        if self._saved is None:
            raise RuntimeError("backward called before forward")
        saved = self._saved
        if self.affine and isinstance(saved, BatchNormSaved):
            # the gradients are written too: checked before anything runs
            _kernels.check_gradients(self.grad_weight, self.grad_bias, dy, saved.x,
                                     saved.x_norm, saved.mean, saved.invstd,
                                     saved.variance, saved.weight, saved.bias, saved.nhwc)
        if self.reuse_buffers:
            out = self._buffer("dx", saved.x)
        else:
            out = self._unshared("dx", saved.x, dy)
        dx, dweight, dbias = self._backward(dy, saved, out=out)
        if not self.reuse_buffers:
            self._remember("dx", dx)
        if self.affine:
            self.grad_weight += dweight
            self.grad_bias += dbias
        return dx

    def _buffer(self, name: str, like: Tensor) -> FloatArray | None:
        """The kept array `name` for tensors like `like`, (re)made on first use
        and when the shape or dtype changes."""
        if type(like) is np.ndarray:
            like_shape, like_dtype = like.shape, like.dtype
        else:
            like_shape, like_dtype = np.shape(like), getattr(like, "dtype", None)
        buffer = self._buffers.get(name)
        if buffer is None or buffer.shape != like_shape or buffer.dtype != like_dtype:
            if like_dtype not in (np.float32, np.float64) or len(like_shape) < 2:
                return None  # let the forward report the bad input
            buffer = self._buffers[name] = np.empty(like_shape, like_dtype)
        return buffer

    def _unshared(self, name: str, like: Any, *inputs: Any) -> FloatArray | None:
        """One of the layer's recent results `name` that nothing but the layer
        references any more, of like's shape and dtype and sharing no memory
        with like or inputs (_kernels.reusable_result), to be written again;
        None if there is none (the call then allocates)."""
        recent = self._recent.get(name)
        if recent:
            i = _kernels.reusable_result(recent, like, inputs)
            if i >= 0:
                return recent[i]
        return None

    def _remember(self, name: str, result: FloatArray) -> None:
        """Keep result, an array the layer's call returned, as the newest of
        the last _RECENT_RESULTS of `name`."""
        recent = self._recent.get(name)
        if recent is None:
            recent = self._recent[name] = []
        elif recent[-1] is result:
            return
        else:  # an older one written again becomes the newest
            recent[:] = [kept for kept in recent if kept is not result]
        recent.append(result)
        if len(recent) > _RECENT_RESULTS:
            del recent[0]

    def release_buffers(self) -> None:
        """Drop the arrays the layer keeps between calls: the reused ones
        (reuse_buffers) and the recent results the default path may write
        again. The next call allocates anew."""
        self._buffers = {}
        self._recent = {}

    def __getstate__(self) -> dict[str, Any]:
        """The layer without its recent results (a copy or pickle need not
        carry them)."""
        state = dict(self.__dict__)
        state["_recent"] = {}
        return state

    def zero_grad(self) -> None:
        if self.affine:
            self.grad_weight.fill(0)
            self.grad_bias.fill(0)

    def _own_parameters(self) -> list[tuple[str, FloatArray, FloatArray]]:
        """[(name, value, grad)] of weight and bias, or [] if not affine."""
        if not self.affine:
            return []
        return [("weight", self.weight, self.grad_weight), ("bias", self.bias, self.grad_bias)]

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.fill(0)
            self.running_var.fill(1)
            self.num_batches_tracked = 0

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        return tuple(input_shape)

    def macs(self, input_shape: Sequence[int]) -> int:
        return 0

    def num_weights(self) -> int:
        return 0

    def children(self) -> list[tuple[str, Module]]:
        return []

    def _own_state(self) -> dict[str, Any]:
        """weight, bias, running_mean, running_var and num_batches_tracked (an
        int64 scalar), under torch.nn's batch-norm keys, as they apply."""
        state = {}
        if self.affine:
            state["weight"] = self.weight
            state["bias"] = self.bias
        if self.track_running_stats:
            state["running_mean"] = self.running_mean
            state["running_var"] = self.running_var
            state["num_batches_tracked"] = np.int64(self.num_batches_tracked)
        return state

    def _check_state_entry(self, name: str, value: Any, key: str) -> Any:
        if name == "num_batches_tracked":
            try:
                count = np.asarray(value)
            except Exception as error:
                raise TypeError(f"{key}: cannot read {type(value).__name__} as a number "
                                f"({error})") from None
            if count.dtype.kind not in "iu" or count.shape not in ((), (1,)):
                raise TypeError(f"{key} must be an integer (a count of batches), got "
                                f"{count.dtype} of shape {count.shape}")
            if int(count.reshape(())) < 0:
                raise ValueError(f"{key} must be >= 0, got {int(count.reshape(()))}")
            return int(count.reshape(()))
        checked = _checked_state_array(value, getattr(self, name), key)
        if name == "running_var" and (checked < 0).any():
            raise ValueError(f"{key} has negative values (smallest {checked.min()}); a "
                             f"variance is >= 0")
        return checked

    def _write_state_entry(self, name: str, value: Any) -> None:
        if name == "num_batches_tracked":
            self.num_batches_tracked = value
        else:
            getattr(self, name)[...] = value

    def _restorable(self, forward: bool) -> list[FloatArray]:
        if forward:  # the running statistics
            return [self.running_mean, self.running_var] if self.track_running_stats else []
        return Module._restorable(self, forward)

    def __repr__(self) -> str:
        momentum = "None" if self.momentum is None else f"{self.momentum:g}"
        return (f"{type(self).__name__}({self.num_features}, numerics={self.numerics!r}, "
                f"eps={self.eps:g}, momentum={momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}, dtype={self.dtype.name}"
                + (f", activation={self.activation!r}" if self.activation else "")
                + (", reuse_buffers=True" if self.reuse_buffers else "")
                + (", layout='NHWC'" if self.layout == "NHWC" else "")
                + (", running_var_ddof=0" if self.running_var_ddof == 0 else "") + ")")


class BatchNorm1d(BatchNorm):
    """BatchNorm over (N, C) or (N, C, L) inputs (torch.nn.BatchNorm1d);
    arguments as BatchNorm."""
    _ranks = (2, 3)
    _expected = {"NCHW": "(N, C) or (N, C, L)", "NHWC": "(N, C) or (N, C, L)"}


class BatchNorm2d(BatchNorm):
    """BatchNorm over (N, C, H, W) inputs, or (N, H, W, C) with
    layout="NHWC" (torch.nn.BatchNorm2d); arguments as BatchNorm."""
    _ranks = (4,)
    _expected = {"NCHW": "(N, C, H, W)", "NHWC": "(N, H, W, C)"}


class BatchNorm3d(BatchNorm):
    """BatchNorm over (N, C, D, H, W) inputs, or (N, D, H, W, C) with
    layout="NHWC" (torch.nn.BatchNorm3d); arguments as BatchNorm."""
    _ranks = (5,)
    _expected = {"NCHW": "(N, C, D, H, W)", "NHWC": "(N, D, H, W, C)"}
