"""Direct tests of the compiled kernels (fastbp._affine, fastbp._elementwise).

The kernels take caller-allocated outputs and trust their inputs, so these
tests build exactly the arrays the layer code hands them.
"""
import numpy as np
import pytest

from conftest import PURE
import fastbp.reference.functions as ref_functions

if PURE:   # a pure run may have no build at all; with a build, test the kernels anyway
    _affine = pytest.importorskip("fastbp._affine")
    _elementwise = pytest.importorskip("fastbp._elementwise")
else:
    from fastbp import _affine, _elementwise

DTYPES = (np.float32, np.float64)
# Relative tolerance per dtype of a GEMM result, times inner size * max|a| * max|b|.
GEMM_TOL = {np.dtype(np.float32): 2e-6, np.dtype(np.float64): 1e-14}


def dtype_id(dtype):
    return np.dtype(dtype).name


def layout(a, order):
    return np.asfortranarray(a) if order == "F" else np.ascontiguousarray(a)


def assert_gemm_close(actual, expected, dtype, inner, *operands):
    assert actual.dtype == np.dtype(dtype)
    scale = max(1.0, inner) * np.prod([max(1.0, float(np.abs(o).max(initial=0)))
                                       for o in operands])
    np.testing.assert_allclose(actual, expected, rtol=GEMM_TOL[np.dtype(dtype)],
                               atol=GEMM_TOL[np.dtype(dtype)] * scale)


def exact_sigmoid(x):
    """Sigmoid in float64 NumPy (np.exp): the accuracy yardstick."""
    x = np.asarray(x, dtype=np.float64)
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + z), z / (1 + z))


def run_sigmoid(x):
    out = np.full_like(x, 7.0)
    _elementwise.sigmoid_forward(x, out)
    return out


# ---------------------------------------------------------------------------
# _affine
# ---------------------------------------------------------------------------
AFFINE_SIZES = [(1, 1, 1), (3, 7, 5), (33, 257, 7), (2, 1, 3), (5, 3, 1), (1, 33, 257)]


