"""Placement of caller-given buffers: every standard kernel gives the same
bits wherever x, dy, the parameters and the output start relative to a
64-byte line, and writes nothing outside its output.

On CPUs with AVX-512F the channels-last kernels write y and dx by whole
aligned 64-byte lines wherever y starts (csrc/fast/standard_nhwc.inc,
normalize_nhwc_lines and dx_nhwc_lines), with the partial lines at each
range's ends one value at a time and the per-channel coefficients rotated to
the first whole line's channel; elsewhere by their plain loops.

Oracles: the NCHW twin of each channels-last elementwise kernel, which gives
the same bits for the same statistics (a separate code path, placed
aligned); the aligned placement's bits (the order of every sum depends on
the shape alone); the float64 NumPy reference (bnkernels.reference), at
float32's or float64's rounding. Placements are byte offsets from a page
boundary: 0, the element size and odd multiples of it (a partial line of
every length at the start), 16 (what NumPy's allocator gives) and 48."""
import numpy as np
import pytest

import bnkernels
from bnkernels import _kernels, reference

GUARD = 64  # sentinel values after an output
SENTINEL = -7.25


def placed(shape, dtype, byte_offset, fill=SENTINEL):
    """An array of `shape` starting `byte_offset` bytes past a page boundary
    in a larger buffer of `fill`, with GUARD more values after it: (view,
    a function returning the values around it)."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape))
    buffer = np.full(size + (2 * 4096 + byte_offset) // dtype.itemsize + GUARD, fill, dtype)
    start = ((-buffer.ctypes.data) % 4096 + byte_offset) // dtype.itemsize
    assert (buffer.ctypes.data + start * dtype.itemsize) % 4096 == byte_offset
    return (buffer[start:start + size].reshape(shape),
            lambda: np.concatenate([buffer[:start], buffer[start + size:]]))


def copy_placed(values, byte_offset):
    a, _ = placed(values.shape, values.dtype, byte_offset)
    a[...] = values
    return a


def offsets(dtype, *extra):
    """Byte offsets: aligned, one element, odd multiples of the element
    size (3, 5, 7, 13), NumPy's 16, 48."""
    size = np.dtype(dtype).itemsize
    return sorted({0, size, 3 * size, 5 * size, 7 * size, 13 * size, 16, 48, *extra}
                  - {64})


@pytest.fixture(params=[None, 0], ids=["cached", "streamed"])
def threshold(request):
    """The streaming threshold: None (ordinary stores) or 0 (every output
    streams where the CPU can)."""
    saved = bnkernels.get_streaming_threshold()
    bnkernels.set_streaming_threshold(request.param)
    yield request.param
    bnkernels.set_streaming_threshold(saved)


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    saved = bnkernels.get_num_threads()
    bnkernels.set_num_threads(request.param)
    yield request.param
    bnkernels.set_num_threads(saved)


def values(shape, dtype, seed=0):
    """x, dy (NCHW), weight, bias, running mean and variance."""
    rng = np.random.default_rng(seed)
    channels = shape[1]
    return ((rng.standard_normal(shape) * 3 + 1.5).astype(dtype),
            rng.standard_normal(shape).astype(dtype),
            rng.uniform(0.5, 2, channels).astype(dtype),
            rng.standard_normal(channels).astype(dtype),
            rng.standard_normal(channels).astype(dtype),
            rng.uniform(0.5, 2, channels).astype(dtype))


def to_nhwc(a):
    return np.ascontiguousarray(np.moveaxis(a, 1, -1))


