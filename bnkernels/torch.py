"""PyTorch front end: bnkernels' standard-numerics kernels behind torch's BN API.

``batch_norm`` has ``torch.nn.functional.batch_norm``'s signature and meaning,
``BatchNorm1d``, ``BatchNorm2d`` and ``BatchNorm3d`` are torch.nn's (same
arguments, parameters, buffers, state_dict, errors) whose forward and
backward run bnkernels' C kernels, and ``convert`` makes the BatchNorm layers
of an existing model those, in place.

CPU tensors only (float32 or float64, (N, C, *spatial)); CUDA tensors are
rejected. Tensors reach the kernels without copies: ``t.detach().numpy()``
shares the tensor's memory, outputs are new tensors allocated by torch that
the kernels write into (so autograd treats them as any op's output: in-place
operations on them work), and running_mean/running_var are updated in place
in the torch buffers. A channels_last (4-D) or channels_last_3d (5-D) input
runs through the NHWC kernels without a copy, and its output and gradient
are in its memory format too; any other input that is not C-contiguous is
copied to a contiguous one first, as torch's own CPU batch_norm does.

Needs PyTorch (``pip install bnkernels[torch]``); ``import bnkernels`` never
imports it.
"""
if __name__ == "torch":  # this file found as the top-level `torch`
    raise ImportError(
        "bnkernels/torch.py was imported as `torch` because the bnkernels/ directory "
        "is on sys.path (a script run from inside the package?); run it as a module "
        "from outside, e.g. python -m bnkernels")

try:
    import torch  # absolute import: PyTorch, not this module
except ImportError as error:
    raise ImportError(
        "bnkernels.torch needs PyTorch, which is not installed: "
        "pip install bnkernels[torch]", name="torch") from error

from collections.abc import Iterable
import math
import numbers
from typing import TYPE_CHECKING, Any

import numpy as np
from torch.autograd.function import once_differentiable

from bnkernels import _kernels
from bnkernels import batchnorm as _batchnorm
from bnkernels.module import Module

__all__ = ["BatchNormFunction", "batch_norm", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d",
           "BatchNormTypeError", "BatchNormValueError", "Concat", "convert", "to_torch"]

_DTYPES = (torch.float32, torch.float64)


# ---------------------------------------------------------------------------
# errors: torch's exception types, bnkernels' messages
# ---------------------------------------------------------------------------

class BatchNormValueError(ValueError, RuntimeError):
    """A vector of the wrong shape, or one running statistic without the
    other. A ValueError, as bnkernels reports bad arguments, and a
    RuntimeError, as torch.nn.functional.batch_norm reports these: an
    ``except`` clause written for either catches it."""


class BatchNormTypeError(TypeError, RuntimeError):
    """A vector whose dtype is not input's: a TypeError, as in bnkernels, and
    a RuntimeError, as torch.nn.functional.batch_norm's "mixed dtype"."""


# ---------------------------------------------------------------------------
# tensors <-> the arrays the kernels read and write (zero-copy)
# ---------------------------------------------------------------------------

# The memory format in which a tensor of each rank is channels last (torch
# has one for 4-D and 5-D tensors only).
_CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}


def _layout(tensor):
    """The layout of the kernels that read an (N, C, *spatial) tensor without
    a copy: NHWC for a channels_last (4-D) or channels_last_3d (5-D) tensor,
    NCHW for any other (a strided one is copied to contiguous, as torch's own
    CPU batch_norm does)."""
    channels_last = _CHANNELS_LAST.get(tensor.dim())
    if channels_last is not None and not tensor.is_contiguous() and \
            tensor.is_contiguous(memory_format=channels_last):
        return "NHWC"
    return "NCHW"


def _memory_format(layout, rank):
    return torch.contiguous_format if layout == "NCHW" else _CHANNELS_LAST[rank]


def _in_layout(tensor, layout):
    """tensor, detached, in the layout's memory format: itself, or a copy."""
    return tensor.detach().contiguous(memory_format=_memory_format(layout, tensor.dim()))


