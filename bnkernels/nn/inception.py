"""Inception blocks and networks on the layers of ``bnkernels.nn.layers``.

Blocks (each a ``Concat`` of branches with named submodules, NCHW in and out):

- ``InceptionV1Naive``: 1x1, 3x3, 5x5 convolutions and 3x3/1 max pooling in
  parallel (GoogLeNet paper, Figure 2a).
- ``InceptionV1``: GoogLeNet's module with 1x1 reductions (Figure 2b).
- ``InceptionBN``: BN-Inception's module (Ioffe & Szegedy 2015, Figure 5):
  every convolution Conv+BN+ReLU, the 5x5 replaced by two stacked 3x3, average
  or max pooling, and the stride-2 variant that halves the grid.
- ``InceptionV3A`` / ``InceptionV3B`` / ``InceptionV3C`` / ``InceptionV3Reduction``:
  the Inception-v3 modules (Szegedy et al. 2016, Figures 5, 6, 7 and 10) with
  the channel counts of the released model (TF-slim, torchvision), their
  units named as torchvision's (``branch5x5_1``, ``branch3x3_2a``, ...).

Networks (``Network``: named stages in order, optional auxiliary heads, and a
``summary`` in the style of GoogLeNet's Table 1): ``googlenet`` (the paper's,
or torchvision's with ``variant="torchvision"``), ``bn_inception``,
``inception_v3`` (torchvision's) and ``small_inception`` (8x8 images). The
torchvision networks have torchvision's state_dict keys, so its checkpoints
load as they are; ``TransformInput`` and ``AdaptiveAvgPool2d`` are the two
layers they add.

Every convolution is a ``ConvBNReLU``; ``batch_norm=False`` makes it a
convolution with bias followed by ReLU, so the same architecture trains with
and without BN. ``numerics``, ``eps`` and ``momentum`` pass through to every
BatchNorm2d. Weights are initialized by the layers (see ``Conv2d``/``Linear``)
from one ``np.random.Generator`` per block or network (``rng``: None, a seed
or a Generator), so a seed fixes every weight.
"""
from collections.abc import Iterable, Mapping, Sequence
import numbers
import sys
from typing import Any, Literal, TextIO, overload

import numpy as np
import numpy.typing as npt

from bnkernels._deprecation import renamed_keyword
from bnkernels._typing import FloatArray, Tensor
from bnkernels.module import _first_learning_stage, _input_grad_flag
from bnkernels.nn.layers import (
    AvgPool2d, Concat, ConvBNReLU, Dropout, Flatten, GlobalAvgPool2d, Linear, MaxPool2d,
    Module, ReLU, Sequential, _check_grad, _float_array, _need,
)

# Inception-v3's reference implementations (TF-slim, torchvision) use BN eps 1e-3,
# and so does torchvision's GoogLeNet.
TORCHVISION_EPS = V3_EPS = 1e-3


def _pair(value):
    return (value, value) if np.isscalar(value) else tuple(value)


