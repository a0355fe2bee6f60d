"""One word for each choice: numerics= (not flavor=), activation= (not
relu=), rng= (not seed=). Each old keyword still works, warns with a
DeprecationWarning that names the new one, and gives the same bits as the
new keyword (the oracle: the same call spelled the new way)."""
import numpy as np
import pytest

from bnkernels import darknet, distributed, reference
from bnkernels.io import darknet as darknet_files

FORKS = [("pjreddie", "darknet"), ("alexeyab", "darknet-alexeyab")]


def data(seed=0, shape=(2, 3, 4, 5)):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    mean = x.mean(axis=(0, 2, 3)).astype(np.float32)
    var = x.var(axis=(0, 2, 3), ddof=1).astype(np.float32)
    return x, mean, var


def deprecated(call, old):
    with pytest.warns(DeprecationWarning, match=rf"{old}= is deprecated; use "):
        return call()


@pytest.mark.parametrize("fork,numerics", FORKS)
def test_flavor_keyword_is_a_deprecated_alias_of_numerics(fork, numerics):
    x, mean, var = data()
    delta = np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)
    md, vd = darknet.mean_delta_cpu(delta, var), darknet.variance_delta_cpu(x, delta, mean, var)
    for module in (darknet, reference):
        np.testing.assert_array_equal(
            deprecated(lambda: module.normalize_cpu(x, mean, var, flavor=fork), "flavor"),
            module.normalize_cpu(x, mean, var, numerics=numerics))
        np.testing.assert_array_equal(
            deprecated(lambda: module.normalize_delta_cpu(x, mean, var, md, vd, delta,
                                                          flavor=fork), "flavor"),
            module.normalize_delta_cpu(x, mean, var, md, vd, delta, numerics=numerics))
        np.testing.assert_array_equal(
            deprecated(lambda: module.rolling_update(mean.copy(), var, flavor=fork), "flavor"),
            module.rolling_update(mean.copy(), var, numerics=numerics))
    assert deprecated(lambda: darknet.forward_eps(flavor=fork), "flavor") \
        == darknet.forward_eps(numerics)
    assert deprecated(lambda: darknet.default_momentum(flavor=fork), "flavor") \
        == darknet.default_momentum(numerics)
    np.testing.assert_array_equal(
        deprecated(lambda: darknet.backward_batchnorm_layer(
            x, x, delta, mean, var, np.ones(3, np.float32), flavor=fork), "flavor")[0],
        darknet.backward_batchnorm_layer(x, x, delta, mean, var, np.ones(3, np.float32),
                                         numerics=numerics)[0])
    four = (np.ones(3, np.float32), np.zeros(3, np.float32), mean, var)
    assert deprecated(lambda: darknet.to_standard(*four, flavor=fork), "flavor").running_var \
        .tobytes() == darknet.to_standard(*four, numerics=numerics).running_var.tobytes()
    assert deprecated(lambda: darknet.from_standard(*four, flavor=fork), "flavor") \
        .rolling_variance.tobytes() \
        == darknet.from_standard(*four, numerics=numerics).rolling_variance.tobytes()


@pytest.mark.parametrize("fork,numerics", FORKS)
def test_a_fork_name_given_as_numerics_warns_and_maps(fork, numerics):
    with pytest.warns(DeprecationWarning, match=rf"numerics='{fork}' is deprecated; use "
                                                rf"numerics='{numerics}'"):
        assert darknet.forward_eps(fork) == darknet.forward_eps(numerics)


def test_flavor_and_numerics_together_are_a_type_error():
    x, mean, var = data()
    with pytest.raises(TypeError, match="give numerics= only"):
        darknet.normalize_cpu(x, mean, var, numerics="darknet-alexeyab", flavor="alexeyab")


def test_load_weights_takes_numerics_and_the_deprecated_flavor(tmp_path):
    cfg = tmp_path / "net.cfg"
    cfg.write_text("[net]\nheight=4\nwidth=4\nchannels=2\n\n[convolutional]\n"
                   "batch_normalize=1\nfilters=2\nsize=1\nstride=1\nactivation=linear\n")
    header = np.array([0, 2, 0], np.int32).tobytes() + np.zeros(1, np.int64).tobytes()
    path = tmp_path / "net.weights"
    path.write_bytes(header + np.arange(2 * 4 + 2 * 2, dtype=np.float32).tobytes())
    new = darknet_files.load_weights(str(cfg), path, numerics="darknet")
    old = deprecated(lambda: darknet_files.load_weights(str(cfg), path, flavor="pjreddie"),
                     "flavor")
    assert old.numerics == new.numerics == "darknet"
    for a, b in zip(old.layers, new.layers):
        np.testing.assert_array_equal(a.scales, b.scales)
        np.testing.assert_array_equal(a.weights, b.weights)