# channels: one; fewer than a vector; a vector and one more; 64 (rows of
# whole lines); 256; over a tile of coefficients (1030: plain loops). Rows:
# 150 (four ranges and leftovers), 49 (one row left), 6 (too few rows for
# four ranges: one range)
NHWC_SHAPES = [(6, 1, 5, 5), (6, 3, 5, 5), (6, 17, 5, 5), (1, 64, 7, 7),
               (6, 64, 5, 5), (2, 256, 3, 1), (1, 256, 7, 7), (2, 1030, 2, 1)]


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", NHWC_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_nhwc_normalize_at_any_placement_is_the_nchw_twins_bits(shape, dtype, relu,
                                                                threshold, threads):
    x_nchw, _, weight, bias, _, _ = values(shape, dtype)
    mean, var = _kernels.stats(x_nchw)
    invstd = _kernels.invstd(var, 1e-5)
    expected = to_nhwc(_kernels.normalize_affine(x_nchw, mean, invstd, weight, bias,
                                                 relu=relu))
    x_nhwc = to_nhwc(x_nchw)
    for x_offset in offsets(dtype):
        x = copy_placed(x_nhwc, x_offset)
        for y_offset in offsets(dtype, x_offset + 4 * np.dtype(dtype).itemsize):
            y, around = placed(x.shape, dtype, y_offset)
            _kernels.normalize_affine(x, mean, invstd, weight, bias, out=y, relu=relu,
                                      nhwc=True)
            where = f"x at {x_offset}, y at {y_offset} bytes"
            assert y.tobytes() == expected.tobytes(), where
            assert (around() == SENTINEL).all(), f"written outside y: {where}"
        assert x.tobytes() == x_nhwc.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(6, 17, 5, 5), (1, 64, 7, 7), (1, 256, 7, 7)],
                         ids=lambda s: "x".join(map(str, s)))
def test_nhwc_normalize_in_place_at_any_placement(shape, dtype, threshold):
    """out=x, x anywhere: each value is read before its line is stored."""
    x_nchw, _, weight, bias, _, _ = values(shape, dtype)
    mean, var = _kernels.stats(x_nchw)
    invstd = _kernels.invstd(var, 1e-5)
    expected = to_nhwc(_kernels.normalize_affine(x_nchw, mean, invstd, weight, bias))
    for offset in offsets(dtype):
        x = copy_placed(to_nhwc(x_nchw), offset)
        _kernels.normalize_affine(x, mean, invstd, weight, bias, out=x, nhwc=True)
        assert x.tobytes() == expected.tobytes(), f"x at {offset} bytes"


