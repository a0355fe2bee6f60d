"""layout="NHWC": channels-last tensors, checked against the NCHW result on
transposed data and against the float64 NumPy reference.

The NHWC kernels share the NCHW kernels' per-channel coefficients, so with
the same statistics (eval mode, or the kernels fed the same mean/invstd)
normalize and dx are bitwise equal to NCHW. The training statistics are
summed in another order (blocks of rows instead of (b, c) rows), so there
the two layouts agree to float64 rounding of the statistics, which shows in
y at most as one float32 ulp.
"""
import numpy as np
import pytest

import bnkernels
from bnkernels import _kernels, reference

DTYPES = [np.float32, np.float64]
# C = 1: one lane; 5, 23: fewer channels than a 32-wide strip; 70: two
# strips and a remainder, over several blocks of rows; 200: long rows, walked
# whole in the backward; 1030: more channels than one tile of coefficients
SHAPES = [(3, 1, 5, 7), (2, 5, 3, 3), (4, 23, 9, 9), (4, 70, 9, 9), (2, 200, 6, 7),
          (2, 1030, 3, 2), (1, 16, 70, 1)]


def to_nhwc(a):
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def make(shape, dtype, seed=0, offset=0.0):
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = (rng.standard_normal(shape) * 2 + offset).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    weight = rng.uniform(0.5, 1.5, c).astype(dtype)
    bias = rng.standard_normal(c).astype(dtype)
    return x, dy, weight, bias


def tolerance(dtype):
    # y and dx are O(1); float32 results round once (plus at most one ulp from
    # the statistics' different summation order), float64 ones likewise
    return 4e-6 if dtype == np.float32 else 1e-12


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("activation", [None, "relu"])
def test_training_forward_and_backward_match_nchw_and_reference(shape, dtype, activation):
    x, dy, weight, bias = make(shape, dtype)
    c = shape[1]
    stats_nchw = (np.zeros(c, dtype), np.ones(c, dtype))
    stats_nhwc = (np.zeros(c, dtype), np.ones(c, dtype))
    stats_ref = (np.zeros(c, dtype), np.ones(c, dtype))
    y, saved = bnkernels.batch_norm_forward(x, weight, bias, *stats_nchw, activation=activation)
    x_t, dy_t = to_nhwc(x), to_nhwc(dy)
    x_before = x_t.copy()
    y_t, saved_t = bnkernels.batch_norm_forward(x_t, weight, bias, *stats_nhwc,
                                                activation=activation, layout="NHWC")
    y_ref, saved_ref = reference.batch_norm_forward(
        to_nhwc(x.astype(np.float64)), weight.astype(np.float64), bias.astype(np.float64),
        *(s.astype(np.float64) for s in stats_ref), activation=activation, layout="NHWC")
    assert y_t.shape == x_t.shape and y_t.dtype == dtype
    np.testing.assert_allclose(y_t, to_nhwc(y), rtol=0, atol=tolerance(dtype))
    np.testing.assert_allclose(y_t, y_ref, rtol=0, atol=tolerance(dtype))
    for a, b in zip(stats_nhwc, stats_nchw):
        np.testing.assert_allclose(a, b, rtol=tolerance(dtype), atol=tolerance(dtype))

    dx, dw, db = bnkernels.batch_norm_backward(dy, saved)
    dx_t, dw_t, db_t = bnkernels.batch_norm_backward(dy_t, saved_t)
    dx_ref, dw_ref, db_ref = reference.batch_norm_backward(dy_t.astype(np.float64), saved_ref)
    scale = max(1.0, float(np.abs(dx_ref).max()))
    np.testing.assert_allclose(dx_t, to_nhwc(dx), rtol=0, atol=tolerance(dtype) * scale)
    np.testing.assert_allclose(dx_t, dx_ref, rtol=0, atol=tolerance(dtype) * scale)
    n = shape[0] * shape[2] * shape[3]
    # sums of n values: the float64 sums differ by rounding only
    np.testing.assert_allclose(dw_t, dw_ref, rtol=0, atol=tolerance(dtype) * n)
    np.testing.assert_allclose(db_t, db_ref, rtol=0, atol=tolerance(dtype) * n)
    np.testing.assert_array_equal(x_t, x_before)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("relu", [False, True])
