"""bnkernels.io.darknet: Darknet .cfg parsing, .weights reading and
writing, and ``python -m bnkernels darknet-check``.

Oracle: files written here, independently of the module, with struct (the
header) and ndarray.tofile (the float32 arrays), in the layout of Darknet's
load_weights_upto (src/parser.c of both forks), and the values written.
Round trips are compared byte for byte, on arrays of random bit patterns
(NaN payloads included).
"""
import struct
import os
import subprocess
import sys

import numpy as np
import pytest

from bnkernels import darknet
from bnkernels.io import darknet as darknet_files
from bnkernels.__main__ import main
from bnkernels.io.darknet import DarknetFileError, load_weights, read_cfg, save_weights
from forks import numerics_of

NET = """[net]
batch=1
width=16
height=16
channels=3
"""

# layer 0 conv+BN 3->8 (16x16), 1 maxpool (8x8), 2 conv 8->4 no BN, 3 route
# -1,-2 (12 ch), 4 batchnorm (12), 5 connected+BN 12*8*8 -> 5
SMALL = NET + """
[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters=4
size=1
activation=linear

[route]
layers=-1,-2

[batchnorm]

[connected]
output=5
batch_normalize=1
activation=linear
"""


def write(tmp_path, text, name="net.cfg"):
    path = tmp_path / name
    path.write_text(text)
    return path


class Weights:
    """A .weights file built by hand: header, then arrays in the order put."""

    def __init__(self, major=0, minor=2, revision=0, seen=123456, seen_format="<Q"):
        self.header = struct.pack("<3i", major, minor, revision) + struct.pack(seen_format,
                                                                              seen)
        self.arrays = []  # (label, float32 array as stored)

    def put(self, label, array):
        self.arrays.append((label, np.asarray(array, np.float32)))

    def offsets(self):
        """label -> byte offset of that array."""
        offset, result = len(self.header), {}
        for label, array in self.arrays:
            result[label] = offset
            offset += array.nbytes
        return result

    def save(self, path):
        with open(path, "wb") as f:
            f.write(self.header)
            for _, array in self.arrays:
                array.astype("<f4").tofile(f)
        return path


def small_weights(rng, flavor="pjreddie", **header):
    """Weights for SMALL, with the values by label."""
    w = Weights(**header)
    normal = lambda *shape: rng.normal(size=shape).astype(np.float32)  # noqa: E731
    w.put("0.biases", normal(8))
    w.put("0.scales", normal(8))
    w.put("0.rolling_mean", normal(8))
    w.put("0.rolling_variance", np.abs(normal(8)))
    w.put("0.weights", normal(8, 3, 3, 3))
    w.put("2.biases", normal(4))
    w.put("2.weights", normal(4, 8, 1, 1))
    if flavor == "alexeyab":
        w.put("4.biases", normal(12))
    w.put("4.scales", normal(12))
    w.put("4.rolling_mean", normal(12))
    w.put("4.rolling_variance", np.abs(normal(12)))
    w.put("5.biases", normal(5))
    w.put("5.weights", normal(5, 12 * 8 * 8))
    w.put("5.scales", normal(5))
    w.put("5.rolling_mean", normal(5))
    w.put("5.rolling_variance", np.abs(normal(5)))
    return w


# --- .cfg ---------------------------------------------------------------------

def test_read_cfg_reads_sections_options_and_skips_comments(tmp_path):
    text = ("# a comment\r\n; another\r\n[net]\r\n  width = 32 \r\nheight=32\r\n"
            "channels=3\r\n\r\n[conv]\r\nfilters = 16   # inline comment\r\n"
            "size=3\r\nsize=5\r\n\tactivation\t=\tleaky ; why not\r\n"
            "[yolo]\r\nmask = 0, 1,2\r\nanchors = 10,14,  23,27\r\n")
    cfg = read_cfg(write(tmp_path, text))
    assert [s.type for s in cfg] == ["net", "convolutional", "yolo"]
    assert [s.index for s in cfg] == [None, 0, 1]
    assert [s.line for s in cfg] == [3, 8, 13]
    assert cfg[0].options == {"width": "32", "height": "32", "channels": "3"}
    # whitespace removed as Darknet's strip() does; a repeated key: the first counts
    assert cfg[1].options == {"filters": "16", "size": "3", "activation": "leaky"}
    assert cfg[2].options == {"mask": "0,1,2", "anchors": "10,14,23,27"}