@pytest.mark.parametrize("mode", ["training", "relu", "eval"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", NHWC_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_nhwc_dx_at_any_placement_is_the_nchw_twins_bits(shape, dtype, mode, threshold,
                                                         threads):
    x_nchw, dy_nchw, weight, bias, _, _ = values(shape, dtype)
    relu = mode == "relu"
    mean, var = _kernels.stats(x_nchw)
    invstd = _kernels.invstd(var, 1e-5)
    sums = (None, None) if mode == "eval" else _kernels.backward_reduce(
        dy_nchw, x_nchw, mean, invstd, weight, bias, relu=relu)
    expected = to_nhwc(_kernels.backward_dx(dy_nchw, x_nchw, mean, invstd, weight, *sums,
                                            bias=bias, relu=relu))
    x_nhwc, dy_nhwc = to_nhwc(x_nchw), to_nhwc(dy_nchw)
    size = np.dtype(dtype).itemsize
    for in_offset in offsets(dtype):
        x, dy = copy_placed(x_nhwc, in_offset), copy_placed(dy_nhwc, in_offset + 16)
        for dx_offset in offsets(dtype, in_offset + 4 * size):
            dx, around = placed(x.shape, dtype, dx_offset)
            _kernels.backward_dx(dy, x, mean, invstd, weight, *sums, out=dx, bias=bias,
                                 relu=relu, nhwc=True)
            where = f"x at {in_offset}, dy at {in_offset + 16}, dx at {dx_offset} bytes"
            assert dx.tobytes() == expected.tobytes(), where
            assert (around() == SENTINEL).all(), f"written outside dx: {where}"
        assert x.tobytes() == x_nhwc.tobytes() and dy.tobytes() == dy_nhwc.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nhwc_dx_over_dy_at_any_placement(dtype, threshold):
    x_nchw, dy_nchw, weight, bias, _, _ = values((6, 17, 5, 5), dtype)
    mean, var = _kernels.stats(x_nchw)
    invstd = _kernels.invstd(var, 1e-5)
    sums = _kernels.backward_reduce(dy_nchw, x_nchw, mean, invstd, weight, bias)
    expected = to_nhwc(_kernels.backward_dx(dy_nchw, x_nchw, mean, invstd, weight, *sums,
                                            bias=bias))
    x = to_nhwc(x_nchw)
    for offset in offsets(dtype):
        dy = copy_placed(to_nhwc(dy_nchw), offset)
        _kernels.backward_dx(dy, x, mean, invstd, weight, *sums, out=dy, bias=bias,
                             nhwc=True)
        assert dy.tobytes() == expected.tobytes(), f"dy at {offset} bytes"


LAYER_SHAPES = [(4, 3, 5, 7), (2, 64, 7, 7), (3, 20, 1, 9)]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", LAYER_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_every_standard_pass_gives_the_aligned_bits_at_any_placement(shape, dtype, layout,
                                                                     threshold, threads):
    """Training forward (statistics, running update, normalize), inference
    and the backward (sums and dx) through the public API, with x, dy,
    weight, bias and the running statistics at one placement and y and dx at
    another: the bits of the aligned placement, which match the float64
    reference."""
    x_nchw, dy_nchw, weight, bias, running_mean, running_var = values(shape, dtype, seed=3)
    stored = (lambda a: a) if layout == "NCHW" else to_nhwc
    inputs = {"x": stored(x_nchw), "dy": stored(dy_nchw), "weight": weight, "bias": bias,
              "running_mean": running_mean, "running_var": running_var}

    def run(in_offset, out_offset):
        a = {name: copy_placed(v, in_offset + 16 * k)
             for k, (name, v) in enumerate(inputs.items())}
        outs = [placed(a["x"].shape, dtype, out_offset + 8 * k) for k in range(3)]
        (y, y_around), (dx, dx_around), (y_eval, eval_around) = outs
        _, saved = bnkernels.batch_norm_forward(
            a["x"], a["weight"], a["bias"], a["running_mean"], a["running_var"],
            out=y, layout=layout)
        _, dweight, dbias = bnkernels.batch_norm_backward(a["dy"], saved, out=dx)
        bnkernels.batch_norm_forward(a["x"], a["weight"], a["bias"], a["running_mean"],
                                     a["running_var"], training=False, out=y_eval,
                                     layout=layout)
        for name, around in (("y", y_around), ("dx", dx_around), ("eval y", eval_around)):
            assert (around() == SENTINEL).all(), f"written outside {name}"
        for name in ("x", "dy", "weight", "bias"):
            assert a[name].tobytes() == inputs[name].tobytes(), f"{name} changed"
        return {"y": y.copy(), "dx": dx.copy(), "dweight": dweight, "dbias": dbias,
                "running_mean": a["running_mean"].copy(),
                "running_var": a["running_var"].copy(), "eval y": y_eval.copy()}

    aligned = run(0, 0)
    size = np.dtype(dtype).itemsize
    for in_offset in (size, 16, 5 * size):
        for out_offset in (size, 3 * size, 16, 48):
            got = run(in_offset, out_offset)
            for name, a in aligned.items():
                assert got[name].tobytes() == a.tobytes(), \
                    f"{name}: inputs at {in_offset}, outputs at {out_offset} bytes"

    # the aligned bits against the float64 reference
    f64 = {name: np.asarray(v, np.float64) for name, v in inputs.items()}
    x64 = f64["x"] if layout == "NCHW" else np.moveaxis(f64["x"], -1, 1)
    dy64 = f64["dy"] if layout == "NCHW" else np.moveaxis(f64["dy"], -1, 1)
    rm, rv = f64["running_mean"].copy(), f64["running_var"].copy()
    y, saved = reference.batch_norm_forward(x64, f64["weight"], f64["bias"], rm, rv)
    dx, dweight, dbias = reference.batch_norm_backward(dy64, saved)
    y_eval, _ = reference.batch_norm_forward(x64, f64["weight"], f64["bias"], rm, rv,
                                             training=False)
    back = (lambda a: a) if layout == "NCHW" else (lambda a: np.moveaxis(a, -1, 1))
    # float32: a few roundings of 6e-8 on values of order 1 to 10
    tolerance = 2e-5 if dtype == np.float32 else 1e-12
    for name, got, want in (("y", back(aligned["y"]), y), ("dx", back(aligned["dx"]), dx),
                            ("dweight", aligned["dweight"], dweight),
                            ("dbias", aligned["dbias"], dbias),
                            ("running_mean", aligned["running_mean"], rm),
                            ("running_var", aligned["running_var"], rv),
                            ("eval y", back(aligned["eval y"]), y_eval)):
        np.testing.assert_allclose(got, want, rtol=tolerance,
                                   atol=tolerance * max(1.0, np.abs(want).max()),
                                   err_msg=name)


