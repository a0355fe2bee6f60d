"""Kernels release the GIL; calls from many Python threads at once must give
the same bytes as the same calls made one after another (oracle: the serial
run; tolerance: none)."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import bnkernels
from forks import numerics_of


def one_step(seed, numerics, dtype):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4, 16, 64, 64)).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    weight, bias = rng.uniform(0.5, 2, 16).astype(dtype), rng.standard_normal(16).astype(dtype)
    running_mean, running_var = np.zeros(16, dtype), np.ones(16, dtype)
    y, saved = bnkernels.batch_norm_forward(x, weight, bias, running_mean, running_var,
                                            numerics=numerics)
    dx, dweight, dbias = bnkernels.batch_norm_backward(dy, saved)
    return [a.tobytes() for a in (y, running_mean, running_var, dx, dweight, dbias)]


@pytest.mark.parametrize("openmp_threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("numerics", bnkernels.NUMERICS)
def test_eight_threads_give_the_bytes_of_serial_calls(numerics, dtype, openmp_threads):
    """Eight Python threads at once, each call itself on 1 or 2 OpenMP threads
    (the tensors are large enough to use 2)."""
    seeds = list(range(32))
    bnkernels.set_num_threads(1)
    try:
        serial = [one_step(seed, numerics, dtype) for seed in seeds]
        bnkernels.set_num_threads(openmp_threads)
        with ThreadPoolExecutor(max_workers=8) as pool:
            threaded = list(pool.map(lambda seed: one_step(seed, numerics, dtype), seeds))
    finally:
        bnkernels.set_num_threads(None)
    assert threaded == serial


# ---------------------------------------------------------------------------
# OpenMP inside each call: any number of threads gives the same bits
# ---------------------------------------------------------------------------

THREAD_COUNTS = [1, 2, 3, 4]
# 5 * 37 * 48 * 48 = 426,240 values: enough work for 4 threads (the kernels
# give a thread at least 65,536 values), and 37 channels split unevenly.
BIG_SHAPE = (5, 37, 48, 48)


@pytest.fixture
def threads():
    """Run a test body under several thread counts, with no back-off to one
    thread on a busy machine (so the counts asked for are the counts used);
    restore the defaults."""
    from bnkernels import _kernels

    def run_with(n, fn):
        bnkernels.set_num_threads(n)
        _kernels._set_thread_backoff(False)
        try:
            return fn()
        finally:
            _kernels._set_thread_backoff(True)
            bnkernels.set_num_threads(None)
    return run_with


def test_big_shape_really_runs_on_4_threads(threads):
    """The bit-for-bit tests below mean something only if BIG_SHAPE's calls
    start 4 threads, split by channels and by (b, c) rows."""
    from bnkernels import _kernels
    if not bnkernels.openmp_enabled():
        pytest.skip("built without OpenMP")
    n, c, h, w = BIG_SHAPE
    assert threads(4, lambda: _kernels._threads_for(c, n * h * w)) == 4
    assert threads(4, lambda: _kernels._threads_for(n * c, h * w)) == 4


@pytest.mark.parametrize("shape", [(8, 32, 14, 14), (1, 256, 7, 7), (1, 32, 32, 32)])
def test_small_calls_run_on_one_thread_whatever_is_set(shape, threads):
    """A team costs a wake-up per thread (and, on a busy machine, a scheduler
    slice): calls under 65,536 values per thread never start one."""
    from bnkernels import _kernels
    n, c, h, w = shape
    for count in (2, 4, 16):
        assert threads(count, lambda: _kernels._threads_for(c, n * h * w)) == 1
        assert threads(count, lambda: _kernels._threads_for(n * c, h * w)) == 1


def test_thread_count_is_capped_by_work_items_and_the_setting(threads):
    """One thread per 65,536 values, never more threads than items or than
    set_num_threads asked for."""
    from bnkernels import _kernels
    if not bnkernels.openmp_enabled():
        pytest.skip("built without OpenMP")
    assert threads(8, lambda: _kernels._threads_for(1000, 3 * 65536 // 1000 + 1)) == 3
    assert threads(8, lambda: _kernels._threads_for(2, 10**6)) == 2
    assert threads(3, lambda: _kernels._threads_for(100, 10**6)) == 3
    assert threads(8, lambda: _kernels._threads_for(0, 10**6)) == 1


@pytest.mark.parametrize("bad", [-1, 2**31, 1.5, None])
def test_threads_for_rejects_bad_counts_naming_them(bad):
    from bnkernels import _kernels
    with pytest.raises((TypeError, ValueError), match="items"):
        _kernels._threads_for(bad, 1)


def test_set_num_threads_is_what_get_num_threads_reports():
    try:
        bnkernels.set_num_threads(3)
        assert bnkernels.get_num_threads() == (3 if bnkernels.openmp_enabled() else 1)
    finally:
        bnkernels.set_num_threads(None)
    assert bnkernels.get_num_threads() >= 1


# ---------------------------------------------------------------------------
# Validation of the thread count and the streaming threshold: a bad value
# raises, naming the argument, and leaves the setting as it was
# ---------------------------------------------------------------------------

MAX_THREADS = 1024  # the documented cap (BN_MAX_THREADS in csrc/bnkernels.h)


@pytest.fixture
def thread_setting():
    """Start at 3 threads, a value no bad call may change; restore the default."""
    bnkernels.set_num_threads(3)
    yield 3 if bnkernels.openmp_enabled() else 1
    bnkernels.set_num_threads(None)


@pytest.mark.parametrize("bad", [1.5, 2.0, float("nan"), float("inf"), np.float64(2), "2", b"2",
                                 [2], True, False, np.bool_(True)],
                         ids=repr)
def test_set_num_threads_rejects_what_is_not_an_int_with_type_error(bad, thread_setting):
    with pytest.raises(TypeError,
                       match=rf"threads must be an int from 0 to {MAX_THREADS} or None, got "
                             rf"{type(bad).__name__} "):
        bnkernels.set_num_threads(bad)
    assert bnkernels.get_num_threads() == thread_setting


@pytest.mark.parametrize("bad", [-1, np.int64(-1), MAX_THREADS + 1, 10**9, 2**31, 2**64],
                         ids=repr)
def test_set_num_threads_rejects_counts_out_of_range_naming_the_cap(bad, thread_setting):
    with pytest.raises(ValueError,
                       match=rf"threads must be an int from 0 to {MAX_THREADS} or None "
                             rf"\(0 or None: OpenMP's default\), got {int(bad)}$"):
        bnkernels.set_num_threads(bad)
    assert bnkernels.get_num_threads() == thread_setting


@pytest.mark.parametrize("count", [1, 2, np.int32(2), np.uint8(4), MAX_THREADS], ids=repr)
def test_set_num_threads_accepts_ints_up_to_the_cap(count, thread_setting):
    bnkernels.set_num_threads(count)
    assert bnkernels.get_num_threads() == (int(count) if bnkernels.openmp_enabled() else 1)


def test_a_refused_huge_count_leaves_large_calls_working(thread_setting):
    """set_num_threads(10**9) once was accepted, and the next large call ended
    the interpreter ("libgomp: Thread creation failed"). Oracle: the same
    call on one thread; tolerance: none."""
    x = np.random.default_rng(3).standard_normal((8, 64, 32, 32)).astype(np.float32)
    with pytest.raises(ValueError):
        bnkernels.set_num_threads(10**9)
    from bnkernels import _kernels
    many = [a.tobytes() for a in _kernels.stats(x)]
    bnkernels.set_num_threads(1)
    assert many == [a.tobytes() for a in _kernels.stats(x)]


@pytest.mark.skipif(not bnkernels.openmp_enabled(), reason="built without OpenMP")
def test_the_default_thread_count_is_capped_too(tmp_path):
    import os
    import subprocess
    import sys
    code = "import bnkernels; print(bnkernels.get_num_threads())"
    env = {**os.environ, "OMP_NUM_THREADS": str(MAX_THREADS * 5)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True, timeout=60, cwd=tmp_path).stdout
    assert out.strip() == str(MAX_THREADS)


def c_function(name, restype, *argtypes):
    """A C function of the extension, through ctypes (the extension module's
    own copy of the library, with its settings), or skip."""
    import ctypes
    from bnkernels import _kernels
    try:
        function = getattr(ctypes.CDLL(_kernels.__file__), name)
    except (OSError, AttributeError):
        pytest.skip(f"{name} is not an exported symbol of the extension on this platform")
    function.restype, function.argtypes = restype, argtypes
    return function


@pytest.mark.skipif(not bnkernels.openmp_enabled(), reason="built without OpenMP")
def test_c_bn_set_num_threads_clamps_for_c_callers():
    """C callers get no exception: counts above the cap are the cap, counts
    below 1 the default."""
    import ctypes
    set_threads = c_function("bn_set_num_threads", None, ctypes.c_int)
    try:
        bnkernels.set_num_threads(None)
        default = bnkernels.get_num_threads()
        set_threads(10**9)
        assert bnkernels.get_num_threads() == MAX_THREADS
        set_threads(MAX_THREADS + 1)
        assert bnkernels.get_num_threads() == MAX_THREADS
        set_threads(-(2**31))
        assert bnkernels.get_num_threads() == default
        set_threads(5)
        assert bnkernels.get_num_threads() == 5
    finally:
        bnkernels.set_num_threads(None)


@pytest.fixture
def streaming_setting():
    """Start at a threshold no bad call may change; restore the default."""
    bnkernels.set_streaming_threshold(12345)
    yield 12345
    bnkernels.set_streaming_threshold(16 << 20)


@pytest.mark.parametrize("bad", [1.5, 1e9, float("nan"), float("inf"), np.float32(1), "16M",
                                 True, np.bool_(False), [1]], ids=repr)
def test_set_streaming_threshold_rejects_what_is_not_an_int_with_type_error(
        bad, streaming_setting):
    with pytest.raises(TypeError, match=rf"nbytes must be a non-negative int or None, got "
                                        rf"{type(bad).__name__} "):
        bnkernels.set_streaming_threshold(bad)
    assert bnkernels.get_streaming_threshold() == streaming_setting


@pytest.mark.parametrize("bad, message", [
    (-1, "nbytes must be a non-negative int or None, got -1$"),
    (np.int64(-(2**63)), f"nbytes must be a non-negative int or None, got {-(2**63)}$"),
    (2**63, rf"nbytes must be at most 2\*\*63 - 1 \(int64\), got {2**63}$"),
    (np.uint64(2**64 - 1), rf"at most 2\*\*63 - 1 \(int64\), got {2**64 - 1}$"),
    (10**30, rf"at most 2\*\*63 - 1 \(int64\), got {10**30}$"),
], ids=repr)
def test_set_streaming_threshold_rejects_negative_and_int64_overflow(bad, message,
                                                                     streaming_setting):
    with pytest.raises(ValueError, match=message):
        bnkernels.set_streaming_threshold(bad)
    assert bnkernels.get_streaming_threshold() == streaming_setting


@pytest.mark.parametrize("nbytes", [0, 1, np.uint64(5), np.int32(7), 2**62, 2**63 - 1], ids=repr)
def test_set_streaming_threshold_keeps_any_int64_exactly(nbytes, streaming_setting):
    bnkernels.set_streaming_threshold(nbytes)
    assert bnkernels.get_streaming_threshold() == int(nbytes)
    bnkernels.set_streaming_threshold(None)
    assert bnkernels.get_streaming_threshold() is None


def every_kernel_output(dtype, seed=0):
    """Every public kernel of both families, on BIG_SHAPE, as bytes."""
    from bnkernels import _kernels, darknet
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(BIG_SHAPE) * 3 + 1).astype(dtype)
    dy = rng.standard_normal(BIG_SHAPE).astype(dtype)
    c = BIG_SHAPE[1]
    w, b = rng.uniform(0.5, 2, c).astype(dtype), rng.standard_normal(c).astype(dtype)
    out = {}
    for flavor in ("pjreddie", "alexeyab"):
        mean = darknet.mean_cpu(x)
        variance = darknet.variance_cpu(x, mean)
        x_norm = darknet.normalize_cpu(x, mean, variance, numerics=numerics_of(flavor))
        scaled = darknet.scale_bias(dy, w)
        md = darknet.mean_delta_cpu(scaled, variance)
        vd = darknet.variance_delta_cpu(x, scaled, mean, variance)
        out.update({
            f"{flavor} mean": mean, f"{flavor} variance": variance,
            f"{flavor} x_norm": x_norm,
            f"{flavor} scale_add_bias": darknet.scale_add_bias(x_norm, w, b),
            f"{flavor} add_bias": darknet.add_bias(x_norm, b),
            f"{flavor} backward_bias": darknet.backward_bias(dy),
            f"{flavor} backward_scale": darknet.backward_scale_cpu(x_norm, dy),
            f"{flavor} mean_delta": md, f"{flavor} variance_delta": vd,
            f"{flavor} normalize_delta": darknet.normalize_delta_cpu(
                x, mean, variance, md, vd, scaled, numerics=numerics_of(flavor)),
        })
    mean, var = _kernels.stats(x)
    invstd = _kernels.invstd(var, 1e-5)
    sums = _kernels.backward_reduce(dy, x, mean, invstd)
    relu_sums = _kernels.backward_reduce(dy, x, mean, invstd, w, b, relu=True)
    out.update({
        "stats mean": mean, "stats var": var,
        "normalize_affine": _kernels.normalize_affine(x, mean, invstd, w, b),
        "normalize_affine relu": _kernels.normalize_affine(x, mean, invstd, w, b, relu=True),
        "backward_reduce": np.concatenate(sums),
        "backward_reduce relu": np.concatenate(relu_sums),
        "backward_dx": _kernels.backward_dx(dy, x, mean, invstd, w, *sums),
        "backward_dx relu": _kernels.backward_dx(dy, x, mean, invstd, w, *relu_sums,
                                                 bias=b, relu=True),
        "backward_dx eval": _kernels.backward_dx(dy, x, mean, invstd, w, None, None),
    })
    return {key: value.tobytes() for key, value in out.items()}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_kernel_gives_the_same_bits_for_1_to_4_threads(dtype, threads):
    one = threads(1, lambda: every_kernel_output(dtype))
    for n in THREAD_COUNTS[1:]:
        many = threads(n, lambda: every_kernel_output(dtype))
        differing = [key for key in one if many[key] != one[key]]
        assert not differing, f"{n} threads changed {differing}"


@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("numerics", bnkernels.NUMERICS)
def test_layer_gives_the_same_bits_for_1_to_4_threads(numerics, activation, threads):
    def step():
        rng = np.random.default_rng(7)
        layer = bnkernels.BatchNorm2d(BIG_SHAPE[1], numerics=numerics,
                                      activation=activation)
        layer.weight[:] = rng.uniform(0.5, 2, BIG_SHAPE[1])
        x = rng.standard_normal(BIG_SHAPE).astype(np.float32)
        y = layer(x)
        dx = layer.backward(rng.standard_normal(BIG_SHAPE).astype(np.float32))
        return [a.tobytes() for a in (y, dx, layer.grad_weight, layer.grad_bias,
                                      layer.running_mean, layer.running_var)]
    one = threads(1, step)
    for n in THREAD_COUNTS[1:]:
        assert threads(n, step) == one, f"{n} threads"


def test_darknet_vectors_hold_bit_for_bit_on_4_threads(threads):
    """The large case (16 x 64 x 28 x 28) against Darknet's own outputs."""
    from conftest import VECTOR_FILES
    from bnkernels.tools import verify
    large = [(flavor, path) for flavor, path in VECTOR_FILES if path.stem.startswith("b16")]
    assert large, "the large vector case is missing from tests/data"
    for flavor, path in large:
        with np.load(path) as z:
            rows = threads(4, lambda: verify.compare_case(z, flavor))
        failed = [key for key, ok, *_ in rows if not ok]
        assert not failed, f"{flavor}: {failed}"


