"""bnkernels.darknet against Darknet's own outputs, bit for bit.

Oracle: the golden vectors produced by Darknet's compiled C code (strict IEEE
build), for both forks. Tolerance: none. Float32 results must have the same
bits, NaN in the same places (../darknet_vectors/README.md, "How to compare").
For the large case, whose stored elementwise outputs hold batch item 0 only,
the full array is compared through its SHA-256.
"""
import contextlib

import numpy as np
import pytest

from bnkernels import BatchNorm2d, batch_norm_backward, batch_norm_forward, darknet
from bnkernels.tools.verify import bitwise_equal, sha256_of
from forks import numerics_of

ELEMENTWISE = ("x_norm", "out_train", "out_infer", "dx")


def assert_bitwise(mine, z, key):
    """mine equals z[key] bit for bit (elementwise keys: on the stored batch
    items, and as a whole through the SHA-256 when the file has one)."""
    expected = z[key]
    if key in ELEMENTWISE:
        if f"sha256_{key}" in z:
            assert (sha256_of(mine) == z[f"sha256_{key}"]).all(), f"{key}: SHA-256 differs"
        mine = mine[z["out_batch_index"]]
    assert mine.dtype == np.float32
    assert bitwise_equal(mine, expected), (
        f"{key} differs from Darknet: max abs diff "
        f"{np.nanmax(np.abs(mine.astype(np.float64) - expected)):.3g}")


def inputs(z):
    return {k: z[k].copy() for k in ("x", "delta", "scales", "biases",
                                      "rolling_mean_in", "rolling_variance_in")}


# --- forward kernels ---------------------------------------------------------

def test_mean_cpu_matches_darknet(vector):
    _, z = vector
    assert_bitwise(darknet.mean_cpu(z["x"]), z, "mean")


def test_variance_cpu_uses_n_minus_1_like_darknet(vector):
    _, z = vector
    assert_bitwise(darknet.variance_cpu(z["x"], z["mean"]), z, "variance")


def test_normalize_cpu_places_epsilon_as_each_fork_does(vector):
    flavor, z = vector
    mine = darknet.normalize_cpu(z["x"], z["mean"], z["variance"], numerics=numerics_of(flavor))
    assert_bitwise(mine, z, "x_norm")


def test_normalize_cpu_works_in_place_like_darknet(vector):
    flavor, z = vector
    x = z["x"].copy()
    result = darknet.normalize_cpu(x, z["mean"], z["variance"], numerics=numerics_of(flavor),
                                   out=x)
    assert result is x
    assert_bitwise(x, z, "x_norm")


def test_scale_bias_then_add_bias_give_the_training_output(vector):
    _, z = vector
    scaled = darknet.scale_bias(z["x_norm"], z["scales"])
    out = darknet.add_bias(scaled, z["biases"], out=scaled)
    assert bitwise_equal(out, z["out_train"])


def test_scale_add_bias_is_scale_bias_then_add_bias_in_one_pass(vector):
    _, z = vector
    fused = darknet.scale_add_bias(z["x_norm"], z["scales"], z["biases"])
    assert bitwise_equal(fused, z["out_train"])
    x64 = z["x_norm"].astype(np.float64)
    scales64, biases64 = z["scales"].astype(np.float64), z["biases"].astype(np.float64)
    np.testing.assert_array_equal(
        darknet.scale_add_bias(x64, scales64, biases64),
        darknet.add_bias(darknet.scale_bias(x64, scales64), biases64))


def test_rolling_update_keeps_each_forks_momentum(vector):
    flavor, z = vector
    rolling_mean = darknet.rolling_update(z["rolling_mean_in"].copy(), z["mean"],
                                          numerics=numerics_of(flavor))
    rolling_var = darknet.rolling_update(z["rolling_variance_in"].copy(), z["variance"],
                                         numerics=numerics_of(flavor))
    assert_bitwise(rolling_mean, z, "rolling_mean_out")
    assert_bitwise(rolling_var, z, "rolling_variance_out")


