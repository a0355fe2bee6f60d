"""The float32 forward's affine map against its documented error bound.

formulas.h (bn_affine): float32 computes y = (x - mean) * a + shift as
fl(fl(fl(x - m) * a_f) + s) with the terms m = fl(mean), a_f = fl(a) and
s = fl(shift - (mean - m) * a), and promises
    |y - y_exact| <= 3.01u |(x - m) a| + 1.01u |s| + u |y_exact|,  u = 2^-24.
Oracle: y_exact from the kernel's own float64 statistics (saved.mean,
saved.invstd), in float64 NumPy. The bound is in units of the result's
terms, not of y, so a channel whose mean is far from its values (where a
float product x * a_f plus a float offset loses everything) and a shift
that cancels y are both covered.
"""
import numpy as np
import pytest

import bnkernels

U = 2.0**-24
LAYOUTS = ["NCHW", "NHWC"]


def channels(shape, seed):
    """x with one kind of channel per index: plain, a mean 1e4 standard
    deviations out, 1e-3 scale about 300, and a shift that cancels y."""
    rng = np.random.default_rng(seed)
    b, c, h, w = shape
    x = rng.standard_normal(shape)
    loc = np.array([0.0, 1e4, 300.0, -7.0, 2.5][:c] + [0.0] * max(0, c - 5))
    scale = np.array([1.0, 1.0, 1e-3, 30.0, 1.0][:c] + [1.0] * max(0, c - 5))
    x = x * scale[None, :, None, None] + loc[None, :, None, None]
    weight = np.array([1.0, 0.75, 3.0, -2.0, 1e-3][:c] + [1.0] * max(0, c - 5))
    bias = np.array([0.0, 0.5, -1e3, 40.0, 0.0][:c] + [0.0] * max(0, c - 5))
    return (x.astype(np.float32), weight.astype(np.float32), bias.astype(np.float32))


def bound_ratio(y, x, mean, invstd, weight, bias):
    """max over y of |y - y_exact| / (the bound), along axis 1 as channels"""
    at = (None, slice(None), None, None)
    a = invstd * weight.astype(np.float64)
    m = mean.astype(np.float32).astype(np.float64)
    s = (bias.astype(np.float64) - (mean - m) * a).astype(np.float32).astype(np.float64)
    x64 = x.astype(np.float64)
    exact = (x64 - mean[at]) * a[at] + bias.astype(np.float64)[at]
    bound = (3.01 * U * np.abs((x64 - m[at]) * a[at]) + 1.01 * U * np.abs(s[at])
             + U * np.abs(exact))
    return (np.abs(y.astype(np.float64) - exact) / bound).max()


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", [(4, 5, 9, 9), (2, 5, 40, 40), (1, 5, 3, 1)])
def test_training_forward_is_within_the_bound(layout, shape):
    x, weight, bias = channels(shape, seed=1)
    xin = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if layout == "NHWC" else x
    y, saved = bnkernels.batch_norm_forward(xin, weight, bias, None, None,
                                            layout=layout)
    if layout == "NHWC":
        y = y.transpose(0, 3, 1, 2)
    assert bound_ratio(y, x, saved.mean, saved.invstd, weight, bias) <= 1


@pytest.mark.parametrize("layout", LAYOUTS)
def test_eval_forward_with_given_statistics_is_within_the_bound(layout):
    """Running statistics whose mean is 1e4 deviations from x, and an eps
    that makes invstd a value float32 cannot hold"""
    x, weight, bias = channels((3, 5, 7, 6), seed=2)
    mean = np.array([0.1, 1e4 + 0.3, 300.0, -7.0, 2.0], np.float32)
    var = np.array([1.0, 0.9, 1e-6, 900.0, 1.1], np.float32)
    xin = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if layout == "NHWC" else x
    y, saved = bnkernels.batch_norm_forward(xin, weight, bias, mean, var, training=False,
                                            eps=1e-5, layout=layout)
    if layout == "NHWC":
        y = y.transpose(0, 3, 1, 2)
    invstd = 1 / np.sqrt(var.astype(np.float64) + 1e-5)
    assert bound_ratio(y, x, mean.astype(np.float64), invstd, weight, bias) <= 1


def test_the_bound_catches_an_uncentred_float_map():
    """The oracle is not vacuous: float32's x * fl(a) + fl(shift - mean * a),
    the map frameworks commonly run, breaks the bound on the channel whose
    mean is 1e4 deviations out."""
    x, weight, bias = channels((4, 5, 9, 9), seed=3)
    _, saved = bnkernels.batch_norm_forward(x, weight, bias, None, None)
    at = (None, slice(None), None, None)
    a = saved.invstd * weight
    alpha = a.astype(np.float32)
    beta = (bias - saved.mean * a).astype(np.float32)
    y = x * alpha[at] + beta[at]
    assert bound_ratio(y, x, saved.mean, saved.invstd, weight, bias) > 10


