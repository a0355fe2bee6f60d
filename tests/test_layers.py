"""bnkernels.nn.layers: every layer's forward and backward, containers, state.

Oracles:
- forward: an independent float64 NumPy twin written here (convolution and
  pooling as a loop over kernel offsets on a padded copy, no im2col), NumPy
  expressions for Linear and the loss, and PyTorch (torch.nn.functional) when
  it is installed;
- backward: central finite differences in float64 of loss = sum(y * r) for a
  fixed random r, for dx and every parameter gradient.

Finite-difference tolerance: with step h = 1e-6 in float64 the rounding
error of each difference quotient is about 1e-16 * |loss| / h ~ 1e-9 for the
losses here (|loss| < 100), and the truncation error h^2/6 * f''' is ~1e-12
for the smooth parts (BN, softmax); the piecewise-linear layers (conv, pools,
ReLU) have none unless a kink lies within h of a sample, which the fixed seeds
avoid. So rtol = 1e-6 with atol = 1e-7 leaves two orders of magnitude of
margin while catching any wrong term (those are O(1) relative errors).
"""
import io
import re

import numpy as np
import pytest
from finite_differences import finite_difference

from bnkernels import reference
from bnkernels.nn import layers
from bnkernels.nn.layers import (
    AvgPool2d, BatchNorm2d, Concat, Conv2d, ConvBNReLU, Dropout, Flatten, GlobalAvgPool2d,
    Linear, MaxPool2d, ReLU, Sequential, SoftmaxCrossEntropy,
)

FD_TOL = dict(rtol=1e-6, atol=1e-7)


def rand(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# ---------------------------------------------------------------------------
# oracles
# ---------------------------------------------------------------------------

def check_gradients(module, x, seed=1, before_forward=None):
    """Backward of module at x (float64) against finite differences of
    sum(module(x) * r): dx and every named parameter's gradient."""
    before = before_forward or (lambda: None)
    before()
    y = module.forward(x)
    r = rand(y.shape, seed)
    module.zero_grad()
    dx = module.backward(r)
    grads = {name: grad.copy() for name, _, grad in module.named_parameters()}

    def loss():
        before()
        return float(np.sum(module.forward(x) * r))

    np.testing.assert_allclose(dx, finite_difference(loss, x), **FD_TOL, err_msg="dx")
    for name, value, _ in module.named_parameters():
        np.testing.assert_allclose(grads[name], finite_difference(loss, value), **FD_TOL,
                                   err_msg=name)
    return dx, grads


def direct_conv(x, w, b, stride, padding):
    """Convolution as a sum over kernel offsets (i, j) of strided slices of
    the zero-padded input times w[:, :, i, j]; float64."""
    (sh, sw), (ph, pw) = stride, padding
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh, ow = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    y = np.zeros((n, o, oh, ow))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
            y += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j].astype(np.float64))
    return y if b is None else y + b[:, None, None]


def direct_conv_backward(x, w, dy, stride, padding):
    """(dx, dw) of direct_conv: the same offsets, scattered back."""
    (sh, sw), (ph, pw) = stride, padding
    kh, kw = w.shape[2:]
    oh, ow = dy.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for i in range(kh):
        for j in range(kw):
            window = (slice(None), slice(None), slice(i, i + sh * (oh - 1) + 1, sh),
                      slice(j, j + sw * (ow - 1) + 1, sw))
            dw[:, :, i, j] = np.einsum("nohw,nchw->oc", dy, xp[window])
            dxp[window] += np.einsum("nohw,oc->nchw", dy, w[:, :, i, j])
    return dxp[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]], dw


