"""`python -m bnkernels bench`: its options, table, --json, --plot and progress bar.

Tiny shapes and a 1 MiB bandwidth buffer keep every run well under a second;
nothing here asserts a speed, only what is printed and written.
"""
import importlib.util
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bnkernels
from bnkernels.tools import bench
from bnkernels.__main__ import main

TINY = ["--shapes", "2x3x4x4,1x2x3x1", "--repeat", "2", "--reference-repeat", "1",
        "--bandwidth-mb", "1"]
HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
HAS_ORT = all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


def run_bench(capsys, *options):
    code = main(["bench", *TINY, *options])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def table_rows(text):
    """The data rows of the printed Markdown tables, as lists of cells (not
    the per-call overhead table's, of two cells)."""
    rows = [[cell.strip() for cell in line.strip("|").split("|")]
            for line in text.splitlines() if line.startswith("| ")]
    return [row for row in rows if row[0] != "shape" and len(row) > 2]


def test_table_has_every_column_and_a_row_per_op_policy_and_numerics(capsys):
    code, out, _ = run_bench(capsys, "--no-torch", "--no-onnxruntime")
    assert code == 0
    header = next(line for line in out.splitlines() if line.startswith("| shape"))
    assert [c.strip() for c in header.strip("|").split("|")] == list(bench.COLUMNS)
    assert "numerics=standard (headline)" in out and "numerics=darknet" in out
    rows = table_rows(out)
    assert len(rows) == 2 * len(bench.OPS) * len(bench.POLICIES) * 2  # shapes, numerics
    assert {row[3] for row in rows} == set(bench.OPS)
    assert {row[4] for row in rows} == set(bench.POLICIES)
    assert {row[0] for row in rows} == {"2x3x4x4", "1x2x3x1"}
    for row in rows:
        assert row[7] == "-" and row[9] == "-"            # no PyTorch columns
        assert row[12] == "-" and row[13] == "-"          # no onnxruntime columns
        assert row[8].endswith("x") and float(row[8][:-1]) > 0
        assert row[11].endswith("%")
    assert "median of 2 calls" in out and "PyTorch left out (--no-torch)" in out
    assert "bandwidth" in out and "1 thread " in out


