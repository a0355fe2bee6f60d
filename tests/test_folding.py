"""bnkernels.fold_batchnorm: a convolution followed by eval-mode BN equals the
folded convolution.

Oracle: the unfolded pipeline, computed independently: the convolution by a
float64 NumPy im2col (sliding windows + einsum) in this file, its output rounded
to the dtype, then bnkernels' own BatchNorm2d forward with training=False; the
folded convolution is the same float64 im2col with the folded (rounded)
weights.

Tolerance, per output element: 8 * eps_dtype * S with
S = |a| * (conv(|x|, |W|) + |b| + |mean|) + |beta|, a = gamma / divisor (the
sum of the magnitudes that enter the computation). Each path rounds a handful
of times to the dtype: the conv output before BN, BN's centering, division,
scaling and shift (Darknet numerics round each step to float32), the folded
weights and bias rounded once; each rounding errs by at most eps/2 relative to
a term bounded by S, so about 4 * eps * S in all; 8 leaves a factor 2 of
headroom. The float64 convolutions themselves err ~1e-16 * S. A fold that
drops a term (the conv bias, the mean, beta) misses by O(S) and fails, as
test_tolerance_catches_a_dropped_conv_bias shows.
"""
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import bnkernels
from bnkernels import BatchNorm2d, fold_batchnorm

NUMERICS = ("standard", "darknet", "darknet-alexeyab")
DTYPES = (np.float32, np.float64)
OUT_CH, IN_CH, K = 6, 3, 3


