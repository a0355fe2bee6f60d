"""Batch norm at any rank, channels first or last, and running_var_ddof.

Oracles, each named where it is used:
- a float64 NumPy evaluation of the textbook formulas at the tensor's own rank
  (statistics over every axis but the channel axis), written here and not
  shared with bnkernels.reference: 1e-12 relative in float64, 1e-5 in float32
  (float32 rounding of y and dx, values of order 1);
- the same call on a 4-D view of the same memory: bit for bit, since every
  rank runs the 4-D kernels on (N, C, spatial size) -- the reason a rank costs
  the same per byte as 4-D;
- each framework's documented running-variance update (PyTorch, Darknet:
  unbiased; ONNX, Keras 3, Flax: biased), written out here.
"""
import numpy as np
import pytest

import bnkernels
from bnkernels import batch_norm_backward, batch_norm_forward
from bnkernels.distributed import SingleProcessCommunicator, SyncBatchNorm

SHAPES = [(6, 3), (4, 3, 7), (2, 3, 4, 5), (2, 3, 2, 3, 4), (2, 3, 2, 1, 2, 3)]
DTYPES = [np.float32, np.float64]
TOL = {np.float32: 1e-5, np.float64: 1e-12}


def _channel_axis(ndim, layout):
    return ndim - 1 if layout == "NHWC" else 1


def _data(shape, dtype, layout, seed=0):
    rng = np.random.default_rng(seed)
    c = shape[_channel_axis(len(shape), layout)]
    return dict(x=(rng.standard_normal(shape) * 2 + 0.5).astype(dtype),
                dy=rng.standard_normal(shape).astype(dtype),
                weight=rng.uniform(0.5, 2.0, c).astype(dtype),
                bias=rng.standard_normal(c).astype(dtype),
                running_mean=(rng.standard_normal(c) * 0.1).astype(dtype),
                running_var=rng.uniform(0.5, 1.5, c).astype(dtype))


def _oracle(d, layout, training, momentum=0.1, eps=1e-5, ddof=1):
    """y, dx, dweight, dbias, new running mean and var in float64, from the
    formulas at the tensor's own rank."""
    x, dy = d["x"].astype(np.float64), d["dy"].astype(np.float64)
    axis = _channel_axis(x.ndim, layout)
    axes = tuple(a for a in range(x.ndim) if a != axis)
    shape = [1] * x.ndim
    shape[axis] = -1

    def per_channel(v):
        return np.asarray(v, np.float64).reshape(shape)

    n = x.size // x.shape[axis]
    if training:
        mean, var = x.mean(axis=axes), x.var(axis=axes)
    else:
        mean, var = d["running_mean"].astype(np.float64), d["running_var"].astype(np.float64)
    invstd = 1 / np.sqrt(var + eps)
    xhat = (x - per_channel(mean)) * per_channel(invstd)
    y = xhat * per_channel(d["weight"]) + per_channel(d["bias"])
    dbias, dweight = dy.sum(axis=axes), (dy * xhat).sum(axis=axes)
    if training:
        dx = per_channel(d["weight"] * invstd / n) * (
            n * dy - per_channel(dbias) - xhat * per_channel(dweight))
        running_mean = (1 - momentum) * d["running_mean"] + momentum * mean
        running_var = (1 - momentum) * d["running_var"] + momentum * var * n / (n - ddof)
    else:
        dx = dy * per_channel(d["weight"] * invstd)
        running_mean, running_var = d["running_mean"], d["running_var"]
    return dict(y=y, dx=dx, dweight=dweight, dbias=dbias, running_mean=running_mean,
                running_var=running_var)


def _run(d, **kwargs):
    rm, rv = d["running_mean"].copy(), d["running_var"].copy()
    y, saved = batch_norm_forward(d["x"], d["weight"], d["bias"], rm, rv, **kwargs)
    dx, dweight, dbias = batch_norm_backward(d["dy"], saved)
    return dict(y=y, dx=dx, dweight=dweight, dbias=dbias, running_mean=rm, running_var=rv)


