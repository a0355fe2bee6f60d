"""A child process made by fork can use the kernels, after its parent ran them
on 2 OpenMP threads.

An OpenMP runtime's threads do not survive fork; with GNU libgomp a child's
first parallel region waits for them forever. bnkernels registers an at-fork
handler (csrc/threads.c) that puts the child at one thread, where a kernel
call never enters a parallel region.

Each scenario runs in a fresh interpreter (so that its parent's call is the
one that starts the OpenMP threads, and can be checked to have started one)
in a session of its own, which the test kills whole, forked children
included, if it is not done within TIMEOUT seconds: a regression fails the
test instead of hanging the suite. Inside, every wait has its own, shorter
timeout, so that a failure says which child hung.

Oracle: the parent's own results; tolerance: none (the kernels give the same
bits on any number of threads).
"""
import os
import signal
import subprocess
import sys
import tempfile
import textwrap

import pytest

import bnkernels

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")

TIMEOUT = 120     # the whole scenario, interpreter start included
WAIT = 60         # one child's work, inside the scenario

PRELUDE = f"""
import os, signal, sys, time
import numpy as np
import bnkernels

WAIT = {WAIT}
# 8 * 64 * 32 * 32 = 524,288 values: work for 2 threads (a thread gets at
# least 16,384 values)
SHAPE = (8, 64, 32, 32)


def step(seed):
    \"\"\"A training forward and backward of the standard family, as bytes.\"\"\"
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(SHAPE).astype(np.float32)
    dy = rng.standard_normal(SHAPE).astype(np.float32)
    weight = rng.uniform(0.5, 2, SHAPE[1]).astype(np.float32)
    bias = rng.standard_normal(SHAPE[1]).astype(np.float32)
    running_mean, running_var = np.zeros(SHAPE[1], np.float32), np.ones(SHAPE[1], np.float32)
    y, saved = bnkernels.batch_norm_forward(x, weight, bias, running_mean, running_var)
    dx, dweight, dbias = bnkernels.batch_norm_backward(dy, saved)
    return b"".join(a.tobytes() for a in (y, running_mean, running_var, dx, dweight, dbias))


def os_threads():
    \"\"\"This process's threads (Linux), or None where /proc cannot tell.\"\"\"
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


def parent_runs_on_two_threads():
    \"\"\"step(0) on 2 OpenMP threads, checked to have started the second one.\"\"\"
    bnkernels.set_num_threads(2)
    before = os_threads()
    result = step(0)
    after = os_threads()
    if bnkernels.openmp_enabled():
        assert bnkernels.get_num_threads() == 2
        assert before is None or after > before, (
            f"the parent's call started no OpenMP thread ({{before}} -> {{after}} threads)")
    return result


def fail(message):
    print(message, file=sys.stderr, flush=True)
    sys.exit(1)


def in_forked_child(child):
    \"\"\"Run child() in a child made by os.fork: fail() unless it returns True
    within WAIT seconds (else the child is killed).\"\"\"
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if child() else 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        fail(f"the forked child hung (killed after {{WAIT}} s)")
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        fail(f"the forked child exited with {{code}}" + (" (a wrong result)" if code == 2 else ""))
"""


def run_scenario(body):
    """Run PRELUDE + body in a fresh interpreter and session; its stdout, or
    the test fails (non-zero exit, or not done within TIMEOUT seconds: then
    the session, forked children included, is killed)."""
    script = PRELUDE + textwrap.dedent(body)
    # from an empty directory: `python -c` puts the current one first on
    # sys.path, where a source tree's unbuilt bnkernels/ would shadow the build
    with tempfile.TemporaryDirectory() as cwd:
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True,
                                cwd=cwd)
        try:
            out, err = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail(f"not done within {TIMEOUT} s (a forked child hung); killed\n{out}\n{err}")
    assert proc.returncode == 0, f"exit status {proc.returncode}\n{out}\n{err}"
    return out


def test_os_fork_child_runs_a_large_call_and_exits():
    """The child's results are the parent's."""
    run_scenario("""
        expected = parent_runs_on_two_threads()
        in_forked_child(lambda: step(0) == expected)
    """)


def test_forked_child_reports_one_thread_and_starts_none():
    """The child is at one thread (get_num_threads), and a large call in it
    starts no thread: it never enters an OpenMP parallel region."""
    out = run_scenario("""
        def child():
            before = os_threads()
            step(1)
            print(bnkernels.get_num_threads(), before, os_threads(), flush=True)
            return True

        parent_runs_on_two_threads()
        in_forked_child(child)
    """)
    threads, before, after = out.split()
    assert threads == "1"
    assert before == after, f"the child's call started threads ({before} -> {after})"


