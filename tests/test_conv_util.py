"""im2col/col2im and the book's other helpers (``common/util.py``) against the
book's own functions: the same layouts, float64 results bit for bit, and
clear errors for bad arguments."""
import itertools

import numpy as np
import pytest

import fastbp.reference.util as ref_util
import fastbp.util as fast_util
from bookcode import book_modules, requires_book
from conftest import assert_identical, with_layout
from errorcheck import assert_raises_naming

(book_util,) = book_modules("common.util")

UTILS = pytest.mark.parametrize("U", [fast_util, ref_util], ids=["fastbp", "reference"])

# (N, C, H, W): odd, non-square, a single pixel row, one channel and several
SHAPES = [(2, 3, 7, 5), (1, 2, 4, 9), (3, 1, 6, 6), (1, 1, 1, 5)]
GEOMETRIES = [(shape, fh, fw, stride, pad)
              for shape, fh, fw, stride, pad in itertools.product(
                  SHAPES, (1, 2, 3), (1, 3, 4), (1, 2, 3), (0, 1, 2))
              if fh <= shape[2] + 2 * pad and fw <= shape[3] + 2 * pad]


def geometry_id(g):
    shape, fh, fw, stride, pad = g
    return "x".join(map(str, shape)) + f"-f{fh}x{fw}-s{stride}-p{pad}"


def test_public_module_has_the_books_names_and_compiled_im2col():
    assert fast_util.__all__ == ref_util.__all__ == [
        "im2col", "col2im", "conv_output_size", "smooth_curve", "shuffle_dataset"]
    for name in ("conv_output_size", "smooth_curve", "shuffle_dataset"):
        assert getattr(fast_util, name) is getattr(ref_util, name)
    for name in ("im2col", "col2im"):
        assert getattr(fast_util, name) is not getattr(ref_util, name)
        assert getattr(fast_util, name).__doc__ == getattr(ref_util, name).__doc__


@requires_book
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=geometry_id)
@UTILS
def test_im2col_col2im_equal_the_books_exactly(U, geometry, rng):
    shape, fh, fw, stride, pad = geometry
    x = rng.standard_normal(shape)
    col = U.im2col(x, fh, fw, stride, pad)
    assert_identical(col, book_util.im2col(x, fh, fw, stride, pad))
    assert col.flags.c_contiguous
    # random columns: overlapping windows add up in the book's order, bit for bit
    dcol = rng.standard_normal(col.shape)
    dcol.reshape(-1)[::5] = -0.0               # 0 + -0.0 is +0.0, as in the book
    img = U.col2im(dcol, shape, fh, fw, stride, pad)
    assert_identical(img, book_util.col2im(dcol, shape, fh, fw, stride, pad))
    assert img.flags.c_contiguous


@pytest.mark.parametrize("geometry", GEOMETRIES[::3], ids=geometry_id)
def test_compiled_float32_equals_the_reference_exactly(geometry, rng):
    """float32 has no book to compare with: the compiled loops copy (im2col)
    and add in the reference's order (col2im), so the results are its own."""
    shape, fh, fw, stride, pad = geometry
    x = rng.standard_normal(shape).astype(np.float32)
    col = fast_util.im2col(x, fh, fw, stride, pad)
    assert_identical(col, ref_util.im2col(x, fh, fw, stride, pad))
    dcol = rng.standard_normal(col.shape).astype(np.float32)
    assert_identical(fast_util.col2im(dcol, shape, fh, fw, stride, pad),
                     ref_util.col2im(dcol, shape, fh, fw, stride, pad))


def test_im2col_layout_by_definition(rng):
    """col[(n*OH + oy)*OW + ox, (c*FH + ky)*FW + kx] = padded[n, c, oy*s + ky, ox*s + kx]."""
    n, c, h, w, fh, fw, s, p = 2, 3, 5, 6, 2, 3, 2, 1
    x = rng.standard_normal((n, c, h, w))
    padded = np.zeros((n, c, h + 2 * p, w + 2 * p))
    padded[:, :, p:p + h, p:p + w] = x
    oh, ow = (h + 2 * p - fh) // s + 1, (w + 2 * p - fw) // s + 1
    col = ref_util.im2col(x, fh, fw, s, p)
    assert col.shape == (n * oh * ow, c * fh * fw)
    for i, oy, ox, ch, ky, kx in itertools.product(range(n), range(oh), range(ow), range(c),
                                                   range(fh), range(fw)):
        assert col[(i * oh + oy) * ow + ox, (ch * fh + ky) * fw + kx] == \
            padded[i, ch, oy * s + ky, ox * s + kx]