@pytest.mark.parametrize("relu", [False, True])
def test_relu_output_is_the_affine_map_clamped(relu):
    """The fused ReLU is max(y, 0) of the same float32 map, and the twins
    that write whole lines (large rows, NHWC) give the same bits as the
    per-row loops (small rows) for the same values"""
    x, weight, bias = channels((2, 5, 64, 64), seed=4)
    _, saved = bnkernels.batch_norm_forward(x, weight, bias, None, None)
    mean = saved.mean.astype(np.float32)
    var = (1 / saved.invstd**2 - 1e-5).astype(np.float32)
    act = "relu" if relu else None
    y, _ = bnkernels.batch_norm_forward(x, weight, bias, mean, var, training=False,
                                        activation=act)
    plain, _ = bnkernels.batch_norm_forward(x, weight, bias, mean, var, training=False)
    np.testing.assert_array_equal(y, np.maximum(plain, 0) if relu else plain)
    # row by row: rows of one value take the scalar loop
    rows = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).reshape(-1, 5, 1, 1)
    y1, _ = bnkernels.batch_norm_forward(rows, weight, bias, mean, var, training=False,
                                         activation=act)
    np.testing.assert_array_equal(y1.reshape(2, 64, 64, 5).transpose(0, 3, 1, 2), y)


# --- slopes float32 cannot hold: the map in double, rounded once ------------

def wide_case():
    """Eval-mode arguments whose channels 1 and 2 have slopes outside
    float32's normal range (1e40 and 1e-39), with x where their y is O(1);
    channels 0 and 3 are ordinary."""
    rng = np.random.default_rng(9)
    shape = (2, 4, 9, 20)
    x = rng.standard_normal(shape)
    x[:, 1] *= 1e-40  # subnormal deviations from a mean of 0
    x[:, 2] *= 5e37
    x = x.astype(np.float32)
    mean = np.array([0.5, 0.0, 1e36, -1.0], np.float32)
    var = np.array([2.0, 1e-4, 1.0, 0.5], np.float32)
    weight = np.array([1.5, 1e38, 1e-39, -0.5], np.float32)
    bias = np.array([0.25, -0.5, 3.0, 1.0], np.float32)
    return x, mean, var, weight, bias


@pytest.mark.parametrize("threshold", [None, 0])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("relu", [False, True])
def test_slopes_float_cannot_hold_take_the_double_map(threshold, layout, relu):
    """Oracle: fl((x - mean) * a + shift) in float64 NumPy, bit for bit, on
    the channels whose slope float32 cannot hold; the bound on the others,
    which give the same bits as without those channels. Streaming forced
    on (threshold 0) and off."""
    x, mean, var, weight, bias = wide_case()
    act = "relu" if relu else None
    default = bnkernels.get_streaming_threshold()

    def forward(xs, keep):
        xin = np.ascontiguousarray(xs.transpose(0, 2, 3, 1)) if layout == "NHWC" else xs
        bnkernels.set_streaming_threshold(threshold)
        try:
            y, _ = bnkernels.batch_norm_forward(
                xin, weight[keep], bias[keep], mean[keep], var[keep], training=False,
                eps=1e-5, activation=act, layout=layout)
        finally:
            bnkernels.set_streaming_threshold(default)
        return y.transpose(0, 3, 1, 2) if layout == "NHWC" else y

    y = forward(x, slice(None))
    at = (None, slice(None), None, None)
    a = 1.0 / np.sqrt(var.astype(np.float64) + 1e-5) * weight.astype(np.float64)
    assert abs(a[1]) > np.finfo(np.float32).max and abs(a[2]) < np.finfo(np.float32).tiny
    wide = ((x.astype(np.float64) - mean.astype(np.float64)[at]) * a[at]
            + bias.astype(np.float64)[at]).astype(np.float32)
    if relu:
        wide = np.where(wide < 0, np.float32(0), wide)
    np.testing.assert_array_equal(y[:, 1:3], wide[:, 1:3])
    assert np.isfinite(y).all() and np.abs(y[:, 1:3]).max() > 0.1
    ordinary = [0, 3]
    alone = forward(np.ascontiguousarray(x[:, ordinary]), ordinary)
    np.testing.assert_array_equal(y[:, ordinary], alone)
    if not relu:
        invstd = 1 / np.sqrt(var.astype(np.float64) + 1e-5)
        assert bound_ratio(y[:, ordinary], x[:, ordinary], mean[ordinary].astype(np.float64),
                           invstd[ordinary], weight[ordinary], bias[ordinary]) <= 1


def test_relu_backward_masks_wide_channels_by_their_forward():
    """The fused ReLU's backward takes dy where the forward's y > 0, on a
    channel whose slope float32 cannot hold as on the others. Oracle: the
    plain backward of dy masked by the plain forward's y > 0. (Channel 2's
    weight gradient overflows float32, so it is left out.)"""
    keep = [0, 1, 3]
    x, mean, var, weight, bias = (a[:, keep] if a.ndim == 4 else a[keep]
                                  for a in wide_case())
    x = np.ascontiguousarray(x)
    dy = np.random.default_rng(10).standard_normal(x.shape).astype(np.float32)
    for training in (False, True):
        rm, rv = mean.copy(), var.copy()
        y, saved = bnkernels.batch_norm_forward(x, weight, bias, rm, rv, training=training,
                                                activation="relu")
        rm, rv = mean.copy(), var.copy()
        plain, psaved = bnkernels.batch_norm_forward(x, weight, bias, rm, rv,
                                                     training=training)
        np.testing.assert_array_equal(y, np.where(plain < 0, np.float32(0), plain))
        got = bnkernels.batch_norm_backward(dy, saved)
        want = bnkernels.batch_norm_backward(np.where(plain > 0, dy, np.float32(0)), psaved)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
