"""fastbp.reference.networks: the book's TwoLayerNet and MultiLayerNet."""
import types

import numpy as np
import pytest

from fastbp.reference import layers as ref_layers
from fastbp.reference import optimizers as O
from fastbp.reference.networks import BaseNet, MultiLayerNet, TwoLayerNet


def batch(n=7, d=5, c=3, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.integers(0, c, size=n)


def one_hot(t, c):
    out = np.zeros((t.size, c))
    out[np.arange(t.size), t] = 1
    return out


def max_rel_error(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), 1e-8)))


def blobs(n_per_class=60, d=4, c=3, seed=0):
    """Linearly separable Gaussian blobs around well-separated centres."""
    rng = np.random.default_rng(seed)
    centres = 4.0 * np.eye(c, d)
    x = np.concatenate([centres[k] + 0.5 * rng.standard_normal((n_per_class, d))
                        for k in range(c)])
    t = np.repeat(np.arange(c), n_per_class)
    perm = rng.permutation(x.shape[0])
    return x[perm], t[perm]


NETS = {
    "two_layer": lambda **kw: TwoLayerNet(5, 4, 3, weight_init_std=1.0, seed=3, **kw),
    "multi_relu": lambda **kw: MultiLayerNet(5, [6, 4], 3, activation="relu", seed=4, **kw),
    "multi_sigmoid_wd": lambda **kw: MultiLayerNet(5, [6, 4], 3, activation="sigmoid",
                                                   weight_init_std="sigmoid",
                                                   weight_decay_lambda=0.3, seed=5, **kw),
    "multi_relu_wd": lambda **kw: MultiLayerNet(5, [4], 3, weight_decay_lambda=0.1, seed=6,
                                                **kw),
    "softmax_regression": lambda **kw: MultiLayerNet(5, [], 3, weight_init_std=0.5, seed=7,
                                                     **kw),
}


# -- structure ---------------------------------------------------------------------
def test_two_layer_net_structure():
    net = TwoLayerNet(5, 4, 3, seed=0)
    assert list(net.params) == ["W1", "b1", "W2", "b2"]
    shapes = {k: v.shape for k, v in net.params.items()}
    assert shapes == {"W1": (5, 4), "b1": (4,), "W2": (4, 3), "b2": (3,)}
    assert list(net.layers) == ["Affine1", "Relu1", "Affine2"]
    assert isinstance(net.layers["Relu1"], ref_layers.Relu)
    assert isinstance(net.lastLayer, ref_layers.SoftmaxWithLoss)
    assert net.last_layer is net.lastLayer
    assert net.layers["Affine1"].W is net.params["W1"]
    assert net.layers["Affine1"].b is net.params["b1"]
    assert net.layers["Affine2"].W is net.params["W2"]
    assert net.layers["Affine2"].b is net.params["b2"]
    assert np.all(net.params["b1"] == 0) and np.all(net.params["b2"] == 0)
    assert all(p.dtype == np.float64 for p in net.params.values())


def test_two_layer_net_weights_follow_default_rng():
    net = TwoLayerNet(5, 4, 3, weight_init_std=0.01, seed=42)
    rng = np.random.default_rng(42)
    W1 = 0.01 * rng.standard_normal((5, 4))
    W2 = 0.01 * rng.standard_normal((4, 3))
    assert np.array_equal(net.params["W1"], W1)
    assert np.array_equal(net.params["W2"], W2)


