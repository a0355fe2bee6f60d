"""Fuzzing the public Python API with Hypothesis.

Every public function is called with valid arguments in which one argument
is then mutated: another dtype (int, bool, float16, complex, object, the
other float), a non-contiguous, reversed (negative stride) or broadcast
(zero stride) view, the other byte order, another ndim, one channel too many
or too few, an `out` that partially overlaps an input; or, staying valid,
read-only inputs, NaN and Inf values, sizes of 0 and 1.

Oracle: a mutation that leaves the call valid must give the result of the
same call on clean copies of the arguments (NaN where it has NaN); an
invalid one must raise TypeError or ValueError. Either way the inputs are
left bitwise unchanged and nothing is written outside `out`, which lives
between guard bytes. The default profile is derandomized (the same examples
on every run); BNKERNELS_FUZZ_EXAMPLES=N draws N random examples per test.

The convolution and pooling layers are fuzzed on their geometry: kernel_size,
stride and padding from ordinary and hostile values (0, negative, 2**31,
2**60 + 1, 2**63, bools, floats, NaN, None, strings, wrong lengths), against
the documented rules and the naive loops of test_conv_pool.py.
"""
import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import bnkernels
from bnkernels import darknet, distributed

EXAMPLES = int(os.environ.get("BNKERNELS_FUZZ_EXAMPLES", "0"))
SETTINGS = settings(max_examples=EXAMPLES or 250, deadline=None, derandomize=not EXAMPLES,
                    database=None, suppress_health_check=list(HealthCheck))

GUARD = 64  # bytes on each side of an out array


# ---------------------------------------------------------------------------
# the public functions: name -> (build arguments, call)
# ---------------------------------------------------------------------------

def tensors(rng, shape, dtype, *names):
    return {n: (rng.standard_normal(shape) * 2 + 0.5).astype(dtype) for n in names}


def vectors(rng, c, dtype, *names, positive=False):
    return {n: (rng.uniform(0.5, 2, c) if positive else rng.standard_normal(c)).astype(dtype)
            for n in names}


def darknet_stats(x):
    mean = darknet.mean_cpu(x)
    with np.errstate(all="ignore"):
        return mean, np.abs(darknet.variance_cpu(x, mean)) + x.dtype.type(0.1)


def build(name, rng, shape, dtype):
    """Valid arguments of `name`: (positional dict, names of outputs it may
    write in place)."""
    c = shape[1]
    if name in ("mean_cpu", "backward_bias", "shard_moments"):
        return tensors(rng, shape, dtype, "x"), ()
    if name == "variance_cpu":
        a = tensors(rng, shape, dtype, "x")
        a["mean"] = darknet_stats(a["x"])[0]
        return a, ()
    if name == "normalize_cpu":
        a = tensors(rng, shape, dtype, "x")
        a["mean"], a["variance"] = darknet_stats(a["x"])
        return a, ()
    if name in ("scale_bias", "add_bias"):
        return {**tensors(rng, shape, dtype, "x"), **vectors(rng, c, dtype, "v")}, ()
    if name == "scale_add_bias":
        return {**tensors(rng, shape, dtype, "x"), **vectors(rng, c, dtype, "s", "b")}, ()
    if name == "rolling_update":
        return vectors(rng, c, dtype, "rolling", "stat"), ("rolling",)
    if name == "backward_scale_cpu":
        return tensors(rng, shape, dtype, "x_norm", "delta"), ()
    if name in ("mean_delta_cpu", "variance_delta_cpu", "normalize_delta_cpu",
                "backward_batchnorm_layer"):
        a = tensors(rng, shape, dtype, "x", "delta", "x_norm")
        a["mean"], a["variance"] = darknet_stats(a["x"])
        a.update(vectors(rng, c, dtype, "md", "vd", "scales"))
        used = {"mean_delta_cpu": ("delta", "variance"),
                "variance_delta_cpu": ("x", "delta", "mean", "variance"),
                "normalize_delta_cpu": ("x", "mean", "variance", "md", "vd", "delta"),
                "backward_batchnorm_layer": ("x", "x_norm", "delta", "mean", "variance",
                                             "scales")}[name]
        return {k: a[k] for k in used}, ()
    if name.endswith("BatchNorm2d"):
        return {**tensors(rng, shape, dtype, "x", "dy"), "channels": c,
                "dtype": np.dtype(dtype)}, ()
    if name.startswith("batch_norm"):
        a = tensors(rng, shape, dtype, "x", "dy")
        a.update(vectors(rng, c, dtype, "weight", "bias"))
        a.update(vectors(rng, c, dtype, "running_var", positive=True))
        a.update(vectors(rng, c, dtype, "running_mean"))
        return a, ("running_mean", "running_var")
    if name == "merge_moments":
        k = 3
        return {"counts": np.array([2.0, 0.0, 5.0])[:k],
                "means": rng.standard_normal((k, c)), "m2s": rng.uniform(0, 2, (k, c))}, ()
    raise KeyError(name)