def test_normalize_and_dx_give_nchw_bits_for_the_same_statistics(shape, dtype, relu):
    x, dy, weight, bias = make(shape, dtype, seed=1)
    mean, var = _kernels.stats(x)
    invstd = _kernels.invstd(var, 1e-5)
    y = _kernels.normalize_affine(x, mean, invstd, weight, bias, relu=relu)
    y_t = _kernels.normalize_affine(to_nhwc(x), mean, invstd, weight, bias, relu=relu,
                                    nhwc=True)
    np.testing.assert_array_equal(y_t, to_nhwc(y))
    sum_dy, sum_dy_xhat = _kernels.backward_reduce(dy, x, mean, invstd, weight, bias, relu)
    for sums in [(sum_dy, sum_dy_xhat), (None, None)]:  # training, eval
        dx = _kernels.backward_dx(dy, x, mean, invstd, weight, *sums, bias=bias, relu=relu)
        dx_t = _kernels.backward_dx(to_nhwc(dy), to_nhwc(x), mean, invstd, weight, *sums,
                                    bias=bias, relu=relu, nhwc=True)
        np.testing.assert_array_equal(dx_t, to_nhwc(dx))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES + [(3, 40, 5, 7)])
@pytest.mark.parametrize("relu", [False, True])
def test_nhwc_normalize_and_dx_in_place_give_the_out_of_place_bits(shape, dtype, relu):
    # the NHWC elementwise kernels walk several ranges of rows side by side;
    # writing y over x (and dx over dy) must read every value before its
    # own index is overwritten, and touch no other row
    x, dy, weight, bias = make(shape, dtype, seed=5)
    x_t, dy_t = to_nhwc(x), to_nhwc(dy)
    mean, var = _kernels.stats(x_t, nhwc=True)
    invstd = _kernels.invstd(var, 1e-5)
    y = _kernels.normalize_affine(x_t, mean, invstd, weight, bias, relu=relu, nhwc=True)
    in_place = x_t.copy()
    _kernels.normalize_affine(in_place, mean, invstd, weight, bias, out=in_place,
                              relu=relu, nhwc=True)
    np.testing.assert_array_equal(in_place, y)
    sums = _kernels.backward_reduce(dy_t, x_t, mean, invstd, weight, bias, relu, nhwc=True)
    for s in [sums, (None, None)]:  # training, eval
        dx = _kernels.backward_dx(dy_t, x_t, mean, invstd, weight, *s, bias=bias,
                                  relu=relu, nhwc=True)
        g = dy_t.copy()
        _kernels.backward_dx(g, x_t, mean, invstd, weight, *s, out=g, bias=bias,
                             relu=relu, nhwc=True)
        np.testing.assert_array_equal(g, dx)


