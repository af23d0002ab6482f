"""SimpleConvNet and DeepConvNet (chapters 7-8): the book's structure and
numbers, gradients, training, dtypes, the book's parameter files read
safely, and clear errors."""
import inspect
import pickle

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import fastbp
import fastbp.layers as fast_layers
import fastbp.networks as fast_networks
import fastbp.optimizers as fast_optimizers
import fastbp.reference.convnets as ref_convnets
import fastbp.reference.layers as ref_layers
import fastbp.reference.optimizers as ref_optimizers
from bookcode import BOOK_DIR, book_modules, requires_book
from conftest import assert_identical, rel_error
from errorcheck import assert_raises_naming

book_simple, book_deep = book_modules("simple_convnet", "deep_convnet",
                                      chapters=("ch07", "ch08"))

NETS = pytest.mark.parametrize("nets", [fast_networks, ref_convnets],
                               ids=["fastbp", "reference"])
SIMPLE_PARAMS = f"{BOOK_DIR}/ch07/params.pkl"
DEEP_PARAMS = f"{BOOK_DIR}/ch08/deep_convnet_params.pkl"

# A small SimpleConvNet: the book's ch07/gradient_check.py sizes
SMALL = dict(input_dim=(1, 10, 10),
             conv_param={"filter_num": 10, "filter_size": 3, "pad": 0, "stride": 1},
             hidden_size=10, output_size=10)


def images(rng, n, shape=(1, 28, 28)):
    return rng.random((n,) + shape).astype(np.float32)


def copy_params_into(book_net, net):
    """Give the book's network our parameters (as the book's load_params does)."""
    for key, value in net.params.items():
        book_net.params[key] = value.copy()
    layers = (book_net.layers if isinstance(book_net.layers, list)
              else list(book_net.layers.values()))
    for i, layer in enumerate(layer for layer in layers if hasattr(layer, "dW")):
        layer.W = book_net.params[f"W{i + 1}"]
        layer.b = book_net.params[f"b{i + 1}"]


# ---------------------------------------------------------------------------
# Structure: the book's names, shapes and layers
# ---------------------------------------------------------------------------
@NETS
def test_simple_convnet_structure(nets):
    net = nets.SimpleConvNet(seed=0)
    assert {k: v.shape for k, v in net.params.items()} == {
        "W1": (30, 1, 5, 5), "b1": (30,), "W2": (4320, 100), "b2": (100,),
        "W3": (100, 10), "b3": (10,)}
    assert list(net.layers) == ["Conv1", "Relu1", "Pool1", "Affine1", "Relu2", "Affine2"]
    L = fast_layers if nets is fast_networks else ref_layers
    kinds = [L.Convolution, L.Relu, L.Pooling, L.Affine, L.Relu, L.Affine]
    assert [type(layer) for layer in net.layers.values()] == kinds
    assert type(net.last_layer) is L.SoftmaxWithLoss
    for key, layer in (("1", "Conv1"), ("2", "Affine1"), ("3", "Affine2")):
        assert net.layers[layer].W is net.params["W" + key]
        assert net.layers[layer].b is net.params["b" + key]
    pool = net.layers["Pool1"]
    assert (pool.pool_h, pool.pool_w, pool.stride, pool.pad) == (2, 2, 2, 0)
    assert np.std(net.params["W2"]) == pytest.approx(0.01, rel=0.01)
    assert all(not net.params[k].any() for k in ("b1", "b2", "b3"))


@NETS
def test_deep_convnet_structure(nets):
    net = nets.DeepConvNet(seed=0)
    shapes = {"W1": (16, 1, 3, 3), "W2": (16, 16, 3, 3), "W3": (32, 16, 3, 3),
              "W4": (32, 32, 3, 3), "W5": (64, 32, 3, 3), "W6": (64, 64, 3, 3),
              "W7": (1024, 50), "W8": (50, 10)}
    for key, shape in shapes.items():
        assert net.params[key].shape == shape
        assert net.params["b" + key[1:]].shape == (shape[0] if len(shape) == 4 else shape[1],)
    L = fast_layers if nets is fast_networks else ref_layers
    kinds = ([L.Convolution, L.Relu] * 2 + [L.Pooling]) * 3 + [L.Affine, L.Relu, L.Dropout,
                                                                 L.Affine, L.Dropout]
    assert isinstance(net.layers, list)
    assert [type(layer) for layer in net.layers] == kinds
    for i, index in enumerate((0, 2, 5, 7, 10, 12, 15, 18), start=1):
        assert net.layers[index].W is net.params[f"W{i}"]
        assert net.layers[index].b is net.params[f"b{i}"]
    pads = [net.layers[i].pad for i in (0, 2, 5, 7, 10, 12)]
    assert pads == [1, 1, 1, 2, 1, 1]
    # He initialisation: std sqrt(2 / fan-in), the book's scales
    for key, fan_in in (("W1", 9), ("W4", 288), ("W7", 1024), ("W8", 50)):
        assert np.std(net.params[key]) == pytest.approx(np.sqrt(2 / fan_in), rel=0.15)