def direct_pool(x, kernel, stride, padding, kind):
    """Max (padding -inf) or average (padded zeros counted) over windows,
    float64, ceil_mode off."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    fill = -np.inf if kind == "max" else 0.0
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)),
                constant_values=fill)
    oh, ow = (x.shape[2] + 2 * ph - kh) // sh + 1, (x.shape[3] + 2 * pw - kw) // sw + 1
    windows = [xp[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
               for i in range(kh) for j in range(kw)]
    return np.max(windows, axis=0) if kind == "max" else np.mean(windows, axis=0)


# ---------------------------------------------------------------------------
# Conv2d
# ---------------------------------------------------------------------------

CONV_CASES = [  # (kernel_size, stride, padding), Inception's shapes among them
    ((1, 7), 1, (0, 3)),
    ((7, 1), 1, (3, 0)),
    (3, 2, 1),
    (1, 1, 0),
    (5, 1, "same"),
    ((3, 5), (2, 1), (0, 2)),
    (3, 2, 0),
]
CONV_IDS = ["1x7", "7x1", "3x3s2p1", "1x1", "5x5same", "3x5s21p02", "3x3s2"]


def resolved(kernel, stride, padding):
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    kernel, stride = pair(kernel), pair(stride)
    if padding == "same":
        return kernel, stride, (kernel[0] // 2, kernel[1] // 2)
    return kernel, stride, pair(padding)


@pytest.mark.parametrize("kernel,stride,padding", CONV_CASES, ids=CONV_IDS)
def test_conv2d_forward_matches_direct_convolution_loop_float64(kernel, stride, padding):
    conv = Conv2d(3, 5, kernel, stride, padding, dtype=np.float64, rng=0)
    conv.bias[...] = rand(5, 7)
    x = rand((2, 3, 9, 10), 1)
    x_before = x.copy()
    y = conv.forward(x)
    expected = direct_conv(x, conv.weight, conv.bias, *resolved(kernel, stride, padding)[1:])
    assert y.shape == expected.shape == conv.output_shape(x.shape)
    assert y.dtype == np.float64 and y.flags.c_contiguous
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(x, x_before)


@pytest.mark.parametrize("kernel,stride,padding", CONV_CASES[:4], ids=CONV_IDS[:4])
def test_conv2d_forward_float32_matches_float64_loop(kernel, stride, padding):
    # float32 products summed over C*kh*kw = 21..27 terms of size ~1: 1e-5
    # relative to the largest output is a few float32 epsilons per term
    conv = Conv2d(3, 4, kernel, stride, padding, rng=2)
    conv.bias[...] = rand(4, 3, np.float32)
    x = rand((2, 3, 8, 8), 4, np.float32)
    y = conv.forward(x)
    assert y.dtype == np.float32
    expected = direct_conv(x, conv.weight, conv.bias, *resolved(kernel, stride, padding)[1:])
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel,stride,padding", CONV_CASES, ids=CONV_IDS)
def test_conv2d_matches_torch_conv2d(kernel, stride, padding, dtype):
    torch = pytest.importorskip("torch", reason="PyTorch is the second oracle for Conv2d")
    conv = Conv2d(3, 6, kernel, stride, padding, dtype=dtype, rng=3)
    conv.bias[...] = rand(6, 4, dtype)
    x = rand((2, 3, 11, 9), 5, dtype)
    _, s, p = resolved(kernel, stride, padding)
    expected = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(conv.weight),
                                          torch.from_numpy(conv.bias), stride=s, padding=p)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(conv.forward(x), expected.numpy(), rtol=tol, atol=tol)


def test_conv2d_state_dict_loads_into_torch_conv2d_and_backward_agrees():
    torch = pytest.importorskip("torch", reason="PyTorch's layout is the one promised")
    conv = Conv2d(4, 3, (3, 1), 1, (1, 0), dtype=np.float64, rng=4)
    conv.bias[...] = rand(3, 8)
    tconv = torch.nn.Conv2d(4, 3, (3, 1), padding=(1, 0), dtype=torch.float64)
    tconv.load_state_dict({k: torch.from_numpy(v) for k, v in conv.state_dict().items()})
    x = rand((2, 4, 5, 6), 9)
    dy = rand((2, 3, 5, 6), 10)
    tx = torch.from_numpy(x.copy()).requires_grad_()
    tconv(tx).backward(torch.from_numpy(dy))
    conv.forward(x)
    dx = conv.backward(dy)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv.grad_weight, tconv.weight.grad.numpy(), rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(conv.grad_bias, tconv.bias.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kernel,stride,padding", CONV_CASES, ids=CONV_IDS)
def test_conv2d_backward_matches_finite_differences(kernel, stride, padding, bias):
    conv = Conv2d(2, 3, kernel, stride, padding, bias=bias, dtype=np.float64, rng=5)
    if bias:
        conv.bias[...] = rand(3, 6)
    check_gradients(conv, rand((2, 2, 7, 7), 7))


@pytest.mark.parametrize("kernel,stride,padding", CONV_CASES, ids=CONV_IDS)
def test_conv2d_backward_matches_direct_loop_backward(kernel, stride, padding):
    conv = Conv2d(3, 4, kernel, stride, padding, dtype=np.float64, rng=6)
    x = rand((3, 3, 9, 8), 11)
    y = conv.forward(x)
    dy = rand(y.shape, 12)
    dx = conv.backward(dy)
    expected_dx, expected_dw = direct_conv_backward(x, conv.weight, dy,
                                                    *resolved(kernel, stride, padding)[1:])
    np.testing.assert_allclose(dx, expected_dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv.grad_weight, expected_dw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv.grad_bias, dy.sum(axis=(0, 2, 3)), rtol=1e-12)


def test_conv2d_backward_in_eval_mode_recomputes_the_columns():
    conv = Conv2d(2, 3, 3, 1, 1, dtype=np.float64, rng=7).eval()
    check_gradients(conv, rand((2, 2, 5, 4), 13))


def test_conv2d_weight_gradient_is_the_same_summed_in_chunks_of_samples(monkeypatch):
    x = rand((5, 3, 6, 6), 14)
    results = []
    for chunk in (layers._GEMM_CHUNK_VALUES, 2 * 4 * 27, 1):  # whole batch, 2, 1 samples
        monkeypatch.setattr(layers, "_GEMM_CHUNK_VALUES", chunk)
        conv = Conv2d(3, 4, 3, 1, 1, dtype=np.float64, rng=8)
        conv.forward(x)
        conv.backward(rand((5, 4, 6, 6), 15))
        results.append(conv.grad_weight)
    np.testing.assert_allclose(results[1], results[0], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(results[2], results[0], rtol=1e-13, atol=1e-13)


def test_conv2d_float32_backward_matches_float64_backward():
    # the float32 branch: gradients summed over ~100 float32 products
    conv64 = Conv2d(3, 4, 3, 2, 1, dtype=np.float64, rng=9)
    conv32 = Conv2d(3, 4, 3, 2, 1, rng=9)
    np.testing.assert_array_equal(conv32.weight, conv64.weight.astype(np.float32))
    conv64.weight[...] = conv32.weight
    x = rand((2, 3, 7, 7), 16, np.float32)
    dy = rand((2, 4, 4, 4), 17, np.float32)
    results = []
    for conv in (conv64, conv32):
        conv.forward(x.astype(conv.dtype))
        results.append((conv.backward(dy.astype(conv.dtype)), conv.grad_weight, conv.grad_bias))
    for exact, single in zip(*results):
        assert single.dtype == np.float32
        np.testing.assert_allclose(single, exact, rtol=0, atol=1e-5 * np.abs(exact).max())


@pytest.mark.parametrize("kernel", [1, 3])
def test_conv2d_empty_batch_gives_empty_outputs_and_no_gradient(kernel):
    conv = Conv2d(2, 3, kernel, padding=kernel // 2, rng=0)
    y = conv.forward(np.zeros((0, 2, 4, 4), np.float32))
    assert y.shape == (0, 3, 4, 4)
    assert conv.backward(y).shape == (0, 2, 4, 4)
    assert (conv.grad_weight == 0).all() and (conv.grad_bias == 0).all()


def test_conv2d_same_padding_keeps_height_and_width():
    conv = Conv2d(2, 3, (1, 7), padding="same")
    assert conv.padding == (0, 3)
    assert conv.output_shape((4, 2, 17, 17)) == (4, 3, 17, 17)
    with pytest.raises(ValueError, match="padding='same' needs stride 1 and odd kernel"):
        Conv2d(2, 3, 2, padding="same")
    with pytest.raises(ValueError, match="padding='same' needs stride 1"):
        Conv2d(2, 3, 3, stride=2, padding="same")


def test_conv2d_he_normal_initialization_and_seeded_rng():
    conv = Conv2d(64, 128, 3, rng=0)
    assert conv.weight.shape == (128, 64, 3, 3) and conv.weight.dtype == np.float32
    # He normal: std sqrt(2 / fan_in); 73728 samples give the std to ~0.3%
    np.testing.assert_allclose(conv.weight.std(), np.sqrt(2 / (64 * 9)), rtol=0.02)
    np.testing.assert_array_equal(conv.bias, 0)
    np.testing.assert_array_equal(Conv2d(64, 128, 3, rng=0).weight, conv.weight)
    generator = np.random.default_rng(0)
    np.testing.assert_array_equal(Conv2d(64, 128, 3, rng=generator).weight, conv.weight)
    assert not np.array_equal(Conv2d(64, 128, 3, rng=1).weight, conv.weight)


def test_conv2d_macs_weights_and_parameters_count_like_googlenet_table():
    # GoogLeNet's first layer: 7x7/2 conv, 64 filters, 224x224x3 -> 112x112x64:
    # 2.7K weights (9408) and 118M multiply-accumulates per image
    conv = Conv2d(3, 64, 7, 2, 3)
    assert conv.output_shape((1, 3, 224, 224)) == (1, 64, 112, 112)
    assert conv.num_weights() == 9408
    assert conv.num_parameters() == 9408 + 64
    assert conv.macs((1, 3, 224, 224)) == 112 * 112 * 64 * 3 * 49 == 118_013_952
    assert conv.macs((2, 3, 224, 224)) == 2 * 118_013_952


def test_conv2d_rejects_bad_input_with_messages_naming_x():
    conv = Conv2d(4, 2, 3)
    x = rand((2, 3, 5, 5), dtype=np.float32)
    before = x.copy()
    with pytest.raises(ValueError, match="x has 3 channels, expected 4"):
        conv.forward(x)
    with pytest.raises(TypeError, match="x has dtype float64, expected float32"):
        conv.forward(rand((2, 4, 5, 5)))
    with pytest.raises(ValueError, match=r"x has shape \(4, 5, 5\), expected 4 dimensions"):
        conv.forward(rand((4, 5, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        conv.forward(rand((1, 4, 2, 5), dtype=np.float32))
    with pytest.raises(RuntimeError, match="backward called before forward"):
        Conv2d(4, 2, 3).backward(rand((2, 2, 3, 3), dtype=np.float32))
    np.testing.assert_array_equal(x, before)
    conv.forward(rand((2, 4, 5, 5), dtype=np.float32))
    with pytest.raises(ValueError, match=r"dy has shape \(2, 2, 4, 4\), expected \(2, 2, 3, 3\)"):
        conv.backward(rand((2, 2, 4, 4), dtype=np.float32))
    with pytest.raises(TypeError, match="dy has dtype float64, expected float32"):
        conv.backward(rand((2, 2, 3, 3)))
    with pytest.raises(ValueError, match="kernel_size must be an int or a pair"):
        Conv2d(4, 2, (3, 3, 3))
    with pytest.raises(ValueError, match="stride must be >= 1"):
        Conv2d(4, 2, 3, stride=0)
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        Conv2d(4, 2, 3, dtype=np.int32)


def test_conv2d_accepts_a_non_contiguous_x_and_leaves_it_unchanged():
    conv = Conv2d(3, 2, 3, padding=1, dtype=np.float64, rng=1)
    x = rand((2, 5, 5, 3), 3).transpose(0, 3, 1, 2)
    before = x.copy()
    np.testing.assert_allclose(conv.forward(x), direct_conv(before, conv.weight, conv.bias,
                                                            (1, 1), (1, 1)), rtol=1e-12)
    np.testing.assert_array_equal(x, before)


# ---------------------------------------------------------------------------
# pooling
# ---------------------------------------------------------------------------

POOL_CASES = [((3, 3), (1, 1), (1, 1)), ((3, 3), (2, 2), (0, 0)), ((2, 2), (2, 2), (0, 0)),
              ((3, 3), (2, 2), (1, 1)), ((1, 3), (1, 2), (0, 1))]
POOL_IDS = ["3x3s1same", "3x3s2", "2x2s2", "3x3s2p1", "1x3s12p01"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("kernel,stride,padding", POOL_CASES, ids=POOL_IDS)
def test_pool_forward_matches_direct_windows(kernel, stride, padding, kind, dtype):
    pool = (MaxPool2d if kind == "max" else AvgPool2d)(kernel, stride, padding)
    x = rand((2, 3, 9, 8), 20, dtype)
    y = pool.forward(x)
    assert y.dtype == dtype and y.shape == pool.output_shape(x.shape)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(y, direct_pool(x, kernel, stride, padding, kind), rtol=tol,
                               atol=tol)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("kernel,stride,padding", POOL_CASES, ids=POOL_IDS)
def test_pool_backward_matches_finite_differences(kernel, stride, padding, kind):
    pool = (MaxPool2d if kind == "max" else AvgPool2d)(kernel, stride, padding)
    check_gradients(pool, rand((2, 2, 7, 6), 21))


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_pools_match_torch_including_ceil_mode(ceil_mode, count_include_pad):
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle for ceil_mode")
    F = torch.nn.functional
    x = rand((2, 3, 10, 9), 22)
    dy = None
    for pool, oracle in (
            (MaxPool2d(3, 2, 1, ceil_mode), lambda t: F.max_pool2d(t, 3, 2, 1,
                                                                   ceil_mode=ceil_mode)),
            (AvgPool2d(3, 2, 1, ceil_mode, count_include_pad),
             lambda t: F.avg_pool2d(t, 3, 2, 1, ceil_mode, count_include_pad))):
        tx = torch.from_numpy(x.copy()).requires_grad_()
        ty = oracle(tx)
        dy = rand(tuple(ty.shape), 23)
        ty.backward(torch.from_numpy(dy))
        y = pool.forward(x)
        assert pool.output_shape(x.shape) == y.shape == tuple(ty.shape)
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(pool.backward(dy), tx.grad.numpy(), rtol=1e-14, atol=1e-14)


def test_max_pool_padding_same_keeps_size_and_rejects_padding_over_half_kernel():
    pool = MaxPool2d(3, 1, "same")
    assert pool.padding == (1, 1) and pool.output_shape((2, 4, 7, 7)) == (2, 4, 7, 7)
    with pytest.raises(ValueError, match="padding must be at most half the kernel size"):
        MaxPool2d(3, 1, 2)
    assert MaxPool2d(3).stride == (3, 3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_global_avg_pool_is_the_spatial_mean(dtype):
    pool = GlobalAvgPool2d()
    x = rand((3, 4, 7, 5), 24, dtype)
    y = pool.forward(x)
    assert y.shape == pool.output_shape(x.shape) == (3, 4, 1, 1) and y.dtype == dtype
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(y, x.astype(np.float64).mean(axis=(2, 3), keepdims=True),
                               rtol=tol, atol=tol)


def test_global_avg_pool_backward_matches_finite_differences():
    check_gradients(GlobalAvgPool2d(), rand((2, 3, 4, 5), 25))


def test_pools_reject_bad_input_naming_x_and_dy():
    pool = MaxPool2d(2)
    with pytest.raises(ValueError, match=r"x has shape \(3, 4\), expected 4 dimensions"):
        pool.forward(rand((3, 4)))
    with pytest.raises(TypeError, match="x has dtype int64"):
        pool.forward(np.zeros((1, 1, 4, 4), np.int64))
    pool.forward(rand((1, 2, 4, 4)))
    with pytest.raises(ValueError, match="dy has shape"):
        pool.backward(rand((1, 2, 4, 4)))
    with pytest.raises(TypeError, match="dy has dtype float32, expected float64"):
        pool.backward(rand((1, 2, 2, 2), dtype=np.float32))


# ---------------------------------------------------------------------------
# ReLU, Flatten, Linear, Dropout
# ---------------------------------------------------------------------------

def test_relu_forward_backward_and_nan():
    relu = ReLU()
    x = np.array([[-1.0, 0.0, 2.0, np.nan]], np.float32)
    y = relu.forward(x)
    np.testing.assert_array_equal(y, [[0, 0, 2, np.nan]])
    assert y.dtype == np.float32
    np.testing.assert_array_equal(relu.backward(np.ones_like(x)), [[0, 0, 1, 0]])
    check_gradients(ReLU(), rand((2, 3, 4, 4), 26))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_gradient_is_pytorchs_threshold_backward(dtype):
    """dy where x > 0, else +0, whatever dy holds there (NaN and Inf dy at x <= 0
    give +0; -0 dy at x > 0 stays -0), as PyTorch's ReLU, bit for bit; at a
    NaN x, +0 (PyTorch passes dy there: its rule is x <= 0 ? 0 : dy). The
    forward leaves x as it was. Random signs too (the C select)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x = np.concatenate([np.array([-1, -0.0, 0, 2, np.nan, np.inf, -np.inf, 3]),
                        rng.standard_normal(1000)]).astype(dtype).reshape(1, -1)
    dy = np.concatenate([np.array([np.nan, np.inf, -2, -0.0, 5, np.nan, 1, -np.inf]),
                         rng.standard_normal(1000)]).astype(dtype).reshape(1, -1)
    before = x.copy()
    relu = ReLU()
    y = relu.forward(x)
    dx = relu.backward(dy)
    np.testing.assert_array_equal(x, before)
    t = torch.from_numpy(x.copy()).requires_grad_(True)
    ty = torch.relu(t)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_array_equal(y, ty.detach().numpy())
    number = ~np.isnan(x)
    assert dx.dtype == dtype
    assert dx[number].tobytes() == t.grad.numpy()[number].tobytes()
    assert (dx[~number] == 0).all() and not np.signbit(dx[~number]).any()


