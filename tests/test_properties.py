"""Property tests: every public kernel of bnkernels against its pure-NumPy twin.

Oracle: ``bnkernels.reference``, the twin with the same signatures, written as
ordinary NumPy expressions in the input's dtype (NumPy's pairwise sums, no
Darknet operation order).

Inputs: shapes (N, C, H, W) with each size in 1..5 (explicit examples pin
N = 1, C = 1, H*W = 1 and n = N*H*W = 1), float32 and float64 as separate
parametrizations, values from ``numpy.random.default_rng(seed)`` with the seed
drawn by Hypothesis, so a failing example is reproduced from its printed seed.

Tolerance: a result passes when, elementwise,

    |actual - expected| <= rtol * |expected| + atol * magnitude

where ``magnitude`` is the size of the terms the result is computed from,
evaluated in float64 with absolute values (for a sum, the sum of the absolute
values of its terms; for an elementwise formula, the sum of the absolute values
of its parts). Any summation order is within about n * u * magnitude of the
exact value, with n <= 125 terms here and u the unit roundoff:

* float64: u = 1.1e-16, so 125 u = 1.4e-14; rtol = 1e-10 and atol = 1e-12
  leave a wide margin for rounding while a wrong epsilon, epsilon placement,
  n versus n - 1 or a missing term (all >= 1e-7 relative) still fails.
* float32: u = 6e-8. The Darknet kernels sum sequentially in float32 (Darknet's
  order) and the standard kernels in float64, while the reference sums pairwise
  in float32; each may be off by up to 125 u = 7.5e-6 times the magnitude, so
  rtol = atol = 1e-5. Formula errors are the float64 runs' job.

NaN must appear in the same places on both sides (Darknet's variance of a
single value is 0/0). Every call into bnkernels goes through ``call`` below,
which also checks that the call left its inputs bitwise unchanged.
"""
from contextlib import nullcontext
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import assume, example, given, settings, strategies as st

import bnkernels
from bnkernels import darknet, reference
from forks import numerics_of

# 60 examples per test keeps the whole file well under 20 s on two slow cores;
# derandomize makes every run draw the same examples, database=None writes nothing.
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None)

DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64],
                                 ids=["float32", "float64"])
TOLERANCE = {np.dtype(np.float64): (1e-10, 1e-12),   # (rtol, atol): see above
             np.dtype(np.float32): (1e-5, 1e-5)}

SHAPES = st.tuples(*[st.integers(1, 5)] * 4)
SEEDS = st.integers(0, 2**32 - 1)
# N = 1, C = 1, H*W = 1, n = 1, and the largest shape, on every run.
EDGE_SHAPES = [(1, 1, 1, 1), (1, 3, 1, 1), (4, 1, 1, 1), (1, 2, 5, 4),
               (3, 2, 1, 1), (5, 5, 5, 5)]

AXES = (0, 2, 3)          # every axis of NCHW but the channel axis
BACKWARD_EPS = 1e-5       # Darknet's backward epsilon, both forks


def edge_examples(**extra):
    """Run the EDGE_SHAPES as explicit examples, with the extra arguments given."""
    def decorate(test):
        for seed, shape in enumerate(EDGE_SHAPES):
            test = example(shape=shape, seed=seed, **extra)(test)
        return test
    return decorate


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def f64(a):
    return np.asarray(a, dtype=np.float64)


def per_channel(v):
    return f64(v)[None, :, None, None]


def values_per_channel(shape):
    return shape[0] * shape[2] * shape[3]


def assert_bitwise_equal(actual, expected):
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    assert actual.tobytes() == expected.tobytes(), (actual, expected)


def assert_matches(actual, expected, magnitude=0.0):
    """actual equals the reference's expected within the module's tolerance."""
    assert isinstance(actual, np.ndarray)
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    rtol, atol = TOLERANCE[actual.dtype]
    a, e = f64(actual), f64(expected)
    nan = np.isnan(e)
    assert np.array_equal(np.isnan(a), nan), f"NaN in different places:\n{a}\n{e}"
    magnitude = np.nan_to_num(np.broadcast_to(f64(magnitude), e.shape), nan=0.0)
    error = np.abs(a - e)[~nan]
    allowed = (rtol * np.abs(e) + atol * magnitude)[~nan]
    worst = np.argmax(error - allowed) if error.size else None
    assert np.all(error <= allowed), (
        f"off by {error[worst]:.3g} where {allowed[worst]:.3g} is allowed\n"
        f"actual:\n{actual}\nexpected:\n{expected}")


