"""Darknet's .cfg and .weights files: read a network description, read and
write the parameters of its layers, and check its batch norms.

Public names (also reachable as ``bnkernels.darknet.read_cfg``, ``...load_weights``,
``...save_weights``): read_cfg, load_weights, save_weights, Section,
LayerWeights, DarknetWeights, DarknetFileError, check (the
``python -m bnkernels darknet-check`` command).

The .weights layout, as both Darknet forks read it (``load_weights_upto`` in
src/parser.c): a header of int32 major, minor, revision, then ``seen`` (images
trained on) in 8 bytes when ``major * 10 + minor >= 2`` (AlexeyAB's uint64_t;
pjreddie's size_t, and only if also major < 1000 and minor < 1000), otherwise
in 4 (Darknet's int; read here as unsigned); then each layer
with parameters, in cfg order, as float32 arrays, with no padding:

=====================  ====================================================
[convolutional]        biases (n), [scales, rolling_mean, rolling_variance
                       (n each) if batch_normalize], weights
                       (n, c/groups, size, size)
[connected]            biases (n), weights (n, inputs), [scales,
                       rolling_mean, rolling_variance if batch_normalize]
[batchnorm]            pjreddie: scales, rolling_mean, rolling_variance (c);
                       alexeyab: biases, scales, rolling_mean,
                       rolling_variance (c)
[shortcut] (alexeyab)  weights: len(from) + 1 values (weights_type=
                       per_feature or per_layer) or (len(from) + 1) * c
                       (per_channel); none otherwise and in pjreddie
=====================  ====================================================

Options that change what the file holds are honoured as Darknet's loader
does: ``dontload=1`` (the layer is not in the file), ``dontloadscales=1`` (no
BN arrays in the file for it), ``share_index`` (alexeyab: a convolution
sharing another's weights has none), ``flipped=1`` (a convolution's weights
are stored transposed, (c/groups*size*size, n)) and a major or minor version
above 1000 (connected weights stored transposed, (inputs, n)). The arrays
returned are always in the (n, ...) order above; save_weights writes them back
in the file's order.
"""
import argparse
from dataclasses import dataclass, field
import math
import os
from pathlib import Path
import re
import struct
import sys
from typing import TextIO
import warnings

import numpy as np

from bnkernels import darknet as _darknet

__all__ = ["Section", "read_cfg", "LayerWeights", "DarknetWeights", "DarknetFileError",
           "load_weights", "save_weights", "check"]

_ALIASES = {"conv": "convolutional", "conn": "connected", "max": "maxpool",
            "avg": "avgpool", "soft": "softmax", "lrn": "normalization",
            "network": "net", "local_avg": "local_avgpool"}
# sections whose output has their input's shape and that hold no parameters
_PASS_THROUGH = {"activation", "dropout", "softmax", "cost", "yolo", "gaussian_yolo",
                 "region", "detection", "normalization", "empty", "logistic", "l2norm"}
# sections with parameters whose layout this module does not read
_UNSUPPORTED = {"local", "deconvolutional", "rnn", "gru", "lstm", "crnn", "conv_lstm",
                "implicit"}


class DarknetFileError(ValueError):
    """A .cfg or .weights file bnkernels cannot read, with where and why."""


# ---------------------------------------------------------------------------
# .cfg
# ---------------------------------------------------------------------------

# Darknet reads every integer option with atoi into a C int, and keeps sizes,
# products of sizes (outputs, weight counts) and offsets in ints too: every
# option and every size and count derived from them must fit one.
_INT_MIN, _INT_MAX = -2 ** 31, 2 ** 31 - 1
_INTEGER = re.compile(r"[+-]?[0-9]{1,20}\Z")


def _range_text(low, high):
    if (low, high) == (0, 1):
        return "0 or 1"
    if high == _INT_MAX and low in (0, 1):
        return (f"a {'positive' if low else 'non-negative'} integer ({low} to {_INT_MAX}, "
                "a C int)")
    return f"an integer from {low} to {high}"


