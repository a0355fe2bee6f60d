"""Bad input gives the documented exception, with a message naming the argument.

Covers the checks at the boundary (bnkernels/_kernels.pyx: dtype, byte order,
ndim, channel count, C-contiguity, out= shape/dtype/writeability/aliasing), the
argument rules of batch_norm_forward / batch_norm_backward / BatchNorm2d, and
the edge cases the docstrings promise: an empty batch, one value per channel,
and no state change when a call fails.
"""
import re

import numpy as np
import pytest

import bnkernels
from bnkernels import darknet

C = 3
SHAPE = (2, C, 4, 4)


def tensor(dtype=np.float32, shape=SHAPE, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)


def channels(dtype=np.float32, value=None, c=C, seed=1):
    if value is not None:
        return np.full(c, value, dtype)
    return np.random.default_rng(seed).uniform(0.5, 2.0, c).astype(dtype)


def running_stats(dtype=np.float32, c=C):
    return np.zeros(c, dtype), np.ones(c, dtype)


def forward(x, numerics="standard", **kwargs):
    """batch_norm_forward with a weight, a bias and running statistics."""
    dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.float32
    c = x.shape[1] if x.ndim > 1 else C
    args = dict(weight=channels(dtype, c=c), bias=channels(dtype, 0.5, c=c),
                running_mean=running_stats(dtype, c)[0],
                running_var=running_stats(dtype, c)[1])
    args.update({k: kwargs.pop(k) for k in list(kwargs) if k in args})
    return bnkernels.batch_norm_forward(x, args["weight"], args["bias"],
                                        args["running_mean"], args["running_var"],
                                        numerics=numerics, **kwargs)


# ---------------------------------------------------------------------------
# dtype and byte order
# ---------------------------------------------------------------------------

BAD_DTYPES = pytest.mark.parametrize("dtype", [np.int32, np.float16, np.complex64],
                                     ids=["int32", "float16", "complex64"])


@BAD_DTYPES
def test_rejects_x_of_non_float32_float64_dtype_naming_x(dtype):
    x = tensor().astype(dtype)
    with pytest.raises(TypeError, match="x must have dtype float32 or float64"):
        darknet.mean_cpu(x)
    with pytest.raises(TypeError, match="x must have dtype float32 or float64"):
        forward(x)


@BAD_DTYPES
def test_rejects_per_channel_vector_of_non_float_dtype_naming_it(dtype):
    x = tensor()
    with pytest.raises(TypeError, match="weight has dtype .*, expected float32 to match x"):
        forward(x, weight=channels().astype(dtype))
    with pytest.raises(TypeError, match="scales has dtype .*, expected float32"):
        darknet.scale_bias(x, channels().astype(dtype))


@pytest.mark.parametrize("argument", ["weight", "bias", "running_mean", "running_var"])
def test_rejects_float64_vector_with_float32_x_in_batch_norm_naming_it(argument):
    with pytest.raises(TypeError,
                       match=f"{argument} has dtype float64, expected float32 to match x"):
        forward(tensor(np.float32), **{argument: channels(np.float64)})


def test_rejects_float64_mean_with_float32_x_in_darknet_kernels():
    x = tensor(np.float32)
    with pytest.raises(TypeError, match="mean has dtype float64, expected float32"):
        darknet.variance_cpu(x, channels(np.float64))
    with pytest.raises(TypeError, match="mean has dtype float64, expected float32"):
        darknet.normalize_cpu(x, channels(np.float64), channels(np.float32))
    with pytest.raises(TypeError, match="variance has dtype float64, expected float32"):
        darknet.mean_delta_cpu(x, channels(np.float64))


def test_rejects_float64_delta_with_float32_x_naming_delta():
    x = tensor(np.float32)
    v = channels(np.float32)
    with pytest.raises(TypeError, match="delta has dtype float64, expected float32"):
        darknet.normalize_delta_cpu(x, v, v, v, v, tensor(np.float64))


def test_rejects_none_x_naming_x():
    with pytest.raises(TypeError, match="x must be an array, got None"):
        darknet.mean_cpu(None)
    with pytest.raises(TypeError, match="x must be an array, got None"):
        bnkernels.batch_norm_forward(None, None, None, None, None)


def test_rejects_big_endian_float32_x():
    x = tensor().astype(">f4")
    with pytest.raises(TypeError, match="x must have dtype .*native byte order"):
        darknet.mean_cpu(x)
    with pytest.raises(TypeError, match="x must have dtype .*native byte order"):
        forward(x)


def test_rejects_big_endian_float32_weight():
    with pytest.raises(TypeError, match="weight has dtype >f4, expected float32"):
        forward(tensor(), weight=channels().astype(">f4"))


