"""MultiLayerNetExtend (chapter 6): fastbp.networks (on fastbp.layers) and
fastbp.reference.multi_layer_net_extend, against the book's own class.

Same weights as the book after the same ``np.random.seed``; a seeded
training run with batch norm, dropout and weight decay follows the book's
step for step; backprop against numerical gradients; train_step, dtypes,
seeds, save/load, the Trainer, bad arguments.
"""
import inspect

import numpy as np
import pytest

import fastbp.networks as fast_networks
import fastbp.optimizers as fast_optimizers
import fastbp.reference.multi_layer_net_extend as ref_extend
import fastbp.reference.optimizers as ref_optimizers
from bookcode import book_copies, load_book_module, requires_book  # noqa: F401 - fixture
from conftest import assert_identical, rel_error
from fastbp.datasets import load_mnist_mini
from fastbp.trainer import Trainer

NETS = pytest.mark.parametrize("Net", [fast_networks.MultiLayerNetExtend,
                                       ref_extend.MultiLayerNetExtend],
                               ids=["fastbp", "reference"])
FULL = dict(weight_decay_lambda=0.01, use_dropout=True, dropout_ration=0.15,
            use_batchnorm=True)


@pytest.fixture(scope="module")
def mnist_mini():
    (x_train, t_train), _ = load_mnist_mini()
    return x_train[:2000], t_train[:2000]


def book_module(copies, kind, path="common/multi_layer_net_extend.py"):
    """A module of one of the two book copies: 'book' (as published) or 'fastbp'."""
    name = f"{kind}_{path.replace('/', '_').removesuffix('.py')}"
    return load_book_module(path, name, root=copies[kind])


def book_formula_loss(net, t, lam):
    """The book's loss of the last forward: -mean log(y[t] + 1e-7) + weight decay."""
    y = net.last_layer.y
    n = y.shape[0]
    decay = sum(0.5 * lam * np.sum(net.params[f"W{i}"] ** 2)
                for i in range(1, net.hidden_layer_num + 2))
    return float(-np.sum(np.log(y[np.arange(n), t] + 1e-7)) / n + decay)


def seeded_run(make_net, optimizer, data, steps, seed=2016):
    """The book's training loop (Trainer.train_step): global seed, batches
    from np.random.choice, gradient(), update(), then loss() in test mode."""
    x_train, t_train = data
    np.random.seed(seed)
    net = make_net()
    losses, book_losses, probabilities = [], [], []
    for _ in range(steps):
        idx = np.random.choice(x_train.shape[0], 100)
        x, t = x_train[idx], t_train[idx]
        grads = net.gradient(x, t)
        optimizer.update(net.params, grads)
        losses.append(float(net.loss(x, t)))
        book_losses.append(book_formula_loss(net, t, FULL["weight_decay_lambda"]))
        probabilities.append(np.array(net.last_layer.y))
    return net, losses, book_losses, probabilities


# ---------------------------------------------------------------------------
# The book's class: same weights, same run
# ---------------------------------------------------------------------------
@requires_book
@pytest.mark.parametrize("kwargs", [{}, FULL, dict(activation="sigmoid",
                                                   weight_init_std="xavier"),
                                    dict(weight_init_std=0.05, use_batchnorm=True)],
                         ids=["default", "bn-dropout-decay", "sigmoid", "std-0.05"])
