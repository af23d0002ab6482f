"""State that lives between calls: what the caller may change after
``forward`` and before ``backward``.

A layer checks its arguments at every call, but ``backward`` also reads what
``forward`` left behind (the labels, the x it saw) and attributes the caller
may have replaced since (``W``).  None of it may reach a compiled kernel
unchecked: each case here gives the reference's result or a clear error, and
never a crash.  Cases that crashed once run in a subprocess, so a regression
is reported as a failure instead of taking the test run down.
"""
import numpy as np
import pytest

from conftest import run_isolated
from fastbp import layers as fast_layers
from fastbp.reference import layers as ref_layers

IMPLS = {"fastbp": fast_layers, "reference": ref_layers}


# -- labels changed between SoftmaxWithLoss.forward and backward ------------------
@pytest.mark.parametrize("new_label", [-1, 12, 10**11, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_labels_changed_after_forward_do_not_reach_backward(new_label, dtype):
    # In a subprocess: this corrupted the heap (free(): invalid next size) or
    # segfaulted when backward's kernel indexed with the caller's labels.
    code = f"""
        import numpy as np
        from fastbp.layers import SoftmaxWithLoss
        rng = np.random.default_rng(0)
        x = rng.standard_normal((4, 10)).astype(np.{np.dtype(dtype).name})
        t = np.array([1, 2, 3, 4])
        expected_layer = SoftmaxWithLoss()
        expected_layer.forward(x, t.copy())
        expected = expected_layer.backward()
        layer = SoftmaxWithLoss()
        layer.forward(x, t)
        t[0] = {new_label}
        dx = layer.backward()
        print(np.array_equal(dx, expected), dx.dtype)
        """
    returncode, out, err = run_isolated(code)
    assert returncode == 0, err[-2000:]
    assert out.split() == ["True", np.dtype(dtype).name]


@pytest.mark.parametrize("impl", IMPLS)
def test_backward_uses_the_labels_of_forward(impl):
    layers = IMPLS[impl]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 4))
    t = np.array([0, 1, 2, 3, 0])
    onehot = np.eye(4)[t]
    for labels in (t, onehot):
        expected_layer = layers.SoftmaxWithLoss()
        expected_layer.forward(x, labels.copy())
        expected = expected_layer.backward()
        layer = layers.SoftmaxWithLoss()
        layer.forward(x, labels)
        labels[...] = labels[::-1].copy()   # the caller reuses its array
        np.testing.assert_array_equal(layer.backward(), expected)


# -- Affine.W replaced between forward and backward -------------------------------
@pytest.mark.parametrize("rows", [10, 700, 783, 785, 2000])
def test_affine_weights_replaced_with_another_shape_raise(rows):
    # In a subprocess: 10 rows segfaulted, 700/783 read out of bounds, 785/2000
    # made BLAS reject the call and left dW uninitialised.
    code = f"""
        import numpy as np
        from fastbp.layers import Affine
        rng = np.random.default_rng(0)
        layer = Affine(rng.standard_normal((784, 50)), np.zeros(50))
        layer.forward(rng.standard_normal((100, 784)))
        layer.W = rng.standard_normal(({rows}, 50))
        try:
            layer.backward(np.ones((100, 50)))
        except ValueError as exc:
            print("ValueError:", exc)
        """
    returncode, out, err = run_isolated(code)
    assert returncode == 0, err[-2000:]
    assert out.startswith("ValueError: W: expected 784 rows"), out + err
    assert f"({rows}, 50)" in out
    assert "illegal value" not in err       # BLAS never saw the call