def conv2d(x, weight, bias=None, stride=1, padding=1):
    """float64 cross-correlation (PyTorch's and Darknet's conv), NCHW."""
    x = np.pad(np.asarray(x, np.float64),
               ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    kh, kw = weight.shape[2:]
    windows = sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
    y = np.einsum("nchwij,ocij->nohw", windows, np.asarray(weight, np.float64))
    if bias is not None:
        y += np.asarray(bias, np.float64)[None, :, None, None]
    return y


def divisor(running_var, eps, numerics):
    """The numerics' BN divisor, float64, written out here from the README's
    table: eps outside the square root for "darknet" only."""
    var = running_var.astype(np.float64)
    return np.sqrt(var) + eps if numerics == "darknet" else np.sqrt(var + eps)


def make_bn(numerics, dtype, rng, affine=True, zero_variance=True):
    bn = BatchNorm2d(OUT_CH, numerics=numerics, dtype=dtype, affine=affine)
    bn.running_mean[...] = rng.normal(0.5, 2.0, OUT_CH)
    bn.running_var[...] = rng.uniform(0.05, 4.0, OUT_CH)
    if zero_variance:
        bn.running_var[0] = 0  # a constant channel: the divisor is eps alone
    if affine:
        bn.weight[...] = rng.normal(1.0, 0.5, OUT_CH)
        bn.bias[...] = rng.normal(0.0, 1.0, OUT_CH)
    return bn


def make_conv(dtype, rng, with_bias):
    weight = rng.normal(0, 0.5, (OUT_CH, IN_CH, K, K)).astype(dtype)
    bias = rng.normal(0, 1.0, OUT_CH).astype(dtype) if with_bias else None
    return weight, bias


def unfolded_and_tolerance(x, weight, bias, bn):
    """conv then BN eval (the dtype's pipeline), and the tolerance per element."""
    z = conv2d(x, weight, bias).astype(weight.dtype)
    y = bn.forward(np.ascontiguousarray(z, dtype=bn.dtype), training=False)
    gamma = np.ones(OUT_CH) if bn.weight is None else bn.weight.astype(np.float64)
    beta = np.zeros(OUT_CH) if bn.bias is None else bn.bias.astype(np.float64)
    a = gamma / divisor(bn.running_var, bn.eps, bn.numerics)
    magnitude = conv2d(np.abs(x), np.abs(weight.astype(np.float64)),
                       None if bias is None else np.abs(bias.astype(np.float64)))
    per_channel = lambda v: v[None, :, None, None]  # noqa: E731
    s = per_channel(np.abs(a)) * (magnitude + per_channel(np.abs(bn.running_mean.astype(
        np.float64)))) + per_channel(np.abs(beta))
    eps = max(np.finfo(weight.dtype).eps, np.finfo(bn.dtype).eps)
    return y.astype(np.float64), 8 * eps * s


def snapshot(*arrays):
    return [None if a is None else a.copy() for a in arrays]


def assert_unchanged(before, *arrays):
    for old, new in zip(before, arrays):
        if old is None:
            assert new is None
        else:
            assert old.tobytes() == new.tobytes(), "an input was modified"


@pytest.mark.parametrize("numerics", NUMERICS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("with_bias", [True, False], ids=["conv-bias", "no-conv-bias"])
def test_folded_conv_equals_conv_then_eval_batchnorm(numerics, dtype, with_bias):
    rng = np.random.default_rng([NUMERICS.index(numerics), int(with_bias)])
    x = rng.normal(0, 1, (2, IN_CH, 7, 9)).astype(dtype)
    weight, bias = make_conv(dtype, rng, with_bias)
    bn = make_bn(numerics, dtype, rng)
    before = snapshot(weight, bias, bn.weight, bn.bias, bn.running_mean, bn.running_var)

    folded_weight, folded_bias = fold_batchnorm(weight, bias, bn)

    assert folded_weight.dtype == dtype and folded_bias.dtype == dtype
    assert folded_weight.shape == weight.shape and folded_bias.shape == (OUT_CH,)
    expected, tolerance = unfolded_and_tolerance(x, weight, bias, bn)
    folded = conv2d(x, folded_weight, folded_bias)
    assert np.all(np.abs(folded - expected) <= tolerance), (
        f"max error / tolerance {np.max(np.abs(folded - expected) / tolerance):.3g}")
    assert_unchanged(before, weight, bias, bn.weight, bn.bias, bn.running_mean,
                     bn.running_var)


@pytest.mark.parametrize("numerics", NUMERICS)
def test_affine_false_means_gamma_one_beta_zero(numerics):
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (2, IN_CH, 5, 5)).astype(np.float32)
    weight, bias = make_conv(np.float32, rng, True)
    bn = make_bn(numerics, np.float32, rng, affine=False)
    folded_weight, folded_bias = fold_batchnorm(weight, bias, bn)
    expected, tolerance = unfolded_and_tolerance(x, weight, bias, bn)
    assert np.all(np.abs(conv2d(x, folded_weight, folded_bias) - expected) <= tolerance)


def test_tolerance_catches_a_dropped_conv_bias():
    """The test's tolerance is tight enough to see the converters' classic bug:
    folding as if the conv had no bias."""
    rng = np.random.default_rng(4)
    x = rng.normal(0, 1, (2, IN_CH, 5, 5)).astype(np.float32)
    weight, bias = make_conv(np.float32, rng, True)
    bn = make_bn("standard", np.float32, rng)
    folded_weight, folded_bias_without = fold_batchnorm(weight, None, bn)
    expected, tolerance = unfolded_and_tolerance(x, weight, bias, bn)
    assert not np.all(np.abs(conv2d(x, folded_weight, folded_bias_without) - expected)
                      <= tolerance)


@pytest.mark.parametrize("numerics", NUMERICS)
def test_arrays_give_the_same_bits_as_the_layer(numerics):
    rng = np.random.default_rng(5)
    weight, bias = make_conv(np.float32, rng, True)
    bn = make_bn(numerics, np.float32, rng)
    from_layer = fold_batchnorm(weight, bias, bn)
    from_arrays = fold_batchnorm(weight, bias, weight=bn.weight, bias=bn.bias,
                                 running_mean=bn.running_mean, running_var=bn.running_var,
                                 eps=bn.eps, numerics=numerics)
    for a, b in zip(from_layer, from_arrays):
        assert a.tobytes() == b.tobytes()


def test_arrays_default_to_standard_numerics_and_its_eps():
    rng = np.random.default_rng(6)
    weight, bias = make_conv(np.float64, rng, True)
    mean, var = rng.normal(0, 1, OUT_CH), rng.uniform(0.5, 2, OUT_CH)
    folded_weight, folded_bias = fold_batchnorm(weight, bias, running_mean=mean,
                                                running_var=var)
    a = 1 / np.sqrt(var + 1e-5)
    np.testing.assert_allclose(folded_weight, weight * a[:, None, None, None], rtol=1e-15)
    np.testing.assert_allclose(folded_bias, (bias - mean) * a, rtol=1e-13, atol=1e-15)


def test_darknet_numerics_put_eps_outside_the_square_root():
    """Variance 0: Darknet's pjreddie divisor is eps = 1e-6 (scale 1e6), the
    standard one sqrt(1e-5) (scale 316): folding follows the numerics."""
    weight = np.ones((1, 1, 1, 1))
    stats = dict(running_mean=np.zeros(1), running_var=np.zeros(1))
    dk, _ = fold_batchnorm(weight, None, **stats, numerics="darknet")
    standard, _ = fold_batchnorm(weight, None, **stats, numerics="standard")
    eps = float(np.float32(1e-6))
    assert dk[0, 0, 0, 0] == pytest.approx(1 / eps, rel=1e-15)
    assert standard[0, 0, 0, 0] == pytest.approx(1 / np.sqrt(1e-5), rel=1e-15)


@pytest.mark.parametrize("conv_dtype,bn_dtype", [(np.float32, np.float64),
                                                 (np.float64, np.float32)])
def test_result_has_conv_weights_dtype_whatever_the_bn_dtype(conv_dtype, bn_dtype):
    rng = np.random.default_rng(7)
    x = rng.normal(0, 1, (1, IN_CH, 5, 5)).astype(conv_dtype)
    weight, bias = make_conv(conv_dtype, rng, True)
    bn = make_bn("standard", bn_dtype, rng)
    folded_weight, folded_bias = fold_batchnorm(weight, bias, bn)
    assert folded_weight.dtype == conv_dtype and folded_bias.dtype == conv_dtype
    expected, tolerance = unfolded_and_tolerance(x, weight, bias, bn)
    assert np.all(np.abs(conv2d(x, folded_weight, folded_bias) - expected) <= tolerance)


def test_exported_from_the_package():
    assert bnkernels.fold_batchnorm is fold_batchnorm
    assert "fold_batchnorm" in bnkernels.__all__


# --- errors -------------------------------------------------------------------

def _conv():
    return np.ones((OUT_CH, IN_CH, K, K), np.float32), np.zeros(OUT_CH, np.float32)


def test_rejects_a_layer_without_running_statistics():
    weight, bias = _conv()
    bn = BatchNorm2d(OUT_CH, track_running_stats=False)
    with pytest.raises(ValueError, match=r"bn has no running statistics "
                                         r"\(track_running_stats=False"):
        fold_batchnorm(weight, bias, bn)


@pytest.mark.parametrize("conv_weight,message", [
    (np.ones((OUT_CH,), np.float32),
     r"conv_weight has shape \(6,\), expected at least 2 axes, \(out_ch, in_ch, \*kernel\)"),
    (np.ones((OUT_CH, IN_CH, K, K), np.int64),
     r"conv_weight has dtype int64, expected float32 or float64"),
    ([[[[1.0]]]], r"conv_weight must be a NumPy array of float32 or float64, got list"),
])
def test_rejects_bad_conv_weight_naming_it(conv_weight, message):
    bn = BatchNorm2d(OUT_CH)
    with pytest.raises((TypeError, ValueError), match=message):
        fold_batchnorm(conv_weight, None, bn)


def test_rejects_conv_bias_of_wrong_shape_or_dtype():
    weight, _ = _conv()
    bn = BatchNorm2d(OUT_CH)
    with pytest.raises(ValueError, match=r"conv_bias has shape \(5,\), expected \(6,\) "
                                         r"to match conv_weight's 6 output channels"):
        fold_batchnorm(weight, np.zeros(5, np.float32), bn)
    with pytest.raises(TypeError, match=r"conv_bias has dtype float64, expected float32 "
                                        r"to match conv_weight"):
        fold_batchnorm(weight, np.zeros(OUT_CH), bn)


def test_rejects_a_layer_with_another_channel_count():
    weight, bias = _conv()
    with pytest.raises(ValueError, match=r"bn has 5 features, expected 6 to match "
                                         r"conv_weight's output channels"):
        fold_batchnorm(weight, bias, BatchNorm2d(5))


def test_rejects_bn_and_arrays_together_and_neither():
    weight, bias = _conv()
    with pytest.raises(TypeError, match=r"give either bn or the BN arrays, not both: "
                                        r"got bn and eps, numerics"):
        fold_batchnorm(weight, bias, BatchNorm2d(OUT_CH), eps=1e-3, numerics="darknet")
    with pytest.raises(TypeError, match=r"needs bn \(a BatchNorm layer\) or running_mean and "
                                        r"running_var"):
        fold_batchnorm(weight, bias, running_mean=np.zeros(OUT_CH, np.float32))
    with pytest.raises(TypeError, match=r"bn must be a bnkernels BatchNorm layer \(BatchNorm1d, BatchNorm2d, \.\.\.\), got dict"):
        fold_batchnorm(weight, bias, {"running_mean": None})


def test_rejects_bad_bn_arrays_naming_them():
    weight, bias = _conv()
    ok = dict(running_mean=np.zeros(OUT_CH, np.float32),
              running_var=np.ones(OUT_CH, np.float32))
    with pytest.raises(ValueError, match=r"running_mean has shape \(4,\), expected \(6,\) "
                                         r"to match conv_weight's 6 output channels"):
        fold_batchnorm(weight, bias, running_mean=np.zeros(4, np.float32),
                       running_var=np.ones(4, np.float32))
    with pytest.raises(TypeError, match=r"running_var has dtype float64, expected float32 "
                                        r"to match running_mean"):
        fold_batchnorm(weight, bias, running_mean=ok["running_mean"],
                       running_var=np.ones(OUT_CH))
    with pytest.raises(ValueError, match=r"weight has shape \(6, 1\), expected a 1-D"):
        fold_batchnorm(weight, bias, weight=np.ones((OUT_CH, 1), np.float32), **ok)
    with pytest.raises(ValueError, match=r"numerics must be one of"):
        fold_batchnorm(weight, bias, numerics="keras", **ok)
    with pytest.raises(ValueError, match=r"eps must be finite and >= 0, got -1.0"):
        fold_batchnorm(weight, bias, eps=-1.0, **ok)
