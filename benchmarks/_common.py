"""Pieces the benchmark scripts share: the --shapes option's parser, the
CPU's description, per-call timing, "median [min-max]" cells, busy loops on
the other cores, and the JSON report.

Standard library only: it imports no bnkernels, so a driver that runs other
builds of bnkernels in worker processes can use it without importing one.
The scripts are run as ``python benchmarks/X.py`` (their folder first on
sys.path) or loaded from their file by the tests; they import this module as
``_common`` after putting their own folder on sys.path.
"""
import argparse
import contextlib
import json
import platform
import statistics
import subprocess
import sys
import time


def parse_shapes(text):
    """argparse type: "NxCxHxW,..." -> [(N, C, H, W), ...]."""
    try:
        return [tuple(int(n) for n in item.split("x")) for item in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"shapes are NxCxHxW,...; got {text!r}") from None


def cpuinfo_field(name):
    """The value of the first /proc/cpuinfo line whose key is `name` (any
    case), or None (no such line, or no /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip().lower() == name:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_model():
    """The CPU's model name, else the platform's processor or machine name;
    None when none of them is known."""
    return (cpuinfo_field("model name") or platform.processor() or platform.machine()
            or None)


def cpu_flags():
    """This CPU's feature flags (Linux's /proc/cpuinfo; empty elsewhere)."""
    return set((cpuinfo_field("flags") or "").split())


def timed_calls(fn, calls):
    """Seconds of each of `calls` calls of fn, each timed alone, after one
    untimed call."""
    fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def span(values, fmt="{:.3f}"):
    """'median [min-max]' of values, each number formatted by fmt."""
    return (f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))}-"
            f"{fmt.format(max(values))}]")


@contextlib.contextmanager
def busy_loops(cores):
    """One process spinning in pure Python pinned to each of cores, for the
    duration of the with block; yields the list of processes."""
    procs = []
    try:
        for core in cores:
            procs.append(subprocess.Popen(
                [sys.executable, "-c",
                 f"import os; os.sched_setaffinity(0, {{{core}}})\nwhile True: pass"]))
        if procs:
            time.sleep(0.2)   # the loops spinning before the measurement starts
        yield procs
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def write_json(path, document):
    """document as indented JSON (UTF-8) in the file at path."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(document, f, indent=1)
        f.write("\n")


def write_rows(args, rows, machine=None):
    """When --json was given: {"rows": rows, "machine": machine (when given),
    "config": the parsed options} in that file."""
    if args.json:
        described = {} if machine is None else {"machine": machine}
        write_json(args.json, {"rows": rows, **described, "config": vars(args)})
