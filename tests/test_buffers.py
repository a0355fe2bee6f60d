"""Where results go: out=, workspace=, BatchNorm2d(reuse_buffers=True), and
how much memory a training step takes.

Oracles: the same call with fresh outputs (bit for bit), and tracemalloc,
which sees NumPy's array allocations, for the memory bounds.
"""
import tracemalloc

import numpy as np
import pytest

import bnkernels

SHAPE = (4, 8, 16, 16)


def data(dtype=np.float32, seed=0, shape=SHAPE):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype))


def step(layer, x, dy):
    y = layer(x)
    y_bytes = y.tobytes()
    dx = layer.backward(dy)
    return y, dx, [y_bytes, dx.tobytes(), layer.grad_weight.tobytes(),
                   layer.running_var.tobytes()]


@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("numerics", bnkernels.NUMERICS)
def test_reuse_buffers_gives_the_same_bits_and_the_same_arrays(numerics, activation):
    fresh = bnkernels.BatchNorm2d(SHAPE[1], numerics=numerics, activation=activation)
    kept = bnkernels.BatchNorm2d(SHAPE[1], numerics=numerics, activation=activation,
                                 reuse_buffers=True)
    previous = None
    for seed in range(3):
        x, dy = data(seed=seed)
        _, _, expected = step(fresh, x, dy)
        y, dx, got = step(kept, x, dy)
        assert got == expected
        if previous is not None:  # the second call wrote into the first call's arrays
            assert y is previous[0] and dx is previous[1]
        previous = (y, dx)


def test_reuse_buffers_follows_a_change_of_shape():
    layer = bnkernels.BatchNorm2d(SHAPE[1], reuse_buffers=True)
    y1 = layer(data()[0])
    y2 = layer(data(shape=(2, 8, 5, 5))[0])
    assert y2.shape == (2, 8, 5, 5) and y1.shape == SHAPE
    reference = bnkernels.BatchNorm2d(SHAPE[1])(data(shape=(2, 8, 5, 5))[0])
    np.testing.assert_array_equal(y2, reference)


