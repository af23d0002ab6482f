"""Optimizers inside ``train_step``, and aliased arguments.

* ``train_step`` calls an optimizer's ``update()`` whenever a subclass
  overrides it (the fused paths are for fastbp's own classes): a subclass
  that clips, freezes or logs in ``update()`` was bypassed, and ``Trainer``
  with it.  A subclass that overrides ``_update_one`` (the per-array hook)
  is honoured by the fused paths too.
* The aliasing contract (README, "Threads and state"): every call reads its
  inputs as they were when it was called.  ``update(params, grads)`` with a
  gradient that is its own parameter (``update(p, p)``) copies it first; a
  ``train_step`` whose x is a parameter (``x is params['W1']``) copies x
  first; parameters that share memory go the reference way.  The compiled
  and the reference paths agree on all of these (they differed by up to
  0.13 for Nesterov, 5e-4 for the fused SGD step).
"""
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import run_isolated
from fastbp import networks as fast_networks
from fastbp import optimizers as fast_optimizers
from fastbp.reference import multi_layer_net_extend as ref_extend
from fastbp.reference import networks as ref_networks
from fastbp.reference import optimizers as ref_optimizers
from fastbp.trainer import Trainer

OPTIMIZER_NAMES = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")


def clipped(base):
    """A subclass of ``base`` clipping every gradient to [-limit, limit] in update()."""
    class Clipped(base):
        limit = 1e-3
        calls = 0

        def update(self, params, grads):
            type(self).calls += 1
            super().update(params, {k: np.clip(g, -self.limit, self.limit)
                                    for k, g in grads.items()})
    return Clipped


def data(n=16, d=12, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) * 3, rng.integers(0, 10, n)


NETS = {
    "TwoLayerNet": lambda m: m.TwoLayerNet(12, 8, 10, weight_init_std=0.5, seed=0),
    "MultiLayerNet": lambda m: m.MultiLayerNet(12, [8, 7], 10, weight_decay_lambda=0.1, seed=0),
    "MultiLayerNetExtend": lambda m: m.MultiLayerNetExtend(12, [8], 10, use_batchnorm=True,
                                                           seed=0),
    # a small convnet: its fused step has an optimizer path of its own
    "SimpleConvNet": lambda m: m.SimpleConvNet(
        (1, 6, 6), {"filter_num": 3, "filter_size": 3, "pad": 0, "stride": 1},
        hidden_size=7, weight_init_std=0.5, seed=0),
}


def data_for(net, n=16):
    """A batch for NETS[net]: 12 features, or 1 x 6 x 6 images."""
    x, t = data(n, 36 if net == "SimpleConvNet" else 12)
    return (x.reshape(n, 1, 6, 6) if net == "SimpleConvNet" else x), t


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
@pytest.mark.parametrize("net", NETS)
def test_train_step_calls_an_overridden_update(net, name):
    base = type(fast_optimizers.get_optimizer(name))
    fast, oracle = NETS[net](fast_networks), NETS[net](fast_networks)
    fast_opt = clipped(base)(lr=0.1)
    oracle_opt = clipped(type(ref_optimizers.get_optimizer(name)))(lr=0.1)
    x, t = data_for(net)
    for _ in range(3):
        loss = fast.train_step(x, t, fast_opt)
        # the oracle: gradients, then the clipping update (what the book does)
        expected_loss, grads = oracle.loss_and_gradient(x, t)
        oracle_opt.update(oracle.params, grads)
        assert loss == pytest.approx(expected_loss, rel=1e-12)
    assert type(fast_opt).calls == 3
    for key, value in oracle.params.items():
        # atol 1e-12: a bias before batch normalisation has a zero gradient in
        # exact arithmetic, so b1 is rounding noise (~1e-13) that differs with
        # FMA contraction (aarch64's GCC contracts by default)
        np.testing.assert_allclose(fast.params[key], value, rtol=1e-12, atol=1e-12,
                                   err_msg=key)
    # the clip made a difference: the same steps unclipped end elsewhere
    plain, plain_opt = NETS[net](fast_networks), base(lr=0.1)
    for _ in range(3):
        plain.train_step(x, t, plain_opt)
    assert not np.allclose(plain.params["W1"], fast.params["W1"], rtol=1e-6)
    if name == "sgd":       # 3 steps of lr * (a gradient clipped to 1e-3)
        start = NETS[net](fast_networks).params["W1"]
        assert np.abs(fast.params["W1"] - start).max() <= 3 * 0.1 * 1e-3 * (1 + 1e-9)


