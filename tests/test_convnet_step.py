"""The convnets' compiled paths (fastbp._convnet): the fused train_step gives
the numbers of gradient() + optimizer.update, consumes the dropout stream
as the layers do and reuses its buffers; the compiled predict gives the
layers' logits; anything the compiled path can't take goes the layer way
with the same results and errors."""
import tracemalloc

import numpy as np
import pytest

import fastbp.networks as fast_networks
import fastbp.optimizers as fast_optimizers
import fastbp.reference.optimizers as ref_optimizers
from conftest import PURE, assert_identical

SMALL = dict(input_dim=(1, 10, 10),
             conv_param={"filter_num": 6, "filter_size": 3, "pad": 0, "stride": 1},
             hidden_size=10, output_size=10)
# a small DeepConvNet: 16 x 12 images, three channels, narrow layers
DEEP = dict(input_dim=(3, 16, 12), conv_param_1={"filter_num": 4}, conv_param_2={"filter_num": 4},
            conv_param_3={"filter_num": 8}, conv_param_4={"filter_num": 8},
            conv_param_5={"filter_num": 8}, conv_param_6={"filter_num": 8}, hidden_size=12)
DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64])
# float32 steps: Adam divides by sqrt(v), which magnifies the last bits of small gradients
RTOL = {np.float32: 2e-4, np.float64: 1e-10}


def make(name, dtype, seed=0):
    cls = getattr(fast_networks, name)
    return cls(**(SMALL if name == "SimpleConvNet" else DEEP), dtype=dtype, seed=seed)


def batch(rng, net, n):
    x = rng.random((n,) + net.input_dim).astype(np.float32)
    return x, rng.integers(0, net.output_size, n)


def layer_step(net, x, t, optimizer):
    """The book's way: gradients through the layers, then the optimizer."""
    loss, grads = net.loss_and_gradient(x, t)
    optimizer.update(net.params, grads)
    return loss


def assert_params_close(a, b, dtype, step_atol=0.0):
    """Parameters equal within RTOL of their largest, or step_atol."""
    for key in a.params:
        scale = max(1e-3, float(np.max(np.abs(b.params[key]))))
        np.testing.assert_allclose(a.params[key], b.params[key], rtol=RTOL[dtype],
                                   atol=max(RTOL[dtype] * scale, step_atol), err_msg=key)


@DTYPES
@pytest.mark.parametrize("name", ["SimpleConvNet", "DeepConvNet"])
@pytest.mark.parametrize("optimizer", ["SGD", "Momentum", "Adam"])
def test_train_step_is_gradient_then_update(name, optimizer, dtype, rng):
    fused, layered = make(name, dtype), make(name, dtype)
    lr = 0.05
    opt_fused = getattr(fast_optimizers, optimizer)(lr=lr)
    opt_layered = getattr(ref_optimizers, optimizer)(lr=lr)
    for step in range(3):
        x, t = batch(rng, fused, 7)
        np.random.seed(step)
        loss = fused.train_step(x, t, opt_fused)
        np.random.seed(step)
        expected = layer_step(layered, x, t, opt_layered)
        assert type(loss) is float
        assert loss == pytest.approx(expected, rel=RTOL[dtype])
    # Adam moves every element by about lr a step, whatever its gradient's
    # size: where a float32 gradient sums terms that nearly cancel, the two
    # paths' blocks round it differently (1e-3 relative), and Adam carries
    # that into the step.  A hundredth of a step bounds it.
    step_atol = 0.01 * lr if optimizer == "Adam" and dtype == np.float32 else 0.0
    assert_params_close(fused, layered, dtype, step_atol)
    for layer in fused._param_layers:                # updated in place: the layers see them
        assert any(layer.W is p for p in fused.params.values())


@pytest.mark.parametrize("seed", [None, 3])
def test_dropout_draws_the_layers_stream(seed, rng):
    """seed=None: NumPy's global generator, as the book; an int: the
    network's own generator.  Either way the fused step draws the same masks
    in the same order as the layer path, and leaves the stream where it does."""
    fused, layered = (fast_networks.DeepConvNet(**DEEP, seed=seed) for _ in range(2))
    if seed is None:
        for key in fused.params:
            layered.params[key][...] = fused.params[key]
    x, t = batch(rng, fused, 5)
    np.random.seed(11)
    fused.train_step(x, t, fast_optimizers.SGD(lr=0.1))
    after_fused = np.random.random()
    np.random.seed(11)
    layer_step(layered, x, t, ref_optimizers.SGD(lr=0.1))
    after_layered = np.random.random()
    assert after_fused == after_layered
    for i in fused._dropout_indices:
        assert_identical(fused.layers[i].mask, layered.layers[i].mask)
    assert_params_close(fused, layered, np.float64)


