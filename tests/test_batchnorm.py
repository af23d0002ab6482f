"""BatchNormalization (chapter 6), for fastbp.layers and fastbp.reference.layers.

float64 against the book's own class (bit for bit) and against the formulas;
float32 stays float32 within float32 rounding of the float64 result; 2-D and
4-D inputs, N = 1, odd sizes, C / F / strided / read-only arrays, hypothesis
values; numerical gradients of dx, dgamma and dbeta; running statistics;
bad input raises one clear error and changes nothing.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import fastbp.layers as fast_layers
import fastbp.reference.layers as ref_layers
from bookcode import load_book_layers, requires_book
from conftest import FLOAT_DTYPES, HYPOTHESIS, LAYOUTS, PURE, amax, assert_identical, \
    float_arrays, rel_error, with_layout
from fastbp.reference.gradient import numerical_gradient

LAYERS = pytest.mark.parametrize("L", [fast_layers, ref_layers], ids=["fastbp", "reference"])
DTYPES = pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
SHAPES = [(1, 1), (1, 7), (2, 1), (3, 7), (100, 33), (257, 5), (1, 3, 2, 2), (4, 3, 5, 7),
          (2, 1, 1, 1)]
STATE = ("input_shape", "running_mean", "running_var", "batch_size", "xc", "xn", "std",
         "dgamma", "dbeta")


def features(shape):
    return int(np.prod(shape[1:]))


def make_params(rng, shape, dtype):
    d = features(shape)
    return ((1 + 0.3 * rng.standard_normal(d)).astype(dtype),
            (0.5 * rng.standard_normal(d)).astype(dtype))


def batch(rng, shape, dtype, scale=2.0, shift=1.0):
    return (shift + scale * rng.standard_normal(shape)).astype(dtype)


def snapshot(layer):
    """Copies of the layer's public state, to compare after an error."""
    return {k: (v.copy() if isinstance(v, np.ndarray) else v)
            for k, v in vars(layer).items() if not k.startswith("_")}


def assert_state_equal(layer, before):
    after = snapshot(layer)
    assert after.keys() == before.keys()
    for key, value in before.items():
        if isinstance(value, np.ndarray):
            assert_identical(after[key], value)
        else:
            assert after[key] == value or (value != value and after[key] != after[key]), key


# ---------------------------------------------------------------------------
# The formulas, written out (float64 reference values for any dtype)
# ---------------------------------------------------------------------------
def expected_forward_train(x, gamma, beta, eps=1e-6):
    x = np.asarray(x, np.float64).reshape(x.shape[0], -1)
    mu = x.mean(axis=0)
    var = ((x - mu) ** 2).mean(axis=0)
    return gamma * (x - mu) / np.sqrt(var + eps) + beta, mu, var


def expected_backward(x, gamma, dout, eps=1e-6):
    """dx, dgamma, dbeta from the closed form of the batch-norm gradient."""
    x = np.asarray(x, np.float64).reshape(x.shape[0], -1)
    dout = np.asarray(dout, np.float64).reshape(x.shape)
    n = x.shape[0]
    mu = x.mean(axis=0)
    inv_std = 1 / np.sqrt(((x - mu) ** 2).mean(axis=0) + eps)
    xn = (x - mu) * inv_std
    dxn = dout * gamma
    dx = inv_std / n * (n * dxn - dxn.sum(axis=0) - xn * (dxn * xn).sum(axis=0))
    return dx, (dout * xn).sum(axis=0), dout.sum(axis=0)


# ---------------------------------------------------------------------------
# Against the book's own class: float64, bit for bit, every attribute
# ---------------------------------------------------------------------------
def assert_same_sums(got, want, exact):
    """Bit for bit when ``exact``; else equal but for the order of additions
    in the column sums (a few ulp of the largest term, magnified by 1/std in
    x - mu and by the cancellation in dx = dxc - mean(dxc))."""
    if exact:
        assert_identical(got, want)
    else:
        got, want = np.asarray(got), np.asarray(want)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * (1 + amax(want)))


