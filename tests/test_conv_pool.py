"""im2col, col2im and 2-D pooling (bnkernels._kernels, csrc/conv_pool.c).

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
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        pytest.skip("pools allow padding <= kernel // 2 only")
    for ceil_mode in (False, True):
        x = random(SHAPE, dtype, 2)
        y, idx = _kernels.max_pool2d_forward(x, k, s, p, ceil_mode)
        y_ref, idx_ref = naive_max_pool(x, k, s, p, ceil_mode)
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(idx, idx_ref)
        dy = random(y.shape, dtype, 3)
        dx = _kernels.max_pool2d_backward(dy, idx, SHAPE)
        np.testing.assert_allclose(dx, naive_max_pool_backward(dy.astype(np.float64), idx,
                                                               SHAPE), **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k, s, p", GEOMETRIES, ids=GEOMETRY_IDS)
def test_avg_pool_forward_and_backward_match_naive_loops(dtype, k, s, p):
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        pytest.skip("pools allow padding <= kernel // 2 only")
    x = random(SHAPE, dtype, 4)
    for ceil_mode, include in itertools.product((False, True), (False, True)):
        y = _kernels.avg_pool2d_forward(x, k, s, p, ceil_mode, include)
        np.testing.assert_allclose(y, naive_avg_pool(x, k, s, p, ceil_mode, include),
                                   **tolerance(dtype))
        dy = random(y.shape, dtype, 5)
        dx = _kernels.avg_pool2d_backward(dy, SHAPE, k, s, p, ceil_mode, include)
        np.testing.assert_allclose(
            dx, naive_avg_pool_backward(dy.astype(np.float64), SHAPE, k, s, p, ceil_mode,
                                        include), **tolerance(dtype))
