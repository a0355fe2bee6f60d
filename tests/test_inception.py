"""bnkernels.nn.inception: the Inception blocks and networks.

Oracles:
- backward: central finite differences in float64 of loss = sum(y * r) for a
  fixed random r, on tiny instances (2-3 channels per branch, 5x5 or 9x9
  grids, batch 2, BN in training mode): every entry of dx and two sampled
  entries of every parameter's gradient;
- PyTorch (when installed): each block written again here from torch.nn,
  following the papers and torchvision's source, loaded with our state_dict
  (strict: the same keys and shapes, so the same convolutions), then forward,
  dx and every parameter gradient compared in float64, training and eval mode;
  whole Inception-v3 and GoogLeNet assembled from those blocks;
- the papers' tables: GoogLeNet's Table 1 (params and ops per row), BN-Inception's
  Figure 5 (parameters recounted here by formula), torchvision's published
  Inception-v3 parameter counts.

Finite-difference tolerance: with h = 1e-6 in float64 the rounding error of a
difference quotient is about 1e-16 * |loss| / h ~ 1e-9 (|loss| < 100 here);
the truncation error h^2/6 * f''' is ~1e-12 for the smooth parts (BN), the
piecewise-linear parts (conv, pools, ReLU) have none unless a kink lies within
~h of a sample, which the fixed seeds avoid (deterministic: a kink would fail
every run, not randomly). rtol = 1e-6, atol = 1e-7 leaves two orders of
magnitude of margin while any wrong or missing term is an O(1) error.
PyTorch comparisons in float64: the same math in a different summation order,
so agreement to rtol = 1e-9 (atol 1e-10 for values near 0).
"""
import io

import numpy as np
import pytest
from finite_differences import finite_difference

from bnkernels.nn.inception import (
    InceptionBN, InceptionV1, InceptionV1Naive, InceptionV3A, InceptionV3B, InceptionV3C,
    InceptionV3Reduction, Network, bn_inception, googlenet, inception_v3, small_inception,
)
from bnkernels.nn.layers import Flatten, GlobalAvgPool2d, Linear, Sequential, SoftmaxCrossEntropy, \
    ConvBNReLU

FD_TOL = dict(rtol=1e-6, atol=1e-7)
TORCH_TOL = dict(rtol=1e-9, atol=1e-10)
TORCH_REASON = "PyTorch not installed (pip install .[torch]): the torch.nn oracle is skipped"

F64 = dict(dtype=np.float64)


