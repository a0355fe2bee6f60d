"""bnkernels.torch's BatchNorm1d, BatchNorm2d, BatchNorm3d and batch_norm on
inputs of any rank, against torch.nn's own modules and F.batch_norm (the
oracle), and against the cumulative-average formula for momentum=None.

Tolerances and the comparison of one training step (step_both) are
test_torch_adapter.py's: both sides compute the same formulas
and differ only by rounding (torch sums in the input's dtype, bnkernels in
float64). With at most ~100 values per channel of order 1-10 we measure
|ours - torch| / (|torch| + 1) up to 6e-6 in float32 (mostly torch's own
float32 sums: against float64 torch, ours is closer) and 1.4e-14 in float64.
float32 2e-5 and float64 1e-12 (relative and absolute) leave a margin over
that and are far below a formula error such as the biased variance in
running_var (1/(n-1), several % here).
"""
import copy

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch", reason="bnkernels.torch needs PyTorch: pip install bnkernels[torch]")

import bnkernels.batchnorm  # noqa: E402
import bnkernels.torch as bt  # noqa: E402
from test_torch_adapter import DTYPES, TOL, assert_close, pointer, step_both  # noqa: E402

# (class name, input shape): every input rank each class takes
SHAPES = {
    "1d-NC": ("BatchNorm1d", (8, 5)),
    "1d-NCL": ("BatchNorm1d", (4, 5, 6)),
    "2d": ("BatchNorm2d", (4, 5, 3, 2)),
    "3d": ("BatchNorm3d", (2, 5, 3, 2, 2)),
}
RANKS = {"BatchNorm1d": (2, 3), "BatchNorm2d": (4,), "BatchNorm3d": (5,)}


def make_pair(name, dtype, num_features=5, **kwargs):
    """torch.nn's layer and ours with the same non-trivial weight and bias."""
    generator = torch.Generator().manual_seed(1)
    ref = getattr(torch.nn, name)(num_features, dtype=dtype, **kwargs)
    if ref.affine:
        with torch.no_grad():
            ref.weight.copy_(torch.rand(num_features, generator=generator, dtype=dtype) + 0.5)
            ref.bias.copy_(torch.randn(num_features, generator=generator, dtype=dtype))
    ours = getattr(bt, name)(num_features, dtype=dtype, **kwargs)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def batch(shape, dtype, generator):
    """(x, dy): channels with means of order 10 and scales from 0.5 to 3.5."""
    per_channel = (1, shape[1]) + (1,) * (len(shape) - 2)
    x = torch.randn(shape, generator=generator, dtype=dtype)
    x = x * (torch.rand(per_channel, generator=generator, dtype=dtype) * 3 + 0.5) \
        + torch.randn(per_channel, generator=generator, dtype=dtype) * 10
    return x, torch.randn(shape, generator=generator, dtype=dtype)


# ---------------------------------------------------------------------------
# the modules against torch.nn's
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("momentum", [0.1, None], ids=["momentum_0.1", "momentum_None"])
@pytest.mark.parametrize("track", [True, False], ids=["tracked", "untracked"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "not_affine"])
@pytest.mark.parametrize("case", SHAPES.values(), ids=SHAPES.keys())
def test_module_matches_torch_in_train_then_eval_mode(case, affine, track, momentum, dtype):
    name, shape = case
    ref, ours = make_pair(name, dtype, affine=affine, track_running_stats=track,
                          momentum=momentum)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        step_both(ref, ours, *batch(shape, dtype, generator), dtype)
    ref.eval()
    ours.eval()
    for _ in range(2):
        step_both(ref, ours, *batch(shape, dtype, generator), dtype)
    if track:
        assert int(ours.num_batches_tracked) == 3


