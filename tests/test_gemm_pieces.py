"""The layers' split products on the kernels' threads: _kernels._gemm_pieces
(csrc/gemm_pieces.c, the BLAS's gemm_ called from C) and
bnkernels.nn._blas.run_products, against float64 NumPy products."""
import numpy as np
import pytest

threadpoolctl = pytest.importorskip("threadpoolctl")

import bnkernels  # noqa: E402
from bnkernels import _kernels  # noqa: E402
from bnkernels.nn import _blas  # noqa: E402


def _gemm(dtype):
    found = _blas._gemm_for(np.dtype(dtype))
    if found is None:
        pytest.skip("no OpenBLAS gemm_ found in this process (the NumPy pieces run)")
    return found


@pytest.fixture
def one_blas_thread():
    """The BLAS on one thread, as split_products holds it; bnkernels on 2."""
    before = bnkernels.get_num_threads()
    bnkernels.set_num_threads(2)
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        yield
    bnkernels.set_num_threads(before)


def _operand(rng, shape, dtype, layout):
    """A (rows, cols) array: C order, a transposed F-order one, or a strided
    window of a larger array."""
    if layout == "C":
        return rng.standard_normal(shape).astype(dtype)
    if layout == "T":
        return rng.standard_normal(shape[::-1]).astype(dtype).T
    return rng.standard_normal((shape[0] + 3, shape[1] + 5)).astype(dtype)[2:2 + shape[0], 1:1 + shape[1]]


def test_openblas_listed_by_threadpoolctl_is_found():
    """NumPy's wheels bundle OpenBLAS: the C path must not silently drop to
    the NumPy pieces there."""
    listed = [c for c in _blas._blas_controllers() if c.internal_api == "openblas"]
    if not listed:
        pytest.skip("no OpenBLAS loaded")
    assert _blas._gemm_for(np.dtype(np.float32)) is not None
    assert _blas._gemm_for(np.dtype(np.float64)) is not None


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 2e-5), (np.float64, 1e-13)])
@pytest.mark.parametrize("a_layout", ["C", "T", "window"])
@pytest.mark.parametrize("b_layout", ["C", "T", "window"])
def test_pieces_are_the_float64_products(one_blas_thread, dtype, rtol, a_layout, b_layout):
    """out = a @ b and out += a @ b, for operands in every layout, pieces
    of one output on two threads; nothing outside each piece's out moves."""
    address, wide = _gemm(dtype)
    rng = np.random.default_rng(1)
    m, k, n = 67, 45, 130
    a = _operand(rng, (m, k), dtype, a_layout)
    b = _operand(rng, (k, n), dtype, b_layout)
    base = np.full((m + 2, n + 4), np.nan, dtype)
    out = base[1:m + 1, 2:n + 2]
    cuts = [0, 20, 41, 67]
    pieces = [(a[lo:hi], b[:, :70], out[lo:hi, :70], False) for lo, hi in zip(cuts, cuts[1:])]
    pieces += [(a[lo:hi], b[:, 70:], out[lo:hi, 70:], False) for lo, hi in zip(cuts, cuts[1:])]
    _kernels._gemm_pieces(address, pieces, 2, wide)
    want = a.astype(np.float64) @ b.astype(np.float64)
    scale = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)
    assert np.all(np.abs(out - want) <= rtol * scale)
    outside = base.copy()
    outside[1:m + 1, 2:n + 2] = np.nan
    assert np.isnan(outside).all()
    _kernels._gemm_pieces(address, [(a, b, out, True)], 2, wide)
    assert np.all(np.abs(out - 2 * want) <= 2 * rtol * scale)


