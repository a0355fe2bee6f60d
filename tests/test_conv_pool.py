"""im2col, col2im and 2-D pooling (bnkernels._kernels; csrc/fast/conv_pool.c).

Oracles: naive float64 loops written here, one window at a time (not
bnkernels.reference, which is itself tested against the kernels below); the
adjoint identity <im2col(x), c> == <x, col2im(c)>; PyTorch's unfold, fold,
max_pool2d and avg_pool2d when installed.

Tolerances: float64 results agree with the loops to 1e-12 (a window sum of
at most 49 terms in another order); float32 ones to 1e-5 relative (the kernels
round to float32 once per result, or once per added term in the backward
sums of at most kernel_h * kernel_w terms of size ~1).
"""
import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import bnkernels
from bnkernels import _kernels, reference

DTYPES = [np.float32, np.float64]
# kernel_size, stride, padding: the rectangular kernels of Inception-v3
# (1x7, 7x1, 1x3, 3x1), the square ones, strides 1 and 2, with and without padding
GEOMETRIES = [
    ((3, 3), (1, 1), (1, 1)),
    ((3, 3), (2, 2), (0, 0)),
    ((3, 3), (2, 2), (1, 1)),
    ((5, 5), (1, 1), (2, 2)),
    ((5, 5), (2, 2), (1, 2)),
    ((1, 7), (1, 1), (0, 3)),
    ((7, 1), (1, 1), (3, 0)),
    ((1, 3), (2, 1), (0, 1)),
    ((3, 1), (1, 2), (1, 0)),
    ((1, 1), (1, 1), (0, 0)),
    ((1, 1), (2, 2), (0, 0)),
    ((2, 3), (2, 3), (1, 1)),
]
assert all(p[a] <= k[a] // 2 for k, _, p in GEOMETRIES for a in (0, 1))  # valid for pools too
GEOMETRY_IDS = ["k{}x{}-s{}x{}-p{}x{}".format(*k, *s, *p) for k, s, p in GEOMETRIES]
SHAPE = (2, 3, 9, 8)


def tolerance(dtype):
    return {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}


def random(shape, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# ---------------------------------------------------------------------------
# naive float64 oracles: one output element at a time, straight from the
# definitions (PyTorch's documented output sizes and divisor rule)
# ---------------------------------------------------------------------------

def out_size(size, kernel, stride, pad, ceil_mode=False):
    """PyTorch's pooling_output_shape, written with Python's floor division."""
    numerator = size + 2 * pad - kernel + (stride - 1 if ceil_mode else 0)
    out = numerator // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def naive_im2col(x, k, s, p):
    n, c, h, w = x.shape
    oh, ow = out_size(h, k[0], s[0], p[0]), out_size(w, k[1], s[1], p[1])
    cols = np.zeros((n, c * k[0] * k[1], oh * ow))
    for ci, i, j, y, z in itertools.product(range(c), range(k[0]), range(k[1]),
                                            range(oh), range(ow)):
        hh, ww = y * s[0] - p[0] + i, z * s[1] - p[1] + j
        if 0 <= hh < h and 0 <= ww < w:
            cols[:, (ci * k[0] + i) * k[1] + j, y * ow + z] = x[:, ci, hh, ww]
    return cols


def naive_col2im(cols, shape, k, s, p):
    n, c, h, w = shape
    oh, ow = out_size(h, k[0], s[0], p[0]), out_size(w, k[1], s[1], p[1])
    dx = np.zeros(shape)
    for ci, i, j, y, z in itertools.product(range(c), range(k[0]), range(k[1]),
                                            range(oh), range(ow)):
        hh, ww = y * s[0] - p[0] + i, z * s[1] - p[1] + j
        if 0 <= hh < h and 0 <= ww < w:
            dx[:, ci, hh, ww] += cols[:, (ci * k[0] + i) * k[1] + j, y * ow + z]
    return dx


def windows(shape, k, s, p, ceil_mode):
    """(oh, ow, rows, cols, divisor_with_pad) of every pooling window."""
    h, w = shape[2:]
    oh, ow = out_size(h, k[0], s[0], p[0], ceil_mode), out_size(w, k[1], s[1], p[1], ceil_mode)
    for y, z in itertools.product(range(oh), range(ow)):
        h0, w0 = y * s[0] - p[0], z * s[1] - p[1]
        padded = (min(h0 + k[0], h + p[0]) - h0) * (min(w0 + k[1], w + p[1]) - w0)
        rows = range(max(h0, 0), min(h0 + k[0], h))
        cols = range(max(w0, 0), min(w0 + k[1], w))
        yield y, z, rows, cols, padded


def naive_max_pool(x, k, s, p, ceil_mode=False):
    n, c, h, w = x.shape
    oh, ow = out_size(h, k[0], s[0], p[0], ceil_mode), out_size(w, k[1], s[1], p[1], ceil_mode)
    y = np.empty((n, c, oh, ow))
    idx = np.empty((n, c, oh, ow), np.int64)
    for b, ci in itertools.product(range(n), range(c)):
        for o, q, rows, cols, _ in windows(x.shape, k, s, p, ceil_mode):
            best, at = -np.inf, None
            for hh, ww in itertools.product(rows, cols):
                v = float(x[b, ci, hh, ww])
                if at is None or v > best or (np.isnan(v) and not np.isnan(best)):
                    best, at = v, hh * w + ww
            y[b, ci, o, q], idx[b, ci, o, q] = best, at
    return y, idx


def naive_max_pool_backward(dy, idx, shape):
    dx = np.zeros(shape)
    n, c, h, w = shape
    for b, ci, o, q in itertools.product(*map(range, dy.shape)):
        dx[b, ci, idx[b, ci, o, q] // w, idx[b, ci, o, q] % w] += dy[b, ci, o, q]
    return dx


def naive_avg_pool(x, k, s, p, ceil_mode=False, count_include_pad=True):
    n, c = x.shape[:2]
    outs = list(windows(x.shape, k, s, p, ceil_mode))
    y = np.zeros((n, c, outs[-1][0] + 1, outs[-1][1] + 1))
    for o, q, rows, cols, padded in outs:
        divisor = padded if count_include_pad else len(rows) * len(cols)
        total = x[:, :, rows.start:rows.stop, cols.start:cols.stop].astype(np.float64)
        y[:, :, o, q] = total.sum(axis=(2, 3)) / divisor
    return y


def naive_avg_pool_backward(dy, shape, k, s, p, ceil_mode=False, count_include_pad=True):
    dx = np.zeros(shape)
    for o, q, rows, cols, padded in windows(shape, k, s, p, ceil_mode):
        divisor = padded if count_include_pad else len(rows) * len(cols)
        dx[:, :, rows.start:rows.stop, cols.start:cols.stop] += \
            dy[:, :, o, q, None, None] / divisor
    return dx


# ---------------------------------------------------------------------------
# im2col / col2im
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k, s, p", GEOMETRIES, ids=GEOMETRY_IDS)
def test_im2col_matches_naive_loops_exactly(dtype, k, s, p):
    """im2col only copies: every value equals the loop's bit for bit."""
    x = random(SHAPE, dtype)
    before = x.copy()
    cols = _kernels.im2col(x, k, s, p)
    assert cols.dtype == dtype
    np.testing.assert_array_equal(cols, naive_im2col(x.astype(np.float64), k, s, p))
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k, s, p", GEOMETRIES, ids=GEOMETRY_IDS)
def test_col2im_matches_naive_loops(dtype, k, s, p):
    shape = SHAPE
    oh, ow = out_size(shape[2], k[0], s[0], p[0]), out_size(shape[3], k[1], s[1], p[1])
    cols = random((shape[0], shape[1] * k[0] * k[1], oh * ow), dtype, 1)
    before = cols.copy()
    dx = _kernels.col2im(cols, shape, k, s, p)
    assert dx.dtype == dtype and dx.shape == shape
    np.testing.assert_allclose(dx, naive_col2im(cols.astype(np.float64), shape, k, s, p),
                               **tolerance(dtype))
    np.testing.assert_array_equal(cols, before)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k, s, p", GEOMETRIES, ids=GEOMETRY_IDS)
def test_max_pool_forward_and_backward_match_naive_loops(dtype, k, s, p):
    x = random(SHAPE, dtype, 2)
    before = x.copy()
    for ceil_mode in (False, True):
        y, idx = _kernels.max_pool2d_forward(x, k, s, p, ceil_mode=ceil_mode)
        y_ref, idx_ref = naive_max_pool(x, k, s, p, ceil_mode)
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(idx, idx_ref)
        dy = random(y.shape, dtype, 3)
        dy_before, idx_before = dy.copy(), idx.copy()
        dx = _kernels.max_pool2d_backward(dy, idx, SHAPE)
        np.testing.assert_allclose(dx, naive_max_pool_backward(dy.astype(np.float64), idx,
                                                               SHAPE), **tolerance(dtype))
        np.testing.assert_array_equal(dy, dy_before)
        np.testing.assert_array_equal(idx, idx_before)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k, s, p", GEOMETRIES, ids=GEOMETRY_IDS)
def test_avg_pool_forward_and_backward_match_naive_loops(dtype, k, s, p):
    x = random(SHAPE, dtype, 4)
    before = x.copy()
    for ceil_mode, include in itertools.product((False, True), (False, True)):
        y = _kernels.avg_pool2d_forward(x, k, s, p, ceil_mode=ceil_mode, count_include_pad=include)
        np.testing.assert_allclose(y, naive_avg_pool(x, k, s, p, ceil_mode, include),
                                   **tolerance(dtype))
        dy = random(y.shape, dtype, 5)
        dy_before = dy.copy()
        dx = _kernels.avg_pool2d_backward(dy, SHAPE, k, s, p, ceil_mode=ceil_mode,
                                          count_include_pad=include)
        np.testing.assert_allclose(
            dx, naive_avg_pool_backward(dy.astype(np.float64), SHAPE, k, s, p, ceil_mode,
                                        include), **tolerance(dtype))
        np.testing.assert_array_equal(dy, dy_before)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("k, s, p", GEOMETRIES, ids=GEOMETRY_IDS)
def test_col2im_is_the_exact_adjoint_of_im2col(k, s, p):
    """<im2col(x), c> == <x, col2im(c)> for random x and c, in float64: both
    sides sum the same products, so they agree to rounding (1e-12 relative)."""
    x = random(SHAPE, np.float64, 6)
    cols = _kernels.im2col(x, k, s, p)
    c = random(cols.shape, np.float64, 7)
    left = np.dot(cols.ravel(), c.ravel())
    right = np.dot(x.ravel(), _kernels.col2im(c, SHAPE, k, s, p).ravel())
    assert left == pytest.approx(right, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("k, s, p", GEOMETRIES, ids=GEOMETRY_IDS)
def test_avg_pool_backward_is_the_adjoint_of_its_forward(k, s, p):
    """<avg_pool(x), g> == <x, avg_pool_backward(g)> (float64), ceil_mode and
    count_include_pad included: the backward uses the forward's divisors."""
    x = random(SHAPE, np.float64, 8)
    for ceil_mode, include in itertools.product((False, True), (False, True)):
        y = _kernels.avg_pool2d_forward(x, k, s, p, ceil_mode=ceil_mode, count_include_pad=include)
        g = random(y.shape, np.float64, 9)
        dx = _kernels.avg_pool2d_backward(g, SHAPE, k, s, p, ceil_mode=ceil_mode,
                                          count_include_pad=include)
        assert np.dot(y.ravel(), g.ravel()) == pytest.approx(np.dot(x.ravel(), dx.ravel()),
                                                             rel=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_im2col_of_a_1x1_stride_1_unpadded_conv_is_a_copy_of_x(dtype):
    x = random((3, 5, 4, 7), dtype)
    cols = _kernels.im2col(x, 1, 1, 0)
    np.testing.assert_array_equal(cols, x.reshape(3, 5, 28))
    np.testing.assert_array_equal(_kernels.col2im(cols, x.shape, 1, 1, 0), x)


def test_pool_output_size_is_pytorchs_rule():
    """Against the oracle above, over every small case the rule allows; and
    PyTorch's documented examples of ceil_mode (the last window may not start
    in the right padding)."""
    for size, kernel, stride, ceil_mode in itertools.product(
            range(1, 12), range(1, 8), range(1, 5), (False, True)):
        for pad in range(kernel // 2 + 1):
            if size + 2 * pad < kernel:
                continue
            assert _kernels.pool_output_size(size, kernel, stride, pad, ceil_mode=ceil_mode) == \
                out_size(size, kernel, stride, pad, ceil_mode)
    assert _kernels.pool_output_size(6, 3, 2, 0, ceil_mode=False) == 2
    assert _kernels.pool_output_size(6, 3, 2, 0, ceil_mode=True) == 3
    assert _kernels.pool_output_size(5, 2, 2, 1,
                                     ceil_mode=True) == 3  # not 4: that would start in padding
    assert _kernels.pool_output_size(112, 3, 2, 0, ceil_mode=True) == 56  # GoogLeNet's pools


@pytest.mark.parametrize("dtype", DTYPES)
def test_global_pooling_is_the_plane_mean_and_max(dtype):
    x = random((2, 4, 7, 5), dtype, 10)
    y = _kernels.avg_pool2d_forward(x, (7, 5), (7, 5), 0)
    np.testing.assert_allclose(y[:, :, 0, 0], x.astype(np.float64).mean(axis=(2, 3)),
                               **tolerance(dtype))
    m, idx = _kernels.max_pool2d_forward(x, (7, 5), None, 0)
    np.testing.assert_array_equal(m[:, :, 0, 0], x.max(axis=(2, 3)))
    np.testing.assert_array_equal(idx[:, :, 0, 0], x.reshape(2, 4, -1).argmax(axis=2))
    dy = random((2, 4, 1, 1), dtype, 11)
    dx = _kernels.avg_pool2d_backward(dy, x.shape, (7, 5), None, 0)
    np.testing.assert_allclose(dx, np.broadcast_to(dy / dtype(35), x.shape), **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_never_takes_the_padding_and_propagates_nan(dtype):
    x = -np.ones((1, 1, 4, 4), dtype) - np.arange(16, dtype=dtype).reshape(1, 1, 4, 4)
    y, idx = _kernels.max_pool2d_forward(x, 3, 1, 1)
    assert (y < 0).all()  # zero padding would have won
    np.testing.assert_array_equal(y, naive_max_pool(x, (3, 3), (1, 1), (1, 1))[0])
    x[0, 0, 1, 2] = np.nan
    x[0, 0, 2, 2] = np.nan
    y, idx = _kernels.max_pool2d_forward(x, 3, 1, 1)
    assert np.isnan(y[0, 0, 1, 1]) and idx[0, 0, 1, 1] == 1 * 4 + 2  # the first NaN
    assert np.isnan(y[0, 0, 3, 3]) and idx[0, 0, 3, 3] == 2 * 4 + 2
    assert y[0, 0, 0, 0] == -1 and idx[0, 0, 0, 0] == 0
    ties = np.zeros((1, 1, 3, 3), dtype)
    assert _kernels.max_pool2d_forward(ties, 3, 1, 0)[1].item() == 0  # the first max
    minus_inf = np.full((1, 1, 2, 2), -np.inf, dtype)
    y, idx = _kernels.max_pool2d_forward(minus_inf, 2, 1, 1)
    assert (y == -np.inf).all() and (idx >= 0).all()  # an input element, never the padding
    np.testing.assert_array_equal(idx, naive_max_pool(minus_inf, (2, 2), (1, 1), (1, 1))[1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_batch_gives_empty_outputs(dtype):
    x = np.zeros((0, 3, 6, 5), dtype)
    assert _kernels.im2col(x, 3, 1, 1).shape == (0, 27, 30)
    assert _kernels.col2im(np.zeros((0, 27, 30), dtype), x.shape, 3, 1, 1).shape == x.shape
    y, idx = _kernels.max_pool2d_forward(x, 3, 2, 1)
    assert y.shape == idx.shape == (0, 3, 3, 3)
    assert _kernels.max_pool2d_backward(y, idx, x.shape).shape == x.shape
    y = _kernels.avg_pool2d_forward(x, 3, 2, 1, ceil_mode=True, count_include_pad=False)
    assert y.shape == (0, 3, 4, 3)  # ceil_mode
    assert _kernels.avg_pool2d_backward(y, x.shape, 3, 2, 1, ceil_mode=True,
                                        count_include_pad=False).shape == x.shape
    assert _kernels.im2col(np.zeros((2, 0, 6, 5), dtype), 3, 1, 1).shape == (2, 0, 30)


@pytest.mark.parametrize("dtype", DTYPES)
def test_out_is_overwritten_and_returned(dtype):
    """out= receives the result whatever it held before (col2im and the
    backwards overwrite, they do not accumulate)."""
    x = random(SHAPE, dtype, 12)
    k, s, p = (3, 3), (2, 2), (1, 1)
    cols = _kernels.im2col(x, k, s, p)
    calls = [
        (lambda out: _kernels.im2col(x, k, s, p, out=out), cols),
        (lambda out: _kernels.col2im(cols, SHAPE, k, s, p, out=out),
         _kernels.col2im(cols, SHAPE, k, s, p)),
        (lambda out: _kernels.avg_pool2d_forward(x, k, s, p, out=out),
         _kernels.avg_pool2d_forward(x, k, s, p)),
    ]
    y, idx = _kernels.max_pool2d_forward(x, k, s, p)
    calls += [
        (lambda out: _kernels.max_pool2d_backward(y, idx, SHAPE, out=out),
         _kernels.max_pool2d_backward(y, idx, SHAPE)),
        (lambda out: _kernels.avg_pool2d_backward(y, SHAPE, k, s, p, out=out),
         _kernels.avg_pool2d_backward(y, SHAPE, k, s, p)),
    ]
    for call, expected in calls:
        out = np.full(expected.shape, np.nan, dtype)
        assert call(out) is out
        np.testing.assert_array_equal(out, expected)
    out, at = np.full(y.shape, 7, dtype), np.full(y.shape, -5, np.int64)
    y2, idx2 = _kernels.max_pool2d_forward(x, k, s, p, out=out, indices=at)
    assert y2 is out and idx2 is at
    np.testing.assert_array_equal(out, y)
    np.testing.assert_array_equal(at, idx)


def test_every_thread_count_gives_the_same_bits():
    """Threads split the (n, c) planes, never one plane: 1 to 4 threads agree
    bit for bit. Sizes large enough for the kernels to use every thread."""
    shape = (4, 8, 33, 30)
    results = {}
    try:
        for threads in range(1, 5):
            bnkernels.set_num_threads(threads)
            outs = []
            for dtype in DTYPES:
                x = random(shape, dtype, 13)
                cols = _kernels.im2col(x, (3, 3), 1, 1)
                outs += [cols, _kernels.col2im(cols, shape, (3, 3), 1, 1),
                         _kernels.col2im(_kernels.im2col(x, (1, 7), 2, (0, 3)), shape, (1, 7),
                                         2, (0, 3))]
                y, idx = _kernels.max_pool2d_forward(x, 3, 2, 1, ceil_mode=True)
                outs += [y, idx, _kernels.max_pool2d_backward(y, idx, shape)]
                a = _kernels.avg_pool2d_forward(x, 3, 1, 1, ceil_mode=False,
                                                count_include_pad=False)
                outs += [a, _kernels.avg_pool2d_backward(a, shape, 3, 1, 1, ceil_mode=False,
                                                         count_include_pad=False)]
            results[threads] = outs
    finally:
        bnkernels.set_num_threads(None)
    for threads in (2, 3, 4):
        for one, many in zip(results[1], results[threads]):
            assert one.tobytes() == many.tobytes()


# ---------------------------------------------------------------------------
# the pure-NumPy twins (bnkernels.reference) agree with the kernels
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k, s, p", GEOMETRIES, ids=GEOMETRY_IDS)
def test_reference_twins_agree_with_the_kernels(dtype, k, s, p):
    """im2col and max pooling select values: equal bit for bit; the sums agree
    to the tolerance above (the twin sums in x's dtype, in another order)."""
    x = random(SHAPE, dtype, 14)
    cols = _kernels.im2col(x, k, s, p)
    np.testing.assert_array_equal(reference.im2col(x, k, s, p), cols)
    np.testing.assert_allclose(reference.col2im(cols, SHAPE, k, s, p),
                               _kernels.col2im(cols, SHAPE, k, s, p), **tolerance(dtype))
    for ceil_mode, include in itertools.product((False, True), (False, True)):
        y, idx = _kernels.max_pool2d_forward(x, k, s, p, ceil_mode=ceil_mode)
        y_ref, idx_ref = reference.max_pool2d_forward(x, k, s, p, ceil_mode=ceil_mode)
        assert y_ref.dtype == dtype and idx_ref.dtype == np.int64
        np.testing.assert_array_equal(y_ref, y)
        np.testing.assert_array_equal(idx_ref, idx)
        np.testing.assert_allclose(reference.max_pool2d_backward(y, idx, SHAPE),
                                   _kernels.max_pool2d_backward(y, idx, SHAPE),
                                   **tolerance(dtype))
        a = _kernels.avg_pool2d_forward(x, k, s, p, ceil_mode=ceil_mode, count_include_pad=include)
        a_ref = reference.avg_pool2d_forward(x, k, s, p, ceil_mode=ceil_mode,
                                             count_include_pad=include)
        assert a_ref.dtype == dtype
        np.testing.assert_allclose(a_ref, a, **tolerance(dtype))
        np.testing.assert_allclose(
            reference.avg_pool2d_backward(a, SHAPE, k, s, p, ceil_mode=ceil_mode,
                                          count_include_pad=include),
            _kernels.avg_pool2d_backward(a, SHAPE, k, s, p, ceil_mode=ceil_mode,
                                         count_include_pad=include),
            **tolerance(dtype))
        assert reference.pool_output_size(9, k[0], s[0], p[0], ceil_mode=ceil_mode) == \
            _kernels.pool_output_size(9, k[0], s[0], p[0], ceil_mode=ceil_mode)


def test_reference_max_pool_takes_the_first_nan_like_the_kernel():
    x = random((1, 2, 5, 5), np.float64, 15)
    x[0, 0, 1, 1] = x[0, 0, 2, 3] = x[0, 1, 4, 4] = np.nan
    y, idx = _kernels.max_pool2d_forward(x, 3, 1, 1)
    y_ref, idx_ref = reference.max_pool2d_forward(x, 3, 1, 1)
    np.testing.assert_array_equal(y_ref, y)
    np.testing.assert_array_equal(idx_ref, idx)


# ---------------------------------------------------------------------------
# PyTorch, when installed
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k, s, p", GEOMETRIES, ids=GEOMETRY_IDS)
def test_agrees_with_pytorch(dtype, k, s, p):
    """unfold and max_pool2d select values: equal bit for bit (indices too);
    fold, avg_pool2d and the backwards sum, in another order (PyTorch's float32
    average sums in float32): within the tolerance above."""
    torch = pytest.importorskip("torch", reason="PyTorch is the optional second oracle")
    F = torch.nn.functional
    x = random(SHAPE, dtype, 16)
    t = torch.from_numpy(x.copy()).requires_grad_(True)
    cols = _kernels.im2col(x, k, s, p)
    np.testing.assert_array_equal(cols, F.unfold(t, k, padding=p, stride=s).detach().numpy())
    np.testing.assert_allclose(_kernels.col2im(cols, SHAPE, k, s, p),
                               F.fold(torch.from_numpy(cols), SHAPE[2:], k, padding=p,
                                      stride=s).numpy(), **tolerance(dtype))
    for ceil_mode, include in itertools.product((False, True), (False, True)):
        y, idx = _kernels.max_pool2d_forward(x, k, s, p, ceil_mode=ceil_mode)
        ty, tidx = F.max_pool2d(t, k, s, p, ceil_mode=ceil_mode, return_indices=True)
        np.testing.assert_array_equal(y, ty.detach().numpy())
        np.testing.assert_array_equal(idx, tidx.numpy())
        g = random(y.shape, dtype, 17)
        t.grad = None
        ty.backward(torch.from_numpy(g))
        np.testing.assert_allclose(_kernels.max_pool2d_backward(g, idx, SHAPE),
                                   t.grad.numpy(), **tolerance(dtype))
        a = _kernels.avg_pool2d_forward(x, k, s, p, ceil_mode=ceil_mode, count_include_pad=include)
        ta = F.avg_pool2d(t, k, s, p, ceil_mode=ceil_mode, count_include_pad=include)
        np.testing.assert_allclose(a, ta.detach().numpy(), **tolerance(dtype))
        t.grad = None
        ta.backward(torch.from_numpy(g))
        np.testing.assert_allclose(
            _kernels.avg_pool2d_backward(g, SHAPE, k, s, p, ceil_mode=ceil_mode,
                                         count_include_pad=include),
            t.grad.numpy(), **tolerance(dtype))


def test_max_pool_nan_values_agree_with_pytorch():
    """A NaN in the window gives NaN, as in PyTorch (whose index is that of the
    last NaN where a window holds several; ours is the first)."""
    torch = pytest.importorskip("torch", reason="PyTorch is the optional second oracle")
    x = random((1, 1, 6, 6), np.float32, 18)
    x[0, 0, 2, 3] = np.nan
    y, idx = _kernels.max_pool2d_forward(x, 3, 1, 1)
    ty, tidx = torch.nn.functional.max_pool2d(torch.from_numpy(x), 3, 1, 1,
                                               return_indices=True)
    np.testing.assert_array_equal(y, ty.numpy())  # NaN where NaN
    np.testing.assert_array_equal(idx, tidx.numpy())  # one NaN per window: the same index


# ---------------------------------------------------------------------------
# bad input: clear errors that name the argument, expected vs given
# ---------------------------------------------------------------------------

X = random(SHAPE, np.float64, 19)


@pytest.mark.parametrize("call, error, message", [
    (lambda: _kernels.im2col(X.astype(np.int32), 3, 1, 1), TypeError,
     r"x must have dtype float32 or float64.*int32"),
    (lambda: _kernels.im2col(X[:, :, :, ::2], 3, 1, 1), ValueError, r"x must be C-contiguous"),
    (lambda: _kernels.im2col(X[0], 3, 1, 1), ValueError, r"x must be 4-D.*got 3-D"),
    (lambda: _kernels.im2col(X, 3, 1, 1, out=np.empty((2, 27, 71))), ValueError,
     r"out has shape \(2, 27, 71\), expected \(2, 27, 72\)"),
    (lambda: _kernels.im2col(X, 3, 1, 1, out=np.empty((2, 27, 72), np.float32)), TypeError,
     r"out has dtype float32, expected float64"),
    (lambda: _kernels.im2col(X, 10, 1, 0), ValueError,
     r"kernel_size \(10, 10\) is larger than x's padded height and width"),
    (lambda: _kernels.im2col(X, (3, 9), 1, 0), ValueError, r"output would be 7x0"),
    (lambda: _kernels.im2col(X, 3.0, 1, 1), TypeError,
     r"kernel_size must be an int or an \(h, w\) pair of ints, got 3.0"),
    (lambda: _kernels.im2col(X, (3, 3, 3), 1, 1), TypeError, r"kernel_size must be"),
    (lambda: _kernels.im2col(X, True, 1, 1), TypeError, r"kernel_size must be"),
    (lambda: _kernels.im2col(X, 3, 0, 1), ValueError, r"stride must be >= 1.*\(0, 0\)"),
    (lambda: _kernels.im2col(X, 3, 1, (-1, 0)), ValueError, r"padding must be >= 0"),
    (lambda: _kernels.im2col(np.zeros((1, 1, 0, 3)), 1, 1, 1), ValueError,
     r"x must have height and width >= 1"),
    (lambda: _kernels.col2im(np.zeros((2, 27, 71)), SHAPE, 3, 1, 1), ValueError,
     r"cols has shape \(2, 27, 71\), expected \(2, 27, 72\)"),
    (lambda: _kernels.col2im(np.zeros((2, 27, 72), np.int64), SHAPE, 3, 1, 1), TypeError,
     r"cols must have dtype float32 or float64"),
    (lambda: _kernels.col2im(np.zeros((2, 27, 72)), (2, 3, 9), 3, 1, 1), TypeError,
     r"x_shape must be \(N, C, H, W\)"),
    (lambda: _kernels.max_pool2d_forward(X, 3, 1, 2), ValueError,
     r"padding \(2, 2\) must be at most half of kernel_size \(3, 3\)"),
    (lambda: _kernels.avg_pool2d_forward(X, (1, 3), 1, (1, 0)), ValueError,
     r"padding \(1, 0\) must be at most half of kernel_size \(1, 3\)"),
    (lambda: _kernels.max_pool2d_forward(X, 10, 1, 0), ValueError, r"larger than x's padded"),
    (lambda: _kernels.avg_pool2d_forward(X.astype(">f8"), 3, 1, 1), TypeError, r"x must have"),
    (lambda: _kernels.max_pool2d_forward(X, 3, 1, 1, indices=np.empty((2, 3, 9, 8),
                                                                       np.int32)),
     TypeError, r"indices has dtype int32, expected int64"),
    (lambda: _kernels.max_pool2d_backward(X, np.zeros(SHAPE, np.int64), (2, 4, 9, 8)),
     ValueError, r"dy has shape \(2, 3, 9, 8\), expected \(N, C\) = \(2, 4\)"),
    (lambda: _kernels.max_pool2d_backward(X, np.zeros(SHAPE, np.int32), SHAPE), TypeError,
     r"indices must have dtype int64"),
    (lambda: _kernels.max_pool2d_backward(X, np.zeros((2, 3, 9, 7), np.int64), SHAPE),
     ValueError, r"indices has shape \(2, 3, 9, 7\), expected \(2, 3, 9, 8\)"),
    (lambda: _kernels.max_pool2d_backward(X, np.full(SHAPE, 72, np.int64), SHAPE), ValueError,
     r"indices must lie in \[0, H\*W\) = \[0, 72\).*from 72 to 72"),
    (lambda: _kernels.max_pool2d_backward(X, np.full(SHAPE, -1, np.int64), SHAPE), ValueError,
     r"indices must lie in"),
    (lambda: _kernels.avg_pool2d_backward(X, SHAPE, 3, 2, 1), ValueError,
     r"dy has shape \(2, 3, 9, 8\), expected \(2, 3, 5, 4\)"),
    (lambda: _kernels.avg_pool2d_backward(X, SHAPE, 3, 1, 1, out=np.empty(SHAPE)[..., ::-1]),
     ValueError, r"out must be C-contiguous"),
    (lambda: _kernels.pool_output_size(5, 3, 1, 2, ceil_mode=False), ValueError,
     r"padding 2 must be at most half of kernel 3"),
    (lambda: _kernels.pool_output_size(2, 5, 1, 1, ceil_mode=False), ValueError,
     r"larger than size 2"),
    (lambda: _kernels.pool_output_size(5, 3, 0, 1, ceil_mode=False), ValueError,
     r"stride must be >= 1"),
    (lambda: _kernels.pool_output_size(5.0, 3, 1, 1, ceil_mode=False), TypeError,
     r"size must be an int"),
])
def test_rejects_bad_input_with_a_message_naming_the_argument(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_rejects_out_that_aliases_an_input():
    x = random(SHAPE, np.float64, 20)
    before = x.copy()
    with pytest.raises(ValueError, match=r"out overlaps input x"):
        _kernels.avg_pool2d_forward(x, 1, 1, 0, out=x)
    with pytest.raises(ValueError, match=r"out overlaps input x"):
        _kernels.im2col(x, 1, 1, 0, out=x.reshape(2, 3, 72))
    cols = _kernels.im2col(x, 1, 1, 0)
    with pytest.raises(ValueError, match=r"out overlaps input cols"):
        _kernels.col2im(cols, SHAPE, 1, 1, 0, out=cols.reshape(SHAPE))
    y, idx = _kernels.max_pool2d_forward(x, 3, 1, 1)
    with pytest.raises(ValueError, match=r"out overlaps input dy"):
        _kernels.max_pool2d_backward(y, idx, SHAPE, out=y)
    with pytest.raises(ValueError, match=r"out overlaps input indices"):
        _kernels.max_pool2d_backward(y, idx, SHAPE, out=idx.view(np.float64))
    with pytest.raises(ValueError, match=r"indices overlaps input out"):
        _kernels.max_pool2d_forward(x, 3, 1, 1, out=y, indices=y.view(np.int64))
    read_only = np.empty(SHAPE)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match=r"out is read-only"):
        _kernels.avg_pool2d_forward(x, 3, 1, 1, out=read_only)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, k, p", [((1, 2, 1, 1), (7, 7), (3, 3)),
                                         ((2, 1, 1, 2), (7, 5), (3, 2)),
                                         ((1, 1, 2, 1), (1, 7), (0, 3))])
def test_windows_mostly_in_the_padding(dtype, shape, k, p):
    """A plane smaller than the kernel: whole kernel rows and columns read
    only padding (a regression: im2col once cleared a negative length there)."""
    x = random(shape, dtype, 22)
    cols = _kernels.im2col(x, k, 1, p)
    np.testing.assert_array_equal(cols, naive_im2col(x, k, (1, 1), p))
    np.testing.assert_allclose(_kernels.col2im(cols, shape, k, 1, p),
                               naive_col2im(cols.astype(np.float64), shape, k, (1, 1), p),
                               **tolerance(dtype))
    for s in ((1, 1), (2, 3)):
        y, idx = _kernels.max_pool2d_forward(x, k, s, p, ceil_mode=True)
        np.testing.assert_array_equal(y, naive_max_pool(x, k, s, p, True)[0])
        np.testing.assert_array_equal(idx, naive_max_pool(x, k, s, p, True)[1])
        for include in (False, True):
            np.testing.assert_allclose(_kernels.avg_pool2d_forward(x, k, s, p, ceil_mode=True,
                                                                   count_include_pad=include),
                                       naive_avg_pool(x, k, s, p, True, include),
                                       **tolerance(dtype))


def test_im2col_allows_padding_wider_than_half_the_kernel():
    """Only the pools have PyTorch's padding <= kernel // 2 rule (unfold has none)."""
    x = random((1, 2, 3, 3), np.float64, 21)
    np.testing.assert_array_equal(_kernels.im2col(x, 1, 1, 2),
                                  naive_im2col(x, (1, 1), (1, 1), (2, 2)))


# ---------------------------------------------------------------------------
# hostile sizes: every size is checked before anything is allocated or any C
# runs (issue 20: padding=2**31 once made the window count wrap to 0 in 64
# bits, a 0-byte output, and the kernel wrote past it)
# ---------------------------------------------------------------------------

# the most values one array may hold: bn_pool_geometry_check's
# BN_POOL_MAX_VALUES, its bytes (8 per value at most) within ptrdiff_t
MAX_VALUES = (2**63 - 1) // 8
X1 = random((1, 1, 1, 1), np.float64, 23)


@pytest.mark.parametrize("call, message", [
    (lambda: _kernels.im2col(X1, 2, 1, 2**31),
     r"im2col of x \(1, 1, 1, 1\) with kernel_size \(2, 2\), stride \(1, 1\), padding "
     r"\(2147483648, 2147483648\): the grid of windows \(N, C, OH, OW\) "
     r"\(1, 1, 4294967296, 4294967296\) has more values than the kernels can address"),
    (lambda: _kernels.col2im(np.zeros((1, 4, 1)), (1, 1, 1, 1), 2, 1, 2**31),
     r"col2im of x_shape \(1, 1, 1, 1\).*padding \(2147483648, 2147483648\)"),
    (lambda: _kernels.im2col(X1, (1, 2**30), 1, (0, 2**30)),
     r"the columns \(N, C, kh\*kw, OH\*OW\) \(1, 1, 1073741824, 1073741826\) has more"),
    (lambda: _kernels.avg_pool2d_forward(X1, 2**40, 1, 2**39),
     r"the windows' values \(N, C, kh\*kw, OH\*OW\)"),
    (lambda: _kernels.im2col(X1, 2**60 + 1, 1, 0),
     r"kernel_size must be at most 2\*\*60 along both axes, got \(1152921504606846977,"),
    (lambda: _kernels.im2col(X1, 3, (1, 2**63), 1), r"stride must be at most 2\*\*60"),
    (lambda: _kernels.max_pool2d_forward(X1, 3, 1, 2**64), r"padding must be at most 2\*\*60"),
    (lambda: _kernels.col2im(np.zeros((1, 4, 1)), (1, 1, 2**62, 1), 2, 1, 0),
     r"x_shape \(1, 1, 4611686018427387904, 1\) has more values than the kernels"),
    (lambda: _kernels.col2im(np.zeros((0, 4, 1)), (0, 1, 2**61, 1), 2, 1, 0),
     r"x_shape \(0, 1, 2305843009213693952, 1\) has more values"),
    (lambda: _kernels.avg_pool2d_backward(np.zeros((1, 1, 1, 1)), (2**31, 2**31, 2, 2), 2, 2,
                                          0),
     r"x_shape \(2147483648, 2147483648, 2, 2\) has more values"),
    (lambda: _kernels.max_pool2d_backward(np.zeros((1, 1, 1, 1)), np.zeros((1, 1, 1, 1),
                                                                            np.int64),
                                          (1, 1, 2**40, 2**40)),
     r"x_shape \(1, 1, 1099511627776, 1099511627776\) has more values"),
    (lambda: _kernels.pool_output_size(2**63, 3, 1, 1, ceil_mode=False),
     r"size must be at most 9223372036854775807"),
    (lambda: _kernels.pool_output_size(2**63 - 2**60, 2**60, 2**60, 2**59, ceil_mode=False),
     r"size \+ 2\*padding \+ kernel \+ stride = 11529215046068469760 must be at most"),
])
def test_rejects_sizes_beyond_what_the_kernels_can_address(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("call, message", [
    (lambda: _kernels.max_pool2d_forward(X, 3, 1, 1, ceil_mode="yes"),
     r"ceil_mode must be a bool"),
    (lambda: _kernels.avg_pool2d_forward(X, 3, 1, 1, ceil_mode=np.nan),
     r"ceil_mode must be a bool"),
    (lambda: _kernels.avg_pool2d_forward(X, 3, 1, 1, ceil_mode=False, count_include_pad=2),
     r"count_include_pad must be a bool, got 2"),
    (lambda: _kernels.avg_pool2d_backward(np.zeros((2, 3, 9, 8)), SHAPE, 3, 1, 1,
                                          ceil_mode=False, count_include_pad=None),
     r"count_include_pad must be a bool"),
    (lambda: _kernels.pool_output_size(5, 3, 1, 1, ceil_mode="no"), r"ceil_mode must be a bool"),
    (lambda: _kernels.im2col(X, 3, 1.0, 1), r"stride must be an int or an \(h, w\) pair"),
    (lambda: _kernels.im2col(X, 3, 1, np.float64(1)), r"padding must be an int"),
    (lambda: _kernels.im2col(X, "33", 1, 1), r"kernel_size must be an int"),
])
def test_rejects_flags_and_sizes_of_the_wrong_type(call, message):
    with pytest.raises(TypeError, match=message):
        call()


def test_accepts_strides_and_paddings_near_the_limit_with_exact_results():
    """Huge strides and paddings that leave a few windows: the coordinates of
    the kernels (o * stride - padding) are near 2**60 and must not overflow."""
    x = random((1, 2, 3, 3), np.float64, 24)
    for k, s, p in [((2, 2), (2**60, 2**60), (2**59, 2**59)),
                    ((1, 3), (2**60, 1), (2**60, 1)),
                    ((3, 1), (2**40, 1), (2**40, 0))]:
        cols = _kernels.im2col(x, k, s, p)
        np.testing.assert_array_equal(cols, naive_im2col(x, k, s, p))
        np.testing.assert_allclose(_kernels.col2im(cols, x.shape, k, s, p),
                                   naive_col2im(cols, x.shape, k, s, p), rtol=1e-12)
    for k, s, p, ceil_mode in [((2**30, 3), (2**60, 1), (2**29, 1), True),
                               ((2**20, 2), (2**60, 2**60), (2**19, 1), False)]:
        y, idx = _kernels.max_pool2d_forward(x, k, s, p, ceil_mode=ceil_mode)
        y_ref, idx_ref = naive_max_pool(x, k, s, p, ceil_mode)
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(idx, idx_ref)
        for include in (False, True):
            np.testing.assert_allclose(_kernels.avg_pool2d_forward(x, k, s, p, ceil_mode=ceil_mode,
                                                                   count_include_pad=include),
                                       naive_avg_pool(x, k, s, p, ceil_mode, include),
                                       rtol=1e-12)


def test_a_zero_batch_does_not_excuse_an_impossible_plane():
    """x of shape (0, C, H, W) holds nothing, but the rule is per (n, c) plane
    too, as in bn_pool_geometry_check: 2**40 x 2**40 windows are refused."""
    x = np.empty((0, 1, 1, 1))
    assert _kernels.im2col(np.empty((0, 3, 5, 5)), 3, 1, 1).shape == (0, 27, 25)
    with pytest.raises(ValueError, match=r"the grid of windows \(N, C, OH, OW\) "
                                         r"\(0, 1, 1099511627777, 1099511627777\)"):
        _kernels.im2col(x, 1, 1, 2**39)


# -- Hypothesis: random geometries, hostile values among them -------------

# a size argument: an ordinary small value, or something hostile
HOSTILE_SIZES = [0, -1, -2**63, 2**31, 2**32 + 1, 2**40, 2**60, 2**60 + 1, 2**62, 2**63 - 1,
                 2**63, 2**64, True, False, 2.0, float("nan"), np.int64(2), np.uint8(1),
                 np.float32(1), None, "3", (3,), (3, 3, 3), (1, 2**31), (2**59, 1)]
OPS = ["im2col", "col2im", "max_pool2d", "avg_pool2d"]


def window_argument(value, minimum):
    """The documented rule for kernel_size, stride and padding: an (h, w) pair
    of ints (not bools) in [minimum, 2**60], else the exception type."""
    def is_int(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
    if is_int(value):
        pair = (int(value), int(value))
    elif isinstance(value, (tuple, str)) and len(value) == 2 and all(map(is_int, value)):
        pair = (int(value[0]), int(value[1]))
    else:
        return TypeError
    if min(pair) < minimum or max(pair) > 2**60:
        return ValueError
    return pair


def too_many(shape):
    plane = shape[2] * shape[3]
    return plane > MAX_VALUES or shape[0] * shape[1] * plane > MAX_VALUES


def expected_geometry(op, shape, kernel, stride, padding, ceil_mode):
    """((kh, kw), (sh, sw), (ph, pw), (oh, ow)) by the documented rules, or
    the exception type the call must raise (checked in the calls' order:
    the input, kernel_size, stride, padding, then the sizes)."""
    pool = op.endswith("pool2d")
    if shape[2] < 1 or shape[3] < 1:
        return ValueError
    k = window_argument(kernel, 1)
    if isinstance(k, type):
        return k
    s = k if stride is None else window_argument(stride, 1)
    if isinstance(s, type):
        return s
    p = window_argument(padding, 0)
    if isinstance(p, type):
        return p
    if pool and (p[0] > k[0] // 2 or p[1] > k[1] // 2):
        return ValueError
    if any(shape[2 + a] + 2 * p[a] + k[a] + s[a] > 2**63 - 1 for a in (0, 1)):
        return ValueError
    out = tuple(out_size(shape[2 + a], k[a], s[a], p[a], pool and ceil_mode) for a in (0, 1))
    if min(out) < 1:
        return ValueError
    n, c = shape[:2]
    if too_many((n, c) + out) or too_many((n, c, k[0] * k[1], out[0] * out[1])):
        return ValueError
    return k, s, p, out


def size_argument():
    """Mostly ordinary (an int or a pair of 1 to 4), a quarter hostile."""
    ordinary = st.one_of(st.integers(1, 4), st.tuples(st.integers(1, 4), st.integers(1, 4)))
    hostile = st.one_of(st.sampled_from(HOSTILE_SIZES),
                        st.tuples(st.sampled_from(HOSTILE_SIZES), st.integers(0, 3)))
    return st.one_of(ordinary, ordinary, ordinary, hostile)


SIDES = st.sampled_from([0, 1, 2, 3, 4, 5, 6, 3, 4, 5, 6])  # 0 rarely


@settings(max_examples=1500, deadline=None, derandomize=True, database=None)
@given(op=st.sampled_from(OPS), dtype=st.sampled_from(DTYPES),
       shape=st.tuples(st.integers(0, 2), st.integers(0, 2), SIDES, SIDES),
       kernel=size_argument(), stride=st.one_of(st.none(), size_argument()),
       padding=st.one_of(st.just(0), st.integers(0, 1), size_argument()),
       ceil_mode=st.booleans(),
       include=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_random_geometries_give_the_loops_result_or_a_clear_error(
        op, dtype, shape, kernel, stride, padding, ceil_mode, include, seed):
    """Oracle: the naive float64 loops above for every geometry the
    documented rules accept (when its output is small enough to compute
    here), and the rules' exception type otherwise; the inputs unchanged."""
    want = expected_geometry(op, shape, kernel, stride, padding, ceil_mode)
    x = random(shape, dtype, seed) if shape[2] and shape[3] else np.zeros(shape, dtype)
    if isinstance(want, type):
        before = x.copy()
        with pytest.raises(want):
            if op == "im2col":
                _kernels.im2col(x, kernel, stride, padding)
            elif op == "col2im":
                _kernels.col2im(np.zeros((shape[0], 1, 1), dtype), shape, kernel, stride,
                                padding)
            elif op == "max_pool2d":
                _kernels.max_pool2d_forward(x, kernel, stride, padding, ceil_mode=ceil_mode)
            else:
                _kernels.avg_pool2d_forward(x, kernel, stride, padding, ceil_mode=ceil_mode,
                                            count_include_pad=include)
        if op == "avg_pool2d":
            with pytest.raises(want):
                _kernels.avg_pool2d_backward(np.zeros((1, 1, 1, 1), dtype), shape, kernel,
                                             stride, padding, ceil_mode=ceil_mode,
                                             count_include_pad=include)
        np.testing.assert_array_equal(x, before)
        return
    k, s, p, (oh, ow) = want
    n, c = shape[:2]
    if n * c * k[0] * k[1] * oh * ow > 20_000 or k[0] * k[1] * oh * ow > 20_000:
        return  # valid, but the loops would take too long (the sizes are checked above)
    before = x.copy()
    if op in ("im2col", "col2im"):
        cols = _kernels.im2col(x, kernel, stride, padding)
        np.testing.assert_array_equal(cols, naive_im2col(x.astype(np.float64), k, s, p))
        c_in = random(cols.shape, dtype, seed + 1)
        np.testing.assert_allclose(_kernels.col2im(c_in, shape, kernel, stride, padding),
                                   naive_col2im(c_in.astype(np.float64), shape, k, s, p),
                                   **tolerance(dtype))
    elif op == "max_pool2d":
        y, idx = _kernels.max_pool2d_forward(x, kernel, stride, padding, ceil_mode=ceil_mode)
        y_ref, idx_ref = naive_max_pool(x, k, s, p, ceil_mode)
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(idx, idx_ref)
        dy = random(y.shape, dtype, seed + 2)
        np.testing.assert_allclose(_kernels.max_pool2d_backward(dy, idx, shape),
                                   naive_max_pool_backward(dy.astype(np.float64), idx, shape),
                                   **tolerance(dtype))
    else:
        y = _kernels.avg_pool2d_forward(x, kernel, stride, padding, ceil_mode=ceil_mode,
                                        count_include_pad=include)
        assert y.shape == (n, c, oh, ow)
        if n * c:
            np.testing.assert_allclose(y, naive_avg_pool(x, k, s, p, ceil_mode, include),
                                       **tolerance(dtype))
        dy = random(y.shape, dtype, seed + 3)
        np.testing.assert_allclose(
            _kernels.avg_pool2d_backward(dy, shape, kernel, stride, padding, ceil_mode=ceil_mode,
                                         count_include_pad=include),
            naive_avg_pool_backward(dy.astype(np.float64), shape, k, s, p, ceil_mode,
                                    include), **tolerance(dtype))
    np.testing.assert_array_equal(x, before)


# ---------------------------------------------------------------------------
# the ReLU layers' backward (_kernels._relu_backward, bn_relu_backward)
# ---------------------------------------------------------------------------

def relu_specials(dtype):
    """Values where the rule x > 0 is easy to get wrong: both zeros, both
    infinities, NaN, the smallest subnormals and normals, and ordinary ones."""
    info = np.finfo(dtype)
    tiny = info.smallest_subnormal
    return np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, tiny, -tiny,
                     info.tiny, -info.tiny, info.max, -info.max, 1.0, -1.0, 0.5, -2.5],
                    dtype)


def relu_oracle(dy, x):
    """dy where x > 0, else +0, decided and selected in float64 (a float32
    value is exactly its float64 conversion); the bits of the dtype."""
    with np.errstate(invalid="ignore"):  # signalling NaNs become quiet ones
        keep = x.astype(np.float64) > 0
        out = np.where(keep, dy.astype(np.float64), 0.0).astype(dy.dtype)
    # NumPy's conversion keeps a NaN's sign and payload only as a quiet NaN;
    # a kept NaN dy must come back with its own bits
    out[keep & np.isnan(dy)] = dy[keep & np.isnan(dy)]
    return out


def relu_cases(dtype, seed, n_random=1000):
    """Every (dy, x) pair of specials, then random values and raw bit patterns."""
    s = relu_specials(dtype)
    dy, x = (a.ravel() for a in np.meshgrid(s, s))
    rng = np.random.default_rng(seed)
    uint = np.uint32 if dtype == np.float32 else np.uint64
    raw = rng.integers(0, np.iinfo(uint).max, (2, n_random), dtype=uint, endpoint=True)
    raw = raw.view(dtype)
    normal = rng.standard_normal((2, n_random)).astype(dtype)
    return (np.concatenate([dy, raw[0], normal[0]]), np.concatenate([x, raw[1], normal[1]]))


def same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_backward_matches_the_float64_oracle_bit_for_bit(dtype):
    """NaN, -0 and negative x give +0; x > 0 (a positive subnormal, +inf)
    passes dy with its bits (a NaN dy, a -0 dy)."""
    dy, x = relu_cases(dtype, 30)
    dx = _kernels._relu_backward(dy, x)
    assert same_bits(dx, relu_oracle(dy, x))
    zero = ~(x > 0)
    assert not np.signbit(dx[zero]).any() and (dx[zero] == 0).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (2, 3), (2, 0, 5), (3, 4, 5, 6),
                                   (1, 2, 3, 4, 5)], ids=str)
def test_relu_backward_takes_any_shape(dtype, shape):
    rng = np.random.default_rng(31)
    dy = rng.standard_normal(shape).astype(dtype)
    x = rng.standard_normal(shape).astype(dtype)
    dx = _kernels._relu_backward(dy, x)
    assert same_bits(dx, relu_oracle(dy, x))


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_backward_out_is_overwritten_and_may_be_dy(dtype):
    dy, x = relu_cases(dtype, 32)
    expected = relu_oracle(dy, x)
    x_before, dy_before = x.tobytes(), dy.tobytes()
    out = np.full_like(dy, 7)
    assert _kernels._relu_backward(dy, x, out=out) is out
    assert same_bits(out, expected)
    assert x.tobytes() == x_before and dy.tobytes() == dy_before
    assert _kernels._relu_backward(dy, x, out=dy) is dy
    assert same_bits(dy, expected)


def test_relu_backward_gives_the_same_bits_on_1_and_2_threads():
    """Sizes past the threshold for threads, the back-off off so that two
    threads run; ranges of any length, not a multiple of the vector width."""
    results = {}
    try:
        _kernels._set_thread_backoff(False)
        for threads in (1, 2):
            bnkernels.set_num_threads(threads)
            results[threads] = [
                _kernels._relu_backward(*relu_cases(dtype, 33, n_random=n))
                for dtype in DTYPES for n in (300_001, 1 << 20)]
    finally:
        _kernels._set_thread_backoff(True)
        bnkernels.set_num_threads(None)
    for one, two, args in zip(results[1], results[2],
                              [(d, n) for d in DTYPES for n in (300_001, 1 << 20)]):
        dy, x = relu_cases(args[0], 33, n_random=args[1])
        assert same_bits(one, relu_oracle(dy, x))
        assert same_bits(one, two)


R = np.ones((2, 3), np.float32)
B = np.ones(12, np.float32)


@pytest.mark.parametrize("call, error, message", [
    (lambda: _kernels._relu_backward(R, R.astype(np.int32)), TypeError,
     r"x must have dtype float32 or float64.*got dtype\('int32'\)"),
    (lambda: _kernels._relu_backward(R, R.astype(">f4")), TypeError,
     r"x must have dtype float32 or float64 \(native byte order\)"),
    (lambda: _kernels._relu_backward(R.astype(np.float64), R), TypeError,
     r"dy has dtype float64, expected float32 to match x"),
    (lambda: _kernels._relu_backward(R, np.ones((3, 2), np.float32)), ValueError,
     r"dy has shape \(2, 3\), expected \(3, 2\) to match x"),
    (lambda: _kernels._relu_backward(R, np.ones((3, 4), np.float32)[:, ::2]), ValueError,
     r"x must be C-contiguous"),
    (lambda: _kernels._relu_backward(np.ones((2, 6), np.float32)[:, ::2], R), ValueError,
     r"dy must be C-contiguous"),
    (lambda: _kernels._relu_backward(None, R), TypeError, r"dy must be an array, got None"),
    (lambda: _kernels._relu_backward(R, None), TypeError, r"x must be an array, got None"),
    (lambda: _kernels._relu_backward(R, R, out=np.ones((2, 3))), TypeError,
     r"out has dtype float64, expected float32"),
    (lambda: _kernels._relu_backward(R, R, out=np.ones((6,), np.float32)), ValueError,
     r"out has shape \(6,\), expected \(2, 3\)"),
    (lambda: _kernels._relu_backward(B[:6].reshape(2, 3), R, out=B[3:9].reshape(2, 3)),
     ValueError, r"out overlaps input dy"),
])
def test_relu_backward_rejects_bad_input_naming_the_argument(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_relu_backward_rejects_out_that_is_x_or_read_only_and_writes_nothing():
    dy, x = relu_cases(np.float64, 34, n_random=10)
    before = x.tobytes()
    with pytest.raises(ValueError, match=r"out overlaps input x"):
        _kernels._relu_backward(dy, x, out=x)
    out = np.zeros_like(dy)
    out.flags.writeable = False
    with pytest.raises(ValueError, match=r"out is read-only"):
        _kernels._relu_backward(dy, x, out=out)
    assert x.tobytes() == before and not out.any()
