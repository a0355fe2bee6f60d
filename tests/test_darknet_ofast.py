"""Darknet as each fork's default -Ofast build computes it, bit for bit.

Oracles: the ``ofast_*`` keys of the golden vectors (what Darknet's own code,
compiled with each fork's Makefile default -Ofast, gave; both forks), the
strict keys for every output -Ofast leaves unchanged, and the NumPy twin
(bnkernels.reference with build="ofast"), which spells the -Ofast operation
order out with NumPy arrays of the same dtype: the C kernels must equal it bit
for bit in float32 and in float64. Tolerance: none anywhere.
"""
import contextlib
from pathlib import Path

import numpy as np
import pytest

from bnkernels import BatchNorm2d, NUMERICS, batch_norm_backward, batch_norm_forward, darknet
from bnkernels import reference as ref
from bnkernels.tools.verify import bitwise_equal, sha256_of

# the vectors' fork names -> the kernels' numerics= and the -Ofast layers' numerics=
FORK = {"pjreddie": "darknet", "alexeyab": "darknet-alexeyab", "AlexeyAB": "darknet-alexeyab"}
OFAST = {"pjreddie": "darknet-ofast", "alexeyab": "darknet-alexeyab-ofast"}


def assert_ofast_dx(mine, z):
    """mine is the -Ofast dx: its SHA-256 is the file's, and on the stored
    batch items (the first len(out_batch_index)) it is the strict dx with the
    stored differences put in."""
    assert (sha256_of(mine) == z["sha256_ofast_dx"]).all(), "ofast dx: SHA-256 differs"
    rows = z["out_batch_index"]
    assert rows.tolist() == list(range(len(rows)))
    expected = z["dx"].ravel().copy()
    idx = z["ofast_dx_idx"]
    stored = idx < expected.size
    expected[idx[stored]] = z["ofast_dx_val"][stored]
    assert_same(mine[rows], expected.reshape(z["dx"].shape), "dx")


def assert_same(mine, expected, what):
    assert mine.dtype == expected.dtype == np.float32
    assert bitwise_equal(mine, expected), (
        f"{what} differs from Darknet -Ofast: max abs diff "
        f"{np.nanmax(np.abs(mine.astype(np.float64) - expected)):.3g}")


def scaled_delta(z):
    return z["delta"] * z["scales"][None, :, None, None]


# --- the kernels against the vectors -----------------------------------------

def test_backward_bias_ofast_sums_rows_in_four_lanes(vector):
    _, z = vector
    assert_same(darknet.backward_bias(z["delta"], build="ofast"),
                z["ofast_backward_bias"], "backward_bias")


def test_backward_scale_cpu_ofast_sums_rows_in_four_lanes(vector):
    flavor, z = vector
    x_norm = darknet.normalize_cpu(z["x"], z["mean"], z["variance"], numerics=FORK[flavor])
    assert_same(darknet.backward_scale_cpu(x_norm, z["delta"], build="ofast"),
                z["ofast_scale_updates"], "scale_updates")


def test_normalize_delta_cpu_ofast_multiplies_by_the_reciprocal(vector):
    """mean_delta and variance_delta are the strict build's (-Ofast leaves
    them), so the stored ones feed the -Ofast dx."""
    flavor, z = vector
    mine = darknet.normalize_delta_cpu(z["x"], z["mean"], z["variance"], z["mean_delta"],
                                       z["variance_delta"], scaled_delta(z), numerics=FORK[flavor],
                                       build="ofast")
    assert_ofast_dx(mine, z)


