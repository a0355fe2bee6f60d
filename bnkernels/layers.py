"""Layers built on the kernels, enough to assemble and train Inception networks.

Every layer is a ``Module``: ``forward(x)`` computes and remembers what its
backward needs, ``backward(dy)`` returns dL/dx and adds the parameter
gradients into their ``grad`` arrays (``+=``, as PyTorch and Darknet do;
``zero_grad()`` clears them). Tensors are NumPy arrays in NCHW layout.

``output_shape``, ``macs`` (multiply-accumulates), ``num_weights`` and
``num_parameters`` describe a module without running it; ``summary`` prints
them per module.
"""
import sys

import numpy as np

from bnkernels import batchnorm


class Module:
    """Base class: a forward, its backward, parameters and submodules.

    Subclasses implement ``forward``, ``backward`` and ``output_shape``; those
    with parameters override ``_own_parameters`` (and ``macs`` where they
    compute). Submodules are found among the attributes, in assignment order.
    """

    training = True

    def forward(self, x):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(x)

    def output_shape(self, input_shape):
        """The shape forward returns for an input of input_shape."""
        raise NotImplementedError

    def macs(self, input_shape):
        """Multiply-accumulates of one forward over input_shape (0 for layers
        that only compare, add or copy)."""
        return sum(child.macs(shape) for child, shape in self._child_inputs(input_shape))

    def _child_inputs(self, input_shape):
        """(child, the shape it receives) for each submodule; containers
        override this to describe how data flows through them."""
        return [(child, input_shape) for _, child in self.children()]

    def children(self):
        """[(name, module)] of the direct submodules, in assignment order."""
        return [(name, value) for name, value in vars(self).items()
                if isinstance(value, Module)]

    def _own_parameters(self):
        """[(name, value, grad)] of this module's own parameters (not its
        children's)."""
        return []

    def named_parameters(self, prefix=""):
        """[(dotted name, value, grad)] of every parameter, children included."""
        found = [(prefix + name, value, grad) for name, value, grad in self._own_parameters()]
        for name, child in self.children():
            found.extend(child.named_parameters(f"{prefix}{name}."))
        return found

    def parameters(self):
        """[(value, grad)] of every parameter, as optimizers take them."""
        return [(value, grad) for _, value, grad in self.named_parameters()]

    def num_weights(self):
        """Count of convolution and linear weights (no biases, no BN terms)."""
        return sum(child.num_weights() for _, child in self.children())

    def num_parameters(self):
        """Count of every learnable value (weights, biases, BN gamma and beta)."""
        return sum(value.size for _, value, _ in self.named_parameters())

    def zero_grad(self):
        for _, grad in self.parameters():
            grad.fill(0)

    def train(self, mode=True):
        """Training mode (batch statistics, dropout) if mode, else eval; returns self."""
        self.training = bool(mode)
        for _, child in self.children():
            child.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def _own_state(self):
        """{name: array} of this module's own state: parameters, plus buffers
        such as BN's running statistics."""
        return {name: value for name, value, _ in self._own_parameters()}

    def state_dict(self, prefix=""):
        """{dotted name: copy} of all parameters and buffers, like PyTorch's."""
        state = {prefix + name: np.array(value, copy=True)
                 for name, value in self._own_state().items()}
        for name, child in self.children():
            state.update(child.state_dict(f"{prefix}{name}."))
        return state

    def load_state_dict(self, state):
        """Copy values in from a state_dict; keys and shapes must match."""
        targets = self._state_targets()
        if set(state) != set(targets):
            missing, extra = set(targets) - set(state), set(state) - set(targets)
            raise KeyError(f"state_dict keys do not match: missing {sorted(missing)}, "
                           f"unexpected {sorted(extra)}")
        for key, (owner, name) in targets.items():
            owner._load_state_entry(name, np.asarray(state[key]), key)

    def _state_targets(self, prefix=""):
        targets = {prefix + name: (self, name) for name in self._own_state()}
        for name, child in self.children():
            targets.update(child._state_targets(f"{prefix}{name}."))
        return targets

    def _load_state_entry(self, name, value, key):
        target = self._own_state()[name]
        if np.shape(target) != value.shape:
            raise ValueError(f"{key} has shape {value.shape}, expected {np.shape(target)}")
        target[...] = value

    def summary(self, input_shape, file=None):
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

    def __repr__(self):
        inner = "".join(f"\n  ({name}): " + repr(child).replace("\n", "\n  ")
                        for name, child in self.children())
        return f"{type(self).__name__}({self._describe()}{inner}{chr(10) if inner else ''})"

    def _describe(self):
        """The constructor arguments worth showing in repr."""
        return ""


