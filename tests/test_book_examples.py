"""The book's chapter-5 examples, and fastbp's four deliberate differences
from the book, for both the compiled layers and the reference."""
import warnings
from collections import OrderedDict

import numpy as np
import pytest

import fastbp.functions as fast_functions
import fastbp.layers as fast_layers
import fastbp.reference.functions as ref_functions
import fastbp.reference.layers as ref_layers
from conftest import assert_identical

LAYERS = pytest.mark.parametrize("L", [fast_layers, ref_layers], ids=["compiled", "reference"])
FUNCTIONS = pytest.mark.parametrize("F", [fast_functions, ref_functions],
                                    ids=["compiled", "reference"])


# ---------------------------------------------------------------------------
# 5.4: buying apples (and oranges)
# ---------------------------------------------------------------------------
@LAYERS
def test_buy_apple(L):
    apple, apple_num, tax = 100, 2, 1.1
    mul_apple_layer, mul_tax_layer = L.MulLayer(), L.MulLayer()

    apple_price = mul_apple_layer.forward(apple, apple_num)
    price = mul_tax_layer.forward(apple_price, tax)
    assert price == pytest.approx(220)

    dapple_price, dtax = mul_tax_layer.backward(1)
    dapple, dapple_num = mul_apple_layer.backward(dapple_price)
    assert dapple == pytest.approx(2.2)
    assert dapple_num == pytest.approx(110)
    assert dtax == pytest.approx(200)


@LAYERS
def test_buy_apple_orange(L):
    apple, apple_num = 100, 2
    orange, orange_num = 150, 3
    tax = 1.1
    mul_apple_layer, mul_orange_layer = L.MulLayer(), L.MulLayer()
    add_apple_orange_layer, mul_tax_layer = L.AddLayer(), L.MulLayer()

    apple_price = mul_apple_layer.forward(apple, apple_num)
    orange_price = mul_orange_layer.forward(orange, orange_num)
    all_price = add_apple_orange_layer.forward(apple_price, orange_price)
    price = mul_tax_layer.forward(all_price, tax)
    assert price == pytest.approx(715)

    dall_price, dtax = mul_tax_layer.backward(1)
    dapple_price, dorange_price = add_apple_orange_layer.backward(dall_price)
    dorange, dorange_num = mul_orange_layer.backward(dorange_price)
    dapple, dapple_num = mul_apple_layer.backward(dapple_price)
    assert dapple_num == pytest.approx(110)
    assert dapple == pytest.approx(2.2)
    assert dorange == pytest.approx(3.3)
    assert dorange_num == pytest.approx(165)
    assert dtax == pytest.approx(650)


# ---------------------------------------------------------------------------
# Difference 1: backward never writes into the caller's dout
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@LAYERS
def test_backward_leaves_dout_alone(L, dtype, order, rng):
    x = rng.standard_normal((6, 5)).astype(dtype)
    x[0, :3] = [0.0, -0.0, -1.0]                 # the book's Relu zeroes dout here
    cases = [
        (L.Relu(), x, rng.standard_normal((6, 5))),
        (L.Sigmoid(), x, rng.standard_normal((6, 5))),
        (L.Affine(rng.standard_normal((5, 4)).astype(dtype), np.zeros(4, dtype)), x,
         rng.standard_normal((6, 4))),
    ]
    for layer, inp, dout in cases:
        x_before = inp.copy()
        layer.forward(inp)
        dout = np.array(dout.astype(dtype), order=order)
        kept = dout.copy()
        dx = layer.backward(dout)
        assert_identical(dout, kept)
        assert_identical(inp, x_before)             # nor into x
        assert not np.shares_memory(dx, dout)
        assert not np.shares_memory(dx, inp)


@LAYERS
def test_softmax_with_loss_backward_leaves_dout_and_state_alone(L, rng):
    x = rng.standard_normal((4, 3))
    t = np.array([0, 2, 1, 1])
    layer = L.SoftmaxWithLoss()
    layer.forward(x, t)
    y_before, t_before = layer.y.copy(), t.copy()
    dout = np.array(1.5)
    layer.backward(dout)
    dx = layer.backward(dout)                        # twice: the first changed nothing
    assert dout == 1.5
    assert_identical(layer.y, y_before)
    assert_identical(t, t_before)
    np.testing.assert_allclose(dx, 1.5 * (y_before - np.eye(3)[t]) / 4, rtol=1e-12)


# ---------------------------------------------------------------------------
# Difference 2: SoftmaxWithLoss.backward multiplies by dout
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("one_hot", [False, True])
@LAYERS
def test_softmax_with_loss_backward_dout_two_doubles_the_gradient(L, one_hot, rng):
    x = rng.standard_normal((5, 4))
    t = rng.integers(0, 4, size=5)
    layer = L.SoftmaxWithLoss()
    layer.forward(x, np.eye(4)[t] if one_hot else t)
    base = layer.backward()
    assert np.abs(base).max() > 0
    np.testing.assert_allclose(layer.backward(dout=2.0), 2 * base, rtol=1e-15)
    np.testing.assert_allclose(layer.backward(1), base, rtol=0)


# ---------------------------------------------------------------------------
# Difference 3: the loss comes from log-softmax
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@LAYERS
def test_confident_wrong_prediction_loss_is_exact(L, dtype):
    layer = L.SoftmaxWithLoss()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = layer.forward(np.array([[1000.0, 0.0]], dtype=dtype), np.array([1]))
        dx = layer.backward()
    assert loss == pytest.approx(1000.0, rel=1e-6)
    np.testing.assert_array_equal(dx, [[1.0, -1.0]])
    assert dx.dtype == dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@LAYERS