@pytest.mark.parametrize("build", ["ofast", "ofast-avx"])
def test_forward_and_mean_variance_delta_are_the_strict_ones_in_ofast(vector, build):
    """-Ofast leaves the forward and mean_delta/variance_delta alone: the
    strict keys are the oracle."""
    flavor, z = vector
    rows = z["out_batch_index"]
    mean = darknet.mean_cpu(z["x"], build=build)
    variance = darknet.variance_cpu(z["x"], mean, build=build)
    assert_same(mean, z["mean"], "mean")
    assert_same(variance, z["variance"], "variance")
    x_norm = darknet.normalize_cpu(z["x"], mean, variance, numerics=FORK[flavor], build=build)
    assert_same(x_norm[rows], z["x_norm"], "x_norm")
    assert_same(darknet.scale_add_bias(x_norm, z["scales"], z["biases"], build=build)[rows],
                z["out_train"], "out_train")
    rolling = darknet.rolling_update(z["rolling_variance_in"].copy(), variance, numerics=FORK[flavor],
                                     build=build)
    assert_same(rolling, z["rolling_variance_out"], "rolling_variance_out")
    g = scaled_delta(z)
    assert_same(darknet.mean_delta_cpu(g, z["variance"], build=build),
                z["mean_delta"], "mean_delta")
    assert_same(darknet.variance_delta_cpu(z["x"], g, z["mean"], z["variance"],
                                           build=build),
                z["variance_delta"], "variance_delta")


def test_fused_backward_ofast_gives_the_ofast_keys(vector):
    flavor, z = vector
    x_norm = darknet.normalize_cpu(z["x"], z["mean"], z["variance"], numerics=FORK[flavor])
    delta = z["delta"].copy()
    dx, scale_updates, bias_updates = darknet.backward_batchnorm_layer(
        z["x"], x_norm, delta, z["mean"], z["variance"], z["scales"], numerics=FORK[flavor],
        build="ofast", out=delta)   # in place, as Darknet
    assert dx is delta
    assert_ofast_dx(dx, z)
    assert_same(scale_updates, z["ofast_scale_updates"], "scale_updates")
    assert_same(bias_updates, z["ofast_backward_bias"], "backward_bias")


# --- the layer and the functional API ----------------------------------------

def test_ofast_layer_reproduces_each_forks_default_build(vector):
    flavor, z = vector
    i = {k: z[k].copy() for k in ("x", "delta", "scales", "biases", "rolling_mean_in",
                                  "rolling_variance_in")}
    layer = BatchNorm2d(i["x"].shape[1], numerics=OFAST[flavor])
    layer.weight[...], layer.bias[...] = i["scales"], i["biases"]
    layer.running_mean[...] = i["rolling_mean_in"]
    layer.running_var[...] = i["rolling_variance_in"]
    rows = z["out_batch_index"]

    # the forward is the strict build's, bit for bit
    assert_same(layer.forward(i["x"], training=False)[rows], z["out_infer"], "out_infer")
    one_value = z["n_per_channel"] == 1
    with pytest.warns(RuntimeWarning) if one_value else contextlib.nullcontext():
        y = layer.forward(i["x"], training=True)
    assert_same(y[rows], z["out_train"], "out_train")
    assert_same(layer.running_mean, z["rolling_mean_out"], "rolling_mean_out")
    assert_same(layer.running_var, z["rolling_variance_out"], "rolling_variance_out")

    dx = layer.backward(i["delta"])
    assert_ofast_dx(dx, z)
    assert_same(layer.grad_weight, z["ofast_scale_updates"], "scale_updates")
    assert_same(layer.grad_bias, z["ofast_backward_bias"], "backward_bias")
    if flavor == "alexeyab":   # its CPU layer never computes the bias gradient
        assert not z["ofast_bias_updates"].any()
    else:
        assert bitwise_equal(z["ofast_bias_updates"], z["ofast_backward_bias"])
    for key in i:   # inputs untouched
        assert bitwise_equal(i[key], z[key])


def test_ofast_functional_api_matches_the_vectors(vector):
    flavor, z = vector
    running_mean, running_var = z["rolling_mean_in"].copy(), z["rolling_variance_in"].copy()
    one_value = z["n_per_channel"] == 1
    with pytest.warns(RuntimeWarning) if one_value else contextlib.nullcontext():
        y, saved = batch_norm_forward(z["x"], z["scales"], z["biases"], running_mean,
                                      running_var, numerics=OFAST[flavor])
    dx, dweight, dbias = batch_norm_backward(z["delta"], saved)
    assert_same(y[z["out_batch_index"]], z["out_train"], "out_train")
    assert_same(running_var, z["rolling_variance_out"], "rolling_variance_out")
    assert_ofast_dx(dx, z)
    assert_same(dweight, z["ofast_scale_updates"], "scale_updates")
    assert_same(dbias, z["ofast_backward_bias"], "backward_bias")


