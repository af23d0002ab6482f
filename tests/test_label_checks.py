"""Labels and data checked before they are used.

* ``accuracy(x, t)`` takes exactly the labels ``loss(x, t)`` takes, and
  refuses the rest with the same error, in every network: labels 10-19 gave
  an accuracy of 0.0 and float labels were compared as floats.
* ``Trainer`` checks its four arrays when it is built, against the network
  and each other, naming the caller's array and its shape: x_test's feature
  count was checked only after the first epoch, and the error named a
  prediction block's shape.
"""
from types import SimpleNamespace

import numpy as np
import pytest

from fastbp import networks as fast_networks
from fastbp.reference import convnets as ref_convnets
from fastbp.reference import multi_layer_net_extend as ref_extend
from fastbp.reference import networks as ref_networks
from fastbp.trainer import Trainer

MODULES = {"fastbp": fast_networks,
           "reference": SimpleNamespace(TwoLayerNet=ref_networks.TwoLayerNet,
                                        MultiLayerNet=ref_networks.MultiLayerNet,
                                        MultiLayerNetExtend=ref_extend.MultiLayerNetExtend,
                                        SimpleConvNet=ref_convnets.SimpleConvNet,
                                        DeepConvNet=ref_convnets.DeepConvNet)}

# (build(module), x) per network: 10 classes everywhere
NETWORKS = {
    "TwoLayerNet": (lambda m: m.TwoLayerNet(12, 6, 10, seed=0), (8, 12)),
    "MultiLayerNet": (lambda m: m.MultiLayerNet(12, [6, 5], 10, seed=0), (8, 12)),
    "MultiLayerNetExtend": (lambda m: m.MultiLayerNetExtend(12, [6], 10, use_batchnorm=True,
                                                            seed=0), (8, 12)),
    "SimpleConvNet": (lambda m: m.SimpleConvNet((1, 8, 8), {"filter_num": 2, "filter_size": 3},
                                                hidden_size=6, seed=0), (8, 1, 8, 8)),
    "DeepConvNet": (lambda m: m.DeepConvNet((1, 8, 8), hidden_size=6, seed=0), (8, 1, 8, 8)),
}

T = np.array([0, 1, 2, 3, 4, 5, 6, 9])
BAD_LABELS = {
    "labels 10-17": T + 10,
    "negative label": np.where(T == 3, -1, T),
    "float labels": T.astype(float),
    "3-column one-hot": np.eye(3)[T % 3],
    "7 labels for 8 samples": T[:7],
    "(N, 2) integers": np.stack([T, T], axis=1),
    "strings": T.astype(str),
}


@pytest.mark.parametrize("labels", BAD_LABELS)
@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("impl", MODULES)
def test_accuracy_refuses_exactly_what_loss_refuses(impl, network, labels):
    build, x_shape = NETWORKS[network]
    net = build(MODULES[impl])
    x = np.random.default_rng(0).standard_normal(x_shape)
    t = BAD_LABELS[labels]
    with pytest.raises((TypeError, ValueError)) as from_loss:
        net.loss(x, t)
    with pytest.raises(type(from_loss.value)) as from_accuracy:
        net.accuracy(x, t)
    assert str(from_accuracy.value) == str(from_loss.value)
    assert str(from_accuracy.value).startswith("t: ")


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("impl", MODULES)
def test_accuracy_takes_what_loss_takes(impl, network):
    build, x_shape = NETWORKS[network]
    net = build(MODULES[impl])
    x = np.random.default_rng(1).standard_normal(x_shape)
    predicted = np.argmax(net.predict(x), axis=1)
    t = np.where(np.arange(8) < 5, predicted, (predicted + 1) % 10)    # 5 of 8 right
    for labels in (t, t.reshape(-1, 1), t.astype(np.uint8), np.eye(10)[t],
                   np.eye(10, dtype=np.float32)[t] * 0.5):
        net.loss(x, labels)                     # accepted by loss ...
        assert net.accuracy(x, labels) == 5 / 8     # ... and by accuracy, same answer


