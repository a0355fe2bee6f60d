"""Every number a Darknet .cfg or .weights file gives is checked before use.

read_cfg: each integer option of each section kind it reads, given bad values
(negative, zero where a size must be positive, beyond a C int like 2**40,
non-integer text), raises DarknetFileError naming the section (index, type,
line), the option, its value and its line; geometries that give an output of
size <= 0 or a size or count beyond a C int raise too. Oracle: the ranges
Darknet's parser and make_*_layer functions need (src/parser.c of both forks),
and for the accepted edge values the output-size formulas written out here.

load_weights: files too short, too long or with a bad header raise
DarknetFileError naming the path and byte offset; nothing is returned, and
neither the cfg nor the file is changed, when it raises.
"""
import copy
import dataclasses
import re
import struct

from hypothesis import HealthCheck, event, given, settings, strategies as st
import numpy as np
import pytest

from bnkernels import darknet
from bnkernels.io.darknet import (DarknetFileError, Section, load_weights, read_cfg,
                                     save_weights)
from forks import numerics_of

INT_MAX = 2 ** 31 - 1
NET = "[net]\nbatch=1\nwidth=16\nheight=16\nchannels=4\n"   # lines 1-5
FIRST = "[convolutional]\nfilters=4\nsize=1\n"              # layer 0, lines 6-8
# the section under test is layer 1, its header on line 9, the bad option on line 10
# (first, so that it counts over the template's own value of the same key)
TEMPLATES = {
    "convolutional": "filters=4\nsize=3\npad=1\n",
    "connected": "output=4\n",
    "maxpool": "size=2\nstride=2\n",
    "local_avgpool": "size=2\nstride=2\n",
    "upsample": "stride=2\n",
    "reorg": "stride=2\n",
    "reorg3d": "stride=2\n",
    "route": "layers=-1\n",
    "shortcut": "from=-1\n",
    "scale_channels": "from=-1\n",
    "sam": "from=-1\n",
    "batchnorm": "",
    "dropout": "",
}

NOT_INTEGERS = ["3.5", "abc", "", "1e3", "0x10", "\uff11", "2_0", "1-"]
BEYOND_C_INT = [str(2 ** 31), str(2 ** 40), str(-2 ** 31 - 1), "9" * 30]
BAD = {
    "positive": ["0", "-1"] + BEYOND_C_INT + NOT_INTEGERS,
    "nonnegative": ["-1", "-2147483648"] + BEYOND_C_INT + NOT_INTEGERS,
    "flag": ["2", "-1"] + BEYOND_C_INT + NOT_INTEGERS,
    "antialiasing": ["3", "-1"] + BEYOND_C_INT + NOT_INTEGERS,
    "nonzero": ["0"] + BEYOND_C_INT + NOT_INTEGERS,
    "layers": ["abc", "-1,x", "1.5", str(2 ** 40), "-2", "1", "5", ""],
    "group_id": ["-1", "1"] + BEYOND_C_INT + NOT_INTEGERS,   # with groups=1
}
OPTIONS = {   # section kind: {option: kind of value}
    "convolutional": dict(
        filters="positive", size="positive", stride="positive", stride_x="positive",
        stride_y="positive", groups="positive", padding="nonnegative", numload="nonnegative",
        pad="flag", batch_normalize="flag", cbn="flag", dontloadscales="flag",
        dontload="flag", flipped="flag", antialiasing="antialiasing"),
    "connected": dict(output="positive", batch_normalize="flag", cbn="flag",
                      dontloadscales="flag", dontload="flag"),
    "maxpool": dict(size="positive", stride="positive", stride_x="positive",
                    stride_y="positive", out_channels="positive", padding="nonnegative",
                    maxpool_depth="flag", antialiasing="antialiasing"),
    "local_avgpool": dict(size="positive", stride="positive", stride_x="positive",
                          stride_y="positive", padding="nonnegative"),
    "upsample": dict(stride="nonzero"),
    "reorg": dict(stride="positive", reverse="flag", flatten="flag", extra="nonnegative"),
    "reorg3d": dict(stride="positive", reverse="flag"),
    "route": dict(layers="layers", groups="positive", group_id="group_id"),
    "shortcut": {"from": "layers"},
    "scale_channels": {"from": "layers"},
    "sam": {"from": "layers"},
    "batchnorm": dict(dontload="flag"),
    "dropout": dict(dontload="flag"),
}
NET_OPTIONS = dict(batch="positive", subdivisions="positive", channels="nonnegative",
                   height="nonnegative", width="nonnegative", inputs="nonnegative")

