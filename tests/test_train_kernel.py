"""fastbp._train.MLPStep, the compiled training step, on its own.

The networks' train_step tests (test_networks_fast.py) cover it through the
public API; here its own guards: whatever it is handed, it raises before a
pointer reaches a loop and writes nothing, and both of its modes (update in
place, gradients out) agree with the reference network's backprop.
"""
import numpy as np
import pytest

from fastbp import _backend
from fastbp.reference import networks as ref_nets

pytestmark = pytest.mark.skipif(not _backend.COMPILED,
                                reason="MLPStep is part of the compiled core")

SIZES = (6, 5, 4, 3)


def _setup(dtype=np.float64, n=7, seed=0):
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal((d, m)).astype(dtype) for d, m in zip(SIZES, SIZES[1:])]
    biases = [rng.standard_normal(m).astype(dtype) for m in SIZES[1:]]
    x = rng.standard_normal((n, SIZES[0])).astype(dtype)
    t = rng.integers(0, SIZES[-1], n)
    return x, t, weights, biases


def _reference_net(weights, biases, activation, lam):
    net = ref_nets.MultiLayerNet(SIZES[0], list(SIZES[1:-1]), SIZES[-1],
                                 activation=activation, weight_decay_lambda=lam,
                                 dtype=weights[0].dtype)
    for i, (W, b) in enumerate(zip(weights, biases), start=1):
        net.params[f"W{i}"][...] = W
        net.params[f"b{i}"][...] = b
    return net


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("one_hot", [False, True])
def test_gradients_out_match_reference_backprop(activation, one_hot):
    x, t, weights, biases = _setup()
    lam = 0.1
    net = _reference_net(weights, biases, activation, lam)
    target = np.eye(SIZES[-1])[t] if one_hot else t
    loss, grads = net.loss_and_gradient(x, target)
    step = _backend.train.MLPStep(SIZES, len(x), np.float64, activation)
    grad_W = [np.full_like(W, np.nan) for W in weights]
    grad_b = [np.full_like(b, np.nan) for b in biases]
    total = step.step(x, target, weights, biases, grad_W, grad_b, 1.0, lam, 0.0)
    decay = sum(0.5 * lam * np.sum(W * W) for W in weights)
    assert total / len(x) + decay == pytest.approx(loss, rel=1e-13)
    for i in range(len(weights)):
        np.testing.assert_allclose(grad_W[i], grads[f"W{i + 1}"], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(grad_b[i], grads[f"b{i + 1}"], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_in_place_update_is_sgd_on_the_reference_gradient(dtype):
    x, t, weights, biases = _setup(dtype)
    lr, lam = 0.3, 0.01
    grads = _reference_net(weights, biases, "relu", lam).gradient(x, t)
    expected_W = [W - lr * grads[f"W{i + 1}"] for i, W in enumerate(weights)]
    expected_b = [b - lr * grads[f"b{i + 1}"] for i, b in enumerate(biases)]
    step = _backend.train.MLPStep(SIZES, len(x), dtype, "relu")
    step.step(x, t, weights, biases, weights, biases, -lr, 1.0 - lr * lam, 1.0)
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-14}
    for i in range(len(weights)):
        assert weights[i].dtype == dtype
        np.testing.assert_allclose(weights[i], expected_W[i], **tol)
        np.testing.assert_allclose(biases[i], expected_b[i], **tol)


def _bad_calls():
    """(label, mutate(args) -> args, error, message) for one broken argument each."""
    def replace(index, value):
        def mutate(args):
            args = list(args)
            args[index] = value(args)
            return args
        return mutate

    def replace_in(index, layer, value):
        def mutate(args):
            args = list(args)
            arrays = list(args[index])
            arrays[layer] = value(arrays[layer])
            args[index] = arrays
            return args
        return mutate

    def read_only(a):
        a = a.copy()
        a.flags.writeable = False
        return a

    return [
        ("x float32", replace(0, lambda a: a[0].astype(np.float32)), ValueError, "x:"),
        ("x shape", replace(0, lambda a: a[0][:, :-1].copy()), ValueError, "x:"),
        ("x batch", replace(0, lambda a: a[0][:-1].copy()), ValueError, "x:"),
        ("x strided", replace(0, lambda a: np.asfortranarray(a[0])), ValueError, "x:"),
        ("x list", replace(0, lambda a: a[0].tolist()), ValueError, "x:"),
        ("label high", replace(1, lambda a: np.where(np.arange(len(a[1])) == 3, SIZES[-1], a[1])),
         ValueError, "t: label 3 at index 3"),
        ("label negative", replace(1, lambda a: -a[1] - 1), ValueError, "t: label"),
        ("labels int32", replace(1, lambda a: a[1].astype(np.int32)), ValueError, "t:"),
        ("labels short", replace(1, lambda a: a[1][:-1].copy()), ValueError, "t:"),
        ("targets float32", replace(1, lambda a: np.eye(SIZES[-1], dtype=np.float32)[a[1]]),
         ValueError, "t:"),
        ("W2 float32", replace_in(2, 1, lambda W: W.astype(np.float32)), ValueError, "W2:"),
        ("W2 transposed", replace_in(2, 1, lambda W: W.T.copy()), ValueError, "W2:"),
        ("W3 F-order", replace_in(2, 2, lambda W: np.asfortranarray(W)), ValueError, "W3:"),
        # float64's type number with the other byte order: the values would be misread
        ("W2 byte-swapped", replace_in(2, 1, lambda W: W.astype(W.dtype.newbyteorder())),
         ValueError, "W2:"),
        ("b2 out byte-swapped", replace_in(5, 1, lambda b: b.astype(b.dtype.newbyteorder())),
         ValueError, "b2:"),
        ("b1 short", replace_in(3, 0, lambda b: b[:-1].copy()), ValueError, "b1:"),
        ("W1 out read-only", replace_in(4, 0, read_only), ValueError, "W1:"),
        ("b3 out read-only", replace_in(5, 2, read_only), ValueError, "b3:"),
        ("W1 a list", replace_in(2, 0, lambda W: W.tolist()), TypeError, "W1:"),
        ("one layer short", replace(3, lambda a: a[3][:-1]), ValueError, "weights, biases"),
    ]


@pytest.mark.parametrize("label,mutate,error,message", _bad_calls(),
                         ids=[case[0] for case in _bad_calls()])
def test_bad_arguments_raise_and_write_nothing(label, mutate, error, message):
    x, t, weights, biases = _setup()
    grad_W = [np.zeros_like(W) for W in weights]
    grad_b = [np.zeros_like(b) for b in biases]
    args = mutate([x, t, weights, biases, grad_W, grad_b])
    before = [a.copy() for group in args[2:] for a in group if isinstance(a, np.ndarray)]
    step = _backend.train.MLPStep(SIZES, len(x), np.float64, "relu")
    y_before = step.y.copy()
    with pytest.raises(error, match=message):
        step.step(*args, 1.0, 0.0, 0.0)
    after = [a for group in args[2:] for a in group if isinstance(a, np.ndarray)]
    for old, new in zip(before, after):
        assert np.array_equal(old, new)
    assert np.array_equal(step.y, y_before, equal_nan=True)


@pytest.mark.parametrize("sizes,batch,dtype,activation,error", [
    ((6, 3), 4, np.float16, "relu", TypeError),
    ((6, 3), 4, np.float64, "tanh", ValueError),
    ((6,), 4, np.float64, "relu", ValueError),
    ((6, 0, 3), 4, np.float64, "relu", ValueError),
    ((6, 3), 0, np.float64, "relu", ValueError),
])
def test_constructor_rejects_what_the_step_cannot_run(sizes, batch, dtype, activation, error):
    with pytest.raises(error):
        _backend.train.MLPStep(sizes, batch, dtype, activation)


def test_uninitialised_step_refuses_to_run():
    step = _backend.train.MLPStep.__new__(_backend.train.MLPStep)
    x, t, weights, biases = _setup()
    with pytest.raises(RuntimeError, match="not initialised"):
        step.step(x, t, weights, biases, weights, biases, -0.1, 1.0, 1.0)


def _norms(rng, dtype=np.float64):
    """ExtendStep's batch-norm tuples for SIZES' hidden layers: (gamma, beta,
    gamma_out, beta_out, mean, var, mean_out, var_out, momentum)."""
    norms = []
    for m in SIZES[1:-1]:
        gamma, beta = 1 + 0.1 * rng.standard_normal(m), 0.1 * rng.standard_normal(m)
        norms.append([a.astype(dtype) for a in (gamma, beta, np.zeros(m), np.zeros(m),
                                                 np.zeros(m), np.ones(m), np.empty(m),
                                                 np.empty(m))] + [0.9])
    return norms


def _frozen(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def _other_byte_order(a):
    return a.astype(a.dtype.newbyteorder())


@pytest.mark.parametrize("slot,layer,change,message", [
    (0, 1, _other_byte_order, "gamma2:"),
    (1, 0, lambda a: a[:-1].copy(), "beta1:"),
    (2, 0, _frozen, "gamma1:"),                 # an output: must be writable
    (4, 1, _other_byte_order, "running_mean2:"),
    (5, 0, lambda a: a.astype(np.float32), "running_var1:"),
    (7, 1, _frozen, "running_var2:"),
])
def test_extend_step_checks_each_batch_norm_array(slot, layer, change, message):
    x, t, weights, biases = _setup()
    norms = _norms(np.random.default_rng(1))
    norms[layer][slot] = change(norms[layer][slot])
    norms = [tuple(norm) for norm in norms]
    step = _backend.train_extend.ExtendStep(SIZES, len(x), np.float64, "relu", True, False)
    before = [a.copy() for a in weights + biases]
    with pytest.raises(ValueError, match=message):
        step.step(x, t, weights, biases, weights, biases, -0.1, 1.0, 1.0, norms, ())
    assert all(np.array_equal(a, b) for a, b in zip(before, weights + biases))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hidden", [(5, 4), (300, 1), (1, 3)])
def test_extend_step_bias_gradients_are_the_column_sums_of_dz(dtype, hidden):
    # Batch norm's backward sums dz as it writes it; the affine's db must be
    # exactly dz.sum(0) with the rows added in order (NumPy's axis-0 order
    # for two or more columns; a plain running sum for one).
    sizes = (6, *hidden, 4)
    rng = np.random.default_rng(2)
    n = 9
    x = rng.standard_normal((n, sizes[0])).astype(dtype)
    t = rng.integers(0, sizes[-1], n)
    weights = [(0.5 * rng.standard_normal((d, m))).astype(dtype)
               for d, m in zip(sizes, sizes[1:])]
    biases = [(0.1 * rng.standard_normal(m)).astype(dtype) for m in sizes[1:]]
    norms = []
    for m in hidden:
        norms.append(((1 + 0.1 * rng.standard_normal(m)).astype(dtype),
                      (0.1 * rng.standard_normal(m)).astype(dtype),
                      np.empty(m, dtype), np.empty(m, dtype), np.zeros(m, dtype),
                      np.zeros(m, dtype), np.empty(m, dtype), np.empty(m, dtype), 0.9))
    grad_W = [np.empty_like(W) for W in weights]
    grad_b = [np.empty_like(b) for b in biases]
    step = _backend.train_extend.ExtendStep(sizes, n, dtype, "relu", True, False)
    step.step(x, t, weights, biases, grad_W, grad_b, 1.0, 0.0, 0.0, norms, ())
    for dz, db in zip(step.dz, grad_b):
        want = np.zeros(dz.shape[1], dtype)
        for row in dz:                               # rows in order, from 0
            want = want + row
        assert np.array_equal(db, want)
        assert np.abs(db).max() > 0
