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


cdef extern from *:
    """
    /* The most multiply-adds (m*n*k) of a product gemm_pieces hands to BLAS
       whole, 0: no limit.  A static: one per extension module, each set at
       import by fastbp._backend (fastbp._blas_info.gemm_piece_limit). */
    static long long fb_gemm_piece_limit = 0;
    """
    long long fb_gemm_piece_limit


cdef inline void set_gemm_piece_limit(long long limit) noexcept nogil:
    """Set this module's gemm_pieces limit (0: products go to BLAS whole)."""
    global fb_gemm_piece_limit
    fb_gemm_piece_limit = limit


cdef enum:
    # A piece narrower than this along the split dimension runs slower on the
    # small-matrix kernels than the whole product on the general ones
    # ((256, 784) @ (784, 256) in 52 pieces of 15 inner columns: 1.1-1.5x
    # slower; (256, 784) @ (784, 100) in 21 of 38: 1.25-1.35x faster).
    GEMM_PIECE_MIN = 32


cdef inline void gemm_pieces(bint trans_a, bint trans_b, int m, int n, int k,
                             floating alpha, const floating *A, int ld_a,
                             const floating *B, int ld_b, floating beta,
                             floating *C, int ld_c) noexcept nogil:
    """gemm_rowmajor, as equal pieces of at most this module's limit of
    multiply-adds along the product's longest dimension -- rows of C, columns
    of C, or the inner dimension (beta then scales C in the first piece
    only) -- when it is larger than the limit and the pieces are at least
    GEMM_PIECE_MIN wide; whole otherwise.  (OpenBLAS computes products of up
    to 100**3 on kernels for small matrices that skip its packing: x (100,
    784) @ W1 (784, 100) in 8 pieces runs 1.3-1.5x faster than whole.)"""
    cdef long long limit = fb_gemm_piece_limit, total = <long long>m * n * k
    cdef int longest = max(m, n, k), parts, size, count, start = 0
    parts = <int>((total + limit - 1) // limit) if limit > 0 else 1
    size = (longest + parts - 1) // parts
    if limit <= 0 or total <= limit or size < GEMM_PIECE_MIN:
        gemm_rowmajor(trans_a, trans_b, m, n, k, alpha, A, ld_a, B, ld_b, beta, C, ld_c)
        return
    if m == longest:                        # rows of C and of op(A)
        while start < m:
            count = min(size, m - start)
            gemm_rowmajor(trans_a, trans_b, count, n, k, alpha,
                          A + (start if trans_a else <Py_ssize_t>start * ld_a), ld_a,
                          B, ld_b, beta, C + <Py_ssize_t>start * ld_c, ld_c)
            start += count
    elif n == longest:                      # columns of C and of op(B)
        while start < n:
            count = min(size, n - start)
            gemm_rowmajor(trans_a, trans_b, m, count, k, alpha, A, ld_a,
                          B + (<Py_ssize_t>start * ld_b if trans_b else start), ld_b,
                          beta, C + start, ld_c)
            start += count
    else:                                   # columns of op(A), rows of op(B)
        while start < k:
            count = min(size, k - start)
            gemm_rowmajor(trans_a, trans_b, m, n, count, alpha,
                          A + (<Py_ssize_t>start * ld_a if trans_a else start), ld_a,
                          B + (start if trans_b else <Py_ssize_t>start * ld_b), ld_b,
                          beta if start == 0 else <floating>1, C, ld_c)
            start += count


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
