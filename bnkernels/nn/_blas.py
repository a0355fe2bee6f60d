"""How many threads NumPy's BLAS uses inside the layers' matrix products.

Conv2d and Linear compute their products with NumPy's BLAS, whose threads are
its own (OpenBLAS's pthreads, MKL's OpenMP, ...), apart from the OpenMP team
the bnkernels kernels start. Left alone, the BLAS keeps one thread per core
whatever ``bnkernels.set_num_threads`` says, and its threads and the kernels'
compete for the same cores; on a machine whose other cores are busy, a
product split over all of them waits for the threads the OS does not run.

Conv2d keeps the BLAS on one thread and splits its own products
(``split_products`` and ``run_shared``, below): a BLAS's idle threads spin
after each product they shared, on the cores the kernels' next team needs.
Linear, whose one product per call sits at a network's end, lets the BLAS
split it: ``matching_threads(times, key)`` sets the BLAS's thread count for
the duration of a layer's call to the smaller of

- the caller's own BLAS setting (e.g. ``threadpoolctl.threadpool_limits``),
  so a limit the caller chose is never raised, and
- the count a large bnkernels kernel call would use now
  (``bnkernels._kernels._threads_for``): ``set_num_threads``' count, or one
  thread while the kernels back off even their largest calls after teams
  that the OS kept waiting (docs/design/threads.md),

and puts the caller's setting back on the way out, also when the call
raises. The setting is process-wide (as the BLAS's own is): layers called
from several Python threads at once share it.

The BLAS's own threads have a back-off of the same kind, measured on the
layer calls themselves, per kind of call (``key``: a layer, a direction, a
shape, kept in the layer's ``times``). The first call of a kind runs on one
thread and its time is kept. A later call on several threads that does not
take under 90 % of that time was a loss (the OS kept a BLAS thread off its
core, or the product is too small to share): the next 1, then 2, 4, ... up
to 16 calls of that kind run on one thread, refreshing its one-thread time,
and the count starts over at 1 after a call that gained. Counting calls
rather than time keeps a probe's cost a small share of the calls of a kind
however rarely it is called (once per training step, in a network). On free
cores the products that gain keep their threads; on busy ones a kind probes
once in 16 calls.

threadpoolctl finds the BLAS libraries loaded in the process (NumPy's, and
any other that links one); the controller is made once, on first use.
"""
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
import contextlib
import contextvars
import itertools
import os
import threading
import time
from typing import Any

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


# a call on several threads gained when it took under this share of the
# one-thread time of its kind
_GAIN = 0.9
# the most calls of a kind on one thread after a loss
_MAX_SKIP = 16


class _Kind:
    """The back-off state of one kind of call: its one-thread time, the
    calls still to run on one thread, and how many the next loss gives."""

    __slots__ = ("alone", "skip", "period")

    def __init__(self) -> None:
        self.alone = 0.0
        self.skip = 0
        self.period = 1


@contextlib.contextmanager
def matching_threads(times: dict[Any, _Kind] | None = None,
                     key: Any = None) -> Iterator[None]:
    """Inside: each BLAS on min(its caller's count, kernel_threads()) threads,
    or one while ``key``'s kind of call backs off or has no one-thread time
    yet (no ``times``: no back-off of the BLAS's own); on exit (return or
    exception) the caller's counts are back."""
    wanted = kernel_threads()
    controllers = _blas_controllers()
    callers = [controller.get_num_threads() for controller in controllers]
    wanted = min([wanted] + [count for count in callers if count is not None])
    kind = None
    if times is not None and wanted > 1:
        kind = times.get(key)
        if kind is None:
            kind = times[key] = _Kind()
            wanted = 1
        elif kind.skip > 0:
            kind.skip -= 1
            wanted = 1
    changed = []
    for controller, before in zip(controllers, callers):
        if before is not None and before != wanted:
            controller.set_num_threads(wanted)
            changed.append((controller, before))
    start = time.perf_counter()
    try:
        yield
    finally:
        for controller, before in changed:
            controller.set_num_threads(before)
    if kind is not None:
        elapsed = time.perf_counter() - start
        if wanted == 1:
            kind.alone = elapsed
        elif elapsed < _GAIN * kind.alone:
            kind.period = 1
        else:
            kind.skip = kind.period
            kind.period = min(2 * kind.period, _MAX_SKIP)


# ---------------------------------------------------------------------------
# Products split by the layers themselves
# ---------------------------------------------------------------------------
#
# A BLAS's own threads and the kernels' OpenMP team are two pools on the same
# cores: OpenBLAS's idle threads spin for a while after each product it ran
# on several threads, and the kernel calls right after it (im2col, the direct
# convolution, batch norm) then share a core with a spinning thread. Conv2d
# therefore keeps the BLAS on one thread and splits its products itself, in
# (sample, column range) pieces, over the calling thread and a few pool
# threads that block (not spin) between calls. Each piece is one BLAS
# product whose columns are the unsplit product's columns.

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
