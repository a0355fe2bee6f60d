"""The pooling kernels at the planes and windows of GoogLeNet, BN-Inception and
Inception-v3 (small planes, the flat path of csrc/fast/conv_pool.inc; rows of
more outputs than one tile; global pooling), against vectorized float64 NumPy
oracles written from the definitions and against PyTorch: values, indices
and gradients, with ties, -inf and NaN. The reference tier's bits are the C
fuzz harness's oracle (tests/fuzz/fuzz_kernels.c)."""
import itertools

import numpy as np
import pytest

import bnkernels
from bnkernels import _kernels

from test_conv_pool import out_size

DTYPES = [np.float32, np.float64]

# (plane (H, W), kernel, stride, padding, ceil_mode): each pooling of the three
# networks (and GoogLeNet's torchvision variant), then rows of several tiles
NETWORK_POOLS = [
    ((112, 112), 3, 2, 0, True), ((56, 56), 3, 2, 0, True), ((28, 28), 3, 2, 0, True),
    ((14, 14), 3, 2, 0, True), ((14, 14), 2, 2, 0, True), ((28, 28), 3, 1, 1, False),
    ((14, 14), 3, 1, 1, False), ((7, 7), 3, 1, 1, False), ((28, 28), 3, 2, 1, False),
    ((14, 14), 3, 2, 1, False), ((147, 147), 3, 2, 0, False), ((71, 71), 3, 2, 0, False),
    ((35, 35), 3, 2, 0, False), ((17, 17), 3, 2, 0, False), ((35, 35), 3, 1, 1, False),
    ((17, 17), 3, 1, 1, False), ((8, 8), 3, 1, 1, False), ((17, 17), 5, 3, 0, False),
]
WIDE_POOLS = [((3, 600), 3, 1, 1, False), ((4, 1030), 3, 2, 1, True), ((2, 700), 5, 3, 2, True)]
POOL_IDS = ["{}x{}-k{}-s{}-p{}-c{:d}".format(*hw, k, s, p, c)
            for hw, k, s, p, c in NETWORK_POOLS + WIDE_POOLS]


def taps(x, k, s, p, ceil_mode, fill):
    """(stack of the k*k taps in row-major window order, oh, ow, corner rows and
    columns): x padded with fill so that every window lies inside."""
    n, c, h, w = x.shape
    oh, ow = out_size(h, k, s, p, ceil_mode), out_size(w, k, s, p, ceil_mode)
    hb, wb = (oh - 1) * s + k, (ow - 1) * s + k
    xp = np.full((n, c, max(hb, h + p), max(wb, w + p)), fill, np.float64)
    xp[:, :, p:p + h, p:p + w] = x
    stack = np.stack([xp[:, :, i:i + (oh - 1) * s + 1:s, j:j + (ow - 1) * s + 1:s]
                      for i, j in itertools.product(range(k), range(k))])
    return stack, oh, ow, np.arange(oh) * s - p, np.arange(ow) * s - p