def _as_4d(a, layout):
    """The 4-D view the kernels see: (N, C, S, 1), or (N, S, 1, C) channels last."""
    if layout == "NHWC":
        return a.reshape(a.shape[0], -1, 1, a.shape[-1])
    return a.reshape(a.shape[0], a.shape[1], -1, 1)


@pytest.mark.parametrize("ddof", [1, 0])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_every_rank_matches_the_formulas_at_its_own_rank(shape, dtype, layout, training, ddof):
    d = _data(shape, dtype, layout)
    mine = _run(d, training=training, layout=layout, running_var_ddof=ddof)
    oracle = _oracle(d, layout, training, ddof=ddof)
    for key, value in mine.items():
        assert value.dtype == dtype and value.shape == oracle[key].shape, key
        np.testing.assert_allclose(value, oracle[key], rtol=TOL[dtype], atol=TOL[dtype],
                                   err_msg=key)


@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [s for s in SHAPES if len(s) != 4])
def test_every_rank_gives_the_bits_of_its_4d_view(shape, dtype, layout, activation):
    d = _data(shape, dtype, layout, seed=1)
    mine = _run(d, layout=layout, activation=activation)
    four = _run({k: (_as_4d(v, layout) if v.ndim > 1 else v) for k, v in d.items()},
                layout=layout, activation=activation)
    for key, value in mine.items():
        assert value.tobytes() == four[key].tobytes(), key


@pytest.mark.parametrize("numerics", ["darknet", "darknet-alexeyab"])
@pytest.mark.parametrize("shape", [(8, 5), (4, 5, 6), (2, 5, 2, 2, 3)])
def test_darknet_numerics_take_any_rank_like_a_connected_layer(shape, numerics):
    """Darknet's [connected] batch norm is spatial size 1: its kernels on
    (N, C) equal them on (N, C, 1, 1), and every rank its 4-D view."""
    d = _data(shape, np.float32, "NCHW", seed=2)
    mine = _run(d, numerics=numerics)
    four = _run({k: (_as_4d(v, "NCHW") if v.ndim > 1 else v) for k, v in d.items()},
                numerics=numerics)
    for key, value in mine.items():
        assert value.shape == (d["x"].shape if value.ndim > 1 else (5,))
        assert value.tobytes() == four[key].tobytes(), key


def test_rank_below_two_is_rejected_naming_x():
    with pytest.raises(ValueError, match=r"x must have at least 2 axes, \(N, C, \*spatial\)"):
        batch_norm_forward(np.ones(5, np.float32), None, None, None, None)
    with pytest.raises(ValueError, match=r"x must have at least 2 axes, \(N, \*spatial, C\)"):
        batch_norm_forward(np.ones(5, np.float32), None, None, None, None, layout="NHWC")


def test_one_value_per_channel_at_rank_two_raises_like_pytorch():
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        batch_norm_forward(np.ones((1, 4), np.float32), None, None, None, None)


# ---------------------------------------------------------------------------
# running_var_ddof: each framework's published update
# ---------------------------------------------------------------------------