def test_conv_relu_without_bn_equals_conv_then_relu():
    """ConvBNReLU(batch_norm=False) runs its ReLU in place on the convolution's
    new output: the same output and gradients as Conv2d then a separate ReLU,
    and its input unchanged."""
    unit = ConvBNReLU(3, 4, 3, padding=1, batch_norm=False, rng=4)
    conv = Conv2d(3, 4, 3, padding=1, rng=4)
    relu = ReLU()
    x = rand((2, 3, 6, 6), 41).astype(np.float32)
    before = x.copy()
    y = unit.forward(x)
    np.testing.assert_array_equal(y, relu.forward(conv.forward(x)))
    np.testing.assert_array_equal(x, before)
    dy = rand(y.shape, 42).astype(np.float32)
    np.testing.assert_array_equal(unit.backward(dy), conv.backward(relu.backward(dy)))
    np.testing.assert_array_equal(unit.conv.grad_weight, conv.grad_weight)
    np.testing.assert_array_equal(unit.conv.grad_bias, conv.grad_bias)


def test_flatten_is_a_reshape_both_ways():
    flatten = Flatten()
    x = rand((2, 3, 4, 5), 27)
    y = flatten.forward(x)
    assert y.shape == flatten.output_shape(x.shape) == (2, 60)
    np.testing.assert_array_equal(y, x.reshape(2, 60))
    np.testing.assert_array_equal(flatten.backward(y), x)
    with pytest.raises(ValueError, match="dy has shape"):
        flatten.backward(rand((2, 61)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_matches_numpy(dtype):
    linear = Linear(6, 4, dtype=dtype, rng=1)
    x = rand((5, 6), 28, dtype)
    y = linear.forward(x)
    assert y.dtype == dtype and y.shape == linear.output_shape(x.shape) == (5, 4)
    expected = x.astype(np.float64) @ linear.weight.T.astype(np.float64) + linear.bias
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(y, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("bias", [True, False])
def test_linear_backward_matches_finite_differences(bias):
    check_gradients(Linear(5, 3, bias=bias, dtype=np.float64, rng=2), rand((4, 5), 29))


def test_linear_pytorch_default_initialization_and_counts():
    linear = Linear(100, 50, rng=0)
    bound = 1 / np.sqrt(100)
    assert np.abs(linear.weight).max() <= bound and np.abs(linear.bias).max() <= bound
    assert linear.weight.std() > 0.9 * bound / np.sqrt(3)  # uniform's std is bound/sqrt(3)
    assert linear.num_weights() == 5000 and linear.num_parameters() == 5050
    assert linear.macs((8, 100)) == 8 * 5000
    with pytest.raises(ValueError, match="x has 99 features, expected 100"):
        linear.forward(rand((2, 99), dtype=np.float32))


def test_dropout_is_inverted_seeded_and_identity_in_eval():
    x = np.ones((200, 100), np.float32)
    dropout = Dropout(0.3, rng=0)
    y = dropout.forward(x)
    assert y.dtype == np.float32
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
    assert abs(kept.mean() - 0.7) < 0.01  # 20000 draws: std of the mean 0.003
    np.testing.assert_array_equal(Dropout(0.3, rng=0).forward(x), y)
    np.testing.assert_array_equal(dropout.backward(x), y)
    dropout.eval()
    np.testing.assert_array_equal(dropout.forward(x), x)
    np.testing.assert_array_equal(dropout.backward(x), x)
    np.testing.assert_array_equal(Dropout(1.0).forward(x), 0)
    np.testing.assert_array_equal(Dropout(0.0).forward(x), x)
    with pytest.raises(ValueError, match=r"p must be a probability in \[0, 1\]"):
        Dropout(1.5)


def test_dropout_backward_matches_finite_differences_for_a_fixed_mask():
    dropout = Dropout(0.5)

    def same_mask():
        dropout.rng = np.random.default_rng(3)
    check_gradients(dropout, rand((3, 4, 2, 2), 30), before_forward=same_mask)


# ---------------------------------------------------------------------------
# SoftmaxCrossEntropy
# ---------------------------------------------------------------------------

def cross_entropy_formula(logits, labels, eps):
    """-mean over rows of sum_k target_k log softmax_k, target = (1 - eps)
    onehot + eps / K, written directly in float64."""
    logits = logits.astype(np.float64)
    n, k = logits.shape
    total = 0.0
    for row, label in zip(logits, labels):
        log_p = row - np.log(np.sum(np.exp(row - row.max()))) - row.max()
        target = np.full(k, eps / k)
        target[label] += 1 - eps
        total -= np.dot(target, log_p)
    return total / n


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 1.0])
def test_softmax_cross_entropy_matches_the_formula(label_smoothing, dtype):
    logits = (rand((6, 5), 31) * 3).astype(dtype)
    labels = np.array([0, 4, 2, 2, 1, 3])
    loss = SoftmaxCrossEntropy(label_smoothing)
    value = loss(logits, labels)
    assert isinstance(value, float)
    np.testing.assert_allclose(value, cross_entropy_formula(logits, labels, label_smoothing),
                               rtol=1e-13)
    grad = loss.backward()
    assert grad.dtype == dtype and grad.shape == logits.shape
    # the gradient of a mean over rows of (softmax - target) sums to 0 per row
    np.testing.assert_allclose(grad.sum(axis=1), 0, atol=1e-7)


def test_softmax_cross_entropy_is_stable_for_huge_logits():
    loss = SoftmaxCrossEntropy()
    value = loss(np.array([[1000.0, 0.0], [0.0, -1000.0]]), np.array([1, 1]))
    np.testing.assert_allclose(value, (1000.0 + 1000.0) / 2)
    assert np.isfinite(loss.backward()).all()


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_softmax_cross_entropy_backward_matches_finite_differences(label_smoothing):
    loss = SoftmaxCrossEntropy(label_smoothing)
    logits = rand((4, 5), 32)
    labels = np.array([1, 0, 4, 1])
    loss(logits, labels)
    grad = loss.backward(2.5)
    numeric = finite_difference(lambda: 2.5 * loss(logits, labels), logits)
    np.testing.assert_allclose(grad, numeric, **FD_TOL)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 0.4])