def call(name, a, out=None):
    o = {} if out is None else {"out": out}
    if name == "mean_cpu":
        return darknet.mean_cpu(a["x"], **o)
    if name == "variance_cpu":
        return darknet.variance_cpu(a["x"], a["mean"], **o)
    if name == "normalize_cpu":
        return darknet.normalize_cpu(a["x"], a["mean"], a["variance"], **o)
    if name == "scale_bias":
        return darknet.scale_bias(a["x"], a["v"], **o)
    if name == "add_bias":
        return darknet.add_bias(a["x"], a["v"], **o)
    if name == "scale_add_bias":
        return darknet.scale_add_bias(a["x"], a["s"], a["b"], **o)
    if name == "rolling_update":
        return darknet.rolling_update(a["rolling"], a["stat"])
    if name == "backward_bias":
        return darknet.backward_bias(a["x"], **o)
    if name == "backward_scale_cpu":
        return darknet.backward_scale_cpu(a["x_norm"], a["delta"], **o)
    if name == "mean_delta_cpu":
        return darknet.mean_delta_cpu(a["delta"], a["variance"], **o)
    if name == "variance_delta_cpu":
        return darknet.variance_delta_cpu(a["x"], a["delta"], a["mean"], a["variance"], **o)
    if name == "normalize_delta_cpu":
        return darknet.normalize_delta_cpu(a["x"], a["mean"], a["variance"], a["md"], a["vd"],
                                           a["delta"], **o)
    if name == "backward_batchnorm_layer":
        return darknet.backward_batchnorm_layer(a["x"], a["x_norm"], a["delta"], a["mean"],
                                                a["variance"], a["scales"], **o)
    if name.startswith("batch_norm"):
        numerics = name.split(":")[1]
        y, saved = bnkernels.batch_norm_forward(
            a["x"], a["weight"], a["bias"], a["running_mean"], a["running_var"],
            numerics=numerics, **o)
        return (y,) + tuple(bnkernels.batch_norm_backward(a["dy"], saved))
    if name.endswith("BatchNorm2d"):
        kind = distributed.SyncBatchNorm2d if name.startswith("Sync") else bnkernels.BatchNorm2d
        layer = kind(a["channels"], dtype=a["dtype"], activation="relu")
        return layer(a["x"]), layer.backward(a["dy"])
    if name == "shard_moments":
        return distributed.shard_moments(a["x"])
    if name == "merge_moments":
        return distributed.merge_moments(a["counts"], a["means"], a["m2s"])
    raise KeyError(name)


TENSOR_OUT = {"normalize_cpu", "scale_bias", "add_bias", "scale_add_bias",
              "normalize_delta_cpu", "backward_batchnorm_layer", "batch_norm:standard",
              "batch_norm:darknet"}
VECTOR_OUT = {"mean_cpu", "variance_cpu", "backward_bias", "backward_scale_cpu",
              "mean_delta_cpu", "variance_delta_cpu"}
# out may be this input itself (Darknet works in place)
IN_PLACE = {"normalize_cpu": "x", "scale_bias": "x", "add_bias": "x", "scale_add_bias": "x",
            "normalize_delta_cpu": "delta", "backward_batchnorm_layer": "delta"}
# distributed.merge_moments is left out: it converts any array-like of
# per-shard numbers to float64 on purpose (tested in test_distributed.py).
FUNCTIONS = sorted(TENSOR_OUT | VECTOR_OUT | {"rolling_update", "shard_moments",
                                              "BatchNorm2d", "SyncBatchNorm2d"})


# ---------------------------------------------------------------------------
# mutations
# ---------------------------------------------------------------------------