def test_inference_normalizes_with_the_rolling_statistics(vector):
    flavor, z = vector
    x_norm = darknet.normalize_cpu(z["x"], z["rolling_mean_in"], z["rolling_variance_in"],
                                   numerics=numerics_of(flavor))
    out = darknet.add_bias(darknet.scale_bias(x_norm, z["scales"]), z["biases"])
    assert_bitwise(out, z, "out_infer")


# --- backward kernels --------------------------------------------------------

def test_backward_bias_sums_rows_then_batches(vector):
    _, z = vector
    assert_bitwise(darknet.backward_bias(z["delta"]), z, "backward_bias")


def test_backward_scale_cpu_is_one_running_sum(vector):
    _, z = vector
    x_norm = darknet.normalize_cpu(z["x"], z["mean"], z["variance"],
                                   numerics=numerics_of(vector[0]))
    assert_bitwise(darknet.backward_scale_cpu(x_norm, z["delta"]), z, "backward_scale")


def test_mean_and_variance_delta_use_1e5_inside_the_sqrt(vector):
    _, z = vector
    scaled = darknet.scale_bias(z["delta"], z["scales"])
    assert_bitwise(darknet.mean_delta_cpu(scaled, z["variance"]), z, "mean_delta")
    assert_bitwise(darknet.variance_delta_cpu(z["x"], scaled, z["mean"], z["variance"]),
                   z, "variance_delta")


def test_normalize_delta_cpu_gives_darknets_dx(vector):
    flavor, z = vector
    scaled = darknet.scale_bias(z["delta"], z["scales"])
    dx = darknet.normalize_delta_cpu(z["x"], z["mean"], z["variance"], z["mean_delta"],
                                     z["variance_delta"], scaled, numerics=numerics_of(flavor),
                                     out=scaled)
    assert dx is scaled
    assert_bitwise(dx, z, "dx")


def test_updates_accumulate_into_out_like_darknet():
    rng = np.random.default_rng(5)
    delta = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    x_norm = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    start = np.float32([1.5, -2.0, 0.25])
    bias_updates = darknet.backward_bias(delta, out=start.copy(), accumulate=True)
    scale_updates = darknet.backward_scale_cpu(x_norm, delta, out=start.copy(),
                                               accumulate=True)
    # Oracle: Darknet's += order, replayed in float32 by NumPy scalars.
    for c in range(3):
        expected = start[c]
        for b in range(2):
            row = np.float32(0)
            for v in delta[b, c].ravel():
                row = np.float32(row + v)
            expected = np.float32(expected + row)
        assert bias_updates[c] == expected
    total = np.float32(0)
    for v in (delta[:, 0] * x_norm[:, 0]).ravel():
        total = np.float32(total + v)
    assert scale_updates[0] == np.float32(start[0] + total)
    overwritten = darknet.backward_bias(delta, out=start.copy())
    assert bitwise_equal(overwritten, darknet.backward_bias(delta))


# --- the layer ---------------------------------------------------------------

def test_darknet_layer_reproduces_forward_and_backward_batchnorm_layer(vector):
    flavor, z = vector
    i = inputs(z)
    layer = BatchNorm2d(i["x"].shape[1], numerics=numerics_of(flavor))
    layer.weight[...], layer.bias[...] = i["scales"], i["biases"]
    layer.running_mean[...] = i["rolling_mean_in"]
    layer.running_var[...] = i["rolling_variance_in"]

    assert_bitwise(layer.forward(i["x"], training=False), z, "out_infer")
    if z["n_per_channel"] == 1:
        with pytest.warns(RuntimeWarning, match="n - 1 = 0"):
            y = layer.forward(i["x"], training=True)
    else:
        y = layer.forward(i["x"], training=True)
    assert_bitwise(y, z, "out_train")
    assert_bitwise(layer.running_mean, z, "rolling_mean_out")
    assert_bitwise(layer.running_var, z, "rolling_variance_out")

    dx = layer.backward(i["delta"])
    assert_bitwise(dx, z, "dx")
    assert_bitwise(layer.grad_weight, z, "scale_updates")
    # grad_bias is the real bias gradient, also for AlexeyAB, whose own CPU
    # layer never computes it (its bias_updates stay 0).
    assert_bitwise(layer.grad_bias, z, "backward_bias")
    if flavor == "alexeyab":
        assert not z["bias_updates"].any()
    else:
        assert bitwise_equal(z["bias_updates"], z["backward_bias"])

    for key in ("x", "delta", "scales", "biases"):   # inputs untouched
        assert bitwise_equal(i[key], z[key])