def test_json_has_the_documented_keys_and_positive_finite_times(capsys, tmp_path):
    path = tmp_path / "bench.json"
    code, out, _ = run_bench(capsys, "--json", str(path), "--numerics", "standard",
                             "--dtype", "float32,float64")
    assert code == 0 and f"wrote {path}" in out
    doc = json.loads(path.read_text())
    assert set(doc) == {"schema", "machine", "settings", "policies", "traffic",
                        "torch_functions", "bandwidth", "results", "overhead", "notes",
                        "wall_s"}
    assert doc["schema"] == bench.SCHEMA
    assert {"cpu_model", "logical_cores", "python", "numpy", "torch", "bnkernels",
            "bnkernels_openmp"} <= set(doc["machine"])
    assert doc["machine"]["numpy"] == np.__version__
    assert doc["machine"]["bnkernels"] == bnkernels.__version__
    # the CPU's family and caches, as the kernels' speed depends on them
    # (sysfs and /proc/cpuinfo read independently here, on Linux)
    cpu0 = "/sys/devices/system/cpu/cpu0/cache"
    if os.path.isdir(cpu0):
        sizes = {}
        for index in (i for i in os.listdir(cpu0) if i.startswith("index")):
            def read(name):
                with open(os.path.join(cpu0, index, name)) as f:
                    return f.read().strip()
            sizes[(read("level"), read("type"))] = read("size")
        l1d = sizes.get(("1", "Data"))
        assert doc["machine"]["l1d_cache_bytes"] == (int(l1d[:-1]) * 1024 if l1d else None)
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            family = next((int(line.split(":")[1]) for line in f
                           if line.startswith("cpu family")), None)
        assert doc["machine"]["cpu_family"] == family
    assert doc["settings"]["statistic"] == "median"
    assert set(doc["policies"]) == {"reused", "fresh"}
    assert doc["traffic"] == {"training forward": 3, "inference": 2, "backward": 5,
                              "forward+backward": 8}
    [bandwidth] = doc["bandwidth"]
    assert bandwidth["threads"] == 1 and math.isfinite(bandwidth["gbps"]) \
        and bandwidth["gbps"] > 0
    results = doc["results"]
    assert len(results) == 2 * 2 * len(bench.OPS) * len(bench.POLICIES)  # shapes, dtypes
    assert {r["dtype"] for r in results} == {"float32", "float64"}
    sides = ["bnkernels", "numpy"] + (["torch"] if HAS_TORCH else [])
    for r in results:
        for side in sides:
            timing = r[side]
            assert math.isfinite(timing["median_ms"]) and timing["median_ms"] > 0
            assert 0 < timing["min_ms"] <= timing["median_ms"]
        assert r["bnkernels"]["repeat"] == 2 and r["numpy"]["repeat"] == 1
        itemsize = np.dtype(r["dtype"]).itemsize
        assert r["traffic_bytes"] == doc["traffic"][r["op"]] * math.prod(r["shape"]) * itemsize
        assert r["speedup_vs_numpy"] == pytest.approx(
            r["numpy"]["median_ms"] / r["bnkernels"]["median_ms"])
        assert r["gbps"] == pytest.approx(
            r["traffic_bytes"] / r["bnkernels"]["median_ms"] / 1e6)
        assert r["bandwidth_fraction"] == pytest.approx(r["gbps"] / bandwidth["gbps"])
        if not HAS_TORCH:
            assert r["torch"] is None and r["speedup_vs_torch"] is None
        # every side's thread count is recorded: NumPy's is 1 whatever the row's
        assert r["numpy_threads"] == 1
        assert r["torch_threads"] == (r["threads"] if HAS_TORCH else None)
        if r["onnxruntime"] is not None:
            assert r["onnxruntime_threads"] == r["threads"]


def test_no_numpy_leaves_its_column_empty(capsys, tmp_path):
    path = tmp_path / "bench.json"
    code, out, _ = run_bench(capsys, "--no-numpy", "--no-torch", "--json", str(path))
    assert code == 0
    assert all(row[6] == "-" and row[8] == "-" for row in table_rows(out))
    assert "NumPy reference left out (--no-numpy)" in out
    results = json.loads(path.read_text())["results"]
    assert all(r["numpy"] is None and r["speedup_vs_numpy"] is None for r in results)


@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")
def test_torch_columns_and_threads_restored(capsys):
    import torch
    threads_before = torch.get_num_threads()
    code, out, _ = run_bench(capsys, "--threads", "1,2", "--numerics", "standard")
    assert code == 0
    rows = table_rows(out)
    assert {row[2] for row in rows} == {"1", "2"}
    assert all(row[7] != "-" and row[9].endswith("x") for row in rows)
    assert "native_batch_norm_backward" in out
    assert torch.get_num_threads() == threads_before


@pytest.mark.skipif(not hasattr(bnkernels, "set_num_threads"),
                    reason="this bnkernels build has no set_num_threads")
def test_bnkernels_threads_are_set_per_row_and_restored(capsys, tmp_path):
    before = bnkernels.get_num_threads()
    path = tmp_path / "bench.json"
    code, _, _ = run_bench(capsys, "--threads", "2,1", "--no-torch", "--no-numpy",
                           "--numerics", "standard", "--json", str(path))
    assert code == 0
    doc = json.loads(path.read_text())
    assert [b["threads"] for b in doc["bandwidth"]] == [2, 1]
    assert doc["machine"]["bnkernels_openmp"] == bnkernels.openmp_enabled()
    for row in doc["results"]:
        expected = row["threads"] if bnkernels.openmp_enabled() else 1
        assert row["bnkernels_threads"] == expected
    assert bnkernels.get_num_threads() == before