def call(fn, *args, writes=(), **kwargs):
    """fn(*args, **kwargs), asserting that it changed no array argument bitwise
    except `out` and the arrays in `writes` (which it documents as written)."""
    written = [kwargs.get("out"), *writes]
    inputs = [a for a in (*args, *kwargs.values())
              if isinstance(a, np.ndarray) and not any(a is w for w in written)]
    before = [a.copy() for a in inputs]
    result = fn(*args, **kwargs)
    for now, then in zip(inputs, before):
        assert_bitwise_equal(now, then)
    return result


def tensor(rng, shape, dtype):
    """Normal values around a per-channel offset, with a random spread."""
    offset = rng.uniform(-2, 2, (1, shape[1], 1, 1))
    return rng.normal(offset, rng.uniform(0.5, 3), shape).astype(dtype)


def vector(rng, c, dtype, low=None, high=None):
    if low is None:
        return rng.normal(0, 1, c).astype(dtype)
    return rng.uniform(low, high, c).astype(dtype)


def kernel_inputs(shape, dtype, seed):
    """Every argument a Darknet kernel takes, of one shape and dtype."""
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = tensor(rng, shape, dtype)
    return SimpleNamespace(
        x=x,
        x_norm=tensor(rng, shape, dtype),
        delta=tensor(rng, shape, dtype),
        mean=x.mean(axis=AXES).astype(dtype),
        variance=vector(rng, c, dtype, 0.25, 4.0),   # away from 0: kernels' inputs
        scales=vector(rng, c, dtype),
        biases=vector(rng, c, dtype),
        mean_delta=vector(rng, c, dtype),
        variance_delta=vector(rng, c, dtype),
        n=values_per_channel(shape),
    )


# ---------------------------------------------------------------------------
# bnkernels.darknet against bnkernels.reference
# ---------------------------------------------------------------------------

def _centered(a):
    """|x| + |mean|: the size of x - mean before cancellation."""
    return np.abs(f64(a.x)) + np.abs(per_channel(a.mean))


def _normalize_delta_magnitude(a):
    return (np.abs(f64(a.delta)) / np.sqrt(per_channel(a.variance))
            + np.abs(per_channel(a.variance_delta)) * 2 * _centered(a) / a.n
            + np.abs(per_channel(a.mean_delta)) / a.n)


class Kernel(SimpleNamespace):
    """One public Darknet kernel: its arguments (names in kernel_inputs), fixed
    keyword arguments, and the magnitude of the terms of its result."""

    @property
    def mine(self):
        return getattr(darknet, self.function)

    @property
    def twin(self):
        return getattr(reference, self.function)

    def arguments(self, a):
        return [getattr(a, name) for name in self.args]


KERNELS = {k.name: k for k in [
    Kernel(name="mean_cpu", function="mean_cpu", args=("x",), kwargs={},
           magnitude=lambda a: np.abs(f64(a.x)).sum(axis=AXES) / a.n),
    Kernel(name="variance_cpu", function="variance_cpu", args=("x", "mean"), kwargs={},
           magnitude=lambda a: (_centered(a) ** 2).sum(axis=AXES) / max(a.n - 1, 1)),
    *[Kernel(name=f"normalize_cpu-{flavor}", function="normalize_cpu",
             args=("x", "mean", "variance"), kwargs={"numerics": numerics_of(flavor)},
             magnitude=lambda a: _centered(a) / np.sqrt(per_channel(a.variance)))
      for flavor in ("pjreddie", "alexeyab")],
    Kernel(name="scale_bias", function="scale_bias", args=("x", "scales"), kwargs={},
           magnitude=lambda a: np.abs(f64(a.x) * per_channel(a.scales))),
    Kernel(name="add_bias", function="add_bias", args=("x", "biases"), kwargs={},
           magnitude=lambda a: np.abs(f64(a.x)) + np.abs(per_channel(a.biases))),
    Kernel(name="backward_bias", function="backward_bias", args=("delta",), kwargs={},
           magnitude=lambda a: np.abs(f64(a.delta)).sum(axis=AXES)),
    Kernel(name="backward_scale_cpu", function="backward_scale_cpu",
           args=("x_norm", "delta"), kwargs={},
           magnitude=lambda a: np.abs(f64(a.x_norm) * f64(a.delta)).sum(axis=AXES)),
    Kernel(name="mean_delta_cpu", function="mean_delta_cpu", args=("delta", "variance"),
           kwargs={},
           magnitude=lambda a: (np.abs(f64(a.delta)).sum(axis=AXES)
                                / np.sqrt(f64(a.variance) + BACKWARD_EPS))),
    Kernel(name="variance_delta_cpu", function="variance_delta_cpu",
           args=("x", "delta", "mean", "variance"), kwargs={},
           magnitude=lambda a: ((np.abs(f64(a.delta)) * _centered(a)).sum(axis=AXES)
                                * 0.5 * (f64(a.variance) + BACKWARD_EPS) ** -1.5)),
    *[Kernel(name=f"normalize_delta_cpu-{flavor}", function="normalize_delta_cpu",
             args=("x", "mean", "variance", "mean_delta", "variance_delta", "delta"),
             kwargs={"numerics": numerics_of(flavor)}, magnitude=_normalize_delta_magnitude)
      for flavor in ("pjreddie", "alexeyab")],
]}

