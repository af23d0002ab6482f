"""fastbp.functions (compiled) against fastbp.reference.functions (NumPy)."""
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

import fastbp.functions as fast_functions
import fastbp.reference.functions as ref_functions
from conftest import (FLOAT_DTYPES, HYPOTHESIS, LAYOUTS, assert_close, assert_identical,
                      float_arrays, random_array, rtol_for, small_shapes, with_layout,
                      with_special_zeros)

SHAPES = [(1,), (7,), (257,), (1, 1), (1, 257), (3, 7), (33, 3), (257, 1), (2, 3, 5)]
SOFTMAX_SHAPES = [(1,), (3,), (257,), (1, 1), (1, 257), (3, 7), (7, 3), (33, 33), (257, 2)]
XENT_SHAPES = [(1, 1), (1, 257), (3, 7), (7, 3), (33, 33), (257, 2)]


def dtype_id(dtype):
    return np.dtype(dtype).name


def both(name, *args):
    return (getattr(fast_functions, name)(*args), getattr(ref_functions, name)(*args))


def one_hot(labels, n_classes, dtype=np.float64):
    t = np.zeros((labels.size, n_classes), dtype=dtype)
    t[np.arange(labels.size), labels] = 1
    return t


def test_shared_functions_are_the_reference_ones():
    """The functions without a kernel are the reference functions themselves."""
    for name in ("relu", "cross_entropy_error", "labels_to_indices"):
        assert getattr(fast_functions, name) is getattr(ref_functions, name), name
    for name in ("sigmoid", "sigmoid_grad", "relu_grad", "softmax", "softmax_cross_entropy"):
        assert getattr(fast_functions, name) is not getattr(ref_functions, name), name
        assert getattr(fast_functions, name).__doc__ == getattr(ref_functions, name).__doc__


# ---------------------------------------------------------------------------
# sigmoid
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_sigmoid_matches_reference(dtype, shape, layout, rng):
    x = random_array(rng, shape, dtype, scale=10.0)
    fast, ref = both("sigmoid", with_layout(x, layout))
    assert_close(fast, ref, dtype)
    assert ((fast >= 0) & (fast <= 1)).all()


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@HYPOTHESIS
@given(data=st.data())
def test_sigmoid_hypothesis(dtype, data):
    x = data.draw(float_arrays(dtype, small_shapes(), -1e4, 1e4))
    fast, ref = both("sigmoid", x)
    assert_close(fast, ref, dtype)


def test_sigmoid_large_array_uses_threads_and_matches(rng):
    x = random_array(rng, (331, 401), scale=20.0)        # above the parallel threshold
    for layout in ("C", "F"):
        fast, ref = both("sigmoid", with_layout(x, layout))
        assert_close(fast, ref, np.float64)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_sigmoid_special_values(dtype):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e30, -1e30, 88.0, -88.0, -104.0],
                 dtype=dtype)
    fast, ref = both("sigmoid", x)
    assert_close(fast, ref, dtype)
    assert np.isnan(fast[0])
    np.testing.assert_array_equal(fast[1:7], [1, 0, 0.5, 0.5, 1, 0])


@pytest.mark.parametrize("value", [3, -2.5, np.float32(1.5), [0.0, 1.0], True])
def test_sigmoid_of_scalars_and_lists(value):
    fast, ref = both("sigmoid", value)
    assert type(fast) is type(ref)
    assert_close(fast, ref, ref.dtype)


@pytest.mark.parametrize("int_dtype", [np.int64, np.uint8, np.bool_])
def test_sigmoid_of_integers_is_float64(int_dtype):
    x = np.array([[0, 1], [1, 0]], dtype=int_dtype)
    fast, ref = both("sigmoid", x)
    assert fast.dtype == np.float64
    assert_close(fast, ref, np.float64)


