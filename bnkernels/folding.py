"""Folding inference batch norm into the convolution before it.

In eval mode a BN layer is a per-channel affine map, y = a * (z - mean) + beta
with a = gamma / divisor, so a convolution z = conv(x, W) + b followed by it is
one convolution with W'[o] = a[o] * W[o] and b'[o] = a[o] * (b[o] - mean[o]) +
beta[o]. The divisor follows the numerics family: ``sqrt(var + eps)``
(standard, darknet-alexeyab) or ``sqrt(var) + eps`` (darknet, pjreddie's CPU
layer).
"""
import numpy as np

from bnkernels import darknet
from bnkernels._typing import FloatArray
from bnkernels.batchnorm import BatchNorm, check_layout, check_numerics, defaults

__all__ = ["fold_batchnorm"]


def fold_batchnorm(conv_weight: FloatArray, conv_bias: FloatArray | None,
                   bn: BatchNorm | None = None, *, weight: FloatArray | None = None,
                   bias: FloatArray | None = None, running_mean: FloatArray | None = None,
                   running_var: FloatArray | None = None, eps: float | None = None,
                   numerics: str | None = None, layout: str = "NCHW"
                   ) -> tuple[FloatArray, FloatArray]:
    """Fold an eval-mode batch norm into the convolution that feeds it.

    Returns ``(W', b')`` such that ``conv(x, W', b') == bn_eval(conv(x, W,
    b))`` for every x, up to rounding. The BN is given either as a layer
    (``bn``: a bnkernels BatchNorm layer, whose running statistics, affine
    parameters, eps and numerics are used) or as arrays (``running_mean``,
    ``running_var`` and optionally ``weight``, ``bias``, ``eps``,
    ``numerics``), not both. The computation is in float64 and the results are
    rounded once to conv_weight's dtype. A layer's ``activation`` is not
    folded: apply it after the folded convolution.

    Parameters
    ----------
    conv_weight : ndarray, (out_ch, in_ch, *kernel), float32 or float64
        W of a convolution of any rank, or (out_ch, in_ch) of a linear layer
        (PyTorch's, ONNX's and Darknet's order). With ``layout="NHWC"`` the
        output channels are the last axis instead: (*kernel, in_ch, out_ch),
        as Keras, TensorFlow and Flax store kernels. Not modified.
    conv_bias : ndarray, (out_ch,), conv_weight's dtype, or None
        b; None means no bias (0). The folded bias b' is returned either way:
        the BN's shift does not vanish without a conv bias.
    bn : BatchNorm (BatchNorm1d, BatchNorm2d, BatchNorm3d, ...), optional
        With ``num_features == out_ch`` and running statistics
        (``track_running_stats=True``). ``affine=False`` means gamma = 1,
        beta = 0.
    weight, bias : ndarray, (out_ch,), float32 or float64, optional
        gamma and beta when bn is not given; None means 1 and 0.
    running_mean, running_var : ndarray, (out_ch,), float32 or float64
        Required when bn is not given. The four BN arrays share one dtype,
        which may differ from conv_weight's.
    eps : float, optional
        None takes the numerics' default (see bnkernels.defaults).
    numerics : {"standard", "darknet", "darknet-alexeyab", "darknet-ofast", "darknet-alexeyab-ofast", "darknet-alexeyab-ofast-avx"}, optional
        Where eps goes, as in batch_norm_forward; None means "standard".
    layout : {"NCHW", "NHWC"}
        Which axis of conv_weight holds the output channels: the first
        ("NCHW", channels-first networks) or the last ("NHWC").

    Returns
    -------
    weight : ndarray, conv_weight's shape and dtype
    bias : ndarray, (out_ch,), conv_weight's dtype
    """
    last = check_layout(layout)
    conv_weight, conv_bias = _check_conv(conv_weight, conv_bias, last)
    out_ch = conv_weight.shape[-1 if last else 0]
    given = {name: value for name, value in (
        ("weight", weight), ("bias", bias), ("running_mean", running_mean),
        ("running_var", running_var), ("eps", eps), ("numerics", numerics))
        if value is not None}
    if bn is not None:
        if given:
            raise TypeError(f"give either bn or the BN arrays, not both: got bn and "
                            f"{', '.join(given)}")
        weight, bias, running_mean, running_var, eps, numerics = _from_layer(bn, out_ch)
    else:
        numerics = check_numerics("standard" if numerics is None else numerics)
        if running_mean is None or running_var is None:
            raise TypeError("fold_batchnorm needs bn (a BatchNorm layer) or running_mean "
                            "and running_var; got neither")
        eps = defaults(numerics)[0] if eps is None else darknet.check_eps(eps)
    stats = darknet.check_channel_vectors(running_mean=running_mean, running_var=running_var)
    if stats[0].shape != (out_ch,):
        raise ValueError(f"running_mean has shape {stats[0].shape}, expected ({out_ch},) "
                         f"to match conv_weight's {out_ch} output channels")
    affine = {name: value for name, value in (("weight", weight), ("bias", bias))
              if value is not None}
    if affine:
        darknet.check_channel_vectors(running_mean=running_mean, **affine)

    d = darknet.divisor(running_var, eps, inside=numerics == "standard"
                        or darknet.eps_inside_sqrt(numerics, "forward"))
    gamma = 1.0 if weight is None else weight.astype(np.float64)
    beta = 0.0 if bias is None else bias.astype(np.float64)
    a = gamma / d
    shift = 0.0 if conv_bias is None else conv_bias.astype(np.float64)
    per_channel = a if last else a.reshape((-1,) + (1,) * (conv_weight.ndim - 1))
    folded_weight = conv_weight.astype(np.float64) * per_channel
    folded_bias = (shift - running_mean.astype(np.float64)) * a + beta
    dtype = conv_weight.dtype
    return folded_weight.astype(dtype), folded_bias.astype(dtype)