# The elementwise kernels, and the argument that out= may be (Darknet works in place).
IN_PLACE = {"normalize_cpu-pjreddie": "x", "normalize_cpu-alexeyab": "x",
            "scale_bias": "x", "add_bias": "x",
            "normalize_delta_cpu-pjreddie": "delta",
            "normalize_delta_cpu-alexeyab": "delta"}
ACCUMULATING = ["backward_bias", "backward_scale_cpu"]


@pytest.mark.parametrize("name", KERNELS)
@DTYPES
@SETTINGS
@edge_examples()
@given(shape=SHAPES, seed=SEEDS)
def test_darknet_kernel_matches_reference_and_leaves_inputs_unchanged(
        name, dtype, shape, seed):
    kernel, a = KERNELS[name], kernel_inputs(shape, dtype, seed)
    args = kernel.arguments(a)
    actual = call(kernel.mine, *args, **kernel.kwargs)
    expected = kernel.twin(*args, **kernel.kwargs)
    assert_matches(actual, expected, kernel.magnitude(a))


@DTYPES
@SETTINGS
@edge_examples()
@given(shape=SHAPES, seed=SEEDS)
def test_variance_of_one_value_per_channel_is_nan_on_both_sides(dtype, shape, seed):
    a = kernel_inputs(shape, dtype, seed)
    variance = call(darknet.variance_cpu, a.x, a.mean)
    twin = reference.variance_cpu(a.x, a.mean)
    if a.n == 1:   # Darknet divides by n - 1 = 0
        assert np.isnan(variance).all() and np.isnan(twin).all()
    else:
        assert np.isfinite(variance).all() and np.isfinite(twin).all()


@pytest.mark.parametrize("name", ACCUMULATING)
@DTYPES
@SETTINGS
@edge_examples()
@given(shape=SHAPES, seed=SEEDS)
def test_gradient_sums_accumulate_into_out_like_reference(name, dtype, shape, seed):
    kernel, a = KERNELS[name], kernel_inputs(shape, dtype, seed)
    args = kernel.arguments(a)
    start = vector(np.random.default_rng(seed + 1), shape[1], dtype)
    out = start.copy()
    result = call(kernel.mine, *args, out=out, accumulate=True)
    expected = kernel.twin(*args, out=start.copy(), accumulate=True)
    assert result is out
    assert_matches(result, expected, kernel.magnitude(a) + np.abs(f64(start)))


@pytest.mark.parametrize("name", KERNELS)
@DTYPES
@SETTINGS
@edge_examples()
@given(shape=SHAPES, seed=SEEDS)
def test_darknet_kernel_writes_into_given_out_and_returns_it(name, dtype, shape, seed):
    kernel, a = KERNELS[name], kernel_inputs(shape, dtype, seed)
    args = kernel.arguments(a)
    fresh = kernel.mine(*args, **kernel.kwargs)
    out = np.full_like(fresh, np.nan)   # must be overwritten, not read
    result = call(kernel.mine, *args, out=out, **kernel.kwargs)
    assert result is out
    assert_bitwise_equal(result, fresh)


@pytest.mark.parametrize("name", IN_PLACE)
@DTYPES
@SETTINGS
@edge_examples()
@given(shape=SHAPES, seed=SEEDS)
def test_elementwise_kernel_works_in_place_like_darknet(name, dtype, shape, seed):
    kernel, a = KERNELS[name], kernel_inputs(shape, dtype, seed)
    fresh = kernel.mine(*kernel.arguments(a), **kernel.kwargs)
    target = getattr(a, IN_PLACE[name]).copy()
    setattr(a, IN_PLACE[name], target)
    result = call(kernel.mine, *kernel.arguments(a), out=target, **kernel.kwargs)
    assert result is target
    assert_bitwise_equal(result, fresh)


