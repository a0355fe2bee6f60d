"""bnkernels.darknet.to_standard / from_standard: converted parameters give
the other convention's inference output, within the bound they report.

Oracle: Darknet's inference formula evaluated in float64 NumPy from the
original parameters, written out here: y = s * (x - m) / D + b with
D = sqrt(v) + 1e-6 (pjreddie, Darknet's float .000001f) or sqrt(v + 1e-5)
(AlexeyAB, .00001f), and the standard one with D = sqrt(var + eps).

Tolerance: ``max_rel_diff * |a (x - m)|`` (the documented bound on the
difference of the two exactly evaluated formulas, a = s / D) plus the
kernels' own rounding: 4 * eps_dtype * (|a (x - m)| + |b|) for rounding y and
its few intermediate steps in the dtype, and 4 * eps_float64 * |a| * (|x| +
|m|) for the standard kernel's float64 ``x * a + (b - m * a)`` (its centering
cancels). The layers under test are BatchNorm2d(numerics="standard") and
BatchNorm2d(numerics="darknet" / "darknet-alexeyab") in eval mode.
"""
import numpy as np
import pytest

from bnkernels import BatchNorm2d, darknet
from forks import numerics_of

FLAVORS = ("pjreddie", "alexeyab")
NUMERICS = {"pjreddie": "darknet", "alexeyab": "darknet-alexeyab"}
DTYPES = (np.float32, np.float64)
F32_E = {"pjreddie": float(np.float32(1e-6)), "alexeyab": float(np.float32(1e-5))}


def darknet_divisor(v, flavor):
    v = np.asarray(v, np.float64)
    with np.errstate(invalid="ignore"):
        if flavor == "pjreddie":
            return np.sqrt(v) + F32_E[flavor]
        return np.sqrt(v + F32_E[flavor])


def standard_divisor(v, eps):
    with np.errstate(invalid="ignore"):
        return np.sqrt(np.asarray(v, np.float64) + eps)


def channel(v):
    return np.asarray(v, np.float64)[None, :, None, None]


def params(dtype, rng, variances=None):
    """Random non-trivial per-channel parameters; variances include the edges
    (0, 1e-12, near the rescaling threshold 1e-5, huge) unless given."""
    if variances is None:
        huge = 1e30 if dtype == np.float32 else 1e200
        variances = np.concatenate([[0.0, 1e-12, 1e-7, 9.9e-6, 1e-5, 1.1e-5, huge],
                                    rng.lognormal(0, 2, 9)])
    c = len(variances)
    return (rng.normal(1, 0.7, c).astype(dtype), rng.normal(0, 2, c).astype(dtype),
            rng.normal(0, 3, c).astype(dtype), np.asarray(variances).astype(dtype))


def probes(mean, divisor, dtype, rng):
    """(N, C, 1, W) inputs: mean + k * divisor for k in -4..4, and random k."""
    k = np.concatenate([np.arange(-4.0, 4.5, 0.5), rng.normal(0, 2, 15)])
    x = channel(mean) + channel(np.where(np.isfinite(divisor), divisor, 1.0)) \
        * k[:, None, None, None]
    return np.ascontiguousarray(np.transpose(x, (3, 1, 2, 0)).astype(dtype))


def eval_layer(numerics, weight, bias, mean, var, x, eps=None):
    bn = BatchNorm2d(len(mean), numerics=numerics, dtype=x.dtype, eps=eps)
    bn.weight[...], bn.bias[...] = weight, bias
    bn.running_mean[...], bn.running_var[...] = mean, var
    return bn.forward(x, training=False).astype(np.float64)


def bound(rel, a, x, mean, bias, dtype):
    x64 = x.astype(np.float64)
    centered = np.abs(channel(a) * (x64 - channel(mean)))
    return (rel * centered + 4 * np.finfo(dtype).eps * (centered + np.abs(channel(bias)))
            + 4 * np.finfo(np.float64).eps * np.abs(channel(a))
            * (np.abs(x64) + np.abs(channel(mean))))


def darknet_oracle(scales, biases, mean, variance, x, flavor):
    a = scales.astype(np.float64) / darknet_divisor(variance, flavor)
    return a, channel(a) * (x.astype(np.float64) - channel(mean)) + channel(biases)


def snapshot(arrays):
    return [a.copy() for a in arrays]


def assert_unchanged(before, arrays):
    for old, new in zip(before, arrays):
        assert old.tobytes() == new.tobytes(), "an input was modified"


# --- to_standard --------------------------------------------------------------

