"""The rest of the book's ``common/functions.py``: identity_function,
step_function, sum_squared_error (mean_squared_error, the chapter-4 name)
and softmax_loss, in fastbp.functions and fastbp.reference.functions."""
import numpy as np
import pytest

import fastbp.functions as fast_functions
import fastbp.reference.functions as ref_functions
from bookcode import load_book_module, requires_book
from conftest import FLOAT_DTYPES, LAYOUTS, assert_identical, with_layout

MODULES = pytest.mark.parametrize("F", [fast_functions, ref_functions],
                                  ids=["fastbp", "reference"])
DTYPES = pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)


@pytest.fixture(scope="module")
def book():
    return load_book_module("common/functions.py", "book_common_functions")


@MODULES
def test_identity_function_returns_its_argument(F):
    for x in (np.arange(3.0), 2.5, [1, 2]):
        assert F.identity_function(x) is x


@requires_book
@pytest.mark.parametrize("layout", LAYOUTS)
@DTYPES
@MODULES
def test_step_function_is_the_books(F, dtype, layout, book, rng):
    x = rng.standard_normal((5, 7)).astype(dtype)
    x[0, :3] = [0.0, -0.0, np.nan]
    out = F.step_function(with_layout(x, layout))
    assert_identical(out, book.step_function(x))
    assert out.dtype == np.dtype(int)
    assert out[0, :3].tolist() == [0, 0, 0]


@MODULES
def test_step_function_of_scalars_and_lists(F):
    assert F.step_function(0.5) == 1 and F.step_function(-0.5) == 0
    assert F.step_function([-1.0, 0.0, 2.0]).tolist() == [0, 0, 1]


@requires_book
@pytest.mark.parametrize("layout", LAYOUTS)
@DTYPES
@MODULES
def test_sum_squared_error_is_the_books(F, dtype, layout, book, rng):
    y = rng.random((4, 10)).astype(dtype)
    t = np.eye(10, dtype=dtype)[[2, 0, 9, 2]]
    got = F.sum_squared_error(with_layout(y, layout), with_layout(t, layout))
    want = book.sum_squared_error(y, t)
    assert type(got) is np.dtype(dtype).type       # float32 stays float32 (the book's
    # too on NumPy 2; NumPy 1's value-based casting makes the book's float64)
    assert got == pytest.approx(want, rel=1e-6 if dtype == np.float32 else 1e-15)
    assert F.mean_squared_error is F.sum_squared_error           # the chapter-4 name


@MODULES
def test_sum_squared_error_chapter_4_example(F):
    # the book's chapter-4 example: "2" is correct; y puts 0.6 on it
    t = [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    y = [0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0]
    assert F.mean_squared_error(np.array(y), np.array(t)) == pytest.approx(0.0975)
    y = [0.1, 0.05, 0.1, 0.0, 0.05, 0.1, 0.0, 0.6, 0.0, 0.0]
    assert F.sum_squared_error(y, t) == pytest.approx(0.5975)


@MODULES
def test_sum_squared_error_shapes_must_match(F):
    with pytest.raises(ValueError, match=r"t: expected targets of y's shape \(2, 3\).*got "
                                         r"shape \(2,\)"):
        F.sum_squared_error(np.ones((2, 3)), np.array([0, 1]))
    with pytest.raises(TypeError, match="y: expected a real numeric"):
        F.sum_squared_error(np.array(["a"]), np.array([1.0]))


@requires_book
@pytest.mark.parametrize("one_hot", [False, True], ids=["labels", "one-hot"])
@DTYPES
@MODULES
def test_softmax_loss_is_the_books_without_its_epsilon(F, dtype, one_hot, book, rng):
    x = (3 * rng.standard_normal((8, 5))).astype(dtype)
    labels = rng.integers(0, 5, size=8)
    t = np.eye(5)[labels] if one_hot else labels
    got = F.softmax_loss(x, t)
    assert type(got) is float
    x64 = x.astype(np.float64)
    log_p = x64 - x64.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    exact = -log_p[np.arange(8), labels].mean()
    assert got == pytest.approx(exact, rel=1e-6 if dtype == np.float32 else 1e-14)
    # the book adds 1e-7 to each probability: -log(p + 1e-7) ~ -log(p) - 1e-7 / p
    book_loss = float(book.softmax_loss(x64, t))
    p = np.exp(log_p[np.arange(8), labels])
    assert book_loss == pytest.approx(exact - np.mean(np.log1p(1e-7 / p)), rel=1e-12)


@MODULES
def test_softmax_loss_single_sample_and_confident_logits(F):
    assert F.softmax_loss(np.array([0.0, 0.0]), 1) == pytest.approx(np.log(2))
    # the book's log(y + 1e-7) caps this loss at 16.1; the exact loss is 1000
    assert F.softmax_loss(np.array([[1000.0, 0.0]]), np.array([1])) == pytest.approx(1000)


@MODULES
def test_softmax_loss_bad_labels(F):
    with pytest.raises(ValueError, match=r"t: expected labels in \[0, 2\]"):
        F.softmax_loss(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="t: expected 2 labels"):
        F.softmax_loss(np.zeros((2, 3)), np.array([0, 1, 2]))
