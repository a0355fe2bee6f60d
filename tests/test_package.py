"""The package's layers: a core that imports nothing above it, and nn, io and
tools loaded on first use. Oracle: sys.modules of a fresh interpreter."""
import subprocess
import sys

import pytest

CORE = ["bnkernels", "bnkernels.batchnorm", "bnkernels.darknet", "bnkernels.reference",
        "bnkernels.folding", "bnkernels.distributed", "bnkernels.module", "bnkernels._kernels"]
UPPER = ("bnkernels.nn", "bnkernels.io", "bnkernels.tools")


def loaded_after(code):
    """The bnkernels modules a fresh interpreter holds after running code."""
    probe = code + "\nimport sys\nprint(' '.join(sorted(m for m in sys.modules " \
                   "if m.startswith('bnkernels'))))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


@pytest.mark.parametrize("module", CORE + ["bnkernels.torch"])
def test_core_module_loads_nothing_above_the_core(module):
    if module == "bnkernels.torch":
        pytest.importorskip("torch")
    loaded = loaded_after(f"import {module}")
    assert module in loaded
    above = sorted(m for m in loaded if m.startswith(UPPER))
    assert above == [], f"import {module} loaded {above}"


def test_import_bnkernels_loads_neither_nn_nor_io_nor_tools():
    loaded = loaded_after("import bnkernels")
    assert not any(m.startswith(UPPER) for m in loaded), sorted(loaded)
    assert "bnkernels.nn" not in loaded


@pytest.mark.parametrize("name", ["nn", "io", "tools"])
def test_upper_packages_are_attributes_loaded_on_first_use(name):
    loaded = loaded_after(f"import bnkernels\nassert bnkernels.{name}.__name__ == "
                          f"'bnkernels.{name}'")
    assert f"bnkernels.{name}" in loaded


def test_lazy_attributes_and_their_contents():
    import bnkernels
    assert bnkernels.nn.layers.Conv2d is bnkernels.nn.Conv2d
    assert bnkernels.nn.BatchNorm2d is bnkernels.BatchNorm2d
    assert bnkernels.nn.train.__name__ == "bnkernels.nn.train"
    assert bnkernels.io.darknet.read_cfg is bnkernels.io.read_cfg
    assert bnkernels.tools.bench.__name__ == "bnkernels.tools.bench"
    assert bnkernels.tools.verify.__name__ == "bnkernels.tools.verify"
    assert {"nn", "io", "tools"} <= set(dir(bnkernels))
    with pytest.raises(AttributeError, match="no attribute 'layers'"):
        bnkernels.layers  # noqa: B018 (the old path is gone)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        bnkernels.tools.nothing  # noqa: B018


@pytest.mark.parametrize("old", ["bnkernels.layers", "bnkernels.inception", "bnkernels.optim",
                                 "bnkernels.train", "bnkernels.bench", "bnkernels.verify",
                                 "bnkernels.darknet_files"])
def test_old_module_paths_are_gone(old):
    with pytest.raises(ModuleNotFoundError):
        __import__(old)


def test_the_io_package_does_not_shadow_the_standard_library_io():
    import io

    import bnkernels.io
    assert io is not bnkernels.io and hasattr(io, "BytesIO")