def test_channels_and_sizes_follow_the_layers(tmp_path):
    text = NET + """
[convolutional]
filters=16
size=3
stride=2
pad=1
[maxpool]
size=2
stride=2
[convolutional]
filters=32
size=3
padding=0
[upsample]
stride=2
[route]
layers=-1,-3
[shortcut]
from=-2
[route]
layers=1
[convolutional]
filters=18
size=1
[yolo]
[route]
layers=-3,4
groups=2
[reorg]
stride=2
[avgpool]
[connected]
output=10
"""
    shapes = [(s.type, s.in_shape, s.out_shape) for s in read_cfg(write(tmp_path, text))[1:]]
    assert shapes == [
        ("convolutional", (3, 16, 16), (16, 8, 8)),   # (16 + 2 - 3) // 2 + 1
        ("maxpool", (16, 8, 8), (16, 4, 4)),          # (8 + 1 - 2) // 2 + 1
        ("convolutional", (16, 4, 4), (32, 2, 2)),    # (4 - 3) + 1
        ("upsample", (32, 2, 2), (32, 4, 4)),
        ("route", (32, 4, 4), (48, 4, 4)),            # layers 3 and 1: 32 + 16
        ("shortcut", (48, 4, 4), (48, 4, 4)),
        ("route", (48, 4, 4), (16, 4, 4)),            # layer 1
        ("convolutional", (16, 4, 4), (18, 4, 4)),
        ("yolo", (18, 4, 4), (18, 4, 4)),
        ("route", (18, 4, 4), (32, 4, 4)),            # (16 + 48) / groups=2
        ("reorg", (32, 4, 4), (128, 2, 2)),
        ("avgpool", (128, 2, 2), (128, 1, 1)),
        ("connected", (128, 1, 1), (10, 1, 1)),
    ]


def test_bn_channels_of_each_kind_of_layer(tmp_path):
    cfg = read_cfg(write(tmp_path, SMALL))
    assert [s.bn_channels for s in cfg[1:]] == [8, 0, 0, 0, 12, 5]


