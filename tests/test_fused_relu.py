"""activation="relu": batch norm followed by ReLU, fused into one pass.

Oracles: bnkernels.reference (NumPy, float64, 1e-12), central finite
differences (float64, 1e-6 relative), PyTorch's relu(batch_norm(x)) (float32,
1e-5), and for Darknet numerics the unfused Darknet layer followed by ReLU
(bit for bit: max(y, 0) rounds nothing).
"""
import numpy as np
import pytest

import bnkernels
from bnkernels import _kernels
from bnkernels import reference as ref
from bnkernels.tools.verify import finite_difference_errors


def make(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    c = shape[1]
    return (rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype),
            rng.uniform(0.5, 2, c).astype(dtype), rng.standard_normal(c).astype(dtype),
            (rng.standard_normal(c) * 0.1).astype(dtype), rng.uniform(0.5, 1.5, c).astype(dtype))


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (2, 8, 1, 9), (3, 1, 17, 1)])
def test_relu_matches_numpy_reference_forward_and_backward(shape, training):
    x, dy, w, b, rm, rv = make(shape, np.float64)
    results = []
    for module in (bnkernels, ref):
        m, v = rm.copy(), rv.copy()
        y, saved = module.batch_norm_forward(x, w, b, m, v, training=training,
                                             activation="relu")
        results.append((y, m, v) + tuple(module.batch_norm_backward(dy, saved)))
    for mine, oracle in zip(*results):
        np.testing.assert_allclose(mine, oracle, rtol=1e-12, atol=1e-12)
    y = results[0][0]
    assert (y >= 0).all() and (y == 0).any() and (y > 0).any()


@pytest.mark.parametrize("training", [True, False])
def test_relu_gradients_match_central_finite_differences(training):
    errors = finite_difference_errors((3, 2, 2, 3), training, rng=5, activation="relu")
    assert max(errors) < 1e-6, errors


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_output_is_max_of_unfused_output_and_zero(dtype):
    x, _, w, b, rm, rv = make((4, 16, 9, 9), dtype, seed=2)
    plain, _ = bnkernels.batch_norm_forward(x, w, b, rm.copy(), rv.copy())
    fused, _ = bnkernels.batch_norm_forward(x, w, b, rm.copy(), rv.copy(), activation="relu")
    np.testing.assert_array_equal(fused, np.maximum(plain, 0))


@pytest.mark.parametrize("numerics", ["darknet", "darknet-alexeyab"])
def test_relu_with_darknet_numerics_is_darknet_layer_then_relu_bit_for_bit(numerics):
    x, dy, w, b, rm, rv = make((4, 16, 6, 6), np.float32, seed=3)
    y, saved = bnkernels.batch_norm_forward(x, w, b, rm.copy(), rv.copy(), numerics=numerics)
    dx, dw, db = bnkernels.batch_norm_backward(np.where(y > 0, dy, 0).astype(np.float32), saved)
    y_relu, saved_relu = bnkernels.batch_norm_forward(x, w, b, rm.copy(), rv.copy(),
                                                      numerics=numerics, activation="relu")
    fused = bnkernels.batch_norm_backward(dy, saved_relu)
    np.testing.assert_array_equal(y_relu, np.maximum(y, 0))
    for mine, oracle in zip(fused, (dx, dw, db)):
        assert mine.tobytes() == oracle.tobytes()


def test_relu_keeps_nan():
    x = np.ones((2, 1, 2, 2))
    x[0, 0, 0, 0] = np.nan
    y, _ = bnkernels.batch_norm_forward(x, None, None, None, None, activation="relu")
    assert np.isnan(y).all()  # the channel's statistics are NaN, so is every y


@pytest.mark.parametrize("bad", ["ReLU", "sigmoid", 1, True])
def test_unknown_activation_is_rejected_by_name(bad):
    x = np.ones((2, 1, 2, 2))
    with pytest.raises(ValueError, match="activation must be None or 'relu'"):
        bnkernels.batch_norm_forward(x, None, None, None, None, activation=bad)
    with pytest.raises(ValueError, match="activation must be None or 'relu'"):
        bnkernels.BatchNorm2d(1, activation=bad)