@pytest.mark.parametrize("case", SHAPES.values(), ids=SHAPES.keys())
def test_momentum_none_is_the_cumulative_average_of_the_batch_statistics(case):
    # oracle: torch.nn's documented rule, computed here in NumPy; after k
    # batches the running mean is the mean of the k batch means and the
    # running variance the mean of the k unbiased batch variances
    name, shape = case
    bn = getattr(bt, name)(5, momentum=None, dtype=torch.float64)
    generator = torch.Generator().manual_seed(2)
    means, variances = [], []
    for _ in range(4):
        x = batch(shape, torch.float64, generator)[0]
        bn(x)
        per_channel = np.moveaxis(x.numpy(), 1, 0).reshape(5, -1)
        means.append(per_channel.mean(axis=1))
        variances.append(per_channel.var(axis=1, ddof=1))
    np.testing.assert_allclose(bn.running_mean.numpy(), np.mean(means, axis=0),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(bn.running_var.numpy(), np.mean(variances, axis=0),
                               rtol=1e-12, atol=1e-12)
    assert int(bn.num_batches_tracked) == 4


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_channels_last_3d_input_runs_uncopied_and_stays_channels_last_as_torch(dtype):
    ref, ours = make_pair("BatchNorm3d", dtype)
    generator = torch.Generator().manual_seed(3)
    for _ in range(2):
        x, dy = batch((2, 5, 3, 4, 2), dtype, generator)
        x = x.contiguous(memory_format=torch.channels_last_3d)
        assert not x.is_contiguous()
        step_both(ref, ours, x, dy, dtype)
    assert ours(x).stride() == ref(x).stride() == x.stride()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_strided_3d_input_is_copied_and_gives_a_contiguous_output_as_torch(dtype):
    # (N, L, C) transposed to (N, C, L), as before a BatchNorm1d in a sequence
    # model: torch has no channels-last format for 3-D tensors and copies
    ref, ours = make_pair("BatchNorm1d", dtype)
    generator = torch.Generator().manual_seed(4)
    x, dy = batch((3, 5, 7), dtype, generator)
    x = x.transpose(1, 2).contiguous().transpose(1, 2)
    assert not x.is_contiguous()
    step_both(ref, ours, x, dy, dtype)
    assert ours(x).stride() == ref(x).stride() == (35, 7, 1)


@pytest.mark.parametrize("shape, memory_format", [
    ((6, 5), torch.contiguous_format),
    ((3, 5, 4), torch.contiguous_format),
    ((2, 5, 3, 4, 2), torch.contiguous_format),
    ((2, 5, 3, 4, 2), torch.channels_last_3d),
    ((2, 5, 3, 4, 2, 2), torch.contiguous_format)], ids=str)
def test_kernels_get_4d_views_of_torch_memory_for_any_rank(monkeypatch, shape,
                                                           memory_format):
    calls = []  # (the array in x's or dy's place, the keywords) of each call
    for name in ("batch_norm_forward", "batch_norm_backward"):
        def spy(array, *args, _function=getattr(bnkernels.batchnorm, name), **kwargs):
            calls.append((array, kwargs))
            return _function(array, *args, **kwargs)
        monkeypatch.setattr(bnkernels.batchnorm, name, spy)
    x = torch.randn(shape).contiguous(memory_format=memory_format).requires_grad_()
    y = bt.batch_norm(x, None, None, training=True)
    dy = torch.randn(shape).contiguous(memory_format=memory_format)
    y.backward(dy)
    (x_array, forward), (dy_array, backward) = calls
    n, c, spatial = shape[0], shape[1], int(np.prod(shape[2:]))
    if memory_format == torch.contiguous_format:
        assert forward.get("layout", "NCHW") == "NCHW"
        assert x_array.shape == (n, c, spatial, 1)
    else:
        assert forward["layout"] == "NHWC" and x_array.shape == (n, spatial, 1, c)
    for array, tensor in ((x_array, x), (forward["out"], y), (dy_array, dy),
                          (backward["out"], x.grad)):
        assert array.shape == x_array.shape and pointer(array) == tensor.data_ptr()
    assert y.is_contiguous(memory_format=memory_format)
    assert x.grad.is_contiguous(memory_format=memory_format)


@pytest.mark.parametrize("shape", [(0, 5), (0, 5, 3), (2, 5, 0), (0, 5, 2, 2, 2)], ids=str)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_empty_input_behaves_as_torch(shape, training):
    name = {2: "BatchNorm1d", 3: "BatchNorm1d", 5: "BatchNorm3d"}[len(shape)]
    ref, ours = make_pair(name, torch.float32)
    ref.train(training)
    ours.train(training)
    step_both(ref, ours, torch.randn(shape), torch.randn(shape), torch.float32)
    assert torch.equal(ours.running_mean, torch.zeros(5))


# ---------------------------------------------------------------------------
# state_dict
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("config", [{}, dict(affine=False), dict(track_running_stats=False),
                                    dict(momentum=None)], ids=str)
@pytest.mark.parametrize("name", ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d"])
def test_state_dict_has_torchs_keys_and_loads_both_ways(name, config):
    shape = {"BatchNorm1d": (6, 5), "BatchNorm2d": (4, 5, 2, 2),
             "BatchNorm3d": (2, 5, 2, 2, 2)}[name]
    ref, ours = make_pair(name, torch.float64, **config)
    generator = torch.Generator().manual_seed(5)
    for _ in range(2):
        step_both(ref, ours, *batch(shape, torch.float64, generator), torch.float64)
    assert list(ours.state_dict()) == list(ref.state_dict())
    fresh_torch = getattr(torch.nn, name)(5, dtype=torch.float64, **config)
    fresh_ours = getattr(bt, name)(5, dtype=torch.float64, **config)
    fresh_torch.load_state_dict(ours.state_dict())
    fresh_ours.load_state_dict(ref.state_dict())
    for loaded, source in ((fresh_torch, ours), (fresh_ours, ref)):
        state, expected = loaded.state_dict(), source.state_dict()
        assert list(state) == list(expected)
        for key in expected:
            assert torch.equal(state[key], expected[key]), key


def test_load_state_dict_that_fails_changes_nothing_in_batchnorm1d_and_3d():
    for name in ("BatchNorm1d", "BatchNorm3d"):
        bn = getattr(bt, name)(5)
        state = {key: value.clone() + 1 for key, value in bn.state_dict().items()}
        state["running_var"] = torch.ones(4)  # the wrong size
        before = {key: value.clone() for key, value in bn.state_dict().items()}
        with pytest.raises(RuntimeError, match="size mismatch for running_var"):
            bn.load_state_dict(state)
        for key, value in bn.state_dict().items():
            assert torch.equal(value, before[key]), (name, key)


# ---------------------------------------------------------------------------
# errors: torch's types and messages
# ---------------------------------------------------------------------------

def raised(call):
    try:
        call()
    except Exception as error:  # noqa: BLE001 - the oracle's exception, whatever it is
        return type(error), str(error)
    return None


@pytest.mark.parametrize("name", ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d"])
def test_module_rejects_other_ranks_with_torchs_exception_and_message(name):
    ref, ours = make_pair(name, torch.float32)
    before = copy.deepcopy(ours.state_dict())
    for rank in range(7):
        x = torch.randn((2, 5, 3, 2, 2, 2, 2)[:rank])
        if rank in RANKS[name]:
            continue
        expected = raised(lambda: ref(x))
        assert expected is not None and expected[0] is ValueError, rank
        assert expected[1] == f"expected {' or '.join(f'{r}D' for r in RANKS[name])} " \
                              f"input (got {rank}D input)"
        assert raised(lambda: ours(x)) == expected, rank
    state = ours.state_dict()
    for key in before:
        assert torch.equal(state[key], before[key]), key


@pytest.mark.parametrize("shape", [(1, 5), (1, 5, 1), (1, 5, 1, 1, 1)], ids=str)
def test_one_value_per_channel_in_training_raises_as_torch(shape):
    name = {2: "BatchNorm1d", 3: "BatchNorm1d", 5: "BatchNorm3d"}[len(shape)]
    ref, ours = make_pair(name, torch.float32)
    x = torch.randn(shape)
    expected = raised(lambda: ref(x))
    assert expected is not None and expected[0] is ValueError
    assert expected[1].startswith("Expected more than 1 value per channel when training")
    assert raised(lambda: ours(x)) == expected
    assert int(ours.num_batches_tracked) == 0
    assert raised(lambda: bt.batch_norm(x, None, None, training=True)) == \
        raised(lambda: torch.nn.functional.batch_norm(x, None, None, training=True))
    ref.eval()
    ours.eval()
    assert_close(ours(x), ref(x), torch.float32)  # fine in eval mode


@pytest.mark.parametrize("shape", [(), (5,)], ids=str)
def test_functional_rejects_input_without_a_channel_dimension(shape):
    with pytest.raises(ValueError, match=r"input must be \(N, C, \*spatial\), at least "
                                         rf"2-D, got {len(shape)}-D input"):
        bt.batch_norm(torch.randn(shape), torch.zeros(5), torch.ones(5))


# ---------------------------------------------------------------------------
# the functional API at any rank
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(7, 5), (3, 5, 4), (2, 5, 2, 3, 2), (2, 5, 2, 1, 2, 3)],
                         ids=str)
def test_functional_matches_torch_functional_at_any_rank(shape, dtype):
    generator = torch.Generator().manual_seed(6)
    weight, bias = (torch.rand(5, generator=generator, dtype=dtype) + 0.5,
                    torch.randn(5, generator=generator, dtype=dtype))
    for training in (True, False):
        x, dy = batch(shape, dtype, generator)
        stats_ref = (torch.randn(5, dtype=dtype, generator=generator),
                     torch.rand(5, dtype=dtype, generator=generator) + 0.5)
        stats_ours = tuple(s.clone() for s in stats_ref)
        grads = []
        for function, stats in ((torch.nn.functional.batch_norm, stats_ref),
                                (bt.batch_norm, stats_ours)):
            leaves = [t.clone().requires_grad_() for t in (x, weight, bias)]
            y = function(leaves[0], *stats, leaves[1], leaves[2], training, 0.2, 1e-4)
            y.backward(dy)
            grads.append([y] + [leaf.grad for leaf in leaves])
        for ours, ref in zip(grads[1], grads[0]):
            assert_close(ours, ref, dtype)
        for ours, ref in zip(stats_ours, stats_ref):
            assert_close(ours, ref, dtype)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 2, 1, 2)], ids=str)