class Sequential(Module):
    """Modules applied one after the other."""

    def __init__(self, *modules):
        for i, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(f"Sequential takes Modules; argument {i} is "
                                f"{type(module).__name__}")
        self.layers = list(modules)

    def children(self):
        return [(str(i), module) for i, module in enumerate(self.layers)]

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]

    def forward(self, x):
        for module in self.layers:
            x = module.forward(x)
        return x

    def backward(self, dy):
        for module in reversed(self.layers):
            dy = module.backward(dy)
        return dy

    def output_shape(self, input_shape):
        for module in self.layers:
            input_shape = module.output_shape(input_shape)
        return tuple(input_shape)

    def _child_inputs(self, input_shape):
        pairs = []
        for module in self.layers:
            pairs.append((module, tuple(input_shape)))
            input_shape = module.output_shape(input_shape)
        return pairs


class Concat(Module):
    """Branches run on the same input, their outputs concatenated along the
    channel axis (the Inception module's merge). Backward gives each branch
    its slice of dy and sums the branches' dx."""

    def __init__(self, *branches):
        if not branches:
            raise ValueError("Concat needs at least one branch")
        for i, branch in enumerate(branches):
            if not isinstance(branch, Module):
                raise TypeError(f"Concat takes Modules; branch {i} is {type(branch).__name__}")
        self.branches = list(branches)
        self._channels = None

    def children(self):
        return [(str(i), branch) for i, branch in enumerate(self.branches)]

    def forward(self, x):
        outputs = [branch.forward(x) for branch in self.branches]
        spatial = {y.shape[2:] for y in outputs}
        if len(spatial) != 1:
            raise ValueError("Concat branches must give the same H, W; got "
                             + ", ".join(str(y.shape) for y in outputs))
        self._channels = [y.shape[1] for y in outputs]
        return np.concatenate(outputs, axis=1)

    def backward(self, dy):
        if self._channels is None:
            raise RuntimeError("backward called before forward")
        dx = None
        start = 0
        for branch, channels in zip(self.branches, self._channels):
            # each branch gets a contiguous copy of its channels of dy
            part = branch.backward(np.ascontiguousarray(dy[:, start:start + channels]))
            start += channels
            dx = part if dx is None else dx + part
        return dx

    def output_shape(self, input_shape):
        shapes = [branch.output_shape(input_shape) for branch in self.branches]
        if len({tuple(shape[2:]) for shape in shapes}) != 1:
            raise ValueError(f"Concat branches give different H, W for input {input_shape}: "
                             f"{shapes}")
        n, _, *spatial = shapes[0]
        return (n, sum(shape[1] for shape in shapes), *spatial)


class BatchNorm2d(batchnorm.BatchNorm2d, Module):
    """bnkernels.BatchNorm2d as a Module: forward uses the module's training
    mode (``train()``/``eval()``) unless told otherwise. Arguments as
    bnkernels.BatchNorm2d."""

    def forward(self, x, training=None):
        return super().forward(x, self.training if training is None else training)

    __call__ = forward

    def output_shape(self, input_shape):
        return tuple(input_shape)

    def macs(self, input_shape):
        return 0

    def num_weights(self):
        return 0

    def children(self):
        return []

    def parameters(self):
        return Module.parameters(self)

    def _own_parameters(self):
        if not self.affine:
            return []
        return [("weight", self.weight, self.grad_weight), ("bias", self.bias, self.grad_bias)]

    def _own_state(self):
        # torch.nn.BatchNorm2d's keys; num_batches_tracked as an int64 scalar
        state = batchnorm.BatchNorm2d.state_dict(self)
        return {key: value for key, value in state.items()}

    def state_dict(self, prefix=""):
        return Module.state_dict(self, prefix)

    def load_state_dict(self, state):
        return Module.load_state_dict(self, state)

    def _load_state_entry(self, name, value, key):
        if name == "num_batches_tracked":
            self.num_batches_tracked = int(value)
            return
        target = getattr(self, name)
        if target.shape != value.shape:
            raise ValueError(f"{key} has shape {value.shape}, expected {target.shape}")
        target[...] = value

    def __repr__(self):
        return batchnorm.BatchNorm2d.__repr__(self)
