# Pointer-level pieces of a dense (affine) layer shared by _affine.pyx (one
# layer, memoryview arguments) and the training steps (_train.pyx,
# _train_extend.pyx): the forward product with its bias, and the fused
# gradient/update of W and b.
# All arrays are row-major and C-contiguous; sizes are > 0 unless stated.
from cython cimport floating
from ._blas cimport gemm_pieces

# Columns of the bias gradient accumulated at once in a stack buffer.
cdef enum:
    DB_BLOCK = 256


cdef inline void dense_forward(const floating *x, const floating *W, const floating *b,
                               floating *out, int n, int d, int m) noexcept nogil:
    """out (n, m) = x (n, d) @ W (d, m) + b (m,): the bias rows first, then
    one GEMM with beta = 1 (no broadcast temporary)."""
    cdef Py_ssize_t i, j
    for i in range(n):
        for j in range(m):
            out[i * m + j] = b[j]
    gemm_pieces(False, False, n, m, d, <floating>1, x, d, W, m, <floating>1, out, m)


cdef inline void combine(floating *out, const floating *grad, const floating *param,
                         Py_ssize_t m, floating alpha, floating param_beta) noexcept nogil:
    """out (m,) = alpha * grad + param_beta * param; param_beta == 0 never
    reads param (it may hold garbage).  out may be param."""
    cdef Py_ssize_t j
    if param_beta == 0:
        for j in range(m):
            out[j] = alpha * grad[j]
    else:
        for j in range(m):
            out[j] = alpha * grad[j] + param_beta * param[j]


cdef inline void column_sums(const floating *dout, floating *db, Py_ssize_t n,
                             Py_ssize_t m, floating alpha, floating beta) noexcept nogil:
    """db (m,) = alpha * dout.sum(axis=0) + beta * db for dout (n, m), rows
    added in order from 0 (n may be 0).  beta == 0 never reads db."""
    cdef floating acc[DB_BLOCK]
    cdef Py_ssize_t i, j, width, j0 = 0
    while j0 < m:
        width = min(<Py_ssize_t>DB_BLOCK, m - j0)
        for j in range(width):
            acc[j] = 0
        for i in range(n):
            for j in range(width):
                acc[j] += dout[i * m + j0 + j]
        combine(db + j0, acc, db + j0, width, alpha, beta)
        j0 += DB_BLOCK


cdef inline void dense_backward(const floating *dout, const floating *x,
                                const floating *W, floating *dx, floating *dW,
                                floating *db, int n, int d, int m, floating alpha,
                                floating beta, floating bias_beta,
                                const floating *dout_sums) noexcept nogil:
    """The three gradients of out = x @ W + b, given dout (n, m), x (n, d) and
    W (d, m): dx (n, d) = dout @ W.T unless dx is NULL, then
    dW (d, m) = alpha * x.T @ dout + beta * dW and
    db (m,) = alpha * dout.sum(0) + bias_beta * db.  With alpha = -lr and dW,
    db the parameters this is an SGD step; dx is computed first, from the
    weights before the update.  dout_sums: dout.sum(0) (rows added in order
    from 0) when the loop that wrote dout summed it already, else NULL."""
    if dx != NULL:
        gemm_pieces(False, True, n, d, m, <floating>1, dout, m, W, m, <floating>0, dx, d)
    gemm_pieces(True, False, d, m, n, alpha, x, d, dout, m, beta, dW, m)
    if dout_sums != NULL:
        combine(db, dout_sums, db, m, alpha, bias_beta)
    else:
        column_sums(dout, db, n, m, alpha, bias_beta)
