"""Convolution and Pooling (chapter 7) against the book's layers, by
definition, and by numerical gradients; bad input raises one clear error and
changes nothing."""
import copy
import itertools
import pickle
import weakref

import numpy as np
import pytest

import fastbp
import fastbp.layers as fast_layers
import fastbp.reference.layers as ref_layers
from bookcode import book_modules, requires_book
from conftest import amax, assert_close, assert_identical, rel_error, run_isolated, with_layout
from errorcheck import assert_raises_naming
from fastbp._outputs import aligned_empty
from fastbp.reference.gradient import numerical_gradient

(book_layers,) = book_modules("common.layers")

LAYERS = pytest.mark.parametrize("L", [fast_layers, ref_layers], ids=["fastbp", "reference"])

CONV_CASES = [  # (x shape, W shape, stride, pad)
    ((2, 3, 7, 5), (4, 3, 3, 3), 1, 0),
    ((2, 3, 7, 5), (4, 3, 3, 2), 2, 1),
    ((1, 2, 6, 9), (3, 2, 5, 5), 3, 2),
    ((3, 1, 28, 28), (30, 1, 5, 5), 1, 0),       # SimpleConvNet's first layer
    ((2, 16, 14, 14), (32, 16, 3, 3), 1, 2),     # DeepConvNet's pad-2 layer
    ((1, 1, 4, 4), (2, 1, 4, 4), 1, 0),          # one output position
    ((2, 2, 5, 5), (3, 2, 1, 1), 2, 1),
]
POOL_CASES = [  # (x shape, pool_h, pool_w, stride)
    ((2, 3, 24, 24), 2, 2, 2), ((2, 3, 7, 5), 2, 2, 2), ((2, 3, 7, 5), 3, 2, 1),
    ((1, 2, 9, 6), 3, 3, 2), ((1, 1, 5, 5), 5, 5, 1), ((2, 2, 6, 7), 2, 3, 3),
]


def case_id(case):
    return "-".join("x".join(map(str, v)) if isinstance(v, tuple) else str(v) for v in case)


def conv_pair(L, rng, x_shape, w_shape, stride, pad, dtype=np.float64):
    W = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    x = rng.standard_normal(x_shape).astype(dtype)
    return L.Convolution(W, b, stride, pad), x


# ---------------------------------------------------------------------------
# The book's numbers
# ---------------------------------------------------------------------------
def assert_conv_equal(L, ours, theirs, inner, dtype=np.float64):
    """The reference layer equals the book bit for bit; the compiled one
    (other GEMM blocks, direct loops) within 1e-12 relative in float64 and
    1e-5 in float32, of a sum of ``inner`` products."""
    if L is ref_layers or not fastbp.COMPILED:
        assert_identical(ours, theirs)
    else:
        assert_close(ours, np.asarray(theirs, dtype=dtype), dtype,
                     scale=inner * amax(theirs) / max(1, ours.size) ** 0.5)


