"""Streaming (non-temporal) stores: large NCHW outputs of the elementwise
standard kernels, and NHWC y, bypass the cache, their whole 64-byte lines
computed in registers by AVX-512 twins of the kernels (csrc/fast/stream.c), the
partial lines at the ends of each thread's range by the kernels themselves. They must
change no value and write nothing outside the output.

Oracles: the same call with streaming off (bit for bit), and the float64
NumPy reference (bnkernels.reference). Every test here forces streaming on
small tensors (threshold 0), so that the partial lines at both ends, vectors
that straddle two rows and rows that end on a vector's last lane all run,
at many offsets."""
import numpy as np
import pytest

import bnkernels
from bnkernels import _kernels, reference

needs_streaming = pytest.mark.skipif(
    not bnkernels.streaming_available(),
    reason="this CPU has no AVX-512F, so the kernels never use streaming stores here")

# NCHW (NHWC below), rows (H * W) of at least 16
# values (shorter ones are not streamed): long rows, 72- and 70-value rows,
# 7 x 7 rows (most vectors of 16 or 8 values straddle two rows) and rows of
# exactly one float32 vector
SHAPES = [(3, 5, 17, 23), (4, 24, 8, 9), (2, 3, 40, 40), (9, 7, 1, 70),
          (5, 6, 7, 7), (7, 5, 4, 4)]
# elements before the output's start in its buffer: the partial line before
# the first whole one takes lengths from none to 15 values
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
    """out=x (inference) and out=dy (backward): each vector is loaded before
    its line is stored over."""
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
    """Each thread streams the whole lines of its own range of rows; a line
    that two threads share is partial for both, and written as usual."""
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
    assert bnkernels.get_streaming_threshold() == 16 << 20  # the default: 16 MiB
    try:
        bnkernels.set_streaming_threshold(1 << 30)
        assert bnkernels.get_streaming_threshold() == 1 << 30
        bnkernels.set_streaming_threshold(0)
        assert bnkernels.get_streaming_threshold() == 0
        for bad in (-1, 1.5, "16M", True):
            with pytest.raises((TypeError, ValueError),
                               match=r"nbytes must be a non-negative int or None"):
                bnkernels.set_streaming_threshold(bad)
        assert bnkernels.get_streaming_threshold() == 0  # a bad value changed nothing
    finally:
        bnkernels.set_streaming_threshold(DEFAULT)


@needs_streaming
def test_outputs_of_16_mib_stream_by_default_with_the_same_bits(streaming):
    """The default threshold streams the benchmark shapes' outputs; this one is
    exactly 16 MiB of float32."""
    assert DEFAULT == 16 << 20
    x, dy, weight, bias, running_mean, running_var = arguments((4, 16, 256, 256),
                                                               np.float32)
    assert x.nbytes == DEFAULT

    def run():
        return [a.tobytes() for a in forward_backward(
            x, dy, weight, bias, running_mean, running_var, training=True,
            activation=None, offset=0)]
    assert streaming(DEFAULT, run) == streaming(None, run)


