# Row-major GEMM over the fused float32/float64 type, on scipy's BLAS.
#
# Operands are logical matrices as typed memoryviews: op(A) is A itself,
# handed in already transposed where needed (pass W.T, not W and a flag).
# Each operand must be C- or F-contiguous (the Python layer guarantees it);
# the layout is read from the strides.  Column-major BLAS computes the
# row-major C = alpha * A @ B + beta * C as C.T = B.T @ A.T.
from cython cimport floating
from scipy.linalg.cython_blas cimport sgemm, dgemm


cdef inline void _blas_operand(const floating[:, :] a, char *trans, int *ld) noexcept nogil:
    """BLAS transpose flag and leading dimension that present a.T column-major."""
    cdef Py_ssize_t rows = a.shape[0], cols = a.shape[1]
    cdef Py_ssize_t item = sizeof(floating)
    cdef bint c_order = ((a.strides[1] == item or cols <= 1)
                         and (a.strides[0] == cols * item or rows <= 1))
    if c_order:
        trans[0] = b'N'
        ld[0] = <int>(cols if cols > 1 else 1)
    else:
        trans[0] = b'T'
        ld[0] = <int>(rows if rows > 1 else 1)


cdef inline void gemm_rowmajor(bint trans_a, bint trans_b, int m, int n, int k,
                               floating alpha, const floating *A, int ld_a,
                               const floating *B, int ld_b, floating beta,
                               floating *C, int ld_c) noexcept nogil:
    """C = alpha * op(A) @ op(B) + beta * C on row-major arrays.

    op(A) is (m, k): A itself (row stride ld_a) or, with trans_a, the
    transpose of a row-major (k, m) array; likewise op(B) (k, n); C (m, n)
    with row stride ld_c.  m, n, k > 0.  Column-major BLAS computes it as
    C.T = op(B).T @ op(A).T, a row-major array being its transpose in
    column-major order.
    """
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float *>B, &ld_b,
              <float *>A, &ld_a, &beta, C, &ld_c)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double *>B, &ld_b,
              <double *>A, &ld_a, &beta, C, &ld_c)


cdef inline void gemm(floating alpha,
                      const floating[:, :] A,     # IN  (m, k)
                      const floating[:, :] B,     # IN  (k, n)
                      floating beta,
                      floating[:, ::1] C) noexcept nogil:   # IN/OUT (m, n)
    """C = alpha * A @ B + beta * C for C-contiguous C; sizes below 2**31."""
    cdef int m = <int>C.shape[0], n = <int>C.shape[1], k = <int>A.shape[1]
    cdef char trans_a, trans_b
    cdef int ld_a, ld_b
    cdef Py_ssize_t i, j
    if m == 0 or n == 0:
        return
    if k == 0:                       # no products: C = beta * C
        for i in range(m):
            for j in range(n):
                C[i, j] = beta * C[i, j] if beta != 0 else 0
        return
    _blas_operand(A, &trans_a, &ld_a)
    _blas_operand(B, &trans_b, &ld_b)
    gemm_rowmajor(trans_a == b'T', trans_b == b'T', m, n, k, alpha, &A[0, 0], ld_a,
                  &B[0, 0], ld_b, beta, &C[0, 0], n if n > 1 else 1)