def test_shifted_logits_give_the_same_probabilities(L, dtype):
    x = np.array([[0, 1, 2, 3], [10000, 10001, 10002, 10003]], dtype=dtype)
    layer = L.SoftmaxWithLoss()
    loss = layer.forward(x, np.array([3, 3]))
    np.testing.assert_allclose(layer.y[1], layer.y[0], rtol=1e-6)
    e = np.exp(np.arange(4.0))
    np.testing.assert_allclose(layer.y[0], e / e.sum(), rtol=1e-6)
    assert loss == pytest.approx(-np.log(e[3] / e.sum()), rel=1e-6)


@FUNCTIONS
def test_shifted_logits_softmax_function(F):
    y = F.softmax(np.array([[0.0, 1, 2, 3], [10000, 10001, 10002, 10003]]))
    np.testing.assert_allclose(y[1], y[0], rtol=1e-12)
    assert np.isfinite(y).all()


# ---------------------------------------------------------------------------
# Difference 4: sigmoid never overflows
# ---------------------------------------------------------------------------
SIGMOID_X = np.array([-1000.0, -710.0, 0.0, 710.0, 1000.0])


def check_sigmoid_values(s):
    np.testing.assert_allclose(s[:2], [0, 0], rtol=0, atol=1e-300)
    assert s[1] > 0                                  # exp(-710) = 4.5e-309 is representable
    assert s[1] == pytest.approx(np.exp(-710.0), rel=1e-12)
    np.testing.assert_array_equal(s[2:], [0.5, 1.0, 1.0])


@FUNCTIONS
def test_sigmoid_function_never_overflows(F):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_sigmoid_values(F.sigmoid(SIGMOID_X))
        special = F.sigmoid(np.array([np.nan, np.inf, -np.inf]))
    assert np.isnan(special[0])
    assert special[1] == 1.0 and special[2] == 0.0


@LAYERS
def test_sigmoid_layer_never_overflows(L):
    layer = L.Sigmoid()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = layer.forward(SIGMOID_X.reshape(1, -1))
        dx = layer.backward(np.ones((1, 5)))
        special = L.Sigmoid().forward(np.array([[np.nan, np.inf, -np.inf]]))
    check_sigmoid_values(out[0])
    assert np.isfinite(dx).all() and dx[0, 2] == 0.25
    assert np.isnan(special[0, 0]) and special[0, 1] == 1.0 and special[0, 2] == 0.0


# ---------------------------------------------------------------------------
# A book-style two-layer net, written out by hand, learns three blobs
# ---------------------------------------------------------------------------
def three_blobs(n=200, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 2.5], [2.2, -1.3], [-2.2, -1.3]])
    t = np.arange(n) % 3
    x = centers[t] + 0.8 * rng.standard_normal((n, 2))
    return x, t


def train_two_layer_net(L, steps=50, lr=0.3, hidden=16, seed=1):
    """The book's TwoLayerNet, by hand: params dict, OrderedDict of layers,
    gradient from the layers' dW/db, params[key] -= lr * grad[key]."""
    x, t = three_blobs()
    rng = np.random.default_rng(seed)
    params = {"W1": 0.5 * rng.standard_normal((2, hidden)), "b1": np.zeros(hidden),
              "W2": 0.5 * rng.standard_normal((hidden, 3)), "b2": np.zeros(3)}
    layers = OrderedDict()
    layers["Affine1"] = L.Affine(params["W1"], params["b1"])
    layers["Relu1"] = L.Relu()
    layers["Affine2"] = L.Affine(params["W2"], params["b2"])
    last_layer = L.SoftmaxWithLoss()

    def predict(x):
        for layer in layers.values():
            x = layer.forward(x)
        return x

    losses = []
    for _ in range(steps):
        losses.append(last_layer.forward(predict(x), t))
        dout = last_layer.backward(1)
        for layer in reversed(list(layers.values())):
            dout = layer.backward(dout)
        grad = {"W1": layers["Affine1"].dW, "b1": layers["Affine1"].db,
                "W2": layers["Affine2"].dW, "b2": layers["Affine2"].db}
        for key in ("W1", "b1", "W2", "b2"):
            params[key] -= lr * grad[key]
    accuracy = float(np.mean(np.argmax(predict(x), axis=1) == t))
    return np.array(losses), accuracy, params


@LAYERS
def test_two_layer_net_learns_three_blobs(L):
    losses, accuracy, params = train_two_layer_net(L)
    assert losses[0] > np.log(3) * 0.5
    assert losses[-1] < losses[0] / 5
    assert accuracy > 0.9
    assert all(np.isfinite(losses))


def test_two_layer_net_compiled_and_reference_loss_curves_agree():
    fast_losses, fast_acc, fast_params = train_two_layer_net(fast_layers)
    ref_losses, ref_acc, ref_params = train_two_layer_net(ref_layers)
    assert len(fast_losses) == 50
    np.testing.assert_allclose(fast_losses, ref_losses, rtol=0, atol=1e-9)
    assert fast_acc == ref_acc
    for key in fast_params:
        np.testing.assert_allclose(fast_params[key], ref_params[key], rtol=0, atol=1e-9)