def placed(shape, dtype, byte_offset, fill=-7.25):
    """An array of `shape` starting `byte_offset` bytes past a page boundary
    of a larger buffer of sentinels (`fill`), with at least GUARD of them
    after it: (view, the sentinels before and after it)."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape))
    buffer = np.full(size + (3 * 4096 + byte_offset) // dtype.itemsize + GUARD, fill, dtype)
    start = ((-buffer.ctypes.data) % 4096 + 4096 + byte_offset) // dtype.itemsize
    return (buffer[start:start + size].reshape(shape),
            lambda: np.concatenate([buffer[:start], buffer[start + size:]]))


# channels: one lane; fewer than a vector; a vector and a bit; 64; one
# whole tile of coefficients (1024); more than a tile (1030: not streamed)
NHWC_CHANNELS = [1, 3, 17, 64, 1024, 1030]
# bytes from x's page offset to y's: the same offset; 4, 8, 64 and 248 (y a
# little past x, where walking up each load of x would wait on a streaming
# store: y streams walking down, float64 at 4 rounds to 0); 256, the first
# gap walked up; far apart
NHWC_GAPS = [0, 4, 8, 64, 248, 256, 1000, 2048]


@needs_streaming
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("channels", NHWC_CHANNELS)
def test_nhwc_streamed_outputs_are_bit_for_bit_the_cached_ones(channels, dtype, relu,
                                                               streaming):
    """Channels-last y streams in four ranges of rows side by side (a
    multiple of 16 rows each), with the partial lines of each range and the
    leftover rows by ordinary stores: 150 rows leave 22 over."""
    x_nchw, _, weight, bias, _, _ = arguments((6, channels, 5, 5), dtype)
    x_values = np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1))
    mean, var = _kernels.stats(x_values, nhwc=True)
    invstd = _kernels.invstd(var, 1e-5)
    x, _ = placed(x_values.shape, dtype, 0)
    x[...] = x_values
    for gap in NHWC_GAPS:
        def run():
            y, sentinels = placed(x.shape, dtype, gap)
            _kernels.normalize_affine(x, mean, invstd, weight, bias, out=y, relu=relu,
                                      nhwc=True)
            # nothing written outside y
            assert (sentinels() == -7.25).all(), f"y {gap} bytes past x"
            return y
        cached, streamed = streaming(None, run), streaming(0, run)
        assert cached.tobytes() == streamed.tobytes(), f"y differs {gap} bytes past x"


@needs_streaming
@pytest.mark.parametrize("mode", ["training", "relu", "eval"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("channels", NHWC_CHANNELS)
def test_nhwc_streamed_dx_is_bit_for_bit_the_cached_one(channels, dtype, mode, streaming):
    """Channels-last dx streams in the common case (training, no ReLU) on the
    same four-range walk as y; with dx placed at every gap from both dy and
    x, and in ReLU and eval mode (never streamed), the cached bits and
    nothing written outside dx."""
    x_nchw, dy_nchw, weight, bias, _, _ = arguments((6, channels, 5, 5), dtype)
    x_values = np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1))
    mean, var = _kernels.stats(x_values, nhwc=True)
    invstd = _kernels.invstd(var, 1e-5)
    relu = mode == "relu"
    x, _ = placed(x_values.shape, dtype, 0)
    x[...] = x_values
    dy, _ = placed(x_values.shape, dtype, 0)
    dy[...] = np.ascontiguousarray(dy_nchw.transpose(0, 2, 3, 1))
    sums = (None, None) if mode == "eval" else _kernels.backward_reduce(
        dy, x, mean, invstd, weight, bias, relu=relu, nhwc=True)
    for gap in NHWC_GAPS:
        def run():
            dx, sentinels = placed(x.shape, dtype, gap)
            _kernels.backward_dx(dy, x, mean, invstd, weight, *sums, out=dx, bias=bias,
                                 relu=relu, nhwc=True)
            assert (sentinels() == -7.25).all(), f"dx {gap} bytes past dy and x"
            return dx
        cached, streamed = streaming(None, run), streaming(0, run)
        assert cached.tobytes() == streamed.tobytes(), f"dx differs {gap} bytes past dy"


@needs_streaming
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nhwc_streamed_dx_in_place_and_threads(dtype, streaming):
    """dx over dy, and 1 to 3 threads: the cached bits."""
    x_nchw, dy_nchw, weight, bias, _, _ = arguments((8, 40, 6, 6), dtype)
    x = np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1))
    dy = np.ascontiguousarray(dy_nchw.transpose(0, 2, 3, 1))
    mean, var = _kernels.stats(x, nhwc=True)
    invstd = _kernels.invstd(var, 1e-5)
    sums = _kernels.backward_reduce(dy, x, mean, invstd, weight, nhwc=True)
    expected = streaming(None, lambda: _kernels.backward_dx(
        dy, x, mean, invstd, weight, *sums, nhwc=True))
    threads = bnkernels.get_num_threads()
    try:
        for n in (1, 2, 3):
            bnkernels.set_num_threads(n)
            dx = streaming(0, lambda: _kernels.backward_dx(
                dy, x, mean, invstd, weight, *sums, nhwc=True))
            assert dx.tobytes() == expected.tobytes(), f"{n} threads"
            g = dy.copy()
            streaming(0, lambda: _kernels.backward_dx(
                g, x, mean, invstd, weight, *sums, out=g, nhwc=True))
            assert g.tobytes() == expected.tobytes(), f"in place, {n} threads"
    finally:
        bnkernels.set_num_threads(threads)


@needs_streaming
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nhwc_streamed_in_place_and_threads(dtype, streaming):
    """y over x, and 1 to 3 threads (each thread's rows in four ranges of
    its own): the cached bits."""
    x_nchw, dy, weight, bias, _, _ = arguments((8, 40, 6, 6), dtype)
    x = np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1))
    mean, var = _kernels.stats(x, nhwc=True)
    invstd = _kernels.invstd(var, 1e-5)
    expected = streaming(None, lambda: _kernels.normalize_affine(
        x, mean, invstd, weight, bias, nhwc=True))
    threads = bnkernels.get_num_threads()
    try:
        for n in (1, 2, 3):
            bnkernels.set_num_threads(n)
            y = streaming(0, lambda: _kernels.normalize_affine(
                x, mean, invstd, weight, bias, nhwc=True))
            assert y.tobytes() == expected.tobytes(), f"{n} threads"
            z = x.copy()
            streaming(0, lambda: _kernels.normalize_affine(
                z, mean, invstd, weight, bias, out=z, nhwc=True))
            assert z.tobytes() == expected.tobytes(), f"in place, {n} threads"
    finally:
        bnkernels.set_num_threads(threads)


@needs_streaming
@pytest.mark.parametrize("channels", [3, 64, 1030])
def test_nhwc_outputs_are_the_same_bits_whatever_the_threshold(channels, streaming):
    """Through the layer API: forward and backward (y and dx stream) give
    the same bits with streaming forced or off."""
    x, dy, weight, bias, running_mean, running_var = arguments((3, channels, 5, 7),
                                                               np.float32)
    x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    dy = np.ascontiguousarray(dy.transpose(0, 2, 3, 1))

    def run():
        y, saved = bnkernels.batch_norm_forward(x, weight, bias, None, None,
                                                layout="NHWC")
        dx, _, _ = bnkernels.batch_norm_backward(dy, saved)
        return y.tobytes(), dx.tobytes()
    assert streaming(0, run) == streaming(None, run)
