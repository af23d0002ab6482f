# The Python-level setter of a module's gemm_pieces limit (fastbp/_blas.pxd):
# the limit is a static of each extension module that cimports _blas, so each
# such module includes this file once to expose it.  fastbp._backend sets it.

def set_gemm_piece_limit(long long limit):
    """The most multiply-adds of a product this module hands to BLAS whole
    (0: no limit); fastbp._backend sets it at import (fastbp._blas_info)."""
    _blas.set_gemm_piece_limit(limit)


def gemm_piece_limit():
    """This module's gemm_pieces limit (0: products go to BLAS whole)."""
    return _blas.fb_gemm_piece_limit
