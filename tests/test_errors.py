"""Bad input gets one clear error, from the compiled package and from the reference.

Every case in ``CASES`` is run against ``fastbp.*`` and ``fastbp.reference.*``:
the exception type is the case's (so both implementations raise the same
type), the message names the argument and shows what was expected and what
came (the case's ``needles``), and nothing the caller passed in (x, t, dout,
W, b, params, grads) nor the layer / network parameters / optimizer state
changed.  ``len(CASES)`` (plus ``BLAS_CASES``) is the number of bad-input
cases; this module prints nothing.

Each case is a ``pytest.param`` made by ``error_case(id, exception, needles,
build)`` whose id names the input ("Affine.backward dout transposed (M, N)"),
so a failure report says which input failed; ``build(impl)`` is a named
function returning the call and the objects it must leave unchanged.  The
cases are listed per section (``LAYER_CASES``, ``SOFTMAX_LOSS_CASES``,
``FUNCTION_CASES``, ``OPTIMIZER_CASES``, ``NETWORK_CASES``); a ``_..._case``
helper writes the cases that differ only in their input.

Sizes past BLAS's 32-bit index range are checked in a subprocess under an
address-space limit, so a missing check shows up as a MemoryError instead of
the test allocating 16 GiB.
"""
import copy
import json
import math
import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest

import fastbp
from fastbp import functions as fast_functions
from fastbp import layers as fast_layers
from fastbp import networks as fast_networks
from fastbp import optimizers as fast_optimizers
from fastbp.reference import functions as ref_functions
from fastbp.reference import layers as ref_layers
from fastbp.reference import networks as ref_networks
from fastbp.reference import optimizers as ref_optimizers


IMPLS = {
    "fastbp": SimpleNamespace(layers=fast_layers, functions=fast_functions,
                              networks=fast_networks, optimizers=fast_optimizers),
    "reference": SimpleNamespace(layers=ref_layers, functions=ref_functions,
                                     networks=ref_networks, optimizers=ref_optimizers),
}


# ---------------------------------------------------------------------------
# The case registry
# ---------------------------------------------------------------------------
@dataclass
class Case:
    id: str
    exc: type
    needles: tuple            # substrings the message must contain
    build: object             # build(impl) -> (call, watched: dict name -> object)
    note: str = field(default="")


def error_case(case_id, exc, needles, build, note=""):
    """One bad-input case as a ``pytest.param`` whose id names the input."""
    return pytest.param(Case(case_id, exc, tuple(needles), build, note), id=case_id)


# ---------------------------------------------------------------------------
# "Nothing changed": deep snapshots compared value by value
# ---------------------------------------------------------------------------
def snapshot(obj):
    return copy.deepcopy(obj)


def assert_unchanged(before, after, path):
    if isinstance(before, np.ndarray):
        assert isinstance(after, np.ndarray), f"{path}: was an ndarray, now {type(after)}"
        assert after.shape == before.shape and after.dtype == before.dtype, \
            f"{path}: shape/dtype changed {before.shape}/{before.dtype} -> {after.shape}/{after.dtype}"
        assert np.array_equal(after, before, equal_nan=before.dtype.kind in "fc"), \
            f"{path}: values changed"
        return
    if isinstance(before, Mapping):
        assert isinstance(after, Mapping) and list(after) == list(before), \
            f"{path}: keys changed {list(before)} -> {list(after)}"
        for key in before:
            assert_unchanged(before[key], after[key], f"{path}[{key!r}]")
        return
    if isinstance(before, (list, tuple)):
        assert type(after) is type(before) and len(after) == len(before), f"{path} changed"
        for i, (b, a) in enumerate(zip(before, after)):
            assert_unchanged(b, a, f"{path}[{i}]")
        return
    if hasattr(before, "__dict__") and not isinstance(before, type):
        assert type(after) is type(before), f"{path}: type changed"
        assert_unchanged(vars(before), vars(after), path)
        return
    if isinstance(before, float) and math.isnan(before):
        assert isinstance(after, float) and math.isnan(after), f"{path}: {before} -> {after}"
        return
    assert after == before, f"{path}: {before!r} -> {after!r}"


def run_case(c, impl_name):
    """(exception, watched objects, their snapshots) for case ``c`` on one implementation."""
    call, watched = c.build(IMPLS[impl_name])
    before = {name: snapshot(obj) for name, obj in watched.items()}
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the type is what is tested
        return exc, watched, before
    return None, watched, before


# ---------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------
def _affine(m, d=7, k=2, dtype=np.float64):
    rng = np.random.default_rng(d * 10 + k)
    W = rng.standard_normal((d, k)).astype(dtype)
    b = rng.standard_normal(k).astype(dtype)
    return m.layers.Affine(W, b), W, b


def _affine_forward_case(case_id, x_shape, *needles, dtype=np.float64):
    def build(m):
        layer, W, b = _affine(m, dtype=dtype)
        x = np.ones(x_shape, dtype)
        return (lambda: layer.forward(x)), {"x": x, "W": W, "b": b, "layer": layer}
    return error_case(case_id, ValueError, needles, build)


def _affine_ctor_case(case_id, exc, W_shape, b_shape, *needles, W_dtype=np.float64,
                      b_dtype=np.float64):
    def build(m):
        W = np.ones(W_shape, W_dtype)
        b = np.zeros(b_shape, b_dtype)
        return (lambda: m.layers.Affine(W, b)), {"W": W, "b": b}
    return error_case(case_id, exc, needles, build)


def _affine_forward_after_b_was_replaced(m):
    layer, W, b = _affine(m)
    x = np.ones((4, 7))
    layer.b = np.zeros(5)
    return (lambda: layer.forward(x)), {"x": x, "W": W, "b": b, "layer": layer}


def _affine_forward_after_W_was_replaced(m):
    layer, W, b = _affine(m)
    x = np.ones((4, 7))
    layer.W = np.ones(7)
    return (lambda: layer.forward(x)), {"x": x, "W": W, "b": b, "layer": layer}