@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")
def test_torch_reused_policy_writes_into_the_preallocated_outputs():
    import torch
    tensors = bench.make_tensors((2, 3, 4, 4), "float64")
    fresh = bench.torch_calls(torch, tensors, "fresh")
    reused = bench.torch_calls(torch, tensors, "reused")
    # inference first, while both sides' running statistics had the same one update
    for op in ("inference", "training forward"):
        y_fresh, y_reused = fresh[op]()[0], reused[op]()[0]
        torch.testing.assert_close(y_reused, y_fresh)
        assert y_reused.data_ptr() == reused[op]()[0].data_ptr()   # the same buffer
    dx_reused = reused["forward+backward"]()[0]
    assert dx_reused.data_ptr() == reused["backward"]()[0].data_ptr()
    torch.testing.assert_close(dx_reused, fresh["forward+backward"]()[0])


@pytest.mark.parametrize("module", [bnkernels, bnkernels.reference],
                         ids=["bnkernels", "reference"])
def test_reused_policy_returns_the_preallocated_arrays(module):
    tensors = bench.make_tensors((2, 3, 4, 4), "float32")
    calls = bench.numpy_api_calls(module, tensors, "standard", "reused")
    assert calls["training forward"]()[0] is tensors.y
    assert calls["inference"]()[0] is tensors.y
    assert calls["backward"]()[0] is tensors.dx
    fresh = bench.numpy_api_calls(module, tensors, "standard", "fresh")
    assert fresh["training forward"]()[0] is not tensors.y


def test_piped_run_prints_no_progress_bar(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bnkernels", "bench", *TINY, "--no-torch",
         "--numerics", "standard"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr and "[#" not in result.stderr
    assert "| shape" in result.stdout


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_redraws_on_a_terminal_and_prints_lines_when_piped():
    terminal = FakeTerminal()
    bar = bench.ProgressBar(4, stream=terminal, width=8)
    bar.show("first")
    bar.advance()
    bar.advance()
    bar.show("third")
    bar.close()
    text = terminal.getvalue()
    assert "\r[........] 0/4" in text and "first" in text
    assert "\r[####....] 2/4" in text and "third" in text
    assert text.endswith("\r")
    piped = io.StringIO()
    bar = bench.ProgressBar(4, stream=piped, every=3600.0)
    bar.show("first")  # the first line always; then at most one an hour
    bar.advance()
    bar.show("second")
    bar.close()
    assert piped.getvalue() == "bench: 0/4 0:00  first\n"
    piped = io.StringIO()
    bar = bench.ProgressBar(4, stream=piped, every=0.0)
    for label in ("a", "b"):
        bar.show(label)
        bar.advance()
    assert piped.getvalue().splitlines() == ["bench: 0/4 0:00  a", "bench: 1/4 0:00  b"]
    assert "\r" not in piped.getvalue()


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib is not installed "
                                               "(pip install matplotlib to run this)")
def test_plot_writes_a_png(capsys, tmp_path):
    path = tmp_path / "speedups.png"
    code, out, _ = run_bench(capsys, "--plot", str(path))
    assert code == 0 and f"wrote {path}" in out
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_pip_install(capsys, tmp_path, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib"
                        else real_find_spec(name, *a))
    code, out, err = run_bench(capsys, "--plot", str(tmp_path / "x.png"))
    assert code == 2
    assert "pip install matplotlib" in err and out == ""
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("option, value", [
    ("--numerics", "standard,fast"),
    ("--shapes", "2x3x4"),
    ("--shapes", "2xAx4x4"),
    ("--shapes", "1x3x1x1"),
    ("--shapes", "2x3x4x4,"),
    ("--dtype", "float16"),
    ("--threads", "0"),
    ("--repeat", "0"),
    ("--bandwidth-mb", "-1"),
])
def test_bad_option_is_an_argparse_error_naming_it(capsys, option, value):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", f"{option}={value}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}:" in err


def test_shapes_parse_to_tuples():
    assert bench.parse_shapes("32x64x56x56, 8X32x14x14") == [(32, 64, 56, 56),
                                                              (8, 32, 14, 14)]
    assert bench.parse_numerics("darknet,standard,darknet") == ["darknet", "standard"]
    assert bench.parse_threads("2,1") == [2, 1]


