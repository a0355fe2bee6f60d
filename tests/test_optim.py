"""bnkernels.nn.optim.SGD: PyTorch's update rule, in place.

Oracles: the rule written out here in float64 (always), and torch.optim.SGD
when PyTorch is installed. In float64 both sides do the same few operations
per step, so they agree to ~1e-15 relative; in float32 PyTorch may fuse
p + alpha * d, so 1e-6 relative (a few float32 roundings) after 5 steps.
"""
import numpy as np
import pytest

from bnkernels.nn.layers import Conv2d, Flatten, Linear, ReLU, Sequential, SoftmaxCrossEntropy
from bnkernels.nn.optim import SGD

CONFIGS = [dict(momentum=0.0, weight_decay=0.0, nesterov=False),
           dict(momentum=0.9, weight_decay=0.0, nesterov=False),
           dict(momentum=0.9, weight_decay=1e-2, nesterov=False),
           dict(momentum=0.8, weight_decay=5e-3, nesterov=True),
           dict(momentum=0.0, weight_decay=1e-1, nesterov=False)]
CONFIG_IDS = ["plain", "momentum", "momentum+wd", "nesterov+wd", "wd"]
STEPS = 5


def problem(dtype, seed=0):
    """Two parameters, their grad arrays and a gradient per step."""
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal((3, 4)).astype(dtype), rng.standard_normal(5).astype(dtype)]
    grads = [[rng.standard_normal(p.shape).astype(dtype) for p in params]
             for _ in range(STEPS)]
    return params, grads


def run_sgd(params, grads, lr, **config):
    values = [p.copy() for p in params]
    grad_arrays = [np.zeros_like(p) for p in params]
    opt = SGD(list(zip(values, grad_arrays)), lr, **config)
    for step in grads:
        for array, g in zip(grad_arrays, step):
            array[...] = g
        opt.step()
    return values


def hand_written(params, grads, lr, momentum, weight_decay, nesterov):
    """PyTorch's documented algorithm (dampening 0), float64, one parameter
    at a time."""
    out = []
    for i, p in enumerate(params):
        p = p.astype(np.float64)
        buf = None
        for step in grads:
            d = step[i].astype(np.float64) + weight_decay * p
            if momentum:
                buf = d if buf is None else momentum * buf + d
                d = d + momentum * buf if nesterov else buf
            p = p - lr * d
        out.append(p)
    return out


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_sgd_matches_the_hand_written_float64_update(config):
    params, grads = problem(np.float64)
    for mine, oracle in zip(run_sgd(params, grads, 0.1, **config),
                            hand_written(params, grads, 0.1, **config)):
        np.testing.assert_allclose(mine, oracle, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_sgd_matches_torch_optim_sgd(config, dtype):
    torch = pytest.importorskip("torch", reason="torch.optim.SGD is the reference update")
    params, grads = problem(dtype, seed=1)
    tparams = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in params]
    opt = torch.optim.SGD(tparams, lr=0.05, **config)
    for step in grads:
        for t, g in zip(tparams, step):
            t.grad = torch.from_numpy(g.copy())
        opt.step()
    tol = 1e-6 if dtype == np.float32 else 1e-14
    for mine, theirs in zip(run_sgd(params, grads, 0.05, **config), tparams):
        assert mine.dtype == dtype
        np.testing.assert_allclose(mine, theirs.detach().numpy(), rtol=tol, atol=tol)


def test_sgd_updates_the_module_arrays_in_place_and_zero_grad_clears_them():
    net = Sequential(Linear(4, 3, dtype=np.float64, rng=0))
    weight = net[0].weight
    before = weight.copy()
    opt = SGD(net, lr=0.5)  # a Module stands for its parameters()
    net.forward(np.ones((2, 4)))
    net.backward(np.ones((2, 3)))
    opt.step()
    assert net[0].weight is weight
    np.testing.assert_allclose(weight, before - 0.5 * 2.0, rtol=1e-15)
    opt.zero_grad()
    assert all((grad == 0).all() for _, grad in net.parameters())


