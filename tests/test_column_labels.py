"""Integer labels of shape (N, 1) are labels (N,) when there are two classes or
more (the book's ``ch07/gradient_check.py`` passes ``np.array([1]).reshape((1, 1))``):
in SoftmaxWithLoss, the loss functions and the networks, compiled and
reference.  Float (N, 1) labels and other shapes stay refused."""
import numpy as np
import pytest

import fastbp.functions as fast_functions
import fastbp.layers as fast_layers
import fastbp.networks as fast_networks
import fastbp.optimizers as fast_optimizers
import fastbp.reference.functions as ref_functions
import fastbp.reference.layers as ref_layers
import fastbp.reference.networks as ref_networks
import fastbp.reference.optimizers as ref_optimizers
from conftest import assert_identical

LAYERS = pytest.mark.parametrize("L", [fast_layers, ref_layers], ids=["compiled", "reference"])
FUNCTIONS = pytest.mark.parametrize("F", [fast_functions, ref_functions],
                                    ids=["compiled", "reference"])
NETWORKS = pytest.mark.parametrize("nets,opt", [(fast_networks, fast_optimizers),
                                                (ref_networks, ref_optimizers)],
                                   ids=["compiled", "reference"])
INT_DTYPES = pytest.mark.parametrize("label_dtype", [np.int64, np.int32, np.uint8])


def logits_and_labels(rng, n=7, c=4, label_dtype=np.int64):
    x = rng.standard_normal((n, c))
    t = rng.integers(0, c, n).astype(label_dtype)
    return x, t


@INT_DTYPES
@pytest.mark.parametrize("n", [1, 7])
@LAYERS
def test_softmax_with_loss_takes_column_labels(L, n, label_dtype, rng):
    x, t = logits_and_labels(rng, n=n, label_dtype=label_dtype)
    column = t.reshape(n, 1)
    kept = column.copy()
    flat_layer, column_layer = L.SoftmaxWithLoss(), L.SoftmaxWithLoss()
    assert column_layer.forward(x, column) == flat_layer.forward(x, t)
    assert_identical(column_layer.backward(), flat_layer.backward())
    assert_identical(column, kept)
    assert column_layer.t is column                  # t kept as given, as in the book


@FUNCTIONS
def test_loss_functions_take_column_labels(F, rng):
    x, t = logits_and_labels(rng)
    y, loss = F.softmax_cross_entropy(x, t.reshape(-1, 1))
    y_flat, loss_flat = F.softmax_cross_entropy(x, t)
    assert_identical(y, y_flat)
    assert_identical(loss, loss_flat)
    assert F.cross_entropy_error(y, t.reshape(-1, 1)) == F.cross_entropy_error(y, t)
    # one sample, the book's [[1]]
    assert F.cross_entropy_error(y[0], np.array([[t[0]]])) == F.cross_entropy_error(y[:1], t[:1])


@LAYERS
def test_one_class_column_is_one_hot(L):
    """With C = 1 an (N, 1) array is the one-hot encoding of the single class
    (as labels, 1 would be out of range)."""
    x = np.array([[0.5], [2.0]])
    layer = L.SoftmaxWithLoss()
    assert layer.forward(x, np.array([[1], [1]])) == 0.0
    np.testing.assert_array_equal(layer.backward(), [[0.0], [0.0]])
    with pytest.raises(ValueError, match="got 1"):
        L.SoftmaxWithLoss().forward(x, np.array([1, 1]))


@pytest.mark.parametrize("bad,exc,needle", [
    (lambda t: t.reshape(-1, 1).astype(np.float64), ValueError, "got shape (7, 1)"),
    (lambda t: t.reshape(-1, 1).astype(bool), ValueError, "got shape (7, 1)"),
    (lambda t: np.stack([t, t], axis=1), ValueError, "got shape (7, 2)"),
    (lambda t: t.reshape(1, -1), ValueError, "got shape (1, 7)"),
    (lambda t: t.reshape(-1, 1, 1), ValueError, "got shape (7, 1, 1)"),
    (lambda t: np.where(t == t[0], 4, t).reshape(-1, 1), ValueError, "got 4"),
    (lambda t: t[:6].reshape(-1, 1), ValueError, "got 6"),
], ids=["float", "bool", "two columns", "row", "3-D", "label == C", "fewer"])
@LAYERS
def test_other_label_shapes_stay_refused(L, bad, exc, needle, rng):
    x, t = logits_and_labels(rng)
    t_bad = bad(t)
    layer = L.SoftmaxWithLoss()
    with pytest.raises(exc, match="t:") as info:
        layer.forward(x, t_bad)
    assert needle in str(info.value)
    assert layer.y is None and layer.t is None
    with pytest.raises(exc, match="t:"):
        fast_functions.softmax_cross_entropy(x, t_bad)


@NETWORKS
def test_networks_take_column_labels(nets, opt, rng):
    x = rng.standard_normal((12, 6))
    t = rng.integers(0, 3, 12)
    column = t.reshape(-1, 1)
    a = nets.TwoLayerNet(6, 5, 3, weight_init_std=0.5, seed=3)
    b = nets.TwoLayerNet(6, 5, 3, weight_init_std=0.5, seed=3)
    assert a.loss(x, column) == b.loss(x, t)
    assert a.accuracy(x, column) == b.accuracy(x, t)
    # (N, 1) labels are not argmax'ed as one-hot rows (that would make every label 0)
    assert a.accuracy(x, column) == np.mean(np.argmax(a.predict(x), axis=1) == t)
    grads_a, grads_b = a.gradient(x, column), b.gradient(x, t)
    for key in grads_b:
        assert_identical(grads_a[key], grads_b[key])
    assert a.train_step(x, column, opt.SGD(lr=0.1)) == b.train_step(x, t, opt.SGD(lr=0.1))
    for key in a.params:
        assert_identical(a.params[key], b.params[key])
    with pytest.raises(ValueError, match="t:"):
        a.accuracy(x, column.astype(float)[:5])