def mutate(kind, value, rng):
    """(new value, still valid?)"""
    if kind == "readonly":
        value = value.copy()
        value.flags.writeable = False
        return value, True
    if kind == "nan_inf":
        value = value.copy()
        if value.size and value.dtype.kind == "f":
            value.flat[rng.integers(value.size)] = rng.choice([np.nan, np.inf, -np.inf])
        return value, True
    if kind.startswith("dtype:"):
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NaN to int, complex to real: values don't matter
            return value.astype(kind[6:]), False
    # layouts: valid exactly when the view is still C-contiguous (NumPy calls
    # any array of size 0, or of one element per reversed axis, contiguous)
    if kind == "noncontiguous":
        wide = np.repeat(value, 2, axis=-1)
        view = wide[..., ::2]
        return view, view.flags.c_contiguous
    if kind == "reversed":
        view = value[::-1]
        return view, view.flags.c_contiguous
    if kind == "broadcast":
        view = np.broadcast_to(value.reshape(-1)[:1], value.shape) if value.size else value
        return view, view.flags.c_contiguous
    if kind == "byteswapped":
        return value.astype(value.dtype.newbyteorder()), value.dtype.itemsize == 1
    if kind == "ndim":  # a tensor flattened to 1-D (any rank >= 2 is valid), a vector 2-D
        return (value.reshape(-1) if value.ndim >= 2 else value[None]), False
    if kind == "channels":
        axis = 1 if value.ndim == 4 else value.ndim - 1
        width = [(0, 0)] * value.ndim
        width[axis] = (0, 1)
        return np.pad(value, width), False
    raise KeyError(kind)


MUTATIONS = ["readonly", "nan_inf", "dtype:int32", "dtype:bool", "dtype:float16",
             "dtype:complex64", "dtype:object", "noncontiguous", "reversed", "broadcast",
             "byteswapped", "ndim", "channels"]


def guarded(like):
    """An array shaped like `like` inside a buffer with guard bytes around it."""
    raw = np.full(like.nbytes + 2 * GUARD, 0xAB, np.uint8)
    view = raw[GUARD:GUARD + like.nbytes].view(like.dtype).reshape(like.shape)
    return raw, view


def same(result, expected):
    results = result if isinstance(result, tuple) else (result,)
    expecteds = expected if isinstance(expected, tuple) else (expected,)
    assert len(results) == len(expecteds)
    for r, e in zip(results, expecteds):
        if r is None or e is None:
            assert r is None and e is None
            continue
        r, e = np.asarray(r, np.float64), np.asarray(e, np.float64)
        assert r.shape == e.shape
        assert np.array_equal(np.isnan(r), np.isnan(e))
        finite = np.isfinite(e)
        np.testing.assert_allclose(r[finite], e[finite], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", FUNCTIONS)
@SETTINGS
@given(data=st.data())
def test_mutated_argument_gives_the_clean_result_or_a_clear_error(name, data):
    dtype = data.draw(st.sampled_from([np.float32, np.float64]), label="dtype")
    shape = tuple(data.draw(st.lists(st.integers(0, 3), min_size=4, max_size=4),
                            label="shape"))
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    rng = np.random.default_rng(seed)
    args, written = build(name, rng, shape, dtype)
    target = data.draw(st.sampled_from(sorted(k for k, v in args.items()
                                               if isinstance(v, np.ndarray))),
                       label="argument")
    kind = data.draw(st.sampled_from(MUTATIONS), label="mutation")
    if kind == "channels" and len(args) == 1:
        kind = "ndim"  # one array alone: any channel count is a valid input
    clean = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in args.items()}
    args[target], valid = mutate(kind, args[target], rng)
    if target in written and not args[target].flags.writeable:
        valid = False  # updated in place: must be writeable
    use_out = name in TENSOR_OUT | VECTOR_OUT and data.draw(st.booleans(), label="out")
    out_raw = out = None
    if use_out:
        like = next(clean[k] for k in ("x", "delta", "x_norm") if k in clean)
        like = like.sum(axis=(0, 2, 3)) if name in VECTOR_OUT else like
        out_raw, out = guarded(np.ascontiguousarray(like, dtype))
        if name in TENSOR_OUT and shape[0] * shape[1] * shape[2] * shape[3] > 1 and \
                data.draw(st.booleans(), label="out overlaps an input partially"):
            source = "x" if "x" in args else sorted(
                k for k, v in args.items() if np.ndim(v) == 4)[0]
            value = np.asarray(args[source])
            buffer = np.empty(value.size + 1, value.dtype)
            buffer[:-1] = value.reshape(-1)
            args[source] = buffer[:-1].reshape(value.shape)
            out_raw, out = None, buffer[1:].reshape(value.shape)
            valid = False
        elif data.draw(st.booleans(), label="out is an input itself"):
            same_shape = sorted(k for k, v in args.items() if isinstance(v, np.ndarray)
                                and v.shape == out.shape and v.dtype == out.dtype
                                and v.flags.c_contiguous and v.flags.writeable)
            if name.startswith("batch_norm"):
                same_shape = [k for k in same_shape if k != "dy"]  # not the forward's
            if same_shape:
                alias = data.draw(st.sampled_from(same_shape), label="out aliases")
                out_raw, out = None, args[alias]
                # in place is documented for an elementwise kernel's main input
                # only; batch_norm_forward accepts out=x, and its backward then
                # raises (x is gone)
                valid = valid and (IN_PLACE.get(name) == alias or (
                    out.size == 0 and not name.startswith("batch_norm")))
                written = written + (alias,)
    snapshot = {k: np.asarray(v).tobytes() for k, v in args.items()
                if k not in written and isinstance(v, np.ndarray)}
    expected = None
    if valid:
        fresh = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in clean.items()}
        if kind == "nan_inf":
            fresh[target] = np.array(args[target], copy=True)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            try:
                expected = call(name, fresh)
            except ValueError:  # e.g. one value per channel in standard training
                expected = ValueError
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            result = call(name, args, out=out)
            raised = None
        except (TypeError, ValueError) as error:
            raised = error
    for k, before in snapshot.items():
        assert np.asarray(args[k]).tobytes() == before, f"{name} modified input {k}"
    if out_raw is not None:
        assert (out_raw[:GUARD] == 0xAB).all() and (out_raw[-GUARD:] == 0xAB).all(), \
            f"{name} wrote outside out"
    if not valid:
        assert raised is not None, f"{name} accepted {kind} {target}"
        return
    if expected is ValueError:
        assert isinstance(raised, ValueError)
        return
    assert raised is None, f"{name} rejected a valid {kind} {target}: {raised}"
    same(result, expected)


