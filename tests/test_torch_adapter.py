"""bnkernels.torch against PyTorch's own batch norm (the oracle).

Tolerances: both sides compute the same formulas and differ only by rounding.
torch sums a channel in the input's dtype, bnkernels in float64, so for values
of order 1-10 over at most a few hundred values per channel they agree to
~1e-6 in float32 (2^-24 = 6e-8 times a summation error growing with the count;
we measure at most 1.9e-6) and ~1e-14 in float64 (we measure 2.5e-14). The
tolerances below (float32: 2e-5, float64: 1e-12, both relative and absolute)
leave a margin of 10 to 40 over that, and are far below the size of a formula
error such as the biased variance in running_var (1/(n-1) ~ 3 % off here).
"""
import copy
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch", reason="bnkernels.torch needs PyTorch: pip install bnkernels[torch]")

import bnkernels.batchnorm  # noqa: E402
import bnkernels.torch as bt  # noqa: E402

DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: dict(rtol=2e-5, atol=2e-5), torch.float64: dict(rtol=1e-12, atol=1e-12)}


def assert_close(actual, expected, dtype):
    torch.testing.assert_close(actual, expected, **TOL[dtype])


def make_pair(dtype, **kwargs):
    """torch.nn.BatchNorm2d and ours with the same (non-trivial) state."""
    generator = torch.Generator().manual_seed(1)
    ref = torch.nn.BatchNorm2d(5, dtype=dtype, **kwargs)
    if ref.affine:
        with torch.no_grad():
            ref.weight.copy_(torch.rand(5, generator=generator, dtype=dtype) + 0.5)
            if ref.bias is not None:
                ref.bias.copy_(torch.randn(5, generator=generator, dtype=dtype))
    ours = bt.BatchNorm2d(5, dtype=dtype, **kwargs)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def batches(dtype, steps, shape=(4, 5, 3, 3), seed=0):
    """(x, dy) pairs: channels with means up to 10 and scales up to 3."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(shape, generator=generator, dtype=dtype)
        x = x * (torch.rand(shape[1], 1, 1, generator=generator, dtype=dtype) * 3) \
            + torch.randn(shape[1], 1, 1, generator=generator, dtype=dtype) * 10
        yield x, torch.randn(shape, generator=generator, dtype=dtype)


def step_both(ref, ours, x, dy, dtype):
    """One forward + backward through each; compare everything torch exposes."""
    x_ref, x_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ref, y_ours = ref(x_ref), ours(x_ours)
    y_ref.backward(dy)
    y_ours.backward(dy)
    assert_close(y_ours, y_ref, dtype)
    assert_close(x_ours.grad, x_ref.grad, dtype)
    for name in ("weight", "bias"):
        p_ref, p_ours = getattr(ref, name), getattr(ours, name)
        assert (p_ref is None) == (p_ours is None)
        if p_ref is not None:
            assert_close(p_ours.grad, p_ref.grad, dtype)
    for name in ("running_mean", "running_var"):
        b_ref, b_ours = getattr(ref, name), getattr(ours, name)
        assert (b_ref is None) == (b_ours is None)
        if b_ref is not None:
            assert_close(b_ours, b_ref, dtype)
    assert ours.num_batches_tracked == ref.num_batches_tracked  # tensors or None
    assert torch.equal(x_ours.detach(), x)  # input unchanged


CONFIGS = {
    "default": {},
    "affine_false": dict(affine=False),
    "no_running_stats": dict(track_running_stats=False),
    "momentum_none_cumulative": dict(momentum=None),
    "momentum_0.5_eps_1e-3": dict(momentum=0.5, eps=1e-3),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_module_matches_torch_batchnorm2d_in_train_then_eval_mode(dtype, config):
    ref, ours = make_pair(dtype, **config)
    for x, dy in batches(dtype, 4):
        step_both(ref, ours, x, dy, dtype)
    ref.eval()
    ours.eval()
    for x, dy in batches(dtype, 2, seed=1):
        step_both(ref, ours, x, dy, dtype)
    if ref.track_running_stats:
        assert int(ours.num_batches_tracked) == 4


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_module_without_bias_matches_torch(dtype):
    if "bias" not in torch.nn.BatchNorm2d.__init__.__code__.co_varnames:
        pytest.skip("this torch's BatchNorm2d has no bias= argument")
    ref, ours = make_pair(dtype, bias=False)
    for x, dy in batches(dtype, 2):
        step_both(ref, ours, x, dy, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_functional_matches_torch_functional(dtype):
    generator = torch.Generator().manual_seed(3)
    weight = torch.rand(5, generator=generator, dtype=dtype)
    for training in (True, False):
        for affine in ((weight, None), (None, weight), (None, None)):
            for x, _ in batches(dtype, 1):
                stats_ref = (torch.randn(5, dtype=dtype), torch.rand(5, dtype=dtype) + 0.5)
                stats_ours = tuple(s.clone() for s in stats_ref)
                y_ref = torch.nn.functional.batch_norm(x, *stats_ref, *affine, training,
                                                       0.3, 1e-3)
                y_ours = bt.batch_norm(x, *stats_ours, *affine, training, 0.3, 1e-3)
                assert_close(y_ours, y_ref, dtype)
                assert_close(stats_ours, stats_ref, dtype)
    x = next(batches(dtype, 1))[0]
    assert_close(bt.batch_norm(x, None, None, training=True),
                 torch.nn.functional.batch_norm(x, None, None, training=True), dtype)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_gradcheck_float64(training):
    generator = torch.Generator().manual_seed(4)
    x = torch.randn(3, 4, 2, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    weight = (torch.rand(4, generator=generator, dtype=torch.float64) + 0.5).requires_grad_()
    bias = torch.randn(4, generator=generator, dtype=torch.float64, requires_grad=True)
    running_mean = torch.randn(4, generator=generator, dtype=torch.float64)
    running_var = torch.rand(4, generator=generator, dtype=torch.float64) + 0.5

    def function(x, weight, bias):
        stats = (running_mean.clone(), running_var.clone()) if not training else (None, None)
        return bt.batch_norm(x, *stats, weight, bias, training=training)

    assert torch.autograd.gradcheck(function, (x, weight, bias))


def test_gradients_only_where_needed():
    ref, ours = make_pair(torch.float64)
    x, dy = next(batches(torch.float64, 1))  # x does not require grad
    ref(x).backward(dy)
    ours(x).backward(dy)
    assert x.grad is None
    assert_close(ours.weight.grad, ref.weight.grad, torch.float64)
    assert_close(ours.bias.grad, ref.bias.grad, torch.float64)


def test_double_backward_raises():
    x = torch.randn(2, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    y = bt.batch_norm(x, None, None, training=True)
    (grad,) = torch.autograd.grad((y * y).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|twice"):
        grad.sum().backward()


def test_input_modified_in_place_before_backward_raises():
    x = torch.randn(2, 3, 2, 2, dtype=torch.float64)
    weight = torch.ones(3, dtype=torch.float64, requires_grad=True)
    y = bt.batch_norm(x, None, None, weight, training=True)
    x.add_(1)  # the kernels' saved x is a view of this memory
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


# ---------------------------------------------------------------------------
# zero-copy
# ---------------------------------------------------------------------------

def pointer(array):
    return None if array is None else array.ctypes.data


def test_kernels_get_views_of_torch_memory_and_results_come_back_uncopied(monkeypatch):
    seen = {}
    forward, backward = bnkernels.batchnorm.batch_norm_forward, \
        bnkernels.batchnorm.batch_norm_backward

    def spy_forward(x, weight, bias, running_mean, running_var, **kwargs):
        y, saved = forward(x, weight, bias, running_mean, running_var, **kwargs)
        seen.update(x=pointer(x), weight=pointer(weight), bias=pointer(bias),
                    running_mean=pointer(running_mean), running_var=pointer(running_var),
                    y=pointer(y), numerics=kwargs["numerics"])
        return y, saved

    def spy_backward(dy, saved, **kwargs):
        dx, dweight, dbias = backward(dy, saved, **kwargs)
        seen.update(dy=pointer(dy), dx=pointer(dx))
        return dx, dweight, dbias

    monkeypatch.setattr(bnkernels.batchnorm, "batch_norm_forward", spy_forward)
    monkeypatch.setattr(bnkernels.batchnorm, "batch_norm_backward", spy_backward)
    bn = bt.BatchNorm2d(5)
    x = torch.randn(4, 5, 3, 3, requires_grad=True)
    y = bn(x)
    dy = torch.randn_like(y)
    y.backward(dy)
    assert seen["numerics"] == "standard"
    for name, tensor in (("x", x), ("weight", bn.weight), ("bias", bn.bias),
                         ("running_mean", bn.running_mean),
                         ("running_var", bn.running_var), ("y", y), ("dy", dy),
                         ("dx", x.grad)):
        assert seen[name] == tensor.data_ptr(), name


def test_running_statistics_updated_in_place_in_the_buffers():
    bn = bt.BatchNorm2d(5)
    pointers = bn.running_mean.data_ptr(), bn.running_var.data_ptr()
    bn(next(batches(torch.float32, 1))[0])
    assert (bn.running_mean.data_ptr(), bn.running_var.data_ptr()) == pointers
    assert not torch.equal(bn.running_mean, torch.zeros(5))
    assert not torch.equal(bn.running_var, torch.ones(5))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("memory_format", ["channels_last", "strided"])
def test_non_contiguous_input_matches_torch(memory_format, dtype):
    ref, ours = make_pair(dtype)
    for x, dy in batches(dtype, 2, shape=(4, 5, 3, 6)):
        if memory_format == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
        else:
            x = x[..., ::2]
            dy = dy[..., ::2]
        assert not x.is_contiguous()
        step_both(ref, ours, x, dy, dtype)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_empty_batch_behaves_as_torch(training):
    dtype = torch.float32
    ref, ours = make_pair(dtype)
    ref.train(training)
    ours.train(training)
    x = torch.randn(0, 5, 3, 3)
    step_both(ref, ours, x, torch.randn(0, 5, 3, 3), dtype)
    assert torch.equal(ours.running_mean, torch.zeros(5))
    assert torch.equal(ours.weight.grad, torch.zeros(5))


# ---------------------------------------------------------------------------
# module API: state, resets, repr
# ---------------------------------------------------------------------------

def test_state_dict_interchanges_with_torch_both_ways():
    ref, ours = make_pair(torch.float32)
    for x, dy in batches(torch.float32, 2):
        step_both(ref, ours, x, dy, torch.float32)
    assert list(ours.state_dict()) == list(ref.state_dict())
    fresh_torch, fresh_ours = torch.nn.BatchNorm2d(5), bt.BatchNorm2d(5)
    fresh_torch.load_state_dict(ours.state_dict())
    fresh_ours.load_state_dict(ref.state_dict())
    for key, value in ref.state_dict().items():
        assert torch.equal(fresh_ours.state_dict()[key], value), key
        assert torch.equal(fresh_torch.state_dict()[key], ours.state_dict()[key]), key


def test_old_state_dict_without_num_batches_tracked_loads_as_in_torch():
    ref, ours = make_pair(torch.float32)
    for module in (ref, ours):
        module.num_batches_tracked.fill_(7)
        state = module.state_dict()
        del state["num_batches_tracked"]
        state._metadata[""]["version"] = 1  # saved before the buffer existed
        module.load_state_dict(state)  # strict, yet no missing key
        assert int(module.num_batches_tracked) == 7
    state = ours.state_dict()
    del state["num_batches_tracked"]  # version 2 without it: a missing key
    with pytest.raises(RuntimeError, match="num_batches_tracked"):
        ours.load_state_dict(state)


def test_resets_repr_parameters_and_buffers_as_torch():
    ref, ours = make_pair(torch.float64, momentum=None, eps=1e-3)
    for x, dy in batches(torch.float64, 2):
        step_both(ref, ours, x, dy, torch.float64)
    assert repr(ours) == repr(ref)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in ref.named_buffers()]
    assert isinstance(ours, torch.nn.BatchNorm2d)
    ours.reset_running_stats()
    assert int(ours.num_batches_tracked) == 0
    assert torch.equal(ours.running_var, torch.ones(5, dtype=torch.float64))
    ours.reset_parameters()
    assert torch.equal(ours.weight, torch.ones(5, dtype=torch.float64))
    assert torch.equal(ours.bias, torch.zeros(5, dtype=torch.float64))


def test_convert_swaps_every_batchnorm2d_keeping_state_and_parameters():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4),
        torch.nn.Sequential(torch.nn.ReLU(), torch.nn.BatchNorm2d(4, momentum=None,
                                                                  affine=False)),
        torch.nn.SyncBatchNorm(4, 4))
    model[1](torch.randn(2, 4, 5, 5))  # some running statistics
    model.eval()
    x = torch.randn(2, 3, 7, 7)
    expected = model[:3](x)
    weight, running_mean = model[1].weight, model[1].running_mean
    assert bt.convert(model) is model
    assert type(model[1]) is bt.BatchNorm2d and type(model[2][1]) is bt.BatchNorm2d
    assert type(model[3]) is torch.nn.SyncBatchNorm  # only BatchNorm1d/2d/3d are swapped
    assert model[1].weight is weight and model[1].running_mean is running_mean
    assert int(model[1].num_batches_tracked) == 1
    assert model[2][1].momentum is None and model[2][1].weight is None
    assert not model[1].training
    torch.testing.assert_close(model[:3](x), expected, rtol=2e-5, atol=2e-5)
    single = torch.nn.BatchNorm2d(4)
    assert type(bt.convert(single)) is bt.BatchNorm2d
    assert bt.replace_batchnorm is bt.convert


# ---------------------------------------------------------------------------
# a small CNN trained with each
# ---------------------------------------------------------------------------

def small_cnn(batchnorm, dtype):
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), batchnorm(8), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 10)).to(dtype)


def train(model, dtype, steps=5, memory_format=torch.contiguous_format):
    generator = torch.Generator().manual_seed(5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(steps):
        x = torch.randn(16, 3, 8, 8, generator=generator, dtype=dtype)
        target = torch.randint(0, 10, (16,), generator=generator)
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(
            model(x.contiguous(memory_format=memory_format)), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return torch.tensor(losses, dtype=torch.float64)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_small_cnn_trains_like_with_torch_batchnorm(dtype):
    # 5 SGD steps (lr 0.1, momentum 0.9): rounding differences of one step
    # (see the module docstring) carry into the next through the weights; we
    # measure at most 3e-7 in float32 and 3e-16 in float64 (losses and
    # parameters), hence 1e-5 and 1e-12 (x30).
    tolerance = {torch.float32: 1e-5, torch.float64: 1e-12}[dtype]
    reference, ours = small_cnn(torch.nn.BatchNorm2d, dtype), small_cnn(bt.BatchNorm2d, dtype)
    assert type(ours[1]) is bt.BatchNorm2d
    torch.testing.assert_close(train(ours, dtype), train(reference, dtype),
                               rtol=tolerance, atol=tolerance)
    for (name, p_ours), p_ref in zip(ours.state_dict().items(),
                                     reference.state_dict().values()):
        torch.testing.assert_close(p_ours, p_ref, rtol=tolerance, atol=tolerance, msg=name)


class BasicBlock(torch.nn.Module):
    """torchvision's ResNet BasicBlock: conv, BN, in-place ReLU, conv, BN,
    ``out += identity``, in-place ReLU: in-place operations on BN outputs."""

    def __init__(self, channels):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(channels)
        self.relu = torch.nn.ReLU(inplace=True)
        self.conv2 = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(channels)

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


def small_resnet(dtype):
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1, bias=False), torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(inplace=True), BasicBlock(8), BasicBlock(8),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10)).to(dtype)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last],
                         ids=["nchw", "channels_last"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_resnet_blocks_converted_train_like_with_torch_batchnorm(dtype, memory_format):
    # 5 SGD steps through 5 BN layers, in-place ReLUs and residual additions,
    # after bt.convert of a copy of the torch model; as above, rounding
    # differences carry from step to step: we measure at most 3e-7 in float32
    # and 1.5e-15 in float64 (losses, weights, running statistics), hence
    # 1e-5 and 1e-12
    tolerance = {torch.float32: 1e-5, torch.float64: 1e-12}[dtype]
    reference = small_resnet(dtype).to(memory_format=memory_format)
    ours = bt.convert(copy.deepcopy(reference))
    assert sum(type(m) is bt.BatchNorm2d for m in ours.modules()) == 5
    torch.testing.assert_close(train(ours, dtype, memory_format=memory_format),
                               train(reference, dtype, memory_format=memory_format),
                               rtol=tolerance, atol=tolerance)
    for (name, mine), theirs in zip(ours.state_dict().items(),
                                    reference.state_dict().values()):
        torch.testing.assert_close(mine, theirs, rtol=tolerance, atol=tolerance, msg=name)


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.int32], ids=str)
def test_rejects_other_dtypes_naming_input(dtype):
    x = torch.ones(2, 3, 2, 2).to(dtype)
    with pytest.raises(TypeError, match=r"input has dtype torch\.\w+, expected "
                                        r"torch\.float32 or torch\.float64"):
        bt.batch_norm(x, None, None, training=True)


def test_rejects_vectors_of_another_dtype_or_shape_naming_them():
    x = torch.randn(2, 3, 2, 2)
    with pytest.raises(TypeError, match="weight has dtype torch.float64, expected "
                                        "torch.float32 to match input"):
        bt.batch_norm(x, None, None, torch.ones(3, dtype=torch.float64), training=True)
    with pytest.raises(ValueError, match=r"running_var has shape \(4,\), expected \(3,\) "
                                         "to match input's 3 channels"):
        bt.batch_norm(x, torch.zeros(3), torch.ones(4), training=True)
    with pytest.raises(ValueError, match="both be None or neither"):
        bt.batch_norm(x, torch.zeros(3), None, training=True)
    with pytest.raises(RuntimeError, match="running_mean must be defined in evaluation"):
        bt.batch_norm(x, None, None, training=False)
    with pytest.raises(TypeError, match="momentum must be a float"):
        bt.batch_norm(x, None, None, training=True, momentum=None)


def test_rejects_non_cpu_tensors():
    # no CUDA here: a "meta" tensor goes down the same non-CPU branch
    x = torch.empty(2, 3, 2, 2, device="meta")
    with pytest.raises(ValueError, match="input is on meta, expected a CPU tensor"):
        bt.batch_norm(x, None, None, training=True)
    with pytest.raises(ValueError, match="weight is on meta, expected a CPU tensor"):
        bt.batch_norm(torch.randn(2, 3, 2, 2), None, None,
                      torch.empty(3, device="meta"), training=True)


def test_module_rejects_3d_input_as_torch():
    x = torch.randn(2, 5, 4)
    with pytest.raises(ValueError, match=r"^expected 4D input \(got 3D input\)$"):
        bt.BatchNorm2d(5)(x)
    bt.batch_norm(x, None, None, training=True)  # F.batch_norm takes any rank


def test_one_value_per_channel_in_training_raises_as_torch():
    x = torch.randn(1, 5, 1, 1)
    messages = []
    for module in make_pair(torch.float32):
        with pytest.raises(ValueError, match="Expected more than 1 value per channel "
                                             "when training") as error:
            module(x)
        messages.append(str(error.value))
        module.eval()
        module(x)  # fine in eval mode
    assert messages[0] == messages[1]


def test_eps_checked_as_torch():
    x = torch.randn(2, 3, 2, 2)
    with pytest.raises(ValueError, match="eps must be positive during training"):
        bt.batch_norm(x, None, None, training=True, eps=0.0)
    with pytest.raises(ValueError, match="eps must be non-negative"):
        bt.batch_norm(x, torch.zeros(3), torch.ones(3), training=False, eps=-1.0)


# ---------------------------------------------------------------------------
# importing
# ---------------------------------------------------------------------------

def run_python(code):
    # from an empty directory: `python -c` puts the current one first on
    # sys.path, where a source tree's unbuilt bnkernels/ would shadow the build
    with tempfile.TemporaryDirectory() as cwd:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=False, cwd=cwd)


def test_import_bnkernels_does_not_import_torch():
    result = run_python("import sys, bnkernels; print('torch' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_without_torch_bnkernels_torch_says_how_to_install_it():
    result = run_python(
        "import sys; sys.modules['torch'] = None\n"  # as if not installed
        "import bnkernels\n"
        "try:\n"
        "    import bnkernels.torch\n"
        "except ImportError as error:\n"
        "    print(error)\n")
    assert result.returncode == 0, result.stderr
    assert "pip install bnkernels[torch]" in result.stdout


# --- to_torch: bnkernels.nn.layers networks as torch.nn modules ------------------

def _network_and_twin(training, dtype=np.float64):
    from bnkernels.nn import inception
    net = inception.small_inception(width=4, dtype=dtype, rng=7)
    net.train(training)
    if not training:   # non-trivial running statistics for eval mode
        for _, bn in _batch_norms(net):
            rng = np.random.default_rng(len(bn.running_mean))
            bn.running_mean[...] = rng.normal(size=bn.running_mean.shape)
            bn.running_var[...] = rng.uniform(0.5, 2, size=bn.running_var.shape)
    return net, bt.to_torch(net)


def _batch_norms(module, prefix=""):
    from bnkernels.nn import layers
    for name, child in module.children():
        if isinstance(child, layers.BatchNorm2d):
            yield prefix + name, child
        else:
            yield from _batch_norms(child, f"{prefix}{name}.")


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_to_torch_network_computes_the_same_forward_and_gradients(training):
    # oracle: PyTorch's own conv, batch norm, pools and autograd, on a copy of
    # the parameters; float64, so both sides agree to rounding (1e-10)
    net, twin = _network_and_twin(training)
    x = np.random.default_rng(0).random((5, 1, 8, 8))
    y = net.forward(x)
    x_t = torch.tensor(x, requires_grad=True)
    y_t = twin(x_t)
    np.testing.assert_allclose(y, y_t.detach().numpy(), rtol=1e-10, atol=1e-10)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    dx = net.backward(dy)
    y_t.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(dx, x_t.grad.numpy(), rtol=1e-9, atol=1e-10)
    grads = dict(zip((name for name, _ in twin.named_parameters()),
                     (p.grad.numpy() for p in twin.parameters())))
    ours = [grad for _, _, grad in net.named_parameters()]
    assert len(ours) == len(grads)
    for grad, (name, theirs) in zip(ours, grads.items()):
        np.testing.assert_allclose(grad, theirs, rtol=1e-9, atol=1e-10, err_msg=name)
    if training:   # running statistics updated alike
        for (_, bn), theirs in zip(_batch_norms(net),
                                   (m for m in twin.modules()
                                    if isinstance(m, torch.nn.BatchNorm2d))):
            np.testing.assert_allclose(bn.running_var, theirs.running_var.numpy(), rtol=1e-12)
            np.testing.assert_allclose(bn.running_mean, theirs.running_mean.numpy(),
                                       rtol=1e-12, atol=1e-14)


def test_to_torch_keeps_the_dtype_and_mode_and_refuses_darknet_numerics():
    from bnkernels.nn import inception, layers
    net = inception.small_inception(width=2, dtype=np.float32).eval()
    twin = bt.to_torch(net)
    assert not twin.training and all(not m.training for m in twin.modules())
    assert all(p.dtype == torch.float32 for p in twin.parameters())
    with pytest.raises(ValueError, match="numerics='darknet'"):
        bt.to_torch(layers.ConvBNReLU(1, 2, 3, numerics="darknet"))
    with pytest.raises(TypeError, match="no PyTorch twin for SoftmaxCrossEntropy"):
        bt.to_torch(layers.SoftmaxCrossEntropy())


# ---------------------------------------------------------------------------
# errors as torch's: the same exception types for the same bad arguments
# ---------------------------------------------------------------------------

def torch_and_ours_raise(call, *args, **kwargs):
    """The exceptions torch.nn.functional.batch_norm and ours raise for the
    same call (args copied for each, so no call sees the other's changes)."""
    errors = []
    for function in (torch.nn.functional.batch_norm, bt.batch_norm):
        copied = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
        try:
            call(function, *copied, **kwargs)
        except Exception as error:  # noqa: BLE001 - compared below
            errors.append(error)
        else:
            errors.append(None)
    return errors


def bn_call(function, x, running_mean, running_var, weight=None, bias=None, **kwargs):
    return function(x, running_mean, running_var, weight, bias, **kwargs)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", ["running_mean", "running_var"])
def test_running_statistics_that_require_grad_raise_runtime_error_as_torch(name, training):
    x = torch.randn(2, 3, 2, 2)
    stats = {"running_mean": torch.zeros(3), "running_var": torch.ones(3)}
    stats[name].requires_grad_()
    for function in (torch.nn.functional.batch_norm, bt.batch_norm):
        with pytest.raises(RuntimeError, match=f"not differentiable with respect to "
                                               f"(argument ')?{name}"):
            function(x, stats["running_mean"], stats["running_var"], training=training)
        with torch.no_grad():  # torch checks only where autograd records
            function(x, stats["running_mean"], stats["running_var"], training=training)
    ref, ours = make_pair(torch.float32)
    for module in (ref, ours):
        module.train(training)
        getattr(module, name).requires_grad_()
        with pytest.raises(RuntimeError, match="not differentiable"):
            module(torch.randn(2, 5, 2, 2))


def test_running_statistics_that_require_grad_change_nothing():
    bn = bt.BatchNorm2d(3)
    bn.running_var.requires_grad_()
    with torch.no_grad():
        state = {k: v.clone() for k, v in bn.state_dict().items()}
    with pytest.raises(RuntimeError, match="not differentiable"):
        bn(torch.randn(4, 3, 2, 2))
    for key, value in bn.state_dict().items():
        assert torch.equal(value, state[key]), key


BAD_VECTORS = {
    "running_mean_shape": (torch.zeros(4), torch.ones(3), None, None),
    "running_var_shape": (torch.zeros(3), torch.ones(4), None, None),
    "running_mean_2d": (torch.zeros(1, 3), torch.ones(3), None, None),
    "weight_shape": (torch.zeros(3), torch.ones(3), torch.ones(4), None),
    "bias_shape": (torch.zeros(3), torch.ones(3), None, torch.ones(2)),
    "running_mean_dtype": (torch.zeros(3, dtype=torch.float64), torch.ones(3), None, None),
    "running_var_int": (torch.zeros(3), torch.ones(3, dtype=torch.int64), None, None),
    "weight_dtype": (torch.zeros(3), torch.ones(3), torch.ones(3, dtype=torch.float64),
                     None),
}


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("case", BAD_VECTORS.keys())
def test_bad_vectors_raise_torchs_runtime_error_and_bnkernels_value_or_type_error(case,
                                                                                    training):
    x = torch.randn(2, 3, 2, 2)
    theirs, ours = torch_and_ours_raise(bn_call, x, *BAD_VECTORS[case], training=training)
    assert isinstance(theirs, RuntimeError), theirs
    assert isinstance(ours, RuntimeError), ours  # so `except RuntimeError` works as with torch
    if case.endswith(("dtype", "int")):
        assert isinstance(ours, TypeError) and isinstance(ours, bt.BatchNormTypeError)
        assert "dtype" in str(ours)
    else:
        assert isinstance(ours, ValueError) and isinstance(ours, bt.BatchNormValueError)
        assert "has shape" in str(ours)
    assert case.split("_")[0] in str(ours)  # names the argument


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_one_running_statistic_without_the_other_raises_what_torch_raises(training):
    x = torch.randn(2, 3, 2, 2)
    theirs, ours = torch_and_ours_raise(bn_call, x, torch.zeros(3), None, training=training)
    # torch: ValueError in training, RuntimeError in eval; ours is both
    assert isinstance(ours, type(theirs)), (theirs, ours)
    assert isinstance(ours, ValueError) and isinstance(ours, RuntimeError)


@pytest.mark.parametrize("case", [
    dict(momentum="fast"), dict(eps="small"), dict(momentum=[0.1]), dict(training="yes"),
    dict(training=1)], ids=lambda case: f"{next(iter(case))}={next(iter(case.values()))}")
def test_scalars_of_the_wrong_type_raise_type_error_as_torch(case):
    kwargs = dict(training=True, momentum=0.1, eps=1e-5)
    kwargs.update(case)
    x = torch.randn(2, 3, 2, 2)
    theirs, ours = torch_and_ours_raise(bn_call, x, torch.zeros(3), torch.ones(3), **kwargs)
    assert isinstance(theirs, TypeError), theirs
    assert isinstance(ours, TypeError), ours
    assert next(iter(case)) in str(ours)


def test_scalars_torch_also_takes():
    # a one-element tensor for eps, an int or a bool for momentum, NumPy numbers
    x = torch.randn(2, 3, 2, 2)
    for kwargs in (dict(eps=torch.tensor(1e-3)), dict(momentum=1), dict(momentum=True),
                   dict(momentum=np.float32(0.25), eps=np.float64(1e-4))):
        stats_ref, stats_ours = (torch.zeros(3), torch.ones(3)), (torch.zeros(3), torch.ones(3))
        expected = torch.nn.functional.batch_norm(x, *stats_ref, training=True, **kwargs)
        assert_close(bt.batch_norm(x, *stats_ours, training=True, **kwargs), expected,
                     torch.float32)
        assert_close(stats_ours, stats_ref, torch.float32)
    # and a NumPy bool for training, which torch refuses
    assert_close(bt.batch_norm(x, None, None, training=np.bool_(True)),
                 torch.nn.functional.batch_norm(x, None, None, training=True), torch.float32)


BAD_SCALARS = {
    "eps_nan": dict(eps=float("nan")),
    "eps_inf": dict(eps=float("inf")),
    "eps_zero_training": dict(eps=0.0),
    "eps_negative": dict(eps=-1e-5),
    "momentum_nan": dict(momentum=float("nan")),
    "momentum_inf": dict(momentum=float("inf")),
    "momentum_negative": dict(momentum=-0.1),
    "momentum_above_1": dict(momentum=1.5),
}


@pytest.mark.parametrize("case", BAD_SCALARS.keys())
def test_bad_eps_and_momentum_raise_value_error_before_changing_anything(case):
    # torch raises for eps <= 0 in training (ValueError) and takes the rest,
    # which turn the output or the running statistics into NaN, inf or
    # negative variances; we raise ValueError for all of them
    x = torch.randn(2, 3, 2, 2)
    running_mean, running_var = torch.zeros(3), torch.ones(3)
    with pytest.raises(ValueError, match=case.split("_")[0]):
        bt.batch_norm(x, running_mean, running_var, training=True, **BAD_SCALARS[case])
    assert torch.equal(running_mean, torch.zeros(3))
    assert torch.equal(running_var, torch.ones(3))


def test_eps_zero_allowed_in_eval_mode_as_torch():
    x = torch.randn(2, 3, 2, 2)
    stats = torch.zeros(3), torch.rand(3) + 0.5
    assert_close(bt.batch_norm(x, *stats, training=False, eps=0.0),
                 torch.nn.functional.batch_norm(x, *stats, training=False, eps=0.0),
                 torch.float32)


@pytest.mark.parametrize("kwargs", [dict(eps=0.0), dict(eps=-1.0), dict(eps=float("nan")),
                                    dict(eps=float("inf")), dict(momentum=float("nan")),
                                    dict(momentum=float("inf")), dict(momentum=-0.5),
                                    dict(momentum=2.0), dict(momentum="0.1")], ids=str)
def test_constructor_validates_eps_and_momentum(kwargs):
    with pytest.raises((ValueError, TypeError), match=next(iter(kwargs))):
        bt.BatchNorm2d(3, **kwargs)
    args = (1e-5 if "eps" not in kwargs else kwargs["eps"],
            0.1 if "momentum" not in kwargs else kwargs["momentum"])
    with pytest.raises((ValueError, TypeError), match=next(iter(kwargs))):
        bt.BatchNorm2d(3, *args)  # positional, as torch's signature allows


def test_constructor_takes_what_torch_takes_within_range():
    for kwargs in (dict(momentum=None), dict(momentum=0.0), dict(momentum=1.0),
                   dict(eps=1e-12), dict(affine=False, track_running_stats=False),
                   dict(bias=False), dict(dtype=torch.float64)):
        assert repr(bt.BatchNorm2d(3, **kwargs)) == repr(torch.nn.BatchNorm2d(3, **kwargs))


def test_running_statistics_that_are_strided_are_updated_as_torch():
    x = torch.randn(4, 3, 2, 2)
    results = []
    for function in (torch.nn.functional.batch_norm, bt.batch_norm):
        storage = torch.arange(12, dtype=torch.float32)
        running_mean, running_var = storage[::4], storage[1::4]
        y = function(x, running_mean, running_var, training=True, momentum=0.3)
        results.append((y, storage))
    assert_close(results[1][0], results[0][0], torch.float32)
    assert_close(results[1][1], results[0][1], torch.float32)  # the gaps untouched too


def test_expanded_running_statistics_are_rejected_in_training():
    # torch writes every channel's update to the one shared value (the last
    # one wins); we refuse
    x = torch.randn(4, 3, 2, 2)
    running_mean = torch.zeros(1).expand(3)
    with pytest.raises(ValueError, match="running_mean has stride 0"):
        bt.batch_norm(x, running_mean, torch.ones(3), training=True)
    assert torch.equal(running_mean, torch.zeros(3))
    bt.batch_norm(x, running_mean, torch.ones(3), training=False)  # only read: fine


# ---------------------------------------------------------------------------
# atomic state: a call that raises changes nothing
# ---------------------------------------------------------------------------

def snapshot(module, *tensors):
    """Values and version counters of a module's state and of tensors."""
    items = list(module.state_dict(keep_vars=True).items()) + \
        [(f"tensor{i}", t) for i, t in enumerate(tensors)]
    return {key: (value, value.detach().clone(), value._version) for key, value in items}


def assert_unchanged(module, before, *tensors):
    after = snapshot(module, *tensors)
    assert after.keys() == before.keys()
    for key, (value, copy_, version) in before.items():
        assert after[key][0] is value, f"{key} was replaced"
        assert torch.equal(after[key][1], copy_), f"{key} changed"
        assert after[key][2] == version, f"{key} was written"


def _set(name, value):
    return lambda bn: setattr(bn, name, value)


def _nothing(bn):
    pass


# (what makes the forward fail, set before the state is recorded; the call)
BAD_FORWARDS = {
    "one_value_per_channel": (_nothing, lambda bn: bn(torch.randn(1, 5, 1, 1))),
    "wrong_channels": (_nothing, lambda bn: bn(torch.randn(4, 6, 3, 3))),
    "float16_input": (_nothing, lambda bn: bn(torch.randn(4, 5, 3, 3).half())),
    "3d_input": (_nothing, lambda bn: bn(torch.randn(4, 5, 3))),
    "not_a_tensor": (_nothing, lambda bn: bn(np.zeros((4, 5, 3, 3), np.float32))),
    "momentum_nan": (_set("momentum", float("nan")), lambda bn: bn(torch.randn(4, 5, 3, 3))),
    "eps_zero": (_set("eps", 0.0), lambda bn: bn(torch.randn(4, 5, 3, 3))),
    "running_mean_requires_grad": (lambda bn: bn.running_mean.requires_grad_(),
                                   lambda bn: bn(torch.randn(4, 5, 3, 3))),
    "weight_of_another_dtype": (
        lambda bn: setattr(bn, "weight", torch.nn.Parameter(bn.weight.detach().double())),
        lambda bn: bn(torch.randn(4, 5, 3, 3))),
}


@pytest.mark.parametrize("momentum", [0.1, None], ids=["momentum", "cumulative"])
@pytest.mark.parametrize("case", BAD_FORWARDS.keys())
def test_forward_that_raises_changes_no_state(case, momentum):
    # torch.nn.BatchNorm2d counts the batch in num_batches_tracked before it
    # checks it: its one_value_per_channel leaves the count one higher
    ref, bn = make_pair(torch.float32, momentum=momentum)
    for x, dy in batches(torch.float32, 2):
        step_both(ref, bn, x, dy, torch.float32)
    setup, call = BAD_FORWARDS[case]
    setup(bn)
    before = snapshot(bn)
    with pytest.raises((ValueError, TypeError, RuntimeError)):
        call(bn)
    assert_unchanged(bn, before)
    assert int(bn.num_batches_tracked) == 2


def test_functional_forward_that_raises_changes_no_input():
    x = torch.randn(4, 3, 2, 2)
    tensors = (x, torch.zeros(3), torch.ones(3), torch.rand(3), torch.rand(3))
    before = [(t.clone(), t._version) for t in tensors]
    for bad in (dict(momentum=float("nan")), dict(eps=-1.0), dict(weight=torch.ones(4))):
        kwargs = dict(weight=tensors[3], bias=tensors[4], training=True)
        kwargs.update(bad)
        with pytest.raises((ValueError, RuntimeError)):
            bt.batch_norm(x, tensors[1], tensors[2], **kwargs)
    for t, (value, version) in zip(tensors, before):
        assert torch.equal(t, value) and t._version == version


def bad_state(case):
    state = make_pair(torch.float32)[0].state_dict()
    state = {key: value + 1 for key, value in state.items()}  # all different
    if case == "shape":
        state["bias"] = torch.zeros(4)
    elif case == "missing":
        del state["running_var"]
    elif case == "unexpected":
        state["extra"] = torch.zeros(5)
    elif case == "not_a_tensor":
        state["bias"] = [0.0] * 5
    return state


@pytest.mark.parametrize("assign", [False, True], ids=["copy", "assign"])
@pytest.mark.parametrize("case", ["shape", "missing", "unexpected", "not_a_tensor"])
def test_load_state_dict_that_fails_changes_nothing(case, assign):
    # torch's own copies the entries that fit, then raises for the others
    ref, ours = make_pair(torch.float32)
    with pytest.raises(RuntimeError, match="Error"):
        ref.load_state_dict(bad_state(case), assign=assign)
    assert not torch.equal(ref.weight, make_pair(torch.float32)[0].weight)  # half loaded
    before = snapshot(ours)
    with pytest.raises(RuntimeError, match="Error"):
        ours.load_state_dict(bad_state(case), assign=assign)
    assert_unchanged(ours, before)


def test_load_state_dict_inside_a_model_leaves_a_failing_layer_unchanged():
    ref, ours = make_pair(torch.float32)
    model = torch.nn.Sequential(torch.nn.Identity(), ours)
    state = {f"1.{key}": value for key, value in bad_state("shape").items()}
    before = snapshot(ours)
    with pytest.raises(RuntimeError, match="size mismatch for 1.bias"):
        model.load_state_dict(state)
    assert_unchanged(ours, before)
    good = {f"1.{key}": value + 1 for key, value in ref.state_dict().items()}
    model.load_state_dict(good)
    assert torch.equal(ours.weight.detach(), good["1.weight"])


def test_load_state_dict_non_strict_with_missing_keys_loads_the_rest_as_torch():
    ref, ours = make_pair(torch.float32)
    for module in (ref, ours):
        result = module.load_state_dict(bad_state("missing"), strict=False)
        assert result.missing_keys == ["running_var"]
    for key, value in ref.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key


# ---------------------------------------------------------------------------
# convert and to_torch on odd inputs
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("value", [None, 42, "model", np.zeros(3)], ids=repr)
def test_convert_rejects_what_is_not_a_torch_module(value):
    with pytest.raises(TypeError, match="convert expects a torch.nn.Module, got"):
        bt.convert(value)


def test_convert_rejects_bnkernels_layers_and_torchscript_modules():
    from bnkernels.nn import layers
    with pytest.raises(TypeError, match="convert expects a torch.nn.Module, got BatchNorm2d"):
        bt.convert(layers.BatchNorm2d(3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.script is
        scripted = torch.jit.script(torch.nn.Sequential(torch.nn.BatchNorm2d(2)))
    with pytest.raises(TypeError, match="TorchScript"):
        bt.convert(scripted)


@pytest.mark.parametrize("problem", ["float16", "bfloat16", "momentum_nan", "eps_zero",
                                     "momentum_above_1"])
def test_convert_refuses_a_layer_it_cannot_run_naming_it_and_changing_nothing(problem):
    model = torch.nn.Sequential(torch.nn.BatchNorm2d(3),
                                torch.nn.Sequential(torch.nn.ReLU(), torch.nn.BatchNorm2d(3)))
    bad = model[1][1]
    if problem in ("float16", "bfloat16"):
        bad.to(getattr(torch, problem))
    elif problem == "momentum_nan":
        bad.momentum = float("nan")
    elif problem == "momentum_above_1":
        bad.momentum = 1.5
    else:
        bad.eps = 0.0
    error = TypeError if problem.endswith("float16") else ValueError
    with pytest.raises(error, match=r"convert: 1\.1 \(torch\.nn\.BatchNorm2d\)"):
        bt.convert(model)
    assert type(model[0]) is torch.nn.BatchNorm2d  # checked before any is changed
    assert type(bad) is torch.nn.BatchNorm2d


def test_convert_keeps_identity_hooks_and_shared_layers():
    shared = torch.nn.BatchNorm2d(3)
    model = torch.nn.Sequential(shared, torch.nn.ReLU(), shared)
    calls = []
    handle = shared.register_forward_hook(lambda module, args, output: calls.append(module))
    assert bt.convert(model) is model
    assert model[0] is shared and model[2] is shared and type(shared) is bt.BatchNorm2d
    model(torch.randn(2, 3, 4, 4))
    assert calls == [shared, shared]
    handle.remove()
    model(torch.randn(2, 3, 4, 4))
    assert len(calls) == 2
    assert int(shared.num_batches_tracked) == 4  # 2 forwards through it, twice each
    assert bt.convert(model) is model  # converting again changes nothing


def test_convert_a_meta_model_then_materialize_it():
    with torch.device("meta"):
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    bt.convert(model)
    model.to_empty(device="cpu")
    model[1].reset_parameters()
    model[0].reset_parameters()
    assert type(model[1]) is bt.BatchNorm2d
    reference = copy.deepcopy(model)
    reference[1].__class__ = torch.nn.BatchNorm2d
    x = torch.randn(2, 3, 6, 6)
    assert_close(model(x), reference(x), torch.float32)


def test_to_torch_rejects_odd_inputs_clearly():
    from bnkernels.nn import layers
    with pytest.raises(TypeError, match="to_torch expects a bnkernels.nn.layers module, got "
                                        "NoneType"):
        bt.to_torch(None)
    with pytest.raises(TypeError, match=r"got torch\.nn\.modules\.activation\.ReLU, which "
                                        r"is a torch\.nn\.Module already"):
        bt.to_torch(torch.nn.ReLU())
    with pytest.raises(TypeError, match=r"to_torch: 1\.1: no PyTorch twin for "
                                        "SoftmaxCrossEntropy"):
        bt.to_torch(layers.Sequential(layers.ReLU(), layers.Sequential(
            layers.ReLU(), layers.SoftmaxCrossEntropy())))
