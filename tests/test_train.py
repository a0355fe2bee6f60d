"""``python -m bnkernels train``: a small BN-Inception network on scikit-learn's
digits, with and without batch norm. The oracle for "it trains" is chance: ten
balanced classes give a loss of ln(10) and an accuracy near 0.1 to a network
that has learnt nothing."""
import builtins
import json
import math

import numpy as np
import pytest

from bnkernels.nn import inception, train
from bnkernels.__main__ import main

pytest.importorskip("sklearn", reason="the training data set ships with scikit-learn "
                                      "(pip install scikit-learn)")


def test_digits_split_is_fixed_scaled_and_complete():
    x_train, y_train, x_test, y_test = train.load_digits(rng=0)
    assert x_train.shape == (1437, 1, 8, 8) and x_test.shape == (360, 1, 8, 8)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0
    assert set(np.unique(y_test)) == set(range(10))
    again = train.load_digits(rng=0)
    assert np.array_equal(again[1], y_train) and np.array_equal(again[2], x_test)
    from sklearn.datasets import load_digits
    everything = np.sort(np.concatenate([y_train, y_test]))
    assert np.array_equal(everything, np.sort(load_digits().target))


def test_train_with_and_without_bn_writes_curves(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib")
    path, plot = tmp_path / "curves.json", tmp_path / "curves.png"
    status = main(["train", "--epochs", "2", "--width", "4", "--lr", "0.1", "--target", "0.5",
                   "--json", str(path), "--plot", str(plot)])
    assert status == 0
    printed = capsys.readouterr().out
    assert printed.count("epoch") >= 4 and "first step with test accuracy >= 0.5" in printed
    result = json.loads(path.read_text())
    assert set(result["runs"]) == {"bn", "no-bn"}
    assert result["config"]["lr"] == 0.1 and result["config"]["train_images"] == 1437
    for name, run in result["runs"].items():
        assert run["batch_norm"] == (name == "bn")
        assert [row["epoch"] for row in run["epochs"]] == [1, 2]
        assert [row["step"] for row in run["epochs"]] == [22, 44]
        assert [e["step"] for e in run["evals"]] == list(range(5, 45, 5))
        reached = [e["step"] for e in run["evals"] if e["test_accuracy"] >= 0.5]
        assert run["steps_to_target"] == (reached[0] if reached else None)
        assert run["final_test_accuracy"] == run["epochs"][-1]["test_accuracy"]
    # with BN, two epochs at a moderate rate learn well beyond chance
    bn = result["runs"]["bn"]["epochs"][-1]
    assert bn["train_loss"] < 0.5 * math.log(10) and bn["train_accuracy"] > 0.5
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_both_variants_start_from_the_same_convolution_weights():
    with_bn = inception.small_inception(width=4, batch_norm=True, rng=3)
    without = inception.small_inception(width=4, batch_norm=False, rng=3)
    conv = {name: value for name, value, _ in with_bn.named_parameters()
            if name.endswith("conv.weight")}
    other = {name: value for name, value, _ in without.named_parameters()
             if name.endswith("conv.weight")}
    assert conv.keys() == other.keys() and len(conv) > 5
    for name in conv:
        assert np.array_equal(conv[name], other[name]), name


def test_unknown_variant_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--variants", "bn,dropout"])
    assert exit_info.value.code == 2
    assert "argument --variants: 'bn,dropout' is not" in capsys.readouterr().err


def test_missing_scikit_learn_is_a_clear_error(monkeypatch, capsys):
    real_import = builtins.__import__

    def no_sklearn(name, *args, **kwargs):
        if name.startswith("sklearn"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    assert main(["train", "--epochs", "1"]) == 2
    assert "pip install scikit-learn" in capsys.readouterr().err


def test_a_diverging_run_is_reported_and_stops_without_warnings(tmp_path, capsys):
    # at lr 50 the network without BN overflows within two epochs; pytest turns
    # any RuntimeWarning from the overflow into a failure
    path = tmp_path / "run.json"
    assert main(["train", "--variants", "no-bn", "--lr", "50", "--epochs", "2", "--width", "4",
                 "--json", str(path)]) == 0
    run = json.loads(path.read_text())["runs"]["no-bn"]
    assert run["diverged_at_step"] is not None and run["steps_to_target"] is None
    assert len(run["epochs"]) < 2
    assert f"diverged at step {run['diverged_at_step']}" in capsys.readouterr().out
