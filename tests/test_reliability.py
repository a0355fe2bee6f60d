"""Reliability: degenerate sizes, the C fuzz harness, and leaks.

Oracles: shapes and emptiness of results for zero-size tensors (nothing to
compute, nothing to crash on); AddressSanitizer and UBSan for the C harness;
the process's resident memory for leaks.
"""
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import bnkernels
from bnkernels import _kernels, darknet
from bnkernels.distributed import merge_moments, shard_moments
from c_build import build_c_program
from forks import numerics_of

ROOT = Path(__file__).parent.parent


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (2, 0, 4, 4), (2, 3, 0, 4), (2, 0, 0, 0)])
def test_every_kernel_takes_zero_size_tensors(shape, dtype):
    """A zero channel count once reached a division by zero in C (SIGFPE)."""
    x = np.ones(shape, dtype)
    c = shape[1]
    v = np.ones(c, dtype)
    mean = darknet.mean_cpu(x)
    variance = darknet.variance_cpu(x, mean)
    for flavor in ("pjreddie", "alexeyab"):
        x_norm = darknet.normalize_cpu(x, mean, variance, numerics=numerics_of(flavor))
        assert x_norm.shape == shape
        assert darknet.scale_add_bias(x_norm, v, v).shape == shape
        assert darknet.add_bias(x_norm, v).shape == shape
        md = darknet.mean_delta_cpu(x, variance)
        vd = darknet.variance_delta_cpu(x, x, mean, variance)
        assert darknet.normalize_delta_cpu(x, mean, variance, md, vd, x,
                                           numerics=numerics_of(flavor)).shape == shape
        assert darknet.backward_batchnorm_layer(x, x_norm, x, mean, variance, v,
                                                numerics=numerics_of(flavor))[0].shape == shape
    assert darknet.backward_bias(x).shape == (c,)
    assert darknet.backward_scale_cpu(x, x).shape == (c,)
    m, var = _kernels.stats(x)
    k = _kernels.invstd(np.ones(c), 1e-5)
    assert _kernels.normalize_affine(x, np.zeros(c), k, v, v, relu=True).shape == shape
    sums = _kernels.backward_reduce(x, x, np.zeros(c), k)
    assert _kernels.backward_dx(x, x, np.zeros(c), k, v, *sums).shape == shape
    for numerics in bnkernels.NUMERICS:
        with np.errstate(all="ignore"):
            y, saved = bnkernels.batch_norm_forward(x, v, v, None, None, numerics=numerics)
        if shape[0] * shape[2] * shape[3] == 0:
            assert y.shape == shape
            assert bnkernels.batch_norm_backward(x, saved)[0].shape == shape
    count, _, _ = merge_moments(*[np.array(a)[None] for a in shard_moments(x)])
    assert count == shape[0] * shape[2] * shape[3]


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
@pytest.mark.own_c_build
def test_c_fuzz_harness_runs_clean_under_asan_and_ubsan(tmp_path):
    """tests/fuzz/fuzz_kernels.c, built with the sanitizers: the regression
    inputs, then a few seconds of random ones (CI runs it longer)."""
    binary = tmp_path / "fuzz_kernels"
    env = {key: value for key, value in os.environ.items() if key != "LD_PRELOAD"}
    env["ASAN_OPTIONS"] = "detect_leaks=1"
    sources = sorted(str(p) for p in (ROOT / "csrc").rglob("*.c"))
    build = build_c_program(
        ["gcc"], ["-std=c11", "-g", "-O1", "-fsanitize=address,undefined",
                  "-fno-sanitize-recover=undefined", "-fopenmp", f"-I{ROOT / 'csrc'}"],
        [*sources, str(ROOT / "tests" / "fuzz" / "fuzz_kernels.c")], binary, env=env)
    if build.returncode != 0 and "sanitize" in build.stderr:
        pytest.skip(f"this gcc cannot build with sanitizers: {build.stderr[-300:]}")
    assert build.returncode == 0, build.stderr[-2000:]
    corpus = sorted(str(p) for p in (ROOT / "tests" / "fuzz" / "corpus").iterdir())
    run = subprocess.run([str(binary), os.environ.get("BNKERNELS_FUZZ_SECONDS", "3"),
                          *corpus], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "no report" in run.stdout


# ---------------------------------------------------------------------------
# numerical edge cases (the README's table): oracle, float64 NumPy two-pass
# statistics of the same values, or the IEEE outcome stated
# ---------------------------------------------------------------------------

def standard_oracle(x, eps=1e-5):
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=(0, 2, 3), keepdims=True)
    var = ((x64 - mean) ** 2).mean(axis=(0, 2, 3), keepdims=True)
    return (x64 - mean) / np.sqrt(var + eps)


