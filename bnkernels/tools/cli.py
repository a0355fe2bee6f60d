"""What the commands of ``python -m bnkernels`` share: argparse value types
that name what they expected, the check of an output path before a run, and
the progress bar."""
import argparse
from collections.abc import Callable
import math
import os
import shutil
import sys
import time
from typing import TextIO

__all__ = ["ProgressBar", "fraction", "nonnegative_float", "nonnegative_int",
           "output_path_error", "positive_float", "positive_int"]


def _integer(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None


def positive_int(text: str) -> int:
    """An option value that is an integer >= 1 (ASCII digits only)."""
    number = _integer(text)
    if number is None or number < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return number


def nonnegative_int(text: str) -> int:
    """An option value that is an integer >= 0 (ASCII digits only)."""
    number = _integer(text)
    if number is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a non-negative integer")
    return number


def _finite(text: str, what: str, accept: Callable[[float], bool]) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not accept(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return value


def nonnegative_float(text: str) -> float:
    """An option value that is a finite number >= 0."""
    return _finite(text, "a finite number >= 0", lambda v: v >= 0)


def positive_float(text: str) -> float:
    """An option value that is a finite number > 0."""
    return _finite(text, "a finite number > 0", lambda v: v > 0)


def fraction(text: str) -> float:
    """An option value that is a number from 0 to 1."""
    return _finite(text, "a number from 0 to 1", lambda v: 0 <= v <= 1)


def output_path_error(option: str, path: str | None) -> str | None:
    """Why path cannot be written as option's output file (None: it can), so
    that a command finds out before it runs rather than after."""
    if path is None:
        return None
    if os.path.isdir(path):
        return f"{option}: {path!r} is a directory, expected a file name"
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"{option}: no folder {folder!r}"
    if not os.access(folder, os.W_OK):
        return f"{option}: cannot write in {folder!r}"
    return None


class ProgressBar:
    """``[#######.......]  12/136  0:07  <what runs now>`` redrawn in place
    when ``stream`` is a terminal. Otherwise (piped, redirected, a CI log) a
    plain ``bench: 12/136 0:07 <what runs now>`` line at most every
    ``every`` seconds, so that a long run is never silent.
    """

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 24,
                 every: float = 10.0) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.total, self.width, self.done = max(total, 1), width, 0
        self.start = time.perf_counter()
        self.every = every
        self.last_line: float | None = None

    def show(self, label: str) -> None:
        if not self.enabled:
            now = time.perf_counter()
            if self.last_line is None or now - self.last_line >= self.every:
                self.last_line = now
                elapsed = int(now - self.start)
                self.stream.write(f"bench: {self.done}/{self.total} "
                                  f"{elapsed // 60}:{elapsed % 60:02d}  {label}\n")
                self.stream.flush()
            return
        filled = self.width * min(self.done, self.total) // self.total
        elapsed = int(time.perf_counter() - self.start)
        line = (f"[{'#' * filled}{'.' * (self.width - filled)}] "
                f"{self.done:>{len(str(self.total))}}/{self.total} "
                f"{elapsed // 60}:{elapsed % 60:02d}  {label}")
        columns = shutil.get_terminal_size((80, 24)).columns - 1
        self.stream.write("\r" + line[:columns].ljust(columns))
        self.stream.flush()

    def advance(self, steps: int = 1) -> None:
        self.done += steps

    def close(self) -> None:
        if self.enabled:
            columns = shutil.get_terminal_size((80, 24)).columns - 1
            self.stream.write("\r" + " " * columns + "\r")
            self.stream.flush()
