"""The direct convolution (csrc/fast/conv_direct.c; Conv2d's float32 forward
and dL/dx at stride 1 on CPUs with AVX-512F) against float64 oracles: NumPy's
sum over the padded input's windows, its adjoint for dL/dx, and PyTorch's
conv2d where PyTorch is installed. Shapes cover blocks of 8 output channels and of 48
positions with and without remainders, kernels of 1 to 7 taps per axis,
padding wider than the kernel, planes of one value and one row, x read in
channel blocks and output channels in several groups, and the layer's path
choice; the bits do not depend on the thread count, and a 1xk kernel (run
on the transposed map) gives the bits of the kx1 kernel on the transposed
input."""
import numpy as np
import pytest

import bnkernels
from bnkernels import _kernels
from bnkernels.nn import layers

pytestmark = pytest.mark.skipif(not _kernels._conv2d_direct_available(),
                                reason="no AVX-512F code in this build or CPU")


def oracle(x, weight, bias, padding):
    """float64 sum over every window of the zero-padded x."""
    ph, pw = padding
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    kh, kw = weight.shape[2:]
    windows = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    y = np.einsum("nchwij,ocij->nohw", windows, weight.astype(np.float64))
    return y if bias is None else y + bias.astype(np.float64)[None, :, None, None]


def tolerance(x, weight):
    """float32 rounding of sums of c*kh*kw products: a few units of
    float32 epsilon times the sum of the products' magnitudes."""
    taps = weight[0].size
    return 4 * taps * np.finfo(np.float32).eps * float(np.abs(x).max()) * float(
        np.abs(weight).max())


SHAPES = [  # (n, c, h, w), o, (kh, kw), (ph, pw)
    ((1, 1, 1, 1), 1, (1, 1), (0, 0)),
    ((2, 3, 5, 7), 5, (3, 3), (1, 1)),
    ((3, 17, 9, 4), 13, (2, 3), (0, 2)),
    ((2, 5, 20, 31), 9, (5, 5), (2, 2)),
    ((1, 4, 3, 3), 20, (3, 3), (4, 4)),      # padding wider than the kernel
    ((2, 8, 17, 17), 19, (7, 1), (3, 0)),
    ((2, 8, 17, 17), 16, (1, 7), (0, 3)),
    ((1, 2, 40, 1), 3, (1, 1), (0, 0)),      # one column
    ((1, 2, 1, 50), 8, (1, 3), (0, 1)),      # one row
    ((2, 6, 9, 13), 10, (1, 5), (1, 2)),     # 1xk, rows of zeros: transposed
    ((2, 3, 12, 12), 24, (3, 3), (0, 0)),    # 9 * 12 + 10 = 118 positions
    ((1, 6, 8, 8), 7, (3, 1), (0, 0)),       # 5 * 8 + 8 = 48: one whole block
    ((2, 4, 14, 8), 9, (3, 1), (0, 0)),      # 96: two whole blocks
    ((1, 300, 12, 12), 17, (3, 3), (1, 1)),  # x's values past L1: channel blocks
    ((1, 9, 20, 20), 137, (3, 3), (1, 1)),   # 18 output blocks: two groups
]


@pytest.mark.parametrize("shape,o,kernel,padding", SHAPES)
@pytest.mark.parametrize("with_bias", [False, True])
def test_direct_matches_the_float64_convolution(shape, o, kernel, padding, with_bias):
    rng = np.random.default_rng(sum(shape) + o)
    x = rng.standard_normal(shape).astype(np.float32)
    weight = rng.standard_normal((o, shape[1], *kernel)).astype(np.float32)
    bias = rng.standard_normal(o).astype(np.float32) if with_bias else None
    x_before, w_before = x.copy(), weight.copy()
    y = _kernels._conv2d_direct(x, weight, bias, padding)
    want = oracle(x, weight, bias, padding)
    assert y.shape == want.shape and y.dtype == np.float32
    np.testing.assert_allclose(y, want, rtol=0, atol=tolerance(x, weight))
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(weight, w_before)


def test_direct_agrees_with_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 32, 37, 41)).astype(np.float32)
    weight = rng.standard_normal((21, 32, 3, 5)).astype(np.float32)
    bias = rng.standard_normal(21).astype(np.float32)
    want = torch.nn.functional.conv2d(torch.from_numpy(x).double(),
                                      torch.from_numpy(weight).double(),
                                      torch.from_numpy(bias).double(), 1, (1, 2)).numpy()
    y = _kernels._conv2d_direct(x, weight, bias, (1, 2))
    np.testing.assert_allclose(y, want, rtol=0, atol=tolerance(x, weight))


