"""The main job, `python -m bnkernels verify`, and the comparisons it relies on."""
import subprocess
import sys

import numpy as np
import pytest

import bnkernels
from bnkernels.tools import verify


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
    # the child is the same build as this process
    assert ("OpenMP: on (" if bnkernels.openmp_enabled() else "OpenMP: off (") in result.stdout


def test_openmp_line_says_whether_this_build_has_openmp():
    line = verify.openmp_line()
    if bnkernels.openmp_enabled():
        assert line == f"OpenMP: on ({bnkernels.get_num_threads()} threads)"
    else:
        assert line.startswith("OpenMP: off (") and "one thread" in line


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


def test_extra_vector_dirs_must_exist_and_hold_vectors(tmp_path):
    (tmp_path / "file.npz").write_bytes(b"")
    (tmp_path / "empty").mkdir()
    for path, message in ((tmp_path / "missing", "does not exist"),
                          (tmp_path / "file.npz", "is not a directory"),
                          (tmp_path / "empty", "has no vector files")):
        with pytest.raises(verify.VectorFileError, match=message):
            verify.vector_files(path)


def _one_vector():
    _, path = verify.vector_files()[0]
    with np.load(path) as z:
        return {key: z[key] for key in z.files}


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("delta"), r"has no array 'delta'"),
    (lambda d: d.update(mean=d["mean"][:0]), r"mean is float32 \(0,\), expected float32"),
    (lambda d: d.update(x=d["x"].astype(np.float64)), r"x is float64 .*, expected float32"),
    (lambda d: d.update(x=d["x"][0]), r"x is float32 .*, expected a float32 \(N, C, H, W\)"),
    (lambda d: d.update(out_batch_index=np.array([-1])), r"out_batch_index must be"),
    (lambda d: d.update(dx=d["dx"][:, :, :0]), r"dx is float32"),
    (lambda d: d.update(sha256_dx=d["sha256_dx"][:3]), r"sha256_dx is uint8 \(3,\)"),
    (lambda d: d.update(scales=np.array([object()])), r"not a readable \.npz file"),
])
def test_a_broken_vector_file_is_named_with_what_is_wrong(tmp_path, change, message):
    data = _one_vector()
    change(data)
    path = tmp_path / "case.npz"
    np.savez(path, **data)
    with pytest.raises(verify.VectorFileError, match=message) as error:
        verify.load_vector(path)
    assert str(error.value).startswith(f"{path}: ")


def test_a_file_that_is_not_npz_is_named(tmp_path):
    path = tmp_path / "case.npz"
    path.write_bytes(b"\x93NUMPY not a zip")
    with pytest.raises(verify.VectorFileError, match=r"not an \.npz file"):
        verify.load_vector(path)


def test_the_shipped_vectors_pass_the_checks():
    for _, path in verify.vector_files():
        assert set(verify.load_vector(path)) >= {"x", "delta", "dx", "out_batch_index"}


def test_verify_checks_both_builds_and_names_the_build_of_each_row(tmp_path):
    """An -Ofast key one ulp off fails the ofast row only, and the summary
    names that build."""
    flavor, path = verify.vector_files()[0]
    with np.load(path) as z:
        data = {k: z[k] for k in z.files}
    data["ofast_scale_updates"] = data["ofast_scale_updates"].copy()
    data["ofast_scale_updates"][0] = np.nextafter(data["ofast_scale_updates"][0],
                                                  np.float32(np.inf))
    fork_dir = tmp_path / path.parent.name
    fork_dir.mkdir()
    np.savez(fork_dir / path.name, **data)
    rows = [r for r in verify.darknet_rows(tmp_path) if r.flavor == flavor]
    assert {r.build for r in rows} == {"strict", "ofast"}
    failed = {(r.check, r.build) for r in rows if not r.ok}
    assert failed == {("backward_scale_cpu", "ofast"), ("BatchNorm2d grad_weight", "ofast")}
    result = run_verify("--vectors", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 1
    assert "backward_scale_cpu [ofast]" in result.stdout
    assert " ofast " in result.stdout and " strict " in result.stdout
