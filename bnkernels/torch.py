"""PyTorch front end: bnkernels' standard-numerics kernels behind torch's BN API.

``batch_norm`` has ``torch.nn.functional.batch_norm``'s signature and meaning,
``BatchNorm2d`` is a ``torch.nn.BatchNorm2d`` (same arguments, parameters,
buffers, state_dict, errors) whose forward and backward run bnkernels'
C kernels, and ``convert`` swaps them into an existing model.

CPU tensors only (float32 or float64, (N, C, H, W)); CUDA tensors are
rejected. Tensors reach the kernels without copies: ``t.detach().numpy()``
shares the tensor's memory, results come back with ``torch.from_numpy``, and
running_mean/running_var are updated in place in the torch buffers. A
channels_last input runs through the NHWC kernels without a copy, and its
output and gradient are channels_last too; any other input that is not
C-contiguous is copied to NCHW first, as torch's own CPU batch_norm does.

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

import numpy as np
from torch.autograd.function import once_differentiable

from bnkernels import batchnorm as _batchnorm

__all__ = ["BatchNormFunction", "batch_norm", "BatchNorm2d", "Concat", "convert", "to_torch"]

_DTYPES = (torch.float32, torch.float64)


# ---------------------------------------------------------------------------
# tensors <-> the arrays the kernels read (zero-copy)
# ---------------------------------------------------------------------------

# The axes that turn an (N, C, H, W) tensor into an array of the layout.
_PERMUTATION = {"NCHW": (0, 1, 2, 3), "NHWC": (0, 2, 3, 1)}
_INVERSE = {"NCHW": (0, 1, 2, 3), "NHWC": (0, 3, 1, 2)}


def _kernel_view(tensor, layout=None):
    """``(array, layout)``: the C-contiguous NumPy array the kernels read for
    an (N, C, H, W) tensor, sharing its memory when its strides allow.

    The one place that picks the memory layout. ``layout=None`` picks from
    the tensor's strides (the forward's input); otherwise the array is made in
    that layout (dy follows x), copying if the tensor is in another one.
    """
    if layout is None:
        layout = "NCHW"
        if not tensor.is_contiguous() and \
                tensor.is_contiguous(memory_format=torch.channels_last):
            layout = "NHWC"  # the permuted view is C-contiguous: no copy
    array = tensor.detach().permute(*_PERMUTATION[layout]).contiguous().numpy()
    return array, layout


def _layout_arguments(layout):
    """The keywords that tell batch_norm_forward/backward the array layout."""
    return {} if layout == "NCHW" else {"layout": layout}


def _from_kernel(array, layout):
    """The (N, C, H, W) tensor sharing the memory of a kernel's output array."""
    return torch.from_numpy(array).permute(*_INVERSE[layout])


def _vector(tensor):
    """weight or bias as a NumPy vector (a view unless strided)."""
    return None if tensor is None else tensor.detach().contiguous().numpy()


def _running(tensor, name):
    """running_mean or running_var as a NumPy view, written in place."""
    if tensor is None:
        return None
    if not tensor.is_contiguous():
        raise ValueError(f"{name} must be contiguous: it is updated in place "
                         f"(got strides {tensor.stride()})")
    return tensor.detach().numpy()


def _check_arguments(input, running_mean, running_var, weight, bias, training, eps):
    """torch's checks of F.batch_norm, then the kernels' limits, in torch's terms."""
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"input must be a torch.Tensor, got {type(input).__name__}")
    if input.device.type != "cpu":
        raise ValueError(f"input is on {input.device}, expected a CPU tensor: "
                         "bnkernels.torch runs bnkernels' CPU kernels; use "
                         "torch.nn.BatchNorm2d on other devices")
    if input.dtype not in _DTYPES:
        raise TypeError(f"input has dtype {input.dtype}, expected torch.float32 or "
                        "torch.float64")
    if input.dim() != 4:
        raise ValueError(f"input must be 4-D (N, C, H, W), got {input.dim()}-D input "
                         f"of shape {tuple(input.shape)}")
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var must either both be None "
                         "or neither be None")
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
            raise TypeError(f"{name} has dtype {vector.dtype}, expected {input.dtype} "
                            "to match input")
        if tuple(vector.shape) != (channels,):
            raise ValueError(f"{name} has shape {tuple(vector.shape)}, expected "
                             f"({channels},) to match input's {channels} channels")
    if training:
        size = input.shape
        if size[0] * size[2] * size[3] == 1:
            raise ValueError("Expected more than 1 value per channel when training, "
                             f"got input size {size}")
        if eps <= 0.0:
            raise ValueError(f"batch_norm eps must be positive during training, "
                             f"but got {eps}")
    elif eps < 0.0:
        raise ValueError(f"batch_norm eps must be non-negative, but got {eps}")