# ---------------------------------------------------------------------------
# relu / relu_grad / sigmoid_grad
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_relu_and_grads_match_reference(dtype, layout, rng):
    x = with_layout(with_special_zeros(rng, random_array(rng, (7, 33), dtype)), layout)
    fast, ref = both("relu", x)
    assert_identical(fast, ref)
    np.testing.assert_array_equal(fast, np.where(x > 0, x, 0))
    fast, ref = both("relu_grad", x)
    assert_identical(fast, ref)
    np.testing.assert_array_equal(fast, (x > 0).astype(dtype))
    fast, ref = both("sigmoid_grad", x)
    assert_close(fast, ref, dtype)
    s = ref_functions.sigmoid(x)
    assert_close(fast, (1 - s) * s, dtype)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_relu_grad_and_sigmoid_grad_match_reference(dtype, shape, layout, rng):
    x = with_layout(with_special_zeros(rng, random_array(rng, shape, dtype, scale=10.0)), layout)
    before = x.copy()
    fast, ref = both("relu_grad", x)
    assert_identical(fast, ref)
    fast, ref = both("sigmoid_grad", x)
    assert_close(fast, ref, dtype)
    assert ((fast >= 0) & (fast <= 0.25)).all()
    np.testing.assert_array_equal(x, before)              # the input is left alone


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_relu_grad_and_sigmoid_grad_special_values(dtype):
    tiny = np.finfo(dtype).smallest_subnormal
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, tiny, -tiny, 1e30, -1e30, 88.0, -88.0,
                  -104.0, 2.0], dtype=dtype)
    fast, ref = both("relu_grad", x)
    assert_identical(fast, ref)
    np.testing.assert_array_equal(fast, [0, 1, 0, 0, 0, 1, 0, 1, 0, 1, 0, 0, 1])
    fast, ref = both("sigmoid_grad", x)
    assert_close(fast, ref, dtype)
    assert np.isnan(fast[0]) and not np.isnan(fast[1:]).any()
    np.testing.assert_array_equal(fast[1:5], [0, 0, 0.25, 0.25])   # the ends and the peak
    assert fast[-1] == pytest.approx(np.exp(-2.0) / (1 + np.exp(-2.0)) ** 2,
                                     rel=rtol_for(dtype))


