"""The framework oracles of tests/conventions.py against the frameworks
themselves, and bnkernels against the oracles with the arguments of
docs/conventions.md.

Live frameworks (each optional; its tests skip with the reason when absent):
PyTorch (torch.nn.functional.batch_norm and the BatchNorm modules), onnx's
reference evaluator, onnxruntime, Keras 3 on the JAX backend, Flax linen and
tf_keras (Keras 2). Darknet has no package: its oracle is checked against
bnkernels.darknet, the kernel port that tests/test_darknet*.py check bit for
bit against Darknet's own output. Caffe has no package either: its oracle is
checked against the algebra of docs/conventions.md and, for
moving_average_fraction = 1, against PyTorch's momentum=None.

Every live check runs three training steps on different batches (state fed
back, so the momentum's side and the running-variance estimator both show)
and an inference step, in float64. Each also checks that the neighbouring
convention (the other variance estimator, or the other momentum side) does
NOT match, so a pass says the test can tell them apart.

Tolerance: both sides compute the same float64 formulas in different orders,
~1e-15 apart at these sizes (values of order 1-10, n <= 120 per channel).
rtol = atol = 1e-10 leaves a wide margin and stays far below the smallest
formula difference the tests must see: n/(n-1) ~ 0.8-9 % in a variance, and
ONNX's float32 momentum attribute (0.9 arrives as 0.8999999762, 2.6e-8 off).
"""
import contextlib
import inspect
import os
import warnings

import numpy as np
import pytest

import bnkernels
import conventions as cv
from bnkernels import darknet
from forks import numerics_of

TOL = dict(rtol=1e-10, atol=1e-10)
STEPS = 3


def close(actual, expected):
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, **TOL)


def differs(actual, expected):
    """actual is outside TOL of expected (the neighbouring convention)."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return not np.allclose(actual, expected, **TOL)


def batches(shape, channels_last=False, steps=STEPS, seed=0):
    """steps float64 batches with per-channel means 0-3 and spreads 0.5-2.5, so
    every channel's statistics differ."""
    rng = np.random.default_rng(seed)
    if len(shape) == 1:                      # ONNX's (N,): one channel
        loc, spread = 1.5, 1.2
    else:
        c = shape[-1] if channels_last else shape[1]
        loc = cv._per_channel(np.linspace(0.0, 3.0, c), np.empty(shape), channels_last)
        spread = cv._per_channel(np.linspace(0.5, 2.5, c), np.empty(shape), channels_last)
    return [loc + spread * rng.standard_normal(shape) for _ in range(steps)]


def params(c, seed=1):
    """weight, bias, running_mean, running_var: a layer in mid-training."""
    rng = np.random.default_rng(seed)
    return (rng.uniform(0.5, 1.5, c), rng.uniform(-1, 1, c),
            rng.uniform(-1, 1, c), rng.uniform(0.5, 2.0, c))


def shape_of(rank, channels_last=False, c=3):
    """x shapes of each rank with C = c, small n so that n/(n-1) shows."""
    spatial = {2: (), 3: (5,), 4: (2, 3), 5: (2, 2, 3)}[rank]
    return (4,) + spatial + (c,) if channels_last else (4, c) + spatial