@requires_book
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@LAYERS
def test_float64_is_the_books_class_bit_for_bit(L, shape, layout, rng):
    """The reference always; the compiled layer wherever NumPy adds the rows
    of a column in order, which it does for C-contiguous and strided batches.
    An F-ordered batch NumPy sums pairwise, column by column; the compiled
    layer reads it as a C-ordered copy: the same within 1e-12."""
    book = load_book_layers()
    exact = L is ref_layers or PURE or layout != "F" or shape[0] < 8
    gamma, beta = make_params(rng, shape, np.float64)
    ours = L.BatchNormalization(gamma, beta, momentum=0.8)
    theirs = book.BatchNormalization(gamma.copy(), beta.copy(), momentum=0.8)
    for step in range(3):
        x = batch(rng, shape, np.float64)
        dout = rng.standard_normal(shape)
        x_in, dout_in = with_layout(x, layout), with_layout(dout, layout)
        # the same layout for the book: NumPy's sums add in memory order
        assert_same_sums(ours.forward(x_in), theirs.forward(with_layout(x, layout)), exact)
        assert_same_sums(ours.backward(dout_in), theirs.backward(with_layout(dout, layout)),
                         exact)
        for name in STATE:
            if name == "batch_size":
                assert ours.batch_size == theirs.batch_size
            else:
                assert_same_sums(getattr(ours, name), getattr(theirs, name), exact)
        assert ours.batch_size == shape[0] and type(ours.batch_size) is int
        assert ours.xc.shape == ours.xn.shape == (shape[0], features(shape))
        # the optimizer's in-place step reaches both through their references
        for p, q, g in ((gamma, theirs.gamma, ours.dgamma), (beta, theirs.beta, ours.dbeta)):
            p -= 0.1 * g
            q -= 0.1 * g
        x_test = batch(rng, shape, np.float64)
        assert_same_sums(ours.forward(with_layout(x_test, layout), train_flg=False),
                         theirs.forward(with_layout(x_test, layout), train_flg=False), exact)
        assert ours.input_shape == theirs.input_shape == shape
        assert_identical(x_in, with_layout(x, layout))        # inputs untouched
        assert_identical(dout_in, with_layout(dout, layout))


# Batches whose arrays are 2 MiB and more take the AVX-512 loops that write
# xc, xn, out and dx in streaming stores; the shapes leave a remainder of rows
# after the loops' groups of four, a last block of columns narrower than the
# others and a row not a whole number of vectors.
LARGE = [(np.float64, (103, 2601)), (np.float64, (1, 270001)), (np.float64, (5, 16, 60, 61)),
         (np.float32, (103, 5101)), (np.float32, (6, 16, 80, 71))]


@pytest.mark.skipif(PURE, reason="FASTBP_PURE=1: the layer is the reference")
@pytest.mark.parametrize("dtype, shape", LARGE, ids=lambda v: getattr(v, "__name__", str(v)))
def test_batches_of_megabytes_equal_the_reference_bit_for_bit(dtype, shape, rng):
    assert shape[0] * features(shape) * np.dtype(dtype).itemsize >= 1 << 21
    gamma, beta = make_params(rng, shape, dtype)
    fast = fast_layers.BatchNormalization(gamma, beta, momentum=0.8)
    ref = ref_layers.BatchNormalization(gamma.copy(), beta.copy(), momentum=0.8)
    for step in range(2):
        x = batch(rng, shape, dtype)
        dout = rng.standard_normal(shape).astype(dtype)
        assert_identical(fast.forward(x), ref.forward(x))
        assert_identical(fast.backward(dout), ref.backward(dout))
        for name in STATE:
            if name != "batch_size":
                assert_identical(getattr(fast, name), getattr(ref, name))


@requires_book
@LAYERS
def test_test_mode_before_any_training_matches_the_book(L, rng):
    book = load_book_layers()
    gamma, beta = make_params(rng, (5, 6), np.float64)
    ours = L.BatchNormalization(gamma, beta)
    theirs = book.BatchNormalization(gamma, beta)
    x = batch(rng, (5, 6), np.float64)
    assert_identical(ours.forward(x, train_flg=False), theirs.forward(x, train_flg=False))
    assert_identical(ours.running_mean, theirs.running_mean)   # created as zeros
    assert_identical(ours.running_var, theirs.running_var)


