"""The base class of every bnkernels layer, network and container: ``Module``.

Every layer is a ``Module``: ``forward(x)`` computes and remembers what its
backward needs, ``backward(dy)`` returns dL/dx and adds the parameter
gradients into their ``grad`` arrays (``+=``, as PyTorch and Darknet do;
``zero_grad()`` clears them). Submodules are found among the attributes, in
assignment order; ``state_dict`` and ``load_state_dict`` use torch.nn's dotted
keys. The batch-norm layers (bnkernels.BatchNorm and its subclasses) and the
layers of bnkernels.nn are Modules.
"""
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TextIO, TypeVar

import numpy as np

import bnkernels._kernels as _kernels
from bnkernels._typing import FloatArray

__all__ = ["Module", "StateDictError", "IncompatibleKeys"]

_M = TypeVar("_M", bound="Module")


class StateDictError(RuntimeError, KeyError, ValueError):
    """A state_dict that does not fit the layer (missing or unexpected keys,
    a wrong shape): a RuntimeError as in PyTorch; also a KeyError and a
    ValueError, what bnkernels raised before."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class IncompatibleKeys(NamedTuple):
    """What load_state_dict returns, as PyTorch's: the layer's keys the state
    lacked and the state's keys the layer does not have."""
    missing_keys: list[str]
    unexpected_keys: list[str]


# whether this thread is inside a container's _all_or_nothing call
_GUARD = threading.local()


def _checked_state_array(value: Any, target: Any, key: str) -> FloatArray:
    """value for the state entry `key` whose current array is target: an
    array of target's shape, converted to target's dtype, finite."""
    try:
        array = np.asarray(value)
    except Exception as error:  # e.g. a torch tensor that requires grad
        raise TypeError(f"{key}: cannot read {type(value).__name__} as an array "
                        f"({error})") from None
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{key} has dtype {array.dtype}, expected a real number dtype "
                        f"(it is stored as {target.dtype})")
    if array.shape != np.shape(target):
        raise StateDictError(f"size mismatch for {key}: the state has shape {array.shape}, "
                             f"the module {np.shape(target)}")
    with np.errstate(over="ignore"):  # values beyond the dtype's range: reported below
        converted = np.array(array, dtype=target.dtype, copy=True)
    if not np.isfinite(converted).all():
        if np.isfinite(array).all():
            raise ValueError(f"{key} has values beyond the range of {target.dtype} (largest "
                             f"magnitude {np.abs(array).max()}), the dtype it is stored in")
        raise ValueError(f"{key} has NaN or Inf values; expected finite values")
    return converted