class _Units:
    """Makes the Conv(+BN)+ReLU units of one block or network with shared
    settings and one random generator."""

    def __init__(self, batch_norm, numerics, eps, momentum, dtype, rng):
        if not (rng is None or isinstance(rng, (np.random.Generator, np.random.SeedSequence,
                                                np.random.BitGenerator))
                or (isinstance(rng, (int, np.integer)) and not isinstance(rng, (bool, np.bool_))
                    and rng >= 0)):
            raise ValueError(f"rng (a network's seed) must be None, an int >= 0 or a "
                             f"numpy.random.Generator, got {rng!r}")
        self.rng = np.random.default_rng(rng)
        self.dtype = dtype
        self.kw = dict(batch_norm=batch_norm, numerics=numerics, eps=eps, momentum=momentum,
                       dtype=dtype)

    def __call__(self, in_ch, out_ch, kernel_size, stride=1, padding=None):
        """A unit; padding None keeps the grid at stride 1 (kernel // 2 per axis)."""
        kh, kw = _pair(kernel_size)
        if padding is None:
            padding = (kh // 2, kw // 2)
        return ConvBNReLU(in_ch, out_ch, (kh, kw), stride=stride, padding=padding,
                          rng=self.rng, **self.kw)

    def linear(self, in_f, out_f):
        return Linear(in_f, out_f, dtype=self.dtype, rng=self.rng)

    def dropout(self, p):
        return Dropout(p, rng=self.rng)


def _check_channels(zero_allowed=(), **counts):
    """Each count an int >= 1 (>= 0 for the names in zero_allowed, whose 0
    drops a branch or a layer)."""
    for name, value in counts.items():
        minimum = 0 if name in zero_allowed else 1
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
                or value < minimum:
            raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _check_choice(value, name, choices):
    """value, an int (not a bool) among choices."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")
    return int(value)


def _check_network(num_classes, dropout, aux_logits=False):
    """The arguments every network function shares (in_channels, numerics,
    eps, momentum and dtype are checked by the layers they reach)."""
    _check_channels(num_classes=num_classes)
    if isinstance(dropout, (bool, np.bool_)) or not isinstance(dropout, numbers.Real) \
            or not 0 <= float(dropout) <= 1:
        raise ValueError(f"dropout must be a probability in [0, 1], got {dropout!r}")
    if not isinstance(aux_logits, (bool, np.bool_)):
        raise ValueError(f"aux_logits must be a bool, got {aux_logits!r}")


class InceptionBlock(Concat):
    """A Concat of branches whose submodules have names (used in parameter and
    state_dict keys) and whose filter counts fill the Inception columns of the
    summary table.

    Parameters
    ----------
    branches : list of Module
        Run on the same input, outputs concatenated (Sequential and Concat
        wire the units inside a branch).
    columns : dict
        {Table 1 column: filter count or text}.
    children : list of (name, Module)
        The named submodules, which every module of the branches lies in:
        either the branches themselves (keys "branch3x3.0.conv.weight", as
        torchvision's GoogLeNet) or the units the branches are wired from,
        one by one (keys "branch3x3_1.conv.weight", as torchvision's
        Inception3, whose blocks hold their convolutions as attributes).
    """

    label = "inception"

    def __init__(self, branches: Sequence[Module], columns: Mapping[str, Any],
                 children: Iterable[tuple[str, Module]]) -> None:
        super().__init__(*branches)
        self._children = list(children)
        self._columns = dict(columns)
        named = {id(module) for _, child in self._children for module in _walk(child)}
        for branch in self.branches:
            for module in _wiring(branch):
                if not isinstance(module, (Sequential, Concat)) and id(module) not in named:
                    raise ValueError(f"{type(module).__name__} in a branch is in no named "
                                     "submodule")

    def children(self) -> list[tuple[str, Module]]:
        return list(self._children)

    def __getattr__(self, name):
        for child_name, child in self.__dict__.get("_children", ()):
            if child_name == name:
                return child
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def _child_inputs(self, input_shape):
        shapes: dict[int, tuple[int, ...]] = {}
        for branch in self.branches:
            _record_inputs(branch, tuple(input_shape), shapes)
        return [(child, shapes[id(child)]) for _, child in self._children]

    def columns(self) -> dict[str, Any]:
        """{Table 1 column: filter count or text} of this block."""
        return dict(self._columns)

    def summary(self, input_shape: Sequence[int], file: TextIO | None = None) -> str:
        """The table of ``summary_table`` with one row per named submodule."""
        return summary_table(self, input_shape, file=file)

    def _describe(self):
        return ", ".join(f"{key}={value}" for key, value in self._columns.items())


def _walk(module):
    """module and every module below it (through children())."""
    yield module
    for _, child in module.children():
        yield from _walk(child)


def _wiring(module):
    """module and every module inside it through Sequential and Concat,
    the containers that wire a branch."""
    yield module
    inner = (module.layers if isinstance(module, Sequential)
             else module.branches if isinstance(module, Concat) else ())
    for part in inner:
        yield from _wiring(part)


def _record_inputs(module, input_shape, shapes):
    """{id(m): the input shape m receives} for every module of a branch."""
    shapes[id(module)] = input_shape
    if isinstance(module, Sequential):
        for layer in module.layers:
            _record_inputs(layer, input_shape, shapes)
            input_shape = layer.output_shape(input_shape)
    elif isinstance(module, Concat):
        for branch in module.branches:
            _record_inputs(branch, input_shape, shapes)


def _wired(units, *specs):
    """Branches wired from named units: a name is that unit, a list runs its
    items in sequence, a tuple runs them on the same input and concatenates."""
    def build(spec):
        if isinstance(spec, str):
            return units[spec]
        parts = [build(part) for part in spec]
        return Sequential(*parts) if isinstance(spec, list) else Concat(*parts)
    return [build(spec) for spec in specs]


class InceptionV1Naive(InceptionBlock):
    """The naive Inception module: 1x1, 3x3 and 5x5 convolutions (each followed
    by ReLU) and 3x3/1 max pooling of the input, concatenated. Output channels
    c1x1 + c3x3 + c5x5 + in_ch; the grid is kept (padding 1, 2 and 1).

    Parameters
    ----------
    in_ch, c1x1, c3x3, c5x5 : int
    batch_norm : bool
        False (default, as in GoogLeNet): convolutions with bias + ReLU.
        True: Conv + BN + ReLU.
    numerics, eps, momentum : passed to every BatchNorm2d
    dtype : numpy.float32 or numpy.float64
    rng : None, int or numpy.random.Generator
    """

    def __init__(self, in_ch: int, c1x1: int, c3x3: int, c5x5: int, *, batch_norm: bool = False,
                 numerics: str = "standard", eps: float | None = None,
                 momentum: float | str | None = "default", dtype: npt.DTypeLike = np.float32,
                 rng: int | np.random.Generator | None = None) -> None:
        _check_channels(in_ch=in_ch, c1x1=c1x1, c3x3=c3x3, c5x5=c5x5)
        unit = _Units(batch_norm, numerics, eps, momentum, dtype, rng)
        named = [("branch1x1", unit(in_ch, c1x1, 1)),
                 ("branch3x3", unit(in_ch, c3x3, 3)),
                 ("branch5x5", unit(in_ch, c5x5, 5)),
                 ("branch_pool", MaxPool2d(3, stride=1, padding=1))]
        super().__init__([branch for _, branch in named],
                         {"#1x1": c1x1, "#3x3": c3x3, "#5x5": c5x5, "pool proj": "max"}, named)


class InceptionV1(InceptionBlock):
    """GoogLeNet's Inception module (Szegedy et al. 2014, Figure 2b): 1x1;
    1x1 -> 3x3; 1x1 -> 5x5; 3x3/1 max pool -> 1x1 projection; ReLU after every
    convolution. Output channels c1x1 + c3x3 + c5x5 + pool_proj, grid kept.

    Parameters
    ----------
    in_ch, c1x1, c3x3_reduce, c3x3, c5x5_reduce, c5x5, pool_proj : int
        The columns of GoogLeNet's Table 1.
    variant : {"paper", "torchvision"}
        "paper": branches branch1x1, branch3x3, branch5x5, branch_pool.
        "torchvision": torchvision's Inception module: branches branch1 to
        branch4 (the same state_dict keys), a 3x3 convolution where the paper
        has the 5x5 (c5x5_reduce -> c5x5 with a 3x3 kernel, torchvision's
        known deviation, kept by its released weights), the max pool in
        ceil mode (the same output at stride 1).
    batch_norm : bool or None
        False: convolutions with bias + ReLU; True: Conv + BN + ReLU.
        None: False for "paper" (the original), True for "torchvision".
    eps : float or None
        The BN's; None: 1e-3 for "torchvision" (torchvision's BasicConv2d),
        the numerics family's default for "paper".
    numerics, momentum, dtype, rng : as InceptionV1Naive
    """

    def __init__(self, in_ch: int, c1x1: int, c3x3_reduce: int, c3x3: int, c5x5_reduce: int,
                 c5x5: int, pool_proj: int | None, *, variant: str = "paper",
                 batch_norm: bool | None = None, numerics: str = "standard",
                 eps: float | None = None, momentum: float | str | None = "default",
                 dtype: npt.DTypeLike = np.float32, rng: int | np.random.Generator | None = None
                 ) -> None:
        _check_channels(in_ch=in_ch, c1x1=c1x1, c3x3_reduce=c3x3_reduce, c3x3=c3x3,
                        c5x5_reduce=c5x5_reduce, c5x5=c5x5, pool_proj=pool_proj)
        torchvision = _variant(variant)
        if batch_norm is None:
            batch_norm = torchvision
        if eps is None and torchvision:
            eps = TORCHVISION_EPS
        names = (("branch1", "branch2", "branch3", "branch4") if torchvision
                 else ("branch1x1", "branch3x3", "branch5x5", "branch_pool"))
        kernel_5x5 = 3 if torchvision else 5
        unit = _Units(batch_norm, numerics, eps, momentum, dtype, rng)
        named = list(zip(names, [
            unit(in_ch, c1x1, 1),
            Sequential(unit(in_ch, c3x3_reduce, 1), unit(c3x3_reduce, c3x3, 3)),
            Sequential(unit(in_ch, c5x5_reduce, 1), unit(c5x5_reduce, c5x5, kernel_5x5)),
            Sequential(MaxPool2d(3, stride=1, padding=1, ceil_mode=torchvision),
                       unit(in_ch, pool_proj, 1))]))
        super().__init__(
            [branch for _, branch in named],
            {"#1x1": c1x1, "#3x3 reduce": c3x3_reduce, "#3x3": c3x3,
             "#5x5 reduce": c5x5_reduce, "#5x5": c5x5, "pool proj": pool_proj},
            named)


def _variant(variant):
    """True for "torchvision", False for "paper"."""
    if variant not in ("paper", "torchvision"):
        raise ValueError(f"variant must be 'paper' or 'torchvision', got {variant!r}")
    return variant == "torchvision"


class InceptionBN(InceptionBlock):
    """BN-Inception's module (Ioffe & Szegedy 2015, Figure 5): every
    convolution Conv+BN+ReLU; 1x1; 1x1 -> 3x3; 1x1 -> 3x3 -> 3x3 (the 5x5
    factored into two 3x3, "double #3x3"); 3x3 pooling -> 1x1 projection.

    With stride=2 the module halves the grid: no 1x1 branch and no projection
    (the pooled input passes through), the last 3x3 of each convolution branch
    and the 3x3 pooling have stride 2 (padding 1: an H x W grid becomes
    (H+1)//2 x (W+1)//2). Output channels c1x1 + c3x3 + d3x3 + (pool_proj or in_ch).

    Parameters
    ----------
    in_ch, c1x1, c3x3_reduce, c3x3, d3x3_reduce, d3x3 : int
        The columns of Figure 5 (d: double 3x3). c1x1 = 0 drops the 1x1 branch.
    pool_proj : int or None
        Channels of the projection after pooling; 0 or None: pass through.
    pool : {"avg", "max"} or None
        None: "avg" at stride 1, "max" at stride 2 (the paper's choice).
        Average pooling counts the zero padding (torch's count_include_pad).
    stride : {1, 2}
        2 needs c1x1 = 0 and no projection, as in the paper.
    batch_norm : bool
        True (default); False gives convolutions with bias + ReLU instead.
    numerics, eps, momentum : passed to every BatchNorm2d (eps None and
        momentum "default": the numerics family's, 1e-5 and 0.1 for
        "standard"; momentum None: the cumulative average, as in PyTorch)
    dtype, rng : as InceptionV1Naive
    """

    def __init__(self, in_ch: int, c1x1: int, c3x3_reduce: int, c3x3: int, d3x3_reduce: int,
                 d3x3: int, pool_proj: int | None, *, pool: str | None = None, stride: int = 1,
                 batch_norm: bool = True, numerics: str = "standard", eps: float | None = None,
                 momentum: float | str | None = "default", dtype: npt.DTypeLike = np.float32,
                 rng: int | np.random.Generator | None = None) -> None:
        pool_proj = 0 if pool_proj is None else pool_proj
        _check_channels(("c1x1", "pool_proj"), in_ch=in_ch, c1x1=c1x1,
                        c3x3_reduce=c3x3_reduce, c3x3=c3x3, d3x3_reduce=d3x3_reduce, d3x3=d3x3,
                        pool_proj=pool_proj)
        stride = _check_choice(stride, "stride", (1, 2))
        if stride == 2 and (c1x1 or pool_proj):
            raise ValueError("the stride-2 module has no 1x1 branch and no pool projection "
                             f"(c1x1 and pool_proj must be 0), got c1x1={c1x1}, "
                             f"pool_proj={pool_proj}")
        pool = ("avg" if stride == 1 else "max") if pool is None else pool
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        unit = _Units(batch_norm, numerics, eps, momentum, dtype, rng)
        pooling = (AvgPool2d if pool == "avg" else MaxPool2d)(3, stride=stride, padding=1)
        branches = []
        if c1x1:
            branches.append(("branch1x1", unit(in_ch, c1x1, 1)))
        branches += [
            ("branch3x3", Sequential(unit(in_ch, c3x3_reduce, 1),
                                     unit(c3x3_reduce, c3x3, 3, stride, 1))),
            ("branch3x3dbl", Sequential(unit(in_ch, d3x3_reduce, 1),
                                        unit(d3x3_reduce, d3x3, 3),
                                        unit(d3x3, d3x3, 3, stride, 1))),
            ("branch_pool", Sequential(pooling, unit(in_ch, pool_proj, 1)) if pool_proj
             else pooling)]
        self.stride = stride
        super().__init__(
            [branch for _, branch in branches],
            {"#1x1": c1x1, "#3x3 reduce": c3x3_reduce, "#3x3": c3x3,
             "double #3x3 reduce": d3x3_reduce, "double #3x3": d3x3,
             "pool+proj": f"{pool}+{pool_proj}" if pool_proj else f"{pool}+pass through"},
            branches)
        if stride == 2:
            self.label = "inception stride 2"


class InceptionV3A(InceptionBlock):
    """Inception-v3's 35x35 module (Szegedy et al. 2016, Figure 5; torchvision's
    InceptionA): 1x1; 1x1 -> 5x5; 1x1 -> 3x3 -> 3x3 (a 5x5 factored into two
    3x3); 3x3/1 average pool -> 1x1. Every convolution Conv+BN+ReLU.

    The released model (TF-slim, torchvision) has a 5x5 in the second branch;
    the paper's Figure 5 draws a 3x3 there: ``kernel_5x5=3`` builds that.
    Output channels c1x1 + c5x5 + c3x3dbl + pool_features.

    Parameters
    ----------
    in_ch, pool_features : int
        torchvision's arguments (Mixed_5b: 192, 32; 5c: 256, 64; 5d: 288, 64).
    c1x1, c5x5_reduce, c5x5, c3x3dbl_reduce, c3x3dbl : int
        Branch widths, torchvision's by default.
    kernel_5x5 : {5, 3}
    batch_norm, numerics, momentum, dtype, rng : as InceptionBN
    eps : float
        1e-3 by default, as the reference implementations.
    """

    def __init__(self, in_ch: int, pool_features: int, *, c1x1: int = 64, c5x5_reduce: int = 48,
                 c5x5: int = 64, c3x3dbl_reduce: int = 64, c3x3dbl: int = 96, kernel_5x5: int = 5,
                 batch_norm: bool = True, numerics: str = "standard", eps: float | None = V3_EPS,
                 momentum: float | str | None = "default", dtype: npt.DTypeLike = np.float32,
                 rng: int | np.random.Generator | None = None) -> None:
        _check_channels(in_ch=in_ch, pool_features=pool_features, c1x1=c1x1,
                        c5x5_reduce=c5x5_reduce, c5x5=c5x5, c3x3dbl_reduce=c3x3dbl_reduce,
                        c3x3dbl=c3x3dbl)
        kernel_5x5 = _check_choice(kernel_5x5, "kernel_5x5", (5, 3))
        unit = _Units(batch_norm, numerics, eps, momentum, dtype, rng)
        units = {"branch1x1": unit(in_ch, c1x1, 1),
                 "branch5x5_1": unit(in_ch, c5x5_reduce, 1),
                 "branch5x5_2": unit(c5x5_reduce, c5x5, kernel_5x5),
                 "branch3x3dbl_1": unit(in_ch, c3x3dbl_reduce, 1),
                 "branch3x3dbl_2": unit(c3x3dbl_reduce, c3x3dbl, 3),
                 "branch3x3dbl_3": unit(c3x3dbl, c3x3dbl, 3),
                 "pool": AvgPool2d(3, stride=1, padding=1),
                 "branch_pool": unit(in_ch, pool_features, 1)}
        super().__init__(
            _wired(units, "branch1x1", ["branch5x5_1", "branch5x5_2"],
                   ["branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"],
                   ["pool", "branch_pool"]),
            {"#1x1": c1x1, f"#{kernel_5x5}x{kernel_5x5} reduce": c5x5_reduce,
             f"#{kernel_5x5}x{kernel_5x5}": c5x5, "double #3x3 reduce": c3x3dbl_reduce,
             "double #3x3": c3x3dbl, "pool+proj": f"avg+{pool_features}"},
            units.items())


class InceptionV3B(InceptionBlock):
    """Inception-v3's 17x17 module (Figure 6; torchvision's InceptionC): n x n
    convolutions factored into 1 x n and n x 1. Branches: 1x1; 1x1 -> 1xn ->
    nx1; 1x1 -> nx1 -> 1xn -> nx1 -> 1xn (torchvision's order); 3x3/1 average
    pool -> 1x1. Every convolution Conv+BN+ReLU.
    Output channels c1x1 + 2 * c7x7 + pool_proj (768 by default).

    Parameters
    ----------
    in_ch, channels_7x7 : int
        torchvision's arguments (Mixed_6b: 768, 128; 6c, 6d: 160; 6e: 192);
        channels_7x7 is the width inside the factored branches.
    c1x1, c7x7, pool_proj : int
        192 each by default; c7x7 is the output of each factored branch.
    n : int
        The factored kernel size, 7 by default (odd: padding n // 2 keeps the grid).
    batch_norm, numerics, eps, momentum, dtype, rng : as InceptionV3A
    """

    def __init__(self, in_ch: int, channels_7x7: int, *, c1x1: int = 192, c7x7: int = 192,
                 pool_proj: int | None = 192, n: int = 7, batch_norm: bool = True,
                 numerics: str = "standard", eps: float | None = V3_EPS,
                 momentum: float | str | None = "default", dtype: npt.DTypeLike = np.float32,
                 rng: int | np.random.Generator | None = None) -> None:
        _check_channels(in_ch=in_ch, channels_7x7=channels_7x7, c1x1=c1x1, c7x7=c7x7,
                        pool_proj=pool_proj, n=n)
        if n % 2 != 1:
            raise ValueError(f"n must be odd (the grid is kept), got {n}")
        n = int(n)
        unit = _Units(batch_norm, numerics, eps, momentum, dtype, rng)
        c7, nxn = channels_7x7, f"branch{n}x{n}"
        units = {"branch1x1": unit(in_ch, c1x1, 1),
                 f"{nxn}_1": unit(in_ch, c7, 1),
                 f"{nxn}_2": unit(c7, c7, (1, n)),
                 f"{nxn}_3": unit(c7, c7x7, (n, 1)),
                 f"{nxn}dbl_1": unit(in_ch, c7, 1),
                 f"{nxn}dbl_2": unit(c7, c7, (n, 1)),
                 f"{nxn}dbl_3": unit(c7, c7, (1, n)),
                 f"{nxn}dbl_4": unit(c7, c7, (n, 1)),
                 f"{nxn}dbl_5": unit(c7, c7x7, (1, n)),
                 "pool": AvgPool2d(3, stride=1, padding=1),
                 "branch_pool": unit(in_ch, pool_proj, 1)}
        super().__init__(
            _wired(units, "branch1x1", [f"{nxn}_{i}" for i in (1, 2, 3)],
                   [f"{nxn}dbl_{i}" for i in (1, 2, 3, 4, 5)], ["pool", "branch_pool"]),
            {"#1x1": c1x1, f"#{n}x{n} reduce": c7, f"#{n}x{n}": c7x7,
             f"double #{n}x{n} reduce": c7, f"double #{n}x{n}": c7x7,
             "pool+proj": f"avg+{pool_proj}"},
            units.items())


class InceptionV3C(InceptionBlock):
    """Inception-v3's 8x8 module with the expanded filter bank (Figure 7;
    torchvision's InceptionE): 1x1; 1x1 -> [1x3 | 3x1]; 1x1 -> 3x3 -> [1x3 | 3x1];
    3x3/1 average pool -> 1x1, where [a | b] runs a and b on the same input
    and concatenates. Every convolution Conv+BN+ReLU.
    Output channels c1x1 + 2 * c3x3 + 2 * c3x3dbl + pool_proj (2048 by default).

    Parameters
    ----------
    in_ch : int
        1280 (Mixed_7b) or 2048 (Mixed_7c) in Inception-v3.
    c1x1, c3x3_reduce, c3x3, c3x3dbl_reduce, c3x3dbl_mid, c3x3dbl, pool_proj : int
        torchvision's widths by default (320, 384, 384, 448, 384, 384, 192).
    batch_norm, numerics, eps, momentum, dtype, rng : as InceptionV3A
    """

    def __init__(self, in_ch: int, *, c1x1: int = 320, c3x3_reduce: int = 384, c3x3: int = 384,
                 c3x3dbl_reduce: int = 448, c3x3dbl_mid: int = 384, c3x3dbl: int = 384,
                 pool_proj: int | None = 192, batch_norm: bool = True, numerics: str = "standard",
                 eps: float | None = V3_EPS, momentum: float | str | None = "default",
                 dtype: npt.DTypeLike = np.float32, rng: int | np.random.Generator | None = None
                 ) -> None:
        _check_channels(in_ch=in_ch, c1x1=c1x1, c3x3_reduce=c3x3_reduce, c3x3=c3x3,
                        c3x3dbl_reduce=c3x3dbl_reduce, c3x3dbl_mid=c3x3dbl_mid,
                        c3x3dbl=c3x3dbl, pool_proj=pool_proj)
        unit = _Units(batch_norm, numerics, eps, momentum, dtype, rng)
        units = {"branch1x1": unit(in_ch, c1x1, 1),
                 "branch3x3_1": unit(in_ch, c3x3_reduce, 1),
                 "branch3x3_2a": unit(c3x3_reduce, c3x3, (1, 3)),
                 "branch3x3_2b": unit(c3x3_reduce, c3x3, (3, 1)),
                 "branch3x3dbl_1": unit(in_ch, c3x3dbl_reduce, 1),
                 "branch3x3dbl_2": unit(c3x3dbl_reduce, c3x3dbl_mid, 3),
                 "branch3x3dbl_3a": unit(c3x3dbl_mid, c3x3dbl, (1, 3)),
                 "branch3x3dbl_3b": unit(c3x3dbl_mid, c3x3dbl, (3, 1)),
                 "pool": AvgPool2d(3, stride=1, padding=1),
                 "branch_pool": unit(in_ch, pool_proj, 1)}
        super().__init__(
            _wired(units, "branch1x1", ["branch3x3_1", ("branch3x3_2a", "branch3x3_2b")],
                   ["branch3x3dbl_1", "branch3x3dbl_2", ("branch3x3dbl_3a", "branch3x3dbl_3b")],
                   ["pool", "branch_pool"]),
            {"#1x1": c1x1, "#3x3 reduce": c3x3_reduce, "#3x3": f"2x{c3x3}",
             "double #3x3 reduce": c3x3dbl_reduce, "double #3x3": f"{c3x3dbl_mid}>2x{c3x3dbl}",
             "pool+proj": f"avg+{pool_proj}"},
            units.items())


class InceptionV3Reduction(InceptionBlock):
    """Inception-v3's grid-size reduction (Figure 10): stride-2 convolution
    branches and 3x3/2 max pooling of the input in parallel, concatenated.
    Unpadded, so an H x W grid becomes (H-3)//2+1 x (W-3)//2+1 (35 -> 17, 17 -> 8).

    Branches: [1x1 ->] 3x3/2 (the 1x1 reduction only if c3x3_reduce > 0);
    1x1 -> middle -> 3x3/2, where the middle is a 3x3 (n = 0) or 1xn -> nx1
    (n > 0); max pool 3x3/2. Every convolution Conv+BN+ReLU.
    Output channels c3x3 + cdbl + in_ch.

    The two modules of Inception-v3 (torchvision's InceptionB and InceptionD)
    are ``InceptionV3Reduction.grid_35_to_17()`` and ``.grid_17_to_8()``.

    Parameters
    ----------
    in_ch, c3x3, cdbl_reduce, cdbl : int
    c3x3_reduce : int
        0: the 3x3/2 convolution reads the input directly.
    cdbl_mid : int or None
        Width of the middle convolutions of the second branch (None: cdbl).
    n : int
        0: the middle is one 3x3; odd n > 0: 1xn then nx1.
    batch_norm, numerics, eps, momentum, dtype, rng : as InceptionV3A
    """

    def __init__(self, in_ch: int, c3x3: int, cdbl_reduce: int, cdbl: int, *, c3x3_reduce: int = 0,
                 cdbl_mid: int | None = None, n: int = 0, batch_norm: bool = True,
                 numerics: str = "standard", eps: float | None = V3_EPS,
                 momentum: float | str | None = "default", dtype: npt.DTypeLike = np.float32,
                 rng: int | np.random.Generator | None = None) -> None:
        cdbl_mid = cdbl if cdbl_mid is None else cdbl_mid
        _check_channels(("c3x3_reduce", "n"), in_ch=in_ch, c3x3=c3x3, cdbl_reduce=cdbl_reduce,
                        cdbl=cdbl, c3x3_reduce=c3x3_reduce, cdbl_mid=cdbl_mid, n=n)
        if n and n % 2 != 1:
            raise ValueError(f"n must be 0 or odd, got {n}")
        n = int(n)
        unit = _Units(batch_norm, numerics, eps, momentum, dtype, rng)
        first = ([unit(in_ch, c3x3_reduce, 1)] if c3x3_reduce else []) + \
            [unit(c3x3_reduce or in_ch, c3x3, 3, 2, 0)]
        middle = ([unit(cdbl_reduce, cdbl_mid, (1, n)), unit(cdbl_mid, cdbl_mid, (n, 1))] if n
                  else [unit(cdbl_reduce, cdbl_mid, 3)])
        second = [unit(in_ch, cdbl_reduce, 1), *middle, unit(cdbl_mid, cdbl, 3, 2, 0)]
        # torchvision's names: branch3x3 alone, or branch3x3_1 -> branch3x3_2 after
        # a reduction; the second branch's units numbered from _1
        first_names = ["branch3x3_1", "branch3x3_2"] if c3x3_reduce else ["branch3x3"]
        name = f"branch{n}x{n}x3" if n else "branch3x3dbl"
        second_names = [f"{name}_{i}" for i in range(1, len(second) + 1)]
        units = {**dict(zip(first_names, first)), **dict(zip(second_names, second)),
                 "pool": MaxPool2d(3, stride=2)}
        super().__init__(
            _wired(units, first_names, second_names, "pool"),
            {"#3x3 reduce": c3x3_reduce, "#3x3": c3x3,
             (f"#{n}x{n}x3 reduce" if n else "double #3x3 reduce"): cdbl_reduce,
             (f"#{n}x{n}x3" if n else "double #3x3"): (f"{cdbl_mid}>{cdbl}" if cdbl_mid != cdbl
                                                        else cdbl),
             "pool+proj": "max+pass through"},
            units.items())
        self.label = "reduction"

    @classmethod
    def grid_35_to_17(cls, in_ch: int = 288, **kwargs: Any) -> "InceptionV3Reduction":
        """Inception-v3's Mixed_6a (torchvision's InceptionB): 3x3/2 with 384
        filters; 1x1 64 -> 3x3 96 -> 3x3/2 96; max pool. 288 -> 768 channels."""
        return cls(in_ch, 384, 64, 96, **kwargs)

    @classmethod
    def grid_17_to_8(cls, in_ch: int = 768, **kwargs: Any) -> "InceptionV3Reduction":
        """Inception-v3's Mixed_7a (torchvision's InceptionD): 1x1 192 -> 3x3/2
        320; 1x1 192 -> 1x7 -> 7x1 -> 3x3/2 192; max pool. 768 -> 1280 channels."""
        return cls(in_ch, 320, 192, 192, c3x3_reduce=192, n=7, **kwargs)


# --- torchvision's input transform and adaptive pooling ---------------------

# ImageNet's per-channel mean and standard deviation, as torchvision normalizes
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TransformInput(Module):
    """torchvision's ``transform_input`` for its GoogLeNet and Inception3: x
    normalized with ImageNet's statistics, (image - mean) / std per channel,
    becomes (image - 0.5) / 0.5, the input the ported Google weights expect:

        y[:, c] = x[:, c] * (std[c] / 0.5) + (mean[c] - 0.5) / 0.5

    The scale and shift are computed in float64 and rounded to x's dtype, then
    one multiply and one add in that dtype (as torchvision's tensor-by-scalar
    arithmetic). x: (N, 3, H, W) float32 or float64.
    """

    _saved: Any = None

    def __init__(self) -> None:
        mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
        self.scale, self.shift = std / 0.5, (mean - 0.5) / 0.5

    def _coefficients(self, dtype):
        view = (1, 3, 1, 1)
        return self.scale.astype(dtype).reshape(view), self.shift.astype(dtype).reshape(view)

    def forward(self, x: Tensor) -> FloatArray:
        self._saved = None
        x = _float_array(x)
        self.output_shape(x.shape)
        scale, shift = self._coefficients(x.dtype)
        self._saved = (x.shape, x.dtype)
        return x * scale + shift

    def backward(self, dy: Tensor) -> FloatArray:
        shape, dtype = _need(self._saved, self)
        return _check_grad(dy, shape, dtype) * self._coefficients(dtype)[0]

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        shape = tuple(int(v) for v in input_shape)
        if len(shape) != 4 or shape[1] != 3:
            raise ValueError(f"TransformInput takes (N, 3, H, W) RGB inputs, got shape {shape}")
        return shape

    def macs(self, input_shape: Sequence[int]) -> int:
        return 0


class AdaptiveAvgPool2d(Module):
    """torch.nn.AdaptiveAvgPool2d: (N, C, H, W) -> (N, C, OH, OW), output cell
    (i, j) the mean of rows floor(i*H/OH) to ceil((i+1)*H/OH) - 1 and the
    columns alike (windows overlap when OH does not divide H: 14 -> 4 takes
    rows 0-3, 3-6, 7-10, 10-13). Computed as P_h @ x @ P_w.T with P holding
    1/window-length in each window, in x's dtype (NumPy; the windows' sums
    are small).

    Parameters
    ----------
    output_size : int or (OH, OW)
    """

    _saved: Any = None

    def __init__(self, output_size: int | tuple[int, int]) -> None:
        size: tuple[Any, ...] = (output_size, output_size) if np.isscalar(output_size) \
            else tuple(output_size)  # type: ignore[arg-type]
        if len(size) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer))
                                 or v < 1 for v in size):
            raise ValueError(f"output_size must be an int >= 1 or a pair of them, "
                             f"got {output_size!r}")
        self.output_size = (int(size[0]), int(size[1]))

    @staticmethod
    def _averaging(size, out, dtype):
        """(out, size) matrix: row i averages the input window of output i."""
        matrix = np.zeros((out, size))
        for i in range(out):
            start, stop = (i * size) // out, -(-((i + 1) * size) // out)
            matrix[i, start:stop] = 1.0 / (stop - start)
        return matrix.astype(dtype)

    def forward(self, x: Tensor) -> FloatArray:
        self._saved = None
        x = _float_array(x)
        self.output_shape(x.shape)
        rows = self._averaging(x.shape[2], self.output_size[0], x.dtype)
        cols = self._averaging(x.shape[3], self.output_size[1], x.dtype)
        self._saved = (x.shape, rows, cols)
        return np.ascontiguousarray(np.einsum("ih,nchw,jw->ncij", rows, x, cols))

    def backward(self, dy: Tensor) -> FloatArray:
        shape, rows, cols = _need(self._saved, self)
        dy = _check_grad(dy, shape[:2] + self.output_size, rows.dtype)
        return np.ascontiguousarray(np.einsum("ih,ncij,jw->nchw", rows, dy, cols))

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        shape = tuple(int(v) for v in input_shape)
        if len(shape) != 4 or min(shape[2:]) < 1:
            raise ValueError(f"AdaptiveAvgPool2d takes (N, C, H, W) inputs with H, W >= 1, "
                             f"got shape {shape}")
        return shape[:2] + self.output_size

    def macs(self, input_shape: Sequence[int]) -> int:
        return 0

    def _describe(self):
        return f"output_size={self.output_size}"


class Network(Module):
    """Named stages applied in order, with optional auxiliary classifiers
    that read the output of a stage.

    ``forward(x)`` returns the main logits; in training mode, a network with
    auxiliary heads returns ``(logits, [aux logits, ...])`` instead (as
    torchvision's GoogLeNet and Inception3), in eval mode the heads do not
    run. ``backward(dlogits, aux_grads)`` (or ``backward((dlogits,
    aux_grads))``) takes the loss gradient of each head's logits; weight the
    auxiliary losses in the loss (GoogLeNet: 0.3, Inception-v3: 0.4) and pass
    their gradients; None for a head skips it.

    macs() and summary() count every child, auxiliary heads included (the
    cost of a training forward); ``summary`` prints GoogLeNet's Table 1.

    Parameters
    ----------
    stages : list of (name, Module)
    aux : list of (name, stage name it reads, Module)
    """

    def __init__(self, stages: Sequence[tuple[str, Module]],
                 aux: Sequence[tuple[str, str, Module]] = ()) -> None:
        stages, aux = list(stages), list(aux)
        for i, stage in enumerate(stages):
            if not (isinstance(stage, tuple) and len(stage) == 2 and isinstance(stage[0], str)):
                raise TypeError(f"stages must be (name, Module) pairs; item {i} is {stage!r}")
        for i, head in enumerate(aux):
            if not (isinstance(head, tuple) and len(head) == 3 and isinstance(head[0], str)):
                raise TypeError(f"aux must be (name, stage name, Module) triples; item {i} is "
                                f"{head!r}")
        names = [name for name, _ in stages]
        all_names = names + [name for name, _, _ in aux]
        if len(set(all_names)) != len(all_names):
            raise ValueError(f"stage and head names must be unique, got {all_names}")
        for name, module in stages + [(name, module) for name, _, module in aux]:
            if not isinstance(module, Module):
                raise TypeError(f"stage {name!r} is {type(module).__name__}, not a Module")
        for name, tap, module in aux:
            if tap not in names:
                raise ValueError(f"auxiliary head {name!r} reads unknown stage {tap!r}")
        self.stages = stages
        self.aux = aux
        self._aux_ran = False

    def children(self) -> list[tuple[str, Module]]:
        return list(self.stages) + [(name, module) for name, _, module in self.aux]

    def __getitem__(self, name):
        for child_name, child in self.children():
            if child_name == name:
                return child
        raise KeyError(name)

    def forward(self, x: Tensor) -> FloatArray:
        return self._all_or_nothing(self._forward, x)

    def _forward(self, x):
        self._aux_ran = False
        run_aux = self.training and bool(self.aux)
        aux_out = {}
        for name, stage in self.stages:
            x = stage.forward(x)
            if run_aux:
                for aux_name, tap, head in self.aux:
                    if tap == name:
                        aux_out[aux_name] = head.forward(x)
        self._aux_ran = run_aux
        if run_aux:
            return x, [aux_out[name] for name, _, _ in self.aux]
        return x

    def _forget(self):
        self._aux_ran = False

    @overload
    def backward(self, dy: Tensor, aux_grads: Sequence[Tensor] | None = None) -> FloatArray: ...
    @overload
    def backward(self, dy: Tensor, aux_grads: Sequence[Tensor] | None = None, *,
                 input_grad: Literal[True]) -> FloatArray: ...
    @overload
    def backward(self, dy: Tensor, aux_grads: Sequence[Tensor] | None = None, *,
                 input_grad: bool) -> FloatArray | None: ...

    def backward(self, dy: Tensor, aux_grads: Sequence[Tensor] | None = None, *,
                 input_grad: bool = True) -> FloatArray | None:
        """dL/dx for the last forward, from the gradient of the logits (and
        of each auxiliary head's, see the class). ``input_grad=False``, for
        a caller that needs no dL/dx (a training step's images, which
        PyTorch does not differentiate either): returns None; the stages
        before the first one with parameters run no backward, and that one
        computes no dL/dx (a network's first convolution: its dL/dx is a
        product as large as its dL/dW). The parameters' gradients are the
        same."""
        input_grad = _input_grad_flag(input_grad)
        if isinstance(dy, tuple):
            if len(dy) != 2:
                raise ValueError(f"dy as a tuple must be (dlogits, aux_grads), got "
                                 f"{len(dy)} items")
            dy, aux_grads = dy
        if self._aux_ran:
            if aux_grads is None or len(aux_grads) != len(self.aux):
                raise ValueError(f"the forward ran {len(self.aux)} auxiliary heads; pass one "
                                 "gradient (or None) for each as aux_grads")
            grads = {name: grad for (name, _, _), grad in zip(self.aux, aux_grads)}
        elif aux_grads is not None and any(g is not None for g in aux_grads):
            raise ValueError("aux_grads given, but the auxiliary heads did not run "
                             "(eval mode or no heads)")
        else:
            grads = {}
        return self._all_or_nothing(self._backward, dy, grads, input_grad, forward=False)

    def _backward_parameters(self, dy):
        self.backward(dy, input_grad=False)

    def _backward(self, dy, grads, input_grad=True):
        first = 0 if input_grad else _first_learning_stage(
            [stage for _, stage in self.stages])
        for i in reversed(range(len(self.stages))):
            name, stage = self.stages[i]
            for aux_name, tap, head in self.aux:
                if tap == name and grads.get(aux_name) is not None:
                    if i < first:   # only stages without parameters below
                        head._backward_parameters(grads[aux_name])
                    else:
                        dy = dy + head.backward(grads[aux_name])
            if i > first or input_grad:
                dy = stage.backward(dy)
            elif i == first:
                stage._backward_parameters(dy)
        return dy if input_grad else None

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        for _, stage in self.stages:
            input_shape = stage.output_shape(input_shape)
        return tuple(input_shape)

    def _child_inputs(self, input_shape):
        pairs, outputs = [], {}
        for name, stage in self.stages:
            pairs.append((stage, tuple(input_shape)))
            input_shape = outputs[name] = stage.output_shape(input_shape)
        pairs += [(head, tuple(outputs[tap])) for _, tap, head in self.aux]
        return pairs

    def summary(self, input_shape: Sequence[int], file: TextIO | None = None) -> str:
        """The table of ``summary_table``: one row per stage and auxiliary head."""
        return summary_table(self, input_shape, file=file)


# --- the summary table ---------------------------------------------------

_KINDS = {"MaxPool2d": "max pool", "AvgPool2d": "avg pool", "GlobalAvgPool2d": "avg pool",
          "AdaptiveAvgPool2d": "adaptive avg pool", "Linear": "linear", "ReLU": "relu",
          "Flatten": "flatten", "Conv2d": "convolution", "BatchNorm2d": "batch norm",
          "Concat": "concat", "TransformInput": "input transform"}


def _sequence(module):
    """The layers of a Sequential or the stages of a Network, else None."""
    if isinstance(module, Sequential):
        return module.layers
    if isinstance(module, Network):
        return [stage for _, stage in module.stages]
    return None


def _kind(module):
    name = type(module).__name__
    if isinstance(module, InceptionBlock):
        return f"{module.label} ({name})"
    if name == "ConvBNReLU":
        return "conv+BN+ReLU" if module.batch_norm else "conv+ReLU"
    if name == "Dropout":
        return f"dropout ({module.p:.0%})"
    if _sequence(module) is not None:
        return " > ".join(_kind(layer) for layer in _sequence(module))
    return _KINDS.get(name, name)


def _geometry(module):
    """"7x7/2" for a convolution or pooling, "global" for global pooling."""
    if type(module).__name__ == "GlobalAvgPool2d":
        return "global"
    if isinstance(module, AdaptiveAvgPool2d):
        return "to {}x{}".format(*module.output_size)
    if type(module).__name__ == "ConvBNReLU":
        module = next(child for _, child in module.children()
                      if type(child).__name__ == "Conv2d")
    kernel = getattr(module, "kernel_size", None)
    if kernel is None:
        return ""
    (kh, kw), (sh, sw) = _pair(kernel), _pair(module.stride if module.stride else kernel)
    return f"{kh}x{kw}/{sh}" if sh == sw else f"{kh}x{kw}/{sh},{sw}"


def _patch(module):
    if _sequence(module) is not None:
        return " > ".join(filter(None, (_patch(layer) for layer in _sequence(module))))
    return _geometry(module)


def _size(shape):
    """Table 1's output size: "28x28x256" for (N, C, H, W), "1000" for (N, F)."""
    if len(shape) == 4:
        return f"{shape[2]}x{shape[3]}x{shape[1]}"
    return "x".join(str(s) for s in shape[1:])


def summary_table(module: Module, input_shape: Sequence[int], *,
                  file: TextIO | None = None) -> str:
    """Print (to file, default stdout) and return a table in the style of
    GoogLeNet's Table 1, one row per direct child of module: type,
    patch size/stride, output size (H x W x C, or features), the Inception
    columns where a child is an Inception block (filter counts; "pool+proj"
    as in the BN paper's Figure 5), weights (convolution and linear weights
    only), params (every learnable value: also biases and BN gamma/beta; not
    BN's running statistics) and MACs (multiply-accumulates of one forward of
    input_shape; pooling, BN, ReLU count 0). The last row holds the totals,
    which equal module.num_weights(), num_parameters() and macs(input_shape).
    """
    input_shape = tuple(input_shape)
    taps = {name: tap for name, tap, _ in getattr(module, "aux", ())}
    rows, columns = [], []
    for (name, child), (_, shape) in zip(module.children(), module._child_inputs(input_shape)):
        filters = child.columns() if isinstance(child, InceptionBlock) else {}
        columns += [key for key in filters if key not in columns]
        kind = f"aux classifier on {taps[name]}" if name in taps else _kind(child)
        rows.append([name, kind, _patch(child), _size(child.output_shape(shape)),
                     filters, f"{child.num_weights():,}", f"{child.num_parameters():,}",
                     f"{child.macs(shape):,}"])
    total = ["total", "", "", _size(module.output_shape(input_shape)), {},
             f"{module.num_weights():,}", f"{module.num_parameters():,}",
             f"{module.macs(input_shape):,}"]
    header = ["name", "type", "patch/stride", "output", *columns, "weights", "params", "MACs"]
    table = [header] + [row[:4] + [str(row[4].get(key, "")) for key in columns] + row[5:]
                        for row in rows + [total]]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    left = 4  # name, type, patch and output are left-aligned, numbers right-aligned
    lines = ["  ".join(cell.ljust(width) if i < left else cell.rjust(width)
                       for i, (cell, width) in enumerate(zip(row, widths))).rstrip()
             for row in table]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    lines.append(f"input {input_shape}; weights: convolution and linear weights only; "
                 "params: also biases and BN gamma/beta; MACs: multiply-accumulates of one "
                 "forward (pooling, BN and ReLU count 0)")
    text = "\n".join(lines)
    print(text, file=sys.stdout if file is None else file)
    return text


# --- networks --------------------------------------------------------------

def _stem_pool():
    """3x3/2 max pooling with Caffe's rounding up (112 -> 56 -> 28 -> 14 -> 7)."""
    return MaxPool2d(3, stride=2, ceil_mode=True)


def _classifier(unit, in_features, num_classes, dropout):
    head = [("avgpool", GlobalAvgPool2d())]
    if dropout:
        head.append(("dropout", unit.dropout(dropout)))
    return head + [("flatten", Flatten()), ("fc", unit.linear(in_features, num_classes))]


# GoogLeNet's Table 1: (name, in_ch, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj)
GOOGLENET_INCEPTIONS = [
    ("inception3a", 192, 64, 96, 128, 16, 32, 32),
    ("inception3b", 256, 128, 128, 192, 32, 96, 64),
    ("inception4a", 480, 192, 96, 208, 16, 48, 64),
    ("inception4b", 512, 160, 112, 224, 24, 64, 64),
    ("inception4c", 512, 128, 128, 256, 24, 64, 64),
    ("inception4d", 512, 112, 144, 288, 32, 64, 64),
    ("inception4e", 528, 256, 160, 320, 32, 128, 128),
    ("inception5a", 832, 256, 160, 320, 32, 128, 128),
    ("inception5b", 832, 384, 192, 384, 48, 128, 128),
]


def _input_stages(transform_input, in_channels):
    """[("transform_input", TransformInput())] when asked for (3 channels only)."""
    if not transform_input:
        return []
    if in_channels != 3:
        raise ValueError(f"transform_input re-normalizes RGB inputs: in_channels must be 3, "
                         f"got {in_channels!r}")
    return [("transform_input", TransformInput())]


def googlenet(num_classes: int = 1000, aux_logits: bool = False, *, variant: str = "paper",
              in_channels: int = 3, batch_norm: bool | None = None, numerics: str = "standard",
              eps: float | None = None, momentum: float | str | None = "default",
              dropout: float | None = None, transform_input: bool = False,
              dtype: npt.DTypeLike = np.float32, rng: int | np.random.Generator | None = 0,
              seed: int | None = None) -> Network:
    """GoogLeNet (Szegedy et al. 2014) with the filter counts of Table 1, for
    224x224 inputs.

    variant="paper" (default): stem 7x7/2 conv, 3x3/2 max pool, 1x1 and 3x3
    convs, 3x3/2 max pool (pools round up, as Caffe); Inception 3a-5b
    (``InceptionV1``) with 3x3/2 max pools after 3b and 4e; global average
    pool, dropout 40%, linear. The local response normalizations of the
    original are left out. Every convolution has ReLU; batch_norm=True adds BN.
    aux_logits=True adds the two auxiliary classifiers on the outputs of 4a
    and 4d (5x5/3 average pool, 1x1 conv 128, FC 1024 + ReLU, dropout 70%,
    linear).

    variant="torchvision": torchvision's GoogLeNet, its state_dict keys
    included (``load_state_dict`` takes its state as it is): every
    convolution Conv+BN(eps 1e-3)+ReLU, a 3x3 convolution in each module's
    third branch where the paper has the 5x5, a 2x2/2 ceil-mode max pool
    after 4e, global average pool, dropout 20%, linear; its auxiliary heads
    average-pool adaptively to 4x4 (torch's windows), then 1x1 conv 128
    (Conv+BN+ReLU), FC 1024 + ReLU, dropout 70%, linear.

    See ``Network`` for how forward and backward treat the auxiliary heads
    (a training forward returns ``(logits, [aux1, aux2])``; torchvision
    returns them as (logits, aux2, aux1)).

    Parameters
    ----------
    batch_norm : bool or None
        None: False for "paper", True for "torchvision".
    eps : float or None
        The BN's; None: 1e-3 for "torchvision", the numerics family's default
        for "paper".
    dropout : float or None
        Before the last linear layer; None: 0.4 ("paper"), 0.2 ("torchvision").
    transform_input : bool
        Start with ``TransformInput`` (torchvision's transform_input=True).

    Returns
    -------
    Network
    """
    rng = renamed_keyword("seed", seed, "rng", rng, 0)
    torchvision = _variant(variant)
    if batch_norm is None:
        batch_norm = torchvision
    if eps is None and torchvision:
        eps = TORCHVISION_EPS
    if dropout is None:
        dropout = 0.2 if torchvision else 0.4
    _check_network(num_classes, dropout, aux_logits)
    unit = _Units(batch_norm, numerics, eps, momentum, dtype, rng)
    stages = _input_stages(transform_input, in_channels)
    names = (("conv1", "maxpool1", "conv2", "conv3", "maxpool2", "maxpool3", "maxpool4")
             if torchvision else
             ("conv1", "pool1", "conv2_reduce", "conv2", "pool2", "pool3", "pool4"))
    stages += list(zip(names, [unit(in_channels, 64, 7, 2, 3), _stem_pool(), unit(64, 64, 1),
                               unit(64, 192, 3), _stem_pool()]))
    for name, *counts in GOOGLENET_INCEPTIONS:
        stages.append((name, InceptionV1(*counts, variant=variant, batch_norm=batch_norm,
                                         numerics=numerics, eps=eps, momentum=momentum,
                                         dtype=dtype, rng=unit.rng)))
        if name == "inception3b":
            stages.append((names[5], _stem_pool()))
        elif name == "inception4e":
            stages.append((names[6], MaxPool2d(2, stride=2, ceil_mode=True) if torchvision
                           else _stem_pool()))
    if torchvision:
        stages += [("avgpool", GlobalAvgPool2d()), ("flatten", Flatten()),
                   ("dropout", unit.dropout(dropout)), ("fc", unit.linear(1024, num_classes))]
    else:
        stages += _classifier(unit, 1024, num_classes, dropout)
    aux = []
    if aux_logits:
        for aux_name, tap, in_ch in (("aux1", "inception4a", 512), ("aux2", "inception4d", 528)):
            head: Module
            if torchvision:
                head = Network([("avgpool", AdaptiveAvgPool2d(4)), ("conv", unit(in_ch, 128, 1)),
                                ("flatten", Flatten()), ("fc1", unit.linear(128 * 4 * 4, 1024)),
                                ("relu", ReLU()), ("dropout", unit.dropout(0.7)),
                                ("fc2", unit.linear(1024, num_classes))])
            else:
                head = Sequential(AvgPool2d(5, stride=3), unit(in_ch, 128, 1), Flatten(),
                                  unit.linear(128 * 4 * 4, 1024), ReLU(), unit.dropout(0.7),
                                  unit.linear(1024, num_classes))
            aux.append((aux_name, tap, head))
    return Network(stages, aux)


# The BN paper's Figure 5: (name, in_ch, #1x1, #3x3 reduce, #3x3, double #3x3 reduce,
# double #3x3, pool proj (0: pass through), pool, stride). Its "depth" column says
# 576 channels after 4c and 4d, but the filter counts give 608 (160 + 160 + 160 + 128),
# so 4d reads 608 and 4e gives 192 + 256 + 608 = 1056, as the published Caffe model.
BN_INCEPTIONS = [
    ("inception3a", 192, 64, 64, 64, 64, 96, 32, "avg", 1),
    ("inception3b", 256, 64, 64, 96, 64, 96, 64, "avg", 1),
    ("inception3c", 320, 0, 128, 160, 64, 96, 0, "max", 2),
    ("inception4a", 576, 224, 64, 96, 96, 128, 128, "avg", 1),
    ("inception4b", 576, 192, 96, 128, 96, 128, 128, "avg", 1),
    ("inception4c", 576, 160, 128, 160, 128, 160, 128, "avg", 1),
    ("inception4d", 608, 96, 128, 192, 160, 192, 128, "avg", 1),
    ("inception4e", 608, 0, 128, 192, 192, 256, 0, "max", 2),
    ("inception5a", 1056, 352, 192, 320, 160, 224, 128, "avg", 1),
    ("inception5b", 1024, 352, 192, 320, 192, 224, 128, "max", 1),
]


def bn_inception(num_classes: int = 1000, *, in_channels: int = 3, batch_norm: bool = True,
                 numerics: str = "standard", eps: float | None = None,
                 momentum: float | str | None = "default", dropout: float = 0.0,
                 dtype: npt.DTypeLike = np.float32, rng: int | np.random.Generator | None = 0,
                 seed: int | None = None) -> Network:
    """BN-Inception (Ioffe & Szegedy 2015, Figure 5), for 224x224 inputs.

    Stem 7x7/2 conv (a plain convolution; the paper marks it as
    depthwise-separable), 3x3/2 max pool, 1x1 64 and 3x3 192 convs, 3x3/2 max
    pool; Inception 3a-5b (3c and 4e the stride-2 modules); global average
    pool, linear. Every convolution Conv+BN+ReLU (batch_norm=False: conv with
    bias + ReLU). No dropout by default, as the paper removed it.
    """
    _check_network(num_classes, dropout)
    rng = renamed_keyword("seed", seed, "rng", rng, 0)
    unit = _Units(batch_norm, numerics, eps, momentum, dtype, rng)
    stages = [("conv1", unit(in_channels, 64, 7, 2, 3)), ("pool1", _stem_pool()),
              ("conv2_reduce", unit(64, 64, 1)), ("conv2", unit(64, 192, 3)),
              ("pool2", _stem_pool())]
    for name, *counts, pool, stride in BN_INCEPTIONS:
        stages.append((name, InceptionBN(*counts, pool=pool, stride=stride,
                                         batch_norm=batch_norm, numerics=numerics, eps=eps,
                                         momentum=momentum, dtype=dtype, rng=unit.rng)))
    return Network(stages + _classifier(unit, 1024, num_classes, dropout))


def inception_v3(num_classes: int = 1000, aux_logits: bool = False, *, in_channels: int = 3,
                 batch_norm: bool = True, numerics: str = "standard", eps: float | None = V3_EPS,
                 momentum: float | str | None = "default", dropout: float = 0.5,
                 transform_input: bool = False, dtype: npt.DTypeLike = np.float32,
                 rng: int | np.random.Generator | None = 0, seed: int | None = None) -> Network:
    """Inception-v3 (Szegedy et al. 2016) as torchvision's inception_v3 (the
    released TF model), its state_dict keys included (``load_state_dict``
    takes torchvision's state as it is), for 299x299 inputs: 299 -> 149 ->
    147 -> 73 -> 71 -> 35 (Mixed_5b-5d) -> 17 (6a-6e) -> 8 (7a-7c) -> global
    average pool, dropout, linear 2048 -> num_classes. Every convolution
    Conv+BN(eps 1e-3)+ReLU.

    aux_logits=True adds the auxiliary classifier on Mixed_6e (5x5/3 average
    pool, 1x1 conv 128, 5x5 conv 768, global average pool, linear), see
    ``Network``. Parameter counts: 23,834,568 without, 27,161,264 with it
    (torchvision's model, 1000 classes). transform_input=True starts with
    ``TransformInput`` (torchvision's transform_input=True).
    """
    _check_network(num_classes, dropout, aux_logits)
    rng = renamed_keyword("seed", seed, "rng", rng, 0)
    unit = _Units(batch_norm, numerics, eps, momentum, dtype, rng)
    kw: dict[str, Any] = dict(batch_norm=batch_norm, numerics=numerics, eps=eps,
                              momentum=momentum, dtype=dtype, rng=unit.rng)
    stages = _input_stages(transform_input, in_channels) + [
        ("Conv2d_1a_3x3", unit(in_channels, 32, 3, 2, 0)),
        ("Conv2d_2a_3x3", unit(32, 32, 3, 1, 0)),
        ("Conv2d_2b_3x3", unit(32, 64, 3)),
        ("maxpool1", MaxPool2d(3, stride=2)),
        ("Conv2d_3b_1x1", unit(64, 80, 1)),
        ("Conv2d_4a_3x3", unit(80, 192, 3, 1, 0)),
        ("maxpool2", MaxPool2d(3, stride=2)),
        ("Mixed_5b", InceptionV3A(192, 32, **kw)),
        ("Mixed_5c", InceptionV3A(256, 64, **kw)),
        ("Mixed_5d", InceptionV3A(288, 64, **kw)),
        ("Mixed_6a", InceptionV3Reduction.grid_35_to_17(288, **kw)),
        ("Mixed_6b", InceptionV3B(768, 128, **kw)),
        ("Mixed_6c", InceptionV3B(768, 160, **kw)),
        ("Mixed_6d", InceptionV3B(768, 160, **kw)),
        ("Mixed_6e", InceptionV3B(768, 192, **kw)),
        ("Mixed_7a", InceptionV3Reduction.grid_17_to_8(768, **kw)),
        ("Mixed_7b", InceptionV3C(1280, **kw)),
        ("Mixed_7c", InceptionV3C(2048, **kw))]
    stages += _classifier(unit, 2048, num_classes, dropout)
    aux = []
    if aux_logits:
        aux.append(("AuxLogits", "Mixed_6e",
                    Network([("avgpool5x5", AvgPool2d(5, stride=3)),
                             ("conv0", unit(768, 128, 1)), ("conv1", unit(128, 768, 5, 1, 0)),
                             ("avgpool", GlobalAvgPool2d()), ("flatten", Flatten()),
                             ("fc", unit.linear(768, num_classes))])))
    return Network(stages, aux)


def small_inception(num_classes: int = 10, *, in_channels: int = 1, width: int = 16,
                    batch_norm: bool = True, numerics: str = "standard",
                    dtype: npt.DTypeLike = np.float32, rng: int | np.random.Generator | None = 0,
                    eps: float | None = None, momentum: float | str | None = "default",
                    seed: int | None = None) -> Network:
    """A small BN-Inception network for 8x8 images (scikit-learn's digits).

    With w = width: stem Conv+BN+ReLU 3x3 w (8x8); InceptionBN with branches of
    w (4w channels, 8x8); stride-2 InceptionBN (8x8 -> 4x4, 8w channels);
    InceptionBN with branches of 2w (8w channels, 4x4); global average pool;
    linear 8w -> num_classes. batch_norm=False gives the same convolutions
    with biases and no BN, for comparing training with and without BN.
    """
    if isinstance(width, (bool, np.bool_)) or not isinstance(width, (int, np.integer)) \
            or width < 2:
        raise ValueError(f"width must be an int >= 2, got {width!r}")
    w = int(width)
    _check_network(num_classes, 0.0)
    rng = renamed_keyword("seed", seed, "rng", rng, 0)
    unit = _Units(batch_norm, numerics, eps, momentum, dtype, rng)
    kw: dict[str, Any] = dict(batch_norm=batch_norm, numerics=numerics, eps=eps,
                              momentum=momentum, dtype=dtype, rng=unit.rng)
    stages = [("stem", unit(in_channels, w, 3)),
              ("inception1", InceptionBN(w, w, w, w, w, w, w, **kw)),
              ("inception2", InceptionBN(4 * w, 0, w, 2 * w, w, 2 * w, 0, stride=2, **kw)),
              ("inception3", InceptionBN(8 * w, 2 * w, 2 * w, 2 * w, 2 * w, 2 * w, 2 * w, **kw))]
    return Network(stages + _classifier(unit, 8 * w, num_classes, 0.0))


__all__ = ["AdaptiveAvgPool2d", "InceptionBN", "InceptionBlock", "InceptionV1", "InceptionV1Naive",
           "InceptionV3A", "InceptionV3B", "InceptionV3C", "InceptionV3Reduction", "Network",
           "TransformInput", "bn_inception", "googlenet", "inception_v3", "small_inception",
           "summary_table"]
