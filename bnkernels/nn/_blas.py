"""How the layers' matrix products use threads.

Conv2d and Linear compute their products with NumPy's BLAS, whose threads are
its own (OpenBLAS's pthreads, MKL's OpenMP, ...), apart from the OpenMP team
the bnkernels kernels start. Left alone, the BLAS keeps one thread per core
whatever ``bnkernels.set_num_threads`` says, its threads and the kernels'
compete for the same cores, and OpenBLAS's idle threads spin for a while
after each product they shared, on the cores the kernels' next team needs.

So the layers keep the BLAS on one thread (``split_products``) and split
their products themselves (``run_products``) over the smaller of

- the caller's own BLAS setting (e.g. ``threadpoolctl.threadpool_limits``),
  so a limit the caller chose is never raised, and
- the count a large bnkernels kernel call would use now
  (``bnkernels._kernels._threads_for``): ``set_num_threads``' count, or one
  thread while the kernels back off even their largest calls after teams
  that the OS kept waiting (docs/design/threads.md),

and put the caller's setting back on the way out, also when the call
raises. The setting is process-wide (as the BLAS's own is): layers called
from several Python threads at once share it.

The pieces of a split product run on the kernels' own OpenMP team, each
one call of the BLAS's ``sgemm_`` or ``dgemm_`` from C, without the GIL
(``_kernels._gemm_pieces``): found in the OpenBLAS that threadpoolctl
lists, and checked once against NumPy on a small product. Where there is
none (another BLAS, a big-endian CPU, the check failed), each piece is a
NumPy matmul, taken in turn by the calling thread and pool threads that
block (do not spin) between calls (``run_shared``). Either way a thread
the OS runs late takes fewer pieces, and one it does not run takes none.

threadpoolctl finds the BLAS libraries loaded in the process (NumPy's, and
any other that links one); the controller is made once, on first use.
"""
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
import contextlib
import contextvars
import itertools
import ctypes
import os
import sys
import threading
from typing import Any

import numpy as np

from bnkernels import _kernels

# the largest thread count bnkernels takes (h.BN_MAX_THREADS); items and work
# large enough that only the thread setting and the back-off limit the count
_ANY_ITEMS = 1024
_LARGE_WORK = 1 << 30

_controllers: list[Any] | None = None


def _blas_controllers() -> list[Any]:
    """threadpoolctl's controllers of the BLAS libraries loaded now."""
    global _controllers
    if _controllers is None:
        from threadpoolctl import ThreadpoolController
        _controllers = list(ThreadpoolController().select(user_api="blas").lib_controllers)
    return _controllers


def kernel_threads() -> int:
    """The thread count a large bnkernels kernel call would use now."""
    return int(_kernels._threads_for(_ANY_ITEMS, _LARGE_WORK))


# ---------------------------------------------------------------------------
# Products split by the layers themselves
# ---------------------------------------------------------------------------
#
# Each piece is one BLAS product on one thread (the layers split by rows or
# columns, so that a piece's values are the unsplit product's).

# pool threads at most; a job offered to more waits its turn and, late, takes
# no piece
_MAX_HELPERS = 63
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _forget_pool() -> None:
    """In a forked child: the parent's pool threads do not exist there."""
    global _pool
    _pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _shared_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=_MAX_HELPERS,
                                       thread_name_prefix="bnkernels-blas")
        return _pool


class _Job:
    """count pieces taken in turn by whichever thread is free; done when all
    pieces taken have been run (a thread that starts late takes none)."""

    def __init__(self, count: int, task: Callable[[int], object]) -> None:
        self.count = count
        self.task = task
        self.pieces = itertools.count()
        self.done = 0
        self.lock = threading.Lock()
        self.finished = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        for piece in self.pieces:
            if piece >= self.count:
                return
            try:
                self.task(piece)
            except BaseException as error:  # re-raised by the caller
                if self.error is None:
                    self.error = error
            with self.lock:
                self.done += 1
                if self.done == self.count:
                    self.finished.set()


def run_shared(count: int, task: Callable[[int], object], threads: int) -> None:
    """task(0), ..., task(count - 1), on up to `threads` threads (the caller's
    one of them, the others in copies of its context, NumPy's error state
    included); returns when all have run, raising the first exception one
    raised. The pieces must write disjoint outputs."""
    if threads <= 1 or count <= 1:
        for piece in range(count):
            task(piece)
        return
    job = _Job(count, task)
    pool = _shared_pool()
    for _ in range(min(threads, count) - 1):
        # in a copy of the caller's context: NumPy's error state
        # (np.errstate) is a context variable
        pool.submit(contextvars.copy_context().run, job.run)
    job.run()
    job.finished.wait()
    if job.error is not None:
        raise job.error