def rand(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def check_gradients(module, x, seed=1, per_parameter=2):
    """module's backward at x against finite differences of sum(module(x) * r):
    all of dx, and `per_parameter` random entries of every parameter's gradient.

    Every bias is first set to +-[0.1, 0.5]: with its initial 0, a convolution
    over a window of ReLU outputs that are all 0 (common without BN) gives
    exactly 0, the ReLU's kink, where the one-sided derivatives differ and no
    finite difference agrees with either."""
    rng = np.random.default_rng(seed)
    for name, value, _ in module.named_parameters():
        if name.endswith("bias"):
            value[...] = rng.uniform(0.1, 0.5, value.shape) * rng.choice([-1, 1], value.shape)
    module.train()
    y = module.forward(x)
    r = rand(y.shape, seed)
    module.zero_grad()
    dx = module.backward(r.copy())
    assert dx.shape == x.shape and dx.dtype == x.dtype

    def loss():
        return float(np.sum(module.forward(x) * r))

    np.testing.assert_allclose(dx.reshape(-1), finite_difference(loss, x, range(x.size)),
                               **FD_TOL, err_msg="dx")
    params = module.named_parameters()
    assert params, "the module has parameters"
    for name, value, grad in params:
        picks = rng.choice(value.size, size=min(per_parameter, value.size), replace=False)
        np.testing.assert_allclose(grad.reshape(-1)[picks],
                                   finite_difference(loss, value, picks), **FD_TOL,
                                   err_msg=name)


# ---------------------------------------------------------------------------
# tiny instances of every block: (block, input shape, expected output shape)
# ---------------------------------------------------------------------------

def tiny_blocks():
    """(id, factory, input shape, output shape); channel counts small and distinct,
    so a branch wired to the wrong width fails."""
    return [
        ("v1-naive", lambda: InceptionV1Naive(3, 2, 3, 4, rng=0, **F64),
         (2, 3, 5, 5), (2, 2 + 3 + 4 + 3, 5, 5)),
        ("v1-naive-bn", lambda: InceptionV1Naive(3, 2, 3, 4, batch_norm=True, rng=0, **F64),
         (2, 3, 5, 5), (2, 12, 5, 5)),
        ("v1", lambda: InceptionV1(3, 2, 2, 3, 2, 4, 2, rng=0, **F64),
         (2, 3, 5, 5), (2, 2 + 3 + 4 + 2, 5, 5)),
        ("v1-bn", lambda: InceptionV1(3, 2, 2, 3, 2, 4, 2, batch_norm=True, rng=0, **F64),
         (2, 3, 5, 5), (2, 11, 5, 5)),
        ("bn-avg", lambda: InceptionBN(3, 2, 2, 3, 2, 4, 2, rng=0, **F64),
         (2, 3, 5, 5), (2, 2 + 3 + 4 + 2, 5, 5)),
        ("bn-max-proj", lambda: InceptionBN(3, 2, 2, 3, 2, 4, 2, pool="max", rng=0, **F64),
         (2, 3, 5, 5), (2, 11, 5, 5)),
        ("bn-no-bn", lambda: InceptionBN(3, 2, 2, 3, 2, 4, 2, batch_norm=False, rng=0, **F64),
         (2, 3, 5, 5), (2, 11, 5, 5)),
        ("bn-stride2", lambda: InceptionBN(3, 0, 2, 3, 2, 4, None, stride=2, rng=0, **F64),
         (2, 3, 5, 5), (2, 3 + 4 + 3, 3, 3)),
        ("v3a", lambda: InceptionV3A(3, 2, c1x1=2, c5x5_reduce=2, c5x5=3, c3x3dbl_reduce=2,
                                     c3x3dbl=4, rng=0, **F64),
         (2, 3, 5, 5), (2, 2 + 3 + 4 + 2, 5, 5)),
        ("v3a-paper-3x3", lambda: InceptionV3A(3, 2, c1x1=2, c5x5_reduce=2, c5x5=3,
                                               c3x3dbl_reduce=2, c3x3dbl=4, kernel_5x5=3,
                                               rng=0, **F64),
         (2, 3, 5, 5), (2, 11, 5, 5)),
        ("v3b-n3", lambda: InceptionV3B(3, 2, c1x1=2, c7x7=3, pool_proj=2, n=3, rng=0, **F64),
         (2, 3, 5, 5), (2, 2 + 3 + 3 + 2, 5, 5)),
        ("v3b-n7", lambda: InceptionV3B(2, 2, c1x1=2, c7x7=3, pool_proj=2, rng=0, **F64),
         (2, 2, 9, 9), (2, 10, 9, 9)),
        ("v3c", lambda: InceptionV3C(3, c1x1=2, c3x3_reduce=2, c3x3=3, c3x3dbl_reduce=2,
                                     c3x3dbl_mid=3, c3x3dbl=2, pool_proj=2, rng=0, **F64),
         (2, 3, 5, 5), (2, 2 + 2 * 3 + 2 * 2 + 2, 5, 5)),
        ("v3-reduction-35to17", lambda: InceptionV3Reduction(3, 3, 2, 4, rng=0, **F64),
         (2, 3, 9, 9), (2, 3 + 4 + 3, 4, 4)),
        ("v3-reduction-17to8", lambda: InceptionV3Reduction(2, 3, 2, 4, c3x3_reduce=2,
                                                            cdbl_mid=3, n=7, rng=0, **F64),
         (2, 2, 9, 9), (2, 3 + 4 + 2, 4, 4)),
    ]


TINY = tiny_blocks()


@pytest.mark.parametrize("factory, in_shape, out_shape", [t[1:] for t in TINY],
                         ids=[t[0] for t in TINY])
def test_block_output_shape_matches_the_branch_widths(factory, in_shape, out_shape):
    block = factory()
    assert block.output_shape(in_shape) == out_shape
    y = block.forward(rand(in_shape))
    assert y.shape == out_shape and y.dtype == np.float64


@pytest.mark.parametrize("factory, in_shape, out_shape", [t[1:] for t in TINY],
                         ids=[t[0] for t in TINY])
def test_block_backward_matches_finite_differences(factory, in_shape, out_shape):
    check_gradients(factory(), rand(in_shape, seed=2))


def test_float32_blocks_run_and_keep_dtype():
    x = rand((2, 8, 9, 9), dtype=np.float32)
    for block in (InceptionV1(8, 2, 2, 3, 2, 4, 2, rng=0), InceptionBN(8, 2, 2, 3, 2, 4, 2, rng=0),
                  InceptionBN(8, 0, 2, 3, 2, 4, 0, stride=2, rng=0), InceptionV3A(8, 2, rng=0),
                  InceptionV3B(8, 4, rng=0), InceptionV3C(8, rng=0),
                  InceptionV3Reduction.grid_35_to_17(8, rng=0),
                  InceptionV3Reduction.grid_17_to_8(8, rng=0),
                  InceptionBN(8, 2, 2, 3, 2, 4, 2, numerics="darknet", rng=0),
                  InceptionV3A(8, 2, numerics="darknet-alexeyab", rng=0)):
        y = block.forward(x)
        assert y.dtype == np.float32 and y.shape == block.output_shape(x.shape)
        dx = block.backward(np.ones_like(y))
        assert dx.dtype == np.float32 and dx.shape == x.shape and np.isfinite(dx).all()


def test_stride2_module_rejects_a_1x1_branch_or_a_projection():
    with pytest.raises(ValueError, match="stride-2 module has no 1x1 branch"):
        InceptionBN(8, 4, 2, 3, 2, 4, 0, stride=2)
    with pytest.raises(ValueError, match="pool_proj=2"):
        InceptionBN(8, 0, 2, 3, 2, 4, 2, stride=2)
    with pytest.raises(ValueError, match="pool must be 'avg' or 'max'"):
        InceptionBN(8, 2, 2, 3, 2, 4, 2, pool="min")


def test_numerics_eps_and_momentum_reach_every_batchnorm():
    block = InceptionBN(4, 2, 2, 3, 2, 4, 2, numerics="darknet", eps=1e-4, momentum=0.3, rng=0)
    bns = [m for m in walk(block) if type(m).__name__ == "BatchNorm2d"]
    assert len(bns) == 7  # 1x1; reduce, 3x3; reduce, 3x3, 3x3; projection
    assert all((bn.numerics, bn.eps, bn.momentum) == ("darknet", 1e-4, 0.3) for bn in bns)
    v3 = [m for m in walk(InceptionV3C(4, rng=0)) if type(m).__name__ == "BatchNorm2d"]
    assert len(v3) == 9 and all(bn.eps == 1e-3 for bn in v3)  # the reference implementations'


def test_googlenet_with_batch_norm_has_the_same_convolutions_plus_bn():
    plain, with_bn = googlenet(), googlenet(batch_norm=True)
    assert conv_shapes(plain) == conv_shapes(with_bn) and len(conv_shapes(plain)) == 57
    bns = [m for m in walk(with_bn) if type(m).__name__ == "BatchNorm2d"]
    assert len(bns) == 57 and not any(type(m).__name__ == "BatchNorm2d" for m in walk(plain))


def walk(module):
    yield module
    for _, child in module.children():
        yield from walk(child)


def test_same_seed_same_weights_and_branch_names_in_keys():
    a, b = InceptionV3A(8, 4, rng=5), InceptionV3A(8, 4, rng=5)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(np.array_equal(sa[k], sb[k]) for k in sa)
    # Inception-v3 blocks name their units as torchvision's Inception3 does
    assert "branch3x3dbl_3.conv.weight" in sa and "branch_pool.bn.running_var" in sa
    assert a.branch_pool is a.branches[3][1] and a.branch3x3dbl_1 is a.branches[2][0]
    # GoogLeNet's module names its branches (paper: branch1x1..., torchvision: branch1...)
    paper = InceptionV1(8, 2, 2, 3, 2, 4, 2, rng=0).state_dict()
    tv = InceptionV1(8, 2, 2, 3, 2, 4, 2, variant="torchvision", rng=0).state_dict()
    assert "branch5x5.1.conv.weight" in paper and "branch_pool.1.conv.bias" in paper
    assert "branch3.1.conv.weight" in tv and "branch4.1.bn.running_var" in tv
    assert paper["branch5x5.1.conv.weight"].shape == (4, 2, 5, 5)
    assert tv["branch3.1.conv.weight"].shape == (4, 2, 3, 3)  # torchvision's 3x3


def test_block_refuses_a_branch_module_outside_its_named_submodules():
    from bnkernels.nn.inception import InceptionBlock
    from bnkernels.nn.layers import MaxPool2d
    conv, pool = ConvBNReLU(2, 3, 1, rng=0), MaxPool2d(3, stride=1, padding=1)
    with pytest.raises(ValueError, match="MaxPool2d in a branch is in no named submodule"):
        InceptionBlock([conv, Sequential(pool, conv)], {}, [("conv", conv)])


# ---------------------------------------------------------------------------
# networks: the auxiliary heads
# ---------------------------------------------------------------------------

def test_network_backward_adds_the_aux_head_gradient_at_its_stage():
    net = Network(
        [("a", ConvBNReLU(2, 3, 3, padding=1, rng=0, **F64)),
         ("b", ConvBNReLU(3, 4, 3, stride=2, padding=1, rng=1, **F64)),
         ("pool", GlobalAvgPool2d()), ("flat", Flatten()), ("fc", Linear(4, 3, rng=2, **F64))],
        aux=[("aux", "a", Sequential(GlobalAvgPool2d(), Flatten(), Linear(3, 2, rng=3, **F64)))])
    x = rand((2, 2, 5, 5), seed=4)
    logits, (aux,) = net.forward(x)
    assert logits.shape == (2, 3) and aux.shape == (2, 2)
    r, q = rand(logits.shape, 5), rand(aux.shape, 6)
    net.zero_grad()
    dx = net.backward(r, [q])

    def loss():
        y, (a,) = net.forward(x)
        return float(np.sum(y * r) + np.sum(a * q))

    np.testing.assert_allclose(dx.reshape(-1), finite_difference(loss, x, range(x.size)),
                               **FD_TOL)
    for name, value, grad in net.named_parameters():
        np.testing.assert_allclose(grad.reshape(-1)[:2], finite_difference(loss, value, [0, 1]),
                                   **FD_TOL, err_msg=name)
    with pytest.raises(ValueError, match="one gradient"):
        net.forward(x)
        net.backward(r)
    net.eval()
    assert net.forward(x).shape == (2, 3), "eval mode: main logits only, heads skipped"


# ---------------------------------------------------------------------------
# GoogLeNet against its Table 1
# ---------------------------------------------------------------------------

# Table 1 of Szegedy et al. 2014: params in K = 1024 weights (3a: 163,328 / 1024 =
# 159.5), ops in millions of multiply-accumulates (3a: 163,328 * 28 * 28 = 128.0M).
# conv2 is the 1x1 reduce and the 3x3 together.
TABLE1 = {"conv1": (2.7, 34), "conv2": (112, 360), "inception3a": (159, 128),
          "inception3b": (380, 304), "inception4a": (364, 73), "inception4b": (437, 88),
          "inception4c": (463, 100), "inception4d": (580, 119), "inception4e": (840, 170),
          "inception5a": (1072, 54), "inception5b": (1388, 71), "fc": (1000, 1)}


def table1_rows(net, shape):
    rows = {}
    for child, child_shape in net._child_inputs(shape):
        name = next(n for n, c in net.children() if c is child)
        key = "conv2" if name.startswith("conv2") else name
        weights, macs = rows.get(key, (0, 0))
        rows[key] = (weights + child.num_weights(), macs + child.macs(child_shape))
    return rows


def test_googlenet_rows_match_table1():
    """Per row, MACs within 1.5% of Table 1's ops, weights within 8% of its
    params. Two rows are left out: conv1 (Table 1's 2.7K params / 34M ops
    cannot be a 7x7 convolution of 3 channels to 64: 9,408 weights, 118M MACs
    at 112x112) and 5a's ops (54M; its own filter counts give 1,042,432
    weights * 49 = 51.1M). The params column is looser because Table 1 is not
    consistent with its own ops column there (4c: 463K params * 196 = 91M, but
    100M ops; our 497.5K * 196 = 99.85M)."""
    rows = table1_rows(googlenet(), (1, 3, 224, 224))
    for name, (params_k, ops_m) in TABLE1.items():
        weights, macs = rows[name]
        if name == "conv1":
            assert (weights, macs) == (7 * 7 * 3 * 64, 7 * 7 * 3 * 64 * 112 * 112)
            continue
        if name != "inception5a":
            assert macs / 1e6 == pytest.approx(ops_m, rel=0.015, abs=0.5), name  # whole M
        assert weights / 1024 == pytest.approx(params_k, rel=0.08), name


def test_googlenet_totals_match_table1():
    """Table 1's totals: about 6.8M parameters, classifier included (its
    linear row is 1000K = 1024 * 1000 weights; the rows sum to 6,797.7K), and
    about 1.5G ops (rows sum to 1,502M). Ours: 6,990,272 weights (3% more:
    the per-row differences above), 6,998,552 with biases; 1,583M MACs, of
    which conv1's 118M against Table 1's 34M explain the difference: without
    conv1 the totals agree within 1% (1,465M against 1,468M)."""
    net = googlenet()
    shape = (1, 3, 224, 224)
    assert net.num_weights() == 6_990_272
    assert net.num_weights() / 1024 == pytest.approx(sum(p for p, _ in TABLE1.values()),
                                                     rel=0.03)
    biases = 64 + 64 + 192 + sum(c1 + c3r + c3 + c5r + c5 + pp for c1, c3r, c3, c5r, c5, pp in
                                 [row[2:] for row in GOOGLENET_ROWS]) + 1000
    assert net.num_parameters() == net.num_weights() + biases
    macs = net.macs(shape)
    assert macs / 1e9 == pytest.approx(1.5, rel=0.06)
    conv1 = 7 * 7 * 3 * 64 * 112 * 112
    table_without_conv1 = sum(o for name, (_, o) in TABLE1.items() if name != "conv1")
    assert (macs - conv1) / 1e6 == pytest.approx(table_without_conv1, rel=0.01)


GOOGLENET_ROWS = [  # name, in, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj
    ("3a", 192, 64, 96, 128, 16, 32, 32), ("3b", 256, 128, 128, 192, 32, 96, 64),
    ("4a", 480, 192, 96, 208, 16, 48, 64), ("4b", 512, 160, 112, 224, 24, 64, 64),
    ("4c", 512, 128, 128, 256, 24, 64, 64), ("4d", 512, 112, 144, 288, 32, 64, 64),
    ("4e", 528, 256, 160, 320, 32, 128, 128), ("5a", 832, 256, 160, 320, 32, 128, 128),
    ("5b", 832, 384, 192, 384, 48, 128, 128)]


def test_googlenet_aux_heads_add_their_hand_counted_parameters():
    """Each auxiliary classifier: 1x1 conv to 128 (+bias), FC 2048 -> 1024
    (+bias), linear 1024 -> 1000 (+bias), on 512 (4a) and 528 (4d) channels."""
    head = [in_ch * 128 + 128 + 2048 * 1024 + 1024 + 1024 * 1000 + 1000 for in_ch in (512, 528)]
    assert googlenet(aux_logits=True).num_parameters() == googlenet().num_parameters() + sum(head)


def test_googlenet_forward_224_batch2_float32_is_finite():
    net = googlenet(aux_logits=True).eval()
    x = rand((2, 3, 224, 224), dtype=np.float32)
    y = net.forward(x)
    assert y.shape == (2, 1000) and y.dtype == np.float32 and np.isfinite(y).all()
    net.train()
    logits, aux = net.forward(x)
    assert logits.shape == (2, 1000) and [a.shape for a in aux] == [(2, 1000)] * 2
    assert np.isfinite(logits).all() and all(np.isfinite(a).all() for a in aux)
    dx = net.backward(np.ones_like(logits), [0.3 * np.ones_like(a) for a in aux])
    assert dx.shape == x.shape and np.isfinite(dx).all()


# ---------------------------------------------------------------------------
# BN-Inception and Inception-v3 parameter counts
# ---------------------------------------------------------------------------

BN_ROWS = [  # Figure 5: in, #1x1, #3x3 reduce, #3x3, double reduce, double, pool proj
    (192, 64, 64, 64, 64, 96, 32), (256, 64, 64, 96, 64, 96, 64),
    (320, 0, 128, 160, 64, 96, 0), (576, 224, 64, 96, 96, 128, 128),
    (576, 192, 96, 128, 96, 128, 128), (576, 160, 128, 160, 128, 160, 128),
    (608, 96, 128, 192, 160, 192, 128), (608, 0, 128, 192, 192, 256, 0),
    (1056, 352, 192, 320, 160, 224, 128), (1024, 352, 192, 320, 192, 224, 128)]


def test_bn_inception_parameters_recounted_from_figure5():
    """Weights by formula from Figure 5's filter counts; BN adds gamma and
    beta for every convolution's output channels. 11.3M: plausible against
    GoogLeNet's 7.0M (the double 3x3 branch is wider than the 5x5 one, the
    4x and 5x modules are larger); the paper gives no total. Figure 5's depth
    column says 576 after 4c/4d but the filter counts give 608 (and 1056 after
    4e): 4d and 5a read 608 and 1056 channels here, as the Caffe model."""
    weights = 7 * 7 * 3 * 64 + 64 * 64 + 9 * 64 * 192 + 1024 * 1000
    bn = 2 * (64 + 64 + 192)
    for c_in, c1, r3, c3, rd, d, pp in BN_ROWS:
        weights += c_in * (c1 + r3 + rd + pp) + 9 * (r3 * c3 + rd * d + d * d)
        bn += 2 * (c1 + r3 + c3 + rd + 2 * d + pp)
    net = bn_inception()
    assert net.num_weights() == weights == 11_264_192
    assert net.num_parameters() == weights + bn + 1000
    assert 10e6 < net.num_parameters() < 14e6
    assert net.output_shape((2, 3, 224, 224)) == (2, 1000)
    assert net["inception4e"].output_shape((1, 608, 14, 14)) == (1, 1056, 7, 7)


def test_inception_v3_parameters_are_torchvisions():
    """torchvision's inception_v3: 27,161,264 parameters with the auxiliary
    classifier and 23,834,568 without (the aux head: 768*128 + 128*768*25 +
    768*1000 weights, 1000 biases, BN 2*(128 + 768): 3,326,696). Counts are
    weights + BN gamma/beta + the linear layers' biases (no running stats)."""
    aux = 768 * 128 + 128 * 768 * 25 + 768 * 1000 + 1000 + 2 * (128 + 768)
    assert aux == 3_326_696
    net = inception_v3(aux_logits=True)
    assert net.num_parameters() == 23_834_568 + aux
    assert net.num_parameters() - net["AuxLogits"].num_parameters() == 23_834_568
    shapes = {name: net[name].output_shape
              for name in ("Mixed_5b", "Mixed_6a", "Mixed_7a", "Mixed_7c")}
    assert shapes["Mixed_5b"]((1, 192, 35, 35)) == (1, 256, 35, 35)
    assert shapes["Mixed_6a"]((1, 288, 35, 35)) == (1, 768, 17, 17)
    assert shapes["Mixed_7a"]((1, 768, 17, 17)) == (1, 1280, 8, 8)
    assert shapes["Mixed_7c"]((1, 2048, 8, 8)) == (1, 2048, 8, 8)
    assert net.output_shape((2, 3, 299, 299)) == (2, 1000)


# ---------------------------------------------------------------------------
# summary
# ---------------------------------------------------------------------------

def parse_number(cell):
    return int(cell.replace(",", ""))


@pytest.mark.parametrize("build, shape", [(googlenet, (1, 3, 224, 224)),
                                          (lambda: inception_v3(aux_logits=True),
                                           (1, 3, 299, 299)),
                                          (lambda: InceptionBN(16, 8, 8, 8, 8, 8, 8, rng=0),
                                           (2, 16, 9, 9))],
                         ids=["googlenet", "inception_v3", "InceptionBN"])
def test_summary_rows_and_totals_equal_the_counts(build, shape):
    net = build()
    out = io.StringIO()
    text = net.summary(shape, file=out)
    assert out.getvalue() == text + "\n"
    lines = text.splitlines()
    header = lines[0].split()
    assert header[:2] == ["name", "type"] and header[-3:] == ["weights", "params", "MACs"]
    rows = [line.split() for line in lines[2:] if line and not line.startswith(("-", "input"))]
    body, total = rows[:-1], rows[-1]
    assert [row[0] for row in body] == [name for name, _ in net.children()]
    assert total[0] == "total"
    counts = [[parse_number(c) for c in row[-3:]] for row in body]
    expected = [net.num_weights(), net.num_parameters(), net.macs(shape)]
    assert [parse_number(c) for c in total[-3:]] == expected
    assert [sum(column) for column in zip(*counts)] == expected


def test_googlenet_summary_shows_table1_columns():
    text = googlenet().summary((1, 3, 224, 224), file=io.StringIO())
    header = text.splitlines()[0]
    for column in ("#1x1", "#3x3 reduce", "#3x3", "#5x5 reduce", "#5x5", "pool proj",
                   "patch/stride", "output"):
        assert column in header
    row = next(line for line in text.splitlines() if line.startswith("inception4e"))
    assert row.split()[3:10] == ["14x14x832", "256", "160", "320", "32", "128", "128"]
    assert next(line for line in text.splitlines()
                if line.startswith("conv1")).split()[1:4] == ["conv+ReLU", "7x7/2", "112x112x64"]


# ---------------------------------------------------------------------------
# small_inception: the network trained on the 8x8 digits
# ---------------------------------------------------------------------------

def conv_shapes(net):
    return [(name, value.shape) for name, value, _ in net.named_parameters()
            if name.endswith("conv.weight")]


def test_small_inception_with_and_without_bn_has_the_same_convolutions():
    with_bn, without = small_inception(), small_inception(batch_norm=False)
    assert conv_shapes(with_bn) == conv_shapes(without)
    assert len(conv_shapes(with_bn)) == 1 + 7 + 5 + 7  # stem, 3 modules
    assert with_bn.num_weights() == without.num_weights()
    names = [name for name, _, _ in without.named_parameters()]
    assert not any(".bn." in name for name in names) and "stem.conv.bias" in names
    assert with_bn.output_shape((64, 1, 8, 8)) == (64, 10)
    assert with_bn["inception2"].output_shape((64, 64, 8, 8)) == (64, 128, 4, 4)


@pytest.mark.parametrize("batch_norm", [True, False], ids=["bn", "no-bn"])
def test_small_inception_trains_a_step_in_float32(batch_norm):
    net = small_inception(batch_norm=batch_norm)
    loss = SoftmaxCrossEntropy()
    x = rand((16, 1, 8, 8), dtype=np.float32)
    labels = np.arange(16) % 10
    value = loss(net.forward(x), labels)
    assert np.isfinite(value)
    dx = net.backward(loss.backward())
    assert dx.shape == x.shape and dx.dtype == np.float32
    assert all(np.isfinite(g).all() for _, g in net.parameters())
    assert any(np.abs(g).max() > 0 for _, g in net.parameters())


@pytest.mark.parametrize("batch_norm", [True, False], ids=["bn", "no-bn"])
def test_small_inception_backward_matches_finite_differences(batch_norm):
    net = small_inception(width=2, batch_norm=batch_norm, dtype=np.float64, rng=3)
    check_gradients(net, rand((2, 1, 8, 8), seed=4), per_parameter=1)


# ---------------------------------------------------------------------------
# PyTorch: the same blocks written from torch.nn
# ---------------------------------------------------------------------------

def torch_blocks(torch):
    """Inception blocks from torch.nn, after the papers and torchvision's source;
    submodule names chosen to give our state_dict keys."""
    nn = torch.nn

    class Basic(nn.Module):  # torchvision's BasicConv2d (bias without BN)
        def __init__(self, cin, cout, kernel, stride=1, padding=0, bn=True, eps=1e-3):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, bias=not bn)
            if bn:
                self.bn = nn.BatchNorm2d(cout, eps=eps)
            self.use_bn = bn

        def forward(self, x):
            x = self.conv(x)
            return torch.relu(self.bn(x) if self.use_bn else x)

    class Cat(nn.Module):
        def __init__(self, *branches):
            super().__init__()
            for name, module in branches:
                self.add_module(name, module)

        def forward(self, x):
            return torch.cat([m(x) for m in self.children()], 1)

    S = nn.Sequential

    def v1_naive(cin, c1, c3, c5, bn):
        return Cat(("branch1x1", Basic(cin, c1, 1, bn=bn)),
                   ("branch3x3", Basic(cin, c3, 3, padding=1, bn=bn)),
                   ("branch5x5", Basic(cin, c5, 5, padding=2, bn=bn)),
                   ("branch_pool", nn.MaxPool2d(3, 1, 1)))

    def v1(cin, c1, r3, c3, r5, c5, pp, bn, eps=1e-5):
        return Cat(("branch1x1", Basic(cin, c1, 1, bn=bn, eps=eps)),
                   ("branch3x3", S(Basic(cin, r3, 1, bn=bn, eps=eps),
                                   Basic(r3, c3, 3, padding=1, bn=bn, eps=eps))),
                   ("branch5x5", S(Basic(cin, r5, 1, bn=bn, eps=eps),
                                   Basic(r5, c5, 5, padding=2, bn=bn, eps=eps))),
                   ("branch_pool", S(nn.MaxPool2d(3, 1, 1), Basic(cin, pp, 1, bn=bn, eps=eps))))

    def bn_module(cin, c1, r3, c3, rd, d, pp, pool, stride, eps):
        pooling = (nn.AvgPool2d if pool == "avg" else nn.MaxPool2d)(3, stride, 1)
        branches = [("branch1x1", Basic(cin, c1, 1, eps=eps))] if c1 else []
        branches += [("branch3x3", S(Basic(cin, r3, 1, eps=eps),
                                     Basic(r3, c3, 3, stride, 1, eps=eps))),
                     ("branch3x3dbl", S(Basic(cin, rd, 1, eps=eps), Basic(rd, d, 3, 1, 1, eps=eps),
                                        Basic(d, d, 3, stride, 1, eps=eps))),
                     ("branch_pool", S(pooling, Basic(cin, pp, 1, eps=eps)) if pp else pooling)]
        return Cat(*branches)

    class Wired(nn.Module):
        """torchvision's Inception-v3 blocks: the units are attributes, named
        one by one; branches list the units' names in order (a tuple: run on
        the same input and concatenated), pools as modules."""

        def __init__(self, units, *branches):
            super().__init__()
            for name, module in units:
                self.add_module(name, module)
            self.wiring = branches

        def run(self, spec, x):
            if isinstance(spec, str):
                return getattr(self, spec)(x)
            if isinstance(spec, list):
                for part in spec:
                    x = self.run(part, x)
                return x
            if isinstance(spec, tuple):
                return torch.cat([self.run(part, x) for part in spec], 1)
            return spec(x)

        def forward(self, x):
            return torch.cat([self.run(branch, x) for branch in self.wiring], 1)

    def v3a(cin, pool_features, c1=64, r5=48, c5=64, rd=64, d=96):  # torchvision InceptionA
        return Wired([("branch1x1", Basic(cin, c1, 1)), ("branch5x5_1", Basic(cin, r5, 1)),
                      ("branch5x5_2", Basic(r5, c5, 5, padding=2)),
                      ("branch3x3dbl_1", Basic(cin, rd, 1)),
                      ("branch3x3dbl_2", Basic(rd, d, 3, padding=1)),
                      ("branch3x3dbl_3", Basic(d, d, 3, padding=1)),
                      ("branch_pool", Basic(cin, pool_features, 1))],
                     "branch1x1", ["branch5x5_1", "branch5x5_2"],
                     ["branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"],
                     [nn.AvgPool2d(3, 1, 1), "branch_pool"])

    def v3b(cin, c7, c1=192, out7=192, pp=192):  # torchvision InceptionC
        return Wired([("branch1x1", Basic(cin, c1, 1)), ("branch7x7_1", Basic(cin, c7, 1)),
                      ("branch7x7_2", Basic(c7, c7, (1, 7), padding=(0, 3))),
                      ("branch7x7_3", Basic(c7, out7, (7, 1), padding=(3, 0))),
                      ("branch7x7dbl_1", Basic(cin, c7, 1)),
                      ("branch7x7dbl_2", Basic(c7, c7, (7, 1), padding=(3, 0))),
                      ("branch7x7dbl_3", Basic(c7, c7, (1, 7), padding=(0, 3))),
                      ("branch7x7dbl_4", Basic(c7, c7, (7, 1), padding=(3, 0))),
                      ("branch7x7dbl_5", Basic(c7, out7, (1, 7), padding=(0, 3))),
                      ("branch_pool", Basic(cin, pp, 1))],
                     "branch1x1", ["branch7x7_1", "branch7x7_2", "branch7x7_3"],
                     [f"branch7x7dbl_{i}" for i in range(1, 6)],
                     [nn.AvgPool2d(3, 1, 1), "branch_pool"])

    def v3c(cin, c1=320, r3=384, c3=384, rd=448, dm=384, d=384, pp=192):  # InceptionE
        return Wired([("branch1x1", Basic(cin, c1, 1)), ("branch3x3_1", Basic(cin, r3, 1)),
                      ("branch3x3_2a", Basic(r3, c3, (1, 3), padding=(0, 1))),
                      ("branch3x3_2b", Basic(r3, c3, (3, 1), padding=(1, 0))),
                      ("branch3x3dbl_1", Basic(cin, rd, 1)),
                      ("branch3x3dbl_2", Basic(rd, dm, 3, padding=1)),
                      ("branch3x3dbl_3a", Basic(dm, d, (1, 3), padding=(0, 1))),
                      ("branch3x3dbl_3b", Basic(dm, d, (3, 1), padding=(1, 0))),
                      ("branch_pool", Basic(cin, pp, 1))],
                     "branch1x1", ["branch3x3_1", ("branch3x3_2a", "branch3x3_2b")],
                     ["branch3x3dbl_1", "branch3x3dbl_2", ("branch3x3dbl_3a", "branch3x3dbl_3b")],
                     [nn.AvgPool2d(3, 1, 1), "branch_pool"])

    def v3_35to17(cin, c3=384, rd=64, d=96):  # torchvision InceptionB
        return Wired([("branch3x3", Basic(cin, c3, 3, stride=2)),
                      ("branch3x3dbl_1", Basic(cin, rd, 1)),
                      ("branch3x3dbl_2", Basic(rd, d, 3, padding=1)),
                      ("branch3x3dbl_3", Basic(d, d, 3, stride=2))],
                     "branch3x3", ["branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"],
                     nn.MaxPool2d(3, 2))

    def v3_17to8(cin, r3=192, c3=320, r7=192, c7=192):  # torchvision InceptionD
        return Wired([("branch3x3_1", Basic(cin, r3, 1)),
                      ("branch3x3_2", Basic(r3, c3, 3, stride=2)),
                      ("branch7x7x3_1", Basic(cin, r7, 1)),
                      ("branch7x7x3_2", Basic(r7, c7, (1, 7), padding=(0, 3))),
                      ("branch7x7x3_3", Basic(c7, c7, (7, 1), padding=(3, 0))),
                      ("branch7x7x3_4", Basic(c7, c7, 3, stride=2))],
                     ["branch3x3_1", "branch3x3_2"],
                     [f"branch7x7x3_{i}" for i in range(1, 5)], nn.MaxPool2d(3, 2))

    return dict(Basic=Basic, Cat=Cat, v1_naive=v1_naive, v1=v1, bn=bn_module, v3a=v3a,
                v3b=v3b, v3c=v3c, v3_35to17=v3_35to17, v3_17to8=v3_17to8)