def test_softmax_cross_entropy_matches_torch_label_smoothing(label_smoothing):
    torch = pytest.importorskip("torch", reason="PyTorch's label_smoothing is the LSR oracle")
    logits = rand((8, 10), 33) * 2
    labels = np.random.default_rng(34).integers(0, 10, 8)
    loss = SoftmaxCrossEntropy(label_smoothing)
    tlogits = torch.from_numpy(logits.copy()).requires_grad_()
    tloss = torch.nn.functional.cross_entropy(tlogits, torch.from_numpy(labels),
                                              label_smoothing=label_smoothing)
    tloss.backward()
    np.testing.assert_allclose(loss(logits, labels), tloss.item(), rtol=1e-13)
    np.testing.assert_allclose(loss.backward(), tlogits.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_softmax_cross_entropy_rejects_bad_labels_naming_them():
    loss = SoftmaxCrossEntropy()
    logits = rand((3, 4))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 4\)"):
        loss(logits, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match=r"labels has shape \(2,\), expected \(3,\)"):
        loss(logits, np.array([0, 1]))
    with pytest.raises(TypeError, match="labels has dtype float64"):
        loss(logits, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"logits has shape \(3, 4, 1\)"):
        loss(logits[..., None], np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        SoftmaxCrossEntropy(-0.1)


# ---------------------------------------------------------------------------
# ConvBNReLU
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("batch_norm", [True, False])
def test_conv_bn_relu_backward_matches_finite_differences_in_training(batch_norm):
    unit = ConvBNReLU(2, 3, 3, 1, 1, batch_norm=batch_norm, dtype=np.float64, rng=0)
    if batch_norm:  # move BN off its identity start so every term matters
        unit.bn.weight[...] = [0.5, 1.5, -1.0]
        unit.bn.bias[...] = [0.1, -0.2, 0.3]
    else:
        unit.conv.bias[...] = [0.1, -0.2, 0.3]
    check_gradients(unit, rand((3, 2, 4, 4), 35))


def test_conv_bn_relu_backward_matches_finite_differences_in_eval():
    unit = ConvBNReLU(2, 3, (1, 3), padding=(0, 1), dtype=np.float64, rng=1)
    unit.bn.running_mean[...] = [0.1, -0.1, 0.2]
    unit.bn.running_var[...] = [0.5, 2.0, 1.0]
    unit.bn.bias[...] = [0.2, 0.0, -0.1]
    check_gradients(unit.eval(), rand((2, 2, 3, 4), 36))


def test_conv_bn_relu_is_conv_then_the_fused_bn_relu():
    unit = ConvBNReLU(3, 4, 3, padding=1, dtype=np.float64, rng=2)
    assert unit.conv.bias is None and unit.bn.activation == "relu"
    x = rand((2, 3, 5, 5), 37)
    conv_y = direct_conv(x, unit.conv.weight, None, (1, 1), (1, 1))
    expected, _ = reference.batch_norm_forward(conv_y, unit.bn.weight, unit.bn.bias,
                                               None, None, activation="relu")
    np.testing.assert_allclose(unit.forward(x), expected, rtol=1e-12, atol=1e-12)
    assert sorted(unit.state_dict()) == ["bn.bias", "bn.num_batches_tracked",
                                         "bn.running_mean", "bn.running_var", "bn.weight",
                                         "conv.weight"]
    plain = ConvBNReLU(3, 4, 3, padding=1, batch_norm=False)
    assert sorted(plain.state_dict()) == ["conv.bias", "conv.weight"]
    assert isinstance(plain.relu, ReLU)


@pytest.mark.parametrize("numerics", ["darknet", "darknet-alexeyab"])
def test_conv_bn_relu_with_darknet_numerics_matches_the_reference_composition(numerics):
    # Darknet's backward is not the exact gradient of its forward (the forward
    # divides the variance by n - 1 and adds eps outside the square root; the
    # backward uses n and eps 1e-5 inside), so finite differences are the wrong
    # oracle: compare with bnkernels.reference's Darknet backward composed
    # with the direct-loop convolution backward instead.
    unit = ConvBNReLU(2, 3, 3, 2, 1, numerics=numerics, dtype=np.float64, rng=3)
    unit.bn.weight[...] = [0.5, 1.5, -1.0]
    unit.bn.bias[...] = [0.1, -0.2, 0.3]
    x = rand((3, 2, 6, 6), 38)
    y = unit.forward(x)
    dy = rand(y.shape, 39)
    dx = unit.backward(dy)

    conv_y = direct_conv(x, unit.conv.weight, None, (2, 2), (1, 1))
    expected_y, saved = reference.batch_norm_forward(
        conv_y, unit.bn.weight, unit.bn.bias, np.zeros(3), np.ones(3), numerics=numerics,
        activation="relu")
    dconv, dgamma, dbeta = reference.batch_norm_backward(dy, saved)
    expected_dx, expected_dw = direct_conv_backward(x, unit.conv.weight, dconv, (2, 2), (1, 1))
    for mine, oracle in ((y, expected_y), (dx, expected_dx), (unit.conv.grad_weight, expected_dw),
                         (unit.bn.grad_weight, dgamma), (unit.bn.grad_bias, dbeta)):
        np.testing.assert_allclose(mine, oracle, rtol=1e-10, atol=1e-12)

    # and it is not the exact gradient: the n - 1 vs n mismatch alone is a
    # relative difference of 1/n = 1/27 in some terms, far above FD_TOL
    numeric = finite_difference(lambda: float(np.sum(unit.forward(x) * dy)), x)
    assert np.abs(dx - numeric).max() > 1e-4 * np.abs(numeric).max()


def test_conv_bn_relu_describes_itself_and_counts():
    unit = ConvBNReLU(192, 64, 1)
    assert unit.output_shape((1, 192, 28, 28)) == (1, 64, 28, 28)
    assert unit.num_weights() == 192 * 64
    assert unit.num_parameters() == 192 * 64 + 2 * 64
    assert unit.macs((1, 192, 28, 28)) == 28 * 28 * 64 * 192
    text = repr(unit)
    assert text.startswith("ConvBNReLU(192, 64, kernel_size=(1, 1)") and "(conv): Conv2d" in text
    assert "(bn): BatchNorm2d(64" in text and "activation='relu'" in text


INPUT_CASES = [
    (lambda: Conv2d(3, 4, 3, 2, 1, dtype=np.float64, rng=0), (2, 3, 6, 6)),
    (lambda: Conv2d(3, 4, 1, dtype=np.float64, rng=0), (2, 3, 6, 6)),
    (lambda: MaxPool2d(3, 2, 1), (2, 3, 6, 6)),
    (lambda: AvgPool2d(3, 1, 1), (2, 3, 6, 6)),
    (lambda: GlobalAvgPool2d(), (2, 3, 6, 6)),
    (lambda: ReLU(), (2, 3, 6, 6)),
    (lambda: Flatten(), (2, 3, 6, 6)),
    (lambda: Linear(5, 2, dtype=np.float64, rng=0), (2, 5)),
    (lambda: Dropout(0.5, rng=0), (2, 3, 6, 6)),
    (lambda: ConvBNReLU(3, 4, 3, padding=1, dtype=np.float64, rng=0), (2, 3, 6, 6)),
    (lambda: ConvBNReLU(3, 4, 3, padding=1, batch_norm=False, dtype=np.float64), (2, 3, 6, 6)),
]
INPUT_IDS = ["conv3x3s2", "conv1x1", "maxpool", "avgpool", "globalavg", "relu", "flatten",
             "linear", "dropout", "convbnrelu", "convrelu"]


@pytest.mark.parametrize("make,shape", INPUT_CASES, ids=INPUT_IDS)
def test_forward_and_backward_leave_x_and_dy_unchanged(make, shape):
    layer = make()
    x = rand(shape, 47)
    x_before = x.copy()
    y = layer.forward(x)
    dy = rand(y.shape, 48)
    dy_before = dy.copy()
    dx = layer.backward(dy)
    assert dx.shape == x.shape and dx.dtype == x.dtype
    if not isinstance(layer, Flatten):  # Flatten returns views (a reshape), by design
        assert not np.shares_memory(dx, x) and not np.shares_memory(dx, dy)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(dy, dy_before)


@pytest.mark.parametrize("make,shape", INPUT_CASES, ids=INPUT_IDS)
def test_backward_rejects_dy_of_the_wrong_shape_or_dtype(make, shape):
    layer = make()
    y = layer.forward(rand(shape, 49))
    with pytest.raises(ValueError, match="dy has shape"):
        layer.backward(rand(y.shape[:-1] + (y.shape[-1] + 1,)))
    with pytest.raises(TypeError, match="dy has dtype float32, expected float64"):
        layer.backward(rand(y.shape, dtype=np.float32))


# ---------------------------------------------------------------------------
# containers and state
# ---------------------------------------------------------------------------

def small_network(dtype=np.float64, batch_norm=True):
    """An Inception-like module: 1x1, 1x1 -> 3x3, 3x3 max pool -> 1x1 in
    parallel, concatenated, then pooled and classified."""
    return Sequential(
        Concat(ConvBNReLU(2, 2, 1, batch_norm=batch_norm, dtype=dtype, rng=1),
               Sequential(ConvBNReLU(2, 2, 1, batch_norm=batch_norm, dtype=dtype, rng=2),
                          ConvBNReLU(2, 3, 3, padding=1, batch_norm=batch_norm, dtype=dtype,
                                     rng=3)),
               Sequential(MaxPool2d(3, 1, 1),
                          Conv2d(2, 2, 1, dtype=dtype, rng=4), ReLU())),
        AvgPool2d(2), Flatten(), Linear(7 * 2 * 2, 3, dtype=dtype, rng=5))


@pytest.mark.parametrize("batch_norm", [True, False])
def test_sequential_and_concat_backward_match_finite_differences(batch_norm):
    check_gradients(small_network(batch_norm=batch_norm), rand((2, 2, 4, 4), 40))


def test_concat_concatenates_channels_and_sums_branch_gradients():
    a, b = Conv2d(2, 3, 1, dtype=np.float64, rng=1), Conv2d(2, 1, 3, padding=1,
                                                           dtype=np.float64, rng=2)
    concat = Concat(a, b)
    x = rand((2, 2, 4, 4), 41)
    y = concat.forward(x)
    np.testing.assert_array_equal(y[:, :3], a.forward(x))
    np.testing.assert_array_equal(y[:, 3:], b.forward(x))
    assert concat.output_shape(x.shape) == (2, 4, 4, 4)
    dy = rand(y.shape, 42)
    concat.forward(x)
    dx = concat.backward(dy)
    np.testing.assert_allclose(dx, a.backward(dy[:, :3].copy()) + b.backward(dy[:, 3:].copy()),
                               rtol=1e-14)
    with pytest.raises(ValueError, match="Concat branches must give the same H, W"):
        Concat(Conv2d(2, 1, 1, dtype=np.float64), MaxPool2d(2)).forward(x)


def test_state_dict_round_trip_restores_outputs():
    net = small_network()
    x = rand((2, 2, 4, 4), 43)
    net.forward(x)  # running statistics move
    state = net.state_dict()
    assert "0.1.1.bn.running_var" in state and "3.weight" in state
    assert "0.2.1.weight" in state and "0.2.1.bias" in state
    expected = net.eval().forward(x)
    other = small_network()
    for _, value, _ in other.named_parameters():
        value += 1
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.eval().forward(x), expected)
    state["3.weight"] = state["3.weight"][:, :-1]
    with pytest.raises(ValueError, match=r"size mismatch for 3.weight: the state has shape "
                                           r"\(3, 27\), the module \(3, 28\)"):
        other.load_state_dict(state)
    del state["3.weight"]
    with pytest.raises(KeyError, match="missing"):
        other.load_state_dict(state)


def test_train_and_eval_reach_every_submodule():
    net = small_network()
    modules = []

    def walk(module):
        modules.append(module)
        for _, child in module.children():
            walk(child)
    walk(net)
    assert len(modules) == 19 and all(m.training for m in modules)
    assert net.eval() is net and not any(m.training for m in modules)
    net.train()
    assert all(m.training for m in modules)


def test_gradients_accumulate_across_backward_calls_until_zero_grad():
    net = small_network()
    x = rand((2, 2, 4, 4), 44)
    dy = rand((2, 3), 45)
    net.forward(x)
    net.backward(dy)
    once = [grad.copy() for _, grad in net.parameters()]
    net.forward(x)
    net.backward(dy)
    for first, (_, grad) in zip(once, net.parameters()):
        np.testing.assert_allclose(grad, 2 * first, rtol=1e-12, atol=1e-15)
    net.zero_grad()
    assert all((grad == 0).all() for _, grad in net.parameters())
    assert len(net.parameters()) == len(net.named_parameters()) == 3 * 3 + 2 + 2