# ---------------------------------------------------------------------------
# the convolution and pooling layers on random geometries, hostile ones
# among them
# ---------------------------------------------------------------------------

# the naive float64 loops of tests/test_conv_pool.py (window by window, Python
# integers: exact for huge strides and paddings too)
from test_conv_pool import (  # noqa: E402
    naive_avg_pool, naive_avg_pool_backward, naive_col2im, naive_im2col, naive_max_pool,
    naive_max_pool_backward, out_size,
)

from bnkernels.nn import layers  # noqa: E402

LAYER_HOSTILE = [0, -1, 2**31, 2**32 + 1, 2**60, 2**60 + 1, 2**63, True, 2.0, float("nan"),
                 None, "2", (2,), (1, 2, 3), (2**40, 1), (1, 2**59)]
SEED_STRATEGY = st.integers(0, 2**32 - 1)
LAYER_SETTINGS = settings(max_examples=EXAMPLES or 600, deadline=None,
                          derandomize=not EXAMPLES, database=None,
                          suppress_health_check=list(HealthCheck))


def layer_size():
    ordinary = st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3)))
    return st.one_of(ordinary, ordinary, ordinary, st.sampled_from(LAYER_HOSTILE))


def layer_pair(value, minimum):
    """The layers' rule for kernel_size, stride and padding: an (h, w) pair,
    or None when the constructor must raise ValueError."""
    def is_int(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
    pair = (value, value) if is_int(value) else value
    if not isinstance(pair, tuple) or len(pair) != 2 or not all(map(is_int, pair)):
        return None
    if min(pair) < minimum or max(pair) > 2**60:
        return None
    return pair


@pytest.mark.parametrize("kind", ["Conv2d", "MaxPool2d", "AvgPool2d"])
@LAYER_SETTINGS
@given(data=st.data())
def test_layer_on_a_random_geometry_gives_the_loops_result_or_a_clear_error(kind, data):
    """Constructor arguments from ordinary and hostile values; then a small
    input. Oracle: the documented rules say whether the constructor and the
    forward must raise ValueError; otherwise forward and backward equal the
    naive float64 loops (the convolution as weight @ im2col), to 1e-10 in
    float64 and 1e-4 in float32 (at most 3 * 3 * 3 products summed). A call
    that raises leaves the input, the parameters and the gradients as they
    were."""
    dtype = data.draw(st.sampled_from([np.float32, np.float64]), label="dtype")
    kernel = data.draw(layer_size(), label="kernel_size")
    stride = data.draw(st.one_of(st.none(), layer_size()) if kind != "Conv2d" else layer_size(),
                       label="stride")
    padding = data.draw(st.one_of(st.just(0), st.just(0), st.just(0), layer_size()),
                        label="padding")
    ceil_mode = data.draw(st.booleans(), label="ceil_mode")
    c_in = data.draw(st.integers(1, 3), label="in_channels")
    shape = (data.draw(st.integers(1, 2), label="N"), c_in,
             data.draw(st.integers(1, 6), label="H"), data.draw(st.integers(1, 6), label="W"))
    k, p = layer_pair(kernel, 1), layer_pair(padding, 0)
    s = k if stride is None and kind != "Conv2d" else layer_pair(stride, 1)
    valid = None not in (k, s, p) and (kind == "Conv2d" or all(
        2 * p[a] <= k[a] for a in (0, 1)))
    if valid and kind == "Conv2d" and 2 * c_in * k[0] * k[1] > 10**7:
        return  # a weight too large for memory: NumPy's MemoryError, not asked for here
        # (an AddressSanitizer build aborts on such a request instead)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            if kind == "Conv2d":
                layer = layers.Conv2d(c_in, 2, kernel, stride, padding, dtype=dtype, rng=0)
            elif kind == "MaxPool2d":
                layer = layers.MaxPool2d(kernel, stride, padding, ceil_mode)
            else:
                layer = layers.AvgPool2d(kernel, stride, padding, ceil_mode)
        except ValueError:
            assert not valid, f"{kind} refused valid arguments"
            return
    assert valid, f"{kind} accepted kernel_size={kernel!r}, stride={stride!r}, " \
                  f"padding={padding!r}"
    pool_ceil = ceil_mode and kind != "Conv2d"
    out = [out_size(shape[2 + a], k[a], s[a], p[a], pool_ceil) for a in (0, 1)]
    x = np.random.default_rng(data.draw(SEED_STRATEGY, label="seed")).standard_normal(
        shape).astype(dtype)
    x_before = x.copy()
    params = [(value.copy(), grad.copy()) for value, grad in layer.parameters()]
    n, c = shape[:2]
    windows = n * c * k[0] * k[1] * max(out[0], 0) * max(out[1], 0)
    if min(out) < 1 or (out[0] * out[1] * k[0] * k[1] > (2**63 - 1) // 8):
        with pytest.raises(ValueError):
            layer.forward(x)
        np.testing.assert_array_equal(x, x_before)
        for (value, grad), (v0, g0) in zip(layer.parameters(), params):
            np.testing.assert_array_equal(value, v0)
            np.testing.assert_array_equal(grad, g0)
        return
    if windows > 20_000 or out[0] * out[1] > 20_000:
        return  # valid, but too large for the loops here (and im2col's checks are
        # tested in test_conv_pool.py)
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-4)
    x64 = x.astype(np.float64)
    y = layer.forward(x)
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    dx = layer.backward(dy)
    dy64 = dy.astype(np.float64)
    if kind == "Conv2d":
        cols = naive_im2col(x64, k, s, p)
        w = params[0][0].astype(np.float64).reshape(2, -1)
        expected = (np.matmul(w, cols) + params[1][0].astype(np.float64)[:, None]).reshape(
            y.shape)
        np.testing.assert_allclose(y, expected, **tol)
        g = dy64.reshape(n, 2, -1)
        np.testing.assert_allclose(dx, naive_col2im(np.matmul(w.T, g), shape, k, s, p), **tol)
        np.testing.assert_allclose(layer.grad_weight.reshape(2, -1),
                                   np.einsum("nop,nkp->ok", g, cols), **tol)
        np.testing.assert_allclose(layer.grad_bias, g.sum(axis=(0, 2)), **tol)
    elif kind == "MaxPool2d":
        y_ref, idx = naive_max_pool(x64, k, s, p, ceil_mode)
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_allclose(dx, naive_max_pool_backward(dy64, idx, shape), **tol)
    else:
        np.testing.assert_allclose(y, naive_avg_pool(x64, k, s, p, ceil_mode), **tol)
        np.testing.assert_allclose(dx, naive_avg_pool_backward(dy64, shape, k, s, p, ceil_mode),
                                   **tol)
    np.testing.assert_array_equal(x, x_before)

