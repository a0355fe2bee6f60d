"""The aliasing rule, for every public entry point and layer.

Every array a call writes (out, workspace, running statistics, rolling
statistics, gradient accumulators) shares no memory with any other argument of
the call, read or written, nor with the arrays a backward reads from its
forward; the one exception is each entry point's documented in-place mode (an
elementwise output may be its main input itself). Anything else raises
ValueError naming both arrays, before anything is written.

Generated from the table of tests/entry_points.py: for each entry point, each
written array w and each other argument o, w and o are carved from one shared
buffer -- o itself, both starting at the same byte, w starting 8 bytes into o,
or o starting 8 bytes into w (the two may have different dtypes, e.g. a
float32 out over a float64 mean). Oracle for a documented in-place pair on the
same memory: the same call without aliasing, bit for bit. For every other
case: ValueError whose message names w and o, and every array exactly as it
was before the call. And for each in-place pair (out=x), every other argument
carved from x's memory: ValueError too (out overlaps it, even though out is x).
"""
import re

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from bnkernels import _kernels, darknet
from entry_points import BY_NAME, ENTRIES

PLACEMENTS = ("identical", "same start", "written inside other", "other inside written")
_OFFSETS = {"same start": (0, 0), "written inside other": (8, 0), "other inside written": (0, 8)}


def carve(arrays, written, other, placement):
    """Copies of arrays in which `written` and `other` share memory as the
    placement says (the values of other kept; those of written where they
    do not overlap it)."""
    arrays = {name: value.copy() for name, value in arrays.items()}
    if placement == "identical":
        arrays[written] = arrays[other]
        return arrays
    w, o = arrays[written], arrays[other]
    w_offset, o_offset = _OFFSETS[placement]
    # 8-byte offsets keep every view aligned; each array is larger than 8 bytes
    base = np.zeros(max(w_offset + w.nbytes, o_offset + o.nbytes), np.uint8)

    def view(offset, like):
        return base[offset:offset + like.nbytes].view(like.dtype).reshape(like.shape)

    arrays[written] = view(w_offset, w)
    arrays[written][...] = w
    arrays[other] = view(o_offset, o)
    arrays[other][...] = o
    return arrays


def _same_memory(a, b):
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
            and a.shape == b.shape and a.dtype == b.dtype)


def _cases():
    cases = []
    for entry in ENTRIES:
        arrays = entry.build(np.dtype(np.float32), np.random.default_rng(0))
        for w in entry.written:
            for o in arrays:
                if o == w:
                    continue
                same_kind = arrays[w].shape == arrays[o].shape and \
                    arrays[w].dtype == arrays[o].dtype
                for placement in PLACEMENTS:
                    if placement == "identical" and not same_kind:
                        continue
                    cases.append(pytest.param(entry.name, w, o, placement,
                                              id=f"{entry.name}-{w}-{o}-{placement}"))
    return cases


def _bits(value):
    return None if value is None else (value.dtype, value.shape, value.tobytes())


@pytest.mark.parametrize("entry, written, other, placement", _cases())
def test_written_array_aliasing_another_argument(entry, written, other, placement):
    entry = BY_NAME[entry]
    arrays = entry.build(np.dtype(np.float32), np.random.default_rng(1))
    aliased = carve(arrays, written, other, placement)
    if (written, other) in entry.in_place and _same_memory(aliased[written], aliased[other]):
        fresh = {name: value.copy() for name, value in arrays.items()}
        expected = entry.call(fresh)
        result = entry.call(aliased)
        assert result.keys() == expected.keys()
        for name in expected:
            assert _bits(result[name]) == _bits(expected[name]), name
        for name in entry.written:
            if name != written:
                assert _bits(aliased[name]) == _bits(fresh[name]), name
        return
    before = {name: value.tobytes() for name, value in aliased.items()}
    with pytest.raises(ValueError) as error:
        entry.call(aliased)
    message = str(error.value)
    for name in (written, other):
        assert re.search(rf"(?<!\w){re.escape(name)}(?!\w)", message), message
    for name, value in aliased.items():
        assert value.tobytes() == before[name], f"{name} changed"


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("entry", sorted({e.name for e in ENTRIES if e.in_place}))
def test_documented_in_place_modes_are_exact(entry, dtype):
    """out is the in-place input itself: the same bits as a separate out."""
    entry = BY_NAME[entry]
    for written, other in entry.in_place:
        arrays = entry.build(np.dtype(dtype), np.random.default_rng(2))
        expected = entry.call({name: value.copy() for name, value in arrays.items()})
        aliased = {name: value.copy() for name, value in arrays.items()}
        aliased[written] = aliased[other]
        result = entry.call(aliased)
        for name in expected:
            assert _bits(result[name]) == _bits(expected[name]), name