def test_networks_twins_have_the_reference_api():
    for name in ("SimpleConvNet", "DeepConvNet"):
        fast, ref = getattr(fast_networks, name), getattr(ref_convnets, name)
        assert issubclass(fast, ref) and fast.__doc__ == ref.__doc__
        assert fast.layers_module is fast_layers
        assert getattr(fastbp, name) is fast
        for method in ("__init__", "predict", "loss", "accuracy", "gradient", "train_step",
                       "save_params", "load_params"):
            assert inspect.signature(getattr(fast, method)) == \
                inspect.signature(getattr(ref, method))
    assert "train_flg" in inspect.signature(ref_convnets.DeepConvNet.predict).parameters
    assert inspect.signature(ref_convnets.SimpleConvNet.accuracy).parameters[
        "batch_size"].default == 100


@pytest.mark.parametrize("input_dim,conv,pooled", [
    ((1, 27, 27), {"filter_size": 3}, (12, 12)),     # odd conv output: the book's sizes break
    ((3, 20, 28), {"filter_size": 5, "pad": 2, "stride": 2}, (5, 7)),   # non-square, 3 channels
])
@NETS
def test_simple_convnet_sizes_any_input(nets, input_dim, conv, pooled, rng):
    net = nets.SimpleConvNet(input_dim=input_dim, conv_param=conv, hidden_size=7, seed=1)
    assert net.params["W2"].shape == (30 * pooled[0] * pooled[1], 7)
    assert net.predict(images(rng, 3, input_dim)).shape == (3, 10)


# ---------------------------------------------------------------------------
# The book's numbers, given the same parameters
# ---------------------------------------------------------------------------
@requires_book
@NETS
def test_simple_convnet_equals_the_books(nets, rng):
    net = nets.SimpleConvNet(**SMALL, weight_init_std=0.3, seed=2)
    book = book_simple.SimpleConvNet(**SMALL)
    copy_params_into(book, net)
    x, t = rng.random((7, 1, 10, 10)), rng.integers(0, 10, 7)
    assert_identical(net.predict(x), book.predict(x))
    # the loss: log-softmax here, the book's log(y + 1e-7) there
    assert net.loss(x, t) == pytest.approx(book.loss(x, t), rel=1e-5)
    ours, theirs = net.gradient(x, t), book.gradient(x, t)
    for key in theirs:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-9, atol=1e-14)
    assert net.accuracy(x, t, batch_size=7) == book.accuracy(x, t, batch_size=7)


@requires_book
@NETS
def test_deep_convnet_equals_the_books_dropout_masks_included(nets, rng):
    """seed=None draws the dropout masks from NumPy's global generator as the
    book does: after np.random.seed(k) both networks drop the same units."""
    net = nets.DeepConvNet()                            # seed=None: the book's stream
    seeded = nets.DeepConvNet(seed=5)
    for key in net.params:
        net.params[key][...] = seeded.params[key]
    book = book_deep.DeepConvNet()
    copy_params_into(book, net)
    x, t = rng.random((6, 1, 28, 28)), rng.integers(0, 10, 6)
    # equal to the last bit on x86-64 (the same OpenBLAS kernels over the same
    # rows); aarch64's kernels round differently for fastbp's row blocks
    np.testing.assert_allclose(net.predict(x), book.predict(x), rtol=1e-12, atol=1e-15)
    np.random.seed(11)
    ours = net.gradient(x, t)
    after = np.random.random()
    np.random.seed(11)
    theirs = book.gradient(x, t)
    assert np.random.random() == after                  # the stream consumed alike
    assert_identical(net.layers[17].mask, book.layers[17].mask)
    for key in theirs:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-9, atol=1e-14)


