"""Dropout (chapter 6), for fastbp.layers and fastbp.reference.layers.

The default stream is the book's: ``np.random.rand(*x.shape) > ratio`` on
NumPy's global generator, so a seeded run gives the book's masks and leaves
the generator in the book's state.  The opt-in stream (``rng=``) is
``Generator.random(shape, dtype=float32) > ratio``, checked here against the
generator's raw 64-bit outputs.  Bad input: one clear error, nothing changed.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import fastbp.layers as fast_layers
import fastbp.reference.layers as ref_layers
from conftest import FLOAT_DTYPES, HYPOTHESIS, LAYOUTS, assert_identical, float_arrays, \
    small_shapes, with_layout

LAYERS = pytest.mark.parametrize("L", [fast_layers, ref_layers], ids=["fastbp", "reference"])
SHAPES = [(1, 1), (1, 257), (3, 7), (100, 50), (33, 3), (2, 3, 5, 7), (1, 1, 1, 1), (5,), (),
          (0, 4)]
RATIOS = [0.0, 0.2, 0.5, 0.999]


def global_state():
    """NumPy's global generator state, comparable with ==."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return name, keys.tobytes(), pos, has_gauss, cached


def book_masks(seed, shapes, ratio):
    """The book's masks for successive forwards (``np.random.rand(*x.shape) >
    dropout_ratio``) and the global generator's state after them."""
    np.random.seed(seed)
    masks = [np.random.rand(*shape) > ratio for shape in shapes]
    return masks, global_state()


def values(rng, shape, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    if x.size >= 3:                      # signed zeros and infinities go through as the book's
        x.flat[:3] = [-0.0, np.inf, -np.inf]
    return x


# ---------------------------------------------------------------------------
# The book's stream
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
@LAYERS
def test_same_seed_gives_the_books_masks_outputs_and_generator_state(L, dtype, shape, layout,
                                                                      rng):
    ratio = 0.3
    x = values(rng, shape, dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    (want_mask, want_mask2), want_state = book_masks(17, [shape, shape], ratio)

    layer = L.Dropout(ratio)
    np.random.seed(17)
    x_in, dout_in = with_layout(x, layout), with_layout(dout, layout)
    out = layer.forward(x_in)
    assert layer.mask.dtype == np.bool_ and layer.mask.shape == shape
    assert_identical(layer.mask, want_mask)
    with np.errstate(invalid="ignore"):
        assert_identical(out, x * want_mask)          # the book's product, dtype kept
        assert out.dtype == dtype
        dx = layer.backward(dout_in)
        assert_identical(dx, dout * want_mask)
    # a second forward continues the stream exactly as the book's second call
    layer.forward(x_in)
    assert_identical(layer.mask, want_mask2)
    assert global_state() == want_state
    assert_identical(x_in, with_layout(x, layout))    # inputs untouched
    assert_identical(dout_in, with_layout(dout, layout))


@pytest.mark.parametrize("ratio", RATIOS)
@LAYERS
def test_book_stream_at_every_ratio(L, ratio, rng):
    shapes = [(100, 100), (7, 3, 2, 2)]
    want_masks, want_state = book_masks(3, shapes, ratio)
    layer = L.Dropout(dropout_ratio=ratio)
    np.random.seed(3)
    for shape, want in zip(shapes, want_masks):
        layer.forward(np.ones(shape))
        assert_identical(layer.mask, want)
    assert global_state() == want_state
    kept = want_masks[0].mean()
    assert abs(kept - (1 - ratio)) < 0.02              # the ratio is the fraction dropped


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.bool_])
@LAYERS
def test_test_mode_scales_by_the_keep_fraction_and_draws_nothing(L, dtype, rng):
    x = (rng.standard_normal((6, 9)) * 4).astype(dtype)
    layer = L.Dropout(0.25)
    np.random.seed(5)
    state = global_state()
    out = layer.forward(x, train_flg=False)
    assert global_state() == state
    assert layer.mask is None
    assert_identical(out, x * (1.0 - 0.25))          # book: float32 stays float32, ints -> float64
    if dtype == np.float32:
        assert out.dtype == np.float32


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.bool_])
@LAYERS
def test_integer_inputs_follow_numpy_as_in_the_book(L, dtype, rng):
    x = rng.integers(-5, 5, size=(4, 6)).astype(dtype)
    np.random.seed(0)
    out = L.Dropout(0.5).forward(x)
    np.random.seed(0)
    assert_identical(out, x * (np.random.rand(4, 6) > 0.5))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
