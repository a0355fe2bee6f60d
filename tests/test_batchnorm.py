"""Standard numerics (batch_norm_forward / batch_norm_backward / BatchNorm2d).

Oracles, each named where it is used:
- bnkernels.reference in float64 (same formulas, NumPy's pairwise sums):
  agreement to 1e-12 relative, the rounding of two float64 summation orders;
- central finite differences in float64 (h = 1e-6): 1e-6 relative;
- a float64 evaluation of the exact result for float32 accuracy: a few ulps;
- PyTorch's CPU batch_norm when installed: its float32 result to 1e-5.
"""
import numpy as np
import pytest

import bnkernels
from bnkernels import BatchNorm2d, batch_norm_backward, batch_norm_forward
from bnkernels import reference as ref
from bnkernels.tools.verify import finite_difference_errors

DTYPES = [np.float32, np.float64]


def make(shape, dtype=np.float64, seed=0, loc=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    c = shape[1]
    return dict(
        x=(rng.standard_normal(shape) * scale + loc).astype(dtype),
        dy=rng.standard_normal(shape).astype(dtype),
        weight=rng.uniform(0.5, 2.0, c).astype(dtype),
        bias=rng.standard_normal(c).astype(dtype),
        running_mean=(rng.standard_normal(c) * 0.1).astype(dtype),
        running_var=rng.uniform(0.5, 1.5, c).astype(dtype),
    )


def run_both(d, **kwargs):
    """Forward + backward through bnkernels and the NumPy twin, own copies each."""
    results = []
    for module in (bnkernels, ref):
        rm, rv = d["running_mean"].copy(), d["running_var"].copy()
        y, saved = module.batch_norm_forward(d["x"], d["weight"], d["bias"], rm, rv,
                                             **kwargs)
        dx, dw, db = module.batch_norm_backward(d["dy"], saved)
        results.append(dict(y=y, running_mean=rm, running_var=rv, dx=dx, dweight=dw,
                            dbias=db))
    return results


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (1, 2, 3, 1), (7, 1, 1, 1), (2, 8, 1, 9)])
def test_standard_matches_numpy_reference_in_float64(shape, training):
    mine, oracle = run_both(make(shape), training=training)
    for key in mine:
        np.testing.assert_allclose(mine[key], oracle[key], rtol=1e-12, atol=1e-12,
                                   err_msg=key)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(2, 3, 2, 3), (1, 2, 3, 1), (5, 1, 1, 1)])
def test_standard_gradients_match_central_finite_differences(shape, training):
    dx_err, dweight_err, dbias_err = finite_difference_errors(shape, training, rng=3)
    assert dx_err < 1e-6 and dweight_err < 1e-6 and dbias_err < 1e-6