@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_standard_layer_with_converted_params_matches_darknet_within_reported_bound(
        flavor, dtype):
    rng = np.random.default_rng([FLAVORS.index(flavor), DTYPES.index(dtype)])
    original = params(dtype, rng)
    before = snapshot(original)
    scales, biases, mean, variance = original

    converted = darknet.to_standard(*original, numerics=numerics_of(flavor))

    assert_unchanged(before, original)
    for name in ("weight", "bias", "running_mean", "running_var"):
        assert getattr(converted, name).dtype == dtype
    x = probes(mean, darknet_divisor(variance, flavor), dtype, rng)
    a, expected = darknet_oracle(scales, biases, mean, variance, x, flavor)
    standard = eval_layer("standard", converted.weight, converted.bias,
                          converted.running_mean, converted.running_var, x, converted.eps)
    dk = eval_layer(NUMERICS[flavor], scales, biases, mean, variance, x)
    assert np.all(np.abs(dk - expected) <= bound(0, a, x, mean, biases, dtype)), \
        "the Darknet layer itself disagrees with the oracle"
    limit = bound(converted.max_rel_diff, a, x, mean, biases, dtype)
    error = np.abs(standard - expected)
    assert np.all(error <= limit), f"max error / bound {np.max(error / limit):.3g}"


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_reported_differences_are_as_documented_and_small(flavor, dtype):
    rng = np.random.default_rng(10 + FLAVORS.index(flavor))
    scales, biases, mean, variance = params(dtype, rng)
    converted = darknet.to_standard(scales, biases, mean, variance,
                                    numerics=numerics_of(flavor), eps=1e-5)
    d = darknet_divisor(variance, flavor)
    a = scales.astype(np.float64) / d
    a_new = converted.weight.astype(np.float64) / standard_divisor(converted.running_var,
                                                                   1e-5)
    rel = np.abs(a_new - a) / np.abs(a)
    assert converted.max_rel_diff == pytest.approx(rel.max(), rel=1e-9)
    assert converted.max_abs_diff == pytest.approx(np.max(np.abs(a_new - a) * 3 * d),
                                                   rel=1e-9)
    # float32: one rounding of running_var (halved by the square root) or of a
    # rescaled weight, 2**-24 relative at most; float64: ~1e-16
    assert converted.max_rel_diff <= (2.0**-24 if dtype == np.float32 else 4e-16)
    assert converted.eps == 1e-5


def test_naive_copy_of_darknet_params_fails_the_bound():
    """Copying Darknet's parameters as they are (ignoring where eps goes) is
    what the bound must catch: at small variances pjreddie's divisor
    sqrt(v) + 1e-6 and the standard sqrt(v + 1e-5) differ by far more."""
    rng = np.random.default_rng(20)
    original = params(np.float32, rng)
    scales, biases, mean, variance = original
    converted = darknet.to_standard(*original, numerics="darknet")
    x = probes(mean, darknet_divisor(variance, "pjreddie"), np.float32, rng)
    a, expected = darknet_oracle(*original, x, "pjreddie")
    naive = eval_layer("standard", *original, x, 1e-5)
    assert not np.all(np.abs(naive - expected)
                      <= bound(converted.max_rel_diff, a, x, mean, biases, np.float32))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_pjreddie_variance_zero_and_tiny_rescale_the_weight(dtype):
    scales, biases, mean, variance = (np.array([2.0, -3.0, 0.5, 1.0], dtype),
                                      np.array([0.1, 0.2, 0.3, 0.4], dtype),
                                      np.array([1.0, -1.0, 0.0, 5.0], dtype),
                                      np.array([0.0, 1e-12, 4.0, 1e-5], dtype))
    converted = darknet.to_standard(scales, biases, mean, variance, numerics="darknet")
    assert converted.rescaled.tolist() == [0, 1]
    assert converted.running_var[:2].tolist() == [0.0, 0.0]
    # running_var = (sqrt(v) + 1e-6)**2 - 1e-5, weight kept, where that is >= 0
    expected_var = (np.sqrt(variance[2:].astype(np.float64)) + F32_E["pjreddie"]) ** 2 - 1e-5
    np.testing.assert_array_equal(converted.running_var[2:], expected_var.astype(dtype))
    np.testing.assert_array_equal(converted.weight[2:], scales[2:])
    # variance 0: Darknet divides by 1e-6, so the weight becomes s * sqrt(1e-5) / 1e-6
    assert converted.weight[0] == pytest.approx(2.0 * np.sqrt(1e-5) / F32_E["pjreddie"],
                                                rel=float(np.finfo(dtype).eps))
    np.testing.assert_array_equal(converted.bias, biases)
    np.testing.assert_array_equal(converted.running_mean, mean)


