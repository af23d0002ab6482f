"""fastbp.layers (compiled) against fastbp.reference.layers (NumPy).

Every layer, both float dtypes, odd and empty batch sizes, C / Fortran /
strided / read-only inputs, hypothesis-generated values; dtype rules;
Affine's parameter references; numerical gradient checks.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import fastbp.layers as fast_layers
import fastbp.reference.layers as ref_layers
from conftest import (FLOAT_DTYPES, HYPOTHESIS, LAYOUTS, amax, assert_close, assert_identical,
                      float_arrays, gemm_scale, random_array, rel_error, rtol_for, small_shapes,
                      with_layout, with_special_zeros)
from fastbp.reference.gradient import numerical_gradient

ELEMENTWISE_SHAPES = [(1, 1), (1, 257), (3, 7), (7, 33), (33, 3), (257, 1), (2, 1, 3, 7), (5,)]
AFFINE_SHAPES = [(1, 1, 1), (1, 257, 3), (3, 7, 33), (7, 33, 1), (33, 3, 7), (257, 1, 3),
                 (2, 257, 257)]   # (N, D, M)
SOFTMAX_SHAPES = [(1, 1), (1, 257), (3, 7), (7, 3), (33, 33), (257, 2)]  # (N, C)


def dtype_id(dtype):
    return np.dtype(dtype).name


def pair(name, *args):
    """The compiled and the reference layer ``name``, built from the same args."""
    return getattr(fast_layers, name)(*args), getattr(ref_layers, name)(*args)


def one_hot(labels, n_classes, dtype):
    t = np.zeros((labels.size, n_classes), dtype=dtype)
    t[np.arange(labels.size), labels] = 1
    return t


# ---------------------------------------------------------------------------
# Relu
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_relu_matches_reference_exactly(dtype, shape, layout, rng):
    x = with_special_zeros(rng, random_array(rng, shape, dtype))
    dout = random_array(rng, shape, dtype)
    fast, ref = pair("Relu")

    out = fast.forward(with_layout(x, layout))
    assert_identical(out, ref.forward(with_layout(x, layout)))
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, np.where(x > 0, x, 0))
    assert not np.signbit(out).any()                  # masked entries are +0.0
    assert fast.mask.dtype == np.bool_
    assert_identical(fast.mask, ref.mask)
    np.testing.assert_array_equal(fast.mask, x <= 0)

    dx = fast.backward(with_layout(dout, layout))
    assert_identical(dx, ref.backward(with_layout(dout, layout)))
    np.testing.assert_array_equal(dx, np.where(x <= 0, 0, dout))


@pytest.mark.parametrize("dout_layout", LAYOUTS)
@pytest.mark.parametrize("x_layout", LAYOUTS)
def test_relu_forward_and_backward_layouts_may_differ(x_layout, dout_layout, rng):
    x = with_special_zeros(rng, random_array(rng, (7, 33)))
    dout = random_array(rng, (7, 33))
    fast, ref = pair("Relu")
    assert_identical(fast.forward(with_layout(x, x_layout)), ref.forward(x))
    assert_identical(fast.backward(with_layout(dout, dout_layout)), ref.backward(dout))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@HYPOTHESIS
@given(data=st.data())
def test_relu_hypothesis(dtype, data):
    shape = data.draw(small_shapes())
    x = data.draw(float_arrays(dtype, shape))
    dout = data.draw(float_arrays(dtype, shape))
    fast, ref = pair("Relu")
    assert_identical(fast.forward(x), ref.forward(x))
    assert_identical(fast.mask, ref.mask)
    assert_identical(fast.backward(dout), ref.backward(dout))


def test_relu_nan_and_negative_zero():
    x = np.array([[np.nan, -0.0, 0.0, -1.0, 2.0, np.inf, -np.inf]])
    fast, ref = pair("Relu")
    out = fast.forward(x)
    assert_identical(out, ref.forward(x))
    assert np.isnan(out[0, 0]) and not fast.mask[0, 0]      # NaN is not masked
    assert out[0, 1] == 0 and not np.signbit(out[0, 1])       # -0.0 -> +0.0
    np.testing.assert_array_equal(fast.mask, [[False, True, True, True, False, False, True]])


# ---------------------------------------------------------------------------
# Sigmoid
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_sigmoid_matches_reference(dtype, shape, layout, rng):
    x = random_array(rng, shape, dtype, scale=8.0)
    dout = random_array(rng, shape, dtype)
    fast, ref = pair("Sigmoid")

    out = fast.forward(with_layout(x, layout))
    assert_close(out, ref.forward(with_layout(x, layout)), dtype)
    assert_close(fast.out, ref.out, dtype)
    assert fast.out is out

    dx = fast.backward(with_layout(dout, layout))
    assert_close(dx, ref.backward(with_layout(dout, layout)), dtype, scale=amax(dout))


@pytest.mark.parametrize("dout_layout", LAYOUTS)
@pytest.mark.parametrize("x_layout", LAYOUTS)
def test_sigmoid_forward_and_backward_layouts_may_differ(x_layout, dout_layout, rng):
    x = random_array(rng, (7, 33), scale=5.0)
    dout = random_array(rng, (7, 33))
    fast, ref = pair("Sigmoid")
    assert_close(fast.forward(with_layout(x, x_layout)), ref.forward(x), np.float64)
    assert_close(fast.backward(with_layout(dout, dout_layout)), ref.backward(dout), np.float64)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@HYPOTHESIS
@given(data=st.data())
def test_sigmoid_hypothesis(dtype, data):
    shape = data.draw(small_shapes())
    x = data.draw(float_arrays(dtype, shape))
    dout = data.draw(float_arrays(dtype, shape, -10, 10))
    fast, ref = pair("Sigmoid")
    assert_close(fast.forward(x), ref.forward(x), dtype)
    assert_close(fast.backward(dout), ref.backward(dout), dtype, scale=amax(dout))


# ---------------------------------------------------------------------------
# Affine
# ---------------------------------------------------------------------------
def affine_problem(rng, n, d, m, dtype):
    return (random_array(rng, (n, d), dtype), random_array(rng, (d, m), dtype),
            random_array(rng, (m,), dtype), random_array(rng, (n, m), dtype))


def compare_affine(fast, ref, x, dout, dtype):
    """Forward and backward of two Affine layers sharing W and b."""
    W, b = ref.W, ref.b
    n, d, m = x.shape[0], W.shape[0], W.shape[1]
    out = fast.forward(x)
    assert_close(out, ref.forward(x), dtype, scale=gemm_scale(d, x, W) + amax(b))
    assert out.shape == (n, m)
    assert_identical(fast.x, ref.x)
    assert fast.original_x_shape == ref.original_x_shape == x.shape

    dx = fast.backward(dout)
    assert_close(dx, ref.backward(dout), dtype, scale=gemm_scale(m, dout, W))
    assert dx.shape == x.shape
    assert_close(fast.dW, ref.dW, dtype, scale=gemm_scale(n, x, dout))
    assert_close(fast.db, ref.db, dtype, scale=gemm_scale(n, 1.0, dout))
    assert fast.W is W and fast.b is b


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("ndm", AFFINE_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_affine_matches_reference(dtype, ndm, layout, rng):
    x, W, b, dout = affine_problem(rng, *ndm, dtype)
    W, b = with_layout(W, layout), with_layout(b, layout)
    fast, ref = pair("Affine", W, b)
    compare_affine(fast, ref, with_layout(x, layout), with_layout(dout, layout), dtype)


W_LAYOUTS = ("C", "F", "transposed-view", "strided", "readonly")


def make_weight(W, layout):
    if layout == "transposed-view":
        view = np.ascontiguousarray(W.T).T
        assert view.flags.f_contiguous and not view.flags.owndata
        return view
    return with_layout(W, layout)


@pytest.mark.parametrize("w_layout", W_LAYOUTS)
@pytest.mark.parametrize("x_layout", LAYOUTS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_affine_weight_and_input_layouts(dtype, x_layout, w_layout, rng):
    x, W, b, dout = affine_problem(rng, 9, 13, 5, dtype)
    W = make_weight(W, w_layout)
    fast, ref = pair("Affine", W, b)
    compare_affine(fast, ref, with_layout(x, x_layout), dout, dtype)
    np.testing.assert_allclose(fast.forward(with_layout(x, x_layout)), x @ W + b,
                               rtol=10 * rtol_for(dtype), atol=1e-4)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@HYPOTHESIS
@given(data=st.data())
def test_affine_hypothesis(dtype, data):
    n = data.draw(st.integers(0, 9))
    d = data.draw(st.integers(0, 9))
    m = data.draw(st.integers(1, 9))
    x = data.draw(float_arrays(dtype, (n, d), -100, 100))
    W = data.draw(float_arrays(dtype, (d, m), -100, 100))
    b = data.draw(float_arrays(dtype, (m,), -100, 100))
    dout = data.draw(float_arrays(dtype, (n, m), -100, 100))
    fast, ref = pair("Affine", W, b)
    compare_affine(fast, ref, x, dout, dtype)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_affine_image_batch_is_flattened_and_dx_keeps_its_shape(dtype, layout, rng):
    x = random_array(rng, (3, 1, 28, 28), dtype)
    W = random_array(rng, (784, 10), dtype, scale=0.05)
    b = random_array(rng, (10,), dtype)
    dout = random_array(rng, (3, 10), dtype)
    fast, ref = pair("Affine", W, b)
    xl = with_layout(x, layout)
    out = fast.forward(xl)
    assert_close(out, ref.forward(xl), dtype, scale=gemm_scale(784, x, W) + amax(b))
    assert fast.original_x_shape == (3, 1, 28, 28)
    assert fast.x.shape == (3, 784)
    np.testing.assert_array_equal(fast.x, x.reshape(3, 784))
    dx = fast.backward(dout)
    assert dx.shape == (3, 1, 28, 28)
    assert_close(dx, ref.backward(dout), dtype, scale=gemm_scale(10, dout, W))
    assert_close(fast.dW, ref.dW, dtype, scale=gemm_scale(3, x, dout))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_all_layers_with_negative_strides(dtype, rng):
    """Reversed views (negative strides) of x, W, b, dout and labels."""
    def reversed_view(a):
        return np.ascontiguousarray(a[(slice(None, None, -1),) * a.ndim])[
            (slice(None, None, -1),) * a.ndim]
    x = reversed_view(with_special_zeros(rng, random_array(rng, (7, 5), dtype)))
    dout = reversed_view(random_array(rng, (7, 5), dtype))
    assert x.strides[0] < 0 and dout.strides[1] < 0
    for name in ("Relu", "Sigmoid"):
        fast, ref = pair(name)
        assert_close(fast.forward(x), ref.forward(x), dtype)
        assert_close(fast.backward(dout), ref.backward(dout), dtype)
    W = reversed_view(random_array(rng, (5, 3), dtype))
    b = reversed_view(random_array(rng, (3,), dtype))
    compare_affine(*pair("Affine", W, b), x, reversed_view(random_array(rng, (7, 3), dtype)),
                   dtype)
    labels = reversed_view(rng.integers(0, 5, size=7))
    compare_softmax_layers(*pair("SoftmaxWithLoss"), x, labels, dtype)


@pytest.mark.parametrize("layout", ["C", "F"])
def test_elementwise_layers_on_arrays_big_enough_for_threads(layout, rng):
    x = with_layout(with_special_zeros(rng, random_array(rng, (331, 401), scale=20.0)), layout)
    dout = with_layout(random_array(rng, (331, 401)), layout)
    fast, ref = pair("Relu")
    assert_identical(fast.forward(x), ref.forward(x))
    assert_identical(fast.mask, ref.mask)
    assert_identical(fast.backward(dout), ref.backward(dout))
    fast, ref = pair("Sigmoid")
    assert_close(fast.forward(x), ref.forward(x), np.float64)
    assert_close(fast.backward(dout), ref.backward(dout), np.float64)


# ---------------------------------------------------------------------------
# Affine keeps references to the caller's W and b
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["C", "F", "transposed-view", "x-of-other-dtype"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("module", [fast_layers, ref_layers], ids=["compiled", "reference"])
def test_affine_reads_in_place_updates_of_w_and_b(module, dtype, variant, rng):
    x, W, b, dout = affine_problem(rng, 4, 6, 3, dtype)
    if variant == "x-of-other-dtype":     # W must be cast for the kernel at every call
        x = x.astype(np.float64 if dtype == np.float32 else np.float32)
        dout = dout.astype(np.float64)
    else:
        W = make_weight(W, variant)
    layer = module.Affine(W, b)
    assert layer.W is W and layer.b is b
    out0 = layer.forward(x)
    layer.backward(dout)
    assert layer.W is W and layer.b is b            # never replaced by a copy

    W -= dtype(0.1)
    out1 = layer.forward(x)
    assert layer.W is W
    np.testing.assert_allclose(out1, x @ W + b, rtol=1e-5, atol=1e-5)
    assert not np.allclose(out1, out0)

    W[0, 0] += 1
    b[1] -= 2
    out2 = layer.forward(x)
    np.testing.assert_allclose(out2, x @ W + b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out2[:, 0] - out1[:, 0], x[:, 0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out2[:, 1] - out1[:, 1], -2, rtol=1e-4)

    dx = layer.backward(dout)                       # backward reads the new W too
    np.testing.assert_allclose(dx, dout @ W.T, rtol=1e-5, atol=1e-5)


def test_affine_sgd_loop_with_in_place_updates_matches_reference(rng):
    x, W, b, dout = affine_problem(rng, 8, 5, 4, np.float64)
    params = {"fast": (W.copy(), b.copy()), "ref": (W.copy(), b.copy())}
    fast = fast_layers.Affine(*params["fast"])
    ref = ref_layers.Affine(*params["ref"])
    for _ in range(5):
        out_f, out_r = fast.forward(x), ref.forward(x)
        np.testing.assert_allclose(out_f, out_r, rtol=1e-12, atol=1e-12)
        fast.backward(out_f - 1)
        ref.backward(out_r - 1)
        for layer, (Wk, bk) in ((fast, params["fast"]), (ref, params["ref"])):
            Wk -= 0.05 * layer.dW
            bk -= 0.05 * layer.db
    np.testing.assert_allclose(params["fast"][0], params["ref"][0], rtol=1e-12, atol=1e-12)
    assert not np.allclose(params["fast"][0], W)


# ---------------------------------------------------------------------------
# SoftmaxWithLoss
# ---------------------------------------------------------------------------
def softmax_targets(rng, n, c, kind, dtype):
    labels = rng.integers(0, c, size=n)
    if kind == "labels":
        return labels
    return one_hot(labels, c, dtype)


def compare_softmax_layers(fast, ref, x, t, dtype, dout=1):
    loss = fast.forward(x, t)
    assert_close(loss, ref.forward(x, t), dtype, scale=max(1.0, abs(ref.loss)))
    assert fast.loss == loss
    assert_close(fast.y, ref.y, dtype)
    assert fast.y.shape == np.shape(x)
    assert fast.t is t
    dx = fast.backward(dout)
    assert_close(dx, ref.backward(dout), dtype)
    assert dx.shape == np.shape(x)
    return loss, dx


@pytest.mark.parametrize("kind", ["labels", "one-hot"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("nc", SOFTMAX_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_softmax_with_loss_matches_reference(dtype, nc, layout, kind, rng):
    n, c = nc
    x = random_array(rng, (n, c), dtype, scale=5.0)
    t = with_layout(softmax_targets(rng, n, c, kind, dtype), layout)
    fast, ref = pair("SoftmaxWithLoss")
    loss, dx = compare_softmax_layers(fast, ref, with_layout(x, layout), t, dtype)
    assert loss >= 0
    assert fast.y.dtype == dx.dtype == dtype
    np.testing.assert_allclose(fast.y.sum(axis=1), 1, rtol=1e-5)


@pytest.mark.parametrize("t_dtype", [np.int64, np.int32, np.uint8, np.float32, np.float64])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_softmax_with_loss_one_hot_of_any_dtype(dtype, t_dtype, rng):
    x = random_array(rng, (6, 4), dtype, scale=3.0)
    t = one_hot(rng.integers(0, 4, size=6), 4, t_dtype)
    fast, ref = pair("SoftmaxWithLoss")
    compare_softmax_layers(fast, ref, x, t, dtype)
    assert fast.y.dtype == dtype


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_softmax_with_loss_soft_targets(dtype, rng):
    x = random_array(rng, (5, 7), dtype, scale=3.0)
    t = rng.random((5, 7)).astype(dtype)
    t /= t.sum(axis=1, keepdims=True)
    fast, ref = pair("SoftmaxWithLoss")
    compare_softmax_layers(fast, ref, x, t, dtype, dout=0.5)


@pytest.mark.parametrize("kind", ["labels", "one-hot"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_softmax_with_loss_single_sample(dtype, kind, rng):
    x = random_array(rng, (7,), dtype)
    t = np.int64(3) if kind == "labels" else one_hot(np.array([3]), 7, dtype)[0]
    fast, ref = pair("SoftmaxWithLoss")
    loss, dx = compare_softmax_layers(fast, ref, x, t, dtype)
    assert dx.shape == (7,)
    assert loss == pytest.approx(-np.log(np.exp(x - x.max())[3] / np.exp(x - x.max()).sum()),
                                 rel=1e-5)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@HYPOTHESIS
@given(data=st.data())
def test_softmax_with_loss_hypothesis(dtype, data):
    n = data.draw(st.integers(1, 9))
    c = data.draw(st.integers(1, 9))
    x = data.draw(float_arrays(dtype, (n, c), -60, 60))
    labels = np.array(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    t = labels if data.draw(st.booleans()) else one_hot(labels, c, dtype)
    dout = data.draw(st.floats(-3, 3))
    fast, ref = pair("SoftmaxWithLoss")
    compare_softmax_layers(fast, ref, x, t, dtype, dout=dout)


@pytest.mark.parametrize("dout", [2.0, 0.5, -1, np.float64(3.0), np.array(0.25)], ids=repr)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_softmax_with_loss_backward_scales_by_dout(dtype, dout, rng):
    x = random_array(rng, (4, 5), dtype)
    t = rng.integers(0, 5, size=4)
    fast, ref = pair("SoftmaxWithLoss")
    fast.forward(x, t)
    ref.forward(x, t)
    dx1 = fast.backward()
    dx = fast.backward(dout)
    assert_close(dx, ref.backward(dout), dtype)
    assert_close(dx, (float(dout) * dx1).astype(dtype), dtype)


# ---------------------------------------------------------------------------
# AddLayer / MulLayer
# ---------------------------------------------------------------------------
def test_add_and_mul_layers_are_the_reference_ones():
    assert fast_layers.AddLayer is ref_layers.AddLayer
    assert fast_layers.MulLayer is ref_layers.MulLayer


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("module", [fast_layers, ref_layers], ids=["compiled", "reference"])
def test_mul_and_add_layers_on_arrays(module, dtype, rng):
    x, y, dout = (random_array(rng, (3, 7), dtype) for _ in range(3))
    mul, add = module.MulLayer(), module.AddLayer()
    z = mul.forward(x, y)
    assert z.dtype == dtype
    np.testing.assert_array_equal(z, x * y)
    dx, dy = mul.backward(dout)
    np.testing.assert_array_equal(dx, dout * y)
    np.testing.assert_array_equal(dy, dout * x)
    np.testing.assert_array_equal(add.forward(x, y), x + y)
    da, db = add.backward(dout)
    np.testing.assert_array_equal(da, dout)
    np.testing.assert_array_equal(db, dout)
    assert da is not dout and db is not dout


@pytest.mark.parametrize("module", [fast_layers, ref_layers], ids=["compiled", "reference"])
def test_mul_layer_backward_before_forward_raises(module):
    with pytest.raises(RuntimeError, match="forward"):
        module.MulLayer().backward(1.0)


# ---------------------------------------------------------------------------
# Empty batches (N = 0)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["Relu", "Sigmoid"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_elementwise_layers_empty_batch(name, dtype):
    x = np.empty((0, 7), dtype=dtype)
    fast, ref = pair(name)
    out = fast.forward(x)
    assert out.shape == (0, 7) and out.dtype == dtype
    assert_identical(out, ref.forward(x))
    dx = fast.backward(np.empty((0, 7), dtype=dtype))
    assert dx.shape == (0, 7) and dx.dtype == dtype


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_affine_empty_batch(dtype, rng):
    W = random_array(rng, (7, 3), dtype)
    b = random_array(rng, (3,), dtype)
    fast, ref = pair("Affine", W, b)
    x = np.empty((0, 7), dtype=dtype)
    out = fast.forward(x)
    assert out.shape == (0, 3) and out.dtype == dtype
    assert_identical(out, ref.forward(x))
    dx = fast.backward(np.empty((0, 3), dtype=dtype))
    assert dx.shape == (0, 7) and dx.dtype == dtype
    assert_identical(dx, ref.backward(np.empty((0, 3), dtype=dtype)))
    assert_identical(fast.dW, np.zeros((7, 3), dtype=dtype))   # no samples: zero gradient
    assert_identical(fast.db, np.zeros(3, dtype=dtype))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_affine_empty_image_batch_keeps_its_shape(dtype, rng):
    W = random_array(rng, (12, 2), dtype)
    fast = fast_layers.Affine(W, np.zeros(2, dtype))
    out = fast.forward(np.empty((0, 3, 4), dtype=dtype))
    assert out.shape == (0, 2)
    assert fast.backward(np.empty((0, 2), dtype=dtype)).shape == (0, 3, 4)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_affine_zero_features(dtype, rng):
    b = random_array(rng, (4,), dtype)
    fast, ref = pair("Affine", np.empty((0, 4), dtype=dtype), b)
    x = np.empty((3, 0), dtype=dtype)
    out = fast.forward(x)
    assert_identical(out, ref.forward(x))
    np.testing.assert_array_equal(out, np.broadcast_to(b, (3, 4)))
    dout = random_array(rng, (3, 4), dtype)
    assert_identical(fast.backward(dout), ref.backward(dout))
    assert fast.dW.shape == (0, 4)
    assert_close(fast.db, ref.db, dtype, scale=3 * amax(dout))


@pytest.mark.parametrize("kind", ["labels", "one-hot"])
@pytest.mark.parametrize("module", [fast_layers, ref_layers], ids=["compiled", "reference"])
def test_softmax_with_loss_empty_batch_raises(module, kind):
    t = np.empty(0, dtype=np.int64) if kind == "labels" else np.empty((0, 3))
    with pytest.raises(ValueError, match="empty batch"):
        module.SoftmaxWithLoss().forward(np.empty((0, 3)), t)


# ---------------------------------------------------------------------------
# Dtype rules
# ---------------------------------------------------------------------------
def test_float32_in_float32_out_everywhere(rng):
    f32 = np.float32
    x = random_array(rng, (5, 6), f32)
    for name in ("Relu", "Sigmoid"):
        layer = getattr(fast_layers, name)()
        assert layer.forward(x).dtype == f32
        assert layer.backward(x).dtype == f32
    affine = fast_layers.Affine(random_array(rng, (6, 3), f32), random_array(rng, (3,), f32))
    assert affine.forward(x).dtype == f32
    assert affine.backward(random_array(rng, (5, 3), f32)).dtype == f32
    assert affine.dW.dtype == affine.db.dtype == f32
    swl = fast_layers.SoftmaxWithLoss()
    assert isinstance(swl.forward(x, np.arange(5)), float)
    assert swl.y.dtype == f32
    assert swl.backward().dtype == f32


MIXED_AFFINE = [  # x, W, b dtypes -> result dtype (NumPy's)
    (np.float32, np.float64, np.float64, np.float64),
    (np.uint8, np.float64, np.float64, np.float64),
    (np.int64, np.float32, np.float32, np.float64),
    (np.float64, np.float32, np.float32, np.float64),
    (np.float16, np.float32, np.float32, np.float32),
    (np.bool_, np.float32, np.float32, np.float32),
]


@pytest.mark.parametrize("x_dtype,w_dtype,b_dtype,expected", MIXED_AFFINE,
                         ids=lambda d: np.dtype(d).name)
def test_affine_mixed_dtypes_follow_numpy(x_dtype, w_dtype, b_dtype, expected, rng):
    x = (rng.random((6, 5)) * 4).astype(x_dtype)
    W = random_array(rng, (5, 3), w_dtype)
    b = random_array(rng, (3,), b_dtype)
    dout = random_array(rng, (6, 3), expected)
    fast, ref = pair("Affine", W, b)
    out = fast.forward(x)
    assert out.dtype == np.dtype(expected)
    assert_close(out, ref.forward(x), expected, scale=gemm_scale(5, x, W) + amax(b))
    dx = fast.backward(dout)
    ref_dx = ref.backward(dout)
    assert_close(dx, ref_dx, ref_dx.dtype, scale=gemm_scale(3, dout, W))
    assert_close(fast.dW, ref.dW, ref.dW.dtype, scale=gemm_scale(6, x, dout))
    assert fast.db.dtype == ref.db.dtype


def test_affine_float32_params_with_float64_bias(rng):
    """float32 x and W with a float64 b give float64 (NumPy's rule)."""
    x = random_array(rng, (6, 5), np.float32)
    W = random_array(rng, (5, 3), np.float32)
    b = random_array(rng, (3,), np.float64)
    fast, ref = pair("Affine", W, b)
    out, ref_out = fast.forward(x), ref.forward(x)
    assert out.dtype == ref_out.dtype == np.float64
    # The reference multiplies in float32 (np.dot of two float32 arrays) and
    # only then adds the float64 bias: agreement at float32 precision.
    np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-5 * gemm_scale(5, x, W))