@pytest.mark.parametrize("impl", IMPLS)
def test_affine_weights_replaced_same_shape_use_the_new_weights(impl):
    layers = IMPLS[impl]
    rng = np.random.default_rng(2)
    x, dout = rng.standard_normal((6, 5)), rng.standard_normal((6, 3))
    layer = layers.Affine(rng.standard_normal((5, 3)), np.zeros(3))
    layer.forward(x)
    new_W = rng.standard_normal((5, 3))
    layer.W = new_W
    dx = layer.backward(dout)
    np.testing.assert_allclose(dx, dout @ new_W.T, rtol=1e-12)
    np.testing.assert_allclose(layer.dW, x.T @ dout, rtol=1e-12)


@pytest.mark.parametrize("impl", IMPLS)
def test_affine_x_replaced_after_forward_is_what_backward_uses(impl):
    # The book's backward reads self.x; so does fastbp's, whatever it was set to.
    layers = IMPLS[impl]
    rng = np.random.default_rng(3)
    layer = layers.Affine(rng.standard_normal((5, 3)), np.zeros(3))
    layer.forward(rng.standard_normal((6, 5)))
    other_x = rng.standard_normal((6, 5))
    layer.x = other_x
    dout = rng.standard_normal((6, 3))
    layer.backward(dout)
    np.testing.assert_allclose(layer.dW, other_x.T @ dout, rtol=1e-12)
    layer.x = rng.standard_normal((2, 5))           # fewer rows than dout
    with pytest.raises(ValueError, match="dout: expected shape"):
        layer.backward(dout)


@pytest.mark.parametrize("x_shape", [(4, 6), (4, 2, 3, 1), (4, 3, 2)], ids=str)
@pytest.mark.parametrize("impl", IMPLS)
def test_affine_original_x_shape_replaced_is_checked_before_anything_changes(impl, x_shape):
    # backward reshapes dx to original_x_shape: another shape of as many
    # elements is used (a list too), anything else is refused with the
    # attribute's name, and dW/db keep what the last backward set
    layers = IMPLS[impl]
    rng = np.random.default_rng(4)
    layer = layers.Affine(rng.standard_normal((6, 3)), np.zeros(3))
    x, dout = rng.standard_normal(x_shape), rng.standard_normal((4, 3))
    layer.forward(x)
    want = layer.backward(dout)
    dW, db = layer.dW, layer.db
    layer.original_x_shape = [3, 8]
    np.testing.assert_array_equal(layer.backward(dout), want.reshape(3, 8))
    for bad, error in (((), ValueError), ((25,), ValueError), ((-4, -6), ValueError),
                       (None, TypeError), ("ab", TypeError), ((4.0, 6), TypeError)):
        layer.dW, layer.db = dW, db
        layer.original_x_shape = bad
        with pytest.raises(error, match="original_x_shape: expected"):
            layer.backward(dout)
        assert layer.dW is dW and layer.db is db


