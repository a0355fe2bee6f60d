"""The fast tier's float32 Darknet kernels multiply by a reciprocal where the
formula divides, and keep the product only where a check proves the float32
result equal (csrc/fast/darknet.inc, darknet_rows.inc); elsewhere they
divide. These tests put values where that check must send a block to the
division (quotients at or next to the midpoint of two floats, zeros, NaN,
infinities, extreme denominators) among ordinary values, and compare every
output bit with Darknet's expression evaluated in NumPy (float32 and float64
operations in Darknet's order, each rounded as IEEE prescribes)."""
import numpy as np
import pytest

from bnkernels import darknet

F32, F64 = np.float32, np.float64

# (numerics, variance, a): with mean 0 and the family's forward eps, the
# product a * fl64(1 / D) rounds to another float32 than Darknet's quotient
# a / D (found by scanning every float in [1, 2) for a few variances): the
# fast tier must see it and divide. The first few are near the midpoint of
# two floats without that difference.
NEAR_MIDPOINT = [
    ("darknet-alexeyab", 2.8608100414276123, 1.2724614143371582),
    ("darknet-alexeyab", 2.9055428504943848, 1.2403873205184937),
    ("darknet", 2.2114367485046387, 1.8229302167892456),
    ("darknet-alexeyab", 2.3609578609466553, 1.806162714958191),
    ("darknet-alexeyab", 2.2322096824645996, 1.6986435651779175),
    ("darknet", 3.4798130989074707, 1.6061450242996216),
]


def denominator(variance, eps, numerics):
    if numerics == "darknet":  # pjreddie: sqrt(var) + eps
        return np.sqrt(variance.astype(F64)) + F64(F32(eps))
    return np.sqrt((variance + F32(eps)).astype(F64))  # AlexeyAB: sqrt(fl(var + eps))


def normalize_oracle(x, mean, variance, eps, numerics):
    c = x.shape[1]
    centered = x - mean.reshape(1, c, 1)
    d = denominator(variance, eps, numerics).reshape(1, c, 1)
    with np.errstate(all="ignore"):
        return (centered.astype(F64) / d).astype(F32)


def same_bits(a, b):
    return np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.parametrize("numerics", ["darknet", "darknet-alexeyab"])
def test_normalize_near_midpoints(numerics):
    hits = [(v, a) for n, v, a in NEAR_MIDPOINT if n == numerics]
    rng = np.random.default_rng(5)
    spatial = 600  # three blocks of the fast tier, the last one partial
    x = rng.uniform(-3, 3, (2, len(hits), spatial)).astype(F32)
    for c, (_, a) in enumerate(hits):
        x[0, c, ::97] = F32(a)         # in every block of the first image
        x[1, c, 511] = F32(-a)         # one value in the second
    mean = np.zeros(len(hits), F32)
    variance = np.array([v for v, _ in hits], F32)
    eps = darknet.forward_eps(numerics)
    want = normalize_oracle(x, mean, variance, eps, numerics)
    # the reciprocal alone gets some of them wrong
    recip = (1. / denominator(variance, eps, numerics)).reshape(1, -1, 1)
    assert not same_bits((x.astype(F64) * recip).astype(F32), want)
    got = darknet.normalize_cpu(x, mean, variance, numerics=numerics)
    assert same_bits(got, want)
    inplace = x.copy()
    darknet.normalize_cpu(inplace, mean, variance, numerics=numerics, out=inplace)
    assert same_bits(inplace, want)


@pytest.mark.parametrize("numerics", ["darknet", "darknet-alexeyab"])
def test_normalize_special_values(numerics):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 5, 300)).astype(F32)
    mean = rng.standard_normal(5).astype(F32)
    variance = np.array([1.5, 0.0, 1e-38, 3e38, 2.0], F32)
    x[0, 0, 7] = mean[0]                        # x == mean: a zero
    x[1, 0, 290] = np.inf
    x[2, 4, 3] = np.nan
    x[1, 2, 100] = F32(1e-40)                   # subnormal input
    x[2, 3, :] = F32(3e38) * (x[2, 3, :] > 0)   # huge values, and zeros
    for eps in (darknet.forward_eps(numerics), 1e-30):
        want = normalize_oracle(x, mean, variance, eps, numerics)
        with np.errstate(all="ignore"):
            got = darknet.normalize_cpu(x, mean, variance, numerics=numerics, eps=eps)
        assert same_bits(got, want), eps