@pytest.mark.parametrize("int_dtype", [np.int64, np.int32, np.uint8])
def test_affine_all_integer_inputs_stay_integer_like_the_reference(int_dtype):
    """The documented rule (fastbp/layers.py): integers where NumPy keeps them
    integer go through the reference, so an all-integer Affine stays integer."""
    x = np.arange(6, dtype=int_dtype).reshape(2, 3)
    W = np.ones((3, 2), dtype=int_dtype)
    b = np.arange(2, dtype=int_dtype)
    fast, ref = pair("Affine", W, b)
    out, ref_out = fast.forward(x), ref.forward(x)
    assert out.dtype == ref_out.dtype, f"compiled {out.dtype} vs reference {ref_out.dtype}"
    assert_identical(out, ref_out)
    dout = np.ones((2, 2), dtype=int_dtype)
    assert_identical(fast.backward(dout), ref.backward(dout))
    assert_identical(fast.dW, ref.dW)


@pytest.mark.parametrize("int_dtype", [np.int64, np.uint8, np.bool_])
def test_relu_and_sigmoid_of_integers_match_reference(int_dtype):
    x = np.array([[0, 1, 2], [3, 1, 0]], dtype=int_dtype)
    fast, ref = pair("Relu")
    out = fast.forward(x)
    assert_identical(out, ref.forward(x))
    assert out.dtype == int_dtype                         # integers stay integers
    assert_identical(fast.backward(x), ref.backward(x))
    fast, ref = pair("Sigmoid")
    out = fast.forward(x)
    assert out.dtype == np.float64
    assert_close(out, ref.forward(x), np.float64)