@dataclass(frozen=True)
class Section:
    """One ``[type]`` section of a .cfg file.

    Attributes
    ----------
    type : str
        Lower-case, without brackets, Darknet's aliases resolved
        (``[conv]`` -> "convolutional", ``[network]`` -> "net", ...).
    options : dict of str to str
        ``key=value`` lines as written (whitespace removed, as Darknet does);
        for a repeated key the first one counts, as in Darknet.
    line : int
        1-based line number of the ``[type]`` header.
    index : int or None
        The layer index Darknet gives it (route and shortcut refer to it);
        None for ``[net]``.
    in_shape, out_shape : tuple (channels, height, width)
        Each None where the cfg does not determine it.
    option_lines : dict of str to int
        The line number of each option in ``options`` (for error messages).
    """
    type: str
    options: dict
    line: int
    index: int | None = None
    in_shape: tuple = (None, None, None)
    out_shape: tuple = (None, None, None)
    option_lines: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def in_channels(self) -> int:
        return self.in_shape[0]

    @property
    def out_channels(self) -> int:
        return self.out_shape[0]

    @property
    def bn_channels(self) -> int:
        """Number of batch-norm channels the layer has (0 if none)."""
        if self.type == "batchnorm":
            return self.in_channels
        if self.type in ("convolutional", "connected") and self._stores_bn:
            return self.out_channels
        return 0

    @property
    def _stores_bn(self):
        """A convolutional or connected layer whose file entry has BN arrays."""
        return bool(self._flag("batch_normalize") or self._flag("cbn")) and \
            not self._flag("dontloadscales")

    @property
    def name(self) -> str:
        where = f"layer {self.index}" if self.index is not None else "section"
        return f"{where} [{self.type}] (line {self.line})"

    def _at(self, key, default=None):
        """``key=value (line n)`` as the cfg gives it, for messages;
        ``key=default (default)`` if absent."""
        if key not in self.options:
            return f"{key}={default} (default)" if default is not None else \
                f"{key} (not given)"
        line = self.option_lines.get(key)
        return f"{key}={self.options[key]}" + (f" (line {line})" if line else "")

    def _error(self, text):
        return DarknetFileError(f"{self.name}: {text}")

    def _int(self, key, default=None, low=_INT_MIN, high=_INT_MAX, expected=None):
        """Integer option key in [low, high]; default if absent (None: required)."""
        value = self.options.get(key)
        if value is None:
            if default is None:
                raise self._error(f"needs {key}=, which is missing")
            return default
        number = int(value) if _INTEGER.match(value) else None
        if number is None or not low <= number <= high:
            raise self._error(f"{self._at(key)}, expected "
                              f"{expected or _range_text(low, high)}")
        return number

    def _positive(self, key, default=None):
        """Integer option key that must be >= 1 (and fit a C int)."""
        return self._int(key, default, 1)

    def _nonnegative(self, key, default=None):
        """Integer option key that must be >= 0 (and fit a C int)."""
        return self._int(key, default, 0)

    def _flag(self, key):
        """Option key that is 0 or 1; 0 if absent."""
        return self._int(key, 0, 0, 1)

    def _ints(self, key):
        """Comma-separated integer list option key (required), each a C int."""
        value = self.options.get(key)
        if value is None:
            raise self._error(f"needs {key}=, which is missing")
        items = [item for item in value.split(",") if item != ""]
        if not all(_INTEGER.match(item) and _INT_MIN <= int(item) <= _INT_MAX
                   for item in items):
            raise self._error(f"{self._at(key)}, expected a comma-separated list of "
                              f"integers (each from {_INT_MIN} to {_INT_MAX}, a C int)")
        return [int(item) for item in items]


def read_cfg(path: str | os.PathLike[str]) -> list[Section]:
    """Parse a Darknet .cfg file and work out each layer's shapes.

    Lines are read as Darknet's ``read_cfg`` reads them: all whitespace is
    removed; ``[type]`` starts a section; empty lines and lines starting with
    ``#`` or ``;`` are comments; everything else is ``key=value``. Unlike
    Darknet, a ``#`` or ``;`` later in a line also starts a comment.

    Channels (and, where known, height and width) are tracked from ``[net]``
    (channels=, height=, width=, 0 or absent: unknown; or inputs= alone, taken
    as (inputs, 1, 1)) through the layers as Darknet computes them:
    convolutional (filters= channels, ``(h + 2 * padding - size) // stride +
    1``), connected (output=, 1x1), batchnorm and pass-through layers
    (dropout, activation, softmax, cost, yolo, region, detection, ...:
    unchanged), maxpool (``(h + padding - size) // stride + 1``;
    maxpool_depth: out_channels), local_avgpool, avgpool (1x1), upsample
    (stride, negative to shrink), reorg / reorg3d, route (sum of the
    referenced layers' channels, negative indices relative to the route,
    divided by groups=), shortcut, scale_channels and sam (their input's
    shape), crop (channels only). A convolution or maxpool with
    antialiasing= has an unknown height and width. Sections with parameters
    in a layout this module does not read (local, deconvolutional, rnn, gru,
    lstm, crnn, conv_lstm, implicit) and unknown ones raise DarknetFileError
    naming the section.

    Every integer option read is checked, as Darknet would need it to be and
    more strictly than its atoi: an integer that fits a C int, sizes (filters,
    size, stride, output, groups, ...) positive, padding non-negative, flags
    (batch_normalize, pad, dontload, ...) 0 or 1; every window fits its
    padded input (an output size of at least 1); groups divide the channels
    they split; every output size, output count (channels * height * width)
    and weight count fits a C int; layer references (route layers=, shortcut
    from=, share_index=) name an earlier layer.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    list of Section
        ``[net]`` first, then the layers (``sections[i + 1].index == i``).

    Raises
    ------
    DarknetFileError (a ValueError)
        A malformed line, a first section other than [net], a missing
        required option (filters=, output=, layers=, from=), an option out of
        range or a geometry that gives no output (naming the option, its
        value, its line and what was expected), a reference to a layer that
        does not exist yet, a layer whose input channel count is unknown, ...
        naming the file and the section (its index, type and line).
    OSError
        The file cannot be read.
    """
    path = Path(path)
    # (type, options, line, option lines)
    raw: list[tuple[str, dict[str, str], int, dict[str, int]]] = []
    for number, text in enumerate(path.read_text(encoding="utf-8", errors="replace")
                                  .splitlines(), start=1):
        line = "".join(text.split())
        for marker in ("#", ";"):
            line = line.split(marker, 1)[0]
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                raise DarknetFileError(f"{path}: line {number}: {text.strip()!r} is not "
                                       "a [section] header")
            kind = line[1:-1].lower()
            raw.append((_ALIASES.get(kind, kind), {}, number, {}))
        elif "=" not in line:
            raise DarknetFileError(f"{path}: line {number}: {text.strip()!r}, expected "
                                   "key=value, a [section] or a comment")
        elif not raw:
            raise DarknetFileError(f"{path}: line {number}: option {text.strip()!r} "
                                   "before the first [section]")
        else:
            key, value = line.split("=", 1)
            if key not in raw[-1][1]:
                raw[-1][1][key] = value
                raw[-1][3][key] = number
    if not raw or raw[0][0] != "net":
        found = f"[{raw[0][0]}] at line {raw[0][2]}" if raw else "no section"
        raise DarknetFileError(f"{path}: the first section must be [net] or [network], "
                               f"found {found}")
    try:
        return _with_shapes(raw)
    except DarknetFileError as error:
        raise DarknetFileError(f"{path}: {error}") from None