@pytest.mark.parametrize("flavor", ("pjreddie", "alexeyab"))
@DTYPES
@SETTINGS
@edge_examples(momentum=None)
@given(shape=SHAPES, seed=SEEDS, momentum=st.sampled_from([None, 0.0, 0.3, 1.0]))
def test_rolling_update_matches_reference_in_place(flavor, dtype, shape, seed, momentum):
    rng = np.random.default_rng(seed)
    start, stat = vector(rng, shape[1], dtype), vector(rng, shape[1], dtype)
    mine, twin = start.copy(), start.copy()
    result = call(darknet.rolling_update, mine, stat, momentum=momentum,
                  numerics=numerics_of(flavor),
                  writes=(mine,))
    reference.rolling_update(twin, stat, momentum=momentum, numerics=numerics_of(flavor))
    assert result is mine
    assert_matches(mine, twin, np.abs(f64(start)) + np.abs(f64(stat)))


# ---------------------------------------------------------------------------
# batch_norm_forward / batch_norm_backward against bnkernels.reference
# ---------------------------------------------------------------------------

def _forward_denominator(numerics, variance, eps):
    if numerics == "darknet":           # pjreddie: eps outside the square root
        return np.sqrt(variance) + eps
    return np.sqrt(variance + eps)      # standard, darknet-alexeyab


def _backward_denominator(numerics, variance):
    if numerics == "darknet-alexeyab":  # AlexeyAB's normalize_delta_cpu: outside
        return np.sqrt(variance) + BACKWARD_EPS
    return np.sqrt(variance + BACKWARD_EPS)


def batch_norm_magnitudes(numerics, training, x, dy, weight, bias, start, momentum,
                          twin_saved):
    """The size of the terms of y, the running statistics, dx, dweight, dbias."""
    n = values_per_channel(x.shape)
    mean, variance = f64(twin_saved.mean), f64(twin_saved.variance)
    w = 1.0 if weight is None else np.abs(per_channel(weight))
    b = 0.0 if bias is None else np.abs(per_channel(bias))
    g = np.abs(f64(dy))
    centered = np.abs(f64(x)) + np.abs(per_channel(mean))
    denom = per_channel(_forward_denominator(numerics, variance, twin_saved.eps))
    m = bnkernels.defaults(numerics)[1] if momentum is None else momentum
    mag = SimpleNamespace(y=w * centered / denom + b)
    if start is not None:
        mag.running_mean = ((1 - m) * np.abs(f64(start[0]))
                            + m * np.abs(f64(x)).sum(axis=AXES) / max(n, 1))
        mag.running_var = ((1 - m) * np.abs(f64(start[1]))
                           + m * (centered ** 2).sum(axis=AXES) / max(n - 1, 1))
    if numerics == "standard":
        xhat = centered / denom
        sum_g, sum_g_xhat = g.sum(axis=AXES), (g * xhat).sum(axis=AXES)
        if training:
            mag.dx = w / denom * (g + per_channel(sum_g) / n
                                  + xhat * per_channel(sum_g_xhat) / n)
        else:
            mag.dx = w / denom * g
        mag.dweight, mag.dbias = sum_g_xhat, sum_g
    else:
        scaled = g * w
        shifted = variance + BACKWARD_EPS
        mean_delta = scaled.sum(axis=AXES) / np.sqrt(shifted)
        variance_delta = (scaled * centered).sum(axis=AXES) * 0.5 * shifted ** -1.5
        mag.dx = (scaled / per_channel(_backward_denominator(numerics, variance))
                  + per_channel(variance_delta) * 2 * centered / n
                  + per_channel(mean_delta) / n)
        mag.dweight, mag.dbias = (g * centered / denom).sum(axis=AXES), g.sum(axis=AXES)
    return mag


@pytest.mark.parametrize("training", [True, False], ids=["training", "eval"])
@pytest.mark.parametrize("numerics", bnkernels.NUMERICS)
@DTYPES
@SETTINGS
@edge_examples(affine=True, track=True, momentum=None)
@given(shape=SHAPES, seed=SEEDS, affine=st.booleans(), track=st.booleans(),
       momentum=st.sampled_from([None, 0.0, 0.5, 1.0]))