# ---------------------------------------------------------------------------
# Values (any dtype) against the formulas; float32 stays float32
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@DTYPES
@LAYERS
def test_forward_backward_values_and_dtypes(L, dtype, shape, layout, rng):
    tol = {np.float32: 2e-4, np.float64: 1e-11}[dtype]
    gamma, beta = make_params(rng, shape, dtype)
    x = batch(rng, shape, dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    layer = L.BatchNormalization(gamma, beta, momentum=0.7)
    out = layer.forward(with_layout(x, layout))
    assert out.shape == shape and out.dtype == dtype
    want, mu, var = expected_forward_train(x, gamma.astype(np.float64), beta.astype(np.float64))
    np.testing.assert_allclose(out.reshape(want.shape), want, rtol=tol, atol=tol)
    for name in ("xc", "xn", "std", "running_mean", "running_var"):
        assert getattr(layer, name).dtype == dtype, name
    np.testing.assert_allclose(layer.running_mean, 0.3 * mu, rtol=tol, atol=tol)
    np.testing.assert_allclose(layer.running_var, 0.3 * var, rtol=tol, atol=tol)

    dx = layer.backward(with_layout(dout, layout))
    assert dx.shape == shape and dx.dtype == dtype
    want_dx, want_dgamma, want_dbeta = expected_backward(x, gamma.astype(np.float64), dout)
    scale = 1 + np.abs(want_dx).max()
    np.testing.assert_allclose(dx.reshape(want_dx.shape), want_dx, rtol=tol,
                               atol=tol * scale * max(1, shape[0]) ** 0.5)
    for got, want_g in ((layer.dgamma, want_dgamma), (layer.dbeta, want_dbeta)):
        assert got.dtype == dtype and got.shape == (features(shape),)
        np.testing.assert_allclose(got, want_g, rtol=tol, atol=tol * max(1, shape[0]))

    test_out = layer.forward(with_layout(x, layout), train_flg=False)
    assert test_out.dtype == dtype            # float32 running statistics: no float64 drift
    want_test = (gamma * (x.reshape(shape[0], -1) - layer.running_mean)
                 / np.sqrt(layer.running_var + np.float64(1e-6)) + beta)
    np.testing.assert_allclose(test_out.reshape(want_test.shape), want_test,
                               rtol=tol, atol=tol * 10)


@LAYERS
def test_an_empty_batch_works_in_test_mode(L):
    layer = L.BatchNormalization(np.ones(4), np.zeros(4))
    out = layer.forward(np.ones((0, 4)), train_flg=False)
    assert out.shape == (0, 4)


@pytest.mark.parametrize("dtype", [np.int64, np.uint8, np.bool_])
@LAYERS
def test_integer_inputs_compute_in_float64(L, dtype, rng):
    x = rng.integers(0, 2, size=(6, 4)).astype(dtype)
    layer = L.BatchNormalization(np.ones(4), np.zeros(4))
    out = layer.forward(x)
    assert out.dtype == np.float64 and layer.running_mean.dtype == np.float64
    want, _, _ = expected_forward_train(x, np.ones(4), np.zeros(4))
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)


