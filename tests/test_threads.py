"""Layers and networks from several Python threads.

1. Separate layer instances (and separate networks with their own
   optimizers) driven from 4 threads at once give exactly the results of
   running the same sequences one after the other.
2. The kernels release the GIL: with fastbp's OpenMP kernels and BLAS both
   limited to one thread, two Python threads running a compute-bound kernel
   overlap on a 2-core machine (wall time of 2 jobs in 2 threads < 0.85 x the
   two jobs back to back; medians of 5).  With the GIL held they could not.
   The machine is shared: when a NumPy ufunc (GIL-free) cannot overlap
   either, because another process holds the second core throughout, the
   test skips with the measured ratios instead of guessing.
"""
import os
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastbp
from fastbp import layers as fast_layers
from fastbp import networks as fast_networks
from fastbp import optimizers as fast_optimizers

N_THREADS = 4


@pytest.fixture
def restore_threads():
    """Put fastbp's and BLAS's thread settings back after the test."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = fastbp.get_num_threads()
    with threadpoolctl.threadpool_limits() as limits:      # restores BLAS/OpenMP on exit
        yield limits
    fastbp.set_num_threads(0)
    if fastbp.get_num_threads() != before:
        fastbp.set_num_threads(before)
    assert fastbp.get_num_threads() == before


# ---------------------------------------------------------------------------
# Same results as a serial run
# ---------------------------------------------------------------------------
def layer_sequence(seed, dtype, steps=40):
    """Forward/backward through Affine-Relu-Affine-Sigmoid-Affine-SoftmaxWithLoss
    with in-place SGD on the weights; every intermediate result is returned."""
    rng = np.random.default_rng(seed)
    W1 = (0.3 * rng.standard_normal((64, 96))).astype(dtype)
    W2 = (0.3 * rng.standard_normal((96, 48))).astype(dtype)
    W3 = (0.3 * rng.standard_normal((48, 10))).astype(dtype)
    b1, b2, b3 = (np.zeros(k, dtype) for k in (96, 48, 10))
    layers = [fast_layers.Affine(W1, b1), fast_layers.Relu(), fast_layers.Affine(W2, b2),
              fast_layers.Sigmoid(), fast_layers.Affine(W3, b3)]
    last = fast_layers.SoftmaxWithLoss()
    record = []
    for _ in range(steps):
        x = rng.standard_normal((32, 64)).astype(dtype)
        t = rng.integers(0, 10, 32)
        h = x
        for layer in layers:
            h = layer.forward(h)
            record.append(h)
        record.append(np.array(last.forward(h, t)))
        d = last.backward()
        for layer in reversed(layers):
            d = layer.backward(d)
            record.append(d)
        for affine in layers[0::2]:
            record += [affine.dW, affine.db]
            affine.W -= 0.05 * affine.dW
            affine.b -= 0.05 * affine.db
    return record


def net_sequence(seed, kind, optimizer, steps=30):
    rng = np.random.default_rng(seed)
    if kind == "two":
        net = fast_networks.TwoLayerNet(40, 64, 6, seed=seed)
    else:
        net = fast_networks.MultiLayerNet(40, [48, 32], 6, activation="sigmoid",
                                          weight_decay_lambda=0.01, seed=seed)
    opt = fast_optimizers.get_optimizer(optimizer, lr=0.05)
    x = rng.standard_normal((200, 40))
    t = rng.integers(0, 6, 200)
    losses = []
    for step in range(steps):
        batch = rng.choice(200, 25, replace=False)
        losses.append(net.train_step(x[batch], t[batch], opt))
    grads = net.gradient(x[:50], t[:50])
    return [np.array(losses)] + [net.params[k].copy() for k in net.params] + \
        [grads[k] for k in grads]


def assert_identical_records(threaded, serial):
    assert len(threaded) == len(serial)
    for i, (a, b) in enumerate(zip(threaded, serial)):
        assert a.dtype == b.dtype and a.shape == b.shape, i
        assert np.array_equal(a, b), f"item {i} differs from the serial run"


def run_in_threads(fn, args_list):
    start = threading.Barrier(len(args_list))

    def job(args):
        start.wait()                    # all threads start together: real overlap
        return fn(*args)

    with ThreadPoolExecutor(max_workers=len(args_list)) as pool:
        return list(pool.map(job, args_list))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_layer_instances_in_threads_match_a_serial_run(dtype):
    args = [(seed, dtype) for seed in range(N_THREADS)]
    serial = [layer_sequence(*a) for a in args]
    threaded = run_in_threads(layer_sequence, args)
    for got, expected in zip(threaded, serial):
        assert_identical_records(got, expected)
    # the four sequences are really different (the seeds reach the results)
    assert not np.array_equal(serial[0][0], serial[1][0])


def test_networks_in_threads_match_a_serial_run():
    args = [(0, "two", "sgd"), (1, "multi", "adam"), (2, "two", "momentum"),
            (3, "multi", "rmsprop")]
    serial = [net_sequence(*a) for a in args]
    threaded = run_in_threads(net_sequence, args)
    for got, expected in zip(threaded, serial):
        assert_identical_records(got, expected)
    for record in serial:                        # they trained
        assert record[0][-1] < record[0][0]


def test_one_network_per_thread_repeated_runs_are_stable():
    """Run the same 4 jobs in threads three times: always the serial answer."""
    args = [(seed, "two", "sgd") for seed in range(N_THREADS)]
    serial = [net_sequence(*a, steps=10) for a in args]
    for _ in range(3):
        threaded = run_in_threads(lambda *a: net_sequence(*a, steps=10), args)
        for got, expected in zip(threaded, serial):
            assert_identical_records(got, expected)


# ---------------------------------------------------------------------------
# The GIL is released inside the kernels
# ---------------------------------------------------------------------------
def overlap_ratio(job, repeats=5):
    """median(wall time of job(0) and job(1) in 2 threads) / median(job(0); job(1))."""
    job(0)                                           # warm up (pages, BLAS buffers)
    job(1)
    sequential, threaded = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        job(0)
        job(1)
        sequential.append(time.perf_counter() - t0)
        barrier = threading.Barrier(2)

        def worker(i):
            barrier.wait()
            job(i)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
        t0 = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        threaded.append(time.perf_counter() - t0)
    return statistics.median(threaded) / statistics.median(sequential), sequential, threaded


def _needs_two_cores_and_kernels():
    if (os.cpu_count() or 1) < 2:
        pytest.skip(f"needs 2 cores to overlap, os.cpu_count() = {os.cpu_count()}")
    if not fastbp.COMPILED:
        pytest.skip("FASTBP_PURE=1 / no compiled core: the kernels under test are not in use")


def _one_thread_everywhere(threadpoolctl):
    """fastbp's OpenMP kernels and BLAS on one thread each (inside the fixture)."""
    fastbp.set_num_threads(1)
    assert fastbp.get_num_threads() == 1
    threadpoolctl.threadpool_limits(limits=1)
    blas = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    assert all(i["num_threads"] == 1 for i in blas), blas


