"""The command-line tools of ``python -m bnkernels``: ``bench`` (timing),
``verify`` (Darknet's vectors and finite differences) and ``cli`` (the
argument parsers and the progress bar they share). ``import bnkernels`` does
not load this package; each tool loads on first use."""
import importlib
from typing import Any

__all__ = ["bench", "cli", "verify"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return importlib.import_module(f"bnkernels.tools.{name}")
    raise AttributeError(f"module 'bnkernels.tools' has no attribute {name!r}")