@DTYPES
@LAYERS
@HYPOTHESIS
@given(data=st.data(), four_d=st.booleans(), momentum=st.floats(0, 1))
def test_hypothesis_values(L, dtype, data, four_d, momentum):
    shape = data.draw(st.tuples(st.integers(1, 6), st.integers(1, 4), st.integers(1, 3),
                                st.integers(1, 3)) if four_d else
                      st.tuples(st.integers(1, 9), st.integers(1, 9)))
    x = data.draw(float_arrays(dtype, shape, -100, 100))
    dout = data.draw(float_arrays(dtype, shape, -10, 10))
    gamma = data.draw(float_arrays(dtype, (features(shape),), -3, 3))
    beta = data.draw(float_arrays(dtype, (features(shape),), -3, 3))
    layer = L.BatchNormalization(gamma, beta, momentum)
    out = layer.forward(x)
    dx = layer.backward(dout)
    assert out.dtype == dx.dtype == dtype and out.shape == dx.shape == shape
    assert np.isfinite(out).all() and np.isfinite(dx).all()
    # rounding in x - mu is amplified by 1/std: the tolerances scale with the
    # conditioning max|x| / std (std >= 1e-3, the book's epsilon)
    eps = {np.float32: 1e-6, np.float64: 1e-14}[dtype] * shape[0]
    x64 = x.reshape(shape[0], -1).astype(np.float64)
    std = np.sqrt(x64.var(axis=0) + 1e-6)
    condition = 1 + np.abs(x64).max() / std.min()
    g_max, b_max, d_max = (float(np.abs(a).max()) for a in (gamma, beta, dout))
    # results near zero are rounded to the dtype's subnormal spacing at least
    # (hypothesis finds douts of 1e-45: their products are below float32's range)
    floor = 8 * shape[0] * float(np.finfo(dtype).smallest_subnormal)
    want, _, _ = expected_forward_train(x, gamma.astype(np.float64), beta.astype(np.float64))
    np.testing.assert_allclose(out.reshape(want.shape), want, rtol=0,
                               atol=eps * (1 + g_max * condition + b_max) + floor)
    want_dx, want_dgamma, want_dbeta = expected_backward(x, gamma.astype(np.float64), dout)
    np.testing.assert_allclose(dx.reshape(want_dx.shape), want_dx, rtol=0,
                               atol=eps * g_max * d_max / std.min() * condition * shape[0] + floor)
    np.testing.assert_allclose(layer.dgamma, want_dgamma, rtol=0,
                               atol=eps * d_max * condition * shape[0] + floor)
    np.testing.assert_allclose(layer.dbeta, want_dbeta, rtol=0,
                               atol=eps * d_max * shape[0] + floor)


# ---------------------------------------------------------------------------
# Numerical gradients: dx, dgamma, dbeta
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(3, 3), (5, 4), (10, 7), (3, 2, 3, 2), (1, 4)], ids=str)
@LAYERS
def test_backward_matches_the_numerical_gradient(L, shape, rng):
    gamma, beta = make_params(rng, shape, np.float64)
    x = batch(rng, shape, np.float64)
    weights = rng.standard_normal(shape)        # loss = sum(out * weights): dout = weights
    layer = L.BatchNormalization(gamma, beta)

    def loss(_):
        return float(np.sum(layer.forward(x) * weights))

    layer.forward(x)
    dx = layer.backward(weights)
    dgamma, dbeta = layer.dgamma.copy(), layer.dbeta.copy()
    num_dx = numerical_gradient(loss, x)
    num_dgamma = numerical_gradient(loss, gamma)
    num_dbeta = numerical_gradient(loss, beta)
    assert rel_error(dgamma, num_dgamma) <= 1e-7
    assert rel_error(dbeta, num_dbeta) <= 1e-7
    if shape[0] == 1:      # one sample: xn = 0 whatever x, and dx is 0
        assert np.abs(dx).max() < 1e-12 and np.abs(num_dx).max() < 1e-6
    else:
        assert rel_error(dx, num_dx) <= 1e-7


# ---------------------------------------------------------------------------
# Running statistics, references, the book's attribute behaviour
# ---------------------------------------------------------------------------
def swapped(a):
    """``a``'s values stored in the other byte order ('>f8' on a little-endian machine)."""
    return a.astype(a.dtype.newbyteorder())


@pytest.mark.parametrize("which", ["gamma", "beta", "running_mean", "running_var", "x", "dout"])
@DTYPES
@LAYERS
def test_arrays_in_the_other_byte_order_give_the_same_values(L, dtype, which, rng):
    # The type number of '>f8' is float64's: the kernels must check the byte
    # order too, or they read the swapped bytes as numbers.
    shape = (6, 5)
    gamma, beta = make_params(rng, shape, dtype)
    stats = {"running_mean": rng.standard_normal(5).astype(dtype),
             "running_var": (rng.random(5) + 0.5).astype(dtype)}
    x, dout = batch(rng, shape, dtype), rng.standard_normal(shape).astype(dtype)
    arrays = {"gamma": gamma, "beta": beta, **stats, "x": x, "dout": dout}
    other = {k: swapped(v) if k == which else v.copy() for k, v in arrays.items()}
    assert np.array_equal(other[which], arrays[which]) and other[which].dtype != dtype

    def run(a):
        layer = L.BatchNormalization(a["gamma"], a["beta"], 0.9, a["running_mean"],
                                     a["running_var"])
        test_out = layer.forward(a["x"], train_flg=False)
        out = layer.forward(a["x"])
        dx = layer.backward(a["dout"])
        return test_out, out, dx, layer.running_mean, layer.running_var, layer.dgamma, \
            layer.dbeta

    tol = {np.float32: 1e-6, np.float64: 1e-14}[dtype]
    for got, want in zip(run(other), run(arrays)):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@LAYERS