# ---------------------------------------------------------------------------
# shape and layout
# ---------------------------------------------------------------------------

def test_rejects_1d_x_with_message_asking_for_two_axes():
    x = tensor(shape=(2 * C * 16,))
    with pytest.raises(ValueError, match=r"x must have at least 2 axes, \(N, C, \*spatial\)"):
        darknet.mean_cpu(x)
    with pytest.raises(ValueError, match=r"x must have at least 2 axes, \(N, C, \*spatial\)"):
        forward(x)
    with pytest.raises(ValueError, match="delta must have at least 2 axes"):
        darknet.backward_bias(x)


@pytest.mark.parametrize("argument", ["weight", "bias", "running_mean", "running_var"])
def test_rejects_per_channel_vector_with_wrong_channel_count(argument):
    with pytest.raises(ValueError,
                       match=rf"{argument} has shape \(4,\), expected \(3,\) to match "
                             r"x's 3 channels"):
        forward(tensor(), **{argument: channels(c=4)})


def test_rejects_darknet_vector_with_wrong_channel_count():
    x = tensor()
    with pytest.raises(ValueError, match=r"scales has shape \(2,\), expected \(3,\)"):
        darknet.scale_bias(x, channels(c=2))
    with pytest.raises(ValueError, match=r"variance has shape \(4,\), expected \(3,\)"):
        darknet.normalize_cpu(x, channels(), channels(c=4))
    with pytest.raises(ValueError, match=r"biases has shape \(1, 3\), expected \(3,\)"):
        darknet.add_bias(x, channels()[None, :])


def test_rejects_non_contiguous_x_with_clear_message():
    x = tensor(shape=(2, C, 4, 8))[:, :, ::2]
    with pytest.raises(ValueError, match=r"x must be C-contiguous.*ascontiguousarray\(x\)"):
        darknet.mean_cpu(x)
    with pytest.raises(ValueError, match="x must be C-contiguous"):
        forward(x)


def test_rejects_fortran_ordered_x_with_clear_message():
    x = np.asfortranarray(tensor())
    with pytest.raises(ValueError, match="x must be C-contiguous"):
        darknet.normalize_cpu(x, channels(), channels())


def test_rejects_non_contiguous_per_channel_vector():
    with pytest.raises(ValueError, match="weight must be C-contiguous"):
        forward(tensor(), weight=channels(c=2 * C)[::2])


# ---------------------------------------------------------------------------
# out=
# ---------------------------------------------------------------------------

def test_rejects_out_of_wrong_shape():
    x = tensor()
    with pytest.raises(ValueError, match=r"out has shape \(4,\), expected \(3,\)"):
        darknet.mean_cpu(x, out=np.empty(4, np.float32))
    with pytest.raises(ValueError, match=r"out has shape .*, expected \(2, 3, 4, 4\)"):
        darknet.scale_bias(x, channels(), out=np.empty((2, C, 4, 5), np.float32))


def test_rejects_out_of_wrong_dtype():
    x = tensor()
    with pytest.raises(TypeError, match="out has dtype float64, expected float32"):
        darknet.mean_cpu(x, out=np.empty(C, np.float64))
    with pytest.raises(TypeError, match="out has dtype float64, expected float32"):
        darknet.add_bias(x, channels(), out=np.empty(SHAPE, np.float64))


def test_rejects_out_that_is_not_an_array():
    with pytest.raises(TypeError, match=r"out must be an array bnkernels can write into "
                                        r"\(a NumPy array, or an object with __dlpack__.*got list"):
        darknet.mean_cpu(tensor(), out=[0.0] * C)


def test_rejects_read_only_out():
    out = np.empty(SHAPE, np.float32)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        darknet.scale_bias(tensor(), channels(), out=out)


def test_rejects_non_contiguous_out():
    out = np.empty((2, C, 4, 8), np.float32)[..., ::2]
    with pytest.raises(ValueError, match="out must be C-contiguous"):
        darknet.add_bias(tensor(), channels(), out=out)


def test_rejects_out_partially_overlapping_x():
    size = int(np.prod(SHAPE))
    buffer = tensor(shape=(size + 1,))
    x = buffer[:size].reshape(SHAPE)
    out = buffer[1:].reshape(SHAPE)
    before = buffer.copy()
    with pytest.raises(ValueError, match="out overlaps input x; it may be x itself"):
        darknet.scale_bias(x, channels(), out=out)
    np.testing.assert_array_equal(buffer, before)


def test_rejects_out_overlapping_a_per_channel_input():
    size = int(np.prod(SHAPE))
    buffer = np.zeros(size + C, np.float32)
    out = buffer[:size].reshape(SHAPE)
    scales = buffer[size - 1:size - 1 + C]
    with pytest.raises(ValueError, match="out overlaps input scales"):
        darknet.scale_bias(tensor(), scales, out=out)


