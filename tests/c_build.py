"""Building the tests' C programs from csrc/: each source compiled on its own,
as many at a time as there are CPUs, then linked."""
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def build_c_program(compiler, flags, sources, binary, env=None):
    """Compile `sources` with `compiler` (an argument list) and `flags`, and
    link them with libm into `binary`. Returns the CompletedProcess of the
    first compile that failed, else the link's (returncode 0 when built).
    The objects go in a folder beside the binary."""
    objects_dir = Path(binary).parent / (Path(binary).name + ".objects")
    objects_dir.mkdir(parents=True, exist_ok=True)
    objects = [str(objects_dir / f"{i}_{Path(s).stem}.o") for i, s in enumerate(sources)]

    def compile_one(source, obj):
        return subprocess.run([*compiler, *flags, "-c", str(source), "-o", obj],
                              capture_output=True, text=True, env=env)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        compiled = list(pool.map(compile_one, sources, objects))
    for run in compiled:
        if run.returncode != 0:
            return run
    return subprocess.run([*compiler, *flags, *objects, "-lm", "-o", str(binary)],
                          capture_output=True, text=True, env=env)