def test_running_statistics_are_new_arrays_and_the_callers_stay_untouched(L, rng):
    mean0, var0 = rng.standard_normal(3), rng.random(3) + 0.5
    layer = L.BatchNormalization(np.ones(3), np.zeros(3), 0.9, mean0.copy(), var0.copy())
    given_mean = layer.running_mean
    x = batch(rng, (8, 3), np.float64)
    layer.forward(x)
    assert layer.running_mean is not given_mean
    assert_identical(given_mean, mean0)
    np.testing.assert_allclose(layer.running_mean, 0.9 * mean0 + 0.1 * x.mean(0), rtol=1e-14)
    np.testing.assert_allclose(layer.running_var, 0.9 * var0 + 0.1 * x.var(0), rtol=1e-13)
    seen = layer.running_mean
    layer.forward(x, train_flg=False)
    assert layer.running_mean is seen                 # test mode doesn't move them


@LAYERS
def test_gamma_and_beta_are_read_at_every_call(L, rng):
    gamma, beta = np.ones(4), np.zeros(4)
    layer = L.BatchNormalization(gamma, beta)
    x = batch(rng, (6, 4), np.float64)
    first = layer.forward(x)
    gamma *= 2
    beta += 1
    np.testing.assert_allclose(layer.forward(x), 2 * first + 1, rtol=1e-14)
    assert layer.gamma is gamma and layer.beta is beta
    gamma[:] = 3
    dout = rng.standard_normal((6, 4))
    dx3 = layer.backward(dout)
    gamma[:] = 1
    np.testing.assert_allclose(dx3, 3 * layer.backward(dout), rtol=1e-12, atol=1e-14)


@LAYERS
def test_backward_uses_the_last_training_forward(L, rng):
    layer = L.BatchNormalization(np.ones(12), np.zeros(12))
    x = batch(rng, (5, 3, 2, 2), np.float64)
    layer.forward(x)
    dout = rng.standard_normal(x.shape)
    dx = layer.backward(dout)
    layer.forward(batch(rng, (2, 12), np.float64), train_flg=False)   # another shape
    assert layer.input_shape == (2, 12)
    assert_identical(layer.backward(dout), dx)
    with pytest.raises(ValueError, match=r"dout: expected shape \(5, 3, 2, 2\), got \(2, 12\)"):
        layer.backward(np.ones((2, 12)))


@pytest.mark.parametrize("new_beta", [None, np.zeros(5), "b"], ids=["None", "wrong length",
                                                                      "a string"])
@LAYERS
def test_backward_reads_gamma_and_never_beta(L, new_beta, rng):
    # backward's formulas have no beta: whatever replaced it, backward gives
    # what it gave before (and the compiled path agrees with the reference),
    # while a gamma of the wrong length is refused
    layer = trained_layer(L, rng)
    dout = rng.standard_normal((4, 6))
    want = layer.backward(dout)
    layer.beta = new_beta
    assert_identical(layer.backward(dout), want)
    layer.gamma = np.ones(5)
    with pytest.raises(ValueError, match=r"gamma: expected shape \(6,\) for x of shape "
                                         r"\(4, 6\) \(one per feature\), got \(5,\)"):
        layer.backward(dout)


@LAYERS
def test_attributes_after_init_are_the_books(L):
    gamma, beta = np.ones(3), np.zeros(3)
    layer = L.BatchNormalization(gamma, beta)
    assert layer.gamma is gamma and layer.beta is beta and layer.momentum == 0.9
    for name in STATE:
        assert getattr(layer, name) is None, name


