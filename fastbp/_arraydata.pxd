# The one C-level check of an array handed to a kernel that takes raw
# pointers (the training steps' parameters, the batch-norm kernels' arrays):
# type number, native byte order, shape, C-contiguity and, for outputs,
# writability, as C comparisons -- a training step checks some 40 arrays a
# call, and a (100, 100) batch-norm call costs less than 40 Python-level
# checks.  The name for the error is built only when there is an error.
cimport numpy as cnp

# rows: the first dimension a 2-D array must have, or
cdef enum:
    ROWS_1D = -1        # a 1-D array of cols elements
    ROWS_ANY = -2       # a 2-D array of any number of rows (the caller reads it)


cdef inline void *array_data(object array, str name, int index, int typenum,
                             Py_ssize_t rows, Py_ssize_t cols, bint writable) except NULL:
    """The data of ``array`` after checking it is a C-contiguous array of
    ``typenum`` in native byte order, of shape (rows, cols) -- or (cols,)
    with ROWS_1D, (any, cols) with ROWS_ANY -- and writable if asked.
    TypeError if it is not a NumPy array, ValueError otherwise, naming it
    ``name`` followed by ``index`` when index > 0 (e.g. 'W' 2: 'W2')."""
    cdef cnp.ndarray a
    cdef int ndim = 1 if rows == ROWS_1D else 2
    if cnp.PyArray_Check(array):
        a = <cnp.ndarray>array
        # (a byte-swapped array has the same type number: its byte order is checked too)
        if (cnp.PyArray_TYPE(a) == typenum and cnp.PyArray_ISNOTSWAPPED(a)
                and cnp.PyArray_NDIM(a) == ndim and cnp.PyArray_DIM(a, ndim - 1) == cols
                and (ndim == 1 or rows == ROWS_ANY or cnp.PyArray_DIM(a, 0) == rows)
                and cnp.PyArray_IS_C_CONTIGUOUS(a)
                and (cnp.PyArray_ISWRITEABLE(a) or not writable)):
            return cnp.PyArray_DATA(a)
    label = f"{name}{index}" if index > 0 else name
    if not cnp.PyArray_Check(array):
        raise TypeError(f"{label}: expected a NumPy array, got {type(array).__name__}")
    shape = (cols,) if rows == ROWS_1D else ("n" if rows == ROWS_ANY else rows, cols)
    raise ValueError(f"{label}: expected a C-contiguous{' writable' if writable else ''} "
                     f"{cnp.PyArray_DescrFromType(typenum)} array of shape "
                     f"{shape} in native byte order, got {array.dtype} {array.shape} "
                     f"(C-contiguous: {array.flags.c_contiguous}, "
                     f"writable: {array.flags.writeable})")