UNCOVERED_DTYPES = [np.float16, np.longdouble]


@pytest.mark.parametrize("dtype", UNCOVERED_DTYPES, ids=dtype_id)
def test_uncovered_dtypes_give_the_reference_result(dtype, rng):
    """float16 and long double go through the reference: same numbers, same dtype."""
    x = random_array(rng, (4, 6), dtype)
    dout = random_array(rng, (4, 6), dtype)
    for name in ("Relu", "Sigmoid"):
        fast, ref = pair(name)
        out = fast.forward(x)
        assert out.dtype == dtype
        assert_identical(out, ref.forward(x))
        assert_identical(fast.backward(dout), ref.backward(dout))

    W, b = random_array(rng, (6, 3), dtype), random_array(rng, (3,), dtype)
    fast, ref = pair("Affine", W, b)
    out = fast.forward(x)
    assert out.dtype == dtype
    assert_identical(out, ref.forward(x))
    d3 = random_array(rng, (4, 3), dtype)
    assert_identical(fast.backward(d3), ref.backward(d3))
    assert_identical(fast.dW, ref.dW)
    assert_identical(fast.db, ref.db)

    for t in (np.array([0, 5, 2, 1]), np.eye(6, dtype=dtype)[[0, 5, 2, 1]]):
        fast, ref = pair("SoftmaxWithLoss")
        assert fast.forward(x, t) == ref.forward(x, t)
        assert fast.y.dtype == dtype
        assert_identical(fast.y, ref.y)
        assert_identical(fast.backward(), ref.backward())