# ---------------------------------------------------------------------------
# autograd
# ---------------------------------------------------------------------------

class BatchNormFunction(torch.autograd.Function):
    """Batch norm whose forward and backward are bnkernels' standard-numerics
    kernels. ``apply(input, running_mean, running_var, weight, bias,
    training, momentum, eps)``, all positional, as torch.nn.functional.
    batch_norm; prefer ``batch_norm``.

    Differentiable once (w.r.t. input, weight and bias; the running
    statistics are not differentiated, as in torch): a double backward raises.
    """

    @staticmethod
    def forward(ctx, input, running_mean, running_var, weight, bias, training,
                momentum, eps):
        if momentum is None:
            raise TypeError("momentum must be a float, not None (torch.nn.BatchNorm2d's "
                            "momentum=None passes 1 / num_batches_tracked)")
        momentum, eps, training = float(momentum), float(eps), bool(training)
        _check_arguments(input, running_mean, running_var, weight, bias, training, eps)
        x, layout = _kernel_view(input)
        y, saved = _batchnorm.batch_norm_forward(
            x, _vector(weight), _vector(bias),
            _running(running_mean, "running_mean"), _running(running_var, "running_var"),
            training=training, momentum=momentum, eps=eps, numerics="standard",
            **_layout_arguments(layout))
        # saved keeps views of input's and weight's memory: saving the tensors
        # too makes autograd report an in-place change to them before backward
        ctx.save_for_backward(input, weight, bias)
        ctx.bn_saved, ctx.bn_layout = saved, layout
        return _from_kernel(y, layout)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        _ = ctx.saved_tensors  # raises if input, weight or bias changed in place
        dy, _ = _kernel_view(grad_output, ctx.bn_layout)
        # dx is computed in any case: the kernel computes dweight and dbias
        # in the same two passes
        dx, dweight, dbias = _batchnorm.batch_norm_backward(dy, ctx.bn_saved)
        need_input, need_weight, need_bias = (ctx.needs_input_grad[0],
                                              ctx.needs_input_grad[3],
                                              ctx.needs_input_grad[4])
        return (_from_kernel(dx, ctx.bn_layout) if need_input else None, None, None,
                torch.from_numpy(dweight) if need_weight else None,
                torch.from_numpy(dbias) if need_bias else None, None, None, None)


def batch_norm(input, running_mean, running_var, weight=None, bias=None,
               training=False, momentum=0.1, eps=1e-5):
    """torch.nn.functional.batch_norm on bnkernels' kernels, for 4-D CPU tensors.

    Parameters
    ----------
    input : Tensor, (N, C, H, W), float32 or float64, on the CPU
        Any strides; not C-contiguous means one copy (as torch's CPU kernel).
    running_mean, running_var : Tensor, (C,), input's dtype, or None (both)
        Used for normalizing when ``training`` is false. When ``training`` is
        true and they are given, they are updated in place (contiguous ones
        only): ``r = (1 - momentum) * r + momentum * batch``, the variance
        unbiased.
    weight, bias : Tensor, (C,), input's dtype, or None
    training : bool
        Normalize with the batch statistics (True) or the running ones.
    momentum : float
    eps : float
        Added to the variance inside the square root.

    Returns
    -------
    Tensor, (N, C, H, W), in input's memory format when that is NCHW- or
    channels_last-contiguous (else NCHW), differentiable once w.r.t. input,
    weight and bias.

    Raises
    ------
    ValueError, TypeError, RuntimeError
        As torch's for its own checks (e.g. ``Expected more than 1 value per
        channel when training``); ValueError for a non-CPU tensor or a shape
        that is not 4-D, TypeError for a dtype other than input's or than
        float32/float64.
    """
    return BatchNormFunction.apply(input, running_mean, running_var, weight, bias,
                                   training, momentum, eps)


# ---------------------------------------------------------------------------
# the module
# ---------------------------------------------------------------------------

