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
from dataclasses import dataclass, field
import os
from pathlib import Path
import struct
import sys

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
    """
    type: str
    options: dict
    line: int
    index: int | None = None
    in_shape: tuple = (None, None, None)
    out_shape: tuple = (None, None, None)

    @property
    def in_channels(self):
        return self.in_shape[0]

    @property
    def out_channels(self):
        return self.out_shape[0]

    @property
    def bn_channels(self):
        """Number of batch-norm channels the layer has (0 if none)."""
        if self.type == "batchnorm":
            return self.in_channels
        if self.type in ("convolutional", "connected") and self._stores_bn:
            return self.out_channels
        return 0

    @property
    def _stores_bn(self):
        """A convolutional or connected layer whose file entry has BN arrays."""
        return bool(self._int("batch_normalize", 0) or self._int("cbn", 0)) and \
            not self._int("dontloadscales", 0)

    @property
    def name(self):
        where = f"layer {self.index}" if self.index is not None else "section"
        return f"{where} [{self.type}] (line {self.line})"

    def _int(self, key, default=None):
        """Integer option key; default if absent (None: required)."""
        value = self.options.get(key)
        if value is None:
            if default is None:
                raise DarknetFileError(f"{self.name}: needs {key}=, which is missing")
            return default
        try:
            return int(value)
        except ValueError:
            raise DarknetFileError(f"{self.name}: {key}={value!r}, expected an integer") \
                from None

    def _positive(self, key, default=None):
        """Integer option key that must be >= 1."""
        value = self._int(key, default)
        if value < 1:
            raise DarknetFileError(f"{self.name}: {key}={value}, expected a positive integer")
        return value

    def _ints(self, key):
        """Comma-separated integer list option key (required)."""
        value = self.options.get(key)
        if value is None:
            raise DarknetFileError(f"{self.name}: needs {key}=, which is missing")
        try:
            return [int(item) for item in value.split(",") if item != ""]
        except ValueError:
            raise DarknetFileError(f"{self.name}: {key}={value!r}, expected a "
                                   "comma-separated list of integers") from None


def read_cfg(path):
    """Parse a Darknet .cfg file and work out each layer's shapes.

    Lines are read as Darknet's ``read_cfg`` reads them: all whitespace is
    removed; ``[type]`` starts a section; empty lines and lines starting with
    ``#`` or ``;`` are comments; everything else is ``key=value``. Unlike
    Darknet, a ``#`` or ``;`` later in a line also starts a comment.

    Channels (and, where known, height and width) are tracked from ``[net]``
    (channels=, height=, width=; or inputs= alone, taken as (inputs, 1, 1))
    through the layers as Darknet computes them: convolutional (filters=
    channels, ``(h + 2 * padding - size) // stride + 1``), connected
    (output=, 1x1), batchnorm and pass-through layers (dropout, activation,
    softmax, cost, yolo, region, detection, ...: unchanged), maxpool
    (``(h + padding - size) // stride + 1``; maxpool_depth: out_channels),
    local_avgpool, avgpool (1x1), upsample (stride, negative to shrink),
    reorg / reorg3d, route (sum of the referenced layers' channels, negative
    indices relative to the route, divided by groups=), shortcut,
    scale_channels and sam (their input's shape), crop (channels only).
    Sections with parameters in a layout this module does not read (local,
    deconvolutional, rnn, gru, lstm, crnn, conv_lstm, implicit) and unknown
    ones raise DarknetFileError naming the section.

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
        required option (filters=, output=, layers=, from=), a route or
        shortcut to a layer that does not exist yet, a layer whose input
        channel count is unknown, ... naming the file, section and line.
    """
    path = Path(path)
    raw = []  # (type, options, line)
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
            raw.append((_ALIASES.get(kind, kind), {}, number))
        elif "=" not in line:
            raise DarknetFileError(f"{path}: line {number}: {text.strip()!r}, expected "
                                   "key=value, a [section] or a comment")
        elif not raw:
            raise DarknetFileError(f"{path}: line {number}: option {text.strip()!r} "
                                   "before the first [section]")
        else:
            key, value = line.split("=", 1)
            raw[-1][1].setdefault(key, value)
    if not raw or raw[0][0] != "net":
        found = f"[{raw[0][0]}] at line {raw[0][2]}" if raw else "no section"
        raise DarknetFileError(f"{path}: the first section must be [net] or [network], "
                               f"found {found}")
    try:
        return _with_shapes(raw)
    except DarknetFileError as error:
        raise DarknetFileError(f"{path}: {error}") from None


def _with_shapes(raw):
    kind, options, line = raw[0]
    net = Section(kind, options, line)
    c, h, w = (net._int(key, 0) or None for key in ("channels", "height", "width"))
    if c is None and h is None and w is None and net._int("inputs", 0):
        c, h, w = net._int("inputs"), 1, 1
    net = Section(kind, options, line, None, (None, None, None), (c, h, w))
    sections = [net]
    for index, (kind, options, line) in enumerate(raw[1:]):
        previous = sections[-1].out_shape
        probe = Section(kind, options, line, index, previous)
        out = _out_shape(probe, sections[1:])
        sections.append(Section(kind, options, line, index, previous, out))
    return sections


def _spatial(size, fn):
    return None if size is None else fn(size)


def _out_shape(s, layers):
    """(c, h, w) that layer s outputs; layers are the ones before it."""
    c, h, w = s.in_shape
    kind = s.type
    if kind in _UNSUPPORTED:
        raise DarknetFileError(f"{s.name}: not supported (its parameters' layout is "
                               "not one bnkernels reads)")
    if kind == "convolutional":
        _need_channels(s)
        if s._int("numload", 0):
            raise DarknetFileError(f"{s.name}: numload= is not supported")
        filters, groups = s._positive("filters"), s._positive("groups", 1)
        if c % groups:
            raise DarknetFileError(f"{s.name}: groups={groups} with {c} input channels, "
                                   "expected groups dividing the input channels")
        size = s._positive("size", 1)
        # Darknet: stride_x and stride_y where given and >= 1, else stride
        stride_x, stride_y = s._int("stride_x", -1), s._int("stride_y", -1)
        if stride_x < 1 or stride_y < 1:
            stride = s._positive("stride", 1)
            stride_x, stride_y = max(stride_x, 0) or stride, max(stride_y, 0) or stride
        padding = size // 2 if s._int("pad", 0) else s._int("padding", 0)
        if s._int("antialiasing", 0):
            return filters, None, None
        return (filters, _spatial(h, lambda n: (n + 2 * padding - size) // stride_y + 1),
                _spatial(w, lambda n: (n + 2 * padding - size) // stride_x + 1))
    if kind == "connected":
        if None in (c, h, w):
            raise DarknetFileError(f"{s.name}: needs its input's size (channels, height "
                                   "and width, or inputs= in [net]), which the cfg does "
                                   "not determine")
        return s._positive("output"), 1, 1
    if kind in ("maxpool", "local_avgpool"):
        _need_channels(s)
        stride = s._positive("stride", 1)
        stride_x, stride_y = s._positive("stride_x", stride), s._positive("stride_y", stride)
        size = s._positive("size", stride)
        padding = s._int("padding", size - 1)
        if kind == "maxpool" and s._int("maxpool_depth", 0):
            return s._positive("out_channels", 1), h, w
        return (c, _spatial(h, lambda n: (n + padding - size) // stride_y + 1),
                _spatial(w, lambda n: (n + padding - size) // stride_x + 1))
    if kind == "avgpool":
        return _need_channels(s), 1, 1
    if kind == "upsample":
        stride = s._int("stride", 2)
        if stride == 0:
            raise DarknetFileError(f"{s.name}: stride=0, expected a non-zero integer")
        if stride < 0:
            return c, _spatial(h, lambda n: n // -stride), _spatial(w, lambda n: n // -stride)
        return c, _spatial(h, lambda n: n * stride), _spatial(w, lambda n: n * stride)
    if kind in ("reorg", "reorg3d"):
        _need_channels(s)
        if s._int("extra", 0) or s._int("flatten", 0):
            raise DarknetFileError(f"{s.name}: extra= and flatten= are not supported")
        stride = s._positive("stride", 1)
        if s._int("reverse", 0):
            return (c // (stride * stride), _spatial(h, lambda n: n * stride),
                    _spatial(w, lambda n: n * stride))
        return (c * stride * stride, _spatial(h, lambda n: n // stride),
                _spatial(w, lambda n: n // stride))
    if kind == "route":
        sources = [layers[i] for i in _references(s, "layers")]
        if any(source.out_channels is None for source in sources):
            raise DarknetFileError(f"{s.name}: a layer it routes from has an unknown "
                                   "channel count")
        first = sources[0].out_shape
        for source in sources[1:]:
            if None not in first[1:] + source.out_shape[1:] and \
                    source.out_shape[1:] != first[1:]:
                raise DarknetFileError(
                    f"{s.name}: layer {source.index} is {source.out_shape[1]}x"
                    f"{source.out_shape[2]}, expected {first[1]}x{first[2]} like layer "
                    f"{sources[0].index}")
        return (sum(source.out_channels for source in sources) // s._int("groups", 1),
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
    raise DarknetFileError(f"{s.name}: unknown section type")


def _need_channels(s):
    if s.in_channels is None:
        raise DarknetFileError(f"{s.name}: its input's channel count is unknown (give "
                               "channels= in [net])")
    return s.in_channels


def _references(s, key):
    """Absolute indices of the layers that option key of s refers to."""
    indices = [i + s.index if i < 0 else i for i in s._ints(key)]
    if not indices:
        raise DarknetFileError(f"{s.name}: {key}= is empty")
    for given, i in zip(s._ints(key), indices):
        if not 0 <= i < s.index:
            raise DarknetFileError(f"{s.name}: {key}= refers to layer {given} (index {i}), "
                                   f"expected one of the layers before it (0 to "
                                   f"{s.index - 1}, or -1 to -{s.index})")
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
    def has_batchnorm(self):
        return self.scales is not None


@dataclass(eq=False)
class DarknetWeights:
    """A .weights file: its header and the layers with parameters, in order.

    ``seen_bytes`` (4 or 8) and ``transposed`` (connected weights stored
    (inputs, n)) follow from the version and the flavor; ``cutoff`` is the one
    load_weights was given (None: the whole cfg).
    """
    major: int
    minor: int
    revision: int
    seen: int
    flavor: str = "pjreddie"
    layers: list = field(default_factory=list)
    cutoff: int | None = None

    @property
    def seen_bytes(self):
        return _seen_bytes(self.major, self.minor, self.flavor)

    @property
    def transposed(self):
        return self.major > 1000 or self.minor > 1000

    def layer(self, index):
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
        if s._int("dontload", 0):
            continue
        fields = []
        bn = s._stores_bn
        if s.type == "convolutional":
            if flavor == "alexeyab" and "share_index" in s.options:
                continue
            n, k = s.out_channels, s._int("size", 1)
            shape = (n, s.in_channels // s._int("groups", 1), k, k)
            stored = (shape[1] * k * k, n) if s._int("flipped", 0) else None
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
                fields = [("weights", (inputs * s.in_channels,), None)]
            elif kind != "none":
                raise DarknetFileError(f"{s.name}: weights_type={kind!r}, expected none, "
                                       "per_feature, per_layer or per_channel")
        if fields:
            plan.append((s, fields))
    return plan


def _cfg(cfg):
    if isinstance(cfg, (str, os.PathLike)):
        return read_cfg(cfg)
    if isinstance(cfg, list) and cfg and all(isinstance(s, Section) for s in cfg):
        return cfg
    raise TypeError(f"cfg must be a path or the list read_cfg returns, "
                    f"got {type(cfg).__name__}")


def load_weights(cfg, path, *, flavor="pjreddie", cutoff=None):
    """Read a Darknet .weights file, laid out as cfg says.

    Parameters
    ----------
    cfg : str, os.PathLike or list of Section
        The network's .cfg (a path, or what read_cfg returned).
    path : str or os.PathLike
        The .weights file.
    flavor : {"pjreddie", "alexeyab"}
        Which Darknet wrote it: the size of ``seen`` for versions with major
        or minor >= 1000, [batchnorm]'s biases and weighted [shortcut]s
        differ (see the module docstring).
    cutoff : int, optional
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
        The file is shorter than the header or a layer needs (naming the
        layer's index and type, the array, its byte offset and the bytes
        left), longer than the layers need (trailing bytes), or its version
        is negative.
    """
    flavor = _darknet.check_flavor(flavor)
    cfg = _cfg(cfg)
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 12:
        raise DarknetFileError(f"{path}: {len(data)} bytes, too short for the 12-byte "
                               "version header (int32 major, minor, revision)")
    major, minor, revision = struct.unpack_from("<3i", data, 0)
    _check_version(path, major, minor, revision)
    seen_bytes = _seen_bytes(major, minor, flavor)
    if len(data) < 12 + seen_bytes:
        raise DarknetFileError(f"{path}: {len(data)} bytes, too short for the header: "
                               f"version {major}.{minor}.{revision} has a {seen_bytes}-byte "
                               f"seen at byte offset 12")
    (seen,) = struct.unpack_from("<Q" if seen_bytes == 8 else "<I", data, 12)
    result = DarknetWeights(major, minor, revision, seen, flavor, cutoff=cutoff)
    offset = 12 + seen_bytes
    for s, fields in _layout(cfg, flavor, result.transposed, cutoff):
        entry = LayerWeights(s.index, s.type, offset)
        for name, shape, stored in fields:
            count = int(np.prod(shape))
            if offset + 4 * count > len(data):
                raise DarknetFileError(
                    f"{path}: truncated in {s.name}, {name}: needs {4 * count} bytes "
                    f"({count} float32) at byte offset {offset}, the file has "
                    f"{len(data) - offset} left (file size {len(data)})")
            values = np.frombuffer(data, "<f4", count, offset).astype(np.float32)
            if stored is not None:
                values = values.reshape(stored).T
            setattr(entry, name, np.ascontiguousarray(values.reshape(shape)))
            offset += 4 * count
        result.layers.append(entry)
    if offset != len(data):
        raise DarknetFileError(
            f"{path}: {len(data) - offset} trailing bytes: the cfg's layers end at byte "
            f"offset {offset}, the file has {len(data)} bytes (another cfg, flavor or "
            "cutoff?)")
    return result


def _check_version(path, major, minor, revision):
    if min(major, minor, revision) < 0:
        raise DarknetFileError(f"{path}: unknown version {major}.{minor}.{revision} in the "
                               "header: expected non-negative int32 major, minor, revision "
                               "(is this a .weights file?)")


def save_weights(path, cfg, weights):
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
        flavor the layout of [batchnorm] and [shortcut]; its layers must be
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
    flavor = _darknet.check_flavor(weights.flavor)
    cfg = _cfg(cfg)
    _check_version(path, weights.major, weights.minor, weights.revision)
    seen_bytes = weights.seen_bytes
    if not 0 <= weights.seen < 2 ** (8 * seen_bytes):
        raise DarknetFileError(f"seen={weights.seen}, expected 0 <= seen < 2**"
                               f"{8 * seen_bytes} for version {weights.major}."
                               f"{weights.minor} ({seen_bytes}-byte seen)")
    plan = _layout(cfg, flavor, weights.transposed, weights.cutoff)
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

def add_arguments(parser):
    parser.add_argument("cfg", help="the network's .cfg file")
    parser.add_argument("weights", help="its .weights file")
    parser.add_argument("--flavor", choices=_darknet.FLAVORS, default="pjreddie",
                        help="which Darknet wrote the file and whose inference formula "
                             "to compare with (default: pjreddie)")
    parser.add_argument("--eps", type=float, default=1e-5,
                        help="the standard-convention epsilon for the conversion "
                             "(default: 1e-5)")


def _summary(values):
    if values.size == 0:
        return "  (no channels)"
    v = values.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        return f"{v.min():11.4g} {v.max():11.4g} {v.mean():11.4g}"


def check(cfg_path, weights_path, *, flavor="pjreddie", eps=1e-5, out=None):
    """Print a summary of every batch norm in a Darknet network; return the
    exit code (0, or 1 with a one-line error on stderr for a bad file)."""
    out = sys.stdout if out is None else out
    try:
        cfg = read_cfg(cfg_path)
        weights = load_weights(cfg, weights_path, flavor=flavor)
    except (OSError, ValueError) as error:
        print(f"darknet-check: error: {error}", file=sys.stderr)
        return 1
    print(f"{weights_path}: version {weights.major}.{weights.minor}.{weights.revision}, "
          f"seen {weights.seen} ({weights.seen_bytes}-byte), {len(weights.layers)} layers "
          f"with parameters, flavor {flavor}", file=out)
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
                                          flavor=flavor, eps=eps)
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