@pytest.mark.parametrize("training", [True, False])
def test_relu_matches_pytorch(training):
    torch = pytest.importorskip("torch", reason="PyTorch is optional (pip install .[torch])")
    x, dy, w, b, rm, rv = make((4, 8, 7, 7), np.float32, seed=4)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    trm, trv = torch.tensor(rm), torch.tensor(rv)
    ty = torch.relu(torch.nn.functional.batch_norm(tx, trm, trv, tw, tb, training=training))
    ty.backward(torch.tensor(dy))
    m, v = rm.copy(), rv.copy()
    y, saved = bnkernels.batch_norm_forward(x, w, b, m, v, training=training,
                                            activation="relu")
    dx, dw, db = bnkernels.batch_norm_backward(dy, saved)
    for mine, theirs in ((y, ty), (dx, tx.grad), (dw, tw.grad), (db, tb.grad),
                         (m, trm), (v, trv)):
        np.testing.assert_allclose(mine, theirs.detach().numpy(), rtol=1e-5, atol=1e-5)


# Channels as (mean, invstd, weight, bias): a > 0, a < 0, a root that is a
# value of x, a mean 1e4 standard deviations out, a = 0 with either sign of
# bias, a very large a, a bias of -inf, a NaN weight (a = 0 and the last
# two: no range of x, y value by value), and a = 1e-300 (float64; beyond
# float32's range, so its double map there), whose products underflow:
# y > 0 only from x = 5e-24 on, far in order from the root 0
RELU_CHANNELS = [(0.1, 1.3, 1.1, 0.2), (-3.0, 0.7, -1.0, 5.0), (1.0, 2.0, 1.0, 0.0),
                 (1e4, 1e-3, 1.0, 0.3), (0.5, 1.0, 0.0, 0.25), (0.5, 1.0, 0.0, -0.25),
                 (0.2, 1e25, 1e10, -1.0), (0.0, 1.0, 1.0, -np.inf), (0.0, 1.0, np.nan, 0.5),
                 (0.0, 1e-150, 1e-150, 0.0)]


def assert_same_values(mine, oracle):
    """The same bits, NaN's sign and payload aside (the order of a sum's
    operands, which differs between code paths, picks which NaN survives)."""
    nan = np.isnan(oracle)
    assert (np.isnan(mine) == nan).all()
    assert mine[~nan].tobytes() == oracle[~nan].tobytes()


def relu_boundary_values(dtype, spatial, seed):
    """x for RELU_CHANNELS: per channel, the 81 values of dtype around the
    root of (x - mean) * a + bias (where the fused ReLU's mask flips),
    then random values about the mean."""
    rng = np.random.default_rng(seed)
    x = np.empty((2, len(RELU_CHANNELS), spatial), dtype)
    for c, (mean, invstd, weight, bias) in enumerate(RELU_CHANNELS):
        a = invstd * weight
        root = dtype(mean - bias / a) if np.isfinite(a) and a != 0 else dtype(mean)
        sweep = [root]
        for direction in (np.inf, -np.inf):
            v = root
            for _ in range(40):
                v = np.nextafter(v, dtype(direction))
                sweep.append(v)
        row = np.sort(np.array(sweep, dtype))
        spread = abs(mean) * 1e-3 + 3.0 / invstd if invstd > 1e-20 else 1.0
        for b in range(2):
            x[b, c, :len(row)] = row
            x[b, c, len(row):] = mean + spread * rng.standard_normal(spatial - len(row))
    return x