def test_trainer_uses_the_overridden_update():
    Clipped = clipped(fast_optimizers.SGD)
    Clipped.calls = 0
    x, t = data(100)
    trainer = Trainer(fast_networks.TwoLayerNet(12, 8, 10, seed=0), x, t, x[:20], t[:20],
                      epochs=2, mini_batch_size=10, optimizer=Clipped(lr=0.1), verbose=False)
    trainer.train()
    assert Clipped.calls == trainer.n_steps == 20


def test_an_overridden_update_one_is_honoured_by_the_fused_step():
    class FrozenFirstLayer(fast_optimizers.Momentum):
        def _update_one(self, key, param, grad):
            if key not in ("W1", "b1"):
                super()._update_one(key, param, grad)
    net = fast_networks.TwoLayerNet(12, 8, 10, seed=0)
    W1, W2 = net.params["W1"].copy(), net.params["W2"].copy()
    x, t = data()
    net.train_step(x, t, FrozenFirstLayer(lr=0.1))
    np.testing.assert_array_equal(net.params["W1"], W1)
    assert np.any(net.params["W2"] != W2)


@pytest.mark.parametrize("name", OPTIMIZER_NAMES[1:])
def test_train_step_refuses_an_optimizer_whose_state_has_other_shapes(name):
    # In a subprocess: reusing a stateful optimizer on a wider network
    # segfaulted (the fused update indexed the state arrays past their end).
    code = f"""
        import numpy as np
        from fastbp.networks import TwoLayerNet
        from fastbp.optimizers import get_optimizer
        rng = np.random.default_rng(0)
        x, t = rng.random((100, 784)), rng.integers(0, 10, 100)
        opt = get_optimizer({name!r}, lr=0.01)
        TwoLayerNet(784, 10, 10, seed=0).train_step(x, t, opt)
        wide = TwoLayerNet(784, 2000, 10, seed=0)
        before = {{k: v.copy() for k, v in wide.params.items()}}
        try:
            wide.train_step(x, t, opt)
        except ValueError as exc:
            print("ValueError:", exc)
        print(all(np.array_equal(wide.params[k], before[k]) for k in before))
        """
    returncode, out, err = run_isolated(code)
    assert returncode == 0, err[-2000:]
    message, unchanged = out.strip().split("\n")
    assert message.startswith("ValueError: params['W1']: expected shape (784, 10)"), out
    assert "use a new optimizer for a different network" in message
    assert unchanged == "True"


@pytest.mark.parametrize("name", OPTIMIZER_NAMES[1:])
def test_a_convnet_step_refuses_an_optimizer_used_on_another_network(name):
    opt = fast_optimizers.get_optimizer(name, lr=0.01)
    x, t = data()
    NETS["TwoLayerNet"](fast_networks).train_step(x, t, opt)
    net = NETS["SimpleConvNet"](fast_networks)
    before = {k: v.copy() for k, v in net.params.items()}
    images, labels = data_for("SimpleConvNet")
    with pytest.raises(ValueError, match=r"params\['W1'\]: expected shape \(12, 8\)"):
        net.train_step(images, labels, opt)
    for key, value in before.items():
        np.testing.assert_array_equal(net.params[key], value, err_msg=key)