MAX_RATIO = 0.85         # pass: two threads clearly overlap
HELD_RATIO = 0.95        # what a held GIL gives: the two jobs run one after the other
ATTEMPTS = 6
IDLE_CONTROL = 0.75      # the GIL-free NumPy control overlaps this well: 2 free cores


def assert_jobs_overlap(job, control, what):
    """Pass on the first attempt whose ratio (median of 5) is < MAX_RATIO: noise
    from other processes only ever makes it worse.  Each other attempt also
    measures ``control``, the same work done by NumPy (which releases the
    GIL); the kernel fails when, in 2 or more attempts, the control overlapped
    (< IDLE_CONTROL: the second core was free) while the kernel ran serially
    (>= HELD_RATIO, as a held GIL makes it).  When neither shows (the other
    core busy, or contention in between), skip with the numbers rather than
    guess."""
    kernel, controls, evidence = [], [], 0
    for _ in range(ATTEMPTS):
        ratio, seq, thr = overlap_ratio(job)
        kernel.append(round(ratio, 3))
        if ratio < MAX_RATIO:
            return ratio
        controls.append(round(overlap_ratio(control)[0], 3))
        evidence += controls[-1] < IDLE_CONTROL and ratio >= HELD_RATIO
        if evidence >= 2:
            raise AssertionError(
                f"{what}: 2 threads took {min(kernel):.2f} x the sequential time (medians "
                f"of 5 per attempt: {kernel}; last sequential {seq}, threaded {thr}) while "
                f"NumPy doing the same work overlapped ({controls}): the GIL is held")
    pytest.skip(f"no clean measurement right now: {what} ratios {kernel}, NumPy control "
                f"ratios {controls} (2 threads / sequential)")


