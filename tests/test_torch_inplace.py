"""bnkernels.torch inside autograd graphs as torch.nn.BatchNorm2d is used:
in-place operations on its output, views, residual additions, in-place
changes of what the backward reads, saved-tensor hooks. (A ResNet block
trained with each: test_torch_adapter.py.)

Oracle: torch.nn.BatchNorm2d / torch.nn.functional.batch_norm running the
same graph. Tolerances as in test_torch_adapter.py (float32: 2e-5, float64:
1e-12): both sides compute the same formulas and differ only by rounding.
"""
import copy

import pytest

torch = pytest.importorskip(
    "torch", reason="bnkernels.torch needs PyTorch: pip install bnkernels[torch]")

import bnkernels.torch as bt  # noqa: E402

DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: dict(rtol=2e-5, atol=2e-5), torch.float64: dict(rtol=1e-12, atol=1e-12)}
FORMATS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def assert_close(actual, expected, dtype, msg=None):
    torch.testing.assert_close(actual, expected, msg=msg, **TOL[dtype])


def make_pair(dtype, channels=5):
    """torch.nn.BatchNorm2d and ours with the same non-trivial state."""
    generator = torch.Generator().manual_seed(1)
    ref = torch.nn.BatchNorm2d(channels, dtype=dtype)
    with torch.no_grad():
        ref.weight.copy_(torch.rand(channels, generator=generator, dtype=dtype) + 0.5)
        ref.bias.copy_(torch.randn(channels, generator=generator, dtype=dtype))
        ref.running_mean.copy_(torch.randn(channels, generator=generator, dtype=dtype))
        ref.running_var.copy_(torch.rand(channels, generator=generator, dtype=dtype) + 0.5)
    return ref, bt.convert(copy.deepcopy(ref))