def test_the_vectors_tell_the_two_builds_apart():
    """Without this the tests above could pass with the strict kernels: in the
    vectors, -Ofast changes scale_updates, bias sums and dx, for both forks."""
    from bnkernels.tools import verify
    changed = {"pjreddie": set(), "alexeyab": set()}
    for flavor, path in verify.vector_files():
        with np.load(path) as z:
            if not bitwise_equal(z["ofast_scale_updates"], z["scale_updates"]):
                changed[flavor].add("scale_updates")
            if not bitwise_equal(z["ofast_backward_bias"], z["backward_bias"]):
                changed[flavor].add("backward_bias")
            if len(z["ofast_dx_idx"]):
                changed[flavor].add("dx")
    assert changed == {f: {"scale_updates", "backward_bias", "dx"} for f in changed}


# --- the NumPy twin, bit for bit, both dtypes ---------------------------------

SHAPES = [(3, 5, 7, 11), (2, 3, 1, 3), (4, 9, 2, 2), (1, 8, 5, 5), (2, 10, 1, 1),
          (3, 17, 3, 3), (2, 4, 6, 9), (2, 3, 1, 6), (2, 9, 1, 8), (2, 3, 1, 13),
          (2, 3, 1, 15), (1, 3, 4, 5),
          # 16 float32 channels and more: the transposed tiles, with rows whose
          # lanes end at, before and mid-step of 8 (darknet_ofast.inc)
          (2, 20, 5, 5), (2, 16, 4, 7), (1, 33, 3, 17)]