def test_direct_gives_the_same_bits_on_any_thread_count():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 16, 60, 60)).astype(np.float32)
    weight = rng.standard_normal((24, 16, 3, 3)).astype(np.float32)
    threads = bnkernels.get_num_threads()
    try:
        bnkernels.set_num_threads(1)
        one = _kernels._conv2d_direct(x, weight, None, (1, 1))
        bnkernels.set_num_threads(2)
        two = _kernels._conv2d_direct(x, weight, None, (1, 1))
    finally:
        bnkernels.set_num_threads(threads)
    assert np.array_equal(one.view(np.uint32), two.view(np.uint32))


@pytest.mark.parametrize("shape,o,kernel,padding", [
    ((4, 24, 17, 17), 20, (1, 7), (0, 3)),   # Inception-v3's 17x17 maps
    ((1, 5, 30, 6), 9, (1, 3), (2, 1)),
    ((3, 2, 1, 40), 8, (1, 5), (0, 2)),      # one row: not transposed
])
def test_direct_1xk_gives_the_bits_of_kx1_on_the_transposed_input(shape, o, kernel,
                                                                   padding):
    """A kernel with one side 1 sums its taps in the same order on either
    grid: y of (x, a 1xk weight) is y of (x transposed, the weight
    transposed) transposed, bit for bit."""
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape).astype(np.float32)
    weight = rng.standard_normal((o, shape[1], *kernel)).astype(np.float32)
    bias = rng.standard_normal(o).astype(np.float32)
    y = _kernels._conv2d_direct(x, weight, bias, padding)

    def swapped(a):
        return np.ascontiguousarray(a.transpose(0, 1, 3, 2))
    y_t = _kernels._conv2d_direct(swapped(x), swapped(weight), bias, padding[::-1])
    assert np.array_equal(y.view(np.uint32), swapped(y_t).view(np.uint32))
    np.testing.assert_allclose(y, oracle(x, weight, bias, padding), rtol=0,
                               atol=tolerance(x, weight))