def _affine_backward_case(case_id, exc, dout, *needles, dtype=np.float64):
    def build(m):
        layer, W, b = _affine(m, dtype=dtype)
        x = np.ones((4, 7), dtype)
        layer.forward(x)
        d = np.asarray(dout).astype(dtype) if np.asarray(dout).dtype.kind in "fiub" else dout
        return (lambda: layer.backward(d)), {"x": x, "W": W, "b": b, "dout": d, "layer": layer}
    return error_case(case_id, exc, needles, build)


def _elementwise_backward_case(name, case_id, exc, dout, *needles, dtype=np.float64):
    def build(m):
        layer = getattr(m.layers, name)()
        x = np.linspace(-2, 2, 12).reshape(4, 3).astype(dtype)
        layer.forward(x)
        d = dout.astype(dtype) if dout.dtype.kind in "fiub" else dout
        return (lambda: layer.backward(d)), {"x": x, "dout": d, "layer": layer}
    return error_case(f"{name}.backward {case_id}", exc, needles, build)


def _elementwise_backward_cases(name):
    """The bad-dout cases of the elementwise layer ``name``."""
    return [
        _elementwise_backward_case(name, "dout of another shape", ValueError, np.ones((4, 5)),
                                   "dout:", "expected shape (4, 3)", "got (4, 5)"),
        _elementwise_backward_case(name, "float32 dout of another shape", ValueError,
                                   np.ones((4, 5)), "dout:", "expected shape (4, 3)", "got (4, 5)",
                                   dtype=np.float32),
        _elementwise_backward_case(name, "dout transposed", ValueError, np.ones((3, 4)),
                                   "dout:", "expected shape (4, 3)", "got (3, 4)"),
        _elementwise_backward_case(name, "dout broadcastable (3,)", ValueError, np.ones(3),
                                   "dout:", "expected shape (4, 3)", "got (3,)"),
        _elementwise_backward_case(name, "dout same size, other shape (12,)", ValueError,
                                   np.ones(12), "dout:", "expected shape (4, 3)", "got (12,)"),
        _elementwise_backward_case(name, "dout scalar", ValueError, np.ones(()),
                                   "dout:", "expected shape (4, 3)", "got ()"),
        _elementwise_backward_case(name, "dout complex", TypeError, np.ones((4, 3), complex),
                                   "dout:", "complex128"),
        _elementwise_backward_case(name, "dout object", TypeError, np.ones((4, 3), object),
                                   "dout:", "object"),
    ]


def _layer(m, name):
    if name == "Affine":
        return _affine(m, d=3)[0]
    return getattr(m.layers, name)()


def _backward_order_cases(name):
    """backward before any forward, and after a forward that raised, of layer ``name``."""
    def backward(layer):
        if name == "SoftmaxWithLoss":
            return (lambda: layer.backward()), {"layer": layer}
        dout = np.ones((4, 2))
        return (lambda: layer.backward(dout)), {"layer": layer, "dout": dout}

    def backward_before_forward(m):
        return backward(_layer(m, name))

    def backward_after_failed_forward(m):
        layer = _layer(m, name)
        bad = np.ones((4, 3), dtype=complex)
        with pytest.raises(TypeError):
            if name == "SoftmaxWithLoss":
                layer.forward(bad, np.zeros(4, np.int64))
            else:
                layer.forward(bad)
        return backward(layer)

    needles = (f"{name}.backward", "before forward")
    return [error_case(f"{name}.backward before forward", RuntimeError, needles,
                       backward_before_forward),
            error_case(f"{name}.backward after a forward that raised", RuntimeError, needles,
                       backward_after_failed_forward)]


BAD_X = {
    "object": lambda: np.array([[1.0, -2.0, 3.0]], dtype=object),
    "None": lambda: None,
    "datetime64": lambda: np.array([["2020-01-01"] * 3], dtype="datetime64[D]"),
    "ragged list": lambda: [[1.0, 2.0, 3.0], [1.0]],
    "bytes": lambda: np.array([[b"a", b"b", b"c"]]),
}
BAD_X_NEEDLES = {"object": "object", "None": "object", "datetime64": "datetime64",
                 "ragged list": "list", "bytes": "S1"}


def _bad_x_case(name, kind):
    """Layer ``name``'s forward given the non-numeric x ``BAD_X[kind]``."""
    def forward_with_bad_x(m):
        layer = _layer(m, name)
        x = BAD_X[kind]()
        t = np.zeros(1, np.int64)
        call = (lambda: layer.forward(x, t)) if name == "SoftmaxWithLoss" \
            else (lambda: layer.forward(x))
        watched = {"layer": layer, "t": t}
        if isinstance(x, np.ndarray):
            watched["x"] = x
        return call, watched
    return error_case(f"{name}.forward x {kind}", TypeError, ("x:", BAD_X_NEEDLES[kind]),
                      forward_with_bad_x)