@NETS
def test_same_global_seed_gives_the_books_weights_params_and_layers(Net, kwargs, book_copies):
    book = book_module(book_copies, "book")
    np.random.seed(7)
    theirs = book.MultiLayerNetExtend(784, [30, 20, 10], 10, **kwargs)
    state = np.random.get_state()[1].copy()
    np.random.seed(7)
    ours = Net(784, [30, 20, 10], 10, **kwargs)
    assert np.array_equal(np.random.get_state()[1], state)   # the same draws were made
    assert list(ours.params) == list(theirs.params)          # W..., b..., gamma..., beta...
    for key, value in theirs.params.items():
        assert_identical(ours.params[key], value)
    assert list(ours.layers) == list(theirs.layers)
    for key, layer in theirs.layers.items():
        assert type(ours.layers[key]).__name__ == type(layer).__name__, key
    for name in ("input_size", "output_size", "hidden_size_list", "hidden_layer_num",
                 "use_dropout", "use_batchnorm", "weight_decay_lambda"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert type(ours.last_layer).__name__ == "SoftmaxWithLoss"


@requires_book
@pytest.mark.parametrize("kwargs,opt_name,hyper", [
    (FULL, "SGD", {"lr": 0.1}),
    (dict(FULL, activation="sigmoid"), "Momentum", {"lr": 0.05})], ids=["relu-SGD",
                                                                          "sigmoid-Momentum"])
def test_seeded_run_follows_the_books_step_for_step(kwargs, opt_name, hyper, book_copies,
                                                    mnist_mini):
    """100 steps of the book's loop with BN + dropout + weight decay: the book
    as published, the book with fastbp dropped in, and fastbp's own nets (on
    the book's global stream) give the same probabilities, losses and final
    parameters within 1e-10.

    The losses are compared through the book's formula: fastbp's own loss
    omits the book's log(y + 1e-7) epsilon (README, deliberate difference 3),
    a difference of about 1e-7 / y for probable labels (the early steps'
    confident mistakes under barely-trained running statistics differ more).
    """
    runs = {}
    for kind in ("book", "fastbp"):
        mod, opt_mod = book_module(book_copies, kind), \
            book_module(book_copies, kind, "common/optimizer.py")
        runs[kind] = seeded_run(lambda: mod.MultiLayerNetExtend(784, [50, 40, 30], 10,
                                                                 **kwargs),
                                getattr(opt_mod, opt_name)(**hyper), mnist_mini, 100)
    for name, Net, O in (("own fastbp", fast_networks.MultiLayerNetExtend, fast_optimizers),
                         ("own reference", ref_extend.MultiLayerNetExtend, ref_optimizers)):
        runs[name] = seeded_run(lambda: Net(784, [50, 40, 30], 10, **kwargs),
                                getattr(O, opt_name)(**hyper), mnist_mini, 100)
    book_net, book_losses, _, book_probabilities = runs.pop("book")
    assert book_losses[-1] < book_losses[0] - 0.3          # it trains
    for name, (net, losses, as_book, probabilities) in runs.items():
        np.testing.assert_allclose(as_book, book_losses, rtol=0, atol=1e-10, err_msg=name)
        np.testing.assert_allclose(losses, runs["fastbp"][1], rtol=0, atol=1e-10, err_msg=name)
        # without the epsilon the loss is larger: by ~1e-7 / y, and by much more
        # where the book's log(y + 1e-7) caps a confident wrong prediction at 16.1
        assert all(exact >= book - 1e-12 for exact, book in zip(losses, as_book)), name
        for got, want in zip(probabilities, book_probabilities):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-10, err_msg=name)
        for key, value in book_net.params.items():
            np.testing.assert_allclose(net.params[key], value, rtol=1e-10, atol=1e-12,
                                       err_msg=f"{name} {key}")
        for i in (1, 2, 3):
            np.testing.assert_allclose(net.layers[f"BatchNorm{i}"].running_var,
                                       book_net.layers[f"BatchNorm{i}"].running_var,
                                       rtol=1e-10, err_msg=name)


# ---------------------------------------------------------------------------
# Gradients
# ---------------------------------------------------------------------------
@pytest.fixture
def fixed_dropout_masks(monkeypatch):
    """np.random.rand returns the same draws for a shape at every call, so
    every loss evaluation of a numerical gradient sees the same masks."""
    table, rng = {}, np.random.default_rng(99)

    def rand(*shape):
        if shape not in table:
            table[shape] = rng.random(shape)
        return table[shape]

    monkeypatch.setattr(np.random, "rand", rand)
    return table


@pytest.mark.parametrize("kwargs", [
    FULL, dict(FULL, activation="sigmoid"), dict(use_batchnorm=True),
    dict(weight_decay_lambda=0.1, use_dropout=True, dropout_ration=0.5),
    dict(FULL, weight_init_std=0.3)], ids=["relu", "sigmoid", "bn", "dropout-decay", "std"])
