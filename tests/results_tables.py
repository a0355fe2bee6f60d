"""Helpers for the tests of the README and the docs' benchmark tables:
benchmarks/readme_tables.py as a module, and a reader of Markdown tables."""
import importlib.util
from pathlib import Path

import pytest

GENERATOR = Path(__file__).resolve().parent.parent / "benchmarks" / "readme_tables.py"


def load_readme_tables():
    """benchmarks/readme_tables.py as a module; a skip outside a source
    checkout (an installed wheel's tests have no benchmarks/)."""
    if not GENERATOR.is_file():
        pytest.skip("needs benchmarks/ of a source checkout")
    spec = importlib.util.spec_from_file_location("readme_tables", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def markdown_rows(text):
    """The rows of every Markdown table in text (not the separator lines),
    each a list of its stripped cells, header rows included."""
    return [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in text.splitlines()
            if line.startswith("|") and not set(line) <= set("|-: ")]