def _empty(like, layout):
    """A new tensor of like's shape and dtype in the layout's memory format,
    for a kernel to write (an output owned by torch, not a view)."""
    return torch.empty(like.shape, dtype=like.dtype,
                       memory_format=_memory_format(layout, like.dim()))


def _array(tensor, layout):
    """The C-contiguous 4-D array that the kernels of the layout take, over
    the memory of a tensor in the layout's memory format (see _in_layout,
    _empty): (N, C, S, 1) for NCHW, (N, S, 1, C) for NHWC, where S is the
    product of the spatial sizes (1 for an (N, C) tensor). Normalizing per
    channel over N and the spatial positions does not depend on how those
    positions are arranged, so this is the same batch norm."""
    n, c, spatial = tensor.shape[0], tensor.shape[1], math.prod(tensor.shape[2:])
    if layout == "NCHW":
        return tensor.view(n, c, spatial, 1).numpy()  # view: never a copy
    channels_last = tensor.permute(0, *range(2, tensor.dim()), 1)  # (N, *spatial, C)
    return channels_last.view(n, spatial, 1, c).numpy()


def _layout_arguments(layout):
    """The keywords that tell batch_norm_forward the array layout."""
    return {} if layout == "NCHW" else {"layout": layout}


def _vector(tensor):
    """weight or bias as a NumPy vector (a view unless strided)."""
    return None if tensor is None else tensor.detach().contiguous().numpy()


def _running(tensor):
    """running_mean or running_var as the contiguous NumPy vector the kernel
    updates: a view of the tensor, or for a strided one a copy that the
    forward writes back (_write_back)."""
    return None if tensor is None else tensor.detach().contiguous().numpy()


def _write_back(tensor, array):
    """Put an updated copy (_running) back into a strided running statistic."""
    if tensor is not None and not tensor.is_contiguous():
        tensor.detach().numpy()[...] = array


# ---------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------

