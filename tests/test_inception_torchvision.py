"""bnkernels.nn.inception against torchvision's own GoogLeNet and Inception3.

Oracle: torchvision's model definitions (pure Python on torch.nn). A model is
built from a seeded random state (PyTorch's default initialization, BN
gamma/beta drawn around 1/0, running statistics from one training batch, so
every layer's activations are of order 1); its state_dict is loaded into ours
as it is, without renaming, and the outputs are compared.

Tolerances:
- float64 on both sides: the same arithmetic in different summation orders
  (im2col + BLAS against PyTorch's convolutions), relative differences of a
  few 1e-16 per layer, ~1e-13 after the ~100 layers here, so rtol = atol =
  1e-9 (logits and gradients are of order 1; measured 1e-14 to 5e-14) leaves
  a wide margin, while a difference in the architecture is an O(0.1) to O(1)
  error (GoogLeNet's logits: 0.23 with BN eps 1e-5 in place of 1e-3, 0.49
  with a 3x3 pool after 4e in place of the 2x2).
- float32 on both sides: each side rounds differently, so neither is the
  other's oracle. Both are compared with the float64 result of the same
  model, and ours must be as close to it as torchvision's own float32 result
  is, within a factor of 4 (measured: 0.9 to 1.6). The float32 error
  itself (about 1e-5 on logits of order 1) is then what float32 rounding
  gives, not a tolerance picked to pass.

torchvision from the package index is a CUDA build whose C extension does not
load next to the CPU torch; only its model definitions are needed here, so
the two operators its import registers fake kernels for are declared first
when the extension does not load (``_import_torchvision``). Without torch or
torchvision the tests skip, saying so.
"""
import copy
import importlib
import importlib.machinery
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from bnkernels.nn import inception
from bnkernels.nn.layers import Dropout

TORCHVISION_REASON = ("torchvision not installed: the torchvision oracle is skipped (pip "
                      "install --no-deps torchvision==0.28.0, the release made for torch 2.13)")
F64 = dict(rtol=1e-9, atol=1e-9)
FLOAT32_FACTOR = 4

# the operators torchvision 0.28's import registers fake (meta) kernels for;
# the Library must stay alive for the definitions to stay registered
_DECLARED = []


def _extension_loads(torch, package_dir):
    """Whether torchvision's C extension (its own operators) loads here."""
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = package_dir / f"_C{suffix}"
        if path.exists():
            try:
                torch.ops.load_library(str(path))
            except OSError:
                return False
            return True
    return False


def _import_torchvision():
    torch = pytest.importorskip("torch", reason="PyTorch not installed: the torchvision "
                                                "oracle is skipped")
    if "torchvision" not in sys.modules:
        spec = importlib.util.find_spec("torchvision")
        if spec is None:
            pytest.skip(TORCHVISION_REASON)
        if not _extension_loads(torch, Path(spec.origin).parent) and not _DECLARED:
            library = torch.library.Library("torchvision", "DEF")
            for name in ("nms", "qnms"):
                library.define(f"{name}(Tensor dets, Tensor scores, float iou_threshold) "
                               "-> Tensor")
            _DECLARED.append(library)
    try:
        import torchvision
    except ImportError as error:
        pytest.skip(f"torchvision does not import ({error}): the torchvision oracle is skipped")
    return torch, torchvision.models


@pytest.fixture(scope="module")
def tv():
    """(torch, torchvision.models)."""
    return _import_torchvision()


# ---------------------------------------------------------------------------
# the two networks: how to build each side, input size, aux outputs in order
# ---------------------------------------------------------------------------

NETWORKS = {
    "inception_v3": dict(
        size=299,
        ours=lambda **kw: inception.inception_v3(**kw),
        theirs=lambda models, **kw: models.inception_v3(weights=None, init_weights=False, **kw),
        aux=lambda out: [out.aux_logits]),
    "googlenet": dict(
        size=224,
        ours=lambda **kw: inception.googlenet(variant="torchvision", **kw),
        theirs=lambda models, **kw: models.googlenet(weights=None, init_weights=False, **kw),
        # torchvision returns (logits, aux2, aux1); ours (logits, [aux1, aux2])
        aux=lambda out: [out.aux_logits1, out.aux_logits2]),
}


