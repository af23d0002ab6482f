"""No memory growth over many calls, error paths included.

RSS comes from /proc/self/statm (Linux only).  Python's allocator and
glibc keep freed memory around, so the first thousands of calls (warm-up)
are not counted; after that, 80,000 more calls must not grow RSS by more
than a few MB.  A leak of even one small array per call would: 80,000 calls
x the smallest array object (~100 bytes + data) is > 8 MB.

The fused ``train_step`` steady state (no allocation per step) is covered by
test_networks_fast.py; here tracemalloc checks that its *error* paths
(labels or inputs rejected) don't accumulate memory either.
"""
import gc
import json
import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from fastbp import layers as fast_layers
from fastbp import networks as fast_networks
from fastbp import optimizers as fast_optimizers

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads RSS from /proc/self/statm (Linux only)")

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
TOTAL_CALLS = 100_000
SAMPLE_AT = 20_000
MAX_GROWTH = 3 * 2**20          # bytes between the 20k and the 100k sample


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def make_calls(dtype):
    """A list of zero-argument callables, each one layer call (some raise)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 6)).astype(dtype)
    x_f = np.asfortranarray(x)
    x_strided = np.repeat(x, 2, axis=1)[:, ::2]
    W = rng.standard_normal((6, 3)).astype(dtype)
    b = rng.standard_normal(3).astype(dtype)
    dout3 = rng.standard_normal((4, 3)).astype(dtype)
    labels = np.array([0, 2, 1, 0])
    one_hot = np.eye(3, dtype=dtype)[labels]
    relu, sigmoid = fast_layers.Relu(), fast_layers.Sigmoid()
    affine, loss = fast_layers.Affine(W, b), fast_layers.SoftmaxWithLoss()
    relu.forward(x)
    sigmoid.forward(x)
    affine.forward(x)
    loss.forward(dout3, labels)
    bad_x = np.ones((4, 5), dtype)
    complex_x = np.ones((4, 6), complex)
    float_labels = labels.astype(np.float64)

    return [
        lambda: relu.forward(x),
        lambda: relu.backward(x),
        lambda: relu.forward(x_f),
        lambda: sigmoid.forward(x_strided),
        lambda: sigmoid.backward(x),
        lambda: affine.forward(x),
        lambda: affine.backward(dout3),
        lambda: affine.forward(x_f),
        lambda: loss.forward(dout3, labels),
        lambda: loss.backward(),
        lambda: loss.forward(dout3, one_hot),
        lambda: loss.backward(2.0),
        # error paths: each raises before any kernel runs
        lambda: affine.forward(bad_x),                       # ValueError
        lambda: relu.backward(bad_x),                        # ValueError
        lambda: sigmoid.forward(complex_x),                  # TypeError
        lambda: loss.forward(dout3, float_labels),           # TypeError
        lambda: loss.forward(dout3, labels[:3]),             # ValueError
        lambda: fast_layers.Relu().backward(x),              # RuntimeError
    ]


def run(calls, n):
    """n calls round-robin; returns how many raised."""
    raised = 0
    k = len(calls)
    for i in range(n):
        try:
            calls[i % k]()
        except (ValueError, TypeError, RuntimeError):
            raised += 1
    return raised


def measure(kind):
    """RSS after warm-up, after 20k and after 100k calls (in this process)."""
    if kind == "leak":
        leaked = []
        calls = [lambda: leaked.append(np.empty(8))]
    else:
        calls = make_calls(np.dtype(kind))
    run(calls, 5_000 if kind != "leak" else 0)     # warm-up: caches, free lists, arenas
    gc.collect()
    start = rss_bytes()
    raised = run(calls, SAMPLE_AT)
    gc.collect()
    at_20k = rss_bytes()
    raised += run(calls, TOTAL_CALLS - SAMPLE_AT)
    gc.collect()
    return {"start": start, "at_20k": at_20k, "at_100k": rss_bytes(), "raised": raised,
            "calls_per_cycle": len(calls)}


def measure_in_fresh_process(kind):
    """``measure`` in a new interpreter: memory freed by earlier tests in this
    process would otherwise absorb a leak without RSS growing."""
    tests = os.path.dirname(os.path.abspath(__file__))
    code = (f"import sys, json; sys.path.insert(0, {tests!r}); import test_leaks; "
            f"print(json.dumps(test_leaks.measure({kind!r})))")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (os.path.dirname(tests), os.environ.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, "-W", "ignore::RuntimeWarning", "-c", code],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_rss_is_steady_over_100k_layer_calls(dtype):
    m = measure_in_fresh_process(dtype)
    growth = m["at_100k"] - m["at_20k"]
    # the error paths really ran: the last 6 of every 18 calls raise
    k = m["calls_per_cycle"]
    expected = sum(1 for n in (SAMPLE_AT, TOTAL_CALLS - SAMPLE_AT)
                   for i in range(n) if i % k >= k - 6)
    assert m["raised"] == expected
    assert growth < MAX_GROWTH, (
        f"RSS grew by {growth / 2**20:.2f} MiB from call 20k to 100k "
        f"(after warm-up {m['start'] / 2**20:.1f} MiB, at 20k {m['at_20k'] / 2**20:.1f} MiB, "
        f"at 100k {m['at_100k'] / 2**20:.1f} MiB)")


def test_leak_detector_detects_a_leak():
    """The same measurement catches a leak of one small array per call."""
    m = measure_in_fresh_process("leak")
    growth = m["at_100k"] - m["at_20k"]
    assert m["raised"] == 0
    assert growth >= MAX_GROWTH, f"an 80,000-array leak grew RSS by only {growth} bytes"


def test_rejected_train_steps_do_not_accumulate_memory():
    net = fast_networks.TwoLayerNet(20, 16, 4, seed=0)
    opt = fast_optimizers.Adam(lr=0.01)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((32, 20))
    t = rng.integers(0, 4, 32)
    bad = [
        (x, np.where(t == 3, 4, t)),          # a label == C
        (x, t.astype(float)),                 # float labels
        (x, t[:31]),                          # label count
        (x[:, :19], t),                       # features
    ]
    for _ in range(5):
        net.train_step(x, t, opt)
    params = {k: v.copy() for k, v in net.params.items()}

    def reject(n):
        for i in range(n):
            xb, tb = bad[i % len(bad)]
            with pytest.raises((ValueError, TypeError)):
                net.train_step(xb, tb, opt)

    reject(100)
    tracemalloc.start()
    try:
        reject(200)
        gc.collect()
        first, _ = tracemalloc.get_traced_memory()
        reject(1000)
        gc.collect()
        second, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert second - first < 16 * 1024, f"{second - first} bytes more after 1000 rejected steps"
    for key, value in params.items():                      # nothing was updated
        assert np.array_equal(net.params[key], value), key
    assert opt.iter == 5
