"""The README and the docs' benchmark pages against what they are made from:
the committed results files (one per machine kind, each with the command
that made it) and the package itself (the README's Python runs)."""
import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from results_tables import GENERATOR, load_readme_tables, markdown_rows

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tables():
    module = load_readme_tables()
    if not all((GENERATOR.parent / run["file"]).is_file() for run in module.RUNS):
        pytest.skip("the results files are not in this tree (an sdist)")
    return module


def bench_options(command):
    """The options of a `python -m bnkernels bench` command line, as a dict."""
    words = shlex.split(command)
    assert words[:4] == ["python", "-m", "bnkernels", "bench"], command
    options, i = {}, 4
    while i < len(words):
        assert words[i].startswith("--"), command
        if i + 1 < len(words) and not words[i + 1].startswith("--"):
            options[words[i]] = words[i + 1]
            i += 2
        else:
            options[words[i]] = True
            i += 1
    return options


def printed(cell, value):
    """cell is value printed with as many decimals as cell shows."""
    decimals = len(cell.partition(".")[2])
    return abs(float(cell) - value) <= 0.5 * 10.0 ** -decimals + 1e-12


def test_one_results_file_per_machine_kind_each_listed_with_its_command(tables):
    on_disk = sorted(p.name for p in GENERATOR.parent.glob("results_*.json"))
    assert on_disk == sorted(run["file"] for run in tables.RUNS)
    assert len({run["kind"] for run in tables.RUNS}) == len(tables.RUNS)
    for run in tables.RUNS:
        report = json.loads((GENERATOR.parent / run["file"]).read_text())
        options = bench_options(run["command"])
        settings = report["settings"]
        assert options["--json"] == f"benchmarks/{run['file']}"
        assert [int(t) for t in options.get("--threads", "1").split(",")] == settings["threads"]
        assert options.get("--dtype", "float32").split(",") == settings["dtypes"]
        assert options.get("--layout", "NCHW") == settings["layout"]
        assert {r["layout"] for r in report["results"]} == {settings["layout"]}



def test_readme_summary_is_the_newest_run_of_its_json(tables):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = tables.readme_summary(readme)
    assert block is not None, "README.md has no benchmark summary"
    assert tables.cli(["--check-readme"]) == 0
    run = tables.RUNS[0]
    assert run["command"] in block and run["machine"] in block
    report = json.loads((GENERATOR.parent / run["file"]).read_text())
    header, *rows = markdown_rows(block)
    assert rows
    for cells in rows:
        row = dict(zip(header, cells))
        op, numerics, ours, theirs = (row[k] for k in ("op", "numerics", "bnkernels ms",
                                                       "PyTorch ms"))
        [r] = [r for r in report["results"]
               if (r["op"], r["numerics"], r["dtype"], r["threads"], r["policy"]) ==
               (op, numerics, "float32", 1, "reused") and r["shape"] == tables.SUMMARY_SHAPE]
        assert printed(ours, r["bnkernels"]["median_ms"])
        if numerics == "standard":
            assert printed(theirs, r["torch"]["median_ms"])
        if "onnxruntime ms" in row and row["onnxruntime ms"] != "-":
            assert printed(row["onnxruntime ms"], r["onnxruntime"]["median_ms"])
        assert row["exactness"]


def test_a_stale_readme_summary_is_caught(tables):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    stale = readme.replace(tables.RUNS[0]["command"], "python -m bnkernels bench")
    assert tables.readme_summary(stale) != tables.summary()


def test_docs_pages_one_per_machine_kind_with_every_reused_standard_row(tables, tmp_path):
    names = tables.write_pages(tmp_path)
    assert names == [f"{run['kind']}.md" for run in tables.RUNS]
    for run, name in zip(tables.RUNS, names):
        text = (tmp_path / name).read_text(encoding="utf-8")
        assert run["command"] in text and run["machine"] in text and run["file"] in text
        report = json.loads((GENERATOR.parent / run["file"]).read_text())
        settings = report["settings"]
        expected = [r for dtype in settings["dtypes"] for threads in settings["threads"]
                    for r in report["results"]
                    if (r["numerics"], r["policy"], r["dtype"], r["threads"]) ==
                    ("standard", "reused", dtype, threads)]
        # the standard tables: 9 columns, 11 with onnxruntime's
        rows = [row for row in markdown_rows(text) if len(row) in (9, 11) and row[0] != "shape"]
        assert len(rows) == len(expected)
        for row, r in zip(rows, expected):
            assert row[0] == "x".join(map(str, r["shape"])) and row[1] == r["op"]
            assert printed(row[2], r["bnkernels"]["median_ms"])


def test_readme_python_runs_and_agrees_with_the_reference():
    """Every ```python block of the README, in order, in one namespace; then
    its functional call checked against the float64 NumPy twin."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert blocks
    if any("import torch" in block for block in blocks):
        pytest.importorskip("torch", reason="the README's PyTorch example needs PyTorch")
    namespace = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    x = namespace["x"].astype(np.float64)
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    var = x.var(axis=(0, 2, 3), keepdims=True)
    np.testing.assert_allclose(namespace["y"], (x - mean) / np.sqrt(var + 1e-5),
                               rtol=1e-5, atol=1e-5)