def randomize_batch_norms(torch, model, x):
    """BN gamma in [0.5, 1.5], beta in [-0.5, 0.5], running statistics those
    of one training forward of x (cumulative average over one batch)."""
    batch_norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in batch_norms:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
            bn.reset_running_stats()
            bn.momentum = None
        model.train()
        model(x)
    for bn in batch_norms:
        bn.momentum = 0.1
    return model.eval()


_SEEDED = {}


def seeded_model(tv, name):
    """torchvision's model with aux heads, float32, eval mode, seeded random
    state; built once per network (tests change copies)."""
    if name not in _SEEDED:
        torch, models = tv
        torch.manual_seed(0)
        theirs = NETWORKS[name]["theirs"](models, aux_logits=True)
        size = NETWORKS[name]["size"]
        _SEEDED[name] = randomize_batch_norms(torch, theirs, torch.randn(2, 3, size, size))
    return _SEEDED[name]


@pytest.fixture(params=list(NETWORKS))
def seeded(request, tv):
    """(name, seeded_model(name)) for each network."""
    return request.param, seeded_model(tv, request.param)


def ours_from(name, state, **kw):
    net = NETWORKS[name]["ours"](aux_logits=True, **kw)
    net.load_state_dict({key: value.numpy() for key, value in state.items()})
    return net


def image(torch, name, batch, seed):
    size = NETWORKS[name]["size"]
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------
# state_dict: torchvision's keys, shapes and values
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("aux_logits", [True, False], ids=["aux", "no-aux"])
@pytest.mark.parametrize("name", list(NETWORKS))
def test_state_dict_has_torchvisions_keys_and_shapes(tv, name, aux_logits):
    _, models = tv
    theirs = NETWORKS[name]["theirs"](models, aux_logits=aux_logits).state_dict()
    ours = NETWORKS[name]["ours"](aux_logits=aux_logits).state_dict()
    assert {k: tuple(v.shape) for k, v in theirs.items()} == {k: v.shape for k, v in ours.items()}
    assert any(key.endswith("num_batches_tracked") for key in ours)
    assert any(key.startswith(("AuxLogits.", "aux1.")) for key in ours) == aux_logits


def test_torchvision_googlenet_has_torchvisions_published_counts():
    """torchvision's GoogLeNet_Weights meta: 6,624,904 parameters, 1.498
    GFLOPS (its _ops count multiply-accumulates); no torchvision needed."""
    net = inception.googlenet(variant="torchvision")
    assert net.num_parameters() == 6_624_904
    assert net.macs((1, 3, 224, 224)) / 1e9 == pytest.approx(1.498, abs=5e-4)
    assert net.output_shape((2, 3, 224, 224)) == (2, 1000)
    with pytest.raises(ValueError, match="variant must be 'paper' or 'torchvision', got 'caffe'"):
        inception.googlenet(variant="caffe")


def test_loads_torchvisions_state_as_numpy_arrays_or_tensors(seeded):
    name, theirs = seeded
    state = theirs.state_dict()
    for as_given in (lambda v: v.numpy(), lambda v: v):
        net = NETWORKS[name]["ours"](aux_logits=True)
        net.load_state_dict({key: as_given(value) for key, value in state.items()})
        ours = net.state_dict()
        assert ours.keys() == state.keys()
        for key, value in state.items():
            np.testing.assert_array_equal(ours[key], value.numpy(), err_msg=key)


# ---------------------------------------------------------------------------
# outputs
# ---------------------------------------------------------------------------

def normalized_image(torch, name, batch, seed):
    """An input as torchvision's transform_input expects, normalized with
    ImageNet's statistics, whose re-normalized version is standard normal
    (as the random state's BN running statistics were taken on)."""
    layer = inception.TransformInput()
    z = image(torch, name, batch, seed).numpy().astype(np.float64)
    return torch.from_numpy(((z - layer.shift.reshape(1, 3, 1, 1))
                             / layer.scale.reshape(1, 3, 1, 1)).astype(np.float32))