def test_rejects_reduction_out_overlapping_x():
    x = tensor()
    with pytest.raises(ValueError, match="out overlaps input x"):
        darknet.mean_cpu(x, out=x.reshape(-1)[:C])
    with pytest.raises(ValueError, match="out overlaps input delta"):
        darknet.backward_bias(x, out=x.reshape(-1)[:C])


def test_rejects_out_equal_to_an_input_that_is_not_the_in_place_one():
    x, v = tensor(), channels()
    delta = tensor(seed=5)
    with pytest.raises(ValueError, match="out overlaps input x; it may be delta itself"):
        darknet.normalize_delta_cpu(x, v, v, v, v, delta, out=x)


@pytest.mark.parametrize("kernel", ["normalize_cpu", "scale_bias", "add_bias"])
def test_out_may_be_x_itself_for_elementwise_kernels(kernel):
    x, v = tensor(), channels()
    args = (v, v) if kernel == "normalize_cpu" else (v,)
    expected = getattr(darknet, kernel)(x, *args)
    result = getattr(darknet, kernel)(x, *args, out=x)
    assert result is x
    np.testing.assert_array_equal(result, expected)


def test_out_may_be_delta_itself_for_normalize_delta_cpu():
    x, v, delta = tensor(), channels(), tensor(seed=5)
    expected = darknet.normalize_delta_cpu(x, v, v, v, v, delta)
    result = darknet.normalize_delta_cpu(x, v, v, v, v, delta, out=delta)
    assert result is delta
    np.testing.assert_array_equal(result, expected)


# ---------------------------------------------------------------------------
# darknet flavors and rolling_update
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("call", [
    lambda x, v: darknet.normalize_cpu(x, v, v, numerics="yolo"),
    lambda x, v: darknet.normalize_delta_cpu(x, v, v, v, v, x, numerics="yolo"),
    lambda x, v: darknet.rolling_update(v.copy(), v, numerics="yolo"),
    lambda x, v: darknet.forward_eps("yolo"),
], ids=["normalize_cpu", "normalize_delta_cpu", "rolling_update", "forward_eps"])
def test_rejects_unknown_darknet_flavor(call):
    with pytest.raises(ValueError,
                       match="numerics must be 'darknet' or 'darknet-alexeyab', got 'yolo'"):
        call(tensor(), channels())


def test_rolling_update_rejects_read_only_rolling():
    rolling = channels()
    rolling.flags.writeable = False
    with pytest.raises(ValueError, match="rolling is read-only"):
        darknet.rolling_update(rolling, channels())


def test_rolling_update_rejects_rolling_of_other_dtype():
    with pytest.raises(TypeError, match="rolling has dtype float64, expected float32"):
        darknet.rolling_update(channels(np.float64), channels(np.float32))


def test_rolling_update_rejects_missing_rolling_array():
    with pytest.raises(TypeError, match="rolling"):
        darknet.rolling_update(None, channels())


# ---------------------------------------------------------------------------
# batch_norm_forward's argument rules
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("numerics", bnkernels.NUMERICS)
def test_running_mean_without_running_var_is_rejected(numerics):
    with pytest.raises(ValueError, match="running_mean and running_var must be given together"):
        forward(tensor(), numerics, running_var=None)
    with pytest.raises(ValueError, match="running_mean and running_var must be given together"):
        forward(tensor(), numerics, running_mean=None)


@pytest.mark.parametrize("numerics", bnkernels.NUMERICS)
def test_eval_mode_without_running_stats_is_rejected(numerics):
    with pytest.raises(ValueError, match="training=False .* both are None"):
        forward(tensor(), numerics, running_mean=None, running_var=None, training=False)


@pytest.mark.parametrize("argument", ["running_mean", "running_var"])
@pytest.mark.parametrize("numerics", bnkernels.NUMERICS)
def test_read_only_running_stats_are_rejected_in_training(numerics, argument):
    stat = running_stats()[0 if argument == "running_mean" else 1]
    stat.flags.writeable = False
    with pytest.raises(ValueError, match=f"{argument} is read-only"):
        forward(tensor(), numerics, **{argument: stat})


@pytest.mark.parametrize("numerics", bnkernels.NUMERICS)
def test_read_only_running_stats_are_accepted_in_eval_mode(numerics):
    mean, var = running_stats()
    mean.flags.writeable = var.flags.writeable = False
    y, _ = forward(tensor(), numerics, running_mean=mean, running_var=var, training=False)
    assert np.isfinite(y).all()