@pytest.mark.parametrize("geometry", GEOMETRIES[::7], ids=geometry_id)
def test_col2im_is_the_adjoint_of_im2col(geometry, rng):
    """<im2col(x), c> = <x, col2im(c)> for every x and c."""
    shape, fh, fw, stride, pad = geometry
    x = rng.standard_normal(shape)
    col = ref_util.im2col(x, fh, fw, stride, pad)
    c = rng.standard_normal(col.shape)
    lhs = np.vdot(col, c)
    rhs = np.vdot(x, ref_util.col2im(c, shape, fh, fw, stride, pad))
    assert lhs == pytest.approx(rhs, rel=1e-12, abs=1e-12)


def test_col2im_counts_window_overlaps():
    """col2im of all ones: each pixel gets the number of windows covering it."""
    shape, fh, fw, stride, pad = (1, 1, 5, 4), 3, 2, 1, 1
    col = np.ones_like(ref_util.im2col(np.zeros(shape), fh, fw, stride, pad))
    counts = ref_util.col2im(col, shape, fh, fw, stride, pad)[0, 0]
    expected = np.zeros((5 + 2 * pad, 4 + 2 * pad))
    for oy in range(5 + 2 * pad - fh + 1):
        for ox in range(4 + 2 * pad - fw + 1):
            expected[oy:oy + fh, ox:ox + fw] += 1
    np.testing.assert_array_equal(counts, expected[pad:-pad, pad:-pad])


@pytest.mark.parametrize("dtype,expected", [
    (np.float32, np.float32), (np.float64, np.float64), (np.float16, np.float16),
    (np.longdouble, np.longdouble), (np.int32, np.float64), (np.uint8, np.float64),
    (bool, np.float64)])
@UTILS
def test_float_dtype_is_kept_integers_give_float64(U, dtype, expected, rng):
    x = (rng.standard_normal((2, 2, 5, 4)) * 3).astype(dtype)
    col = U.im2col(x, 3, 2, 1, 1)
    assert col.dtype == expected
    exact = U.im2col(x.astype(np.float64), 3, 2, 1, 1)
    np.testing.assert_array_equal(col.astype(np.float64), exact)
    img = U.col2im(col, x.shape, 3, 2, 1, 1)
    assert img.dtype == expected
    if expected != np.float16:      # float16 sums round; the rest are exact here
        np.testing.assert_allclose(img.astype(np.float64),
                                   U.col2im(exact, x.shape, 3, 2, 1, 1), rtol=1e-6)


@pytest.mark.parametrize("layout", ["C", "F", "strided", "readonly"])
@UTILS
def test_any_memory_layout_same_result(U, layout, rng):
    x = rng.standard_normal((2, 3, 6, 5))
    col = U.im2col(with_layout(x, layout), 3, 3, 2, 1)
    assert_identical(col, ref_util.im2col(x, 3, 3, 2, 1))
    dcol = rng.standard_normal(col.shape)
    assert_identical(U.col2im(with_layout(dcol, layout), x.shape, 3, 3, 2, 1),
                     ref_util.col2im(dcol, x.shape, 3, 3, 2, 1))


@UTILS
def test_inputs_are_not_changed_and_outputs_are_new(U, rng):
    x = rng.standard_normal((2, 2, 4, 4))
    kept = x.copy()
    col = U.im2col(x, 1, 1)                 # a 1x1 filter: col holds x's values
    col[:] = 7
    assert_identical(x, kept)
    img = U.col2im(col, x.shape, 1, 1)
    assert not np.shares_memory(img, col)
    assert_identical(col, np.full_like(col, 7))


@UTILS
def test_empty_batch(U, rng):
    col = U.im2col(np.zeros((0, 3, 5, 5)), 3, 3)
    assert col.shape == (0, 27)
    assert U.col2im(col, (0, 3, 5, 5), 3, 3).shape == (0, 3, 5, 5)
    assert U.im2col(np.zeros((2, 0, 5, 5), np.float32), 3, 3).shape == (18, 0)


@pytest.mark.parametrize("args,size", [((28, 5), 24), ((28, 5, 1, 0), 24), ((7, 3, 2, 1), 4),
                                        ((6, 3, 2, 0), 2), ((5, 5), 1), ((1, 3, 1, 1), 1)])
@UTILS
def test_conv_output_size_is_the_layers_int(U, args, size):
    got = U.conv_output_size(*args)
    assert type(got) is int and got == size
    shape = (1, 1, args[0], args[0])
    filter_size, stride, pad = (args[1:] + (1, 0))[:3]
    assert U.im2col(np.zeros(shape), filter_size, filter_size, stride, pad).shape[0] == size ** 2


@requires_book
def test_conv_output_size_equals_the_books_when_the_stride_divides():
    for size, f, s, p in itertools.product((5, 8, 28), (1, 3, 5), (1, 2), (0, 1)):
        book = book_util.conv_output_size(size, f, s, p)
        if book == int(book):
            assert ref_util.conv_output_size(size, f, s, p) == book