@pytest.mark.parametrize("name", ["relu_grad", "sigmoid_grad"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@HYPOTHESIS
@given(data=st.data())
def test_relu_grad_and_sigmoid_grad_hypothesis(name, dtype, data):
    x = data.draw(float_arrays(dtype, small_shapes(min_side=0), -1e3, 1e3))
    fast, ref = both(name, x)
    assert_close(fast, ref, dtype)


def test_relu_grad_and_sigmoid_grad_large_arrays_use_threads_and_match(rng):
    x = random_array(rng, (331, 401), scale=20.0)        # above the parallel threshold
    for layout in ("C", "F"):
        fast, ref = both("relu_grad", with_layout(x, layout))
        assert_identical(fast, ref)
        fast, ref = both("sigmoid_grad", with_layout(x, layout))
        assert_close(fast, ref, np.float64)


@pytest.mark.parametrize("name", ["relu_grad", "sigmoid_grad"])
@pytest.mark.parametrize("value", [3, -2.5, np.float32(1.5), np.float64(0.0), True,
                                   np.array(-1.0, np.float32)], ids=repr)
def test_relu_grad_and_sigmoid_grad_of_scalars(name, value):
    """0-d input: a NumPy scalar out, as from the reference."""
    fast, ref = both(name, value)
    assert type(fast) is type(ref) and isinstance(fast, np.generic)
    assert_identical(fast, ref)


@pytest.mark.parametrize("name", ["relu_grad", "sigmoid_grad"])
@pytest.mark.parametrize("value", [[0.0, 1.0], [[-1.5, 2.0]], np.zeros((2, 0, 3), np.float32),
                                   np.zeros(0)], ids=repr)
def test_relu_grad_and_sigmoid_grad_of_lists_and_empty_arrays(name, value):
    fast, ref = both(name, value)
    assert type(fast) is type(ref) is np.ndarray
    assert_close(fast, ref, ref.dtype)


@pytest.mark.parametrize("int_dtype", [np.int64, np.uint8, np.bool_])
def test_relu_grad_and_sigmoid_grad_of_integers_are_float64(int_dtype):
    x = np.array([[0, 1], [1, 0]], dtype=int_dtype)
    for name in ("relu_grad", "sigmoid_grad"):
        fast, ref = both(name, x)
        assert fast.dtype == np.float64
        assert_close(fast, ref, np.float64)


# ---------------------------------------------------------------------------
# softmax
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SOFTMAX_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_softmax_matches_reference(dtype, shape, layout, rng):
    x = random_array(rng, shape, dtype, scale=10.0)
    fast, ref = both("softmax", with_layout(x, layout))
    assert_close(fast, ref, dtype)
    np.testing.assert_allclose(fast.sum(axis=-1), 1, rtol=1e-5)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@HYPOTHESIS
@given(data=st.data())
def test_softmax_hypothesis(dtype, data):
    shape = data.draw(small_shapes(min_dims=1, max_dims=2, min_side=1))
    x = data.draw(float_arrays(dtype, shape, -1e4, 1e4))
    fast, ref = both("softmax", x)
    assert_close(fast, ref, dtype)


@pytest.mark.parametrize("shape", [(0, 4), (2, 3, 4), (0,)], ids=str)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_softmax_shapes_without_kernel_match_reference(dtype, shape, rng):
    x = random_array(rng, shape, dtype)
    if x.size == 0 and x.ndim == 1:
        with pytest.raises(ValueError):
            fast_functions.softmax(x)
        with pytest.raises(ValueError):
            ref_functions.softmax(x)
        return
    fast, ref = both("softmax", x)
    assert fast.shape == shape
    assert_close(fast, ref, dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_softmax_is_shift_invariant_without_overflow(dtype):
    x = np.array([[0, 1, 2, 3], [10000, 10001, 10002, 10003], [-1e4, -1e4 + 1, -1e4 + 2,
                                                                -1e4 + 3]], dtype=dtype)
    fast, ref = both("softmax", x)
    assert_close(fast, ref, dtype)
    assert_close(fast[1], fast[0], dtype)
    assert_close(fast[2], fast[0], dtype)


@pytest.mark.parametrize("int_dtype", [np.int64, np.uint8])
def test_softmax_of_integers_is_float64(int_dtype):
    x = np.array([[0, 1, 2], [3, 3, 3]], dtype=int_dtype)
    fast, ref = both("softmax", x)
    assert fast.dtype == np.float64
    assert_close(fast, ref, np.float64)


# ---------------------------------------------------------------------------
# softmax_cross_entropy and cross_entropy_error
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["labels", "one-hot"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("nc", XENT_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_softmax_cross_entropy_matches_reference(dtype, nc, layout, kind, rng):
    n, c = nc
    x = random_array(rng, (n, c), dtype, scale=5.0)
    labels = rng.integers(0, c, size=n)
    t = labels if kind == "labels" else one_hot(labels, c, dtype)
    (y, loss), (ref_y, ref_loss) = both("softmax_cross_entropy", with_layout(x, layout),
                                        with_layout(t, layout))
    assert_close(y, ref_y, dtype)
    assert_close(loss, ref_loss, dtype, scale=max(1.0, float(np.abs(ref_loss).max())))
    # the loss is -log of the target's probability
    np.testing.assert_allclose(loss, -np.log(ref_y[np.arange(n), labels]), rtol=1e-4, atol=1e-5)


def test_softmax_cross_entropy_non_contiguous_int64_labels(rng):
    """Labels that are a strided or reversed view of an int64 array."""
    x = rng.standard_normal((4, 3))
    all_labels = np.array([0, 1, 2, 0, 1, 2, 0, 1], dtype=np.int64)
    for t in (all_labels[::2], all_labels[3:7][::-1]):
        (y, loss), (ref_y, ref_loss) = both("softmax_cross_entropy", x, t)
        assert_close(y, ref_y, np.float64)
        assert_close(loss, ref_loss, np.float64)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@HYPOTHESIS
@given(data=st.data())
def test_softmax_cross_entropy_hypothesis(dtype, data):
    n = data.draw(st.integers(1, 9))
    c = data.draw(st.integers(1, 9))
    x = data.draw(float_arrays(dtype, (n, c), -1e3, 1e3))
    labels = np.array(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    t = labels if data.draw(st.booleans()) else one_hot(labels, c, dtype)
    (y, loss), (ref_y, ref_loss) = both("softmax_cross_entropy", x, t)
    assert_close(y, ref_y, dtype)
    assert_close(loss, ref_loss, dtype, scale=max(1.0, float(np.abs(ref_loss).max())))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_softmax_cross_entropy_minus_inf_logit_off_target(dtype):
    x = np.array([[-np.inf, 0.0, 1.0], [2.0, -np.inf, 0.0]], dtype=dtype)
    labels = np.array([1, 0])
    for t in (labels, one_hot(labels, 3, dtype)):
        (y, loss), (ref_y, ref_loss) = both("softmax_cross_entropy", x, t)
        assert_close(y, ref_y, dtype)
        assert_close(loss, ref_loss, dtype)
        assert np.isfinite(loss).all()
        assert y[0, 0] == 0 and y[1, 1] == 0


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kind", ["labels", "one-hot"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_cross_entropy_error_matches_reference_and_the_book(dtype, kind, layout, rng):
    x = random_array(rng, (7, 5), dtype, scale=3.0)
    labels = rng.integers(0, 5, size=7)
    t = labels if kind == "labels" else one_hot(labels, 5)
    y = with_layout(fast_functions.softmax(x), layout)
    fast, ref = both("cross_entropy_error", y, with_layout(t, layout))
    expected = -np.sum(np.log(y[np.arange(7), labels] + 1e-7)) / 7
    assert fast == pytest.approx(ref, rel=1e-12)
    assert fast == pytest.approx(expected, rel=1e-5)


def test_cross_entropy_error_single_sample():
    y = np.array([0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0])
    t = np.array([0, 0, 1, 0, 0, 0, 0, 0, 0, 0])
    for module in (fast_functions, ref_functions):
        assert module.cross_entropy_error(y, t) == pytest.approx(0.510825457099338)   # book 4.2
        assert module.cross_entropy_error(y, 2) == pytest.approx(0.510825457099338)


# ---------------------------------------------------------------------------
# dtypes the kernels don't cover, and dtypes nobody accepts
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float16, np.longdouble], ids=dtype_id)
def test_uncovered_dtypes_give_the_reference_result(dtype, rng):
    x = random_array(rng, (4, 6), dtype, scale=3.0)
    for name in ("sigmoid", "softmax", "relu", "relu_grad", "sigmoid_grad"):
        fast, ref = both(name, x)
        assert fast.dtype == dtype
        assert_identical(fast, ref)
    for t in (np.array([0, 5, 2, 1]), np.eye(6, dtype=dtype)[[0, 5, 2, 1]]):
        (y, loss), (ref_y, ref_loss) = both("softmax_cross_entropy", x, t)
        assert y.dtype == loss.dtype == dtype
        assert_identical(y, ref_y)
        assert_identical(loss, ref_loss)


BAD_VALUES = {
    "object": np.array([[1.0, -2.0, 3.0]], dtype=object),
    "str": np.array([["a", "b", "c"]]),
    "complex": np.array([[1 + 1j, 2.0, -3.0]]),
}
FUNCTION_CALLS = {
    "sigmoid": lambda m, bad: m.sigmoid(bad),
    "relu": lambda m, bad: m.relu(bad),
    "relu_grad": lambda m, bad: m.relu_grad(bad),
    "sigmoid_grad": lambda m, bad: m.sigmoid_grad(bad),
    "softmax": lambda m, bad: m.softmax(bad),
    "softmax_cross_entropy": lambda m, bad: m.softmax_cross_entropy(bad, np.array([0])),
    "cross_entropy_error": lambda m, bad: m.cross_entropy_error(bad, np.array([0])),
}


@pytest.mark.parametrize("kind", sorted(BAD_VALUES))
@pytest.mark.parametrize("function", sorted(FUNCTION_CALLS))
@pytest.mark.parametrize("module", [fast_functions, ref_functions],
                         ids=["compiled", "reference"])
def test_non_real_dtypes_raise_type_error_naming_the_dtype(module, function, kind):
    bad = BAD_VALUES[kind]
    with pytest.raises(TypeError) as info:
        FUNCTION_CALLS[function](module, bad)
    assert str(bad.dtype) in str(info.value)


NON_FINITE_ROWS = {
    "+inf logit": [np.inf, 0.0, 1.0],
    "all -inf": [-np.inf, -np.inf, -np.inf],
    "NaN logit": [0.0, np.nan, 1.0],
}


@pytest.mark.parametrize("row", sorted(NON_FINITE_ROWS))
@pytest.mark.parametrize("module", [fast_functions, ref_functions],
                         ids=["compiled", "reference"])
def test_non_finite_logit_rows_stay_in_their_row_without_warnings(module, row):
    """A row with +inf / all -inf / NaN logits has no finite softmax; it must
    not warn (fastbp promises no RuntimeWarning), must not spill into the
    other rows, and both implementations must give the same result."""
    x = np.array([NON_FINITE_ROWS[row], [1.0, 2.0, 3.0]])
    y = module.softmax(x)                 # pytest turns any RuntimeWarning into an error
    probs, loss = module.softmax_cross_entropy(x, np.array([1, 2]))
    e = np.exp([1.0, 2.0, 3.0])
    np.testing.assert_allclose(y[1], e / e.sum(), rtol=1e-12)
    np.testing.assert_allclose(probs[1], e / e.sum(), rtol=1e-12)
    assert loss[1] == pytest.approx(-np.log(e[2] / e.sum()), rel=1e-12)
    other = fast_functions if module is ref_functions else ref_functions
    with warnings.catch_warnings():       # this test is about `module`'s warnings only
        warnings.simplefilter("ignore")
        other_y = other.softmax(x)
        other_loss = other.softmax_cross_entropy(x, np.array([1, 2]))[1]
    # same NaN rows, finite rows within rounding (the kernel multiplies by 1/sum)
    np.testing.assert_allclose(y, other_y, rtol=1e-15, atol=0)
    np.testing.assert_allclose(loss, other_loss, rtol=1e-15, atol=0)


class KernelCalled(Exception):
    pass


class PoisonedKernels:
    def __getattr__(self, name):
        def kernel(*args, **kwargs):
            raise KernelCalled(name)
        return kernel


@pytest.mark.parametrize("dtype", [np.float16, np.longdouble, np.float32, np.float64],
                         ids=dtype_id)
def test_kernel_path_only_for_float32_and_float64(dtype, monkeypatch, rng):
    import fastbp._backend as backend
    monkeypatch.setattr(backend, "KERNELS", {np.dtype(dtype): PoisonedKernels()
                                             for dtype in (np.float32, np.float64)})
    x = random_array(rng, (3, 4), dtype)
    calls = [lambda: fast_functions.sigmoid(x), lambda: fast_functions.softmax(x),
             lambda: fast_functions.softmax_cross_entropy(x, np.array([0, 1, 3])),
             lambda: fast_functions.relu_grad(x), lambda: fast_functions.sigmoid_grad(x)]
    for call in calls:
        if backend.COMPILED and dtype in (np.float32, np.float64):
            with pytest.raises(KernelCalled):
                call()
        else:
            call()                       # the reference: no kernel touched


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_non_native_byte_order_gives_the_reference_values(dtype, rng):
    """'>f8' on a little-endian machine: converted before any kernel reads it
    (results in either byte order: the reference may keep the input's)."""
    def native(a):
        return a.astype(a.dtype.newbyteorder("="))

    x = random_array(rng, (5, 4), dtype, scale=3.0)
    labels = np.array([0, 3, 2, 1, 3])
    swapped_x = x.astype(x.dtype.newbyteorder())
    assert swapped_x.dtype != x.dtype
    assert_close(native(fast_functions.sigmoid(swapped_x)), ref_functions.sigmoid(x), dtype)
    assert_close(native(fast_functions.softmax(swapped_x)), ref_functions.softmax(x), dtype)
    for t in (labels, one_hot(labels, 4, dtype)):
        swapped_t = t.astype(t.dtype.newbyteorder())
        y, loss = fast_functions.softmax_cross_entropy(swapped_x, swapped_t)
        ref_y, ref_loss = ref_functions.softmax_cross_entropy(x, t)
        assert_close(native(y), ref_y, dtype)
        assert_close(native(loss), ref_loss, dtype)