BAD_VALUES = {
    "object": np.array([[1.0, -2.0, 3.0]], dtype=object),
    "str": np.array([["a", "b", "c"]]),
    "complex": np.array([[1 + 1j, 2.0, -3.0]]),
}


@pytest.mark.parametrize("kind", sorted(BAD_VALUES))
@pytest.mark.parametrize("module", [fast_layers, ref_layers], ids=["compiled", "reference"])
def test_non_real_dtypes_raise_type_error_naming_the_dtype(module, kind):
    bad = BAD_VALUES[kind]
    dtype_name = str(bad.dtype)
    good = np.array([[1.0, -2.0, 3.0]])
    calls = {
        "Relu.forward": lambda: module.Relu().forward(bad),
        "Sigmoid.forward": lambda: module.Sigmoid().forward(bad),
        "Affine.forward": lambda: module.Affine(np.ones((3, 2)), np.zeros(2)).forward(bad),
        "Affine(W)": lambda: module.Affine(bad.reshape(3, 1), np.zeros(1)),
        "SoftmaxWithLoss.forward x": lambda: module.SoftmaxWithLoss().forward(bad, np.array([0])),
        "SoftmaxWithLoss.forward t": lambda: module.SoftmaxWithLoss().forward(good, bad),
    }
    for name, call in calls.items():
        with pytest.raises(TypeError) as info:
            call()
        assert dtype_name in str(info.value), (name, str(info.value))

    for name in ("Relu", "Sigmoid"):
        layer = getattr(module, name)()
        layer.forward(good)
        with pytest.raises(TypeError, match=dtype_name.replace("<", ".")):
            layer.backward(bad)
    affine = module.Affine(np.ones((3, 3)), np.zeros(3))
    affine.forward(good)
    with pytest.raises(TypeError, match=dtype_name.replace("<", ".")):
        affine.backward(bad)