def quiet_import(name, reason):
    """pytest.importorskip, with the package's import-time warnings silenced
    (pytest turns warnings into errors; they are not this project's)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pytest.importorskip(name, reason=reason)


# ---------------------------------------------------------------------------
# PyTorch

@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="the PyTorch oracle check needs torch")


def _torch_module(torch, rank, c, momentum):
    cls = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d,
           4: torch.nn.BatchNorm2d, 5: torch.nn.BatchNorm3d}[rank]
    return cls(c, momentum=momentum, dtype=torch.float64)


@pytest.mark.parametrize("momentum", [0.1, 0.3, None])
@pytest.mark.parametrize("rank", [2, 3, 4, 5])
def test_pytorch_oracle_matches_torch_batchnorm_modules(torch, rank, momentum):
    xs = batches(shape_of(rank))
    w, b, rm, rv = params(3)
    bn = _torch_module(torch, rank, 3, momentum)
    with torch.no_grad():
        for p, v in ((bn.weight, w), (bn.bias, b), (bn.running_mean, rm),
                     (bn.running_var, rv)):
            p.copy_(torch.from_numpy(v))
    tracked = 0
    for x in xs:
        y_ref, rm, rv, tracked = cv.pytorch_train(x, w, b, rm, rv, tracked,
                                                  momentum=momentum)
        with torch.no_grad():
            y = bn(torch.from_numpy(x))
        close(y.numpy(), y_ref)
        close(bn.running_mean.numpy(), rm)
        close(bn.running_var.numpy(), rv)
    assert int(bn.num_batches_tracked) == tracked == STEPS
    bn.eval()
    with torch.no_grad():
        close(bn(torch.from_numpy(xs[0])).numpy(), cv.pytorch_infer(xs[0], w, b, rm, rv))


def test_pytorch_running_var_is_unbiased_and_y_uses_the_biased_one(torch):
    x = batches(shape_of(4))[0]
    w, b, rm, rv = params(3)
    rm_t, rv_t = torch.from_numpy(rm.copy()), torch.from_numpy(rv.copy())
    y = torch.nn.functional.batch_norm(torch.from_numpy(x), rm_t, rv_t,
                                       torch.from_numpy(w), torch.from_numpy(b),
                                       training=True, momentum=0.1, eps=1e-5)
    y_ref, _, rv_ref, _ = cv.pytorch_train(x, w, b, rm, rv)
    close(y.numpy(), y_ref)
    close(rv_t.numpy(), rv_ref)
    axes = (0, 2, 3)
    assert differs(rv_t.numpy(), 0.9 * rv + 0.1 * x.var(axis=axes))
    assert differs(y.numpy(), cv._standard_infer(x, w, b, x.mean(axis=axes),
                                                 x.var(axis=axes, ddof=1), 1e-5, False))


# ---------------------------------------------------------------------------
# ONNX: the reference evaluator and onnxruntime, one BatchNormalization node

@pytest.fixture(scope="module")
def onnx():
    return quiet_import("onnx", "the ONNX oracle check needs onnx: pip install onnx")


def onnx_model(onnx, shape, training, *, epsilon=None, momentum=None, opset=15,
               elem=None):
    """A model of one BatchNormalization node on float64 (N, C, *) input."""
    helper, tp = onnx.helper, onnx.TensorProto
    elem = tp.DOUBLE if elem is None else elem
    c = shape[1] if len(shape) > 1 else 1
    outputs = ["y", "running_mean", "running_var"] if training else ["y"]
    attrs = {"training_mode": int(training)}
    if epsilon is not None:
        attrs["epsilon"] = epsilon
    if momentum is not None:
        attrs["momentum"] = momentum
    node = helper.make_node("BatchNormalization", ["x", "scale", "B", "mean", "var"],
                            outputs, **attrs)
    inputs = [helper.make_tensor_value_info("x", elem, list(shape))] + [
        helper.make_tensor_value_info(n, elem, [c]) for n in ("scale", "B", "mean", "var")]
    outs = [helper.make_tensor_value_info("y", elem, list(shape))] + [
        helper.make_tensor_value_info(n, elem, [c]) for n in outputs[1:]]
    graph = helper.make_graph([node], "bn", inputs, outs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8      # what onnxruntime releases of the last years all read
    onnx.checker.check_model(model)
    return model


def _reference_runner(onnx):
    reference = quiet_import("onnx.reference", "onnx has no reference evaluator")

    def run(model, feeds):
        return reference.ReferenceEvaluator(model).run(None, feeds)
    run.one_d = False    # op_batch_normalization.py line 38 deletes axis 1 of any x
    return run


def _ort_runner(onnx):
    ort = quiet_import("onnxruntime", "the ONNX Runtime check needs onnxruntime: "
                       "pip install onnxruntime")

    def run(model, feeds):
        session = ort.InferenceSession(model.SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        return session.run(None, feeds)
    run.one_d = True
    return run


@pytest.fixture(scope="module", params=["reference", "onnxruntime"])
def onnx_run(request, onnx):
    return {"reference": _reference_runner, "onnxruntime": _ort_runner}[request.param](onnx)


ONNX_ATTRS = [dict(), dict(epsilon=1e-3, momentum=0.7)]


@pytest.mark.parametrize("attrs", ONNX_ATTRS, ids=["defaults", "eps1e-3-momentum0.7"])
@pytest.mark.parametrize("rank", [1, 2, 3, 4, 5])
def test_onnx_oracle_matches_onnx_training_mode(onnx, onnx_run, rank, attrs):
    if rank == 1 and not onnx_run.one_d:
        pytest.skip("onnx's reference evaluator raises IndexError on a 1-D X, which "
                    "the operator's documentation allows (C = 1)")
    shape = (12,) if rank == 1 else shape_of(rank)
    c = 1 if rank == 1 else 3
    xs = batches(shape)
    w, b, rm, rv = params(c)
    model = onnx_model(onnx, shape, True, **attrs)
    # the attributes as the model stores them: protobuf floats
    kw = {k: float(np.float32(v)) for k, v in attrs.items()}
    for x in xs:
        y, rm_out, rv_out = onnx_run(model, dict(x=x, scale=w, B=b, mean=rm, var=rv))
        y_ref, rm, rv = cv.onnx_train(x, w, b, rm, rv, **kw)
        close(y, y_ref)
        close(rm_out, rm)
        close(rv_out, rv)
        rm, rv = rm_out, rv_out
    y, = onnx_run(onnx_model(onnx, shape, False, **attrs),
                  dict(x=xs[0], scale=w, B=b, mean=rm, var=rv))
    close(y, cv.onnx_infer(xs[0], w, b, rm, rv, **{k: v for k, v in kw.items()
                                                   if k == "epsilon"}))


def test_onnx_running_var_is_biased_and_momentum_keeps_the_old_value(onnx, onnx_run):
    x = batches(shape_of(4))[0]
    w, b, rm, rv = params(3)
    _, rm_out, rv_out = onnx_run(onnx_model(onnx, x.shape, True),
                                 dict(x=x, scale=w, B=b, mean=rm, var=rv))
    m = cv.ONNX_MOMENTUM
    assert differs(rv_out, m * rv + (1 - m) * x.var(axis=(0, 2, 3)) * 24 / 23)
    assert differs(rm_out, (1 - m) * rm + m * x.mean(axis=(0, 2, 3)))
    # momentum is the protobuf float 0.9f, not 0.9
    assert differs(rm_out, 0.9 * rm + 0.1 * x.mean(axis=(0, 2, 3)))


# ---------------------------------------------------------------------------
# Keras 3 on the JAX backend, and Flax: both need JAX in float64

@pytest.fixture(scope="module")
def jax():
    return quiet_import("jax", "the Keras and Flax checks need jax: pip install jax")


@contextlib.contextmanager
def jax_float64(jax):
    """JAX computing in float64 for the duration (its default is float32)."""
    enable = getattr(jax, "enable_x64", None)
    if enable is None:
        experimental = getattr(jax, "experimental", None)
        enable = getattr(experimental, "enable_x64", None)
        if enable is None:
            pytest.skip("this jax has neither jax.enable_x64 nor "
                        "jax.experimental.enable_x64")
        context = enable()
    else:
        context = enable(True)
    with context, warnings.catch_warnings():
        warnings.simplefilter("ignore")      # JAX's and Keras's own notices
        yield


@pytest.fixture(scope="module")
def keras(jax):
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = quiet_import("keras", "the Keras check needs keras: pip install keras jax")
    if not hasattr(keras, "version") or not keras.version().startswith("3"):
        pytest.skip(f"Keras 3 is the oracle; this is Keras {keras.__version__}")
    if keras.backend.backend() != "jax":
        pytest.skip(f"Keras runs on {keras.backend.backend()!r}, not JAX: "
                    f"set KERAS_BACKEND=jax before keras is imported")
    return keras


# Keras computes batch norm in float32 on every backend but TensorFlow, also
# for a float64 layer: keras.backend.result_type(float64, "float32") is float32
# (keras/src/backend/common/dtypes.py, BIT64_TO_BIT32_DTYPE). So Keras runs in
# float32, and the float64 oracle is given the same float32-rounded values.
# float32 BN over <= 120 values of order 1-10 per channel rounds to ~1e-6
# (PyTorch's float32 path measures 1.9e-6 in tests/test_torch_adapter.py);
# 2e-5 leaves a margin of 10 and is far below the differences the Keras tests
# must see (n/(n-1) at momentum 0.01 moves the moving variance by >= 4e-4).
KERAS_TOL = dict(rtol=2e-5, atol=2e-5)


def keras_close(actual, expected):
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, **KERAS_TOL)


def keras_differs(actual, expected):
    return not np.allclose(np.asarray(actual, np.float64), expected, **KERAS_TOL)


def float32_values(*arrays):
    """Arrays rounded to float32, held in float64 for the oracle."""
    return [np.asarray(a, np.float32).astype(np.float64) for a in arrays]


@contextlib.contextmanager
def keras_quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # Keras's and JAX's own notices
        yield


def _keras_layer(keras, x, axis, w, b, rm, rv, **kwargs):
    bn = keras.layers.BatchNormalization(axis=axis, dtype="float32", **kwargs)
    bn.build(x.shape)
    # gamma, beta, moving_mean, moving_variance
    bn.set_weights([np.asarray(v, np.float32) for v in (w, b, rm, rv)])
    return bn


KERAS_CASES = [(rank, -1) for rank in (2, 3, 4, 5)] + [(4, 1)]


@pytest.mark.parametrize("rank, axis", KERAS_CASES,
                         ids=[f"rank{r}-axis{a}" for r, a in KERAS_CASES])
def test_keras_oracle_matches_keras_batchnormalization(keras, rank, axis):
    last = axis == -1
    xs = float32_values(*batches(shape_of(rank, last), last))
    w, b, rm, rv = float32_values(*params(3))
    with keras_quiet():
        bn = _keras_layer(keras, xs[0], axis, w, b, rm, rv)
        for x in xs:
            y = bn(x.astype(np.float32), training=True)
            y_ref, rm, rv = cv.keras_train(x, w, b, rm, rv, axis=axis)
            keras_close(y, y_ref)
            keras_close(bn.moving_mean.value, rm)
            keras_close(bn.moving_variance.value, rv)
        y = bn(xs[0].astype(np.float32), training=False)
    keras_close(y, cv.keras_infer(xs[0], w, b, rm, rv, axis=axis))


def test_keras_moving_variance_is_biased_with_the_old_value_kept(keras):
    x, = float32_values(batches(shape_of(4, True), True)[0])
    w, b, rm, rv = float32_values(*params(3))
    with keras_quiet():
        bn = _keras_layer(keras, x, -1, w, b, rm, rv)
        bn(x.astype(np.float32), training=True)
        mv, mm = np.asarray(bn.moving_variance.value), np.asarray(bn.moving_mean.value)
    axes = (0, 1, 2)
    keras_close(mv, 0.99 * rv + 0.01 * x.var(axis=axes))
    assert keras_differs(mv, 0.99 * rv + 0.01 * x.var(axis=axes, ddof=1))
    assert keras_differs(mm, 0.01 * rm + 0.99 * x.mean(axis=axes))


def test_keras_frozen_layer_normalizes_with_moving_statistics(keras):
    x, = float32_values(batches(shape_of(4, True), True)[0])
    w, b, rm, rv = float32_values(*params(3))
    with keras_quiet():
        bn = _keras_layer(keras, x, -1, w, b, rm, rv, trainable=False)
        y = bn(x.astype(np.float32), training=True)
        mv = np.asarray(bn.moving_variance.value)
    keras_close(y, cv.keras_infer(x, w, b, rm, rv))
    keras_close(mv, rv)


@pytest.fixture(scope="module")
def flax_linen(jax):
    return quiet_import("flax.linen", "the Flax check needs flax: pip install flax")


@pytest.mark.parametrize("use_fast_variance", [True, False])
@pytest.mark.parametrize("rank", [2, 4])
def test_flax_oracle_matches_flax_batchnorm(jax, flax_linen, rank, use_fast_variance):
    xs = batches(shape_of(rank, True), True)
    w, b, rm, rv = params(3)
    with jax_float64(jax):
        jnp = jax.numpy
        bn = flax_linen.BatchNorm(dtype=jnp.float64, param_dtype=jnp.float64,
                                  use_fast_variance=use_fast_variance)
        variables = {"params": {"scale": jnp.asarray(w), "bias": jnp.asarray(b)},
                     "batch_stats": {"mean": jnp.asarray(rm), "var": jnp.asarray(rv)}}
        for x in xs:
            y, updates = bn.apply(variables, jnp.asarray(x), use_running_average=False,
                                  mutable=["batch_stats"])
            y_ref, rm, rv = cv.flax_train(x, w, b, rm, rv,
                                          use_fast_variance=use_fast_variance)
            close(y, y_ref)
            close(updates["batch_stats"]["mean"], rm)
            close(updates["batch_stats"]["var"], rv)
            variables = {"params": variables["params"], **updates}
        y = bn.apply(variables, jnp.asarray(xs[0]), use_running_average=True)
        close(y, cv.flax_infer(xs[0], w, b, rm, rv))


def test_flax_running_var_is_biased_with_the_old_value_kept(jax, flax_linen):
    x = batches(shape_of(4, True), True)[0]
    w, b, rm, rv = params(3)
    with jax_float64(jax):
        jnp = jax.numpy
        bn = flax_linen.BatchNorm(dtype=jnp.float64, param_dtype=jnp.float64)
        variables = {"params": {"scale": jnp.asarray(w), "bias": jnp.asarray(b)},
                     "batch_stats": {"mean": jnp.asarray(rm), "var": jnp.asarray(rv)}}
        _, updates = bn.apply(variables, jnp.asarray(x), use_running_average=False,
                              mutable=["batch_stats"])
        mean, var = (np.asarray(updates["batch_stats"][k]) for k in ("mean", "var"))
    axes = (0, 1, 2)
    close(var, 0.99 * rv + 0.01 * x.var(axis=axes))
    assert differs(var, 0.99 * rv + 0.01 * x.var(axis=axes, ddof=1))
    assert differs(mean, 0.01 * rm + 0.99 * x.mean(axis=axes))


# ---------------------------------------------------------------------------
# tf.keras 2 (the tf_keras package on TensorFlow): the fused path

@pytest.fixture(scope="module")
def tf_keras():
    quiet_import("tensorflow", "the tf.keras 2 check needs tensorflow and tf_keras")
    return quiet_import("tf_keras", "the tf.keras 2 check needs tf_keras: "
                        "pip install tf_keras")


def _tf_keras2_step(tf_keras, xs, dtype, w, b, rm, rv):
    """The layer after training on xs, and its outputs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bn = tf_keras.layers.BatchNormalization(dtype=dtype)
        bn.build(xs[0].shape)
        bn.set_weights([np.asarray(v, dtype) for v in (w, b, rm, rv)])
        ys = [bn(x.astype(dtype), training=True).numpy() for x in xs]
    return bn, ys