def random_case(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
    delta = rng.standard_normal(shape).astype(dtype)
    scales = rng.uniform(0.25, 2, shape[1]).astype(dtype)
    return x, delta, scales


@pytest.mark.parametrize("build", ["ofast", "ofast-avx"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("flavor", ["pjreddie", "alexeyab"])
@pytest.mark.parametrize("shape", SHAPES)
def test_c_kernels_equal_the_numpy_emulation_of_ofast(shape, flavor, dtype, build):
    """float64 follows the same order in double, so float64 is checked the
    same way against the twin in float64 (S = H*W below, at and above 4 and
    8, with and without an epilogue and a tail)."""
    x, delta, scales = random_case(shape, dtype, seed=sum(shape))
    mean = darknet.mean_cpu(x)
    var = darknet.variance_cpu(x, mean)
    x_norm = darknet.normalize_cpu(x, mean, var, numerics=FORK[flavor])
    bias = darknet.backward_bias(delta, build=build)
    scale = darknet.backward_scale_cpu(x_norm, delta, build=build)
    assert bias.dtype == scale.dtype == dtype
    assert bitwise_equal(bias, ref.backward_bias(delta, build=build))
    assert bitwise_equal(scale, ref.backward_scale_cpu(x_norm, delta, build=build))
    g = darknet.scale_bias(delta, scales)
    md = darknet.mean_delta_cpu(g, var)
    vd = darknet.variance_delta_cpu(x, g, mean, var)
    dx = darknet.normalize_delta_cpu(x, mean, var, md, vd, g, numerics=FORK[flavor], build=build)
    assert bitwise_equal(dx, ref.normalize_delta_cpu(x, mean, var, md, vd, g, numerics=FORK[flavor],
                                                     build=build))
    fused = darknet.backward_batchnorm_layer(x, x_norm, delta, mean, var, scales,
                                             numerics=FORK[flavor], build=build)
    assert bitwise_equal(fused[0], dx)
    assert bitwise_equal(fused[1], scale)
    assert bitwise_equal(fused[2], bias)


def test_ofast_lane_order_by_hand():
    """One row of 7 float32 values, worked by hand: with S = 7 each lane j
    holds v[j] alone, so the row is (v0 + v2) + (v1 + v3), then v4, v5, v6
    added one by one. The values make the sequential order round
    differently."""
    v = np.array([1e8, 1.0, -1e8, 1.0, 0.5, 0.25, 3.0], np.float32)
    f = np.float32
    row = ((v[0] + v[2]) + (v[1] + v[3])) + v[4] + v[5] + v[6]
    sequential = f(0)
    for a in v:
        sequential = f(sequential + a)
    assert row != sequential      # the two orders differ here
    delta = v.reshape(1, 1, 1, 7)
    assert darknet.backward_bias(delta, build="ofast")[0] == row
    assert darknet.backward_bias(delta)[0] == sequential
    ones = np.ones_like(delta)
    assert darknet.backward_scale_cpu(ones, delta, build="ofast")[0] == row


def test_dx_mean_term_is_a_float_reciprocal_multiply():
    """With x = mean and delta = 0, dx is the mean term alone:
    fl(md * fl(1/n)) for -Ofast, fl(md / n) strict; n = 3 makes them differ
    for some md."""
    f = np.float32
    n = 3
    mds = np.float32(1) + np.arange(64, dtype=np.float32) * np.float32(2.0 ** -20)
    inv = f(f(1) / f(n))
    differ = [md for md in mds if f(md * inv) != f(md / f(n))]
    assert differ
    md = np.array([differ[0]], np.float32)
    x = np.zeros((1, 1, 1, n), np.float32)
    zeros = np.zeros(1, np.float32)
    args = (x, zeros, np.ones(1, np.float32), md, zeros, np.zeros_like(x))
    assert (darknet.normalize_delta_cpu(*args, build="ofast") == f(md[0] * inv)).all()
    assert (darknet.normalize_delta_cpu(*args) == f(md[0] / f(n))).all()


def test_ofast_keeps_subnormals_that_darknet_ofast_flushes():
    """bnkernels never sets flush-to-zero: a row of subnormal gradients sums
    to its exact value (oracle: the float64 sum, exact for these few
    multiples of the smallest subnormal), where Darknet's -Ofast program,
    running with FTZ/DAZ, gives 0 (docs/darknet-ofast.md)."""
    tiny = np.float32(1e-45)   # the smallest float32 subnormal
    delta = (np.arange(1, 13, dtype=np.float32) * tiny).reshape(1, 1, 3, 4)
    exact = delta.astype(np.float64).sum()
    for build in ("ofast", "ofast-avx"):
        total = darknet.backward_bias(delta, build=build)
        assert total[0] == exact and total[0] != 0


# --- bad input ---------------------------------------------------------------

def kernel_calls(module):
    x = np.ones((2, 3, 2, 2), np.float32)
    c = np.ones(3, np.float32)
    return {
        "mean_cpu": lambda **k: module.mean_cpu(x, **k),
        "variance_cpu": lambda **k: module.variance_cpu(x, c, **k),
        "normalize_cpu": lambda **k: module.normalize_cpu(x, c, c, **k),
        "scale_bias": lambda **k: module.scale_bias(x, c, **k),
        "add_bias": lambda **k: module.add_bias(x, c, **k),
        "scale_add_bias": lambda **k: module.scale_add_bias(x, c, c, **k),
        "rolling_update": lambda **k: module.rolling_update(c.copy(), c, **k),
        "backward_bias": lambda **k: module.backward_bias(x, **k),
        "backward_scale_cpu": lambda **k: module.backward_scale_cpu(x, x, **k),
        "mean_delta_cpu": lambda **k: module.mean_delta_cpu(x, c, **k),
        "variance_delta_cpu": lambda **k: module.variance_delta_cpu(x, x, c, c, **k),
        "normalize_delta_cpu": lambda **k: module.normalize_delta_cpu(x, c, c, c, c, x, **k),
    }


@pytest.mark.parametrize("module", [darknet, ref], ids=["darknet", "reference"])
@pytest.mark.parametrize("bad", ["fast", "Ofast-avx512", "", None, 1, b"ofast"])
def test_unknown_build_is_a_value_error_naming_build(module, bad):
    calls = kernel_calls(module)
    for name, call in calls.items():
        with pytest.raises(ValueError, match=r"build must be 'strict', 'ofast' or 'ofast-avx', got"):
            call(build=bad)
        call(build="ofast")   # and the good one works
    if module is darknet:
        x = np.ones((2, 3, 2, 2), np.float32)
        c = np.ones(3, np.float32)
        with pytest.raises(ValueError, match="build must be"):
            darknet.backward_batchnorm_layer(x, x, x, c, c, c, build=bad)


def test_unknown_build_writes_nothing():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)
    out = np.full(3, 7, np.float32)
    with pytest.raises(ValueError, match="build"):
        darknet.backward_bias(x, out=out, accumulate=True, build="fast")
    assert (out == 7).all()


def test_ofast_numerics_are_listed_and_misspellings_rejected():
    assert {"darknet-ofast", "darknet-alexeyab-ofast"} <= set(NUMERICS)
    with pytest.raises(ValueError, match="numerics must be one of .*darknet-ofast"):
        BatchNorm2d(3, numerics="darknet-fast")


def test_ofast_numerics_keep_each_forks_constants():
    assert BatchNorm2d(3, numerics="darknet-ofast").momentum == 0.01
    assert BatchNorm2d(3, numerics="darknet-alexeyab-ofast").momentum == 0.1
    assert BatchNorm2d(3, numerics="darknet-ofast").eps == np.float32(1e-6)
    assert BatchNorm2d(3, numerics="darknet-alexeyab-ofast").eps == np.float32(1e-5)


# --- the -Ofast builds on random inputs (tests/data/darknet_builds) -----------

BUILD_DATA = Path(__file__).parent / "data" / "darknet_builds"
BUILD_CASES = [(build, fork, i) for build in ("ofast", "ofast-avx")
               for fork in ("pjreddie", "AlexeyAB") for i in range(26)]


@pytest.fixture(scope="module")
def build_data():
    return {(b, f): dict(np.load(BUILD_DATA / b / f"{f}.npz"))
            for b in ("ofast", "ofast-avx") for f in ("pjreddie", "AlexeyAB")}


@pytest.mark.parametrize("build, fork, i", BUILD_CASES,
                         ids=[f"{b}-{f}-{i}" for b, f, i in BUILD_CASES])
def test_each_gcc_ofast_build_of_darknet_bit_for_bit(build_data, build, fork, i):
    """Oracle: Darknet's layer compiled with each fork's -Ofast (4 lanes) or
    AlexeyAB's CMake AVX flags (8 lanes), on shapes that reach every lane,
    epilogue and tail path (H*W = 1..20 and more)."""
    z = {k.split("/", 1)[1]: v for k, v in build_data[(build, fork)].items()
         if k.startswith(f"{i}/")}
    flavor = "pjreddie" if fork == "pjreddie" else "alexeyab"
    x = z["x"]
    mean = darknet.mean_cpu(x, build=build)
    variance = darknet.variance_cpu(x, mean, build=build)
    x_norm = darknet.normalize_cpu(x, mean, variance, numerics=FORK[flavor], build=build)
    assert_same(darknet.scale_add_bias(x_norm, z["scales"], z["biases"]), z["out_train"],
                "out_train")
    dx, scale_updates, bias_updates = darknet.backward_batchnorm_layer(
        x, x_norm, z["delta"], mean, variance, z["scales"], numerics=FORK[flavor], build=build)
    assert_same(dx, z["dx"], "dx")
    assert_same(scale_updates, z["scale_updates"], "scale_updates")
    if fork == "pjreddie":   # AlexeyAB's CPU layer leaves bias_updates at 0
        assert_same(bias_updates, z["bias_updates"], "bias_updates")
    else:
        assert not z["bias_updates"].any()
    g = darknet.scale_bias(z["delta"], z["scales"])
    assert_same(darknet.mean_delta_cpu(g, variance, build=build), z["mean_delta"], "mean_delta")
    # the other builds give other bits here, for most cases (see the next test)
    assert_same(ref.backward_scale_cpu(x_norm, z["delta"], build=build), z["scale_updates"],
                "the NumPy twin's scale_updates")


def test_the_two_ofast_builds_differ_from_each_other_and_from_strict(build_data):
    """The random cases tell the three orders apart (so the test above would
    fail with the wrong build): scale_updates differ between the 4- and
    8-lane builds where H*W >= 8, and from the strict order in most cases."""
    for fork in ("pjreddie", "AlexeyAB"):
        four, eight = build_data[("ofast", fork)], build_data[("ofast-avx", fork)]
        flavor = "pjreddie" if fork == "pjreddie" else "alexeyab"
        lanes_differ = strict_differs = 0
        for i in range(26):
            x = four[f"{i}/x"]
            mean = darknet.mean_cpu(x)
            x_norm = darknet.normalize_cpu(x, mean, darknet.variance_cpu(x, mean),
                                           numerics=FORK[flavor])
            strict = darknet.backward_scale_cpu(x_norm, four[f"{i}/delta"])
            lanes_differ += not bitwise_equal(four[f"{i}/scale_updates"],
                                              eight[f"{i}/scale_updates"])
            strict_differs += not bitwise_equal(four[f"{i}/scale_updates"], strict)
        assert lanes_differ >= 5 and strict_differs >= 10


def test_alexeyab_cmake_avx_numerics_use_the_eight_lanes(build_data):
    z = {k.split("/", 1)[1]: v for k, v in build_data[("ofast-avx", "AlexeyAB")].items()
         if k.startswith("24/")}
    layer = BatchNorm2d(z["x"].shape[1], numerics="darknet-alexeyab-ofast-avx")
    layer.weight[...], layer.bias[...] = z["scales"], z["biases"]
    layer.running_mean[...] = z["rolling_mean_in"]
    layer.running_var[...] = z["rolling_variance_in"]
    assert_same(layer.forward(z["x"]), z["out_train"], "out_train")
    assert_same(layer.running_var, z["rolling_variance"], "rolling_variance")
    assert_same(layer.backward(z["delta"]), z["dx"], "dx")
    assert_same(layer.grad_weight, z["scale_updates"], "scale_updates")


# --- the vocabulary: a fork and a build --------------------------------------

LAYER_SPLIT = {"darknet": ("darknet", "strict"),
               "darknet-alexeyab": ("darknet-alexeyab", "strict"),
               "darknet-ofast": ("darknet", "ofast"),
               "darknet-alexeyab-ofast": ("darknet-alexeyab", "ofast"),
               "darknet-alexeyab-ofast-avx": ("darknet-alexeyab", "ofast-avx")}


def test_each_layer_numerics_is_a_fork_and_a_build():
    assert darknet.LAYER_NUMERICS == tuple(LAYER_SPLIT)
    assert NUMERICS == ("standard",) + darknet.LAYER_NUMERICS
    for numerics, split in LAYER_SPLIT.items():
        assert darknet.split_numerics(numerics) == split
    for bad in ("standard", "darknet-ofast-avx", "pjreddie", None):
        with pytest.raises(ValueError, match="numerics must be one of"):
            darknet.split_numerics(bad)


@pytest.mark.parametrize("numerics", list(LAYER_SPLIT))
def test_the_numerics_functions_know_the_ofast_numerics(numerics):
    """A build moves no epsilon and changes no constant: each answer is the
    fork's (oracle: the strict fork's answer, and Darknet's constants)."""
    fork = LAYER_SPLIT[numerics][0]
    for direction in ("forward", "backward"):
        assert darknet.eps_inside_sqrt(numerics, direction) == \
            darknet.eps_inside_sqrt(fork, direction)
    assert darknet.eps_inside_sqrt(numerics, "forward") == (fork == "darknet-alexeyab")
    assert darknet.forward_eps(numerics) == darknet.forward_eps(fork)
    assert darknet.default_momentum(numerics) == {"darknet": 0.01,
                                                  "darknet-alexeyab": 0.1}[fork]
    from bnkernels import defaults
    assert defaults(numerics) == defaults(fork) == (darknet.forward_eps(fork),
                                                   darknet.default_momentum(fork))


@pytest.mark.parametrize("numerics", ["darknet-ofast", "darknet-alexeyab-ofast",
                                      "darknet-alexeyab-ofast-avx"])
def test_kernel_functions_take_the_fork_and_the_build_apart(numerics):
    """A layer's numerics given to a kernel function would say nothing of
    the build to the functions that take build=: a ValueError that spells
    the two arguments out, for each function that takes numerics=."""
    fork, build = LAYER_SPLIT[numerics]
    x = np.ones((2, 3, 2, 2), np.float32)
    c = np.ones(3, np.float32)
    expected = rf"numerics={numerics!r} names a fork and a build.*numerics={fork!r}, " \
               rf"build={build!r}"
    for module in (darknet, ref):
        calls = [lambda: module.normalize_cpu(x, c, c, numerics=numerics),
                 lambda: module.rolling_update(c.copy(), c, numerics=numerics),
                 lambda: module.normalize_delta_cpu(x, c, c, c, c, x, numerics=numerics)]
        if module is darknet:
            calls.append(lambda: darknet.backward_batchnorm_layer(x, x, x, c, c, c,
                                                                  numerics=numerics))
        for call in calls:
            with pytest.raises(ValueError, match=expected):
                call()


@pytest.mark.parametrize("bad", ["fast", "Ofast", None, 1])
def test_the_extension_checks_build_too(bad):
    from bnkernels import _kernels
    x = np.ones((2, 3, 2, 2), np.float32)
    c = np.ones(3, np.float32)
    out = np.full(3, 7, np.float32)
    for call in (lambda: _kernels.dk_backward_bias(x, out, True, build=bad),
                 lambda: _kernels.dk_backward_scale(x, x, out, True, build=bad),
                 lambda: _kernels.dk_normalize_delta(x, c, c, c, c, x, 1e-5, True, build=bad),
                 lambda: _kernels.dk_backward(x, x, x, c, c, c, 1e-5, True, build=bad)):
        with pytest.raises(ValueError, match="build must be 'strict', 'ofast' or 'ofast-avx'"):
            call()
    assert (out == 7).all()


@pytest.mark.parametrize("numerics", ["darknet-ofast", "darknet-alexeyab-ofast",
                                      "darknet-alexeyab-ofast-avx"])
def test_fold_batchnorm_puts_eps_where_the_fork_does(numerics):
    """Folding (inference) is the same for every build of a fork."""
    from bnkernels import fold_batchnorm
    rng = np.random.default_rng(3)
    w = rng.standard_normal((4, 2, 3, 3))
    stats = dict(running_mean=rng.standard_normal(4), running_var=rng.uniform(0, 2, 4),
                 weight=rng.standard_normal(4), bias=rng.standard_normal(4))
    fork = LAYER_SPLIT[numerics][0]
    mine = fold_batchnorm(w, None, numerics=numerics, **stats)
    strict = fold_batchnorm(w, None, numerics=fork, **stats)
    for a, b in zip(mine, strict):
        assert bitwise_equal(a, b)


@pytest.mark.parametrize("numerics", ["darknet-ofast", "darknet-alexeyab-ofast-avx"])
def test_the_reference_layer_runs_the_ofast_numerics_bit_for_bit(numerics):
    """The NumPy twin's layer follows the same build: in float64 its
    gradient sums and dx equal the C layer's bit for bit (both spell out
    the build's order; oracle: reference.BatchNorm2d)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4, 5, 7))
    dy = rng.standard_normal(x.shape)
    mine = BatchNorm2d(4, numerics=numerics, dtype=np.float64)
    twin = ref.BatchNorm2d(4, numerics=numerics, dtype=np.float64)
    assert bitwise_equal(mine.forward(x), twin.forward(x))
    assert bitwise_equal(mine.backward(dy), twin.backward(dy))
    assert bitwise_equal(mine.grad_weight, twin.grad_weight)
    assert bitwise_equal(mine.grad_bias, twin.grad_bias)


@pytest.mark.parametrize("numerics", ["darknet-ofast", "darknet-alexeyab-ofast",
                                      "darknet-alexeyab-ofast-avx"])
def test_torch_and_sync_batch_norm_refuse_the_ofast_numerics(numerics):
    """PyTorch and SyncBatchNorm2d have standard numerics only: an -Ofast
    layer is refused with a message naming its numerics, not converted."""
    from bnkernels.distributed import SyncBatchNorm2d
    with pytest.raises(ValueError, match=f"numerics='standard' only, got '{numerics}'"):
        SyncBatchNorm2d(3, numerics=numerics)
    torch = pytest.importorskip("torch")
    del torch
    import bnkernels.torch as bt
    from bnkernels import nn
    layer = nn.BatchNorm2d(3, numerics=numerics)
    with pytest.raises(ValueError, match=f"numerics='{numerics}'"):
        bt.to_torch(nn.Sequential(layer))