def spacing_error(y, exact):
    """Largest error in units of y's dtype's spacing at max|exact|."""
    scale = np.spacing(y.dtype.type(np.abs(exact).max()))
    return float(np.abs(y.astype(np.float64) - exact).max() / scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_constant_channel_gives_beta_and_finite_gradients(dtype):
    x = np.full((4, 2, 3, 3), 7.25, dtype)
    bias = np.array([0.5, -1.0], dtype)
    y, saved = bnkernels.batch_norm_forward(x, np.ones(2, dtype), bias, None, None)
    np.testing.assert_array_equal(y, np.broadcast_to(bias[None, :, None, None], x.shape))
    dx, dw, db = bnkernels.batch_norm_backward(np.ones_like(x), saved)
    assert np.isfinite(dx).all() and np.isfinite(dw).all() and np.isfinite(db).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mean_1e6_standard_deviations_keeps_the_output_accurate(dtype):
    """float32: within 4 ulps. float64: the mean itself is only known to half
    an ulp of 1e6 (1.2e-10), so y to a few of those over the standard
    deviation (1): 2e-9 absolute."""
    x = (np.random.default_rng(5).standard_normal((8, 3, 8, 8)) + 1e6).astype(dtype)
    y, _ = bnkernels.batch_norm_forward(x, None, None, None, None)
    if dtype == np.float32:
        assert spacing_error(y, standard_oracle(x)) <= 4
    else:
        np.testing.assert_allclose(y, standard_oracle(x), rtol=0, atol=16 * np.spacing(1e6))


def test_values_near_the_largest_float32_do_not_overflow_the_statistics():
    """float32 input is summed in float64, so a finite answer stays finite."""
    big = float(np.finfo(np.float32).max) / 4
    x = (np.random.default_rng(6).uniform(-1, 1, (4, 2, 5, 5)) * big).astype(np.float32)
    y, saved = bnkernels.batch_norm_forward(x, None, None, None, None)
    assert np.isfinite(y).all()
    assert spacing_error(y, standard_oracle(x.astype(np.float64) / big, eps=0.0)) <= 4
    dx, _, _ = bnkernels.batch_norm_backward(np.random.default_rng(8).standard_normal(
        x.shape).astype(np.float32), saved)
    assert np.isfinite(dx).all()


def test_subnormal_float32_values_are_kept_not_flushed():
    tiny = np.finfo(np.float32).smallest_subnormal
    x = (np.arange(2 * 2 * 3 * 3).reshape(2, 2, 3, 3) * tiny).astype(np.float32)
    mean, var = _kernels.stats(x)
    assert (mean > 0).all() and (var > 0).all()  # flushed to zero, both would be 0
    y, _ = bnkernels.batch_norm_forward(x, None, None, None, None, eps=1e-300)  # below the variance
    assert spacing_error(y, standard_oracle(x, eps=0.0)) <= 4


def test_subnormal_float64_values_give_finite_results():
    """Their squares underflow to 0 in float64 (IEEE), so the variance is 0
    and y = (x - mean) / sqrt(eps): tiny, finite, nothing flushed on the way."""
    tiny = np.finfo(np.float64).smallest_subnormal
    x = np.arange(2 * 2 * 3 * 3, dtype=np.float64).reshape(2, 2, 3, 3) * tiny
    y, _ = bnkernels.batch_norm_forward(x, None, None, None, None)
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(1e-5), rtol=1e-12, atol=0)