def test_multiprocessing_fork_pool_gives_the_parents_bits():
    run_scenario("""
        import multiprocessing

        def child(seed):
            return bnkernels.get_num_threads(), step(seed)

        seeds = range(6)
        expected = [parent_runs_on_two_threads()] + [step(seed) for seed in seeds[1:]]
        with multiprocessing.get_context("fork").Pool(2) as pool:
            try:
                results = pool.map_async(child, seeds).get(timeout=WAIT)
            except multiprocessing.TimeoutError:
                fail(f"the pool's workers hung (no results after {WAIT} s)")
        threads = [n for n, _ in results]
        if threads != [1] * len(seeds):
            fail(f"the workers ran on {threads} threads, not 1")
        differ = [seed for seed, (_, got) in zip(seeds, results) if got != expected[seed]]
        if differ:
            fail(f"the workers' results differ from the parent's for seeds {differ}")
    """)


def test_torch_dataloader_workers_call_the_kernels():
    pytest.importorskip("torch", reason="pip install torch")
    run_scenario("""
        import torch

        class Steps(torch.utils.data.Dataset):
            def __len__(self):
                return 4

            def __getitem__(self, seed):
                return bnkernels.get_num_threads(), step(seed)

        expected = [parent_runs_on_two_threads()] + [step(seed) for seed in range(1, 4)]
        loader = torch.utils.data.DataLoader(Steps(), batch_size=None, num_workers=2,
                                             multiprocessing_context="fork", timeout=WAIT)
        try:
            results = list(loader)
        except RuntimeError as error:
            fail(f"the DataLoader's workers hung: {error}")
        if [n for n, _ in results] != [1] * 4:
            fail(f"the workers ran on {[n for n, _ in results]} threads, not 1")
        if [got for _, got in results] != expected:
            fail("the workers' results differ from the parent's")
    """)


def test_the_parent_keeps_its_thread_count():
    """The at-fork handler acts in the child only."""
    out = run_scenario("""
        parent_runs_on_two_threads()
        in_forked_child(lambda: True)
        print(bnkernels.get_num_threads())
    """)
    assert out.strip() == ("2" if bnkernels.openmp_enabled() else "1")


def test_child_may_set_one_thread_itself():
    """set_num_threads(1) in the child is safe and gives the parent's bits.
    (set_num_threads(2) there, after the parent ran a parallel call, never
    returns from the next large call with libgomp: documented, not tested.)"""
    run_scenario("""
        def child():
            bnkernels.set_num_threads(1)
            return step(0) == expected and bnkernels.get_num_threads() == 1

        expected = parent_runs_on_two_threads()
        in_forked_child(child)
    """)


def test_forked_child_that_asks_for_two_threads_splits_conv2d_products_again():
    """Without the BLAS called from C, Conv2d splits its matrix products
    over a pool of Python threads (bnkernels.nn._blas.run_shared), which
    does not survive fork either: a child that sets 2 threads again gets a
    new pool, and the parent's values (float64, every product on one BLAS
    thread; the split only changes which thread computes a column). (The C
    path runs on the kernels' OpenMP team, under set_num_threads' rule for
    children: libgomp's team does not come back in a child.)"""
    run_scenario("""
        from bnkernels.nn import layers, _blas

        def conv_step():
            conv = layers.Conv2d(4, 6, 3, padding=1, dtype=np.float64, rng=0)
            x = np.random.default_rng(1).standard_normal((4, 4, 16, 16))
            y = conv.forward(x)
            dx = conv.backward(np.ones_like(y))
            return y, dx, conv.grad_weight

        _blas.use_c_products = False
        bnkernels.set_num_threads(2)
        expected = conv_step()
        assert _blas._pool is not None or _blas.kernel_threads() == 1

        def child():
            bnkernels.set_num_threads(2)
            got = conv_step()
            return all(np.allclose(a, b, rtol=1e-12, atol=1e-12)
                       for a, b in zip(got, expected))
        in_forked_child(child)
    """)


def test_forked_child_runs_conv2d_after_the_parent_split_its_products_in_c():
    """The parent's products ran on its OpenMP team (the BLAS called from
    C); a forked child that sets no thread count runs them on one thread,
    with no wait for the parent's team, and gets the parent's values."""
    run_scenario("""
        from bnkernels.nn import layers, _blas

        def conv_step():
            conv = layers.Conv2d(8, 16, 1, dtype=np.float64, rng=0)
            x = np.random.default_rng(1).standard_normal((4, 8, 32, 32))
            y = conv.forward(x)
            dx = conv.backward(np.ones_like(y))
            return y, dx, conv.grad_weight

        bnkernels.set_num_threads(2)
        expected = conv_step()

        def child():
            got = conv_step()
            return all(np.allclose(a, b, rtol=1e-12, atol=1e-12)
                       for a, b in zip(got, expected))
        in_forked_child(child)
    """)