def test_nhwc_layout_runs_standard_numerics_on_every_side(capsys, tmp_path):
    path = tmp_path / "nhwc.json"
    code, out, _ = run_bench(capsys, "--layout", "nhwc", "--json", str(path),
                             *([] if HAS_TORCH else ["--no-torch"]))
    assert code == 0
    assert "layout: NHWC" in out and "standard numerics only" in out
    report = json.loads(path.read_text())
    assert report["settings"]["layout"] == "NHWC"
    rows = report["results"]
    assert rows and {row["layout"] for row in rows} == {"NHWC"}
    assert {row["numerics"] for row in rows} == {"standard"}
    assert all(row["numpy"]["median_ms"] > 0 for row in rows)
    if HAS_TORCH:
        assert all(row["torch"]["median_ms"] > 0 for row in rows)


def test_nhwc_tensors_are_channels_last_on_the_torch_side():
    torch = pytest.importorskip("torch", reason="PyTorch is optional")
    tensors = bench.make_tensors((2, 3, 4, 5), "float32", layout="NHWC")
    assert tensors.x.shape == (2, 4, 5, 3)
    calls = bench.torch_calls(torch, tensors, "reused")
    y = calls["training forward"]()[0]
    assert y.shape == (2, 3, 4, 5) and y.is_contiguous(memory_format=torch.channels_last)
    expected, _ = bnkernels.batch_norm_forward(tensors.x, tensors.weight, tensors.bias,
                                               None, None, layout="NHWC")
    np.testing.assert_allclose(y.permute(0, 2, 3, 1).numpy(), expected, atol=1e-5)