def test_darknet_functional_api_matches_the_layer(vector):
    flavor, z = vector
    i = inputs(z)
    running_mean, running_var = i["rolling_mean_in"], i["rolling_variance_in"]
    one_value = z["n_per_channel"] == 1
    with pytest.warns(RuntimeWarning) if one_value else contextlib.nullcontext():
        y, saved = batch_norm_forward(i["x"], i["scales"], i["biases"], running_mean,
                                      running_var, numerics=numerics_of(flavor))
    dx, dweight, dbias = batch_norm_backward(i["delta"], saved)
    assert_bitwise(y, z, "out_train")
    assert_bitwise(running_mean, z, "rolling_mean_out")
    assert_bitwise(running_var, z, "rolling_variance_out")
    assert_bitwise(dx, z, "dx")
    assert_bitwise(dweight, z, "scale_updates")
    assert_bitwise(dbias, z, "backward_bias")


def test_darknet_defaults_are_each_forks_constants():
    assert darknet.forward_eps("darknet") == np.float32(1e-6)
    assert darknet.forward_eps("darknet-alexeyab") == np.float32(1e-5)
    assert darknet.BACKWARD_EPS == np.float32(1e-5)
    assert darknet.default_momentum("darknet") == 0.01
    assert darknet.default_momentum("darknet-alexeyab") == 0.1


@pytest.mark.parametrize("flavor", ["pjreddie", "alexeyab"])
def test_float64_kernels_follow_the_same_formulas(flavor):
    """Float64 has no Darknet vectors; oracle: the NumPy twin in float64, to
    1e-12 relative (different summation order only)."""
    from bnkernels import reference as ref
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 4, 5, 6)) + 3.0
    delta = rng.standard_normal(x.shape)
    mean = darknet.mean_cpu(x)
    var = darknet.variance_cpu(x, mean)
    np.testing.assert_allclose(mean, ref.mean_cpu(x), rtol=1e-12)
    np.testing.assert_allclose(var, ref.variance_cpu(x, mean), rtol=1e-12)
    np.testing.assert_allclose(darknet.normalize_cpu(x, mean, var, numerics=numerics_of(flavor)),
                               ref.normalize_cpu(x, mean, var, numerics=numerics_of(flavor)),
                               rtol=1e-12, atol=1e-12)
    md = darknet.mean_delta_cpu(delta, var)
    vd = darknet.variance_delta_cpu(x, delta, mean, var)
    np.testing.assert_allclose(md, ref.mean_delta_cpu(delta, var), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(vd, ref.variance_delta_cpu(x, delta, mean, var),
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        darknet.normalize_delta_cpu(x, mean, var, md, vd, delta, numerics=numerics_of(flavor)),
        ref.normalize_delta_cpu(x, mean, var, md, vd, delta, numerics=numerics_of(flavor)),
        rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 37, 3, 7), (1, 48, 4, 4), (3, 16, 1, 17)])
