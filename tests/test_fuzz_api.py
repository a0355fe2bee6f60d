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