# ---------------------------------------------------------------------------
# Bad input: one clear error, nothing changed (running statistics included)
# ---------------------------------------------------------------------------
def trained_layer(L, rng, d=6):
    layer = L.BatchNormalization(np.ones(d), np.zeros(d))
    layer.forward(batch(rng, (4, d), np.float64))
    layer.backward(np.ones((4, d)))
    return layer


@pytest.mark.parametrize("shape", [(6,), (4, 6, 1), (4, 1, 6, 1, 1), ()], ids=str)
@pytest.mark.parametrize("train_flg", [True, False])
@LAYERS
def test_x_of_the_wrong_number_of_dimensions(L, shape, train_flg, rng):
    layer = trained_layer(L, rng)
    before = snapshot(layer)
    with pytest.raises(ValueError, match=r"x: expected a 2-D batch \(N, D\) or a 4-D batch "
                                         r"\(N, C, H, W\), got shape " + repr(shape)
                       .replace("(", r"\(").replace(")", r"\)")):
        layer.forward(np.ones(shape), train_flg)
    assert_state_equal(layer, before)


@pytest.mark.parametrize("x_shape,message", [
    ((4, 5), r"gamma: expected shape \(5,\) for x of shape \(4, 5\) \(one per feature\), "
             r"got \(6,\)"),
    ((4, 3, 1, 1), r"gamma: expected shape \(3,\) for x of shape \(4, 3, 1, 1\) \(C\*H\*W = "
                   r"3\*1\*1: one per \(c, h, w\) position.*got \(6,\)"),
    ((2, 6, 2, 2), r"gamma: expected shape \(24,\) .*got \(6,\)"),
])
@pytest.mark.parametrize("train_flg", [True, False])
@LAYERS
def test_gamma_of_the_wrong_length_for_x(L, x_shape, message, train_flg, rng):
    layer = trained_layer(L, rng)
    before = snapshot(layer)
    with pytest.raises(ValueError, match=message):
        layer.forward(np.ones(x_shape), train_flg)
    assert_state_equal(layer, before)


@LAYERS
def test_gamma_and_beta_checked_at_construction_and_when_replaced(L, rng):
    with pytest.raises(ValueError, match=r"beta: expected shape \(4,\) to match gamma, got "
                                         r"\(3,\)"):
        L.BatchNormalization(np.ones(4), np.zeros(3))
    with pytest.raises(ValueError, match=r"gamma: expected a 1-D array .*got shape \(\)"):
        L.BatchNormalization(1.0, 0.0)
    with pytest.raises(ValueError, match=r"gamma: expected a 1-D array .*got shape \(2, 3\)"):
        L.BatchNormalization(np.ones((2, 3)), np.zeros((2, 3)))
    with pytest.raises(TypeError, match="gamma: expected a real numeric"):
        L.BatchNormalization(np.array(["a"]), np.zeros(1))
    layer = trained_layer(L, rng)
    layer.beta = np.zeros(5)                   # replaced by the caller with a wrong length
    before = snapshot(layer)
    with pytest.raises(ValueError, match=r"beta: expected shape \(6,\) to match gamma"):
        layer.forward(np.ones((4, 6)))
    assert_state_equal(layer, before)


@pytest.mark.parametrize("bad", [np.ones((4, 5)), np.ones(24), np.ones((4, 6, 1)),
                                 np.ones((6, 4))], ids=lambda a: str(a.shape))
@LAYERS
def test_dout_of_the_wrong_shape(L, bad, rng):
    layer = trained_layer(L, rng)
    before = snapshot(layer)
    with pytest.raises(ValueError, match=r"dout: expected shape \(4, 6\), got"):
        layer.backward(bad)
    assert_state_equal(layer, before)


@LAYERS
def test_backward_before_a_training_forward(L, rng):
    layer = L.BatchNormalization(np.ones(3), np.zeros(3))
    with pytest.raises(RuntimeError, match=r"BatchNormalization\.backward called before a "
                                           "training-mode forward"):
        layer.backward(np.ones((2, 3)))
    layer.forward(np.ones((2, 3)), train_flg=False)
    with pytest.raises(RuntimeError, match="training-mode forward"):
        layer.backward(np.ones((2, 3)))


