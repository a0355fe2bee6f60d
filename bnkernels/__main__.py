"""Command line: ``python -m bnkernels verify``, ``... bench``, ``... train`` and
``... darknet-check``.

Bad input ends a command with ``python -m bnkernels <command>: error: <why>``
on stderr, never a traceback: option values are checked by argparse (exit
status 2), and the errors the library raises for bad input it was given
(ValueError, with DarknetFileError and verify's VectorFileError among them;
OSError for files; MemoryError) are caught here (exit status 1). Any other
exception is a bug and keeps its traceback; ``--traceback`` shows it for the
caught ones too.
"""
import argparse
from collections.abc import Sequence
import os
import sys
from typing import Any

# the errors bad input raises; anything else is a bug, reported with its traceback
INPUT_ERRORS = (ValueError, OSError, MemoryError)


def _vector_dir(text: str) -> Any:
    """--vectors: a directory of vector files, checked before the run."""
    from bnkernels.tools import verify as _verify
    try:
        return _verify.check_vector_dir(text)
    except _verify.VectorFileError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def main(argv: Sequence[str] | None = None) -> int:
    from bnkernels import __version__
    parser = argparse.ArgumentParser(
        prog="python -m bnkernels",
        description="bnkernels: batch-normalization kernels in C for NumPy.")
    parser.add_argument("--version", action="version", version=f"bnkernels {__version__}")
    parser.add_argument("--traceback", action="store_true",
                        help="on an error, show Python's traceback instead of one line")
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser(
        "verify", help="check this installation against Darknet's vectors "
                       "(bit for bit) and finite-difference gradients")
    verify.add_argument("--vectors", action="append", default=[], metavar="DIR",
                        type=_vector_dir,
                        help="also check the vectors in DIR (laid out as "
                             "DIR/<fork>/<case>.npz); may be repeated")
    from bnkernels.tools import bench as _bench
    bench = commands.add_parser(
        "bench", help="time bnkernels against the NumPy reference and PyTorch",
        description="Time batch norm (training forward, inference, backward, "
                    "forward+backward): bnkernels vs the NumPy reference vs PyTorch, "
                    "with GB/s against the memory bandwidth measured in the same run. "
                    "See the module docstring of bnkernels.tools.bench for what is measured.")
    _bench.add_arguments(bench)
    from bnkernels.nn import train as _train
    train = commands.add_parser(
        "train", help="train a small BN-Inception network on the 8x8 digits, with and "
                      "without batch norm (needs scikit-learn)",
        description=_train.__doc__.split("\n\n")[0].replace("\n", " "))
    _train.add_arguments(train)
    from bnkernels.io import darknet as _darknet_files
    darknet_check = commands.add_parser(
        "darknet-check", help="summarize the batch norms of a Darknet .cfg + .weights",
        description="Read a Darknet network (.cfg) and its parameters (.weights) and print, "
                    "for every batch norm, its parameters' ranges, its zero, negative and "
                    "non-finite variances, and what converting it to the standard "
                    "convention changes (bnkernels.darknet.to_standard).")
    _darknet_files.add_arguments(darknet_check)
    args = parser.parse_args(argv)

    try:
        if args.command == "verify":
            from bnkernels.tools import verify as _verify
            return 0 if _verify.run(args.vectors) else 1
        if args.command == "bench":
            return _bench.run(args)
        if args.command == "train":
            return _train.run(args)
        if args.command == "darknet-check":
            numerics = args.numerics or "darknet"
            if args.flavor is not None:
                print(f"{parser.prog} darknet-check: --flavor is deprecated; use "
                      f"--numerics", file=sys.stderr)
                numerics = {"pjreddie": "darknet", "alexeyab": "darknet-alexeyab"}[args.flavor]
            return _darknet_files.check(args.cfg, args.weights, numerics=numerics,
                                        eps=args.eps)
    except INPUT_ERRORS as error:
        if args.traceback or isinstance(error, BrokenPipeError):   # see run_from_shell
            raise
        sys.stdout.flush()
        what = "out of memory: " if isinstance(error, MemoryError) else ""
        print(f"{parser.prog} {args.command}: error: {what}{error}", file=sys.stderr)
        return 1
    return 2


def run_from_shell() -> int:
    """main(), quiet when a reader such as ``head`` closes the pipe early."""
    try:
        status = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # Python's own recipe: point stdout at devnull so that the interpreter's
        # final flush does not raise again, and exit as a closed pipe does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print("python -m bnkernels: interrupted", file=sys.stderr)
        return 130
    return status


if __name__ == "__main__":
    sys.exit(run_from_shell())