def test_eval_logits_match_torchvision_in_float32_and_float64(seeded):
    """Eval mode, batch 1, transform_input=True on both sides. float64: ours
    equals torchvision's to float64 rounding. float32: ours is as close to
    the float64 logits as torchvision's float32 logits are (factor 4)."""
    name, theirs = seeded
    torch = pytest.importorskip("torch")
    theirs = copy.deepcopy(theirs)
    theirs.transform_input = True
    x = normalized_image(torch, name, 1, seed=1)
    with torch.no_grad():
        their32 = theirs(x).numpy()
        exact = theirs.double()(x.double()).numpy()
    assert 0.1 < np.abs(exact).max() < 100, "logits of order 1"
    ours64 = ours_from(name, seeded[1].state_dict(), transform_input=True,
                       dtype=np.float64).eval()
    np.testing.assert_allclose(ours64.forward(x.double().numpy()), exact, **F64)
    ours32 = ours_from(name, seeded[1].state_dict(), transform_input=True).eval()
    logits = ours32.forward(x.numpy())
    assert logits.dtype == np.float32 and logits.shape == (1, 1000)
    their_error = np.abs(their32 - exact).max()
    assert 0 < their_error < 1e-3
    assert np.abs(logits - exact).max() <= FLOAT32_FACTOR * their_error


def test_training_outputs_aux_heads_running_statistics_and_gradients_match(seeded):
    """Training mode, float64, batch 2 (BN on batch statistics needs two
    values per channel: the aux head's last convolution gives 1x1 grids),
    transform_input=False, dropout off on both sides (its masks are random):
    main and auxiliary logits; every state entry after the forward (BN
    running statistics and num_batches_tracked updated alike); for GoogLeNet
    (the smaller network; Inception-v3's blocks are compared one by one
    below) also dx and every parameter's gradient of sum(logits * r) +
    sum(aux_i * q_i) against autograd, paired by name since ours are
    torchvision's."""
    name, theirs = seeded
    torch = pytest.importorskip("torch")
    theirs = copy.deepcopy(theirs).double().train()
    for module in theirs.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    ours = ours_from(name, theirs.state_dict(), dtype=np.float64).train()
    dropouts = [m for m in walk(ours) if isinstance(m, Dropout)]
    assert len(dropouts) == (1 if name == "inception_v3" else 3)
    for module in dropouts:
        module.p = 0.0
    gradients = name == "googlenet"
    x = image(torch, name, 2, seed=3).double().requires_grad_(gradients)
    with torch.set_grad_enabled(gradients):
        out = theirs(x)
    logits, aux = ours.forward(x.detach().numpy())
    np.testing.assert_allclose(logits, out.logits.detach().numpy(), **F64)
    their_aux = NETWORKS[name]["aux"](out)
    assert len(aux) == len(their_aux)
    for mine, expected in zip(aux, their_aux):
        np.testing.assert_allclose(mine, expected.detach().numpy(), **F64)
    state = ours.state_dict()
    for key, value in theirs.state_dict().items():
        np.testing.assert_allclose(state[key], value.numpy(), rtol=1e-9, atol=1e-12,
                                   err_msg=key)
    if not gradients:
        return
    rng = np.random.default_rng(5)
    r = rng.standard_normal(logits.shape)
    q = [rng.standard_normal(a.shape) for a in aux]
    loss = (out.logits * torch.from_numpy(r)).sum()
    for head, weight in zip(their_aux, q):
        loss = loss + (head * torch.from_numpy(weight)).sum()
    loss.backward()
    ours.zero_grad()
    np.testing.assert_allclose(ours.backward(r, q), x.grad.numpy(), **F64, err_msg="dx")
    grads = {key: p.grad.numpy() for key, p in theirs.named_parameters()}
    assert grads.keys() == {key for key, _, _ in ours.named_parameters()}
    for key, _, grad in ours.named_parameters():
        np.testing.assert_allclose(grad, grads[key], **F64, err_msg=key)


def walk(module):
    yield module
    for _, child in module.children():
        yield from walk(child)


