"""Layers built on the kernels, enough to assemble and train Inception networks.

Every layer is a ``Module`` (bnkernels.module): ``forward(x)`` computes and remembers what its
backward needs, ``backward(dy)`` returns dL/dx and adds the parameter
gradients into their ``grad`` arrays (``+=``, as PyTorch and Darknet do;
``zero_grad()`` clears them). Tensors are NumPy arrays in NCHW layout.

``output_shape``, ``macs`` (multiply-accumulates), ``num_weights`` and
``num_parameters`` describe a module without running it; ``summary`` prints
them per module.

Layers: Conv2d, Linear, MaxPool2d, AvgPool2d, GlobalAvgPool2d, ReLU, Flatten,
Dropout, ConvBNReLU (BN-Inception's unit), and the core batch-norm layers
(bnkernels.BatchNorm, BatchNorm1d/2d/3d, Modules themselves, re-exported
here); containers Sequential
and Concat; the loss SoftmaxCrossEntropy. Convolution and pooling run on the C
kernels (im2col/col2im and the pools), matrix products on NumPy's BLAS (on
as many threads as bnkernels' kernels use, at most the caller's BLAS setting:
``bnkernels.nn._blas``).
``bnkernels.nn.optim.SGD`` trains them.

``bnkernels.reference.numpy_twin(module)`` gives a copy that computes with
the pure-NumPy twins instead of the C kernels: the oracle and the baseline of
the benchmarks.

A call that raises changes nothing a user can see: every argument is checked
before anything is written, and when a part of a container (Sequential,
Concat, ConvBNReLU, a network) raises mid-way, the BN running statistics and
the gradients below the container are put back as they were. A forward that
raises drops the module's saved forward (its backward then raises until the
next forward). ``load_state_dict`` checks every entry before it writes one.
"""
from collections.abc import Sequence
import math
import numbers
import sys
from typing import Any, Literal, overload

import numpy as np
import numpy.typing as npt

from bnkernels import _kernels
from bnkernels._typing import FloatArray, Tensor
from bnkernels.batchnorm import BatchNorm, BatchNorm1d, BatchNorm2d, BatchNorm3d
from bnkernels.module import Module, _first_learning_stage, _input_grad_flag
from bnkernels.nn import _blas

__all__ = ["Module", "BatchNorm", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "Sequential",
           "Concat", "Conv2d", "Linear", "MaxPool2d", "AvgPool2d", "GlobalAvgPool2d", "ReLU",
           "Flatten", "Dropout", "ConvBNReLU", "SoftmaxCrossEntropy"]


class Sequential(Module):
    """Modules applied one after the other."""

    def __init__(self, *modules: Module) -> None:
        for i, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(f"Sequential takes Modules; argument {i} is "
                                f"{type(module).__name__}")
        self.layers = list(modules)

    def children(self) -> list[tuple[str, Module]]:
        return [(str(i), module) for i, module in enumerate(self.layers)]

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]

    def forward(self, x: Tensor) -> FloatArray:
        return self._all_or_nothing(self._forward, x)

    def _forward(self, x):
        for module in self.layers:
            x = module.forward(x)
        return x

    @overload
    def backward(self, dy: Tensor) -> FloatArray: ...
    @overload
    def backward(self, dy: Tensor, input_grad: Literal[True]) -> FloatArray: ...
    @overload
    def backward(self, dy: Tensor, input_grad: bool) -> FloatArray | None: ...

    def backward(self, dy: Tensor, input_grad: bool = True) -> FloatArray | None:
        """dL/dx for the last forward: the modules' backwards in reverse
        order. ``input_grad=False``, for a caller that needs no dL/dx (a
        training step's input, which PyTorch does not differentiate
        either): returns None; the modules before the first one with
        parameters run no backward, and that one computes no dL/dx. The
        parameters' gradients are the same."""
        input_grad = _input_grad_flag(input_grad)
        return self._all_or_nothing(self._backward, dy, input_grad, forward=False)

    def _backward_parameters(self, dy):
        self._all_or_nothing(self._backward, dy, False, forward=False)

    def _backward(self, dy, input_grad=True):
        if input_grad:
            for module in reversed(self.layers):
                dy = module.backward(dy)
            return dy
        first = _first_learning_stage(self.layers)
        for module in reversed(self.layers[first + 1:]):
            dy = module.backward(dy)
        if first < len(self.layers):
            self.layers[first]._backward_parameters(dy)
        return None

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        for module in self.layers:
            input_shape = module.output_shape(input_shape)
        return tuple(input_shape)

    def _child_inputs(self, input_shape):
        pairs = []
        for module in self.layers:
            pairs.append((module, tuple(input_shape)))
            input_shape = module.output_shape(input_shape)
        return pairs


class Concat(Module):
    """Branches run on the same input, their outputs concatenated along the
    channel axis (the Inception module's merge). Backward gives each branch
    its slice of dy and sums the branches' dx."""

    def __init__(self, *branches: Module) -> None:
        if not branches:
            raise ValueError("Concat needs at least one branch")
        for i, branch in enumerate(branches):
            if not isinstance(branch, Module):
                raise TypeError(f"Concat takes Modules; branch {i} is {type(branch).__name__}")
        self.branches = list(branches)
        self._saved = None

    def children(self) -> list[tuple[str, Module]]:
        return [(str(i), branch) for i, branch in enumerate(self.branches)]

    def forward(self, x: Tensor) -> FloatArray:
        return self._all_or_nothing(self._forward, x)

    def _forward(self, x):
        self._saved = None
        outputs = [branch.forward(x) for branch in self.branches]
        if any(np.ndim(y) != 4 for y in outputs) or len({y.shape[2:] for y in outputs}) != 1:
            raise ValueError("Concat branches must give the same H, W; got "
                             + ", ".join(str(np.shape(y)) for y in outputs))
        y = np.concatenate(outputs, axis=1)
        self._saved = ([out.shape[1] for out in outputs], y.shape, y.dtype)
        return y

    def backward(self, dy: Tensor) -> FloatArray:
        channels, shape, dtype = _need(self._saved, self)
        dy = _check_grad(dy, shape, dtype)
        return self._all_or_nothing(self._backward, dy, channels, forward=False)

    def _backward_parameters(self, dy):
        channels, shape, dtype = _need(self._saved, self)
        dy = _check_grad(dy, shape, dtype)
        self._all_or_nothing(self._backward, dy, channels, False, forward=False)

    def _backward(self, dy, channels, input_grad=True):
        dx = None
        start = 0
        for branch, width in zip(self.branches, channels):
            # each branch gets a contiguous copy of its channels of dy
            part_dy = np.ascontiguousarray(dy[:, start:start + width])
            start += width
            if not input_grad:
                branch._backward_parameters(part_dy)
                continue
            part = branch.backward(part_dy)
            dx = part if dx is None else dx + part
        return dx

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        shapes = [branch.output_shape(input_shape) for branch in self.branches]
        if len({tuple(shape[2:]) for shape in shapes}) != 1:
            raise ValueError(f"Concat branches give different H, W for input {input_shape}: "
                             f"{shapes}")
        n, _, *spatial = shapes[0]
        return (n, sum(shape[1] for shape in shapes), *spatial)