def test_channel_sums_run_in_darknets_order_in_every_block(shape, dtype):
    """Oracle: Darknet's loops written in NumPy, bit for bit: per channel one
    running sum in x's dtype, b outer, s inner, from +0 (the variance through
    double). The shapes put channels in the fast tier's vector blocks (16
    float32 or 8 float64 channels; one or two at a time), in its scalar
    blocks and leftovers, and rows that end in a partial tile. mean_delta and
    variance_delta (no NumPy twin of Darknet's sqrt and pow here) must equal
    each channel computed alone, which takes the scalar path."""
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
    delta = rng.standard_normal(shape).astype(dtype)
    batch, channels = shape[:2]
    rows_x = x.reshape(batch, channels, -1)
    rows_d = delta.reshape(batch, channels, -1)
    spatial = rows_x.shape[2]
    n = batch * spatial

    def darknet_sum(terms, per_row=False):
        total = np.zeros(channels, dtype)
        for b in range(batch):
            acc = np.zeros(channels, dtype) if per_row else total
            for s in range(spatial):
                acc = acc + terms(b, s)
            total = total + acc if per_row else acc
        return total

    mean = darknet_sum(lambda b, s: rows_x[b, :, s]) * dtype(1 / n)
    assert darknet.mean_cpu(x).tobytes() == mean.tobytes()

    squares = np.zeros(channels, dtype)
    for b in range(batch):
        for s in range(spatial):
            d = (rows_x[b, :, s] - mean).astype(np.float64)
            squares = (squares.astype(np.float64) + d * d).astype(dtype)
    variance = squares * dtype(1 / (n - 1))
    assert darknet.variance_cpu(x, mean).tobytes() == variance.tobytes()

    bias = darknet_sum(lambda b, s: rows_d[b, :, s], per_row=True)
    assert darknet.backward_bias(delta).tobytes() == bias.tobytes()
    x_norm = darknet.normalize_cpu(x, mean, variance)
    rows_n = x_norm.reshape(rows_x.shape)
    scale = darknet_sum(lambda b, s: rows_d[b, :, s] * rows_n[b, :, s])
    assert darknet.backward_scale_cpu(x_norm, delta).tobytes() == scale.tobytes()

    md = darknet.mean_delta_cpu(delta, variance)
    vd = darknet.variance_delta_cpu(x, delta, mean, variance)
    for c in range(channels):
        one = np.s_[:, c:c + 1]
        d1, x1 = np.ascontiguousarray(delta[one]), np.ascontiguousarray(x[one])
        assert darknet.mean_delta_cpu(d1, variance[c:c + 1]).tobytes() == md[c:c + 1].tobytes()
        assert (darknet.variance_delta_cpu(x1, d1, mean[c:c + 1], variance[c:c + 1]).tobytes()
                == vd[c:c + 1].tobytes())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("flavor", ["pjreddie", "alexeyab"])
@pytest.mark.parametrize("shape", [(3, 13, 5, 7), (1, 9, 1, 1), (4, 8, 16, 16),
                                   (2, 37, 3, 7)])
def test_fused_backward_is_darknets_six_kernels_bit_for_bit(shape, flavor, dtype):
    """Oracle: Darknet's backward_batchnorm_layer as six kernel calls."""
    rng = np.random.default_rng(11)
    x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
    delta = rng.standard_normal(shape).astype(dtype)
    scales = rng.uniform(0.5, 2, shape[1]).astype(dtype)
    mean = darknet.mean_cpu(x)
    variance = darknet.variance_cpu(x, mean)
    x_norm = darknet.normalize_cpu(x, mean, variance, numerics=numerics_of(flavor))
    bias_updates = darknet.backward_bias(delta)
    scale_updates = darknet.backward_scale_cpu(x_norm, delta)
    scaled = darknet.scale_bias(delta, scales)
    mean_delta = darknet.mean_delta_cpu(scaled, variance)
    variance_delta = darknet.variance_delta_cpu(x, scaled, mean, variance)
    dx = darknet.normalize_delta_cpu(x, mean, variance, mean_delta, variance_delta,
                                     scaled, numerics=numerics_of(flavor))
    delta_before = delta.copy()
    fused = darknet.backward_batchnorm_layer(x, x_norm, delta, mean, variance, scales,
                                             numerics=numerics_of(flavor))
    np.testing.assert_array_equal(delta, delta_before)
    for mine, oracle in zip(fused, (dx, scale_updates, bias_updates)):
        assert mine.tobytes() == oracle.tobytes()
    in_place = darknet.backward_batchnorm_layer(x, x_norm, delta, mean, variance, scales,
                                                numerics=numerics_of(flavor), out=delta)
    assert in_place[0] is delta and delta.tobytes() == dx.tobytes()
