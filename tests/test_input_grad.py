"""backward(..., input_grad=False): a network's (or a Sequential's) backward
for a caller that needs no dL/dx of the input, as a training step (PyTorch
computes none for an input that does not require grad). It returns None,
skips the backward of the stages before the first one with parameters and
that one's dL/dx, and adds the same parameter gradients.

Oracle: the ordinary backward of an identical copy of the module (the
parameter gradients bit for bit), whose own gradients the other test files
check against PyTorch and finite differences; and which kernels the first
convolution calls."""
import copy

import numpy as np
import pytest

from bnkernels import _kernels
from bnkernels.nn import inception
from bnkernels.nn.layers import (
    Conv2d, Linear, MaxPool2d, ReLU, Sequential, SoftmaxCrossEntropy,
)


def grads(module):
    return {name: grad.copy() for name, _, grad in module.named_parameters()}


def train_step(net, x, labels, aux=0, **backward):
    """Forward, the loss of the logits (and of each auxiliary head), backward."""
    net.train()
    net.zero_grad()
    out = net.forward(x)
    logits, aux_logits = out if aux else (out, [])
    loss = SoftmaxCrossEntropy()
    loss.forward(logits, labels)
    dlogits = loss.backward()
    aux_grads = []
    for head in aux_logits:
        head_loss = SoftmaxCrossEntropy()
        head_loss.forward(head, labels)
        aux_grads.append(head_loss.backward(0.4))
    return net.backward(dlogits, aux_grads or None, **backward)


NETWORKS = {
    "googlenet": (lambda: inception.googlenet(num_classes=10, variant="torchvision",
                                              transform_input=True), 0, 64),
    "bn_inception": (lambda: inception.bn_inception(num_classes=10), 0, 64),
    # the auxiliary head needs Mixed_6e's 17x17 map
    "inception_v3": (lambda: inception.inception_v3(num_classes=10, aux_logits=True), 1, 299),
    "small_inception": (lambda: inception.small_inception(num_classes=10, width=4,
                                                          dtype=np.float64), 0, 12),
}


@pytest.mark.parametrize("name", NETWORKS)
def test_networks_give_the_same_parameter_gradients_without_input_grad(name):
    make, aux, size = NETWORKS[name]
    net = make()
    twin = copy.deepcopy(net)   # the same weights, and the same dropout draws
    channels = 1 if name == "small_inception" else 3
    x = np.random.default_rng(1).standard_normal((2, channels, size, size)).astype(net_dtype(net))
    labels = np.array([3, 7])
    dx = train_step(twin, x, labels, aux)
    assert dx.shape == x.shape
    assert train_step(net, x, labels, aux, input_grad=False) is None
    expected, got = grads(twin), grads(net)
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key].tobytes() == expected[key].tobytes(), key


def net_dtype(net):
    return next(iter(net.named_parameters()))[1].dtype


class Recorder:
    """The kernels a layer calls, passed through to the C kernels."""

    def __init__(self):
        self.names = []

    def __getattr__(self, name):
        function = getattr(_kernels, name)

        def call(*args, **kwargs):
            self.names.append(name)
            return function(*args, **kwargs)
        return call


@pytest.mark.parametrize("size", [64, 16], ids=["im2col", "whole batch"])
def test_the_first_convolution_computes_no_input_gradient(size):
    """GoogLeNet's first convolution (7x7, stride 2): col2im builds dL/dx
    from dL/dcols; without input_grad it is not called, and the layer's
    columns stay as they were (a second backward gives the same dL/dW)."""
    net = inception.googlenet(num_classes=10, variant="torchvision")
    conv = net.stages[0][1].conv
    assert isinstance(conv, Conv2d) and conv.kernel_size == (7, 7)
    x = np.random.default_rng(2).standard_normal((2, 3, size, size)).astype(np.float32)
    labels = np.array([1, 2])
    for input_grad in (True, False):
        conv.kernels = Recorder()
        train_step(net, x, labels, input_grad=input_grad)
        assert ("col2im" in conv.kernels.names) == input_grad, conv.kernels.names
    dy = np.random.default_rng(3).standard_normal(conv.output_shape(x.shape))
    dy = dy.astype(np.float32)
    results = []
    for _ in range(2):
        conv.zero_grad()
        conv._backward_parameters(dy)
        results.append(conv.grad_weight.tobytes())
    assert results[0] == results[1]


def test_sequential_skips_the_stages_before_the_first_with_parameters():
    rng = np.random.default_rng(3)
    net = Sequential(ReLU(), Linear(6, 5, rng=1), ReLU(), Linear(5, 4, rng=2))
    twin = copy.deepcopy(net)
    x = rng.standard_normal((3, 6)).astype(np.float32)
    dy = rng.standard_normal((3, 4)).astype(np.float32)
    for module in (net, twin):
        module.zero_grad()
        module.forward(x)
    assert twin.backward(dy).shape == x.shape
    net.layers[0]._saved = None   # the leading ReLU's backward would raise now
    assert net.backward(dy, input_grad=False) is None
    for key, value in grads(twin).items():
        assert grads(net)[key].tobytes() == value.tobytes(), key


def test_sequential_without_parameters_runs_no_backward():
    net = Sequential(ReLU(), MaxPool2d(2))
    x = np.random.default_rng(4).standard_normal((1, 2, 4, 4)).astype(np.float32)
    net.forward(x)
    for layer in net.layers:
        layer._saved = None   # any backward would raise
    assert net.backward(np.ones((1, 2, 2, 2), np.float32), input_grad=False) is None


@pytest.mark.parametrize("value", ["yes", 1, None, np.array([True])])
def test_input_grad_must_be_a_bool(value):
    net = Sequential(Linear(3, 2, rng=0))
    net.forward(np.ones((1, 3), np.float32))
    with pytest.raises(TypeError, match=r"input_grad must be a bool, got"):
        net.backward(np.ones((1, 2), np.float32), input_grad=value)
    small = inception.small_inception(num_classes=3, width=2)
    with pytest.raises(TypeError, match=r"input_grad must be a bool, got"):
        small.backward(np.ones((1, 3), np.float32), input_grad=value)


def test_a_failed_backward_without_input_grad_changes_no_gradient():
    """The last layer's backward runs and adds its gradients, then the
    first one's raises (its forward's state is removed): every gradient is
    put back."""
    rng = np.random.default_rng(5)
    net = Sequential(Linear(4, 3, rng=1), ReLU(), Linear(3, 2, rng=2))
    net.zero_grad()
    net.forward(rng.standard_normal((2, 4)).astype(np.float32))
    before = grads(net)
    net.layers[0]._saved = None
    with pytest.raises(RuntimeError):
        net.backward(np.ones((2, 2), np.float32), input_grad=False)
    for key, value in before.items():
        assert grads(net)[key].tobytes() == value.tobytes(), key


def test_an_empty_sequential_passes_dy_through_or_returns_none():
    net = Sequential()
    dy = np.arange(6, dtype=np.float32).reshape(2, 3)
    net.forward(dy)
    assert net.backward(dy).tobytes() == dy.tobytes()
    assert net.backward(dy, input_grad=False) is None