@pytest.mark.parametrize("numerics", ["Standard", "pytorch", "darknet-gpu", None])
def test_rejects_unknown_numerics(numerics):
    with pytest.raises(ValueError, match="numerics must be one of 'standard', 'darknet', "
                                         "'darknet-alexeyab'"):
        forward(tensor(), numerics)
    with pytest.raises(ValueError, match="numerics must be one of"):
        bnkernels.BatchNorm2d(C, numerics=numerics)


BAD_CALLS = {
    "bias of wrong shape": dict(bias=channels(c=C + 1)),
    "weight of wrong dtype": dict(weight=channels(np.float64)),
    "running_var of wrong shape": dict(running_var=np.ones(C + 1, np.float32)),
    "out of wrong shape": dict(out=np.empty((2, C, 4, 5), np.float32)),
    "out of wrong dtype": dict(out=np.empty(SHAPE, np.float64)),
    "out overlapping weight": "out overlapping weight",
}


@pytest.mark.parametrize("bad", BAD_CALLS)
@pytest.mark.parametrize("numerics", bnkernels.NUMERICS)
def test_failed_forward_leaves_running_stats_unchanged(numerics, bad):
    mean, var = np.array([0.5, -1.0, 2.0], np.float32), np.array([1.5, 0.25, 3.0], np.float32)
    before = mean.copy(), var.copy()
    kwargs = BAD_CALLS[bad]
    if kwargs == "out overlapping weight":
        out = np.zeros(SHAPE, np.float32)
        kwargs = dict(weight=out.reshape(-1)[:C], out=out)
    with pytest.raises((TypeError, ValueError)):
        forward(tensor(), numerics, **{"running_mean": mean, "running_var": var, **kwargs})
    np.testing.assert_array_equal(mean, before[0])
    np.testing.assert_array_equal(var, before[1])


# ---------------------------------------------------------------------------
# empty batch
# ---------------------------------------------------------------------------

DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64],
                                 ids=["float32", "float64"])
EMPTY = (0, C, 4, 4)


@DTYPES
@pytest.mark.parametrize("numerics", bnkernels.NUMERICS)
@pytest.mark.parametrize("training", [True, False], ids=["training", "eval"])
def test_empty_batch_gives_empty_y_and_keeps_running_stats(numerics, dtype, training):
    mean, var = np.array([0.5, -1.0, 2.0], dtype), np.array([1.5, 0.25, 3.0], dtype)
    x = np.zeros(EMPTY, dtype)
    y, _ = forward(x, numerics, running_mean=mean, running_var=var, training=training,
                   weight=channels(dtype), bias=channels(dtype, 0.5))
    assert y.shape == EMPTY and y.dtype == dtype
    np.testing.assert_array_equal(mean, np.array([0.5, -1.0, 2.0], dtype))
    np.testing.assert_array_equal(var, np.array([1.5, 0.25, 3.0], dtype))


@DTYPES
@pytest.mark.parametrize("numerics", bnkernels.NUMERICS)
def test_empty_batch_backward_gives_empty_dx_and_zero_parameter_gradients(numerics, dtype):
    x = np.zeros(EMPTY, dtype)
    _, saved = forward(x, numerics, weight=channels(dtype), bias=channels(dtype, 0.5))
    dx, dweight, dbias = bnkernels.batch_norm_backward(np.zeros(EMPTY, dtype), saved)
    assert dx.shape == EMPTY and dx.dtype == dtype
    np.testing.assert_array_equal(dbias, np.zeros(C, dtype))
    np.testing.assert_array_equal(dweight, np.zeros(C, dtype))


# ---------------------------------------------------------------------------
# one value per channel (N*H*W == 1)
# ---------------------------------------------------------------------------

ONE_VALUE = (1, C, 1, 1)


@DTYPES
def test_standard_training_with_one_value_per_channel_raises_like_pytorch(dtype):
    mean, var = running_stats(dtype)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        forward(tensor(dtype, ONE_VALUE), running_mean=mean, running_var=var)
    np.testing.assert_array_equal(mean, np.zeros(C, dtype))
    np.testing.assert_array_equal(var, np.ones(C, dtype))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        forward(tensor(dtype, ONE_VALUE), running_mean=None, running_var=None)


@DTYPES
@pytest.mark.parametrize("numerics", ["darknet", "darknet-alexeyab"])
def test_darknet_training_with_one_value_per_channel_warns_and_gives_nan(numerics, dtype):
    x = tensor(dtype, ONE_VALUE)
    mean, var = running_stats(dtype)
    with pytest.warns(RuntimeWarning, match="one value per channel"):
        y, saved = forward(x, numerics, running_mean=mean, running_var=var)
    assert np.isnan(saved.variance).all()
    assert np.isnan(y).all()
    assert np.isnan(var).all()
    assert np.isfinite(mean).all()
    momentum = bnkernels.defaults(numerics)[1]
    np.testing.assert_allclose(mean, momentum * x.reshape(C), rtol=1e-6)