def _with_shapes(raw):
    """Sections with their shapes from (type, options, line, option lines)."""
    kind, options, line, lines = raw[0]
    net = Section(kind, options, line, option_lines=lines)
    for key in ("batch", "subdivisions"):
        if key in options:
            net._positive(key)
    c, h, w = (net._nonnegative(key, 0) or None for key in ("channels", "height", "width"))
    inputs = net._nonnegative("inputs", 0)
    if c is None and h is None and w is None and inputs:
        c, h, w = inputs, 1, 1
    net = Section(kind, options, line, None, (None, None, None), (c, h, w), lines)
    _check_output(net, net.out_shape)
    sections = [net]
    for index, (kind, options, line, lines) in enumerate(raw[1:]):
        previous = sections[-1].out_shape
        probe = Section(kind, options, line, index, previous, option_lines=lines)
        out = _out_shape(probe, sections[1:])
        _check_output(probe, out)
        sections.append(Section(kind, options, line, index, previous, out, lines))
    return sections


def _check_output(s, shape):
    """Each known size of shape, and their product, fit a C int."""
    known = [n for n in shape if n is not None]
    for axis, n in zip(("channels", "height", "width"), shape):
        if n is not None and not 1 <= n <= _INT_MAX:
            raise s._error(f"its output {axis} would be {n}, expected 1 to {_INT_MAX} "
                           "(a C int)")
    if math.prod(known) > _INT_MAX:
        raise s._error(f"its output would have {' x '.join(map(str, shape))} (channels x "
                       f"height x width) = {math.prod(known)} values, expected at most "
                       f"{_INT_MAX} (Darknet counts them in a C int)")


def _check_count(s, what, count):
    if count > _INT_MAX:
        raise s._error(f"its {what} would have {count} values, expected at most "
                       f"{_INT_MAX} (Darknet counts them in a C int)")


def _window(s, axis, n, size, padding, stride, options):
    """Darknet's ``(n + padding - size) / stride + 1`` along one axis (padding:
    the total added), or None if n is unknown; an error if the window does
    not fit the padded input (an output of size <= 0)."""
    if n is None:
        return None
    out = (n + padding - size) // stride + 1
    if out > _INT_MAX:
        raise s._error(f"its output {axis} would be ({n} + {padding} - {size}) // "
                       f"{stride} + 1 = {out} ({options}), expected at most {_INT_MAX} "
                       "(a C int)")
    if out < 1:
        raise s._error(f"its output {axis} would be ({n} + {padding} - {size}) // "
                       f"{stride} + 1 = {out} ({options}), expected at least 1: the "
                       f"window of size {size} must fit the input's {axis} {n} plus "
                       f"{padding} of padding")
    return out


def _stride_text(s, key):
    """The option that gave the stride along one axis, for messages."""
    return s._at(key) if key in s.options else s._at("stride", 1)