# ---------------------------------------------------------------------------
# argument helpers
# ---------------------------------------------------------------------------

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _float_dtype(dtype):
    dtype = np.dtype(dtype)
    if dtype not in _FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def _generator(rng: Any) -> np.random.Generator:
    """None (fresh entropy), an int seed or a np.random.Generator (used as is)."""
    if rng is not None and not isinstance(rng, (int, np.integer, np.random.Generator)):
        raise TypeError(f"rng must be None, an int seed or a numpy.random.Generator, "
                        f"got {type(rng).__name__}")
    return np.random.default_rng(rng)


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _count(value, name, minimum):
    if not _is_int(value) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _flag(value, name):
    """A bool (or NumPy bool, or the int 0 or 1) as a bool."""
    if isinstance(value, (bool, np.bool_)) or (_is_int(value) and value in (0, 1)):
        return bool(value)
    raise ValueError(f"{name} must be a bool, got {value!r}")


def _pair(value, name, minimum):
    """An int or an (h, w) pair of ints, each in [minimum, 2**60] (the
    kernels' limit, _kernels.MAX_WINDOW_ARGUMENT), as an (h, w) tuple."""
    pair = (value, value) if _is_int(value) else value
    if isinstance(pair, (str, bytes)) or not hasattr(pair, "__len__") or len(pair) != 2 \
            or not all(_is_int(v) for v in pair):
        raise ValueError(f"{name} must be an int or a pair (h, w) of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    if max(pair) > _kernels.MAX_WINDOW_ARGUMENT:
        raise ValueError(f"{name} must be at most 2**60, got {value!r}")
    return int(pair[0]), int(pair[1])


def _parameter_count(shape, what):
    """The number of values of a parameter of `shape`, which an array must
    be able to hold (its float64 initial values included)."""
    count = math.prod(shape)
    if count * 8 > sys.maxsize:
        raise ValueError(f"{what} = {count} values, more than an array can hold")
    return count


def _padding(padding, kernel_size, stride):
    """(ph, pw) from an int, a pair, or "same" (stride 1, odd kernel: the
    output has the input's H and W)."""
    if isinstance(padding, str):
        if padding != "same":
            raise ValueError(f"padding must be an int, a pair (h, w) or 'same', got {padding!r}")
        if stride != (1, 1) or kernel_size[0] % 2 == 0 or kernel_size[1] % 2 == 0:
            raise ValueError(f"padding='same' needs stride 1 and odd kernel sizes, got "
                             f"kernel_size={kernel_size}, stride={stride}")
        return kernel_size[0] // 2, kernel_size[1] // 2
    return _pair(padding, "padding", 0)


def _float_array(x, name="x"):
    x = np.asarray(x)
    if x.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name} has dtype {x.dtype}, expected float32 or float64")
    return x


def _check_input(x, ndim, dtype=None, channels=None, name="x"):
    """x as a C-contiguous float array of ndim dimensions (of dtype and with
    `channels` channels when given), or a TypeError/ValueError naming it."""
    x = _float_array(x, name)
    layout = "(N, C, H, W)" if ndim == 4 else "(N, F)"
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{name} has dtype {x.dtype}, expected {dtype} (the layer's dtype; "
                        f"convert with {name}.astype(np.{dtype}))")
    if x.ndim != ndim:
        raise ValueError(f"{name} has shape {x.shape}, expected {ndim} dimensions {layout}")
    if channels is not None and x.shape[1] != channels:
        what = "channels" if ndim == 4 else "features"
        raise ValueError(f"{name} has {x.shape[1]} {what}, expected {channels}")
    return np.ascontiguousarray(x)


def _check_grad(dy, shape, dtype, name="dy"):
    """dy as a C-contiguous array of the forward output's shape and dtype."""
    dy = np.asarray(dy)
    if dy.dtype != dtype:
        raise TypeError(f"{name} has dtype {dy.dtype}, expected {dtype} (the forward's)")
    if dy.shape != tuple(shape):
        raise ValueError(f"{name} has shape {dy.shape}, expected {tuple(shape)} (the "
                         f"forward's output)")
    return np.ascontiguousarray(dy)


