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

cnp.import_array()


cdef void *_data(object a, str name, int typenum, Py_ssize_t rows, Py_ssize_t cols,
                 bint writable) except NULL:
    """The data of ``a`` after checking it is a C-contiguous array of
    ``typenum`` in native byte order, shape (rows, cols) (or (cols,) when
    rows < 0) and, if asked, writable.  ``rows`` == -2: any number of rows
    (the caller reads it)."""
    cdef cnp.ndarray arr
    cdef bint ok
    if not cnp.PyArray_Check(a):
        raise TypeError(f"{name}: expected a NumPy array, got {type(a).__name__}")
    arr = <cnp.ndarray>a
    if rows == -1:
        ok = cnp.PyArray_NDIM(arr) == 1 and cnp.PyArray_DIM(arr, 0) == cols
    else:
        ok = (cnp.PyArray_NDIM(arr) == 2 and cnp.PyArray_DIM(arr, 1) == cols
              and (rows == -2 or cnp.PyArray_DIM(arr, 0) == rows))
    # (a byte-swapped array has the same type number: its byte order is checked too)
    if not (ok and cnp.PyArray_TYPE(arr) == typenum and cnp.PyArray_ISNOTSWAPPED(arr)
            and cnp.PyArray_IS_C_CONTIGUOUS(arr)
            and (cnp.PyArray_ISWRITEABLE(arr) or not writable)):
        want = (cols,) if rows == -1 else ("n" if rows == -2 else rows, cols)
        raise ValueError(f"{name}: expected a C-contiguous{' writable' if writable else ''} "
                         f"{cnp.PyArray_DescrFromType(typenum)} array of shape "
                         f"{want} in native byte order, got {a.dtype} {a.shape} "
                         f"(C-contiguous: "
                         f"{bool(cnp.PyArray_IS_C_CONTIGUOUS(arr))}, writable: "
                         f"{bool(cnp.PyArray_ISWRITEABLE(arr))})")
    return cnp.PyArray_DATA(arr)


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
    cdef const floating *x_p = <const floating *>_data(x, "x", t, -2, d, False)
    n = cnp.PyArray_DIM(<cnp.ndarray>x, 0)
    if n < 1 or d < 1:
        raise ValueError(f"x: expected at least one sample and one feature, got shape "
                         f"{x.shape}")
    if not (0.0 <= momentum <= 1.0):
        raise ValueError(f"momentum: expected a number in [0, 1], got {momentum!r}")
    cdef const floating *beta_p = <const floating *>_data(beta, "beta", t, -1, d, False)
    cdef const floating *mean_in_p = <const floating *>_data(mean_in, "mean_in", t, -1, d, False)
    cdef const floating *var_in_p = <const floating *>_data(var_in, "var_in", t, -1, d, False)
    cdef floating *xc_p = <floating *>_data(xc, "xc", t, n, d, True)
    cdef floating *xn_p = <floating *>_data(xn, "xn", t, n, d, True)
    cdef floating *out_p = <floating *>_data(out, "out", t, n, d, True)
    cdef floating *std_p = <floating *>_data(std, "std", t, -1, d, True)
    cdef floating *mean_out_p = <floating *>_data(mean_out, "mean_out", t, -1, d, True)
    cdef floating *var_out_p = <floating *>_data(var_out, "var_out", t, -1, d, True)
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
    cdef const floating *x_p = <const floating *>_data(x, "x", t, -2, d, False)
    n = cnp.PyArray_DIM(<cnp.ndarray>x, 0)
    cdef const floating *beta_p = <const floating *>_data(beta, "beta", t, -1, d, False)
    cdef const floating *mean_p = <const floating *>_data(mean, "mean", t, -1, d, False)
    cdef const floating *var_p = <const floating *>_data(var, "var", t, -1, d, False)
    cdef floating *out_p = <floating *>_data(out, "out", t, n, d, True)
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
    cdef const floating *dout_p = <const floating *>_data(dout, "dout", t, -2, d, False)
    n = cnp.PyArray_DIM(<cnp.ndarray>dout, 0)
    if n < 1 or d < 1:
        raise ValueError(f"dout: expected at least one sample and one feature, got shape "
                         f"{dout.shape}")
    cdef const floating *xn_p = <const floating *>_data(xn, "xn", t, n, d, False)
    cdef const floating *xc_p = <const floating *>_data(xc, "xc", t, n, d, False)
    cdef const floating *gamma_p = <const floating *>_data(gamma, "gamma", t, -1, d, False)
    cdef floating *dx_p = <floating *>_data(dx, "dx", t, n, d, True)
    cdef floating *dgamma_p = <floating *>_data(dgamma, "dgamma", t, -1, d, True)
    cdef floating *dbeta_p = <floating *>_data(dbeta, "dbeta", t, -1, d, True)
    with nogil:
        _loops.bn_backward(dout_p, xn_p, xc_p, &std[0], gamma_p, dx_p, dgamma_p, dbeta_p,
                           NULL, n, d)