def test_elementwise_kernel_releases_the_gil(restore_threads):
    _needs_two_cores_and_kernels()
    threadpoolctl = pytest.importorskip("threadpoolctl")
    _one_thread_everywhere(threadpoolctl)
    from fastbp import _elementwise
    # small enough to stay in cache: compute bound, so two cores really can
    # run the jobs side by side (memory bandwidth is shared)
    x = np.random.default_rng(0).standard_normal(1 << 16)
    outs = [np.empty_like(x), np.empty_like(x)]      # one output per thread
    control_outs = [np.empty_like(x), np.empty_like(x)]

    def job(i):
        for _ in range(150):
            _elementwise.sigmoid_forward(x, outs[i])

    def control(i):                                  # an exp pass through NumPy
        for _ in range(150):
            np.exp(x, out=control_outs[i])

    ratio = assert_jobs_overlap(job, control, "fastbp._elementwise.sigmoid_forward")
    for out in outs:
        np.testing.assert_allclose(out, 1 / (1 + np.exp(-x)), rtol=1e-12)
    print(f"\nsigmoid_forward overlap ratio: {ratio:.2f}")


def test_affine_forward_releases_the_gil(restore_threads):
    _needs_two_cores_and_kernels()
    threadpoolctl = pytest.importorskip("threadpoolctl")
    _one_thread_everywhere(threadpoolctl)
    rng = np.random.default_rng(1)
    W = rng.standard_normal((256, 256))
    b = rng.standard_normal(256)
    x = rng.standard_normal((256, 256))
    layers = [fast_layers.Affine(W, b), fast_layers.Affine(W, b)]   # one per thread
    outs = [None, None]
    control_outs = [np.empty((256, 256)), np.empty((256, 256))]

    def job(i):
        for _ in range(12):
            outs[i] = layers[i].forward(x)

    def control(i):                                  # the same GEMM through NumPy
        for _ in range(12):
            np.dot(x, W, out=control_outs[i])

    ratio = assert_jobs_overlap(job, control, "Affine.forward (BLAS dgemm, 1 thread)")
    for out in outs:
        np.testing.assert_allclose(out, x @ W + b, rtol=1e-12, atol=1e-12 * 256 * 25)
    print(f"\nAffine.forward overlap ratio: {ratio:.2f}")


# --- whose thread count: fastbp follows OpenMP's own controls unless told ---

def _threads_in_subprocess(env_extra, code="print(fastbp.get_num_threads())"):
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "FASTBP_PURE")}
    env.update(env_extra)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (os.path.dirname(os.path.dirname(fastbp.__file__)), env.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, "-c", "import fastbp\n" + code], env=env,
                          capture_output=True, text=True, timeout=60,
                          cwd=os.path.dirname(os.path.dirname(fastbp.__file__)))
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.split()[-1])


@pytest.mark.skipif(not fastbp.COMPILED or not fastbp._backend.elementwise.openmp_enabled(),
                    reason="needs the compiled core built with OpenMP")
def test_kernel_threads_follow_omp_num_threads_threadpoolctl_and_set_num_threads():
    # one thread unless asked: OMP_NUM_THREADS, or set_num_threads
    assert _threads_in_subprocess({}) == 1
    assert _threads_in_subprocess({"OMP_NUM_THREADS": "1"}) == 1
    assert _threads_in_subprocess({"OMP_NUM_THREADS": "3"}) == 3
    limited = ("import threadpoolctl\n"
               "with threadpoolctl.threadpool_limits(limits={}, user_api='openmp'):\n"
               "    inside = fastbp.get_num_threads()\n"
               "print(inside)")
    assert _threads_in_subprocess({"OMP_NUM_THREADS": "3"}, limited.format(1)) == 1
    # threadpoolctl lowers OpenMP's count; it does not ask for threads
    assert _threads_in_subprocess({}, limited.format(2)) == 1
    explicit = "fastbp.set_num_threads(2)\nprint(fastbp.get_num_threads())"
    assert _threads_in_subprocess({"OMP_NUM_THREADS": "1"}, explicit) == 2
    assert _threads_in_subprocess({}, explicit) == 2