@pytest.mark.parametrize("w_order", "CF")
@pytest.mark.parametrize("x_order", "CF")
@pytest.mark.parametrize("ndm", AFFINE_SIZES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_affine_forward_against_numpy(dtype, ndm, x_order, w_order, rng):
    n, d, m = ndm
    x = layout(rng.standard_normal((n, d)).astype(dtype), x_order)
    W = layout(rng.standard_normal((d, m)).astype(dtype), w_order)
    b = rng.standard_normal(m).astype(dtype)
    out = np.full((n, m), np.nan, dtype=dtype)
    assert _affine.affine_forward(x, W, b, out) is out
    expected = x.astype(np.float64) @ W.astype(np.float64) + b
    assert_gemm_close(out, expected, dtype, d, x, W)


ALPHA_BETA = [(1.0, 0.0), (-0.1, 1.0), (0.5, 2.0), (2.0, -1.0), (0.0, 1.0)]


@pytest.mark.parametrize("alpha,beta", ALPHA_BETA, ids=str)
@pytest.mark.parametrize("wt_order", "CF")
@pytest.mark.parametrize("xt_order", "CF")
@pytest.mark.parametrize("ndm", AFFINE_SIZES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_affine_backward_against_numpy(dtype, ndm, xt_order, wt_order, alpha, beta, rng):
    n, d, m = ndm
    dout = rng.standard_normal((n, m)).astype(dtype)
    xT = layout(rng.standard_normal((d, n)).astype(dtype), xt_order)
    WT = layout(rng.standard_normal((m, d)).astype(dtype), wt_order)
    dx = np.full((n, d), np.nan, dtype=dtype)          # written, never read
    dW0 = rng.standard_normal((d, m)).astype(dtype)
    db0 = rng.standard_normal(m).astype(dtype)
    if beta == 0:                                      # beta = 0: old values must not be read
        dW0[:] = np.nan
        db0[:] = np.nan
    dW, db = dW0.copy(), db0.copy()
    _affine.affine_backward(dout, xT, WT, dx, dW, db, alpha, beta, bias_beta=beta)

    d64, x64, w64 = (a.astype(np.float64) for a in (dout, xT, WT))
    old_w = 0.0 if beta == 0 else beta * dW0.astype(np.float64)
    old_b = 0.0 if beta == 0 else beta * db0.astype(np.float64)
    assert_gemm_close(dx, d64 @ w64, dtype, m, dout, WT)
    assert_gemm_close(dW, alpha * (x64 @ d64) + old_w, dtype, n, xT, dout, 1 + abs(beta) * dW0)
    assert_gemm_close(db, alpha * d64.sum(axis=0) + old_b, dtype, n, dout, 1 + abs(beta) * db0)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_affine_backward_fused_sgd_step_in_place(dtype, rng):
    """alpha = -lr, beta = 1 with dW, db the parameters: W -= lr * x.T @ dout."""
    n, d, m, lr = 9, 13, 5, 0.1
    x = rng.standard_normal((n, d)).astype(dtype)
    W = rng.standard_normal((d, m)).astype(dtype)
    b = rng.standard_normal(m).astype(dtype)
    dout = rng.standard_normal((n, m)).astype(dtype)
    W_old, b_old = W.copy(), b.copy()
    dx = np.empty((n, d), dtype=dtype)
    _affine.affine_backward(dout, x.T, W.T, dx, W, b, -lr, 1.0, bias_beta=1.0)
    d64, x64 = dout.astype(np.float64), x.astype(np.float64)
    # dx comes from the weights before the update
    assert_gemm_close(dx, d64 @ W_old.astype(np.float64).T, dtype, m, dout, W_old)
    assert_gemm_close(W, W_old - lr * (x64.T @ d64), dtype, n, x, dout, W_old)
    assert_gemm_close(b, b_old - lr * d64.sum(axis=0), dtype, n, dout, b_old)
    assert not np.allclose(W, W_old)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_affine_backward_weight_decay_betas_apart(dtype, rng):
    """beta (for dW) and bias_beta (for db) are independent: beta = 1 - lr * lambda
    decays the weights, bias_beta = 1 leaves the bias undecayed."""
    n, d, m, lr, lam = 6, 4, 3, 0.1, 0.5
    x = rng.standard_normal((n, d)).astype(dtype)
    W = rng.standard_normal((d, m)).astype(dtype)
    b = rng.standard_normal(m).astype(dtype)
    dout = rng.standard_normal((n, m)).astype(dtype)
    W_old, b_old = W.astype(np.float64), b.astype(np.float64)
    d64, x64 = dout.astype(np.float64), x.astype(np.float64)
    _affine.affine_backward(dout, x.T, W.T, np.empty((n, d), dtype), W, b,
                            -lr, 1 - lr * lam, False, 1.0)
    assert_gemm_close(W, (1 - lr * lam) * W_old - lr * (x64.T @ d64), dtype, n, x, dout, W_old)
    assert_gemm_close(b, b_old - lr * d64.sum(axis=0), dtype, n, dout, b_old)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_affine_backward_without_dx_leaves_dx_alone(dtype, rng):
    dout = rng.standard_normal((4, 3)).astype(dtype)
    xT = rng.standard_normal((5, 4)).astype(dtype)
    WT = rng.standard_normal((3, 5)).astype(dtype)
    dx = np.full((4, 5), 42.0, dtype=dtype)
    dW, db = np.empty((5, 3), dtype), np.empty(3, dtype)
    _affine.affine_backward(dout, xT, WT, dx, dW, db, compute_dx=False)
    assert (dx == 42).all()
    assert_gemm_close(dW, xT.astype(np.float64) @ dout, dtype, 4, xT, dout)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_affine_bias_gradient_wider_than_one_block(dtype, rng):
    """db is summed in blocks of 256 columns: 257 and 600 cross block edges."""
    for m in (255, 256, 257, 600):
        dout = rng.standard_normal((7, m)).astype(dtype)
        dx, dW, db = np.empty((7, 2), dtype), np.empty((2, m), dtype), np.empty(m, dtype)
        xT, WT = np.ones((2, 7), dtype), np.ones((m, 2), dtype)
        _affine.affine_backward(dout, xT, WT, dx, dW, db)
        assert_gemm_close(db, dout.astype(np.float64).sum(axis=0), dtype, 7, dout)
        assert_gemm_close(dW[0], dout.astype(np.float64).sum(axis=0), dtype, 7, dout)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_affine_forward_zero_inner_size(dtype, rng):
    """D = 0 (k = 0 for the GEMM): out is just the bias."""
    b = rng.standard_normal(4).astype(dtype)
    out = np.full((3, 4), np.nan, dtype=dtype)
    _affine.affine_forward(np.empty((3, 0), dtype), np.empty((0, 4), dtype), b, out)
    np.testing.assert_array_equal(out, np.broadcast_to(b, (3, 4)))


@pytest.mark.parametrize("beta", [0.0, 1.0, 0.5])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_affine_backward_empty_batch(dtype, beta, rng):
    """N = 0 (k = 0 for dW's GEMM): dW = beta * dW and db = beta * db."""
    d, m = 5, 3
    dW0 = rng.standard_normal((d, m)).astype(dtype)
    db0 = rng.standard_normal(m).astype(dtype)
    if beta == 0:
        dW0[:] = np.nan
        db0[:] = np.nan
    dW, db = dW0.copy(), db0.copy()
    dx = np.empty((0, d), dtype)
    _affine.affine_backward(np.empty((0, m), dtype), np.empty((d, 0), dtype),
                            np.ones((m, d), dtype), dx, dW, db, 0.3, beta, bias_beta=beta)
    if beta == 0:
        assert (dW == 0).all() and (db == 0).all()
    else:
        np.testing.assert_allclose(dW, beta * dW0, rtol=1e-6)
        np.testing.assert_allclose(db, beta * db0, rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_affine_backward_zero_features(dtype, rng):
    """D = 0: dx and dW are empty, db is still the column sums."""
    dout = rng.standard_normal((4, 3)).astype(dtype)
    db = np.full(3, np.nan, dtype)
    _affine.affine_backward(dout, np.empty((0, 4), dtype), np.empty((3, 0), dtype),
                            np.empty((4, 0), dtype), np.empty((0, 3), dtype), db)
    assert_gemm_close(db, dout.astype(np.float64).sum(axis=0), dtype, 4, dout)


# ---------------------------------------------------------------------------
# _elementwise: sigmoid accuracy
# ---------------------------------------------------------------------------
F64_SPECIALS = [0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, -2.2e-308,
                1e-300, -1e-300, 1.0, -1.0, -700.0, -708.5, -709.0, -744.0, -745.0,
                -745.1, -745.2, -746.0, -750.0, 745.0, 746.0, 710.0, -710.0,
                1e308, -1e308, np.finfo(np.float64).max, -np.finfo(np.float64).max,
                np.inf, -np.inf, np.nan, -np.nan]
F32_SPECIALS = [0.0, -0.0, 1e-45, -1e-45, 1.1754944e-38, -1.1754944e-38, 1.0, -1.0,
                -80.0, -87.0, -87.5, -88.0, -90.0, -100.0, -103.0, -103.9, -104.0,
                -104.1, -105.0, -200.0, 88.0, 104.0, 200.0, 3e38, -3e38, np.inf,
                -np.inf, np.nan]


@pytest.mark.parametrize("dtype,values", [(np.float64, F64_SPECIALS),
                                          (np.float32, F32_SPECIALS)], ids=["float64", "float32"])
def test_sigmoid_kernel_special_values(dtype, values):
    x = np.array(values, dtype=dtype)
    out = run_sigmoid(x)
    ref = ref_functions.sigmoid(x)
    exact = exact_sigmoid(x)
    assert out.dtype == dtype
    np.testing.assert_array_equal(np.isnan(out), np.isnan(x))
    finite = ~np.isnan(x)
    # within 2 units in the last place of the reference (subnormals included)
    np.testing.assert_array_max_ulp(out[finite], ref[finite], maxulp=2)
    np.testing.assert_array_max_ulp(out[finite], exact[finite].astype(dtype), maxulp=2)
    assert ((out[finite] >= 0) & (out[finite] <= 1)).all()
    assert out[x == np.inf][0] == 1 and out[x == -np.inf][0] == 0
    assert (out[x == 0] == 0.5).all()


def test_sigmoid_kernel_float64_dense_sweep():
    x = np.linspace(-800, 800, 800_001)
    out = run_sigmoid(x)
    exact = exact_sigmoid(x)
    normal = exact >= np.finfo(np.float64).tiny
    rel = np.abs(out[normal] - exact[normal]) / exact[normal]
    assert rel.max() <= 2e-15
    # subnormal and underflowed results: within one subnormal step
    assert np.abs(out[~normal] - exact[~normal]).max() <= 5e-324
    assert (~normal).sum() > 0 and out[0] == 0 and out[-1] == 1
    assert (np.diff(out) >= 0).all()                       # monotone


def test_sigmoid_kernel_float32_against_float64_math():
    x = np.linspace(-800, 800, 800_001).astype(np.float32)
    out = run_sigmoid(x)
    exact = exact_sigmoid(x)                               # float64 math on the float32 inputs
    normal = exact >= np.finfo(np.float32).tiny
    rel = np.abs(out[normal] - exact[normal]) / exact[normal]
    assert rel.max() <= 1e-6
    # below float32's normal range: within one float32 subnormal step (1.4e-45)
    tiny_step = float(np.finfo(np.float32).smallest_subnormal)
    assert np.abs(out[~normal].astype(np.float64) - exact[~normal]).max() <= tiny_step
    assert (np.diff(out) >= 0).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_sigmoid_backward_kernel(dtype, rng):
    out = rng.random(1001).astype(dtype)
    dout = rng.standard_normal(1001).astype(dtype)
    dx = np.empty_like(out)
    _elementwise.sigmoid_backward(dout, out, dx)
    np.testing.assert_array_equal(dx, dout * (1 - out) * out)    # the book's order, exactly


@pytest.mark.parametrize("dtype,values", [(np.float64, F64_SPECIALS),
                                          (np.float32, F32_SPECIALS)], ids=["float64", "float32"])
def test_sigmoid_grad_kernel_is_one_minus_sigmoid_times_sigmoid(dtype, values):
    """The fused loop computes s as sigmoid_forward's portable loop does, then
    (1 - s) * s.  Against that product from the exact sigmoid: relative error
    a few ulp, plus where 1 - s cancels (s near 1) the error of s itself, an
    ulp or two of s."""
    x = np.concatenate([np.array(values, dtype=dtype),
                        np.linspace(-120, 120, 10_001, dtype=dtype)])
    out = np.full_like(x, 7.0)
    _elementwise.sigmoid_grad(x, out)
    s = exact_sigmoid(x)
    exact = (1 - s) * s
    np.testing.assert_array_equal(np.isnan(out), np.isnan(x))
    finite = ~np.isnan(x)
    eps, tiny = float(np.finfo(dtype).eps), float(np.finfo(dtype).smallest_subnormal)
    bound = 8 * eps * exact + 4 * eps * s + 2 * tiny
    assert (np.abs(out - exact)[finite] <= bound[finite]).all()
    assert ((out[finite] >= 0) & (out[finite] <= 0.25)).all()
    assert out[x == 0][0] == 0.25 and (out[np.isinf(x)] == 0).all()


# ---------------------------------------------------------------------------
# _elementwise: relu
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_relu_kernel_nan_and_signed_zero(dtype):
    x = np.array([np.nan, -0.0, 0.0, -1.0, 2.5, np.inf, -np.inf, -np.nan, 1e-45], dtype=dtype)
    out = np.full_like(x, 7.0)
    mask = np.full(x.shape, 9, dtype=np.uint8)
    _elementwise.relu_forward(x, out, mask)
    np.testing.assert_array_equal(mask, [0, 1, 1, 1, 0, 0, 1, 0, 0])
    assert np.isnan(out[0]) and np.isnan(out[7])                 # NaN: not masked, kept
    masked = mask.astype(bool)
    assert (out[masked] == 0).all() and not np.signbit(out[masked]).any()   # +0.0
    np.testing.assert_array_equal(out[[4, 5, 8]], x[[4, 5, 8]])

    dout = np.array([1.0, np.nan, -np.inf, 3.0, -0.0, 4.0, 5.0, 6.0, np.nan], dtype=dtype)
    dx = np.full_like(dout, 7.0)
    _elementwise.relu_backward(dout, mask, dx)
    assert (dx[masked] == 0).all() and not np.signbit(dx[masked]).any()     # even for NaN dout
    np.testing.assert_array_equal(dx[~masked], dout[~masked])
    ref = dout.copy()
    ref[masked] = 0
    np.testing.assert_array_equal(dx, ref)

    grad = np.full_like(x, 7.0)
    _elementwise.relu_grad(x, grad)
    np.testing.assert_array_equal(grad, [0, 0, 0, 0, 1, 1, 0, 0, 1])    # NaN: 0, not masked
    assert not np.signbit(grad).any()


# ---------------------------------------------------------------------------
# _elementwise: fused softmax + cross-entropy
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("c", [1, 3, 257])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_softmax_xent_kernels(dtype, c, rng):
    n = 7
    x = (5 * rng.standard_normal((n, c))).astype(dtype)
    labels = rng.integers(0, c, size=n).astype(np.int64)
    t = np.eye(c, dtype=dtype)[labels]
    ref_y, ref_loss = ref_functions.softmax_cross_entropy(x, labels)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    for fn, target in ((_elementwise.softmax_xent_labels, labels),
                       (_elementwise.softmax_xent_onehot, t)):
        y = np.empty_like(x)
        loss = np.empty(n, dtype)
        total = fn(x, target, y, loss)
        np.testing.assert_allclose(y, ref_y, rtol=tol, atol=tol)
        np.testing.assert_allclose(loss, ref_loss, rtol=tol, atol=tol)
        assert isinstance(total, float)
        assert total == pytest.approx(float(loss.astype(np.float64).sum()), rel=1e-12)

    dx = np.empty_like(x)
    _elementwise.softmax_xent_backward_labels(ref_y, labels, dx, 0.25)
    np.testing.assert_allclose(dx, (ref_y - t) * dtype(0.25), rtol=tol, atol=tol)
    dx1 = np.empty_like(x)
    _elementwise.softmax_xent_backward_onehot(ref_y.ravel(), t.ravel(), dx1.ravel(), 0.25)
    np.testing.assert_array_equal(dx1, dx)


# ---------------------------------------------------------------------------
# OpenMP: splitting an array across threads changes nothing
# ---------------------------------------------------------------------------
@pytest.fixture
def kernel_threads():
    """Force the threaded path on tiny arrays; restore the defaults after."""
    def use(threads, threshold):
        _elementwise.set_num_threads(threads)
        _elementwise.set_parallel_threshold(threshold)
    yield use
    _elementwise.set_parallel_threshold(_elementwise.PARALLEL_MIN_ELEMENTS)
    _elementwise.set_num_threads(0)


def run_all_elementwise(x, dout):
    out, mask = np.empty_like(x), np.empty(x.shape, np.uint8)
    _elementwise.relu_forward(x, out, mask)
    relu_dx = np.empty_like(x)
    _elementwise.relu_backward(dout, mask, relu_dx)
    sig = np.empty_like(x)
    _elementwise.sigmoid_forward(x, sig)
    sig_dx = np.empty_like(x)
    _elementwise.sigmoid_backward(dout, sig, sig_dx)
    relu_grad, sig_grad = np.empty_like(x), np.empty_like(x)
    _elementwise.relu_grad(x, relu_grad)
    _elementwise.sigmoid_grad(x, sig_grad)
    return out, mask, relu_dx, sig, sig_dx, relu_grad, sig_grad


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("n", [1, 2, 3, 1001])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_threaded_split_is_bit_identical(dtype, n, threads, kernel_threads, rng):
    x = (10 * rng.standard_normal(n)).astype(dtype)
    x[::5] = -0.0
    dout = rng.standard_normal(n).astype(dtype)
    kernel_threads(1, 1 << 62)                         # one thread, one chunk
    serial = run_all_elementwise(x, dout)
    kernel_threads(threads, 1)                         # split every array
    assert _elementwise.get_num_threads() == (threads if _elementwise.openmp_enabled() else 1)
    threaded = run_all_elementwise(x, dout)
    for a, b in zip(serial, threaded):
        assert a.tobytes() == b.tobytes()
    np.testing.assert_array_equal(serial[0], np.where(x > 0, x, 0))


@pytest.mark.parametrize("threads", [2, 3])
def test_every_chunk_is_written_in_many_threaded_calls(threads, kernel_threads):
    """Each thread's chunk bounds are its own: when two threads shared them, a
    thread could run another's chunk and leave its own unwritten (seen as
    about 1 call in 1000 on tiny arrays).  Outputs start as NaN, so any
    element left unwritten shows."""
    kernel_threads(threads, 1)                         # split every array
    if _elementwise.get_num_threads() < 2:
        pytest.skip("serial build: no threads to race")
    for n in (2, 3, 5, 8):
        x = np.linspace(-1.0, 1.0, n, dtype=np.float32)
        for _ in range(2500):
            sig = np.full(n, np.nan, np.float32)
            _elementwise.sigmoid_forward(x, sig)
            out, mask = np.full(n, np.nan, np.float32), np.full(n, 7, np.uint8)
            _elementwise.relu_forward(x, out, mask)
            assert not np.isnan(sig).any() and not np.isnan(out).any() and (mask != 7).all()


def test_set_num_threads_round_trip():
    default = _elementwise.get_num_threads()
    assert default >= 1
    _elementwise.set_num_threads(5)
    try:
        # a serial build (no OpenMP) always runs one thread
        assert _elementwise.get_num_threads() == (5 if _elementwise.openmp_enabled() else 1)
    finally:
        _elementwise.set_num_threads(0)
    assert _elementwise.get_num_threads() == default


@pytest.mark.parametrize("call", [
    lambda: _elementwise.relu_forward(np.ones(4), np.empty(3), np.empty(4, np.uint8)),
    lambda: _elementwise.relu_backward(np.ones(4), np.zeros(4, np.uint8), np.empty(5)),
    lambda: _elementwise.sigmoid_forward(np.ones(4), np.empty(2)),
    lambda: _elementwise.sigmoid_backward(np.ones(4), np.ones(4), np.empty(3)),
    lambda: _elementwise.relu_grad(np.ones(4), np.empty(5)),
    lambda: _elementwise.sigmoid_grad(np.ones(4, np.float32), np.empty(3, np.float32)),
], ids=["relu_forward", "relu_backward", "sigmoid_forward", "sigmoid_backward", "relu_grad",
        "sigmoid_grad"])
def test_elementwise_kernels_refuse_arrays_of_different_lengths(call):
    # the Python layers never pass these; the guard keeps a misuse from
    # reading or writing past an array
    with pytest.raises(ValueError, match="expected arrays of"):
        call()