def test_empty_sums_zero_or_keep_the_output(one_blas_thread):
    address, wide = _gemm(np.float32)
    a, b = np.zeros((3, 0), np.float32), np.zeros((0, 4), np.float32)
    out = np.full((3, 4), 5, np.float32)
    _kernels._gemm_pieces(address, [(a, b, out, True)], 2, wide)
    np.testing.assert_array_equal(out, 5)
    _kernels._gemm_pieces(address, [(a, b, out, False)], 2, wide)
    np.testing.assert_array_equal(out, 0)
    _kernels._gemm_pieces(address, [(np.zeros((0, 3), np.float32), np.ones((3, 4), np.float32),
                                     np.zeros((0, 4), np.float32), False)], 2, wide)
    _kernels._gemm_pieces(address, [], 2, wide)


def test_bad_pieces_raise_before_any_product(one_blas_thread):
    address, wide = _gemm(np.float32)
    a = np.ones((4, 5), np.float32)
    b = np.ones((5, 6), np.float32)
    out = np.zeros((4, 6), np.float32)
    done = np.zeros((4, 6), np.float32)

    def call(*bad):
        before = done.copy(), out.copy()
        _kernels._gemm_pieces(address, [(a, b, done, False), bad], 2, wide)
        # the first, good piece did not run either
        np.testing.assert_array_equal(done, before[0])
        np.testing.assert_array_equal(out, before[1])
    with pytest.raises(ValueError, match=r"pieces\[1\]: a \(4, 5\) @ b \(6, 6\)"):
        call(a, np.ones((6, 6), np.float32), out, False)
    with pytest.raises(ValueError, match=r"pieces\[1\]'s b must be a 2-D float32"):
        call(a, b.astype(np.float64), out, False)
    with pytest.raises(ValueError, match=r"pieces\[1\]'s a must be a 2-D"):
        call(a[None], b, out, False)
    with pytest.raises(ValueError, match=r"pieces\[1\]'s a must have unit stride"):
        call(np.ones((8, 10), np.float32)[::2, ::2], b, out, False)
    with pytest.raises(ValueError, match=r"pieces\[1\]'s a must have unit stride"):
        call(np.ones((4, 5), np.float32)[::-1], b, out, False)
    with pytest.raises(ValueError, match=r"pieces\[1\]'s out must have unit stride along"):
        call(a, b, np.zeros((6, 4), np.float32).T, False)
    frozen = np.zeros((4, 6), np.float32)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match=r"pieces\[1\]'s out is read-only"):
        call(a, b, frozen, False)
    shared = np.ones((4, 12), np.float32)
    with pytest.raises(ValueError, match=r"pieces\[1\]'s out overlaps input its a"):
        call(shared[:, :5], b, shared[:, 6:], False)
    with pytest.raises(TypeError, match=r"pieces\[1\]'s b must be a NumPy array, got list"):
        call(a, b.tolist(), out, False)
    with pytest.raises(TypeError, match=r"pieces\[0\]'s out must be a NumPy array"):
        _kernels._gemm_pieces(address, [(a, b, memoryview(out), False)], 2, wide)
    with pytest.raises(TypeError, match=r"pieces\[0\]'s out must be float32 or float64"):
        _kernels._gemm_pieces(address, [(a, b, out.astype(np.int32), False)], 2, wide)


@pytest.mark.parametrize("use_c", [True, False])
def test_run_products_takes_any_strides(one_blas_thread, monkeypatch, use_c):
    """run_products: the C pieces, or NumPy's where an operand is one the
    BLAS cannot read (a reversed view), or where the C path is off; the
    float64 products either way."""
    monkeypatch.setattr(_blas, "use_c_products", use_c)
    rng = np.random.default_rng(2)
    a = rng.standard_normal((30, 20))
    b = rng.standard_normal((20, 40))
    grad = rng.standard_normal((30, 40))
    grad_before = grad.copy()
    out = np.empty((30, 40))
    flipped = a[::-1]
    _blas.run_products([(flipped[:15], b, out[:15], False), (flipped[15:], b, out[15:], False),
                        (a, b, grad, True)], 2)
    np.testing.assert_allclose(out, (a @ b)[::-1], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(grad, grad_before + a @ b, rtol=1e-13, atol=1e-13)
