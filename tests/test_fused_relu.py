"""activation="relu": batch norm followed by ReLU, fused into one pass.

Oracles: bnkernels.reference (NumPy, float64, 1e-12), central finite
differences (float64, 1e-6 relative), PyTorch's relu(batch_norm(x)) (float32,
1e-5), and for Darknet numerics the unfused Darknet layer followed by ReLU
(bit for bit: max(y, 0) rounds nothing).
"""
import numpy as np
import pytest

import bnkernels
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
