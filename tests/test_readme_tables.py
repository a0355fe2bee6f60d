"""benchmarks/readme_tables.py on real `python -m bnkernels bench` JSON (tiny
shapes): the onnxruntime columns, the per-call overhead and fresh-output
tables of the docs page, each side's threads. The oracle is the file's own
numbers: every printed cell is its JSON value at the printed precision."""
import importlib.util
import json

import pytest

from bnkernels.__main__ import main
from results_tables import GENERATOR, load_readme_tables, markdown_rows

TINY = ["--shapes", "2x3x4x4,1x2x3x1", "--repeat", "2", "--reference-repeat", "1",
        "--bandwidth-mb", "1", "--numerics", "standard", "--threads", "1,2", "--no-torch"]
HAS_ORT = all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))
needs_ort = pytest.mark.skipif(not HAS_ORT, reason="onnxruntime and onnx are optional")


@pytest.fixture(scope="module")
def tables():
    module = load_readme_tables()
    return module


def bench_json(tmp_path_factory, *options):
    path = tmp_path_factory.mktemp("bench") / "results_dev.json"
    assert main(["bench", *TINY, *options, "--json", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def with_ort(tmp_path_factory):
    if not HAS_ORT:
        pytest.skip("onnxruntime and onnx are optional")
    return bench_json(tmp_path_factory)


@pytest.fixture(scope="module")
def without_ort(tmp_path_factory):
    return bench_json(tmp_path_factory, "--no-onnxruntime", "--no-overhead")


def tables_of(text, first_column):
    """Each Markdown table whose header starts with first_column, as a list of
    {column: cell} rows, in order."""
    found, header = [], None
    for row in markdown_rows(text):
        if row[0] == first_column:
            header = row
            found.append([])
        elif header is not None and len(row) == len(header):
            found[-1].append(dict(zip(header, row)))
        else:
            header = None
    return found


def printed(cell, value):
    """cell is value printed with as many decimals as cell shows."""
    cell = cell.rstrip("x")
    decimals = len(cell.partition(".")[2])
    return abs(float(cell) - value) <= 0.5 * 10.0 ** -decimals + 1e-12


def standard_rows(report, policy="reused"):
    return [r for r in report["results"]
            if r["numerics"] == "standard" and r["policy"] == policy]


def run_text(tables, path):
    return "\n".join(tables.run_tables(json.loads(path.read_text())))


@needs_ort
def test_onnxruntime_columns_hold_the_files_own_times_and_ratios(tables, with_ort):
    report = json.loads(with_ort.read_text())
    rows = [row for table in tables_of(run_text(tables, with_ort), "shape") for row in table
            if "onnxruntime ms" in row]
    expected = standard_rows(report)
    assert len(rows) == len(expected)
    timed = 0
    for row, r in zip(rows, expected):
        assert (row["shape"], row["op"]) == ("x".join(map(str, r["shape"])), r["op"])
        assert printed(row["bnkernels ms"], r["bnkernels"]["median_ms"])
        if r["onnxruntime"] is None:   # ONNX has no backward
            assert row["onnxruntime ms"] == row["vs onnxruntime"] == "-"
            continue
        timed += 1
        ort_ms, ours = r["onnxruntime"]["median_ms"], r["bnkernels"]["median_ms"]
        assert printed(row["onnxruntime ms"], ort_ms)
        assert printed(row["vs onnxruntime"], ort_ms / ours)
    assert timed == 2 * 2 * 2   # 2 shapes x 2 thread counts x (training forward, inference)


def test_a_run_without_onnxruntime_shows_dashes(tables, without_ort):
    report = json.loads(without_ort.read_text())
    rows = [row for table in tables_of(run_text(tables, without_ort), "shape") for row in table]
    assert len(rows) == len(standard_rows(report))
    assert all(row["onnxruntime ms"] == row["vs onnxruntime"] == "-" for row in rows)


def test_a_schema_1_file_keeps_its_nine_columns(tables):
    path = GENERATOR.parent / "results_zen5.json"
    if not path.is_file():
        pytest.skip("the results files are not in this tree (an sdist)")
    text = run_text(tables, path)
    assert "onnxruntime" not in text and "Threads:" not in text
    assert {len(row) for row in markdown_rows(text) if row[0] != "shape" and len(row) > 4} == {9}


def test_each_table_says_every_sides_threads(tables, without_ort):
    text = run_text(tables, without_ort)
    assert "Threads: bnkernels 1; NumPy reference 1." in text
    assert "Threads: bnkernels 2; NumPy reference 1." in text


def as_run(path, kind="xeon"):
    return {"kind": kind, "title": "Intel Xeon", "machine": "a test machine",
            "file": path.name, "command": f"python -m bnkernels bench --json {path}",
            "commit": "0000000"}


@needs_ort
def test_page_has_overhead_fresh_onnxruntime_and_threads(tables, with_ort, monkeypatch):
    monkeypatch.setattr(tables, "HERE", with_ort.parent)
    report = json.loads(with_ort.read_text())
    text = tables.page(as_run(with_ort))
    assert "Threads: bnkernels 2; onnxruntime 2; NumPy reference 1." in text
    assert "`run_with_iobinding`" in text and f"onnxruntime {report['machine']['onnxruntime']}" \
        in text
    [overhead] = tables_of(text, "entry point")
    assert [row["entry point"] for row in overhead] == [e["entry"] for e in report["overhead"]]
    for row, e in zip(overhead, report["overhead"]):
        assert printed(row["us/call"], e["us_per_call"])
    [fresh] = tables_of(text, "shape")[-1:]
    expected = [r for r in standard_rows(report, "fresh") if r["onnxruntime"]]
    assert len(fresh) == len(expected) == 8
    for row, r in zip(fresh, expected):
        assert (row["op"], int(row["threads"])) == (r["op"], r["threads"])
        assert printed(row["onnxruntime run() ms"], r["onnxruntime"]["median_ms"])
        assert printed(row["vs onnxruntime run()"],
                       r["onnxruntime"]["median_ms"] / r["bnkernels"]["median_ms"])


def test_page_of_a_run_without_onnxruntime_or_overhead(tables, without_ort, monkeypatch):
    monkeypatch.setattr(tables, "HERE", without_ort.parent)
    text = tables.page(as_run(without_ort))
    assert "Per-call overhead" not in text and "run()" not in text


@needs_ort
def test_readme_summary_of_a_run_with_onnxruntime(tables, with_ort, monkeypatch):
    monkeypatch.setattr(tables, "HERE", with_ort.parent)
    monkeypatch.setattr(tables, "SUMMARY_SHAPE", [2, 3, 4, 4])
    monkeypatch.setattr(tables, "EXACTNESS", {
        key: text for key, text in tables.EXACTNESS.items() if key[0] == "standard"})
    report = json.loads(with_ort.read_text())
    [rows] = tables_of(tables.summary(as_run(with_ort)), "op")
    assert [row["op"] for row in rows] == [op for _, op in tables.EXACTNESS]
    for row in rows:
        [r] = [r for r in standard_rows(report) if r["op"] == row["op"]
               and r["threads"] == 1 and r["shape"] == [2, 3, 4, 4]]
        if r["onnxruntime"] is None:
            assert row["onnxruntime ms"] == row["vs onnxruntime"] == "-"
        else:
            assert printed(row["vs onnxruntime"],
                           r["onnxruntime"]["median_ms"] / r["bnkernels"]["median_ms"])


def test_write_pages_takes_a_new_kind_and_drops_its_stale_page(tables, without_ort, tmp_path,
                                                                monkeypatch):
    monkeypatch.setattr(tables, "HERE", without_ort.parent)
    monkeypatch.setattr(tables, "RUNS", [as_run(without_ort, "xeon"),
                                         as_run(without_ort, "other")])
    (tmp_path / "notes.md").write_text("# not generated\n", encoding="utf-8")
    assert tables.write_pages(tmp_path) == ["xeon.md", "other.md"]
    assert "results_dev.json" in (tmp_path / "xeon.md").read_text(encoding="utf-8")
    monkeypatch.setattr(tables, "RUNS", [as_run(without_ort, "xeon")])
    assert tables.write_pages(tmp_path) == ["xeon.md"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.md", "xeon.md"]
