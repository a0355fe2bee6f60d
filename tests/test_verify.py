"""The main job, `python -m bnkernels verify`, and the comparisons it relies on."""
import subprocess
import sys

import numpy as np

from bnkernels import verify


def test_bitwise_equal_sees_one_ulp_and_nan_positions():
    a = np.float32([1.0, 2.0, np.nan])
    assert verify.bitwise_equal(a, a.copy())
    b = a.copy()
    b[0] = np.nextafter(np.float32(1.0), np.float32(2.0))
    assert not verify.bitwise_equal(a, b)
    assert verify.max_errors(a, b)[1] == 1
    c = a.copy()
    c[2] = 3.0
    assert not verify.bitwise_equal(a, c)
    assert not verify.bitwise_equal(np.float32([0.0]), np.float32([-0.0]))


def test_ulp_distance_counts_across_zero():
    tiny = np.float32(np.finfo(np.float32).smallest_subnormal)
    assert verify.max_errors(np.float32([tiny]), np.float32([-tiny]))[1] == 2


def run_verify(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "bnkernels", "verify", *args],
                          capture_output=True, text=True, timeout=300, cwd=cwd)


def test_verify_passes_on_the_shipped_vectors(tmp_path):
    result = run_verify(cwd=tmp_path)  # the installed package, not the source tree
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout
    assert "normalize_delta_cpu (dx)" in result.stdout
    assert "alexeyab" in result.stdout and "pjreddie" in result.stdout


def test_verify_fails_when_a_vector_disagrees(tmp_path):
    flavor, path = verify.vector_files()[0]
    with np.load(path) as z:
        data = {k: z[k] for k in z.files}
    data["mean"] = data["mean"].copy()
    data["mean"][0] = np.nextafter(data["mean"][0], np.float32(np.inf))
    fork_dir = tmp_path / path.parent.name
    fork_dir.mkdir()
    np.savez(fork_dir / path.name, **data)
    result = run_verify("--vectors", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 1
    assert "FAIL" in result.stdout and "mean_cpu" in result.stdout
