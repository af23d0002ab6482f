"""What only the compiled Convolution and Pooling have: their own loops
(every width of the vectorised 2 x 2 pooling, windows the generic loop
takes), the book's attributes computed when read, state forward keeps for
backward, attributes replaced between the two, and kernels that check what
they are handed.  (test_conv_layers.py holds what both implementations
share, against the book.)"""
import itertools

import numpy as np
import pytest

import fastbp._backend as backend
import fastbp.layers as fast_layers
import fastbp.reference.layers as ref_layers
from conftest import PURE, amax, assert_close, assert_identical

pytestmark = pytest.mark.skipif(PURE, reason="FASTBP_PURE=1: the layers are the reference")

DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64])


def tie_rich(rng, shape, dtype):
    """Small integers (many ties, all-equal windows), a few NaN and -0.0."""
    x = rng.integers(-2, 3, shape).astype(dtype)
    flat = x.reshape(-1)
    flat[rng.integers(0, flat.size, max(1, flat.size // 50))] = np.nan
    flat[rng.integers(0, flat.size, max(1, flat.size // 20))] = -0.0
    return x


# ---------------------------------------------------------------------------
# Pooling: the compiled loops equal the reference bit for bit
# ---------------------------------------------------------------------------
@DTYPES
@pytest.mark.parametrize("width", [2, 3, 5, 16, 17, 31, 32, 33, 34, 47])
def test_two_by_two_pooling_every_row_width(width, dtype, rng):
    """The vectorised 2 x 2 loop takes 8 (float64) or 16 (float32) windows a
    vector and masks the rest of a row; odd sizes leave a row and a column
    that no window covers."""
    x = tie_rich(rng, (2, 3, 7, width), dtype)
    fast, ref = fast_layers.Pooling(2, 2), ref_layers.Pooling(2, 2)
    out = fast.forward(x)
    assert_identical(out, ref.forward(x))
    assert_identical(fast.arg_max, ref.arg_max)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dout.reshape(-1)[::3] = -0.0                 # the reference adds them onto +0
    assert_identical(fast.backward(dout), ref.backward(dout))


@DTYPES
@pytest.mark.parametrize("shape", [(16, 30, 48, 48), (42, 102, 14, 19)], ids=str)
def test_two_by_two_pooling_past_the_caches(shape, dtype, rng):
    """A dx of 8 MiB or more goes out in streaming stores (AVX-512) when its
    rows start on cache lines (48 x 48 planes, the layer's dx aligned), in
    plain stores otherwise (19 wide)."""
    factor = 2 if dtype == np.float32 else 1         # dx >= 8 MiB in either dtype
    x = tie_rich(rng, (shape[0] * factor,) + shape[1:], dtype)
    fast, ref = fast_layers.Pooling(2, 2), ref_layers.Pooling(2, 2)
    out = fast.forward(x)
    assert_identical(out, ref.forward(x))
    assert_identical(fast.arg_max, ref.arg_max)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dx = fast.backward(dout)
    assert dx.nbytes >= 8 << 20
    assert_identical(dx, ref.backward(dout))


@DTYPES
@pytest.mark.parametrize("pool,stride,pad", [((3, 3), 2, 1), ((2, 3), 1, 0), ((3, 2), 3, 1),
                                             ((1, 1), 1, 0), ((4, 4), 4, 0), ((16, 16), 1, 7)])
def test_other_windows_overlapping_or_padded(pool, stride, pad, dtype, rng):
    x = tie_rich(rng, (2, 2, 17, 19), dtype)
    fast = fast_layers.Pooling(*pool, stride=stride, pad=pad)
    ref = ref_layers.Pooling(*pool, stride=stride, pad=pad)
    out = fast.forward(x)
    assert_identical(out, ref.forward(x))
    assert_identical(fast.arg_max, ref.arg_max)
    dout = rng.standard_normal(out.shape).astype(dtype)
    assert_identical(fast.backward(dout), ref.backward(dout))     # overlaps in the book's order


def test_windows_over_256_elements_run_the_reference(rng):
    x = rng.standard_normal((1, 2, 17, 17))
    fast, ref = fast_layers.Pooling(17, 16, stride=1), ref_layers.Pooling(17, 16, stride=1)
    assert_identical(fast.forward(x), ref.forward(x))
    assert fast._positions is None
    assert_identical(fast.backward(np.ones((1, 2, 1, 2))), ref.backward(np.ones((1, 2, 1, 2))))


# ---------------------------------------------------------------------------
# The book's attributes, computed when read
# ---------------------------------------------------------------------------
def test_col_is_im2col_of_x_computed_when_read_and_read_only(rng):
    x = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
    W = rng.standard_normal((4, 3, 3, 3))            # float64: the layer computes in float64
    layer = fast_layers.Convolution(W, np.zeros(4), stride=2, pad=1)
    layer.forward(x)
    assert layer._col is None                        # nothing built until read
    col = layer.col
    assert col.dtype == np.float32                   # x's dtype, as the reference's col
    assert_identical(col, ref_im2col(x, 3, 3, 2, 1))
    assert layer.col is col and not col.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        col[0, 0] = 1.0
    assert layer.col_W.base is W or np.shares_memory(layer.col_W, W)


def ref_im2col(x, fh, fw, stride, pad):
    from fastbp.reference.util import im2col
    return im2col(x, fh, fw, stride, pad)


def test_arg_max_is_the_books_layout_computed_when_read_and_read_only(rng):
    x = rng.standard_normal((3, 4, 6, 8))
    layer = fast_layers.Pooling(2, 2)
    layer.forward(x)
    assert layer._arg_max is None
    arg_max = layer.arg_max
    assert arg_max.dtype == np.intp and arg_max.shape == (3 * 3 * 4 * 4,)
    ref = ref_layers.Pooling(2, 2)
    ref.forward(x)
    assert_identical(arg_max, ref.arg_max)
    assert layer.arg_max is arg_max and not arg_max.flags.writeable


# ---------------------------------------------------------------------------
# What backward reads: owned by the layer, or the caller's replacement used
# as the reference uses it
# ---------------------------------------------------------------------------
def conv_layers(rng, dtype=np.float64):
    W = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    return fast_layers.Convolution(W, b, 1, 1), ref_layers.Convolution(W, b, 1, 1)


def test_x_changed_in_place_after_forward_does_not_reach_backward(rng):
    fast, ref = conv_layers(rng)
    x = rng.standard_normal((2, 3, 5, 5))
    fast.forward(x)
    ref.forward(x)
    x[...] = 7.0                                     # the reference's col is a copy: no effect
    dout = rng.standard_normal((2, 4, 5, 5))
    assert_close(fast.backward(dout), ref.backward(dout), np.float64, scale=30)
    assert_close(fast.dW, ref.dW, np.float64, scale=50)


@pytest.mark.parametrize("attribute", ["col", "col_W"])
def test_a_replaced_col_or_col_W_is_used_as_the_reference_uses_it(attribute, rng):
    fast, ref = conv_layers(rng)
    x = rng.standard_normal((2, 3, 5, 5))
    fast.forward(x)
    ref.forward(x)
    replacement = np.array(getattr(ref, attribute)) * 2 + 1
    setattr(fast, attribute, replacement)
    setattr(ref, attribute, replacement.copy())
    dout = rng.standard_normal((2, 4, 5, 5))
    assert_identical(fast.backward(dout), ref.backward(dout))
    assert_identical(fast.dW, ref.dW)
    # the next forward takes the compiled path again
    fast.forward(x)
    assert fast._fast is not None


def test_a_replaced_arg_max_is_used_as_the_reference_uses_it(rng):
    x = rng.standard_normal((2, 3, 6, 6))
    fast, ref = fast_layers.Pooling(2, 2), ref_layers.Pooling(2, 2)
    fast.forward(x)
    ref.forward(x)
    other = (np.array(ref.arg_max) + 1) % 4
    fast.arg_max, ref.arg_max = other, other.copy()
    dout = rng.standard_normal((2, 3, 3, 3))
    assert_identical(fast.backward(dout), ref.backward(dout))
    fast.arg_max = np.full(3, 9)                     # nonsense: the reference's error, no crash
    with pytest.raises((IndexError, ValueError)):
        fast.backward(dout)


def test_a_replaced_W_after_forward_is_not_read_by_backward(rng):
    """As in the book, backward uses col_W, the view of the W forward used."""
    fast, ref = conv_layers(rng)
    x = rng.standard_normal((2, 3, 5, 5))
    fast.forward(x)
    ref.forward(x)
    fast.W = ref.W = np.zeros((4, 3, 3, 3))
    dout = rng.standard_normal((2, 4, 5, 5))
    assert_close(fast.backward(dout), ref.backward(dout), np.float64, scale=30)
    assert np.abs(fast.backward(dout)).max() > 0


@pytest.mark.parametrize("forward_dtype,dout_dtype", [(np.float32, np.float64),
                                                      (np.float64, np.float32),
                                                      (np.float32, np.float16)])
def test_dout_of_another_dtype_gives_the_references_dtypes(forward_dtype, dout_dtype, rng):
    fast, ref = conv_layers(rng, forward_dtype)
    x = rng.standard_normal((2, 3, 5, 5)).astype(forward_dtype)
    fast.forward(x)
    ref.forward(x)
    dout = rng.standard_normal((2, 4, 5, 5)).astype(dout_dtype)
    dx, expected = fast.backward(dout), ref.backward(dout)
    assert dx.dtype == expected.dtype and fast.dW.dtype == ref.dW.dtype
    np.testing.assert_allclose(dx, expected, rtol=1e-3, atol=1e-3)
    pool, ref_pool = fast_layers.Pooling(2, 2), ref_layers.Pooling(2, 2)
    out = pool.forward(x)
    ref_pool.forward(x)
    d = np.ones_like(out, dtype=dout_dtype)
    assert_identical(pool.backward(d), ref_pool.backward(d))


@DTYPES
def test_buffers_are_kept_between_calls(dtype, rng):
    fast, _ = conv_layers(rng, dtype)
    x = rng.standard_normal((4, 3, 9, 9)).astype(dtype)
    fast.backward(np.ones_like(fast.forward(x)))
    buffers = dict(fast._buffers._arrays)
    fast.backward(np.ones_like(fast.forward(x[:2])))
    assert all(fast._buffers._arrays[k] is v for k, v in buffers.items())


# ---------------------------------------------------------------------------
# The kernels check the extents they are handed
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["x short", "out short", "strides", "W shape", "b length",
                                  "buffer", "window"])
def test_conv_kernel_refuses_what_it_would_overrun(case):
    k = backend.KERNELS[np.dtype(np.float64)]
    shape = (2, 3, 6, 6)
    args = dict(x=np.zeros(2 * 3 * 36), x_shape=shape, x_strides=(108, 36),
                W=np.zeros((4, 27)), fh=3, fw=3, stride=1, pad=0, b=np.zeros(4),
                out=np.zeros(2 * 4 * 16), out_strides=(64, 16), buffer=np.zeros(4096))
    bad = {"x short": dict(x=np.zeros(2 * 3 * 36 - 1)), "out short": dict(out=np.zeros(100)),
           "strides": dict(x_strides=(109, 36)), "W shape": dict(W=np.zeros((4, 26))),
           "b length": dict(b=np.zeros(3)), "buffer": dict(buffer=np.zeros(10)),
           "window": dict(fh=9)}[case]
    a = {**args, **bad}
    with pytest.raises(ValueError):
        k.conv_forward(a["x"], a["x_shape"], a["x_strides"], a["W"], a["fh"], a["fw"],
                       a["stride"], a["pad"], a["b"], a["out"], a["out_strides"], a["buffer"])


def test_pool_kernels_refuse_bad_positions_and_windows():
    k = backend.KERNELS[np.dtype(np.float64)]
    x = np.zeros(16)
    out, positions = np.zeros(4), np.zeros(4, np.uint8)
    k.maxpool_forward(x, (1, 1, 4, 4), (16, 16), 2, 2, 2, 0, out, (4, 4), positions)
    positions[2] = 4                                 # outside the 2 x 2 window
    with pytest.raises(ValueError, match="arg: expected window positions below 4, got 4"):
        k.maxpool_backward(out, (4, 4), positions, (1, 1, 4, 4), 2, 2, 2, 0, x, (16, 16))
    with pytest.raises(ValueError, match="at most 256"):
        k.maxpool_forward(np.zeros(17 * 17), (1, 1, 17, 17), (289, 289), 17, 16, 1, 0,
                          np.zeros(2), (2, 2), np.zeros(2, np.uint8))


def test_compiled_im2col_col2im_match_the_reference_on_every_small_geometry(rng):
    """Every filter, stride and pad on a few small images, both dtypes."""
    from fastbp import util as fast_util
    from fastbp.reference import util as ref_util
    for dtype, (h, w), fh, fw, stride, pad in itertools.product(
            (np.float32, np.float64), ((1, 1), (3, 4), (5, 2)), (1, 2, 3), (1, 2, 3), (1, 2),
            (0, 1, 2)):
        if fh > h + 2 * pad or fw > w + 2 * pad:
            continue
        x = rng.standard_normal((2, 2, h, w)).astype(dtype)
        col = fast_util.im2col(x, fh, fw, stride, pad)
        assert_identical(col, ref_util.im2col(x, fh, fw, stride, pad))
        assert_identical(fast_util.col2im(col, x.shape, fh, fw, stride, pad),
                         ref_util.col2im(col, x.shape, fh, fw, stride, pad))
    assert amax(col) > 0