@pytest.mark.parametrize("name", OPTIMIZER_NAMES[1:])
@pytest.mark.parametrize("module", [fast_optimizers, ref_optimizers], ids=["fastbp", "reference"])
def test_a_replaced_state_array_is_refused_or_used_as_numpy_would(module, name):
    opt = module.get_optimizer(name, lr=0.1)
    param, grad = np.ones(1000), np.full(1000, 0.5)
    opt.update({"p": param}, {"p": grad})
    state_name = opt._state_names[0]
    getattr(opt, state_name)["p"] = np.zeros(10)           # too short for p
    with pytest.raises(ValueError, match=r"params\['p'\]: expected shape \(10,\)"):
        opt.update({"p": param}, {"p": grad})
    # the same shape, another layout: the kernels can't take it, NumPy can
    getattr(opt, state_name)["p"] = np.zeros(2000)[::2]
    reference = ref_optimizers.get_optimizer(name, lr=0.1)
    ref_param = np.ones(1000)
    reference.update({"p": ref_param}, {"p": grad})
    getattr(reference, state_name)["p"] = np.zeros(2000)[::2]
    for _ in range(2):          # the second update reads the state the first wrote
        opt.update({"p": param}, {"p": grad})
        reference.update({"p": ref_param}, {"p": grad})
    np.testing.assert_allclose(param, ref_param, rtol=1e-12)


# ---------------------------------------------------------------------------
# Aliasing
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_update_with_a_gradient_that_is_its_parameter(name):
    rng = np.random.default_rng(4)
    start = rng.standard_normal((30, 20))
    results = {}
    for impl, module in (("fastbp", fast_optimizers), ("reference", ref_optimizers)):
        opt = module.get_optimizer(name, lr=0.1)
        p = start.copy()
        for _ in range(3):
            opt.update({"W": p}, {"W": p})        # update(p, p)
        results[impl] = p
        # the contract: as if the gradient were a copy taken at the call
        opt = module.get_optimizer(name, lr=0.1)
        q = start.copy()
        for _ in range(3):
            opt.update({"W": q}, {"W": q.copy()})
        results[impl + " copied"] = q
    for key in ("reference", "fastbp copied", "reference copied"):
        np.testing.assert_allclose(results["fastbp"], results[key], rtol=1e-12, atol=1e-14,
                                   err_msg=key)


# MultiLayerNet (MLPStep) and MultiLayerNetExtend with batch norm and
# dropout (ExtendStep): both fused steps keep the aliasing contract
REFERENCE_NETS = SimpleNamespace(MultiLayerNet=ref_networks.MultiLayerNet,
                                 MultiLayerNetExtend=ref_extend.MultiLayerNetExtend)
SQUARE_NETS = {
    "MultiLayerNet": lambda m, d: m.MultiLayerNet(d, [d, d, d], 10, weight_decay_lambda=0.01,
                                                  seed=0),
    "MultiLayerNetExtend": lambda m, d: m.MultiLayerNetExtend(
        d, [d, d, d], 10, weight_decay_lambda=0.01, use_batchnorm=True, use_dropout=True,
        dropout_ration=0.2, seed=0),
}


def assert_same_params(net, other):
    """Every parameter within 1e-12, except the biases that feed batch norm:
    their gradient is zero in exact arithmetic, so they hold rounding noise
    (~1e-17 a step) that Adam scales up to ~1e-12 (lr * noise / eps): 1e-10."""
    noise = {f"b{i}" for i in range(1, len(net.hidden_size_list) + 1)} \
        if getattr(net, "use_batchnorm", False) else set()
    for key in net.params:
        np.testing.assert_allclose(net.params[key], other.params[key], rtol=1e-12,
                                   atol=1e-10 if key in noise else 1e-13, err_msg=key)


