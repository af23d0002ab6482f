"""Batch normalisation kernels (the book's chapter 6): training-mode forward,
test-mode forward, backward, over a batch x (n, d).

Kernels only: the layer (fastbp/_ch6_layers.py) validates, reshapes 4-D
batches to (n, C*H*W) and allocates the outputs.  One dtype throughout;
the specialisation is picked by the one (d,) vector typed as a memoryview
(gamma, or std in backward); every other array is checked here, in C, for
that dtype, its shape and C-contiguity (a memoryview per array would cost
more than the whole (100, 100) kernel's arithmetic).  The loops are
src/fb_batchnorm.h: NumPy's numbers on the book's expressions, bit for bit.
"""
cimport numpy as cnp
from cython cimport floating

from . cimport _loops
from ._arraydata cimport ROWS_1D, ROWS_ANY, array_data

cnp.import_array()


def bn_forward_train(x, const floating[::1] gamma, beta, mean_in, var_in, double momentum,
                     xc, xn, out, std, mean_out, var_out):
    """Training-mode forward of x (n, d), n >= 1.

    gamma, beta (d,); mean_in, var_in (d,): the running statistics (zeros
    before the first forward); momentum in [0, 1].  Writes xc = x - mean,
    xn = xc / std, out = gamma * xn + beta (n, d); std = sqrt(var + 1e-6),
    mean_out = momentum * mean_in + (1 - momentum) * mean and var_out
    likewise (d,), with the batch mean and biased variance.  All C-contiguous,
    of gamma's dtype; outputs distinct from the inputs.
    """
    cdef Py_ssize_t d = gamma.shape[0], n
    cdef int t = cnp.NPY_FLOAT if floating is float else cnp.NPY_DOUBLE
    cdef const floating *x_p = <const floating *>array_data(x, "x", 0, t, ROWS_ANY, d, False)
    n = cnp.PyArray_DIM(<cnp.ndarray>x, 0)
    if n < 1 or d < 1:
        raise ValueError(f"x: expected at least one sample and one feature, got shape "
                         f"{x.shape}")
    if not (0.0 <= momentum <= 1.0):
        raise ValueError(f"momentum: expected a number in [0, 1], got {momentum!r}")
    cdef const floating *beta_p = <const floating *>array_data(
        beta, "beta", 0, t, ROWS_1D, d, False)
    cdef const floating *mean_in_p = <const floating *>array_data(
        mean_in, "mean_in", 0, t, ROWS_1D, d, False)
    cdef const floating *var_in_p = <const floating *>array_data(
        var_in, "var_in", 0, t, ROWS_1D, d, False)
    cdef floating *xc_p = <floating *>array_data(xc, "xc", 0, t, n, d, True)
    cdef floating *xn_p = <floating *>array_data(xn, "xn", 0, t, n, d, True)
    cdef floating *out_p = <floating *>array_data(out, "out", 0, t, n, d, True)
    cdef floating *std_p = <floating *>array_data(std, "std", 0, t, ROWS_1D, d, True)
    cdef floating *mean_out_p = <floating *>array_data(
        mean_out, "mean_out", 0, t, ROWS_1D, d, True)
    cdef floating *var_out_p = <floating *>array_data(var_out, "var_out", 0, t, ROWS_1D, d, True)
    cdef floating keep = <floating>momentum, take = <floating>(1.0 - momentum)
    with nogil:
        _loops.bn_forward_train(x_p, &gamma[0], beta_p, mean_in_p, var_in_p, keep, take,
                                xc_p, xn_p, out_p, std_p, mean_out_p, var_out_p, n, d)


def bn_forward_test(x, const floating[::1] gamma, beta, mean, var, out):
    """Test-mode forward: out = gamma * (x - mean) / sqrt(var + 1e-6) + beta
    for x, out (n, d) (n may be 0) and gamma, beta, mean, var (d,), all
    C-contiguous of gamma's dtype."""
    cdef Py_ssize_t d = gamma.shape[0], n
    cdef int t = cnp.NPY_FLOAT if floating is float else cnp.NPY_DOUBLE
    cdef const floating *x_p = <const floating *>array_data(x, "x", 0, t, ROWS_ANY, d, False)
    n = cnp.PyArray_DIM(<cnp.ndarray>x, 0)
    cdef const floating *beta_p = <const floating *>array_data(
        beta, "beta", 0, t, ROWS_1D, d, False)
    cdef const floating *mean_p = <const floating *>array_data(
        mean, "mean", 0, t, ROWS_1D, d, False)
    cdef const floating *var_p = <const floating *>array_data(var, "var", 0, t, ROWS_1D, d, False)
    cdef floating *out_p = <floating *>array_data(out, "out", 0, t, n, d, True)
    if n == 0 or d == 0:
        return
    with nogil:
        _loops.bn_forward_test(x_p, &gamma[0], beta_p, mean_p, var_p, out_p, n, d)


def bn_backward(dout, xn, xc, const floating[::1] std, gamma, dx, dgamma, dbeta):
    """Backward of a training-mode forward: from dout (n, d), n >= 1, and the
    forward's xn, xc (n, d) and std (d,), writes dx (n, d),
    dgamma = sum(xn * dout) and dbeta = sum(dout) (d,); gamma (d,).  All
    C-contiguous of std's dtype."""
    cdef Py_ssize_t d = std.shape[0], n
    cdef int t = cnp.NPY_FLOAT if floating is float else cnp.NPY_DOUBLE
    cdef const floating *dout_p = <const floating *>array_data(
        dout, "dout", 0, t, ROWS_ANY, d, False)
    n = cnp.PyArray_DIM(<cnp.ndarray>dout, 0)
    if n < 1 or d < 1:
        raise ValueError(f"dout: expected at least one sample and one feature, got shape "
                         f"{dout.shape}")
    cdef const floating *xn_p = <const floating *>array_data(xn, "xn", 0, t, n, d, False)
    cdef const floating *xc_p = <const floating *>array_data(xc, "xc", 0, t, n, d, False)
    cdef const floating *gamma_p = <const floating *>array_data(
        gamma, "gamma", 0, t, ROWS_1D, d, False)
    cdef floating *dx_p = <floating *>array_data(dx, "dx", 0, t, n, d, True)
    cdef floating *dgamma_p = <floating *>array_data(dgamma, "dgamma", 0, t, ROWS_1D, d, True)
    cdef floating *dbeta_p = <floating *>array_data(dbeta, "dbeta", 0, t, ROWS_1D, d, True)
    with nogil:
        _loops.bn_backward(dout_p, xn_p, xc_p, &std[0], gamma_p, dx_p, dgamma_p, dbeta_p,
                           NULL, n, d)