LAYER_CASES = [
    _affine_forward_case("Affine.forward x features != W.shape[0]", (4, 11),
                         "x:", "expected 7 features", "got 11", "(7, 2)"),
    _affine_forward_case("Affine.forward float32 x features != W.shape[0]", (4, 11),
                         "x:", "expected 7 features", "got 11", dtype=np.float32),
    _affine_forward_case("Affine.forward image x features != W.shape[0]", (4, 2, 5),
                         "x:", "expected 7 features", "got 10", "(4, 2, 5)"),
    _affine_forward_case("Affine.forward x 1-D (a single sample)", (7,),
                         "x:", "(N, 7)", "got shape (7,)"),
    _affine_forward_case("Affine.forward x 0-D", (),
                         "x:", "(N, 7)", "got shape ()"),
    _affine_forward_case("Affine.forward x with zero features", (3, 0),
                         "x:", "expected 7 features", "got 0"),
    _affine_ctor_case("Affine(W, b) b of the wrong length", ValueError, (7, 2), (3,),
                      "b:", "expected shape (2,)", "got (3,)"),
    _affine_ctor_case("Affine(W, b) b 2-D (1, M)", ValueError, (7, 2), (1, 2),
                      "b:", "expected shape (2,)", "got (1, 2)"),
    _affine_ctor_case("Affine(W, b) b 0-D", ValueError, (7, 2), (),
                      "b:", "expected shape (2,)", "got ()"),
    _affine_ctor_case("Affine(W, b) W 1-D", ValueError, (7,), (2,),
                      "W:", "2-D", "got shape (7,)"),
    _affine_ctor_case("Affine(W, b) W 3-D", ValueError, (7, 2, 1), (2,),
                      "W:", "2-D", "got shape (7, 2, 1)"),
    _affine_ctor_case("Affine(W, b) W 0-D", ValueError, (), (2,),
                      "W:", "2-D", "got shape ()"),
    _affine_ctor_case("Affine(W, b) W complex", TypeError, (7, 2), (2,),
                      "W:", "real numeric", "complex128", W_dtype=np.complex128),
    _affine_ctor_case("Affine(W, b) b str", TypeError, (7, 2), (2,),
                      "b:", "real numeric", "<U", b_dtype="U3"),
    error_case("Affine.forward after b was replaced by a wrong-shape array", ValueError,
               ("b:", "expected shape (2,)", "got (5,)"), _affine_forward_after_b_was_replaced),
    error_case("Affine.forward after W was replaced by a 1-D array", ValueError,
               ("W:", "2-D", "got shape (7,)"), _affine_forward_after_W_was_replaced),
    _affine_backward_case("Affine.backward dout (N, M+1)", ValueError, np.ones((4, 3)),
                          "dout:", "expected shape (4, 2)", "got (4, 3)"),
    _affine_backward_case("Affine.backward float32 dout (N, M+1)", ValueError, np.ones((4, 3)),
                          "dout:", "expected shape (4, 2)", "got (4, 3)", dtype=np.float32),
    _affine_backward_case("Affine.backward dout (N+1, M)", ValueError, np.ones((5, 2)),
                          "dout:", "expected shape (4, 2)", "got (5, 2)"),
    _affine_backward_case("Affine.backward dout transposed (M, N)", ValueError, np.ones((2, 4)),
                          "dout:", "expected shape (4, 2)", "got (2, 4)"),
    _affine_backward_case("Affine.backward dout 1-D (M,)", ValueError, np.ones(2),
                          "dout:", "expected shape (4, 2)", "got (2,)"),
    _affine_backward_case("Affine.backward dout scalar", ValueError, np.float64(1.0),
                          "dout:", "expected shape (4, 2)", "got ()"),
    _affine_backward_case("Affine.backward dout complex", TypeError, np.ones((4, 2), complex),
                          "dout:", "complex128"),
    *_elementwise_backward_cases("Relu"),
    *_elementwise_backward_cases("Sigmoid"),
    *[case for name in ("Affine", "Relu", "Sigmoid", "SoftmaxWithLoss")
      for case in _backward_order_cases(name)],
    *[_bad_x_case(name, kind) for name in ("Relu", "Sigmoid", "Affine", "SoftmaxWithLoss")
      for kind in BAD_X],
]


# ---------------------------------------------------------------------------
# SoftmaxWithLoss labels
# ---------------------------------------------------------------------------
def _swl_case(case_id, exc, t_factory, *needles, x_shape=(4, 3), x_dtype=np.float64,
              note=""):
    def build(m):
        layer = m.layers.SoftmaxWithLoss()
        x = np.linspace(-1, 1, int(np.prod(x_shape))).reshape(x_shape).astype(x_dtype)
        t = t_factory()
        watched = {"x": x, "layer": layer}
        if isinstance(t, np.ndarray):
            watched["t"] = t
        return (lambda: layer.forward(x, t)), watched
    return error_case(f"SoftmaxWithLoss.forward {case_id}", exc, needles, build, note=note)


def _softmax_loss_backward_dout_a_str(m):
    layer = m.layers.SoftmaxWithLoss()
    x = np.linspace(-1, 1, 12).reshape(4, 3)
    t = np.array([0, 1, 2, 0])
    layer.forward(x, t)
    return (lambda: layer.backward("a")), {"x": x, "t": t, "layer": layer}


def _softmax_loss_backward_dout_too_long(m):
    layer = m.layers.SoftmaxWithLoss()
    x = np.linspace(-1, 1, 12).reshape(4, 3)
    t = np.array([0, 1, 2, 0])
    layer.forward(x, t)
    dout = np.ones(5)
    return (lambda: layer.backward(dout)), {"x": x, "t": t, "dout": dout, "layer": layer}