@DTYPES
def test_darknet_variance_of_one_value_is_nan_without_warning(dtype):
    x = tensor(dtype, ONE_VALUE)
    assert np.isnan(darknet.variance_cpu(x, darknet.mean_cpu(x))).all()


@DTYPES
def test_standard_eval_with_one_value_per_channel_uses_running_stats(dtype):
    x = tensor(dtype, ONE_VALUE)
    mean = np.array([0.5, -1.0, 2.0], dtype)
    var = np.array([1.5, 0.25, 3.0], dtype)
    weight, bias = channels(dtype), channels(dtype, 0.5)
    y, _ = forward(x, running_mean=mean, running_var=var, weight=weight, bias=bias,
                   training=False)
    expected = ((x.reshape(C).astype(np.float64) - mean) / np.sqrt(var + 1e-5)
                * weight + bias)
    rtol = 1e-6 if dtype == np.float32 else 1e-14   # one rounding to dtype at the end
    np.testing.assert_allclose(y.reshape(C), expected, rtol=rtol)


# ---------------------------------------------------------------------------
# batch_norm_backward's argument rules
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("saved", [None, {"x": 0}, "saved"], ids=["None", "dict", "str"])
def test_backward_rejects_anything_but_batch_norm_saved(saved):
    with pytest.raises(TypeError, match="saved must be the BatchNormSaved"):
        bnkernels.batch_norm_backward(tensor(), saved)


def test_backward_rejects_the_reference_saved_object():
    _, saved = bnkernels.reference.batch_norm_forward(tensor(), None, None, None, None)
    with pytest.raises(TypeError, match="saved must be the BatchNormSaved.*got Saved"):
        bnkernels.batch_norm_backward(tensor(), saved)


@pytest.mark.parametrize("numerics", ["darknet", "darknet-alexeyab"])
def test_darknet_backward_after_eval_forward_raises(numerics):
    _, saved = forward(tensor(), numerics, training=False)
    with pytest.raises(ValueError, match="only after a training forward"):
        bnkernels.batch_norm_backward(tensor(seed=3), saved)


@pytest.mark.parametrize("training", [True, False], ids=["training", "eval"])
@pytest.mark.parametrize("numerics", bnkernels.NUMERICS)
def test_backward_after_forward_with_out_x_raises(numerics, training):
    x = tensor()
    _, saved = forward(x, numerics, training=training, out=x)
    with pytest.raises(ValueError, match=r"out=x.*x is gone"):
        bnkernels.batch_norm_backward(tensor(seed=3), saved)


@pytest.mark.parametrize("numerics", bnkernels.NUMERICS)
def test_backward_rejects_dy_of_wrong_shape_naming_dy(numerics):
    _, saved = forward(tensor(), numerics)
    with pytest.raises(ValueError, match=r"\bdy has shape .* to match x\b"):
        bnkernels.batch_norm_backward(tensor(shape=(2, C, 4, 3)), saved)


@pytest.mark.parametrize("numerics", bnkernels.NUMERICS)
def test_backward_rejects_dy_of_wrong_dtype_naming_dy(numerics):
    _, saved = forward(tensor(np.float32), numerics)
    with pytest.raises(TypeError, match=r"\bdy has dtype float64, expected float32"):
        bnkernels.batch_norm_backward(tensor(np.float64), saved)


@pytest.mark.parametrize("numerics", bnkernels.NUMERICS)
def test_backward_rejects_non_contiguous_dy_naming_dy(numerics):
    _, saved = forward(tensor(), numerics)
    dy = tensor(shape=(2, C, 4, 8))[..., ::2]
    with pytest.raises(ValueError, match=r"\bdy must be C-contiguous"):
        bnkernels.batch_norm_backward(dy, saved)


# ---------------------------------------------------------------------------
# BatchNorm2d
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.int32, np.float16, ">f4"])
def test_layer_rejects_non_float32_float64_dtype(dtype):
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        bnkernels.BatchNorm2d(C, dtype=dtype)


@pytest.mark.parametrize("num_features", [-1, 2.0, True, "3"])
def test_layer_rejects_bad_num_features(num_features):
    with pytest.raises(ValueError, match="num_features must be a non-negative int"):
        bnkernels.BatchNorm2d(num_features)


def test_layer_backward_before_forward_raises():
    layer = bnkernels.BatchNorm2d(C)
    with pytest.raises(RuntimeError, match="backward called before forward"):
        layer.backward(tensor())


