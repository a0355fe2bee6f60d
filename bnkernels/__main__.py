"""Command line: ``python -m bnkernels verify``, ``... bench``, ``... train`` and
``... darknet-check``."""
import argparse
import os
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m bnkernels",
        description="bnkernels: batch-normalization kernels in C for NumPy.")
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser(
        "verify", help="check this installation against Darknet's vectors "
                       "(bit for bit) and finite-difference gradients")
    verify.add_argument("--vectors", action="append", default=[], metavar="DIR",
                        help="also check the vectors in DIR (laid out as "
                             "DIR/<fork>/<case>.npz); may be repeated")
    from bnkernels import bench as _bench
    bench = commands.add_parser(
        "bench", help="time bnkernels against the NumPy reference and PyTorch",
        description="Time batch norm (training forward, inference, backward, "
                    "forward+backward): bnkernels vs the NumPy reference vs PyTorch, "
                    "with GB/s against the memory bandwidth measured in the same run. "
                    "See the module docstring of bnkernels.bench for what is measured.")
    _bench.add_arguments(bench)
    from bnkernels import train as _train
    train = commands.add_parser(
        "train", help="train a small BN-Inception network on the 8x8 digits, with and "
                      "without batch norm (needs scikit-learn)",
        description=_train.__doc__.split("\n\n")[0].replace("\n", " "))
    _train.add_arguments(train)
    from bnkernels import darknet_files as _darknet_files
    darknet_check = commands.add_parser(
        "darknet-check", help="summarize the batch norms of a Darknet .cfg + .weights",
        description="Read a Darknet network (.cfg) and its parameters (.weights) and print, "
                    "for every batch norm, its parameters' ranges, its zero, negative and "
                    "non-finite variances, and what converting it to the standard "
                    "convention changes (bnkernels.darknet.to_standard).")
    _darknet_files.add_arguments(darknet_check)
    args = parser.parse_args(argv)

    if args.command == "verify":
        from bnkernels import verify as _verify
        return 0 if _verify.run(args.vectors) else 1
    if args.command == "bench":
        return _bench.run(args)
    if args.command == "train":
        return _train.run(args)
    if args.command == "darknet-check":
        return _darknet_files.check(args.cfg, args.weights, flavor=args.flavor, eps=args.eps)
    return 2


def run_from_shell():
    """main(), quiet when a reader such as ``head`` closes the pipe early."""
    try:
        status = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # Python's own recipe: point stdout at devnull so that the interpreter's
        # final flush does not raise again, and exit as a closed pipe does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return status


if __name__ == "__main__":
    sys.exit(run_from_shell())
