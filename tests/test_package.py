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


def _public_modules():
    """Every public module of the package (no part of its dotted name starts
    with an underscore; __main__ included), bnkernels.torch where PyTorch is
    installed."""
    import importlib.util
    import pkgutil

    import bnkernels
    names = ["bnkernels", "bnkernels.__main__"]
    for info in pkgutil.walk_packages(bnkernels.__path__, "bnkernels."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    if importlib.util.find_spec("torch") is None:
        names.remove("bnkernels.torch")
    return sorted(names)


ANNOTATED = _public_modules()


def test_the_annotation_check_walks_every_layer_of_the_package():
    assert {"bnkernels.batchnorm", "bnkernels.nn.layers", "bnkernels.nn.inception",
            "bnkernels.nn.train", "bnkernels.io.darknet", "bnkernels.tools.bench",
            "bnkernels.tools.verify"} <= set(ANNOTATED)


def _public_callables(module):
    """(name, function) of the module's own public functions and of the
    public methods of its own public classes (dunder methods that a class
    defines, __init__ included)."""
    import inspect
    for name, value in vars(module).items():
        if name.startswith("_") or getattr(value, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(value):
            yield name, value
        elif inspect.isclass(value):
            for attr, member in vars(value).items():
                if isinstance(member, (staticmethod, classmethod)):
                    member = member.__func__
                if isinstance(member, property):
                    member = member.fget
                if inspect.isfunction(member) and (not attr.startswith("_")
                                                   or attr == "__init__"):
                    yield f"{name}.{attr}", member


@pytest.mark.parametrize("name", ANNOTATED)
def test_every_public_function_and_method_of_the_package_is_annotated(name):
    """Oracle: inspect.signature; every parameter but self and the return
    type carry an annotation (mypy then checks them, in CI)."""
    import importlib
    import inspect
    module = importlib.import_module(name)
    missing = []
    for qualname, function in _public_callables(module):
        signature = inspect.signature(function)
        params = [p for p in signature.parameters.values()
                  if p.name not in ("self", "cls") and p.annotation is inspect.Parameter.empty]
        if params or signature.return_annotation is inspect.Signature.empty:
            missing.append(qualname)
    assert missing == [], f"{name}: not annotated: {missing}"


def test_the_package_ships_its_py_typed_marker():
    """PEP 561: type checkers read the annotations of an installed package
    only where its directory holds py.typed (pyproject's package-data and
    MANIFEST.in ship it)."""
    from pathlib import Path

    import bnkernels
    assert (Path(bnkernels.__file__).parent / "py.typed").is_file()
