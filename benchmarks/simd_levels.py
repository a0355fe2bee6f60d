"""The standard kernels at each x86-64 SIMD level, on this CPU, one thread.

The installed library picks its SIMD clone at load time (csrc/fast/dispatch.h), so
a benchmark on one machine shows one level only. This script builds
benchmarks/c/time_standard.c with csrc/ once per level, without dispatch
(-DBNKERNELS_NO_DISPATCH) and with that level's compiler flag, and once with
dispatch as the extension is built; it runs each build on the same shape,
prints the milliseconds side by side, and checks that every build gives the
same bits. A level's column is the code a CPU with that level (and no wider)
would run, timed on this CPU ("baseline": the compiler's default target,
SSE2 on x86-64); levels this CPU lacks are left out.

    python benchmarks/simd_levels.py [--shape 32x64x56x56] [--reps 10]
        [--cc gcc] [--csrc DIR] [--json PATH]

--csrc times another checkout's kernels (e.g. an older commit's, through
`git worktree add`), to measure a change.
"""
import argparse
import os
import shlex
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_flags, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DRIVER = ROOT / "benchmarks" / "c" / "time_standard.c"
FLAGS = ["-O3", "-std=c11", "-fno-fast-math", "-ffp-contract=off"]
NO_DISPATCH = "-DBNKERNELS_NO_DISPATCH"
# (column, extra compiler flags, the /proc/cpuinfo flag a CPU needs to run it)
LEVELS = [
    ("baseline", [NO_DISPATCH], None),
    ("AVX2", [NO_DISPATCH, "-mavx2"], "avx2"),
    ("AVX-512F", [NO_DISPATCH, "-mavx512f"], "avx512f"),
    ("dispatch", [], None),
]


def build(cc, csrc, flags, binary):
    # every C file of csrc/, in either layout (older checkouts, --csrc, keep
    # them all at its top)
    sources = sorted(csrc.rglob("*.c")) + [DRIVER]
    subprocess.run([*shlex.split(cc), *FLAGS, *flags, f"-I{csrc}", *map(str, sources), "-lm",
                    "-o", str(binary)], check=True)


def run(binary, shape, reps):
    """{(kernel, dtype): ms} and {dtype: hash} of one build's run."""
    batch, channels, height, width = shape
    out = subprocess.run([str(binary), str(batch), str(channels), str(height * width),
                          str(reps)], check=True, capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}).stdout
    times, hashes = {}, {}
    for line in out.splitlines():
        name, dtype, value = line.split()
        if name == "hash":
            hashes[dtype] = value
        else:
            times[(name, dtype)] = float(value)
    return times, hashes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="32x64x56x56", help="NxCxHxW")
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--cc", default=os.environ.get("CC", "gcc"))
    parser.add_argument("--csrc", type=Path, default=ROOT / "csrc")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.lower().split("x"))
    if len(shape) != 4 or min(shape) < 1:
        parser.error(f"--shape takes N x C x H x W, positive; got {args.shape!r}")
    flags = cpu_flags()
    levels = [(name, extra) for name, extra, needs in LEVELS
              if needs is None or needs in flags]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        binaries = [Path(tmp) / name.replace("-", "_") for name, _ in levels]
        # the builds side by side, one per CPU; the timed runs one at a time
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            for done in [pool.submit(build, args.cc, args.csrc.resolve(), extra, binary)
                         for (_, extra), binary in zip(levels, binaries)]:
                done.result()
        for (name, _), binary in zip(levels, binaries):
            results[name] = run(binary, shape, args.reps)
    columns = [name for name, _ in levels]
    rows = list(results[columns[0]][0])
    print(f"shape {args.shape}, one thread, best of {args.reps}, ms "
          f"({args.cc}, csrc {args.csrc})")
    print(f"{'kernel':24s} {'dtype':5s} " + " ".join(f"{c:>9s}" for c in columns))
    for kernel, dtype in rows:
        print(f"{kernel:24s} {dtype:5s} "
              + " ".join(f"{results[c][0][(kernel, dtype)]:9.3f}" for c in columns))
    same = all(results[c][1] == results[columns[0]][1] for c in columns)
    print("same bits in every build:", "yes" if same else "NO")
    if args.json:
        write_json(args.json, {
            "shape": list(shape), "reps": args.reps, "cc": args.cc,
            "levels": columns, "same_bits": same,
            "ms": {c: {f"{k} {d}": v for (k, d), v in results[c][0].items()}
                   for c in columns}})
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