@requires_book
@pytest.mark.parametrize("n", [11, 12, 40, 1000])
def test_smooth_curve_equals_the_books(n, rng):
    losses = list(2 + rng.standard_normal(n))            # a list, as the book passes it
    smooth = ref_util.smooth_curve(losses)
    assert_identical(smooth, book_util.smooth_curve(losses))
    assert smooth.shape == (n,)
    assert ref_util.smooth_curve(np.float32(losses)).dtype == np.float32


@requires_book
def test_shuffle_dataset_draws_the_books_permutation(rng):
    x = rng.standard_normal((10, 1, 2, 2))
    t = np.arange(10)
    np.random.seed(3)
    ours = ref_util.shuffle_dataset(x, t)
    after_ours = np.random.random()
    np.random.seed(3)
    book = book_util.shuffle_dataset(x, t)
    assert np.random.random() == after_ours           # the global stream consumed alike
    for a, b in zip(ours, book):
        assert_identical(a, b)
    assert_identical(ours[0], x[ours[1]])                # samples and labels stay paired
    assert sorted(ours[1]) == list(t)


def test_shuffle_dataset_any_rank_and_refuses_mismatch(rng):
    x = rng.standard_normal((6, 3, 2))                 # 3-D: the book's indexing fails
    xs, ts = ref_util.shuffle_dataset(x, np.arange(6))
    assert_identical(xs, x[ts])
    with pytest.raises(ValueError, match="t: expected 6 labels"):
        ref_util.shuffle_dataset(x, np.arange(5))


# ---------------------------------------------------------------------------
# Bad arguments: one clear error, nothing computed
# ---------------------------------------------------------------------------
X = np.zeros((2, 3, 5, 4))


@pytest.mark.parametrize("call,exc,needles", [
    (lambda U: U.im2col(np.zeros((3, 5, 4)), 2, 2), ValueError,
     ("input_data:", "4-D", "got shape (3, 5, 4)", "reshape(1, C, H, W)")),
    (lambda U: U.im2col(np.zeros((1, 1, 2, 3, 4)), 2, 2), ValueError, ("input_data:", "4-D")),
    (lambda U: U.im2col(X.astype(complex), 2, 2), TypeError, ("input_data:", "complex")),
    (lambda U: U.im2col(X, 6, 2), ValueError,
     ("input_data:", "6 x 2", "padding by 0", "got shape (2, 3, 5, 4)")),
    (lambda U: U.im2col(X, 2, 7, 1, 1), ValueError, ("input_data:", "2 x 7", "(padded 7 x 6)")),
    (lambda U: U.im2col(X, 0, 2), ValueError, ("filter_h:", "positive integer", "got 0")),
    (lambda U: U.im2col(X, 2, 2.0), ValueError, ("filter_w:", "got 2.0")),
    (lambda U: U.im2col(X, 2, 2, 0), ValueError, ("stride:", "positive integer", "got 0")),
    (lambda U: U.im2col(X, 2, 2, 1.5), ValueError, ("stride:", "got 1.5")),
    (lambda U: U.im2col(X, 2, 2, True), ValueError, ("stride:", "got True")),
    (lambda U: U.im2col(X, 2, 2, 1, -1), ValueError, ("pad:", "non-negative", "got -1")),
    (lambda U: U.col2im(np.zeros((24, 11)), X.shape, 2, 2), ValueError,
     ("col:", "expected shape (24, 12)", "got (24, 11)")),
    (lambda U: U.col2im(np.zeros(24 * 12), X.shape, 2, 2), ValueError,
     ("col:", "expected shape (24, 12)", "got (288,)")),
    (lambda U: U.col2im(np.zeros((24, 12)), (2, 3, 5), 2, 2), ValueError,
     ("input_shape:", "(N, C, H, W)", "(2, 3, 5)")),
    (lambda U: U.col2im(np.zeros((24, 12)), (2, 3, 5, 4.0), 2, 2), ValueError,
     ("input_shape:",)),
    (lambda U: U.col2im(np.zeros((24, 12)), X.shape, 2, 9), ValueError,
     ("input_shape:", "2 x 9")),
    (lambda U: U.col2im(np.zeros((24, 12)), X.shape, 2, 2, -2), ValueError, ("stride:",)),
    (lambda U: U.conv_output_size(4, 7), ValueError,
     ("filter_size:", "input_size + 2*pad = 4", "got 7")),
    (lambda U: U.conv_output_size(28, 5, 0), ValueError, ("stride:", "got 0")),
    (lambda U: U.conv_output_size(28.0, 5), ValueError, ("input_size:", "got 28.0")),
    (lambda U: U.smooth_curve([1.0] * 10), ValueError, ("x:", "at least 11", "(10,)")),
    (lambda U: U.smooth_curve(np.ones((12, 2))), ValueError, ("x:", "1-D")),
    (lambda U: U.shuffle_dataset(np.float64(1), np.arange(1)), ValueError, ("x, t:",)),
])
@UTILS
def test_bad_arguments_raise_one_clear_error(U, call, exc, needles):
    assert_raises_naming(exc, needles, call, U)