@NETS
def test_backprop_matches_numerical_gradient(Net, kwargs, fixed_dropout_masks, rng):
    np.random.seed(3)
    net = Net(7, [6, 5], 4, **kwargs)
    x = rng.standard_normal((8, 7))
    t = rng.integers(0, 4, size=8)
    for i in (1, 2, 3):
        # biases off zero: a sample whose hidden units are all dropped would
        # otherwise reach the next ReLU at exactly b = 0, its kink
        net.params[f"b{i}"] += 0.1 * rng.standard_normal(net.params[f"b{i}"].shape)
    grads = net.gradient(x, t)
    numerical = net.numerical_gradient(x, t)
    assert list(grads) == list(numerical)
    expected_keys = ["W1", "b1", "gamma1", "beta1", "W2", "b2", "gamma2", "beta2", "W3", "b3"]
    assert list(grads) == [k for k in expected_keys if k in net.params]
    if net.use_dropout:
        assert len(fixed_dropout_masks) == 2 and any(
            not (m > 0.15).all() for m in fixed_dropout_masks.values())
    for key in grads:
        assert grads[key].shape == net.params[key].shape
        if net.use_batchnorm and key in ("b1", "b2"):
            # a bias feeding batch norm cancels in x - mu: its gradient is 0
            assert np.abs(grads[key]).max() < 1e-15 and np.abs(numerical[key]).max() < 1e-9
        else:
            assert rel_error(grads[key], numerical[key]) <= 1e-7, key


@pytest.mark.parametrize("O", [fast_optimizers, ref_optimizers], ids=["compiled", "reference"])
@NETS
def test_train_step_is_gradient_then_update(Net, O, rng):
    """Two nets with one seed (so the same dropout masks): train_step on one,
    loss_and_gradient + update on the other.  train_step's loss is the
    training-mode loss at the parameters before the update."""
    x, t = rng.standard_normal((10, 6)), rng.integers(0, 3, size=10)
    c = Net(6, [5, 4], 3, seed=5, **FULL)
    d = Net(6, [5, 4], 3, seed=5, **FULL)
    opt_c, opt_d = O.Momentum(lr=0.1), O.Momentum(lr=0.1)
    losses = []
    for _ in range(5):
        loss_c = c.train_step(x, t, opt_c)
        loss_d, grads = d.loss_and_gradient(x, t)
        opt_d.update(d.params, grads)
        assert isinstance(loss_c, float) and loss_c == pytest.approx(loss_d, rel=1e-14)
        losses.append(loss_c)
        for key in c.params:
            if Net is ref_extend.MultiLayerNetExtend:
                assert_identical(c.params[key], d.params[key])
            else:   # the fused step: BLAS adds lam * W to the product itself
                np.testing.assert_allclose(c.params[key], d.params[key], rtol=1e-13,
                                           atol=1e-15)
    assert losses[-1] < losses[0]
    with pytest.raises(TypeError, match="optimizer: expected an object with an update"):
        c.train_step(x, t, "sgd")


# ---------------------------------------------------------------------------
# Random streams, dtypes, modes
# ---------------------------------------------------------------------------
@NETS
def test_seed_makes_runs_reproducible_without_touching_the_global_generator(Net, rng):
    x, t = rng.standard_normal((10, 6)), rng.integers(0, 3, size=10)
    np.random.seed(1)
    state = np.random.get_state()[1].copy()
    runs = []
    for _ in range(2):
        net = Net(6, [5, 4], 3, seed=123, **FULL)
        dropouts = [net.layers["Dropout1"], net.layers["Dropout2"]]
        assert dropouts[0].rng is dropouts[1].rng is not None     # one shared generator
        opt = fast_optimizers.SGD(lr=0.1)
        runs.append([net.train_step(x, t, opt) for _ in range(5)])
    assert runs[0] == runs[1]
    assert np.array_equal(np.random.get_state()[1], state)
    # weights: default_rng(seed).standard_normal, W1 then W2 ..., scaled by He
    gen = np.random.default_rng(123)
    assert_identical(Net(6, [5, 4], 3, seed=123).params["W1"],
                     np.sqrt(2.0 / 6) * gen.standard_normal((6, 5)))
    # different seeds: different weights and masks
    other = Net(6, [5, 4], 3, seed=124, **FULL)
    assert not np.array_equal(other.params["W1"], net.params["W1"])


@NETS
def test_default_seed_uses_the_global_stream_for_weights_and_masks(Net):
    np.random.seed(11)
    a = Net(6, [5], 3, use_dropout=True)
    a.predict(np.ones((4, 6)), train_flg=True)
    after_a = np.random.get_state()[1].copy()
    np.random.seed(11)
    b = Net(6, [5], 3, use_dropout=True)
    assert b.layers["Dropout1"].rng is None
    b.predict(np.ones((4, 6)), train_flg=True)
    assert np.array_equal(np.random.get_state()[1], after_a)
    assert_identical(a.layers["Dropout1"].mask, b.layers["Dropout1"].mask)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@NETS