@pytest.mark.parametrize("rank, dtype", [(4, "float32"), (5, "float32"), (2, "float32"),
                                         (4, "float64")])
def test_tf_keras2_oracle_matches_fused_and_unfused_paths(tf_keras, rank, dtype):
    # float32 runs are compared as Keras 3's (KERAS_TOL), float64 ones at TOL
    tol = TOL if dtype == "float64" else KERAS_TOL
    fused = cv.tf_keras2_uses_fused(rank, -1, dtype)
    w, b, rm, rv = (v.astype(dtype).astype(np.float64) for v in params(3))
    for x in batches(shape_of(rank, True), True):
        x = x.astype(dtype).astype(np.float64)
        bn, (y,) = _tf_keras2_step(tf_keras, [x], dtype, w, b, rm, rv)
        assert bn.fused == fused
        y_ref, rm, rv = cv.tf_keras2_train(x, w, b, rm, rv, fused=fused)
        np.testing.assert_allclose(y, y_ref, **tol)
        np.testing.assert_allclose(bn.moving_mean.numpy(), rm, **tol)
        np.testing.assert_allclose(bn.moving_variance.numpy(), rv, **tol)
        w, b, rm, rv = (v.numpy().astype(np.float64) for v in bn.weights)


def test_tf_keras2_fused_moving_variance_is_unbiased_unfused_biased(tf_keras):
    for rank, fused in ((4, True), (2, False)):
        x, = float32_values(batches(shape_of(rank, True), True)[0])
        w, b, rm, rv = float32_values(*params(3))
        bn, _ = _tf_keras2_step(tf_keras, [x], "float32", w, b, rm, rv)
        assert bn.fused == fused
        axes = tuple(range(rank - 1))
        unbiased = 0.99 * rv + 0.01 * x.var(axis=axes, ddof=1)
        biased = 0.99 * rv + 0.01 * x.var(axis=axes)
        mv = bn.moving_variance.numpy()
        keras_close(mv, unbiased if fused else biased)
        assert keras_differs(mv, biased if fused else unbiased)


