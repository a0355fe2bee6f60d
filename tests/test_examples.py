"""The scripts in examples/ run as the README shows them."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name):
    result = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True,
                            text=True, check=False, cwd=EXAMPLES)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_inception_summary_prints_the_three_networks_totals():
    from bnkernels.nn import inception
    out = run_example("inception_summary.py")
    totals = [line for line in out.splitlines() if line.startswith("total")]
    assert len(totals) == 3
    # the last number of each totals row is the network's MACs per image
    for line, (net, size) in zip(totals, [(inception.googlenet(), 224),
                                          (inception.bn_inception(), 224),
                                          (inception.inception_v3(), 299)]):
        assert line.split()[-1] == f"{net.macs((1, 3, size, size)):,}"


def test_train_digits_learns_well_beyond_chance():
    pytest.importorskip("sklearn", reason="the digits ship with scikit-learn")
    out = run_example("train_digits.py")
    accuracies = [float(a) for a in re.findall(r"test accuracy ([0-9.]+)", out)]
    assert len(accuracies) == 5
    assert accuracies[-1] > 0.9   # chance is 0.1


def test_typed_usage_runs_and_prints_each_result_s_shape():
    """examples/typed_usage.py is what CI's mypy step checks as user code; it
    also runs: the shapes it prints are its inputs' (batch norm keeps x's
    shape; the network's convolution keeps H, W with padding 1; its state is the
    convolution's weight and bias and the five entries of the batch norm)."""
    out = run_example("typed_usage.py")
    assert out.strip() == ("y (8, 3, 6, 6), darknet (8, 3, 6, 6), network (8, 4, 6, 6) -> "
                           "dx (8, 3, 6, 6), 7 state entries")