def _spatial_output(input_shape, kernel_size, stride, padding, name):
    """(OH, OW) of a convolution window sliding over input_shape's H, W."""
    out = []
    for size, k, s, p in zip(input_shape[2:], kernel_size, stride, padding):
        if size + 2 * p < k:
            raise ValueError(f"{name}: input of H x W = {input_shape[2]} x {input_shape[3]} "
                             f"(padding {padding}) is smaller than the kernel {kernel_size}")
        out.append((size + 2 * p - k) // s + 1)
    return tuple(out)


def _shape4(input_shape, name):
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 4 or min(shape) < 0 or min(shape[2:]) < 1:
        raise ValueError(f"{name} takes (N, C, H, W) inputs with H, W >= 1, got input_shape "
                         f"{shape}")
    return shape


def _need(saved, layer):
    if saved is None:
        raise RuntimeError(f"{type(layer).__name__}.backward called before forward")
    return saved


# ---------------------------------------------------------------------------
# convolution and linear
# ---------------------------------------------------------------------------

# The weight gradient sums (cols[n] @ dy[n].T).T over the batch: one batched
# matmul (BLAS reads dy[n].T as a transposed view, no copy) per chunk of
# samples whose (samples, C*kh*kw, O) products stay under this many values.
# The product is taken as (C*kh*kw, O) rather than (O, C*kh*kw): OpenBLAS
# runs the same sums faster in that orientation when O is small.
_GEMM_CHUNK_VALUES = 1 << 22

# A convolution whose output has at most this many positions (OH * OW) per
# sample runs its three matrix products over the whole batch, on columns laid
# out (C*kh*kw, N * OH*OW): a thin per-sample product (a 7x7 or 8x8 map is 49
# or 64 columns) keeps the BLAS far from its peak, and the transposes to and
# from NCHW cost less than they save there. Above it, each sample's product is
# already wide and the per-sample path (no transposes) is faster.
_BATCH_GEMM_MAX_POSITIONS = 128

# Whether Conv2d's forward may take the direct convolution (float32, stride 1,
# kernels larger than 1x1, maps above _BATCH_GEMM_MAX_POSITIONS positions):
# on the networks' thin layers the columns are many times x's size and the
# GEMM is thin, and the direct kernel runs 1.1-3x faster than im2col + GEMM
# (docs/design/networks.md). Its sums are in another order than a GEMM's, so
# outputs agree with the GEMM path to float32 rounding.
_DIRECT_AVAILABLE = bool(_kernels._conv2d_direct_available())
_DIRECT_DW_MAX_TAPS = int(_kernels._conv2d_direct_dw_max_taps())


# a split product's pieces per thread, and the fewest columns and rows of a
# piece
_PIECES_PER_THREAD = 2
_MIN_PIECE_COLUMNS = 64
_MIN_PIECE_ROWS = 32


def _bounds(size, count):
    return [size * j // count for j in range(count + 1)]


def _split_matmul(a, b, out, threads):
    """out[i] = a @ b[i] for b (N, K, P) and out (N, M, P), in pieces of a
    sample's column range and, where samples and columns give too few
    pieces (the whole-batch products: one sample of a few hundred columns),
    row range of a, over `threads` threads (bnkernels.nn._blas.run_products);
    one product on one thread. A piece's values are those of the whole
    product's rows and columns, each one BLAS product's."""
    n, _, p = b.shape
    if threads <= 1 or n * p * a.shape[0] == 0:
        np.matmul(a, b, out=out)
        return out
    _blas.run_products(_matmul_pieces(a, b, out, threads), threads)
    return out


def _matmul_pieces(a, b, out, threads):
    """_split_matmul's pieces, as run_products takes them (for callers that
    run them with other pieces)."""
    n, _, p = b.shape
    m = a.shape[0]
    want = _PIECES_PER_THREAD * threads
    per = min(max(1, -(-want // n)), max(1, p // _MIN_PIECE_COLUMNS))
    row_count = min(max(1, -(-want // (n * per))), max(1, m // _MIN_PIECE_ROWS))
    columns, rows = _bounds(p, per), _bounds(m, row_count)
    return [(a[rows[r]:rows[r + 1]], b[i, :, columns[j]:columns[j + 1]],
             out[i, rows[r]:rows[r + 1], columns[j]:columns[j + 1]], False)
            for i in range(n) for r in range(row_count) for j in range(per)]


def _row_ranges(rows, threads):
    """[lo, hi) ranges of rows, _PIECES_PER_THREAD per thread at most (one
    range on one thread)."""
    count = 1 if threads <= 1 else max(1, min(rows, _PIECES_PER_THREAD * threads))
    return [(rows * j // count, rows * (j + 1) // count) for j in range(count)]


class _WeightBias(Module):
    """A layer with a weight and an optional bias (Conv2d, Linear)."""

    _saved: Any = None
    dtype: np.dtype[Any]

    def _set_parameters(self, weight, bias):
        """Take initial values (float64) in the layer's dtype; zero gradients."""
        self.weight = weight.astype(self.dtype)
        self.grad_weight = np.zeros_like(self.weight)
        self.bias = None if bias is None else bias.astype(self.dtype)
        self.grad_bias = None if bias is None else np.zeros_like(self.bias)

    def _own_parameters(self):
        params = [("weight", self.weight, self.grad_weight)]
        if self.bias is not None:
            params.append(("bias", self.bias, self.grad_bias))
        return params

    def num_weights(self):
        return self.weight.size

    # threads the current call's products are split over (forward, backward)
    _threads = 1

    def forward(self, x: Tensor) -> FloatArray:
        """y for x of the layer's dtype (shapes: the class's docstring). The
        BLAS runs on one thread and the layer splits its products over as
        many threads as the kernels would use now, at most the caller's BLAS
        setting (bnkernels.nn._blas.split_products)."""
        with _blas.split_products() as self._threads:
            return self._forward(x)

    def backward(self, dy: Tensor) -> FloatArray:
        """dL/dx for the last forward; adds dL/dweight (and dL/dbias) to the
        grads. Threads as in forward."""
        with _blas.split_products() as self._threads:
            return self._backward(dy)

    def _backward_parameters(self, dy):
        with _blas.split_products() as self._threads:
            self._backward(dy, input_grad=False)

    def _forward(self, x):
        raise NotImplementedError

    def _backward(self, dy, input_grad=True):
        """dL/dx (None without input_grad); adds the parameters' gradients."""
        raise NotImplementedError


class Conv2d(_WeightBias):
    """2-D convolution (cross-correlation, as PyTorch) of NCHW tensors.

    im2col in C (``bnkernels._kernels.im2col``) turns each sample into a
    (C*kh*kw, OH*OW) matrix, one NumPy matmul with the (O, C*kh*kw) weight
    gives the (N, O, OH*OW) output, already NCHW; the backward is two matmuls
    and col2im. A 1x1 kernel with stride 1 and no padding skips im2col (cols
    is x itself). Small output maps (at most ``_BATCH_GEMM_MAX_POSITIONS``
    positions, e.g. 7x7 or 8x8) multiply over the whole batch instead: the
    columns are rearranged to (C*kh*kw, N*OH*OW), each product is one GEMM
    (the weight gradient too), and the output and dL/dx are rearranged back
    to NCHW. The layer keeps its columns buffers, (N, C*kh*kw, OH*OW) and for
    small maps (C*kh*kw, N*OH*OW), and reuses them while the input shape
    stays the same: im2col writes into them, and the backward overwrites them
    with dL/dcols once dL/dW is taken. In training mode the columns of the
    last call stay for the backward; in eval mode the backward recomputes
    them from x. The products run on NumPy's BLAS with as many threads as the
    kernels use (see ``bnkernels.nn._blas``). On CPUs with AVX-512F, a
    float32 forward at stride 1 with a kernel larger than 1x1 and a map
    larger than the whole-batch path's is a direct convolution in C instead
    (no columns; its backward takes them from x as in eval mode).
    x is referenced, not copied: do not modify it before the backward.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride : int or (h, w)
    padding : int, (h, w) or "same"
        "same" (stride 1, odd kernel sizes): (kh // 2, kw // 2), so the
        output keeps the input's H and W.
    bias : bool
    dtype : numpy.float32 or numpy.float64
        Of weight, bias, their gradients, and the x it accepts.
    rng : None, int or numpy.random.Generator
        For the initial weights: He (kaiming) normal, std sqrt(2 / fan_in)
        with fan_in = in_channels * kh * kw (PyTorch's
        ``kaiming_normal_(mode="fan_in", nonlinearity="relu")``); bias 0.

    Attributes
    ----------
    weight, grad_weight : ndarray, (out_channels, in_channels, kh, kw)
        PyTorch's layout, so state dicts compare with torch.nn.Conv2d's.
    bias, grad_bias : ndarray, (out_channels,), or None
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] | str = 0,
                 bias: bool = True, dtype: npt.DTypeLike = np.float32,
                 rng: int | np.random.Generator | None = None) -> None:
        self.in_channels = _count(in_channels, "in_channels", 1)
        self.out_channels = _count(out_channels, "out_channels", 1)
        self.kernel_size = _pair(kernel_size, "kernel_size", 1)
        self.stride = _pair(stride, "stride", 1)
        self.padding = _padding(padding, self.kernel_size, self.stride)
        self.dtype = _float_dtype(dtype)
        bias = _flag(bias, "bias")
        shape = (self.out_channels, self.in_channels, *self.kernel_size)
        _parameter_count(shape, "the weight: out_channels * in_channels * kh * kw")
        fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        std = np.sqrt(2.0 / fan_in)
        self._set_parameters(_generator(rng).standard_normal(shape) * std,
                             np.zeros(self.out_channels) if bias else None)

    @property
    def _pointwise(self):
        """1x1, stride 1, no padding: the columns are x itself."""
        return self.kernel_size == (1, 1) and self.stride == (1, 1) and self.padding == (0, 0)

    _cols_buffer = None
    _wide_buffer = None
    _direct_work = None

    def _whole_batch(self, output_shape):
        """Whether the GEMMs run over the whole batch (small output maps)."""
        return output_shape[2] * output_shape[3] <= _BATCH_GEMM_MAX_POSITIONS

    @staticmethod
    def _kept(buffer, shape, dtype):
        """buffer if it has this shape and dtype, else None."""
        if buffer is None or buffer.dtype != dtype or buffer.shape != shape:
            return None
        return buffer

    def _cols(self, x):
        """x's columns, (N, C*kh*kw, OH*OW), written into the layer's kept
        buffer when it has the right shape (no allocation, no page faults
        after the first call)."""
        n, c, h, w = x.shape
        if self._pointwise:
            return x.reshape(n, c, h * w)
        oh, ow = self.output_shape(x.shape)[2:]
        buffer = self._kept(self._cols_buffer, (n, c * self.kernel_size[0] *
                                                self.kernel_size[1], oh * ow), x.dtype)
        cols = self.kernels.im2col(x, self.kernel_size, self.stride, self.padding, out=buffer)
        self._cols_buffer = cols
        return cols

    def _wide_cols(self, x):
        """x's columns for the whole batch, (C*kh*kw, N * OH*OW): column
        n * OH*OW + p is sample n's column p. Kept like _cols' buffer."""
        cols = self._cols(x)
        n, k, positions = cols.shape
        wide = self._kept(self._wide_buffer, (k, n * positions), x.dtype)
        if wide is None:
            wide = np.empty((k, n * positions), x.dtype)
        np.copyto(wide.reshape(k, n, positions), cols.transpose(1, 0, 2))
        self._wide_buffer = wide
        return wide

    def _direct(self, output_shape):
        """Whether the forward is the direct convolution (csrc/fast/conv_direct.h):
        float32, stride 1, a kernel larger than 1x1, an output map too large
        for the whole-batch path, a CPU with AVX-512F, the C kernels (not a
        NumPy twin's), and a weight and bias the kernel takes as they are
        (float32, C-contiguous); else the GEMM path."""
        return (self.dtype == np.float32 and self.stride == (1, 1)
                and self.kernel_size != (1, 1) and not self._whole_batch(output_shape)
                and _DIRECT_AVAILABLE and self.kernels is _kernels
                and all(isinstance(p, np.ndarray) and p.dtype == np.float32
                        and p.flags.c_contiguous for p in (self.weight, self.bias)
                        if p is not None))

    def _forward(self, x):
        """y (N, out_channels, OH, OW) for x (N, in_channels, H, W)."""
        self._saved = None
        x = _check_input(x, 4, self.dtype, self.in_channels)
        n, o, oh, ow = shape = self.output_shape(x.shape)
        if self._direct(shape):
            y = self._direct_conv(x, self.weight, self.padding, self.bias)
            self._saved = (x, None)   # the backward takes the columns from x
            return y
        weight = self.weight.reshape(o, -1)
        if self._whole_batch(shape):
            cols = self._wide_cols(x)
            y_wide = _split_matmul(weight, cols[None], np.empty((1, o, cols.shape[1]),
                                                                self.dtype), self._threads)[0]
            if self.bias is not None:
                y_wide += self.bias[:, None]
            y = np.empty(shape, self.dtype)
            np.copyto(y.reshape(n, o, oh * ow), y_wide.reshape(o, n, oh * ow).transpose(1, 0, 2))
        else:
            cols = self._cols(x)
            y = _split_matmul(weight, cols, np.empty((n, o, oh * ow), self.dtype),
                              self._threads)
            if self.bias is not None:
                y += self.bias[:, None]
            y = y.reshape(shape)
        self._saved = (x, cols if self.training else None)
        return y

    def _backward(self, dy, input_grad=True):
        x, cols = _need(self._saved, self)
        shape = self.output_shape(x.shape)
        dy = _check_grad(dy, shape, self.dtype)
        if self._whole_batch(shape):
            return self._backward_whole_batch(x, cols, dy, input_grad)
        if self._direct_dw(shape):
            dy = np.ascontiguousarray(dy)
            if self.bias is not None:
                self.grad_bias += dy.reshape(shape[0], shape[1], -1).sum(axis=(0, 2))
            need = self.kernels._conv2d_direct_dw_work(x.shape, self.weight.shape,
                                                       self.padding)
            self.kernels._conv2d_direct_dw(x, dy, self.padding, self.grad_weight,
                                           work=self._work(need))
            if not input_grad:
                return None
            return self._direct_conv(dy, self._flipped_weight(), self._dx_padding())
        if cols is None:
            cols = self._cols(x)
        n, o = dy.shape[:2]
        dy = dy.reshape(n, o, dy.shape[2] * dy.shape[3])
        k = cols.shape[1]
        if self.bias is not None:
            self.grad_bias += dy.sum(axis=(0, 2))
        if not input_grad:
            self._add_grad_weight(cols, dy)
            return None
        if self._pointwise:
            # dL/dx's pieces run in one job with dL/dW's (cols is x itself)
            dx = np.empty((n, k, dy.shape[2]), self.dtype)
            weight_t = self.weight.reshape(o, k).T
            if self._threads > 1 and n * dy.shape[2] > 0:
                self._add_grad_weight(cols, dy, _matmul_pieces(weight_t, dy, dx,
                                                               self._threads))
            else:
                self._add_grad_weight(cols, dy)
                np.matmul(weight_t, dy, out=dx)
            return dx.reshape(x.shape)
        self._add_grad_weight(cols, dy)
        if self._direct_dx(shape):
            return self._direct_conv(dy.reshape(shape), self._flipped_weight(),
                                     self._dx_padding())
        # the columns are spent: their buffer takes dcols (a second backward of
        # the same forward recomputes them from x)
        dcols = _split_matmul(self.weight.reshape(o, k).T, dy, cols, self._threads)
        self._saved = (x, None)
        return self.kernels.col2im(dcols, x.shape, self.kernel_size, self.stride, self.padding)

    def _add_grad_weight(self, cols, dy, also=()):
        """grad_weight += sum over n of dy[n] @ cols[n].T, for cols (N, K, P)
        and dy (N, O, P). One thread: the products of a chunk of samples in
        one batched matmul, summed. More threads and samples: a piece per
        sample, each one whole product (pieces by ranges of K would each
        read all of dy again, and scaled poorly), summed after; the sums'
        order, and so the last bits, differ from one thread's. One sample:
        pieces by ranges of K. `also`: other pieces (functions of no
        arguments, writing elsewhere) run in the first job."""
        n, k = cols.shape[:2]
        o = dy.shape[1]
        grad_weight = self.grad_weight.reshape(o, k)
        threads = self._threads
        step = max(1, _GEMM_CHUNK_VALUES // (o * k))
        extra = list(also)
        if threads > 1 and n > 1:
            step = max(step, threads)
            products = np.empty((min(step, n), o, k), self.dtype)
            for start in range(0, n, step):
                count = min(step, n - start)
                _blas.run_products([(dy[start + i], cols[start + i].T, products[i], False)
                                    for i in range(count)] + (extra if start == 0 else []),
                                   threads)
                grad_weight += products[:count].sum(axis=0)
            return
        if threads > 1 and n == 1:   # by ranges of the columns' rows
            _blas.run_products([(dy[0], cols[0, lo:hi].T, grad_weight[:, lo:hi], True)
                                for lo, hi in _row_ranges(k, threads)] + extra, threads)
            return
        for start in range(0, n, step):   # taken transposed: see _GEMM_CHUNK_VALUES
            chunk = slice(start, start + step)
            grad_weight += np.matmul(cols[chunk], dy[chunk].transpose(0, 2, 1)).sum(axis=0).T
        _blas.run_products(extra, threads)

    def _direct_dx(self, output_shape):
        """Whether dL/dx is the direct convolution of dy with the flipped,
        transposed weight (padded by kernel - 1 - padding): where the forward
        is direct and padding < kernel_size on both axes."""
        return (self._direct(output_shape) and self.padding[0] < self.kernel_size[0]
                and self.padding[1] < self.kernel_size[1])

    def _direct_dw(self, output_shape):
        """Whether dL/dW (and dL/dx) are direct too (csrc/fast/conv_direct.h):
        where dL/dx is, the kernel has at most _conv2d_direct_dw_max_taps()
        taps, and at least 7 in 8 of the padded grid's positions are outputs
        (the kernel computes the others and masks them out: a 3x7 kernel on
        a 17-wide map, 17 of 23, runs slower than im2col + GEMM; a kernel
        with one side 1 runs on the transposed grid where that is denser),
        and grad_weight is a float32 C-contiguous array the kernel adds
        into."""
        (oh, ow), (kh, kw) = output_shape[2:], self.kernel_size

        def dense(outputs, kernel):
            return 8 * outputs >= 7 * (outputs + kernel - 1)
        grad = self.grad_weight
        return (self._direct_dx(output_shape)
                and kh * kw <= _DIRECT_DW_MAX_TAPS
                and (dense(ow, kw) or (1 in (kh, kw) and dense(oh, kh)))
                and isinstance(grad, np.ndarray) and grad.dtype == np.float32
                and grad.flags.c_contiguous and grad.flags.writeable)

    def _flipped_weight(self):
        """(in_channels, out_channels, kh, kw): weight[o, c, kh-1-i, kw-1-j]
        at [c, o, i, j], the kernel of dL/dx as a convolution of dy."""
        return np.ascontiguousarray(self.weight.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])

    def _dx_padding(self):
        return (self.kernel_size[0] - 1 - self.padding[0],
                self.kernel_size[1] - 1 - self.padding[1])

    def _work(self, need):
        """The layer's kept float32 workspace of the direct kernels, grown to
        at least `need` values."""
        work = self._direct_work
        if work is None or work.size < need:
            work = self._direct_work = np.empty(need, np.float32)
        return work

    def _direct_conv(self, x, weight, padding, bias=None):
        """_kernels._conv2d_direct with the layer's kept workspace."""
        need = self.kernels._conv2d_direct_work(x.shape, weight.shape, padding)
        return self.kernels._conv2d_direct(x, weight, bias, padding, work=self._work(need))

    def _backward_whole_batch(self, x, cols, dy, input_grad=True):
        """backward's three products over the whole batch, on the
        (C*kh*kw, N * OH*OW) columns of _wide_cols."""
        if cols is None:
            cols = self._wide_cols(x)
        n, o, oh, ow = dy.shape
        positions = oh * ow
        dy_wide = np.empty((o, n * positions), self.dtype)
        np.copyto(dy_wide.reshape(o, n, positions), dy.reshape(n, o, positions).transpose(1, 0, 2))
        if self.bias is not None:
            self.grad_bias += dy_wide.sum(axis=1)
        k = cols.shape[0]
        weight = self.weight.reshape(o, k)
        grad_weight = self.grad_weight.reshape(o, k)

        if self._threads > 1:   # by ranges of the columns' rows
            _blas.run_products([(dy_wide, cols[lo:hi].T, grad_weight[:, lo:hi], True)
                                for lo, hi in _row_ranges(k, self._threads)], self._threads)
        else:   # taken transposed: see _GEMM_CHUNK_VALUES
            grad_weight += (cols @ dy_wide.T).T
        if not input_grad:
            return None
        # the columns are spent: their buffer takes dcols (a second backward of
        # the same forward recomputes them from x)
        dcols_wide = _split_matmul(weight.T, dy_wide[None], cols[None], self._threads)[0]
        self._saved = (x, None)
        if self._pointwise:
            dx = np.empty(x.shape, self.dtype)
            np.copyto(dx.reshape(n, k, positions), dcols_wide.reshape(k, n, positions)
                      .transpose(1, 0, 2))
            return dx
        dcols = self._cols_buffer   # im2col's, spent too
        assert dcols is not None
        np.copyto(dcols, dcols_wide.reshape(k, n, positions).transpose(1, 0, 2))
        return self.kernels.col2im(dcols, x.shape, self.kernel_size, self.stride, self.padding)

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        n, c, _, _ = _shape4(input_shape, "Conv2d")
        if c != self.in_channels:
            raise ValueError(f"Conv2d: input has {c} channels, expected {self.in_channels}")
        return (n, self.out_channels, *_spatial_output(
            input_shape, self.kernel_size, self.stride, self.padding, "Conv2d"))

    def macs(self, input_shape: Sequence[int]) -> int:
        n, o, oh, ow = self.output_shape(input_shape)
        return n * o * oh * ow * self.in_channels * self.kernel_size[0] * self.kernel_size[1]

    def _describe(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}, "
                f"dtype={self.dtype.name}")


class Linear(_WeightBias):
    """y = x @ weight.T + bias for x (N, in_features).

    Parameters
    ----------
    in_features, out_features : int
    bias : bool
    dtype : numpy.float32 or numpy.float64
    rng : None, int or numpy.random.Generator
        PyTorch's default initialization: weight and bias uniform in
        [-1/sqrt(in_features), 1/sqrt(in_features)].

    Attributes
    ----------
    weight, grad_weight : ndarray, (out_features, in_features)
    bias, grad_bias : ndarray, (out_features,), or None
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 dtype: npt.DTypeLike = np.float32, rng: int | np.random.Generator | None = None
                 ) -> None:
        self.in_features = _count(in_features, "in_features", 1)
        self.out_features = _count(out_features, "out_features", 1)
        self.dtype = _float_dtype(dtype)
        bias = _flag(bias, "bias")
        rng = _generator(rng)
        bound = 1.0 / np.sqrt(self.in_features)
        shape = (self.out_features, self.in_features)
        _parameter_count(shape, "the weight: out_features * in_features")
        self._set_parameters(rng.uniform(-bound, bound, shape),
                             rng.uniform(-bound, bound, self.out_features) if bias else None)

    def _by_rows(self, rows, product):
        """The products product(lo, hi) for ranges of rows, split over the
        call's threads (bnkernels.nn._blas.run_products)."""
        ranges = _row_ranges(rows, self._threads if rows >= _MIN_PIECE_COLUMNS else 1)
        _blas.run_products([product(lo, hi) for lo, hi in ranges], self._threads)

    def _forward(self, x):
        self._saved = None
        x = _check_input(x, 2, self.dtype, self.in_features)
        y = np.empty((x.shape[0], self.out_features), self.dtype)
        self._by_rows(x.shape[0], lambda lo, hi: (x[lo:hi], self.weight.T, y[lo:hi], False))
        if self.bias is not None:
            y += self.bias
        self._saved = x
        return y

    def _backward(self, dy, input_grad=True):
        x = _need(self._saved, self)
        dy = _check_grad(dy, (x.shape[0], self.out_features), self.dtype)
        self._by_rows(self.out_features,
                      lambda lo, hi: (dy[:, lo:hi].T, x, self.grad_weight[lo:hi], True))
        if self.bias is not None:
            self.grad_bias += dy.sum(axis=0)
        if not input_grad:
            return None
        dx = np.empty(x.shape, self.dtype)
        self._by_rows(x.shape[0], lambda lo, hi: (dy[lo:hi], self.weight, dx[lo:hi], False))
        return dx

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        shape = tuple(int(v) for v in input_shape)
        if len(shape) != 2 or shape[1] != self.in_features:
            raise ValueError(f"Linear takes (N, {self.in_features}) inputs, got input_shape "
                             f"{shape}")
        return (shape[0], self.out_features)

    def macs(self, input_shape: Sequence[int]) -> int:
        return self.output_shape(input_shape)[0] * self.in_features * self.out_features

    def _describe(self):
        return (f"{self.in_features}, {self.out_features}, bias={self.bias is not None}, "
                f"dtype={self.dtype.name}")


# ---------------------------------------------------------------------------
# pooling
# ---------------------------------------------------------------------------

class _Pool2d(Module):
    """What max and average pooling share: window arguments and output size
    (PyTorch's rule, ceil_mode included)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False):
        self.kernel_size = _pair(kernel_size, "kernel_size", 1)
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride", 1)
        self.padding = _padding(padding, self.kernel_size, self.stride)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"padding must be at most half the kernel size, got "
                             f"padding={self.padding} for kernel_size={self.kernel_size}")
        self.ceil_mode = _flag(ceil_mode, "ceil_mode")
        self._saved = None

    def output_shape(self, input_shape):
        n, c, h, w = _shape4(input_shape, type(self).__name__)
        _spatial_output(input_shape, self.kernel_size, self.stride, self.padding,
                        type(self).__name__)
        return (n, c) + tuple(
            _kernels.pool_output_size(size, k, s, p, ceil_mode=self.ceil_mode)
            for size, k, s, p in zip((h, w), self.kernel_size, self.stride, self.padding))

    def _describe(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}" + (", ceil_mode=True" if self.ceil_mode else ""))


class MaxPool2d(_Pool2d):
    """Max over each window (C kernel); padding counts as -inf, a NaN in a
    window wins (as PyTorch). Parameters as torch.nn.MaxPool2d (stride
    defaults to kernel_size); padding may be "same" for stride 1 and odd
    kernels. The backward routes dy to the first maximum of each window."""

    def forward(self, x: Tensor) -> FloatArray:
        self._saved = None
        x = _check_input(x, 4)
        y, indices = self.kernels.max_pool2d_forward(x, self.kernel_size, self.stride,
                                                     self.padding, ceil_mode=self.ceil_mode)
        self._saved = (x.shape, x.dtype, indices)
        return y

    def backward(self, dy: Tensor) -> FloatArray:
        shape, dtype, indices = _need(self._saved, self)
        dy = _check_grad(dy, indices.shape, dtype)
        return self.kernels.max_pool2d_backward(dy, indices, shape)


class AvgPool2d(_Pool2d):
    """Mean over each window (C kernel). Parameters as torch.nn.AvgPool2d,
    the same divisor rule (count_include_pad: padded zeros count); padding
    may be "same" for stride 1 and odd kernels."""

    def __init__(self, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] | None = None,
                 padding: int | tuple[int, int] | str = 0, ceil_mode: bool = False,
                 count_include_pad: bool = True) -> None:
        super().__init__(kernel_size, stride, padding, ceil_mode)
        self.count_include_pad = _flag(count_include_pad, "count_include_pad")

    def _window(self):
        return (self.kernel_size, self.stride, self.padding)

    def _options(self):
        return {"ceil_mode": self.ceil_mode, "count_include_pad": self.count_include_pad}

    def forward(self, x: Tensor) -> FloatArray:
        self._saved = None
        x = _check_input(x, 4)
        y = self.kernels.avg_pool2d_forward(x, *self._window(), **self._options())
        self._saved = (x.shape, x.dtype, y.shape)
        return y

    def backward(self, dy: Tensor) -> FloatArray:
        shape, dtype, y_shape = _need(self._saved, self)
        dy = _check_grad(dy, y_shape, dtype)
        return self.kernels.avg_pool2d_backward(dy, shape, *self._window(), **self._options())

    def _describe(self):
        return super()._describe() + ("" if self.count_include_pad
                                      else ", count_include_pad=False")


class GlobalAvgPool2d(Module):
    """Mean over H and W: (N, C, H, W) -> (N, C, 1, 1), GoogLeNet's last
    pooling; average pooling with an (H, W) window, in C."""

    _saved: Any = None

    def forward(self, x: Tensor) -> FloatArray:
        self._saved = None
        x = _check_input(x, 4)
        window = x.shape[2:]
        y = self.kernels.avg_pool2d_forward(x, window, window, (0, 0))
        self._saved = (x.shape, x.dtype)
        return y

    def backward(self, dy: Tensor) -> FloatArray:
        shape, dtype = _need(self._saved, self)
        dy = _check_grad(dy, (*shape[:2], 1, 1), dtype)
        window = shape[2:]
        return self.kernels.avg_pool2d_backward(dy, shape, window, window, (0, 0))

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        n, c, _, _ = _shape4(input_shape, "GlobalAvgPool2d")
        return (n, c, 1, 1)


# ---------------------------------------------------------------------------
# elementwise and reshaping
# ---------------------------------------------------------------------------

class _Elementwise(Module):
    """A layer whose output has its input's shape."""

    _saved: Any = None

    def output_shape(self, input_shape):
        return tuple(input_shape)


class ReLU(_Elementwise):
    """max(x, 0) (NaN stays NaN); the backward passes dy where x > 0 (+0
    elsewhere). The forward keeps x itself (as Conv2d and BatchNorm do), not
    a mask: x must not change before the backward."""

    def forward(self, x: Tensor) -> FloatArray:
        self._saved = None
        x = np.ascontiguousarray(_float_array(x))
        self._saved = x
        return np.maximum(x, x.dtype.type(0))

    def _forward_in_place(self, x):
        """The forward on x that no one else holds (ConvBNReLU's fresh
        convolution output): max(x, 0) written over x, kept for the backward
        (its positives are x's)."""
        self._saved = None
        np.maximum(x, x.dtype.type(0), out=x)
        self._saved = x
        return x

    def backward(self, dy: Tensor) -> FloatArray:
        x = _need(self._saved, self)
        dy = _check_grad(dy, x.shape, x.dtype)
        if self.kernels is _kernels:
            return _kernels._relu_backward(dy, x)
        return np.where(x > 0, dy, x.dtype.type(0))


class Flatten(Module):
    """(N, C, H, W) (or any (N, ...)) -> (N, C*H*W), a view when x is contiguous."""

    _saved: Any = None

    def forward(self, x: Tensor) -> FloatArray:
        self._saved = None
        x = np.asarray(x)
        if x.ndim < 1:
            raise ValueError(f"x has shape {x.shape}, expected (N, ...)")
        self._saved = (x.shape, x.dtype)
        return x.reshape(x.shape[0], -1)

    def backward(self, dy: Tensor) -> FloatArray:
        shape, dtype = _need(self._saved, self)
        dy = _check_grad(dy, self.output_shape(shape), dtype)
        return dy.reshape(shape)

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        shape = tuple(int(v) for v in input_shape)
        if not shape:
            raise ValueError(f"Flatten takes (N, ...) inputs, got input_shape {shape}")
        return (shape[0], math.prod(shape[1:]))


class Dropout(_Elementwise):
    """Inverted dropout: in training, each value is zeroed with probability p
    and the rest scaled by 1 / (1 - p), so eval mode is the identity.

    Parameters
    ----------
    p : float in [0, 1]
        1 zeroes everything (as torch.nn.Dropout); NaN is refused.
    rng : None, int or numpy.random.Generator
        Draws the masks (one per forward in training).
    """

    p: float
    rng: np.random.Generator

    def __init__(self, p: float = 0.5,
                 rng: int | np.random.Generator | None = None) -> None:
        if isinstance(p, (bool, np.bool_)) or not isinstance(p, numbers.Real) \
                or not 0 <= p <= 1:
            raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
        self.p = float(p)
        self.rng = _generator(rng)
        self._saved = None

    def forward(self, x: Tensor) -> FloatArray:
        self._saved = None
        x = _float_array(x)
        if not self.training or self.p == 0:
            self._saved = (x.shape, x.dtype, None)
            return x.copy()
        scale = 0.0 if self.p == 1 else 1.0 / (1.0 - self.p)
        mask = ((self.rng.random(x.shape) >= self.p) * scale).astype(x.dtype)
        self._saved = (x.shape, x.dtype, mask)
        return x * mask

    def backward(self, dy: Tensor) -> FloatArray:
        shape, dtype, mask = _need(self._saved, self)
        dy = _check_grad(dy, shape, dtype)
        return dy.copy() if mask is None else dy * mask

    def _describe(self):
        return f"p={self.p:g}"


# ---------------------------------------------------------------------------
# BN-Inception's unit
# ---------------------------------------------------------------------------

class ConvBNReLU(Module):
    """Conv2d without bias, then BatchNorm2d with the fused ReLU (BN-Inception's
    unit); with ``batch_norm=False``, Conv2d with bias then ReLU (the same
    architecture without BN, for comparing training with and without it).

    Parameters
    ----------
    in_channels, out_channels, kernel_size, stride, padding
        As Conv2d.
    numerics : {"standard", "darknet", "darknet-alexeyab", "darknet-ofast", "darknet-alexeyab-ofast", "darknet-alexeyab-ofast-avx"}
        The BN's numerics family (see bnkernels.BatchNorm2d).
    batch_norm : bool
    eps, momentum : float, optional
        The BN's (see bnkernels.BatchNorm2d): eps None and momentum
        "default" take the family's defaults.
    dtype : numpy.float32 or numpy.float64
    rng : None, int or numpy.random.Generator
        For the convolution's He-normal weights.

    Submodules: ``conv`` and ``bn`` (or ``conv`` and ``relu`` without BN),
    so state-dict keys read like torchvision's BasicConv2d.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] | str = 0, *,
                 numerics: str = "standard", batch_norm: bool = True, eps: float | None = None,
                 momentum: float | str | None = "default", dtype: npt.DTypeLike = np.float32,
                 rng: int | np.random.Generator | None = None) -> None:
        self.batch_norm = _flag(batch_norm, "batch_norm")
        self.conv = Conv2d(in_channels, out_channels, kernel_size, stride, padding,
                           bias=not self.batch_norm, dtype=dtype, rng=rng)
        if self.batch_norm:
            self.bn = BatchNorm2d(out_channels, numerics=numerics, eps=eps,
                                  momentum=momentum, dtype=dtype, activation="relu")
        else:
            self.relu = ReLU()

    @property
    def _after(self):
        return self.bn if self.batch_norm else self.relu

    def forward(self, x: Tensor) -> FloatArray:
        if self.batch_norm:
            return self._all_or_nothing(lambda x: self.bn.forward(self.conv.forward(x)), x)
        # the convolution's output is a new array: its ReLU runs in place
        return self._all_or_nothing(
            lambda x: self.relu._forward_in_place(self.conv.forward(x)), x)

    def backward(self, dy: Tensor) -> FloatArray:
        return self._all_or_nothing(lambda dy: self.conv.backward(self._after.backward(dy)),
                                    dy, forward=False)

    def _backward_parameters(self, dy):
        self._all_or_nothing(
            lambda dy: self.conv._backward_parameters(self._after.backward(dy)), dy,
            forward=False)

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        return self.conv.output_shape(input_shape)

    def _child_inputs(self, input_shape):
        return [(self.conv, tuple(input_shape)),
                (self._after, self.conv.output_shape(input_shape))]

    def _describe(self):
        conv = self.conv
        text = (f"{conv.in_channels}, {conv.out_channels}, kernel_size={conv.kernel_size}, "
                f"stride={conv.stride}, padding={conv.padding}")
        if self.batch_norm:
            return text + f", numerics={self.bn.numerics!r}"
        return text + ", batch_norm=False"


# ---------------------------------------------------------------------------
# the loss
# ---------------------------------------------------------------------------

class SoftmaxCrossEntropy(Module):
    """Mean cross-entropy of softmax(logits) against integer labels, with
    Inception-v3's label-smoothing regularization: the target distribution is
    (1 - label_smoothing) * onehot(label) + label_smoothing / K over K classes
    (as torch.nn.functional.cross_entropy(..., label_smoothing=...)).

    ``forward(logits, labels)`` returns the loss as a Python float;
    ``backward(dloss=1.0)`` returns dloss * dL/dlogits = dloss * (softmax -
    target) / N in the logits' dtype. The softmax and the loss are computed in
    float64 whatever the logits' dtype (an (N, K) array: negligible cost).
    """

    label_smoothing: float

    def __init__(self, label_smoothing: float = 0.0) -> None:
        if isinstance(label_smoothing, (bool, np.bool_)) or \
                not isinstance(label_smoothing, numbers.Real) \
                or not 0 <= label_smoothing <= 1:
            raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)
        self._saved = None

    # a loss takes (logits, labels), not Module's one input
    def forward(self, logits: Tensor, labels: Tensor) -> float:  # type: ignore[override]
        self._saved = None
        logits = _check_input(logits, 2, name="logits")
        labels = np.asarray(labels)
        n, k = logits.shape
        if labels.dtype.kind not in "iu":
            raise TypeError(f"labels has dtype {labels.dtype}, expected an integer dtype")
        if labels.shape != (n,):
            raise ValueError(f"labels has shape {labels.shape}, expected ({n},) to match "
                             f"logits {logits.shape}")
        if n and (labels.min() < 0 or labels.max() >= k):
            raise ValueError(f"labels must be in [0, {k}), got values in "
                             f"[{labels.min()}, {labels.max()}]")
        if n == 0:
            raise ValueError("logits has no rows (N = 0): the mean loss is undefined")
        z = logits.astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        log_softmax = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        target = np.full((n, k), self.label_smoothing / k)
        target[np.arange(n), labels] += 1.0 - self.label_smoothing
        loss = -(target * log_softmax).sum() / n
        self._saved = (np.exp(log_softmax) - target, logits.dtype)
        return float(loss)

    def __call__(self, logits: Tensor, labels: Tensor) -> float:  # type: ignore[override]
        return self.forward(logits, labels)

    def backward(self, dloss: float = 1.0) -> FloatArray:
        difference, dtype = _need(self._saved, self)
        if isinstance(dloss, (bool, np.bool_)) or not isinstance(dloss, numbers.Real) \
                or not math.isfinite(dloss):
            raise ValueError(f"dloss must be a finite number, got {dloss!r}")
        return (difference * (float(dloss) / difference.shape[0])).astype(dtype)

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        return ()

    def _describe(self):
        return f"label_smoothing={self.label_smoothing:g}" if self.label_smoothing else ""