@pytest.mark.parametrize("nhwc", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("training", [True, False], ids=["training", "eval"])
@pytest.mark.parametrize("spatial", [100, 700])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_backward_is_the_plain_backward_of_dy_masked_by_the_output(dtype, spatial,
                                                                          training, nhwc):
    """The fused ReLU's backward equals, bit for bit, the plain backward of
    dy where the plain forward's y > 0 and +0 elsewhere: the same sums (rows
    of at most 512 values; longer ones add chunk sums), the same dx from
    them. x sweeps the values where y crosses 0, where a mask taken from a
    range of x (csrc/fast/standard.inc, relu_range) must agree with y."""
    x = relu_boundary_values(dtype, spatial, seed=spatial)
    mean = np.array([ch[0] for ch in RELU_CHANNELS])
    invstd = np.array([ch[1] for ch in RELU_CHANNELS])
    with np.errstate(over="ignore"):
        weight = np.array([ch[2] for ch in RELU_CHANNELS], dtype)
    bias = np.array([ch[3] for ch in RELU_CHANNELS], dtype)
    dy = np.random.default_rng(1).standard_normal(x.shape).astype(dtype)
    x, dy = x.reshape(2, len(RELU_CHANNELS), spatial, 1), dy.reshape(x.shape + (1,))
    if nhwc:
        x, dy = (np.ascontiguousarray(np.moveaxis(a, 1, -1)) for a in (x, dy))
    axis = -1 if nhwc else 1

    y = _kernels.normalize_affine(x, mean, invstd, weight, bias, nhwc=nhwc)
    kept = np.where(y > 0, dy, dtype(0))
    assert 0 < (y > 0).sum() < y.size
    sums = _kernels.backward_reduce(dy, x, mean, invstd, weight, bias, relu=True, nhwc=nhwc)
    if spatial <= 512 or nhwc:
        plain = _kernels.backward_reduce(kept, x, mean, invstd, weight, bias, nhwc=nhwc)
        for mine, oracle in zip(sums, plain):
            assert_same_values(mine, oracle)
    if not training:
        sums = (None, None)
    dx = _kernels.backward_dx(dy, x, mean, invstd, weight, *sums, bias=bias, relu=True,
                              nhwc=nhwc)
    expected = _kernels.backward_dx(kept, x, mean, invstd, weight, *sums, bias=bias,
                                    nhwc=nhwc)
    assert_same_values(dx, expected)
    # every channel with a range has both sides of its root in x
    masked = np.moveaxis(y > 0, axis, 0).reshape(len(RELU_CHANNELS), -1)
    assert masked[:4].any(axis=1).all() and (~masked[:4]).any(axis=1).all()


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("nhwc", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_masks_stay_per_channel_past_the_cached_ranges(dtype, nhwc, threads):
    """300 channels, more than the 256 whose ranges a kernel call keeps
    (RANGE_CACHE in csrc/fast/standard.inc), 3 samples each, every channel
    with its own root and sign of a: the fused backward is the plain
    backward of dy masked by the forward's y > 0, bit for bit, in training
    and eval, on 1 and 2 threads."""
    rng = np.random.default_rng(11)
    batch, channels, spatial = 3, 300, 150
    mean = rng.uniform(-2, 2, channels)
    invstd = rng.uniform(0.5, 2, channels)
    weight = (rng.uniform(0.5, 1.5, channels) * rng.choice([-1, 1], channels)).astype(dtype)
    bias = rng.uniform(-1, 1, channels).astype(dtype)
    x = (mean[None, :, None] + rng.standard_normal((batch, channels, spatial))
         / invstd[None, :, None]).astype(dtype).reshape(batch, channels, spatial, 1)
    dy = rng.standard_normal(x.shape).astype(dtype)
    if nhwc:
        x, dy = (np.ascontiguousarray(np.moveaxis(a, 1, -1)) for a in (x, dy))
    before = bnkernels.get_num_threads()
    bnkernels.set_num_threads(threads)
    try:
        y = _kernels.normalize_affine(x, mean, invstd, weight, bias, nhwc=nhwc)
        kept = np.where(y > 0, dy, dtype(0))
        sums = _kernels.backward_reduce(dy, x, mean, invstd, weight, bias, relu=True,
                                        nhwc=nhwc)
        plain = _kernels.backward_reduce(kept, x, mean, invstd, weight, bias, nhwc=nhwc)
        for mine, oracle in zip(sums, plain):
            assert_same_values(mine, oracle)
        for given in (sums, (None, None)):
            dx = _kernels.backward_dx(dy, x, mean, invstd, weight, *given, bias=bias,
                                      relu=True, nhwc=nhwc)
            expected = _kernels.backward_dx(kept, x, mean, invstd, weight, *given,
                                            bias=bias, nhwc=nhwc)
            assert_same_values(dx, expected)
    finally:
        bnkernels.set_num_threads(before)
    # every channel's mask has both values
    per_channel = np.moveaxis(y > 0, -1 if nhwc else 1, 0).reshape(channels, -1)
    assert per_channel.any(axis=1).all() and (~per_channel).any(axis=1).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_backward_with_special_inputs_is_the_plain_backward_of_masked_dy(dtype):
    """x of +-inf, NaN, +-0, the largest and the smallest values: the fused
    backward's mask is still the forward's y > 0."""
    info = np.finfo(dtype)
    specials = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, info.max, -info.max,
                         info.smallest_subnormal, -info.smallest_subnormal, 1.0], dtype)
    channels = RELU_CHANNELS[:4]
    x = np.tile(specials, (1, len(channels), 1)).reshape(1, len(channels), -1, 1)
    mean = np.array([ch[0] for ch in channels])
    invstd = np.array([ch[1] for ch in channels])
    weight = np.array([ch[2] for ch in channels], dtype)
    bias = np.array([ch[3] for ch in channels], dtype)
    dy = np.random.default_rng(2).standard_normal(x.shape).astype(dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        y = _kernels.normalize_affine(x, mean, invstd, weight, bias)
    kept = np.where(y > 0, dy, dtype(0))
    for sums in ((np.ones(4), np.full(4, 0.5)), (None, None)):
        dx = _kernels.backward_dx(dy, x, mean, invstd, weight, *sums, bias=bias, relu=True)
        expected = _kernels.backward_dx(kept, x, mean, invstd, weight, *sums, bias=bias)
        assert_same_values(dx, expected)


def test_relu_backward_where_the_mask_flips_far_from_the_root():
    """a = 1e-300, mean and bias 0 (float64): y = x * a underflows to 0 up to
    x = 2.47e-24, far in order of the values from the root 0. The x where
    the forward's y first exceeds 0, found by bisection over the forward
    itself, and the 100 values on either side of it (and their negatives):
    the fused backward masks exactly where y > 0."""
    mean, invstd = np.zeros(1), np.array([1e-150])
    weight, bias = np.array([1e-150]), np.zeros(1)

    def positive(key):
        x = np.array([key], np.int64).view(np.float64).reshape(1, 1, 1, 1)
        return _kernels.normalize_affine(x, mean, invstd, weight, bias)[0, 0, 0, 0] > 0

    lo, hi = 0, int(np.float64(1.0).view(np.int64))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if positive(mid) else (mid, hi)
    keys = np.arange(hi - 100, hi + 100, dtype=np.int64).view(np.float64)
    x = np.concatenate([keys, -keys]).reshape(1, 1, -1, 1)
    dy = np.random.default_rng(3).standard_normal(x.shape)
    y = _kernels.normalize_affine(x, mean, invstd, weight, bias)
    assert (y > 0).sum() == 100
    kept = np.where(y > 0, dy, 0.0)
    for sums in ((np.ones(1), np.full(1, 0.5)), (None, None)):
        dx = _kernels.backward_dx(dy, x, mean, invstd, weight, *sums, bias=bias, relu=True)
        expected = _kernels.backward_dx(kept, x, mean, invstd, weight, *sums, bias=bias)
        assert dx.tobytes() == expected.tobytes()
