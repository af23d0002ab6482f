"""Copies: every network, layer and optimizer pickles and deep-copies at any
point, and the copy goes on exactly as the original would.

After its first ``train_step`` a network cached its compiled step (a
Cython object that can't be pickled): ``copy.deepcopy`` failed mid-training
("keep the best model").  Copies now leave the cache out and rebuild it
(``fastbp._state``).  Each test trains, copies, then trains the original
and the copy on with equal optimizers and compares every parameter bit for
bit; the copy's arrays are its own.
"""
import copy
import pickle
from types import SimpleNamespace

import numpy as np
import pytest

from fastbp import layers as fast_layers
from fastbp import networks as fast_networks
from fastbp import optimizers as fast_optimizers
from fastbp.reference import convnets as ref_convnets
from fastbp.reference import layers as ref_layers
from fastbp.reference import multi_layer_net_extend as ref_extend
from fastbp.reference import networks as ref_networks
from fastbp.reference import optimizers as ref_optimizers

IMPLS = {
    "fastbp": SimpleNamespace(networks=fast_networks, optimizers=fast_optimizers),
    "reference": SimpleNamespace(
        networks=SimpleNamespace(TwoLayerNet=ref_networks.TwoLayerNet,
                                 MultiLayerNet=ref_networks.MultiLayerNet,
                                 MultiLayerNetExtend=ref_extend.MultiLayerNetExtend,
                                 SimpleConvNet=ref_convnets.SimpleConvNet,
                                 DeepConvNet=ref_convnets.DeepConvNet),
        optimizers=ref_optimizers),
}

NETWORKS = {
    "TwoLayerNet": (lambda m: m.TwoLayerNet(12, 8, 10, seed=0), (6, 12)),
    "MultiLayerNet": (lambda m: m.MultiLayerNet(12, [8, 7], 10, activation="sigmoid",
                                                weight_decay_lambda=0.01, seed=0), (6, 12)),
    "MultiLayerNetExtend": (lambda m: m.MultiLayerNetExtend(12, [8, 7], 10, use_dropout=True,
                                                            use_batchnorm=True, seed=0),
                            (6, 12)),
    "SimpleConvNet": (lambda m: m.SimpleConvNet((1, 8, 8), {"filter_num": 3, "filter_size": 3},
                                                hidden_size=8, seed=0), (6, 1, 8, 8)),
    "DeepConvNet": (lambda m: m.DeepConvNet((1, 8, 8), hidden_size=8, seed=0), (6, 1, 8, 8)),
}

COPIES = {
    "deepcopy": copy.deepcopy,
    "pickle": lambda obj: pickle.loads(pickle.dumps(obj)),
    "pickle protocol 2": lambda obj: pickle.loads(pickle.dumps(obj, protocol=2)),
}

# when the copy is made: before any call, after a loss (layers hold a forward's
# state), after train_step (the compiled step cached), after gradient
POINTS = ("fresh", "after loss", "after train_step", "after gradient")


def data(x_shape, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(x_shape), rng.integers(0, 10, x_shape[0])


def bring_to(net, point, optimizer, x, t):
    if point == "after loss":
        net.loss(x, t)
    elif point == "after train_step":
        net.train_step(x, t, optimizer)
    elif point == "after gradient":
        net.gradient(x, t)


@pytest.mark.parametrize("how", COPIES)
@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("impl", IMPLS)
def test_a_copy_trains_on_as_the_original_would(impl, network, point, how):
    build, x_shape = NETWORKS[network]
    module = IMPLS[impl]
    net = build(module.networks)
    optimizer = module.optimizers.Adam(lr=0.01)
    x, t = data(x_shape, 1)
    bring_to(net, point, optimizer, x, t)
    twin, twin_optimizer = COPIES[how]((net, optimizer))
    for step in range(3):
        xs, ts = data(x_shape, 10 + step)
        loss = net.train_step(xs, ts, optimizer)
        assert twin.train_step(xs, ts, twin_optimizer) == loss
    for key, value in net.params.items():
        np.testing.assert_array_equal(twin.params[key], value, err_msg=key)
        assert not np.shares_memory(twin.params[key], value)
    np.testing.assert_array_equal(twin.predict(x), net.predict(x))


@pytest.mark.parametrize("network", NETWORKS)
def test_a_copy_is_independent_and_its_layers_use_its_own_arrays(network):
    build, x_shape = NETWORKS[network]
    net = build(fast_networks)
    x, t = data(x_shape, 1)
    net.train_step(x, t, fast_optimizers.SGD(0.1))
    twin = copy.deepcopy(net)
    for key in twin.params:
        twin.params[key][...] = 0          # in place: the copy's layers see it
    assert all(np.any(value != 0) for key, value in net.params.items() if key[0] == "W")
    logits = twin.predict(x)
    np.testing.assert_array_equal(logits, np.zeros_like(logits))


LAYERS = {
    "Relu": (lambda m: m.Relu(), (5, 4), None),
    "Sigmoid": (lambda m: m.Sigmoid(), (5, 4), None),
    "Affine": (lambda m: m.Affine(np.arange(12.0).reshape(4, 3) / 10, np.ones(3)), (5, 4),
               None),
    "SoftmaxWithLoss": (lambda m: m.SoftmaxWithLoss(), (5, 4), np.array([0, 1, 2, 3, 0])),
    "Dropout": (lambda m: m.Dropout(0.3, rng=5), (5, 4), None),
    "BatchNormalization": (lambda m: m.BatchNormalization(np.ones(4), np.zeros(4)), (5, 4),
                           None),
    "Convolution": (lambda m: m.Convolution(np.ones((2, 1, 2, 2)) / 4, np.zeros(2)),
                    (5, 1, 4, 4), None),
    "Pooling": (lambda m: m.Pooling(2, 2), (5, 1, 4, 4), None),
}


@pytest.mark.parametrize("how", COPIES)
@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("module", [fast_layers, ref_layers], ids=["fastbp", "reference"])
def test_a_layer_copied_between_forward_and_backward_gives_the_same_backward(module, layer,
                                                                             how):
    build, x_shape, labels = LAYERS[layer]
    original = build(module)
    x = np.random.default_rng(2).standard_normal(x_shape)
    out = original.forward(x) if labels is None else original.forward(x, labels)
    twin = COPIES[how](original)
    dout = 1 if labels is not None else np.random.default_rng(3).standard_normal(np.shape(out))
    np.testing.assert_array_equal(twin.backward(dout), original.backward(dout))
    # and on: the next forward (Dropout draws from its copied generator)
    again = (original.forward(x), twin.forward(x)) if labels is None else \
        (original.forward(x, labels), twin.forward(x, labels))
    np.testing.assert_array_equal(again[1], again[0])