def test_summary_lists_children_with_totals():
    net = small_network(np.float32)
    printed = io.StringIO()
    text = net.summary((1, 2, 4, 4), file=printed)
    assert printed.getvalue() == text + "\n"
    lines = text.splitlines()
    assert lines[1].split()[:2] == ["0", "Concat"] and lines[4].split()[:2] == ["3", "Linear"]
    total = lines[5].split()
    assert total[0] == "total"
    assert net.output_shape((1, 2, 4, 4)) == (1, 3)
    assert int(total[-3].replace(",", "")) == net.num_weights() == 4 + 4 + 54 + 4 + 84
    assert int(total[-1].replace(",", "")) == net.macs((1, 2, 4, 4)) == \
        16 * (4 + 4 + 54 + 4) + 84


def test_layers_repr_show_their_arguments():
    assert repr(Conv2d(3, 8, (1, 7), padding="same", bias=False)) == (
        "Conv2d(3, 8, kernel_size=(1, 7), stride=(1, 1), padding=(0, 3), bias=False, "
        "dtype=float32)")
    assert repr(MaxPool2d(3, 2, ceil_mode=True)) == (
        "MaxPool2d(kernel_size=(3, 3), stride=(2, 2), padding=(0, 0), ceil_mode=True)")
    assert repr(Dropout(0.4)) == "Dropout(p=0.4)"
    assert repr(SoftmaxCrossEntropy(0.1)) == "SoftmaxCrossEntropy(label_smoothing=0.1)"
    assert repr(Sequential(ReLU(), Flatten())) == "Sequential(\n  (0): ReLU()\n  (1): Flatten()\n)"


def test_batchnorm2d_module_follows_the_training_mode():
    bn = BatchNorm2d(3, dtype=np.float64)
    x = rand((4, 3, 2, 2), 46) * 3 + 1
    bn.forward(x)
    assert bn.num_batches_tracked == 1
    y = bn.eval().forward(x)
    assert bn.num_batches_tracked == 1
    np.testing.assert_allclose(
        y, (x - bn.running_mean[:, None, None]) / np.sqrt(bn.running_var[:, None, None] + 1e-5),
        rtol=1e-12)


@pytest.mark.parametrize("numerics", ["standard", "darknet"])
def test_numpy_twin_computes_the_same_network_with_the_reference(numerics):
    # oracle: bnkernels.reference's NumPy im2col, pools and batch norm; the
    # C kernels agree with them to float64 rounding (1e-12 relative)
    net = small_network(np.float64)
    if numerics != "standard":
        net = Sequential(ConvBNReLU(2, 3, 3, padding=1, numerics=numerics,
                                    dtype=np.float64, rng=3), MaxPool2d(2), Flatten())
    twin = reference.numpy_twin(net)
    assert twin is not net and twin.kernels is reference and net.kernels is not reference
    x = rand((2, 2, 4, 4), seed=5)
    y, y_twin = net.forward(x), twin.forward(x)
    np.testing.assert_allclose(y_twin, y, rtol=1e-12, atol=1e-12)
    dy = rand(y.shape, seed=6)
    np.testing.assert_allclose(twin.backward(dy), net.backward(dy), rtol=1e-10, atol=1e-12)
    for (name, _, grad), (twin_name, _, twin_grad) in zip(net.named_parameters(),
                                                          twin.named_parameters()):
        assert name == twin_name
        np.testing.assert_allclose(twin_grad, grad, rtol=1e-10, atol=1e-12, err_msg=name)


def test_conv2d_reuses_its_columns_buffer_and_a_second_backward_is_still_right():
    # oracle: the direct loop's gradients; the buffer must not leak one call's
    # columns (or dL/dcols) into the next
    conv = Conv2d(2, 3, (2, 3), stride=1, padding=(1, 0), dtype=np.float64, rng=0)
    x, x2 = rand((2, 2, 5, 5), 60), rand((2, 2, 5, 5), 61)
    conv.forward(x)
    first = conv._cols_buffer
    y = conv.forward(x2)
    assert conv._cols_buffer is first
    np.testing.assert_allclose(y, direct_conv(x2, conv.weight, conv.bias, (1, 1), (1, 0)),
                               rtol=1e-12, atol=1e-12)
    dy = rand(y.shape, 62)
    dx_expected, dw_expected = direct_conv_backward(x2, conv.weight, dy, (1, 1), (1, 0))[:2]
    np.testing.assert_allclose(conv.backward(dy), dx_expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv.backward(dy), dx_expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv.grad_weight, 2 * dw_expected, rtol=1e-12, atol=1e-12)
    conv.forward(rand((3, 2, 5, 5), 63))   # another batch size: a new buffer
    assert conv._cols_buffer is not first and conv._cols_buffer.shape[0] == 3


# ---------------------------------------------------------------------------
# Conv2d's two ways to multiply: per sample, and over the whole batch
# ---------------------------------------------------------------------------

# _BATCH_GEMM_MAX_POSITIONS chooses the path by output size: 0 sends every
# shape per sample, a huge value every shape over the whole batch
CONV_PATHS = {"per-sample": 0, "whole-batch": 10**9}


