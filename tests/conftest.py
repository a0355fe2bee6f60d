"""Shared fixtures: the Darknet vector files (shipped with the package, plus
the large case kept in tests/data), and the C compiler."""
import shlex
import shutil
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from bnkernels.tools import verify

TEST_VECTORS = Path(__file__).parent / "data" / "darknet_vectors"
VECTOR_FILES = verify.vector_files(TEST_VECTORS)


def pytest_generate_tests(metafunc):
    """Parametrize any test taking `vector` over every (flavor, file)."""
    if "vector" in metafunc.fixturenames:
        metafunc.parametrize(
            "vector", VECTOR_FILES,
            ids=[f"{flavor}-{path.stem}" for flavor, path in VECTOR_FILES],
            indirect=True)


@pytest.fixture
def vector(request):
    """(flavor, {key: array}) of one vector file."""
    flavor, path = request.param
    with np.load(path) as z:
        return flavor, {key: z[key] for key in z.files}


@pytest.fixture(scope="session")
def c_compiler():
    """The C compiler as an argument list: the one Python builds extensions
    with (sysconfig's CC), else cc, gcc or clang; without one, a skip."""
    configured = shlex.split(sysconfig.get_config_var("CC") or "")
    for argv in ([configured] if configured else []) + [["cc"], ["gcc"], ["clang"]]:
        if shutil.which(argv[0]):
            return argv
    pytest.skip("no C compiler found (sysconfig's CC, cc, gcc or clang)")