@LAYERS
@HYPOTHESIS
@given(data=st.data(), ratio=st.floats(0, 0.99), seed=st.integers(0, 2**32 - 1))
def test_hypothesis_values_and_shapes(L, dtype, data, ratio, seed):
    shape = data.draw(small_shapes(min_dims=1, max_dims=4))
    x = data.draw(float_arrays(dtype, shape))
    dout = data.draw(float_arrays(dtype, shape))
    (want,), _ = book_masks(seed, [shape], ratio)
    layer = L.Dropout(ratio)
    np.random.seed(seed)
    assert_identical(layer.forward(x), x * want)
    assert_identical(layer.backward(dout), dout * want)
    assert_identical(layer.forward(x, False), x * (1.0 - ratio))


# ---------------------------------------------------------------------------
# The opt-in stream: rng=Generator or a seed
# ---------------------------------------------------------------------------
def masks_from_raw_bits(seed, n_elements, ratio):
    """The documented stream, from PCG64's raw 64-bit outputs: each element
    takes one 32-bit half (low half first), keeps its top 24 bits k, and is
    kept when k > floor(ratio * 2**24)."""
    raw = np.random.default_rng(seed).bit_generator.random_raw((n_elements + 1) // 2)
    halves = np.empty(2 * raw.size, dtype=np.uint64)
    halves[0::2] = raw & 0xFFFFFFFF
    halves[1::2] = raw >> 32
    k = halves[:n_elements] >> 8
    return k > np.uint64(np.floor(ratio * 2**24))


@pytest.mark.parametrize("ratio", RATIOS + [0.1, 1 - 2**-24, 3 * 2**-24])
@LAYERS
def test_rng_stream_is_the_generators_float32_uniforms_compared_in_float64(L, ratio):
    shape = (64, 33)                   # an even element count: no half left over
    layer = L.Dropout(ratio, rng=2024)
    layer.forward(np.ones(shape, np.float32))
    want = np.random.default_rng(2024).random(shape, dtype=np.float32).astype(np.float64) > ratio
    assert_identical(layer.mask, want)
    assert_identical(layer.mask, masks_from_raw_bits(2024, want.size, ratio).reshape(shape))


def test_rng_ratio_is_compared_in_float64_not_rounded_to_float32():
    draws = np.random.default_rng(1).random(50, dtype=np.float32)
    i = int(np.argmax(draws >= 0.5))         # float32 spacing here is the draws' 2**-24
    ratio = float(draws[i]) - 2**-26         # float32(ratio) would round up to draws[i]
    assert np.float32(ratio) == draws[i]
    layer = ref_layers.Dropout(ratio, rng=1)
    layer.forward(np.ones(draws.size))
    assert layer.mask[i]                     # kept: draws[i] > ratio
    assert_identical(layer.mask, draws.astype(np.float64) > ratio)


@LAYERS
def test_rng_stream_continues_across_forwards_and_layers_share_a_generator(L):
    gen = np.random.default_rng(7)
    first, second = L.Dropout(0.5, rng=gen), L.Dropout(0.2, rng=gen)
    assert first.rng is gen                        # shared, not copied
    np.random.seed(0)
    state = global_state()
    first.forward(np.ones((3, 5)))
    second.forward(np.ones((4, 2)))
    first.forward(np.ones((3, 5)), train_flg=False)   # test mode draws nothing
    first.forward(np.ones((2, 2)))
    replay = np.random.default_rng(7)
    replay.random((3, 5), dtype=np.float32)                  # first's first mask
    assert_identical(second.mask, replay.random((4, 2), dtype=np.float32) > 0.2)
    assert_identical(first.mask, replay.random((2, 2), dtype=np.float32) > 0.5)
    assert global_state() == state                 # the global generator is not touched


@pytest.mark.parametrize("make", [lambda: 11, lambda: np.random.SeedSequence(11),
                                  lambda: np.random.PCG64(11), lambda: np.int64(11)],
                         ids=["int", "SeedSequence", "BitGenerator", "np.int64"])
@LAYERS
def test_rng_seed_forms_are_default_rng(L, make):
    layer = L.Dropout(0.4, rng=make())
    assert isinstance(layer.rng, np.random.Generator)
    layer.forward(np.zeros((10, 10)))
    assert_identical(layer.mask, np.random.default_rng(make()).random((10, 10), np.float32) > 0.4)


@pytest.mark.parametrize("layout", LAYOUTS)
@LAYERS
def test_rng_draws_follow_c_order_whatever_the_layout(L, layout, rng):
    x = rng.standard_normal((9, 13))
    layer = L.Dropout(0.5, rng=3)
    out = layer.forward(with_layout(x, layout))
    want = np.random.default_rng(3).random((9, 13), dtype=np.float32) > 0.5
    assert_identical(layer.mask, want)
    assert_identical(out, x * want)


# ---------------------------------------------------------------------------
# Numbers that aren't finite, dtypes
# ---------------------------------------------------------------------------
@LAYERS
def test_dropped_infinity_is_nan_and_nothing_warns(L):
    x = np.array([[np.inf, -np.inf, np.nan, -1.0]], dtype=np.float32)
    layer = L.Dropout(0.5)
    np.random.seed(0)
    out = layer.forward(x)                          # pytest turns a warning into an error
    with np.errstate(invalid="ignore"):
        assert_identical(out, x * layer.mask)
    assert_identical(layer.backward(x), out)


# ---------------------------------------------------------------------------
# Bad input: one clear error, nothing changed
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("ratio", [-0.1, 1, 1.0, 1.5, np.nan, np.inf, "0.5", None, True])
@LAYERS
def test_ratio_outside_zero_one(L, ratio):
    with pytest.raises(ValueError, match=r"dropout_ratio: expected a number in \[0, 1\), got"):
        L.Dropout(ratio)


@LAYERS
def test_bad_ratio_assigned_later_raises_before_drawing(L):
    layer = L.Dropout(0.5)
    np.random.seed(1)
    layer.forward(np.ones((2, 3)))
    mask, state = layer.mask, global_state()
    layer.dropout_ratio = 1.0
    for train_flg in (True, False):
        with pytest.raises(ValueError, match=r"dropout_ratio: .*\[0, 1\).*got 1\.0"):
            layer.forward(np.ones((2, 3)), train_flg)
    assert layer.mask is mask and global_state() == state


@pytest.mark.parametrize("rng_arg,error", [("abc", TypeError), (1.5, TypeError),
                                           (True, TypeError), (-1, ValueError),
                                           (np.random.RandomState(0), TypeError)])
@LAYERS
def test_bad_rng(L, rng_arg, error):
    with pytest.raises(error, match="rng: expected"):
        L.Dropout(0.5, rng=rng_arg)


@LAYERS
def test_backward_before_a_training_forward(L):
    layer = L.Dropout(0.5)
    with pytest.raises(RuntimeError, match=r"Dropout\.backward called before a training-mode "
                                           r"forward.*train_flg=True"):
        layer.backward(np.ones((2, 3)))
    layer.forward(np.ones((2, 3)), train_flg=False)
    with pytest.raises(RuntimeError, match="training-mode forward"):
        layer.backward(np.ones((2, 3)))


@LAYERS
def test_dout_of_the_wrong_shape(L):
    layer = L.Dropout(0.5)
    np.random.seed(0)
    layer.forward(np.ones((2, 3)))
    mask = layer.mask.copy()
    for bad in (np.ones((3, 2)), np.ones(6), np.ones((2, 3, 1))):
        with pytest.raises(ValueError, match=r"dout: expected shape \(2, 3\), got"):
            layer.backward(bad)
    assert_identical(layer.mask, mask)


@pytest.mark.parametrize("bad", [np.array(["a", "b"]), np.array([1 + 2j]),
                                 np.array([object(), None])], ids=["str", "complex", "object"])
@LAYERS
def test_non_numeric_x_and_dout(L, bad):
    layer = L.Dropout(0.5)
    np.random.seed(0)
    state = global_state()
    with pytest.raises(TypeError, match="x: expected a real numeric"):
        layer.forward(bad)
    assert layer.mask is None and global_state() == state
    layer.forward(np.ones(bad.shape))
    with pytest.raises(TypeError, match="dout: expected a real numeric"):
        layer.backward(bad)
