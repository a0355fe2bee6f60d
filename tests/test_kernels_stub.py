"""bnkernels/_kernels.pyi, the type stubs of the compiled module, against the
module itself (the oracle: what Python sees of the extension at run time), so
the stubs cannot go stale."""
import ast
import inspect
import types
from pathlib import Path

import pytest

from bnkernels import _kernels

STUB = Path(_kernels.__file__).with_name("_kernels.pyi")


def _stub_functions():
    tree = ast.parse(STUB.read_text())
    return {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}


def _public_callables():
    return {name for name, value in vars(_kernels).items()
            if not name.startswith("_") and callable(value)
            and not isinstance(value, types.ModuleType)}


def test_the_stub_ships_beside_the_module():
    assert STUB.is_file()


def test_the_stub_names_exactly_the_public_callables():
    stubbed = {name for name in _stub_functions() if not name.startswith("_")}
    assert stubbed == _public_callables()


@pytest.mark.parametrize("name", sorted(_public_callables()))
def test_each_stub_has_the_parameters_and_defaults_of_its_function(name):
    node = _stub_functions()[name]
    args = node.args
    stub = [(a.arg, "positional") for a in args.posonlyargs + args.args] + \
        [(a.arg, "keyword") for a in args.kwonlyargs]
    defaults = [ast.literal_eval(d) for d in args.defaults] + \
        [ast.literal_eval(d) for d in args.kw_defaults if d is not None]
    params = list(inspect.signature(getattr(_kernels, name)).parameters.values())
    kinds = {inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional",
             inspect.Parameter.KEYWORD_ONLY: "keyword"}
    assert stub == [(p.name, kinds.get(p.kind, str(p.kind))) for p in params]
    real_defaults = [p.default for p in params if p.default is not p.empty]
    assert defaults == real_defaults
    assert node.returns is not None, f"{name} has no return annotation"
    assert all(a.annotation is not None for a in args.args + args.kwonlyargs), \
        f"{name} lacks an annotation"


def test_the_module_level_constants_are_stubbed():
    tree = ast.parse(STUB.read_text())
    annotated = {node.target.id for node in tree.body if isinstance(node, ast.AnnAssign)
                 and not (isinstance(node.annotation, ast.Name)
                          and node.annotation.id == "TypeAlias")}
    assert annotated == {name for name, value in vars(_kernels).items()
                         if not name.startswith("_") and isinstance(value, int)}