def normalize_delta_oracle(x, mean, variance, mean_delta, variance_delta, delta, eps,
                           numerics, build):
    n, c = x.shape[0] * x.shape[2], x.shape[1]
    col = lambda v: v.reshape(1, c, 1)
    # the backward puts eps the other way round from the forward
    d = denominator(variance, eps, "darknet-alexeyab" if numerics == "darknet" else "darknet")
    centered = (x - col(mean)).astype(F64)
    if build == "strict":
        mean_term = (mean_delta / F32(n)).astype(F64)
    else:
        mean_term = (mean_delta * (F32(1) / F32(n))).astype(F64)
    with np.errstate(all="ignore"):
        direct = delta.astype(F64) / col(d)
        via_var = (col(variance_delta).astype(F64) * 2.) * centered / F64(n)
        return ((direct + via_var) + col(mean_term)).astype(F32)


@pytest.mark.parametrize("numerics", ["darknet", "darknet-alexeyab"])
@pytest.mark.parametrize("build", ["strict", "ofast"])
def test_normalize_delta_bits(numerics, build):
    rng = np.random.default_rng(7)
    shape = (3, 6, 333)
    x = rng.standard_normal(shape).astype(F32)
    delta = rng.standard_normal(shape).astype(F32)
    mean = rng.standard_normal(6).astype(F32) * F32(0.1)
    variance = np.array([1.0, 0.5, 2.0, 0.0, 1e-3, 40.0], F32)
    mean_delta = rng.standard_normal(6).astype(F32)
    variance_delta = rng.standard_normal(6).astype(F32)
    variance_delta[1] = 0                           # no variance term
    mean_delta[2] = 0
    # terms that cancel: delta / D + mean_term near 0 for channel 5
    delta[:, 5, :] = F32(0)
    delta[0, 5, :7] = -mean_delta[5] / F32(shape[0] * shape[2]) * np.sqrt(F32(40.0))
    x[1, 0, 300] = np.inf
    delta[2, 4, 5] = np.nan
    eps = darknet.BACKWARD_EPS
    want = normalize_delta_oracle(x, mean, variance, mean_delta, variance_delta, delta, eps,
                                  numerics, build)
    with np.errstate(all="ignore"):
        got = darknet.normalize_delta_cpu(x, mean, variance, mean_delta, variance_delta,
                                          delta, numerics=numerics, build=build)
        assert same_bits(got, want)
        inplace = delta.copy()
        darknet.normalize_delta_cpu(x, mean, variance, mean_delta, variance_delta, inplace,
                                    numerics=numerics, build=build, out=inplace)
    assert same_bits(inplace, want)


# --- inference: normalize_cpu, scale_bias and add_bias in one pass ------------

def inference_inputs(seed, dtype, numerics):
    """x with quotients near midpoints, zeros, NaN, infinities and subnormals
    among ordinary values, and per-channel statistics and affine terms."""
    rng = np.random.default_rng(seed)
    hits = [(v, a) for n, v, a in NEAR_MIDPOINT if n == numerics]
    c = len(hits) + 4
    x = rng.standard_normal((3, c, 300)).astype(dtype)
    mean = rng.standard_normal(c).astype(dtype)
    variance = rng.uniform(0.1, 4, c).astype(dtype)
    for k, (v, a) in enumerate(hits):
        mean[k], variance[k] = 0, v
        x[:, k, ::97] = a
    variance[-4:] = [0.0, 1e-38, 3e38, 2.0]
    x[0, -1, 7] = mean[-1]
    x[1, 0, 290] = np.inf
    x[2, -2, 3] = np.nan
    x[1, -3, 100] = 1e-40
    x[2, 1, :] = 3e38 * (x[2, 1, :] > 0)
    scales = rng.uniform(-2, 2, c).astype(dtype)
    biases = rng.uniform(-1, 1, c).astype(dtype)
    scales[0], biases[-1] = 0, np.inf
    return x, mean, variance, scales, biases