def _scalar(value, name):
    """value as a float: a Python or NumPy number, or a one-element tensor
    (torch's batch_norm takes those too); TypeError for anything else."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    return float(value)


def _check_momentum(momentum):
    """momentum as a float in [0, 1], the weight of a batch's statistics in
    the running ones. torch takes any float, but outside [0, 1] (or NaN)
    the running statistics become meaningless, running_var negative or NaN."""
    if momentum is None:
        raise TypeError("momentum must be a float, not None (torch.nn's BatchNorm "
                        "modules' momentum=None passes 1 / num_batches_tracked)")
    momentum = _scalar(momentum, "momentum")
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"batch_norm momentum must be in [0, 1], but got {momentum}")
    return momentum


def _check_eps(eps, training):
    """eps as a float: positive in training and non-negative in evaluation,
    as torch requires, and finite (torch takes NaN, which makes every output
    NaN, and inf, which makes it the bias)."""
    eps = _scalar(eps, "eps")
    if not math.isfinite(eps):
        raise ValueError(f"batch_norm eps must be finite, but got {eps}")
    if training and eps <= 0.0:
        raise ValueError(f"batch_norm eps must be positive during training, "
                         f"but got {eps}")
    if eps < 0.0:
        raise ValueError(f"batch_norm eps must be non-negative, but got {eps}")
    return eps


def _check_arguments(input, running_mean, running_var, weight, bias, training,
                     momentum, eps):
    """torch's checks of F.batch_norm, then the kernels' limits, in torch's
    terms. Returns training, momentum and eps as bool, float, float."""
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"input must be a torch.Tensor, got {type(input).__name__}")
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"training must be a bool, got {type(training).__name__}")
    training = bool(training)
    momentum, eps = _check_momentum(momentum), _check_eps(eps, training)
    if input.device.type != "cpu":
        raise ValueError(f"input is on {input.device}, expected a CPU tensor: "
                         "bnkernels.torch runs bnkernels' CPU kernels; use "
                         "torch.nn's batch norm on other devices")
    if input.dtype not in _DTYPES:
        raise TypeError(f"input has dtype {input.dtype}, expected torch.float32 or "
                        "torch.float64")
    if input.dim() < 2:
        raise ValueError(f"input must be (N, C, *spatial), at least 2-D, got "
                         f"{input.dim()}-D input of shape {tuple(input.shape)}")
    if (running_mean is None) != (running_var is None):
        raise BatchNormValueError("running_mean and running_var must either both be "
                                  "None or neither be None")
    if not training and running_mean is None:
        raise RuntimeError("running_mean must be defined in evaluation mode")
    channels = input.shape[1]
    for name, vector in (("running_mean", running_mean), ("running_var", running_var),
                         ("weight", weight), ("bias", bias)):
        if vector is None:
            continue
        if not isinstance(vector, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor or None, "
                            f"got {type(vector).__name__}")
        if vector.device.type != "cpu":
            raise ValueError(f"{name} is on {vector.device}, expected a CPU tensor "
                             "like input")
        if vector.dtype != input.dtype:
            raise BatchNormTypeError(f"{name} has dtype {vector.dtype}, expected "
                                     f"{input.dtype} to match input")
        if tuple(vector.shape) != (channels,):
            raise BatchNormValueError(f"{name} has shape {tuple(vector.shape)}, expected "
                                      f"({channels},) to match input's {channels} "
                                      "channels")
    for name, vector in (("running_mean", running_mean), ("running_var", running_var)):
        if training and vector is not None and channels > 1 and vector.stride(0) == 0:
            raise ValueError(f"{name} has stride 0 (an expanded tensor): its {channels} "
                             "values share one memory location, but each is updated")
    if training:
        size = input.shape
        if size[0] * math.prod(size[2:]) == 1:
            raise ValueError("Expected more than 1 value per channel when training, "
                             f"got input size {size}")
    return training, momentum, eps


# ---------------------------------------------------------------------------
# autograd
# ---------------------------------------------------------------------------

class BatchNormFunction(torch.autograd.Function):
    """Batch norm whose forward and backward are bnkernels' standard-numerics
    kernels. ``apply(input, running_mean, running_var, weight, bias,
    training, momentum, eps, running_var_ddof)``, all positional, as
    torch.nn.functional.batch_norm plus the last; prefer ``batch_norm``.

    Differentiable once (w.r.t. input, weight and bias; the running
    statistics are not differentiated, as in torch): a double backward raises.
    The output is a new tensor that the kernel writes, never a view or an
    input, so in-place operations on it (``ReLU(inplace=True)``, ``out +=
    identity``) work, and the backward does not read it. The backward reads
    input and weight through ``save_for_backward``, which also holds the
    running statistics as torch's batch norm does: changing one of them in
    place before the backward raises torch's "modified by an inplace
    operation" error.
    """

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, running_mean: torch.Tensor | None,
                running_var: torch.Tensor | None, weight: torch.Tensor | None,
                bias: torch.Tensor | None, training: bool, momentum: float | None,
                eps: float, running_var_ddof: int = 1) -> torch.Tensor:
        training, momentum, eps = _check_arguments(
            input, running_mean, running_var, weight, bias, training, momentum, eps)
        ddof = _kernels.check_ddof(running_var_ddof)
        for index, name in ((1, "running_mean"), (2, "running_var")):
            if ctx.needs_input_grad[index]:
                raise RuntimeError(
                    f"batch_norm is not differentiable with respect to {name}: it "
                    "cannot have requires_grad=True (torch.nn.functional.batch_norm "
                    f"raises too); pass {name}.detach()")
        layout = _layout(input)
        x = _in_layout(input, layout)  # input's memory, or a copy of it
        y = _empty(input, layout)
        stats = _running(running_mean), _running(running_var)
        _, saved = _batchnorm.batch_norm_forward(
            _array(x, layout), _vector(weight), _vector(bias), *stats,
            training=training, momentum=momentum, eps=eps, numerics="standard",
            out=_array(y, layout), running_var_ddof=ddof, **_layout_arguments(layout))
        if training:
            for tensor, array in zip((running_mean, running_var), stats):
                _write_back(tensor, array)
        # the backward takes x and weight from the saved tensors, so that
        # autograd checks their versions and saved-tensor hooks apply to them;
        # of the rest it reads the statistics, and bias only to know whether
        # there is one (its values are needed only after a fused ReLU)
        saved.x = saved.weight = None  # type: ignore[assignment]
        ctx.save_for_backward(input if x.data_ptr() == input.data_ptr() else x,
                              weight, running_mean, running_var)
        ctx.bn_saved, ctx.bn_layout = saved, layout
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        # raises if input, weight or a running statistic changed in place
        input, weight, _, _ = ctx.saved_tensors
        layout, forward = ctx.bn_layout, ctx.bn_saved
        saved = _batchnorm.BatchNormSaved(
            "standard", forward.training, _array(_in_layout(input, layout), layout),
            _vector(weight), forward.bias, forward.mean, forward.invstd, nhwc=forward.nhwc)
        dx = _empty(input, layout)
        # dx is computed in any case: the kernel computes dweight and dbias
        # in the same two passes
        _, dweight, dbias = _batchnorm.batch_norm_backward(
            _array(_in_layout(grad_output, layout), layout), saved,
            out=_array(dx, layout))
        need_input, need_weight, need_bias = (ctx.needs_input_grad[0],
                                              ctx.needs_input_grad[3],
                                              ctx.needs_input_grad[4])
        return (dx if need_input else None, None, None,
                torch.from_numpy(dweight) if need_weight else None,
                torch.from_numpy(dbias) if need_bias else None, None, None, None, None)


def batch_norm(input: torch.Tensor, running_mean: torch.Tensor | None,
               running_var: torch.Tensor | None, weight: torch.Tensor | None = None,
               bias: torch.Tensor | None = None, training: bool = False,
               momentum: float | None = 0.1, eps: float = 1e-5, *, running_var_ddof: int = 1
               ) -> torch.Tensor:
    """torch.nn.functional.batch_norm on bnkernels' kernels, for CPU tensors.

    Parameters
    ----------
    input : Tensor, (N, C, *spatial), float32 or float64, on the CPU
        Zero or more spatial dimensions: (N, C) after a Linear layer, (N, C,
        L), (N, C, H, W), (N, C, D, H, W), ... Any strides; neither contiguous
        nor channels_last (4-D) or channels_last_3d (5-D) means one copy (as
        torch's CPU kernel).
    running_mean, running_var : Tensor, (C,), input's dtype, or None (both)
        Used for normalizing when ``training`` is false. When ``training`` is
        true and they are given, they are updated in place: ``r = (1 -
        momentum) * r + momentum * batch``, the variance unbiased. Not
        differentiable: while autograd records, they must not require grad.
    weight, bias : Tensor, (C,), input's dtype, or None
    training : bool
        Normalize with the batch statistics (True) or the running ones.
    momentum : float in [0, 1]
    eps : float
        Added to the variance inside the square root; finite, positive in
        training, non-negative in evaluation.
    running_var_ddof : {1, 0}
        Not in torch: 1 (torch's) updates running_var with the unbiased batch
        variance, 0 with the biased one (ONNX, Keras 3, Flax).

    Returns
    -------
    Tensor, input's shape, new (not a view), in input's memory format when
    that is contiguous, channels_last or channels_last_3d (else contiguous),
    differentiable once w.r.t. input, weight and bias.

    Raises
    ------
    ValueError, TypeError, RuntimeError
        Each where torch's F.batch_norm raises it for the same argument (e.g.
        ``Expected more than 1 value per channel when training``; RuntimeError
        for running statistics that require grad). A vector of the wrong shape
        raises BatchNormValueError, of the wrong dtype BatchNormTypeError:
        ValueError or TypeError as in bnkernels, and RuntimeError as in torch.
        Stricter than torch: ValueError for a non-CPU tensor, input with fewer
        than 2 dimensions, NaN or infinite eps, momentum outside [0, 1];
        TypeError for a dtype other than float32/float64. Nothing is changed
        when it raises.
    """
    if not torch.is_grad_enabled():
        # torch requires running statistics without grad only where autograd
        # records; detached, they are the same memory and version counter
        running_mean, running_var = (
            tensor.detach() if isinstance(tensor, torch.Tensor) else tensor
            for tensor in (running_mean, running_var))
    return BatchNormFunction.apply(input, running_mean, running_var, weight, bias,
                                   training, momentum, eps, running_var_ddof)


# ---------------------------------------------------------------------------
# the module
# ---------------------------------------------------------------------------

# what the mixin expects beside it: torch.nn's _BatchNorm (an opaque module to
# mypy, see pyproject.toml), so that its attributes and super() calls check
if TYPE_CHECKING:
    from torch.nn.modules.batchnorm import _BatchNorm as _TorchBatchNorm
else:
    _TorchBatchNorm = object


class _BatchNorm(_TorchBatchNorm):
    """What bnkernels.torch's BatchNorm1d, BatchNorm2d and BatchNorm3d add to
    torch.nn's: the forward on bnkernels' kernels, checks of eps and
    momentum, and an all-or-nothing load_state_dict. First in their bases,
    so that these override torch.nn's _BatchNorm; the input-dimension check
    (``_check_input_dim``) is torch.nn's class's own."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, *args, running_var_ddof=1,
                 **kwargs):
        _check_eps(eps, training=True)
        if momentum is not None:
            _check_momentum(momentum)
        ddof = _kernels.check_ddof(running_var_ddof)
        super().__init__(num_features, eps, momentum, *args, **kwargs)
        self.running_var_ddof = int(ddof)

    def forward(self, input):
        if not isinstance(input, torch.Tensor):
            raise TypeError(f"input must be a torch.Tensor, got {type(input).__name__}")
        self._check_input_dim(input)
        # torch.nn.modules.batchnorm._BatchNorm.forward's logic: the factor for
        # the running statistics (1 / batches seen when momentum is None) ...
        count = self.training and self.track_running_stats and \
            self.num_batches_tracked is not None
        factor = 0.0 if self.momentum is None else self.momentum
        if count and self.momentum is None:  # cumulative moving average
            factor = 1.0 / (float(self.num_batches_tracked) + 1.0)
        # ... batch statistics in training, and in eval mode without buffers ...
        use_batch_stats = self.training or (self.running_mean is None
                                            and self.running_var is None)
        # ... and the buffers only where they are read or updated
        pass_buffers = not self.training or self.track_running_stats
        output = batch_norm(input,
                            self.running_mean if pass_buffers else None,
                            self.running_var if pass_buffers else None,
                            self.weight, self.bias, use_batch_stats, factor, self.eps,
                            running_var_ddof=getattr(self, "running_var_ddof", 1))
        if count:  # the batch counts once it went through (torch counts it first)
            self.num_batches_tracked.add_(1)
        return output

    def extra_repr(self):
        ddof = getattr(self, "running_var_ddof", 1)
        return super().extra_repr() + (f", running_var_ddof={ddof}" if ddof != 1 else "")

    def load_state_dict(self, state_dict, strict=True, assign=False):
        # torch passes strict=True to every _load_from_state_dict and decides
        # at the end; this layer's needs the real flag, known only here
        self.__dict__["_bnkernels_strict"] = bool(strict)
        try:
            return super().load_state_dict(state_dict, strict, assign)
        finally:
            del self.__dict__["_bnkernels_strict"]

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict,
                              missing_keys, unexpected_keys, error_msgs):
        # torch's copies each entry that fits, then reports the others: load
        # into a scratch layer holding copies of this layer's tensors, and
        # take the result only if nothing of this layer was reported. Missing
        # and unexpected keys count only in a strict load of this layer
        # itself: within a model, torch's load of the model does not say
        # whether it is strict, and a non-strict one loads the rest.
        strict_load = self.__dict__.get("_bnkernels_strict", False)
        scratch = object.__new__(type(self))
        scratch.__dict__.update(self.__dict__)
        scratch._parameters = {name: _scratch_copy(tensor)
                               for name, tensor in self._parameters.items()}
        scratch._buffers = {name: _scratch_copy(tensor)
                            for name, tensor in self._buffers.items()}
        copies = {name: (tensor, tensor._version) for name, tensor in _own_tensors(scratch)}
        counts = len(missing_keys), len(unexpected_keys), len(error_msgs)
        super(_BatchNorm, scratch)._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
            error_msgs)
        if len(error_msgs) > counts[2] or strict_load and (
                len(missing_keys) > counts[0] or len(unexpected_keys) > counts[1]):
            return
        for name, tensor in _own_tensors(self):
            container = self._parameters if name in self._parameters else self._buffers
            loaded = getattr(scratch, "_parameters" if container is self._parameters
                             else "_buffers")[name]
            copied, version = copies[name]
            if loaded is not copied:  # assign=True: the loaded tensor replaces this one
                container[name] = loaded
            elif loaded._version != version:  # loaded: copy it over, as torch would
                with torch.no_grad():
                    tensor.copy_(loaded)