def traced_peak(fn):
    """Peak bytes allocated (and traced) while fn runs, above what was live."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = fn()
        return tracemalloc.get_traced_memory()[1] - before, result
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("numerics", bnkernels.NUMERICS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_training_step_takes_at_most_one_tensor_beyond_x_y_dy_dx(numerics, activation, dtype):
    x, dy = data(dtype, shape=(8, 32, 64, 64))
    layer = bnkernels.BatchNorm2d(32, numerics=numerics, activation=activation, dtype=dtype)
    layer(x), layer.backward(dy)  # warm up: first-call allocations do not count

    def forward_backward():
        y = layer(x)
        return y, layer.backward(dy)

    peak, _ = traced_peak(forward_backward)
    tensor = x.nbytes
    # y and dx are new here; one more tensor is allowed (Darknet's x_norm),
    # plus per-channel vectors and fixed-size temporaries (Darknet's ReLU mask
    # goes 16,384 values at a time)
    assert peak <= 3 * tensor + 512 * 1024, (peak / tensor)


@pytest.mark.parametrize("numerics", bnkernels.NUMERICS)
def test_reused_buffers_allocate_nothing_tensor_sized(numerics):
    x, dy = data(shape=(8, 16, 32, 32))
    layer = bnkernels.BatchNorm2d(16, numerics=numerics, reuse_buffers=True)
    layer(x), layer.backward(dy)

    peak, _ = traced_peak(lambda: (layer(x), layer.backward(dy)))
    assert peak < x.nbytes // 16, peak


@pytest.mark.parametrize("numerics", ["darknet", "darknet-alexeyab"])
def test_darknet_workspace_holds_x_norm(numerics):
    x, dy = data()
    workspace = np.empty_like(x)
    y, saved = bnkernels.batch_norm_forward(x, None, None, None, None, numerics=numerics,
                                            workspace=workspace)
    assert saved.x_norm is workspace
    y_fresh, saved_fresh = bnkernels.batch_norm_forward(x, None, None, None, None,
                                                        numerics=numerics)
    np.testing.assert_array_equal(workspace, saved_fresh.x_norm)
    np.testing.assert_array_equal(y, y_fresh)
    with pytest.raises(ValueError, match="workspace overlaps out"):
        bnkernels.batch_norm_forward(x, None, None, None, None, numerics=numerics,
                                     workspace=workspace, out=workspace)
    with pytest.raises(ValueError, match="workspace overlaps input x"):
        bnkernels.batch_norm_forward(x, None, None, None, None, numerics=numerics,
                                     workspace=x)


@pytest.mark.parametrize("numerics", [n for n in bnkernels.NUMERICS if n != "standard"])
def test_darknet_eval_mode_checks_the_workspace_it_ignores(numerics):
    """Darknet's eval mode keeps no x_norm, but a workspace given to it is
    checked as in training: the same errors, and nothing written."""
    x, _ = data()
    stats = (np.zeros(x.shape[1], x.dtype), np.ones(x.shape[1], x.dtype))
    y = bnkernels.batch_norm_forward(x, None, None, *stats, training=False,
                                     numerics=numerics, workspace=np.empty_like(x))[0]
    np.testing.assert_array_equal(
        y, bnkernels.batch_norm_forward(x, None, None, *stats, training=False,
                                        numerics=numerics)[0])
    out = np.full_like(x, 7)
    for workspace, message in ((x, "workspace overlaps input x"),
                               (out, "workspace overlaps out"),
                               (np.empty(x.shape[:-1], x.dtype), "workspace")):
        with pytest.raises(ValueError, match=message):
            bnkernels.batch_norm_forward(x, None, None, *stats, training=False,
                                         numerics=numerics, workspace=workspace, out=out)
        assert (out == 7).all()


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("training", [True, False])
def test_standard_numerics_check_the_workspace_they_ignore(training, layout):
    """Standard numerics keep no x_norm: a workspace given to them is checked
    as Darknet's is, the same errors and nothing written, and a good one is
    left as it was."""
    x, _ = data()
    if layout == "NHWC":
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    c = x.shape[-1] if layout == "NHWC" else x.shape[1]
    stats = (np.zeros(c, x.dtype), np.ones(c, x.dtype))

    def forward(**kw):
        return bnkernels.batch_norm_forward(x, None, None, *(s.copy() for s in stats),
                                            training=training, layout=layout, **kw)[0]

    workspace = np.full_like(x, 3)
    np.testing.assert_array_equal(forward(workspace=workspace), forward())
    assert (workspace == 3).all()
    out = np.full_like(x, 7)
    for bad, error, message in (
            (x, ValueError, "workspace overlaps input x"),
            (out, ValueError, "workspace overlaps out"),
            (np.empty(x.shape[:-1], x.dtype), ValueError, "workspace"),
            (x.astype(np.float64), TypeError, "workspace has dtype float64")):
        with pytest.raises(error, match=message):
            forward(workspace=bad, out=out)
        assert (out == 7).all()
    read_only = np.empty_like(x)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="workspace is read-only"):
        forward(workspace=read_only)


@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("numerics", bnkernels.NUMERICS)
def test_backward_writes_into_out_and_may_overwrite_dy(numerics, activation):
    x, dy = data()
    _, saved = bnkernels.batch_norm_forward(x, None, None, None, None, numerics=numerics,
                                            activation=activation)
    expected = bnkernels.batch_norm_backward(dy, saved)[0]
    out = np.empty_like(dy)
    assert bnkernels.batch_norm_backward(dy, saved, out=out)[0] is out
    np.testing.assert_array_equal(out, expected)
    dy_copy = dy.copy()
    assert bnkernels.batch_norm_backward(dy_copy, saved, out=dy_copy)[0] is dy_copy
    np.testing.assert_array_equal(dy_copy, expected)