def torch_pairs(t):
    """(id, our block, torch block, input shape): torchvision's channel
    counts scaled down (the wiring is what is compared) and two at full size."""
    return [
        ("v1-naive", InceptionV1Naive(6, 3, 4, 5, rng=0, **F64), t["v1_naive"](6, 3, 4, 5, False),
         (2, 6, 7, 7)),
        ("v1", InceptionV1(6, 3, 2, 4, 2, 5, 3, rng=0, **F64),
         t["v1"](6, 3, 2, 4, 2, 5, 3, False), (2, 6, 7, 7)),
        ("v1-bn", InceptionV1(6, 3, 2, 4, 2, 5, 3, batch_norm=True, rng=0, **F64),
         t["v1"](6, 3, 2, 4, 2, 5, 3, True), (2, 6, 7, 7)),
        ("bn-avg", InceptionBN(6, 3, 2, 4, 2, 5, 3, rng=0, **F64),
         t["bn"](6, 3, 2, 4, 2, 5, 3, "avg", 1, 1e-5), (2, 6, 7, 7)),
        ("bn-max-proj", InceptionBN(6, 3, 2, 4, 2, 5, 3, pool="max", rng=0, **F64),
         t["bn"](6, 3, 2, 4, 2, 5, 3, "max", 1, 1e-5), (2, 6, 7, 7)),
        ("bn-stride2", InceptionBN(6, 0, 2, 4, 2, 5, 0, stride=2, rng=0, **F64),
         t["bn"](6, 0, 2, 4, 2, 5, 0, "max", 2, 1e-5), (2, 6, 7, 7)),
        ("v3a", InceptionV3A(6, 3, c1x1=4, c5x5_reduce=3, c5x5=5, c3x3dbl_reduce=2, c3x3dbl=4,
                             rng=0, **F64), t["v3a"](6, 3, 4, 3, 5, 2, 4), (2, 6, 7, 7)),
        ("v3a-full", InceptionV3A(192, 32, rng=0, **F64), t["v3a"](192, 32), (2, 192, 7, 7)),
        ("v3b", InceptionV3B(6, 3, c1x1=4, c7x7=5, pool_proj=2, rng=0, **F64),
         t["v3b"](6, 3, 4, 5, 2), (2, 6, 9, 9)),
        ("v3c", InceptionV3C(6, c1x1=4, c3x3_reduce=3, c3x3=5, c3x3dbl_reduce=4, c3x3dbl_mid=3,
                             c3x3dbl=2, pool_proj=3, rng=0, **F64),
         t["v3c"](6, 4, 3, 5, 4, 3, 2, 3), (2, 6, 5, 5)),
        ("v3c-full", InceptionV3C(1280, rng=0, **F64), t["v3c"](1280), (2, 1280, 3, 3)),
        ("v3-35to17", InceptionV3Reduction(6, 5, 3, 4, rng=0, **F64),
         t["v3_35to17"](6, 5, 3, 4), (2, 6, 9, 9)),
        ("v3-35to17-full", InceptionV3Reduction.grid_35_to_17(rng=0, **F64),
         t["v3_35to17"](288), (2, 288, 7, 7)),
        ("v3-17to8", InceptionV3Reduction(6, 5, 3, 4, c3x3_reduce=2, n=7, rng=0, **F64),
         t["v3_17to8"](6, 2, 5, 3, 4), (2, 6, 9, 9)),
    ]