def _check_conv(conv_weight, conv_bias, last):
    if not isinstance(conv_weight, np.ndarray):
        raise TypeError(f"conv_weight must be a NumPy array of float32 or float64, "
                        f"got {type(conv_weight).__name__}")
    if conv_weight.dtype not in (np.float32, np.float64):
        raise TypeError(f"conv_weight has dtype {conv_weight.dtype}, expected float32 "
                        "or float64")
    if conv_weight.ndim < 2:
        raise ValueError(f"conv_weight has shape {conv_weight.shape}, expected at least "
                         "2 axes, " + ("(*kernel, in_ch, out_ch)" if last
                                       else "(out_ch, in_ch, *kernel)"))
    if conv_bias is None:
        return conv_weight, None
    if not isinstance(conv_bias, np.ndarray):
        raise TypeError(f"conv_bias must be a NumPy array or None, "
                        f"got {type(conv_bias).__name__}")
    if conv_bias.dtype != conv_weight.dtype:
        raise TypeError(f"conv_bias has dtype {conv_bias.dtype}, expected "
                        f"{conv_weight.dtype} to match conv_weight")
    out_ch = conv_weight.shape[-1 if last else 0]
    if conv_bias.shape != (out_ch,):
        raise ValueError(f"conv_bias has shape {conv_bias.shape}, expected "
                         f"({out_ch},) to match conv_weight's {out_ch} output channels")
    return conv_weight, conv_bias


def _from_layer(bn, out_ch):
    """(weight, bias, running_mean, running_var, eps, numerics) of a layer."""
    if not isinstance(bn, BatchNorm):
        raise TypeError(f"bn must be a bnkernels BatchNorm layer (BatchNorm1d, BatchNorm2d, "
                        f"...), got {type(bn).__name__}")
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"bn has no running statistics (track_running_stats=False, "
                         f"given {bn!r}); folding needs running_mean and running_var")
    if bn.num_features != out_ch:
        raise ValueError(f"bn has {bn.num_features} features, expected {out_ch} "
                         "to match conv_weight's output channels")
    return bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.eps, bn.numerics
