"""The C library on its own: tests/c/use_kernels.c, a C program that includes
bnkernels.h and no Python header, compiled with csrc/*.c by the system's C
compiler, serial and with OpenMP.

Oracles: float64 NumPy formulas, at the tolerances given with each test; and
the extension: the same C code built by another compiler command gives the
same bits (no fast-math, no contraction into FMAs, fixed orders of summation),
as do the OpenMP build on 4 threads and the builds without SIMD dispatch for
baseline x86-64, AVX2 and AVX-512F, which run the sums in the other form of
their eight fixed lanes (fast/lanes.h: two 32-byte halves instead of one 64-byte
vector, or the reverse).
"""
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bnkernels import _kernels, darknet
from c_build import build_c_program

ROOT = Path(__file__).parent.parent
CSRC = ROOT / "csrc"
PROGRAM = ROOT / "tests" / "c" / "use_kernels.c"
FLAGS = ["-std=c11", "-O2", "-ffp-contract=off"]

# (batch, channels, spatial): 8192 values per channel, so that the OpenMP
# build splits the 16 channels (or the 64 rows) over its 4 threads
SHAPE = (4, 16, 2048)
EPS = 1e-5

pytestmark = [
    pytest.mark.skipif(not (CSRC / "bnkernels.h").is_file(),
                       reason="needs csrc/ of a source checkout (a wheel does not install it)"),
    pytest.mark.own_c_build,
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """x, dy, weight, bias (float64), and the file use_kernels reads them from."""
    rng = np.random.default_rng(20)
    batch, channels, spatial = SHAPE
    x = rng.standard_normal(SHAPE) * rng.uniform(0.5, 3, (1, channels, 1)) \
        + rng.uniform(-4, 4, (1, channels, 1))
    dy = rng.standard_normal(SHAPE)
    weight = rng.uniform(0.5, 2, channels)
    bias = rng.uniform(-1, 1, channels)
    path = tmp_path_factory.mktemp("c_api") / "inputs.bin"
    with open(path, "wb") as f:
        for a in (np.array(SHAPE, np.int64), x, dy, weight, bias):
            a.tofile(f)
    return {"x": x, "dy": dy, "weight": weight, "bias": bias, "path": path}


def build_and_run(compiler, flags, path, env):
    """Compile use_kernels with csrc/ and run it on path: {name: values}, or
    the compiler's complaint (str) when it cannot build it."""
    binary = path.parent / ("use_kernels_" + "_".join(f.strip("-") for f in flags))
    sources = [str(p) for p in sorted(CSRC.rglob("*.c"))] + [str(PROGRAM)]
    build = build_c_program(compiler, [*FLAGS, *flags, f"-I{CSRC}"], sources, binary)
    if build.returncode != 0:
        return build.stderr[-2000:]
    run = subprocess.run([str(binary), str(path)], capture_output=True, text=True,
                         env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    results = {}
    for line in run.stdout.splitlines():
        name, *values = line.split()
        results[name] = np.array([float(v) for v in values])
    return results


def cpu_flags():
    """The running CPU's feature flags (Linux's /proc/cpuinfo; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


# builds of use_kernels: their extra compiler flags, and the CPU flag each
# needs to run (None: any CPU the compiler targets)
NO_DISPATCH = "-DBNKERNELS_NO_DISPATCH"
BUILDS = {
    "serial": ([], None),
    "openmp": (["-fopenmp"], None),
    "no_dispatch": ([NO_DISPATCH], None),
    "no_dispatch_avx2": ([NO_DISPATCH, "-mavx2"], "avx2"),
    "no_dispatch_avx512f": ([NO_DISPATCH, "-mavx512f"], "avx512f"),
}


@pytest.fixture(scope="module")
def outputs(c_compiler, inputs):
    """use_kernels' results for each of BUILDS ("openmp" on 4 threads), or a
    str saying why a build cannot run here."""
    env = {**os.environ, "OMP_NUM_THREADS": "4"}
    results = {}
    for name, (flags, needs) in BUILDS.items():
        if needs is not None and needs not in cpu_flags():
            results[name] = f"this CPU lacks {needs}"
            continue
        built = build_and_run(c_compiler, flags, inputs["path"], env)
        results[name] = (f"the C compiler cannot build with {' '.join(flags)}: {built}"
                         if isinstance(built, str) else built)
    assert not isinstance(results["serial"], str), results["serial"]
    return results


@pytest.fixture(params=list(BUILDS))
def out(request, outputs):
    """The results of one build: {name: array of the printed values}."""
    results = outputs[request.param]
    if isinstance(results, str):
        pytest.skip(results)
    return {name: v.reshape(SHAPE) if v.size == np.prod(SHAPE) else v
            for name, v in results.items()}


def per_channel(v):
    return v[None, :, None]


def test_standard_forward_and_backward_f64_match_numpy_float64(out, inputs):
    """Statistics in float64 over 8192 values per channel, then one rounding
    per output value: within 1e-12 relative to each result's largest value."""
    x, dy, w, b = inputs["x"], inputs["dy"], inputs["weight"], inputs["bias"]
    n = x.shape[0] * x.shape[2]
    mean = x.mean(axis=(0, 2))
    var = x.var(axis=(0, 2))
    invstd = 1 / np.sqrt(var + EPS)
    x_hat = (x - per_channel(mean)) * per_channel(invstd)
    sum_dy = dy.sum(axis=(0, 2))
    sum_dy_xhat = (dy * x_hat).sum(axis=(0, 2))
    expected = {
        "mean": mean, "var": var, "invstd": invstd,
        "y": x_hat * per_channel(w) + per_channel(b),
        "sum_dy": sum_dy, "sum_dy_xhat": sum_dy_xhat,
        "dx": per_channel(w * invstd) * (dy - per_channel(sum_dy / n)
                                         - x_hat * per_channel(sum_dy_xhat / n)),
    }
    for name, value in expected.items():
        np.testing.assert_allclose(out[name], value, rtol=0,
                                   atol=1e-12 * np.abs(value).max(), err_msg=name)


def test_standard_f32_with_fused_relu_matches_numpy_float64(out, inputs):
    """float32 x, dy, weight and bias (the program rounds them), statistics in
    float64: y and dx within 2e-6 of their largest value (a few float32
    roundings of 6e-8 each); dy passes where the float32 y is positive."""
    x, dy, w, b = (inputs[k].astype(np.float32).astype(np.float64)
                   for k in ("x", "dy", "weight", "bias"))
    n = x.shape[0] * x.shape[2]
    mean, var = x.mean(axis=(0, 2)), x.var(axis=(0, 2))
    invstd = 1 / np.sqrt(var + EPS)
    x_hat = (x - per_channel(mean)) * per_channel(invstd)
    y = np.maximum(x_hat * per_channel(w) + per_channel(b), 0)
    g = np.where(out["relu_y_f32"] > 0, dy, 0)
    dx = per_channel(w * invstd) * (g - per_channel(g.sum(axis=(0, 2)) / n)
                                    - x_hat * per_channel((g * x_hat).sum(axis=(0, 2)) / n))
    for name, value in (("relu_y_f32", y), ("relu_dx_f32", dx)):
        np.testing.assert_allclose(out[name], value, rtol=0,
                                   atol=2e-6 * np.abs(value).max(), err_msg=name)


def nhwc(v):
    """SHAPE's values read as use_kernels' channels-last tensor: (batch,
    spatial / 2, 2 * channels)."""
    batch, channels, spatial = SHAPE
    return v.reshape(batch, spatial // 2, 2 * channels)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_nhwc_reductions_match_numpy_float64(out, inputs, dtype):
    """Channel-last statistics and backward sums over 8192 rows of 32
    channels (the program's x and dy rounded to dtype first): float64 sums of
    per-block and per-part sums, within 1e-12 relative to each result's
    largest value."""
    x, dy = (nhwc(inputs[k]).astype(dtype).astype(np.float64) for k in ("x", "dy"))
    suffix = "_f32" if dtype == np.float32 else ""
    mean, var = x.mean(axis=(0, 1)), x.var(axis=(0, 1))
    x_hat = (x - mean) / np.sqrt(var + EPS)
    expected = {"nhwc_mean": mean, "nhwc_var": var, "nhwc_sum_dy": dy.sum(axis=(0, 1)),
                "nhwc_sum_dy_xhat": (dy * x_hat).sum(axis=(0, 1))}
    for name, value in expected.items():
        np.testing.assert_allclose(out[name + suffix], value, rtol=0,
                                   atol=1e-12 * np.abs(value).max(), err_msg=name + suffix)


def test_short_row_reductions_match_numpy_float64(out, inputs):
    """Statistics and backward sums of rows of 32 values (SHAPE read with 64
    times the channels): within 1e-12 relative to each result's largest
    value."""
    batch, channels, spatial = SHAPE
    x, dy = (inputs[k].reshape(batch, 64 * channels, spatial // 64) for k in ("x", "dy"))
    mean, var = x.mean(axis=(0, 2)), x.var(axis=(0, 2))
    x_hat = (x - per_channel(mean)) / per_channel(np.sqrt(var + EPS))
    expected = {"short_mean": mean, "short_var": var, "short_sum_dy": dy.sum(axis=(0, 2)),
                "short_sum_dy_xhat": (dy * x_hat).sum(axis=(0, 2))}
    for name, value in expected.items():
        np.testing.assert_allclose(out[name], value, rtol=0,
                                   atol=1e-12 * np.abs(value).max(), err_msg=name)


def test_darknet_forward_f32_matches_numpy_float64(out, inputs):
    """Darknet sums 8192 float32 values per channel one after another; the
    error bound of such a sum, 8192 * 2^-24 = 5e-4 of the sum of |values|,
    sets the tolerance of mean and variance; x_norm inherits it."""
    x = inputs["x"].astype(np.float32).astype(np.float64)
    mean = x.mean(axis=(0, 2))
    variance = x.var(axis=(0, 2), ddof=1)  # Darknet divides by n - 1
    x_norm = (x - per_channel(mean)) / per_channel(np.sqrt(variance) + 1e-6)
    bound = 8192 * 2.0 ** -24
    assert np.all(np.abs(out["dk_mean"] - mean) <= bound * np.abs(x).mean(axis=(0, 2)))
    np.testing.assert_allclose(out["dk_variance"], variance, rtol=bound)
    np.testing.assert_allclose(out["dk_x_norm"], x_norm, rtol=0,
                               atol=4 * bound * np.abs(x_norm).max())


def test_same_bits_as_the_extension(out, inputs):
    """The program and bnkernels._kernels run the same C code, compiled with
    different commands: every result agrees bit for bit."""
    x, dy = inputs["x"][..., None], inputs["dy"][..., None]  # (N, C, H, W), W = 1
    w, b = inputs["weight"], inputs["bias"]
    mean, var = _kernels.stats(x)
    invstd = _kernels.invstd(var, EPS)
    sums = _kernels.backward_reduce(dy, x, mean, invstd, w, b)
    extension = {
        "mean": mean, "var": var, "invstd": invstd,
        "y": _kernels.normalize_affine(x, mean, invstd, w, b),
        "sum_dy": sums[0], "sum_dy_xhat": sums[1],
        "dx": _kernels.backward_dx(dy, x, mean, invstd, w, *sums, bias=b),
    }
    x32, dy32, w32, b32 = (a.astype(np.float32) for a in (x, dy, w, b))
    mean, var = _kernels.stats(x32)
    invstd = _kernels.invstd(var, EPS)
    sums = _kernels.backward_reduce(dy32, x32, mean, invstd, w32, b32, relu=True)
    extension["relu_y_f32"] = _kernels.normalize_affine(x32, mean, invstd, w32, b32,
                                                        relu=True)
    extension["relu_dx_f32"] = _kernels.backward_dx(dy32, x32, mean, invstd, w32, *sums,
                                                    bias=b32, relu=True)
    for dtype, suffix in ((np.float64, ""), (np.float32, "_f32")):
        x2, dy2 = (nhwc(inputs[k]).astype(dtype)[:, :, None, :] for k in ("x", "dy"))
        mean, var = _kernels.stats(x2, nhwc=True)
        invstd = _kernels.invstd(var, EPS)
        sums = _kernels.backward_reduce(dy2, x2, mean, invstd, nhwc=True)
        extension.update({"nhwc_mean" + suffix: mean, "nhwc_var" + suffix: var,
                          "nhwc_sum_dy" + suffix: sums[0],
                          "nhwc_sum_dy_xhat" + suffix: sums[1]})
    batch, channels, spatial = SHAPE
    x3, dy3 = (inputs[k].reshape(batch, 64 * channels, spatial // 64, 1) for k in ("x", "dy"))
    mean, var = _kernels.stats(x3)
    sums = _kernels.backward_reduce(dy3, x3, mean, _kernels.invstd(var, EPS))
    extension.update({"short_mean": mean, "short_var": var, "short_sum_dy": sums[0],
                      "short_sum_dy_xhat": sums[1]})
    extension["dk_mean"] = darknet.mean_cpu(x32)
    extension["dk_variance"] = darknet.variance_cpu(x32, extension["dk_mean"])
    extension["dk_x_norm"] = darknet.normalize_cpu(x32, extension["dk_mean"],
                                                   extension["dk_variance"])
    for name, value in extension.items():
        np.testing.assert_array_equal(out[name], value.reshape(out[name].shape),
                                      err_msg=name)


def test_openmp_build_runs_4_threads(outputs):
    """OMP_NUM_THREADS reaches the kernels (bn_get_num_threads); the serial
    build reports one thread, and both give the same bits (above)."""
    if isinstance(outputs["openmp"], str):
        pytest.skip(f"the C compiler cannot build with -fopenmp: {outputs['openmp']}")
    assert outputs["serial"]["openmp_enabled"] == 0
    assert outputs["serial"]["num_threads"] == 1
    assert outputs["openmp"]["openmp_enabled"] == 1
    assert outputs["openmp"]["num_threads"] == 4