SOFTMAX_LOSS_CASES = [
    _swl_case("float labels of shape (N, 1)", ValueError,
              lambda: np.array([[0.], [1.], [2.], [0.]]),
              "t:", "(4,)", "(4, 3)", "got shape (4, 1)"),
    _swl_case("labels of shape (1, N)", ValueError, lambda: np.array([[0, 1, 2, 0]]),
              "t:", "(4,)", "got shape (1, 4)"),
    _swl_case("labels 3-D", ValueError, lambda: np.zeros((4, 3, 1), np.int64),
              "t:", "got shape (4, 3, 1)"),
    _swl_case("fewer labels than samples", ValueError, lambda: np.array([0, 1, 2]),
              "t:", "expected 4 labels", "got 3"),
    _swl_case("more labels than samples", ValueError, lambda: np.array([0, 1, 2, 0, 1]),
              "t:", "expected 4 labels", "got 5"),
    _swl_case("a label < 0", ValueError, lambda: np.array([0, 1, -1, 2]),
              "t:", "[0, 2]", "got -1"),
    _swl_case("an int8 label < 0", ValueError, lambda: np.array([0, -128, 1, 2], np.int8),
              "t:", "[0, 2]", "got -128"),
    _swl_case("a label == C", ValueError, lambda: np.array([0, 1, 3, 2]),
              "t:", "[0, 2]", "3 classes", "got 3"),
    _swl_case("a uint64 label >= 2**63", ValueError,
              lambda: np.array([0, 2**63 + 5, 1, 2], np.uint64),
              "t:", "[0, 2]", f"got {2**63 + 5}"),
    _swl_case("a uint8 label 255", ValueError, lambda: np.array([0, 255, 1, 2], np.uint8),
              "t:", "[0, 2]", "got 255"),
    _swl_case("one-hot labels with C+2 columns", ValueError, lambda: np.eye(5)[[0, 1, 2, 0]],
              "t:", "(4, 3)", "got shape (4, 5)"),
    _swl_case("one-hot labels with N-1 rows", ValueError, lambda: np.eye(3)[[0, 1, 2]],
              "t:", "(4, 3)", "got shape (3, 3)"),
    _swl_case("float64 labels (N,)", TypeError, lambda: np.array([0.0, 1.0, 2.0, 0.0]),
              "t:", "integer", "float64"),
    _swl_case("float32 labels (N,)", TypeError, lambda: np.array([0, 1, 2, 0], np.float32),
              "t:", "integer", "float32"),
    _swl_case("float16 labels (N,)", TypeError, lambda: np.array([0, 1, 2, 0], np.float16),
              "t:", "integer", "float16"),
    _swl_case("bool labels (N,)", TypeError, lambda: np.array([True, False, True, False]),
              "t:", "integer", "bool"),
    _swl_case("object labels", TypeError, lambda: np.array([0, 1, 2, 0], dtype=object),
              "t:", "object"),
    _swl_case("str labels", TypeError, lambda: np.array(["0", "1", "2", "0"]),
              "t:", "<U1"),
    _swl_case("complex labels", TypeError, lambda: np.array([0, 1, 2, 0], dtype=complex),
              "t:", "complex128"),
    _swl_case("ragged list labels", TypeError, lambda: [[0], [1, 2], [2], [0]],
              "t:", "list"),
    _swl_case("None labels", TypeError, lambda: None, "t:", "object"),
    _swl_case("float labels of a single sample", TypeError, lambda: np.float64(1.0),
              "t:", "float64", x_shape=(3,)),
    _swl_case("label == C for a single sample", ValueError, lambda: np.int64(3),
              "t:", "[0, 2]", "got 3", x_shape=(3,)),
    _swl_case("N = 0 (labels)", ValueError, lambda: np.zeros(0, np.int64),
              "x:", "empty batch", "(0, 3)", x_shape=(0, 3)),
    _swl_case("N = 0 (one-hot)", ValueError, lambda: np.zeros((0, 3)),
              "x:", "empty batch", "(0, 3)", x_shape=(0, 3)),
    _swl_case("N = 0, float32", ValueError, lambda: np.zeros(0, np.int64),
              "x:", "empty batch", x_shape=(0, 3), x_dtype=np.float32),
    _swl_case("C = 0", ValueError, lambda: np.zeros(4, np.int64),
              "x:", "at least one class", "(4, 0)", x_shape=(4, 0)),
    _swl_case("x 3-D", ValueError, lambda: np.zeros(2, np.int64),
              "x:", "(N, C)", "got shape (2, 3, 2)", x_shape=(2, 3, 2)),
    _swl_case("x complex", TypeError, lambda: np.zeros(4, np.int64),
              "x:", "complex128", x_dtype=np.complex128),
    error_case("SoftmaxWithLoss.backward dout a str", TypeError, ("dout",),
               _softmax_loss_backward_dout_a_str,
               note="BUG: no validation of dout: NumPy/Python's \"unsupported operand type(s) "
                    "for /: 'str' and 'int'\" names no argument (before 493d648 fastbp raised "
                    "ValueError from float('a'))"),
    error_case("SoftmaxWithLoss.backward dout of shape (N+1,)", ValueError, ("dout",),
               _softmax_loss_backward_dout_too_long,
               note="BUG: no validation of dout; NumPy's broadcast error names no argument"),
]


# ---------------------------------------------------------------------------
# Functions
# ---------------------------------------------------------------------------
def _bad_function_input_case(fname, kind, dtype, needle):
    """``functions.<fname>(x)`` with an x of the non-numeric ``dtype``."""
    def call_with_bad_x(m):
        x = np.ones((2, 3), dtype=dtype)
        f = getattr(m.functions, fname)
        return (lambda: f(x)), {"x": x}
    return error_case(f"functions.{fname} x {kind}", TypeError, ("x:", needle), call_with_bad_x)


def _softmax_with_zero_classes(m):
    x = np.zeros((3, 0))
    return (lambda: m.functions.softmax(x)), {"x": x}


def _sce_case(case_id, exc, t_factory, *needles, x_shape=(4, 3), x_dtype=np.float64):
    def build(m):
        x = np.linspace(-1, 1, int(np.prod(x_shape))).reshape(x_shape).astype(x_dtype)
        t = t_factory()
        return (lambda: m.functions.softmax_cross_entropy(x, t)), {"x": x, "t": t}
    return error_case(f"functions.softmax_cross_entropy {case_id}", exc, needles, build)


def _cee_case(case_id, exc, t, *needles, note=""):
    def build(m):
        y = np.full((4, 3), 1 / 3)
        labels = np.array(t)
        return (lambda: m.functions.cross_entropy_error(y, labels)), {"y": y, "t": labels}
    return error_case(f"functions.cross_entropy_error {case_id}", exc, needles, build, note=note)


def _cross_entropy_error_y_object(m):
    y = np.full((4, 3), 1 / 3).astype(object)
    t = np.array([0, 1, 2, 0])
    return (lambda: m.functions.cross_entropy_error(y, t)), {"t": t}