@pytest.mark.parametrize("kernel,padding", [((3, 2), (2, 1)), ((1, 4), (1, 2))])
def test_direct_reads_no_stale_workspace_and_writes_only_its_output(kernel, padding):
    """A reused workspace full of NaN, and an out inside a larger buffer:
    the same y as a fresh call, and the buffer around out untouched (on
    x's grid and, for the 1x4 kernel, the transposed one)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 11, 13)).astype(np.float32)
    weight = rng.standard_normal((10, 3, *kernel)).astype(np.float32)
    fresh = _kernels._conv2d_direct(x, weight, None, padding)
    need = _kernels._conv2d_direct_work(x.shape, weight.shape, padding)
    work = np.full(need + 5, np.nan, np.float32)
    room = np.full(fresh.size + 32, 7.0, np.float32)
    out = room[16:16 + fresh.size].reshape(fresh.shape)
    y = _kernels._conv2d_direct(x, weight, None, padding, work=work, out=out)
    assert y is out
    assert np.array_equal(y.view(np.uint32), fresh.view(np.uint32))
    assert (room[:16] == 7).all() and (room[16 + fresh.size:] == 7).all()


def test_direct_names_the_bad_argument():
    x = np.zeros((1, 2, 5, 5), np.float32)
    w = np.zeros((3, 2, 3, 3), np.float32)
    with pytest.raises(TypeError, match="x must have dtype float32"):
        _kernels._conv2d_direct(x.astype(np.float64), w, None, 0)
    with pytest.raises(ValueError, match=r"weight must be \(O, C, kh, kw\).*C = 2"):
        _kernels._conv2d_direct(x, np.zeros((3, 4, 3, 3), np.float32), None, 0)
    with pytest.raises(ValueError, match=r"bias must be float32 of shape \(3,\)"):
        _kernels._conv2d_direct(x, w, np.zeros(4, np.float32), 0)
    with pytest.raises(ValueError, match="work must be a 1-D float32 array of at least"):
        _kernels._conv2d_direct(x, w, None, 0, work=np.zeros(3, np.float32))
    work = np.zeros(_kernels._conv2d_direct_work(x.shape, w.shape, 0), np.float32)
    room = np.zeros(work.size + x.size, np.float32)
    with pytest.raises(ValueError, match="work overlaps input x"):
        _kernels._conv2d_direct(room[:x.size].reshape(x.shape), w, None, 0, work=room)
    with pytest.raises(ValueError, match="out overlaps input work"):
        _kernels._conv2d_direct(x, w, None, 0, work=work, out=work[:27].reshape(1, 3, 3, 3))
    with pytest.raises(ValueError, match="kernel_size .* is larger than x's padded"):
        _kernels._conv2d_direct(x, np.zeros((3, 2, 6, 6), np.float32), None, 0)


@pytest.mark.parametrize("training", [False, True])
def test_conv2d_takes_the_direct_path_and_its_gradients_hold(training):
    """A Conv2d whose forward, dL/dx and dL/dW are direct: y, dL/dx and
    dL/dW as the GEMM path's and the float64 oracles' to float32 rounding,
    dL/db bit for bit."""
    rng = np.random.default_rng(6)
    conv = layers.Conv2d(5, 12, 3, padding=1, rng=1)
    conv.bias[...] = rng.standard_normal(12)
    conv.training = training
    x = rng.standard_normal((2, 5, 16, 16)).astype(np.float32)
    assert conv._direct(conv.output_shape(x.shape))
    y = conv.forward(x)
    np.testing.assert_allclose(y, oracle(x, conv.weight, conv.bias, (1, 1)), rtol=0,
                               atol=tolerance(x, conv.weight))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = conv.backward(dy)
    gemm = layers.Conv2d(5, 12, 3, padding=1, rng=1)
    gemm.bias[...] = conv.bias
    gemm.training = training
    saved, layers._DIRECT_AVAILABLE = layers._DIRECT_AVAILABLE, False
    try:
        assert not gemm._direct(y.shape)
        np.testing.assert_allclose(gemm.forward(x), y, rtol=0, atol=tolerance(x, conv.weight))
        dx_gemm = gemm.backward(dy)
    finally:
        layers._DIRECT_AVAILABLE = saved
    assert conv._direct_dx(y.shape) and conv._direct_dw(y.shape)
    np.testing.assert_allclose(dx, dx_gemm, rtol=0, atol=tolerance(dy, conv.weight))
    np.testing.assert_allclose(conv.grad_weight, dw_oracle(x, dy, (3, 3), (1, 1)), rtol=0,
                               atol=dw_tolerance(x, dy))
    np.testing.assert_allclose(gemm.grad_weight, conv.grad_weight, rtol=0,
                               atol=dw_tolerance(x, dy))
    assert np.array_equal(conv.grad_bias, gemm.grad_bias)


@pytest.mark.parametrize("kernel,padding", [((3, 3), (1, 1)), ((3, 3), (0, 0)),
                                            ((5, 3), (2, 0)), ((1, 7), (0, 3)),
                                            ((2, 2), (1, 1)), ((3, 3), (3, 3))])
def test_conv2d_dx_is_the_adjoint_of_the_float64_convolution(kernel, padding):
    """dL/dx of L = sum(dy * conv(x)) is the adjoint of the convolution:
    the float64 oracle's, taken as the transposed convolution by the sum
    over windows (independent of the layer's paths), at every element."""
    rng = np.random.default_rng(7)
    conv = layers.Conv2d(3, 10, kernel, padding=padding, rng=2)
    x = rng.standard_normal((2, 3, 13, 15)).astype(np.float32)
    y = conv.forward(x)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = conv.backward(dy)
    # each tap (i, j) spreads dy @ weight[:, :, i, j] over the padded x it read
    kh, kw = kernel
    ph, pw = padding
    want = np.zeros((2, 3, 13 + 2 * ph, 15 + 2 * pw))
    w64 = conv.weight.astype(np.float64)
    for i in range(kh):
        for j in range(kw):
            want[:, :, i:i + y.shape[2], j:j + y.shape[3]] += np.einsum(
                "nohw,oc->nchw", dy.astype(np.float64), w64[:, :, i, j])
    want = want[:, :, ph:ph + 13, pw:pw + 15]
    np.testing.assert_allclose(dx, want, rtol=0, atol=tolerance(dy, conv.weight))
    assert conv._direct_dx(y.shape) == (ph < kh and pw < kw and y.shape[2] * y.shape[3] > 128)


def test_conv2d_with_a_strided_weight_takes_the_gemm_path():
    """A weight replaced by a non-contiguous view: the GEMM path, the same y."""
    rng = np.random.default_rng(8)
    conv = layers.Conv2d(4, 6, 3, padding=1, rng=3)
    x = rng.standard_normal((1, 4, 16, 16)).astype(np.float32)
    want = conv.forward(x)
    conv.weight = np.ascontiguousarray(conv.weight[::-1])[::-1]
    assert not conv.weight.flags.c_contiguous
    assert not conv._direct(want.shape)
    np.testing.assert_allclose(conv.forward(x), want, rtol=0,
                               atol=tolerance(x, conv.weight))


# ---------------------------------------------------------------------------
# the weight gradient, _conv2d_direct_dw
# ---------------------------------------------------------------------------

def dw_oracle(x, dy, kernel, padding):
    """float64 sum over (n, oh, ow) of dy times the padded x's windows."""
    ph, pw = padding
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    windows = np.lib.stride_tricks.sliding_window_view(xp, kernel, axis=(2, 3))
    return np.einsum("nchwij,nohw->ocij", windows, dy.astype(np.float64))


def dw_tolerance(x, dy):
    """float32 rounding of sums of n*OH*OW products (in 16 lanes, then the
    lanes added)."""
    terms = dy.shape[0] * dy.shape[2] * dy.shape[3]
    return 4 * terms * np.finfo(np.float32).eps * float(np.abs(x).max()) * float(
        np.abs(dy).max())


DW_SHAPES = [  # (n, c, h, w), o, (kh, kw), (ph, pw)
    ((1, 1, 1, 1), 1, (3, 3), (1, 1)),
    ((2, 3, 5, 7), 5, (3, 3), (1, 1)),
    ((3, 17, 9, 4), 13, (2, 3), (0, 2)),       # 6 taps: two whole groups
    ((2, 5, 20, 31), 9, (5, 5), (2, 2)),       # 25 taps: a group of 1 left
    ((2, 8, 17, 17), 19, (7, 1), (3, 0)),
    ((2, 8, 17, 17), 16, (1, 7), (0, 3)),      # on the transposed grid
    ((2, 6, 9, 13), 10, (1, 5), (1, 2)),       # transposed, rows of zeros
    ((3, 4, 6, 9), 9, (1, 5), (0, 2)),         # transposed, samples per chunk
    ((1, 2, 1, 50), 8, (1, 2), (0, 1)),        # one row; a group of 2
    ((2, 3, 12, 12), 24, (3, 3), (0, 0)),
    ((1, 12, 40, 33), 7, (3, 3), (1, 1)),      # several chunks of positions
    ((2, 9, 6, 6), 3, (6, 8), (0, 1)),         # 48 taps, the most
]


@pytest.mark.parametrize("shape,o,kernel,padding", DW_SHAPES)
def test_direct_dw_adds_the_float64_weight_gradient(shape, o, kernel, padding):
    rng = np.random.default_rng(sum(shape) + o + 1)
    x = rng.standard_normal(shape).astype(np.float32)
    n, _, h, w = shape
    oh, ow = h + 2 * padding[0] - kernel[0] + 1, w + 2 * padding[1] - kernel[1] + 1
    dy = rng.standard_normal((n, o, oh, ow)).astype(np.float32)
    start = rng.standard_normal((o, shape[1]) + kernel).astype(np.float32)
    grad = start.copy()
    assert _kernels._conv2d_direct_dw(x, dy, padding, grad) is grad
    np.testing.assert_allclose(grad, start + dw_oracle(x, dy, kernel, padding), rtol=0,
                               atol=dw_tolerance(x, dy) + 1e-6 * np.abs(start).max())


def test_direct_dw_keeps_infinities_where_they_were_read():
    """Positions past a row's outputs are computed and masked out: an inf in
    x reaches only the weights whose windows read it (0 * inf would make
    NaN of the others)."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 9, 10)).astype(np.float32)
    x[0, 1, 4, 9] = np.inf     # the last column: the next row's start on the grid
    x[1, 2, 0, 0] = -np.inf
    dy = rng.standard_normal((2, 10, 9, 10)).astype(np.float32)
    grad = np.zeros((10, 3, 3, 3), np.float32)
    _kernels._conv2d_direct_dw(x, dy, (1, 1), grad)
    with np.errstate(invalid="ignore"):
        expected = dw_oracle(x, dy, (3, 3), (1, 1))
    assert np.array_equal(np.isfinite(grad), np.isfinite(expected))
    assert np.array_equal(np.isnan(grad), np.isnan(expected))
    finite = np.isfinite(expected)
    assert finite.sum() > grad.size // 2
    np.testing.assert_allclose(grad[finite], expected[finite], rtol=0,
                               atol=dw_tolerance(np.where(np.isfinite(x), x, 0), dy))


def test_direct_dw_gives_the_same_bits_on_any_thread_count_and_workspace():
    rng = np.random.default_rng(12)
    x = rng.standard_normal((3, 16, 40, 40)).astype(np.float32)
    dy = rng.standard_normal((3, 20, 40, 40)).astype(np.float32)
    need = _kernels._conv2d_direct_dw_work(x.shape, (20, 16, 3, 3), (1, 1))
    threads = bnkernels.get_num_threads()
    grads = []
    try:
        for count, work in ((1, None), (2, np.full(need + 3, np.nan, np.float32))):
            bnkernels.set_num_threads(count)
            grad = np.zeros((20, 16, 3, 3), np.float32)
            _kernels._conv2d_direct_dw(x, dy, (1, 1), grad, work=work)
            grads.append(grad)
    finally:
        bnkernels.set_num_threads(threads)
    assert np.array_equal(grads[0].view(np.uint32), grads[1].view(np.uint32))


def test_direct_dw_names_the_bad_argument():
    x = np.zeros((1, 2, 5, 5), np.float32)
    dy = np.zeros((1, 3, 5, 5), np.float32)
    grad = np.zeros((3, 2, 3, 3), np.float32)
    with pytest.raises(TypeError, match="x must have dtype float32"):
        _kernels._conv2d_direct_dw(x.astype(np.float64), dy, 1, grad)
    with pytest.raises(TypeError, match="grad_weight has dtype float64"):
        _kernels._conv2d_direct_dw(x, dy, 1, grad.astype(np.float64))
    with pytest.raises(ValueError, match=r"dy must be float32 of shape \(1, 3, 3, 3\)"):
        _kernels._conv2d_direct_dw(x, dy, 0, grad)
    with pytest.raises(ValueError, match=r"grad_weight must be \(O, C, kh, kw\).*C = 2"):
        _kernels._conv2d_direct_dw(x, dy, 1, np.zeros((3, 4, 3, 3), np.float32))
    with pytest.raises(ValueError, match="more than 48 taps"):
        _kernels._conv2d_direct_dw(np.zeros((1, 2, 9, 9), np.float32),
                                   np.zeros((1, 3, 3, 1), np.float32), 0,
                                   np.zeros((3, 2, 7, 9), np.float32))
    frozen = grad.copy()
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="grad_weight is read-only"):
        _kernels._conv2d_direct_dw(x, dy, 1, frozen)
    with pytest.raises(ValueError, match="work must be a 1-D float32 array of at least"):
        _kernels._conv2d_direct_dw(x, dy, 1, grad, work=np.zeros(3, np.float32))
    room = np.zeros(2 * x.size, np.float32)
    with pytest.raises(ValueError, match="grad_weight overlaps input x"):
        _kernels._conv2d_direct_dw(room[:x.size].reshape(x.shape), dy, 1,
                                   room[:grad.size].reshape(grad.shape))
    assert not grad.any()


def test_conv2d_keeps_the_gemm_dw_where_the_grid_wastes_positions():
    """A 3x7 kernel on a 17-wide map computes 17 of every 23 grid positions:
    its dL/dW stays im2col + GEMM. A 7x1 kernel takes the direct one, and so
    does a 1x7 kernel, on the transposed grid."""
    wide = layers.Conv2d(4, 8, (3, 7), padding=(1, 3), rng=0)
    tall = layers.Conv2d(4, 8, (7, 1), padding=(3, 0), rng=0)
    row = layers.Conv2d(4, 8, (1, 7), padding=(0, 3), rng=0)
    shape = (2, 8, 17, 17)
    assert wide._direct_dx(shape) and not wide._direct_dw(shape)
    assert tall._direct_dw(shape) and row._direct_dw(shape)