@LAYERS
def test_empty_batch_in_training_mode(L, rng):
    layer = trained_layer(L, rng)
    before = snapshot(layer)
    with pytest.raises(ValueError, match=r"x: expected at least one sample in training mode"):
        layer.forward(np.ones((0, 6)))
    assert_state_equal(layer, before)


@LAYERS
def test_running_statistics_of_the_wrong_shape(L, rng):
    with pytest.raises(ValueError, match=r"running_mean: expected shape \(3,\).*got \(4,\)"):
        L.BatchNormalization(np.ones(3), np.zeros(3), running_mean=np.zeros(4))
    with pytest.raises(ValueError, match=r"running_var: expected shape \(3,\).*got \(3, 1\)"):
        L.BatchNormalization(np.ones(3), np.zeros(3), running_var=np.zeros((3, 1)))
    layer = trained_layer(L, rng)
    layer.running_var = np.ones(5)
    before = snapshot(layer)
    for train_flg in (True, False):
        with pytest.raises(ValueError, match=r"running_var: expected shape \(6,\)"):
            layer.forward(np.ones((4, 6)), train_flg)
    assert_state_equal(layer, before)


@pytest.mark.parametrize("momentum", [-0.1, 1.5, np.nan, "0.9", None])
@LAYERS
def test_momentum_outside_zero_one(L, momentum, rng):
    with pytest.raises(ValueError, match=r"momentum: expected a number in \[0, 1\], got"):
        L.BatchNormalization(np.ones(2), np.zeros(2), momentum)
    layer = trained_layer(L, rng)
    layer.momentum = momentum
    before = snapshot(layer)
    with pytest.raises(ValueError, match="momentum: expected"):
        layer.forward(np.ones((4, 6)))
    assert_state_equal(layer, before)


@pytest.mark.parametrize("bad", [np.array([["a", "b"]]), np.ones((2, 2), complex)],
                         ids=["str", "complex"])
@LAYERS
def test_non_numeric_x_and_dout(L, bad, rng):
    layer = L.BatchNormalization(np.ones(2), np.zeros(2))
    with pytest.raises(TypeError, match="x: expected a real numeric"):
        layer.forward(bad)
    assert layer.running_mean is None and layer.input_shape is None
    layer.forward(np.ones(bad.shape))
    with pytest.raises(TypeError, match="dout: expected a real numeric"):
        layer.backward(bad)


@pytest.mark.skipif(PURE, reason="FASTBP_PURE=1: the layer is the reference")
@pytest.mark.parametrize("shape", [(64, 600), (16, 3, 40, 40)], ids=str)
def test_arrays_are_written_again_only_when_nobody_else_holds_them(shape, rng):
    # out, dx, xc and xn (as large as x: 256 KiB and more) are written again on
    # the next call when the caller has dropped them: no fresh pages to fault
    # in.  An array
    # the caller keeps, or keeps a view of, is never touched again, and every
    # result is the reference's.
    fast, ref = fast_layers.BatchNormalization(*make_params(rng, shape, np.float64)), None
    ref = ref_layers.BatchNormalization(fast.gamma, fast.beta)

    def step(scale):
        x = batch(rng, shape, np.float64, scale=scale)
        dout = rng.standard_normal(shape)
        results = fast.forward(x), fast.backward(dout)
        assert_identical(results[0], ref.forward(x))
        assert_identical(results[1], ref.backward(dout))
        for name in ("xc", "xn", "std", "running_mean", "running_var", "dgamma", "dbeta"):
            assert_identical(getattr(fast, name), getattr(ref, name))
        return results

    step(1.0)
    first = [id(a) for a in (fast._out_buffer, fast._dx_buffer, fast.xc, fast.xn)]
    step(2.0)                                              # all dropped: written again
    assert [id(a) for a in (fast._out_buffer, fast._dx_buffer, fast.xc, fast.xn)] == first
    out, dx = step(3.0)                                    # kept by the caller
    xc, xn_view = fast.xc, fast.xn[1:]
    kept = [a.copy() for a in (out, dx, xc, xn_view)]
    step(4.0)
    for array, values in zip((out, dx, xc, xn_view), kept):
        assert_identical(array, values)
    assert fast.xc is not xc and not np.shares_memory(fast.xn, xn_view)