class BatchNorm2d(torch.nn.BatchNorm2d):
    """torch.nn.BatchNorm2d whose forward and backward run bnkernels' kernels.

    Same constructor (``num_features, eps=1e-5, momentum=0.1, affine=True,
    track_running_stats=True, device=None, dtype=None``, and what else
    torch.nn.BatchNorm2d takes), parameters, buffers, state_dict (loads
    torch's and vice versa), ``reset_parameters``, ``reset_running_stats``,
    repr and errors: only ``forward`` is bnkernels'. An instance of
    torch.nn.BatchNorm2d, so code that looks for BN layers finds it.

    CPU only, float32 or float64; a channels_last input gives a channels_last
    output (NHWC kernels, no copy). Not
    scriptable with torch.jit (the forward is a custom autograd Function).
    """

    def forward(self, input):
        self._check_input_dim(input)
        # torch.nn.modules.batchnorm._BatchNorm.forward's logic: the factor for
        # the running statistics (1 / batches seen when momentum is None) ...
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and \
                self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked)
        # ... batch statistics in training, and in eval mode without buffers ...
        use_batch_stats = self.training or (self.running_mean is None
                                            and self.running_var is None)
        # ... and the buffers only where they are read or updated
        pass_buffers = not self.training or self.track_running_stats
        return batch_norm(input,
                          self.running_mean if pass_buffers else None,
                          self.running_var if pass_buffers else None,
                          self.weight, self.bias, use_batch_stats, factor, self.eps)


def convert(module):
    """Replace every torch.nn.BatchNorm2d in `module` by a bnkernels one.

    Only modules whose type is exactly torch.nn.BatchNorm2d (not subclasses,
    which may have their own forward). The new layers take over the old
    ones' Parameter and buffer objects (an optimizer made before keeps
    working) and training flag; hooks registered on an old layer are not
    carried over. Returns the converted module: the module itself with its
    children replaced, or a new BatchNorm2d if `module` is one.
    """
    if type(module) is torch.nn.BatchNorm2d:
        converted = BatchNorm2d(module.num_features, module.eps, module.momentum,
                                module.affine, module.track_running_stats,
                                device="meta")  # placeholders, replaced below
        for name in ("weight", "bias"):
            setattr(converted, name, getattr(module, name))
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            setattr(converted, name, getattr(module, name))
        converted.train(module.training)
        return converted
    for name, child in module.named_children():
        replacement = convert(child)
        if replacement is not child:
            setattr(module, name, replacement)
    return module


replace_batchnorm = convert


# --- bnkernels.layers networks as PyTorch modules --------------------------

class Concat(torch.nn.ModuleList):
    """Branches run on the same input, outputs concatenated along channels
    (what bnkernels.layers.Concat and the Inception blocks compute)."""

    def forward(self, x):
        return torch.cat([branch(x) for branch in self], dim=1)


def _tensor(array):
    return torch.from_numpy(np.array(array, copy=True))


def _to_torch_leaf(module, layers):
    """The torch.nn twin of one bnkernels.layers leaf, with copied state."""
    if isinstance(module, layers.Conv2d):
        twin = torch.nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size,
                               module.stride, module.padding, bias=module.bias is not None,
                               dtype=_torch_dtype(module.dtype))
    elif isinstance(module, layers.Linear):
        twin = torch.nn.Linear(module.in_features, module.out_features,
                               bias=module.bias is not None, dtype=_torch_dtype(module.dtype))
    elif isinstance(module, layers.BatchNorm2d):
        if module.numerics != "standard" or module.layout != "NCHW":
            raise ValueError(f"to_torch: PyTorch has only standard-numerics NCHW batch norm; "
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
        raise TypeError(f"to_torch: no PyTorch twin for {type(module).__name__}")
    twin.load_state_dict({key: _tensor(value) for key, value in module.state_dict().items()})
    return twin


def _torch_dtype(dtype):
    return torch.float64 if np.dtype(dtype) == np.float64 else torch.float32


def to_torch(module):
    """A torch.nn module computing what a bnkernels.layers module computes,
    with a copy of its parameters and running statistics, in the same
    training mode: the peer for comparisons and benchmarks.

    Sequential, ConvBNReLU and Network (without auxiliary heads) become
    torch.nn.Sequential, Concat and the Inception blocks ``Concat`` (a
    ModuleList whose forward concatenates its branches), the leaves their
    torch.nn namesakes (GlobalAvgPool2d: AdaptiveAvgPool2d(1); BatchNorm2d
    with activation="relu": BatchNorm2d then ReLU). Batch norm must have
    standard numerics: PyTorch has no Darknet ones.
    """
    from bnkernels import inception, layers

    if isinstance(module, layers.Concat):
        twin = Concat([to_torch(branch) for branch in module.branches])
    elif isinstance(module, inception.Network):
        if module.aux:
            raise ValueError("to_torch: networks with auxiliary heads are not converted; "
                             "build them with aux_logits=False")
        twin = torch.nn.Sequential(*[to_torch(stage) for _, stage in module.stages])
    elif isinstance(module, (layers.Sequential, layers.ConvBNReLU)):
        twin = torch.nn.Sequential(*[to_torch(child) for _, child in module.children()])
    else:
        twin = _to_torch_leaf(module, layers)
    twin.train(module.training)
    return twin