@pytest.mark.parametrize("name", ["Relu", "Sigmoid", "Affine", "SoftmaxWithLoss"])
@pytest.mark.parametrize("module", [fast_layers, ref_layers], ids=["compiled", "reference"])
def test_backward_before_forward_raises(module, name):
    layer = (module.Affine(np.ones((2, 2)), np.zeros(2)) if name == "Affine"
             else getattr(module, name)())
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.ones((1, 2)))


@pytest.mark.parametrize("name", ["Relu", "Sigmoid", "Affine"])
def test_backward_shape_mismatch_raises_like_reference(name):
    def make(module):
        return (module.Affine(np.ones((3, 2)), np.zeros(2)) if name == "Affine"
                else getattr(module, name)())
    for module in (fast_layers, ref_layers):
        layer = make(module)
        layer.forward(np.ones((4, 3)))
        with pytest.raises(ValueError, match="dout: expected shape"):
            layer.backward(np.ones((4, 5)))


# ---------------------------------------------------------------------------
# Numerical gradient checks (float64, relative error <= 1e-7)
# ---------------------------------------------------------------------------
GRAD_TOL = 1e-7
MODULES = pytest.mark.parametrize("module", [fast_layers, ref_layers],
                                  ids=["compiled", "reference"])


@MODULES
def test_gradient_check_affine(module, rng):
    x = rng.standard_normal((4, 2, 3))
    W = rng.standard_normal((6, 5))
    b = rng.standard_normal(5)
    R = rng.standard_normal((4, 5))     # loss = sum(out * R): dout = R
    layer = module.Affine(W, b)

    def loss(_):
        return float(np.sum(layer.forward(x) * R))

    layer.forward(x)
    dx = layer.backward(R)
    assert rel_error(numerical_gradient(loss, x), dx) <= GRAD_TOL
    assert rel_error(numerical_gradient(loss, W), layer.dW) <= GRAD_TOL
    assert rel_error(numerical_gradient(loss, b), layer.db) <= GRAD_TOL