def _input_grad_flag(value: object) -> bool:
    """backward's input_grad: a bool."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"input_grad must be a bool, got {value!r}")


def _first_learning_stage(stages: Sequence["Module"]) -> int:
    """The index of the first of `stages` (applied in order) that has
    parameters, len(stages) if none has. Without dL/dx of the input, the
    stages before it need no backward at all and it needs no dL/dx."""
    for i, stage in enumerate(stages):
        if stage.named_parameters():
            return i
    return len(stages)


class Module:
    """Base class: a forward, its backward, parameters and submodules.

    Subclasses implement ``forward``, ``backward`` and ``output_shape``; those
    with parameters override ``_own_parameters`` (and ``macs`` where they
    compute). Submodules are found among the attributes, in assignment order.
    """

    training: bool = True
    _saved: Any  # what a forward keeps for its backward (layers that have one)
    # where convolution and pooling layers find im2col, col2im and the pools:
    # the C kernels, or bnkernels.reference in a numpy_twin
    kernels: Any = _kernels

    def forward(self, x: Any) -> Any:
        raise NotImplementedError

    def backward(self, dy: Any) -> Any:
        raise NotImplementedError

    def _backward_parameters(self, dy: Any) -> None:
        """The backward for a caller that needs no dL/dx (a network's input
        needs none in a training step): the same gradients of the
        parameters as backward adds, dL/dx skipped where the module can
        skip it (Conv2d, Linear and the containers of them)."""
        self.backward(dy)

    def __call__(self, x: Any) -> Any:
        return self.forward(x)

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """The shape forward returns for an input of input_shape."""
        raise NotImplementedError

    def macs(self, input_shape: Sequence[int]) -> int:
        """Multiply-accumulates of one forward over input_shape (0 for layers
        that only compare, add or copy)."""
        return sum(child.macs(shape) for child, shape in self._child_inputs(input_shape))

    def _child_inputs(self, input_shape: Sequence[int]
                      ) -> list[tuple["Module", tuple[int, ...]]]:
        """(child, the shape it receives) for each submodule; containers
        override this to describe how data flows through them."""
        return [(child, tuple(input_shape)) for _, child in self.children()]

    def children(self) -> list[tuple[str, "Module"]]:
        """[(name, module)] of the direct submodules, in assignment order."""
        return [(name, value) for name, value in vars(self).items()
                if isinstance(value, Module)]

    def _own_parameters(self) -> list[tuple[str, FloatArray, FloatArray]]:
        """[(name, value, grad)] of this module's own parameters (not its
        children's)."""
        return []

    def named_parameters(self, prefix: str = "") -> list[tuple[str, FloatArray, FloatArray]]:
        """[(dotted name, value, grad)] of every parameter, children included."""
        found = [(prefix + name, value, grad) for name, value, grad in self._own_parameters()]
        for name, child in self.children():
            found.extend(child.named_parameters(f"{prefix}{name}."))
        return found

    def parameters(self) -> list[tuple[FloatArray, FloatArray]]:
        """[(value, grad)] of every parameter, as optimizers take them."""
        return [(value, grad) for _, value, grad in self.named_parameters()]

    def num_weights(self) -> int:
        """Count of convolution and linear weights (no biases, no BN terms)."""
        return sum(child.num_weights() for _, child in self.children())

    def num_parameters(self) -> int:
        """Count of every learnable value (weights, biases, BN gamma and beta)."""
        return sum(value.size for _, value, _ in self.named_parameters())

    def zero_grad(self) -> None:
        for _, grad in self.parameters():
            grad.fill(0)

    def train(self: _M, mode: bool = True) -> _M:
        """Training mode (batch statistics, dropout) if mode, else eval; returns self."""
        self.training = bool(mode)
        for _, child in self.children():
            child.train(mode)
        return self

    def eval(self: _M) -> _M:
        return self.train(False)

    def _own_state(self) -> dict[str, Any]:
        """{name: array} of this module's own state: parameters, plus buffers
        such as BN's running statistics."""
        return {name: value for name, value, _ in self._own_parameters()}

    def state_dict(self, prefix: str = "") -> dict[str, Any]:
        """{dotted name: copy} of all parameters and buffers, like PyTorch's."""
        # copies; a NumPy scalar (BN's num_batches_tracked, np.int64) stays one
        state = {prefix + name: value.copy() if isinstance(value, np.generic)
                 else np.array(value, copy=True)
                 for name, value in self._own_state().items()}
        for name, child in self.children():
            state.update(child.state_dict(f"{prefix}{name}."))
        return state

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True
                        ) -> IncompatibleKeys:
        """Copy values in from a state_dict, as torch.nn.Module.load_state_dict.

        strict: the keys must be exactly the module's (else StateDictError, a
        RuntimeError as in PyTorch and a KeyError, naming the missing and
        unexpected ones); strict=False loads the keys both have. Every entry
        is checked before any is written: each value's shape (ValueError),
        dtype (a real float or integer dtype: TypeError) and values (finite,
        and still finite in the module's dtype; running_var >= 0;
        num_batches_tracked an integer >= 0: ValueError). On any error the
        module is unchanged. Values are copied in the module's dtypes.

        Returns IncompatibleKeys(missing_keys, unexpected_keys).
        """
        if not isinstance(state, Mapping):
            raise TypeError(f"state must be a mapping of names to arrays (a state_dict), "
                            f"got {type(state).__name__}")
        targets = self._state_targets()
        missing = [key for key in targets if key not in state]
        unexpected = [key for key in state if key not in targets]
        if strict and (missing or unexpected):
            raise StateDictError(
                f"Error(s) in loading state_dict for {type(self).__name__}: "
                f"missing key(s) {missing}; unexpected key(s) "
                f"{sorted(unexpected, key=str)}")
        # checked copies first (also unaffected by state arrays that are views
        # of the module's own), then the writes, which cannot fail
        staged = [(owner, name, owner._check_state_entry(name, state[key], key))
                  for key, (owner, name) in targets.items() if key in state]
        for owner, name, value in staged:
            owner._write_state_entry(name, value)
        return IncompatibleKeys(missing, unexpected)

    def _state_targets(self, prefix: str = "") -> dict[str, tuple["Module", str]]:
        targets = {prefix + name: (self, name) for name in self._own_state()}
        for name, child in self.children():
            targets.update(child._state_targets(f"{prefix}{name}."))
        return targets

    def _check_state_entry(self, name: str, value: Any, key: str) -> Any:
        """value checked against the entry it would replace, as a new array
        of that entry's dtype; raises naming key."""
        return _checked_state_array(value, self._own_state()[name], key)

    def _write_state_entry(self, name: str, value: Any) -> None:
        self._own_state()[name][...] = value

    def _modules(self) -> list["Module"]:
        """self and every module below it."""
        found, stack = [], [self]
        while stack:
            module = stack.pop()
            found.append(module)
            stack.extend(child for _, child in module.children())
        return found

    def _forget(self) -> None:
        """Drop the saved forward (the next backward raises until a forward)."""
        if hasattr(self, "_saved"):
            self._saved = None

    def _all_or_nothing(self, method: Callable[..., Any], *args: Any,
                        forward: bool = True) -> Any:
        """method(*args), a container's forward (or backward, forward=False).
        If it raises, the BN running statistics and every gradient below self
        are put back as they were and, after a forward, every module below
        forgets its forward (some saw the new input, some not; a backward
        leaves each module's saved forward usable); then the error propagates.
        Only the outermost container of a call keeps these copies."""
        if getattr(_GUARD, "active", False):
            return method(*args)
        modules = self._modules()
        saved = [(array, array.copy()) for module in modules
                 for array in module._restorable(forward)]
        counts = [(module, module.num_batches_tracked) for module in modules
                  if hasattr(module, "num_batches_tracked")]
        _GUARD.active = True
        try:
            return method(*args)
        except BaseException:
            for array, copy_ in saved:
                array[...] = copy_
            for module, count in counts:
                module.num_batches_tracked = count
            for module in modules if forward else ():
                module._forget()
            raise
        finally:
            _GUARD.active = False

    def _restorable(self, forward: bool) -> list[FloatArray]:
        """The arrays of this module (not its children) that a forward (or
        a backward) writes and _all_or_nothing puts back: none (the
        gradients)."""
        return [] if forward else [grad for _, _, grad in self._own_parameters()]

    def summary(self, input_shape: Sequence[int], file: TextIO | None = None) -> str:
        """Print (to file, default stdout) and return a table of each direct
        submodule: output shape, weights, all parameters and MACs for an
        input of input_shape (N, C, H, W), with totals."""
        rows = []
        for (name, child), (_, shape) in zip(self.children(), self._child_inputs(input_shape)):
            rows.append((name, type(child).__name__, child.output_shape(shape),
                         child.num_weights(), child.num_parameters(), child.macs(shape)))
        lines = [f"{'name':<16} {'type':<20} {'output shape':<22} {'weights':>11} "
                 f"{'params':>11} {'MACs':>15}"]
        for name, kind, shape, weights, params, macs in rows:
            lines.append(f"{name:<16} {kind:<20} {str(tuple(shape)):<22} {weights:>11,} "
                         f"{params:>11,} {macs:>15,}")
        lines.append(f"{'total':<16} {'':<20} {str(tuple(self.output_shape(input_shape))):<22} "
                     f"{self.num_weights():>11,} {self.num_parameters():>11,} "
                     f"{self.macs(input_shape):>15,}")
        lines.append("weights: convolution and linear weights only; params: also biases "
                     "and BN gamma/beta; MACs: multiply-accumulates of one forward")
        text = "\n".join(lines)
        print(text, file=sys.stdout if file is None else file)
        return text

    def __repr__(self) -> str:
        inner = "".join(f"\n  ({name}): " + repr(child).replace("\n", "\n  ")
                        for name, child in self.children())
        return f"{type(self).__name__}({self._describe()}{inner}{chr(10) if inner else ''})"

    def _describe(self) -> str:
        """The constructor arguments worth showing in repr."""
        return ""