def test_dtype_is_kept_everywhere(Net, dtype, rng):
    net = Net(6, [5, 4], 3, dtype=dtype, seed=0, **FULL)
    x = rng.standard_normal((10, 6)).astype(dtype)
    t = rng.integers(0, 3, size=10)
    assert all(p.dtype == dtype for p in net.params.values())
    grads = net.gradient(x, t)
    assert all(g.dtype == dtype for g in grads.values())
    assert net.predict(x).dtype == dtype and net.predict(x, train_flg=True).dtype == dtype
    for i in (1, 2):
        bn = net.layers[f"BatchNorm{i}"]
        assert bn.running_mean.dtype == bn.running_var.dtype == dtype
    # float64 images into a float32 net: gradients still float32
    assert all(g.dtype == dtype for g in net.gradient(x.astype(np.float64), t).values())
    loss = net.train_step(x, t, fast_optimizers.SGD(0.1))
    assert isinstance(loss, float) and np.isfinite(loss)


@NETS
def test_accuracy_and_default_loss_run_in_test_mode(Net, rng):
    x, t = rng.standard_normal((20, 6)), rng.integers(0, 3, size=20)
    net = Net(6, [5, 4], 3, seed=0, **FULL)
    net.gradient(x, t)
    bn = net.layers["BatchNorm1"]
    mean, gen_state = bn.running_mean, net.layers["Dropout1"].rng.bit_generator.state
    acc = net.accuracy(x, t)
    loss = net.loss(x, t)
    assert bn.running_mean is mean                                # statistics not moved
    assert net.layers["Dropout1"].rng.bit_generator.state == gen_state   # no masks drawn
    assert 0 <= acc <= 1
    assert net.loss(x, t) == loss                                 # deterministic
    assert net.accuracy(x, np.eye(3)[t]) == acc                   # one-hot labels too


@NETS
def test_save_and_load_restore_params_and_running_statistics(Net, rng, tmp_path):
    x, t = rng.standard_normal((20, 6)), rng.integers(0, 3, size=20)
    net = Net(6, [5, 4], 3, seed=0, **FULL)
    opt = fast_optimizers.SGD(0.1)
    for _ in range(3):
        net.train_step(x, t, opt)
    path = net.save(tmp_path / "net")
    fresh = Net(6, [5, 4], 3, seed=9, **FULL)
    arrays = {k: v for k, v in fresh.params.items()}
    assert fresh.load(path) is fresh
    for key, value in net.params.items():
        assert fresh.params[key] is arrays[key]            # copied into the same arrays
        assert_identical(fresh.params[key], value)
    assert_identical(fresh.predict(x), net.predict(x))   # test mode: running statistics
    # a file whose running statistics don't fit: error, nothing changed
    with np.load(path) as data:
        stored = dict(data)
    stored["__running_var2__"] = np.ones(7)
    np.savez(tmp_path / "bad.npz", **stored)
    other = Net(6, [5, 4], 3, seed=3, **FULL)
    before = {k: v.copy() for k, v in other.params.items()}
    with pytest.raises(ValueError, match=r"BatchNorm2\.running_var: expected shape \(4,\), got "
                                         r"\(7,\)"):
        other.load(tmp_path / "bad.npz")
    for key, value in before.items():
        assert_identical(other.params[key], value)
    assert other.layers["BatchNorm1"].running_mean is None
    # a batch-norm file doesn't load into a net without batch norm
    with pytest.raises(ValueError, match="also holds"):
        Net(6, [5, 4], 3).load(path)


# ---------------------------------------------------------------------------
# The Trainer, the API, bad arguments
# ---------------------------------------------------------------------------
@NETS
def test_trainer_trains_it_unchanged(Net, mnist_mini):
    x, t = mnist_mini
    np.random.seed(0)
    net = Net(784, [40, 30], 10, **FULL)
    trainer = Trainer(net, x[:1000], t[:1000], x[1000:1500], t[1000:1500], epochs=3,
                      mini_batch_size=50, optimizer="Adam", optimizer_param={"lr": 0.01},
                      verbose=False, seed=0)
    trainer.train()
    assert len(trainer.train_loss_list) == 60 and len(trainer.test_acc_list) == 3
    assert trainer.test_acc > 0.6                                  # chance is 0.1
    assert np.mean(trainer.train_loss_list[-10:]) < np.mean(trainer.train_loss_list[:10])