@DTYPES
@pytest.mark.parametrize("name", ["SimpleConvNet", "DeepConvNet"])
def test_predict_gives_the_layers_logits(name, dtype, rng):
    net = make(name, dtype, seed=1)
    for n in (1, 7, 100, 231):                       # blocks of 100 and their remainders
        x, _ = batch(rng, net, n)
        logits = net.predict(x)
        expected = net._forward(x, False)
        assert logits.dtype == dtype and logits.shape == (n, net.output_size)
        np.testing.assert_allclose(logits, expected, rtol=RTOL[dtype],
                                   atol=RTOL[dtype] * float(np.max(np.abs(expected))))
    images = (rng.random((3,) + net.input_dim) * 255).astype(np.uint8)
    np.testing.assert_allclose(net.predict(images), net._forward(images, False),
                               rtol=RTOL[dtype], atol=RTOL[dtype] * 255)
    fortran = np.asfortranarray(images.astype(np.float64))
    np.testing.assert_allclose(net.predict(fortran), net.predict(images), rtol=RTOL[dtype])


def test_deep_predict_in_training_mode_draws_the_layers_masks(rng):
    net = fast_networks.DeepConvNet(**DEEP, seed=None)
    x, _ = batch(rng, net, 150)                      # more than a block: drawn in one go
    np.random.seed(4)
    fused = net.predict(x, train_flg=True)
    np.random.seed(4)
    layered = net._forward(x, True)
    np.testing.assert_allclose(fused, layered, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("labels", ["column", "one-hot"])
def test_labels_as_the_layers_take_them(labels, rng):
    fused, layered = make("SimpleConvNet", np.float64), make("SimpleConvNet", np.float64)
    x, t = batch(rng, fused, 6)
    t = t.reshape(-1, 1) if labels == "column" else np.eye(10)[t]
    loss = fused.train_step(x, t, fast_optimizers.SGD(lr=0.1))
    assert loss == pytest.approx(layer_step(layered, x, t, ref_optimizers.SGD(lr=0.1)))
    assert_params_close(fused, layered, np.float64)


@pytest.mark.parametrize("t,exc,needle", [
    (np.array([0, 1, 10, 2, 3, 4]), ValueError, "got 10"),
    (np.arange(5), ValueError, "expected 6 labels"),
    (np.zeros(6), TypeError, "float64"),
])
def test_bad_labels_change_nothing(t, exc, needle, rng):
    net = make("SimpleConvNet", np.float64)
    before = {k: v.copy() for k, v in net.params.items()}
    x, _ = batch(rng, net, 6)
    with pytest.raises(exc, match=needle):
        net.train_step(x, t, fast_optimizers.SGD(lr=0.1))
    for key in before:
        assert_identical(net.params[key], before[key])


@pytest.mark.parametrize("change", ["fortran W1", "read-only b2", "float32 W2", "3-D x"])
def test_what_the_compiled_path_cant_take_goes_the_layer_way(change, rng):
    fused, layered = make("SimpleConvNet", np.float64), make("SimpleConvNet", np.float64)
    x, t = batch(rng, fused, 4)
    for net in (fused, layered):
        if change == "fortran W1":
            net.params["W1"] = np.asfortranarray(net.params["W1"])
        elif change == "read-only b2":
            net.params["b2"] = net.params["b2"].copy()
            net.params["b2"].setflags(write=False)
        elif change == "float32 W2":
            net.params["W2"] = net.params["W2"].astype(np.float32)
        for i, layer in enumerate(net._param_layers, start=1):
            layer.W, layer.b = net.params[f"W{i}"], net.params[f"b{i}"]
    if change == "3-D x":
        with pytest.raises(ValueError, match="x: expected a 4-D batch"):
            fused.train_step(x[0], t[:1], fast_optimizers.SGD(lr=0.1))
        return
    np.testing.assert_allclose(fused.predict(x), layered._forward(x, False), rtol=1e-6)
    if change == "read-only b2":
        with pytest.raises(ValueError, match="read-only"):
            fused.train_step(x, t, fast_optimizers.SGD(lr=0.1))
        return
    loss = fused.train_step(x, t, fast_optimizers.SGD(lr=0.1))
    assert loss == pytest.approx(layer_step(layered, x, t, ref_optimizers.SGD(lr=0.1)))


@pytest.mark.skipif(PURE, reason="FASTBP_PURE=1: no compiled step")
@pytest.mark.parametrize("name", ["SimpleConvNet", "DeepConvNet"])
def test_steps_reuse_their_buffers(name, rng):
    """After the first step (which allocates the workspace) a step allocates
    only small arrays: the logits' softmax and the dropout masks."""
    net = make(name, np.float64)
    x, t = batch(rng, net, 40)
    opt = fast_optimizers.Adam()
    tracemalloc.start()
    try:
        net.train_step(x, t, opt)
        _, first = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        net.train_step(x, t, opt)
        current, second = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert second - current < 40 * 1024 < first / 4