LAYER_CASES = [(kind, option, value) for kind, options in OPTIONS.items()
               for option, values in options.items() for value in BAD[values]]
NET_CASES = [(option, value) for option, values in NET_OPTIONS.items()
             for value in BAD[values]]


def write(tmp_path, text, name="net.cfg"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def layer_cfg(kind, body):
    return NET + FIRST + f"[{kind}]\n" + body


@pytest.mark.parametrize("kind, option, value", LAYER_CASES)
def test_bad_layer_option_names_section_line_option_and_value(tmp_path, kind, option, value):
    path = write(tmp_path, layer_cfg(kind, f"{option}={value}\n" + TEMPLATES[kind]))
    with pytest.raises(DarknetFileError) as error:
        read_cfg(path)
    message = str(error.value)
    assert message.startswith(f"{path}: layer 1 [{kind}] (line 9): "), message
    assert f"{option}={value} (line 10)" in message, message


@pytest.mark.parametrize("option, value", NET_CASES)
def test_bad_net_option_names_section_line_option_and_value(tmp_path, option, value):
    path = write(tmp_path, f"[net]\n{option}={value}\n" + NET[len("[net]\n"):] + FIRST)
    with pytest.raises(DarknetFileError) as error:
        read_cfg(path)
    message = str(error.value)
    assert message.startswith(f"{path}: section [net] (line 1): "), message
    assert f"{option}={value} (line 2), expected" in message, message


def test_messages_say_what_was_expected(tmp_path):
    cases = {
        "filters=-1": "expected a positive integer (1 to 2147483647, a C int)",
        f"padding={2 ** 40}": "expected a non-negative integer (0 to 2147483647, a C int)",
        "pad=2": "expected 0 or 1",
        "antialiasing=3": "expected an integer from 0 to 2",
        "size=3.5": "expected a positive integer",
    }
    for line, expected in cases.items():
        path = write(tmp_path, layer_cfg("convolutional", line + "\nfilters=4\n"))
        with pytest.raises(DarknetFileError) as error:
            read_cfg(path)
        assert f"{line} (line 10), {expected}" in str(error.value)


# edge values that are valid: the output shapes, by the formulas of Darknet's
# make_*_layer (convolution (h + 2p - k) / s + 1, maxpool (h + p - k) / s + 1, ...)
@pytest.mark.parametrize("kind, body, shape", [
    ("convolutional", "filters=8\nsize=16\n", (8, (16 - 16) // 1 + 1, 1)),
    ("convolutional", "filters=8\nsize=18\npadding=1\n", (8, 1, 1)),
    ("convolutional", "filters=8\nsize=3\npad=1\nstride=2147483647\n", (8, 1, 1)),
    ("convolutional", "filters=8\nsize=3\nstride_x=2\nstride_y=3\n",
     (8, (16 - 3) // 3 + 1, (16 - 3) // 2 + 1)),
    ("convolutional", "filters=+8\ngroups=4\nsize=1\n", (8, 16, 16)),
    ("convolutional", "filters=2\nsize=1\nantialiasing=2\n", (2, None, None)),
    ("maxpool", "size=16\npadding=0\n", (4, 1, 1)),
    ("maxpool", "size=3\nstride=2\n", (4, (16 + 2 - 3) // 2 + 1, (16 + 2 - 3) // 2 + 1)),
    ("maxpool", "maxpool_depth=1\nout_channels=2\n", (2, 16, 16)),
    ("local_avgpool", "size=16\nstride=16\npadding=0\n", (4, 1, 1)),
    ("upsample", "stride=-16\n", (4, 1, 1)),
    ("upsample", "stride=3\n", (4, 48, 48)),
    ("reorg", "stride=16\n", (4 * 256, 1, 1)),
    ("reorg3d", "stride=2\nreverse=1\n", (1, 32, 32)),
    ("route", "layers=0\ngroups=4\ngroup_id=3\n", (1, 16, 16)),
    ("route", "layers=-1,0\n", (8, 16, 16)),
    # the default padding, size - 1, always fits
    ("local_avgpool", "size=18\n", (4, 16 + 17 - 18 + 1, 16 + 17 - 18 + 1)),
    ("connected", "output=2097151\n", (2097151, 1, 1)),   # 1024 inputs: 2**31 - 1024 weights
])
def test_edge_values_darknet_accepts_give_its_shapes(tmp_path, kind, body, shape):
    path = write(tmp_path, layer_cfg(kind, body))
    assert read_cfg(path)[2].out_shape == shape


@pytest.mark.parametrize("text, message", [
    (layer_cfg("convolutional", "filters=4\nsize=20\n"),
     r"layer 1 \[convolutional\] \(line 9\): its output height would be \(16 \+ 0 - 20\) "
     r"// 1 \+ 1 = -3 \(size=20 \(line 11\), padding=0 \(default\), stride=1 \(default\)\), "
     r"expected at least 1: the window of size 20 must fit the input's height 16 plus 0 of "
     r"padding"),
    (layer_cfg("convolutional", "filters=4\nsize=19\npadding=1\nstride_y=4\n"),
     r"its output height would be \(16 \+ 2 - 19\) // 4 \+ 1 = 0 \(size=19 \(line 11\), "
     r"padding=1 \(line 12\), stride_y=4 \(line 13\)\)"),
    (layer_cfg("convolutional", "filters=4\nsize=3\npadding=1073741824\n"),
     r"its output height would be \(16 \+ 2147483648 - 3\) // 1 \+ 1 = 2147483662 .*"
     r"expected at most 2147483647 \(a C int\)"),
    (layer_cfg("convolutional", "filters=4\nsize=1\npadding=100000\n"),
     r"its output would have 4 x 200016 x 200016 \(channels x height x width\) = "
     rf"{4 * 200016 * 200016} values, expected at most 2147483647"),
    (layer_cfg("convolutional", "filters=65536\nsize=1000\npad=1\n"),
     r"its weights would have 262144000000 values, expected at most 2147483647"),
    (layer_cfg("convolutional", "filters=6\ngroups=4\n"),
     r"groups=4 \(line 11\) with 4 input channels and 6 filters, expected groups dividing "
     r"both"),
    (layer_cfg("maxpool", "size=20\nstride=2\npadding=0\n"),
     r"layer 1 \[maxpool\] \(line 9\): its output height would be \(16 \+ 0 - 20\) // 2 \+ "
     r"1 = -1 \(size=20 \(line 10\), padding=0 \(line 12\), stride=2 \(line 11\)\)"),
    (layer_cfg("upsample", "stride=-17\n"),
     r"stride=-17 \(line 10\) shrinks its input's height 16 to 0, expected -stride <= 16"),
    (layer_cfg("upsample", "stride=200000000\n"),
     r"its output height would be 3200000000, expected 1 to 2147483647"),
    (layer_cfg("reorg", "stride=17\n"),
     r"stride=17 \(line 10\) is larger than its input's height 16, expected stride <= 16"),
    (layer_cfg("reorg3d", "stride=4\nreverse=1\n"),
     r"stride=4 \(line 10\) with reverse=1 and 4 input channels, expected channels "
     r"divisible by stride \* stride"),
    (layer_cfg("route", "layers=-1,-2\n"),
     r"layers=-1,-2 \(line 10\) refers to layer -2 \(index -1\), expected one of the "
     r"layers before it \(0 to 0, or -1 to -1\)"),
    (layer_cfg("route", "layers=0\ngroups=3\n"),
     r"groups=3 \(line 11\): layer 0 has 4 channels, expected groups dividing the "
     r"channels of every layer routed"),
    (layer_cfg("route", "layers=0\ngroups=2\ngroup_id=2\n"),
     r"group_id=2 \(line 12\), expected an integer from 0 to groups - 1 = 1"),
    (NET + "[route]\nlayers=-1\n",
     r"layer 0 \[route\] \(line 6\): layers=-1 \(line 7\) refers to layer -1, but there "
     r"is no layer before it \(it is layer 0\)"),
    (layer_cfg("convolutional", "filters=4\nsize=1\nshare_index=3\n"),
     r"share_index=3 \(line 12\) refers to layer 3 \(index 3\), expected one of the layers "
     r"before it"),
    (layer_cfg("convolutional", "filters=4\nsize=1\nshare_index=0,0\n"),
     r"share_index=0,0 \(line 12\), expected one layer index"),
    (layer_cfg("convolutional", "filters=8\nsize=1\nshare_index=-1\n"),
     r"share_index=-1 \(line 12\) refers to layer 0 \[convolutional\], expected a "
     r"convolutional layer with the same weights shape \(filters, channels / groups, "
     r"size\) = \(8, 4, 1\)"),
    (layer_cfg("convolutional", "filters=4\nnumload=2\n"),
     r"numload=2 \(line 11\): numload= is not supported"),
    ("[net]\nheight=65536\nwidth=65536\nchannels=1\n",
     r"section \[net\] \(line 1\): its output would have 1 x 65536 x 65536 \(channels x "
     r"height x width\) = 4294967296 values, expected at most 2147483647"),
    ("[net]\ninputs=100000\n[connected]\noutput=100000\n",
     r"layer 0 \[connected\] \(line 3\): its weights would have 10000000000 values"),
    (layer_cfg("connected", "output=2097152\n"),   # 1024 inputs: 2**31 weights
     r"layer 1 \[connected\] \(line 9\): its weights would have 2147483648 values, "
     r"expected at most 2147483647"),
])
def test_geometry_and_overflow_errors_say_which_numbers_and_why(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(DarknetFileError, match=message) as error:
        read_cfg(path)
    assert str(error.value).startswith(f"{path}: ")


def test_zero_net_sizes_mean_unknown_as_in_darknet(tmp_path):
    cfg = read_cfg(write(tmp_path, "[net]\nchannels=3\nheight=0\nwidth=0\n[convolutional]\n"
                                   "filters=2\nsize=3\n"))
    assert cfg[0].out_shape == (3, None, None) and cfg[1].out_shape == (2, None, None)


def test_dontload_and_flags_of_a_pass_through_layer_are_checked(tmp_path):
    # options that only load_weights reads are checked by read_cfg already
    path = write(tmp_path, layer_cfg("dropout", "dontload=yes\n"))
    with pytest.raises(DarknetFileError, match=r"dontload=yes \(line 10\), expected 0 or 1"):
        read_cfg(path)


# --- .weights ----------------------------------------------------------------

CFG = NET + "[convolutional]\nfilters=2\nsize=3\npad=1\nbatch_normalize=1\n" \
    "[connected]\noutput=3\n"
# layer 0: biases 2, scales 2, mean 2, variance 2, weights 2*4*3*3; layer 1: biases 3,
# weights 3 * (2*16*16)
ARRAYS = [("biases", 2), ("scales", 2), ("rolling_mean", 2), ("rolling_variance", 2),
          ("weights", 72), ("biases", 3), ("weights", 3 * 512)]
PAYLOAD = 4 * sum(count for _, count in ARRAYS)


def header(major=0, minor=2, revision=0, seen=7):
    return struct.pack("<3i", major, minor, revision) + \
        struct.pack("<Q" if major * 10 + minor >= 2 else "<I", seen)


def weights_file(tmp_path, data, name="net.weights"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def payload(seed=0):
    return np.random.default_rng(seed).standard_normal(PAYLOAD // 4).astype("<f4").tobytes()


@pytest.fixture
def cfg(tmp_path):
    return read_cfg(write(tmp_path, CFG))


def test_the_right_file_loads(tmp_path, cfg):
    data = payload()
    weights = load_weights(cfg, weights_file(tmp_path, header() + data))
    assert np.array_equal(weights.layer(1).weights.ravel(),
                          np.frombuffer(data, "<f4")[-3 * 512:])


@pytest.mark.parametrize("cut", [1, 3, 4, 5, 8 * 4, 4 * 3 * 512 + 1, PAYLOAD])
def test_truncated_file_names_the_first_array_that_does_not_fit(tmp_path, cfg, cut):
    path = weights_file(tmp_path, header() + payload()[:PAYLOAD - cut])
    size = 20 + PAYLOAD - cut
    # the first array whose end is past the end of the file, by hand
    offset = 20
    for name, count in ARRAYS:
        if offset + 4 * count > size:
            break
        offset += 4 * count
    with pytest.raises(DarknetFileError) as error:
        load_weights(cfg, path)
    message = str(error.value)
    assert message.startswith(f"{path}: truncated in layer ")
    assert (f", {name}: needs {4 * count} bytes ({count} float32) at byte offset {offset}, "
            f"the file has {size - offset} left (file size {size}); the cfg's layers need "
            f"{20 + PAYLOAD} bytes") in message


@pytest.mark.parametrize("extra", [1, 4, 7, 4096])
def test_longer_file_is_an_error_with_the_offset_where_the_layers_end(tmp_path, cfg, extra):
    path = weights_file(tmp_path, header() + payload() + b"\0" * extra)
    with pytest.raises(DarknetFileError,
                       match=rf"{extra} trailing bytes: the cfg's layers end at byte offset "
                             rf"{20 + PAYLOAD}, the file has {20 + PAYLOAD + extra} bytes"):
        load_weights(cfg, path)


def test_a_seen_of_the_other_size_is_pointed_out(tmp_path, cfg):
    # version 0.2 has an 8-byte seen; a file written with a 4-byte one is 4 bytes short
    path = weights_file(tmp_path, struct.pack("<3iI", 0, 2, 0, 7) + payload())
    with pytest.raises(DarknetFileError, match=r"a seen of 4 bytes would fit it exactly, but "
                                               r"the header says version 0.2.0, whose seen "
                                               r"has 8 bytes for numerics darknet"):
        load_weights(cfg, path)


@pytest.mark.parametrize("version", [(-1, 2, 0), (0, -2, 0), (0, 2, -5), (-2**31, 0, 0)])
def test_negative_version_is_a_bad_header(tmp_path, cfg, version):
    path = weights_file(tmp_path, struct.pack("<3i", *version) + b"\0" * 8 + payload())
    with pytest.raises(DarknetFileError,
                       match=rf"unknown version {version[0]}.{version[1]}.{version[2]} in the "
                             r"header at byte offset 0: expected non-negative int32"):
        load_weights(cfg, path)


@pytest.mark.parametrize("size", [0, 1, 11])
def test_file_shorter_than_the_version_is_an_error(tmp_path, cfg, size):
    path = weights_file(tmp_path, b"\1" * size)
    with pytest.raises(DarknetFileError, match=rf"{size} bytes, too short for the 12-byte "
                                               r"version header .* at byte offset 0"):
        load_weights(cfg, path)


@pytest.mark.parametrize("size", [12, 15, 19])
def test_file_shorter_than_the_seen_is_an_error(tmp_path, cfg, size):
    path = weights_file(tmp_path, header()[:size])
    with pytest.raises(DarknetFileError, match=rf"{size} bytes, too short for the header: "
                                               r"version 0.2.0 has a 8-byte seen at byte "
                                               r"offset 12"):
        load_weights(cfg, path)


def test_negative_sizes_can_no_longer_read_backwards(tmp_path):
    """channels=-3 once gave the convolution weights a size of 4 * -3 and a file
    of the 'right' (shorter) length loaded with overlapping arrays."""
    text = "[net]\nchannels=-3\nheight=4\nwidth=4\n[convolutional]\nfilters=4\nsize=1\n"
    path = write(tmp_path, text)
    backwards = weights_file(tmp_path, header() + np.ones(4 + 4 * -3 + 100, "<f4").tobytes())
    with pytest.raises(DarknetFileError, match=r"channels=-3 \(line 2\), expected a "
                                               r"non-negative integer"):
        load_weights(path, backwards)


@pytest.mark.parametrize("change", [
    lambda s: dataclasses.replace(s, in_shape=(-3, 16, 16)),
    lambda s: dataclasses.replace(s, out_shape=(2, 16, -16)),
    lambda s: dataclasses.replace(s, options={**s.options, "filters": "-2"}),
    lambda s: dataclasses.replace(s, options={**s.options, "size": str(2 ** 40)}),
    lambda s: dataclasses.replace(s, index=5),
])
def test_a_hand_made_section_list_is_checked_like_a_cfg(tmp_path, cfg, change):
    path = weights_file(tmp_path, header() + payload())
    sections = list(cfg)
    sections[1] = change(sections[1])
    with pytest.raises(DarknetFileError, match=r"layer \d \[convolutional\] \(line 6\)"):
        load_weights(sections, path)


def test_a_section_list_without_net_first_is_rejected(tmp_path, cfg):
    path = weights_file(tmp_path, header() + payload())
    with pytest.raises(DarknetFileError, match=r"cfg\[0\] is \[convolutional\], expected "
                                               r"the \[net\] section first"):
        load_weights(cfg[1:], path)


@pytest.mark.parametrize("cutoff, error", [(-1, ValueError), ("2", TypeError),
                                           (True, TypeError), (1.0, TypeError)])
def test_cutoff_must_be_a_non_negative_int(tmp_path, cfg, cutoff, error):
    path = weights_file(tmp_path, header() + payload())
    with pytest.raises(error, match="cutoff must be"):
        load_weights(cfg, path, cutoff=cutoff)


BAD_FILES = {
    "truncated": lambda: header() + payload()[:-1],
    "extended": lambda: header() + payload() + b"\0\0\0\0",
    "bad version": lambda: struct.pack("<3i", 0, -2, 0) + b"\0" * 8 + payload(),
    "short header": lambda: header()[:14],
    "empty": lambda: b"",
}


@pytest.mark.parametrize("bad", BAD_FILES)
def test_a_failed_load_changes_nothing(tmp_path, cfg, bad):
    """load_weights checks the whole file before making any array: on an error
    the cfg (its sections and their option dicts), the file and weights loaded
    before are as they were."""
    good = load_weights(cfg, weights_file(tmp_path, header() + payload(1), "good.weights"))
    good_before = copy.deepcopy(good)
    cfg_before = copy.deepcopy(cfg)
    data = BAD_FILES[bad]()
    path = weights_file(tmp_path, data)
    with pytest.raises(DarknetFileError):
        load_weights(cfg, path)
    assert path.read_bytes() == data
    assert cfg == cfg_before
    assert [s.options for s in cfg] == [s.options for s in cfg_before]
    for entry, before in zip(good.layers, good_before.layers):
        for name in ("biases", "scales", "rolling_mean", "rolling_variance", "weights"):
            a, b = getattr(entry, name), getattr(before, name)
            assert (a is None and b is None) or np.array_equal(a, b)


def test_a_failed_save_leaves_the_target_file_as_it_was(tmp_path, cfg):
    good = load_weights(cfg, weights_file(tmp_path, header() + payload()))
    target = weights_file(tmp_path, b"old contents", "target.weights")
    for change in (lambda w: setattr(w, "seen", -1),
                   lambda w: setattr(w, "major", 2 ** 31),
                   lambda w: setattr(w, "minor", 1.5),
                   lambda w: setattr(w.layers[1], "weights", np.ones((3, 511), np.float32))):
        weights = copy.deepcopy(good)
        change(weights)
        with pytest.raises(DarknetFileError):
            save_weights(target, cfg, weights)
        assert target.read_bytes() == b"old contents"


def test_darknet_file_error_is_importable_from_bnkernels_io():
    from bnkernels.io import DarknetFileError as from_io
    from bnkernels.io.darknet import DarknetFileError as from_files
    assert from_io is from_files and issubclass(from_io, ValueError)


# --- random cfg text: DarknetFileError or a consistent result, nothing else ---

KINDS = sorted(OPTIONS) + ["yolo", "avgpool", "crop", "teleport", "lstm"]
SANE = st.integers(1, 4).map(str)
VALUES = st.one_of(
    SANE, SANE, SANE, SANE, st.integers(-40, 40).map(str),
    st.sampled_from(["2147483647", "2147483648", str(2 ** 40), str(-2 ** 31), "", "abc",
                     "3.5", "+1", "-1,-2", "0,1", "-1,0", "per_channel", "per_feature",
                     "bogus"]))


def section(kind):
    """A section of this kind with options mostly of its own."""
    names = sorted(OPTIONS.get(kind, {}).keys() | {"share_index", "weights_type",
                                                   "filters", "size", "groups"})
    return st.tuples(st.just(kind), st.lists(st.tuples(st.sampled_from(names), VALUES),
                                             max_size=3))


SECTIONS = st.sampled_from(KINDS).flatmap(section)
REQUIRED = {"convolutional": ["filters=2"], "connected": ["output=2"], "route": ["layers=-1"],
            "shortcut": ["from=-1"], "scale_channels": ["from=-1"], "sam": ["from=-1"]}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("random_cfg")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=st.lists(st.tuples(st.sampled_from(sorted(NET_OPTIONS)), VALUES), max_size=5),
       sections=st.lists(SECTIONS, max_size=6),
       data=st.binary(max_size=64), extra=st.one_of(st.just(0), st.integers(-8, 8)),
       flavor=st.sampled_from(("pjreddie", "alexeyab")))
def test_random_cfg_text_gives_darknet_file_error_or_valid_sections(scratch, net, sections,
                                                                     data, extra, flavor):
    lines = ["[net]"] + [f"{k}={v}" for k, v in net] + ["channels=3", "height=8", "width=8"]
    for kind, options in sections:
        lines += [f"[{kind}]"] + [f"{k}={v}" for k, v in options]
        lines += REQUIRED.get(kind, [])   # after the random ones, which count first
    path = scratch / "random.cfg"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        cfg = read_cfg(path)
    except DarknetFileError as error:
        event("cfg rejected")
        assert str(error).startswith(f"{path}: ")
        return
    assert isinstance(cfg[0], Section) and [s.index for s in cfg[1:]] == \
        list(range(len(cfg) - 1))
    for s in cfg:
        known = [n for n in s.out_shape if n is not None]
        assert all(isinstance(n, int) and 1 <= n <= INT_MAX for n in known), s
        assert np.prod(known, dtype=object) <= INT_MAX
    # a file of random bytes: DarknetFileError, whose message says the size the
    # layers need; a file of that size loads, one of another size does not
    path = weights_file(scratch, header() + data)
    try:
        load_weights(cfg, path, numerics=numerics_of(flavor))
        needed = path.stat().st_size
    except DarknetFileError as error:
        found = re.search(r"need (\d+) bytes|layers end at byte offset (\d+)", str(error))
        if found is None:   # not about the size: the cfg's weights_type, say
            assert re.match(r"layer \d+ \[shortcut\]", str(error)), str(error)
            return
        needed = int(found[1] or found[2])
    if needed + extra > 1 << 20:
        return
    exact = header() + (data + b"\x3f" * needed)[:needed - 20]
    path = weights_file(scratch, (exact + b"\x3f" * 8)[:needed + extra])
    if extra != 0:
        event("another size: rejected")
        with pytest.raises(DarknetFileError):
            load_weights(cfg, path, numerics=numerics_of(flavor))
        return
    event(f"loaded, {len(cfg) - 1} layers")
    weights = load_weights(cfg, path, numerics=numerics_of(flavor))
    stored = sum(getattr(entry, name).nbytes for entry in weights.layers
                 for name in ("biases", "scales", "rolling_mean", "rolling_variance",
                              "weights") if getattr(entry, name) is not None)
    assert 20 + stored == needed