def test_relu_keyword_is_a_deprecated_alias_of_activation():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 2, 4, 4))
    dy = rng.standard_normal(x.shape)
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    invstd = 1 / np.sqrt(var + 1e-5)
    new = distributed.shard_gradient_sums(dy, x, mean, invstd, activation="relu")
    old = deprecated(lambda: distributed.shard_gradient_sums(dy, x, mean, invstd, relu=True),
                     "relu")
    for a, b in zip(old, new):
        np.testing.assert_array_equal(a, b)
    off = deprecated(lambda: distributed.shard_gradient_sums(dy, x, mean, invstd, relu=False),
                     "relu")
    for a, b in zip(off, distributed.shard_gradient_sums(dy, x, mean, invstd)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="give activation= only"):
        distributed.shard_gradient_sums(dy, x, mean, invstd, activation="relu", relu=True)


def test_seed_keyword_is_a_deprecated_alias_of_rng():
    from bnkernels.nn import inception
    from bnkernels.tools import verify
    new = inception.small_inception(width=2, rng=5).state_dict()
    old = deprecated(lambda: inception.small_inception(width=2, seed=5), "seed").state_dict()
    assert sorted(new) == sorted(old)
    for key in new:
        np.testing.assert_array_equal(new[key], old[key])
    for factory in (inception.googlenet, inception.bn_inception, inception.inception_v3):
        with pytest.warns(DeprecationWarning, match="seed= is deprecated; use rng="):
            with pytest.raises(ValueError, match=r"rng \(a network's seed\) must be"):
                factory(seed=-1)
    assert deprecated(lambda: verify.finite_difference_errors((2, 2, 2, 2), True, seed=3),
                      "seed") == verify.finite_difference_errors((2, 2, 2, 2), True, rng=3)
    with pytest.raises(TypeError, match="give rng= only"):
        inception.small_inception(rng=1, seed=2)


@pytest.mark.parametrize("call", [
    lambda x, m, v: darknet.normalize_cpu(x, m, v, "darknet"),
    lambda x, m, v: darknet.mean_cpu(x, None),
    lambda x, m, v: darknet.scale_bias(x, m, None),
    lambda x, m, v: reference.normalize_cpu(x, m, v, "darknet"),
    lambda x, m, v: distributed.shard_moments(x, "NCHW"),
], ids=["darknet.normalize_cpu", "darknet.mean_cpu", "darknet.scale_bias",
        "reference.normalize_cpu", "distributed.shard_moments"])
def test_options_and_out_are_keyword_only(call):
    x, mean, var = data()
    with pytest.raises(TypeError, match="positional argument"):
        call(x, mean, var)


@pytest.mark.parametrize("call", [
    lambda K, x: K.im2col(x, 3, 1, 1, np.empty((2, 27, 20))),
    lambda K, x: K.col2im(np.zeros((2, 27, 20)), x.shape, 3, 1, 1, np.empty(x.shape)),
    lambda K, x: K.max_pool2d_forward(x, 3, 1, 1, True),
    lambda K, x: K.max_pool2d_backward(x, np.zeros(x.shape, np.int64), x.shape,
                                       np.empty(x.shape)),
    lambda K, x: K.avg_pool2d_forward(x, 3, 1, 1, True, False),
    lambda K, x: K.avg_pool2d_backward(x, x.shape, 3, 1, 1, False),
    lambda K, x: K.pool_output_size(5, 3, 1, 1, True),
], ids=["im2col", "col2im", "max_pool2d_forward", "max_pool2d_backward",
        "avg_pool2d_forward", "avg_pool2d_backward", "pool_output_size"])
@pytest.mark.parametrize("module", ["_kernels", "reference"])
def test_conv_and_pool_options_and_out_are_keyword_only(call, module):
    """out=, ceil_mode=, count_include_pad= and indices= given positionally
    are a TypeError in the C entry points and in their NumPy twins alike."""
    import importlib
    K = importlib.import_module(f"bnkernels.{module}")
    x = np.zeros((2, 3, 4, 5))
    with pytest.raises(TypeError, match="positional argument"):
        call(K, x)