PAIR_IDS = ["v1-naive", "v1", "v1-bn", "bn-avg", "bn-max-proj", "bn-stride2", "v3a", "v3a-full",
            "v3b", "v3c", "v3c-full", "v3-35to17", "v3-35to17-full", "v3-17to8"]


def load_into_torch(torch, ours, theirs):
    """Our state_dict into the torch module (strict: same keys and shapes);
    random running statistics and BN affine terms first, so eval mode and
    the affine gradients are exercised."""
    rng = np.random.default_rng(7)
    for name, value, _ in ours.named_parameters():
        if ".bn." in name:
            value[...] = rng.uniform(0.5, 1.5, value.shape) if name.endswith("weight") \
                else rng.uniform(-0.5, 0.5, value.shape)
    for module in walk(ours):
        if type(module).__name__ == "BatchNorm2d":
            module.running_mean[...] = rng.uniform(-0.5, 0.5, module.num_features)
            module.running_var[...] = rng.uniform(0.5, 2.0, module.num_features)
    theirs.double()
    theirs.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in ours.state_dict().items()},
                           strict=True)


@pytest.mark.parametrize("index", range(len(PAIR_IDS)), ids=PAIR_IDS)
def test_block_matches_torch_nn_forward_and_backward(index):
    torch = pytest.importorskip("torch", reason=TORCH_REASON)
    torch.manual_seed(0)
    name, ours, theirs, shape = torch_pairs(torch_blocks(torch))[index]
    assert name == PAIR_IDS[index]
    load_into_torch(torch, ours, theirs)
    x = rand(shape, seed=3)
    for training in (True, False):
        ours.train(training)
        theirs.train(training)
        y = ours.forward(x)
        tx = torch.tensor(x, requires_grad=True)
        ty = theirs(tx)
        np.testing.assert_allclose(y, ty.detach().numpy(), **TORCH_TOL)
        r = rand(y.shape, seed=4)
        ours.zero_grad()
        theirs.zero_grad()
        dx = ours.backward(r)
        ty.backward(torch.from_numpy(r))
        np.testing.assert_allclose(dx, tx.grad.numpy(), **TORCH_TOL, err_msg="dx")
        grads = {k: p.grad.numpy() for k, p in theirs.named_parameters()}
        assert set(grads) == {k for k, _, _ in ours.named_parameters()}
        for key, _, grad in ours.named_parameters():
            np.testing.assert_allclose(grad, grads[key], **TORCH_TOL, err_msg=key)


