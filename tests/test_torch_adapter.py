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
import subprocess
import sys

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
        torch.nn.BatchNorm1d(4, 4))
    model[1](torch.randn(2, 4, 5, 5))  # some running statistics
    model.eval()
    x = torch.randn(2, 3, 7, 7)
    expected = model[:3](x)
    weight, running_mean = model[1].weight, model[1].running_mean
    assert bt.convert(model) is model
    assert type(model[1]) is bt.BatchNorm2d and type(model[2][1]) is bt.BatchNorm2d
    assert type(model[3]) is torch.nn.BatchNorm1d  # only BatchNorm2d is swapped
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


def train(model, dtype, steps=5):
    generator = torch.Generator().manual_seed(5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(steps):
        x = torch.randn(16, 3, 8, 8, generator=generator, dtype=dtype)
        target = torch.randint(0, 10, (16,), generator=generator)
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), target)
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
    with pytest.raises(ValueError, match=r"input must be 4-D \(N, C, H, W\), got 3-D"):
        bt.batch_norm(x, None, None, training=True)


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
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)


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


# --- to_torch: bnkernels.layers networks as torch.nn modules ------------------

def _network_and_twin(training, dtype=np.float64):
    from bnkernels import inception
    net = inception.small_inception(width=4, dtype=dtype, seed=7)
    net.train(training)
    if not training:   # non-trivial running statistics for eval mode
        for _, bn in _batch_norms(net):
            rng = np.random.default_rng(len(bn.running_mean))
            bn.running_mean[...] = rng.normal(size=bn.running_mean.shape)
            bn.running_var[...] = rng.uniform(0.5, 2, size=bn.running_var.shape)
    return net, bt.to_torch(net)


def _batch_norms(module, prefix=""):
    from bnkernels import layers
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
    from bnkernels import inception, layers
    net = inception.small_inception(width=2, dtype=np.float32).eval()
    twin = bt.to_torch(net)
    assert not twin.training and all(not m.training for m in twin.modules())
    assert all(p.dtype == torch.float32 for p in twin.parameters())
    with pytest.raises(ValueError, match="numerics='darknet'"):
        bt.to_torch(layers.ConvBNReLU(1, 2, 3, numerics="darknet"))
    with pytest.raises(TypeError, match="no PyTorch twin for SoftmaxCrossEntropy"):
        bt.to_torch(layers.SoftmaxCrossEntropy())