@MODULES
def test_gradient_check_sigmoid(module, rng):
    x = 3 * rng.standard_normal((5, 7))
    R = rng.standard_normal((5, 7))
    layer = module.Sigmoid()
    layer.forward(x)
    dx = layer.backward(R)
    num = numerical_gradient(lambda _: float(np.sum(layer.forward(x) * R)), x)
    assert rel_error(num, dx) <= GRAD_TOL


@MODULES
def test_gradient_check_relu_away_from_zero(module, rng):
    x = rng.standard_normal((5, 7))
    x += np.where(x >= 0, 0.1, -0.1)     # |x| >= 0.1 >> h
    R = rng.standard_normal((5, 7))
    layer = module.Relu()
    layer.forward(x)
    dx = layer.backward(R)
    num = numerical_gradient(lambda _: float(np.sum(layer.forward(x) * R)), x)
    assert rel_error(num, dx) <= GRAD_TOL
    assert (dx[x < 0] == 0).all() and (dx[x > 0] != 0).all()


@pytest.mark.parametrize("kind", ["labels", "one-hot"])
@MODULES
def test_gradient_check_softmax_with_loss(module, kind, rng):
    x = 2 * rng.standard_normal((6, 4))
    t = softmax_targets(rng, 6, 4, kind, np.float64)
    layer = module.SoftmaxWithLoss()
    layer.forward(x, t)
    dx = layer.backward()
    num = numerical_gradient(lambda _: layer.forward(x, t), x)
    assert rel_error(num, dx) <= GRAD_TOL


