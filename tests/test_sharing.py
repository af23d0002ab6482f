"""One object from several threads: calls take turns; different objects
don't wait for each other.

The contract (README, "Threads and state"): every layer, network,
optimizer and Trainer holds a lock of its own for the whole of each public
call (``fastbp._state``).  Two threads using the same object get the
results of the same calls made one after the other -- never a mix -- and
threads using different objects run side by side (the compiled kernels
release the GIL).  The tests below show both without timing anything: a
thread parked inside a call (an optimizer whose ``update`` waits for an
event) holds that object's lock, and other threads either wait for it
(same object) or finish (another object).
"""
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from fastbp import layers as fast_layers
from fastbp import networks as fast_networks
from fastbp import optimizers as fast_optimizers
from fastbp.trainer import Trainer

WAIT = 10.0          # seconds a thread that should finish may take (never reached)
PARKED = 0.5         # how long a thread that should wait is watched


def batch(n=100, d=784, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, d)), rng.integers(0, 10, n)


class ParkingSGD(fast_optimizers.SGD):
    """An SGD whose update() stops until ``release`` is set (an overridden
    update: train_step calls it inside the network's call)."""

    def __init__(self, lr=0.01):
        super().__init__(lr)
        self.inside = threading.Event()
        self.release = threading.Event()

    def update(self, params, grads):
        self.inside.set()
        assert self.release.wait(WAIT)
        super().update(params, grads)


def start(target, *args):
    done = threading.Event()
    result = {}

    def run():
        try:
            result["value"] = target(*args)
        except BaseException as exc:   # reported by the test
            result["error"] = exc
        finally:
            done.set()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, done, result


@pytest.mark.parametrize("net_class", ["TwoLayerNet", "MultiLayerNet"])
def test_same_network_from_two_threads_takes_turns(net_class):
    make = getattr(fast_networks, net_class)
    net = make(784, 50, 10, seed=0) if net_class == "TwoLayerNet" else \
        make(784, [50], 10, seed=0)
    x, t = batch()
    parking = ParkingSGD(lr=0.0)
    parked, parked_done, _ = start(net.train_step, x, t, parking)
    assert parking.inside.wait(WAIT)
    # parked holds the network: a second train_step, a predict and a save wait for it
    second, second_done, second_result = start(net.train_step, x, t, fast_optimizers.SGD(0.0))
    third, third_done, _ = start(net.predict, x)
    assert not second_done.wait(PARKED) and not third_done.is_set()
    parking.release.set()
    for done in (parked_done, second_done, third_done):
        assert done.wait(WAIT)
    assert "error" not in second_result


def test_different_networks_do_not_wait_for_each_other():
    net1 = fast_networks.TwoLayerNet(784, 50, 10, seed=0)
    net2 = fast_networks.TwoLayerNet(784, 50, 10, seed=0)
    x, t = batch()
    parking = ParkingSGD()
    parked, parked_done, _ = start(net1.train_step, x, t, parking)
    assert parking.inside.wait(WAIT)
    other, other_done, other_result = start(
        lambda: [net2.train_step(x, t, fast_optimizers.SGD(0.01)) for _ in range(20)])
    assert other_done.wait(WAIT), "a train_step on another network waited for net1"
    assert "error" not in other_result and not parked_done.is_set()
    parking.release.set()
    assert parked_done.wait(WAIT)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_same_network_from_two_threads_never_gives_wrong_losses(optimizer):
    # The issue: 395 of 400 losses wrong (lr = 0, batch 100): the shared
    # workspace was used by both threads at once with the GIL released.
    net = fast_networks.TwoLayerNet(784, 50, 10, seed=0)
    x, t = batch()
    opt = fast_optimizers.get_optimizer(optimizer, lr=0.0)
    expected = net.train_step(x, t, opt)
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda _: [net.train_step(x, t, opt) for _ in range(200)],
                             range(2)))
    assert [loss for run in runs for loss in run] == [expected] * 400