class BatchNorm1d(_BatchNorm, torch.nn.BatchNorm1d):
    """torch.nn.BatchNorm1d whose forward and backward run bnkernels' kernels.

    Input (N, C), as after a Linear layer, or (N, C, L); any other number of
    dimensions raises torch's ValueError ``expected 2D or 3D input (got 4D
    input)``. Everything else as BatchNorm2d.
    """


class BatchNorm2d(_BatchNorm, torch.nn.BatchNorm2d):
    """torch.nn.BatchNorm2d whose forward and backward run bnkernels' kernels.

    Input (N, C, H, W); any other number of dimensions raises torch's
    ValueError ``expected 4D input (got 3D input)``. Same constructor
    (``num_features, eps=1e-5, momentum=0.1, affine=True,
    track_running_stats=True, device=None, dtype=None``, and what else
    torch.nn.BatchNorm2d takes), parameters, buffers, state_dict (loads
    torch's and vice versa), ``momentum=None`` (the cumulative moving average
    over num_batches_tracked), ``reset_parameters``, ``reset_running_stats``,
    repr and errors: only ``forward`` is bnkernels'. An instance of
    torch.nn.BatchNorm2d, so code that looks for BN layers finds it. One
    keyword more: ``running_var_ddof=1`` (torch's unbiased running variance;
    0 keeps the biased one, as ONNX, Keras 3 and Flax).

    Stricter than torch where torch accepts what breaks the statistics: eps
    must be positive and finite, momentum None or in [0, 1] (ValueError).
    Changes are all or nothing: a forward that raises leaves the running
    statistics and num_batches_tracked as they were, and so does a
    ``load_state_dict`` that raises for this layer (torch's copies the
    entries that fit before it reports the others).

    CPU only, float32 or float64; a channels_last input gives a channels_last
    output (NHWC kernels, no copy). Not scriptable with torch.jit (the
    forward is a custom autograd Function).
    """