@pytest.mark.parametrize("net_name", SQUARE_NETS)
@pytest.mark.parametrize("name", ["sgd", "momentum", "adam"])
def test_train_step_whose_x_is_a_parameter(name, net_name):
    # a square first layer: x (50 samples of 50 features) can be W1 itself
    def net(module):
        return SQUARE_NETS[net_name](module, 50)
    t = np.arange(50) % 10
    fast, ref, copied = net(fast_networks), net(REFERENCE_NETS), net(fast_networks)
    opts = [m.get_optimizer(name, lr=0.05) for m in (fast_optimizers, ref_optimizers,
                                                     fast_optimizers)]
    for _ in range(3):
        loss = fast.train_step(fast.params["W1"], t, opts[0])
        ref_loss = ref.train_step(ref.params["W1"], t, opts[1])
        copied_loss = copied.train_step(copied.params["W1"].copy(), t, opts[2])
        assert loss == pytest.approx(ref_loss, rel=1e-12)
        assert loss == pytest.approx(copied_loss, rel=1e-12)
    assert_same_params(fast, ref)
    assert_same_params(fast, copied)


# (net, the parameter made to share memory, the one it shares, as a view?,
# the layer attribute that holds it)
SHARED = [
    (net_name, "W3", "W2", view, ("Affine3", "W"))
    for net_name in SQUARE_NETS for view in (False, True)
] + [("MultiLayerNetExtend", "gamma3", "gamma2", False, ("BatchNorm3", "gamma"))]


@pytest.mark.parametrize("net_name,key,source,view,holder", SHARED,
                         ids=[f"{n}-{k} is {'a view of ' if v else ''}{s}"
                              for n, k, s, v, _ in SHARED])
@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_train_step_with_parameters_sharing_memory_matches_the_reference(
        name, net_name, key, source, view, holder):
    # W3 is W2 (or a view of it; or gamma3 is gamma2): the fused step would
    # read values it already overwrote, so the step goes the reference way.
    def net(module):
        n = SQUARE_NETS[net_name](module, 20)
        shared = n.params[source][...] if view else n.params[source]
        n.params[key] = shared
        setattr(n.layers[holder[0]], holder[1], shared)
        return n
    x, t = data(n=16, d=20)
    fast, ref = net(fast_networks), net(REFERENCE_NETS)
    assert np.shares_memory(fast.params[key], fast.params[source])
    fast_opt = fast_optimizers.get_optimizer(name, lr=0.1)
    ref_opt = ref_optimizers.get_optimizer(name, lr=0.1)
    for _ in range(3):
        assert fast.train_step(x, t, fast_opt) == pytest.approx(
            ref.train_step(x, t, ref_opt), rel=1e-12)
    assert_same_params(fast, ref)


@pytest.mark.parametrize("name", ["sgd", "momentum"])
def test_deep_convnet_step_with_biases_sharing_memory_matches_the_reference(name):
    # DeepConvNet's b1 and b2 have one shape: b2 is b1 gives the reference's
    # numbers (the fused convnet step computes every gradient before it
    # updates anything)
    from fastbp.reference import convnets as ref_convnets
    rng = np.random.default_rng(0)
    x, t = rng.random((4, 1, 28, 28)), rng.integers(0, 10, 4)
    fast, ref = fast_networks.DeepConvNet(seed=3), ref_convnets.DeepConvNet(seed=3)
    for net in (fast, ref):
        net.params["b2"] = net.layers[2].b = net.params["b1"]
    fast_opt = fast_optimizers.get_optimizer(name, lr=0.1)
    ref_opt = ref_optimizers.get_optimizer(name, lr=0.1)
    for _ in range(2):
        assert fast.train_step(x, t, fast_opt) == pytest.approx(
            ref.train_step(x, t, ref_opt), rel=1e-12)
    assert fast.params["b2"] is fast.params["b1"]
    for key in fast.params:
        np.testing.assert_allclose(fast.params[key], ref.params[key], rtol=1e-10, atol=1e-14,
                                   err_msg=key)