def test_same_softmax_layer_from_two_threads_gives_each_call_its_own_loss():
    # The compiled layer reuses a per-row loss buffer between calls.
    layer = fast_layers.SoftmaxWithLoss()
    rng = np.random.default_rng(1)
    inputs = [(rng.standard_normal((256, 1000)), rng.integers(0, 1000, 256)) for _ in range(2)]
    expected = [fast_layers.SoftmaxWithLoss().forward(x, t) for x, t in inputs]

    def losses(i):
        return [layer.forward(*inputs[i]) for _ in range(100)]
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(losses, range(2)))
    assert runs == [[expected[0]] * 100, [expected[1]] * 100]


def test_same_layer_from_two_threads_takes_turns():
    # A layer's forward/backward from a parked thread: the layer's lock is
    # held by it, so another thread's forward on that layer waits, and on
    # another layer does not.
    layer, other = fast_layers.Relu(), fast_layers.Relu()
    entered, release = threading.Event(), threading.Event()

    class Stall:                    # an input whose conversion waits for `release`
        def __array__(self, dtype=None, copy=None):
            entered.set()
            assert release.wait(WAIT)
            return np.ones((4, 4))
    x = np.ones((4, 4))
    stalled, stalled_done, _ = start(layer.forward, Stall())
    assert entered.wait(WAIT)
    same, same_done, _ = start(layer.forward, x)
    different, different_done, _ = start(other.forward, x)
    assert different_done.wait(WAIT)
    assert not same_done.wait(PARKED)
    release.set()
    assert stalled_done.wait(WAIT) and same_done.wait(WAIT)


def test_same_optimizer_from_two_threads_takes_turns():
    # 2 x 50 updates of a 1e6-element array by the compiled kernel (GIL
    # released): interleaved, updates would be lost.
    opt = fast_optimizers.SGD(lr=1.0)
    param = np.zeros(1_000_000)
    grad = np.full(1_000_000, -1.0)
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda _: [opt.update({"p": param}, {"p": grad}) for _ in range(50)],
                      range(2)))
    assert np.all(param == 100.0)


def test_same_trainer_from_two_threads_equals_training_twice():
    rng = np.random.default_rng(2)
    x, t = rng.random((200, 20)), rng.integers(0, 10, 200)

    def trainer():
        return Trainer(fast_networks.TwoLayerNet(20, 8, 10, seed=0), x, t, x[:50], t[:50],
                       epochs=2, mini_batch_size=20, optimizer="adam", verbose=False, seed=0)
    serial = trainer()
    serial.train()
    serial.train()
    shared = trainer()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda _: shared.train(), range(2)))
    assert shared.n_steps == serial.n_steps == 40
    assert shared.train_loss_list == serial.train_loss_list
    for key, value in serial.network.params.items():
        np.testing.assert_array_equal(shared.network.params[key], value)


def test_the_lock_wrapper_keeps_each_methods_signature_and_defaults():
    # serialised() writes a wrapper with the method's own parameters (no
    # *args/**kwargs forwarding, which cost every layer call time); methods
    # with *args or keyword-only parameters get the forwarding one.  Both hold
    # the object's lock, and both call with the caller's arguments as given.
    import inspect

    from fastbp._state import StatefulLayer

    marker = object()
    seen = []

    class Layer(StatefulLayer):
        def forward(self, x, train_flg=marker):
            seen.append(("forward", x, train_flg, self._lock._is_owned()))
            return x

        def backward(self, *douts, scale=2):
            seen.append(("backward", douts, scale, self._lock._is_owned()))
            return douts

    layer = Layer()
    assert str(inspect.signature(Layer.forward)) == "(self, x, train_flg=<object object at " \
        + hex(id(marker)) + ">)"
    assert Layer.forward.__code__.co_flags & inspect.CO_VARARGS == 0      # its own parameters
    assert Layer.backward.__code__.co_flags & inspect.CO_VARARGS           # the forwarding one
    assert layer.forward(3) == 3 and layer.forward(x=4, train_flg=False) == 4
    assert layer.backward(5, 6, scale=7) == (5, 6)
    assert seen == [("forward", 3, marker, True), ("forward", 4, False, True),
                    ("backward", (5, 6), 7, True)]
    assert not layer._lock._is_owned()
    with pytest.raises(TypeError, match=r"forward\(\) missing .* 'x'"):
        layer.forward()             # "[Layer.]forward() missing ... argument: 'x'"
    assert Layer.forward.__name__ == "forward" and Layer.forward.__wrapped__ is not None