def test_multi_layer_net_structure_and_init_scales():
    net = MultiLayerNet(8, [6, 5], 3, activation="sigmoid", weight_init_std="xavier", seed=0)
    assert list(net.params) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    assert list(net.layers) == ["Affine1", "Activation_function1", "Affine2",
                                "Activation_function2", "Affine3"]
    assert isinstance(net.layers["Activation_function1"], ref_layers.Sigmoid)
    assert net.hidden_layer_num == 2 and net.hidden_size_list == [6, 5]
    for i in (1, 2, 3):
        assert net.layers[f"Affine{i}"].W is net.params[f"W{i}"]
    rng = np.random.default_rng(0)
    for i, (n_in, n_out) in enumerate([(8, 6), (6, 5), (5, 3)], start=1):
        want = np.sqrt(1.0 / n_in) * rng.standard_normal((n_in, n_out))
        np.testing.assert_array_equal(net.params[f"W{i}"], want)

    he = MultiLayerNet(8, [6], 3, weight_init_std="He", seed=1)
    rng = np.random.default_rng(1)
    np.testing.assert_array_equal(he.params["W1"], np.sqrt(2.0 / 8) * rng.standard_normal((8, 6)))
    np.testing.assert_array_equal(he.params["W2"], np.sqrt(2.0 / 6) * rng.standard_normal((6, 3)))
    assert isinstance(he.layers["Activation_function1"], ref_layers.Relu)

    fixed = MultiLayerNet(8, [6], 3, weight_init_std=0.25, seed=2)
    rng = np.random.default_rng(2)
    np.testing.assert_array_equal(fixed.params["W1"], 0.25 * rng.standard_normal((8, 6)))


@pytest.mark.parametrize("name", sorted(NETS))
def test_predict_shape_and_image_input(name):
    net = NETS[name]()
    x, _ = batch(n=4)
    assert net.predict(x).shape == (4, 3)
    big = TwoLayerNet(784, 10, 10, seed=0)
    images = np.random.default_rng(0).random((3, 1, 28, 28))
    np.testing.assert_array_equal(big.predict(images), big.predict(images.reshape(3, 784)))
    assert big.predict(images).shape == (3, 10)
    assert isinstance(big.accuracy(images, np.array([0, 1, 2])), float)


def test_accuracy_labels_and_one_hot_agree_with_argmax():
    net = TwoLayerNet(5, 4, 3, weight_init_std=1.0, seed=0)
    x, _ = batch(n=20)
    pred = np.argmax(net.predict(x), axis=1)
    t = pred.copy()
    t[:5] = (t[:5] + 1) % 3            # exactly 5 of 20 wrong
    acc = net.accuracy(x, t)
    assert isinstance(acc, float) and acc == 0.75
    assert net.accuracy(x, one_hot(t, 3)) == 0.75
    with pytest.raises(ValueError, match="labels"):
        net.accuracy(x, t[:10])