def _in_place_cases():
    cases = []
    for entry in ENTRIES:
        arrays = entry.build(np.dtype(np.float32), np.random.default_rng(0))
        for written, partner in entry.in_place:
            for other in arrays:
                if other not in (written, partner):
                    cases.append(pytest.param(entry.name, written, partner, other,
                                              id=f"{entry.name}-{written}={partner}-{other}"))
    return cases


@pytest.mark.parametrize("entry, written, partner, other", _in_place_cases())
def test_in_place_output_with_another_argument_inside_its_input(entry, written, partner,
                                                                 other):
    """out=x (in place) while another argument, weight say, is a view into
    x: out overlaps it, and the call raises before writing anything."""
    entry = BY_NAME[entry]
    arrays = carve(entry.build(np.dtype(np.float32), np.random.default_rng(4)),
                   other, partner, "written inside other")
    arrays[written] = arrays[partner]
    before = {name: value.tobytes() for name, value in arrays.items()}
    with pytest.raises(ValueError) as error:
        entry.call(arrays)
    for name in (written, other):
        assert re.search(rf"(?<!\w){re.escape(name)}(?!\w)", str(error.value)), error.value
    for name, value in arrays.items():
        assert value.tobytes() == before[name], f"{name} changed"


def test_the_matrix_covers_every_entry_point_that_writes():
    """A guard on the table: each entry point that writes an array is in it,
    with each argument it writes."""
    written = {}
    for entry in ENTRIES:
        written.setdefault(entry.name.split("[")[0], set()).update(entry.written)
    assert written["batch_norm_forward"] >= {"out", "running_mean", "running_var"}
    assert written["batch_norm_backward"] == {"out"}
    assert written["BatchNorm2d.backward"] == {"grad_weight", "grad_bias"}
    assert written["SyncBatchNorm2d.forward"] >= {"running_mean", "running_var"}
    writers = {name for name in darknet.__all__ if name.endswith(("_cpu", "bias", "update",
                                                                   "layer"))}
    assert writers <= {name.split(".")[1].split("(")[0] for name in written
                       if name.startswith("darknet.")}
    assert any("workspace" in entry.written for entry in ENTRIES)


# ---------------------------------------------------------------------------
# the overlap test itself, on views of every kind
# ---------------------------------------------------------------------------

@st.composite
def views(draw, base):
    """A view of base: a dtype, an offset, a 1-D or 2-D shape with strides
    that may be negative or skip elements."""
    dtype = np.dtype(draw(st.sampled_from([np.float32, np.float64, np.int16])))
    size = base.nbytes // dtype.itemsize
    flat = base.view(dtype)[:size]
    start = draw(st.integers(0, size - 1))
    step = draw(st.sampled_from([1, 1, 2, 3, -1, -2]))
    stop = draw(st.integers(0, size)) if step > 0 else draw(st.integers(-1, start))
    view = flat[start:stop:step] if stop >= 0 else flat[start::step]
    if view.size >= 4 and draw(st.booleans()):
        view = view[:view.size // 2 * 2].reshape(2, -1)
        if draw(st.booleans()):
            view = view.T
    return view


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_overlap_check_agrees_with_numpy_on_strided_reversed_and_retyped_views(data):
    """Oracle: numpy.may_share_memory (the same bounds test; exact for
    contiguous arrays), and numpy.shares_memory (exact) for the guarantee:
    views sharing an element are always rejected."""
    base = np.zeros(64, np.uint8)
    a, b = data.draw(views(base), label="a"), data.draw(views(base), label="b")
    try:
        _kernels.check_writes([(a, "a")], [(b, "b")])
        raised = False
    except ValueError as error:
        assert re.search(r"\ba overlaps input b\b", str(error))
        raised = True
    assert raised == np.may_share_memory(a, b)
    if np.shares_memory(a, b):
        assert raised


def test_written_arrays_are_checked_against_each_other():
    buffer = np.zeros(8)
    with pytest.raises(ValueError, match="first overlaps second; pass arrays that share"):
        _kernels.check_writes([(buffer[:5], "first"), (buffer[4:], "second")], [])
    _kernels.check_writes([(buffer[:4], "first"), (buffer[4:], "second")], [])


def test_an_in_place_output_may_be_its_input_but_not_overlap_it():
    buffer = np.zeros(9)
    x = buffer[:8]
    _kernels.check_writes([(x, "out")], [(x, "x")], in_place=(x, x))
    view = x[:]  # another ndarray over the same memory
    _kernels.check_writes([(view, "out")], [(x, "x")], in_place=(view, x))
    with pytest.raises(ValueError, match="out overlaps input x; it may be x itself"):
        out = buffer[1:]
        _kernels.check_writes([(out, "out")], [(x, "x")], in_place=(out, x))


def test_check_writes_rejects_what_is_not_an_array():
    with pytest.raises(TypeError, match="out must be a NumPy array or None, got list"):
        _kernels.check_writes([([0.0], "out")], [])
