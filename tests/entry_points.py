"""The public entry points as a table, for the generated tests of
tests/test_aliasing.py and tests/test_bad_input.py.

An Entry builds a valid call of one entry point from arrays named as its
error messages name them, makes the call, and says which of those arrays the
call writes, which written one may be which input itself (the documented
in-place modes) and which scalar arguments it takes. For a backward, the
arrays its forward saved (x, x_norm, mean, invstd, variance, weight, bias)
are arguments like the others: the call builds the BatchNormSaved from them.
"""
import dataclasses
from typing import Callable

import numpy as np

import bnkernels
from bnkernels import _kernels, darknet
from bnkernels.batchnorm import BatchNormSaved
from bnkernels.distributed import SyncBatchNorm2d

N, C, H, W = 2, 3, 4, 4
SHAPE = (N, C, H, W)
F64 = np.dtype(np.float64)


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    build: Callable            # (dtype, rng) -> {name: ndarray}
    call: Callable             # (arrays, **scalars) -> {result name: ndarray}
    written: tuple = ()        # the arrays the call writes
    in_place: tuple = ()       # (written, input) pairs: written may be input itself
    scalars: dict = dataclasses.field(default_factory=dict)  # name -> "eps"/"momentum"


def tensor(dtype, rng, shape=SHAPE):
    return rng.standard_normal(shape).astype(dtype)


def vector(dtype, rng, low=-1.0, high=1.0):
    return rng.uniform(low, high, C).astype(dtype)


def _arrays(**makers):
    """A build function: each keyword is (kind, dtype_or_None) where kind is
    "t" (x-shaped tensor), "v" (per-channel vector), "p" (positive vector);
    None means the x dtype."""
    def build(dtype, rng):
        arrays = {}
        for name, (kind, own) in makers.items():
            d = dtype if own is None else own
            arrays[name] = (tensor(d, rng) if kind == "t" else
                            vector(d, rng, 0.5, 2.0) if kind == "p" else vector(d, rng))
        return arrays
    return build


T, V, P = ("t", None), ("v", None), ("p", None)
V64, P64 = ("v", F64), ("p", F64)


def _out(result):
    return {"out": result}