def test_new_layers_start_with_the_tables_running_statistics(request):
    """PyTorch, Keras 3 and Flax, whichever are installed."""
    starts = {}
    try:
        torch = request.getfixturevalue("torch")
        bn = torch.nn.BatchNorm2d(3)
        starts["pytorch"] = (bn.running_mean.numpy(), bn.running_var.numpy())
    except pytest.skip.Exception:
        pass
    try:
        keras = request.getfixturevalue("keras")
        with keras_quiet():
            bn = keras.layers.BatchNormalization()
            bn.build((2, 3))
            starts["keras"] = (bn.moving_mean.value, bn.moving_variance.value)
    except pytest.skip.Exception:
        pass
    try:
        jax, flax_linen = (request.getfixturevalue(n) for n in ("jax", "flax_linen"))
        with keras_quiet():
            variables = flax_linen.BatchNorm(use_running_average=False).init(
                jax.random.PRNGKey(0), np.ones((2, 3), np.float32))
        starts["flax"] = (variables["batch_stats"]["mean"], variables["batch_stats"]["var"])
    except pytest.skip.Exception:
        pass
    if not starts:
        pytest.skip("none of torch, keras, flax is installed")
    for key, (mean, var) in starts.items():
        expected_mean, expected_var = cv.CONVENTIONS[key].init
        np.testing.assert_array_equal(np.asarray(mean), np.full(3, expected_mean), key)
        np.testing.assert_array_equal(np.asarray(var), np.full(3, expected_var), key)