# -- any attribute backward reads, reassigned or changed in place ------------------
# Each case: a layer, the forward arguments, what the caller does before
# backward (``change(layer, args)``) and backward's dout.  fastbp and the
# reference must agree: the same exception type, or the same results
# (backward's return value and every gradient attribute).  The cases run in
# one subprocess: a kernel reading an attribute it didn't check could crash.
STATE_CASES = """
rng = np.random.default_rng(7)
X = rng.standard_normal((6, 4))
X32 = X.astype(np.float32)
X4 = rng.standard_normal((6, 2, 3, 2))
T = np.array([0, 1, 2, 3, 0, 1])
W = rng.standard_normal((4, 3))
W4 = rng.standard_normal((12, 3))
D3 = rng.standard_normal((6, 3))
D4 = rng.standard_normal((6, 4))

def affine(mod):
    return mod.Affine(W.copy(), np.zeros(3))

def affine_4d(mod):
    return mod.Affine(W4.copy(), np.zeros(3))

CASES = {
    # Relu.mask: anything but forward's bool mask indexes as NumPy does
    "Relu.mask float": ("Relu", (X,), lambda l, a: setattr(l, "mask", l.mask.astype(float)), D4),
    "Relu.mask int8": ("Relu", (X,), lambda l, a: setattr(l, "mask", l.mask.astype(np.int8)), D4),
    "Relu.mask int64": ("Relu", (X,), lambda l, a: setattr(l, "mask", l.mask.astype(np.int64)), D4),
    "Relu.mask bool, other shape": ("Relu", (X,), lambda l, a: setattr(l, "mask", np.zeros((3, 4), bool)), D4),
    "Relu.mask bool, F order": ("Relu", (X,), lambda l, a: setattr(l, "mask", np.asfortranarray(~l.mask)), D4),
    "Relu.mask list": ("Relu", (X,), lambda l, a: setattr(l, "mask", l.mask.tolist()), D4),
    "Relu.mask None": ("Relu", (X,), lambda l, a: setattr(l, "mask", None), D4),
    "Relu.mask flipped in place": ("Relu", (X,), lambda l, a: np.logical_not(l.mask, out=l.mask), D4),
    # Sigmoid.out
    "Sigmoid.out float32": ("Sigmoid", (X,), lambda l, a: setattr(l, "out", l.out.astype(np.float32)), D4),
    "Sigmoid.out int": ("Sigmoid", (X,), lambda l, a: setattr(l, "out", (l.out * 4).astype(np.int32)), D4.astype(np.int32)),
    "Sigmoid.out other shape": ("Sigmoid", (X,), lambda l, a: setattr(l, "out", np.ones((3, 8))), D4),
    "Sigmoid.out strided": ("Sigmoid", (X,), lambda l, a: setattr(l, "out", np.ones((6, 8))[:, ::2]), D4),
    "Sigmoid.out list": ("Sigmoid", (X,), lambda l, a: setattr(l, "out", l.out.tolist()), D4),
    "Sigmoid.out scaled in place": ("Sigmoid", (X,), lambda l, a: l.out.__imul__(0.5), D4),
    # Affine: x, original_x_shape, W, b; the caller's x changed in place
    "Affine.original_x_shape transposed": ("Affine", (X,), lambda l, a: setattr(l, "original_x_shape", (4, 6)), D3),
    "Affine.original_x_shape 3-D": ("Affine", (X,), lambda l, a: setattr(l, "original_x_shape", (6, 2, 2)), D3),
    "Affine.original_x_shape wrong size": ("Affine", (X,), lambda l, a: setattr(l, "original_x_shape", (5, 4)), D3),
    "Affine.original_x_shape list": ("Affine", (X,), lambda l, a: setattr(l, "original_x_shape", [6, 4]), D3),
    "Affine.original_x_shape None": ("Affine", (X,), lambda l, a: setattr(l, "original_x_shape", None), D3),
    "Affine 4-D x, original_x_shape 2-D": ("Affine4", (X4,), lambda l, a: setattr(l, "original_x_shape", (6, 12)), D3),
    "Affine.x int": ("Affine", (X,), lambda l, a: setattr(l, "x", (l.x * 3).astype(np.int64)), D3),
    "Affine.x float32": ("Affine", (X,), lambda l, a: setattr(l, "x", l.x.astype(np.float32)), D3),
    "Affine.x 3-D": ("Affine", (X,), lambda l, a: setattr(l, "x", l.x.reshape(6, 2, 2)), D3),
    "Affine.x list": ("Affine", (X,), lambda l, a: setattr(l, "x", l.x.tolist()), D3),
    "Affine.x F order": ("Affine", (X,), lambda l, a: setattr(l, "x", np.asfortranarray(l.x + 1)), D3),
    "Affine.W float32": ("Affine", (X,), lambda l, a: setattr(l, "W", l.W.astype(np.float32)), D3),
    "Affine.W more columns": ("Affine", (X,), lambda l, a: setattr(l, "W", np.ones((4, 5))), D3),
    "Affine.b other shape": ("Affine", (X,), lambda l, a: setattr(l, "b", np.ones(7)), D3),
    "Affine x changed in place": ("Affine", (X.copy(),), lambda l, a: a[0].__imul__(-2.0), D3),
    "Affine float32 x changed in place": ("Affine", (X32.copy(),), lambda l, a: a[0].__imul__(-2.0), D3),
    "Affine 4-D x changed in place": ("Affine4", (X4.copy(),), lambda l, a: a[0].__iadd__(1.0), D3),
    # SoftmaxWithLoss.y
    "SoftmaxWithLoss.y other shape": ("SoftmaxWithLoss", (D4, T), lambda l, a: setattr(l, "y", np.ones((3, 4)) / 4), 1),
    "SoftmaxWithLoss.y a row slice": ("SoftmaxWithLoss", (D4, T), lambda l, a: setattr(l, "y", l.y[:3]), 1),
    "SoftmaxWithLoss.y float32": ("SoftmaxWithLoss", (D4, T), lambda l, a: setattr(l, "y", l.y.astype(np.float32)), 1),
    "SoftmaxWithLoss.y list": ("SoftmaxWithLoss", (D4, T), lambda l, a: setattr(l, "y", l.y.tolist()), 1),
    "SoftmaxWithLoss.y changed in place": ("SoftmaxWithLoss", (D4, T), lambda l, a: l.y.__imul__(0.5), 1),
    "SoftmaxWithLoss.t replaced": ("SoftmaxWithLoss", (D4, T), lambda l, a: setattr(l, "t", T[::-1] + 20), 1),
    "SoftmaxWithLoss labels changed in place": ("SoftmaxWithLoss", (D4, T.copy()), lambda l, a: a[1].__setitem__(0, 99), 1),
}

BUILD = {"Affine": affine, "Affine4": affine_4d}

def outcome(mod, name, args, change, dout):
    layer = BUILD[name](mod) if name in BUILD else getattr(mod, name)()
    args = tuple(np.array(a, copy=True) for a in args)
    layer.forward(*args)
    change(layer, args)
    try:
        dx = layer.backward(dout)
    except Exception as exc:
        return ("raises", type(exc).__name__)
    grads = [np.asarray(getattr(layer, g)) for g in ("dW", "db") if hasattr(layer, g)]
    return ("returns", [np.asarray(dx)] + grads)

def same(a, b):
    if a[0] != b[0]:
        return False
    if a[0] == "raises":
        return a[1] == b[1]
    return all(x.shape == y.shape and x.dtype == y.dtype
               and np.allclose(x, y, rtol=1e-6, atol=1e-12, equal_nan=True)
               for x, y in zip(a[1], b[1]))

for case, (name, args, change, dout) in CASES.items():
    fast = outcome(fast_layers, name, args, change, dout)
    ref = outcome(ref_layers, name, args, change, dout)
    print(json.dumps([case, same(fast, ref), str(fast)[:200], str(ref)[:200]]), flush=True)
"""


@pytest.fixture(scope="module")
def state_case_outcomes():
    code = ("import json\nimport numpy as np\nfrom fastbp import layers as fast_layers\n"
            "from fastbp.reference import layers as ref_layers\n" + STATE_CASES)
    returncode, out, err = run_isolated(code)
    results = {}
    for line in out.splitlines():
        case, same, fast, ref = __import__("json").loads(line)
        results[case] = (same, fast, ref)
    return returncode, results, err


STATE_CASE_NAMES = [line.split('"')[1] for line in STATE_CASES.splitlines()
                    if line.startswith('    "') and '": (' in line]


@pytest.mark.parametrize("case", STATE_CASE_NAMES)
def test_attribute_changed_between_forward_and_backward_matches_reference(
        state_case_outcomes, case):
    returncode, results, err = state_case_outcomes
    assert case in results, (f"the subprocess ended (exit {returncode}) before this case: "
                             f"{err[-2000:]}")
    same, fast, ref = results[case]
    assert same, f"fastbp {fast} != reference {ref}"