def inference_oracle(x, mean, variance, scales, biases, eps, numerics):
    """Darknet's three roundings in NumPy: fl(fl(normalize(x) * scale) + bias)."""
    c = x.shape[1]
    centered = x - mean.reshape(1, c, 1)
    d = denominator(variance.astype(F32), eps, numerics).reshape(1, c, 1)
    if x.dtype == F64:  # float64: the same expression, the sum rounded in float64
        d = (np.sqrt(variance.astype(F64)) + F64(eps) if numerics == "darknet"
             else np.sqrt(variance + F64(eps))).reshape(1, c, 1)
    with np.errstate(all="ignore"):
        normalized = (centered.astype(F64) / d).astype(x.dtype)
        return normalized * scales.reshape(1, c, 1) + biases.reshape(1, c, 1)


def same_bits_any(a, b):
    return a.dtype == b.dtype and np.array_equal(a.view(np.uint8), b.view(np.uint8))


@pytest.mark.parametrize("numerics", ["darknet", "darknet-alexeyab", "darknet-ofast",
                                      "darknet-alexeyab-ofast"])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_inference_is_the_three_kernels_in_one_pass(numerics, dtype):
    from bnkernels.batchnorm import BatchNorm, batch_norm_forward
    fork = darknet.split_numerics(numerics)[0]
    x, mean, variance, scales, biases = inference_inputs(8, dtype, fork)
    for eps in (darknet.forward_eps(fork), 1e-30):
        want = inference_oracle(x, mean, variance, scales, biases, eps, fork)
        with np.errstate(all="ignore"):
            steps = darknet.add_bias(darknet.scale_bias(
                darknet.normalize_cpu(x, mean, variance, numerics=fork, eps=eps), scales),
                biases)
            got, saved = batch_norm_forward(x, scales, biases, mean.copy(), variance.copy(),
                                            training=False, eps=eps, numerics=numerics)
            inplace = x.copy()
            batch_norm_forward(inplace, scales, biases, mean, variance, training=False,
                               eps=eps, numerics=numerics, out=inplace)
        assert same_bits_any(steps, want), eps
        assert same_bits_any(got, want), eps
        assert same_bits_any(inplace, want), eps
        assert saved.x_norm is None and not saved.training
    layer = BatchNorm(x.shape[1], numerics=numerics, dtype=dtype, reuse_buffers=True)
    layer.weight[...], layer.bias[...] = scales, biases
    layer.running_mean[...], layer.running_var[...] = mean, variance
    layer.training = False
    with np.errstate(all="ignore"):
        want = inference_oracle(x, mean, variance, scales, biases,
                                darknet.forward_eps(fork), fork)
        assert same_bits_any(layer(x), want)
        assert same_bits_any(layer(x), want)  # the kept output, written again


@pytest.mark.parametrize("numerics", ["darknet", "darknet-alexeyab"])
def test_inference_without_affine_terms_is_normalize_cpu(numerics):
    from bnkernels.batchnorm import batch_norm_forward
    x, mean, variance, _, _ = inference_inputs(9, F32, numerics)
    with np.errstate(all="ignore"):
        want = darknet.normalize_cpu(x, mean, variance, numerics=numerics)
        got, _ = batch_norm_forward(x, None, None, mean, variance, training=False,
                                    numerics=numerics)
    # fl(fl(v * 1) + 0) is v, except that -0 + 0 is +0
    assert same_bits_any(got, want + F32(0))