def test_batch_norm_matches_reference_forward_and_backward(
        numerics, training, dtype, shape, seed, affine, track, momentum):
    track = track or not training      # eval mode needs the running statistics
    rng = np.random.default_rng(seed)
    c, n = shape[1], values_per_channel(shape)
    x, dy = tensor(rng, shape, dtype), tensor(rng, shape, dtype)
    weight, bias = ((vector(rng, c, dtype), vector(rng, c, dtype)) if affine
                    else (None, None))
    start = ((vector(rng, c, dtype), vector(rng, c, dtype, 0.25, 4.0)) if track
             else None)
    mine = (start[0].copy(), start[1].copy()) if track else (None, None)
    twin = (start[0].copy(), start[1].copy()) if track else (None, None)
    x_before = x.copy()
    options = dict(training=training, momentum=momentum, numerics=numerics)
    updated = mine if training and track else ()

    if numerics == "standard" and training and n == 1:   # PyTorch's rule
        with pytest.raises(ValueError, match="more than 1 value per channel"):
            call(bnkernels.batch_norm_forward, x, weight, bias, *mine, **options)
        with pytest.raises(ValueError, match="more than 1 value per channel"):
            reference.batch_norm_forward(x, weight, bias, *twin, **options)
        return
    # Darknet's variance of one value is 0/0: both sides warn and give NaN.
    def nan_variance():
        return (pytest.warns(RuntimeWarning, match="one value per channel")
                if numerics != "standard" and training and n == 1 else nullcontext())

    with nan_variance():
        y, saved = call(bnkernels.batch_norm_forward, x, weight, bias, *mine,
                        writes=updated, **options)
    with nan_variance():
        y_twin, saved_twin = reference.batch_norm_forward(x, weight, bias, *twin,
                                                          **options)
    mag = batch_norm_magnitudes(numerics, training, x, dy, weight, bias,
                                start if track else None, momentum, saved_twin)
    assert_matches(y, y_twin, mag.y)
    if track:
        assert_matches(mine[0], twin[0], mag.running_mean)
        assert_matches(mine[1], twin[1], mag.running_var)

    if numerics != "standard" and not training:
        return   # Darknet has no eval-mode backward (test_bad_input checks it raises)
    dx, dweight, dbias = call(bnkernels.batch_norm_backward, dy, saved)
    dx_twin, dweight_twin, dbias_twin = reference.batch_norm_backward(dy, saved_twin)
    assert_matches(dx, dx_twin, mag.dx)
    if affine:
        assert_matches(dweight, dweight_twin, mag.dweight)
        assert_matches(dbias, dbias_twin, mag.dbias)
    else:
        assert dweight is None and dbias is None
    assert_bitwise_equal(x, x_before)   # saved references x; nothing wrote to it


@pytest.mark.parametrize("numerics", bnkernels.NUMERICS)
@DTYPES
@SETTINGS
@given(shape=SHAPES, seed=SEEDS, training=st.booleans())
def test_batch_norm_writes_into_given_out_and_in_place(numerics, dtype, shape, seed,
                                                        training):
    assume(values_per_channel(shape) > 1)   # n == 1 has its own tests
    rng = np.random.default_rng(seed)
    c = shape[1]
    x, dy = tensor(rng, shape, dtype), tensor(rng, shape, dtype)
    weight, bias = vector(rng, c, dtype), vector(rng, c, dtype)
    start = (vector(rng, c, dtype), vector(rng, c, dtype, 0.25, 4.0))

    def forward(x, out=None):
        stats = (start[0].copy(), start[1].copy())
        y, saved = call(bnkernels.batch_norm_forward, x, weight, bias, *stats,
                        training=training, numerics=numerics, out=out,
                        writes=stats if training else ())
        return y, saved, stats

    y, saved, stats = forward(x)
    out = np.full_like(x, np.nan)
    y_out, saved_out, stats_out = forward(x, out=out)
    assert y_out is out
    assert_bitwise_equal(y_out, y)
    for a, b in zip(stats_out, stats):
        assert_bitwise_equal(a, b)

    x_in_place = x.copy()
    y_in_place, _, stats_in_place = forward(x_in_place, out=x_in_place)
    assert y_in_place is x_in_place
    assert_bitwise_equal(y_in_place, y)
    for a, b in zip(stats_in_place, stats):
        assert_bitwise_equal(a, b)

    if numerics != "standard" and not training:
        return   # no Darknet eval-mode backward
    dx, dweight, dbias = call(bnkernels.batch_norm_backward, dy, saved)
    out = np.full_like(dy, np.nan)
    dx_out, dweight_out, dbias_out = call(bnkernels.batch_norm_backward, dy, saved_out,
                                          out=out)
    assert dx_out is out
    for a, b in [(dx_out, dx), (dweight_out, dweight), (dbias_out, dbias)]:
        assert_bitwise_equal(a, b)

    dy_in_place = dy.copy()
    dx_in_place, dweight_in_place, dbias_in_place = call(
        bnkernels.batch_norm_backward, dy_in_place, saved, out=dy_in_place)
    assert dx_in_place is dy_in_place
    for a, b in [(dx_in_place, dx), (dweight_in_place, dweight),
                 (dbias_in_place, dbias)]:
        assert_bitwise_equal(a, b)