def test_alexeyab_with_its_own_eps_is_the_identity():
    rng = np.random.default_rng(30)
    original = params(np.float32, rng)
    converted = darknet.to_standard(*original, numerics="darknet-alexeyab",
                                    eps=darknet.forward_eps("darknet-alexeyab"))
    for mine, theirs in zip(converted[:4], original):
        assert mine.tobytes() == theirs.tobytes()
    assert converted.max_rel_diff == 0 and len(converted.rescaled) == 0


def test_huge_and_infinite_variances_stay_finite_or_give_the_bias():
    scales, biases, mean = (np.ones(3, np.float32), np.full(3, 0.25, np.float32),
                            np.zeros(3, np.float32))
    variance = np.array([3e38, 1e30, np.inf], np.float32)
    for flavor in FLAVORS:
        converted = darknet.to_standard(scales, biases, mean, variance,
                                        numerics=numerics_of(flavor))
        assert np.isfinite(converted.running_var[:2]).all()
        assert converted.running_var[2] == np.inf
        x = np.array([1e15, -1e15, 7.0], np.float32).reshape(1, 3, 1, 1)
        y = eval_layer("standard", converted.weight, converted.bias,
                       converted.running_mean, converted.running_var, x, converted.eps)
        assert y[0, 2, 0, 0] == 0.25  # Darknet: s * x / inf + b = b
        assert converted.max_rel_diff <= 2.0**-24


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("bad", [-1.0, np.nan])
def test_negative_or_nan_variance_propagates_nan_like_darknet(flavor, bad):
    scales, biases, mean = (np.ones(3, np.float32), np.zeros(3, np.float32),
                            np.zeros(3, np.float32))
    variance = np.array([1.0, bad, 2.0], np.float32)
    converted = darknet.to_standard(scales, biases, mean, variance, numerics=numerics_of(flavor))
    assert converted.nan_channels.tolist() == [1]
    assert np.isnan(converted.running_var[1])
    assert np.isfinite(converted.max_rel_diff) and converted.max_rel_diff <= 2.0**-24
    x = np.random.default_rng(40).normal(0, 1, (2, 3, 2, 2)).astype(np.float32)
    with np.errstate(invalid="ignore"):
        dk = eval_layer(NUMERICS[flavor], scales, biases, mean, variance, x)
    standard = eval_layer("standard", converted.weight, converted.bias,
                          converted.running_mean, converted.running_var, x, converted.eps)
    assert np.isnan(dk[:, 1]).all() and np.isnan(standard[:, 1]).all()
    assert np.isfinite(standard[:, [0, 2]]).all()


def test_alexeyab_small_negative_variance_is_not_degenerate():
    """AlexeyAB adds eps before the square root: v = -1e-7 still gives a finite
    output, which the conversion reproduces (by rescaling the weight)."""
    scales, biases, mean = (np.full(1, 2.0), np.zeros(1), np.zeros(1))
    variance = np.array([-1e-7])
    converted = darknet.to_standard(scales, biases, mean, variance, numerics="darknet-alexeyab")
    assert converted.nan_channels.size == 0 and converted.rescaled.tolist() == [0]
    a_dk = 2.0 / np.sqrt(-1e-7 + F32_E["alexeyab"])
    assert converted.weight[0] / np.sqrt(converted.running_var[0] + 1e-5) == \
        pytest.approx(a_dk, rel=1e-15)


# --- from_standard and round trips --------------------------------------------