FUNCTION_CASES = [
    *[_bad_function_input_case(fname, *bad)
      for fname in ("sigmoid", "softmax", "relu", "relu_grad", "sigmoid_grad")
      for bad in (("object", object, "object"), ("str", "U2", "<U2"),
                  ("complex", complex, "complex128"))],
    error_case("functions.softmax with zero classes (3, 0)", ValueError, ("x:",),
               _softmax_with_zero_classes,
               note="BUG: NumPy's 'zero-size array to reduction operation maximum' error, "
                    "no argument named (SoftmaxWithLoss says 'x: expected at least one class')"),
    _sce_case("float labels (N, 1)", ValueError,
              lambda: np.array([[0.], [1.], [2.], [0.]]),
              "t:", "got shape (4, 1)"),
    _sce_case("label count != N", ValueError, lambda: np.array([0, 1, 2]),
              "t:", "expected 4 labels", "got 3"),
    _sce_case("label < 0", ValueError, lambda: np.array([0, -1, 2, 0]), "t:", "got -1"),
    _sce_case("label >= C", ValueError, lambda: np.array([0, 7, 2, 0]), "t:", "got 7"),
    _sce_case("float labels", TypeError, lambda: np.array([0.0, 1, 2, 0]), "t:", "float64"),
    _sce_case("float32 x, float labels", TypeError, lambda: np.array([0.0, 1, 2, 0]),
              "t:", "float64", x_dtype=np.float32),
    _sce_case("object x", TypeError, lambda: np.array([0, 1, 2, 0]), "x:", "object",
              x_dtype=object),
    _sce_case("N = 0", ValueError, lambda: np.zeros(0, np.int64), "x:", "empty batch",
              x_shape=(0, 3)),
    _sce_case("C = 0", ValueError, lambda: np.zeros(4, np.int64), "x:", "at least one class",
              x_shape=(4, 0)),
    _cee_case("a label < 0", ValueError, [0, 1, -1, 2], "t:",
              note="BUG: no label check; -1 silently indexes the last class and a loss is "
                   "returned"),
    _cee_case("a label >= C", ValueError, [0, 1, 5, 2], "t:",
              note="BUG: no label check; NumPy IndexError 'index 5 is out of bounds for axis 1'"),
    error_case("functions.cross_entropy_error y object", TypeError, ("y:", "object"),
               _cross_entropy_error_y_object),
]


# ---------------------------------------------------------------------------
# Optimizers: validation before any change
# ---------------------------------------------------------------------------
OPTIMIZER_NAMES = ("SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam")


def _params():
    rng = np.random.default_rng(7)
    return {"W1": rng.standard_normal((3, 4)), "b1": rng.standard_normal(4),
            "W2": rng.standard_normal((4, 2)), "b2": rng.standard_normal(2)}


def _grads(params):
    return {k: np.full_like(v, 0.5) for k, v in params.items()}


def _warm_optimizer(m, name):
    """An optimizer that already made one update, so it has state (v, h, m, iter)."""
    opt = getattr(m.optimizers, name)(lr=0.1)
    params = _params()
    opt.update(params, _grads(params))
    return opt, params


def _optimizer_case(case_id, exc, mutate, *needles, names=OPTIMIZER_NAMES):
    cases = []
    for name in names:
        def build(m, name=name):
            opt, params = _warm_optimizer(m, name)
            grads = _grads(params)
            p, g = mutate(params, grads)
            return (lambda: opt.update(p, g)), {"params": params, "grads": grads,
                                                    "p": p, "g": g, "optimizer": opt}
        cases.append(error_case(f"{name}.update {case_id}", exc, needles, build))
    return cases


def _drop_last(params, grads):
    grads = dict(grads)
    del grads["b2"]
    return params, grads


def _extra_key(params, grads):
    return params, dict(grads, c=np.zeros(1))


def _renamed_key(params, grads):
    grads = dict(grads)
    grads["W3"] = grads.pop("W2")
    return params, grads


def _last_wrong_shape(params, grads):
    return params, dict(grads, b2=np.zeros(3))


def _first_transposed(params, grads):
    return params, dict(grads, W1=np.zeros((4, 3)))


def _last_complex(params, grads):
    return params, dict(grads, b2=np.zeros(2, complex))


def _last_bool(params, grads):
    return params, dict(grads, b2=np.zeros(2, bool))


def _last_none(params, grads):
    return params, dict(grads, b2=None)


def _last_param_int(params, grads):
    return dict(params, b2=np.zeros(2, np.int64)), dict(grads, b2=np.zeros(2, np.int64))


def _last_param_readonly(params, grads):
    ro = params["b2"].copy()
    ro.setflags(write=False)
    return dict(params, b2=ro), grads


def _last_param_list(params, grads):
    return dict(params, b2=[0.0, 0.0]), grads


def _params_not_a_dict(params, grads):
    return list(params.values()), grads


def _grads_not_a_dict(params, grads):
    return params, list(grads.values())


def _state_shape_changed(params, grads):
    # a params dict of another network with the same keys: state doesn't fit
    return dict(params, b2=np.zeros(5)), dict(grads, b2=np.zeros(5))


def _state_dtype_changed(params, grads):
    return (dict(params, b2=params["b2"].astype(np.float32)),
            dict(grads, b2=grads["b2"].astype(np.float32)))


def _ctor_case(case_id, exc, make, *needles):
    """A constructor call ``make(impl)`` that must raise; it has no inputs to watch."""
    def construct(m):
        return (lambda: make(m)), {}
    return error_case(case_id, exc, needles, construct)