# The functional API: after the data (arrays, shapes, layers), every option
# is keyword-only, so a parameter with a default may be positional only where
# it is data itself or where this table says why.
DATA_WITH_DEFAULTS = {"bn", "weight", "bias"}  # optional arrays / a layer, as torch's
KEYWORD_EXCEPTIONS = {
    # the one argument of a lookup of the numerics' constants
    "bnkernels.defaults": "numerics is the subject, not an option",
    "bnkernels.batchnorm.defaults": "numerics is the subject, not an option",
    "bnkernels.darknet.check_numerics": "validates its argument; flavor is its deprecated alias",
    "bnkernels.darknet.forward_eps": "numerics is the subject, not an option",
    "bnkernels.darknet.default_momentum": "numerics is the subject, not an option",
}
# bnkernels._kernels' batch-norm and Darknet entry points mirror the C
# functions of csrc/bnkernels.h argument for argument (bnkernels.batchnorm and
# bnkernels.darknet are their public face, and call them positionally); its
# check_* are the argument checkers those modules share
KERNEL_MIRRORS = ("standard_", "normalize_affine", "backward_", "rolling_update", "stats",
                  "dk_", "check_")


def _functional_api():
    import importlib
    import inspect
    for name in ["bnkernels", "bnkernels.batchnorm", "bnkernels.darknet", "bnkernels.reference",
                 "bnkernels.folding", "bnkernels.distributed", "bnkernels._kernels"]:
        module = importlib.import_module(name)
        for attr in getattr(module, "__all__", None) or dir(module):
            value = getattr(module, attr)
            if attr.startswith("_") or inspect.isclass(value) or not callable(value):
                continue
            if name == "bnkernels._kernels" and attr.startswith(KERNEL_MIRRORS):
                continue
            yield f"{name}.{attr}", value


def test_every_option_of_the_functional_api_is_keyword_only():
    import inspect
    found, offenders = 0, []
    for qualname, function in _functional_api():
        found += 1
        if qualname in KEYWORD_EXCEPTIONS:
            continue
        for p in inspect.signature(function).parameters.values():
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and \
                    p.default is not p.empty and p.name not in DATA_WITH_DEFAULTS:
                offenders.append(f"{qualname}({p.name}=...)")
    assert found > 60  # the walk sees the API (a typo in a name would empty it)
    assert offenders == []


@pytest.mark.parametrize("numerics,fork", [("darknet", "pjreddie"),
                                           ("darknet-alexeyab", "alexeyab")])
def test_darknet_params_flavor_is_a_deprecated_alias_of_numerics(numerics, fork):
    x, mean, var = data()
    converted = darknet.from_standard(np.ones(3, np.float32), np.zeros(3, np.float32), mean,
                                      var, eps=1e-5, numerics=numerics)
    assert converted.numerics == numerics
    with pytest.warns(DeprecationWarning, match=r"DarknetParams.flavor is deprecated"):
        assert converted.flavor == fork


def test_darknet_weights_flavor_is_a_deprecated_alias_of_numerics():
    weights = darknet_files.DarknetWeights(0, 2, 0, 0, "darknet-alexeyab")
    with pytest.warns(DeprecationWarning, match=r"DarknetWeights.flavor is deprecated"):
        assert weights.flavor == "alexeyab"


@pytest.mark.parametrize("old,new", [("FLAVORS", ("pjreddie", "alexeyab")),
                                     ("check_flavor", None)])
def test_darknet_flavors_and_check_flavor_are_deprecated_module_aliases(old, new):
    with pytest.warns(DeprecationWarning, match=rf"bnkernels.darknet.{old} is deprecated"):
        value = getattr(darknet, old)
    if new is not None:
        assert value == new
    else:
        assert value("AlexeyAB") == "alexeyab"
        with pytest.raises(ValueError, match="got 'x'"):
            value("x")
    assert old not in darknet.__all__


# The user-facing functions of the upper floors follow the same rule; the
# network factories keep num_classes (and torchvision's aux_logits) positional,
# as torchvision's model classes do.
UPPER_FLOOR_EXCEPTIONS = {"num_classes", "aux_logits"}


@pytest.mark.parametrize("qualname", [
    "bnkernels.nn.inception.googlenet", "bnkernels.nn.inception.bn_inception",
    "bnkernels.nn.inception.inception_v3", "bnkernels.nn.inception.small_inception",
    "bnkernels.nn.inception.summary_table", "bnkernels.nn.train.load_digits",
    "bnkernels.nn.train.evaluate", "bnkernels.io.darknet.load_weights",
    "bnkernels.io.darknet.check", "bnkernels.tools.verify.finite_difference_errors",
    "bnkernels.tools.bench.make_tensors"])
def test_options_of_the_upper_floors_are_keyword_only(qualname):
    import importlib
    import inspect
    module, _, name = qualname.rpartition(".")
    function = getattr(importlib.import_module(module), name)
    positional = [p.name for p in inspect.signature(function).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                  and p.default is not p.empty and p.name not in UPPER_FLOOR_EXCEPTIONS]
    assert positional == []
