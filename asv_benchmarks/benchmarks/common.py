"""Shared parameters, data and timing settings of the fastbp asv suite.

Every benchmark runs on ONE thread (BLAS, OpenMP and fastbp's own kernels)
unless it is about threads (``threads.ElementwiseThreads``): the comparison
fast vs reference is then kernel against kernel, not core count against
core count.  ``impl`` selects ``fastbp`` ("fast", compiled) or
``fastbp.reference`` ("reference", plain NumPy); both get identical inputs.

The classes in this module hold no benchmark methods, so asv discovers
nothing here.
"""
import math
import os
import time
from types import SimpleNamespace

import numpy as np

import fastbp
import fastbp.layers
import fastbp.networks
import fastbp.optimizers
import fastbp.reference.layers
import fastbp.reference.networks
import fastbp.reference.optimizers

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # the suite still runs; BLAS then uses its default threads
    threadpool_limits = None

# -- the parameter grid ----------------------------------------------------------
DTYPES = ["float32", "float64"]
BATCHES = [1, 32, 100, 1024]
WIDTHS = [50, 1024]
IMPLS = ["fast", "reference"]
INPUT_SIZE = 784      # MNIST images, flattened
N_CLASSES = 10
SEED = 20240501

IMPL = {
    "fast": SimpleNamespace(layers=fastbp.layers, networks=fastbp.networks,
                            optimizers=fastbp.optimizers),
    "reference": SimpleNamespace(layers=fastbp.reference.layers,
                                 networks=fastbp.reference.networks,
                                 optimizers=fastbp.reference.optimizers),
}

OPTIMIZER_CLASSES = {"sgd": "SGD", "momentum": "Momentum", "adam": "Adam"}


def cpu_count():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def openmp_enabled():
    """True when fastbp's compiled elementwise kernels can use several threads."""
    from fastbp import _backend
    return bool(_backend.COMPILED and _backend.elementwise.openmp_enabled())


# -- data --------------------------------------------------------------------------
def make_data():
    """Every random array the layer/loss/optimizer benchmarks need, at the
    largest batch and width, in float64.  A benchmark takes the top-left
    block it needs and casts it (``take``): each (batch, width) is a slice of
    the same data, and fast and reference see identical inputs."""
    rng = np.random.default_rng(SEED)
    n, m = max(BATCHES), max(WIDTHS)
    return {
        "act": rng.standard_normal((n, m)),                       # activation input
        "dact": rng.standard_normal((n, m)),                      # upstream gradient
        "images": rng.random((n, INPUT_SIZE)),                    # MNIST-like, [0, 1)
        "W": rng.standard_normal((INPUT_SIZE, m)) * math.sqrt(2.0 / INPUT_SIZE),
        "b": 0.1 * rng.standard_normal(m),
        "grad_W": 0.01 * rng.standard_normal((INPUT_SIZE, m)),
        "grad_b": 0.01 * rng.standard_normal(m),
        "logits": 3.0 * rng.standard_normal((n, N_CLASSES)),
        "labels": rng.integers(0, N_CLASSES, n),
    }


def take(a, shape, dtype):
    """A fresh C-contiguous ``dtype`` copy of the leading ``shape`` block of ``a``."""
    block = a[tuple(slice(0, s) for s in shape)]
    return np.array(block, dtype=dtype, order="C", copy=True)


def make_batch(batch, dtype, seed=SEED):
    """A training batch: MNIST-like images (batch, 784) in [0, 1) and int labels."""
    rng = np.random.default_rng(seed)
    x = rng.random((batch, INPUT_SIZE)).astype(dtype)
    t = rng.integers(0, N_CLASSES, batch)
    return x, t


def make_network(net, impl, dtype, width, seed=SEED):
    """``TwoLayerNet`` 784-width-10 or ``MultiLayerNet`` 784-[width, width]-10."""
    networks = IMPL[impl].networks
    if net == "TwoLayerNet":
        return networks.TwoLayerNet(INPUT_SIZE, width, N_CLASSES, dtype=dtype, seed=seed)
    if net == "MultiLayerNet":
        return networks.MultiLayerNet(INPUT_SIZE, [width, width], N_CLASSES,
                                      dtype=dtype, seed=seed)
    raise ValueError(net)


def make_optimizer(impl, name):
    """The optimizer ``name`` with the book's default hyperparameters."""
    return getattr(IMPL[impl].optimizers, OPTIMIZER_CLASSES[name])()


# -- threads -------------------------------------------------------------------------
class ThreadLimit:
    """Pin BLAS and OpenMP (threadpoolctl, if installed) and fastbp's
    elementwise kernels (``fastbp.set_num_threads``) to ``n`` threads until
    ``restore()``."""

    def __init__(self, n):
        self._controller = None
        if threadpool_limits is not None:
            self._controller = threadpool_limits(limits=n)
        fastbp.set_num_threads(n)

    def restore(self):
        fastbp.set_num_threads(0)          # 0: back to the OpenMP default
        if self._controller is not None:
            self._controller.restore_original_limits()
            self._controller = None


# -- timing --------------------------------------------------------------------------
def speedup(fast, reference, *, max_calls=300, rounds=5, block_time=0.05):
    """How many times faster ``fast()`` runs than ``reference()``: ratio of
    their best per-call times.

    Both are called in interleaved blocks of ``n`` calls (``rounds`` blocks
    each, at most ``max_calls`` calls each, n chosen so that a reference
    block takes about ``block_time`` seconds), timed with
    ``time.perf_counter``; the best block of each is kept, so a burst of
    machine noise in one block does not decide the ratio.
    """
    fast()
    reference()                         # warm-up: workspaces, optimizer state
    t0 = time.perf_counter()
    reference()
    one_call = max(time.perf_counter() - t0, 1e-9)
    n = max(1, min(max_calls // rounds, int(block_time / one_call)))
    best = {"fast": math.inf, "reference": math.inf}
    for _ in range(rounds):
        for key, func in (("fast", fast), ("reference", reference)):
            t0 = time.perf_counter()
            for _ in range(n):
                func()
            best[key] = min(best[key], (time.perf_counter() - t0) / n)
    return best["reference"] / best["fast"]


# -- base class ------------------------------------------------------------------------
class Benchmark:
    """Timing settings shared by the suite.

    Two processes (each a fresh interpreter with its own setup), 3 to 10
    samples per process, stopping after ~5 s; ``number = 0`` lets asv pick
    the calls per sample (about ``sample_time`` each).  Subclasses call
    ``self.limit_threads()`` in ``setup``; ``teardown`` undoes it.
    """

    processes = 2
    repeat = (3, 10, 5.0)          # (min samples, max samples, max seconds)
    number = 0                      # calls per sample: chosen by asv
    sample_time = 0.01
    warmup_time = 0.2
    timeout = 180

    _thread_limit = None

    def limit_threads(self, n=1):
        self.restore_threads()
        self._thread_limit = ThreadLimit(n)

    def restore_threads(self):
        if self._thread_limit is not None:
            self._thread_limit.restore()
            self._thread_limit = None

    def teardown(self, *args):
        self.restore_threads()


class CachedData(Benchmark):
    """Base for benchmarks whose random inputs come from ``setup_cache``:
    ``make_data()`` runs once per asv run (not once per parameter
    combination and process); setup and the benchmarks get it as ``cache``.
    All subclasses share this one cache (asv keys it by this method)."""

    def setup_cache(self):
        return make_data()

    setup_cache.timeout = 120