def test_loss_is_mean_cross_entropy_of_softmax():
    net = TwoLayerNet(5, 4, 3, weight_init_std=1.0, seed=0)
    x, t = batch()
    h = np.maximum(x @ net.params["W1"] + net.params["b1"], 0)
    a = h @ net.params["W2"] + net.params["b2"]
    p = np.exp(a - a.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    want = -np.mean(np.log(p[np.arange(t.size), t]))
    loss = net.loss(x, t)
    assert isinstance(loss, float)
    assert loss == pytest.approx(want, rel=1e-12)
    assert net.loss(x, one_hot(t, 3)) == pytest.approx(want, rel=1e-12)


def test_weight_decay_adds_half_lambda_sum_w_squared():
    x, t = batch()
    plain = MultiLayerNet(5, [6, 4], 3, seed=9)
    decayed = MultiLayerNet(5, [6, 4], 3, weight_decay_lambda=0.2, seed=9)
    wd = 0.5 * 0.2 * sum(np.sum(decayed.params[f"W{i}"] ** 2) for i in (1, 2, 3))
    assert wd > 0
    assert decayed.loss(x, t) == pytest.approx(plain.loss(x, t) + wd, rel=1e-13)
    g_plain = plain.gradient(x, t)
    g_dec = decayed.gradient(x, t)
    for i in (1, 2, 3):
        np.testing.assert_allclose(g_dec[f"W{i}"], g_plain[f"W{i}"] + 0.2 * plain.params[f"W{i}"],
                                   rtol=1e-13, atol=1e-15)
        np.testing.assert_array_equal(g_dec[f"b{i}"], g_plain[f"b{i}"])


# -- gradients ---------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(NETS))
def test_backprop_matches_numerical_gradient(name):
    net = NETS[name]()
    x, t = batch()
    before = {k: v.copy() for k, v in net.params.items()}
    grads = net.gradient(x, t)
    numerical = net.numerical_gradient(x, t)
    assert list(grads) == list(net.params) == list(numerical)
    for key in net.params:
        assert grads[key].shape == net.params[key].shape
        assert np.any(grads[key] != 0)
        assert max_rel_error(grads[key], numerical[key]) <= 1e-7, key
        np.testing.assert_array_equal(net.params[key], before[key])   # restored


def test_backprop_with_one_hot_labels_and_image_input():
    net = MultiLayerNet(12, [5], 3, seed=0)
    x, t = batch(d=12)
    g_labels = net.gradient(x, t)
    g_onehot = net.gradient(x.reshape(7, 1, 3, 4), one_hot(t, 3))
    for key in g_labels:
        np.testing.assert_allclose(g_onehot[key], g_labels[key], rtol=1e-13, atol=1e-16)


def test_gradient_returns_fresh_arrays():
    net = TwoLayerNet(5, 4, 3, weight_init_std=1.0, seed=0)
    x, t = batch()
    g1 = net.gradient(x, t)
    saved = {k: v.copy() for k, v in g1.items()}
    for key, g in g1.items():
        assert g is not net.params[key]
    g1["W1"][...] = 123.0
    g2 = net.gradient(x, t)
    np.testing.assert_array_equal(g2["W1"], saved["W1"])
    assert g2["W1"] is not g1["W1"]


@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize("make_opt", [lambda: O.SGD(lr=0.1), lambda: O.Adam(lr=0.01),
                                      lambda: O.Nesterov(lr=0.05)])
def test_train_step_equals_gradient_plus_update(name, make_opt):
    a, b = NETS[name](), NETS[name]()
    opt_a, opt_b = make_opt(), make_opt()
    for step in range(3):
        x, t = batch(seed=10 + step)
        expected_loss = b.loss(x, t)
        grads = b.gradient(x, t)
        opt_b.update(b.params, grads)
        loss = a.train_step(x, t, opt_a)
        assert isinstance(loss, float)
        assert loss == expected_loss
        for key in a.params:
            np.testing.assert_array_equal(a.params[key], b.params[key])
    assert not np.array_equal(a.params["W1"], NETS[name]().params["W1"])


def test_train_step_rejects_non_optimizer():
    net = TwoLayerNet(5, 4, 3, seed=0)
    x, t = batch()
    with pytest.raises(TypeError, match="optimizer"):
        net.train_step(x, t, "sgd")


# -- seeds and dtypes ----------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(NETS))
def test_same_seed_same_params(name):
    a, b = NETS[name](), NETS[name]()
    for key in a.params:
        np.testing.assert_array_equal(a.params[key], b.params[key])
    c = MultiLayerNet(5, [6, 4], 3, seed=123)
    d = MultiLayerNet(5, [6, 4], 3, seed=124)
    assert not np.array_equal(c.params["W1"], d.params["W1"])


@pytest.mark.parametrize("name", sorted(NETS))
def test_float32_net_matches_float64_from_same_seed(name):
    n32 = NETS[name](dtype=np.float32)
    n64 = NETS[name](dtype=np.float64)
    assert n32.dtype == np.float32
    for key in n32.params:
        assert n32.params[key].dtype == np.float32
        np.testing.assert_array_equal(n32.params[key], n64.params[key].astype(np.float32))
    x, t = batch()
    x32 = x.astype(np.float32)
    assert n32.predict(x32).dtype == np.float32
    grads = n32.gradient(x32, t)
    assert all(g.dtype == np.float32 for g in grads.values())
    # float64 input into a float32 net still gives float32 gradients
    assert all(g.dtype == np.float32 for g in n32.gradient(x, t).values())
    g64 = n64.gradient(x, t)
    for key in grads:
        np.testing.assert_allclose(grads[key], g64[key], rtol=1e-3, atol=1e-5)
    arrays = dict(n32.params)
    n32.train_step(x32, t, O.Adam(lr=0.01))
    for key in arrays:
        assert n32.params[key] is arrays[key]
        assert n32.params[key].dtype == np.float32


@pytest.mark.parametrize("dtype,exc", [(np.int32, ValueError), (np.float16, ValueError),
                                       ("complex128", ValueError), ("not-a-dtype", TypeError)])
def test_bad_dtype_raises(dtype, exc):
    with pytest.raises(exc, match="dtype"):
        TwoLayerNet(5, 4, 3, dtype=dtype)
    with pytest.raises(exc, match="dtype"):
        MultiLayerNet(5, [4], 3, dtype=dtype)


def test_dtype_given_as_string_works():
    assert TwoLayerNet(5, 4, 3, dtype="float32").params["W1"].dtype == np.float32


# -- constructor validation ----------------------------------------------------------
@pytest.mark.parametrize("args,arg", [((0, 4, 3), "input_size"), ((5, -1, 3), "hidden_size"),
                                      ((5, 4, 2.5), "output_size"), ((True, 4, 3), "input_size"),
                                      (("5", 4, 3), "input_size")])
def test_two_layer_bad_sizes(args, arg):
    with pytest.raises(ValueError, match=arg):
        TwoLayerNet(*args)


@pytest.mark.parametrize("kwargs,arg", [
    ({"hidden_size_list": [4, 0]}, r"hidden_size_list\[1\]"),
    ({"hidden_size_list": 4}, "hidden_size_list"),
    ({"hidden_size_list": "44"}, "hidden_size_list"),
    ({"activation": "tanh"}, "activation"),
    ({"weight_init_std": "gauss"}, "weight_init_std"),
    ({"weight_init_std": -1.0}, "weight_init_std"),
    ({"weight_decay_lambda": -0.1}, "weight_decay_lambda"),
    ({"weight_decay_lambda": float("nan")}, "weight_decay_lambda"),
    ({"input_size": 0}, "input_size"),
])
def test_multi_layer_bad_args(kwargs, arg):
    base = {"input_size": 5, "hidden_size_list": [4], "output_size": 3}
    base.update(kwargs)
    with pytest.raises(ValueError, match=arg):
        MultiLayerNet(**base)


def test_two_layer_bad_weight_init_std():
    with pytest.raises(ValueError, match="weight_init_std"):
        TwoLayerNet(5, 4, 3, weight_init_std=float("inf"))


# -- save / load -----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_save_load_round_trip_is_exact(tmp_path, dtype):
    src = MultiLayerNet(5, [6, 4], 3, seed=1, dtype=dtype)
    src.train_step(*batch(), O.SGD(lr=0.5))            # non-zero biases too
    path = src.save(tmp_path / "net")
    assert str(path).endswith(".npz")
    dst = MultiLayerNet(5, [6, 4], 3, seed=2, dtype=dtype)
    arrays = dict(dst.params)
    assert not np.array_equal(dst.params["W1"], src.params["W1"])
    assert dst.load(tmp_path / "net") is dst                # .npz found without the suffix
    for key in src.params:
        assert dst.params[key] is arrays[key]               # copied into the same arrays
        np.testing.assert_array_equal(dst.params[key], src.params[key])
    x, _ = batch()
    np.testing.assert_array_equal(dst.predict(x), src.predict(x))   # layers see new values
    with np.load(path) as data:
        assert data["__sizes__"].tolist() == [5, 6, 4, 3]


def test_two_layer_save_load_with_npz_suffix(tmp_path):
    src = TwoLayerNet(5, 4, 3, seed=1)
    path = src.save(str(tmp_path / "two.npz"))
    assert path == str(tmp_path / "two.npz")
    dst = TwoLayerNet(5, 4, 3, seed=8).load(path)
    for key in src.params:
        np.testing.assert_array_equal(dst.params[key], src.params[key])


def test_load_shape_mismatch_raises_and_changes_nothing(tmp_path):
    path = MultiLayerNet(5, [6, 4], 3, seed=1).save(tmp_path / "a.npz")
    other = MultiLayerNet(5, [7, 4], 3, seed=2)
    before = {k: v.copy() for k, v in other.params.items()}
    with pytest.raises(ValueError) as err:
        other.load(path)
    msg = str(err.value)
    assert "W1" in msg and "(5, 7)" in msg and "(5, 6)" in msg
    for key in before:
        np.testing.assert_array_equal(other.params[key], before[key])


def test_load_key_and_dtype_mismatch_raise(tmp_path):
    two = TwoLayerNet(5, 4, 3, seed=1).save(tmp_path / "two.npz")
    deeper = MultiLayerNet(5, [4, 4], 3, seed=1)
    with pytest.raises(ValueError, match="W3"):
        deeper.load(two)
    deep_path = deeper.save(tmp_path / "deep.npz")
    with pytest.raises(ValueError, match="W3"):
        TwoLayerNet(5, 4, 3).load(deep_path)
    with pytest.raises(ValueError, match="dtype"):
        TwoLayerNet(5, 4, 3, dtype=np.float32).load(two)


# -- layers_module for subclasses ------------------------------------------------------------
def test_layers_module_class_attribute_selects_layer_classes():
    class CountingAffine(ref_layers.Affine):
        forwards = 0

        def forward(self, x):
            type(self).forwards += 1
            return super().forward(x)

    fake = types.SimpleNamespace(Affine=CountingAffine, Relu=ref_layers.Relu,
                                 Sigmoid=ref_layers.Sigmoid,
                                 SoftmaxWithLoss=ref_layers.SoftmaxWithLoss)

    class MyTwo(TwoLayerNet):
        layers_module = fake

    class MyMulti(MultiLayerNet):
        layers_module = fake

    assert TwoLayerNet.layers_module is ref_layers and BaseNet.layers_module is ref_layers
    two = MyTwo(5, 4, 3, weight_init_std=1.0, seed=0)
    multi = MyMulti(5, [4, 4], 3, seed=0)
    assert isinstance(two.layers["Affine2"], CountingAffine)
    assert sum(isinstance(l, CountingAffine) for l in multi.layers.values()) == 3
    x, t = batch()
    np.testing.assert_array_equal(two.predict(x), TwoLayerNet(5, 4, 3, weight_init_std=1.0,
                                                              seed=0).predict(x))
    assert CountingAffine.forwards == 2


# -- book-style training ---------------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda: TwoLayerNet(4, 10, 3, weight_init_std=0.1, seed=0),
    lambda: MultiLayerNet(4, [10, 10], 3, activation="sigmoid", weight_init_std="sigmoid",
                          seed=0),
])
def test_book_style_training_loop_learns_separable_blobs(make):
    x_train, t_train = blobs(seed=0)
    x_test, t_test = blobs(n_per_class=30, seed=1)
    net = make()
    rng = np.random.default_rng(0)
    initial_loss = net.loss(x_train, t_train)
    initial_acc = net.accuracy(x_test, t_test)
    lr = 0.1
    for _ in range(300):
        mask = rng.choice(x_train.shape[0], 20)
        grad = net.gradient(x_train[mask], t_train[mask])
        for key in ("W1", "b1", "W2", "b2"):
            net.params[key] -= lr * grad[key]
        if isinstance(net, MultiLayerNet):
            net.params["W3"] -= lr * grad["W3"]
            net.params["b3"] -= lr * grad["b3"]
    assert net.loss(x_train, t_train) < 0.5 * initial_loss
    assert net.accuracy(x_test, t_test) >= 0.95 > initial_acc