@pytest.mark.parametrize("path", CONV_PATHS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kernel,stride,padding", CONV_CASES, ids=CONV_IDS)
def test_conv2d_each_path_matches_the_float64_direct_loop(kernel, stride, padding, bias, path,
                                                          monkeypatch):
    # oracle: direct_conv / direct_conv_backward (no im2col, no transposes);
    # float64 sums of <= 75 products: 1e-12 is a few hundred ulps of margin
    monkeypatch.setattr(layers, "_BATCH_GEMM_MAX_POSITIONS", CONV_PATHS[path])
    conv = Conv2d(3, 4, kernel, stride, padding, bias=bias, dtype=np.float64, rng=20)
    if bias:
        conv.bias[...] = rand(4, 21)
    x = rand((3, 3, 9, 8), 22)
    before = x.copy()
    _, s, p = resolved(kernel, stride, padding)
    y = conv.forward(x)
    np.testing.assert_allclose(y, direct_conv(x, conv.weight, conv.bias, s, p), rtol=1e-12,
                               atol=1e-12)
    assert y.flags.c_contiguous
    dy = rand(y.shape, 23)
    dx = conv.backward(dy)
    expected_dx, expected_dw = direct_conv_backward(x, conv.weight, dy, s, p)
    np.testing.assert_allclose(dx, expected_dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv.grad_weight, expected_dw, rtol=1e-12, atol=1e-12)
    if bias:
        np.testing.assert_allclose(conv.grad_bias, dy.sum(axis=(0, 2, 3)), rtol=1e-12)
    # a second backward of the same forward recomputes the spent columns
    np.testing.assert_allclose(conv.backward(dy), expected_dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv.grad_weight, 2 * expected_dw, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("path", CONV_PATHS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel,stride,padding", CONV_CASES, ids=CONV_IDS)
def test_conv2d_each_path_matches_torch_forward_and_backward(kernel, stride, padding, dtype,
                                                             path, monkeypatch):
    # oracle: torch.nn.functional.conv2d and its autograd; float32 sums of
    # <= 150 products of values ~1: 2e-5 relative to the largest value
    torch = pytest.importorskip("torch", reason="PyTorch is the second oracle for Conv2d")
    monkeypatch.setattr(layers, "_BATCH_GEMM_MAX_POSITIONS", CONV_PATHS[path])
    conv = Conv2d(6, 5, kernel, stride, padding, dtype=dtype, rng=24)
    conv.bias[...] = rand(5, 25, dtype)
    x = rand((2, 6, 11, 9), 26, dtype)
    _, s, p = resolved(kernel, stride, padding)
    tx = torch.from_numpy(x.copy()).requires_grad_()
    tw = torch.from_numpy(conv.weight.copy()).requires_grad_()
    tb = torch.from_numpy(conv.bias.copy()).requires_grad_()
    ty = torch.nn.functional.conv2d(tx, tw, tb, stride=s, padding=p)
    dy = rand(tuple(ty.shape), 27, dtype)
    ty.backward(torch.from_numpy(dy))
    y = conv.forward(x)
    dx = conv.backward(dy)
    for ours, theirs in ((y, ty), (dx, tx.grad), (conv.grad_weight, tw.grad),
                         (conv.grad_bias, tb.grad)):
        theirs = theirs.detach().numpy()
        assert ours.dtype == dtype and ours.shape == theirs.shape
        tol = (2e-5 if dtype == np.float32 else 1e-12) * max(1.0, np.abs(theirs).max())
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=tol)


def test_conv2d_paths_agree_in_eval_mode_and_for_an_empty_batch(monkeypatch):
    # the whole-batch path against the per-sample one (float64, 1e-13): eval
    # mode (the backward recomputes the columns) and N = 0
    results = []
    for path in CONV_PATHS.values():
        monkeypatch.setattr(layers, "_BATCH_GEMM_MAX_POSITIONS", path)
        out = []
        for kernel in (1, 3):
            conv = Conv2d(3, 4, kernel, 1, kernel // 2, dtype=np.float64, rng=28).eval()
            for n in (2, 0):
                x = rand((n, 3, 5, 6), 29)
                y = conv.forward(x)
                out += [y, conv.backward(rand(y.shape, 30)), conv.grad_weight.copy()]
        results.append(out)
    for a, b in zip(*results):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)


def test_conv2d_whole_batch_path_keeps_its_buffers_between_calls(monkeypatch):
    monkeypatch.setattr(layers, "_BATCH_GEMM_MAX_POSITIONS", 10**9)
    conv = Conv2d(2, 3, 3, 1, 1, dtype=np.float64, rng=31)
    conv.forward(rand((2, 2, 4, 4), 32))
    wide = conv._wide_buffer
    x = rand((2, 2, 4, 4), 33)
    y = conv.forward(x)
    assert conv._wide_buffer is wide
    np.testing.assert_allclose(y, direct_conv(x, conv.weight, conv.bias, (1, 1), (1, 1)),
                               rtol=1e-12, atol=1e-12)
    conv.forward(rand((3, 2, 4, 4), 34))
    assert conv._wide_buffer is not wide and conv._wide_buffer.shape == (18, 48)


# ---------------------------------------------------------------------------
# BLAS threads inside Conv2d and Linear (bnkernels.nn._blas)
# ---------------------------------------------------------------------------

@pytest.fixture
def blas():
    """NumPy's BLAS controller (threadpoolctl), at 2 threads for the test;
    the caller's BLAS and bnkernels thread settings are restored after it."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import bnkernels
    controllers = threadpoolctl.ThreadpoolController().select(user_api="blas")
    if not controllers.lib_controllers:
        pytest.skip("NumPy's BLAS is not one threadpoolctl controls")
    controller = controllers.lib_controllers[0]
    before, kernels_before = controller.get_num_threads(), bnkernels.get_num_threads()
    controller.set_num_threads(2)
    if controller.get_num_threads() != 2:
        controller.set_num_threads(before)
        pytest.skip("this BLAS cannot run on 2 threads")
    yield controller
    controller.set_num_threads(before)
    bnkernels.set_num_threads(kernels_before)


def _recording_im2col(conv, controller, seen):
    """conv's im2col, recording the BLAS thread count while it runs."""
    kernels = conv.kernels

    class Recording:
        def __getattr__(self, name):
            return getattr(kernels, name)

        def im2col(self, *args, **kwargs):
            seen.append(controller.get_num_threads())
            return kernels.im2col(*args, **kwargs)
    conv.kernels = Recording()


@pytest.mark.parametrize("kernel_threads, expected", [(1, 1), (4, 2)])
def test_conv2d_runs_blas_on_one_thread_and_splits_on_the_kernels_threads(
        blas, kernel_threads, expected):
    # bnkernels at 1 thread: no split; at 4: split over the caller's 2; the
    # BLAS itself on one thread inside, the caller's 2 after
    import bnkernels
    from bnkernels.nn import _blas
    bnkernels.set_num_threads(kernel_threads)
    if _blas.kernel_threads() != min(kernel_threads, bnkernels.get_num_threads()):
        pytest.skip("the kernels are backing off to one thread (a busy machine)")
    conv = Conv2d(2, 3, 3, padding=1, dtype=np.float64, rng=0)
    seen = []
    _recording_im2col(conv, blas, seen)
    split = []
    real = _blas.run_products
    try:
        _blas.run_products = lambda products, threads: (split.append(threads),
                                                        real(products, threads))
        y = conv.forward(rand((2, 2, 5, 5)))
        conv.backward(np.ones_like(y))
    finally:
        _blas.run_products = real
    assert seen and set(seen) == {1}
    # one thread: the products are not split (no call, or calls on one thread)
    assert set(split) == ({min(expected, _blas.kernel_threads())} if expected > 1
                          else set(split) & {1})
    assert blas.get_num_threads() == 2


def test_split_products_equal_the_whole_products(blas):
    """Conv2d's products split in (sample, column range, row range) pieces
    over two threads give a float64 NumPy reference's values on every path
    (per sample, 1x1, whole batch; forward, dW, dx)."""
    import bnkernels
    from bnkernels.nn import _blas
    bnkernels.set_num_threads(2)
    if _blas.kernel_threads() != 2:
        pytest.skip("the kernels are backing off to one thread (a busy machine)")
    for kernel, shape in [(3, (3, 4, 20, 20)), (1, (3, 4, 20, 20)), (1, (1, 4, 20, 20)),
                          (3, (5, 4, 6, 6))]:
        results = []
        for threads in (1, 2):
            bnkernels.set_num_threads(threads)
            conv = Conv2d(4, 6, kernel, padding=kernel // 2, dtype=np.float64, rng=3)
            x = rand(shape, 7)
            y = conv.forward(x)
            dx = conv.backward(rand(y.shape, 8))
            results.append((y, dx, conv.grad_weight.copy(), conv.grad_bias.copy()))
        for one, two in zip(*results):
            np.testing.assert_allclose(two, one, rtol=1e-12, atol=1e-12)
    from bnkernels.nn.layers import _split_matmul
    # by samples and columns; by columns and rows of a (one sample of 200
    # columns, a transposed weight as the whole-batch dL/dx has): every
    # value written (out starts as NaN), each the float64 product's
    for a_shape, b_shape, transposed in [((4, 5), (3, 5, 700), False),
                                         ((150, 9), (1, 9, 200), True)]:
        rng = np.random.default_rng(0)
        pieces = rng.standard_normal(b_shape)
        a = rng.standard_normal(a_shape[::-1]).T if transposed else rng.standard_normal(a_shape)
        out = np.full((b_shape[0], a_shape[0], b_shape[2]), np.nan)
        want = np.einsum("mk,nkp->nmp", a, pieces)
        np.testing.assert_allclose(_split_matmul(a, pieces, out, 2), want, rtol=1e-12,
                                   atol=1e-12)


def test_conv2d_dw_by_samples_in_chunks_is_the_float64_sum(blas, monkeypatch):
    """On two threads the GEMM path's dL/dW is a product per sample, in
    chunks of samples when their products are large (here 2 per chunk for
    5 samples): the float64 sum over the batch, once per backward."""
    import bnkernels
    from bnkernels.nn import _blas, layers
    bnkernels.set_num_threads(2)
    if _blas.kernel_threads() != 2:
        pytest.skip("the kernels are backing off to one thread (a busy machine)")
    conv = Conv2d(4, 6, 3, padding=1, dtype=np.float64, rng=0)
    monkeypatch.setattr(layers, "_GEMM_CHUNK_VALUES", 2 * 6 * 4 * 9)
    x = rand((5, 4, 12, 12), 1)
    dy = rand((5, 6, 12, 12), 2)
    conv.forward(x)
    conv.backward(dy)
    conv.forward(x)
    conv.backward(dy)
    windows = np.lib.stride_tricks.sliding_window_view(
        np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1))), (3, 3), axis=(2, 3))
    want = np.einsum("nohw,nchwij->ocij", dy, windows)
    np.testing.assert_allclose(conv.grad_weight, 2 * want, rtol=1e-12, atol=1e-12)


def test_linear_splits_its_products_by_rows(blas):
    """Linear's products split by rows of x, dy and the weight over two
    threads: the float64 products' values, and the BLAS on one thread
    inside."""
    import bnkernels
    from bnkernels.nn import _blas
    bnkernels.set_num_threads(2)
    if _blas.kernel_threads() != 2:
        pytest.skip("the kernels are backing off to one thread (a busy machine)")
    linear = Linear(70, 130, dtype=np.float64, rng=0)
    x, dy = rand((200, 70), 1), rand((200, 130), 2)
    split, seen = [], []
    real = _blas.run_products

    def recording(products, threads):
        split.append((len(products), threads))
        seen.append(blas.get_num_threads())
        real(products, threads)
    try:
        _blas.run_products = recording
        y = linear.forward(x)
        dx = linear.backward(dy)
    finally:
        _blas.run_products = real
    np.testing.assert_allclose(y, x @ linear.weight.T + linear.bias, rtol=1e-13)
    np.testing.assert_allclose(dx, dy @ linear.weight, rtol=1e-13)
    np.testing.assert_allclose(linear.grad_weight, dy.T @ x, rtol=1e-13)
    from bnkernels.nn.layers import _PIECES_PER_THREAD
    assert split == [(2 * _PIECES_PER_THREAD, 2)] * 3 and set(seen) == {1}


def test_run_shared_runs_each_piece_once_and_raises_the_first_error():
    from bnkernels.nn import _blas
    for threads in (1, 2, 3):
        ran = []
        _blas.run_shared(37, ran.append, threads)
        assert sorted(ran) == list(range(37))
    inline = []
    _blas.run_shared(5, inline.append, 1)
    assert inline == [0, 1, 2, 3, 4]

    def failing(piece):
        if piece == 3:
            raise MemoryError("piece 3")
    with pytest.raises(MemoryError, match="piece 3"):
        _blas.run_shared(8, failing, 2)
    _blas.run_shared(0, failing, 2)


def test_run_shared_pieces_keep_the_callers_numpy_error_state():
    """np.errstate is a context variable: a piece on a pool thread must see
    the caller's, as it would on the caller's thread."""
    from bnkernels.nn import _blas
    big = np.full(4, 1e30, np.float32)
    seen = []

    def piece(_):
        seen.append(np.geterr()["over"])
        return big * big
    with np.errstate(over="raise"):
        with pytest.raises(FloatingPointError):
            _blas.run_shared(8, piece, 2)
    with np.errstate(over="ignore"):
        seen.clear()
        _blas.run_shared(8, piece, 2)
    assert seen and set(seen) == {"ignore"}


def test_blas_threads_are_restored_when_a_layer_raises(blas):
    import bnkernels
    from bnkernels.nn import _blas
    bnkernels.set_num_threads(1)
    conv = Conv2d(2, 3, 3, dtype=np.float64, rng=0)
    with pytest.raises(ValueError, match="x has 3 channels, expected 2"):
        conv.forward(rand((1, 3, 5, 5)))
    assert blas.get_num_threads() == 2

    def failing_im2col(*args, **kwargs):
        assert blas.get_num_threads() == 1
        raise MemoryError("im2col")
    conv.kernels = type("Failing", (), {"im2col": staticmethod(failing_im2col)})()
    with pytest.raises(MemoryError, match="im2col"):
        conv.forward(rand((1, 2, 5, 5)))
    assert blas.get_num_threads() == 2
    linear = Linear(3, 2, dtype=np.float64, rng=0)
    with pytest.raises(ValueError, match="features"):
        linear.forward(rand((2, 4)))
    with pytest.raises(RuntimeError, match="before forward"):
        linear.backward(rand((2, 2)))
    assert blas.get_num_threads() == 2
    with pytest.raises(KeyError):
        with _blas.split_products():
            assert blas.get_num_threads() == 1
            raise KeyError("inside")
    assert blas.get_num_threads() == 2
    blas.set_num_threads(1)                  # the caller's limit is never raised
    bnkernels.set_num_threads(2)
    with _blas.split_products() as threads:
        assert threads == 1 and blas.get_num_threads() == 1
    assert blas.get_num_threads() == 1


def test_a_network_step_leaves_the_callers_blas_threads_as_they_were(blas):
    import bnkernels
    from bnkernels.nn import inception
    bnkernels.set_num_threads(1)
    net = inception.small_inception(rng=0)
    x = rand((2, 1, 8, 8), 40, np.float32)
    y = net.forward(x)
    net.backward(np.ones_like(y))
    assert blas.get_num_threads() == 2


