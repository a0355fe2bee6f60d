"""Another Cython extension calls the C kernels: tests/cython/use_kernels.pyx
cimports them from bnkernels._kernels and is built the way the README says
(tests/cython/setup.py: cythonize with include_path=[bnkernels.get_include()]),
once, into a temporary directory.

Oracles: float64 NumPy formulas, and bnkernels' own Python API, which runs the
same C kernels (bit-for-bit agreement).
"""
import importlib.machinery
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bnkernels
from bnkernels import _kernels, darknet

HERE = Path(__file__).parent
SHAPE = (3, 5, 7 * 11)  # (batch, channels, spatial)


@pytest.fixture(scope="module")
def use_kernels(c_compiler, tmp_path_factory):
    """The extension of tests/cython, built and imported."""
    build = tmp_path_factory.mktemp("cimport")
    for name in ("use_kernels.pyx", "setup.py"):
        shutil.copy(HERE / "cython" / name, build)
    env = {"CC": " ".join(c_compiler), **os.environ}
    run = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=build,
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    [path] = [p for suffix in importlib.machinery.EXTENSION_SUFFIXES
              for p in build.glob("use_kernels" + suffix)]
    spec = importlib.util.spec_from_file_location("use_kernels", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def x():
    rng = np.random.default_rng(11)
    return rng.standard_normal(SHAPE) * rng.uniform(0.5, 3, (1, SHAPE[1], 1)) + 2


def test_get_include_holds_the_header_and_the_pxd():
    include = Path(bnkernels.get_include())
    copies = {include / "bnkernels.h": HERE.parent / "csrc" / "bnkernels.h",
              include / "bnkernels" / "_kernels.pxd": HERE.parent / "bnkernels" / "_kernels.pxd"}
    for copy, source in copies.items():
        assert copy.is_file()
        if source.is_file():  # a source checkout or an unpacked sdist: the copy is current
            assert copy.read_text() == source.read_text()


def test_every_kernel_of_the_header_is_exported_to_cython(c_compiler):
    """Each function that bnkernels.h declares (its macros expanded by the C
    preprocessor) is a cdef function that bnkernels._kernels exports."""
    header = Path(bnkernels.get_include()) / "bnkernels.h"
    expanded = subprocess.run([*c_compiler, "-E", "-P", str(header)], capture_output=True,
                              text=True, check=True).stdout
    declared = set(re.findall(r"\b(bn_\w+)\s*\(", expanded))
    assert len(declared) > 40
    assert declared == set(_kernels.__pyx_capi__)


def test_stats_f32_matches_numpy_float64(use_kernels, x):
    """bn_stats accumulates in float64: within 1e-12 of the float64 moments
    of the same float32 values."""
    x32 = x.astype(np.float32)
    mean, var = use_kernels.stats_f32(x32)
    exact = x32.astype(np.float64)
    np.testing.assert_allclose(mean, exact.mean(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(var, exact.var(axis=(0, 2)), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_fused_kernel_calls_the_twin_of_its_dtype(use_kernels, x, dtype):
    """bn_stats over the fused type `real` gives, for each dtype, the bits of
    bnkernels' own stats of that dtype (which calls bn_stats_f32 or
    bn_stats_f64), and the float64 moments of the same values within 1e-12."""
    xd = x.astype(dtype)
    mean, var = use_kernels.stats(xd)
    own_mean, own_var = _kernels.stats(xd)
    np.testing.assert_array_equal(mean, own_mean)
    np.testing.assert_array_equal(var, own_var)
    exact = xd.astype(np.float64)
    np.testing.assert_allclose(mean, exact.mean(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(var, exact.var(axis=(0, 2)), rtol=1e-12)


def test_the_generated_bindings_are_current():
    """bnkernels_h.pxd, _kernels.pxd, _capi.pxi and _dispatch.pxi are what
    tools/gen_bindings.py writes from csrc/bnkernels.h today."""
    script = HERE.parent / "tools" / "gen_bindings.py"
    if not script.is_file():
        pytest.skip("no tools/gen_bindings.py beside these tests")
    run = subprocess.run([sys.executable, str(script), "--check"], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr


def test_normalize_affine_f64_matches_numpy_float64(use_kernels, x):
    """One rounding per value of y: within 1e-14 of y's largest value."""
    rng = np.random.default_rng(12)
    weight, bias = rng.uniform(0.5, 2, SHAPE[1]), rng.uniform(-1, 1, SHAPE[1])
    mean, var = x.mean(axis=(0, 2)), x.var(axis=(0, 2))
    y = use_kernels.normalize_affine_f64(x, mean, var, 1e-5, weight, bias)
    c = (slice(None), None)
    expected = (x - mean[c]) / np.sqrt(var[c] + 1e-5) * weight[c] + bias[c]
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-14 * np.abs(expected).max())


def test_darknet_kernels_give_the_bits_of_bnkernels_darknet(use_kernels, x):
    """Darknet's mean_cpu, variance_cpu and normalize_cpu from Cython equal
    bnkernels.darknet's bit for bit, and the float64 formulas (n - 1
    variance, eps outside the root) within float32 accuracy, 1e-5."""
    x32 = x.astype(np.float32)
    mean, variance, x_norm = use_kernels.darknet_normalize_f32(x32, 1e-6)
    x4 = x32[..., None]
    np.testing.assert_array_equal(mean, darknet.mean_cpu(x4))
    np.testing.assert_array_equal(variance, darknet.variance_cpu(x4, mean))
    np.testing.assert_array_equal(x_norm[..., None], darknet.normalize_cpu(x4, mean, variance))
    exact = x32.astype(np.float64)
    c = (slice(None), None)
    exact_mean, exact_var = exact.mean(axis=(0, 2)), exact.var(axis=(0, 2), ddof=1)
    np.testing.assert_allclose(mean, exact_mean, rtol=1e-5)
    np.testing.assert_allclose(variance, exact_var, rtol=1e-5)
    np.testing.assert_allclose(x_norm, (exact - exact_mean[c]) / (np.sqrt(exact_var[c]) + 1e-6),
                               rtol=0, atol=1e-5)


def test_the_extension_calls_bnkernels_own_copy_of_the_kernels(use_kernels):
    """The thread count set through the cimported bn_set_num_threads is the one
    bnkernels reads: there is one library, not a second copy."""
    try:
        use_kernels.set_num_threads(3)
        assert bnkernels.get_num_threads() == (3 if bnkernels.openmp_enabled() else 1)
        bnkernels.set_num_threads(2)
        assert use_kernels.get_num_threads() == (2 if bnkernels.openmp_enabled() else 1)
    finally:
        bnkernels.set_num_threads(None)