ENTRIES = [
    # --- bnkernels.darknet ---------------------------------------------------
    Entry("darknet.mean_cpu", _arrays(x=T, out=V),
          lambda a: _out(darknet.mean_cpu(a["x"], out=a["out"])), ("out",)),
    Entry("darknet.variance_cpu", _arrays(x=T, mean=V, out=V),
          lambda a: _out(darknet.variance_cpu(a["x"], a["mean"], out=a["out"])), ("out",)),
    Entry("darknet.normalize_cpu", _arrays(x=T, mean=V, variance=P, out=T),
          lambda a, **s: _out(darknet.normalize_cpu(a["x"], a["mean"], a["variance"],
                                                    out=a["out"], **s)),
          ("out",), (("out", "x"),), {"eps": "eps"}),
    Entry("darknet.scale_bias", _arrays(x=T, scales=V, out=T),
          lambda a: _out(darknet.scale_bias(a["x"], a["scales"], out=a["out"])),
          ("out",), (("out", "x"),)),
    Entry("darknet.add_bias", _arrays(x=T, biases=V, out=T),
          lambda a: _out(darknet.add_bias(a["x"], a["biases"], out=a["out"])),
          ("out",), (("out", "x"),)),
    Entry("darknet.scale_add_bias", _arrays(x=T, scales=V, biases=V, out=T),
          lambda a: _out(darknet.scale_add_bias(a["x"], a["scales"], a["biases"],
                                                out=a["out"])),
          ("out",), (("out", "x"),)),
    Entry("darknet.rolling_update", _arrays(rolling=V, stat=V),
          lambda a, **s: {"rolling": darknet.rolling_update(a["rolling"], a["stat"], **s)},
          ("rolling",), (), {"momentum": "momentum"}),
    Entry("darknet.backward_bias", _arrays(delta=T, out=V),
          lambda a: _out(darknet.backward_bias(a["delta"], out=a["out"])), ("out",)),
    Entry("darknet.backward_bias(accumulate)", _arrays(delta=T, out=V),
          lambda a: _out(darknet.backward_bias(a["delta"], out=a["out"], accumulate=True)),
          ("out",)),
    Entry("darknet.backward_scale_cpu", _arrays(x_norm=T, delta=T, out=V),
          lambda a: _out(darknet.backward_scale_cpu(a["x_norm"], a["delta"], out=a["out"])),
          ("out",)),
    Entry("darknet.backward_scale_cpu(accumulate)", _arrays(x_norm=T, delta=T, out=V),
          lambda a: _out(darknet.backward_scale_cpu(a["x_norm"], a["delta"], out=a["out"],
                                                    accumulate=True)),
          ("out",)),
    Entry("darknet.mean_delta_cpu", _arrays(delta=T, variance=P, out=V),
          lambda a, **s: _out(darknet.mean_delta_cpu(a["delta"], a["variance"], out=a["out"],
                                                     **s)),
          ("out",), (), {"eps": "eps"}),
    Entry("darknet.variance_delta_cpu", _arrays(x=T, delta=T, mean=V, variance=P, out=V),
          lambda a, **s: _out(darknet.variance_delta_cpu(
              a["x"], a["delta"], a["mean"], a["variance"], out=a["out"], **s)),
          ("out",), (), {"eps": "eps"}),
    Entry("darknet.normalize_delta_cpu",
          _arrays(x=T, mean=V, variance=P, mean_delta=V, variance_delta=V, delta=T, out=T),
          lambda a, **s: _out(darknet.normalize_delta_cpu(
              a["x"], a["mean"], a["variance"], a["mean_delta"], a["variance_delta"],
              a["delta"], out=a["out"], **s)),
          ("out",), (("out", "delta"),), {"eps": "eps"}),
    Entry("darknet.backward_batchnorm_layer",
          _arrays(x=T, x_norm=T, delta=T, mean=V, variance=P, scales=V, out=T),
          lambda a, **s: dict(zip(("out", "scale_updates", "bias_updates"),
                                  darknet.backward_batchnorm_layer(
                                      a["x"], a["x_norm"], a["delta"], a["mean"],
                                      a["variance"], a["scales"], out=a["out"], **s))),
          ("out",), (("out", "delta"),), {"eps": "eps"}),
    # the -Ofast builds: other kernels behind the same checks
    *[entry for build in ("ofast", "ofast-avx") for entry in (
        Entry(f"darknet.backward_bias[{build}]", _arrays(delta=T, out=V),
              lambda a, b=build: _out(darknet.backward_bias(a["delta"], out=a["out"],
                                                            build=b)),
              ("out",)),
        Entry(f"darknet.backward_scale_cpu[{build}]", _arrays(x_norm=T, delta=T, out=V),
              lambda a, b=build: _out(darknet.backward_scale_cpu(
                  a["x_norm"], a["delta"], out=a["out"], accumulate=True, build=b)),
              ("out",)),
        Entry(f"darknet.normalize_delta_cpu[{build}]",
              _arrays(x=T, mean=V, variance=P, mean_delta=V, variance_delta=V, delta=T,
                      out=T),
              lambda a, b=build, **s: _out(darknet.normalize_delta_cpu(
                  a["x"], a["mean"], a["variance"], a["mean_delta"], a["variance_delta"],
                  a["delta"], out=a["out"], build=b, **s)),
              ("out",), (("out", "delta"),), {"eps": "eps"}),
        Entry(f"darknet.backward_batchnorm_layer[{build}]",
              _arrays(x=T, x_norm=T, delta=T, mean=V, variance=P, scales=V, out=T),
              lambda a, b=build, **s: dict(zip(("out", "scale_updates", "bias_updates"),
                                               darknet.backward_batchnorm_layer(
                                                   a["x"], a["x_norm"], a["delta"], a["mean"],
                                                   a["variance"], a["scales"], out=a["out"],
                                                   numerics="darknet-alexeyab", build=b,
                                                   **s))),
              ("out",), (("out", "delta"),), {"eps": "eps"}))],
    # no array written: scalars only
    Entry("darknet.to_standard", _arrays(scales=V, biases=V, rolling_mean=V, rolling_variance=P),
          lambda a, **s: dict(zip(("weight", "bias", "running_mean", "running_var"),
                                  darknet.to_standard(a["scales"], a["biases"], a["rolling_mean"],
                                                      a["rolling_variance"], **s)[:4])),
          scalars={"eps": "eps"}),
    Entry("darknet.from_standard", _arrays(weight=V, bias=V, running_mean=V, running_var=P),
          lambda a, **s: dict(zip(("scales", "biases", "rolling_mean", "rolling_variance"),
                                  darknet.from_standard(a["weight"], a["bias"], a["running_mean"],
                                                        a["running_var"], **s)[:4])),
          scalars={"eps": "eps"}),
    # --- bnkernels._kernels: the building blocks of SyncBatchNorm2d -------------
    Entry("_kernels.normalize_affine",
          _arrays(x=T, mean=V64, invstd=P64, weight=V, bias=V, out=T),
          lambda a: _out(_kernels.normalize_affine(a["x"], a["mean"], a["invstd"], a["weight"],
                                                   a["bias"], a["out"])),
          ("out",), (("out", "x"),)),
    Entry("_kernels.backward_dx",
          _arrays(dy=T, x=T, mean=V64, invstd=P64, weight=V, bias=V, sum_dy=V64,
                  sum_dy_xhat=V64, out=T),
          lambda a: _out(_kernels.backward_dx(a["dy"], a["x"], a["mean"], a["invstd"],
                                              a["weight"], a["sum_dy"], a["sum_dy_xhat"],
                                              a["out"], bias=a["bias"])),
          ("out",), (("out", "dy"),)),
    Entry("_kernels.rolling_update",
          _arrays(mean=V64, var=P64, running_mean=V, running_var=P),
          lambda a, momentum=0.1: _kernels.rolling_update(
              momentum, N * H * W, a["mean"], a["var"], a["running_mean"],
              a["running_var"]) or {},
          ("running_mean", "running_var"), (), {"momentum": "momentum"}),
    Entry("_kernels.invstd", _arrays(var=P64),
          lambda a, eps=1e-5: {"invstd": _kernels.invstd(a["var"], eps)},
          scalars={"eps": "eps"}),
]