class BatchNorm3d(_BatchNorm, torch.nn.BatchNorm3d):
    """torch.nn.BatchNorm3d whose forward and backward run bnkernels' kernels.

    Input (N, C, D, H, W); any other number of dimensions raises torch's
    ValueError ``expected 5D input (got 4D input)``. A channels_last_3d input
    gives a channels_last_3d output (NHWC kernels, no copy). Everything else
    as BatchNorm2d.
    """


# each torch.nn class that convert replaces, and its bnkernels twin
_TWINS = {torch.nn.BatchNorm1d: BatchNorm1d, torch.nn.BatchNorm2d: BatchNorm2d,
          torch.nn.BatchNorm3d: BatchNorm3d}


def _own_tensors(layer):
    """A BatchNorm layer's parameters and buffers that are not None, by name."""
    return [(name, tensor) for name, tensor in
            list(layer._parameters.items()) + list(layer._buffers.items())
            if tensor is not None]


def _scratch_copy(tensor):
    """A copy of a parameter or buffer for a trial load_state_dict."""
    if tensor is None:
        return None
    if isinstance(tensor, torch.nn.Parameter):
        return torch.nn.Parameter(tensor.detach().clone(), tensor.requires_grad)
    return tensor.detach().clone()


def _check_convertible(layer, path):
    """Raise if a torch.nn BatchNorm layer cannot run on bnkernels' kernels."""
    where = f"convert: {path or 'the module'} (torch.nn.{type(layer).__name__})"
    try:
        _check_eps(layer.eps, training=True)
        if layer.momentum is not None:
            _check_momentum(layer.momentum)
    except (TypeError, ValueError) as error:
        raise type(error)(f"{where}: {error}") from None
    for name, tensor in _own_tensors(layer):
        if tensor.device.type not in ("cpu", "meta"):
            raise ValueError(f"{where} has {name} on {tensor.device}; bnkernels.torch "
                             "runs on the CPU only")
        if name != "num_batches_tracked" and tensor.dtype not in _DTYPES:
            raise TypeError(f"{where} has {name} of dtype {tensor.dtype}; bnkernels.torch "
                            "runs float32 and float64 only")