def test_inception_v3_matches_a_torch_nn_assembly_at_75x75():
    """The whole network, eval mode, float64, at torchvision's smallest input
    (75x75: Mixed_7c runs on 1x1): torchvision's stem and blocks written from
    torch.nn, our weights loaded (strict), logits compared."""
    torch = pytest.importorskip("torch", reason=TORCH_REASON)
    nn = torch.nn
    t = torch_blocks(torch)
    B = t["Basic"]

    class V3(nn.Module):
        def __init__(self):
            super().__init__()
            layers = [("Conv2d_1a_3x3", B(3, 32, 3, 2)), ("Conv2d_2a_3x3", B(32, 32, 3)),
                      ("Conv2d_2b_3x3", B(32, 64, 3, padding=1)), ("maxpool1", nn.MaxPool2d(3, 2)),
                      ("Conv2d_3b_1x1", B(64, 80, 1)), ("Conv2d_4a_3x3", B(80, 192, 3)),
                      ("maxpool2", nn.MaxPool2d(3, 2)), ("Mixed_5b", t["v3a"](192, 32)),
                      ("Mixed_5c", t["v3a"](256, 64)), ("Mixed_5d", t["v3a"](288, 64)),
                      ("Mixed_6a", t["v3_35to17"](288)), ("Mixed_6b", t["v3b"](768, 128)),
                      ("Mixed_6c", t["v3b"](768, 160)), ("Mixed_6d", t["v3b"](768, 160)),
                      ("Mixed_6e", t["v3b"](768, 192)), ("Mixed_7a", t["v3_17to8"](768)),
                      ("Mixed_7b", t["v3c"](1280)), ("Mixed_7c", t["v3c"](2048)),
                      ("avgpool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()),
                      ("fc", nn.Linear(2048, 1000))]
            for name, module in layers:
                self.add_module(name, module)

        def forward(self, x):
            for module in self.children():
                x = module(x)
            return x

    theirs = V3()
    assert sum(p.numel() for p in theirs.parameters()) == 23_834_568
    ours = inception_v3(dtype=np.float64, rng=0)
    load_into_torch(torch, ours, theirs)
    ours.eval()
    theirs.eval()
    x = rand((2, 3, 75, 75), seed=5)
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours.forward(x), expected, rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------------------
# argument checks, and calls that raise change nothing
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("make, message", [
    (lambda: InceptionV1(192, 0, 96, 128, 16, 32, 32), r"c1x1 must be an int >= 1, got 0"),
    (lambda: InceptionV1(192, 64, 96, 128, 16, 32, 0), r"pool_proj must be an int >= 1, got 0"),
    (lambda: InceptionV1Naive(4, 2, 2.0, 2), r"c3x3 must be an int >= 1, got 2.0"),
    (lambda: InceptionV1Naive(True, 2, 2, 2), r"in_ch must be an int >= 1, got True"),
    (lambda: InceptionBN(4, 2, 2, 3, 2, 3, -1), r"pool_proj must be an int >= 0, got -1"),
    (lambda: InceptionBN(4, 0, 2, 3, 2, 3, 0, stride=True), r"stride must be one of 1, 2"),
    (lambda: InceptionBN(4, 0, 2, 3, 2, 3, 0, stride=2.0), r"stride must be one of 1, 2"),
    (lambda: InceptionBN(4, 2, 2, 3, 2, 3, 2, batch_norm="yes"), r"batch_norm must be a bool"),
    (lambda: InceptionV3A(4, 2, kernel_5x5=3.0), r"kernel_5x5 must be one of 5, 3, got 3.0"),
    (lambda: InceptionV3B(4, 2, n=-1), r"n must be an int >= 1, got -1"),
    (lambda: InceptionV3B(4, 2, n=4), r"n must be odd"),
    (lambda: InceptionV3C(4, c3x3=np.nan), r"c3x3 must be an int >= 1, got nan"),
    (lambda: InceptionV3Reduction(4, 2, 2, 2, n=-3), r"n must be an int >= 0, got -3"),
    (lambda: InceptionV3Reduction(4, 2, 2, 2, c3x3_reduce=-1),
     r"c3x3_reduce must be an int >= 0, got -1"),
    (lambda: small_inception(width=2.5), r"width must be an int >= 2, got 2.5"),
    (lambda: small_inception(width=float("nan")), r"width must be an int >= 2, got nan"),
    (lambda: small_inception(width=True), r"width must be an int >= 2, got True"),
    (lambda: small_inception(num_classes=0), r"num_classes must be an int >= 1, got 0"),
    (lambda: small_inception(in_channels=0), r"in_channels must be an int >= 1, got 0"),
    (lambda: googlenet(num_classes=-1), r"num_classes must be an int >= 1, got -1"),
    (lambda: googlenet(dropout=1.5), r"dropout must be a probability in \[0, 1\], got 1.5"),
    (lambda: googlenet(dropout=float("nan")), r"dropout must be a probability"),
    (lambda: googlenet(aux_logits="yes"), r"aux_logits must be a bool, got 'yes'"),
    (lambda: bn_inception(num_classes=2.0), r"num_classes must be an int >= 1, got 2.0"),
    (lambda: inception_v3(dropout=-0.5), r"dropout must be a probability"),
    (lambda: small_inception(rng=True), r"rng \(a network's seed\) must be None, an int"),
    (lambda: small_inception(rng=-1), r"rng \(a network's seed\) must be"),
    (lambda: InceptionBN(4, 2, 2, 3, 2, 3, 2, rng=1.5), r"rng \(a network's seed\) must be"),
])
def test_blocks_and_networks_reject_bad_arguments_naming_them(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_network_rejects_malformed_stages_and_heads():
    unit = ConvBNReLU(2, 2, 1, **F64)
    with pytest.raises(TypeError, match=r"stages must be \(name, Module\) pairs; item 0"):
        Network([unit])
    with pytest.raises(TypeError, match=r"aux must be \(name, stage name, Module\) triples"):
        Network([("a", unit)], aux=[("h", "a")])
    with pytest.raises(TypeError, match=r"stage 'h' is int, not a Module"):
        Network([("a", unit)], aux=[("h", "a", 3)])
    with pytest.raises(ValueError, match=r"stage and head names must be unique"):
        Network([("a", unit)], aux=[("a", "a", Flatten())])
    with pytest.raises(ValueError, match=r"reads unknown stage 'b'"):
        Network([("a", unit)], aux=[("h", "b", Flatten())])


def test_zero_drops_a_branch_where_documented():
    assert "branch1x1" not in dict(InceptionBN(4, 0, 2, 3, 2, 3, None, **F64).children())
    assert dict(InceptionV3Reduction(4, 2, 2, 2, c3x3_reduce=0, n=0, **F64).children())


def aux_network():
    return Network(
        [("a", ConvBNReLU(2, 3, 3, padding=1, rng=0, **F64)),
         ("b", ConvBNReLU(3, 4, 3, stride=2, padding=1, rng=1, **F64)),
         ("pool", GlobalAvgPool2d()), ("flat", Flatten()), ("fc", Linear(4, 3, rng=2, **F64))],
        aux=[("aux", "a", Sequential(GlobalAvgPool2d(), Flatten(), Linear(3, 2, rng=3, **F64)))])


def snapshot(module):
    return ({k: np.array(v, copy=True) for k, v in module.state_dict().items()},
            {name: grad.copy() for name, _, grad in module.named_parameters()})


def assert_same(module, before):
    state, grads = snapshot(module)
    for key in before[0]:
        np.testing.assert_array_equal(state[key], before[0][key], err_msg=key)
    for key in before[1]:
        np.testing.assert_array_equal(grads[key], before[1][key], err_msg=key)


def test_a_bad_aux_gradient_leaves_every_gradient_as_it_was():
    """The main stages after the tap run their backward before the head's
    gradient is read: when the head refuses it, their gradients are put back."""
    net = aux_network()
    x = rand((2, 2, 5, 5), 80)
    logits, (aux,) = net.forward(x)
    net.backward(rand(logits.shape, 81), [rand(aux.shape, 82)])
    before = snapshot(net)
    for bad in ([rand((2, 3), 83)], [rand(aux.shape, 84).astype(np.float32)], [None, None]):
        with pytest.raises((ValueError, TypeError)):
            net.backward(rand(logits.shape, 85), bad)
        assert_same(net, before)
    with pytest.raises(ValueError, match="dy as a tuple must be"):
        net.backward((rand(logits.shape, 85),))
    dx = net.backward(rand(logits.shape, 85), [None])  # the head skipped: still works
    assert dx.shape == x.shape


def test_a_forward_failing_in_a_late_stage_leaves_the_running_statistics():
    """A 7x7 input reaches the Linear with 4 x 4 x 4 features instead of 4:
    the BN stages ran first; their statistics and counts are put back."""
    net = Network([("a", ConvBNReLU(2, 3, 3, padding=1, rng=0, **F64)),
                   ("b", ConvBNReLU(3, 4, 3, stride=2, padding=1, rng=1, **F64)),
                   ("flat", Flatten()), ("fc", Linear(4, 3, rng=2, **F64))])
    before = snapshot(net)
    with pytest.raises(ValueError, match="x has 64 features, expected 4"):
        net.forward(rand((2, 2, 7, 7), 86))
    assert_same(net, before)
    assert net["a"].bn.num_batches_tracked == 0
    with pytest.raises(RuntimeError, match="before forward"):
        net.backward(rand((2, 3), 87))
    assert_same(net, before)
