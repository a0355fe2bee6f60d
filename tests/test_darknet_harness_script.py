"""benchmarks/darknet_harness.py: its argument checks, and (where the Darknet
harness binaries are given in BNKERNELS_DARKNET_HARNESS) one tiny run whose
hashes must agree with Darknet's own."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "darknet_harness.py"


def run(*args):
    if not SCRIPT.exists():
        pytest.skip("needs benchmarks/ of a source checkout")
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True,
                          text=True, timeout=300, check=False)


def test_missing_binaries_name_the_readme(tmp_path):
    done = run("--harness", str(tmp_path))
    assert done.returncode == 2
    assert "dk_pj_ofast" in done.stderr and "README.md" in done.stderr


def test_bad_shape():
    done = run("--harness", ".", "--shapes", "2x3x4")
    assert done.returncode == 2 and "NxCxHxW" in done.stderr


def test_tiny_run_matches_darknet_bits():
    harness = os.environ.get("BNKERNELS_DARKNET_HARNESS")
    if not harness or not Path(harness, "dk_pj_ofast").exists():
        pytest.skip("set BNKERNELS_DARKNET_HARNESS to the harness binaries' directory")
    done = run("--harness", harness, "--shapes", "2x3x5x7", "--rounds", "1", "--reps", "1",
               "--warm", "0", "--builds", "ofast")
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith("2x3x5x7")]
    assert len(rows) == 8  # 2 forks x 4 phases
    assert all(row[-1] == "none" for row in rows), done.stdout
