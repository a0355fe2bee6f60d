"""Command line: ``python -m bnkernels verify``."""
import argparse
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
    args = parser.parse_args(argv)

    if args.command == "verify":
        from bnkernels import verify as _verify
        return 0 if _verify.run(args.vectors) else 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
