"""``python -m bnkernels ...`` on bad input: one line ``error: ...`` on stderr
naming what is wrong, a non-zero exit status, never a Python traceback.

Each case runs the command in a subprocess, as a user would, from a scratch
folder holding the bad files. Option values are argparse errors (status 2);
bad files are status 1 (darknet-check, verify) or 2 (bench and train's output
paths, checked before they run).
"""
from concurrent.futures import ThreadPoolExecutor
import struct
import subprocess
import sys

import numpy as np
import pytest

import bnkernels
from bnkernels.tools import verify
from bnkernels.__main__ import main

GOOD_CFG = "[net]\nheight=8\nwidth=8\nchannels=3\n[convolutional]\nfilters=4\nsize=3\n" \
    "pad=1\nbatch_normalize=1\n"
GOOD_WEIGHTS = struct.pack("<3iQ", 0, 2, 0, 0) + np.ones(4 * 4 + 4 * 3 * 9, "<f4").tobytes()


def cfg_with(line):
    return GOOD_CFG + line + "\n"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A folder of good and bad inputs, named as the cases below use them."""
    root = tmp_path_factory.mktemp("cli")
    files = {
        "good.cfg": GOOD_CFG,
        "negative_height.cfg": GOOD_CFG.replace("height=8", "height=-8"),
        "zero_filters.cfg": GOOD_CFG.replace("filters=4", "filters=0"),
        "huge_padding.cfg": cfg_with(f"padding={2 ** 40}"),
        "window_too_large.cfg": GOOD_CFG.replace("size=3", "size=20").replace("pad=1", ""),
        "route_out_of_range.cfg": GOOD_CFG + "[route]\nlayers=-5\n",
        "route_groups.cfg": GOOD_CFG + "[route]\nlayers=-1\ngroups=3\n",
        "not_integer.cfg": GOOD_CFG.replace("filters=4", "filters=4.5"),
        "no_net.cfg": "[convolutional]\nfilters=4\n",
        "garbage.cfg": "\x00\x01\x02 not a cfg",
        "empty.cfg": "",
    }
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    weights = {
        "good.weights": GOOD_WEIGHTS,
        "truncated.weights": GOOD_WEIGHTS[:-4],
        "extended.weights": GOOD_WEIGHTS + b"\0" * 4,
        "negative_version.weights": struct.pack("<3i", -1, 2, 0) + GOOD_WEIGHTS[12:],
        "short_header.weights": GOOD_WEIGHTS[:7],
        "empty.weights": b"",
    }
    for name, data in weights.items():
        (root / name).write_bytes(data)
    (root / "folder.cfg").mkdir()
    # vector directories: each <dir>/pjreddie/<case>.npz broken in one way
    flavor, source = verify.vector_files()[0]
    with np.load(source) as z:
        arrays = {key: z[key] for key in z.files}
    vectors = {
        "not_npz": b"not a zip archive",
        "missing_key": {k: v for k, v in arrays.items() if k != "delta"},
        "wrong_shape": {**arrays, "mean": arrays["mean"][:0]},
        "wrong_dtype": {**arrays, "x": arrays["x"].astype(np.float64)},
        "bad_index": {**arrays, "out_batch_index": np.array([99])},
        "pickled": {**arrays, "scales": np.array([object()], dtype=object)},
    }
    for name, content in vectors.items():
        folder = root / "vectors" / name / "pjreddie"
        folder.mkdir(parents=True)
        if isinstance(content, bytes):
            (folder / "case.npz").write_bytes(content)
        else:
            np.savez(folder / "case.npz", **content)
    (root / "vectors" / "empty").mkdir()
    return root


def run_cli(args, cwd):
    return subprocess.run([sys.executable, "-m", "bnkernels", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


CASES = [
    # verify
    (["verify", "--vectors", "missing_dir"], "'missing_dir' does not exist"),
    (["verify", "--vectors", "good.cfg"], "'good.cfg' is not a directory"),
    (["verify", "--vectors", "vectors/empty"], "has no vector files"),
    (["verify", "--vectors", "vectors/not_npz"], "case.npz: not an .npz file"),
    (["verify", "--vectors", "vectors/missing_key"], "case.npz: has no array 'delta'"),
    (["verify", "--vectors", "vectors/wrong_shape"], "case.npz: mean is float32 (0,)"),
    (["verify", "--vectors", "vectors/wrong_dtype"], "case.npz: x is float64"),
    (["verify", "--vectors", "vectors/bad_index"], "out_batch_index must be"),
    (["verify", "--vectors", "vectors/pickled"], "case.npz: not a readable .npz file"),
    # darknet-check: cfgs
    (["darknet-check", "negative_height.cfg", "good.weights"], "height=-8 (line 2)"),
    (["darknet-check", "zero_filters.cfg", "good.weights"], "filters=0 (line 6)"),
    (["darknet-check", "huge_padding.cfg", "good.weights"], f"padding={2 ** 40} (line 10)"),
    (["darknet-check", "window_too_large.cfg", "good.weights"], "its output height would be"),
    (["darknet-check", "route_out_of_range.cfg", "good.weights"], "layers=-5 (line 11)"),
    (["darknet-check", "route_groups.cfg", "good.weights"], "groups=3 (line 12)"),
    (["darknet-check", "not_integer.cfg", "good.weights"], "filters=4.5 (line 6)"),
    (["darknet-check", "no_net.cfg", "good.weights"], "the first section must be [net]"),
    (["darknet-check", "garbage.cfg", "good.weights"], "expected key=value"),
    (["darknet-check", "empty.cfg", "good.weights"], "found no section"),
    (["darknet-check", "folder.cfg", "good.weights"], "Is a directory"),
    (["darknet-check", "missing.cfg", "good.weights"], "No such file"),
    # darknet-check: weights and options
    (["darknet-check", "good.cfg", "truncated.weights"], "truncated in layer 0"),
    (["darknet-check", "good.cfg", "extended.weights"], "4 trailing bytes"),
    (["darknet-check", "good.cfg", "negative_version.weights"], "unknown version -1.2.0"),
    (["darknet-check", "good.cfg", "short_header.weights"], "7 bytes, too short"),
    (["darknet-check", "good.cfg", "empty.weights"], "0 bytes, too short"),
    (["darknet-check", "good.cfg", "missing.weights"], "No such file"),
    (["darknet-check", "good.cfg", "good.weights", "--eps", "nan"], "argument --eps"),
    (["darknet-check", "good.cfg", "good.weights", "--eps", "-1"], "argument --eps"),
    (["darknet-check", "good.cfg", "good.weights", "--flavor", "x"], "argument --flavor"),
    (["darknet-check", "good.cfg"], "the following arguments are required: weights"),
    # bench
    (["bench", "--threads", "0"], "argument --threads: '0' is not a positive integer"),
    (["bench", "--threads", "-1"], "argument --threads"),
    (["bench", "--threads", "1000000000"], "more threads than bench runs with"),
    (["bench", "--threads", "two"], "argument --threads: 'two'"),
    (["bench", "--shapes", "2x-3x4x4"], "argument --shapes"),
    (["bench", "--shapes", "0x3x4x4"], "argument --shapes"),
    (["bench", "--shapes", "2x3x4"], "argument --shapes"),
    (["bench", "--shapes", "100000x100000x1000x1000"], "more than this machine's"),
    (["bench", "--dtype", "float16"], "argument --dtype: 'float16' is not one of"),
    (["bench", "--numerics", "fast"], "argument --numerics"),
    (["bench", "--layout", "CHWN"], "argument --layout"),
    (["bench", "--repeat", "0"], "argument --repeat"),
    (["bench", "--reference-repeat", "-5"], "argument --reference-repeat"),
    (["bench", "--bandwidth-mb", "1000000000"], "more than this machine's"),
    (["bench", "--json", "missing_dir/out.json"], "--json: no folder"),
    (["bench", "--json", "folder.cfg"], "--json: 'folder.cfg' is a directory"),
    (["bench", "--plot", "missing_dir/out.png"], "--plot: no folder"),
    # train
    (["train", "--lr", "nan"], "argument --lr: 'nan' is not a finite number >= 0"),
    (["train", "--lr", "-0.1"], "argument --lr"),
    (["train", "--momentum", "-1"], "argument --momentum"),
    (["train", "--weight-decay", "inf"], "argument --weight-decay"),
    (["train", "--target", "1.5"], "argument --target"),
    (["train", "--seed", "-1"], "argument --seed"),
    (["train", "--width", "1"], "argument --width"),
    (["train", "--width", "100000"], "argument --width"),
    (["train", "--epochs", "0"], "argument --epochs"),
    (["train", "--batch-size", "0"], "argument --batch-size"),
    (["train", "--batch-size", "100000"], "--batch-size 100000 is more than the 1437"),
    (["train", "--eval-every", "-2"], "argument --eval-every"),
    (["train", "--variants", "bn,dropout"], "argument --variants"),
    (["train", "--numerics", "fast"], "argument --numerics"),
    (["train", "--json", "missing_dir/run.json"], "--json: no folder"),
    (["train", "--plot", "missing_dir/run.png"], "--plot: no folder"),
    # the command itself
    ([], "the following arguments are required: command"),
    (["teleport"], "invalid choice: 'teleport'"),
]


@pytest.fixture(scope="module")
def results(scratch):
    """Every case's CompletedProcess, run a few at a time."""
    with ThreadPoolExecutor(4) as pool:
        done = pool.map(lambda args: run_cli(args, scratch), [args for args, _ in CASES])
        return {tuple(args): result for (args, _), result in zip(CASES, done)}