OPTIMIZER_CASES = [
    *_optimizer_case("grads missing the last key", ValueError, _drop_last,
                    "grads:", "missing ['b2']", "['W1', 'b1', 'W2', 'b2']"),
    *_optimizer_case("grads with an extra key", ValueError, _extra_key,
                    "grads:", "unexpected ['c']"),
    *_optimizer_case("grads with a renamed key", ValueError, _renamed_key,
                    "grads:", "missing ['W2']", "unexpected ['W3']"),
    *_optimizer_case("last grad of the wrong shape", ValueError, _last_wrong_shape,
                    "grads['b2']:", "expected shape (2,)", "got (3,)"),
    *_optimizer_case("first grad transposed", ValueError, _first_transposed,
                    "grads['W1']:", "expected shape (3, 4)", "got (4, 3)"),
    *_optimizer_case("last grad complex", TypeError, _last_complex, "grads['b2']:", "complex128"),
    *_optimizer_case("last grad bool", TypeError, _last_bool, "grads['b2']:", "bool"),
    *_optimizer_case("last grad None", TypeError, _last_none, "grads['b2']:", "object"),
    *_optimizer_case("last param int64", TypeError, _last_param_int,
                    "params['b2']:", "floating", "int64"),
    *_optimizer_case("last param read-only", ValueError, _last_param_readonly,
                    "params['b2']:", "writeable", "read-only"),
    *_optimizer_case("last param a list", TypeError, _last_param_list,
                    "params['b2']:", "floating numpy array", "list"),
    *_optimizer_case("params a list", TypeError, _params_not_a_dict, "params:", "dict", "list"),
    *_optimizer_case("grads a list", TypeError, _grads_not_a_dict, "grads:", "dict", "list"),
    *_optimizer_case("param shape differs from its state", ValueError, _state_shape_changed,
                    "params['b2']:", "expected shape (2,)", "got shape (5,)",
                    names=OPTIMIZER_NAMES[1:]),
    *_optimizer_case("param dtype differs from its state", ValueError, _state_dtype_changed,
                    "params['b2']:", "dtype float64", "dtype float32",
                    names=OPTIMIZER_NAMES[1:]),
    *[_ctor_case(f"{name}(lr={bad!r})", ValueError,
                 lambda m, n=name, v=bad: getattr(m.optimizers, n)(lr=v),
                 "lr:", "finite non-negative", f"got {bad!r}")
      for name in OPTIMIZER_NAMES
      for bad in (-1, float("nan"), float("inf"), "0.1", True, None)],
    *[_ctor_case(f"{name}(momentum=-0.5)", ValueError,
                 lambda m, n=name: getattr(m.optimizers, n)(momentum=-0.5),
                 "momentum:", "got -0.5")
      for name in ("Momentum", "Nesterov")],
    _ctor_case("Adam(beta1=1.0)", ValueError, lambda m: m.optimizers.Adam(beta1=1.0),
               "beta1:", "[0, 1)", "got 1.0"),
    _ctor_case("Adam(beta2=1.5)", ValueError, lambda m: m.optimizers.Adam(beta2=1.5),
               "beta2:", "[0, 1)", "got 1.5"),
    _ctor_case("RMSprop(decay_rate=1.5)", ValueError,
               lambda m: m.optimizers.RMSprop(decay_rate=1.5), "decay_rate:", "[0, 1]", "got 1.5"),
    _ctor_case("get_optimizer('adamw')", ValueError, lambda m: m.optimizers.get_optimizer("adamw"),
               "optimizer:", "'sgd'", "got 'adamw'"),
    _ctor_case("get_optimizer(instance, lr=...)", ValueError,
               lambda m: m.optimizers.get_optimizer(m.optimizers.SGD(), lr=0.1),
               "optimizer:", "either"),
    _ctor_case("get_optimizer(42)", TypeError, lambda m: m.optimizers.get_optimizer(42),
               "optimizer:", "update(params, grads)", "got int"),
]


# ---------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------
NET_KINDS = ("TwoLayerNet", "MultiLayerNet")


def _net(m, kind):
    if kind == "TwoLayerNet":
        return m.networks.TwoLayerNet(5, 4, 3, seed=0)
    return m.networks.MultiLayerNet(5, [4, 4], 3, activation="sigmoid",
                                        weight_decay_lambda=0.1, seed=0)


def _net_data():
    rng = np.random.default_rng(11)
    return rng.standard_normal((6, 5)), np.array([0, 1, 2, 0, 1, 2])


def _net_case(case_id, exc, make_xt, *needles, methods=("train_step", "loss", "gradient"),
              kinds=NET_KINDS, note=""):
    cases = []
    for kind in kinds:
        for method in methods:
            def build(m, kind=kind, method=method):
                net = _net(m, kind)
                x, t = make_xt(*_net_data())
                watched = {"params": net.params}
                for name, arr in (("x", x), ("t", t)):
                    if isinstance(arr, np.ndarray):
                        watched[name] = arr
                if method == "train_step":
                    opt = m.optimizers.Adam(lr=0.01)
                    net.train_step(*_net_data(), opt)      # the optimizer has state
                    watched["optimizer"] = opt
                    call = lambda: net.train_step(x, t, opt)  # noqa: E731
                else:
                    call = lambda: getattr(net, method)(x, t)  # noqa: E731
                return call, watched
            cases.append(error_case(f"{kind}.{method} {case_id}", exc, needles, build, note))
    return cases


def _train_step_optimizer_none(m):
    net = _net(m, "TwoLayerNet")
    x, t = _net_data()
    return (lambda: net.train_step(x, t, None)), {"params": net.params, "x": x, "t": t}


def _train_step_optimizer_name(m):
    net = _net(m, "MultiLayerNet")
    x, t = _net_data()
    return (lambda: net.train_step(x, t, "sgd")), {"params": net.params, "x": x, "t": t}