def convert(module: torch.nn.Module) -> torch.nn.Module:
    """Make every torch.nn BatchNorm1d, BatchNorm2d and BatchNorm3d in
    `module` a bnkernels one, in place.

    Only modules whose type is exactly one of those three (not subclasses,
    which may have their own forward, nor SyncBatchNorm, nor layers inside
    TorchScript modules). Each keeps its identity and everything it holds
    (Parameters, buffers, hooks, training flag): only its class changes, to
    its namesake here, so an optimizer made before keeps working. Returns
    `module`.

    Raises before changing anything, naming the layer, for a layer
    bnkernels cannot run: parameters or buffers on a device other than the
    CPU (or "meta", to be materialized later) or of a dtype other than
    float32/float64, eps not positive and finite, momentum outside [0, 1].
    TypeError for something other than a torch.nn.Module, or a TorchScript
    module.
    """
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"convert expects a torch.nn.Module, got {type(module).__name__}")
    if isinstance(module, torch.jit.ScriptModule):
        raise TypeError("convert: got a TorchScript module, whose layers cannot be "
                        "replaced; convert the Python module before scripting it")
    layers = [(path, layer) for path, layer in module.named_modules()
              if type(layer) in _TWINS]
    for path, layer in layers:  # all checked before any is changed
        _check_convertible(layer, path)
    for _, layer in layers:
        layer.__class__ = _TWINS[type(layer)]
    return module