def oracle_max(x, k, s, p, ceil_mode):
    """float64 max and first-max (first NaN) index, windows without an all -inf
    set of values (np.argmax then picks the first maximum or NaN)."""
    stack, oh, ow, h0, w0 = taps(x, k, s, p, ceil_mode, -np.inf)
    t = np.argmax(stack, axis=0)
    y = np.take_along_axis(stack, t[None], axis=0)[0]
    idx = (h0[:, None] + t // k) * x.shape[3] + w0[None, :] + t % k
    return y, idx


def divisors(shape, k, s, p, ceil_mode, count_include_pad):
    h, w = shape[2:]
    oh, ow = out_size(h, k, s, p, ceil_mode), out_size(w, k, s, p, ceil_mode)

    def axis(size, out):
        start = np.arange(out) * s - p
        padded = np.minimum(start + k, size + p) - start
        inside = np.minimum(start + k, size) - np.maximum(start, 0)
        return padded if count_include_pad else inside
    return axis(h, oh)[:, None] * axis(w, ow)[None, :]


def oracle_avg(x, k, s, p, ceil_mode, count_include_pad):
    stack, *_ = taps(x, k, s, p, ceil_mode, 0.0)
    return stack.sum(axis=0) / divisors(x.shape, k, s, p, ceil_mode, count_include_pad)


def oracle_avg_backward(dy, shape, k, s, p, ceil_mode, count_include_pad):
    n, c, h, w = shape
    share = dy.astype(np.float64) / divisors(shape, k, s, p, ceil_mode, count_include_pad)
    oh, ow = share.shape[2:]
    hb, wb = max((oh - 1) * s + k, h + p), max((ow - 1) * s + k, w + p)
    dxp = np.zeros((n, c, hb, wb))
    for i, j in itertools.product(range(k), range(k)):
        dxp[:, :, i:i + (oh - 1) * s + 1:s, j:j + (ow - 1) * s + 1:s] += share
    return dxp[:, :, p:p + h, p:p + w]


def tolerance(dtype):
    return {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12,
                                                                      "atol": 1e-13}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hw, k, s, p, ceil_mode", NETWORK_POOLS + WIDE_POOLS, ids=POOL_IDS)
def test_network_pools_match_float64_oracles(dtype, hw, k, s, p, ceil_mode):
    """Max: the same values and indices (exact); average and both backwards:
    float64 sums within rounding. Ties included (values on a coarse grid)."""
    rng = np.random.default_rng(hash(hw) % 1000)
    for x in (rng.standard_normal((2, 3, *hw)).astype(dtype),
              rng.integers(-2, 3, (2, 3, *hw)).astype(dtype)):
        before = x.copy()
        y, idx = _kernels.max_pool2d_forward(x, k, s, p, ceil_mode=ceil_mode)
        y_ref, idx_ref = oracle_max(x, k, s, p, ceil_mode)
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(idx, idx_ref)
        dy = rng.standard_normal(y.shape).astype(dtype)
        dx = _kernels.max_pool2d_backward(dy, idx, x.shape)
        want = np.zeros(x.shape).reshape(x.shape[0], x.shape[1], -1)
        for b, c in itertools.product(range(x.shape[0]), range(x.shape[1])):
            np.add.at(want[b, c], idx[b, c].ravel(), dy[b, c].ravel().astype(np.float64))
        np.testing.assert_allclose(dx, want.reshape(x.shape), **tolerance(dtype))
        for include in (True, False):
            a = _kernels.avg_pool2d_forward(x, k, s, p, ceil_mode=ceil_mode,
                                            count_include_pad=include)
            np.testing.assert_allclose(a, oracle_avg(x, k, s, p, ceil_mode, include),
                                       **tolerance(dtype))
            da = _kernels.avg_pool2d_backward(dy, x.shape, k, s, p, ceil_mode=ceil_mode,
                                              count_include_pad=include)
            np.testing.assert_allclose(
                da, oracle_avg_backward(dy, x.shape, k, s, p, ceil_mode, include),
                **tolerance(dtype))
        np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hw, k, s, p, ceil_mode",
                         [NETWORK_POOLS[i] for i in (0, 4, 7, 10, 14)] + WIDE_POOLS[:2],
                         ids=[POOL_IDS[i] for i in (0, 4, 7, 10, 14)] + POOL_IDS[-3:-1])