def test_gradcheck_float64_at_ranks_2_and_5(shape, training):
    # oracle: finite differences of our own forward
    generator = torch.Generator().manual_seed(7)
    x = torch.randn(shape, generator=generator, dtype=torch.float64, requires_grad=True)
    weight = (torch.rand(3, generator=generator, dtype=torch.float64) + 0.5).requires_grad_()
    bias = torch.randn(3, generator=generator, dtype=torch.float64, requires_grad=True)
    mean, var = torch.randn(3, dtype=torch.float64), torch.rand(3, dtype=torch.float64) + 0.5
    assert torch.autograd.gradcheck(
        lambda x, w, b: bt.batch_norm(x, mean.clone(), var.clone(), w, b, training),
        (x, weight, bias))


# ---------------------------------------------------------------------------
# convert, and models that train like torch's
# ---------------------------------------------------------------------------

def test_convert_swaps_batchnorm1d_2d_and_3d_but_not_sync_batchnorm():
    model = torch.nn.Sequential(torch.nn.BatchNorm1d(4), torch.nn.BatchNorm2d(4),
                                torch.nn.BatchNorm3d(4, momentum=None), torch.nn.SyncBatchNorm(4))
    tensors = [list(layer.state_dict(keep_vars=True).values()) for layer in model]
    bt.convert(model)
    assert [type(layer) for layer in model] == [bt.BatchNorm1d, bt.BatchNorm2d,
                                                bt.BatchNorm3d, torch.nn.SyncBatchNorm]
    for layer, before in zip(model, tensors):
        assert all(a is b for a, b in zip(layer.state_dict(keep_vars=True).values(), before))
    assert model[2].momentum is None


