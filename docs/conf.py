"""Sphinx configuration of the bnkernels docs.

    pip install -e ".[docs]" && sphinx-build -W --keep-going -b html docs docs/_build

The benchmark pages are generated at every build from benchmarks/results_*.json
(benchmarks/readme_tables.py); the API pages from the docstrings of the
installed package.
"""
import importlib.util
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

project = "bnkernels"
author = "the bnkernels authors"
copyright = "the bnkernels authors"  # noqa: A001 (Sphinx's name)

import bnkernels  # noqa: E402  (the installed package: the docs describe what runs)

release = version = bnkernels.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3

autosummary_generate = True
# PyTorch is optional: without it, bnkernels.torch is documented against a stand-in
if importlib.util.find_spec("torch") is None:
    autodoc_mock_imports = ["torch"]
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_numpy_docstring = True
napoleon_google_docstring = False
napoleon_use_rtype = False
napoleon_use_param = False  # types as text: "BatchNorm2d" names classes of several modules
autodoc_inherit_docstrings = False  # torch's docstrings use torch's own Sphinx labels

html_theme = "alabaster"
html_title = f"bnkernels {release}"


# The docstrings are plain-text NumPy style: "(N, C, *spatial)" and "C*kh*kw"
# are Python, "|x|" an absolute value; only "*word*" is meant as emphasis.
_LITERAL = re.compile(r"(``.*?``)")
_EMPHASIS = re.compile(r"(?<![\w*])(\*\w+\*)(?![\w*])")
_BARS = re.compile(r"(?<![\\`])\|(?=[^|\s])([^|\n`]*?[^|\s\\])\|(?![_`])")


def _escape(text):
    parts = _EMPHASIS.split(text)
    for i in range(0, len(parts), 2):  # the text between "*word*" emphases
        parts[i] = re.sub(r"(?<![*\\])\*(?![*\s])", r"\\*", parts[i])
        parts[i] = _BARS.sub(r"\\|\1\\|", parts[i])
    return "".join(parts)


def _plain_text_docstring(app, what, name, obj, options, lines):
    for i, line in enumerate(lines):
        parts = _LITERAL.split(line)
        lines[i] = "".join(part if j % 2 else _escape(part) for j, part in enumerate(parts))


def setup(app):
    # before napoleon (priority 500), which writes reST of its own
    app.connect("autodoc-process-docstring", _plain_text_docstring, priority=100)


def _benchmark_pages():
    """Write docs/benchmarks/<kind>.md from the committed results files."""
    spec = importlib.util.spec_from_file_location(
        "readme_tables", ROOT / "benchmarks" / "readme_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write_pages(Path(__file__).resolve().parent / "benchmarks" / "generated")


_benchmark_pages()
