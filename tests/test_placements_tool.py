"""benchmarks/c/placements.c, the placement timer (docs/benchmarks), built
with csrc/ as a shared library and run once per kernel and dtype; and
benchmarks/c/builds.c, which times the four standard kernels of two builds.

Oracle: the tool's own check that every placement of the inputs and the
output gives a build the same output bits as its first placement (the same
call elsewhere in memory). A stand-in library whose output depends on where
it lies shows that the check fails when it should. No time is asserted.
"""
import os
import subprocess
from pathlib import Path

import pytest

from c_build import build_c_program

ROOT = Path(__file__).parent.parent
CSRC = ROOT / "csrc"
TOOL = ROOT / "benchmarks" / "c" / "placements.c"

pytestmark = [
    pytest.mark.skipif(not (CSRC / "bnkernels.h").is_file() or not TOOL.is_file(),
                       reason="needs csrc/ and benchmarks/ of a source checkout"),
    pytest.mark.own_c_build,
]

# kernels that write their output from x alone, for the stand-in
MOVING = r"""
#include <stdint.h>
#include <string.h>
static void fill(void *y, int64_t n, int size)
{
    /* a value that depends on y's address: other bits at other placements */
    memset(y, (int)((uintptr_t)y % 64) + 1, (size_t)n * (size_t)size);
}
#define NORMALIZE(S, T) \
void bn_normalize_affine_##S(const T *x, const double *m, const double *i, \
    const T *w, const T *b, int64_t n, int64_t c, int64_t s, int r, T *y) \
{ (void)x; (void)m; (void)i; (void)w; (void)b; (void)r; fill(y, n * c * s, sizeof(T)); }
#define DX(S, T) \
void bn_backward_dx_##S(const T *g, const T *x, const double *m, const double *i, \
    const T *w, const T *b, int r, const double *sd, const double *sx, int64_t n, \
    int64_t c, int64_t s, T *dx) \
{ (void)g; (void)x; (void)m; (void)i; (void)w; (void)b; (void)r; (void)sd; (void)sx; \
  fill(dx, n * c * s, sizeof(T)); }
NORMALIZE(f32, float)
NORMALIZE(f64, double)
DX(f32, float)
DX(f64, double)
"""


@pytest.fixture(scope="module")
def built(c_compiler, tmp_path_factory):
    """(the tool, csrc/ as a shared library, the stand-in library)"""
    folder = tmp_path_factory.mktemp("placements")
    flags = ["-std=c11", "-O2", "-ffp-contract=off", "-fPIC", "-shared", f"-I{CSRC}"]
    library = folder / "libbnkernels.so"
    build = build_c_program(c_compiler, flags, [str(p) for p in sorted(CSRC.rglob("*.c"))],
                            library)
    assert build.returncode == 0, build.stderr[-2000:]
    moving_source = folder / "moving.c"
    moving_source.write_text(MOVING)
    moving = folder / "libmoving.so"
    build = build_c_program(c_compiler, flags, [str(moving_source)], moving)
    assert build.returncode == 0, build.stderr[-2000:]
    tool = folder / "placements"
    build = subprocess.run([*c_compiler, "-O2", str(TOOL), "-ldl", "-o", str(tool)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    return tool, library, moving


@pytest.mark.parametrize("dtype", ["f32", "f64"])
@pytest.mark.parametrize("kernel", ["normalize", "dx", "dx-eval", "dx-relu"])
def test_every_placement_gives_the_same_bits(built, kernel, dtype):
    """rows of 37 values (vectors and scalar ends) and of 1089 (the line
    head and tail), two builds named (the same library twice)"""
    tool, library, _ = built
    for shape in (["2", "3", "37"], ["1", "2", "1089"]):
        run = subprocess.run([str(tool), kernel, dtype, *shape, "1", str(library),
                              str(library)], capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        assert run.stdout.count("worst/best") == 2
        assert len(run.stdout.splitlines()) == 2 * 7


@pytest.mark.parametrize("kernel", ["normalize", "dx"])
def test_a_build_whose_output_moves_with_its_placement_is_refused(built, kernel):
    tool, library, moving = built
    run = subprocess.run([str(tool), kernel, "f32", "1", "2", "40", "1", str(library),
                          str(moving)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert f"{moving}: the output with the inputs at 0 and the output at 8" in run.stderr


BUILDS = ROOT / "benchmarks" / "c" / "builds.c"


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_builds_times_each_kernel_of_both_builds(built, c_compiler, layout, tmp_path):
    """one line per kernel, each build's time and their quotient as printed
    (the library twice; XOFF places x and dy 16 bytes past a line; calls of
    at least a few microseconds, so the printed times' rounding stays below
    the quotient's)"""
    _, library, _ = built
    tool = tmp_path / "builds"
    build = subprocess.run([*c_compiler, "-O2", str(BUILDS), "-ldl", "-o", str(tool)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    run = subprocess.run([str(tool), "f64", layout, "4", "64", "256", "1", str(library),
                          str(library)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "XOFF": "16"})
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [
        "bn_stats", "bn_normalize_affine", "bn_backward_reduce", "bn_backward_dx"]
    for line in lines:
        assert f"f64 {layout} 4x64x256 XOFF 16:" in line
        first, second, _, quotient = line.split(":")[1].split()
        assert float(first) > 0 and float(second) > 0
        assert abs(float(quotient) - float(first) / float(second)) <= 0.01 + 0.01 * float(quotient)


def test_builds_refuses_one_build(built, c_compiler, tmp_path):
    _, library, _ = built
    tool = tmp_path / "builds"
    build = subprocess.run([*c_compiler, "-O2", str(BUILDS), "-ldl", "-o", str(tool)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    run = subprocess.run([str(tool), "f32", "nchw", "1", "2", "40", "1", str(library)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "usage:" in run.stderr