@pytest.mark.parametrize("args, message", CASES, ids=[" ".join(a) or "-" for a, _ in CASES])
def test_bad_input_is_one_error_line_and_a_nonzero_exit(results, args, message):
    if args[:2] == ["train", "--batch-size"] and args[2] != "0":
        pytest.importorskip("sklearn", reason="the batch size is checked against the data")
    if "--plot" in args:
        pytest.importorskip("matplotlib", reason="without matplotlib --plot is refused "
                                                 "for that first")
    result = results[tuple(args)]
    assert result.returncode in (1, 2), result
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("python -m bnkernels"), result.stderr
    assert ": error: " in last and message in last, result.stderr
    assert result.stdout == "" or args[0] in ("verify",), result.stdout


def test_version_prints_the_package_version(tmp_path):
    result = run_cli(["--version"], tmp_path)
    assert result.returncode == 0 and result.stdout == f"bnkernels {bnkernels.__version__}\n"


def test_traceback_option_shows_the_traceback(scratch):
    result = run_cli(["--traceback", "verify", "--vectors", "vectors/missing_key"], scratch)
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert "VectorFileError: " in result.stderr and "has no array 'delta'" in result.stderr


@pytest.mark.parametrize("error, status", [
    (ValueError("bad value"), 1), (FileNotFoundError(2, "No such file", "x"), 1),
    (MemoryError("Unable to allocate 8 TiB"), 1),
])
def test_input_errors_of_a_command_become_one_line(monkeypatch, capsys, error, status):
    from bnkernels.tools import bench

    def fail(args):
        raise error

    monkeypatch.setattr(bench, "run", fail)
    assert main(["bench"]) == status
    err = capsys.readouterr().err
    assert err.startswith("python -m bnkernels bench: error: ") and err.count("\n") == 1
    assert str(error) in err
    assert ("out of memory" in err) == isinstance(error, MemoryError)


@pytest.mark.parametrize("error", [KeyError("x"), TypeError("unsupported operand"),
                                   AttributeError("no attribute"), ZeroDivisionError()])
def test_a_bug_is_not_turned_into_an_error_line(monkeypatch, error):
    """Exceptions bad input does not raise are bugs: they keep their traceback."""
    from bnkernels.tools import bench

    def fail(args):
        raise error

    monkeypatch.setattr(bench, "run", fail)
    with pytest.raises(type(error)):
        main(["bench"])