@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_darknet_layer_with_converted_params_matches_standard_within_reported_bound(
        flavor, dtype):
    rng = np.random.default_rng([50, FLAVORS.index(flavor), DTYPES.index(dtype)])
    weight, bias, mean, var = params(dtype, rng)
    eps = 1e-14  # tiny, so that pjreddie's limit (var + eps < 1e-12) is reached
    converted = darknet.from_standard(weight, bias, mean, var, eps=eps,
                                      numerics=numerics_of(flavor))
    assert converted.numerics == numerics_of(flavor)
    d = standard_divisor(var, eps)
    x = probes(mean, d, dtype, rng)
    a = weight.astype(np.float64) / d
    expected = channel(a) * (x.astype(np.float64) - channel(mean)) + channel(bias)
    dk = eval_layer(NUMERICS[flavor], converted.scales, converted.biases,
                    converted.rolling_mean, converted.rolling_variance, x)
    error = np.abs(dk - expected)
    assert np.all(error <= bound(converted.max_rel_diff, a, x, mean, bias, dtype))
    assert converted.max_rel_diff <= (2.0**-24 if dtype == np.float32 else 4e-16)
    if flavor == "pjreddie":  # var 0: sqrt(1e-14) < 1e-6; var 1e-12: sqrt(1.01e-12) > 1e-6
        assert 0 in converted.rescaled and 1 not in converted.rescaled
    else:  # var + 1e-14 < 1e-5 for var = 0, 1e-12, 1e-7, 9.9e-6
        assert set(converted.rescaled) >= {0, 1, 2, 3}


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_round_trip_keeps_darknets_inference_map(flavor, dtype):
    rng = np.random.default_rng([60, FLAVORS.index(flavor), DTYPES.index(dtype)])
    scales, biases, mean, variance = params(dtype, rng)
    there = darknet.to_standard(scales, biases, mean, variance, numerics=numerics_of(flavor))
    back = darknet.from_standard(there.weight, there.bias, there.running_mean,
                                 there.running_var, eps=there.eps, numerics=numerics_of(flavor))
    np.testing.assert_array_equal(back.biases, biases)
    np.testing.assert_array_equal(back.rolling_mean, mean)
    kept = np.setdiff1d(np.arange(len(scales)), there.rescaled)
    np.testing.assert_array_equal(back.scales[kept], scales[kept])
    a = scales.astype(np.float64) / darknet_divisor(variance, flavor)
    a_back = back.scales.astype(np.float64) / darknet_divisor(back.rolling_variance, flavor)
    np.testing.assert_allclose(a_back, a, rtol=there.max_rel_diff + back.max_rel_diff
                               + 8 * np.finfo(np.float64).eps, atol=0)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_from_standard_where_no_darknet_variance_fits(flavor):
    """pjreddie cannot divide by less than 1e-6, AlexeyAB by less than
    sqrt(1e-5): a standard divisor below that rescales the scale."""
    weight, bias, mean = np.full(2, 3.0), np.zeros(2), np.zeros(2)
    var = np.array([0.0, 1.0])
    converted = darknet.from_standard(weight, bias, mean, var, eps=1e-14,
                                      numerics=numerics_of(flavor))
    assert converted.rescaled.tolist() == [0]
    assert converted.rolling_variance[0] == 0
    d0 = F32_E[flavor] if flavor == "pjreddie" else np.sqrt(F32_E[flavor])
    assert converted.scales[0] == pytest.approx(3.0 * d0 / 1e-7, rel=1e-15)


def test_from_standard_negative_variance_propagates_nan():
    converted = darknet.from_standard(np.ones(2), np.zeros(2), np.zeros(2),
                                      np.array([1.0, -1.0]))
    assert converted.nan_channels.tolist() == [1]
    assert np.isnan(converted.rolling_variance[1]) and converted.rolling_variance[0] > 0


# --- errors -------------------------------------------------------------------

def _four(dtype=np.float32, c=4):
    return [np.ones(c, dtype) for _ in range(4)]


@pytest.mark.parametrize("convert,names", [
    (darknet.to_standard, ("scales", "biases", "rolling_mean", "rolling_variance")),
    (darknet.from_standard, ("weight", "bias", "running_mean", "running_var")),
])
def test_rejects_bad_vectors_naming_the_argument(convert, names):
    args = _four()
    args[1] = np.ones(3, np.float32)
    with pytest.raises(ValueError, match=rf"{names[1]} has shape \(3,\), expected \(4,\) "
                                         rf"to match {names[0]}"):
        convert(*args)
    args = _four()
    args[3] = np.ones(4)
    with pytest.raises(TypeError, match=rf"{names[3]} has dtype float64, expected float32 "
                                        rf"to match {names[0]}"):
        convert(*args)
    args = _four()
    args[2] = np.ones(4, np.int32)
    with pytest.raises(TypeError, match=rf"{names[2]} has dtype int32, expected float32 "
                                        "or float64"):
        convert(*args)
    args = _four()
    args[0] = [1.0, 1.0, 1.0, 1.0]
    with pytest.raises(TypeError, match=rf"{names[0]} must be a NumPy array of float32 or "
                                        "float64, got list"):
        convert(*args)
    args = _four()
    args[0] = np.ones((4, 1), np.float32)
    with pytest.raises(ValueError, match=rf"{names[0]} has shape \(4, 1\), expected a 1-D"):
        convert(*args)
    with pytest.raises(ValueError, match=r"numerics must be 'darknet' or "
                                         r"'darknet-alexeyab', got 'cudnn'"):
        convert(*_four(), numerics="cudnn")
    with pytest.raises(ValueError, match=r"eps must be finite and >= 0, got nan"):
        convert(*_four(), eps=float("nan"))
    with pytest.raises(TypeError, match=r"eps must be a real number, got str"):
        convert(*_four(), eps="1e-5")