# ---------------------------------------------------------------------------
# Gradients, training, dtypes
# ---------------------------------------------------------------------------
@NETS
def test_simple_convnet_gradient_check(nets, rng):
    net = nets.SimpleConvNet(**SMALL, weight_init_std=0.3, seed=4)
    x, t = rng.random((3, 1, 10, 10)), np.array([[1], [4], [7]])     # (N, 1) labels
    numeric = net.numerical_gradient(x, t)
    analytic = net.gradient(x, t)
    assert set(numeric) == set(analytic) == set(net.params)
    for key in net.params:
        assert analytic[key].shape == net.params[key].shape
        assert rel_error(analytic[key], numeric[key]) <= 1e-7, key


@NETS
def test_train_step_is_gradient_then_update(nets, rng):
    a = nets.SimpleConvNet(**SMALL, seed=6)
    b = nets.SimpleConvNet(**SMALL, seed=6)
    x, t = rng.random((5, 1, 10, 10)), rng.integers(0, 10, 5)
    loss = a.train_step(x, t, fast_optimizers.Adam(lr=0.01))
    assert loss == b.loss(x, t)
    ref_optimizers.Adam(lr=0.01).update(b.params, b.gradient(x, t))
    for key in a.params:
        np.testing.assert_allclose(a.params[key], b.params[key], rtol=1e-12)
        assert a.layers["Conv1"].W is a.params["W1"]          # updated in place
    with pytest.raises(TypeError, match="optimizer:"):
        a.train_step(x, t, "sgd")


@NETS
def test_seeded_deep_convnet_trains_reproducibly(nets, rng):
    x, t = images(rng, 4), rng.integers(0, 10, 4)
    losses = []
    for seed in (3, 3, 4):
        net = nets.DeepConvNet(seed=seed)
        opt = fast_optimizers.SGD(lr=0.01)
        losses.append([net.train_step(x, t, opt) for _ in range(2)])
    assert losses[0] == losses[1]
    assert losses[0] != losses[2]
    assert losses[0][1] != losses[0][0]


@NETS
def test_simple_convnet_learns_mnist(nets):
    from fastbp.datasets import load_mnist_mini
    (x_train, t_train), (x_test, t_test) = load_mnist_mini(flatten=False)
    net = nets.SimpleConvNet(conv_param={"filter_num": 8, "filter_size": 5}, hidden_size=32,
                             weight_init_std=0.1, seed=0)
    opt = fast_optimizers.Adam(lr=0.005)
    before = net.accuracy(x_test[:500], t_test[:500])
    batches = np.random.default_rng(0).integers(0, len(x_train), (80, 50))
    with threadpool_limits(1):          # small GEMMs: one thread is faster, on a busy machine too
        for batch in batches:
            net.train_step(x_train[batch], t_train[batch], opt)
    after = net.accuracy(x_test[:500], t_test[:500])
    assert after >= 0.8 > 0.3 > before


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@NETS
def test_dtype(nets, dtype, rng):
    net = nets.SimpleConvNet(**SMALL, seed=7, dtype=dtype)
    wide = nets.SimpleConvNet(**SMALL, seed=7)
    assert all(p.dtype == dtype for p in net.params.values())
    x, t = images(rng, 4, (1, 10, 10)), rng.integers(0, 10, 4)
    assert net.predict(x).dtype == dtype                      # float32 images
    grads = net.gradient(x, t)
    assert all(g.dtype == dtype for g in grads.values())
    assert net.loss(x, t) == pytest.approx(wide.loss(x, t), rel=1e-5)
    deep = nets.DeepConvNet(seed=7, dtype=dtype)
    assert all(p.dtype == dtype for p in deep.params.values())
    assert deep.predict(images(rng, 2)).dtype == dtype


# ---------------------------------------------------------------------------
# accuracy
# ---------------------------------------------------------------------------
@NETS
def test_accuracy_counts_every_sample(nets, rng):
    net = nets.SimpleConvNet(**SMALL, weight_init_std=0.3, seed=8)
    x = rng.random((25, 1, 10, 10))
    predicted = np.argmax(net.predict(x), axis=1)
    t = predicted.copy()
    t[[0, 3, 24]] = (t[[0, 3, 24]] + 1) % 10                    # 3 of 25 wrong, one last
    for batch_size in (1, 7, 10, 25, 100):
        acc = net.accuracy(x, t, batch_size=batch_size)
        assert type(acc) is float and acc == 22 / 25
    assert net.accuracy(x, t.reshape(-1, 1)) == 22 / 25          # (N, 1) labels
    assert net.accuracy(x, np.eye(10)[t]) == 22 / 25              # one-hot
    deep = nets.DeepConvNet(seed=8)
    xd = images(rng, 3)
    np.random.seed(0)
    assert deep.accuracy(xd, np.argmax(deep.predict(xd), axis=1), batch_size=2) == 1.0