@pytest.mark.parametrize("text,message", [
    (NET + "[convolutional]\nsize=3\n",
     r"layer 0 \[convolutional\] \(line 6\): needs filters=, which is missing"),
    (NET + "[convolutional]\nfilters=8\n[route]\nlayers=-1,5\n",
     r"layer 1 \[route\] \(line 8\): layers=-1,5 \(line 9\) refers to layer 5 \(index 5\), "
     r"expected one "
     r"of the layers before it \(0 to 0, or -1 to -1\)"),
    (NET + "[shortcut]\nfrom=-1\n",
     r"layer 0 \[shortcut\] \(line 6\): from=-1 \(line 7\) refers to layer -1, but there "
     r"is no layer before it \(it is layer 0\)"),
    ("[convolutional]\nfilters=8\n",
     r"the first section must be \[net\] or \[network\], found \[convolutional\] at line 1"),
    (NET + "[convolutional]\nfilters\n",
     r"line 7: 'filters', expected key=value, a \[section\] or a comment"),
    ("width=3\n[net]\n", r"line 1: option 'width=3' before the first \[section\]"),
    (NET + "[convolutional\n", r"line 6: '\[convolutional' is not a \[section\] header"),
    (NET + "[teleport]\n", r"layer 0 \[teleport\] \(line 6\): unknown section type"),
    (NET + "[lstm]\noutput=4\n", r"layer 0 \[lstm\] \(line 6\): not supported"),
    (NET + "[convolutional]\nfilters=eight\n",
     r"layer 0 \[convolutional\] \(line 6\): filters=eight \(line 7\), expected a positive "
     r"integer \(1 to 2147483647, a C int\)"),
    (NET + "[convolutional]\nfilters=8\ngroups=2\n",
     r"groups=2 \(line 8\) with 3 input channels and 8 filters, expected groups dividing "
     r"both"),
    (NET + "[convolutional]\nfilters=0\n",
     r"layer 0 \[convolutional\] \(line 6\): filters=0 \(line 7\), expected a positive integer"),
    (NET + "[maxpool]\nstride=0\n",
     r"layer 0 \[maxpool\] \(line 6\): stride=0 \(line 7\), expected a positive integer"),
    ("[net]\nbatch=1\n[convolutional]\nfilters=8\n",
     r"layer 0 \[convolutional\] \(line 3\): its input's channel count is unknown "
     r"\(give channels= in \[net\]\)"),
    ("[net]\nchannels=3\n[connected]\noutput=4\n",
     r"layer 0 \[connected\] \(line 3\): needs its input's size"),
    (NET + "[convolutional]\nfilters=4\n[maxpool]\nsize=2\nstride=2\n[route]\nlayers=-1,-2\n",
     r"layer 2 \[route\] \(line 11\): layer 0 is 16x16, expected 8x8 like layer 1"),
])
def test_read_cfg_errors_name_the_section_and_line(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(DarknetFileError, match=message) as error:
        read_cfg(path)
    assert str(path) in str(error.value)
    assert isinstance(error.value, ValueError)


def test_connected_takes_its_size_from_net_inputs(tmp_path):
    cfg = read_cfg(write(tmp_path, "[net]\ninputs=20\n[connected]\noutput=4\n"
                                   "batch_normalize=1\n"))
    assert cfg[1].in_shape == (20, 1, 1) and cfg[1].bn_channels == 4


# --- .weights: reading --------------------------------------------------------

@pytest.mark.parametrize("flavor", ["pjreddie", "alexeyab"])
def test_load_weights_reads_every_array_in_darknets_order(tmp_path, flavor):
    rng = np.random.default_rng(1)
    written = small_weights(rng, flavor)
    path = written.save(tmp_path / "net.weights")
    weights = load_weights(write(tmp_path, SMALL), path, numerics=numerics_of(flavor))
    assert (weights.major, weights.minor, weights.revision, weights.seen) == (0, 2, 0, 123456)
    assert weights.seen_bytes == 8 and weights.numerics == numerics_of(flavor)
    assert [(e.index, e.type) for e in weights.layers] == [
        (0, "convolutional"), (2, "convolutional"), (4, "batchnorm"), (5, "connected")]
    offsets = written.offsets()
    for label, expected in written.arrays:
        index, name = label.split(".")
        entry = weights.layer(int(index))
        value = getattr(entry, name)
        assert value.dtype == np.float32 and value.shape == expected.shape
        assert value.tobytes() == expected.tobytes(), label
    assert weights.layer(0).offset == offsets["0.biases"]
    assert weights.layer(5).offset == offsets["5.biases"]
    assert weights.layer(2).scales is None and not weights.layer(2).has_batchnorm
    assert (weights.layer(4).biases is None) == (flavor == "pjreddie")
    with pytest.raises(KeyError):
        weights.layer(1)


@pytest.mark.parametrize("version,flavor,seen_format", [
    ((0, 1, 0), "pjreddie", "<I"),      # before 0.2: a 32-bit seen
    ((0, 2, 0), "pjreddie", "<Q"),
    ((0, 2, 5), "alexeyab", "<Q"),
    ((1000, 2, 0), "pjreddie", "<I"),   # pjreddie: major < 1000 for 64 bits
    ((1000, 2, 0), "alexeyab", "<Q"),   # AlexeyAB: major * 10 + minor >= 2 only
])
def test_seen_is_32_or_64_bits_by_version_and_fork(tmp_path, version, flavor, seen_format):
    cfg = write(tmp_path, NET + "[convolutional]\nfilters=2\nsize=1\n")
    w = Weights(*version, seen=2**31 + 5, seen_format=seen_format)
    w.put("0.biases", [1, 2])
    w.put("0.weights", np.arange(6))
    weights = load_weights(cfg, w.save(tmp_path / "w"), numerics=numerics_of(flavor))
    assert weights.seen == 2**31 + 5
    assert weights.seen_bytes == struct.calcsize(seen_format)
    assert weights.layer(0).weights.ravel().tolist() == [0, 1, 2, 3, 4, 5]


def test_transposed_layouts_come_back_in_n_first_order(tmp_path):
    """flipped=1 stores a convolution's weights (c*size*size, n); a major
    version above 1000 stores connected weights (inputs, n)."""
    cfg = write(tmp_path, "[net]\nchannels=2\nheight=1\nwidth=1\n[convolutional]\nfilters=3\n"
                          "size=1\nflipped=1\n[connected]\noutput=4\n")
    conv = np.arange(6, dtype=np.float32).reshape(3, 2)          # (n, c)
    fc = np.arange(12, dtype=np.float32).reshape(4, 3) + 100     # (n, inputs)
    w = Weights(1001, 0, 0, seen_format="<I")
    w.put("0.biases", np.zeros(3))
    w.put("0.weights", conv.T)
    w.put("1.biases", np.zeros(4))
    w.put("1.weights", fc.T)
    path = w.save(tmp_path / "w")
    weights = load_weights(cfg, path)
    assert weights.transposed
    np.testing.assert_array_equal(weights.layer(0).weights.reshape(3, 2), conv)
    np.testing.assert_array_equal(weights.layer(1).weights, fc)
    save_weights(tmp_path / "again", cfg, weights)
    assert (tmp_path / "again").read_bytes() == path.read_bytes()


def test_options_that_change_the_layout(tmp_path):
    """dontload=1: not in the file; dontloadscales=1: no BN arrays; AlexeyAB's
    share_index: no weights; AlexeyAB's weighted shortcut: its weights."""
    text = NET + """[convolutional]
filters=2
size=1
batch_normalize=1
dontloadscales=1
[convolutional]
filters=3
size=1
dontload=1
[convolutional]
filters=2
size=1
share_index=0
[shortcut]
from=-3
weights_type=per_channel
[shortcut]
from=-1,-2
weights_type=per_feature
"""
    cfg = write(tmp_path, text)
    w = Weights()
    w.put("0.biases", [1, 2])
    w.put("0.weights", np.ones(6))
    w.put("3.weights", np.arange(2 * 2))     # (from + 1) * channels
    w.put("4.weights", np.arange(3))         # from + 1
    weights = load_weights(cfg, w.save(tmp_path / "w"), numerics="darknet-alexeyab")
    assert [e.index for e in weights.layers] == [0, 3, 4]
    assert weights.layer(0).scales is None
    assert weights.layer(3).weights.tolist() == [0, 1, 2, 3]
    # pjreddie has neither share_index nor shortcut weights
    w = Weights()
    w.put("0.biases", [1, 2])
    w.put("0.weights", np.ones(6))
    w.put("2.biases", [3, 4])
    w.put("2.weights", np.ones(6))  # its input: layer 1's 3 channels
    weights = load_weights(cfg, w.save(tmp_path / "w"), numerics="darknet")
    assert [e.index for e in weights.layers] == [0, 2]


def test_cutoff_reads_the_first_layers_only(tmp_path):
    rng = np.random.default_rng(2)
    written = small_weights(rng)
    written.arrays = written.arrays[:7]  # layers 0 and 2, as in yolov4.conv.137
    path = written.save(tmp_path / "w")
    cfg = write(tmp_path, SMALL)
    weights = load_weights(cfg, path, cutoff=4)
    assert [e.index for e in weights.layers] == [0, 2] and weights.cutoff == 4
    save_weights(tmp_path / "again", cfg, weights)
    assert (tmp_path / "again").read_bytes() == path.read_bytes()
    with pytest.raises(DarknetFileError, match="truncated in layer 4 \\[batchnorm\\]"):
        load_weights(cfg, path)


# --- .weights: round trip -----------------------------------------------------

@pytest.mark.parametrize("flavor", ["pjreddie", "alexeyab"])
@pytest.mark.parametrize("version,seen_format", [((0, 2, 0), "<Q"), ((0, 1, 0), "<I")])
def test_load_save_load_is_byte_for_byte(tmp_path, flavor, version, seen_format):
    rng = np.random.default_rng(3)
    written = small_weights(rng, flavor, major=version[0], minor=version[1],
                            revision=version[2], seen=4_000_000_000, seen_format=seen_format)
    # random bit patterns: NaNs with payloads, infinities, subnormals, -0
    written.arrays = [(label, rng.integers(0, 2**32, a.size, dtype=np.uint32)
                       .view(np.float32).reshape(a.shape)) for label, a in written.arrays]
    path = written.save(tmp_path / "in.weights")
    cfg = read_cfg(write(tmp_path, SMALL))
    weights = load_weights(cfg, path, numerics=numerics_of(flavor))
    save_weights(tmp_path / "out.weights", cfg, weights)
    assert (tmp_path / "out.weights").read_bytes() == path.read_bytes()
    again = load_weights(cfg, tmp_path / "out.weights", numerics=numerics_of(flavor))
    fields = ("biases", "scales", "rolling_mean", "rolling_variance", "weights")
    for first, second in zip(weights.layers, again.layers):
        for name in fields:
            a, b = getattr(first, name), getattr(second, name)
            assert (a is None and b is None) or a.tobytes() == b.tobytes()


# --- .weights: bad files ------------------------------------------------------

def _small_file(tmp_path):
    written = small_weights(np.random.default_rng(4))
    return written, written.save(tmp_path / "net.weights"), write(tmp_path, SMALL)


@pytest.mark.parametrize("label,layer", [
    ("0.biases", "layer 0 \\[convolutional\\]"),
    ("0.weights", "layer 0 \\[convolutional\\]"),
    ("4.rolling_mean", "layer 4 \\[batchnorm\\]"),
    ("5.rolling_variance", "layer 5 \\[connected\\]"),
])
def test_truncated_file_names_the_layer_array_and_byte_offset(tmp_path, label, layer):
    written, path, cfg = _small_file(tmp_path)
    offset = written.offsets()[label]
    data = path.read_bytes()
    path.write_bytes(data[:offset + 2])  # two bytes into that array
    name = label.split(".")[1]
    nbytes = dict(written.arrays)[label].nbytes
    with pytest.raises(DarknetFileError,
                       match=rf"truncated in {layer} \(line \d+\), {name}: needs {nbytes} "
                             rf"bytes \({nbytes // 4} float32\) at byte offset {offset}, "
                             rf"the file has 2 left \(file size {offset + 2}\)"):
        load_weights(cfg, path)


def test_truncated_header(tmp_path):
    _, path, cfg = _small_file(tmp_path)
    path.write_bytes(path.read_bytes()[:16])
    with pytest.raises(DarknetFileError, match=r"16 bytes, too short for the header: "
                                               r"version 0.2.0 has a 8-byte seen at byte "
                                               r"offset 12"):
        load_weights(cfg, path)
    path.write_bytes(b"\0" * 5)
    with pytest.raises(DarknetFileError, match=r"5 bytes, too short for the 12-byte "
                                               r"version header"):
        load_weights(cfg, path)


def test_trailing_bytes_are_an_error(tmp_path):
    _, path, cfg = _small_file(tmp_path)
    size = path.stat().st_size
    path.write_bytes(path.read_bytes() + b"\0" * 8)
    with pytest.raises(DarknetFileError, match=rf"8 trailing bytes: the cfg's layers end at "
                                               rf"byte offset {size}, the file has "
                                               rf"{size + 8} bytes"):
        load_weights(cfg, path)


def test_unknown_version_is_an_error(tmp_path):
    _, path, cfg = _small_file(tmp_path)
    path.write_bytes(struct.pack("<3i", -1, 2, 0) + path.read_bytes()[12:])
    with pytest.raises(DarknetFileError, match=r"unknown version -1.2.0 in the header"):
        load_weights(cfg, path)


def test_save_weights_rejects_what_the_layout_cannot_hold(tmp_path):
    _, path, cfg = _small_file(tmp_path)
    target = tmp_path / "out.weights"
    weights = load_weights(cfg, path)
    weights.layer(4).scales = np.ones(11, np.float32)
    with pytest.raises(DarknetFileError, match=r"layer 4 \[batchnorm\] \(line \d+\): scales "
                                               r"has shape \(11,\), expected \(12,\)"):
        save_weights(target, cfg, weights)
    weights.layer(4).scales = np.ones(12)
    with pytest.raises(DarknetFileError, match=r"scales must be a float32 array of shape "
                                               r"\(12,\), got dtype float64"):
        save_weights(target, cfg, weights)
    weights = load_weights(cfg, path)
    weights.layer(4).biases = np.ones(12, np.float32)  # pjreddie's [batchnorm] has none
    with pytest.raises(DarknetFileError, match=r"has biases, which the file layout "
                                               r"\(pjreddie\) does not hold"):
        save_weights(target, cfg, weights)
    weights = load_weights(cfg, path)
    del weights.layers[1]
    with pytest.raises(DarknetFileError, match=r"weights has parameters for layers "
                                               r"\[0, 4, 5\], expected \[0, 2, 4, 5\]"):
        save_weights(target, cfg, weights)
    weights = load_weights(cfg, path)
    weights.seen = 2**64
    with pytest.raises(DarknetFileError, match=r"seen=18446744073709551616, expected "
                                               r"0 <= seen < 2\*\*64"):
        save_weights(target, cfg, weights)
    assert not target.exists()


# --- python -m bnkernels darknet-check ----------------------------------------

def test_darknet_check_summarizes_every_batch_norm(tmp_path, capsys):
    written, path, cfg = _small_file(tmp_path)
    values = dict(written.arrays)
    variance = values["4.rolling_variance"]
    variance[:3] = [0.0, -1.0, np.nan]
    path = written.save(path)
    assert main(["darknet-check", str(cfg), str(path)]) == 0
    out = capsys.readouterr().out
    assert "version 0.2.0, seen 123456 (8-byte), 4 layers with parameters" in out
    offset = written.offsets()["0.biases"]
    assert f"layer 0 [convolutional], 8 channels, byte offset {offset}" in out
    assert "layer 2" not in out  # no batch norm there
    assert "layer 4 [batchnorm], 12 channels" in out
    assert "layer 5 [connected], 5 channels" in out
    scales = values["0.scales"].astype(np.float64)
    assert f"  scales            {scales.min():11.4g} {scales.max():11.4g} " \
           f"{scales.mean():11.4g}" in out
    assert "variances: 1 zero, 1 negative, 1 non-finite" in out
    expected = darknet.to_standard(values["0.scales"], values["0.biases"],
                                   values["0.rolling_mean"], values["0.rolling_variance"])
    assert f"to standard: max rel diff {expected.max_rel_diff:.3g}" in out
    assert "2 NaN channels" in out  # the negative and the NaN variance
    assert "3 batch norms, 25 channels" in out


def test_darknet_check_bad_file_exits_1_with_one_line(tmp_path, capsys):
    _, path, cfg = _small_file(tmp_path)
    path.write_bytes(path.read_bytes()[:100])
    assert main(["darknet-check", str(cfg), str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("python -m bnkernels darknet-check: error: ")
    assert "truncated in layer 0 [convolutional]" in captured.err
    assert captured.err.count("\n") == 1
    assert main(["darknet-check", str(cfg), str(tmp_path / "missing.weights")]) == 1
    assert "No such file" in capsys.readouterr().err


def test_darknet_check_runs_as_a_command(tmp_path):
    _, path, cfg = _small_file(tmp_path)
    result = subprocess.run([sys.executable, "-m", "bnkernels", "darknet-check", str(cfg),
                             str(path), "--flavor", "pjreddie"],
                            capture_output=True, text=True, check=False, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "3 batch norms" in result.stdout


def test_file_functions_live_in_bnkernels_io_not_in_the_core_darknet_module():
    import bnkernels.io
    assert bnkernels.io.read_cfg is darknet_files.read_cfg
    assert bnkernels.io.load_weights is darknet_files.load_weights
    assert bnkernels.io.save_weights is darknet_files.save_weights
    for name in ("read_cfg", "load_weights", "save_weights", "DarknetFileError"):
        assert not hasattr(darknet, name) and name not in darknet.__all__


def test_darknet_check_into_a_closed_pipe_exits_quietly(tmp_path):
    # as `python -m bnkernels darknet-check ... | head -1` when head has quit
    _, path, cfg = _small_file(tmp_path)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run([sys.executable, "-m", "bnkernels", "darknet-check", str(cfg),
                                 str(path)], stdout=write_end, stderr=subprocess.PIPE,
                                text=True, check=False, cwd=tmp_path)
    finally:
        os.close(write_end)
    assert result.stderr == ""
    assert result.returncode == 1