def test_convert_names_a_batchnorm3d_it_cannot_run_and_changes_nothing():
    model = torch.nn.Sequential(torch.nn.BatchNorm1d(4), torch.nn.BatchNorm3d(4).half())
    with pytest.raises(TypeError, match=r"convert: 1 \(torch.nn.BatchNorm3d\) has weight "
                                        "of dtype torch.float16"):
        bt.convert(model)
    assert type(model[0]) is torch.nn.BatchNorm1d


def mlp(dtype):
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
        torch.nn.Linear(8, 3)).to(dtype)


def conv3d_net(dtype):
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv3d(2, 4, 3, padding=1), torch.nn.BatchNorm3d(4), torch.nn.ReLU(),
        torch.nn.Conv3d(4, 4, 3, padding=1), torch.nn.BatchNorm3d(4, momentum=None),
        torch.nn.ReLU(), torch.nn.AdaptiveAvgPool3d(1), torch.nn.Flatten(),
        torch.nn.Linear(4, 3)).to(dtype)


def train(model, dtype, input_shape, memory_format=torch.contiguous_format, steps=4):
    generator = torch.Generator().manual_seed(8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(steps):
        x = torch.randn(input_shape, generator=generator, dtype=dtype)
        target = torch.randint(0, 3, (input_shape[0],), generator=generator)
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(
            model(x.contiguous(memory_format=memory_format)), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return torch.tensor(losses, dtype=torch.float64)


NETS = {
    "linear_batchnorm1d": (mlp, (16, 6), torch.contiguous_format, bt.BatchNorm1d),
    "conv3d_batchnorm3d": (conv3d_net, (4, 2, 4, 4, 3), torch.contiguous_format,
                           bt.BatchNorm3d),
    "conv3d_batchnorm3d_channels_last_3d": (conv3d_net, (4, 2, 4, 4, 3),
                                            torch.channels_last_3d, bt.BatchNorm3d),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("net", NETS.values(), ids=NETS.keys())
def test_converted_model_trains_like_with_torch_batchnorm(net, dtype):
    build, input_shape, memory_format, twin = net
    reference = build(dtype)
    converted = bt.convert(copy.deepcopy(reference))
    assert any(type(layer) is twin for layer in converted.modules())
    assert not any(type(layer) in (torch.nn.BatchNorm1d, torch.nn.BatchNorm3d)
                   for layer in converted.modules())
    # losses and the state after four SGD steps: within the tolerances above
    # (we measure 3e-7 in float32, 2e-16 in float64)
    assert_close(train(converted, dtype, input_shape, memory_format),
                 train(reference, dtype, input_shape, memory_format), dtype)
    state = reference.state_dict()
    assert list(converted.state_dict()) == list(state)
    for key, value in converted.state_dict().items():
        torch.testing.assert_close(value, state[key], **TOL[dtype], msg=key)
