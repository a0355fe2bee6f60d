"""The output cache: new outputs of 4 MiB or more are blocks that come back
to a small cache when their last array is gone, and later outputs reuse them.

Oracles: the same call with the cache off (bit for bit) for the values; the
bytes a caller still holds, compared before and after later calls, for
"never hand out memory someone still sees"; array addresses for whether a
block was reused; cache_info's counts against the blocks the test dropped.
"""
import importlib.util
import pickle
import threading
import weakref
from pathlib import Path

import numpy as np
import pytest

import bnkernels

LARGE = (4, 64, 64, 64)          # 8 MiB in float64, 4 MiB in float32: cached
SMALL = (2, 3, 4, 5)


def address(a):
    return a.__array_interface__["data"][0]


def data(seed, shape=LARGE, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def infer(x):
    c, dtype = x.shape[1], x.dtype
    y, _ = bnkernels.batch_norm_forward(x, np.full(c, 1.5, dtype), np.full(c, 0.25, dtype),
                                        np.zeros(c, dtype), np.ones(c, dtype), training=False)
    return y


@pytest.fixture(autouse=True)
def fresh_cache():
    """Each test starts from an empty cache at the default limit, and leaves it so."""
    limit = bnkernels.cache_info()["limit"]
    bnkernels.set_cache_limit(1 << 30)
    bnkernels.empty_cache()
    yield
    bnkernels.empty_cache()
    bnkernels.set_cache_limit(limit)


def without_cache(call, *args):
    bnkernels.set_cache_limit(0)
    try:
        return call(*args)
    finally:
        bnkernels.set_cache_limit(1 << 30)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_dropped_output_is_reused_with_the_same_bits(dtype):
    x = data(0, dtype=dtype)
    expected = without_cache(infer, x)
    assert expected.flags.owndata   # the cache off: plain NumPy memory
    y = infer(x)
    first = address(y)
    assert not y.flags.owndata and bnkernels.cache_info()["blocks"] == 0
    del y
    assert bnkernels.cache_info()["blocks"] == 1
    y = infer(x)
    assert address(y) == first and bnkernels.cache_info()["blocks"] == 0
    np.testing.assert_array_equal(y, expected)
    assert y.flags.c_contiguous and y.flags.writeable and y.flags.aligned


@pytest.mark.parametrize("offset", [0, 8, 16, 64, 2048, 4088])
def test_an_output_starts_where_its_input_does_in_a_4k_page(offset):
    # x at `offset` bytes into a page; y, cached or not, at the same place in its page
    raw = np.empty(np.prod(LARGE) * 8 + 8192, np.uint8)
    start = (-address(raw)) % 4096 + offset
    x = raw[start:start + np.prod(LARGE) * 8].view(np.float64).reshape(LARGE)
    x[...] = data(0)
    expected = without_cache(infer, x)
    for _ in range(3):
        y = infer(x)
        assert (address(y) - address(x)) % 4096 == 0
        np.testing.assert_array_equal(y, expected)
        del y


def test_small_outputs_are_plain_numpy_arrays():
    y = infer(data(0, SMALL))
    assert y.flags.owndata and y.base is None
    del y
    assert bnkernels.cache_info()["blocks"] == 0


def blockers():
    """Ways a caller keeps seeing an output after dropping the array."""
    def view(y):
        return y[1:]

    def reshaped(y):
        return y.reshape(-1)

    def memory_view(y):
        return memoryview(y)

    def dlpack_view(y):
        return np.from_dlpack(y)

    def buffer_view(y):
        return np.frombuffer(y, dtype=y.dtype)

    def weak_and_strong(y):
        return (weakref.ref(y), y)

    return [view, reshaped, memory_view, dlpack_view, buffer_view, weak_and_strong]


@pytest.mark.parametrize("blocker", blockers(), ids=lambda f: f.__name__)
def test_memory_a_caller_still_sees_is_never_handed_out(blocker):
    y = infer(data(0))
    start = address(y)
    kept = blocker(y)
    before = bytes(memoryview(np.ascontiguousarray(np.asarray(
        kept[1] if isinstance(kept, tuple) else kept))).cast("B"))
    del y
    for seed in range(1, 4):
        z = infer(data(seed))
        assert address(z) != start
        del z
    after = bytes(memoryview(np.ascontiguousarray(np.asarray(
        kept[1] if isinstance(kept, tuple) else kept))).cast("B"))
    assert after == before
    blocks = bnkernels.cache_info()["blocks"]
    del kept
    assert bnkernels.cache_info()["blocks"] == blocks + 1   # back once its last user is gone


def test_an_output_held_by_a_torch_tensor_is_never_handed_out():
    torch = pytest.importorskip("torch")
    y = infer(data(0))
    start, t = address(y), torch.from_numpy(y)
    expected = t.clone()
    del y
    z = infer(data(1))
    assert address(z) != start
    assert torch.equal(t, expected)


def test_the_layers_default_path_alternates_between_two_cached_outputs():
    x = data(0)
    layer = bnkernels.BatchNorm2d(LARGE[1], dtype=np.float64).eval()
    expected = without_cache(lambda: layer(x).copy())
    seen = set()
    for _ in range(5):
        y = layer(x)
        seen.add(address(y))
        np.testing.assert_array_equal(y, expected)
    assert len(seen) == 2
    # a view of an earlier output keeps that output's block out of the layer's reach
    view = y[:1]
    held = view.copy()
    del y
    for _ in range(3):
        y = layer(data(5))
        assert not np.shares_memory(y, view)
    np.testing.assert_array_equal(view, held)


def test_a_pickled_or_copied_output_has_memory_of_its_own():
    y = infer(data(0))
    for other in (pickle.loads(pickle.dumps(y)), y.copy()):
        assert not np.shares_memory(other, y)
        np.testing.assert_array_equal(other, y)
    blocks = bnkernels.cache_info()["blocks"]
    del y
    assert bnkernels.cache_info()["blocks"] == blocks + 1


def test_the_limit_and_empty_cache():
    outputs = [infer(data(seed)) for seed in range(3)]
    block = bnkernels.cache_info()
    assert block == {"blocks": 0, "bytes": 0, "limit": 1 << 30}
    del outputs
    info = bnkernels.cache_info()
    assert info["blocks"] == 3 and info["bytes"] >= 3 * np.prod(LARGE) * 8
    bnkernels.set_cache_limit(info["bytes"] // 3 + 1)   # one block fits, not two
    assert bnkernels.cache_info()["blocks"] == 1
    bnkernels.empty_cache()
    assert bnkernels.cache_info()["blocks"] == 0 and bnkernels.cache_info()["bytes"] == 0
    bnkernels.set_cache_limit(0)
    y = infer(data(0))
    assert y.flags.owndata
    del y
    assert bnkernels.cache_info()["blocks"] == 0


def test_at_most_eight_blocks_are_kept():
    outputs = [infer(data(seed)) for seed in range(10)]
    del outputs
    assert bnkernels.cache_info()["blocks"] == 8


def test_a_block_serves_requests_of_half_its_size_to_its_size():
    y = infer(data(0, (8, 64, 64, 64)))      # 16 MiB
    start = address(y)
    del y
    small = infer(data(1, (2, 64, 64, 64)))   # 4 MiB: a quarter, a new block
    assert address(small) != start
    half = infer(data(2))                     # 8 MiB: half, the kept block
    assert abs(address(half) - start) < 4096   # the same block, placed like data(2)


@pytest.mark.parametrize("bad, error", [(-1, ValueError), (1.5, TypeError), ("1", TypeError),
                                        (True, TypeError), (None, TypeError)])
def test_set_cache_limit_rejects_bad_input(bad, error):
    with pytest.raises(error, match="max_bytes"):
        bnkernels.set_cache_limit(bad)
    assert bnkernels.cache_info()["limit"] == 1 << 30


def test_threads_dropping_and_taking_blocks_get_their_own_results():
    xs = [data(seed) for seed in range(4)]
    expected = [without_cache(infer, x) for x in xs]
    failures = []

    def work(i):
        for _ in range(15):
            y = infer(xs[i])
            if not np.array_equal(y, expected[i]):
                failures.append(i)
            del y

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def test_the_benchmark_script_runs_and_leaves_the_limit_as_it_was(capsys):
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "output_cache.py"
    if not script.is_file():
        pytest.skip("needs benchmarks/ of a source checkout")
    spec = importlib.util.spec_from_file_location("output_cache", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    bnkernels.set_cache_limit(12345678)
    assert module.main(["--shapes", "2x64x64x64", "--dtype", "float64", "--rounds", "2",
                        "--calls", "2"]) == 0
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines()
            if line.startswith("| 2x64x64x64")]
    assert len(rows) == 1 and all(float(cell) > 0 for cell in rows[0][2:])
    assert bnkernels.cache_info()["limit"] == 12345678


def test_tracemalloc_sees_a_block_while_an_array_uses_it():
    tracemalloc = pytest.importorskip("tracemalloc")
    x = data(0)
    infer(x)   # a block in the cache
    assert bnkernels.cache_info()["blocks"] == 1
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        y = infer(x)   # the kept block, handed out again
        during = tracemalloc.get_traced_memory()[0]
        del y
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert during - before >= x.nbytes and after - before < x.nbytes // 16