@requires_book
@pytest.mark.parametrize("case", CONV_CASES, ids=case_id)
@LAYERS
def test_convolution_equals_the_books(L, case, rng):
    x_shape, w_shape, stride, pad = case
    layer, x = conv_pair(L, rng, *case)
    book = book_layers.Convolution(layer.W, layer.b, stride, pad)
    out = layer.forward(x)
    taps = int(np.prod(w_shape[1:]))
    assert_conv_equal(L, out, book.forward(x), taps)
    assert out.shape == (x_shape[0], w_shape[0]) + out.shape[2:] and out.flags.c_contiguous
    assert_identical(layer.col, book.col)
    assert_identical(layer.col_W, book.col_W)
    dout = rng.standard_normal(out.shape)
    assert_conv_equal(L, layer.backward(dout), book.backward(dout), w_shape[0] * taps)
    assert_conv_equal(L, layer.dW, book.dW, out.size // w_shape[0])
    assert_conv_equal(L, layer.db, book.db, out.size // w_shape[0])


@requires_book
def test_reference_convolution_is_the_books_on_openblas_own_kernels():
    """One image (the book's col is then a Fortran-ordered view, not a copy),
    with the kernels OpenBLAS picks for the CPU rather than those a machine's
    OPENBLAS_CORETYPE may pin: BLAS kernels may round a product by its
    operands' memory layout (OpenBLAS's SkylakeX ones do)."""
    code = """
        import numpy as np
        from bookcode import book_modules
        from fastbp.reference import layers as ref_layers
        (book_layers,) = book_modules("common.layers")
        same = []
        for seed in range(20):
            rng = np.random.default_rng(seed)
            W, b = rng.standard_normal((3, 2, 5, 5)), rng.standard_normal(3)
            x = rng.standard_normal((1, 2, 6, 9))
            ours = ref_layers.Convolution(W, b, 3, 2)
            theirs = book_layers.Convolution(W, b, 3, 2)
            out = ours.forward(x)
            same.append(np.array_equal(out, theirs.forward(x)))
            dout = rng.standard_normal(out.shape)
            same.append(np.array_equal(ours.backward(dout), theirs.backward(dout)))
            same += [np.array_equal(ours.dW, theirs.dW), np.array_equal(ours.db, theirs.db)]
        print(all(same), same.count(False))
    """
    returncode, out, err = run_isolated(code, unset=("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"))
    assert returncode == 0, err
    assert out.split() == ["True", "0"]


@pytest.mark.parametrize("case", CONV_CASES, ids=case_id)
def test_compiled_convolution_float32_within_1e5_of_the_reference(case, rng):
    x_shape, w_shape, stride, pad = case
    fast, x = conv_pair(fast_layers, rng, *case, dtype=np.float32)
    ref = ref_layers.Convolution(fast.W, fast.b, stride, pad)
    taps = int(np.prod(w_shape[1:]))
    out = fast.forward(x)
    assert_conv_equal(fast_layers, out, ref.forward(x), taps, np.float32)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    assert_conv_equal(fast_layers, fast.backward(dout), ref.backward(dout), w_shape[0] * taps,
                      np.float32)
    assert_conv_equal(fast_layers, fast.dW, ref.dW, out.size // w_shape[0], np.float32)
    assert_conv_equal(fast_layers, fast.db, ref.db, out.size // w_shape[0], np.float32)
    assert_identical(fast.col, ref.col)


# one input channel (the direct loops where the CPU has AVX-512): filters of
# 1 to 5 filters (register blocks of 4 and 2 and their remainders), 1 to 25
# taps, rows of 1 to 4 vectors and masked tails, padding
ONE_CHANNEL = [((2, 1, 9, w), (f, 1, fh, fw), 1, pad)
               for w, f, fh, fw, pad in ((5, 1, 2, 2, 0), (12, 3, 3, 3, 1), (28, 16, 3, 3, 1),
                                         (28, 30, 5, 5, 0), (37, 5, 5, 5, 2), (40, 2, 1, 3, 0),
                                         (19, 7, 4, 2, 1))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", ONE_CHANNEL, ids=case_id)
def test_one_channel_convolution_against_the_reference(case, dtype, rng):
    compiled_convolution_matches_the_reference(case, dtype, rng)


def compiled_convolution_matches_the_reference(case, dtype, rng):
    """forward, backward, dW and db of the compiled Convolution against the
    reference's, within assert_conv_equal's tolerance for its sums."""
    x_shape, w_shape, stride, pad = case
    fast, x = conv_pair(fast_layers, rng, *case, dtype=dtype)
    ref = ref_layers.Convolution(fast.W, fast.b, stride, pad)
    taps = int(np.prod(w_shape[1:]))
    out = fast.forward(x)
    assert_conv_equal(fast_layers, out, ref.forward(x), taps, dtype)
    dout = rng.standard_normal(out.shape).astype(dtype)
    assert_conv_equal(fast_layers, fast.backward(dout), ref.backward(dout), w_shape[0] * taps,
                      dtype)
    assert_conv_equal(fast_layers, fast.dW, ref.dW, out.size // w_shape[0], dtype)
    assert_conv_equal(fast_layers, fast.db, ref.db, out.size // w_shape[0], dtype)


# stride-1 convolutions, whose unfolding copies runs of input rows at once
# when the output is as wide as the input ("same": pad (f - 1) / 2), else a
# row at a time (pad (f + 1) / 2: wider, as the book's DeepConvNet's fourth
# layer; pad 0: narrower): images of 1 to 7 columns (1: every shifted tap of
# a same 3x3 falls on the padding), and GEMM blocks of 1 or 3 output rows
# (starting mid-image, or spanning images) or the default
UNIT_STRIDE = [((3, 2, h, w), (2, 2, f, f), 1, pad)
               for (h, w), f in itertools.product(((1, 1), (2, 3), (5, 4), (7, 7)), (1, 3, 5))
               for pad in sorted({(f - 1) // 2, (f + 1) // 2, 0})
               if f <= h + 2 * pad and f <= w + 2 * pad]


@pytest.mark.parametrize("block_rows", [1, 3, None], ids=["1-row", "3-row", "default"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", UNIT_STRIDE, ids=case_id)
def test_unit_stride_convolution_in_blocks_against_the_reference(case, dtype, block_rows, rng,
                                                          monkeypatch):
    x_shape, w_shape = case[:2]
    if block_rows is not None:     # a block of unfolded input holds block_rows output rows
        taps = int(np.prod(w_shape[1:]))
        monkeypatch.setattr(fastbp._conv_layers, "BLOCK_BYTES",
                            block_rows * taps * x_shape[3] * np.dtype(dtype).itemsize)
        monkeypatch.setattr(fastbp._conv_layers, "BLOCK_POSITIONS", 0)
    compiled_convolution_matches_the_reference(case, dtype, rng)


# float32 forward GEMMs take one of two orientations by the filter count
# (col @ W.T up to 32 filters, W @ colT above): both, with 3 x 3 taps (copied
# four at a time) and 2 x 3 (one at a time), blocks of one row, of rows
# starting mid-image and of several images
@pytest.mark.parametrize("filters", [1, 32, 33])
@pytest.mark.parametrize("block_rows", [1, 5, 14], ids=["1-row", "5-row", "2-image"])
@pytest.mark.parametrize("case", [((3, 4, 7, 6), (3, 3), 1, 1), ((2, 3, 9, 8), (2, 3), 2, 0)],
                         ids=case_id)
def test_float32_forward_in_both_gemm_orientations_against_the_reference(case, block_rows,
                                                                         filters, rng,
                                                                         monkeypatch):
    x_shape, (fh, fw), stride, pad = case
    out_w = (x_shape[3] + 2 * pad - fw) // stride + 1
    taps = x_shape[1] * fh * fw
    monkeypatch.setattr(fastbp._conv_layers, "BLOCK_BYTES", block_rows * taps * out_w * 4)
    monkeypatch.setattr(fastbp._conv_layers, "BLOCK_POSITIONS", 0)
    compiled_convolution_matches_the_reference(
        (x_shape, (filters, x_shape[1], fh, fw), stride, pad), np.float32, rng)


@requires_book
@pytest.mark.parametrize("case", POOL_CASES, ids=case_id)
@LAYERS
def test_pooling_equals_the_books_exactly(L, case, rng):
    x_shape, ph, pw, stride = case
    x = rng.standard_normal(x_shape)
    x[0, 0, :2, :2] = 0.5                        # a tie in the first window
    layer, book = L.Pooling(ph, pw, stride), book_layers.Pooling(ph, pw, stride)
    out = layer.forward(x)
    np.testing.assert_array_equal(out, book.forward(x))
    assert out.flags.c_contiguous and out.dtype == np.float64
    assert_identical(layer.arg_max, book.arg_max)
    dout = rng.standard_normal(out.shape)
    assert_identical(layer.backward(dout), book.backward(dout))


@requires_book
@LAYERS
def test_pooling_ties_all_equal_windows_and_nan_as_the_book(L, rng):
    x = rng.integers(0, 3, (2, 3, 8, 6)).astype(np.float64)    # many ties
    x[0, 0] = 1.0                                                # all-equal windows
    x[0, 1, 0, 1] = np.nan                                       # NaN wins its window
    x[1, 2, 3, 3] = np.nan
    x[1, 2, 2, 2] = np.nan                                       # two NaNs: the first one
    x[1, 0, :2, :2] = [[-0.0, 0.0], [0.0, -0.0]]                 # signed zeros tie
    for ph, pw, stride in ((2, 2, 2), (3, 2, 1), (2, 3, 2)):
        layer, book = L.Pooling(ph, pw, stride), book_layers.Pooling(ph, pw, stride)
        out = layer.forward(x)
        np.testing.assert_array_equal(out, book.forward(x))      # NaN where the book has NaN
        assert_identical(layer.arg_max, book.arg_max)
        dout = rng.standard_normal(out.shape)
        assert_identical(layer.backward(dout), book.backward(dout))
    layer = L.Pooling(2, 2, 2)
    out = layer.forward(x)
    assert np.isnan(out[0, 1, 0, 0]) and np.isnan(out[1, 2, 1, 1])
    assert (layer.arg_max.reshape(2, 4, 3, 3)[0, 0, :, 0] == 0).all()   # ties: first
    assert layer.arg_max.reshape(2, 4, 3, 3)[1, 1, 1, 2] == 0          # x[1,2,2,2]


def test_pooling_by_definition_with_padding(rng):
    """Every window's output is the first maximal input element it covers
    (padding never wins, not even over -inf); arg_max is its position in the
    padded window, rows in (n, oy, ox, c) order."""
    x = rng.standard_normal((2, 3, 7, 6))
    x[0, 0, :3, :3] = -np.inf                  # a corner window of -inf and padding
    x[1, 1, 4, 2] = np.nan
    for ph, pw, stride, pad in ((2, 2, 2, 1), (3, 3, 2, 1), (3, 2, 1, 1), (3, 3, 3, 2)):
        layer = ref_layers.Pooling(ph, pw, stride, pad)
        out = layer.forward(x)
        oh, ow = (7 + 2 * pad - ph) // stride + 1, (6 + 2 * pad - pw) // stride + 1
        assert out.shape == (2, 3, oh, ow)
        arg_max = layer.arg_max.reshape(2, oh, ow, 3)
        for n, c, oy, ox in itertools.product(range(2), range(3), range(oh), range(ow)):
            best, best_pos = None, None
            for ky, kx in itertools.product(range(ph), range(pw)):
                y, xx = oy * stride + ky - pad, ox * stride + kx - pad
                if not (0 <= y < 7 and 0 <= xx < 6):
                    continue
                v = x[n, c, y, xx]
                if best is None or (not np.isnan(best) and (v > best or np.isnan(v))):
                    best, best_pos = v, ky * pw + kx
            np.testing.assert_array_equal(out[n, c, oy, ox], best)
            assert arg_max[n, oy, ox, c] == best_pos, (n, c, oy, ox)
        # backward: each dout to its chosen element, overlaps add up
        dout = rng.standard_normal(out.shape)
        expected = np.zeros((2, 3, 7 + 2 * pad, 6 + 2 * pad))
        for n, c, oy, ox in itertools.product(range(2), range(3), range(oh), range(ow)):
            ky, kx = divmod(arg_max[n, oy, ox, c], pw)
            expected[n, c, oy * stride + ky, ox * stride + kx] += dout[n, c, oy, ox]
        np.testing.assert_allclose(layer.backward(dout),
                                   expected[:, :, pad:pad + 7, pad:pad + 6], rtol=1e-15)


@LAYERS
def test_pooling_padding_never_wins_over_negative_values(L):
    """Negative maxima stay negative with padding (the book's zero padding clips them to 0)."""
    x = -np.arange(1.0, 17.0).reshape(1, 1, 4, 4)
    layer = L.Pooling(2, 2, 2, pad=1)
    out = layer.forward(x)
    np.testing.assert_array_equal(out[0, 0], [[-1, -2, -4], [-5, -6, -8], [-13, -14, -16]])
    # positions in the padded 2x2 windows: the corner windows' only input is at 3, 2, 1, 0
    assert layer.arg_max[[0, 2, 6, 8]].tolist() == [3, 2, 1, 0]


# ---------------------------------------------------------------------------
# Semantics the book's code relies on
# ---------------------------------------------------------------------------
@LAYERS
def test_convolution_reads_W_and_b_at_every_call(L, rng):
    layer, x = conv_pair(L, rng, (2, 1, 6, 6), (3, 1, 3, 3), 1, 0)
    first = layer.forward(x)
    b0 = layer.b.copy()[:, None, None]
    layer.W *= 2                           # the book's in-place update: params['W1'] -= ...
    layer.b += 1
    second = layer.forward(x)
    np.testing.assert_allclose(second, 2 * (first - b0) + b0 + 1, rtol=1e-12)


@LAYERS
def test_convolution_with_scalar_bias_zero(L, rng):
    """``ch07/apply_filter.py``: Convolution(w, 0) on an image of shape (1, 1, H, W)."""
    W = rng.standard_normal((1, 1, 5, 5))
    img = rng.random((1, 1, 12, 10))
    layer = L.Convolution(W, 0)
    out = layer.forward(img)
    assert out.shape == (1, 1, 8, 6)
    expected = np.array([[np.sum(img[0, 0, i:i + 5, j:j + 5] * W[0, 0]) for j in range(6)]
                         for i in range(8)])
    np.testing.assert_allclose(out[0, 0], expected, rtol=1e-12)
    layer.backward(np.ones_like(out))
    assert layer.db.shape == (1,) and layer.db[0] == 48.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@LAYERS
def test_dtypes_follow_the_inputs(L, dtype, rng):
    layer, x = conv_pair(L, rng, (2, 2, 6, 5), (3, 2, 3, 3), 1, 1, dtype=dtype)
    out = layer.forward(x)
    assert out.dtype == dtype and layer.col.dtype == dtype
    dx = layer.backward(np.ones_like(out))
    assert dx.dtype == layer.dW.dtype == layer.db.dtype == dtype
    pool = L.Pooling(2, 2)
    out = pool.forward(x)
    assert out.dtype == dtype and pool.backward(np.ones_like(out)).dtype == dtype
    # uint8 images: float64 as in the book; float32 images into float64 filters: float64
    images = rng.integers(0, 255, (2, 2, 6, 5)).astype(np.uint8)
    assert L.Pooling(2, 2).forward(images).dtype == np.float64
    conv = L.Convolution(layer.W.astype(np.float64), layer.b.astype(np.float64))
    assert conv.forward(x.astype(np.float32)).dtype == np.float64


@pytest.mark.parametrize("layout", ["C", "F", "strided", "readonly"])
@LAYERS
def test_any_memory_layout_same_result(L, layout, rng):
    layer, x = conv_pair(L, rng, (2, 3, 7, 6), (4, 3, 3, 3), 2, 1)
    reference = layer.forward(x)
    dout = rng.standard_normal(reference.shape)
    dx = layer.backward(dout)
    dW = layer.dW
    other = L.Convolution(with_layout(layer.W, layout), with_layout(layer.b, layout), 2, 1)
    assert_identical(other.forward(with_layout(x, layout)), reference)
    assert_identical(other.backward(with_layout(dout, layout)), dx)
    np.testing.assert_allclose(other.dW, dW, rtol=1e-13)
    pool = L.Pooling(3, 2, 1)
    out = pool.forward(x)
    d = rng.standard_normal(out.shape)
    dx = pool.backward(d)
    assert_identical(pool.forward(with_layout(x, layout)), out)
    assert_identical(pool.backward(with_layout(d, layout)), dx)


@LAYERS
def test_forward_and_backward_leave_inputs_alone(L, rng):
    layer, x = conv_pair(L, rng, (2, 2, 5, 5), (2, 2, 3, 3), 1, 1)
    kept = {"x": x.copy(), "W": layer.W.copy(), "b": layer.b.copy()}
    out = layer.forward(x)
    dout = rng.standard_normal(out.shape)
    dout_kept = dout.copy()
    layer.backward(dout)
    pool = L.Pooling(2, 2, 1)
    pool.backward(np.ones_like(pool.forward(x)))
    kept["dout"] = dout_kept
    for name, value in (("x", x), ("W", layer.W), ("b", layer.b), ("dout", dout)):
        assert_identical(value, kept[name])


def test_backward_uses_the_geometry_of_the_last_forward(rng):
    layer, x = conv_pair(ref_layers, rng, (2, 2, 6, 6), (3, 2, 3, 3), 1, 0)
    out = layer.forward(x)
    dout = rng.standard_normal(out.shape)
    dx = layer.backward(dout)
    layer.stride, layer.pad = 2, 1            # changed after forward: used by the next one
    assert_identical(layer.backward(dout), dx)
    assert layer.forward(x).shape == (2, 3, 3, 3)


# ---------------------------------------------------------------------------
# Gradients: backward against central differences, float64
# ---------------------------------------------------------------------------
def check_gradients(layer, x, params, rng):
    """backward's dx (and dW, db) against the numerical gradient of sum(G * forward(x))."""
    G = rng.standard_normal(layer.forward(x).shape)
    loss = lambda _: float(np.sum(G * layer.forward(x)))  # noqa: E731
    numeric = {"x": numerical_gradient(loss, x)}
    for name in params:
        numeric[name] = numerical_gradient(loss, getattr(layer, name))
    layer.forward(x)
    analytic = {"x": layer.backward(G)}
    for name in params:
        analytic[name] = getattr(layer, "d" + name)
    for name in numeric:
        assert rel_error(analytic[name], numeric[name]) <= 1e-7, name


@pytest.mark.parametrize("case", CONV_CASES[:3] + CONV_CASES[5:], ids=case_id)
@LAYERS
def test_convolution_gradient_check(L, case, rng):
    layer, x = conv_pair(L, rng, *case)
    check_gradients(layer, x, ("W", "b"), rng)


@pytest.mark.parametrize("ph,pw,stride,pad", [(2, 2, 2, 0), (3, 2, 1, 0), (3, 3, 2, 1),
                                              (2, 3, 1, 1)])
@LAYERS
def test_pooling_gradient_check(L, ph, pw, stride, pad, rng):
    """Distinct values at least 1e-2 apart: no window's maximum changes within h."""
    x = rng.permutation(np.arange(2 * 3 * 7 * 6)).reshape(2, 3, 7, 6) * 1e-2 - 1.0
    check_gradients(L.Pooling(ph, pw, stride, pad), x, (), rng)


# ---------------------------------------------------------------------------
# Bad input: ValueError/TypeError naming argument, expected, got; nothing changed
# ---------------------------------------------------------------------------
def state(layer):
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in vars(layer).items()}


def assert_same_state(layer, before):
    after = state(layer)
    assert after.keys() == before.keys()
    for key in before:
        if isinstance(before[key], np.ndarray):
            assert_identical(after[key], before[key])
        else:
            assert after[key] == before[key] or after[key] is before[key], key


W4 = np.ones((4, 3, 3, 3))


@pytest.mark.parametrize("make,exc,needles", [
    (lambda L: L.Convolution(np.ones((4, 3, 3)), np.zeros(4)), ValueError,
     ("W:", "(FN, C, FH, FW)", "got shape (4, 3, 3)")),
    (lambda L: L.Convolution(W4, np.zeros(3)), ValueError,
     ("b:", "scalar or shape (4,)", "got shape (3,)")),
    (lambda L: L.Convolution(W4, np.zeros((4, 1))), ValueError, ("b:", "got shape (4, 1)")),
    (lambda L: L.Convolution(W4.astype(object), 0), TypeError, ("W:", "object")),
    (lambda L: L.Convolution(W4, 0, stride=0), ValueError, ("stride:", "positive", "got 0")),
    (lambda L: L.Convolution(W4, 0, stride=1.5), ValueError, ("stride:", "got 1.5")),
    (lambda L: L.Convolution(W4, 0, pad=-1), ValueError, ("pad:", "non-negative", "got -1")),
    (lambda L: L.Pooling(0, 2), ValueError, ("pool_h:", "positive", "got 0")),
    (lambda L: L.Pooling(2, 2.5), ValueError, ("pool_w:", "got 2.5")),
    (lambda L: L.Pooling(2, 2, stride=None), ValueError, ("stride:", "got None")),
    (lambda L: L.Pooling(2, 2, pad=2), ValueError,
     ("pad:", "less than the pooling window 2 x 2", "got 2")),
    (lambda L: L.Pooling(3, 2, pad=-1), ValueError, ("pad:", "got -1")),
])
@LAYERS
def test_bad_construction(L, make, exc, needles):
    assert_raises_naming(exc, needles, make, L)


@pytest.mark.parametrize("bad,exc,needles", [
    (lambda x: x[0], ValueError, ("x:", "4-D batch", "got shape (3, 7, 6)",
                                  "reshape(1, C, H, W)")),
    (lambda x: x.reshape(2, 3, 42), ValueError, ("x:", "4-D", "got shape (2, 3, 42)")),
    (lambda x: x[:, :2], ValueError, ("x:", "expected 3 channels", "(4, 3, 3, 3)", "got 2")),
    (lambda x: x[:, :, :1, :1], ValueError, ("x:", "at least 3 x 3", "padding by 0",
                                             "(padded 1 x 1)")),
    (lambda x: x.astype(complex), TypeError, ("x:", "complex")),
    (lambda x: None, TypeError, ("x:",)),
])
@LAYERS
def test_convolution_bad_x_changes_nothing(L, bad, exc, needles, rng):
    layer, x = conv_pair(L, rng, (2, 3, 7, 6), (4, 3, 3, 3), 1, 0)
    layer.backward(rng.standard_normal(layer.forward(x).shape))
    before = state(layer)
    assert_raises_naming(exc, needles, layer.forward, bad(x))
    assert_same_state(layer, before)


@pytest.mark.parametrize("bad,exc,needles", [
    (lambda x: x[0], ValueError, ("x:", "4-D batch")),
    (lambda x: x[:, :, :1], ValueError, ("x:", "at least 2 x 2", "(padded 1 x 6)")),
    (lambda x: x.astype(complex), TypeError, ("x:", "complex")),
])
@LAYERS
def test_pooling_bad_x_changes_nothing(L, bad, exc, needles, rng):
    layer = L.Pooling(2, 2)
    x = rng.standard_normal((2, 3, 7, 6))
    layer.backward(np.ones_like(layer.forward(x)))
    before = state(layer)
    assert_raises_naming(exc, needles, layer.forward, bad(x))
    assert_same_state(layer, before)


@pytest.mark.parametrize("attribute,value,needle", [
    ("stride", 0, "stride:"), ("stride", 2.0, "stride:"), ("pad", -1, "pad:"),
    ("W", np.ones((4, 2, 3, 3)), "x: expected 2 channels"), ("b", np.zeros(5), "b:"),
])
@LAYERS
def test_convolution_attributes_are_checked_at_forward(L, attribute, value, needle, rng):
    layer, x = conv_pair(L, rng, (2, 3, 7, 6), (4, 3, 3, 3), 1, 0)
    setattr(layer, attribute, value)
    with pytest.raises(ValueError, match=needle):
        layer.forward(x)
    assert layer.x is None and layer.col is None


@pytest.mark.parametrize("attribute,value,needle", [
    ("stride", 0, "stride:"), ("pool_h", 2.0, "pool_h:"), ("pad", 2, "pad:")])
@LAYERS
def test_pooling_attributes_are_checked_at_forward(L, attribute, value, needle, rng):
    layer = L.Pooling(2, 2)
    setattr(layer, attribute, value)
    with pytest.raises(ValueError, match=needle):
        layer.forward(rng.standard_normal((1, 1, 4, 4)))
    assert layer.x is None and layer.arg_max is None


@LAYERS
def test_bad_dout_changes_nothing(L, rng):
    layer, x = conv_pair(L, rng, (2, 3, 7, 6), (4, 3, 3, 3), 1, 0)
    pool = L.Pooling(2, 2)
    for lay in (layer, pool):
        out = lay.forward(x)
        lay.backward(np.ones_like(out))
        before = state(lay)
        for dout, exc, needle in ((np.ones(out.shape[:3]), ValueError, f"got {out.shape[:3]}"),
                                  (np.ones(out.shape[:3] + (out.shape[3] + 1,)), ValueError,
                                   f"expected shape {out.shape}"),
                                  (np.ones(out.shape, complex), TypeError, "complex")):
            with pytest.raises(exc, match="dout:") as info:
                lay.backward(dout)
            assert needle in str(info.value)
            assert_same_state(lay, before)


@LAYERS
def test_backward_before_forward(L):
    for layer in (L.Convolution(W4, 0), L.Pooling(2, 2)):
        with pytest.raises(RuntimeError, match="backward called before forward"):
            layer.backward(np.ones((1, 4, 1, 1)))


def test_pooling_writes_again_only_a_dx_the_caller_let_go(rng):
    # Pooling.backward's dx (as large as x) is written again on the next call
    # when the caller has dropped it (no fresh pages to fault in); a dx the
    # caller keeps, or keeps a view of (a view of its byte buffer, for NumPy),
    # is never touched again.
    pool = fast_layers.Pooling(2, 2, 2)
    x = rng.standard_normal((2, 3, 6, 6))
    dout = rng.standard_normal(pool.forward(x).shape)
    first = weakref.ref(pool.backward(dout))       # the caller drops it at once
    if fastbp.COMPILED:                            # (the reference path allocates anew)
        assert pool.backward(dout) is first() is pool._dx_buffer    # the same array again
        # on a cache line's boundary (the kernel's streaming stores need it)
        assert pool._dx_buffer.ctypes.data % 64 == 0
    kept = pool.backward(dout)
    kept_values = kept.copy()
    view = pool.backward(dout)[1:]                                   # a view keeps it too
    view_values = view.copy()
    pool.forward(-x)
    other = pool.backward(2 * dout)
    assert other is not kept and not np.shares_memory(other, kept)
    assert not np.shares_memory(other, view)
    assert_identical(kept, kept_values)
    assert_identical(view, view_values)
    ref = ref_layers.Pooling(2, 2, 2)
    ref.forward(-x)
    assert_identical(other, ref.backward(2 * dout))
    assert pickle.loads(pickle.dumps(pool))._dx_buffer is None       # not carried by copies
    assert copy.deepcopy(pool)._dx_buffer is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
@pytest.mark.parametrize("shape", [(0,), (1,), (3, 5), (2, 3, 7, 9), (100, 30, 24, 24)],
                         ids=str)
def test_aligned_empty_starts_on_a_cache_line_and_owns_its_buffer(shape, dtype):
    a = aligned_empty(shape, dtype)
    assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous
    assert a.flags.writeable and (a.ctypes.data % 64 == 0 or a.size == 0)
    assert a.base.base is None and a.base.nbytes >= a.nbytes
    start, buffer_start = a.ctypes.data, a.base.ctypes.data
    assert buffer_start <= start and start + a.nbytes <= buffer_start + a.base.nbytes
    a[...] = 7
    assert (a == 7).all()