# ---------------------------------------------------------------------------
# the blocks, one by one, forward and backward
# ---------------------------------------------------------------------------

def block_pair(models, name):
    """(our block, torchvision's block, input shape): torchvision's own
    classes at their Inception-v3 / GoogLeNet widths, on small grids."""
    v3 = importlib.import_module(models.__name__ + ".inception")
    g = importlib.import_module(models.__name__ + ".googlenet")
    kw = dict(dtype=np.float64, rng=0)
    pairs = {
        "InceptionA": lambda: (inception.InceptionV3A(192, 32, **kw), v3.InceptionA(192, 32),
                               (2, 192, 5, 5)),
        "InceptionB": lambda: (inception.InceptionV3Reduction.grid_35_to_17(288, **kw),
                               v3.InceptionB(288), (2, 288, 7, 7)),
        "InceptionC": lambda: (inception.InceptionV3B(768, 128, **kw), v3.InceptionC(768, 128),
                               (2, 768, 5, 5)),
        "InceptionD": lambda: (inception.InceptionV3Reduction.grid_17_to_8(768, **kw),
                               v3.InceptionD(768), (2, 768, 7, 7)),
        "InceptionE": lambda: (inception.InceptionV3C(1280, **kw), v3.InceptionE(1280),
                               (2, 1280, 3, 3)),
        "InceptionAux": lambda: (
            inception.inception_v3(aux_logits=True, num_classes=10,
                                   dtype=np.float64)["AuxLogits"],
            v3.InceptionAux(768, 10), (2, 768, 17, 17)),
        "GoogLeNet-Inception": lambda: (
            inception.InceptionV1(192, 64, 96, 128, 16, 32, 32, variant="torchvision", **kw),
            g.Inception(192, 64, 96, 128, 16, 32, 32), (2, 192, 7, 7)),
        "GoogLeNet-InceptionAux": lambda: (
            inception.googlenet(variant="torchvision", aux_logits=True, num_classes=10,
                                dtype=np.float64)["aux1"],
            g.InceptionAux(512, 10, dropout=0.0), (2, 512, 14, 14)),
    }
    return pairs[name]()


BLOCK_IDS = ["InceptionA", "InceptionB", "InceptionC", "InceptionD", "InceptionE",
             "InceptionAux", "GoogLeNet-Inception", "GoogLeNet-InceptionAux"]


@pytest.mark.parametrize("index", range(len(BLOCK_IDS)), ids=BLOCK_IDS)
def test_block_matches_torchvisions_forward_and_backward(tv, index):
    """float64: torchvision's block's state loaded into ours as it is; in
    training mode y, dx and every parameter gradient, in eval mode y (the
    eval-mode backward is compared in test_inception.py's torch.nn blocks)."""
    torch, models = tv
    torch.manual_seed(index)
    ours, theirs, shape = block_pair(models, BLOCK_IDS[index])
    theirs.double()
    randomize_batch_norms(torch, theirs, torch.randn(shape, dtype=torch.float64))
    ours.load_state_dict(theirs.state_dict())
    for module in walk(ours):
        if isinstance(module, Dropout):
            module.p = 0.0
    x = np.random.default_rng(index).standard_normal(shape)
    for training in (True, False):
        ours.train(training)
        theirs.train(training)
        y = ours.forward(x)
        tx = torch.tensor(x, requires_grad=True)
        ty = theirs(tx)
        np.testing.assert_allclose(y, ty.detach().numpy(), **F64)
        if not training:
            continue
        r = np.random.default_rng(index + 10).standard_normal(y.shape)
        ours.zero_grad()
        theirs.zero_grad()
        dx = ours.backward(r)
        ty.backward(torch.from_numpy(r))
        np.testing.assert_allclose(dx, tx.grad.numpy(), **F64, err_msg="dx")
        grads = {key: p.grad.numpy() for key, p in theirs.named_parameters()}
        assert grads.keys() == {key for key, _, _ in ours.named_parameters()}
        for key, _, grad in ours.named_parameters():
            np.testing.assert_allclose(grad, grads[key], **F64, err_msg=key)