def data(dtype, memory_format=torch.contiguous_format, shape=(4, 5, 3, 6), seed=0):
    """x (channel means up to 10, scales up to 3), dy and a residual."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=generator, dtype=dtype)
    x = x * (torch.rand(shape[1], 1, 1, generator=generator, dtype=dtype) * 3) \
        + torch.randn(shape[1], 1, 1, generator=generator, dtype=dtype) * 10
    dy = torch.randn(shape, generator=generator, dtype=dtype)
    identity = torch.randn(shape, generator=generator, dtype=dtype)
    return (x.contiguous(memory_format=memory_format), dy,
            identity.contiguous(memory_format=memory_format))


def run_both(ref, ours, after, x, dy, dtype):
    """y = after(bn(x)) through each module, backward with dy; compare y,
    the gradients of x, weight and bias, and the running statistics."""
    results = []
    for module in (ref, ours):
        x_leaf = x.clone().requires_grad_()
        y = after(module(x_leaf))
        y.backward(dy)
        results.append((y.detach(), x_leaf.grad, module.weight.grad, module.bias.grad,
                        module.running_mean, module.running_var))
    for name, theirs, mine in zip(("y", "dx", "dweight", "dbias", "running_mean",
                                   "running_var"), *results):
        assert_close(mine, theirs, dtype, msg=name)
    assert torch.equal(ours.num_batches_tracked, ref.num_batches_tracked)


# ---------------------------------------------------------------------------
# the output is an ordinary tensor
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("memory_format", FORMATS.values(), ids=FORMATS.keys())
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_output_is_a_new_tensor_not_a_view_nor_an_input(training, memory_format):
    _, bn = make_pair(torch.float32)
    bn.train(training)
    x = data(torch.float32, memory_format)[0].requires_grad_()
    y = bn(x)
    assert y._base is None and not y._is_view()
    assert y.untyped_storage().data_ptr() not in {
        t.untyped_storage().data_ptr() for t in (x, bn.weight, bn.bias, bn.running_mean,
                                                 bn.running_var)}
    assert y.is_contiguous(memory_format=memory_format)
    assert y.grad_fn is not None and y.requires_grad


INPLACE = {
    "relu_inplace": torch.nn.ReLU(inplace=True),
    "residual_add": None,  # filled in by the test: out += identity
    "mul_": lambda y: y.mul_(2.5),
    "clamp_": lambda y: y.clamp_(min=-0.5, max=0.5),
    "slice_of_a_view": lambda y: (y[:, 1:3, ::2].mul_(-3), y)[1],
    "transposed_view": lambda y: (y.transpose(2, 3).add_(1), y)[1],
    "permuted_view_relu_": lambda y: (torch.relu_(y.permute(0, 2, 3, 1)), y)[1],
}


@pytest.mark.parametrize("memory_format", FORMATS.values(), ids=FORMATS.keys())
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("operation", INPLACE.keys())
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_inplace_operations_on_the_output_give_torchs_gradients(dtype, operation, training,
                                                                memory_format):
    ref, ours = make_pair(dtype)
    ref.train(training)
    ours.train(training)
    x, dy, identity = data(dtype, memory_format)
    after = INPLACE[operation]
    if after is None:
        def after(y):
            y += identity
            return y
    run_both(ref, ours, after, x, dy, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_output_changed_in_place_after_forward_still_gives_torchs_gradients(dtype):
    # the backward does not read y (it recomputes from x), so changing y in
    # place, even outside autograd, changes nothing, as with torch's
    ref, ours = make_pair(dtype)
    x, dy, _ = data(dtype)

    def after(y):
        with torch.no_grad():
            y.fill_(7.0)
        return y
    run_both(ref, ours, after, x, dy, dtype)


# ---------------------------------------------------------------------------
# in-place changes of what the backward reads: torch's version checks
# ---------------------------------------------------------------------------

INPUTS = ["input", "weight", "bias", "running_mean", "running_var", "output"]


def functional_step(batch_norm, changed, training, dtype):
    """batch_norm, then `changed` modified in place before the backward.
    Returns the gradients, or the RuntimeError the backward raised."""
    x, dy, _ = data(dtype)
    generator = torch.Generator().manual_seed(2)
    tensors = {"input": x.requires_grad_(),
               "weight": (torch.rand(5, generator=generator, dtype=dtype) + 0.5)
               .requires_grad_(),
               "bias": torch.randn(5, generator=generator, dtype=dtype, requires_grad=True),
               "running_mean": torch.randn(5, generator=generator, dtype=dtype),
               "running_var": torch.rand(5, generator=generator, dtype=dtype) + 0.5}
    y = batch_norm(tensors["input"], tensors["running_mean"], tensors["running_var"],
                   tensors["weight"], tensors["bias"], training=training)
    tensors["output"] = y
    with torch.no_grad():
        tensors[changed].add_(1.0)
    try:
        y.backward(dy)
    except RuntimeError as error:
        return error
    return [tensors[name].grad for name in ("input", "weight", "bias")]


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("changed", INPUTS)
def test_inplace_change_before_backward_raises_exactly_where_torch_raises(changed, training):
    # torch saves input, weight and the running statistics for its backward
    # (not bias, not the output): changing one of those in place raises its
    # version-counter error; changing the others gives the same gradients
    dtype = torch.float64
    expected = functional_step(torch.nn.functional.batch_norm, changed, training, dtype)
    actual = functional_step(bt.batch_norm, changed, training, dtype)
    if isinstance(expected, RuntimeError):
        assert "modified by an inplace operation" in str(expected)
        assert isinstance(actual, RuntimeError), f"no error after changing {changed}"
        assert "one of the variables needed for gradient computation has been " \
               "modified by an inplace operation" in str(actual)
    else:
        assert changed in ("bias", "output")
        assert not isinstance(actual, Exception), actual
        for mine, theirs in zip(actual, expected):
            assert_close(mine, theirs, dtype)


def test_output_of_one_layer_changed_in_place_while_the_next_needs_it_raises():
    # the classic mistake: bn2 saved bn1's output, which is then changed
    for batchnorm in (torch.nn.BatchNorm2d, bt.BatchNorm2d):
        bn1, bn2 = batchnorm(5), batchnorm(5)
        x = torch.randn(4, 5, 3, 3, requires_grad=True)
        y1 = bn1(x)
        y2 = bn2(y1)
        y1.relu_()
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            y2.sum().backward()


def test_strided_input_changed_after_forward_gives_the_gradient_at_the_forwards_input():
    # an input that is neither NCHW- nor channels_last-contiguous is copied
    # and the backward reads the copy: changing the input afterwards cannot
    # affect it (torch, which reads the input, raises instead). The gradients
    # are those at the value the forward saw.
    dtype = torch.float64
    ref, ours = make_pair(dtype)
    x, dy, _ = data(dtype, shape=(4, 5, 3, 8))
    dy = dy[..., ::2]
    ref(x[..., ::2]).backward(dy)
    base = x.clone()
    y = ours(base[..., ::2])
    base.add_(1.0)
    y.backward(dy)
    assert_close(ours.weight.grad, ref.weight.grad, dtype)
    assert_close(ours.bias.grad, ref.bias.grad, dtype)
    base = x.clone()
    y = ref(base[..., ::2])
    base.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.backward(dy)


def test_running_statistics_updated_by_a_second_forward_before_backward_as_in_torch():
    # one layer applied twice, one backward (siamese networks, shared
    # blocks): torch's running-statistics update bumps no version, so this
    # works in torch, and must here too, with torch's gradients
    dtype = torch.float64
    ref, ours = make_pair(dtype)
    x1, dy1, _ = data(dtype, seed=1)
    x2, dy2, _ = data(dtype, seed=2)
    grads = []
    for module in (ref, ours):
        a, b = x1.clone().requires_grad_(), x2.clone().requires_grad_()
        ((module(a) * dy1).sum() + (module(b) * dy2).sum()).backward()
        grads.append((a.grad, b.grad, module.weight.grad, module.bias.grad,
                      module.running_mean, module.running_var))
    for theirs, mine in zip(*grads):
        assert_close(mine, theirs, dtype)


# ---------------------------------------------------------------------------
# autograd machinery
# ---------------------------------------------------------------------------

def test_backward_twice_with_retain_graph_accumulates_like_torch():
    dtype = torch.float64
    ref, ours = make_pair(dtype)
    x, dy, _ = data(dtype)
    grads = []
    for module in (ref, ours):
        x_leaf = x.clone().requires_grad_()
        y = module(x_leaf)
        y.backward(dy, retain_graph=True)
        y.backward(dy)
        grads.append((x_leaf.grad, module.weight.grad, module.bias.grad))
    for theirs, mine in zip(*grads):
        assert_close(mine, theirs, dtype)


@pytest.mark.parametrize("how", ["checkpoint_reentrant", "checkpoint", "save_on_cpu"])
@pytest.mark.parametrize("memory_format", FORMATS.values(), ids=FORMATS.keys())
def test_checkpointing_and_saved_tensor_hooks_give_torchs_gradients(how, memory_format):
    import torch.utils.checkpoint

    dtype = torch.float64
    ref, ours = make_pair(dtype)
    x, dy, _ = data(dtype, memory_format)
    grads = []
    for module in (ref, ours):
        x_leaf = x.clone().requires_grad_()

        def block(t, module=module):
            return torch.relu(module(t * 2.0))
        if how == "save_on_cpu":
            with torch.autograd.graph.save_on_cpu():
                y = block(x_leaf)
        else:
            y = torch.utils.checkpoint.checkpoint(
                block, x_leaf, use_reentrant=how == "checkpoint_reentrant")
        y.backward(dy)
        grads.append((y.detach(), x_leaf.grad, module.weight.grad, module.bias.grad,
                      module.running_mean, module.running_var))
    for theirs, mine in zip(*grads):
        assert_close(mine, theirs, dtype)


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_no_grad_and_inference_mode_forward_as_torch(mode):
    dtype = torch.float64
    ref, ours = make_pair(dtype)
    x = data(dtype)[0]
    outputs = []
    for module in (ref, ours):
        with getattr(torch, mode)():
            y = module(x)
            y.relu_()
        assert not y.requires_grad
        outputs.append((y, module.running_mean, module.running_var))
    for theirs, mine in zip(*outputs):
        assert_close(mine, theirs, dtype)