def test_sgd_with_momentum_trains_a_small_network():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 1, 4, 4)).astype(np.float32)
    labels = (x[:, 0, :2].sum(axis=(1, 2)) > x[:, 0, 2:].sum(axis=(1, 2))).astype(np.int64)
    net = Sequential(Conv2d(1, 4, 3, padding=1, rng=1), ReLU(),
                     Flatten(), Linear(64, 2, rng=2))
    loss = SoftmaxCrossEntropy()
    opt = SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        losses.append(loss(net.forward(x), labels))
        net.backward(loss.backward())
        opt.step()
    assert losses[-1] < 0.5 * losses[0]


def test_sgd_rejects_bad_arguments_naming_them():
    value = np.zeros(3)
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0"):
        SGD([(value, np.zeros(3))], 0.1, nesterov=True)
    with pytest.raises(ValueError, match="lr must be a finite number >= 0"):
        SGD([(value, np.zeros(3))], -1)
    with pytest.raises(ValueError, match="parameter 0: grad is float32"):
        SGD([(value, np.zeros(3, np.float32))], 0.1)
    with pytest.raises(TypeError, match=r"parameters must be \(value, grad\) pairs"):
        SGD([value], 0.1)


@pytest.mark.parametrize("name", ["lr", "momentum", "weight_decay"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), -1e-3, True,
                                 "0.1", None, np.float64("nan"), 1 + 0j])
def test_sgd_rejects_non_finite_negative_or_non_numeric_scalars(name, bad):
    """A NaN lr once passed (NaN < 0 is False) and turned every weight NaN."""
    value = np.zeros(3)
    kwargs = {"lr": 0.1, name: bad}
    with pytest.raises(ValueError, match=f"{name} must be a finite number >= 0, got"):
        SGD([(value, np.zeros(3))], **kwargs)


def test_sgd_accepts_numpy_scalars_and_zero():
    value, grad = np.ones(3), np.full(3, 2.0)
    opt = SGD([(value, grad)], np.float32(0.5), momentum=np.int64(0), weight_decay=0)
    opt.step()
    np.testing.assert_array_equal(value, np.zeros(3))
    SGD([(value, grad)], 0)  # lr 0, as torch.optim.SGD allows


def test_sgd_rejects_parameters_that_share_memory():
    """An update in place would change the other array too: a value that is
    its own gradient, two values overlapping, a grad inside another value."""
    a = np.zeros(8)
    with pytest.raises(ValueError, match="parameter 0's grad and parameter 0's value share"):
        SGD([(a, a)], 0.1)
    with pytest.raises(ValueError, match="share memory"):
        SGD([(a[:5], np.zeros(5)), (a[4:], np.zeros(4))], 0.1)
    with pytest.raises(ValueError, match="share memory"):
        SGD([(a, np.zeros(8)), (np.zeros(2), a[6:])], 0.1)
    SGD([(a[:4], np.zeros(4)), (a[4:], np.zeros(4))], 0.1)  # adjacent is fine
    with pytest.raises(ValueError, match="nesterov must be a bool"):
        SGD([(np.zeros(2), np.zeros(2))], 0.1, momentum=0.9, nesterov="yes")


def test_a_step_that_raises_changes_no_parameter_and_no_momentum_buffer():
    """Parameter 1 made read-only after construction: step raises before it
    updates parameter 0 or any momentum buffer."""
    params, grads = problem(np.float64, 3)
    opt = SGD([(p, g) for p, g in zip(params, grads[0])], 0.1, momentum=0.9)
    opt.step()
    before = [p.copy() for p in params]
    buffers = [b.copy() for b in opt.momentum_buffers]
    params[1].flags.writeable = False
    with pytest.raises(ValueError, match="parameter 1 is read-only"):
        opt.step()
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p, b)
    for buf, b in zip(opt.momentum_buffers, buffers):
        np.testing.assert_array_equal(buf, b)
    with pytest.raises(ValueError, match="parameter 0 is read-only"):
        SGD([(params[1], np.zeros_like(params[1]))], 0.1)