replace_batchnorm = convert


# --- bnkernels.nn.layers networks as PyTorch modules --------------------------

class Concat(torch.nn.ModuleList):
    """Branches run on the same input, outputs concatenated along channels
    (what bnkernels.nn.layers.Concat and the Inception blocks compute)."""

    def __init__(self, modules: "Iterable[torch.nn.Module] | None" = None) -> None:
        super().__init__(modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self], dim=1)


def _tensor(array):
    return torch.from_numpy(np.array(array, copy=True))


def _to_torch_leaf(module, layers, where):
    """The torch.nn twin of one bnkernels.nn.layers leaf, with copied state;
    `where` ("to_torch: " and the leaf's path) begins error messages."""
    if isinstance(module, layers.Conv2d):
        twin = torch.nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size,
                               module.stride, module.padding, bias=module.bias is not None,
                               dtype=_torch_dtype(module.dtype))
    elif isinstance(module, layers.Linear):
        twin = torch.nn.Linear(module.in_features, module.out_features,
                               bias=module.bias is not None, dtype=_torch_dtype(module.dtype))
    elif isinstance(module, layers.BatchNorm2d):
        if module.numerics != "standard" or module.layout != "NCHW":
            raise ValueError(f"{where}PyTorch has only standard-numerics NCHW batch norm; "
                             f"this layer has numerics={module.numerics!r}, "
                             f"layout={module.layout!r}")
        twin = torch.nn.BatchNorm2d(module.num_features, module.eps, module.momentum,
                                    module.affine, module.track_running_stats,
                                    dtype=_torch_dtype(module.dtype))
        state = {key: _tensor(value) for key, value in module.state_dict().items()}
        twin.load_state_dict(state)
        if module.activation == "relu":
            twin = torch.nn.Sequential(twin, torch.nn.ReLU())
        return twin
    elif isinstance(module, layers.MaxPool2d):
        return torch.nn.MaxPool2d(module.kernel_size, module.stride, module.padding,
                                  ceil_mode=module.ceil_mode)
    elif isinstance(module, layers.AvgPool2d):
        return torch.nn.AvgPool2d(module.kernel_size, module.stride, module.padding,
                                  ceil_mode=module.ceil_mode,
                                  count_include_pad=module.count_include_pad)
    elif isinstance(module, layers.GlobalAvgPool2d):
        return torch.nn.AdaptiveAvgPool2d(1)
    elif isinstance(module, layers.ReLU):
        return torch.nn.ReLU()
    elif isinstance(module, layers.Flatten):
        return torch.nn.Flatten()
    elif isinstance(module, layers.Dropout):
        return torch.nn.Dropout(module.p)
    else:
        raise TypeError(f"{where}no PyTorch twin for {type(module).__name__}")
    twin.load_state_dict({key: _tensor(value) for key, value in module.state_dict().items()})
    return twin


