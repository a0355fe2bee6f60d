"""The layers' default path (no reuse_buffers) writes a new output, or one of
its recent outputs again once nothing but the layer references it.

Oracles: the functional API with fresh outputs (bit for bit) for the
values; the bytes a caller still holds, compared before and after later
calls, for "never overwrite what someone still sees"; array addresses for
whether a kept output was written again.
"""
import copy
import pickle
import weakref

import numpy as np
import pytest

import bnkernels

SHAPE = (2, 3, 4, 5)


def data(seed, dtype=np.float32, shape=SHAPE):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def address(a):
    return a.__array_interface__["data"][0]


def fresh_forward(layer, x):
    """What a layer in layer's state returns for x, by the functional API."""
    y, _ = bnkernels.batch_norm_forward(
        x, layer.weight, layer.bias, layer.running_mean.copy(), layer.running_var.copy(),
        training=layer.training, momentum=layer.momentum, eps=layer.eps,
        numerics=layer.numerics, activation=layer.activation)
    return y


@pytest.mark.parametrize("numerics", ["standard", "darknet"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("training", [True, False])
def test_default_path_writes_a_dropped_output_again_with_the_same_bits(numerics, dtype,
                                                                      training):
    layer = bnkernels.BatchNorm2d(SHAPE[1], numerics=numerics, dtype=dtype)
    layer.train(training)
    seen = set()
    for seed in range(6):
        x = data(seed, dtype)
        expected = fresh_forward(layer, x)
        y = layer(x)   # the previous y is still bound here, then dropped
        np.testing.assert_array_equal(y, expected)
        seen.add(address(y))
    # a loop of y = layer(x) alternates between two arrays
    assert len(seen) == 2


def test_held_outputs_are_never_written_again():
    layer = bnkernels.BatchNorm2d(SHAPE[1]).eval()
    held = [layer(data(0))]
    kept_bytes = [held[0].tobytes()]
    for seed in range(1, 6):
        y = layer(data(seed))
        for h, b in zip(held, kept_bytes):
            assert h.tobytes() == b and not np.shares_memory(h, y)
        held.append(y)
        kept_bytes.append(y.tobytes())


def blockers():
    """Ways a caller keeps seeing an output without naming the array."""
    def view(y):
        return y[1:]

    def memory_view(y):
        return memoryview(y)

    def weak_reference(y):
        return weakref.ref(y)

    def dlpack_view(y):
        return np.from_dlpack(y)

    def buffer_view(y):
        return np.frombuffer(y, dtype=y.dtype)

    def ctypes_view(y):
        return y.ctypes

    def in_a_list(y):
        return [y]

    def flat_iterator(y):
        return y.flat

    def read_only(y):
        y.flags.writeable = False
        return y

    return [view, memory_view, weak_reference, dlpack_view, buffer_view, ctypes_view,
            in_a_list, flat_iterator, read_only]


def _seen_bytes(blocker, kept):
    """The bytes of the output that `kept` (blocker's result) still sees."""
    if blocker.__name__ == "weak_reference":
        return kept().tobytes()
    if blocker.__name__ in ("memory_view",):
        return kept.tobytes()
    if blocker.__name__ == "ctypes_view":
        return kept._arr.tobytes()
    if blocker.__name__ == "in_a_list":
        return kept[0].tobytes()
    if blocker.__name__ == "flat_iterator":
        return kept.base.tobytes()
    return np.asarray(kept).tobytes()


@pytest.mark.parametrize("blocker", blockers(), ids=lambda f: f.__name__)
@pytest.mark.parametrize("training", [True, False])
def test_an_output_seen_any_way_is_not_written_again(blocker, training):
    layer = bnkernels.BatchNorm2d(SHAPE[1])
    layer.train(training)
    y = layer(data(0))
    start = address(y)
    kept = blocker(y)
    before = _seen_bytes(blocker, kept)
    del y
    for seed in range(1, 5):
        y = layer(data(seed))
        assert address(y) != start
        del y
    assert _seen_bytes(blocker, kept) == before


def test_an_output_held_by_a_torch_tensor_is_not_written_again():
    torch = pytest.importorskip("torch")
    layer = bnkernels.BatchNorm2d(SHAPE[1]).eval()
    y = layer(data(0))
    start = address(y)
    tensor = torch.from_numpy(y)
    before = tensor.clone()
    del y
    for seed in range(1, 5):
        y = layer(data(seed))
        assert address(y) != start
        del y
    assert torch.equal(tensor, before)


def test_an_output_fed_back_as_input_is_not_overwritten():
    layer = bnkernels.BatchNorm2d(SHAPE[1]).eval()
    x = data(0)
    layer(data(1))  # a dropped output the next calls may write again
    y1 = layer(x)
    expected = fresh_forward(layer, fresh_forward(layer, x))
    y2 = layer(y1)
    y1_bytes = y1.tobytes()
    np.testing.assert_array_equal(y2, expected)
    assert y1.tobytes() == y1_bytes and not np.shares_memory(y1, y2)


@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("numerics", ["standard", "darknet"])
def test_default_path_backward_writes_a_dropped_dx_again_with_the_same_bits(numerics,
                                                                           activation):
    layer = bnkernels.BatchNorm2d(SHAPE[1], numerics=numerics, activation=activation)
    twin = bnkernels.BatchNorm2d(SHAPE[1], numerics=numerics, activation=activation,
                                 reuse_buffers=True)
    held, seen = [], set()
    for seed in range(5):
        x, dy = data(seed), data(seed + 100)
        np.testing.assert_array_equal(layer(x), twin(x))
        dx = layer.backward(dy)
        np.testing.assert_array_equal(dx, twin.backward(dy))
        seen.add(address(dx))
        if seed == 1:  # kept: the later calls must not write into it
            held = [dx, dx.tobytes()]
    np.testing.assert_array_equal(layer.grad_weight, twin.grad_weight)
    assert held[0].tobytes() == held[1]
    assert address(held[0]) not in {address(layer.backward(data(9))) for _ in range(3)}
    assert len(seen) <= 3   # two kept, and one new while the held one is in use


def test_dx_is_never_dy():
    layer = bnkernels.BatchNorm2d(SHAPE[1])
    layer(data(0))
    layer.backward(data(1))
    layer(data(2))
    dy = data(3)
    dx = layer.backward(dy)
    assert not np.shares_memory(dx, dy)


def test_a_change_of_shape_gets_a_new_output():
    layer = bnkernels.BatchNorm2d(SHAPE[1]).eval()
    layer(data(0))
    layer(data(1))
    small = layer(data(2, shape=(1, 3, 2, 2)))
    assert small.shape == (1, 3, 2, 2)
    np.testing.assert_array_equal(small, fresh_forward(layer, data(2, shape=(1, 3, 2, 2))))


def test_release_buffers_drops_what_the_layer_keeps():
    for reuse in (False, True):
        layer = bnkernels.BatchNorm2d(SHAPE[1], reuse_buffers=reuse)
        y = layer(data(0))
        layer.backward(data(1))
        ref = weakref.ref(y)
        del y
        if not reuse:
            assert ref() is not None   # kept for the next call
        layer.release_buffers()
        assert ref() is None


def test_copies_and_pickles_carry_no_recent_outputs():
    layer = bnkernels.BatchNorm2d(SHAPE[1])
    layer(data(0))
    for other in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        assert other._recent == {}
        np.testing.assert_array_equal(other(data(1)), layer(data(1)))
    assert layer._recent