@MODULES
def test_gradient_check_two_layer_stack(module, rng):
    n, d, h, c = 5, 4, 6, 3
    x = rng.standard_normal((n, d))
    t = rng.integers(0, c, size=n)
    while True:     # draw until no ReLU input sits within reach of h of the kink at 0
        params = {"W1": rng.standard_normal((d, h)), "b1": 0.1 * rng.standard_normal(h),
                  "W2": rng.standard_normal((h, c)), "b2": 0.1 * rng.standard_normal(c)}
        if np.abs(x @ params["W1"] + params["b1"]).min() > 1e-2:
            break
    affine1 = module.Affine(params["W1"], params["b1"])
    relu = module.Relu()
    affine2 = module.Affine(params["W2"], params["b2"])
    last = module.SoftmaxWithLoss()

    def loss(_=None):
        return last.forward(affine2.forward(relu.forward(affine1.forward(x))), t)

    loss()
    dout = affine2.backward(last.backward())
    affine1.backward(relu.backward(dout))
    analytic = {"W1": affine1.dW, "b1": affine1.db, "W2": affine2.dW, "b2": affine2.db}
    for key, value in params.items():
        numeric = numerical_gradient(loss, value)
        assert rel_error(numeric, analytic[key]) <= GRAD_TOL, key
        assert np.abs(analytic[key]).max() > 1e-6, key     # a non-trivial gradient