def _torch_dtype(dtype):
    return torch.float64 if np.dtype(dtype) == np.float64 else torch.float32


def to_torch(module: Module) -> torch.nn.Module:
    """A torch.nn module computing what a bnkernels.nn.layers module computes,
    with a copy of its parameters and running statistics, in the same
    training mode: the peer for comparisons and benchmarks.

    Sequential, ConvBNReLU and Network (without auxiliary heads) become
    torch.nn.Sequential, Concat and the Inception blocks ``Concat`` (a
    ModuleList whose forward concatenates its branches), the leaves their
    torch.nn namesakes (GlobalAvgPool2d: AdaptiveAvgPool2d(1); BatchNorm2d
    with activation="relu": BatchNorm2d then ReLU). Batch norm must have
    standard numerics: PyTorch has no Darknet ones.

    Raises TypeError for anything but a bnkernels.nn.layers module (a torch.nn
    module included) and for a layer without a twin, ValueError for Darknet
    numerics or auxiliary heads; the message names the layer's path.
    """
    from bnkernels.nn import layers

    if isinstance(module, torch.nn.Module):
        raise TypeError(f"to_torch converts bnkernels.nn.layers modules to torch.nn; got "
                        f"{type(module).__module__}.{type(module).__qualname__}, which "
                        "is a torch.nn.Module already")
    if not isinstance(module, layers.Module):
        raise TypeError(f"to_torch expects a bnkernels.nn.layers module, got "
                        f"{type(module).__name__}")
    return _to_torch(module, "")


def _to_torch(module, path):
    from bnkernels.nn import inception, layers

    where = f"to_torch: {path[:-1]}: " if path else "to_torch: "
    if isinstance(module, layers.Concat):
        twin = Concat([_to_torch(branch, f"{path}{i}.")
                       for i, branch in enumerate(module.branches)])
    elif isinstance(module, inception.Network):
        if module.aux:
            raise ValueError(f"{where}networks with auxiliary heads are not converted; "
                             "build them with aux_logits=False")
        twin = torch.nn.Sequential(*[_to_torch(stage, f"{path}{name}.")
                                     for name, stage in module.stages])
    elif isinstance(module, (layers.Sequential, layers.ConvBNReLU)):
        twin = torch.nn.Sequential(*[_to_torch(child, f"{path}{name}.")
                                     for name, child in module.children()])
    else:
        twin = _to_torch_leaf(module, layers, where)
    twin.train(module.training)
    return twin