NETWORK_CASES = [
    *_net_case("x features != input_size", ValueError, lambda x, t: (x[:, :4], t),
              "x:", "expected 5 features", "got 4"),
    *_net_case("x image features != input_size", ValueError,
              lambda x, t: (np.ones((6, 2, 3)), t), "x:", "expected 5 features", "got 6"),
    *_net_case("x 1-D", ValueError, lambda x, t: (x[0], t[:1]), "x:", "(N, 5)", "got shape (5,)"),
    *_net_case("x None", TypeError, lambda x, t: (None, t), "x:", "object"),
    *_net_case("x complex", TypeError, lambda x, t: (x + 0j, t), "x:", "complex128"),
    *_net_case("fewer labels than samples", ValueError, lambda x, t: (x, t[:5]),
              "t:", "expected 6 labels", "got 5"),
    *_net_case("a label == C", ValueError, lambda x, t: (x, np.where(t == 2, 3, t)),
              "t:", "[0, 2]", "got 3"),
    *_net_case("a label < 0", ValueError, lambda x, t: (x, np.where(t == 2, -1, t)),
              "t:", "[0, 2]", "got -1"),
    *_net_case("float labels", TypeError, lambda x, t: (x, t.astype(float)), "t:", "float64"),
    *_net_case("float labels (N, 1)", ValueError, lambda x, t: (x, t[:, None].astype(float)),
              "t:", "got shape (6, 1)"),
    *_net_case("one-hot labels with C+1 columns", ValueError, lambda x, t: (x, np.eye(4)[t]),
              "t:", "(6, 3)", "got shape (6, 4)"),
    *_net_case("x with N = 0", ValueError, lambda x, t: (x[:0], t[:0]), "x:", "(0, 5)",
              methods=("train_step",), kinds=("TwoLayerNet",),
              note="BUG: the message shows the logits' shape (0, 3), not the caller's x (0, 5)"),
    error_case("TwoLayerNet.train_step optimizer None", TypeError,
               ("optimizer:", "update(params, grads)", "got NoneType"),
               _train_step_optimizer_none),
    error_case("MultiLayerNet.train_step optimizer given by name", TypeError,
               ("optimizer:", "got str"), _train_step_optimizer_name),
    _ctor_case("TwoLayerNet(input_size=0)", ValueError,
               lambda m: m.networks.TwoLayerNet(0, 4, 3),
               "input_size:", "positive integer", "got 0"),
    _ctor_case("TwoLayerNet(hidden_size=2.5)", ValueError,
               lambda m: m.networks.TwoLayerNet(5, 2.5, 3), "hidden_size:", "got 2.5"),
    _ctor_case("TwoLayerNet(output_size=True)", ValueError,
               lambda m: m.networks.TwoLayerNet(5, 4, True), "output_size:", "got True"),
    _ctor_case("TwoLayerNet(weight_init_std=-1)", ValueError,
               lambda m: m.networks.TwoLayerNet(5, 4, 3, -1), "weight_init_std:", "got -1"),
    _ctor_case("TwoLayerNet(dtype=np.int32)", ValueError,
               lambda m: m.networks.TwoLayerNet(5, 4, 3, dtype=np.int32), "dtype:", "got int32"),
    _ctor_case("TwoLayerNet(dtype=np.float16)", ValueError,
               lambda m: m.networks.TwoLayerNet(5, 4, 3, dtype=np.float16),
               "dtype:", "got float16"),
    _ctor_case("TwoLayerNet(dtype='junk')", TypeError,
               lambda m: m.networks.TwoLayerNet(5, 4, 3, dtype="junk"), "dtype:", "'junk'"),
    _ctor_case("MultiLayerNet(activation='tanh')", ValueError,
               lambda m: m.networks.MultiLayerNet(5, [4], 3, activation="tanh"),
               "activation:", "'relu' or 'sigmoid'", "got 'tanh'"),
    _ctor_case("MultiLayerNet(weight_init_std='glorot')", ValueError,
               lambda m: m.networks.MultiLayerNet(5, [4], 3, weight_init_std="glorot"),
               "weight_init_std:", "got 'glorot'"),
    _ctor_case("MultiLayerNet(weight_decay_lambda=-1)", ValueError,
               lambda m: m.networks.MultiLayerNet(5, [4], 3, weight_decay_lambda=-1),
               "weight_decay_lambda:", "got -1"),
    _ctor_case("MultiLayerNet(hidden_size_list=[4, 0])", ValueError,
               lambda m: m.networks.MultiLayerNet(5, [4, 0], 3), "hidden_size_list[1]:", "got 0"),
    _ctor_case("MultiLayerNet(hidden_size_list='44')", ValueError,
               lambda m: m.networks.MultiLayerNet(5, "44", 3), "hidden_size_list:", "got '44'"),
]


# ---------------------------------------------------------------------------
# The tests over CASES
# ---------------------------------------------------------------------------
CASES = LAYER_CASES + SOFTMAX_LOSS_CASES + FUNCTION_CASES + OPTIMIZER_CASES + NETWORK_CASES
CASE_IDS = [param.id for param in CASES]


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("c", CASES)
def test_bad_input_raises_one_clear_error_and_changes_nothing(c, impl):
    exc, watched, before = run_case(c, impl)
    note = f" ({c.note})" if c.note else ""
    assert exc is not None, f"{impl}: {c.id}: no error raised{note}"
    assert type(exc) is c.exc, (f"{impl}: {c.id}: expected {c.exc.__name__}, got "
                                    f"{type(exc).__name__}: {exc}{note}")
    message = str(exc)
    missing = [n for n in c.needles if n not in message]
    assert not missing, f"{impl}: {c.id}: message {message!r} lacks {missing}{note}"
    for name, obj in watched.items():
        assert_unchanged(before[name], obj, name)


@pytest.mark.parametrize("c", CASES)
def test_both_implementations_raise_the_same_exception_type(c):
    fast_exc = run_case(c, "fastbp")[0]
    ref_exc = run_case(c, "reference")[0]
    assert type(fast_exc) is type(ref_exc), (
        f"{c.id}: fastbp raised {type(fast_exc).__name__}: {fast_exc}; "
        f"reference raised {type(ref_exc).__name__}: {ref_exc}")


def test_case_registry_is_large_and_unique():
    assert len(set(CASE_IDS)) == len(CASES)
    assert len(CASES) >= 200
    assert CASE_IDS == [param.values[0].id for param in CASES]
    kinds = {param.values[0].exc for param in CASES}
    assert kinds == {ValueError, TypeError, RuntimeError}


# ---------------------------------------------------------------------------
# Valid edge inputs next to the errors: every integer label dtype, N = 0
# ---------------------------------------------------------------------------
LABEL_DTYPES = [np.int8, np.int16, np.int32, np.int64,
                np.uint8, np.uint16, np.uint32, np.uint64]


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("dtype", LABEL_DTYPES, ids=lambda d: np.dtype(d).name)
def test_every_integer_dtype_is_accepted_as_labels(impl, dtype):
    m = IMPLS[impl]
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 4))
    t64 = np.array([0, 3, 1, 2, 3, 0])
    t = t64.astype(dtype)
    expected = m.layers.SoftmaxWithLoss()
    loss64 = expected.forward(x, t64)
    dx64 = expected.backward()
    layer = m.layers.SoftmaxWithLoss()
    loss = layer.forward(x, t)
    assert loss == loss64
    np.testing.assert_array_equal(layer.backward(), dx64)
    y, per_sample = m.functions.softmax_cross_entropy(x, t)
    y64, per_sample64 = m.functions.softmax_cross_entropy(x, t64)
    np.testing.assert_array_equal(per_sample, per_sample64)
    net = m.networks.TwoLayerNet(4, 5, 4, seed=1)
    assert net.loss(x, t) == net.loss(x, t64)
    assert np.array_equal(t, t64.astype(dtype))          # the labels were not modified


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16, np.int32],
                         ids=lambda d: np.dtype(d).name)
