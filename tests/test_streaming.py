"""Streaming (non-temporal) stores: large NCHW outputs of the elementwise
standard kernels bypass the cache, computed a tile at a time into a buffer and copied
out. They must change no value and write nothing outside the output.

Oracles: the same call with streaming off (bit for bit), and the float64
NumPy reference (bnkernels.reference). Every test here forces streaming on
small tensors (threshold 0), so that the tiles, the part before the first
page boundary and the last partial tile all run, at many offsets."""
import numpy as np
import pytest

import bnkernels
from bnkernels import reference

needs_streaming = pytest.mark.skipif(
    not bnkernels.streaming_available(),
    reason="this CPU has no AVX-512F, so the kernels never use streaming stores here")

# NCHW (NHWC outputs are never streamed), each tensor bigger than a 4 KB
# page and with rows of at least 256 bytes (shorter ones are not streamed):
# long rows split across tiles, and 72- and 70-value rows several per tile
SHAPES = [(3, 5, 17, 23), (4, 24, 8, 9), (2, 3, 40, 40), (9, 7, 1, 70)]
# elements before the output's start in its buffer: the part written before
# the first page boundary takes every length from none to almost a page
OFFSETS = [0, 1, 7, 333]
GUARD = 1100  # elements of sentinel after the output


@pytest.fixture
def streaming(request):
    """Run the test body with streaming forced (threshold 0) or off (None)."""
    def run(threshold, call):
        bnkernels.set_streaming_threshold(threshold)
        try:
            return call()
        finally:
            bnkernels.set_streaming_threshold(DEFAULT)
    return run


DEFAULT = bnkernels.get_streaming_threshold()


def output_in_buffer(like, offset):
    """An output array for `like`, `offset` elements into a larger buffer of
    sentinels (-7.25), with GUARD more after it: (buffer, view)."""
    size = like.size
    buffer = np.full(offset + size + GUARD, -7.25, like.dtype)
    return buffer, buffer[offset:offset + size].reshape(like.shape)


def arguments(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    channels = shape[1]
    x = (rng.standard_normal(shape) * 3 + 1.5).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    weight = rng.uniform(0.5, 2, channels).astype(dtype)
    bias = rng.standard_normal(channels).astype(dtype)
    running_mean = rng.standard_normal(channels).astype(dtype)
    running_var = rng.uniform(0.5, 2, channels).astype(dtype)
    return x, dy, weight, bias, running_mean, running_var


def forward_backward(x, dy, weight, bias, running_mean, running_var, *, training,
                     activation, offset):
    """y and dx, each written through out= into a buffer at `offset`, and the
    two buffers whole (sentinels included)."""
    y_buffer, y = output_in_buffer(x, offset)
    dx_buffer, dx = output_in_buffer(x, offset)
    running = (running_mean.copy(), running_var.copy())
    _, saved = bnkernels.batch_norm_forward(
        x, weight, bias, *running, training=training, activation=activation, out=y)
    _, dweight, dbias = bnkernels.batch_norm_backward(dy, saved, out=dx)
    return y_buffer, dx_buffer, dweight, dbias


@needs_streaming
@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_streamed_outputs_are_bit_for_bit_the_cached_ones(shape, dtype, training,
                                                          activation, streaming):
    x, dy, weight, bias, running_mean, running_var = arguments(shape, dtype)
    for offset in OFFSETS:
        def run():
            return forward_backward(x, dy, weight, bias, running_mean, running_var,
                                    training=training, activation=activation,
                                    offset=offset)
        cached = streaming(None, run)
        streamed = streaming(0, run)
        for name, a, b in zip(("y", "dx", "dweight", "dbias"), cached, streamed):
            assert a.tobytes() == b.tobytes(), f"{name} differs at offset {offset}"
        # nothing written outside y or dx: the sentinels are intact
        for buffer in streamed[:2]:
            assert (buffer[:offset] == -7.25).all() and (buffer[-GUARD:] == -7.25).all()


@needs_streaming
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_streamed_outputs_match_the_float64_reference(shape, dtype, streaming):
    x, dy, weight, bias, running_mean, running_var = arguments(shape, dtype, seed=1)

    def run():
        y, saved = bnkernels.batch_norm_forward(x, weight, bias, None, None)
        return (y,) + bnkernels.batch_norm_backward(dy, saved)
    got = streaming(0, run)
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    y, saved = reference.batch_norm_forward(x64, weight.astype(np.float64),
                                            bias.astype(np.float64), None, None)
    expected = (y,) + reference.batch_norm_backward(dy64, saved)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    for name, a, b in zip(("y", "dx", "dweight", "dbias"), got, expected):
        np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance * np.abs(b).max(),
                                   err_msg=name)


@needs_streaming
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_streamed_in_place_inference_and_backward(dtype, streaming):
    """out=x (inference) and out=dy (backward): each tile is computed whole
    before it is copied over the values it read."""
    x, dy, weight, bias, running_mean, running_var = arguments((3, 5, 17, 23), dtype)

    def run(in_place):
        x_, dy_ = x.copy(), dy.copy()
        y, _ = bnkernels.batch_norm_forward(x_, weight, bias, running_mean, running_var,
                                            training=False, out=x_ if in_place else None)
        _, saved = bnkernels.batch_norm_forward(x, weight, bias, None, None)
        dx, _, _ = bnkernels.batch_norm_backward(dy_, saved, out=dy_ if in_place else None)
        return y.tobytes(), dx.tobytes()
    assert streaming(0, lambda: run(True)) == streaming(None, lambda: run(False))


@needs_streaming
@pytest.mark.parametrize("threads", [1, 2, 3, 4])
def test_streamed_outputs_do_not_depend_on_the_thread_count(threads, streaming):
    """Each thread streams its own range of rows, with its own first page."""
    x, dy, weight, bias, running_mean, running_var = arguments((8, 64, 13, 11), np.float32)

    def run():
        bnkernels.set_num_threads(threads)
        try:
            return forward_backward(x, dy, weight, bias, running_mean, running_var,
                                    training=True, activation=None, offset=3)
        finally:
            bnkernels.set_num_threads(None)
    cached = streaming(None, run)
    streamed = streaming(0, run)
    assert [a.tobytes() for a in streamed] == [a.tobytes() for a in cached]


def test_the_threshold_setting():
    assert bnkernels.get_streaming_threshold() is None  # the default: off
    try:
        bnkernels.set_streaming_threshold(1 << 30)
        assert bnkernels.get_streaming_threshold() == 1 << 30
        bnkernels.set_streaming_threshold(0)
        assert bnkernels.get_streaming_threshold() == 0
        for bad in (-1, 1.5, "16M", True):
            with pytest.raises(ValueError, match=r"nbytes must be a non-negative int or None"):
                bnkernels.set_streaming_threshold(bad)
        assert bnkernels.get_streaming_threshold() == 0  # a bad value changed nothing
    finally:
        bnkernels.set_streaming_threshold(DEFAULT)