def test_layer_rejects_input_with_other_channel_count():
    layer = bnkernels.BatchNorm2d(C + 1)
    with pytest.raises(ValueError, match=r"weight has shape \(4,\), expected \(3,\)"):
        layer.forward(tensor())
    np.testing.assert_array_equal(layer.running_mean, np.zeros(C + 1, np.float32))
    assert layer.num_batches_tracked == 0


def test_rejects_misaligned_array_with_clear_message():
    buffer = np.zeros(2 * 3 * 4 * 4 * 4 + 1, np.uint8)
    x = buffer[1:].view(np.float32).reshape(2, 3, 4, 4)
    assert not x.flags.aligned
    with pytest.raises(ValueError, match="x is not aligned"):
        darknet.mean_cpu(x)


# ---------------------------------------------------------------------------
# arrays that are not what they claim, and state that must not half-change
# ---------------------------------------------------------------------------

class _ShapeLiar(np.ndarray):
    """An ndarray subclass whose shape attribute lies about its memory."""
    shape = property(lambda self: (4096, 1, 1024, 1024))


def test_subclass_lying_about_its_shape_is_read_by_its_real_memory():
    x = np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)
    result = darknet.scale_bias(x.view(_ShapeLiar), np.float32([2.0]))
    assert result.shape == (1, 1, 2, 2)          # the real shape, not the lie
    np.testing.assert_array_equal(result, x * 2)


def test_rejects_masked_arrays_instead_of_ignoring_the_mask():
    x = np.ma.masked_array(np.ones((1, 1, 2, 2), np.float32), mask=True)
    with pytest.raises(TypeError, match="x is a masked array"):
        darknet.mean_cpu(x)


@pytest.mark.parametrize("numerics", bnkernels.NUMERICS)
def test_rejects_running_mean_and_running_var_sharing_memory(numerics):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    x_before = x.copy()
    running = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="running_mean overlaps running_var"):
        bnkernels.batch_norm_forward(x, None, None, running, running, numerics=numerics,
                                     out=x)
    np.testing.assert_array_equal(x, x_before)   # out=x was not written either
    assert not running.any()
    buffer = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="overlaps"):
        bnkernels.batch_norm_forward(x, None, None, buffer[:3], buffer[1:], numerics=numerics)
    assert not buffer.any()


@pytest.mark.parametrize("numerics", bnkernels.NUMERICS)
def test_rejects_out_overlapping_bias_before_writing_anything(numerics):
    x = np.random.default_rng(1).standard_normal((1, 2, 1, 2)).astype(np.float32)
    storage = np.zeros(6, np.float32)
    out, bias = storage[:4].reshape(1, 2, 1, 2), storage[3:5]
    running_mean, running_var = np.zeros(2, np.float32), np.ones(2, np.float32)
    with pytest.raises(ValueError, match="out overlaps input bias"):
        bnkernels.batch_norm_forward(x, None, bias, running_mean, running_var,
                                     numerics=numerics, out=out)
    assert not storage.any() and not running_mean.any() and (running_var == 1).all()


def test_rejects_running_stats_that_are_not_arrays_in_training():
    x = np.ones((2, 3, 2, 2))
    with pytest.raises(TypeError, match="running_mean must be an array bnkernels can write"):
        bnkernels.batch_norm_forward(x, None, None, [0.0] * 3, [1.0] * 3)
    y, _ = bnkernels.batch_norm_forward(x, None, None, [0.0] * 3, [1.0] * 3, training=False)
    assert y.shape == x.shape   # read-only use of lists is fine


# ---------------------------------------------------------------------------
# scalars, for every entry point that takes one (generated from the table of
# tests/entry_points.py)
# ---------------------------------------------------------------------------

from entry_points import BY_NAME, ENTRIES  # noqa: E402

EXPECTED_RANGE = {"eps": "finite and >= 0", "momentum": "finite and in [0, 1]"}
BAD_SCALARS = {
    "eps": [float("nan"), float("inf"), float("-inf"), -1e-5, np.float32(-1.0)],
    "momentum": [float("nan"), float("inf"), float("-inf"), -0.1, 1.5, np.float64(2.0)],
}
WRONG_TYPES = [True, False, np.bool_(True), "0.1", 1j, [0.1]]


def _scalar_cases():
    for entry in ENTRIES:
        for name, kind in entry.scalars.items():
            for value in BAD_SCALARS[kind]:
                yield pytest.param(entry.name, name, value, ValueError,
                                   id=f"{entry.name}-{name}={value!r}")
            for value in WRONG_TYPES:
                yield pytest.param(entry.name, name, value, TypeError,
                                   id=f"{entry.name}-{name}={value!r}")