# ---------------------------------------------------------------------------
# Darknet: against bnkernels.darknet, the per-kernel port of Darknet's CPU code

@pytest.mark.parametrize("fork, layer, shape", [
    ("pjreddie", "convolutional", (4, 3, 2, 3)),
    ("pjreddie", "connected", (6, 3, 1, 1)),
    ("alexeyab", "convolutional", (4, 3, 2, 3)),
    ("alexeyab", "connected", (6, 3, 1, 1)),
])
def test_darknet_oracle_matches_the_darknet_kernels(fork, layer, shape):
    xs = batches(shape)
    w, b, rm, rv = params(3)
    momentum = cv.DARKNET_MOMENTUM[fork, layer]
    for x in xs:
        mean = darknet.mean_cpu(x)
        variance = darknet.variance_cpu(x, mean)
        y = darknet.add_bias(darknet.scale_bias(
            darknet.normalize_cpu(x, mean, variance, numerics=numerics_of(fork)), w), b)
        rm_k = darknet.rolling_update(rm.copy(), mean, momentum=momentum)
        rv_k = darknet.rolling_update(rv.copy(), variance, momentum=momentum)
        # a [connected] layer's output is (batch, outputs): spatial 1
        x_fw = x.reshape(shape[:2]) if layer == "connected" else x
        y_ref, rm, rv = cv.darknet_train(x_fw, w, b, rm, rv, fork=fork, layer=layer)
        close(y.reshape(y_ref.shape), y_ref)
        close(rm_k, rm)
        close(rv_k, rv)
    y = darknet.add_bias(darknet.scale_bias(
        darknet.normalize_cpu(xs[0], rm, rv, numerics=numerics_of(fork)), w), b)
    close(y, cv.darknet_infer(xs[0], w, b, rm, rv, fork=fork))