def test_network_pools_agree_with_pytorch(dtype, hw, k, s, p, ceil_mode):
    """Ties, -inf and NaN: max values equal PyTorch's (indices too where no
    window holds two NaNs: PyTorch takes the last NaN, these kernels the first),
    gradients within rounding; average pooling and its gradient within
    rounding where the input is finite."""
    torch = pytest.importorskip("torch", reason="PyTorch is the optional second oracle")
    F = torch.nn.functional
    rng = np.random.default_rng(7)
    x = rng.integers(-2, 3, (2, 2, *hw)).astype(dtype)   # ties everywhere
    x[rng.random(x.shape) < 0.1] = -np.inf
    t = torch.from_numpy(x.copy()).requires_grad_(True)
    y, idx = _kernels.max_pool2d_forward(x, k, s, p, ceil_mode=ceil_mode)
    ty, tidx = F.max_pool2d(t, k, s, p, ceil_mode=ceil_mode, return_indices=True)
    np.testing.assert_array_equal(y, ty.detach().numpy())
    finite = np.isfinite(y)   # an all -inf window: PyTorch's index is its own rule
    np.testing.assert_array_equal(idx[finite], tidx.numpy()[finite])
    dy = rng.standard_normal(y.shape).astype(dtype)
    ty.backward(torch.from_numpy(dy))
    dx = _kernels.max_pool2d_backward(dy, idx, x.shape)
    np.testing.assert_allclose(dx, t.grad.numpy(), **tolerance(dtype))

    z = x.copy()
    z[rng.random(z.shape) < 0.02] = np.nan
    y, idx = _kernels.max_pool2d_forward(z, k, s, p, ceil_mode=ceil_mode)
    ty = F.max_pool2d(torch.from_numpy(z), k, s, p, ceil_mode=ceil_mode)
    np.testing.assert_array_equal(y, ty.numpy())   # NaN wherever a window holds one
    assert np.isnan(z.reshape(*z.shape[:2], -1)[
        np.arange(2)[:, None, None, None], np.arange(2)[None, :, None, None],
        idx][np.isnan(y)]).all()

    f = rng.standard_normal(x.shape).astype(dtype)
    t = torch.from_numpy(f.copy()).requires_grad_(True)
    for include in (True, False):
        a = _kernels.avg_pool2d_forward(f, k, s, p, ceil_mode=ceil_mode,
                                        count_include_pad=include)
        ta = F.avg_pool2d(t, k, s, p, ceil_mode=ceil_mode, count_include_pad=include)
        np.testing.assert_allclose(a, ta.detach().numpy(), **tolerance(dtype))
        t.grad = None
        ta.backward(torch.from_numpy(a))
        np.testing.assert_allclose(
            _kernels.avg_pool2d_backward(a, f.shape, k, s, p, ceil_mode=ceil_mode,
                                         count_include_pad=include),
            t.grad.numpy(), **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hw", [(7, 7), (8, 8), (1, 5), (23, 61)])
def test_global_pooling_is_the_plane_mean_for_any_plane_count(dtype, hw):
    """GlobalAvgPool2d's kernel call: planes in blocks of 8 and the rest;
    the backward spreads dy / (H*W) over each plane."""
    rng = np.random.default_rng(3)
    for planes in (1, 7, 8, 9, 21):
        x = rng.standard_normal((1, planes, *hw)).astype(dtype)
        y = _kernels.avg_pool2d_forward(x, hw, hw, 0)
        np.testing.assert_allclose(y, x.astype(np.float64).mean(axis=(2, 3), keepdims=True),
                                   **tolerance(dtype))
        dy = rng.standard_normal(y.shape).astype(dtype)
        dx = _kernels.avg_pool2d_backward(dy, x.shape, hw, hw, 0)
        np.testing.assert_array_equal(dx, np.broadcast_to(
            (dy.astype(np.float64) / (hw[0] * hw[1])).astype(dtype), x.shape))


def test_all_minus_inf_windows_take_their_first_element():
    """A window whose values are all -inf: -inf and the index of its first
    input element (not the padding), on the flat and the tiled paths."""
    for hw in ((6, 6), (3, 700)):
        x = np.full((1, 1, *hw), -np.inf, np.float32)
        y, idx = _kernels.max_pool2d_forward(x, 3, 2, 1, ceil_mode=True)
        assert np.all(y == -np.inf)
        oh, ow = y.shape[2:]
        h0 = np.maximum(np.arange(oh) * 2 - 1, 0)
        w0 = np.maximum(np.arange(ow) * 2 - 1, 0)
        np.testing.assert_array_equal(idx[0, 0], h0[:, None] * hw[1] + w0[None, :])


def test_network_pools_give_the_same_bits_on_one_and_two_threads():
    """Planes are split between threads, never one plane: the same bits."""
    rng = np.random.default_rng(11)
    inputs = [rng.standard_normal((4, 64, *hw)).astype(np.float32)
              for hw, *_ in NETWORK_POOLS[:8]]
    results = {}
    try:
        for threads in (1, 2):
            bnkernels.set_num_threads(threads)
            outs = []
            for x, (hw, k, s, p, ceil_mode) in zip(inputs, NETWORK_POOLS):
                y, idx = _kernels.max_pool2d_forward(x, k, s, p, ceil_mode=ceil_mode)
                a = _kernels.avg_pool2d_forward(x, k, s, p, ceil_mode=ceil_mode)
                outs += [y, idx, a, _kernels.avg_pool2d_backward(a, x.shape, k, s, p,
                                                                 ceil_mode=ceil_mode)]
            results[threads] = outs
    finally:
        bnkernels.set_num_threads(None)
    for one, two in zip(results[1], results[2]):
        assert one.tobytes() == two.tobytes()