def _out_shape(s, layers):
    """(c, h, w) that layer s outputs; layers are the ones before it."""
    c, h, w = s.in_shape
    kind = s.type
    if kind in _UNSUPPORTED:
        raise s._error("not supported (its parameters' layout is not one bnkernels reads)")
    s._flag("dontload")
    if kind == "convolutional":
        _need_channels(s)
        if s._nonnegative("numload", 0):
            raise s._error(f"{s._at('numload')}: numload= is not supported")
        for key in ("batch_normalize", "cbn", "dontloadscales", "flipped"):
            s._flag(key)
        filters, groups = s._positive("filters"), s._positive("groups", 1)
        if c % groups or filters % groups:
            raise s._error(f"{s._at('groups')} with {c} input channels and {filters} "
                           "filters, expected groups dividing both")
        size = s._positive("size", 1)
        if "share_index" in s.options:
            _check_share(s, layers, (filters, c // groups, size))
        # Darknet: stride_x and stride_y where given, else stride
        stride = s._positive("stride", 1)
        stride_x, stride_y = s._positive("stride_x", stride), s._positive("stride_y", stride)
        padding = s._nonnegative("padding", 0)
        if s._flag("pad"):
            padding = size // 2
            pad_text = f"{s._at('pad')}: padding = size // 2 = {padding}"
        else:
            pad_text = s._at("padding", 0)
        antialiasing = s._int("antialiasing", 0, 0, 2)
        _check_count(s, "weights", filters * (c // groups) * size * size)
        if antialiasing:
            return filters, None, None
        window = f"{s._at('size', 1)}, {pad_text}, "
        return (filters,
                _window(s, "height", h, size, 2 * padding, stride_y,
                        window + _stride_text(s, "stride_y")),
                _window(s, "width", w, size, 2 * padding, stride_x,
                        window + _stride_text(s, "stride_x")))
    if kind == "connected":
        if None in (c, h, w):
            raise s._error("needs its input's size (channels, height and width, or "
                           "inputs= in [net]), which the cfg does not determine")
        for key in ("batch_normalize", "cbn", "dontloadscales"):
            s._flag(key)
        output = s._positive("output")
        _check_count(s, "weights", output * c * h * w)
        return output, 1, 1
    if kind in ("maxpool", "local_avgpool"):
        _need_channels(s)
        stride = s._positive("stride", 1)
        stride_x, stride_y = s._positive("stride_x", stride), s._positive("stride_y", stride)
        size = s._positive("size", stride)
        padding = s._nonnegative("padding", size - 1)
        if kind == "maxpool":
            antialiasing = s._int("antialiasing", 0, 0, 2)
            out_channels = s._positive("out_channels", 1)
            if s._flag("maxpool_depth"):
                return out_channels, h, w
            if antialiasing:
                return c, None, None
        window = f"{s._at('size', size)}, {s._at('padding', size - 1)}, "
        return (c,
                _window(s, "height", h, size, padding, stride_y,
                        window + _stride_text(s, "stride_y")),
                _window(s, "width", w, size, padding, stride_x,
                        window + _stride_text(s, "stride_x")))
    if kind == "avgpool":
        return _need_channels(s), 1, 1
    if kind == "upsample":
        stride = s._int("stride", 2, -_INT_MAX, _INT_MAX)
        if stride == 0:
            raise s._error(f"{s._at('stride')}, expected a non-zero integer (negative: "
                           "shrink by -stride)")
        if stride > 0:
            return c, _spatial(h, lambda n: n * stride), _spatial(w, lambda n: n * stride)
        for axis, n in (("height", h), ("width", w)):
            if n is not None and n < -stride:
                raise s._error(f"{s._at('stride')} shrinks its input's {axis} {n} to "
                               f"{n // -stride}, expected -stride <= {n}")
        return c, _spatial(h, lambda n: n // -stride), _spatial(w, lambda n: n // -stride)
    if kind in ("reorg", "reorg3d"):
        _need_channels(s)
        if s._nonnegative("extra", 0) or s._flag("flatten"):
            raise s._error("extra= and flatten= are not supported")
        stride = s._positive("stride", 1)
        if s._flag("reverse"):
            if c % (stride * stride):
                raise s._error(f"{s._at('stride')} with reverse=1 and {c} input channels, "
                               f"expected channels divisible by stride * stride")
            return (c // (stride * stride), _spatial(h, lambda n: n * stride),
                    _spatial(w, lambda n: n * stride))
        for axis, n in (("height", h), ("width", w)):
            if n is not None and n < stride:
                raise s._error(f"{s._at('stride')} is larger than its input's {axis} {n}, "
                               f"expected stride <= {n}")
        return (c * stride * stride, _spatial(h, lambda n: n // stride),
                _spatial(w, lambda n: n // stride))
    if kind == "route":
        sources = [layers[i] for i in _references(s, "layers")]
        if any(source.out_channels is None for source in sources):
            raise s._error("a layer it routes from has an unknown channel count")
        first = sources[0].out_shape
        for source in sources[1:]:
            if None not in first[1:] + source.out_shape[1:] and \
                    source.out_shape[1:] != first[1:]:
                raise s._error(
                    f"layer {source.index} is {source.out_shape[1]}x"
                    f"{source.out_shape[2]}, expected {first[1]}x{first[2]} like layer "
                    f"{sources[0].index}")
        groups = s._positive("groups", 1)
        s._int("group_id", 0, 0, groups - 1,
               f"an integer from 0 to groups - 1 = {groups - 1}")
        for source in sources:
            if source.out_channels % groups:
                raise s._error(f"{s._at('groups')}: layer {source.index} has "
                               f"{source.out_channels} channels, expected groups dividing "
                               "the channels of every layer routed")
        return (sum(source.out_channels for source in sources) // groups,
                first[1], first[2])
    if kind in ("shortcut", "scale_channels", "sam"):
        _references(s, "from")
        return c, h, w
    if kind == "batchnorm":
        return _need_channels(s), h, w
    if kind == "crop":
        return c, None, None
    if kind in _PASS_THROUGH:
        return c, h, w
    raise s._error("unknown section type")


def _spatial(size, fn):
    return None if size is None else fn(size)


def _need_channels(s):
    if s.in_channels is None:
        raise s._error("its input's channel count is unknown (give channels= in [net])")
    return s.in_channels


def _check_share(s, layers, shape):
    """share_index= (alexeyab: use another convolution's weights) names an
    earlier convolution whose weights have the same (n, c/groups, size)."""
    (index,) = _references(s, "share_index", single=True)
    other = layers[index]
    if other.type != "convolutional" or \
            (other.out_channels, other.in_channels // other._int("groups", 1),
             other._int("size", 1)) != shape:
        raise s._error(f"{s._at('share_index')} refers to layer {index} [{other.type}], "
                       f"expected a convolutional layer with the same weights shape "
                       f"(filters, channels / groups, size) = {shape}")


def _references(s, key, single=False):
    """Absolute indices of the layers that option key of s refers to."""
    given = s._ints(key)
    if not given or (single and len(given) > 1):
        expected = "one layer index" if single else "a list of layer indices"
        raise s._error(f"{s._at(key)}, expected {expected}")
    indices = [i + s.index if i < 0 else i for i in given]
    for number, i in zip(given, indices):
        if s.index == 0:
            raise s._error(f"{s._at(key)} refers to layer {number}, but there is no layer "
                           "before it (it is layer 0)")
        if not 0 <= i < s.index:
            raise s._error(f"{s._at(key)} refers to layer {number} (index {i}), expected "
                           f"one of the layers before it (0 to {s.index - 1}, or -1 to "
                           f"-{s.index})")
    return indices


# ---------------------------------------------------------------------------
# .weights
# ---------------------------------------------------------------------------

_BN_FIELDS = ("scales", "rolling_mean", "rolling_variance")


@dataclass(eq=False)
class LayerWeights:
    """The parameters one layer holds in a .weights file, as float32 arrays.

    Attributes
    ----------
    index : int
        The layer's index in the cfg.
    type : str
        "convolutional", "connected", "batchnorm" or "shortcut".
    offset : int
        Byte offset in the file where the layer's data starts.
    biases, scales, rolling_mean, rolling_variance : ndarray, (n,), or None
        None where the file has none for the layer (no BN, or pjreddie's
        [batchnorm] without biases). biases is the BN's beta when the layer
        has a batch norm.
    weights : ndarray or None
        (n, c/groups, size, size) for convolutional, (n, inputs) for
        connected, (count,) for alexeyab's weighted shortcut.
    """
    index: int
    type: str
    offset: int = 0
    biases: np.ndarray | None = None
    scales: np.ndarray | None = None
    rolling_mean: np.ndarray | None = None
    rolling_variance: np.ndarray | None = None
    weights: np.ndarray | None = None

    @property
    def has_batchnorm(self) -> bool:
        return self.scales is not None


@dataclass(eq=False)
class DarknetWeights:
    """A .weights file: its header and the layers with parameters, in order.

    ``seen_bytes`` (4 or 8) and ``transposed`` (connected weights stored
    (inputs, n)) follow from the version and ``numerics`` (which Darknet
    wrote the file: "darknet" or "darknet-alexeyab"); ``cutoff`` is the one
    load_weights was given (None: the whole cfg).
    """
    major: int
    minor: int
    revision: int
    seen: int
    numerics: str = "darknet"
    layers: list = field(default_factory=list)
    cutoff: int | None = None

    @property
    def flavor(self) -> str:
        """Deprecated: the fork name ("pjreddie" or "alexeyab") of ``numerics``."""
        warnings.warn("DarknetWeights.flavor is deprecated; use .numerics",
                      DeprecationWarning, stacklevel=2)
        return _darknet._FORK[_darknet.check_numerics(self.numerics)]

    @property
    def seen_bytes(self) -> int:
        return _seen_bytes(self.major, self.minor,
                           _darknet._FORK[_darknet.check_numerics(self.numerics)])

    @property
    def transposed(self) -> bool:
        return self.major > 1000 or self.minor > 1000

    def layer(self, index: int) -> LayerWeights:
        """The LayerWeights of cfg layer index (KeyError if it has none)."""
        for entry in self.layers:
            if entry.index == index:
                return entry
        raise KeyError(f"layer {index} has no parameters in this file")


def _seen_bytes(major, minor, flavor):
    if major * 10 + minor >= 2 and (flavor == "alexeyab" or (major < 1000 and minor < 1000)):
        return 8
    return 4


def _layout(cfg, flavor, transposed, cutoff):
    """For each layer with parameters: (section, [(field, shape, stored_shape)])
    in file order; stored_shape is the transposed shape for arrays the file
    keeps transposed, else None."""
    plan = []
    for s in cfg[1:]:
        if cutoff is not None and s.index >= cutoff:
            break
        if s._flag("dontload"):
            continue
        fields: list[tuple[str, tuple[int, ...], tuple[int, ...] | None]] = []
        bn = s._stores_bn
        shape: tuple[int, ...]
        if s.type == "convolutional":
            if flavor == "alexeyab" and "share_index" in s.options:
                continue
            n, k = s.out_channels, s._positive("size", 1)
            shape = (n, s.in_channels // s._positive("groups", 1), k, k)
            stored = (shape[1] * k * k, n) if s._flag("flipped") else None
            fields = [("biases", (n,), None)]
            fields += [(name, (n,), None) for name in _BN_FIELDS if bn]
            fields += [("weights", shape, stored)]
        elif s.type == "connected":
            n, (c, h, w) = s.out_channels, s.in_shape
            shape = (n, c * h * w)
            fields = [("biases", (n,), None),
                      ("weights", shape, shape[::-1] if transposed else None)]
            fields += [(name, (n,), None) for name in _BN_FIELDS if bn]
        elif s.type == "batchnorm":
            names = (("biases",) if flavor == "alexeyab" else ()) + _BN_FIELDS
            fields = [(name, (s.in_channels,), None) for name in names]
        elif s.type == "shortcut" and flavor == "alexeyab":
            kind = s.options.get("weights_type", "none")
            inputs = len(s._ints("from")) + 1
            if kind in ("per_feature", "per_layer"):
                fields = [("weights", (inputs,), None)]
            elif kind == "per_channel":
                fields = [("weights", (inputs * _need_channels(s),), None)]
            elif kind != "none":
                raise s._error(f"{s._at('weights_type')}, expected none, per_feature, "
                               "per_layer or per_channel")
        if fields:
            plan.append((s, fields))
    return plan


def _cfg(cfg):
    """The sections of cfg (a path, or a list of Sections, whose shapes are
    worked out again from their options and must agree)."""
    if isinstance(cfg, (str, os.PathLike)):
        return read_cfg(cfg)
    if not (isinstance(cfg, list) and cfg and all(isinstance(s, Section) for s in cfg)):
        raise TypeError(f"cfg must be a path or the list read_cfg returns, "
                        f"got {type(cfg).__name__}")
    if cfg[0].type != "net":
        raise DarknetFileError(f"cfg[0] is [{cfg[0].type}], expected the [net] section "
                               "first, as read_cfg returns it")
    derived = _with_shapes([(s.type, s.options, s.line, s.option_lines) for s in cfg])
    for i, (given, shaped) in enumerate(zip(cfg, derived)):
        if (given.index, given.in_shape, given.out_shape) != \
                (shaped.index, shaped.in_shape, shaped.out_shape):
            raise DarknetFileError(
                f"cfg[{i}], {given.name}: index {given.index}, shapes {given.in_shape} -> "
                f"{given.out_shape}, expected index {shaped.index}, shapes "
                f"{shaped.in_shape} -> {shaped.out_shape} as read_cfg works them out")
    return derived


def _check_cutoff(cutoff):
    if cutoff is None:
        return None
    if isinstance(cutoff, bool) or not isinstance(cutoff, (int, np.integer)):
        raise TypeError(f"cutoff must be an int or None, got {type(cutoff).__name__}")
    if cutoff < 0:
        raise ValueError(f"cutoff must be >= 0 (read the layers with index < cutoff), "
                         f"got {cutoff}")
    return int(cutoff)


def load_weights(cfg: str | os.PathLike[str] | list[Section], path: str | os.PathLike[str], *,
                 numerics: str = "darknet", cutoff: int | None = None,
                 flavor: str | None = None) -> DarknetWeights:
    """Read a Darknet .weights file, laid out as cfg says.

    The whole file is checked against the layout (the header, then every
    array's byte offset and size, and the file's size) before any array is
    made: it either returns every layer or raises.

    Parameters
    ----------
    cfg : str, os.PathLike or list of Section
        The network's .cfg (a path, or what read_cfg returned).
    path : str or os.PathLike
        The .weights file.
    numerics : {"darknet", "darknet-alexeyab"}
        Which Darknet wrote it (pjreddie's or AlexeyAB's; flavor= "pjreddie" /
        "alexeyab" is the deprecated alias): the size of ``seen`` for versions with major
        or minor >= 1000, [batchnorm]'s biases and weighted [shortcut]s
        differ (see the module docstring).
    cutoff : int >= 0, optional
        Read only the layers with index < cutoff, like Darknet's
        load_weights_upto (for files such as yolov4.conv.137).

    Returns
    -------
    DarknetWeights
        The header, and one LayerWeights per layer with parameters, each
        array a new float32 array in the (n, ...) order.

    Raises
    ------
    DarknetFileError (a ValueError)
        The file is shorter than the header or the layers need (naming the
        first layer and array that do not fit, its byte offset, the bytes
        left and the size the cfg needs), longer than the layers need
        (trailing bytes), or its version is negative; the cfg is not valid
        (see read_cfg).
    OSError
        A file cannot be read.
    """
    flavor = _darknet._fork(numerics, flavor)
    cutoff = _check_cutoff(cutoff)
    cfg = _cfg(cfg)
    path = Path(path)
    data = path.read_bytes()
    size = len(data)
    if size < 12:
        raise DarknetFileError(f"{path}: {size} bytes, too short for the 12-byte "
                               "version header (int32 major, minor, revision at byte "
                               "offset 0)")
    major, minor, revision = struct.unpack_from("<3i", data, 0)
    _check_version(path, major, minor, revision)
    seen_bytes = _seen_bytes(major, minor, flavor)
    if size < 12 + seen_bytes:
        raise DarknetFileError(f"{path}: {size} bytes, too short for the header: "
                               f"version {major}.{minor}.{revision} has a {seen_bytes}-byte "
                               f"seen at byte offset 12")
    (seen,) = struct.unpack_from("<Q" if seen_bytes == 8 else "<I", data, 12)
    result = DarknetWeights(major, minor, revision, seen, _darknet._NUMERICS_OF[flavor],
                            cutoff=cutoff)
    # where every array lies, in Python ints (no wraparound), checked against
    # the file's size before any array is made
    placed, offset = [], 12 + seen_bytes
    for s, fields in _layout(cfg, flavor, result.transposed, cutoff):
        for name, shape, stored in fields:
            count = math.prod(shape)
            if not all(isinstance(n, int) and n >= 1 for n in shape):
                raise s._error(f"{name} would have shape {shape}, expected positive sizes")
            placed.append((s, name, shape, stored, offset, count))
            offset += 4 * count
    if offset != size:
        raise _size_error(path, size, offset, placed, result)
    layers: dict[int, LayerWeights] = {}
    for s, name, shape, stored, start, count in placed:
        entry = layers.setdefault(s.index, LayerWeights(s.index, s.type, start))
        values = np.frombuffer(data, "<f4", count, start).astype(np.float32)
        if stored is not None:
            values = values.reshape(stored).T
        setattr(entry, name, np.ascontiguousarray(values.reshape(shape)))
    result.layers = list(layers.values())
    return result


def _size_error(path, size, needed, placed, header):
    """The DarknetFileError for a file of size bytes where the layout needs
    needed: the first array that does not fit, or the trailing bytes."""
    other = 12 - header.seen_bytes   # the other size of seen: 4 or 8
    hint = ""
    if size == needed - header.seen_bytes + other:
        hint = (f"; a seen of {other} bytes would fit it exactly, but the header says "
                f"version {header.major}.{header.minor}.{header.revision}, whose seen has "
                f"{header.seen_bytes} bytes for numerics {header.numerics}")
    for s, name, _, _, start, count in placed:
        if start + 4 * count > size:
            return DarknetFileError(
                f"{path}: truncated in {s.name}, {name}: needs {4 * count} bytes "
                f"({count} float32) at byte offset {start}, the file has {size - start} "
                f"left (file size {size}); the cfg's layers need {needed} bytes{hint}")
    return DarknetFileError(
        f"{path}: {size - needed} trailing bytes: the cfg's layers end at byte "
        f"offset {needed}, the file has {size} bytes (another cfg, numerics or "
        f"cutoff?){hint}")


def _check_version(path, major, minor, revision):
    for name, value in (("major", major), ("minor", minor), ("revision", revision)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                or not 0 <= value <= _INT_MAX:
            raise DarknetFileError(
                f"{path}: unknown version {major}.{minor}.{revision} in the header at "
                f"byte offset 0: expected non-negative int32 major, minor, revision, "
                f"{name} is {value!r} (is this a .weights file?)")


def save_weights(path: str | os.PathLike[str], cfg: str | os.PathLike[str] | list[Section],
                 weights: DarknetWeights) -> None:
    """Write a .weights file in the layout load_weights reads.

    ``load_weights(cfg, path)`` of a file, then ``save_weights`` of the
    result, writes the same bytes.

    Parameters
    ----------
    path : str or os.PathLike
        Written (replaced if it exists).
    cfg : str, os.PathLike or list of Section
    weights : DarknetWeights
        Its header decides the size of seen and the transposed layouts, its
        numerics the layout of [batchnorm] and [shortcut]; its layers must be
        exactly the layers with parameters under cfg (and its ``cutoff``, if
        it was loaded with one), each array float32 of the expected shape.

    Raises
    ------
    DarknetFileError
        A layer missing, extra or of another type, an array of the wrong
        dtype or shape, a header value out of range; nothing is written then.
    """
    if not isinstance(weights, DarknetWeights):
        raise TypeError(f"weights must be a DarknetWeights (from load_weights), "
                        f"got {type(weights).__name__}")
    flavor = _darknet._FORK[_darknet.check_numerics(weights.numerics)]
    cutoff = _check_cutoff(weights.cutoff)
    cfg = _cfg(cfg)
    _check_version(path, weights.major, weights.minor, weights.revision)
    seen_bytes = weights.seen_bytes
    seen = weights.seen
    if isinstance(seen, bool) or not isinstance(seen, (int, np.integer)) or \
            not 0 <= seen < 2 ** (8 * seen_bytes):
        raise DarknetFileError(f"seen={seen!r}, expected 0 <= seen < 2**"
                               f"{8 * seen_bytes} for version {weights.major}."
                               f"{weights.minor} ({seen_bytes}-byte seen), an int")
    if not isinstance(weights.layers, list) or \
            not all(isinstance(entry, LayerWeights) for entry in weights.layers):
        raise TypeError("weights.layers must be a list of LayerWeights")
    plan = _layout(cfg, flavor, weights.transposed, cutoff)
    if [s.index for s, _ in plan] != [entry.index for entry in weights.layers]:
        raise DarknetFileError(
            f"weights has parameters for layers {[e.index for e in weights.layers]}, "
            f"expected {[s.index for s, _ in plan]} as the cfg says")
    chunks = [struct.pack("<3i", weights.major, weights.minor, weights.revision),
              struct.pack("<Q" if seen_bytes == 8 else "<I", weights.seen)]
    for (s, fields), entry in zip(plan, weights.layers):
        if entry.type != s.type:
            raise DarknetFileError(f"weights.layers entry for {s.name} has type "
                                   f"{entry.type!r}, expected {s.type!r}")
        expected = {name for name, _, _ in fields}
        for name in ("biases",) + _BN_FIELDS + ("weights",):
            value = getattr(entry, name)
            if name not in expected and value is not None:
                raise DarknetFileError(f"{s.name}: has {name}, which the file layout "
                                       f"({flavor}) does not hold; expected None")
        for name, shape, stored in fields:
            value = getattr(entry, name)
            if not isinstance(value, np.ndarray) or value.dtype != np.float32:
                given = (f"dtype {value.dtype}" if isinstance(value, np.ndarray)
                         else type(value).__name__)
                raise DarknetFileError(f"{s.name}: {name} must be a float32 array of "
                                       f"shape {shape}, got {given}")
            if value.shape != shape:
                raise DarknetFileError(f"{s.name}: {name} has shape {value.shape}, "
                                       f"expected {shape}")
            if stored is not None:
                value = value.reshape(stored[::-1]).T
            chunks.append(np.ascontiguousarray(value, "<f4").tobytes())
    Path(path).write_bytes(b"".join(chunks))


# ---------------------------------------------------------------------------
# python -m bnkernels darknet-check
# ---------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    from bnkernels.tools.cli import positive_float
    parser.add_argument("cfg", help="the network's .cfg file")
    parser.add_argument("weights", help="its .weights file")
    parser.add_argument("--numerics", choices=_darknet.NUMERICS, default=None,
                        help="which Darknet wrote the file and whose inference formula "
                             "to compare with: darknet (pjreddie's) or darknet-alexeyab "
                             "(default: darknet)")
    parser.add_argument("--flavor", choices=_darknet._FORKS, default=None,
                        help="deprecated: --flavor pjreddie is --numerics darknet, "
                             "--flavor alexeyab --numerics darknet-alexeyab")
    parser.add_argument("--eps", type=positive_float, default=1e-5,
                        help="the standard-convention epsilon for the conversion "
                             "(default: 1e-5)")


def _summary(values):
    if values.size == 0:
        return "  (no channels)"
    v = values.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        return f"{v.min():11.4g} {v.max():11.4g} {v.mean():11.4g}"


def check(cfg_path: str | os.PathLike[str], weights_path: str | os.PathLike[str], *,
          numerics: str = "darknet", eps: float = 1e-5, out: TextIO | None = None,
          flavor: str | None = None) -> int:
    """Print a summary of every batch norm in a Darknet network; return the
    exit code (0, or 1 with a one-line error on stderr for a bad file).
    numerics: "darknet" or "darknet-alexeyab" (flavor=: deprecated alias)."""
    numerics = _darknet.check_numerics(numerics, flavor)
    out = sys.stdout if out is None else out
    try:
        cfg = read_cfg(cfg_path)
        weights = load_weights(cfg, weights_path, numerics=numerics)
    except (OSError, ValueError) as error:
        print(f"python -m bnkernels darknet-check: error: {error}", file=sys.stderr)
        return 1
    print(f"{weights_path}: version {weights.major}.{weights.minor}.{weights.revision}, "
          f"seen {weights.seen} ({weights.seen_bytes}-byte), {len(weights.layers)} layers "
          f"with parameters, numerics {numerics}", file=out)
    print("rel diff, abs diff: what converting to the standard convention (eps inside "
          f"the square root, eps={eps:g}) changes in the output; see "
          "bnkernels.darknet.to_standard", file=out)
    totals = {"layers": 0, "channels": 0, "zero": 0, "negative": 0, "nonfinite": 0}
    worst = (0.0, None)
    for entry in weights.layers:
        if not entry.has_batchnorm:
            continue
        channels = entry.scales.shape[0]
        biases = entry.biases if entry.biases is not None else np.zeros_like(entry.scales)
        var = entry.rolling_variance
        zero, negative = int(np.sum(var == 0)), int(np.sum(var < 0))
        nonfinite = int(np.sum(~np.isfinite(var)))
        conversion = _darknet.to_standard(entry.scales, biases, entry.rolling_mean, var,
                                          numerics=numerics, eps=eps)
        print(f"\nlayer {entry.index} [{entry.type}], {channels} channels, byte offset "
              f"{entry.offset}", file=out)
        print(f"  {'':17} {'min':>11} {'max':>11} {'mean':>11}", file=out)
        for name, values in (("scales", entry.scales), ("biases", entry.biases),
                             ("rolling_mean", entry.rolling_mean),
                             ("rolling_variance", var)):
            row = _summary(values) if values is not None else "  (none in the file: 0)"
            print(f"  {name:17} {row}", file=out)
        print(f"  variances: {zero} zero, {negative} negative, {nonfinite} non-finite",
              file=out)
        print(f"  to standard: max rel diff {conversion.max_rel_diff:.3g}, max abs diff "
              f"{conversion.max_abs_diff:.3g}, {len(conversion.rescaled)} channels "
              f"rescaled, {len(conversion.nan_channels)} NaN channels", file=out)
        totals["layers"] += 1
        totals["channels"] += channels
        totals["zero"] += zero
        totals["negative"] += negative
        totals["nonfinite"] += nonfinite
        if conversion.max_rel_diff >= worst[0]:
            worst = (conversion.max_rel_diff, entry.index)
    where = f" (layer {worst[1]})" if worst[1] is not None else ""
    print(f"\n{totals['layers']} batch norms, {totals['channels']} channels; variances: "
          f"{totals['zero']} zero, {totals['negative']} negative, {totals['nonfinite']} "
          f"non-finite; worst rel diff to standard {worst[0]:.3g}{where}", file=out)
    return 0