# (2, 24, 53, 53): rows of 96 or 192 bytes, 5618 rows. (1, 64, 56, 56):
# 3136 rows of 256 or 512 bytes, so that a quarter of a thread's rows is a
# whole number of pages and the lines walk shortens its ranges by a row
# (nhwc_lines_span), leaving more rows to the last one.
@pytest.mark.parametrize("shape", [(2, 24, 53, 53), (1, 64, 56, 56)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nhwc_threads_split_rows_anywhere_in_a_line(dtype, shape, threshold):
    """Large enough for two threads (each thread walks its own rows, whose
    first whole line starts at a channel of its own): 1 and 2 threads give
    the NCHW twins' bits, y and dx at odd placements."""
    x_nchw, dy_nchw, weight, bias, _, _ = values(shape, dtype)
    mean, var = _kernels.stats(x_nchw)
    invstd = _kernels.invstd(var, 1e-5)
    sums = _kernels.backward_reduce(dy_nchw, x_nchw, mean, invstd, weight, bias)
    y_expected = to_nhwc(_kernels.normalize_affine(x_nchw, mean, invstd, weight, bias))
    dx_expected = to_nhwc(_kernels.backward_dx(dy_nchw, x_nchw, mean, invstd, weight,
                                               *sums, bias=bias))
    size = np.dtype(dtype).itemsize
    x, dy = copy_placed(to_nhwc(x_nchw), 16), copy_placed(to_nhwc(dy_nchw), size)
    saved = bnkernels.get_num_threads()
    try:
        for n in (1, 2):
            bnkernels.set_num_threads(n)
            for offset in (0, size, 3 * size, 48):
                y, y_around = placed(x.shape, dtype, offset)
                _kernels.normalize_affine(x, mean, invstd, weight, bias, out=y, nhwc=True)
                assert y.tobytes() == y_expected.tobytes(), f"{n} threads, y at {offset}"
                dx, dx_around = placed(x.shape, dtype, offset + 5 * size)
                _kernels.backward_dx(dy, x, mean, invstd, weight, *sums, out=dx, bias=bias,
                                     nhwc=True)
                assert dx.tobytes() == dx_expected.tobytes(), f"{n} threads, dx at {offset}"
                assert (y_around() == SENTINEL).all() and (dx_around() == SENTINEL).all()
    finally:
        bnkernels.set_num_threads(saved)


# rows of 1, 7, 16 (one float32 vector), 49, 100 and 1089 values (the last
# long enough to align its stores first: LINE_MIN_VALUES); more channels
# than dx keeps terms for at once (DX_TERMS_CHANNELS: pieces of rows)
DOWN_SHAPES = [(3, 5, 1, 1), (2, 3, 7, 1), (2, 4, 4, 4), (2, 6, 7, 7), (1, 3, 10, 10),
               (1, 2, 33, 33), (1, 1030, 17, 1), (2, 1030, 4, 4)]


@pytest.mark.parametrize("shape", DOWN_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nchw_outputs_just_past_the_inputs_give_the_same_bits(shape, dtype, threads):
    """An NCHW output 1 to 255 bytes past x (and dy) modulo 4 KB is walked
    down, not up (4K aliasing; csrc/fast/standard.inc, walk_down): normalize
    with and without ReLU, and dx in training, eval mode and with ReLU, give
    the bits of the output placed like the inputs, and write nothing
    outside it."""
    x_nchw, dy_nchw, weight, bias, _, _ = values(shape, dtype, seed=4)
    mean, var = _kernels.stats(x_nchw)
    invstd = _kernels.invstd(var, 1e-5)
    size = np.dtype(dtype).itemsize
    x, dy = copy_placed(x_nchw, 64), copy_placed(dy_nchw, 64)

    def passes(out_offset):
        results = []
        for relu in (False, True):
            y, around = placed(x.shape, dtype, out_offset)
            _kernels.normalize_affine(x, mean, invstd, weight, bias, out=y, relu=relu)
            assert (around() == SENTINEL).all()
            results.append(y.tobytes())
            sums = _kernels.backward_reduce(dy, x, mean, invstd, weight, bias, relu=relu)
            for training in (True, False):
                dx, around = placed(x.shape, dtype, out_offset)
                _kernels.backward_dx(dy, x, mean, invstd, weight,
                                     *(sums if training else (None, None)), out=dx,
                                     bias=bias, relu=relu)
                assert (around() == SENTINEL).all()
                results.append(dx.tobytes())
        return results

    expected = passes(64)
    for gap in (size, 2 * size, 40, 64, 200, 256 - size):
        assert passes(64 + gap) == expected, f"output {gap} bytes past the inputs"