def test_ddof_zero_tracks_the_biased_variance_as_keras_and_onnx():
    """Keras 3 (BatchNormalization, momentum 0.99): moving_var = moving_var *
    0.99 + var * 0.01 with var = mean((x - mean)^2); ONNX BatchNormalization
    (training_mode=1): running_var = input_var * momentum + current_var * (1 -
    momentum), current_var the population (biased) variance."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((16, 4)).astype(np.float64) * 3
    rm, rv = np.zeros(4), np.ones(4)
    batch_norm_forward(x, None, None, rm, rv, momentum=0.01, eps=1e-3, running_var_ddof=0)
    np.testing.assert_allclose(rv, 0.99 * 1 + 0.01 * x.var(axis=0), rtol=1e-14)
    np.testing.assert_allclose(rm, 0.01 * x.mean(axis=0), rtol=1e-14)
    rv1 = np.ones(4)
    batch_norm_forward(x, None, None, np.zeros(4), rv1, momentum=0.01, eps=1e-3)
    np.testing.assert_allclose(rv1, 0.99 + 0.01 * x.var(axis=0, ddof=1), rtol=1e-14)
    assert not np.allclose(rv, rv1, rtol=1e-4)  # n/(n-1) = 16/15 apart


@pytest.mark.parametrize("bad, error", [(2, ValueError), (-1, ValueError), (True, TypeError),
                                        (1.0, TypeError), ("1", TypeError), (None, TypeError)])
def test_bad_ddof_is_rejected_naming_it_and_changes_nothing(bad, error):
    d = _data((4, 3, 5), np.float32, "NCHW")
    rm, rv = d["running_mean"].copy(), d["running_var"].copy()
    with pytest.raises(error, match="running_var_ddof"):
        batch_norm_forward(d["x"], None, None, rm, rv, running_var_ddof=bad)
    assert rm.tobytes() == d["running_mean"].tobytes()
    assert rv.tobytes() == d["running_var"].tobytes()
    with pytest.raises(error, match="running_var_ddof"):
        bnkernels.BatchNorm1d(3, running_var_ddof=bad)


@pytest.mark.parametrize("numerics", ["darknet", "darknet-alexeyab"])
def test_darknet_numerics_keep_darknet_s_unbiased_running_variance(numerics):
    x = np.ones((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match="running_var_ddof must be 1"):
        batch_norm_forward(x, None, None, np.zeros(3, np.float32), np.ones(3, np.float32),
                           numerics=numerics, running_var_ddof=0)
    with pytest.raises(ValueError, match="running_var_ddof must be 1"):
        bnkernels.BatchNorm1d(3, numerics=numerics, running_var_ddof=0)


@pytest.mark.parametrize("ddof", [0, 1])
@pytest.mark.parametrize("shape", [(6, 3), (3, 3, 4, 2, 2)])
def test_sync_batch_norm_takes_any_rank_and_ddof_like_one_process(shape, ddof):
    d = _data(shape, np.float64, "NCHW", seed=4)
    sync = SyncBatchNorm(3, comm=SingleProcessCommunicator(), dtype=np.float64,
                         running_var_ddof=ddof)
    plain = bnkernels.BatchNorm(3, dtype=np.float64, running_var_ddof=ddof)
    for layer in (sync, plain):
        layer.load_state_dict({"weight": d["weight"], "bias": d["bias"],
                               "running_mean": d["running_mean"],
                               "running_var": d["running_var"], "num_batches_tracked": 0})
    y_sync, y_plain = sync(d["x"]), plain(d["x"])
    np.testing.assert_allclose(y_sync, y_plain, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(sync.backward(d["dy"]), plain.backward(d["dy"]),
                               rtol=1e-12, atol=1e-12)
    oracle = _oracle(d, "NCHW", True, ddof=ddof)
    np.testing.assert_allclose(sync.running_var, oracle["running_var"], rtol=1e-13)
    np.testing.assert_allclose(plain.running_var, oracle["running_var"], rtol=1e-13)


# ---------------------------------------------------------------------------
# the layers: BatchNorm1d/2d/3d with torch.nn's semantics
# ---------------------------------------------------------------------------

LAYERS = {bnkernels.BatchNorm1d: [(6, 3), (4, 3, 5)], bnkernels.BatchNorm2d: [(4, 3, 2, 5)],
          bnkernels.BatchNorm3d: [(2, 3, 2, 2, 3)]}
TORCH_MESSAGES = {bnkernels.BatchNorm1d: "expected 2D or 3D input (got {}D input)",
                  bnkernels.BatchNorm2d: "expected 4D input (got {}D input)",
                  bnkernels.BatchNorm3d: "expected 5D input (got {}D input)"}


@pytest.mark.parametrize("cls", list(LAYERS))
def test_layer_rejects_other_ranks_with_torch_s_message_and_changes_nothing(cls):
    layer = cls(3)
    for ndim in range(1, 7):
        shape = (2, 3) + (2,) * (ndim - 2) if ndim >= 2 else (6,)
        if shape in LAYERS[cls]:
            continue
        if ndim in [len(s) for s in LAYERS[cls]]:
            continue
        with pytest.raises(ValueError, match=__import__("re").escape(
                TORCH_MESSAGES[cls].format(ndim))):
            layer(np.ones(shape, np.float32))
        assert layer.num_batches_tracked == 0
        assert (layer.running_mean == 0).all() and (layer.running_var == 1).all()


@pytest.mark.parametrize("cls", list(LAYERS))
def test_layer_follows_train_and_eval_like_torch(cls):
    shape = LAYERS[cls][-1]
    d = _data(shape, np.float64, "NCHW", seed=5)
    layer = cls(3, dtype=np.float64)
    assert layer.training
    assert layer.eval() is layer and not layer.training
    y_eval = layer(d["x"])  # running statistics 0 and 1: y = x / sqrt(1 + eps)
    np.testing.assert_allclose(y_eval, d["x"] / np.sqrt(1 + 1e-5), rtol=1e-14)
    assert layer.num_batches_tracked == 0 and (layer.running_mean == 0).all()
    assert layer.train() is layer and layer.training
    y_train = layer(d["x"])
    oracle = _oracle(dict(d, weight=np.ones(3), bias=np.zeros(3), running_mean=np.zeros(3),
                          running_var=np.ones(3)), "NCHW", True)
    np.testing.assert_allclose(y_train, oracle["y"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.running_var, oracle["running_var"], rtol=1e-13)
    assert layer.num_batches_tracked == 1
    assert layer.forward(d["x"], training=False).tobytes() != y_train.tobytes()


def test_momentum_none_is_the_cumulative_average_of_every_batch():
    """torch.nn.BatchNorm*(momentum=None): after k training calls the running
    statistics are the plain averages of the k batch means and unbiased
    variances."""
    rng = np.random.default_rng(6)
    layer = bnkernels.BatchNorm1d(4, momentum=None, dtype=np.float64)
    batches = [rng.standard_normal((5 + k, 4, 3)) * (k + 1) + k for k in range(5)]
    for x in batches:
        layer(x)
    means = [x.mean(axis=(0, 2)) for x in batches]
    variances = [x.var(axis=(0, 2), ddof=1) for x in batches]
    np.testing.assert_allclose(layer.running_mean, np.mean(means, axis=0), rtol=1e-13)
    np.testing.assert_allclose(layer.running_var, np.mean(variances, axis=0), rtol=1e-13)
    assert layer.num_batches_tracked == 5
    assert layer.momentum is None and "momentum=None" in repr(layer)


def test_momentum_default_is_the_family_s():
    assert bnkernels.BatchNorm2d(3).momentum == 0.1
    assert bnkernels.BatchNorm2d(3, numerics="darknet").momentum == 0.01
    assert bnkernels.BatchNorm2d(3, numerics="darknet-alexeyab").momentum == 0.1


def test_load_state_dict_strict_and_not_strict_like_torch():
    layer = bnkernels.BatchNorm1d(3)
    before = layer.state_dict()
    new = {"weight": np.full(3, 2.0), "bias": np.full(3, 3.0), "running_mean": np.full(3, 4.0),
           "running_var": np.full(3, 5.0), "num_batches_tracked": 7}
    result = layer.load_state_dict(new)
    assert result == bnkernels.IncompatibleKeys([], [])
    assert (layer.weight == 2).all() and layer.num_batches_tracked == 7
    layer.load_state_dict(before)
    partial = {"weight": np.full(3, 9.0), "extra.key": np.ones(2)}
    with pytest.raises(RuntimeError, match=r"missing key\(s\) \['bias', 'running_mean', "
                                           r"'running_var', 'num_batches_tracked'\]; "
                                           r"unexpected key\(s\) \['extra.key'\]"):
        layer.load_state_dict(partial)
    assert (layer.weight == 1).all()
    result = layer.load_state_dict(partial, strict=False)
    assert result.missing_keys == ["bias", "running_mean", "running_var",
                                   "num_batches_tracked"]
    assert result.unexpected_keys == ["extra.key"]
    assert (layer.weight == 9).all() and (layer.bias == 0).all()
    with pytest.raises(RuntimeError, match="size mismatch for bias"):
        layer.load_state_dict({"weight": np.full(3, 1.0), "bias": np.ones(4)}, strict=False)
    assert (layer.weight == 9).all()  # nothing written


def test_layers_state_dict_loads_into_torch_and_back():
    torch = pytest.importorskip("torch")
    for ours, theirs, shape in [(bnkernels.BatchNorm1d, torch.nn.BatchNorm1d, (6, 3)),
                                (bnkernels.BatchNorm3d, torch.nn.BatchNorm3d, (2, 3, 2, 2, 2))]:
        layer = ours(3, dtype=np.float32, momentum=None)
        layer(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
        twin = theirs(3, momentum=None)
        twin.load_state_dict({k: torch.as_tensor(v) for k, v in layer.state_dict().items()})
        back = ours(3, dtype=np.float32)
        back.load_state_dict({k: v.numpy() for k, v in twin.state_dict().items()})
        for key, value in layer.state_dict().items():
            assert np.asarray(back.state_dict()[key]).tobytes() == np.asarray(value).tobytes()


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("weight_shape", [(5, 3), (5, 3, 4), (5, 3, 2, 2, 2)])
def test_fold_batchnorm_takes_linear_and_convolutions_of_any_rank(weight_shape, layout):
    """Folding is per output channel: W'[o] = a[o] W[o], b'[o] = a[o] (b[o] -
    mean[o]) + beta[o], a = gamma / sqrt(var + eps); checked on a linear layer
    (y = W x + b, then BN) and on the output channel of every axis layout."""
    rng = np.random.default_rng(8)
    w = rng.standard_normal(weight_shape)
    if layout == "NHWC":  # Keras' kernels: (*kernel, in, out)
        w = np.moveaxis(w, 0, -1).copy()
    b = rng.standard_normal(5)
    bn = bnkernels.BatchNorm(5, dtype=np.float64)
    bn.load_state_dict({"weight": rng.uniform(0.5, 2, 5), "bias": rng.standard_normal(5),
                        "running_mean": rng.standard_normal(5),
                        "running_var": rng.uniform(0.5, 2, 5), "num_batches_tracked": 1})
    folded_w, folded_b = bnkernels.fold_batchnorm(w, b, bn, layout=layout)
    a = bn.weight / np.sqrt(bn.running_var + bn.eps)
    w_first = np.moveaxis(w, -1, 0) if layout == "NHWC" else w
    f_first = np.moveaxis(folded_w, -1, 0) if layout == "NHWC" else folded_w
    for o in range(5):
        np.testing.assert_allclose(f_first[o], a[o] * w_first[o], rtol=1e-15)
    np.testing.assert_allclose(folded_b, a * (b - bn.running_mean) + bn.bias, rtol=1e-14)
    if len(weight_shape) == 2 and layout == "NCHW":  # the whole linear layer + BN
        x = rng.standard_normal((7, 3))
        z = x @ w.T + b
        expected = bn.forward(z, training=False)
        np.testing.assert_allclose(x @ folded_w.T + folded_b, expected, rtol=1e-12,
                                   atol=1e-12)


@pytest.mark.parametrize("ddof", [0, 1])
def test_torch_modules_take_running_var_ddof(ddof):
    """bnkernels.torch.BatchNorm1d(running_var_ddof=...): y, gradients and
    running mean as torch.nn.BatchNorm1d (the default, 1, is torch's own
    module bit for bit in the running variance's formula); the running variance
    is the formula with n / (n - ddof)."""
    torch = pytest.importorskip("torch")
    from bnkernels.torch import BatchNorm1d
    rng = np.random.default_rng(9)
    x = torch.tensor(rng.standard_normal((6, 3, 4)) * 2 + 1, requires_grad=True)
    ours, theirs = BatchNorm1d(3, running_var_ddof=ddof).double(), torch.nn.BatchNorm1d(3)
    theirs = theirs.double()
    y, y_torch = ours(x), theirs(x)
    np.testing.assert_allclose(y.detach().numpy(), y_torch.detach().numpy(), rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(ours.running_mean.numpy(), theirs.running_mean.numpy(),
                               rtol=1e-14)
    xs = x.detach().numpy()
    expected = 0.9 + 0.1 * xs.var(axis=(0, 2), ddof=ddof)
    np.testing.assert_allclose(ours.running_var.numpy(), expected, rtol=1e-14)
    assert ("running_var_ddof=0" in repr(ours)) == (ddof == 0)
    with pytest.raises(ValueError, match="running_var_ddof"):
        BatchNorm1d(3, running_var_ddof=2)