# ---------------------------------------------------------------------------
# Trainer: the data checked when it is built
# ---------------------------------------------------------------------------
def mlp():
    return fast_networks.TwoLayerNet(12, 6, 10, seed=0)


def data(n_train=40, n_test=20, features=12, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n_train, features)), rng.integers(0, 10, n_train),
            rng.standard_normal((n_test, features)), rng.integers(0, 10, n_test))


TRAINER_CASES = {
    # name: (change the data, exception, the message's needles)
    "x_test with other features": (
        lambda d: (d[0], d[1], np.zeros((20, 7)), d[3]), ValueError,
        ["x_test:", "12 features", "got 7", "(20, 7)"]),
    "x_train with other features": (
        lambda d: (np.zeros((40, 7)), d[1], d[2], d[3]), ValueError,
        ["x_train:", "12 features", "(40, 7)"]),
    "x_test samples shaped unlike x_train's": (
        lambda d: (d[0], d[1], np.zeros((20, 3, 4)), d[3]), ValueError,
        ["x_test:", "like x_train's", "(12,)", "(3, 4)"]),
    "t_train labels out of range": (
        lambda d: (d[0], d[1] + 10, d[2], d[3]), ValueError,
        ["t_train:", "labels in [0, 9]"]),
    "t_test float labels": (
        lambda d: (d[0], d[1], d[2], d[3].astype(float)), TypeError,
        ["t_test:", "integer class labels"]),
    "t_test count": (
        lambda d: (d[0], d[1], d[2], d[3][:15]), ValueError,
        ["t_test:", "20 labels", "x_test of shape (20, 12)", "got 15"]),
    "t_train 3-column one-hot": (
        lambda d: (d[0], np.eye(3)[d[1] % 3], d[2], d[3]), ValueError,
        ["t_train:", "(40, 10)", "(40, 3)"]),
    "empty x_test": (
        lambda d: (d[0], d[1], d[2][:0], d[3][:0]), ValueError,
        ["x_test:", "non-empty"]),
    "x_train of strings": (
        lambda d: (d[0].astype(str), d[1], d[2], d[3]), TypeError, ["x_train:", "dtype"]),
}


@pytest.mark.parametrize("case", TRAINER_CASES)
def test_trainer_checks_its_data_when_built_naming_the_array(case):
    change, exc, needles = TRAINER_CASES[case]
    net = mlp()
    before = {k: v.copy() for k, v in net.params.items()}
    with pytest.raises(exc) as info:
        Trainer(net, *change(data()), epochs=1, mini_batch_size=10, verbose=False)
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))
    assert all(np.array_equal(net.params[k], before[k]) for k in before)


def test_trainer_checks_a_convnet_input_dim():
    net = fast_networks.SimpleConvNet((1, 8, 8), {"filter_num": 2, "filter_size": 3},
                                      hidden_size=6, seed=0)
    x = np.zeros((10, 1, 8, 8))
    t = np.zeros(10, int)
    with pytest.raises(ValueError, match=r"x_test: expected samples of shape \(1, 8, 8\)"):
        Trainer(net, x, t, np.zeros((4, 1, 8, 9)), t[:4], verbose=False)


def test_trainer_takes_the_labels_loss_takes():
    x_train, t_train, x_test, t_test = data()
    for train_labels, test_labels in ((t_train.reshape(-1, 1), t_test.reshape(-1, 1)),
                                      (np.eye(10)[t_train], np.eye(10)[t_test]),
                                      (t_train.astype(np.uint8), t_test.astype(np.int32))):
        trainer = Trainer(mlp(), x_train, train_labels, x_test, test_labels, epochs=1,
                          mini_batch_size=10, verbose=False)
        trainer.train()
        assert trainer.n_steps == 4 and 0 <= trainer.test_acc <= 1