def readme_tables(path, capsys):
    """benchmarks/readme_tables.py on a bench JSON: what it prints."""
    spec = importlib.util.spec_from_file_location(
        "readme_tables", Path(__file__).parent.parent / "benchmarks" / "readme_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(str(path))
    return capsys.readouterr().out


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_readme_tables_show_each_reused_standard_row_of_the_json(capsys, tmp_path, layout):
    path = tmp_path / "bench.json"
    code, _, _ = run_bench(capsys, "--layout", layout, "--no-torch", "--json", str(path),
                           *(["--no-numpy"] if layout == "NHWC" else []))
    assert code == 0
    report = json.loads(path.read_text())
    text = readme_tables(path, capsys)
    heading = "#### NHWC, float32, 1 thread" if layout == "NHWC" else "#### float32, 1 thread"
    assert heading in text
    rows = [row for row in table_rows(text) if len(row) in (9, 11)]  # 11: with ORT columns
    expected = [r for r in report["results"]
                if r["numerics"] == "standard" and r["policy"] == "reused"]
    assert [(row[0], row[1]) for row in rows] == [
        ("x".join(map(str, r["shape"])), r["op"]) for r in expected]
    for row, r in zip(rows, expected):
        assert row[3] == "-"  # no PyTorch in this run
        assert (row[4] == "-") == (r["numpy"] is None)
    assert ("Darknet-exact" in text) == (layout == "NCHW")


@pytest.mark.own_c_build
def test_simd_levels_builds_every_level_this_cpu_has_with_the_same_bits(c_compiler, tmp_path):
    """benchmarks/simd_levels.py: one build per SIMD level (without dispatch)
    and one with dispatch; every kernel timed in each, and the outputs' bytes
    hashed equal across builds (the oracle: the builds differ only in the
    SIMD form of the same fixed lanes)."""
    script = Path(__file__).parent.parent / "benchmarks" / "simd_levels.py"
    if not script.is_file():
        pytest.skip("needs benchmarks/ of a source checkout")
    report = tmp_path / "levels.json"
    done = subprocess.run([sys.executable, str(script), "--shape", "2x40x4x4", "--reps", "1",
                           "--cc", " ".join(c_compiler), "--json", str(report)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    levels = json.loads(report.read_text())
    assert levels["same_bits"] is True
    assert levels["levels"][0] == "baseline" and levels["levels"][-1] == "dispatch"
    kernels = {f"{k}{suffix} {dtype}" for k in ("stats", "normalize_affine", "backward_reduce",
                                                "backward_dx")
               for suffix in ("", "_nhwc") for dtype in ("f32", "f64")}
    for level in levels["levels"]:
        assert set(levels["ms"][level]) == kernels


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_streaming_script_times_every_pass_both_ways_with_the_same_bits(tmp_path, layout):
    """benchmarks/streaming.py on a tiny shape (forced to stream with a
    threshold of 0 bytes): a row per pass, dtype, thread count and output
    offset, each with both times; the script itself fails if the streamed
    bytes differ."""
    script = Path(__file__).parent.parent / "benchmarks" / "streaming.py"
    if not script.is_file():
        pytest.skip("needs benchmarks/ of a source checkout")
    if not bnkernels.streaming_available():
        pytest.skip("this CPU has no AVX-512F: the script has nothing to compare")
    report = tmp_path / "streaming.json"
    done = subprocess.run([sys.executable, str(script), "--shapes", "2x3x9x9", "--repeat", "2",
                           "--threshold", "0", "--layout", layout, "--offsets", "0,3",
                           "--json", str(report)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(report.read_text())
    assert results["threshold_bytes"] == 0
    rows = {(r["op"], r["dtype"], r["threads"], r["offset"], r["layout"])
            for r in results["results"]}
    assert rows == {(op, dtype, threads, offset, layout)
                    for op in ("inference", "training forward", "backward")
                    for dtype in ("float32", "float64") for threads in (1, 2)
                    for offset in (0, 3)}
    for row in results["results"]:
        assert row["cached_ms"] > 0 and row["streamed_ms"] > 0
        assert row["ratio"] == pytest.approx(row["cached_ms"] / row["streamed_ms"])


def test_sides_take_short_turns_each_opened_by_an_untimed_call():
    calls = []
    timings = bench.time_calls_interleaved(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeat=4,
        turn_calls=3)
    # a turn: one untimed call, then up to 3 timed; the last turn takes what is left
    assert calls == ["a"] * 4 + ["b"] * 4 + ["a"] * 2 + ["b"] * 2
    assert [len(timings[side].times) for side in "ab"] == [4, 4]
    assert all(t >= 0 for side in "ab" for t in timings[side].times)


def test_one_side_alone_is_timed_after_one_warm_up_call():
    calls = []
    timing = bench.time_call(lambda: calls.append("a"), repeat=5)
    assert calls == ["a"] * 6 and len(timing.times) == 5


def test_small_is_the_small_shape_set_and_excludes_shapes(capsys):
    parser = bench.add_arguments(__import__("argparse").ArgumentParser())
    assert parser.parse_args(["--small"]).shapes == [list(s) for s in bench.SMALL_SHAPES]
    assert {(1, 64, 56, 56), (1, 256, 7, 7), (8, 32, 14, 14)} <= set(bench.SMALL_SHAPES)
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--small", "--shapes", "2x3x4x4"])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_bandwidth_buffers_default_to_four_times_the_whole_l3(monkeypatch):
    monkeypatch.setattr(bench, "memory_bytes", lambda: 64 * 2**30)
    monkeypatch.setattr(bench, "l3_total_bytes", lambda: 260 * 10**6)
    size, basis = bench.bandwidth_buffer_mb(None)
    assert size * 2**20 >= 4 * 260 * 10**6 and size == math.ceil(4 * 260 * 10**6 / 2**20)
    assert f"{size} MiB" in basis and "L3" in basis
    monkeypatch.setattr(bench, "l3_total_bytes", lambda: 8 * 2**20)    # small L3: the floor
    assert bench.bandwidth_buffer_mb(None)[0] == bench.BANDWIDTH_FALLBACK_MB
    monkeypatch.setattr(bench, "l3_total_bytes", lambda: None)
    size, basis = bench.bandwidth_buffer_mb(None)
    assert size == bench.BANDWIDTH_FALLBACK_MB and "unknown" in basis
    monkeypatch.setattr(bench, "l3_total_bytes", lambda: 2**30)        # capped by memory
    monkeypatch.setattr(bench, "memory_bytes", lambda: 8 * 2**30)
    size, basis = bench.bandwidth_buffer_mb(None)
    assert size == 1024 and "eighth of the memory" in basis
    assert bench.bandwidth_buffer_mb(3) == (3, "3 MiB per buffer (--bandwidth-mb)")


@pytest.mark.skipif(not os.path.isdir("/sys/devices/system/cpu/cpu0/cache"),
                    reason="no sysfs cache description")
def test_l3_total_matches_lscpu():
    lscpu = subprocess.run(["lscpu", "--caches=NAME,ALL-SIZE", "--bytes"],
                           capture_output=True, text=True)
    if lscpu.returncode != 0:
        pytest.skip("no lscpu with --caches here")
    sizes = dict(line.split() for line in lscpu.stdout.splitlines()[1:] if line.strip())
    assert bench.l3_total_bytes() == (int(sizes["L3"]) if "L3" in sizes else None)


def test_machine_kind_and_threads_are_printed_and_recorded(capsys, tmp_path):
    path = tmp_path / "bench.json"
    code, out, _ = run_bench(capsys, "--no-torch", "--no-onnxruntime", "--numerics",
                             "standard", "--threads", "2,1", "--json", str(path))
    assert code == 0
    doc = json.loads(path.read_text())
    machine = doc["machine"]
    first = out.splitlines()[0]
    assert machine["cpu_model"] in first and "threads 2,1" in first
    assert f"{machine['logical_cores']} logical" in first
    assert {"l3_total_bytes", "physical_cores", "usable_cores", "onnxruntime"} <= set(machine)
    assert doc["settings"]["threads"] == [2, 1]
    assert doc["settings"]["bandwidth_mb"] == 1 and "1 MiB" in doc["settings"]["bandwidth_basis"]


def test_overhead_table_has_every_entry_point_and_no_overhead_skips_it(capsys, tmp_path):
    path = tmp_path / "bench.json"
    code, out, _ = run_bench(capsys, "--no-torch", "--no-onnxruntime", "--numerics",
                             "standard", "--json", str(path))
    assert code == 0 and "Per-call overhead: 1x8x4x4 float32, 1 thread" in out
    entries = json.loads(path.read_text())["overhead"]
    names = [e["entry"] for e in entries]
    for name in ("batch_norm_forward training", "batch_norm_forward inference",
                 "batch_norm_backward", "batch_norm_forward NHWC training",
                 "batch_norm_forward darknet training", "batch_norm_backward darknet",
                 "BatchNorm2d training forward", "BatchNorm2d eval forward",
                 "BatchNorm2d forward+backward"):
        assert name in names
    assert all(math.isfinite(e["us_per_call"]) and e["us_per_call"] > 0 for e in entries)
    assert all(f"| {name} " in out for name in names)
    code, out, _ = run_bench(capsys, "--no-torch", "--no-onnxruntime", "--numerics",
                             "standard", "--no-overhead", "--json", str(path))
    assert code == 0 and "Per-call overhead" not in out
    assert json.loads(path.read_text())["overhead"] == []


@pytest.mark.skipif(not HAS_ORT, reason="onnxruntime and onnx are optional")
def test_onnxruntime_columns_for_the_forward_ops_only(capsys, tmp_path):
    path = tmp_path / "bench.json"
    code, out, _ = run_bench(capsys, "--no-torch", "--numerics", "standard",
                             "--threads", "1,2", "--json", str(path))
    assert code == 0 and "onnxruntime 1." in out
    doc = json.loads(path.read_text())
    assert doc["settings"]["onnxruntime"] is True and doc["machine"]["onnxruntime"]
    for r in doc["results"]:
        if r["op"] in bench.ORT_OPS:
            assert r["onnxruntime"]["median_ms"] > 0
            assert r["speedup_vs_onnxruntime"] == pytest.approx(
                r["onnxruntime"]["median_ms"] / r["bnkernels"]["median_ms"])
            assert r["onnxruntime_threads"] == r["threads"]
        else:
            assert r["onnxruntime"] is None and r["speedup_vs_onnxruntime"] is None
    assert any(e["entry"].startswith("onnxruntime") for e in doc["overhead"])


def test_onnxruntime_left_out_for_nhwc_and_by_option(capsys):
    code, out, _ = run_bench(capsys, "--no-torch", "--layout", "NHWC", "--no-overhead")
    assert code == 0
    assert ("NCHW only" in out) if HAS_ORT else ("onnxruntime columns skipped" in out)
    assert all(row[12] == "-" for row in table_rows(out))
    code, out, _ = run_bench(capsys, "--no-torch", "--no-onnxruntime", "--no-overhead")
    assert code == 0 and "onnxruntime left out (--no-onnxruntime)" in out


@pytest.mark.skipif(not HAS_ORT, reason="onnxruntime and onnx are optional")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("policy", ["reused", "fresh"])
def test_onnxruntime_calls_compute_batch_norm(dtype, policy):
    """Its outputs against the float64 NumPy reference; reused writes into
    the preallocated y."""
    import onnx
    import onnxruntime
    from bnkernels import reference
    tensors = bench.make_tensors((2, 3, 4, 5), dtype)
    calls = bench.ort_calls(onnxruntime, onnx, tensors, policy, 1)
    assert set(calls) == set(bench.ORT_OPS)
    x64 = tensors.x.astype(np.float64)
    args = (tensors.weight.astype(np.float64), tensors.bias.astype(np.float64))
    tol = 1e-5 if dtype == "float32" else 1e-12
    for op, training in (("inference", False), ("training forward", True)):
        rm, rv = np.zeros(3), np.ones(3)
        # ONNX updates running_var with the biased batch variance (PyTorch: unbiased)
        expected, _ = reference.batch_norm_forward(x64, *args, rm, rv, training=training,
                                                   running_var_ddof=0)
        result = calls[op]()
        y = result if policy == "reused" else result[0]
        if policy == "reused":
            assert y is tensors.y
        np.testing.assert_allclose(y, expected, rtol=tol, atol=tol)
        if training and policy == "fresh":   # the running statistics
            # momentum is a float32 attribute in ONNX: 0.9 to 3e-8 relative
            np.testing.assert_allclose(result[1], rm, rtol=1e-6, atol=tol)
            np.testing.assert_allclose(result[2], rv, rtol=1e-6, atol=tol)


def test_before_after_script_pairs_every_case_of_two_builds(tmp_path):
    """benchmarks/before_after.py with this checkout as both builds: every
    path (with the fused ReLU), dtype and thread count measured on both, the
    workers importing the named folder's bnkernels, and the ratios those of
    the medians' rounds."""
    root = Path(bnkernels.__file__).resolve().parent.parent
    script = root / "benchmarks" / "before_after.py"
    if not script.is_file():
        pytest.skip("needs benchmarks/ of a source checkout")
    report = tmp_path / "before_after.json"
    done = subprocess.run([sys.executable, str(script), str(root), str(root), "--rounds", "2",
                           "--shapes", "2x3x4x4", "--budget-ms", "0.1", "--null",
                           "--activation", "relu",
                           "--json", str(report)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(report.read_text())
    assert result["activation"] == "relu"
    assert {side: info["file"] for side, info in result["builds"].items()} == {
        side: str(Path(bnkernels.__file__).resolve()) for side in ("before", "after",
                                                                    "before'")}
    cases = {(r["path"], r["dtype"], r["threads"]) for r in result["results"]}
    scripts = importlib.util.spec_from_file_location("before_after", script)
    module = importlib.util.module_from_spec(scripts)
    scripts.loader.exec_module(module)
    assert cases == {(path, dtype, threads) for path in module.PATHS
                     for dtype in ("float32", "float64") for threads in (1, 2)}
    for r in result["results"]:
        assert r["before_ms"] > 0 and r["after_ms"] > 0
        for key in ("ratio", "null_ratio"):
            assert 0 < r[key]["min"] <= r[key]["median"] <= r[key]["max"]
    assert "| BatchNorm2d train forward | 2x3x4x4 | float32 | 1 |" in done.stdout