@pytest.mark.parametrize("numerics", bnkernels.NUMERICS)
@pytest.mark.parametrize("poison", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_poison_their_channel_only(numerics, poison):
    x = np.random.default_rng(7).standard_normal((3, 4, 5, 5)).astype(np.float32)
    x[1, 2, 3, 4] = poison
    with np.errstate(all="ignore"):
        y, saved = bnkernels.batch_norm_forward(x, None, None, None, None, numerics=numerics)
        dx, _, _ = bnkernels.batch_norm_backward(np.ones_like(x), saved)
    others = [0, 1, 3]
    assert np.isfinite(y[:, others]).all() and np.isfinite(dx[:, others]).all()
    assert not np.isfinite(y[:, 2]).all()


# ---------------------------------------------------------------------------
# leaks: 10^5 calls of each public function, resident memory flat
# ---------------------------------------------------------------------------

def resident_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def public_calls():
    """One call of every public function on a tiny tensor, each a thunk."""
    from bnkernels import distributed
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 3, 2, 2)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    v, w = np.ones(3, np.float32), np.full(3, 0.5, np.float32)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    out = np.empty_like(x)
    mean = darknet.mean_cpu(x)
    var = darknet.variance_cpu(x, mean)
    xn = darknet.normalize_cpu(x, mean, var)
    m64, v64 = _kernels.stats(x)
    k = _kernels.invstd(v64, 1e-5)
    sums = _kernels.backward_reduce(dy, x, m64, k)
    y, saved = bnkernels.batch_norm_forward(x, w, v, rm, rv)
    _, dk_saved = bnkernels.batch_norm_forward(x, w, v, None, None, numerics="darknet")
    layer = bnkernels.BatchNorm2d(3, activation="relu")
    sync = distributed.SyncBatchNorm2d(3)
    bad = np.ones((2, 4, 2, 2), np.float32)
    pooled, argmax = _kernels.max_pool2d_forward(x, 2, 1, 0)
    cols = _kernels.im2col(x, (1, 2), 1, (0, 1))
    # channels last, big enough that the reductions split rows among threads
    xt = rng.standard_normal((2, 16, 32, 40)).astype(np.float32)
    mt, vt = _kernels.stats(xt, nhwc=True)
    kt = _kernels.invstd(vt, 1e-5)

    def nhwc_kernels():
        _kernels.stats(xt, nhwc=True)
        y = _kernels.normalize_affine(xt, mt, kt, nhwc=True)
        sums = _kernels.backward_reduce(xt, xt, mt, kt, nhwc=True)
        _kernels.backward_dx(xt, xt, mt, kt, None, *sums, nhwc=True, out=y)

    def rejected():
        try:
            bnkernels.batch_norm_forward(bad, w, v, None, None)
        except ValueError:
            pass

    return {
        "mean_cpu": lambda: darknet.mean_cpu(x),
        "variance_cpu": lambda: darknet.variance_cpu(x, mean, out=var),
        "normalize_cpu": lambda: darknet.normalize_cpu(x, mean, var, out=out),
        "scale_add_bias": lambda: darknet.scale_add_bias(xn, w, v),
        "scale_bias/add_bias": lambda: darknet.add_bias(darknet.scale_bias(xn, w), v),
        "rolling_update": lambda: darknet.rolling_update(rm.copy(), mean),
        "backward_bias/scale": lambda: (darknet.backward_bias(dy),
                                        darknet.backward_scale_cpu(xn, dy)),
        "mean/variance/normalize_delta": lambda: darknet.normalize_delta_cpu(
            x, mean, var, darknet.mean_delta_cpu(dy, var),
            darknet.variance_delta_cpu(x, dy, mean, var), dy),
        "backward_batchnorm_layer": lambda: darknet.backward_batchnorm_layer(
            x, xn, dy, mean, var, w),
        "stats/invstd": lambda: _kernels.invstd(_kernels.stats(x)[1], 1e-5),
        "normalize_affine": lambda: _kernels.normalize_affine(x, m64, k, w, v, relu=True),
        "backward_reduce/dx": lambda: _kernels.backward_dx(dy, x, m64, k, w, *sums),
        "batch_norm_forward/backward": lambda: bnkernels.batch_norm_backward(
            dy, bnkernels.batch_norm_forward(x, w, v, rm, rv)[1]),
        "darknet backward": lambda: bnkernels.batch_norm_backward(dy, dk_saved),
        "BatchNorm2d": lambda: (layer(x), layer.backward(dy)),
        "SyncBatchNorm2d": lambda: (sync(x), sync.backward(dy)),
        "merge_moments": lambda: distributed.merge_moments(
            [4.0, 4.0], np.ones((2, 3)), np.ones((2, 3))),
        "im2col/col2im": lambda: _kernels.col2im(_kernels.im2col(x, (1, 2), 1, (0, 1)),
                                                 x.shape, (1, 2), 1, (0, 1)),
        "col2im out=": lambda: _kernels.col2im(cols, x.shape, (1, 2), 1, (0, 1), out=out),
        "max_pool2d": lambda: _kernels.max_pool2d_backward(
            pooled, _kernels.max_pool2d_forward(x, 2, 1, 0)[1], x.shape),
        "max_pool2d out=": lambda: _kernels.max_pool2d_backward(pooled, argmax, x.shape,
                                                                out=out),
        "avg_pool2d": lambda: _kernels.avg_pool2d_backward(
            _kernels.avg_pool2d_forward(x, 2, 1, 1, ceil_mode=True), x.shape, 2, 1, 1,
            ceil_mode=True),
        "NHWC kernels": nhwc_kernels,
        "a rejected call": rejected,
        "set/get_num_threads": lambda: (bnkernels.set_num_threads(2),
                                        bnkernels.get_num_threads()),
    }


@pytest.mark.skipif("LD_PRELOAD" in os.environ,
                    reason="a sanitizer's allocator quarantines freed memory")
@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc (Linux)")
def test_a_hundred_thousand_calls_of_each_public_function_leak_nothing():
    """Oracle: resident memory. A leak of even 8 bytes a call would add
    800 kB here; allocator noise stays far below the 512 kB allowed."""
    calls = public_calls()
    try:
        for name, call in calls.items():
            for _ in range(1000):  # warm up: caches, free lists
                call()
            before = resident_bytes()
            for _ in range(100_000):
                call()
            grown = resident_bytes() - before
            assert grown < 512 * 1024, f"{name}: resident memory grew by {grown} bytes"
    finally:
        bnkernels.set_num_threads(None)