def _snapshot(arrays):
    return {name: value.tobytes() for name, value in arrays.items()}


@pytest.mark.parametrize("entry, name, value, error", list(_scalar_cases()))
def test_bad_scalar_raises_naming_it_and_changes_nothing(entry, name, value, error):
    entry = BY_NAME[entry]
    arrays = entry.build(np.dtype(np.float32), np.random.default_rng(0))
    before = _snapshot(arrays)
    with pytest.raises(error) as raised:
        entry.call(arrays, **{name: value})
    message = str(raised.value)
    assert message.startswith(f"{name} must be"), message
    assert EXPECTED_RANGE[entry.scalars[name]] in message, message
    assert repr(value) in message, message
    assert _snapshot(arrays) == before


@pytest.mark.parametrize("entry", sorted(e.name for e in ENTRIES if e.scalars))
def test_scalars_at_the_ends_of_their_range_and_of_other_real_types_are_accepted(entry):
    """0 and the top of the range are valid (eps: ints; eps = 0 is refused
    with batch statistics, tested on its own), and an int or a NumPy scalar
    gives the same bits as the same value as a Python float."""
    entry = BY_NAME[entry]
    arrays = entry.build(np.dtype(np.float64), np.random.default_rng(3))
    for name, kind in entry.scalars.items():
        for value in ([0, np.float32(0.25), 1] if kind == "momentum" else
                      [1, np.float32(1e-3), 2]):
            given = {k: v.copy() for k, v in arrays.items()}
            as_float = {k: v.copy() for k, v in arrays.items()}
            with np.errstate(divide="ignore", invalid="ignore"):
                result = entry.call(given, **{name: value})
                expected = entry.call(as_float, **{name: float(value)})
            for key in expected:
                assert expected[key].tobytes() == result[key].tobytes(), (name, value, key)
            for key in arrays:
                assert given[key].tobytes() == as_float[key].tobytes(), (name, value, key)


@pytest.mark.parametrize("numerics", bnkernels.NUMERICS)
def test_momentum_0_keeps_the_running_stats_and_1_replaces_them(numerics):
    """Oracle: the definition, running = (1 - m) * running + m * batch."""
    x = tensor(np.float64)
    mean, var = np.array([0.5, -1.0, 2.0]), np.array([1.5, 0.25, 3.0])
    forward(x, numerics, running_mean=mean, running_var=var, momentum=0)
    np.testing.assert_array_equal(mean, [0.5, -1.0, 2.0])
    np.testing.assert_array_equal(var, [1.5, 0.25, 3.0])
    _, saved = forward(x, numerics, running_mean=mean, running_var=var, momentum=1.0)
    np.testing.assert_array_equal(mean, saved.mean)
    n = x.shape[0] * x.shape[2] * x.shape[3]
    unbiased = (x.var(axis=(0, 2, 3)) * n / (n - 1))
    np.testing.assert_allclose(var, unbiased, rtol=1e-12)


@pytest.mark.parametrize("cls", ["BatchNorm2d", "SyncBatchNorm2d"])
@pytest.mark.parametrize("name", ["eps", "momentum"])
def test_layer_setters_check_the_scalar_and_keep_the_old_value(cls, name):
    from bnkernels.distributed import SyncBatchNorm2d
    layer = bnkernels.BatchNorm2d(C) if cls == "BatchNorm2d" else SyncBatchNorm2d(C)
    old = getattr(layer, name)
    for value in BAD_SCALARS[name]:
        with pytest.raises(ValueError, match=rf"{name} must be {re.escape(EXPECTED_RANGE[name])}"):
            setattr(layer, name, value)
        assert getattr(layer, name) == old
    for value in WRONG_TYPES:
        with pytest.raises(TypeError, match=f"{name} must be a real number"):
            setattr(layer, name, value)
        assert getattr(layer, name) == old
    setattr(layer, name, np.float32(0.5))
    assert getattr(layer, name) == 0.5 and type(getattr(layer, name)) is float
    if name == "eps":
        setattr(layer, name, None)  # the family's default, as in the constructor
    else:
        setattr(layer, name, None)  # PyTorch's cumulative moving average
        assert layer.momentum is None
        setattr(layer, name, "default")  # the family's, as in the constructor
    assert getattr(layer, name) == old


# ---------------------------------------------------------------------------
# a call that raises changes nothing: every argument of every entry point made
# bad in turn (wrong number of axes, wrong dtype), every array compared bit
# for bit after the raise
# ---------------------------------------------------------------------------

# dtypes that are valid choices, not mistakes (fold_batchnorm's BN arrays may
# have another dtype than conv_weight)
FREE_DTYPE = {("fold_batchnorm", "conv_weight")}