def test_darknet_normalizes_with_the_unbiased_variance():
    x = batches((4, 3, 2, 3))[0]
    w, b, rm, rv = params(3)
    y, _, _ = cv.darknet_train(x, w, b, rm, rv, fork="alexeyab")
    biased = cv._standard_infer(x, w, b, x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3)),
                                cv.DARKNET_EPS["alexeyab"], False)
    assert differs(y, biased)


# ---------------------------------------------------------------------------
# Caffe: the normalized accumulation is a torch-style update with momentum 1/s_t

@pytest.mark.parametrize("fraction", [cv.CAFFE_FRACTION, 0.9, 0.5, 1.0])
def test_caffe_accumulation_is_a_moving_average_with_momentum_one_over_s(fraction):
    xs = batches(shape_of(4), steps=6)
    blobs = cv.caffe_new_blobs(3)
    _, _, rm, rv = params(3)                 # any start: the first momentum is 1
    n = xs[0].size // 3
    for x, momentum in zip(xs, cv.caffe_momenta(len(xs), fraction)):
        _, blobs = cv.caffe_train(x, blobs, moving_average_fraction=fraction)
        rm = (1 - momentum) * rm + momentum * x.mean(axis=(0, 2, 3))
        rv = (1 - momentum) * rv + momentum * x.var(axis=(0, 2, 3)) * n / (n - 1)
        mean, var = cv.caffe_global_stats(blobs)
        close(mean, rm)
        close(var, rv)