@pytest.mark.parametrize("call,exc,needles", [
    (lambda net, x, t: net.accuracy(x, t[:4]), ValueError, ("t:", "5 labels", "got 4")),
    (lambda net, x, t: net.accuracy(x, np.eye(11)[t]), ValueError, ("t:", "(5, 10)", "(5, 11)")),
    (lambda net, x, t: net.accuracy(x, t, batch_size=0), ValueError, ("batch_size:", "got 0")),
    (lambda net, x, t: net.accuracy(x[:0], t[:0]), ValueError, ("x:", "non-empty")),
    (lambda net, x, t: net.accuracy(x.reshape(5, 100), t), ValueError, ("x:", "4-D")),
    (lambda net, x, t: net.loss(x[:, :, :4], t), ValueError, ("x:",)),
    (lambda net, x, t: net.loss(x, t.astype(float)), TypeError, ("t:", "float64")),
    (lambda net, x, t: net.loss(x, t.reshape(-1, 1).astype(float)), ValueError,
     ("t:", "got shape (5, 1)")),
    (lambda net, x, t: net.gradient(x, np.where(t == t[0], 10, t)), ValueError,
     ("t:", "got 10")),
    (lambda net, x, t: net.loss(x[:0], t[:0]), ValueError, ("x:", "at least one sample")),
])
@NETS
def test_bad_batches(nets, call, exc, needles, rng):
    net = nets.SimpleConvNet(**SMALL, seed=9)
    before = {k: v.copy() for k, v in net.params.items()}
    x, t = rng.random((5, 1, 10, 10)), rng.integers(0, 10, 5)
    assert_raises_naming(exc, needles, call, net, x, t)
    for key in before:
        assert_identical(net.params[key], before[key])


@pytest.mark.parametrize("kwargs,exc,needles", [
    (dict(input_dim=(28, 28)), ValueError, ("input_dim:", "(channels, height, width)")),
    (dict(input_dim=(1, 28, 0)), ValueError, ("input_dim[2]:", "got 0")),
    (dict(conv_param={"filter_num": 30, "size": 5}), ValueError, ("conv_param:", "['size']")),
    (dict(conv_param=[30, 5, 0, 1]), TypeError, ("conv_param:", "dict", "list")),
    (dict(conv_param={"filter_size": 0}), ValueError, ("conv_param['filter_size']:", "got 0")),
    (dict(conv_param={"stride": 1.5}), ValueError, ("conv_param['stride']:", "got 1.5")),
    (dict(conv_param={"pad": -1}), ValueError, ("conv_param['pad']:", "got -1")),
    (dict(input_dim=(1, 4, 4)), ValueError, ("conv_param:", "filter_size at most 4", "got 5")),
    (dict(input_dim=(1, 5, 5)), ValueError, ("input_dim:", "2 x 2 pooling", "got 1 x 1")),
    (dict(hidden_size=0), ValueError, ("hidden_size:",)),
    (dict(weight_init_std=-1), ValueError, ("weight_init_std:",)),
    (dict(dtype=np.int32), ValueError, ("dtype:", "int32")),
])
@NETS
def test_bad_simple_convnet_arguments(nets, kwargs, exc, needles):
    assert_raises_naming(exc, needles, nets.SimpleConvNet, **kwargs)


@NETS
def test_bad_deep_convnet_arguments(nets):
    assert_raises_naming(ValueError, ("conv_param_4", "['filter']"), nets.DeepConvNet,
                         conv_param_4={"filter": 3})
    assert_raises_naming(ValueError, ("input_dim:", "2 x 2 pooling"), nets.DeepConvNet,
                         input_dim=(1, 2, 2))
    net = nets.DeepConvNet(input_dim=(3, 16, 12), conv_param_6={"filter_num": 8},
                           hidden_size=20, output_size=4, seed=0)
    assert net.params["W7"].shape == (8 * 2 * 2, 20)      # 16x12 -> 8x6 -> 4x4 (pad 2) -> 2x2
    assert net.params["W6"].shape == (8, 64, 3, 3)
    assert net.predict(np.zeros((2, 3, 16, 12))).shape == (2, 4)


