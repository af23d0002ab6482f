"""State that lives between calls: what the caller may change after
``forward`` and before ``backward``.

A layer checks its arguments at every call, but ``backward`` also reads what
``forward`` left behind (the labels, the x it saw) and attributes the caller
may have replaced since (``W``).  None of it may reach a compiled kernel
unchecked: each case here gives the reference's result or a clear error, and
never a crash.  Cases that crashed once run in a subprocess, so a regression
is reported as a failure instead of taking the test run down.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastbp import layers as fast_layers
from fastbp.reference import layers as ref_layers

IMPLS = {"fastbp": fast_layers, "reference": ref_layers}
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def run_isolated(code):
    """Run ``code`` in a fresh interpreter; return (returncode, stdout, stderr)."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)     # the package under test, not the checkout
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=TESTS_DIR,
                          capture_output=True, text=True, timeout=120, env=env)
    return proc.returncode, proc.stdout, proc.stderr


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