@pytest.mark.parametrize("dtype", DTYPES)
def test_running_var_takes_the_unbiased_variance(dtype):
    d = make((3, 2, 4, 4), dtype)
    rm, rv = np.zeros(2, dtype), np.ones(2, dtype)
    batch_norm_forward(d["x"], None, None, rm, rv, momentum=0.25)
    x64 = d["x"].astype(np.float64)
    np.testing.assert_allclose(rm, 0.25 * x64.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(rv, 0.75 + 0.25 * x64.var(axis=(0, 2, 3), ddof=1), rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_defaults_are_eps_1e5_and_momentum_0_1(dtype):
    assert bnkernels.defaults("standard") == (1e-5, 0.1)
    d0 = make((2, 3, 2, 2), dtype, seed=1)
    rm, rv = np.zeros(3, dtype), np.ones(3, dtype)
    batch_norm_forward(d0["x"], None, None, rm, rv)      # momentum=None: 0.1
    x64 = d0["x"].astype(np.float64)
    np.testing.assert_allclose(rm, 0.1 * x64.mean(axis=(0, 2, 3)), rtol=1e-6)
    d = make((2, 3, 2, 2), dtype)
    rm, rv = d["running_mean"].copy(), d["running_var"].copy()
    y, _ = batch_norm_forward(d["x"], d["weight"], d["bias"], rm, rv, training=False)
    x64 = d["x"].astype(np.float64)
    expected = ((x64 - d["running_mean"][None, :, None, None])
                / np.sqrt(d["running_var"][None, :, None, None].astype(np.float64) + 1e-5)
                * d["weight"][None, :, None, None] + d["bias"][None, :, None, None])
    np.testing.assert_allclose(y, expected, rtol=2e-6, atol=2e-6)
    assert y.dtype == dtype


def ulps_from(result32, exact64):
    """Distance of float32 results from the exact value, in float32 ulps."""
    spacing = np.spacing(np.abs(exact64).astype(np.float32)).astype(np.float64)
    return np.abs(result32.astype(np.float64) - exact64) / spacing


def test_float32_stays_accurate_when_mean_is_1e4_standard_deviations():
    """Oracle: the same float32 input normalized in float64 (NumPy two-pass).
    A float32 sum of squares would lose everything here; we allow 2 ulps."""
    d = make((8, 4, 6, 6), np.float32, seed=7, loc=1e4, scale=1.0)
    x64 = d["x"].astype(np.float64)
    y, saved = batch_norm_forward(d["x"], None, None, None, None)
    mean, var = x64.mean(axis=(0, 2, 3), keepdims=True), x64.var(axis=(0, 2, 3), keepdims=True)
    exact = (x64 - mean) / np.sqrt(var + 1e-5)
    assert ulps_from(y, exact).max() <= 2
    dx, _, _ = batch_norm_backward(d["dy"], saved)
    n = x64.size / x64.shape[1]
    xhat = exact
    g = d["dy"].astype(np.float64)
    exact_dx = (g - g.mean(axis=(0, 2, 3), keepdims=True)
                - xhat * (g * xhat).sum(axis=(0, 2, 3), keepdims=True) / n) / np.sqrt(var + 1e-5)
    # dx is a difference of O(1) terms: compare to its scale, not per element
    assert np.abs(dx - exact_dx).max() <= 4 * np.spacing(np.float32(np.abs(exact_dx).max()))


@pytest.mark.parametrize("dtype", DTYPES)
def test_statistics_stay_accurate_when_the_first_value_is_an_outlier(dtype):
    """A shifted one-pass sum would lose ~1e-7 of the variance here (the shift
    is 3e4 standard deviations from the mean). Oracle: NumPy's two-pass
    variance of the same values in float64; allowed: 1e-12 relative."""
    x = np.random.default_rng(4).standard_normal((16, 2, 64, 64)).astype(dtype)
    x[0, :, 0, 0] = 3e4
    y, saved = batch_norm_forward(x, None, None, None, None, eps=1e-300)  # below every variance here
    x64 = x.astype(np.float64)
    mean, var = x64.mean(axis=(0, 2, 3)), x64.var(axis=(0, 2, 3))
    np.testing.assert_allclose(saved.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(1 / saved.invstd**2, var, rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_no_affine_and_no_running_stats_like_pytorch_functional(dtype):
    d = make((3, 2, 3, 3), dtype)
    y, saved = batch_norm_forward(d["x"], None, None, None, None)
    dx, dweight, dbias = batch_norm_backward(d["dy"], saved)
    assert dweight is None and dbias is None
    x64 = d["x"].astype(np.float64)
    expected = (x64 - x64.mean(axis=(0, 2, 3), keepdims=True)) / np.sqrt(
        x64.var(axis=(0, 2, 3), keepdims=True) + 1e-5)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_batch_gives_empty_output_and_leaves_running_stats(dtype):
    for numerics in bnkernels.NUMERICS:
        x = np.zeros((0, 3, 4, 4), dtype)
        rm, rv = np.full(3, 0.5, dtype), np.full(3, 2.0, dtype)
        y, saved = batch_norm_forward(x, np.ones(3, dtype), np.zeros(3, dtype), rm, rv,
                                      numerics=numerics)
        assert y.shape == x.shape and y.dtype == dtype
        assert (rm == 0.5).all() and (rv == 2.0).all()
        dx, dweight, dbias = batch_norm_backward(np.zeros_like(x), saved)
        assert dx.shape == x.shape
        assert (dweight == 0).all() and (dbias == 0).all()


# --- the layer ---------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_state_and_gradient_accumulation(dtype):
    layer = BatchNorm2d(3, dtype=dtype)
    assert (layer.weight == 1).all() and (layer.bias == 0).all()
    assert (layer.running_mean == 0).all() and (layer.running_var == 1).all()
    d = make((2, 3, 4, 4), dtype)
    for step in range(2):
        layer.forward(d["x"])
        layer.backward(d["dy"])
    _, saved = batch_norm_forward(d["x"], layer.weight, layer.bias, None, None)
    _, dweight, dbias = batch_norm_backward(d["dy"], saved)
    np.testing.assert_allclose(layer.grad_weight, 2 * dweight, rtol=1e-6)
    np.testing.assert_allclose(layer.grad_bias, 2 * dbias, rtol=1e-6)
    assert layer.num_batches_tracked == 2
    layer.zero_grad()
    assert not layer.grad_weight.any() and not layer.grad_bias.any()
    assert set(layer.state_dict()) == {"weight", "bias", "running_mean", "running_var",
                                       "num_batches_tracked"}


def test_layer_without_running_stats_uses_batch_stats_in_eval():
    d = make((4, 2, 3, 3), np.float32)
    layer = BatchNorm2d(2, track_running_stats=False)
    assert layer.running_mean is None and layer.running_var is None
    np.testing.assert_array_equal(layer.forward(d["x"], training=False),
                                  layer.forward(d["x"], training=True))
    assert layer.num_batches_tracked == 0


def test_reference_layer_is_the_same_layer_on_numpy():
    d = make((3, 2, 4, 4), np.float64)
    fast, slow = BatchNorm2d(2, dtype=np.float64), ref.BatchNorm2d(2, dtype=np.float64)
    for layer in (fast, slow):
        layer.forward(d["x"])
        layer.backward(d["dy"])
    for key, value in fast.state_dict().items():
        np.testing.assert_allclose(value, slow.state_dict()[key], rtol=1e-12)
    np.testing.assert_allclose(fast.grad_weight, slow.grad_weight, rtol=1e-12)


def test_load_state_dict_round_trips():
    a, b = BatchNorm2d(4), BatchNorm2d(4)
    a.forward(make((2, 4, 3, 3), np.float32)["x"])
    b.load_state_dict(a.state_dict())
    for key, value in a.state_dict().items():
        np.testing.assert_array_equal(value, b.state_dict()[key])


# --- PyTorch, a peer library -------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [True, False])
def test_matches_pytorch_batch_norm(dtype, training):
    torch = pytest.importorskip("torch", reason="PyTorch not installed (pip install .[torch])")
    d = make((4, 3, 5, 5), dtype, seed=2, loc=0.5)
    rm, rv = d["running_mean"].copy(), d["running_var"].copy()
    y, saved = batch_norm_forward(d["x"], d["weight"], d["bias"], rm, rv,
                                  training=training, momentum=0.1, eps=1e-5)
    dx, dweight, dbias = batch_norm_backward(d["dy"], saved)

    t = {k: torch.tensor(v, requires_grad=k in ("x", "weight", "bias")) for k, v in d.items()}
    ty = torch.nn.functional.batch_norm(t["x"], t["running_mean"], t["running_var"],
                                        t["weight"], t["bias"], training=training,
                                        momentum=0.1, eps=1e-5)
    ty.backward(t["dy"])
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(y, ty.detach().numpy(), **tol)
    np.testing.assert_allclose(rm, t["running_mean"].numpy(), **tol)
    np.testing.assert_allclose(rv, t["running_var"].numpy(), **tol)
    np.testing.assert_allclose(dx, t["x"].grad.numpy(), **tol)
    np.testing.assert_allclose(dweight, t["weight"].grad.numpy(), **tol)
    np.testing.assert_allclose(dbias, t["bias"].grad.numpy(), **tol)


def test_layer_tracks_torch_batchnorm2d_over_steps():
    torch = pytest.importorskip("torch", reason="PyTorch not installed (pip install .[torch])")
    ours, theirs = BatchNorm2d(3), torch.nn.BatchNorm2d(3)
    assert set(ours.state_dict()) == set(theirs.state_dict())
    rng = np.random.default_rng(9)
    for step in range(3):
        x = (rng.standard_normal((4, 3, 6, 6)) * 2 + step).astype(np.float32)
        dy = rng.standard_normal(x.shape).astype(np.float32)
        tx = torch.tensor(x, requires_grad=True)
        theirs.train()
        theirs(tx).backward(torch.tensor(dy))
        ours.forward(x)
        dx = ours.backward(dy)
        np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-5, atol=1e-5)
    for key, value in theirs.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[key], value.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.grad_weight, theirs.weight.grad.numpy(), rtol=1e-4, atol=1e-5)
    theirs.eval()
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(ours.forward(x, training=False),
                               theirs(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-5)