# ---------------------------------------------------------------------------
# The book's parameter files
# ---------------------------------------------------------------------------
def snapshot(net):
    return {k: (v, v.copy()) for k, v in net.params.items()}


def assert_untouched(net, snap):
    assert net.params.keys() == snap.keys()
    for key, (array, values) in snap.items():
        assert net.params[key] is array
        assert_identical(array, values)


@requires_book
@NETS
def test_book_files_load_as_they_are(nets):
    simple, deep = nets.SimpleConvNet(seed=0), nets.DeepConvNet(seed=0)
    arrays = {k: v for k, v in simple.params.items()}
    assert simple.load_params(SIMPLE_PARAMS) is simple
    with open(SIMPLE_PARAMS, "rb") as f:
        expected = pickle.load(f)
    for key, value in expected.items():
        assert_identical(simple.params[key], value)
        assert simple.params[key] is arrays[key]              # copied into, not replaced
    deep.load_params(DEEP_PARAMS)
    with open(DEEP_PARAMS, "rb") as f:
        expected = pickle.load(f)
    for key, value in expected.items():
        assert_identical(deep.params[key], value)
    # float32 network: cast
    small = nets.SimpleConvNet(dtype=np.float32, seed=0)
    small.load_params(SIMPLE_PARAMS)
    assert small.params["W2"].dtype == np.float32
    np.testing.assert_array_equal(small.params["W2"], expected_simple()["W2"].astype(np.float32))


def expected_simple():
    with open(SIMPLE_PARAMS, "rb") as f:
        return pickle.load(f)


@NETS
def test_save_params_round_trip_and_the_books_reader(nets, tmp_path, rng):
    net = nets.SimpleConvNet(**SMALL, seed=10)
    path = tmp_path / "params.pkl"
    net.save_params(path)
    with open(path, "rb") as f:
        plain = pickle.load(f)                                # what the book's load_params does
    assert type(plain) is dict and list(plain) == list(net.params)
    other = nets.SimpleConvNet(**SMALL, seed=11)
    other.load_params(str(path))
    x = rng.random((3, 1, 10, 10))
    assert_identical(other.predict(x), net.predict(x))
    for key in plain:
        assert_identical(plain[key], net.params[key])
        assert not np.shares_memory(plain[key], net.params[key])


@NETS
def test_load_params_repoints_the_layers(nets, tmp_path):
    """The book's style: params[key] replaced by a new array, then load_params:
    the layers use params again."""
    net = nets.SimpleConvNet(**SMALL, seed=12)
    net.save_params(tmp_path / "p.pkl")
    net.params["W1"] = np.zeros_like(net.params["W1"])
    frozen = np.zeros_like(net.params["b3"])
    frozen.setflags(write=False)
    net.params["b3"] = frozen
    net.load_params(tmp_path / "p.pkl")
    assert net.layers["Conv1"].W is net.params["W1"] and net.params["W1"].any()
    assert net.layers["Affine2"].b is net.params["b3"]


def rename_module(data, protocol, old, new):
    """A pickle with module name ``old`` spelled ``new`` (NumPy 1.x writes
    numpy.core where 2.x writes numpy._core).  Protocols 0-3 spell globals
    as text lines; 4-5 as length-prefixed strings inside one frame."""
    if protocol <= 3:
        return data.replace(old.encode() + b"\n", new.encode() + b"\n")
    short = lambda s: b"\x8c" + bytes([len(s)]) + s.encode()  # noqa: E731
    assert data[2:3] == b"\x95"                               # one frame, length at 3:11
    renamed = data[11:].replace(short(old), short(new))
    frame = int.from_bytes(data[3:11], "little") + len(renamed) - len(data[11:])
    return data[:3] + frame.to_bytes(8, "little") + renamed


@pytest.mark.parametrize("numpy_names", ["numpy 2.x", "numpy 1.x"])
@pytest.mark.parametrize("protocol", range(6))
def test_every_pickle_protocol_of_both_numpys_loads(protocol, numpy_names, tmp_path):
    net = ref_convnets.SimpleConvNet(**SMALL, seed=13)
    source = ref_convnets.SimpleConvNet(**SMALL, seed=14)
    arrays = {key: value for key, value in source.params.items()}
    arrays["W2"] = np.asfortranarray(arrays["W2"])
    data = pickle.dumps(arrays, protocol=protocol)
    if numpy_names == "numpy 1.x":
        for module in ("multiarray", "numeric"):
            data = rename_module(data, protocol, f"numpy._core.{module}", f"numpy.core.{module}")
        assert b"numpy._core" not in data
    path = tmp_path / "p.pkl"
    path.write_bytes(data)
    net.load_params(path)
    for key in arrays:
        assert_identical(net.params[key], arrays[key])