@pytest.mark.parametrize("numerics", ["darknet", "darknet-alexeyab"])
def test_inference_tiny_means_and_values(numerics):
    """Rows whose mean is large enough that no nonzero x - mean can give a
    quotient below float32's safe range skip that end of the check; rows
    around that bound (means near 2^-100, tiny and subnormal ones, 0) and
    values next to the mean, subnormal or spread over every exponent."""
    rng = np.random.default_rng(24)
    means = np.array([0, 2.0**-100, 2.0**-99, 2.0**-101, 2.0**-90, 1e-30, -1e-30, 1e-38,
                      2.0**-126, 1e-44, 1.5, -3, 1e30, -1e-20], F32)
    c, s = means.size * 4, 300
    mean = np.tile(means, 4)
    variance = rng.uniform(0, 2, c).astype(F32)
    variance[::5], variance[::7] = F32(1e-30), F32(1e20)
    x = np.empty((2, c, s), F32)
    for j in range(c):
        m, kind = mean[j], j % 4
        if kind == 0:  # next to the mean, and the mean itself
            x[:, j] = np.nextafter(m, rng.choice([-np.inf, np.inf], (2, s))).astype(F32)
            x[:, j, ::9] = m
        elif kind == 1:  # subnormal and tiny
            x[:, j] = rng.standard_normal((2, s)).astype(F32) * F32(1e-40)
        elif kind == 2:
            x[:, j] = rng.standard_normal((2, s)) * 10.0 ** rng.integers(-45, 38, (2, s))
        else:
            x[:, j] = m + (rng.standard_normal((2, s)) * abs(float(m)) * 1e-6).astype(F32)
    scales = rng.uniform(0.5, 2, c).astype(F32)
    biases = rng.standard_normal(c).astype(F32)
    eps = darknet.forward_eps(numerics)
    from bnkernels.batchnorm import batch_norm_forward
    with np.errstate(all="ignore"):
        want = inference_oracle(x, mean, variance, scales, biases, eps, numerics)
        got, _ = batch_norm_forward(x, scales, biases, mean, variance, training=False,
                                    eps=eps, numerics=numerics)
        inplace = x.copy()
        batch_norm_forward(inplace, scales, biases, mean, variance, training=False,
                           eps=eps, numerics=numerics, out=inplace)
    assert same_bits_any(got, want)
    assert same_bits_any(inplace, want)


def same_values(a, b):
    """Every bit where b is a number, and NaN where b is NaN (any payload)."""
    nan = np.isnan(b)
    return (a.dtype == b.dtype and np.array_equal(np.isnan(a), nan)
            and np.array_equal(a[~nan].view(np.uint8), b[~nan].view(np.uint8)))


@pytest.mark.parametrize("numerics", ["darknet", "darknet-alexeyab", "darknet-ofast"])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_inference_where_two_nans_meet(numerics, dtype):
    """NaN scales and biases, alone and meeting NaN values of x (each NaN
    with its own payload), in rows of every length the kernel splits: the
    same values as the three kernels, and NaN at the same positions. Which
    payload survives where two NaNs meet is left unspecified (bnkernels.h)."""
    from bnkernels.batchnorm import batch_norm_forward
    fork = darknet.split_numerics(numerics)[0]
    bits = np.uint32 if dtype == F32 else np.uint64
    quiet = bits(0x7FC00000) if dtype == F32 else bits(0x7FF8000000000000)

    def nan(payload):
        return np.array([quiet | bits(payload)], bits).view(dtype)[0]

    rng = np.random.default_rng(25)
    for s in (1, 3, 4, 17, 300):
        c = 6
        x = rng.standard_normal((2, c, s)).astype(dtype)
        mean = rng.standard_normal(c).astype(dtype)
        variance = rng.uniform(0.1, 4, c).astype(dtype)
        scales = rng.uniform(-2, 2, c).astype(dtype)
        biases = rng.uniform(-1, 1, c).astype(dtype)
        scales[[1, 3]], biases[[2, 3]] = nan(1), nan(2)
        x[:, 1:5, ::2] = nan(3)
        with np.errstate(all="ignore"):
            steps = darknet.add_bias(darknet.scale_bias(
                darknet.normalize_cpu(x, mean, variance, numerics=fork), scales), biases)
            got, _ = batch_norm_forward(x, scales, biases, mean, variance, training=False,
                                        numerics=numerics)
        assert np.isnan(steps[:, 1:4]).all() and not np.isnan(steps[:, 5]).any()
        assert same_values(got, steps), s