def _atomicity_cases():
    for entry in ENTRIES:
        arrays = entry.build(np.dtype(np.float32), np.random.default_rng(0))
        for name in arrays:
            yield pytest.param(entry.name, name, "axes", id=f"{entry.name}-{name}-axes")
            if (entry.name, name) not in FREE_DTYPE:
                yield pytest.param(entry.name, name, "dtype", id=f"{entry.name}-{name}-dtype")


def _spoil(value, how):
    if how == "axes":  # one axis fewer for a tensor, one more for a vector
        return value.reshape(-1) if value.ndim >= 2 else value[None]
    return value.astype(np.float32 if value.dtype == np.float64 else np.float64)


@pytest.mark.parametrize("entry, name, how", list(_atomicity_cases()))
def test_failed_call_leaves_every_array_as_it_was(entry, name, how):
    entry = BY_NAME[entry]
    arrays = entry.build(np.dtype(np.float32), np.random.default_rng(0))
    arrays[name] = _spoil(arrays[name], how)
    before = _snapshot(arrays)
    with pytest.raises((TypeError, ValueError)) as raised:
        entry.call(arrays)
    # it names the argument, or the one it conflicts with (x for out's dtype)
    assert any(re.search(rf"(?<!\w){k}(?!\w)", str(raised.value)) for k in arrays), \
        str(raised.value)
    assert _snapshot(arrays) == before


# ---------------------------------------------------------------------------
# load_state_dict: all or nothing
# ---------------------------------------------------------------------------

def _state(layer):
    return {key: np.array(value, copy=True) for key, value in layer.state_dict().items()}


BAD_STATES = {
    "bias of wrong shape": ("bias", np.zeros(C + 1)),
    "running_var of strings": ("running_var", np.array(["a"] * C)),
    "weight of complex numbers": ("weight", np.ones(C, np.complex64)),
    "num_batches_tracked negative": ("num_batches_tracked", -1),
    "num_batches_tracked float": ("num_batches_tracked", 2.5),
    "num_batches_tracked bool": ("num_batches_tracked", True),
    "num_batches_tracked array": ("num_batches_tracked", np.array([1, 2])),
}


@pytest.mark.parametrize("bad", BAD_STATES)
@pytest.mark.parametrize("numerics", bnkernels.NUMERICS)
def test_load_state_dict_checks_every_entry_before_writing_any(numerics, bad):
    layer = bnkernels.BatchNorm2d(C, numerics=numerics)
    layer.forward(tensor())
    before = _state(layer)
    rng = np.random.default_rng(7)
    state = {key: rng.uniform(0.5, 2.0, C) for key in ("weight", "bias", "running_mean",
                                                        "running_var")}
    state["num_batches_tracked"] = np.int64(5)
    key, value = BAD_STATES[bad]
    state[key] = value
    with pytest.raises((TypeError, ValueError), match=key):
        layer.load_state_dict(state)
    after = _state(layer)
    assert after.keys() == before.keys()
    for key in before:
        assert after[key].tobytes() == before[key].tobytes(), key


def test_load_state_dict_takes_every_entry_as_it_was_when_called():
    """An entry may be one of the layer's own arrays: it is read before any
    entry is written, so the loaded weight is the old running_mean."""
    layer = bnkernels.BatchNorm2d(C)
    layer.running_mean[:] = [1.0, 2.0, 3.0]
    state = layer.state_dict()
    state["weight"] = layer.running_mean              # the live array, not a copy
    state["running_mean"] = np.zeros(C, np.float32)
    layer.load_state_dict(state)
    np.testing.assert_array_equal(layer.weight, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(layer.running_mean, np.zeros(C))


@pytest.mark.parametrize("numerics", ["standard", "darknet", "darknet-alexeyab"])
def test_eps_zero_refused_with_batch_statistics_allowed_with_running_ones(numerics):
    """As PyTorch: eps = 0 with batch statistics would make a constant
    channel 0 / 0; with running statistics (given, positive) it is exact."""
    x = tensor()
    x[:, 0] = 3.0  # a constant channel
    rm, rv = np.zeros(C, np.float32), np.ones(C, np.float32)
    for running in ((rm, rv), (None, None)):
        with pytest.raises(ValueError, match=r"eps must be > 0 when normalizing with the "
                                             r"batch's statistics"):
            bnkernels.batch_norm_forward(x, None, None, *running, eps=0.0, numerics=numerics)
        assert (rm == 0).all() and (rv == 1).all()
    y, _ = bnkernels.batch_norm_forward(x, None, None, rm, rv, training=False, eps=0.0,
                                        numerics=numerics)
    np.testing.assert_array_equal(y, x)  # (x - 0) / sqrt(1) or / (sqrt(1) + 0)