# --- convolution and pooling helpers (bnkernels._kernels, the layers' kernels) -

KERNEL, STRIDE, PAD = 3, 1, 1  # (N, C, 4, 4) -> 4x4 windows; pools 2x2 of stride 2


def _conv_pool_arrays(dtype, rng):
    x = tensor(dtype, rng)
    cols_shape = (N, C * KERNEL * KERNEL, H * W)
    pooled = (N, C, H // 2, W // 2)
    _, indices = _kernels.max_pool2d_forward(x, 2, 2, 0)
    # outputs hold a known value, not np.empty's leftovers: a test casts them
    # to another dtype, and a leftover signalling NaN warns there
    return {"x": x, "cols": rng.standard_normal(cols_shape).astype(dtype),
            "cols_out": np.full(cols_shape, -7, dtype), "x_out": np.full(SHAPE, -7, dtype),
            "y": np.full(pooled, -7, dtype), "indices": indices,
            "indices_out": np.full(pooled, -7, np.int64),
            "dy": rng.standard_normal(pooled).astype(dtype)}


def _pick(*names, rename=None):
    """A build function: the named arrays of _conv_pool_arrays, renamed as the
    entry point's messages name them (rename: {ours: its})."""
    rename = rename or {}

    def build(dtype, rng):
        arrays = _conv_pool_arrays(dtype, rng)
        return {rename.get(name, name): arrays[name] for name in names}
    return build


ENTRIES += [
    Entry("_kernels.im2col", _pick("x", "cols_out", rename={"cols_out": "out"}),
          lambda a: _out(_kernels.im2col(a["x"], KERNEL, STRIDE, PAD, out=a["out"])),
          ("out",)),
    Entry("_kernels.col2im", _pick("cols", "x_out", rename={"x_out": "out"}),
          lambda a: _out(_kernels.col2im(a["cols"], SHAPE, KERNEL, STRIDE, PAD,
                                         out=a["out"])),
          ("out",)),
    Entry("_kernels.max_pool2d_forward",
          _pick("x", "y", "indices_out", rename={"y": "out", "indices_out": "indices"}),
          lambda a: dict(zip(("out", "indices"), _kernels.max_pool2d_forward(
              a["x"], 2, 2, 0, out=a["out"], indices=a["indices"]))),
          ("out", "indices")),
    Entry("_kernels.max_pool2d_backward", _pick("dy", "indices", "x_out",
                                                rename={"x_out": "out"}),
          lambda a: _out(_kernels.max_pool2d_backward(a["dy"], a["indices"], SHAPE,
                                                      out=a["out"])),
          ("out",)),
    Entry("_kernels.avg_pool2d_forward", _pick("x", "y", rename={"y": "out"}),
          lambda a: _out(_kernels.avg_pool2d_forward(a["x"], 2, 2, 0, out=a["out"])),
          ("out",)),
    Entry("_kernels.avg_pool2d_backward", _pick("dy", "x_out", rename={"x_out": "out"}),
          lambda a: _out(_kernels.avg_pool2d_backward(a["dy"], SHAPE, 2, 2, 0,
                                                      out=a["out"])),
          ("out",)),
    Entry("_kernels._relu_backward", _arrays(dy=T, x=T, out=T),
          lambda a: _out(_kernels._relu_backward(a["dy"], a["x"], out=a["out"])),
          ("out",), (("out", "dy"),)),
]


# --- bnkernels.batch_norm_forward / batch_norm_backward ----------------------

def _forward_entry(numerics, training, activation, layout="NCHW"):
    nhwc = layout == "NHWC"
    x_shape = (N, H, W, C) if nhwc else SHAPE
    darknet_training = numerics != "standard" and training

    def build(dtype, rng):
        arrays = {"x": tensor(dtype, rng, x_shape), "weight": vector(dtype, rng),
                  "bias": vector(dtype, rng), "running_mean": vector(dtype, rng),
                  "running_var": vector(dtype, rng, 0.5, 2.0),
                  "out": tensor(dtype, rng, x_shape)}
        if darknet_training:
            arrays["workspace"] = tensor(dtype, rng, x_shape)
        return arrays

    def call(a, **scalars):
        y, saved = bnkernels.batch_norm_forward(
            a["x"], a["weight"], a["bias"], a["running_mean"], a["running_var"],
            training=training, numerics=numerics, activation=activation, out=a["out"],
            workspace=a.get("workspace"), layout=layout, **scalars)
        results = {"y": y}
        for name in ("mean", "invstd", "variance", "x_norm"):
            if getattr(saved, name) is not None:
                results[name] = getattr(saved, name)
        return results

    written = ("out",) + (("workspace",) if darknet_training else ()) + (
        ("running_mean", "running_var") if training else ())
    return Entry(f"batch_norm_forward[{numerics},{'train' if training else 'eval'},"
                 f"{activation},{layout}]", build, call, written, (("out", "x"),),
                 {"eps": "eps", "momentum": "momentum"})


def _backward_entry(numerics, training, activation):
    relu = activation == "relu"

    def build(dtype, rng):
        x = tensor(dtype, rng)
        _, saved = bnkernels.batch_norm_forward(
            x, vector(dtype, rng), vector(dtype, rng), vector(dtype, rng),
            vector(dtype, rng, 0.5, 2.0), training=training, numerics=numerics,
            activation=activation)
        arrays = {"dy": tensor(dtype, rng), "out": tensor(dtype, rng)}
        for name in ("x", "x_norm", "mean", "invstd", "variance", "weight", "bias"):
            if getattr(saved, name) is not None:
                arrays[name] = getattr(saved, name).copy()
        return arrays

    def call(a):
        saved = BatchNormSaved(numerics, training, a["x"], a["weight"], a["bias"], a["mean"],
                               invstd=a.get("invstd"), variance=a.get("variance"),
                               x_norm=a.get("x_norm"), relu=relu)
        dx, dweight, dbias = bnkernels.batch_norm_backward(a["dy"], saved, out=a["out"])
        return {"dx": dx, "dweight": dweight, "dbias": dbias}

    return Entry(f"batch_norm_backward[{numerics},{'train' if training else 'eval'},"
                 f"{activation}]", build, call, ("out",), (("out", "dy"),))


# --- the layers: their state arrays are arguments too ------------------------

def _layer(cls, numerics, dtype, **kwargs):
    extra = {} if cls is SyncBatchNorm2d else {"numerics": numerics}
    return cls(C, dtype=dtype, **extra, **kwargs)


def _layer_forward_entry(cls, numerics, training):
    def call(a, **scalars):
        layer = _layer(cls, numerics, a["x"].dtype, **scalars)
        for name in ("weight", "bias", "running_mean", "running_var"):
            setattr(layer, name, a[name])
        return {"y": layer.forward(a["x"], training=training)}

    return Entry(f"{cls.__name__}.forward[{numerics},{'train' if training else 'eval'}]",
                 _arrays(x=T, weight=V, bias=V, running_mean=V, running_var=P), call,
                 ("running_mean", "running_var") if training else (), (),
                 {"eps": "eps", "momentum": "momentum"})


def _layer_backward_entry(cls, numerics, activation):
    def call(a):
        layer = _layer(cls, numerics, a["x"].dtype, track_running_stats=False,
                       activation=activation)
        for name in ("weight", "bias", "grad_weight", "grad_bias"):
            setattr(layer, name, a[name])
        layer.forward(a["x"])
        return {"dx": layer.backward(a["dy"])}

    return Entry(f"{cls.__name__}.backward[{numerics},{activation}]",
                 _arrays(x=T, dy=T, weight=V, bias=V, grad_weight=V, grad_bias=V), call,
                 ("grad_weight", "grad_bias"))


for _numerics in bnkernels.NUMERICS:
    for _training in (True, False):
        for _activation in (None, "relu"):
            ENTRIES.append(_forward_entry(_numerics, _training, _activation))
        if _training or _numerics == "standard":
            for _activation in (None, "relu"):
                ENTRIES.append(_backward_entry(_numerics, _training, _activation))
        ENTRIES.append(_layer_forward_entry(bnkernels.BatchNorm2d, _numerics, _training))
    for _activation in (None, "relu"):
        ENTRIES.append(_layer_backward_entry(bnkernels.BatchNorm2d, _numerics, _activation))
ENTRIES.append(_forward_entry("standard", True, None, "NHWC"))
for _training in (True, False):
    ENTRIES.append(_layer_forward_entry(SyncBatchNorm2d, "standard", _training))
ENTRIES.append(_layer_backward_entry(SyncBatchNorm2d, "standard", None))


def _fold(a, **scalars):
    weight, bias = bnkernels.fold_batchnorm(
        a["conv_weight"], a["conv_bias"], weight=a["weight"], bias=a["bias"],
        running_mean=a["running_mean"], running_var=a["running_var"], **scalars)
    return {"weight": weight, "bias": bias}


def _fold_build(dtype, rng):
    arrays = _arrays(conv_bias=V, weight=V, bias=V, running_mean=V, running_var=P)(dtype, rng)
    arrays["conv_weight"] = tensor(dtype, rng, (C, 2, 3, 3))
    return arrays


ENTRIES.append(Entry("fold_batchnorm", _fold_build, _fold, scalars={"eps": "eps"}))

BY_NAME = {entry.name: entry for entry in ENTRIES}