def test_empty_batch_gives_empty_outputs_except_the_loss(impl, dtype):
    m = IMPLS[impl]
    x = np.zeros((0, 7), dtype)
    out_dtype = dtype if np.dtype(dtype).kind == "f" else np.float64
    for name in ("Relu", "Sigmoid"):
        layer = getattr(m.layers, name)()
        out = layer.forward(x)
        assert out.shape == (0, 7)
        assert out.dtype == (dtype if name == "Relu" else out_dtype)
        assert layer.backward(np.zeros((0, 7), dtype)).shape == (0, 7)
    W = np.ones((7, 3), dtype)
    b = np.ones(3, dtype)
    affine = m.layers.Affine(W, b)
    out = affine.forward(x)
    assert out.shape == (0, 3) and out.dtype == dtype
    assert affine.backward(np.zeros((0, 3), dtype)).shape == (0, 7)
    assert affine.dW.shape == (7, 3) and not affine.dW.any()
    assert affine.db.shape == (3,) and not affine.db.any()
    assert m.functions.sigmoid(x).shape == (0, 7)
    assert m.functions.softmax(x).shape == (0, 7)
    with pytest.raises(ValueError, match="empty batch"):
        m.layers.SoftmaxWithLoss().forward(x, np.zeros(0, np.int64))


# ---------------------------------------------------------------------------
# Sizes past BLAS's 32-bit index range (subprocess, address space limited)
# ---------------------------------------------------------------------------
BIG = 2**31

# (case id, implementation, code building `call` with huge zero-stride arrays)
BLAS_CASES = [
    ("Affine N = 2**31", "fastbp",
     "x = np.broadcast_to(np.float64(0), (BIG, 1))\n"
     "call = lambda: L.Affine(np.ones((1, 1)), np.zeros(1)).forward(x)"),
    ("Affine N = 2**31 float32", "fastbp",
     "x = np.broadcast_to(np.float32(0), (BIG, 1))\n"
     "call = lambda: L.Affine(np.ones((1, 1), np.float32), np.zeros(1, np.float32)).forward(x)"),
    ("Affine D = 2**31", "fastbp",
     "W = np.broadcast_to(np.float64(0), (BIG, 1))\n"
     "x = np.broadcast_to(np.float64(0), (1, BIG))\n"
     "call = lambda: L.Affine(W, np.zeros(1)).forward(x)"),
    ("Affine M = 2**31", "fastbp",
     "W = np.broadcast_to(np.float64(0), (1, BIG))\n"
     "b = np.broadcast_to(np.float64(0), (BIG,))\n"
     "call = lambda: L.Affine(W, b).forward(np.zeros((1, 1)))"),
    ("TwoLayerNet.train_step N = 2**31 (one-hot labels)", "fastbp",
     "net = N.TwoLayerNet(1, 2, 2, seed=0)\n"
     "x = np.broadcast_to(np.float64(0), (BIG, 1))\n"
     "t = np.broadcast_to(np.float64(0), (BIG, 2))\n"
     "call = lambda: net.train_step(x, t, O.SGD())"),
    ("Affine N = 2**31", "reference",
     "x = np.broadcast_to(np.float64(0), (BIG, 1))\n"
     "call = lambda: L.Affine(np.ones((1, 1)), np.zeros(1)).forward(x)"),
]


_BLAS_SCRIPT = """
import json, resource, sys
import numpy as np
import fastbp
from fastbp{sub} import layers as L, networks as N, optimizers as O
BIG = 2**31
np.ones((64, 64)) @ np.ones((64, 64))                 # BLAS initialised first
L.Affine(np.ones((2, 2)), np.zeros(2)).forward(np.ones((2, 2)))
with open("/proc/self/status") as f:
    vm = [int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize")][0]
limit = vm + (3 << 30)                               # 3 GiB of headroom, not 16
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
if resource.getrlimit(resource.RLIMIT_AS)[0] != limit:
    # qemu-user takes the call but keeps the limit off its own process: the
    # allocation below would not fail, it would take 16 GiB of real memory
    print(json.dumps({{"unenforced": True}}))
    sys.exit(0)
{code}
try:
    call()
    result = {{"raised": None, "message": ""}}
except Exception as exc:
    result = {{"raised": type(exc).__name__, "message": str(exc)}}
result["compiled"] = fastbp.COMPILED
print(json.dumps(result))
"""


def _run_blas_case(impl, code):
    if not sys.platform.startswith("linux"):
        pytest.skip("needs /proc and RLIMIT_AS (Linux)")
    script = _BLAS_SCRIPT.format(sub="" if impl == "fastbp" else ".reference",
                                     code=textwrap.dedent(code))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(fastbp.__file__)), os.environ.get("PYTHONPATH", "")]),
        OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-W", "ignore::RuntimeWarning", "-c", script],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result.get("unenforced"):
        pytest.skip("RLIMIT_AS is not enforced here (qemu-user emulation)")
    return result


@pytest.mark.parametrize("case_id,impl,code", BLAS_CASES, ids=[f"{c[1]}: {c[0]}" for c in BLAS_CASES])
def test_sizes_past_blas_int_range(case_id, impl, code):
    result = _run_blas_case(impl, code)
    if impl == "fastbp":
        # fastbp's limit, checked before anything is allocated or handed to
        # BLAS, on the compiled path and on the FASTBP_PURE=1 fallback alike
        assert result["raised"] == "ValueError", result
        assert str(BIG) in result["message"] and str(BIG - 1) in result["message"], result
        assert "BLAS" in result["message"], result
    else:
        # The reference has no size check (NumPy copies the zero-stride x into
        # a 16 GiB (float32: 8 GiB) contiguous buffer), so under the 3 GiB
        # headroom it fails with NumPy's MemoryError.
        assert result["raised"] == "MemoryError", result
        assert "Unable to allocate" in result["message"], result
        assert ("8.00 GiB" if "float32" in case_id else "16.0 GiB") in result["message"], result
