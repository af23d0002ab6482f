"""Affine (fully connected) layer kernels: GEMM through BLAS, bias and bias
gradient fused around it.  Kernels only: the layer logic (checks, dtypes,
layouts, reshapes) lives in fastbp/layers.py.
"""
from cython cimport floating
from ._blas cimport gemm
from ._dense cimport column_sums

cdef inline void _affine_forward(const floating[:, :] x,      # IN  (N, D)
                                 const floating[:, :] W,      # IN  (D, M)
                                 const floating[::1] b,       # IN  (M,)
                                 floating[:, ::1] out) noexcept nogil:  # OUT (N, M)
    cdef Py_ssize_t i, j
    for i in range(out.shape[0]):           # bias first, then GEMM with beta = 1
        for j in range(out.shape[1]):
            out[i, j] = b[j]
    gemm(<floating>1, x, W, <floating>1, out)


def affine_forward(const floating[:, :] x, const floating[:, :] W,
                   const floating[::1] b, floating[:, ::1] out):
    """out = x @ W + b.  x (N, D), W (D, M): C- or F-contiguous; b (M,);
    out (N, M) C-contiguous, allocated by the caller.  One dtype throughout."""
    with nogil:
        _affine_forward(x, W, b, out)
    return out.base


def affine_backward(const floating[:, ::1] dout, const floating[:, :] xT,
                    const floating[:, :] WT, floating[:, ::1] dx,
                    floating[:, ::1] dW, floating[::1] db,
                    double alpha=1.0, double beta=0.0, bint compute_dx=True,
                    double bias_beta=0.0):
    """The three gradients of an affine layer in one call.

    dout (N, M) C-contiguous; xT = x.T (D, N) and WT = W.T (M, D), C- or
    F-contiguous.  Writes dx = dout @ W.T (N, D) when compute_dx, then
    dW = alpha * x.T @ dout + beta * dW (D, M) and
    db = alpha * dout.sum(0) + bias_beta * db (M,).  With alpha = -lr,
    beta = bias_beta = 1 and dW, db the parameters themselves, this is a
    fused SGD step (beta = 1 - lr * lambda adds L2 weight decay); dx is
    computed first, from the weights before the update.
    """
    cdef floating a = <floating>alpha, bt = <floating>beta, bias_bt = <floating>bias_beta
    cdef const floating[:, :] dout_strided = dout    # the view gemm takes
    with nogil:
        if compute_dx:
            gemm(<floating>1, dout_strided, WT, <floating>0, dx)
        gemm(a, xT, dout_strided, bt, dW)
        if dout.shape[1] > 0:           # (an empty batch still scales db by bias_beta)
            column_sums(&dout[0, 0] if dout.shape[0] > 0 else NULL, &db[0],
                        dout.shape[0], dout.shape[1], a, bias_bt)