@pytest.mark.parametrize("dtype", DTYPES)
def test_eval_mode_is_bitwise_nchw(dtype):
    x, dy, weight, bias = make((3, 40, 5, 6), dtype, seed=2)
    running_mean = np.linspace(-1, 1, 40).astype(dtype)
    running_var = np.linspace(0.5, 2, 40).astype(dtype)
    y, saved = bnkernels.batch_norm_forward(x, weight, bias, running_mean, running_var,
                                            training=False)
    y_t, saved_t = bnkernels.batch_norm_forward(to_nhwc(x), weight, bias, running_mean,
                                                running_var, training=False, layout="NHWC")
    np.testing.assert_array_equal(y_t, to_nhwc(y))
    dx, dw, db = bnkernels.batch_norm_backward(dy, saved)
    dx_t, dw_t, db_t = bnkernels.batch_norm_backward(to_nhwc(dy), saved_t)
    np.testing.assert_array_equal(dx_t, to_nhwc(dx))
    np.testing.assert_allclose(dw_t, dw, rtol=1e-12 if dtype == np.float64 else 1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_statistics_stay_accurate_at_mean_1e4_standard_deviations(dtype):
    x, _, _, _ = make((8, 48, 12, 12), dtype, seed=3, offset=2e4)  # std 2: mean/std = 1e4
    mean, var = _kernels.stats(to_nhwc(x), nhwc=True)
    x64 = x.astype(np.float64)
    exact_mean = x64.mean(axis=(0, 2, 3))
    exact_var = ((x64 - exact_mean[None, :, None, None]) ** 2).mean(axis=(0, 2, 3))
    np.testing.assert_allclose(mean, exact_mean, rtol=1e-15, atol=0)
    # a sum-of-squares formula would lose ~1e8 * 1e-16 = 1e-8 relative here
    np.testing.assert_allclose(var, exact_var, rtol=1e-11)


@pytest.mark.parametrize("dtype", DTYPES)
def test_statistics_stay_accurate_when_the_first_row_is_an_outlier(dtype):
    """float32 sums each part's rows about the part's first row in one pass:
    here that row lies 3e4 standard deviations from the others, the worst
    place for a shift. Cancellation costs at most rows-per-part (1024 here)
    times float64's rounding, 1e-13. Oracle: NumPy's two-pass float64
    statistics of the same values; allowed: 1e-12 relative."""
    x = np.random.default_rng(4).standard_normal((16, 2, 64, 64)).astype(dtype)
    x[0, :, 0, 0] = 3e4
    mean, var = _kernels.stats(to_nhwc(x), nhwc=True)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(mean, x64.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(var, x64.var(axis=(0, 2, 3)), rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels", [3, 40])  # one by one; a strip and a remainder
@pytest.mark.parametrize("batch, side", [(4, 9), (1, 4)])  # many blocks; one block
def test_constant_channels_have_zero_variance_and_nan_stays_nan(dtype, channels, batch, side):
    """A constant channel's variance is exactly 0, never negative (a shifted
    sum of squares minus the squared sum could round below 0); a NaN or an
    infinity gives its channel a NaN variance (not 0) and leaves the other
    channels alone."""
    x = np.random.default_rng(2).standard_normal((batch, channels, side, side)).astype(dtype)
    x[:, 0] = 7.25
    alternate = 1 + np.arange(side * side) % 2 * np.finfo(np.float32).eps
    x[:, 1] = np.float32(0.1) * alternate.reshape(1, side, side)
    x[-1, 2, 2, 3] = np.nan
    x[0, -1, 0, 3] = np.inf
    with np.errstate(invalid="ignore"):
        mean, var = _kernels.stats(to_nhwc(x), nhwc=True)
        x64 = x.astype(np.float64)
        exact = x64.var(axis=(0, 2, 3))
    assert mean[0] == 7.25 and var[0] == 0.0
    # channel 1 (0.1 and the next float32, mean/std 1.3e7) is 1e3 past the
    # promised mean/std of 1e4: merging blocks' means rounds the mean to
    # 1e-9 of a standard deviation, which costs ~1e-11 of the variance
    assert var[1] >= 0 and abs(var[1] - exact[1]) <= 1e-10 * exact[1]
    assert np.isnan(var[2]) and np.isnan(var[-1])
    np.testing.assert_allclose(var[3:-1], exact[3:-1], rtol=1e-12)


@pytest.mark.skipif(not bnkernels.openmp_enabled(), reason="built without OpenMP")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [
    (16, 48, 14, 14),  # 32-channel strips and a remainder, 49 parts of one block
    (8, 40, 32, 32),   # 64 parts of two blocks each
    (4, 200, 10, 10),  # rows walked whole in the backward
    (2, 1030, 8, 10),  # more channels than one tile
])
def test_every_nhwc_kernel_gives_the_same_bits_on_1_to_4_threads(shape, dtype):
    x, dy, weight, bias = make(shape, dtype, seed=4)
    x_t, dy_t = to_nhwc(x), to_nhwc(dy)
    results = []
    try:
        for threads in (1, 2, 3, 4):
            bnkernels.set_num_threads(threads)
            mean, var = _kernels.stats(x_t, nhwc=True)
            invstd = _kernels.invstd(var, 1e-5)
            y = _kernels.normalize_affine(x_t, mean, invstd, weight, bias, nhwc=True)
            plain_sums = _kernels.backward_reduce(dy_t, x_t, mean, invstd, weight, bias,
                                                  nhwc=True)
            sums = _kernels.backward_reduce(dy_t, x_t, mean, invstd, weight, bias, True,
                                            nhwc=True)
            dx = _kernels.backward_dx(dy_t, x_t, mean, invstd, weight, *sums, bias=bias,
                                      relu=True, nhwc=True)
            results.append([mean, var, y, *plain_sums, *sums, dx])
    finally:
        bnkernels.set_num_threads(None)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


def test_layer_with_nhwc_layout_tracks_the_nchw_layer_over_steps():
    rng = np.random.default_rng(5)
    nchw = bnkernels.BatchNorm2d(12)
    nhwc = bnkernels.BatchNorm2d(12, layout="nhwc")
    assert nhwc.layout == "NHWC" and "layout='NHWC'" in repr(nhwc)
    for _ in range(3):
        x = rng.standard_normal((4, 12, 5, 5)).astype(np.float32)
        dy = rng.standard_normal(x.shape).astype(np.float32)
        y = nchw(x)
        y_t = nhwc(to_nhwc(x))
        np.testing.assert_allclose(y_t, to_nhwc(y), atol=4e-6, rtol=0)
        np.testing.assert_allclose(nhwc.backward(to_nhwc(dy)), to_nhwc(nchw.backward(dy)),
                                   atol=1e-5, rtol=0)
    for key, value in nchw.state_dict().items():
        np.testing.assert_allclose(nhwc.state_dict()[key], value, rtol=1e-6)
    np.testing.assert_allclose(nhwc.grad_weight, nchw.grad_weight, rtol=1e-5, atol=1e-5)


def test_empty_nhwc_batch_gives_empty_output_and_keeps_running_statistics():
    running_mean, running_var = np.zeros(3, np.float32), np.ones(3, np.float32)
    x = np.empty((0, 4, 4, 3), np.float32)
    y, saved = bnkernels.batch_norm_forward(x, None, None, running_mean, running_var,
                                            layout="NHWC")
    assert y.shape == x.shape
    assert not running_mean.any() and (running_var == 1).all()
    dx, _, _ = bnkernels.batch_norm_backward(np.empty_like(x), saved)
    assert dx.shape == x.shape


def test_nhwc_rejects_darknet_numerics_and_unknown_layouts():
    x = np.ones((2, 3, 3, 4), np.float32)
    with pytest.raises(ValueError, match="layout='NHWC' needs numerics='standard'"):
        bnkernels.batch_norm_forward(x, None, None, None, None, numerics="darknet",
                                     layout="NHWC")
    with pytest.raises(ValueError, match="layout='NHWC' needs numerics='standard'"):
        bnkernels.BatchNorm2d(4, numerics="darknet-alexeyab", layout="NHWC")
    with pytest.raises(ValueError, match="layout must be 'NCHW' or 'NHWC', got 'CHWN'"):
        bnkernels.batch_norm_forward(x, None, None, None, None, layout="CHWN")


def test_nchw_data_given_to_an_nhwc_layer_gets_a_message_naming_the_layout():
    layer = bnkernels.BatchNorm2d(6, layout="NHWC")
    with pytest.raises(ValueError, match=r"weight has shape \(6,\), expected \(3,\) to match "
                                         r"x's 3 channels \(the last axis of x: layout='NHWC'\)"):
        layer(np.ones((4, 6, 5, 3), np.float32))