def test_caffe_momentum_tends_to_one_minus_fraction():
    momenta = cv.caffe_momenta(20000, 0.999)
    assert momenta[0] == 1.0
    np.testing.assert_allclose(momenta[-1], 1 - 0.999, rtol=1e-6)
    close(momenta[99], (1 - 0.999) / (1 - 0.999 ** 100))


def test_caffe_with_fraction_one_is_torch_momentum_none(torch):
    xs = batches(shape_of(4), steps=5)
    blobs = cv.caffe_new_blobs(3)
    bn = torch.nn.BatchNorm2d(3, momentum=None, affine=False, dtype=torch.float64)
    for x in xs:
        y_ref, blobs = cv.caffe_train(x, blobs, moving_average_fraction=1.0, eps=1e-5)
        with torch.no_grad():
            y = bn(torch.from_numpy(x))
        mean, var = cv.caffe_global_stats(blobs)
        close(y.numpy(), y_ref)
        close(bn.running_mean.numpy(), mean)
        close(bn.running_var.numpy(), var)
    assert blobs.scale_factor == len(xs) == int(bn.num_batches_tracked)


def test_caffe_inference_before_training_uses_zero_statistics():
    x = batches(shape_of(4))[0]
    close(cv.caffe_infer(x, cv.caffe_new_blobs(3)), x / np.sqrt(cv.CAFFE_EPS))


# ---------------------------------------------------------------------------
# bnkernels with the table's arguments against each framework's oracle.
# Until issue 21's API lands (running_var_ddof=, x of any rank), only the
# 4-D rows with the unbiased running variance (today's behaviour) run.

_FORWARD_PARAMS = inspect.signature(bnkernels.batch_norm_forward).parameters
HAS_ISSUE21_API = "running_var_ddof" in _FORWARD_PARAMS


def bnkernels_kwargs(kwargs, rank):
    kwargs = dict(kwargs)
    if not HAS_ISSUE21_API:
        if kwargs.pop("running_var_ddof", 1) != 1 or rank != 4:
            pytest.skip("needs issue 21's batch_norm_forward(running_var_ddof=, "
                        "x of any rank)")
    return kwargs


ROWS = [(key, rank) for key, row in cv.CONVENTIONS.items() for rank in row.ranks]


@pytest.mark.parametrize("key, rank", ROWS, ids=[f"{k}-rank{r}" for k, r in ROWS])
def test_bnkernels_reproduces_the_framework_with_the_table_arguments(key, rank):
    row = cv.CONVENTIONS[key]
    kwargs = bnkernels_kwargs(row.kwargs, rank)
    xs = batches(shape_of(rank, row.channels_last), row.channels_last)
    w, b, rm, rv = params(3)
    rm_k, rv_k = rm.copy(), rv.copy()
    for x in xs:
        x_in = x.copy()
        y, _ = bnkernels.batch_norm_forward(x_in, w, b, rm_k, rv_k, training=True, **kwargs)
        y_ref, rm, rv = row.train(x, w, b, rm, rv)
        np.testing.assert_array_equal(x_in, x)
        close(y, y_ref)
        close(rm_k, rm)
        close(rv_k, rv)
    y, _ = bnkernels.batch_norm_forward(xs[0], w, b, rm_k, rv_k, training=False, **kwargs)
    close(y, row.infer(xs[0], w, b, rm, rv))


@pytest.mark.parametrize("fraction", [cv.CAFFE_FRACTION, 1.0])
def test_bnkernels_reproduces_caffe_with_momentum_one_over_s(fraction):
    kwargs = bnkernels_kwargs(dict(eps=cv.CAFFE_EPS, running_var_ddof=1, layout="NCHW"), 4)
    xs = batches(shape_of(4), steps=4)
    blobs = cv.caffe_new_blobs(3)
    rm, rv = np.zeros(3), np.ones(3)         # overwritten: the first momentum is 1
    for x, momentum in zip(xs, cv.caffe_momenta(len(xs), fraction)):
        y, _ = bnkernels.batch_norm_forward(x, None, None, rm, rv, training=True,
                                            momentum=momentum, **kwargs)
        y_ref, blobs = cv.caffe_train(x, blobs, moving_average_fraction=fraction)
        mean, var = cv.caffe_global_stats(blobs)
        close(y, y_ref)
        close(rm, mean)
        close(rv, var)
    y, _ = bnkernels.batch_norm_forward(xs[0], None, None, rm, rv, training=False, **kwargs)
    close(y, cv.caffe_infer(xs[0], blobs))
