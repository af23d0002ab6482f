"""Compiled networks and optimizers against the NumPy reference."""
import tracemalloc

import numpy as np
import pytest

import fastbp
from fastbp import networks as fast_nets
from fastbp import optimizers as fast_opt
from fastbp.reference import networks as ref_nets
from fastbp.reference import optimizers as ref_opt

OPTIMIZERS = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"]


def _blobs(n=120, d=20, c=4, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((c, d)) * 3
    t = rng.integers(0, c, n)
    x = centers[t] + rng.standard_normal((n, d))
    return x, t


def _pair(kind, **kw):
    if kind == "two":
        return (fast_nets.TwoLayerNet(20, 16, 4, seed=3, **kw),
                ref_nets.TwoLayerNet(20, 16, 4, seed=3, **kw))
    return (fast_nets.MultiLayerNet(20, [16, 12], 4, seed=3, **kw),
            ref_nets.MultiLayerNet(20, [16, 12], 4, seed=3, **kw))


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("kind,kw", [
    ("two", {}),
    ("multi", {"activation": "relu"}),
    ("multi", {"activation": "sigmoid", "weight_decay_lambda": 0.05}),
])
def test_train_step_matches_reference_loss_curve(name, kind, kw):
    fast, ref = _pair(kind, **kw)
    for key in ref.params:
        assert np.array_equal(fast.params[key], ref.params[key])     # same seed, same start
    of = fast_opt.get_optimizer(name, lr=0.05)
    orf = ref_opt.get_optimizer(name, lr=0.05)
    x, t = _blobs()
    fast_losses, ref_losses = [], []
    for step in range(25):
        batch = slice((step * 17) % 100, (step * 17) % 100 + 20)
        fast_losses.append(fast.train_step(x[batch], t[batch], of))
        ref_losses.append(ref.train_step(x[batch], t[batch], orf))
    np.testing.assert_allclose(fast_losses, ref_losses, rtol=0, atol=1e-9)
    for key in ref.params:
        np.testing.assert_allclose(fast.params[key], ref.params[key], rtol=1e-9, atol=1e-12)
    assert fast_losses[-1] < fast_losses[0]


def test_train_step_equals_gradient_plus_update():
    fast, _ = _pair("two")
    twin, _ = _pair("two")
    x, t = _blobs()
    loss_fused = fast.train_step(x[:32], t[:32], fast_opt.SGD(lr=0.1))
    loss = twin.loss(x[:32], t[:32])
    grads = twin.gradient(x[:32], t[:32])
    fast_opt.SGD(lr=0.1).update(twin.params, grads)
    assert loss_fused == pytest.approx(loss, rel=1e-13)
    for key in twin.params:
        np.testing.assert_allclose(fast.params[key], twin.params[key], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_train_step_keeps_dtype_and_accepts_uint8_and_one_hot(dtype):
    net = fast_nets.TwoLayerNet(20, 8, 4, seed=1, dtype=dtype)
    ref = ref_nets.TwoLayerNet(20, 8, 4, seed=1, dtype=dtype)
    rng = np.random.default_rng(5)
    x = rng.integers(0, 255, (10, 20)).astype(np.uint8)
    t = np.eye(4)[rng.integers(0, 4, 10)]
    loss = net.train_step(x, t, fast_opt.SGD(lr=0.001))
    ref_loss = ref.train_step(x, t, ref_opt.SGD(lr=0.001))
    assert all(p.dtype == dtype for p in net.params.values())
    tol = 1e-4 if dtype == np.float32 else 1e-10
    assert loss == pytest.approx(ref_loss, rel=tol)


def test_train_step_bad_labels_raise_and_change_nothing():
    net, _ = _pair("two")
    before = {k: v.copy() for k, v in net.params.items()}
    x, t = _blobs()
    for bad, exc in [(np.array([0, 1, 4] + [0] * 17), ValueError),
                     (np.array([-1] + [0] * 19), ValueError),
                     (t[:19], ValueError),
                     (t[:20].reshape(20, 1).astype(float), ValueError),
                     (t[:20].astype(float), TypeError)]:
        with pytest.raises(exc, match="t:"):
            net.train_step(x[:20], bad, fast_opt.SGD())
    with pytest.raises(ValueError, match="x:"):
        net.train_step(x[:20, :19], t[:20], fast_opt.SGD())
    for key in before:
        assert np.array_equal(net.params[key], before[key])


def test_foreign_optimizer_gets_copies():
    class Keeper:
        def __init__(self):
            self.seen = []

        def update(self, params, grads):
            self.seen.append(grads)
            for key in params:
                params[key] -= 0.1 * grads[key]

    net, _ = _pair("two")
    keeper = Keeper()
    x, t = _blobs()
    net.train_step(x[:20], t[:20], keeper)
    first = {k: v.copy() for k, v in keeper.seen[0].items()}
    net.train_step(x[20:40], t[20:40], keeper)
    for key in first:
        assert np.array_equal(keeper.seen[0][key], first[key])   # not overwritten later


@pytest.mark.skipif(not fastbp.COMPILED, reason="the fused path needs the compiled core")
def test_steady_state_train_step_allocates_nothing():
    net = fast_nets.TwoLayerNet(784, 50, 10, seed=0)
    opt = fast_opt.SGD(lr=0.1)
    rng = np.random.default_rng(0)
    x = rng.random((100, 784))
    t = rng.integers(0, 10, 100)
    for _ in range(20):
        net.train_step(x, t, opt)
    tracemalloc.start()
    for _ in range(200):
        net.train_step(x, t, opt)
    first, _ = tracemalloc.get_traced_memory()
    for _ in range(1000):
        net.train_step(x, t, opt)
    second, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert second - first < 4096          # no growth
    assert peak - first < 64 * 1024       # no per-step array of the batch's size


@pytest.mark.parametrize("change", ["fortran W1", "float32 b2", "strided W2"])
def test_params_the_compiled_step_cannot_take_train_like_the_reference(change):
    """Params replaced by arrays the compiled step refuses (another layout or
    dtype) send train_step the reference way, with the reference's numbers."""
    fast, ref = _pair("two")
    for net in (fast, ref):
        if change == "fortran W1":
            net.params["W1"] = np.asfortranarray(net.params["W1"])
        elif change == "float32 b2":
            net.params["b2"] = net.params["b2"].astype(np.float32)
        else:
            wide = np.zeros((net.params["W2"].shape[0], 2 * net.params["W2"].shape[1]))
            wide[:, ::2] = net.params["W2"]
            net.params["W2"] = wide[:, ::2]
    x, t = _blobs()
    for step in range(3):
        batch = slice(20 * step, 20 * step + 20)
        loss = fast.train_step(x[batch], t[batch], fast_opt.SGD(lr=0.1))
        assert loss == pytest.approx(ref.train_step(x[batch], t[batch], ref_opt.SGD(lr=0.1)),
                                     rel=1e-12)
    for key in ref.params:
        np.testing.assert_allclose(fast.params[key], ref.params[key], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_accuracy_in_row_blocks_equals_one_pass(dtype):
    """accuracy() predicts in blocks of _PREDICT_BLOCK rows: the same classes as
    one predict over the whole batch, for image-shaped and one-hot inputs too."""
    rng = np.random.default_rng(3)
    net = fast_nets.TwoLayerNet(784, 50, 10, dtype=dtype, seed=0)
    n = 2 * net._PREDICT_BLOCK + 77                  # two whole blocks and a part
    x = rng.random((n, 1, 28, 28)).astype(np.float32)
    # labels the net gets right about half the time, so a misaligned block shows
    predicted = np.argmax(net.predict(x), axis=1)
    t = np.where(rng.random(n) < 0.5, predicted, (predicted + 1) % 10)
    expected = float(np.mean(predicted == t))
    assert net.accuracy(x, t) == expected
    assert net.accuracy(x, np.eye(10)[t]) == expected
    ref = ref_nets.TwoLayerNet(784, 50, 10, dtype=dtype, seed=0)
    assert ref.accuracy(x, t) == expected