# ---------------------------------------------------------------------------
# transform_input and adaptive pooling
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_transform_input_is_torchvisions_bit_for_bit(tv, dtype):
    """The same formula in the same precision: the same bits; the backward
    is the per-channel scale (autograd through torchvision's code)."""
    torch, models = tv
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 4)).astype(dtype)
    this = type("Stand-in", (), {"transform_input": True})()
    tx = torch.tensor(x, requires_grad=True)
    ty = models.GoogLeNet._transform_input(this, tx)
    layer = inception.TransformInput()
    y = layer.forward(x)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(
        y, models.Inception3._transform_input(this, torch.from_numpy(x)).numpy())
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(layer.backward(dy), tx.grad.numpy(), rtol=1e-6 if
                               dtype == np.float32 else 1e-15)


def test_transform_input_needs_three_channels():
    with pytest.raises(ValueError, match="in_channels must be 3, got 1"):
        inception.googlenet(in_channels=1, transform_input=True)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\) RGB inputs, got shape \(2, 4, 5, 5\)"):
        inception.TransformInput().forward(np.zeros((2, 4, 5, 5)))


@pytest.mark.parametrize("in_hw, out_hw", [((14, 14), (4, 4)), ((7, 9), (3, 4)),
                                           ((5, 5), (5, 5)), ((6, 3), (1, 1)),
                                           ((3, 2), (5, 4))])
def test_adaptive_avg_pool_matches_torch(in_hw, out_hw):
    """torch.nn.functional.adaptive_avg_pool2d and its autograd, float64
    (overlapping windows, output larger than input, global)."""
    torch = pytest.importorskip("torch", reason="PyTorch not installed")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, *in_hw))
    pool = inception.AdaptiveAvgPool2d(out_hw)
    y = pool.forward(x)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.adaptive_avg_pool2d(tx, out_hw)
    assert pool.output_shape(x.shape) == y.shape == tuple(ty.shape)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-13, atol=1e-15)
    dy = rng.standard_normal(y.shape)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(pool.backward(dy), tx.grad.numpy(), rtol=1e-13, atol=1e-15)


def test_to_torch_wires_torchvision_named_blocks_by_their_branches():
    """to_torch of a block whose submodules are its units (not its
    branches) computes the block: float64, eval mode."""
    torch = pytest.importorskip("torch", reason="PyTorch not installed")
    from bnkernels.torch import to_torch
    block = inception.InceptionV3C(6, c1x1=4, c3x3_reduce=3, c3x3=5, c3x3dbl_reduce=4,
                                   c3x3dbl_mid=3, c3x3dbl=2, pool_proj=3, dtype=np.float64,
                                   rng=0).eval()
    x = np.random.default_rng(1).standard_normal((2, 6, 5, 5))
    np.testing.assert_allclose(to_torch(block)(torch.from_numpy(x)).detach().numpy(),
                               block.forward(x), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------
# a state that does not fit raises and writes nothing
# ---------------------------------------------------------------------------

def _missing(state):
    del state["fc.bias"]
    return "fc.bias"


def _unexpected(state):
    state["fc.extra"] = state["fc.bias"]
    return "fc.extra"


def _wrong_shape(state):
    state["fc.weight"] = state["fc.weight"][:, :-1]
    return "fc.weight"


@pytest.mark.parametrize("spoil", [_missing, _unexpected, _wrong_shape],
                         ids=["missing", "unexpected", "wrong-shape"])
@pytest.mark.parametrize("name", list(NETWORKS))
def test_a_state_that_does_not_fit_raises_and_writes_nothing(name, spoil):
    """Another seed's state (its weights differ), spoiled in one key."""
    state = NETWORKS[name]["ours"](aux_logits=True, rng=1).state_dict()
    key = spoil(state)
    net = NETWORKS[name]["ours"](aux_logits=True, rng=0)
    before = net.state_dict()
    with pytest.raises((KeyError, ValueError, RuntimeError), match=key):
        net.load_state_dict(state)
    after = net.state_dict()
    for entry, value in before.items():
        assert np.array_equal(after[entry], value), f"{entry} was written"