class RunsCode:
    """Pickles as a call of os.system: what a malicious weights file does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return (os.system, (f"echo pwned > {self.marker}",))


class EvalsCode:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


@pytest.mark.parametrize("make,exc,needles", [
    (lambda net, m: {**net.params, "W1": RunsCode(m)}, pickle.UnpicklingError,
     ("refused to load", "system", "dict of NumPy arrays")),
    (lambda net, m: {**net.params, "b3": EvalsCode()}, pickle.UnpicklingError,
     ("refused to load builtins.eval",)),
    (lambda net, m: RunsCode(m), pickle.UnpicklingError, ("refused to load",)),
    (lambda net, m: list(net.params.values()), pickle.UnpicklingError,
     ("expected a pickled dict", "got list")),
    (lambda net, m: {**net.params, "W1": np.float64(1.0)}, pickle.UnpicklingError,
     ("refused to load", "scalar")),
    (lambda net, m: {**net.params, "W1": np.ma.masked_array(net.params["W1"])},
     pickle.UnpicklingError, ("refused to load", "numpy.ma")),
    (lambda net, m: {**net.params, "W1": net.params["W1"].astype(object)},
     pickle.UnpicklingError, ("W1:", "dtype object")),
    (lambda net, m: {**net.params, "W1": net.params["W1"].astype(complex)},
     pickle.UnpicklingError, ("W1:", "complex128")),
    (lambda net, m: {**net.params, 3: net.params["W1"]}, pickle.UnpicklingError,
     ("str keys", "got 3")),
    (lambda net, m: {**net.params, "W4": np.ones(3)}, ValueError,
     ("expected the parameters", "unknown: ['W4']")),
    (lambda net, m: {k: v for k, v in net.params.items() if k != "b2"}, ValueError,
     ("missing: ['b2']",)),
    (lambda net, m: {**net.params, "W2": net.params["W2"].T}, ValueError,
     ("W2:", "expected shape (160, 10)", "got (10, 160)")),
    (lambda net, m: {**net.params, "b1": net.params["b1"][:3]}, ValueError,
     ("b1:", "expected shape (10,)", "got (3,)")),
])
@NETS
def test_load_params_refuses_and_changes_nothing(nets, make, exc, needles, tmp_path):
    marker = tmp_path / "pwned"
    net = nets.SimpleConvNet(**SMALL, seed=15)
    other = nets.SimpleConvNet(**SMALL, seed=16)
    path = tmp_path / "params.pkl"
    with open(path, "wb") as f:
        pickle.dump(make(other, marker), f)
    snap = snapshot(net)
    layers_before = [(layer.W, layer.b) for layer in net._param_layers]
    assert_raises_naming(exc, needles, net.load_params, path)
    assert not marker.exists()                      # the code in the file did not run
    assert_untouched(net, snap)
    assert [(layer.W, layer.b) for layer in net._param_layers] == layers_before


def test_the_malicious_file_would_run_code_with_plain_pickle(tmp_path):
    """The control: pickle.load on the same file runs the command."""
    marker = tmp_path / "pwned"
    path = tmp_path / "params.pkl"
    with open(path, "wb") as f:
        pickle.dump({"W1": RunsCode(marker)}, f)
    with open(path, "rb") as f:
        pickle.load(f)
    assert marker.read_text().strip() == "pwned"


@pytest.mark.parametrize("content,needle", [(b"", "not a pickled dict"),
                                            (b"\x80\x04garbage", "not a pickled dict"),
                                            (b"hello world", "not a pickled dict")])
def test_garbage_files(content, needle, tmp_path):
    path = tmp_path / "p.pkl"
    path.write_bytes(content)
    net = ref_convnets.SimpleConvNet(**SMALL, seed=17)
    snap = snapshot(net)
    assert_raises_naming(pickle.UnpicklingError, (str(path), needle), net.load_params, path)
    assert_untouched(net, snap)
    with pytest.raises(FileNotFoundError):
        net.load_params(tmp_path / "missing.pkl")