@contextlib.contextmanager
def split_products() -> Iterator[int]:
    """Inside: each BLAS on one thread; yields the threads the caller's own
    split of its products may use: min(kernel_threads(), the caller's BLAS
    counts), so a limit the caller chose is never raised. On exit (return or
    exception) the caller's counts are back."""
    controllers = _blas_controllers()
    callers = [controller.get_num_threads() for controller in controllers]
    threads = min([kernel_threads()] + [count for count in callers if count is not None])
    changed = []
    for controller, before in zip(controllers, callers):
        if before is not None and before != 1:
            controller.set_num_threads(1)
            changed.append((controller, before))
    try:
        yield threads
    finally:
        for controller, before in changed:
            controller.set_num_threads(before)


# ---------------------------------------------------------------------------
# The BLAS called from C
# ---------------------------------------------------------------------------

# Whether run_products may take the C path (benchmarks switch it off to
# compare).
use_c_products = True

# {dtype char: (address of gemm_, 64-bit integers) or None}, found on first use
_gemm: dict[str, tuple[int, bool] | None] = {}


def _find_gemm(kind: str) -> tuple[int, bool] | None:
    """The address of an OpenBLAS loaded in this process's sgemm_ (kind
    "s") or dgemm_ ("d") and whether its integers are 64-bit, or None."""
    if sys.byteorder != "little":   # _gemm_pieces passes 64-bit integers
        return None
    controllers = [c for c in _blas_controllers() if c.internal_api == "openblas"]
    # NumPy's own first
    controllers.sort(key=lambda c: "numpy" not in str(c.filepath))
    for controller in controllers:
        try:
            lib = ctypes.CDLL(controller.filepath)
        except OSError:
            continue
        for name, wide in ((f"scipy_{kind}gemm_64_", True), (f"{kind}gemm_64_", True),
                           (f"{kind}gemm_", False)):
            function = getattr(lib, name, None)
            if function is not None:
                address = ctypes.cast(function, ctypes.c_void_p).value
                if not address:
                    continue
                try:
                    agrees = _agrees(address, wide, np.float32 if kind == "s" else np.float64)
                except (ValueError, TypeError):
                    agrees = False
                if agrees:
                    return address, wide
    return None


def _agrees(address: int, wide: bool, dtype: Any) -> bool:
    """Whether the function at address computes a few products as NumPy
    does: a strided output, a transposed operand, and an accumulation."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((5, 7)).astype(dtype)
    b = rng.standard_normal((3, 7)).astype(dtype).T
    big = np.zeros((6, 9), dtype)
    out = big[1:6, 2:5]
    _kernels._gemm_pieces(address, [(a, b, out, False), (a, b, big[:5, 5:8], False)], 1, wide)
    _kernels._gemm_pieces(address, [(a, b, out, True)], 1, wide)
    want = a.astype(np.float64) @ b.astype(np.float64)
    close = np.allclose(out, 2 * want, rtol=1e-4, atol=1e-4)
    untouched = np.count_nonzero(big) == 2 * 15
    return bool(close and untouched and np.allclose(big[:5, 5:8], want, rtol=1e-4,
                                                    atol=1e-4))


def _gemm_for(dtype: np.dtype[Any]) -> tuple[int, bool] | None:
    kind = {"f": "s", "d": "d"}.get(dtype.char)
    if kind is None:
        return None
    if kind not in _gemm:
        with _pool_lock:
            if kind not in _gemm:
                _gemm[kind] = _find_gemm(kind)
    return _gemm[kind]


Product = tuple[Any, Any, Any, bool]


def run_products(products: list[Product], threads: int) -> None:
    """out = a @ b, or out += a @ b where the flag is true, for each
    (a, b, out, flag) of products: 2-D arrays of one dtype (float32 or
    float64), each with unit stride along one axis, out along its last. The
    outs must be disjoint and share no memory with the inputs. On up to
    `threads` threads; inside split_products (the BLAS on one thread)."""
    if not products:
        return
    gemm = _gemm_for(products[0][2].dtype) if threads > 1 and use_c_products else None
    if gemm is not None:
        try:
            _kernels._gemm_pieces(gemm[0], products, threads, gemm[1])
            return
        except ValueError:   # an operand the BLAS cannot read (checked before any product)
            pass

    def piece(t):
        a, b, out, accumulate = products[t]
        if accumulate:
            out += a @ b
        else:
            np.matmul(a, b, out=out)
    run_shared(len(products), piece, threads)