# ---------------------------------------------------------------------------
# argument checks: every constructor argument, hostile values included
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("make, message", [
    (lambda: Conv2d(0, 2, 3), r"in_channels must be an int >= 1, got 0"),
    (lambda: Conv2d(True, 2, 3), r"in_channels must be an int >= 1, got True"),
    (lambda: Conv2d(2.0, 2, 3), r"in_channels must be an int >= 1, got 2.0"),
    (lambda: Conv2d(2, np.nan, 3), r"out_channels must be an int >= 1, got nan"),
    (lambda: Conv2d(2, -1, 3), r"out_channels must be an int >= 1, got -1"),
    (lambda: Conv2d(2**40, 2**40, 1), r"the weight: out_channels \* in_channels \* kh \* kw = "
                                      r"1208925819614629174706176 values, more than an array"),
    (lambda: Conv2d(2, 2, 2**61), r"kernel_size must be at most 2\*\*60"),
    (lambda: Conv2d(2, 2, 3, stride=(1, 2**63)), r"stride must be at most 2\*\*60"),
    (lambda: Conv2d(2, 2, 3, padding=-1), r"padding must be >= 0"),
    (lambda: Conv2d(2, 2, 3, padding=np.float64(1)), r"padding must be an int or a pair"),
    (lambda: Conv2d(2, 2, 3, padding="valid"), r"padding must be an int, a pair \(h, w\) or"),
    (lambda: Conv2d(2, 2, (3, True)), r"kernel_size must be an int or a pair"),
    (lambda: Conv2d(2, 2, 3, bias="yes"), r"bias must be a bool, got 'yes'"),
    (lambda: Linear(0, 2), r"in_features must be an int >= 1, got 0"),
    (lambda: Linear(2, 1.5), r"out_features must be an int >= 1, got 1.5"),
    (lambda: Linear(2, 2, bias=2), r"bias must be a bool, got 2"),
    (lambda: Linear(2**40, 2**30), r"the weight: out_features \* in_features"),
    (lambda: MaxPool2d(0), r"kernel_size must be >= 1"),
    (lambda: MaxPool2d(3, stride=0), r"stride must be >= 1"),
    (lambda: MaxPool2d(3, padding=2), r"padding must be at most half the kernel size"),
    (lambda: MaxPool2d(3, ceil_mode="no"), r"ceil_mode must be a bool, got 'no'"),
    (lambda: AvgPool2d(3, count_include_pad=np.nan), r"count_include_pad must be a bool"),
    (lambda: AvgPool2d(2**61), r"kernel_size must be at most 2\*\*60"),
    (lambda: Dropout(-0.1), r"p must be a probability in \[0, 1\], got -0.1"),
    (lambda: Dropout(1.5), r"p must be a probability in \[0, 1\], got 1.5"),
    (lambda: Dropout(float("nan")), r"p must be a probability in \[0, 1\], got nan"),
    (lambda: Dropout(True), r"p must be a probability"),
    (lambda: Dropout("0.5"), r"p must be a probability"),
    (lambda: SoftmaxCrossEntropy(-1e-9), r"label_smoothing must be in \[0, 1\]"),
    (lambda: SoftmaxCrossEntropy(float("nan")), r"label_smoothing must be in \[0, 1\]"),
    (lambda: SoftmaxCrossEntropy(1.01), r"label_smoothing must be in \[0, 1\]"),
    (lambda: ConvBNReLU(2, 2, 3, batch_norm="no"), r"batch_norm must be a bool, got 'no'"),
    (lambda: ConvBNReLU(2, 0, 3), r"out_channels must be an int >= 1, got 0"),
])
def test_constructors_reject_bad_arguments_naming_them(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_constructors_accept_numpy_scalars_and_the_closed_ends():
    assert Conv2d(np.int64(2), np.int32(3), np.int16(3), stride=np.uint8(1),
                  bias=np.bool_(False)).bias is None
    assert Dropout(np.float32(1)).p == 1.0 and Dropout(0).p == 0.0
    assert SoftmaxCrossEntropy(np.float64(1)).label_smoothing == 1.0
    assert MaxPool2d(3, ceil_mode=np.bool_(True)).ceil_mode is True


def test_dropout_1_zeroes_everything_and_backward_too():
    layer = Dropout(1.0, rng=0)
    x = rand((2, 3, 4, 4), 60)
    np.testing.assert_array_equal(layer.forward(x), np.zeros_like(x))
    np.testing.assert_array_equal(layer.backward(np.ones_like(x)), np.zeros_like(x))


def test_loss_backward_rejects_a_non_finite_dloss():
    loss = SoftmaxCrossEntropy()
    loss(rand((3, 4), 61), np.array([0, 1, 3]))
    for bad in (float("nan"), float("inf"), "1", None, True):
        with pytest.raises(ValueError, match="dloss must be a finite number"):
            loss.backward(bad)
    assert np.isfinite(loss.backward(np.float32(2))).all()


def test_conv2d_with_padding_2pow31_raises_instead_of_writing_past_its_columns():
    """Issue 20: Conv2d(1, 1, 2, padding=2**31) on a 1x1 input had 2**32 x
    2**32 windows, a count that wrapped to 0 in 64 bits: im2col got a
    0-value buffer and wrote past it (a segfault)."""
    conv = Conv2d(1, 1, 2, padding=2**31, rng=0)
    weight = conv.weight.copy()
    x = np.ones((1, 1, 1, 1), np.float32)
    assert conv.output_shape(x.shape) == (1, 1, 2**32, 2**32)
    with pytest.raises(ValueError, match=r"(im2col|_conv2d_direct) of x \(1, 1, 1, 1\) "
                                         r"with kernel_size "
                                         r"\(2, 2\), stride \(1, 1\), padding \(2147483648, "
                                         r"2147483648\).*more values than the kernels can"):
        conv.forward(x)
    np.testing.assert_array_equal(conv.weight, weight)
    np.testing.assert_array_equal(x, np.ones((1, 1, 1, 1)))


@pytest.mark.parametrize("layer", [Conv2d(1, 1, 1), MaxPool2d(1), AvgPool2d(1),
                                   GlobalAvgPool2d()], ids=["conv", "max", "avg", "global"])
def test_output_shape_rejects_an_empty_plane_as_forward_does(layer):
    with pytest.raises(ValueError, match=r"takes \(N, C, H, W\) inputs with H, W >= 1"):
        layer.output_shape((1, 1, 0, 3))
    with pytest.raises(ValueError, match="H, W >= 1|height and width >= 1"):
        layer.forward(np.zeros((1, 1, 0, 3), np.float32))


# ---------------------------------------------------------------------------
# all or nothing: load_state_dict, and forward/backward calls that raise
# ---------------------------------------------------------------------------

def arrays_of(module):
    """Copies of everything a failed call must leave alone: the state
    (parameters, running statistics, num_batches_tracked) and the gradients."""
    state = module.state_dict()
    grads = {name: grad.copy() for name, _, grad in module.named_parameters()}
    return state, grads


def assert_unchanged(module, before):
    state, grads = arrays_of(module)
    assert state.keys() == before[0].keys() and grads.keys() == before[1].keys()
    for key in state:
        np.testing.assert_array_equal(state[key], before[0][key], err_msg=key)
        assert np.asarray(state[key]).dtype == np.asarray(before[0][key]).dtype, key
    for key in grads:
        np.testing.assert_array_equal(grads[key], before[1][key], err_msg=key)


def bad_states(good):
    """(name, state, exception) for each way a state_dict can be wrong, the
    bad entry placed last in the module's order, so that a loader writing
    entries one by one would have written all the others."""
    keys = list(good)
    floats = [k for k in keys if np.asarray(good[k]).dtype.kind == "f"]
    last = floats[-1]

    def replaced(key, value):
        state = dict(good)
        state[key] = value
        return state

    shape = np.shape(good[last])
    yield "wrong shape", replaced(last, np.zeros(shape + (1,))), ValueError
    yield "one fewer value", replaced(last, np.zeros(shape)[..., :-1]), ValueError
    yield "complex dtype", replaced(last, np.zeros(shape, np.complex64)), TypeError
    yield "bool dtype", replaced(last, np.zeros(shape, bool)), TypeError
    yield "object dtype", replaced(last, np.zeros(shape, object)), TypeError
    yield "strings", replaced(last, np.full(shape, "1")), TypeError
    yield "a NaN", replaced(last, np.where(np.arange(np.size(good[last])).reshape(shape) == 0,
                                           np.nan, good[last])), ValueError
    yield "an Inf", replaced(last, np.full(shape, -np.inf)), ValueError
    yield "None", replaced(last, None), TypeError
    missing = dict(good)
    del missing[keys[-1]]
    yield "a missing key", missing, KeyError
    yield "an unexpected key", {**good, "extra.weight": np.zeros(3)}, KeyError
    yield "a list, not a mapping", list(good.items()), TypeError
    if np.asarray(good[last]).dtype == np.float32:
        yield "beyond float32", replaced(last, np.full(shape, 1e39)), ValueError
    variances = [k for k in keys if k.endswith("running_var")]
    if variances:
        v = variances[-1]
        yield "a negative variance", replaced(v, -np.abs(good[v]) - 1), ValueError
        count = [k for k in keys if k.endswith("num_batches_tracked")][-1]
        yield "a float count", replaced(count, 2.5), TypeError
        yield "a negative count", replaced(count, np.int64(-1)), ValueError
        yield "a vector count", replaced(count, np.array([1, 2])), TypeError


def state_cases():
    """name: (make(seed), an input shape it takes)"""
    from bnkernels.nn import inception
    return {
        "conv": (lambda seed: Conv2d(3, 4, 3, padding=1, rng=seed), (2, 3, 5, 5)),
        "convbnrelu": (lambda seed: ConvBNReLU(3, 4, 3, padding=1, rng=seed), (2, 3, 5, 5)),
        "inception block": (lambda seed: inception.InceptionBN(4, 2, 2, 3, 2, 3, 2, rng=seed),
                            (2, 4, 6, 6)),
        "small_inception": (lambda seed: inception.small_inception(width=2, rng=seed),
                            (2, 1, 8, 8)),
        "small network float64": (lambda seed: Sequential(small_network(), ReLU()),
                                  (2, 2, 4, 4)),
    }


@pytest.mark.parametrize("name", list(state_cases()))
def test_load_state_dict_writes_nothing_when_any_entry_is_bad(name):
    make, shape = state_cases()[name]
    module = make(0)
    other = make(1)
    other.forward(rand(shape, 62, other.parameters()[0][0].dtype))  # running statistics move
    good = other.state_dict()
    before = arrays_of(module)
    checked = 0
    for case, state, error in bad_states(good):
        with pytest.raises(error):
            module.load_state_dict(state)
        assert_unchanged(module, before)
        checked += 1
    assert checked >= 13
    module.load_state_dict(good)  # and a good one is loaded whole
    for key, value in module.state_dict().items():
        np.testing.assert_array_equal(value, good[key], err_msg=key)


def test_load_state_dict_of_googlenet_is_all_or_nothing():
    """A whole network of the paper's size: the last of 100+ entries bad."""
    from bnkernels.nn import inception
    net = inception.googlenet(num_classes=10, rng=0)
    good = inception.googlenet(num_classes=10, rng=1).state_dict()
    before = arrays_of(net)
    for bad_key in (list(good)[-1], list(good)[len(good) // 2]):
        state = dict(good)
        state[bad_key] = np.full(np.shape(good[bad_key]), np.nan, np.float32)
        with pytest.raises(ValueError, match=f"{bad_key} has NaN or Inf values"):
            net.load_state_dict(state)
        assert_unchanged(net, before)


def test_load_state_dict_with_values_that_are_views_of_the_module_itself():
    """Swapping two convolutions' weights through views of the module's own
    arrays: every entry is read before any is written."""
    net = Sequential(Conv2d(2, 2, 3, rng=1), Conv2d(2, 2, 3, rng=2))
    a, b = net[0].weight.copy(), net[1].weight.copy()
    state = net.state_dict()
    state["0.weight"], state["1.weight"] = net[1].weight, net[0].weight
    net.load_state_dict(state)
    np.testing.assert_array_equal(net[0].weight, b)
    np.testing.assert_array_equal(net[1].weight, a)


def test_load_state_dict_converts_dtypes_and_counts():
    conv = ConvBNReLU(2, 3, 1, rng=0)
    state = {k: (np.asarray(v, np.float64) if np.asarray(v).dtype.kind == "f" else v)
             for k, v in ConvBNReLU(2, 3, 1, rng=1).state_dict().items()}
    state["bn.num_batches_tracked"] = 7  # a Python int, as torch's .item() gives
    state["bn.bias"] = [1, 2, 3]  # an integer list
    conv.load_state_dict(state)
    assert conv.conv.weight.dtype == np.float32 and conv.bn.num_batches_tracked == 7
    np.testing.assert_array_equal(conv.bn.bias, [1, 2, 3])


LAYERS_AND_INPUTS = [
    (lambda: Conv2d(3, 4, 3, padding=1, dtype=np.float64, rng=0), (2, 3, 5, 5)),
    (lambda: ConvBNReLU(3, 4, 3, padding=1, dtype=np.float64, rng=0), (2, 3, 5, 5)),
    (lambda: small_network(), (2, 2, 4, 4)),
    (lambda: Linear(6, 2, dtype=np.float64, rng=0), (3, 6)),
    (lambda: MaxPool2d(2), (2, 3, 4, 4)),
]
LAYER_IDS = ["conv", "convbnrelu", "network", "linear", "maxpool"]


@pytest.mark.parametrize("make, shape", LAYERS_AND_INPUTS, ids=LAYER_IDS)
def test_failed_calls_change_nothing_and_a_good_backward_still_works(make, shape):
    """A bad input after a good forward, a dy of the wrong shape or dtype:
    each raises and leaves the parameters, gradients, running statistics and
    its inputs as they were; after the bad dy, the right one gives the
    gradient a fresh forward and backward give."""
    layer = make()
    x = rand(shape, 63)
    y = layer.forward(x)
    dy = rand(y.shape, 64)
    before = arrays_of(layer)
    wrong_x = rand(shape[1:], 65)  # no batch axis
    wrong_x_before = wrong_x.copy()
    for bad in (rand(y.shape[:-1] + (y.shape[-1] + 1,), 66), dy.astype(np.float32),
                dy[..., None]):
        with pytest.raises((ValueError, TypeError)):
            layer.backward(bad)
        assert_unchanged(layer, before)
    dx = layer.backward(dy)
    fresh = make()
    fresh.forward(x)
    np.testing.assert_array_equal(dx, fresh.backward(dy))
    before = arrays_of(layer)
    with pytest.raises((ValueError, TypeError)):
        layer.forward(wrong_x)
    assert_unchanged(layer, before)
    np.testing.assert_array_equal(wrong_x, wrong_x_before)
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(dy)  # the failed forward dropped the saved one
    assert_unchanged(layer, before)


def test_backward_before_forward_changes_nothing():
    for layer in (Conv2d(2, 2, 1), ConvBNReLU(2, 2, 1), small_network(), GlobalAvgPool2d()):
        before = arrays_of(layer)
        with pytest.raises(RuntimeError, match="before forward"):
            layer.backward(np.zeros((2, 2, 3, 3)))
        assert_unchanged(layer, before)


def test_a_forward_failing_mid_network_restores_running_statistics():
    """The Linear at the end refuses the features: the BN layers before it
    already normalized the batch, but their running statistics, counts and
    the network's saved forwards are put back (dropped)."""
    net = Sequential(ConvBNReLU(2, 3, 3, padding=1, dtype=np.float64, rng=0),
                     ConvBNReLU(3, 3, 1, dtype=np.float64, rng=1), GlobalAvgPool2d(),
                     Flatten(), Linear(4, 2, dtype=np.float64, rng=2))
    before = arrays_of(net)
    with pytest.raises(ValueError, match="x has 3 features, expected 4"):
        net.forward(rand((2, 2, 5, 5), 67))
    assert_unchanged(net, before)
    assert net[0].bn.num_batches_tracked == 0
    for module in net._modules():
        assert getattr(module, "_saved", None) is None


def test_a_backward_failing_mid_network_restores_the_gradients():
    """A layer run again on its own between the network's forward and
    backward (its saved input no longer matches): the layers after it have
    added their gradients when it raises; they are put back."""
    net = small_network()
    x = rand((2, 2, 4, 4), 68)
    net.forward(x)
    net.backward(rand((2, 3), 69))  # nonzero gradients to keep
    net.forward(x)
    net[0].forward(rand((2, 2, 6, 6), 70))  # the Concat now expects 6x6
    before = arrays_of(net)
    with pytest.raises(ValueError, match="dy has shape"):
        net.backward(rand((2, 3), 71))
    assert_unchanged(net, before)


def test_concat_backward_rejects_dy_with_channels_its_branches_do_not_have():
    """dy with an extra channel was split into the branches' slices and the
    rest silently ignored."""
    concat = Concat(Conv2d(2, 3, 1, dtype=np.float64, rng=1), Conv2d(2, 1, 1, dtype=np.float64,
                                                                    rng=2))
    y = concat.forward(rand((2, 2, 4, 4), 72))
    before = arrays_of(concat)
    with pytest.raises(ValueError, match=r"dy has shape \(2, 5, 4, 4\), expected \(2, 4, 4, 4\)"):
        concat.backward(rand((2, 5, 4, 4), 73))
    assert_unchanged(concat, before)
    assert concat.backward(rand(y.shape, 74)).shape == (2, 2, 4, 4)


def test_module_load_state_dict_strict_and_not_strict_like_torch():
    """torch.nn.Module.load_state_dict: strict raises (RuntimeError) naming
    missing and unexpected keys and writes nothing; strict=False loads the
    keys both have and returns them as (missing_keys, unexpected_keys)."""
    import bnkernels
    from bnkernels.nn import inception
    net = inception.small_inception(num_classes=3, in_channels=1, width=8, rng=0)
    other = inception.small_inception(num_classes=3, in_channels=1, width=8, rng=1).state_dict()
    before = net.state_dict()
    dropped = sorted(other)[0]
    partial = {k: v for k, v in other.items() if k != dropped}
    partial["head.extra"] = np.ones(2)
    with pytest.raises(RuntimeError, match=rf"missing key\(s\) \['{re.escape(dropped)}'\]; "
                                           r"unexpected key\(s\) \['head.extra'\]"):
        net.load_state_dict(partial)
    for key, value in net.state_dict().items():
        assert np.array_equal(value, before[key]), key
    result = net.load_state_dict(partial, strict=False)
    assert result == bnkernels.IncompatibleKeys([dropped], ["head.extra"])
    after = net.state_dict()
    assert np.array_equal(after[dropped], before[dropped])
    for key in partial.keys() - {"head.extra"}:
        assert np.array_equal(after[key], np.asarray(other[key], after[key].dtype)), key
    assert net.load_state_dict(other) == bnkernels.IncompatibleKeys([], [])


def test_core_batch_norm_layers_are_modules_and_compose_with_the_layers():
    """bnkernels.BatchNorm (any rank) and BatchNorm1d/2d/3d are Modules: the
    layers' BatchNorm2d is the core class itself, and one composes in a
    Sequential whose forward, backward and state_dict equal the layer's own
    (oracle: the same layer called alone, with a copy of its state)."""
    import bnkernels
    from bnkernels.module import Module
    for cls in (bnkernels.BatchNorm, bnkernels.BatchNorm1d, bnkernels.BatchNorm2d,
                bnkernels.BatchNorm3d):
        assert issubclass(cls, Module)
    assert layers.BatchNorm2d is bnkernels.BatchNorm2d
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    bn = bnkernels.BatchNorm2d(3, activation="relu")
    alone = bnkernels.BatchNorm2d(3, activation="relu")
    net = Sequential(ReLU(), bn)
    y = net.forward(x)
    np.testing.assert_array_equal(y, alone.forward(np.maximum(x, 0)))
    dx = net.backward(dy)
    np.testing.assert_array_equal(dx, np.where(x > 0, alone.backward(dy), 0))
    assert sorted(net.state_dict()) == ["1.bias", "1.num_batches_tracked", "1.running_mean",
                                        "1.running_var", "1.weight"]
    assert isinstance(net.state_dict()["1.num_batches_tracked"], np.int64)
    assert [name for name, _, _ in net.named_parameters()] == ["1.weight", "1.bias"]
    assert net.eval() is net and not bn.training