# ---------------------------------------------------------------------------
# Non-native byte order ('>f8' on a little-endian machine): the kernels read
# native arrays only, so the layers convert first.  Same values as the
# reference on the native arrays; results in the native dtype.
# ---------------------------------------------------------------------------
def swapped(a):
    """``a``'s values stored in the other byte order."""
    return a.astype(a.dtype.newbyteorder())


def native(a):
    """``a`` in native byte order (the reference may keep '>f8'; fastbp gives '<f8')."""
    return a.astype(a.dtype.newbyteorder("="))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_non_native_byte_order_gives_the_reference_values(dtype, rng):
    x = random_array(rng, (5, 6), dtype, scale=3.0)
    dout = random_array(rng, (5, 6), dtype)
    assert swapped(x).dtype != x.dtype and np.array_equal(swapped(x), x)
    for name in ("Relu", "Sigmoid"):
        fast, ref = pair(name)
        assert_close(native(fast.forward(swapped(x))), ref.forward(x), dtype)
        assert_close(native(fast.backward(swapped(dout))), ref.backward(dout), dtype)

    x, W, b, dout = affine_problem(rng, 5, 6, 4, dtype)
    fast, ref = pair("Affine", swapped(W), swapped(b))
    ref.W, ref.b = W, b
    assert_close(native(fast.forward(swapped(x))), ref.forward(x), dtype, scale=gemm_scale(6, x, W))
    assert_close(native(fast.backward(swapped(dout))), ref.backward(dout), dtype,
                 scale=gemm_scale(4, dout, W))
    assert_close(native(fast.dW), ref.dW, dtype, scale=gemm_scale(5, x, dout))
    assert_close(native(fast.db), ref.db, dtype, scale=gemm_scale(5, 1.0, dout))

    logits = random_array(rng, (5, 4), dtype, scale=3.0)
    labels = np.array([0, 3, 2, 1, 3])
    for t in (labels, np.eye(4, dtype=dtype)[labels]):
        fast, ref = pair("SoftmaxWithLoss")
        assert_close(fast.forward(swapped(logits), swapped(t)), ref.forward(logits, t), dtype)
        assert_close(native(fast.y), ref.y, dtype)
        assert_close(native(fast.backward()), ref.backward(), dtype)


# ---------------------------------------------------------------------------
# Which path runs: kernels for float32/float64, the reference for the rest
# ---------------------------------------------------------------------------
class KernelCalled(Exception):
    pass


class PoisonedKernels:
    """Stands in for a compiled module: any compute-kernel call raises
    KernelCalled.  The compiled label-range check is validation, not a
    kernel on the data's dtype: it stays real."""

    def __getattr__(self, name):
        if name == "first_label_out_of_range":
            import fastbp._elementwise as real
            return real.first_label_out_of_range

        def kernel(*args, **kwargs):
            raise KernelCalled(name)
        return kernel


def run_every_layer(dtype, rng):
    x = random_array(rng, (4, 6), dtype)
    for name in ("Relu", "Sigmoid"):
        layer = getattr(fast_layers, name)()
        layer.forward(x)
        layer.backward(x)
    affine = fast_layers.Affine(random_array(rng, (6, 3), dtype), random_array(rng, (3,), dtype))
    affine.forward(x)
    affine.backward(random_array(rng, (4, 3), dtype))
    swl = fast_layers.SoftmaxWithLoss()
    swl.forward(x, np.arange(4))
    swl.backward()


@pytest.fixture
def poisoned_kernels(monkeypatch):
    import fastbp._backend as backend
    monkeypatch.setattr(backend, "elementwise", PoisonedKernels())
    monkeypatch.setattr(backend, "KERNELS", {np.dtype(dtype): PoisonedKernels()
                                             for dtype in (np.float32, np.float64)})
    return backend


@pytest.mark.parametrize("dtype", [np.float16, np.longdouble], ids=dtype_id)
def test_uncovered_dtypes_never_reach_a_kernel(dtype, poisoned_kernels, rng):
    run_every_layer(dtype, rng)          # would raise KernelCalled


@pytest.mark.parametrize("name", ["Relu", "Sigmoid", "Affine", "SoftmaxWithLoss"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_float32_and_float64_run_on_the_kernels(dtype, name, poisoned_kernels, rng):
    if not poisoned_kernels.COMPILED:
        pytest.skip("FASTBP_PURE=1: everything runs on the reference")
    x = random_array(rng, (4, 6), dtype)
    with pytest.raises(KernelCalled):
        if name == "Affine":
            fast_layers.Affine(random_array(rng, (6, 3), dtype),
                               random_array(rng, (3,), dtype)).forward(x)
        elif name == "SoftmaxWithLoss":
            fast_layers.SoftmaxWithLoss().forward(x, np.arange(4))
        else:
            getattr(fast_layers, name)().forward(x)