@requires_book
def test_trainer_trains_the_books_own_net_with_fastbp_layers(book_copies, mnist_mini):
    x, t = mnist_mini
    mod = book_module(book_copies, "fastbp")
    np.random.seed(0)
    net = mod.MultiLayerNetExtend(784, [40, 30], 10, **FULL)      # no train_step
    assert not hasattr(net, "train_step")
    trainer = Trainer(net, x[:1000], t[:1000], x[1000:1500], t[1000:1500], epochs=3,
                      mini_batch_size=50, optimizer="SGD", optimizer_param={"lr": 0.1},
                      verbose=False, seed=0)
    trainer.train()
    assert trainer.test_acc > 0.6


@requires_book
def test_signature_is_the_books_plus_keyword_dtype_and_seed(book_copies):
    book = book_module(book_copies, "book")
    theirs = inspect.signature(book.MultiLayerNetExtend.__init__).parameters
    for Net in (fast_networks.MultiLayerNetExtend, ref_extend.MultiLayerNetExtend):
        ours = inspect.signature(Net.__init__).parameters
        assert [(p.name, p.default) for p in theirs.values()] == \
            [(p.name, p.default) for p in ours.values()][:len(theirs)]
        assert [(p.name, p.kind) for p in list(ours.values())[len(theirs):]] == \
            [("dtype", inspect.Parameter.KEYWORD_ONLY), ("seed", inspect.Parameter.KEYWORD_ONLY)]
    for method in ("predict", "loss", "accuracy", "gradient", "numerical_gradient"):
        assert list(inspect.signature(getattr(book.MultiLayerNetExtend, method)).parameters) == \
            list(inspect.signature(getattr(ref_extend.MultiLayerNetExtend, method)).parameters)


def test_fastbp_twin_uses_fastbp_layers_and_its_own_fused_step():
    net = fast_networks.MultiLayerNetExtend(6, [5], 3, **FULL)
    import fastbp.layers as fast_layers
    from fastbp._extend_step import ExtendTrainStep
    assert isinstance(net.layers["Affine1"], fast_layers.Affine)
    assert net.layers["BatchNorm1"].__class__ is fast_layers.BatchNormalization
    assert net.layers["Dropout1"].__class__ is fast_layers.Dropout
    assert not isinstance(net, fast_networks.MultiLayerNet)
    assert isinstance(net, ref_extend.MultiLayerNetExtend)
    assert inspect.unwrap(type(net).train_step) is ExtendTrainStep.train_step   # under its lock


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(dropout_ration=1.0), ValueError, r"dropout_ration: expected a number in \[0, 1\)"),
    (dict(dropout_ration=-0.1), ValueError, r"dropout_ration: expected a number in \[0, 1\)"),
    (dict(activation="tanh"), ValueError, "activation: expected 'relu' or 'sigmoid'"),
    (dict(weight_init_std="lecun"), ValueError, "weight_init_std: expected"),
    (dict(weight_decay_lambda=-1), ValueError, "weight_decay_lambda: expected"),
    (dict(dtype=np.float16), ValueError, "dtype: expected np.float32 or np.float64"),
])
@NETS
def test_bad_arguments(Net, kwargs, error, match):
    with pytest.raises(error, match=match):
        Net(6, [5], 3, **kwargs)


@NETS
def test_bad_batches_raise_before_anything_moves(Net, rng):
    net = Net(6, [5], 3, seed=0, **FULL)
    x, t = rng.standard_normal((4, 6)), rng.integers(0, 3, size=4)
    net.gradient(x, t)
    mean = net.layers["BatchNorm1"].running_mean
    with pytest.raises(ValueError, match="x: expected 6 features per sample"):
        net.gradient(np.ones((4, 7)), t)
    with pytest.raises(ValueError, match="x: expected at least one sample"):
        net.loss(np.ones((0, 6)), t[:0], train_flg=True)
    assert net.layers["BatchNorm1"].running_mean is mean