@pytest.mark.skipif(not bnkernels.openmp_enabled(), reason="built without OpenMP")
def test_default_thread_count_follows_omp_num_threads(tmp_path):
    import subprocess
    import sys
    code = "import bnkernels; print(bnkernels.get_num_threads())"
    for n in ("1", "3"):
        env = {**__import__("os").environ, "OMP_NUM_THREADS": n}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True, cwd=tmp_path).stdout
        assert out.strip() == n


@pytest.mark.skipif(not bnkernels.openmp_enabled(), reason="built without OpenMP")
def test_threadpoolctl_limits_the_default_thread_count():
    threadpoolctl = pytest.importorskip("threadpoolctl", reason="pip install threadpoolctl")
    bnkernels.set_num_threads(None)
    with threadpoolctl.threadpool_limits(1, user_api="openmp"):
        assert bnkernels.get_num_threads() == 1
    bnkernels.set_num_threads(2)  # an explicit choice wins over threadpoolctl
    try:
        with threadpoolctl.threadpool_limits(1, user_api="openmp"):
            assert bnkernels.get_num_threads() == 2
    finally:
        bnkernels.set_num_threads(None)


@pytest.mark.parametrize("user_setting, expected", [
    ({}, "10000"),                                    # ours: a short spin
    ({"GOMP_SPINCOUNT": "42"}, "42"),                 # the user's wins
    ({"OMP_WAIT_POLICY": "ACTIVE"}, None),            # a chosen policy is left alone
])
def test_import_asks_libgomp_for_a_short_spin_unless_the_user_chose(user_setting, expected,
                                                                   tmp_path):
    # idle OpenMP threads spinning for libgomp's default ~300,000 turns took
    # the cores of NumPy's BLAS threads (a GoogLeNet step 3.5x slower on 2 cores)
    import os
    import subprocess
    import sys
    env = {key: value for key, value in os.environ.items()
           if key not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(user_setting)
    code = "import os, bnkernels; print(os.environ.get('GOMP_SPINCOUNT'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True, cwd=tmp_path).stdout.strip()
    assert out == str(expected)


@pytest.mark.parametrize("spatial", [(1, 1), (3, 5), (4, 4), (7, 7), (4, 5), (14, 14), (16, 16),
                                     (17, 17)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_channels_statistics_do_not_depend_on_its_neighbours(dtype, spatial):
    """Short rows of 8 neighbouring channels are summed together (one
    transposed tree for 8 rows' lanes); a channel alone takes the row-by-row
    code. Oracle: each channel's statistics computed alone; tolerance: none."""
    from bnkernels import _kernels
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((3, 19, *spatial)) * 3 + 50).astype(dtype)
    mean, var = _kernels.stats(x)
    for c in range(x.shape[1]):
        alone_mean, alone_var = _kernels.stats(np.ascontiguousarray(x[:, c:c + 1]))
        assert (mean[c].tobytes(), var[c].tobytes()) == (alone_mean.tobytes(),
                                                         alone_var.tobytes()), c


@pytest.fixture
def backoff_on_two_threads():
    """Two threads with the back-off on and forgotten before and after."""
    from bnkernels import _kernels
    if not bnkernels.openmp_enabled():
        pytest.skip("built without OpenMP")
    bnkernels.set_num_threads(2)
    _kernels._set_thread_backoff(True)
    try:
        yield _kernels
    finally:
        _kernels._set_thread_backoff(True)
        bnkernels.set_num_threads(None)


def _lost_team(kernels, work, busy_ns, wait_ns):
    """A team of `work` values whose first thread was done after busy_ns and
    whose other thread came wait_ns later, ending 10 s from now (so that the
    back-off it starts outlasts the test however slowly it runs)."""
    end = kernels._now_ns() + 10**10
    first_end = end - wait_ns
    kernels._record_team(work, first_end - busy_ns, 0, first_end, end)


def test_a_lost_team_makes_only_calls_it_would_outweigh_serial(backoff_on_two_threads):
    """csrc/threads.c: a wait of d ns after b ns of work W is a loss for the
    calls of less work than W * d / b, and only those run on one thread;
    larger ones keep their threads (a slow wake-up after a small call must
    not make a network's large convolutions serial)."""
    k = backoff_on_two_threads
    w = 10**6
    assert k._threads_for(100, 10**6) == 2
    _lost_team(k, w, busy_ns=200_000, wait_ns=1_000_000)  # bound 5 * w
    assert k._threads_for(100, 5 * w // 100 - 1) == 1
    assert k._threads_for(100, 5 * w // 100 + 1) == 2
    assert k._threads_for(2, 10**7) == 2


def test_the_bound_is_at_least_the_lost_team_and_only_grows(backoff_on_two_threads):
    """A lost team's own work is always below the bound, and a later, smaller
    loss within the same back-off does not lower it."""
    k = backoff_on_two_threads
    w = 10**6
    # a thread started 300 us late and ended 100 us after the first, which was
    # busy 400 us: a loss (300 > 500 / 2) whose w * d / b is below w
    start = k._now_ns() + 10**10
    k._record_team(w, start, 300_000, start + 400_000, start + 500_000)
    assert k._threads_for(1000, w // 1000 - 1) == 1
    assert k._threads_for(1000, w // 1000 + 1) == 2
    _lost_team(k, 3 * w, busy_ns=100_000, wait_ns=200_000)  # bound 6 * w
    _lost_team(k, w, busy_ns=100_000, wait_ns=200_000)  # 2 * w: kept at 6 * w
    assert k._threads_for(1000, 6 * w // 1000 - 1) == 1
    assert k._threads_for(1000, 6 * w // 1000 + 1) == 2


def test_a_short_wait_is_not_a_loss(backoff_on_two_threads):
    """Waits up to 100 us, or not over half the team's time, start no
    back-off."""
    k = backoff_on_two_threads
    _lost_team(k, 10**6, busy_ns=10_000, wait_ns=90_000)  # under 100 us
    _lost_team(k, 10**6, busy_ns=800_000, wait_ns=700_000)  # under half the team
    assert k._threads_for(100, 10**4) == 2
    k._set_thread_backoff(False)
    _lost_team(k, 10**6, busy_ns=100_000, wait_ns=1_000_000)
    assert k._threads_for(100, 10**4) == 2
